//! The whole engine at scale on the local dataplane: one namespace of N pods serving 80/TCP
//! behind a default deny (every cell must time out: the most expensive matrix there is), run
//! through `run::execute` exactly as `netpolc run` does, with figures printed per size.
//!
//! Run as root: `cargo bench --bench scale` (sizes: `NETPOLC_SCALE_PODS=200,500,700`).
//!
//! Goals (issue 13), on this 2-core machine:
//! - 200 pods / 40,000 cells: conformant, 0 flaky, 0 errors, probe pass ≤ 5 × the probe timeout;
//! - 500 pods / 250,000 cells: the same, probe pass ≤ 30 × the timeout, peak RSS ≤ 2 GB.
//!
//! The verdict and counts are asserted (a wrong answer is a bug, not a slow run); the timing and
//! memory goals are printed with the figures, so a slow machine reports instead of failing.
//! Namespace set-up and teardown are printed separately: they depend on how the dataplane
//! creates links, not on the engine.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use netpol_conformance::provider::Platform;
use netpol_conformance::provider::local::{LocalCni, LocalOptions, LocalPlatform};
use netpol_conformance::report::model::{RunReport, Verdict};
use netpol_conformance::run::{self, Cancel, Event, Reporter, RunOptions};
use netpol_conformance::scenario::{Scenario, load_str};

fn scenario(pods: usize) -> Scenario {
    let names: Vec<String> = (0..pods).map(|i| format!("p{i}")).collect();
    let mut s = String::new();
    let _ = write!(
        s,
        "apiVersion: netpolc/v1\nkind: Scenario\nname: scale-{pods}\nmodel:\n  \
         upstream: {{namespaces: [n], pods: [{}], ports: [80], protocols: [TCP]}}\n\
         probes: [\"80/TCP\"]\nsteps:\n  - name: default-deny\n    apply:\n      \
         - {{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, \
         metadata: {{namespace: n, name: deny}}, spec: {{podSelector: {{}}}}}}\n",
        names.join(", ")
    );
    match load_str(&s, format!("scale-{pods}.yaml")) {
        Ok(mut l) => l.scenarios.remove(0),
        Err(e) => panic!("the scale scenario does not load: {e:?}"),
    }
}

/// Times the phases from the event stream.
struct Phases {
    t0: Instant,
    step_started: Option<Duration>,
    first_pass_ended: Option<(Duration, u64)>,
    step_finished: Option<Duration>,
    scenario_finished: Option<Duration>,
}

impl Reporter for Phases {
    fn event(&mut self, e: &Event<'_>) {
        let now = self.t0.elapsed();
        match e {
            Event::StepStarted { .. } => self.step_started = Some(now),
            Event::PassFinished { wall_ms, .. } if self.first_pass_ended.is_none() => {
                self.first_pass_ended = Some((now, *wall_ms));
            }
            Event::StepFinished { .. } => self.step_finished = Some(now),
            Event::ScenarioFinished { .. } => self.scenario_finished = Some(now),
            _ => {}
        }
    }
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn goal(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

async fn measure(pods: usize) {
    let sc = scenario(pods);
    // Peak RSS of this size alone: "5" resets the high-water mark (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let run_id = format!("scale{}-{pods}", std::process::id());
    let platform = LocalPlatform::new(LocalOptions::new(&run_id, LocalCni::Nftables))
        .unwrap_or_else(|e| panic!("local dataplane unavailable: {e}"));
    let opts = RunOptions::new(run_id, "bench");
    let mut phases = Phases {
        t0: Instant::now(),
        step_started: None,
        first_pass_ended: None,
        step_finished: None,
        scenario_finished: None,
    };
    let report: RunReport = run::execute(
        &platform,
        std::slice::from_ref(&sc),
        &opts,
        &mut phases,
        &Cancel::never(),
    )
    .await
    .unwrap_or_else(|e| panic!("{pods} pods: run failed: {e}"));
    platform.close().await.expect("close");
    let total = phases.t0.elapsed();
    let rss_mb = status_kb("VmHWM:") / 1024;
    let step = &report.scenarios[0].steps[0];
    let (pass_end, pass_ms) = phases.first_pass_ended.expect("a pass");
    let setup = pass_end
        .saturating_sub(Duration::from_millis(pass_ms))
        .saturating_sub(phases.step_started.expect("step started"));
    let teardown = phases
        .scenario_finished
        .expect("finished")
        .saturating_sub(phases.step_finished.expect("step finished"));
    let timeout = report.probe_timeout_ms as f64;
    let ratio = step.probe_wall_ms as f64 / timeout;
    let (ratio_goal, rss_goal) = if pods <= 200 {
        (5.0, None)
    } else {
        (30.0, Some(2048))
    };
    let s = &report.summary;
    println!(
        "{pods} pods, {} cells: verdict {}, flaky {}, errors {}, harness re-probes {}; \
         namespace set-up {} ms; probe pass {} ms = {ratio:.1}x the {} ms timeout (goal <= \
         {ratio_goal}x: {}); passes {}; teardown {} ms; total {} ms; peak RSS {rss_mb} MB{}",
        s.cells,
        report.verdict,
        s.flaky,
        s.errors,
        step.harness_retries,
        setup.as_millis(),
        step.probe_wall_ms,
        report.probe_timeout_ms,
        goal(ratio <= ratio_goal),
        step.passes,
        teardown.as_millis(),
        total.as_millis(),
        rss_goal
            .map(|g| format!(" (goal <= {g} MB: {})", goal(rss_mb <= g)))
            .unwrap_or_default(),
    );
    if let Some(b) = report.environment.get("probe_budget") {
        println!("  budget: {b}");
    }
    assert_eq!(s.cells, (pods * pods) as u64);
    assert_eq!(report.verdict, Verdict::Conformant, "{:?}", report.warnings);
    assert_eq!((s.flaky, s.errors, s.failed), (0, 0, 0));
    assert!(step.converged);
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the scale benchmark drives the local dataplane and must run as root"
    );
    let sizes: Vec<usize> = std::env::var("NETPOLC_SCALE_PODS")
        .ok()
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![200, 500]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        for pods in sizes {
            measure(pods).await;
        }
    });
}
