//! `netpolc run` end to end on the local dataplane (real namespaces, nftables, packets), as a user
//! runs it: the shipped scenarios are conformant on `nftables`, `none` is recognised as ignoring
//! policies, every fault is caught by some shipped scenario (mutation score), and an interrupted run
//! leaves nothing behind. Needs root and `nft`: without them these tests fail saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_netpolc");

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn require_root() {
    let uid = nix::unistd::Uid::effective();
    assert!(
        uid.is_root(),
        "these tests must run as root (the local dataplane creates network namespaces)"
    );
    let nft = Command::new("nft").arg("--version").output();
    assert!(
        nft.is_ok_and(|o| o.status.success()),
        "nft is missing: apt-get install -y nftables"
    );
}

fn netpolc(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("netpolc runs")
}

fn report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json is JSON")
}

fn netns_of_run(run_id: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        // Exactly this run's names (`netpolc-<run>--s<n>-…`), never a run whose id starts so.
        .filter(|n| netpol_conformance::provider::local::run_of(n) == Some(run_id))
        .map(String::from)
        .collect()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout (tail)\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn shipped_scenarios_are_conformant_on_nftables() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let rd = dir.path().join("r");
    let sc = scenarios();
    let o = netpolc(&[
        "run",
        sc.to_str().expect("utf8"),
        "--report-dir",
        rd.to_str().expect("utf8"),
        "--run-id",
        "lr-conf",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r = report(&rd);
    assert_eq!(r["verdict"], "conformant");
    assert_eq!(r["provider"], "local");
    assert_eq!(r["cni"], "nftables");
    let s = &r["summary"];
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("summary.{k}"));
    assert_eq!(n("failed"), 0);
    assert_eq!(n("errors"), 0);
    assert!(
        n("passed") > 5000,
        "the suite probes thousands of cells: {s}"
    );
    assert_eq!(
        n("cells"),
        n("passed") + n("failed") + n("flaky") + n("unsupported") + n("errors")
    );
    // Every cell of the report is accounted for, and SCTP is never passed or failed on this kernel.
    let mut cells = 0;
    for sc in r["scenarios"].as_array().expect("scenarios") {
        for st in sc["steps"].as_array().expect("steps") {
            for c in st["cells"].as_array().expect("cells") {
                cells += 1;
                if c["protocol"] == "SCTP" {
                    assert_eq!(c["outcome"], "unsupported", "{c}");
                } else {
                    assert_eq!(c["observed"], c["expected"], "{c}");
                }
            }
        }
    }
    assert_eq!(cells, n("cells"));
    assert!(dir.path().join("r/junit.xml").exists() && dir.path().join("r/report.html").exists());
    assert!(
        netns_of_run("lr-conf").is_empty(),
        "namespaces left: {:?}",
        netns_of_run("lr-conf")
    );
}

#[test]
fn seed_on_the_none_cni_is_policies_ignored() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = scenarios().join("seed/frontend-backend.yaml");
    let seed = seed.to_str().expect("utf8");
    let rd = dir.path().join("a");
    let o = netpolc(&[
        "run",
        seed,
        "--cni",
        "none",
        "--report-dir",
        rd.to_str().expect("utf8"),
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "verdict differs from the default expectation: {}",
        show(&o)
    );
    assert_eq!(report(&rd)["verdict"], "policies-ignored");
    let rd = dir.path().join("b");
    let o = netpolc(&[
        "run",
        seed,
        "--cni",
        "none",
        "--expect-verdict",
        "policies-ignored",
        "--report-dir",
        rd.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r = report(&rd);
    assert_eq!(r["verdict"], "policies-ignored");
    assert!(r["summary"]["failed"].as_u64().unwrap_or(0) > 0);
}

/// Every fault must make the shipped scenarios non-conformant: the mutation score is printed and
/// must be 100%.
#[test]
fn every_fault_is_caught_by_the_shipped_scenarios() {
    require_root();
    let list = netpolc(&["faults"]);
    assert_eq!(list.status.code(), Some(0));
    let faults: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    assert!(faults.len() >= 10, "faults: {faults:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = scenarios();
    // Two runs at a time; short step timeouts: the local dataplane applies a step atomically, so a
    // wrong matrix does not converge by waiting.
    let results: Vec<(String, Value, Output, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = faults
            .chunks(faults.len().div_ceil(2))
            .enumerate()
            .map(|(k, chunk)| {
                let (dir, sc) = (dir.path(), &sc);
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, f)| {
                            let rd = dir.join(f);
                            let run_id = format!("lr-fault-{k}-{i}");
                            let o = netpolc(&[
                                "run",
                                sc.to_str().expect("utf8"),
                                "--fault",
                                f,
                                "--probe-timeout-ms",
                                "500",
                                "--step-timeout-ms",
                                "1000",
                                "--run-id",
                                &run_id,
                                "--quiet",
                                "--report-dir",
                                rd.to_str().expect("utf8"),
                            ]);
                            (f.clone(), report(&rd), o, netns_of_run(&run_id))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("fault runs"))
            .collect()
    });
    let mut missed = Vec::new();
    for (f, r, o, left) in &results {
        let failed = r["summary"]["failed"].as_u64().unwrap_or(0);
        println!(
            "fault {f:<26} verdict {:<16} failed cells {failed:>4}",
            r["verdict"].as_str().unwrap_or("?")
        );
        if r["verdict"] != "non-conformant" {
            missed.push(format!("{f}: {}", show(o)));
        }
        assert!(left.is_empty(), "{f}: namespaces left: {left:?}");
    }
    let caught = faults.len() - missed.len();
    println!(
        "mutation score: {caught}/{} faults caught ({:.0}%)",
        faults.len(),
        100.0 * caught as f64 / faults.len() as f64
    );
    assert!(
        missed.is_empty(),
        "faults not caught:\n{}",
        missed.join("\n")
    );
}

fn interrupt(signal: nix::sys::signal::Signal, run_id: &str, want: i32) {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = scenarios();
    let child = Command::new(BIN)
        .args([
            "run",
            sc.to_str().expect("utf8"),
            "--run-id",
            run_id,
            "--report-dir",
        ])
        .arg(dir.path().join("r"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netpolc starts");
    // Wait until the run has created namespaces, then interrupt it mid-run.
    let start = Instant::now();
    while netns_of_run(run_id).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the run created no namespaces"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !netns_of_run(run_id).is_empty(),
        "the run is still going when interrupted"
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, signal).expect("signal sent");
    let out = child.wait_with_output().expect("netpolc exits");
    assert_eq!(
        out.status.code(),
        Some(want),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = netns_of_run(run_id);
    assert!(left.is_empty(), "left behind after {signal}: {left:?}");
}

#[test]
fn sigint_mid_run_leaves_no_namespace_behind() {
    interrupt(nix::sys::signal::Signal::SIGINT, "lr-sigint", 130);
}

#[test]
fn sigterm_mid_run_leaves_no_namespace_behind() {
    interrupt(nix::sys::signal::Signal::SIGTERM, "lr-sigterm", 143);
}

/// `--enforce-delay-ms`: the nftables dataplane installs each step's changes 1.5 s late, like a
/// slow CNI. The run waits for it (the default step timeout grows by the delay), stays
/// conformant, and the delay shows in `convergence_ms` of every step with denials.
#[test]
fn a_slow_dataplane_is_waited_for_and_its_delay_measured() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = scenarios().join("seed/frontend-backend.yaml");
    let rd = dir.path().join("r");
    let o = netpolc(&[
        "run",
        seed.to_str().expect("utf8"),
        "--enforce-delay-ms",
        "1500",
        "--run-id",
        "kind-delay",
        "--report-dir",
        rd.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r = report(&rd);
    assert_eq!(r["verdict"], "conformant");
    assert_eq!(r["step_timeout_ms"], 4500);
    assert_eq!(r["environment"]["enforce_delay_ms"], "1500");
    let steps = r["scenarios"][0]["steps"].as_array().expect("steps");
    let with_denials: Vec<&Value> = steps
        .iter()
        .filter(|s| {
            s["cells"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["expected"] == false))
        })
        .collect();
    assert!(!with_denials.is_empty());
    // `convergence_ms` is timed to the start of the first matching pass, so it may fall short
    // of the delay by at most that pass's wall time (the contract's upper bound is their sum).
    for s in with_denials {
        let c = s["convergence_ms"].as_u64().expect("converged");
        let wall = s["probe_wall_ms"].as_u64().expect("wall");
        assert!(
            c + wall >= 1500 && c >= 500,
            "{}: {c} + {wall} ms",
            s["name"]
        );
    }
    // The delay is refused elsewhere: it is a property of the local dataplane.
    let o = netpolc(&[
        "run",
        seed.to_str().expect("utf8"),
        "--provider",
        "kind",
        "--enforce-delay-ms",
        "1500",
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

/// A dataplane that enforces nothing is waited for one step timeout, not one per step: with an
/// 8 s step timeout the seed ends in about 8 s instead of 16 s, `policies-ignored`, and the
/// report says the later steps were not waited for.
#[test]
fn the_none_cni_is_not_waited_for_on_every_step() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = scenarios().join("seed/frontend-backend.yaml");
    let rd = dir.path().join("r");
    let started = Instant::now();
    let o = netpolc(&[
        "run",
        seed.to_str().expect("utf8"),
        "--cni",
        "none",
        "--step-timeout-ms",
        "8000",
        "--expect-verdict",
        "policies-ignored",
        "--run-id",
        "kind-nowait",
        "--report-dir",
        rd.to_str().expect("utf8"),
    ]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r = report(&rd);
    assert_eq!(r["verdict"], "policies-ignored");
    assert!(took < Duration::from_secs(14), "{took:?}");
    let steps = r["scenarios"][0]["steps"].as_array().expect("steps");
    let waited: Vec<u64> = steps
        .iter()
        .map(|s| s["passes"].as_u64().unwrap_or(0))
        .collect();
    assert!(waited.iter().filter(|&&p| p > 1).count() == 1, "{waited:?}");
    assert!(
        r["warnings"].as_array().expect("warnings").iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("without waiting for convergence"))),
        "{}",
        r["warnings"]
    );
}
