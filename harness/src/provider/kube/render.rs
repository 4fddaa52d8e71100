//! Scenario state → Kubernetes objects, and step → step actions. Pure: no I/O, so the live
//! session and `--dry-run` plans share one answer and tests cover both.
//!
//! How a scenario is realised on a real cluster:
//! - **Namespaces** are mapped, `x` → `netpolc-<run-id>--<n>-x` ([`NameMap`]; run ids never contain
//!   `--`, so names of runs whose ids prefix each other never collide), and nothing outside the
//!   run is touched. Each real namespace carries the model's labels plus `netpolc.io/run-id`
//!   (exactly the run id: what cleanup selects on) and `netpolc.io/name: x`. The API server sets
//!   `kubernetes.io/metadata.name` to the *real* name, so every `namespaceSelector` requirement on
//!   that key is rewritten to the same requirement on `netpolc.io/name`, whose value is the model
//!   name: a selector matches a real namespace exactly when it matches the model namespace, and the
//!   oracle's answer stays valid. Scenario labels or selectors under `netpolc.io/` are refused.
//! - **Pods** keep their model names and labels (+ `netpolc.io/run-id`). **Deployments** stay
//!   Deployments: the template carries the model labels (+ `netpolc.io/run-id`,
//!   `netpolc.io/workload`); the selector uses only the harness labels, so relabelling a replica
//!   never orphans it. Replicas are matched to the model's `<deployment>-<i>` in name order.
//! - Every pod runs the pinned agnhost image, one container per (port, protocol) it must serve —
//!   every declared container port (with its name, so named ports resolve as in the model) and
//!   every probe port of the scenario: `serve-hostname --tcp|--udp` or `porter` for SCTP.
//! - **Policies** are the scenario's objects with the namespace mapped and selectors rewritten,
//!   applied server-side.
//! - **Cluster-wide policies** (ClusterNetworkPolicy, AdminNetworkPolicy,
//!   BaselineAdminNetworkPolicy) are cluster-scoped, so they are confined: the name becomes
//!   `netpolc-<run-id>--<n>-<name>` (the BaselineAdminNetworkPolicy keeps the singleton name
//!   `default` the API insists on), and every namespace selector of the subject and of the peers
//!   is rewritten like a NetworkPolicy's and AND-ed with `netpolc.io/run-id` and `netpolc.io/slot`,
//!   so the policy selects exactly the session's namespaces — never `kube-system` nor another
//!   session's — and the oracle's answer on the model stays the cluster's. `networks` CIDRs are
//!   left as written (they are judged on the real addresses, like literal ipBlocks).
//! - **Services** (only when a run probes through them): the scenario's own and the per-pod ones
//!   probing synthesises ([`crate::service::probe_services`], upstream's `s-<ns>-<pod>`), in the
//!   mapped namespace, keeping their names and ports (named `targetPort`s resolve on the pods'
//!   declared container ports, which keep their names). A scenario Service's selector keeps its
//!   labels, plus `netpolc.io/run-id`; a per-pod Service selects `netpolc.io/pod: <pod>` (and the
//!   run id), a harness label on exactly that pod, so a later step relabelling the pod never moves
//!   its Service, as the model's `Backing::Pod` says. The ClusterIP is left to the API server (a
//!   scenario's `clusterIP` may lie outside the cluster's service range); the session reads back
//!   what it allocated.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort as K8sContainerPort, EnvVar, Namespace as K8sNamespace, Pod as K8sPod,
    PodSpec, PodTemplateSpec, Service as K8sService, ServicePort as K8sServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use crate::cni::catalogue::RUN_ID_LABEL;
use crate::model::{Labels, Model, NAMESPACE_NAME_LABEL, Pod, PodRef, Probe, Protocol, Workload};
use crate::policy::{CompiledPolicy, PolicyRef};
use crate::provider::ProviderError;
use crate::scenario::{Scenario, Step};

/// The model name of a real namespace (the target of rewritten `kubernetes.io/metadata.name`).
pub const NAME_LABEL: &str = "netpolc.io/name";
/// Which Deployment a pod belongs to (harness-owned, used by the Deployment's selector).
pub const WORKLOAD_LABEL: &str = "netpolc.io/workload";
/// The session slot a real namespace belongs to (`<n>` of `netpolc-<run>--<n>-x`): what confines
/// cluster-wide policies to one session.
pub const SLOT_LABEL: &str = "netpolc.io/slot";
/// Which model pod a real pod is (harness-owned): what per-pod Services select.
pub const POD_LABEL: &str = "netpolc.io/pod";
/// Label keys scenarios may not use: the harness owns them.
pub const RESERVED_PREFIX: &str = "netpolc.io/";

/// Maps scenario namespaces to real ones for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameMap {
    run_id: String,
    prefix: String,
    slot: usize,
}

impl NameMap {
    /// `run_id` is sanitised into a run id ([`crate::provider::lease::check_run_id`]; valid ids,
    /// which the platforms insist on, stay as they are); `n` is the scenario's index in the run.
    pub fn new(run_id: &str, n: usize) -> Self {
        let run = sanitize(run_id);
        NameMap {
            prefix: format!("netpolc-{run}--{n}"),
            run_id: run,
            slot: n,
        }
    }

    /// The value of [`SLOT_LABEL`] on this session's namespaces.
    pub fn slot_label(&self) -> String {
        self.slot.to_string()
    }

