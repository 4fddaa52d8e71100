//! Terminal output: a line per step, truth tables where something went wrong, a live progress line
//! (on a TTY only) and a final summary.
//!
//! Summarised by default: a step whose every cell passed (or is unsupported) is one line, so the
//! shipped suite prints about a hundred lines, not thousands. A step with differing, flaky or
//! erroring cells also prints, per probe, the expected, observed and comparison tables (up to
//! [`NORMAL_TABLE_PODS`] pods per axis) and the differing cells (the command that reproduces
//! each). `-v` prints every table of every step, whatever its size.
//!
//! Tables use upstream's legend (`.` allowed, `X` blocked) and, for comparisons, `.` as expected,
//! `X` differs, plus `~` flaky (wrong, then right on a retry), `?` unsupported and `E` probe error.
//!
//! A closed stdout (`netpolc run … | head -1`) is not an error: the run goes on, and the final
//! summary with the verdict goes to stderr instead, so it is still seen.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use crate::model::{PodRef, Probe};
use crate::probe::Outcome;
use crate::report::model::{CellReport, RunReport, StepReport, Verdict};
use crate::run::{Event, Reporter};
use crate::service::ProbeMode;
use crate::truthtable::TruthTable;

/// How much to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Only the verdict line.
    Quiet,
    /// A line per step; for steps where something went wrong, the tables of the wrong probes
    /// (at most [`NORMAL_TABLE_PODS`] pods per axis) and the wrong cells; the summary.
    #[default]
    Normal,
    /// Every table of every step, whatever its size.
    Verbose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TerminalOptions {
    pub verbosity: Verbosity,
    /// ANSI colours (the CLI sets this only on a TTY without `NO_COLOR`).
    pub color: bool,
    /// A live, rewritten progress line on stderr (TTY only).
    pub progress: bool,
}

/// Largest axis (pods) whose tables a wrong step prints in normal verbosity: a 40-pod table is
/// about 200 columns wide; beyond that only the wrong cells are listed (`-v` prints the tables,
/// report.html draws them).
pub const NORMAL_TABLE_PODS: usize = 40;

/// Differing cells listed per probe before the list is cut short.
const MAX_LISTED: usize = 20;

/// One probe's cells of a step probed one way (`via`), on a square table over the step's pods.
pub struct ProbeTable<'a> {
    pub probe: Probe,
    pub via: ProbeMode,
    pub table: TruthTable<Option<&'a CellReport>>,
}

impl ProbeTable<'_> {
    /// The table's name in headings and JUnit test names: `80/TCP` probed at pod addresses (the
    /// default, so names of runs without `--probe-mode` stay what CI already tracks), else
    /// `80/TCP via service-ip`.
    pub fn label(&self) -> String {
        probe_label(self.probe, self.via)
    }

    pub fn cells(&self) -> impl Iterator<Item = &CellReport> {
        self.table.iter().filter_map(|(_, _, c)| *c)
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.cells().filter(|c| c.outcome == outcome).count()
    }

    /// Whether the tables are worth printing: something other than pass/unsupported.
    pub fn notable(&self) -> bool {
        self.cells()
            .any(|c| matches!(c.outcome, Outcome::Fail | Outcome::Flaky | Outcome::Error))
    }

    /// `.` allowed / `X` blocked, as the oracle requires.
    pub fn render_expected(&self) -> String {
        render_grid(&self.table, |c| match c {
            Some(c) if c.expected == Some(true) => ".".into(),
            // Implementation-defined: the oracle has no answer.
            Some(c) if c.expected.is_none() => "?".into(),
            Some(_) => "X".into(),
            None => " ".into(),
        })
    }

    /// `.` allowed / `X` blocked as observed; `?` unsupported, `E` error.
    pub fn render_observed(&self) -> String {
        render_grid(&self.table, |c| match c {
            None => " ".into(),
            Some(c) => match (c.outcome, c.observed) {
                (Outcome::Unsupported, _) => "?".into(),
                (_, Some(true)) => ".".into(),
                (_, Some(false)) => "X".into(),
                (_, None) => "E".into(),
            },
        })
    }

    /// `.` as expected, `X` differs, `~` flaky, `?` unsupported, `E` error.
    pub fn render_comparison(&self) -> String {
        render_grid(&self.table, |c| match c {
            None => " ".into(),
            Some(c) => outcome_mark(c.outcome).into(),
        })
    }
}

