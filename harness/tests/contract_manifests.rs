//! Plain Kubernetes manifests through `netpolc expect --format json`, compared with expectations
//! worked out by hand (the contract's JSON shape, every pod on both axes, `source` as given).
//!
//! Each `tests/fixtures/manifests/NAME.yaml` has a `NAME.expected.json` beside it. Both were written
//! by `generate.py` there, from a rule per case stated by hand in upstream e2e terms (never from
//! netpolc's output); a `# netpolc-args:` line in the manifest gives extra flags (`--probe`).

use std::path::{Path, PathBuf};
use std::process::Command;

use rstest::rstest;
use serde_json::Value;

fn harness_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Flags from the manifest's `# netpolc-args: …` line, if any.
fn extra_args(text: &str) -> Vec<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("# netpolc-args:"))
        .map(|a| a.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Runs `netpolc expect REL --format json ARGS` from the harness directory.
fn expect_json(rel: &str, args: &[String]) -> (Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(harness_dir())
        .args(["expect", rel, "--format", "json"])
        .args(args)
        .output()
        .expect("the netpolc binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "expect {rel} failed:\n{stderr}");
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("expect {rel} printed no single JSON document: {e}"));
    (json, stderr)
}

/// Every differing cell, named, so a failure reads as a list of wrong pairs.
fn differences(got: &Value, want: &Value) -> Vec<String> {
    let probes = |v: &Value| -> Vec<Value> {
        v["scenarios"][0]["steps"][0]["probes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    let (g, w) = (probes(got), probes(want));
    if g.len() != w.len() {
        out.push(format!("{} probes, want {}", g.len(), w.len()));
    }
    for (gp, wp) in g.iter().zip(&w) {
        let name = format!("{}/{}", wp["port"], wp["protocol"].as_str().unwrap_or("?"));
        if gp["port"] != wp["port"] || gp["protocol"] != wp["protocol"] {
            out.push(format!(
                "probe {}/{}, want {name}",
                gp["port"], gp["protocol"]
            ));
            continue;
        }
        let (Some(ga), Some(wa)) = (gp["allowed"].as_object(), wp["allowed"].as_object()) else {
            out.push(format!("{name}: `allowed` is not an object"));
            continue;
        };
        let gkeys: Vec<_> = ga.keys().collect();
        let wkeys: Vec<_> = wa.keys().collect();
        if gkeys.len() != wkeys.len() || !wkeys.iter().all(|k| ga.contains_key(*k)) {
            out.push(format!("{name}: sources {gkeys:?}, want {wkeys:?}"));
        }
        for (from, row) in wa {
            for (to, v) in row.as_object().into_iter().flatten() {
                let seen = &ga.get(from).map(|r| r[to].clone()).unwrap_or(Value::Null);
                if seen != v {
                    out.push(format!("{name} {from} -> {to}: got {seen}, want {v}"));
                }
            }
        }
    }
    out
}

#[rstest]
fn manifest_reachability_matches_the_hand_computed_table(
    #[base_dir = "tests/fixtures/manifests"]
    #[files("*.yaml")]
    path: PathBuf,
) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("fixture name is UTF-8");
    let rel = format!("tests/fixtures/manifests/{name}");
    let text = std::fs::read_to_string(&path).expect("fixture is readable");
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(path.with_extension("expected.json"))
            .expect("every manifest fixture has NAME.expected.json"),
    )
    .expect("expected JSON parses");
    let (got, _) = expect_json(&rel, &extra_args(&text));
    let diffs = differences(&got, &want);
    assert!(diffs.is_empty(), "{name}:\n  {}", diffs.join("\n  "));
    // Whole-document equality too: names, source as given, nesting, no extra keys.
    assert_eq!(got, want, "{name}: JSON differs outside the cells");
}

#[test]
fn ignored_kinds_are_warned_about_by_document() {
    let (_, stderr) = expect_json("tests/fixtures/manifests/yaml-syntax-corners.yaml", &[]);
    // Services are read now (for `--probe-mode service-ip`); this one has no selector, so it is
    // not probed, with a warning.
    for kind in [
        "Service default/ignored has no selector",
        "\"ConfigMap\" is ignored",
    ] {
        assert!(
            stderr.contains(kind) && stderr.contains("warning: "),
            "want a warning naming {kind}:\n{stderr}"
        );
    }
}

/// CRLF line endings (files written on Windows) read exactly like LF ones.
#[test]
fn crlf_line_endings_read_like_lf() {
    let lf_rel = "tests/fixtures/manifests/yaml-syntax-corners.yaml";
    let lf = std::fs::read_to_string(harness_dir().join(lf_rel)).expect("fixture is readable");
    assert!(!lf.contains('\r'), "the fixture itself uses LF");
    let dir = std::env::temp_dir().join(format!("netpolc-qa-crlf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let crlf_path = dir.join("yaml-syntax-corners.yaml");
    std::fs::write(&crlf_path, lf.replace('\n', "\r\n")).expect("write CRLF copy");
    let crlf_rel = crlf_path.to_str().expect("temp path is UTF-8").to_string();
    let (mut got, _) = expect_json(&crlf_rel, &[]);
    let (want, _) = expect_json(lf_rel, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got["scenarios"][0]["source"], Value::String(crlf_rel));
    got["scenarios"][0]["source"] = want["scenarios"][0]["source"].clone();
    assert_eq!(got, want, "CRLF changed the result");
}
