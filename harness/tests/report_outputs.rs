//! Every output format of one scripted run, snapshotted (insta), plus structural checks of the
//! JUnit XML read back with quick-junit. The run uses the fake provider in paused time with an
//! injected run id and start time, so every byte is stable.

mod engine_support;
mod report_html_common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine_support::{FakePlatform, Script, key, two_ns, with_sctp};
use netpol_conformance::model::Protocol;
use netpol_conformance::report::model::{RunReport, Verdict};
use netpol_conformance::report::terminal::{
    TerminalOptions, TerminalReporter, Verbosity, render_summary,
};
use netpol_conformance::report::{json, junit, write_dir};
use netpol_conformance::run::{Cancel, Fanout, Recorder, Reporter, RunOptions, execute};
use quick_junit::{NonSuccessKind, TestCaseStatus};

/// A `Write` whose bytes a test can read afterwards.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("capture").clone()).expect("utf-8")
    }
}

/// Two scenarios: `two-ns` with one cell always wrong; `with-sctp` where SCTP is unsupported;
/// in both, one cell wrong on its first probe of each step (flaky, as the step timeout is zero).
fn mixed_script() -> Script {
    let mut s = Script {
        probe_cost: Duration::from_millis(50),
        max_parallel: 1,
        unsupported: vec![Protocol::Sctp],
        always_wrong_in: Some(0),
        ..Script::default()
    };
    s.always_wrong.insert(key("x/b", "y/a", "80/TCP"));
    s.wrong_times.insert(key("x/a", "y/b", "80/TCP"), 1);
    s
}

struct Outputs {
    report: RunReport,
    stdout: String,
    stderr: String,
}

async fn run(script: Script, verbosity: Verbosity, color: bool) -> Outputs {
    let platform = FakePlatform::new(script);
    let opts = RunOptions {
        step_timeout: Duration::ZERO,
        ..RunOptions::new("20260102-030405-abcd", "2026-01-02T03:04:05Z")
    };
    let (out, err) = (Capture::default(), Capture::default());
    let mut term = TerminalReporter::new(
        Box::new(out.clone()),
        Box::new(err.clone()),
        TerminalOptions {
            verbosity,
            color,
            progress: false,
        },
    );
    let mut rec = Recorder::default();
    let mut fan = Fanout {
        reporters: vec![&mut term, &mut rec],
    };
    let mut report = execute(
        &platform,
        &[two_ns(), with_sctp()],
        &opts,
        &mut fan,
        &Cancel::never(),
    )
    .await
    .expect("run");
    // The crate version moves; the snapshots should not.
    report.harness_version = "0.0.0-test".into();
    Outputs {
        report,
        stdout: out.text(),
        stderr: err.text(),
    }
}

#[tokio::test(start_paused = true)]
async fn report_json_snapshot() {
    let o = run(mixed_script(), Verbosity::Normal, false).await;
    assert_eq!(o.report.verdict, Verdict::NonConformant);
    let text = json::render(&o.report).expect("json");
    // The contract's fields come first, in its order.
    let order = [
        "\"verdict\"",
        "\"provider\"",
        "\"cni\"",
        "\"probe_timeout_ms\"",
        "\"summary\"",
        "\"scenarios\"",
    ];
    let pos: Vec<usize> = order
        .iter()
        .map(|k| text.find(k).expect("contract field present"))
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "contract order: {pos:?}"
    );
    assert_eq!(json::parse(&text).expect("round trip"), o.report);
    insta::assert_snapshot!("report_json", text);
}

/// Checks junit.xml with a strict XML 1.0 parser (well-formed, one root) and returns the names of
/// its suites in order.
fn well_formed_suites(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("junit.xml: {e}\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert!(
        root.attribute("skipped").is_none(),
        "strict JUnit schemas reject `skipped` on <testsuites>"
    );
    root.children()
        .filter(|n| n.has_tag_name("testsuite"))
        .map(|n| n.attribute("name").unwrap_or_default().to_string())
        .collect()
}

