//! Opens a rendered HTML report in headless Chromium (via playwright-core) and checks it like a
//! reader would: no console errors, no network request, mismatches highlighted and explained, a
//! large matrix drawn on demand with every cell and the same side panel.
//!
//! Needs node (>= 18), Debian's chromium and `npm ci` in harness/tests/browser — `ci/setup.sh test`
//! installs them; without them the test fails saying what to install — it never passes without
//! having looked at the page.

mod report_html_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use netpol_conformance::report::html;
use report_html_common::{BIG_PODS, FAIL_EXPLANATION_MARK, all_outcomes_and_a_big_matrix};

const INSTALL: &str = "ci/setup.sh test (as root: installs chromium, chromium-driver, nodejs and \
                       npm with apt where missing, and runs npm ci in harness/tests/browser)";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => missing.push("node (nodejs >= 18)".to_string()),
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
    if !Path::new(&chromium).exists() {
        missing.push(format!("{chromium} (chromium)"));
    }
    if !browser_dir()
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("playwright-core in harness/tests/browser/node_modules".to_string());
    }
    missing
}

#[test]
fn report_loads_offline_and_explains_mismatches_in_a_real_browser() {
    let missing = missing_prerequisites();
    assert!(
        missing.is_empty(),
        "cannot run the browser check; missing: {}.\ninstall with: {INSTALL}",
        missing.join(", ")
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("report.html");
    let html = html::render(&all_outcomes_and_a_big_matrix());
    const { assert!(BIG_PODS * BIG_PODS > html::LAZY_MATRIX_CELLS) };
    assert_eq!(html.matches("class=\"probe-matrix lazy\"").count(), 1);
    std::fs::write(&file, html).expect("write report.html");

    let out = Command::new("node")
        .arg(browser_dir().join("check_report.mjs"))
        .arg(&file)
        .arg(FAIL_EXPLANATION_MARK)
        .current_dir(browser_dir())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("check_report: ok"), "{stdout}");
    assert!(
        stdout.contains("1 lazy matrices drawn and checked"),
        "the lazily drawn matrix was not checked: {stdout}"
    );
}
