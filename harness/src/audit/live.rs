//! The only part of the audit that talks to a cluster.
//!
//! - [`list_snapshot`]: read-only. Lists namespaces, pods and NetworkPolicies (required) and the
//!   workload kinds whose names the owner chains need (optional: without them, names come from
//!   the controllers' labels). Paginated, so large clusters are read in pages of 500.
//! - [`run_probes`]: only with `audit --probe` and its acknowledgement. Per source pod, one
//!   strategic-merge patch of the `ephemeralcontainers` subresource (the container runs the
//!   probe script and exits), polling the pod until that container terminated, and one read of its
//!   log. Sources run one at a time, so `--probe-rate` bounds the whole run.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod, ReplicationController};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::probe::{self, ProbePlan, SourceResult};
use super::snapshot::{Snapshot, WorkloadRecord};
use crate::provider::ProviderError;
use crate::provider::kube::probing;
use crate::run::Cancel;

/// The RBAC the audit's listing needs, for messages (the README has it as YAML).
pub const AUDIT_RBAC: &str = "get/list/watch on namespaces, pods, networkpolicies.networking.k8s.io \
     (required) and on replicasets, deployments, statefulsets, daemonsets (apps), jobs, cronjobs \
     (batch), replicationcontrollers (for workload names)";

const PAGE: u32 = 500;

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 || s.code == 401)
}

/// Every object of a kind in every namespace, page by page.
async fn list_all<K>(client: &Client) -> Result<Vec<K>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(PAGE);
        if let Some(t) = token.take() {
            lp = lp.continue_token(&t);
        }
        let page = api.list(&lp).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

async fn required<K>(client: &Client, what: &str) -> Result<Vec<K>, ProviderError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    list_all::<K>(client).await.map_err(|e| {
        if is_forbidden(&e) {
            ProviderError::Prerequisite(format!(
                "not allowed to list {what} in all namespaces ({e}); the audit needs {AUDIT_RBAC}"
            ))
        } else {
            ProviderError::Failed(format!("listing {what}: {e}"))
        }
    })
}

async fn optional<K>(
    client: &Client,
    kind: &str,
    what: &str,
    out: &mut Vec<WorkloadRecord>,
    warnings: &mut Vec<String>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match list_all::<K>(client).await {
        Ok(items) => out.extend(
            items
                .iter()
                .map(|o| WorkloadRecord::from_meta(kind, o.meta())),
        ),
        Err(e) => warnings.push(format!(
            "cannot list {what} ({e}): workloads are named from their pods' labels instead"
        )),
    }
}

/// Lists everything the audit reads. Read-only: only `list` requests are made.
pub async fn list_snapshot(client: &Client) -> Result<(Snapshot, Vec<String>), ProviderError> {
    let namespaces = required::<K8sNamespace>(client, "namespaces").await?;
    let pods = required::<K8sPod>(client, "pods").await?;
    let policies = required::<NetworkPolicy>(client, "networkpolicies").await?;
    let mut workloads = Vec::new();
    let mut warnings = Vec::new();
    optional::<ReplicaSet>(
        client,
        "ReplicaSet",
        "replicasets",
        &mut workloads,
        &mut warnings,
    )
    .await;
    optional::<Deployment>(
        client,
        "Deployment",
        "deployments",
        &mut workloads,
        &mut warnings,
    )
    .await;
    optional::<StatefulSet>(
        client,
        "StatefulSet",
        "statefulsets",
        &mut workloads,
        &mut warnings,
    )
    .await;
    optional::<DaemonSet>(
        client,
        "DaemonSet",
        "daemonsets",
        &mut workloads,
        &mut warnings,
    )
    .await;
    optional::<Job>(client, "Job", "jobs", &mut workloads, &mut warnings).await;
    optional::<CronJob>(client, "CronJob", "cronjobs", &mut workloads, &mut warnings).await;
    optional::<ReplicationController>(
        client,
        "ReplicationController",
        "replicationcontrollers",
        &mut workloads,
        &mut warnings,
    )
    .await;
    Ok((
        Snapshot {
            namespaces,
            pods,
            policies,
            workloads,
        },
        warnings,
    ))
}

