//! # netpol-conformance
//!
//! An end-to-end conformance harness for Kubernetes NetworkPolicy enforcement. A NetworkPolicy does
//! nothing by itself: the CNI plugin enforces it, and some silently do not. This crate realises
//! scenarios (namespaces, pods, policies, step by step) on a dataplane, probes every
//! pod → pod × port × protocol cell, and compares what it observed with what its own NetworkPolicy
//! engine — the oracle — says Kubernetes requires.
//!
//! Main types:
//! - [`model::Model`]: namespaces and pods of one step (upstream e2e's `Model`).
//! - [`policy::CompiledPolicy`] and [`policy::Oracle`]: validated policies and their evaluation.
//! - [`scenario::Scenario`]: a model and a sequence of [`scenario::Step`]s, loaded from scenario
//!   files or plain Kubernetes manifests.
//! - [`truthtable::TruthTable`]: a from × to matrix (upstream's `TruthTable`).
//! - [`names`]: the API server's rules for names and labels, applied to every input.
//!
//! ```
//! use netpol_conformance::scenario::load_str;
//! use netpol_conformance::model::{PodRef, Probe, Protocol};
//!
//! let yaml = r#"
//! apiVersion: v1
//! kind: Pod
//! metadata: {name: a, namespace: x, labels: {pod: a}}
//! spec: {containers: [{name: c, image: agnhost, ports: [{containerPort: 80}]}]}
//! ---
//! apiVersion: v1
//! kind: Pod
//! metadata: {name: b, namespace: y, labels: {pod: b}}
//! spec: {containers: [{name: c, image: agnhost, ports: [{containerPort: 80}]}]}
//! ---
//! apiVersion: networking.k8s.io/v1
//! kind: NetworkPolicy
//! metadata: {name: deny-all, namespace: y}
//! spec: {podSelector: {}}
//! "#;
//! let scenarios = load_str(yaml, "example.yaml").unwrap();
//! let step = &scenarios.scenarios[0].steps[0];
//! let oracle = step.oracle();
//! let table = oracle.matrix(Probe::new(80, Protocol::Tcp));
//! let (xa, yb) = (PodRef::new("x", "a"), PodRef::new("y", "b"));
//! assert!(table.get(&yb, &xa));   // x has no policy: everything may reach x/a
//! assert!(!table.get(&xa, &yb));  // y/b is isolated for ingress by deny-all
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod audit;
pub mod cli;
pub mod cni;
pub mod model;
pub mod names;
pub mod policy;
pub mod probe;
pub mod provider;
pub mod report;
pub mod run;
pub mod scenario;
pub mod service;
pub mod shell;
pub mod truthtable;
pub mod verdict;
