//! Evaluation of compiled policies against a model: one evaluator for the three tiers.
//!
//! Per direction (egress at the source, ingress at the destination), as the network-policy-api
//! orders them (`ClusterNetworkPolicySpec.Tier` in apis/v1alpha2/clusternetworkpolicy_types.go):
//! 1. the **Admin** tier — ClusterNetworkPolicies of tier Admin and AdminNetworkPolicies selecting
//!    the pod, by priority (lower first), each policy's rules in order; the first matching rule
//!    decides: `Accept` allows, `Deny` denies, `Pass` skips the rest of the tier;
//! 2. **NetworkPolicy** v1 — if any selects the pod for the direction, it decides (policies add up);
//! 3. the **Baseline** tier, only for pods no NetworkPolicy isolates in that direction, the same
//!    way (`Pass` there leaves the connection to the default);
//! 4. the default: allowed.
//!
//! A connection needs both directions allowed. Policies of one tier and one priority whose first
//! matching rules take different actions leave the answer to the implementation (the API says it
//! "can apply any of the matching policies"); the oracle then computes every answer the
//! implementation may give, and when they differ the cell is *implementation-defined* (`None`).
//! A pod reaching its own pod IP is not subject to cluster-wide policies (the API overview's
//! hairpin rule); see [`Addressing`].
//!
//! Two paths with one meaning: [`Oracle::decide`] answers one cell with its reasons (for `explain`,
//! reports and tests), matching rules one by one; [`Oracle::expected_matrix`] (and its boolean view
//! [`Oracle::matrix`]) answers a whole probe with bitsets over pods. Tests check they agree, and
//! check both against a deliberately naive evaluator written from the API text.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::model::{Labels, Model, Pod, PodRef, Probe};
use crate::truthtable::TruthTable;

use super::PolicyRef;
use super::bitset::BitSet;
use super::cluster::{Action, ClusterPolicy, ClusterPolicyRef, ClusterRule, Tier};
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

/// How a probe addresses its destination. Only cluster-wide policies care: a pod connecting to its
/// own pod IP ("hairpin") is not subject to them, while one reaching itself through a Service IP
/// that load-balances back to it is (network-policy-api `site-src/api-overview.md`, 2026-06).
/// Probes are by pod IP today; a Service-IP probe mode must evaluate with
/// [`Addressing::ServiceIp`] so the hairpin cell keeps its cluster-wide policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Addressing {
    #[default]
    PodIp,
    ServiceIp,
}

/// The first rule of a cluster-wide policy that matched a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterRuleMatch {
    /// Index in the policy's `ingress`/`egress` list.
    pub rule: usize,
    /// The rule's `name`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The action taken (after the fail-closed rule).
    pub action: Action,
    /// The matching peer (`None`: a fail-closed rule denying everything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<usize>,
    /// The matching port entry (`None`: the rule has no ports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fail_closed: bool,
}

/// What one cluster-wide policy did to one side of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterEval {
    pub policy: ClusterPolicyRef,
    pub tier: Tier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// `None`: no rule matched; the evaluation went on past this policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<ClusterRuleMatch>,
}

/// Which stage settled a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecidedBy {
    Admin,
    NetworkPolicy,
    Baseline,
    Default,
}

/// Policies of one tier and priority that match the connection with different actions: the
/// implementation may apply any of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub tier: Tier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    pub policies: Vec<(ClusterPolicyRef, Action)>,
}

/// The cluster-wide side of one direction's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TierTrace {
    /// The pod reaches its own pod IP: cluster-wide policies do not apply.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hairpin: bool,
    /// Admin-tier policies selecting the pod for this direction, in evaluation order, up to the
    /// priority that matched (those before it were passed over).
    pub admin: Vec<ClusterEval>,
    /// Baseline-tier policies, when the evaluation reached that tier.
    pub baseline: Vec<ClusterEval>,
    /// Admin-tier policies selecting the pod that were never consulted: they come after the
    /// priority that matched (with priorities).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admin_not_reached: Vec<(ClusterPolicyRef, Option<u32>)>,
    /// The same for the Baseline tier.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baseline_not_reached: Vec<(ClusterPolicyRef, Option<u32>)>,
    pub decided_by: DecidedBy,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
}

/// The answer for one side of a connection (egress at the source or ingress at the destination).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectionDecision {
    pub direction: Direction,
    pub pod: PodRef,
    /// NetworkPolicies whose podSelector selects the pod and whose policyTypes include the
    /// direction. Empty: NetworkPolicy does not isolate the pod in this direction.
    pub selecting: Vec<PolicyRef>,
    /// Every NetworkPolicy rule that admits the connection (policies add up: one is enough).
    pub allowed_by: Vec<RuleMatch>,
    /// Allowed whatever the implementation chooses (false when implementation-defined).
    pub allowed: bool,
    /// The API leaves this direction's answer to the implementation.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub implementation_defined: bool,
    /// Present when the step has cluster-wide policies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiers: Option<TierTrace>,
}

