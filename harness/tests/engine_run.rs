//! The run engine against a scripted fake provider, in paused (virtual) time so every duration is
//! exact: outcomes, flaky classification, convergence, retries, the four verdicts, failing
//! features, teardown on failure and cancellation, batching and parallelism.

mod engine_support;

use std::time::Duration;

use engine_support::{FakePlatform, Script, TWO_NS, key, scenario, two_ns, with_sctp};
use netpol_conformance::probe::{Connectivity, Outcome};
use netpol_conformance::provider::ProviderError;
use netpol_conformance::report::model::{CellReport, RunReport, StepWait, Verdict};
use netpol_conformance::run::{Cancel, Event, Recorder, RunOptions, execute};
use netpol_conformance::scenario::Scenario;

fn opts() -> RunOptions {
    RunOptions::new("test-run", "2026-01-02T03:04:05Z")
}

fn script() -> Script {
    Script {
        probe_cost: Duration::from_millis(50),
        max_parallel: 4,
        ..Script::default()
    }
}

async fn run_with(
    platform: &FakePlatform,
    scenarios: &[Scenario],
    opts: &RunOptions,
) -> Result<RunReport, ProviderError> {
    let mut rec = Recorder::default();
    execute(platform, scenarios, opts, &mut rec, &Cancel::never()).await
}

async fn run(script: Script, scenarios: &[Scenario]) -> RunReport {
    let platform = FakePlatform::new(script);
    let report = run_with(&platform, scenarios, &opts())
        .await
        .expect("run succeeds");
    let log = platform.log();
    let mut torn = log.torn_down.clone();
    torn.sort();
    assert_eq!(
        torn,
        (0..scenarios.len()).collect::<Vec<_>>(),
        "every session torn down"
    );
    report
}

fn find<'r>(r: &'r RunReport, step: usize, from: &str, to: &str) -> &'r CellReport {
    r.scenarios[0].steps[step]
        .cells
        .iter()
        .find(|c| c.from.to_string() == from && c.to.to_string() == to)
        .expect("cell exists")
}

#[tokio::test(start_paused = true)]
async fn truthful_dataplane_is_conformant() {
    let r = run(script(), &[two_ns()]).await;
    assert_eq!(r.verdict, Verdict::Conformant);
    assert_eq!(r.summary.cells, 32);
    assert_eq!(r.summary.passed, 32);
    let step = &r.scenarios[0].steps[0];
    assert_eq!(step.passes, 1);
    assert_eq!(step.convergence_ms, Some(0));
    assert_eq!(step.probe_wall_ms, 50);
    // The oracle's plan: y admits only x/a.
    let denied: Vec<String> = step
        .cells
        .iter()
        .filter(|c| c.expected == Some(false))
        .map(|c| format!("{}->{}", c.from, c.to))
        .collect();
    assert_eq!(
        denied,
        [
            "x/b->y/a", "x/b->y/b", "y/a->y/a", "y/a->y/b", "y/b->y/a", "y/b->y/b"
        ]
    );
    assert!(
        step.cells
            .iter()
            .all(|c| c.attempts == 1 && c.outcome == Outcome::Pass)
    );
    assert_eq!(
        find(&r, 0, "x/a", "y/b").command,
        "fake-probe x/a y/b 80/TCP"
    );
    assert!(r.failing_features.is_empty());
    assert_eq!(r.provider, "fake");
    assert_eq!(r.run_id, "test-run");
}

#[tokio::test(start_paused = true)]
async fn ignoring_policies_is_policies_ignored() {
    let s = Script {
        ignore_policies: true,
        ..script()
    };
    let r = run(s, &[two_ns()]).await;
    assert_eq!(r.verdict, Verdict::PoliciesIgnored);
    assert_eq!(r.summary.failed, 6);
    assert_eq!(r.summary.passed, 26);
    let c = find(&r, 0, "x/b", "y/a");
    assert_eq!(
        (c.expected, c.observed, c.outcome),
        (Some(false), Some(true), Outcome::Fail)
    );
    assert_eq!(c.attempts, 2, "a wrong cell is retried once by default");
    assert_eq!(c.history.len(), 2);
    assert!(
        c.features.contains(&"ingress".to_string()),
        "{:?}",
        c.features
    );
    assert!(r.failing_features.contains(&"ingress".to_string()));
    // The step never converged; passes went on until the step timeout (3 s).
    let step = &r.scenarios[0].steps[0];
    assert_eq!(step.convergence_ms, None);
    assert!(step.passes > 1);
}

