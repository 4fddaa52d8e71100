//! Cluster-wide policies of the network-policy-api (kubernetes-sigs/network-policy-api), compiled
//! for the oracle: `ClusterNetworkPolicy` (`policy.networking.k8s.io/v1alpha2`, tiers `Admin` and
//! `Baseline`, actions `Accept`/`Deny`/`Pass`) and its predecessors `AdminNetworkPolicy` and
//! `BaselineAdminNetworkPolicy` (`v1alpha1`, actions `Allow`/`Deny`/`Pass`; the baseline one is a
//! singleton named `default` with `Allow`/`Deny` only).
//!
//! [`api`] mirrors the CRDs as serde types; [`compile`] validates them the way the API server does
//! with the CRD schema and its CEL rules (plus what every implementation needs to parse them, such
//! as well-formed label selectors) and turns them into the [`ClusterPolicy`] the oracle evaluates.
//! Both API versions compile to the same types: v1alpha1 `Allow` is [`Action::Accept`], an
//! AdminNetworkPolicy sits in [`Tier::Admin`], a BaselineAdminNetworkPolicy in [`Tier::Baseline`].

pub mod api;
pub mod compile;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::model::{Pod, Probe, Protocol};

use super::FieldError;
use super::selector::Selector;

pub use compile::compile;

/// The three kinds, with the API version each is served at. (Deserialized by exact kind name:
/// the CNI catalogue lists the kinds each CNI implements.)
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub enum ClusterKind {
    ClusterNetworkPolicy,
    AdminNetworkPolicy,
    BaselineAdminNetworkPolicy,
}

/// `apiVersion` of `ClusterNetworkPolicy` (network-policy-api v0.2).
pub const API_V1ALPHA2: &str = "policy.networking.k8s.io/v1alpha2";
/// `apiVersion` of `AdminNetworkPolicy` / `BaselineAdminNetworkPolicy` (release-0.1 line).
pub const API_V1ALPHA1: &str = "policy.networking.k8s.io/v1alpha1";

impl ClusterKind {
    pub const ALL: [ClusterKind; 3] = [
        ClusterKind::ClusterNetworkPolicy,
        ClusterKind::AdminNetworkPolicy,
        ClusterKind::BaselineAdminNetworkPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            ClusterKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            ClusterKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
        }
    }

    /// The kind named `kind` (exact spelling, as `kind:` is case-sensitive).
    pub fn from_kind(kind: &str) -> Option<ClusterKind> {
        ClusterKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    pub fn api_version(self) -> &'static str {
        match self {
            ClusterKind::ClusterNetworkPolicy => API_V1ALPHA2,
            _ => API_V1ALPHA1,
        }
    }

    /// v1alpha1 spells `Accept` as `Allow`.
    pub fn is_v1alpha1(self) -> bool {
        self != ClusterKind::ClusterNetworkPolicy
    }

    /// The CRD's item limit for rules, peers and port entries: 25 in v1alpha2, 100 in v1alpha1
    /// (networks and domainNames are limited to 25 in both).
    pub fn max_items(self) -> usize {
        if self.is_v1alpha1() { 100 } else { 25 }
    }
}

impl fmt::Display for ClusterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Kind/name` of a cluster-scoped policy. Kinds are CamelCase and namespaces lower-case, so the
/// string form never collides with a NetworkPolicy's `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterPolicyRef {
    pub kind: ClusterKind,
    pub name: String,
}

impl fmt::Display for ClusterPolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

impl Serialize for ClusterPolicyRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where a policy sits relative to NetworkPolicy: `Admin` before it, `Baseline` after it (only
/// for pods no NetworkPolicy isolates in that direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Tier {
    Admin,
    Baseline,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's action. `Accept` and `Deny` end the evaluation of the direction; `Pass` skips the rest
/// of the tier (from the Admin tier to NetworkPolicy, from the Baseline tier to the default allow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Action {
    Accept,
    Deny,
    Pass,
}

