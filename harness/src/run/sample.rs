//! Stratified sampling of a step's cells (`--sample N`), for clusters where probing every cell of
//! a 100-pod matrix takes too long.
//!
//! A uniform sample of a big matrix mostly hits the common case (say "denied by the namespace's
//! default deny") and can miss the one rule that matters. Cells are therefore grouped by their
//! *decision path* — the oracle's reasons from [`Oracle::decide`]: for each side (egress at the
//! source, ingress at the destination) whether it is isolated, and by which policies, and which
//! rules, peers and ports admitted the connection — and the sample holds, before anything else:
//! one cell of every path, and one cell from and to every pod. The rest, up to `N`, is drawn
//! uniformly from what is left. Everything is seeded, so a sample is reproduced exactly by its
//! seed (recorded in the report).

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::{Direction, DirectionDecision, Oracle};

use super::PlannedCell;

/// `--sample N --sample-seed S`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleOptions {
    /// Cells wanted per step (a step probes more when covering every pod and path needs more).
    pub cells: usize,
    pub seed: u64,
}

/// The cells a step probes: indices into its plan, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub indices: Vec<usize>,
    /// Distinct decision paths in the plan (each has at least one cell in the sample).
    pub strata: usize,
    /// The seed this step's sample was drawn with.
    pub seed: u64,
}

/// A small, fast, seedable generator (SplitMix64): the sample must be reproducible from its seed
/// on every platform, which rules out the process's random state.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0), by rejection so no value is favoured.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return (v % n) as usize;
            }
        }
    }
}

/// The seed of one step's sample: the run's seed mixed with the scenario's and step's names, so
/// steps draw different samples and adding a scenario does not change the others'.
pub fn step_seed(run_seed: u64, scenario: &str, step: &str) -> u64 {
    // FNV-1a over the names, then one SplitMix round with the run's seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in scenario.bytes().chain([0xff]).chain(step.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    SplitMix::new(run_seed ^ h).next_u64()
}

/// The decision path of one cell, as a comparable key.
pub fn decision_path(oracle: &Oracle<'_>, cell: &PlannedCell) -> String {
    let r = &cell.request;
    match oracle.decide(&r.from, &r.to, r.probe) {
        None => format!("{} unknown", r.probe),
        Some(d) => format!(
            "{} {} egress[{}] ingress[{}]",
            r.probe,
            if d.allowed { "allowed" } else { "denied" },
            side(oracle, &d.egress, cell),
            side(oracle, &d.ingress, cell)
        ),
    }
}

fn side(oracle: &Oracle<'_>, s: &DirectionDecision, cell: &PlannedCell) -> String {
    if s.selecting.is_empty() {
        return "not isolated".into();
    }
    if s.allowed {
        let rules: Vec<String> = s
            .allowed_by
            .iter()
            .map(|m| {
                format!(
                    "{} rule {} peer {} port {}",
                    m.policy,
                    m.rule,
                    m.peer.map_or("*".into(), |p| p.to_string()),
                    m.port.map_or("*".into(), |p| p.to_string())
                )
            })
            .collect();
        format!("allowed by {}", rules.join(", "))
    } else {
        let by: Vec<String> = s.selecting.iter().map(|p| p.to_string()).collect();
        let misses = near_misses(oracle, s, cell);
        format!("isolated by {}; {}", by.join(", "), misses.join(", "))
    }
}

/// For a denying side, how each rule of the selecting policies missed: its peers, its ports, or
/// both. A dataplane that mishandles the part that missed leaks exactly the cells of that path.
fn near_misses(oracle: &Oracle<'_>, s: &DirectionDecision, cell: &PlannedCell) -> Vec<String> {
    let model = oracle.model();
    let r = &cell.request;
    let (Some(src), Some(dst)) = (model.pod(&r.from), model.pod(&r.to)) else {
        return Vec::new();
    };
    let peer_pod = match s.direction {
        Direction::Egress => dst,
        Direction::Ingress => src,
    };
    let mut out = Vec::new();
    for key in &s.selecting {
        let Some(pol) = oracle.policies().iter().find(|p| &p.key == key) else {
            continue;
        };
        for (k, rule) in pol.rules(s.direction).unwrap_or(&[]).iter().enumerate() {
            let port_ok = rule.ports.as_ref().is_none_or(|ports| {
                ports.iter().any(|pm| {
                    pm.matches(r.probe.protocol, r.probe.port, |n, pr| {
                        dst.named_port(n, pr)
                    })
                })
            });
            let peer_ok = rule.peers.as_ref().is_none_or(|peers| {
                peers
                    .iter()
                    .any(|p| crate::policy::oracle::peer_matches(model, p, peer_pod))
            });
            let how = match (peer_ok, port_ok) {
                (true, false) => "port missed",
                (false, true) => "peer missed",
                _ => "both missed",
            };
            out.push(format!("{key} rule {k} {how}"));
        }
    }
    out
}

