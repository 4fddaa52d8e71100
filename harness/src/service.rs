//! Services: ClusterIP Services read from the input, the per-pod Services probing synthesises, and
//! the probe modes (`--probe-mode pod-ip|service-ip|service-name`).
//!
//! Upstream's e2e netpol suite probes each target through a Service of its own (`s-<ns>-<pod>`,
//! one port per probed port), so the CNI's policy is exercised after kube-proxy's DNAT. We do the
//! same: a cell `from → to, port/protocol` probed `via` a Service dials that Service's ClusterIP
//! and service port, and the answer required is the oracle's answer for the backing pod and the
//! target port — NetworkPolicy acts on the translated packet, so the cell's expectation does not
//! depend on the mode.
//!
//! **Hairpin** (a pod reaching itself through its own Service): the oracle answers it exactly as
//! it answers the pod reaching its own address (egress allowed at the pod AND ingress allowed at
//! the pod, see the loopback rule in `policy::oracle` and `cni::nftables`). After DNAT the packet
//! is a pod-to-itself packet, so no other answer is consistent with "NetworkPolicy acts after
//! DNAT". Cluster-wide policies treat hairpin differently (network-policy-api: a pod reaching its
//! own pod IP is exempt, through its Service IP it is not); that is [`ProbeMode::is_service`]'s
//! business in the cluster-policy planner.
//!
//! Pure data, no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{Labels, Model, PodRef, Probe, Protocol};

/// What a probe connects to (contract: `--probe-mode`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeMode {
    /// The destination pod's own address (the default, and what old reports without `via` mean).
    #[default]
    PodIp,
    /// The ClusterIP of a Service selecting exactly the destination pod.
    ServiceIp,
    /// That Service's DNS name (`<service>.<namespace>.svc.cluster.local`).
    ServiceName,
}

impl ProbeMode {
    pub const ALL: [ProbeMode; 3] = [
        ProbeMode::PodIp,
        ProbeMode::ServiceIp,
        ProbeMode::ServiceName,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMode::PodIp => "pod-ip",
            ProbeMode::ServiceIp => "service-ip",
            ProbeMode::ServiceName => "service-name",
        }
    }

    /// Whether the probe goes through a Service (and so through service NAT).
    pub fn is_service(self) -> bool {
        self != ProbeMode::PodIp
    }
}

impl fmt::Display for ProbeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown probe mode {0:?} (expected pod-ip, service-ip or service-name)")]
pub struct UnknownProbeMode(pub String);

impl FromStr for ProbeMode {
    type Err = UnknownProbeMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProbeMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownProbeMode(s.to_string()))
    }
}

/// The service range ClusterIPs are allocated from when the input states none: 10.96.0.0/16,
/// kubeadm's and kind's default `--service-cluster-ip-range` (only its first /16), so addresses
/// look like a real cluster's. The first ten addresses are left out (a real cluster gives
/// 10.96.0.1 to `kubernetes` and 10.96.0.10 to DNS).
pub const SERVICE_RANGE_BASE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 0);
pub const SERVICE_RANGE_PREFIX: u8 = 16;
const FIRST_ALLOCATED: u32 = 11;

/// Whether an address lies in [`SERVICE_RANGE_BASE`]`/`[`SERVICE_RANGE_PREFIX`].
pub fn in_service_range(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - u32::from(SERVICE_RANGE_PREFIX));
    u32::from(ip) & mask == u32::from(SERVICE_RANGE_BASE)
}

/// `targetPort`: a number, or the name of a container port resolved on each endpoint pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetPort::Number(n) => write!(f, "{n}"),
            TargetPort::Name(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    /// Defaults to `port`, as the API defaults it.
    pub target_port: TargetPort,
}

/// Which pods back a Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Backing {
    /// `spec.selector`: every pod of the Service's namespace carrying all these labels (an
    /// equality map, as the API's Service selector is).
    Selector(Labels),
    /// Exactly this pod, whatever its labels become (the per-pod Services probing synthesises:
    /// a label change of a later step must not move the probe to another pod).
    Pod(PodRef),
}

