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
        if !n.is_multiple_of(64)
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