    /// The real name of a cluster-scoped policy: `netpolc-<run>--<n>-<name>` (hashed like a
    /// namespace when longer than a DNS label, which the harness keeps for every name it makes),
    /// except the BaselineAdminNetworkPolicy, a singleton the API requires to be `default`.
    pub fn cluster_policy_name(&self, key: &crate::policy::ClusterPolicyRef) -> String {
        if key.kind == crate::policy::ClusterKind::BaselineAdminNetworkPolicy {
            return key.name.clone();
        }
        self.namespace(&key.name)
    }

    /// The value of `netpolc.io/run-id` on everything this session creates.
    pub fn run_label(&self) -> &str {
        &self.run_id
    }

    /// `x` → `netpolc-<run>--<n>-x`; a name over 63 characters becomes
    /// `netpolc-<run>--h<hash>` (the hash of the long name: still this run's, still unique).
    pub fn namespace(&self, ns: &str) -> String {
        let full = format!("{}-{ns}", self.prefix);
        if full.len() <= 63 {
            return full;
        }
        let h = Sha256::digest(full.as_bytes());
        let hex: String = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("netpolc-{}--h{hex}", self.run_id)
    }

    pub fn pod_ref(&self, p: &PodRef) -> PodRef {
        PodRef::new(self.namespace(&p.namespace), &p.name)
    }
}

/// Lower-case `[a-z0-9-]`, single dashes, at most 32 characters, never empty: a valid run id.
fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    out.truncate(crate::provider::lease::MAX_RUN_ID);
    let out = out.trim_matches('-').to_string();
    if out.is_empty() { "run".into() } else { out }
}

/// Refuses scenarios that use harness-owned label keys (they would make real selection differ
/// from the model's).
pub fn check_scenario(scenario: &Scenario) -> Result<(), ProviderError> {
    let mut bad = BTreeSet::new();
    for step in &scenario.steps {
        for ns in step.model.namespaces.values() {
            bad.extend(
                ns.labels
                    .keys()
                    .filter(|k| k.starts_with(RESERVED_PREFIX))
                    .cloned(),
            );
        }
        for pod in step.model.pods.values() {
            bad.extend(
                pod.labels
                    .keys()
                    .filter(|k| k.starts_with(RESERVED_PREFIX))
                    .cloned(),
            );
        }
        for svc in &step.model.services {
            if let crate::service::Backing::Selector(sel) = &svc.backing {
                bad.extend(
                    sel.keys()
                        .filter(|k| k.starts_with(RESERVED_PREFIX))
                        .map(|k| {
                            format!("{k} (selector of Service {}/{})", svc.namespace, svc.name)
                        }),
                );
            }
        }
        for p in &step.policies {
            let text = serde_json::to_string(&p.source.spec).unwrap_or_default();
            if text.contains(&format!("\"{RESERVED_PREFIX}")) {
                bad.insert(format!("(a selector of policy {})", p.key));
            }
        }
        for p in &step.cluster_policies {
            let text = p
                .source
                .get("spec")
                .map(|s| s.to_string())
                .unwrap_or_default();
            if text.contains(&format!("\"{RESERVED_PREFIX}")) {
                bad.insert(format!("(a selector of {})", p.key));
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(ProviderError::InvalidInput(format!(
            "scenario {:?} uses label keys reserved for the harness on real clusters ({RESERVED_PREFIX}*): {}",
            scenario.name,
            bad.into_iter().collect::<Vec<_>>().join(", ")
        )))
    }
}

/// Every probe any step of the scenario makes: what every pod must serve besides its ports.
pub fn scenario_probes(scenario: &Scenario) -> BTreeSet<Probe> {
    scenario
        .steps
        .iter()
        .flat_map(|s| s.probes.iter().copied())
        .collect()
}

fn meta(name: &str, namespace: Option<&str>, labels: Labels) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels),
        ..Default::default()
    }
}

/// The real namespace for a model namespace.
pub fn namespace_object(map: &NameMap, model: &Model, ns: &str) -> K8sNamespace {
    let mut labels = namespace_labels(map, model, ns);
    labels.insert(RUN_ID_LABEL.into(), map.run_label().into());
    K8sNamespace {
        metadata: meta(&map.namespace(ns), None, labels),
        ..Default::default()
    }
}

/// The labels a real namespace carries besides `netpolc.io/run-id`.
pub fn namespace_labels(map: &NameMap, model: &Model, ns: &str) -> Labels {
    let mut labels: Labels = model
        .namespace(ns)
        .map(|n| n.labels.clone())
        .unwrap_or_default();
    labels.remove(NAMESPACE_NAME_LABEL);
    labels.insert(NAME_LABEL.into(), ns.into());
    labels.insert(SLOT_LABEL.into(), map.slot_label());
    labels
}