/// Upstream's layout, space-aligned: see [`TruthTable::render`].
pub fn render_grid<T>(table: &TruthTable<T>, mark: impl FnMut(&T) -> String) -> String {
    table.render(mark)
}

pub fn outcome_mark(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => ".",
        Outcome::Fail => "X",
        Outcome::Flaky => "~",
        Outcome::Unsupported => "?",
        Outcome::Error => "E",
    }
}

/// See [`ProbeTable::label`].
pub fn probe_label(probe: Probe, via: ProbeMode) -> String {
    if via == ProbeMode::PodIp {
        probe.to_string()
    } else {
        format!("{probe} via {via}")
    }
}

/// Groups a step's cells by probe and mode (in first-appearance order) onto tables over the
/// step's pods.
pub fn probe_tables(step: &StepReport) -> Vec<ProbeTable<'_>> {
    let mut pods: Vec<PodRef> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in &step.cells {
        for p in [&c.from, &c.to] {
            if seen.insert(p.clone()) {
                pods.push(p.clone());
            }
        }
    }
    pods.sort();
    let mut order: Vec<(ProbeMode, Probe)> = Vec::new();
    type Cells<'c> = BTreeMap<(&'c PodRef, &'c PodRef), &'c CellReport>;
    let mut by_probe: BTreeMap<(ProbeMode, Probe), Cells<'_>> = BTreeMap::new();
    for c in &step.cells {
        let key = (c.via, Probe::new(c.port, c.protocol));
        if !by_probe.contains_key(&key) {
            order.push(key);
        }
        by_probe.entry(key).or_default().insert((&c.from, &c.to), c);
    }
    order
        .into_iter()
        .map(|(via, probe)| {
            let cells = &by_probe[&(via, probe)];
            ProbeTable {
                probe,
                via,
                table: TruthTable::from_fn(pods.clone(), |i, j| {
                    cells.get(&(&pods[i], &pods[j])).copied()
                }),
            }
        })
        .collect()
}

fn word(b: bool) -> &'static str {
    if b { "allowed" } else { "blocked" }
}

fn expected(e: Option<bool>) -> &'static str {
    e.map_or("implementation-defined", word)
}

/// One line describing a non-passing cell.
pub fn describe_cell(c: &CellReport) -> String {
    let mut s = format!(
        "{} -> {} {}: ",
        c.from,
        c.to,
        probe_label(Probe::new(c.port, c.protocol), c.via)
    );
    match c.outcome {
        Outcome::Fail => {
            let _ = write!(
                s,
                "expected {}, observed {} ({})",
                expected(c.expected),
                c.observed.map_or("nothing", word),
                c.connectivity.describe()
            );
        }
        Outcome::Flaky => {
            let first = c.history.first().map_or("?", |a| a.connectivity.describe());
            let _ = write!(
                s,
                "flaky: expected {}, first attempt {first}, right after {} attempts",
                expected(c.expected),
                c.attempts
            );
        }
        Outcome::Error => {
            let _ = write!(s, "probe error after {} attempts", c.attempts);
        }
        Outcome::Unsupported => s.push_str("unsupported"),
        Outcome::Pass => {
            let _ = write!(s, "{} as expected", expected(c.expected));
        }
    }
    if let Some(d) = &c.detail {
        let _ = write!(s, " — {d}");
    }
    if let Some(d) = &c.decided {
        let _ = write!(s, " — decided by {d}");
    }
    if !c.features.is_empty() {
        let _ = write!(s, " [{}]", c.features.join(", "));
    }
    s
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn verdict(&self, v: Verdict) -> String {
        let code = match v {
            Verdict::Conformant => "1;32",
            Verdict::Error => "1;33",
            _ => "1;31",
        };
        self.wrap(code, v.as_str())
    }
}

