//! `netpolc diff`: a cell-by-cell comparison of two runs (two CNIs, two versions of one CNI),
//! grouped by the NetworkPolicy feature the differing cells exercise, so "calico and cilium
//! disagree on egress to ipBlock" reads off the output instead of a 300-cell matrix.
//!
//! Cells are matched by scenario, step, probe mode (`via`), source, destination, port and protocol
//! (like with like: a cell probed through a Service is compared only with the same cell probed
//! the same way; reports from before probe modes read as `pod-ip`). Two cells differ
//! when their expected value, observed value or outcome differ (a cell present in one run only
//! differs too). Connectivity (refused vs timeout) and attempts are shown but not compared: a
//! dropping and a rejecting dataplane are equally conformant.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::html::{expected_word, observed_word, outcome_str};
use super::model::{CellReport, RunReport, ScenarioReport, StepReport, Summary, Verdict};
use crate::model::{PodRef, Protocol};
use crate::probe::{Connectivity, Outcome};
use crate::service::ProbeMode;

/// Why a report file could not be used; both name the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a netpolc report.json: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Reads a `report.json` written by `netpolc run`.
pub fn load(path: &Path) -> Result<RunReport, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LoadError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// What a differing cell exercises. Derived by [`cell_features`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    Tcp,
    Udp,
    Sctp,
    Ingress,
    Egress,
    DefaultDeny,
    NamespaceSelector,
    MatchExpressions,
    IpBlock,
    NamedPort,
    PortRange,
    SelfConnection,
}

impl Feature {
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Tcp => "tcp",
            Feature::Udp => "udp",
            Feature::Sctp => "sctp",
            Feature::Ingress => "ingress",
            Feature::Egress => "egress",
            Feature::DefaultDeny => "default-deny",
            Feature::NamespaceSelector => "namespaceSelector",
            Feature::MatchExpressions => "matchExpressions",
            Feature::IpBlock => "ipBlock",
            Feature::NamedPort => "named-port",
            Feature::PortRange => "endPort",
            Feature::SelfConnection => "self-connection",
        }
    }
}

impl std::fmt::Display for Feature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The features a cell exercises — a documented heuristic, as the report does not record which
/// policy constructs a cell depends on:
/// - the probe's protocol (`tcp`, `udp`, `sctp`), always;
/// - `self-connection` when source and destination are the same pod;
/// - from the oracle's explanation (`CellReport::explanation`, the text of `netpolc explain`):
///   `ingress` / `egress` when a policy selects the destination for ingress / the source for
///   egress; `default-deny` when a selecting policy has no rule of that direction; and the
///   policy keys quoted in the deciding rule: `ipBlock`, `namespaceSelector`,
///   `matchExpressions`, `endPort`, and `named-port` for a `port:` that is a name;
/// - from the scenario name, source path and step name (lower-cased): `egress`, `ingress`,
///   `ipblock`/`cidr`, `named-port`, `endport`/`port-range`, `deny-all`/`default-deny`,
///   `namespace-selector`, `match-expressions`.
pub fn cell_features(
    scenario: &ScenarioReport,
    step: &StepReport,
    cell: &CellReport,
) -> BTreeSet<Feature> {
    let mut f = BTreeSet::new();
    f.insert(match cell.protocol {
        Protocol::Tcp => Feature::Tcp,
        Protocol::Udp => Feature::Udp,
        Protocol::Sctp => Feature::Sctp,
    });
    if cell.from == cell.to {
        f.insert(Feature::SelfConnection);
    }
    if let Some(ex) = &cell.explanation {
        if ex.contains("selected for ingress by") {
            f.insert(Feature::Ingress);
        }
        if ex.contains("selected for egress by") {
            f.insert(Feature::Egress);
        }
        if ex.contains("isolates and allows nothing") {
            f.insert(Feature::DefaultDeny);
        }
        for line in ex.lines().map(str::trim_start) {
            let line = line.trim_start_matches("- ");
            if line.starts_with("ipBlock:") {
                f.insert(Feature::IpBlock);
            } else if line.starts_with("namespaceSelector:") {
                f.insert(Feature::NamespaceSelector);
            } else if line.starts_with("matchExpressions:") {
                f.insert(Feature::MatchExpressions);
            } else if line.starts_with("endPort:") {
                f.insert(Feature::PortRange);
            } else if let Some(v) = line.strip_prefix("port:") {
                let v = v.trim().trim_matches(['"', '\'']);
                if !v.is_empty() && !v.starts_with("any") && v.parse::<u32>().is_err() {
                    f.insert(Feature::NamedPort);
                }
            }
        }
    }
    let names = format!("{} {} {}", scenario.name, scenario.source, step.name).to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| names.contains(w));
    for (words, feature) in [
        (&["egress"][..], Feature::Egress),
        (&["ingress"][..], Feature::Ingress),
        (&["ipblock", "cidr"][..], Feature::IpBlock),
        (
            &["named-port", "named_port", "namedport"][..],
            Feature::NamedPort,
        ),
        (
            &["endport", "port-range", "port_range"][..],
            Feature::PortRange,
        ),
        (&["deny-all", "default-deny"][..], Feature::DefaultDeny),
        (
            &["namespace-selector", "namespaceselector"][..],
            Feature::NamespaceSelector,
        ),
        (
            &["match-expressions", "matchexpressions"][..],
            Feature::MatchExpressions,
        ),
    ] {
        if has(words) {
            f.insert(feature);
        }
    }
    f
}

