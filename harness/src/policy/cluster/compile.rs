//! Validation and compilation of the three cluster-wide kinds.
//!
//! The rules are the CRDs' (network-policy-api v0.2.0 `config/crd/experimental` for
//! ClusterNetworkPolicy, v0.1.7 on the release-0.1 branch for the v1alpha1 kinds): required
//! fields, enums, `minimum`/`maximum`, `minItems`/`maxItems`, `maxLength`, the "exactly one field"
//! objects (`minProperties`/`maxProperties` 1), `x-kubernetes-list-type: set` (no duplicates), and
//! the CEL rules (`isCIDR`, range `start < end`, a named port never with `networks`/`nodes`/
//! `domainNames` peers, the BaselineAdminNetworkPolicy named `default`). The experimental channel
//! is the one read: it is the standard channel plus `nodes`, `domainNames` and (v1alpha1)
//! `namedPort`, and the named-port CEL rule that comes with them.
//!
//! Beyond the schema, label selectors must be well formed (the CRD stores any strings, but no
//! implementation can turn `operator: Equals` into a selector), as NetworkPolicy's are.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::model::Protocol;
use crate::policy::compile::{is_dns_subdomain, is_port_name, parse_cidr};
use crate::policy::{Direction, FieldError, Selector};

use super::api::{self, Document, NamespacedPod, Peer, PortEntry, ProtocolEntry};
use super::{
    Action, ClusterKind, ClusterPeer, ClusterPolicy, ClusterPolicyRef, ClusterPort, ClusterRule,
    Subject, Tier,
};

/// Peer fields of any kind and direction. A peer whose only field is none of these (nor a near
/// miss of one) is taken as a peer type of a newer API version: see [`split_unknown_peers`].
const PEER_FIELDS: [&str; 5] = ["namespaces", "pods", "nodes", "networks", "domainNames"];

/// Peers written with a single field this build does not know, by (direction, rule, peer), with
/// the field's name.
pub type UnknownPeers = BTreeMap<(Direction, usize, usize), String>;

/// Takes out of `doc` every peer whose only field is unknown, so the typed parse does not reject
/// it, and returns them. The API's peer types say an implementation that sees a peer with no field
/// it knows must infer a newer CRD and fail closed; a near miss of a known field (`namespace`,
/// `Pods`, `network`) is a typo, not a newer API, and is left in place to be reported.
pub fn split_unknown_peers(doc: &Value) -> (Value, UnknownPeers) {
    let mut doc = doc.clone();
    let mut found = UnknownPeers::new();
    for dir in [Direction::Ingress, Direction::Egress] {
        let Some(rules) = doc
            .get_mut("spec")
            .and_then(|s| s.get_mut(dir.key()))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for (ri, rule) in rules.iter_mut().enumerate() {
            let Some(peers) = rule.get_mut(dir.peers_key()).and_then(Value::as_array_mut) else {
                continue;
            };
            for (pi, peer) in peers.iter_mut().enumerate() {
                let Some(map) = peer.as_object() else {
                    continue;
                };
                let keys: Vec<&String> = map
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| k)
                    .collect();
                if let [only] = keys.as_slice()
                    && !PEER_FIELDS.iter().any(|known| near(only, known))
                {
                    found.insert((dir, ri, pi), (*only).clone());
                    *peer = Value::Object(Default::default());
                }
            }
        }
    }
    (doc, found)
}

/// Whether `key` is `known` or close enough to be a misspelling of it.
fn near(key: &str, known: &str) -> bool {
    let (a, b) = (key.to_ascii_lowercase(), known.to_ascii_lowercase());
    a == b || a.starts_with(&b) || b.starts_with(&a) || edit_distance(&a, &b) <= 2
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Collects errors and warnings at field paths.
struct Ctx {
    kind: ClusterKind,
    errors: Vec<FieldError>,
    warnings: Vec<FieldError>,
}

impl Ctx {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(FieldError::new(path, msg));
    }
    fn warn(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.warnings.push(FieldError::new(path, msg));
    }
    fn unknown(&mut self, path: impl Into<String>, why: &str) {
        self.err(path, format!("unknown field ({why})"));
    }
    fn selector(&mut self, sel: &LabelSelector, path: &str) -> Selector {
        Selector::compile(sel, path, &mut self.errors)
    }
    /// `minItems`/`maxItems` of a list at `path`.
    fn items(&mut self, path: &str, len: usize, min: usize, max: usize) {
        if len < min {
            self.err(path, format!("must have at least {min} item(s)"));
        }
        if len > max {
            self.err(path, format!("must have at most {max} items, has {len}"));
        }
    }
}

