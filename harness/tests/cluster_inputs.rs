//! Cluster-wide policies as input, through the real binary: every rule of the CRDs (limits,
//! enums, required fields, "exactly one of", list sets, CEL rules) is bad input — exit 2 with the
//! file, the document, the line and the field path — while accepted-but-notable input (a peer
//! type of a newer API, experimental peers that match no pod, a namespace on a cluster-scoped
//! object, same-priority conflicts nobody wrote down) loads with a warning naming where it is.

use std::path::Path;
use std::process::{Command, Output};

use rstest::rstest;

/// Document 1 of every manifest case: a pod, so the input has one.
const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: {containers: [{name: c, image: i}]}\n---\n";
const POD_LINES: usize = 5;

const CNP: &str = "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\n";
const ANP: &str = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: p}\n";
const BANP: &str = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: default}\n";

fn netpolc_expect(dir: &Path, name: &str, text: &str) -> Output {
    std::fs::write(dir.join(name), text).expect("write case");
    Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(dir)
        .args(["expect", name])
        .output()
        .expect("netpolc runs")
}

/// (policy document, line in it, field, message fragment)
#[rstest]
#[case::priority_range(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1001\n  subject: {namespaces: {}}\n",
    3,
    "spec.priority",
    "1001 is out of range (0-1000"
)]
#[case::priority_type(
    CNP,
    "spec:\n  tier: Admin\n  priority: \"5\"\n  subject: {namespaces: {}}\n",
    3,
    "spec.priority",
    "invalid type"
)]
#[case::tier_missing(
    CNP,
    "spec:\n  priority: 1\n  subject: {namespaces: {}}\n",
    1,
    "spec.tier",
    "is required (Admin or Baseline)"
)]
#[case::tier_enum(
    CNP,
    "spec:\n  tier: admin\n  priority: 1\n  subject: {namespaces: {}}\n",
    2,
    "spec.tier",
    "unsupported value \"admin\""
)]
#[case::subject_both(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}, pods: {podSelector: {}}}\n",
    4,
    "spec.subject",
    "exactly one of namespaces or pods"
)]
#[case::subject_missing(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n",
    1,
    "spec.subject",
    "is required"
)]
#[case::pods_need_pod_selector(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {pods: {namespaceSelector: {}}}\n",
    4,
    "spec.subject.pods.podSelector",
    "is required"
)]
#[case::v2_action_enum(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Allow\n    from: [{namespaces: {}}]\n",
    6,
    "spec.ingress[0].action",
    "unsupported value \"Allow\""
)]
#[case::from_min_items(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: []\n",
    7,
    "spec.ingress[0].from",
    "at least 1"
)]
#[case::from_required(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n",
    6,
    "spec.egress[0].to",
    "is required"
)]
#[case::rule_name_length(CNP, &format!("spec:\n  tier: Admin\n  priority: 1\n  subject: {{namespaces: {{}}}}\n  egress:\n  - name: {}\n    action: Deny\n    to: [{{namespaces: {{}}}}]\n", "n".repeat(101)), 6, "spec.egress[0].name", "longer than 100")]
#[case::peer_exactly_one(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to:\n    - {namespaces: {}, networks: [10.0.0.0/8]}\n",
    8,
    "spec.egress[0].to[0]",
    "not namespaces and networks"
)]
#[case::ingress_has_no_networks(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from:\n    - networks: [10.0.0.0/8]\n",
    8,
    "spec.ingress[0].from[0].networks",
    "ingress peers are namespaces or pods"
)]
#[case::cidr_invalid(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to:\n    - networks:\n      - 10.0.0.0/33\n",
    9,
    "spec.egress[0].to[0].networks[0]",
    "not a valid CIDR"
)]
#[case::cidr_set(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to:\n    - networks:\n      - 10.0.0.0/8\n      - 10.0.0.0/8\n",
    10,
    "spec.egress[0].to[0].networks[1]",
    "duplicate value"
)]
#[case::range_cel(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n    protocols:\n    - tcp:\n        destinationPort:\n          range: {start: 90, end: 90}\n",
    11,
    "spec.ingress[0].protocols[0].tcp.destinationPort.range",
    "start (90) must be less than end (90)"
)]
#[case::port_number(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n    protocols:\n    - udp:\n        destinationPort:\n          number: 70000\n",
    11,
    "spec.ingress[0].protocols[0].udp.destinationPort.number",
    "70000 is not a valid port number"
)]
#[case::protocol_needs_port(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n    protocols:\n    - sctp: {}\n",
    9,
    "spec.ingress[0].protocols[0].sctp.destinationPort",
    "is required"
)]
#[case::protocol_exactly_one(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n    protocols:\n    - {tcp: {destinationPort: {number: 80}}, destinationNamedPort: web}\n",
    9,
    "spec.ingress[0].protocols[0]",
    "not tcp and destinationNamedPort"
)]
#[case::protocols_min_items(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n    protocols: []\n",
    8,
    "spec.ingress[0].protocols",
    "at least 1"
)]
#[case::named_port_cel(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n  - action: Accept\n    to: [{networks: [10.0.0.0/8]}]\n    protocols: [{destinationNamedPort: web}]\n",
    6,
    "spec.egress[0]",
    "named port cannot be used together with networks"
)]
#[case::v2_has_no_ports(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n    ports: [{portNumber: {port: 80}}]\n",
    8,
    "spec.ingress[0].ports",
    "unknown field"
)]
#[case::typo_in_peer(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from:\n    - namespace: {}\n",
    8,
    "spec.ingress[0].from[0].namespace",
    "unknown field"
)]
#[case::selector_operator(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject:\n    namespaces:\n      matchExpressions: [{key: ns, operator: Equals, values: [x]}]\n",
    6,
    "spec.subject.namespaces.matchExpressions[0].operator",
    "unsupported operator \"Equals\""
)]
#[case::wrong_version(
    "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\n",
    "spec: {}\n",
    1,
    "apiVersion",
    "must have apiVersion \"policy.networking.k8s.io/v1alpha2\""
)]
#[case::anp_no_tier(
    ANP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n",
    2,
    "spec.tier",
    "unknown field"
)]
#[case::anp_priority_required(
    ANP,
    "spec:\n  subject: {namespaces: {}}\n",
    1,
    "spec.priority",
    "is required"
)]
#[case::anp_no_protocols(
    ANP,
    "spec:\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Allow\n    from: [{namespaces: {}}]\n    protocols: [{tcp: {destinationPort: {number: 80}}}]\n",
    7,
    "spec.ingress[0].protocols",
    "unknown field"
)]
#[case::anp_accept_is_allow(
    ANP,
    "spec:\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Accept\n    from: [{namespaces: {}}]\n",
    5,
    "spec.ingress[0].action",
    "unsupported value \"Accept\""
)]
#[case::anp_namespace_selector_required(
    ANP,
    "spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to: [{pods: {podSelector: {}}}]\n",
    6,
    "spec.egress[0].to[0].pods.namespaceSelector",
    "is required in v1alpha1"
)]
#[case::anp_port_exactly_one(
    ANP,
    "spec:\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n    ports:\n    - {portNumber: {port: 80}, namedPort: web}\n",
    8,
    "spec.ingress[0].ports[0]",
    "exactly one of portNumber, namedPort or portRange"
)]
#[case::anp_rules_max_100(ANP, &format!("spec:\n  priority: 1\n  subject: {{namespaces: {{}}}}\n  ingress:\n{}", "  - {action: Deny, from: [{namespaces: {}}]}\n".repeat(101)), 4, "spec.ingress", "at most 100 items")]
#[case::banp_singleton(
    "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata:\n  name: mine\n",
    "spec:\n  subject: {namespaces: {}}\n",
    4,
    "metadata.name",
    "must be named \"default\""
)]
#[case::banp_no_pass(
    BANP,
    "spec:\n  subject: {namespaces: {}}\n  ingress:\n  - action: Pass\n    from: [{namespaces: {}}]\n",
    4,
    "spec.ingress[0].action",
    "unsupported value \"Pass\""
)]
#[case::banp_no_priority(
    BANP,
    "spec:\n  priority: 3\n  subject: {namespaces: {}}\n",
    2,
    "spec.priority",
    "unknown field"
)]
#[case::banp_no_domain_names(
    BANP,
    "spec:\n  subject: {namespaces: {}}\n  egress:\n  - action: Allow\n    to:\n    - domainNames: [example.com]\n",
    6,
    "spec.egress[0].to[0].domainNames",
    "no domainNames"
)]
fn cluster_policy_crd_rules_are_bad_input(
    #[case] head: &str,
    #[case] body: &str,
    #[case] line: usize,
    #[case] field: &str,
    #[case] message: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = netpolc_expect(dir.path(), "case.yaml", &format!("{POD}{head}{body}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout for bad input");
    let head_lines = head.lines().count();
    let want = format!(
        "case.yaml: document 2 (index 1), line {}: field {field}: ",
        POD_LINES
            + if field == "apiVersion" || field.starts_with("metadata") {
                line
            } else {
                head_lines + line
            }
    );
    assert!(stderr.contains(&want), "want {want:?} in:\n{stderr}");
    assert!(stderr.contains(message), "want {message:?} in:\n{stderr}");
}