/// One side of a differing cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellSide {
    pub expected: Option<bool>,
    pub observed: Option<bool>,
    pub outcome: Outcome,
    pub connectivity: Connectivity,
    pub attempts: u32,
}

impl CellSide {
    fn of(c: &CellReport) -> Self {
        CellSide {
            expected: c.expected,
            observed: c.observed,
            outcome: c.outcome,
            connectivity: c.connectivity,
            attempts: c.attempts,
        }
    }

    fn same_as(&self, other: &CellSide) -> bool {
        (self.expected, self.observed, self.outcome)
            == (other.expected, other.observed, other.outcome)
    }

    fn short(&self) -> String {
        format!(
            "{} ({})",
            outcome_str(self.outcome),
            observed_word(self.observed)
        )
    }
}

/// A cell whose state differs between the runs (`None`: the run has no such cell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellDiff {
    pub scenario: String,
    pub step: String,
    pub from: PodRef,
    pub to: PodRef,
    pub port: u16,
    pub protocol: Protocol,
    /// How both sides probed the cell: cells are compared like with like, a service-ip cell only
    /// with the same cell probed via service-ip.
    pub via: ProbeMode,
    pub features: Vec<String>,
    pub a: Option<CellSide>,
    pub b: Option<CellSide>,
}

/// What identifies a run in the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunInfo {
    pub path: String,
    pub provider: String,
    pub cni: String,
    pub verdict: Verdict,
    pub harness_version: String,
    pub summary: Summary,
}

impl RunInfo {
    fn of(path: &str, r: &RunReport) -> Self {
        RunInfo {
            path: path.to_string(),
            provider: r.provider.clone(),
            cni: r.cni.clone(),
            verdict: r.verdict,
            harness_version: r.harness_version.clone(),
            summary: r.summary.clone(),
        }
    }
}

/// The comparison `netpolc diff --format json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunDiff {
    pub a: RunInfo,
    pub b: RunInfo,
    pub identical: bool,
    /// Distinct cells across both runs.
    pub cells_compared: usize,
    pub differing: usize,
    /// Differing cells per feature (a cell counts once for each feature it exercises).
    pub features: BTreeMap<String, usize>,
    /// Sorted by scenario, step, probe, source, destination.
    pub differences: Vec<CellDiff>,
}

