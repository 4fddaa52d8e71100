//! External peers on the local dataplane: a namespace *outside* the pod bridge, the local
//! equivalent of a server beside the kind nodes. Its `eth0` is a veth whose other end, `x<index>`,
//! stays in the node namespace unbridged; the node routes between the bridge and that link and
//! answers ARP for either side (proxy ARP), so pods reach the peer through the node, exactly as
//! traffic leaves a pod network. Pods keep their default route through `eth0` and have no static
//! neighbour entry for the peer.

use super::netns::{self, PodLink};
use crate::provider::ProviderError;

/// The node's own address on the bridge and the peers' links (link-local, never a pod's), so
/// ARP and forwarding have a source address.
const NODE_ADDR: &str = "169.254.77.1";

fn link(p: &PodLink) -> String {
    format!("x{}", p.index)
}

/// Creates the veth pairs of `peers` (their namespaces exist), addresses and routes both ends, and
/// turns the node into a router with proxy ARP (answering at once: the default `proxy_delay` of
/// 0.8 s would make the first probes of a step time out).
pub async fn attach(node: &str, peers: &[PodLink]) -> Result<(), ProviderError> {
    if peers.is_empty() {
        return Ok(());
    }
    let mut script =
        format!("addr replace {NODE_ADDR}/32 dev br0\nroute replace default dev br0\n");
    for p in peers {
        script.push_str(&format!(
            "link add {l} type veth peer name eth0 netns {ns}\n\
             addr add {NODE_ADDR}/32 dev {l}\nlink set {l} up\nroute replace {ip}/32 dev {l}\n",
            l = link(p),
            ns = p.netns,
            ip = p.ip
        ));
    }
    netns::run("ip", &["-n", node, "-batch", "-"], Some(&script)).await?;
    let mut sysctl = String::from(
        "echo 1 > /proc/sys/net/ipv4/ip_forward\n\
         echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter\n\
         echo 0 > /proc/sys/net/ipv4/conf/br0/rp_filter\n\
         echo 1 > /proc/sys/net/ipv4/conf/br0/proxy_arp\n\
         echo 0 > /proc/sys/net/ipv4/neigh/br0/proxy_delay\n",
    );
    for p in peers {
        sysctl.push_str(&format!(
            "echo 0 > /proc/sys/net/ipv4/conf/{l}/rp_filter\necho 1 > /proc/sys/net/ipv4/conf/{l}/proxy_arp\n\
             echo 0 > /proc/sys/net/ipv4/neigh/{l}/proxy_delay\n",
            l = link(p)
        ));
    }
    netns::run("ip", &["netns", "exec", node, "sh", "-e"], Some(&sysctl)).await?;
    for p in peers {
        let inside = format!(
            "link set lo up\naddr add {ip}/32 dev eth0\nlink set eth0 up\nroute add default dev eth0\n",
            ip = p.ip
        );
        netns::run("ip", &["-n", &p.netns, "-batch", "-"], Some(&inside)).await?;
    }
    Ok(())
}
