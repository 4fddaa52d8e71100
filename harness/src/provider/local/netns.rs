//! Network namespaces, links, addresses, routes and neighbours through system calls and netlink,
//! and running code inside a namespace on a dedicated thread.
//!
//! Layout of one session: a "node" namespace holds a bridge `br0` (in its own namespace so the
//! host firewall never sees the traffic); each pod is a namespace whose `eth0` is one end of a veth
//! pair, the other end (`v<index>`) enslaved to the bridge. External peers are namespaces whose
//! `eth0` pairs with an unbridged `x<index>` in the node (see `external`). Every link lives inside
//! a namespace the session created, so deleting the namespaces removes every link: nothing is ever
//! created in the host's own namespace.
//!
//! Names reach the kernel only as data: a namespace name is one file name under [`NETNS_DIR`]
//! (refused when it is not), links get fixed names (`br0`, `eth0`, `v<index>`, `x<index>`), every
//! change is a typed netlink message, and sysctls are files opened from inside the namespace. No
//! `ip -batch` script, shell or other text interpreter is involved, so a name with a newline,
//! quote or `;` is a strange file name and nothing more.
//!
//! Named namespaces are created the way `ip netns add` creates them (so `ip netns list` shows them
//! and `ip netns exec NAME …` works): `/run/netns` is made a shared mount point (a bind mount of
//! itself when it is not one), an empty file `/run/netns/NAME` is created exclusively, a thread
//! unshares into a new network namespace and bind-mounts its `/proc/thread-self/ns/net` onto the
//! file. Deleting is a lazy unmount plus unlink; the kernel frees the namespace when the last
//! socket in it closes.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use rtnetlink::packet_route::link::{
    BridgePortState, InfoBridgePort, InfoData, InfoPortData, InfoVeth, LinkAttribute, LinkInfo,
    LinkMessage, State,
};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::provider::ProviderError;

/// Every namespace the local provider creates starts with this.
pub const PREFIX: &str = "netpolc-";

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The name prefix of one session's namespaces: `netpolc-<run>--s<n>-`. Run ids never contain
/// `--`, so the run id is exactly what precedes the first `--` (see [`crate::provider::lease`]).
pub fn session_prefix(run_id: &str, n: usize) -> String {
    format!("{PREFIX}{run_id}--s{n}-")
}

/// The run a namespace name belongs to under the naming scheme above (`netpolc-<run>--s<n>-…`),
/// or `None` (another program's namespace, or one named by an older netpolc, whose
/// `netpolc-<run>-s<n>-…` names cannot be told apart between runs whose ids prefix each other).
pub fn run_of(name: &str) -> Option<&str> {
    let (run, rest) = crate::provider::lease::split_run(name.strip_prefix(PREFIX)?)?;
    let rest = rest.strip_prefix('s')?;
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    (digits > 0 && rest[digits..].len() > 1 && rest[digits..].starts_with('-')).then_some(run)
}

/// Whether a namespace name belongs to run `run_id` exactly.
pub fn belongs_to_run(name: &str, run_id: &str) -> bool {
    run_of(name) == Some(run_id)
}

/// A name an older netpolc gave (`netpolc-…` without the `--` after the run id).
pub fn is_legacy(name: &str) -> bool {
    name.starts_with(PREFIX) && run_of(name).is_none()
}

/// The most ports one Linux bridge holds (`BR_MAX_PORTS` is 1024 and port number 0 is reserved),
/// hence the most pods one session can put on its bridge.
pub const MAX_BRIDGE_PORTS: usize = 1023;

/// Sessions up to this many pods get a permanent neighbour entry for every other pod.
///
/// Permanent entries are exempt from the neighbour table's garbage collection and from its
/// `gc_thresh3` limit (1024 by default, counted over *all* namespaces of the host and only
/// tunable from the host's own namespace). Without them, a matrix of a few hundred pods resolves
/// tens of thousands of dynamic ARP entries at once, overflows the table and fails probes that
/// the policies allow. Set to the bridge's port limit: every session that fits on a bridge gets
/// them (n × (n − 1) entries, about 250,000 for 500 pods).
pub const MAX_STATIC_NEIGHBOURS: usize = MAX_BRIDGE_PORTS;

