//! Real clusters: every catalogued CNI × a few scenario sets, each case running `netpolc run
//! --provider kind` (the real engine, a fresh kind cluster) and asserting the CNI's declared
//! verdict (`policies-ignored` for non-enforcing ones), with report.json and junit.xml per case
//! under `reports/e2e/<cni>/<set>/`.
//!
//! Only built with `--features e2e`. Without docker/kind/kubectl (or helm for Cilium) every case
//! FAILS naming what to install; a missing scenario set fails too. Nothing passes vacuously.
//! CI runs one CNI per job: `cargo test --features e2e --test e2e -- --test-threads=1 calico`.
#![cfg(feature = "e2e")]

use std::path::PathBuf;
use std::process::Command;

use netpol_conformance::cni::catalogue::Catalogue;
use netpol_conformance::provider::kind::check_prerequisites;
use rstest::rstest;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn cni_reaches_its_declared_verdict(
    #[values("kindnet", "calico", "cilium", "flannel")] cni: &str,
    #[values("scenarios/seed", "scenarios/upstream")] set: &str,
) {
    let cat = Catalogue::builtin().expect("catalogue");
    let entry = cat.cni(cni).unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = check_prerequisites(entry.needs_helm()).await {
        panic!("the e2e suite needs real tools; {e}");
    }
    let scenarios = root().join(set);
    let has_yaml = std::fs::read_dir(&scenarios)
        .map(|d| {
            d.filter_map(Result::ok).any(|e| {
                e.path()
                    .extension()
                    .is_some_and(|x| x == "yaml" || x == "yml")
            })
        })
        .unwrap_or(false);
    assert!(has_yaml, "no scenario files under {}", scenarios.display());

    let slug = set.replace('/', "-");
    let report_dir = root().join("reports/e2e").join(cni).join(&slug);
    let expected = entry.expected_verdict.as_str();
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .arg("run")
        .arg(&scenarios)
        .args([
            "--provider",
            "kind",
            "--cni",
            cni,
            "--expect-verdict",
            expected,
        ])
        .arg("--report-dir")
        .arg(&report_dir)
        .output()
        .expect("netpolc runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = std::fs::read_to_string(report_dir.join("report.json")).unwrap_or_else(|e| {
        panic!(
            "no report.json ({e}); exit {:?}\n{stdout}\n{stderr}",
            out.status
        )
    });
    let report: serde_json::Value = serde_json::from_str(&report).expect("report.json is JSON");
    assert!(
        report_dir.join("junit.xml").is_file(),
        "no junit.xml in {}",
        report_dir.display()
    );
    assert_eq!(
        report["verdict"], expected,
        "{cni} on {set}: verdict {} (summary {})\n{stdout}\n{stderr}",
        report["verdict"], report["summary"]
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        report["summary"]["cells"].as_u64().unwrap_or(0) > 0,
        "no cells probed"
    );
}

