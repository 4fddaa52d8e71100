//! `netpolc what-if STATE --add FILE… --delete NS/NAME…`: the cells a policy change flips.
//!
//! Exit statuses: 0 on success (2 on bad input or usage); with `--exit-code`, 1 when any cell
//! flips (like `git diff --exit-code`), so a pipeline can stop a change that opens or closes
//! something.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use crate::audit::whatif::{self, WhatIfReport};
use crate::model::Probe;
use crate::policy::{CompiledPolicy, PolicyRef};

use super::{Format, emit, exit};

#[derive(Debug, Args)]
pub struct WhatIfArgs {
    /// The current state: a dump (`kubectl get … -A -o yaml`), a manifest or a scenario file.
    pub state: PathBuf,
    /// A file of NetworkPolicies to add (repeatable); one with an existing namespace/name
    /// replaces it, as `kubectl apply` would.
    #[arg(long = "add", value_name = "FILE")]
    pub add: Vec<PathBuf>,
    /// A NetworkPolicy to delete, NAMESPACE/NAME (repeatable).
    #[arg(long = "delete", value_name = "NS/NAME")]
    pub delete: Vec<String>,
    /// Scenario step to start from (default: the last).
    #[arg(long)]
    pub step: Option<String>,
    /// Probe PORT/PROTO (repeatable; default: every port a pod declares).
    #[arg(long = "probe", value_name = "PORT/PROTO")]
    pub probes: Vec<Probe>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Exit 1 when any cell flips.
    #[arg(long)]
    pub exit_code: bool,
}

fn parse_policy_ref(s: &str) -> Result<PolicyRef, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            // Validated as every other name of the input is (issue 9): the value is printed
            // back in errors and reports.
            crate::names::namespace(ns)
                .and_then(|()| crate::names::object("NetworkPolicy", name))
                .map_err(|e| format!("--delete: {e}"))?;
            Ok(PolicyRef {
                namespace: ns.into(),
                name: name.into(),
            })
        }
        _ => Err(format!("--delete {s:?} is not of the form NAMESPACE/NAME")),
    }
}

/// The NetworkPolicies of the `--add` files, read by the same loader (so errors name file,
/// document and field). Other objects in them are ignored with a warning.
fn added_policies(files: &[PathBuf]) -> Result<Vec<CompiledPolicy>, u8> {
    let mut out = Vec::new();
    for f in files {
        let loaded = crate::scenario::load_paths_with(
            std::slice::from_ref(f),
            crate::scenario::Pods::Optional,
        )
        .map_err(|e| super::report_input_errors(&e))?;
        super::print_warnings(&loaded.warnings);
        for s in &loaded.scenarios {
            let Some(step) = s.steps.first() else {
                continue;
            };
            if s.steps.len() > 1 || !s.steps[0].expectations.is_empty() {
                eprintln!(
                    "error: {}: --add takes NetworkPolicy manifests, not a scenario file",
                    f.display()
                );
                return Err(exit::BAD_INPUT);
            }
            if !step.model.pods.is_empty() {
                eprintln!(
                    "warning: {}: only NetworkPolicies are taken from --add files; {} pods ignored",
                    f.display(),
                    step.model.pods.len()
                );
            }
            if step.policies.is_empty() {
                eprintln!("error: {}: no NetworkPolicy to add", f.display());
                return Err(exit::BAD_INPUT);
            }
            out.extend(step.policies.iter().cloned());
        }
    }
    Ok(out)
}

pub fn run(args: WhatIfArgs) -> u8 {
    if args.add.is_empty() && args.delete.is_empty() {
        eprintln!("error: give a change: --add FILE and/or --delete NAMESPACE/NAME");
        return exit::BAD_INPUT;
    }
    let mut deleted = Vec::new();
    for d in &args.delete {
        match parse_policy_ref(d) {
            Ok(r) => deleted.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::BAD_INPUT;
            }
        }
    }
    let loaded = match super::load_checked(std::slice::from_ref(&args.state)) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let [scenario] = loaded.scenarios.as_slice() else {
        eprintln!(
            "error: what-if starts from one state; {} holds {} scenarios",
            args.state.display(),
            loaded.scenarios.len()
        );
        return exit::BAD_INPUT;
    };
    let step = match &args.step {
        Some(name) => scenario.steps.iter().find(|s| &s.name == name),
        None => scenario.steps.last(),
    };
    let Some(step) = step else {
        eprintln!(
            "error: no step {:?} in scenario {}",
            args.step.clone().unwrap_or_default(),
            scenario.name
        );
        return exit::BAD_INPUT;
    };
    let added = match added_policies(&args.add) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let (after, replaced) = match whatif::apply_change(&step.policies, &added, &deleted) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let added_keys: Vec<PolicyRef> = added
        .iter()
        .map(|p| p.key.clone())
        .filter(|k| !replaced.contains(k))
        .collect();
    let report: WhatIfReport = whatif::compute(
        &scenario.source,
        &step.name,
        &step.model,
        &step.policies,
        &after,
        &BTreeMap::new(),
        &args.probes,
        (&added_keys, &replaced, &deleted),
    );
    let written = match args.format {
        Format::Table => emit(&whatif::render_text(&report)),
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => emit(&format!("{s}\n")),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::BAD_INPUT;
            }
        },
    };
    if let Err(code) = written {
        return code;
    }
    if args.exit_code && report.flipped_cells > 0 {
        exit::VERDICT_MISMATCH
    } else {
        exit::OK
    }
}
