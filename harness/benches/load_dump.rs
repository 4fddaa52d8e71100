//! Loading cluster dumps: a `kubectl get pods,netpol -A` style `List` of N pods (with status and
//! managedFields, as a server returns them), in YAML and in JSON, for growing N. Prints the load
//! time, time per pod and the growth ratio; the goal is cost linear in the dump (a ratio near 2
//! when N doubles) and a 5,000-pod dump (netpolc's limit) loaded in seconds.
//!
//! `cargo bench --bench load_dump`

use std::time::{Duration, Instant};

use netpol_conformance::scenario::load_paths;
use serde_json::{Value, json};

fn pod(i: usize) -> Value {
    let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("web-{i}"), "namespace": format!("ns{}", i % 50),
            "uid": format!("0000-{i}"), "resourceVersion": i.to_string(),
            "labels": {"app": format!("app{}", i % 20), "pod-template-hash": "5d9c7b"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("app{}-5d9c7b", i % 20), "uid": "r", "controller": true}],
            "managedFields": [{"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kubelet",
                "operation": "Update", "time": "2026-11-20T09:12:45Z",
                "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}}},
                    "f:podIP": {}}}}]
        },
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
            "nodeName": "worker-1", "restartPolicy": "Always"},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": "2026-11-20T09:12:51Z"}]}
    })
}

fn dump(pods: usize) -> Value {
    let mut items: Vec<Value> = (0..pods).map(pod).collect();
    for n in 0..50 {
        items.push(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "from-app1", "namespace": format!("ns{n}")},
            "spec": {"podSelector": {"matchLabels": {"app": format!("app{}", n % 20)}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "app1"}}}],
                    "ports": [{"port": "http"}]}]}
        }));
    }
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

/// Block-style YAML as kubectl prints it (two-space indentation, list items at their key's level).
fn yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                let key = serde_json::to_string(k).unwrap_or_default();
                match val {
                    Value::Object(o) if !o.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        yaml(val, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        yaml(val, indent, out);
                    }
                    _ => out.push_str(&format!("{pad}{key}: {val}\n")),
                }
            }
        }
        Value::Array(a) => {
            for item in a {
                let mut inner = String::new();
                yaml(item, indent + 2, &mut inner);
                // The first line of the item carries the dash.
                let body = inner.trim_start_matches(' ');
                out.push_str(&format!("{pad}- {body}"));
            }
        }
        other => out.push_str(&format!("{pad}{other}\n")),
    }
}

fn time_load(path: &std::path::Path) -> Duration {
    let start = Instant::now();
    let loaded = load_paths(&[path.to_path_buf()]).unwrap_or_else(|e| panic!("{e}"));
    let took = start.elapsed();
    assert!(!loaded.scenarios[0].steps[0].model.pods.is_empty());
    took
}

fn main() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{:>6} {:>8} {:>10} {:>12} {:>7}",
        "pods", "format", "MiB", "load", "ratio"
    );
    let mut last: [Option<Duration>; 2] = [None, None];
    for pods in [625, 1250, 2500, 5000] {
        let d = dump(pods);
        let json_text = serde_json::to_string_pretty(&d).unwrap_or_default();
        let mut yaml_text = String::new();
        yaml(&d, 0, &mut yaml_text);
        for (k, (name, text)) in [("json", json_text), ("yaml", yaml_text)]
            .into_iter()
            .enumerate()
        {
            let file = dir.path().join(format!("dump-{pods}.{name}"));
            std::fs::write(&file, &text).unwrap_or_else(|e| panic!("{e}"));
            let took = time_load(&file);
            let ratio = last[k].map_or(String::from("-"), |l| {
                format!("{:.2}", took.as_secs_f64() / l.as_secs_f64())
            });
            println!(
                "{pods:>6} {name:>8} {:>10.1} {:>10.0}ms {ratio:>7}",
                text.len() as f64 / 1_048_576.0,
                took.as_secs_f64() * 1000.0
            );
            last[k] = Some(took);
        }
    }
}
