//! Named non-conformances the local `nftables` CNI can inject, each a real change to the compiled
//! rules modelling a plausible CNI bug. `netpolc faults` lists them.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::policy::{
    Action, ClusterPolicy, CompiledPolicy, NamespaceMatch, Peer, PortSpec, Selector,
};
use crate::scenario::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    Intersection,
    IgnoreEgress,
    IgnoreNamedPorts,
    IgnoreEndport,
    IgnoreExcept,
    PeerOr,
    IgnoreNamespaceSelector,
    UdpUnenforced,
    StaleUpdates,
    Stateless,
    ServicePreDnat,
    ServiceBypass,
    ServiceRepliesDropped,
    ClusterPriorityInverted,
    PassAsAccept,
    ClusterRuleOrderIgnored,
    BaselineIgnoresIsolation,
    NetworksSkipPods,
}

impl Fault {
    pub const ALL: [Fault; 18] = [
        Fault::Intersection,
        Fault::IgnoreEgress,
        Fault::IgnoreNamedPorts,
        Fault::IgnoreEndport,
        Fault::IgnoreExcept,
        Fault::PeerOr,
        Fault::IgnoreNamespaceSelector,
        Fault::UdpUnenforced,
        Fault::StaleUpdates,
        Fault::Stateless,
        Fault::ServicePreDnat,
        Fault::ServiceBypass,
        Fault::ServiceRepliesDropped,
        Fault::ClusterPriorityInverted,
        Fault::PassAsAccept,
        Fault::ClusterRuleOrderIgnored,
        Fault::BaselineIgnoresIsolation,
        Fault::NetworksSkipPods,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Intersection => "intersection",
            Fault::IgnoreEgress => "ignore-egress",
            Fault::IgnoreNamedPorts => "ignore-named-ports",
            Fault::IgnoreEndport => "ignore-endport",
            Fault::IgnoreExcept => "ignore-except",
            Fault::PeerOr => "peer-or",
            Fault::IgnoreNamespaceSelector => "ignore-namespace-selector",
            Fault::UdpUnenforced => "udp-unenforced",
            Fault::StaleUpdates => "stale-updates",
            Fault::Stateless => "stateless",
            Fault::ServicePreDnat => "service-pre-dnat",
            Fault::ServiceBypass => "service-bypass",
            Fault::ServiceRepliesDropped => "service-replies-dropped",
            Fault::ClusterPriorityInverted => "cluster-priority-inverted",
            Fault::PassAsAccept => "pass-as-accept",
            Fault::ClusterRuleOrderIgnored => "cluster-rule-order-ignored",
            Fault::BaselineIgnoresIsolation => "baseline-ignores-isolation",
            Fault::NetworksSkipPods => "networks-skip-pods",
        }
    }

    /// One sentence on what the fault breaks.
    pub fn description(self) -> &'static str {
        match self {
            Fault::Intersection => {
                "Policies selecting the same pod are AND-ed instead of added up: traffic must be allowed by every policy."
            }
            Fault::IgnoreEgress => {
                "Egress rules are never installed: pods selected only for egress are not isolated."
            }
            Fault::IgnoreNamedPorts => {
                "Rules naming a port (e.g. serve-80-tcp) never match: named ports admit nothing."
            }
            Fault::IgnoreEndport => "endPort is dropped: a port range admits only its first port.",
            Fault::IgnoreExcept => "ipBlock except lists are ignored: the whole cidr is admitted.",
            Fault::PeerOr => {
                "A peer with both podSelector and namespaceSelector matches either of them (OR) instead of both (AND)."
            }
            Fault::IgnoreNamespaceSelector => {
                "namespaceSelector is ignored: peers only match pods in the policy's own namespace."
            }
            Fault::UdpUnenforced => "Policies are not applied to UDP: all UDP traffic is allowed.",
            Fault::StaleUpdates => {
                "Only the first step's policies are ever installed: later creates, updates, deletes and relabels are ignored."
            }
            Fault::Stateless => {
                "Replies are not admitted by connection tracking: return traffic must itself be allowed by policy."
            }
            Fault::ServicePreDnat => {
                "Egress policy is matched against the service ClusterIP before DNAT instead of the backing pod: allowed service traffic is dropped."
            }
            Fault::ServiceBypass => {
                "Connections through a service ClusterIP skip egress policy: a pod denied egress still reaches pods through their Service."
            }
            Fault::ServiceRepliesDropped => {
                "Replies of connections made through a service ClusterIP (DNAT'ed) are dropped at the client: nothing is reachable via a Service."
            }
            Fault::ClusterPriorityInverted => {
                "Cluster-wide policies of a tier are evaluated highest priority number first instead of lowest."
            }
            Fault::PassAsAccept => {
                "A cluster-wide Pass rule accepts the traffic instead of handing it to the next tier."
            }
            Fault::ClusterRuleOrderIgnored => {
                "The rules of a cluster-wide policy are matched last to first instead of in their written order."
            }
            Fault::BaselineIgnoresIsolation => {
                "The Baseline tier also applies to pods that NetworkPolicies isolate: its Deny overrides their allow."
            }
            Fault::NetworksSkipPods => {
                "networks peers of cluster-wide policies never match pod addresses, only addresses outside the pods."
            }
        }
    }

    /// Whether the fault lives on the service path only (invisible to `--probe-mode pod-ip`).
    pub fn is_service(self) -> bool {
        matches!(
            self,
            Fault::ServicePreDnat | Fault::ServiceBypass | Fault::ServiceRepliesDropped
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault {0:?} (see `netpolc faults`)")]
pub struct UnknownFault(pub String);

impl FromStr for Fault {
    type Err = UnknownFault;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFault(s.to_string()))
    }
}

