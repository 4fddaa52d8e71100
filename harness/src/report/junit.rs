//! JUnit XML (quick-junit): a `testsuite` per scenario, a `testcase` per step × probe.
//!
//! Names are stable across runs so CI can track them: the suite is the scenario's name, the case's
//! classname is the scenario's name and its name `<step> <port>/<protocol>` (with ` via <mode>`
//! appended for cells probed through a Service, `--probe-mode`). A case fails when any
//! of its cells differs from the oracle (the body holds the expected, observed and comparison truth
//! tables and the differing cells), errors when a cell could not be probed, is skipped when every
//! cell is unsupported, and passes otherwise; flaky cells pass with their failed attempts recorded
//! as `flakyFailure` reruns.

use std::time::Duration;

use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use crate::probe::Outcome;
use crate::report::model::{CellReport, RunReport, StepReport};
use crate::report::terminal::{ProbeTable, describe_cell, probe_tables};

fn properties(report: &RunReport) -> Vec<Property> {
    let mut p = vec![
        Property::new("provider", report.provider.as_str()),
        Property::new("cni", report.cni.as_str()),
        Property::new("harness-version", report.harness_version.as_str()),
        Property::new("run-id", report.run_id.as_str()),
        Property::new("verdict", report.verdict.as_str()),
        Property::new("probe-timeout-ms", report.probe_timeout_ms.to_string()),
    ];
    if !report.faults.is_empty() {
        p.push(Property::new("faults", report.faults.join(",")));
    }
    for (k, v) in &report.environment {
        p.push(Property::new(k.as_str(), v.as_str()));
    }
    p
}

fn tables_text(t: &ProbeTable<'_>) -> String {
    let mut s = String::new();
    s.push_str("expected (. allowed, X blocked):\n");
    s.push_str(&t.render_expected());
    s.push_str("observed:\n");
    s.push_str(&t.render_observed());
    s.push_str("comparison (. as expected, X differs, ~ flaky, ? unsupported, E error):\n");
    s.push_str(&t.render_comparison());
    s
}

fn cell_lines(cells: &[&CellReport]) -> String {
    let mut s = String::new();
    for c in cells {
        s.push_str(&describe_cell(c));
        s.push('\n');
        if !c.command.is_empty() {
            s.push_str("  reproduce: ");
            s.push_str(&c.command);
            s.push('\n');
        }
    }
    s
}

fn step_out(step: &StepReport) -> String {
    let conv = step.convergence_ms.map_or_else(
        || "never converged".to_string(),
        |m| format!("converged after {m} ms"),
    );
    let passes = if step.passes == 1 { "pass" } else { "passes" };
    format!(
        "{conv}; {} {passes}, last pass {} ms\n",
        step.passes, step.probe_wall_ms
    )
}

fn test_case(scenario: &str, step: &StepReport, t: &ProbeTable<'_>) -> TestCase {
    let cells: Vec<&CellReport> = t.cells().collect();
    let of = |o: Outcome| -> Vec<&CellReport> {
        cells.iter().copied().filter(|c| c.outcome == o).collect()
    };
    let (fail, err, flaky, unsup) = (
        of(Outcome::Fail),
        of(Outcome::Error),
        of(Outcome::Flaky),
        of(Outcome::Unsupported),
    );
    let status = if !fail.is_empty() {
        let mut features: Vec<&str> = fail
            .iter()
            .flat_map(|c| c.features.iter().map(String::as_str))
            .collect();
        features.sort_unstable();
        features.dedup();
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
        let mut msg = format!(
            "{} of {} cells differ from NetworkPolicy semantics",
            fail.len(),
            cells.len()
        );
        if !features.is_empty() {
            msg.push_str(&format!(" (features: {})", features.join(", ")));
        }
        st.set_message(msg)
            .set_type("non-conformant")
            .set_description(format!("{}\n{}", tables_text(t), cell_lines(&fail)));
        st
    } else if !err.is_empty() {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
        st.set_message(format!(
            "{} of {} cells could not be probed",
            err.len(),
            cells.len()
        ))
        .set_type("probe-error")
        .set_description(format!("{}\n{}", tables_text(t), cell_lines(&err)));
        st
    } else if !cells.is_empty() && unsup.len() == cells.len() {
        let mut st = TestCaseStatus::skipped();
        let why = unsup
            .iter()
            .find_map(|c| c.detail.as_deref())
            .unwrap_or("the provider cannot probe this protocol");
        st.set_message(format!("unsupported: {why}"))
            .set_type("unsupported");
        st
    } else {
        let mut st = TestCaseStatus::success();
        for c in &flaky {
            let mut r = TestRerun::new(NonSuccessKind::Failure);
            r.set_message(describe_cell(c)).set_type("flaky");
            if let Some(first) = c.history.first() {
                r.set_time(Duration::from_millis(first.elapsed_ms));
            }
            if !c.command.is_empty() {
                r.set_description(format!("reproduce: {}\n", c.command));
            }
            st.add_rerun(r);
        }
        st
    };
    let mut tc = TestCase::new(format!("{} {}", step.name, t.label()), status);
    tc.set_classname(scenario);
    let mut out = step_out(step);
    if !unsup.is_empty() && unsup.len() < cells.len() {
        out.push_str(&format!("{} cells unsupported\n", unsup.len()));
    }
    tc.set_system_out(out);
    tc
}

/// Renders the run as JUnit XML.
pub fn render(report: &RunReport) -> Result<String, quick_junit::SerializeError> {
    let mut r = Report::new("netpolc");
    r.set_time(Duration::from_millis(report.duration_ms));
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&report.started_at) {
        r.set_timestamp(t);
    }
    let props = properties(report);
    for s in &report.scenarios {
        let mut suite = TestSuite::new(s.name.as_str());
        suite.add_property(Property::new("source", s.source.as_str()));
        suite.add_properties(props.iter().cloned());
        for step in &s.steps {
            for t in probe_tables(step) {
                suite.add_test_case(test_case(&s.name, step, &t));
            }
        }
        r.add_test_suite(suite);
    }
    r.to_string()
}
