//! The cluster session's decisions, as pure functions of recorded API objects: which real pod
//! realises which model pod, whether it is usable, whether its SCTP servers crashed because the
//! node has no SCTP, which servers the reachability gate has seen answering, and whether a
//! Service's EndpointSlices list every pod it must reach ([`endpoints_ready`]). Tested on
//! objects shaped like what an API server returns (see the tests and `harness/tests/fixtures/kube/`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod as K8sPod};

use super::render;
use crate::model::{Model, PodRef, Probe, Workload};

/// A model pod's real counterpart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealPod {
    pub name: String,
    pub ip: IpAddr,
    /// The container probes are exec'd in (never an SCTP one: it may be crash-looping).
    pub container: String,
}

/// An SCTP server container that exited instead of listening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SctpFailure {
    pub pod: PodRef,
    pub container: String,
    /// agnhost's last log lines when the container's terminationMessagePolicy is
    /// FallbackToLogsOnError (the session sets it), else the exit reason.
    pub message: String,
}

impl SctpFailure {
    /// Whether the message says the kernel has no SCTP (rather than some other crash).
    pub fn is_missing_kernel_support(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        m.contains("protocol not supported") || m.contains("address family not supported")
    }
}

/// What one look at the pods of a model found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Realisation {
    pub found: BTreeMap<PodRef, RealPod>,
    /// Model pods without a usable real pod yet, each with the reason (waiting reasons make
    /// image pulls and crash loops visible).
    pub missing: Vec<String>,
    pub sctp_failures: Vec<SctpFailure>,
}

fn is_sctp_container(name: &str) -> bool {
    name.ends_with("-sctp")
}

/// A crashed container's message: the last termination (restarts) or the current one.
fn crash_message(c: &ContainerStatus) -> Option<String> {
    let terminated = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| c.state.as_ref().and_then(|s| s.terminated.as_ref()))?;
    let msg = terminated
        .message
        .clone()
        .filter(|m| !m.trim().is_empty())
        .or_else(|| terminated.reason.clone())
        .unwrap_or_else(|| format!("exit code {}", terminated.exit_code));
    Some(msg.trim().lines().last().unwrap_or_default().to_string())
}

/// Whether a pod can be probed: running, addressed, not being deleted, and every container ready
/// except SCTP servers that crashed (reported separately, so the run goes on without SCTP).
/// Returns the crashed SCTP containers.
fn usable(p: &K8sPod) -> Option<Vec<(String, String)>> {
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = p.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    pod_ip(p)?;
    let ready_condition = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready_condition {
        return Some(Vec::new());
    }
    let statuses = status.container_statuses.as_deref().unwrap_or(&[]);
    if statuses.is_empty() {
        return None;
    }
    let mut crashed = Vec::new();
    for c in statuses {
        if c.ready {
            continue;
        }
        if !is_sctp_container(&c.name) {
            return None;
        }
        match crash_message(c) {
            Some(m)
                if c.restart_count >= 1
                    || c.state.as_ref().is_some_and(|s| s.terminated.is_some()) =>
            {
                crashed.push((c.name.clone(), m))
            }
            _ => return None,
        }
    }
    Some(crashed)
}

