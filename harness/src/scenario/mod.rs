//! Scenarios: a model and a sequence of steps that change policies and labels.
//!
//! Inputs are scenario files (`apiVersion: netpolc/v1`, `kind: Scenario`, documented in
//! `scenarios/README.md`), plain Kubernetes manifests or cluster dumps (`kubectl get … -o yaml`
//! or `-o json`; each a one-step scenario). Every name is validated by [`crate::names`]; the
//! bounds on inputs are in [`limits`]. Each [`Step`] holds the
//! complete state after its changes — model and compiled policies — so the oracle and every
//! provider see the same thing, and providers derive what to change from consecutive steps.

pub mod address;
mod cluster;
mod docs;
mod error;
mod format;
mod input;
mod jsonpos;
pub mod limits;
mod load;
mod objects;
mod service_input;
mod yamlpos;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::model::{Model, PodRef, Probe};
use crate::policy::{ClusterPolicy, ClusterPolicyRef, CompiledPolicy, Decision, Oracle, PolicyRef};
use crate::truthtable::TruthTable;

pub use cluster::read as read_cluster_policy;
pub use error::{InputError, InputErrors};
pub use format::{ExpectationSpec, SCENARIO_API_VERSION};
pub use load::{Loaded, Pods, load_paths, load_paths_with, load_str, load_str_with};
pub use objects::left_out_reason;
pub use yamlpos::line_of;

/// The first address handed to pods that do not state one (`status.podIP`): pods get
/// 10.244.0.2, 10.244.0.3, … in `namespace/name` order, skipping addresses stated elsewhere.
pub const ALLOCATION_BASE: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 2);

/// A change a step makes, kept for reports and `--dry-run` plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Change {
    ApplyPolicy {
        policy: PolicyRef,
    },
    DeletePolicy {
        policy: PolicyRef,
    },
    /// A cluster-wide policy created or replaced (`Kind/name`).
    ApplyClusterPolicy {
        policy: ClusterPolicyRef,
    },
    DeleteClusterPolicy {
        policy: ClusterPolicyRef,
    },
    LabelPod {
        pod: PodRef,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
    LabelNamespace {
        namespace: String,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
}

/// Hand-written expectations for some probes of a step: a full truth table per probe (`None`:
/// written as implementation-defined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub probe: Probe,
    pub table: TruthTable<Option<bool>>,
    /// File, document, field path and line of the `expect` entry (its message is empty).
    pub written_at: Option<InputError>,
}

/// The complete state after a step's changes.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub description: Option<String>,
    pub model: Model,
    /// Every policy present after this step, sorted by namespace/name.
    pub policies: Vec<CompiledPolicy>,
    /// Every cluster-wide policy present after this step, sorted by kind/name.
    pub cluster_policies: Vec<ClusterPolicy>,
    /// What this step changed relative to the previous one (the initial step: every policy).
    pub changes: Vec<Change>,
    pub probes: Vec<Probe>,
    pub expectations: Vec<Expectation>,
    /// Policies whose ipBlock CIDRs are written relative to pods (`<ns/pod>/N`), as written, so
    /// [`Step::rebind`] can resolve them again on a cluster's real addresses (see [`address`]).
    pub templates: BTreeMap<PolicyRef, serde_json::Value>,
}

impl Step {
    pub fn oracle(&self) -> Oracle<'_> {
        Oracle::with_cluster(&self.model, &self.policies, &self.cluster_policies)
    }

    /// Explains one cell; `None` when a pod is unknown.
    pub fn explain(&self, from: &PodRef, to: &PodRef, probe: Probe) -> Option<Decision> {
        self.oracle().decide(from, to, probe)
    }

    /// Compares the hand-written expectations with the oracle; returns every disagreeing cell.
    pub fn check_expectations(&self) -> Vec<ExpectationMismatch> {
        let oracle = self.oracle();
        let mut out = Vec::new();
        for exp in &self.expectations {
            let actual = oracle.expected_matrix(exp.probe);
            for (from, to, expected) in exp.table.iter() {
                let got = *actual.try_get(from, to).unwrap_or(expected);
                if got != *expected {
                    out.push(ExpectationMismatch {
                        written_at: exp.written_at.clone(),
                        step: self.name.clone(),
                        probe: exp.probe,
                        from: from.clone(),
                        to: to.clone(),
                        written: *expected,
                        oracle: got,
                    });
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectationMismatch {
    #[serde(skip)]
    pub written_at: Option<InputError>,
    pub step: String,
    pub probe: Probe,
    pub from: PodRef,
    pub to: PodRef,
    /// `None`: implementation-defined.
    pub written: Option<bool>,
    pub oracle: Option<bool>,
}

impl std::fmt::Display for ExpectationMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let word = |b: Option<bool>| match b {
            Some(true) => "allowed",
            Some(false) => "denied",
            None => "implementation-defined",
        };
        if let Some(at) = &self.written_at {
            // InputError's Display ends with ": <message>"; the message is empty here.
            write!(f, "{}: ", at.to_string().trim_end_matches(": "))?;
        }
        write!(
            f,
            "step {:?}, {} {} -> {}: written {} but the oracle says {}",
            self.step,
            self.probe,
            self.from,
            self.to,
            word(self.written),
            word(self.oracle)
        )
    }
}

/// A whole scenario, every step resolved.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    /// The file it came from, as given on the command line (or found under a directory).
    pub source: String,
    pub description: Option<String>,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Every disagreement between hand-written expectations and the oracle, over all steps.
    pub fn check_expectations(&self) -> Vec<ExpectationMismatch> {
        self.steps
            .iter()
            .flat_map(|s| s.check_expectations())
            .collect()
    }
}

/// Gives every pod whose `ip` is unset (`None`) the next free address from [`ALLOCATION_BASE`].
pub fn allocate_ips(pods: &mut [(PodRef, Option<IpAddr>)]) -> Vec<IpAddr> {
    let taken: std::collections::HashSet<IpAddr> = pods.iter().filter_map(|p| p.1).collect();
    let mut next = u32::from(ALLOCATION_BASE);
    pods.iter_mut()
        .map(|(_, ip)| match ip {
            Some(ip) => *ip,
            None => loop {
                let cand = IpAddr::V4(Ipv4Addr::from(next));
                next += 1;
                if !taken.contains(&cand) {
                    *ip = Some(cand);
                    break cand;
                }
            },
        })
        .collect()
}
