//! JUnit XML: a `testsuite` per scenario, a `testcase` per step × probe, and a first suite
//! `netpolc` whose one `verdict` case holds the run's verdict against the expected one.
//!
//! Names are stable across runs so CI can track them: the suite is the scenario's name, the case's
//! classname is the scenario's name and its name `<step> <port>/<protocol>` (with ` via <mode>`
//! appended for cells probed through a Service, `--probe-mode`). A case fails when any
//! of its cells differs from the oracle (the body holds the expected, observed and comparison truth
//! tables and the differing cells), errors when a cell could not be probed, is skipped when every
//! cell is unsupported, and passes otherwise; flaky cells pass with their failed attempts recorded
//! as `flakyFailure` reruns.
//!
//! **Judged against the expected verdict.** A CI job for a CNI that is *declared* not to enforce
//! policies (`--expect-verdict policies-ignored`, e.g. flannel) succeeds when the run says so; its
//! JUnit must not be a wall of red either. When that verdict is both expected and reached, a cell
//! allowed although the oracle denies it is the declared behaviour, not a failure: its case passes
//! and its `system-out` says how many cells showed the declared non-enforcement. Any other
//! difference still fails, and the `verdict` case fails whenever the verdict is not the expected
//! one (a non-enforcing CNI that suddenly enforces, an enforcing one that stops).
//!
//! **Upstream mapping.** A suite of a shipped `scenarios/cluster-policies/` scenario carries the
//! property `upstream-conformance`: the ShortNames of the kubernetes-sigs/network-policy-api
//! conformance tests (`conformance/tests/`, v0.2.0 for ClusterNetworkPolicy, release-0.1 for the
//! v1alpha1 kinds) whose intent it covers, comma-separated, so a vendor can line netpolc's cases
//! up with the upstream report ([`UPSTREAM_CONFORMANCE`]; `none` where upstream has no such test).
//!
//! Written by hand and streamed, element by element, into the writer: quick-junit builds the
//! whole document in memory, which a 250,000-cell run cannot afford; and it always writes a
//! `skipped` attribute on `<testsuites>`, which strict Ant/Jenkins schemas reject. Text and
//! attributes are escaped here, including characters XML 1.0 cannot carry at all.

use std::io::{self, Write};

use crate::probe::Outcome;
use crate::report::model::{CellReport, RunReport, StepReport, Verdict};
use crate::report::terminal::{ProbeTable, describe_cell, probe_tables};

/// Largest axis (pods) whose truth tables a failing case's body carries; a 200-pod table is
/// 200 lines of 800 characters three times over — report.html shows those.
pub const MAX_TABLE_PODS: usize = 40;
/// Differing cells listed in one failing case before "… and N more".
pub const MAX_LISTED_CELLS: usize = 100;

/// Shipped cluster-policies scenario (file stem) → the upstream conformance tests it mirrors.
pub const UPSTREAM_CONFORMANCE: &[(&str, &str)] = &[
    (
        "admin-egress-actions",
        "CNPAdminTierEgressTCP,CNPAdminTierEgressUDP",
    ),
    (
        "admin-ingress-actions",
        "CNPAdminTierIngressTCP,CNPAdminTierGress",
    ),
    (
        "baseline-actions",
        "CNPBaselineTierIngressTCP,CNPBaselineTierEgressUDP,CNPBaselineTierGress",
    ),
    (
        "baseline-networks-and-named-ports",
        "CNPBaselineTierEgressNamedPort,CNPBaselineTierIngressNamedPort,CNPBaselineTierEgressInlineCIDRPeers",
    ),
    ("networks-over-pod-ips", "CNPAdminTierEgressInlineCIDRPeers"),
    ("pass-in-both-tiers", "CNPAdminTierIntegration"),
    (
        "ports-ranges-named",
        "CNPAdminTierIngressNamedPort,CNPAdminTierEgressNamedPort,CNPAdminTierIngressSCTP",
    ),
    ("priorities", "CNPAdminTierPriorityField"),
    ("same-priority-conflicts", "none"),
    ("subjects", "CNPAdminTierGress"),
    ("tier-interplay", "CNPAdminTierIntegration"),
    ("updates-across-tiers", "none"),
    (
        "v1alpha1-admin-and-baseline",
        "AdminNetworkPolicyIngressTCP,AdminNetworkPolicyEgressUDP,AdminNetworkPolicyIntegration,BaselineAdminNetworkPolicyIngressTCP",
    ),
];

