//! External peers on the local dataplane: a namespace *outside* the pod bridge, the local
//! equivalent of a server beside the kind nodes. Its `eth0` is a veth whose other end, `x<index>`,
//! stays in the node namespace unbridged; the node routes between the bridge and that link and
//! answers ARP for either side (proxy ARP), so pods reach the peer through the node, exactly as
//! traffic leaves a pod network. Pods keep their default route through `eth0` and have no static
//! neighbour entry for the peer.
//!
//! Everything goes through the netlink and sysctl primitives of [`netns`]: link names are
//! `x<index>` (a number), the peer's namespace is passed as a descriptor, and no name ever becomes
//! text for a shell or `ip`.

use std::net::Ipv4Addr;

use super::netns::{self, Netlink, PodLink};
use crate::provider::ProviderError;

/// The node's own address on the bridge and the peers' links (link-local, never a pod's), so
/// ARP requests and forwarded traffic have a source address.
const NODE_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);

/// The node's link towards peer `p`.
fn link(p: &PodLink) -> String {
    format!("x{}", p.index)
}

/// The node's sysctls that make it a router with proxy ARP between `br0` and the peers' links.
///
/// Reverse-path filtering is off so that no default a new namespace inherits from the host can
/// drop routed traffic (the kernel applies the stricter of `all` and the link's value), and
/// `proxy_delay` is 0 because its default (0.8 s) would make the first probes of a step time out.
fn node_sysctls(peers: &[PodLink]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("ipv4/ip_forward", "1"),
        ("ipv4/conf/all/rp_filter", "0"),
        ("ipv4/conf/br0/rp_filter", "0"),
        ("ipv4/conf/br0/proxy_arp", "1"),
        ("ipv4/neigh/br0/proxy_delay", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for p in peers {
        let l = link(p);
        v.push((format!("ipv4/conf/{l}/rp_filter"), "0".into()));
        v.push((format!("ipv4/conf/{l}/proxy_arp"), "1".into()));
        v.push((format!("ipv4/neigh/{l}/proxy_delay"), "0".into()));
    }
    v
}

/// Connects `peers` (their namespaces exist, the node's bridge too): a veth per peer, the node's
/// address on `br0` and on each `x<index>`, a /32 route per peer and a default route towards the
/// bridge in the node, the router sysctls, and inside each peer what a pod gets (loopback, `eth0`
/// up with its address, a default route through it; no static neighbours).
pub async fn attach(node: &str, peers: &[PodLink]) -> Result<(), ProviderError> {
    if peers.is_empty() {
        return Ok(());
    }
    let nl = Netlink::open(node).await?;
    let br0 = nl.index_of("br0").await?;
    // Replace: peers added in a later step find these already there.
    nl.replace_address(br0, NODE_ADDR, 32, "br0").await?;
    nl.replace_link_route(Ipv4Addr::UNSPECIFIED, 0, br0, "br0")
        .await?;
    for p in peers {
        let name = link(p);
        nl.add_veth(&name, p, None).await?;
        let x = nl.index_of(&name).await?;
        nl.replace_address(x, NODE_ADDR, 32, &name).await?;
        nl.replace_link_route(p.ip, 32, x, &name).await?;
    }
    netns::write_sysctls(node, node_sysctls(peers)).await?;
    for p in peers {
        netns::setup_pod(p, &[]).await?;
    }
    let names: Vec<String> = peers.iter().map(link).collect();
    nl.wait_oper_up(&names).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_name_only_fixed_words_and_numbered_links() {
        let p = PodLink {
            netns: "netpolc-r-s0-(external).web\n; rm -rf /".into(),
            index: 7,
            ip: Ipv4Addr::new(172, 30, 0, 7),
        };
        let s = node_sysctls(&[p]);
        assert!(s.contains(&("ipv4/conf/x7/proxy_arp".into(), "1".into())));
        assert!(s.contains(&("ipv4/neigh/x7/proxy_delay".into(), "0".into())));
        assert!(s.contains(&("ipv4/ip_forward".into(), "1".into())));
        // The namespace's name never reaches a key.
        assert!(s.iter().all(|(k, _)| !k.contains("external")));
    }

    /// Removes the test's namespaces whatever happens.
    struct Owned(Vec<String>);
    impl Drop for Owned {
        fn drop(&mut self) {
            let _ = netns::del_netns_blocking(&self.0);
        }
    }

    /// `write_sysctls` relies on `/proc/sys/net` resolving to the namespace of the thread that
    /// opens it: two namespaces written with different values must read back their own, and the
    /// host's value must not move. (Needs root, as every local-dataplane test.)
    #[tokio::test]
    async fn proc_sys_net_follows_the_opening_thread() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test creates network namespaces: run it as root"
        );
        let base = format!("{}kindfix-sysctl{}-s0-", netns::PREFIX, std::process::id());
        let names = vec![format!("{base}a"), format!("{base}b")];
        netns::add_netns(&names).await.expect("namespaces");
        let _owned = Owned(names.clone());
        let key = "ipv4/ip_default_ttl";
        let host_before = std::fs::read_to_string(format!("/proc/sys/net/{key}")).expect("host");
        netns::write_sysctls(&names[0], vec![(key.into(), "33".into())])
            .await
            .expect("write a");
        netns::write_sysctls(&names[1], vec![(key.into(), "44".into())])
            .await
            .expect("write b");
        assert_eq!(
            netns::read_sysctl(&names[0], key).await.expect("read a"),
            "33"
        );
        assert_eq!(
            netns::read_sysctl(&names[1], key).await.expect("read b"),
            "44"
        );
        let host_after = std::fs::read_to_string(format!("/proc/sys/net/{key}")).expect("host");
        assert_eq!(
            host_before, host_after,
            "the host's own value must not change"
        );
        // A key that would leave /proc/sys/net is refused before any file is opened.
        assert!(
            netns::write_sysctls(&names[0], vec![("ipv4/conf/../../x".into(), "1".into())])
                .await
                .is_err()
        );
    }
}