/// A line per probe of a step; for probes whose cells are not all plain passes the expected /
/// observed / comparison tables (when the axis has at most `max_pods` pods) and the differing
/// cells; with `all`, also the observed table of every other probe.
pub fn render_probe_tables(step: &StepReport, all: bool, max_pods: usize) -> String {
    let mut out = String::new();
    for t in probe_tables(step) {
        let pods = t.table.pods().len();
        let n = t.cells().count();
        let (fail, flaky, err, unsup) = (
            t.count(Outcome::Fail),
            t.count(Outcome::Flaky),
            t.count(Outcome::Error),
            t.count(Outcome::Unsupported),
        );
        let mut parts = Vec::new();
        if fail > 0 {
            parts.push(format!("{fail} differ"));
        }
        if flaky > 0 {
            parts.push(format!("{flaky} flaky"));
        }
        if err > 0 {
            parts.push(format!("{err} errors"));
        }
        if unsup > 0 {
            parts.push(format!("{unsup} unsupported"));
        }
        if parts.is_empty() {
            parts.push("as expected".into());
        }
        let _ = writeln!(out, "  {} ({n} cells): {}", t.label(), parts.join(", "));
        if t.notable() {
            if pods <= max_pods {
                out.push_str("    expected:\n");
                out.push_str(&indent(&t.render_expected(), "      "));
                out.push_str("    observed:\n");
                out.push_str(&indent(&t.render_observed(), "      "));
                out.push_str(
                    "    comparison (. as expected, X differs, ~ flaky, ? unsupported, E error):\n",
                );
                out.push_str(&indent(&t.render_comparison(), "      "));
            } else {
                let _ = writeln!(
                    out,
                    "    ({pods} × {pods} tables not printed: -v prints them, report.html draws them)"
                );
            }
            let odd: Vec<&CellReport> = t
                .cells()
                .filter(|c| matches!(c.outcome, Outcome::Fail | Outcome::Flaky | Outcome::Error))
                .collect();
            for c in odd.iter().take(MAX_LISTED) {
                let _ = writeln!(out, "    {}", describe_cell(c));
                if c.outcome != Outcome::Flaky && !c.command.is_empty() {
                    let _ = writeln!(out, "      reproduce: {}", c.command);
                }
            }
            if odd.len() > MAX_LISTED {
                let _ = writeln!(out, "    … and {} more", odd.len() - MAX_LISTED);
            }
        } else if all {
            if unsup == n {
                if let Some(d) = t.cells().find_map(|c| c.detail.as_deref()) {
                    let _ = writeln!(out, "    {d}");
                }
            } else if pods <= max_pods {
                out.push_str(&indent(&t.render_observed(), "    "));
            }
        }
    }
    out
}

/// The line heading a step: its counts, convergence and pass timing.
pub fn render_step_line(scenario: &str, step: &StepReport) -> String {
    let count = |o: Outcome| step.cells.iter().filter(|c| c.outcome == o).count();
    let mut parts = vec![format!("{} pass", count(Outcome::Pass))];
    for (o, name) in [
        (Outcome::Fail, "fail"),
        (Outcome::Flaky, "flaky"),
        (Outcome::Unsupported, "unsupported"),
        (Outcome::Error, "error"),
    ] {
        let n = count(o);
        if n > 0 {
            parts.push(format!("{n} {name}"));
        }
    }
    let conv = match step.convergence_ms {
        Some(ms) => format!("converged after {ms} ms"),
        None => "never converged".into(),
    };
    let passes = if step.passes == 1 { "pass" } else { "passes" };
    format!(
        "{scenario} › {}: {} cells, {} ({conv}; {} {passes}, last {} ms)",
        step.name,
        step.cells.len(),
        parts.join(", "),
        step.passes,
        step.probe_wall_ms
    )
}

