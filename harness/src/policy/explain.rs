//! Human-readable explanations of oracle decisions, quoting the deciding rule, peer and port.
//!
//! Steps with cluster-wide policies get the tiers too: per direction, the Admin-tier policies in
//! evaluation order (with the priority and the rule, by index and name, that matched, and those
//! passed over), then NetworkPolicy, then the Baseline tier, and which of them decided.

use std::fmt::Write as _;

use crate::scenario::Step;

use super::cluster::api::Rule as RuleShape;
use super::cluster::{Action, ClusterKind};
use super::compile::{CompiledPolicy, Direction};
use super::oracle::{
    ClusterEval, Conflict, DecidedBy, Decision, DirectionDecision, RuleMatch, TierTrace,
    peer_matches,
};
use crate::model::{Pod, Probe};

fn word(allowed: bool) -> &'static str {
    if allowed { "ALLOWED" } else { "DENIED" }
}

fn answer(allowed: bool, undefined: bool) -> &'static str {
    if undefined {
        "IMPLEMENTATION-DEFINED"
    } else {
        word(allowed)
    }
}

/// YAML of one element of a policy, indented for quoting. `None` when it cannot be found.
fn excerpt<T: serde::Serialize>(value: &T, indent: &str) -> Option<String> {
    let yaml = serde_saphyr::to_string(value).ok()?;
    Some(
        yaml.lines()
            .map(|l| format!("{indent}{l}\n"))
            .collect::<String>(),
    )
}

fn rule_excerpt(pol: &CompiledPolicy, dir: Direction, m: &RuleMatch, indent: &str) -> String {
    let spec = pol.source.spec.as_ref();
    let mut out = String::new();
    let (peers, ports) = match dir {
        Direction::Ingress => {
            let r = spec
                .and_then(|s| s.ingress.as_ref())
                .and_then(|v| v.get(m.rule));
            (
                r.and_then(|r| r.from.as_ref()),
                r.and_then(|r| r.ports.as_ref()),
            )
        }
        Direction::Egress => {
            let r = spec
                .and_then(|s| s.egress.as_ref())
                .and_then(|v| v.get(m.rule));
            (
                r.and_then(|r| r.to.as_ref()),
                r.and_then(|r| r.ports.as_ref()),
            )
        }
    };
    let key = dir.key();
    let pk = dir.peers_key();
    match m
        .peer
        .and_then(|i| peers.and_then(|p| p.get(i)).map(|p| (i, p)))
    {
        Some((i, p)) => {
            let _ = writeln!(out, "{indent}peer spec.{key}[{}].{pk}[{i}]:", m.rule);
            out.push_str(&excerpt(p, &format!("{indent}  ")).unwrap_or_default());
        }
        None => {
            let _ = writeln!(
                out,
                "{indent}peer: any (the rule has no `{pk}`, or it is empty)"
            );
        }
    }
    match m
        .port
        .and_then(|i| ports.and_then(|p| p.get(i)).map(|p| (i, p)))
    {
        Some((i, p)) => {
            let _ = writeln!(out, "{indent}port spec.{key}[{}].ports[{i}]:", m.rule);
            out.push_str(&excerpt(p, &format!("{indent}  ")).unwrap_or_default());
        }
        None => {
            let _ = writeln!(
                out,
                "{indent}port: any (the rule has no `ports`, or it is empty)"
            );
        }
    }
    out
}

/// Why each rule of a selecting policy did not admit the connection: its peers, its ports, or both.
fn render_misses(
    out: &mut String,
    p: &CompiledPolicy,
    d: &DirectionDecision,
    peer: &Pod,
    dst: &Pod,
    probe: Probe,
    step: &Step,
) {
    let rules = p.rules(d.direction).unwrap_or(&[]);
    if rules.is_empty() {
        let _ = writeln!(
            out,
            "    {}: no {} rules — it isolates the pod and allows nothing",
            p.key,
            d.direction.key()
        );
        return;
    }
    for (i, rule) in rules.iter().enumerate() {
        let peer_ok = rule
            .peers
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|x| peer_matches(&step.model, x, peer)));
        let port_ok = rule.ports.as_ref().is_none_or(|ps| {
            ps.iter().any(|pm| {
                pm.matches(probe.protocol, probe.port, |n, proto| {
                    dst.named_port(n, proto)
                })
            })
        });
        let mut why = Vec::new();
        if !peer_ok {
            let labels: Vec<String> = peer
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            why.push(format!(
                "no peer matches {} (pod labels {{{}}}, address {})",
                peer.pod_ref(),
                labels.join(","),
                peer.ip
            ));
        }
        if !port_ok {
            why.push(format!("no port entry admits {probe} on {}", dst.pod_ref()));
        }
        let _ = writeln!(
            out,
            "    {} rule spec.{}[{i}]: {}",
            p.key,
            d.direction.key(),
            why.join("; ")
        );
        if let Some(y) = rule_yaml(p, d.direction, i) {
            out.push_str(&y);
        }
    }
}

