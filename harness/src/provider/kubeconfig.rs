//! The kubeconfig provider. Filled by the real-cluster work; this stub fixes the API the CLI calls.

use std::future::Future;
use std::time::Duration;

use crate::probe::{Observation, ProbeRequest};
use crate::scenario::{Scenario, Step};

use super::{Platform, PlatformInfo, ProviderError, Session};

#[derive(Debug, Clone)]
pub struct KubeconfigOptions {
    pub run_id: String,
    pub context: Option<String>,
}

pub struct KubeconfigPlatform {
    _opts: KubeconfigOptions,
}

impl KubeconfigPlatform {
    /// Checks prerequisites and prepares the platform (for kind: creates the cluster).
    pub async fn create(opts: KubeconfigOptions) -> Result<Self, ProviderError> {
        let _ = opts;
        Err(ProviderError::Prerequisite(
            "the kubeconfig provider is not implemented yet".into(),
        ))
    }
}

/// The whole plan as YAML documents, touching nothing (`run --dry-run`).
pub fn dry_run(scenarios: &[Scenario], opts: &KubeconfigOptions) -> Result<String, ProviderError> {
    let _ = (scenarios, opts);
    Err(ProviderError::Prerequisite(
        "--dry-run for kubeconfig is not implemented yet".into(),
    ))
}

pub struct KubeconfigSession;

impl Session for KubeconfigSession {
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

impl Platform for KubeconfigPlatform {
    type Session = KubeconfigSession;
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
    ) -> impl Future<Output = Result<KubeconfigSession, ProviderError>> + Send {
        async { Err(ProviderError::Failed("not implemented".into())) }
    }
    fn close(&self) -> impl Future<Output = Result<(), ProviderError>> + Send {
        async { Ok(()) }
    }
}
