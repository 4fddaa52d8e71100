//! Equivalence classes of pods: pods that no NetworkPolicy can tell apart behave the same, so a
//! cluster's matrix is read per class (named by the owning workload) instead of per pod.
//!
//! Two pods are in one class when they share namespace, owner workload and declared ports, and
//! every selector and ipBlock of every policy set considered answers the same for both. That is
//! exactly what the oracle looks at — a pod's namespace (and its labels), its own labels through
//! selectors, its address through ipBlocks, and its named ports — so the oracle's answer for
//! `a → b` is the same for every member pair of two classes (proved by tests over random models).
//! The owner is part of the key only so that each class carries one workload's name; it never
//! makes a class unsound.
//!
//! Hook for cluster-wide policies: [`Grouping::compute`] takes [`Discriminator`]s; the
//! NetworkPolicy ones come from [`policy_discriminators`]. When the oracle evaluates
//! ClusterNetworkPolicies, their subject and peer selectors must be added the same way.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::model::{ContainerPort, Labels, Model, Pod, PodRef, Workload};
use crate::policy::oracle::peer_matches;
use crate::policy::{CompiledPolicy, Direction, Peer};

/// The workload a pod belongs to, as a person names it (`Deployment web`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Owner {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, `ReplicaSet`,
    /// `ReplicationController`, another controller's kind, or `Pod` for a bare pod.
    pub kind: String,
    pub name: String,
}

impl Owner {
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Owner {
            kind: kind.into(),
            name: name.into(),
        }
    }

    pub fn bare(pod: &Pod) -> Self {
        Owner::new("Pod", pod.name.clone())
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// Label keys the controllers put on the pods they create.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
const STATEFULSET_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";
const JOB_NAME: &[&str] = &["batch.kubernetes.io/job-name", "job-name"];

/// The owner of a pod when only the pod is known (a dump without its workloads, or a model):
/// the model's own workload when the loader synthesised the pod, otherwise what the controllers'
/// labels and naming conventions say (`web-5d9c7b8f4-x2x8q` with `pod-template-hash=5d9c7b8f4`
/// is Deployment `web`; `db-2` with `statefulset.kubernetes.io/pod-name=db-2` is StatefulSet `db`;
/// a Job named `<cronjob>-<minutes since epoch>` belongs to that CronJob). A pod matching none
/// is its own workload. [`crate::audit::snapshot`] uses the real owner references instead when
/// the cluster's objects are at hand.
pub fn owner_from_pod(pod: &Pod) -> Owner {
    if let Workload::Deployment { name, .. } = &pod.workload {
        return Owner::new("Deployment", name.clone());
    }
    let l = &pod.labels;
    if let Some(hash) = l.get(POD_TEMPLATE_HASH)
        && let Some(prefix) = strip_random_suffix(&pod.name)
            .and_then(|rs| rs.strip_suffix(hash.as_str()))
            .and_then(|p| p.strip_suffix('-'))
        && !prefix.is_empty()
    {
        return Owner::new("Deployment", prefix);
    }
    if l.get(STATEFULSET_POD_NAME) == Some(&pod.name)
        && let Some((prefix, ordinal)) = pod.name.rsplit_once('-')
        && !prefix.is_empty()
        && !ordinal.is_empty()
        && ordinal.bytes().all(|b| b.is_ascii_digit())
    {
        return Owner::new("StatefulSet", prefix);
    }
    if let Some(job) = JOB_NAME.iter().find_map(|k| l.get(*k)) {
        return owner_of_job(job);
    }
    if l.contains_key(CONTROLLER_REVISION_HASH)
        && l.contains_key(POD_TEMPLATE_GENERATION)
        && let Some(prefix) = strip_random_suffix(&pod.name)
    {
        return Owner::new("DaemonSet", prefix);
    }
    Owner::bare(pod)
}

/// A Job named `<name>-<8 or more digits>` is one run of CronJob `<name>` (the CronJob
/// controller appends the scheduled time in minutes); any other Job is its own workload.
pub fn owner_of_job(job: &str) -> Owner {
    match job.rsplit_once('-') {
        Some((prefix, stamp))
            if !prefix.is_empty()
                && stamp.len() >= 8
                && stamp.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Owner::new("CronJob", prefix)
        }
        _ => Owner::new("Job", job),
    }
}

