//! Snapshots of what `expect` and `explain` print for cluster-wide policies: the `?` of
//! implementation-defined cells in tables, and explanations naming the tier, policy, priority, rule
//! (index and name) and action that decided, and what was passed over.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_netpolc");

fn netpolc(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = Command::new(BIN)
        .args(args)
        .current_dir(root)
        .output()
        .expect("netpolc runs");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 output")
}

fn explain(file: &str, step: &str, from: &str, to: &str, probe: &str) -> String {
    let path = format!("scenarios/cluster-policies/{file}");
    netpolc(&[
        "explain", &path, "--step", step, "--from", from, "--to", to, "--probe", probe,
    ])
}

#[test]
fn expect_table_marks_implementation_defined_cells() {
    let out = netpolc(&[
        "expect",
        "scenarios/cluster-policies/same-priority-conflicts.yaml",
    ]);
    assert!(out.contains("implementation-defined (?)"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn explain_admin_deny_over_networkpolicy() {
    let out = explain(
        "tier-interplay.yaml",
        "admin-deny-beats-networkpolicy",
        "x/a",
        "w/b",
        "80/TCP",
    );
    assert!(
        out.contains(
            "ClusterNetworkPolicy/admin-w (priority 10): rule spec.ingress[0] \"deny-from-x\" Deny"
        ),
        "{out}"
    );
    assert!(out.contains("decided by the Admin tier"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn explain_pass_to_networkpolicy_then_baseline() {
    let out = explain(
        "priorities.yaml",
        "pass-moved-to-40",
        "x/a",
        "w/a",
        "80/TCP",
    );
    // Pass at 40 decides before the Deny at 50 is reached; the Baseline tier accepts.
    assert!(
        out.contains("ClusterNetworkPolicy/pass-x (priority 40)"),
        "{out}"
    );
    assert!(
        out.contains(
            "not reached (after the priority that matched): ClusterNetworkPolicy/deny-x (priority 50)"
        ),
        "evaluation stopped at 40: {out}"
    );
    assert!(out.contains("decided by the Baseline tier"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn explain_names_policies_passed_over() {
    let out = explain(
        "v1alpha1-admin-and-baseline.yaml",
        "admin-and-baseline",
        "z/b",
        "w/a",
        "80/TCP",
    );
    assert!(
        out.contains(
            "AdminNetworkPolicy/admin-w (priority 10): no ingress rule matches — passed over"
        ),
        "{out}"
    );
    assert!(out.contains("BaselineAdminNetworkPolicy/default (no priority): rule spec.ingress[2] \"deny-from-z\" Deny"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn explain_hairpin_and_conflict() {
    let hairpin = explain(
        "networks-over-pod-ips.yaml",
        "deny-all-networks",
        "w/a",
        "w/a",
        "80/TCP",
    );
    assert!(hairpin.contains("own pod IP"), "{hairpin}");
    let conflict = explain(
        "same-priority-conflicts.yaml",
        "three-policies-at-priority-10",
        "y/a",
        "w/b",
        "80/TCP",
    );
    assert!(conflict.contains("IMPLEMENTATION-DEFINED"), "{conflict}");
    insta::assert_snapshot!(format!("{hairpin}\n----\n{conflict}"));
}

#[test]
fn explain_json_carries_the_tiers() {
    let path = "scenarios/cluster-policies/same-priority-conflicts.yaml";
    let out = netpolc(&[
        "explain",
        path,
        "--step",
        "three-policies-at-priority-10",
        "--from",
        "x/a",
        "--to",
        "w/a",
        "--probe",
        "80/TCP",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["implementation_defined"], true);
    assert_eq!(v["allowed"], false);
    let t = &v["ingress"]["tiers"];
    assert_eq!(t["decided_by"], "admin");
    let conflict = &t["conflicts"][0];
    assert_eq!(conflict["tier"], "Admin");
    assert_eq!(conflict["priority"], 10);
    assert_eq!(t["admin"][0]["policy"], "ClusterNetworkPolicy/accept-x");
    assert_eq!(t["admin"][0]["matched"]["name"], "accept-from-x");
    assert_eq!(t["admin"][0]["matched"]["action"], "Accept");
}
