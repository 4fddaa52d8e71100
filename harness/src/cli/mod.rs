//! The `netpolc` command line: parse, call the library, map the result to the contract's exit
//! codes (0 ok / verdict as expected, 1 verdict differs, 2 bad input or usage, 3 prerequisites
//! missing or provider failed). Each subcommand lives in its own file.
//!
//! Output never panics: a closed stdout (`netpolc … | head -1`) or stderr (`2>&1 | head`) must
//! not turn a verdict into exit 101 (contract: "a closed stdout never changes the exit status").
//! std's `println!`/`eprintln!` panic on a failed write, so this module shadows both (below,
//! before the `mod` items, so every subcommand's file gets them): same text, errors ignored, a
//! failed stdout remembered ([`stdout_gone`]) so `run` can repeat what matters on stderr.

/// `println!` that never panics; a failed write marks stdout as gone.
macro_rules! println {
    () => {
        $crate::cli::out_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::out_line(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics (stderr closed too: nothing left to tell).
macro_rules! eprintln {
    () => {
        $crate::cli::err_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::err_line(format_args!($($arg)*))
    };
}

mod audit;
mod check;
mod cleanup;
mod diff;
mod expect;
mod explain;
mod faults;
mod run;
mod whatif;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::{PodRef, Probe};
use crate::report::Verdict;
use crate::scenario::InputErrors;

/// Ranges of the run's timing options: outside them a run cannot give a sound verdict (a
/// probe timeout of 0 or 1 ms reports every cell blocked, a huge one never ends), so they are
/// bad input (exit 2). Documented in the README.
pub mod limits {
    use std::ops::RangeInclusive;

    /// `--probe-timeout-ms`: from 50 ms (a connection inside one host takes well under that)
    /// to two minutes.
    pub const PROBE_TIMEOUT_MS: RangeInclusive<u64> = 50..=120_000;
    /// `--step-timeout-ms`: from 100 ms to one hour.
    pub const STEP_TIMEOUT_MS: RangeInclusive<u64> = 100..=3_600_000;
    /// `--attempts`: at least one, at most ten.
    pub const ATTEMPTS: RangeInclusive<i64> = 1..=10;
}

/// Exit statuses fixed by the contract.
pub mod exit {
    pub const OK: u8 = 0;
    pub const VERDICT_MISMATCH: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const PREREQUISITE: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(
    name = "netpolc",
    version,
    about = "Conformance harness for Kubernetes NetworkPolicy enforcement",
    long_about = "Computes the reachability NetworkPolicy v1 requires (expect, explain), realises \
                  scenarios on a dataplane and probes every pod → pod × port × protocol cell (run), \
                  and reports whether the dataplane enforces what Kubernetes requires."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the reachability NetworkPolicy semantics require (no cluster, no privileges).
    Expect(ExpectArgs),
    /// Explain the oracle's verdict for one cell.
    Explain(ExplainArgs),
    /// Realise scenarios on a provider, probe the matrix, compare with the oracle.
    Run(RunArgs),
    /// List the faults the local dataplane can inject (`run --fault NAME`).
    Faults,
    /// Remove what dead runs left (network namespaces, kind clusters, cluster namespaces); never
    /// a live run's.
    Cleanup(CleanupArgs),
    /// Compare two runs cell by cell (e.g. two CNIs, two versions of one CNI).
    Diff(DiffArgs),
    /// What an existing cluster's policies allow, per workload, and what is exposed (read-only;
    /// `--probe` to see what the cluster really does).
    Audit(audit::AuditArgs),
    /// Does this cluster enforce NetworkPolicy at all? Two pods and one deny policy in a
    /// throwaway namespace.
    Check(check::CheckArgs),
    /// The cells a candidate policy change would flip, with the deciding rule of each.
    #[command(name = "what-if")]
    WhatIf(whatif::WhatIfArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ExpectArgs {
    /// Scenario files, manifest files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Probe PORT/PROTO (repeatable); replaces the declared container ports.
    #[arg(long = "probe", value_name = "PORT/PROTO")]
    pub probes: Vec<Probe>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// One scenario or manifest file.
    pub path: PathBuf,
    #[arg(long, value_name = "NS/POD", value_parser = quoted::<PodRef>())]
    pub from: PodRef,
    #[arg(long, value_name = "NS/POD", value_parser = quoted::<PodRef>())]
    pub to: PodRef,
    #[arg(long, value_name = "PORT/PROTO")]
    pub probe: Probe,
    /// Step name (default: the last step).
    #[arg(long)]
    pub step: Option<String>,
    /// Scenario name when the path holds several (default: the first).
    #[arg(long)]
    pub scenario: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    Local,
    Kind,
    Kubeconfig,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario files, manifest files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "local")]
    pub provider: ProviderKind,
    /// CNI: local `nftables` (default) or `none`; kind: a catalogue name (kindnet, calico, …).
    #[arg(long)]
    pub cni: Option<String>,
    /// Inject a named non-conformance (local provider only; repeatable). See `netpolc faults`.
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<String>,
    /// The verdict that makes the exit status 0.
    #[arg(long, default_value = "conformant")]
    pub expect_verdict: Verdict,
    /// Where report.json, junit.xml and report.html go (default reports/<run-id>/).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Probe PORT/PROTO (repeatable); replaces each step's probes.
    #[arg(long = "probe", value_name = "PORT/PROTO")]
    pub probes: Vec<Probe>,
    /// What probes connect to: pod-ip (default), service-ip (a per-pod Service's ClusterIP, as
    /// upstream's e2e probes) or service-name (its DNS name). Repeatable: each cell is probed
    /// once per mode and reported with its `via`.
    #[arg(long = "probe-mode", value_name = "MODE")]
    pub probe_modes: Vec<crate::service::ProbeMode>,
    /// Per-probe timeout in milliseconds, 50-120000 (default: 1000 local, 3000 on clusters).
    #[arg(long, value_parser = clap::value_parser!(u64).range(limits::PROBE_TIMEOUT_MS))]
    pub probe_timeout_ms: Option<u64>,
    /// Attempts for a wrong cell (the first included) before it counts as failed, 1-10.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(limits::ATTEMPTS))]
    pub attempts: u32,
    /// How long a step may take to converge, in milliseconds, 100-3600000 (default: 3000 local,
    /// plus --enforce-delay-ms; 60000 clusters). Once the dataplane has blocked nothing the oracle
    /// denies for a whole step timeout, later steps are judged after one pass.
    #[arg(long, value_parser = clap::value_parser!(u64).range(limits::STEP_TIMEOUT_MS))]
    pub step_timeout_ms: Option<u64>,
    /// Local provider: apply each step's policy changes MS after the step starts, like a CNI
    /// that converges slowly (the run must still judge it and measure the delay).
    #[arg(long, value_name = "MS")]
    pub enforce_delay_ms: Option<u64>,
    /// Probe a stratified sample of about N cells per step instead of the whole matrix: every
    /// source and destination pod and every oracle decision path at least once.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Seed of --sample (default: a fresh one; the report records it).
    #[arg(long, value_name = "SEED", requires = "sample")]
    pub sample_seed: Option<u64>,
    /// Print the plan as YAML and exit without touching anything (kind, kubeconfig).
    #[arg(long)]
    pub dry_run: bool,
    /// kind: keep the cluster after the run.
    #[arg(long)]
    pub keep_cluster: bool,
    /// kubeconfig: the context to use (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Write a GitHub job-summary markdown file.
    #[arg(long, value_name = "FILE")]
    pub summary_md: Option<PathBuf>,
    /// Use this run id instead of a generated one (at most 32 lower-case letters, digits and
    /// single dashes): names every object the run creates, so scripts can find or clean them.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Only the verdict line and errors.
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Every cell, not only mismatches.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
#[command(
    long_about = "Removes what dead netpolc runs left behind: network namespaces of the local \
                  dataplane, kind clusters, and namespaces on the cluster of the current (or \
                  --context) kubeconfig context. A run is dead when its lease says its process is \
                  gone; a live run is never touched. Without --run-id only what can be attributed \
                  to a dead run is removed (anything without a lease, such as names given by an \
                  older netpolc, is left and named); --run-id ID removes exactly that run's \
                  objects unless it is live."
)]
pub struct CleanupArgs {
    /// Only this run, exactly (never a run whose id merely starts with it).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Only these providers (repeatable; default: all — a part whose tool or kubeconfig is
    /// missing is skipped, saying so).
    #[arg(long = "provider", value_enum, value_name = "PROVIDER")]
    pub providers: Vec<ProviderKind>,
    /// kubeconfig: the context whose cluster to clean (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub a: PathBuf,
    pub b: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::OK
            };
            if e.use_stderr() {
                // clap quotes refused arguments as given: escape what could rewrite the
                // terminal (carriage returns, bidi overrides, other controls) line by line.
                let text = e.render().to_string();
                let safe: Vec<_> = text.split('\n').map(crate::names::escape).collect();
                eprint!("{}", safe.join("\n"));
            } else {
                let _ = e.print();
            }
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        Command::Expect(mut a) => {
            dedup_probes(&mut a.probes);
            expect::run(a)
        }
        Command::Run(mut a) => {
            dedup_probes(&mut a.probes);
            run::run(a)
        }
        Command::Explain(a) => explain::run(a),
        Command::Faults => faults::run(),
        Command::Cleanup(a) => cleanup::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Audit(mut a) => {
            dedup_probes(&mut a.ports);
            audit::run(a)
        }
        Command::Check(a) => check::run(a),
        Command::WhatIf(mut a) => {
            dedup_probes(&mut a.probes);
            whatif::run(a)
        }
    };
    ExitCode::from(code)
}

/// Parses an argument like clap's own `FromStr` parser would, but the refused value is shown
/// escaped: clap echoes it raw, and a newline in `--from` would forge lines on the terminal.
#[derive(Clone)]
struct Quoted<T>(std::marker::PhantomData<fn() -> T>);

fn quoted<T>() -> Quoted<T> {
    Quoted(std::marker::PhantomData)
}

impl<T> clap::builder::TypedValueParser for Quoted<T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let name = arg.map(|a| a.to_string()).unwrap_or_default();
        let refuse = |why: String| {
            let mut cmd = cmd.clone();
            cmd.error(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value {value:?} for '{name}': {why}"),
            )
        };
        let s = value
            .to_str()
            .ok_or_else(|| refuse("not UTF-8".to_string()))?;
        s.parse().map_err(|e: T::Err| refuse(e.to_string()))
    }
}

