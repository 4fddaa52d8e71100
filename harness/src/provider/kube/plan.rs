//! `--dry-run` plans: the same rendering and step diffing the live session uses, printed as YAML
//! documents instead of applied. Deterministic: no clocks, no cluster, IPs as placeholders.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::probing::{self, Loopback, ScriptProbe};
use super::render::{self, NameMap, StepActions, WorkloadObject};
use crate::cni::gaps::{self, Gap};
use crate::model::{PodRef, Probe, Workload};
use crate::provider::ProviderError;
use crate::scenario::{Scenario, address};
use crate::service::{self, ProbeMode};

/// What the scenario part of a plan needs.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub run_id: String,
    pub image: String,
    pub gaps: Vec<Gap>,
    pub loopback: Loopback,
    pub probe_timeout: Duration,
    /// What happens to cells of external peers (`model.externals`).
    pub external: String,
    /// Whether the provider starts external peers (then cells to them are probed).
    pub external_realised: bool,
    /// Cluster-wide policy kinds the cluster does not enforce, with the reason
    /// ([`super::SessionConfig::cluster_gaps`]): not applied, their cells not judged.
    pub cluster_gaps: std::collections::BTreeMap<crate::policy::ClusterKind, String>,
    /// What probes connect to (`--probe-mode`): Service modes add the Services, the endpoint
    /// waits and the probes through them.
    pub probe_modes: Vec<ProbeMode>,
}

/// Serialises one YAML document (with its `---` separator).
pub fn doc<T: Serialize>(v: &T) -> Result<String, ProviderError> {
    let body = serde_saphyr::to_string(v)
        .map_err(|e| ProviderError::Failed(format!("rendering the plan: {e}")))?;
    Ok(format!("---\n{body}"))
}

/// The placeholder for a pod's address, which only exists once the pod runs.
pub fn ip_placeholder(real: &PodRef) -> String {
    format!("{{ip={real}}}")
}

/// The placeholder for a model pod's real address (an external peer's is its container's).
fn placeholder_for(map: &NameMap, model: &crate::model::Model, r: &PodRef) -> String {
    if model.pod(r).is_some_and(|p| p.is_external()) {
        format!("{{ip=external peer {}}}", r.name)
    } else {
        ip_placeholder(&map.pod_ref(r))
    }
}

/// The placeholder for the ClusterIP the API server allocates to a Service.
pub fn cluster_ip_placeholder(real_namespace: &str, name: &str) -> String {
    format!("{{clusterIP={real_namespace}/{name}}}")
}

/// What a step changes in the slot's Services (real `namespace/name`s), as the session does it.
struct ServiceActions {
    apply: Vec<service::Service>,
    delete: Vec<String>,
    wait: Vec<String>,
}

fn service_actions(
    map: &NameMap,
    prev: Option<&crate::scenario::Step>,
    next: &crate::scenario::Step,
    served: &BTreeSet<Probe>,
    relabelled: bool,
) -> ServiceActions {
    let key = |s: &service::Service| format!("{}/{}", map.namespace(&s.namespace), s.name);
    let before: Vec<(String, k8s_openapi::api::core::v1::Service)> = prev
        .map(|p| render::services_of(&p.model, served))
        .unwrap_or_default()
        .iter()
        .map(|s| (key(s), render::service_object(map, s)))
        .collect();
    let after = render::services_of(&next.model, served);
    let mut a = ServiceActions {
        apply: Vec::new(),
        delete: Vec::new(),
        wait: Vec::new(),
    };
    for s in &after {
        let k = key(s);
        let obj = render::service_object(map, s);
        let changed = !before.iter().any(|(bk, bo)| *bk == k && *bo == obj);
        if changed {
            a.apply.push(s.clone());
        }
        if changed || (relabelled && matches!(s.backing, service::Backing::Selector(_))) {
            a.wait.push(k);
        }
    }
    a.delete = before
        .iter()
        .filter(|(k, _)| !after.iter().any(|s| key(s) == *k))
        .map(|(k, _)| k.clone())
        .collect();
    a
}

