//! The JSON the nftables compiler renders is accepted by the real `nft` (`nft -j -f -`), installs
//! the chains and rules the table model holds, and replaces an installed table in place.
//! Each check runs in a throwaway network namespace of its own thread (no file in /run/netns,
//! nothing to clean up). Needs root and `nft`: without them it fails saying so.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use netpol_conformance::cni::nftables::{self, Shape, TABLE};
use netpol_conformance::model::PodRef;
use netpol_conformance::scenario::load_str;
use serde_json::Value;

const SCENARIO: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: nft-json
model:
  namespaces:
    - {name: x, labels: {ns: x}}
    - {name: y, labels: {ns: y}}
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ip: 10.1.0.1, ports: [80/TCP, {port: 8080, name: web}, 53/UDP, 9/SCTP]}
    - {namespace: x, name: b, labels: {pod: b}, ip: 10.1.0.2, ports: [80/TCP, {port: 9090, name: web}]}
    - {namespace: y, name: a, labels: {pod: a}, ip: 10.1.0.3, ports: [80/TCP, 81/TCP]}
probes: [80/TCP, 81/TCP, 8080/TCP, 53/UDP, 9/SCTP]
steps:
  - name: everything
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: ingress-a, namespace: x}
        spec:
          podSelector: {matchLabels: {pod: a}}
          ingress:
            - from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}]
              ports: [{port: web}, {port: 53, protocol: UDP}, {protocol: SCTP}]
            - from: [{ipBlock: {cidr: 10.1.0.0/24, except: [10.1.0.3/32, 10.1.0.128/25]}}]
              ports: [{port: 80, endPort: 85}]
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: also-a, namespace: x}
        spec:
          podSelector: {}
          ingress: [{from: [{podSelector: {}}]}]
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: egress-b, namespace: x}
        spec:
          podSelector: {matchLabels: {pod: b}}
          policyTypes: [Egress]
          egress:
            - to: [{podSelector: {}}]
              ports: [{port: web}]
            - to: [{ipBlock: {cidr: 10.1.0.3/32}}]
              ports: [{port: 81}, {protocol: UDP}]
"#;

fn require_root_and_nft() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads rulesets into network namespaces and must run as root"
    );
    let nft = Command::new("nft").arg("--version").output();
    assert!(
        nft.is_ok_and(|o| o.status.success()),
        "nft is missing: apt-get install -y nftables"
    );
}

/// Runs `nft` with `args` (and `stdin`) in the calling thread's namespace.
fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What a table looks like once installed: per chain its hook, priority, policy, and the
/// comment of each rule (`""` for none).
type Shown = BTreeMap<String, (Option<(String, i64, String)>, Vec<String>)>;

fn shown_from_listing(listing: &str) -> Shown {
    let doc: Value = serde_json::from_str(listing).expect("nft lists JSON");
    let mut out = Shown::new();
    for item in doc["nftables"].as_array().into_iter().flatten() {
        if let Some(c) = item.get("chain") {
            let base = c.get("hook").map(|h| {
                (
                    h.as_str().unwrap_or_default().to_string(),
                    c["prio"].as_i64().unwrap_or(i64::MIN),
                    c["policy"].as_str().unwrap_or_default().to_string(),
                )
            });
            out.entry(c["name"].as_str().unwrap_or_default().to_string())
                .or_default()
                .0 = base;
        }
        if let Some(r) = item.get("rule") {
            out.entry(r["chain"].as_str().unwrap_or_default().to_string())
                .or_default()
                .1
                .push(r["comment"].as_str().unwrap_or_default().to_string());
        }
    }
    out
}

