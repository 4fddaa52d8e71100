//! What was listed from a cluster, turned into the documents a dump of it holds.
//!
//! `audit` on a cluster and `expect` on a dump of that cluster must agree, so the live path has no
//! model-building of its own: the listed objects are written out as the documents `kubectl get
//! … -o json` would print (items of a `v1` `List`, one document each) and read by the one loader,
//! [`crate::scenario::load_str`]. [`Snapshot::dump_text`] is also what `audit --save-dump` writes,
//! so any later `expect` / `explain` / `what-if` on that file sees exactly what the audit saw.
//!
//! Only pods that NetworkPolicy governs become documents: host-network pods (their address is
//! the node's, and several share it), finished pods (their addresses are released and reused) and
//! pods without an address yet are listed as excluded, with the reason. Server-side bookkeeping
//! that only bloats the documents (`managedFields`, the last-applied annotation) is dropped.
//!
//! Workloads (ReplicaSets, Deployments, StatefulSets, DaemonSets, Jobs, CronJobs,
//! ReplicationControllers) are listed for their names only: the pods' owner references lead
//! through them to the workload a person knows (`Pod → ReplicaSet → Deployment`,
//! `Pod → Job → CronJob`). They are not written as documents: every running pod is in the
//! snapshot already, and a workload without running pods has nothing to reach or be reached.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;
use serde_json::Value;

use super::group::{Owner, owner_of_job};
use crate::model::PodRef;
use crate::scenario::{InputErrors, Loaded, left_out_reason, load_str};

/// The last-applied annotation `kubectl apply` leaves: a copy of the object, never needed here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Static pods' mirror objects carry this annotation; they cannot take ephemeral containers.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// A workload object's identity and its owners: enough to follow owner chains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadRecord {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    #[serde(skip)]
    pub owners: Vec<OwnerReference>,
}

impl WorkloadRecord {
    pub fn from_meta(kind: &str, meta: &ObjectMeta) -> Self {
        WorkloadRecord {
            kind: kind.to_string(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            owners: meta.owner_references.clone().unwrap_or_default(),
        }
    }
}

/// A pod left out of the model, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Excluded {
    pub pod: PodRef,
    pub reason: String,
}

/// Everything listed from one cluster.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub namespaces: Vec<K8sNamespace>,
    pub pods: Vec<K8sPod>,
    pub policies: Vec<NetworkPolicy>,
    pub workloads: Vec<WorkloadRecord>,
}

fn pod_ref(p: &K8sPod) -> PodRef {
    PodRef::new(
        p.metadata.namespace.as_deref().unwrap_or("default"),
        p.metadata.name.as_deref().unwrap_or(""),
    )
}

/// Why a pod is not part of the NetworkPolicy model, if it is not.
pub fn exclusion(p: &K8sPod) -> Option<String> {
    let status = p.status.as_ref();
    let host_network = p.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    if let Some(why) = left_out_reason(host_network, status.and_then(|s| s.phase.as_deref())) {
        return Some(why);
    }
    // A dump's pod without an address still gets one (the contract says so); a live pod
    // without one cannot be probed and is only about to exist, so the audit leaves it out.
    let has_ip = status.is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || s.pod_ips.as_ref().is_some_and(|v| !v.is_empty())
    });
    if !has_ip {
        return Some("no address yet (not scheduled or not started)".into());
    }
    None
}

/// The controller reference of an object (the one with `controller: true`, else the first).
fn controller_of(refs: &[OwnerReference]) -> Option<&OwnerReference> {
    refs.iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())
}

/// An object as a dump document: `apiVersion`/`kind` set, server bookkeeping dropped.
fn document<T: Serialize>(obj: &T) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            ann.remove(LAST_APPLIED);
            if ann.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    v
}

impl Snapshot {
    /// Pods left out of the model, sorted.
    pub fn excluded(&self) -> Vec<Excluded> {
        let mut v: Vec<Excluded> = self
            .pods
            .iter()
            .filter_map(|p| {
                exclusion(p).map(|reason| Excluded {
                    pod: pod_ref(p),
                    reason,
                })
            })
            .collect();
        v.sort();
        v
    }

    /// The pods that are part of the model.
    pub fn included_pods(&self) -> impl Iterator<Item = &K8sPod> {
        self.pods.iter().filter(|p| exclusion(p).is_none())
    }

