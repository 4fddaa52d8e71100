//! Leases a cluster itself holds, for runs on an existing cluster (`--provider kubeconfig`), which
//! may be started on one machine and cleaned up from another.
//!
//! Every namespace a run creates carries, besides the exact `netpolc.io/run-id` label, three
//! annotations: who holds it ([`HOLDER_ANNOTATION`]: host, boot id, pid namespace, pid, process
//! start time), when the lease was last renewed ([`RENEWED_ANNOTATION`], RFC 3339) and for how
//! long a renewal counts ([`SECONDS_ANNOTATION`]). The live run renews every
//! [`RENEW_EVERY`]; a namespace whose lease was not renewed for [`LEASE_SECONDS`] belongs to a
//! dead run. On the machine and boot that holds it the holder's process is checked directly, so
//! there a killed run is dead at once. Renewal times are compared with the cleaning machine's
//! clock: machines that clean each other's runs must keep their clocks within a few seconds.
//!
//! Namespaces without these annotations (made by an older netpolc, or by hand) are never removed
//! by a plain cleanup, only by `netpolc cleanup --run-id ID` naming their exact run id.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Namespace as K8sNamespace;

use super::{Holder, Processes, parse_rfc3339, rfc3339};
use crate::cni::catalogue::RUN_ID_LABEL;
use crate::provider::cleanup::Target;

pub const HOLDER_ANNOTATION: &str = "netpolc.io/lease-holder";
pub const RENEWED_ANNOTATION: &str = "netpolc.io/lease-renewed";
pub const SECONDS_ANNOTATION: &str = "netpolc.io/lease-seconds";

/// How long a renewal counts: four missed renewals, generous for a slow API server.
pub const LEASE_SECONDS: u64 = 60;
/// How often a live run renews its namespaces' leases.
pub const RENEW_EVERY: Duration = Duration::from_secs(15);

/// The annotations a namespace gets when the run creates it, and on every renewal.
pub fn annotations(holder: &Holder, now: SystemTime) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            HOLDER_ANNOTATION.to_string(),
            serde_json::to_string(holder).unwrap_or_default(),
        ),
        (RENEWED_ANNOTATION.to_string(), rfc3339(now)),
        (SECONDS_ANNOTATION.to_string(), LEASE_SECONDS.to_string()),
    ])
}

/// What a run owns on a cluster: its lease holder and the namespaces it created (recorded
/// before each is created, so the run removes exactly what it made, and renews exactly those).
#[derive(Debug)]
pub struct Ownership {
    holder: Holder,
    created: std::sync::Mutex<BTreeSet<String>>,
}

impl Ownership {
    pub fn new(holder: Holder) -> Self {
        Ownership {
            holder,
            created: std::sync::Mutex::new(BTreeSet::new()),
        }
    }

    /// This process, or `Err` when `/proc` cannot say who we are.
    pub fn current() -> Result<Self, String> {
        Holder::current().map(Ownership::new)
    }

    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// The lease annotations for a namespace created or renewed now.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        annotations(&self.holder, SystemTime::now())
    }

    fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.created.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, namespace: &str) {
        self.set().insert(namespace.to_string());
    }

    pub fn forget(&self, namespace: &str) {
        self.set().remove(namespace);
    }

    pub fn recorded(&self) -> Vec<String> {
        self.set().iter().cloned().collect()
    }
}

/// What cleanup looks at in a namespace (recorded API objects become these in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceFacts {
    pub name: String,
    /// The exact value of `netpolc.io/run-id`.
    pub run: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// Already being deleted (`deletionTimestamp` set).
    pub terminating: bool,
}

