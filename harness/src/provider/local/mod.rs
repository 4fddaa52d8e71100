//! The hermetic local dataplane: network namespaces, a bridge, nftables — real packets on this
//! machine, no cluster.
//!
//! Each session (one scenario) gets a "node" namespace with a bridge and one namespace per pod
//! (see [`netns`]). The harness serves every port itself, from inside the pod namespaces
//! ([`sockets`]): each pod serves its declared container ports and every probe port of the
//! scenario (TCP accepts and closes, UDP echoes). The `nftables` CNI compiles each step with
//! [`crate::cni::nftables`] and replaces every changed pod's table atomically; `none` installs
//! nothing. Faults are applied by the compiler (see [`crate::cni::faults`]). With
//! `enforce_delay` the rules of each step are installed that long after the step starts, like a
//! CNI that converges slowly.
//!
//! Probing is bounded by what the machine grants ([`budget`]): one descriptor budget for all
//! sessions of the platform, chunks of probes per source pod, a bounded number of namespace
//! threads. A probe the harness could not run for lack of its own resources is a
//! [`Connectivity::Harness`] observation, never a blocked or failed connection.
//!
//! Requires root, and the `nft` binary for the `nftables` CNI (fed JSON, the only program the
//! provider runs). Namespaces, links, addresses, routes and neighbours are made with system calls
//! and netlink; `ip` (iproute2) is only what the printed reproduction commands use.

mod budget;
mod external;
mod netns;
mod sockets;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::task::JoinHandle;

use crate::cni::faults::{Fault, FaultSet};
use crate::cni::nftables;
use crate::model::{PodRef, Probe, Protocol};
use crate::probe::{Connectivity, Observation, ProbeRequest};
use crate::scenario::{Scenario, Step};
use crate::service::{self, ProbeMode};

use super::{Platform, PlatformInfo, ProviderError, Session};

pub use budget::Limits as ProbeLimits;
pub use netns::{PREFIX, is_legacy, run_of, session_prefix};

use super::cleanup::{Report, Sweep, Target, sweep_blocking};
use super::lease::{self, Inspection, LeaseDir, RunLease, ThisMachine};

/// The local CNIs: `nftables` enforces, `none` ignores policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalCni {
    Nftables,
    None,
}

impl LocalCni {
    pub fn name(self) -> &'static str {
        match self {
            LocalCni::Nftables => "nftables",
            LocalCni::None => "none",
        }
    }
}

impl FromStr for LocalCni {
    type Err = ProviderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nftables" => Ok(LocalCni::Nftables),
            "none" => Ok(LocalCni::None),
            other => Err(ProviderError::InvalidInput(format!(
                "unknown CNI {other:?} for the local provider (expected nftables or none)"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub run_id: String,
    pub cni: LocalCni,
    pub faults: Vec<Fault>,
    /// Install each step's rules this long after the step starts (`--enforce-delay-ms`).
    pub enforce_delay: Duration,
    /// Install kube-proxy-like service NAT in every pod namespace (see
    /// [`crate::cni::service_nat`]): needed by `--probe-mode service-ip`, and needs `nft` on
    /// either CNI.
    pub service_nat: bool,
}

impl LocalOptions {
    pub fn new(run_id: impl Into<String>, cni: LocalCni) -> Self {
        LocalOptions {
            run_id: run_id.into(),
            cni,
            faults: Vec::new(),
            enforce_delay: Duration::ZERO,
            service_nat: false,
        }
    }
}

/// Sessions run at once: each is a handful of processes at setup and then sockets only, so
/// several fit on a small machine and a directory of scenarios takes seconds.
const MAX_PARALLEL: usize = 16;

/// Pods set up (netlink connections) or rulesets installed (`nft` processes) at once.
const SETUP_CONCURRENCY: usize = 8;

pub struct LocalPlatform {
    opts: LocalOptions,
    budget: budget::Budget,
    faults: FaultSet,
    /// `Err(why)` when the kernel cannot create SCTP sockets.
    sctp: Result<(), String>,
    environment: BTreeMap<String, String>,
}

impl LocalPlatform {
    /// Checks prerequisites (root, `nft` for the nftables CNI): missing →
    /// `ProviderError::Prerequisite`.
    pub fn new(opts: LocalOptions) -> Result<Self, ProviderError> {
        lease::check_run_id(&opts.run_id).map_err(ProviderError::InvalidInput)?;
        if opts.cni == LocalCni::None && !opts.faults.is_empty() {
            return Err(ProviderError::InvalidInput(
                "faults apply to the nftables CNI; the none CNI installs no rules".into(),
            ));
        }
        check_root()?;
        // Recorded when present: reproduction commands use it, the provider itself does not.
        let ip = tool_version("ip", &["-V"], "apt-get install -y iproute2").ok();
        let nft = match (opts.cni, opts.service_nat) {
            (LocalCni::Nftables, _) | (LocalCni::None, true) => Some(tool_version(
                "nft",
                &["--version"],
                "apt-get install -y nftables",
            )?),
            (LocalCni::None, false) => None,
        };
        let budget = budget::Budget::for_this_process();
        let mut environment = BTreeMap::new();
        if let Ok(k) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
            environment.insert("kernel".into(), k.trim().to_string());
        }
        if let Some(ip) = ip {
            environment.insert("ip".into(), ip);
        }
        if let Some(nft) = nft {
            environment.insert("nft".into(), nft);
        }
        let sctp = sockets::detect_sctp();
        environment.insert(
            "sctp".into(),
            if sctp.is_ok() {
                "supported"
            } else {
                "unsupported"
            }
            .into(),
        );
        if !opts.faults.is_empty() {
            let names: Vec<&str> = opts.faults.iter().map(|f| f.name()).collect();
            environment.insert("faults".into(), names.join(","));
        }
        let l = budget.limits;
        environment.insert("nofile".into(), l.nofile.to_string());
        environment.insert(
            "probe_budget".into(),
            format!(
                "{} descriptors for probes and servers (servers at most {}), {} open at start",
                l.usable, l.servers, l.open
            ),
        );
        if !opts.enforce_delay.is_zero() {
            environment.insert(
                "enforce_delay_ms".into(),
                opts.enforce_delay.as_millis().to_string(),
            );
        }
        Ok(LocalPlatform {
            budget,
            faults: FaultSet::new(opts.faults.iter().copied()),
            opts,
            sctp,
            environment,
        })
    }
}

fn check_root() -> Result<(), ProviderError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(ProviderError::Prerequisite(
            "the local dataplane creates network namespaces and must run as root \
             (run as root, e.g. with sudo)"
                .into(),
        ))
    }
}

