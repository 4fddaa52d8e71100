//! Human-readable explanations of oracle decisions, quoting the deciding rule, peer and port.

use std::fmt::Write as _;

use crate::scenario::Step;

use super::compile::{CompiledPolicy, Direction};
use super::oracle::{Decision, DirectionDecision, RuleMatch, peer_matches};
use crate::model::{Pod, Probe};

fn word(allowed: bool) -> &'static str {
    if allowed { "ALLOWED" } else { "DENIED" }
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

fn render_direction(out: &mut String, d: &DirectionDecision, step: &Step, decision: &Decision) {
    // The other end of the connection, and the destination whose named ports count.
    let (peer_ref, dst_ref) = match d.direction {
        Direction::Egress => (&decision.to, &decision.to),
        Direction::Ingress => (&decision.from, &decision.to),
    };
    let (Some(peer), Some(dst)) = (step.model.pod(peer_ref), step.model.pod(dst_ref)) else {
        return;
    };
    let probe = decision.probe;
    let (title, side) = match d.direction {
        Direction::Egress => ("egress", "source"),
        Direction::Ingress => ("ingress", "destination"),
    };
    let _ = writeln!(out, "{title} at the {side} {}: {}", d.pod, word(d.allowed));
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

/// The explanation `netpolc explain` prints.
pub fn render(decision: &Decision, step: &Step) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} -> {} on {} (step {}): {}",
        decision.from,
        decision.to,
        decision.probe,
        step.name,
        word(decision.allowed)
    );
    let _ = writeln!(
        out,
        "a connection needs egress allowed at the source AND ingress allowed at the destination; \
         policies add up (one admitting rule is enough)"
    );
    out.push('\n');
    render_direction(&mut out, &decision.egress, step, decision);
    out.push('\n');
    render_direction(&mut out, &decision.ingress, step, decision);
    out
}
