//! The kubeconfig provider: an existing cluster (`--provider kubeconfig [--context C]`).
//!
//! It works only in namespaces it creates — `netpolc-<run-id>--<n>-<ns>`, labelled exactly
//! `netpolc.io/run-id: <run-id>` and carrying a lease the run renews
//! ([`crate::provider::lease::cluster`]) — never touches any other object, and deletes its
//! namespaces at the end (sessions on teardown, then whatever else it recorded creating). Namespace
//! mapping and selector rewriting are described in [`crate::provider::kube::render`].
//!
//! It detects the CNI from well-known DaemonSets and records it; when the detected CNI does not
//! enforce NetworkPolicy (or enforcement cannot be told), that is said up front as a warning.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::ListParams;
use kube::config::KubeConfigOptions;
use kube::{Api, Client};

use super::kube::plan::{self, PlanSettings};
use super::kube::{ClusterPool, ClusterSession, KubeApi, Loopback, PoolPlatform, SessionConfig};
use super::lease::{self, cluster::Ownership};
use super::{Platform, PlatformInfo, ProviderError};
use crate::cni::catalogue::{Catalogue, RUN_ID_LABEL};
use crate::scenario::Scenario;

#[derive(Debug, Clone)]
pub struct KubeconfigOptions {
    pub run_id: String,
    pub context: Option<String>,
    pub probe_timeout: Duration,
    pub ready_timeout: Duration,
    pub loopback: Loopback,
    /// Scenarios run at once, each in its own namespaces.
    pub parallel: usize,
    /// Reuse pods across scenarios with the same model.
    pub reuse: bool,
    /// What probes connect to (`--probe-mode`): with a Service mode the session creates the
    /// Services and plans list them.
    pub probe_modes: Vec<crate::service::ProbeMode>,
}

impl KubeconfigOptions {
    pub fn new(run_id: impl Into<String>, context: Option<String>) -> Self {
        KubeconfigOptions {
            run_id: run_id.into(),
            context,
            probe_timeout: Duration::from_secs(3),
            ready_timeout: Duration::from_secs(300),
            loopback: Loopback::Record,
            parallel: super::kube::session::DEFAULT_PARALLEL,
            reuse: true,
            probe_modes: vec![crate::service::ProbeMode::PodIp],
        }
    }
}

/// A CNI recognised from its DaemonSets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedCni {
    pub name: String,
    /// `None`: cannot be told from the outside.
    pub enforces: Option<bool>,
    pub evidence: String,
}

/// What detection looks at: a DaemonSet's namespace, name and containers (name, image, args).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSetFacts {
    pub namespace: String,
    pub name: String,
    pub containers: Vec<(String, String, Vec<String>)>,
}

impl DaemonSetFacts {
    pub fn from_k8s(ds: &DaemonSet) -> Self {
        let containers = ds
            .spec
            .template
            .spec
            .as_ref()
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| {
                        let mut args = c.command.clone().unwrap_or_default();
                        args.extend(c.args.clone().unwrap_or_default());
                        (c.name.clone(), c.image.clone().unwrap_or_default(), args)
                    })
                    .collect()
            })
            .unwrap_or_default();
        DaemonSetFacts {
            namespace: ds.metadata.namespace.clone().unwrap_or_default(),
            name: ds.metadata.name.clone().unwrap_or_default(),
            containers,
        }
    }

    fn has_container(&self, name: &str) -> bool {
        self.containers.iter().any(|c| c.0 == name)
    }
}