pub fn pod_ip(p: &K8sPod) -> Option<IpAddr> {
    p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// Why a model pod has no usable real pod yet.
fn describe_missing(real: Option<&K8sPod>, pod: &crate::model::Pod) -> String {
    let reason = real
        .and_then(|p| p.status.as_ref())
        .map(|s| {
            let waiting: BTreeSet<String> = s
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .collect();
            let phase = s.phase.clone().unwrap_or_else(|| "Unknown".into());
            if waiting.is_empty() {
                phase
            } else {
                format!(
                    "{phase} ({})",
                    waiting.into_iter().collect::<Vec<_>>().join(", ")
                )
            }
        })
        .unwrap_or_else(|| "not created yet".into());
    format!("{} {reason}", pod.pod_ref())
}

/// Matches the model's cluster pods (externals excluded) to the real pods listed per model
/// namespace. Bare pods match by name; replica `i` of a Deployment is the i-th usable pod of that
/// workload in name order.
pub fn realise(
    model: &Model,
    listed: &BTreeMap<String, Vec<K8sPod>>,
    served: &BTreeSet<Probe>,
) -> Realisation {
    let mut out = Realisation::default();
    let empty = Vec::new();
    for pod in model.pods.values().filter(|p| !p.is_external()) {
        let pods = listed.get(&pod.namespace).unwrap_or(&empty);
        let usable_pods: Vec<(&K8sPod, Vec<(String, String)>)> = pods
            .iter()
            .filter_map(|p| usable(p).map(|c| (p, c)))
            .collect();
        let real = match &pod.workload {
            Workload::Pod => usable_pods
                .iter()
                .find(|(p, _)| p.metadata.name.as_deref() == Some(pod.name.as_str())),
            Workload::Deployment { name, replica } => {
                let mut of: Vec<&(&K8sPod, Vec<(String, String)>)> = usable_pods
                    .iter()
                    .filter(|(p, _)| {
                        p.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(render::WORKLOAD_LABEL))
                            == Some(name)
                    })
                    .collect();
                of.sort_by(|a, b| a.0.metadata.name.cmp(&b.0.metadata.name));
                of.get(*replica as usize).copied()
            }
            Workload::External => None,
        };
        match real.and_then(|(p, c)| Some((p.metadata.name.clone()?, pod_ip(p)?, c))) {
            Some((name, ip, crashed)) => {
                out.sctp_failures
                    .extend(crashed.iter().map(|(c, m)| SctpFailure {
                        pod: pod.pod_ref(),
                        container: c.clone(),
                        message: m.clone(),
                    }));
                out.found.insert(
                    pod.pod_ref(),
                    RealPod {
                        name,
                        ip,
                        container: render::exec_container(pod, served),
                    },
                );
            }
            None => {
                let by_name = pods
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(pod.name.as_str()));
                out.missing.push(describe_missing(by_name, pod));
            }
        }
    }
    out
}

/// The reason SCTP cells become unsupported after SCTP servers crashed.
pub fn sctp_unsupported_reason(failures: &[SctpFailure]) -> Option<String> {
    let f = failures.first()?;
    let cause = if failures.iter().any(SctpFailure::is_missing_kernel_support) {
        "the nodes' kernel has no SCTP"
    } else {
        "SCTP servers cannot start on this cluster"
    };
    Some(format!(
        "{cause}: agnhost porter in {} ({}) exited with {:?}; SCTP cells are not judged",
        f.pod, f.container, f.message
    ))
}

/// One destination the reachability gate waits for: a pod serving a port.
pub type Server = (PodRef, Probe);

/// The gate's bookkeeping: the (source, server) pairs not yet seen connecting. Like upstream's
/// `waitForHTTPServers`, every pod must reach every other pod's servers (loopback excepted)
/// before a policy is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gate {
    pub waiting: BTreeSet<(PodRef, Server)>,
}

impl Gate {
    /// Every (other pod, pod, served probe) of the model's cluster pods, except SCTP when off.
    pub fn new(model: &Model, served: &BTreeSet<Probe>, sctp: bool) -> Self {
        let pods: Vec<&crate::model::Pod> =
            model.pods.values().filter(|p| !p.is_external()).collect();
        let mut waiting = BTreeSet::new();
        for p in &pods {
            let mut s: BTreeSet<Probe> = served.clone();
            s.extend(p.ports.iter().map(|c| Probe::new(c.port, c.protocol)));
            for pr in s
                .into_iter()
                .filter(|pr| sctp || pr.protocol != crate::model::Protocol::Sctp)
            {
                for from in pods.iter().filter(|f| f.pod_ref() != p.pod_ref()) {
                    waiting.insert((from.pod_ref(), (p.pod_ref(), pr)));
                }
            }
        }
        Gate { waiting }
    }

