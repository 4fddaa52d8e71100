//! What-if: the cells a candidate policy change flips, each with the rule that decides it, so a
//! change can be reviewed before it is applied.
//!
//! The state is one step (a dump, manifests or a scenario step); the change adds policies
//! (replacing any of the same namespace/name, as `kubectl apply` does) and deletes policies by
//! name. Pods are grouped over the policies before *and* after, so every class pair flips as a
//! whole: the answer for a 200-pod cluster is a handful of lines, and the JSON still lists every
//! flipped pod pair. The flipped cells are exactly the symmetric difference of the two oracle
//! matrices (tested on shipped scenarios and random changes).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::analysis::Analysis;
use super::group::{Grouping, Owner};
use crate::model::{Model, PodRef, Probe};
use crate::policy::{CompiledPolicy, Decision, DirectionDecision, Oracle, PolicyRef, RuleMatch};

/// The policies after the change. Errors name what cannot be done (deleting a policy the state
/// does not have; adding one name twice).
pub fn apply_change(
    before: &[CompiledPolicy],
    added: &[CompiledPolicy],
    deleted: &[PolicyRef],
) -> Result<(Vec<CompiledPolicy>, Vec<PolicyRef>), String> {
    let mut map: BTreeMap<PolicyRef, CompiledPolicy> =
        before.iter().map(|p| (p.key.clone(), p.clone())).collect();
    let mut problems = Vec::new();
    for d in deleted {
        if map.remove(d).is_none() {
            problems.push(format!("--delete {d}: the state has no NetworkPolicy {d}"));
        }
    }
    let mut seen = BTreeSet::new();
    let mut replaced = Vec::new();
    for p in added {
        if !seen.insert(p.key.clone()) {
            problems.push(format!("--add: NetworkPolicy {} is given twice", p.key));
            continue;
        }
        if deleted.contains(&p.key) {
            problems.push(format!("NetworkPolicy {} is both added and deleted", p.key));
            continue;
        }
        if map.insert(p.key.clone(), p.clone()).is_some() {
            replaced.push(p.key.clone());
        }
    }
    if problems.is_empty() {
        Ok((map.into_values().collect(), replaced))
    } else {
        Err(problems.join("; "))
    }
}