/// `name-xxxxx` → `name` when the suffix looks like the 5 random characters controllers add.
fn strip_random_suffix(name: &str) -> Option<&str> {
    let (prefix, suffix) = name.rsplit_once('-')?;
    (suffix.len() == 5
        && suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !prefix.is_empty())
    .then_some(prefix)
}

/// A property of a pod some policy can observe. Pods answering every discriminator alike (and
/// sharing namespace and ports) are indistinguishable to the oracle.
pub type Discriminator<'a> = Box<dyn Fn(&Pod) -> bool + 'a>;

/// The discriminators of NetworkPolicies: each policy's podSelector (within its namespace) and
/// each peer of each rule (pod peers through namespace and pod selectors, ipBlocks through the
/// address).
pub fn policy_discriminators<'a>(
    model: &'a Model,
    policies: &'a [CompiledPolicy],
) -> Vec<Discriminator<'a>> {
    let mut out: Vec<Discriminator<'a>> = Vec::new();
    for pol in policies {
        out.push(Box::new(move |p: &Pod| {
            p.namespace == pol.key.namespace && pol.pod_selector.matches(&p.labels)
        }));
        for dir in [Direction::Ingress, Direction::Egress] {
            for rule in pol.rules(dir).unwrap_or(&[]) {
                for peer in rule.peers.iter().flatten() {
                    out.push(match peer {
                        Peer::IpBlock { cidr, except } => {
                            Box::new(move |p: &Pod| Peer::ip_matches(cidr, except, p.ip))
                        }
                        Peer::Pods { .. } => Box::new(move |p: &Pod| peer_matches(model, peer, p)),
                    });
                }
            }
        }
    }
    out
}

/// One equivalence class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Class {
    /// `namespace/workload`, with `#2`, `#3` … when one workload's pods fall into several classes
    /// (or two workloads of different kinds share a name).
    pub name: String,
    pub namespace: String,
    /// The part after `namespace/` (a [`PodRef`] name for class-level truth tables).
    pub short: String,
    pub owner: Owner,
    /// Members in `namespace/name` order.
    pub pods: Vec<PodRef>,
    /// Labels every member carries with the same value.
    pub labels: Labels,
    pub ports: Vec<ContainerPort>,
}

impl Class {
    /// The class as a truth-table key (`namespace/short`).
    pub fn key(&self) -> PodRef {
        PodRef::new(&self.namespace, &self.short)
    }

    /// The member that stands for the class (the first in name order).
    pub fn representative(&self) -> &PodRef {
        &self.pods[0]
    }
}

/// Every pod of a model in exactly one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    pub classes: Vec<Class>,
    index: BTreeMap<PodRef, usize>,
}