/// Validates a document already parsed into the union shape and compiles it. `unknown_peers` are
/// the peers [`split_unknown_peers`] took out; `source` is the object as written (for quoting).
pub fn compile(
    kind: ClusterKind,
    doc: &Document,
    unknown_peers: &UnknownPeers,
    source: Value,
) -> Result<ClusterPolicy, Vec<FieldError>> {
    let mut c = Ctx {
        kind,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let meta = doc.metadata.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    if name.is_empty() {
        c.err("metadata.name", "is required");
    } else if !is_dns_subdomain(&name) {
        c.err(
            "metadata.name",
            format!("{name:?} is not a valid name (lower-case DNS subdomain)"),
        );
    } else if kind == ClusterKind::BaselineAdminNetworkPolicy && name != "default" {
        // The CRD's CEL rule on the object: the baseline policy is a singleton.
        c.err(
            "metadata.name",
            format!(
                "{name:?}: a BaselineAdminNetworkPolicy must be named \"default\" (there is one \
                 per cluster)"
            ),
        );
    }
    if let Some(ns) = meta.namespace.as_deref().filter(|n| !n.is_empty()) {
        c.warn(
            "metadata.namespace",
            format!("{kind} is cluster-scoped: the namespace {ns:?} is ignored"),
        );
    }
    let Some(spec) = &doc.spec else {
        c.err("spec", "is required");
        return Err(c.errors);
    };

    let tier = match kind {
        ClusterKind::ClusterNetworkPolicy => match spec.tier.as_deref() {
            Some("Admin") => Tier::Admin,
            Some("Baseline") => Tier::Baseline,
            Some(other) => {
                c.err(
                    "spec.tier",
                    format!("unsupported value {other:?} (expected Admin or Baseline)"),
                );
                Tier::Admin
            }
            None => {
                c.err("spec.tier", "is required (Admin or Baseline)");
                Tier::Admin
            }
        },
        ClusterKind::AdminNetworkPolicy => {
            if spec.tier.is_some() {
                c.unknown("spec.tier", "AdminNetworkPolicy is always the Admin tier");
            }
            Tier::Admin
        }
        ClusterKind::BaselineAdminNetworkPolicy => {
            if spec.tier.is_some() {
                c.unknown(
                    "spec.tier",
                    "BaselineAdminNetworkPolicy is the baseline tier",
                );
            }
            Tier::Baseline
        }
    };
    let priority = if kind == ClusterKind::BaselineAdminNetworkPolicy {
        if spec.priority.is_some() {
            c.unknown(
                "spec.priority",
                "a BaselineAdminNetworkPolicy has no priority",
            );
        }
        None
    } else {
        match spec.priority {
            None => {
                c.err("spec.priority", "is required (0-1000)");
                None
            }
            Some(p) => match u32::try_from(p).ok().filter(|p| *p <= 1000) {
                Some(p) => Some(p),
                None => {
                    c.err(
                        "spec.priority",
                        format!("{p} is out of range (0-1000, lower is evaluated first)"),
                    );
                    None
                }
            },
        }
    };
    let subject = match &spec.subject {
        None => {
            c.err("spec.subject", "is required (namespaces or pods)");
            None
        }
        Some(s) => compile_subject(&mut c, s),
    };
    let mut dirs = BTreeMap::new();
    for dir in [Direction::Ingress, Direction::Egress] {
        let rules = match dir {
            Direction::Ingress => &spec.ingress,
            Direction::Egress => &spec.egress,
        };
        let path = format!("spec.{}", dir.key());
        let rules = rules.as_deref().unwrap_or(&[]);
        c.items(&path, rules.len(), 0, kind.max_items());
        let compiled: Vec<ClusterRule> = rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| compile_rule(&mut c, dir, i, r, unknown_peers))
            .collect();
        dirs.insert(dir, compiled);
    }
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    let (Some(subject), Some(ingress), Some(egress)) = (
        subject,
        dirs.remove(&Direction::Ingress),
        dirs.remove(&Direction::Egress),
    ) else {
        // Unreachable: a missing subject is an error above; both directions are always present.
        return Err(vec![FieldError::new("spec", "could not be compiled")]);
    };
    Ok(ClusterPolicy {
        key: ClusterPolicyRef { kind, name },
        tier,
        priority,
        subject,
        ingress,
        egress,
        source,
        warnings: c.warnings,
    })
}

