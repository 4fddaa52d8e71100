//! Services as input (`kind: Service`, `model.services`), `--probe-mode` on the command line and
//! the service faults' listing. Touches no dataplane (see `local_run` for service NAT runs).

use std::process::Command;

use netpol_conformance::model::{PodRef, Probe, Protocol};
use netpol_conformance::run::plan_step_via;
use netpol_conformance::scenario::load_str;
use netpol_conformance::service::{Backing, ProbeMode, TargetPort};

const BIN: &str = env!("CARGO_BIN_EXE_netpolc");

const MANIFEST: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {containers: [{name: c, image: i, ports: [{containerPort: 5432, name: pg}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports: [{port: 15432, targetPort: pg}]
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: shop}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}
"#;

#[test]
fn manifest_services_are_read_and_probed_through() {
    let loaded = load_str(MANIFEST, "shop.yaml").expect("loads");
    let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings.iter().any(|w| w.contains("headless")),
        "{warnings:?}"
    );
    let step = &loaded.scenarios[0].steps[0];
    assert_eq!(step.model.services.len(), 1);
    let db = &step.model.services[0];
    assert_eq!(db.ports[0].target_port, TargetPort::Name("pg".into()));
    assert!(
        matches!(&db.backing, Backing::Selector(s) if s.get("app").map(String::as_str) == Some("db"))
    );
    let probe = Probe::new(5432, Protocol::Tcp);
    let plan = plan_step_via(step, &[probe], &[ProbeMode::ServiceIp]);
    let to_db = plan
        .iter()
        .find(|c| c.request.to == PodRef::new("shop", "db"))
        .expect("cell");
    let t = to_db.request.service.as_ref().expect("db's own Service");
    assert_eq!((t.name.as_str(), t.port), ("db", 15432));
    assert_eq!(t.cluster_ip.to_string(), "10.96.0.11");
    let to_web = plan
        .iter()
        .find(|c| c.request.to == PodRef::new("shop", "web"))
        .expect("cell");
    let t = to_web.request.service.as_ref().expect("per-pod Service");
    assert_eq!((t.name.as_str(), t.port), ("s-shop-web", 5432));
}

fn load_err(text: &str) -> String {
    match load_str(text, "bad.yaml") {
        Ok(_) => panic!("should be refused:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_services_are_refused_with_their_field() {
    let svc = |spec: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: x}}\nspec: {spec}\n"
        )
    };
    let e = load_err(&svc(
        "{selector: {a: b}, ports: [{port: 80, targetPort: \"not a name!\"}]}",
    ));
    assert!(e.contains("spec.ports[0].targetPort"), "{e}");
    let e = load_err(&svc("{selector: {a: b}, ports: [{port: 0}]}"));
    assert!(e.contains("spec.ports[0].port"), "{e}");
    let e = load_err(&svc(
        "{selector: {a: b}, ports: [{port: 80, protocol: ICMP}]}",
    ));
    assert!(e.contains("spec.ports[0].protocol"), "{e}");
    let e = load_err(&svc(
        "{selector: {a: b}, clusterIP: 10.96.0.300, ports: [{port: 80}]}",
    ));
    assert!(e.contains("spec.clusterIP"), "{e}");
    let e = load_err(&svc("{selector: {a: b}, ports: [{port: 80}], bogus: 1}"));
    assert!(e.contains("spec.bogus"), "{e}");
    let e = load_err(
        "apiVersion: v1\nkind: Service\nmetadata: {name: 1abc, namespace: x}\nspec: {selector: {a: b}, ports: [{port: 80}]}\n",
    );
    assert!(e.contains("metadata.name") && e.contains("DNS-1035"), "{e}");
    let twice = format!(
        "{}---\n{}",
        svc("{selector: {a: b}, ports: [{port: 80}]}"),
        svc("{selector: {a: c}, ports: [{port: 81}]}")
    );
    assert!(load_err(&twice).contains("declared twice"));
    // Scenario files: the same checks, flat paths.
    let sc = "apiVersion: netpolc/v1\nkind: Scenario\nmodel:\n  pods: [{name: a, ports: [80/TCP]}]\n  \
              services: [{name: s, selector: {app: a}, ports: [{port: 80, targetPort: 0}]}]\n";
    let e = load_err(sc);
    assert!(
        e.contains("model.services[0]") && e.contains("ports[0].targetPort"),
        "{e}"
    );
}

