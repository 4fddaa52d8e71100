//! Run ids and leases: what keeps one run from touching another's objects.
//!
//! **Run ids** are 1–32 lower-case letters, digits and single dashes, starting and ending with a
//! letter or digit ([`check_run_id`]). They never contain `--`, so every name derived from a run id
//! puts `--` right after it (`netpolc-<run>--s0-node`, `netpolc-<run>--0-x`,
//! `netpolc-<run>--kindnet`): the run id is whatever precedes the first `--`, and no run id can be
//! mistaken for a prefix of another (`a` never matches `a-s1`'s objects).
//!
//! **Leases** tell a live run from a dead one. A run takes a lease before it creates anything and
//! holds it for its whole life: a file `<dir>/<run-id>.lease` locked with `flock` (the kernel drops
//! the lock when the last process holding it exits, whatever killed it), recording the holder's
//! pid, process start time, boot id and pid namespace so a recycled pid is never mistaken for the
//! run. The lock is inherited by the programs the run starts (`ip`, `kind`, `kubectl`): a run
//! killed while a child is still creating objects stays live until that child is gone, so cleanup
//! never races it. Runs on a cluster also stamp every namespace they create with a renewed lease
//! ([`cluster`]), so cleanup from any machine can tell a dead run from a live one.
//!
//! Everything that decides is a pure function ([`judge`], [`cluster::judge_namespace`]) over
//! recorded facts; the I/O around it (opening, locking, reading `/proc`) is thin.

pub mod cluster;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// Longest run id: `netpolc-<run>--<cni>` must stay within kind's 50 characters.
pub const MAX_RUN_ID: usize = 32;

/// The separator that ends a run id inside every name derived from it.
pub const RUN_END: &str = "--";

/// Checks a run id: 1–32 lower-case letters, digits and dashes, starting and ending with a letter
/// or digit, never two dashes in a row (`--` ends a run id inside names). `Err` says why.
pub fn check_run_id(id: &str) -> Result<(), String> {
    let b = id.as_bytes();
    let why = if b.is_empty() {
        "is empty"
    } else if b.len() > MAX_RUN_ID {
        "is longer than 32 characters"
    } else if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    {
        "may hold only lower-case letters, digits and dashes"
    } else if b[0] == b'-' || b[b.len() - 1] == b'-' {
        "must start and end with a letter or digit"
    } else if id.contains(RUN_END) {
        "may not contain two dashes in a row (`--` separates a run id from the rest of a name)"
    } else {
        return Ok(());
    };
    Err(format!("run id {id:?} {why}"))
}

/// Whether `id` is a valid run id.
pub fn valid_run_id(id: &str) -> bool {
    check_run_id(id).is_ok()
}

/// Splits `<run>--<rest>` (after a provider's name prefix) into a valid run id and the rest;
/// `None` when the name does not follow the scheme.
pub fn split_run(name: &str) -> Option<(&str, &str)> {
    let (run, rest) = name.split_once(RUN_END)?;
    valid_run_id(run).then_some((run, rest))
}

/// A process, identified so that a recycled pid is never mistaken for it: pid plus start time
/// (clock ticks since boot) only mean something on the same boot and in the same pid namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub boot: String,
    pub pidns: String,
    pub pid: u32,
    pub start: u64,
}

impl Holder {
    /// This process.
    pub fn current() -> Result<Holder, String> {
        let pid = std::process::id();
        Ok(Holder {
            host: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_default(),
            boot: read_trimmed("/proc/sys/kernel/random/boot_id")
                .ok_or("cannot read /proc/sys/kernel/random/boot_id")?,
            pidns: pid_namespace().ok_or("cannot read /proc/self/ns/pid")?,
            pid,
            start: process_start(pid).ok_or("cannot read /proc/self/stat")?,
        })
    }