/// Recognises the CNI from the cluster's DaemonSets. Order matters: canal (calico + flannel)
/// enforces through calico, so calico wins over flannel.
pub fn detect_cni(daemonsets: &[DaemonSetFacts]) -> DetectedCni {
    let find = |names: &[&str]| daemonsets.iter().find(|d| names.contains(&d.name.as_str()));
    let ev = |d: &DaemonSetFacts| format!("daemonset {}/{}", d.namespace, d.name);
    if let Some(d) = find(&["calico-node"]) {
        return DetectedCni {
            name: "calico".into(),
            enforces: Some(true),
            evidence: ev(d),
        };
    }
    if let Some(d) = find(&["cilium"]) {
        return DetectedCni {
            name: "cilium".into(),
            enforces: Some(true),
            evidence: ev(d),
        };
    }
    if let Some(d) = find(&["antrea-agent"]) {
        return DetectedCni {
            name: "antrea".into(),
            enforces: Some(true),
            evidence: ev(d),
        };
    }
    if let Some(d) = find(&["weave-net"]) {
        let npc = d.has_container("weave-npc");
        return DetectedCni {
            name: "weave".into(),
            enforces: Some(npc),
            evidence: format!(
                "{}{}",
                ev(d),
                if npc {
                    " with weave-npc"
                } else {
                    " without weave-npc"
                }
            ),
        };
    }
    if let Some(d) = find(&["aws-node"]) {
        // The VPC CNI enforces only when its network policy agent runs with enforcement on. The
        // agent's container is `aws-eks-nodeagent` (image `…/aws-network-policy-agent`).
        let agent = d.containers.iter().find(|c| {
            c.0 == "aws-eks-nodeagent"
                || c.0 == "aws-network-policy-agent"
                || c.1.contains("aws-network-policy-agent")
        });
        let enabled =
            agent.is_some_and(|c| c.2.iter().any(|a| a == "--enable-network-policy=true"));
        return DetectedCni {
            name: "aws-vpc-cni".into(),
            enforces: Some(enabled),
            evidence: format!(
                "{} ({})",
                ev(d),
                match (agent, enabled) {
                    (None, _) => "no aws-network-policy-agent container",
                    (Some(_), false) =>
                        "network policy agent present but --enable-network-policy is not true",
                    (Some(_), true) => "network policy agent with --enable-network-policy=true",
                }
            ),
        };
    }
    if let Some(d) = find(&["kindnet"]) {
        let (enforces, why) = kindnet_enforcement(d, daemonsets);
        return DetectedCni {
            name: "kindnet".into(),
            enforces,
            evidence: format!("{} ({why})", ev(d)),
        };
    }
    if let Some(d) = find(&["kube-flannel-ds", "flannel", "kube-flannel"]) {
        return DetectedCni {
            name: "flannel".into(),
            enforces: Some(false),
            evidence: ev(d),
        };
    }
    DetectedCni {
        name: "unknown".into(),
        enforces: None,
        evidence: "no DaemonSet of a known CNI (calico-node, cilium, antrea-agent, weave-net, aws-node, kindnet, kube-flannel-ds)".into(),
    }
}

/// The first kindnetd image with kube-network-policies built in (kind v0.24.0's).
pub const KINDNETD_WITH_POLICIES: &str = "v20240813";

/// Whether kind's kindnet enforces NetworkPolicy. Since kind v0.24 (image
/// `kindest/kindnetd:v20240813-…`) the policy controller (kube-network-policies) runs inside
/// `kindnetd` itself, in the DaemonSet's `kindnet-cni` container, always on; older images have
/// none. A separate kube-network-policies container or DaemonSet enforces too. Images whose tag
/// does not carry kindnetd's date cannot be told apart.
pub fn kindnet_enforcement(d: &DaemonSetFacts, all: &[DaemonSetFacts]) -> (Option<bool>, String) {
    if d.has_container("kube-network-policies")
        || all.iter().any(|x| x.name == "kube-network-policies")
    {
        return (Some(true), "with kube-network-policies beside it".into());
    }
    let Some((_, image, _)) = d.containers.iter().find(|c| c.0 == "kindnet-cni") else {
        return (None, "no kindnet-cni container".into());
    };
    let tag = image
        .rsplit_once('@')
        .map_or(image.as_str(), |(i, _)| i)
        .rsplit_once(':');
    match tag {
        Some((repo, tag)) if repo.ends_with("kindest/kindnetd") => {
            let date = tag
                .get(..9)
                .filter(|d| d.starts_with('v') && d[1..].bytes().all(|b| b.is_ascii_digit()));
            match date {
                Some(date) if date >= KINDNETD_WITH_POLICIES => (
                    Some(true),
                    format!("kindnetd {tag} has kube-network-policies built in (kind ≥ v0.24)"),
                ),
                Some(_) => (
                    Some(false),
                    format!("kindnetd {tag} predates kube-network-policies (kind < v0.24)"),
                ),
                None => (None, format!("cannot date kindnetd image tag {tag:?}")),
            }
        }
        _ => (
            None,
            format!("kindnet-cni runs {image:?}, not kind's kindnetd: enforcement cannot be told"),
        ),
    }
}

