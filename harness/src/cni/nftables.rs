//! Compiles a step's policies into one nftables ruleset per pod, the way a CNI does.
//!
//! Each pod's network namespace gets `table inet netpolc` with two base chains:
//! - `ingress` on the `input` hook: when the pod is selected by a policy for ingress, only packets
//!   whose source address and destination port some rule admits are accepted; the rest is dropped.
//! - `egress` on the `output` hook: the same at the source, with peers resolved to destination
//!   addresses. Named ports are resolved on each destination pod, so an egress rule naming a port
//!   becomes `(address . port)` pairs.
//!
//! Both chains start with `ct state established,related accept`, so replies ride on the
//! connection the first packet opened. Pods no policy selects in a direction get an open chain.
//!
//! Cluster-wide policies (network-policy-api tiers) wrap the NetworkPolicy rules of each chain:
//! - `<dir>_admin`, jumped before the NetworkPolicy rules: the Admin-tier rules of every policy
//!   selecting the pod, policies by priority (then kind/name, as the oracle orders equal
//!   priorities) and rules in their written order; `Accept` accepts, `Deny` drops, `Pass` returns
//!   to the base chain, where the NetworkPolicy rules decide.
//! - `<dir>_baseline`, jumped only from a chain no NetworkPolicy isolates, after which the base
//!   chain's policy accepts: the Baseline-tier rules, `Pass` returning to that default allow.
//!
//! Both jumps skip the pod's own address: a pod reaching its own pod IP is not subject to cluster
//! policies (see [`crate::policy::Addressing`]), while NetworkPolicies still apply to it. A pod
//! reaching itself through a Service (conntrack status `dnat`) is: a second jump per tier takes it.
//!
//! Loopback: a pod connecting to its own address sends through `lo` inside its namespace, and the
//! packet crosses this pod's `egress` chain and then its `ingress` chain. The oracle evaluates a
//! self-connection like any pair (egress at the source AND ingress at the destination), and since
//! source and destination are the same pod here, the dataplane agrees with it without special rules.
//!
//! The compiler is pure: it returns typed rules ([`PodRuleset`]) that can be evaluated in software
//! ([`PodRuleset::admits`]) for tests without root, and that become an nftables table model
//! ([`PodRuleset::table`], see [`crate::cni::nft`]) installed through nft's JSON input — names
//! (policies in rule comments) are JSON strings there, never nft syntax.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use crate::cni::faults::{Fault, FaultSet};
use crate::cni::nft::{self, Hook, Key, Match, Stmt, Val, Verdict};
use crate::model::{Model, Pod, PodRef, Protocol};
use crate::policy::PolicyRef;
use crate::policy::cluster::{Action, ClusterPeer, ClusterPolicy, ClusterPolicyRef, ClusterPort};
use crate::policy::compile::{CompiledPolicy, Direction, PortMatch, PortSpec, Rule};
use crate::policy::oracle::peer_matches;
use crate::scenario::Step;

/// The nftables table every pod namespace gets (family `inet`).
pub const TABLE: &str = "netpolc";

/// A set of IPv4 addresses: sorted, disjoint, non-adjacent inclusive intervals (what an nftables
/// interval set holds; keeping it normalised avoids overlapping elements, which `nft` rejects).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddrSet(Vec<(u32, u32)>);

impl AddrSet {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn intervals(&self) -> &[(u32, u32)] {
        &self.0
    }

    pub fn insert(&mut self, ip: Ipv4Addr) {
        let v = u32::from(ip);
        self.insert_range(v, v);
    }

    pub fn insert_range(&mut self, lo: u32, hi: u32) {
        self.0.push((lo.min(hi), lo.max(hi)));
        self.normalise();
    }

    /// Adds an IPv4 network; IPv6 networks hold no address of an IPv4 dataplane and add nothing.
    pub fn insert_net(&mut self, net: &IpNet) {
        if let Some((lo, hi)) = v4_bounds(net) {
            self.insert_range(lo, hi);
        }
    }

    pub fn remove_net(&mut self, net: &IpNet) {
        if let Some((lo, hi)) = v4_bounds(net) {
            self.remove_range(lo, hi);
        }
    }

    pub fn remove(&mut self, ip: Ipv4Addr) {
        let v = u32::from(ip);
        self.remove_range(v, v);
    }

    fn remove_range(&mut self, lo: u32, hi: u32) {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < lo || a > hi {
                out.push((a, b));
                continue;
            }
            if a < lo {
                out.push((a, lo - 1));
            }
            if b > hi {
                out.push((hi + 1, b));
            }
        }
        self.0 = out;
    }

    pub fn union_with(&mut self, other: &AddrSet) {
        self.0.extend_from_slice(&other.0);
        self.normalise();
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        self.0.iter().any(|&(a, b)| a <= v && v <= b)
    }

    /// The intervals as match values (single addresses where an interval holds one).
    fn vals(&self) -> Vec<Val> {
        self.0
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    Val::Addr(Ipv4Addr::from(a))
                } else {
                    Val::AddrRange(Ipv4Addr::from(a), Ipv4Addr::from(b))
                }
            })
            .collect()
    }

    fn normalise(&mut self) {
        self.0.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(self.0.len());
        for &(a, b) in &self.0 {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        self.0 = out;
    }
}

impl fmt::Display for AddrSet {
    /// `{ 10.0.0.1, 10.1.0.0-10.1.255.255 }`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{ ")?;
        for (i, &(a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if a == b {
                write!(f, "{}", Ipv4Addr::from(a))?;
            } else {
                write!(f, "{}-{}", Ipv4Addr::from(a), Ipv4Addr::from(b))?;
            }
        }
        f.write_str(" }")
    }
}

fn v4_bounds(net: &IpNet) -> Option<(u32, u32)> {
    match net {
        IpNet::V4(n) => Some((u32::from(n.network()), u32::from(n.broadcast()))),
        IpNet::V6(_) => None,
    }
}

fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(_) => None,
    }
}

/// What a rule admits at layer 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4 {
    /// Every protocol and port (`ports` missing or empty).
    Any,
    /// Every port of one protocol (a port entry without `port`).
    Proto(Protocol),
    /// Some ports of one protocol: sorted, merged inclusive ranges.
    Ports(Protocol, Vec<(u16, u16)>),
}

impl L4 {
    fn admits(&self, protocol: Protocol, port: u16) -> bool {
        match self {
            L4::Any => true,
            L4::Proto(p) => *p == protocol,
            L4::Ports(p, ranges) => {
                *p == protocol && ranges.iter().any(|&(a, b)| a <= port && port <= b)
            }
        }
    }
}

