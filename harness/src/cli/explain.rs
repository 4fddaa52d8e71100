//! `netpolc explain`: one cell of the oracle and why.

use crate::policy::explain::render;

use super::{ExplainArgs, Format, emit, exit};

pub fn run(args: ExplainArgs) -> u8 {
    let loaded = match super::load_checked(std::slice::from_ref(&args.path)) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let scenario = match &args.scenario {
        Some(name) => loaded.scenarios.iter().find(|s| &s.name == name),
        None => loaded.scenarios.first(),
    };
    let Some(scenario) = scenario else {
        eprintln!(
            "error: no scenario {:?} in {}",
            args.scenario.unwrap_or_default(),
            args.path.display()
        );
        return exit::BAD_INPUT;
    };
    let step = match &args.step {
        Some(name) => scenario.steps.iter().find(|s| &s.name == name),
        None => scenario.steps.last(),
    };
    let Some(step) = step else {
        let names: Vec<&str> = scenario.steps.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "error: no step {:?} in scenario {} (steps: {})",
            args.step.unwrap_or_default(),
            scenario.name,
            names.join(", ")
        );
        return exit::BAD_INPUT;
    };
    let Some(decision) = step.explain(&args.from, &args.to, args.probe) else {
        let missing = if step.model.pod(&args.from).is_none() {
            &args.from
        } else {
            &args.to
        };
        eprintln!(
            "error: no pod {missing} in step {} of scenario {}",
            step.name, scenario.name
        );
        return exit::BAD_INPUT;
    };
    let written = match args.format {
        Format::Json => match serde_json::to_string_pretty(&decision) {
            Ok(s) => emit(&format!("{s}\n")),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::BAD_INPUT;
            }
        },
        Format::Table => emit(&render(&decision, step)),
    };
    match written {
        Ok(()) => exit::OK,
        Err(code) => code,
    }
}
