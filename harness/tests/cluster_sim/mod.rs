//! A simulated Kubernetes API server and dataplane behind [`ClusterApi`], for running the real
//! cluster session (slots, reuse, gate, SCTP detection, probing scripts) and the real engine
//! without a cluster, under tokio's paused clock. Used by `tests/kube_session.rs` and the
//! `kind_sim` benchmark.
//!
//! What it models, with configurable latencies ([`Latency`]): every API call takes `api`;
//! a namespace's `default` ServiceAccount appears `service_account` after the namespace, and pods
//! created before it are refused (403, as the ServiceAccount admission does); pods start
//! `pod_start` after creation and their servers listen `listen` later (connections before that are
//! refused); pod addresses come from `pod_base` (e.g. Calico's 192.168.0.0/16, unlike the model's
//! 10.244.0.x); policy and label changes reach the dataplane `convergence` after the API call; an
//! exec takes `exec_rtt` plus its probes, run in waves as the script says; an allowed probe
//! connects at once, a denied one times out. The dataplane is an ideal CNI: it decides with the
//! oracle over the cluster's real objects (real namespace names and labels, the applied policy
//! objects), so what the session renders and rewrites is what gets judged. Without SCTP
//! (`sctp: false`), `agnhost porter` containers crash-loop with porter's log line. External
//! peers ([`SimApi::add_external`]) are servers outside the cluster at an address of their own,
//! listening `listen` after they are added; policies see them as the oracle sees `model.externals`.
//!
//! Services: the API server allocates ClusterIPs from 10.96.200.0/24 (never the model's
//! 10.96.0.x, so a probe dialling a model address reaches nothing); the EndpointSlice controller
//! publishes one slice per Service, `endpoints` after the Service is applied, listing the pods its
//! selector matches, ready once they run (named `targetPort`s resolved on their declared ports,
//! ports a pod lacks left out of its slice); [`SimApi::withhold_endpoints`] makes it never
//! publish endpoints for a Service. The ideal kube-proxy and DNS: a probe of a ClusterIP (or of
//! `<svc>.<ns>.svc.cluster.local`) and Service port is translated to the single endpoint's
//! address and target port before the CNI decides (NetworkPolicy acts after DNAT); a Service port
//! with no endpoint rejects (REFUSED), an unknown name fails to resolve.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Namespace as K8sNamespace, Pod as K8sPod, PodCondition, PodStatus,
    Service as K8sService, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use netpol_conformance::model::{
    ContainerPort, Labels, Model, Namespace, Pod, PodRef, Probe, Protocol, Workload,
};
use netpol_conformance::policy::{ClusterKind, ClusterPolicy, CompiledPolicy};
use netpol_conformance::provider::kube::api::{ApiError, ApiResult, ClusterApi};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Latency {
    pub api: Duration,
    pub service_account: Duration,
    pub pod_start: Duration,
    pub listen: Duration,
    pub exec_rtt: Duration,
    pub convergence: Duration,
    /// From a Service's creation (or its pods' readiness) to its EndpointSlice.
    pub endpoints: Duration,
    /// From the EndpointSlice to kube-proxy's rules on every node (before that a probe of the
    /// ClusterIP is refused).
    pub proxy: Duration,
}

impl Latency {
    /// The figures of the kind benchmark: pod start 10 s, exec round trip 150 ms, CNI
    /// convergence 2 s (the probe timeout, 3 s, is the engine's).
    pub fn kind() -> Self {
        Latency {
            api: Duration::from_millis(20),
            service_account: Duration::from_millis(500),
            pod_start: Duration::from_secs(10),
            listen: Duration::from_millis(300),
            exec_rtt: Duration::from_millis(150),
            convergence: Duration::from_secs(2),
            endpoints: Duration::from_millis(800),
            proxy: Duration::from_millis(1500),
        }
    }
}

#[derive(Debug, Clone)]
struct SimPod {
    labels: Labels,
    ip: IpAddr,
    /// (container name, served probe or None for an idle container, declared ports)
    containers: Vec<(String, Option<Probe>, Vec<ContainerPort>)>,
    created: Instant,
}