impl L4 {
    /// The match statements (none for [`L4::Any`]).
    fn stmts(&self) -> Vec<Stmt> {
        match self {
            L4::Any => Vec::new(),
            L4::Proto(p) => vec![Stmt::Match(Match::new(Key::L4Proto, vec![Val::Proto(*p)]))],
            L4::Ports(p, ranges) => vec![Stmt::Match(Match::new(
                Key::Dport(*p),
                ranges.iter().map(|&(a, b)| Val::PortRange(a, b)).collect(),
            ))],
        }
    }
}

/// One accepting nftables rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accept {
    /// Peer addresses (`None`: any address) AND layer 4.
    Match { peers: Option<AddrSet>, l4: L4 },
    /// Egress with named ports: each destination pod's address with the port the name resolves to
    /// on that pod (`ip daddr . tcp dport { 10.0.0.2 . 8080, … }`).
    Pairs {
        protocol: Protocol,
        pairs: Vec<(Ipv4Addr, u16)>,
    },
}

impl Accept {
    fn admits(&self, peer: Ipv4Addr, protocol: Protocol, port: u16) -> bool {
        match self {
            Accept::Match { peers, l4 } => {
                peers.as_ref().is_none_or(|s| s.contains(peer)) && l4.admits(protocol, port)
            }
            Accept::Pairs { protocol: p, pairs } => *p == protocol && pairs.contains(&(peer, port)),
        }
    }

    /// The rule's match statements (without verdict); `dir` says which address is the peer's.
    fn stmts(&self, dir: Direction) -> Vec<Stmt> {
        let addr = match dir {
            Direction::Ingress => Key::IpSaddr,
            Direction::Egress => Key::IpDaddr,
        };
        match self {
            Accept::Match { peers, l4 } => {
                let mut out = Vec::new();
                if let Some(s) = peers {
                    out.push(Stmt::Match(Match::new(addr, s.vals())));
                }
                out.extend(l4.stmts());
                out
            }
            Accept::Pairs { protocol, pairs } => vec![Stmt::Match(Match::new(
                Key::Concat(vec![addr, Key::Dport(*protocol)]),
                pairs
                    .iter()
                    .map(|&(ip, p)| Val::Concat(vec![Val::Addr(ip), Val::Port(p)]))
                    .collect(),
            ))],
        }
    }
}

/// The accepting rules one policy contributes to a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRules {
    pub policy: PolicyRef,
    pub accepts: Vec<Accept>,
}

/// One direction of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chain {
    /// No policy selects the pod in this direction: everything passes.
    Open,
    /// Selected: only what some policy's rules accept passes (every policy's, under the
    /// intersection fault).
    Isolated(Vec<PolicyRules>),
}

/// One rule of a cluster-wide policy as installed: it matches when any of `matches` does (none:
/// it never matches, e.g. its peers select no address), and then takes `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRule {
    pub policy: ClusterPolicyRef,
    /// Index of the rule in its policy's direction.
    pub rule: usize,
    /// The action after the API's fail-closed rule ([`crate::policy::ClusterRule::effective_action`]).
    pub action: Action,
    pub matches: Vec<Accept>,
}

/// The cluster-wide rules of one direction of one pod, in evaluation order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tiers {
    pub admin: Vec<TierRule>,
    pub baseline: Vec<TierRule>,
}

/// The action of the first rule matching, if any.
fn first_action(
    rules: &[TierRule],
    peer: Ipv4Addr,
    protocol: Protocol,
    port: u16,
) -> Option<Action> {
    rules
        .iter()
        .find(|r| r.matches.iter().any(|m| m.admits(peer, protocol, port)))
        .map(|r| r.action)
}

/// Dataplane-shape switches (the faults that are not a change of policy meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Policies selecting a pod are AND-ed (fault `intersection`).
    pub intersection: bool,
    /// UDP is accepted before any policy rule (fault `udp-unenforced`).
    pub udp_unenforced: bool,
    /// No `ct state established,related accept` (fault `stateless`).
    pub stateless: bool,
    /// The egress chain runs before service DNAT, so it sees ClusterIPs (fault
    /// `service-pre-dnat`).
    pub service_pre_dnat: bool,
    /// DNAT'ed connections are accepted before the egress rules (fault `service-bypass`).
    pub service_bypass: bool,
    /// Replies of DNAT'ed connections are dropped at the client (fault
    /// `service-replies-dropped`).
    pub service_replies_dropped: bool,
    /// The Baseline tier also runs for pods a NetworkPolicy isolates, on the traffic the
    /// NetworkPolicies allow (fault `baseline-ignores-isolation`).
    pub baseline_ignores_isolation: bool,
    /// `networks` peers of cluster-wide policies leave pod addresses out (fault
    /// `networks-skip-pods`).
    pub networks_skip_pods: bool,
}

impl Shape {
    pub fn from_faults(faults: &FaultSet) -> Self {
        Shape {
            intersection: faults.has(Fault::Intersection),
            udp_unenforced: faults.has(Fault::UdpUnenforced),
            stateless: faults.has(Fault::Stateless),
            service_pre_dnat: faults.has(Fault::ServicePreDnat),
            service_bypass: faults.has(Fault::ServiceBypass),
            service_replies_dropped: faults.has(Fault::ServiceRepliesDropped),
            baseline_ignores_isolation: faults.has(Fault::BaselineIgnoresIsolation),
            networks_skip_pods: faults.has(Fault::NetworksSkipPods),
        }
    }
}

/// The complete ruleset of one pod's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRuleset {
    pub pod: PodRef,
    /// The pod's own address: the cluster tiers are skipped for traffic to itself.
    pub addr: Option<Ipv4Addr>,
    pub ingress: Chain,
    pub egress: Chain,
    pub ingress_tiers: Tiers,
    pub egress_tiers: Tiers,
    pub shape: Shape,
}

