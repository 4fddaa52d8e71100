//! Property tests of the oracle's invariants over random models and policies.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netpol_conformance::model::{
    ContainerPort, Labels, Model, Namespace, Pod, Probe, Protocol, Workload,
};
use netpol_conformance::policy::{CompiledPolicy, Oracle};
use proptest::prelude::*;
use serde_json::{Value, json};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PROBES: [Probe; 3] = [
    Probe {
        port: 80,
        protocol: Protocol::Tcp,
    },
    Probe {
        port: 81,
        protocol: Protocol::Tcp,
    },
    Probe {
        port: 80,
        protocol: Protocol::Udp,
    },
];

fn labels_strategy() -> impl Strategy<Value = Labels> {
    (
        prop::option::of(prop::sample::select(vec!["web", "db", "api"])),
        prop::option::of(prop::sample::select(vec!["fe", "be"])),
    )
        .prop_map(|(app, tier)| {
            let mut l = Labels::new();
            if let Some(a) = app {
                l.insert("app".into(), a.into());
            }
            if let Some(t) = tier {
                l.insert("tier".into(), t.into());
            }
            l
        })
}

fn model_strategy() -> impl Strategy<Value = Model> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b"]), 3),
        prop::collection::vec(prop::collection::vec(labels_strategy(), 1..4), 3),
    )
        .prop_map(|(envs, pods)| {
            let mut m = Model::default();
            let mut n = 2u32;
            for (i, ns) in NAMESPACES.iter().enumerate() {
                let mut nl = Labels::new();
                nl.insert("env".into(), envs[i].into());
                m.namespaces.insert(ns.to_string(), Namespace::new(*ns, nl));
                for (j, labels) in pods[i].iter().enumerate() {
                    let pod = Pod {
                        namespace: ns.to_string(),
                        name: format!("p{j}"),
                        labels: labels.clone(),
                        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, n as u8)),
                        ports: vec![
                            ContainerPort {
                                name: Some("serve-80-tcp".into()),
                                port: 80,
                                protocol: Protocol::Tcp,
                            },
                            ContainerPort {
                                name: Some("serve-81-tcp".into()),
                                port: 81,
                                protocol: Protocol::Tcp,
                            },
                            ContainerPort {
                                name: Some("serve-80-udp".into()),
                                port: 80,
                                protocol: Protocol::Udp,
                            },
                        ],
                        image: None,
                        workload: Workload::Pod,
                    };
                    n += 1;
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
        prop::sample::select(vec!["fe", "be"]).prop_map(
            |t| json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": [t]}]})
        ),
        Just(json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]})),
        Just(json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})),
    ]
}

fn ns_selector_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        prop::sample::select(vec!["a", "b"]).prop_map(|e| json!({"matchLabels": {"env": e}})),
        prop::sample::select(NAMESPACES.to_vec())
            .prop_map(|n| json!({"matchLabels": {"kubernetes.io/metadata.name": n}})),
    ]
}

fn peer_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        selector_strategy().prop_map(|s| json!({"podSelector": s})),
        ns_selector_strategy().prop_map(|s| json!({"namespaceSelector": s})),
        (selector_strategy(), ns_selector_strategy())
            .prop_map(|(p, n)| json!({"podSelector": p, "namespaceSelector": n})),
        (0u8..4).prop_map(|k| json!({"ipBlock": {"cidr": "10.0.0.0/28", "except": [format!("10.0.0.{}/30", k * 4)]}})),
    ]
}

fn port_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"port": 80})),
        Just(json!({"port": 81, "protocol": "TCP"})),
        Just(json!({"port": 80, "protocol": "UDP"})),
        Just(json!({"port": "serve-81-tcp"})),
        Just(json!({"port": 80, "endPort": 81})),
        Just(json!({"protocol": "UDP"})),
    ]
}

fn rule_strategy(peers_key: &'static str) -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just(None),
            Just(Some(vec![])),
            prop::collection::vec(peer_strategy(), 1..3).prop_map(Some)
        ],
        prop_oneof![
            Just(None),
            prop::collection::vec(port_strategy(), 1..3).prop_map(Some)
        ],
    )
        .prop_map(move |(peers, ports)| {
            let mut r = serde_json::Map::new();
            if let Some(p) = peers {
                r.insert(peers_key.into(), Value::Array(p));
            }
            if let Some(p) = ports {
                r.insert("ports".into(), Value::Array(p));
            }
            Value::Object(r)
        })
}

fn policy_strategy() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(NAMESPACES.to_vec()),
        selector_strategy(),
        prop::option::of(prop::collection::vec(rule_strategy("from"), 0..3)),
        prop::option::of(prop::collection::vec(rule_strategy("to"), 0..3)),
        prop::sample::select(vec![
            None,
            Some(vec!["Ingress"]),
            Some(vec!["Egress"]),
            Some(vec!["Ingress", "Egress"]),
        ]),
    )
        .prop_map(|(ns, sel, ingress, egress, types)| {
            let mut spec = serde_json::Map::new();
            spec.insert("podSelector".into(), sel);
            if let Some(i) = ingress {
                spec.insert("ingress".into(), Value::Array(i));
            }
            if let Some(e) = egress {
                spec.insert("egress".into(), Value::Array(e));
            }
            if let Some(t) = types {
                spec.insert("policyTypes".into(), json!(t));
            }
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"namespace": ns, "name": "p"}, "spec": Value::Object(spec)})
        })
}