fn tool_version(tool: &str, args: &[&str], install: &str) -> Result<String, ProviderError> {
    match std::process::Command::new(tool).args(args).output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()),
        Ok(out) => Err(ProviderError::Prerequisite(format!(
            "`{tool} {}` failed: {} ({install})",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Err(e) => Err(ProviderError::Prerequisite(format!(
            "`{tool}` is needed by the local dataplane but cannot be run ({e}): {install}"
        ))),
    }
}

impl Platform for LocalPlatform {
    type Session = LocalSession;

    fn info(&self) -> PlatformInfo {
        let mut warnings = Vec::new();
        if self.opts.cni == LocalCni::None {
            warnings.push("the `none` CNI installs no rules: NetworkPolicies are ignored".into());
        }
        if let Err(why) = &self.sctp {
            warnings.push(format!("SCTP probes are unsupported: {why}"));
        }
        if !self.faults.is_empty() {
            let names: Vec<&str> = self.faults.iter().map(|f| f.name()).collect();
            warnings.push(format!("faults injected on purpose: {}", names.join(", ")));
        }
        if !self.opts.enforce_delay.is_zero() {
            warnings.push(format!(
                "policy changes are applied {} ms after each step starts, on purpose",
                self.opts.enforce_delay.as_millis()
            ));
        }
        PlatformInfo {
            provider: "local".into(),
            cni: self.opts.cni.name().into(),
            environment: self.environment.clone(),
            warnings,
            ..Default::default()
        }
    }

    fn max_parallel(&self) -> usize {
        MAX_PARALLEL
    }

    /// The `nftables` CNI compiles the Admin and Baseline tiers into every pod's chains (see
    /// [`crate::cni::nftables`]); the `none` CNI ignores them like every policy, which its cells
    /// must show, so both are probed.
    fn cluster_policy_gap(&self, _: crate::policy::cluster::ClusterKind) -> Option<String> {
        None
    }

    fn times_each_probe(&self) -> bool {
        true
    }

    fn open(
        &self,
        n: usize,
        scenario: &Scenario,
    ) -> impl Future<Output = Result<LocalSession, ProviderError>> + Send {
        let session = LocalSession::new(
            self.opts.run_id.clone(),
            netns::session_prefix(&self.opts.run_id, n),
            self,
            scenario,
        );
        let budget = self.budget.clone();
        let name = scenario.name.clone();
        async move {
            let mut session = session?;
            // Every server the scenario will need, at once: a session never holds some server
            // descriptors while waiting for more.
            let wanted = session.server_descriptors();
            let permits = budget.servers(wanted).await.map_err(|e| {
                ProviderError::Prerequisite(format!(
                    "scenario {name} needs {} descriptors for its servers, more than the {} this \
                     process may give servers (descriptor limit {}): raise the hard limit \
                     (`ulimit -Hn`, or LimitNOFILE= for a service) or split the scenario",
                    e.wanted, e.allowed, budget.limits.nofile
                ))
            })?;
            session.server_permits = Arc::new(std::sync::Mutex::new(Some(permits)));
            Ok(session)
        }
    }

    /// Removes what this run's sessions recorded and did not remove themselves (a session that
    /// failed halfway, one dropped while an `ip` process was still creating namespaces) — never
    /// anything merely named like this run.
    fn close(&self) -> impl Future<Output = Result<(), ProviderError>> + Send {
        let run_id = self.opts.run_id.clone();
        async move {
            tokio::task::spawn_blocking(move || remove_recorded(&run_id))
                .await
                .map_err(|e| ProviderError::Failed(format!("cleanup task: {e}")))?
                .map(drop)
        }
    }
}

/// Namespaces each run of this process is creating or has created and not yet removed, by run
/// id. A name is recorded *before* it is created, so nothing a run creates escapes its own
/// cleanup, and a run removes only names it recorded.
static RECORDED: std::sync::Mutex<BTreeMap<String, BTreeSet<String>>> =
    std::sync::Mutex::new(BTreeMap::new());

fn recorded_lock() -> std::sync::MutexGuard<'static, BTreeMap<String, BTreeSet<String>>> {
    RECORDED.lock().unwrap_or_else(|p| p.into_inner())
}

fn record(run_id: &str, names: &[String]) {
    recorded_lock()
        .entry(run_id.to_string())
        .or_default()
        .extend(names.iter().cloned());
}

fn forget(run_id: &str, names: &[String]) {
    let mut g = recorded_lock();
    if let Some(set) = g.get_mut(run_id) {
        for n in names {
            set.remove(n);
        }
        if set.is_empty() {
            g.remove(run_id);
        }
    }
}

/// Removes every namespace run `run_id` of this process recorded, watching for a while for
/// namespaces an `ip` process still creates (see [`Sweep::LOCAL`]). Returns what was removed.
/// Used when the run closes and by a forced exit (a second Ctrl-C).
pub fn remove_recorded(run_id: &str) -> Result<Vec<String>, ProviderError> {
    let names: Vec<String> = recorded_lock()
        .get(run_id)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let removed = sweep_blocking(
        Sweep::LOCAL,
        || {
            let present = netns::list_netns().map_err(|e| e.to_string())?;
            Ok(names
                .iter()
                .filter(|n| present.binary_search(n).is_ok())
                .cloned()
                .collect())
        },
        |batch| netns::del_netns_blocking(batch).map_err(|e| e.to_string()),
    )
    .map_err(ProviderError::Failed)?;
    forget(run_id, &names);
    Ok(removed)
}