impl NamespaceFacts {
    pub fn from_k8s(ns: &K8sNamespace) -> Self {
        NamespaceFacts {
            name: ns.metadata.name.clone().unwrap_or_default(),
            run: ns
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(RUN_ID_LABEL))
                .cloned(),
            annotations: ns.metadata.annotations.clone().unwrap_or_default(),
            terminating: ns.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// One namespace's lease, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceLease {
    /// No lease annotations: not attributable to a run of this netpolc.
    Unleased,
    /// Annotations present but unreadable: treated like no lease.
    Malformed(String),
    Live(String),
    Dead(String),
}

/// Judges one namespace's lease at `now`. On the holder's own machine the process decides (gone
/// means dead even if renewed a second ago; running means live even if renewals failed);
/// elsewhere the renewal time does.
pub fn judge_namespace(
    ns: &NamespaceFacts,
    now: SystemTime,
    procs: &impl Processes,
) -> NamespaceLease {
    let (Some(holder), Some(renewed)) = (
        ns.annotations.get(HOLDER_ANNOTATION),
        ns.annotations.get(RENEWED_ANNOTATION),
    ) else {
        return NamespaceLease::Unleased;
    };
    let Ok(holder) = serde_json::from_str::<Holder>(holder) else {
        return NamespaceLease::Malformed(format!("unreadable {HOLDER_ANNOTATION}"));
    };
    let Some(renewed_at) = parse_rfc3339(renewed) else {
        return NamespaceLease::Malformed(format!("unreadable {RENEWED_ANNOTATION}: {renewed:?}"));
    };
    let seconds = ns
        .annotations
        .get(SECONDS_ANNOTATION)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(LEASE_SECONDS);
    if procs.same_machine(&holder) {
        return if procs.running(&holder) {
            NamespaceLease::Live(format!("live: {} is running", holder.describe()))
        } else {
            NamespaceLease::Dead(format!("its process is gone ({})", holder.describe()))
        };
    }
    // A renewal "in the future" (clock skew) counts as just renewed.
    let age = now.duration_since(renewed_at).unwrap_or_default().as_secs();
    if age <= seconds {
        NamespaceLease::Live(format!(
            "live: lease renewed {age}s ago by {} (expires after {seconds}s without renewal)",
            holder.describe()
        ))
    } else {
        NamespaceLease::Dead(format!(
            "lease not renewed for {age}s (holder {})",
            holder.describe()
        ))
    }
}

/// Something cleanup leaves, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    pub run: String,
    pub names: Vec<String>,
    pub why: String,
}

/// What to do on a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterPlan {
    /// (namespace, run id) to delete.
    pub delete: Vec<(String, String)>,
    pub left: Vec<Left>,
    /// Namespaces of runs being cleaned that are already terminating.
    pub terminating: Vec<String>,
}

