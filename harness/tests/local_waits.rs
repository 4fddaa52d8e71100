//! How long steps wait, for real on the local dataplane (issue 10.4): a dataplane that converges
//! slowly (`--enforce-delay-ms`) is still judged conformant, with its delay in `convergence_ms`;
//! one that enforces nothing (`--cni none`) stops costing a full step timeout per step once it has
//! blocked nothing for a whole step timeout. The same policy under paused time, with exact
//! figures, is in `engine_run.rs`. Needs root and `nft`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_netpolc");

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
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

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn steps(r: &Value) -> Vec<&Value> {
    r["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .flat_map(|s| s["steps"].as_array().expect("steps"))
        .collect()
}

#[test]
fn a_slowly_converging_dataplane_is_conformant_and_its_delay_is_measured() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let rd = dir.path().join("r");
    let seed = scenarios().join("seed/frontend-backend.yaml");
    let o = netpolc(&[
        "run",
        seed.to_str().expect("utf8"),
        "--enforce-delay-ms",
        "1500",
        "--report-dir",
        rd.to_str().expect("utf8"),
        "--run-id",
        "engine-lw-delay",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r = report(&rd);
    assert_eq!(r["verdict"], "conformant");
    // The default step timeout makes room for the delay: 3000 ms + 1500 ms.
    assert_eq!(r["step_timeout_ms"], 4500);
    assert_eq!(r["environment"]["enforce_delay_ms"], "1500");
    assert_eq!(r["summary"]["flaky"], 0);
    let st = steps(&r);
    assert_eq!(st.len(), 4);
    for s in &st {
        assert_eq!(s["converged"], true, "{s}");
        assert_eq!(s["wait"], "full", "{s}");
    }
    // Steps 2-4 change what is allowed; their changes land 1.5 s after each step starts. The
    // first matching pass may start a little before (a blocked probe's SYN is resent a second
    // later and gets through), so convergence plus one pass bounds the delay from above.
    for s in &st[1..] {
        let c = s["convergence_ms"].as_u64().expect("converged");
        let wall = s["probe_wall_ms"].as_u64().expect("wall");
        assert!(
            c + wall >= 1400 && c < 4500,
            "{}: {c} ms + {wall} ms",
            s["name"]
        );
    }
}

#[test]
fn a_dataplane_that_enforces_nothing_stops_waiting_after_one_step_timeout() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let rd = dir.path().join("r");
    let upstream = scenarios().join("upstream");
    let step_timeout = 8000u64;
    let o = netpolc(&[
        "run",
        upstream.to_str().expect("utf8"),
        "--cni",
        "none",
        "--step-timeout-ms",
        &step_timeout.to_string(),
        "--expect-verdict",
        "policies-ignored",
        "--report-dir",
        rd.to_str().expect("utf8"),
        "--run-id",
        "engine-lw-none",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r = report(&rd);
    assert_eq!(r["verdict"], "policies-ignored");
    let e = &r["enforcement"];
    assert_eq!(e["window_ms"], step_timeout);
    assert!(e["first_seen_ms"].is_null(), "{e}");
    let st = steps(&r);
    let shortened: Vec<&&Value> = st.iter().filter(|s| s["wait"] == "shortened").collect();
    assert_eq!(e["shortened_steps"].as_u64(), Some(shortened.len() as u64));
    assert!(shortened.len() > 16, "{} shortened", shortened.len());
    // Only steps already running when the window closed waited (nearly) a whole step timeout:
    // at most one per session running at once (16 on the local dataplane).
    let waited_in_full = st
        .iter()
        .filter(|s| s["wait"] == "full" && s["converged"] == false)
        .count();
    assert!(
        waited_in_full <= 16,
        "{waited_in_full} steps waited in full"
    );
    assert!(
        r["warnings"].as_array().expect("warnings").iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("judged after one pass"))),
        "{}",
        r["warnings"]
    );
    // Without shortening, every step with a denied cell would wait its 8 s.
    let denied_steps = st
        .iter()
        .filter(|s| {
            s["cells"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["expected"] == false))
        })
        .count() as u64;
    println!(
        "{} steps with denials would wait {} s without shortening; the run took {} ms",
        denied_steps,
        denied_steps * step_timeout / 16 / 1000,
        r["duration_ms"]
    );
}

#[test]
fn new_run_options_are_checked() {
    let seed = scenarios().join("seed/frontend-backend.yaml");
    let seed = seed.to_str().expect("utf8");
    let o = netpolc(&["run", seed, "--sample", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let o = netpolc(&[
        "run",
        seed,
        "--provider",
        "kind",
        "--enforce-delay-ms",
        "10",
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("local provider only"));
    let o = netpolc(&["run", seed, "--sample-seed", "3"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a seed without --sample: {}",
        show(&o)
    );
}

#[test]
fn a_sampled_run_reports_its_sample_and_counts_the_rest_apart() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let rd = dir.path().join("r");
    let file = scenarios().join("upstream");
    let o = netpolc(&[
        "run",
        file.to_str().expect("utf8"),
        "--sample",
        "12",
        "--sample-seed",
        "99",
        "--report-dir",
        rd.to_str().expect("utf8"),
        "--run-id",
        "engine-lw-sample",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r = report(&rd);
    assert_eq!(r["verdict"], "conformant");
    assert_eq!(r["sample"]["seed"], 99);
    assert_eq!(r["sample"]["cells_per_step"], 12);
    let mut probed = 0;
    let mut left_out = 0;
    for s in steps(&r) {
        let smp = &s["sample"];
        let cells = s["cells"].as_array().expect("cells").len() as u64;
        assert_eq!(smp["sampled"].as_u64(), Some(cells), "{smp}");
        assert_eq!(
            smp["planned"].as_u64(),
            Some(cells + smp["unsampled"].as_u64().expect("unsampled"))
        );
        probed += cells;
        left_out += smp["unsampled"].as_u64().expect("unsampled");
    }
    assert_eq!(r["summary"]["cells"].as_u64(), Some(probed));
    assert_eq!(r["summary"]["unsampled"].as_u64(), Some(left_out));
    assert!(
        left_out > probed,
        "most of the upstream matrices are left out"
    );
}