/// Compiles generated policies, giving each a unique name.
fn compile(values: &[Value]) -> Vec<CompiledPolicy> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut v = v.clone();
            v["metadata"]["name"] = json!(format!("p{i}"));
            let np: NetworkPolicy =
                serde_json::from_value(v).expect("generated policy deserializes");
            CompiledPolicy::compile(&np, "default").expect("generated policy is valid")
        })
        .collect()
}

fn all_tables(model: &Model, policies: &[CompiledPolicy]) -> Vec<Vec<bool>> {
    let oracle = Oracle::new(model, policies);
    PROBES
        .iter()
        .map(|p| oracle.matrix(*p).iter().map(|c| *c.2).collect())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// The per-cell path (with reasons) and the bitset matrix path give the same answers.
    #[test]
    fn decide_agrees_with_matrix(model in model_strategy(), pols in prop::collection::vec(policy_strategy(), 0..5)) {
        let policies = compile(&pols);
        let oracle = Oracle::new(&model, &policies);
        for probe in PROBES {
            let table = oracle.matrix(probe);
            for (f, t, v) in table.iter() {
                let d = oracle.decide(f, t, probe).expect("pods exist");
                prop_assert_eq!(d.allowed, *v, "{} -> {} {}", f, t, probe);
                prop_assert_eq!(d.allowed, d.egress.allowed && d.ingress.allowed);
            }
        }
    }

    /// A policy that selects no pod changes nothing.
    #[test]
    fn a_policy_selecting_nothing_changes_nothing(model in model_strategy(), pols in prop::collection::vec(policy_strategy(), 0..4), extra in policy_strategy()) {
        let before = all_tables(&model, &compile(&pols));
        let mut extra = extra;
        extra["spec"]["podSelector"] = json!({"matchLabels": {"nobody": "here"}});
        let mut with = pols.clone();
        with.push(extra);
        prop_assert_eq!(before, all_tables(&model, &compile(&with)));
    }

    /// Adding a rule to a policy never removes an allowed cell (rules only add).
    #[test]
    fn adding_a_rule_never_removes_an_allowed_cell(model in model_strategy(), pols in prop::collection::vec(policy_strategy(), 1..4), rule in rule_strategy("from"), which in 0usize..4, egress in any::<bool>()) {
        let before = all_tables(&model, &compile(&pols));
        let mut after_pols = pols.clone();
        let k = which % after_pols.len();
        let dir = if egress { "egress" } else { "ingress" };
        let mut rule = rule;
        if egress && let Some(from) = rule.as_object_mut().and_then(|r| r.remove("from")) {
            rule["to"] = from;
        }
        // Only extend a direction the policy already has, with explicit policyTypes, so the
        // change cannot alter which directions it isolates.
        let spec = &mut after_pols[k]["spec"];
        let types: Vec<&str> = match spec.get("policyTypes").and_then(Value::as_array) {
            Some(t) => t.iter().filter_map(Value::as_str).collect(),
            None => {
                let mut t = vec!["Ingress"];
                if spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty()) { t.push("Egress"); }
                t
            }
        };
        let types: Vec<String> = types.into_iter().map(String::from).collect();
        spec["policyTypes"] = json!(types);
        match spec.get_mut(dir).and_then(Value::as_array_mut) {
            Some(rules) => rules.push(rule),
            None => spec[dir] = json!([rule]),
        }
        let after = all_tables(&model, &compile(&after_pols));
        for (b, a) in before.iter().zip(&after) {
            for (cb, ca) in b.iter().zip(a) {
                prop_assert!(!cb || *ca, "an allowed cell became denied");
            }
        }
    }

    /// A policy with `ingress: [{}]` selecting every pod of every namespace allows all ingress.
    #[test]
    fn ingress_empty_rule_allows_all_ingress(model in model_strategy(), pols in prop::collection::vec(policy_strategy(), 0..4)) {
        let mut with = pols.clone();
        for ns in NAMESPACES {
            with.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"namespace": ns, "name": "x"}, "spec": {"podSelector": {}, "ingress": [{}]}}));
        }
        let policies = compile(&with);
        let oracle = Oracle::new(&model, &policies);
        for probe in PROBES {
            for (f, t, _) in oracle.matrix(probe).iter() {
                prop_assert!(oracle.decide(f, t, probe).expect("pods").ingress.allowed);
            }
        }
    }

    /// Without policies everything is allowed.
    #[test]
    fn removing_every_policy_allows_all(model in model_strategy()) {
        for t in all_tables(&model, &[]) {
            prop_assert!(t.iter().all(|c| *c));
        }
    }
}