/// A ClusterIP Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub backing: Backing,
    pub ports: Vec<ServicePort>,
    /// Made by the harness for probing (upstream's `s-<ns>-<pod>`), not read from the input.
    #[serde(default)]
    pub synthesised: bool,
}

impl Service {
    /// The DNS name a pod resolves (cluster domain `cluster.local`).
    pub fn dns_name(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }

    /// The pods backing this Service in `model`, in `namespace/name` order.
    pub fn endpoints(&self, model: &Model) -> Vec<PodRef> {
        match &self.backing {
            Backing::Pod(r) => model.pod(r).map(|p| vec![p.pod_ref()]).unwrap_or_default(),
            Backing::Selector(sel) => model
                .pods
                .values()
                .filter(|p| p.namespace == self.namespace)
                .filter(|p| sel.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
                .map(|p| p.pod_ref())
                .collect(),
        }
    }

    /// The port `sp` reaches on `pod`: the number, or the named container port of that protocol
    /// (`None` when the pod declares no such name: kube-proxy then has no endpoint for it).
    pub fn target_on(&self, model: &Model, sp: &ServicePort, pod: &PodRef) -> Option<u16> {
        match &sp.target_port {
            TargetPort::Number(n) => Some(*n),
            TargetPort::Name(name) => model.pod(pod)?.named_port(name, sp.protocol),
        }
    }
}

/// Where a probe via a Service connects: the Service and the port dialled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceTarget {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
}

impl ServiceTarget {
    pub fn dns_name(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }
}

/// The per-pod Service name upstream uses: `s-<namespace>-<pod>`. Service names are DNS-1035
/// labels (at most 63 characters, starting with a letter); a name that would be longer or
/// contains a dot (pod names may be subdomains) is shortened to `s-` plus a stable hash.
pub fn per_pod_service_name(pod: &PodRef) -> String {
    let name = format!("s-{}-{}", pod.namespace, pod.name);
    if name.len() <= 63 && !name.contains('.') {
        return name;
    }
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pod.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("s-{h:016x}")
}

/// The Services a step is probed through: the input's own Services, plus one synthesised per pod
/// that no input Service already backs exactly (selects that pod and no other) on every probe,
/// each with one port per probe (`port` = `targetPort` = the probe's port, as upstream's). Input
/// ClusterIPs are kept; the others are allocated from the service range in order (input Services
/// first, then one per pod in `namespace/name` order whether or not it is synthesised), skipping
/// addresses in use, so every step of a scenario, every probe set and every provider gets the
/// same addresses.
pub fn probe_services(model: &Model, input: &[Service], probes: &[Probe]) -> Vec<Service> {
    let mut out: Vec<Service> = input.to_vec();
    let taken: std::collections::HashSet<Ipv4Addr> = out
        .iter()
        .map(|s| s.cluster_ip)
        .filter(|ip| !ip.is_unspecified())
        .collect();
    let mut next = u32::from(SERVICE_RANGE_BASE) + FIRST_ALLOCATED;
    let mut alloc = || loop {
        let cand = Ipv4Addr::from(next);
        next += 1;
        if !taken.contains(&cand) {
            break cand;
        }
    };
    for s in &mut out {
        if s.cluster_ip.is_unspecified() {
            s.cluster_ip = alloc();
        }
    }
    let names: std::collections::HashSet<(String, String)> = out
        .iter()
        .map(|s| (s.namespace.clone(), s.name.clone()))
        .collect();
    for pod in model.pods.values() {
        let r = pod.pod_ref();
        let covered = probes
            .iter()
            .all(|&p| exact_input_target(model, input, &r, p).is_some());
        let name = per_pod_service_name(&r);
        // Allocated even when skipped, so a pod's address does not depend on the probe set (a
        // provider serving more ports than one step probes agrees with the plan).
        let cluster_ip = alloc();
        if covered || names.contains(&(r.namespace.clone(), name.clone())) {
            continue;
        }
        out.push(Service {
            namespace: r.namespace.clone(),
            name,
            cluster_ip,
            backing: Backing::Pod(r.clone()),
            ports: probes
                .iter()
                .map(|p| ServicePort {
                    name: Some(format!("{}-{}", p.port, p.protocol.lower())),
                    port: p.port,
                    protocol: p.protocol,
                    target_port: TargetPort::Number(p.port),
                })
                .collect(),
            synthesised: true,
        });
    }
    out
}