#[tokio::test(start_paused = true)]
async fn one_wrong_cell_is_non_conformant_with_its_features() {
    let mut s = script();
    s.always_wrong.insert(key("x/b", "y/a", "80/TCP"));
    let r = run(s, &[two_ns()]).await;
    assert_eq!(r.verdict, Verdict::NonConformant);
    assert_eq!((r.summary.failed, r.summary.passed), (2, 30));
    let c = find(&r, 0, "x/b", "y/a");
    assert_eq!(c.outcome, Outcome::Fail);
    assert_eq!(c.connectivity, Connectivity::Connected);
    // x/b is in a namespace that matches but is not pod a: the peer's AND half-matched.
    assert_eq!(c.features, ["ingress", "podSelector+namespaceSelector"]);
    // Step 2 (no policies): the stuck cell is blocked, which step 1's policies required.
    let c2 = find(&r, 1, "x/b", "y/a");
    assert_eq!(c2.outcome, Outcome::Fail);
    assert_eq!(c2.features, ["default-allow", "updates"]);
    let step = &r.scenarios[0].steps[0];
    assert_eq!(step.convergence_ms, None);
    // Passes start every 150 ms (50 ms probing + 100 ms pause) until 3 s after apply.
    assert_eq!(step.passes, 21);
}

#[tokio::test(start_paused = true)]
async fn wrong_then_right_converges_within_the_step() {
    let mut s = script();
    s.wrong_times.insert(key("x/a", "y/a", "80/TCP"), 1);
    let r = run(s, &[two_ns()]).await;
    assert_eq!(r.verdict, Verdict::Conformant);
    let step = &r.scenarios[0].steps[0];
    assert_eq!(step.passes, 2);
    assert_eq!(step.convergence_ms, Some(150));
    let c = find(&r, 0, "x/a", "y/a");
    assert_eq!((c.outcome, c.attempts), (Outcome::Pass, 1));
}

#[tokio::test(start_paused = true)]
async fn wrong_then_right_on_retry_is_flaky_not_pass() {
    let mut s = script();
    s.wrong_times.insert(key("x/a", "y/a", "80/TCP"), 1);
    let platform = FakePlatform::new(s);
    let o = RunOptions {
        step_timeout: Duration::ZERO,
        ..opts()
    };
    let r = run_with(&platform, &[two_ns()], &o).await.expect("run");
    assert_eq!(
        r.verdict,
        Verdict::Conformant,
        "flaky cells do not fail the run"
    );
    // Wrong on its first probe in each of the two steps.
    assert_eq!(r.summary.flaky, 2);
    assert_eq!(r.summary.passed, 30);
    let c = find(&r, 0, "x/a", "y/a");
    assert_eq!(
        (c.outcome, c.attempts, c.observed),
        (Outcome::Flaky, 2, Some(true))
    );
    let first = &c.history[0];
    assert_eq!(
        (first.connectivity, first.observed),
        (Connectivity::Timeout, Some(false))
    );
    assert_eq!(r.scenarios[0].steps[0].convergence_ms, None);
    // Only the wrong cell was retried: one full pass of 16 cells, then a batch of 1.
    assert_eq!(platform.log().batch_sizes[..2], [16, 1]);
}

#[tokio::test(start_paused = true)]
async fn convergence_is_timed_from_apply_to_the_first_matching_pass() {
    let s = Script {
        convergence_delay: Duration::from_millis(1000),
        ..script()
    };
    let r = run(s, &[two_ns()]).await;
    assert_eq!(r.verdict, Verdict::Conformant);
    // Step 1 has no previous state: in force at once.
    assert_eq!(r.scenarios[0].steps[0].convergence_ms, Some(0));
    // Step 2 keeps step 1's denials for 1 s; passes start at 0, 150, …, 900, 1050 ms.
    let step = &r.scenarios[0].steps[1];
    assert_eq!(step.convergence_ms, Some(1050));
    assert_eq!(step.passes, 8);
    assert_eq!(step.probe_wall_ms, 50);
}

#[tokio::test(start_paused = true)]
async fn lasting_errors_make_the_verdict_error() {
    let mut s = script();
    s.error_times.insert(key("y/b", "x/a", "80/TCP"), u32::MAX);
    let r = run(s, &[two_ns()]).await;
    assert_eq!(r.verdict, Verdict::Error);
    assert_eq!(r.summary.errors, 2);
    let c = find(&r, 0, "y/b", "x/a");
    assert_eq!(
        (c.outcome, c.observed, c.attempts),
        (Outcome::Error, None, 2)
    );
    assert_eq!(c.detail.as_deref(), Some("fake exec failed"));
}

