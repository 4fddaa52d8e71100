//! `netpolc audit`: what the policies of an existing cluster (or of a dump) allow, per workload,
//! with a summary of what is exposed; with `--probe`, what the cluster really does.
//!
//! Exit statuses: 0 on success (with `--probe`: the cluster enforces what was probed); 1 with
//! `--probe` when the cluster's behaviour differs from its policies (ignores them, or enforces
//! them only in part); 2 bad input or usage (including `--probe` without
//! `--accept-ephemeral-containers` or `--dry-run`); 3 when the cluster is unreachable, access is
//! denied, or `--probe` could not tell.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::audit::analysis::Analysis;
use crate::audit::live;
use crate::audit::probe::{self, ProbeLimits, ProbeVerdict};
use crate::audit::report::{AuditReport, CniView, SourceInfo, render_html, render_text};
use crate::audit::snapshot::Snapshot;
use crate::cni::catalogue::Catalogue;
use crate::model::{PodRef, Probe};
use crate::provider::ProviderError;
use crate::provider::kubeconfig::{self, DetectedCni};
use crate::run::Cancel;

use super::{Format, emit, exit};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Audit files or a dump (`kubectl get … -o yaml`) instead of a cluster; touches no cluster.
    #[arg(long = "input", value_name = "PATH", conflicts_with_all = ["context", "probe", "save_dump"])]
    pub inputs: Vec<PathBuf>,
    /// With --input: the scenario step to audit (default: the last).
    #[arg(long, requires = "inputs")]
    pub step: Option<String>,
    /// kubeconfig context (default: the current one; KUBECONFIG is honoured).
    #[arg(long)]
    pub context: Option<String>,
    /// Ports to evaluate, PORT/PROTO (repeatable; default: every port a pod declares).
    #[arg(long = "port", value_name = "PORT/PROTO")]
    pub ports: Vec<Probe>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also write a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write what was read from the cluster as a dump file (`expect`, `explain` and `what-if`
    /// read it and give the same answers).
    #[arg(long, value_name = "FILE")]
    pub save_dump: Option<PathBuf>,
    /// Probe real pods through ephemeral containers (opt-in; needs pods/ephemeralcontainers patch,
    /// pods/log get, pods get). Ephemeral containers cannot be removed afterwards.
    #[arg(long)]
    pub probe: bool,
    /// With --probe: acknowledge that an ephemeral container is added to one pod per workload
    /// and stays in its spec until the pod is replaced.
    #[arg(long, requires = "probe")]
    pub accept_ephemeral_containers: bool,
    /// With --probe: print what would be added and probed, change nothing.
    #[arg(long, requires = "probe")]
    pub dry_run: bool,
    /// With --probe: at most this many pods get an ephemeral container (one per workload).
    #[arg(long, default_value_t = ProbeLimits::default().max_pods)]
    pub max_pods: usize,
    /// With --probe: at most this many connection attempts in total.
    #[arg(long, default_value_t = ProbeLimits::default().max_probes)]
    pub max_probes: usize,
    /// With --probe: at most this many connection attempts started per second.
    #[arg(long, default_value_t = ProbeLimits::default().rate_per_second)]
    pub probe_rate: u32,
    /// With --probe: per-connection timeout in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub probe_timeout_ms: u64,
    /// With --probe: the probe image (default: the catalogue's pinned agnhost).
    #[arg(long)]
    pub probe_image: Option<String>,
    /// With --probe: names the ephemeral container (`netpolc-probe-<run-id>`; default: fresh).
    #[arg(long)]
    pub run_id: Option<String>,
}

fn provider_exit(e: &ProviderError) -> u8 {
    eprintln!("error: {e}");
    match e {
        ProviderError::InvalidInput(_) => exit::BAD_INPUT,
        _ => exit::PREREQUISITE,
    }
}

