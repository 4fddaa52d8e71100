//! The hermetic local dataplane: network namespaces, a bridge, nftables. Filled by the local
//! dataplane work; this stub fixes the constructor the CLI calls.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use crate::cni::faults::Fault;
use crate::probe::{Observation, ProbeRequest};
use crate::scenario::{Scenario, Step};

use super::{Platform, PlatformInfo, ProviderError, Session};

/// The local CNIs: `nftables` enforces, `none` ignores policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalCni {
    Nftables,
    None,
}

impl FromStr for LocalCni {
    type Err = ProviderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nftables" => Ok(LocalCni::Nftables),
            "none" => Ok(LocalCni::None),
            other => Err(ProviderError::InvalidInput(format!(
                "unknown CNI {other:?} for the local provider (expected nftables or none)"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub run_id: String,
    pub cni: LocalCni,
    pub faults: Vec<Fault>,
}

pub struct LocalPlatform {
    _opts: LocalOptions,
}

impl LocalPlatform {
    /// Checks prerequisites (root, `ip`, `nft`): missing → `ProviderError::Prerequisite`.
    pub fn new(opts: LocalOptions) -> Result<Self, ProviderError> {
        let _ = opts;
        Err(ProviderError::Prerequisite(
            "the local dataplane is not implemented yet".into(),
        ))
    }
}

pub struct LocalSession;

impl Session for LocalSession {
    fn apply(&mut self, _step: &Step) -> impl Future<Output = Result<(), ProviderError>> + Send {
        async { Err(ProviderError::Failed("not implemented".into())) }
    }
    fn probe(
        &self,
        _batch: &[ProbeRequest],
        _timeout: Duration,
    ) -> impl Future<Output = Vec<Observation>> + Send {
        async { Vec::new() }
    }
    fn teardown(&mut self) -> impl Future<Output = Result<(), ProviderError>> + Send {
        async { Ok(()) }
    }
}

impl Platform for LocalPlatform {
    type Session = LocalSession;
    fn info(&self) -> PlatformInfo {
        PlatformInfo::default()
    }
    fn max_parallel(&self) -> usize {
        1
    }
    fn open(
        &self,
        _n: usize,
        _scenario: &Scenario,
    ) -> impl Future<Output = Result<LocalSession, ProviderError>> + Send {
        async { Err(ProviderError::Failed("not implemented".into())) }
    }
    fn close(&self) -> impl Future<Output = Result<(), ProviderError>> + Send {
        async { Ok(()) }
    }
}

/// Removes leftovers of crashed runs (only netpolc's own; one run when `run_id` is given).
/// Returns what was removed.
pub fn cleanup(run_id: Option<&str>) -> Result<Vec<String>, ProviderError> {
    let _ = run_id;
    Ok(Vec::new())
}
