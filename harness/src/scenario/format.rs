//! The scenario file format (`apiVersion: netpolc/v1`, `kind: Scenario`), as serde types.
//! Documented for authors in `scenarios/README.md`; unknown fields are errors so typos surface.

use std::net::IpAddr;

use serde::Deserialize;

use crate::model::{Labels, Probe, Protocol};

/// The schema version this build reads.
pub const SCENARIO_API_VERSION: &str = "netpolc/v1";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScenarioFile {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub model: ModelSpec,
    /// Default probes of every step (else every declared container port).
    #[serde(default)]
    pub probes: Option<Vec<Probe>>,
    #[serde(default)]
    pub steps: Vec<StepSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelSpec {
    /// Upstream e2e's model: namespaces x,y,z (label `ns=<name>`), pods a,b,c (label `pod=<name>`),
    /// each serving ports 80 and 81 on TCP, UDP and SCTP, named `serve-<port>-<proto>`.
    #[serde(default)]
    pub upstream: Option<UpstreamSpec>,
    #[serde(default)]
    pub namespaces: Vec<NamespaceSpec>,
    #[serde(default)]
    pub pods: Vec<PodSpec>,
    #[serde(default)]
    pub deployments: Vec<DeploymentSpec>,
    /// ClusterIP Services (probed through with `--probe-mode service-ip`).
    #[serde(default)]
    pub services: Vec<super::service_input::ServiceSpec>,
    /// Manifest files (relative to the scenario file) whose Namespaces, Pods, Deployments and
    /// NetworkPolicies form part of the initial state.
    #[serde(default)]
    pub manifests: Vec<String>,
    /// Servers outside the cluster (`(external)/<name>` in tables): only ipBlock peers match them.
    #[serde(default)]
    pub externals: Vec<ExternalSpec>,
}

/// A peer outside the cluster: a container beside the kind nodes, or a namespace outside the
/// local dataplane's pod bridge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExternalSpec {
    pub name: String,
    /// Its model address (default 192.0.2.10, .11, … from TEST-NET-1, outside any pod range).
    #[serde(default)]
    pub ip: Option<IpAddr>,
    #[serde(default)]
    pub ports: Vec<PortSpecYaml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamSpec {
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub pods: Option<Vec<String>>,
    #[serde(default)]
    pub ports: Option<Vec<u16>>,
    #[serde(default)]
    pub protocols: Option<Vec<Protocol>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceSpec {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
}

/// `80/TCP`, or `{port: 80, protocol: TCP, name: http}`.
#[derive(Debug)]
pub enum PortSpecYaml {
    Short(Probe),
    Long {
        port: u16,
        protocol: Option<Protocol>,
        name: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongPort {
    port: u16,
    #[serde(default)]
    protocol: Option<Protocol>,
    #[serde(default)]
    name: Option<String>,
}

/// By hand rather than `untagged`: an untagged enum replaces every error of its variants with
/// "did not match any variant", while `"0/TCP"` or `{port: 80, protcol: TCP}` deserve to be told
/// what is wrong.
impl<'de> Deserialize<'de> for PortSpecYaml {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PortSpecYaml;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a port as \"PORT/PROTO\" or {port, protocol, name}")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<PortSpecYaml, E> {
                s.parse().map(PortSpecYaml::Short).map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<PortSpecYaml, A::Error> {
                let l = LongPort::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                Ok(PortSpecYaml::Long {
                    port: l.port,
                    protocol: l.protocol,
                    name: l.name,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub ip: Option<IpAddr>,
    #[serde(default)]
    pub ports: Vec<PortSpecYaml>,
    #[serde(default)]
    pub image: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeploymentSpec {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub ports: Vec<PortSpecYaml>,
    #[serde(default)]
    pub image: Option<String>,
}

fn default_namespace() -> String {
    "default".to_string()
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StepSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// NetworkPolicy, ClusterNetworkPolicy, AdminNetworkPolicy or BaselineAdminNetworkPolicy
    /// objects, created or replaced when one of that kind and (namespace/)name exists.
    #[serde(default)]
    pub apply: Vec<serde_json::Value>,
    /// Policies to delete: `namespace/name` (NetworkPolicy) or `Kind/name` (cluster-wide).
    #[serde(default)]
    pub delete: Vec<DeleteSpec>,
    #[serde(default)]
    pub label_pods: Vec<LabelPodSpec>,
    #[serde(default)]
    pub label_namespaces: Vec<LabelNamespaceSpec>,
    #[serde(default)]
    pub probes: Option<Vec<Probe>>,
    #[serde(default)]
    pub expect: Vec<ExpectationSpec>,
}

/// A policy to delete: `"namespace/name"` or `"name"` (a NetworkPolicy; namespace `default`),
/// `"ClusterNetworkPolicy/name"` (and the two v1alpha1 kinds), or `{kind, name, namespace}`.
/// Kinds are CamelCase and namespaces lower-case DNS labels, so the string forms never collide.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DeleteSpec {
    Name(String),
    Object(DeleteObject),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteObject {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelPodSpec {
    pub pod: String,
    #[serde(default)]
    pub set: Labels,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelNamespaceSpec {
    pub namespace: String,
    #[serde(default)]
    pub set: Labels,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AllowWord {
    #[default]
    Allow,
    Deny,
}

/// Hand-written expectations: either rules over patterns applied in order on top of `default`, or
/// an upstream-style `table` (`.` allowed, `X` denied).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpectationSpec {
    #[serde(default)]
    pub probe: Option<Probe>,
    #[serde(default)]
    pub probes: Option<Vec<Probe>>,
    #[serde(default)]
    pub default: Option<AllowWord>,
    #[serde(default)]
    pub cells: Vec<CellSpec>,
    #[serde(default)]
    pub table: Option<String>,
}

/// `from`/`to` patterns: `*` (every pod), `ns/*`, `*/pod` or `ns/pod`. `allow` is required:
/// `true`, `false`, or `null` where the API leaves the answer to the implementation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CellSpec {
    pub from: String,
    pub to: String,
    #[serde(deserialize_with = "allow_value")]
    pub allow: Option<bool>,
}

/// Present but possibly `null` (a missing `allow` stays an error).
fn allow_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Option::<bool>::deserialize(d)
}