/// Why a string cannot name a namespace file: it must be exactly one file name under
/// [`NETNS_DIR`] (no `/`, not `.` or `..`, no NUL byte, at most 255 bytes).
pub fn check_netns_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "is empty"
    } else if name == "." || name == ".." {
        "is a directory reference"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else if name.len() > 255 {
        "is longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(format!(
        "network namespace name {name:?} {why}: it must be one file name in {NETNS_DIR}"
    ))
}

/// The file of a named namespace (the name checked by [`check_netns_name`]).
pub fn netns_path(name: &str) -> Result<PathBuf, String> {
    check_netns_name(name)?;
    Ok(PathBuf::from(NETNS_DIR).join(name))
}

/// A deterministic, locally administered MAC for pod `index` (static neighbour entries use it).
pub fn pod_mac(index: usize) -> [u8; 6] {
    let i = index as u32;
    [0x02, 0x6e, 0x70, (i >> 16) as u8, (i >> 8) as u8, i as u8]
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
/// can drive them from the async runtime; so do processes it spawns (a child inherits the
/// namespace of the thread that forked it). The error tells the harness's own shortages (no
/// thread, no descriptor) apart from a missing namespace.
pub async fn in_netns<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = netns_path(name).map_err(|message| NetnsError {
        message,
        harness: false,
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netpolc-netns".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let entered = File::open(&path)
                .map_err(|e| NetnsError {
                    message: format!("cannot open {path:?}: {e}"),
                    harness: is_resource_shortage(&e),
                })
                .and_then(|ns| {
                    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError {
                        message: format!("cannot enter {path:?}: {e}"),
                        harness: matches!(e, nix::errno::Errno::ENOMEM),
                    })
                });
            let _ = tx.send(entered.map(|()| f()));
        })
        .map_err(|e| NetnsError {
            message: format!("cannot start a thread for {name:?}: {e}"),
            harness: true,
        })?;
    rx.await.map_err(|_| NetnsError {
        message: format!("the thread for {name:?} ended without an answer"),
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

fn failed(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Failed(e.to_string())
}

/// Makes [`NETNS_DIR`] exist and be a shared mount point, as iproute2 does, so namespace mounts
/// propagate to (and unmounts free them in) every mount namespace that shares it. Serialised with
/// other processes doing the same (`ip netns add`, other runs) by an exclusive lock on the
/// directory: concurrent first-time bind mounts would stack on each other.
fn prepare_netns_dir() -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(NETNS_DIR)
        .map_err(|e| format!("cannot create {NETNS_DIR}: {e}"))?;
    let dir = File::open(NETNS_DIR).map_err(|e| format!("cannot open {NETNS_DIR}: {e}"))?;
    let _lock = Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {NETNS_DIR}: {e}"))?;
    let mut bound = false;
    loop {
        match nix::mount::mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            // Not a mount point yet: make it one (once), then make it shared.
            Err(Errno::EINVAL) if !bound => {
                nix::mount::mount(
                    Some(NETNS_DIR),
                    NETNS_DIR,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| format!("cannot bind-mount {NETNS_DIR} onto itself: {e}"))?;
                bound = true;
            }
            Err(e) => return Err(format!("cannot make {NETNS_DIR} a shared mount: {e}")),
        }
    }
}

/// Creates one named namespace. Must run on a thread that is discarded afterwards: the thread is
/// left inside the new namespace.
fn create_one(name: &str) -> Result<(), String> {
    let path = netns_path(name)?;
    // O_EXCL: never take over a namespace (or any file) that already exists.
    let file = nix::fcntl::open(
        &path,
        OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot create {path:?}: {e}"))?;
    drop(file);
    let made = nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("cannot create a network namespace for {name:?}: {e}"))
        .and_then(|()| {
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("cannot bind the new namespace to {path:?}: {e}"))
        });
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    made
}