impl PodRuleset {
    fn chain(&self, dir: Direction) -> &Chain {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    fn tiers(&self, dir: Direction) -> &Tiers {
        match dir {
            Direction::Ingress => &self.ingress_tiers,
            Direction::Egress => &self.egress_tiers,
        }
    }

    /// Software evaluation of the first packet of a connection through one chain: `peer` is the
    /// other end's address, `protocol`/`port` the destination port. Mirrors [`Self::table`] (tests check that
    /// [`nft::Table::verdict`] agrees on every cell).
    pub fn admits(&self, dir: Direction, peer: Ipv4Addr, protocol: Protocol, port: u16) -> bool {
        if self.shape.udp_unenforced && protocol == Protocol::Udp {
            return true;
        }
        let tiers = self.tiers(dir);
        let hairpin = self.addr == Some(peer);
        if !hairpin {
            match first_action(&tiers.admin, peer, protocol, port) {
                Some(Action::Accept) => return true,
                Some(Action::Deny) => return false,
                Some(Action::Pass) | None => {}
            }
        }
        // Accept, Pass (to the default allow) and no match all allow.
        let baseline =
            || hairpin || first_action(&tiers.baseline, peer, protocol, port) != Some(Action::Deny);
        match self.chain(dir) {
            Chain::Open => baseline(),
            Chain::Isolated(pols) => {
                let hit =
                    |p: &PolicyRules| p.accepts.iter().any(|a| a.admits(peer, protocol, port));
                let np = if self.shape.intersection {
                    pols.iter().all(hit)
                } else {
                    pols.iter().any(hit)
                };
                np && (!self.shape.baseline_ignores_isolation || baseline())
            }
        }
    }

    /// The nftables table of the pod's namespace.
    ///
    /// `zone` is the conntrack zone every packet of the pod is tracked in. Installing a changed
    /// ruleset with a new zone starts connection tracking afresh, as CNIs flush conntrack on
    /// policy changes: otherwise a probe reusing the source port of an earlier, then-allowed UDP
    /// exchange would ride on its stale `established` entry past the new rules.
    pub fn table(&self, zone: u16) -> nft::Table {
        let mut chains = Vec::new();
        for (name, hook) in [("zone_in", Hook::Prerouting), ("zone_out", Hook::Output)] {
            chains.push(nft::Chain {
                name: name.into(),
                base: Some(base(hook, nft::priority::RAW)),
                rules: vec![nft::Rule::new(vec![Stmt::CtZone(zone)])],
            });
        }
        for dir in [Direction::Ingress, Direction::Egress] {
            self.chains_of(dir, &mut chains);
        }
        nft::Table {
            family: nft::Family::Inet,
            name: TABLE.into(),
            chains,
        }
    }

    /// The JSON document (`nft -j -f -`) replacing the pod's table in one transaction (see
    /// [`nft::Table::replace_commands`]).
    pub fn render(&self, zone: u16) -> String {
        self.table(zone).replace_json()
    }

    fn chains_of(&self, dir: Direction, out: &mut Vec<nft::Chain>) {
        let (name, hook) = match dir {
            Direction::Ingress => ("ingress", Hook::Input),
            Direction::Egress => ("egress", Hook::Output),
        };
        let with = |mut stmts: Vec<Stmt>, v: Verdict| {
            stmts.push(Stmt::Verdict(v));
            nft::Rule::new(stmts)
        };
        let mut rules = Vec::new();
        let dnat = || {
            Stmt::Match(Match::new(
                Key::CtStatus,
                vec![Val::CtStatus(nft::CtStatusFlag::Dnat)],
            ))
        };
        if self.shape.service_replies_dropped && dir == Direction::Ingress {
            // Replies of service connections come back DNAT'ed and established: dropped here.
            rules.push(with(
                vec![
                    dnat(),
                    Stmt::Match(Match::new(
                        Key::CtState,
                        vec![Val::Ct(nft::CtState::Established)],
                    )),
                ],
                Verdict::Drop,
            ));
        }
        if !self.shape.stateless {
            rules.push(with(
                vec![Stmt::Match(Match::new(
                    Key::CtState,
                    vec![
                        Val::Ct(nft::CtState::Established),
                        Val::Ct(nft::CtState::Related),
                    ],
                ))],
                Verdict::Accept,
            ));
        }
        if self.shape.service_bypass && dir == Direction::Egress {
            rules.push(with(vec![dnat()], Verdict::Accept));
        }
        if self.shape.udp_unenforced {
            rules.push(with(
                vec![Stmt::Match(Match::new(
                    Key::L4Proto,
                    vec![Val::Proto(Protocol::Udp)],
                ))],
                Verdict::Accept,
            ));
        }
        let tiers = self.tiers(dir);
        // Jumps into a tier chain skip the pod's own address (the pod-IP hairpin), but not a
        // pod reaching itself through a Service (DNAT'ed to its own address): that hairpin stays
        // subject to cluster-wide policies, as the oracle's `Addressing::ServiceIp` says. Two
        // rules with exclusive conditions, so a tier chain that returns is never entered twice.
        let tier_jumps = |target: &str| -> Vec<nft::Rule> {
            let key = match dir {
                Direction::Ingress => Key::IpSaddr,
                Direction::Egress => Key::IpDaddr,
            };
            match self.addr {
                None => vec![with(Vec::new(), Verdict::Jump(target.to_string()))],
                Some(a) => {
                    let mut not_self = Match::new(key.clone(), vec![Val::Addr(a)]);
                    not_self.negate = true;
                    vec![
                        with(
                            vec![Stmt::Match(not_self)],
                            Verdict::Jump(target.to_string()),
                        ),
                        with(
                            vec![
                                Stmt::Match(Match::new(key, vec![Val::Addr(a)])),
                                Stmt::Match(Match::new(
                                    Key::CtStatus,
                                    vec![Val::CtStatus(nft::CtStatusFlag::Dnat)],
                                )),
                            ],
                            Verdict::Jump(target.to_string()),
                        ),
                    ]
                }
            }
        };
        let admin = format!("{name}_admin");
        let baseline = format!("{name}_baseline");
        if !tiers.admin.is_empty() {
            out.push(tier_chain(&admin, &tiers.admin, dir));
            rules.extend(tier_jumps(&admin));
        }
        let has_baseline = !tiers.baseline.is_empty();
        if has_baseline {
            out.push(tier_chain(&baseline, &tiers.baseline, dir));
        }
        // Under baseline-ignores-isolation, what the NetworkPolicies allow still meets the
        // Baseline tier before it is accepted.
        let faulty_baseline = self.shape.baseline_ignores_isolation && has_baseline;
        let allowed = format!("{name}_np_allowed");
        match self.chain(dir) {
            Chain::Open => {
                if has_baseline {
                    rules.extend(tier_jumps(&baseline));
                }
            }
            Chain::Isolated(pols) => {
                if faulty_baseline {
                    out.push(nft::Chain {
                        name: allowed.clone(),
                        base: None,
                        rules: tier_jumps(&baseline)
                            .into_iter()
                            .chain([with(Vec::new(), Verdict::Accept)])
                            .collect(),
                    });
                }
                let accept = || {
                    if faulty_baseline {
                        Verdict::Goto(allowed.clone())
                    } else {
                        Verdict::Accept
                    }
                };
                if self.shape.intersection {
                    // Per-policy chains: each returns when its policy admits the packet and drops
                    // otherwise, so the base chain accepts only what every policy admits.
                    for (i, p) in pols.iter().enumerate() {
                        let sub = format!("{name}_p{i}");
                        let policy = p.policy.to_string();
                        let mut sub_rules: Vec<nft::Rule> = p
                            .accepts
                            .iter()
                            .map(|a| with(a.stmts(dir), Verdict::Return).comment(policy.clone()))
                            .collect();
                        sub_rules.push(with(Vec::new(), Verdict::Drop).comment(policy));
                        out.push(nft::Chain {
                            name: sub.clone(),
                            base: None,
                            rules: sub_rules,
                        });
                        rules.push(with(Vec::new(), Verdict::Jump(sub)));
                    }
                    rules.push(with(Vec::new(), accept()));
                } else {
                    for p in pols {
                        for a in &p.accepts {
                            rules.push(with(a.stmts(dir), accept()).comment(p.policy.to_string()));
                        }
                    }
                    rules.push(with(Vec::new(), Verdict::Drop));
                }
            }
        }
        // Policy acts after service DNAT (dstnat, -100) on the output hook, as on a node after
        // kube-proxy; the pre-DNAT fault hooks egress earlier, where ClusterIPs are still seen.
        let priority = if dir == Direction::Egress && self.shape.service_pre_dnat {
            nft::priority::MANGLE
        } else {
            nft::priority::FILTER
        };
        out.push(nft::Chain {
            name: name.into(),
            base: Some(base(hook, priority)),
            rules,
        });
    }
}

/// A filter base chain that accepts what its rules do not decide.
fn base(hook: Hook, priority: i32) -> nft::Base {
    nft::Base {
        kind: nft::ChainType::Filter,
        hook,
        priority,
        policy: nft::Policy::Accept,
    }
}

/// A regular chain holding one tier's rules in order: `Accept` accepts the packet, `Deny` drops
/// it, `Pass` returns to the base chain (the next tier decides). A rule split into several
/// matches keeps its place: its pieces are consecutive and share its verdict.
fn tier_chain(name: &str, rules: &[TierRule], dir: Direction) -> nft::Chain {
    let mut out = Vec::new();
    for r in rules {
        let verdict = match r.action {
            Action::Accept => Verdict::Accept,
            Action::Deny => Verdict::Drop,
            Action::Pass => Verdict::Return,
        };
        for m in &r.matches {
            let mut stmts = m.stmts(dir);
            stmts.push(Stmt::Verdict(verdict.clone()));
            out.push(nft::Rule::new(stmts).comment(format!("{} rule {}", r.policy, r.rule)));
        }
    }
    nft::Chain {
        name: name.into(),
        base: None,
        rules: out,
    }
}

/// Compiles the rulesets a CNI with `faults` installs for `step` (`first` is the scenario's first
/// step, which the stale-updates fault keeps installing). Every pod of the current step gets a
/// ruleset.
pub fn compile_step(first: &Step, step: &Step, faults: &FaultSet) -> BTreeMap<PodRef, PodRuleset> {
    let installed = faults.effective_step(first, step);
    let policies = faults.distort(&installed.policies);
    let cluster = faults.distort_cluster(&installed.cluster_policies);
    let mut out = compile_tiered(
        &installed.model,
        &policies,
        &cluster,
        Shape::from_faults(faults),
    );
    // Pods the stale step did not know get open chains (their policies never arrived).
    for (r, pod) in &step.model.pods {
        out.entry(r.clone()).or_insert_with(|| PodRuleset {
            pod: r.clone(),
            addr: v4(pod.ip),
            ingress: Chain::Open,
            egress: Chain::Open,
            ingress_tiers: Tiers::default(),
            egress_tiers: Tiers::default(),
            shape: Shape::from_faults(faults),
        });
    }
    out
}

/// Compiles NetworkPolicies alone over `model` faithfully (apart from `shape`).
pub fn compile(
    model: &Model,
    policies: &[CompiledPolicy],
    shape: Shape,
) -> BTreeMap<PodRef, PodRuleset> {
    compile_tiered(model, policies, &[], shape)
}

/// Compiles NetworkPolicies and cluster-wide policies over `model` faithfully (apart from
/// `shape`).
pub fn compile_tiered(
    model: &Model,
    policies: &[CompiledPolicy],
    cluster: &[ClusterPolicy],
    shape: Shape,
) -> BTreeMap<PodRef, PodRuleset> {
    model
        .pods
        .iter()
        .map(|(r, pod)| {
            let chain = |dir| compile_chain(model, policies, pod, dir);
            let tiers = |dir| compile_tiers(model, cluster, pod, dir, shape);
            (
                r.clone(),
                PodRuleset {
                    pod: r.clone(),
                    addr: v4(pod.ip),
                    ingress: chain(Direction::Ingress),
                    egress: chain(Direction::Egress),
                    ingress_tiers: tiers(Direction::Ingress),
                    egress_tiers: tiers(Direction::Egress),
                    shape,
                },
            )
        })
        .collect()
}

fn ns_labels<'m>(model: &'m Model, pod: &Pod) -> Option<&'m crate::model::Labels> {
    model.namespace(&pod.namespace).map(|n| &n.labels)
}