impl DirectionDecision {
    /// `Some(allowed)`, or `None` when implementation-defined.
    pub fn expected(&self) -> Option<bool> {
        (!self.implementation_defined).then_some(self.allowed)
    }
}

/// The answer for one cell: allowed when egress at the source AND ingress at the destination are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub from: PodRef,
    pub to: PodRef,
    pub probe: Probe,
    /// Allowed whatever the implementation chooses (false when implementation-defined).
    pub allowed: bool,
    /// Some implementation the API allows would admit the connection and another would not.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub implementation_defined: bool,
    pub egress: DirectionDecision,
    pub ingress: DirectionDecision,
}

impl Decision {
    /// `Some(allowed)`, or `None` when implementation-defined (the contract's `null`).
    pub fn expected(&self) -> Option<bool> {
        (!self.implementation_defined).then_some(self.allowed)
    }
}

/// Which answers the implementation may give: allow, deny, or both (implementation-defined).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Possible {
    allow: bool,
    deny: bool,
}

impl Possible {
    const ALLOW: Possible = Possible {
        allow: true,
        deny: false,
    };
    const DENY: Possible = Possible {
        allow: false,
        deny: true,
    };
    fn of(allowed: bool) -> Possible {
        if allowed {
            Possible::ALLOW
        } else {
            Possible::DENY
        }
    }
    fn or(self, o: Possible) -> Possible {
        Possible {
            allow: self.allow || o.allow,
            deny: self.deny || o.deny,
        }
    }
    /// Both directions must allow; either may deny.
    fn both(self, o: Possible) -> Possible {
        Possible {
            allow: self.allow && o.allow,
            deny: self.deny || o.deny,
        }
    }
}

/// Per pod and direction, the cluster-wide policies selecting it with at least one rule of that
/// direction, in evaluation order.
#[derive(Default, Clone)]
struct TierLists {
    admin: Vec<usize>,
    baseline: Vec<usize>,
}

/// Per peer, which actions the deciding priority of a tier may take (several: a conflict), and
/// where no rule matched at all.
struct TierSets {
    accept: BitSet,
    deny: BitSet,
    pass: BitSet,
    unmatched: BitSet,
}

/// Policies compiled against one model, with targets and peers indexed over its pods.
pub struct Oracle<'a> {
    model: &'a Model,
    policies: &'a [CompiledPolicy],
    cluster: &'a [ClusterPolicy],
    pods: Vec<&'a Pod>,
    refs: Vec<PodRef>,
    index: HashMap<&'a PodRef, usize>,
    /// Per pod: indices of policies selecting it, per direction.
    targets: [Vec<Vec<usize>>; 2],
    /// Per policy, direction and rule: the pods its peers admit (`None`: every peer).
    peer_sets: Vec<[Vec<Option<BitSet>>; 2]>,
    /// Per direction and pod: the cluster-wide policies selecting it, per tier, in order.
    tier_lists: [Vec<TierLists>; 2],
    /// Per cluster-wide policy, direction and rule: the pods its peers admit (fail-closed rules
    /// already applied: nothing for `Accept`, everything for "deny all").
    cluster_peer_sets: Vec<[Vec<BitSet>; 2]>,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

fn ns_labels<'m>(model: &'m Model, p: &Pod) -> Option<&'m Labels> {
    model.namespace(&p.namespace).map(|n| &n.labels)
}

impl<'a> Oracle<'a> {
    /// NetworkPolicies only.
    pub fn new(model: &'a Model, policies: &'a [CompiledPolicy]) -> Self {
        Self::with_cluster(model, policies, &[])
    }

    /// NetworkPolicies and cluster-wide policies.
    pub fn with_cluster(
        model: &'a Model,
        policies: &'a [CompiledPolicy],
        cluster: &'a [ClusterPolicy],
    ) -> Self {
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

        // Cluster-wide policies in evaluation order, then indexed per pod and direction.
        let mut order: Vec<usize> = (0..cluster.len()).collect();
        order.sort_by_key(|&c| cluster[c].order_key());
        let mut tier_lists = [vec![TierLists::default(); n], vec![TierLists::default(); n]];
        let mut cluster_peer_sets = Vec::with_capacity(cluster.len());
        for &c in &order {
            let pol = &cluster[c];
            for (i, p) in pods.iter().enumerate() {
                if !pol.selects(p, ns_labels(model, p)) {
                    continue;
                }
                for d in [Direction::Ingress, Direction::Egress] {
                    if pol.rules(d).is_empty() {
                        continue;
                    }
                    let lists = &mut tier_lists[dir_index(d)][i];
                    match pol.tier {
                        Tier::Admin => lists.admin.push(c),
                        Tier::Baseline => lists.baseline.push(c),
                    }
                }
            }
        }
        for pol in cluster {
            let sets = |d: Direction| -> Vec<BitSet> {
                pol.rules(d)
                    .iter()
                    .map(|rule| {
                        let mut set = BitSet::empty(n);
                        for (i, p) in pods.iter().enumerate() {
                            if rule.peer_hit(p, ns_labels(model, p)).is_some() {
                                set.insert(i);
                            }
                        }
                        set
                    })
                    .collect()
            };
            cluster_peer_sets.push([sets(Direction::Ingress), sets(Direction::Egress)]);
        }
        Oracle {
            model,
            policies,
            cluster,
            pods,
            refs,
            index,
            targets,
            peer_sets,
            tier_lists,
            cluster_peer_sets,
        }
    }