/// The YAML of rule `i` of a policy's direction, indented for quoting.
fn rule_yaml(p: &CompiledPolicy, dir: Direction, i: usize) -> Option<String> {
    let spec = p.source.spec.as_ref()?;
    match dir {
        Direction::Ingress => excerpt(spec.ingress.as_ref()?.get(i)?, "        "),
        Direction::Egress => excerpt(spec.egress.as_ref()?.get(i)?, "        "),
    }
}

/// The other end of the connection, and the destination whose named ports count.
fn ends<'s>(
    d: &DirectionDecision,
    step: &'s Step,
    decision: &Decision,
) -> Option<(&'s Pod, &'s Pod)> {
    let (peer_ref, dst_ref) = match d.direction {
        Direction::Egress => (&decision.to, &decision.to),
        Direction::Ingress => (&decision.from, &decision.to),
    };
    Some((step.model.pod(peer_ref)?, step.model.pod(dst_ref)?))
}

fn title_side(dir: Direction) -> (&'static str, &'static str) {
    match dir {
        Direction::Egress => ("egress", "source"),
        Direction::Ingress => ("ingress", "destination"),
    }
}

fn render_direction(out: &mut String, d: &DirectionDecision, step: &Step, decision: &Decision) {
    if let Some(t) = &d.tiers {
        render_tiered(out, d, t, step, decision);
        return;
    }
    let Some((peer, dst)) = ends(d, step, decision) else {
        return;
    };
    let (title, side) = title_side(d.direction);
    let _ = writeln!(out, "{title} at the {side} {}: {}", d.pod, word(d.allowed));
    render_np(out, d, step, peer, dst, decision.probe, false);
}

/// The NetworkPolicy part of a direction: who selects the pod and which rule admitted (or why
/// none did).
fn render_np(
    out: &mut String,
    d: &DirectionDecision,
    step: &Step,
    peer: &Pod,
    dst: &Pod,
    probe: Probe,
    tiered: bool,
) {
    let (title, _) = title_side(d.direction);
    if d.selecting.is_empty() && tiered {
        let _ = writeln!(
            out,
            "  no NetworkPolicy selects {} for {title}: it does not isolate the pod",
            d.pod
        );
        return;
    }
    if d.selecting.is_empty() {
        let _ = writeln!(
            out,
            "  no NetworkPolicy selects {} for {title}: the pod is not isolated, all {title} is allowed",
            d.pod
        );
        return;
    }
    let names: Vec<String> = d.selecting.iter().map(|p| p.to_string()).collect();
    let _ = writeln!(out, "  selected for {title} by: {}", names.join(", "));
    if d.allowed_by.is_empty() {
        let _ = writeln!(
            out,
            "  no rule of these policies admits this connection (no rule matches both peer and port), so it is denied"
        );
        for key in &d.selecting {
            if let Some(p) = step.policies.iter().find(|p| &p.key == key) {
                render_misses(out, p, d, peer, dst, probe, step);
            }
        }
        return;
    }
    for m in &d.allowed_by {
        let _ = writeln!(
            out,
            "  allowed by {} rule spec.{}[{}]",
            m.policy,
            d.direction.key(),
            m.rule
        );
        if let Some(p) = step.policies.iter().find(|p| p.key == m.policy) {
            out.push_str(&rule_excerpt(p, d.direction, m, "    "));
        }
    }
}

fn action_word(a: Action, kind: ClusterKind) -> &'static str {
    a.word(kind)
}

