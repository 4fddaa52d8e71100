//! Snapshots of the user-facing outputs that need no privileges: `expect` tables and JSON,
//! `explain` (allowed and denied), `faults` and `--help`.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_netpolc");

/// Runs netpolc from the repository root (so paths in the output are stable) and returns stdout;
/// asserts the exit status.
fn netpolc(args: &[&str], status: i32) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = Command::new(BIN)
        .args(args)
        .current_dir(root)
        .output()
        .expect("netpolc runs");
    assert_eq!(
        o.status.code(),
        Some(status),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 output")
}

const SEED: &str = "scenarios/seed/frontend-backend.yaml";

#[test]
fn expect_table() {
    insta::assert_snapshot!(netpolc(&["expect", SEED], 0));
}

#[test]
fn expect_json_follows_the_contract() {
    let out = netpolc(&["expect", SEED, "--format", "json"], 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let s = &v["scenarios"][0];
    assert_eq!(s["source"], SEED);
    let step = &s["steps"][1];
    assert_eq!(step["name"], "backend-allow-frontend");
    let probe = &step["probes"][0];
    assert_eq!(
        (probe["port"].as_u64(), probe["protocol"].as_str()),
        (Some(80), Some("TCP"))
    );
    // Every pod on both axes.
    let allowed = probe["allowed"].as_object().expect("allowed map");
    assert_eq!(allowed.len(), 3);
    assert!(
        allowed
            .values()
            .all(|row| row.as_object().is_some_and(|r| r.len() == 3))
    );
    assert_eq!(allowed["shop/client"]["shop/backend-0"], false);
    assert_eq!(allowed["shop/frontend-0"]["shop/backend-0"], true);
    insta::assert_snapshot!(out);
}

#[test]
fn expect_with_a_probe_no_pod_declares() {
    let out = netpolc(
        &["expect", SEED, "--probe", "8080/UDP", "--format", "json"],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    for step in v["scenarios"][0]["steps"].as_array().expect("steps") {
        let probes = step["probes"].as_array().expect("probes");
        assert_eq!(probes.len(), 1);
        assert_eq!(probes[0]["port"], 8080);
        assert_eq!(probes[0]["protocol"], "UDP");
    }
    // backend-allow-frontend admits TCP/80 only: UDP/8080 to the backend is denied for everyone.
    let step = &v["scenarios"][0]["steps"][1]["probes"][0]["allowed"];
    assert_eq!(step["shop/frontend-0"]["shop/backend-0"], false);
}

#[test]
fn explain_allowed_and_denied() {
    let base = [
        "explain",
        SEED,
        "--step",
        "backend-allow-frontend",
        "--to",
        "shop/backend-0",
        "--probe",
        "80/TCP",
    ];
    let mut allowed = base.to_vec();
    allowed.extend(["--from", "shop/frontend-0"]);
    let out = netpolc(&allowed, 0);
    assert!(
        out.contains("ALLOWED")
            && out.contains("allowed by shop/backend-allow-frontend rule spec.ingress[0]")
    );
    insta::assert_snapshot!("explain_allowed", out);
    let mut denied = base.to_vec();
    denied.extend(["--from", "shop/client"]);
    let out = netpolc(&denied, 0);
    assert!(out.contains("DENIED") && out.contains("no peer matches shop/client"));
    insta::assert_snapshot!("explain_denied", out);
}

#[test]
fn explain_rejects_an_unknown_pod() {
    netpolc(
        &[
            "explain",
            SEED,
            "--from",
            "shop/nobody",
            "--to",
            "shop/backend-0",
            "--probe",
            "80/TCP",
        ],
        2,
    );
}

#[test]
fn faults_lists_one_per_line() {
    let out = netpolc(&["faults"], 0);
    assert!(out.lines().count() >= 10);
    for line in out.lines() {
        let (name, sentence) = line
            .split_once(char::is_whitespace)
            .expect("name then sentence");
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{line}"
        );
        assert!(sentence.trim().ends_with('.'), "{line}");
    }
    insta::assert_snapshot!(out);
}

#[test]
fn help() {
    insta::assert_snapshot!("help", netpolc(&["--help"], 0));
    insta::assert_snapshot!("run_help", netpolc(&["run", "--help"], 0));
}
