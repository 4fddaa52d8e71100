//! The HTML report: one self-contained file a person opens after a run.
//!
//! Per scenario step and probe (port/protocol) a from × to heatmap of the cells, coloured by
//! outcome; hovering or clicking a cell shows the oracle's explanation (`CellReport::explanation`)
//! and the observation (connectivity, attempts, the command that reproduces it). Each scenario
//! gets a small inline SVG chart of its steps' convergence times, and the page opens with the
//! verdict, counts and the run's environment.
//!
//! Self-contained on purpose: reports are archived as CI artifacts and opened offline, so the page
//! loads nothing (CSS and JS are inline, no fonts or images) and its Content-Security-Policy pins
//! the inline style and script by hash — even a pod name that escaped escaping could not run.
//!
//! Recognised `RunReport::environment` keys (shown first, with readable names): `cni_version`,
//! `kubernetes_version`, `step_timeout_ms`, `attempts`; any other key is listed after them.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::Environment;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::model::{CellReport, RunReport, ScenarioReport, StepReport, Summary, Verdict};
use crate::model::{PodRef, Probe};
use crate::probe::{Connectivity, Outcome};

const TEMPLATE: &str = include_str!("assets/report.html");
const CSS: &str = include_str!("assets/report.css");
const JS: &str = include_str!("assets/report.js");

/// Environment keys with a readable label, shown in this order before the other keys.
const KNOWN_ENV: &[(&str, &str)] = &[
    ("cni_version", "CNI version"),
    ("kubernetes_version", "Kubernetes version"),
];
/// Timeout-like keys shown after the probe timeout.
const TIMING_ENV: &[(&str, &str)] = &[
    ("step_timeout_ms", "step timeout (ms)"),
    ("attempts", "attempts per wrong cell"),
];

/// Renders the report. Deterministic: the same report gives the same bytes.
pub fn render(report: &RunReport) -> String {
    let view = View::new(report);
    let mut env = Environment::new();
    let rendered = env
        .add_template("report.html", TEMPLATE)
        .and_then(|()| env.get_template("report.html"))
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&view))));
    match rendered {
        // minijinja drops the template's final newline; a text file ends with one.
        Ok(html) => html + "\n",
        // Only a broken template gets here (tests render every outcome); still produce a page
        // that says what went wrong rather than panicking after a long run.
        Err(e) => format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>netpolc report \
             error</title></head><body><h1>The HTML report could not be rendered</h1><pre>{}</pre>\
             <p>report.json holds the same data.</p></body></html>\n",
            escape(&format!("{e:#}"))
        ),
    }
}

/// Minimal HTML escaping for the fallback page (the template escapes everything else).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// `'sha256-…'` source expression of a CSP hash for an inline element's exact text.
pub(crate) fn csp_hash(text: &str) -> String {
    format!("sha256-{}", base64(&Sha256::digest(text.as_bytes())))
}

/// Standard base64 with padding (only CSP hashes need it; not worth a dependency).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A duration for people: milliseconds below ten seconds, seconds with one decimal above.
pub(crate) fn human_ms(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
    }
}

pub(crate) fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Conformant => "every probed cell matched what the oracle requires.",
        Verdict::NonConformant => "some cells contradict what the oracle requires.",
        Verdict::PoliciesIgnored => {
            "every probed cell was allowed although the oracle denies some: the dataplane ignores \
             NetworkPolicies."
        }
        Verdict::Error => "some probes failed, so the dataplane could not be judged.",
    }
}

pub(crate) fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Flaky => "flaky",
        Outcome::Unsupported => "unsupported",
        Outcome::Error => "error",
    }
}

pub(crate) fn allowed_word(b: bool) -> &'static str {
    if b { "allowed" } else { "blocked" }
}

/// The oracle's answer in words (`None`: the API leaves it to the implementation).
pub(crate) fn expected_word(e: Option<bool>) -> &'static str {
    e.map_or("implementation-defined", allowed_word)
}

pub(crate) fn observed_word(o: Option<bool>) -> &'static str {
    match o {
        Some(b) => allowed_word(b),
        None => "nothing observed",
    }
}

fn connectivity_text(c: Connectivity, timeout_ms: u64) -> String {
    match c {
        Connectivity::Connected => "connected".to_string(),
        Connectivity::Refused => "refused (actively rejected)".to_string(),
        Connectivity::Timeout => format!("timeout (no answer within {timeout_ms} ms)"),
        Connectivity::Unsupported => "unsupported (cannot be probed here)".to_string(),
        Connectivity::Error => "error (the probe itself failed)".to_string(),
    }
}

