//! Runs are isolated and cleanup is safe, with real `netpolc` processes on the real local
//! dataplane (issue 9): two runs whose ids prefix each other run at once and neither touches the
//! other; a plain `netpolc cleanup` during a live run leaves it and its verdict intact; a run
//! killed with SIGKILL is removed completely by a later `netpolc cleanup`; `cleanup --run-id A`
//! never touches run `A-s1`.
//!
//! Needs root and `nft` (fails saying so otherwise). Every run id starts with `iso<pid>`, and the
//! plain cleanups these tests run remove only dead runs holding a lease — by construction never a
//! live run of another test or of another user of this machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use netpol_conformance::provider::lease::LeaseDir;
use netpol_conformance::provider::local;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_netpolc");

/// Tests that run a plain cleanup, or leave a dead run for one, take turns: a plain cleanup of
/// one test would rightly remove the dead run another test is about to examine.
static PLAIN_CLEANUPS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    PLAIN_CLEANUPS.lock().unwrap_or_else(|p| p.into_inner())
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests must run as root (the local dataplane creates network namespaces)"
    );
    let nft = Command::new("nft").arg("--version").output();
    assert!(
        nft.is_ok_and(|o| o.status.success()),
        "nft is missing: apt-get install -y nftables"
    );
}

fn id(test: &str) -> String {
    format!("iso{}-{test}", std::process::id())
}

fn scenario(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

/// The shipped upstream cases take several seconds: long enough for other things to happen
/// during the run.
fn long() -> String {
    scenario("upstream")
}

fn short() -> String {
    scenario("seed/frontend-backend.yaml")
}

fn start(paths: &str, run_id: &str, reports: &Path) -> Child {
    Command::new(BIN)
        .args(["run", paths, "-q", "--run-id", run_id, "--report-dir"])
        .arg(reports)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netpolc starts")
}

fn cleanup(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("cleanup")
        .args(["--provider", "local"])
        .args(args)
        .output()
        .expect("netpolc cleanup runs")
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn netns_of(run_id: &str) -> Vec<String> {
    local::run_netns(run_id).expect("namespaces listed")
}

fn wait_for_netns(run_id: &str) {
    let start = Instant::now();
    while netns_of(run_id).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "run {run_id} created no namespace"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lease_file(run_id: &str) -> PathBuf {
    LeaseDir::default_for_user().file_for(run_id)
}

fn verdict(reports: &Path) -> Value {
    let text = std::fs::read_to_string(reports.join("report.json")).expect("report.json written");
    let v: Value = serde_json::from_str(&text).expect("report.json parses");
    v["verdict"].clone()
}

/// Waits for a run and checks it ended as it should: exit 0, `conformant`, with nothing of it
/// and no lease left.
fn finish_conformant(child: Child, run_id: &str, reports: &Path) {
    let out = child.wait_with_output().expect("netpolc exits");
    assert_eq!(out.status.code(), Some(0), "run {run_id}: {}", show(&out));
    assert_eq!(verdict(reports), "conformant", "run {run_id}");
    assert!(
        netns_of(run_id).is_empty(),
        "{run_id} left {:?}",
        netns_of(run_id)
    );
    assert!(!lease_file(run_id).exists(), "{run_id} left its lease");
}

/// Run `A` ending normally used to delete run `A-s1`'s namespaces (its close swept every name
/// starting `netpolc-A-s…`). Here `A-s1` runs long, `A` runs and ends in the middle of it, and
/// `A-s1` must still own every namespace and reach its verdict.
#[test]
fn runs_whose_ids_prefix_each_other_run_side_by_side() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, a_s1) = (id("a"), format!("{}-s1", id("a")));
    let long_run = start(&long(), &a_s1, &tmp.path().join("a-s1"));
    wait_for_netns(&a_s1);
    let short_run = start(&short(), &a, &tmp.path().join("a"));
    wait_for_netns(&a);
    // While both live, each sees only its own namespaces.
    assert!(netns_of(&a).iter().all(|n| !netns_of(&a_s1).contains(n)));
    let out = short_run.wait_with_output().expect("short run exits");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(verdict(&tmp.path().join("a")), "conformant");
    assert!(netns_of(&a).is_empty(), "{:?}", netns_of(&a));
    // `A` is over; `A-s1` is still running with its namespaces.
    let still = netns_of(&a_s1);
    assert!(
        !still.is_empty(),
        "run {a_s1} lost its namespaces when run {a} ended (or ended before it)"
    );
    finish_conformant(long_run, &a_s1, &tmp.path().join("a-s1"));
}

/// A plain `netpolc cleanup` while a run is live leaves the run alone (it says so), and so does
/// `cleanup --run-id` naming that very run; the run still ends conformant.
#[test]
fn a_plain_cleanup_during_a_live_run_leaves_it_intact() {
    require_root();
    let _turn = one_at_a_time();
    let tmp = tempfile::tempdir().expect("tempdir");
    let live = id("live");
    let mut run = start(&long(), &live, &tmp.path().join("r"));
    wait_for_netns(&live);
    std::thread::sleep(Duration::from_millis(500));
    for args in [vec![], vec!["--run-id", live.as_str()]] {
        let before = netns_of(&live);
        assert!(
            run_is_live(&mut run) && !before.is_empty(),
            "the run ended too early"
        );
        let out = cleanup(&args);
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("local: left run {live} ")) && l.contains("live")),
            "cleanup {args:?} does not say it left the live run: {}",
            show(&out)
        );
        assert!(
            !stdout.contains(&format!("(run {live}:")),
            "cleanup {args:?} removed something of the live run: {}",
            show(&out)
        );
        // Namespaces come and go as the run's scenarios start and end, so what proves the run
        // untouched is its verdict at the end; meanwhile, while it runs, its lease is in place.
        if run_is_live(&mut run) {
            assert!(lease_file(&live).exists(), "the live run lost its lease");
        }
    }
    finish_conformant(run, &live, &tmp.path().join("r"));
}