/// One line per evaluated cluster-wide policy, quoting the rule that matched.
fn render_evals(
    out: &mut String,
    evals: &[ClusterEval],
    conflicts: &[Conflict],
    dir: Direction,
    step: &Step,
) {
    for e in evals {
        let contested = conflicts
            .iter()
            .any(|c| c.policies.iter().any(|(p, _)| *p == e.policy));
        let prio = e
            .priority
            .map_or_else(|| "no priority".to_string(), |p| format!("priority {p}"));
        match &e.matched {
            None => {
                let _ = writeln!(
                    out,
                    "    {} ({prio}): no {} rule matches — passed over",
                    e.policy,
                    dir.key()
                );
            }
            Some(m) => {
                let name = m
                    .name
                    .as_deref()
                    .map(|n| format!(" {n:?}"))
                    .unwrap_or_default();
                let act = action_word(m.action, e.policy.kind);
                let effect = match m.action {
                    _ if contested => "one of the answers an implementation may apply".to_string(),
                    Action::Accept => "allows; nothing after it is consulted".to_string(),
                    Action::Deny => "denies; nothing after it is consulted".to_string(),
                    Action::Pass => format!("skips the rest of the {} tier", e.tier),
                };
                let closed = if m.fail_closed {
                    " (fail-closed: a peer of an unknown type)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "    {} ({prio}): rule spec.{}[{}]{name} {act}{closed} — {effect}",
                    e.policy,
                    dir.key(),
                    m.rule
                );
                let policy = step.cluster_policies.iter().find(|p| p.key == e.policy);
                if let Some(src) = policy.and_then(|p| p.rule_source(dir, m.rule)) {
                    // Through the API shape, so fields come in the API's order (name, action,
                    // peers, ports) rather than alphabetically.
                    let yaml = serde_json::from_value::<RuleShape>(src.clone())
                        .ok()
                        .and_then(|r| excerpt(&r, "        "))
                        .or_else(|| excerpt(src, "        "));
                    out.push_str(&yaml.unwrap_or_default());
                }
            }
        }
    }
}

/// Policies after the priority that matched, which the evaluation never consulted.
fn render_not_reached(out: &mut String, list: &[(super::cluster::ClusterPolicyRef, Option<u32>)]) {
    let names: Vec<String> = list
        .iter()
        .map(|(p, prio)| match prio {
            Some(n) => format!("{p} (priority {n})"),
            None => format!("{p} (no priority)"),
        })
        .collect();
    if !names.is_empty() {
        let _ = writeln!(
            out,
            "    not reached (after the priority that matched): {}",
            names.join(", ")
        );
    }
}

fn render_tiered(
    out: &mut String,
    d: &DirectionDecision,
    t: &TierTrace,
    step: &Step,
    decision: &Decision,
) {
    let Some((peer, dst)) = ends(d, step, decision) else {
        return;
    };
    let (title, side) = title_side(d.direction);
    let _ = writeln!(
        out,
        "{title} at the {side} {}: {}",
        d.pod,
        answer(d.allowed, d.implementation_defined)
    );
    if t.hairpin {
        let _ = writeln!(
            out,
            "  the pod reaches its own pod IP: cluster-wide policies do not apply to it (hairpin), \
             NetworkPolicy alone decides"
        );
        render_np(out, d, step, peer, dst, decision.probe, false);
        return;
    }
    let _ = writeln!(out, "  Admin tier:");
    if t.admin.is_empty() {
        let _ = writeln!(
            out,
            "    no Admin-tier policy selects {} for {title}",
            d.pod
        );
    }
    render_evals(out, &t.admin, &t.conflicts, d.direction, step);
    render_not_reached(out, &t.admin_not_reached);
    let admin_final = t
        .admin
        .iter()
        .filter_map(|e| e.matched.as_ref())
        .any(|m| m.action != Action::Pass);
    let admin_pass = t
        .admin
        .iter()
        .filter_map(|e| e.matched.as_ref())
        .any(|m| m.action == Action::Pass);
    if admin_final && !admin_pass {
        let _ = writeln!(out, "  NetworkPolicy and Baseline tiers: not consulted");
    } else {
        let _ = writeln!(out, "  NetworkPolicy tier:");
        let mut np = String::new();
        render_np(&mut np, d, step, peer, dst, decision.probe, true);
        for line in np.lines() {
            let _ = writeln!(out, "  {line}");
        }
        if !d.selecting.is_empty() {
            let _ = writeln!(
                out,
                "  Baseline tier: not consulted (NetworkPolicy isolates the pod for {title})"
            );
        } else {
            let _ = writeln!(out, "  Baseline tier:");
            if t.baseline.is_empty() {
                let _ = writeln!(
                    out,
                    "    no Baseline-tier policy selects {} for {title}",
                    d.pod
                );
            }
            render_evals(out, &t.baseline, &t.conflicts, d.direction, step);
            render_not_reached(out, &t.baseline_not_reached);
        }
    }
    for c in &t.conflicts {
        let who: Vec<String> = c
            .policies
            .iter()
            .map(|(p, a)| format!("{p} ({})", action_word(*a, p.kind)))
            .collect();
        let prio = c
            .priority
            .map_or_else(String::new, |p| format!(" priority {p}"));
        let _ = writeln!(
            out,
            "  same priority, different actions: {} tier{prio}: {} — the API lets the \
             implementation apply any of them",
            c.tier,
            who.join(", ")
        );
    }
    let by = match t.decided_by {
        DecidedBy::Admin => "the Admin tier",
        DecidedBy::NetworkPolicy => "NetworkPolicy",
        DecidedBy::Baseline => "the Baseline tier",
        DecidedBy::Default => "the default (no tier decided: allowed)",
    };
    let _ = writeln!(out, "  decided by {by}");
}