type Key = (String, String, ProbeMode, u16, Protocol, PodRef, PodRef);

fn index(r: &RunReport) -> BTreeMap<Key, (&ScenarioReport, &StepReport, &CellReport)> {
    let mut out = BTreeMap::new();
    for sc in &r.scenarios {
        for st in &sc.steps {
            for c in &st.cells {
                // A repeated cell keeps its first occurrence.
                out.entry((
                    sc.name.clone(),
                    st.name.clone(),
                    c.via,
                    c.port,
                    c.protocol,
                    c.from.clone(),
                    c.to.clone(),
                ))
                .or_insert((sc, st, c));
            }
        }
    }
    out
}

/// Compares two runs cell by cell.
pub fn diff(a_path: &str, a: &RunReport, b_path: &str, b: &RunReport) -> RunDiff {
    let (ia, ib) = (index(a), index(b));
    let keys: BTreeSet<&Key> = ia.keys().chain(ib.keys()).collect();
    let mut differences = Vec::new();
    let mut features: BTreeMap<String, usize> = BTreeMap::new();
    for key in &keys {
        let (ca, cb) = (ia.get(*key), ib.get(*key));
        let (sa, sb) = (
            ca.map(|(_, _, c)| CellSide::of(c)),
            cb.map(|(_, _, c)| CellSide::of(c)),
        );
        if let (Some(x), Some(y)) = (&sa, &sb)
            && x.same_as(y)
        {
            continue;
        }
        // Features from both sides: one run may carry an explanation the other lacks.
        let mut fs = BTreeSet::new();
        for (sc, st, c) in ca.into_iter().chain(cb) {
            fs.extend(cell_features(sc, st, c));
        }
        let fs: Vec<String> = fs.iter().map(|f| f.as_str().to_string()).collect();
        for f in &fs {
            *features.entry(f.clone()).or_default() += 1;
        }
        let (scenario, step, via, port, protocol, from, to) = (*key).clone();
        differences.push(CellDiff {
            scenario,
            step,
            from,
            to,
            port,
            protocol,
            via,
            features: fs,
            a: sa,
            b: sb,
        });
    }
    RunDiff {
        a: RunInfo::of(a_path, a),
        b: RunInfo::of(b_path, b),
        identical: differences.is_empty(),
        cells_compared: keys.len(),
        differing: differences.len(),
        features,
        differences,
    }
}

/// Left-aligned columns separated by two spaces, trailing spaces trimmed.
fn columns(rows: &[Vec<String>], indent: &str) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = indent.to_string();
        for (i, cell) in r.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            line.push_str(cell);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

