//! NetworkPolicy → compiled targets, rules, peers and port matchers.
//!
//! All API defaulting and validation lives here, in one place (the cyclonus/policy-assistant
//! "matcher" idea): protocol defaults to TCP; `policyTypes` defaults to `[Ingress]` plus `Egress` when
//! `spec.egress` is non-empty; a missing or empty `from`/`to` means every peer; missing or empty
//! `ports` means every port; a peer with only `namespaceSelector` means every pod there.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::model::Protocol;
use crate::names;

use super::selector::Selector;
use super::{FieldError, PolicyRef};

/// Which way traffic flows relative to the selected pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
    /// The YAML key holding this direction's rules (`ingress` / `egress`).
    pub fn key(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
    /// The YAML key holding a rule's peers (`from` / `to`).
    pub fn peers_key(self) -> &'static str {
        match self {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        }
    }
}

/// Which namespaces a pod peer looks in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum NamespaceMatch {
    /// No `namespaceSelector`: the policy's own namespace.
    Same(String),
    /// `namespaceSelector` given (`{}` selects every namespace).
    Selector(Selector),
}

/// One element of `from`/`to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Peer {
    /// `podSelector` and/or `namespaceSelector` (AND-ed when both are present).
    Pods {
        namespaces: NamespaceMatch,
        pods: Selector,
    },
    /// `ipBlock`: inside `cidr` and outside every `except`.
    IpBlock { cidr: IpNet, except: Vec<IpNet> },
}

impl Peer {
    pub fn ip_matches(cidr: &IpNet, except: &[IpNet], ip: IpAddr) -> bool {
        cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
    }
}

/// Which destination ports a port entry admits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PortSpec {
    /// `port` omitted: every port of the protocol.
    All,
    /// A number, or `port`..=`endPort`.
    Range { start: u16, end: u16 },
    /// A named port, resolved on the destination pod.
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMatch {
    pub protocol: Protocol,
    pub port: PortSpec,
}

impl PortMatch {
    /// Whether this entry admits `port`/`protocol` on a destination whose named ports resolve with
    /// `resolve` (None when the destination is not a pod or lacks that name: never matches).
    pub fn matches(
        &self,
        protocol: Protocol,
        port: u16,
        resolve: impl Fn(&str, Protocol) -> Option<u16>,
    ) -> bool {
        if self.protocol != protocol {
            return false;
        }
        match &self.port {
            PortSpec::All => true,
            PortSpec::Range { start, end } => (*start..=*end).contains(&port),
            PortSpec::Named(name) => resolve(name, protocol) == Some(port),
        }
    }
}

/// One ingress or egress rule: (any peer) AND (any port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// `None`: `from`/`to` missing or empty, every peer (including outside the cluster).
    pub peers: Option<Vec<Peer>>,
    /// `None`: `ports` missing or empty, every port and protocol.
    pub ports: Option<Vec<PortMatch>>,
}

/// A NetworkPolicy compiled for evaluation. Keeps the source object so providers can apply it and
/// reports can quote it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompiledPolicy {
    pub key: PolicyRef,
    pub pod_selector: Selector,
    /// `None`: the policy does not apply to ingress; `Some(vec![])`: it isolates and allows nothing.
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    #[serde(skip)]
    pub source: NetworkPolicy,
    /// Accepted but suspicious input (e.g. a CIDR with host bits set).
    pub warnings: Vec<FieldError>,
}

impl CompiledPolicy {
    pub fn rules(&self, dir: Direction) -> Option<&[Rule]> {
        match dir {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// Validates and compiles. On failure every problem found is returned, each with its field path.
    pub fn compile(np: &NetworkPolicy, default_namespace: &str) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let name = np.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            errors.push(FieldError::new("metadata.name", "is required"));
        } else if let Err(e) = names::object("NetworkPolicy", &name) {
            errors.push(FieldError::new("metadata.name", e.to_string()));
        }
        let namespace = np
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_string());
        if let Err(e) = names::namespace(&namespace) {
            errors.push(FieldError::new("metadata.namespace", e.to_string()));
        }
        let Some(spec) = &np.spec else {
            errors.push(FieldError::new("spec", "is required"));
            return Err(errors);
        };
        let pod_selector = Selector::compile(
            spec.pod_selector.as_ref().unwrap_or(&Default::default()),
            "spec.podSelector",
            &mut errors,
        );

