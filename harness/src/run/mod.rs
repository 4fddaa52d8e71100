//! The run engine, shared by every provider: plan, execute, collect.
//!
//! - **Plan**: for each scenario step and probe, every (from, to) pod pair with the oracle's answer
//!   (`step.oracle().matrix(probe)`).
//! - **Execute**: one [`Session`] per scenario, up to [`Platform::max_parallel`] at once. Per step:
//!   [`Session::apply`], then whole-matrix passes ([`Session::probe`]) until the observed matrix
//!   matches the expected one or the step timeout passes. `convergence_ms` runs from `apply`
//!   returning to the *start* of the first matching pass (so it can be below one pass's wall time;
//!   `convergence_ms + probe_wall_ms` bounds it from above).
//! - **Collect**: cells still wrong after the passes are retried alone (`attempts` in total); a cell
//!   right on a retry is `flaky`, never a silent pass. `unsupported` observations are never retried;
//!   `error` ones are, and stay `error` unless a retry observes something. Failing cells are traced
//!   to NetworkPolicy features ([`crate::verdict`]).
//!
//! Durations come from tokio's clock, so tests with paused time get exact, repeatable figures; the
//! run id and start time are injected through [`RunOptions`].

mod event;

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

pub use event::{Event, Fanout, NullReporter, Recorder, Reporter};

use crate::model::Probe;
use crate::policy::Oracle;
use crate::probe::{Connectivity, Observation, Outcome, ProbeRequest};
use crate::provider::{Platform, ProviderError, Session};
use crate::report::model::{AttemptReport, CellReport, RunReport, ScenarioReport, StepReport};
use crate::scenario::{Scenario, Step};
use crate::verdict;

/// Everything a run needs besides the platform and the scenarios.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Names this run's resources and report directory.
    pub run_id: String,
    /// RFC 3339 wall-clock start, recorded in reports (injected so snapshots are stable).
    pub started_at: String,
    /// Replace every step's probes (`--probe`); empty: each step's own.
    pub probes: Vec<Probe>,
    pub probe_timeout: Duration,
    /// How long a step may take to converge before its cells are judged as they are.
    pub step_timeout: Duration,
    /// Attempts a wrong cell gets, the first included (at least 1).
    pub attempts: u32,
    /// Pause between passes and before retries, so a fast-failing provider does not spin.
    pub pass_interval: Duration,
    /// Cells per [`Session::probe`] call (`None`: a whole pass at once). Concurrency inside a
    /// batch is the provider's business.
    pub batch_size: Option<usize>,
    /// Injected faults, recorded in reports.
    pub faults: Vec<String>,
}

impl RunOptions {
    /// Local-dataplane defaults: 1 s probes, 3 s steps, 2 attempts.
    pub fn new(run_id: impl Into<String>, started_at: impl Into<String>) -> Self {
        RunOptions {
            run_id: run_id.into(),
            started_at: started_at.into(),
            probes: Vec::new(),
            probe_timeout: Duration::from_millis(1000),
            step_timeout: Duration::from_millis(3000),
            attempts: 2,
            pass_interval: Duration::from_millis(100),
            batch_size: None,
            faults: Vec::new(),
        }
    }
}

/// A short, unique, timestamp-based run id: `YYYYMMDD-HHMMSS-xxxx` (UTC; `xxxx` from the clock's
/// sub-second part and the process id, so two runs in one second differ).
pub fn new_run_id(now: SystemTime) -> String {
    let d = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(0);
    let stamp = chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y%m%d-%H%M%S").to_string())
        .unwrap_or_else(|| "00000000-000000".into());
    let salt = (d.subsec_nanos() ^ std::process::id().wrapping_mul(2_654_435_761)) & 0xffff;
    format!("{stamp}-{salt:04x}")
}

