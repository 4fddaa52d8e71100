//! `netpolc run`: load, pick the provider, run the engine, write reports, map to an exit status.
//!
//! Exit statuses (contract): 0 when the verdict equals `--expect-verdict`, 1 when it does not, 2 on
//! bad input or usage (including an unknown fault or CNI, and a fault with a non-local provider),
//! 3 when prerequisites are missing, the provider fails or the reports cannot be written (they are
//! written whole or not at all; the verdict is printed anyway). A closed stdout changes nothing:
//! the run finishes, tears down and writes its reports, and the verdict goes to stderr. On SIGINT or SIGTERM the run stops,
//! every open session and the platform are torn down, and the status is 128 + the signal number
//! (130 for SIGINT, 143 for SIGTERM), as shells report it. A second signal exits at once: on the
//! local dataplane after removing the run's network namespaces, elsewhere without cleanup
//! (`netpolc cleanup` removes the leftovers).
//!
//! Before creating anything the run takes its lease ([`crate::provider::lease`]) and holds it to
//! the end; a run that ends with everything removed gives it back (the lease file goes), one that
//! may have left something keeps the file, so a later `netpolc cleanup` can tell the leftovers
//! belong to a dead run. A run id held by a live run is refused (exit 2); one whose earlier run
//! left its lease behind is refused until `netpolc cleanup --run-id ID` (exit 3).

use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::cni::faults::Fault;
use crate::provider::kind::{self, KindOptions, KindPlatform};
use crate::provider::kubeconfig::{self, KubeconfigOptions, KubeconfigPlatform};
use crate::provider::lease::{self, AcquireError, LeaseDir, RunLease};
use crate::provider::local::{LocalCni, LocalOptions, LocalPlatform};
use crate::provider::{Platform, ProviderError};
use crate::report::model::RunReport;
use crate::report::terminal::{TerminalOptions, TerminalReporter, Verbosity};
use crate::run::{self, Cancel, CancelHandle, RunOptions};
use crate::scenario::Scenario;

use super::{ProviderKind, RunArgs, exit};

const SIGINT: u8 = 2;
const SIGTERM: u8 = 15;

/// Defaults that differ between the local dataplane and real clusters (probe timeout, step
/// timeout), in milliseconds.
fn defaults(provider: ProviderKind) -> (u64, u64) {
    match provider {
        ProviderKind::Local => (1000, 3000),
        ProviderKind::Kind | ProviderKind::Kubeconfig => (3000, 60_000),
    }
}

fn provider_exit(e: &ProviderError, signal: u8) -> u8 {
    match e {
        ProviderError::InvalidInput(m) => {
            eprintln!("error: {m}");
            exit::BAD_INPUT
        }
        ProviderError::Prerequisite(m) => {
            eprintln!("error: missing prerequisite: {m}");
            exit::PREREQUISITE
        }
        ProviderError::Failed(m) => {
            eprintln!("error: provider failed: {m}");
            exit::PREREQUISITE
        }
        ProviderError::Interrupted => {
            eprintln!("interrupted: everything this run created has been removed");
            128 + if signal == 0 { SIGINT } else { signal }
        }
    }
}