/// The upstream tests a scenario file mirrors, when it is a shipped cluster-policies scenario.
pub fn upstream_conformance(source: &str) -> Option<&'static str> {
    let path = std::path::Path::new(source);
    let dir = path.parent()?.file_name()?.to_str()?;
    if dir != "cluster-policies" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    UPSTREAM_CONFORMANCE
        .iter()
        .find(|(s, _)| *s == stem)
        .map(|(_, t)| *t)
}

/// Escapes text content; characters XML 1.0 forbids are written as `\u{…}` so the text stays
/// readable and the document stays well-formed.
fn text(out: &mut dyn Write, s: &str) -> io::Result<()> {
    escape(out, s, false)
}

/// Escapes an attribute value (also quotes and the whitespace attribute normalisation would eat).
fn attr(out: &mut dyn Write, s: &str) -> io::Result<()> {
    escape(out, s, true)
}

fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}'
}

fn escape(out: &mut dyn Write, s: &str, in_attr: bool) -> io::Result<()> {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let rep: Option<String> = match c {
            '&' => Some("&amp;".into()),
            '<' => Some("&lt;".into()),
            '>' => Some("&gt;".into()),
            '"' if in_attr => Some("&quot;".into()),
            '\'' if in_attr => Some("&apos;".into()),
            '\n' if in_attr => Some("&#10;".into()),
            '\r' => Some("&#13;".into()),
            '\t' if in_attr => Some("&#9;".into()),
            c if !xml_char(c) => Some(format!("\\u{{{:x}}}", u32::from(c))),
            _ => None,
        };
        if let Some(r) = rep {
            out.write_all(&s.as_bytes()[start..i])?;
            out.write_all(r.as_bytes())?;
            start = i + c.len_utf8();
        }
    }
    out.write_all(&s.as_bytes()[start..])
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// `<name k="v" …` (without the closing `>`).
fn open(out: &mut dyn Write, indent: &str, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
    write!(out, "{indent}<{name}")?;
    for (k, v) in attrs {
        write!(out, " {k}=\"")?;
        attr(out, v)?;
        out.write_all(b"\"")?;
    }
    Ok(())
}

/// `<name attrs>text</name>` on one line group (text may span lines).
fn element(
    out: &mut dyn Write,
    indent: &str,
    name: &str,
    attrs: &[(&str, &str)],
    body: &str,
) -> io::Result<()> {
    open(out, indent, name, attrs)?;
    if body.is_empty() {
        return out.write_all(b"/>\n");
    }
    out.write_all(b">")?;
    text(out, body)?;
    writeln!(out, "</{name}>")
}

fn properties(report: &RunReport, expected: Verdict) -> Vec<(String, String)> {
    let mut p = vec![
        ("provider".to_string(), report.provider.clone()),
        ("cni".to_string(), report.cni.clone()),
        (
            "harness-version".to_string(),
            report.harness_version.clone(),
        ),
        ("run-id".to_string(), report.run_id.clone()),
        ("verdict".to_string(), report.verdict.as_str().to_string()),
        (
            "expected-verdict".to_string(),
            expected.as_str().to_string(),
        ),
        (
            "probe-timeout-ms".to_string(),
            report.probe_timeout_ms.to_string(),
        ),
    ];
    if !report.faults.is_empty() {
        p.push(("faults".to_string(), report.faults.join(",")));
    }
    for (k, v) in &report.environment {
        p.push((k.clone(), v.clone()));
    }
    p
}

fn write_properties(out: &mut dyn Write, props: &[(String, String)]) -> io::Result<()> {
    writeln!(out, "        <properties>")?;
    for (k, v) in props {
        open(
            out,
            "            ",
            "property",
            &[("name", k), ("value", v)],
        )?;
        out.write_all(b"/>\n")?;
    }
    writeln!(out, "        </properties>")
}

/// What a case comes to, computed before anything is written so suite counts come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pass,
    Failure,
    Error,
    Skipped,
}

/// Whether a failing cell is exactly what a declared non-enforcing dataplane does: allowed
/// although the oracle denies it.
fn shows_non_enforcement(c: &CellReport) -> bool {
    c.outcome == Outcome::Fail && c.expected == Some(false) && c.observed == Some(true)
}

