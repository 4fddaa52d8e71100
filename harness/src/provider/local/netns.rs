//! Network namespaces, links and addresses through the `ip` binary, and running code inside a
//! namespace on a dedicated thread.
//!
//! Layout of one session: a "node" namespace holds a bridge `br0` (in its own namespace so the
//! host firewall never sees the traffic); each pod is a namespace whose `eth0` is one end of a veth
//! pair, the other end (`v<index>`) enslaved to the bridge. Every link lives inside a namespace the
//! session created, so deleting the namespaces removes every link: nothing is ever created in the
//! host's own namespace.

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Stdio;

use nix::sched::CloneFlags;
use tokio::io::AsyncWriteExt;

use crate::provider::ProviderError;

/// Every namespace the local provider creates starts with this.
pub const PREFIX: &str = "netpolc-";

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The name prefix of one session's namespaces: `netpolc-<run>-s<n>-`.
pub fn session_prefix(run_id: &str, n: usize) -> String {
    format!("{PREFIX}{run_id}-s{n}-")
}

/// Whether a namespace name belongs to run `run_id` (`netpolc-<run>-s<digits>-…`).
pub fn belongs_to_run(name: &str, run_id: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix(run_id))
        .and_then(|r| r.strip_prefix("-s"))
    else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && rest[digits..].starts_with('-')
}