/// `NO_COLOR` set to anything non-empty disables colour (no-color.org).
fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn run(args: RunArgs) -> u8 {
    let mut loaded = match super::load_checked(&args.paths) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if args.attempts == 0 {
        eprintln!("error: --attempts must be at least 1");
        return exit::BAD_INPUT;
    }
    // `--probe` replaces each step's probes in the scenarios themselves, so providers serve and
    // probe exactly those ports.
    if !args.probes.is_empty() {
        for s in &mut loaded.scenarios {
            for step in &mut s.steps {
                step.probes = args.probes.clone();
            }
        }
    }
    let mut faults = Vec::new();
    for name in &args.faults {
        match name.parse::<Fault>() {
            Ok(f) => faults.push(f),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::BAD_INPUT;
            }
        }
    }
    if !faults.is_empty() && args.provider != ProviderKind::Local {
        eprintln!("error: --fault works with the local provider only");
        return exit::BAD_INPUT;
    }
    if args.enforce_delay_ms.is_some() && args.provider != ProviderKind::Local {
        eprintln!("error: --enforce-delay-ms works with the local provider only");
        return exit::BAD_INPUT;
    }
    if args.sample == Some(0) {
        eprintln!("error: --sample must be at least 1 cell per step");
        return exit::BAD_INPUT;
    }
    if args.dry_run && args.provider == ProviderKind::Local {
        eprintln!("error: --dry-run applies to the kind and kubeconfig providers");
        return exit::BAD_INPUT;
    }

    let now = SystemTime::now();
    let run_id = match &args.run_id {
        Some(id) => match lease::check_run_id(id) {
            Ok(()) => id.clone(),
            Err(e) => {
                eprintln!(
                    "error: --run-id: {e} (at most 32 lower-case letters, digits and single \
                     dashes, starting and ending with a letter or digit)"
                );
                return exit::BAD_INPUT;
            }
        },
        None => run::new_run_id(now),
    };
    if !args.dry_run
        && let Some(problem) = report_dir_problem(
            &args
                .report_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("reports").join(&run_id)),
        )
    {
        eprintln!(
            "warning: {problem}: the run goes on, but its reports will not be written (exit 3) \
             unless that is fixed before it ends"
        );
    }
    let (probe_ms, step_ms) = defaults(args.provider);
    let delay_ms = args.enforce_delay_ms.unwrap_or(0);
    // A slowly converging dataplane gets its delay on top of the usual step timeout, so the
    // default judges it without extra flags.
    let step_ms = args
        .step_timeout_ms
        .unwrap_or_else(|| step_ms.saturating_add(delay_ms));
    if delay_ms > 0 && step_ms <= delay_ms {
        eprintln!(
            "warning: the step timeout ({step_ms} ms) is not above --enforce-delay-ms \
             ({delay_ms} ms): steps cannot converge before they are judged"
        );
    }
    let opts = RunOptions {
        probes: args.probes.clone(),
        probe_timeout: Duration::from_millis(args.probe_timeout_ms.unwrap_or(probe_ms)),
        step_timeout: Duration::from_millis(step_ms),
        attempts: args.attempts,
        faults: faults.iter().map(|f| f.name().to_string()).collect(),
        sample: args.sample.map(|cells| run::SampleOptions {
            cells,
            seed: args.sample_seed.unwrap_or_else(|| fresh_seed(now)),
        }),
        probe_modes: probe_modes(&args.probe_modes),
        ..RunOptions::new(run_id.clone(), run::rfc3339(now))
    };
    let scenarios = loaded.scenarios;

    // Dry runs touch nothing, so they need no runtime.
    if args.dry_run {
        let plan = match args.provider {
            ProviderKind::Kind => kind::dry_run(
                &scenarios,
                &kind_options(&args, &run_id, opts.probe_timeout, &scenarios),
            ),
            ProviderKind::Kubeconfig => kubeconfig::dry_run(
                &scenarios,
                &kubeconfig_options(&args, &run_id, opts.probe_timeout),
            ),
            ProviderKind::Local => local_has_no_dry_run(),
        };
        return match plan {
            Ok(text) => match super::emit(&text) {
                Ok(()) => exit::OK,
                Err(code) => code,
            },
            Err(e) => provider_exit(&e, 0),
        };
    }

    // The lease comes before anything is created, and lives until everything is removed.
    let lease = match take_lease(&args, &run_id, opts.probe_timeout) {
        Ok(l) => Arc::new(Mutex::new(l)),
        Err(code) => return code,
    };

    let terminal = TerminalOptions {
        verbosity: if args.quiet {
            Verbosity::Quiet
        } else if args.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        },
        color: std::io::stdout().is_terminal() && color_allowed(),
        progress: std::io::stderr().is_terminal(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::PREREQUISITE;
        }
    };
    let signal = Arc::new(AtomicU8::new(0));
    let mut reporter = TerminalReporter::stdio(terminal);
    let outcome = runtime.block_on(async {
        let (handle, cancel) = Cancel::pair();
        // On the local dataplane even a forced exit can afford to remove the run's namespaces
        // (milliseconds), so a double Ctrl-C leaves nothing behind either.
        let force_cleanup = (args.provider == ProviderKind::Local).then(|| run_id.clone());
        watch_signals(handle, signal.clone(), force_cleanup, Arc::clone(&lease));
        match args.provider {
            ProviderKind::Local => match args
                .cni
                .as_deref()
                .unwrap_or("nftables")
                .parse::<LocalCni>()
            {
                Ok(cni) => {
                    let lo = LocalOptions {
                        faults: faults.clone(),
                        enforce_delay: Duration::from_millis(delay_ms),
                        service_nat: opts.probe_modes.iter().any(|m| m.is_service()),
                        ..LocalOptions::new(run_id.clone(), cni)
                    };
                    drive(
                        async move { LocalPlatform::new(lo) },
                        &scenarios,
                        &opts,
                        &mut reporter,
                        &cancel,
                    )
                    .await
                }
                Err(e) => (Err(e), None, false),
            },
            ProviderKind::Kind => {
                drive(
                    KindPlatform::create(kind_options(
                        &args,
                        &run_id,
                        opts.probe_timeout,
                        &scenarios,
                    )),
                    &scenarios,
                    &opts,
                    &mut reporter,
                    &cancel,
                )
                .await
            }
            ProviderKind::Kubeconfig => {
                drive(
                    KubeconfigPlatform::create(kubeconfig_options(
                        &args,
                        &run_id,
                        opts.probe_timeout,
                    )),
                    &scenarios,
                    &opts,
                    &mut reporter,
                    &cancel,
                )
                .await
            }
        }
    });
    // Signal listeners and probe tasks still running must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let sig = signal.load(Ordering::SeqCst);
    if reporter.out_gone() {
        super::mark_stdout_gone();
    }

    let (result, close_error, created) = outcome;
    // Give the lease back only when nothing can be left: the platform was closed cleanly, or was
    // never created because a check refused it before anything existed.
    let clean = match (&result, &close_error, created) {
        (_, Some(_), _) => false,
        (_, None, true) => true,
        (Err(ProviderError::Prerequisite(_) | ProviderError::InvalidInput(_)), None, false) => true,
        (_, None, false) => false,
    };
    if let Some(l) = lease.lock().unwrap_or_else(|p| p.into_inner()).take() {
        if clean { l.release() } else { l.keep() }
    }
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(c) = &close_error {
                eprintln!("error: cleanup failed too: {c} (run `netpolc cleanup`)");
            }
            return provider_exit(&e, sig);
        }
    };
    let dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(&report.run_id));
    report.expected_verdict = Some(args.expect_verdict);
    // The verdict is already printed (the terminal reporter's summary); a report that cannot be
    // written is an environment failure (3), and nothing half-written is left behind.
    if let Err(e) = crate::report::write_dir(&report, &dir) {
        eprintln!(
            "error: the reports were not written: {e}; no partial file was left in {} (the \
             verdict above stands, but there is no report of it)",
            dir.display()
        );
        return exit::PREREQUISITE;
    }
    if let Some(md) = &args.summary_md {
        let text = crate::report::summary::render_markdown(&report);
        if let Err(e) = super::write_whole(md, &text) {
            eprintln!("error: the job summary was not written: {e}");
            return exit::PREREQUISITE;
        }
    }
    if !args.quiet {
        super::say(&format!("reports: {}", dir.display()));
    }
    if let Some(c) = close_error {
        eprintln!("error: cleanup failed: {c} (run `netpolc cleanup`)");
        return exit::PREREQUISITE;
    }
    if report.verdict == args.expect_verdict {
        exit::OK
    } else {
        if !args.quiet {
            eprintln!(
                "verdict {} differs from the expected {}",
                report.verdict, args.expect_verdict
            );
        }
        exit::VERDICT_MISMATCH
    }
}