fn compile_subject(c: &mut Ctx, s: &api::Subject) -> Option<Subject> {
    match (&s.namespaces, &s.pods) {
        (Some(ns), None) => Some(Subject::Namespaces(
            c.selector(ns, "spec.subject.namespaces"),
        )),
        (None, Some(p)) => {
            let (namespaces, pods) = namespaced_pod(c, p, "spec.subject.pods");
            Some(Subject::Pods { namespaces, pods })
        }
        _ => {
            c.err(
                "spec.subject",
                "must specify exactly one of namespaces or pods",
            );
            None
        }
    }
}

/// `namespaceSelector` and `podSelector` of a `pods` subject or peer.
fn namespaced_pod(c: &mut Ctx, p: &NamespacedPod, path: &str) -> (Selector, Selector) {
    let pods = match &p.pod_selector {
        Some(s) => c.selector(s, &format!("{path}.podSelector")),
        None => {
            c.err(
                format!("{path}.podSelector"),
                "is required ({} selects every pod)",
            );
            Selector::everything()
        }
    };
    let namespaces = match &p.namespace_selector {
        Some(s) => c.selector(s, &format!("{path}.namespaceSelector")),
        None if c.kind.is_v1alpha1() => {
            c.err(
                format!("{path}.namespaceSelector"),
                "is required in v1alpha1 ({} selects every namespace)",
            );
            Selector::everything()
        }
        // v1alpha2: optional, and empty means every namespace.
        None => Selector::everything(),
    };
    (namespaces, pods)
}

fn compile_action(c: &mut Ctx, written: Option<&str>, path: &str) -> Option<Action> {
    let (allowed, accept): (&[&str], &str) = match c.kind {
        ClusterKind::ClusterNetworkPolicy => (&["Accept", "Deny", "Pass"], "Accept"),
        ClusterKind::AdminNetworkPolicy => (&["Allow", "Deny", "Pass"], "Allow"),
        ClusterKind::BaselineAdminNetworkPolicy => (&["Allow", "Deny"], "Allow"),
    };
    let Some(w) = written else {
        c.err(path, format!("is required (one of {})", allowed.join(", ")));
        return None;
    };
    if !allowed.contains(&w) {
        c.err(
            path,
            format!(
                "unsupported value {w:?} for a {} (expected one of {})",
                c.kind,
                allowed.join(", ")
            ),
        );
        return None;
    }
    Some(match w {
        "Deny" => Action::Deny,
        "Pass" => Action::Pass,
        a if a == accept => Action::Accept,
        _ => return None,
    })
}