    /// The documents of the dump, in a fixed order (namespaces, policies, pods; each sorted by
    /// namespace and name) so the same cluster state always gives the same bytes.
    pub fn documents(&self) -> Vec<Value> {
        let key = |m: &ObjectMeta| (m.namespace.clone(), m.name.clone());
        let mut namespaces: Vec<&K8sNamespace> = self.namespaces.iter().collect();
        namespaces.sort_by_key(|n| key(&n.metadata));
        let mut policies: Vec<&NetworkPolicy> = self.policies.iter().collect();
        policies.sort_by_key(|p| key(&p.metadata));
        let mut pods: Vec<&K8sPod> = self.included_pods().collect();
        pods.sort_by_key(|p| key(&p.metadata));
        namespaces
            .into_iter()
            .map(document)
            .chain(policies.into_iter().map(document))
            .chain(pods.into_iter().map(document))
            .collect()
    }

    /// The dump as text: one JSON document per object, separated by `---` lines (JSON is YAML,
    /// so every netpolc command reads it; it is how the loader reads a `List`'s items).
    pub fn dump_text(&self) -> String {
        let mut out = String::new();
        for d in self.documents() {
            out.push_str("---\n");
            out.push_str(&serde_json::to_string_pretty(&d).unwrap_or_default());
            out.push('\n');
        }
        out
    }

    /// The documents as one `v1` `List`, as `kubectl get … -o json` prints several kinds.
    pub fn to_list(&self) -> Value {
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": self.documents()})
    }

    /// Reads the snapshot with the loader, exactly as a dump file would be read; `source` names
    /// it in errors and reports (e.g. `cluster:my-context`).
    pub fn load(&self, source: &str) -> Result<Loaded, InputErrors> {
        load_str(&self.dump_text(), source)
    }

    /// The owning workload of every included pod that has an owner reference, found by following
    /// controller references through the listed workloads (at most a few hops; a cycle or an
    /// unlisted object stops the walk). Where a link is missing (e.g. ReplicaSets could not be
    /// listed) the controllers' naming conventions fill in, as [`super::group::owner_from_pod`].
    pub fn owners(&self) -> BTreeMap<PodRef, Owner> {
        let records: BTreeMap<(&str, &str, &str), &WorkloadRecord> = self
            .workloads
            .iter()
            .map(|w| ((w.namespace.as_str(), w.kind.as_str(), w.name.as_str()), w))
            .collect();
        let mut out = BTreeMap::new();
        for p in self.included_pods() {
            let r = pod_ref(p);
            let Some(mut cur) =
                controller_of(p.metadata.owner_references.as_deref().unwrap_or(&[]))
                    .map(|o| Owner::new(o.kind.clone(), o.name.clone()))
            else {
                continue;
            };
            if cur.kind == "Node" {
                // A static pod's mirror: the node owns it, the pod is its own workload.
                continue;
            }
            for _ in 0..4 {
                match records.get(&(r.namespace.as_str(), cur.kind.as_str(), cur.name.as_str())) {
                    Some(rec) => match controller_of(&rec.owners) {
                        Some(up) => cur = Owner::new(up.kind.clone(), up.name.clone()),
                        None => break,
                    },
                    None => {
                        cur = guess_parent(&cur, p);
                        break;
                    }
                }
            }
            out.insert(r, cur);
        }
        out
    }
}