#[tokio::test(start_paused = true)]
async fn an_error_resolved_by_a_retry_is_flaky() {
    let mut s = script();
    s.error_times.insert(key("y/b", "x/a", "80/TCP"), 1);
    let platform = FakePlatform::new(s);
    let o = RunOptions {
        step_timeout: Duration::ZERO,
        ..opts()
    };
    let r = run_with(&platform, &[two_ns()], &o).await.expect("run");
    assert_eq!(r.verdict, Verdict::Conformant);
    assert_eq!(find(&r, 0, "y/b", "x/a").outcome, Outcome::Flaky);
}

#[tokio::test(start_paused = true)]
async fn unsupported_cells_are_counted_and_never_change_the_verdict() {
    let s = Script {
        unsupported: vec![netpol_conformance::model::Protocol::Sctp],
        ..script()
    };
    let r = run(s, &[with_sctp()]).await;
    assert_eq!(r.verdict, Verdict::Conformant);
    assert_eq!((r.summary.cells, r.summary.unsupported), (32, 16));
    let c = r.scenarios[0].steps[0]
        .cells
        .iter()
        .find(|c| c.protocol == netpol_conformance::model::Protocol::Sctp)
        .expect("an SCTP cell");
    assert_eq!(
        (c.outcome, c.attempts, c.observed),
        (Outcome::Unsupported, 1, None)
    );
    // Unsupported cells do not hold convergence back.
    assert_eq!(r.scenarios[0].steps[0].convergence_ms, Some(0));

    // Policies ignored with SCTP unsupported: still policies-ignored.
    let s = Script {
        unsupported: vec![netpol_conformance::model::Protocol::Sctp],
        ignore_policies: true,
        ..script()
    };
    assert_eq!(
        run(s, &[with_sctp()]).await.verdict,
        Verdict::PoliciesIgnored
    );
}

