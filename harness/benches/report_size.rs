//! Figures for the report writers at scale (not a timed test: it prints).
//!
//! `cargo bench --bench report_size` builds synthetic run reports of 200 pods (40,000 cells) and
//! 500 pods (250,000 cells) on one port — every cell as required (conformant), and every cell
//! allowed (policies-ignored: the denied half fails, each with its explanation) — writes
//! report.json, junit.xml and report.html for each (streamed, atomically, as `netpolc run`
//! does), and prints the file sizes, the time the writing took and the process's peak RSS.
//! The 10 MB bound of report.html at 40,000 cells is asserted by tests/report_scale.rs.

#[path = "../tests/report_scale_common/mod.rs"]
mod report_scale_common;

use std::time::Instant;

use netpol_conformance::report::write_dir;
use report_scale_common::{Shape, report};

fn peak_rss_mb() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|u| u.max_rss() as f64 / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>10} {:>12}",
        "report", "report.json", "junit.xml", "report.html", "write", "peak RSS"
    );
    for pods in [200usize, 500] {
        for shape in [Shape::Conformant, Shape::Ignoring] {
            let r = report(pods, shape);
            let dir = tempfile::tempdir().expect("tempdir");
            let t0 = Instant::now();
            write_dir(&r, dir.path()).expect("reports written");
            let took = t0.elapsed();
            let size = |name: &str| {
                std::fs::metadata(dir.path().join(name))
                    .map(|m| m.len())
                    .unwrap_or(0) as f64
                    / 1e6
            };
            println!(
                "{:<34} {:>9.1} MB {:>9.3} MB {:>9.3} MB {:>8.2} s {:>9.0} MB",
                format!("{pods} pods, {} cells, {shape:?}", r.summary.cells),
                size("report.json"),
                size("junit.xml"),
                size("report.html"),
                took.as_secs_f64(),
                peak_rss_mb()
            );
        }
    }
}