/// Egress to a CIDR outside the cluster, probed: `scenarios/egress/external-peer.yaml` with the
/// external peer container the kind provider starts on the kind network. Every cell from a pod
/// to `(external)/web` must have been observed (not `unsupported`), the verdict is the CNI's
/// declared one, and no peer container of the run is left behind.
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn egress_to_an_external_peer_is_probed(
    #[values("kindnet", "calico", "cilium", "flannel")] cni: &str,
) {
    let cat = Catalogue::builtin().expect("catalogue");
    let entry = cat.cni(cni).unwrap_or_else(|e| panic!("{e}"));
    let tools = check_prerequisites(entry.needs_helm())
        .await
        .unwrap_or_else(|e| panic!("the e2e suite needs real tools; {e}"));
    let scenario = root().join("scenarios/egress/external-peer.yaml");
    assert!(scenario.is_file(), "{} is missing", scenario.display());
    let report_dir = root().join("reports/e2e").join(cni).join("external-peer");
    let run_id = format!("e2e-ext-{cni}");
    let expected = entry.expected_verdict.as_str();
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .arg("run")
        .arg(&scenario)
        .args([
            "--provider",
            "kind",
            "--cni",
            cni,
            "--run-id",
            &run_id,
            "--expect-verdict",
            expected,
        ])
        .arg("--report-dir")
        .arg(&report_dir)
        .output()
        .expect("netpolc runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = std::fs::read_to_string(report_dir.join("report.json"))
        .unwrap_or_else(|e| panic!("no report.json ({e})\n{stdout}\n{stderr}"));
    let report: serde_json::Value = serde_json::from_str(&report).expect("report.json is JSON");
    assert_eq!(report["verdict"], expected, "{stdout}\n{stderr}");
    let to_peer: Vec<&serde_json::Value> = report["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["steps"].as_array().into_iter().flatten())
        .flat_map(|st| st["cells"].as_array().into_iter().flatten())
        .filter(|c| {
            c["to"] == "(external)/web"
                && c["from"]
                    .as_str()
                    .is_some_and(|f| !f.starts_with("(external)"))
        })
        .collect();
    assert!(!to_peer.is_empty(), "no cell to the external peer");
    for c in &to_peer {
        assert!(
            c["observed"].is_boolean(),
            "{cni}: a cell to the peer was not observed: {c}"
        );
    }
    // The peer container went with the run.
    let left = Command::new(&tools.runtime)
        .args(["ps", "--all", "--quiet", "--filter"])
        .arg(format!("label=netpolc.io/run-id={run_id}"))
        .output()
        .expect("the runtime runs");
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "peer containers left behind"
    );
}

/// Probing through Services on a real cluster: `scenarios/services` via `service-ip` and
/// `service-name` (the session creates the per-pod and the scenarios' Services, waits for their
/// EndpointSlices and for the gate through them, and dials ClusterIPs and cluster DNS names). The
/// verdict is the CNI's declared one, and every Service-mode cell the plan maps to a Service was
/// observed or recorded (none is `error`: endpoints, kube-proxy and DNS worked).
#[rstest]
#[tokio::test(flavor = "multi_thread")]
async fn probes_through_services_reach_the_declared_verdict(
    #[values("kindnet", "calico", "cilium", "flannel")] cni: &str,
) {
    let cat = Catalogue::builtin().expect("catalogue");
    let entry = cat.cni(cni).unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = check_prerequisites(entry.needs_helm()).await {
        panic!("the e2e suite needs real tools; {e}");
    }
    let scenarios = root().join("scenarios/services");
    assert!(scenarios.is_dir(), "{} is missing", scenarios.display());
    let report_dir = root().join("reports/e2e").join(cni).join("services");
    let expected = entry.expected_verdict.as_str();
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .arg("run")
        .arg(&scenarios)
        .args([
            "--provider",
            "kind",
            "--cni",
            cni,
            "--run-id",
            &format!("e2e-svc-{cni}"),
            "--probe-mode",
            "service-ip",
            "--probe-mode",
            "service-name",
            "--expect-verdict",
            expected,
        ])
        .arg("--report-dir")
        .arg(&report_dir)
        .output()
        .expect("netpolc runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = std::fs::read_to_string(report_dir.join("report.json"))
        .unwrap_or_else(|e| panic!("no report.json ({e})\n{stdout}\n{stderr}"));
    let report: serde_json::Value = serde_json::from_str(&report).expect("report.json is JSON");
    assert_eq!(report["verdict"], expected, "{stdout}\n{stderr}");
    let cells: Vec<&serde_json::Value> = report["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["steps"].as_array().into_iter().flatten())
        .flat_map(|st| st["cells"].as_array().into_iter().flatten())
        .collect();
    assert!(
        cells.iter().any(|c| c["via"] == "service-ip")
            && cells.iter().any(|c| c["via"] == "service-name"),
        "both modes probed"
    );
    let errors: Vec<&&serde_json::Value> =
        cells.iter().filter(|c| c["outcome"] == "error").collect();
    assert!(errors.is_empty(), "cells in error: {errors:?}");
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
}
