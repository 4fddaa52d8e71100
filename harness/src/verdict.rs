//! Verdicts and the features that failed.
//!
//! The verdict sums a run up in one word (contract: `conformant` · `non-conformant` ·
//! `policies-ignored` · `error`). A partial failure is only useful if it says *what* is broken, so
//! every failing cell is traced back through the oracle's reasons ([`Oracle::decide`]: which
//! policies select each side, which rule, peer and port entry admitted the connection, or which
//! rules nearly did) to the NetworkPolicy features it exercises: `ingress`, `egress`, `ports`,
//! `named-ports`, `endPort`, `ipBlock`, `except`, `namespaceSelector`,
//! `podSelector+namespaceSelector`, `multiple-policies`, `udp`, `sctp`, `updates`,
//! `stateful-replies`, `default-allow`.
//!
//! A cell a cluster-wide policy (ClusterNetworkPolicy, AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy) decided is traced through the tier evaluation instead
//! ([`crate::policy::TierTrace`]) to tier-and-action features: `admin-accept`, `admin-deny`,
//! `admin-pass`, `baseline-accept`, `baseline-deny`, `baseline-pass` (the action of every cluster
//! rule that matched on a failing side; v1alpha1's `Allow` is `accept`), `cnp-priority` (rules of
//! policies at several priorities matched, or a policy after the deciding priority would have
//! matched with another action: their order decided), `rule-order`
//! (a later rule of the deciding policy also matches with another action: only the first may
//! decide), `baseline-isolation` (NetworkPolicy isolates the side while a Baseline-tier policy
//! selects it: the baseline must not apply) and `networks` (a matched rule's peer is a
//! `networks` CIDR list containing the pod). NetworkPolicy features are not added for a side a
//! cluster-wide policy decided (its NetworkPolicies never got a say).

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::model::{Probe, Protocol};
use crate::policy::{Direction, DirectionDecision, NamespaceMatch, Oracle, Peer, PortSpec, Rule};
use crate::probe::Outcome;
use crate::report::model::{CellReport, ScenarioReport, Summary, Verdict};

/// A NetworkPolicy feature a failing cell exercises. Declaration order is the order reports list
/// them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Feature {
    /// Ingress isolation and rules at the destination.
    #[serde(rename = "ingress")]
    Ingress,
    /// Egress isolation and rules at the source.
    #[serde(rename = "egress")]
    Egress,
    /// A pod selected by no policy was blocked: the default is allow-all.
    #[serde(rename = "default-allow")]
    DefaultAllow,
    /// Numeric ports in rules.
    #[serde(rename = "ports")]
    Ports,
    /// Named ports, resolved on the destination pod.
    #[serde(rename = "named-ports")]
    NamedPorts,
    /// Port ranges (`endPort`).
    #[serde(rename = "endPort")]
    EndPort,
    #[serde(rename = "ipBlock")]
    IpBlock,
    /// `ipBlock.except`.
    #[serde(rename = "except")]
    Except,
    /// A peer with only a namespaceSelector.
    #[serde(rename = "namespaceSelector")]
    NamespaceSelector,
    /// A peer with both selectors (AND-ed).
    #[serde(rename = "podSelector+namespaceSelector")]
    PodAndNamespaceSelector,
    /// Several policies select the same pod (they add up).
    #[serde(rename = "multiple-policies")]
    MultiplePolicies,
    #[serde(rename = "udp")]
    Udp,
    #[serde(rename = "sctp")]
    Sctp,
    /// The dataplane still shows an earlier step's answer after policies or labels changed.
    #[serde(rename = "updates")]
    Updates,
    /// The reply path is denied by policy: only connection tracking lets replies through.
    #[serde(rename = "stateful-replies")]
    StatefulReplies,
    /// An Admin-tier rule with action Accept (v1alpha1 Allow) matched.
    #[serde(rename = "admin-accept")]
    AdminAccept,
    #[serde(rename = "admin-deny")]
    AdminDeny,
    /// An Admin-tier Pass: evaluation must go on to NetworkPolicy.
    #[serde(rename = "admin-pass")]
    AdminPass,
    #[serde(rename = "baseline-accept")]
    BaselineAccept,
    #[serde(rename = "baseline-deny")]
    BaselineDeny,
    /// A Baseline-tier Pass (v1alpha2): evaluation must go on to the default (allow).
    #[serde(rename = "baseline-pass")]
    BaselinePass,
    /// Cluster-wide policies of several priorities applied to the side: lower goes first.
    #[serde(rename = "cnp-priority")]
    CnpPriority,
    /// Several rules of the deciding policy match: the first written decides.
    #[serde(rename = "rule-order")]
    RuleOrder,
    /// NetworkPolicy isolates the side, so the Baseline tier selecting it must not apply.
    #[serde(rename = "baseline-isolation")]
    BaselineIsolation,
    /// A `networks` peer (CIDRs) matched a pod address.
    #[serde(rename = "networks")]
    Networks,
}