    /// `pid 123 on host h`.
    pub fn describe(&self) -> String {
        if self.host.is_empty() {
            format!("pid {}", self.pid)
        } else {
            format!("pid {} on {}", self.pid, self.host)
        }
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_start(&stat)
}

/// The start time in a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn parse_stat_start(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; start time is field 22.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// What this machine can say about processes: lets the pure judges be tested on recorded facts.
pub trait Processes {
    /// Whether `h` was recorded on this boot and in this pid namespace, where its pid means
    /// something.
    fn same_machine(&self, h: &Holder) -> bool;
    /// Whether `h`'s process is running (same pid, same start time).
    fn running(&self, h: &Holder) -> bool;
}

/// The real machine, read from `/proc`.
pub struct ThisMachine {
    boot: Option<String>,
    pidns: Option<String>,
}

impl ThisMachine {
    pub fn new() -> Self {
        ThisMachine {
            boot: read_trimmed("/proc/sys/kernel/random/boot_id"),
            pidns: pid_namespace(),
        }
    }
}

impl Default for ThisMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl Processes for ThisMachine {
    fn same_machine(&self, h: &Holder) -> bool {
        self.boot.as_deref() == Some(h.boot.as_str())
            && self.pidns.as_deref() == Some(h.pidns.as_str())
    }
    fn running(&self, h: &Holder) -> bool {
        self.same_machine(h) && process_start(h.pid) == Some(h.start)
    }
}

/// What a lease file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub run_id: String,
    /// `local`, `kind` or `kubeconfig`.
    pub provider: String,
    /// The kind cluster or the API server the run works on, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub holder: Holder,
    /// RFC 3339.
    pub started_at: String,
}

impl LeaseRecord {
    /// `pid 123 on host h, started 2026-11-26T12:00:00Z`.
    pub fn describe(&self) -> String {
        format!("{}, started {}", self.holder.describe(), self.started_at)
    }
}

/// Whether the lock of a lease file was free when tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Held,
    Free,
}

/// A run's state as its lease tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// The lock is held and the recorded process runs (or cannot be checked from here).
    Running(String),
    /// The lock is held but the recorded process is gone: programs it started still hold it
    /// (and may still be creating objects). Cleanup waits a bounded time for them.
    Orphaned(String),
    /// The lock is free but the recorded process still runs: the run is ending.
    Ending(String),
    /// The lock is free and no process of the run is left.
    Dead(String),
}

impl Liveness {
    pub fn is_dead(&self) -> bool {
        matches!(self, Liveness::Dead(_))
    }
    pub fn why(&self) -> &str {
        match self {
            Liveness::Running(w)
            | Liveness::Orphaned(w)
            | Liveness::Ending(w)
            | Liveness::Dead(w) => w,
        }
    }
}

/// Decides a run's liveness from its lock and record. The lock is the authority (the kernel
/// releases it when the last holder exits); pid and start time only refine the answer where they
/// mean something (same boot, same pid namespace), and keep a run whose process still runs from
/// ever being called dead.
pub fn judge(lock: LockState, record: Option<&LeaseRecord>, procs: &impl Processes) -> Liveness {
    let local = record.filter(|r| procs.same_machine(&r.holder));
    let running = local.is_some_and(|r| procs.running(&r.holder));
    let who = record
        .map(LeaseRecord::describe)
        .unwrap_or_else(|| "no readable record".into());
    match (lock, local, running) {
        (LockState::Held, Some(_), false) => Liveness::Orphaned(format!(
            "its process is gone ({who}) but a program it started still holds the lease"
        )),
        (LockState::Held, _, _) => Liveness::Running(format!("live: lease held ({who})")),
        (LockState::Free, _, true) => Liveness::Ending(format!(
            "ending: lease released, process still running ({who})"
        )),
        (LockState::Free, _, false) => Liveness::Dead(format!("its process is gone ({who})")),
    }
}

/// Where lease files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseDir(PathBuf);

impl LeaseDir {
    /// `/run/netpolc` for root (the local dataplane always runs as root); for other users (kind
    /// without root) `$XDG_RUNTIME_DIR/netpolc`, else `<tmp>/netpolc-<uid>`.
    pub fn default_for_user() -> Self {
        let uid = nix::unistd::geteuid();
        if uid.is_root() {
            return LeaseDir(PathBuf::from("/run/netpolc"));
        }
        // An inherited XDG_RUNTIME_DIR of another user (sudo, setpriv) is not ours to write.
        let usable = |d: &Path| {
            nix::unistd::access(
                d,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            )
            .is_ok()
        };
        match std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|d| usable(d))
        {
            Some(d) => LeaseDir(d.join("netpolc")),
            None => LeaseDir(std::env::temp_dir().join(format!("netpolc-{uid}"))),
        }
    }

    pub fn at(path: impl Into<PathBuf>) -> Self {
        LeaseDir(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file_for(&self, run_id: &str) -> PathBuf {
        self.0.join(format!("{run_id}.lease"))
    }

    /// Run ids with a lease file here, sorted.
    pub fn runs(&self) -> Result<Vec<String>, String> {
        let rd = match std::fs::read_dir(&self.0) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot list {}: {e}", self.0.display())),
        };
        let mut runs: Vec<String> = rd
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".lease").map(str::to_string))
            .filter(|r| valid_run_id(r))
            .collect();
        runs.sort();
        Ok(runs)
    }
}