/// RFC 3339 (UTC, seconds) for reports.
pub fn rfc3339(now: SystemTime) -> String {
    let d = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Asks a run to stop (Ctrl-C): sessions stop probing, tear down, and the run returns
/// [`ProviderError::Interrupted`].
#[derive(Debug)]
pub struct CancelHandle(watch::Sender<bool>);

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

/// The receiving side of a [`CancelHandle`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct Cancel(watch::Receiver<bool>);

impl Cancel {
    pub fn pair() -> (CancelHandle, Cancel) {
        let (tx, rx) = watch::channel(false);
        (CancelHandle(tx), Cancel(rx))
    }

    /// Never fires.
    pub fn never() -> Cancel {
        Cancel::pair().1
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once cancelled (never, if the handle is dropped uncancelled).
    pub async fn cancelled(&self) {
        let mut rx = self.0.clone();
        loop {
            if *rx.borrow_and_update() {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The caller's cancel and the run's own (set when a scenario fails, to stop the others).
struct Stop {
    external: Cancel,
    internal: Cancel,
}

impl Stop {
    fn is_set(&self) -> bool {
        self.external.is_cancelled() || self.internal.is_cancelled()
    }
    async fn wait(&self) {
        tokio::select! {
            _ = self.external.cancelled() => {}
            _ = self.internal.cancelled() => {}
        }
    }
}

type Sink<'r> = Mutex<&'r mut (dyn Reporter + Send)>;

fn emit(sink: &Sink<'_>, event: Event) {
    let mut r = sink.lock().unwrap_or_else(|p| p.into_inner());
    r.event(&event);
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The probes a step runs: the overrides when given, else the step's own.
pub fn step_probes(overrides: &[Probe], step: &Step) -> Vec<Probe> {
    if overrides.is_empty() {
        step.probes.clone()
    } else {
        overrides.to_vec()
    }
}

/// One cell of the plan: what to probe and what the oracle requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCell {
    pub request: ProbeRequest,
    /// `None`: the API leaves the answer to the implementation; the cell is probed and recorded
    /// but not judged (outcome `unsupported`).
    pub expected: Option<bool>,
    /// Why `expected` is `None` (which policies of one tier and priority disagree).
    pub note: Option<String>,
    /// A cluster-wide policy selects an end of this cell: only a platform realising them can be
    /// judged on it ([`Platform::cluster_policy_gap`]).
    pub cluster: bool,
}

/// Every cell of a step, probe by probe, then row by row (from), then column by column (to) in
/// `namespace/name` order: the order of every report.
pub fn plan_step(step: &Step, probes: &[Probe]) -> Vec<PlannedCell> {
    let oracle = step.oracle();
    // Probes go to pod IPs today. A Service-IP probe mode (issue 11) must plan with
    // `Addressing::ServiceIp`: a pod reaching itself through a Service stays subject to
    // cluster-wide policies, unlike the pod-IP hairpin.
    let via = crate::policy::Addressing::PodIp;
    let mut out = Vec::new();
    for &probe in probes {
        let table = oracle.expected_matrix_via(probe, via);
        for (from, to, &expected) in table.iter() {
            let Some(dst) = step.model.pod(to) else {
                continue;
            };
            let note = match expected {
                Some(_) => None,
                None => oracle
                    .decide_via(from, to, probe, via)
                    .map(|d| undefined_note(&d)),
            };
            out.push(PlannedCell {
                request: ProbeRequest {
                    from: from.clone(),
                    to: to.clone(),
                    to_ip: dst.ip,
                    probe,
                },
                expected,
                note,
                cluster: !step.cluster_policies.is_empty()
                    && oracle.cluster_policies_apply(from, to, via),
            });
        }
    }
    out
}

/// The reason an implementation-defined cell is not judged, naming the disagreeing policies.
fn undefined_note(d: &crate::policy::Decision) -> String {
    let mut parts = Vec::new();
    for side in [&d.egress, &d.ingress] {
        for c in side.tiers.iter().flat_map(|t| &t.conflicts) {
            let who: Vec<String> = c
                .policies
                .iter()
                .map(|(p, a)| format!("{p} ({})", a.word(p.kind)))
                .collect();
            parts.push(format!(
                "{} at the {} tier{}: {}",
                side.direction.key(),
                c.tier,
                c.priority
                    .map_or_else(String::new, |p| format!(" priority {p}")),
                who.join(", ")
            ));
        }
    }
    format!(
        "not judged: the API leaves this cell to the implementation (same priority, different \
         actions: {})",
        parts.join("; ")
    )
}

/// Whether an observation calls for another attempt: it contradicts the oracle, or it failed.
fn needs_retry(expected: bool, o: &Observation) -> bool {
    match o.result.allowed() {
        Some(a) => a != expected,
        None => o.result == Connectivity::Error,
    }
}

/// Classifies a cell from its attempts (oldest first); returns the outcome and the index of the
/// attempt that decided it (whose connectivity, detail and command the report keeps).
pub fn classify(expected: bool, attempts: &[Observation]) -> (Outcome, usize) {
    let Some(last) = attempts.len().checked_sub(1) else {
        return (Outcome::Error, 0);
    };
    if let Some(i) = attempts
        .iter()
        .position(|o| o.result == Connectivity::Unsupported)
    {
        return (Outcome::Unsupported, i);
    }
    if attempts[last].result.allowed() == Some(expected) {
        return if last == 0 {
            (Outcome::Pass, 0)
        } else {
            (Outcome::Flaky, last)
        };
    }
    // A contradicting observation outweighs later probe errors.
    if let Some(i) = attempts
        .iter()
        .rposition(|o| o.result.allowed() == Some(!expected))
    {
        return (Outcome::Fail, i);
    }
    (Outcome::Error, last)
}

/// Builds a cell's report from its attempts.
pub fn cell_report(cell: &PlannedCell, attempts: &[Observation]) -> CellReport {
    let (outcome, i) = match cell.expected {
        Some(e) => classify(e, attempts),
        // Recorded as observed, never judged.
        None => (Outcome::Unsupported, attempts.len().saturating_sub(1)),
    };
    let deciding = attempts.get(i);
    let r = &cell.request;
    CellReport {
        from: r.from.clone(),
        to: r.to.clone(),
        port: r.probe.port,
        protocol: r.probe.protocol,
        expected: cell.expected,
        observed: deciding.and_then(|o| o.result.allowed()),
        outcome,
        attempts: u32::try_from(attempts.len()).unwrap_or(u32::MAX),
        connectivity: deciding.map_or(Connectivity::Error, |o| o.result),
        detail: match (&cell.note, deciding.and_then(|o| o.detail.clone())) {
            (Some(n), Some(d)) => Some(format!("{n}; {d}")),
            (Some(n), None) => Some(n.clone()),
            (None, d) => d.or_else(|| deciding.is_none().then(|| "never probed".to_string())),
        },
        explanation: None,
        command: deciding.map(|o| o.command.clone()).unwrap_or_default(),
        features: Vec::new(),
        history: if attempts.len() > 1 {
            attempts
                .iter()
                .map(|o| AttemptReport {
                    connectivity: o.result,
                    observed: o.result.allowed(),
                    elapsed_ms: o.elapsed_ms,
                    detail: o.detail.clone(),
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// Probes `reqs` in batches; always one observation per request (a provider answering with the
/// wrong count gets `error` observations for the missing ones).
async fn probe_all<S: Session>(
    session: &S,
    reqs: &[ProbeRequest],
    timeout: Duration,
    batch: Option<usize>,
) -> Vec<Observation> {
    let size = batch.unwrap_or(usize::MAX).max(1);
    let mut out = Vec::with_capacity(reqs.len());
    for chunk in reqs.chunks(size) {
        let mut obs = session.probe(chunk, timeout).await;
        if obs.len() != chunk.len() {
            let got = obs.len();
            obs.truncate(chunk.len());
            while obs.len() < chunk.len() {
                obs.push(Observation {
                    result: Connectivity::Error,
                    detail: Some(format!(
                        "provider returned {got} observations for {} probes",
                        chunk.len()
                    )),
                    elapsed_ms: 0,
                    command: String::new(),
                });
            }
        }
        out.extend(obs);
    }
    out
}

fn mismatches(plan: &[PlannedCell], obs: &[Observation]) -> usize {
    plan.iter()
        .zip(obs)
        .filter(|(c, o)| {
            c.expected.is_some()
                && o.result != Connectivity::Unsupported
                && o.result.allowed() != c.expected
        })
        .count()
}

/// Runs every scenario on `platform` and returns the report. The caller created the platform and
/// closes it ([`Platform::close`]) whatever this returns; every session opened here is torn down
/// here, also on failure and cancellation. A provider failure stops the whole run (the other
/// scenarios stop at their next step or pass) and is returned after teardown.
pub async fn execute<P: Platform>(
    platform: &P,
    scenarios: &[Scenario],
    opts: &RunOptions,
    reporter: &mut (dyn Reporter + Send),
    cancel: &Cancel,
) -> Result<RunReport, ProviderError> {
    let started = Instant::now();
    let info = platform.info();
    let sink: Sink<'_> = Mutex::new(reporter);
    let planned: usize = scenarios
        .iter()
        .flat_map(|s| &s.steps)
        .map(|st| st.model.pods.len().pow(2) * step_probes(&opts.probes, st).len())
        .sum();
    emit(
        &sink,
        Event::RunStarted {
            run_id: opts.run_id.clone(),
            info: info.clone(),
            scenarios: scenarios.len(),
            cells: planned,
        },
    );
    let (abort, internal) = Cancel::pair();
    let stop = Stop {
        external: cancel.clone(),
        internal,
    };
    let mut results: Vec<Option<ScenarioReport>> = vec![None; scenarios.len()];
    let mut first_err: Option<ProviderError> = None;
    {
        let (sink, stop) = (&sink, &stop);
        let mut stream = futures::stream::iter(scenarios.iter().enumerate())
            .map(|(i, s)| async move { (i, run_scenario(platform, i, s, opts, sink, stop).await) })
            .buffer_unordered(platform.max_parallel().max(1));
        while let Some((i, r)) = stream.next().await {
            match r {
                Ok(rep) => results[i] = Some(rep),
                Err(e) => {
                    if first_err.is_none() {
                        emit(
                            sink,
                            Event::Interrupted {
                                reason: e.to_string(),
                            },
                        );
                        abort.cancel();
                        first_err = Some(e);
                    }
                }
            }
        }
    }
    if let Some(e) = first_err {
        // An outside cancel wins over the errors it provoked.
        return Err(if cancel.is_cancelled() {
            ProviderError::Interrupted
        } else {
            e
        });
    }
    let scenarios: Vec<ScenarioReport> = results.into_iter().flatten().collect();
    let mut warnings = info.warnings.clone();
    let summary = verdict::summarize(&scenarios);
    if summary.cells == 0 {
        warnings.push("no cells were probed (no pods or no probes)".into());
    }
    let report = RunReport {
        verdict: verdict::judge(&scenarios),
        provider: info.provider.clone(),
        cni: info.cni.clone(),
        probe_timeout_ms: ms(opts.probe_timeout),
        summary,
        failing_features: verdict::failing_features(&scenarios),
        scenarios,
        run_id: opts.run_id.clone(),
        started_at: opts.started_at.clone(),
        duration_ms: ms(started.elapsed()),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        faults: opts.faults.clone(),
        environment: info.environment.clone(),
        warnings,
        step_timeout_ms: ms(opts.step_timeout),
        attempts: opts.attempts.max(1),
    };
    emit(
        &sink,
        Event::RunFinished {
            report: Box::new(report.clone()),
        },
    );
    Ok(report)
}

async fn run_scenario<P: Platform>(
    platform: &P,
    index: usize,
    scenario: &Scenario,
    opts: &RunOptions,
    sink: &Sink<'_>,
    stop: &Stop,
) -> Result<ScenarioReport, ProviderError> {
    if stop.is_set() {
        return Err(ProviderError::Interrupted);
    }
    emit(
        sink,
        Event::ScenarioStarted {
            index,
            name: scenario.name.clone(),
            source: scenario.source.clone(),
            steps: scenario.steps.len(),
        },
    );
    // Not raced against the stop signal: an abandoned open could leave half-created resources
    // its session would not know to remove.
    let mut session = platform.open(index, scenario).await?;
    let gap = platform.cluster_policy_gap();
    let result = run_steps(
        &mut session,
        index,
        scenario,
        opts,
        gap.as_deref(),
        sink,
        stop,
    )
    .await;
    let teardown = session.teardown().await;
    let report = result?;
    teardown?;
    emit(
        sink,
        Event::ScenarioFinished {
            index,
            report: report.clone(),
        },
    );
    Ok(report)
}

/// Whether a step showed the dataplane enforcing: some cell observed blocked, as required.
fn enforced_something(step: &StepReport) -> bool {
    step.cells
        .iter()
        .any(|c| c.expected == Some(false) && c.observed == Some(false))
}

async fn run_steps<S: Session>(
    session: &mut S,
    index: usize,
    scenario: &Scenario,
    opts: &RunOptions,
    gap: Option<&str>,
    sink: &Sink<'_>,
    stop: &Stop,
) -> Result<ScenarioReport, ProviderError> {
    let oracles: Vec<Oracle<'_>> = scenario.steps.iter().map(|s| s.oracle()).collect();
    let mut steps = Vec::with_capacity(scenario.steps.len());
    for (k, step) in scenario.steps.iter().enumerate() {
        if stop.is_set() {
            return Err(ProviderError::Interrupted);
        }
        // Earlier steps where the dataplane was seen enforcing: only they can show it stuck.
        let enforced: Vec<&Oracle<'_>> = steps
            .iter()
            .zip(&oracles)
            .filter(|(r, _)| enforced_something(r))
            .map(|(_, o)| o)
            .collect();
        let report = run_step(
            session,
            index,
            scenario,
            k,
            step,
            &oracles[k],
            &enforced,
            opts,
            gap,
            sink,
            stop,
        )
        .await?;
        emit(
            sink,
            Event::StepFinished {
                scenario: index,
                scenario_name: scenario.name.clone(),
                step: k,
                report: report.clone(),
            },
        );
        steps.push(report);
    }
    Ok(ScenarioReport {
        name: scenario.name.clone(),
        source: scenario.source.clone(),
        steps,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_step<S: Session>(
    session: &mut S,
    index: usize,
    scenario: &Scenario,
    k: usize,
    step: &Step,
    oracle: &Oracle<'_>,
    earlier: &[&Oracle<'_>],
    opts: &RunOptions,
    gap: Option<&str>,
    sink: &Sink<'_>,
    stop: &Stop,
) -> Result<StepReport, ProviderError> {
    let probes = step_probes(&opts.probes, step);
    let full_plan = plan_step(step, &probes);
    // Cells a cluster-wide policy decides are not probed where the platform cannot realise those
    // policies: they are reported unsupported with the platform's reason, never judged.
    let held = |c: &PlannedCell| gap.is_some() && c.cluster;
    let plan: Vec<PlannedCell> = full_plan.iter().filter(|c| !held(c)).cloned().collect();
    let requests: Vec<ProbeRequest> = plan.iter().map(|c| c.request.clone()).collect();
    emit(
        sink,
        Event::StepStarted {
            scenario: index,
            scenario_name: scenario.name.clone(),
            step: k,
            step_name: step.name.clone(),
            probes: probes.clone(),
            cells: full_plan.len(),
        },
    );
    session.apply(step).await?;
    let applied = Instant::now();
    let deadline = applied + opts.step_timeout;

    let mut passes = 0u32;
    let mut convergence = None;
    let (last, wall) = loop {
        if stop.is_set() {
            return Err(ProviderError::Interrupted);
        }
        let t0 = Instant::now();
        let obs = tokio::select! {
            o = probe_all(session, &requests, opts.probe_timeout, opts.batch_size) => o,
            _ = stop.wait() => return Err(ProviderError::Interrupted),
        };
        let wall = t0.elapsed();
        passes += 1;
        let wrong = mismatches(&plan, &obs);
        emit(
            sink,
            Event::PassFinished {
                scenario: index,
                step: k,
                pass: passes,
                mismatches: wrong,
                wall_ms: ms(wall),
            },
        );
        if wrong == 0 {
            convergence = Some(ms(t0.duration_since(applied)));
            break (obs, wall);
        }
        let now = Instant::now();
        if now >= deadline {
            break (obs, wall);
        }
        tokio::select! {
            _ = tokio::time::sleep(opts.pass_interval.min(deadline - now)) => {}
            _ = stop.wait() => return Err(ProviderError::Interrupted),
        }
    };

    // Retry only the cells still wrong, each up to `attempts` in total.
    let mut history: Vec<Vec<Observation>> = last.into_iter().map(|o| vec![o]).collect();
    for _ in 1..opts.attempts.max(1) {
        let wrong: Vec<usize> = (0..plan.len())
            .filter(|&i| {
                history[i]
                    .last()
                    .is_some_and(|o| plan[i].expected.is_some_and(|e| needs_retry(e, o)))
            })
            .collect();
        if wrong.is_empty() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(opts.pass_interval) => {}
            _ = stop.wait() => return Err(ProviderError::Interrupted),
        }
        let batch: Vec<ProbeRequest> = wrong.iter().map(|&i| requests[i].clone()).collect();
        let obs = tokio::select! {
            o = probe_all(session, &batch, opts.probe_timeout, opts.batch_size) => o,
            _ = stop.wait() => return Err(ProviderError::Interrupted),
        };
        for (i, o) in wrong.into_iter().zip(obs) {
            history[i].push(o);
        }
    }

    // Back in plan order, the held cells with the platform's reason as their only observation.
    let mut probed = plan.iter().zip(&history);
    let not_realised = || {
        vec![Observation {
            result: Connectivity::Unsupported,
            detail: gap.map(String::from),
            elapsed_ms: 0,
            command: String::new(),
        }]
    };
    let merged: Vec<(&PlannedCell, std::borrow::Cow<'_, [Observation]>)> = full_plan
        .iter()
        .filter_map(|c| {
            if held(c) {
                Some((c, std::borrow::Cow::Owned(not_realised())))
            } else {
                probed
                    .next()
                    .map(|(c, h)| (c, std::borrow::Cow::Borrowed(h.as_slice())))
            }
        })
        .collect();
    let cells: Vec<CellReport> = merged
        .iter()
        .map(|(c, h)| {
            let mut rep = cell_report(c, h);
            // The oracle's reasons, for the cells a reader will ask about (kept off passing
            // cells so report.json stays proportionate to what went wrong).
            if matches!(rep.outcome, Outcome::Fail | Outcome::Flaky | Outcome::Error) {
                rep.explanation = oracle
                    .decide(&rep.from, &rep.to, c.request.probe)
                    .map(|d| crate::policy::explain::render(&d, step));
            }
            if rep.outcome == Outcome::Fail {
                rep.features = verdict::cell_features(oracle, earlier, &rep)
                    .into_iter()
                    .map(|f| f.as_str().to_string())
                    .collect();
            }
            emit(
                sink,
                Event::CellFinished {
                    scenario: index,
                    step: k,
                    cell: rep.clone(),
                },
            );
            rep
        })
        .collect();
    Ok(StepReport {
        name: step.name.clone(),
        convergence_ms: convergence,
        probe_wall_ms: ms(wall),
        passes,
        cells,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(result: Connectivity) -> Observation {
        Observation {
            result,
            detail: None,
            elapsed_ms: 1,
            command: "probe".into(),
        }
    }

    #[test]
    fn classification_covers_every_outcome() {
        use Connectivity::*;
        assert_eq!(classify(true, &[obs(Connected)]), (Outcome::Pass, 0));
        assert_eq!(classify(false, &[obs(Timeout)]), (Outcome::Pass, 0));
        assert_eq!(classify(false, &[obs(Refused)]), (Outcome::Pass, 0));
        assert_eq!(
            classify(true, &[obs(Timeout), obs(Connected)]),
            (Outcome::Flaky, 1)
        );
        assert_eq!(
            classify(true, &[obs(Error), obs(Connected)]),
            (Outcome::Flaky, 1)
        );
        assert_eq!(
            classify(true, &[obs(Timeout), obs(Timeout)]),
            (Outcome::Fail, 1)
        );
        assert_eq!(
            classify(true, &[obs(Timeout), obs(Error)]),
            (Outcome::Fail, 0)
        );
        assert_eq!(
            classify(true, &[obs(Error), obs(Error)]),
            (Outcome::Error, 1)
        );
        assert_eq!(
            classify(true, &[obs(Unsupported)]),
            (Outcome::Unsupported, 0)
        );
        assert_eq!(classify(true, &[]), (Outcome::Error, 0));
    }

    #[test]
    fn retry_only_wrong_or_failed_cells() {
        assert!(needs_retry(true, &obs(Connectivity::Timeout)));
        assert!(needs_retry(false, &obs(Connectivity::Connected)));
        assert!(needs_retry(true, &obs(Connectivity::Error)));
        assert!(!needs_retry(true, &obs(Connectivity::Unsupported)));
        assert!(!needs_retry(true, &obs(Connectivity::Connected)));
    }

    #[test]
    fn run_ids_are_timestamped_and_short() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let id = new_run_id(t);
        assert!(id.starts_with("20231114-221320-"), "{id}");
        assert_eq!(id.len(), 20);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }
}
