//! Reporters: JSON, JUnit XML, HTML and terminal truth tables, all rendered from one
//! [`RunReport`] so they never disagree. The terminal reporter follows the run's event stream
//! ([`crate::run::Event`]); the file reporters render the final report.
//!
//! Files are streamed (each reporter serialises straight into a buffered writer: a 250,000-cell
//! run never exists as one string) and written atomically ([`write_atomic`]): a full disk, a
//! read-only directory or a crash leaves the previous file or no file, never a truncated one.

pub mod diff;
pub mod html;
pub mod json;
pub mod junit;
pub mod model;
pub mod summary;
pub mod terminal;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub use crate::run::{Event, Reporter};
pub use model::{CellReport, RunReport, ScenarioReport, StepReport, Summary, Verdict};

/// Writing a report file failed; nothing was left at (or renamed over) `path`.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The files of a report directory, in the order they are written and listed.
pub const FILES: [&str; 3] = ["report.json", "junit.xml", "report.html"];

/// Buffer between a reporter and its file: large enough that serialisation is not dominated by
/// system calls, small enough to be irrelevant next to the report itself.
const WRITE_BUFFER: usize = 256 * 1024;

/// A report file being written: a temporary file beside its final path, renamed over it only
/// once its content is complete and on disk.
struct Pending {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `path`'s content with `render` into a temporary file in the same directory (so the
/// rename cannot cross file systems), flushes and fsyncs it. Dropping the result before
/// [`Pending::commit`] removes the temporary file.
fn prepare(
    path: &Path,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<Pending, ReportError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let err = io_err(path);
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        // Reports are read by CI artifact uploaders and people, not only by us (the process
        // umask still applies).
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(err)?;
    let write = |tmp: &tempfile::NamedTempFile| -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(WRITE_BUFFER, tmp.as_file());
        render(&mut w)?;
        w.flush()?;
        drop(w);
        tmp.as_file().sync_all()
    };
    write(&tmp).map_err(io_err(path))?;
    Ok(Pending {
        tmp,
        path: path.to_path_buf(),
    })
}

impl Pending {
    fn commit(self) -> Result<PathBuf, ReportError> {
        let Pending { tmp, path } = self;
        tmp.persist(&path)
            .map_err(|e| ReportError::Io {
                path: path.clone(),
                source: e.error,
            })
            .map(|_| path)
    }
}

/// Makes renames in `dir` durable (the directory entry, not only the file, must reach the disk).
fn sync_dir(dir: &Path) -> Result<(), ReportError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes one file atomically: the content goes to a temporary file in the same directory,
/// which is fsynced and then renamed over `path`. On any error the temporary file is removed
/// and `path` is untouched (its old content, if any, stays whole).
pub fn write_atomic(
    path: &Path,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), ReportError> {
    let committed = prepare(path, render)?.commit()?;
    sync_dir(committed.parent().unwrap_or(Path::new(".")))
}

/// Writes `report.json`, `junit.xml` and `report.html` into `dir` (created if missing); returns
/// the paths written, in [`FILES`] order.
///
/// All or nothing: the three files are first written completely to temporary files, and only
/// when all three are on disk are they renamed into place. A full disk or an unwritable
/// directory therefore leaves no new file and no temporary file behind (files of an earlier run
/// in the same directory stay as they were, whole).
pub fn write_dir(report: &RunReport, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let [json_name, junit_name, html_name] = FILES;
    let pending = [
        prepare(&dir.join(json_name), |w| json::write(report, w))?,
        prepare(&dir.join(junit_name), |w| junit::write(report, w))?,
        prepare(&dir.join(html_name), |w| html::write(report, w))?,
    ];
    let written = pending
        .into_iter()
        .map(Pending::commit)
        .collect::<Result<Vec<_>, _>>()?;
    sync_dir(dir)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_failing_render_leaves_neither_file_nor_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old, whole\n").expect("seed");
        let e = write_atomic(&path, |w| {
            w.write_all(b"half a docu")?;
            Err(std::io::Error::other("disk on fire"))
        })
        .expect_err("the render failed");
        assert!(e.to_string().contains("report.json"), "{e}");
        assert!(e.to_string().contains("disk on fire"), "{e}");
        assert_eq!(names(dir.path()), ["report.json"]);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "old, whole\n"
        );
    }

    #[test]
    fn a_successful_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junit.xml");
        std::fs::write(&path, "old").expect("seed");
        write_atomic(&path, |w| w.write_all(b"new")).expect("written");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new");
        assert_eq!(names(dir.path()), ["junit.xml"]);
    }
}