impl Action {
    /// The word as the policy's API version writes it (`Allow` in v1alpha1).
    pub fn word(self, kind: ClusterKind) -> &'static str {
        match (self, kind.is_v1alpha1()) {
            (Action::Accept, true) => "Allow",
            (Action::Accept, false) => "Accept",
            (Action::Deny, _) => "Deny",
            (Action::Pass, _) => "Pass",
        }
    }
}

/// Which pods a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Subject {
    /// Every pod of the namespaces the selector selects.
    Namespaces(Selector),
    /// Pods matching `pods` in namespaces matching `namespaces` (both must hold).
    Pods {
        namespaces: Selector,
        pods: Selector,
    },
}

/// One element of a rule's `from`/`to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ClusterPeer {
    /// Every pod of the selected namespaces.
    Namespaces(Selector),
    /// Pods matching `pods` in namespaces matching `namespaces`.
    Pods {
        namespaces: Selector,
        pods: Selector,
    },
    /// CIDRs (egress only). They match pod addresses too: the API says cluster-internal traffic is
    /// checked against `networks` like any other (types doc of `ClusterNetworkPolicyEgressPeer`).
    Networks(Vec<IpNet>),
    /// Node addresses (experimental, egress only). The model has nodes but no pod on a node's
    /// address (no host-network pods), so this peer matches no cell of the matrix.
    Nodes(Selector),
    /// DNS names (experimental, egress only). Probes address pods by IP and the model has no DNS,
    /// so this peer matches no cell of the matrix.
    DomainNames(Vec<String>),
    /// A peer whose only field this build does not know (a newer API version). The API asks
    /// implementations to fail closed; see [`ClusterRule::fail_closed`].
    Unknown(String),
}

impl ClusterPeer {
    /// Whether this peer admits pod `p`, whose namespace carries `ns_labels`.
    pub fn matches(&self, p: &Pod, ns_labels: Option<&crate::model::Labels>) -> bool {
        let ns_ok = |sel: &Selector| ns_labels.is_some_and(|l| sel.matches(l));
        match self {
            ClusterPeer::Namespaces(ns) => ns_ok(ns),
            ClusterPeer::Pods { namespaces, pods } => ns_ok(namespaces) && pods.matches(&p.labels),
            ClusterPeer::Networks(nets) => nets_contain(nets, p.ip),
            ClusterPeer::Nodes(_) | ClusterPeer::DomainNames(_) | ClusterPeer::Unknown(_) => false,
        }
    }
}

fn nets_contain(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// One entry of `protocols` (v1alpha2) or `ports` (v1alpha1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ClusterPort {
    /// A port number (`start == end`) or an inclusive range of one protocol.
    Range {
        protocol: Protocol,
        start: u16,
        end: u16,
    },
    /// A named container port of the destination pod; the container port's own protocol counts
    /// (neither API version gives a protocol with the name).
    Named(String),
    /// A v1alpha1 entry whose protocol is not TCP, UDP or SCTP (the CRD does not restrict it): no
    /// probe can match it.
    Never,
}

impl ClusterPort {
    /// Whether this entry admits `probe` on the destination pod `dst`.
    pub fn matches(&self, probe: Probe, dst: &Pod) -> bool {
        match self {
            ClusterPort::Range {
                protocol,
                start,
                end,
            } => *protocol == probe.protocol && (*start..=*end).contains(&probe.port),
            ClusterPort::Named(name) => dst.ports.iter().any(|c| {
                c.name.as_deref() == Some(name.as_str())
                    && c.port == probe.port
                    && c.protocol == probe.protocol
            }),
            ClusterPort::Never => false,
        }
    }
}

/// One ingress or egress rule: (any peer) AND (any port entry), then `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterRule {
    /// `name` as written (optional, for observability).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The action as written.
    pub action: Action,
    pub peers: Vec<ClusterPeer>,
    /// `None`: no `protocols`/`ports`, every port and protocol.
    pub ports: Option<Vec<ClusterPort>>,
    /// Some peer is [`ClusterPeer::Unknown`]. The API's fail-closed rule (types doc of the peer
    /// structs): an `Accept` rule then matches no traffic; a `Deny` or `Pass` rule becomes "deny
    /// all" (every peer, every port, action `Deny`).
    pub fail_closed: bool,
}

