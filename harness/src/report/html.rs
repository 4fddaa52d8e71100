//! The HTML report: one self-contained file a person opens after a run.
//!
//! Per scenario step and probe (port/protocol) a from × to heatmap of the cells, coloured by
//! outcome; hovering or clicking a cell shows what the oracle expected and what was observed, and
//! for the cells that went wrong the oracle's explanation (`CellReport::explanation`), the attempts
//! and the command that reproduces the probe. Each scenario gets a small inline SVG chart of its
//! steps' convergence times, and the page opens with the verdict, counts and the run's environment.
//!
//! Self-contained on purpose: reports are archived as CI artifacts and opened offline, so the page
//! loads nothing (CSS and JS are inline, no fonts or images) and its Content-Security-Policy pins
//! the inline style and script by hash — even a pod name that escaped escaping could not run.
//!
//! **Sized for big runs** (≤ 10 MB at 40,000 cells, tested; a browser stays responsive):
//! - every matrix travels as one character per cell (`data-codes`, see [`CODES`]) plus the step's
//!   pod list; passing cells are summarised from those characters by the page's script, never
//!   written out one element each;
//! - small matrices are also drawn as tables in the HTML (readable without JavaScript) until
//!   [`EAGER_CELLS_BUDGET`] cells are drawn; larger ones ([`LAZY_MATRIX_CELLS`]) and the rest are
//!   drawn by the script when the reader asks for them;
//! - what went wrong is detailed (explanation, attempts, command) for the first
//!   [`DETAILED_PER_STEP`] problem cells of each step within [`DETAIL_BYTES_BUDGET`], listed one
//!   line each up to [`LISTED_PER_STEP`] more, and counted beyond that (report.json has every cell).
//!
//! Recognised `RunReport::environment` keys (shown first, with readable names): `cni_version`,
//! `kubernetes_version`, `step_timeout_ms`, `attempts`; any other key is listed after them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use minijinja::Environment;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::model::{CellReport, RunReport, ScenarioReport, StepReport, Summary, Verdict};
use crate::model::{PodRef, Probe};
use crate::probe::{Connectivity, Outcome};

const TEMPLATE: &str = include_str!("assets/report.html");
const CSS: &str = include_str!("assets/report.css");
const JS: &str = include_str!("assets/report.js");

/// A matrix with more cells than this is never drawn in the HTML itself: the script draws it on
/// demand (upstream's 9-pod model is 81 cells; 32 pods are 1,024).
pub const LAZY_MATRIX_CELLS: usize = 1024;
/// Cells drawn as HTML table cells over the whole page; later matrices are drawn on demand.
pub const EAGER_CELLS_BUDGET: usize = 20_000;
/// Problem cells (fail, flaky, error) of one step shown with every detail.
pub const DETAILED_PER_STEP: usize = 50;
/// Rough bytes of detailed problem cells over the whole page.
pub const DETAIL_BYTES_BUDGET: usize = 2_500_000;
/// Further problem cells of one step listed one line each.
pub const LISTED_PER_STEP: usize = 500;
/// One-line problem entries over the whole page.
pub const LISTED_TOTAL: usize = 5_000;

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
        // that says what went wrong rather than losing every report after a long run.
        Err(e) => format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>netpolc report \
             error</title></head><body><h1>The HTML report could not be rendered</h1><pre>{}</pre>\
             <p>report.json holds the same data.</p></body></html>\n",
            escape(&format!("{e:#}"))
        ),
    }
}

