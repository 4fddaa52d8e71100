//! Simulated wall time of `netpolc run scenarios/upstream --provider kind` (not a timed test: it
//! prints figures). The real engine and the real cluster session run against a simulated API
//! server and ideal CNI (`tests/cluster_sim`) under tokio's paused clock, with the latencies of a
//! kind cluster on a CI runner: pod start 10 s, exec round trip 150 ms, CNI convergence 2 s,
//! probe timeout 3 s (plus 20 ms per API call, 0.5 s for a namespace's ServiceAccount, servers
//! listening 0.3 s after their pod starts). Cluster creation and CNI installation are not
//! simulated: the figures below add kind's typical 45 s and 30 s.
//!
//! `cargo bench --bench kind_sim` — runs in seconds. Goal: ≤ 10 minutes simulated for
//! scenarios/upstream on kind. It prints the old scheduling (one scenario at a time, fresh pods
//! each) beside the current one (parallel slots, pods reused), measured in the same run.

#[path = "../tests/cluster_sim/mod.rs"]
mod cluster_sim;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use cluster_sim::{Latency, SimApi};
use netpol_conformance::provider::kube::{ClusterPool, PoolPlatform, SessionConfig};
use netpol_conformance::provider::{Platform, PlatformInfo};
use netpol_conformance::report::model::RunReport;
use netpol_conformance::run::{self, Cancel, NullReporter, RunOptions};
use netpol_conformance::scenario::load_paths;

/// Not simulated: typical `kind create cluster` (images cached) and CNI readiness on a runner.
const CLUSTER_MS: u64 = 45_000;
const CNI_MS: u64 = 30_000;
const GOAL_MS: u64 = 10 * 60 * 1000;

fn run_once(parallel: usize, reuse: bool) -> (RunReport, cluster_sim::SimLog) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/upstream");
    let scenarios = match load_paths(&[dir]) {
        Ok(l) => l.scenarios,
        Err(e) => panic!("{e:?}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Pods from Calico's pool, so every ipBlock case is re-bound to real addresses.
        let api = Arc::new(SimApi::new(
            Latency::kind(),
            true,
            Ipv4Addr::new(192, 168, 0, 10),
        ));
        let cfg = SessionConfig {
            parallel,
            reuse,
            ..SessionConfig::new("agnhost")
        };
        let mut info = PlatformInfo {
            provider: "kind".into(),
            cni: "simulated".into(),
            ..Default::default()
        };
        info.setup_ms.insert("cluster".into(), CLUSTER_MS);
        info.setup_ms.insert("cni".into(), CNI_MS);
        let platform = PoolPlatform {
            pool: ClusterPool::new(Arc::clone(&api), "bench", cfg, None),
            info,
        };
        // The kind provider's defaults (cli::run): 3 s probes, 60 s steps, 2 attempts.
        let opts = RunOptions {
            probe_timeout: Duration::from_secs(3),
            step_timeout: Duration::from_secs(60),
            ..RunOptions::new("bench", "2026-11-26T00:00:00Z")
        };
        let report = run::execute(
            &platform,
            &scenarios,
            &opts,
            &mut NullReporter,
            &Cancel::never(),
        )
        .await
        .expect("the simulated run completes");
        platform.close().await.expect("closes");
        (report, api.log())
    })
}

fn mins(ms: u64) -> String {
    format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
}

fn main() {
    let wall = std::time::Instant::now();
    println!("scenarios/upstream on a simulated kind cluster (paused clock)");
    println!(
        "latencies: pod start 10 s, exec round trip 150 ms, CNI convergence 2 s, probe timeout 3 s; \
         cluster {} s and CNI {} s added, not simulated",
        CLUSTER_MS / 1000,
        CNI_MS / 1000
    );
    let mut current = 0;
    for (label, parallel, reuse) in [
        ("one at a time, fresh pods", 1, false),
        ("4 in parallel, pods reused", 4, true),
    ] {
        let (r, log) = run_once(parallel, reuse);
        let total = CLUSTER_MS + CNI_MS + r.duration_ms;
        let p = r.phases;
        println!(
            "{label:>28}: {} simulated ({} scenarios, {} cells, verdict {}); pods created {}, execs {}",
            mins(total),
            r.scenarios.len(),
            r.summary.cells,
            r.verdict,
            log.pods_created,
            log.execs
        );
        println!(
            "{:>28}  cluster {}, CNI {}, scenarios {} — summed over scenarios: pods {}, convergence {}, probing {}",
            "",
            mins(CLUSTER_MS),
            mins(CNI_MS),
            mins(r.duration_ms),
            mins(p.pods_ms),
            mins(p.convergence_ms),
            mins(p.probing_ms)
        );
        assert_eq!(
            r.summary.failed, 0,
            "the simulated CNI is ideal: nothing may fail"
        );
        current = total;
    }
    println!(
        "goal: <= {} simulated: {} ({:.1} s of real time for this benchmark)",
        mins(GOAL_MS),
        if current <= GOAL_MS { "met" } else { "NOT met" },
        wall.elapsed().as_secs_f64()
    );
}
