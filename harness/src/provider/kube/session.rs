//! The live session shared by the kind and kubeconfig providers, and the pool of realised pods
//! the sessions of one run share on one cluster.
//!
//! **Slots.** A slot is one realised copy of a model: its namespaces
//! (`netpolc-<run>-<slot>-<ns>`) and pods. Creating one: namespaces, a wait for each namespace's
//! `default` ServiceAccount (the ServiceAccount admission refuses pods until it exists, as
//! upstream's framework knows), workloads, a bounded wait until every pod is usable, and the
//! **reachability gate**: every server is probed from every other pod, with no policy in place,
//! until all answer (a server not listening yet would answer REFUSED, which counts as blocked and
//! could make an expected-deny cell pass). Pairs still silent when the gate times out are probed
//! later but reported `error`, never judged.
//!
//! **Reuse.** Scenarios whose models have the same namespaces, pods, declared ports and workloads
//! share slots (upstream reuses its x/y/z pods across tests the same way): when a scenario ends,
//! its policies are deleted and the gate runs again, proving the slot is back to "everything
//! allowed" before the next scenario relabels its pods and namespaces and applies its own
//! policies. **Parallelism**: several scenarios run at once, each in its own slot; they never
//! probe each other's pods.
//!
//! **SCTP.** When the platform knows up front that the nodes lack SCTP (kind: the host kernel),
//! pods are created without SCTP servers. Otherwise a crash-looping `agnhost porter` is read from
//! the pod's status ([`super::decide`]), the pod is used without it, and every SCTP cell of the
//! run is `unsupported` with the reason: the run goes on.
//!
//! **Services** (only when the run probes through them, [`SessionConfig::services`]): each step
//! brings the slot's Services to the model's ([`render::services_of`]: the scenario's own and the
//! per-pod ones), reads back the ClusterIPs the API server allocated, waits for EndpointSlices
//! listing exactly the right pods ([`decide::endpoints_ready`]) and, with no policy in place, runs
//! a gate through the Services. Probes via `service-ip` dial the real ClusterIP, via
//! `service-name` the DNS name in the real namespace; the Service is found by its model name, so
//! the engine's plan (made with model ClusterIPs) needs no re-planning for them, and the oracle's
//! answer is the backing pod's either way. A Service that never comes right makes its cells
//! `error`, with the reason.
//!
//! The API is reached through [`ClusterApi`], so everything here also runs against a simulated
//! API server under paused time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::api::{ApiError, ClusterApi};
use super::decide::{self, Gate, RealPod, Server};
use super::probing::{self, Loopback, ScriptProbe};
use super::render::{self, NameMap, StepActions, WorkloadObject};
use crate::cni::catalogue::RUN_ID_LABEL;
use crate::cni::gaps::{self, Gap};
use crate::model::{Labels, Model, PodRef, Probe, Protocol};
use crate::policy::cluster::ClusterKind;
use crate::probe::{Connectivity, Observation, ProbeRequest};
use crate::provider::ProviderError;
use crate::scenario::{Scenario, Step};

/// Settings a live session needs besides the API.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub image: String,
    pub gaps: Vec<Gap>,
    pub loopback: Loopback,
    /// How long pods may take to become usable after being created.
    pub ready_timeout: Duration,
    /// How long the reachability gate waits for every server to answer.
    pub gate_timeout: Duration,
    /// Probe timeout of the gate's probes.
    pub probe_timeout: Duration,
    /// Scenarios run at once on the cluster, each in its own slot.
    pub parallel: usize,
    /// Reuse slots across scenarios with the same model.
    pub reuse: bool,
    /// Execs running at once per session.
    pub exec_concurrency: usize,
    /// Servers outside the cluster that the platform started, by external name
    /// (`model.externals`): cells from pods to them are probed; empty: those cells are
    /// `unsupported`.
    pub externals: BTreeMap<String, RealExternal>,
    /// Where the run records the namespaces it creates, and the lease they carry (kubeconfig:
    /// cleanup from any machine tells a dead run from a live one by it; reused slots keep their
    /// namespaces, so they keep carrying both). `None`: no lease (a throwaway kind cluster,
    /// deleted whole).
    pub ownership: Option<Arc<crate::provider::lease::cluster::Ownership>>,
    /// The cluster-wide policy kinds this cluster does not enforce, with the reason its cells
    /// are `unsupported`. Policies of these kinds are never sent to the API server (their CRDs
    /// may not exist); the others are applied like NetworkPolicies. Default: every kind (an
    /// existing cluster's support is unknown); kind sets it from the CNI catalogue.
    pub cluster_gaps: BTreeMap<ClusterKind, String>,
    /// The run probes through Services (`--probe-mode service-ip|service-name`): every slot
    /// realises the model's Services and the per-pod ones, and waits for their endpoints. Off,
    /// no Service is created and Service-mode cells (none are planned) would be unsupported.
    pub services: bool,
}

/// A server outside the cluster standing for one `model.externals` entry (kind: a container on
/// the nodes' docker network), shared by every slot: no policy can select it, so scenarios cannot
/// disturb each other through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealExternal {
    /// Its address as pods see it (re-binds `<(external)/name>` templates).
    pub ip: IpAddr,
    /// The probes it answers.
    pub served: BTreeSet<Probe>,
    /// What it is, for details (`container netpolc-r1--external-web`).
    pub what: String,
}

impl SessionConfig {
    /// Defaults for real clusters.
    pub fn new(image: impl Into<String>) -> Self {
        SessionConfig {
            image: image.into(),
            gaps: Vec::new(),
            loopback: Loopback::Record,
            ready_timeout: Duration::from_secs(300),
            gate_timeout: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(3),
            parallel: DEFAULT_PARALLEL,
            reuse: true,
            exec_concurrency: 8,
            externals: BTreeMap::new(),
            ownership: None,
            cluster_gaps: ClusterKind::ALL
                .into_iter()
                .map(|k| {
                    (
                        k,
                        format!(
                            "{k} ({}) is not applied on this cluster: the harness does not know \
                             whether its CNI implements it",
                            k.api_version()
                        ),
                    )
                })
                .collect(),
            services: false,
        }
    }
}

/// Scenarios at once on one cluster: enough to keep a kind cluster busy on a CI runner (two
/// vCPUs), few enough that 4 × 9 upstream pods fit its memory.
pub const DEFAULT_PARALLEL: usize = 4;

fn failed(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Failed(format!("{what}: {e}"))
}

/// What makes two models realisable by the same pods: namespaces, pods with their declared
/// ports and workloads (labels are reset between scenarios, so they do not count).
fn signature(model: &Model) -> String {
    let pods: Vec<_> = model
        .pods
        .values()
        .filter(|p| !p.is_external())
        .map(|p| (p.pod_ref().to_string(), &p.ports, &p.workload))
        .collect();
    serde_json::to_string(&(render::namespaces_of(model), pods)).unwrap_or_default()
}