/// Creates namespaces, all or none: on an error the ones this call created are removed again.
///
/// One dedicated thread creates them one after the other (each `unshare` moves that thread into
/// the namespace it just made; it is never reused afterwards).
pub async fn add_netns(names: &[String]) -> Result<(), ProviderError> {
    for n in names {
        check_netns_name(n).map_err(ProviderError::InvalidInput)?;
    }
    let names = names.to_vec();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netpolc-netns-add".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let result = prepare_netns_dir().and_then(|()| {
                for (i, n) in names.iter().enumerate() {
                    if let Err(e) = create_one(n) {
                        let _ = delete_many(&names[..i]);
                        return Err(e);
                    }
                }
                Ok(())
            });
            let _ = tx.send(result);
        })
        .map_err(|e| failed(format!("cannot start the namespace thread: {e}")))?;
    rx.await
        .map_err(|_| failed("the namespace thread ended without an answer"))?
        .map_err(failed)
}

/// Removes one named namespace (lazy unmount, then unlink); one already gone is fine.
fn delete_one(name: &str) -> Result<(), String> {
    let path = netns_path(name)?;
    match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a file left by a failed creation).
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
        Err(e) => return Err(format!("cannot unmount {path:?}: {e}")),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {path:?}: {e}")),
    }
}

/// Deletes every name, then reports the first failure (one stuck namespace must not keep the
/// others alive).
fn delete_many(names: &[String]) -> Result<(), String> {
    let mut first = None;
    for n in names {
        if let Err(e) = delete_one(n) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Deletes namespaces, ignoring those already gone.
pub async fn del_netns(names: &[String]) -> Result<(), ProviderError> {
    let names = names.to_vec();
    tokio::task::spawn_blocking(move || del_netns_blocking(&names))
        .await
        .map_err(|e| failed(format!("namespace deletion did not finish: {e}")))?
}

/// Same as [`del_netns`], blocking (for `Drop` and the `cleanup` command).
pub fn del_netns_blocking(names: &[String]) -> Result<(), ProviderError> {
    delete_many(names).map_err(failed)
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

/// A route-netlink connection whose socket was opened inside one namespace: every request on it
/// acts on that namespace, whichever thread sends it. The connection task ends with the value.
pub struct Netlink {
    handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
    netns: String,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests in flight at once on one connection (each waits for its acknowledgement).
const NETLINK_PIPELINE: usize = 64;

impl Netlink {
    /// Opens the socket on a thread inside `netns`; the runtime is entered there because the
    /// socket registers with the runtime's reactor when it is created.
    pub async fn open(netns: &str) -> Result<Netlink, ProviderError> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, _unsolicited) = in_netns(netns, move || {
            let _entered = rt.enter();
            rtnetlink::new_connection()
        })
        .await
        .map_err(failed)?
        .map_err(|e| failed(format!("netlink socket in {netns:?}: {e}")))?;
        Ok(Netlink {
            handle,
            task: tokio::spawn(conn),
            netns: netns.to_string(),
        })
    }

    fn fail(&self, what: &str, e: rtnetlink::Error) -> ProviderError {
        failed(format!("{what} in namespace {:?}: {e}", self.netns))
    }

    pub async fn index_of(&self, link: &str) -> Result<u32, ProviderError> {
        let msg = self
            .handle
            .link()
            .get()
            .match_name(link.to_string())
            .execute()
            .try_next()
            .await
            .map_err(|e| self.fail(&format!("looking up {link}"), e))?;
        msg.map(|m| m.header.index)
            .ok_or_else(|| failed(format!("no link {link} in namespace {:?}", self.netns)))
    }

    /// Polls the namespace's links until `not_ready` names none (it returns the names of links
    /// not ready yet), or fails after [`LINK_READY_TIMEOUT`] naming them.
    async fn wait_links<F>(&self, what: &str, not_ready: F) -> Result<(), ProviderError>
    where
        F: Fn(&[LinkMessage]) -> Vec<String>,
    {
        let deadline = Instant::now() + LINK_READY_TIMEOUT;
        loop {
            let links: Vec<LinkMessage> = self
                .handle
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| self.fail("listing links", e))?;
            let missing = not_ready(&links);
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "{what} in namespace {:?} after {} s: {}",
                    self.netns,
                    LINK_READY_TIMEOUT.as_secs(),
                    missing.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn set_up(&self, index: u32, what: &str) -> Result<(), ProviderError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| self.fail(&format!("setting {what} up"), e))
    }

    /// Creates the veth `name` here, up (and enslaved to `controller` when given), in one request
    /// with its peer `eth0` made directly inside `pod`'s namespace (passed as an open descriptor,
    /// never by name) with the pod's MAC ([`pod_mac`]).
    pub async fn add_veth(
        &self,
        name: &str,
        pod: &PodLink,
        controller: Option<u32>,
    ) -> Result<(), ProviderError> {
        let path = netns_path(&pod.netns).map_err(ProviderError::InvalidInput)?;
        let ns = File::open(&path).map_err(|e| failed(format!("cannot open {path:?}: {e}")))?;
        let peer = LinkUnspec::new_with_name("eth0")
            .address(pod_mac(pod.index).to_vec())
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let mut veth =
            LinkVeth::new(name, "eth0").set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
        if let Some(c) = controller {
            veth = veth.controller(c);
        }
        let done = self.handle.link().add(veth.up().build()).execute().await;
        // The descriptor must stay open until the kernel has moved the peer.
        drop(ns);
        done.map_err(|e| self.fail(&format!("creating the veth {name} of {:?}", pod.netns), e))
    }

    /// Adds (or, when already there, keeps) `ip/prefix` on link `index`.
    pub async fn replace_address(
        &self,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
        what: &str,
    ) -> Result<(), ProviderError> {
        self.handle
            .address()
            .add(index, IpAddr::V4(ip), prefix)
            .replace()
            .execute()
            .await
            .map_err(|e| self.fail(&format!("adding {ip}/{prefix} to {what}"), e))
    }

    /// Routes `dest/prefix` straight out of link `index` (scope link: the destination is
    /// resolved by ARP on that link, no gateway), replacing any route to the same prefix.
    pub async fn replace_link_route(
        &self,
        dest: Ipv4Addr,
        prefix: u8,
        index: u32,
        what: &str,
    ) -> Result<(), ProviderError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dest, prefix)
            .output_interface(index)
            .scope(RouteScope::Link)
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| self.fail(&format!("routing {dest}/{prefix} via {what}"), e))
    }

    /// Waits until every link named in `names` is operationally up (carrier and queue active).
    pub async fn wait_oper_up(&self, names: &[String]) -> Result<(), ProviderError> {
        self.wait_links("links not operational", |links| {
            names
                .iter()
                .filter(|want| {
                    !links
                        .iter()
                        .any(|l| link_name(l) == Some(want.as_str()) && oper_up(l))
                })
                .cloned()
                .collect()
        })
        .await
    }
}

