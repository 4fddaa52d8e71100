//! One test per shipped scenario file (`scenarios/**/*.yaml`): it loads cleanly, every step of a
//! scenario file carries hand-written expectations for every probe it runs, and those expectations
//! agree with the oracle cell by cell. Plain manifest files cannot carry expectations and are only
//! required to load.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use netpol_conformance::cni::faults::Fault;
use netpol_conformance::model::Probe;
use netpol_conformance::scenario::{Scenario, load_paths};
use rstest::rstest;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// A scenario file (as opposed to a plain manifest) declares `kind: Scenario` at the top level.
fn is_scenario_file(text: &str) -> bool {
    text.lines().any(|l| l.trim_end() == "kind: Scenario")
}

fn load_one(path: &Path) -> Scenario {
    let loaded = match load_paths(&[path.to_path_buf()]) {
        Ok(l) => l,
        Err(e) => panic!("{} does not load:\n{e}", path.display()),
    };
    let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings.is_empty(),
        "shipped scenarios load without warnings:\n{}",
        warnings.join("\n")
    );
    assert_eq!(loaded.scenarios.len(), 1, "one scenario per file");
    loaded.scenarios.into_iter().next().expect("checked above")
}

/// Checks that each step writes exactly one expectation per probe it runs, and none for others.
fn check_expectation_coverage(path: &Path, scenario: &Scenario) {
    for step in &scenario.steps {
        let mut written: BTreeMap<Probe, usize> = BTreeMap::new();
        for e in &step.expectations {
            *written.entry(e.probe).or_default() += 1;
        }
        let missing: Vec<String> = step
            .probes
            .iter()
            .filter(|p| !written.contains_key(p))
            .map(|p| p.to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "{}: step {:?} probes {} without a hand-written expectation",
            path.display(),
            step.name,
            missing.join(", ")
        );
        let twice: Vec<String> = written
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(p, _)| p.to_string())
            .collect();
        assert!(
            twice.is_empty(),
            "{}: step {:?} writes the expectation for {} more than once",
            path.display(),
            step.name,
            twice.join(", ")
        );
        let extra: Vec<String> = written
            .keys()
            .filter(|p| !step.probes.contains(p))
            .map(|p| p.to_string())
            .collect();
        assert!(
            extra.is_empty(),
            "{}: step {:?} has expectations for {}, which it does not probe",
            path.display(),
            step.name,
            extra.join(", ")
        );
    }
}

#[rstest]
fn scenario_file(
    #[base_dir = "../scenarios"]
    #[files("**/*.yaml")]
    path: PathBuf,
) {
    let text = std::fs::read_to_string(&path).expect("rstest found this file");
    let scenario = load_one(&path);
    assert!(
        !scenario.steps.is_empty(),
        "a scenario has at least one step"
    );

    if is_scenario_file(&text) {
        assert!(
            scenario
                .description
                .as_deref()
                .is_some_and(|d| !d.trim().is_empty()),
            "{}: every shipped scenario explains itself in `description`",
            path.display()
        );
        check_expectation_coverage(&path, &scenario);
    }

    let mismatches = scenario.check_expectations();
    assert!(
        mismatches.is_empty(),
        "{}: hand-written expectations disagree with the oracle:\n{}",
        path.display(),
        mismatches
            .iter()
            .map(|m| format!("  {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn all_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                walk(&e, out);
            } else if e.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(e);
            }
        }
    }
    let mut out = Vec::new();
    walk(&scenarios_dir(), &mut out);
    out
}

#[test]
fn only_yaml_extension_is_used() {
    // The data-driven test above globs `*.yaml`; a `.yml` file would silently get no test.
    let yml: Vec<_> = all_files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    assert!(yml.is_empty(), "rename to .yaml: {yml:?}");
}

#[test]
fn scenario_names_are_unique() {
    let loaded = load_paths(&[scenarios_dir()]).unwrap_or_else(|e| panic!("{e}"));
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for s in &loaded.scenarios {
        if let Some(prev) = seen.insert(s.name.clone(), s.source.clone()) {
            panic!("scenario name {:?} used by {prev} and {}", s.name, s.source);
        }
    }
    assert_eq!(
        seen.len(),
        all_files().len(),
        "one scenario per file in the catalogue"
    );
}

#[test]
fn upstream_directory_covers_the_e2e_suite() {
    let upstream: Vec<_> = all_files()
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("upstream")))
        .collect();
    assert!(
        upstream.len() >= 30,
        "only {} upstream cases",
        upstream.len()
    );
    for p in &upstream {
        let text = std::fs::read_to_string(p).expect("readable");
        assert!(
            text.contains("Upstream \""),
            "{} should say which upstream case it is in its description",
            p.display()
        );
    }
}

/// The README's fault table names, for every fault the local dataplane can inject, shipped files
/// that catch it; keep the table complete and its paths real.
#[test]
fn readme_names_a_catching_scenario_for_every_fault() {
    let readme = std::fs::read_to_string(scenarios_dir().join("README.md")).expect("README");
    let mut rows: BTreeMap<String, String> = BTreeMap::new();
    for line in readme.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if cols.len() >= 3 && cols[1].starts_with('`') && cols[2].contains(".yaml") {
            rows.insert(cols[1].trim_matches('`').to_string(), cols[2].to_string());
        }
    }
    let files: BTreeSet<String> = all_files()
        .iter()
        .map(|p| {
            p.strip_prefix(scenarios_dir())
                .expect("under scenarios/")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for fault in Fault::ALL {
        let cell = rows
            .get(fault.name())
            .unwrap_or_else(|| panic!("README has no row for fault {}", fault.name()));
        // Backquoted tokens ending in .yaml are paths (odd-numbered pieces between backquotes).
        let named_files: Vec<&str> = cell
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| t.ends_with(".yaml"))
            .collect();
        assert!(
            !named_files.is_empty(),
            "fault {}: no file named",
            fault.name()
        );
        for named in named_files {
            let found = if let Some(prefix) = named.strip_suffix("*.yaml") {
                files.iter().any(|f| f.starts_with(prefix))
            } else {
                files.contains(named)
            };
            assert!(found, "fault {}: {named} matches no file", fault.name());
        }
    }
}
