//! The provider boundary: realise a step's state on a dataplane, probe cells, tear down.
//!
//! Planning, probing passes, retries, convergence timing, comparison and verdicts live above this
//! trait (in [`crate::run`]) and are shared by every provider. A [`Platform`] (a local dataplane, a
//! kind cluster, an existing cluster) opens one [`Session`] per scenario.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

pub mod cleanup;
pub mod kind;
pub mod kube;
pub mod kubeconfig;
pub mod lease;
pub mod local;

use crate::model::PodRef;
use crate::probe::{Observation, ProbeRequest};
use crate::scenario::{Scenario, Step};

/// Why a provider could not do its job. Maps to exit 3 (prerequisites missing or provider failed).
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Something to install or fix before running (the message says what).
    #[error("missing prerequisite: {0}")]
    Prerequisite(String),
    #[error("provider failed: {0}")]
    Failed(String),
    /// The request itself is wrong (unknown CNI, a fault on a provider without faults…): exit 2.
    #[error("{0}")]
    InvalidInput(String),
    #[error("interrupted")]
    Interrupted,
}

/// What the reports record about the environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlatformInfo {
    /// `local`, `kind` or `kubeconfig`.
    pub provider: String,
    /// `nftables`, `none`, `calico`, …
    pub cni: String,
    /// Versions and settings worth recording (kernel, nft, kind, Kubernetes, CNI version, faults…).
    pub environment: BTreeMap<String, String>,
    /// Said up front and in reports (e.g. "detected CNI does not enforce NetworkPolicy").
    pub warnings: Vec<String>,
    /// The CNI's catalogued gaps: cells they cover are `unsupported` with the gap's reason.
    pub gaps: Vec<crate::cni::gaps::Gap>,
    /// Milliseconds spent creating the platform, by phase (`cluster`, `cni`): the start of the
    /// run's time breakdown.
    pub setup_ms: BTreeMap<String, u64>,
}

/// One scenario realised on a platform.
pub trait Session: Send {
    /// Brings the dataplane to `step`'s state (first call: create namespaces and pods; later:
    /// apply policy and label changes). Must return only once the changes are submitted.
    fn apply(&mut self, step: &Step) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Probes every request concurrently, each bounded by `timeout`; one observation per request,
    /// in order. Never fails as a whole: a probe that cannot run is an `Error` observation.
    fn probe(
        &self,
        batch: &[ProbeRequest],
        timeout: Duration,
    ) -> impl Future<Output = Vec<Observation>> + Send;

    /// Removes everything this session created (or hands it back to its platform for reuse by a
    /// later scenario, see [`crate::provider::kube`]). Idempotent.
    fn teardown(&mut self) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// The addresses the dataplane gave the scenario's pods, once known (after the first
    /// `apply`). Clusters assign their own; the engine then re-binds each step to them
    /// ([`Step::rebind`]) and re-plans, so the oracle answers for the real addresses (ipBlock
    /// rules written relative to pods included). `None`, the default: the model's addresses are
    /// the real ones.
    fn addresses(&self) -> Option<BTreeMap<PodRef, IpAddr>> {
        None
    }
}

/// A place scenarios run: creates sessions and cleans up what the run created.
pub trait Platform: Send + Sync {
    type Session: Session;

    fn info(&self) -> PlatformInfo;

    /// How many sessions may run at once (a kind cluster: 1; the local dataplane: several).
    fn max_parallel(&self) -> usize;

    /// Whether each observation's `elapsed_ms` is the time of that one probe (a connect or an
    /// echo), so the engine may calibrate the probe timeout against it. `false` (the default)
    /// where one measurement covers a whole batch (an exec running many probes).
    fn times_each_probe(&self) -> bool {
        false
    }

    /// Opens a session for `scenario` (index `n` in this run, for unique names).
    fn open(
        &self,
        n: usize,
        scenario: &Scenario,
    ) -> impl Future<Output = Result<Self::Session, ProviderError>> + Send;

    /// Final cleanup of anything the run created (cluster, leftover namespaces). Idempotent.
    fn close(&self) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Why this platform cannot realise cluster-wide policies of `kind` (ClusterNetworkPolicy,
    /// AdminNetworkPolicy, BaselineAdminNetworkPolicy), or `None` when it can. Cells such a
    /// policy decides are then reported `unsupported` with this reason instead of being probed
    /// against a dataplane that never saw the policy. The local provider realises every kind;
    /// kind realises the kinds its CNI implements (the catalogue's `clusterPolicies`); the
    /// default (kubeconfig) realises none, as nothing tells what an existing cluster's CNI does.
    fn cluster_policy_gap(&self, kind: crate::policy::cluster::ClusterKind) -> Option<String> {
        let info = self.info();
        Some(format!(
            "the {} provider (CNI {}) does not realise {kind} ({}): what an existing cluster's \
             CNI implements of the network-policy-api is not known to the harness",
            info.provider,
            info.cni,
            kind.api_version()
        ))
    }
}