/// Writes sysctls of namespace `netns`: each `(key, value)` names a file under `/proc/sys/net/`
/// (`ipv4/ip_forward`). The files are opened by a thread that has entered the namespace, because
/// the kernel resolves `/proc/sys/net` to the network namespace of the thread that opens it (not
/// of the process, unlike `/proc/net`); a test reads values back from two namespaces to check it.
/// Keys are the provider's own (fixed words and link names such as `x3`), refused if they could
/// leave `/proc/sys/net`; nothing is ever handed to a shell or `sysctl`.
pub async fn write_sysctls(
    netns: &str,
    entries: Vec<(String, String)>,
) -> Result<(), ProviderError> {
    for (key, _) in &entries {
        check_sysctl_key(key).map_err(ProviderError::InvalidInput)?;
    }
    in_netns(netns, move || -> Result<(), String> {
        for (key, value) in &entries {
            let path = format!("{SYSCTL_NET}/{key}");
            std::fs::write(&path, value.as_bytes())
                .map_err(|e| format!("cannot write {value:?} to {path}: {e}"))?;
        }
        Ok(())
    })
    .await
    .map_err(failed)?
    .map_err(|e| failed(format!("{e} (in namespace {netns:?})")))
}

/// Reads one sysctl of namespace `netns` (a key as for [`write_sysctls`]), trimmed.
#[cfg(test)]
pub async fn read_sysctl(netns: &str, key: &str) -> Result<String, ProviderError> {
    check_sysctl_key(key).map_err(ProviderError::InvalidInput)?;
    let path = format!("{SYSCTL_NET}/{key}");
    in_netns(netns, move || {
        std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))
    })
    .await
    .map_err(failed)?
    .map(|v| v.trim().to_string())
    .map_err(|e| failed(format!("cannot read {e} (in namespace {netns:?})")))
}