fn compile_rule(
    c: &mut Ctx,
    dir: Direction,
    i: usize,
    r: &api::Rule,
    unknown_peers: &UnknownPeers,
) -> Option<ClusterRule> {
    let base = format!("spec.{}[{i}]", dir.key());
    if let Some(n) = &r.name
        && n.chars().count() > 100
    {
        c.err(
            format!("{base}.name"),
            format!(
                "may not be longer than 100 characters ({})",
                n.chars().count()
            ),
        );
    }
    let action = compile_action(c, r.action.as_deref(), &format!("{base}.action"));
    // The wrong direction's peer key, and the other version's port key, are unknown fields.
    let (peers, wrong) = match dir {
        Direction::Ingress => (&r.from, &r.to),
        Direction::Egress => (&r.to, &r.from),
    };
    if wrong.is_some() {
        let other = match dir {
            Direction::Ingress => "to",
            Direction::Egress => "from",
        };
        c.unknown(
            format!("{base}.{other}"),
            &format!("{} rules have `{}`", dir.key(), dir.peers_key()),
        );
    }
    let (ports_key, other_key) = if c.kind.is_v1alpha1() {
        ("ports", "protocols")
    } else {
        ("protocols", "ports")
    };
    let other_present = if c.kind.is_v1alpha1() {
        r.protocols.is_some()
    } else {
        r.ports.is_some()
    };
    if other_present {
        c.unknown(
            format!("{base}.{other_key}"),
            &format!("{} rules use `{ports_key}`", c.kind.api_version()),
        );
    }
    let ppath = format!("{base}.{}", dir.peers_key());
    let peers_written = match peers {
        None => {
            c.err(&ppath, "is required (at least one peer)");
            &[][..]
        }
        Some(p) => {
            c.items(&ppath, p.len(), 1, c.kind.max_items());
            p.as_slice()
        }
    };
    let mut compiled_peers = Vec::new();
    let mut fail_closed = false;
    for (pi, p) in peers_written.iter().enumerate() {
        let path = format!("{ppath}[{pi}]");
        if let Some(field) = unknown_peers.get(&(dir, i, pi)) {
            fail_closed = true;
            let what = match action {
                Some(Action::Accept) => "so this rule matches no traffic",
                _ => "so this rule denies all traffic of its direction",
            };
            c.warn(
                format!("{path}.{field}"),
                format!(
                    "a peer type this build does not know (a newer API version?): the API asks \
                     implementations to fail closed, {what}"
                ),
            );
            compiled_peers.push(ClusterPeer::Unknown(field.clone()));
            continue;
        }
        if let Some(peer) = compile_peer(c, dir, p, &path) {
            compiled_peers.push(peer);
        }
    }
    let ports = if c.kind.is_v1alpha1() {
        r.ports
            .as_ref()
            .map(|ps| compile_v1_ports(c, ps, &format!("{base}.ports")))
    } else {
        r.protocols
            .as_ref()
            .map(|ps| compile_v2_protocols(c, ps, &format!("{base}.protocols")))
    };
    // CEL rule of the experimental channel: named ports only resolve on pods, so a rule naming
    // one may not target networks, nodes or domain names.
    if dir == Direction::Egress {
        let non_pod = peers_written
            .iter()
            .any(|p| p.networks.is_some() || p.nodes.is_some() || p.domain_names.is_some());
        let named = ports
            .iter()
            .flatten()
            .any(|p| matches!(p, ClusterPort::Named(_)));
        if non_pod && named {
            c.err(
                &base,
                "a named port cannot be used together with networks, nodes or domainNames peers \
                 (named ports exist only on pods)",
            );
        }
    }
    if let Some(Action::Deny | Action::Pass) = action {
        for (pi, p) in peers_written.iter().enumerate() {
            if p.domain_names.is_some() {
                c.warn(
                    format!("{ppath}[{pi}].domainNames"),
                    "domainNames are only supported in Accept/Allow rules (API docs)",
                );
            }
        }
    }
    Some(ClusterRule {
        name: r.name.clone(),
        action: action?,
        peers: compiled_peers,
        ports,
        fail_closed,
    })
}

fn compile_peer(c: &mut Ctx, dir: Direction, p: &Peer, path: &str) -> Option<ClusterPeer> {
    let mut set: Vec<&str> = Vec::new();
    if p.namespaces.is_some() {
        set.push("namespaces");
    }
    if p.pods.is_some() {
        set.push("pods");
    }
    let egress_only = [
        ("nodes", p.nodes.is_some()),
        ("networks", p.networks.is_some()),
        ("domainNames", p.domain_names.is_some()),
    ];
    for (field, present) in egress_only {
        if !present {
            continue;
        }
        if dir == Direction::Ingress {
            c.unknown(
                format!("{path}.{field}"),
                "ingress peers are namespaces or pods",
            );
        } else if field == "domainNames" && c.kind == ClusterKind::BaselineAdminNetworkPolicy {
            c.unknown(
                format!("{path}.{field}"),
                "BaselineAdminNetworkPolicy egress peers have no domainNames",
            );
        } else {
            set.push(field);
        }
    }
    if set.len() != 1 {
        let fields = match dir {
            Direction::Ingress => "namespaces or pods",
            Direction::Egress if c.kind == ClusterKind::BaselineAdminNetworkPolicy => {
                "namespaces, pods, nodes or networks"
            }
            Direction::Egress => "namespaces, pods, nodes, networks or domainNames",
        };
        if set.is_empty() {
            c.err(path, format!("must specify exactly one of {fields}"));
        } else {
            c.err(
                path,
                format!(
                    "must specify exactly one of {fields}, not {}",
                    set.join(" and ")
                ),
            );
        }
        return None;
    }
    if let Some(ns) = &p.namespaces {
        return Some(ClusterPeer::Namespaces(
            c.selector(ns, &format!("{path}.namespaces")),
        ));
    }
    if let Some(pods) = &p.pods {
        let (namespaces, pods) = namespaced_pod(c, pods, &format!("{path}.pods"));
        return Some(ClusterPeer::Pods { namespaces, pods });
    }
    if let Some(nodes) = &p.nodes {
        c.warn(
            format!("{path}.nodes"),
            "nodes peers select node addresses; no pod of the model has one, so this peer \
             matches no cell",
        );
        return Some(ClusterPeer::Nodes(
            c.selector(nodes, &format!("{path}.nodes")),
        ));
    }
    if let Some(nets) = &p.networks {
        return compile_networks(c, nets, &format!("{path}.networks")).map(ClusterPeer::Networks);
    }
    if let Some(names) = &p.domain_names {
        let npath = format!("{path}.domainNames");
        c.items(&npath, names.len(), 1, 25);
        let mut seen = BTreeSet::new();
        for (i, n) in names.iter().enumerate() {
            if !seen.insert(n) {
                c.err(format!("{npath}[{i}]"), format!("duplicate value {n:?}"));
            } else if !is_domain_name(n) {
                c.err(
                    format!("{npath}[{i}]"),
                    format!(
                        "{n:?} is not a domain name (labels of letters, digits, '-' or '_', at \
                         least two, optionally after a leading \"*.\")"
                    ),
                );
            }
        }
        c.warn(
            npath,
            "domainNames peers match traffic to DNS names; probes address pods by IP, so this \
             peer matches no cell",
        );
        return Some(ClusterPeer::DomainNames(names.clone()));
    }
    None
}

