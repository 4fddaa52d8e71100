//! Cluster dumps (`kubectl get … -A -o yaml|json`) as input, through the binary: a `List` is read
//! item by item, workloads whose pods are in the dump add nothing, and the matrix holds exactly
//! the dump's real, running pods with their addresses, labels and their namespaces' labels.
//!
//! `tests/fixtures/dumps/shop-cluster.yaml` is a hand-written dump of a small cluster (see its
//! header); `shop-cluster.json` is the same objects as `kubectl -o json` prints them. The expected
//! tables below were worked out by hand from the two policies in the dump.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn harness_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn netpolc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(harness_dir())
        .args(args)
        .output()
        .expect("the netpolc binary runs")
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn expect_json(path: &str) -> (Value, String) {
    let out = netpolc(&["expect", path, "--format", "json"]);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{path}:\n{stderr}");
    let doc = serde_json::from_slice(&out.stdout).expect("one JSON document");
    (doc, stderr)
}

/// Writes `text` to a fresh temporary file named `name` and runs `expect --format json --probe
/// 80/TCP` on it (the probe, so that pods declaring no port still have a table).
fn expect_text(name: &str, text: &str) -> (Option<Value>, String, Option<i32>) {
    expect_text_probe(name, text, "80/TCP")
}

fn expect_text_probe(name: &str, text: &str, probe: &str) -> (Option<Value>, String, Option<i32>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(name);
    std::fs::write(&file, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(dir.path())
        .args(["expect", name, "--format", "json", "--probe", probe])
        .output()
        .expect("runs");
    let doc = serde_json::from_slice(&out.stdout).ok();
    (doc, stderr_of(&out), out.status.code())
}

fn pods_of(doc: &Value) -> Vec<String> {
    let allowed = &doc["scenarios"][0]["steps"][0]["probes"][0]["allowed"];
    allowed
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

const FRONTEND_1: &str = "shop/frontend-7c9f8d6b5-k4x2p";
const FRONTEND_2: &str = "shop/frontend-7c9f8d6b5-q8m7t";
const POSTGRES_0: &str = "data/postgres-0";
const POSTGRES_1: &str = "data/postgres-1";
const BACKUP: &str = "ops/backup-29397600-wq5zc";
const SHIPPER: &str = "kube-system/log-shipper-h7k2m";

/// The dump's running pods, and nothing else: no replica synthesised for the Deployment, the
/// ReplicaSets, the StatefulSet, the DaemonSets, the CronJob or its Jobs; the finished backup pod
/// and the host-network agent left out.
const REAL_PODS: [&str; 6] = [
    POSTGRES_0, POSTGRES_1, SHIPPER, BACKUP, FRONTEND_1, FRONTEND_2,
];

/// Hand-worked expectation for one probe of the dump: `ops/default-deny` isolates the backup pod
/// both ways; `data/postgres-from-shop-frontend` admits to postgres only frontend pods of
/// namespaces labelled team=retail (shop is), on the named port `pg` (5432).
fn hand_expected(port: u64, from: &str, to: &str) -> bool {
    if from == BACKUP || to == BACKUP {
        return false;
    }
    if to == POSTGRES_0 || to == POSTGRES_1 {
        return port == 5432 && (from == FRONTEND_1 || from == FRONTEND_2);
    }
    true
}

fn check_shop_matrix(doc: &Value) {
    let mut pods = pods_of(doc);
    pods.sort();
    let mut want: Vec<String> = REAL_PODS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(pods, want, "exactly the running pods of the dump");
    let probes = doc["scenarios"][0]["steps"][0]["probes"]
        .as_array()
        .expect("probes");
    let ports: Vec<u64> = probes.iter().filter_map(|p| p["port"].as_u64()).collect();
    assert_eq!(ports, [2020, 5432, 8080], "the declared container ports");
    let mut wrong = Vec::new();
    for p in probes {
        let port = p["port"].as_u64().expect("port");
        for from in REAL_PODS {
            for to in REAL_PODS {
                let got = &p["allowed"][from][to];
                if got != &Value::Bool(hand_expected(port, from, to)) {
                    wrong.push(format!("{port}: {from} -> {to} = {got}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "cells differ from the hand-worked ones: {wrong:#?}"
    );
}

fn check_shop_warnings(stderr: &str) {
    assert!(!stderr.contains("unknown field"), "{stderr}");
    // Services are read (`--probe-mode`): the dump's ClusterIP Service gives no warning.
    assert!(
        !stderr.contains("items[17]") && !stderr.contains("kind \"Service\" is ignored"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "field items[5].metadata.name: pod ops/backup-29396160-7hb2d is left out of the \
             model: finished (Succeeded)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("pod kube-system/node-agent-9xq4v is left out of the model: host network"),
        "{stderr}"
    );
}

#[test]
fn a_yaml_dump_gives_the_matrix_of_exactly_its_real_pods() {
    let (doc, stderr) = expect_json("tests/fixtures/dumps/shop-cluster.yaml");
    check_shop_matrix(&doc);
    check_shop_warnings(&stderr);
    assert_eq!(doc["scenarios"][0]["name"], "shop-cluster");
}

#[test]
fn the_json_dump_gives_the_same_matrix() {
    let (json, stderr) = expect_json("tests/fixtures/dumps/shop-cluster.json");
    check_shop_matrix(&json);
    check_shop_warnings(&stderr);
    let (yaml, _) = expect_json("tests/fixtures/dumps/shop-cluster.yaml");
    assert_eq!(
        json["scenarios"][0]["steps"], yaml["scenarios"][0]["steps"],
        "YAML and JSON dumps are the same cluster"
    );
    // Warnings point into the JSON text too.
    assert!(
        stderr.contains(
            "shop-cluster.json: document 1 (index 0), line 453: field items[5].metadata.name"
        ),
        "{stderr}"
    );
}

#[test]
fn explain_works_on_a_dump_and_uses_the_real_addresses_and_namespace_labels() {
    let out = netpolc(&[
        "explain",
        "tests/fixtures/dumps/shop-cluster.yaml",
        "--from",
        FRONTEND_2,
        "--to",
        POSTGRES_1,
        "--probe",
        "5432/TCP",
        "--format",
        "json",
    ]);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("postgres-from-shop-frontend"), "{text}");
    // Without the namespace's real label team=retail the frontend would not be admitted.
    let relabelled =
        std::fs::read_to_string(harness_dir().join("tests/fixtures/dumps/shop-cluster.yaml"))
            .expect("fixture")
            .replace(
                "      kubernetes.io/metadata.name: shop\n      team: retail\n",
                "      kubernetes.io/metadata.name: shop\n      team: other\n",
            );
    let (doc, stderr, code) = expect_text_probe("relabelled.yaml", &relabelled, "5432/TCP");
    assert_eq!(code, Some(0), "{stderr}");
    let doc = doc.expect("JSON");
    let pg = doc["scenarios"][0]["steps"][0]["probes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["port"] == 5432))
        .expect("5432 probe")
        .clone();
    assert_eq!(pg["allowed"][FRONTEND_2][POSTGRES_1], false);
}

#[test]
fn ip_block_rules_match_the_pods_status_addresses() {
    // 10.244.1.0/24 holds frontend-…-k4x2p (.17), postgres-0 (.5), the backup pod and the log
    // shipper; frontend-…-q8m7t is 10.244.2.9.
    let text = std::fs::read_to_string(harness_dir().join("tests/fixtures/dumps/shop-cluster.yaml"))
        .expect("fixture")
        .replace(
            "kind: List\nmetadata:\n  resourceVersion: \"\"\n",
            "- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: only-node-1, namespace: data}\n  \
             spec:\n    podSelector: {}\n    ingress: [{from: [{ipBlock: {cidr: 10.244.1.0/24}}]}]\n\
             kind: List\nmetadata:\n  resourceVersion: \"\"\n",
        );
    let (doc, stderr, code) = expect_text_probe("ipblock.yaml", &text, "8080/TCP");
    assert_eq!(code, Some(0), "{stderr}");
    let doc = doc.expect("JSON");
    let pg = doc["scenarios"][0]["steps"][0]["probes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["port"] == 8080))
        .expect("8080 probe")
        .clone();
    assert_eq!(
        pg["allowed"][FRONTEND_1][POSTGRES_0], true,
        "10.244.1.17 is inside"
    );
    assert_eq!(
        pg["allowed"][FRONTEND_2][POSTGRES_0], false,
        "10.244.2.9 is outside"
    );
}

const POD_OWNED_BY_RS: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web-6d4b9c7f8-x2k9p
  namespace: shop
  labels: {app: web, pod-template-hash: 6d4b9c7f8}
  uid: 11111111-2222-4333-8444-555555555555
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-6d4b9c7f8, uid: 0a0a0a0a-1b1b-4c2c-8d3d-4e4e4e4e4e4e, controller: true}
spec:
  containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
status: {phase: Running, podIP: 10.20.0.7}
";

const DEPLOYMENT_FROM_SERVER: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, uid: 9f9f9f9f-8e8e-4d7d-8c6c-5b5b5b5b5b5b, generation: 3}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]
      someFieldOfANewerServer: {enabled: true}
status: {replicas: 1}
";

#[test]
fn a_dump_without_replicasets_still_counts_each_pod_once() {
    // `kubectl get pods,deploy`: the ReplicaSet between them is missing; its name is the
    // Deployment's plus the pods' pod-template-hash, which ties the pod to the Deployment.
    let (doc, stderr, code) = expect_text(
        "pods-deploy.yaml",
        &format!("{POD_OWNED_BY_RS}---\n{DEPLOYMENT_FROM_SERVER}"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(pods_of(&doc.expect("JSON")), ["shop/web-6d4b9c7f8-x2k9p"]);
    assert!(
        !stderr.contains("unknown field"),
        "a newer server's field is ignored: {stderr}"
    );
}

#[test]
fn a_workload_without_its_pods_in_the_dump_is_synthesised_with_a_warning() {
    let (doc, stderr, code) = expect_text("deploy-only.yaml", DEPLOYMENT_FROM_SERVER);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        pods_of(&doc.expect("JSON")),
        ["shop/web-0", "shop/web-1", "shop/web-2"]
    );
    assert!(
        stderr.contains(
            "Deployment shop/web: no pod of it is in the input, so its 3 replica(s) are synthesised"
        ),
        "{stderr}"
    );
}

#[test]
fn a_cronjob_whose_job_is_missing_is_still_tied_to_its_pod() {
    let text = "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: report-29390000-abcde
    namespace: ops
    labels: {app: report}
    ownerReferences: [{apiVersion: batch/v1, kind: Job, name: report-29390000, uid: 1c1c1c1c-2d2d-4e3e-8f4f-5a5a5a5a5a5a, controller: true}]
  status: {phase: Running, podIP: 10.9.0.3}
- apiVersion: batch/v1
  kind: CronJob
  metadata: {name: report, namespace: ops, uid: 2d2d2d2d-3e3e-4f4f-8a5a-6b6b6b6b6b6b}
  spec:
    schedule: '@hourly'
    jobTemplate: {spec: {template: {metadata: {labels: {app: report}}, spec: {containers: [{name: r, image: busybox}], restartPolicy: Never}}}}
";
    let (doc, stderr, code) = expect_text("cronjob.yaml", text);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(pods_of(&doc.expect("JSON")), ["ops/report-29390000-abcde"]);
}

#[test]
fn typed_lists_from_the_api_fill_in_their_items_kind() {
    let text = r#"{"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "77"},
 "items": [
  {"metadata": {"name": "a", "namespace": "x", "uid": "u1", "labels": {"app": "a"}},
   "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]},
   "status": {"phase": "Running", "podIP": "10.1.0.1"}},
  {"metadata": {"name": "b", "namespace": "x", "uid": "u2"},
   "spec": {"containers": [{"name": "c", "image": "i"}]},
   "status": {"phase": "Pending"}}
 ]}"#;
    let (doc, stderr, code) = expect_text("pods.json", text);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(pods_of(&doc.expect("JSON")), ["x/a", "x/b"]);
    assert!(
        stderr.contains("pod x/b has no address in its status"),
        "a pending pod's made-up address is said: {stderr}"
    );
}

#[test]
fn hand_written_workloads_of_every_kind_stand_for_their_pods() {
    let workload = |kind: &str, api: &str, extra: &str| {
        format!(
            "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: w-{k}, namespace: x}}\nspec:\n{extra}  \
             template:\n    metadata: {{labels: {{app: {k}}}}}\n    spec:\n      containers: [{{name: c, image: i, ports: [{{containerPort: 80}}]}}]\n",
            k = kind.to_lowercase()
        )
    };
    let docs = [
        workload("StatefulSet", "apps/v1", "  replicas: 2\n  serviceName: s\n  selector: {matchLabels: {app: statefulset}}\n"),
        workload("DaemonSet", "apps/v1", "  selector: {matchLabels: {app: daemonset}}\n"),
        workload("ReplicaSet", "apps/v1", "  replicas: 3\n  selector: {matchLabels: {app: replicaset}}\n"),
        workload("ReplicationController", "v1", "  replicas: 2\n"),
        workload("Job", "batch/v1", "  parallelism: 4\n"),
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: w-cronjob, namespace: x}\nspec:\n  schedule: '@daily'\n  \
         jobTemplate:\n    spec:\n      template:\n        metadata: {labels: {app: cronjob}}\n        spec:\n          \
         containers: [{name: c, image: i}]\n          restartPolicy: Never\n"
            .to_string(),
    ];
    let (doc, stderr, code) = expect_text("workloads.yaml", &docs.join("---\n"));
    assert_eq!(code, Some(0), "{stderr}");
    let mut pods = pods_of(&doc.expect("JSON"));
    pods.sort();
    assert_eq!(
        pods,
        [
            "x/w-cronjob-0",
            "x/w-daemonset-0",
            "x/w-job-0",
            "x/w-replicaset-0",
            "x/w-replicaset-1",
            "x/w-replicaset-2",
            "x/w-replicationcontroller-0",
            "x/w-replicationcontroller-1",
            "x/w-statefulset-0",
            "x/w-statefulset-1",
        ]
    );
}

#[test]
fn hand_written_objects_stay_strict_and_server_written_ones_do_not() {
    let typo = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: x}\nspec:\n  \
                serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata:\n      \
                lables: {app: db}\n    spec: {containers: [{name: c, image: i}]}\n";
    let (_, stderr, code) = expect_text("typo.yaml", typo);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("typo.yaml: document 1 (index 0), line 9: field spec.template.metadata.lables: unknown field"),
        "{stderr}"
    );
    // The same object as a server returns it (status, uid) with a field this build does not know.
    let served =
        typo.replace(
            "metadata: {name: db, namespace: x}",
            "metadata: {name: db, namespace: x, uid: abc}",
        )
        .replace("lables: {app: db}", "labels: {app: db}")
        .replace(
            "serviceName: db",
            "serviceName: db\n  aFieldFromTheFuture: 1",
        ) + "status: {replicas: 1, somethingNew: [1, 2]}\n";
    let (doc, stderr, code) = expect_text("served.yaml", &served);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(pods_of(&doc.expect("JSON")), ["x/db-0"]);
    // Metadata and container ports are read strictly either way.
    let bad_port = served.replace(
        "containers: [{name: c, image: i}]",
        "containers: [{name: c, image: i, ports: [{containerport: 80}]}]",
    );
    let (_, stderr, code) = expect_text("served-port.yaml", &bad_port);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("field spec.template.spec.containers[0].ports[0]"),
        "{stderr}"
    );
}

#[test]
fn list_item_errors_name_the_item() {
    let text = "apiVersion: v1\nkind: List\nitems:\n\
                - {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: x}}\n\
                - apiVersion: v1\n  kind: Pod\n  metadata:\n    name: b\n    namespace: x\n    labels:\n      \"bad key!\": v\n";
    let (_, stderr, code) = expect_text("list.yaml", text);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("list.yaml: document 1 (index 0), line 11: field items[1].metadata.labels.bad key!: label key \"bad key!\" is invalid"),
        "{stderr}"
    );
    let nested = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: []}\n";
    let (_, stderr, code) = expect_text("nested.yaml", nested);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("field items[0].kind: a List cannot be nested"),
        "{stderr}"
    );
    let not_a_list = "apiVersion: v1\nkind: List\nitems: {a: 1}\n";
    let (_, stderr, code) = expect_text("items.yaml", not_a_list);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("field items: must be a list of objects"),
        "{stderr}"
    );
}