fn cni_view(d: &DetectedCni) -> CniView {
    CniView {
        name: d.name.clone(),
        enforces: d.enforces,
        evidence: d.evidence.clone(),
    }
}

fn cni_warning(d: &DetectedCni) -> Option<String> {
    match d.enforces {
        Some(false) => Some(format!(
            "the detected CNI {} does not enforce NetworkPolicy ({}): what follows is what your \
             policies say, not what the cluster does (`netpolc check` shows it in seconds)",
            d.name, d.evidence
        )),
        None => Some(format!(
            "cannot tell whether the detected CNI {} enforces NetworkPolicy ({}); `netpolc check` \
             answers it",
            d.name, d.evidence
        )),
        Some(true) => None,
    }
}

fn output(report: &AuditReport, args: &AuditArgs) -> u8 {
    if let Some(path) = &args.html
        && let Err(e) = super::write_whole(path, &render_html(report))
    {
        eprintln!("error: {e}");
        return exit::PREREQUISITE;
    }
    let written = match args.format {
        Format::Json => match serde_json::to_string_pretty(report) {
            Ok(s) => emit(&format!("{s}\n")),
            Err(e) => {
                eprintln!("error: cannot serialise the audit: {e}");
                return exit::PREREQUISITE;
            }
        },
        Format::Table => emit(&render_text(report)),
    };
    match written {
        Ok(()) => exit::OK,
        Err(code) => code,
    }
}

