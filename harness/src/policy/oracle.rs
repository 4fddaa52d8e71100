//! Evaluation of compiled policies against a model.
//!
//! Two paths with one meaning: [`Oracle::decide`] answers one cell with its reasons (for `explain`,
//! reports and tests); [`Oracle::matrix`] answers a whole probe at once with bitsets over pods, so a
//! 1,000-pod × 500-policy matrix costs milliseconds. Tests check that both always agree.

use std::collections::HashMap;

use serde::Serialize;

use crate::model::{Model, Pod, PodRef, Probe};
use crate::truthtable::TruthTable;

use super::PolicyRef;
use super::compile::{CompiledPolicy, Direction, NamespaceMatch, Peer, Rule};

/// Which rule (and which peer and port entry of it) allowed a connection. `None` for the peer or
/// port means the rule had no `from`/`to` (every peer) or no `ports` (every port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    pub policy: PolicyRef,
    pub rule: usize,
    pub peer: Option<usize>,
    pub port: Option<usize>,
}

/// The answer for one side of a connection (egress at the source or ingress at the destination).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectionDecision {
    pub direction: Direction,
    pub pod: PodRef,
    /// Policies whose podSelector selects the pod and whose policyTypes include the direction.
    /// Empty: the pod is not isolated in this direction and everything is allowed.
    pub selecting: Vec<PolicyRef>,
    /// Every rule that admits the connection (policies add up: one is enough).
    pub allowed_by: Vec<RuleMatch>,
    pub allowed: bool,
}

/// The answer for one cell: allowed when egress at the source AND ingress at the destination are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub from: PodRef,
    pub to: PodRef,
    pub probe: Probe,
    pub allowed: bool,
    pub egress: DirectionDecision,
    pub ingress: DirectionDecision,
}

/// A fixed-size set of pod indices.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn empty(n: usize) -> Self {
        BitSet(vec![0; n.div_ceil(64)])
    }
    fn full(n: usize) -> Self {
        let mut b = BitSet(vec![u64::MAX; n.div_ceil(64)]);
        if n % 64 != 0
            && let Some(last) = b.0.last_mut()
        {
            *last = (1u64 << (n % 64)) - 1;
        }
        b
    }
    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn union_with(&mut self, other: &BitSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }
    fn union_with_and(&mut self, x: &BitSet, y: &BitSet) {
        for ((a, b), c) in self.0.iter_mut().zip(&x.0).zip(&y.0) {
            *a |= b & c;
        }
    }
}

/// Policies compiled against one model, with targets and peers indexed over its pods.
pub struct Oracle<'a> {
    model: &'a Model,
    policies: &'a [CompiledPolicy],
    pods: Vec<&'a Pod>,
    refs: Vec<PodRef>,
    index: HashMap<&'a PodRef, usize>,
    /// Per pod: indices of policies selecting it, per direction.
    targets: [Vec<Vec<usize>>; 2],
    /// Per policy, direction and rule: the pods its peers admit (`None`: every peer).
    peer_sets: Vec<[Vec<Option<BitSet>>; 2]>,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

