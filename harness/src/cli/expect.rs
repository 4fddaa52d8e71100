//! `netpolc expect`: the oracle's truth tables per scenario, step and probe.

use indexmap::IndexMap;
use serde::Serialize;

use crate::model::Probe;
use crate::scenario::Scenario;

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
    allowed: IndexMap<String, IndexMap<String, bool>>,
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
                                .map(|probe| {
                                    let table = oracle.matrix(probe);
                                    let mut allowed: IndexMap<String, IndexMap<String, bool>> =
                                        IndexMap::new();
                                    for (f, t, v) in table.iter() {
                                        allowed
                                            .entry(f.to_string())
                                            .or_default()
                                            .insert(t.to_string(), *v);
                                    }
                                    JsonProbe {
                                        port: probe.port,
                                        protocol: probe.protocol,
                                        allowed,
                                    }
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
            if step.policies.is_empty() {
                out.push_str(" — no policies\n");
            } else {
                let names: Vec<String> = step.policies.iter().map(|p| p.key.to_string()).collect();
                out.push_str(&format!(" — policies: {}\n", names.join(", ")));
            }
            let oracle = step.oracle();
            for probe in step_probes(overrides, step) {
                let table = oracle.matrix(probe);
                let allowed = table.iter().filter(|c| *c.2).count();
                let total = table.pods().len().pow(2);
                out.push_str(&format!("  probe {probe}: {allowed}/{total} allowed\n"));
                for line in table.render_bool().lines() {
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
            match serde_json::to_string_pretty(&doc) {
                Ok(s) => emit(&format!("{s}\n")),
                Err(e) => {
                    eprintln!("error: cannot serialise: {e}");
                    return exit::BAD_INPUT;
                }
            }
        }
        Format::Table => emit(&render_tables(&loaded.scenarios, &args.probes)),
    }
    exit::OK
}
