//! The run engine, shared by every provider: plan, execute, collect.
//!
//! - **Plan**: for each scenario step and probe, every (from, to) pod pair with the oracle's answer
//!   (`step.oracle().matrix(probe)`), or a stratified sample of them ([`sample`], `--sample`).
//! - **Execute**: one [`Session`] per scenario, up to [`Platform::max_parallel`] at once. Per step:
//!   [`Session::apply`], then whole-matrix passes ([`Session::probe`]) until the observed matrix
//!   matches the expected one or the step timeout passes (sooner when the run has seen no
//!   enforcement at all for a whole window: [`waits`]). `convergence_ms` runs from `apply`
//!   returning to the *start* of the first matching pass (so it can be below one pass's wall time;
//!   `convergence_ms + probe_wall_ms` bounds it from above).
//! - **Harness errors** ([`Connectivity::Harness`]: the harness ran short of descriptors, ports,
//!   threads) are re-probed within the pass after short pauses, never judged: they are not the
//!   dataplane's answer, so they never make a cell `flaky` or `fail`. Only if they persist is the
//!   cell `error`, with the harness's reason.
//! - **Calibrate** (where observations time each probe alone, [`Platform::times_each_probe`]):
//!   a session's first passes also probe a sample of allowed cells with a longer timeout
//!   ([`RunOptions::calibration_timeout`]) and report their connect latency, and retries of
//!   allowed cells that timed out use that longer timeout. When many of them then connect only
//!   after at least the probe timeout, the dataplane was letting them through and the timeout cut
//!   them off: it cannot tell blocked from slow, so the session's timeouts stop counting as
//!   evidence and their cells are `error` (verdict `error`, with a warning suggesting a timeout),
//!   instead of failures blamed on features.
//! - **Collect**: cells still wrong after the passes are retried alone (`attempts` in total); a cell
//!   right on a retry is `flaky`, never a silent pass, and a step whose matrix never matched on a
//!   full pass says so (`converged: false`, `right_on_retry`). `unsupported` observations are
//!   never retried; `error` ones are, and stay `error` unless a retry observes something. Failing
//!   cells are traced to NetworkPolicy features ([`crate::verdict`]).
//!
//! Durations come from tokio's clock, so tests with paused time get exact, repeatable figures; the
//! run id and start time are injected through [`RunOptions`].

mod event;
pub mod sample;
mod waits;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

pub use event::{Event, Fanout, NullReporter, Recorder, Reporter};
pub use sample::SampleOptions;
pub use waits::EnforcementWatch;