fn netpolc(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("netpolc runs")
}

#[test]
fn unknown_probe_modes_are_usage_errors() {
    let o = netpolc(&[
        "run",
        "../scenarios/seed/frontend-backend.yaml",
        "--probe-mode",
        "cluster-ip",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pod-ip, service-ip or service-name"), "{err}");
}

#[test]
fn service_faults_say_service_in_their_sentence() {
    let o = netpolc(&["faults"]);
    assert_eq!(o.status.code(), Some(0));
    let text = String::from_utf8_lossy(&o.stdout);
    let service: Vec<&str> = text.lines().filter(|l| l.starts_with("service-")).collect();
    assert_eq!(service.len(), 3, "{text}");
    for l in service {
        let sentence = l.split_once(char::is_whitespace).map(|x| x.1).unwrap_or("");
        assert!(sentence.contains("service"), "{l}");
    }
}

/// A report with one cell probed both ways, built from JSON (old reports without `via` read as
/// pod-ip).
fn two_way_report() -> netpol_conformance::report::model::RunReport {
    let cell = |via: Option<&str>, observed: bool| {
        let mut c = serde_json::json!({
            "from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP",
            "expected": true, "observed": observed,
            "outcome": if observed { "pass" } else { "fail" },
            "attempts": 1, "connectivity": if observed { "connected" } else { "timeout" },
        });
        if let Some(v) = via {
            c["via"] = serde_json::json!(v);
        }
        c
    };
    serde_json::from_value(serde_json::json!({
        "verdict": "non-conformant", "provider": "local", "cni": "nftables",
        "probe_timeout_ms": 1000,
        "summary": {"cells": 2, "passed": 1, "failed": 1, "flaky": 0, "unsupported": 0, "errors": 0},
        "scenarios": [{"name": "sc", "source": "sc.yaml", "steps": [{
            "name": "st", "convergence_ms": null, "probe_wall_ms": 1,
            "cells": [cell(None, true), cell(Some("service-ip"), false)]}]}]
    }))
    .expect("report")
}

#[test]
fn reports_keep_modes_apart() {
    use netpol_conformance::report::terminal::probe_tables;
    let r = two_way_report();
    let step = &r.scenarios[0].steps[0];
    assert_eq!(
        step.cells[0].via,
        ProbeMode::PodIp,
        "old reports read as pod-ip"
    );
    let tables = probe_tables(step);
    let labels: Vec<String> = tables.iter().map(|t| t.label()).collect();
    assert_eq!(labels, ["80/TCP", "80/TCP via service-ip"]);
    assert_eq!(tables[1].count(netpol_conformance::probe::Outcome::Fail), 1);
    let junit = netpol_conformance::report::junit::render(&r);
    assert!(junit.contains("name=\"st 80/TCP\""), "{junit}");
    assert!(
        junit.contains("name=\"st 80/TCP via service-ip\""),
        "{junit}"
    );
    let html = netpol_conformance::report::html::render(&r);
    // minijinja escapes `/` as `&#x2f;`.
    assert!(
        html.contains("80&#x2f;TCP via service-ip"),
        "heading names the mode"
    );
    // diff compares like with like: the pod-ip cell of one run against the pod-ip cell of the
    // other, never against the service-ip one.
    let mut b = r.clone();
    b.scenarios[0].steps[0].cells.truncate(1);
    let d = netpol_conformance::report::diff::diff("a", &r, "b", &b);
    assert_eq!(d.cells_compared, 2);
    assert_eq!(d.differing, 1);
    assert_eq!(d.differences[0].via, ProbeMode::ServiceIp);
    assert!(d.differences[0].b.is_none());
}
