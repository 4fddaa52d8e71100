//! The kind provider: a throwaway cluster per run (`netpolc-<run-id>--<cni>`, one control plane
//! and two workers) with a CNI from the catalogue, scenarios realised by the shared
//! [`crate::provider::kube`] session, and the cluster deleted at the end unless `keep_cluster`.
//!
//! Flow of [`KindPlatform::create`]: check docker/podman, kind and kubectl (and helm when the CNI
//! needs it) → resolve the CNI and node image → fetch every install source and verify its sha256
//! when one is catalogued (before creating anything) → `kind create cluster` with the rendered
//! config and a private kubeconfig → install the CNI → wait for its DaemonSets. Binaries put on
//! nodes are those of the nodes' architecture; the installed kind is compared with the release
//! the pinned node images are built for (older: refused; newer: warned).
//!
//! Scenarios then run several at a time, reusing pods across scenarios with the same model
//! ([`crate::provider::kube::session`]).

pub mod archive;
pub mod cleanup;
pub mod external;
pub mod prereq;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::time::Instant;

use super::kube::plan::{self, PlanSettings};
use super::kube::{ClusterPool, ClusterSession, KubeApi, Loopback, PoolPlatform, SessionConfig};
use super::{Platform, PlatformInfo, ProviderError};
use crate::cni::catalogue::{Arch, Catalogue, Cni, InstallStep, NodeImage, verify_sha256};
use crate::model::Probe;
use crate::scenario::Scenario;

pub use prereq::{Prerequisites, check_prerequisites};

#[derive(Debug, Clone)]
pub struct KindOptions {
    pub run_id: String,
    pub cni: String,
    pub keep_cluster: bool,
    /// Kubernetes minor for the node image (`1.33`); `None`: the catalogue's default.
    pub kubernetes: Option<String>,
    /// Per-probe timeout written into probe commands (plans show it too).
    pub probe_timeout: Duration,
    /// How long pods may take to become Ready (image pulls on a cold cluster dominate).
    pub ready_timeout: Duration,
    /// How long the CNI's DaemonSets may take to roll out.
    pub cni_timeout: Duration,
    pub loopback: Loopback,
    /// Scenarios run at once, each in its own namespaces.
    pub parallel: usize,
    /// Reuse pods across scenarios with the same model.
    pub reuse: bool,
    /// External peers to start beside the nodes, by `model.externals` name, with the probes each
    /// serves ([`external::wanted`] of the run's scenarios).
    pub externals: BTreeMap<String, BTreeSet<Probe>>,
    /// What probes connect to (`--probe-mode`): with a Service mode the session creates the
    /// Services and plans list them.
    pub probe_modes: Vec<crate::service::ProbeMode>,
}

impl KindOptions {
    /// Defaults for everything but the run id and CNI.
    pub fn new(run_id: impl Into<String>, cni: impl Into<String>) -> Self {
        KindOptions {
            run_id: run_id.into(),
            cni: cni.into(),
            keep_cluster: false,
            kubernetes: None,
            probe_timeout: Duration::from_secs(3),
            ready_timeout: Duration::from_secs(300),
            cni_timeout: Duration::from_secs(300),
            loopback: Loopback::Record,
            parallel: super::kube::session::DEFAULT_PARALLEL,
            reuse: true,
            externals: BTreeMap::new(),
            probe_modes: vec![crate::service::ProbeMode::PodIp],
        }
    }

    /// The external peer containers of this run.
    pub fn external_peers(&self, image: &str) -> Vec<external::ExternalPeer> {
        let run = super::kube::NameMap::new(&self.run_id, 0)
            .run_label()
            .to_string();
        external::ExternalPeer::all(&run, image, &self.externals)
    }

    /// The session settings for clusters of this run on `cni`.
    pub fn session_config(&self, image: String, cni: &Cni) -> SessionConfig {
        SessionConfig {
            gaps: cni.gaps.clone(),
            cluster_gaps: crate::policy::cluster::ClusterKind::ALL
                .into_iter()
                .filter_map(|k| cni.cluster_policy_gap(k).map(|why| (k, why)))
                .collect(),
            loopback: self.loopback,
            ready_timeout: self.ready_timeout,
            probe_timeout: self.probe_timeout,
            parallel: self.parallel.max(1),
            reuse: self.reuse,
            services: self.probe_modes.iter().any(|m| m.is_service()),
            ..SessionConfig::new(image)
        }
    }