#[tokio::test(start_paused = true)]
async fn attempts_are_configurable() {
    let mut s = script();
    s.always_wrong.insert(key("x/b", "y/a", "80/TCP"));
    let platform = FakePlatform::new(s);
    let o = RunOptions {
        attempts: 3,
        step_timeout: Duration::ZERO,
        ..opts()
    };
    let r = run_with(&platform, &[two_ns()], &o).await.expect("run");
    let c = find(&r, 0, "x/b", "y/a");
    assert_eq!(
        (c.outcome, c.attempts, c.history.len()),
        (Outcome::Fail, 3, 3)
    );
    assert_eq!(r.attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn a_stale_dataplane_fails_updates() {
    let s = Script {
        stale: true,
        ..script()
    };
    let r = run(s, &[two_ns()]).await;
    assert_eq!(r.verdict, Verdict::NonConformant);
    assert_eq!(r.summary.failed, 6);
    assert!(
        r.scenarios[0].steps[0]
            .cells
            .iter()
            .all(|c| c.outcome == Outcome::Pass)
    );
    assert_eq!(r.failing_features, ["default-allow", "updates"]);
}

#[tokio::test(start_paused = true)]
async fn sessions_run_in_parallel_up_to_the_platform_limit_in_input_order() {
    let scenarios: Vec<Scenario> = (0..5).map(|i| scenario(TWO_NS, &format!("s{i}"))).collect();
    let platform = FakePlatform::new(Script {
        max_parallel: 2,
        ..script()
    });
    let r = run_with(&platform, &scenarios, &opts()).await.expect("run");
    let names: Vec<&str> = r.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["s0", "s1", "s2", "s3", "s4"]);
    let log = platform.log();
    assert_eq!(log.max_active, 2);
    assert_eq!(log.torn_down.len(), 5);
    assert_eq!(log.closed, 0, "the caller closes the platform");
}

#[tokio::test(start_paused = true)]
async fn batches_are_bounded() {
    let platform = FakePlatform::new(script());
    let o = RunOptions {
        batch_size: Some(5),
        ..opts()
    };
    let r = run_with(&platform, &[two_ns()], &o).await.expect("run");
    assert_eq!(r.verdict, Verdict::Conformant);
    let sizes = platform.log().batch_sizes.clone();
    assert_eq!(sizes, [5, 5, 5, 1, 5, 5, 5, 1]);
    // A pass is four calls of 50 ms.
    assert_eq!(r.scenarios[0].steps[0].probe_wall_ms, 200);
}

#[tokio::test(start_paused = true)]
async fn a_provider_failure_stops_the_run_and_tears_everything_down() {
    let scenarios: Vec<Scenario> = (0..3).map(|i| scenario(TWO_NS, &format!("s{i}"))).collect();
    let platform = FakePlatform::new(Script {
        fail_apply: Some((1, 1)),
        ..script()
    });
    let err = run_with(&platform, &scenarios, &opts())
        .await
        .expect_err("apply fails");
    assert!(
        matches!(err, ProviderError::Failed(ref m) if m.contains("step 1")),
        "{err}"
    );
    let log = platform.log();
    let mut opened = log.opened.clone();
    let mut torn = log.torn_down.clone();
    opened.sort();
    torn.sort();
    assert_eq!(opened, torn, "every opened session is torn down");
}

#[tokio::test(start_paused = true)]
async fn cancellation_tears_down_and_reports_interrupted() {
    let mut s = script();
    s.always_wrong.insert(key("x/b", "y/a", "80/TCP"));
    let platform = FakePlatform::new(Script {
        max_parallel: 2,
        ..s
    });
    let scenarios: Vec<Scenario> = (0..3).map(|i| scenario(TWO_NS, &format!("s{i}"))).collect();
    let (handle, cancel) = Cancel::pair();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        handle.cancel();
    });
    let mut rec = Recorder::default();
    let err = execute(&platform, &scenarios, &opts(), &mut rec, &cancel)
        .await
        .expect_err("cancelled");
    canceller.await.expect("canceller");
    assert!(matches!(err, ProviderError::Interrupted), "{err}");
    let log = platform.log();
    assert_eq!(log.opened.len(), 2, "the third scenario never started");
    assert_eq!(log.torn_down.len(), 2);
    assert!(
        rec.events
            .iter()
            .any(|e| matches!(e, Event::Interrupted { .. }))
    );
    assert!(
        !rec.events
            .iter()
            .any(|e| matches!(e, Event::RunFinished { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn the_event_stream_frames_the_run() {
    let platform = FakePlatform::new(script());
    let mut rec = Recorder::default();
    let r = execute(&platform, &[two_ns()], &opts(), &mut rec, &Cancel::never())
        .await
        .expect("run");
    let ev = &rec.events;
    assert!(matches!(
        ev.first(),
        Some(Event::RunStarted { cells: 32, .. })
    ));
    match ev.last() {
        Some(Event::RunFinished { report }) => assert_eq!(**report, r),
        other => panic!("last event: {other:?}"),
    }
    let count = |f: fn(&Event) -> bool| ev.iter().filter(|e| f(e)).count();
    assert_eq!(count(|e| matches!(e, Event::StepStarted { .. })), 2);
    assert_eq!(count(|e| matches!(e, Event::StepFinished { .. })), 2);
    assert_eq!(count(|e| matches!(e, Event::CellFinished { .. })), 32);
    assert_eq!(count(|e| matches!(e, Event::PassFinished { .. })), 2);
    assert_eq!(count(|e| matches!(e, Event::ScenarioFinished { .. })), 1);
}

/// Step 1 admits only x/a into y; step 2 admits only x/b instead.
const SWITCH: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: switch
model:
  upstream: {namespaces: [x, y], pods: [a, b], protocols: [TCP], ports: [80]}
probes: ["80/TCP"]
steps:
  - name: only-xa
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {namespace: y, name: p}
        spec:
          podSelector: {}
          ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]
  - name: only-xb
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {namespace: y, name: p}
        spec:
          podSelector: {}
          ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: b}}}]}]
"#;

#[tokio::test(start_paused = true)]
async fn updates_needs_an_earlier_step_that_enforced() {
    let sc = scenario(SWITCH, "switch");
    // Stuck in step 1, which it enforced: x/a -> y/a still allowed is a missed update.
    let stale = run(
        Script {
            stale: true,
            ..script()
        },
        std::slice::from_ref(&sc),
    )
    .await;
    let c = find(&stale, 1, "x/a", "y/a");
    assert_eq!(c.outcome, Outcome::Fail);
    assert!(
        c.features.contains(&"updates".to_string()),
        "{:?}",
        c.features
    );
    // Ignoring policies gives the same observation, but step 1 never showed enforcement.
    let ignored = run(
        Script {
            ignore_policies: true,
            ..script()
        },
        &[sc],
    )
    .await;
    let c = find(&ignored, 1, "x/a", "y/a");
    assert_eq!(c.outcome, Outcome::Fail);
    assert!(
        !c.features.contains(&"updates".to_string()),
        "{:?}",
        c.features
    );
    assert!(!ignored.failing_features.contains(&"updates".to_string()));
}

