//! `netpolc expect`: the oracle's truth tables per scenario, step and probe.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::model::{PodRef, Probe};
use crate::scenario::Scenario;
use crate::truthtable::TruthTable;

use super::{ExpectArgs, Format, emit, exit};

#[derive(Serialize)]
struct JsonDoc {
    scenarios: Vec<JsonScenario>,
}

#[derive(Serialize)]
struct JsonScenario {
    name: String,
    source: String,
    steps: Vec<JsonStep>,
}

#[derive(Serialize)]
struct JsonStep {
    name: String,
    probes: Vec<JsonProbe>,
}

#[derive(Serialize)]
struct JsonProbe {
    port: u16,
    protocol: crate::model::Protocol,
    allowed: Allowed,
}

/// `allowed[from][to]`, written straight from the truth table: a 1,000-pod step has a million
/// cells per probe, too many to copy into maps of strings first. `null` where the API leaves the
/// answer to the implementation.
struct Allowed(TruthTable<Option<bool>>);

impl Serialize for Allowed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pods = self.0.pods();
        let cells: Vec<(&PodRef, &Option<bool>)> =
            self.0.iter().map(|(_, to, v)| (to, v)).collect();
        let mut map = s.serialize_map(Some(pods.len()))?;
        if !pods.is_empty() {
            for (from, row) in pods.iter().zip(cells.chunks(pods.len())) {
                map.serialize_entry(&from.to_string(), &Row(row))?;
            }
        }
        map.end()
    }
}

/// One source pod's row: destination → allowed, in the table's pod order.
struct Row<'a>(&'a [(&'a PodRef, &'a Option<bool>)]);

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (to, v) in self.0 {
            map.serialize_entry(&to.to_string(), v)?;
        }
        map.end()
    }
}

/// The probes of a step: `--probe` flags when given, else the step's own.
pub(crate) fn step_probes(overrides: &[Probe], step: &crate::scenario::Step) -> Vec<Probe> {
    if overrides.is_empty() {
        step.probes.clone()
    } else {
        overrides.to_vec()
    }
}

fn to_json(scenarios: &[Scenario], overrides: &[Probe]) -> JsonDoc {
    JsonDoc {
        scenarios: scenarios
            .iter()
            .map(|s| JsonScenario {
                name: s.name.clone(),
                source: s.source.clone(),
                steps: s
                    .steps
                    .iter()
                    .map(|step| {
                        let oracle = step.oracle();
                        JsonStep {
                            name: step.name.clone(),
                            probes: step_probes(overrides, step)
                                .into_iter()
                                .map(|probe| JsonProbe {
                                    port: probe.port,
                                    protocol: probe.protocol,
                                    allowed: Allowed(oracle.expected_matrix(probe)),
                                })
                                .collect(),
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Upstream-style tables (`.` allowed, `X` denied) for every scenario, step and probe.
pub fn render_tables(scenarios: &[Scenario], overrides: &[Probe]) -> String {
    let mut out = String::new();
    for s in scenarios {
        out.push_str(&format!("scenario {} ({})\n", s.name, s.source));
        for step in &s.steps {
            out.push_str(&format!("  step {}", step.name));
            if step.policies.is_empty() && step.cluster_policies.is_empty() {
                out.push_str(" — no policies\n");
            } else {
                let names: Vec<String> = step
                    .policies
                    .iter()
                    .map(|p| p.key.to_string())
                    .chain(step.cluster_policies.iter().map(|p| {
                        format!("{} ({}, priority {})", p.key, p.tier, p.priority_label())
                    }))
                    .collect();
                out.push_str(&format!(" — policies: {}\n", names.join(", ")));
            }
            let oracle = step.oracle();
            for probe in step_probes(overrides, step) {
                let table = oracle.expected_matrix(probe);
                let allowed = table.iter().filter(|c| *c.2 == Some(true)).count();
                let undefined = table.iter().filter(|c| c.2.is_none()).count();
                let total = table.pods().len().pow(2);
                out.push_str(&format!("  probe {probe}: {allowed}/{total} allowed"));
                if undefined > 0 {
                    out.push_str(&format!(", {undefined} implementation-defined (?)"));
                }
                out.push('\n');
                let rendered = table.render(|v| match v {
                    Some(true) => ".".into(),
                    Some(false) => "X".into(),
                    None => "?".into(),
                });
                for line in rendered.lines() {
                    out.push_str("    ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out.push('\n');
    }
    out
}

pub fn run(args: ExpectArgs) -> u8 {
    let loaded = match super::load_checked(&args.paths) {
        Ok(l) => l,
        Err(code) => return code,
    };
    match args.format {
        Format::Json => {
            let doc = to_json(&loaded.scenarios, &args.probes);
            // Streamed: the document of a large model is hundreds of megabytes.
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = serde_json::to_writer_pretty(&mut out, &doc)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush());
            if let Err(code) = super::output_status(written) {
                return code;
            }
        }
        Format::Table => {
            if let Err(code) = emit(&render_tables(&loaded.scenarios, &args.probes)) {
                return code;
            }
        }
    }
    exit::OK
}