        let mut types = Vec::new();
        match &spec.policy_types {
            Some(t) if !t.is_empty() => {
                if t.len() > 2 {
                    errors.push(FieldError::new(
                        "spec.policyTypes",
                        "may not have more than 2 items",
                    ));
                }
                for (i, ty) in t.iter().enumerate() {
                    match ty.as_str() {
                        "Ingress" => types.push(Direction::Ingress),
                        "Egress" => types.push(Direction::Egress),
                        other => errors.push(FieldError::new(
                            format!("spec.policyTypes[{i}]"),
                            format!("unsupported value {other:?} (expected Ingress or Egress)"),
                        )),
                    }
                }
            }
            // Defaulting as in the API server: Ingress always, Egress when egress rules exist.
            _ => {
                types.push(Direction::Ingress);
                if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                    types.push(Direction::Egress);
                }
            }
        }

        let mut compile_dir = |dir: Direction| -> Vec<Rule> {
            let rules: Vec<RawRule> = match dir {
                Direction::Ingress => spec
                    .ingress
                    .iter()
                    .flatten()
                    .map(|r| (r.from.as_ref(), r.ports.as_ref()))
                    .collect(),
                Direction::Egress => spec
                    .egress
                    .iter()
                    .flatten()
                    .map(|r| (r.to.as_ref(), r.ports.as_ref()))
                    .collect(),
            };
            rules
                .into_iter()
                .enumerate()
                .map(|(i, (peers, ports))| {
                    let base = format!("spec.{}[{i}]", dir.key());
                    let peers = peers.filter(|p| !p.is_empty()).map(|ps| {
                        ps.iter()
                            .enumerate()
                            .filter_map(|(j, p)| {
                                compile_peer(
                                    p,
                                    &namespace,
                                    &format!("{base}.{}[{j}]", dir.peers_key()),
                                    &mut errors,
                                    &mut warnings,
                                )
                            })
                            .collect()
                    });
                    let ports = ports.filter(|p| !p.is_empty()).map(|ps| {
                        ps.iter()
                            .enumerate()
                            .filter_map(|(j, p)| {
                                compile_port(p, &format!("{base}.ports[{j}]"), &mut errors)
                            })
                            .collect()
                    });
                    Rule { peers, ports }
                })
                .collect()
        };
        let ingress_rules = compile_dir(Direction::Ingress);
        let egress_rules = compile_dir(Direction::Egress);

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CompiledPolicy {
            key: PolicyRef { namespace, name },
            pod_selector,
            ingress: types.contains(&Direction::Ingress).then_some(ingress_rules),
            egress: types.contains(&Direction::Egress).then_some(egress_rules),
            source: np.clone(),
            warnings,
        })
    }
}

/// A rule's peers and ports as written, before compilation (ingress `from` or egress `to`).
type RawRule<'a> = (
    Option<&'a Vec<NetworkPolicyPeer>>,
    Option<&'a Vec<NetworkPolicyPort>>,
);

fn compile_peer(
    p: &NetworkPolicyPeer,
    namespace: &str,
    path: &str,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) -> Option<Peer> {
    let selectors = p.pod_selector.is_some() || p.namespace_selector.is_some();
    match (selectors, &p.ip_block) {
        (false, None) => {
            errors.push(FieldError::new(
                path,
                "must specify a peer (podSelector, namespaceSelector or ipBlock)",
            ));
            None
        }
        (true, Some(_)) => {
            errors.push(FieldError::new(
                path,
                "may not specify ipBlock together with podSelector or namespaceSelector",
            ));
            None
        }
        (true, None) => {
            let pods = p
                .pod_selector
                .as_ref()
                .map(|s| Selector::compile(s, &format!("{path}.podSelector"), errors))
                .unwrap_or_else(Selector::everything);
            let namespaces = match &p.namespace_selector {
                Some(s) => NamespaceMatch::Selector(Selector::compile(
                    s,
                    &format!("{path}.namespaceSelector"),
                    errors,
                )),
                None => NamespaceMatch::Same(namespace.to_string()),
            };
            Some(Peer::Pods { namespaces, pods })
        }
        (false, Some(b)) => compile_ip_block(b, &format!("{path}.ipBlock"), errors, warnings),
    }
}

/// Parses a CIDR as the API server does: host bits are tolerated (the network is meant) but
/// reported as a warning, as the API server does since 1.33.
pub fn parse_cidr(
    s: &str,
    path: &str,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) -> Option<IpNet> {
    match s.parse::<IpNet>() {
        Ok(net) => {
            if net.trunc() != net {
                warnings.push(FieldError::new(
                    path,
                    format!("{s:?} has host bits set; it is read as {}", net.trunc()),
                ));
            }
            Some(net.trunc())
        }
        Err(_) => {
            errors.push(FieldError::new(
                path,
                format!("{s:?} is not a valid CIDR (e.g. 10.0.0.0/16)"),
            ));
            None
        }
    }
}

fn compile_ip_block(
    b: &IPBlock,
    path: &str,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) -> Option<Peer> {
    if b.cidr.is_empty() {
        errors.push(FieldError::new(format!("{path}.cidr"), "is required"));
        return None;
    }
    let cidr = parse_cidr(&b.cidr, &format!("{path}.cidr"), errors, warnings)?;
    let mut except = Vec::new();
    for (i, e) in b.except.iter().flatten().enumerate() {
        let p = format!("{path}.except[{i}]");
        let Some(net) = parse_cidr(e, &p, errors, warnings) else {
            continue;
        };
        // The API requires each except to be a strict subset of cidr (same family, longer prefix).
        let inside = cidr.contains(&net) && net.prefix_len() > cidr.prefix_len();
        if !inside {
            errors.push(FieldError::new(
                p,
                format!("{e:?} must be a strict subset of cidr {:?}", b.cidr),
            ));
            continue;
        }
        except.push(net);
    }
    Some(Peer::IpBlock { cidr, except })
}

