//! Finding and reading input files without trusting the file system.
//!
//! Paths on the command line and everything under a directory may be symlinks pointing anywhere,
//! FIFOs that would block a reader forever, devices, or huge files. So: each file is read once,
//! whatever symlinks lead to it (files and directories are tracked by device and inode, which
//! also ends symlink cycles); the file type is checked before opening, and the open itself is
//! non-blocking and re-checked on the opened descriptor, so a file swapped for a FIFO in between
//! cannot hang the run; at most [`MAX_FILE_BYTES`] are read.

use std::collections::BTreeSet;
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::InputError;
use super::limits::{MAX_DIRECTORY_DEPTH, MAX_FILE_BYTES};

/// Device and inode: one file however many paths lead to it.
type FileId = (u64, u64);

fn id(m: &Metadata) -> FileId {
    (m.dev(), m.ino())
}

/// What a non-regular file is, for the refusal message.
fn kind_of(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

fn refuse_type(path: &Path, m: &Metadata) -> InputError {
    InputError::file(
        path,
        format!(
            "is {}: only regular files (and directories on the command line) are read",
            kind_of(m)
        ),
    )
}

fn too_large(path: &Path, size: u64) -> InputError {
    InputError::file(
        path,
        format!(
            "is {size} bytes; netpolc reads files of at most {} MiB",
            MAX_FILE_BYTES / (1024 * 1024)
        ),
    )
}

/// Is this a file name a directory walk picks up?
fn is_yaml_name(p: &Path) -> bool {
    matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
}

/// Every input file the paths name, in order: files as given, directories walked recursively
/// (`*.yaml`/`*.yml`, sorted path order). A file reached twice (two arguments, a symlink) is
/// listed once, at its first place.
pub(super) fn collect(paths: &[PathBuf], errors: &mut Vec<InputError>) -> Vec<PathBuf> {
    let mut walk = Walk::default();
    for p in paths {
        match std::fs::metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                errors.push(InputError::file(p, "no such file or directory"));
            }
            Err(e) => errors.push(InputError::file(p, format!("cannot read: {e}"))),
            Ok(m) if m.is_dir() => {
                let before = walk.found;
                walk.dir(p, &m, 0, errors);
                if walk.found == before {
                    errors.push(InputError::file(
                        p,
                        "holds no *.yaml or *.yml file: an input without pods is bad input",
                    ));
                }
            }
            Ok(m) if m.is_file() => walk.file(p, &m),
            Ok(m) => errors.push(refuse_type(p, &m)),
        }
    }
    walk.files
}

#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    seen_files: BTreeSet<FileId>,
    seen_dirs: BTreeSet<FileId>,
    /// Input files met (including ones already listed), so an empty directory is noticed.
    found: usize,
}

impl Walk {
    fn file(&mut self, p: &Path, m: &Metadata) {
        self.found += 1;
        if self.seen_files.insert(id(m)) {
            self.files.push(p.to_path_buf());
        }
    }

    fn dir(&mut self, dir: &Path, m: &Metadata, depth: usize, errors: &mut Vec<InputError>) {
        // A directory already walked (a symlink cycle, or two links to one place) adds nothing.
        if !self.seen_dirs.insert(id(m)) {
            return;
        }
        if depth > MAX_DIRECTORY_DEPTH {
            errors.push(InputError::file(
                dir,
                format!("is nested more than {MAX_DIRECTORY_DEPTH} directories deep"),
            ));
            return;
        }
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                errors.push(InputError::file(dir, format!("cannot read directory: {e}")));
                return;
            }
        };
        entries.sort();
        for e in entries {
            // Follows symlinks: where a link points decides what it is.
            match std::fs::metadata(&e) {
                Ok(m) if m.is_dir() => self.dir(&e, &m, depth + 1, errors),
                Ok(m) if is_yaml_name(&e) && m.is_file() => self.file(&e, &m),
                Ok(m) if is_yaml_name(&e) => errors.push(refuse_type(&e, &m)),
                Err(err) if is_yaml_name(&e) => {
                    errors.push(InputError::file(&e, format!("cannot read: {err}")));
                }
                _ => {}
            }
        }
    }
}

/// Reads one input file as UTF-8 text (a leading byte-order mark dropped), refusing anything but
/// a regular file of at most [`MAX_FILE_BYTES`].
pub(super) fn read(path: &Path) -> Result<String, InputError> {
    let cannot = |e: std::io::Error| InputError::file(path, format!("cannot read: {e}"));
    // Checked before opening: opening a FIFO for reading would block until a writer appears.
    let before = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            InputError::file(path, "no such file or directory")
        } else {
            cannot(e)
        }
    })?;
    if !before.is_file() {
        return Err(refuse_type(path, &before));
    }
    if before.len() > MAX_FILE_BYTES {
        return Err(too_large(path, before.len()));
    }
    // Non-blocking, and re-checked on the descriptor: the path may have been swapped meanwhile.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(refuse_type(path, &meta));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_FILE_BYTES) as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path, bytes.len() as u64));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        InputError::file(
            path,
            format!(
                "is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_cycle_is_walked_once_and_each_file_read_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::create_dir(root.join("a")).expect("mkdir");
        std::fs::write(root.join("a/one.yaml"), "x: 1\n").expect("write");
        std::os::unix::fs::symlink(root, root.join("a/loop")).expect("symlink");
        std::os::unix::fs::symlink(root.join("a/one.yaml"), root.join("two.yaml"))
            .expect("symlink");
        let mut errors = Vec::new();
        let files = collect(&[root.to_path_buf(), root.join("a/one.yaml")], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(files, [root.join("a/one.yaml")]);
    }

    #[test]
    fn fifos_are_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("pipe.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let err = read(&fifo).expect_err("a FIFO is refused");
        assert!(err.message.contains("is a FIFO"), "{err}");
        let mut errors = Vec::new();
        let files = collect(&[dir.path().to_path_buf()], &mut errors);
        assert!(files.is_empty());
        assert!(
            errors.iter().any(|e| e.message.contains("is a FIFO")),
            "{errors:?}"
        );
        let mut errors = Vec::new();
        collect(&[PathBuf::from("/dev/null")], &mut errors);
        assert!(errors[0].message.contains("character device"), "{errors:?}");
    }

    #[test]
    fn non_utf8_and_byte_order_marks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, b"a: \xff\n").expect("write");
        assert!(
            read(&bad)
                .expect_err("not UTF-8")
                .message
                .contains("offset 3")
        );
        let bom = dir.path().join("bom.yaml");
        std::fs::write(&bom, "\u{feff}a: 1\n").expect("write");
        assert_eq!(read(&bom).expect("reads"), "a: 1\n");
    }
}
