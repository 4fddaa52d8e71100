//! The catalogue of real CNIs the kind provider installs — data (`harness/cni-catalogue.yaml`),
//! embedded at build time and validated here.
//!
//! Each entry pins a version and its install sources (exact-version URLs, a sha256 where one was
//! found), says how to tell it is ready (DaemonSets to wait for), whether it enforces NetworkPolicy
//! (and so which verdict a run on it must reach), and its known gaps, which turn cells into
//! documented `unsupported` ones instead of failures. Adding a CNI is adding an entry, a
//! `kind-config/<name>.yaml` (tests check it matches) and nothing in CI (its matrix is checked
//! against this list).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ipnet::IpNet;
use serde::Deserialize;

pub use super::gaps::{Gap, GapFeature};
use crate::policy::cluster::ClusterKind;
use crate::provider::ProviderError;
use crate::report::model::Verdict;

/// The catalogue as shipped in this build.
pub const CATALOGUE_YAML: &str = include_str!("../../cni-catalogue.yaml");

/// Label every object a run creates carries (and the only thing cleanup selects on).
pub const RUN_ID_LABEL: &str = "netpolc.io/run-id";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Catalogue {
    pub kind: KindPins,
    pub kubectl: ToolPin,
    pub helm: ToolPin,
    pub probe_image: ImagePin,
    /// The network-policy-api CRDs per API version, pinned to a release with checksums.
    pub network_policy_api: Vec<PolicyApiRelease>,
    pub cnis: Vec<Cni>,
}

/// One API version of the network-policy-api and the CRDs that serve it, from a tagged release.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyApiRelease {
    /// `policy.networking.k8s.io/v1alpha2`
    pub api_version: String,
    /// The release tag the CRD files are taken from (`v0.2.0`).
    pub release: String,
    pub kinds: Vec<ClusterKind>,
    pub crds: Vec<CrdSource>,
}

/// One CRD manifest: its object name (what `kubectl wait --for=condition=Established` waits
/// for) and the pinned file. Its sha256 is mandatory: an unverified CRD is never installed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CrdSource {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub sha256_from: Option<String>,
}

/// Which cluster-wide policy kinds a CNI enforces, and who installs their CRDs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterPolicySupport {
    /// The kinds the CNI enforces (empty: none). A scenario's cells decided by any other kind
    /// are `unsupported` on it, with [`ClusterPolicySupport::summary`] as the reason.
    pub implements: Vec<ClusterKind>,
    /// Who installs the CRDs of the implemented kinds.
    #[serde(default)]
    pub crds: CrdInstaller,
    /// One sentence naming the CNI and what it implements (reasons and plans quote it).
    pub summary: String,
    pub references: Vec<String>,
}

/// `harness`: the pinned CRDs of [`Catalogue::network_policy_api`] are installed before the
/// scenarios; `cni`: the CNI's own manifest ships them (the harness only waits for them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrdInstaller {
    #[default]
    Harness,
    Cni,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KindPins {
    pub version: String,
    pub release_notes: String,
    pub default_kubernetes: String,
    pub node_images: Vec<NodeImage>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolPin {
    pub version: String,
}

/// A `kindest/node` image for one Kubernetes minor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeImage {
    /// `1.34`
    pub kubernetes: String,
    /// `kindest/node:v1.34.0`
    pub image: String,
    /// `sha256:…`; `None` means "digest unverified" (pinned by tag only).
    #[serde(default)]
    pub digest: Option<String>,
}

impl NodeImage {
    /// `image@digest`, or the bare tag when no digest is known.
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{}", self.image, d),
            None => self.image.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImagePin {
    pub image: String,
    #[serde(default)]
    pub digest: Option<String>,
}

impl ImagePin {
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{}", self.image, d),
            None => self.image.clone(),
        }
    }
}

/// A downloadable, version-pinned artefact.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub url: String,
    /// Lower-case hex; when present the artefact is verified before use.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Where the checksum comes from (it is not always the upstream project itself).
    #[serde(default)]
    pub sha256_from: Option<String>,
}