/// The faults of one run, with the transformations they make.
///
/// Faults that change what a policy *means* (ports, peers, egress; priorities, Pass and rule order
/// of cluster-wide policies) are applied to the compiled policies before the nftables compiler
/// sees them ([`FaultSet::distort`], [`FaultSet::distort_cluster`]), so the same functions also
/// yield the reachability a faulty CNI produces. Faults that change the *dataplane's shape*
/// (intersection, udp-unenforced, stateless, baseline-ignores-isolation, networks-skip-pods) are
/// flags the compiler reads, and stale-updates is a flag the provider reads (it keeps installing
/// the first step). The NetworkPolicy faults leave cluster-wide policies alone, and the cluster
/// ones leave NetworkPolicies alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultSet(std::collections::BTreeSet<Fault>);

impl FaultSet {
    pub fn new(faults: impl IntoIterator<Item = Fault>) -> Self {
        FaultSet(faults.into_iter().collect())
    }

    pub fn has(&self, f: Fault) -> bool {
        self.0.contains(&f)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Fault> + '_ {
        self.0.iter().copied()
    }

    /// The policies as a CNI with these faults understands them.
    pub fn distort(&self, policies: &[CompiledPolicy]) -> Vec<CompiledPolicy> {
        policies.iter().map(|p| self.distort_policy(p)).collect()
    }

    fn distort_policy(&self, p: &CompiledPolicy) -> CompiledPolicy {
        let mut p = p.clone();
        if self.has(Fault::IgnoreEgress) {
            p.egress = None;
        }
        let ns = p.key.namespace.clone();
        for rules in [p.ingress.as_mut(), p.egress.as_mut()]
            .into_iter()
            .flatten()
        {
            for rule in rules.iter_mut() {
                if let Some(ports) = rule.ports.as_mut() {
                    // An emptied list stays `Some(vec![])`: a rule whose ports all vanished admits
                    // nothing, as a CNI that cannot resolve its ports would.
                    if self.has(Fault::IgnoreNamedPorts) {
                        ports.retain(|pm| !matches!(pm.port, PortSpec::Named(_)));
                    }
                    if self.has(Fault::IgnoreEndport) {
                        for pm in ports.iter_mut() {
                            if let PortSpec::Range { start, end } = &mut pm.port {
                                *end = *start;
                            }
                        }
                    }
                }
                if let Some(peers) = rule.peers.as_mut() {
                    *peers = peers
                        .drain(..)
                        .flat_map(|peer| self.distort_peer(peer, &ns))
                        .collect();
                }
            }
        }
        p
    }

    fn distort_peer(&self, peer: Peer, policy_ns: &str) -> Vec<Peer> {
        match peer {
            Peer::IpBlock { cidr, except } => vec![Peer::IpBlock {
                cidr,
                except: if self.has(Fault::IgnoreExcept) {
                    Vec::new()
                } else {
                    except
                },
            }],
            Peer::Pods { namespaces, pods } => {
                let namespaces = match namespaces {
                    NamespaceMatch::Selector(_) if self.has(Fault::IgnoreNamespaceSelector) => {
                        NamespaceMatch::Same(policy_ns.to_string())
                    }
                    other => other,
                };
                match namespaces {
                    // The classic YAML slip, as a bug: both selectors become separate peers.
                    NamespaceMatch::Selector(sel)
                        if self.has(Fault::PeerOr) && !pods.is_everything() =>
                    {
                        vec![
                            Peer::Pods {
                                namespaces: NamespaceMatch::Selector(sel),
                                pods: Selector::everything(),
                            },
                            Peer::Pods {
                                namespaces: NamespaceMatch::Same(policy_ns.to_string()),
                                pods,
                            },
                        ]
                    }
                    namespaces => vec![Peer::Pods { namespaces, pods }],
                }
            }
        }
    }

