//! The audit's grouping is sound: pods in one class are indistinguishable to the oracle, so the
//! class-level matrix, expanded to pods, is the oracle's pod matrix — on every step of every
//! shipped scenario and on random models and policies. And what-if's flipped cells are exactly the
//! symmetric difference of the two oracle matrices, on shipped scenarios with random changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netpol_conformance::audit::analysis::Analysis;
use netpol_conformance::audit::group::Grouping;
use netpol_conformance::audit::whatif;
use netpol_conformance::model::{
    ContainerPort, Labels, Model, Namespace, Pod, PodRef, Probe, Protocol, Workload,
};
use netpol_conformance::policy::{CompiledPolicy, Oracle, PolicyRef};
use netpol_conformance::scenario::{Step, load_paths};
use proptest::prelude::*;
use rstest::rstest;
use serde_json::{Value, json};

/// Every pod is in exactly one class, and the expanded class matrix equals the oracle's.
fn assert_sound(model: &Model, policies: &[CompiledPolicy], probes: &[Probe], what: &str) {
    let a = Analysis::new(model, policies, &BTreeMap::new(), probes);
    let members: usize = a.grouping.classes.iter().map(|c| c.pods.len()).sum();
    assert_eq!(
        members,
        model.pods.len(),
        "{what}: classes partition the pods"
    );
    let distinct: BTreeSet<&PodRef> = a.grouping.classes.iter().flat_map(|c| &c.pods).collect();
    assert_eq!(
        distinct.len(),
        model.pods.len(),
        "{what}: no pod in two classes"
    );
    let oracle = Oracle::new(model, policies);
    for (pi, probe) in a.probes.iter().enumerate() {
        let full = oracle.matrix(*probe);
        let expanded = a.pod_table(pi);
        for (f, t, v) in full.iter() {
            assert_eq!(
                expanded.try_get(f, t),
                Some(v),
                "{what}: {f} -> {t} on {probe}: class {:?} -> {:?}",
                a.grouping.class_of(f).map(|c| &c.name),
                a.grouping.class_of(t).map(|c| &c.name)
            );
        }
    }
}

fn load_steps(path: &PathBuf) -> Vec<Step> {
    let loaded = load_paths(std::slice::from_ref(path)).unwrap_or_else(|e| panic!("{e}"));
    loaded.scenarios.into_iter().flat_map(|s| s.steps).collect()
}

#[rstest]
fn grouping_is_sound_on_shipped_scenarios(
    #[base_dir = "../scenarios"]
    #[files("**/*.yaml")]
    path: PathBuf,
) {
    for step in load_steps(&path) {
        assert_sound(
            &step.model,
            &step.policies,
            &step.probes,
            &format!("{} step {}", path.display(), step.name),
        );
    }
}

