//! A small typed model of one nftables table, rendered to nft's JSON input (`nft -j -f -`) and
//! evaluated in software.
//!
//! Why JSON and not nft's own language: every name (a policy in a rule comment, a chain, a table)
//! becomes a JSON string escaped by serde_json, so no input can close a quote and append a
//! command. Why a model: the compilers (`cni::nftables` today; Service NAT chains and cluster
//! policy tiers later) build [`Table`]s as data — chains with hook, priority and policy, rules of
//! typed matches and statements — and the one renderer here turns any of them into a transaction;
//! adding a chain never means touching the rendering. [`Table::verdict`] walks the same data the
//! way the kernel walks it, so tests without root check what will really be installed.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::model::Protocol;

/// Address family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 and IPv6 in one table.
    Inet,
    Ip,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
        }
    }
}

/// Kind of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
}

/// Netfilter hooks a base chain can attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// Standard priorities (nft's named ones); lower runs first on a hook.
pub mod priority {
    pub const RAW: i32 = -300;
    pub const MANGLE: i32 = -150;
    pub const DSTNAT: i32 = -100;
    pub const FILTER: i32 = 0;
    pub const SRCNAT: i32 = 100;
}

/// What a base chain does with a packet that no rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

/// Attachment of a base chain; regular chains (jump targets) have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    pub kind: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<Base>,
    pub rules: Vec<Rule>,
}

/// A rule: its statements in order (matches first, then actions), and an optional comment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub stmts: Vec<Stmt>,
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(stmts: Vec<Stmt>) -> Self {
        Rule {
            stmts,
            comment: None,
        }
    }

    pub fn comment(mut self, c: impl Into<String>) -> Self {
        self.comment = Some(c.into());
        self
    }

    /// A rule with a match whose value list is empty can never match: it is left out of the
    /// rendering (nft has no empty anonymous set) and skipped by the evaluator alike.
    fn can_match(&self) -> bool {
        self.stmts
            .iter()
            .all(|s| !matches!(s, Stmt::Match(m) if m.values.is_empty()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// The packet's `key` equals one of `values` (or, with `negate`, none of them).
    Match(Match),
    /// Tracks the packet in conntrack zone N (`ct zone set N`).
    CtZone(u16),
    /// Destination NAT to an address and optional port (IPv4).
    Dnat {
        addr: Ipv4Addr,
        port: Option<u16>,
    },
    Verdict(Verdict),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// Back to the chain that jumped here.
    Return,
    Jump(String),
    Goto(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub key: Key,
    pub values: Vec<Val>,
    pub negate: bool,
}

impl Match {
    pub fn new(key: Key, values: Vec<Val>) -> Self {
        Match {
            key,
            values,
            negate: false,
        }
    }
}

/// What a match reads from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    IpSaddr,
    IpDaddr,
    /// The destination port of one layer-4 protocol (implies that protocol).
    Dport(Protocol),
    L4Proto,
    CtState,
    /// Conntrack status flags (`ct status`): e.g. whether the connection was DNAT'ed.
    CtStatus,
    Concat(Vec<Key>),
}

/// Conntrack status flags a rule can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtStatusFlag {
    /// The connection's destination was translated (it went through service NAT).
    Dnat,
}

/// Connection-tracking states a rule can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtState {
    New,
    Established,
    Related,
}

impl CtState {
    fn name(self) -> &'static str {
        match self {
            CtState::New => "new",
            CtState::Established => "established",
            CtState::Related => "related",
        }
    }
}

/// A value or interval a key is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Addr(Ipv4Addr),
    /// Inclusive.
    AddrRange(Ipv4Addr, Ipv4Addr),
    Port(u16),
    /// Inclusive.
    PortRange(u16, u16),
    Proto(Protocol),
    Ct(CtState),
    CtStatus(CtStatusFlag),
    Concat(Vec<Val>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub chains: Vec<Chain>,
}