/// Network namespaces of run `run_id` present now (exact attribution, see [`run_of`]).
pub fn run_netns(run_id: &str) -> Result<Vec<String>, ProviderError> {
    Ok(netns::list_netns()?
        .into_iter()
        .filter(|n| netns::belongs_to_run(n, run_id))
        .collect())
}

/// How long cleanup waits for programs a dead run started (they hold its lease and may still be
/// creating namespaces) before leaving the run as live.
const ORPHAN_WAIT: Duration = Duration::from_secs(10);

/// Removes what dead local runs left: their network namespaces (every link and nftables table the
/// provider creates lives inside one, so they go too) and their lease files. See
/// [`super::cleanup`] for the rule: a plain cleanup touches only runs whose lease says they are
/// dead; `Target::Run` removes exactly that run's namespaces unless it is live; namespaces named
/// by an older netpolc, or without a lease, are left and named.
pub fn cleanup(target: &Target, leases: &LeaseDir) -> Result<Report, ProviderError> {
    let procs = ThisMachine::new();
    let mut report = Report::default();
    let all: Vec<String> = netns::list_netns()?
        .into_iter()
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    let mut by_run: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut legacy = Vec::new();
    for n in &all {
        match netns::run_of(n) {
            Some(run) => by_run.entry(run.to_string()).or_default().push(n.clone()),
            None => legacy.push(n.clone()),
        }
    }
    let mut runs: BTreeSet<String> = by_run.keys().cloned().collect();
    runs.extend(leases.runs().map_err(ProviderError::Failed)?);
    if let Target::Run(id) = target {
        runs.insert(id.clone());
    }
    runs.retain(|r| target.includes(r));
    let is_root = nix::unistd::geteuid().is_root();
    for run in runs {
        let present = by_run.get(&run).cloned().unwrap_or_default();
        let count = |n: usize| match n {
            1 => "1 namespace".to_string(),
            n => format!("{n} namespaces"),
        };
        let inspection =
            lease::inspect(leases, &run, ORPHAN_WAIT, &procs).map_err(ProviderError::Failed)?;
        // Hold the run's lease while removing, so no run with this id starts meanwhile.
        let (claim, temporary, why) = match inspection {
            Inspection::Live(l, _) => {
                if !present.is_empty() || matches!(target, Target::Run(_)) {
                    report
                        .left
                        .push(format!("run {run} ({}): {}", count(present.len()), l.why()));
                }
                continue;
            }
            Inspection::Missing if present.is_empty() => continue,
            Inspection::Missing if *target == Target::DeadRuns => {
                report.left.push(format!(
                    "run {run} ({}: {}): no lease, so whether its run is alive cannot be told \
                     (a run not started by the netpolc command, or its lease was lost); \
                     `netpolc cleanup --run-id {run}` removes them",
                    count(present.len()),
                    present.join(", ")
                ));
                continue;
            }
            Inspection::Missing => match RunLease::acquire(leases, &run, "cleanup", None) {
                Ok(l) => (None, Some(l), "named by --run-id, no lease".to_string()),
                Err(e) => {
                    report.left.push(format!("run {run}: {e}"));
                    continue;
                }
            },
            Inspection::Dead(c) => {
                let why = c.why.clone();
                (Some(c), None, why)
            }
        };
        let local_run = claim
            .as_ref()
            .and_then(|c| c.record.as_ref())
            .is_none_or(|r| r.provider == "local" || r.provider == "cleanup");
        if present.is_empty() && !local_run {
            // A dead kind or kubeconfig run: its lease is for those parts of cleanup.
            continue;
        }
        if !present.is_empty() && !is_root {
            report.errors.push(format!(
                "run {run} ({}) is dead ({why}) but removing network namespaces needs root \
                 (run `sudo netpolc cleanup`)",
                count(present.len())
            ));
            continue;
        }
        let swept = sweep_blocking(
            Sweep::LOCAL,
            || run_netns(&run).map_err(|e| e.to_string()),
            |batch| netns::del_netns_blocking(batch).map_err(|e| e.to_string()),
        );
        match swept {
            Ok(removed) => {
                for n in &removed {
                    report.removed.push(format!("netns {n} (run {run}: {why})"));
                }
                if removed.is_empty() && local_run {
                    report
                        .removed
                        .push(format!("lease of run {run} (nothing else was left: {why})"));
                }
                if local_run && let Some(c) = claim {
                    c.finish();
                }
            }
            Err(e) => report.errors.push(format!("run {run}: {e}")),
        }
        if let Some(l) = temporary {
            l.release();
        }
    }
    if !legacy.is_empty() {
        let shown: Vec<&str> = legacy.iter().take(5).map(String::as_str).collect();
        let more = legacy.len().saturating_sub(shown.len());
        let relevant = match target {
            Target::DeadRuns => true,
            Target::Run(id) => legacy
                .iter()
                .any(|n| n.starts_with(&format!("{PREFIX}{id}-"))),
        };
        if relevant {
            report.left.push(format!(
                "{} named by an older netpolc ({}{}): old names carry no lease and cannot be told \
                 apart between runs whose ids prefix each other, so netpolc never removes them; \
                 once their run is over, `ip netns del NAME` does",
                match legacy.len() {
                    1 => "1 namespace".to_string(),
                    n => format!("{n} namespaces"),
                },
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
    }
    Ok(report)
}

/// One pod realised: its namespace, bridge port index and address.
#[derive(Debug, Clone)]
struct PodState {
    link: netns::PodLink,
    /// Ports the pod serves (declared container ports and every probe port of the scenario).
    serves: BTreeSet<Probe>,
}

/// Why a (pod, port) is not served: `harness` when the harness ran short of its own resources.
#[derive(Debug, Clone)]
struct ServeError {
    message: String,
    harness: bool,
}

/// A running server and the descriptors it holds in the budget.
struct Server {
    task: JoinHandle<()>,
    _permits: budget::ServerPermits,
}

/// Running servers, keyed by (pod, port/protocol); `Err` remembers why a port cannot be served.
type Servers = HashMap<(PodRef, Probe), Result<Server, ServeError>>;

/// Descriptors a server holds: a stream listener and the one connection it handles at a time,
/// or one datagram socket.
fn server_cost(p: Probe) -> usize {
    match p.protocol {
        Protocol::Udp => 1,
        Protocol::Tcp | Protocol::Sctp => 2,
    }
}

/// Rules computed for a step and not installed yet (`enforce_delay`).
struct Pending {
    cancel: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<Result<Option<Installed>, ProviderError>>,
}

/// Rulesets installed, per pod, with their conntrack zone.
type Installed = Vec<(PodRef, nftables::PodRuleset, u16)>;

pub struct LocalSession {
    /// The run this session belongs to (its recorded namespaces are filed under it).
    run_id: String,
    prefix: String,
    node: String,
    cni: LocalCni,
    faults: FaultSet,
    sctp: Result<(), String>,
    budget: budget::Budget,
    enforce_delay: Duration,
    /// The server descriptors granted when the session opened, split off server by server.
    server_permits: Arc<std::sync::Mutex<Option<budget::ServerPermits>>>,
    /// Probe ports of every step of the scenario: every pod serves them.
    scenario_probes: BTreeSet<Probe>,
    /// Every (pod, probe) any step of the scenario serves, for the budget.
    planned_servers: BTreeSet<(PodRef, Probe)>,
    pods: BTreeMap<PodRef, PodState>,
    /// The first step applied (what the stale-updates fault keeps installing).
    first: Option<Step>,
    /// The ruleset and conntrack zone installed per pod, so unchanged pods are not touched.
    installed: BTreeMap<PodRef, (nftables::PodRuleset, u16)>,
    /// A step's rules waiting for `enforce_delay` to pass.
    pending: Option<Pending>,
    /// Whether to install service NAT, and the entries installed per pod.
    service_nat: bool,
    installed_nat: BTreeMap<PodRef, Vec<service::NatEntry>>,
    servers: Arc<tokio::sync::Mutex<Servers>>,
    /// Whether the node namespace and its bridge exist.
    created: bool,
    /// Link indices of external peers (namespaces outside the bridge).
    externals: BTreeSet<usize>,
    /// Every namespace this session created (node, pods and external peers), and so the only ones
    /// it ever deletes (a name that already existed is refused at creation, never adopted).
    /// Deleting them removes every link too, the peers' `x<index>` included.
    owned: Vec<String>,
}

impl LocalSession {
    fn new(
        run_id: String,
        prefix: String,
        platform: &LocalPlatform,
        scenario: &Scenario,
    ) -> Result<Self, ProviderError> {
        for step in &scenario.steps {
            validate_addresses(step)?;
        }
        let pods: BTreeSet<&PodRef> = scenario
            .steps
            .iter()
            .flat_map(|s| s.model.pods.keys())
            .collect();
        if pods.len() > netns::MAX_BRIDGE_PORTS {
            return Err(ProviderError::InvalidInput(format!(
                "scenario {:?} has {} pods; the local dataplane puts a scenario's pods on one Linux \
                 bridge, which holds at most {} ports",
                scenario.name,
                pods.len(),
                netns::MAX_BRIDGE_PORTS
            )));
        }
        let scenario_probes: BTreeSet<Probe> = scenario
            .steps
            .iter()
            .flat_map(|s| s.probes.iter().copied())
            .collect();
        let sctp_ok = platform.sctp.is_ok();
        let mut planned_servers = BTreeSet::new();
        for step in &scenario.steps {
            for (r, pod) in &step.model.pods {
                let declared = pod.ports.iter().map(|p| Probe::new(p.port, p.protocol));
                for probe in scenario_probes.iter().copied().chain(declared) {
                    if probe.protocol != Protocol::Sctp || sctp_ok {
                        planned_servers.insert((r.clone(), probe));
                    }
                }
            }
        }
        Ok(LocalSession {
            run_id,
            node: format!("{prefix}node"),
            prefix,
            cni: platform.opts.cni,
            faults: platform.faults.clone(),
            sctp: platform.sctp.clone(),
            budget: platform.budget.clone(),
            enforce_delay: platform.opts.enforce_delay,
            server_permits: Arc::new(std::sync::Mutex::new(None)),
            scenario_probes,
            planned_servers,
            pods: BTreeMap::new(),
            first: None,
            installed: BTreeMap::new(),
            pending: None,
            service_nat: platform.opts.service_nat,
            installed_nat: BTreeMap::new(),
            servers: Arc::new(tokio::sync::Mutex::new(HashMap::new())),
            created: false,
            externals: BTreeSet::new(),
            owned: Vec::new(),
        })
    }

    /// Descriptors every server of the scenario needs together.
    fn server_descriptors(&self) -> usize {
        self.planned_servers
            .iter()
            .map(|(_, p)| server_cost(*p))
            .sum()
    }

    /// Namespace names: `<prefix><ns>.<pod>` (a namespace name has no dot, so this is unique),
    /// or `<prefix>p<index>` when that would be too long for a file name.
    fn pod_netns(&self, r: &PodRef, index: usize) -> String {
        let name = format!("{}{}.{}", self.prefix, r.namespace, r.name);
        if name.len() <= 200 {
            name
        } else {
            format!("{}p{index}", self.prefix)
        }
    }

    /// Creates the node (first call) and every pod of `step` not yet present.
    async fn ensure_pods(&mut self, step: &Step) -> Result<(), ProviderError> {
        let mut new = Vec::new();
        for (r, pod) in &step.model.pods {
            if self.pods.contains_key(r) {
                continue;
            }
            let IpAddr::V4(ip) = pod.ip else {
                return Err(ipv6_error(r, pod.ip));
            };
            let index = self.pods.len();
            let link = netns::PodLink {
                netns: self.pod_netns(r, index),
                index,
                ip,
            };
            if pod.is_external() {
                self.externals.insert(index);
            }
            let mut serves: BTreeSet<Probe> = self.scenario_probes.clone();
            serves.extend(pod.ports.iter().map(|p| Probe::new(p.port, p.protocol)));
            self.pods.insert(
                r.clone(),
                PodState {
                    link: link.clone(),
                    serves,
                },
            );
            new.push(link);
        }
        if new.is_empty() && self.created {
            return Ok(());
        }
        let mut names: Vec<String> = new.iter().map(|l| l.netns.clone()).collect();
        let first_time = !self.created;
        if first_time {
            names.insert(0, self.node.clone());
        }
        // All or nothing; from here on, teardown knows what to remove even if setup fails halfway.
        record(&self.run_id, &names);
        netns::add_netns(&names).await?;
        self.owned.extend(names);
        self.created = true;
        // External peers (`model.externals`) sit outside the bridge (see `external`).
        let (peers, new): (Vec<netns::PodLink>, Vec<netns::PodLink>) = new
            .into_iter()
            .partition(|l| self.externals.contains(&l.index));
        if first_time {
            netns::setup_node(&self.node, &new).await?;
        } else {
            netns::attach_pods(&self.node, &new).await?;
        }
        external::attach(&self.node, &peers).await?;
        let all: Vec<netns::PodLink> = self
            .pods
            .values()
            .filter(|p| !self.externals.contains(&p.link.index))
            .map(|p| p.link.clone())
            .collect();
        let all = Arc::new(all);
        let jobs: Vec<_> = new
            .iter()
            .map(|l| {
                let (l, all) = (l.clone(), Arc::clone(&all));
                async move { netns::setup_pod(&l, &all).await }
            })
            .collect();
        all_limited(jobs).await?;
        netns::wait_ports_forwarding(&self.node, &new).await?;
        // Start the servers of the new pods.
        let wanted: Vec<(PodRef, Probe)> = self
            .pods
            .iter()
            .filter(|(_, p)| new.iter().chain(&peers).any(|l| l.index == p.link.index))
            .flat_map(|(r, p)| p.serves.iter().map(move |pr| (r.clone(), *pr)))
            .collect();
        self.ensure_servers(&wanted).await;
        Ok(())
    }

    /// Starts servers for (pod, probe) pairs not served yet, one namespace thread per pod. Each
    /// server takes its descriptors from the session's grant (servers the scenario did not plan,
    /// from what the budget has free right now).
    fn ensure_servers(
        &self,
        wanted: &[(PodRef, Probe)],
    ) -> impl Future<Output = ()> + Send + use<> {
        let servers = Arc::clone(&self.servers);
        let grant = Arc::clone(&self.server_permits);
        let budget = self.budget.clone();
        let mut by_pod: BTreeMap<PodRef, (String, BTreeSet<Probe>)> = BTreeMap::new();
        for (r, probe) in wanted {
            if probe.protocol == Protocol::Sctp && self.sctp.is_err() {
                continue;
            }
            if let Some(p) = self.pods.get(r) {
                by_pod
                    .entry(r.clone())
                    .or_insert_with(|| (p.link.netns.clone(), BTreeSet::new()))
                    .1
                    .insert(*probe);
            }
        }
        async move {
            let mut guard = servers.lock().await;
            for (r, (_, probes)) in by_pod.iter_mut() {
                probes.retain(|p| !guard.contains_key(&(r.clone(), *p)));
            }
            let jobs =
                by_pod
                    .into_iter()
                    .filter(|(_, (_, p))| !p.is_empty())
                    .map(|(r, (ns, probes))| {
                        // Permits first, so a server without descriptors is never started.
                        let permits: Vec<Option<budget::ServerPermits>> = probes
                            .iter()
                            .map(|p| {
                                let n = server_cost(*p);
                                grant
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .as_mut()
                                    .and_then(|g| g.split(n))
                                    .or_else(|| budget.try_servers(n))
                            })
                            .collect();
                        let budget = budget.clone();
                        async move {
                            let list: Vec<Probe> = probes.into_iter().collect();
                            let made = {
                                let list = list.clone();
                                let _thread = budget.thread().await;
                                netns::in_netns(&ns, move || {
                                    list.iter()
                                        .map(|p| sockets::raw_server(p.port, p.protocol))
                                        .collect::<Vec<_>>()
                                })
                                .await
                            };
                            let results: Vec<Result<Server, ServeError>> = match made {
                            Ok(socks) => socks
                                .into_iter()
                                .zip(&list)
                                .zip(permits)
                                .map(|((s, p), permit)| {
                                    let Some(permit) = permit else {
                                        return Err(ServeError {
                                            message: format!(
                                                "cannot serve {p} in {ns}: no descriptor left in \
                                                 the harness's budget for another server"
                                            ),
                                            harness: true,
                                        });
                                    };
                                    s.and_then(sockets::serve)
                                        .map(|task| Server {
                                            task,
                                            _permits: permit,
                                        })
                                        .map_err(|e| ServeError {
                                            message: format!("cannot serve {p} in {ns}: {e}"),
                                            harness: netns::is_resource_shortage(&e),
                                        })
                                })
                                .collect(),
                            Err(e) => list
                                .iter()
                                .map(|_| {
                                    Err(ServeError {
                                        message: e.message.clone(),
                                        harness: e.harness,
                                    })
                                })
                                .collect(),
                        };
                            (r, list, results)
                        }
                    });
            let done: Vec<_> = futures::future::join_all(jobs).await;
            for (r, list, results) in done {
                for (p, res) in list.into_iter().zip(results) {
                    // A server that failed for lack of resources is tried again next time.
                    if matches!(&res, Err(e) if e.harness) {
                        continue;
                    }
                    guard.insert((r.clone(), p), res);
                }
            }
        }
    }

    /// The rules `step` needs that differ from what is installed, as (pod, netns, nft JSON,
    /// ruleset, zone).
    fn changed_rules(
        &mut self,
        step: &Step,
    ) -> Vec<(PodRef, String, String, nftables::PodRuleset, u16)> {
        let first = self.first.get_or_insert_with(|| step.clone());
        let rules = nftables::compile_step(first, step, &self.faults);
        let mut changed = Vec::new();
        for (r, ruleset) in rules {
            let zone = match self.installed.get(&r) {
                Some((installed, _)) if *installed == ruleset => continue,
                // Zone 0 is the default one; cycle through the others.
                Some((_, zone)) => zone % u16::MAX + 1,
                None => 1,
            };
            if let Some(p) = self.pods.get(&r) {
                let json = ruleset.render(zone);
                changed.push((r, p.link.netns.clone(), json, ruleset, zone));
            }
        }
        changed
    }

    async fn install_rules(&mut self, step: &Step) -> Result<(), ProviderError> {
        let changed = self.changed_rules(step);
        let done = apply_rules(changed).await?;
        self.record(done);
        Ok(())
    }

    fn record(&mut self, done: Installed) {
        for (r, ruleset, zone) in done {
            self.installed.insert(r, (ruleset, zone));
        }
    }

    /// Installs `step`'s rules once `enforce_delay` has passed since `started`, in the
    /// background: the step's probing starts meanwhile, against the previous state.
    fn schedule_rules(&mut self, step: &Step, started: Instant) {
        let changed = self.changed_rules(step);
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let at = started + self.enforce_delay;
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = cancelled => return Ok(None),
            }
            apply_rules(changed).await.map(Some)
        });
        self.pending = Some(Pending { cancel, task });
    }

    /// Settles the previous step's delayed rules: cancelled if still waiting (the next step's
    /// diff then covers them), awaited if already being installed. Their failure is this
    /// call's.
    async fn settle_pending(&mut self) -> Result<(), ProviderError> {
        let Some(Pending { cancel, task }) = self.pending.take() else {
            return Ok(());
        };
        let _ = cancel.send(());
        match task.await {
            Ok(Ok(Some(done))) => {
                self.record(done);
                Ok(())
            }
            Ok(Ok(None)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(ProviderError::Failed(format!(
                "installing delayed rules failed: {e}"
            ))),
        }
    }

    /// Installs the service NAT of `step` in every pod whose entries changed: the input's
    /// Services and the per-pod ones for every probe port of the scenario (a superset of any
    /// step's, at the same ClusterIPs the plan uses; see [`service::probe_services`]).
    async fn install_service_nat(&mut self, step: &Step) -> Result<(), ProviderError> {
        let probes: Vec<Probe> = self.scenario_probes.iter().copied().collect();
        let services = service::probe_services(&step.model, &step.model.services, &probes);
        let entries = service::nat_entries(&step.model, &services);
        let json = crate::cni::service_nat::table(&entries).replace_json();
        let mut changed = Vec::new();
        for (r, p) in &self.pods {
            if self.installed_nat.get(r) != Some(&entries) {
                changed.push((r.clone(), p.link.netns.clone()));
            }
        }
        let jobs: Vec<_> = changed
            .iter()
            .map(|(_, ns)| {
                let (ns, json) = (ns.clone(), json.clone());
                async move { netns::nft_apply(&ns, json).await }
            })
            .collect();
        all_limited(jobs).await?;
        for (r, _) in changed {
            self.installed_nat.insert(r, entries.clone());
        }
        Ok(())
    }

    async fn remove_all(&mut self) -> Result<(), ProviderError> {
        if let Some(p) = self.pending.take() {
            p.task.abort();
        }
        {
            let mut guard = self.servers.lock().await;
            for (_, s) in guard.drain() {
                if let Ok(s) = s {
                    s.task.abort();
                }
            }
        }
        if self.owned.is_empty() {
            return Ok(());
        }
        netns::del_netns(&self.owned).await?;
        forget(&self.run_id, &self.owned);
        self.owned.clear();
        self.created = false;
        self.pods.clear();
        self.externals.clear();
        self.installed.clear();
        self.installed_nat.clear();
        Ok(())
    }
}

/// Replaces the changed pods' tables (each in one nft transaction).
async fn apply_rules(
    changed: Vec<(PodRef, String, String, nftables::PodRuleset, u16)>,
) -> Result<Installed, ProviderError> {
    let jobs: Vec<_> = changed
        .iter()
        .map(|(_, ns, json, _, _)| {
            let (ns, json) = (ns.clone(), json.clone());
            async move { netns::nft_apply(&ns, json).await }
        })
        .collect();
    all_limited(jobs).await?;
    Ok(changed
        .into_iter()
        .map(|(r, _, _, ruleset, zone)| (r, ruleset, zone))
        .collect())
}

fn ipv6_error(r: &PodRef, ip: IpAddr) -> ProviderError {
    ProviderError::InvalidInput(format!(
        "pod {r} has the IPv6 address {ip}: the local dataplane supports IPv4 pod addresses only"
    ))
}

fn validate_addresses(step: &Step) -> Result<(), ProviderError> {
    let mut seen: HashMap<IpAddr, &PodRef> = HashMap::new();
    for (r, pod) in &step.model.pods {
        if pod.ip.is_ipv6() {
            return Err(ipv6_error(r, pod.ip));
        }
        let broadcast = matches!(pod.ip, IpAddr::V4(v4) if v4.is_broadcast());
        if pod.ip.is_unspecified() || pod.ip.is_loopback() || pod.ip.is_multicast() || broadcast {
            return Err(ProviderError::InvalidInput(format!(
                "pod {r} has the address {} which cannot be a pod address",
                pod.ip
            )));
        }
        if let Some(other) = seen.insert(pod.ip, r) {
            return Err(ProviderError::InvalidInput(format!(
                "pods {other} and {r} share the address {}",
                pod.ip
            )));
        }
    }
    Ok(())
}

/// Runs the jobs with at most [`SETUP_CONCURRENCY`] at once; the first error wins.
async fn all_limited<Fut>(jobs: Vec<Fut>) -> Result<(), ProviderError>
where
    Fut: Future<Output = Result<(), ProviderError>>,
{
    let mut results = futures::stream::iter(jobs).buffer_unordered(SETUP_CONCURRENCY);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(())
}

impl Session for LocalSession {
    async fn apply(&mut self, step: &Step) -> Result<(), ProviderError> {
        let started = Instant::now();
        validate_addresses(step)?;
        self.settle_pending().await?;
        self.ensure_pods(step).await?;
        if self.service_nat {
            self.install_service_nat(step).await?;
        }
        if self.cni == LocalCni::Nftables {
            if self.enforce_delay.is_zero() {
                self.install_rules(step).await?;
            } else {
                self.schedule_rules(step, started);
            }
        } else if self.first.is_none() {
            self.first = Some(step.clone());
        }
        Ok(())
    }

    fn probe(
        &self,
        batch: &[ProbeRequest],
        timeout: Duration,
    ) -> impl Future<Output = Vec<Observation>> + Send {
        // Destination ports are served on demand too (e.g. a `--probe` the steps did not list).
        let wanted: Vec<(PodRef, Probe)> = batch
            .iter()
            .map(|r| (r.to.clone(), r.probe))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let serve = self.ensure_servers(&wanted);
        // Requests grouped by source pod: one namespace thread creates each chunk's sockets.
        let mut by_source: BTreeMap<PodRef, Vec<usize>> = BTreeMap::new();
        for (i, r) in batch.iter().enumerate() {
            by_source.entry(r.from.clone()).or_default().push(i);
        }
        let sources: Vec<SourceBatch> = by_source
            .into_iter()
            .map(|(src, idx)| {
                (
                    self.pods.get(&src).map(|p| p.link.netns.clone()),
                    idx.into_iter().map(|i| (i, batch[i].clone())).collect(),
                )
            })
            .collect();
        let sctp = self.sctp.clone();
        let servers = Arc::clone(&self.servers);
        let budget = self.budget.clone();
        let n = batch.len();
        async move {
            serve.await;
            let failures: HashMap<(PodRef, Probe), ServeError> = servers
                .lock()
                .await
                .iter()
                .filter_map(|(k, v)| v.as_ref().err().map(|e| (k.clone(), e.clone())))
                .collect();
            let served: BTreeSet<(PodRef, Probe)> = servers
                .lock()
                .await
                .iter()
                .filter(|(_, v)| v.is_ok())
                .map(|(k, _)| k.clone())
                .collect();
            let known = Known {
                sctp: &sctp,
                failures: &failures,
                served: &served,
            };
            let mut out: Vec<Option<Observation>> = vec![None; n];
            let mut jobs: FuturesUnordered<_> = sources
                .into_iter()
                .map(|(ns, reqs)| probe_source(ns, reqs, timeout, &known, &budget))
                .collect();
            while let Some(done) = jobs.next().await {
                for (i, obs) in done {
                    out[i] = Some(obs);
                }
            }
            out.into_iter()
                .map(|o| {
                    o.unwrap_or_else(|| Observation {
                        result: Connectivity::Harness,
                        detail: Some("probe was not run".into()),
                        elapsed_ms: 0,
                        command: String::new(),
                    })
                })
                .collect()
        }
    }

    fn teardown(&mut self) -> impl Future<Output = Result<(), ProviderError>> + Send {
        self.remove_all()
    }
}

/// Why `--probe-mode service-name` cells are unsupported here: resolving a Service's DNS name
/// needs a cluster DNS server, which the local dataplane does not run (pods have no resolver).
pub const SERVICE_NAME_UNSUPPORTED: &str = "service-name probes need cluster DNS, which the local \
     dataplane does not provide (use --probe-mode service-ip to cross the same service NAT)";

/// One source pod's namespace (`None`: not in this session) and its requests with their indices.
type SourceBatch = (Option<String>, Vec<(usize, ProbeRequest)>);

/// What decides a probe without a packet.
struct Known<'a> {
    sctp: &'a Result<(), String>,
    failures: &'a HashMap<(PodRef, Probe), ServeError>,
    served: &'a BTreeSet<(PodRef, Probe)>,
}