impl Feature {
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Ingress => "ingress",
            Feature::Egress => "egress",
            Feature::DefaultAllow => "default-allow",
            Feature::Ports => "ports",
            Feature::NamedPorts => "named-ports",
            Feature::EndPort => "endPort",
            Feature::IpBlock => "ipBlock",
            Feature::Except => "except",
            Feature::NamespaceSelector => "namespaceSelector",
            Feature::PodAndNamespaceSelector => "podSelector+namespaceSelector",
            Feature::MultiplePolicies => "multiple-policies",
            Feature::Udp => "udp",
            Feature::Sctp => "sctp",
            Feature::Updates => "updates",
            Feature::StatefulReplies => "stateful-replies",
            Feature::AdminAccept => "admin-accept",
            Feature::AdminDeny => "admin-deny",
            Feature::AdminPass => "admin-pass",
            Feature::BaselineAccept => "baseline-accept",
            Feature::BaselineDeny => "baseline-deny",
            Feature::BaselinePass => "baseline-pass",
            Feature::CnpPriority => "cnp-priority",
            Feature::RuleOrder => "rule-order",
            Feature::BaselineIsolation => "baseline-isolation",
            Feature::Networks => "networks",
        }
    }

    /// Parses a name as written in reports (unknown names: `None`, so old reports stay readable).
    pub fn parse(s: &str) -> Option<Feature> {
        ALL_FEATURES.into_iter().find(|f| f.as_str() == s)
    }
}

const ALL_FEATURES: [Feature; 25] = [
    Feature::Ingress,
    Feature::Egress,
    Feature::DefaultAllow,
    Feature::Ports,
    Feature::NamedPorts,
    Feature::EndPort,
    Feature::IpBlock,
    Feature::Except,
    Feature::NamespaceSelector,
    Feature::PodAndNamespaceSelector,
    Feature::MultiplePolicies,
    Feature::Udp,
    Feature::Sctp,
    Feature::Updates,
    Feature::StatefulReplies,
    Feature::AdminAccept,
    Feature::AdminDeny,
    Feature::AdminPass,
    Feature::BaselineAccept,
    Feature::BaselineDeny,
    Feature::BaselinePass,
    Feature::CnpPriority,
    Feature::RuleOrder,
    Feature::BaselineIsolation,
    Feature::Networks,
];

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts every cell by outcome (the categories are disjoint and add up to `cells`).
pub fn summarize(scenarios: &[ScenarioReport]) -> Summary {
    let mut s = Summary::default();
    for c in cells(scenarios) {
        s.cells += 1;
        match c.outcome {
            Outcome::Pass => s.passed += 1,
            Outcome::Fail => s.failed += 1,
            Outcome::Flaky => s.flaky += 1,
            Outcome::Unsupported => s.unsupported += 1,
            Outcome::Error => s.errors += 1,
        }
    }
    s
}

fn cells(scenarios: &[ScenarioReport]) -> impl Iterator<Item = &CellReport> {
    scenarios
        .iter()
        .flat_map(|s| s.steps.iter())
        .flat_map(|st| st.cells.iter())
}

