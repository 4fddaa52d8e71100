//! A deliberately naive evaluator of NetworkPolicy v1 and the network-policy-api tiers, written
//! from the API text for the property tests, sharing no code with the oracle: it reads the
//! policies as raw JSON, matches labels and CIDRs by hand, and settles "same priority" by trying
//! every order an implementation could put the policies in (brute force), where the oracle
//! reasons with sets. Only the model (plain data) is shared.
//!
//! Reading of the API used here (kubernetes-sigs/network-policy-api, apis/v1alpha2 and the
//! release-0.1 v1alpha1 types; the API overview):
//! - per direction: Admin tier (priority ascending, each policy's rules in order, the first
//!   matching rule decides: Accept allows, Deny denies, Pass goes to NetworkPolicy), then
//!   NetworkPolicy if one selects the pod for that direction, else the Baseline tier (Accept/Allow
//!   allows, Deny denies, Pass or no match leaves it to the default), else allowed;
//! - policies sharing a priority may be applied in any order: each direction's answer is the set
//!   of answers over every order, and a cell is defined only when all combinations agree;
//! - a pod connecting to its own pod IP is not subject to cluster-wide policies;
//! - `networks` match pod addresses; `nodes` and `domainNames` match no pod;
//! - a peer with no field known to the API fails closed (Accept: the rule matches nothing;
//!   Deny/Pass: the rule denies everything).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use netpol_conformance::model::{Model, Pod, Probe, Protocol};
use serde_json::Value;

