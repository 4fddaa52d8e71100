//! The run report: the one document every reporter renders (JSON as is, JUnit, HTML, terminal).
//! Field names and meanings of the top level, `summary`, steps and cells are fixed by the contract
//! (`../shared/contract.md`); additions are allowed, renames are not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{PodRef, Protocol};
use crate::probe::{Connectivity, Outcome};

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
}

/// One probed (or unsupported) cell of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellReport {
    pub from: PodRef,
    pub to: PodRef,
    pub port: u16,
    pub protocol: Protocol,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    pub name: String,
    /// From the step's changes being applied until the observed matrix first matched (null: never).
    pub convergence_ms: Option<u64>,
    /// Wall time of one full pass over the step's matrix.
    pub probe_wall_ms: u64,
    /// Passes made before the matrix matched or the step timeout passed.
    #[serde(default)]
    pub passes: u32,
    pub cells: Vec<CellReport>,
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
}