/// The run's verdict:
/// - `error` when any cell's probe kept failing (its answer is unknown);
/// - `policies-ignored` when every probed cell (neither unsupported nor error) was observed allowed
///   although the oracle denies some of them: the dataplane enforces nothing;
/// - `non-conformant` when any cell failed;
/// - `conformant` otherwise (flaky cells are counted and reported, but do not fail the run).
pub fn judge(scenarios: &[ScenarioReport]) -> Verdict {
    let mut any_error = false;
    let mut any_fail = false;
    let mut all_allowed = true;
    let mut any_denied_expected = false;
    for c in cells(scenarios) {
        match c.outcome {
            Outcome::Error => any_error = true,
            Outcome::Unsupported => {}
            o => {
                if o == Outcome::Fail {
                    any_fail = true;
                }
                if c.observed != Some(true) {
                    all_allowed = false;
                }
                if c.expected == Some(false) {
                    any_denied_expected = true;
                }
            }
        }
    }
    if any_error {
        Verdict::Error
    } else if any_denied_expected && all_allowed {
        Verdict::PoliciesIgnored
    } else if any_fail {
        Verdict::NonConformant
    } else {
        Verdict::Conformant
    }
}

/// Every feature named by a failing cell, in [`Feature`] order. Names recorded in the cells that
/// this build does not know are kept, after the known ones, sorted.
pub fn failing_features(scenarios: &[ScenarioReport]) -> Vec<String> {
    let mut known = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for c in cells(scenarios).filter(|c| c.outcome == Outcome::Fail) {
        for f in &c.features {
            match Feature::parse(f) {
                Some(f) => {
                    known.insert(f);
                }
                None => {
                    unknown.insert(f.clone());
                }
            }
        }
    }
    known
        .into_iter()
        .map(|f| f.as_str().to_string())
        .chain(unknown)
        .collect()
}

/// The features one failing cell exercises, traced through `oracle` (the cell's step) and
/// `earlier` (the oracles of the scenario's earlier steps where the dataplane was seen enforcing
/// something — a cell observed blocked as required — so a dataplane that ignores policies is not
/// mistaken for one stuck in an earlier state).
///
/// - Expected allowed but blocked: the isolated sides (`ingress`/`egress`; `default-allow` when
///   neither side is isolated), `multiple-policies` when several policies select that side, and the
///   shape of every rule, peer and port entry that admits the connection; `stateful-replies` when
///   the reverse connection is denied (a dataplane without connection tracking drops the replies).
/// - Expected denied but allowed: the denying sides, and the shape of the "near misses": rules whose
///   peer matched but not their ports (`ports`, `named-ports`, `endPort`), or whose ports matched
///   but a peer only half matched (`except`, `podSelector+namespaceSelector`, `namespaceSelector`).
/// - Always: `udp`/`sctp` for those protocols; `updates` when the observation equals what an earlier
///   step's policies required (the dataplane is stuck in an earlier state).
pub fn cell_features(oracle: &Oracle, earlier: &[&Oracle], cell: &CellReport) -> BTreeSet<Feature> {
    let mut out = BTreeSet::new();
    let probe = Probe::new(cell.port, cell.protocol);
    match cell.protocol {
        Protocol::Udp => {
            out.insert(Feature::Udp);
        }
        Protocol::Sctp => {
            out.insert(Feature::Sctp);
        }
        Protocol::Tcp => {}
    }
    let Some(d) = oracle.decide(&cell.from, &cell.to, probe) else {
        return out;
    };
    // Sides a cluster-wide tier decided: traced through the tiers, not NetworkPolicy.
    let by_tier = |s: &DirectionDecision| {
        s.tiers.as_ref().is_some_and(|t| {
            matches!(
                t.decided_by,
                crate::policy::DecidedBy::Admin | crate::policy::DecidedBy::Baseline
            )
        })
    };
    let failing_sides: Vec<&DirectionDecision> = [&d.egress, &d.ingress]
        .into_iter()
        .filter(|s| cell.expected == Some(true) || !s.allowed)
        .collect();
    for side in &failing_sides {
        tier_features(oracle, side, &d, probe, &mut out);
    }
    if cell.expected == Some(true) {
        let isolated: Vec<&DirectionDecision> = [&d.egress, &d.ingress]
            .into_iter()
            .filter(|s| !s.selecting.is_empty() && !by_tier(s))
            .collect();
        if isolated.is_empty() && ![&d.egress, &d.ingress].into_iter().any(by_tier) {
            out.insert(Feature::DefaultAllow);
        }
        for side in isolated {
            out.insert(direction_feature(side.direction));
            if side.selecting.len() >= 2 {
                out.insert(Feature::MultiplePolicies);
            }
            for m in &side.allowed_by {
                let Some(rule) = find_rule(oracle, &m.policy, side.direction, m.rule) else {
                    continue;
                };
                if let Some(k) = m.port
                    && let Some(pm) = rule.ports.as_ref().and_then(|p| p.get(k))
                {
                    out.extend(port_feature(&pm.port));
                }
                if let Some(k) = m.peer
                    && let Some(peer) = rule.peers.as_ref().and_then(|p| p.get(k))
                {
                    out.extend(peer_features(peer));
                }
            }
        }
        if let Some(rev) = oracle.decide(&cell.to, &cell.from, probe)
            && !rev.allowed
        {
            out.insert(Feature::StatefulReplies);
        }
    } else {
        for side in [&d.egress, &d.ingress].into_iter().filter(|s| !s.allowed) {
            out.insert(direction_feature(side.direction));
            if !by_tier(side) {
                near_misses(oracle, side, &d.from, &d.to, probe, &mut out);
            }
        }
    }
    if let Some(observed) = cell.observed
        && earlier.iter().any(|o| {
            o.decide(&cell.from, &cell.to, probe).is_some_and(|e| {
                // Only an earlier *policy* state counts: "still allowed as before any policy
                // existed" is a dataplane ignoring policies, not one missing an update.
                let had_policy = !e.egress.selecting.is_empty() || !e.ingress.selecting.is_empty();
                had_policy && e.allowed == observed
            })
        })
    {
        out.insert(Feature::Updates);
    }
    out
}