/// Decides which harness namespaces to delete. A plain cleanup ([`Target::DeadRuns`]) deletes
/// the leased namespaces of runs none of whose namespaces has a live lease; `--run-id`
/// ([`Target::Run`]) deletes every namespace labelled with exactly that id unless one of them has
/// a live lease. Namespaces without a run label are never considered.
pub fn plan_cleanup(
    namespaces: &[NamespaceFacts],
    target: &Target,
    now: SystemTime,
    procs: &impl Processes,
) -> ClusterPlan {
    let mut by_run: BTreeMap<&str, Vec<&NamespaceFacts>> = BTreeMap::new();
    for ns in namespaces {
        if let Some(run) = ns.run.as_deref()
            && target.includes(run)
        {
            by_run.entry(run).or_default().push(ns);
        }
    }
    let mut plan = ClusterPlan::default();
    for (run, nss) in by_run {
        let judged: Vec<(&NamespaceFacts, NamespaceLease)> = nss
            .iter()
            .map(|ns| (*ns, judge_namespace(ns, now, procs)))
            .collect();
        let names = |pred: &dyn Fn(&NamespaceLease) -> bool| -> Vec<String> {
            judged
                .iter()
                .filter(|(_, l)| pred(l))
                .map(|(n, _)| n.name.clone())
                .collect()
        };
        if let Some((_, NamespaceLease::Live(why))) = judged
            .iter()
            .find(|(_, l)| matches!(l, NamespaceLease::Live(_)))
        {
            plan.left.push(Left {
                run: run.into(),
                names: names(&|_| true),
                why: why.clone(),
            });
            continue;
        }
        let explicit = matches!(target, Target::Run(_));
        let mut unattributable = BTreeSet::new();
        for (ns, lease) in &judged {
            let attributable = explicit || matches!(lease, NamespaceLease::Dead(_));
            if !attributable {
                unattributable.insert(ns.name.clone());
            } else if ns.terminating {
                plan.terminating.push(ns.name.clone());
            } else {
                plan.delete.push((ns.name.clone(), run.into()));
            }
        }
        if !unattributable.is_empty() {
            plan.left.push(Left {
                run: run.into(),
                names: unattributable.into_iter().collect(),
                why: format!(
                    "no lease annotation (made by an older netpolc or by hand): only \
                     `netpolc cleanup --run-id {run}` removes them"
                ),
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    struct Here;
    impl Processes for Here {
        fn same_machine(&self, h: &Holder) -> bool {
            h.boot == "here"
        }
        fn running(&self, h: &Holder) -> bool {
            h.boot == "here" && h.pid == 7 && h.start == 70
        }
    }

    fn holder(boot: &str, pid: u32, start: u64) -> Holder {
        Holder {
            host: format!("host-{boot}"),
            boot: boot.into(),
            pidns: "pid:[1]".into(),
            pid,
            start,
        }
    }

    /// A namespace as `kubectl get ns -o json` shows it, parsed like the live code parses it.
    fn recorded(
        name: &str,
        run: Option<&str>,
        lease: Option<(&Holder, u64)>,
        terminating: bool,
    ) -> NamespaceFacts {
        let mut labels = serde_json::Map::new();
        labels.insert("kubernetes.io/metadata.name".into(), name.into());
        if let Some(r) = run {
            labels.insert(RUN_ID_LABEL.into(), r.into());
        }
        let annotations: serde_json::Map<String, serde_json::Value> = lease
            .map(|(h, t)| {
                annotations(h, at(t))
                    .into_iter()
                    .map(|(k, v)| (k, v.into()))
                    .collect()
            })
            .unwrap_or_default();
        let mut meta =
            serde_json::json!({"name": name, "labels": labels, "annotations": annotations});
        if terminating {
            meta["deletionTimestamp"] = "2027-01-15T08:00:00Z".into();
        }
        let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta,
            "status": {"phase": if terminating {"Terminating"} else {"Active"}}});
        let ns: K8sNamespace = serde_json::from_value(obj).expect("a Namespace");
        NamespaceFacts::from_k8s(&ns)
    }

    #[test]
    fn renewal_time_decides_for_holders_elsewhere() {
        let far = holder("far", 1, 1);
        let ns = recorded("netpolc-a--0-x", Some("a"), Some((&far, T0)), false);
        let fresh = judge_namespace(&ns, at(T0 + LEASE_SECONDS), &Here);
        assert!(
            matches!(fresh, NamespaceLease::Live(ref w) if w.contains("60s ago")),
            "{fresh:?}"
        );
        let stale = judge_namespace(&ns, at(T0 + LEASE_SECONDS + 1), &Here);
        assert!(
            matches!(stale, NamespaceLease::Dead(ref w) if w.contains("61s")),
            "{stale:?}"
        );
        // A renewal stamped ahead of our clock is fresh, not negative.
        assert!(matches!(
            judge_namespace(&ns, at(T0 - 30), &Here),
            NamespaceLease::Live(_)
        ));
    }

    #[test]
    fn the_process_decides_on_its_own_machine() {
        let running = holder("here", 7, 70);
        let gone = holder("here", 7, 69); // pid 7 reused by another process
        let ns = recorded("n", Some("a"), Some((&gone, T0)), false);
        assert!(matches!(
            judge_namespace(&ns, at(T0), &Here),
            NamespaceLease::Dead(_)
        ));
        let ns = recorded("n", Some("a"), Some((&running, T0)), false);
        assert!(matches!(
            judge_namespace(&ns, at(T0 + 3600), &Here),
            NamespaceLease::Live(_)
        ));
    }

    #[test]
    fn missing_or_broken_annotations_are_not_a_lease() {
        let ns = recorded("n", Some("a"), None, false);
        assert_eq!(
            judge_namespace(&ns, at(T0), &Here),
            NamespaceLease::Unleased
        );
        let mut broken = recorded("n", Some("a"), Some((&holder("far", 1, 1), T0)), false);
        broken
            .annotations
            .insert(RENEWED_ANNOTATION.into(), "soon".into());
        assert!(matches!(
            judge_namespace(&broken, at(T0), &Here),
            NamespaceLease::Malformed(_)
        ));
        broken
            .annotations
            .insert(HOLDER_ANNOTATION.into(), "{".into());
        assert!(matches!(
            judge_namespace(&broken, at(T0), &Here),
            NamespaceLease::Malformed(_)
        ));
    }

    /// A cluster with: a dead run `a` (one namespace already terminating), a live run `a-0`
    /// whose names start like `a`'s, a run `old` from an older netpolc (no annotations), a
    /// namespace without any run label, and a run `mixed` with one leased, one unleased namespace.
    fn cluster() -> Vec<NamespaceFacts> {
        let far = holder("far", 1, 1);
        let now = T0 + 600;
        vec![
            recorded("netpolc-a--0-x", Some("a"), Some((&far, T0)), false),
            recorded("netpolc-a--0-y", Some("a"), Some((&far, T0)), true),
            recorded(
                "netpolc-a-0--0-x",
                Some("a-0"),
                Some((&far, now - 5)),
                false,
            ),
            recorded("netpolc-old-0-x", Some("old"), None, false),
            recorded("kube-system", None, None, false),
            recorded("netpolc-mixed--0-x", Some("mixed"), Some((&far, T0)), false),
            recorded("netpolc-mixed--0-y", Some("mixed"), None, false),
        ]
    }

    #[test]
    fn plain_cleanup_removes_only_dead_leased_runs() {
        let plan = plan_cleanup(&cluster(), &Target::DeadRuns, at(T0 + 600), &Here);
        assert_eq!(
            plan.delete,
            vec![
                ("netpolc-a--0-x".to_string(), "a".to_string()),
                ("netpolc-mixed--0-x".to_string(), "mixed".to_string()),
            ]
        );
        assert_eq!(plan.terminating, vec!["netpolc-a--0-y".to_string()]);
        let left: Vec<(&str, Vec<&str>)> = plan
            .left
            .iter()
            .map(|l| (l.run.as_str(), l.names.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            left,
            vec![
                ("a-0", vec!["netpolc-a-0--0-x"]),
                ("mixed", vec!["netpolc-mixed--0-y"]),
                ("old", vec!["netpolc-old-0-x"]),
            ]
        );
        assert!(plan.left[0].why.starts_with("live"), "{:?}", plan.left[0]);
        assert!(
            plan.left[2].why.contains("--run-id old"),
            "{:?}",
            plan.left[2]
        );
    }

    #[test]
    fn an_exact_run_id_targets_that_run_only() {
        let plan = plan_cleanup(&cluster(), &Target::Run("a".into()), at(T0 + 600), &Here);
        assert_eq!(
            plan.delete,
            vec![("netpolc-a--0-x".to_string(), "a".to_string())]
        );
        assert!(plan.left.is_empty(), "{:?}", plan.left);
        // An older run's namespaces go only when named exactly.
        let plan = plan_cleanup(&cluster(), &Target::Run("old".into()), at(T0 + 600), &Here);
        assert_eq!(
            plan.delete,
            vec![("netpolc-old-0-x".to_string(), "old".to_string())]
        );
        // A live run is never touched, even when named.
        let plan = plan_cleanup(&cluster(), &Target::Run("a-0".into()), at(T0 + 600), &Here);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.left.len(), 1);
        // A run id that is a prefix of nothing on the cluster matches nothing.
        let plan = plan_cleanup(&cluster(), &Target::Run("mix".into()), at(T0 + 600), &Here);
        assert_eq!(plan, ClusterPlan::default());
    }

    /// What the live session writes on a namespace reads back, on this machine, as a live lease
    /// of this process, and as a dead one as soon as the holder is another (gone) process.
    #[test]
    fn a_runs_own_annotations_read_as_its_live_lease() {
        let own = Ownership::current().expect("this process");
        own.record("n1");
        own.record("n2");
        own.forget("n1");
        assert_eq!(own.recorded(), vec!["n2".to_string()]);
        let here = crate::provider::lease::ThisMachine::new();
        let ns = NamespaceFacts {
            name: "n2".into(),
            run: Some("r".into()),
            annotations: own.annotations(),
            terminating: false,
        };
        let l = judge_namespace(&ns, SystemTime::now(), &here);
        assert!(matches!(l, NamespaceLease::Live(_)), "{l:?}");
        let mut gone = own.holder().clone();
        gone.start += 1;
        let ns = NamespaceFacts {
            annotations: annotations(&gone, SystemTime::now()),
            ..ns
        };
        let l = judge_namespace(&ns, SystemTime::now(), &here);
        assert!(matches!(l, NamespaceLease::Dead(_)), "{l:?}");
    }
}