/// The cluster-wide rules selecting `pod` in `dir`, per tier in evaluation order: policies by
/// [`ClusterPolicy::order_key`] (the order the oracle walks), each policy's rules as written.
/// Flattening is sound because the first matching rule ends the tier either way.
fn compile_tiers(
    model: &Model,
    cluster: &[ClusterPolicy],
    pod: &Pod,
    dir: Direction,
    shape: Shape,
) -> Tiers {
    let mut selecting: Vec<&ClusterPolicy> = cluster
        .iter()
        .filter(|c| !c.rules(dir).is_empty() && c.selects(pod, ns_labels(model, pod)))
        .collect();
    selecting.sort_by_key(|c| c.order_key());
    let mut tiers = Tiers::default();
    for c in selecting {
        let list = match c.tier {
            crate::policy::Tier::Admin => &mut tiers.admin,
            crate::policy::Tier::Baseline => &mut tiers.baseline,
        };
        for (i, rule) in c.rules(dir).iter().enumerate() {
            list.push(TierRule {
                policy: c.key.clone(),
                rule: i,
                action: rule.effective_action(),
                matches: cluster_matches(model, pod, rule, dir, shape),
            });
        }
    }
    tiers
}

/// What one cluster-wide rule matches, as the accept-style matches of NetworkPolicy rules: peers
/// as addresses (pods through selectors, `networks` as CIDRs that hold pod addresses too), ports
/// by protocol, named ports resolved on the destination (this pod for ingress; each peer pod for
/// egress, as `(address . port)` pairs). Experimental and unknown peers match no address.
fn cluster_matches(
    model: &Model,
    pod: &Pod,
    rule: &crate::policy::ClusterRule,
    dir: Direction,
    shape: Shape,
) -> Vec<Accept> {
    if rule.fail_closed {
        // The API's fail-closed rule: an Accept matches nothing, a Deny or Pass denies all.
        return if rule.action == Action::Accept {
            Vec::new()
        } else {
            vec![Accept::Match {
                peers: None,
                l4: L4::Any,
            }]
        };
    }
    let mut peers = AddrSet::default();
    for p in model.pods.values() {
        let selected = rule.peers.iter().any(|peer| {
            !matches!(peer, ClusterPeer::Networks(_)) && peer.matches(p, ns_labels(model, p))
        });
        if let Some(ip) = v4(p.ip).filter(|_| selected) {
            peers.insert(ip);
        }
    }
    for peer in &rule.peers {
        if let ClusterPeer::Networks(nets) = peer {
            let mut set = AddrSet::default();
            for n in nets {
                set.insert_net(n);
            }
            if shape.networks_skip_pods {
                for p in model.pods.values() {
                    if let Some(ip) = v4(p.ip) {
                        set.remove(ip);
                    }
                }
            }
            peers.union_with(&set);
        }
    }
    if peers.is_empty() {
        return Vec::new();
    }
    let Some(ports) = &rule.ports else {
        return vec![Accept::Match {
            peers: Some(peers),
            l4: L4::Any,
        }];
    };
    let mut ranges: BTreeMap<Protocol, Vec<(u16, u16)>> = BTreeMap::new();
    let mut names: Vec<&str> = Vec::new();
    for p in ports {
        match p {
            // A v1alpha1 range written backwards admits nothing (the oracle's reading too).
            ClusterPort::Range {
                protocol,
                start,
                end,
            } if start <= end => ranges.entry(*protocol).or_default().push((*start, *end)),
            ClusterPort::Range { .. } | ClusterPort::Never => {}
            ClusterPort::Named(n) => names.push(n),
        }
    }
    // The container port's own protocol counts for a name (neither API version gives one).
    let named_on = |dst: &Pod| -> Vec<(Protocol, u16)> {
        dst.ports
            .iter()
            .filter(|c| c.name.as_deref().is_some_and(|n| names.contains(&n)))
            .map(|c| (c.protocol, c.port))
            .collect()
    };
    let mut pairs: BTreeMap<Protocol, Vec<(Ipv4Addr, u16)>> = BTreeMap::new();
    match dir {
        Direction::Ingress => {
            for (protocol, port) in named_on(pod) {
                ranges.entry(protocol).or_default().push((port, port));
            }
        }
        Direction::Egress if !names.is_empty() => {
            for dst in model.pods.values() {
                let Some(ip) = v4(dst.ip).filter(|ip| peers.contains(*ip)) else {
                    continue;
                };
                for (protocol, port) in named_on(dst) {
                    pairs.entry(protocol).or_default().push((ip, port));
                }
            }
        }
        Direction::Egress => {}
    }
    let mut out: Vec<Accept> = ranges
        .into_iter()
        .map(|(protocol, r)| Accept::Match {
            peers: Some(peers.clone()),
            l4: L4::Ports(protocol, merge_ports(r)),
        })
        .collect();
    for (protocol, mut pairs) in pairs {
        pairs.sort_unstable();
        pairs.dedup();
        out.push(Accept::Pairs { protocol, pairs });
    }
    out
}