fn case_names(parsed: &quick_junit::Report) -> Vec<(String, String)> {
    parsed
        .test_suites
        .iter()
        .flat_map(|s| {
            s.test_cases.iter().map(|c| {
                (
                    c.classname
                        .as_ref()
                        .map(|n| n.as_str().to_string())
                        .unwrap_or_default(),
                    c.name.as_str().to_string(),
                )
            })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn junit_snapshot_and_structure() {
    let o = run(mixed_script(), Verbosity::Normal, false).await;
    let xml = junit::render(&o.report);
    insta::assert_snapshot!("junit_xml", xml);
    assert_eq!(well_formed_suites(&xml), ["netpolc", "two-ns", "with-sctp"]);

    let parsed = quick_junit::Report::deserialize_from_str(&xml).expect("valid JUnit XML");
    assert_eq!(
        parsed.test_suites.len(),
        3,
        "the run's suite, then one per scenario"
    );
    let total: usize = parsed.test_suites.iter().map(|s| s.test_cases.len()).sum();
    assert_eq!(parsed.tests, total);
    assert_eq!(parsed.failures, 3, "the verdict and the two-ns cases");
    // two-ns: 2 steps × 80/TCP; with-sctp: 1 step × (80/TCP, 80/SCTP).
    assert_eq!(
        case_names(&parsed),
        [
            ("netpolc".to_string(), "verdict".to_string()),
            ("two-ns".to_string(), "initial 80/TCP".to_string()),
            ("two-ns".to_string(), "open-y 80/TCP".to_string()),
            ("with-sctp".to_string(), "initial 80/TCP".to_string()),
            ("with-sctp".to_string(), "initial 80/SCTP".to_string()),
        ]
    );
    // No --expect-verdict recorded: judged against the CLI's default, conformant.
    match &parsed.test_suites[0].test_cases[0].status {
        TestCaseStatus::NonSuccess {
            kind: NonSuccessKind::Failure,
            message,
            ..
        } => assert_eq!(
            message.as_ref().map(|m| m.as_str()),
            Some("verdict non-conformant differs from the expected conformant")
        ),
        other => panic!("the verdict case must fail: {other:?}"),
    }
    let suite = &parsed.test_suites[1];
    assert_eq!(suite.failures, 2, "the always-wrong cell fails both steps");
    for case in &suite.test_cases {
        match &case.status {
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Failure,
                message,
                description,
                ..
            } => {
                let m = message.as_ref().expect("failure message").as_str();
                assert!(m.starts_with("1 of 16 cells differ"), "{m}");
                let body = description.as_ref().expect("failure body").as_str();
                for part in [
                    "expected (",
                    "observed:",
                    "comparison (",
                    "x/b -> y/a 80/TCP",
                ] {
                    assert!(body.contains(part), "{part} missing from {body}");
                }
            }
            other => panic!("two-ns cases must fail: {other:?}"),
        }
    }
    let sctp = &parsed.test_suites[2].test_cases[1];
    assert!(matches!(sctp.status, TestCaseStatus::Skipped { .. }));
    assert_eq!(parsed.test_suites[2].skipped, 1);
    // with-sctp has no failing cell, only the flaky one: a pass with its failed attempt recorded.
    match &parsed.test_suites[2].test_cases[0].status {
        TestCaseStatus::Success { flaky_runs } => {
            assert_eq!(flaky_runs.len(), 1);
            let m = flaky_runs[0].message.as_ref().expect("rerun message");
            assert!(
                m.as_str().starts_with("x/a -> y/b 80/TCP: flaky"),
                "{}",
                m.as_str()
            );
        }
        other => panic!("expected a pass with a flaky rerun: {other:?}"),
    }
    let props: Vec<&str> = suite.properties.iter().map(|p| p.name.as_str()).collect();
    for p in [
        "provider",
        "cni",
        "harness-version",
        "run-id",
        "expected-verdict",
        "fake-version",
    ] {
        assert!(props.contains(&p), "property {p} missing: {props:?}");
    }
}

/// A CNI that ignores policies, run as `--expect-verdict policies-ignored` declares (the flannel
/// job): the cells allowed although denied are the declared behaviour, so the JUnit a CI check
/// publishes has no failure; the same run judged against `conformant`, or a run that does not
/// reach the declared verdict, still fails.
#[tokio::test(start_paused = true)]
async fn junit_follows_the_expected_verdict_of_a_non_enforcing_cni() {
    let ignoring = Script {
        ignore_policies: true,
        ..Script::default()
    };
    let mut o = run(ignoring, Verbosity::Quiet, false).await;
    assert_eq!(o.report.verdict, Verdict::PoliciesIgnored);
    assert!(o.report.summary.failed > 0, "the oracle denies some cells");

    o.report.expected_verdict = Some(Verdict::PoliciesIgnored);
    let xml = junit::render(&o.report);
    well_formed_suites(&xml);
    let parsed = quick_junit::Report::deserialize_from_str(&xml).expect("valid JUnit XML");
    assert_eq!(
        parsed.failures, 0,
        "declared non-enforcement is no failure:\n{xml}"
    );
    assert_eq!(parsed.errors, 0);
    let declared: Vec<&str> = parsed
        .test_suites
        .iter()
        .flat_map(|s| &s.test_cases)
        .filter_map(|c| c.system_out.as_ref().map(|t| t.as_str()))
        .filter(|t| t.starts_with("declared non-enforcement: "))
        .collect();
    assert!(!declared.is_empty(), "cases say why they pass:\n{xml}");
    assert!(
        declared
            .iter()
            .all(|t| t.contains("as --expect-verdict policies-ignored declares")),
        "{declared:?}"
    );

    // Judged against conformant (a CNI that should enforce): every such case fails.
    o.report.expected_verdict = Some(Verdict::Conformant);
    let parsed = quick_junit::Report::deserialize_from_str(&junit::render(&o.report))
        .expect("valid JUnit XML");
    assert_eq!(
        parsed.failures,
        1 + declared.len(),
        "verdict + every such case"
    );

    // Declared ignoring, but the dataplane enforced after all: the verdict case fails.
    let mut enforcing = run(Script::default(), Verbosity::Quiet, false).await;
    assert_eq!(enforcing.report.verdict, Verdict::Conformant);
    enforcing.report.expected_verdict = Some(Verdict::PoliciesIgnored);
    let parsed = quick_junit::Report::deserialize_from_str(&junit::render(&enforcing.report))
        .expect("valid JUnit XML");
    let verdict = &parsed.test_suites[0].test_cases[0];
    assert!(
        matches!(
            verdict.status,
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Failure,
                ..
            }
        ),
        "{:?}",
        verdict.status
    );
}

#[tokio::test(start_paused = true)]
async fn terminal_snapshots() {
    let normal = run(mixed_script(), Verbosity::Normal, false).await;
    assert!(!normal.stdout.contains('\x1b'), "no colour when disabled");
    assert_eq!(normal.stderr, "", "no progress line off a TTY");
    insta::assert_snapshot!("terminal_normal", normal.stdout);

    let verbose = run(mixed_script(), Verbosity::Verbose, false).await;
    // Every step here has a wrong cell, so both print its tables; -v adds what the other probes
    // showed (here: why SCTP is unsupported).
    assert!(
        verbose
            .stdout
            .starts_with(normal.stdout.lines().next().unwrap_or("?"))
    );
    assert!(
        verbose
            .stdout
            .contains("    protocol not supported by the fake kernel\n")
    );
    assert!(
        !normal
            .stdout
            .contains("    protocol not supported by the fake kernel\n")
    );
    insta::assert_snapshot!("terminal_verbose", verbose.stdout);

    let quiet = run(mixed_script(), Verbosity::Quiet, false).await;
    assert_eq!(
        quiet.stdout, "verdict: non-conformant (fake/scripted)\n",
        "quiet prints only the verdict line"
    );

    let colored = run(mixed_script(), Verbosity::Quiet, true).await;
    assert_eq!(
        colored.stdout,
        "verdict: \x1b[1;31mnon-conformant\x1b[0m (fake/scripted)\n"
    );
}

/// A passing run is summarised: one line per step, no table; `-v` prints every table.
#[tokio::test(start_paused = true)]
async fn passing_steps_are_one_line_each_unless_verbose() {
    let normal = run(Script::default(), Verbosity::Normal, false).await;
    assert_eq!(normal.report.verdict, Verdict::Conformant);
    let steps: usize = normal.report.scenarios.iter().map(|s| s.steps.len()).sum();
    let step_lines: Vec<&str> = normal
        .stdout
        .lines()
        .filter(|l| l.contains(" › "))
        .collect();
    assert_eq!(step_lines.len(), steps, "{}", normal.stdout);
    assert!(
        step_lines.iter().all(|l| l.contains(" pass")),
        "{}",
        normal.stdout
    );
    for table_mark in ["  80/TCP (", "x/a .", "expected:"] {
        assert!(
            !normal.stdout.contains(table_mark),
            "no table for passing steps: {}",
            normal.stdout
        );
    }
    // Step lines, then the summary (counts, unsupported, verdict): nothing else.
    assert_eq!(
        normal.stdout.lines().count(),
        steps
            + render_summary(&normal.report, TerminalOptions::default())
                .lines()
                .count()
    );

    let verbose = run(Script::default(), Verbosity::Verbose, false).await;
    assert!(
        verbose
            .stdout
            .contains("  80/TCP (16 cells): as expected\n")
    );
    assert!(
        verbose.stdout.contains("    x/a .   .   .   .\n"),
        "{}",
        verbose.stdout
    );
}

#[tokio::test(start_paused = true)]
async fn progress_line_only_when_asked() {
    let platform = FakePlatform::new(mixed_script());
    let err = Capture::default();
    let mut term = TerminalReporter::new(
        Box::new(Capture::default()),
        Box::new(err.clone()),
        TerminalOptions {
            verbosity: Verbosity::Normal,
            color: false,
            progress: true,
        },
    );
    let opts = RunOptions::new("r", "2026-01-02T03:04:05Z");
    execute(&platform, &[two_ns()], &opts, &mut term, &Cancel::never())
        .await
        .expect("run");
    let e = err.text();
    assert!(
        e.contains("\r\x1b[2Krunning two-ns › initial (16 cells)"),
        "{e:?}"
    );
    assert!(
        e.ends_with("\r\x1b[2K"),
        "progress cleared before the summary: {e:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn summary_lists_counts_features_and_unsupported() {
    let o = run(mixed_script(), Verbosity::Normal, false).await;
    let s = render_summary(&o.report, TerminalOptions::default());
    assert!(s.contains("cells: 64 — "), "{s}");
    assert!(s.contains("failing features: ingress, "), "{s}");
    assert!(
        s.contains("unsupported: 80/SCTP (16 cells): protocol not supported by the fake kernel")
    );
    assert!(s.ends_with("verdict: non-conformant (fake/scripted)\n"));
}

#[tokio::test(start_paused = true)]
async fn report_dir_gets_all_three_files() {
    let o = run(mixed_script(), Verbosity::Quiet, false).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("reports").join(&o.report.run_id);
    let written = write_dir(&o.report, &target).expect("written");
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["report.json", "junit.xml", "report.html"]);
    let back = std::fs::read_to_string(target.join("report.json")).expect("read");
    assert_eq!(json::parse(&back).expect("parse"), o.report);
    let html = std::fs::read_to_string(target.join("report.html")).expect("read");
    assert!(html.contains("non-conformant"));
}

/// Reporters see the same final report the run returns.
#[tokio::test(start_paused = true)]
async fn reporters_and_files_agree() {
    struct Last(Option<RunReport>);
    impl Reporter for Last {
        fn event(&mut self, e: &netpol_conformance::run::Event) {
            if let netpol_conformance::run::Event::RunFinished { report } = e {
                self.0 = Some((**report).clone());
            }
        }
    }
    let platform = FakePlatform::new(mixed_script());
    let mut last = Last(None);
    let r = execute(
        &platform,
        &[two_ns()],
        &RunOptions::new("r", "t"),
        &mut last,
        &Cancel::never(),
    )
    .await
    .expect("run");
    assert_eq!(last.0.as_ref(), Some(&r));
}

/// Names, commands and details carry markup, quotes and characters XML 1.0 cannot hold at all
/// (an ESC from a terminal colour, a NUL): junit.xml stays well-formed for a strict parser and
/// keeps the text readable.
#[test]
fn junit_is_well_formed_whatever_the_texts() {
    let mut r = report_html_common::all_outcomes();
    r.scenarios[0]
        .name
        .push_str(" \u{1b}[31mred\u{1b}[0m \u{0} ]]> 'q' \"dq\"");
    r.scenarios[0].steps[0].cells[5].detail = Some("bell\u{7} & <tag> \u{fffe}".into());
    r.environment
        .insert("odd\u{1}key".into(), "value\nwith\tbreaks".into());
    let xml = junit::render(&r);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite") && n.attribute("name") != Some("netpolc"))
        .expect("the scenario's suite");
    assert_eq!(
        suite.attribute("name"),
        Some(
            "seed-frontend-backend <script>alert(\"scenario\")</script> \\u{1b}[31mred\\u{1b}[0m \\u{0} ]]> 'q' \"dq\""
        )
    );
    let texts: String = doc
        .descendants()
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(texts.contains("bell\\u{7} & <tag> \\u{fffe}"), "{texts}");
    let prop = doc
        .descendants()
        .find(|n| n.attribute("name") == Some("odd\\u{1}key"))
        .expect("the property");
    assert_eq!(prop.attribute("value"), Some("value\nwith\tbreaks"));
    assert!(quick_junit::Report::deserialize_from_str(&xml).is_ok());
}
