//! The oracle: NetworkPolicy v1 semantics, compiled once and evaluated per cell or per matrix.
//!
//! `compile` holds every API default and validation rule; `oracle` answers "may A reach B on this
//! port?" with the reasons (which policies select each side, which rule and peer allowed it), so
//! `expect`, `explain`, reports and tests share one answer. No I/O here.

pub mod compile;
pub mod explain;
pub mod oracle;
pub mod selector;

use std::fmt;

use serde::Serialize;

pub use compile::{CompiledPolicy, Direction, NamespaceMatch, Peer, PortMatch, PortSpec, Rule};
pub use oracle::{Decision, DirectionDecision, Oracle, RuleMatch};
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