const SYSCTL_NET: &str = "/proc/sys/net";

/// A sysctl key is `/`-separated words of letters, digits, `_`, `-` and `.` (no empty word, no
/// `.` or `..`): it stays under `/proc/sys/net`.
fn check_sysctl_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.split('/').all(|w| {
            !w.is_empty()
                && w != "."
                && w != ".."
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{key:?} is not a sysctl key under {SYSCTL_NET}"))
    }
}

/// How long links may take to become operational (see [`wait_ports_forwarding`]).
const LINK_READY_TIMEOUT: Duration = Duration::from_secs(10);

fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn oper_up(m: &LinkMessage) -> bool {
    m.attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::OperState(State::Up)))
}

fn forwarding(m: &LinkMessage) -> bool {
    m.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| match i {
            LinkInfo::PortData(InfoPortData::BridgePort(attrs)) => attrs
                .iter()
                .any(|b| matches!(b, InfoBridgePort::State(BridgePortState::Forwarding))),
            _ => false,
        }),
        _ => false,
    })
}

/// Waits until every pod's bridge port forwards.
///
/// The kernel applies a carrier change asynchronously (its link-watch work enables the bridge
/// port and activates the device's queue a moment after both veth ends are up); netlink set-up
/// finishes within milliseconds, so without this wait the first probes of a step could be sent
/// into a port that still drops them and time out as if a policy had denied them.
pub async fn wait_ports_forwarding(node: &str, pods: &[PodLink]) -> Result<(), ProviderError> {
    let nl = Netlink::open(node).await?;
    let ports: Vec<String> = pods.iter().map(|p| format!("v{}", p.index)).collect();
    nl.wait_links("bridge ports not forwarding", |links| {
        ports
            .iter()
            .filter(|want| {
                !links
                    .iter()
                    .any(|l| link_name(l) == Some(want.as_str()) && forwarding(l))
            })
            .cloned()
            .collect()
    })
    .await
}

/// Loopback is always interface 1 in a network namespace.
const LOOPBACK_INDEX: u32 = 1;

/// Sets up the node namespace: loopback, the bridge, and one veth per pod (pod end moved into the
/// pod's namespace as `eth0`, with a deterministic MAC).
pub async fn setup_node(node: &str, pods: &[PodLink]) -> Result<(), ProviderError> {
    let nl = Netlink::open(node).await?;
    nl.set_up(LOOPBACK_INDEX, "lo").await?;
    nl.handle
        .link()
        .add(LinkBridge::new("br0").up().build())
        .execute()
        .await
        .map_err(|e| nl.fail("creating bridge br0", e))?;
    attach(&nl, pods).await
}

/// Adds veths for more pods to an existing node.
pub async fn attach_pods(node: &str, pods: &[PodLink]) -> Result<(), ProviderError> {
    let nl = Netlink::open(node).await?;
    attach(&nl, pods).await
}

/// One netlink request per pod: `v<index>` in the node, enslaved to `br0` and up, its peer `eth0`
/// created directly in the pod's namespace (see [`Netlink::add_veth`]).
async fn attach(nl: &Netlink, pods: &[PodLink]) -> Result<(), ProviderError> {
    let bridge = nl.index_of("br0").await?;
    // Owned inputs: the futures must not borrow from the iterator (they cross await points).
    let pods: Vec<PodLink> = pods.to_vec();
    let jobs = pods.into_iter().map(|p| async move {
        nl.add_veth(&format!("v{}", p.index), &p, Some(bridge))
            .await
    });
    let mut results = futures::stream::iter(jobs).buffer_unordered(NETLINK_PIPELINE);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(())
}