/// Appends every scenario's documents: per step, the actions, the objects and the probe scripts.
pub fn scenario_docs(
    out: &mut String,
    scenarios: &[Scenario],
    s: &PlanSettings,
) -> Result<(), ProviderError> {
    for (n, scenario) in scenarios.iter().enumerate() {
        render::check_scenario(scenario)?;
        let map = NameMap::new(&s.run_id, n);
        let probes = render::scenario_probes(scenario);
        let mut prev = None;
        let with_services = s.probe_modes.iter().any(|m| m.is_service());
        for step in &scenario.steps {
            let a = StepActions::between(&map, prev, step)?;
            let sa = with_services.then(|| {
                service_actions(
                    &map,
                    prev,
                    step,
                    &probes,
                    prev.is_none() || !a.label_pods.is_empty(),
                )
            });
            let ns_real = |ns: &String| map.namespace(ns);
            let header = json!({
                "apiVersion": "netpolc/v1",
                "kind": "StepPlan",
                "scenario": scenario.name,
                "source": scenario.source,
                "step": step.name,
                "namespaces": render::namespaces_of(&step.model).iter()
                    .map(|ns| (ns.clone(), Value::String(map.namespace(ns))))
                    .collect::<serde_json::Map<_, _>>(),
                "actions": {
                    "createNamespaces": a.create_namespaces.iter().map(ns_real).collect::<Vec<_>>(),
                    "createWorkloads": a.create_workloads,
                    "waitForReadyPods": a.create_workloads,
                    "labelNamespaces": a.label_namespaces.iter()
                        .map(|(ns, l)| json!({"namespace": map.namespace(ns), "labels": l}))
                        .collect::<Vec<_>>(),
                    "labelPods": a.label_pods.iter()
                        .map(|(p, l)| json!({"pod": map.pod_ref(p).to_string(), "labels": l}))
                        .collect::<Vec<_>>(),
                    "serverSideApplyPolicies": a.apply_policies.iter()
                        .map(|k| format!("{}/{}", map.namespace(&k.namespace), k.name))
                        .collect::<Vec<_>>(),
                    "deletePolicies": a.delete_policies.iter()
                        .map(|k| format!("{}/{}", map.namespace(&k.namespace), k.name))
                        .collect::<Vec<_>>(),
                    "serverSideApplyClusterPolicies": a.apply_cluster.iter()
                        .filter(|k| !s.cluster_gaps.contains_key(&k.kind))
                        .map(|k| format!("{}/{}", k.kind, map.cluster_policy_name(k)))
                        .collect::<Vec<_>>(),
                    "deleteClusterPolicies": a.delete_cluster.iter()
                        .filter(|k| !s.cluster_gaps.contains_key(&k.kind))
                        .map(|k| format!("{}/{}", k.kind, map.cluster_policy_name(k)))
                        .collect::<Vec<_>>(),
                    "clusterPoliciesNotApplied": a.apply_cluster.iter()
                        .filter_map(|k| s.cluster_gaps.get(&k.kind).map(|why| json!({"policy": k.to_string(), "reason": why})))
                        .collect::<Vec<_>>(),
                },
                "probes": probe_plan(&map, step, &probes, s),
            });
            let mut header = header;
            if let (Some(sa), Some(actions)) = (&sa, header.get_mut("actions")) {
                actions["serverSideApplyServices"] = json!(
                    sa.apply
                        .iter()
                        .map(|x| format!("{}/{}", map.namespace(&x.namespace), x.name))
                        .collect::<Vec<_>>()
                );
                actions["deleteServices"] = json!(sa.delete);
                actions["waitForEndpoints"] = json!(sa.wait);
            }
            out.push_str(&doc(&header)?);
            for ns in &a.create_namespaces {
                out.push_str(&doc(&render::namespace_object(&map, &step.model, ns))?);
            }
            if a.create_workloads {
                for w in render::workload_objects(&map, &step.model, &probes, &s.image, true) {
                    match w {
                        WorkloadObject::Pod(p) => out.push_str(&doc(&p)?),
                        WorkloadObject::Deployment(d) => out.push_str(&doc(&d)?),
                    }
                }
            }
            for svc in sa.iter().flat_map(|sa| &sa.apply) {
                out.push_str(&doc(&render::service_object(&map, svc))?);
            }
            for key in &a.apply_policies {
                let Some(p) = step.policies.iter().find(|p| &p.key == key) else {
                    continue;
                };
                match step.templates.get(key) {
                    // CIDRs relative to pods: shown with the placeholder of the real address.
                    Some(t) => {
                        let shown =
                            address::placeholders(t, |r| placeholder_for(&map, &step.model, r));
                        let source = serde_json::from_value(shown).map_err(|e| {
                            ProviderError::Failed(format!("rendering policy {key}: {e}"))
                        })?;
                        let mut p = p.clone();
                        p.source = source;
                        out.push_str(&doc(&render::policy_object(&map, &p))?);
                    }
                    None => out.push_str(&doc(&render::policy_object(&map, p))?),
                }
            }
            for key in a
                .apply_cluster
                .iter()
                .filter(|k| !s.cluster_gaps.contains_key(&k.kind))
            {
                if let Some(p) = step.cluster_policies.iter().find(|p| &p.key == key) {
                    out.push_str(&doc(&render::cluster_policy_object(&map, p))?);
                }
            }
            prev = Some(step);
        }
    }
    Ok(())
}