fn shown_from_commands(doc: &Value) -> Shown {
    let mut out = Shown::new();
    for cmd in doc["nftables"].as_array().into_iter().flatten() {
        let Some(add) = cmd.get("add") else { continue };
        if let Some(c) = add.get("chain") {
            let base = c.get("hook").map(|h| {
                (
                    h.as_str().unwrap_or_default().to_string(),
                    c["prio"].as_i64().unwrap_or(i64::MIN),
                    c["policy"].as_str().unwrap_or_default().to_string(),
                )
            });
            out.entry(c["name"].as_str().unwrap_or_default().to_string())
                .or_default()
                .0 = base;
        }
        if let Some(r) = add.get("rule") {
            out.entry(r["chain"].as_str().unwrap_or_default().to_string())
                .or_default()
                .1
                .push(r["comment"].as_str().unwrap_or_default().to_string());
        }
    }
    out
}

/// In a new network namespace (this thread's own): load each document, listing the whole
/// ruleset after each.
fn load_in_fresh_netns(docs: Vec<String>) -> Result<Vec<String>, String> {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("unshare: {e}"))?;
        let mut listings = Vec::new();
        for d in &docs {
            nft(&["-j", "-f", "-"], Some(d)).map_err(|e| format!("nft -j -f -: {e}\n{d}"))?;
            listings.push(nft(&["-j", "list", "ruleset"], None)?);
        }
        Ok(listings)
    })
    .join()
    .map_err(|_| "the namespace thread panicked".to_string())?
}