impl RunDiff {
    /// The human-readable comparison: the two runs, the counts per feature, then the differing
    /// cells grouped by the set of features they exercise.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        for (label, r) in [("A", &self.a), ("B", &self.b)] {
            let _ = writeln!(
                out,
                "{label}: {} ({}/{}, verdict {}, {} cells)",
                r.path, r.provider, r.cni, r.verdict, r.summary.cells
            );
        }
        if self.identical {
            let _ = writeln!(
                out,
                "identical: all {} cells agree (expected, observed and outcome)",
                self.cells_compared
            );
            return out;
        }
        let _ = writeln!(
            out,
            "{} of {} cells differ",
            self.differing, self.cells_compared
        );
        let per_feature: Vec<String> = self
            .features
            .iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect();
        let _ = writeln!(out, "by feature: {}", per_feature.join(", "));

        let mut groups: BTreeMap<&[String], Vec<&CellDiff>> = BTreeMap::new();
        for d in &self.differences {
            groups.entry(d.features.as_slice()).or_default().push(d);
        }
        for (fs, cells) in groups {
            let _ = writeln!(out, "\n[{}] {} cell(s)", fs.join(", "), cells.len());
            let mut rows = vec![vec![
                "scenario".to_string(),
                "step".to_string(),
                "probe".to_string(),
                "from -> to".to_string(),
                "expected".to_string(),
                "A".to_string(),
                "B".to_string(),
            ]];
            for d in cells {
                let expected = match (&d.a, &d.b) {
                    (Some(x), Some(y)) if x.expected != y.expected => format!(
                        "A {} / B {}",
                        expected_word(x.expected),
                        expected_word(y.expected)
                    ),
                    (Some(x), _) | (None, Some(x)) => expected_word(x.expected).to_string(),
                    (None, None) => String::new(),
                };
                let side =
                    |s: &Option<CellSide>| s.as_ref().map_or("absent".into(), CellSide::short);
                rows.push(vec![
                    d.scenario.clone(),
                    d.step.clone(),
                    crate::report::terminal::probe_label(
                        crate::model::Probe::new(d.port, d.protocol),
                        d.via,
                    ),
                    format!("{} -> {}", d.from, d.to),
                    expected,
                    side(&d.a),
                    side(&d.b),
                ]);
            }
            out.push_str(&columns(&rows, "  "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Built from JSON so model fields added elsewhere (all `serde(default)`) need no change here.
    fn cell(from: &str, to: &str, protocol: Protocol, explanation: Option<&str>) -> CellReport {
        serde_json::from_value(serde_json::json!({
            "from": from, "to": to, "port": 80, "protocol": protocol,
            "expected": true, "observed": true, "outcome": "pass", "attempts": 1,
            "connectivity": "connected", "explanation": explanation,
        }))
        .expect("cell")
    }

    fn feats(scenario: &str, step: &str, c: &CellReport) -> Vec<&'static str> {
        let sc: ScenarioReport = serde_json::from_value(
            serde_json::json!({"name": scenario, "source": "", "steps": []}),
        )
        .expect("scenario");
        let st: StepReport = serde_json::from_value(serde_json::json!({
            "name": step, "convergence_ms": null, "probe_wall_ms": 0, "cells": []
        }))
        .expect("step");
        cell_features(&sc, &st, c)
            .into_iter()
            .map(Feature::as_str)
            .collect()
    }

    #[test]
    fn protocol_and_self_connection_come_from_the_cell() {
        let c = cell("x/a", "x/a", Protocol::Udp, None);
        assert_eq!(feats("plain", "initial", &c), ["udp", "self-connection"]);
    }

    #[test]
    fn explanation_quotes_reveal_policy_constructs() {
        let ex = "x/a -> y/b on 80/TCP (step s): ALLOWED\n\n\
                  egress at the source x/a: ALLOWED\n  selected for egress by: x/out\n  \
                  allowed by x/out rule spec.egress[0]\n    peer spec.egress[0].to[0]:\n      \
                  ipBlock:\n        cidr: 10.0.0.0/8\n    port spec.egress[0].ports[0]:\n      \
                  port: http\n      protocol: TCP\n\n\
                  ingress at the destination y/b: ALLOWED\n  no NetworkPolicy selects y/b\n";
        let c = cell("x/a", "y/b", Protocol::Tcp, Some(ex));
        assert_eq!(
            feats("plain", "initial", &c),
            ["tcp", "egress", "ipBlock", "named-port"]
        );
    }

    #[test]
    fn numeric_ports_and_any_port_are_not_named_ports() {
        let ex = "    port spec.ingress[0].ports[0]:\n      port: 8080\n      endPort: 8090\n\
                  selected for ingress by: y/p\n    port: any (the rule has no `ports`)\n";
        let c = cell("x/a", "y/b", Protocol::Tcp, Some(ex));
        assert_eq!(feats("plain", "s", &c), ["tcp", "ingress", "endPort"]);
    }

    #[test]
    fn scenario_and_step_names_add_features() {
        let c = cell("x/a", "y/b", Protocol::Sctp, None);
        assert_eq!(
            feats("egress-to-cidr", "default-deny", &c),
            ["sctp", "egress", "default-deny", "ipBlock"]
        );
    }
}