fn compile_chain(model: &Model, policies: &[CompiledPolicy], pod: &Pod, dir: Direction) -> Chain {
    let selecting: Vec<&CompiledPolicy> = policies
        .iter()
        .filter(|p| {
            p.key.namespace == pod.namespace
                && p.rules(dir).is_some()
                && p.pod_selector.matches(&pod.labels)
        })
        .collect();
    if selecting.is_empty() {
        return Chain::Open;
    }
    Chain::Isolated(
        selecting
            .into_iter()
            .map(|p| PolicyRules {
                policy: p.key.clone(),
                accepts: p
                    .rules(dir)
                    .unwrap_or(&[])
                    .iter()
                    .flat_map(|rule| compile_rule(model, pod, rule, dir))
                    .collect(),
            })
            .collect(),
    )
}

/// The peer addresses of a rule: `None` for every address, else the union of its peers (pod peers
/// resolved through the model's labels, ipBlocks as intervals minus their excepts).
fn peer_addrs(model: &Model, rule: &Rule) -> Option<AddrSet> {
    let peers = rule.peers.as_ref()?;
    let mut set = AddrSet::default();
    for peer in peers {
        match peer {
            crate::policy::Peer::IpBlock { cidr, except } => {
                let mut block = AddrSet::default();
                block.insert_net(cidr);
                for e in except {
                    block.remove_net(e);
                }
                set.union_with(&block);
            }
            pods => {
                for p in model.pods.values() {
                    if let Some(ip) = v4(p.ip).filter(|_| peer_matches(model, pods, p)) {
                        set.insert(ip);
                    }
                }
            }
        }
    }
    Some(set)
}

/// The layer-4 matches of a list of port entries, named ports resolved with `resolve` (entries
/// that do not resolve match nothing and are left out).
fn l4_matches(ports: &[PortMatch], resolve: impl Fn(&str, Protocol) -> Option<u16>) -> Vec<L4> {
    let mut by_proto: BTreeMap<Protocol, Option<Vec<(u16, u16)>>> = BTreeMap::new();
    for pm in ports {
        let range = match &pm.port {
            PortSpec::All => None,
            PortSpec::Range { start, end } => Some((*start, *end)),
            PortSpec::Named(name) => match resolve(name, pm.protocol) {
                Some(p) => Some((p, p)),
                None => continue,
            },
        };
        let entry = by_proto
            .entry(pm.protocol)
            .or_insert_with(|| Some(Vec::new()));
        match (entry.as_mut(), range) {
            (Some(v), Some(r)) => v.push(r),
            (_, None) => *entry = None,
            (None, Some(_)) => {}
        }
    }
    by_proto
        .into_iter()
        .map(|(proto, ranges)| match ranges {
            None => L4::Proto(proto),
            Some(r) => L4::Ports(proto, merge_ports(r)),
        })
        .collect()
}

