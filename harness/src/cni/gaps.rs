//! Known gaps of real CNIs, as NetworkPolicy *features* (not only protocols), and which cells
//! exercise them.
//!
//! A catalogued gap is a documented, deliberate limitation of a CNI (Cilium does not apply
//! `ipBlock` to pod addresses; its SCTP support is off by default). A cell whose oracle answer
//! depends on such a feature cannot judge the CNI, so it is reported `unsupported` with the
//! catalogued reason and never passes or fails: the CNI reads "conformant except the listed gaps".
//! Which cells a feature covers is decided here, on the oracle's model and policies, so the
//! `--dry-run` plan, the live session and the tests share one answer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{PodRef, Probe, Protocol};
use crate::policy::oracle::peer_matches;
use crate::policy::{Direction, Oracle, Peer, PortSpec};

/// A NetworkPolicy feature a CNI may not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GapFeature {
    /// Every SCTP cell.
    Sctp,
    /// Every UDP cell.
    Udp,
    /// An `ipBlock` peer whose `cidr` contains the other pod's address (in-cluster traffic).
    IpBlockPodIps,
    /// A named port in a rule whose peers admit the other end.
    NamedPorts,
    /// A port range (`endPort`) in a rule whose peers admit the other end.
    EndPort,
}

impl GapFeature {
    pub const ALL: [GapFeature; 5] = [
        GapFeature::Sctp,
        GapFeature::Udp,
        GapFeature::IpBlockPodIps,
        GapFeature::NamedPorts,
        GapFeature::EndPort,
    ];

    /// The name the catalogue and reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            GapFeature::Sctp => "sctp",
            GapFeature::Udp => "udp",
            GapFeature::IpBlockPodIps => "ipBlock-pod-ips",
            GapFeature::NamedPorts => "named-ports",
            GapFeature::EndPort => "endPort",
        }
    }

    /// A few words for people.
    pub fn describe(self) -> &'static str {
        match self {
            GapFeature::Sctp => "SCTP",
            GapFeature::Udp => "UDP",
            GapFeature::IpBlockPodIps => "ipBlock on pod addresses",
            GapFeature::NamedPorts => "named ports",
            GapFeature::EndPort => "port ranges (endPort)",
        }
    }

    /// Whether the oracle's answer for this cell depends on the feature.
    pub fn covers(self, oracle: &Oracle<'_>, from: &PodRef, to: &PodRef, probe: Probe) -> bool {
        match self {
            GapFeature::Sctp => probe.protocol == Protocol::Sctp,
            GapFeature::Udp => probe.protocol == Protocol::Udp,
            GapFeature::IpBlockPodIps | GapFeature::NamedPorts | GapFeature::EndPort => {
                rules_touch(self, oracle, from, to, probe)
            }
        }
    }
}

/// Looks at every rule of every policy that selects the source for egress or the destination for
/// ingress.
fn rules_touch(
    feature: GapFeature,
    oracle: &Oracle<'_>,
    from: &PodRef,
    to: &PodRef,
    probe: Probe,
) -> bool {
    let model = oracle.model();
    let Some(d) = oracle.decide(from, to, probe) else {
        return false;
    };
    let (Some(src), Some(dst)) = (model.pod(from), model.pod(to)) else {
        return false;
    };
    let sides = [
        (Direction::Egress, &d.egress.selecting, dst),
        (Direction::Ingress, &d.ingress.selecting, src),
    ];
    for (dir, selecting, other) in sides {
        for key in selecting {
            let Some(pol) = oracle.policies().iter().find(|p| &p.key == key) else {
                continue;
            };
            for rule in pol.rules(dir).unwrap_or(&[]) {
                let peers_admit = rule
                    .peers
                    .as_ref()
                    .is_none_or(|ps| ps.iter().any(|p| peer_matches(model, p, other)));
                let hit = match feature {
                    GapFeature::IpBlockPodIps => {
                        let ports_admit = rule.ports.as_ref().is_none_or(|ports| {
                            ports.iter().any(|pm| {
                                pm.matches(probe.protocol, probe.port, |n, pr| {
                                    dst.named_port(n, pr)
                                })
                            })
                        });
                        // Only addresses of pods in the cluster: an external peer is what
                        // ipBlock is for on every CNI.
                        ports_admit
                            && other.workload != crate::model::Workload::External
                            && rule.peers.iter().flatten().any(|p| match p {
                                Peer::IpBlock { cidr, .. } => cidr.contains(&other.ip),
                                Peer::Pods { .. } => false,
                            })
                    }
                    GapFeature::NamedPorts => {
                        peers_admit
                            && rule.ports.iter().flatten().any(|pm| {
                                pm.protocol == probe.protocol
                                    && matches!(pm.port, PortSpec::Named(_))
                            })
                    }
                    GapFeature::EndPort => {
                        peers_admit && rule.ports.iter().flatten().any(|pm| {
                            pm.protocol == probe.protocol
                                && matches!(pm.port, PortSpec::Range { start, end } if start != end)
                        })
                    }
                    GapFeature::Sctp | GapFeature::Udp => false,
                };
                if hit {
                    return true;
                }
            }
        }
    }
    false
}