impl<'a> Oracle<'a> {
    pub fn new(model: &'a Model, policies: &'a [CompiledPolicy]) -> Self {
        let refs = model.pod_refs();
        let pods: Vec<&Pod> = model.pods.values().collect();
        let index = model.pods.keys().enumerate().map(|(i, r)| (r, i)).collect();
        let n = pods.len();
        let mut by_ns: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, p) in pods.iter().enumerate() {
            by_ns.entry(p.namespace.as_str()).or_default().push(i);
        }
        let mut targets = [vec![Vec::new(); n], vec![Vec::new(); n]];
        let mut peer_sets = Vec::with_capacity(policies.len());
        for (pi, pol) in policies.iter().enumerate() {
            for &i in by_ns.get(pol.key.namespace.as_str()).into_iter().flatten() {
                if pol.pod_selector.matches(&pods[i].labels) {
                    for d in [Direction::Ingress, Direction::Egress] {
                        if pol.rules(d).is_some() {
                            targets[dir_index(d)][i].push(pi);
                        }
                    }
                }
            }
            let sets = |d: Direction| -> Vec<Option<BitSet>> {
                pol.rules(d)
                    .unwrap_or(&[])
                    .iter()
                    .map(|rule| {
                        rule.peers.as_ref().map(|peers| {
                            let mut set = BitSet::empty(n);
                            for (i, p) in pods.iter().enumerate() {
                                if peers.iter().any(|peer| peer_matches(model, peer, p)) {
                                    set.insert(i);
                                }
                            }
                            set
                        })
                    })
                    .collect()
            };
            peer_sets.push([sets(Direction::Ingress), sets(Direction::Egress)]);
        }
        Oracle {
            model,
            policies,
            pods,
            refs,
            index,
            targets,
            peer_sets,
        }
    }

    pub fn model(&self) -> &Model {
        self.model
    }

    pub fn policies(&self) -> &[CompiledPolicy] {
        self.policies
    }

    /// One cell with its reasons. `None` when either pod is not in the model.
    pub fn decide(&self, from: &PodRef, to: &PodRef, probe: Probe) -> Option<Decision> {
        let (src, dst) = (*self.index.get(from)?, *self.index.get(to)?);
        let egress = self.decide_direction(Direction::Egress, src, dst, probe);
        let ingress = self.decide_direction(Direction::Ingress, dst, src, probe);
        Some(Decision {
            from: from.clone(),
            to: to.clone(),
            probe,
            allowed: egress.allowed && ingress.allowed,
            egress,
            ingress,
        })
    }

    /// `subject` is the pod the policies select; `peer` the other end. The destination pod (whose
    /// named ports are resolved) is the peer for egress and the subject for ingress.
    fn decide_direction(
        &self,
        dir: Direction,
        subject: usize,
        peer: usize,
        probe: Probe,
    ) -> DirectionDecision {
        let selecting_idx = &self.targets[dir_index(dir)][subject];
        let dst = match dir {
            Direction::Egress => self.pods[peer],
            Direction::Ingress => self.pods[subject],
        };
        let peer_pod = self.pods[peer];
        let mut allowed_by = Vec::new();
        for &pi in selecting_idx {
            let pol = &self.policies[pi];
            for (ri, rule) in pol.rules(dir).unwrap_or(&[]).iter().enumerate() {
                let Some(port) = port_match(rule, dst, probe) else {
                    continue;
                };
                let peer_hit = match &rule.peers {
                    None => Some(None),
                    Some(peers) => peers
                        .iter()
                        .position(|p| peer_matches(self.model, p, peer_pod))
                        .map(Some),
                };
                if let Some(peer) = peer_hit {
                    allowed_by.push(RuleMatch {
                        policy: pol.key.clone(),
                        rule: ri,
                        peer,
                        port,
                    });
                }
            }
        }
        DirectionDecision {
            direction: dir,
            pod: self.refs[subject].clone(),
            selecting: selecting_idx
                .iter()
                .map(|&i| self.policies[i].key.clone())
                .collect(),
            allowed: selecting_idx.is_empty() || !allowed_by.is_empty(),
            allowed_by,
        }
    }

    /// The whole from × to matrix for one probe.
    pub fn matrix(&self, probe: Probe) -> TruthTable<bool> {
        let n = self.pods.len();
        let all = BitSet::full(n);
        // Ingress: per destination, the sources admitted.
        let ingress: Vec<BitSet> = (0..n)
            .map(|dst| {
                let sel = &self.targets[0][dst];
                if sel.is_empty() {
                    return all.clone();
                }
                let mut allowed = BitSet::empty(n);
                for &pi in sel {
                    for (ri, rule) in self.policies[pi].ingress.iter().flatten().enumerate() {
                        if port_match(rule, self.pods[dst], probe).is_some() {
                            match &self.peer_sets[pi][0][ri] {
                                None => return all.clone(),
                                Some(set) => allowed.union_with(set),
                            }
                        }
                    }
                }
                allowed
            })
            .collect();
        // Egress: per source, the destinations admitted. Ports depend on the destination (named
        // ports), so each rule's port filter is a set over destinations, computed once per probe.
        let mut port_sets: HashMap<(usize, usize), BitSet> = HashMap::new();
        let egress: Vec<BitSet> = (0..n)
            .map(|src| {
                let sel = &self.targets[1][src];
                if sel.is_empty() {
                    return all.clone();
                }
                let mut allowed = BitSet::empty(n);
                for &pi in sel {
                    for (ri, rule) in self.policies[pi].egress.iter().flatten().enumerate() {
                        let ports = port_sets.entry((pi, ri)).or_insert_with(|| {
                            let mut s = BitSet::empty(n);
                            for (j, p) in self.pods.iter().enumerate() {
                                if port_match(rule, p, probe).is_some() {
                                    s.insert(j);
                                }
                            }
                            s
                        });
                        match &self.peer_sets[pi][1][ri] {
                            None => allowed.union_with(ports),
                            Some(peers) => allowed.union_with_and(peers, ports),
                        }
                    }
                }
                allowed
            })
            .collect();
        TruthTable::from_fn(self.refs.clone(), |i, j| {
            egress[i].contains(j) && ingress[j].contains(i)
        })
    }
}

/// Whether a rule's ports admit the probe on `dst`: `Some(None)` when the rule has no ports (all
/// admitted), `Some(Some(k))` for the first admitting entry, `None` when no entry does.
fn port_match(rule: &Rule, dst: &Pod, probe: Probe) -> Option<Option<usize>> {
    match &rule.ports {
        None => Some(None),
        Some(ports) => ports
            .iter()
            .position(|pm| {
                pm.matches(probe.protocol, probe.port, |name, proto| {
                    dst.named_port(name, proto)
                })
            })
            .map(Some),
    }
}

/// Whether `peer` admits pod `p`. Pods match pod peers through their namespace's labels and their
/// own, and ipBlock peers through their address.
pub fn peer_matches(model: &Model, peer: &Peer, p: &Pod) -> bool {
    match peer {
        Peer::Pods { namespaces, pods } => {
            let ns_ok = match namespaces {
                NamespaceMatch::Same(ns) => *ns == p.namespace,
                NamespaceMatch::Selector(sel) => model
                    .namespace(&p.namespace)
                    .is_some_and(|ns| sel.matches(&ns.labels)),
            };
            ns_ok && pods.matches(&p.labels)
        }
        Peer::IpBlock { cidr, except } => Peer::ip_matches(cidr, except, p.ip),
    }
}