    /// `netpolc-<run-id>--<cni>` ([`cluster_name`]).
    pub fn cluster_name(&self) -> String {
        let run = super::kube::NameMap::new(&self.run_id, 0)
            .run_label()
            .to_string();
        cluster_name(&run, &self.cni)
    }
}

/// kind's limit on cluster names (node containers are `<cluster>-control-plane`, hostnames).
pub const MAX_CLUSTER_NAME: usize = 50;

/// `netpolc-<run-id>--<cni>`, or `netpolc-<run-id>` when that would exceed kind's limit. The run
/// id is exactly what precedes the first `--` ([`cluster_run`]), so cleanup of one run never
/// matches another's cluster.
pub fn cluster_name(run_id: &str, cni: &str) -> String {
    let with_cni = format!("netpolc-{run_id}--{cni}");
    let cni_ok = !cni.is_empty()
        && cni
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if cni_ok && with_cni.len() <= MAX_CLUSTER_NAME {
        with_cni
    } else {
        format!("netpolc-{run_id}")
    }
}

/// The run a kind cluster belongs to under [`cluster_name`]'s scheme, or `None` (not netpolc's).
/// Clusters named by an older netpolc (`netpolc-<run>-<cni>`) read as the run id `<run>-<cni>`,
/// which no new run has unless asked for: they are attributed to nobody by a plain cleanup.
pub fn cluster_run(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("netpolc-")?;
    match crate::provider::lease::split_run(rest) {
        Some((run, cni)) => cni
            .starts_with(|c: char| c.is_ascii_alphanumeric())
            .then_some(run),
        None => crate::provider::lease::valid_run_id(rest).then_some(rest),
    }
}

/// A fetched install source, and whether its checksum was verified.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub step: InstallStep,
    /// The URL fetched (for a node archive: the nodes' architecture's).
    pub url: String,
    pub bytes: Vec<u8>,
    pub verified: bool,
}

/// Downloads every install source of `cni` for nodes of `arch` (rustls with the ring provider),
/// verifying each catalogued sha256. Nothing is created before all sources are in hand.
pub async fn fetch_sources(cni: &Cni, arch: Arch) -> Result<Vec<Fetched>, ProviderError> {
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| ProviderError::Failed(format!("building the HTTP client: {e}")))?;
    let mut out = Vec::new();
    for step in &cni.install {
        let src = step.source(arch).ok_or_else(|| {
            ProviderError::Prerequisite(format!(
                "CNI {:?} pins no {} install step for {arch} nodes",
                cni.name,
                step.kind_name()
            ))
        })?;
        let resp = client
            .get(&src.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| ProviderError::Failed(format!("downloading {}: {e}", src.url)))?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ProviderError::Failed(format!("downloading {}: {e}", src.url)))?
            .to_vec();
        let verified = match &src.sha256 {
            Some(sum) => {
                verify_sha256(&src.url, &bytes, sum)?;
                true
            }
            None => false,
        };
        out.push(Fetched {
            step: step.clone(),
            url: src.url.clone(),
            bytes,
            verified,
        });
    }
    Ok(out)
}

/// Downloads the pinned network-policy-api CRDs `cni` needs installed by the harness and checks
/// each against its sha256: a CRD without one is refused, never applied unverified.
pub async fn fetch_crds(
    cat: &Catalogue,
    cni: &Cni,
) -> Result<Vec<(String, Vec<u8>)>, ProviderError> {
    let crds = cat.crds_to_install(cni);
    if crds.is_empty() {
        return Ok(Vec::new());
    }
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| ProviderError::Failed(format!("building the HTTP client: {e}")))?;
    let mut out = Vec::new();
    for crd in crds {
        let Some(sum) = &crd.sha256 else {
            return Err(ProviderError::Prerequisite(format!(
                "{}: no sha256 is catalogued for this CRD, and CRDs are never installed \
                 unverified (pin one in harness/cni-catalogue.yaml)",
                crd.url
            )));
        };
        let bytes = client
            .get(&crd.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| ProviderError::Failed(format!("downloading {}: {e}", crd.url)))?
            .bytes()
            .await
            .map_err(|e| ProviderError::Failed(format!("downloading {}: {e}", crd.url)))?
            .to_vec();
        verify_sha256(&crd.url, &bytes, sum)?;
        out.push((crd.url.clone(), bytes));
    }
    Ok(out)
}

