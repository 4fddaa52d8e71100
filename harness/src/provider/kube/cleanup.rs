//! The I/O around cluster leases and cleanup (the decisions are pure functions in
//! [`crate::provider::lease::cluster`]): renewing a live run's namespace leases, deleting what a
//! run recorded, and `netpolc cleanup` on the cluster of a kubeconfig context.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Namespace as K8sNamespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::config::KubeConfigOptions;
use kube::{Api, Client};

use crate::cni::catalogue::RUN_ID_LABEL;
use crate::provider::ProviderError;
use crate::provider::cleanup::{Report, Target};
use crate::provider::lease::cluster::{
    self, NamespaceFacts, Ownership, RENEW_EVERY, RENEWED_ANNOTATION,
};
use crate::provider::lease::{self, Inspection, LeaseDir, ThisMachine};

/// Bound on every API call cleanup makes (a dead context must not hang the command).
const CALL: Duration = Duration::from_secs(20);

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Why a bounded API call failed.
enum CallError {
    NotFound,
    Other(String),
}

impl CallError {
    fn into_provider(self, what: &str) -> ProviderError {
        match self {
            CallError::NotFound => ProviderError::Failed(format!("{what}: not found")),
            CallError::Other(m) => ProviderError::Failed(format!("{what}: {m}")),
        }
    }
}

async fn call<T>(f: impl Future<Output = Result<T, kube::Error>>) -> Result<T, CallError> {
    match tokio::time::timeout(CALL, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if is_not_found(&e) => Err(CallError::NotFound),
        Ok(Err(e)) => Err(CallError::Other(e.to_string())),
        Err(_) => Err(CallError::Other(format!(
            "no answer within {}s",
            CALL.as_secs()
        ))),
    }
}

/// Renews the lease on every namespace `own` recorded, every [`RENEW_EVERY`], until aborted. A
/// failed renewal is said once on stderr: past [`cluster::LEASE_SECONDS`] without one, a cleanup
/// on another machine would take the run for dead.
pub async fn renew_forever(client: Client, own: Arc<Ownership>) {
    let api: Api<K8sNamespace> = Api::all(client);
    let mut warned = false;
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        for name in own.recorded() {
            let patch = serde_json::json!({"metadata": {"annotations": {
                RENEWED_ANNOTATION: lease::rfc3339(SystemTime::now()),
            }}});
            match call(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))).await {
                Ok(_) => {}
                Err(CallError::NotFound) => own.forget(&name),
                Err(CallError::Other(m)) if !warned => {
                    warned = true;
                    eprintln!(
                        "warning: renewing the lease of namespace {name}: {m} (a cleanup \
                         elsewhere may take this run for dead)"
                    );
                }
                Err(CallError::Other(_)) => {}
            }
        }
    }
}