/// Draws a step's sample: every decision path, every source and every destination pod at least
/// once, then uniformly up to `opts.cells`. A plan no larger than `opts.cells` is kept whole.
pub fn stratified(plan: &[PlannedCell], oracle: &Oracle<'_>, cells: usize, seed: u64) -> Sample {
    let paths: Vec<String> = plan.iter().map(|c| decision_path(oracle, c)).collect();
    let strata: BTreeMap<&str, Vec<usize>> = paths.iter().enumerate().fold(
        BTreeMap::new(),
        |mut m: BTreeMap<&str, Vec<usize>>, (i, p)| {
            m.entry(p.as_str()).or_default().push(i);
            m
        },
    );
    if plan.len() <= cells {
        return Sample {
            indices: (0..plan.len()).collect(),
            strata: strata.len(),
            seed,
        };
    }
    let mut rng = SplitMix::new(seed);
    let mut chosen: BTreeSet<usize> = BTreeSet::new();
    for members in strata.values() {
        chosen.insert(members[rng.below(members.len())]);
    }
    // Every source, then every destination, at least once.
    let mut by_from: BTreeMap<&crate::model::PodRef, Vec<usize>> = BTreeMap::new();
    let mut by_to: BTreeMap<&crate::model::PodRef, Vec<usize>> = BTreeMap::new();
    for (i, c) in plan.iter().enumerate() {
        by_from.entry(&c.request.from).or_default().push(i);
        by_to.entry(&c.request.to).or_default().push(i);
    }
    let covered_from: BTreeSet<&crate::model::PodRef> =
        chosen.iter().map(|&i| &plan[i].request.from).collect();
    for (pod, members) in &by_from {
        if !covered_from.contains(pod) {
            chosen.insert(members[rng.below(members.len())]);
        }
    }
    let covered_to: BTreeSet<&crate::model::PodRef> =
        chosen.iter().map(|&i| &plan[i].request.to).collect();
    for (pod, members) in &by_to {
        if !covered_to.contains(pod) {
            chosen.insert(members[rng.below(members.len())]);
        }
    }
    // The rest uniformly: a partial Fisher–Yates shuffle of what is left.
    if chosen.len() < cells {
        let mut rest: Vec<usize> = (0..plan.len()).filter(|i| !chosen.contains(i)).collect();
        let want = cells - chosen.len();
        for k in 0..want.min(rest.len()) {
            let j = k + rng.below(rest.len() - k);
            rest.swap(k, j);
            chosen.insert(rest[k]);
        }
    }
    Sample {
        indices: chosen.into_iter().collect(),
        strata: strata.len(),
        seed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_uniform_enough_and_reproducible() {
        let mut a = SplitMix::new(7);
        let mut b = SplitMix::new(7);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SplitMix::new(8).next_u64(), xs[0]);
        let mut counts = [0u32; 4];
        let mut r = SplitMix::new(1);
        for _ in 0..4000 {
            counts[r.below(4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..1100).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn step_seeds_differ_by_name_and_run_seed() {
        let s = step_seed(1, "a", "b");
        assert_eq!(s, step_seed(1, "a", "b"));
        assert_ne!(s, step_seed(2, "a", "b"));
        assert_ne!(s, step_seed(1, "a", "c"));
        // The separator keeps ("ab", "") and ("a", "b") apart.
        assert_ne!(step_seed(1, "ab", ""), step_seed(1, "a", "b"));
    }
}
