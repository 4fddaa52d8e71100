//! The oracle, corner by corner, on small inline inputs: each test states one rule of NetworkPolicy
//! v1 and checks the cells it decides. Every lookup also checks that the per-cell path
//! (`Oracle::decide`, used by `explain`) and the whole-matrix path (`Oracle::matrix`) agree.

use std::collections::BTreeSet;

use netpol_conformance::model::{PodRef, Probe, Protocol};
use netpol_conformance::policy::Direction;
use netpol_conformance::scenario::{Step, load_str};

const UPSTREAM: &str = "{upstream: {protocols: [TCP, UDP], ports: [80, 81]}}";

const TCP80: Probe = Probe {
    port: 80,
    protocol: Protocol::Tcp,
};
const TCP81: Probe = Probe {
    port: 81,
    protocol: Protocol::Tcp,
};
const UDP80: Probe = Probe {
    port: 80,
    protocol: Protocol::Udp,
};

/// A NetworkPolicy in flow-style YAML.
fn np(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "{{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, \
         metadata: {{namespace: {namespace}, name: {name}}}, spec: {spec}}}"
    )
}

/// The single step of a scenario with `model` (flow YAML) and `policies` applied.
fn step_in(model: &str, policies: &[String]) -> Step {
    let text = format!(
        "apiVersion: netpolc/v1\nkind: Scenario\nmodel: {model}\nsteps:\n  - name: s\n    apply: [{}]\n",
        policies.join(", ")
    );
    let loaded = load_str(&text, "inline.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    loaded
        .scenarios
        .into_iter()
        .next()
        .and_then(|s| s.steps.into_iter().next())
        .expect("one step")
}

fn step(policies: &[String]) -> Step {
    step_in(UPSTREAM, policies)
}

fn pod(s: &str) -> PodRef {
    s.parse().expect("ns/pod")
}

/// The oracle's answer for one cell, after checking both evaluation paths agree on it.
fn allowed(step: &Step, from: &str, to: &str, probe: Probe) -> bool {
    let (f, t) = (pod(from), pod(to));
    let decision = step.explain(&f, &t, probe).expect("pods exist");
    let matrix = step.oracle().matrix(probe).get(&f, &t);
    assert_eq!(
        decision.allowed, matrix,
        "decide and matrix disagree on {from} -> {to} {probe}"
    );
    decision.allowed
}

/// Every denied cell of a probe, as "from->to", after checking decide/matrix agreement everywhere.
fn denied(step: &Step, probe: Probe) -> BTreeSet<String> {
    let pods = step.model.pod_refs();
    let mut out = BTreeSet::new();
    for f in &pods {
        for t in &pods {
            if !allowed(step, &f.to_string(), &t.to_string(), probe) {
                out.insert(format!("{f}->{t}"));
            }
        }
    }
    out
}

/// Cells from every pod matching `from` to every pod matching `to` (`*`, `ns/*`, `*/pod`, `ns/pod`).
fn cells(step: &Step, from: &str, to: &str) -> BTreeSet<String> {
    let matches = |pat: &str, p: &PodRef| {
        let (ns, name) = pat.split_once('/').unwrap_or(("*", "*"));
        (ns == "*" || ns == p.namespace) && (name == "*" || name == p.name)
    };
    let pods = step.model.pod_refs();
    let mut out = BTreeSet::new();
    for f in pods.iter().filter(|p| matches(from, p)) {
        for t in pods.iter().filter(|p| matches(to, p)) {
            out.insert(format!("{f}->{t}"));
        }
    }
    out
}

fn union(sets: impl IntoIterator<Item = BTreeSet<String>>) -> BTreeSet<String> {
    sets.into_iter().flatten().collect()
}

#[test]
fn without_policies_everything_is_allowed() {
    let s = step(&[]);
    assert!(denied(&s, TCP80).is_empty());
    assert!(denied(&s, UDP80).is_empty());
    let d = s
        .explain(&pod("x/a"), &pod("y/b"), TCP80)
        .expect("pods exist");
    assert!(d.egress.selecting.is_empty() && d.ingress.selecting.is_empty());
}

#[test]
fn a_policy_only_isolates_pods_of_its_own_namespace() {
    let s = step(&[np("y", "deny", "{podSelector: {}, policyTypes: [Ingress]}")]);
    assert_eq!(denied(&s, TCP80), cells(&s, "*", "y/*"));
}

#[test]
fn empty_ingress_list_denies_and_empty_rule_allows() {
    let deny = step(&[np("x", "p", "{podSelector: {}, ingress: []}")]);
    assert_eq!(denied(&deny, TCP80), cells(&deny, "*", "x/*"));
    let no_key = step(&[np("x", "p", "{podSelector: {}, policyTypes: [Ingress]}")]);
    assert_eq!(denied(&no_key, TCP80), cells(&no_key, "*", "x/*"));
    let allow_all = step(&[np("x", "p", "{podSelector: {}, ingress: [{}]}")]);
    assert!(denied(&allow_all, TCP80).is_empty());
    assert!(denied(&allow_all, UDP80).is_empty());
}

#[test]
fn missing_or_empty_from_and_ports_mean_everything() {
    for spec in [
        "{podSelector: {}, ingress: [{ports: [{port: 80}]}]}",
        "{podSelector: {}, ingress: [{from: [], ports: [{port: 80}]}]}",
    ] {
        let s = step(&[np("x", "p", spec)]);
        assert!(denied(&s, TCP80).is_empty(), "{spec}");
        assert_eq!(denied(&s, TCP81), cells(&s, "*", "x/*"), "{spec}");
    }
    let s = step(&[np(
        "x",
        "p",
        "{podSelector: {}, ingress: [{from: [{podSelector: {}}], ports: []}]}",
    )]);
    assert_eq!(
        denied(&s, UDP80),
        union([cells(&s, "y/*", "x/*"), cells(&s, "z/*", "x/*")])
    );
}

#[test]
fn empty_selectors_in_a_peer() {
    // podSelector {} alone: every pod of the policy's namespace.
    let own = step(&[np(
        "x",
        "p",
        "{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}",
    )]);
    assert_eq!(
        denied(&own, TCP80),
        union([cells(&own, "y/*", "x/*"), cells(&own, "z/*", "x/*")])
    );
    // namespaceSelector {} alone, or with podSelector {}: every pod of every namespace.
    for peer in [
        "{namespaceSelector: {}}",
        "{namespaceSelector: {}, podSelector: {}}",
    ] {
        let all = step(&[np(
            "x",
            "p",
            &format!("{{podSelector: {{}}, ingress: [{{from: [{peer}]}}]}}"),
        )]);
        assert!(denied(&all, TCP80).is_empty(), "{peer}");
    }
}

#[test]
fn selectors_in_one_peer_are_anded_and_peers_are_ored() {
    let and = step(&[np(
        "x",
        "p",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [\
         {namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]}",
    )]);
    let mut want = cells(&and, "*", "x/a");
    want.remove("y/b->x/a");
    assert_eq!(denied(&and, TCP80), want);

    let or = step(&[np(
        "x",
        "p",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [\
         {namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]}",
    )]);
    let mut want = cells(&or, "*", "x/a");
    for admitted in ["y/a->x/a", "y/b->x/a", "y/c->x/a", "x/b->x/a"] {
        want.remove(admitted);
    }
    assert_eq!(denied(&or, TCP80), want);
}

#[test]
fn policies_add_up() {
    let s = step(&[
        np(
            "x",
            "from-b",
            "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]}",
        ),
        np(
            "x",
            "from-c",
            "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: c}}}]}]}",
        ),
    ]);
    assert!(allowed(&s, "x/b", "x/a", TCP80));
    assert!(allowed(&s, "x/c", "x/a", TCP80));
    assert!(!allowed(&s, "y/b", "x/a", TCP80));
    let d = s.explain(&pod("x/c"), &pod("x/a"), TCP80).expect("pods");
    assert_eq!(d.ingress.selecting.len(), 2, "both policies select x/a");
    assert_eq!(d.ingress.allowed_by.len(), 1);
    assert_eq!(d.ingress.allowed_by[0].policy.name, "from-c");
    assert_eq!(d.ingress.allowed_by[0].rule, 0);
    assert_eq!(d.ingress.allowed_by[0].peer, Some(0));
}

#[test]
fn policy_types_default_from_the_spec() {
    // Egress rules without policyTypes: [Ingress, Egress], and no ingress rule means deny.
    let both = step(&[np(
        "x",
        "p",
        "{podSelector: {matchLabels: {pod: a}}, egress: [{ports: [{port: 80}]}]}",
    )]);
    assert_eq!(denied(&both, TCP80), cells(&both, "*", "x/a"));
    assert_eq!(
        denied(&both, TCP81),
        union([cells(&both, "*", "x/a"), cells(&both, "x/a", "*")])
    );
    // `egress: []` without policyTypes: Ingress only; egress untouched.
    let ingress_only = step(&[np(
        "x",
        "p",
        "{podSelector: {matchLabels: {pod: a}}, egress: []}",
    )]);
    assert_eq!(
        denied(&ingress_only, TCP81),
        cells(&ingress_only, "*", "x/a")
    );
    // Explicit policyTypes [Egress] ignores ingress rules: x/a is not isolated for ingress.
    let egress_only = step(&[np(
        "x",
        "p",
        "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], ingress: [], egress: []}",
    )]);
    assert_eq!(denied(&egress_only, TCP80), cells(&egress_only, "x/a", "*"));
    let d = egress_only
        .explain(&pod("y/a"), &pod("x/a"), TCP80)
        .expect("pods");
    assert!(d.ingress.selecting.is_empty() && d.allowed);
}

#[test]
fn a_connection_needs_egress_and_ingress() {
    let s = step(&[
        np(
            "x",
            "a-to-y",
            "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], \
             egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}]}]}",
        ),
        np(
            "y",
            "b-from-x-a",
            "{podSelector: {matchLabels: {pod: b}}, ingress: [{from: [\
             {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]}",
        ),
    ]);
    assert!(allowed(&s, "x/a", "y/b", TCP80), "both ends admit it");
    assert!(allowed(&s, "x/a", "y/a", TCP80), "y/a is not isolated");
    assert!(!allowed(&s, "x/a", "z/b", TCP80), "egress refuses z");
    assert!(!allowed(&s, "x/b", "y/b", TCP80), "ingress refuses x/b");
    let d = s.explain(&pod("x/a"), &pod("z/b"), TCP80).expect("pods");
    assert!(!d.egress.allowed && d.ingress.allowed);
    assert_eq!(d.egress.direction, Direction::Egress);
}

#[test]
fn named_ports_resolve_on_the_destination() {
    let model = "{namespaces: [{name: s}], pods: [\
        {namespace: s, name: api, labels: {app: api}, ports: [{port: 8080, name: http}, {port: 9090, name: admin}]},\
        {namespace: s, name: web, labels: {app: web}, ports: [{port: 9090, name: http}, {port: 53, protocol: UDP, name: dns}]},\
        {namespace: s, name: cli, labels: {app: cli}, ports: [\"8080/TCP\"]}]}";
    let s = step_in(
        model,
        &[np(
            "s",
            "p",
            "{podSelector: {}, policyTypes: [Ingress], ingress: [{ports: [{port: http}, {port: dns, protocol: TCP}]}]}",
        )],
    );
    let p = |port, protocol| Probe { port, protocol };
    assert!(allowed(&s, "s/cli", "s/api", p(8080, Protocol::Tcp)));
    assert!(!allowed(&s, "s/cli", "s/api", p(9090, Protocol::Tcp)));
    assert!(allowed(&s, "s/cli", "s/web", p(9090, Protocol::Tcp)));
    assert!(!allowed(&s, "s/cli", "s/web", p(8080, Protocol::Tcp)));
    // `dns` is declared on UDP; the entry asks for TCP: no match on either protocol.
    assert!(!allowed(&s, "s/cli", "s/web", p(53, Protocol::Tcp)));
    assert!(!allowed(&s, "s/cli", "s/web", p(53, Protocol::Udp)));
    // cli declares no name `http`: nothing into cli matches.
    assert!(!allowed(&s, "s/api", "s/cli", p(8080, Protocol::Tcp)));
}

#[test]
fn end_port_is_inclusive_and_protocol_defaults_to_tcp() {
    let s = step(&[np(
        "x",
        "p",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{ports: [{port: 79, endPort: 80}]}]}",
    )]);
    assert!(allowed(&s, "y/a", "x/a", TCP80));
    assert!(!allowed(&s, "y/a", "x/a", TCP81));
    assert!(!allowed(&s, "y/a", "x/a", UDP80), "no protocol means TCP");
    let p = |port| Probe {
        port,
        protocol: Protocol::Tcp,
    };
    assert!(allowed(&s, "y/a", "x/a", p(79)));
    assert!(!allowed(&s, "y/a", "x/a", p(78)));

    let udp_any = step(&[np(
        "x",
        "p",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{ports: [{protocol: UDP}]}]}",
    )]);
    assert!(allowed(&udp_any, "y/a", "x/a", UDP80));
    let udp1 = Probe {
        port: 1,
        protocol: Protocol::Udp,
    };
    assert!(allowed(&udp_any, "y/a", "x/a", udp1));
    assert!(!allowed(&udp_any, "y/a", "x/a", TCP80));
}