impl Grouping {
    /// Groups the pods of `model`. `discriminators` must cover every policy the caller will
    /// evaluate (for a what-if: the policies before *and* after); `owner` names each pod's
    /// workload.
    pub fn compute(
        model: &Model,
        discriminators: &[Discriminator<'_>],
        owner: &dyn Fn(&Pod) -> Owner,
    ) -> Grouping {
        type Key = (String, Owner, Vec<ContainerPort>, Vec<bool>);
        let mut buckets: BTreeMap<Key, Vec<&Pod>> = BTreeMap::new();
        for pod in model.pods.values() {
            let mut ports = pod.ports.clone();
            ports.sort();
            ports.dedup();
            let bits = discriminators.iter().map(|d| d(pod)).collect();
            buckets
                .entry((pod.namespace.clone(), owner(pod), ports, bits))
                .or_default()
                .push(pod);
        }
        // Name classes: by owner, numbered where a (namespace, owner name) has several classes.
        // Order: namespace, owner name, then the first member's name, so names are stable.
        let mut groups: Vec<(Key, Vec<&Pod>)> = buckets.into_iter().collect();
        groups.sort_by(|a, b| {
            (&a.0.0, &a.0.1.name, a.1[0].name.as_str()).cmp(&(&b.0.0, &b.0.1.name, &b.1[0].name))
        });
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut classes = Vec::with_capacity(groups.len());
        for ((namespace, owner, ports, _), pods) in groups {
            let n = seen
                .entry((namespace.clone(), owner.name.clone()))
                .and_modify(|n| *n += 1)
                .or_insert(1);
            let short = if *n == 1 {
                owner.name.clone()
            } else {
                format!("{}#{n}", owner.name)
            };
            let mut labels = pods[0].labels.clone();
            for p in &pods[1..] {
                labels.retain(|k, v| p.labels.get(k) == Some(v));
            }
            let refs: Vec<PodRef> = pods.iter().map(|p| p.pod_ref()).collect();
            classes.push(Class {
                name: format!("{namespace}/{short}"),
                namespace,
                short,
                owner,
                pods: refs,
                labels,
                ports,
            });
        }
        // Class order is key order, the axis order of class-level truth tables.
        classes.sort_by_key(|a| a.key());
        let mut index = BTreeMap::new();
        for (i, c) in classes.iter().enumerate() {
            for r in &c.pods {
                index.insert(r.clone(), i);
            }
        }
        Grouping { classes, index }
    }

    /// NetworkPolicy discriminators of every policy set, owners from [`owner_from_pod`] unless
    /// `owners` names the pod.
    pub fn for_policies(
        model: &Model,
        policy_sets: &[&[CompiledPolicy]],
        owners: &BTreeMap<PodRef, Owner>,
    ) -> Grouping {
        let discriminators: Vec<Discriminator<'_>> = policy_sets
            .iter()
            .flat_map(|set| policy_discriminators(model, set))
            .collect();
        Grouping::compute(model, &discriminators, &|p: &Pod| {
            owners
                .get(&p.pod_ref())
                .cloned()
                .unwrap_or_else(|| owner_from_pod(p))
        })
    }

    pub fn class_index(&self, pod: &PodRef) -> Option<usize> {
        self.index.get(pod).copied()
    }

    pub fn class_of(&self, pod: &PodRef) -> Option<&Class> {
        self.class_index(pod).map(|i| &self.classes[i])
    }

    /// The class by its name (`namespace/short`).
    pub fn by_name(&self, name: &str) -> Option<&Class> {
        self.classes.iter().find(|c| c.name == name)
    }

    /// A model with one pod per class — its representative, keyed by the class
    /// (`namespace/short`) — and the same namespaces. By soundness, the oracle on it answers
    /// every class pair as the full model answers every member pair, at a fraction of the cost.
    pub fn class_model(&self, model: &Model) -> Model {
        let mut out = Model {
            namespaces: model.namespaces.clone(),
            pods: BTreeMap::new(),
            services: Vec::new(),
        };
        for c in &self.classes {
            if let Some(rep) = model.pod(c.representative()) {
                let mut pod = rep.clone();
                pod.name = c.short.clone();
                out.pods.insert(c.key(), pod);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;
    use crate::scenario::load_str;

    fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            namespace: "shop".into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ip: "10.0.0.1".parse().expect("ip"),
            ports: vec![ContainerPort {
                name: None,
                port: 80,
                protocol: Protocol::Tcp,
            }],
            image: None,
            workload: Workload::Pod,
        }
    }

    #[test]
    fn owners_follow_the_controllers_conventions() {
        let d = pod("web-5d9c7b8f4-x2x8q", &[("pod-template-hash", "5d9c7b8f4")]);
        assert_eq!(owner_from_pod(&d), Owner::new("Deployment", "web"));
        let s = pod("db-12", &[(STATEFULSET_POD_NAME, "db-12")]);
        assert_eq!(owner_from_pod(&s), Owner::new("StatefulSet", "db"));
        let ds = pod(
            "node-agent-7kq2z",
            &[
                (CONTROLLER_REVISION_HASH, "6c7"),
                (POD_TEMPLATE_GENERATION, "3"),
            ],
        );
        assert_eq!(owner_from_pod(&ds), Owner::new("DaemonSet", "node-agent"));
        let cj = pod("report-29384756-abcde", &[("job-name", "report-29384756")]);
        assert_eq!(owner_from_pod(&cj), Owner::new("CronJob", "report"));
        let j = pod(
            "migrate-q8w7e",
            &[("batch.kubernetes.io/job-name", "migrate")],
        );
        assert_eq!(owner_from_pod(&j), Owner::new("Job", "migrate"));
        // A label that does not fit the name is not evidence.
        let odd = pod("web", &[("pod-template-hash", "5d9c7b8f4")]);
        assert_eq!(owner_from_pod(&odd), Owner::new("Pod", "web"));
        let sts_lookalike = pod("db-1", &[(STATEFULSET_POD_NAME, "other-1")]);
        assert_eq!(owner_from_pod(&sts_lookalike).kind, "Pod");
        let mut synth = pod("api-1", &[]);
        synth.workload = Workload::Deployment {
            name: "api".into(),
            replica: 1,
        };
        assert_eq!(owner_from_pod(&synth), Owner::new("Deployment", "api"));
    }

    const SHOP: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-7f9-aaaaa, namespace: shop, labels: {app: web, pod-template-hash: "7f9"}}
spec: {containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-7f9-bbbbb, namespace: shop, labels: {app: web, pod-template-hash: "7f9"}}
spec: {containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db, statefulset.kubernetes.io/pod-name: db-0}}
spec: {containers: [{name: c, image: pg, ports: [{containerPort: 5432}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: shop, labels: {app: db, statefulset.kubernetes.io/pod-name: db-1, role: primary}}
spec: {containers: [{name: c, image: pg, ports: [{containerPort: 5432}]}]}
"#;

    fn grouping(policies: &str) -> (crate::scenario::Step, Grouping) {
        let loaded = load_str(&format!("{SHOP}{policies}"), "shop.yaml").expect("loads");
        let step = loaded.scenarios[0].steps[0].clone();
        let g = Grouping::for_policies(&step.model, &[&step.policies], &BTreeMap::new());
        (step, g)
    }

    #[test]
    fn pods_no_policy_distinguishes_share_a_class_named_by_their_workload() {
        let (_, g) = grouping("");
        let names: Vec<&str> = g.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["shop/db", "shop/web"]);
        assert_eq!(g.classes[0].pods.len(), 2);
        assert_eq!(g.classes[0].owner, Owner::new("StatefulSet", "db"));
        // Common labels only: the per-pod name label and `role` differ.
        assert_eq!(
            g.classes[0].labels,
            Labels::from([("app".to_string(), "db".to_string())])
        );
    }

    #[test]
    fn a_selector_that_tells_members_apart_splits_the_class() {
        let (_, g) = grouping(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: primary-only, namespace: shop}\n\
             spec: {podSelector: {matchLabels: {role: primary}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]}\n",
        );
        let names: Vec<&str> = g.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["shop/db", "shop/db#2", "shop/web"]);
        assert_eq!(
            g.class_of(&PodRef::new("shop", "db-1"))
                .map(|c| c.name.as_str()),
            Some("shop/db#2")
        );
    }

    #[test]
    fn the_class_model_answers_like_the_full_model() {
        let (step, g) = grouping(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {name: db, namespace: shop}\n\
             spec: {podSelector: {matchLabels: {app: db}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]}\n",
        );
        let cm = g.class_model(&step.model);
        let full = step.oracle();
        let reduced = crate::policy::Oracle::new(&cm, &step.policies);
        for probe in step.model.declared_probes() {
            let ft = full.matrix(probe);
            let rt = reduced.matrix(probe);
            for (f, t, v) in ft.iter() {
                let (cf, ct) = (g.class_of(f).expect("class"), g.class_of(t).expect("class"));
                assert_eq!(rt.get(&cf.key(), &ct.key()), *v, "{f} -> {t} {probe}");
            }
        }
    }
}
