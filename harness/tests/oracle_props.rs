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

// ---------------------------------------------------------------------------------------------
// Tiered worlds: NetworkPolicies plus ClusterNetworkPolicies (Admin and Baseline) and the
// v1alpha1 AdminNetworkPolicy / BaselineAdminNetworkPolicy, with deliberately few priorities so
// ties (implementation-defined cells) come up often.
// ---------------------------------------------------------------------------------------------

mod naive;

use netpol_conformance::policy::ClusterPolicy;
use netpol_conformance::policy::cluster::compile::from_value as compile_cluster;

/// Pods declare varying ports; the name `web` is 80/TCP on some pods and 81/TCP on others, so
/// named ports resolve differently per destination.
fn tiered_model_strategy() -> impl Strategy<Value = Model> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b"]), 3),
        prop::collection::vec(
            prop::collection::vec((labels_strategy(), 0u8..4, any::<bool>()), 1..4),
            3,
        ),
    )
        .prop_map(|(envs, pods)| {
            let mut m = Model::default();
            let mut n = 2u32;
            for (i, ns) in NAMESPACES.iter().enumerate() {
                let mut nl = Labels::new();
                nl.insert("env".into(), envs[i].into());
                m.namespaces.insert(ns.to_string(), Namespace::new(*ns, nl));
                for (j, (labels, web, udp)) in pods[i].iter().enumerate() {
                    let mut ports = vec![ContainerPort {
                        name: Some("serve-80-tcp".into()),
                        port: 80,
                        protocol: Protocol::Tcp,
                    }];
                    match web {
                        0 => ports[0].name = Some("web".into()),
                        1 => ports.push(ContainerPort {
                            name: Some("web".into()),
                            port: 81,
                            protocol: Protocol::Tcp,
                        }),
                        2 => ports.push(ContainerPort {
                            name: Some("serve-81-tcp".into()),
                            port: 81,
                            protocol: Protocol::Tcp,
                        }),
                        _ => {}
                    }
                    if *udp {
                        ports.push(ContainerPort {
                            name: Some("serve-80-udp".into()),
                            port: 80,
                            protocol: Protocol::Udp,
                        });
                    }
                    let pod = Pod {
                        namespace: ns.to_string(),
                        name: format!("p{j}"),
                        labels: labels.clone(),
                        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, n as u8)),
                        ports,
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

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Cnp,
    Anp,
    Banp,
}

fn cluster_ns_selector() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        prop::sample::select(vec!["a", "b"]).prop_map(|e| json!({"matchLabels": {"env": e}})),
        prop::sample::select(NAMESPACES.to_vec())
            .prop_map(|n| json!({"matchLabels": {"kubernetes.io/metadata.name": n}})),
    ]
}

fn subject_strategy(v1: bool) -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        cluster_ns_selector(),
        selector_strategy(),
        any::<bool>(),
    )
        .prop_map(move |(by_ns, ns, pods, with_ns)| {
            if by_ns {
                json!({"namespaces": ns})
            } else if with_ns || v1 {
                json!({"pods": {"namespaceSelector": ns, "podSelector": pods}})
            } else {
                json!({"pods": {"podSelector": pods}})
            }
        })
}

fn cluster_peer_strategy(egress: bool, v1: bool) -> impl Strategy<Value = Value> {
    let nets = prop::sample::select(vec![
        vec!["10.0.0.0/28"],
        vec!["10.0.0.4/30"],
        vec!["10.0.0.2/31", "10.0.0.8/30"],
        vec!["0.0.0.0/0"],
        vec!["192.168.0.0/16"],
    ]);
    (
        0u8..if egress { 5 } else { 3 },
        cluster_ns_selector(),
        selector_strategy(),
        nets,
    )
        .prop_map(move |(k, ns, pods, nets)| match k {
            0 => json!({"namespaces": ns}),
            1 if v1 => json!({"pods": {"namespaceSelector": ns, "podSelector": pods}}),
            1 => json!({"pods": {"podSelector": pods}}),
            2 => json!({"pods": {"namespaceSelector": ns, "podSelector": pods}}),
            3 => json!({"networks": nets}),
            // A peer type of a newer API: fails closed.
            _ => json!({"serviceAccounts": {"names": ["x"]}}),
        })
}