/// Why reports could not be written into `dir`, checked up front on its nearest existing
/// ancestor (a temporary file is created and removed there) so a long run does not discover it
/// at the end. Nothing is created when the check passes.
fn report_dir_problem(dir: &std::path::Path) -> Option<String> {
    let mut probe = Some(dir);
    while let Some(p) = probe {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                return tempfile::tempfile_in(p)
                    .err()
                    .map(|e| format!("cannot write into {}: {e}", p.display()));
            }
            Ok(_) => return Some(format!("{} is not a directory", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => probe = p.parent(),
            Err(e) => return Some(format!("cannot use {}: {e}", p.display())),
        }
        if probe.is_some_and(|p| p.as_os_str().is_empty()) {
            probe = Some(std::path::Path::new("."));
        }
    }
    None
}

/// A sample seed for runs that name none: the clock and the process id (recorded in the report,
/// so the sample can be drawn again with `--sample-seed`).
fn fresh_seed(now: SystemTime) -> u64 {
    let d = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut rng = run::sample::SplitMix::new(
        (d.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32),
    );
    // Keep seeds in JSON's exact integer range so every reader round-trips them.
    rng.next_u64() >> 11
}

/// `--probe-mode`s in the order given, each once; none given: pod-ip.
fn probe_modes(given: &[crate::service::ProbeMode]) -> Vec<crate::service::ProbeMode> {
    let mut out = Vec::new();
    for m in given {
        if !out.contains(m) {
            out.push(*m);
        }
    }
    if out.is_empty() {
        out.push(crate::service::ProbeMode::PodIp);
    }
    out
}