/// The final summary: verdict, counts, failing features, unsupported probes, warnings.
pub fn render_summary(report: &RunReport, opts: TerminalOptions) -> String {
    let paint = Paint(opts.color);
    let mut out = String::new();
    let mut env = format!("{}/{}", report.provider, report.cni);
    if !report.faults.is_empty() {
        let _ = write!(env, ", faults: {}", report.faults.join(", "));
    }
    let verdict_line = format!("verdict: {} ({env})\n", paint.verdict(report.verdict));
    if opts.verbosity == Verbosity::Quiet {
        return verdict_line;
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "cells: {} — {} passed, {} failed, {} flaky, {} unsupported, {} errors",
        s.cells, s.passed, s.failed, s.flaky, s.unsupported, s.errors
    );
    if !report.failing_features.is_empty() {
        let _ = writeln!(
            out,
            "failing features: {}",
            report.failing_features.join(", ")
        );
    }
    // Unsupported probes, listed once each with the provider's reason.
    let mut unsupported: BTreeMap<(ProbeMode, Probe), (usize, Option<&str>)> = BTreeMap::new();
    for c in report
        .scenarios
        .iter()
        .flat_map(|s| &s.steps)
        .flat_map(|s| &s.cells)
        .filter(|c| c.outcome == Outcome::Unsupported)
    {
        let e = unsupported
            .entry((c.via, Probe::new(c.port, c.protocol)))
            .or_insert((0, None));
        e.0 += 1;
        if e.1.is_none() {
            e.1 = c.detail.as_deref();
        }
    }
    for ((via, probe), (n, why)) in &unsupported {
        let _ = writeln!(
            out,
            "unsupported: {} ({n} cells){}",
            probe_label(*probe, *via),
            why.map(|w| format!(": {w}")).unwrap_or_default()
        );
    }
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out.push_str(&clusters_section(report));
    out.push_str(&verdict_line);
    if !report.gaps.is_empty() && report.verdict == crate::report::model::Verdict::Conformant {
        let names: Vec<&str> = report.gaps.iter().map(|g| g.feature.as_str()).collect();
        let _ = writeln!(
            out,
            "  ({} is conformant except its catalogued gaps: {})",
            report.cni,
            names.join(", ")
        );
    }
    out
}

/// Real clusters (kind developer's section): the CNI's catalogued gaps and where the time went.
fn clusters_section(report: &RunReport) -> String {
    let mut out = String::new();
    for g in &report.gaps {
        let _ = writeln!(
            out,
            "catalogued gap of {}: {} — {} cells not judged: {}",
            report.cni, g.feature, g.cells, g.reason
        );
    }
    let p = &report.phases;
    // Real runs only: locally the whole run takes seconds and its summary stays as it was.
    if !p.is_empty() && report.provider != "local" {
        let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
        let mut parts = Vec::new();
        if let Some(c) = p.cluster_ms {
            parts.push(format!("cluster {}", secs(c)));
        }
        if let Some(c) = p.cni_ms {
            parts.push(format!("CNI {}", secs(c)));
        }
        parts.push(format!("pods {}", secs(p.pods_ms)));
        parts.push(format!("convergence {}", secs(p.convergence_ms)));
        parts.push(format!("probing {}", secs(p.probing_ms)));
        let _ = writeln!(
            out,
            "time: {} (pods, convergence and probing summed over parallel scenarios; run {})",
            parts.join(", "),
            secs(report.duration_ms)
        );
    }
    out
}

/// Draws the event stream on a terminal: step results and tables on `out`, progress on `err`.
pub struct TerminalReporter {
    out: Box<dyn Write + Send>,
    err: Box<dyn Write + Send>,
    opts: TerminalOptions,
    progress_visible: bool,
    /// (scenario index, step index) → scenario name and step name, for the progress line.
    running: BTreeMap<(usize, usize), String>,
    /// A write to `out` failed (closed pipe): stop writing there, and give the final summary to
    /// `err` so the verdict is still seen.
    out_gone: bool,
}

