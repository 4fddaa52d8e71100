//! `netpolc check`: the seconds-long enforcement check (see [`crate::audit::check`]).
//!
//! Exit statuses: 0 enforcing, 1 ignoring NetworkPolicy, 2 usage, 3 cannot tell (the cluster is
//! unreachable, the pods never became ready, the allowed probe failed too, or cleanup failed);
//! 130/143 after Ctrl-C or SIGTERM, once everything the check created is removed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use clap::{Args, ValueEnum};

use crate::audit::check::{self, CheckResult, CheckVerdict};
use crate::provider::kubeconfig::{self, KubeconfigOptions, KubeconfigPlatform};
use crate::provider::lease;
use crate::provider::local::{LocalCni, LocalOptions, LocalPlatform};
use crate::provider::{Platform, PlatformInfo, ProviderError};
use crate::report::model::RunReport;
use crate::run::{self, Cancel, CancelHandle, NullReporter, RunOptions};
use crate::scenario::Scenario;

use super::{Format, ProviderKind, emit, exit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckProvider {
    /// An existing cluster through kubeconfig (the point of the check).
    Kubeconfig,
    /// The local dataplane (root; shows what each answer looks like: `--cni none` ignores).
    Local,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, value_enum, default_value = "kubeconfig")]
    pub provider: CheckProvider,
    /// kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Local provider only: `nftables` (enforces) or `none` (ignores).
    #[arg(long)]
    pub cni: Option<String>,
    /// Names the throwaway namespace (`netpolc-<run-id>--0-check`) and labels it (default: fresh).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Per-probe timeout in milliseconds (default: 3000 on clusters, 1000 locally).
    #[arg(long)]
    pub probe_timeout_ms: Option<u64>,
    /// How long the deny policy may take to be enforced, in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    pub step_timeout_ms: u64,
    /// How long the two pods may take to become ready, in seconds.
    #[arg(long, default_value_t = 120)]
    pub ready_timeout_s: u64,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Print the objects and probes as YAML and exit, touching nothing (kubeconfig only).
    #[arg(long)]
    pub dry_run: bool,
}

/// Prints the result; `Err` carries the exit status when stdout failed other than by closing
/// (a closed stdout keeps the check's own status).
fn print(result: &CheckResult, format: Format) -> Result<(), u8> {
    match format {
        Format::Table => emit(&check::render_text(result)),
        Format::Json => match serde_json::to_string_pretty(result) {
            Ok(s) => emit(&format!("{s}\n")),
            Err(e) => {
                eprintln!("error: {e}");
                Err(exit::PREREQUISITE)
            }
        },
    }
}