#[derive(Debug, Default)]
struct State {
    namespaces: BTreeMap<String, (Labels, Instant)>,
    pods: BTreeMap<(String, String), SimPod>,
    policies: BTreeMap<(String, String), NetworkPolicy>,
    /// Cluster-wide policies applied, by (kind, name), as compiled from the applied object.
    cluster: BTreeMap<(ClusterKind, String), ClusterPolicy>,
    /// Dataplane states, oldest first: (when the change was made, model, policies, cluster-wide
    /// policies).
    history: Vec<(Instant, Model, Vec<CompiledPolicy>, Vec<ClusterPolicy>)>,
    next_ip: u32,
    /// Servers outside the cluster: name → (address, probes served, when added).
    externals: BTreeMap<String, (IpAddr, BTreeSet<Probe>, Instant)>,
    /// Services as stored (ClusterIP allocated), with when they were applied.
    services: BTreeMap<(String, String), (K8sService, Instant)>,
    next_cluster_ip: u32,
    /// Service names whose endpoints are never published.
    withheld: BTreeSet<String>,
    /// Service names kube-proxy never programs (their endpoints are published).
    unprogrammed: BTreeSet<String>,
    /// Every Service ever created: (namespace, name, ClusterIP).
    created_services: Vec<(String, String, String)>,
}

/// Counters the tests and the benchmark read.
#[derive(Debug, Default, Clone)]
pub struct SimLog {
    pub pods_created: usize,
    pub namespaces_created: usize,
    pub namespaces_deleted: usize,
    pub execs: usize,
    pub max_namespaces_alive: usize,
    /// Pods refused because their namespace had no ServiceAccount yet.
    pub refused_pods: usize,
    /// Probes answered REFUSED because the server was not listening yet.
    pub refused_not_listening: usize,
    /// Probes that reached an external peer (allowed and listening).
    pub external_connects: usize,
    pub services_applied: usize,
    /// Probes translated from a ClusterIP (or a Service's DNS name) to an endpoint.
    pub service_connects: usize,
    /// Of those, the ones that named the Service by DNS.
    pub dns_lookups: usize,
}

pub struct SimApi {
    pub latency: Latency,
    pub sctp: bool,
    /// The cluster-wide policy kinds whose CRDs are installed (the ideal CNI enforces them all);
    /// applying another kind is a 404. Default: every kind.
    pub cluster_kinds: BTreeSet<ClusterKind>,
    pod_base: Ipv4Addr,
    state: Mutex<State>,
    log: Mutex<SimLog>,
}

impl SimApi {
    pub fn new(latency: Latency, sctp: bool, pod_base: Ipv4Addr) -> Self {
        SimApi {
            latency,
            sctp,
            cluster_kinds: ClusterKind::ALL.into_iter().collect(),
            pod_base,
            state: Mutex::default(),
            log: Mutex::default(),
        }
    }

    pub fn log(&self) -> SimLog {
        self.log.lock().expect("log").clone()
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("state")
    }

    async fn call(&self) {
        tokio::time::sleep(self.latency.api).await;
    }

    /// Adds a server outside the cluster (what the kind platform starts beside the nodes).
    pub fn add_external(&self, name: &str, ip: IpAddr, served: BTreeSet<Probe>) {
        let mut st = self.st();
        st.externals
            .insert(name.to_string(), (ip, served, Instant::now()));
        self.snapshot(&mut st);
    }

    /// kube-proxy never programs Services called `name` (a broken service path: their
    /// EndpointSlices are ready, their ClusterIPs lead nowhere).
    pub fn withhold_proxy(&self, name: &str) {
        self.st().unprogrammed.insert(name.to_string());
    }

    /// The EndpointSlice controller never publishes endpoints for Services called `name`.
    pub fn withhold_endpoints(&self, name: &str) {
        self.st().withheld.insert(name.to_string());
    }

    /// Every Service the API server ever created: (namespace, name, ClusterIP). Namespaces (and
    /// their Services) are gone once a run closes; this record stays.
    pub fn services(&self) -> Vec<(String, String, String)> {
        self.st().created_services.clone()
    }