impl TerminalReporter {
    pub fn new(
        out: Box<dyn Write + Send>,
        err: Box<dyn Write + Send>,
        opts: TerminalOptions,
    ) -> Self {
        TerminalReporter {
            out,
            err,
            opts,
            progress_visible: false,
            running: BTreeMap::new(),
            out_gone: false,
        }
    }

    /// Whether stdout (the `out` stream) stopped accepting output during the run.
    pub fn out_gone(&self) -> bool {
        self.out_gone
    }

    /// stdout and stderr.
    pub fn stdio(opts: TerminalOptions) -> Self {
        TerminalReporter::new(
            Box::new(std::io::stdout()),
            Box::new(std::io::stderr()),
            opts,
        )
    }

    fn clear_progress(&mut self) {
        if self.progress_visible {
            let _ = write!(self.err, "\r\x1b[2K");
            let _ = self.err.flush();
            self.progress_visible = false;
        }
    }

    fn show_progress(&mut self, line: &str) {
        if !self.opts.progress || self.opts.verbosity == Verbosity::Quiet {
            return;
        }
        let _ = write!(self.err, "\r\x1b[2K{line}");
        let _ = self.err.flush();
        self.progress_visible = true;
    }

    fn print(&mut self, text: &str) {
        self.clear_progress();
        if self.out_gone {
            return;
        }
        if self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .is_err()
        {
            self.out_gone = true;
        }
    }
}

impl Reporter for TerminalReporter {
    fn event(&mut self, event: &Event) {
        let quiet = self.opts.verbosity == Verbosity::Quiet;
        match event {
            Event::RunStarted { info, .. } => {
                if !quiet {
                    for w in &info.warnings {
                        self.clear_progress();
                        let _ = writeln!(self.err, "warning: {w}");
                    }
                }
            }
            Event::StepStarted {
                scenario,
                scenario_name,
                step,
                step_name,
                cells,
                ..
            } => {
                let label = format!("{scenario_name} › {step_name} ({cells} cells)");
                self.running.insert((*scenario, *step), label.clone());
                self.show_progress(&format!("running {label}"));
            }
            Event::PassFinished {
                scenario,
                step,
                pass,
                mismatches,
                wall_ms,
            } => {
                if let Some(label) = self.running.get(&(*scenario, *step)).cloned() {
                    self.show_progress(&format!(
                        "running {label}: pass {pass} took {wall_ms} ms, {mismatches} cells differ"
                    ));
                }
            }
            Event::StepFinished {
                scenario,
                scenario_name,
                step,
                report,
            } => {
                self.running.remove(&(*scenario, *step));
                if quiet {
                    return;
                }
                let mut text = render_step_line(scenario_name, report);
                text.push('\n');
                let verbose = self.opts.verbosity == Verbosity::Verbose;
                let wrong = report
                    .cells
                    .iter()
                    .any(|c| matches!(c.outcome, Outcome::Fail | Outcome::Flaky | Outcome::Error));
                if verbose {
                    text.push_str(&render_probe_tables(report, true, usize::MAX));
                } else if wrong {
                    text.push_str(&render_probe_tables(report, false, NORMAL_TABLE_PODS));
                }
                self.print(&text);
            }
            Event::Interrupted { reason } => {
                self.clear_progress();
                let _ = writeln!(self.err, "stopping: {reason}; tearing down");
            }
            Event::RunFinished { report } => {
                let text = render_summary(report, self.opts);
                self.print(&text);
                if self.out_gone {
                    // Plain text: stderr may be a file even when stdout was a terminal.
                    let plain = render_summary(
                        report,
                        TerminalOptions {
                            color: false,
                            ..self.opts
                        },
                    );
                    let _ = self.err.write_all(plain.as_bytes());
                    let _ = self.err.flush();
                }
            }
            Event::ScenarioStarted { .. }
            | Event::CellFinished { .. }
            | Event::ScenarioFinished { .. } => {}
        }
    }
}