impl fmt::Display for GapFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GapFeature {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GapFeature::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown gap feature {s:?} (known: {})",
                    GapFeature::ALL.map(|g| g.as_str()).join(", ")
                )
            })
    }
}

impl Serialize for GapFeature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for GapFeature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A known limitation of a CNI: cells it covers are reported `unsupported` with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gap {
    pub feature: GapFeature,
    pub reason: String,
    /// Where the limitation is documented (issues, docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
}

impl Gap {
    /// The detail of every cell this gap makes unsupported; reports count cells by this prefix.
    pub fn cell_detail(&self) -> String {
        format!("{}{}", Self::detail_prefix(self.feature), self.reason)
    }

    /// `catalogued gap <feature>: `
    pub fn detail_prefix(feature: GapFeature) -> String {
        format!("catalogued gap {feature}: ")
    }
}

/// The first gap covering the cell, if any.
pub fn covering<'g>(
    gaps: &'g [Gap],
    oracle: &Oracle<'_>,
    from: &PodRef,
    to: &PodRef,
    probe: Probe,
) -> Option<&'g Gap> {
    gaps.iter()
        .find(|g| g.feature.covers(oracle, from, to, probe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_str;

    fn step(policy: &str) -> crate::scenario::Step {
        let text = format!(
            r#"
apiVersion: netpolc/v1
kind: Scenario
model:
  upstream: {{namespaces: [x, y], pods: [a, b], protocols: [TCP, UDP]}}
steps:
  - name: s
    apply:
      - {policy}
"#
        );
        match load_str(&text, "g.yaml") {
            Ok(mut l) => l.scenarios.remove(0).steps.remove(0),
            Err(e) => panic!("{e:?}"),
        }
    }

    fn cell(s: &str) -> PodRef {
        s.parse().expect("pod ref")
    }

    #[test]
    fn ipblock_gap_covers_cells_whose_answer_rests_on_a_pod_address() {
        // x/a may send only to y/b's address (10.244.0.5 with the allocation order x/a, x/b, y/a, y/b).
        let st = step(
            "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {namespace: x, name: p}, \
             spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress], \
             egress: [{to: [{ipBlock: {cidr: 10.244.0.5/32}}], ports: [{port: 80}]}]}}",
        );
        let o = st.oracle();
        let tcp80 = Probe::new(80, Protocol::Tcp);
        let g = GapFeature::IpBlockPodIps;
        assert!(g.covers(&o, &cell("x/a"), &cell("y/b"), tcp80));
        // Denied for lack of any rule: no ipBlock decides it.
        assert!(!g.covers(&o, &cell("x/a"), &cell("y/a"), tcp80));
        // The rule's ports do not admit 81: the ipBlock is irrelevant there.
        assert!(!g.covers(
            &o,
            &cell("x/a"),
            &cell("y/b"),
            Probe::new(81, Protocol::Tcp)
        ));
        // x/b is not selected.
        assert!(!g.covers(&o, &cell("x/b"), &cell("y/b"), tcp80));
        assert!(!GapFeature::Sctp.covers(&o, &cell("x/a"), &cell("y/b"), tcp80));
        assert!(GapFeature::Udp.covers(
            &o,
            &cell("x/a"),
            &cell("y/b"),
            Probe::new(80, Protocol::Udp)
        ));
    }

    #[test]
    fn port_gaps_cover_rules_whose_peers_admit_the_other_end() {
        let st = step(
            "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {namespace: y, name: p}, \
             spec: {podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}], \
             ports: [{port: serve-80-tcp}, {port: 81, endPort: 90}]}]}}",
        );
        let o = st.oracle();
        let tcp80 = Probe::new(80, Protocol::Tcp);
        // y/a -> y/b: the peer matches, the rule has a named port and a range.
        assert!(GapFeature::NamedPorts.covers(&o, &cell("y/a"), &cell("y/b"), tcp80));
        assert!(GapFeature::EndPort.covers(&o, &cell("y/a"), &cell("y/b"), tcp80));
        // y/b -> y/a: the peer does not match; no port feature decides it.
        assert!(!GapFeature::NamedPorts.covers(&o, &cell("y/b"), &cell("y/a"), tcp80));
        // UDP: no entry of that protocol.
        assert!(!GapFeature::NamedPorts.covers(
            &o,
            &cell("y/a"),
            &cell("y/b"),
            Probe::new(80, Protocol::Udp)
        ));
        // x/* -> x/*: no policy.
        assert!(!GapFeature::EndPort.covers(&o, &cell("x/a"), &cell("x/b"), tcp80));
    }

    #[test]
    fn names_round_trip() {
        for g in GapFeature::ALL {
            assert_eq!(g.as_str().parse::<GapFeature>(), Ok(g));
        }
        assert!("ipblock".parse::<GapFeature>().is_err());
    }
}