/// A small deterministic generator (xorshift), so the random changes of a scenario are the same
/// on every run and a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// A random policy built from what the model has: a namespace, labels of its pods, ports they
/// declare, namespace labels.
fn random_policy(rng: &mut Rng, model: &Model, n: usize) -> CompiledPolicy {
    // External peers live in no namespace a policy could be written in.
    let pods: Vec<&Pod> = model.pods.values().filter(|p| !p.is_external()).collect();
    let nss: Vec<&Namespace> = model.namespaces.values().collect();
    let target = rng.pick(&pods);
    let selector = |rng: &mut Rng, p: &Pod| -> Value {
        match (rng.below(3), p.labels.iter().next()) {
            (0, _) | (_, None) => json!({}),
            (1, Some((k, v))) => json!({"matchLabels": {k: v}}),
            (_, Some((k, _))) => json!({"matchExpressions": [{"key": k, "operator": "Exists"}]}),
        }
    };
    let peer = |rng: &mut Rng| -> Value {
        let p = *rng.pick(&pods);
        let ns = *rng.pick(&nss);
        match rng.below(4) {
            0 => json!({"podSelector": selector(rng, p)}),
            1 => {
                json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}}})
            }
            2 => json!({"namespaceSelector": {}, "podSelector": selector(rng, p)}),
            _ => {
                json!({"ipBlock": {"cidr": format!("{}/24", p.ip), "except": [format!("{}/32", p.ip)]}})
            }
        }
    };
    let ports = |rng: &mut Rng| -> Option<Value> {
        let p = *rng.pick(&pods);
        let cp = p.ports.first()?;
        Some(match (rng.below(3), &cp.name) {
            (0, Some(name)) => json!([{"port": name, "protocol": cp.protocol}]),
            (1, _) => json!([{"port": cp.port, "protocol": cp.protocol}]),
            _ => return None,
        })
    };
    let rule = |rng: &mut Rng, key: &str| -> Value {
        let mut r = serde_json::Map::new();
        if rng.below(4) != 0 {
            let peers: Vec<Value> = (0..1 + rng.below(2)).map(|_| peer(rng)).collect();
            r.insert(key.into(), Value::Array(peers));
        }
        if let Some(p) = ports(rng) {
            r.insert("ports".into(), p);
        }
        Value::Object(r)
    };
    let mut spec = serde_json::Map::new();
    spec.insert("podSelector".into(), selector(rng, target));
    let types = match rng.below(3) {
        0 => vec!["Ingress"],
        1 => vec!["Egress"],
        _ => vec!["Ingress", "Egress"],
    };
    if types.contains(&"Ingress") {
        let rules: Vec<Value> = (0..rng.below(3)).map(|_| rule(rng, "from")).collect();
        spec.insert("ingress".into(), Value::Array(rules));
    }
    if types.contains(&"Egress") {
        let rules: Vec<Value> = (0..rng.below(3)).map(|_| rule(rng, "to")).collect();
        spec.insert("egress".into(), Value::Array(rules));
    }
    spec.insert("policyTypes".into(), json!(types));
    let np: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("what-if-{n}"), "namespace": target.namespace},
        "spec": Value::Object(spec)
    }))
    .expect("generated policy deserializes");
    CompiledPolicy::compile(&np, "default").expect("generated policy is valid")
}

/// The cells a change flips, straight from the two oracle matrices.
fn symmetric_difference(
    model: &Model,
    before: &[CompiledPolicy],
    after: &[CompiledPolicy],
    probe: Probe,
) -> BTreeSet<(PodRef, PodRef)> {
    let b = Oracle::new(model, before).matrix(probe);
    let a = Oracle::new(model, after).matrix(probe);
    b.diff(&a).into_iter().map(|(f, t, _)| (f, t)).collect()
}