/// One class pair whose answer flips.
#[derive(Debug, Clone, Serialize)]
pub struct Flip {
    pub from_class: String,
    pub to_class: String,
    pub before: bool,
    pub after: bool,
    /// Every flipped pod pair (`from`, `to`).
    pub cells: Vec<(PodRef, PodRef)>,
    /// The deciding rule, in one sentence per side that changed.
    pub reason: String,
    /// The oracle's full answers for a representative pair, before and after.
    pub decision_before: Decision,
    pub decision_after: Decision,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeFlips {
    pub port: u16,
    pub protocol: crate::model::Protocol,
    pub flipped_cells: usize,
    pub flips: Vec<Flip>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WhatIfReport {
    pub source: String,
    pub step: String,
    pub added: Vec<String>,
    pub replaced: Vec<String>,
    pub deleted: Vec<String>,
    pub flipped_cells: usize,
    pub probes: Vec<ProbeFlips>,
}

/// Computes the flips of going from `before` to `after` on `model`.
#[allow(clippy::too_many_arguments)]
pub fn compute(
    source: &str,
    step: &str,
    model: &Model,
    before: &[CompiledPolicy],
    after: &[CompiledPolicy],
    owners: &BTreeMap<PodRef, Owner>,
    probes: &[Probe],
    change: (&[PolicyRef], &[PolicyRef], &[PolicyRef]),
) -> WhatIfReport {
    let (added, replaced, deleted) = change;
    let grouping = Grouping::for_policies(model, &[before, after], owners);
    let a0 = Analysis::with_grouping(model, before, grouping.clone(), probes);
    let a1 = Analysis::with_grouping(model, after, grouping, probes);
    let o0 = Oracle::new(model, before);
    let o1 = Oracle::new(model, after);
    let classes = &a0.grouping.classes;
    let mut out = Vec::new();
    let mut total = 0;
    for (pi, probe) in a0.probes.iter().enumerate() {
        let mut flips = Vec::new();
        let mut n = 0;
        for (si, s) in classes.iter().enumerate() {
            for (di, d) in classes.iter().enumerate() {
                let (b, a) = (a0.allowed(pi, si, di), a1.allowed(pi, si, di));
                if b == a {
                    continue;
                }
                let cells: Vec<(PodRef, PodRef)> = s
                    .pods
                    .iter()
                    .flat_map(|f| d.pods.iter().map(move |t| (f.clone(), t.clone())))
                    .collect();
                n += cells.len();
                let (from, to) = (s.representative(), d.representative());
                let (Some(db), Some(da)) =
                    (o0.decide(from, to, *probe), o1.decide(from, to, *probe))
                else {
                    continue;
                };
                flips.push(Flip {
                    from_class: s.name.clone(),
                    to_class: d.name.clone(),
                    before: b,
                    after: a,
                    cells,
                    reason: reason(&db, &da, deleted),
                    decision_before: db,
                    decision_after: da,
                });
            }
        }
        total += n;
        out.push(ProbeFlips {
            port: probe.port,
            protocol: probe.protocol,
            flipped_cells: n,
            flips,
        });
    }
    let strs = |v: &[PolicyRef]| v.iter().map(|p| p.to_string()).collect();
    WhatIfReport {
        source: source.to_string(),
        step: step.to_string(),
        added: strs(added),
        replaced: strs(replaced),
        deleted: strs(deleted),
        flipped_cells: total,
        probes: out,
    }
}

fn rule_ref(m: &RuleMatch, dir: &str, peers: &str) -> String {
    let peer = match m.peer {
        Some(i) => format!("peer spec.{dir}[{}].{peers}[{i}]", m.rule),
        None => "any peer".into(),
    };
    let port = match m.port {
        Some(i) => format!("port spec.{dir}[{}].ports[{i}]", m.rule),
        None => "any port".into(),
    };
    format!("{} spec.{dir}[{}] ({peer}, {port})", m.policy, m.rule)
}

fn side(b: &DirectionDecision, a: &DirectionDecision, deleted: &[PolicyRef]) -> Option<String> {
    if b.allowed == a.allowed {
        return None;
    }
    let dir = b.direction.key();
    let peers = b.direction.peers_key();
    let names = |v: &[PolicyRef]| {
        v.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(if a.allowed {
        match a.allowed_by.first() {
            None => format!(
                "{dir} at {} is no longer isolated (no policy selects it any more)",
                a.pod
            ),
            Some(m) => format!(
                "{dir} at {} is now allowed by {}",
                a.pod,
                rule_ref(m, dir, peers)
            ),
        }
    } else if b.selecting.is_empty() {
        format!(
            "{dir} at {} is now isolated by {}, and no rule of {} admits this connection",
            a.pod,
            names(&a.selecting),
            if a.selecting.len() == 1 { "it" } else { "them" }
        )
    } else {
        let gone: Vec<String> = b
            .allowed_by
            .iter()
            .map(|m| {
                let how = if deleted.contains(&m.policy) {
                    "deleted"
                } else {
                    "changed"
                };
                format!("{} ({how})", rule_ref(m, dir, peers))
            })
            .collect();
        format!(
            "{dir} at {} was allowed by {}; no rule of {} admits it now",
            a.pod,
            gone.join(", "),
            if a.selecting.is_empty() {
                "any policy".to_string()
            } else {
                names(&a.selecting)
            }
        )
    })
}

/// The deciding rule of a flip, one clause per side (egress at the source, ingress at the
/// destination) whose answer changed.
pub fn reason(before: &Decision, after: &Decision, deleted: &[PolicyRef]) -> String {
    [
        side(&before.egress, &after.egress, deleted),
        side(&before.ingress, &after.ingress, deleted),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("; ")
}

fn word(b: bool) -> &'static str {
    if b { "allowed" } else { "denied" }
}

/// The terminal rendering.
pub fn render_text(r: &WhatIfReport) -> String {
    let mut out = String::new();
    let _ = write!(out, "what-if on {} (step {})", r.source, r.step);
    let mut parts = Vec::new();
    if !r.added.is_empty() {
        parts.push(format!("adds {}", r.added.join(", ")));
    }
    if !r.replaced.is_empty() {
        parts.push(format!("replaces {}", r.replaced.join(", ")));
    }
    if !r.deleted.is_empty() {
        parts.push(format!("deletes {}", r.deleted.join(", ")));
    }
    let _ = writeln!(out, ": {}", parts.join("; "));
    for p in &r.probes {
        if p.flips.is_empty() {
            let _ = writeln!(out, "{}/{}: no cell flips", p.port, p.protocol);
            continue;
        }
        let _ = writeln!(
            out,
            "{}/{}: {} in {}",
            p.port,
            p.protocol,
            cells_flip(p.flipped_cells),
            if p.flips.len() == 1 {
                "1 group".to_string()
            } else {
                format!("{} groups", p.flips.len())
            }
        );
        for f in &p.flips {
            let pods_from = f.cells.iter().map(|c| &c.0).collect::<BTreeSet<_>>().len();
            let pods_to = f.cells.iter().map(|c| &c.1).collect::<BTreeSet<_>>().len();
            let _ = writeln!(
                out,
                "  {} -> {}  {} -> {}  ({pods_from} x {pods_to} pods = {})\n      {}",
                word(f.before),
                word(f.after),
                f.from_class,
                f.to_class,
                if f.cells.len() == 1 {
                    "1 cell".to_string()
                } else {
                    format!("{} cells", f.cells.len())
                },
                f.reason
            );
        }
    }
    let _ = writeln!(
        out,
        "{} in total; every other cell keeps its answer",
        cells_flip(r.flipped_cells)
    );
    out
}

fn cells_flip(n: usize) -> String {
    if n == 1 {
        "1 cell flips".into()
    } else {
        format!("{n} cells flip")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Pods, load_str, load_str_with};

    const STATE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec: {containers: [{name: c, image: httpd, ports: [{containerPort: 80}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend, namespace: shop}
spec:
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec: {containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]}
"#;

    const POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-allow-frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {app: backend}}
  ingress: [{from: [{podSelector: {matchLabels: {app: frontend}}}], ports: [{port: 80}]}]
"#;

    #[test]
    fn adding_the_seed_policy_flips_exactly_the_denied_cells_with_their_rule() {
        let state = load_str(STATE, "state.yaml").expect("state");
        let step = &state.scenarios[0].steps[0];
        let add = load_str_with(POLICY, "add.yaml", Pods::Optional).expect("policy");
        let added = &add.scenarios[0].steps[0].policies;
        let (after, replaced) = apply_change(&step.policies, added, &[]).expect("change");
        assert!(replaced.is_empty());
        let keys: Vec<PolicyRef> = added.iter().map(|p| p.key.clone()).collect();
        let r = compute(
            "state.yaml",
            "initial",
            &step.model,
            &step.policies,
            &after,
            &BTreeMap::new(),
            &[],
            (&keys, &[], &[]),
        );
        // client and backend (2 pods) lose access to backend: 1x2 + 2x2 = 6 cells.
        assert_eq!(r.flipped_cells, 6);
        let p = &r.probes[0];
        let groups: Vec<(&str, &str)> = p
            .flips
            .iter()
            .map(|f| (f.from_class.as_str(), f.to_class.as_str()))
            .collect();
        assert_eq!(
            groups,
            [
                ("shop/backend", "shop/backend"),
                ("shop/client", "shop/backend")
            ]
        );
        assert!(p.flips.iter().all(|f| f.before && !f.after));
        assert_eq!(
            p.flips[1].reason,
            "ingress at shop/backend-0 is now isolated by shop/backend-allow-frontend, and no rule of it admits this connection"
        );
        // Deleting it again flips them back, naming the rule that now allows.
        let (back, _) = apply_change(&after, &[], &keys).expect("delete");
        let r2 = compute(
            "s",
            "i",
            &step.model,
            &after,
            &back,
            &BTreeMap::new(),
            &[],
            (&[], &[], &keys),
        );
        assert_eq!(r2.flipped_cells, 6);
        assert!(r2.probes[0].flips[0].reason.contains("no longer isolated"));
    }

    #[test]
    fn a_narrower_replacement_names_the_rule_that_went() {
        let state = load_str(&format!("{STATE}---{POLICY}"), "state.yaml").expect("state");
        let step = &state.scenarios[0].steps[0];
        let narrower = POLICY.replace("ports: [{port: 80}]", "ports: [{port: 8080}]");
        let add = load_str_with(&narrower, "add.yaml", Pods::Optional).expect("policy");
        let added = &add.scenarios[0].steps[0].policies;
        let (after, replaced) = apply_change(&step.policies, added, &[]).expect("change");
        assert_eq!(replaced.len(), 1);
        let r = compute(
            "s",
            "i",
            &step.model,
            &step.policies,
            &after,
            &BTreeMap::new(),
            &[],
            (&[], &replaced, &[]),
        );
        let f = &r.probes[0].flips[0];
        assert_eq!(f.from_class, "shop/frontend");
        assert!(
            f.reason.contains("was allowed by shop/backend-allow-frontend spec.ingress[0] (peer spec.ingress[0].from[0], port spec.ingress[0].ports[0]) (changed)"),
            "{}",
            f.reason
        );
    }

    #[test]
    fn impossible_changes_are_refused() {
        let state = load_str(&format!("{STATE}---{POLICY}"), "state.yaml").expect("state");
        let step = &state.scenarios[0].steps[0];
        let missing = PolicyRef {
            namespace: "shop".into(),
            name: "nope".into(),
        };
        let e = apply_change(&step.policies, &[], &[missing]).expect_err("missing");
        assert!(
            e.contains("the state has no NetworkPolicy shop/nope"),
            "{e}"
        );
        let twice = [step.policies[0].clone(), step.policies[0].clone()];
        assert!(apply_change(&[], &twice, &[]).is_err());
    }
}