/// Run ids end up in file names and commands: keep them to letters, digits and dashes.
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A deterministic, locally administered MAC for pod `index` (static neighbour entries use it).
pub fn pod_mac(index: usize) -> String {
    let i = index as u32;
    format!(
        "02:6e:70:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// Runs a program, feeding `stdin`; fails with the command line and its stderr.
pub async fn run(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, ProviderError> {
    let shown = || format!("{program} {}", args.join(" "));
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ProviderError::Failed(format!("cannot run `{}`: {e}", shown())))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| ProviderError::Failed(format!("`{}`: writing stdin: {e}", shown())))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| ProviderError::Failed(format!("`{}`: {e}", shown())))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let input = stdin
            .map(|s| format!("\ninput:\n{}", s.trim_end()))
            .unwrap_or_default();
        Err(ProviderError::Failed(format!(
            "`{}` failed ({}): {}{input}",
            shown(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Why [`in_netns`] could not run its function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsError {
    pub message: String,
    /// The harness ran short of its own resources (a thread, a descriptor), as opposed to the
    /// namespace being missing: the probe engine re-probes such failures and never blames the
    /// dataplane for them.
    pub harness: bool,
}

impl std::fmt::Display for NetnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Whether an OS error is the process running short of something (descriptors, memory,
/// threads, ports), not a statement about the network.
pub fn is_resource_shortage(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(
            Errno::EMFILE
                | Errno::ENFILE
                | Errno::ENOBUFS
                | Errno::ENOMEM
                | Errno::EAGAIN
                | Errno::EADDRNOTAVAIL
                | Errno::EADDRINUSE
        )
    )
}

/// Runs `f` on a new OS thread that has entered namespace `name`, and returns its result.
///
/// The thread exists only for `f`: a thread that switched namespaces is never reused, and never is
/// a tokio worker. Sockets `f` creates stay in the namespace after the thread ends, so the caller
/// can drive them from the async runtime. The error tells the harness's own shortages (no thread,
/// no descriptor) apart from a missing namespace.
pub async fn in_netns<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = format!("{NETNS_DIR}/{name}");
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netpolc-netns".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let entered = File::open(&path)
                .map_err(|e| NetnsError {
                    message: format!("cannot open {path}: {e}"),
                    harness: is_resource_shortage(&e),
                })
                .and_then(|ns| {
                    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError {
                        message: format!("cannot enter {path}: {e}"),
                        harness: matches!(e, nix::errno::Errno::ENOMEM),
                    })
                });
            let _ = tx.send(entered.map(|()| f()));
        })
        .map_err(|e| NetnsError {
            message: format!("cannot start a thread for {name}: {e}"),
            harness: true,
        })?;
    rx.await.map_err(|_| NetnsError {
        message: format!("the thread for {name} ended without an answer"),
        harness: true,
    })?
}

/// What one pod looks like on the dataplane.
#[derive(Debug, Clone)]
pub struct PodLink {
    pub netns: String,
    pub index: usize,
    pub ip: Ipv4Addr,
}

/// Creates namespaces (batched in one `ip` process).
pub async fn add_netns(names: &[String]) -> Result<(), ProviderError> {
    let script: String = names.iter().map(|n| format!("netns add {n}\n")).collect();
    run("ip", &["-batch", "-"], Some(&script)).await.map(drop)
}

/// Deletes namespaces, ignoring those already gone.
pub async fn del_netns(names: &[String]) -> Result<(), ProviderError> {
    let present = list_netns()?;
    let script: String = names
        .iter()
        .filter(|n| present.contains(n))
        .map(|n| format!("netns del {n}\n"))
        .collect();
    if script.is_empty() {
        return Ok(());
    }
    run("ip", &["-force", "-batch", "-"], Some(&script))
        .await
        .map(drop)
}

/// Same as [`del_netns`], blocking (for `Drop` and the `cleanup` command).
pub fn del_netns_blocking(names: &[String]) -> Result<(), ProviderError> {
    for n in names {
        let out = std::process::Command::new("ip")
            .args(["netns", "del", n])
            .output()
            .map_err(|e| ProviderError::Failed(format!("cannot run `ip netns del {n}`: {e}")))?;
        if !out.status.success() && std::path::Path::new(NETNS_DIR).join(n).exists() {
            return Err(ProviderError::Failed(format!(
                "`ip netns del {n}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Named namespaces, sorted.
pub fn list_netns() -> Result<Vec<String>, ProviderError> {
    let rd = match std::fs::read_dir(NETNS_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ProviderError::Failed(format!(
                "cannot list {NETNS_DIR}: {e}"
            )));
        }
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
        .collect();
    v.sort();
    Ok(v)
}

/// Sets up the node namespace: loopback, the bridge, and one veth per pod (pod end moved into the
/// pod's namespace as `eth0`, with a deterministic MAC).
pub async fn setup_node(node: &str, pods: &[PodLink]) -> Result<(), ProviderError> {
    let mut script = String::from("link set lo up\nlink add br0 type bridge\nlink set br0 up\n");
    script.push_str(&attach_script(pods));
    run("ip", &["-n", node, "-batch", "-"], Some(&script))
        .await
        .map(drop)
}

/// Adds veths for more pods to an existing node.
pub async fn attach_pods(node: &str, pods: &[PodLink]) -> Result<(), ProviderError> {
    run(
        "ip",
        &["-n", node, "-batch", "-"],
        Some(&attach_script(pods)),
    )
    .await
    .map(drop)
}

fn attach_script(pods: &[PodLink]) -> String {
    pods.iter()
        .map(|p| {
            format!(
                "link add v{i} type veth peer name eth0 address {mac} netns {ns}\n\
                 link set v{i} master br0 up\n",
                i = p.index,
                mac = pod_mac(p.index),
                ns = p.netns
            )
        })
        .collect()
}

/// Inside a pod: loopback and `eth0` up, the pod's address, a default route through `eth0` (so any
/// address plan works on one bridge), and static neighbours for the session's other pods (no
/// ARP storm when thousands of probes start at once).
pub async fn setup_pod(pod: &PodLink, all: &[PodLink]) -> Result<(), ProviderError> {
    let mut script = format!(
        "link set lo up\naddr add {ip}/32 dev eth0\nlink set eth0 up\nroute add default dev eth0\n",
        ip = pod.ip
    );
    // Beyond a few hundred pods the neighbour tables would outgrow their defaults: let ARP work.
    let static_neighbours = if all.len() <= MAX_STATIC_NEIGHBOURS {
        all
    } else {
        &[]
    };
    for other in static_neighbours.iter().filter(|o| o.index != pod.index) {
        script.push_str(&format!(
            "neigh replace {} lladdr {} dev eth0 nud permanent\n",
            other.ip,
            pod_mac(other.index)
        ));
    }
    run("ip", &["-n", &pod.netns, "-batch", "-"], Some(&script))
        .await
        .map(drop)
}

const MAX_STATIC_NEIGHBOURS: usize = 256;

/// Replaces a pod's nftables table in one transaction.
pub async fn nft_apply(netns: &str, script: &str) -> Result<(), ProviderError> {
    run(
        "ip",
        &["netns", "exec", netns, "nft", "-f", "-"],
        Some(script),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_membership_is_exact() {
        assert!(belongs_to_run("netpolc-abc-s0-node", "abc"));
        assert!(belongs_to_run("netpolc-abc-s12-x.a", "abc"));
        assert!(!belongs_to_run("netpolc-abcd-s0-node", "abc"));
        assert!(!belongs_to_run("netpolc-abc-1-s0-node", "abc"));
        assert!(!belongs_to_run("netpolc-abc-s-node", "abc"));
        assert!(!belongs_to_run("other-abc-s0-node", "abc"));
    }

    #[test]
    fn run_ids_and_macs() {
        assert!(valid_run_id("20261126-1200-ab12"));
        assert!(!valid_run_id("a/b"));
        assert!(!valid_run_id(""));
        assert_eq!(pod_mac(0x010203), "02:6e:70:01:02:03");
    }
}