#[test]
fn a_list_of_only_ignored_kinds_is_bad_input_not_an_empty_pass() {
    let text = "apiVersion: v1\nkind: List\nitems:\n\
                - {apiVersion: v1, kind: Service, metadata: {name: s, namespace: x}}\n\
                - {apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: x}}\n";
    let (doc, stderr, code) = expect_text("services.yaml", text);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(doc.is_none(), "nothing on stdout");
    assert!(stderr.contains("services.yaml: yields no pod"), "{stderr}");
}

#[test]
fn duplicate_addresses_in_a_dump_name_the_field() {
    let pod = |name: &str| {
        format!(
            "- apiVersion: v1\n  kind: Pod\n  metadata: {{name: {name}, namespace: x, uid: u-{name}}}\n  \
             status:\n    phase: Running\n    podIP: 10.0.0.9\n"
        )
    };
    let text = format!(
        "apiVersion: v1\nkind: List\nitems:\n{}{}",
        pod("a"),
        pod("b")
    );
    let (_, stderr, code) = expect_text("dup.yaml", &text);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("dup.yaml: document 1 (index 0), line 15: field items[1].status.podIP: address 10.0.0.9 is already the address of pod x/a"),
        "{stderr}"
    );
}

#[test]
fn many_ignored_objects_give_a_bounded_number_of_warnings() {
    let mut text = String::from(
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: x}}\n",
    );
    for i in 0..200 {
        text.push_str(&format!(
            "- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: s{i}, namespace: x}}}}\n"
        ));
    }
    let (_, stderr, code) = expect_text("many.yaml", &text);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("kind \"ConfigMap\" is ignored"))
            .count(),
        5,
        "{stderr}"
    );
    assert!(
        stderr.contains("… and 195 more warnings like these (kind ConfigMap)"),
        "{stderr}"
    );
}