fn labels_match(sel: &Value, labels: &std::collections::BTreeMap<String, String>) -> bool {
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            if labels.get(k).map(String::as_str) != v.as_str() {
                return false;
            }
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let have = labels.get(key);
            let ok = match e["operator"].as_str().unwrap_or("") {
                "In" => have.is_some_and(|h| values.contains(&h.as_str())),
                "NotIn" => have.is_none_or(|h| !values.contains(&h.as_str())),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

fn ns_labels(model: &Model, pod: &Pod) -> std::collections::BTreeMap<String, String> {
    model
        .namespaces
        .get(&pod.namespace)
        .map(|n| n.labels.clone())
        .unwrap_or_default()
}

/// IPv4 only, by hand: `a.b.c.d/len` contains `ip`.
fn in_cidr(cidr: &str, ip: IpAddr) -> bool {
    let IpAddr::V4(ip) = ip else { return false };
    let Some((addr, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    if len == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - len);
    (u32::from(addr) & mask) == (u32::from(ip) & mask)
}

fn protocol_of(s: Option<&str>) -> Option<Protocol> {
    match s.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

/// The destination pod declares a container port named `name`, numbered as the probe's port, of
/// the probe's protocol.
fn named_port_is(dst: &Pod, name: &str, probe: Probe, protocol: Option<Protocol>) -> bool {
    dst.ports.iter().any(|c| {
        c.name.as_deref() == Some(name)
            && c.port == probe.port
            && c.protocol == probe.protocol
            && protocol.is_none_or(|p| p == c.protocol)
    })
}

// ------------------------------------------------------------------------------------------
// NetworkPolicy v1
// ------------------------------------------------------------------------------------------

fn np_types(np: &Value) -> (bool, bool) {
    let spec = &np["spec"];
    match spec.get("policyTypes").and_then(Value::as_array) {
        Some(t) if !t.is_empty() => (
            t.iter().any(|x| x == "Ingress"),
            t.iter().any(|x| x == "Egress"),
        ),
        _ => (
            true,
            spec.get("egress")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty()),
        ),
    }
}

fn np_selects(np: &Value, pod: &Pod) -> bool {
    let ns = np["metadata"]["namespace"].as_str().unwrap_or("default");
    ns == pod.namespace
        && labels_match(
            np["spec"].get("podSelector").unwrap_or(&Value::Null),
            &pod.labels,
        )
}

fn np_peer_matches(model: &Model, np: &Value, peer: &Value, p: &Pod) -> bool {
    if let Some(b) = peer.get("ipBlock") {
        let cidr = b["cidr"].as_str().unwrap_or("");
        let except: Vec<&str> = b
            .get("except")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        return in_cidr(cidr, p.ip) && !except.iter().any(|e| in_cidr(e, p.ip));
    }
    let ns_ok = match peer.get("namespaceSelector") {
        None => p.namespace == np["metadata"]["namespace"].as_str().unwrap_or("default"),
        Some(sel) => labels_match(sel, &ns_labels(model, p)),
    };
    let pod_ok = peer
        .get("podSelector")
        .is_none_or(|sel| labels_match(sel, &p.labels));
    ns_ok && pod_ok
}

fn np_port_matches(port: &Value, dst: &Pod, probe: Probe) -> bool {
    let Some(proto) = protocol_of(port.get("protocol").and_then(Value::as_str)) else {
        return false;
    };
    if proto != probe.protocol {
        return false;
    }
    match port.get("port") {
        None => true,
        Some(Value::String(name)) => named_port_is(dst, name, probe, Some(proto)),
        Some(n) => {
            let start = n.as_u64().unwrap_or(0);
            let end = port.get("endPort").and_then(Value::as_u64).unwrap_or(start);
            (start..=end).contains(&u64::from(probe.port))
        }
    }
}

/// `Some(allowed)` when a NetworkPolicy selects `subject` for the direction, `None` otherwise.
fn np_direction(
    model: &Model,
    nps: &[Value],
    egress: bool,
    subject: &Pod,
    peer: &Pod,
    dst: &Pod,
    probe: Probe,
) -> Option<bool> {
    let mut selected = false;
    let mut allowed = false;
    for np in nps {
        let (ing, eg) = np_types(np);
        if !(if egress { eg } else { ing }) || !np_selects(np, subject) {
            continue;
        }
        selected = true;
        let key = if egress { "egress" } else { "ingress" };
        let peers_key = if egress { "to" } else { "from" };
        for rule in np["spec"]
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let peers = rule
                .get(peers_key)
                .and_then(Value::as_array)
                .filter(|p| !p.is_empty());
            let ports = rule
                .get("ports")
                .and_then(Value::as_array)
                .filter(|p| !p.is_empty());
            let peer_ok =
                peers.is_none_or(|ps| ps.iter().any(|x| np_peer_matches(model, np, x, peer)));
            let port_ok = ports.is_none_or(|ps| ps.iter().any(|x| np_port_matches(x, dst, probe)));
            if peer_ok && port_ok {
                allowed = true;
            }
        }
    }
    selected.then_some(allowed)
}

// ------------------------------------------------------------------------------------------
// Cluster-wide policies
// ------------------------------------------------------------------------------------------

fn is_v1alpha1(p: &Value) -> bool {
    p["kind"] != "ClusterNetworkPolicy"
}

fn is_admin(p: &Value) -> bool {
    match p["kind"].as_str() {
        Some("AdminNetworkPolicy") => true,
        Some("BaselineAdminNetworkPolicy") => false,
        _ => p["spec"]["tier"] == "Admin",
    }
}

/// Lower first; the BaselineAdminNetworkPolicy (no priority) after every other.
fn priority(p: &Value) -> u64 {
    p["spec"]
        .get("priority")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

fn cnp_selects(model: &Model, p: &Value, pod: &Pod) -> bool {
    let subject = &p["spec"]["subject"];
    if let Some(ns) = subject.get("namespaces") {
        return labels_match(ns, &ns_labels(model, pod));
    }
    let pods = &subject["pods"];
    labels_match(
        pods.get("namespaceSelector").unwrap_or(&Value::Null),
        &ns_labels(model, pod),
    ) && labels_match(pods.get("podSelector").unwrap_or(&Value::Null), &pod.labels)
}

const KNOWN_PEER_FIELDS: [&str; 5] = ["namespaces", "pods", "nodes", "networks", "domainNames"];

fn cnp_peer_matches(model: &Model, peer: &Value, p: &Pod) -> bool {
    if let Some(ns) = peer.get("namespaces") {
        return labels_match(ns, &ns_labels(model, p));
    }
    if let Some(pods) = peer.get("pods") {
        return labels_match(
            pods.get("namespaceSelector").unwrap_or(&Value::Null),
            &ns_labels(model, p),
        ) && labels_match(pods.get("podSelector").unwrap_or(&Value::Null), &p.labels);
    }
    if let Some(nets) = peer.get("networks").and_then(Value::as_array) {
        return nets
            .iter()
            .filter_map(Value::as_str)
            .any(|c| in_cidr(c, p.ip));
    }
    false
}

fn cnp_port_matches(p: &Value, v1: bool, entry: &Value, dst: &Pod, probe: Probe) -> bool {
    let _ = p;
    if v1 {
        if let Some(n) = entry.get("namedPort").and_then(Value::as_str) {
            return named_port_is(dst, n, probe, None);
        }
        if let Some(pn) = entry.get("portNumber") {
            return protocol_of(pn.get("protocol").and_then(Value::as_str)) == Some(probe.protocol)
                && pn["port"].as_u64() == Some(u64::from(probe.port));
        }
        if let Some(r) = entry.get("portRange") {
            let (s, e) = (
                r["start"].as_u64().unwrap_or(0),
                r["end"].as_u64().unwrap_or(0),
            );
            return protocol_of(r.get("protocol").and_then(Value::as_str)) == Some(probe.protocol)
                && s <= u64::from(probe.port)
                && u64::from(probe.port) <= e;
        }
        return false;
    }
    if let Some(n) = entry.get("destinationNamedPort").and_then(Value::as_str) {
        return named_port_is(dst, n, probe, None);
    }
    for (key, proto) in [
        ("tcp", Protocol::Tcp),
        ("udp", Protocol::Udp),
        ("sctp", Protocol::Sctp),
    ] {
        if let Some(x) = entry.get(key) {
            if proto != probe.protocol {
                return false;
            }
            let dp = &x["destinationPort"];
            if let Some(n) = dp.get("number").and_then(Value::as_u64) {
                return n == u64::from(probe.port);
            }
            if let Some(r) = dp.get("range") {
                let (s, e) = (
                    r["start"].as_u64().unwrap_or(0),
                    r["end"].as_u64().unwrap_or(0),
                );
                return s <= u64::from(probe.port) && u64::from(probe.port) <= e;
            }
        }
    }
    false
}

/// The action of the first rule of `p` matching, if any (`Accept` for v1alpha1 `Allow`).
fn first_action(
    model: &Model,
    p: &Value,
    egress: bool,
    peer: &Pod,
    dst: &Pod,
    probe: Probe,
) -> Option<&'static str> {
    let key = if egress { "egress" } else { "ingress" };
    let peers_key = if egress { "to" } else { "from" };
    let v1 = is_v1alpha1(p);
    for rule in p["spec"]
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let action = match rule["action"].as_str().unwrap_or("") {
            "Accept" | "Allow" => "Accept",
            "Deny" => "Deny",
            _ => "Pass",
        };
        let peers: Vec<&Value> = rule
            .get(peers_key)
            .and_then(Value::as_array)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let unknown = peers.iter().any(|x| {
            x.as_object()
                .is_some_and(|m| !m.keys().any(|k| KNOWN_PEER_FIELDS.contains(&k.as_str())))
        });
        if unknown {
            if action == "Accept" {
                continue; // matches nothing
            }
            return Some("Deny"); // deny all
        }
        let ports_key = if v1 { "ports" } else { "protocols" };
        let port_ok = rule
            .get(ports_key)
            .and_then(Value::as_array)
            .is_none_or(|ps| ps.iter().any(|e| cnp_port_matches(p, v1, e, dst, probe)));
        if port_ok && peers.iter().any(|x| cnp_peer_matches(model, x, peer)) {
            return Some(action);
        }
    }
    None
}

/// Every order of `items` in which priorities never decrease.
fn priority_orders<'a>(items: &[&'a Value]) -> Vec<Vec<&'a Value>> {
    if items.is_empty() {
        return vec![Vec::new()];
    }
    let lowest = items.iter().map(|p| priority(p)).min().unwrap_or(0);
    let mut out = Vec::new();
    for (i, first) in items.iter().enumerate() {
        if priority(first) != lowest {
            continue;
        }
        let rest: Vec<&Value> = items
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| *p)
            .collect();
        for mut tail in priority_orders(&rest) {
            tail.insert(0, *first);
            out.push(tail);
        }
    }
    out
}