fn exact_input_target<'s>(
    model: &Model,
    services: &'s [Service],
    to: &PodRef,
    probe: Probe,
) -> Option<(&'s Service, u16)> {
    services.iter().find_map(|s| {
        if s.namespace != to.namespace || s.endpoints(model).as_slice() != std::slice::from_ref(to)
        {
            return None;
        }
        s.ports
            .iter()
            .find(|sp| {
                sp.protocol == probe.protocol && s.target_on(model, sp, to) == Some(probe.port)
            })
            .map(|sp| (s, sp.port))
    })
}

/// The Service a cell `→ to, probe` is probed through: one selecting exactly `to` whose port
/// targets `probe` on it (input Services first, so a user's own Service is what gets tested), or
/// `None` when none does (the cell is then unsupported for that mode, with the reason).
pub fn target_for(
    model: &Model,
    services: &[Service],
    to: &PodRef,
    probe: Probe,
) -> Option<ServiceTarget> {
    exact_input_target(model, services, to, probe).map(|(s, port)| ServiceTarget {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        cluster_ip: s.cluster_ip,
        port,
    })
}

/// One DNAT entry a kube-proxy-like dataplane installs: `cluster_ip:port/protocol` →
/// `endpoint:target_port`. Only Services with exactly one ready endpoint for the port get one:
/// the probes use nothing else, and choosing among several endpoints needs load balancing the
/// local dataplane does not model (a probe through such a Service could not say which pod
/// answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatEntry {
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    pub endpoint: Ipv4Addr,
    pub target_port: u16,
}

/// The DNAT entries of `services` over `model` (IPv4 endpoints only), sorted.
pub fn nat_entries(model: &Model, services: &[Service]) -> Vec<NatEntry> {
    let mut out = Vec::new();
    for s in services {
        let eps = s.endpoints(model);
        let [ep] = eps.as_slice() else {
            continue;
        };
        let Some(IpAddr::V4(addr)) = model.pod(ep).map(|p| p.ip) else {
            continue;
        };
        for sp in &s.ports {
            if let Some(tp) = s.target_on(model, sp, ep) {
                out.push(NatEntry {
                    cluster_ip: s.cluster_ip,
                    port: sp.port,
                    protocol: sp.protocol,
                    endpoint: addr,
                    target_port: tp,
                });
            }
        }
    }
    out.sort();
    out.dedup_by_key(|e| (e.cluster_ip, e.port, e.protocol));
    out
}