    /// Adds every (cluster pod, external peer of the model, probe it serves) pair: a peer
    /// container that is not answering yet must not make an expected-deny cell pass either.
    /// `externals` maps external names to the probes their real peer serves (those without one
    /// are not probed at all).
    pub fn with_externals(
        mut self,
        model: &Model,
        externals: &BTreeMap<String, BTreeSet<Probe>>,
        sctp: bool,
    ) -> Self {
        let sources: Vec<PodRef> = model
            .pods
            .values()
            .filter(|p| !p.is_external())
            .map(|p| p.pod_ref())
            .collect();
        for peer in model.pods.values().filter(|p| p.is_external()) {
            let Some(served) = externals.get(&peer.name) else {
                continue;
            };
            for pr in served
                .iter()
                .filter(|pr| sctp || pr.protocol != crate::model::Protocol::Sctp)
            {
                for from in &sources {
                    self.waiting.insert((from.clone(), (peer.pod_ref(), *pr)));
                }
            }
        }
        self
    }

    /// Records a gate pass: the pairs that connected leave the waiting set.
    pub fn record(&mut self, connected: impl IntoIterator<Item = (PodRef, Server)>) {
        for s in connected {
            self.waiting.remove(&s);
        }
    }

    pub fn is_open(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The probes of the next gate pass.
    pub fn requests(&self) -> Vec<(PodRef, Server)> {
        self.waiting.iter().cloned().collect()
    }
}

/// The label the EndpointSlice controller puts on a Service's slices.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What a Service's EndpointSlices must show before probes through it mean anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointWant {
    /// The real addresses of the pods the Service must select, and only those.
    pub addresses: BTreeSet<IpAddr>,
    /// Service ports (name, protocol) every endpoint must carry: those whose `targetPort`
    /// resolves on the endpoint pods (a named `targetPort` a pod lacks gives no port there).
    pub ports: BTreeSet<(Option<String>, crate::model::Protocol)>,
}

/// Whether an endpoint is ready: `ready` unset means ready (the API says to read an unknown
/// state so), a terminating endpoint never is.
fn endpoint_ready(e: &k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    let c = e.conditions.as_ref();
    c.and_then(|c| c.ready).unwrap_or(true) && !c.and_then(|c| c.terminating).unwrap_or(false)
}

/// What `svc`'s slices must show, given the real pods: the addresses of its model endpoints
/// (`None` when one of them is not realised) and its ports that resolve on all of them.
pub fn endpoint_want(
    model: &Model,
    svc: &crate::service::Service,
    realised: &BTreeMap<PodRef, RealPod>,
) -> Option<EndpointWant> {
    let eps = svc.endpoints(model);
    let addresses = eps
        .iter()
        .map(|r| realised.get(r).map(|p| p.ip))
        .collect::<Option<BTreeSet<IpAddr>>>()?;
    let ports = svc
        .ports
        .iter()
        .filter(|sp| eps.iter().all(|r| svc.target_on(model, sp, r).is_some()))
        .map(|sp| (sp.name.clone(), sp.protocol))
        .collect();
    Some(EndpointWant { addresses, ports })
}