/// Every answer (allowed?) one direction may get.
#[allow(clippy::too_many_arguments)]
fn direction_answers(
    model: &Model,
    nps: &[Value],
    cluster: &[Value],
    egress: bool,
    subject: &Pod,
    peer: &Pod,
    dst: &Pod,
    probe: Probe,
) -> BTreeSet<bool> {
    let np = np_direction(model, nps, egress, subject, peer, dst, probe);
    if subject.namespace == peer.namespace && subject.name == peer.name {
        return BTreeSet::from([np.unwrap_or(true)]);
    }
    let selecting = |admin: bool| -> Vec<&Value> {
        cluster
            .iter()
            .filter(|p| is_admin(p) == admin && cnp_selects(model, p, subject))
            .collect()
    };
    let mut baseline_answers = BTreeSet::new();
    for order in priority_orders(&selecting(false)) {
        let action = order
            .iter()
            .find_map(|p| first_action(model, p, egress, peer, dst, probe));
        baseline_answers.insert(action != Some("Deny"));
    }
    let lower: BTreeSet<bool> = match np {
        Some(a) => BTreeSet::from([a]),
        None => baseline_answers,
    };
    let mut out = BTreeSet::new();
    for order in priority_orders(&selecting(true)) {
        let action = order
            .iter()
            .find_map(|p| first_action(model, p, egress, peer, dst, probe));
        match action {
            Some("Accept") => {
                out.insert(true);
            }
            Some("Deny") => {
                out.insert(false);
            }
            _ => out.extend(lower.iter().copied()),
        }
    }
    out
}

/// `Some(allowed)`, or `None` when implementations may disagree.
pub fn cell(
    model: &Model,
    nps: &[Value],
    cluster: &[Value],
    from: &Pod,
    to: &Pod,
    probe: Probe,
) -> Option<bool> {
    let e = direction_answers(model, nps, cluster, true, from, to, to, probe);
    let i = direction_answers(model, nps, cluster, false, to, from, to, probe);
    let mut results = BTreeSet::new();
    for a in &e {
        for b in &i {
            results.insert(*a && *b);
        }
    }
    match results.len() {
        1 => results.into_iter().next(),
        _ => None,
    }
}