/// Polling interval while an ephemeral container runs.
const POLL: Duration = Duration::from_secs(1);
/// Time for the node to pull the probe image and start the container.
const START_SLACK: Duration = Duration::from_secs(120);

/// State of one ephemeral container, from the pod's status.
fn container_state(p: &K8sPod, name: &str) -> Option<Result<bool, String>> {
    let st = p
        .status
        .as_ref()?
        .ephemeral_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)?;
    let state = st.state.as_ref()?;
    if state.terminated.is_some() {
        return Some(Ok(true));
    }
    if let Some(w) = &state.waiting {
        let reason = w.reason.clone().unwrap_or_default();
        if matches!(
            reason.as_str(),
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "CreateContainerError"
        ) {
            return Some(Err(format!(
                "the probe container cannot start: {reason} {}",
                w.message.clone().unwrap_or_default()
            )));
        }
    }
    Some(Ok(false))
}

/// Runs one source: add the container, wait for it to finish, read its log.
async fn run_source(
    client: &Client,
    plan: &ProbePlan,
    src: &probe::SourcePlan,
    cancel: &Cancel,
) -> SourceResult {
    let api: Api<K8sPod> = Api::namespaced(client.clone(), &src.pod.namespace);
    let script = probe::source_script(src, &plan.limits);
    let container = probe::ephemeral_container(&plan.container_name, &plan.image, script);
    let patch = serde_json::json!({"spec": {"ephemeralContainers": [container]}});
    api.patch_ephemeral_containers(
        &src.pod.name,
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await
    .map_err(|e| {
        if is_forbidden(&e) {
            format!(
                "not allowed to add an ephemeral container to {} ({e}); --probe needs {}",
                src.pod,
                probe::PROBE_RBAC
            )
        } else {
            format!("adding the probe container to {}: {e}", src.pod)
        }
    })?;
    let deadline =
        Instant::now() + probe::script_duration(src.probes.len(), &plan.limits) + START_SLACK;
    loop {
        let pod = api
            .get(&src.pod.name)
            .await
            .map_err(|e| format!("reading pod {}: {e}", src.pod))?;
        match container_state(&pod, &plan.container_name) {
            Some(Ok(true)) => break,
            Some(Err(e)) => return Err(e),
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the probe container in {} did not finish in time",
                src.pod
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = cancel.cancelled() => return Err("interrupted".into()),
        }
    }
    let lp = LogParams {
        container: Some(plan.container_name.clone()),
        ..Default::default()
    };
    let log = api
        .logs(&src.pod.name, &lp)
        .await
        .map_err(|e| format!("reading the probe container's log in {}: {e}", src.pod))?;
    Ok(probing::parse_output(&log, src.probes.len()))
}

/// Runs every source of the plan, one at a time; stops early (remaining sources are errors) when
/// `cancel` fires or when the cluster refuses the first patch for lack of rights.
pub async fn run_probes(client: &Client, plan: &ProbePlan, cancel: &Cancel) -> Vec<SourceResult> {
    let mut out = Vec::with_capacity(plan.sources.len());
    let mut stop: Option<String> = None;
    for src in &plan.sources {
        if let Some(why) = &stop {
            out.push(Err(why.clone()));
            continue;
        }
        if cancel.is_cancelled() {
            stop = Some("interrupted before this pod was probed".into());
            out.push(Err("interrupted before this pod was probed".into()));
            continue;
        }
        let r = run_source(client, plan, src, cancel).await;
        if let Err(e) = &r
            && e.starts_with("not allowed")
        {
            stop = Some(e.clone());
        }
        out.push(r);
    }
    out
}