/// The heatmap mark: upstream's truth-table legend (`.` allowed, `X` blocked) for what was
/// observed, then `!` for a mismatch and `~` for flaky; `?` unsupported and `E` error, as in the
/// terminal's and JUnit's comparison tables.
pub(crate) fn glyph(c: &CellReport) -> String {
    let mark = match c.observed {
        Some(true) => ".",
        Some(false) => "X",
        None => "?",
    };
    match c.outcome {
        Outcome::Pass => mark.to_string(),
        Outcome::Fail => format!("{mark}!"),
        Outcome::Flaky => format!("{mark}~"),
        Outcome::Unsupported => "?".to_string(),
        Outcome::Error => "E".to_string(),
    }
}

fn cell_class(c: &CellReport) -> String {
    let state = c.observed.or(c.expected).unwrap_or(false);
    let base = outcome_str(c.outcome);
    match c.outcome {
        Outcome::Pass | Outcome::Fail | Outcome::Flaky => {
            format!("{base} {}", allowed_word(state))
        }
        Outcome::Unsupported | Outcome::Error => base.to_string(),
    }
}

fn outcome_text(c: &CellReport) -> String {
    match c.outcome {
        Outcome::Pass => "pass: observed what the oracle expects".to_string(),
        Outcome::Fail => format!(
            "fail: {} but the oracle expects it {}",
            observed_word(c.observed),
            expected_word(c.expected)
        ),
        Outcome::Flaky => format!(
            "flaky: wrong at first, right after {} attempts (counted as passed with reruns)",
            c.attempts
        ),
        Outcome::Unsupported if c.expected.is_none() => {
            "unsupported: the API leaves this cell to the implementation; probed and recorded, \
             not judged"
                .to_string()
        }
        Outcome::Unsupported
            if c.connectivity == Connectivity::Unsupported
                && c.protocol != crate::model::Protocol::Sctp =>
        {
            "unsupported: this dataplane cannot realise what decides this cell (see the detail); \
             no verdict"
                .to_string()
        }
        Outcome::Unsupported => {
            "unsupported: this protocol cannot be probed here; no verdict".to_string()
        }
        Outcome::Error => "error: the probe itself failed; nothing observed".to_string(),
    }
}

fn probe_label(c: &CellReport) -> String {
    format!("{}/{}", c.port, c.protocol)
}

#[derive(Serialize)]
struct View {
    verdict: &'static str,
    verdict_text: &'static str,
    provider: String,
    cni: String,
    run_id: String,
    started_at: String,
    duration: String,
    harness_version: String,
    summary: Summary,
    env_rows: Vec<(String, String)>,
    faults: Vec<String>,
    warnings: Vec<String>,
    failing_features: Vec<String>,
    scenarios: Vec<ScenarioView>,
    css: &'static str,
    js: &'static str,
    css_hash: String,
    js_hash: String,
}

#[derive(Serialize)]
struct ScenarioView {
    id: String,
    name: String,
    source: String,
    chart: Chart,
    steps: Vec<StepView>,
}

#[derive(Serialize)]
struct StepView {
    id: String,
    name: String,
    convergence: String,
    probe_wall: String,
    passes: u32,
    counts: String,
    matrices: Vec<Matrix>,
    /// fail, flaky and error cells, listed under the matrices (readable without JavaScript).
    problems: Vec<Detail>,
    /// One per cell; the script copies them into the side panel.
    details: Vec<Detail>,
}

#[derive(Serialize)]
struct Matrix {
    probe: String,
    cols: Vec<String>,
    rows: Vec<Row>,
}

#[derive(Serialize)]
struct Row {
    from: String,
    cells: Vec<Option<CellView>>,
}

#[derive(Serialize)]
struct CellView {
    id: String,
    class: String,
    glyph: String,
    title: String,
}

#[derive(Serialize, Clone)]
struct Detail {
    id: String,
    class: &'static str,
    outcome: &'static str,
    headline: String,
    outcome_text: String,
    expected: &'static str,
    observed: &'static str,
    connectivity: String,
    attempts: u32,
    detail: Option<String>,
    command: String,
    explanation: Option<String>,
}

#[derive(Serialize)]
struct Chart {
    width: u32,
    height: u32,
    left: u32,
    base: u32,
    bars: Vec<Bar>,
}

#[derive(Serialize)]
struct Bar {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    never: bool,
    value: String,
    value_y: u32,
    label: String,
    label_y: u32,
    title: String,
}