/// nft refuses (and 1.0.x crashes on) rule comments much longer than this; comments are only
/// for people reading `nft list`, so longer ones are cut at a character boundary.
pub const MAX_COMMENT_BYTES: usize = 128;

fn comment_text(c: &str) -> &str {
    if c.len() <= MAX_COMMENT_BYTES {
        return c;
    }
    let mut end = MAX_COMMENT_BYTES;
    while !c.is_char_boundary(end) {
        end -= 1;
    }
    &c[..end]
}

impl Key {
    fn json(&self) -> Value {
        let payload = |protocol: &str, field: &str| json!({"payload": {"protocol": protocol, "field": field}});
        match self {
            Key::IpSaddr => payload("ip", "saddr"),
            Key::IpDaddr => payload("ip", "daddr"),
            Key::Dport(p) => payload(p.lower(), "dport"),
            Key::L4Proto => json!({"meta": {"key": "l4proto"}}),
            Key::CtState => json!({"ct": {"key": "state"}}),
            Key::CtStatus => json!({"ct": {"key": "status"}}),
            Key::Concat(keys) => json!({"concat": keys.iter().map(Key::json).collect::<Vec<_>>()}),
        }
    }
}

impl Val {
    fn json(&self) -> Value {
        match self {
            Val::Addr(a) => json!(a.to_string()),
            Val::AddrRange(a, b) if a == b => json!(a.to_string()),
            Val::AddrRange(a, b) => json!({"range": [a.to_string(), b.to_string()]}),
            Val::Port(p) => json!(p),
            Val::PortRange(a, b) if a == b => json!(a),
            Val::PortRange(a, b) => json!({"range": [a, b]}),
            Val::Proto(p) => json!(p.lower()),
            Val::Ct(s) => json!(s.name()),
            Val::CtStatus(CtStatusFlag::Dnat) => json!("dnat"),
            Val::Concat(vs) => json!({"concat": vs.iter().map(Val::json).collect::<Vec<_>>()}),
        }
    }
}

impl Match {
    fn json(&self) -> Value {
        // Conntrack states are flags: tested with `in` against the list of names.
        let (op, right) = if matches!(self.key, Key::CtState | Key::CtStatus) {
            (
                if self.negate { "!=" } else { "in" },
                Value::Array(self.values.iter().map(Val::json).collect()),
            )
        } else {
            let right = match self.values.as_slice() {
                [one] => one.json(),
                many => json!({"set": many.iter().map(Val::json).collect::<Vec<_>>()}),
            };
            (if self.negate { "!=" } else { "==" }, right)
        };
        json!({"match": {"op": op, "left": self.key.json(), "right": right}})
    }
}

impl Stmt {
    fn json(&self) -> Value {
        match self {
            Stmt::Match(m) => m.json(),
            Stmt::CtZone(z) => json!({"mangle": {"key": {"ct": {"key": "zone"}}, "value": z}}),
            Stmt::Dnat { addr, port } => {
                let mut d = json!({"family": "ip", "addr": addr.to_string()});
                if let Some(p) = port {
                    d["port"] = json!(p);
                }
                json!({ "dnat": d })
            }
            Stmt::Verdict(v) => match v {
                Verdict::Accept => json!({"accept": null}),
                Verdict::Drop => json!({"drop": null}),
                Verdict::Return => json!({"return": null}),
                Verdict::Jump(t) => json!({"jump": {"target": t}}),
                Verdict::Goto(t) => json!({"goto": {"target": t}}),
            },
        }
    }
}