/// Probes every request of one source pod, chunk by chunk: each chunk's sockets are created by
/// one namespace thread once the budget grants them, and each socket's permit is released as
/// soon as its probe ends.
async fn probe_source(
    netns: Option<String>,
    reqs: Vec<(usize, ProbeRequest)>,
    timeout: Duration,
    known: &Known<'_>,
    budget: &budget::Budget,
) -> Vec<(usize, Observation)> {
    let Some(ns) = netns else {
        return reqs
            .into_iter()
            .map(|(i, r)| {
                (
                    i,
                    error_obs(
                        format!("source pod {} is not part of this session", r.from),
                        String::new(),
                    ),
                )
            })
            .collect();
    };
    // Through a Service: its ClusterIP and service port; the pod's NAT rules translate them.
    let addr = |r: &ProbeRequest| match (&r.via, &r.service) {
        (ProbeMode::ServiceIp, Some(t)) => SocketAddr::new(IpAddr::V4(t.cluster_ip), t.port),
        _ => SocketAddr::new(r.to_ip, r.probe.port),
    };
    let command = |r: &ProbeRequest| sockets::command(&ns, addr(r), r.probe.protocol, timeout);
    // Requests that can be decided without a packet.
    let mut out = Vec::with_capacity(reqs.len());
    let mut live = Vec::with_capacity(reqs.len());
    for (i, r) in reqs {
        let key = (r.to.clone(), r.probe);
        let unsupported = |why: String| Observation {
            result: Connectivity::Unsupported,
            detail: Some(why),
            elapsed_ms: 0,
            command: String::new(),
        };
        if r.via == ProbeMode::ServiceName {
            out.push((i, unsupported(SERVICE_NAME_UNSUPPORTED.into())));
        } else if let Some(why) = r.missing_service() {
            out.push((i, unsupported(why)));
        } else if r.probe.protocol == Protocol::Sctp
            && let Err(why) = known.sctp
        {
            out.push((
                i,
                Observation {
                    result: Connectivity::Unsupported,
                    detail: Some(why.clone()),
                    elapsed_ms: 0,
                    command: command(&r),
                },
            ));
        } else if !matches!(r.to_ip, IpAddr::V4(_)) {
            out.push((
                i,
                error_obs(format!("{} is not an IPv4 address", r.to_ip), command(&r)),
            ));
        } else if let Some(e) = known.failures.get(&key) {
            out.push((i, serve_error_obs(e, command(&r))));
        } else if !known.served.contains(&key) {
            // Its server could not start for lack of resources this time: not the dataplane's.
            out.push((
                i,
                harness_obs(
                    format!(
                        "no server for {} on {} yet (harness resources)",
                        r.probe, r.to
                    ),
                    command(&r),
                ),
            ));
        } else {
            live.push((i, r));
        }
    }
    let chunk = budget.chunk();
    let mut rest = live.into_iter().peekable();
    while rest.peek().is_some() {
        let part: Vec<(usize, ProbeRequest)> = rest.by_ref().take(chunk).collect();
        let mut permits = budget.probes(part.len()).await;
        let protocols: Vec<Protocol> = part.iter().map(|(_, r)| r.probe.protocol).collect();
        let socks = {
            let _thread = budget.thread().await;
            netns::in_netns(&ns, move || {
                protocols
                    .into_iter()
                    .map(sockets::raw_client)
                    .collect::<Vec<_>>()
            })
            .await
        };
        let socks = match socks {
            Ok(s) => s,
            Err(e) => {
                out.extend(part.into_iter().map(|(i, r)| {
                    let cmd = command(&r);
                    let o = if e.harness {
                        harness_obs(e.message.clone(), cmd)
                    } else {
                        error_obs(e.message.clone(), cmd)
                    };
                    (i, o)
                }));
                continue;
            }
        };
        let probes = part.into_iter().zip(socks).map(|((i, r), sock)| {
            let cmd = command(&r);
            let to = addr(&r);
            // One permit per socket, released when this probe ends.
            let permit = permits.split(1);
            async move {
                let obs = match sock {
                    Err(e) if netns::is_resource_shortage(&e) => {
                        harness_obs(format!("cannot create the client socket: {e}"), cmd)
                    }
                    Err(e) => error_obs(format!("cannot create the client socket: {e}"), cmd),
                    Ok(sock) => {
                        let o = sockets::probe(sock, to, timeout).await;
                        Observation {
                            result: o.result,
                            detail: o.detail,
                            elapsed_ms: o.elapsed.as_millis() as u64,
                            command: cmd,
                        }
                    }
                };
                drop(permit);
                (i, obs)
            }
        });
        out.extend(futures::future::join_all(probes).await);
    }
    out
}

