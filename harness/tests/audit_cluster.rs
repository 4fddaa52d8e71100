//! `netpolc audit` end to end against a fake API server answering with recorded list responses of
//! an EKS-like cluster (`tests/fixtures/cluster/eks-shop/`: the VPC CNI with its network policy
//! agent switched off, host-network DaemonSets, a finished CronJob pod, a pending replica,
//! Deployments, StatefulSets and bare pods). The same binary, kubeconfig handling and kube-rs
//! client as on a real cluster; only the server is recorded.

mod fake_api;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use fake_api::{FakeApi, Options};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cluster/eks-shop")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}):\n{}\n{}", stdout(o), stderr(o)))
}

fn mutating(api: &FakeApi) -> Vec<String> {
    api.requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[test]
fn audit_groups_a_cluster_by_workload_and_says_what_is_exposed() {
    let api = FakeApi::start(Options::new(fixtures()));
    let dump = api.dir.path().join("dump.yaml");
    let html = api.dir.path().join("audit.html");
    let o = api.netpolc(&[
        "audit",
        "--format",
        "json",
        "--save-dump",
        dump.to_str().expect("utf-8"),
        "--html",
        html.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);

    // Workloads, named by their owners, each with its real pods only.
    let classes: BTreeMap<String, (String, String, usize)> = v["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                (
                    c["workload"]["kind"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c["workload"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c["pods"].as_array().map_or(0, Vec::len),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<String, (String, String, usize)> = [
        ("default/debug", "Pod", "debug", 1),
        ("default/nginx", "Pod", "nginx", 1),
        ("kube-system/coredns", "Deployment", "coredns", 2),
        ("monitoring/prometheus", "StatefulSet", "prometheus", 1),
        ("payments/api", "Deployment", "api", 1),
        ("shop/backend", "Deployment", "backend", 2),
        ("shop/db", "StatefulSet", "db", 2),
        ("shop/frontend", "Deployment", "frontend", 3),
    ]
    .into_iter()
    .map(|(n, k, w, p)| (n.to_string(), (k.to_string(), w.to_string(), p)))
    .collect();
    assert_eq!(classes, expected);
    assert_eq!(v["summary"]["pods"], 13);

    // Host-network, finished and unscheduled pods are left out, each with its reason.
    let excluded: BTreeMap<String, String> = v["excluded"]
        .as_array()
        .expect("excluded")
        .iter()
        .map(|e| {
            (
                e["pod"].as_str().unwrap_or_default().to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(excluded.len(), 6, "{excluded:#?}");
    assert!(excluded["kube-system/aws-node-x7k2p"].starts_with("host network"));
    assert!(excluded["shop/report-29390400-m4kq8"].starts_with("finished (Succeeded)"));
    assert!(excluded["shop/backend-5b7c9d8f6-w9z3k"].starts_with("no address yet"));

    // The CNI: aws-node with its policy agent present but switched off.
    assert_eq!(v["cni"]["name"], "aws-vpc-cni");
    assert_eq!(v["cni"]["enforces"], false);
    assert!(
        v["warnings"].as_array().expect("warnings").iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("does not enforce NetworkPolicy"))),
        "{}",
        v["warnings"]
    );

    let findings: Vec<String> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["text"].as_str().unwrap_or_default().to_string())
        .collect();
    for want in [
        "default/* is not isolated for ingress: any pod may reach its 2 workloads (default/debug, default/nginx)",
        "shop/frontend accepts 80/TCP from anywhere, including outside the cluster (shop/frontend-public spec.ingress[0])",
        "egress is unrestricted for 7 of 8 workloads: no policy limits where they connect (default/debug, default/nginx, kube-system/coredns, monitoring/prometheus, shop/backend, shop/db, shop/frontend)",
        "shop/db accepts 5432/TCP from every pod in namespace monitoring and 1 workload: shop/backend",
        "shop/backend accepts 8080/TCP from 1 workload: shop/frontend",
        "payments/api accepts 8443/TCP from no workload (every connection to it is denied)",
    ] {
        assert!(
            findings.contains(&want.to_string()),
            "missing {want:?} in {findings:#?}"
        );
    }

    // Read-only: only GETs, and the pod list was followed page by page.
    assert!(mutating(&api).is_empty(), "{:?}", mutating(&api));
    let pod_pages = api
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/pods")
        .count();
    assert!(
        pod_pages >= 3,
        "19 pods in pages of 6: {pod_pages} requests"
    );

    // The saved dump gives `expect` the same matrix, pod by pod.
    let e = std::process::Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .args(["expect", dump.to_str().expect("utf-8"), "--format", "json"])
        .output()
        .expect("expect runs");
    assert_eq!(e.status.code(), Some(0), "{}", stderr(&e));
    let ev = json(&e);
    let class_of: BTreeMap<String, String> = v["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .flat_map(|c| {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            c["pods"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |p| (p.as_str().unwrap_or_default().to_string(), name.clone()))
        })
        .collect();
    let probes = ev["scenarios"][0]["steps"][0]["probes"]
        .as_array()
        .expect("probes");
    assert_eq!(probes.len(), v["probes"].as_array().map_or(0, Vec::len));
    let mut cells = 0;
    for (ep, ap) in probes.iter().zip(v["probes"].as_array().expect("probes")) {
        assert_eq!(
            (&ep["port"], &ep["protocol"]),
            (&ap["port"], &ap["protocol"])
        );
        for (from, row) in ep["allowed"].as_object().expect("rows") {
            for (to, allowed) in row.as_object().expect("row") {
                let (cf, ct) = (&class_of[from], &class_of[to]);
                assert_eq!(
                    allowed, &ap["allowed"][cf][ct],
                    "{from} -> {to} {}",
                    ep["port"]
                );
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 13 * 13 * probes.len());

    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.contains("Content-Security-Policy"));
    assert_eq!(
        page.matches("<tr id=\"class-").count(),
        8,
        "one row per workload"
    );
    assert!(page.contains("StatefulSet db") && page.contains("does not enforce NetworkPolicy"));
    assert!(!page.contains("<script"), "the audit page needs no script");
}

#[test]
fn the_table_reads_per_workload() {
    let api = FakeApi::start(Options::new(fixtures()));
    let o = api.netpolc(&["audit", "--context", "fake-eks", "--port", "5432/TCP"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("netpolc audit: cluster fake-eks (Kubernetes v1.31.2-eks-7f9249a)\n"),
        "{out}"
    );
    assert!(
        out.contains("CNI: aws-vpc-cni (does NOT enforce NetworkPolicy;"),
        "{out}"
    );
    assert!(
        out.contains("  shop/db                StatefulSet db"),
        "{out}"
    );
    // Only the asked port, and only the workloads that declare it as columns.
    assert!(
        out.contains("  5432/TCP\n    -                     shop/db\n"),
        "{out}"
    );
    assert!(out.contains("    monitoring/prometheus .\n"), "{out}");
    assert!(out.contains("    payments/api          X\n"), "{out}");
    assert!(!out.contains("  80/TCP\n"), "{out}");
}

#[test]
fn unlisted_workloads_fall_back_to_label_names_and_forbidden_pods_stop_the_audit() {
    let mut opts = Options::new(fixtures());
    opts.forbidden = ["/apis/apps/v1/replicasets", "/apis/batch/v1/jobs"]
        .into_iter()
        .map(String::from)
        .collect();
    let api = FakeApi::start(opts);
    let o = api.netpolc(&["audit", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let names: BTreeSet<&str> = v["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains("shop/frontend") && names.contains("kube-system/coredns"),
        "{names:?}"
    );
    assert!(
        v["warnings"].as_array().expect("warnings").iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.starts_with("cannot list replicasets"))),
        "{}",
        v["warnings"]
    );

    let mut opts = Options::new(fixtures());
    opts.forbidden = BTreeSet::from(["/api/v1/pods".to_string()]);
    let api = FakeApi::start(opts);
    let o = api.netpolc(&["audit"]);
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(err.contains("not allowed to list pods"), "{err}");
    assert!(err.contains("get/list/watch on namespaces, pods"), "{err}");
}

#[test]
fn an_unreachable_cluster_is_exit_3() {
    let api = FakeApi::start(Options::new(fixtures()));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let text = std::fs::read_to_string(api.kubeconfig())
        .expect("kubeconfig")
        .replace(&api.port.to_string(), &port.to_string());
    std::fs::write(api.kubeconfig(), text).expect("rewrite");
    let o = api.netpolc(&["audit"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("contacting the API server"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn probing_needs_an_acknowledgement_and_a_dry_run_changes_nothing() {
    let api = FakeApi::start(Options::new(fixtures()));
    let o = api.netpolc(&["audit", "--probe", "--run-id", "t1"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("Kubernetes cannot remove an ephemeral container"),
        "{err}"
    );
    assert!(err.contains("pods/ephemeralcontainers: patch"), "{err}");
    assert!(err.contains("--accept-ephemeral-containers"), "{err}");
    assert!(mutating(&api).is_empty());

    let o = api.netpolc(&[
        "audit",
        "--probe",
        "--dry-run",
        "--run-id",
        "t1",
        "--max-pods",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("would add ephemeral container netpolc-probe-t1 to pod"),
        "{out}"
    );
    assert_eq!(
        out.matches("would add ephemeral container").count(),
        3,
        "{out}"
    );
    assert!(out.contains("/agnhost connect 10.0.2."), "{out}");
    assert!(out.contains("beyond --max-pods 3"), "{out}");
    assert!(out.contains("only TCP is probed"), "{out}");
    assert!(mutating(&api).is_empty(), "{:?}", mutating(&api));
}

/// The pod name behind each pod address of the recording.
fn pods_by_ip() -> BTreeMap<String, String> {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("pods.json")).expect("pods.json"),
    )
    .expect("json");
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|p| p["spec"]["hostNetwork"] != true)
        .filter_map(|p| {
            Some((
                p["status"]["podIP"].as_str()?.to_string(),
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str()?,
                    p["metadata"]["name"].as_str()?
                ),
            ))
        })
        .collect()
}

fn probe_run(answer: Box<fake_api::Answer>) -> (FakeApi, std::process::Output) {
    let mut opts = Options::new(fixtures());
    opts.answer = Some(answer);
    let api = FakeApi::start(opts);
    let o = api.netpolc(&[
        "audit",
        "--probe",
        "--accept-ephemeral-containers",
        "--run-id",
        "t2",
        "--format",
        "json",
        "--probe-rate",
        "50",
        "--probe-timeout-ms",
        "1000",
    ]);
    (api, o)
}

#[test]
fn a_cluster_that_lets_everything_through_ignores_its_policies() {
    let (api, o) = probe_run(Box::new(|_, _, _| (0, String::new())));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(
        v["observed"]["verdict"], "ignores-policies",
        "{}",
        v["observed"]["headline"]
    );
    assert!(
        v["observed"]["headline"]
            .as_str()
            .is_some_and(|h| h.starts_with("the cluster ignores your policies")),
    );
    // Said up front, before anything was changed.
    assert!(stderr(&o).contains("Kubernetes cannot remove an ephemeral container"));
    // The only writes: one ephemeral-container patch per sampled pod, one pod per workload.
    let writes = mutating(&api);
    assert!(!writes.is_empty());
    assert!(
        writes
            .iter()
            .all(|w| w.starts_with("PATCH /api/v1/namespaces/")
                && w.ends_with("/ephemeralcontainers")),
        "{writes:?}"
    );
    let patched: BTreeSet<String> = api.ephemeral().into_iter().map(|e| e.0).collect();
    assert_eq!(patched.len(), writes.len(), "one patch per pod");
    assert!(
        patched.len() <= 8,
        "at most one pod per workload: {patched:?}"
    );
    assert!(api.ephemeral().iter().all(|e| e.1 == "netpolc-probe-t2"));
}

#[test]
fn a_cluster_that_enforces_its_policies_is_told_so() {
    let ips = pods_by_ip();
    // What an enforcing cluster does with these policies, written out by hand.
    let answer = move |source: &str, host: &str, port: u16| -> (i32, String) {
        let dst = ips.get(host).cloned().unwrap_or_default();
        let allowed = if source.starts_with("payments/") {
            false // payments/deny-all denies its egress
        } else if dst.starts_with("shop/backend-") {
            source.starts_with("shop/frontend-") && port == 8080
        } else if dst.starts_with("shop/db-") {
            (source.starts_with("shop/backend-") || source.starts_with("monitoring/"))
                && port == 5432
        } else if dst.starts_with("shop/frontend-") {
            port == 80
        } else {
            !dst.starts_with("payments/")
        };
        if allowed {
            (0, String::new())
        } else {
            (1, "TIMEOUT".into())
        }
    };
    let (_api, o) = probe_run(Box::new(answer));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(
        v["observed"]["verdict"], "enforcing",
        "{}",
        v["observed"]["headline"]
    );
    let cells = v["observed"]["cells"].as_array().expect("cells");
    assert!(
        cells.iter().any(|c| c["expected"] == false),
        "denied cells were probed"
    );
    assert!(
        cells.iter().all(|c| c["judgement"] == "agrees"),
        "{cells:#?}"
    );
}