/// Deletes the namespaces `own` recorded that still exist and carry exactly this run's label.
pub async fn delete_recorded(
    client: &Client,
    own: &Ownership,
    run: &str,
) -> Result<(), ProviderError> {
    let api: Api<K8sNamespace> = Api::all(client.clone());
    let mut errors = Vec::new();
    for name in own.recorded() {
        let ns = match call(api.get(&name)).await {
            Ok(ns) => ns,
            Err(CallError::NotFound) => {
                own.forget(&name);
                continue;
            }
            Err(CallError::Other(m)) => {
                errors.push(format!("{name}: {m}"));
                continue;
            }
        };
        let facts = NamespaceFacts::from_k8s(&ns);
        if facts.run.as_deref() != Some(run) {
            errors.push(format!("{name}: not labelled as run {run}'s, left alone"));
            continue;
        }
        if facts.terminating {
            own.forget(&name);
            continue;
        }
        match call(api.delete(&name, &DeleteParams::background())).await {
            Ok(_) | Err(CallError::NotFound) => own.forget(&name),
            Err(CallError::Other(m)) => errors.push(format!("{name}: {m}")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ProviderError::Failed(format!(
            "deleting namespaces: {}",
            errors.join("; ")
        )))
    }
}

/// Namespaces labelled with exactly run `run`'s id, already on the cluster before the run
/// starts: another run uses the id, or an earlier one left them.
pub async fn existing_of_run(client: &Client, run: &str) -> Result<Vec<String>, ProviderError> {
    Ok(list(client, Some(run))
        .await?
        .into_iter()
        .map(|f| f.name)
        .collect())
}

async fn list(client: &Client, run: Option<&str>) -> Result<Vec<NamespaceFacts>, ProviderError> {
    let api: Api<K8sNamespace> = Api::all(client.clone());
    let selector = match run {
        Some(r) => format!("{RUN_ID_LABEL}={r}"),
        None => RUN_ID_LABEL.to_string(),
    };
    let l = call(api.list(&ListParams::default().labels(&selector)))
        .await
        .map_err(|e| e.into_provider("listing netpolc namespaces"))?;
    Ok(l.items.iter().map(NamespaceFacts::from_k8s).collect())
}

/// A client for `context` (default: the current one). `Prerequisite` when there is no kubeconfig.
pub async fn client_for_context(context: Option<&str>) -> Result<(Client, String), ProviderError> {
    crate::provider::kind::install_crypto_provider();
    let kopts = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let cfg = kube::Config::from_kubeconfig(&kopts).await.map_err(|e| {
        ProviderError::Prerequisite(format!(
            "no usable kubeconfig{}: {e}",
            context
                .map(|c| format!(" context {c:?}"))
                .unwrap_or_default()
        ))
    })?;
    let url = cfg.cluster_url.to_string();
    let client =
        Client::try_from(cfg).map_err(|e| ProviderError::Failed(format!("kube client: {e}")))?;
    Ok((client, url))
}

/// Watching for namespaces a dead run's in-flight requests may still create.
const RESCAN_EVERY: Duration = Duration::from_secs(2);
const RESCAN_QUIET: u32 = 2;
const RESCAN_BOUND: Duration = Duration::from_secs(30);

/// Deletes the namespaces of dead runs (or of run `target` exactly) on the cluster of `context`,
/// re-listing until a scan finds nothing new of the runs it judged dead. Lease files of dead
/// kubeconfig runs on this machine go once the cluster holds nothing more of them.
pub async fn cleanup(
    target: &Target,
    context: Option<&str>,
    leases: &LeaseDir,
) -> Result<Report, ProviderError> {
    let (client, url) = client_for_context(context).await?;
    let procs = ThisMachine::new();
    let run_filter = match target {
        Target::Run(r) => Some(r.as_str()),
        Target::DeadRuns => None,
    };
    let api: Api<K8sNamespace> = Api::all(client.clone());
    let mut report = Report::default();
    let mut deleted: Vec<String> = Vec::new();
    let mut dead_runs: Vec<String> = Vec::new();
    let mut first = true;
    let mut quiet = 0;
    let deadline = Instant::now() + RESCAN_BOUND;
    loop {
        let facts = list(&client, run_filter).await?;
        let plan = cluster::plan_cleanup(&facts, target, SystemTime::now(), &procs);
        if first {
            for l in &plan.left {
                report.left.push(format!(
                    "run {} ({} namespace{} on {url}): {}",
                    l.run,
                    l.names.len(),
                    if l.names.len() == 1 { "" } else { "s" },
                    l.why
                ));
            }
            for t in &plan.terminating {
                report
                    .notes
                    .push(format!("namespace {t} on {url} is already being deleted"));
            }
            first = false;
        }
        let fresh: Vec<(String, String)> = plan
            .delete
            .into_iter()
            .filter(|(n, _)| !deleted.contains(n))
            .collect();
        if fresh.is_empty() {
            quiet += 1;
            if quiet >= RESCAN_QUIET || dead_runs.is_empty() || Instant::now() >= deadline {
                break;
            }
        } else {
            quiet = 0;
            for (name, run) in fresh {
                match call(api.delete(&name, &DeleteParams::background())).await {
                    Ok(_) => report
                        .removed
                        .push(format!("namespace {name} on {url} (run {run})")),
                    Err(CallError::NotFound) => {}
                    Err(CallError::Other(m)) => report
                        .errors
                        .push(format!("deleting namespace {name}: {m}")),
                }
                deleted.push(name);
                if !dead_runs.contains(&run) {
                    dead_runs.push(run);
                }
            }
        }
        tokio::time::sleep(RESCAN_EVERY).await;
    }
    // This machine's lease files of dead kubeconfig runs with nothing left on this cluster.
    let left_runs = list(&client, run_filter).await?;
    for run in leases.runs().map_err(ProviderError::Failed)? {
        if !target.includes(&run) {
            continue;
        }
        if let Ok(Inspection::Dead(claim)) = lease::inspect(leases, &run, Duration::ZERO, &procs) {
            let ours = claim
                .record
                .as_ref()
                .is_some_and(|r| r.provider == "kubeconfig");
            let remaining = left_runs
                .iter()
                .any(|f| f.run.as_deref() == Some(run.as_str()) && !f.terminating);
            if ours && !remaining {
                report.removed.push(format!(
                    "lease of run {run} (nothing of it left on {url}: {})",
                    claim.why
                ));
                claim.finish();
            }
        }
    }
    Ok(report)
}