/// Inside a pod: loopback and `eth0` up, the pod's address, a default route through `eth0` (so any
/// address plan works on one bridge), and static neighbours for the session's other pods (see
/// [`MAX_STATIC_NEIGHBOURS`]).
pub async fn setup_pod(pod: &PodLink, all: &[PodLink]) -> Result<(), ProviderError> {
    let nl = &Netlink::open(&pod.netns).await?;
    nl.set_up(LOOPBACK_INDEX, "lo").await?;
    let eth0 = nl.index_of("eth0").await?;
    nl.set_up(eth0, "eth0").await?;
    nl.handle
        .address()
        .add(eth0, IpAddr::V4(pod.ip), 32)
        .execute()
        .await
        .map_err(|e| nl.fail(&format!("adding {}/32 to eth0", pod.ip), e))?;
    let default = RouteMessageBuilder::<Ipv4Addr>::new()
        .output_interface(eth0)
        .scope(RouteScope::Link)
        .build();
    nl.handle
        .route()
        .add(default)
        .execute()
        .await
        .map_err(|e| nl.fail("adding the default route via eth0", e))?;
    let neighbours: Vec<(Ipv4Addr, [u8; 6])> = if all.len() <= MAX_STATIC_NEIGHBOURS {
        all.iter()
            .filter(|o| o.index != pod.index)
            .map(|o| (o.ip, pod_mac(o.index)))
            .collect()
    } else {
        Vec::new()
    };
    if !neighbours.is_empty() {
        let count = neighbours.len();
        in_netns(&pod.netns, move || add_neighbours(eth0, &neighbours))
            .await
            .map_err(failed)?
            .map_err(|e| failed(format!("adding {count} neighbours in {:?}: {e}", pod.netns)))?;
    }
    // Carrier is applied asynchronously: wait until eth0 is operational (its queue active).
    nl.wait_oper_up(&["eth0".into()]).await
}

/// Neighbour requests sent in one `sendmsg` (about 60 bytes each, well within a socket's send
/// buffer).
const NEIGHBOUR_BATCH: usize = 1024;

/// Adds permanent neighbours on interface `eth0` of the calling thread's namespace, batched:
/// the kernel processes every request of one `sendmsg` in that call, so n × (n − 1) entries of a
/// big session cost a few thousand system calls instead of one request/acknowledgement round
/// trip each. Only the last request of a batch asks for an acknowledgement; a failing one is
/// answered with an error anyway, before it.
fn add_neighbours(eth0: u32, entries: &[(Ipv4Addr, [u8; 6])]) -> Result<(), String> {
    use rtnetlink::packet_core::{
        NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    };
    use rtnetlink::packet_route::neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourMessage,
    };
    use rtnetlink::packet_route::route::RouteType;
    use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
    use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

    let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| format!("netlink socket: {e}"))?;
    sock.bind_auto().map_err(|e| format!("netlink bind: {e}"))?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(|e| format!("netlink connect: {e}"))?;
    // Errors then carry only the header of the failed request, not the request itself.
    let _ = sock.set_cap_ack(true);
    let mut seq = 0u32;
    for chunk in entries.chunks(NEIGHBOUR_BATCH) {
        let mut buf = Vec::with_capacity(chunk.len() * 64);
        for (k, (ip, mac)) in chunk.iter().enumerate() {
            let mut m = NeighbourMessage::default();
            m.header.family = AddressFamily::Inet;
            m.header.ifindex = eth0;
            m.header.state = NeighbourState::Permanent;
            m.header.kind = RouteType::Unspec;
            m.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(*ip)));
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
            let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(m));
            req.header.flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE;
            if k + 1 == chunk.len() {
                req.header.flags |= NLM_F_ACK;
            }
            seq += 1;
            req.header.sequence_number = seq;
            req.finalize();
            let at = buf.len();
            buf.resize(at + req.buffer_len(), 0);
            req.serialize(&mut buf[at..]);
        }
        let sent = sock
            .send(&buf, 0)
            .map_err(|e| format!("netlink send: {e}"))?;
        if sent != buf.len() {
            return Err(format!("netlink took {sent} of {} bytes", buf.len()));
        }
        // Read answers until the acknowledgement of the batch's last request.
        let mut done = false;
        while !done {
            let (data, _) = sock
                .recv_from_full()
                .map_err(|e| format!("netlink receive: {e}"))?;
            let mut at = 0;
            while at < data.len() && !done {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[at..])
                    .map_err(|e| format!("netlink answer: {e}"))?;
                if let NetlinkPayload::Error(e) = &msg.payload {
                    if let Some(code) = e.code {
                        let idx = (msg.header.sequence_number as usize).saturating_sub(1);
                        let ip = entries
                            .get(idx)
                            .map(|(ip, _)| ip.to_string())
                            .unwrap_or_default();
                        return Err(format!(
                            "neighbour {ip}: {}",
                            std::io::Error::from_raw_os_error(-code.get())
                        ));
                    }
                    done = msg.header.sequence_number == seq;
                }
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err("netlink answer of length 0".into());
                }
                at += len;
            }
        }
    }
    Ok(())
}