#[test]
fn ip_blocks_match_pod_addresses_minus_excepts() {
    // Upstream model addresses: x/a .2, x/b .3, x/c .4, y/a .5, y/b .6, y/c .7, z/* .8-.10.
    let s = step(&[np(
        "x",
        "p",
        "{podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], egress: [{to: [\
         {ipBlock: {cidr: 10.244.0.0/29, except: [10.244.0.4/30]}}]}]}",
    )]);
    // 10.244.0.0/29 holds .0-.7; except .4-.7: x/a .2 and x/b .3 remain.
    assert!(allowed(&s, "x/a", "x/a", TCP80));
    assert!(allowed(&s, "x/a", "x/b", TCP80));
    for to in ["x/c", "y/a", "y/b", "y/c", "z/a"] {
        assert!(!allowed(&s, "x/a", to, TCP80), "{to}");
    }
    // As an ingress peer the block matches the source pod's address: .8-.9 are z/a and z/b.
    let ingress = step(&[np(
        "y",
        "p",
        "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.244.0.8/31}}]}]}",
    )]);
    assert_eq!(
        denied(&ingress, TCP80),
        union([
            cells(&ingress, "x/*", "y/*"),
            cells(&ingress, "y/*", "y/*"),
            cells(&ingress, "z/c", "y/*"),
        ])
    );
}