/// The typed lists recorded from an EKS-like cluster for the audit tests
/// (`tests/fixtures/cluster/eks-shop/`), merged into the one `v1` `List` that `kubectl get
/// ns,pods,netpol,deploy,sts,ds,rs,job,cronjob -A -o json` prints (each item's `kind` and
/// `apiVersion` filled in from its list, as kubectl does).
fn eks_shop_as_one_list() -> (Value, Vec<Value>) {
    let dir = harness_dir().join("tests/fixtures/cluster/eks-shop");
    let mut items = Vec::new();
    let mut pods = Vec::new();
    for file in [
        "namespaces.json",
        "networkpolicies.json",
        "pods.json",
        "deployments.json",
        "replicasets.json",
        "statefulsets.json",
        "daemonsets.json",
        "jobs.json",
        "cronjobs.json",
        "replicationcontrollers.json",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).expect("fixture");
        let list: Value = serde_json::from_str(&text).expect("json");
        let kind = list["kind"]
            .as_str()
            .and_then(|k| k.strip_suffix("List"))
            .expect("a typed list")
            .to_string();
        for mut item in list["items"].as_array().cloned().unwrap_or_default() {
            item["kind"] = Value::from(kind.clone());
            item["apiVersion"] = list["apiVersion"].clone();
            if kind == "Pod" {
                pods.push(item.clone());
            }
            items.push(item);
        }
    }
    (
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
        pods,
    )
}