/// rustls needs exactly one process-wide crypto provider; kube and reqwest share ring's.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct KindPlatform {
    opts: KindOptions,
    inner: PoolPlatform<KubeApi>,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    tools: Prerequisites,
    /// External peer containers started (removed on close).
    peers: Vec<external::ExternalPeer>,
}

/// Whether this host's kernel can create SCTP sockets (`Err` says why not). kind nodes are
/// containers on this kernel when the container runtime is local.
fn host_sctp() -> Result<(), String> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
    socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Sctp,
    )
    .map(drop)
    .map_err(|e| {
        format!(
            "the kind nodes share this host's kernel, which has no SCTP (socket(AF_INET, \
             SOCK_STREAM, IPPROTO_SCTP) failed: {e}; `modprobe sctp` may help); SCTP servers are \
             not started and SCTP cells are not judged"
        )
    })
}

/// Whether kind's nodes run on this machine's kernel (a local Docker or Podman socket).
fn runtime_is_local() -> bool {
    std::env::var("DOCKER_HOST")
        .map(|h| h.is_empty() || h.starts_with("unix://"))
        .unwrap_or(true)
}

impl KindPlatform {
    /// Checks prerequisites and creates the cluster with its CNI installed and ready.
    pub async fn create(opts: KindOptions) -> Result<Self, ProviderError> {
        crate::provider::lease::check_run_id(&opts.run_id).map_err(ProviderError::InvalidInput)?;
        let cat = Catalogue::builtin().map_err(|e| ProviderError::Failed(e.to_string()))?;
        let cni = cat.cni(&opts.cni)?.clone();
        let node = cat.node_image_for(opts.kubernetes.as_deref())?.clone();
        let tools = check_prerequisites(cni.needs_helm()).await?;
        let fetched = fetch_sources(&cni, tools.arch).await?;
        let crds = fetch_crds(&cat, &cni).await?;
        let await_crds = cat.crds_to_await(&cni);
        let dir = tempfile::tempdir()
            .map_err(|e| ProviderError::Failed(format!("creating a temporary directory: {e}")))?;
        let kubeconfig = dir.path().join("kubeconfig");
        let config_path = dir.path().join("kind-config.yaml");
        std::fs::write(&config_path, cat.kind_config(&cni, &node))
            .map_err(|e| ProviderError::Failed(format!("writing the kind config: {e}")))?;
        let name = opts.cluster_name();
        // Never adopt (nor, on failure, delete) a cluster this run did not create.
        let existing = tools.run_kind(&["get", "clusters"]).await?;
        if cleanup::parse_clusters(&existing).contains(&name) {
            return Err(ProviderError::Prerequisite(format!(
                "a kind cluster named {name} already exists (an earlier run with id {} kept or \
                 left it): `netpolc cleanup --run-id {}` deletes it, or pick another --run-id",
                opts.run_id, opts.run_id
            )));
        }
        let t0 = Instant::now();
        let created = tools
            .run_kind(&[
                "create",
                "cluster",
                "--name",
                &name,
                "--config",
                &config_path.to_string_lossy(),
                "--kubeconfig",
                &kubeconfig.to_string_lossy(),
                "--wait",
                "0s",
            ])
            .await;
        if let Err(e) = created {
            // kind leaves half-created clusters behind on failure (the name was free before).
            let _ = tools
                .run_kind(&["delete", "cluster", "--name", &name])
                .await;
            return Err(e);
        }
        let cluster_ms = ms(t0.elapsed());
        let client = match client_for(&kubeconfig).await {
            Ok(c) => c,
            Err(e) => {
                let _ = tools
                    .run_kind(&["delete", "cluster", "--name", &name])
                    .await;
                return Err(e);
            }
        };
        let sctp = if runtime_is_local() {
            host_sctp().err()
        } else {
            None
        };
        // The `kind` network exists once the cluster does.
        let peers = opts.external_peers(&cat.probe_image.reference());
        let realised = match external::start(&tools, &peers).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tools
                    .run_kind(&["delete", "cluster", "--name", &name])
                    .await;
                return Err(e);
            }
        };
        let mut info = platform_info(&cat, &cni, &node, &fetched, &tools, &name);
        info.setup_ms.insert("cluster".into(), cluster_ms);
        for (n, e) in &realised {
            info.environment
                .insert(format!("external_{n}"), e.what.clone());
        }
        if let Some(why) = &sctp {
            info.warnings
                .push(format!("SCTP probes are unsupported: {why}"));
        }
        let pool = ClusterPool::new(
            Arc::new(KubeApi::new(client)),
            &opts.run_id,
            SessionConfig {
                externals: realised,
                ..opts.session_config(cat.probe_image.reference(), &cni)
            },
            sctp,
        );
        let mut platform = KindPlatform {
            inner: PoolPlatform { pool, info },
            kubeconfig,
            dir,
            tools,
            opts,
            peers,
        };
        let t1 = Instant::now();
        if let Err(e) = platform
            .install_cni(&cni, &fetched, &crds, &await_crds)
            .await
        {
            let _ = platform.close().await;
            return Err(e);
        }
        platform
            .inner
            .info
            .setup_ms
            .insert("cni".into(), ms(t1.elapsed()));
        Ok(platform)
    }

    /// The network-policy-api CRDs first (verified files; the CNI's controllers may watch them
    /// from their start), then the CNI's steps and readiness, then every CRD of a kind the CNI
    /// implements must be `Established` (whoever installed it).
    async fn install_cni(
        &mut self,
        cni: &Cni,
        fetched: &[Fetched],
        crds: &[(String, Vec<u8>)],
        await_crds: &[String],
    ) -> Result<(), ProviderError> {
        let name = self.opts.cluster_name();
        let kc = self.kubeconfig.to_string_lossy().to_string();
        for (i, (url, bytes)) in crds.iter().enumerate() {
            let file = self.dir.path().join(format!("crd-{i}.yaml"));
            std::fs::write(&file, bytes)
                .map_err(|e| ProviderError::Failed(format!("writing {url}: {e}")))?;
            let file = file.to_string_lossy().to_string();
            self.tools
                .run_kubectl(&["--kubeconfig", &kc, "apply", "--server-side", "-f", &file])
                .await?;
        }
        for (i, f) in fetched.iter().enumerate() {
            let file = self.dir.path().join(format!("source-{i}"));
            std::fs::write(&file, &f.bytes)
                .map_err(|e| ProviderError::Failed(format!("writing {}: {e}", file.display())))?;
            let file = file.to_string_lossy().to_string();
            match &f.step {
                InstallStep::Manifest { .. } => {
                    self.tools
                        .run_kubectl(&["--kubeconfig", &kc, "apply", "--server-side", "-f", &file])
                        .await?;
                }
                InstallStep::HelmChart {
                    release,
                    namespace,
                    values,
                    ..
                } => {
                    let mut args: Vec<String> = vec![
                        "install".into(),
                        release.clone(),
                        file.clone(),
                        "--kubeconfig".into(),
                        kc.clone(),
                        "--namespace".into(),
                        namespace.clone(),
                    ];
                    for (k, v) in values {
                        args.push("--set".into());
                        args.push(format!("{k}={v}"));
                    }
                    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                    self.tools.run_helm(&refs).await?;
                }
                InstallStep::NodeArchive {
                    directory, members, ..
                } => {
                    let tar = archive::select_members(&f.bytes, members)
                        .map_err(|e| ProviderError::Failed(format!("{}: {e}", f.url)))?;
                    for node in self.tools.kind_nodes(&name).await? {
                        self.tools.node_untar(&node, directory, &tar).await?;
                    }
                }
            }
        }
        for r in &cni.readiness {
            let ds = format!("daemonset/{}", r.daemon_set);
            let timeout = format!("--timeout={}s", self.opts.cni_timeout.as_secs());
            self.tools
                .run_kubectl(&[
                    "--kubeconfig",
                    &kc,
                    "-n",
                    &r.namespace,
                    "rollout",
                    "status",
                    &ds,
                    &timeout,
                ])
                .await?;
        }
        for crd in await_crds {
            let timeout = format!("--timeout={}s", self.opts.cni_timeout.as_secs());
            let target = format!("crd/{crd}");
            self.tools
                .run_kubectl(&[
                    "--kubeconfig",
                    &kc,
                    "wait",
                    "--for=condition=Established",
                    &target,
                    &timeout,
                ])
                .await?;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn client_for(kubeconfig: &std::path::Path) -> Result<Client, ProviderError> {
    install_crypto_provider();
    let kc = Kubeconfig::read_from(kubeconfig)
        .map_err(|e| ProviderError::Failed(format!("reading {}: {e}", kubeconfig.display())))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| ProviderError::Failed(format!("loading the kind kubeconfig: {e}")))?;
    Client::try_from(cfg).map_err(|e| ProviderError::Failed(format!("kube client: {e}")))
}

fn platform_info(
    cat: &Catalogue,
    cni: &Cni,
    node: &NodeImage,
    fetched: &[Fetched],
    tools: &Prerequisites,
    cluster: &str,
) -> PlatformInfo {
    let mut info = PlatformInfo {
        provider: "kind".into(),
        cni: cni.name.clone(),
        ..Default::default()
    };
    let env = &mut info.environment;
    env.insert("cluster".into(), cluster.into());
    env.insert("cni_version".into(), cni.version.clone());
    env.insert("node_image".into(), node.reference());
    env.insert("kind_pinned".into(), cat.kind.version.clone());
    env.insert("probe_image".into(), cat.probe_image.reference());
    env.insert("node_arch".into(), tools.arch.as_str().into());
    info.warnings.extend(tools.warnings.iter().cloned());
    info.gaps = cni.gaps.clone();
    env.insert(
        "expected_verdict".into(),
        cni.expected_verdict.as_str().into(),
    );
    for (k, v) in &tools.versions {
        env.insert(format!("{k}_version"), v.clone());
    }
    for f in fetched {
        if !f.verified {
            info.warnings.push(format!(
                "{} was applied unverified: no sha256 is catalogued for it",
                f.url
            ));
        }
    }
    if !cni.enforces_network_policy {
        info.warnings.push(format!(
            "{} does not enforce NetworkPolicy: the expected verdict is {}",
            cni.name,
            cni.expected_verdict.as_str()
        ));
    }
    info
}

/// The whole plan as YAML documents, touching nothing (`run --dry-run`).
pub fn dry_run(scenarios: &[Scenario], opts: &KindOptions) -> Result<String, ProviderError> {
    let cat = Catalogue::builtin().map_err(|e| ProviderError::Failed(e.to_string()))?;
    let cni = cat.cni(&opts.cni)?;
    let node = cat.node_image_for(opts.kubernetes.as_deref())?;
    let name = opts.cluster_name();
    let header = serde_json::json!({
        "apiVersion": "netpolc/v1",
        "kind": "Plan",
        "provider": "kind",
        "runId": opts.run_id,
        "cluster": {
            "name": name,
            "create": format!("kind create cluster --name {name} --config <the Cluster document below> --kubeconfig <private file>"),
            "delete": if opts.keep_cluster { "kept (--keep-cluster)".to_string() } else { format!("kind delete cluster --name {name}") },
            "nodeImage": node.reference(),
        },
        "tools": {
            "kind": cat.kind.version,
            "kubectl": cat.kubectl.version,
            "helm": if cni.needs_helm() { Some(&cat.helm.version) } else { None },
        },
        "cni": {
            "name": cni.name,
            "version": cni.version,
            "enforcesNetworkPolicy": cni.enforces_network_policy,
            "expectedVerdict": cni.expected_verdict.as_str(),
            "install": cni.install.iter().map(|s| {
                let sources: Vec<serde_json::Value> = s.all_sources().into_iter().map(|(arch, src)| {
                    serde_json::json!({
                        "arch": arch.map(|a| a.as_str()),
                        "url": src.url,
                        "sha256": src.sha256,
                        "verification": match &src.sha256 {
                            Some(_) => format!("sha256 checked before use ({})", src.sha256_from.unwrap_or_default()),
                            None => "none catalogued: used unverified, and the report says so".to_string(),
                        },
                    })
                }).collect();
                let mut doc = serde_json::json!({"kind": s.kind_name(), "action": install_action(s)});
                match <[serde_json::Value; 1]>::try_from(sources) {
                    Ok([one]) => {
                        doc["url"] = one["url"].clone();
                        doc["sha256"] = one["sha256"].clone();
                        doc["verification"] = one["verification"].clone();
                    }
                    Err(many) => {
                        doc["architectures"] = serde_json::Value::Array(many);
                        doc["architecture"] = "the nodes' (docker info), amd64 or arm64; anything else is refused".into();
                    }
                }
                doc
            }).collect::<Vec<_>>(),
            "readiness": cni.readiness.iter().map(|r| format!(
                "kubectl -n {} rollout status daemonset/{} --timeout={}s",
                r.namespace, r.daemon_set, opts.cni_timeout.as_secs()
            )).collect::<Vec<_>>(),
            "gaps": gaps_doc(&cni.gaps),
            "clusterPolicies": cluster_policies_doc(&cat, cni, opts.cni_timeout),
        },
        "probeImage": cat.probe_image.reference(),
        "loopback": loopback_doc(opts.loopback),
        "ipBlock": IPBLOCK_DOC,
        "scheduling": {
            "parallel": opts.parallel.max(1),
            "reusePods": opts.reuse,
            "gate": "before a scenario's first policy, every pod must reach every other pod's servers (and again before its pods are reused)",
            "serviceAccount": "pods are created once each namespace's default ServiceAccount exists",
            "sctp": "servers are not started when the host kernel has no SCTP; a crash-looping SCTP server makes SCTP cells unsupported and the run goes on",
        },
        "externalPeers": external_doc(&opts.external_peers(&cat.probe_image.reference()), &cat),
    });
    let mut out = plan::doc(&header)?;
    out.push_str("---\n");
    out.push_str(&cat.kind_config(cni, node));
    plan::scenario_docs(
        &mut out,
        scenarios,
        &PlanSettings {
            run_id: opts.run_id.clone(),
            image: cat.probe_image.reference(),
            gaps: cni.gaps.clone(),
            loopback: opts.loopback,
            probe_timeout: opts.probe_timeout,
            external: KIND_EXTERNAL_DOC.into(),
            external_realised: true,
            cluster_gaps: opts.session_config(String::new(), cni).cluster_gaps,
            probe_modes: opts.probe_modes.clone(),
        },
    )?;
    Ok(out)
}

/// What happens to external peers on kind (plans say it).
pub const KIND_EXTERNAL_DOC: &str = "a container on the kind docker network stands for each external; pods' egress to it is probed and judged on its real address (templates re-bound to it), the gate waits for it, and probes from it are not run (it has no route to pod addresses)";

/// The external peer containers of a plan.
fn external_doc(peers: &[external::ExternalPeer], cat: &Catalogue) -> serde_json::Value {
    let runtime = "docker (or podman)";
    serde_json::json!({
        "what": KIND_EXTERNAL_DOC,
        "containers": peers.iter().map(|p| serde_json::json!({
            "external": format!("{}/{}", crate::model::EXTERNAL_NAMESPACE, p.external),
            "name": p.name,
            "image": cat.probe_image.reference(),
            "network": p.network,
            "serves": p.probes.iter().map(|pr| pr.to_string()).collect::<Vec<_>>(),
            "start": format!("{runtime} {}", crate::shell::join(&p.run_args())),
            "address": format!("{runtime} inspect {}: NetworkSettings.Networks.{}.IPAddress", p.name, p.network),
            "remove": format!("{runtime} rm --force {} (when the run ends, kept cluster or not)", p.name),
        })).collect::<Vec<_>>(),
    })
}

/// How ipBlock cells are judged on clusters (plans say it).
pub const IPBLOCK_DOC: &str = "CIDRs written relative to pods (<ns/pod>/N) are resolved again with the pods' real addresses, and every cell is judged by the oracle on the real addresses";

/// What happens to external peers on clusters (plans say it).
pub const EXTERNAL_DOC: &str =
    "cells from or to an external peer are reported unsupported on this provider";

/// What the plan does about cluster-wide policies on `cni`: which CRDs it installs (pinned,
/// verified) or waits for, and per kind whether policies are applied or their cells held.
pub fn cluster_policies_doc(cat: &Catalogue, cni: &Cni, timeout: Duration) -> serde_json::Value {
    let support = &cni.cluster_policies;
    serde_json::json!({
        "implements": support.implements.iter().map(|k| format!("{k} ({})", k.api_version())).collect::<Vec<_>>(),
        "summary": support.summary.trim(),
        "references": support.references,
        "installCrds": cat.crds_to_install(cni).iter().map(|c| serde_json::json!({
            "crd": c.name,
            "url": c.url,
            "sha256": c.sha256,
            "verification": format!(
                "sha256 checked before use ({}); never applied without it",
                c.sha256_from.clone().unwrap_or_default()
            ),
            "action": "kubectl apply --server-side -f <verified file> (before the CNI)",
        })).collect::<Vec<_>>(),
        "crdsFromCni": (support.crds == crate::cni::catalogue::CrdInstaller::Cni && !support.implements.is_empty())
            .then(|| format!("{}'s own manifest ships the CRDs; the harness installs none", cni.name)),
        "waitForCrds": cat.crds_to_await(cni).iter().map(|c| format!(
            "kubectl wait --for=condition=Established crd/{c} --timeout={}s", timeout.as_secs()
        )).collect::<Vec<_>>(),
        "kinds": crate::policy::cluster::ClusterKind::ALL.iter().map(|k| serde_json::json!({
            "kind": k.as_str(),
            "apiVersion": k.api_version(),
            "decision": match cni.cluster_policy_gap(*k) {
                None => "applied (server-side, cluster-scoped names and selectors confined to the scenario's namespaces) and judged".to_string(),
                Some(why) => format!("not applied; cells it decides are unsupported: {why}"),
            },
        })).collect::<Vec<_>>(),
    })
}

/// The catalogued gaps, for plans.
pub fn gaps_doc(gaps: &[crate::cni::gaps::Gap]) -> Vec<serde_json::Value> {
    gaps.iter()
        .map(|g| {
            serde_json::json!({
                "feature": g.feature.as_str(),
                "what": g.feature.describe(),
                "reason": g.reason,
                "references": g.references,
                "cells": "unsupported with this reason; they never pass or fail",
            })
        })
        .collect()
}

fn install_action(s: &InstallStep) -> String {
    match s {
        InstallStep::Manifest { .. } => "kubectl apply --server-side -f <verified file>".into(),
        InstallStep::HelmChart {
            release,
            namespace,
            values,
            ..
        } => {
            let sets: Vec<String> = values
                .iter()
                .map(|(k, v)| format!("--set {k}={v}"))
                .collect();
            format!(
                "helm install {release} <verified file> --namespace {namespace} {}",
                sets.join(" ")
            )
        }
        InstallStep::NodeArchive {
            directory, members, ..
        } => {
            format!(
                "on every node: docker exec -i <node> tar -x -C {directory} < <only {} from the verified archive of the nodes' architecture>",
                members.join(", ")
            )
        }
    }
}

pub(crate) fn loopback_doc(l: Loopback) -> &'static str {
    match l {
        Loopback::Record => {
            "probed and recorded in the cell's detail, reported unsupported (not judged; CNIs differ, kubernetes#95879)"
        }
        Loopback::Judge => "probed and judged against the oracle like any cell",
    }
}

