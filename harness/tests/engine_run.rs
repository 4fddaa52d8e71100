//! The run engine against a scripted fake provider, in paused (virtual) time so every duration is
//! exact: outcomes, flaky classification, convergence, retries, the four verdicts, failing
//! features, teardown on failure and cancellation, batching and parallelism.

mod engine_support;

use std::time::Duration;

use engine_support::{FakePlatform, Script, TWO_NS, key, scenario, two_ns, with_sctp};
use netpol_conformance::probe::{Connectivity, Outcome};
use netpol_conformance::provider::ProviderError;
use netpol_conformance::report::model::{CellReport, RunReport, Verdict};
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