    pub fn model(&self) -> &Model {
        self.model
    }

    pub fn policies(&self) -> &[CompiledPolicy] {
        self.policies
    }

    pub fn cluster_policies(&self) -> &[ClusterPolicy] {
        self.cluster
    }

    /// Whether a cluster-wide policy with rules of the direction selects the source (egress) or
    /// the destination (ingress) of this cell — so only a dataplane realising cluster-wide
    /// policies can be judged on it. The pod-IP hairpin cell never needs them.
    pub fn cluster_policies_apply(&self, from: &PodRef, to: &PodRef, via: Addressing) -> bool {
        let (Some(&src), Some(&dst)) = (self.index.get(from), self.index.get(to)) else {
            return false;
        };
        if src == dst && via == Addressing::PodIp {
            return false;
        }
        let has = |d: Direction, i: usize| {
            let l = &self.tier_lists[dir_index(d)][i];
            !l.admin.is_empty() || !l.baseline.is_empty()
        };
        has(Direction::Egress, src) || has(Direction::Ingress, dst)
    }

    /// The kinds of the cluster-wide policies that select the source for egress or the
    /// destination for ingress of this cell ([`Oracle::cluster_policies_apply`], by kind),
    /// sorted and without repeats: a platform that enforces some kinds only can be judged on the
    /// cell exactly when it enforces all of these.
    pub fn cluster_kinds_applying(
        &self,
        from: &PodRef,
        to: &PodRef,
        via: Addressing,
    ) -> Vec<super::cluster::ClusterKind> {
        let (Some(&src), Some(&dst)) = (self.index.get(from), self.index.get(to)) else {
            return Vec::new();
        };
        if src == dst && via == Addressing::PodIp {
            return Vec::new();
        }
        let mut kinds: Vec<super::cluster::ClusterKind> = [
            &self.tier_lists[dir_index(Direction::Egress)][src],
            &self.tier_lists[dir_index(Direction::Ingress)][dst],
        ]
        .into_iter()
        .flat_map(|l| l.admin.iter().chain(&l.baseline))
        .map(|&i| self.cluster[i].key.kind)
        .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// One cell with its reasons, probed by pod IP. `None` when either pod is not in the model.
    pub fn decide(&self, from: &PodRef, to: &PodRef, probe: Probe) -> Option<Decision> {
        self.decide_via(from, to, probe, Addressing::PodIp)
    }

    /// One cell with its reasons, for a probe addressed as `via`.
    pub fn decide_via(
        &self,
        from: &PodRef,
        to: &PodRef,
        probe: Probe,
        via: Addressing,
    ) -> Option<Decision> {
        let (src, dst) = (*self.index.get(from)?, *self.index.get(to)?);
        let egress = self.decide_direction(Direction::Egress, src, dst, probe, via);
        let ingress = self.decide_direction(Direction::Ingress, dst, src, probe, via);
        let both = possible_of(&egress).both(possible_of(&ingress));
        Some(Decision {
            from: from.clone(),
            to: to.clone(),
            probe,
            allowed: both.allow && !both.deny,
            implementation_defined: both.allow && both.deny,
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
        via: Addressing,
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
        let isolated = !selecting_idx.is_empty();
        let np_allowed = !isolated || !allowed_by.is_empty();
        let selecting = selecting_idx
            .iter()
            .map(|&i| self.policies[i].key.clone())
            .collect();
        let (possible, tiers) = if self.cluster.is_empty() {
            (Possible::of(np_allowed), None)
        } else {
            let (p, t) = self.decide_tiers(dir, subject, peer, probe, via, isolated, np_allowed);
            (p, Some(t))
        };
        DirectionDecision {
            direction: dir,
            pod: self.refs[subject].clone(),
            selecting,
            allowed_by,
            allowed: possible.allow && !possible.deny,
            implementation_defined: possible.allow && possible.deny,
            tiers,
        }
    }

    /// The cluster-wide tiers around the NetworkPolicy answer, one rule at a time. Which policies
    /// select the subject is worked out here from the selectors, not from the index the matrix
    /// uses, so the two paths stay independent.
    #[allow(clippy::too_many_arguments)]
    fn decide_tiers(
        &self,
        dir: Direction,
        subject: usize,
        peer: usize,
        probe: Probe,
        via: Addressing,
        isolated: bool,
        np_allowed: bool,
    ) -> (Possible, TierTrace) {
        let np_tier = if isolated {
            DecidedBy::NetworkPolicy
        } else {
            DecidedBy::Default
        };
        let mut trace = TierTrace {
            hairpin: subject == peer && via == Addressing::PodIp,
            admin: Vec::new(),
            baseline: Vec::new(),
            admin_not_reached: Vec::new(),
            baseline_not_reached: Vec::new(),
            decided_by: np_tier,
            conflicts: Vec::new(),
        };
        if trace.hairpin {
            return (Possible::of(np_allowed), trace);
        }
        let sub = self.pods[subject];
        let peer_pod = self.pods[peer];
        let dst = match dir {
            Direction::Egress => peer_pod,
            Direction::Ingress => sub,
        };
        let in_tier = |tier: Tier| -> Vec<&ClusterPolicy> {
            let mut v: Vec<&ClusterPolicy> = self
                .cluster
                .iter()
                .filter(|c| {
                    c.tier == tier
                        && !c.rules(dir).is_empty()
                        && c.selects(sub, ns_labels(self.model, sub))
                })
                .collect();
            v.sort_by_key(|c| c.order_key());
            v
        };
        let walk = |list: Vec<&ClusterPolicy>,
                    evals: &mut Vec<ClusterEval>,
                    conflicts: &mut Vec<Conflict>,
                    skipped: &mut Vec<(ClusterPolicyRef, Option<u32>)>|
         -> BTreeSet<Action> {
            let mut k = 0;
            while k < list.len() {
                let prio = list[k].priority;
                let group_end = if prio.is_none() {
                    k + 1
                } else {
                    k + list[k..].iter().take_while(|c| c.priority == prio).count()
                };
                let mut actions = BTreeSet::new();
                let mut acted = Vec::new();
                for pol in &list[k..group_end] {
                    let matched = first_match(pol.rules(dir), peer_pod, dst, probe, self.model);
                    if let Some(m) = &matched {
                        actions.insert(m.action);
                        acted.push((pol.key.clone(), m.action));
                    }
                    evals.push(ClusterEval {
                        policy: pol.key.clone(),
                        tier: pol.tier,
                        priority: pol.priority,
                        matched,
                    });
                }
                if !actions.is_empty() {
                    if actions.len() > 1 {
                        conflicts.push(Conflict {
                            tier: list[k].tier,
                            priority: prio,
                            policies: acted,
                        });
                    }
                    skipped.extend(
                        list[group_end..]
                            .iter()
                            .map(|c| (c.key.clone(), c.priority)),
                    );
                    return actions;
                }
                k = group_end;
            }
            BTreeSet::new()
        };
        let admin = walk(
            in_tier(Tier::Admin),
            &mut trace.admin,
            &mut trace.conflicts,
            &mut trace.admin_not_reached,
        );
        if admin.iter().any(|a| *a != Action::Pass) {
            trace.decided_by = DecidedBy::Admin;
        }
        let mut possible = Possible {
            allow: admin.contains(&Action::Accept),
            deny: admin.contains(&Action::Deny),
        };
        if admin.is_empty() || admin.contains(&Action::Pass) {
            let lower = if isolated {
                Possible::of(np_allowed)
            } else {
                let base = walk(
                    in_tier(Tier::Baseline),
                    &mut trace.baseline,
                    &mut trace.conflicts,
                    &mut trace.baseline_not_reached,
                );
                if trace.decided_by != DecidedBy::Admin && base.iter().any(|a| *a != Action::Pass) {
                    trace.decided_by = DecidedBy::Baseline;
                }
                Possible {
                    // Accept, Pass (to the default) and no match all allow.
                    allow: base.is_empty()
                        || base.contains(&Action::Accept)
                        || base.contains(&Action::Pass),
                    deny: base.contains(&Action::Deny),
                }
            };
            possible = possible.or(lower);
        }
        (possible, trace)
    }

    /// The whole from × to matrix for one probe by pod IP: `Some(allowed)`, or `None` where the
    /// answer is implementation-defined.
    pub fn expected_matrix(&self, probe: Probe) -> TruthTable<Option<bool>> {
        self.expected_matrix_via(probe, Addressing::PodIp)
    }

    /// The boolean view of [`Oracle::expected_matrix`]: `true` only where every implementation
    /// must allow. Implementation-defined cells read `false`; callers that may meet them (any step
    /// with cluster-wide policies) use `expected_matrix`.
    pub fn matrix(&self, probe: Probe) -> TruthTable<bool> {
        if self.cluster.is_empty() {
            let (egress, ingress) = self.np_sets(probe);
            return TruthTable::from_fn(self.refs.clone(), |i, j| {
                egress[i].contains(j) && ingress[j].contains(i)
            });
        }
        self.expected_matrix(probe).map(|v| *v == Some(true))
    }

    /// The matrix for a probe addressed as `via`.
    pub fn expected_matrix_via(&self, probe: Probe, via: Addressing) -> TruthTable<Option<bool>> {
        let (egress, ingress) = self.np_sets(probe);
        if self.cluster.is_empty() {
            return TruthTable::from_fn(self.refs.clone(), |i, j| {
                Some(egress[i].contains(j) && ingress[j].contains(i))
            });
        }
        let e = self.tiered(Direction::Egress, &egress, probe, via);
        let i = self.tiered(Direction::Ingress, &ingress, probe, via);
        TruthTable::from_fn(self.refs.clone(), |s, d| {
            let allow = e[s].0.contains(d) && i[d].0.contains(s);
            let deny = e[s].1.contains(d) || i[d].1.contains(s);
            if !allow {
                Some(false)
            } else if deny {
                None
            } else {
                Some(true)
            }
        })
    }

    /// NetworkPolicy alone: per destination the sources its ingress admits, per source the
    /// destinations its egress admits (everything where the pod is not isolated).
    fn np_sets(&self, probe: Probe) -> (Vec<BitSet>, Vec<BitSet>) {
        let n = self.pods.len();
        let all = BitSet::full(n);
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
        (egress, ingress)
    }

    /// Per subject pod of `dir`: the peers it may allow and the peers it may deny, all tiers
    /// composed around `np` (the NetworkPolicy answer per subject).
    fn tiered(
        &self,
        dir: Direction,
        np: &[BitSet],
        probe: Probe,
        via: Addressing,
    ) -> Vec<(BitSet, BitSet)> {
        let n = self.pods.len();
        let all = BitSet::full(n);
        let d = dir_index(dir);
        // Egress port entries resolve on the peer (the destination): one set per rule and probe.
        let mut port_sets: HashMap<(usize, usize), BitSet> = HashMap::new();
        (0..n)
            .map(|s| {
                let np_allow = &np[s];
                let lists = &self.tier_lists[d][s];
                let isolated = !self.targets[d][s].is_empty();
                let (mut allow, mut deny) = if lists.admin.is_empty() && lists.baseline.is_empty() {
                    (np_allow.clone(), np_allow.complement_in(&all))
                } else {
                    let admin = self.tier_sets(&lists.admin, dir, s, probe, &mut port_sets);
                    let (lower_allow, lower_deny) = if isolated {
                        (np_allow.clone(), np_allow.complement_in(&all))
                    } else {
                        let b = self.tier_sets(&lists.baseline, dir, s, probe, &mut port_sets);
                        let mut allow = b.accept;
                        allow.union_with(&b.pass);
                        allow.union_with(&b.unmatched);
                        (allow, b.deny)
                    };
                    // Peers whose admin decision is Pass or no match fall through to the tiers
                    // below; a conflict involving Pass may take either way.
                    let mut through = admin.pass;
                    through.union_with(&admin.unmatched);
                    let mut allow = admin.accept;
                    allow.union_with_and(&through, &lower_allow);
                    let mut deny = admin.deny;
                    deny.union_with_and(&through, &lower_deny);
                    (allow, deny)
                };
                if via == Addressing::PodIp {
                    // Hairpin: NetworkPolicy alone decides the pod's connection to itself.
                    let own = np_allow.contains(s);
                    allow.set(s, own);
                    deny.set(s, !own);
                }
                (allow, deny)
            })
            .collect()
    }

    /// One tier for subject `s`: per peer, the actions its deciding priority may take.
    fn tier_sets(
        &self,
        list: &[usize],
        dir: Direction,
        s: usize,
        probe: Probe,
        port_sets: &mut HashMap<(usize, usize), BitSet>,
    ) -> TierSets {
        let n = self.pods.len();
        let all = BitSet::full(n);
        let d = dir_index(dir);
        let mut out = TierSets {
            accept: BitSet::empty(n),
            deny: BitSet::empty(n),
            pass: BitSet::empty(n),
            unmatched: all.clone(),
        };
        let mut k = 0;
        while k < list.len() && !out.unmatched.is_empty() {
            let prio = self.cluster[list[k]].priority;
            let end = if prio.is_none() {
                k + 1
            } else {
                k + list[k..]
                    .iter()
                    .take_while(|&&c| self.cluster[c].priority == prio)
                    .count()
            };
            let mut g = [BitSet::empty(n), BitSet::empty(n), BitSet::empty(n)];
            for &c in &list[k..end] {
                let pol = &self.cluster[c];
                // Each policy's own first match: rules earlier in the list shadow later ones.
                let mut remaining = all.clone();
                for (ri, rule) in pol.rules(dir).iter().enumerate() {
                    if remaining.is_empty() {
                        break;
                    }
                    let peers = &self.cluster_peer_sets[c][d][ri];
                    let matched = match dir {
                        Direction::Ingress => {
                            if rule.port_hit(probe, self.pods[s]).is_some() {
                                peers.and(&remaining)
                            } else {
                                continue;
                            }
                        }
                        Direction::Egress => {
                            let ports = port_sets.entry((c, ri)).or_insert_with(|| {
                                let mut set = BitSet::empty(n);
                                for (j, p) in self.pods.iter().enumerate() {
                                    if rule.port_hit(probe, p).is_some() {
                                        set.insert(j);
                                    }
                                }
                                set
                            });
                            peers.and(ports).and(&remaining)
                        }
                    };
                    remaining.difference_with(&matched);
                    g[action_slot(rule.effective_action())].union_with(&matched);
                }
            }
            // Only peers still undecided take this priority's actions.
            let [ga, gd, gp] = g;
            out.accept.union_with_and(&ga, &out.unmatched);
            out.deny.union_with_and(&gd, &out.unmatched);
            out.pass.union_with_and(&gp, &out.unmatched);
            out.unmatched.difference_with(&ga);
            out.unmatched.difference_with(&gd);
            out.unmatched.difference_with(&gp);
            k = end;
        }
        out
    }
}

fn action_slot(a: Action) -> usize {
    match a {
        Action::Accept => 0,
        Action::Deny => 1,
        Action::Pass => 2,
    }
}

fn possible_of(d: &DirectionDecision) -> Possible {
    if d.implementation_defined {
        Possible::ALLOW.or(Possible::DENY)
    } else {
        Possible::of(d.allowed)
    }
}

/// The first rule of a cluster-wide policy's direction matching `peer` on `probe` (ports resolved
/// on `dst`).
fn first_match(
    rules: &[ClusterRule],
    peer: &Pod,
    dst: &Pod,
    probe: Probe,
    model: &Model,
) -> Option<ClusterRuleMatch> {
    rules.iter().enumerate().find_map(|(ri, rule)| {
        let port = rule.port_hit(probe, dst)?;
        let peer_i = rule.peer_hit(peer, ns_labels(model, peer))?;
        Some(ClusterRuleMatch {
            rule: ri,
            name: rule.name.clone(),
            action: rule.effective_action(),
            peer: peer_i,
            port,
            fail_closed: rule.fail_closed,
        })
    })
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

#[cfg(test)]
mod tests {
    use crate::model::{PodRef, Probe, Protocol};
    use crate::scenario::{Step, load_str};

    /// Namespaces x (ns=x) and y (ns=y), pods a and b in each (pod=<name>), ports 80/81 TCP,
    /// 80 UDP, 80 SCTP with names serve-<port>-<proto>, plus `policies` (YAML documents).
    fn step(policies: &str) -> Step {
        let mut yaml = String::new();
        for ns in ["x", "y"] {
            yaml.push_str(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ns: {ns}}}}}\n---\n"
            ));
            for pod in ["a", "b"] {
                yaml.push_str(&format!(
                    "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {ns}, labels: {{pod: {pod}}}}}\n\
                     spec:\n  containers:\n  - name: c\n    image: agnhost\n    ports:\n\
                     \x20   - {{containerPort: 80, name: serve-80-tcp}}\n\
                     \x20   - {{containerPort: 81, name: serve-81-tcp}}\n\
                     \x20   - {{containerPort: 80, protocol: UDP, name: serve-80-udp}}\n\
                     \x20   - {{containerPort: 80, protocol: SCTP, name: serve-80-sctp}}\n---\n"
                ));
            }
        }
        yaml.push_str(policies);
        let loaded = load_str(&yaml, "inline.yaml").unwrap_or_else(|e| panic!("{e}"));
        loaded.scenarios[0].steps[0].clone()
    }

    fn p(s: &str) -> PodRef {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    const TCP80: Probe = Probe {
        port: 80,
        protocol: Protocol::Tcp,
    };
    const TCP81: Probe = Probe {
        port: 81,
        protocol: Protocol::Tcp,
    };
    const UDP80: Probe = Probe {
        port: 80,
        protocol: Protocol::Udp,
    };
    const SCTP80: Probe = Probe {
        port: 80,
        protocol: Protocol::Sctp,
    };

    /// The allowed cells of a probe as "from->to" strings, checking decide() agrees with matrix().
    fn allowed(step: &Step, probe: Probe) -> Vec<String> {
        let oracle = step.oracle();
        let table = oracle.matrix(probe);
        let mut out = Vec::new();
        for (f, t, v) in table.iter() {
            let d = oracle
                .decide(f, t, probe)
                .unwrap_or_else(|| panic!("{f} {t}"));
            assert_eq!(
                d.allowed, *v,
                "decide and matrix disagree on {f} -> {t} {probe}"
            );
            if *v {
                out.push(format!("{f}->{t}"));
            }
        }
        out
    }

    fn denied(step: &Step, probe: Probe) -> Vec<String> {
        let oracle = step.oracle();
        let table = oracle.matrix(probe);
        let _ = allowed(step, probe);
        table
            .iter()
            .filter(|c| !*c.2)
            .map(|(f, t, _)| format!("{f}->{t}"))
            .collect()
    }

    fn policy(ns: &str, name: &str, spec: &str) -> String {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}\n---\n"
        )
    }

    fn all_into(ns_pod: &str) -> Vec<String> {
        ["x/a", "x/b", "y/a", "y/b"]
            .iter()
            .map(|f| format!("{f}->{ns_pod}"))
            .collect()
    }

    #[test]
    fn no_policy_allows_everything() {
        let s = step("");
        assert_eq!(allowed(&s, TCP80).len(), 16);
        assert_eq!(allowed(&s, SCTP80).len(), 16);
    }

    #[test]
    fn default_deny_ingress_isolates_only_the_selected_pods() {
        let s = step(&policy(
            "x",
            "deny",
            "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress]",
        ));
        assert_eq!(denied(&s, TCP80), all_into("x/a"));
        // Egress of x/a is untouched.
        assert!(allowed(&s, TCP80).contains(&"x/a->y/b".to_string()));
    }

    #[test]
    fn missing_ingress_list_defaults_to_ingress_policy_and_denies() {
        // No policyTypes and no ingress: defaulted to [Ingress] with no rules: deny all ingress.
        let s = step(&policy("x", "deny", "  podSelector: {}"));
        let d = denied(&s, TCP80);
        assert_eq!(d.len(), 8);
        assert!(
            d.iter()
                .all(|c| c.ends_with("->x/a") || c.ends_with("->x/b"))
        );
    }

    #[test]
    fn empty_egress_without_policy_types_does_not_make_an_egress_policy() {
        // `egress: []` is empty, so defaulting adds only Ingress: x's pods deny ingress, egress free.
        let s = step(&policy("x", "p", "  podSelector: {}\n  egress: []"));
        let d = denied(&s, TCP80);
        assert!(
            d.iter()
                .all(|c| c.ends_with("->x/a") || c.ends_with("->x/b"))
        );
        assert!(allowed(&s, TCP80).contains(&"x/a->y/a".to_string()));
    }

    #[test]
    fn non_empty_egress_without_policy_types_adds_egress() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchLabels: {pod: a}}\n  egress:\n  - to: [{podSelector: {matchLabels: {pod: b}}}]",
        ));
        let a = allowed(&s, TCP80);
        // x/a may only reach x/b (egress), and x/a is also isolated for ingress (no ingress rules).
        assert!(a.contains(&"x/a->x/b".to_string()));
        assert!(!a.contains(&"x/a->y/b".to_string()));
        assert!(!a.contains(&"x/b->x/a".to_string()));
    }

    #[test]
    fn ingress_list_with_an_empty_rule_allows_all() {
        let s = step(&policy("x", "allow", "  podSelector: {}\n  ingress: [{}]"));
        assert_eq!(allowed(&s, TCP80).len(), 16);
    }

    #[test]
    fn empty_from_means_every_peer() {
        let s = step(&policy(
            "x",
            "allow",
            "  podSelector: {}\n  ingress: [{from: [], ports: [{port: 80}]}]",
        ));
        assert_eq!(allowed(&s, TCP80).len(), 16);
        assert_eq!(denied(&s, TCP81).len(), 8);
    }

    #[test]
    fn empty_ingress_list_denies_all() {
        let s = step(&policy(
            "x",
            "deny",
            "  podSelector: {}\n  ingress: []\n  policyTypes: [Ingress]",
        ));
        assert_eq!(denied(&s, TCP80).len(), 8);
    }

    #[test]
    fn policy_types_egress_only_ignores_ingress_rules() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  ingress: []\n  egress: [{}]",
        ));
        assert_eq!(allowed(&s, TCP80).len(), 16);
    }

    #[test]
    fn pod_selector_peer_is_limited_to_the_policy_namespace() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]",
        ));
        let d = denied(&s, TCP80);
        assert_eq!(d, ["x/a->x/a", "y/a->x/a", "y/b->x/a"]);
    }

    #[test]
    fn empty_pod_selector_peer_means_all_pods_of_the_namespace() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {}\n  ingress: [{from: [{podSelector: {}}]}]",
        ));
        let d = denied(&s, TCP80);
        assert!(d.iter().all(|c| c.starts_with("y/")), "{d:?}");
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn empty_namespace_selector_peer_means_all_pods_of_all_namespaces() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {}}]}]",
        ));
        assert_eq!(allowed(&s, TCP80).len(), 16);
    }

    #[test]
    fn pod_and_namespace_selector_in_one_peer_are_anded() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: y}}\n      podSelector: {matchLabels: {pod: b}}",
        ));
        assert_eq!(denied(&s, TCP80), ["x/a->x/a", "x/b->x/a", "y/a->x/a"]);
    }

    #[test]
    fn two_peers_are_ored() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: y}}\n    - podSelector: {matchLabels: {pod: b}}",
        ));
        assert_eq!(denied(&s, TCP80), ["x/a->x/a"]);
    }

    #[test]
    fn namespace_name_label_is_selectable() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]}]",
        ));
        let d = denied(&s, TCP80);
        assert!(d.iter().all(|c| c.starts_with("x/")), "{d:?}");
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn ports_and_peers_are_anded_within_a_rule() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {pod: b}}}]\n    ports: [{port: 81}]",
        ));
        assert_eq!(denied(&s, TCP80), all_into("x/a"));
        assert_eq!(denied(&s, TCP81), ["x/a->x/a", "y/a->x/a", "y/b->x/a"]);
    }

    #[test]
    fn policies_add_up() {
        let two = format!(
            "{}{}",
            policy(
                "x",
                "from-b",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]"
            ),
            policy(
                "x",
                "from-y",
                "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]"
            ),
        );
        let s = step(&two);
        assert_eq!(denied(&s, TCP80), ["x/a->x/a"]);
        let d = s
            .explain(&p("y/a"), &p("x/a"), TCP80)
            .unwrap_or_else(|| panic!("cell"));
        assert_eq!(d.ingress.selecting.len(), 2);
        assert_eq!(d.ingress.allowed_by.len(), 1);
        assert_eq!(d.ingress.allowed_by[0].policy.name, "from-y");
    }

    #[test]
    fn a_connection_needs_egress_and_ingress() {
        let two = format!(
            "{}{}",
            policy(
                "x",
                "egress-to-b-only",
                "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]"
            ),
            policy(
                "y",
                "deny-in",
                "  podSelector: {matchLabels: {pod: b}}\n  policyTypes: [Ingress]"
            ),
        );
        let s = step(&two);
        let a = allowed(&s, TCP80);
        assert!(a.contains(&"x/a->x/b".to_string()));
        assert!(!a.contains(&"x/a->y/a".to_string()), "egress denies");
        assert!(!a.contains(&"x/b->y/b".to_string()), "ingress denies");
        let d = s
            .explain(&p("x/a"), &p("y/b"), TCP80)
            .unwrap_or_else(|| panic!("cell"));
        assert!(!d.egress.allowed && !d.ingress.allowed && !d.allowed);
    }

    #[test]
    fn ip_block_with_except_matches_pod_addresses() {
        // Pods get 10.244.0.2.. in namespace/pod order: x/a .2, x/b .3, y/a .4, y/b .5.
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/29, except: [10.244.0.4/31]}}]}]",
        ));
        // .0/29 covers .0-.7; except .4/31 removes y/a (.4) and y/b (.5).
        assert_eq!(denied(&s, TCP80), ["y/a->x/a", "y/b->x/a"]);
    }

    #[test]
    fn named_ports_resolve_on_the_destination() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{ports: [{port: serve-81-tcp}]}]",
        ));
        assert_eq!(denied(&s, TCP80), all_into("x/a"));
        assert!(denied(&s, TCP81).is_empty());
        // The name exists only for TCP: UDP 80 via a TCP-named port is not admitted.
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{ports: [{port: serve-80-udp, protocol: UDP}]}]",
        ));
        assert!(denied(&s, UDP80).is_empty());
        assert_eq!(denied(&s, TCP80), all_into("x/a"));
    }

    #[test]
    fn egress_named_ports_resolve_on_each_destination() {
        // Pod y/b serves 80 under another name: the egress rule's name does not match there.
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: c, namespace: y, labels: {{pod: c}}}}\nspec: {{containers: [{{name: c, image: i, ports: [{{containerPort: 80, name: web}}]}}]}}\n---\n{}",
            policy(
                "x",
                "p",
                "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: serve-80-tcp}]}]"
            )
        );
        let s = step(&yaml);
        let a = allowed(&s, TCP80);
        assert!(a.contains(&"x/a->y/b".to_string()));
        assert!(!a.contains(&"x/a->y/c".to_string()));
    }

    #[test]
    fn end_port_admits_a_range() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{ports: [{port: 81, endPort: 90}]}]",
        ));
        assert_eq!(denied(&s, TCP80), all_into("x/a"));
        assert!(denied(&s, TCP81).is_empty());
        assert!(denied(&s, Probe::new(90, Protocol::Tcp)).is_empty());
        assert_eq!(denied(&s, Probe::new(91, Protocol::Tcp)).len(), 4);
    }

    #[test]
    fn protocols_are_distinct() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{ports: [{port: 80, protocol: UDP}]}]",
        ));
        assert!(denied(&s, UDP80).is_empty());
        assert_eq!(denied(&s, TCP80), all_into("x/a"));
        assert_eq!(denied(&s, SCTP80), all_into("x/a"));
    }

    #[test]
    fn match_expressions_select_peers() {
        let s = step(&policy(
            "x",
            "p",
            "  podSelector: {matchExpressions: [{key: pod, operator: In, values: [a]}]}\n  ingress:\n  - from:\n    - namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x]}]}\n      podSelector: {matchExpressions: [{key: pod, operator: Exists}]}",
        ));
        assert_eq!(denied(&s, TCP80), ["x/a->x/a", "x/b->x/a"]);
    }

    #[test]
    fn self_connections_follow_the_policies() {
        let s = step(&policy(
            "x",
            "deny",
            "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress]",
        ));
        assert!(denied(&s, TCP80).contains(&"x/a->x/a".to_string()));
    }

    #[test]
    fn host_bits_are_accepted_with_a_warning() {
        let yaml = policy(
            "x",
            "p",
            "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.244.1.10/4}}]}]",
        );
        let full =
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: a, namespace: x}}\n---\n{yaml}");
        let loaded = load_str(&full, "w.yaml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings[0].message.contains("0.0.0.0/4"),
            "{}",
            loaded.warnings[0]
        );
    }
}
