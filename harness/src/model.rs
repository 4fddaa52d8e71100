//! The cluster model a scenario step describes: namespaces, pods, their labels, addresses and ports.
//!
//! Mirrors upstream's e2e `Model`/`Namespace`/`Pod`/`Container` (test/e2e/network/netpol/model.go),
//! generalised to arbitrary namespaces, pods and ports. Pure data: no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Label maps are ordered so every output is deterministic.
pub type Labels = BTreeMap<String, String>;

/// The label every namespace carries in a real cluster (since Kubernetes 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Transport protocols a NetworkPolicy port can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// Lower-case spelling used by probe commands (`agnhost connect --protocol=tcp`) and nftables.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a protocol name the API does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?} (expected TCP, UDP or SCTP)")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;
    /// The API is case-sensitive (`TCP`, not `tcp`); so are we.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            other => Err(UnknownProtocol(other.to_string())),
        }
    }
}

/// "namespace/pod": the key of every truth table (upstream's `PodString`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

impl PodRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PodRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPodRef {
    #[error("{0:?} is not of the form NAMESPACE/POD")]
    Shape(String),
    /// A part is not a valid namespace or pod name (as the API server validates them).
    #[error("{0}")]
    Name(#[from] crate::names::Invalid),
}

/// The namespace part of a pod reference (`ns/pod`, and the `ns/*` of patterns): a namespace
/// name, or [`EXTERNAL_NAMESPACE`] for peers outside the cluster (never a name the API server
/// accepts, so it cannot collide with a namespace).
pub fn check_ref_namespace(ns: &str) -> Result<(), crate::names::Invalid> {
    if ns == EXTERNAL_NAMESPACE {
        Ok(())
    } else {
        crate::names::namespace(ns)
    }
}

impl FromStr for PodRef {
    type Err = BadPodRef;
    /// Both parts are validated: a `PodRef` parsed from input (`--from`, `labelPods`, tables)
    /// only ever names something the API server would accept.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => {
                check_ref_namespace(ns)?;
                if ns == EXTERNAL_NAMESPACE {
                    crate::names::external(pod)?;
                } else {
                    crate::names::pod(pod)?;
                }
                Ok(PodRef::new(ns, pod))
            }
            _ => Err(BadPodRef::Shape(s.to_string())),
        }
    }
}

impl Serialize for PodRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PodRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A probe: destination port number and protocol (`80/TCP`). Named ports are a policy concept;
/// probes always target numbers, and the oracle resolves names on the destination pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Probe {
    pub port: u16,
    pub protocol: Protocol,
}

impl Probe {
    pub fn new(port: u16, protocol: Protocol) -> Self {
        Probe { port, protocol }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadProbe {
    #[error("{0:?} is not of the form PORT/PROTOCOL (e.g. 80/TCP)")]
    Shape(String),
    #[error("port {0:?} is not a number from 1 to 65535")]
    Port(String),
    #[error(transparent)]
    Protocol(#[from] UnknownProtocol),
}

impl FromStr for Probe {
    type Err = BadProbe;
    /// Accepts `80/TCP` and, for convenience on the command line, `80/tcp` or a bare `80` (TCP).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (port, proto) = match s.split_once('/') {
            Some((p, proto)) => (p, proto.to_ascii_uppercase()),
            None => (s, "TCP".to_string()),
        };
        if port.is_empty() {
            return Err(BadProbe::Shape(s.to_string()));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| BadProbe::Port(port.to_string()))?;
        Ok(Probe::new(port, proto.parse()?))
    }
}

impl Serialize for Probe {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A container port as declared in the pod spec (upstream's `Container`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

/// Where a pod came from, so real providers can realise it the same way (a bare Pod or one replica
/// of a Deployment). Pods synthesised for any controller read from manifests (StatefulSet,
/// DaemonSet, ReplicaSet, ReplicationController, Job, CronJob) are `Deployment` replicas too:
/// for probing, N identical pods behind one controller are all that matters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Workload {
    #[default]
    Pod,
    Deployment {
        name: String,
        replica: u32,
    },
    /// A server outside the cluster (kind: a container beside the nodes; local: a namespace
    /// outside the pod bridge). It lives in [`EXTERNAL_NAMESPACE`], which is not a Kubernetes
    /// namespace: no policy can select it and no pod or namespace selector matches it, only
    /// `ipBlock` peers do, as for any host outside the cluster.
    External,
}

/// The pseudo-namespace of external peers. Not a DNS label, so no policy can live in it, and
/// never in [`Model::namespaces`], so no namespace selector matches it.
pub const EXTERNAL_NAMESPACE: &str = "(external)";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// The pod's address: `status.podIP` when the input gives one, otherwise allocated (see
    /// [`crate::scenario::allocate_ips`]).
    pub ip: IpAddr,
    pub ports: Vec<ContainerPort>,
    /// The image the input asked for (real providers replace it with the probe image and record it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub workload: Workload,
}

impl Pod {
    pub fn pod_ref(&self) -> PodRef {
        PodRef::new(&self.namespace, &self.name)
    }

