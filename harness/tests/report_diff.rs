//! `netpolc diff`: comparison of hand-built reports, the binary's exit statuses and messages,
//! and the feature heuristic applied to real `explain` output.

mod report_html_common;

use std::path::Path;
use std::process::Command;

use netpol_conformance::model::{PodRef, Probe, Protocol};
use netpol_conformance::policy::explain;
use netpol_conformance::probe::{Connectivity, Outcome};
use netpol_conformance::report::diff::{self, Feature, cell_features};
use netpol_conformance::report::{RunReport, Verdict};
use netpol_conformance::scenario::load_str;
use report_html_common::{all_outcomes, scenario, step, summarize};

/// Run B: the same scenarios on a dataplane that ignores policies (every cell observed allowed).
fn ignoring(mut r: RunReport) -> RunReport {
    r.cni = "none".into();
    r.verdict = Verdict::PoliciesIgnored;
    for c in r
        .scenarios
        .iter_mut()
        .flat_map(|s| &mut s.steps)
        .flat_map(|s| &mut s.cells)
    {
        if c.outcome == Outcome::Unsupported {
            continue;
        }
        c.observed = Some(true);
        c.connectivity = Connectivity::Connected;
        c.outcome = if c.expected == Some(true) {
            Outcome::Pass
        } else {
            Outcome::Fail
        };
    }
    r.summary = summarize(&r.scenarios);
    r
}

fn write(dir: &Path, name: &str, r: &RunReport) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(r).expect("json")).expect("write");
    p.display().to_string()
}

fn netpolc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .args(args)
        .output()
        .expect("run netpolc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn identical_runs_do_not_differ() {
    let r = all_outcomes();
    let d = diff::diff("a", &r, "b", &r);
    assert!(d.identical);
    assert_eq!(d.differing, 0);
    assert_eq!(d.cells_compared, 10);
}

#[test]
fn attempts_and_connectivity_alone_are_not_a_difference() {
    let a = all_outcomes();
    let mut b = a.clone();
    for c in b
        .scenarios
        .iter_mut()
        .flat_map(|s| &mut s.steps)
        .flat_map(|s| &mut s.cells)
    {
        if c.connectivity == Connectivity::Timeout {
            c.connectivity = Connectivity::Refused;
        }
        c.attempts += 1;
    }
    assert!(diff::diff("a", &a, "b", &b).identical);
}

#[test]
fn differing_cells_are_listed_with_both_sides_and_features() {
    let a = all_outcomes();
    let b = ignoring(a.clone());
    let d = diff::diff("a.json", &a, "b.json", &b);
    assert!(!d.identical);
    // Passes that were blocked become fails, the blocked fail becomes a pass, flaky becomes
    // pass, error becomes fail; the allowed fail of step 2 and the SCTP cell stay as they were.
    let keys: Vec<String> = d
        .differences
        .iter()
        .map(|c| format!("{}|{}/{}|{}->{}", c.step, c.port, c.protocol, c.from, c.to))
        .collect();
    insta::assert_snapshot!(keys.join("\n"));
    let flaky = d
        .differences
        .iter()
        .find(|c| c.a.as_ref().is_some_and(|s| s.outcome == Outcome::Flaky))
        .expect("the flaky cell differs (flaky vs pass)");
    assert_eq!(flaky.b.as_ref().map(|s| s.outcome), Some(Outcome::Pass));
    assert!(flaky.features.contains(&"udp".to_string()));
    assert!(flaky.features.contains(&"self-connection".to_string()));
    assert_eq!(d.differing, d.differences.len());
    assert_eq!(d.features.get("udp").copied(), Some(2));
}

#[test]
fn a_cell_missing_from_one_run_is_a_difference() {
    let a = all_outcomes();
    let mut b = a.clone();
    b.scenarios[0].steps[1].cells.clear();
    let d = diff::diff("a", &a, "b", &b);
    assert_eq!(d.differing, 1);
    assert!(d.differences[0].a.is_some() && d.differences[0].b.is_none());
    assert!(d.render_table().contains("absent"));
}

#[test]
fn cli_table_and_exit_status() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = write(dir.path(), "a.json", &all_outcomes());
    let b = write(dir.path(), "b.json", &ignoring(all_outcomes()));

    let (code, out, err) = netpolc(&["diff", &a, &a]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("identical: all 10 cells agree"), "{out}");

    let (code, out, err) = netpolc(&["diff", &a, &b]);
    assert_eq!(code, 1, "{err}");
    let out = out.replace(&dir.path().display().to_string(), "DIR");
    insta::assert_snapshot!(out);
}

#[test]
fn cli_json_is_one_document() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = write(dir.path(), "a.json", &all_outcomes());
    let b = write(dir.path(), "b.json", &ignoring(all_outcomes()));
    let (code, out, err) = netpolc(&["diff", &a, &b, "--format", "json"]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["identical"], false);
    assert_eq!(v["a"]["cni"], "nftables");
    assert_eq!(v["b"]["cni"], "none");
    assert_eq!(v["b"]["verdict"], "policies-ignored");
    assert_eq!(
        v["differing"].as_u64(),
        Some(v["differences"].as_array().map_or(0, |a| a.len() as u64))
    );
    assert!(v["differences"][0]["features"].is_array());
}

#[test]
fn cli_names_the_unreadable_or_invalid_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = write(dir.path(), "good.json", &all_outcomes());
    let missing = dir.path().join("missing.json").display().to_string();
    let (code, _, err) = netpolc(&["diff", &good, &missing]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read") && err.contains("missing.json"),
        "{err}"
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"verdict\": \"sort-of\"}").expect("write");
    let bad = bad.display().to_string();
    let (code, _, err) = netpolc(&["diff", &bad, &good]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.json is not a netpolc report.json") && err.contains("line 1"),
        "{err}"
    );
}

/// The heuristic reads what `policy::explain::render` really prints.
#[test]
fn features_from_real_explanations() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {containers: [{name: c, image: agnhost, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: y, labels: {pod: b}}
spec: {containers: [{name: c, image: agnhost, ports: [{containerPort: 80, name: http}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: out, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{port: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: in, namespace: y}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [x]}]}}]
"#;
    let loaded = load_str(yaml, "t.yaml").expect("valid scenario");
    let sc = &loaded.scenarios[0];
    let scenario_step = &sc.steps[0];
    let (from, to) = (PodRef::new("x", "a"), PodRef::new("y", "b"));
    let probe = Probe::new(80, Protocol::Tcp);
    let decision = scenario_step.explain(&from, &to, probe).expect("decision");
    let text = explain::render(&decision, scenario_step);

    let mut cell = all_outcomes().scenarios[0].steps[0].cells[0].clone();
    cell.from = from;
    cell.to = to;
    cell.explanation = Some(text.clone());
    let scenario = scenario("plain", "t.yaml", vec![]);
    let st = step("initial", None, 0, 0, vec![]);
    let got: Vec<Feature> = cell_features(&scenario, &st, &cell).into_iter().collect();
    assert_eq!(
        got,
        [
            Feature::Tcp,
            Feature::Ingress,
            Feature::Egress,
            Feature::NamespaceSelector,
            Feature::MatchExpressions,
            Feature::IpBlock,
            Feature::NamedPort
        ],
        "explanation was:\n{text}"
    );
}