/// Why a lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("run id {run} is in use ({why})")]
    InUse {
        run: String,
        holder: Option<Box<LeaseRecord>>,
        why: String,
    },
    #[error(
        "an earlier run with id {run} ended without cleaning up ({}): run `netpolc cleanup --run-id {run}` first, or pick another --run-id",
        .previous.describe()
    )]
    Leftover {
        run: String,
        previous: Box<LeaseRecord>,
    },
    #[error("{0}")]
    Io(String),
}

/// A held lease: the run is live while this exists (and while programs it started run).
#[derive(Debug)]
pub struct RunLease {
    lock: Flock<File>,
    path: PathBuf,
    record: LeaseRecord,
}

/// How long `acquire` retries a lock held by someone who has not written a record yet (another
/// run starting, or a cleanup probing the file).
const ACQUIRE_PATIENCE: Duration = Duration::from_secs(2);

/// How long `acquire` waits for the programs of a run that just died (they hold its lease until
/// they exit; then the run is a dead one with leftovers, refused differently).
const ORPHAN_PATIENCE: Duration = Duration::from_secs(5);

impl RunLease {
    /// Takes the lease of `run_id` in `dir` for this process, before the run creates anything.
    /// Refused when a live run holds it, and when an earlier run of that id left its lease (and
    /// maybe more) behind.
    pub fn acquire(
        dir: &LeaseDir,
        run_id: &str,
        provider: &str,
        target: Option<String>,
    ) -> Result<RunLease, AcquireError> {
        check_run_id(run_id).map_err(AcquireError::Io)?;
        let io = |what: &str, e: &dyn std::fmt::Display| AcquireError::Io(format!("{what}: {e}"));
        create_dir(dir.path())
            .map_err(|e| io(&format!("creating {}", dir.path().display()), &e))?;
        let holder = Holder::current().map_err(AcquireError::Io)?;
        let path = dir.file_for(run_id);
        let deadline = Instant::now() + ACQUIRE_PATIENCE;
        let orphan_deadline = Instant::now() + ORPHAN_PATIENCE;
        let procs = ThisMachine::new();
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&path)
                .map_err(|e| io(&format!("opening {}", path.display()), &e))?;
            let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => l,
                Err((mut file, Errno::EWOULDBLOCK)) => {
                    let holder = read_record(&mut file).map(Box::new);
                    // No record yet (someone mid-acquire), or a run whose process just died
                    // while programs it started finish: worth waiting a little for either.
                    let orphaned = holder.as_deref().is_some_and(|h| {
                        matches!(
                            judge(LockState::Held, Some(h), &procs),
                            Liveness::Orphaned(_)
                        )
                    });
                    let patience = if orphaned { orphan_deadline } else { deadline };
                    if (holder.is_none() || orphaned) && Instant::now() < patience {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    let why = judge(LockState::Held, holder.as_deref(), &procs)
                        .why()
                        .to_string();
                    return Err(AcquireError::InUse {
                        run: run_id.into(),
                        holder,
                        why,
                    });
                }
                Err((_, e)) => return Err(io(&format!("locking {}", path.display()), &e)),
            };
            // A cleanup may have removed the file between our open and our lock: then we hold a
            // lock on a file nobody else can find. Start over on the current file.
            if !same_file(&lock, &path) {
                continue;
            }
            if let Some(previous) = read_record(&mut lock) {
                return Err(AcquireError::Leftover {
                    run: run_id.into(),
                    previous: Box::new(previous),
                });
            }
            let record = LeaseRecord {
                run_id: run_id.into(),
                provider: provider.into(),
                target,
                holder,
                started_at: rfc3339(SystemTime::now()),
            };
            write_record(&mut lock, &record)
                .map_err(|e| io(&format!("writing {}", path.display()), &e))?;
            inherit_across_exec(&lock)
                .map_err(|e| io(&format!("sharing the lock of {}", path.display()), &e))?;
            return Ok(RunLease { lock, path, record });
        }
    }

    pub fn record(&self) -> &LeaseRecord {
        &self.record
    }

    /// The run ended and removed everything it created: the lease file goes, then the lock.
    pub fn release(self) {
        if same_file(&self.lock, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
        drop(self.lock);
    }

    /// The run ended but may have left something behind: the file stays (so a later cleanup
    /// can attribute the leftovers to this dead run); the lock goes when the process exits.
    pub fn keep(self) {
        drop(self.lock);
    }
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn read_record(file: &mut File) -> Option<LeaseRecord> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_record(file: &mut File, record: &LeaseRecord) -> std::io::Result<()> {
    let text = serde_json::to_string(record).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.flush()
}

/// Lets programs the run starts inherit the locked descriptor, so the lease stays held until the
/// last of them exits (std opens every file close-on-exec).
fn inherit_across_exec(file: &File) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    fcntl(file, FcntlArg::F_SETFD(FdFlag::empty())).map(drop)
}

