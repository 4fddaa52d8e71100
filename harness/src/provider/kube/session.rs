//! The live session shared by the kind and kubeconfig providers: realises steps with kube-rs,
//! probes with batched execs, deletes its namespaces on teardown.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{AttachParams, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use tokio::io::AsyncReadExt;

use super::probing::{self, Loopback, ScriptProbe};
use super::render::{self, NameMap, StepActions, WorkloadObject};
use crate::cni::catalogue::{Gap, RUN_ID_LABEL};
use crate::model::{Model, PodRef, Probe, Workload};
use crate::policy::CompiledPolicy;
use crate::probe::{Connectivity, Observation, ProbeRequest};
use crate::provider::ProviderError;
use crate::scenario::{Scenario, Step};

/// Field manager for server-side apply.
pub const FIELD_MANAGER: &str = "netpolc";

/// Settings a live session needs besides the client.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub image: String,
    pub gaps: Vec<Gap>,
    pub loopback: Loopback,
    /// How long pods may take to become Ready after the first step.
    pub ready_timeout: Duration,
    /// Where the run records the namespaces it creates, and the lease they carry (kubeconfig:
    /// cleanup from any machine tells a dead run from a live one by it). `None`: no lease (a
    /// throwaway kind cluster, deleted whole).
    pub ownership: Option<std::sync::Arc<crate::provider::lease::cluster::Ownership>>,
}

