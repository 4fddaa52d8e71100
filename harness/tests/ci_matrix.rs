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

/// The workflows GitHub runs are the ones under `ci/`: pushing this repository runs the per-CNI
/// matrix and publishes its JUnit.
#[test]
fn github_runs_the_ci_workflows_as_written() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |rel: &str| {
        std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    let names = |dir: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let ci = names("ci/github");
    assert_eq!(ci, ["netpol-e2e-publish.yml", "netpol-e2e.yml"]);
    assert_eq!(names(".github/workflows"), ci);
    for name in &ci {
        assert_eq!(
            read(&format!("ci/github/{name}")),
            read(&format!(".github/workflows/{name}")),
            "copy ci/github/{name} to .github/workflows/ after changing it"
        );
    }
}

/// Fork pull requests get a read-only token: the e2e workflow only uploads its JUnit, and the
/// workflow_run one, which may write checks, publishes one check per catalogued CNI.
#[test]
fn junit_is_published_by_a_workflow_run_that_works_for_forks() {
    let e2e = load("ci/github/netpol-e2e.yml");
    assert_eq!(
        e2e["permissions"]["checks"],
        Value::Null,
        "the e2e workflow must not need checks: write (forks do not have it)"
    );
    let steps = e2e["jobs"]["e2e"]["steps"].as_array().expect("steps");
    let upload = steps
        .iter()
        .find(|s| s["with"]["name"] == "netpol-junit-${{ matrix.cni }}")
        .expect("a step uploads the JUnit as an artifact");
    assert_eq!(upload["uses"], "actions/upload-artifact@v4");
    assert_eq!(upload["if"], "always()");
    assert!(
        !steps.iter().any(|s| s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("mikepenz/"))),
        "publishing happens in netpol-e2e-publish.yml"
    );

    let publish = load("ci/github/netpol-e2e-publish.yml");
    assert_eq!(publish["on"]["workflow_run"]["workflows"][0], e2e["name"]);
    assert_eq!(publish["permissions"]["checks"], "write");
    let job = &publish["jobs"]["publish"];
    assert_eq!(
        strings(&job["strategy"]["matrix"]["cni"], "publish matrix"),
        catalogue_names()
    );
    let steps = job["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["with"]["name"], "netpol-junit-${{ matrix.cni }}");
    assert_eq!(
        steps[0]["with"]["run-id"],
        "${{ github.event.workflow_run.id }}"
    );
    assert_eq!(
        steps[1]["with"]["commit"],
        "${{ github.event.workflow_run.head_sha }}"
    );
    assert!(
        !steps.iter().any(|s| s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/checkout"))),
        "the publishing workflow never checks out the triggering run's code"
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