/// Writes the page into `w`. The page is bounded by the budgets above (a few megabytes at
/// most), so it is rendered whole first: a template error then still yields a page saying so.
pub fn write(report: &RunReport, w: &mut dyn Write) -> std::io::Result<()> {
    w.write_all(render(report).as_bytes())
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
        Connectivity::Harness => {
            "harness error (the harness ran short of its own resources)".to_string()
        }
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

/// `80/TCP`, or `80/TCP via service-ip` for a cell probed through a Service.
fn probe_label(c: &CellReport) -> String {
    crate::report::terminal::probe_label(Probe::new(c.port, c.protocol), c.via)
}

/// One character per matrix cell: how the page's script knows a cell without an element per
/// cell. Also the page's legend, so the HTML tables, the script's tables and the legend cannot
/// drift apart.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Code {
    pub code: char,
    /// CSS classes of the cell (`td.cell <class>`).
    pub class: &'static str,
    /// What the cell shows: upstream's truth-table legend (`.` allowed, `X` blocked) for what
    /// was observed, then `!` for a mismatch and `~` for flaky; `?` unsupported, `E` error.
    pub glyph: &'static str,
    pub outcome: &'static str,
    /// The cell's hover title and the side panel's outcome line.
    pub text: &'static str,
    pub expected: &'static str,
    pub observed: &'static str,
    /// The legend's line.
    pub legend: &'static str,
}

/// Every cell code; `-` is a pair the step did not probe.
pub const CODES: &[Code] = &[
    Code {
        code: '.',
        class: "pass allowed",
        glyph: ".",
        outcome: "pass",
        text: "pass: observed what the oracle expects",
        expected: "allowed",
        observed: "allowed",
        legend: "pass: allowed, as the oracle expects",
    },
    Code {
        code: 'x',
        class: "pass blocked",
        glyph: "X",
        outcome: "pass",
        text: "pass: observed what the oracle expects",
        expected: "blocked",
        observed: "blocked",
        legend: "pass: blocked, as the oracle expects",
    },
    Code {
        code: 'B',
        class: "fail blocked",
        glyph: "X!",
        outcome: "fail",
        text: "fail: blocked but the oracle expects it allowed",
        expected: "allowed",
        observed: "blocked",
        legend: "fail: blocked but should be allowed (JUnit: failure)",
    },
    Code {
        code: 'A',
        class: "fail allowed",
        glyph: ".!",
        outcome: "fail",
        text: "fail: allowed but the oracle expects it blocked",
        expected: "blocked",
        observed: "allowed",
        legend: "fail: allowed but should be blocked (JUnit: failure; not one when \
                 policies-ignored is the expected verdict)",
    },
    Code {
        code: 'f',
        class: "flaky allowed",
        glyph: ".~",
        outcome: "flaky",
        text: "flaky: wrong at first, right on a retry (counted as passed with reruns)",
        expected: "allowed",
        observed: "allowed",
        legend: "flaky: wrong at first, allowed as expected on a retry (JUnit: passed, with \
                 reruns)",
    },
    Code {
        code: 'g',
        class: "flaky blocked",
        glyph: "X~",
        outcome: "flaky",
        text: "flaky: wrong at first, right on a retry (counted as passed with reruns)",
        expected: "blocked",
        observed: "blocked",
        legend: "flaky: wrong at first, blocked as expected on a retry",
    },
    Code {
        code: 'u',
        class: "unsupported",
        glyph: "?",
        outcome: "unsupported",
        text: "unsupported: this protocol cannot be probed here; no verdict",
        expected: "",
        observed: "nothing observed",
        legend: "unsupported: cannot be probed here (e.g. SCTP); no verdict (JUnit: skipped \
                 when the whole probe is)",
    },
    Code {
        code: 'e',
        class: "error",
        glyph: "E",
        outcome: "error",
        text: "error: the probe itself failed; nothing observed",
        expected: "",
        observed: "nothing observed",
        legend: "error: the probe itself failed (JUnit: error)",
    },
];

/// The code of a cell (see [`CODES`]).
pub fn cell_code(c: &CellReport) -> char {
    // Only unsupported cells lack an expectation (the API leaves them to the implementation).
    let seen = c.observed.unwrap_or(c.expected == Some(false));
    match c.outcome {
        Outcome::Pass if c.expected == Some(true) => '.',
        Outcome::Pass => 'x',
        Outcome::Fail if seen => 'A',
        Outcome::Fail => 'B',
        Outcome::Flaky if c.observed.unwrap_or(c.expected == Some(true)) => 'f',
        Outcome::Flaky => 'g',
        Outcome::Unsupported => 'u',
        Outcome::Error => 'e',
    }
}