#[test]
fn match_expression_operators() {
    let s = step(&[np(
        "x",
        "p",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {}, podSelector: \
         {matchExpressions: [{key: pod, operator: NotIn, values: [a, b]}]}}]}]}",
    )]);
    let mut want = cells(&s, "*", "x/a");
    want.retain(|c| !c.contains("/c->"));
    assert_eq!(denied(&s, TCP80), want);

    // NotIn also matches pods without the key; Exists / DoesNotExist test presence only.
    let model = "{namespaces: [{name: n}], pods: [\
        {namespace: n, name: t, labels: {role: target}, ports: [\"80/TCP\"]},\
        {namespace: n, name: bare, ports: [\"80/TCP\"]},\
        {namespace: n, name: tier-empty, labels: {tier: \"\"}, ports: [\"80/TCP\"]},\
        {namespace: n, name: tier-web, labels: {tier: web}, ports: [\"80/TCP\"]}]}";
    let check = |expr: &str, admitted: &[&str]| {
        let s = step_in(
            model,
            &[np(
                "n",
                "p",
                &format!(
                    "{{podSelector: {{matchLabels: {{role: target}}}}, ingress: [{{from: [{{podSelector: \
                     {{matchExpressions: [{expr}]}}}}]}}]}}"
                ),
            )],
        );
        for from in ["bare", "tier-empty", "tier-web", "t"] {
            let want = admitted.contains(&from);
            assert_eq!(
                allowed(&s, &format!("n/{from}"), "n/t", TCP80),
                want,
                "{expr}: n/{from}"
            );
        }
    };
    check(
        "{key: tier, operator: NotIn, values: [web]}",
        &["bare", "tier-empty", "t"],
    );
    check(
        "{key: tier, operator: In, values: [web, \"\"]}",
        &["tier-empty", "tier-web"],
    );
    check("{key: tier, operator: Exists}", &["tier-empty", "tier-web"]);
    check("{key: tier, operator: DoesNotExist}", &["bare", "t"]);
}

#[test]
fn every_namespace_carries_its_name_label() {
    let s = step(&[np(
        "x",
        "p",
        "{podSelector: {}, ingress: [{from: [{namespaceSelector: \
         {matchLabels: {kubernetes.io/metadata.name: z}}}]}]}",
    )]);
    assert_eq!(
        denied(&s, TCP80),
        union([cells(&s, "x/*", "x/*"), cells(&s, "y/*", "x/*")])
    );
}

#[test]
fn self_connections_follow_the_policies() {
    // x/a admits only pod=b: its own connection to itself is denied like any other source's.
    let s = step(&[np(
        "x",
        "p",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]}",
    )]);
    assert!(!allowed(&s, "x/a", "x/a", TCP80));
    assert!(allowed(&s, "x/b", "x/b", TCP80));
    // A pod that admits its own label admits itself.
    let me = step(&[np(
        "x",
        "p",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}]}]}",
    )]);
    assert!(allowed(&me, "x/a", "x/a", TCP80));
}