/// The up-front warning for a detected CNI, if any.
pub fn enforcement_warning(d: &DetectedCni) -> Option<String> {
    match d.enforces {
        Some(true) => None,
        Some(false) => Some(format!(
            "detected CNI {} does not enforce NetworkPolicy ({}): expect the verdict policies-ignored",
            d.name, d.evidence
        )),
        None => Some(format!(
            "cannot tell whether the detected CNI {} enforces NetworkPolicy ({})",
            d.name, d.evidence
        )),
    }
}

pub use super::kube::cleanup::cleanup;

pub struct KubeconfigPlatform {
    opts: KubeconfigOptions,
    client: Client,
    inner: PoolPlatform<KubeApi>,
    /// The namespaces this run created, and the lease they carry.
    ownership: Arc<Ownership>,
    /// Renews the lease while the run lives; aborted on close and drop.
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for KubeconfigPlatform {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// A client for the current or given context, and the API server's version (`git_version`).
/// Shared by this provider, `netpolc audit` and `netpolc check`.
pub async fn connect(context: Option<&str>) -> Result<(Client, String), ProviderError> {
    super::kind::install_crypto_provider();
    let kopts = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let cfg = kube::Config::from_kubeconfig(&kopts).await.map_err(|e| {
        ProviderError::Prerequisite(format!(
            "no usable kubeconfig{}: {e} (set KUBECONFIG or pass --context)",
            context
                .map(|c| format!(" context {c:?}"))
                .unwrap_or_default()
        ))
    })?;
    let client =
        Client::try_from(cfg).map_err(|e| ProviderError::Failed(format!("kube client: {e}")))?;
    let version = tokio::time::timeout(Duration::from_secs(20), client.apiserver_version())
        .await
        .map_err(|_| ProviderError::Failed("the API server did not answer within 20s".into()))?
        .map_err(|e| ProviderError::Failed(format!("contacting the API server: {e}")))?;
    Ok((client, version.git_version))
}

/// Lists the cluster's DaemonSets (all namespaces, else kube-system only, else none) and
/// recognises the CNI from them: the one place detection happens for every command.
pub async fn detect_cluster_cni(client: &Client) -> DetectedCni {
    let ds_api: Api<DaemonSet> = Api::all(client.clone());
    let facts: Vec<DaemonSetFacts> = match ds_api.list(&ListParams::default()).await {
        Ok(l) => l.items.iter().map(DaemonSetFacts::from_k8s).collect(),
        Err(_) => {
            let ks: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
            ks.list(&ListParams::default())
                .await
                .map(|l| l.items.iter().map(DaemonSetFacts::from_k8s).collect())
                .unwrap_or_default()
        }
    };
    detect_cni(&facts)
}

impl KubeconfigPlatform {
    /// Connects (current or given context), records the server version and detects the CNI.
    pub async fn create(opts: KubeconfigOptions) -> Result<Self, ProviderError> {
        lease::check_run_id(&opts.run_id).map_err(ProviderError::InvalidInput)?;
        super::kind::install_crypto_provider();
        let cat = Catalogue::builtin().map_err(|e| ProviderError::Failed(e.to_string()))?;
        let (client, git_version) = connect(opts.context.as_deref()).await?;
        let detected = detect_cluster_cni(&client).await;
        let mut info = PlatformInfo {
            provider: "kubeconfig".into(),
            cni: detected.name.clone(),
            ..Default::default()
        };
        info.environment
            .insert("kubernetes_version".into(), git_version);
        info.environment
            .insert("cni_evidence".into(), detected.evidence.clone());
        if let Some(c) = &opts.context {
            info.environment.insert("context".into(), c.clone());
        }
        info.environment
            .insert("probe_image".into(), cat.probe_image.reference());
        info.warnings.extend(enforcement_warning(&detected));
        let existing = super::kube::cleanup::existing_of_run(&client, &opts.run_id).await?;
        if !existing.is_empty() {
            return Err(ProviderError::Prerequisite(format!(
                "namespaces labelled {RUN_ID_LABEL}={} already exist ({}): another run uses this \
                 id, or an earlier one left them (`netpolc cleanup --run-id {}` removes them once \
                 that run is over); pick another --run-id",
                opts.run_id,
                existing.join(", "),
                opts.run_id
            )));
        }
        let ownership = Arc::new(Ownership::current().map_err(ProviderError::Failed)?);
        let renewer = tokio::spawn(super::kube::cleanup::renew_forever(
            client.clone(),
            Arc::clone(&ownership),
        ));
        let cfg = SessionConfig {
            loopback: opts.loopback,
            ready_timeout: opts.ready_timeout,
            probe_timeout: opts.probe_timeout,
            parallel: opts.parallel.max(1),
            reuse: opts.reuse,
            ownership: Some(Arc::clone(&ownership)),
            services: opts.probe_modes.iter().any(|m| m.is_service()),
            ..SessionConfig::new(cat.probe_image.reference())
        };
        // The nodes' kernels cannot be checked from here: a crash-looping SCTP server is
        // detected from its pod's status instead (see `kube::session`).
        let pool = ClusterPool::new(
            Arc::new(KubeApi::new(client.clone())),
            &opts.run_id,
            cfg,
            None,
        );
        Ok(KubeconfigPlatform {
            inner: PoolPlatform { pool, info },
            opts,
            client,
            ownership,
            renewer,
        })
    }
}

/// The whole plan as YAML documents, touching nothing (`run --dry-run`).
pub fn dry_run(scenarios: &[Scenario], opts: &KubeconfigOptions) -> Result<String, ProviderError> {
    let cat = Catalogue::builtin().map_err(|e| ProviderError::Failed(e.to_string()))?;
    let header = serde_json::json!({
        "apiVersion": "netpolc/v1",
        "kind": "Plan",
        "provider": "kubeconfig",
        "runId": opts.run_id,
        "context": opts.context.clone().unwrap_or_else(|| "(current context)".into()),
        "scope": format!(
            "only namespaces this run creates (labelled {RUN_ID_LABEL}={}); they are deleted at the end",
            super::kube::NameMap::new(&opts.run_id, 0).run_label()
        ),
        "lease": format!(
            "each namespace is annotated {} and {} when created and renewed every {}s; \
             `netpolc cleanup` on any machine removes them once {}s pass without renewal \
             (at once on this machine when the run's process is gone)",
            lease::cluster::HOLDER_ANNOTATION,
            lease::cluster::RENEWED_ANNOTATION,
            lease::cluster::RENEW_EVERY.as_secs(),
            lease::cluster::LEASE_SECONDS
        ),
        "cniDetection": "DaemonSets calico-node, cilium, antrea-agent, weave-net, aws-node (+ network policy agent), kindnet, kube-flannel-ds; a non-enforcing CNI is warned about up front",
        "probeImage": cat.probe_image.reference(),
        "loopback": super::kind::loopback_doc(opts.loopback),
    });
    let mut out = plan::doc(&header)?;
    plan::scenario_docs(
        &mut out,
        scenarios,
        &PlanSettings {
            run_id: opts.run_id.clone(),
            image: cat.probe_image.reference(),
            gaps: Vec::new(),
            loopback: opts.loopback,
            probe_timeout: opts.probe_timeout,
            external: super::kind::EXTERNAL_DOC.into(),
            external_realised: false,
            cluster_gaps: SessionConfig::new(String::new()).cluster_gaps,
            probe_modes: opts.probe_modes.clone(),
        },
    )?;
    Ok(out)
}

impl Platform for KubeconfigPlatform {
    type Session = ClusterSession<KubeApi>;
    fn info(&self) -> PlatformInfo {
        self.inner.info()
    }
    fn max_parallel(&self) -> usize {
        self.inner.max_parallel()
    }
    fn open(
        &self,
        n: usize,
        scenario: &Scenario,
    ) -> impl Future<Output = Result<ClusterSession<KubeApi>, ProviderError>> + Send {
        self.inner.open(n, scenario)
    }
    /// Deletes the pool's namespaces, then what this run recorded creating and did not delete yet
    /// (a failed session), never anything merely labelled like it; then stops renewing the lease.
    async fn close(&self) -> Result<(), ProviderError> {
        let pooled = self.inner.close().await;
        let run = super::kube::NameMap::new(&self.opts.run_id, 0)
            .run_label()
            .to_string();
        let r = super::kube::cleanup::delete_recorded(&self.client, &self.ownership, &run).await;
        self.renewer.abort();
        pooled.and(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(ns: &str, name: &str, containers: &[(&str, &[&str])]) -> DaemonSetFacts {
        DaemonSetFacts {
            namespace: ns.into(),
            name: name.into(),
            containers: containers
                .iter()
                .map(|(c, args)| {
                    (
                        c.to_string(),
                        format!("img/{c}"),
                        args.iter().map(|a| a.to_string()).collect(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn detects_known_cnis_and_their_enforcement() {
        let kp = ds("kube-system", "kube-proxy", &[("kube-proxy", &[])]);
        let cases = [
            (
                ds("kube-system", "calico-node", &[("calico-node", &[])]),
                "calico",
                Some(true),
            ),
            (
                ds("kube-system", "cilium", &[("cilium-agent", &[])]),
                "cilium",
                Some(true),
            ),
            (
                ds("kube-system", "antrea-agent", &[("antrea-agent", &[])]),
                "antrea",
                Some(true),
            ),
            (
                ds(
                    "kube-system",
                    "weave-net",
                    &[("weave", &[]), ("weave-npc", &[])],
                ),
                "weave",
                Some(true),
            ),
            (
                ds("kube-flannel", "kube-flannel-ds", &[("kube-flannel", &[])]),
                "flannel",
                Some(false),
            ),
            (
                ds("kube-system", "kindnet", &[("other", &[])]),
                "kindnet",
                None,
            ),
            (
                ds(
                    "kube-system",
                    "aws-node",
                    &[
                        ("aws-node", &[]),
                        (
                            "aws-network-policy-agent",
                            &["--enable-network-policy=false"],
                        ),
                    ],
                ),
                "aws-vpc-cni",
                Some(false),
            ),
            (
                ds(
                    "kube-system",
                    "aws-node",
                    &[
                        ("aws-node", &[]),
                        (
                            "aws-network-policy-agent",
                            &["--enable-network-policy=true"],
                        ),
                    ],
                ),
                "aws-vpc-cni",
                Some(true),
            ),
        ];
        for (d, name, enforces) in cases {
            let got = detect_cni(&[kp.clone(), d]);
            assert_eq!(
                (got.name.as_str(), got.enforces),
                (name, enforces),
                "{got:?}"
            );
        }
        assert_eq!(detect_cni(&[kp]).name, "unknown");
    }

    /// kind v0.30.0's DaemonSet (pkg/build/nodeimage/const_cni.go): one container, kindnet-cni,
    /// running kindest/kindnetd:v20250512-df8de77b, policy controller inside.
    #[test]
    fn kindnet_enforces_from_kind_v0_24() {
        let with_image = |image: &str| DaemonSetFacts {
            namespace: "kube-system".into(),
            name: "kindnet".into(),
            containers: vec![("kindnet-cni".into(), image.into(), Vec::new())],
        };
        for (image, want) in [
            ("docker.io/kindest/kindnetd:v20250512-df8de77b", Some(true)),
            ("docker.io/kindest/kindnetd:v20240813-c6f155d6", Some(true)),
            (
                "docker.io/kindest/kindnetd:v20251212-v0.29.0-alpha-105-g20ccfc88",
                Some(true),
            ),
            (
                "kindest/kindnetd:v20250512-df8de77b@sha256:0123",
                Some(true),
            ),
            ("docker.io/kindest/kindnetd:v20240513-cd2ac642", Some(false)),
            ("docker.io/kindest/kindnetd:latest", None),
            ("ghcr.io/aojea/kindnetd:v1.8.0", None),
        ] {
            let d = with_image(image);
            let got = detect_cni(std::slice::from_ref(&d));
            assert_eq!(
                (got.name.as_str(), got.enforces),
                ("kindnet", want),
                "{image}: {got:?}"
            );
        }
        let d = with_image("docker.io/kindest/kindnetd:v20250512-df8de77b");
        assert_eq!(enforcement_warning(&detect_cni(&[d])), None);
    }

    #[test]
    fn canal_counts_as_calico() {
        let got = detect_cni(&[
            ds("kube-system", "kube-flannel-ds", &[("kube-flannel", &[])]),
            ds("kube-system", "calico-node", &[("calico-node", &[])]),
        ]);
        assert_eq!(got.enforces, Some(true));
    }

    #[test]
    fn non_enforcing_cnis_are_warned_about() {
        let flannel = detect_cni(&[ds("kube-flannel", "kube-flannel-ds", &[])]);
        assert!(enforcement_warning(&flannel).is_some_and(|w| w.contains("policies-ignored")));
        let calico = detect_cni(&[ds("kube-system", "calico-node", &[])]);
        assert_eq!(enforcement_warning(&calico), None);
    }
}
