//! Named non-conformances the local `nftables` CNI can inject, each a real change to the compiled
//! rules modelling a plausible CNI bug. `netpolc faults` lists them.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

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
}

impl Fault {
    pub const ALL: [Fault; 10] = [
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
        }
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
