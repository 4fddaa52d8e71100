//! `netpolc check` through the same engine and provider boundary a cluster uses, on the local
//! dataplane with real packets: an enforcing dataplane (`nftables`) is "enforcing" (exit 0), one
//! that ignores policies (`none`) is "ignoring NetworkPolicy" (exit 1), an interrupted check
//! leaves nothing behind, and on a cluster the plan names the throwaway namespace by run id.
//! The local cases need root and `nft`: without them they fail saying so.

mod fake_api;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_netpolc");

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

fn netns_of_run(run_id: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| netpol_conformance::provider::local::run_of(n) == Some(run_id))
        .map(String::from)
        .collect()
}

fn check(args: &[&str]) -> (Output, Value) {
    let o = Command::new(BIN)
        .arg("check")
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("netpolc runs");
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON document ({e}):\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o, v)
}

#[test]
fn an_enforcing_dataplane_is_enforcing() {
    require_root();
    let run = "audit-chk-enf";
    let (o, v) = check(&["--provider", "local", "--cni", "nftables", "--run-id", run]);
    assert_eq!(o.status.code(), Some(0), "{v:#}");
    assert_eq!(v["verdict"], "enforcing");
    assert_eq!(v["cni"], "nftables");
    assert_eq!(v["baseline"]["connectivity"], "connected");
    assert!(
        matches!(
            v["deny"]["connectivity"].as_str(),
            Some("timeout" | "refused")
        ),
        "{v:#}"
    );
    assert!(v["enforced_after_ms"].is_u64(), "{v:#}");
    assert!(
        netns_of_run(run).is_empty(),
        "left behind: {:?}",
        netns_of_run(run)
    );
}

#[test]
fn a_dataplane_that_ignores_policies_is_ignoring() {
    require_root();
    let run = "audit-chk-ign";
    let (o, v) = check(&[
        "--provider",
        "local",
        "--cni",
        "none",
        "--run-id",
        run,
        "--step-timeout-ms",
        "2000",
    ]);
    assert_eq!(o.status.code(), Some(1), "{v:#}");
    assert_eq!(v["verdict"], "ignoring-network-policy");
    assert_eq!(v["deny"]["connectivity"], "connected");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("still connected with a policy denying all ingress")),
        "{v:#}"
    );
    assert!(netns_of_run(run).is_empty());
}

#[test]
fn an_interrupted_check_leaves_nothing_behind() {
    require_root();
    let run = "audit-chk-int";
    // `none` never converges, so the check is still waiting for enforcement when interrupted.
    let child = Command::new(BIN)
        .args([
            "check",
            "--provider",
            "local",
            "--cni",
            "none",
            "--run-id",
            run,
            "--step-timeout-ms",
            "30000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netpolc starts");
    let start = Instant::now();
    while netns_of_run(run).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the check created no namespaces"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal sent");
    let out = child.wait_with_output().expect("netpolc exits");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        netns_of_run(run).is_empty(),
        "left behind: {:?}",
        netns_of_run(run)
    );
}

#[test]
fn the_cluster_plan_names_and_labels_the_throwaway_namespace_with_the_run_id() {
    let o = Command::new(BIN)
        .args(["check", "--dry-run", "--run-id", "chk-1"])
        .output()
        .expect("netpolc runs");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let plan = String::from_utf8_lossy(&o.stdout);
    assert!(plan.contains("netpolc-chk-1--0-check"), "{plan}");
    assert!(plan.contains("netpolc.io/run-id: chk-1"), "{plan}");
    assert!(plan.contains("deny-ingress-to-server"), "{plan}");
    assert!(plan.contains("/agnhost connect"), "{plan}");
}

#[test]
fn an_unreachable_cluster_cannot_tell() {
    let api = fake_api::FakeApi::start(fake_api::Options::new("/nonexistent"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let text = std::fs::read_to_string(api.kubeconfig())
        .expect("kubeconfig")
        .replace(&api.port.to_string(), &port.to_string());
    std::fs::write(api.kubeconfig(), text).expect("rewrite");
    let o = api.netpolc(&["check", "--format", "json"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["verdict"], "cannot-tell");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("contacting the API server")),
        "{v:#}"
    );
    assert!(
        api.requests().iter().all(|r| r.method == "GET"),
        "nothing was created"
    );
}

#[test]
fn usage_errors_are_exit_2() {
    let o = Command::new(BIN)
        .args(["check", "--run-id", "Bad_Id"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(BIN)
        .args(["check", "--cni", "calico"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
}
