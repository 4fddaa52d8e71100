//! Oracle speed: the full matrix for one probe over N pods and N/2 policies, for growing N; then
//! the same with 100 cluster-wide policies (Admin and Baseline ClusterNetworkPolicies and
//! AdminNetworkPolicies) on top. Prints figures (time, cells, ns per cell, growth ratio); the goals
//! are ≤ 1 s at 1,000 pods and 500 policies, and ≤ 1 s at 1,000 pods, 500 policies and 100
//! cluster-wide policies, with cost growing no faster than the matrix (N²).
//!
//! `cargo bench --bench oracle`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netpol_conformance::model::{
    ContainerPort, Labels, Model, Namespace, Pod, Probe, Protocol, Workload,
};
use netpol_conformance::policy::cluster::compile::from_value as compile_cluster;
use netpol_conformance::policy::{ClusterPolicy, CompiledPolicy, Oracle};
use serde_json::json;

const NAMESPACES: usize = 20;

/// A deterministic model: pods spread over 20 namespaces with app/tier/team labels.
fn model(pods: usize) -> Model {
    let mut m = Model::default();
    for n in 0..NAMESPACES {
        let name = format!("ns{n}");
        let labels = Labels::from([("team".to_string(), format!("t{}", n % 5))]);
        m.namespaces
            .insert(name.clone(), Namespace::new(name, labels));
    }
    for i in 0..pods {
        let ns = format!("ns{}", i % NAMESPACES);
        let labels = Labels::from([
            ("app".to_string(), format!("app{}", i % 17)),
            ("tier".to_string(), format!("tier{}", i % 3)),
        ]);
        let ip = IpAddr::V4(Ipv4Addr::from(0x0af4_0000u32 + i as u32 + 2));
        let pod = Pod {
            namespace: ns,
            name: format!("pod{i}"),
            labels,
            ip,
            ports: vec![ContainerPort {
                name: Some("http".into()),
                port: 80,
                protocol: Protocol::Tcp,
            }],
            image: None,
            workload: Workload::Pod,
        };
        m.pods.insert(pod.pod_ref(), pod);
    }
    m
}

/// A deterministic mix of policy shapes: ingress/egress, pod and namespace selectors, ipBlocks,
/// named ports and ranges.
fn policies(count: usize) -> Vec<CompiledPolicy> {
    (0..count)
        .map(|i| {
            let ns = format!("ns{}", i % NAMESPACES);
            let spec = match i % 5 {
                0 => json!({"podSelector": {"matchLabels": {"app": format!("app{}", i % 17)}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": format!("tier{}", i % 3)}}}],
                                 "ports": [{"port": 80}]}]}),
                1 => json!({"podSelector": {"matchLabels": {"tier": format!("tier{}", i % 3)}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", i % 5)}},
                                           "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": [format!("app{}", i % 17), format!("app{}", (i + 1) % 17)]}]}}]}]}),
                2 => json!({"podSelector": {"matchLabels": {"app": format!("app{}", i % 17)}},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}]}),
                3 => json!({"podSelector": {},
                    "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": [format!("10.244.{}.0/24", i % 4)]}}],
                                 "ports": [{"port": 70, "endPort": 90}]}]}),
                _ => json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["tier0"]}]},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": {}}]}],
                    "egress": [{"to": [{"podSelector": {"matchLabels": {"app": format!("app{}", i % 17)}}}]}]}),
            };
            let np: NetworkPolicy = serde_json::from_value(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("p{i}"), "namespace": ns}, "spec": spec}))
            .expect("benchmark policy deserializes");
            CompiledPolicy::compile(&np, "default").expect("benchmark policy is valid")
        })
        .collect()
}