pub fn run(args: CheckArgs) -> u8 {
    let run_id = match &args.run_id {
        Some(id) => match lease::check_run_id(id) {
            Ok(()) => id.clone(),
            Err(e) => {
                eprintln!("error: --run-id: {e}");
                return exit::BAD_INPUT;
            }
        },
        None => format!("check-{}", run::new_run_id(SystemTime::now())),
    };
    if args.provider == CheckProvider::Kubeconfig && args.cni.is_some() {
        eprintln!("error: --cni applies to --provider local only (a cluster's CNI is detected)");
        return exit::BAD_INPUT;
    }
    let scenario = match check::scenario() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::PREREQUISITE;
        }
    };
    let local = args.provider == CheckProvider::Local;
    let probe_timeout =
        Duration::from_millis(
            args.probe_timeout_ms
                .unwrap_or(if local { 1000 } else { 3000 }),
        );
    let kopts = KubeconfigOptions {
        probe_timeout,
        ready_timeout: Duration::from_secs(args.ready_timeout_s),
        ..KubeconfigOptions::new(&run_id, args.context.clone())
    };
    if args.dry_run {
        if local {
            eprintln!("error: --dry-run applies to --provider kubeconfig");
            return exit::BAD_INPUT;
        }
        return match kubeconfig::dry_run(std::slice::from_ref(&scenario), &kopts) {
            Ok(text) => match emit(&text) {
                Ok(()) => exit::OK,
                Err(code) => code,
            },
            Err(e) => {
                eprintln!("error: {e}");
                exit::PREREQUISITE
            }
        };
    }
    let lopts = if local {
        match args
            .cni
            .as_deref()
            .unwrap_or("nftables")
            .parse::<LocalCni>()
        {
            Ok(cni) => Some(LocalOptions::new(run_id.clone(), cni)),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::BAD_INPUT;
            }
        }
    } else {
        None
    };
    let opts = RunOptions {
        probe_timeout,
        step_timeout: Duration::from_millis(args.step_timeout_ms),
        attempts: 2,
        ..RunOptions::new(run_id.clone(), run::rfc3339(SystemTime::now()))
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
    // Like `run`: the lease comes before anything is created and is given back only when
    // nothing is left, so `netpolc cleanup` can tell this check's leftovers from a live check.
    let (provider, target) = if local {
        (ProviderKind::Local, None)
    } else {
        (ProviderKind::Kubeconfig, args.context.clone())
    };
    let lease = match super::run::lease_for(provider, &run_id, target) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let signal = Arc::new(AtomicU8::new(0));
    let (result, close_error, info) = runtime.block_on(async {
        let (handle, cancel) = Cancel::pair();
        watch_signals(handle, signal.clone(), run_id.clone(), local);
        match lopts {
            Some(lo) => {
                drive(
                    async move { LocalPlatform::new(lo) },
                    &scenario,
                    &opts,
                    &cancel,
                )
                .await
            }
            None => drive(KubeconfigPlatform::create(kopts), &scenario, &opts, &cancel).await,
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(l) = lease {
        if close_error.is_none() {
            l.release();
        } else {
            l.keep();
        }
    }
    let sig = signal.load(Ordering::SeqCst);
    let evidence = info
        .as_ref()
        .and_then(|i| i.environment.get("cni_evidence").cloned());
    let mut outcome = match &result {
        Ok(report) => check::judge(report, evidence),
        Err(ProviderError::Interrupted) => {
            eprintln!("interrupted: everything this check created has been removed");
            return 128 + if sig == 0 { 2 } else { sig };
        }
        Err(e) => {
            let mut r = check::judge_error(e, info.as_ref().map_or("unknown", |i| i.cni.as_str()));
            r.cni_evidence = evidence;
            r
        }
    };
    let mut code = outcome.verdict.exit_code();
    if let Some(c) = close_error {
        outcome.notes.push(format!(
            "cleanup failed: {c}; remove what is left with `{}`",
            leftover_hint(local, &run_id)
        ));
        if outcome.verdict == CheckVerdict::Enforcing {
            code = exit::PREREQUISITE;
        }
    }
    match print(&outcome, args.format) {
        // The check's verdict went nowhere: a clean status would claim a result nobody saw.
        Err(c) if code == exit::OK => c,
        _ => code,
    }
}

/// How to remove what an interrupted or failed check left: everything it creates carries its run
/// id and its lease, so `netpolc cleanup` finds it locally and on the cluster.
fn leftover_hint(local: bool, run_id: &str) -> String {
    if local {
        format!("netpolc cleanup --run-id {run_id}")
    } else {
        format!("netpolc cleanup --provider kubeconfig --run-id {run_id}")
    }
}

/// First SIGINT/SIGTERM cancels (the engine tears down, the platform sweeps the run's
/// namespaces); a second exits at once and says how to clean up.
fn watch_signals(handle: CancelHandle, signal: Arc<AtomicU8>, run_id: String, local: bool) {
    use tokio::signal::unix::{SignalKind, signal as listen};
    let (Ok(mut int), Ok(mut term)) = (
        listen(SignalKind::interrupt()),
        listen(SignalKind::terminate()),
    ) else {
        eprintln!(
            "warning: cannot listen for signals; Ctrl-C may leave the check's namespace behind"
        );
        return;
    };
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = int.recv() => 2,
            _ = term.recv() => 15,
        };
        signal.store(first, Ordering::SeqCst);
        eprintln!("\nstopping: removing the check's namespace (signal again to exit at once)");
        handle.cancel();
        let second = tokio::select! {
            _ = int.recv() => 2,
            _ = term.recv() => 15,
        };
        eprintln!(
            "exiting without cleanup; `{}` removes what is left",
            leftover_hint(local, &run_id)
        );
        std::process::exit(128 + second);
    });
}

/// Creates the platform, runs the check's scenario, and always closes the platform. Returns the
/// run's result, a failure to close, and what the platform detected (CNI and its evidence).
async fn drive<P: Platform>(
    create: impl Future<Output = Result<P, ProviderError>>,
    scenario: &Scenario,
    opts: &RunOptions,
    cancel: &Cancel,
) -> (
    Result<RunReport, ProviderError>,
    Option<ProviderError>,
    Option<PlatformInfo>,
) {
    let platform = match create.await {
        Ok(p) => p,
        Err(e) => return (Err(e), None, None),
    };
    let result = if cancel.is_cancelled() {
        Err(ProviderError::Interrupted)
    } else {
        let mut reporter = NullReporter;
        run::execute(
            &platform,
            std::slice::from_ref(scenario),
            opts,
            &mut reporter,
            cancel,
        )
        .await
    };
    let closed = platform.close().await.err();
    (result, closed, Some(platform.info()))
}