/// The tier-and-action features of one side of a cell (see the module doc).
fn tier_features(
    oracle: &Oracle,
    side: &DirectionDecision,
    d: &crate::policy::Decision,
    probe: Probe,
    out: &mut BTreeSet<Feature>,
) {
    use crate::policy::cluster::{Action, ClusterPeer, Tier};
    let Some(t) = &side.tiers else {
        return;
    };
    let model = oracle.model();
    // The other end of the connection, whose address and labels the rules match.
    let (peer, dst) = match side.direction {
        Direction::Egress => (model.pod(&d.to), model.pod(&d.to)),
        Direction::Ingress => (model.pod(&d.from), model.pod(&d.to)),
    };
    let policy = |r: &crate::policy::cluster::ClusterPolicyRef| {
        oracle.cluster_policies().iter().find(|p| &p.key == r)
    };
    // Priorities of the policies whose rules matched, per tier.
    let mut priorities = BTreeSet::new();
    let mut decider = None;
    for e in t.admin.iter().chain(&t.baseline) {
        let Some(m) = &e.matched else { continue };
        priorities.insert((e.tier, e.priority));
        decider = Some(m.action);
        out.insert(match (e.tier, m.action) {
            (Tier::Admin, Action::Accept) => Feature::AdminAccept,
            (Tier::Admin, Action::Deny) => Feature::AdminDeny,
            (Tier::Admin, Action::Pass) => Feature::AdminPass,
            (Tier::Baseline, Action::Accept) => Feature::BaselineAccept,
            (Tier::Baseline, Action::Deny) => Feature::BaselineDeny,
            (Tier::Baseline, Action::Pass) => Feature::BaselinePass,
        });
        let Some(pol) = policy(&e.policy) else {
            continue;
        };
        let rules = pol.rules(side.direction);
        if let Some(rule) = rules.get(m.rule)
            && m.peer
                .and_then(|k| rule.peers.get(k))
                .is_some_and(|p| matches!(p, ClusterPeer::Networks(_)))
        {
            out.insert(Feature::Networks);
        }
        if let (Some(peer), Some(dst)) = (peer, dst) {
            let ns = model.namespace(&peer.namespace).map(|n| &n.labels);
            let later_differs = rules.iter().skip(m.rule + 1).any(|r| {
                r.effective_action() != m.action
                    && r.peer_hit(peer, ns).is_some()
                    && r.port_hit(probe, dst).is_some()
            });
            if later_differs {
                out.insert(Feature::RuleOrder);
            }
        }
    }
    // A policy never consulted (a later priority) whose first matching rule takes another
    // action: evaluating priorities in another order changes the answer.
    if let (Some(peer), Some(dst), Some(decided)) = (peer, dst, decider) {
        let ns = model.namespace(&peer.namespace).map(|n| &n.labels);
        let differs = t
            .admin_not_reached
            .iter()
            .chain(&t.baseline_not_reached)
            .filter_map(|(r, _)| policy(r))
            .any(|p| {
                p.rules(side.direction)
                    .iter()
                    .find(|r| r.peer_hit(peer, ns).is_some() && r.port_hit(probe, dst).is_some())
                    .is_some_and(|r| r.effective_action() != decided)
            });
        if differs {
            out.insert(Feature::CnpPriority);
        }
    }
    for tier in [Tier::Admin, Tier::Baseline] {
        let distinct: BTreeSet<_> = priorities.iter().filter(|(t, _)| *t == tier).collect();
        if distinct.len() >= 2 {
            out.insert(Feature::CnpPriority);
        }
    }
    if !side.selecting.is_empty()
        && t.decided_by == crate::policy::DecidedBy::NetworkPolicy
        && let Some(pod) = model.pod(&side.pod)
    {
        let ns = model.namespace(&pod.namespace).map(|n| &n.labels);
        let baseline_selects = oracle.cluster_policies().iter().any(|p| {
            p.tier == Tier::Baseline && !p.rules(side.direction).is_empty() && p.selects(pod, ns)
        });
        if baseline_selects {
            out.insert(Feature::BaselineIsolation);
        }
    }
}