impl Table {
    /// The commands that replace this table atomically: declare it (so the delete cannot fail
    /// when it is new), delete it, then add it with every chain before any rule (a jump needs
    /// its target to exist). `nft -j -f -` runs one document as one transaction, so no packet
    /// ever sees a half-applied ruleset.
    pub fn replace_commands(&self) -> Value {
        let table = json!({"family": self.family.name(), "name": self.name});
        let mut cmds = vec![
            json!({"add": {"table": table}}),
            json!({"delete": {"table": table}}),
            json!({"add": {"table": table}}),
        ];
        for c in &self.chains {
            let mut chain =
                json!({"family": self.family.name(), "table": self.name, "name": c.name});
            if let Some(b) = &c.base {
                chain["type"] = json!(match b.kind {
                    ChainType::Filter => "filter",
                    ChainType::Nat => "nat",
                });
                chain["hook"] = json!(b.hook.name());
                chain["prio"] = json!(b.priority);
                chain["policy"] = json!(match b.policy {
                    Policy::Accept => "accept",
                    Policy::Drop => "drop",
                });
            }
            cmds.push(json!({"add": {"chain": chain}}));
        }
        for c in &self.chains {
            for r in c.rules.iter().filter(|r| r.can_match()) {
                let mut rule = json!({
                    "family": self.family.name(),
                    "table": self.name,
                    "chain": c.name,
                    "expr": r.stmts.iter().map(Stmt::json).collect::<Vec<_>>(),
                });
                if let Some(text) = &r.comment {
                    rule["comment"] = json!(comment_text(text));
                }
                cmds.push(json!({"add": {"rule": rule}}));
            }
        }
        json!({ "nftables": cmds })
    }

    /// [`Self::replace_commands`] as the text `nft -j -f -` reads.
    pub fn replace_json(&self) -> String {
        self.replace_commands().to_string()
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

/// The parts of a packet the evaluator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub protocol: Protocol,
    pub dport: u16,
    pub ct: CtState,
    /// Whether the packet's connection was DNAT'ed (`ct status dnat`); set by a DNAT statement.
    pub ct_dnat: bool,
}

/// How the evaluator left a chain.
enum Outcome {
    Accept,
    Drop,
    /// Fell off the end or hit `return`.
    Continue,
}

/// Jumps nested deeper than this are a broken table (the kernel refuses loops at load time).
const MAX_DEPTH: usize = 16;

impl Table {
    /// Whether the base chains on `hook` accept `packet`, walked in priority order as the kernel
    /// walks them (an accept ends one base chain, a drop ends the packet). Statements that do
    /// not decide (conntrack zones) are passed; DNAT rewrites the packet for later chains.
    pub fn verdict(&self, hook: Hook, packet: &Packet) -> bool {
        Table::verdict_all(std::slice::from_ref(self), hook, packet).is_some()
    }

    /// [`Self::verdict`] over every table of a namespace at once (their base chains on one hook
    /// interleave by priority, as in the kernel, e.g. service NAT in one table and policy in
    /// another); the packet as the last chain left it when accepted, `None` when dropped.
    pub fn verdict_all(tables: &[Table], hook: Hook, packet: &Packet) -> Option<Packet> {
        let mut bases: Vec<(&Table, &Chain, Base)> = tables
            .iter()
            .flat_map(|t| {
                t.chains
                    .iter()
                    .filter_map(move |c| c.base.filter(|b| b.hook == hook).map(|b| (t, c, b)))
            })
            .collect();
        bases.sort_by_key(|(_, _, b)| b.priority);
        let mut packet = *packet;
        for (table, chain, base) in bases {
            match table.walk(chain, &mut packet, 0) {
                Outcome::Drop => return None,
                Outcome::Accept => {}
                Outcome::Continue => {
                    if base.policy == Policy::Drop {
                        return None;
                    }
                }
            }
        }
        Some(packet)
    }

