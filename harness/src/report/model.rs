//! The run report: the one document every reporter renders (JSON as is, JUnit, HTML, terminal).
//! Field names and meanings of the top level, `summary`, steps and cells are fixed by the contract
//! (`../shared/contract.md`); additions are allowed, renames are not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{PodRef, Protocol};
use crate::probe::{Connectivity, Outcome};
use crate::service::ProbeMode;

/// conformant · non-conformant · policies-ignored · error
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Conformant,
    NonConformant,
    PoliciesIgnored,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Conformant => "conformant",
            Verdict::NonConformant => "non-conformant",
            Verdict::PoliciesIgnored => "policies-ignored",
            Verdict::Error => "error",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "conformant" => Ok(Verdict::Conformant),
            "non-conformant" => Ok(Verdict::NonConformant),
            "policies-ignored" => Ok(Verdict::PoliciesIgnored),
            "error" => Ok(Verdict::Error),
            other => Err(format!(
                "unknown verdict {other:?} (expected conformant, non-conformant, policies-ignored or error)"
            )),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub cells: u64,
    pub passed: u64,
    pub failed: u64,
    pub flaky: u64,
    pub unsupported: u64,
    pub errors: u64,
    /// Cells of the full matrices left out by `--sample` (not probed, so not in `cells` and
    /// never counted as passed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unsampled: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One probed (or unsupported) cell of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellReport {
    pub from: PodRef,
    pub to: PodRef,
    pub port: u16,
    pub protocol: Protocol,
    /// What the probe connected to (contract: every cell carries it; reports written before
    /// probe modes existed read as `pod-ip`).
    #[serde(default)]
    pub via: ProbeMode,
    /// The oracle's answer; `None` (JSON `null`) where the API leaves it to the implementation
    /// (such a cell is probed and recorded, outcome `unsupported`, never judged).
    pub expected: Option<bool>,
    /// `None` when nothing could be observed (unsupported, error).
    pub observed: Option<bool>,
    pub outcome: Outcome,
    pub attempts: u32,
    /// How the last attempt ended.
    pub connectivity: Connectivity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The oracle's reasons for `expected` (the text of `policy::explain::render`), so a reader of
    /// the HTML report sees why a cell should be allowed or denied without re-running `explain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// Cells a cluster-wide policy could decide: which tier decided each side, with policy,
    /// priority, rule and action ([`crate::policy::explain::tier_summary`]); set where the
    /// explanation is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<String>,
    /// The command that reproduces the observation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// Failing cells: the NetworkPolicy features the cell exercises (see [`crate::verdict`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Every attempt when there was more than one (retries, flaky cells), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AttemptReport>,
}

/// One attempt at a cell, kept when the cell was retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptReport {
    pub connectivity: Connectivity,
    pub observed: Option<bool>,
    pub elapsed_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    pub name: String,
    /// From the step's changes being applied until the observed matrix first matched (null: never).
    pub convergence_ms: Option<u64>,
    /// Wall time of one full pass over the step's matrix.
    pub probe_wall_ms: u64,
    /// Passes made before the matrix matched or the step timeout passed.
    #[serde(default)]
    pub passes: u32,
    /// Whether one full pass matched the oracle (`convergence_ms` is set exactly then). A step
    /// that never converged can still have no failing cell when its wrong cells were right on a
    /// retry, one by one: those are `right_on_retry` (the step's flaky cells), never a clean pass.
    #[serde(default)]
    pub converged: bool,
    /// Cells the last full pass got wrong (errors included, unsupported not); 0 when converged.
    #[serde(default)]
    pub mismatched_last_pass: u64,
    /// Cells wrong on the last full pass and right on a retry.
    #[serde(default)]
    pub right_on_retry: u64,
    /// How long the engine was prepared to wait for this step to converge.
    #[serde(default)]
    pub wait: StepWait,
    /// Re-probes of cells whose probe failed for the harness's own reasons (descriptors, ports,
    /// threads); they are not attempts of the dataplane.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub harness_retries: u64,
    /// The probe timeout's check against the dataplane's connect latency, on the step where the
    /// session measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Present when the step probed a sample of its cells (`--sample`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<StepSample>,
    pub cells: Vec<CellReport>,
}

/// `full`: passes went on until the matrix matched or the step timeout passed. `shortened`: the
/// dataplane had shown no enforcement anywhere in the run for the whole enforcement window, so
/// the step was judged after its first pass (plus the usual retries) instead of waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepWait {
    #[default]
    Full,
    Shortened,
}