use crate::model::{Probe, Protocol};
use crate::policy::Oracle;
use crate::probe::{Connectivity, Observation, Outcome, ProbeRequest};
use crate::provider::{Platform, ProviderError, Session};
use crate::report::model::{
    AttemptReport, Calibration, CellReport, GapReport, PhaseTimes, RunReport, SampleReport,
    ScenarioReport, StepReport, StepSample, StepWait,
};
use crate::scenario::{Scenario, Step};
use crate::service::{self, ProbeMode};
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
    /// Re-probes a cell gets within a pass when its probe failed for the harness's own reasons
    /// ([`Connectivity::Harness`]), after pauses doubling from `harness_backoff`. They are not
    /// attempts of the dataplane.
    pub harness_retries: u32,
    pub harness_backoff: Duration,
    /// Probe a stratified sample of each step's cells instead of the whole matrix.
    pub sample: Option<SampleOptions>,
    /// How long the dataplane may show no enforcement at all (no cell the oracle denies observed
    /// blocked, anywhere in the run) before steps stop waiting their full step timeout. `None`:
    /// the step timeout.
    pub enforcement_window: Option<Duration>,
    /// Cells the oracle allows that a session probes with the calibration timeout alongside its
    /// first pass, to measure connect latency (0: no calibration sample; retries still check).
    pub calibration_cells: usize,
    /// What probes connect to (`--probe-mode`, at least one): every cell is probed once per
    /// mode, in this order, and reported with its `via`.
    pub probe_modes: Vec<ProbeMode>,
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
            harness_retries: 5,
            harness_backoff: Duration::from_millis(50),
            sample: None,
            enforcement_window: None,
            calibration_cells: 16,
            probe_modes: vec![ProbeMode::PodIp],
        }
    }

    /// The timeout of calibration probes and of retries of allowed cells that timed out: long
    /// enough to see a connection the probe timeout would have cut off (twice the probe timeout,
    /// and at least one second more).
    pub fn calibration_timeout(&self) -> Duration {
        (self.probe_timeout * 2).max(self.probe_timeout + Duration::from_secs(1))
    }

    fn window(&self) -> Duration {
        self.enforcement_window.unwrap_or(self.step_timeout)
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

/// The caller's cancel and the run's own (set when a scenario fails, to stop the others); it
/// also carries the run's time breakdown, which every step adds to.
struct Stop {
    external: Cancel,
    internal: Cancel,
    phases: Mutex<PhaseTimes>,
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

fn emit(sink: &Sink<'_>, event: Event<'_>) {
    let mut r = sink.lock().unwrap_or_else(|p| p.into_inner());
    r.event(&event);
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What every scenario of a run shares besides the platform.
struct Ctx<'r> {
    opts: &'r RunOptions,
    sink: &'r Sink<'r>,
    stop: &'r Stop,
    watch: &'r EnforcementWatch,
    /// [`Platform::times_each_probe`]: whether observations' `elapsed_ms` can calibrate.
    timed: bool,
    /// Run warnings found by sessions (calibration), in the order found.
    warnings: &'r Mutex<Vec<String>>,
    /// [`Platform::cluster_policy_gap`] per kind: why cells a cluster-wide policy of that kind
    /// decides are not probed on this platform (`None`: they are).
    gap: ClusterGaps,
}

impl Ctx<'_> {
    fn warn(&self, w: String) {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(w);
    }
}

/// The probes a step runs: the overrides when given, else the step's own.
pub fn step_probes(overrides: &[Probe], step: &Step) -> Vec<Probe> {
    if overrides.is_empty() {
        step.probes.clone()
    } else {
        overrides.to_vec()
    }
}

/// [`Platform::cluster_policy_gap`] for every kind, asked once per run.
#[derive(Debug, Clone, Default)]
pub struct ClusterGaps(BTreeMap<crate::policy::cluster::ClusterKind, String>);

impl ClusterGaps {
    pub fn of<P: Platform>(platform: &P) -> Self {
        ClusterGaps(
            crate::policy::cluster::ClusterKind::ALL
                .into_iter()
                .filter_map(|k| platform.cluster_policy_gap(k).map(|why| (k, why)))
                .collect(),
        )
    }

    /// Why a cell decided by policies of `kinds` is held (the first unrealised kind's reason),
    /// or `None` when the platform realises them all.
    pub fn holding(&self, kinds: &[crate::policy::cluster::ClusterKind]) -> Option<String> {
        kinds.iter().find_map(|k| self.0.get(k).cloned())
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
    /// The kinds of the cluster-wide policies selecting an end of this cell: only a platform
    /// realising all of them can be judged on it ([`Platform::cluster_policy_gap`]).
    pub cluster: Vec<crate::policy::cluster::ClusterKind>,
}

/// Every cell of a step, probe by probe, then row by row (from), then column by column (to) in
/// `namespace/name` order: the order of every report. Probes the pods' own addresses.
pub fn plan_step(step: &Step, probes: &[Probe]) -> Vec<PlannedCell> {
    plan_step_via(step, probes, &[ProbeMode::PodIp])
}

/// [`plan_step`] once per probe mode, mode after mode. A cell via a Service keeps the oracle's
/// answer for the backing pod and target port (NetworkPolicy acts after DNAT, and a pod reaching
/// itself through its own Service is answered like its loopback: see [`crate::service`]); the
/// request names the Service and port to dial, found among the step's Services and the per-pod
/// ones synthesised for the step's probes.
pub fn plan_step_via(step: &Step, probes: &[Probe], modes: &[ProbeMode]) -> Vec<PlannedCell> {
    let oracle = step.oracle();
    let services = if modes.iter().any(|m| m.is_service()) {
        service::probe_services(&step.model, &step.model.services, probes)
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for &via in modes {
        // A pod reaching itself through a Service stays subject to cluster-wide policies, unlike
        // the pod-IP hairpin (the oracle's `Addressing`).
        let addressing = if via.is_service() {
            crate::policy::Addressing::ServiceIp
        } else {
            crate::policy::Addressing::PodIp
        };
        for &probe in probes {
            let table = oracle.expected_matrix_via(probe, addressing);
            for (from, to, &expected) in table.iter() {
                let Some(dst) = step.model.pod(to) else {
                    continue;
                };
                let note = match expected {
                    Some(_) => None,
                    None => oracle
                        .decide_via(from, to, probe, addressing)
                        .map(|d| undefined_note(&d)),
                };
                let service = via
                    .is_service()
                    .then(|| service::target_for(&step.model, &services, to, probe))
                    .flatten();
                out.push(PlannedCell {
                    request: ProbeRequest {
                        from: from.clone(),
                        to: to.clone(),
                        to_ip: dst.ip,
                        probe,
                        via,
                        service,
                    },
                    expected,
                    note,
                    cluster: if step.cluster_policies.is_empty() {
                        Vec::new()
                    } else {
                        oracle.cluster_kinds_applying(from, to, addressing)
                    },
                });
            }
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
        None => matches!(o.result, Connectivity::Error | Connectivity::Harness),
    }
}

/// Classifies a cell from its attempts (oldest first); returns the outcome and the index of the
/// attempt that decided it (whose connectivity, detail and command the report keeps).
///
/// Harness errors are not attempts of the dataplane: they are skipped, so a cell whose only right
/// answer followed harness errors is a `pass`, and one with nothing but harness errors is `error`
/// with the harness's reason.
pub fn classify(expected: bool, attempts: &[Observation]) -> (Outcome, usize) {
    classify_skipping(expected, attempts, |c| c == Connectivity::Harness)
}

/// [`classify`], with `inconclusive` naming the observations that are no answer of the
/// dataplane (harness errors; also timeouts, once the probe timeout proved too short).
fn classify_skipping(
    expected: bool,
    attempts: &[Observation],
    inconclusive: impl Fn(Connectivity) -> bool,
) -> (Outcome, usize) {
    let Some(last) = attempts.len().checked_sub(1) else {
        return (Outcome::Error, 0);
    };
    if let Some(i) = attempts
        .iter()
        .position(|o| o.result == Connectivity::Unsupported)
    {
        return (Outcome::Unsupported, i);
    }
    let real: Vec<usize> = (0..attempts.len())
        .filter(|&i| !inconclusive(attempts[i].result))
        .collect();
    let Some(&last_real) = real.last() else {
        return (Outcome::Error, last);
    };
    if attempts[last_real].result.allowed() == Some(expected) {
        return if real.len() == 1 {
            (Outcome::Pass, last_real)
        } else {
            (Outcome::Flaky, last_real)
        };
    }
    // A contradicting observation outweighs later probe errors.
    if let Some(i) = real
        .iter()
        .rev()
        .copied()
        .find(|&i| attempts[i].result.allowed() == Some(!expected))
    {
        return (Outcome::Fail, i);
    }
    (Outcome::Error, last_real)
}

/// Builds a cell's report from its attempts.
pub fn cell_report(cell: &PlannedCell, attempts: &[Observation]) -> CellReport {
    let judged = match cell.expected {
        Some(e) => classify(e, attempts),
        // Recorded as observed, never judged.
        None => (Outcome::Unsupported, attempts.len().saturating_sub(1)),
    };
    report_cell_judged(
        &cell.request,
        cell.expected,
        cell.note.as_deref(),
        attempts,
        judged,
    )
}

fn report_cell_judged(
    r: &ProbeRequest,
    expected: Option<bool>,
    note: Option<&str>,
    attempts: &[Observation],
    (outcome, i): (Outcome, usize),
) -> CellReport {
    let deciding = attempts.get(i);
    CellReport {
        from: r.from.clone(),
        to: r.to.clone(),
        port: r.probe.port,
        protocol: r.probe.protocol,
        via: r.via,
        expected,
        observed: deciding.and_then(|o| o.result.allowed()),
        outcome,
        attempts: u32::try_from(attempts.len()).unwrap_or(u32::MAX),
        connectivity: deciding.map_or(Connectivity::Error, |o| o.result),
        detail: match (note, deciding.and_then(|o| o.detail.clone())) {
            (Some(n), Some(d)) => Some(format!("{n}; {d}")),
            (Some(n), None) => Some(n.to_string()),
            (None, d) => d.or_else(|| deciding.is_none().then(|| "never probed".to_string())),
        },
        explanation: None,
        decided: None,
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
/// wrong count gets harness-error observations for the missing ones: a bug of ours, not the
/// dataplane's).
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
                    result: Connectivity::Harness,
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

/// One probe of every request, with the harness's own failures re-probed.
struct Probed {
    obs: Vec<Observation>,
    /// Harness-error observations that came before `obs[i]`, by cell index (sparse).
    harness: HashMap<usize, Vec<Observation>>,
    /// Re-probes made because of harness errors.
    reprobes: u64,
}

/// Probes every request once and re-probes those the harness itself failed (pauses doubling from
/// `harness_backoff`, up to `harness_retries` rounds), so its own shortages never reach the
/// dataplane's judgement.
async fn probe_once<S: Session>(
    session: &S,
    reqs: &[ProbeRequest],
    timeout: Duration,
    opts: &RunOptions,
    stop: &Stop,
) -> Result<Probed, ProviderError> {
    let mut obs = tokio::select! {
        o = probe_all(session, reqs, timeout, opts.batch_size) => o,
        _ = stop.wait() => return Err(ProviderError::Interrupted),
    };
    let mut harness: HashMap<usize, Vec<Observation>> = HashMap::new();
    let mut reprobes = 0u64;
    let mut pause = opts.harness_backoff;
    for _ in 0..opts.harness_retries {
        let again: Vec<usize> = (0..obs.len())
            .filter(|&i| obs[i].result == Connectivity::Harness)
            .collect();
        if again.is_empty() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait() => return Err(ProviderError::Interrupted),
        }
        pause = pause.saturating_mul(2);
        let batch: Vec<ProbeRequest> = again.iter().map(|&i| reqs[i].clone()).collect();
        let fresh = tokio::select! {
            o = probe_all(session, &batch, timeout, opts.batch_size) => o,
            _ = stop.wait() => return Err(ProviderError::Interrupted),
        };
        reprobes += again.len() as u64;
        for (i, o) in again.into_iter().zip(fresh) {
            let old = std::mem::replace(&mut obs[i], o);
            harness.entry(i).or_default().push(old);
        }
    }
    Ok(Probed {
        obs,
        harness,
        reprobes,
    })
}

fn mismatches(expected: &[Option<bool>], obs: &[Observation]) -> usize {
    expected
        .iter()
        .zip(obs)
        .filter(|(e, o)| {
            e.is_some() && o.result != Connectivity::Unsupported && o.result.allowed() != **e
        })
        .count()
}

/// Connected calibration probes a session wants before it stops sampling.
const CALIBRATION_MIN: usize = 8;

/// What a session learnt about its probe timeout (platforms that time each probe alone).
///
/// - The calibration sample measures the connect latency of allowed cells under the load of a
///   real pass, for the report. It does not judge by itself: the first pass of a run is also its
///   busiest moment (every session setting up at once), and a lost SYN costs any dataplane a
///   second, so one slow sample proves nothing.
/// - The judgement comes from retries: allowed cells that timed out on a step's last pass are
///   retried with the longer calibration timeout. If at least three of them, and at least half
///   of the step's allowed cells, then connect *and take at least the probe timeout to do so*
///   (a few such cells are lost SYNs, resent after a second; on a loaded machine, many), the
///   dataplane was letting them through all along and only the probe timeout cut them off: from
///   then on a timeout in this session is no evidence of blocking. (A cell that now
///   connects quickly was blocked or lost for a while: flaky, not slow. A step that converged
///   never gets here: one full pass told blocked from allowed with this timeout.)
#[derive(Debug, Default)]
struct Calibrator {
    samples: Vec<u64>,
    /// Why the timeout is too short, once known: the latency to suggest a timeout from, and the
    /// evidence in words.
    too_short: Option<(u64, String)>,
    /// The run warning was given.
    warned: bool,
}

impl Calibrator {
    fn measured(&self) -> bool {
        self.samples.len() >= CALIBRATION_MIN
    }

    fn inadequate(&self) -> bool {
        self.too_short.is_some()
    }

    fn sample(&mut self, latencies: &[u64]) {
        self.samples.extend_from_slice(latencies);
    }

    /// `late`: latencies of allowed cells that timed out on the last pass and connected when
    /// retried with the calibration timeout; `allowed`: the step's allowed cells.
    fn retried(&mut self, late: &[u64], allowed: usize, timeout_ms: u64, long_ms: u64) {
        if self.too_short.is_none() && late.len() >= 3 && late.len() * 2 >= allowed {
            let max = late.iter().copied().max().unwrap_or(0);
            self.too_short = Some((
                max.max(timeout_ms),
                format!(
                    "{} of {allowed} allowed cells timed out on the last pass and connected when \
                     retried with a {long_ms} ms timeout (taking up to {max} ms)",
                    late.len()
                ),
            ));
        }
    }
}

/// Whether a pass shows the dataplane enforcing something: a cell the oracle denies was refused
/// (an active answer), or timed out twice in a row, or a matching pass had at least two denied
/// cells time out. A single timeout is no evidence: on a loaded machine or network a SYN of a
/// non-enforcing dataplane gets lost now and then. `blocked_before` carries the denied cells
/// that timed out on the previous pass.
fn enforcement_shown(
    expected: &[Option<bool>],
    obs: &[Observation],
    blocked_before: &mut [bool],
    matched: bool,
    timeouts_inconclusive: bool,
) -> bool {
    let mut shown = false;
    let mut timed_out = 0usize;
    for (i, (&e, o)) in expected.iter().zip(obs).enumerate() {
        let denied = e == Some(false);
        let blocked = denied && o.result == Connectivity::Timeout && !timeouts_inconclusive;
        if denied && o.result == Connectivity::Refused {
            shown = true;
        }
        if blocked {
            timed_out += 1;
            shown |= blocked_before[i];
        }
        blocked_before[i] = blocked;
    }
    shown || (matched && timed_out >= 2)
}

/// Up to `n` cells the oracle allows, spread over the plan (TCP first: the cheapest to time).
fn calibration_cells(requests: &[ProbeRequest], expected: &[Option<bool>], n: usize) -> Vec<usize> {
    let allowed: Vec<usize> = (0..requests.len())
        .filter(|&i| expected[i] == Some(true))
        .collect();
    let (tcp, other): (Vec<usize>, Vec<usize>) = allowed
        .into_iter()
        .partition(|&i| requests[i].probe.protocol == Protocol::Tcp);
    let pool = if tcp.is_empty() { other } else { tcp };
    if pool.len() <= n {
        return pool;
    }
    (0..n).map(|k| pool[k * pool.len() / n]).collect()
}

fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() - 1) * p) / 100])
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
        .map(|st| {
            let full = st.model.pods.len().pow(2)
                * step_probes(&opts.probes, st).len()
                * opts.probe_modes.len().max(1);
            opts.sample.map_or(full, |s| full.min(s.cells))
        })
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
        phases: Mutex::new(PhaseTimes::default()),
    };
    let watch = EnforcementWatch::new(opts.window());
    let found = Mutex::new(Vec::new());
    let ctx = Ctx {
        opts,
        sink: &sink,
        stop: &stop,
        watch: &watch,
        timed: platform.times_each_probe(),
        warnings: &found,
        gap: ClusterGaps::of(platform),
    };
    let mut results: Vec<Option<ScenarioReport>> = vec![None; scenarios.len()];
    let mut first_err: Option<ProviderError> = None;
    {
        let ctx = &ctx;
        let mut stream = futures::stream::iter(scenarios.iter().enumerate())
            .map(|(i, s)| async move { (i, run_scenario(platform, i, s, ctx).await) })
            .buffer_unordered(platform.max_parallel().max(1));
        while let Some((i, r)) = stream.next().await {
            match r {
                Ok(rep) => results[i] = Some(rep),
                Err(e) => {
                    if first_err.is_none() {
                        emit(
                            &sink,
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
    warnings.extend(std::mem::take(
        &mut *found.lock().unwrap_or_else(|p| p.into_inner()),
    ));
    let enforcement = watch.report();
    warnings.extend(run_warnings(&scenarios, opts, &enforcement));
    let mut summary = verdict::summarize(&scenarios);
    summary.unsampled = scenarios
        .iter()
        .flat_map(|s| &s.steps)
        .filter_map(|st| st.sample.as_ref())
        .map(|s| s.unsampled)
        .sum();
    if summary.cells == 0 {
        warnings.push("no cells were probed (no pods or no probes)".into());
    }
    let gaps = gap_reports(&info.gaps, &scenarios);
    let mut phases = *stop.phases.lock().unwrap_or_else(|p| p.into_inner());
    phases.cluster_ms = info.setup_ms.get("cluster").copied();
    phases.cni_ms = info.setup_ms.get("cni").copied();
    let report = RunReport {
        gaps,
        phases,
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
        expected_verdict: None,
        sample: opts.sample.map(|s| SampleReport {
            cells_per_step: s.cells as u64,
            seed: s.seed,
        }),
        enforcement,
    };
    emit(
        &sink,
        Event::RunFinished {
            report: Cow::Borrowed(&report),
        },
    );
    Ok(report)
}

/// The catalogued gaps with the number of cells each made unsupported (cells carry the gap's
/// [`crate::cni::gaps::Gap::cell_detail`]).
fn gap_reports(gaps: &[crate::cni::gaps::Gap], scenarios: &[ScenarioReport]) -> Vec<GapReport> {
    gaps.iter()
        .map(|g| {
            let prefix = crate::cni::gaps::Gap::detail_prefix(g.feature);
            let cells = scenarios
                .iter()
                .flat_map(|s| &s.steps)
                .flat_map(|st| &st.cells)
                .filter(|c| {
                    c.outcome == Outcome::Unsupported
                        && c.detail.as_deref().is_some_and(|d| d.starts_with(&prefix))
                })
                .count() as u64;
            GapReport {
                feature: g.feature.as_str().to_string(),
                reason: g.reason.clone(),
                references: g.references.clone(),
                cells,
            }
        })
        .collect()
}

/// Warnings the finished steps call for: steps that never converged although nothing failed,
/// shortened waits, harness re-probes.
fn run_warnings(
    scenarios: &[ScenarioReport],
    opts: &RunOptions,
    enforcement: &crate::report::model::EnforcementReport,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut unconverged = Vec::new();
    let mut reprobes = 0u64;
    for s in scenarios {
        for st in &s.steps {
            reprobes += st.harness_retries;
            let clean = st
                .cells
                .iter()
                .all(|c| !matches!(c.outcome, Outcome::Fail | Outcome::Error));
            if !st.converged && clean && !st.cells.is_empty() {
                unconverged.push(format!(
                    "{} › {} ({} of {} cells right only on a retry)",
                    s.name,
                    st.name,
                    st.right_on_retry,
                    st.cells.len()
                ));
            }
        }
    }
    if !unconverged.is_empty() {
        let n = unconverged.len();
        unconverged.truncate(5);
        out.push(format!(
            "{n} step(s) never matched the oracle on a full pass, although no cell failed: \
             their wrong cells were right only when retried one by one (flaky), so those steps \
             did not converge: {}{}",
            unconverged.join("; "),
            if n > 5 { "; …" } else { "" }
        ));
    }
    if enforcement.shortened_steps > 0 {
        out.push(format!(
            "the dataplane blocked no cell the oracle denies during the first {} ms of the run: \
             {} later step(s) were judged after one pass instead of waiting up to the {} ms step \
             timeout{}",
            enforcement.window_ms,
            enforcement.shortened_steps,
            ms(opts.step_timeout),
            match enforcement.first_seen_ms {
                Some(t) =>
                    format!(" (enforcement was first seen {t} ms in; full waits from then on)"),
                None => String::new(),
            }
        ));
    }
    if reprobes > 0 {
        out.push(format!(
            "the harness re-probed cells {reprobes} time(s) after failures of its own \
             (descriptors, ports, threads); none of them counts as a dataplane failure or flake"
        ));
    }
    out
}

async fn run_scenario<P: Platform>(
    platform: &P,
    index: usize,
    scenario: &Scenario,
    ctx: &Ctx<'_>,
) -> Result<ScenarioReport, ProviderError> {
    if ctx.stop.is_set() {
        return Err(ProviderError::Interrupted);
    }
    emit(
        ctx.sink,
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
    let result = run_steps(&mut session, index, scenario, ctx).await;
    let teardown = session.teardown().await;
    let report = result?;
    teardown?;
    emit(
        ctx.sink,
        Event::ScenarioFinished {
            index,
            report: Cow::Borrowed(&report),
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
    ctx: &Ctx<'_>,
) -> Result<ScenarioReport, ProviderError> {
    let oracles: Vec<Oracle<'_>> = scenario.steps.iter().map(|s| s.oracle()).collect();
    let mut steps = Vec::with_capacity(scenario.steps.len());
    let mut calibrator = Calibrator::default();
    for (k, step) in scenario.steps.iter().enumerate() {
        if ctx.stop.is_set() {
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
            StepRef {
                index,
                scenario,
                k,
                step,
                oracle: &oracles[k],
                earlier: &enforced,
            },
            &mut calibrator,
            ctx,
        )
        .await?;
        emit(
            ctx.sink,
            Event::StepFinished {
                scenario: index,
                scenario_name: scenario.name.clone(),
                step: k,
                report: Cow::Borrowed(&report),
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

/// The step being run and where it sits.
struct StepRef<'a> {
    index: usize,
    scenario: &'a Scenario,
    k: usize,
    step: &'a Step,
    oracle: &'a Oracle<'a>,
    earlier: &'a [&'a Oracle<'a>],
}

/// The cells a step probes (the whole plan, or its sample), split so requests are not copied.
struct StepPlan {
    requests: Vec<ProbeRequest>,
    /// `None`: the API leaves the cell to the implementation (probed, never judged).
    expected: Vec<Option<bool>>,
    /// The oracle's note on each cell (why it is implementation-defined).
    notes: Vec<Option<String>>,
    /// Cells not probed because the platform cannot realise the cluster-wide policy deciding
    /// them, with their position among all the step's cells and the platform's reason.
    held: Vec<(usize, PlannedCell, String)>,
    sample: Option<StepSample>,
}

/// `gap`: the kinds of cluster-wide policies the platform cannot realise; the cells they decide
/// are held.
fn step_plan(at: &StepRef<'_>, probes: &[Probe], opts: &RunOptions, gap: &ClusterGaps) -> StepPlan {
    let modes: &[ProbeMode] = if opts.probe_modes.is_empty() {
        &[ProbeMode::PodIp]
    } else {
        &opts.probe_modes
    };
    let full = plan_step_via(at.step, probes, modes);
    let (cells, sample) = match opts.sample {
        None => (full, None),
        Some(s) => {
            let seed = sample::step_seed(s.seed, &at.scenario.name, &at.step.name);
            let drawn = sample::stratified(&full, at.oracle, s.cells, seed);
            let planned = full.len() as u64;
            let info = StepSample {
                planned,
                sampled: drawn.indices.len() as u64,
                strata: drawn.strata as u64,
                unsampled: planned - drawn.indices.len() as u64,
                seed,
            };
            let mut keep = drawn.indices.into_iter().peekable();
            let cells: Vec<PlannedCell> = full
                .into_iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    (keep.peek() == Some(&i)).then(|| {
                        keep.next();
                        c
                    })
                })
                .collect();
            (cells, Some(info))
        }
    };
    // Cells a cluster-wide policy decides are not probed where the platform cannot realise those
    // policies: they are reported unsupported with the platform's reason, never judged.
    let mut plan = StepPlan {
        requests: Vec::with_capacity(cells.len()),
        expected: Vec::with_capacity(cells.len()),
        notes: Vec::with_capacity(cells.len()),
        held: Vec::new(),
        sample,
    };
    for (pos, c) in cells.into_iter().enumerate() {
        if let Some(why) = gap.holding(&c.cluster) {
            plan.held.push((pos, c, why));
        } else {
            plan.requests.push(c.request);
            plan.expected.push(c.expected);
            plan.notes.push(c.note);
        }
    }
    plan
}

async fn run_step<S: Session>(
    session: &mut S,
    at: StepRef<'_>,
    calibrator: &mut Calibrator,
    ctx: &Ctx<'_>,
) -> Result<StepReport, ProviderError> {
    let (opts, stop) = (ctx.opts, ctx.stop);
    let probes = step_probes(&opts.probes, at.step);
    let planned = step_plan(&at, &probes, opts, &ctx.gap);
    let cells_planned = planned.requests.len() + planned.held.len();
    emit(
        ctx.sink,
        Event::StepStarted {
            scenario: at.index,
            scenario_name: at.scenario.name.clone(),
            step: at.k,
            step_name: at.step.name.clone(),
            probes: probes.clone(),
            cells: cells_planned,
        },
    );
    let t_apply = Instant::now();
    session.apply(at.step).await?;
    let applied = Instant::now();
    // Re-plan hook: a dataplane that assigned its own pod addresses (a cluster) reports them,
    // and the step is re-bound to them (templated ipBlocks resolved again, see
    // `scenario::address`) so the oracle answers for what the cluster really has.
    let rebound = match session.addresses() {
        Some(addrs) => Some(
            at.step
                .rebind(&addrs)
                .map_err(|e| ProviderError::InvalidInput(e.to_string()))?,
        ),
        None => None,
    };
    let rebound_oracle = rebound.as_ref().map(Step::oracle);
    let (at, planned) = match (&rebound, &rebound_oracle) {
        (Some(step), Some(oracle)) => {
            let at = StepRef { step, oracle, ..at };
            let planned = step_plan(&at, &probes, opts, &ctx.gap);
            (at, planned)
        }
        _ => (at, planned),
    };
    let StepPlan {
        requests,
        expected,
        notes,
        held,
        sample,
    } = planned;
    let deadline = applied + opts.step_timeout;
    let timeout_ms = ms(opts.probe_timeout);

    let mut passes = 0u32;
    let mut blocked_before = vec![false; requests.len()];
    let mut convergence = None;
    let mut wait = StepWait::Full;
    let mut reprobes = 0u64;
    let mut calibration = None;
    let (last, wall) = loop {
        if stop.is_set() {
            return Err(ProviderError::Interrupted);
        }
        // A session calibrates on its first pass over cells the oracle allows, until one
        // calibration probe has connected.
        let calib: Vec<usize> = if ctx.timed && !calibrator.measured() && opts.calibration_cells > 0
        {
            calibration_cells(&requests, &expected, opts.calibration_cells)
        } else {
            Vec::new()
        };
        let calib_reqs: Vec<ProbeRequest> = calib.iter().map(|&i| requests[i].clone()).collect();
        let t0 = Instant::now();
        let pass = async {
            let p = probe_once(session, &requests, opts.probe_timeout, opts, stop).await;
            (p, t0.elapsed())
        };
        let calibrate = async {
            if calib_reqs.is_empty() {
                Ok(None)
            } else {
                probe_once(session, &calib_reqs, opts.calibration_timeout(), opts, stop)
                    .await
                    .map(Some)
            }
        };
        let ((probed, wall), calibrated) = futures::join!(pass, calibrate);
        let probed = probed?;
        if let Some(c) = calibrated? {
            reprobes += c.reprobes;
            let mut lat: Vec<u64> = c
                .obs
                .iter()
                .filter(|o| o.result == Connectivity::Connected)
                .map(|o| o.elapsed_ms)
                .collect();
            lat.sort_unstable();
            calibrator.sample(&lat);
            calibration = Some(Calibration {
                probes: c.obs.len() as u32,
                connected: lat.len() as u32,
                timeout_ms: ms(opts.calibration_timeout()),
                p50_ms: percentile(&lat, 50),
                max_ms: lat.last().copied(),
                late: 0,
                adequate: !calibrator.inadequate(),
            });
        }
        reprobes += probed.reprobes;
        passes += 1;
        let wrong = mismatches(&expected, &probed.obs);
        if enforcement_shown(
            &expected,
            &probed.obs,
            &mut blocked_before,
            wrong == 0,
            calibrator.inadequate(),
        ) {
            ctx.watch.saw_enforcement(Instant::now());
        }
        emit(
            ctx.sink,
            Event::PassFinished {
                scenario: at.index,
                step: at.k,
                pass: passes,
                mismatches: wrong,
                wall_ms: ms(wall),
            },
        );
        if wrong == 0 {
            convergence = Some(ms(t0.duration_since(applied)));
            break (probed, wall);
        }
        // The no-enforcement window opens with the first step that expects a denial and did not
        // match at once (from its apply): a step that matched has nothing to wait for, and may
        // hold no evidence either way (one denied cell, SCTP cells a node cannot serve, or most
        // cells held unprobed because the cluster does not enforce the cluster-wide policies
        // deciding them), so it must not start the clock that shortens later steps' waits.
        ctx.watch
            .step_applied(expected.contains(&Some(false)), applied);
        let now = Instant::now();
        if now >= deadline {
            break (probed, wall);
        }
        if ctx.watch.may_shorten(now) {
            wait = StepWait::Shortened;
            ctx.watch.shortened();
            break (probed, wall);
        }
        tokio::select! {
            _ = tokio::time::sleep(opts.pass_interval.min(deadline - now)) => {}
            _ = stop.wait() => return Err(ProviderError::Interrupted),
        }
    };
    let mismatched_last_pass = mismatches(&expected, &last.obs) as u64;

    // Every attempt per cell: the last pass's (harness errors first), then retries.
    let Probed {
        obs,
        harness: mut before,
        ..
    } = last;
    let mut history: Vec<Vec<Observation>> = obs
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let mut h = before.remove(&i).unwrap_or_default();
            h.push(o);
            h
        })
        .collect();

    let mut late_cells = 0u32;
    // Retry only the cells still wrong, each up to `attempts` in total. Allowed cells that timed
    // out get the calibration timeout where probes are timed one by one: a connection slower
    // than the probe timeout shows the timeout is too short, not the dataplane wrong.
    for _ in 1..opts.attempts.max(1) {
        let wrong: Vec<usize> = (0..requests.len())
            .filter(|&i| {
                history[i]
                    .last()
                    .is_some_and(|o| expected[i].is_some_and(|e| needs_retry(e, o)))
            })
            .collect();
        if wrong.is_empty() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(opts.pass_interval) => {}
            _ = stop.wait() => return Err(ProviderError::Interrupted),
        }
        let (slow, plain): (Vec<usize>, Vec<usize>) = wrong.into_iter().partition(|&i| {
            ctx.timed
                && expected[i] == Some(true)
                && history[i]
                    .last()
                    .is_some_and(|o| o.result == Connectivity::Timeout)
        });
        let plain_reqs: Vec<ProbeRequest> = plain.iter().map(|&i| requests[i].clone()).collect();
        let slow_reqs: Vec<ProbeRequest> = slow.iter().map(|&i| requests[i].clone()).collect();
        let (a, b) = futures::join!(
            probe_once(session, &plain_reqs, opts.probe_timeout, opts, stop),
            probe_once(session, &slow_reqs, opts.calibration_timeout(), opts, stop),
        );
        let (a, b) = (a?, b?);
        reprobes += a.reprobes + b.reprobes;
        // Late: the connection itself took at least the probe timeout. One that timed out on the
        // pass and now connects quickly was blocked or lost for a while (flaky), not slow.
        let late: Vec<u64> = b
            .obs
            .iter()
            .filter(|o| o.result == Connectivity::Connected && o.elapsed_ms >= timeout_ms)
            .map(|o| o.elapsed_ms)
            .collect();
        late_cells += late.len() as u32;
        calibrator.retried(
            &late,
            expected.iter().filter(|&&e| e == Some(true)).count(),
            timeout_ms,
            ms(opts.calibration_timeout()),
        );
        for (idx, mut p) in [(plain, a), (slow, b)] {
            for (k, (i, o)) in idx.into_iter().zip(p.obs).enumerate() {
                if let Some(h) = p.harness.remove(&k) {
                    history[i].extend(h);
                }
                history[i].push(o);
            }
        }
    }

    let inadequate = calibrator.too_short.clone();
    let mut cells: Vec<CellReport> = requests
        .iter()
        .zip(&expected)
        .zip(&notes)
        .zip(&history)
        .map(|(((r, &e), note), h)| {
            // With a timeout shorter than allowed connections take, a timeout proves nothing:
            // such attempts are skipped like harness errors.
            let judged = match e {
                // Implementation-defined: recorded as observed, never judged.
                None => (Outcome::Unsupported, h.len().saturating_sub(1)),
                Some(e) if inadequate.is_some() => classify_skipping(e, h, |c| {
                    matches!(c, Connectivity::Harness | Connectivity::Timeout)
                }),
                Some(e) => classify(e, h),
            };
            let mut rep = report_cell_judged(r, e, note.as_deref(), h, judged);
            if let Some((_, why)) = &inadequate
                && rep.outcome == Outcome::Error
                && rep.connectivity == Connectivity::Timeout
            {
                rep.observed = None;
                rep.detail = Some(format!(
                    "inconclusive: the {timeout_ms} ms probe timeout cannot tell a blocked \
                     connection from a slow one here ({why})"
                ));
            }
            // The oracle's reasons, for the cells a reader will ask about (kept off passing
            // cells so report.json stays proportionate to what went wrong).
            if matches!(rep.outcome, Outcome::Fail | Outcome::Flaky | Outcome::Error)
                && let Some(d) = at.oracle.decide(&rep.from, &rep.to, r.probe)
            {
                rep.explanation = Some(crate::policy::explain::render(&d, at.step));
                rep.decided = crate::policy::explain::tier_summary(&d);
            }
            if rep.outcome == Outcome::Fail {
                rep.features = verdict::cell_features(at.oracle, at.earlier, &rep)
                    .into_iter()
                    .map(|f| f.as_str().to_string())
                    .collect();
            }
            rep
        })
        .collect();
    {
        let mut ph = stop.phases.lock().unwrap_or_else(|p| p.into_inner());
        let apply_ms = ms(applied.duration_since(t_apply));
        if at.k == 0 {
            ph.pods_ms += apply_ms;
        } else {
            ph.convergence_ms += apply_ms;
        }
        let after = ms(applied.elapsed());
        let waited = convergence.unwrap_or(after).min(after);
        ph.convergence_ms += waited;
        ph.probing_ms += after - waited;
    }
    drop(history);
    if !held.is_empty() {
        // Back in plan order, the held cells with the platform's reason as their only
        // observation.
        let not_realised = |why: String| {
            [Observation {
                result: Connectivity::Unsupported,
                detail: Some(why),
                elapsed_ms: 0,
                command: String::new(),
            }]
        };
        let total = cells.len() + held.len();
        let mut probed = cells.into_iter();
        let mut held = held.into_iter().peekable();
        cells = (0..total)
            .filter_map(|pos| match held.next_if(|(p, _, _)| *p == pos) {
                Some((_, c, why)) => Some(cell_report(&c, &not_realised(why))),
                None => probed.next(),
            })
            .collect();
    }
    for cell in &cells {
        emit(
            ctx.sink,
            Event::CellFinished {
                scenario: at.index,
                step: at.k,
                cell: Cow::Borrowed(cell),
            },
        );
    }
    if inadequate.is_some() || late_cells > 0 {
        // Every step judged with an inadequate timeout says so, also when the evidence came
        // from an earlier step; so does every step whose retries connected late.
        let c = calibration.get_or_insert_with(|| Calibration {
            probes: 0,
            connected: 0,
            timeout_ms: ms(opts.calibration_timeout()),
            p50_ms: None,
            max_ms: None,
            late: 0,
            adequate: true,
        });
        c.late = late_cells;
        c.adequate = inadequate.is_none();
    }
    if let Some((slow, why)) = &inadequate
        && !calibrator.warned
    {
        calibrator.warned = true;
        ctx.warn(format!(
            "{} › {}: the probe timeout of {timeout_ms} ms cannot tell blocked from slow: {why}, \
             so this scenario's timeouts are not taken as blocking from here on (those cells \
             are errors); use --probe-timeout-ms {} or more",
            at.scenario.name,
            at.step.name,
            suggested_timeout(*slow)
        ));
    }
    let right_on_retry = cells.iter().filter(|c| c.outcome == Outcome::Flaky).count() as u64;
    Ok(StepReport {
        name: at.step.name.clone(),
        convergence_ms: convergence,
        probe_wall_ms: ms(wall),
        passes,
        converged: convergence.is_some(),
        mismatched_last_pass,
        right_on_retry,
        wait,
        harness_retries: reprobes,
        calibration,
        sample,
        cells,
    })
}

/// A probe timeout with room above the slowest allowed connection seen (four times it, rounded
/// up to a round number of milliseconds).
fn suggested_timeout(slow_ms: u64) -> u64 {
    let want = slow_ms.saturating_mul(4).max(100);
    let step = 10u64.pow(want.ilog10().saturating_sub(1));
    want.div_ceil(step) * step
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
    fn harness_errors_are_no_attempt_of_the_dataplane() {
        use Connectivity::*;
        assert_eq!(
            classify(true, &[obs(Harness), obs(Connected)]),
            (Outcome::Pass, 1)
        );
        assert_eq!(
            classify(true, &[obs(Harness), obs(Harness)]),
            (Outcome::Error, 1)
        );
        assert_eq!(
            classify(true, &[obs(Timeout), obs(Harness), obs(Connected)]),
            (Outcome::Flaky, 2)
        );
        assert_eq!(
            classify(false, &[obs(Harness), obs(Connected), obs(Harness)]),
            (Outcome::Fail, 1)
        );
        assert!(needs_retry(true, &obs(Harness)));
        // With an inadequate timeout, timeouts are skipped too.
        let skip = |c| matches!(c, Harness | Timeout);
        assert_eq!(
            classify_skipping(false, &[obs(Timeout), obs(Timeout)], skip),
            (Outcome::Error, 1)
        );
        assert_eq!(
            classify_skipping(true, &[obs(Timeout), obs(Connected)], skip),
            (Outcome::Pass, 1)
        );
        assert_eq!(
            classify_skipping(false, &[obs(Refused)], skip),
            (Outcome::Pass, 0)
        );
    }

    #[test]
    fn a_lone_timeout_is_no_evidence_of_enforcement() {
        use Connectivity::*;
        let expected = [Some(false), Some(false), Some(true)];
        let mut before = [false; 3];
        // One denied cell times out once, the pass does not match: a lost SYN, maybe.
        let pass = [obs(Timeout), obs(Connected), obs(Connected)];
        assert!(!enforcement_shown(
            &expected,
            &pass,
            &mut before,
            false,
            false
        ));
        // The same cell times out again on the next pass: evidence.
        assert!(enforcement_shown(
            &expected,
            &pass,
            &mut before,
            false,
            false
        ));
        // A refusal is an answer at once.
        let mut before = [false; 3];
        let refused = [obs(Refused), obs(Connected), obs(Connected)];
        assert!(enforcement_shown(
            &expected,
            &refused,
            &mut before,
            false,
            false
        ));
        // A matching pass with two denied cells blocked.
        let mut before = [false; 3];
        let matched = [obs(Timeout), obs(Timeout), obs(Connected)];
        assert!(enforcement_shown(
            &expected,
            &matched,
            &mut before,
            true,
            false
        ));
        // Timeouts proved inconclusive by calibration never count.
        let mut before = [true; 3];
        assert!(!enforcement_shown(
            &expected,
            &matched,
            &mut before,
            true,
            true
        ));
    }

    #[test]
    fn suggested_timeouts_are_round_and_roomy() {
        assert_eq!(suggested_timeout(20), 100);
        assert_eq!(suggested_timeout(1050), 4200);
        assert_eq!(suggested_timeout(333), 1400);
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
    fn each_mode_plans_every_cell_with_the_same_expectation() {
        let yaml = "apiVersion: netpolc/v1\nkind: Scenario\nmodel:\n  upstream: {namespaces: [x], \
                    protocols: [TCP], ports: [80]}\n  services:\n    - {namespace: x, name: web, \
                    selector: {pod: b}, ports: [{port: 8080, targetPort: serve-80-tcp}]}\n\
                    probes: [80/TCP]\nsteps:\n  - name: s\n    apply:\n      - apiVersion: \
                    networking.k8s.io/v1\n        kind: NetworkPolicy\n        metadata: \
                    {namespace: x, name: deny}\n        spec: {podSelector: {matchLabels: {pod: a}}}\n";
        let loaded = crate::scenario::load_str(yaml, "t.yaml").expect("loads");
        let step = &loaded.scenarios[0].steps[0];
        let probes = step.probes.clone();
        let plan = plan_step_via(step, &probes, &[ProbeMode::PodIp, ProbeMode::ServiceIp]);
        assert_eq!(plan.len(), 18);
        let (pod, svc) = plan.split_at(9);
        assert!(
            pod.iter()
                .all(|c| c.request.via == ProbeMode::PodIp && c.request.service.is_none())
        );
        for (p, s) in pod.iter().zip(svc) {
            assert_eq!(s.request.via, ProbeMode::ServiceIp);
            assert_eq!(
                (&p.request.from, &p.request.to),
                (&s.request.from, &s.request.to)
            );
            assert_eq!(p.expected, s.expected, "NetworkPolicy acts after DNAT");
            let t = s.request.service.as_ref().expect("every pod has a Service");
            if s.request.to.name == "b" {
                // The input's Service selects exactly x/b and targets its port by name.
                assert_eq!((t.name.as_str(), t.port), ("web", 8080));
            } else {
                assert_eq!(t.name, format!("s-x-{}", s.request.to.name));
                assert_eq!(t.port, 80);
            }
        }
        // x/a is isolated with no rules: denied from everyone, through its Service too, and to
        // itself (hairpin answered like loopback).
        let to_a: Vec<Option<bool>> = svc
            .iter()
            .filter(|c| c.request.to.name == "a")
            .map(|c| c.expected)
            .collect();
        assert_eq!(to_a, vec![Some(false); 3]);
        // The pod-ip plan is unchanged by the modes.
        assert_eq!(plan_step(step, &probes), pod.to_vec());
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