fn code_info(code: char) -> Option<&'static Code> {
    CODES.iter().find(|c| c.code == code)
}

/// One character per cell for how the deciding attempt ended: `c`onnected, `r`efused,
/// `t`imeout, `u`nsupported, `e`rror, `h`arness error (`-`: not probed).
fn connectivity_code(c: Connectivity) -> char {
    match c {
        Connectivity::Connected => 'c',
        Connectivity::Refused => 'r',
        Connectivity::Timeout => 't',
        Connectivity::Unsupported => 'u',
        Connectivity::Error => 'e',
        Connectivity::Harness => 'h',
    }
}

/// Which of several cells on one matrix position (e.g. one per probe mode) the matrix shows:
/// the worst, so a matrix never hides a failure behind a pass.
fn severity(o: Outcome) -> u8 {
    match o {
        Outcome::Fail => 4,
        Outcome::Error => 3,
        Outcome::Flaky => 2,
        Outcome::Pass => 1,
        Outcome::Unsupported => 0,
    }
}

fn is_problem(o: Outcome) -> bool {
    matches!(o, Outcome::Fail | Outcome::Flaky | Outcome::Error)
}

/// JSON inside an HTML attribute: minijinja escapes it; `<`, `>` and `&` are additionally
/// written as JSON escapes so the text reads the same wherever it lands.
fn attr_json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|_| "null".to_string())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[derive(Serialize)]
struct View {
    verdict: &'static str,
    verdict_text: &'static str,
    /// `--expect-verdict` when the CLI recorded it, and whether the verdict equals it.
    expected_verdict: Option<&'static str>,
    as_expected: bool,
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
    legend: &'static [Code],
    /// [`CODES`] and the connectivity words, for the script.
    legend_json: String,
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
    /// The step's pods (both axes of every matrix), as JSON for the script.
    pods_json: String,
    matrices: Vec<Matrix>,
    /// Problem cells with every detail (the script shows them in the side panel too).
    problems: Vec<Detail>,
    /// Further problem cells, one line each.
    listed: Vec<Listed>,
    /// Problem cells neither detailed nor listed.
    unlisted: usize,
    problem_count: usize,
}

#[derive(Serialize)]
struct Matrix {
    probe: String,
    counts: String,
    pods: usize,
    cells: usize,
    codes: String,
    connectivity: String,
    /// Drawn by the script on demand instead of in the HTML.
    lazy: bool,
    /// Why the probe's cells are unsupported, if some are.
    unsupported: Option<String>,
    cols: Vec<String>,
    rows: Vec<Row>,
}

#[derive(Serialize)]
struct Row {
    from: String,
    cells: Vec<CellView>,
}

/// One drawn cell; its hover title is set by the script (from the matrix's characters) when
/// the pointer reaches it, which keeps every cell a few dozen bytes.
#[derive(Serialize)]
struct CellView {
    id: String,
    class: &'static str,
    glyph: &'static str,
}

#[derive(Serialize)]
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
    decided: Option<String>,
}

