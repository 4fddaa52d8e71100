//! Synthetic run reports of a chosen size, shaped like what the engine produces for one step of
//! `pods` × `pods` cells on 80/TCP (a default-deny namespace: cells into the first half of the
//! pods are denied): every cell carries its reproduce command, failing cells their explanation,
//! features and attempt history. Shared by the size test (tests/report_scale.rs) and the
//! benchmark (benches/report_size.rs).

#![allow(dead_code)]

use netpol_conformance::model::{PodRef, Protocol};
use netpol_conformance::probe::{Connectivity, Outcome};
use netpol_conformance::report::model::AttemptReport;
use netpol_conformance::report::{CellReport, RunReport};
use serde_json::json;

/// How the synthetic dataplane behaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Every cell as the oracle requires: conformant.
    Conformant,
    /// Every cell allowed: the denied half fails (policies-ignored), each with an explanation.
    Ignoring,
}

fn pod(i: usize) -> PodRef {
    format!("ns-{:02}/pod-{:03}", i / 20, i % 20)
        .parse()
        .expect("valid pod ref")
}

fn explanation(from: &PodRef, to: &PodRef) -> String {
    format!(
        "{from} -> {to} on 80/TCP (step deny-ingress): DENIED\n\
         a connection needs egress allowed at the source AND ingress allowed at the destination\n\n\
         egress at the source {from}: ALLOWED\n  no NetworkPolicy selects {from} for egress\n\n\
         ingress at the destination {to}: DENIED\n  selected for ingress by: {ns}/default-deny\n  \
         no ingress rule of {ns}/default-deny allows {from}\n",
        ns = to.namespace
    )
}

/// A report type from JSON, so fields other parts of the project add to the model (all
/// `serde(default)`) need no change here.
fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("fixture matches the report model")
}

/// A report of one scenario, one step, `pods` × `pods` cells.
pub fn report(pods: usize, shape: Shape) -> RunReport {
    let refs: Vec<PodRef> = (0..pods).map(pod).collect();
    let template: CellReport = from_json(json!({
        "from": "a/a", "to": "a/a", "port": 80, "protocol": "TCP", "expected": true,
        "observed": true, "outcome": "pass", "attempts": 1, "connectivity": "connected",
    }));
    let mut cells = Vec::with_capacity(pods * pods);
    let (mut passed, mut failed) = (0u64, 0u64);
    for from in &refs {
        for (j, to) in refs.iter().enumerate() {
            let expected = j >= pods / 2;
            let observed = match shape {
                Shape::Conformant => expected,
                Shape::Ignoring => true,
            };
            let fail = observed != expected;
            let connectivity = if observed {
                Connectivity::Connected
            } else {
                Connectivity::Timeout
            };
            let mut c = template.clone();
            c.from = from.clone();
            c.to = to.clone();
            c.port = 80;
            c.protocol = Protocol::Tcp;
            c.expected = Some(expected);
            c.observed = Some(observed);
            c.connectivity = connectivity;
            c.command = format!(
                "ip netns exec netpolc-20261201-101010-ab12-{}-{} netpolc-probe 10.{}.{}.{} 80 tcp",
                from.namespace,
                from.name,
                244 + j / 62_500,
                (j / 250) % 250,
                j % 250 + 2
            );
            if fail {
                failed += 1;
                c.outcome = Outcome::Fail;
                c.attempts = 2;
                c.explanation = Some(explanation(from, to));
                c.features = vec!["ingress".into(), "default-deny".into()];
                c.history = vec![
                    AttemptReport {
                        connectivity,
                        observed: Some(observed),
                        elapsed_ms: 3,
                        detail: None,
                    };
                    2
                ];
            } else {
                passed += 1;
            }
            cells.push(c);
        }
    }
    let verdict = match shape {
        Shape::Conformant => "conformant",
        Shape::Ignoring => "policies-ignored",
    };
    let mut r: RunReport = from_json(json!({
        "verdict": verdict,
        "provider": "local",
        "cni": "nftables",
        "probe_timeout_ms": 1000,
        "summary": {"cells": passed + failed, "passed": passed, "failed": failed,
                    "flaky": 0, "unsupported": 0, "errors": 0},
        "scenarios": [{"name": format!("scale-{pods}-pods"), "source": "scenarios/scale.yaml",
                       "steps": [{"name": "deny-ingress", "convergence_ms": 12,
                                  "probe_wall_ms": 2900, "passes": 1, "cells": []}]}],
        "run_id": "20261201-101010-ab12",
        "started_at": "2026-12-01T10:10:10Z",
        "duration_ms": 61_000,
        "harness_version": "0.0.0-test",
        "failing_features": if failed > 0 { vec!["ingress", "default-deny"] } else { vec![] },
        "step_timeout_ms": 3000,
        "attempts": 2,
        "expected_verdict": verdict,
    }));
    r.scenarios[0].steps[0].cells = cells;
    r
}

/// `steps` steps of `pods` × `pods` cells each (one scenario per step), to fill the page with
/// many small matrices rather than one large one.
pub fn many_steps(steps: usize, pods: usize, shape: Shape) -> RunReport {
    let mut r = report(pods, shape);
    let one = r.scenarios[0].clone();
    r.scenarios = (0..steps)
        .map(|i| {
            let mut s = one.clone();
            s.name = format!("scale-{i}");
            s
        })
        .collect();
    let (c, p, f) = (r.summary.cells, r.summary.passed, r.summary.failed);
    let n = steps as u64;
    r.summary.cells = c * n;
    r.summary.passed = p * n;
    r.summary.failed = f * n;
    r
}
