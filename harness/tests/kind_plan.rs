//! `--dry-run` plans of the kind and kubeconfig providers: deterministic, complete for every
//! catalogued CNI, valid multi-document YAML, and touching nothing.

use netpol_conformance::cni::catalogue::Catalogue;
use netpol_conformance::provider::ProviderError;
use netpol_conformance::provider::kind::{self, KindOptions};
use netpol_conformance::provider::kubeconfig::{self, KubeconfigOptions};
use netpol_conformance::scenario::{Scenario, load_str};

/// Seed-like: two namespaces (one called `y`, the YAML 1.1 boolean trap), bare pods and a
/// Deployment, a named port, a selector on the namespace name label, then a relabel and a delete.
const SEED: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: seed-like
model:
  namespaces:
    - {name: x, labels: {team: a}}
    - {name: y, labels: {team: b}}
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ports: [80/TCP, {port: 53, protocol: UDP, name: dns}]}
    - {namespace: y, name: b, labels: {pod: b}, ports: [80/TCP]}
  deployments:
    - {namespace: y, name: web, replicas: 2, labels: {app: web}, ports: [{port: 8080, name: http}]}
steps:
  - name: initial
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: allow-x, namespace: y}
        spec:
          podSelector: {}
          ingress:
            - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}}]
              ports: [{port: http}]
  - name: relabel
    labelPods: [{pod: y/b, set: {pod: bb}}]
  - name: delete
    delete: [y/allow-x]
"#;

fn seed() -> Vec<Scenario> {
    match load_str(SEED, "seed-like.yaml") {
        Ok(l) => l.scenarios,
        Err(e) => panic!("{e:?}"),
    }
}

fn kind_plan(cni: &str) -> String {
    match kind::dry_run(&seed(), &KindOptions::new("snap", cni)) {
        Ok(p) => p,
        Err(e) => panic!("{cni}: {e}"),
    }
}

#[test]
fn kind_plan_snapshot() {
    insta::assert_snapshot!("kind_calico_seed", kind_plan("calico"));
}

#[test]
fn kubeconfig_plan_snapshot() {
    let plan = kubeconfig::dry_run(
        &seed(),
        &KubeconfigOptions::new("snap", Some("prod".into())),
    )
    .expect("plan");
    insta::assert_snapshot!("kubeconfig_seed", plan);
}

#[test]
fn plans_are_deterministic() {
    assert_eq!(kind_plan("cilium"), kind_plan("cilium"));
}

#[test]
fn every_catalogued_cni_produces_a_complete_plan() {
    let cat = Catalogue::builtin().expect("catalogue");
    for cni in &cat.cnis {
        let plan = kind_plan(&cni.name);
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&plan)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", cni.name));
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds[0], "Plan", "{}", cni.name);
        assert_eq!(kinds[1], "Cluster", "{}", cni.name);
        assert_eq!(
            kinds.iter().filter(|k| **k == "StepPlan").count(),
            3,
            "{}",
            cni.name
        );
        for k in ["Namespace", "Pod", "Deployment", "NetworkPolicy"] {
            assert!(kinds.contains(&k), "{}: no {k} in {kinds:?}", cni.name);
        }
        let header = &docs[0];
        assert_eq!(header["cni"]["version"], cni.version.as_str());
        assert_eq!(
            header["cni"]["expectedVerdict"],
            cni.expected_verdict.as_str()
        );
        let install = header["cni"]["install"].as_array().expect("install list");
        assert_eq!(install.len(), cni.install.len(), "{}", cni.name);
        for (doc, step) in install.iter().zip(&cni.install) {
            let src = step.source();
            assert_eq!(doc["url"], src.url.as_str());
            assert_eq!(doc["sha256"].as_str(), src.sha256.as_deref());
        }
        assert_eq!(
            docs[1]["networking"]["podSubnet"].as_str(),
            Some(cni.pod_subnet.to_string().as_str())
        );
        // Probe commands are part of the plan (shell-quoted: the placeholder is not a plain word).
        assert!(
            plan.contains(
                "/agnhost connect '{ip=netpolc-snap--0-y/b}:80' --protocol=tcp --timeout=3s"
            ),
            "{}",
            cni.name
        );
    }
}

#[test]
fn namespace_y_stays_a_string() {
    let plan = kind_plan("kindnet");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&plan).expect("yaml");
    let step = docs
        .iter()
        .find(|d| d["kind"] == "StepPlan")
        .expect("step plan");
    assert_eq!(step["namespaces"]["y"], "netpolc-snap--0-y");
    let ns = docs
        .iter()
        .find(|d| d["kind"] == "Namespace" && d["metadata"]["labels"]["netpolc.io/name"] == "y")
        .expect("namespace y");
    assert_eq!(ns["metadata"]["name"], "netpolc-snap--0-y");
}

#[test]
fn unknown_cni_is_bad_input_naming_the_known_ones() {
    match kind::dry_run(&seed(), &KindOptions::new("r", "weave")) {
        Err(ProviderError::InvalidInput(m)) => {
            assert!(m.contains("kindnet, calico, cilium, flannel"), "{m}")
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn cilium_plan_marks_sctp_cells_unsupported() {
    let sctp = SEED.replace("80/TCP, {port: 53", "80/TCP, 9/SCTP, {port: 53");
    let scenarios = load_str(&sctp, "s.yaml").expect("loads").scenarios;
    let plan = kind::dry_run(&scenarios, &KindOptions::new("r", "cilium")).expect("plan");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&plan).expect("yaml");
    let step = docs
        .iter()
        .find(|d| d["kind"] == "StepPlan")
        .expect("step plan");
    let not_judged = step["probes"]["notJudged"].as_array().expect("notJudged");
    let sctp: Vec<&serde_json::Value> = not_judged
        .iter()
        .filter(|c| c["cell"].as_str().is_some_and(|s| s.ends_with("9/SCTP")))
        .collect();
    assert_eq!(sctp.len(), 16, "every SCTP cell of 4 pods");
    assert!(sctp.iter().all(|c| {
        c["unsupported"]
            .as_str()
            .is_some_and(|r| r.contains("sctp.enabled"))
    }));
    assert!(!plan.contains("--protocol=sctp"));
    let calico = kind::dry_run(&scenarios, &KindOptions::new("r", "calico")).expect("plan");
    assert!(calico.contains("--protocol=sctp"));
}