/// One install action, in order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum InstallStep {
    /// A multi-document manifest, applied server-side (`kubectl apply --server-side`).
    #[serde(rename_all = "camelCase")]
    Manifest {
        url: String,
        #[serde(default)]
        sha256: Option<String>,
        #[serde(default)]
        sha256_from: Option<String>,
    },
    /// A Helm chart archive, installed with `helm install RELEASE FILE -n NS --set k=v…`.
    #[serde(rename_all = "camelCase")]
    HelmChart {
        url: String,
        #[serde(default)]
        sha256: Option<String>,
        #[serde(default)]
        sha256_from: Option<String>,
        release: String,
        namespace: String,
        #[serde(default)]
        values: BTreeMap<String, String>,
    },
    /// A tar.gz per node architecture, of which only `members` are unpacked into `directory` on
    /// every node (e.g. the `bridge` CNI plugin flannel needs; kind's own plugins stay as they are).
    #[serde(rename_all = "camelCase")]
    NodeArchive {
        architectures: BTreeMap<Arch, Source>,
        directory: String,
        members: Vec<String>,
    },
}

/// A node architecture the catalogue pins binaries for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Reads what `uname -m`, Go (`GOARCH`), Docker or Podman call the architecture; anything
    /// else is refused by name, so a binary of the wrong architecture is never installed.
    pub fn parse(s: &str) -> Result<Arch, ProviderError> {
        match s.trim().rsplit('/').next().unwrap_or_default() {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(ProviderError::Prerequisite(format!(
                "unsupported node architecture {other:?}: the catalogue pins binaries for amd64 and \
                 arm64 only (add the architecture's sources to harness/cni-catalogue.yaml)"
            ))),
        }
    }

    /// This process's architecture (the default when the container runtime does not say).
    pub fn host() -> Result<Arch, ProviderError> {
        Arch::parse(std::env::consts::ARCH)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl InstallStep {
    /// The artefact this step installs on nodes of `arch` (`None`: not pinned for it).
    pub fn source(&self, arch: Arch) -> Option<Source> {
        let (url, sha256, sha256_from) = match self {
            InstallStep::Manifest {
                url,
                sha256,
                sha256_from,
            }
            | InstallStep::HelmChart {
                url,
                sha256,
                sha256_from,
                ..
            } => (url, sha256, sha256_from),
            InstallStep::NodeArchive { architectures, .. } => {
                return architectures.get(&arch).cloned();
            }
        };
        Some(Source {
            url: url.clone(),
            sha256: sha256.clone(),
            sha256_from: sha256_from.clone(),
        })
    }

    /// Every artefact of the step, whatever the architecture (for validation and plans).
    pub fn all_sources(&self) -> Vec<(Option<Arch>, Source)> {
        match self {
            InstallStep::NodeArchive { architectures, .. } => architectures
                .iter()
                .map(|(a, s)| (Some(*a), s.clone()))
                .collect(),
            _ => self
                .source(Arch::Amd64)
                .map(|s| vec![(None, s)])
                .unwrap_or_default(),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            InstallStep::Manifest { .. } => "manifest",
            InstallStep::HelmChart { .. } => "helmChart",
            InstallStep::NodeArchive { .. } => "nodeArchive",
        }
    }
}

/// A DaemonSet whose rollout means the CNI is ready.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Readiness {
    pub namespace: String,
    pub daemon_set: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cni {
    pub name: String,
    pub description: String,
    pub version: String,
    pub disable_default_cni: bool,
    pub pod_subnet: IpNet,
    pub install: Vec<InstallStep>,
    pub readiness: Vec<Readiness>,
    pub enforces_network_policy: bool,
    /// The verdict a run on this CNI must reach (`policies-ignored` for non-enforcing ones).
    pub expected_verdict: Verdict,
    pub gaps: Vec<Gap>,
    pub cluster_policies: ClusterPolicySupport,
}

impl Cni {
    /// The catalogued gap for `feature`, if any.
    pub fn gap_for(&self, feature: GapFeature) -> Option<&Gap> {
        self.gaps.iter().find(|g| g.feature == feature)
    }

    /// Why cells decided by a `kind` policy cannot be judged on this CNI (`None`: it enforces
    /// that kind, and the session applies such policies).
    pub fn cluster_policy_gap(&self, kind: ClusterKind) -> Option<String> {
        let s = &self.cluster_policies;
        (!s.implements.contains(&kind)).then(|| {
            format!(
                "{kind} ({}) is not enforced by CNI {}: {}",
                kind.api_version(),
                self.name,
                s.summary.trim()
            )
        })
    }

    /// Whether installing needs the `helm` binary.
    pub fn needs_helm(&self) -> bool {
        self.install
            .iter()
            .any(|s| matches!(s, InstallStep::HelmChart { .. }))
    }
}

/// Why the embedded catalogue is unusable (a build defect, caught by the unit tests).
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cni-catalogue.yaml does not parse: {0}")]
    Parse(String),
    #[error("cni-catalogue.yaml is invalid: {0}")]
    Invalid(String),
}

