//! `report.json`: the [`RunReport`] as is — the contract's fields in the contract's order, then the
//! additions; maps are ordered, so the same run always serialises to the same bytes.

use crate::report::model::RunReport;

/// Pretty-printed JSON with a trailing newline.
pub fn render(report: &RunReport) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    Ok(s)
}

/// Reads a report back (for `netpolc diff` and tests).
pub fn parse(text: &str) -> Result<RunReport, serde_json::Error> {
    serde_json::from_str(text)
}