fn compile_networks(c: &mut Ctx, nets: &[String], path: &str) -> Option<Vec<IpNet>> {
    c.items(path, nets.len(), 1, 25);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let before = c.errors.len();
    for (i, n) in nets.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if !seen.insert(n) {
            // `x-kubernetes-list-type: set`.
            c.err(&p, format!("duplicate value {n:?}"));
            continue;
        }
        if n.chars().count() > 43 {
            c.err(&p, "may not be longer than 43 characters");
            continue;
        }
        // The CRD's `isCIDR` accepts host bits (as NetworkPolicy's ipBlock does, with a warning).
        if let Some(net) = parse_cidr(n, &p, &mut c.errors, &mut c.warnings) {
            out.push(net);
        }
    }
    (c.errors.len() == before).then_some(out)
}

/// The CRD's pattern for `DomainName`: an optional `*.` prefix, then two or more dot-separated
/// labels of letters, digits, `-` and `_` that start with a letter or digit and end with one, and
/// an optional final dot. (The pattern's first-character class is written `a-zA-z0-9`, whose
/// `A-z` also spans `[`, `\`, `]`, `^`, `_` and `` ` ``; that is kept.)
pub fn is_domain_name(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    let s = s.strip_suffix('.').unwrap_or(s);
    let labels: Vec<&str> = s.split('.').collect();
    let first_ok =
        |c: u8| c.is_ascii_lowercase() || (b'A'..=b'z').contains(&c) || c.is_ascii_digit();
    let last_ok = |c: u8| c.is_ascii_alphanumeric();
    let mid_ok = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    labels.len() >= 2
        && labels.iter().all(|l| {
            let b = l.as_bytes();
            match b {
                [] => false,
                [one] => first_ok(*one),
                [first, mid @ .., last] => {
                    first_ok(*first) && mid.iter().all(|c| mid_ok(*c)) && last_ok(*last)
                }
            }
        })
}

fn port_number(c: &mut Ctx, n: Option<i64>, path: &str) -> Option<u16> {
    match n {
        None => {
            c.err(path, "is required (1-65535)");
            None
        }
        Some(n) => match u16::try_from(n).ok().filter(|p| *p != 0) {
            Some(p) => Some(p),
            None => {
                c.err(path, format!("{n} is not a valid port number (1-65535)"));
                None
            }
        },
    }
}