fn cluster_ports_strategy(v1: bool, named_ok: bool) -> impl Strategy<Value = Option<Value>> {
    let v2 = vec![
        json!({"tcp": {"destinationPort": {"number": 80}}}),
        json!({"tcp": {"destinationPort": {"range": {"start": 80, "end": 81}}}}),
        json!({"tcp": {"destinationPort": {"range": {"start": 81, "end": 90}}}}),
        json!({"udp": {"destinationPort": {"number": 80}}}),
        json!({"destinationNamedPort": "web"}),
        json!({"destinationNamedPort": "serve-80-udp"}),
    ];
    let v1s = vec![
        json!({"portNumber": {"port": 80}}),
        json!({"portNumber": {"protocol": "UDP", "port": 80}}),
        json!({"portRange": {"start": 80, "end": 81}}),
        json!({"portRange": {"protocol": "TCP", "start": 81, "end": 85}}),
        json!({"namedPort": "web"}),
        json!({"namedPort": "serve-81-tcp"}),
    ];
    let all: Vec<Value> = if v1 { v1s } else { v2 };
    let choices: Vec<Value> = all
        .into_iter()
        .filter(|p| {
            named_ok || !(p.get("namedPort").is_some() || p.get("destinationNamedPort").is_some())
        })
        .collect();
    prop_oneof![
        Just(None),
        prop::collection::vec(prop::sample::select(choices), 1..3).prop_map(|v| Some(json!(v))),
    ]
}

fn cluster_rule_strategy(kind: Kind, egress: bool) -> impl Strategy<Value = Value> {
    let v1 = kind != Kind::Cnp;
    let actions: Vec<&str> = match kind {
        Kind::Cnp => vec!["Accept", "Deny", "Pass"],
        Kind::Anp => vec!["Allow", "Deny", "Pass"],
        Kind::Banp => vec!["Allow", "Deny"],
    };
    (
        prop::sample::select(actions),
        prop::collection::vec(cluster_peer_strategy(egress, v1), 1..3),
        prop::option::of(prop::sample::select(vec!["r-a", "r-b"])),
    )
        .prop_flat_map(move |(action, peers, name)| {
            // The CEL rule: no named port with networks peers.
            let named_ok = !peers.iter().any(|p| p.get("networks").is_some());
            cluster_ports_strategy(v1, named_ok).prop_map(move |ports| {
                let mut r = serde_json::Map::new();
                if let Some(n) = name {
                    r.insert("name".into(), json!(n));
                }
                r.insert("action".into(), json!(action));
                r.insert(
                    (if egress { "to" } else { "from" }).into(),
                    Value::Array(peers.clone()),
                );
                if let Some(p) = ports {
                    r.insert((if v1 { "ports" } else { "protocols" }).into(), p);
                }
                Value::Object(r)
            })
        })
}

fn cluster_policy_strategy(kind: Kind) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["Admin", "Admin", "Baseline"]),
        prop::sample::select(vec![1u32, 2, 2, 3]),
        subject_strategy(kind != Kind::Cnp),
        prop::collection::vec(cluster_rule_strategy(kind, false), 0..3),
        prop::collection::vec(cluster_rule_strategy(kind, true), 0..3),
    )
        .prop_map(move |(tier, priority, subject, ingress, egress)| {
            let mut spec = serde_json::Map::new();
            spec.insert("subject".into(), subject);
            if !ingress.is_empty() {
                spec.insert("ingress".into(), json!(ingress));
            }
            if !egress.is_empty() {
                spec.insert("egress".into(), json!(egress));
            }
            let (api, kind_s) = match kind {
                Kind::Cnp => {
                    spec.insert("tier".into(), json!(tier));
                    spec.insert("priority".into(), json!(priority));
                    ("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy")
                }
                Kind::Anp => {
                    spec.insert("priority".into(), json!(priority));
                    ("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy")
                }
                Kind::Banp => ("policy.networking.k8s.io/v1alpha1", "BaselineAdminNetworkPolicy"),
            };
            json!({"apiVersion": api, "kind": kind_s, "metadata": {"name": "p"}, "spec": Value::Object(spec)})
        })
}

/// Up to four ClusterNetworkPolicies or AdminNetworkPolicies and at most one
/// BaselineAdminNetworkPolicy (the singleton `default`).
fn cluster_set_strategy() -> impl Strategy<Value = Vec<Value>> {
    (
        prop::collection::vec(
            prop_oneof![
                3 => cluster_policy_strategy(Kind::Cnp),
                1 => cluster_policy_strategy(Kind::Anp)
            ],
            0..5,
        ),
        prop::option::weighted(0.3, cluster_policy_strategy(Kind::Banp)),
    )
        .prop_map(|(mut v, banp)| {
            for (i, p) in v.iter_mut().enumerate() {
                p["metadata"]["name"] = json!(format!("c{i}"));
            }
            if let Some(mut b) = banp {
                b["metadata"]["name"] = json!("default");
                v.push(b);
            }
            v
        })
}

fn compile_cluster_set(values: &[Value]) -> Vec<ClusterPolicy> {
    values
        .iter()
        .map(|v| {
            compile_cluster(v).unwrap_or_else(|e| panic!("generated policy is valid: {e:?}\n{v}"))
        })
        .collect()
}

/// NetworkPolicies with their generated names, as the naive evaluator reads them.
fn named_nps(values: &[Value]) -> Vec<Value> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut v = v.clone();
            v["metadata"]["name"] = json!(format!("p{i}"));
            v
        })
        .collect()
}

