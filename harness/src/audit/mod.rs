//! The user's own cluster: what its policies say (`audit`), whether it enforces them at all
//! (`check`), and what a candidate change would flip (`what-if`).
//!
//! Everything here that decides something is a pure function over the same types the rest of the
//! crate uses, so it is tested without a cluster:
//! - [`snapshot`]: the API objects listed from a cluster become the documents a dump would hold,
//!   and are read by the one loader ([`crate::scenario::load_str`]); owner chains name workloads.
//! - [`group`]: pods that NetworkPolicy cannot tell apart form one class, named by its workload,
//!   so a 200-pod cluster reads as a dozen rows.
//! - [`exposure`]: findings a person acts on ("not isolated for ingress", "accepts 5432/TCP from
//!   every pod in 3 namespaces", "egress unrestricted for N workloads").
//! - [`report`]: the audit document (JSON), its terminal rendering and its HTML page.
//! - [`whatif`]: the cells a policy change flips, with the deciding rule of each.
//! - [`check`]: the enforcement check's scenario and its verdict from what was observed.
//! - [`probe`]: `audit --probe`: sampling one pod per class, the ephemeral container that probes
//!   from it, and the verdict "the cluster ignores your policies" from the outcomes.
//! - [`live`]: the only part that talks to a cluster (read-only listing, and the opt-in probe
//!   through ephemeral containers).

pub mod analysis;
pub mod check;
pub mod exposure;
pub mod group;
pub mod live;
pub mod probe;
pub mod report;
pub mod snapshot;
pub mod whatif;

pub use group::{Class, Grouping, Owner};