fn direction_feature(d: Direction) -> Feature {
    match d {
        Direction::Ingress => Feature::Ingress,
        Direction::Egress => Feature::Egress,
    }
}

fn find_rule<'o>(
    oracle: &'o Oracle,
    policy: &crate::policy::PolicyRef,
    dir: Direction,
    rule: usize,
) -> Option<&'o Rule> {
    oracle
        .policies()
        .iter()
        .find(|p| &p.key == policy)?
        .rules(dir)?
        .get(rule)
}

fn port_feature(p: &PortSpec) -> Option<Feature> {
    match p {
        PortSpec::All => None,
        PortSpec::Range { start, end } if start == end => Some(Feature::Ports),
        PortSpec::Range { .. } => Some(Feature::EndPort),
        PortSpec::Named(_) => Some(Feature::NamedPorts),
    }
}

fn peer_features(peer: &Peer) -> Vec<Feature> {
    match peer {
        Peer::IpBlock { except, .. } if except.is_empty() => vec![Feature::IpBlock],
        Peer::IpBlock { .. } => vec![Feature::IpBlock, Feature::Except],
        Peer::Pods {
            namespaces: NamespaceMatch::Selector(_),
            pods,
        } if pods.is_everything() => vec![Feature::NamespaceSelector],
        Peer::Pods {
            namespaces: NamespaceMatch::Selector(_),
            ..
        } => vec![Feature::PodAndNamespaceSelector],
        Peer::Pods {
            namespaces: NamespaceMatch::Same(_),
            ..
        } => Vec::new(),
    }
}

