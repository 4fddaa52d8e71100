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

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Namespace as K8sNamespace, Pod as K8sPod, PodCondition, PodStatus,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use netpol_conformance::model::{
    ContainerPort, Labels, Model, Namespace, Pod, PodRef, Probe, Protocol, Workload,
};
use netpol_conformance::policy::CompiledPolicy;
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
    /// Dataplane states, oldest first: (when the change was made, model, policies).
    history: Vec<(Instant, Model, Vec<CompiledPolicy>)>,
    next_ip: u32,
    /// Servers outside the cluster: name → (address, probes served, when added).
    externals: BTreeMap<String, (IpAddr, BTreeSet<Probe>, Instant)>,
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
}

pub struct SimApi {
    pub latency: Latency,
    pub sctp: bool,
    pod_base: Ipv4Addr,
    state: Mutex<State>,
    log: Mutex<SimLog>,
}

impl SimApi {
    pub fn new(latency: Latency, sctp: bool, pod_base: Ipv4Addr) -> Self {
        SimApi {
            latency,
            sctp,
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
        st.history.push((Instant::now(), model, policies));
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
        host: IpAddr,
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
            .find(|(t, _, _)| *t <= cutoff)
            .or(st.history.first());
        let allowed = match in_force {
            Some((_, model, policies)) => {
                if model.pod(from).is_none() || model.pod(&to).is_none() {
                    true
                } else {
                    netpol_conformance::policy::Oracle::new(model, policies)
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
fn parse_script(script: &str) -> Vec<Vec<(usize, IpAddr, Probe, Duration)>> {
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
        let host: IpAddr = host.trim_matches(['[', ']']).parse().expect("ip");
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
                    let (code, msg, took) = self.connect(&st, &from, host, probe, timeout, now);
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
