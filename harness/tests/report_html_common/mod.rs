//! A hand-built run report holding every outcome, shared by the HTML, summary and browser tests.
//! Its texts include markup (`<img … onerror=…>`, `<script>`) so the tests can prove escaping.

#![allow(dead_code)]

use netpol_conformance::model::Protocol;
use netpol_conformance::probe::{Connectivity, Outcome};
use netpol_conformance::report::{CellReport, RunReport, ScenarioReport, StepReport, Summary};
use serde_json::json;

/// The explanation text of the mismatched cell; tests look for it on the page.
pub const FAIL_EXPLANATION_MARK: &str = "selected for ingress by: x/allow-from-frontend";

/// A pod name carrying markup: rendered as text, it must never become an element.
/// Markup in a step name: names of pods and namespaces cannot carry it (the model refuses them as
/// the API server does), free-text names can.
pub const HOSTILE_STEP: &str = "deny-all-ingress-in-x <img src=x onerror=alert(1)>";

#[allow(clippy::too_many_arguments)]
pub fn cell(
    from: &str,
    to: &str,
    port: u16,
    protocol: Protocol,
    expected: bool,
    observed: Option<bool>,
    outcome: Outcome,
    attempts: u32,
    connectivity: Connectivity,
) -> CellReport {
    let fp = from.split_once('/').map_or(from, |(_, p)| p);
    let tp = to.split_once('/').map_or(to, |(_, p)| p);
    // Built from JSON so fields other helpers add to the model (all `serde(default)`) need no
    // change here.
    from_json(json!({
        "from": from,
        "to": to,
        "port": port,
        "protocol": protocol,
        "expected": expected,
        "observed": observed,
        "outcome": outcome,
        "attempts": attempts,
        "connectivity": connectivity,
        "command": format!("ip netns exec npc-test-{fp} netpolc-probe {tp} {port} {}", protocol.lower()),
        "explanation": format!(
            "{from} -> {to} on {port}/{protocol}: {}\n",
            if expected { "ALLOWED" } else { "DENIED" }
        ),
    }))
}

/// A report type from JSON; panics with serde's message on a shape the model does not accept.
pub fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("fixture matches the report model")
}

pub fn summarize(scenarios: &[ScenarioReport]) -> Summary {
    let mut s = Summary::default();
    for c in scenarios
        .iter()
        .flat_map(|s| &s.steps)
        .flat_map(|s| &s.cells)
    {
        s.cells += 1;
        match c.outcome {
            Outcome::Pass => s.passed += 1,
            Outcome::Fail => s.failed += 1,
            Outcome::Flaky => s.flaky += 1,
            Outcome::Unsupported => s.unsupported += 1,
            Outcome::Error => s.errors += 1,
        }
    }
    s
}