/// A deterministic mix of cluster-wide shapes: namespace and pod subjects, Accept/Deny/Pass rules
/// with namespace, pod and network peers, port numbers, ranges and named ports, in both tiers and
/// both API versions, priorities 0–49 (so some share one).
fn cluster_policies(count: usize) -> Vec<ClusterPolicy> {
    (0..count)
        .map(|i| {
            let team = format!("t{}", i % 5);
            let app = format!("app{}", i % 17);
            let v = match i % 6 {
                0 => json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
                    "spec": {"tier": "Admin", "priority": i % 50,
                        "subject": {"namespaces": {"matchLabels": {"team": team}}},
                        "ingress": [
                            {"name": "pass-same-team", "action": "Pass", "from": [{"namespaces": {"matchLabels": {"team": team}}}]},
                            {"name": "deny-app", "action": "Deny", "from": [{"pods": {"podSelector": {"matchLabels": {"app": app}}}}],
                             "protocols": [{"tcp": {"destinationPort": {"range": {"start": 70, "end": 90}}}}]}]}}),
                1 => json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
                    "spec": {"tier": "Admin", "priority": i % 50,
                        "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": format!("tier{}", i % 3)}}}},
                        "egress": [
                            {"name": "accept-http", "action": "Accept", "to": [{"pods": {"podSelector": {"matchLabels": {"app": app}}}}],
                             "protocols": [{"destinationNamedPort": "http"}]},
                            {"name": "deny-net", "action": "Deny", "to": [{"networks": [format!("10.244.{}.0/24", i % 4)]}]}]}}),
                2 => json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
                    "spec": {"tier": "Baseline", "priority": i % 50,
                        "subject": {"namespaces": {}},
                        "ingress": [{"name": "deny-team", "action": "Deny", "from": [{"namespaces": {"matchLabels": {"team": team}}}]}],
                        "egress": [{"name": "pass-app", "action": "Pass", "to": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": app}}}}]}]}}),
                3 => json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
                    "spec": {"priority": i % 50,
                        "subject": {"pods": {"namespaceSelector": {"matchLabels": {"team": team}}, "podSelector": {}}},
                        "ingress": [{"name": "allow-80", "action": "Allow", "from": [{"namespaces": {}}],
                                     "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]}],
                        "egress": [{"name": "deny-app", "action": "Deny", "to": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": app}}}}]}]}}),
                4 => json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
                    "spec": {"tier": "Admin", "priority": i % 50,
                        "subject": {"namespaces": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": [team]}]}},
                        "egress": [{"name": "accept-team", "action": "Accept", "to": [{"namespaces": {"matchLabels": {"team": team}}}],
                                    "protocols": [{"tcp": {"destinationPort": {"number": 80}}}, {"udp": {"destinationPort": {"number": 53}}}]}]}}),
                _ => json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
                    "spec": {"tier": "Baseline", "priority": i % 50,
                        "subject": {"pods": {"podSelector": {"matchLabels": {"app": app}}}},
                        "ingress": [{"name": "accept-tier", "action": "Accept", "from": [{"pods": {"podSelector": {"matchLabels": {"tier": format!("tier{}", i % 3)}}}}]},
                                    {"name": "deny-rest", "action": "Deny", "from": [{"namespaces": {}}]}]}}),
            };
            let mut v = v;
            v["metadata"] = json!({"name": format!("c{i}")});
            compile_cluster(&v).unwrap_or_else(|e| panic!("benchmark cluster policy is valid: {e:?}"))
        })
        .collect()
}

/// Best-of-3 time of building the oracle and one matrix, and the allowed and
/// implementation-defined cells.
fn measure_with(pods: usize, cluster: usize) -> (Duration, usize, usize) {
    let m = model(pods);
    let p = policies(pods / 2);
    let c = cluster_policies(cluster);
    let probe = Probe::new(80, Protocol::Tcp);
    // Best of 3: the figure is the cost of the work, not of a noisy neighbour.
    let mut best = Duration::MAX;
    let (mut allowed, mut undefined) = (0, 0);
    for _ in 0..3 {
        let start = Instant::now();
        let oracle = Oracle::with_cluster(&m, &p, &c);
        let table = black_box(oracle.expected_matrix(probe));
        best = best.min(start.elapsed());
        allowed = table.iter().filter(|c| *c.2 == Some(true)).count();
        undefined = table.iter().filter(|c| c.2.is_none()).count();
    }
    (best, allowed, undefined)
}

fn measure(pods: usize) -> (Duration, usize) {
    let m = model(pods);
    let p = policies(pods / 2);
    let probe = Probe::new(80, Protocol::Tcp);
    // Best of 3: the figure is the cost of the work, not of a noisy neighbour.
    let mut best = Duration::MAX;
    let mut allowed = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let oracle = Oracle::new(&m, &p);
        let table = black_box(oracle.matrix(probe));
        best = best.min(start.elapsed());
        allowed = table.iter().filter(|c| *c.2).count();
    }
    (best, allowed)
}