#[rstest]
fn what_if_flips_exactly_the_symmetric_difference(
    #[base_dir = "../scenarios"]
    #[files("**/*.yaml")]
    path: PathBuf,
) {
    let seed = path
        .to_string_lossy()
        .bytes()
        .fold(0x9e37_79b9_7f4a_7c15_u64, |h, b| {
            h.rotate_left(5) ^ u64::from(b)
        })
        | 1;
    let mut rng = Rng(seed);
    let steps = load_steps(&path);
    let Some(step) = steps.last() else { return };
    if step.model.pods.is_empty() {
        return;
    }
    for round in 0..12 {
        let added: Vec<CompiledPolicy> = (0..rng.below(3))
            .map(|k| random_policy(&mut rng, &step.model, round * 10 + k))
            .collect();
        let deleted: Vec<PolicyRef> = step
            .policies
            .iter()
            .filter(|_| rng.below(3) == 0)
            .map(|p| p.key.clone())
            .collect();
        let (after, replaced) =
            whatif::apply_change(&step.policies, &added, &deleted).expect("valid change");
        let keys: Vec<PolicyRef> = added.iter().map(|p| p.key.clone()).collect();
        let report = whatif::compute(
            "s",
            &step.name,
            &step.model,
            &step.policies,
            &after,
            &BTreeMap::new(),
            &step.probes,
            (&keys, &replaced, &deleted),
        );
        let mut total = 0;
        for pf in &report.probes {
            let probe = Probe::new(pf.port, pf.protocol);
            let listed: BTreeSet<(PodRef, PodRef)> = pf
                .flips
                .iter()
                .flat_map(|f| f.cells.iter().cloned())
                .collect();
            let listed_count: usize = pf.flips.iter().map(|f| f.cells.len()).sum();
            assert_eq!(listed_count, listed.len(), "no cell listed twice");
            let expected = symmetric_difference(&step.model, &step.policies, &after, probe);
            assert_eq!(
                listed,
                expected,
                "{} round {round} (seed {seed:#x}) {probe}: flipped cells differ from the oracle's",
                path.display()
            );
            // Every flip says which way it went and why.
            let before = Oracle::new(&step.model, &step.policies).matrix(probe);
            for f in &pf.flips {
                assert!(!f.reason.is_empty());
                for (from, to) in &f.cells {
                    assert_eq!(before.get(from, to), f.before);
                }
            }
            total += listed.len();
        }
        assert_eq!(report.flipped_cells, total);
    }
}

// Random models with owned pods (so classes have several members) and random policies.

fn labels_strategy() -> impl Strategy<Value = Labels> {
    (
        prop::sample::select(vec!["web", "db", "api"]),
        prop::option::of(prop::sample::select(vec!["blue", "green"])),
    )
        .prop_map(|(app, track)| {
            let mut l = Labels::from([("app".to_string(), app.to_string())]);
            if let Some(t) = track {
                l.insert("track".into(), t.into());
            }
            l
        })
}

fn model_strategy() -> impl Strategy<Value = Model> {
    (
        prop::collection::vec(prop::sample::select(vec!["prod", "dev"]), 2),
        prop::collection::vec((labels_strategy(), 1usize..4, any::<bool>()), 1..6),
    )
        .prop_map(|(envs, workloads)| {
            let mut m = Model::default();
            for (i, ns) in ["x", "y"].iter().enumerate() {
                m.namespaces.insert(
                    ns.to_string(),
                    Namespace::new(
                        *ns,
                        Labels::from([("env".to_string(), envs[i].to_string())]),
                    ),
                );
            }
            let mut ip = 2u8;
            for (w, (labels, replicas, named)) in workloads.into_iter().enumerate() {
                let ns = if w % 2 == 0 { "x" } else { "y" };
                let app = labels.get("app").cloned().unwrap_or_default();
                for r in 0..replicas {
                    let pod = Pod {
                        namespace: ns.into(),
                        name: format!("{app}{w}-{r}"),
                        labels: labels.clone(),
                        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, ip)),
                        ports: vec![ContainerPort {
                            name: named.then(|| "web".to_string()),
                            port: 80 + (w % 2) as u16,
                            protocol: Protocol::Tcp,
                        }],
                        image: None,
                        workload: Workload::Deployment {
                            name: format!("{app}{w}"),
                            replica: r as u32,
                        },
                    };
                    ip += 1;
                    m.pods.insert(pod.pod_ref(), pod);
                }
            }
            m
        })
}

fn selector_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        prop::sample::select(vec!["web", "db", "api"])
            .prop_map(|a| json!({"matchLabels": {"app": a}})),
        prop::sample::select(vec!["blue", "green"]).prop_map(
            |t| json!({"matchExpressions": [{"key": "track", "operator": "NotIn", "values": [t]}]})
        ),
        Just(json!({"matchExpressions": [{"key": "track", "operator": "DoesNotExist"}]})),
    ]
}

