//! Outputs that never break: a closed stdout (`netpolc … | head -1`) changes no exit status and
//! panics nowhere; reports are written whole or not at all, and a report that cannot be written
//! (a full disk, a read-only directory, a path through a file) is exit 3 with the verdict still
//! printed; junit.xml follows `--expect-verdict`. The full disk is real: a tiny tmpfs mounted as the report directory (root needed;
//! without root these tests fail saying so, they never pass without having looked).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_netpolc");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn seed() -> String {
    root()
        .join("scenarios/seed/frontend-backend.yaml")
        .display()
        .to_string()
}

fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests must run as root (the local dataplane and tmpfs mounts need it)"
    );
    let nft = Command::new("nft").arg("--version").output();
    assert!(
        nft.is_ok_and(|o| o.status.success()),
        "nft is missing: apt-get install -y nftables"
    );
}

/// A run id of this test process (ids of concurrent test runs must not collide).
fn run_id(tag: &str) -> String {
    format!("outp-{}-{tag}", std::process::id())
}

/// The write end of a pipe whose read end is already closed: every write fails with EPIPE, as
/// when `head -1` has exited.
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    write
}

/// Runs netpolc with stdout (and, with `both`, stderr too) on a closed pipe; the other stream is
/// captured.
fn with_closed_stdout(args: &[&str], both: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdout(Stdio::from(closed_pipe()));
    if both {
        cmd.stderr(Stdio::from(closed_pipe()));
    } else {
        cmd.stderr(Stdio::piped());
    }
    cmd.output().expect("netpolc runs")
}

fn netpolc(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("netpolc runs")
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn netns_of_run(id: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("netpolc-{id}-")))
        .map(String::from)
        .collect()
}

/// A tmpfs mounted on a fresh temporary directory for the test's life; unmounted on drop, also
/// when the test fails.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "netpolc-test"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -t tmpfs -o {options} failed");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Busy (a process still has a file open): detach it now, it goes when released.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