impl Platform for KindPlatform {
    type Session = ClusterSession<KubeApi>;
    fn info(&self) -> PlatformInfo {
        self.inner.info()
    }
    fn max_parallel(&self) -> usize {
        self.inner.max_parallel()
    }
    /// From the catalogue: the kinds the CNI implements are applied and judged.
    fn cluster_policy_gap(&self, kind: crate::policy::cluster::ClusterKind) -> Option<String> {
        self.inner.cluster_policy_gap(kind)
    }
    fn open(
        &self,
        n: usize,
        scenario: &Scenario,
    ) -> impl Future<Output = Result<ClusterSession<KubeApi>, ProviderError>> + Send {
        self.inner.open(n, scenario)
    }
    /// Deletes the cluster (unless kept). Idempotent: kind succeeds on a missing cluster.
    /// External peers are removed in either case.
    async fn close(&self) -> Result<(), ProviderError> {
        let peers = external::remove(&self.tools, &self.peers).await;
        let cluster = if self.opts.keep_cluster {
            // The scenarios' namespaces go; the cluster stays for inspection.
            self.inner.close().await
        } else {
            self.tools
                .run_kind(&["delete", "cluster", "--name", &self.opts.cluster_name()])
                .await
                .map(|_| ())
        };
        cluster.and(peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_are_prefixed_and_bounded() {
        let o = KindOptions::new("20261126-abcdef", "calico");
        assert_eq!(o.cluster_name(), "netpolc-20261126-abcdef--calico");
        assert_eq!(cluster_run(&o.cluster_name()), Some("20261126-abcdef"));
        let long = KindOptions::new("x".repeat(80), "flannel");
        assert!(long.cluster_name().len() <= MAX_CLUSTER_NAME);
        // The longest run id with the longest catalogued CNI fits, hostname suffix included.
        let max = cluster_name(&"r".repeat(32), "kindnet");
        assert!(max.len() <= MAX_CLUSTER_NAME, "{max}");
        assert!(max.len() + "-control-plane".len() <= 63, "{max}");
        assert_eq!(
            cluster_name(&"r".repeat(32), "a-very-long-cni"),
            format!("netpolc-{}", "r".repeat(32))
        );
        assert_eq!(
            cluster_run(&format!("netpolc-{}", "r".repeat(32))),
            Some(&*"r".repeat(32))
        );
    }

    #[test]
    fn cluster_names_of_runs_whose_ids_prefix_each_other_stay_apart() {
        assert_eq!(cluster_run("netpolc-a--kindnet"), Some("a"));
        assert_eq!(cluster_run("netpolc-a-s1--kindnet"), Some("a-s1"));
        assert_eq!(cluster_run("netpolc-a"), Some("a"));
        // An older netpolc's `netpolc-<run>-<cni>` is run id `<run>-<cni>`, never `<run>`.
        assert_eq!(cluster_run("netpolc-a-calico"), Some("a-calico"));
        assert_eq!(cluster_run("kind"), None);
        assert_eq!(cluster_run("netpolc-Bad"), None);
        assert_eq!(cluster_run("netpolc-a---x"), None);
    }

    #[test]
    fn unknown_cni_dry_run_is_invalid_input() {
        let o = KindOptions::new("r", "weave");
        assert!(
            matches!(dry_run(&[], &o), Err(ProviderError::InvalidInput(m)) if m.contains("kindnet"))
        );
    }

    #[test]
    fn unverified_sources_are_reported() {
        let cat = Catalogue::builtin().expect("catalogue");
        let calico = cat.cni("calico").expect("calico");
        let node = cat.node_image_for(None).expect("image");
        let fetched = vec![Fetched {
            step: calico.install[0].clone(),
            url: calico.install[0]
                .source(Arch::Amd64)
                .map(|s| s.url)
                .unwrap_or_default(),
            bytes: vec![],
            verified: false,
        }];
        let tools = Prerequisites::default();
        let info = platform_info(&cat, calico, node, &fetched, &tools, "c");
        assert!(
            info.warnings
                .iter()
                .any(|w| w.contains("calico.yaml was applied unverified")),
            "{:?}",
            info.warnings
        );
        assert_eq!(
            info.environment.get("cni_version").map(String::as_str),
            Some("v3.30.3")
        );
    }
}