/// One realised copy of a model.
#[derive(Debug, Clone)]
pub struct Slot {
    pub index: usize,
    pub map: NameMap,
    signature: String,
    /// Probes every pod serves (declared ports and the probes of the scenario that created it).
    served: BTreeSet<Probe>,
    realised: BTreeMap<PodRef, RealPod>,
    /// Real namespaces created.
    namespaces: Vec<String>,
    /// Labels in place now, in model terms.
    ns_labels: BTreeMap<String, Labels>,
    pod_labels: BTreeMap<PodRef, Labels>,
    /// Policies in place now: (real namespace, name).
    policies: BTreeSet<(String, String)>,
    /// Cluster-wide policies in place now: (kind, real name).
    cluster: BTreeSet<(ClusterKind, String)>,
    /// (source, server) pairs that never connected at the last gate.
    silent: BTreeSet<(PodRef, Server)>,
    /// Services in place now, by (model namespace, name).
    services: BTreeMap<(String, String), RealService>,
    /// (source, Service, Service port, protocol) never answering at the last Service gate.
    service_silent: BTreeSet<ServiceDial>,
    ready: bool,
}

/// A source pod dialling a Service port: (source, Service by model namespace and name, Service
/// port, protocol).
type ServiceDial = (PodRef, (String, String), u16, Protocol);

/// A Service realised in a slot.
#[derive(Debug, Clone)]
struct RealService {
    /// The model's Service (scenario's own or per-pod).
    model: crate::service::Service,
    /// As last applied (what a later step's rendering is compared with).
    object: k8s_openapi::api::core::v1::Service,
    /// The ClusterIP the API server allocated.
    cluster_ip: Option<IpAddr>,
    /// `Ok` once its EndpointSlices list exactly its pods on its ports; else why not (probes
    /// through it are `error` with this reason, never judged).
    endpoints: Result<(), String>,
}

/// Not checked yet (the state of a Service just applied or whose pods were relabelled).
const ENDPOINTS_PENDING: &str = "its endpoints were not checked yet";

#[derive(Debug, Default)]
struct PoolState {
    idle: Vec<Slot>,
    next: usize,
    /// Slots in use or idle, for the final cleanup.
    all_namespaces: BTreeSet<String>,
    /// The slot whose BaselineAdminNetworkPolicy is in place: the API allows one per cluster
    /// (named `default`), so two sessions cannot both have one.
    banp: Option<usize>,
}

/// Shared by the sessions of one run on one cluster.
pub struct ClusterPool<A: ClusterApi> {
    api: Arc<A>,
    run_id: String,
    cfg: SessionConfig,
    state: Mutex<PoolState>,
    /// Why SCTP cells are unsupported (`None`: SCTP assumed to work).
    sctp: Mutex<Option<String>>,
}

impl<A: ClusterApi> ClusterPool<A> {
    pub fn new(api: Arc<A>, run_id: &str, cfg: SessionConfig, sctp: Option<String>) -> Arc<Self> {
        Arc::new(ClusterPool {
            api,
            run_id: run_id.to_string(),
            cfg,
            state: Mutex::new(PoolState::default()),
            sctp: Mutex::new(sctp),
        })
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    pub fn api(&self) -> &Arc<A> {
        &self.api
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why SCTP is unsupported, if it is.
    pub fn sctp_unsupported(&self) -> Option<String> {
        self.sctp.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn mark_sctp_unsupported(&self, why: String) {
        let mut g = self.sctp.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(why);
        }
    }

    /// An idle slot realising `model` and serving `probes`, or a fresh (not yet created) one.
    fn acquire(&self, model: &Model, probes: &BTreeSet<Probe>) -> Slot {
        let sig = signature(model);
        let mut st = self.lock();
        if self.cfg.reuse
            && let Some(i) = st
                .idle
                .iter()
                .position(|s| s.signature == sig && probes.is_subset(&s.served))
        {
            return st.idle.remove(i);
        }
        let index = st.next;
        st.next += 1;
        Slot {
            index,
            map: NameMap::new(&self.run_id, index),
            signature: sig,
            served: probes.clone(),
            realised: BTreeMap::new(),
            namespaces: Vec::new(),
            ns_labels: BTreeMap::new(),
            pod_labels: BTreeMap::new(),
            policies: BTreeSet::new(),
            cluster: BTreeSet::new(),
            silent: BTreeSet::new(),
            services: BTreeMap::new(),
            service_silent: BTreeSet::new(),
            ready: false,
        }
    }

    /// Keeps an idle slot for later scenarios; beyond `parallel` idle slots the oldest goes.
    fn release(&self, slot: Slot) -> Option<Slot> {
        let mut st = self.lock();
        st.idle.push(slot);
        if st.idle.len() > self.cfg.parallel.max(1) {
            Some(st.idle.remove(0))
        } else {
            None
        }
    }

    fn remember_namespace(&self, name: &str) {
        self.lock().all_namespaces.insert(name.to_string());
    }

    /// Deletes a slot's namespaces (only those labelled with this run).
    async fn delete_slot(&self, slot: &Slot) -> Result<(), ProviderError> {
        let mut errors = Vec::new();
        for name in &slot.namespaces {
            if let Err(e) = self.delete_own_namespace(name).await {
                errors.push(e);
            }
        }
        let mut st = self.lock();
        for n in &slot.namespaces {
            st.all_namespaces.remove(n);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ProviderError::Failed(format!(
                "deleting namespaces: {}",
                errors.join("; ")
            )))
        }
    }

    async fn delete_own_namespace(&self, name: &str) -> Result<(), String> {
        let r = self.delete_labelled_namespace(name).await;
        if r.is_ok()
            && let Some(o) = &self.cfg.ownership
        {
            o.forget(name);
        }
        r
    }

    async fn delete_labelled_namespace(&self, name: &str) -> Result<(), String> {
        match self.api.get_namespace(name).await {
            Ok(None) => Ok(()),
            Err(e) => Err(format!("{name}: {e}")),
            Ok(Some(ns)) => {
                let ours = ns
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(RUN_ID_LABEL))
                    .is_some_and(|v| v == NameMap::new(&self.run_id, 0).run_label());
                if !ours {
                    return Err(format!("{name}: not labelled as this run's, left alone"));
                }
                self.api
                    .delete_namespace(name)
                    .await
                    .map_err(|e| format!("{name}: {e}"))
            }
        }
    }

