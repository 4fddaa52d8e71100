//! `netpolc what-if` and `netpolc audit --input` as a user runs them: outputs (snapshots), JSON
//! shape, exit statuses and refusals.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_netpolc");
const SHOP: &str = "scenarios/seed/manifests/shop.yaml";
const SCRAPE: &str = "harness/tests/fixtures/whatif/monitoring-may-scrape-db.yaml";
const DENY: &str = "harness/tests/fixtures/whatif/deny-all-shop.yaml";

/// Runs netpolc from the repository root, so paths in outputs are stable.
fn netpolc(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("netpolc runs")
}

fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn replacing_a_policy_lists_the_one_group_that_flips() {
    let out = ok(&netpolc(&["what-if", SHOP, "--add", SCRAPE]));
    insta::assert_snapshot!(out);
    assert!(
        out.contains("denied -> allowed  monitoring/prometheus -> shop/db"),
        "{out}"
    );
}

#[test]
fn what_if_json_lists_every_flipped_pod_pair_with_both_decisions() {
    let o = netpolc(&[
        "what-if",
        SHOP,
        "--add",
        DENY,
        "--delete",
        "shop/db-from-web",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&ok(&o)).expect("json");
    assert_eq!(v["added"], serde_json::json!(["shop/deny-all"]));
    assert_eq!(v["deleted"], serde_json::json!(["shop/db-from-web"]));
    let mut listed = 0;
    for p in v["probes"].as_array().expect("probes") {
        let mut n = 0;
        for f in p["flips"].as_array().expect("flips") {
            assert_ne!(f["before"], f["after"]);
            assert!(f["decision_before"]["allowed"] == f["before"]);
            assert!(f["decision_after"]["allowed"] == f["after"]);
            n += f["cells"].as_array().map_or(0, Vec::len);
        }
        assert_eq!(p["flipped_cells"], n);
        listed += n;
    }
    assert_eq!(v["flipped_cells"], listed);
    assert!(listed > 0);
}

#[test]
fn exit_code_reports_flips_and_bad_changes_are_refused() {
    assert_eq!(
        netpolc(&["what-if", SHOP, "--add", DENY, "--exit-code"])
            .status
            .code(),
        Some(1)
    );
    // Re-applying the state's own policies replaces each with itself: nothing flips. The pods of
    // that file are ignored, with a warning.
    let o = netpolc(&["what-if", SHOP, "--add", SHOP, "--exit-code"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("only NetworkPolicies are taken from --add files")
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 cells flip in total"));
    let o = netpolc(&["what-if", SHOP, "--delete", "shop/nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the state has no NetworkPolicy shop/nope")
    );
    assert_eq!(
        netpolc(&["what-if", SHOP]).status.code(),
        Some(2),
        "a change is required"
    );
    assert_eq!(
        netpolc(&["what-if", SHOP, "--delete", "no-namespace"])
            .status
            .code(),
        Some(2)
    );
    // Names are validated as everywhere else, and printed escaped.
    let o = netpolc(&["what-if", SHOP, "--delete", "shop/x\n;id"]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(r#"--delete: NetworkPolicy name "x\n;id" is invalid"#),
        "{stderr}"
    );
    let o = netpolc(&[
        "what-if",
        SHOP,
        "--add",
        "scenarios/seed/frontend-backend.yaml",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a scenario file"));
}

#[test]
fn audit_of_manifests_reads_per_workload() {
    insta::assert_snapshot!(ok(&netpolc(&["audit", "--input", SHOP])));
}

#[test]
fn audit_input_json_matches_expect() {
    let a: Value = serde_json::from_str(&ok(&netpolc(&[
        "audit", "--input", SHOP, "--format", "json",
    ])))
    .expect("json");
    let e: Value =
        serde_json::from_str(&ok(&netpolc(&["expect", SHOP, "--format", "json"]))).expect("json");
    let mut class_of = std::collections::BTreeMap::new();
    for c in a["classes"].as_array().expect("classes") {
        for p in c["pods"].as_array().expect("pods") {
            class_of.insert(
                p.as_str().unwrap_or_default().to_string(),
                c["name"].as_str().unwrap_or_default().to_string(),
            );
        }
    }
    for (ep, ap) in e["scenarios"][0]["steps"][0]["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .zip(a["probes"].as_array().expect("probes"))
    {
        for (from, row) in ep["allowed"].as_object().expect("row") {
            for (to, v) in row.as_object().expect("row") {
                assert_eq!(
                    v, &ap["allowed"][&class_of[from]][&class_of[to]],
                    "{from} -> {to}"
                );
            }
        }
    }
}