fn peer_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        selector_strategy().prop_map(|s| json!({"podSelector": s})),
        prop::sample::select(vec!["prod", "dev"])
            .prop_map(|e| json!({"namespaceSelector": {"matchLabels": {"env": e}}})),
        (selector_strategy(), prop::sample::select(vec!["x", "y"])).prop_map(|(p, n)| json!({
            "podSelector": p,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": n}}
        })),
        // Splits workloads by address: pods .2-.7 in, the rest out.
        (0u8..3).prop_map(|k| json!({"ipBlock": {"cidr": "10.0.0.0/29", "except": [format!("10.0.0.{}/31", 2 + 2 * k)]}})),
    ]
}

fn policy_strategy() -> impl Strategy<Value = Value> {
    let rule = |key: &'static str| {
        (
            prop::option::of(prop::collection::vec(peer_strategy(), 1..3)),
            prop::option::of(prop::sample::select(vec![
                json!([{"port": 80}]),
                json!([{"port": "web"}]),
            ])),
        )
            .prop_map(move |(peers, ports)| {
                let mut r = serde_json::Map::new();
                if let Some(p) = peers {
                    r.insert(key.into(), Value::Array(p));
                }
                if let Some(p) = ports {
                    r.insert("ports".into(), p);
                }
                Value::Object(r)
            })
    };
    (
        prop::sample::select(vec!["x", "y"]),
        selector_strategy(),
        prop::collection::vec(rule("from"), 0..3),
        prop::collection::vec(rule("to"), 0..3),
        prop::sample::select(vec![vec!["Ingress"], vec!["Egress"], vec!["Ingress", "Egress"]]),
    )
        .prop_map(|(ns, sel, ingress, egress, types)| {
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"namespace": ns, "name": "p"},
                   "spec": {"podSelector": sel, "ingress": ingress, "egress": egress, "policyTypes": types}})
        })
}

fn compile(values: &[Value]) -> Vec<CompiledPolicy> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut v = v.clone();
            v["metadata"]["name"] = json!(format!("p{i}"));
            let np: NetworkPolicy = serde_json::from_value(v).expect("deserializes");
            CompiledPolicy::compile(&np, "default").expect("valid")
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Every member pair of two classes gets the oracle's one answer for the class pair.
    #[test]
    fn grouping_is_sound_on_random_models(model in model_strategy(), pols in prop::collection::vec(policy_strategy(), 0..5)) {
        let policies = compile(&pols);
        assert_sound(&model, &policies, &[Probe::new(80, Protocol::Tcp), Probe::new(81, Protocol::Tcp)], "random");
    }

    /// Grouping over two policy sets is sound for each of them (what-if relies on it).
    #[test]
    fn grouping_over_two_states_is_sound_for_both(model in model_strategy(), a in prop::collection::vec(policy_strategy(), 0..4), b in prop::collection::vec(policy_strategy(), 0..4)) {
        let (pa, pb) = (compile(&a), compile(&b));
        let g = Grouping::for_policies(&model, &[&pa, &pb], &BTreeMap::new());
        for policies in [&pa, &pb] {
            let an = Analysis::with_grouping(&model, policies, g.clone(), &[Probe::new(80, Protocol::Tcp)]);
            let full = Oracle::new(&model, policies).matrix(Probe::new(80, Protocol::Tcp));
            let expanded = an.pod_table(0);
            for (f, t, v) in full.iter() {
                prop_assert_eq!(expanded.try_get(f, t), Some(v), "{} -> {}", f, t);
            }
        }
    }
}

/// Without policies, pods of one workload always share a class: the grouping is not vacuous.
#[test]
fn replicas_share_a_class_when_nothing_tells_them_apart() {
    let steps = load_steps(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/seed/manifests/shop.yaml"
    )));
    let step = &steps[0];
    let g = Grouping::for_policies(&step.model, &[&step.policies], &BTreeMap::new());
    let web = g.by_name("shop/web").expect("Deployment web is one class");
    assert_eq!(web.pods.len(), 2);
    assert!(g.classes.len() < step.model.pods.len());
}