/// Four host-network pods (aws-node and kube-proxy on two nodes) share the node address
/// 10.0.1.17: they are left out with a warning, never refused as duplicate addresses. Every
/// other pod that is not finished is in the matrix once, whatever workloads own it; the workload
/// objects add no replicas (the recording's StatefulSet `shop/db` has another uid than its pods'
/// owner references say: matched by kind and name, it still stands for them).
#[test]
fn a_recorded_eks_cluster_dump_gives_its_pods_once_and_leaves_host_network_pods_out() {
    let (list, pods) = eks_shop_as_one_list();
    let text = serde_json::to_string_pretty(&list).expect("json");
    let (doc, stderr, code) = expect_text("eks.json", &text);
    assert_eq!(code, Some(0), "{stderr}");
    let doc = doc.expect("one JSON document");
    let mut want: Vec<String> = pods
        .iter()
        .filter(|p| p["spec"]["hostNetwork"] != true)
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().expect("namespace"),
                p["metadata"]["name"].as_str().expect("name")
            )
        })
        .collect();
    want.sort();
    let mut got = pods_of(&doc);
    got.sort();
    assert_eq!(got, want, "{stderr}");
    assert_eq!(got.len(), 14, "the recording's running and pending pods");
    let host: Vec<&Value> = pods
        .iter()
        .filter(|p| p["spec"]["hostNetwork"] == true)
        .collect();
    assert_eq!(host.len(), 4);
    for p in host {
        let name = p["metadata"]["name"].as_str().expect("name");
        assert_eq!(p["status"]["podIP"], "10.0.1.17");
        assert!(
            stderr.contains(&format!(
                "pod kube-system/{name} is left out of the model: host network"
            )),
            "{name}: {stderr}"
        );
    }
    assert!(!stderr.contains("already the address"), "{stderr}");
    // The pending pod has no address yet: it is kept (the contract gives it one) and said so.
    assert!(
        stderr.contains("pod shop/backend-5b7c9d8f6-w9z3k has no address in its status"),
        "{stderr}"
    );
    assert!(!stderr.contains("synthesised"), "{stderr}");
}

/// Hand-written host-network pods too: two on one node address, next to an ordinary pod.
#[test]
fn host_network_pods_sharing_the_node_address_are_not_duplicates() {
    let pod = |name: &str, host: bool, ip: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x}}\nspec:\n  \
             hostNetwork: {host}\n  containers: [{{name: c, image: i}}]\nstatus: {{podIP: {ip}}}\n"
        )
    };
    let text = [
        pod("agent-a", true, "192.168.0.2"),
        pod("agent-b", true, "192.168.0.2"),
        pod("web", false, "10.0.0.5"),
    ]
    .concat();
    let (doc, stderr, code) = expect_text("host.yaml", &text);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(pods_of(&doc.expect("json")), vec!["x/web".to_string()]);
    assert_eq!(
        stderr
            .matches("is left out of the model: host network")
            .count(),
        2,
        "{stderr}"
    );
    // The same two addresses without hostNetwork are refused as duplicates.
    let text = [
        pod("agent-a", false, "192.168.0.2"),
        pod("agent-b", false, "192.168.0.2"),
    ]
    .concat();
    let (_, stderr, code) = expect_text("dup.yaml", &text);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "field status.podIP: address 192.168.0.2 is already the address of pod x/agent-a"
        ),
        "{stderr}"
    );
}
