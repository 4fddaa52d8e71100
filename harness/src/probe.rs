//! Probes: what the executor observed for one cell, and how the collector classifies it.
//!
//! Outcomes are enums, not bools: a probe that could not run is an `error`, never "blocked";
//! SCTP on a kernel without it is `unsupported`, never pass or fail.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{PodRef, Probe};
use crate::service::{ProbeMode, ServiceTarget};

/// How one connection attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Connectivity {
    /// TCP handshake completed / SCTP association up / UDP echo answered.
    Connected,
    /// Actively refused (TCP RST, ICMP port unreachable): blocked by a rejecting rule.
    Refused,
    /// No answer within the probe timeout: blocked by a dropping rule.
    Timeout,
    /// The protocol cannot be probed here (e.g. SCTP without kernel support).
    Unsupported,
    /// The probe itself failed (could not enter the namespace, exec failed…).
    Error,
    /// The harness ran short of its own resources (descriptors, ports, memory, threads): says
    /// nothing about the dataplane. The engine re-probes such cells and never counts them as a
    /// dataplane's `flaky` or `fail`; if they persist the cell is `error` with this reason.
    #[serde(rename = "harness-error")]
    Harness,
}

impl Connectivity {
    /// The word reports use (a failed probe is a "probe error", never a blocked connection).
    pub fn describe(self) -> &'static str {
        match self {
            Connectivity::Connected => "connected",
            Connectivity::Refused => "refused",
            Connectivity::Timeout => "timeout",
            Connectivity::Unsupported => "unsupported",
            Connectivity::Error => "probe error",
            Connectivity::Harness => "harness error",
        }
    }

    /// Allowed (`Some(true)`), blocked (`Some(false)`) or unknown (`None`).
    pub fn allowed(self) -> Option<bool> {
        match self {
            Connectivity::Connected => Some(true),
            Connectivity::Refused | Connectivity::Timeout => Some(false),
            Connectivity::Unsupported | Connectivity::Error | Connectivity::Harness => None,
        }
    }
}

/// One observation, with the command that reproduces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub result: Connectivity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub elapsed_ms: u64,
    /// e.g. `ip netns exec npc-1a2b-x-a netpolc-probe 10.244.0.3 80 tcp` or an agnhost command.
    pub command: String,
}

/// A cell to probe: source pod, destination pod and address, port and protocol, and what the
/// probe connects to (`via`; with a Service, `service` says which and the port dialled — `None`
/// when no Service backs exactly this pod and port, and the provider reports it unsupported).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeRequest {
    pub from: PodRef,
    pub to: PodRef,
    pub to_ip: IpAddr,
    pub probe: Probe,
    pub via: ProbeMode,
    pub service: Option<ServiceTarget>,
}

impl ProbeRequest {
    /// A probe of the pod's own address (`via: pod-ip`).
    pub fn pod_ip(from: PodRef, to: PodRef, to_ip: IpAddr, probe: Probe) -> Self {
        ProbeRequest {
            from,
            to,
            to_ip,
            probe,
            via: ProbeMode::PodIp,
            service: None,
        }
    }

    /// Why a Service-mode request cannot be probed at all (no Service backs the cell).
    pub fn missing_service(&self) -> Option<String> {
        (self.via.is_service() && self.service.is_none()).then(|| {
            format!(
                "no Service selects exactly {} with a port targeting {}",
                self.to, self.probe
            )
        })
    }
}

/// The collector's classification of a cell (contract: pass · fail · flaky · unsupported · error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Wrong at first, right on a retry: reported, never silently a pass.
    Flaky,
    Unsupported,
    Error,
}