/// The containers of a pod: one per (port, protocol) served, named `serve-<port>-<proto>`.
/// SCTP servers are left out when `sctp` is false (the nodes have no SCTP: `agnhost porter`
/// would crash-loop); declared SCTP ports then stay undeclared, which only named SCTP ports —
/// whose cells are unsupported anyway — could notice.
pub fn containers(pod: &Pod, probes: &BTreeSet<Probe>, image: &str, sctp: bool) -> Vec<Container> {
    let mut serve: BTreeSet<Probe> = pod
        .ports
        .iter()
        .map(|c| Probe::new(c.port, c.protocol))
        .collect();
    serve.extend(probes.iter().copied());
    serve.retain(|p| sctp || p.protocol != Protocol::Sctp);
    let mut out: Vec<Container> = serve
        .into_iter()
        .map(|p| {
            let (command, env) = match p.protocol {
                Protocol::Tcp | Protocol::Udp => (
                    vec![
                        "/agnhost".to_string(),
                        "serve-hostname".into(),
                        format!("--{}", p.protocol.lower()),
                        "--http=false".into(),
                        "--port".into(),
                        p.port.to_string(),
                    ],
                    None,
                ),
                Protocol::Sctp => (
                    vec!["/agnhost".to_string(), "porter".into()],
                    Some(vec![EnvVar {
                        name: format!("SERVE_SCTP_PORT_{}", p.port),
                        value: Some("foo".into()),
                        ..Default::default()
                    }]),
                ),
            };
            let ports: Vec<K8sContainerPort> = pod
                .ports
                .iter()
                .filter(|c| c.port == p.port && c.protocol == p.protocol)
                .map(|c| K8sContainerPort {
                    container_port: i32::from(c.port),
                    name: c.name.clone(),
                    protocol: Some(c.protocol.as_str().into()),
                    ..Default::default()
                })
                .collect();
            Container {
                name: format!("serve-{}-{}", p.port, p.protocol.lower()),
                image: Some(image.to_string()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(command),
                env,
                ports: (!ports.is_empty()).then_some(ports),
                // A crashed server's last log line lands in its status, where the session reads
                // why (e.g. porter's "protocol not supported" on a node without SCTP).
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Default::default()
            }
        })
        .collect();
    if out.is_empty() {
        // A pod that serves nothing still needs a process to exec probes from.
        out.push(Container {
            name: "idle".into(),
            image: Some(image.to_string()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["/agnhost".into(), "pause".into()]),
            ..Default::default()
        });
    }
    out
}

/// The container probes are exec'd in (every container has `/agnhost` and `sh`); never an SCTP
/// server, which may be crash-looping on a node without SCTP.
pub fn exec_container(pod: &Pod, probes: &BTreeSet<Probe>) -> String {
    containers(pod, probes, "", false)
        .into_iter()
        .next()
        .map(|c| c.name)
        .unwrap_or_else(|| "idle".into())
}

fn pod_spec(pod: &Pod, probes: &BTreeSet<Probe>, image: &str, sctp: bool) -> PodSpec {
    let mut containers = containers(pod, probes, image, sctp);
    if exec_container(pod, probes) == "idle" && containers.iter().all(|c| c.name != "idle") {
        // Only SCTP servers: probes need a process that cannot crash for lack of SCTP.
        containers.extend(self::containers(
            &Pod {
                ports: Vec::new(),
                ..pod.clone()
            },
            &BTreeSet::new(),
            image,
            false,
        ));
    }
    PodSpec {
        containers,
        termination_grace_period_seconds: Some(0),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// A workload to create: a bare Pod or a Deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkloadObject {
    Pod(Box<K8sPod>),
    Deployment(Box<Deployment>),
}

/// Pods and Deployments of the model, in namespace/name order.
pub fn workload_objects(
    map: &NameMap,
    model: &Model,
    probes: &BTreeSet<Probe>,
    image: &str,
    sctp: bool,
) -> Vec<WorkloadObject> {
    let mut out = Vec::new();
    let mut deployments: BTreeMap<(String, String), Vec<&Pod>> = BTreeMap::new();
    for pod in model.pods.values() {
        match &pod.workload {
            Workload::External => {}
            Workload::Pod => {
                let mut labels = pod.labels.clone();
                labels.insert(RUN_ID_LABEL.into(), map.run_label().into());
                labels.insert(POD_LABEL.into(), pod_label_value(&pod.name));
                out.push(WorkloadObject::Pod(Box::new(K8sPod {
                    metadata: meta(&pod.name, Some(&map.namespace(&pod.namespace)), labels),
                    spec: Some(pod_spec(pod, probes, image, sctp)),
                    ..Default::default()
                })));
            }
            Workload::Deployment { name, .. } => deployments
                .entry((pod.namespace.clone(), name.clone()))
                .or_default()
                .push(pod),
        }
    }
    for ((ns, name), pods) in deployments {
        let Some(first) = pods.iter().min_by_key(|p| match p.workload {
            Workload::Deployment { replica, .. } => replica,
            Workload::Pod | Workload::External => 0,
        }) else {
            continue;
        };
        let mut selector = Labels::new();
        selector.insert(RUN_ID_LABEL.into(), map.run_label().into());
        selector.insert(WORKLOAD_LABEL.into(), name.clone());
        let mut labels = first.labels.clone();
        labels.extend(selector.clone());
        out.push(WorkloadObject::Deployment(Box::new(Deployment {
            metadata: meta(&name, Some(&map.namespace(&ns)), selector.clone()),
            spec: DeploymentSpec {
                replicas: Some(pods.len() as i32),
                selector: LabelSelector {
                    match_labels: Some(selector),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(pod_spec(first, probes, image, sctp)),
                },
                ..Default::default()
            },
            ..Default::default()
        })));
    }
    out
}

/// The value of [`POD_LABEL`] for a model pod: its name, or when longer than a label value may be
/// (pod names are DNS subdomains, up to 253 characters) `h` and a hash of it.
pub fn pod_label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    let h = Sha256::digest(name.as_bytes());
    let hex: String = h.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("h{hex}")
}

/// A label patch adding [`POD_LABEL`] to a realised pod (Deployment replicas get theirs once
/// they are matched to model pods; bare pods are created with it).
pub fn pod_label_patch(name: &str) -> serde_json::Value {
    serde_json::json!({ "metadata": { "labels": { POD_LABEL: pod_label_value(name) } } })
}

/// The Service as applied: namespace mapped, selector as described in the module docs, ports kept
/// (`targetPort` a number or a name), type ClusterIP, no `clusterIP` (the server allocates it).
pub fn service_object(map: &NameMap, svc: &crate::service::Service) -> K8sService {
    let mut selector = Labels::new();
    match &svc.backing {
        crate::service::Backing::Selector(sel) => selector.extend(sel.clone()),
        crate::service::Backing::Pod(r) => {
            selector.insert(POD_LABEL.into(), pod_label_value(&r.name));
        }
    }
    selector.insert(RUN_ID_LABEL.into(), map.run_label().into());
    let mut labels = Labels::new();
    labels.insert(RUN_ID_LABEL.into(), map.run_label().into());
    if svc.synthesised {
        labels.insert(SYNTHESISED_LABEL.into(), "true".into());
    }
    K8sService {
        metadata: meta(&svc.name, Some(&map.namespace(&svc.namespace)), labels),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(
                svc.ports
                    .iter()
                    .map(|p| K8sServicePort {
                        name: p.name.clone(),
                        port: i32::from(p.port),
                        protocol: Some(p.protocol.as_str().into()),
                        target_port: Some(match &p.target_port {
                            crate::service::TargetPort::Number(n) => {
                                IntOrString::Int(i32::from(*n))
                            }
                            crate::service::TargetPort::Name(n) => IntOrString::String(n.clone()),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Marks the per-pod Services the harness synthesised (upstream's `s-<ns>-<pod>`).
pub const SYNTHESISED_LABEL: &str = "netpolc.io/synthesised";

/// The Services a slot realises for `model` when probing through Services: the scenario's own
/// and the per-pod ones for every probe the slot's pods serve (a superset of any step's, so a
/// step's plan finds its per-pod Service under the same name and port).
pub fn services_of(model: &Model, served: &BTreeSet<Probe>) -> Vec<crate::service::Service> {
    let probes: Vec<Probe> = served.iter().copied().collect();
    let pods_only = Model {
        pods: model
            .pods
            .iter()
            .filter(|(_, p)| !p.is_external())
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect(),
        ..model.clone()
    };
    crate::service::probe_services(&pods_only, &model.services, &probes)
}

/// Rewrites `kubernetes.io/metadata.name` to `netpolc.io/name` in a namespace selector.
fn rewrite_namespace_selector(sel: &mut LabelSelector) {
    if let Some(ml) = sel.match_labels.take() {
        sel.match_labels = Some(
            ml.into_iter()
                .map(|(k, v)| {
                    if k == NAMESPACE_NAME_LABEL {
                        (NAME_LABEL.to_string(), v)
                    } else {
                        (k, v)
                    }
                })
                .collect(),
        );
    }
    for e in sel.match_expressions.iter_mut().flatten() {
        if e.key == NAMESPACE_NAME_LABEL {
            e.key = NAME_LABEL.to_string();
        }
    }
}

fn rewrite_peers(peers: Option<&mut Vec<NetworkPolicyPeer>>) {
    for peer in peers.into_iter().flatten() {
        if let Some(sel) = peer.namespace_selector.as_mut() {
            rewrite_namespace_selector(sel);
        }
    }
}

/// The policy as applied: namespace mapped, namespace selectors rewritten, server-owned metadata
/// dropped, `netpolc.io/run-id` added.
pub fn policy_object(map: &NameMap, policy: &CompiledPolicy) -> NetworkPolicy {
    let src = &policy.source;
    let mut labels = src.metadata.labels.clone().unwrap_or_default();
    labels.insert(RUN_ID_LABEL.into(), map.run_label().into());
    let mut spec = src.spec.clone();
    if let Some(spec) = spec.as_mut() {
        for rule in spec.ingress.iter_mut().flatten() {
            rewrite_peers(rule.from.as_mut());
        }
        for rule in spec.egress.iter_mut().flatten() {
            rewrite_peers(rule.to.as_mut());
        }
    }
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(policy.key.name.clone()),
            namespace: Some(map.namespace(&policy.key.namespace)),
            labels: Some(labels),
            annotations: src.metadata.annotations.clone(),
            ..Default::default()
        },
        spec,
    }
}

/// Rewrites a namespace selector (JSON) as [`rewrite_namespace_selector`] does and confines it
/// to the session's namespaces.
fn confine_namespace_selector(map: &NameMap, sel: &mut serde_json::Value) {
    if !sel.is_object() {
        *sel = serde_json::json!({});
    }
    let Some(obj) = sel.as_object_mut() else {
        return;
    };
    let ml = obj
        .entry("matchLabels")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(ml) = ml.as_object_mut() {
        if let Some(v) = ml.remove(NAMESPACE_NAME_LABEL) {
            ml.insert(NAME_LABEL.into(), v);
        }
        ml.insert(RUN_ID_LABEL.into(), map.run_label().into());
        ml.insert(SLOT_LABEL.into(), map.slot_label().into());
    }
    if let Some(exprs) = obj
        .get_mut("matchExpressions")
        .and_then(serde_json::Value::as_array_mut)
    {
        for e in exprs {
            if e.get("key").and_then(serde_json::Value::as_str) == Some(NAMESPACE_NAME_LABEL) {
                e["key"] = NAME_LABEL.into();
            }
        }
    }
}

/// Confines a subject or a peer: its `namespaces` selector, or its `pods.namespaceSelector`.
fn confine_selecting(map: &NameMap, v: &mut serde_json::Value) {
    if let Some(ns) = v.get_mut("namespaces") {
        confine_namespace_selector(map, ns);
    }
    if let Some(pods) = v.get_mut("pods").and_then(serde_json::Value::as_object_mut) {
        let ns = pods
            .entry("namespaceSelector")
            .or_insert_with(|| serde_json::json!({}));
        confine_namespace_selector(map, ns);
    }
}

/// A cluster-wide policy as applied (see the module doc): the object as written, name mapped,
/// namespace selectors rewritten and confined to the session, server-owned metadata and status
/// dropped, `netpolc.io/run-id` added.
pub fn cluster_policy_object(
    map: &NameMap,
    policy: &crate::policy::ClusterPolicy,
) -> serde_json::Value {
    let src = &policy.source;
    let mut labels = src
        .pointer("/metadata/labels")
        .and_then(serde_json::Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert(RUN_ID_LABEL.into(), map.run_label().into());
    let mut spec = src
        .get("spec")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    if let Some(subject) = spec.get_mut("subject") {
        confine_selecting(map, subject);
    }
    for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
        let Some(rules) = spec.get_mut(dir).and_then(serde_json::Value::as_array_mut) else {
            continue;
        };
        for rule in rules {
            for peer in rule
                .get_mut(peers)
                .and_then(serde_json::Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                confine_selecting(map, peer);
            }
        }
    }
    serde_json::json!({
        "apiVersion": policy.key.kind.api_version(),
        "kind": policy.key.kind.as_str(),
        "metadata": {"name": map.cluster_policy_name(&policy.key), "labels": labels},
        "spec": spec,
    })
}

/// What one step changes on the cluster, in model terms (real names come from the [`NameMap`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepActions {
    /// First step only: namespaces, then workloads, then a wait for readiness.
    pub create_namespaces: Vec<String>,
    pub create_workloads: bool,
    /// Namespaces whose labels changed: the complete new label set (without the run-id label).
    pub label_namespaces: Vec<(String, Labels)>,
    /// Pods whose labels changed: the complete new label set (without the run-id label).
    pub label_pods: Vec<(PodRef, Labels)>,
    /// Policies created or changed (server-side apply), by key.
    pub apply_policies: Vec<PolicyRef>,
    pub delete_policies: Vec<PolicyRef>,
    /// Cluster-wide policies created or changed, and deleted (every kind: the session and plans
    /// leave out the kinds the cluster does not enforce).
    pub apply_cluster: Vec<crate::policy::ClusterPolicyRef>,
    pub delete_cluster: Vec<crate::policy::ClusterPolicyRef>,
}

impl StepActions {
    /// Diffs the complete states of two consecutive steps (`prev` is `None` for the first).
    pub fn between(map: &NameMap, prev: Option<&Step>, next: &Step) -> Result<Self, ProviderError> {
        let mut a = StepActions::default();
        let before: BTreeMap<&PolicyRef, &CompiledPolicy> = prev
            .map(|p| p.policies.iter().map(|c| (&c.key, c)).collect())
            .unwrap_or_default();
        let after: BTreeMap<&PolicyRef, &CompiledPolicy> =
            next.policies.iter().map(|c| (&c.key, c)).collect();
        for (k, p) in &after {
            let changed = before
                .get(k)
                .is_none_or(|old| policy_object(map, old) != policy_object(map, p));
            if changed {
                a.apply_policies.push((*k).clone());
            }
        }
        a.delete_policies = before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| (*k).clone())
            .collect();
        let c_before: BTreeMap<_, _> = prev
            .map(|p| p.cluster_policies.iter().map(|c| (&c.key, c)).collect())
            .unwrap_or_default();
        for c in &next.cluster_policies {
            let changed = c_before
                .get(&c.key)
                .is_none_or(|old| cluster_policy_object(map, old) != cluster_policy_object(map, c));
            if changed {
                a.apply_cluster.push(c.key.clone());
            }
        }
        a.delete_cluster = c_before
            .keys()
            .filter(|k| !next.cluster_policies.iter().any(|c| &c.key == **k))
            .map(|k| (*k).clone())
            .collect();
        match prev {
            None => {
                a.create_namespaces = namespaces_of(&next.model);
                a.create_workloads = true;
            }
            Some(prev) => {
                let (pm, nm) = (&prev.model, &next.model);
                let old_pods: BTreeSet<&PodRef> = pm.pods.keys().collect();
                let new_pods: BTreeSet<&PodRef> = nm.pods.keys().collect();
                if old_pods != new_pods || namespaces_of(pm) != namespaces_of(nm) {
                    return Err(ProviderError::InvalidInput(format!(
                        "step {:?} adds or removes pods or namespaces; real-cluster providers only \
                         change policies and labels between steps",
                        next.name
                    )));
                }
                for ns in namespaces_of(nm) {
                    let new = namespace_labels(map, nm, &ns);
                    if namespace_labels(map, pm, &ns) != new {
                        a.label_namespaces.push((ns, new));
                    }
                }
                for (r, pod) in &nm.pods {
                    if pm.pods.get(r).is_some_and(|old| old.labels != pod.labels) {
                        a.label_pods.push((r.clone(), pod.labels.clone()));
                    }
                }
            }
        }
        Ok(a)
    }
}

/// Every namespace of the model: declared ones and those pods live in (external peers live
/// outside the cluster and have none).
pub fn namespaces_of(model: &Model) -> Vec<String> {
    let mut v: BTreeSet<String> = model.namespaces.keys().cloned().collect();
    v.extend(
        model
            .pods
            .values()
            .filter(|p| !p.is_external())
            .map(|p| p.namespace.clone()),
    );
    v.into_iter().collect()
}

/// A JSON merge patch setting `labels` exactly (keys in `old` but not in `labels` become null);
/// `keep` keys are never touched.
pub fn label_patch(old: &Labels, labels: &Labels, keep: &[&str]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for k in old.keys() {
        if !labels.contains_key(k) && !keep.contains(&k.as_str()) {
            m.insert(k.clone(), serde_json::Value::Null);
        }
    }
    for (k, v) in labels {
        m.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    serde_json::json!({ "metadata": { "labels": m } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_str;

    pub(crate) const SEED: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: seed-like
model:
  namespaces:
    - {name: x, labels: {team: a}}
    - {name: y, labels: {team: b}}
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ports: [80/TCP, {port: 53, protocol: UDP, name: dns}]}
    - {namespace: y, name: b, labels: {pod: b}, ports: [80/TCP]}
  deployments:
    - {namespace: y, name: web, replicas: 2, labels: {app: web}, ports: [{port: 8080, name: http}]}
steps:
  - name: initial
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: allow-x, namespace: y}
        spec:
          podSelector: {}
          ingress:
            - from:
                - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}
                - namespaceSelector:
                    matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [y]}]
              ports: [{port: http}]
  - name: relabel
    labelPods: [{pod: y/b, set: {pod: bb}}]
    labelNamespaces: [{namespace: x, set: {team: c}}]
  - name: delete
    delete: [y/allow-x]
"#;

    pub(crate) fn seed() -> Scenario {
        match load_str(SEED, "seed-like.yaml") {
            Ok(l) => l.scenarios.into_iter().next().expect("one scenario"),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn namespaces_are_mapped_and_stay_dns_labels() {
        let m = NameMap::new("RUN_1", 3);
        assert_eq!(m.namespace("x"), "netpolc-run-1--3-x");
        assert_eq!(m.run_label(), "run-1");
        let long = m.namespace(&"n".repeat(60));
        assert!(
            long.len() <= 63 && long.starts_with("netpolc-run-1--h"),
            "{long}"
        );
        assert_eq!(long, m.namespace(&"n".repeat(60)), "stable");
        let longest = NameMap::new(&"r".repeat(32), 999).namespace(&"n".repeat(63));
        assert!(longest.len() <= 63, "{longest}");
        // Sanitised ids are run ids: no `--`, within the limit.
        let odd = NameMap::new("A__b--c", 0);
        assert_eq!(odd.run_label(), "a-b-c");
        assert!(crate::provider::lease::valid_run_id(
            NameMap::new(&"x_".repeat(40), 0).run_label()
        ));
    }

    /// Run `a`'s namespace `0-x` and run `a-0`'s namespace `x` used to be the same namespace
    /// (`netpolc-a-0-0-x`): a run could adopt and then delete another's.
    #[test]
    fn runs_whose_ids_prefix_each_other_never_share_a_namespace() {
        let mut seen = std::collections::BTreeMap::new();
        for run in ["a", "a-0", "a-0-0", "a-1"] {
            for n in 0..3 {
                let map = NameMap::new(run, n);
                for ns in ["x", "0-x", "1-x", "0-0-x", "s0"] {
                    let name = map.namespace(ns);
                    assert!(
                        crate::provider::lease::split_run(&name["netpolc-".len()..])
                            .is_some_and(|(r, _)| r == run),
                        "{name}"
                    );
                    if let Some(prev) = seen.insert(name.clone(), (run, n, ns)) {
                        panic!("{name} is both {prev:?} and {:?}", (run, n, ns));
                    }
                }
            }
        }
    }

    #[test]
    fn namespace_selectors_on_the_name_label_are_rewritten() {
        let s = seed();
        let map = NameMap::new("r", 0);
        let np = policy_object(&map, &s.steps[0].policies[0]);
        assert_eq!(np.metadata.namespace.as_deref(), Some("netpolc-r--0-y"));
        let json = serde_json::to_string(&np).expect("json");
        assert!(!json.contains(NAMESPACE_NAME_LABEL), "{json}");
        assert_eq!(json.matches("netpolc.io/name").count(), 2, "{json}");
        assert!(json.contains("\"http\""), "named port kept: {json}");
    }

    #[test]
    fn real_namespace_labels_select_like_the_model() {
        // The rewritten selector must match the real namespace exactly when the original matched
        // the model namespace.
        let s = seed();
        let map = NameMap::new("r", 0);
        let step = &s.steps[0];
        for ns in namespaces_of(&step.model) {
            let real = namespace_object(&map, &step.model, &ns);
            let labels = real.metadata.labels.clone().unwrap_or_default();
            let model_labels = step
                .model
                .namespace(&ns)
                .map(|n| n.labels.clone())
                .unwrap_or_default();
            let orig = LabelSelector {
                match_labels: Some([(NAMESPACE_NAME_LABEL.to_string(), "x".to_string())].into()),
                ..Default::default()
            };
            let mut rewritten = orig.clone();
            rewrite_namespace_selector(&mut rewritten);
            let mut errs = Vec::new();
            let o = crate::policy::Selector::compile(&orig, "s", &mut errs);
            let r = crate::policy::Selector::compile(&rewritten, "s", &mut errs);
            assert!(errs.is_empty());
            assert_eq!(
                o.matches(&model_labels),
                r.matches(&labels),
                "namespace {ns}"
            );
        }
    }

    #[test]
    fn pods_serve_declared_and_probe_ports_with_names() {
        let s = seed();
        let step = &s.steps[0];
        let probes = scenario_probes(&s);
        let xa = step.model.pod(&PodRef::new("x", "a")).expect("x/a");
        let cs = containers(xa, &probes, "img", true);
        let names: Vec<&str> = cs.iter().map(|c| c.name.as_str()).collect();
        // x/a declares 80/TCP and 53/UDP; the scenario also probes 8080/TCP.
        assert_eq!(names, ["serve-53-udp", "serve-80-tcp", "serve-8080-tcp"]);
        let dns = &cs[0];
        assert_eq!(
            dns.command.as_deref(),
            Some(
                &[
                    "/agnhost",
                    "serve-hostname",
                    "--udp",
                    "--http=false",
                    "--port",
                    "53"
                ]
                .map(String::from)[..]
            )
        );
        assert_eq!(
            dns.ports.as_ref().and_then(|p| p[0].name.as_deref()),
            Some("dns")
        );
        assert!(
            cs[2].ports.is_none(),
            "undeclared probe port served but not declared"
        );
    }

    #[test]
    fn deployments_keep_template_labels_and_select_on_harness_labels() {
        let s = seed();
        let map = NameMap::new("r", 0);
        let objs = workload_objects(&map, &s.steps[0].model, &scenario_probes(&s), "img", true);
        let deps: Vec<&Deployment> = objs
            .iter()
            .filter_map(|o| match o {
                WorkloadObject::Deployment(d) => Some(d.as_ref()),
                _ => None,
            })
            .collect();
        assert_eq!(deps.len(), 1);
        let spec = &deps[0].spec;
        assert_eq!(spec.replicas, Some(2));
        let sel = spec.selector.match_labels.clone().unwrap_or_default();
        assert!(
            sel.keys().all(|k| k.starts_with(RESERVED_PREFIX)),
            "{sel:?}"
        );
        let tl = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        assert_eq!(tl.get("app").map(String::as_str), Some("web"));
        assert_eq!(objs.len(), 3, "two bare pods and one deployment");
    }

    #[test]
    fn step_actions_follow_the_scenario() {
        let s = seed();
        let map = NameMap::new("r", 0);
        let a0 = StepActions::between(&map, None, &s.steps[0]).expect("initial");
        assert_eq!(a0.create_namespaces, ["x", "y"]);
        assert!(a0.create_workloads);
        assert_eq!(a0.apply_policies.len(), 1);
        let a1 = StepActions::between(&map, Some(&s.steps[0]), &s.steps[1]).expect("relabel");
        assert!(a1.apply_policies.is_empty() && a1.delete_policies.is_empty());
        assert_eq!(a1.label_pods.len(), 1);
        assert_eq!(a1.label_pods[0].0, PodRef::new("y", "b"));
        assert_eq!(a1.label_namespaces.len(), 1);
        assert_eq!(
            a1.label_namespaces[0].1.get("team").map(String::as_str),
            Some("c")
        );
        let a2 = StepActions::between(&map, Some(&s.steps[1]), &s.steps[2]).expect("delete");
        assert_eq!(a2.delete_policies.len(), 1);
        assert!(a2.label_pods.is_empty());
    }

    #[test]
    fn reserved_label_keys_are_refused() {
        let bad = SEED.replace("labels: {team: a}", "labels: {netpolc.io/name: z}");
        let s = match load_str(&bad, "bad.yaml") {
            Ok(l) => l.scenarios.into_iter().next().expect("one"),
            Err(e) => panic!("{e:?}"),
        };
        assert!(
            matches!(check_scenario(&s), Err(ProviderError::InvalidInput(m)) if m.contains("netpolc.io/name"))
        );
        assert!(check_scenario(&seed()).is_ok());
    }

    #[test]
    fn label_patch_removes_dropped_keys_but_keeps_harness_ones() {
        let old: Labels = [("a", "1"), ("b", "2"), (RUN_ID_LABEL, "r")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let new: Labels = [("a".to_string(), "3".to_string())].into();
        let p = label_patch(&old, &new, &[RUN_ID_LABEL]);
        assert_eq!(
            p,
            serde_json::json!({"metadata": {"labels": {"a": "3", "b": null}}})
        );
    }

    const SERVICES: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: services
model:
  namespaces: [{name: svc}]
  pods:
    - {namespace: svc, name: api, labels: {app: api}, ports: [{port: 8080, name: http}]}
    - {namespace: svc, name: client, labels: {app: client}, ports: ["8080/TCP"]}
  deployments:
    - {namespace: svc, name: web, replicas: 2, labels: {app: web}, ports: ["8080/TCP"]}
  services:
    - {namespace: svc, name: front, selector: {app: api}, ports: [{name: web, port: 80, targetPort: http}]}
probes: ["8080/TCP", "81/UDP"]
steps:
  - name: relabel
    labelPods: [{pod: svc/client, set: {app: other}}]
"#;

    fn services_scenario() -> Scenario {
        match load_str(SERVICES, "services.yaml") {
            Ok(l) => l.scenarios.into_iter().next().expect("one scenario"),
            Err(e) => panic!("{e:?}"),
        }
    }

    fn selects(svc: &K8sService, labels: &Labels) -> bool {
        svc.spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }

    fn labels_of(w: &WorkloadObject) -> Labels {
        match w {
            WorkloadObject::Pod(p) => p.metadata.labels.clone().unwrap_or_default(),
            WorkloadObject::Deployment(d) => d
                .spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn services_keep_names_ports_and_named_target_ports_and_leave_the_cluster_ip_to_the_server() {
        let s = services_scenario();
        let map = NameMap::new("r", 2);
        let model = &s.steps[0].model;
        let served = scenario_probes(&s);
        let all = services_of(model, &served);
        let names: Vec<&str> = all.iter().map(|x| x.name.as_str()).collect();
        // The scenario's own, then one per pod not backed exactly on every probe (front backs
        // svc/api on 8080/TCP only, so svc/api gets one too, for 81/UDP).
        assert_eq!(
            names,
            [
                "front",
                "s-svc-api",
                "s-svc-client",
                "s-svc-web-0",
                "s-svc-web-1"
            ]
        );
        let front = service_object(&map, &all[0]);
        assert_eq!(
            front.metadata.namespace.as_deref(),
            Some("netpolc-r--2-svc")
        );
        assert_eq!(front.metadata.name.as_deref(), Some("front"));
        let labels = front.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(RUN_ID_LABEL).map(String::as_str), Some("r"));
        assert!(!labels.contains_key(SYNTHESISED_LABEL));
        let spec = front.spec.clone().expect("spec");
        assert_eq!(spec.cluster_ip, None, "allocated by the API server");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        let port = &spec.ports.expect("ports")[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some("web"), 80, Some("TCP"))
        );
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
        assert_eq!(
            spec.selector,
            Some(
                [("app", "api"), (RUN_ID_LABEL, "r")]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into()
            )
        );
        let per_pod = service_object(&map, &all[2]);
        let pp = per_pod.spec.clone().expect("spec");
        type Row<'a> = (Option<&'a str>, i32, Option<&'a str>, Option<IntOrString>);
        let ports: Vec<Row<'_>> = pp
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.as_deref(),
                    p.port,
                    p.protocol.as_deref(),
                    p.target_port.clone(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                (Some("81-udp"), 81, Some("UDP"), Some(IntOrString::Int(81))),
                (
                    Some("8080-tcp"),
                    8080,
                    Some("TCP"),
                    Some(IntOrString::Int(8080))
                )
            ]
        );
        assert_eq!(
            per_pod
                .metadata
                .labels
                .clone()
                .unwrap_or_default()
                .get(SYNTHESISED_LABEL)
                .map(String::as_str),
            Some("true")
        );
        // JSON as applied: no clusterIP field at all (server-side apply would otherwise own it).
        let json = serde_json::to_value(&per_pod).expect("json");
        assert!(json["spec"].get("clusterIP").is_none(), "{json}");
        assert_eq!(json["kind"], "Service");
    }

    #[test]
    fn per_pod_services_select_exactly_their_pod_whatever_its_labels_become() {
        let s = services_scenario();
        let map = NameMap::new("r", 0);
        let model = &s.steps[0].model;
        let served = scenario_probes(&s);
        let objs = workload_objects(&map, model, &served, "img", true);
        let services: Vec<K8sService> = services_of(model, &served)
            .iter()
            .map(|x| service_object(&map, x))
            .collect();
        let client_svc = services
            .iter()
            .find(|x| x.metadata.name.as_deref() == Some("s-svc-client"))
            .expect("client's");
        let mut pods: Vec<(String, Labels)> = objs
            .iter()
            .filter_map(|w| match w {
                WorkloadObject::Pod(p) => {
                    Some((p.metadata.name.clone().unwrap_or_default(), labels_of(w)))
                }
                WorkloadObject::Deployment(_) => None,
            })
            .collect();
        let selected: Vec<&str> = pods
            .iter()
            .filter(|(_, l)| selects(client_svc, l))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(selected, ["client"]);
        // A later step relabels svc/client (the session patches model labels only).
        let client = pods
            .iter_mut()
            .find(|(n, _)| n == "client")
            .expect("client");
        let patch = label_patch(
            &[("app".to_string(), "client".to_string())].into(),
            &[("app".to_string(), "other".to_string())].into(),
            &[],
        );
        let mut labels = client.1.clone();
        for (k, v) in patch["metadata"]["labels"].as_object().expect("labels") {
            match v.as_str() {
                Some(v) => {
                    labels.insert(k.clone(), v.to_string());
                }
                None => {
                    labels.remove(k);
                }
            }
        }
        assert!(
            selects(client_svc, &labels),
            "still its Service: {labels:?}"
        );
        // The scenario's Service selects by label, like the model: svc/api only.
        let front = services
            .iter()
            .find(|x| x.metadata.name.as_deref() == Some("front"))
            .expect("front");
        let by_front: Vec<&str> = pods
            .iter()
            .filter(|(_, l)| selects(front, l))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(by_front, ["api"]);
        // Deployment replicas get their identity label by patch once matched; the template
        // cannot carry it, so a replica Service selects nothing until then.
        let dep = objs
            .iter()
            .find(|w| matches!(w, WorkloadObject::Deployment(_)))
            .expect("deployment");
        let web0 = services
            .iter()
            .find(|x| x.metadata.name.as_deref() == Some("s-svc-web-0"))
            .expect("replica's");
        let mut tl = labels_of(dep);
        assert!(!selects(web0, &tl));
        let patch = pod_label_patch("web-0");
        tl.insert(
            POD_LABEL.into(),
            patch["metadata"]["labels"][POD_LABEL]
                .as_str()
                .unwrap_or_default()
                .into(),
        );
        assert!(selects(web0, &tl));
    }

    #[test]
    fn pod_label_values_stay_label_values() {
        assert_eq!(pod_label_value("a"), "a");
        let long = pod_label_value(&"p".repeat(200));
        assert!(long.len() <= 63 && long.starts_with('h'), "{long}");
        assert_ne!(long, pod_label_value(&"q".repeat(200)));
    }

    #[test]
    fn reserved_keys_in_service_selectors_are_refused() {
        let bad = SERVICES.replace("selector: {app: api}", "selector: {netpolc.io/pod: client}");
        let s = match load_str(&bad, "bad.yaml") {
            Ok(l) => l.scenarios.into_iter().next().expect("one"),
            Err(e) => panic!("{e:?}"),
        };
        assert!(
            matches!(check_scenario(&s), Err(ProviderError::InvalidInput(m)) if m.contains("selector of Service svc/front")),
        );
    }
}