fn merge_ports(mut r: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    r.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn compile_rule(model: &Model, pod: &Pod, rule: &Rule, dir: Direction) -> Vec<Accept> {
    let peers = peer_addrs(model, rule);
    if peers.as_ref().is_some_and(AddrSet::is_empty) {
        return Vec::new();
    }
    let Some(ports) = &rule.ports else {
        return vec![Accept::Match { peers, l4: L4::Any }];
    };
    match dir {
        // The destination is this pod: its named ports resolve here.
        Direction::Ingress => l4_matches(ports, |n, p| pod.named_port(n, p))
            .into_iter()
            .map(|l4| Accept::Match {
                peers: peers.clone(),
                l4,
            })
            .collect(),
        Direction::Egress => {
            let (named, numeric): (Vec<PortMatch>, Vec<PortMatch>) = ports
                .iter()
                .cloned()
                .partition(|pm| matches!(pm.port, PortSpec::Named(_)));
            let mut out: Vec<Accept> = l4_matches(&numeric, |_, _| None)
                .into_iter()
                .map(|l4| Accept::Match {
                    peers: peers.clone(),
                    l4,
                })
                .collect();
            // Named ports: resolved per destination pod among the rule's peers. Addresses that
            // are not pods have no named ports and never match.
            let mut pairs: BTreeMap<Protocol, Vec<(Ipv4Addr, u16)>> = BTreeMap::new();
            for dst in model.pods.values() {
                let Some(ip) = v4(dst.ip) else { continue };
                if peers.as_ref().is_some_and(|s| !s.contains(ip)) {
                    continue;
                }
                for pm in &named {
                    if let PortSpec::Named(name) = &pm.port
                        && let Some(port) = dst.named_port(name, pm.protocol)
                    {
                        pairs.entry(pm.protocol).or_default().push((ip, port));
                    }
                }
            }
            for (protocol, mut pairs) in pairs {
                pairs.sort_unstable();
                pairs.dedup();
                out.push(Accept::Pairs { protocol, pairs });
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Probe;
    use crate::scenario::load_str;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test cidr")
    }

    #[test]
    fn addr_set_subtracts_and_merges() {
        let mut s = AddrSet::default();
        s.insert_net(&net("10.0.0.0/24"));
        s.remove_net(&net("10.0.0.128/25"));
        s.remove_net(&net("10.0.0.5/32"));
        s.insert(Ipv4Addr::new(10, 0, 0, 5));
        s.insert_net(&net("fd00::/8"));
        assert_eq!(s.to_string(), "{ 10.0.0.0-10.0.0.127 }");
        s.remove_net(&net("10.0.0.0/32"));
        s.insert(Ipv4Addr::new(10, 0, 0, 200));
        assert_eq!(s.to_string(), "{ 10.0.0.1-10.0.0.127, 10.0.0.200 }");
        assert!(s.contains(Ipv4Addr::new(10, 0, 0, 7)));
        assert!(!s.contains(Ipv4Addr::new(10, 0, 0, 0)));
    }

    const SCENARIO: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: unit
model:
  namespaces:
    - {name: x, labels: {ns: x}}
    - {name: y, labels: {ns: y}}
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ip: 10.1.0.1, ports: [80/TCP, {port: 8080, name: web}, 53/UDP]}
    - {namespace: x, name: b, labels: {pod: b}, ip: 10.1.0.2, ports: [80/TCP, {port: 9090, name: web}]}
    - {namespace: y, name: a, labels: {pod: a}, ip: 10.1.0.3, ports: [80/TCP, 81/TCP]}
probes: [80/TCP, 81/TCP, 8080/TCP, 9090/TCP, 53/UDP, 85/TCP]
steps:
  - name: policies
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: ingress-a, namespace: x}
        spec:
          podSelector: {matchLabels: {pod: a}}
          ingress:
            - from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}]
              ports: [{port: web}, {port: 53, protocol: UDP}]
            - from: [{ipBlock: {cidr: 10.1.0.0/24, except: [10.1.0.3/32]}}]
              ports: [{port: 80, endPort: 85}]
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: egress-b, namespace: x}
        spec:
          podSelector: {matchLabels: {pod: b}}
          policyTypes: [Egress]
          egress:
            - to: [{podSelector: {}}]
              ports: [{port: web}]
            - to: [{ipBlock: {cidr: 10.1.0.3/32}}]
              ports: [{port: 81}]