#[derive(Serialize)]
struct Listed {
    class: &'static str,
    outcome: &'static str,
    line: String,
    command: String,
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

/// What the page may still spend, shared by every step in report order.
struct Budget {
    eager_cells: usize,
    detail_bytes: usize,
    listed: usize,
}

#[derive(Serialize)]
struct LegendData {
    codes: BTreeMap<String, &'static Code>,
    connectivity: BTreeMap<char, String>,
}

fn legend_json(timeout_ms: u64) -> String {
    let connectivity = [
        Connectivity::Connected,
        Connectivity::Refused,
        Connectivity::Timeout,
        Connectivity::Unsupported,
        Connectivity::Error,
        Connectivity::Harness,
    ]
    .into_iter()
    .map(|c| (connectivity_code(c), connectivity_text(c, timeout_ms)))
    .collect();
    attr_json(&LegendData {
        codes: CODES.iter().map(|c| (c.code.to_string(), c)).collect(),
        connectivity,
    })
}

impl View {
    fn new(r: &RunReport) -> Self {
        let mut budget = Budget {
            eager_cells: EAGER_CELLS_BUDGET,
            detail_bytes: DETAIL_BYTES_BUDGET,
            listed: LISTED_TOTAL,
        };
        View {
            verdict: r.verdict.as_str(),
            verdict_text: verdict_text(r.verdict),
            expected_verdict: r.expected_verdict.map(Verdict::as_str),
            as_expected: r.expected_verdict.is_none_or(|v| v == r.verdict),
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
            legend: CODES,
            legend_json: legend_json(r.probe_timeout_ms),
            scenarios: r
                .scenarios
                .iter()
                .enumerate()
                .map(|(i, s)| scenario_view(i, s, r.probe_timeout_ms, &mut budget))
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

fn scenario_view(
    si: usize,
    s: &ScenarioReport,
    timeout_ms: u64,
    budget: &mut Budget,
) -> ScenarioView {
    ScenarioView {
        id: format!("s{si}"),
        name: s.name.clone(),
        source: s.source.clone(),
        chart: chart(&s.steps),
        steps: s
            .steps
            .iter()
            .enumerate()
            .map(|(ti, st)| step_view(si, ti, st, timeout_ms, budget))
            .collect(),
    }
}

fn counts_of<'a>(cells: impl Iterator<Item = &'a CellReport>) -> String {
    let mut n: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut total = 0;
    for c in cells {
        total += 1;
        *n.entry(outcome_str(c.outcome)).or_default() += 1;
    }
    let parts: Vec<String> = ["pass", "fail", "flaky", "unsupported", "error"]
        .iter()
        .filter_map(|k| n.get(k).map(|v| format!("{v} {k}")))
        .collect();
    let noun = if total == 1 { "cell" } else { "cells" };
    format!("{total} {noun}: {}", parts.join(", "))
}

/// The bytes a detailed cell costs the page, roughly (its texts plus the markup around them).
fn detail_cost(c: &CellReport) -> usize {
    600 + 2 * (c.from.to_string().len() + c.to.to_string().len())
        + c.command.len()
        + c.detail.as_ref().map_or(0, String::len)
        + c.explanation.as_ref().map_or(0, String::len)
}

fn step_view(
    si: usize,
    ti: usize,
    st: &StepReport,
    timeout_ms: u64,
    budget: &mut Budget,
) -> StepView {
    // Every pod seen in the step's cells, on both axes of every matrix.
    let pods: Vec<&PodRef> = st
        .cells
        .iter()
        .flat_map(|c| [&c.from, &c.to])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index: BTreeMap<&PodRef, usize> = pods.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let n = pods.len();
    // Per probe (in port/protocol order): the cell shown at each position.
    // One matrix per probe and probe mode (`via`, named in the heading unless pod-ip).
    let mut by_probe: BTreeMap<(crate::service::ProbeMode, Probe), Vec<Option<usize>>> =
        BTreeMap::new();
    for (ci, c) in st.cells.iter().enumerate() {
        let slots = by_probe
            .entry((c.via, Probe::new(c.port, c.protocol)))
            .or_insert_with(|| vec![None; n * n]);
        let pos = index[&c.from] * n + index[&c.to];
        let replace =
            slots[pos].is_none_or(|old| severity(c.outcome) > severity(st.cells[old].outcome));
        if replace {
            slots[pos] = Some(ci);
        }
    }
    // Detail ids by matrix position; cells hidden behind a worse one get their own.
    let mut id_of: BTreeMap<usize, String> = BTreeMap::new();
    let probes: Vec<(crate::service::ProbeMode, Probe)> = by_probe.keys().copied().collect();
    for (pi, slots) in by_probe.values().enumerate() {
        for (pos, ci) in slots.iter().enumerate() {
            if let Some(ci) = ci {
                id_of.insert(*ci, format!("c{si}-{ti}-{pi}-{}-{}", pos / n, pos % n));
            }
        }
    }
    let id = |ci: usize| {
        id_of
            .get(&ci)
            .cloned()
            .unwrap_or_else(|| format!("c{si}-{ti}-x{ci}"))
    };

    let matrices = by_probe
        .iter()
        .enumerate()
        .map(|(pi, ((via, probe), slots))| {
            let cells = slots.iter().flatten().count();
            let lazy = n * n > LAZY_MATRIX_CELLS || n * n > budget.eager_cells;
            if !lazy {
                budget.eager_cells -= n * n;
            }
            let label = crate::report::terminal::probe_label(*probe, *via);
            let rows = if lazy {
                Vec::new()
            } else {
                pods.iter()
                    .enumerate()
                    .map(|(r, from)| Row {
                        from: from.to_string(),
                        cells: (0..n)
                            .map(|col| match slots[r * n + col] {
                                Some(ci) => {
                                    let c = &st.cells[ci];
                                    let info = code_info(cell_code(c)).unwrap_or(&CODES[0]);
                                    CellView {
                                        id: format!("c{si}-{ti}-{pi}-{r}-{col}"),
                                        class: info.class,
                                        glyph: info.glyph,
                                    }
                                }
                                None => CellView {
                                    id: String::new(),
                                    class: "none",
                                    glyph: "·",
                                },
                            })
                            .collect(),
                    })
                    .collect()
            };
            Matrix {
                probe: label,
                counts: counts_of(slots.iter().flatten().map(|&ci| &st.cells[ci])),
                pods: n,
                cells,
                codes: slots
                    .iter()
                    .map(|s| s.map_or('-', |ci| cell_code(&st.cells[ci])))
                    .collect(),
                connectivity: slots
                    .iter()
                    .map(|s| s.map_or('-', |ci| connectivity_code(st.cells[ci].connectivity)))
                    .collect(),
                lazy,
                unsupported: slots
                    .iter()
                    .flatten()
                    .map(|&ci| &st.cells[ci])
                    .filter(|c| c.outcome == Outcome::Unsupported)
                    .find_map(|c| c.detail.clone()),
                cols: if lazy {
                    Vec::new()
                } else {
                    pods.iter().map(|p| p.to_string()).collect()
                },
                rows,
            }
        })
        .collect();

    // Problem cells in matrix order (probe, source, destination).
    let mut problem_cells: Vec<usize> = (0..st.cells.len())
        .filter(|&ci| is_problem(st.cells[ci].outcome))
        .collect();
    let probe_rank: BTreeMap<(crate::service::ProbeMode, Probe), usize> =
        probes.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    problem_cells.sort_by_key(|&ci| {
        let c = &st.cells[ci];
        (
            probe_rank[&(c.via, Probe::new(c.port, c.protocol))],
            index[&c.from],
            index[&c.to],
            ci,
        )
    });
    let mut problems = Vec::new();
    let mut listed = Vec::new();
    let mut unlisted = 0;
    for &ci in &problem_cells {
        let c = &st.cells[ci];
        let cost = detail_cost(c);
        if problems.len() < DETAILED_PER_STEP && cost <= budget.detail_bytes {
            budget.detail_bytes -= cost;
            problems.push(detail(id(ci), c, timeout_ms));
        } else if listed.len() < LISTED_PER_STEP && budget.listed > 0 {
            budget.listed -= 1;
            listed.push(Listed {
                class: outcome_str(c.outcome),
                outcome: outcome_str(c.outcome),
                line: format!(
                    "{} → {} on {}: expected {}, observed {} ({}, {} attempts)",
                    c.from,
                    c.to,
                    probe_label(c),
                    expected_word(c.expected),
                    observed_word(c.observed),
                    c.connectivity.describe(),
                    c.attempts
                ),
                command: c.command.clone(),
            });
        } else {
            unlisted += 1;
        }
    }

    StepView {
        id: format!("s{si}-{ti}"),
        name: st.name.clone(),
        convergence: match st.convergence_ms {
            Some(ms) => format!("after {}", human_ms(ms)),
            None => "never (the observed matrix never matched)".to_string(),
        },
        probe_wall: human_ms(st.probe_wall_ms),
        passes: st.passes,
        counts: counts_of(st.cells.iter()),
        pods_json: attr_json(&pods.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
        matrices,
        problems,
        listed,
        unlisted,
        problem_count: problem_cells.len(),
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
        decided: c.decided.clone(),
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