/// The cells of one case by outcome, and its status.
struct Case<'a> {
    cells: Vec<&'a CellReport>,
    status: Status,
    /// Failing cells that count as failures (all of them unless non-enforcement is declared).
    failing: Vec<&'a CellReport>,
    /// Failing cells that showed the declared non-enforcement (passing).
    declared: usize,
}

fn case<'a>(t: &ProbeTable<'a>, declared_ignoring: bool) -> Case<'a> {
    let cells: Vec<&'a CellReport> = t.table.iter().filter_map(|(_, _, c)| *c).collect();
    let mut failing = Vec::new();
    let mut declared = 0;
    let (mut err, mut unsup) = (0, 0);
    for c in &cells {
        match c.outcome {
            Outcome::Fail if declared_ignoring && shows_non_enforcement(c) => declared += 1,
            Outcome::Fail => failing.push(*c),
            Outcome::Error => err += 1,
            Outcome::Unsupported => unsup += 1,
            Outcome::Pass | Outcome::Flaky => {}
        }
    }
    let status = if !failing.is_empty() {
        Status::Failure
    } else if err > 0 {
        Status::Error
    } else if !cells.is_empty() && unsup == cells.len() {
        Status::Skipped
    } else {
        Status::Pass
    };
    Case {
        cells,
        status,
        failing,
        declared,
    }
}