// ---- Harness errors: the harness's own shortages never become the dataplane's flakes ----

#[tokio::test(start_paused = true)]
async fn harness_errors_are_reprobed_within_the_pass_and_never_flaky() {
    let mut s = script();
    s.harness_times.insert(key("x/a", "y/a", "80/TCP"), 2);
    let platform = FakePlatform::new(s);
    let r = run_with(&platform, &[two_ns()], &opts())
        .await
        .expect("run");
    assert_eq!(r.verdict, Verdict::Conformant);
    assert_eq!((r.summary.flaky, r.summary.errors), (0, 0));
    let step = &r.scenarios[0].steps[0];
    // The pass re-probed the cell twice (after 50 and 100 ms) and then matched: it converged.
    assert!(step.converged);
    assert_eq!(step.convergence_ms, Some(0));
    assert_eq!(step.passes, 1);
    assert_eq!(step.harness_retries, 2);
    assert_eq!(step.probe_wall_ms, 50 + 50 + 50 + 100 + 50);
    let c = find(&r, 0, "x/a", "y/a");
    assert_eq!((c.outcome, c.attempts), (Outcome::Pass, 3));
    let seen: Vec<Connectivity> = c.history.iter().map(|a| a.connectivity).collect();
    assert_eq!(
        seen,
        [
            Connectivity::Harness,
            Connectivity::Harness,
            Connectivity::Connected
        ]
    );
    assert_eq!(platform.log().batch_sizes[..3], [16, 1, 1]);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("re-probed cells 4 time(s)")),
        "{:?}",
        r.warnings
    );
}

#[tokio::test(start_paused = true)]
async fn lasting_harness_errors_are_errors_with_the_harness_reason_never_failures() {
    let mut s = script();
    s.harness_times
        .insert(key("x/b", "y/a", "80/TCP"), u32::MAX);
    let o = RunOptions {
        step_timeout: Duration::ZERO,
        ..opts()
    };
    let r = run_with(&FakePlatform::new(s), &[two_ns()], &o)
        .await
        .expect("run");
    assert_eq!(r.verdict, Verdict::Error);
    assert_eq!((r.summary.failed, r.summary.flaky), (0, 0));
    let c = find(&r, 0, "x/b", "y/a");
    assert_eq!((c.outcome, c.observed), (Outcome::Error, None));
    assert_eq!(c.connectivity, Connectivity::Harness);
    assert!(c.features.is_empty());
    assert!(
        c.detail
            .as_deref()
            .is_some_and(|d| d.contains("Too many open files")),
        "{:?}",
        c.detail
    );
    // One pass (1 + 5 harness re-probes) and one retry (1 + 5).
    assert_eq!(c.attempts, 12);
}

// ---- Convergence is reported as it happened ----

#[tokio::test(start_paused = true)]
async fn a_step_that_only_passed_cell_by_cell_is_not_converged() {
    let mut s = script();
    s.wrong_times.insert(key("x/a", "y/a", "80/TCP"), 1);
    s.wrong_times.insert(key("y/a", "y/b", "80/TCP"), 1);
    let o = RunOptions {
        step_timeout: Duration::ZERO,
        ..opts()
    };
    let r = run_with(&FakePlatform::new(s), &[two_ns()], &o)
        .await
        .expect("run");
    assert_eq!(r.verdict, Verdict::Conformant);
    let step = &r.scenarios[0].steps[0];
    assert_eq!(
        (
            step.converged,
            step.convergence_ms,
            step.mismatched_last_pass,
            step.right_on_retry
        ),
        (false, None, 2, 2)
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("never matched the oracle on a full pass")
                && w.contains("two-ns › initial (2 of 16 cells right only on a retry)")),
        "{:?}",
        r.warnings
    );
}

// ---- Calibration: a probe timeout that cannot tell blocked from slow ----

fn timed(latency_ms: u64) -> Script {
    Script {
        times_each_probe: true,
        connect_latency: Duration::from_millis(latency_ms),
        ..script()
    }
}