pub fn run(args: AuditArgs) -> u8 {
    if args.probe && (args.max_pods == 0 || args.max_probes == 0 || args.probe_rate == 0) {
        eprintln!("error: --max-pods, --max-probes and --probe-rate must be at least 1");
        return exit::BAD_INPUT;
    }
    if !args.inputs.is_empty() {
        return run_offline(&args);
    }
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
    let code = runtime.block_on(run_live(&args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// `--input`: the same analysis on files, through the same loader as `expect`.
fn run_offline(args: &AuditArgs) -> u8 {
    let loaded = match super::load_checked(&args.inputs) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let [scenario] = loaded.scenarios.as_slice() else {
        eprintln!(
            "error: audit reads one state; the inputs hold {} scenarios (give one dump or \
             manifest file)",
            loaded.scenarios.len()
        );
        return exit::BAD_INPUT;
    };
    let step = match &args.step {
        Some(name) => scenario.steps.iter().find(|s| &s.name == name),
        None => scenario.steps.last(),
    };
    let Some(step) = step else {
        eprintln!(
            "error: no step {:?} in scenario {}",
            args.step.clone().unwrap_or_default(),
            scenario.name
        );
        return exit::BAD_INPUT;
    };
    let a = Analysis::new(&step.model, &step.policies, &BTreeMap::new(), &args.ports);
    let report = AuditReport::build(
        &a,
        SourceInfo {
            kind: "files".into(),
            name: scenario.source.clone(),
            step: Some(step.name.clone()),
            kubernetes_version: None,
        },
        None,
        Vec::new(),
        Vec::new(),
    );
    output(&report, args)
}

async fn run_live(args: &AuditArgs) -> u8 {
    let (client, version) = match kubeconfig::connect(args.context.as_deref()).await {
        Ok(c) => c,
        Err(e) => return provider_exit(&e),
    };
    let detected = kubeconfig::detect_cluster_cni(&client).await;
    let (snapshot, mut warnings) = match live::list_snapshot(&client).await {
        Ok(s) => s,
        Err(e) => return provider_exit(&e),
    };
    let context = args
        .context
        .clone()
        .unwrap_or_else(|| "(current context)".into());
    let loaded = match snapshot.load(&format!("cluster:{context}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: the cluster's objects could not be read as a dump:");
            for err in &e.0 {
                eprintln!("  {err}");
            }
            return exit::PREREQUISITE;
        }
    };
    super::print_warnings(&loaded.warnings);
    if let Some(path) = &args.save_dump
        && let Err(e) = super::write_whole(path, &snapshot.dump_text())
    {
        eprintln!("error: {e}");
        return exit::PREREQUISITE;
    }
    let Some(step) = loaded.scenarios.first().and_then(|s| s.steps.first()) else {
        eprintln!("error: the cluster's objects gave no state to audit");
        return exit::PREREQUISITE;
    };
    let owners = snapshot.owners();
    let a = Analysis::new(&step.model, &step.policies, &owners, &args.ports);
    warnings.extend(cni_warning(&detected));
    let mut report = AuditReport::build(
        &a,
        SourceInfo {
            kind: "cluster".into(),
            name: context,
            step: None,
            kubernetes_version: Some(version),
        },
        Some(cni_view(&detected)),
        snapshot.excluded(),
        warnings,
    );
    let mut code = exit::OK;
    if args.probe {
        match probe_cluster(args, &client, &snapshot, &a).await {
            ProbeStep::DryRun(text) => {
                return match emit(&text) {
                    Ok(()) => exit::OK,
                    Err(code) => code,
                };
            }
            ProbeStep::Refused(code) => return code,
            ProbeStep::Done(outcome, interrupted) => {
                code = match outcome.verdict {
                    ProbeVerdict::Enforcing => exit::OK,
                    ProbeVerdict::IgnoresPolicies | ProbeVerdict::PartiallyEnforced => {
                        exit::VERDICT_MISMATCH
                    }
                    ProbeVerdict::CannotTell => exit::PREREQUISITE,
                };
                report.observed = Some(outcome);
                if interrupted {
                    code = 130;
                }
            }
        }
    }
    match output(&report, args) {
        exit::OK => code,
        other => other,
    }
}

enum ProbeStep {
    DryRun(String),
    Refused(u8),
    /// The outcome, and whether a signal cut it short.
    Done(probe::ProbeOutcome, bool),
}

async fn probe_cluster(
    args: &AuditArgs,
    client: &kube::Client,
    snapshot: &Snapshot,
    a: &Analysis<'_>,
) -> ProbeStep {
    let image = match &args.probe_image {
        Some(i) => i.clone(),
        None => match Catalogue::builtin() {
            Ok(c) => c.probe_image.reference(),
            Err(e) => {
                eprintln!("error: {e}");
                return ProbeStep::Refused(exit::PREREQUISITE);
            }
        },
    };
    let run_id = match &args.run_id {
        Some(id) => id.clone(),
        None => crate::run::new_run_id(std::time::SystemTime::now()),
    };
    let eligibility: BTreeMap<PodRef, Option<String>> = snapshot
        .included_pods()
        .map(|p| {
            (
                PodRef::new(
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default(),
                ),
                probe::source_ineligible(p),
            )
        })
        .collect();
    let limits = ProbeLimits {
        max_pods: args.max_pods,
        max_probes: args.max_probes,
        rate_per_second: args.probe_rate,
        timeout: Duration::from_millis(args.probe_timeout_ms),
    };
    let plan = probe::plan(
        a,
        &eligibility,
        limits,
        probe::container_name(&run_id),
        image,
    );
    if args.dry_run {
        return ProbeStep::DryRun(probe::render_plan(&plan));
    }
    if !args.accept_ephemeral_containers {
        eprintln!("{}", probe::disclosure(&plan));
        eprintln!(
            "error: refusing to probe without --accept-ephemeral-containers (or see the plan first \
             with --dry-run)"
        );
        return ProbeStep::Refused(exit::BAD_INPUT);
    }
    eprintln!("{}", probe::disclosure(&plan));
    let (handle, cancel) = Cancel::pair();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping after the current pod (its probe container finishes by itself)");
            handle.cancel();
        }
    });
    let results = live::run_probes(client, &plan, &cancel).await;
    let interrupted = cancel.is_cancelled();
    watcher.abort();
    ProbeStep::Done(probe::judge(&plan, &results), interrupted)
}