fn compile_v2_protocols(c: &mut Ctx, ps: &[ProtocolEntry], path: &str) -> Vec<ClusterPort> {
    c.items(path, ps.len(), 1, 25);
    let mut out = Vec::new();
    for (i, p) in ps.iter().enumerate() {
        let ppath = format!("{path}[{i}]");
        let mut set = Vec::new();
        for (name, v) in [("tcp", &p.tcp), ("udp", &p.udp), ("sctp", &p.sctp)] {
            if let Some(v) = v {
                set.push((name, Some(v)));
            }
        }
        if p.destination_named_port.is_some() {
            set.push(("destinationNamedPort", None));
        }
        if set.len() != 1 {
            let names: Vec<&str> = set.iter().map(|(n, _)| *n).collect();
            c.err(
                &ppath,
                if names.is_empty() {
                    "must specify exactly one of tcp, udp, sctp or destinationNamedPort".to_string()
                } else {
                    format!(
                        "must specify exactly one of tcp, udp, sctp or destinationNamedPort, not {}",
                        names.join(" and ")
                    )
                },
            );
            continue;
        }
        let (name, ports) = set[0];
        let Some(ports) = ports else {
            let n = p.destination_named_port.clone().unwrap_or_default();
            named(c, &n, &format!("{ppath}.destinationNamedPort"));
            out.push(ClusterPort::Named(n));
            continue;
        };
        let protocol = match name {
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => Protocol::Tcp,
        };
        let dpath = format!("{ppath}.{name}.destinationPort");
        let Some(dp) = &ports.destination_port else {
            // `minProperties: 1` on the protocol object: a port is required (the docs' "omitted
            // means every port" is not what the CRD accepts).
            c.err(
                &dpath,
                "is required (the CRD needs at least one property; use a range 1-65535 for every \
                 port)",
            );
            continue;
        };
        match (dp.number, &dp.range) {
            (Some(n), None) => {
                if let Some(p) = port_number(c, Some(n), &format!("{dpath}.number")) {
                    out.push(ClusterPort::Range {
                        protocol,
                        start: p,
                        end: p,
                    });
                }
            }
            (None, Some(r)) => {
                let rpath = format!("{dpath}.range");
                if r.protocol.is_some() {
                    c.unknown(
                        format!("{rpath}.protocol"),
                        "v1alpha2 gives the protocol by its key",
                    );
                }
                let start = port_number(c, r.start, &format!("{rpath}.start"));
                let end = port_number(c, r.end, &format!("{rpath}.end"));
                if let (Some(start), Some(end)) = (start, end) {
                    // CEL rule of `PortRange`.
                    if start >= end {
                        c.err(
                            &rpath,
                            format!("start ({start}) must be less than end ({end})"),
                        );
                    } else {
                        out.push(ClusterPort::Range {
                            protocol,
                            start,
                            end,
                        });
                    }
                }
            }
            _ => c.err(&dpath, "must specify exactly one of number or range"),
        }
    }
    out
}

/// A named port's name: the CRD accepts any string, but only a valid port name can be declared by
/// a container, so anything else can never match.
fn named(c: &mut Ctx, n: &str, path: &str) {
    if !is_port_name(n) {
        c.warn(
            path,
            format!(
                "{n:?} is not a valid container port name, so no pod can declare it and this \
                 entry matches nothing"
            ),
        );
    }
}

fn v1_protocol(c: &mut Ctx, p: Option<&str>, path: &str) -> Option<Protocol> {
    match p {
        // `default: TCP` in the CRD.
        None => Some(Protocol::Tcp),
        Some(s) => match s.parse::<Protocol>() {
            Ok(proto) => Some(proto),
            Err(_) => {
                c.warn(
                    path,
                    format!(
                        "{s:?} is not TCP, UDP or SCTP (the CRD does not restrict it): this entry \
                         matches no probe"
                    ),
                );
                None
            }
        },
    }
}

fn compile_v1_ports(c: &mut Ctx, ps: &[PortEntry], path: &str) -> Vec<ClusterPort> {
    c.items(path, ps.len(), 1, 100);
    let mut out = Vec::new();
    for (i, p) in ps.iter().enumerate() {
        let ppath = format!("{path}[{i}]");
        let count = usize::from(p.port_number.is_some())
            + usize::from(p.named_port.is_some())
            + usize::from(p.port_range.is_some());
        if count != 1 {
            c.err(
                &ppath,
                "must specify exactly one of portNumber, namedPort or portRange",
            );
            continue;
        }
        if let Some(pn) = &p.port_number {
            let proto = v1_protocol(
                c,
                pn.protocol.as_deref(),
                &format!("{ppath}.portNumber.protocol"),
            );
            let port = port_number(c, pn.port, &format!("{ppath}.portNumber.port"));
            if let Some(port) = port {
                out.push(match proto {
                    Some(protocol) => ClusterPort::Range {
                        protocol,
                        start: port,
                        end: port,
                    },
                    None => ClusterPort::Never,
                });
            }
        } else if let Some(n) = &p.named_port {
            named(c, n, &format!("{ppath}.namedPort"));
            out.push(ClusterPort::Named(n.clone()));
        } else if let Some(r) = &p.port_range {
            let rpath = format!("{ppath}.portRange");
            let proto = v1_protocol(c, r.protocol.as_deref(), &format!("{rpath}.protocol"));
            let start = port_number(c, r.start, &format!("{rpath}.start"));
            let end = port_number(c, r.end, &format!("{rpath}.end"));
            if let (Some(start), Some(end)) = (start, end) {
                // The v1alpha1 docs say start must be less than end, but its CRD has no rule for
                // it: the API server accepts the object, and an inverted range admits nothing.
                if start >= end {
                    c.warn(
                        &rpath,
                        format!(
                            "start ({start}) should be less than end ({end}){}",
                            if start > end {
                                ": this range admits no port"
                            } else {
                                ""
                            }
                        ),
                    );
                }
                out.push(match proto {
                    Some(protocol) => ClusterPort::Range {
                        protocol,
                        start,
                        end,
                    },
                    None => ClusterPort::Never,
                });
            }
        }
    }
    out
}