fn scenario_expect(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = netpolc_expect(dir.path(), "s.yaml", text);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SCENARIO_HEAD: &str = "apiVersion: netpolc/v1\nkind: Scenario\nmodel: {upstream: {namespaces: [x, y], pods: [a], ports: [80], protocols: [TCP]}}\n";

#[test]
fn steps_apply_and_delete_cluster_policies_by_kind_and_name() {
    let text = format!(
        "{SCENARIO_HEAD}steps:\n\
         - name: add\n  apply:\n  - {{apiVersion: policy.networking.k8s.io/v1alpha2, kind: ClusterNetworkPolicy, metadata: {{name: p}},\n     spec: {{tier: Admin, priority: 1, subject: {{namespaces: {{matchLabels: {{ns: x}}}}}}, ingress: [{{action: Deny, from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]}}]}}}}\n\
         - name: remove\n  delete: [ClusterNetworkPolicy/p]\n\
         - name: remove-again\n  delete: [{{kind: ClusterNetworkPolicy, name: p}}, {{kind: Gadget, name: q}}, x/nope]\n"
    );
    let (code, _, stderr) = scenario_expect(&text);
    assert_eq!(code, Some(2), "{stderr}");
    for want in [
        "line 12: field steps[2].delete[0]: no ClusterNetworkPolicy/p exists at this step",
        "line 12: field steps[2].delete[1]: unknown kind \"Gadget\"",
        "line 12: field steps[2].delete[2]: no NetworkPolicy x/nope exists at this step",
    ] {
        assert!(stderr.contains(want), "want {want:?} in:\n{stderr}");
    }
    // Without the bad step it loads, and the policy denies y -> x only while it exists.
    let good = text
        .split("- name: remove-again")
        .next()
        .expect("prefix")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("s.yaml"), good).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(dir.path())
        .args(["expect", "s.yaml", "--format", "json"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let steps = &doc["scenarios"][0]["steps"];
    assert_eq!(steps[0]["probes"][0]["allowed"]["y/a"]["x/a"], false);
    assert_eq!(steps[1]["probes"][0]["allowed"]["y/a"]["x/a"], true);
}

#[test]
fn a_bad_cluster_policy_in_a_step_names_its_nested_path() {
    let text = format!(
        "{SCENARIO_HEAD}steps:\n- name: add\n  apply:\n  - apiVersion: policy.networking.k8s.io/v1alpha2\n    kind: ClusterNetworkPolicy\n    metadata: {{name: p}}\n    spec:\n      tier: Admin\n      priority: -3\n      subject: {{namespaces: {{}}}}\n"
    );
    let (code, _, stderr) = scenario_expect(&text);
    assert_eq!(code, Some(2), "{stderr}");
    let want = "s.yaml: document 1 (index 0), line 12: field steps[0].apply[0].spec.priority: -3 is out of range";
    assert!(stderr.contains(want), "want {want:?} in:\n{stderr}");
}

#[test]
fn the_same_cluster_policy_twice_is_bad_input() {
    let p = "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: twice}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}}\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let out = netpolc_expect(dir.path(), "m.yaml", &format!("{POD}{p}---\n{p}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // (The line is that of the second copy's name, as for every duplicate object.)
    assert!(
        stderr.contains("document 3 (index 2), line 13: field metadata.name: ClusterNetworkPolicy/twice is declared twice"),
        "{stderr}"
    );
    // Same name, different kinds: two objects.
    let anp = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: twice}\nspec: {priority: 1, subject: {namespaces: {}}}\n";
    let out = netpolc_expect(dir.path(), "m2.yaml", &format!("{POD}{p}---\n{anp}"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (policy document, warning path, warning fragment)
#[rstest]
#[case::newer_peer_type(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Accept\n    from: [{serviceAccounts: {names: [x]}}]\n",
    "spec.ingress[0].from[0].serviceAccounts",
    "fail closed, so this rule matches no traffic"
)]
#[case::newer_peer_type_deny(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Pass\n    from: [{serviceAccounts: {names: [x]}}]\n",
    "spec.ingress[0].from[0].serviceAccounts",
    "denies all traffic of its direction"
)]
#[case::nodes_match_no_pod(
    CNP,
    "spec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to: [{nodes: {}}]\n",
    "spec.egress[0].to[0].nodes",
    "matches no cell"
)]
#[case::domain_names_match_no_pod(
    ANP,
    "spec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n  - action: Allow\n    to: [{domainNames: ['*.example.com']}]\n",
    "spec.egress[0].to[0].domainNames",
    "probes address pods by IP"
)]
#[case::namespace_ignored(
    "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: p, namespace: x}\n",
    "spec: {tier: Admin, priority: 1, subject: {namespaces: {}}}\n",
    "metadata.namespace",
    "cluster-scoped"
)]
#[case::inverted_v1_range(
    ANP,
    "spec:\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n    ports: [{portRange: {start: 90, end: 80}}]\n",
    "spec.ingress[0].ports[0].portRange",
    "this range admits no port"
)]
#[case::odd_v1_protocol(
    ANP,
    "spec:\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n    ports: [{portNumber: {protocol: ICMP, port: 1}}]\n",
    "spec.ingress[0].ports[0].portNumber.protocol",
    "matches no probe"
)]
fn notable_but_valid_input_loads_with_a_warning(
    #[case] head: &str,
    #[case] body: &str,
    #[case] path: &str,
    #[case] message: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = netpolc_expect(dir.path(), "w.yaml", &format!("{POD}{head}{body}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let want = "warning: w.yaml: document 2 (index 1), line ";
    assert!(stderr.contains(want), "{stderr}");
    assert!(
        stderr.contains(&format!("field {path}: ")),
        "want {path} in:\n{stderr}"
    );
    assert!(stderr.contains(message), "want {message:?} in:\n{stderr}");
}

