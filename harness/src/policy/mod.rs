//! The oracle: NetworkPolicy v1 and the network-policy-api's cluster-wide tiers, compiled once and
//! evaluated per cell or per matrix.
//!
//! `compile` holds every NetworkPolicy default and validation rule, `cluster` those of
//! ClusterNetworkPolicy / AdminNetworkPolicy / BaselineAdminNetworkPolicy; `oracle` answers "may A
//! reach B on this port?" with the reasons (which tier decided, which policies select each side,
//! which rule and peer allowed or denied it), so `expect`, `explain`, reports and tests share one
//! answer. No I/O here.

mod bitset;
pub mod cluster;
pub mod compile;
pub mod explain;
pub mod oracle;
pub mod selector;

use std::fmt;

use serde::Serialize;

pub use cluster::{
    Action, ClusterKind, ClusterPeer, ClusterPolicy, ClusterPolicyRef, ClusterPort, ClusterRule,
    Subject, Tier,
};
pub use compile::{CompiledPolicy, Direction, NamespaceMatch, Peer, PortMatch, PortSpec, Rule};
pub use oracle::{
    Addressing, ClusterEval, ClusterRuleMatch, Conflict, DecidedBy, Decision, DirectionDecision,
    Oracle, RuleMatch, TierTrace,
};
pub use selector::Selector;

/// "namespace/name" of a NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A problem (or warning) at a field path inside one object, e.g. `spec.ingress[0].ports[1].endPort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