fn error_obs(detail: String, command: String) -> Observation {
    Observation {
        result: Connectivity::Error,
        detail: Some(detail),
        elapsed_ms: 0,
        command,
    }
}

fn harness_obs(detail: String, command: String) -> Observation {
    Observation {
        result: Connectivity::Harness,
        detail: Some(format!("harness: {detail}")),
        elapsed_ms: 0,
        command,
    }
}

fn serve_error_obs(e: &ServeError, command: String) -> Observation {
    if e.harness {
        harness_obs(e.message.clone(), command)
    } else {
        error_obs(e.message.clone(), command)
    }
}

impl Drop for LocalSession {
    /// A session dropped without teardown (an error path, a panic) still removes its namespaces.
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.task.abort();
        }
        if let Ok(mut guard) = self.servers.try_lock() {
            for (_, s) in guard.drain() {
                if let Ok(s) = s {
                    s.task.abort();
                }
            }
        }
        if !self.owned.is_empty() {
            // Still recorded: a cancelled setup may create one more after this, and the
            // platform's close sweeps the record until nothing appears.
            let _ = netns::del_netns_blocking(&self.owned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_str;

    fn step(ips: [&str; 2]) -> Step {
        let yaml = format!(
            "apiVersion: netpolc/v1\nkind: Scenario\nmodel:\n  pods:\n    \
             - {{name: a, ip: \"{}\", ports: [80/TCP]}}\n    \
             - {{name: b, ip: \"{}\", ports: [80/TCP]}}\nsteps: [{{name: s}}]\n",
            ips[0], ips[1]
        );
        match load_str(&yaml, "t.yaml") {
            Ok(l) => l.scenarios[0].steps[0].clone(),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn addresses_are_validated() {
        assert!(validate_addresses(&step(["10.0.0.1", "10.0.0.2"])).is_ok());
        let v6 = validate_addresses(&step(["10.0.0.1", "fd00::2"]));
        assert!(
            matches!(&v6, Err(ProviderError::InvalidInput(m)) if m.contains("IPv6")),
            "{v6:?}"
        );
        // 255.255.255.255 used to reach the dataplane and end the run with verdict `error`.
        for bad in ["127.0.0.5", "0.0.0.0", "224.0.0.1", "255.255.255.255"] {
            let r = validate_addresses(&step(["10.0.0.1", bad]));
            assert!(
                matches!(&r, Err(ProviderError::InvalidInput(m)) if m.contains("cannot be a pod address")),
                "{bad}: {r:?}"
            );
        }
        // The loader rejects duplicates too; a step built in code must not slip through.
        let mut s = step(["10.0.0.1", "10.0.0.2"]);
        if let Some(b) = s.model.pods.get_mut(&PodRef::new("default", "b")) {
            b.ip = "10.0.0.1".parse().expect("address");
        }
        let dup = validate_addresses(&s);
        assert!(
            matches!(&dup, Err(ProviderError::InvalidInput(m)) if m.contains("share")),
            "{dup:?}"
        );
    }

    #[test]
    fn cni_names_parse() {
        assert_eq!(
            "nftables".parse::<LocalCni>().ok(),
            Some(LocalCni::Nftables)
        );
        assert_eq!("none".parse::<LocalCni>().ok(), Some(LocalCni::None));
        assert!(matches!(
            "calico".parse::<LocalCni>(),
            Err(ProviderError::InvalidInput(_))
        ));
    }
}