"#;

    fn step() -> Step {
        let loaded = load_str(SCENARIO, "unit.yaml").expect("unit scenario loads");
        loaded.scenarios[0].steps[0].clone()
    }

    fn simulate(rules: &BTreeMap<PodRef, PodRuleset>, step: &Step, probe: Probe) -> Vec<bool> {
        let mut out = Vec::new();
        for (fr, from) in &step.model.pods {
            for (tr, to) in &step.model.pods {
                let (Some(fip), Some(tip)) = (v4(from.ip), v4(to.ip)) else {
                    continue;
                };
                out.push(
                    rules[fr].admits(Direction::Egress, tip, probe.protocol, probe.port)
                        && rules[tr].admits(Direction::Ingress, fip, probe.protocol, probe.port),
                );
            }
        }
        out
    }

    #[test]
    fn compiled_rules_agree_with_the_oracle() {
        let step = step();
        let rules = compile(&step.model, &step.policies, Shape::default());
        let oracle = step.oracle();
        for probe in &step.probes {
            let expected: Vec<bool> = oracle.matrix(*probe).iter().map(|(_, _, v)| *v).collect();
            assert_eq!(simulate(&rules, &step, *probe), expected, "probe {probe}");
        }
    }

    #[test]
    fn named_ports_resolve_on_the_destination() {
        let step = step();
        let rules = compile(&step.model, &step.policies, Shape::default());
        let xb = &rules[&PodRef::new("x", "b")];
        let Chain::Isolated(pols) = &xb.egress else {
            panic!("x/b is selected for egress")
        };
        assert_eq!(
            pols[0].accepts,
            vec![
                Accept::Pairs {
                    protocol: Protocol::Tcp,
                    pairs: vec![
                        (Ipv4Addr::new(10, 1, 0, 1), 8080),
                        (Ipv4Addr::new(10, 1, 0, 2), 9090)
                    ]
                },
                Accept::Match {
                    peers: Some(AddrSet(vec![(0x0a01_0003, 0x0a01_0003)])),
                    l4: L4::Ports(Protocol::Tcp, vec![(81, 81)])
                }
            ]
        );
        assert_eq!(rules[&PodRef::new("y", "a")].ingress, Chain::Open);
    }

    /// A pod's JSON document for golden files: one command per line, so a diff shows which
    /// chain or rule changed.
    fn golden(rules: &BTreeMap<PodRef, PodRuleset>, pod: &str, zone: u16) -> String {
        let r: PodRef = pod.parse().expect("pod ref");
        let doc = rules[&r].table(zone).replace_commands();
        let cmds = doc["nftables"].as_array().cloned().unwrap_or_default();
        cmds.iter().map(|c| format!("{c}\n")).collect()
    }

    #[test]
    fn renders_a_transactional_ruleset() {
        let step = step();
        let rules = compile(&step.model, &step.policies, Shape::default());
        // Ingress with peers, port ranges and a resolved named port.
        insta::assert_snapshot!("x_a_ingress", golden(&rules, "x/a", 7));
        // Egress with (address . port) pairs for named ports.
        insta::assert_snapshot!("x_b_egress_pairs", golden(&rules, "x/b", 1));
        // Selected by nothing: open chains, still the zone chains.
        insta::assert_snapshot!("y_a_open", golden(&rules, "y/a", 2));
        let doc = rules[&PodRef::new("x", "a")].table(7).replace_commands();
        let cmds = doc["nftables"].as_array().expect("commands");
        let verbs: Vec<String> = cmds
            .iter()
            .take(3)
            .map(|c| {
                c.as_object()
                    .and_then(|o| o.keys().next().cloned())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(verbs, ["add", "delete", "add"], "declare, delete, recreate");
    }

    #[test]
    fn shapes_change_the_rendering_and_the_evaluation() {
        let step = step();
        let shape = Shape {
            intersection: true,
            udp_unenforced: true,
            stateless: true,
            ..Shape::default()
        };
        let rules = compile(&step.model, &step.policies, shape);
        insta::assert_snapshot!("x_a_all_shapes", golden(&rules, "x/a", 1));
        let xa = &rules[&PodRef::new("x", "a")];
        let table = xa.table(1);
        assert!(table.chain("ingress_p0").is_some());
        let text = xa.render(1);
        assert!(!text.contains("\"state\""), "{text}");
        assert!(
            text.contains("{\"jump\":{\"target\":\"ingress_p0\"}}"),
            "{text}"
        );
        // UDP from a peer no rule names is let through.
        assert!(xa.admits(
            Direction::Ingress,
            Ipv4Addr::new(10, 9, 9, 9),
            Protocol::Udp,
            7
        ));
        assert!(!xa.admits(
            Direction::Ingress,
            Ipv4Addr::new(10, 9, 9, 9),
            Protocol::Tcp,
            7
        ));
    }

    /// The rendered table, walked as the kernel walks it, admits exactly what `admits` says, for
    /// every shape, pod, direction, peer and probe of the unit scenario (plus addresses outside
    /// the model and a port no rule names); established packets pass unless stateless.
    #[test]
    fn rendered_tables_decide_like_the_software_evaluation() {
        let step = step();
        let mut peers: Vec<Ipv4Addr> = step.model.pods.values().filter_map(|p| v4(p.ip)).collect();
        peers.extend([Ipv4Addr::new(10, 1, 0, 200), Ipv4Addr::new(192, 168, 0, 1)]);
        let me = Ipv4Addr::new(10, 1, 0, 100);
        let mut probes = step.probes.clone();
        probes.push(Probe::new(8081, Protocol::Sctp));
        let mut checked = 0;
        for bits in 0..8u8 {
            let shape = Shape {
                intersection: bits & 1 != 0,
                udp_unenforced: bits & 2 != 0,
                stateless: bits & 4 != 0,
                ..Shape::default()
            };
            for (r, rs) in compile(&step.model, &step.policies, shape) {
                let table = rs.table(3);
                for dir in [Direction::Ingress, Direction::Egress] {
                    for &peer in &peers {
                        for p in &probes {
                            let (hook, saddr, daddr) = match dir {
                                Direction::Ingress => (Hook::Input, peer, me),
                                Direction::Egress => (Hook::Output, me, peer),
                            };
                            let mut pkt = nft::Packet {
                                saddr,
                                daddr,
                                protocol: p.protocol,
                                dport: p.port,
                                ct: nft::CtState::New,
                                ct_dnat: false,
                            };
                            assert_eq!(
                                table.verdict(hook, &pkt),
                                rs.admits(dir, peer, p.protocol, p.port),
                                "{r} {dir:?} {peer} {p} {shape:?}"
                            );
                            pkt.ct = nft::CtState::Established;
                            if !shape.stateless {
                                assert!(table.verdict(hook, &pkt), "{r} established");
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn faults_applied_through_compile_step_match_the_distorted_oracle() {
        let step = step();
        for fault in [
            Fault::IgnoreNamedPorts,
            Fault::IgnoreEndport,
            Fault::IgnoreExcept,
            Fault::PeerOr,
            Fault::IgnoreNamespaceSelector,
            Fault::IgnoreEgress,
        ] {
            let faults = FaultSet::new([fault]);
            let rules = compile_step(&step, &step, &faults);
            let distorted = faults.distort(&step.policies);
            let oracle = crate::policy::Oracle::new(&step.model, &distorted);
            let mut differs = false;
            for probe in &step.probes {
                let expected: Vec<bool> =
                    oracle.matrix(*probe).iter().map(|(_, _, v)| *v).collect();
                let truth: Vec<bool> = step
                    .oracle()
                    .matrix(*probe)
                    .iter()
                    .map(|(_, _, v)| *v)
                    .collect();
                differs |= expected != truth;
                assert_eq!(simulate(&rules, &step, *probe), expected, "{fault} {probe}");
            }
            assert!(differs, "{fault} changes nothing on the unit scenario");
        }
    }

    /// The shipped cluster-policy scenarios, every step.
    fn cluster_steps() -> Vec<(String, Step, Step)> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/cluster-policies");
        let loaded = crate::scenario::load_paths(&[dir]).expect("shipped scenarios load");
        let mut out = Vec::new();
        for sc in loaded.scenarios {
            let first = sc.steps[0].clone();
            for st in &sc.steps {
                out.push((
                    format!("{}/{}", sc.name, st.name),
                    first.clone(),
                    st.clone(),
                ));
            }
        }
        assert!(out.len() >= 20, "{} steps", out.len());
        out
    }

    /// Every cell of a step through the rules' software evaluation and through the rendered
    /// tables walked as the kernel walks them; the two must agree on every cell.
    fn dataplane_matrix(
        rules: &BTreeMap<PodRef, PodRuleset>,
        step: &Step,
        probe: Probe,
    ) -> Vec<bool> {
        let tables: BTreeMap<&PodRef, nft::Table> =
            rules.iter().map(|(r, rs)| (r, rs.table(1))).collect();
        let mut out = Vec::new();
        for (fr, from) in &step.model.pods {
            for (tr, to) in &step.model.pods {
                let (Some(fip), Some(tip)) = (v4(from.ip), v4(to.ip)) else {
                    continue;
                };
                let soft = rules[fr].admits(Direction::Egress, tip, probe.protocol, probe.port)
                    && rules[tr].admits(Direction::Ingress, fip, probe.protocol, probe.port);
                let pkt = nft::Packet {
                    saddr: fip,
                    daddr: tip,
                    protocol: probe.protocol,
                    dport: probe.port,
                    ct: nft::CtState::New,
                    ct_dnat: false,
                };
                let walked =
                    tables[fr].verdict(Hook::Output, &pkt) && tables[tr].verdict(Hook::Input, &pkt);
                assert_eq!(soft, walked, "{fr} -> {tr} {probe}: software vs table");
                out.push(soft);
            }
        }
        out
    }

    /// The tiers as compiled agree with the oracle on every judged cell of every shipped
    /// cluster-policy scenario (implementation-defined cells are free), both in software and in
    /// the rendered tables.
    #[test]
    fn tiered_rules_agree_with_the_oracle_on_the_shipped_scenarios() {
        let mut judged = 0;
        for (name, first, step) in cluster_steps() {
            let rules = compile_step(&first, &step, &FaultSet::default());
            let oracle = step.oracle();
            for probe in &step.probes {
                let want: Vec<Option<bool>> = oracle
                    .expected_matrix(*probe)
                    .iter()
                    .map(|(_, _, v)| *v)
                    .collect();
                let got = dataplane_matrix(&rules, &step, *probe);
                assert_eq!(want.len(), got.len());
                for (k, (w, g)) in want.iter().zip(&got).enumerate() {
                    if let Some(w) = w {
                        assert_eq!(w, g, "{name} {probe} cell {k}");
                        judged += 1;
                    }
                }
            }
        }
        assert!(judged > 5000, "{judged}");
    }

    /// Each cluster-policy fault changes what the dataplane does on some shipped scenario; the
    /// ones that change a policy's meaning do exactly what the oracle says of the distorted
    /// policies.
    #[test]
    fn cluster_faults_change_the_dataplane_as_described() {
        let steps = cluster_steps();
        for fault in [
            Fault::ClusterPriorityInverted,
            Fault::PassAsAccept,
            Fault::ClusterRuleOrderIgnored,
            Fault::BaselineIgnoresIsolation,
            Fault::NetworksSkipPods,
        ] {
            let faults = FaultSet::new([fault]);
            let mut differs = 0;
            for (name, first, step) in &steps {
                let rules = compile_step(first, step, &faults);
                let truth = step.oracle();
                let distorted = faults.distort_cluster(&step.cluster_policies);
                let meaning =
                    crate::policy::Oracle::with_cluster(&step.model, &step.policies, &distorted);
                let semantic = distorted != step.cluster_policies;
                for probe in &step.probes {
                    let got = dataplane_matrix(&rules, step, *probe);
                    let want = truth.expected_matrix(*probe);
                    let faulty = meaning.expected_matrix(*probe);
                    for (k, ((w, f), g)) in want.iter().zip(faulty.iter()).zip(&got).enumerate() {
                        if w.2.is_some_and(|w| w != *g) {
                            differs += 1;
                        }
                        if semantic && let Some(f) = f.2 {
                            assert_eq!(*f, *g, "{fault} {name} {probe} cell {k}");
                        }
                    }
                }
            }
            assert!(
                differs > 0,
                "{fault} changes no judged cell of the shipped scenarios"
            );
        }
    }

    const TIERED: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: tiered-unit
model:
  namespaces:
    - {name: x, labels: {ns: x}}
    - {name: y, labels: {ns: y}}
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ip: 10.1.0.1, ports: [{port: 8080, name: web}, 80/TCP]}
    - {namespace: y, name: b, labels: {pod: b}, ip: 10.1.0.2, ports: [80/TCP]}
probes: [80/TCP, 8080/TCP]
steps:
  - name: tiers
    apply:
      - apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {name: admin-x}
        spec:
          tier: Admin
          priority: 5
          subject: {namespaces: {matchLabels: {ns: x}}}
          ingress:
            - {name: pass-y, action: Pass, from: [{namespaces: {matchLabels: {ns: y}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
            - {name: web-y, action: Accept, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}}], protocols: [{destinationNamedPort: web}]}
          egress:
            - {name: deny-net, action: Deny, to: [{networks: [10.1.0.0/24]}]}
      - apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {name: baseline-x}
        spec:
          tier: Baseline
          priority: 5
          subject: {namespaces: {matchLabels: {ns: x}}}
          ingress:
            - {name: deny-all, action: Deny, from: [{namespaces: {}}]}
"#;

    /// The rendered table: an admin chain jumped before the NetworkPolicy rules and a baseline
    /// chain jumped from the open chain, both skipping the pod's own address; Pass returns.
    #[test]
    fn renders_tier_chains_in_order() {
        let loaded = load_str(TIERED, "tiered.yaml").expect("tiered scenario loads");
        let step = &loaded.scenarios[0].steps[0];
        let rules = compile_step(step, step, &FaultSet::default());
        let xa = &rules[&PodRef::new("x", "a")];
        let table = xa.table(1);
        let verdicts = |chain: &str| -> Vec<String> {
            table
                .chain(chain)
                .map(|c| {
                    c.rules
                        .iter()
                        .filter_map(|r| r.stmts.last())
                        .map(|s| format!("{s:?}"))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            verdicts("ingress_admin"),
            ["Verdict(Return)", "Verdict(Accept)"],
            "rule order kept, Pass returns"
        );
        assert_eq!(verdicts("egress_admin"), ["Verdict(Drop)"]);
        assert_eq!(verdicts("ingress_baseline"), ["Verdict(Drop)"]);
        assert!(table.chain("egress_baseline").is_none());
        let ingress = table.chain("ingress").expect("ingress chain");
        let jumps: Vec<&nft::Rule> = ingress
            .rules
            .iter()
            .filter(|r| matches!(r.stmts.last(), Some(Stmt::Verdict(Verdict::Jump(_)))))
            .collect();
        // Per tier: one jump for other addresses, one for the pod itself through a Service.
        assert_eq!(jumps.len(), 4, "admin then baseline, two jumps each");
        let own = [Val::Addr(Ipv4Addr::new(10, 1, 0, 1))];
        for pair in jumps.chunks(2) {
            assert!(
                matches!(&pair[0].stmts[0], Stmt::Match(m) if m.negate && m.values == own),
                "{pair:?}"
            );
            assert!(
                matches!(&pair[1].stmts[0], Stmt::Match(m) if !m.negate && m.values == own)
                    && matches!(&pair[1].stmts[1], Stmt::Match(m)
                        if m.values == [Val::CtStatus(nft::CtStatusFlag::Dnat)]),
                "{pair:?}"
            );
        }
        let me = Ipv4Addr::new(10, 1, 0, 1);
        let b = Ipv4Addr::new(10, 1, 0, 2);
        // y/b on 80: Pass, no NetworkPolicy, Baseline denies. On 8080 (named port web): Accept.
        assert!(!xa.admits(Direction::Ingress, b, Protocol::Tcp, 80));
        assert!(xa.admits(Direction::Ingress, b, Protocol::Tcp, 8080));
        // The pod itself skips both tiers; egress to the network is denied except to itself.
        assert!(xa.admits(Direction::Ingress, me, Protocol::Tcp, 80));
        assert!(!xa.admits(Direction::Egress, b, Protocol::Tcp, 80));
        assert!(xa.admits(Direction::Egress, me, Protocol::Tcp, 80));
        // networks-skip-pods: the CIDR holds only pod addresses here, so nothing is denied.
        let skip = compile_step(step, step, &FaultSet::new([Fault::NetworksSkipPods]));
        assert!(skip[&PodRef::new("x", "a")].admits(Direction::Egress, b, Protocol::Tcp, 80));
        assert!(!skip[&PodRef::new("x", "a")].admits(
            Direction::Egress,
            Ipv4Addr::new(10, 1, 0, 9),
            Protocol::Tcp,
            80
        ));
        // The document is valid JSON with the chain names as strings.
        let doc = xa.render(1);
        assert!(doc.contains("\"ingress_admin\"") && doc.contains("\"ingress_baseline\""));
    }
}