#[tokio::test(start_paused = true)]
async fn an_adequate_probe_timeout_is_measured_and_accepted() {
    let o = RunOptions {
        probe_timeout: Duration::from_millis(100),
        ..opts()
    };
    let r = run_with(&FakePlatform::new(timed(7)), &[two_ns()], &o)
        .await
        .expect("run");
    assert_eq!(r.verdict, Verdict::Conformant);
    let cal = r.scenarios[0].steps[0]
        .calibration
        .clone()
        .expect("the first step calibrates");
    // Ten cells of the step are allowed: all are calibration probes (1100 ms timeout).
    assert_eq!((cal.probes, cal.connected, cal.timeout_ms), (10, 10, 1100));
    assert_eq!(
        (cal.p50_ms, cal.max_ms, cal.adequate),
        (Some(7), Some(7), true)
    );
    // Once measured, a session does not calibrate again.
    assert!(r.scenarios[0].steps[1].calibration.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_too_short_probe_timeout_is_an_error_not_a_failure_blamed_on_features() {
    // Connections take 20 ms; the probe timeout is 10 ms: every allowed probe times out.
    let o = RunOptions {
        probe_timeout: Duration::from_millis(10),
        ..opts()
    };
    let r = run_with(&FakePlatform::new(timed(20)), &[two_ns()], &o)
        .await
        .expect("run");
    assert_eq!(r.verdict, Verdict::Error);
    assert_eq!(r.summary.failed, 0);
    assert!(r.failing_features.is_empty(), "{:?}", r.failing_features);
    let cal = r.scenarios[0].steps[0]
        .calibration
        .clone()
        .expect("calibrated");
    assert_eq!(
        (cal.connected, cal.max_ms, cal.adequate),
        (10, Some(20), false)
    );
    // Denied cells timed out too, but a timeout proves nothing here: error, not pass.
    let denied = find(&r, 0, "x/b", "y/a");
    assert_eq!((denied.outcome, denied.observed), (Outcome::Error, None));
    assert!(
        denied
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("cannot tell a blocked connection from a slow one")),
        "{:?}",
        denied.detail
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("--probe-timeout-ms 100 or more")),
        "{:?}",
        r.warnings
    );
}

#[tokio::test(start_paused = true)]
async fn many_allowed_cells_connecting_only_on_the_longer_retry_mark_the_timeout_inadequate() {
    // No calibration sample: the retries (with the longer timeout) are the evidence, as on
    // platforms that cannot time probes one by one.
    let o = RunOptions {
        probe_timeout: Duration::from_millis(10),
        calibration_cells: 0,
        step_timeout: Duration::ZERO,
        ..opts()
    };
    let r = run_with(&FakePlatform::new(timed(20)), &[two_ns()], &o)
        .await
        .expect("run");
    assert_eq!(r.verdict, Verdict::Error);
    assert_eq!(r.summary.failed, 0);
    let step = &r.scenarios[0].steps[0];
    let cal = step.calibration.clone().expect("recorded on the step");
    assert_eq!((cal.probes, cal.late, cal.adequate), (0, 10, false));
    let allowed = find(&r, 0, "x/a", "y/a");
    assert_eq!(
        allowed.outcome,
        Outcome::Pass,
        "connected on the retry: right"
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("10 of 10 allowed cells timed out")),
        "{:?}",
        r.warnings
    );
}

// ---- Waits sized for CI: honest for slow enforcers, short for non-enforcers ----

/// Four steps, each denying something (y isolated, then x, then y again, then x again).
const FOUR_STEPS: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: four
model:
  upstream: {namespaces: [x, y], pods: [a, b], protocols: [TCP], ports: [80]}
probes: ["80/TCP"]
steps:
  - name: deny-y
    apply:
      - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {namespace: y, name: d}, spec: {podSelector: {}}}
  - name: deny-x
    delete: [y/d]
    apply:
      - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {namespace: x, name: d}, spec: {podSelector: {}}}
  - name: deny-y-again
    delete: [x/d]
    apply:
      - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {namespace: y, name: d}, spec: {podSelector: {}}}
  - name: deny-x-again
    delete: [y/d]
    apply:
      - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {namespace: x, name: d}, spec: {podSelector: {}}}
"#;