/// Rules of the denying side that nearly admitted the connection: a dataplane that mishandles the
/// part that did not match would leak exactly this cell.
fn near_misses(
    oracle: &Oracle,
    side: &DirectionDecision,
    from: &crate::model::PodRef,
    to: &crate::model::PodRef,
    probe: Probe,
    out: &mut BTreeSet<Feature>,
) {
    let model = oracle.model();
    let (Some(src), Some(dst)) = (model.pod(from), model.pod(to)) else {
        return;
    };
    let peer_pod = match side.direction {
        Direction::Egress => dst,
        Direction::Ingress => src,
    };
    for key in &side.selecting {
        let Some(pol) = oracle.policies().iter().find(|p| &p.key == key) else {
            continue;
        };
        for rule in pol.rules(side.direction).unwrap_or(&[]) {
            let port_ok = rule.ports.as_ref().is_none_or(|ports| {
                ports
                    .iter()
                    .any(|pm| pm.matches(probe.protocol, probe.port, |n, pr| dst.named_port(n, pr)))
            });
            let peer_ok = rule.peers.as_ref().is_none_or(|peers| {
                peers
                    .iter()
                    .any(|p| crate::policy::oracle::peer_matches(model, p, peer_pod))
            });
            if peer_ok && !port_ok {
                for pm in rule.ports.iter().flatten() {
                    if pm.protocol == probe.protocol {
                        out.extend(port_feature(&pm.port));
                    }
                }
            }
            if port_ok && !peer_ok {
                for peer in rule.peers.iter().flatten() {
                    match peer {
                        Peer::IpBlock { cidr, except } => {
                            if cidr.contains(&peer_pod.ip)
                                && except.iter().any(|e| e.contains(&peer_pod.ip))
                            {
                                out.insert(Feature::IpBlock);
                                out.insert(Feature::Except);
                            }
                        }
                        Peer::Pods {
                            namespaces: NamespaceMatch::Selector(ns),
                            pods,
                        } => {
                            let ns_ok = model
                                .namespace(&peer_pod.namespace)
                                .is_some_and(|n| ns.matches(&n.labels));
                            let pod_ok = pods.matches(&peer_pod.labels);
                            if ns_ok != pod_ok {
                                out.insert(if pods.is_everything() {
                                    Feature::NamespaceSelector
                                } else {
                                    Feature::PodAndNamespaceSelector
                                });
                            }
                        }
                        Peer::Pods {
                            namespaces: NamespaceMatch::Same(ns),
                            pods,
                        } => {
                            // Same labels in another namespace: scoping to the policy's namespace
                            // is what denies it.
                            if *ns != peer_pod.namespace && pods.matches(&peer_pod.labels) {
                                out.insert(Feature::NamespaceSelector);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PodRef;
    use crate::probe::Connectivity;
    use crate::report::model::StepReport;
    use crate::scenario::{Step, load_str};

    /// Pods x/a (10.0.0.1), x/b (10.0.0.2), y/a (10.0.1.1), y/b (10.0.1.2), each serving 80-82
    /// TCP (80 named `http`) and 80 UDP/SCTP; namespaces labelled `ns: <name>`.
    fn pods() -> String {
        let mut s = String::new();
        for ns in ["x", "y"] {
            s.push_str(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ns: {ns}}}}}\n---\n"
            ));
        }
        for (ns, pod, ip) in [
            ("x", "a", "10.0.0.1"),
            ("x", "b", "10.0.0.2"),
            ("y", "a", "10.0.1.1"),
            ("y", "b", "10.0.1.2"),
        ] {
            s.push_str(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {ns}, labels: {{pod: {pod}}}}}\n\
                 spec: {{containers: [{{name: c, image: i, ports: [{{containerPort: 80, name: http}}, \
                 {{containerPort: 81}}, {{containerPort: 82}}, {{containerPort: 80, protocol: UDP}}, \
                 {{containerPort: 80, protocol: SCTP}}]}}]}}\nstatus: {{podIP: {ip}}}\n---\n"
            ));
        }
        s
    }

    fn step(policies: &str) -> Step {
        let text = format!("{}{policies}", pods());
        let mut loaded = load_str(&text, "t.yaml").expect("valid test manifest");
        loaded.scenarios.remove(0).steps.remove(0)
    }

    fn cell(from: &str, to: &str, probe: &str, expected: bool, observed: bool) -> CellReport {
        let (f, t): (PodRef, PodRef) =
            (from.parse().expect("pod ref"), to.parse().expect("pod ref"));
        let p: Probe = probe.parse().expect("probe");
        CellReport {
            from: f,
            to: t,
            port: p.port,
            protocol: p.protocol,
            via: Default::default(),
            expected: Some(expected),
            observed: Some(observed),
            outcome: if expected == observed {
                Outcome::Pass
            } else {
                Outcome::Fail
            },
            attempts: 1,
            connectivity: if observed {
                Connectivity::Connected
            } else {
                Connectivity::Timeout
            },
            detail: None,
            explanation: None,
            decided: None,
            command: String::new(),
            features: Vec::new(),
            history: Vec::new(),
        }
    }

    fn features(st: &Step, earlier: &[&Step], c: &CellReport) -> Vec<&'static str> {
        let oracle = st.oracle();
        // The cell must really disagree with the oracle, or the test is about nothing.
        let d = oracle
            .decide(&c.from, &c.to, Probe::new(c.port, c.protocol))
            .expect("pods exist");
        assert_eq!(
            Some(d.allowed),
            c.expected,
            "test cell's expectation is wrong"
        );
        let earlier: Vec<Oracle> = earlier.iter().map(|s| s.oracle()).collect();
        let earlier: Vec<&Oracle> = earlier.iter().collect();
        cell_features(&oracle, &earlier, c)
            .into_iter()
            .map(Feature::as_str)
            .collect()
    }

    const DENY_Y: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
        metadata: {name: deny, namespace: y}\nspec: {podSelector: {}}\n";

    fn np(ns: &str, name: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
        )
    }

    #[test]
    fn ingress_leak() {
        let st = step(DENY_Y);
        let c = cell("x/a", "y/a", "80/TCP", false, true);
        assert_eq!(features(&st, &[], &c), ["ingress"]);
    }

    #[test]
    fn egress_leak() {
        let st = step(&np("x", "e", "{podSelector: {}, policyTypes: [Egress]}"));
        let c = cell("x/a", "y/a", "80/TCP", false, true);
        assert_eq!(features(&st, &[], &c), ["egress"]);
    }

    #[test]
    fn ports_leak_and_overblock() {
        let st = step(&np(
            "y",
            "p",
            "{podSelector: {}, ingress: [{ports: [{port: 81}]}]}",
        ));
        let leak = cell("x/a", "y/a", "82/TCP", false, true);
        assert_eq!(features(&st, &[], &leak), ["ingress", "ports"]);
        let block = cell("x/a", "y/a", "81/TCP", true, false);
        assert_eq!(features(&st, &[], &block), ["ingress", "ports"]);
    }

    #[test]
    fn named_ports_and_end_port() {
        let st = step(&np(
            "y",
            "p",
            "{podSelector: {}, ingress: [{ports: [{port: http}, {port: 81, endPort: 82}]}]}",
        ));
        let named = cell("x/a", "y/a", "80/TCP", true, false);
        assert_eq!(features(&st, &[], &named), ["ingress", "named-ports"]);
        let range = cell("x/a", "y/a", "82/TCP", true, false);
        assert_eq!(features(&st, &[], &range), ["ingress", "endPort"]);
    }

    #[test]
    fn ip_block_except_leak() {
        let st = step(&np(
            "y",
            "p",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.1/32]}}]}]}",
        ));
        let leak = cell("x/a", "y/a", "80/TCP", false, true);
        assert_eq!(features(&st, &[], &leak), ["ingress", "ipBlock", "except"]);
        let block = cell("x/b", "y/a", "80/TCP", true, false);
        assert_eq!(features(&st, &[], &block), ["ingress", "ipBlock", "except"]);
    }

    #[test]
    fn namespace_selectors() {
        let st = step(&np(
            "y",
            "p",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}}]}]}",
        ));
        let block = cell("x/a", "y/a", "80/TCP", true, false);
        assert_eq!(features(&st, &[], &block), ["ingress", "namespaceSelector"]);

        let st = step(&np(
            "y",
            "p",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, \
             podSelector: {matchLabels: {pod: a}}}]}]}",
        ));
        // x/b: namespace matches, pod does not — an OR-ing dataplane would let it in.
        let leak = cell("x/b", "y/a", "80/TCP", false, true);
        assert_eq!(
            features(&st, &[], &leak),
            ["ingress", "podSelector+namespaceSelector"]
        );
    }

    #[test]
    fn multiple_policies_and_stateful_replies() {
        let text = format!(
            "{DENY_Y}{}",
            np(
                "y",
                "allow-b",
                "{podSelector: {matchLabels: {pod: b}}, ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}]}]}"
            )
        );
        let st = step(&text);
        // y/a -> y/b is allowed by allow-b (deny adds nothing); the reply path y/b -> y/a is
        // denied by deny, so only connection tracking lets replies through.
        let c = cell("y/a", "y/b", "80/TCP", true, false);
        assert_eq!(
            features(&st, &[], &c),
            ["ingress", "multiple-policies", "stateful-replies"]
        );
    }

    #[test]
    fn protocols_and_default_allow() {
        let st = step("");
        let c = cell("x/a", "y/a", "80/UDP", true, false);
        assert_eq!(features(&st, &[], &c), ["default-allow", "udp"]);
        let c = cell("x/a", "y/a", "80/SCTP", true, false);
        assert_eq!(features(&st, &[], &c), ["default-allow", "sctp"]);
    }

    #[test]
    fn updates_only_for_an_earlier_policy_state() {
        let before = step(DENY_Y);
        let now = step("");
        let stuck = cell("x/a", "y/a", "80/TCP", true, false);
        assert_eq!(
            features(&now, &[&before], &stuck),
            ["default-allow", "updates"]
        );
        // Still allowed after a deny-all was added: the dataplane ignores policies; an earlier
        // state without policies is no evidence of a missed update.
        let leak = cell("x/a", "y/a", "80/TCP", false, true);
        assert_eq!(features(&before, &[&now], &leak), ["ingress"]);
    }

    fn report(cells: Vec<CellReport>) -> Vec<ScenarioReport> {
        vec![ScenarioReport {
            name: "s".into(),
            source: "s.yaml".into(),
            steps: vec![StepReport {
                name: "initial".into(),
                convergence_ms: None,
                probe_wall_ms: 0,
                passes: 1,
                cells,
                ..StepReport::default()
            }],
        }]
    }

    #[test]
    fn verdicts() {
        let pass = cell("x/a", "y/a", "80/TCP", false, false);
        let allowed = cell("x/a", "x/b", "80/TCP", true, true);
        let leak = cell("x/a", "y/b", "80/TCP", false, true);
        let block = cell("x/a", "y/b", "80/TCP", true, false);
        let mut flaky = cell("x/b", "y/b", "80/TCP", true, true);
        flaky.outcome = Outcome::Flaky;
        let mut err = cell("x/b", "y/a", "80/TCP", true, true);
        err.outcome = Outcome::Error;
        err.observed = None;
        let mut unsup = cell("x/b", "y/a", "80/SCTP", false, true);
        unsup.outcome = Outcome::Unsupported;
        unsup.observed = None;

        let r = report(vec![
            pass.clone(),
            allowed.clone(),
            flaky.clone(),
            unsup.clone(),
        ]);
        assert_eq!(judge(&r), Verdict::Conformant);
        let s = summarize(&r);
        assert_eq!((s.cells, s.passed, s.flaky, s.unsupported), (4, 2, 1, 1));

        let r = report(vec![pass.clone(), block.clone(), unsup.clone()]);
        assert_eq!(judge(&r), Verdict::NonConformant);

        // Everything allowed although one cell should be blocked: policies ignored (the
        // unsupported cell does not count either way).
        let r = report(vec![allowed.clone(), leak.clone(), unsup.clone()]);
        assert_eq!(judge(&r), Verdict::PoliciesIgnored);
        // One blocked cell observed: something is enforced, so merely non-conformant.
        let r = report(vec![allowed.clone(), leak.clone(), pass.clone()]);
        assert_eq!(judge(&r), Verdict::NonConformant);
        // Nothing denied anywhere: all allowed is simply right.
        let r = report(vec![allowed.clone()]);
        assert_eq!(judge(&r), Verdict::Conformant);

        let r = report(vec![pass, leak, err]);
        assert_eq!(judge(&r), Verdict::Error);
        assert_eq!(summarize(&r).errors, 1);
    }

    #[test]
    fn failing_features_are_ordered_and_deduplicated() {
        let mut a = cell("x/a", "y/b", "80/UDP", false, true);
        a.features = vec!["udp".into(), "ingress".into(), "from-the-future".into()];
        let mut b = cell("x/b", "y/b", "80/TCP", false, true);
        b.features = vec!["egress".into(), "ingress".into()];
        let mut f = cell("x/b", "y/a", "80/TCP", true, true);
        f.outcome = Outcome::Flaky;
        f.features = vec!["sctp".into()];
        assert_eq!(
            failing_features(&report(vec![a, b, f])),
            ["ingress", "egress", "udp", "from-the-future"]
        );
    }
}
