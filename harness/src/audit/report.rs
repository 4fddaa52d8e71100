//! The audit document: what `audit --format json` prints, what the terminal shows and what
//! `--html FILE` writes. One [`AuditReport`] feeds all three, so they never disagree.
//!
//! JSON shape (stable keys; `allowed[from][to]` as in `expect`, but over classes):
//! `{"source", "cni", "summary", "classes": [{"name", "namespace", "workload": {"kind","name"},
//! "pods", "labels", "ports", "ingress_policies", "egress_policies"}], "findings": [{"severity",
//! "kind", "subject", "text", "classes"}], "probes": [{"port", "protocol", "allowed"}],
//! "excluded": [{"pod", "reason"}], "warnings", "observed"?}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::Environment;
use serde::Serialize;

use super::analysis::Analysis;
use super::exposure::{Finding, Severity, findings};
use super::group::Owner;
use super::probe::ProbeOutcome;
use super::snapshot::Excluded;
use crate::model::{Labels, PodRef, Protocol};

/// Where the state came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    /// `cluster` or `files`.
    pub kind: String,
    /// The context (`(current context)` when none was given) or the input path.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CniView {
    pub name: String,
    /// `null`: cannot be told from the outside.
    pub enforces: Option<bool>,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditSummary {
    pub namespaces: usize,
    pub pods: usize,
    pub classes: usize,
    pub policies: usize,
    pub excluded: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassView {
    pub name: String,
    pub namespace: String,
    pub workload: Owner,
    pub pods: Vec<PodRef>,
    pub labels: Labels,
    /// `80/TCP`, or `8080/TCP (http)` for a named port.
    pub ports: Vec<String>,
    /// `namespace/name` of the policies isolating it, per direction (empty: not isolated).
    pub ingress_policies: Vec<String>,
    pub egress_policies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeView {
    pub port: u16,
    pub protocol: Protocol,
    /// `allowed[from class][to class]`, every class on both axes.
    pub allowed: BTreeMap<String, BTreeMap<String, bool>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub source: SourceInfo,
    pub cni: Option<CniView>,
    pub summary: AuditSummary,
    pub classes: Vec<ClassView>,
    pub findings: Vec<Finding>,
    pub probes: Vec<ProbeView>,
    pub excluded: Vec<Excluded>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<ProbeOutcome>,
}

impl AuditReport {
    pub fn build(
        a: &Analysis<'_>,
        source: SourceInfo,
        cni: Option<CniView>,
        excluded: Vec<Excluded>,
        warnings: Vec<String>,
    ) -> Self {
        let classes: Vec<ClassView> = a
            .grouping
            .classes
            .iter()
            .zip(&a.isolation)
            .map(|(c, iso)| ClassView {
                name: c.name.clone(),
                namespace: c.namespace.clone(),
                workload: c.owner.clone(),
                pods: c.pods.clone(),
                labels: c.labels.clone(),
                ports: c
                    .ports
                    .iter()
                    .map(|p| match &p.name {
                        Some(n) => format!("{}/{} ({n})", p.port, p.protocol),
                        None => format!("{}/{}", p.port, p.protocol),
                    })
                    .collect(),
                ingress_policies: iso.ingress.iter().map(|p| p.to_string()).collect(),
                egress_policies: iso.egress.iter().map(|p| p.to_string()).collect(),
            })
            .collect();
        let probes = a
            .tables
            .iter()
            .map(|(probe, t)| {
                let mut allowed: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
                for (f, to, v) in t.iter() {
                    allowed
                        .entry(f.to_string())
                        .or_default()
                        .insert(to.to_string(), *v);
                }
                ProbeView {
                    port: probe.port,
                    protocol: probe.protocol,
                    allowed,
                }
            })
            .collect();
        AuditReport {
            source,
            cni,
            summary: AuditSummary {
                namespaces: a.model.namespaces.len(),
                pods: a.model.pods.len(),
                classes: classes.len(),
                policies: a.policies.len(),
                excluded: excluded.len(),
            },
            classes,
            findings: findings(a),
            probes,
            excluded,
            warnings,
            observed: None,
        }
    }

    /// The classes that declare a probe's port: the columns worth showing a person.
    fn serving(&self, port: u16, protocol: Protocol) -> Vec<&ClassView> {
        let tag = format!("{port}/{protocol}");
        self.classes
            .iter()
            .filter(|c| {
                c.ports
                    .iter()
                    .any(|p| p == &tag || p.starts_with(&format!("{tag} (")))
            })
            .collect()
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn pad(s: &str, w: usize) -> String {
    format!("{s:w$}")
}

/// An aligned text table; no trailing spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let mut l = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            l.push_str(&pad(c, w[i]));
            l.push_str("  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect(), &mut out);
    for r in rows {
        line(r.clone(), &mut out);
    }
    out
}

fn policies_cell(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

/// The terminal rendering.
pub fn render_text(r: &AuditReport) -> String {
    let mut out = String::new();
    let _ = write!(out, "netpolc audit: {} {}", r.source.kind, r.source.name);
    if let Some(s) = &r.source.step {
        let _ = write!(out, " (step {s})");
    }
    if let Some(v) = &r.source.kubernetes_version {
        let _ = write!(out, " (Kubernetes {v})");
    }
    out.push('\n');
    if let Some(c) = &r.cni {
        let how = match c.enforces {
            Some(true) => "enforces NetworkPolicy",
            Some(false) => "does NOT enforce NetworkPolicy",
            None => "may or may not enforce NetworkPolicy",
        };
        let _ = writeln!(out, "CNI: {} ({how}; {})", c.name, c.evidence);
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let s = &r.summary;
    let _ = writeln!(
        out,
        "\n{} ({} in {}), {}{}",
        plural(s.classes, "workload", "workloads"),
        plural(s.pods, "pod", "pods"),
        plural(s.namespaces, "namespace", "namespaces"),
        plural(s.policies, "NetworkPolicy", "NetworkPolicies"),
        if s.excluded > 0 {
            format!("; {} pods excluded (listed at the end)", s.excluded)
        } else {
            String::new()
        }
    );
    out.push_str("\nworkloads (pods no policy can tell apart, named by their owner)\n");
    let rows: Vec<Vec<String>> = r
        .classes
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.workload.to_string(),
                c.pods.len().to_string(),
                if c.ports.is_empty() {
                    "-".into()
                } else {
                    c.ports.join(" ")
                },
                policies_cell(&c.ingress_policies),
                policies_cell(&c.egress_policies),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "WORKLOAD",
            "OWNER",
            "PODS",
            "PORTS",
            "INGRESS POLICIES",
            "EGRESS POLICIES",
        ],
        &rows,
    ));
    out.push_str("\nfindings\n");
    if r.findings.is_empty() {
        out.push_str("  none\n");
    }
    for f in &r.findings {
        let mark = match f.severity {
            Severity::Warning => "!",
            Severity::Info => "-",
        };
        let _ = writeln!(out, "  {mark} {}", f.text);
    }
    out.push_str(
        "\nreachability per port (rows: sources; columns: the workloads that declare the port; \
         . allowed, X denied)\n",
    );
    for p in &r.probes {
        let cols = r.serving(p.port, p.protocol);
        let _ = writeln!(out, "  {}/{}", p.port, p.protocol);
        if cols.is_empty() {
            out.push_str("    (no workload declares this port)\n");
            continue;
        }
        let w0 = r.classes.iter().map(|c| c.name.len()).max().unwrap_or(1);
        let mut head = format!("    {:w0$}", "-");
        for c in &cols {
            let _ = write!(head, " {}", c.name);
        }
        out.push_str(head.trim_end());
        out.push('\n');
        for from in &r.classes {
            let mut line = format!("    {:w0$}", from.name);
            for c in &cols {
                let v = p
                    .allowed
                    .get(&from.name)
                    .and_then(|row| row.get(&c.name))
                    .copied()
                    .unwrap_or(false);
                let _ = write!(line, " {}", pad(if v { "." } else { "X" }, c.name.len()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    if let Some(o) = &r.observed {
        out.push('\n');
        out.push_str(&super::probe::render_text(o));
    }
    if !r.excluded.is_empty() {
        out.push_str("\nexcluded pods\n");
        for e in &r.excluded {
            let _ = writeln!(out, "  {}: {}", e.pod, e.reason);
        }
    }
    out
}

const TEMPLATE: &str = include_str!("assets/audit.html");
const BASE_CSS: &str = include_str!("../report/assets/report.css");
const EXTRA_CSS: &str = include_str!("assets/audit.css");

#[derive(Serialize)]
struct HtmlMatrix {
    probe: String,
    cols: Vec<String>,
    rows: Vec<(String, Vec<bool>)>,
}

#[derive(Serialize)]
struct HtmlView<'a> {
    r: &'a AuditReport,
    css: String,
    css_hash: String,
    version: &'static str,
    matrices: Vec<HtmlMatrix>,
    observed_text: Option<String>,
}

/// The self-contained page (`--html FILE`): the run report's stylesheet plus a few rules, no
/// script, a Content-Security-Policy that admits only that inline style.
pub fn render_html(r: &AuditReport) -> String {
    let css = format!("{BASE_CSS}{EXTRA_CSS}");
    let matrices = r
        .probes
        .iter()
        .map(|p| {
            let cols = r.serving(p.port, p.protocol);
            HtmlMatrix {
                probe: format!("{}/{}", p.port, p.protocol),
                cols: cols.iter().map(|c| c.name.clone()).collect(),
                rows: r
                    .classes
                    .iter()
                    .map(|from| {
                        let row = p.allowed.get(&from.name);
                        (
                            from.name.clone(),
                            cols.iter()
                                .map(|c| row.and_then(|x| x.get(&c.name)).copied().unwrap_or(false))
                                .collect(),
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    let view = HtmlView {
        r,
        css_hash: crate::report::html::csp_hash(&css),
        css,
        version: env!("CARGO_PKG_VERSION"),
        matrices,
        observed_text: r.observed.as_ref().map(super::probe::render_text),
    };
    let mut env = Environment::new();
    let rendered = env
        .add_template("audit.html", TEMPLATE)
        .and_then(|()| env.get_template("audit.html"))
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&view))));
    match rendered {
        Ok(html) => html + "\n",
        Err(e) => format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>netpolc audit \
             error</title></head><body><h1>The audit page could not be rendered</h1><p>{}</p>\
             <p><code>netpolc audit --format json</code> prints the same data.</p></body></html>\n",
            minijinja::HtmlEscape(&format!("{e:#}"))
        ),
    }
}
