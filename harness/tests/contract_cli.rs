//! The CLI as the contract (`/work/shared/contract.md`) states it, driven through the binary: exit
//! statuses, report files, signals, privileges. The `run` tests use the local dataplane and must
//! run as root (they fail saying so otherwise); each uses its own `--run-id`, so leftovers are
//! checked for this test's run only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn harness_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn netpolc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netpolc"));
    c.current_dir(harness_dir());
    c
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests run the local dataplane and must run as root; run `sudo -E cargo test --test contract_cli`"
    );
}

fn run_id(test: &str) -> String {
    format!("qa{}-{test}", std::process::id())
}

/// A fresh, empty directory for one test's reports.
fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netpolc-contract-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Network namespaces of one run still present.
fn leftovers(run_id: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| netpol_conformance::provider::local::run_of(n) == Some(run_id))
                .collect()
        })
        .unwrap_or_default()
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json parses")
}

#[test]
fn policies_ignored_on_the_none_cni_and_the_exit_status_follows_expect_verdict() {
    require_root();
    let dir = scratch("none");
    let seed = "../scenarios/seed/frontend-backend.yaml";
    let id = run_id("none");
    let out = netpolc()
        .args(["run", seed, "-q", "--cni", "none", "--run-id", &id])
        .arg("--report-dir")
        .arg(dir.join("a"))
        .output()
        .expect("netpolc runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let r = report(&dir.join("a"));
    assert_eq!(r["verdict"], "policies-ignored");
    assert_eq!(r["provider"], "local");
    assert_eq!(r["cni"], "none");
    for f in ["junit.xml", "report.html"] {
        assert!(dir.join("a").join(f).is_file(), "{f} written");
    }
    let out = netpolc()
        .args(["run", seed, "-q", "--cni", "none", "--run-id", &id])
        .args(["--expect-verdict", "policies-ignored", "--report-dir"])
        .arg(dir.join("b"))
        .output()
        .expect("netpolc runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(
        leftovers(&id).is_empty(),
        "left behind: {:?}",
        leftovers(&id)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A plain manifest is a one-step scenario for `run` too, realised with its pods' status.podIP.
#[test]
fn a_plain_manifest_runs_conformant_with_every_cell_reported() {
    require_root();
    let dir = scratch("manifest");
    let id = run_id("manifest");
    let out = netpolc()
        .args([
            "run",
            "tests/fixtures/manifests/egress-cidr-except.yaml",
            "-q",
        ])
        .args(["--run-id", &id, "--report-dir"])
        .arg(&dir)
        .output()
        .expect("netpolc runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let r = report(&dir);
    assert_eq!(r["verdict"], "conformant");
    // 9 pods, 4 declared (port, protocol) pairs.
    assert_eq!(r["summary"]["cells"], 9 * 9 * 4);
    assert_eq!(r["summary"]["passed"], 9 * 9 * 4);
    let step = &r["scenarios"][0]["steps"][0];
    assert!(step["convergence_ms"].is_u64() && step["probe_wall_ms"].is_u64());
    let cell = step["cells"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["from"] == "x/a" && c["to"] == "y/b" && c["protocol"] == "TCP")
        })
        .expect("x/a -> y/b TCP cell");
    // y/b's status.podIP is in the except list: denied, and observed so.
    assert_eq!(cell["expected"], false);
    assert_eq!(cell["observed"], false);
    assert_eq!(cell["outcome"], "pass");
    assert!(
        leftovers(&id).is_empty(),
        "left behind: {:?}",
        leftovers(&id)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts a run long enough to interrupt, waits until it has created namespaces, sends `signals`
/// (`kill -s NAME`), and returns its exit status once it has ended.
fn interrupt(test: &str, signals: &[&str]) -> (Option<i32>, String, String) {
    require_root();
    let dir = scratch(test);
    let id = run_id(test);
    let child = netpolc()
        .args([
            "run",
            "../scenarios/upstream",
            "-q",
            "--run-id",
            &id,
            "--report-dir",
        ])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netpolc starts");
    let started = Instant::now();
    while leftovers(&id).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the run created no namespace within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    for s in signals {
        let ok = Command::new("kill")
            .args(["-s", s, &child.id().to_string()])
            .status()
            .is_ok_and(|st| st.success());
        assert!(ok, "kill -s {s} failed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("netpolc ends");
    let reports = dir.join("report.json").exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!reports, "an interrupted run writes no report");
    (out.status.code(), stderr_of(&out), id)
}

#[test]
fn sigint_mid_run_removes_everything_and_exits_130() {
    let (code, stderr, id) = interrupt("sigint", &["INT"]);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        leftovers(&id).is_empty(),
        "left behind: {:?}",
        leftovers(&id)
    );
}

#[test]
fn sigterm_mid_run_removes_everything_and_exits_143() {
    let (code, stderr, id) = interrupt("sigterm", &["TERM"]);
    assert_eq!(code, Some(143), "{stderr}");
    assert!(
        leftovers(&id).is_empty(),
        "left behind: {:?}",
        leftovers(&id)
    );
}

/// An impatient second Ctrl-C still leaves no namespace behind on the local dataplane (it used to
/// exit at once and leak the run's namespaces).
#[test]
fn a_second_signal_exits_at_once_yet_leaves_nothing() {
    let (code, stderr, id) = interrupt("double", &["INT", "TERM"]);
    assert!(matches!(code, Some(130 | 143)), "{code:?}: {stderr}");
    // Give `ip` processes started before the exit time to finish: none may have survived it.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        leftovers(&id).is_empty(),
        "left behind: {:?}",
        leftovers(&id)
    );
}

/// Without root the local run stops before creating anything, with exit 3 and what to do.
#[test]
fn not_root_is_a_missing_prerequisite_and_creates_nothing() {
    require_root();
    let dir = scratch("nobody");
    let id = run_id("nobody");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_netpolc"))
        .args(["run", "../scenarios/seed/frontend-backend.yaml", "-q"])
        .args(["--run-id", &id, "--report-dir"])
        .arg(dir.join("r"))
        .current_dir(harness_dir())
        .output()
        .expect("setpriv (util-linux) runs");
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("root"), "says it needs root: {stderr}");
    assert!(!dir.join("r").exists(), "no report directory");
    assert!(leftovers(&id).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_probe_given_twice_is_evaluated_once() {
    let out = netpolc()
        .args([
            "expect",
            "tests/fixtures/manifests/allow-all.yaml",
            "--format",
            "json",
        ])
        .args([
            "--probe", "80/TCP", "--probe", "80/TCP", "--probe", "81/UDP",
        ])
        .output()
        .expect("netpolc runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let probes: Vec<String> = v["scenarios"][0]["steps"][0]["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(probes, ["80/TCP", "81/UDP"]);
}

/// A document that is not a mapping is named by file and document, with no empty field path.
#[test]
fn a_document_that_is_not_an_object_is_bad_input_without_an_empty_field() {
    let dir = scratch("scalar");
    let f = dir.join("scalar.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\njust text\n",
    )
    .expect("write");
    let out = netpolc()
        .arg("expect")
        .arg(&f)
        .output()
        .expect("netpolc runs");
    let stderr = stderr_of(&out);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("scalar.yaml: document 2 (index 1)"),
        "{stderr}"
    );
    assert!(!stderr.contains("field :"), "empty field named: {stderr}");
}

/// An input without pods is bad input (contract "Inputs"): an empty matrix would make any
/// verdict vacuous, so there is no JSON document with empty `allowed` objects, only exit 2.
#[test]
fn an_input_without_pods_is_bad_input_not_an_empty_matrix() {
    let dir = scratch("nopods");
    let f = dir.join("nopods.yaml");
    std::fs::write(&f, "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n").expect("write");
    let out = netpolc()
        .arg("expect")
        .arg(&f)
        .args(["--format", "json", "--probe", "80/TCP"])
        .output()
        .expect("netpolc runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(stderr.contains("nopods.yaml: yields no pod"), "{stderr}");
}