impl Catalogue {
    /// The catalogue compiled into this build.
    pub fn builtin() -> Result<Catalogue, CatalogueError> {
        Catalogue::parse(CATALOGUE_YAML)
    }

    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let options = serde_saphyr::options! { strict_booleans: true };
        let c: Catalogue = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| CatalogueError::Parse(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Pinning rules: exact versions in URLs, well-formed checksums, unique names, a default
    /// node image that exists.
    fn validate(&self) -> Result<(), CatalogueError> {
        let bad = |m: String| Err(CatalogueError::Invalid(m));
        let mut names = std::collections::BTreeSet::new();
        for cni in &self.cnis {
            if !names.insert(cni.name.as_str()) {
                return bad(format!("CNI {:?} is listed twice", cni.name));
            }
            if !crate::policy::compile::is_dns_label(&cni.name) {
                return bad(format!("CNI name {:?} is not a DNS label", cni.name));
            }
            if cni.disable_default_cni == cni.install.is_empty() {
                return bad(format!(
                    "CNI {:?}: disableDefaultCni must be true exactly when it has install steps",
                    cni.name
                ));
            }
            if cni.readiness.is_empty() {
                return bad(format!("CNI {:?} has no readiness check", cni.name));
            }
            if !cni.enforces_network_policy && cni.expected_verdict != Verdict::PoliciesIgnored {
                return bad(format!(
                    "CNI {:?} does not enforce NetworkPolicy, so its expected verdict must be policies-ignored",
                    cni.name
                ));
            }
            let mut features = std::collections::BTreeSet::new();
            for g in &cni.gaps {
                if !features.insert(g.feature) {
                    return bad(format!(
                        "CNI {:?} lists the gap {} twice",
                        cni.name, g.feature
                    ));
                }
                if g.reason.trim().is_empty() {
                    return bad(format!(
                        "CNI {:?}: gap {} has no reason",
                        cni.name, g.feature
                    ));
                }
                if let Some(r) = g.references.iter().find(|r| !r.starts_with("https://")) {
                    return bad(format!(
                        "CNI {:?}: gap {} reference {r:?} is not an https URL",
                        cni.name, g.feature
                    ));
                }
            }
            for step in &cni.install {
                if let InstallStep::NodeArchive {
                    architectures,
                    members,
                    ..
                } = step
                {
                    for arch in [Arch::Amd64, Arch::Arm64] {
                        if !architectures.contains_key(&arch) {
                            return bad(format!(
                                "CNI {:?}: a nodeArchive needs a source for {arch}",
                                cni.name
                            ));
                        }
                    }
                    if members.is_empty() {
                        return bad(format!(
                            "CNI {:?}: a nodeArchive names the members it unpacks",
                            cni.name
                        ));
                    }
                }
                for (arch, src) in step.all_sources() {
                    if let Some(a) = arch
                        && !src.url.contains(&format!("-{a}"))
                    {
                        return bad(format!("{}: the {a} source does not name {a}", src.url));
                    }
                    let lower = src.url.to_ascii_lowercase();
                    if !lower.starts_with("https://") {
                        return bad(format!("{}: not an https URL", src.url));
                    }
                    if lower.contains("latest")
                        || lower.contains("/master/")
                        || lower.contains("/main/")
                    {
                        return bad(format!(
                            "{}: sources must name an exact version, never latest or a branch",
                            src.url
                        ));
                    }
                    if !src.url.contains(cni.version.trim_start_matches('v'))
                        && !matches!(step, InstallStep::NodeArchive { .. })
                    {
                        return bad(format!(
                            "{}: the URL does not contain CNI {:?}'s pinned version {}",
                            src.url, cni.name, cni.version
                        ));
                    }
                    if let Some(sum) = &src.sha256 {
                        if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return bad(format!(
                                "{}: sha256 {sum:?} is not 64 hex digits",
                                src.url
                            ));
                        }
                        if src.sha256_from.is_none() {
                            return bad(format!("{}: sha256 without sha256From", src.url));
                        }
                    }
                }
            }
        }
        self.validate_policy_api()?;
        if self.node_image(&self.kind.default_kubernetes).is_none() {
            return bad(format!(
                "no node image for the default Kubernetes {}",
                self.kind.default_kubernetes
            ));
        }
        for img in &self.kind.node_images {
            if let Some(d) = &img.digest
                && (!d.starts_with("sha256:") || d.len() != 71)
            {
                return bad(format!("{}: malformed digest {d:?}", img.image));
            }
        }
        Ok(())
    }