fn main() {
    println!("oracle matrix, one probe (80/TCP), policies = pods / 2, best of 3");
    println!(
        "{:>6} {:>9} {:>11} {:>12} {:>10} {:>14}",
        "pods", "policies", "cells", "time", "ns/cell", "allowed cells"
    );
    let mut prev: Option<(usize, Duration)> = None;
    let mut at_1000 = Duration::ZERO;
    for pods in [250, 500, 1000, 2000] {
        let (t, allowed) = measure(pods);
        let cells = pods * pods;
        println!(
            "{pods:>6} {:>9} {cells:>11} {:>9.1} ms {:>10.1} {allowed:>14}",
            pods / 2,
            t.as_secs_f64() * 1e3,
            t.as_nanos() as f64 / cells as f64
        );
        if let Some((pp, pt)) = prev {
            let cell_ratio = (pods * pods) as f64 / (pp * pp) as f64;
            println!(
                "        growth: time ×{:.2} for cells ×{:.2} (≤ 1 means no faster than the matrix: {:.2})",
                t.as_secs_f64() / pt.as_secs_f64(),
                cell_ratio,
                (t.as_secs_f64() / pt.as_secs_f64()) / cell_ratio
            );
        }
        if pods == 1000 {
            at_1000 = t;
        }
        prev = Some((pods, t));
    }
    println!(
        "goal: 1,000 pods × 500 policies ≤ 1 s: {:.1} ms ({})",
        at_1000.as_secs_f64() * 1e3,
        if at_1000 <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );

    println!();
    println!(
        "with 100 cluster-wide policies (Admin/Baseline ClusterNetworkPolicy, AdminNetworkPolicy), best of 3"
    );
    println!(
        "{:>6} {:>9} {:>8} {:>11} {:>12} {:>10} {:>14} {:>10}",
        "pods", "policies", "cluster", "cells", "time", "ns/cell", "allowed cells", "undefined"
    );
    let mut prev: Option<(usize, Duration)> = None;
    let mut tiered_1000 = Duration::ZERO;
    for pods in [250, 500, 1000, 2000] {
        let (t, allowed, undefined) = measure_with(pods, 100);
        let cells = pods * pods;
        println!(
            "{pods:>6} {:>9} {:>8} {cells:>11} {:>9.1} ms {:>10.1} {allowed:>14} {undefined:>10}",
            pods / 2,
            100,
            t.as_secs_f64() * 1e3,
            t.as_nanos() as f64 / cells as f64
        );
        if let Some((pp, pt)) = prev {
            let cell_ratio = (pods * pods) as f64 / (pp * pp) as f64;
            println!(
                "        growth: time ×{:.2} for cells ×{:.2} ({:.2})",
                t.as_secs_f64() / pt.as_secs_f64(),
                cell_ratio,
                (t.as_secs_f64() / pt.as_secs_f64()) / cell_ratio
            );
        }
        if pods == 1000 {
            tiered_1000 = t;
        }
        prev = Some((pods, t));
    }
    println!(
        "goal: 1,000 pods × 500 policies + 100 cluster-wide policies ≤ 1 s: {:.1} ms ({}); \
         {:.1}× the NetworkPolicy-only matrix",
        tiered_1000.as_secs_f64() * 1e3,
        if tiered_1000 <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        },
        tiered_1000.as_secs_f64() / at_1000.as_secs_f64()
    );
}