    /// The cluster-wide policies as a CNI with these faults understands them.
    pub fn distort_cluster(&self, policies: &[ClusterPolicy]) -> Vec<ClusterPolicy> {
        policies
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if self.has(Fault::ClusterPriorityInverted) {
                    // 0..=1000 mirrored; equal priorities stay equal, the priority-less
                    // BaselineAdminNetworkPolicy stays last.
                    c.priority = c.priority.map(|p| 1000u32.saturating_sub(p));
                }
                for rules in [&mut c.ingress, &mut c.egress] {
                    if self.has(Fault::ClusterRuleOrderIgnored) {
                        rules.reverse();
                    }
                    if self.has(Fault::PassAsAccept) {
                        for r in rules.iter_mut().filter(|r| r.action == Action::Pass) {
                            r.action = Action::Accept;
                        }
                    }
                }
                c
            })
            .collect()
    }

    /// The step a CNI with these faults installs: the first one forever under stale-updates.
    pub fn effective_step<'a>(&self, first: &'a Step, current: &'a Step) -> &'a Step {
        if self.has(Fault::StaleUpdates) {
            first
        } else {
            current
        }
    }
}

impl FromIterator<Fault> for FaultSet {
    fn from_iter<I: IntoIterator<Item = Fault>>(iter: I) -> Self {
        FaultSet::new(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;
    use crate::policy::{PortMatch, Rule};

    fn policy(ingress: Vec<Rule>) -> CompiledPolicy {
        CompiledPolicy {
            key: crate::policy::PolicyRef {
                namespace: "x".into(),
                name: "p".into(),
            },
            pod_selector: Selector::everything(),
            ingress: Some(ingress),
            egress: Some(vec![]),
            source: Default::default(),
            warnings: vec![],
        }
    }

    #[test]
    fn names_round_trip_and_have_sentences() {
        for f in Fault::ALL {
            assert_eq!(f.name().parse::<Fault>(), Ok(f));
            assert!(f.description().ends_with('.'), "{f}");
        }
        assert!("nope".parse::<Fault>().is_err());
    }

    #[test]
    fn port_faults_rewrite_ports() {
        let p = policy(vec![Rule {
            peers: None,
            ports: Some(vec![
                PortMatch {
                    protocol: Protocol::Tcp,
                    port: PortSpec::Named("http".into()),
                },
                PortMatch {
                    protocol: Protocol::Tcp,
                    port: PortSpec::Range { start: 80, end: 90 },
                },
            ]),
        }]);
        let d = FaultSet::new([Fault::IgnoreNamedPorts, Fault::IgnoreEndport]).distort(&[p]);
        let ports = d[0].ingress.as_ref().and_then(|r| r[0].ports.clone());
        assert_eq!(
            ports,
            Some(vec![PortMatch {
                protocol: Protocol::Tcp,
                port: PortSpec::Range { start: 80, end: 80 }
            }])
        );
    }

    #[test]
    fn peer_faults_rewrite_peers() {
        let ns_sel = Selector {
            requirements: vec![crate::policy::selector::Requirement::Exists { key: "ns".into() }],
        };
        let pod_sel = Selector {
            requirements: vec![crate::policy::selector::Requirement::Exists { key: "pod".into() }],
        };
        let p = policy(vec![Rule {
            peers: Some(vec![Peer::Pods {
                namespaces: NamespaceMatch::Selector(ns_sel.clone()),
                pods: pod_sel.clone(),
            }]),
            ports: None,
        }]);
        let or = FaultSet::new([Fault::PeerOr]).distort(std::slice::from_ref(&p));
        assert_eq!(
            or[0].ingress.as_ref().and_then(|r| r[0].peers.clone()),
            Some(vec![
                Peer::Pods {
                    namespaces: NamespaceMatch::Selector(ns_sel),
                    pods: Selector::everything()
                },
                Peer::Pods {
                    namespaces: NamespaceMatch::Same("x".into()),
                    pods: pod_sel.clone()
                },
            ])
        );
        let same = FaultSet::new([Fault::IgnoreNamespaceSelector]).distort(&[p]);
        assert_eq!(
            same[0].ingress.as_ref().and_then(|r| r[0].peers.clone()),
            Some(vec![Peer::Pods {
                namespaces: NamespaceMatch::Same("x".into()),
                pods: pod_sel
            }])
        );
    }

    #[test]
    fn ignore_egress_drops_egress_isolation() {
        let d = FaultSet::new([Fault::IgnoreEgress]).distort(&[policy(vec![])]);
        assert_eq!(d[0].egress, None);
        assert_eq!(d[0].ingress, Some(vec![]));
        let unchanged = FaultSet::default().distort(&[policy(vec![])]);
        assert_eq!(unchanged[0].egress, Some(vec![]));
    }
}