/// RFC 3339, UTC, seconds.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(0), 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Parses what [`rfc3339`] writes (and any RFC 3339 time).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let secs = u64::try_from(t.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// A dead run's lease, held by cleanup while it removes the run's leftovers, so no new run with
/// that id starts meanwhile.
#[derive(Debug)]
pub struct Claim {
    lock: Flock<File>,
    path: PathBuf,
    pub record: Option<LeaseRecord>,
    pub why: String,
}

impl Claim {
    /// Everything of the run is gone: remove its lease file.
    pub fn finish(self) {
        if same_file(&self.lock, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
        drop(self.lock);
    }
}

/// What a look at a run's lease found.
#[derive(Debug)]
pub enum Inspection {
    /// No lease file: the run is unknown here (never leased, or already cleaned up).
    Missing,
    /// Live (running, orphaned past the wait, or ending): never touched.
    Live(Liveness, Option<LeaseRecord>),
    /// Dead; the claim holds its lease until cleanup finishes.
    Dead(Claim),
}

/// Looks at `run_id`'s lease. When the run's process is gone but programs it started still hold
/// the lease, waits up to `orphan_wait` for them to exit (they may still be creating objects).
pub fn inspect(
    dir: &LeaseDir,
    run_id: &str,
    orphan_wait: Duration,
    procs: &impl Processes,
) -> Result<Inspection, String> {
    let path = dir.file_for(run_id);
    let deadline = Instant::now() + orphan_wait;
    loop {
        let file = match OpenOptions::new().read(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Inspection::Missing),
            Err(e) => return Err(format!("opening {}: {e}", path.display())),
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                if !same_file(&lock, &path) {
                    continue;
                }
                let record = read_record(&mut lock);
                let l = judge(LockState::Free, record.as_ref(), procs);
                if let Liveness::Dead(why) = l {
                    return Ok(Inspection::Dead(Claim {
                        lock,
                        path,
                        record,
                        why,
                    }));
                }
                return Ok(Inspection::Live(l, record));
            }
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let record = read_record(&mut file);
                let l = judge(LockState::Held, record.as_ref(), procs);
                if matches!(l, Liveness::Orphaned(_)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                return Ok(Inspection::Live(l, record));
            }
            Err((_, e)) => return Err(format!("locking {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_follow_the_rules() {
        for ok in [
            "a",
            "iso-a",
            "iso-a-s1",
            "20261126-120000-ab12",
            &"x".repeat(32),
        ] {
            assert_eq!(check_run_id(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            (&"x".repeat(33) as &str, "longer"),
            ("A", "lower-case"),
            ("a_b", "lower-case"),
            ("a/b", "lower-case"),
            ("a\nb", "lower-case"),
            ("-a", "start and end"),
            ("a-", "start and end"),
            ("a--b", "two dashes"),
        ] {
            let e = check_run_id(bad).expect_err(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_run_id_ends_at_the_first_double_dash() {
        assert_eq!(split_run("iso-a--s0-node"), Some(("iso-a", "s0-node")));
        assert_eq!(
            split_run("iso-a-s1--s0-node"),
            Some(("iso-a-s1", "s0-node"))
        );
        // Old names have no `--` after the run id: they are never read as the new scheme.
        assert_eq!(split_run("iso-a-s1-s0-node"), None);
        assert_eq!(split_run("--s0-node"), None);
        assert_eq!(split_run("Bad--s0"), None);
        assert_eq!(split_run("iso-a--"), Some(("iso-a", "")));
    }

    #[test]
    fn stat_start_time_survives_odd_command_names() {
        let line = "31193 (a b) c)) R 31189 31189 16296 0 -1 4194304 121 0 0 0 0 0 0 0 20 0 1 0 \
                    156043 3133440 359 18446744073709551615";
        assert_eq!(parse_stat_start(line), Some(156043));
        assert_eq!(parse_stat_start("garbage"), None);
        let me = process_start(std::process::id());
        assert!(me.is_some_and(|t| t > 0), "{me:?}");
    }

    struct Fake {
        boot: &'static str,
        running: Vec<(u32, u64)>,
    }
    impl Processes for Fake {
        fn same_machine(&self, h: &Holder) -> bool {
            h.boot == self.boot && h.pidns == "pid:[1]"
        }
        fn running(&self, h: &Holder) -> bool {
            self.same_machine(h) && self.running.contains(&(h.pid, h.start))
        }
    }

    fn record(boot: &str, pid: u32, start: u64) -> LeaseRecord {
        LeaseRecord {
            run_id: "r".into(),
            provider: "local".into(),
            target: None,
            holder: Holder {
                host: "h".into(),
                boot: boot.into(),
                pidns: "pid:[1]".into(),
                pid,
                start,
            },
            started_at: "2026-11-26T12:00:00Z".into(),
        }
    }

    #[test]
    fn liveness_follows_the_lock_and_the_recorded_process() {
        let m = Fake {
            boot: "b1",
            running: vec![(10, 500)],
        };
        use LockState::*;
        let alive = record("b1", 10, 500);
        let recycled = record("b1", 10, 499); // same pid, another process
        let elsewhere = record("b2", 10, 500); // another boot: the pid means nothing here
        assert!(matches!(
            judge(Held, Some(&alive), &m),
            Liveness::Running(_)
        ));
        assert!(matches!(
            judge(Held, Some(&recycled), &m),
            Liveness::Orphaned(_)
        ));
        assert!(matches!(
            judge(Held, Some(&elsewhere), &m),
            Liveness::Running(_)
        ));
        assert!(matches!(judge(Held, None, &m), Liveness::Running(_)));
        assert!(matches!(judge(Free, Some(&alive), &m), Liveness::Ending(_)));
        assert!(judge(Free, Some(&recycled), &m).is_dead());
        assert!(judge(Free, Some(&elsewhere), &m).is_dead());
        assert!(judge(Free, None, &m).is_dead());
    }

    #[test]
    fn times_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(t));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    /// The whole life of a lease on a real file system: taken, refused to a second taker, seen as
    /// live, kept (dead with leftovers), refused as a leftover, claimed by cleanup, finished.
    #[test]
    fn a_lease_lives_and_dies_on_disk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = LeaseDir::at(tmp.path().join("leases"));
        let m = ThisMachine::new();
        let lease = RunLease::acquire(&dir, "t-life", "local", None).expect("acquire");
        assert_eq!(lease.record().holder.pid, std::process::id());
        assert_eq!(dir.runs(), Ok(vec!["t-life".to_string()]));
        // flock locks belong to open file descriptions: a second open in this process conflicts.
        match RunLease::acquire(&dir, "t-life", "local", None) {
            Err(AcquireError::InUse {
                holder: Some(h), ..
            }) => {
                assert_eq!(h.holder.pid, std::process::id())
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        // Held by this very process, which runs: live.
        match inspect(&dir, "t-life", Duration::ZERO, &m) {
            Ok(Inspection::Live(Liveness::Running(_), Some(_))) => {}
            other => panic!("expected live, got {other:?}"),
        }
        lease.keep();
        // The lock is free but this process still runs: ending, not dead.
        match inspect(&dir, "t-life", Duration::ZERO, &m) {
            Ok(Inspection::Live(Liveness::Ending(_), _)) => {}
            other => panic!("expected ending, got {other:?}"),
        }
        match RunLease::acquire(&dir, "t-life", "local", None) {
            Err(AcquireError::Leftover { previous, .. }) => assert_eq!(previous.run_id, "t-life"),
            other => panic!("expected Leftover, got {other:?}"),
        }
        // A record of a process that no longer exists (start time 1 tick after boot is taken).
        let mut dead = record("x", 1, 1);
        dead.holder = Holder {
            start: 1,
            ..Holder::current().expect("holder")
        };
        std::fs::write(
            dir.file_for("t-life"),
            serde_json::to_string(&dead).expect("json"),
        )
        .expect("write");
        let claim = match inspect(&dir, "t-life", Duration::ZERO, &m) {
            Ok(Inspection::Dead(c)) => c,
            other => panic!("expected dead, got {other:?}"),
        };
        // While cleanup holds the claim, nobody starts a run with that id.
        assert!(matches!(
            RunLease::acquire(&dir, "t-life", "local", None),
            Err(AcquireError::InUse { .. })
        ));
        claim.finish();
        assert!(matches!(
            inspect(&dir, "t-life", Duration::ZERO, &m),
            Ok(Inspection::Missing)
        ));
        let again = RunLease::acquire(&dir, "t-life", "local", None).expect("reusable");
        again.release();
        assert_eq!(dir.runs(), Ok(vec![]));
    }

    #[test]
    fn invalid_run_ids_get_no_lease() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = LeaseDir::at(tmp.path());
        assert!(matches!(
            RunLease::acquire(&dir, "../etc", "local", None),
            Err(AcquireError::Io(m)) if m.contains("lower-case")
        ));
    }
}