    /// The CRD pins: every kind served exactly once, at its own API version, from an https file
    /// of the release's tag with a sha256 (never installed unverified); every CNI's kinds are
    /// pinned (or shipped by the CNI itself) and its summary names it.
    fn validate_policy_api(&self) -> Result<(), CatalogueError> {
        let bad = |m: String| Err(CatalogueError::Invalid(m));
        let mut served = std::collections::BTreeSet::new();
        for r in &self.network_policy_api {
            for k in &r.kinds {
                if k.api_version() != r.api_version {
                    return bad(format!(
                        "networkPolicyApi: {k} is served at {}, not {}",
                        k.api_version(),
                        r.api_version
                    ));
                }
                if !served.insert(*k) {
                    return bad(format!("networkPolicyApi: {k} is pinned twice"));
                }
            }
            if r.crds.len() != r.kinds.len() {
                return bad(format!(
                    "networkPolicyApi {}: one CRD per kind is needed",
                    r.api_version
                ));
            }
            for c in &r.crds {
                if !c.url.starts_with("https://") || !c.url.contains(&format!("/{}/", r.release)) {
                    return bad(format!(
                        "{}: a CRD is fetched over https from its release's tag {}",
                        c.url, r.release
                    ));
                }
                match &c.sha256 {
                    Some(sum) if sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()) => {}
                    Some(sum) => {
                        return bad(format!("{}: sha256 {sum:?} is not 64 hex digits", c.url));
                    }
                    None => {
                        return bad(format!(
                            "{}: no sha256 pinned; CRDs are never installed unverified",
                            c.url
                        ));
                    }
                }
                if c.sha256_from.is_none() {
                    return bad(format!("{}: sha256 without sha256From", c.url));
                }
                if !crate::names::is_dns1123_subdomain(&c.name) {
                    return bad(format!("{:?} is not a CRD name", c.name));
                }
            }
        }
        for cni in &self.cnis {
            let s = &cni.cluster_policies;
            if !s.summary.contains(&capitalised(&cni.name)) && !s.summary.contains(&cni.name) {
                return bad(format!(
                    "CNI {:?}: clusterPolicies.summary must name the CNI",
                    cni.name
                ));
            }
            if s.crds == CrdInstaller::Harness
                && let Some(k) = s.implements.iter().find(|k| !served.contains(k))
            {
                return bad(format!(
                    "CNI {:?} implements {k}, whose CRD networkPolicyApi does not pin",
                    cni.name
                ));
            }
            if let Some(r) = s.references.iter().find(|r| !r.starts_with("https://")) {
                return bad(format!(
                    "CNI {:?}: clusterPolicies reference {r:?} is not an https URL",
                    cni.name
                ));
            }
        }
        Ok(())
    }

    /// The pinned CRDs to install for `cni` before its scenarios (none when it implements no
    /// kind, or ships the CRDs itself), in catalogue order.
    pub fn crds_to_install(&self, cni: &Cni) -> Vec<&CrdSource> {
        let s = &cni.cluster_policies;
        if s.crds == CrdInstaller::Cni {
            return Vec::new();
        }
        self.network_policy_api
            .iter()
            .flat_map(|r| r.kinds.iter().zip(&r.crds))
            .filter(|(k, _)| s.implements.contains(k))
            .map(|(_, c)| c)
            .collect()
    }

    /// The CRD names `cni`'s implemented kinds need established before the scenarios run.
    pub fn crds_to_await(&self, cni: &Cni) -> Vec<String> {
        let s = &cni.cluster_policies;
        s.implements
            .iter()
            .map(|k| format!("{}.policy.networking.k8s.io", plural(*k)))
            .collect()
    }

    pub fn names(&self) -> Vec<&str> {
        self.cnis.iter().map(|c| c.name.as_str()).collect()
    }

    /// Looks a CNI up by name; an unknown name is bad input (exit 2) listing the known ones.
    pub fn cni(&self, name: &str) -> Result<&Cni, ProviderError> {
        self.cnis.iter().find(|c| c.name == name).ok_or_else(|| {
            ProviderError::InvalidInput(format!(
                "unknown CNI {name:?} for the kind provider; known: {}",
                self.names().join(", ")
            ))
        })
    }

    /// The node image for a Kubernetes minor (`1.34`; a leading `v` and a patch are tolerated).
    pub fn node_image(&self, kubernetes: &str) -> Option<&NodeImage> {
        let want = kubernetes.trim_start_matches('v');
        let minor: String = want.split('.').take(2).collect::<Vec<_>>().join(".");
        self.kind.node_images.iter().find(|i| i.kubernetes == minor)
    }

    /// Resolves an optional `--kubernetes` request to a node image (unknown → exit 2).
    pub fn node_image_for(&self, kubernetes: Option<&str>) -> Result<&NodeImage, ProviderError> {
        let want = kubernetes.unwrap_or(&self.kind.default_kubernetes);
        self.node_image(want).ok_or_else(|| {
            ProviderError::InvalidInput(format!(
                "no pinned kind node image for Kubernetes {want:?}; known: {}",
                self.kind
                    .node_images
                    .iter()
                    .map(|i| i.kubernetes.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// The kind cluster config for `cni` on `image`: one control plane and two workers.
    /// `kind-config/<cni>.yaml` holds this rendering for the default image (checked by tests).
    pub fn kind_config(&self, cni: &Cni, image: &NodeImage) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# kind {} cluster for the {} CNI ({}), generated from harness/cni-catalogue.yaml.",
            self.kind.version, cni.name, cni.version
        );
        let _ = writeln!(s, "kind: Cluster");
        let _ = writeln!(s, "apiVersion: kind.x-k8s.io/v1alpha4");
        let _ = writeln!(s, "networking:");
        if cni.disable_default_cni {
            let _ = writeln!(s, "  disableDefaultCNI: true");
        }
        let _ = writeln!(s, "  podSubnet: {}", cni.pod_subnet);
        let _ = writeln!(s, "nodes:");
        for role in ["control-plane", "worker", "worker"] {
            let _ = writeln!(s, "  - role: {role}");
            let _ = writeln!(s, "    image: {}", image.reference());
        }
        s
    }
}

/// `calico` → `Calico` (summaries use the product's spelling).
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The resource (plural) name of a kind, as its CRD serves it.
pub fn plural(kind: ClusterKind) -> &'static str {
    match kind {
        ClusterKind::ClusterNetworkPolicy => "clusternetworkpolicies",
        ClusterKind::AdminNetworkPolicy => "adminnetworkpolicies",
        ClusterKind::BaselineAdminNetworkPolicy => "baselineadminnetworkpolicies",
    }
}

/// Verifies `bytes` against an expected sha256 (lower- or upper-case hex).
pub fn verify_sha256(url: &str, bytes: &[u8], expected: &str) -> Result<(), ProviderError> {
    use sha2::{Digest, Sha256};
    let got = Sha256::digest(bytes);
    let got_hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
    if got_hex.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ProviderError::Failed(format!(
            "checksum mismatch for {url}: expected sha256 {expected}, got {got_hex}; \
             refusing to apply it (update harness/cni-catalogue.yaml only after checking the new artefact)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Catalogue {
        match Catalogue::builtin() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn builtin_catalogue_parses_and_lists_the_four_cnis() {
        assert_eq!(cat().names(), ["kindnet", "calico", "cilium", "flannel"]);
    }

    #[test]
    fn unknown_cni_is_invalid_input_listing_known_ones() {
        let c = cat();
        let err = c.cni("weave").expect_err("weave is not catalogued");
        match err {
            ProviderError::InvalidInput(m) => {
                assert!(m.contains("\"weave\""), "{m}");
                assert!(m.contains("kindnet, calico, cilium, flannel"), "{m}");
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn non_enforcing_cnis_expect_policies_ignored() {
        let c = cat();
        let flannel = c.cni("flannel").expect("flannel");
        assert!(!flannel.enforces_network_policy);
        assert_eq!(flannel.expected_verdict, Verdict::PoliciesIgnored);
        for cni in c.cnis.iter().filter(|c| c.enforces_network_policy) {
            assert_eq!(cni.expected_verdict, Verdict::Conformant, "{}", cni.name);
        }
    }

    #[test]
    fn kind_configs_on_disk_match_the_catalogue() {
        let c = cat();
        let image = c.node_image_for(None).expect("default image");
        for cni in &c.cnis {
            let path = format!(
                "{}/../kind-config/{}.yaml",
                env!("CARGO_MANIFEST_DIR"),
                cni.name
            );
            if std::env::var_os("NETPOLC_BLESS_KIND_CONFIG").is_some() {
                std::fs::write(&path, c.kind_config(cni, image)).expect("write kind config");
            }
            let on_disk = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{path}: {e} (every catalogued CNI needs one)"));
            assert_eq!(on_disk, c.kind_config(cni, image), "{path} drifted");
        }
    }

    #[test]
    fn kind_config_disables_default_cni_only_for_installed_cnis() {
        let c = cat();
        let image = c.node_image_for(Some("1.33")).expect("1.33");
        let kindnet = c.kind_config(c.cni("kindnet").expect("kindnet"), image);
        assert!(!kindnet.contains("disableDefaultCNI"));
        let calico = c.kind_config(c.cni("calico").expect("calico"), image);
        assert!(calico.contains("disableDefaultCNI: true"));
        assert!(calico.contains("podSubnet: 192.168.0.0/16"));
        assert_eq!(calico.matches("kindest/node:v1.33.4@sha256:").count(), 3);
    }

    #[test]
    fn node_image_lookup_accepts_patch_and_v_prefix() {
        let c = cat();
        assert_eq!(
            c.node_image("v1.32.8").map(|i| i.image.as_str()),
            Some("kindest/node:v1.32.8")
        );
        assert!(matches!(
            c.node_image_for(Some("1.20")),
            Err(ProviderError::InvalidInput(_))
        ));
    }

    #[test]
    fn validation_rejects_floating_sources_and_bad_checksums() {
        let good = CATALOGUE_YAML;
        let latest = good.replace(
            "flannel/releases/download/v0.27.4/kube-flannel.yml",
            "flannel/releases/latest/download/kube-flannel.yml",
        );
        assert!(matches!(
            Catalogue::parse(&latest),
            Err(CatalogueError::Invalid(m)) if m.contains("exact version")
        ));
        let short = good.replace(
            "f17c57f82ffef1d53dbf558ac30755241980563044622778a15df339e4346c57",
            "f17c57",
        );
        assert!(matches!(
            Catalogue::parse(&short),
            Err(CatalogueError::Invalid(m)) if m.contains("64 hex")
        ));
        let lying = good.replace(
            "enforcesNetworkPolicy: false\n    expectedVerdict: policies-ignored",
            "enforcesNetworkPolicy: false\n    expectedVerdict: conformant",
        );
        assert!(matches!(
            Catalogue::parse(&lying),
            Err(CatalogueError::Invalid(_))
        ));
    }

    #[test]
    fn sha256_verification_detects_tampering() {
        // sha256("abc")
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(verify_sha256("u", b"abc", abc).is_ok());
        assert!(matches!(
            verify_sha256("u", b"abd", abc),
            Err(ProviderError::Failed(m)) if m.contains("checksum mismatch")
        ));
    }

    #[test]
    fn cilium_gaps_are_features_with_references() {
        let c = cat();
        let cilium = c.cni("cilium").expect("cilium");
        let ipblock = cilium
            .gap_for(GapFeature::IpBlockPodIps)
            .expect("Cilium does not apply ipBlock to pod addresses");
        assert!(
            ipblock.references.iter().any(|r| r.ends_with("/19601")),
            "{ipblock:?}"
        );
        assert!(cilium.gap_for(GapFeature::Sctp).is_some());
        for name in ["calico", "kindnet", "flannel"] {
            assert!(c.cni(name).expect(name).gaps.is_empty(), "{name}");
        }
    }

    #[test]
    fn gaps_name_known_features_only() {
        let bad = CATALOGUE_YAML.replace("feature: sctp", "feature: sctpp");
        assert!(matches!(
            Catalogue::parse(&bad),
            Err(CatalogueError::Parse(m)) if m.contains("unknown gap feature")
        ));
        let twice = CATALOGUE_YAML.replace("feature: sctp", "feature: ipBlock-pod-ips");
        assert!(matches!(
            Catalogue::parse(&twice),
            Err(CatalogueError::Invalid(m)) if m.contains("twice")
        ));
    }
}