    /// The pods a Service's selector matches now, with the target port of each Service port on
    /// each (`None` where a named port is not declared).
    fn service_endpoints(
        &self,
        st: &State,
        ns: &str,
        svc: &K8sService,
    ) -> Vec<(String, Vec<Option<u16>>)> {
        let spec = svc.spec.clone().unwrap_or_default();
        let sel = spec.selector.clone().unwrap_or_default();
        let ports = spec.ports.clone().unwrap_or_default();
        st.pods
            .iter()
            .filter(|((pns, _), p)| {
                pns == ns && sel.iter().all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .map(|((_, name), p)| {
                let targets = ports
                    .iter()
                    .map(|sp| {
                        let proto: Protocol = sp
                            .protocol
                            .as_deref()
                            .unwrap_or("TCP")
                            .parse()
                            .expect("protocol");
                        match &sp.target_port {
                            None => u16::try_from(sp.port).ok(),
                            Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
                            Some(IntOrString::String(name)) => p
                                .containers
                                .iter()
                                .flat_map(|c| c.2.iter())
                                .find(|cp| {
                                    cp.name.as_deref() == Some(name.as_str())
                                        && cp.protocol == proto
                                })
                                .map(|cp| cp.port),
                        }
                    })
                    .collect();
                (name.clone(), targets)
            })
            .collect()
    }

    /// Whether a pod runs (its containers started).
    fn pod_running(&self, p: &SimPod, now: Instant) -> bool {
        now >= p.created + self.latency.pod_start
    }

    /// The Service answering `host` (a ClusterIP or a cluster DNS name), by key.
    fn service_at(&self, st: &State, host: &str) -> Option<(String, String)> {
        if let Some(rest) = host.strip_suffix(".svc.cluster.local") {
            let (name, ns) = rest.split_once('.')?;
            let key = (ns.to_string(), name.to_string());
            return st.services.contains_key(&key).then_some(key);
        }
        st.services
            .iter()
            .find(|(_, (svc, _))| {
                svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some(host)
            })
            .map(|(k, _)| k.clone())
    }

    /// Records the dataplane state after a change (in force `convergence` later).
    fn snapshot(&self, st: &mut State) {
        let mut model = Model::default();
        for (name, (labels, _)) in &st.namespaces {
            model
                .namespaces
                .insert(name.clone(), Namespace::new(name.clone(), labels.clone()));
        }
        for ((ns, name), p) in &st.pods {
            model.pods.insert(
                PodRef::new(ns, name),
                Pod {
                    namespace: ns.clone(),
                    name: name.clone(),
                    labels: p.labels.clone(),
                    ip: p.ip,
                    ports: p.containers.iter().flat_map(|c| c.2.clone()).collect(),
                    image: None,
                    workload: Workload::Pod,
                },
            );
        }
        for (name, (ip, served, _)) in &st.externals {
            let ext = netpol_conformance::model::EXTERNAL_NAMESPACE;
            model.pods.insert(
                PodRef::new(ext, name),
                Pod {
                    namespace: ext.into(),
                    name: name.clone(),
                    labels: Labels::new(),
                    ip: *ip,
                    ports: served
                        .iter()
                        .map(|p| ContainerPort {
                            name: None,
                            port: p.port,
                            protocol: p.protocol,
                        })
                        .collect(),
                    image: None,
                    workload: Workload::External,
                },
            );
        }
        let policies = st
            .policies
            .iter()
            .map(|((ns, _), np)| {
                CompiledPolicy::compile(np, ns).expect("the session applies valid policies")
            })
            .collect();
        let cluster = st.cluster.values().cloned().collect();
        st.history.push((Instant::now(), model, policies, cluster));
    }

    fn add_pod(
        &self,
        st: &mut State,
        ns: &str,
        name: &str,
        labels: Labels,
        spec: &k8s_openapi::api::core::v1::PodSpec,
    ) {
        let ip = IpAddr::V4(Ipv4Addr::from(u32::from(self.pod_base) + st.next_ip));
        st.next_ip += 1;
        let containers = spec
            .containers
            .iter()
            .map(|c| {
                let cmd = c.command.clone().unwrap_or_default();
                let served = if cmd.iter().any(|a| a == "porter") {
                    c.env.iter().flatten().find_map(|e| {
                        e.name
                            .strip_prefix("SERVE_SCTP_PORT_")
                            .and_then(|p| p.parse().ok())
                            .map(|p| Probe::new(p, Protocol::Sctp))
                    })
                } else if cmd.iter().any(|a| a == "serve-hostname") {
                    let port = cmd
                        .iter()
                        .position(|a| a == "--port")
                        .and_then(|i| cmd.get(i + 1))
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    let proto = if cmd.iter().any(|a| a == "--udp") {
                        Protocol::Udp
                    } else {
                        Protocol::Tcp
                    };
                    Some(Probe::new(port, proto))
                } else {
                    None
                };
                let declared = c
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| ContainerPort {
                        name: p.name.clone(),
                        port: u16::try_from(p.container_port).unwrap_or(0),
                        protocol: p
                            .protocol
                            .as_deref()
                            .unwrap_or("TCP")
                            .parse()
                            .expect("protocol"),
                    })
                    .collect();
                (c.name.clone(), served, declared)
            })
            .collect();
        st.pods.insert(
            (ns.to_string(), name.to_string()),
            SimPod {
                labels,
                ip,
                containers,
                created: Instant::now(),
            },
        );
        self.log.lock().expect("log").pods_created += 1;
    }

    fn check_service_account(&self, st: &State, ns: &str) -> ApiResult<()> {
        match st.namespaces.get(ns) {
            None => Err(ApiError::new(
                Some(404),
                format!("namespaces \"{ns}\" not found"),
            )),
            Some((_, created)) if Instant::now() < *created + self.latency.service_account => {
                self.log.lock().expect("log").refused_pods += 1;
                Err(ApiError::new(
                    Some(403),
                    format!(
                        "pods is forbidden: error looking up service account {ns}/default: serviceaccount \"default\" not found"
                    ),
                ))
            }
            Some(_) => Ok(()),
        }
    }

    fn pod_status(&self, p: &SimPod) -> PodStatus {
        let now = Instant::now();
        if now < p.created + self.latency.pod_start {
            return PodStatus {
                phase: Some("Pending".into()),
                container_statuses: Some(
                    p.containers
                        .iter()
                        .map(|c| ContainerStatus {
                            name: c.0.clone(),
                            state: Some(ContainerState {
                                waiting: Some(ContainerStateWaiting {
                                    reason: Some("ContainerCreating".into()),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            };
        }
        let mut all_ready = true;
        let statuses = p
            .containers
            .iter()
            .map(|(name, served, _)| {
                let crashes = !self.sctp && served.is_some_and(|s| s.protocol == Protocol::Sctp);
                if crashes {
                    all_ready = false;
                    ContainerStatus {
                        name: name.clone(),
                        ready: false,
                        restart_count: 2,
                        state: Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some("CrashLoopBackOff".into()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        last_state: Some(ContainerState {
                            terminated: Some(ContainerStateTerminated {
                                exit_code: 1,
                                reason: Some("Error".into()),
                                message: Some(
                                    "2026/11/26 10:00:41 Failed to listen SCTP. error:protocol not supported\n".into(),
                                ),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                } else {
                    ContainerStatus {
                        name: name.clone(),
                        ready: true,
                        state: Some(ContainerState {
                            running: Some(ContainerStateRunning::default()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }
                }
            })
            .collect();
        PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(p.ip.to_string()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if all_ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            container_statuses: Some(statuses),
            ..Default::default()
        }
    }

    /// One probe's result line body (`<code> <message>`) and how long it took.
    fn connect(
        &self,
        st: &State,
        from: &PodRef,
        host: &str,
        probe: Probe,
        timeout: Duration,
        now: Instant,
    ) -> (i32, String, Duration) {
        if probe.protocol == Protocol::Sctp && !self.sctp {
            return (
                1,
                "OTHER: socket: protocol not supported".into(),
                Duration::from_millis(1),
            );
        }
        let is_name = host.parse::<IpAddr>().is_err();
        let (host, probe) = match self.service_at(st, host) {
            Some(key) => {
                let (svc, applied) = &st.services[&key];
                let ports = svc
                    .spec
                    .as_ref()
                    .and_then(|s| s.ports.clone())
                    .unwrap_or_default();
                let Some(pi) = ports.iter().position(|sp| {
                    u16::try_from(sp.port).ok() == Some(probe.port)
                        && sp.protocol.as_deref().unwrap_or("TCP") == probe.protocol.as_str()
                }) else {
                    // kube-proxy has no rule for the port: the packet goes nowhere.
                    return (1, "TIMEOUT".into(), timeout);
                };
                if st.unprogrammed.contains(&key.1) {
                    return (1, "TIMEOUT".into(), timeout);
                }
                let programmed = *applied + self.latency.endpoints + self.latency.proxy;
                let ready: Vec<(IpAddr, u16)> = if st.withheld.contains(&key.1) || now < programmed
                {
                    Vec::new()
                } else {
                    self.service_endpoints(st, &key.0, svc)
                        .into_iter()
                        .filter_map(|(name, targets)| {
                            let p = &st.pods[&(key.0.clone(), name)];
                            let running = self.pod_running(p, now);
                            Some((p.ip, targets[pi]?)).filter(|_| running)
                        })
                        .collect()
                };
                let [(ip, target)] = ready.as_slice() else {
                    if ready.is_empty() {
                        // kube-proxy rejects a Service port without endpoints.
                        let m = match probe.protocol {
                            Protocol::Udp => "REFUSED: read udp: connection refused",
                            _ => "REFUSED",
                        };
                        return (1, m.into(), Duration::from_millis(1));
                    }
                    panic!("the session only probes Services with one endpoint: {key:?}");
                };
                let mut log = self.log.lock().expect("log");
                log.service_connects += 1;
                if is_name {
                    log.dns_lookups += 1;
                }
                (*ip, Probe::new(*target, probe.protocol))
            }
            None if is_name => {
                return (
                    1,
                    format!("DNS: lookup {host}: no such host"),
                    Duration::from_millis(1),
                );
            }
            None => match host.parse::<IpAddr>() {
                Ok(ip) => (ip, probe),
                Err(_) => return (1, "TIMEOUT".into(), timeout),
            },
        };
        let external = st
            .externals
            .iter()
            .find(|(_, (ip, _, _))| *ip == host)
            .map(|(n, (_, served, added))| (n.clone(), served.contains(&probe), *added));
        let (to, serves, started) = match (st.pods.iter().find(|(_, p)| p.ip == host), external) {
            (Some(((ns, name), dst)), _) => (
                PodRef::new(ns, name),
                dst.containers.iter().any(|c| c.1 == Some(probe)),
                dst.created + self.latency.pod_start,
            ),
            (None, Some((name, serves, added))) => (
                PodRef::new(netpol_conformance::model::EXTERNAL_NAMESPACE, &name),
                serves,
                added,
            ),
            (None, None) => return (1, "TIMEOUT".into(), timeout),
        };
        // The dataplane state in force: the newest change made at least `convergence` ago.
        let cutoff = now.checked_sub(self.latency.convergence).unwrap_or(now);
        let in_force = st
            .history
            .iter()
            .rev()
            .find(|(t, _, _, _)| *t <= cutoff)
            .or(st.history.first());
        let allowed = match in_force {
            Some((_, model, policies, cluster)) => {
                if model.pod(from).is_none() || model.pod(&to).is_none() {
                    true
                } else {
                    netpol_conformance::policy::Oracle::with_cluster(model, policies, cluster)
                        .decide(from, &to, probe)
                        .is_none_or(|d| d.allowed)
                }
            }
            None => true,
        };
        if !allowed {
            return (1, "TIMEOUT".into(), timeout);
        }
        let listening = now >= started + self.latency.listen;
        if !serves || !listening {
            if serves {
                self.log.lock().expect("log").refused_not_listening += 1;
            }
            let m = match probe.protocol {
                Protocol::Udp => "REFUSED: read udp: connection refused",
                _ => "REFUSED",
            };
            return (1, m.into(), Duration::from_millis(1));
        }
        if to.namespace == netpol_conformance::model::EXTERNAL_NAMESPACE {
            self.log.lock().expect("log").external_connects += 1;
        }
        (0, String::new(), Duration::from_millis(1))
    }
}

fn meta_key(m: &ObjectMeta) -> (String, String) {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn merge_labels(labels: &mut Labels, merge: &serde_json::Value) {
    if let Some(m) = merge["metadata"]["labels"].as_object() {
        for (k, v) in m {
            match v.as_str() {
                Some(v) => {
                    labels.insert(k.clone(), v.to_string());
                }
                None => {
                    labels.remove(k);
                }
            }
        }
    }
}

/// Parses the session's probe script: `p <index> /agnhost connect <host:port> --protocol=<p>
/// --timeout=<d> &` lines, waves separated by `wait`.
fn parse_script(script: &str) -> Vec<Vec<(usize, String, Probe, Duration)>> {
    let mut waves = vec![Vec::new()];
    for line in script.lines() {
        if line == "wait" {
            waves.push(Vec::new());
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 7 || parts[0] != "p" || parts[2] != "/agnhost" {
            continue;
        }
        let idx: usize = parts[1].parse().expect("index");
        let (host, port) = parts[4].rsplit_once(':').expect("host:port");
        let host = host.trim_matches(['\'', '[', ']']).to_string();
        let proto = match parts[5].trim_start_matches("--protocol=") {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => Protocol::Sctp,
        };
        let t = parts[6].trim_start_matches("--timeout=");
        let timeout = match t.strip_suffix("ms") {
            Some(ms) => Duration::from_millis(ms.parse().expect("ms")),
            None => Duration::from_secs(t.trim_end_matches('s').parse().expect("s")),
        };
        waves.last_mut().expect("a wave").push((
            idx,
            host,
            Probe::new(port.parse().expect("port"), proto),
            timeout,
        ));
    }
    waves.retain(|w| !w.is_empty());
    waves
}

impl ClusterApi for SimApi {
    async fn apply_namespace(&self, ns: &K8sNamespace) -> ApiResult<()> {
        self.call().await;
        let mut st = self.st();
        let name = ns.metadata.name.clone().unwrap_or_default();
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        let fresh = !st.namespaces.contains_key(&name);
        st.namespaces.insert(name, (labels, Instant::now()));
        if fresh {
            let mut log = self.log.lock().expect("log");
            log.namespaces_created += 1;
            log.max_namespaces_alive = log.max_namespaces_alive.max(st.namespaces.len());
        }
        self.snapshot(&mut st);
        Ok(())
    }
    async fn get_namespace(&self, name: &str) -> ApiResult<Option<K8sNamespace>> {
        self.call().await;
        Ok(self
            .st()
            .namespaces
            .get(name)
            .map(|(labels, _)| K8sNamespace {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                ..Default::default()
            }))
    }
    async fn patch_namespace(&self, name: &str, merge: &serde_json::Value) -> ApiResult<()> {
        self.call().await;
        let mut st = self.st();
        let Some((labels, _)) = st.namespaces.get_mut(name) else {
            return Err(ApiError::new(Some(404), "not found"));
        };
        merge_labels(labels, merge);
        self.snapshot(&mut st);
        Ok(())
    }
    async fn delete_namespace(&self, name: &str) -> ApiResult<()> {
        self.call().await;
        let mut st = self.st();
        if st.namespaces.remove(name).is_some() {
            self.log.lock().expect("log").namespaces_deleted += 1;
        }
        st.pods.retain(|(ns, _), _| ns != name);
        st.policies.retain(|(ns, _), _| ns != name);
        st.services.retain(|(ns, _), _| ns != name);
        self.snapshot(&mut st);
        Ok(())
    }
    async fn list_namespaces(&self, label_selector: &str) -> ApiResult<Vec<K8sNamespace>> {
        self.call().await;
        let (k, v) = label_selector
            .split_once('=')
            .unwrap_or((label_selector, ""));
        Ok(self
            .st()
            .namespaces
            .iter()
            .filter(|(_, (l, _))| l.get(k).is_some_and(|x| x == v))
            .map(|(n, (l, _))| K8sNamespace {
                metadata: ObjectMeta {
                    name: Some(n.clone()),
                    labels: Some(l.clone()),
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect())
    }
    async fn get_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> ApiResult<Option<ServiceAccount>> {
        self.call().await;
        let st = self.st();
        let ok = name == "default"
            && st
                .namespaces
                .get(namespace)
                .is_some_and(|(_, t)| Instant::now() >= *t + self.latency.service_account);
        Ok(ok.then(|| ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            ..Default::default()
        }))
    }
    async fn apply_pod(&self, pod: &K8sPod) -> ApiResult<()> {
        self.call().await;
        let mut st = self.st();
        let (ns, name) = meta_key(&pod.metadata);
        self.check_service_account(&st, &ns)?;
        let spec = pod.spec.clone().unwrap_or_default();
        self.add_pod(
            &mut st,
            &ns,
            &name,
            pod.metadata.labels.clone().unwrap_or_default(),
            &spec,
        );
        self.snapshot(&mut st);
        Ok(())
    }
    async fn apply_deployment(&self, d: &Deployment) -> ApiResult<()> {
        self.call().await;
        let mut st = self.st();
        let (ns, name) = meta_key(&d.metadata);
        self.check_service_account(&st, &ns)?;
        let spec = &d.spec;
        let tmpl = spec.template.metadata.clone().unwrap_or_default();
        let pod_spec = spec.template.spec.clone().unwrap_or_default();
        for i in 0..spec.replicas.unwrap_or(1) {
            let mut labels = tmpl.labels.clone().unwrap_or_default();
            labels.insert("pod-template-hash".into(), "5d8f9c7b6".into());
            self.add_pod(
                &mut st,
                &ns,
                &format!("{name}-5d8f9c7b6-{i:05}"),
                labels,
                &pod_spec,
            );
        }
        self.snapshot(&mut st);
        Ok(())
    }
    async fn list_pods(&self, namespace: &str, label_selector: &str) -> ApiResult<Vec<K8sPod>> {
        self.call().await;
        let (k, v) = label_selector
            .split_once('=')
            .unwrap_or((label_selector, ""));
        let st = self.st();
        Ok(st
            .pods
            .iter()
            .filter(|((ns, _), p)| ns == namespace && p.labels.get(k).is_some_and(|x| x == v))
            .map(|((ns, name), p)| K8sPod {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(p.labels.clone()),
                    ..Default::default()
                },
                status: Some(self.pod_status(p)),
                ..Default::default()
            })
            .collect())
    }
    async fn patch_pod(
        &self,
        namespace: &str,
        name: &str,
        merge: &serde_json::Value,
    ) -> ApiResult<()> {
        self.call().await;
        let mut st = self.st();
        let Some(p) = st.pods.get_mut(&(namespace.to_string(), name.to_string())) else {
            return Err(ApiError::new(Some(404), "not found"));
        };
        merge_labels(&mut p.labels, merge);
        self.snapshot(&mut st);
        Ok(())
    }
    async fn apply_policy(&self, np: &NetworkPolicy) -> ApiResult<()> {
        self.call().await;
        let mut st = self.st();
        let key = meta_key(&np.metadata);
        if !st.namespaces.contains_key(&key.0) {
            return Err(ApiError::new(Some(404), "namespace not found"));
        }
        CompiledPolicy::compile(np, &key.0)
            .map_err(|e| ApiError::new(Some(422), format!("NetworkPolicy is invalid: {e:?}")))?;
        st.policies.insert(key, np.clone());
        self.snapshot(&mut st);
        Ok(())
    }
    async fn delete_policy(&self, namespace: &str, name: &str) -> ApiResult<()> {
        self.call().await;
        let mut st = self.st();
        st.policies
            .remove(&(namespace.to_string(), name.to_string()));
        self.snapshot(&mut st);
        Ok(())
    }
    /// Validated as the CRD would (the harness's own reader of the kinds); unknown kinds are
    /// 404, as when the CRD is not installed.
    async fn apply_cluster_policy(
        &self,
        kind: ClusterKind,
        obj: &serde_json::Value,
    ) -> ApiResult<()> {
        self.call().await;
        if !self.cluster_kinds.contains(&kind) {
            return Err(ApiError::new(
                Some(404),
                format!("the server could not find the requested resource ({kind})"),
            ));
        }
        let compiled = netpol_conformance::scenario::read_cluster_policy(obj, kind)
            .map_err(|e| ApiError::new(Some(422), format!("{kind} is invalid: {e:?}")))?;
        let mut st = self.st();
        st.cluster
            .insert((kind, compiled.key.name.clone()), compiled);
        self.snapshot(&mut st);
        Ok(())
    }
    async fn delete_cluster_policy(&self, kind: ClusterKind, name: &str) -> ApiResult<()> {
        self.call().await;
        let mut st = self.st();
        st.cluster.remove(&(kind, name.to_string()));
        self.snapshot(&mut st);
        Ok(())
    }
    async fn apply_service(&self, svc: &K8sService) -> ApiResult<K8sService> {
        self.call().await;
        let mut st = self.st();
        let key = meta_key(&svc.metadata);
        if !st.namespaces.contains_key(&key.0) {
            return Err(ApiError::new(Some(404), "namespace not found"));
        }
        let spec = svc.spec.clone().unwrap_or_default();
        let ports = spec.ports.clone().unwrap_or_default();
        if ports.len() > 1
            && ports
                .iter()
                .any(|p| p.name.as_deref().unwrap_or("").is_empty())
        {
            return Err(ApiError::new(
                Some(422),
                "Service is invalid: spec.ports[0].name: Required value",
            ));
        }
        if spec.cluster_ip.is_some() {
            panic!("the session leaves the ClusterIP to the API server");
        }
        let ip = match st.services.get(&key) {
            Some((old, _)) => old.spec.as_ref().and_then(|s| s.cluster_ip.clone()),
            None => {
                st.next_cluster_ip += 1;
                let ip = Ipv4Addr::new(
                    10,
                    96,
                    200,
                    u8::try_from(st.next_cluster_ip).expect("< 256"),
                );
                st.created_services
                    .push((key.0.clone(), key.1.clone(), ip.to_string()));
                Some(
                    Ipv4Addr::new(
                        10,
                        96,
                        200,
                        u8::try_from(st.next_cluster_ip).expect("< 256 Services"),
                    )
                    .to_string(),
                )
            }
        };
        let mut stored = svc.clone();
        if let Some(spec) = stored.spec.as_mut() {
            spec.cluster_ip = ip.clone();
            spec.cluster_ips = ip.map(|i| vec![i]);
        }
        st.services.insert(key, (stored.clone(), Instant::now()));
        self.log.lock().expect("log").services_applied += 1;
        Ok(stored)
    }
    async fn delete_service(&self, namespace: &str, name: &str) -> ApiResult<()> {
        self.call().await;
        self.st()
            .services
            .remove(&(namespace.to_string(), name.to_string()));
        Ok(())
    }
    async fn list_endpoint_slices(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> ApiResult<Vec<EndpointSlice>> {
        self.call().await;
        let name = label_selector
            .strip_prefix("kubernetes.io/service-name=")
            .expect("the session lists slices by Service name");
        let st = self.st();
        let key = (namespace.to_string(), name.to_string());
        let now = Instant::now();
        let Some((svc, applied)) = st.services.get(&key) else {
            return Ok(Vec::new());
        };
        if now < *applied + self.latency.endpoints {
            return Ok(Vec::new());
        }
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        let eps = if st.withheld.contains(name) {
            Vec::new()
        } else {
            self.service_endpoints(&st, namespace, svc)
        };
        // One slice per distinct set of resolved ports, as the controller groups endpoints.
        let mut groups: BTreeMap<Vec<Option<u16>>, Vec<Endpoint>> = BTreeMap::new();
        for (pod, targets) in eps {
            let p = &st.pods[&(namespace.to_string(), pod.clone())];
            let ready = now >= p.created + self.latency.pod_start + self.latency.endpoints;
            groups.entry(targets).or_default().push(Endpoint {
                addresses: vec![p.ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(ready),
                    terminating: Some(false),
                }),
                ..Default::default()
            });
        }
        if groups.is_empty() {
            groups.insert(Vec::new(), Vec::new());
        }
        Ok(groups
            .into_iter()
            .enumerate()
            .map(|(i, (targets, endpoints))| EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{i:05}")),
                    namespace: Some(namespace.to_string()),
                    labels: Some(
                        [("kubernetes.io/service-name".to_string(), name.to_string())].into(),
                    ),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: (!endpoints.is_empty()).then_some(endpoints),
                ports: Some(
                    ports
                        .iter()
                        .enumerate()
                        .filter_map(|(k, sp)| {
                            let port = targets.get(k).copied().flatten()?;
                            Some(EndpointPort {
                                name: sp.name.clone(),
                                port: Some(i32::from(port)),
                                protocol: sp.protocol.clone(),
                                ..Default::default()
                            })
                        })
                        .collect(),
                ),
            })
            .collect())
    }
    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        _container: &str,
        command: Vec<String>,
    ) -> ApiResult<String> {
        self.log.lock().expect("log").execs += 1;
        let script = command.get(2).cloned().unwrap_or_default();
        let from = PodRef::new(namespace, pod);
        if !self
            .st()
            .pods
            .contains_key(&(namespace.to_string(), pod.to_string()))
        {
            return Err(ApiError::new(
                Some(404),
                format!("pods \"{pod}\" not found"),
            ));
        }
        tokio::time::sleep(self.latency.exec_rtt / 2).await;
        let mut out = String::new();
        for wave in parse_script(&script) {
            let now = Instant::now();
            let mut longest = Duration::ZERO;
            {
                let st = self.st();
                for (idx, host, probe, timeout) in wave {
                    let (code, msg, took) = self.connect(&st, &from, &host, probe, timeout, now);
                    longest = longest.max(took);
                    out.push_str(&format!("NETPOLC {idx} {code} {msg}\n"));
                }
            }
            tokio::time::sleep(longest).await;
        }
        tokio::time::sleep(self.latency.exec_rtt / 2).await;
        Ok(out)
    }
}
