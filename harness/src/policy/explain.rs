//! Human-readable explanations of oracle decisions, quoting the deciding rule, peer and port.

use std::fmt::Write as _;

use crate::scenario::Step;

use super::compile::{CompiledPolicy, Direction};
use super::oracle::{Decision, DirectionDecision, RuleMatch};

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

fn render_direction(out: &mut String, d: &DirectionDecision, step: &Step) {
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
            "  no rule of these policies admits this connection (no peer and port both match), so it is denied"
        );
        for key in &d.selecting {
            if let Some(p) = step.policies.iter().find(|p| &p.key == key) {
                let n = p.rules(d.direction).map(<[_]>::len).unwrap_or(0);
                let _ = writeln!(
                    out,
                    "    {key}: {n} {title} rule(s){}",
                    if n == 0 {
                        " — isolates and allows nothing"
                    } else {
                        ""
                    }
                );
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
    render_direction(&mut out, &decision.egress, step);
    out.push('\n');
    render_direction(&mut out, &decision.ingress, step);
    out
}