    fn walk(&self, chain: &Chain, p: &mut Packet, depth: usize) -> Outcome {
        if depth > MAX_DEPTH {
            return Outcome::Drop;
        }
        for rule in chain.rules.iter().filter(|r| r.can_match()) {
            for s in &rule.stmts {
                match s {
                    // The rule's remaining statements only run for a packet that matched.
                    Stmt::Match(m) => {
                        if !matches(m, p) {
                            break;
                        }
                    }
                    Stmt::CtZone(_) => {}
                    Stmt::Dnat { addr, port } => {
                        p.daddr = *addr;
                        if let Some(port) = port {
                            p.dport = *port;
                        }
                        p.ct_dnat = true;
                        return Outcome::Accept;
                    }
                    Stmt::Verdict(v) => {
                        let target = match v {
                            Verdict::Accept => return Outcome::Accept,
                            Verdict::Drop => return Outcome::Drop,
                            Verdict::Return => return Outcome::Continue,
                            Verdict::Jump(t) | Verdict::Goto(t) => t,
                        };
                        let Some(next) = self.chain(target) else {
                            return Outcome::Drop;
                        };
                        match (self.walk(next, p, depth + 1), v) {
                            (Outcome::Continue, Verdict::Jump(_)) => {}
                            (other, _) => return other,
                        }
                    }
                }
            }
        }
        Outcome::Continue
    }
}

/// A single key's value in a packet, as a comparable number (`None`: the packet has no such
/// field, e.g. a TCP port on a UDP packet, so the match fails).
fn read(key: &Key, p: &Packet) -> Option<Vec<u64>> {
    Some(match key {
        Key::IpSaddr => vec![u64::from(u32::from(p.saddr))],
        Key::IpDaddr => vec![u64::from(u32::from(p.daddr))],
        Key::Dport(proto) if *proto == p.protocol => vec![u64::from(p.dport)],
        Key::Dport(_) => return None,
        Key::L4Proto => vec![proto_number(p.protocol)],
        Key::CtState => vec![ct_number(p.ct)],
        // A flag set: the value read is the flag itself when set, nothing matchable otherwise.
        Key::CtStatus if p.ct_dnat => vec![0],
        Key::CtStatus => vec![u64::MAX],
        Key::Concat(keys) => {
            let mut out = Vec::new();
            for k in keys {
                out.extend(read(k, p)?);
            }
            out
        }
    })
}

fn proto_number(p: Protocol) -> u64 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

fn ct_number(s: CtState) -> u64 {
    match s {
        CtState::New => 0,
        CtState::Established => 1,
        CtState::Related => 2,
    }
}

/// A value as per-component inclusive bounds.
fn bounds(v: &Val) -> Vec<(u64, u64)> {
    let a = |x: &Ipv4Addr| u64::from(u32::from(*x));
    match v {
        Val::Addr(x) => vec![(a(x), a(x))],
        Val::AddrRange(x, y) => vec![(a(x), a(y))],
        Val::Port(x) => vec![(u64::from(*x), u64::from(*x))],
        Val::PortRange(x, y) => vec![(u64::from(*x), u64::from(*y))],
        Val::Proto(p) => vec![(proto_number(*p), proto_number(*p))],
        Val::Ct(s) => vec![(ct_number(*s), ct_number(*s))],
        Val::CtStatus(CtStatusFlag::Dnat) => vec![(0, 0)],
        Val::Concat(vs) => vs.iter().flat_map(bounds).collect(),
    }
}

fn matches(m: &Match, p: &Packet) -> bool {
    let Some(have) = read(&m.key, p) else {
        return false;
    };
    let hit = m.values.iter().any(|v| {
        let b = bounds(v);
        b.len() == have.len() && have.iter().zip(&b).all(|(x, (lo, hi))| lo <= x && x <= hi)
    });
    hit != m.negate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rules: Vec<Rule>, policy: Policy) -> Table {
        Table {
            family: Family::Inet,
            name: "t".into(),
            chains: vec![
                Chain {
                    name: "sub".into(),
                    base: None,
                    rules: vec![
                        Rule::new(vec![
                            Stmt::Match(Match::new(Key::Dport(Protocol::Tcp), vec![Val::Port(81)])),
                            Stmt::Verdict(Verdict::Return),
                        ]),
                        Rule::new(vec![Stmt::Verdict(Verdict::Drop)]),
                    ],
                },
                Chain {
                    name: "in".into(),
                    base: Some(Base {
                        kind: ChainType::Filter,
                        hook: Hook::Input,
                        priority: priority::FILTER,
                        policy,
                    }),
                    rules,
                },
            ],
        }
    }

