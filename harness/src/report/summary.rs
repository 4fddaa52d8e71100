//! The GitHub job summary (`netpolc run --summary-md FILE`): verdict, counts, failing features
//! and the failing cells as small tables per step.
//!
//! Kept short on purpose — GitHub shows it on the run's page and truncates large summaries — so
//! each step's table is capped at [`MAX_ROWS_PER_STEP`] rows and at most [`MAX_STEPS`] steps are
//! listed, each cap saying how many were left out. report.html has everything.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::diff::cell_features;
use super::html::{expected_word, human_ms, observed_word, outcome_str, verdict_text};
use super::model::{CellReport, RunReport, Verdict};
use crate::probe::Outcome;

/// Rows of one step's failing-cell table before "… and N more".
pub const MAX_ROWS_PER_STEP: usize = 10;
/// Steps with failing cells listed before "… and N more steps".
pub const MAX_STEPS: usize = 20;
/// Warnings listed before "… and N more".
const MAX_WARNINGS: usize = 10;

/// A cell the summary lists: it failed or could not be probed. Flaky cells passed on a retry
/// (JUnit: passed with reruns) and are only counted.
fn is_failing(c: &CellReport) -> bool {
    matches!(c.outcome, Outcome::Fail | Outcome::Error)
}

/// Escapes text for a Markdown table cell: Markdown punctuation and HTML (GitHub renders some
/// inline HTML, and a pod name must never become an element).
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A code span (literal text, no HTML), or escaped text when the value cannot be one.
fn code(s: &str) -> String {
    if s.is_empty() || s.contains(['`', '\n', '\r']) {
        text(s)
    } else {
        format!("`{}`", s.replace('|', "\\|"))
    }
}

fn icon(v: Verdict) -> &'static str {
    match v {
        Verdict::Conformant => "✅",
        Verdict::NonConformant => "❌",
        Verdict::PoliciesIgnored => "⚠️",
        Verdict::Error => "❗",
    }
}

/// The failing features: the report's own list, or — when the engine left it empty although
/// cells failed — the ones `netpolc diff` derives from the failing cells.
fn failing_features(r: &RunReport) -> Vec<String> {
    if !r.failing_features.is_empty() {
        return r.failing_features.clone();
    }
    let mut fs = BTreeSet::new();
    for sc in &r.scenarios {
        for st in &sc.steps {
            for c in st.cells.iter().filter(|c| is_failing(c)) {
                fs.extend(cell_features(sc, st, c));
            }
        }
    }
    fs.into_iter().map(|f| f.as_str().to_string()).collect()
}

/// Renders the job summary. Deterministic: same report, same bytes.
pub fn render_markdown(r: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## {} NetworkPolicy conformance: {}\n",
        icon(r.verdict),
        r.verdict
    );
    let _ = writeln!(out, "{}\n", text(verdict_text(r.verdict)));
    let mut facts = vec![
        format!("provider {}", code(&r.provider)),
        format!("CNI {}", code(&r.cni)),
    ];
    if let Some(v) = r.environment.get("cni_version") {
        facts.push(format!("CNI version {}", code(v)));
    }
    if let Some(v) = r.environment.get("kubernetes_version") {
        facts.push(format!("Kubernetes {}", code(v)));
    }
    if !r.harness_version.is_empty() {
        facts.push(format!("netpolc {}", code(&r.harness_version)));
    }
    if !r.run_id.is_empty() {
        facts.push(format!("run {}", code(&r.run_id)));
    }
    facts.push(format!("took {}", human_ms(r.duration_ms)));
    let _ = writeln!(out, "{}\n", facts.join(" · "));

    let s = &r.summary;
    let _ = writeln!(
        out,
        "| cells | passed | failed | flaky | unsupported | errors |\n\
         |---:|---:|---:|---:|---:|---:|\n\
         | {} | {} | {} | {} | {} | {} |\n",
        s.cells, s.passed, s.failed, s.flaky, s.unsupported, s.errors
    );
    if s.flaky > 0 {
        let _ = writeln!(
            out,
            "{} flaky cell(s) were wrong at first and right on a retry (JUnit: passed, with reruns).\n",
            s.flaky
        );
    }

    let features = failing_features(r);
    if !features.is_empty() {
        let list: Vec<String> = features.iter().map(|f| code(f)).collect();
        let _ = writeln!(out, "**Failing features:** {}\n", list.join(", "));
    }
    if !r.faults.is_empty() {
        let list: Vec<String> = r.faults.iter().map(|f| code(f)).collect();
        let _ = writeln!(out, "**Faults injected:** {}\n", list.join(", "));
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(out, "**Warnings:**\n");
        for w in r.warnings.iter().take(MAX_WARNINGS) {
            let _ = writeln!(out, "- {}", text(w));
        }
        if r.warnings.len() > MAX_WARNINGS {
            let _ = writeln!(out, "- … and {} more", r.warnings.len() - MAX_WARNINGS);
        }
        out.push('\n');
    }

    let steps: Vec<_> = r
        .scenarios
        .iter()
        .flat_map(|sc| sc.steps.iter().map(move |st| (sc, st)))
        .filter(|(_, st)| st.cells.iter().any(is_failing))
        .collect();
    if steps.is_empty() {
        return out;
    }
    let _ = writeln!(out, "### Failing cells\n");
    for (sc, st) in steps.iter().take(MAX_STEPS) {
        let mut failing: Vec<&CellReport> = st.cells.iter().filter(|c| is_failing(c)).collect();
        failing.sort_by(|x, y| {
            (x.port, x.protocol, &x.from, &x.to).cmp(&(y.port, y.protocol, &y.from, &y.to))
        });
        let convergence = st.convergence_ms.map_or_else(
            || "never converged".to_string(),
            |ms| format!("converged after {}", human_ms(ms)),
        );
        let _ = writeln!(
            out,
            "**{}** › **{}**: {} of {} cells failing, {convergence}\n",
            text(&sc.name),
            text(&st.name),
            failing.len(),
            st.cells.len()
        );
        let _ = writeln!(
            out,
            "| from | to | probe | expected | observed | outcome | attempts |\n\
             |---|---|---|---|---|---|---:|"
        );
        for c in failing.iter().take(MAX_ROWS_PER_STEP) {
            let _ = writeln!(
                out,
                "| {} | {} | {}/{} | {} | {} ({}) | **{}** | {} |",
                code(&c.from.to_string()),
                code(&c.to.to_string()),
                c.port,
                c.protocol,
                expected_word(c.expected),
                observed_word(c.observed),
                c.connectivity.describe(),
                outcome_str(c.outcome),
                c.attempts
            );
        }
        if failing.len() > MAX_ROWS_PER_STEP {
            let _ = writeln!(
                out,
                "\n_… and {} more failing cells in this step (see report.html)_",
                failing.len() - MAX_ROWS_PER_STEP
            );
        }
        out.push('\n');
    }
    if steps.len() > MAX_STEPS {
        let _ = writeln!(
            out,
            "_… and {} more steps with failing cells (see report.html)_",
            steps.len() - MAX_STEPS
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_neutralises_markdown_and_html() {
        assert_eq!(
            text("a|b <img src=x> *c* [l](u) `d`\nnext"),
            "a\\|b &lt;img src=x&gt; \\*c\\* \\[l\\](u) \\`d\\` next"
        );
    }

    #[test]
    fn code_spans_escape_pipes_and_fall_back_for_backticks() {
        assert_eq!(code("x/a|b"), "`x/a\\|b`");
        assert_eq!(code("a`b"), "a\\`b");
        assert_eq!(code("<b>"), "`<b>`");
    }
}