/// Every outcome in one report: pass (allowed and blocked), fail (both directions), flaky,
/// unsupported (SCTP), error; one step that never converged.
pub fn all_outcomes() -> RunReport {
    use Connectivity as C;
    use Outcome as O;
    use Protocol::{Sctp, Tcp, Udp};

    let mut fail = cell(
        "y/frontend",
        "x/backend",
        80,
        Tcp,
        true,
        Some(false),
        O::Fail,
        2,
        C::Timeout,
    );
    fail.explanation = Some(format!(
        "y/frontend -> x/backend on 80/TCP (step initial): ALLOWED\n\
         a connection needs egress allowed at the source AND ingress allowed at the destination\n\n\
         egress at the source y/frontend: ALLOWED\n  no NetworkPolicy selects y/frontend for egress\n\n\
         ingress at the destination x/backend: ALLOWED\n  {FAIL_EXPLANATION_MARK}\n  \
         allowed by x/allow-from-frontend rule spec.ingress[0]\n"
    ));
    let mut error = cell(
        "x/backend",
        "y/frontend",
        53,
        Udp,
        false,
        None,
        O::Error,
        2,
        C::Error,
    );
    error.detail = Some("could not enter network namespace: No such file or directory".into());
    let mut hostile = cell(
        "x/backend",
        "y/evil",
        80,
        Tcp,
        false,
        Some(false),
        O::Pass,
        1,
        C::Refused,
    );
    hostile.command = "sh -c 'echo \"<b>bold</b>\" && exit 1'".into();

    let initial = step(
        "initial",
        Some(42),
        1040,
        3,
        vec![
            cell(
                "x/backend",
                "x/backend",
                80,
                Tcp,
                true,
                Some(true),
                O::Pass,
                1,
                C::Connected,
            ),
            fail,
            cell(
                "x/backend",
                "y/frontend",
                80,
                Tcp,
                false,
                Some(false),
                O::Pass,
                1,
                C::Timeout,
            ),
            cell(
                "y/frontend",
                "y/frontend",
                80,
                Tcp,
                true,
                Some(true),
                O::Pass,
                1,
                C::Connected,
            ),
            hostile,
            cell(
                "y/frontend",
                "x/backend",
                53,
                Udp,
                false,
                Some(true),
                O::Fail,
                2,
                C::Connected,
            ),
            cell(
                "y/frontend",
                "y/frontend",
                53,
                Udp,
                true,
                Some(true),
                O::Flaky,
                2,
                C::Connected,
            ),
            error,
            cell(
                "y/frontend",
                "x/backend",
                132,
                Sctp,
                true,
                None,
                O::Unsupported,
                1,
                C::Unsupported,
            ),
        ],
    );
    let deny = step(
        HOSTILE_STEP,
        None,
        2100,
        2,
        vec![cell(
            "y/frontend",
            "x/backend",
            80,
            Tcp,
            false,
            Some(true),
            O::Fail,
            2,
            C::Connected,
        )],
    );
    let scenarios = vec![scenario(
        "seed-frontend-backend <script>alert(\"scenario\")</script>",
        "scenarios/seed/frontend-backend.yaml",
        vec![initial, deny],
    )];
    from_json(json!({
        "verdict": "error",
        "provider": "local",
        "cni": "nftables",
        "probe_timeout_ms": 1000,
        "summary": summarize(&scenarios),
        "scenarios": scenarios,
        "run_id": "npc-test",
        "started_at": "2026-11-26T10:00:00Z",
        "duration_ms": 12_345,
        "harness_version": "0.1.0",
        "faults": ["ignore-egress"],
        "failing_features": ["egress", "udp"],
        "environment": {
            "cni_version": "nftables 1.1.3",
            "kubernetes_version": "v1.35.0 (simulated)",
            "step_timeout_ms": "3000",
            "attempts": "2",
            "kernel": "6.12.0",
        },
        "warnings": ["pod y/frontend: <warning> & \"quotes\""],
    }))
}

pub fn step(
    name: &str,
    convergence_ms: Option<u64>,
    probe_wall_ms: u64,
    passes: u32,
    cells: Vec<CellReport>,
) -> StepReport {
    from_json(json!({
        "name": name,
        "convergence_ms": convergence_ms,
        "probe_wall_ms": probe_wall_ms,
        "passes": passes,
        "cells": cells,
    }))
}

pub fn scenario(name: &str, source: &str, steps: Vec<StepReport>) -> ScenarioReport {
    from_json(json!({"name": name, "source": source, "steps": steps}))
}

/// Pods per axis of [`big_scenario`]: its one matrix (1,600 cells) is over the HTML report's
/// threshold for drawing up front, so the page's script draws it on demand.
pub const BIG_PODS: usize = 40;

/// A scenario with one 40 × 40 step on 80/TCP: cells to the first ten pods are denied, the rest
/// allowed; three cells fail (two allowed although denied, one blocked although allowed).
pub fn big_scenario() -> ScenarioReport {
    use Connectivity as C;
    use Outcome as O;
    let pod = |i: usize| format!("big/p{i:02}");
    let mut cells = Vec::with_capacity(BIG_PODS * BIG_PODS);
    for i in 0..BIG_PODS {
        for j in 0..BIG_PODS {
            let expected = j >= 10;
            let wrong = matches!((i, j), (3, 4) | (20, 5) | (33, 30));
            let observed = if wrong { !expected } else { expected };
            let (outcome, attempts) = if wrong { (O::Fail, 2) } else { (O::Pass, 1) };
            let conn = if observed { C::Connected } else { C::Timeout };
            let mut c = cell(
                &pod(i),
                &pod(j),
                80,
                Protocol::Tcp,
                expected,
                Some(observed),
                outcome,
                attempts,
                conn,
            );
            if !wrong {
                c.explanation = None;
            }
            cells.push(c);
        }
    }
    scenario(
        "big-matrix",
        "scenarios/big.yaml",
        vec![step("wide", Some(7), 3100, 1, cells)],
    )
}

/// [`all_outcomes`] plus [`big_scenario`], counts and verdict kept consistent.
pub fn all_outcomes_and_a_big_matrix() -> RunReport {
    let mut r = all_outcomes();
    r.scenarios.push(big_scenario());
    r.summary = summarize(&r.scenarios);
    r
}
