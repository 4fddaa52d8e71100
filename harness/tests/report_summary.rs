//! The GitHub job-summary markdown (`netpolc run --summary-md`).

mod report_html_common;

use netpol_conformance::model::Protocol;
use netpol_conformance::probe::{Connectivity, Outcome};
use netpol_conformance::report::Verdict;
use netpol_conformance::report::summary::{MAX_ROWS_PER_STEP, MAX_STEPS, render_markdown};
use report_html_common::{all_outcomes, cell, step, summarize};

#[test]
fn summary_snapshot() {
    insta::assert_snapshot!(render_markdown(&all_outcomes()));
}

#[test]
fn conformant_run_has_no_failing_cell_section() {
    let mut r = all_outcomes();
    for c in r
        .scenarios
        .iter_mut()
        .flat_map(|s| &mut s.steps)
        .flat_map(|s| &mut s.cells)
    {
        if c.outcome != Outcome::Unsupported {
            c.outcome = Outcome::Pass;
            c.observed = c.expected;
        }
    }
    r.summary = summarize(&r.scenarios);
    r.verdict = Verdict::Conformant;
    r.failing_features.clear();
    let md = render_markdown(&r);
    assert!(
        md.starts_with("## ✅ NetworkPolicy conformance: conformant\n"),
        "{md}"
    );
    assert!(!md.contains("Failing cells"), "{md}");
    assert!(!md.contains("Failing features"), "{md}");
}

#[test]
fn failing_features_are_derived_when_the_report_has_none() {
    let mut r = all_outcomes();
    r.failing_features.clear();
    let md = render_markdown(&r);
    // Failing cells: 80/TCP and 53/UDP; `ingress` from the fail cell's explanation (and the step
    // name), `default-deny` from the step name deny-all-ingress-in-x. Enum order, not alphabetic.
    assert!(
        md.contains("**Failing features:** `tcp`, `udp`, `ingress`, `default-deny`"),
        "{md}"
    );
}

#[test]
fn long_tables_and_many_steps_are_capped_with_a_count() {
    let mut r = all_outcomes();
    let extra_rows = 3;
    let extra_steps = 2;
    let make_step = |i: usize| {
        let cells = (0..MAX_ROWS_PER_STEP + extra_rows)
            .map(|p| {
                cell(
                    "x/a",
                    &format!("x/b{p:02}"),
                    80,
                    Protocol::Tcp,
                    true,
                    Some(false),
                    Outcome::Fail,
                    2,
                    Connectivity::Timeout,
                )
            })
            .collect();
        step(&format!("step-{i:02}"), None, 10, 1, cells)
    };
    r.scenarios[0].steps = (0..MAX_STEPS + extra_steps).map(make_step).collect();
    r.summary = summarize(&r.scenarios);
    let md = render_markdown(&r);
    assert_eq!(
        md.matches(&format!(
            "_… and {extra_rows} more failing cells in this step"
        ))
        .count(),
        MAX_STEPS
    );
    assert!(md.contains(&format!(
        "_… and {extra_steps} more steps with failing cells"
    )));
    assert_eq!(
        md.matches("| `x/a` |").count(),
        MAX_STEPS * MAX_ROWS_PER_STEP
    );
    assert!(
        !md.contains(&format!("step-{:02}", MAX_STEPS)),
        "the 21st step is left out"
    );
}