/// Services by namespace/name, for lookups.
pub fn by_name(services: &[Service]) -> BTreeMap<(String, String), &Service> {
    services
        .iter()
        .map(|s| ((s.namespace.clone(), s.name.clone()), s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerPort, Namespace, Pod, Workload};

    fn pod(ns: &str, name: &str, ip: [u8; 4], labels: &[(&str, &str)]) -> Pod {
        Pod {
            namespace: ns.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ip: IpAddr::from(ip),
            ports: vec![ContainerPort {
                name: Some("http".into()),
                port: 8080,
                protocol: Protocol::Tcp,
            }],
            image: None,
            workload: Workload::Pod,
        }
    }

    fn model() -> Model {
        let mut m = Model::default();
        m.namespaces
            .insert("x".into(), Namespace::new("x", Labels::new()));
        for p in [
            pod("x", "a", [10, 244, 0, 2], &[("app", "web")]),
            pod("x", "b", [10, 244, 0, 3], &[("app", "web")]),
            pod("x", "c", [10, 244, 0, 4], &[("app", "db")]),
        ] {
            m.pods.insert(p.pod_ref(), p);
        }
        m
    }

    fn svc(name: &str, sel: &[(&str, &str)], target: TargetPort) -> Service {
        Service {
            namespace: "x".into(),
            name: name.into(),
            cluster_ip: Ipv4Addr::UNSPECIFIED,
            backing: Backing::Selector(
                sel.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ports: vec![ServicePort {
                name: None,
                port: 80,
                protocol: Protocol::Tcp,
                target_port: target,
            }],
            synthesised: false,
        }
    }

    #[test]
    fn modes_parse_and_print() {
        for m in ProbeMode::ALL {
            assert_eq!(m.as_str().parse::<ProbeMode>(), Ok(m));
            assert_eq!(
                serde_json::to_value(m).ok(),
                Some(serde_json::json!(m.as_str()))
            );
        }
        assert!("cluster-ip".parse::<ProbeMode>().is_err());
        assert_eq!(ProbeMode::default(), ProbeMode::PodIp);
    }

    #[test]
    fn an_exact_input_service_is_used_and_named_target_ports_resolve() {
        let m = model();
        let db = svc("db", &[("app", "db")], TargetPort::Name("http".into()));
        let web = svc("web", &[("app", "web")], TargetPort::Number(8080));
        let probe = Probe::new(8080, Protocol::Tcp);
        let all = probe_services(&m, &[db, web], &[probe]);
        let c = PodRef::new("x", "c");
        let t = target_for(&m, &all, &c, probe).expect("db backs x/c exactly");
        assert_eq!((t.name.as_str(), t.port), ("db", 80));
        assert_eq!(t.cluster_ip, Ipv4Addr::new(10, 96, 0, 11));
        // `web` selects two pods: x/a and x/b get per-pod Services instead.
        let a = PodRef::new("x", "a");
        let ta = target_for(&m, &all, &a, probe).expect("per-pod service");
        assert_eq!((ta.name.as_str(), ta.port), ("s-x-a", 8080));
        assert!(all.iter().all(|s| s.name != "s-x-c"), "x/c is covered");
        // No port of any Service targets 9999 on x/a.
        assert_eq!(
            target_for(&m, &all, &a, Probe::new(9999, Protocol::Tcp)),
            None
        );
        // Only single-endpoint Services get NAT: db and the two per-pod ones.
        let nat = nat_entries(&m, &all);
        assert_eq!(nat.len(), 3, "{nat:?}");
        let db_nat = nat
            .iter()
            .find(|e| e.cluster_ip == t.cluster_ip)
            .expect("db nat");
        assert_eq!(
            (db_nat.port, db_nat.endpoint, db_nat.target_port),
            (80, Ipv4Addr::new(10, 244, 0, 4), 8080)
        );
    }

    #[test]
    fn per_pod_services_keep_their_pod_and_addresses_are_stable() {
        let mut m = model();
        let probes = [Probe::new(80, Protocol::Tcp), Probe::new(80, Protocol::Udp)];
        let s1 = probe_services(&m, &[], &probes);
        assert_eq!(s1.len(), 3);
        assert_eq!(s1[0].name, "s-x-a");
        assert_eq!(s1[0].ports.len(), 2);
        // A later step relabels x/a: its Service still backs it, at the same address.
        if let Some(a) = m.pods.get_mut(&PodRef::new("x", "a")) {
            a.labels.clear();
        }
        let s2 = probe_services(&m, &[], &probes);
        assert_eq!(s1, s2);
        assert_eq!(
            s2[0].endpoints(&m),
            vec![PodRef::new("x", "a")],
            "backing by pod"
        );
        assert!(s2.iter().all(|s| in_service_range(s.cluster_ip)));
        assert!(!in_service_range(Ipv4Addr::new(10, 97, 0, 1)));
    }

    #[test]
    fn long_names_are_shortened_to_valid_labels() {
        let long = PodRef::new("x".repeat(40), "y".repeat(40));
        let n = per_pod_service_name(&long);
        assert!(n.len() <= 63 && n.starts_with("s-"), "{n}");
        assert_eq!(n, per_pod_service_name(&long));
        assert_eq!(per_pod_service_name(&PodRef::new("x", "a")), "s-x-a");
        assert!(!per_pod_service_name(&PodRef::new("x", "a.b")).contains('.'));
    }
}