/// Parses and compiles one object without the loader's unknown-field check (tests, benches and
/// callers holding JSON they built themselves).
pub fn from_value(v: &Value) -> Result<ClusterPolicy, Vec<FieldError>> {
    let kind_str = v.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(kind) = ClusterKind::from_kind(kind_str) else {
        return Err(vec![FieldError::new(
            "kind",
            format!("{kind_str:?} is not a cluster-wide policy kind"),
        )]);
    };
    let (stripped, unknown) = split_unknown_peers(v);
    let doc: Document =
        serde_json::from_value(stripped).map_err(|e| vec![FieldError::new("", e.to_string())])?;
    compile(kind, &doc, &unknown, v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cnp(spec: Value) -> Result<ClusterPolicy, Vec<FieldError>> {
        from_value(&json!({"apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy", "metadata": {"name": "p"}, "spec": spec}))
    }

    fn paths(r: Result<ClusterPolicy, Vec<FieldError>>) -> Vec<String> {
        match r {
            Ok(p) => panic!("expected errors, compiled {:?}", p.key),
            Err(e) => e.into_iter().map(|e| e.path).collect(),
        }
    }

    fn ns_subject() -> Value {
        json!({"namespaces": {}})
    }

    #[test]
    fn a_minimal_policy_compiles() {
        let p = cnp(json!({"tier": "Admin", "priority": 0, "subject": ns_subject()}))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.tier, Tier::Admin);
        assert_eq!(p.priority, Some(0));
        assert!(p.ingress.is_empty() && p.egress.is_empty());
    }

    #[test]
    fn required_fields_limits_and_enums() {
        assert_eq!(
            paths(cnp(json!({"priority": 1001, "subject": {}}))),
            ["spec.tier", "spec.priority", "spec.subject"]
        );
        assert_eq!(
            paths(cnp(
                json!({"tier": "admin", "priority": -1, "subject": ns_subject()})
            )),
            ["spec.tier", "spec.priority"]
        );
        let rules: Vec<Value> = (0..26)
            .map(|_| json!({"action": "Deny", "from": [{"namespaces": {}}]}))
            .collect();
        assert_eq!(
            paths(cnp(
                json!({"tier": "Admin", "priority": 1, "subject": ns_subject(), "ingress": rules})
            )),
            ["spec.ingress"]
        );
    }

    #[test]
    fn rules_need_an_action_and_peers() {
        let r = cnp(
            json!({"tier": "Admin", "priority": 1, "subject": ns_subject(),
            "ingress": [{"action": "Allow", "from": [{"namespaces": {}}]}, {"action": "Deny", "from": []},
                        {"action": "Pass", "name": "x".repeat(101), "from": [{}]}],
            "egress": [{"to": [{"namespaces": {}, "networks": ["10.0.0.0/8"]}]}]}),
        );
        assert_eq!(
            paths(r),
            [
                "spec.ingress[0].action",
                "spec.ingress[1].from",
                "spec.ingress[2].name",
                "spec.ingress[2].from[0]",
                "spec.egress[0].action",
                "spec.egress[0].to[0]"
            ]
        );
    }

    #[test]
    fn ports_follow_the_crd_and_its_cel_rules() {
        let r = cnp(
            json!({"tier": "Admin", "priority": 1, "subject": ns_subject(),
            "egress": [{"action": "Deny", "to": [{"networks": ["10.0.0.0/8", "10.0.0.0/8", "bogus"]}],
                        "protocols": [{"tcp": {}}, {"udp": {"destinationPort": {"range": {"start": 90, "end": 80}}}},
                                      {"tcp": {"destinationPort": {"number": 0}}}, {"destinationNamedPort": "web"},
                                      {"tcp": {"destinationPort": {"number": 80}}, "udp": {"destinationPort": {"number": 80}}}]}]}),
        );
        assert_eq!(
            paths(r),
            [
                "spec.egress[0].to[0].networks[1]",
                "spec.egress[0].to[0].networks[2]",
                "spec.egress[0].protocols[0].tcp.destinationPort",
                "spec.egress[0].protocols[1].udp.destinationPort.range",
                "spec.egress[0].protocols[2].tcp.destinationPort.number",
                "spec.egress[0].protocols[4]",
                "spec.egress[0]"
            ]
        );
    }

    #[test]
    fn v1alpha1_kinds_have_their_own_fields() {
        let banp = from_value(&json!({"apiVersion": "policy.networking.k8s.io/v1alpha1",
            "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": "other"},
            "spec": {"priority": 3, "subject": {"pods": {"podSelector": {}}},
                     "ingress": [{"action": "Pass", "from": [{"namespaces": {}}]}],
                     "egress": [{"action": "Allow", "to": [{"domainNames": ["example.com"]}]}]}}));
        assert_eq!(
            paths(banp),
            [
                "metadata.name",
                "spec.priority",
                "spec.subject.pods.namespaceSelector",
                "spec.ingress[0].action",
                "spec.egress[0].to[0].domainNames",
                "spec.egress[0].to[0]"
            ]
        );
        let anp = from_value(&json!({"apiVersion": "policy.networking.k8s.io/v1alpha1",
            "kind": "AdminNetworkPolicy", "metadata": {"name": "a"},
            "spec": {"priority": 3, "subject": {"namespaces": {}},
                     "ingress": [{"action": "Allow", "from": [{"namespaces": {}}],
                                  "ports": [{"portNumber": {"port": 80}}, {"portRange": {"start": 90, "end": 85, "protocol": "UDP"}},
                                            {"namedPort": "web"}, {"portNumber": {"port": 80, "protocol": "ICMP"}}]}]}}))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(anp.ingress[0].action, Action::Accept);
        assert_eq!(
            anp.ingress[0].ports,
            Some(vec![
                ClusterPort::Range {
                    protocol: Protocol::Tcp,
                    start: 80,
                    end: 80
                },
                ClusterPort::Range {
                    protocol: Protocol::Udp,
                    start: 90,
                    end: 85
                },
                ClusterPort::Named("web".into()),
                ClusterPort::Never,
            ])
        );
        let warned: Vec<&str> = anp.warnings.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            warned,
            [
                "spec.ingress[0].ports[1].portRange",
                "spec.ingress[0].ports[3].portNumber.protocol"
            ]
        );
    }

    #[test]
    fn unknown_peer_types_fail_closed_but_typos_are_errors() {
        let p = cnp(json!({"tier": "Admin", "priority": 1, "subject": ns_subject(),
            "ingress": [{"action": "Accept", "from": [{"serviceAccounts": {}}]},
                        {"action": "Pass", "from": [{"namespaces": {}}, {"serviceAccounts": {}}]}]}))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(p.ingress[0].fail_closed && p.ingress[1].fail_closed);
        assert_eq!(p.ingress[0].effective_action(), Action::Accept);
        assert_eq!(p.ingress[1].effective_action(), Action::Deny);
        assert_eq!(p.warnings.len(), 2);
        for typo in ["namespace", "Pods", "network", "domainName"] {
            let r = cnp(
                json!({"tier": "Admin", "priority": 1, "subject": ns_subject(),
                "egress": [{"action": "Deny", "to": [{typo: {}}]}]}),
            );
            assert!(r.is_err(), "{typo} should be a typo, not a new peer type");
        }
    }

    #[test]
    fn domain_names_follow_the_pattern() {
        for ok in [
            "kubernetes.io",
            "*.kubernetes.io",
            "a.b.c.",
            "x_y.example.com",
        ] {
            assert!(is_domain_name(ok), "{ok}");
        }
        for bad in [
            "kubernetes",
            "*kubernetes.io",
            "-a.io",
            "a-.io",
            "a..io",
            "",
            "*.io",
        ] {
            assert!(!is_domain_name(bad), "{bad}");
        }
    }
}