    fn pkt(dport: u16, protocol: Protocol) -> Packet {
        Packet {
            saddr: Ipv4Addr::new(10, 0, 0, 1),
            daddr: Ipv4Addr::new(10, 0, 0, 2),
            protocol,
            dport,
            ct: CtState::New,
            ct_dnat: false,
        }
    }

    #[test]
    fn jumps_return_and_policies_decide() {
        let t = table(
            vec![
                Rule::new(vec![Stmt::Verdict(Verdict::Jump("sub".into()))]),
                Rule::new(vec![Stmt::Verdict(Verdict::Accept)]),
            ],
            Policy::Drop,
        );
        assert!(t.verdict(Hook::Input, &pkt(81, Protocol::Tcp)));
        assert!(!t.verdict(Hook::Input, &pkt(80, Protocol::Tcp)));
        // Other hooks have no chain here: accepted.
        assert!(t.verdict(Hook::Output, &pkt(80, Protocol::Tcp)));
        let open = table(vec![], Policy::Accept);
        assert!(open.verdict(Hook::Input, &pkt(1, Protocol::Udp)));
        let closed = table(vec![], Policy::Drop);
        assert!(!closed.verdict(Hook::Input, &pkt(1, Protocol::Udp)));
    }

    #[test]
    fn ports_imply_their_protocol_and_concats_match_componentwise() {
        let pair = Key::Concat(vec![Key::IpSaddr, Key::Dport(Protocol::Tcp)]);
        let t = table(
            vec![
                Rule::new(vec![
                    Stmt::Match(Match::new(
                        pair,
                        vec![Val::Concat(vec![
                            Val::AddrRange(Ipv4Addr::new(10, 0, 0, 0), Ipv4Addr::new(10, 0, 0, 9)),
                            Val::Port(80),
                        ])],
                    )),
                    Stmt::Verdict(Verdict::Accept),
                ]),
                // An empty value list never matches (and is not rendered).
                Rule::new(vec![
                    Stmt::Match(Match::new(Key::IpSaddr, vec![])),
                    Stmt::Verdict(Verdict::Accept),
                ]),
            ],
            Policy::Drop,
        );
        assert!(t.verdict(Hook::Input, &pkt(80, Protocol::Tcp)));
        assert!(!t.verdict(Hook::Input, &pkt(80, Protocol::Udp)));
        assert!(!t.verdict(Hook::Input, &pkt(81, Protocol::Tcp)));
        let text = t.replace_json();
        assert_eq!(text.matches("\"rule\"").count(), 3, "{text}");
    }

    #[test]
    fn names_and_comments_are_json_strings_and_long_comments_are_cut() {
        let hostile = "x\"; flush ruleset; add table ip pwn {}\n$(touch /tmp/p) ü";
        let mut t = table(
            vec![Rule::new(vec![Stmt::Verdict(Verdict::Accept)]).comment(hostile)],
            Policy::Accept,
        );
        t.chains[1]
            .rules
            .push(Rule::new(vec![]).comment("é".repeat(100)));
        let doc = t.replace_commands();
        let rules: Vec<&Value> = doc["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["add"].get("rule"))
            .collect();
        assert_eq!(rules[2]["comment"], json!(hostile));
        let cut = rules[3]["comment"].as_str().unwrap_or_default();
        assert_eq!(cut, "é".repeat(64));
        // The text is one JSON document that parses back to the same value.
        let back: Value = serde_json::from_str(&t.replace_json()).unwrap_or_default();
        assert_eq!(back, doc);
    }
}