fn local_has_no_dry_run() -> Result<String, ProviderError> {
    Err(ProviderError::InvalidInput(
        "--dry-run applies to the kind and kubeconfig providers".into(),
    ))
}

/// Takes the run's lease ([`lease_for`]). A local run whose id already names namespaces (left by
/// a run that never took a lease) is refused too: it must never adopt another's namespaces.
fn take_lease(
    args: &RunArgs,
    run_id: &str,
    probe_timeout: Duration,
) -> Result<Option<RunLease>, u8> {
    let target = match args.provider {
        ProviderKind::Local => None,
        ProviderKind::Kind => Some(kind_options(args, run_id, probe_timeout, &[]).cluster_name()),
        ProviderKind::Kubeconfig => args.context.clone(),
    };
    lease_for(args.provider, run_id, target)
}

/// The lease of a run on `provider` (any command that creates objects takes one the same way):
/// `Err` holds the exit status, the reason printed; `None` for a local run without root, which
/// stops before creating anything (the user hears about root, not about lease files).
pub(crate) fn lease_for(
    provider: ProviderKind,
    run_id: &str,
    target: Option<String>,
) -> Result<Option<RunLease>, u8> {
    if provider == ProviderKind::Local && !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let name = match provider {
        ProviderKind::Local => "local",
        ProviderKind::Kind => "kind",
        ProviderKind::Kubeconfig => "kubeconfig",
    };
    let lease = match RunLease::acquire(&LeaseDir::default_for_user(), run_id, name, target) {
        Ok(l) => l,
        Err(e @ AcquireError::InUse { .. }) => {
            eprintln!("error: {e}; pick another --run-id");
            return Err(exit::BAD_INPUT);
        }
        Err(e @ AcquireError::Leftover { .. }) => {
            eprintln!("error: {e}");
            return Err(exit::PREREQUISITE);
        }
        Err(AcquireError::Io(m)) => {
            eprintln!("error: cannot take the run's lease: {m}");
            return Err(exit::PREREQUISITE);
        }
    };
    if provider == ProviderKind::Local
        && let Ok(existing) = crate::provider::local::run_netns(run_id)
        && !existing.is_empty()
    {
        eprintln!(
            "error: network namespaces of run id {run_id} already exist ({}): left by a run that \
             held no lease; `netpolc cleanup --run-id {run_id}` removes them, or pick another \
             --run-id",
            existing.join(", ")
        );
        lease.release();
        return Err(exit::PREREQUISITE);
    }
    Ok(Some(lease))
}

