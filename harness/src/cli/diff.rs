//! `netpolc diff A/report.json B/report.json [--format table|json]`: exit 0 when the runs agree
//! cell by cell, 1 when they differ, 2 when a file cannot be read or is not a report.

use crate::report::diff;

use super::{Format, exit};

pub fn run(args: super::DiffArgs) -> u8 {
    let load = |p: &std::path::Path| {
        diff::load(p).map_err(|e| {
            eprintln!("error: {e}");
            exit::BAD_INPUT
        })
    };
    let (a, b) = match (load(&args.a), load(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let d = diff::diff(
        &args.a.display().to_string(),
        &a,
        &args.b.display().to_string(),
        &b,
    );
    let written = match args.format {
        Format::Table => super::emit(&d.render_table()),
        Format::Json => match serde_json::to_string_pretty(&d) {
            Ok(s) => super::emit(&format!("{s}\n")),
            Err(e) => {
                eprintln!("error: cannot encode the comparison as JSON: {e}");
                return exit::BAD_INPUT;
            }
        },
    };
    if let Err(code) = written {
        return code;
    }
    if d.identical {
        exit::OK
    } else {
        exit::VERDICT_MISMATCH
    }
}
