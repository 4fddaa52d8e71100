//! Reports that scale: at 40,000 cells (200 pods × one port) report.html stays within 10 MB,
//! passing or failing, and all three files are complete and well-formed. Sizes are printed
//! (`cargo test --test report_scale -- --nocapture`); `cargo bench --bench report_size` prints
//! them for 250,000 cells too, with write times.

mod report_scale_common;

use netpol_conformance::report::RunReport;
use netpol_conformance::report::{json, write_dir};
use report_scale_common::{Shape, many_steps, report};

const MB: u64 = 1_000_000;

/// Writes the three files and returns their sizes in bytes (json, junit, html), printed.
fn sizes(label: &str, r: &RunReport, dir: &std::path::Path) -> (u64, u64, u64) {
    let written = write_dir(r, dir).expect("reports written");
    assert_eq!(written.len(), 3);
    let size = |name: &str| std::fs::metadata(dir.join(name)).expect("written").len();
    let s = (size("report.json"), size("junit.xml"), size("report.html"));
    println!(
        "{label}: report.json {:.1} MB, junit.xml {:.1} kB, report.html {:.1} kB",
        s.0 as f64 / MB as f64,
        s.1 as f64 / 1000.0,
        s.2 as f64 / 1000.0
    );
    s
}

#[test]
fn forty_thousand_cells_fit_a_browser() {
    for shape in [Shape::Conformant, Shape::Ignoring] {
        let r = report(200, shape);
        assert_eq!(r.summary.cells, 40_000);
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, _, html_b) = sizes(
            &format!("{shape:?}, 200 pods, 40,000 cells"),
            &r,
            dir.path(),
        );
        assert!(
            html_b <= 10 * MB,
            "{shape:?}: report.html is {html_b} bytes at 40,000 cells"
        );

        // Complete and well-formed, whatever their size.
        let back = std::fs::read_to_string(dir.path().join("report.json")).expect("read");
        assert_eq!(json::parse(&back).expect("report.json parses"), r);
        let xml = std::fs::read_to_string(dir.path().join("junit.xml")).expect("read");
        let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed");
        let cases = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .count();
        assert_eq!(cases, 2, "the verdict case and the step's one probe");
        let html = std::fs::read_to_string(dir.path().join("report.html")).expect("read");
        assert!(html.ends_with("</html>\n"));
        // The whole matrix travels as one character per cell, drawn on demand.
        assert_eq!(html.matches("class=\"probe-matrix lazy\"").count(), 1);
        let codes_start = html.find("data-codes=\"").expect("matrix data") + 12;
        let codes_len = html[codes_start..].find('"').expect("closing quote");
        assert_eq!(codes_len, 40_000);
        if shape == Shape::Ignoring {
            // 20,000 cells failed: the first are detailed, more are listed, the rest counted.
            assert!(html.contains("Cells that need attention (20000)"));
            assert!(html.contains("more cells that need attention: report.json lists every cell"));
        }
    }
}

/// The page's other extreme: 40,000 cells as 494 upstream-sized steps (9 pods, 81 cells), every
/// one wrong in the denied half and judged against `conformant`: each small matrix is drawn up
/// front until the budget is spent, every failing cell is detailed or listed until theirs are.
#[test]
fn forty_thousand_cells_in_small_failing_steps_fit_a_browser_too() {
    let mut r = many_steps(494, 9, Shape::Ignoring);
    r.expected_verdict = None;
    assert!(r.summary.cells >= 40_000, "{}", r.summary.cells);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, _, html_b) = sizes(
        "494 steps × 81 cells, all denied cells wrong",
        &r,
        dir.path(),
    );
    assert!(html_b <= 10 * MB, "report.html is {html_b} bytes");
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("read");
    let drawn = html.matches("<table class=\"matrix\"").count();
    let lazy = html.matches("class=\"probe-matrix lazy\"").count();
    assert_eq!(drawn + lazy, 494);
    assert!(drawn > 0 && lazy > 0, "drawn {drawn}, lazy {lazy}");
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).expect("read");
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed");
    let failures = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .count();
    assert_eq!(failures, 495, "each step's case and the verdict");
}