fn tables_text(t: &ProbeTable<'_>) -> String {
    let pods = t.table.pods().len();
    if pods > MAX_TABLE_PODS {
        return format!(
            "truth tables omitted: {pods} pods per axis (more than {MAX_TABLE_PODS}); \
             report.html draws them and report.json lists every cell\n"
        );
    }
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
    for c in cells.iter().take(MAX_LISTED_CELLS) {
        s.push_str(&describe_cell(c));
        s.push('\n');
        if !c.command.is_empty() {
            s.push_str("  reproduce: ");
            s.push_str(&c.command);
            s.push('\n');
        }
    }
    if cells.len() > MAX_LISTED_CELLS {
        s.push_str(&format!(
            "… and {} more (report.json lists every cell)\n",
            cells.len() - MAX_LISTED_CELLS
        ));
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

fn write_case(
    out: &mut dyn Write,
    scenario: &str,
    step: &StepReport,
    t: &ProbeTable<'_>,
    c: &Case<'_>,
    expected: Verdict,
) -> io::Result<()> {
    let name = format!("{} {}", step.name, t.label());
    open(
        out,
        "        ",
        "testcase",
        &[("name", &name), ("classname", scenario)],
    )?;
    out.write_all(b">\n")?;
    let of = |o: Outcome| -> Vec<&CellReport> {
        c.cells.iter().copied().filter(|x| x.outcome == o).collect()
    };
    let unsup = of(Outcome::Unsupported);
    match c.status {
        Status::Failure => {
            let mut features: Vec<&str> = c
                .failing
                .iter()
                .flat_map(|x| x.features.iter().map(String::as_str))
                .collect();
            features.sort_unstable();
            features.dedup();
            let mut msg = format!(
                "{} of {} cells differ from NetworkPolicy semantics",
                c.failing.len(),
                c.cells.len()
            );
            if !features.is_empty() {
                msg.push_str(&format!(" (features: {})", features.join(", ")));
            }
            let body = format!("{}\n{}", tables_text(t), cell_lines(&c.failing));
            element(
                out,
                "            ",
                "failure",
                &[("message", &msg), ("type", "non-conformant")],
                &body,
            )?;
        }
        Status::Error => {
            let err = of(Outcome::Error);
            let msg = format!(
                "{} of {} cells could not be probed",
                err.len(),
                c.cells.len()
            );
            let body = format!("{}\n{}", tables_text(t), cell_lines(&err));
            element(
                out,
                "            ",
                "error",
                &[("message", &msg), ("type", "probe-error")],
                &body,
            )?;
        }
        Status::Skipped => {
            let why = unsup
                .iter()
                .find_map(|x| x.detail.as_deref())
                .unwrap_or("the provider cannot probe this protocol");
            let msg = format!("unsupported: {why}");
            element(
                out,
                "            ",
                "skipped",
                &[("message", &msg), ("type", "unsupported")],
                "",
            )?;
        }
        Status::Pass => {
            for f in of(Outcome::Flaky) {
                let time = f.history.first().map(|a| seconds(a.elapsed_ms));
                let msg = describe_cell(f);
                let mut attrs: Vec<(&str, &str)> = Vec::new();
                if let Some(t) = &time {
                    attrs.push(("time", t));
                }
                attrs.push(("message", &msg));
                attrs.push(("type", "flaky"));
                let body = if f.command.is_empty() {
                    String::new()
                } else {
                    format!("reproduce: {}\n", f.command)
                };
                element(out, "            ", "flakyFailure", &attrs, &body)?;
            }
        }
    }
    let mut sys = String::new();
    if c.declared > 0 {
        sys.push_str(&format!(
            "declared non-enforcement: {} of {} cells allowed although NetworkPolicy denies them, \
             as --expect-verdict {expected} declares (not counted as failures)\n",
            c.declared,
            c.cells.len()
        ));
    }
    sys.push_str(&step_out(step));
    if !unsup.is_empty() && unsup.len() < c.cells.len() {
        sys.push_str(&format!("{} cells unsupported\n", unsup.len()));
    }
    element(out, "            ", "system-out", &[], &sys)?;
    writeln!(out, "        </testcase>")
}

/// The run-level case: the verdict against the expected one.
fn write_verdict_case(
    out: &mut dyn Write,
    report: &RunReport,
    expected: Verdict,
) -> io::Result<()> {
    open(
        out,
        "        ",
        "testcase",
        &[("name", "verdict"), ("classname", "netpolc")],
    )?;
    out.write_all(b">\n")?;
    let s = &report.summary;
    let counts = format!(
        "cells: {} — {} passed, {} failed, {} flaky, {} unsupported, {} errors\n",
        s.cells, s.passed, s.failed, s.flaky, s.unsupported, s.errors
    );
    let features = if report.failing_features.is_empty() {
        String::new()
    } else {
        format!("failing features: {}\n", report.failing_features.join(", "))
    };
    if report.verdict != expected {
        let msg = format!(
            "verdict {} differs from the expected {expected}",
            report.verdict
        );
        element(
            out,
            "            ",
            "failure",
            &[("message", &msg), ("type", "unexpected-verdict")],
            &format!("{counts}{features}"),
        )?;
    }
    element(
        out,
        "            ",
        "system-out",
        &[],
        &format!(
            "verdict {} (expected {expected}) on {}/{}\n{counts}{features}",
            report.verdict, report.provider, report.cni
        ),
    )?;
    writeln!(out, "        </testcase>")
}

/// The verdict JUnit judges against: the expected one the CLI recorded, else the CLI's default.
pub fn expected_verdict(report: &RunReport) -> Verdict {
    report.expected_verdict.unwrap_or(Verdict::Conformant)
}

/// Streams the run as JUnit XML into `w`.
pub fn write(report: &RunReport, w: &mut dyn Write) -> io::Result<()> {
    let expected = expected_verdict(report);
    let declared_ignoring =
        expected == Verdict::PoliciesIgnored && report.verdict == Verdict::PoliciesIgnored;
    // First pass: statuses only, for the counts every suite element opens with.
    let mut counts = Vec::with_capacity(report.scenarios.len());
    let verdict_failed = usize::from(report.verdict != expected);
    let (mut tests, mut failures, mut errors) = (1usize, verdict_failed, 0usize);
    for s in &report.scenarios {
        let (mut n, mut f, mut e, mut sk) = (0usize, 0usize, 0usize, 0usize);
        for step in &s.steps {
            for t in probe_tables(step) {
                n += 1;
                match case(&t, declared_ignoring).status {
                    Status::Failure => f += 1,
                    Status::Error => e += 1,
                    Status::Skipped => sk += 1,
                    Status::Pass => {}
                }
            }
        }
        tests += n;
        failures += f;
        errors += e;
        counts.push((n, f, e, sk));
    }

    writeln!(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    let (tests_s, failures_s, errors_s) =
        (tests.to_string(), failures.to_string(), errors.to_string());
    let time = seconds(report.duration_ms);
    let mut top: Vec<(&str, &str)> = vec![
        ("name", "netpolc"),
        ("tests", &tests_s),
        ("failures", &failures_s),
        ("errors", &errors_s),
    ];
    let stamp = chrono::DateTime::parse_from_rfc3339(&report.started_at)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string())
        .ok();
    if let Some(ts) = &stamp {
        top.push(("timestamp", ts));
    }
    top.push(("time", &time));
    open(w, "", "testsuites", &top)?;
    w.write_all(b">\n")?;

    let props = properties(report, expected);
    let verdict_failures = verdict_failed.to_string();
    open(
        w,
        "    ",
        "testsuite",
        &[
            ("name", "netpolc"),
            ("tests", "1"),
            ("failures", &verdict_failures),
            ("errors", "0"),
            ("skipped", "0"),
        ],
    )?;
    w.write_all(b">\n")?;
    write_properties(w, &props)?;
    write_verdict_case(w, report, expected)?;
    writeln!(w, "    </testsuite>")?;

    for (s, (n, f, e, sk)) in report.scenarios.iter().zip(counts) {
        let (n, f, e, sk) = (n.to_string(), f.to_string(), e.to_string(), sk.to_string());
        open(
            w,
            "    ",
            "testsuite",
            &[
                ("name", &s.name),
                ("tests", &n),
                ("failures", &f),
                ("errors", &e),
                ("skipped", &sk),
            ],
        )?;
        w.write_all(b">\n")?;
        let mut suite_props = vec![("source".to_string(), s.source.clone())];
        if let Some(tests) = upstream_conformance(&s.source) {
            suite_props.push(("upstream-conformance".to_string(), tests.to_string()));
        }
        suite_props.extend(props.iter().cloned());
        write_properties(w, &suite_props)?;
        for step in &s.steps {
            for t in probe_tables(step) {
                let c = case(&t, declared_ignoring);
                write_case(w, &s.name, step, &t, &c, expected)?;
            }
        }
        writeln!(w, "    </testsuite>")?;
    }
    writeln!(w, "</testsuites>")
}

/// The same document as a string (tests, small reports).
pub fn render(report: &RunReport) -> String {
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail, and the writer emits UTF-8 only.
    let _ = write(report, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str, in_attr: bool) -> String {
        let mut v = Vec::new();
        escape(&mut v, s, in_attr).expect("vec");
        String::from_utf8(v).expect("utf-8")
    }

    #[test]
    fn markup_quotes_and_forbidden_characters_are_escaped() {
        assert_eq!(esc("a<b>&c", false), "a&lt;b&gt;&amp;c");
        assert_eq!(esc("\"q\" 'a'", true), "&quot;q&quot; &apos;a&apos;");
        assert_eq!(esc("\"q\"", false), "\"q\"");
        assert_eq!(esc("line\nnext\ttab", true), "line&#10;next&#9;tab");
        assert_eq!(esc("line\nnext", false), "line\nnext");
        assert_eq!(esc("bell\u{7}esc\u{1b}", false), "bell\\u{7}esc\\u{1b}");
        assert_eq!(esc("\u{fffe}ok é ☃", false), "\\u{fffe}ok é ☃");
    }

    /// Every shipped cluster-policies scenario is mapped (a new one must say what it mirrors),
    /// and the mapping is found from the source path the reports carry.
    #[test]
    fn every_cluster_policies_scenario_names_its_upstream_tests() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/cluster-policies");
        let mut n = 0;
        for e in std::fs::read_dir(dir).expect("scenarios/cluster-policies") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "yaml") {
                n += 1;
                let src = format!(
                    "scenarios/cluster-policies/{}",
                    p.file_name().and_then(|f| f.to_str()).unwrap_or_default()
                );
                let tests =
                    upstream_conformance(&src).unwrap_or_else(|| panic!("{src} is not mapped"));
                assert!(
                    tests == "none"
                        || tests
                            .split(',')
                            .all(|t| t.starts_with("CNP") || t.contains("AdminNetworkPolicy")),
                    "{tests}"
                );
            }
        }
        assert_eq!(n, UPSTREAM_CONFORMANCE.len());
        assert_eq!(
            upstream_conformance("scenarios/cluster-policies/priorities.yaml"),
            Some("CNPAdminTierPriorityField")
        );
        assert_eq!(
            upstream_conformance("scenarios/upstream/priorities.yaml"),
            None
        );
    }

    #[test]
    fn seconds_have_three_decimals() {
        assert_eq!(seconds(617), "0.617");
        assert_eq!(seconds(12_345), "12.345");
        assert_eq!(seconds(5), "0.005");
    }
}