impl View {
    fn new(r: &RunReport) -> Self {
        View {
            verdict: r.verdict.as_str(),
            verdict_text: verdict_text(r.verdict),
            provider: r.provider.clone(),
            cni: r.cni.clone(),
            run_id: r.run_id.clone(),
            started_at: r.started_at.clone(),
            duration: human_ms(r.duration_ms),
            harness_version: r.harness_version.clone(),
            summary: r.summary.clone(),
            env_rows: env_rows(r),
            faults: r.faults.clone(),
            warnings: r.warnings.clone(),
            failing_features: r.failing_features.clone(),
            scenarios: r
                .scenarios
                .iter()
                .enumerate()
                .map(|(i, s)| scenario_view(i, s, r.probe_timeout_ms))
                .collect(),
            css: CSS,
            js: JS,
            css_hash: csp_hash(CSS),
            js_hash: csp_hash(JS),
        }
    }
}

fn env_rows(r: &RunReport) -> Vec<(String, String)> {
    let mut rows = vec![
        ("provider".to_string(), r.provider.clone()),
        ("CNI".to_string(), r.cni.clone()),
    ];
    let env = &r.environment;
    let push_known = |rows: &mut Vec<(String, String)>, known: &[(&str, &str)]| {
        for (key, label) in known {
            if let Some(v) = env.get(*key) {
                rows.push(((*label).to_string(), v.clone()));
            }
        }
    };
    push_known(&mut rows, KNOWN_ENV);
    rows.push((
        "harness version".to_string(),
        if r.harness_version.is_empty() {
            "(unknown)".to_string()
        } else {
            r.harness_version.clone()
        },
    ));
    rows.push((
        "probe timeout".to_string(),
        format!("{} ms", r.probe_timeout_ms),
    ));
    push_known(&mut rows, TIMING_ENV);
    let known: BTreeSet<&str> = KNOWN_ENV
        .iter()
        .chain(TIMING_ENV)
        .map(|(k, _)| *k)
        .collect();
    for (k, v) in env {
        if !known.contains(k.as_str()) {
            rows.push((k.clone(), v.clone()));
        }
    }
    rows
}

fn scenario_view(si: usize, s: &ScenarioReport, timeout_ms: u64) -> ScenarioView {
    ScenarioView {
        id: format!("s{si}"),
        name: s.name.clone(),
        source: s.source.clone(),
        chart: chart(&s.steps),
        steps: s
            .steps
            .iter()
            .enumerate()
            .map(|(ti, st)| step_view(si, ti, st, timeout_ms))
            .collect(),
    }
}

fn counts_line(cells: &[CellReport]) -> String {
    let mut n: BTreeMap<&'static str, usize> = BTreeMap::new();
    for c in cells {
        *n.entry(outcome_str(c.outcome)).or_default() += 1;
    }
    let parts: Vec<String> = ["pass", "fail", "flaky", "unsupported", "error"]
        .iter()
        .filter_map(|k| n.get(k).map(|v| format!("{v} {k}")))
        .collect();
    format!("{} cells: {}", cells.len(), parts.join(", "))
}

/// Cell indices of one probe's matrix, by (source, destination).
type CellsByPair<'a> = BTreeMap<(&'a PodRef, &'a PodRef), usize>;

