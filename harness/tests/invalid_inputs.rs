//! Bad inputs, through the real binary: `netpolc expect FILE` must exit 2 and say where the problem
//! is — the file, the document and the field path — so an author can go straight to it. One test
//! per fixture under `tests/fixtures/invalid/`; a fixture without an entry in [`expected`] fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rstest::rstest;

/// What the error for one fixture must contain.
struct Expect {
    /// 1-based document number (`document N (index N-1)`).
    document: usize,
    /// The field path, printed as `field PATH`; `None` where the problem has no field (YAML syntax).
    field: Option<&'static str>,
    /// A fragment of the message.
    message: &'static str,
}

const fn at(document: usize, field: &'static str, message: &'static str) -> Expect {
    Expect {
        document,
        field: Some(field),
        message,
    }
}

fn expected(file: &str) -> Expect {
    match file {
        "malformed-yaml.yaml" => Expect {
            document: 1,
            field: None,
            message: "line 4, column 5: malformed YAML",
        },
        "bad-selector-operator.yaml" => at(
            2,
            "spec.podSelector.matchExpressions[0].operator",
            "unsupported operator \"Equals\"",
        ),
        "in-without-values.yaml" => at(
            2,
            "spec.ingress[0].from[0].podSelector.matchExpressions[0].values",
            "must be specified when `operator` is \"In\"",
        ),
        "exists-with-values.yaml" => at(
            2,
            "spec.ingress[0].from[0].podSelector.matchExpressions[0].values",
            "may not be specified when `operator` is \"Exists\"",
        ),
        "bad-label-key.yaml" => at(
            2,
            "spec.ingress[0].from[0].podSelector.matchLabels.bad key!",
            "label key \"bad key!\" is invalid",
        ),
        "invalid-cidr.yaml" => at(
            2,
            "spec.egress[0].to[0].ipBlock.cidr",
            "\"10.244.0.0/33\" is not a valid CIDR",
        ),
        "except-outside-cidr.yaml" => at(
            2,
            "spec.egress[0].to[0].ipBlock.except[0]",
            "must be a strict subset of cidr",
        ),
        "port-zero.yaml" => at(
            2,
            "spec.ingress[0].ports[0].port",
            "0 is not a valid port number",
        ),
        "port-too-large.yaml" => at(
            2,
            "spec.ingress[0].ports[1].port",
            "70000 is not a valid port number",
        ),
        "endport-without-port.yaml" => at(
            2,
            "spec.ingress[0].ports[0].endPort",
            "may not be specified when `port` is not specified",
        ),
        "endport-below-port.yaml" => at(
            2,
            "spec.ingress[0].ports[0].endPort",
            "80 must be greater than or equal to `port` (90)",
        ),
        "endport-with-named-port.yaml" => at(
            2,
            "spec.ingress[0].ports[0].endPort",
            "may not be specified when `port` is a named port",
        ),
        "unknown-protocol.yaml" => at(
            2,
            "spec.ingress[0].ports[0].protocol",
            "unsupported value \"ICMP\"",
        ),
        "unknown-policy-type.yaml" => {
            at(2, "spec.policyTypes[1]", "unsupported value \"Sideways\"")
        }
        "unknown-field.yaml" => at(2, "spec.podselector", "unknown field"),
        "unknown-field-in-peer.yaml" => at(
            2,
            "spec.ingress[0].from[0].namespaceselector",
            "unknown field",
        ),
        "missing-kind.yaml" => at(2, "kind", "is required"),
        "wrong-api-version.yaml" => at(
            2,
            "apiVersion",
            "NetworkPolicy must have apiVersion \"networking.k8s.io/v1\"",
        ),
        "duplicate-pod.yaml" => at(2, "metadata.name", "pod x/a is declared twice"),
        "ipblock-with-pod-selector.yaml" => at(
            2,
            "spec.ingress[0].from[0]",
            "may not specify ipBlock together with podSelector",
        ),
        "empty-peer.yaml" => at(2, "spec.ingress[0].from[0]", "must specify a peer"),
        "delete-nonexistent-policy.yaml" => at(
            1,
            "steps[1].delete[1]",
            "no NetworkPolicy x/denny exists at this step",
        ),
        "scenario-unknown-field.yaml" => at(1, "steps[0].lablePods", "unknown field `lablePods`"),
        "scenario-wrong-api-version.yaml" => at(
            1,
            "apiVersion",
            "unsupported scenario schema \"netpolc/v2\"",
        ),
        "scenario-bad-policy-in-step.yaml" => at(
            1,
            "steps[1].apply[0].spec.ingress[0].ports[0].endPort",
            "70 must be greater than or equal to `port` (80)",
        ),
        other => panic!("fixture {other} has no expected error: add it to `expected`"),
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid")
}

/// Runs `netpolc expect NAME` from the fixtures directory, so messages name the file as given.
fn expect_in_fixtures(name: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(fixtures_dir())
        .args(["expect", name])
        .output()
        .expect("the netpolc binary runs")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[rstest]
fn invalid_fixture_is_rejected_with_its_location(
    #[base_dir = "tests/fixtures/invalid"]
    #[files("*.yaml")]
    #[exclude("expectations-disagree")]
    path: PathBuf,
) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("fixture name is UTF-8");
    let want = expected(name);
    let out = expect_in_fixtures(name);
    let stderr = stderr_of(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit status for {name}; stderr:\n{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout for bad input");
    let location = format!(
        "{name}: document {} (index {})",
        want.document,
        want.document - 1
    );
    assert!(
        stderr.contains(&location),
        "want {location:?} in:\n{stderr}"
    );
    if let Some(field) = want.field {
        assert!(
            stderr.contains(&format!(": field {field}: ")),
            "want field {field:?} in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains(want.message),
        "want {:?} in:\n{stderr}",
        want.message
    );
    assert!(
        stderr.contains(", line "),
        "errors carry a line number:\n{stderr}"
    );
}

#[test]
fn expectations_that_disagree_with_the_oracle_name_each_cell() {
    let out = expect_in_fixtures("expectations-disagree.yaml");
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    // deny-ingress isolates every pod of x; the file only wrote it for x/a: six cells are wrong
    // (into x/b and x/c, from each of the three pods).
    let wrong: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("written allowed but the oracle says denied"))
        .collect();
    assert_eq!(wrong.len(), 6, "stderr:\n{stderr}");
    for line in &wrong {
        assert!(line.contains("expectations-disagree.yaml"), "{line}");
        assert!(line.contains("step \"deny-ingress\", 80/TCP"), "{line}");
        assert!(line.contains("document 1 (index 0)"), "{line}");
        assert!(line.contains("field steps[0].expect[0]"), "{line}");
    }
    insta::assert_snapshot!("expectations_disagree", stderr);
}

#[test]
fn a_missing_file_is_bad_input_naming_it() {
    let out = expect_in_fixtures("no-such-file.yaml");
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("no-such-file.yaml: no such file or directory"),
        "{stderr}"
    );
}

#[test]
fn every_error_in_a_file_is_reported_not_only_the_first() {
    // Two bad files in one invocation: both are named.
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(fixtures_dir())
        .args(["expect", "port-zero.yaml", "invalid-cidr.yaml"])
        .output()
        .expect("runs");
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("port-zero.yaml: document 2"), "{stderr}");
    assert!(stderr.contains("invalid-cidr.yaml: document 2"), "{stderr}");
}

#[rstest]
#[case::malformed_yaml("malformed-yaml.yaml")]
#[case::unknown_field_in_peer("unknown-field-in-peer.yaml")]
#[case::endport_below_port("endport-below-port.yaml")]
#[case::scenario_unknown_field("scenario-unknown-field.yaml")]
#[case::duplicate_pod("duplicate-pod.yaml")]
fn error_message_snapshot(#[case] name: &str) {
    let out = expect_in_fixtures(name);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(
        format!("error_{}", name.trim_end_matches(".yaml").replace('-', "_")),
        stderr_of(&out)
    );
}

/// YAML 1.1 would read `y`, `n`, `yes`, `on` as booleans; upstream's model has a namespace `y`.
/// They must stay strings as names, label values and selector values.
#[test]
fn yaml_1_1_boolean_words_stay_strings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("booleans.yaml");
    std::fs::write(
        &file,
        "apiVersion: netpolc/v1\n\
         kind: Scenario\n\
         description: unquoted y and n everywhere\n\
         model:\n\
         \x20 namespaces: [{name: y, labels: {ns: y}}, {name: n, labels: {ns: n}}]\n\
         \x20 pods:\n\
         \x20   - {namespace: y, name: a, labels: {on: yes}, ports: [\"80/TCP\"]}\n\
         \x20   - {namespace: n, name: a, labels: {on: no}, ports: [\"80/TCP\"]}\n\
         steps:\n\
         \x20 - name: only-from-ns-y\n\
         \x20   apply:\n\
         \x20     - apiVersion: networking.k8s.io/v1\n\
         \x20       kind: NetworkPolicy\n\
         \x20       metadata: {namespace: n, name: p}\n\
         \x20       spec:\n\
         \x20         podSelector: {matchLabels: {on: no}}\n\
         \x20         ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .args(["expect", "--format", "json"])
        .arg(&file)
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let allowed = &doc["scenarios"][0]["steps"][0]["probes"][0]["allowed"];
    assert_eq!(
        allowed["y/a"]["n/a"],
        serde_json::Value::Bool(true),
        "{doc}"
    );
    assert_eq!(
        allowed["n/a"]["n/a"],
        serde_json::Value::Bool(false),
        "{doc}"
    );
    assert_eq!(
        allowed["n/a"]["y/a"],
        serde_json::Value::Bool(true),
        "{doc}"
    );
}