fn compile_port(
    p: &NetworkPolicyPort,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Option<PortMatch> {
    // A bad protocol does not stop the port checks: authors see every problem of the entry.
    let protocol = match p.protocol.as_deref() {
        None => Some(Protocol::Tcp),
        Some(s) => match s.parse() {
            Ok(proto) => Some(proto),
            Err(_) => {
                errors.push(FieldError::new(
                    format!("{path}.protocol"),
                    format!("unsupported value {s:?} (expected TCP, UDP or SCTP)"),
                ));
                None
            }
        },
    };
    let port = match (&p.port, p.end_port) {
        (None, None) => PortSpec::All,
        (None, Some(_)) => {
            errors.push(FieldError::new(
                format!("{path}.endPort"),
                "may not be specified when `port` is not specified",
            ));
            return None;
        }
        (Some(IntOrString::Int(n)), end) => {
            let Some(start) = valid_port(*n) else {
                errors.push(FieldError::new(
                    format!("{path}.port"),
                    format!("{n} is not a valid port number (1-65535)"),
                ));
                return None;
            };
            match end {
                None => PortSpec::Range { start, end: start },
                Some(e) => {
                    let Some(end) = valid_port(e) else {
                        errors.push(FieldError::new(
                            format!("{path}.endPort"),
                            format!("{e} is not a valid port number (1-65535)"),
                        ));
                        return None;
                    };
                    if end < start {
                        errors.push(FieldError::new(
                            format!("{path}.endPort"),
                            format!("{end} must be greater than or equal to `port` ({start})"),
                        ));
                        return None;
                    }
                    PortSpec::Range { start, end }
                }
            }
        }
        (Some(IntOrString::String(name)), end) => {
            if end.is_some() {
                errors.push(FieldError::new(
                    format!("{path}.endPort"),
                    "may not be specified when `port` is a named port",
                ));
                return None;
            }
            // A numeric string ("80") is still a name to the API, and an invalid one.
            if let Err(e) = names::port_name(name) {
                errors.push(FieldError::new(format!("{path}.port"), e.to_string()));
                return None;
            }
            PortSpec::Named(name.clone())
        }
    };
    Some(PortMatch {
        protocol: protocol?,
        port,
    })
}

fn valid_port(n: i32) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

// The name checks live in `crate::names`; these aliases keep older call sites compiling.
pub use crate::names::{
    is_dns1123_label as is_dns_label, is_dns1123_subdomain as is_dns_subdomain, is_port_name,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(spec: serde_json::Value) -> Result<CompiledPolicy, Vec<FieldError>> {
        let np: NetworkPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "x"}, "spec": spec}))
        .unwrap_or_else(|e| panic!("{e}"));
        CompiledPolicy::compile(&np, "default")
    }

    fn paths(r: Result<CompiledPolicy, Vec<FieldError>>) -> Vec<String> {
        match r {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.into_iter().map(|e| e.path).collect(),
        }
    }

    #[test]
    fn every_problem_of_a_port_entry_is_reported() {
        let r = compile(serde_json::json!({"podSelector": {},
            "ingress": [{"ports": [{"protocol": "ICMP", "port": 80, "endPort": 70}]}]}));
        assert_eq!(
            paths(r),
            [
                "spec.ingress[0].ports[0].protocol",
                "spec.ingress[0].ports[0].endPort"
            ]
        );
    }

    #[test]
    fn port_rules_follow_the_api() {
        let cases = [
            (
                serde_json::json!({"port": 0}),
                "spec.ingress[0].ports[0].port",
            ),
            (
                serde_json::json!({"port": 70000}),
                "spec.ingress[0].ports[0].port",
            ),
            (
                serde_json::json!({"endPort": 90}),
                "spec.ingress[0].ports[0].endPort",
            ),
            (
                serde_json::json!({"port": "http", "endPort": 90}),
                "spec.ingress[0].ports[0].endPort",
            ),
            (
                serde_json::json!({"port": "80"}),
                "spec.ingress[0].ports[0].port",
            ),
        ];
        for (port, path) in cases {
            let r = compile(
                serde_json::json!({"podSelector": {}, "ingress": [{"ports": [port.clone()]}]}),
            );
            assert_eq!(paths(r), [path], "{port}");
        }
    }

    #[test]
    fn policy_types_default_and_validate() {
        let p = compile(serde_json::json!({"podSelector": {}, "egress": [{}]}))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(p.ingress.is_some() && p.egress.is_some());
        let p = compile(serde_json::json!({"podSelector": {}, "egress": []}))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(p.ingress.is_some() && p.egress.is_none());
        let r =
            compile(serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress", "Sideways"]}));
        assert_eq!(paths(r), ["spec.policyTypes[1]"]);
    }

    #[test]
    fn peers_need_exactly_one_kind() {
        let r = compile(
            serde_json::json!({"podSelector": {}, "ingress": [{"from": [{},
            {"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
        );
        assert_eq!(
            paths(r),
            ["spec.ingress[0].from[0]", "spec.ingress[0].from[1]"]
        );
    }
}