fn run_is_live(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}

fn sigkill(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL sent");
    let _ = child.wait();
}

/// A run killed with SIGKILL in the middle of creating namespaces leaves them, and its lease
/// file, behind. `cleanup --run-id A` must not touch it (its id is `A-s1`); a later plain
/// `netpolc cleanup` removes every one of them, also those its orphaned `ip` processes were still
/// creating, and no namespace of it exists once cleanup returns.
#[test]
fn a_killed_run_is_removed_by_a_later_cleanup_and_only_by_its_exact_id() {
    require_root();
    let _turn = one_at_a_time();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, a_s1) = (id("k"), format!("{}-s1", id("k")));
    let mut run = start(&long(), &a_s1, &tmp.path().join("r"));
    wait_for_netns(&a_s1);
    std::thread::sleep(Duration::from_millis(1500));
    sigkill(&mut run);
    assert!(
        !netns_of(&a_s1).is_empty(),
        "SIGKILL left nothing to clean up"
    );
    assert!(
        lease_file(&a_s1).exists(),
        "a killed run keeps its lease file"
    );

    // Its id cannot be reused before cleanup: the new run would adopt the dead one's leftovers.
    let reuse = start(&short(), &a_s1, &tmp.path().join("reuse"))
        .wait_with_output()
        .expect("exits");
    assert_eq!(reuse.status.code(), Some(3), "{}", show(&reuse));
    assert!(
        String::from_utf8_lossy(&reuse.stderr)
            .contains(&format!("netpolc cleanup --run-id {a_s1}")),
        "{}",
        show(&reuse)
    );

    let out = cleanup(&["--run-id", &a]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to remove"),
        "{}",
        show(&out)
    );
    assert!(
        !netns_of(&a_s1).is_empty(),
        "cleanup --run-id {a} touched {a_s1}"
    );
    assert!(lease_file(&a_s1).exists());

    let out = cleanup(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("(run {a_s1}: its process is gone")),
        "{}",
        show(&out)
    );
    assert!(
        netns_of(&a_s1).is_empty(),
        "left after cleanup: {:?}",
        netns_of(&a_s1)
    );
    assert!(
        !lease_file(&a_s1).exists(),
        "the dead run's lease file remains"
    );
    // Nothing of it appears later either (no orphan was still creating namespaces).
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        netns_of(&a_s1).is_empty(),
        "appeared later: {:?}",
        netns_of(&a_s1)
    );
    // The id is free again.
    let again = start(&short(), &a_s1, &tmp.path().join("again"));
    finish_conformant(again, &a_s1, &tmp.path().join("again"));
}

/// A run id used by a live run is refused to a second run (exit 2), and the first run is not
/// disturbed.
#[test]
fn a_live_run_id_cannot_be_taken_twice() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dup = id("dup");
    let first = start(&long(), &dup, &tmp.path().join("first"));
    wait_for_netns(&dup);
    let second = start(&short(), &dup, &tmp.path().join("second"))
        .wait_with_output()
        .expect("second exits");
    assert_eq!(second.status.code(), Some(2), "{}", show(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("is in use (live: lease held"),
        "{}",
        show(&second)
    );
    assert!(!tmp.path().join("second/report.json").exists());
    finish_conformant(first, &dup, &tmp.path().join("first"));
}

/// Bad run ids are refused by both commands before anything happens.
#[test]
fn run_ids_that_could_match_others_are_refused() {
    for bad in ["a--b", "A", "a_b", "-a", &"x".repeat(33)] {
        let out = Command::new(BIN)
            .args(["cleanup", &format!("--run-id={bad}")])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", show(&out));
        let out = Command::new(BIN)
            .args(["run", &short(), &format!("--run-id={bad}")])
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--run-id"),
            "{bad}: {}",
            show(&out)
        );
    }
}

/// Without `kind` or a kubeconfig a plain cleanup says it skipped those parts and succeeds; asked
/// for them explicitly, it fails (exit 3) saying what is missing.
#[test]
fn missing_kind_or_kubeconfig_is_skipped_unless_asked_for() {
    require_root();
    let _turn = one_at_a_time();
    // A PATH with `ip` (the local part may need it) but no `kind`.
    let bin = tempfile::tempdir().expect("tempdir");
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("ip is installed");
    std::os::unix::fs::symlink(ip, bin.path().join("ip")).expect("symlink");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("cleanup")
            .args(args)
            .env("PATH", bin.path())
            .env("KUBECONFIG", bin.path().join("no-such-kubeconfig"))
            .env("HOME", bin.path())
            .output()
            .expect("runs")
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("kind: skipped: `kind` is not installed"),
        "{}",
        show(&out)
    );
    assert!(
        stdout.contains("kubeconfig: skipped: no usable kubeconfig"),
        "{}",
        show(&out)
    );
    for part in ["kind", "kubeconfig"] {
        let out = run(&["--provider", part]);
        assert_eq!(out.status.code(), Some(3), "{part}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&format!("error: {part}: ")),
            "{part}: {}",
            show(&out)
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("local:"),
            "{}",
            show(&out)
        );
    }
}