/// One exec per source pod and probe mode: the script it runs, plus the cells decided without
/// probing. Through a Service, the script dials the ClusterIP the API server allocates (shown as
/// a placeholder) or the Service's DNS name in the real namespace, on the Service port the cell
/// maps to ([`service::target_for`], as the engine plans it).
fn probe_plan(
    map: &NameMap,
    step: &crate::scenario::Step,
    served: &BTreeSet<Probe>,
    s: &PlanSettings,
) -> Value {
    let pods = step.model.pod_refs();
    let probes = &step.probes;
    let oracle = step.oracle();
    let modes: &[ProbeMode] = if s.probe_modes.is_empty() {
        &[ProbeMode::PodIp]
    } else {
        &s.probe_modes
    };
    let services = service::probe_services(&step.model, &step.model.services, probes);
    let mut execs = Vec::new();
    let mut not_judged = Vec::new();
    for &via in modes {
        for from in &pods {
            let mut items = Vec::new();
            for to in &pods {
                for p in probes {
                    let cell = if via == ProbeMode::PodIp {
                        format!("{from} -> {to} {p}")
                    } else {
                        format!("{from} -> {to} {p} via {via}")
                    };
                    // Computed on the model's addresses; the run decides again on the real ones.
                    if let Some(g) = gaps::covering(&s.gaps, &oracle, from, to, *p) {
                        not_judged.push(json!({"cell": cell, "unsupported": g.cell_detail()}));
                        continue;
                    }
                    let addressing = if via.is_service() {
                        crate::policy::Addressing::ServiceIp
                    } else {
                        crate::policy::Addressing::PodIp
                    };
                    if let Some(why) = oracle
                        .cluster_kinds_applying(from, to, addressing)
                        .iter()
                        .find_map(|k| s.cluster_gaps.get(k))
                    {
                        not_judged.push(json!({"cell": cell, "unsupported": why}));
                        continue;
                    }
                    let external = |r: &PodRef| step.model.pod(r).is_some_and(|p| p.is_external());
                    // Cells to a started peer are probed like any other; the rest are not run.
                    if external(from)
                        || (external(to) && (!s.external_realised || via.is_service()))
                    {
                        not_judged.push(json!({"cell": cell, "external": s.external.clone()}));
                        continue;
                    }
                    let (host, port) = if via.is_service() {
                        let Some(t) = service::target_for(&step.model, &services, to, *p) else {
                            not_judged.push(json!({"cell": cell, "unsupported": format!(
                                "no Service selects exactly {to} with a port targeting {p}"
                            )}));
                            continue;
                        };
                        let ns = map.namespace(&t.namespace);
                        let host = match via {
                            ProbeMode::ServiceName => format!("{}.{ns}.svc.cluster.local", t.name),
                            _ => cluster_ip_placeholder(&ns, &t.name),
                        };
                        (host, t.port)
                    } else {
                        (placeholder_for(map, &step.model, to), p.port)
                    };
                    if from == to && s.loopback == Loopback::Record {
                        let what = if via.is_service() {
                            "hairpin through its own Service (kubernetes#95879)"
                        } else {
                            "loopback (kubernetes#95879)"
                        };
                        not_judged.push(json!({"cell": cell, "recordedNotJudged": what}));
                    }
                    items.push(ScriptProbe {
                        index: items.len(),
                        host,
                        port,
                        protocol: p.protocol,
                    });
                }
            }
            if items.is_empty() {
                continue;
            }
            let Some(pod) = step.model.pod(from) else {
                continue;
            };
            let real_pod = match &pod.workload {
                Workload::Pod => from.name.clone(),
                Workload::Deployment { name, replica } => {
                    format!("{{replica {replica} of deployment {name}, in name order}}")
                }
                Workload::External => continue,
            };
            execs.push(json!({
                "from": from.to_string(),
                "via": via.as_str(),
                "exec": {
                    "namespace": map.namespace(&from.namespace),
                    "pod": real_pod,
                    "container": render::exec_container(pod, served),
                    "command": ["sh", "-c"],
                },
                "script": probing::script(&items, s.probe_timeout),
            }));
        }
    }
    json!({
        "timeout": probing::go_duration(s.probe_timeout),
        "execs": execs,
        "notJudged": not_judged,
    })
}