/// Replaces a pod's nftables table in one transaction: `nft -j -f -` reading the JSON document,
/// started from a thread inside the pod's namespace (the child inherits it). The namespace name
/// is never an argument, and the ruleset is JSON, never nft's own language.
pub async fn nft_apply(netns: &str, json: String) -> Result<(), ProviderError> {
    let shown = format!("nft -j -f - (in namespace {netns:?})");
    let out = in_netns(netns, move || {
        let mut child = std::process::Command::new("nft")
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write as _;
            stdin.write_all(json.as_bytes())?;
        }
        child.wait_with_output()
    })
    .await
    .map_err(failed)?
    .map_err(|e| failed(format!("cannot run `{shown}`: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_membership_is_exact() {
        assert!(belongs_to_run("netpolc-abc--s0-node", "abc"));
        assert!(belongs_to_run("netpolc-abc--s12-x.a", "abc"));
        assert_eq!(session_prefix("abc", 3), "netpolc-abc--s3-");
        assert!(belongs_to_run(
            &format!("{}node", session_prefix("a-s1", 0)),
            "a-s1"
        ));
        // Run ids that prefix each other never match each other's names.
        assert!(!belongs_to_run("netpolc-a-s1--s0-node", "a"));
        assert!(!belongs_to_run("netpolc-a--s0-node", "a-s1"));
        assert!(!belongs_to_run("netpolc-abcd--s0-node", "abc"));
        assert!(!belongs_to_run("netpolc-abc--s-node", "abc"));
        assert!(!belongs_to_run("netpolc-abc--s0-", "abc"));
        assert!(!belongs_to_run("netpolc-abc--x0-node", "abc"));
        assert!(!belongs_to_run("other-abc--s0-node", "abc"));
        // The old scheme is recognised as such and never attributed to a run.
        assert_eq!(run_of("netpolc-abc-s0-node"), None);
        assert!(is_legacy("netpolc-abc-s0-node"));
        assert!(is_legacy("netpolc-a-s1-s0-x.a"));
        assert!(!is_legacy("netpolc-abc--s0-node"));
        assert!(!is_legacy("cni-1234"));
    }

    #[test]
    fn macs() {
        assert_eq!(pod_mac(0x010203), [0x02, 0x6e, 0x70, 0x01, 0x02, 0x03]);
        assert_eq!(pod_mac(0x01_00_00_00), [0x02, 0x6e, 0x70, 0, 0, 0]);
    }

    #[test]
    fn sysctl_keys_stay_under_proc_sys_net() {
        for ok in [
            "ipv4/ip_forward",
            "ipv4/conf/x12/proxy_arp",
            "ipv6/conf/br0.5/mtu",
        ] {
            assert!(check_sysctl_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/ipv4/ip_forward",
            "ipv4//x",
            "ipv4/../../kernel/x",
            "ipv4/./x",
            "a b",
            "x\n",
        ] {
            assert!(check_sysctl_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn namespace_names_are_one_file_name() {
        for ok in [
            "netpolc-r-s0-x.a",
            "a\nnetns exec x touch marker",
            "$(id); `id` 'q\" ü",
            "...",
        ] {
            assert_eq!(
                netns_path(ok).map(|p| p.file_name().map(|f| f.to_os_string())),
                Ok(Some(ok.into())),
                "{ok:?}"
            );
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../../etc/passwd",
            "a\0b",
            &"x".repeat(256),
        ] {
            assert!(netns_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_netns_name(&"x".repeat(255)).is_ok());
    }
}