    /// Deletes every slot still standing (idle ones; sessions delete theirs on failure).
    pub async fn close(&self) -> Result<(), ProviderError> {
        let (idle, rest): (Vec<Slot>, BTreeSet<String>) = {
            let mut st = self.lock();
            (std::mem::take(&mut st.idle), st.all_namespaces.clone())
        };
        let mut errors = Vec::new();
        for s in &idle {
            if let Err(e) = self.delete_slot(s).await {
                errors.push(e.to_string());
            }
        }
        for n in rest {
            if let Err(e) = self.delete_own_namespace(&n).await {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ProviderError::Failed(errors.join("; ")))
        }
    }

    /// Opens a session for `scenario`.
    pub fn open(self: &Arc<Self>, scenario: &Scenario) -> Result<ClusterSession<A>, ProviderError> {
        render::check_scenario(scenario)?;
        let probes = render::scenario_probes(scenario);
        let Some(first) = scenario.steps.first() else {
            return Err(ProviderError::InvalidInput(format!(
                "scenario {:?} has no steps",
                scenario.name
            )));
        };
        let slot = self.acquire(&first.model, &probes);
        Ok(ClusterSession {
            pool: Arc::clone(self),
            slot: Some(slot),
            prev: None,
            broken: false,
        })
    }
}

/// One scenario realised in a slot of a cluster.
pub struct ClusterSession<A: ClusterApi> {
    pool: Arc<ClusterPool<A>>,
    slot: Option<Slot>,
    /// The last step applied, bound to the real addresses.
    prev: Option<Step>,
    /// Something failed half-way: the slot is deleted, never reused.
    broken: bool,
}

impl<A: ClusterApi> ClusterSession<A> {
    pub fn name_map(&self) -> Option<&NameMap> {
        self.slot.as_ref().map(|s| &s.map)
    }

    /// Index of the slot this session runs in (equal indices: reused pods).
    pub fn slot_index(&self) -> Option<usize> {
        self.slot.as_ref().map(|s| s.index)
    }

    fn slot(&self) -> Result<&Slot, ProviderError> {
        self.slot
            .as_ref()
            .ok_or_else(|| ProviderError::Failed("the session was torn down".into()))
    }

    /// Real IPs of the model's pods, once realised, and of the external peers the platform
    /// started (`(external)/<name>`; entries the model lacks are ignored by re-binding).
    pub fn real_addresses(&self) -> Option<BTreeMap<PodRef, IpAddr>> {
        let slot = self.slot.as_ref()?;
        slot.ready.then(|| {
            slot.realised
                .iter()
                .map(|(r, p)| (r.clone(), p.ip))
                .chain(
                    self.pool.cfg.externals.iter().map(|(name, e)| {
                        (PodRef::new(crate::model::EXTERNAL_NAMESPACE, name), e.ip)
                    }),
                )
                .collect()
        })
    }

    /// The real external peer standing for `r`, when `r` is an external the platform started.
    fn real_external(&self, r: &PodRef) -> Option<&RealExternal> {
        if r.namespace != crate::model::EXTERNAL_NAMESPACE {
            return None;
        }
        self.pool.cfg.externals.get(&r.name)
    }

    /// The address probes to `r` use: a realised pod's or a started external peer's.
    fn target_ip(&self, r: &PodRef) -> Option<IpAddr> {
        self.slot
            .as_ref()?
            .realised
            .get(r)
            .map(|p| p.ip)
            .or_else(|| self.real_external(r).map(|e| e.ip))
    }