/// The explanation `netpolc explain` prints.
/// One line per side saying which tier decided it, and with what: `egress of x/a: Admin tier,
/// ClusterNetworkPolicy/deny-x (priority 10) rule spec.egress[0] "to-y": Deny`. `None` when the
/// step has no cluster-wide policy (NetworkPolicy alone decided, as the features already say).
/// Reports put it in the details of the cells that went wrong (`CellReport::decided`).
pub fn tier_summary(decision: &Decision) -> Option<String> {
    use super::DecidedBy;
    let mut parts = Vec::new();
    for d in [&decision.egress, &decision.ingress] {
        let Some(t) = &d.tiers else { continue };
        let dir = d.direction.key();
        let matched = |list: &[super::ClusterEval]| {
            list.iter().rev().find_map(|e| {
                e.matched.as_ref().map(|m| {
                    format!(
                        "{} {}rule spec.{dir}[{}]{}: {}",
                        e.policy,
                        e.priority
                            .map_or_else(String::new, |p| format!("(priority {p}) ")),
                        m.rule,
                        m.name
                            .as_ref()
                            .map_or_else(String::new, |n| format!(" {n:?}")),
                        action_word(m.action, e.policy.kind)
                    )
                })
            })
        };
        let what = if t.hairpin {
            "hairpin (own pod IP): NetworkPolicy alone".to_string()
        } else {
            match t.decided_by {
                DecidedBy::Admin => format!(
                    "Admin tier, {}",
                    matched(&t.admin).unwrap_or_else(|| "implementation-defined".into())
                ),
                DecidedBy::Baseline => format!(
                    "Baseline tier, {}",
                    matched(&t.baseline).unwrap_or_else(|| "implementation-defined".into())
                ),
                DecidedBy::NetworkPolicy => match matched(&t.admin) {
                    Some(pass) => format!("NetworkPolicy, after the Admin tier's {pass}"),
                    None => "NetworkPolicy".into(),
                },
                DecidedBy::Default => match matched(&t.baseline).or_else(|| matched(&t.admin)) {
                    Some(pass) => format!("default allow, after {pass}"),
                    None => "default allow".into(),
                },
            }
        };
        parts.push(format!("{dir} of {}: {what}", d.pod));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub fn render(decision: &Decision, step: &Step) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} -> {} on {} (step {}): {}",
        decision.from,
        decision.to,
        decision.probe,
        step.name,
        answer(decision.allowed, decision.implementation_defined)
    );
    let _ = writeln!(
        out,
        "a connection needs egress allowed at the source AND ingress allowed at the destination; \
         policies add up (one admitting rule is enough)"
    );
    if !step.cluster_policies.is_empty() {
        let _ = writeln!(
            out,
            "cluster-wide policies: per direction the Admin tier (by priority, then rule order; \
             first match decides), then NetworkPolicy, then the Baseline tier for pods no \
             NetworkPolicy isolates, then allow"
        );
    }
    out.push('\n');
    render_direction(&mut out, &decision.egress, step, decision);
    out.push('\n');
    render_direction(&mut out, &decision.ingress, step, decision);
    out
}