impl ClusterRule {
    /// The action the rule takes when it matches, after the fail-closed rule.
    pub fn effective_action(&self) -> Action {
        if self.fail_closed_matches_all() {
            Action::Deny
        } else {
            self.action
        }
    }

    /// Whether a fail-closed rule matches everything (`Deny`/`Pass`) rather than nothing.
    fn fail_closed_matches_all(&self) -> bool {
        self.fail_closed && self.action != Action::Accept
    }

    /// The first port entry admitting the probe: `Some(None)` when the rule has no ports.
    pub fn port_hit(&self, probe: Probe, dst: &Pod) -> Option<Option<usize>> {
        if self.fail_closed_matches_all() {
            return Some(None);
        }
        match &self.ports {
            None => Some(None),
            Some(ports) => ports.iter().position(|p| p.matches(probe, dst)).map(Some),
        }
    }

    /// The first peer admitting `peer`: `Some(None)` for a fail-closed "deny all".
    pub fn peer_hit(
        &self,
        peer: &Pod,
        ns_labels: Option<&crate::model::Labels>,
    ) -> Option<Option<usize>> {
        if self.fail_closed {
            return self.fail_closed_matches_all().then_some(None);
        }
        self.peers
            .iter()
            .position(|p| p.matches(peer, ns_labels))
            .map(Some)
    }
}

/// A cluster-wide policy compiled for evaluation, with its source for explanations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterPolicy {
    pub key: ClusterPolicyRef,
    pub tier: Tier,
    /// 0–1000, lower first; `None` for the BaselineAdminNetworkPolicy, which has no priority.
    pub priority: Option<u32>,
    pub subject: Subject,
    pub ingress: Vec<ClusterRule>,
    pub egress: Vec<ClusterRule>,
    /// The object as written (for explanations quoting rules).
    #[serde(skip)]
    pub source: serde_json::Value,
    /// Accepted but worth saying (experimental peers that match no pod, a v1alpha1 range with
    /// `start > end`, …).
    #[serde(skip)]
    pub warnings: Vec<FieldError>,
}

impl ClusterPolicy {
    pub fn rules(&self, dir: super::Direction) -> &[ClusterRule] {
        match dir {
            super::Direction::Ingress => &self.ingress,
            super::Direction::Egress => &self.egress,
        }
    }

    /// Whether the subject selects `pod`, whose namespace carries `ns_labels`.
    pub fn selects(&self, pod: &Pod, ns_labels: Option<&crate::model::Labels>) -> bool {
        let ns_ok = |sel: &Selector| ns_labels.is_some_and(|l| sel.matches(l));
        match &self.subject {
            Subject::Namespaces(ns) => ns_ok(ns),
            Subject::Pods { namespaces, pods } => ns_ok(namespaces) && pods.matches(&pod.labels),
        }
    }

    /// The order policies of one tier are evaluated in: priority (lower first), then, among equal
    /// priorities (whose relative order the API leaves to the implementation), by kind and name
    /// so listings are stable. The BaselineAdminNetworkPolicy, which has no priority, sorts after
    /// every Baseline-tier ClusterNetworkPolicy (the API does not order the two versions).
    pub fn order_key(&self) -> (u32, ClusterPolicyRef) {
        (self.priority.unwrap_or(u32::MAX), self.key.clone())
    }

    /// The priority as displayed (`none` for the BaselineAdminNetworkPolicy).
    pub fn priority_label(&self) -> String {
        self.priority
            .map_or_else(|| "none".to_string(), |p| p.to_string())
    }

    /// The YAML of rule `i` of a direction as written, for quoting.
    pub fn rule_source(&self, dir: super::Direction, i: usize) -> Option<&serde_json::Value> {
        self.source.get("spec")?.get(dir.key())?.get(i)
    }
}