    pub async fn apply(&mut self, step: &Step) -> Result<(), ProviderError> {
        let r = self.apply_inner(step).await;
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    async fn apply_inner(&mut self, step: &Step) -> Result<(), ProviderError> {
        if self.prev.is_none() {
            let ready = self.slot()?.ready;
            if ready {
                self.relabel_to(&step.model).await?;
            } else {
                self.create(&step.model).await?;
            }
        }
        let addrs = self.real_addresses().unwrap_or_default();
        let bound = step
            .rebind(&addrs)
            .map_err(|e| ProviderError::InvalidInput(e.to_string()))?;
        let slot = self.slot()?.clone();
        let actions = StepActions::between(&slot.map, self.prev.as_ref(), &bound)?;
        if self.prev.is_some() {
            self.set_labels(&actions.label_namespaces, &actions.label_pods)
                .await?;
        }
        // Pods relabelled (or a reused slot's labels reset): Services selecting by label may now
        // reach other pods, so their endpoints are checked again.
        let first = self.prev.is_none();
        let relabelled = first || !actions.label_pods.is_empty();
        self.sync_services(&bound.model, relabelled, first).await?;
        let by_key: BTreeMap<_, _> = bound.policies.iter().map(|p| (&p.key, p)).collect();
        for key in &actions.apply_policies {
            let Some(p) = by_key.get(key) else { continue };
            let obj = render::policy_object(&slot.map, p);
            self.pool
                .api
                .apply_policy(&obj)
                .await
                .map_err(|e| failed(&format!("applying policy {key}"), e))?;
            if let Some(s) = self.slot.as_mut() {
                s.policies
                    .insert((slot.map.namespace(&key.namespace), key.name.clone()));
            }
        }
        for key in &actions.delete_policies {
            let ns = slot.map.namespace(&key.namespace);
            self.pool
                .api
                .delete_policy(&ns, &key.name)
                .await
                .map_err(|e| failed(&format!("deleting policy {key}"), e))?;
            if let Some(s) = self.slot.as_mut() {
                s.policies.remove(&(ns, key.name.clone()));
            }
        }
        self.apply_cluster(&slot.map, &bound, &actions).await?;
        self.prev = Some(bound);
        Ok(())
    }

    /// The step's cluster-wide policy changes, for the kinds this cluster enforces (the others'
    /// cells are held by the engine, and their CRDs may not even exist).
    async fn apply_cluster(
        &mut self,
        map: &NameMap,
        bound: &Step,
        actions: &StepActions,
    ) -> Result<(), ProviderError> {
        let gaps = &self.pool.cfg.cluster_gaps;
        for key in actions
            .apply_cluster
            .iter()
            .filter(|k| !gaps.contains_key(&k.kind))
        {
            let Some(p) = bound.cluster_policies.iter().find(|p| &p.key == key) else {
                continue;
            };
            if key.kind == ClusterKind::BaselineAdminNetworkPolicy {
                let me = self.slot()?.index;
                let mut st = self.pool.lock();
                match st.banp {
                    Some(other) if other != me => {
                        return Err(ProviderError::Failed(format!(
                            "{key}: another scenario running at the same time has the cluster's \
                             only BaselineAdminNetworkPolicy in place (the API allows one, named \
                             default); run scenarios with one at --parallel 1"
                        )));
                    }
                    _ => st.banp = Some(me),
                }
            }
            let obj = render::cluster_policy_object(map, p);
            self.pool
                .api
                .apply_cluster_policy(key.kind, &obj)
                .await
                .map_err(|e| failed(&format!("applying {key}"), e))?;
            if let Some(s) = self.slot.as_mut() {
                s.cluster.insert((key.kind, map.cluster_policy_name(key)));
            }
        }
        for key in actions
            .delete_cluster
            .iter()
            .filter(|k| !gaps.contains_key(&k.kind))
        {
            let name = map.cluster_policy_name(key);
            self.pool
                .api
                .delete_cluster_policy(key.kind, &name)
                .await
                .map_err(|e| failed(&format!("deleting {key}"), e))?;
            if let Some(s) = self.slot.as_mut() {
                s.cluster.remove(&(key.kind, name));
            }
            if key.kind == ClusterKind::BaselineAdminNetworkPolicy {
                self.release_banp();
            }
        }
        Ok(())
    }

    /// Gives up the cluster's BaselineAdminNetworkPolicy, when this session held it.
    fn release_banp(&self) {
        let me = self.slot.as_ref().map(|s| s.index);
        let mut st = self.pool.lock();
        if st.banp.is_some() && st.banp == me {
            st.banp = None;
        }
    }

    /// Creates the slot: namespaces, ServiceAccount wait, workloads, readiness, the gate.
    async fn create(&mut self, model: &Model) -> Result<(), ProviderError> {
        let pool = Arc::clone(&self.pool);
        let api = &pool.api;
        let map = self.slot()?.map.clone();
        let namespaces = render::namespaces_of(model);
        for ns in &namespaces {
            let mut obj = render::namespace_object(&map, model, ns);
            let name = map.namespace(ns);
            if let Some(o) = &pool.cfg.ownership {
                obj.metadata.annotations = Some(o.annotations());
                o.record(&name);
            }
            pool.remember_namespace(&name);
            if let Some(s) = self.slot.as_mut() {
                s.namespaces.push(name.clone());
            }
            api.apply_namespace(&obj)
                .await
                .map_err(|e| failed(&format!("creating namespace {name}"), e))?;
        }
        for ns in &namespaces {
            self.wait_service_account(&map.namespace(ns)).await?;
        }
        let sctp = pool.sctp_unsupported().is_none();
        let served = self.slot()?.served.clone();
        for w in render::workload_objects(&map, model, &served, &pool.cfg.image, sctp) {
            let r = match &w {
                WorkloadObject::Pod(p) => api.apply_pod(p).await,
                WorkloadObject::Deployment(d) => api.apply_deployment(d).await,
            };
            r.map_err(|e| failed("creating workloads", e))?;
        }
        self.wait_ready(model).await?;
        if pool.cfg.services {
            self.label_replicas(model).await?;
        }
        if let Some(s) = self.slot.as_mut() {
            s.ns_labels = namespaces
                .iter()
                .map(|ns| (ns.clone(), render::namespace_labels(&map, model, ns)))
                .collect();
            s.pod_labels = model
                .pods
                .values()
                .filter(|p| !p.is_external())
                .map(|p| (p.pod_ref(), p.labels.clone()))
                .collect();
            s.ready = true;
        }
        self.run_gate(model).await
    }

    /// Gives every Deployment replica the `netpolc.io/pod` label of the model pod it was matched
    /// to, so its per-pod Service selects exactly it (bare pods are created with theirs).
    async fn label_replicas(&self, model: &Model) -> Result<(), ProviderError> {
        let slot = self.slot()?;
        for pod in model.pods.values() {
            if !matches!(pod.workload, crate::model::Workload::Deployment { .. }) {
                continue;
            }
            let r = pod.pod_ref();
            let Some(real) = slot.realised.get(&r) else {
                continue;
            };
            self.pool
                .api
                .patch_pod(
                    &slot.map.namespace(&r.namespace),
                    &real.name,
                    &render::pod_label_patch(&pod.name),
                )
                .await
                .map_err(|e| failed(&format!("labelling replica {r}"), e))?;
        }
        Ok(())
    }

    /// Brings the slot's Services to the model's (when the run probes through Services): applies
    /// new and changed ones, reading back each ClusterIP, deletes those no longer wanted (a reused
    /// slot's previous scenario's), then waits for endpoints where anything changed. A Service the
    /// API refuses, or whose endpoints never appear, does not stop the run: the cells probed
    /// through it are `error` with the reason.
    async fn sync_services(
        &mut self,
        model: &Model,
        relabelled: bool,
        first: bool,
    ) -> Result<(), ProviderError> {
        if !self.pool.cfg.services {
            return Ok(());
        }
        let slot = self.slot()?.clone();
        let wanted: BTreeMap<(String, String), crate::service::Service> =
            render::services_of(model, &slot.served)
                .into_iter()
                .map(|s| ((s.namespace.clone(), s.name.clone()), s))
                .collect();
        let mut changed = false;
        for (key, _) in slot
            .services
            .iter()
            .filter(|(k, _)| !wanted.contains_key(*k))
        {
            let ns = slot.map.namespace(&key.0);
            self.pool
                .api
                .delete_service(&ns, &key.1)
                .await
                .map_err(|e| failed(&format!("deleting Service {ns}/{}", key.1), e))?;
            if let Some(s) = self.slot.as_mut() {
                s.services.remove(key);
            }
            changed = true;
        }
        for (key, svc) in &wanted {
            let object = render::service_object(&slot.map, svc);
            let same = slot.services.get(key).filter(|r| r.object == object);
            let real = match same {
                Some(r) => {
                    let selector_backed =
                        matches!(svc.backing, crate::service::Backing::Selector(_));
                    let mut r = r.clone();
                    r.model = svc.clone();
                    if relabelled && selector_backed && r.endpoints.is_ok() {
                        r.endpoints = Err(ENDPOINTS_PENDING.into());
                        changed = true;
                    }
                    r
                }
                None => {
                    changed = true;
                    let ns = slot.map.namespace(&key.0);
                    match self.pool.api.apply_service(&object).await {
                        Ok(stored) => {
                            let ip = stored
                                .spec
                                .as_ref()
                                .and_then(|s| s.cluster_ip.as_deref())
                                .and_then(|ip| ip.parse::<IpAddr>().ok());
                            RealService {
                                model: svc.clone(),
                                object,
                                cluster_ip: ip,
                                endpoints: match ip {
                                    Some(_) => Err(ENDPOINTS_PENDING.into()),
                                    None => Err(format!(
                                        "the API server allocated no ClusterIP to Service {ns}/{}",
                                        key.1
                                    )),
                                },
                            }
                        }
                        Err(e) => RealService {
                            model: svc.clone(),
                            object,
                            cluster_ip: None,
                            endpoints: Err(format!("creating Service {ns}/{}: {e}", key.1)),
                        },
                    }
                }
            };
            if let Some(s) = self.slot.as_mut() {
                s.services.insert(key.clone(), real);
            }
        }
        if changed {
            self.wait_endpoints(model).await?;
        }
        // No policy in place yet (a scenario's first step): prove every Service answers through
        // kube-proxy's (or the CNI's) service path, as the pod gate proves pods do.
        if (changed || first) && self.slot()?.policies.is_empty() {
            self.run_service_gate(model).await?;
        }
        Ok(())
    }

    /// The reachability gate through Services: every source pod dials the ClusterIP and port of
    /// every Service with ready endpoints (one endpoint: the only ones probed) until all connect
    /// or the gate times out. EndpointSlices being ready does not mean the service path is
    /// programmed on every node yet; a probe before that is refused or times out, which would
    /// let an expected-deny cell pass. Pairs still silent make their cells `error`. Hairpin is
    /// left out (CNIs differ on it).
    async fn run_service_gate(&mut self, model: &Model) -> Result<(), ProviderError> {
        let slot = self.slot()?.clone();
        let sctp = self.pool.sctp_unsupported().is_none();
        let sources: Vec<PodRef> = model
            .pods
            .values()
            .filter(|p| !p.is_external())
            .map(|p| p.pod_ref())
            .filter(|r| slot.realised.contains_key(r))
            .collect();
        // (source, Service, port, protocol) → (request, ClusterIP)
        let mut waiting: BTreeMap<ServiceDial, (ProbeRequest, String)> = BTreeMap::new();
        for (key, r) in &slot.services {
            let (Ok(()), Some(ip)) = (&r.endpoints, r.cluster_ip) else {
                continue;
            };
            let eps = r.model.endpoints(model);
            let [ep] = eps.as_slice() else { continue };
            let (Some(pod), Some(real)) = (model.pod(ep), slot.realised.get(ep)) else {
                continue;
            };
            for sp in &r.model.ports {
                let Some(target) = r.model.target_on(model, sp, ep) else {
                    continue;
                };
                let probe = Probe::new(target, sp.protocol);
                let serves = slot.served.contains(&probe)
                    || pod
                        .ports
                        .iter()
                        .any(|c| c.port == target && c.protocol == sp.protocol);
                if !serves || (sp.protocol == Protocol::Sctp && !sctp) {
                    continue;
                }
                for from in sources.iter().filter(|f| *f != ep) {
                    let req = ProbeRequest::pod_ip(
                        from.clone(),
                        ep.clone(),
                        real.ip,
                        Probe::new(sp.port, sp.protocol),
                    );
                    waiting.insert(
                        (from.clone(), key.clone(), sp.port, sp.protocol),
                        (req, ip.to_string()),
                    );
                }
            }
        }
        let deadline = Instant::now() + self.pool.cfg.gate_timeout;
        let timeout = self.pool.cfg.probe_timeout;
        while !waiting.is_empty() {
            let keys: Vec<_> = waiting.keys().cloned().collect();
            let batch: Vec<(ProbeRequest, (String, u16))> = keys
                .iter()
                .map(|k| {
                    let (req, ip) = &waiting[k];
                    (req.clone(), (ip.clone(), k.2))
                })
                .collect();
            let obs = self.exec_probes(&batch, timeout).await;
            for (k, o) in keys.into_iter().zip(obs) {
                if o.result == Connectivity::Connected {
                    waiting.remove(&k);
                }
            }
            if waiting.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if let Some(s) = self.slot.as_mut() {
            s.service_silent = waiting.into_keys().collect();
        }
        Ok(())
    }

    /// Polls the EndpointSlices of every Service not yet known to route to exactly its pods
    /// until all do or the gate timeout passes ([`decide::endpoints_ready`]); those still not
    /// ready keep the reason.
    async fn wait_endpoints(&mut self, model: &Model) -> Result<(), ProviderError> {
        let timeout = self.pool.cfg.gate_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let slot = self.slot()?.clone();
            let pending: Vec<(&(String, String), &RealService)> = slot
                .services
                .iter()
                .filter(|(_, r)| r.cluster_ip.is_some() && r.endpoints.is_err())
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            let mut results = Vec::new();
            for (key, r) in pending {
                let ns = slot.map.namespace(&key.0);
                let result = match decide::endpoint_want(model, &r.model, &slot.realised) {
                    None => Err("a pod it selects is not realised".to_string()),
                    Some(want) => match self
                        .pool
                        .api
                        .list_endpoint_slices(
                            &ns,
                            &format!("{}={}", decide::SERVICE_NAME_LABEL, key.1),
                        )
                        .await
                    {
                        Ok(slices) => decide::endpoints_ready(&want, &slices),
                        Err(e) => Err(format!("listing its EndpointSlices: {e}")),
                    },
                };
                results.push((key.clone(), result));
            }
            let expired = Instant::now() >= deadline;
            if let Some(s) = self.slot.as_mut() {
                for (key, result) in results {
                    if let Some(r) = s.services.get_mut(&key) {
                        r.endpoints = match result {
                            Err(why) if expired => Err(format!(
                                "Service {}/{}: endpoints not ready after {}s: {why}",
                                s.map.namespace(&key.0),
                                key.1,
                                timeout.as_secs()
                            )),
                            other => other,
                        };
                    }
                }
            }
            if expired {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Where a probe through a Service dials (`host`, `port`): the ClusterIP the API server gave
    /// the Service, or its DNS name in the real namespace; or why the cell is not probed.
    fn service_dial(&self, req: &ProbeRequest) -> Result<(String, u16), (Connectivity, String)> {
        let Some(target) = &req.service else {
            return Err((
                Connectivity::Unsupported,
                req.missing_service().unwrap_or_default(),
            ));
        };
        if !self.pool.cfg.services {
            return Err((
                Connectivity::Unsupported,
                "this session creates no Services (the run does not probe through them)".into(),
            ));
        }
        let slot = self
            .slot
            .as_ref()
            .ok_or((Connectivity::Error, "the session was torn down".to_string()))?;
        let ns = slot.map.namespace(&target.namespace);
        let key = (target.namespace.clone(), target.name.clone());
        let Some(real) = slot.services.get(&key) else {
            return Err((
                Connectivity::Error,
                format!("Service {ns}/{} was not created", target.name),
            ));
        };
        if let Err(why) = &real.endpoints {
            return Err((Connectivity::Error, format!("{why}; not judged")));
        }
        if !real
            .model
            .ports
            .iter()
            .any(|p| p.port == target.port && p.protocol == req.probe.protocol)
        {
            return Err((
                Connectivity::Error,
                format!(
                    "Service {ns}/{} has no port {}/{}",
                    target.name, target.port, req.probe.protocol
                ),
            ));
        }
        match (req.via, real.cluster_ip) {
            (crate::service::ProbeMode::ServiceName, _) => Ok((
                format!("{}.{ns}.svc.cluster.local", target.name),
                target.port,
            )),
            (_, Some(ip)) => Ok((ip.to_string(), target.port)),
            (_, None) => Err((
                Connectivity::Error,
                format!("Service {ns}/{} has no ClusterIP", target.name),
            )),
        }
    }

    /// Waits (bounded) for the namespace's `default` ServiceAccount.
    async fn wait_service_account(&self, ns: &str) -> Result<(), ProviderError> {
        let deadline = Instant::now() + self.pool.cfg.ready_timeout;
        loop {
            match self.pool.api.get_service_account(ns, "default").await {
                Ok(Some(_)) => return Ok(()),
                Ok(None) => {}
                Err(e) => return Err(failed(&format!("reading {ns}/default ServiceAccount"), e)),
            }
            if Instant::now() >= deadline {
                return Err(ProviderError::Failed(format!(
                    "namespace {ns} has no default ServiceAccount after {}s (is the \
                     ServiceAccount controller running?)",
                    self.pool.cfg.ready_timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls until every model pod has a usable real pod (bounded by `ready_timeout`).
    async fn wait_ready(&mut self, model: &Model) -> Result<(), ProviderError> {
        let pool = Arc::clone(&self.pool);
        let map = self.slot()?.map.clone();
        let served = self.slot()?.served.clone();
        let deadline = Instant::now() + pool.cfg.ready_timeout;
        let selector = format!("{RUN_ID_LABEL}={}", map.run_label());
        loop {
            let mut listed = BTreeMap::new();
            for ns in render::namespaces_of(model) {
                let real = map.namespace(&ns);
                let pods = pool
                    .api
                    .list_pods(&real, &selector)
                    .await
                    .map_err(|e| failed(&format!("listing pods in {real}"), e))?;
                listed.insert(ns, pods);
            }
            let r = decide::realise(model, &listed, &served);
            if let Some(why) = decide::sctp_unsupported_reason(&r.sctp_failures) {
                pool.mark_sctp_unsupported(why);
            }
            if r.missing.is_empty() {
                if let Some(s) = self.slot.as_mut() {
                    s.realised = r.found;
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ProviderError::Failed(format!(
                    "pods not ready after {}s: {}",
                    pool.cfg.ready_timeout.as_secs(),
                    r.missing.join("; ")
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Probes every (source, server) pair with no policy in place until all connect or the gate
    /// times out; the pairs still silent are remembered.
    async fn run_gate(&mut self, model: &Model) -> Result<(), ProviderError> {
        let sctp = self.pool.sctp_unsupported().is_none();
        let served = self.slot()?.served.clone();
        let externals: BTreeMap<String, BTreeSet<Probe>> = self
            .pool
            .cfg
            .externals
            .iter()
            .map(|(n, e)| (n.clone(), e.served.clone()))
            .collect();
        let mut gate = Gate::new(model, &served, sctp).with_externals(model, &externals, sctp);
        let deadline = Instant::now() + self.pool.cfg.gate_timeout;
        let timeout = self.pool.cfg.probe_timeout;
        loop {
            let reqs = gate.requests();
            let batch: Vec<ProbeRequest> = reqs
                .iter()
                .filter_map(|(from, (to, probe))| {
                    let ip = self.target_ip(to)?;
                    Some(ProbeRequest::pod_ip(from.clone(), to.clone(), ip, *probe))
                })
                .collect();
            let dials: Vec<(ProbeRequest, (String, u16))> = batch
                .iter()
                .map(|r| (r.clone(), (r.to_ip.to_string(), r.probe.port)))
                .collect();
            let obs = self.exec_probes(&dials, timeout).await;
            gate.record(
                batch
                    .iter()
                    .zip(&obs)
                    .filter(|(_, o)| o.result == Connectivity::Connected)
                    .map(|(r, _)| (r.from.clone(), (r.to.clone(), r.probe))),
            );
            if gate.is_open() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if let Some(s) = self.slot.as_mut() {
            s.silent = gate.waiting;
        }
        Ok(())
    }

    /// A reused slot: labels set to the new model's (no policy is in place, so nothing changes
    /// for connectivity).
    async fn relabel_to(&mut self, model: &Model) -> Result<(), ProviderError> {
        let slot = self.slot()?.clone();
        let namespaces: Vec<(String, Labels)> = render::namespaces_of(model)
            .into_iter()
            .map(|ns| {
                let l = render::namespace_labels(&slot.map, model, &ns);
                (ns, l)
            })
            .filter(|(ns, l)| slot.ns_labels.get(ns) != Some(l))
            .collect();
        let pods: Vec<(PodRef, Labels)> = model
            .pods
            .values()
            .filter(|p| !p.is_external())
            .filter(|p| slot.pod_labels.get(&p.pod_ref()) != Some(&p.labels))
            .map(|p| (p.pod_ref(), p.labels.clone()))
            .collect();
        self.set_labels(&namespaces, &pods).await
    }

    async fn set_labels(
        &mut self,
        namespaces: &[(String, Labels)],
        pods: &[(PodRef, Labels)],
    ) -> Result<(), ProviderError> {
        let slot = self.slot()?.clone();
        for (ns, labels) in namespaces {
            let name = slot.map.namespace(ns);
            let old = slot.ns_labels.get(ns).cloned().unwrap_or_default();
            let patch = render::label_patch(&old, labels, &[]);
            self.pool
                .api
                .patch_namespace(&name, &patch)
                .await
                .map_err(|e| failed(&format!("relabelling namespace {name}"), e))?;
            if let Some(s) = self.slot.as_mut() {
                s.ns_labels.insert(ns.clone(), labels.clone());
            }
        }
        for (pod, labels) in pods {
            let real = slot
                .realised
                .get(pod)
                .ok_or_else(|| ProviderError::Failed(format!("pod {pod} was never realised")))?;
            let old = slot.pod_labels.get(pod).cloned().unwrap_or_default();
            let patch = render::label_patch(&old, labels, &[]);
            self.pool
                .api
                .patch_pod(&slot.map.namespace(&pod.namespace), &real.name, &patch)
                .await
                .map_err(|e| failed(&format!("relabelling pod {pod}"), e))?;
            if let Some(s) = self.slot.as_mut() {
                s.pod_labels.insert(pod.clone(), labels.clone());
            }
        }
        Ok(())
    }

    /// Decides the cells that are not probed, and probes the rest.
    pub async fn probe(&self, batch: &[ProbeRequest], timeout: Duration) -> Vec<Observation> {
        let early = |result, detail: String| Observation {
            result,
            detail: Some(detail),
            elapsed_ms: 0,
            command: String::new(),
        };
        let oracle = self.prev.as_ref().map(Step::oracle);
        let sctp_off = self.pool.sctp_unsupported();
        let model = self.prev.as_ref().map(|s| &s.model);
        let is_external = |r: &PodRef| {
            model
                .and_then(|m| m.pod(r))
                .is_some_and(crate::model::Pod::is_external)
        };
        let silent = self.slot.as_ref().map(|s| &s.silent);
        let service_silent = self.slot.as_ref().map(|s| &s.service_silent);
        let mut out: Vec<Option<Observation>> = vec![None; batch.len()];
        let mut live = Vec::new();
        for (i, req) in batch.iter().enumerate() {
            let gap = oracle.as_ref().and_then(|o| {
                gaps::covering(&self.pool.cfg.gaps, o, &req.from, &req.to, req.probe)
            });
            let dial = if req.via.is_service() && !is_external(&req.to) {
                self.service_dial(req)
            } else {
                Ok((req.to_ip.to_string(), req.probe.port))
            };
            if let Some(g) = gap {
                out[i] = Some(early(Connectivity::Unsupported, g.cell_detail()));
            } else if req.probe.protocol == Protocol::Sctp
                && let Some(why) = &sctp_off
            {
                out[i] = Some(early(Connectivity::Unsupported, why.clone()));
            } else if req.via.is_service() && is_external(&req.to) {
                out[i] = Some(early(
                    Connectivity::Unsupported,
                    "an external peer has no Service on a cluster; only pod-ip probes reach it"
                        .into(),
                ));
            } else if let Some(why) = external_cell(
                is_external(&req.from),
                is_external(&req.to).then(|| self.real_external(&req.to)),
                req.probe,
            ) {
                out[i] = Some(early(Connectivity::Unsupported, why));
            } else if let Err((result, why)) = &dial {
                out[i] = Some(early(*result, why.clone()));
            } else if silent
                .is_some_and(|s| s.contains(&(req.from.clone(), (req.to.clone(), req.probe))))
            {
                out[i] = Some(early(
                    Connectivity::Error,
                    format!(
                        "{} {} never answered {} before any policy was applied (reachability gate); not judged",
                        req.to, req.probe, req.from
                    ),
                ));
            } else if let Some(t) = req.service.as_ref().filter(|t| {
                req.via.is_service()
                    && service_silent.is_some_and(|s| {
                        s.contains(&(
                            req.from.clone(),
                            (t.namespace.clone(), t.name.clone()),
                            t.port,
                            req.probe.protocol,
                        ))
                    })
            }) {
                out[i] = Some(early(
                    Connectivity::Error,
                    format!(
                        "{} never reached Service {}/{} port {}/{} before any policy was applied \
                         (reachability gate through Services); not judged",
                        req.from, t.namespace, t.name, t.port, req.probe.protocol
                    ),
                ));
            } else if let Ok(d) = dial {
                live.push((i, d));
            }
        }
        let reqs: Vec<(ProbeRequest, (String, u16))> = live
            .iter()
            .map(|(i, d)| (batch[*i].clone(), d.clone()))
            .collect();
        let obs = self.exec_probes(&reqs, timeout).await;
        for ((i, _), o) in live.into_iter().zip(obs) {
            out[i] = Some(o);
        }
        batch
            .iter()
            .zip(out)
            .map(|(req, o)| {
                let mut o = o.unwrap_or_else(|| early(Connectivity::Error, "not probed".into()));
                if req.from == req.to
                    && self.pool.cfg.loopback == Loopback::Record
                    && o.result.allowed().is_some()
                {
                    // Hairpin through the pod's own Service is the same packet after DNAT, and
                    // CNIs (and kube-proxy's hairpin mode) differ on it just the same.
                    let what = if req.via.is_service() {
                        "hairpin through the pod's own Service"
                    } else {
                        "loopback"
                    };
                    o.detail = Some(format!(
                        "{what} is recorded, not judged (CNIs differ, kubernetes#95879); observed {:?}",
                        o.result
                    ));
                    o.result = Connectivity::Unsupported;
                }
                o
            })
            .collect()
    }

    /// One exec per source pod, running that pod's probes concurrently.
    /// `batch` pairs each request with the host and port it dials.
    async fn exec_probes(
        &self,
        batch: &[(ProbeRequest, (String, u16))],
        timeout: Duration,
    ) -> Vec<Observation> {
        let Some(slot) = self.slot.as_ref() else {
            return batch
                .iter()
                .map(|_| Observation {
                    result: Connectivity::Error,
                    detail: Some("the session was torn down".into()),
                    elapsed_ms: 0,
                    command: String::new(),
                })
                .collect();
        };
        let mut out: Vec<Option<Observation>> = vec![None; batch.len()];
        let mut groups: BTreeMap<PodRef, Vec<(usize, ScriptProbe)>> = BTreeMap::new();
        for (i, (req, (host, port))) in batch.iter().enumerate() {
            if !slot.realised.contains_key(&req.from) {
                out[i] = Some(Observation {
                    result: Connectivity::Error,
                    detail: Some(format!("{} is not realised", req.from)),
                    elapsed_ms: 0,
                    command: String::new(),
                });
                continue;
            }
            groups.entry(req.from.clone()).or_default().push((
                i,
                ScriptProbe {
                    index: 0,
                    host: host.clone(),
                    port: *port,
                    protocol: req.probe.protocol,
                },
            ));
        }
        let runs = groups.into_iter().map(|(from, items)| {
            let src = slot.realised.get(&from).cloned();
            let ns = slot.map.namespace(&from.namespace);
            async move {
                let Some(src) = src else { return Vec::new() };
                let probes: Vec<ScriptProbe> = items
                    .iter()
                    .enumerate()
                    .map(|(k, (_, p))| ScriptProbe {
                        index: k,
                        ..p.clone()
                    })
                    .collect();
                let started = Instant::now();
                let script = probing::script(&probes, timeout);
                let result = tokio::time::timeout(
                    probing::script_deadline(probes.len(), timeout),
                    self.pool.api.exec(
                        &ns,
                        &src.name,
                        &src.container,
                        vec!["sh".into(), "-c".into(), script],
                    ),
                )
                .await
                .map_err(|_| format!("exec in {ns}/{} did not finish in time", src.name))
                .and_then(|r| {
                    r.map(|stdout| probing::parse_output(&stdout, probes.len()))
                        .map_err(|e: ApiError| format!("exec in {ns}/{}: {e}", src.name))
                });
                let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                items
                    .iter()
                    .zip(probes.iter())
                    .enumerate()
                    .map(|(k, ((i, _), p))| {
                        let at = probing::ExecTarget {
                            namespace: &ns,
                            pod: &src.name,
                            container: &src.container,
                        };
                        let command =
                            probing::exec_command(at, &p.host, p.port, p.protocol, timeout);
                        let (result, detail) = match &result {
                            Err(e) => (Connectivity::Error, Some(e.clone())),
                            Ok(parsed) => match parsed.get(k).cloned().flatten() {
                                None => (
                                    Connectivity::Error,
                                    Some("no result line from the probe script".into()),
                                ),
                                Some(r) => {
                                    let c = probing::classify(&r);
                                    (c, (!r.message.is_empty()).then(|| r.message.clone()))
                                }
                            },
                        };
                        (
                            *i,
                            Observation {
                                result,
                                detail,
                                elapsed_ms,
                                command,
                            },
                        )
                    })
                    .collect::<Vec<_>>()
            }
        });
        let done: Vec<Vec<(usize, Observation)>> = futures::stream::iter(runs)
            .buffer_unordered(self.pool.cfg.exec_concurrency.max(1))
            .collect()
            .await;
        for (i, o) in done.into_iter().flatten() {
            out[i] = Some(o);
        }
        out.into_iter()
            .map(|o| {
                o.unwrap_or(Observation {
                    result: Connectivity::Error,
                    detail: Some("not probed".into()),
                    elapsed_ms: 0,
                    command: String::new(),
                })
            })
            .collect()
    }

    /// Hands the slot back for reuse (policies deleted, the gate passed again), or deletes it
    /// when the session failed, reuse is off, or the slot would not come back clean.
    pub async fn teardown(&mut self) -> Result<(), ProviderError> {
        let Some(mut slot) = self.slot.take() else {
            return Ok(());
        };
        let model = self.prev.take().map(|s| s.model);
        // Cluster-scoped objects outlive namespaces: deleted whatever happens to the slot.
        let mut cluster_left = Vec::new();
        for (kind, name) in std::mem::take(&mut slot.cluster) {
            if let Err(e) = self.pool.api.delete_cluster_policy(kind, &name).await {
                cluster_left.push(format!("{kind}/{name}: {e}"));
            }
        }
        if cluster_left.is_empty() {
            let mut st = self.pool.lock();
            if st.banp == Some(slot.index) {
                st.banp = None;
            }
        } else {
            let _ = self.pool.delete_slot(&slot).await;
            return Err(ProviderError::Failed(format!(
                "deleting cluster-wide policies: {}",
                cluster_left.join("; ")
            )));
        }
        let reusable = !self.broken && self.pool.cfg.reuse && slot.ready;
        if reusable && let Some(model) = model {
            let mut clean = true;
            for (ns, name) in std::mem::take(&mut slot.policies) {
                if self.pool.api.delete_policy(&ns, &name).await.is_err() {
                    clean = false;
                }
            }
            if clean {
                // The gate proves the slot is back to "everything allowed".
                self.slot = Some(slot);
                let gated = self.run_gate(&model).await;
                slot = match self.slot.take() {
                    Some(s) => s,
                    None => return gated,
                };
                if gated.is_ok() && slot.silent.is_empty() {
                    if let Some(evicted) = self.pool.release(slot) {
                        return self.pool.delete_slot(&evicted).await;
                    }
                    return Ok(());
                }
            }
        }
        self.pool.delete_slot(&slot).await
    }
}

/// Why a cell touching an external peer is not probed, or `None` when it is: only cells *to* a
/// started peer that serves the probe are. `to` is `None` when the destination is not external,
/// `Some(None)` when it is but no peer was started for it.
fn external_cell(
    from_external: bool,
    to: Option<Option<&RealExternal>>,
    probe: Probe,
) -> Option<String> {
    if from_external {
        return Some(
            "probes from a peer outside the cluster are not run on clusters (it has no route to \
             pod addresses); only pods' egress to it is probed"
                .into(),
        );
    }
    match to {
        None => None,
        Some(None) => Some("no external peer is realised on this provider".into()),
        Some(Some(e)) if !e.served.contains(&probe) => Some(format!(
            "the external peer ({}) does not serve {probe}",
            e.what
        )),
        Some(Some(_)) => None,
    }
}

/// The kind and kubeconfig platforms share this session: only how the cluster came to be differs.
impl<A: ClusterApi> crate::provider::Session for ClusterSession<A> {
    fn apply(
        &mut self,
        step: &Step,
    ) -> impl std::future::Future<Output = Result<(), ProviderError>> + Send {
        ClusterSession::apply(self, step)
    }
    fn probe(
        &self,
        batch: &[ProbeRequest],
        timeout: Duration,
    ) -> impl std::future::Future<Output = Vec<Observation>> + Send {
        ClusterSession::probe(self, batch, timeout)
    }
    fn teardown(&mut self) -> impl std::future::Future<Output = Result<(), ProviderError>> + Send {
        ClusterSession::teardown(self)
    }
    fn addresses(&self) -> Option<BTreeMap<PodRef, IpAddr>> {
        self.real_addresses()
    }
}

/// A [`crate::provider::Platform`] over a pool: what the kind and kubeconfig platforms delegate
/// to once their cluster exists (and what the simulated cluster of the tests and the `kind_sim`
/// benchmark runs).
pub struct PoolPlatform<A: ClusterApi> {
    pub pool: Arc<ClusterPool<A>>,
    pub info: crate::provider::PlatformInfo,
}

impl<A: ClusterApi> crate::provider::Platform for PoolPlatform<A> {
    type Session = ClusterSession<A>;
    fn info(&self) -> crate::provider::PlatformInfo {
        let mut info = self.info.clone();
        if let Some(why) = self.pool.sctp_unsupported()
            && !info.warnings.iter().any(|w| w.contains(&why))
        {
            info.warnings
                .push(format!("SCTP probes are unsupported: {why}"));
        }
        info
    }
    fn max_parallel(&self) -> usize {
        self.pool.config().parallel.max(1)
    }
    fn cluster_policy_gap(&self, kind: ClusterKind) -> Option<String> {
        self.pool.config().cluster_gaps.get(&kind).cloned()
    }
    fn open(
        &self,
        _n: usize,
        scenario: &Scenario,
    ) -> impl std::future::Future<Output = Result<ClusterSession<A>, ProviderError>> + Send {
        let s = self.pool.open(scenario);
        async move { s }
    }
    fn close(&self) -> impl std::future::Future<Output = Result<(), ProviderError>> + Send {
        let pool = Arc::clone(&self.pool);
        async move { pool.close().await }
    }
}