/// A repeated `--probe` names one probe: keep its first occurrence, so no table or cell appears
/// twice.
fn dedup_probes(probes: &mut Vec<Probe>) {
    let mut seen = Vec::with_capacity(probes.len());
    probes.retain(|p| {
        let new = !seen.contains(p);
        if new {
            seen.push(*p);
        }
        new
    });
}

/// Prints input errors the same way everywhere and returns the bad-input status.
pub(crate) fn report_input_errors(e: &InputErrors) -> u8 {
    eprintln!("error: invalid input");
    for err in &e.0 {
        eprintln!("  {err}");
    }
    exit::BAD_INPUT
}

/// Loads the inputs, prints their warnings, and rejects hand-written expectations that contradict
/// the oracle (the author's mistake). `Err` holds the exit status (2).
pub(crate) fn load_checked(paths: &[PathBuf]) -> Result<crate::scenario::Loaded, u8> {
    let loaded = crate::scenario::load_paths(paths).map_err(|e| report_input_errors(&e))?;
    print_warnings(&loaded.warnings);
    let mismatches: Vec<String> = loaded
        .scenarios
        .iter()
        .flat_map(|s| {
            s.check_expectations()
                .into_iter()
                .map(move |m| match m.written_at {
                    Some(_) => format!("{m} (scenario {})", s.name),
                    None => format!("{}: scenario {}: {m}", s.source, s.name),
                })
        })
        .collect();
    if mismatches.is_empty() {
        return Ok(loaded);
    }
    eprintln!("error: hand-written expectations disagree with NetworkPolicy semantics");
    for m in &mismatches {
        eprintln!("  {m}");
    }
    Err(exit::BAD_INPUT)
}