/// One scenario realised in harness-owned namespaces of a cluster.
pub struct ClusterSession {
    client: Client,
    map: NameMap,
    cfg: SessionConfig,
    probes: BTreeSet<Probe>,
    prev: Option<Step>,
    /// Model pod → (real name, real IP, exec container).
    realised: BTreeMap<PodRef, (String, IpAddr, String)>,
    created_namespaces: Vec<String>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Failed(format!("{what}: {e}"))
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl ClusterSession {
    pub fn new(
        client: Client,
        run_id: &str,
        n: usize,
        scenario: &Scenario,
        cfg: SessionConfig,
    ) -> Result<Self, ProviderError> {
        render::check_scenario(scenario)?;
        Ok(ClusterSession {
            client,
            map: NameMap::new(run_id, n),
            cfg,
            probes: render::scenario_probes(scenario),
            prev: None,
            realised: BTreeMap::new(),
            created_namespaces: Vec::new(),
        })
    }

    pub fn name_map(&self) -> &NameMap {
        &self.map
    }

    pub async fn apply(&mut self, step: &Step) -> Result<(), ProviderError> {
        let actions = StepActions::between(&self.map, self.prev.as_ref(), step)?;
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        for ns in &actions.create_namespaces {
            let mut obj = render::namespace_object(&self.map, &step.model, ns);
            let name = self.map.namespace(ns);
            if let Some(o) = &self.cfg.ownership {
                obj.metadata.annotations = Some(o.annotations());
                o.record(&name);
            }
            let api: Api<K8sNamespace> = Api::all(self.client.clone());
            api.patch(&name, &pp, &Patch::Apply(&obj))
                .await
                .map_err(|e| failed(&format!("creating namespace {name}"), e))?;
            self.created_namespaces.push(name);
        }
        if actions.create_workloads {
            for w in render::workload_objects(&self.map, &step.model, &self.probes, &self.cfg.image)
            {
                self.create_workload(&w, &pp).await?;
            }
        }
        for (ns, labels) in &actions.label_namespaces {
            let name = self.map.namespace(ns);
            let api: Api<K8sNamespace> = Api::all(self.client.clone());
            let old = api
                .get(&name)
                .await
                .map_err(|e| failed(&format!("reading namespace {name}"), e))?
                .metadata
                .labels
                .unwrap_or_default();
            let patch = render::label_patch(
                &old,
                labels,
                &[
                    RUN_ID_LABEL,
                    crate::model::NAMESPACE_NAME_LABEL,
                    render::NAME_LABEL,
                ],
            );
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| failed(&format!("relabelling namespace {name}"), e))?;
        }
        if actions.create_workloads {
            self.wait_ready(&step.model).await?;
        }
        for (pod, labels) in &actions.label_pods {
            let (real, _, _) =
                self.realised.get(pod).cloned().ok_or_else(|| {
                    ProviderError::Failed(format!("pod {pod} was never realised"))
                })?;
            let api: Api<K8sPod> =
                Api::namespaced(self.client.clone(), &self.map.namespace(&pod.namespace));
            let old = api
                .get(&real)
                .await
                .map_err(|e| failed(&format!("reading pod {pod}"), e))?
                .metadata
                .labels
                .unwrap_or_default();
            let keep: Vec<&str> = old
                .keys()
                .filter(|k| k.starts_with(render::RESERVED_PREFIX) || *k == "pod-template-hash")
                .map(String::as_str)
                .collect();
            let patch = render::label_patch(&old, labels, &keep);
            api.patch(&real, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| failed(&format!("relabelling pod {pod}"), e))?;
        }
        let by_key: BTreeMap<_, &CompiledPolicy> =
            step.policies.iter().map(|p| (&p.key, p)).collect();
        for key in &actions.apply_policies {
            let Some(p) = by_key.get(key) else { continue };
            let obj = render::policy_object(&self.map, p);
            let ns = self.map.namespace(&key.namespace);
            let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), &ns);
            api.patch(&key.name, &pp, &Patch::Apply(&obj))
                .await
                .map_err(|e| failed(&format!("applying policy {key}"), e))?;
        }
        for key in &actions.delete_policies {
            let ns = self.map.namespace(&key.namespace);
            let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), &ns);
            match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(failed(&format!("deleting policy {key}"), e)),
            }
        }
        self.prev = Some(step.clone());
        Ok(())
    }

    async fn create_workload(
        &self,
        w: &WorkloadObject,
        pp: &PatchParams,
    ) -> Result<(), ProviderError> {
        match w {
            WorkloadObject::Pod(p) => {
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                let name = p.metadata.name.clone().unwrap_or_default();
                let api: Api<K8sPod> = Api::namespaced(self.client.clone(), &ns);
                api.patch(&name, pp, &Patch::Apply(p.as_ref()))
                    .await
                    .map_err(|e| failed(&format!("creating pod {ns}/{name}"), e))?;
            }
            WorkloadObject::Deployment(d) => {
                let ns = d.metadata.namespace.clone().unwrap_or_default();
                let name = d.metadata.name.clone().unwrap_or_default();
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
                api.patch(&name, pp, &Patch::Apply(d.as_ref()))
                    .await
                    .map_err(|e| failed(&format!("creating deployment {ns}/{name}"), e))?;
            }
        }
        Ok(())
    }

    /// Polls until every model pod has a Ready real pod with an IP; bounded by `ready_timeout`
    /// (watches of "running" never time out by themselves).
    async fn wait_ready(&mut self, model: &Model) -> Result<(), ProviderError> {
        let deadline = Instant::now() + self.cfg.ready_timeout;
        loop {
            let mut missing = Vec::new();
            let mut found = BTreeMap::new();
            for ns in render::namespaces_of(model) {
                let real_ns = self.map.namespace(&ns);
                let api: Api<K8sPod> = Api::namespaced(self.client.clone(), &real_ns);
                let lp = ListParams::default()
                    .labels(&format!("{RUN_ID_LABEL}={}", self.map.run_label()));
                let pods = api
                    .list(&lp)
                    .await
                    .map_err(|e| failed(&format!("listing pods in {real_ns}"), e))?;
                let ready: Vec<&K8sPod> = pods.items.iter().filter(|p| pod_ready(p)).collect();
                // Deployment replicas: ready pods of that workload, in name order.
                let mut by_workload: BTreeMap<String, Vec<&K8sPod>> = BTreeMap::new();
                for p in &ready {
                    if let Some(w) = p
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(render::WORKLOAD_LABEL))
                    {
                        by_workload.entry(w.clone()).or_default().push(p);
                    }
                }
                for v in by_workload.values_mut() {
                    v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                }
                for pod in model.pods.values().filter(|p| p.namespace == ns) {
                    let real = match &pod.workload {
                        Workload::Pod => ready
                            .iter()
                            .find(|p| p.metadata.name.as_deref() == Some(pod.name.as_str()))
                            .copied(),
                        Workload::Deployment { name, replica } => by_workload
                            .get(name)
                            .and_then(|v| v.get(*replica as usize))
                            .copied(),
                    };
                    match real.and_then(|p| Some((p.metadata.name.clone()?, pod_ip(p)?))) {
                        Some((name, ip)) => {
                            let c = render::exec_container(pod, &self.probes);
                            found.insert(pod.pod_ref(), (name, ip, c));
                        }
                        None => missing.push(describe_missing(&pods.items, pod)),
                    }
                }
            }
            if missing.is_empty() {
                self.realised = found;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ProviderError::Failed(format!(
                    "pods not Ready after {}s: {}",
                    self.cfg.ready_timeout.as_secs(),
                    missing.join("; ")
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Real IP of a model pod (for reports and tests).
    pub fn real_ip(&self, pod: &PodRef) -> Option<IpAddr> {
        self.realised.get(pod).map(|r| r.1)
    }

    pub async fn probe(&self, batch: &[ProbeRequest], timeout: Duration) -> Vec<Observation> {
        let mut out: Vec<Option<Observation>> = vec![None; batch.len()];
        let policies: &[CompiledPolicy] =
            self.prev.as_ref().map(|s| &s.policies[..]).unwrap_or(&[]);
        let model_ip = |r: &PodRef| {
            self.prev
                .as_ref()
                .and_then(|s| s.model.pod(r))
                .map(|p| p.ip)
        };
        // Decide what is not probed and group the rest by source pod.
        let mut groups: BTreeMap<PodRef, Vec<(usize, ScriptProbe)>> = BTreeMap::new();
        for (i, req) in batch.iter().enumerate() {
            let early = |result, detail: String| Observation {
                result,
                detail: Some(detail),
                elapsed_ms: 0,
                command: String::new(),
            };
            if let Some(gap) = self
                .cfg
                .gaps
                .iter()
                .find(|g| g.protocol == req.probe.protocol)
            {
                out[i] = Some(early(Connectivity::Unsupported, gap.reason.clone()));
                continue;
            }
            let (Some(src), Some(dst)) = (self.realised.get(&req.from), self.realised.get(&req.to))
            else {
                out[i] = Some(early(
                    Connectivity::Error,
                    format!("{} or {} is not realised", req.from, req.to),
                ));
                continue;
            };
            let sensitive = [(&req.from, src.1), (&req.to, dst.1)]
                .into_iter()
                .find(|(r, real)| {
                    model_ip(r).is_some_and(|m| probing::ipblock_sensitive(policies, m, *real))
                });
            if let Some((r, real)) = sensitive {
                out[i] = Some(early(
                    Connectivity::Unsupported,
                    format!(
                        "an ipBlock classifies {r}'s model address {} and its cluster address {real} differently; the oracle's answer does not apply",
                        model_ip(r).map(|m| m.to_string()).unwrap_or_default()
                    ),
                ));
                continue;
            }
            groups.entry(req.from.clone()).or_default().push((
                i,
                ScriptProbe {
                    index: 0,
                    host: dst.1.to_string(),
                    port: req.probe.port,
                    protocol: req.probe.protocol,
                },
            ));
        }
        let runs = groups.into_iter().map(|(from, items)| {
            let src = self.realised.get(&from).cloned();
            async move {
                let Some((name, _, container)) = src else {
                    return Vec::new();
                };
                let ns = self.map.namespace(&from.namespace);
                let probes: Vec<ScriptProbe> = items
                    .iter()
                    .enumerate()
                    .map(|(k, (_, p))| ScriptProbe {
                        index: k,
                        ..p.clone()
                    })
                    .collect();
                let started = Instant::now();
                let result = self
                    .exec_script(&ns, &name, &container, &probes, timeout)
                    .await;
                let elapsed_ms = started.elapsed().as_millis() as u64;
                items
                    .iter()
                    .zip(probes.iter())
                    .enumerate()
                    .map(|(k, ((i, _), p))| {
                        let at = probing::ExecTarget {
                            namespace: &ns,
                            pod: &name,
                            container: &container,
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
            .buffer_unordered(8)
            .collect()
            .await;
        for (i, obs) in done.into_iter().flatten() {
            out[i] = Some(obs);
        }
        batch
            .iter()
            .zip(out)
            .map(|(req, o)| {
                let mut o = o.unwrap_or(Observation {
                    result: Connectivity::Error,
                    detail: Some("not probed".into()),
                    elapsed_ms: 0,
                    command: String::new(),
                });
                if req.from == req.to && self.cfg.loopback == Loopback::Record && o.result.allowed().is_some() {
                    o.detail = Some(format!(
                        "loopback is recorded, not judged (CNIs differ, kubernetes#95879); observed {:?}",
                        o.result
                    ));
                    o.result = Connectivity::Unsupported;
                }
                o
            })
            .collect()
    }

    async fn exec_script(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        probes: &[ScriptProbe],
        timeout: Duration,
    ) -> Result<Vec<Option<probing::RawResult>>, String> {
        let script = probing::script(probes, timeout);
        let api: Api<K8sPod> = Api::namespaced(self.client.clone(), ns);
        let ap = AttachParams::default()
            .container(container)
            .stdin(false)
            .stdout(true)
            .stderr(false);
        let run = async {
            let mut proc = api
                .exec(pod, vec!["sh".to_string(), "-c".into(), script], &ap)
                .await
                .map_err(|e| format!("exec in {ns}/{pod}: {e}"))?;
            let mut stdout = String::new();
            if let Some(mut r) = proc.stdout() {
                r.read_to_string(&mut stdout)
                    .await
                    .map_err(|e| format!("reading exec output: {e}"))?;
            }
            let _ = proc.join().await;
            Ok::<_, String>(probing::parse_output(&stdout, probes.len()))
        };
        match tokio::time::timeout(probing::script_deadline(probes.len(), timeout), run).await {
            Ok(r) => r,
            Err(_) => Err(format!("exec in {ns}/{pod} did not finish in time")),
        }
    }

    /// Deletes the session's namespaces (only those it created, only with its run label).
    /// Idempotent: missing namespaces are fine.
    pub async fn teardown(&mut self) -> Result<(), ProviderError> {
        let api: Api<K8sNamespace> = Api::all(self.client.clone());
        let mut errors = Vec::new();
        for name in std::mem::take(&mut self.created_namespaces) {
            match api.get(&name).await {
                Err(e) if is_not_found(&e) => {
                    if let Some(o) = &self.cfg.ownership {
                        o.forget(&name);
                    }
                    continue;
                }
                Err(e) => {
                    errors.push(format!("{name}: {e}"));
                    continue;
                }
                Ok(ns) => {
                    let ours = ns
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(RUN_ID_LABEL))
                        .is_some_and(|v| v == self.map.run_label());
                    if !ours {
                        errors.push(format!("{name}: not labelled as this run's, left alone"));
                        continue;
                    }
                }
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {
                    if let Some(o) = &self.cfg.ownership {
                        o.forget(&name);
                    }
                }
                Err(e) if is_not_found(&e) => {
                    if let Some(o) = &self.cfg.ownership {
                        o.forget(&name);
                    }
                }
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        self.prev = None;
        self.realised.clear();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ProviderError::Failed(format!(
                "deleting namespaces: {}",
                errors.join("; ")
            )))
        }
    }
}

fn pod_ready(p: &K8sPod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn pod_ip(p: &K8sPod) -> Option<IpAddr> {
    p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// Why a model pod has no Ready real pod yet (waiting reasons make image pulls visible).
fn describe_missing(pods: &[K8sPod], pod: &crate::model::Pod) -> String {
    let real = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(pod.name.as_str()));
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

/// The kind and kubeconfig platforms share this session: only how the cluster came to be differs.
impl crate::provider::Session for ClusterSession {
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
}
