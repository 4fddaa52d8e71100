//! `report.json`: the [`RunReport`] as is — the contract's fields in the contract's order, then the
//! additions; maps are ordered, so the same run always serialises to the same bytes.

use std::io::Write;

use crate::report::model::RunReport;

/// Streams pretty-printed JSON with a trailing newline into `w`: serde writes straight into the
/// (buffered) writer, so a large run is never held as one string.
pub fn write(report: &RunReport, w: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, report)?;
    w.write_all(b"\n")
}

/// The same document as a string (tests, small reports).
pub fn render(report: &RunReport) -> Result<String, serde_json::Error> {
    let mut buf = Vec::new();
    write(report, &mut buf).map_err(serde_json::Error::io)?;
    String::from_utf8(buf).map_err(|e| serde_json::Error::io(std::io::Error::other(e)))
}

/// Reads a report back (for `netpolc diff` and tests).
pub fn parse(text: &str) -> Result<RunReport, serde_json::Error> {
    serde_json::from_str(text)
}