/// The parent of an unlisted ReplicaSet or Job by the controllers' naming conventions.
fn guess_parent(cur: &Owner, p: &K8sPod) -> Owner {
    match cur.kind.as_str() {
        "ReplicaSet" => {
            let hash = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"));
            match hash.and_then(|h| cur.name.strip_suffix(h.as_str())) {
                Some(prefix) if prefix.len() > 1 && prefix.ends_with('-') => {
                    Owner::new("Deployment", &prefix[..prefix.len() - 1])
                }
                _ => cur.clone(),
            }
        }
        "Job" => owner_of_job(&cur.name),
        _ => cur.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> K8sPod {
        serde_json::from_value(v).expect("pod")
    }

    fn owned(name: &str, kind: &str, owner: &str, ip: Option<&str>) -> K8sPod {
        let mut v = serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": "x", "pod-template-hash": "5d9c7b8f4"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": "u", "controller": true}],
                         "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}]},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Running"}
        });
        if let Some(ip) = ip {
            v["status"]["podIP"] = serde_json::json!(ip);
        }
        pod(v)
    }

    #[test]
    fn host_network_finished_and_unaddressed_pods_are_excluded_with_a_reason() {
        let mut host = owned("agent-abcde", "DaemonSet", "agent", Some("10.0.0.9"));
        host.spec.as_mut().expect("spec").host_network = Some(true);
        let mut done = owned("job-abcde", "Job", "job", Some("10.1.0.7"));
        done.status.as_mut().expect("status").phase = Some("Succeeded".into());
        let pending = owned("web-5d9c7b8f4-zzzzz", "ReplicaSet", "web-5d9c7b8f4", None);
        let live = owned(
            "web-5d9c7b8f4-aaaaa",
            "ReplicaSet",
            "web-5d9c7b8f4",
            Some("10.1.0.8"),
        );
        let s = Snapshot {
            pods: vec![host, done, pending, live],
            ..Default::default()
        };
        let ex = s.excluded();
        let reasons: Vec<(&str, &str)> = ex
            .iter()
            .map(|e| {
                (
                    e.pod.name.as_str(),
                    e.reason.split(' ').next().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            [
                ("agent-abcde", "host"),
                ("job-abcde", "finished"),
                ("web-5d9c7b8f4-zzzzz", "no")
            ]
        );
        let docs = s.documents();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["kind"], "Pod");
        assert!(docs[0]["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn owner_chains_lead_to_the_workload_a_person_knows() {
        let s = Snapshot {
            pods: vec![
                owned(
                    "web-5d9c7b8f4-aaaaa",
                    "ReplicaSet",
                    "web-5d9c7b8f4",
                    Some("10.1.0.2"),
                ),
                owned(
                    "report-29000000-bbbbb",
                    "Job",
                    "report-29000000",
                    Some("10.1.0.3"),
                ),
                owned("db-0", "StatefulSet", "db", Some("10.1.0.4")),
                // Its ReplicaSet was not listed: the naming convention fills in.
                owned(
                    "api-5d9c7b8f4-ccccc",
                    "ReplicaSet",
                    "api-5d9c7b8f4",
                    Some("10.1.0.5"),
                ),
            ],
            workloads: vec![
                WorkloadRecord {
                    kind: "ReplicaSet".into(),
                    namespace: "shop".into(),
                    name: "web-5d9c7b8f4".into(),
                    owners: vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "Deployment".into(),
                        name: "web".into(),
                        uid: "d".into(),
                        controller: Some(true),
                        ..Default::default()
                    }],
                },
                WorkloadRecord {
                    kind: "Job".into(),
                    namespace: "shop".into(),
                    name: "report-29000000".into(),
                    owners: vec![OwnerReference {
                        api_version: "batch/v1".into(),
                        kind: "CronJob".into(),
                        name: "report".into(),
                        uid: "c".into(),
                        controller: Some(true),
                        ..Default::default()
                    }],
                },
                WorkloadRecord {
                    kind: "StatefulSet".into(),
                    namespace: "shop".into(),
                    name: "db".into(),
                    owners: vec![],
                },
            ],
            ..Default::default()
        };
        let o = s.owners();
        let get = |n: &str| o.get(&PodRef::new("shop", n)).cloned();
        assert_eq!(
            get("web-5d9c7b8f4-aaaaa"),
            Some(Owner::new("Deployment", "web"))
        );
        assert_eq!(
            get("report-29000000-bbbbb"),
            Some(Owner::new("CronJob", "report"))
        );
        assert_eq!(get("db-0"), Some(Owner::new("StatefulSet", "db")));
        assert_eq!(
            get("api-5d9c7b8f4-ccccc"),
            Some(Owner::new("Deployment", "api"))
        );
    }

    #[test]
    fn the_snapshot_loads_like_a_dump() {
        let ns: K8sNamespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "shop", "labels": {"kubernetes.io/metadata.name": "shop", "team": "a"}}
        }))
        .expect("ns");
        let s = Snapshot {
            namespaces: vec![ns],
            pods: vec![owned(
                "web-5d9c7b8f4-aaaaa",
                "ReplicaSet",
                "web-5d9c7b8f4",
                Some("10.1.0.2"),
            )],
            ..Default::default()
        };
        let loaded = s.load("cluster:test").expect("loads");
        let step = &loaded.scenarios[0].steps[0];
        let p = step
            .model
            .pod(&PodRef::new("shop", "web-5d9c7b8f4-aaaaa"))
            .expect("pod");
        assert_eq!(p.ip.to_string(), "10.1.0.2");
        assert_eq!(
            step.model
                .namespace("shop")
                .and_then(|n| n.labels.get("team"))
                .map(String::as_str),
            Some("a")
        );
        assert_eq!(s.to_list()["items"].as_array().map(Vec::len), Some(2));
    }
}
