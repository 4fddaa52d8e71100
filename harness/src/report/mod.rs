//! Reporters: JSON, JUnit XML, HTML and terminal truth tables, all rendered from one
//! [`RunReport`] so they never disagree. The terminal reporter follows the run's event stream
//! ([`crate::run::Event`]); the file reporters render the final report.

pub mod diff;
pub mod html;
pub mod json;
pub mod junit;
pub mod model;
pub mod summary;
pub mod terminal;

use std::path::{Path, PathBuf};

pub use crate::run::{Event, Reporter};
pub use model::{CellReport, RunReport, ScenarioReport, StepReport, Summary, Verdict};

/// Writing a report directory failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serialise report.json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot serialise junit.xml: {0}")]
    Junit(#[from] quick_junit::SerializeError),
}

/// Writes `report.json`, `junit.xml` and `report.html` into `dir` (created if missing); returns
/// the paths written.
pub fn write_dir(report: &RunReport, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = [
        ("report.json", json::render(report)?),
        ("junit.xml", junit::render(report)?),
        ("report.html", html::render(report)),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        out.push(path);
    }
    Ok(out)
}