#[test]
fn commands_that_only_print_keep_their_status_on_a_closed_stdout() {
    let seed = seed();
    let dir = tempfile::tempdir().expect("tempdir");
    // Two report files for `diff`: one run's, and the same with a different verdict.
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let report = r#"{"verdict": "conformant", "provider": "local", "cni": "nftables",
        "probe_timeout_ms": 1000,
        "summary": {"cells": 1, "passed": 1, "failed": 0, "flaky": 0, "unsupported": 0, "errors": 0},
        "scenarios": [{"name": "s", "source": "s.yaml", "steps": [{"name": "t",
          "convergence_ms": 1, "probe_wall_ms": 1, "cells": [{"from": "x/a", "to": "x/b",
          "port": 80, "protocol": "TCP", "expected": true, "observed": true,
          "outcome": "pass", "attempts": 1, "connectivity": "connected"}]}]}]}"#;
    std::fs::write(&a, report).expect("write a");
    std::fs::write(
        &b,
        report
            .replace("\"observed\": true", "\"observed\": false")
            .replace("\"pass\"", "\"fail\"")
            .replace("\"connected\"", "\"timeout\""),
    )
    .expect("write b");
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let shop = root()
        .join("scenarios/seed/manifests/shop.yaml")
        .display()
        .to_string();
    let deny = root()
        .join("harness/tests/fixtures/whatif/deny-all-shop.yaml")
        .display()
        .to_string();
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["expect", &seed], 0),
        (vec!["expect", &seed, "--format", "json"], 0),
        (
            vec![
                "explain",
                &seed,
                "--from",
                "shop/client",
                "--to",
                "shop/backend-0",
                "--probe",
                "80/TCP",
            ],
            0,
        ),
        (vec!["faults"], 0),
        (vec!["diff", &a, &a], 0),
        (vec!["diff", &a, &b], 1),
        (vec!["diff", &a, &b, "--format", "json"], 1),
        (
            vec![
                "run",
                &seed,
                "--provider",
                "kind",
                "--cni",
                "calico",
                "--dry-run",
            ],
            0,
        ),
        (vec!["--help"], 0),
        (vec!["what-if", &shop, "--add", &deny], 0),
        (vec!["what-if", &shop, "--add", &deny, "--exit-code"], 1),
        (vec!["audit", "--input", &shop], 0),
        (vec!["audit", "--input", &shop, "--format", "json"], 0),
        // Bad input stays bad input.
        (vec!["expect", "/nonexistent/netpolc-input.yaml"], 2),
    ];
    for (args, want) in cases {
        for both in [false, true] {
            let o = with_closed_stdout(&args, both);
            assert_eq!(
                o.status.code(),
                Some(want),
                "netpolc {} (stderr closed too: {both}): {}",
                args.join(" "),
                show(&o)
            );
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

#[test]
fn a_run_on_a_closed_stdout_finishes_writes_its_reports_and_keeps_its_verdict() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    for (tag, both, want) in [
        ("closed", false, 0),
        ("closedboth", true, 0),
        // The verdict mismatch is still exit 1 with nobody reading.
        ("closedno", false, 1),
    ] {
        let id = run_id(tag);
        let rd = dir.path().join(tag);
        let mut args = vec![
            "run".to_string(),
            seed(),
            "--run-id".into(),
            id.clone(),
            "--report-dir".into(),
            rd.display().to_string(),
        ];
        if tag == "closedno" {
            args.extend(["--expect-verdict".into(), "policies-ignored".into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = with_closed_stdout(&args, both);
        assert_eq!(o.status.code(), Some(want), "{tag}: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{err}");
        if !both {
            // stdout is gone: the summary, verdict and report location went to stderr.
            assert!(
                err.contains("verdict: conformant (local/nftables)"),
                "{tag}: {err}"
            );
            assert!(err.contains(&format!("reports: {}", rd.display())), "{err}");
        }
        assert_eq!(files_in(&rd), ["junit.xml", "report.html", "report.json"]);
        let json = std::fs::read_to_string(rd.join("report.json")).expect("report.json");
        let v: serde_json::Value = serde_json::from_str(&json).expect("whole JSON");
        assert_eq!(v["verdict"], "conformant");
        assert!(netns_of_run(&id).is_empty(), "{:?}", netns_of_run(&id));
    }
}

/// What a user types: the pipeline's first element keeps its status (bash's PIPESTATUS).
#[test]
fn run_piped_into_head_keeps_its_exit_status() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let id = run_id("head");
    let script = format!(
        "'{BIN}' run '{}' --run-id {id} --report-dir '{}' | head -1 >/dev/null; \
         echo \"status=${{PIPESTATUS[0]}}\"",
        seed(),
        dir.path().join("r").display()
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("bash runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("status=0"), "{}", show(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    assert_eq!(
        files_in(&dir.path().join("r")),
        ["junit.xml", "report.html", "report.json"]
    );
}

/// A full disk: a 4 KiB tmpfs cannot hold the seed's report.json. Exit 3, the verdict printed,
/// and nothing half-written (not even a temporary file) left on the disk.
#[test]
fn a_full_disk_is_exit_3_with_the_verdict_and_no_partial_report() {
    require_root();
    let disk = Tmpfs::mount("size=4k,mode=0755");
    let id = run_id("full");
    let o = netpolc(&[
        "run",
        &seed(),
        "--run-id",
        &id,
        "--report-dir",
        &disk.path().display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        out.contains("verdict: conformant (local/nftables)"),
        "{}",
        show(&o)
    );
    assert!(err.contains("the reports were not written"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        !out.contains("reports: "),
        "no claim that reports were written"
    );
    assert_eq!(files_in(disk.path()), Vec::<String>::new(), "{}", show(&o));
    assert!(netns_of_run(&id).is_empty());

    // The audit's page (10 kB for the shop manifests) is a report too: exit 3, nothing left.
    let page = disk.path().join("audit.html");
    let shop = root().join("scenarios/seed/manifests/shop.yaml");
    let o = netpolc(&[
        "audit",
        "--input",
        &shop.display().to_string(),
        "--html",
        &page.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(files_in(disk.path()), Vec::<String>::new(), "{}", show(&o));

    // The summary markdown is a report too.
    let id = run_id("fullmd");
    let roomy = tempfile::tempdir().expect("tempdir");
    let md = disk.path().join("summary.md");
    let o = netpolc(&[
        "run",
        &seed(),
        "--run-id",
        &id,
        "--report-dir",
        &roomy.path().display().to_string(),
        "--summary-md",
        &md.display().to_string(),
    ]);
    // Fits or not: 4 KiB may hold the seed's summary; if not, exit 3 and nothing there.
    match o.status.code() {
        Some(0) => assert!(md.exists()),
        Some(3) => assert_eq!(files_in(disk.path()), Vec::<String>::new()),
        other => panic!("unexpected status {other:?}: {}", show(&o)),
    }
}

/// Reports are all or nothing: on a disk with room for report.json but not for the rest, none of
/// the three appears (the library's writer, on a real tmpfs).
#[test]
fn a_disk_that_fills_up_halfway_keeps_no_report_at_all() {
    require_root();
    // A real run's reports, to size the disk by.
    let dir = tempfile::tempdir().expect("tempdir");
    let id = run_id("half");
    let full = dir.path().join("full");
    let o = netpolc(&[
        "run",
        &root().join("scenarios/seed").display().to_string(),
        "--run-id",
        &id,
        "--report-dir",
        &full.display().to_string(),
    ]);
    // Only the files matter here, whatever the verdict.
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", show(&o));
    let json = std::fs::metadata(full.join("report.json"))
        .expect("json")
        .len();
    let rest = std::fs::metadata(full.join("junit.xml"))
        .expect("junit")
        .len()
        + std::fs::metadata(full.join("report.html"))
            .expect("html")
            .len();
    let report: netpol_conformance::report::RunReport =
        serde_json::from_str(&std::fs::read_to_string(full.join("report.json")).expect("read"))
            .expect("report");
    // Room for report.json (rounded up to pages) but not for both others.
    let size_kb = json.div_ceil(4096) * 4 + 4;
    assert!(size_kb * 1024 < json + rest, "the others must not fit too");
    let disk = Tmpfs::mount(&format!("size={size_kb}k"));
    let target = disk.path().join("reports");
    let e = netpol_conformance::report::write_dir(&report, &target).expect_err("disk full");
    assert!(e.to_string().contains("No space left on device"), "{e}");
    assert_eq!(files_in(&target), Vec::<String>::new());
}

/// A directory that cannot be written (a read-only mount: root ignores permission bits) or a
/// path through a regular file: warned about before the run, exit 3 after it, verdict printed.
#[test]
fn an_unwritable_report_dir_is_exit_3_with_the_verdict() {
    require_root();
    let ro = Tmpfs::mount("size=1m,ro");
    let file = tempfile::NamedTempFile::new().expect("file");
    for (tag, dir) in [
        ("ro", ro.path().join("reports")),
        ("file", file.path().join("reports")),
    ] {
        let id = run_id(tag);
        let o = netpolc(&[
            "run",
            &seed(),
            "--run-id",
            &id,
            "--report-dir",
            &dir.display().to_string(),
        ]);
        assert_eq!(o.status.code(), Some(3), "{tag}: {}", show(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(out.contains("verdict: conformant"), "{tag}: {}", show(&o));
        assert!(err.starts_with("warning: "), "warned up front: {err}");
        assert!(err.contains("the reports were not written"), "{err}");
        assert!(!dir.exists());
        assert!(netns_of_run(&id).is_empty());
    }
}

/// The flannel job's JUnit, end to end through the CLI: a dataplane that ignores policies
/// (`--cni none`) run as `--expect-verdict policies-ignored` declares exits 0 and its junit.xml,
/// what CI publishes as a check, has no failure; the same run judged against the default
/// `conformant` exits 1 and its junit.xml fails the verdict and the cases that show it.
#[test]
fn junit_of_a_run_is_judged_against_its_expect_verdict() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let failures = |rd: &Path| -> (u64, Vec<String>) {
        let xml = std::fs::read_to_string(rd.join("junit.xml")).expect("junit.xml");
        let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        let total = doc
            .root_element()
            .attribute("failures")
            .and_then(|f| f.parse().ok())
            .expect("failures count");
        let failed: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .filter(|n| n.children().any(|c| c.has_tag_name("failure")))
            .map(|n| n.attribute("name").unwrap_or_default().to_string())
            .collect();
        assert_eq!(total, failed.len() as u64, "{xml}");
        (total, failed)
    };
    for (tag, expect, status) in [
        ("ignored", Some("policies-ignored"), 0),
        ("judged", None, 1),
    ] {
        let id = run_id(tag);
        let rd = dir.path().join(tag);
        let mut args = vec![
            "run".to_string(),
            seed(),
            "--cni".into(),
            "none".into(),
            "--run-id".into(),
            id.clone(),
            "--report-dir".into(),
            rd.display().to_string(),
        ];
        if let Some(v) = expect {
            args.extend(["--expect-verdict".into(), v.into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = netpolc(&args);
        assert_eq!(o.status.code(), Some(status), "{tag}: {}", show(&o));
        let json = std::fs::read_to_string(rd.join("report.json")).expect("report.json");
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["verdict"], "policies-ignored", "{tag}");
        assert!(
            v["summary"]["failed"].as_u64() > Some(0),
            "the oracle denies some cells"
        );
        let (total, failed) = failures(&rd);
        match expect {
            Some(_) => assert_eq!(
                total, 0,
                "declared non-enforcement fails nothing: {failed:?}"
            ),
            None => {
                assert!(failed.contains(&"verdict".to_string()), "{failed:?}");
                assert!(total > 1, "the verdict and the cases: {failed:?}");
            }
        }
        assert!(netns_of_run(&id).is_empty(), "{:?}", netns_of_run(&id));
    }
}