fn step_view(si: usize, ti: usize, st: &StepReport, timeout_ms: u64) -> StepView {
    let id_of = |ci: usize| format!("c{si}-{ti}-{ci}");
    // Cells ordered by probe, then source, then destination: matrices and lists read alike.
    let mut order: Vec<usize> = (0..st.cells.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&st.cells[a], &st.cells[b]);
        (x.port, x.protocol, &x.from, &x.to).cmp(&(y.port, y.protocol, &y.from, &y.to))
    });

    let details: Vec<Detail> = order
        .iter()
        .map(|&ci| detail(id_of(ci), &st.cells[ci], timeout_ms))
        .collect();
    let problems = details
        .iter()
        .zip(&order)
        .filter(|(_, ci)| {
            matches!(
                st.cells[**ci].outcome,
                Outcome::Fail | Outcome::Flaky | Outcome::Error
            )
        })
        .map(|(d, _)| d.clone())
        .collect();

    // One matrix per probe; every pod seen in the step's cells on both axes.
    let pods: BTreeSet<&PodRef> = st.cells.iter().flat_map(|c| [&c.from, &c.to]).collect();
    let mut by_probe: BTreeMap<Probe, CellsByPair<'_>> = BTreeMap::new();
    for &ci in &order {
        let c = &st.cells[ci];
        by_probe
            .entry(Probe::new(c.port, c.protocol))
            .or_default()
            .entry((&c.from, &c.to))
            .or_insert(ci);
    }
    let matrices = by_probe
        .into_iter()
        .map(|(probe, cells)| Matrix {
            probe: probe.to_string(),
            cols: pods.iter().map(|p| p.to_string()).collect(),
            rows: pods
                .iter()
                .map(|from| Row {
                    from: from.to_string(),
                    cells: pods
                        .iter()
                        .map(|to| {
                            cells.get(&(*from, *to)).map(|&ci| {
                                let c = &st.cells[ci];
                                CellView {
                                    id: id_of(ci),
                                    class: cell_class(c),
                                    glyph: glyph(c),
                                    title: format!(
                                        "{} → {} {}: {}",
                                        c.from,
                                        c.to,
                                        probe_label(c),
                                        outcome_text(c)
                                    ),
                                }
                            })
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();

    StepView {
        id: format!("s{si}-{ti}"),
        name: st.name.clone(),
        convergence: match st.convergence_ms {
            Some(ms) => format!("after {}", human_ms(ms)),
            None => "never (the observed matrix never matched)".to_string(),
        },
        probe_wall: human_ms(st.probe_wall_ms),
        passes: st.passes,
        counts: counts_line(&st.cells),
        matrices,
        problems,
        details,
    }
}

fn detail(id: String, c: &CellReport, timeout_ms: u64) -> Detail {
    Detail {
        id,
        class: outcome_str(c.outcome),
        outcome: outcome_str(c.outcome),
        headline: format!("{} → {} on {}", c.from, c.to, probe_label(c)),
        outcome_text: outcome_text(c),
        expected: expected_word(c.expected),
        observed: observed_word(c.observed),
        connectivity: connectivity_text(c.connectivity, timeout_ms),
        attempts: c.attempts,
        detail: c.detail.clone(),
        command: c.command.clone(),
        explanation: c.explanation.clone(),
    }
}

/// Layout of the convergence chart, in SVG user units.
const CHART_LEFT: u32 = 8;
const CHART_SLOT: u32 = 84;
const CHART_BAR: u32 = 28;
const CHART_TOP: u32 = 18;
const CHART_PLOT: u32 = 80;
const CHART_LABEL_CHARS: usize = 12;

fn chart(steps: &[StepReport]) -> Chart {
    let base = CHART_TOP + CHART_PLOT;
    let max = steps
        .iter()
        .filter_map(|s| s.convergence_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let bars = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let x = CHART_LEFT + u32::try_from(i).unwrap_or(u32::MAX / 2) * CHART_SLOT;
            let (h, never, value, title) = match s.convergence_ms {
                Some(v) => {
                    let scaled = (u128::from(v) * u128::from(CHART_PLOT) + u128::from(max) / 2)
                        / u128::from(max);
                    let h = u32::try_from(scaled).unwrap_or(CHART_PLOT).max(2);
                    (
                        h,
                        false,
                        human_ms(v),
                        format!(
                            "step {}: converged after {}; one probe pass {}; {} passes",
                            s.name,
                            human_ms(v),
                            human_ms(s.probe_wall_ms),
                            s.passes
                        ),
                    )
                }
                None => (
                    CHART_PLOT,
                    true,
                    "never".to_string(),
                    format!(
                        "step {}: never converged; one probe pass {}; {} passes",
                        s.name,
                        human_ms(s.probe_wall_ms),
                        s.passes
                    ),
                ),
            };
            let label = if s.name.chars().count() > CHART_LABEL_CHARS {
                let cut: String = s.name.chars().take(CHART_LABEL_CHARS - 1).collect();
                format!("{cut}…")
            } else {
                s.name.clone()
            };
            Bar {
                x,
                y: base - h,
                w: CHART_BAR,
                h,
                never,
                value,
                value_y: base - h - 4,
                label,
                label_y: base + 14,
                title,
            }
        })
        .collect();
    let n = u32::try_from(steps.len()).unwrap_or(1).max(1);
    Chart {
        width: CHART_LEFT + n * CHART_SLOT,
        height: base + 22,
        left: CHART_LEFT,
        base,
        bars,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn csp_hash_is_the_sha256_of_the_exact_text() {
        // sha256("") = e3b0c442…b855, base64 below.
        assert_eq!(
            csp_hash(""),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn human_ms_switches_to_seconds_at_ten_seconds() {
        assert_eq!(human_ms(9_999), "9999 ms");
        assert_eq!(human_ms(12_345), "12.3 s");
    }
}