const TIER_PROBES: [Probe; 4] = [
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
    Probe {
        port: 85,
        protocol: Protocol::Tcp,
    },
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// With tiers, the per-cell path (with reasons) and the bitset matrix still give the same
    /// answers, implementation-defined cells included.
    #[test]
    fn tiered_decide_agrees_with_matrix(
        model in tiered_model_strategy(),
        pols in prop::collection::vec(policy_strategy(), 0..4),
        cluster in cluster_set_strategy(),
    ) {
        let policies = compile(&pols);
        let cluster = compile_cluster_set(&cluster);
        let oracle = Oracle::with_cluster(&model, &policies, &cluster);
        for probe in TIER_PROBES {
            let table = oracle.expected_matrix(probe);
            let bools = oracle.matrix(probe);
            for (f, t, v) in table.iter() {
                let d = oracle.decide(f, t, probe).expect("pods exist");
                prop_assert_eq!(d.expected(), *v, "{} -> {} {}", f, t, probe);
                prop_assert_eq!(bools.get(f, t), *v == Some(true));
                // The cell's answer follows from its two directions.
                let (e, i) = (d.egress.expected(), d.ingress.expected());
                let composed = match (e, i) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                prop_assert_eq!(composed, *v);
            }
        }
    }

    /// Both oracle paths agree with the naive evaluator written from the API text.
    #[test]
    fn tiered_oracle_agrees_with_the_naive_evaluator(
        model in tiered_model_strategy(),
        pols in prop::collection::vec(policy_strategy(), 0..4),
        cluster in cluster_set_strategy(),
    ) {
        let policies = compile(&pols);
        let compiled = compile_cluster_set(&cluster);
        let oracle = Oracle::with_cluster(&model, &policies, &compiled);
        let nps = named_nps(&pols);
        for probe in TIER_PROBES {
            let table = oracle.expected_matrix(probe);
            for (f, t, v) in table.iter() {
                let (from, to) = (&model.pods[f], &model.pods[t]);
                let want = naive::cell(&model, &nps, &cluster, from, to, probe);
                prop_assert_eq!(*v, want, "matrix: {} -> {} {}", f, t, probe);
                let d = oracle.decide(f, t, probe).expect("pods exist");
                prop_assert_eq!(d.expected(), want, "decide: {} -> {} {}", f, t, probe);
            }
        }
    }

    /// The naive evaluator agrees with the oracle on NetworkPolicy-only worlds too (so it is a
    /// check of the NetworkPolicy tier as well, not only of the cluster-wide ones).
    #[test]
    fn networkpolicy_only_worlds_agree_with_the_naive_evaluator(
        model in tiered_model_strategy(),
        pols in prop::collection::vec(policy_strategy(), 0..5),
    ) {
        let policies = compile(&pols);
        let oracle = Oracle::new(&model, &policies);
        let nps = named_nps(&pols);
        for probe in TIER_PROBES {
            for (f, t, v) in oracle.matrix(probe).iter() {
                let want = naive::cell(&model, &nps, &[], &model.pods[f], &model.pods[t], probe);
                prop_assert_eq!(Some(*v), want, "{} -> {} {}", f, t, probe);
            }
        }
    }

    /// Cluster-wide policies that select no pod change nothing; with none at all, the tiered
    /// oracle is the NetworkPolicy oracle.
    #[test]
    fn cluster_policies_selecting_nobody_change_nothing(
        model in tiered_model_strategy(),
        pols in prop::collection::vec(policy_strategy(), 0..4),
        cluster in cluster_set_strategy(),
    ) {
        let policies = compile(&pols);
        let plain = Oracle::new(&model, &policies);
        let mut nobody = cluster.clone();
        for p in &mut nobody {
            p["spec"]["subject"] = json!({"namespaces": {"matchLabels": {"nobody": "here"}}});
        }
        let nobody = compile_cluster_set(&nobody);
        let tiered = Oracle::with_cluster(&model, &policies, &nobody);
        for probe in TIER_PROBES {
            let want = plain.matrix(probe).map(|v| Some(*v));
            prop_assert_eq!(tiered.expected_matrix(probe), want);
        }
    }

    /// A pod reaching its own pod IP is never subject to cluster-wide policies: the diagonal is
    /// the NetworkPolicy answer whatever the tiers say.
    #[test]
    fn hairpin_cells_ignore_cluster_policies(
        model in tiered_model_strategy(),
        pols in prop::collection::vec(policy_strategy(), 0..4),
        cluster in cluster_set_strategy(),
    ) {
        let policies = compile(&pols);
        let compiled = compile_cluster_set(&cluster);
        let plain = Oracle::new(&model, &policies);
        let tiered = Oracle::with_cluster(&model, &policies, &compiled);
        for probe in TIER_PROBES {
            let (a, b) = (plain.matrix(probe), tiered.expected_matrix(probe));
            for r in model.pods.keys() {
                prop_assert_eq!(Some(a.get(r, r)), *b.try_get(r, r).expect("pod"));
            }
        }
    }
}