/// Set once a write to stdout failed.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Whether a write to stdout has failed in this process (closed pipe, full disk…).
pub(crate) fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

pub(crate) fn mark_stdout_gone() {
    STDOUT_GONE.store(true, Ordering::Relaxed);
}

/// Backs the module's `println!`.
pub(crate) fn out_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{args}").and_then(|()| out.flush()).is_err() {
        mark_stdout_gone();
    }
}

/// Backs the module's `eprintln!`.
pub(crate) fn err_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{args}").and_then(|()| err.flush());
}

/// Writes a line to stdout, or to stderr once stdout is gone: for what must be seen whatever
/// happened to the pipe (the verdict, where the reports went).
pub(crate) fn say(text: &str) {
    if !stdout_gone() {
        println!("{text}");
    }
    if stdout_gone() {
        eprintln!("{text}");
    }
}

/// How a command's output to stdout ended: fine (also when the reader went away, as with
/// `| head`: the exit status stays the command's), or another error, which is reported and
/// turns into exit 3 (the environment failed; the output is incomplete).
pub(crate) fn output_status(written: std::io::Result<()>) -> Result<(), u8> {
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            mark_stdout_gone();
            Ok(())
        }
        Err(e) => {
            mark_stdout_gone();
            eprintln!("error: cannot write to stdout: {e}");
            Err(exit::PREREQUISITE)
        }
    }
}

/// Writes a command's output to stdout (see [`output_status`]).
pub(crate) fn emit(text: &str) -> Result<(), u8> {
    let mut out = std::io::stdout().lock();
    output_status(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// Writes a file a command produces (job summary, audit page, dump) atomically when it is a
/// regular (or new) file, so a full disk never leaves half of one; a special file such as
/// `/dev/stdout` is written in place, since it cannot be renamed over.
pub(crate) fn write_whole(
    path: &std::path::Path,
    text: &str,
) -> Result<(), crate::report::ReportError> {
    let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
    if special {
        std::fs::write(path, text).map_err(|source| crate::report::ReportError::Io {
            path: path.to_path_buf(),
            source,
        })
    } else {
        crate::report::write_atomic(path, |w| w.write_all(text.as_bytes()))
    }
}

/// Prints warnings (ignored kinds, CIDRs with host bits) to stderr.
pub(crate) fn print_warnings(w: &[crate::scenario::InputError]) {
    for w in w {
        eprintln!("warning: {w}");
    }
}