/// Connections to cells the oracle allows, probed with a longer timeout than the run's, so the
/// harness knows whether its probe timeout can tell a blocked connection from a slow one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calibration {
    /// Calibration-sample probes made alongside the step's first pass (0: none on this step).
    pub probes: u32,
    /// Of those, the ones that connected (only they measure latency).
    pub connected: u32,
    /// The timeout of calibration probes and of retries of allowed cells that timed out.
    pub timeout_ms: u64,
    /// Median and slowest connect latency of the sample's connections, under the pass's load.
    pub p50_ms: Option<u64>,
    pub max_ms: Option<u64>,
    /// Allowed cells that timed out on the last pass and, retried with `timeout_ms`, connected
    /// after at least the probe timeout (slow, not blocked).
    #[serde(default)]
    pub late: u32,
    /// Whether timeouts were taken as evidence of blocking. False once many allowed cells of a
    /// step were late: then no timeout of the session counts, and such cells are `error`, never
    /// pass or fail.
    pub adequate: bool,
}

/// What a sampled step probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSample {
    /// Cells of the full matrix.
    pub planned: u64,
    /// Cells probed (every source and destination pod and every decision path at least once).
    pub sampled: u64,
    /// Distinct oracle decision paths among the planned cells (each is represented).
    pub strata: u64,
    /// Cells left out (not probed, not judged).
    pub unsampled: u64,
    /// The seed this step's sample was drawn with (derived from the run's seed and the names).
    pub seed: u64,
}

/// The run's sampling settings (`--sample N --sample-seed S`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleReport {
    /// Cells asked for per step (a step may probe more to cover every pod and path).
    pub cells_per_step: u64,
    pub seed: u64,
}

/// The run's evidence of enforcement, which decides how long steps wait.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcementReport {
    /// How long the dataplane may show no enforcement at all before steps stop waiting.
    pub window_ms: u64,
    /// When a cell the oracle denies was first observed blocked, from the first step that
    /// expected a denial (null: never).
    pub first_seen_ms: Option<u64>,
    /// Steps judged after one pass because no enforcement had been seen (`wait: shortened`).
    pub shortened_steps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub source: String,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub verdict: Verdict,
    pub provider: String,
    pub cni: String,
    pub probe_timeout_ms: u64,
    pub summary: Summary,
    pub scenarios: Vec<ScenarioReport>,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub harness_version: String,
    /// Injected faults (local provider).
    #[serde(default)]
    pub faults: Vec<String>,
    /// Features exercised by failing cells (ports, egress, ipBlock, …): what is broken.
    #[serde(default)]
    pub failing_features: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// How long each step could take to converge.
    #[serde(default)]
    pub step_timeout_ms: u64,
    /// Attempts a wrong cell got (the first included).
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The verdict the run was asked to reach (`--expect-verdict`), set by the CLI before the
    /// reports are written. JUnit judges against it: with `policies-ignored` declared and
    /// reached, the cells that show the declared non-enforcement are not test failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_verdict: Option<Verdict>,
    /// Present when steps were sampled (`--sample`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleReport>,
    #[serde(default)]
    pub enforcement: EnforcementReport,
    // --- real clusters (kind developer): catalogued gaps and the time breakdown ---
    /// The CNI's catalogued gaps and how many cells each made `unsupported`: the CNI is
    /// conformant *except* these ([`crate::cni::gaps`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<GapReport>,
    /// Where the run's time went, by phase.
    #[serde(default, skip_serializing_if = "PhaseTimes::is_empty")]
    pub phases: PhaseTimes,
}

/// One catalogued gap of the run's CNI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapReport {
    /// `ipBlock-pod-ips`, `sctp`, … ([`crate::cni::gaps::GapFeature`]).
    pub feature: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// Cells reported unsupported because of it.
    pub cells: u64,
}

/// Milliseconds by phase. `cluster` and `cni` are wall time of the platform's creation (absent
/// on providers that create none); `pods`, `convergence` and `probing` are summed over scenarios,
/// which may run in parallel, so together they can exceed the run's duration. `pods`: creating
/// and readying a scenario's pods (its first step's apply); `convergence`: from a step's changes
/// to the first pass matching the oracle (the whole wait when it never did); `probing`: the rest
/// of the steps' passes and retries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTimes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_ms: Option<u64>,
    #[serde(default)]
    pub pods_ms: u64,
    #[serde(default)]
    pub convergence_ms: u64,
    #[serde(default)]
    pub probing_ms: u64,
}

impl PhaseTimes {
    pub fn is_empty(&self) -> bool {
        *self == PhaseTimes::default()
    }
}