fn waits(r: &RunReport) -> Vec<(StepWait, u32, Option<u64>)> {
    r.scenarios
        .iter()
        .flat_map(|s| &s.steps)
        .map(|s| (s.wait, s.passes, s.convergence_ms))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_dataplane_that_never_enforces_stops_costing_full_step_timeouts() {
    let s = Script {
        ignore_policies: true,
        ..script()
    };
    let o = RunOptions {
        step_timeout: Duration::from_secs(60),
        ..opts()
    };
    let r = run_with(&FakePlatform::new(s), &[scenario(FOUR_STEPS, "four")], &o)
        .await
        .expect("run");
    assert_eq!(r.verdict, Verdict::PoliciesIgnored);
    use StepWait::{Full, Shortened};
    // The first step waits its whole 60 s (a pass every 150 ms: 401 passes); the window (the
    // step timeout) has then passed without enforcement, so later steps make one pass each.
    assert_eq!(
        waits(&r),
        [
            (Full, 401, None),
            (Shortened, 1, None),
            (Shortened, 1, None),
            (Shortened, 1, None)
        ]
    );
    assert_eq!(r.enforcement.window_ms, 60_000);
    assert_eq!(r.enforcement.first_seen_ms, None);
    assert_eq!(r.enforcement.shortened_steps, 3);
    // 60 s + three short steps (a 50 ms pass, a 100 ms pause and a 50 ms retry each) + applies.
    assert!(r.duration_ms < 61_000, "{}", r.duration_ms);
    assert!(
        r.warnings.iter().any(|w| w.contains("3 later step(s)")),
        "{:?}",
        r.warnings
    );
}

#[tokio::test(start_paused = true)]
async fn parallel_scenarios_share_one_window() {
    let s = Script {
        ignore_policies: true,
        max_parallel: 2,
        ..script()
    };
    let scenarios: Vec<Scenario> = (0..4)
        .map(|i| scenario(FOUR_STEPS, &format!("s{i}")))
        .collect();
    let r = run_with(&FakePlatform::new(s), &scenarios, &opts())
        .await
        .expect("run");
    // s0 and s1 wait their first step's 3 s together; everything after is shortened, the
    // first steps of s2 and s3 included.
    let full: Vec<(String, String)> = r
        .scenarios
        .iter()
        .flat_map(|sc| {
            sc.steps
                .iter()
                .filter(|st| st.wait == StepWait::Full)
                .map(move |st| (sc.name.clone(), st.name.clone()))
        })
        .collect();
    assert_eq!(
        full,
        [
            ("s0".to_string(), "deny-y".to_string()),
            ("s1".to_string(), "deny-y".to_string())
        ]
    );
    assert_eq!(r.enforcement.shortened_steps, 14);
    // Without shortening: two waves of four 3 s steps each, over 24 s.
    assert!(r.duration_ms < 5_000, "{}", r.duration_ms);
}

#[tokio::test(start_paused = true)]
async fn a_slow_enforcer_keeps_full_waits_and_its_delay_shows_in_convergence() {
    let s = Script {
        convergence_delay: Duration::from_millis(2000),
        delay_first_step: true,
        ..script()
    };
    let r = run_with(
        &FakePlatform::new(s),
        &[scenario(FOUR_STEPS, "four")],
        &opts(),
    )
    .await
    .expect("run");
    assert_eq!(r.verdict, Verdict::Conformant);
    use StepWait::Full;
    // Passes start every 150 ms; the first after 2 s is at 2100 ms (pass 15).
    assert_eq!(
        waits(&r),
        [
            (Full, 15, Some(2100)),
            (Full, 15, Some(2100)),
            (Full, 15, Some(2100)),
            (Full, 15, Some(2100))
        ]
    );
    assert_eq!(r.enforcement.first_seen_ms, Some(2150));
    assert_eq!(r.enforcement.shortened_steps, 0);
}

#[tokio::test(start_paused = true)]
async fn enforcement_seen_late_restores_full_waits() {
    // Nothing is enforced for the first 3.3 s. The first step waits its 3 s (its retry at
    // 3150 ms still sees nothing); the window has passed, so the second step (pass at 3205 ms)
    // is shortened; its retry at 3355 ms sees the dataplane enforce, so the remaining steps
    // wait in full again.
    let s = Script {
        enforce_from: Some(Duration::from_millis(3300)),
        ..script()
    };
    let r = run_with(
        &FakePlatform::new(s),
        &[scenario(FOUR_STEPS, "four")],
        &opts(),
    )
    .await
    .expect("run");
    let w: Vec<StepWait> = waits(&r).into_iter().map(|(w, _, _)| w).collect();
    assert_eq!(
        w,
        [
            StepWait::Full,
            StepWait::Shortened,
            StepWait::Full,
            StepWait::Full
        ]
    );
    assert_eq!(r.enforcement.shortened_steps, 1);
    assert!(r.enforcement.first_seen_ms.is_some());
    let last = &r.scenarios[0].steps[3];
    assert!(last.converged);
}

// ---- Sampling ----

const NINE_PODS: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: nine
model:
  upstream: {namespaces: [x, y, z], pods: [a, b, c], protocols: [TCP], ports: [80, 81]}
probes: ["80/TCP", "81/TCP"]
steps:
  - name: mixed
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {namespace: x, name: only-y-on-80}
        spec:
          podSelector: {}
          ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {namespace: z, name: c-egress}
        spec:
          podSelector: {matchLabels: {pod: c}}
          policyTypes: [Egress]
          egress: [{to: [{podSelector: {matchLabels: {pod: a}}}]}]
"#;

#[tokio::test(start_paused = true)]
async fn a_sample_covers_every_pod_and_decision_path_and_is_reproducible() {
    use netpol_conformance::run::{SampleOptions, plan_step, sample};
    let sc = scenario(NINE_PODS, "nine");
    let step = &sc.steps[0];
    let plan = plan_step(step, &step.probes);
    assert_eq!(plan.len(), 162);
    let oracle = step.oracle();
    let paths: std::collections::BTreeSet<String> = plan
        .iter()
        .map(|c| sample::decision_path(&oracle, c))
        .collect();
    let o = |seed| RunOptions {
        sample: Some(SampleOptions { cells: 20, seed }),
        ..opts()
    };
    let r = run_with(
        &FakePlatform::new(script()),
        std::slice::from_ref(&sc),
        &o(42),
    )
    .await
    .expect("run");
    assert_eq!(r.verdict, Verdict::Conformant);
    let st = &r.scenarios[0].steps[0];
    let info = st.sample.clone().expect("sampled");
    assert_eq!(info.planned, 162);
    assert_eq!(info.strata as usize, paths.len());
    assert!(info.sampled >= 20 && info.sampled < 162, "{info:?}");
    assert_eq!(st.cells.len() as u64, info.sampled);
    assert_eq!(info.unsampled, 162 - info.sampled);
    assert_eq!(r.summary.unsampled, info.unsampled);
    assert_eq!(r.summary.cells, info.sampled);
    let sample_meta = r.sample.clone().expect("run sample");
    assert_eq!((sample_meta.cells_per_step, sample_meta.seed), (20, 42));
    // Every source, every destination and every decision path is represented.
    let pods: std::collections::BTreeSet<String> =
        step.model.pods.keys().map(|p| p.to_string()).collect();
    let from: std::collections::BTreeSet<String> =
        st.cells.iter().map(|c| c.from.to_string()).collect();
    let to: std::collections::BTreeSet<String> =
        st.cells.iter().map(|c| c.to.to_string()).collect();
    assert_eq!((&from, &to), (&pods, &pods));
    let covered: std::collections::BTreeSet<String> = st
        .cells
        .iter()
        .map(|c| {
            let pc = plan
                .iter()
                .find(|p| {
                    p.request.from == c.from
                        && p.request.to == c.to
                        && p.request.probe.port == c.port
                })
                .expect("a planned cell");
            sample::decision_path(&oracle, pc)
        })
        .collect();
    assert_eq!(covered, paths);
    // The same seed draws the same cells; another seed draws others.
    let cells = |r: &RunReport| -> Vec<String> {
        r.scenarios[0].steps[0]
            .cells
            .iter()
            .map(|c| format!("{}>{}:{}", c.from, c.to, c.port))
            .collect()
    };
    let again = run_with(
        &FakePlatform::new(script()),
        std::slice::from_ref(&sc),
        &o(42),
    )
    .await
    .expect("run");
    assert_eq!(cells(&again), cells(&r));
    let other = run_with(
        &FakePlatform::new(script()),
        std::slice::from_ref(&sc),
        &o(7),
    )
    .await
    .expect("run");
    assert_ne!(cells(&other), cells(&r));
}

#[tokio::test(start_paused = true)]
async fn a_sample_still_catches_a_broken_rule() {
    use netpol_conformance::run::SampleOptions;
    // The dataplane ignores the port of x's rule: y -> x on 81 is allowed although denied. Every
    // such cell shares one decision path, so even a tiny sample probes one of them.
    let mut s = script();
    for from in ["y/a", "y/b", "y/c"] {
        for to in ["x/a", "x/b", "x/c"] {
            s.always_wrong.insert(key(from, to, "81/TCP"));
        }
    }
    let o = RunOptions {
        sample: Some(SampleOptions { cells: 1, seed: 3 }),
        step_timeout: Duration::ZERO,
        ..opts()
    };
    let r = run_with(&FakePlatform::new(s), &[scenario(NINE_PODS, "nine")], &o)
        .await
        .expect("run");
    assert_eq!(r.verdict, Verdict::NonConformant);
    assert!(r.summary.failed >= 1);
    assert!(
        r.failing_features.contains(&"ports".to_string()),
        "{:?}",
        r.failing_features
    );
}