/// Decides, from the Service's EndpointSlices as listed, whether it routes to exactly the wanted
/// pods on every wanted port: `Ok` when it does, else why not (missing, not ready, stale or
/// unexpected addresses, missing ports). Addresses may be spread over several slices; a slice's
/// ports apply to every endpoint in it.
pub fn endpoints_ready(
    want: &EndpointWant,
    slices: &[k8s_openapi::api::discovery::v1::EndpointSlice],
) -> Result<(), String> {
    let mut ready: BTreeMap<IpAddr, BTreeSet<(Option<String>, crate::model::Protocol)>> =
        BTreeMap::new();
    let mut not_ready = BTreeSet::new();
    for slice in slices {
        let ports: BTreeSet<(Option<String>, crate::model::Protocol)> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let proto = p.protocol.as_deref().unwrap_or("TCP").parse().ok()?;
                Some((p.name.clone().filter(|n| !n.is_empty()), proto))
            })
            .collect();
        for e in slice.endpoints.iter().flatten() {
            for a in &e.addresses {
                let Ok(ip) = a.parse::<IpAddr>() else {
                    continue;
                };
                if endpoint_ready(e) {
                    ready.entry(ip).or_default().extend(ports.iter().cloned());
                } else {
                    not_ready.insert(ip);
                }
            }
        }
    }
    let mut problems = Vec::new();
    let missing: Vec<String> = want
        .addresses
        .iter()
        .filter(|ip| !ready.contains_key(ip))
        .map(|ip| {
            if not_ready.contains(ip) {
                format!("{ip} (listed, not ready)")
            } else {
                ip.to_string()
            }
        })
        .collect();
    if !missing.is_empty() {
        problems.push(format!("no ready endpoint for {}", missing.join(", ")));
    }
    let extra: Vec<String> = ready
        .keys()
        .filter(|ip| !want.addresses.contains(ip))
        .map(IpAddr::to_string)
        .collect();
    if !extra.is_empty() {
        problems.push(format!(
            "endpoints of pods it must not select: {}",
            extra.join(", ")
        ));
    }
    for (ip, have) in &ready {
        if !want.addresses.contains(ip) {
            continue;
        }
        let lacking: Vec<String> = want
            .ports
            .iter()
            .filter(|p| !have.contains(p))
            .map(|(n, proto)| format!("{}/{proto}", n.as_deref().unwrap_or("(unnamed)")))
            .collect();
        if !lacking.is_empty() {
            problems.push(format!("{ip} lacks port {}", lacking.join(", ")));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_str;

    fn fixture(name: &str) -> K8sPod {
        let path = format!(
            "{}/tests/fixtures/kube/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn model() -> Model {
        let yaml = r#"
apiVersion: netpolc/v1
kind: Scenario
model:
  upstream: {namespaces: [x], pods: [a], ports: [80], protocols: [TCP, SCTP]}
"#;
        match load_str(yaml, "m.yaml") {
            Ok(mut l) => l.scenarios.remove(0).steps.remove(0).model,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn served() -> BTreeSet<Probe> {
        [
            "80/TCP".parse().expect("probe"),
            "80/SCTP".parse().expect("probe"),
        ]
        .into()
    }

    fn listed(p: K8sPod) -> BTreeMap<String, Vec<K8sPod>> {
        [("x".to_string(), vec![p])].into()
    }

    #[test]
    fn a_ready_pod_is_realised_with_its_ip_and_a_tcp_exec_container() {
        let r = realise(&model(), &listed(fixture("pod-ready")), &served());
        assert!(r.missing.is_empty(), "{:?}", r.missing);
        let a = &r.found[&PodRef::new("x", "a")];
        assert_eq!(a.ip.to_string(), "10.244.1.5");
        assert_eq!(a.container, "serve-80-tcp");
        assert!(r.sctp_failures.is_empty());
    }

    /// The pod of a node without SCTP: porter's container restarts with agnhost's log line as its
    /// termination message; the TCP container is ready. The pod is usable, SCTP is not.
    #[test]
    fn crash_looping_sctp_servers_are_reported_not_waited_for() {
        let r = realise(&model(), &listed(fixture("pod-sctp-crashloop")), &served());
        assert!(r.missing.is_empty(), "{:?}", r.missing);
        assert_eq!(r.sctp_failures.len(), 1);
        let f = &r.sctp_failures[0];
        assert_eq!(f.container, "serve-80-sctp");
        assert!(f.is_missing_kernel_support(), "{f:?}");
        let why = sctp_unsupported_reason(&r.sctp_failures).expect("a reason");
        assert!(why.starts_with("the nodes' kernel has no SCTP"), "{why}");
        assert!(why.contains("protocol not supported"), "{why}");
    }

    #[test]
    fn a_crashing_tcp_server_or_a_pulling_image_keeps_the_pod_missing() {
        let mut p = fixture("pod-sctp-crashloop");
        if let Some(cs) = p
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
        {
            for c in cs.iter_mut() {
                c.ready = false;
            }
        }
        let r = realise(&model(), &listed(p), &served());
        assert_eq!(r.found.len(), 0);
        assert!(r.missing[0].starts_with("x/a Running"), "{:?}", r.missing);

        let r = realise(&model(), &listed(fixture("pod-pulling")), &served());
        assert_eq!(r.missing, ["x/a Pending (ContainerCreating)"]);
        let r = realise(&model(), &BTreeMap::new(), &served());
        assert_eq!(r.missing, ["x/a not created yet"]);
    }

    #[test]
    fn gate_waits_for_every_pair_and_never_asks_a_pod_itself() {
        let yaml = r#"
apiVersion: netpolc/v1
kind: Scenario
model:
  upstream: {namespaces: [x], pods: [a, b], ports: [80], protocols: [TCP, SCTP]}
"#;
        let m = match load_str(yaml, "m.yaml") {
            Ok(mut l) => l.scenarios.remove(0).steps.remove(0).model,
            Err(e) => panic!("{e:?}"),
        };
        let mut g = Gate::new(&m, &BTreeSet::new(), false);
        assert_eq!(g.waiting.len(), 2, "SCTP left out: {:?}", g.waiting);
        let reqs = g.requests();
        assert!(reqs.iter().all(|(from, (to, _))| from != to));
        let (xa, xb) = (PodRef::new("x", "a"), PodRef::new("x", "b"));
        let tcp: Probe = "80/TCP".parse().expect("probe");
        g.record([(xb.clone(), (xa.clone(), tcp))]);
        assert!(!g.is_open());
        assert_eq!(g.requests(), [(xa.clone(), (xb.clone(), tcp))]);
        g.record([(xa, (xb, tcp))]);
        assert!(g.is_open());
        assert_eq!(Gate::new(&m, &BTreeSet::new(), true).waiting.len(), 4);
    }

    #[test]
    fn the_gate_waits_for_started_external_peers_only() {
        let yaml = r#"
apiVersion: netpolc/v1
kind: Scenario
name: g
model:
  namespaces: [{name: x}]
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ports: [80/TCP]}
    - {namespace: x, name: b, labels: {pod: b}, ports: [80/TCP]}
  externals: [{name: web, ports: [80/TCP]}, {name: db, ports: [5432/TCP]}]
probes: ["80/TCP"]
steps: [{name: s}]
"#;
        let sc = load_str(yaml, "g.yaml").expect("loads").scenarios;
        let model = &sc[0].steps[0].model;
        let served: BTreeSet<Probe> = ["80/TCP".parse().expect("probe")].into();
        let plain = Gate::new(model, &served, true);
        assert_eq!(plain.waiting.len(), 2, "a<->b only: {:?}", plain.waiting);
        let externals: BTreeMap<String, BTreeSet<Probe>> = [(
            "web".to_string(),
            ["80/TCP".parse().expect("p"), "9/SCTP".parse().expect("p")].into(),
        )]
        .into();
        let g = Gate::new(model, &served, false).with_externals(model, &externals, false);
        let web = PodRef::new(crate::model::EXTERNAL_NAMESPACE, "web");
        let to_web: Vec<_> = g.waiting.iter().filter(|(_, (to, _))| *to == web).collect();
        // Both pods wait for web's TCP server; SCTP is off; db was not started.
        assert_eq!(to_web.len(), 2, "{:?}", g.waiting);
        assert_eq!(g.waiting.len(), 4);
        assert!(
            g.waiting
                .iter()
                .all(|(from, (to, _))| from.namespace == "x" && to.name != "db")
        );
    }

    fn slices(name: &str) -> Vec<k8s_openapi::api::discovery::v1::EndpointSlice> {
        let path = format!(
            "{}/tests/fixtures/kube/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v @ serde_json::Value::Array(_)) => {
                serde_json::from_value(v).unwrap_or_else(|e| panic!("{path}: {e}"))
            }
            Ok(v) => vec![serde_json::from_value(v).unwrap_or_else(|e| panic!("{path}: {e}"))],
            Err(e) => panic!("{path}: {e}"),
        }
    }

    fn want(ips: &[&str], ports: &[&str]) -> EndpointWant {
        EndpointWant {
            addresses: ips.iter().map(|i| i.parse().expect("ip")).collect(),
            ports: ports
                .iter()
                .map(|p| (Some(p.to_string()), crate::model::Protocol::Tcp))
                .collect(),
        }
    }

    #[test]
    fn a_ready_slice_listing_the_pod_on_every_port_opens_the_service() {
        let s = slices("endpointslice-ready");
        assert_eq!(
            endpoints_ready(&want(&["192.168.0.10"], &["80-tcp", "81-tcp"]), &s),
            Ok(())
        );
        // A port the Service must route that the slice lacks.
        let e = endpoints_ready(&want(&["192.168.0.10"], &["80-tcp", "82-tcp"]), &s)
            .expect_err("82 missing");
        assert!(e.contains("lacks port 82-tcp/TCP"), "{e}");
        // Another pod's address (a stale or wrongly selected endpoint) is not the wanted one.
        let e = endpoints_ready(&want(&["192.168.0.11"], &["80-tcp"]), &s).expect_err("other");
        assert!(e.contains("no ready endpoint for 192.168.0.11"), "{e}");
        assert!(e.contains("must not select: 192.168.0.10"), "{e}");
    }

    #[test]
    fn not_ready_empty_and_terminating_endpoints_keep_the_service_closed() {
        let e = endpoints_ready(
            &want(&["192.168.0.10"], &["80-tcp"]),
            &slices("endpointslice-not-ready"),
        )
        .expect_err("not ready");
        assert!(e.contains("192.168.0.10 (listed, not ready)"), "{e}");
        // The controller's slice for a selector matching nothing: `endpoints: null`.
        let empty = slices("endpointslice-empty");
        assert!(empty[0].endpoints.as_ref().is_none_or(Vec::is_empty));
        let e = endpoints_ready(&want(&["10.244.1.7"], &["web"]), &empty).expect_err("empty");
        assert!(e.contains("no ready endpoint for 10.244.1.7"), "{e}");
        assert!(endpoints_ready(&want(&["10.244.1.7"], &["web"]), &[]).is_err());
        // Split over two slices; the second pod is terminating and not wanted: ignored.
        let split = slices("endpointslice-named-target-split");
        assert_eq!(
            endpoints_ready(&want(&["10.244.1.7"], &["web"]), &split),
            Ok(())
        );
        // Wanted, but terminating: not ready.
        let e = endpoints_ready(&want(&["10.244.1.7", "10.244.2.9"], &["web"]), &split)
            .expect_err("terminating");
        assert!(e.contains("10.244.2.9 (listed, not ready)"), "{e}");
    }

    #[test]
    fn wanted_endpoints_follow_the_model_and_named_target_ports() {
        let yaml = r#"
apiVersion: netpolc/v1
kind: Scenario
model:
  namespaces: [{name: svc}]
  pods:
    - {namespace: svc, name: api, labels: {app: api}, ports: [{port: 8080, name: http}]}
    - {namespace: svc, name: other, labels: {app: api}, ports: ["8080/TCP"]}
  services:
    - {namespace: svc, name: web, selector: {app: api}, ports: [{name: web, port: 80, targetPort: http}, {name: raw, port: 81, targetPort: 8080}]}
"#;
        let model = match load_str(yaml, "m.yaml") {
            Ok(mut l) => l.scenarios.remove(0).steps.remove(0).model,
            Err(e) => panic!("{e:?}"),
        };
        let real = |n: &str, ip: &str| {
            (
                PodRef::new("svc", n),
                RealPod {
                    name: n.into(),
                    ip: ip.parse().expect("ip"),
                    container: "c".into(),
                },
            )
        };
        let realised: BTreeMap<_, _> =
            [real("api", "10.244.1.7"), real("other", "10.244.1.8")].into();
        let w = endpoint_want(&model, &model.services[0], &realised).expect("realised");
        assert_eq!(w.addresses.len(), 2);
        // `http` is not declared on svc/other: only the numeric port is required everywhere.
        assert_eq!(
            w.ports,
            [(Some("raw".to_string()), crate::model::Protocol::Tcp)].into()
        );
        let partial: BTreeMap<_, _> = [real("api", "10.244.1.7")].into();
        assert_eq!(endpoint_want(&model, &model.services[0], &partial), None);
    }
}