#[test]
fn unwritten_same_priority_conflicts_are_warned_about_and_printed_null() {
    let two = "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: NAME}\nspec: {tier: Admin, priority: 7, subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: x}}}, ingress: [{action: ACTION, from: [{namespaces: {}}]}]}\n";
    let pod_y = "apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: y}\nspec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}\n---\n";
    let text = format!(
        "{pod_y}{}---\n{}",
        two.replace("NAME", "accept").replace("ACTION", "Accept"),
        two.replace("NAME", "deny").replace("ACTION", "Deny")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("c.yaml"), format!("{POD}{text}")).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(dir.path())
        .args(["expect", "c.yaml", "--format", "json", "--probe", "80/TCP"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("implementation-defined") && stderr.contains("y/b -> x/a"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let allowed = &doc["scenarios"][0]["steps"][0]["probes"][0]["allowed"];
    assert_eq!(allowed["y/b"]["x/a"], serde_json::Value::Null, "{doc}");
    // The hairpin cell is not subject to cluster-wide policies; y's own ingress has none.
    assert_eq!(allowed["x/a"]["x/a"], true);
    assert_eq!(allowed["x/a"]["y/b"], true);
    // explain says so, names both policies and their priority.
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(dir.path())
        .args([
            "explain", "c.yaml", "--from", "y/b", "--to", "x/a", "--probe", "80/TCP",
        ])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text.starts_with("y/b -> x/a on 80/TCP (step initial): IMPLEMENTATION-DEFINED"),
        "{text}"
    );
    assert!(
        text.contains("Admin tier priority 7: ClusterNetworkPolicy/accept (Accept), ClusterNetworkPolicy/deny (Deny)"),
        "{text}"
    );
}

#[test]
fn model_manifests_bring_cluster_policies_into_the_first_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("policies.yaml"),
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: default}\n\
         spec:\n  subject: {namespaces: {matchLabels: {ns: x}}}\n  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: y}}}]}]\n",
    )
    .expect("write manifest");
    let text = "apiVersion: netpolc/v1\nkind: Scenario\n\
                model:\n  upstream: {namespaces: [x, y], pods: [a], ports: [80], protocols: [TCP]}\n  \
                manifests: [policies.yaml]\n\
                steps:\n- name: first\n- name: gone\n  delete: [BaselineAdminNetworkPolicy/default]\n";
    std::fs::write(dir.path().join("s.yaml"), text).expect("write scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(dir.path())
        .args(["expect", "s.yaml", "--format", "json"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let steps = &doc["scenarios"][0]["steps"];
    assert_eq!(steps[0]["probes"][0]["allowed"]["y/a"]["x/a"], false);
    assert_eq!(steps[1]["probes"][0]["allowed"]["y/a"]["x/a"], true);
}

/// `kubectl get clusternetworkpolicies -o json` against the API prints a typed
/// `ClusterNetworkPolicyList` whose items may omit kind and apiVersion; the ANP and BANP lists
/// likewise. Each is a List: its items are the policies, and the matrix shows them enforced. A
/// typed list at the wrong apiVersion is bad input naming the one it needs.
#[rstest]
#[case::cnp(
    "ClusterNetworkPolicyList",
    "policy.networking.k8s.io/v1alpha2",
    r#"{"metadata": {"name": "deny-y"}, "spec": {"tier": "Admin", "priority": 5,
        "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}},
        "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]}}"#
)]
#[case::anp(
    "AdminNetworkPolicyList",
    "policy.networking.k8s.io/v1alpha1",
    r#"{"metadata": {"name": "deny-y"}, "spec": {"priority": 5,
        "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}},
        "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]}}"#
)]
#[case::banp(
    "BaselineAdminNetworkPolicyList",
    "policy.networking.k8s.io/v1alpha1",
    r#"{"metadata": {"name": "default"}, "spec": {
        "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}},
        "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]}}"#
)]
fn typed_cluster_policy_lists_are_read_as_lists(
    #[case] list: &str,
    #[case] api: &str,
    #[case] item: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = format!(
        r#"{{"apiVersion": "{api}", "kind": "{list}", "metadata": {{"resourceVersion": "9"}}, "items": [{item}]}}"#
    );
    std::fs::write(dir.path().join("policies.json"), &policies).expect("write policies");
    let text = "apiVersion: netpolc/v1\nkind: Scenario\n\
                model:\n  upstream: {namespaces: [x, y], pods: [a], ports: [80], protocols: [TCP]}\n  \
                manifests: [policies.json]\n\
                steps:\n- name: first\n";
    std::fs::write(dir.path().join("s.yaml"), text).expect("write scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(dir.path())
        .args(["expect", "s.yaml", "--format", "json"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let allowed = &doc["scenarios"][0]["steps"][0]["probes"][0]["allowed"];
    assert_eq!(
        allowed["y/a"]["x/a"], false,
        "{list}: the listed policy denies y -> x"
    );
    assert_eq!(allowed["x/a"]["y/a"], true, "{list}");
    let wrong = policies.replace(api, "v1");
    let bad = netpolc_expect(dir.path(), "wrong.json", &wrong);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains(&format!("{list} must have apiVersion \"{api}\"")),
        "{stderr}"
    );
}