#[test]
fn every_shape_of_every_pod_loads_into_real_nft_as_modelled() {
    require_root_and_nft();
    let loaded = load_str(SCENARIO, "nft-json.yaml").expect("scenario loads");
    let step = &loaded.scenarios[0].steps[0];
    let mut checked = 0;
    for bits in 0..8u8 {
        let shape = Shape {
            intersection: bits & 1 != 0,
            udp_unenforced: bits & 2 != 0,
            stateless: bits & 4 != 0,
            ..Shape::default()
        };
        let rules = nftables::compile(&step.model, &step.policies, shape);
        // Each pod's table, then the next pod's over it: the second document replaces the first.
        let pods: Vec<&PodRef> = rules.keys().collect();
        let docs: Vec<Value> = pods
            .iter()
            .enumerate()
            .map(|(i, r)| rules[*r].table(i as u16 + 1).replace_commands())
            .collect();
        let texts: Vec<String> = docs.iter().map(Value::to_string).collect();
        let listings = match load_in_fresh_netns(texts) {
            Ok(l) => l,
            Err(e) => panic!("{shape:?}: {e}"),
        };
        for ((r, doc), listing) in pods.iter().zip(&docs).zip(&listings) {
            assert_eq!(
                shown_from_listing(listing),
                shown_from_commands(doc),
                "{r} {shape:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 24);
}

/// A hostile policy name reaches nft only as a JSON string: it is stored as the rule comment
/// (cut to nft's comment limit), and whatever nft syntax it holds is never executed.
#[test]
fn hostile_policy_names_are_only_comments() {
    require_root_and_nft();
    let mut loaded = load_str(SCENARIO, "nft-json.yaml").expect("scenario loads");
    let step = &mut loaded.scenarios[0].steps[0];
    let hostile = "p\"; flush ruleset; add table ip pwned { }\n# $(touch /tmp/pwned) é";
    for p in &mut step.policies {
        p.key.name = format!("{hostile}{}", p.key.name);
    }
    let long = "x".repeat(300);
    step.policies[0].key.name = long.clone();
    let rules = nftables::compile(&step.model, &step.policies, Shape::default());
    let doc = rules[&PodRef::new("x", "a")].table(1).replace_commands();
    let listings = load_in_fresh_netns(vec![doc.to_string()]).expect("nft accepts the document");
    let shown = shown_from_listing(&listings[0]);
    let comments: Vec<&String> = shown
        .values()
        .flat_map(|(_, c)| c)
        .filter(|c| !c.is_empty())
        .collect();
    assert!(
        comments
            .iter()
            .any(|c| c.starts_with("x/p\"; flush ruleset;")),
        "{comments:?}"
    );
    assert!(
        comments
            .iter()
            .any(|c| c.len() == 128 && format!("x/{long}").starts_with(c.as_str())),
        "{comments:?}"
    );
    let listed: Value = serde_json::from_str(&listings[0]).expect("JSON");
    let tables: Vec<&Value> = listed["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("table"))
        .collect();
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert_eq!(tables[0]["name"], TABLE);
    assert!(!std::path::Path::new("/tmp/pwned").exists());
}

/// The NetworkPolicies above plus both tiers over every pod: named ports, networks over pod
/// addresses, Pass in both tiers, a fail-closed-free mix of actions.
const TIERED: &str = r#"
      - apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {name: admin}
        spec:
          tier: Admin
          priority: 3
          subject: {namespaces: {}}
          ingress:
            - {name: pass-y, action: Pass, from: [{namespaces: {matchLabels: {ns: y}}}], protocols: [{tcp: {destinationPort: {range: {start: 80, end: 81}}}}]}
            - {name: web, action: Accept, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}}], protocols: [{destinationNamedPort: web}]}
          egress:
            - {name: deny-net, action: Deny, to: [{networks: [10.1.0.0/30]}], protocols: [{udp: {destinationPort: {number: 53}}}]}
            - {name: web-out, action: Accept, to: [{namespaces: {}}], protocols: [{destinationNamedPort: web}]}
      - apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {name: baseline}
        spec:
          tier: Baseline
          priority: 3
          subject: {namespaces: {}}
          ingress:
            - {name: pass-x, action: Pass, from: [{namespaces: {matchLabels: {ns: x}}}]}
            - {name: deny-rest, action: Deny, from: [{namespaces: {}}]}
          egress:
            - {name: deny-all, action: Deny, to: [{namespaces: {}}]}
"#;

/// The tier chains, in every shape the faults give them (the NetworkPolicy-isolated path with
/// its `goto` under baseline-ignores-isolation, per-policy chains under intersection), load into
/// the real nft exactly as modelled.
#[test]
fn tier_chains_load_into_real_nft_as_modelled() {
    require_root_and_nft();
    let text = format!("{SCENARIO}{TIERED}");
    let loaded = load_str(&text, "nft-json-tiers.yaml").expect("tiered scenario loads");
    let step = &loaded.scenarios[0].steps[0];
    assert_eq!(step.cluster_policies.len(), 2);
    let mut checked = 0;
    for bits in 0..4u8 {
        let shape = Shape {
            baseline_ignores_isolation: bits & 1 != 0,
            intersection: bits & 2 != 0,
            networks_skip_pods: bits & 1 != 0,
            ..Shape::default()
        };
        let rules =
            nftables::compile_tiered(&step.model, &step.policies, &step.cluster_policies, shape);
        let pods: Vec<&PodRef> = rules.keys().collect();
        let docs: Vec<Value> = pods
            .iter()
            .enumerate()
            .map(|(i, r)| rules[*r].table(i as u16 + 1).replace_commands())
            .collect();
        let texts: Vec<String> = docs.iter().map(Value::to_string).collect();
        let listings = match load_in_fresh_netns(texts) {
            Ok(l) => l,
            Err(e) => panic!("{shape:?}: {e}"),
        };
        for ((r, doc), listing) in pods.iter().zip(&docs).zip(&listings) {
            let shown = shown_from_listing(listing);
            assert_eq!(shown, shown_from_commands(doc), "{r} {shape:?}");
            for chain in ["ingress_admin", "egress_admin", "ingress_baseline"] {
                assert!(
                    shown.get(chain).is_some_and(|(_, rules)| !rules.is_empty()),
                    "{r} {shape:?}: {chain} missing or empty"
                );
            }
            if shape.baseline_ignores_isolation && r.name == "a" && r.namespace == "x" {
                assert!(shown.contains_key("ingress_np_allowed"), "{r} {shape:?}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
}