    /// A peer outside the cluster ([`Workload::External`]).
    pub fn is_external(&self) -> bool {
        self.workload == Workload::External
    }

    /// Resolves a named port on this pod, as the API requires for NetworkPolicy named ports
    /// (name and protocol must both match a declared container port).
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name) && p.protocol == protocol)
            .map(|p| p.port)
    }

    /// Whether this pod declares (and so serves) the probe's port.
    pub fn serves(&self, probe: Probe) -> bool {
        self.ports
            .iter()
            .any(|p| p.port == probe.port && p.protocol == probe.protocol)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    /// Always contains `kubernetes.io/metadata.name: <name>`, as a real cluster enforces.
    pub labels: Labels,
}

impl Namespace {
    pub fn new(name: impl Into<String>, mut labels: Labels) -> Self {
        let name = name.into();
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
        Namespace { name, labels }
    }
}

/// Namespaces and pods of one scenario step (upstream's `Model`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Model {
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: BTreeMap<PodRef, Pod>,
    /// The input's ClusterIP Services (`kind: Service`, `model.services`); the per-pod ones
    /// probing needs are added by [`crate::service::probe_services`], never stored here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<crate::service::Service>,
}

impl Model {
    pub fn pod(&self, r: &PodRef) -> Option<&Pod> {
        self.pods.get(r)
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }

    /// Every pod, in `namespace/name` order: the axis order of every truth table.
    pub fn pod_refs(&self) -> Vec<PodRef> {
        self.pods.keys().cloned().collect()
    }

    /// Default probes: every (containerPort, protocol) any pod declares, sorted.
    pub fn declared_probes(&self) -> Vec<Probe> {
        let mut v: Vec<Probe> = self
            .pods
            .values()
            .flat_map(|p| p.ports.iter().map(|c| Probe::new(c.port, c.protocol)))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_parses_and_rejects() {
        assert_eq!("80/TCP".parse::<Probe>(), Ok(Probe::new(80, Protocol::Tcp)));
        assert_eq!("53/udp".parse::<Probe>(), Ok(Probe::new(53, Protocol::Udp)));
        assert_eq!("81".parse::<Probe>(), Ok(Probe::new(81, Protocol::Tcp)));
        assert!("0/TCP".parse::<Probe>().is_err());
        assert!("70000/TCP".parse::<Probe>().is_err());
        assert!("80/ICMP".parse::<Probe>().is_err());
        assert!("/TCP".parse::<Probe>().is_err());
    }

    #[test]
    fn pod_ref_round_trips() {
        let r: PodRef = "x/a".parse().expect("valid");
        assert_eq!(r, PodRef::new("x", "a"));
        assert_eq!(r.to_string(), "x/a");
        assert!("x".parse::<PodRef>().is_err());
        assert!("x/a/b".parse::<PodRef>().is_err());
        assert!("/a".parse::<PodRef>().is_err());
        assert!(matches!("X/a".parse::<PodRef>(), Err(BadPodRef::Name(_))));
        assert!(matches!(
            "x/a\nb".parse::<PodRef>(),
            Err(BadPodRef::Name(_))
        ));
        assert!(matches!("x;y/a".parse::<PodRef>(), Err(BadPodRef::Name(_))));
        // Peers outside the cluster: the reserved namespace part, a DNS label as the name.
        let web: PodRef = "(external)/web".parse().expect("external peer");
        assert_eq!(web, PodRef::new(EXTERNAL_NAMESPACE, "web"));
        assert!(matches!(
            "(external)/web.example".parse::<PodRef>(),
            Err(BadPodRef::Name(_))
        ));
        assert!(matches!(
            "(other)/web".parse::<PodRef>(),
            Err(BadPodRef::Name(_))
        ));
        assert!("x/a.b-1".parse::<PodRef>().is_ok());
    }

    #[test]
    fn namespace_always_carries_its_name_label() {
        let ns = Namespace::new("y", Labels::new());
        assert_eq!(
            ns.labels.get(NAMESPACE_NAME_LABEL).map(String::as_str),
            Some("y")
        );
    }
}