/// Kind settings for this run; the external peers to start come from the scenarios.
fn kind_options(
    args: &RunArgs,
    run_id: &str,
    probe_timeout: Duration,
    scenarios: &[Scenario],
) -> KindOptions {
    KindOptions {
        keep_cluster: args.keep_cluster,
        probe_timeout,
        externals: kind::external::wanted(scenarios),
        probe_modes: probe_modes(&args.probe_modes),
        ..KindOptions::new(run_id, args.cni.clone().unwrap_or_else(|| "kindnet".into()))
    }
}

fn kubeconfig_options(args: &RunArgs, run_id: &str, probe_timeout: Duration) -> KubeconfigOptions {
    KubeconfigOptions {
        probe_timeout,
        probe_modes: probe_modes(&args.probe_modes),
        ..KubeconfigOptions::new(run_id, args.context.clone())
    }
}

/// First SIGINT/SIGTERM: record it and cancel the run (teardown follows). Second: exit at once,
/// after removing the run's network namespaces when `local_run_id` names a local run (then the
/// lease is given back if nothing is left; otherwise its file stays for `netpolc cleanup`).
fn watch_signals(
    handle: CancelHandle,
    signal: Arc<AtomicU8>,
    local_run_id: Option<String>,
    lease: Arc<Mutex<Option<RunLease>>>,
) {
    use tokio::signal::unix::{SignalKind, signal as listen};
    let (Ok(mut int), Ok(mut term)) = (
        listen(SignalKind::interrupt()),
        listen(SignalKind::terminate()),
    ) else {
        eprintln!("warning: cannot listen for signals; Ctrl-C may leave resources behind");
        return;
    };
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = int.recv() => SIGINT,
            _ = term.recv() => SIGTERM,
        };
        signal.store(first, Ordering::SeqCst);
        eprintln!(
            "\nstopping: removing everything this run created (signal again to exit at once)"
        );
        handle.cancel();
        let second = tokio::select! {
            _ = int.recv() => SIGINT,
            _ = term.recv() => SIGTERM,
        };
        let held = lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        match local_run_id {
            Some(id) => {
                let clean = force_local_cleanup(&id);
                if let Some(l) = held {
                    if clean { l.release() } else { l.keep() }
                }
                eprintln!("exiting at once; this run's network namespaces were removed");
            }
            None => {
                if let Some(l) = held {
                    l.keep();
                }
                eprintln!("exiting without cleanup; `netpolc cleanup` removes the leftovers")
            }
        }
        std::process::exit(128 + i32::from(second));
    });
}

/// Removes a local run's namespaces while its tasks may still be creating some: `ip` processes
/// already started finish after we stop waiting for them, so wait (at most 3 s) until this
/// process has no children left, then sweep what the run recorded until nothing more appears.
/// Returns whether nothing is left.
fn force_local_cleanup(run_id: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while has_children() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    match crate::provider::local::remove_recorded(run_id) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("error: {e} (run `netpolc cleanup`)");
            false
        }
    }
}

/// Whether any process has this one as its parent.
fn has_children() -> bool {
    let me = std::process::id().to_string();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|e| {
            std::fs::read_to_string(e.path().join("stat")).is_ok_and(|stat| {
                stat.rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().nth(1).map(|p| p == me))
                    .unwrap_or(false)
            })
        })
}

/// Creates the platform, runs, and always closes it. Returns the run's result and, separately, a
/// failure to close (reported after the reports are written).
async fn drive<P: Platform>(
    create: impl Future<Output = Result<P, ProviderError>>,
    scenarios: &[Scenario],
    opts: &RunOptions,
    reporter: &mut TerminalReporter,
    cancel: &Cancel,
) -> (
    Result<RunReport, ProviderError>,
    Option<ProviderError>,
    bool,
) {
    // Not raced against signals: abandoning a half-made platform could leak it. Cancellation is
    // honoured as soon as creation returns.
    let platform = match create.await {
        Ok(p) => p,
        Err(e) => return (Err(e), None, false),
    };
    let result = if cancel.is_cancelled() {
        Err(ProviderError::Interrupted)
    } else {
        run::execute(&platform, scenarios, opts, reporter, cancel).await
    };
    let closed = platform.close().await.err();
    (result, closed, true)
}
