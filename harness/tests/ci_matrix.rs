//! Both CI pipelines under `ci/` must run exactly the catalogue's CNIs with the catalogue's pinned
//! tool versions, so adding a CNI (or bumping kind) cannot forget CI.

use std::path::PathBuf;

use netpol_conformance::cni::catalogue::Catalogue;
use serde_json::Value;

fn load(rel: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Strict booleans: GitHub's `on:` key must stay a string.
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options(&text, options)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not a list: {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("{what}: {x} is not a string"))
                .to_string()
        })
        .collect()
}

fn catalogue() -> Catalogue {
    Catalogue::builtin().expect("catalogue")
}

fn catalogue_names() -> Vec<String> {
    catalogue().names().into_iter().map(String::from).collect()
}

#[test]
fn github_matrix_equals_the_catalogue() {
    let wf = load("ci/github/netpol-e2e.yml");
    assert!(wf.get("on").is_some(), "`on` must parse as a key");
    let matrix = &wf["jobs"]["e2e"]["strategy"]["matrix"]["cni"];
    assert_eq!(strings(matrix, "github matrix"), catalogue_names());
}

#[test]
fn gitlab_matrix_equals_the_catalogue() {
    let ci = load("ci/gitlab/.gitlab-ci.yml");
    let matrix = &ci["e2e"]["parallel"]["matrix"][0]["CNI"];
    assert_eq!(strings(matrix, "gitlab matrix"), catalogue_names());
}

#[test]
fn pinned_tool_versions_match_the_catalogue() {
    let c = catalogue();
    for (file, env) in [
        ("ci/github/netpol-e2e.yml", "env"),
        ("ci/gitlab/.gitlab-ci.yml", "variables"),
    ] {
        let v = load(file);
        assert_eq!(v[env]["KIND_VERSION"], c.kind.version.as_str(), "{file}");
        assert_eq!(
            v[env]["KUBECTL_VERSION"],
            c.kubectl.version.as_str(),
            "{file}"
        );
        assert_eq!(v[env]["HELM_VERSION"], c.helm.version.as_str(), "{file}");
    }
}

#[test]
fn every_job_runs_the_e2e_feature_filtered_by_its_cni() {
    let gh = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ci/github/netpol-e2e.yml"
    ))
    .expect("workflow");
    assert!(gh.contains(
        "cargo test --features e2e --test e2e -- --test-threads=1 \"${{ matrix.cni }}\""
    ));
    let gl = load("ci/gitlab/.gitlab-ci.yml");
    let script = strings(&gl["e2e"]["script"], "gitlab script");
    assert!(
        script
            .iter()
            .any(|l| l.contains("cargo test --features e2e --test e2e") && l.contains("\"$CNI\""))
    );
}

/// The workflow GitHub runs is the one under `ci/`: pushing this repository runs the per-CNI matrix.
#[test]
fn github_runs_the_ci_workflow_as_written() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |rel: &str| {
        std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    assert_eq!(
        read("ci/github/netpol-e2e.yml"),
        read(".github/workflows/netpol-e2e.yml"),
        "copy ci/github/netpol-e2e.yml to .github/workflows/ after changing it"
    );
}

/// Binaries are downloaded for the runner's architecture, never a hard-coded amd64 one.
#[test]
fn pipelines_pick_the_runners_architecture() {
    for rel in ["ci/github/netpol-e2e.yml", "ci/gitlab/.gitlab-ci.yml"] {
        let text = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(rel),
        )
        .unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(!text.contains("linux-amd64"), "{rel} hard-codes amd64");
        assert!(!text.contains("linux/amd64"), "{rel} hard-codes amd64");
        assert!(
            text.contains("aarch64) ") && text.contains("ARCH=arm64"),
            "{rel}"
        );
    }
}
