//! Names that the loader would refuse, handed straight to the local dataplane (as a future
//! input path that forgot validation would): each creates exactly the namespace of that literal
//! name or is refused, and never executes anything. Real namespaces, nftables and packets; needs
//! root, `nft`, `ip`, `bash` and `timeout` (the reproduction commands are run as printed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netpol_conformance::model::{PodRef, Probe, Protocol};
use netpol_conformance::probe::{Connectivity, ProbeRequest};
use netpol_conformance::provider::local::{self, LocalCni, LocalOptions, LocalPlatform};
use netpol_conformance::provider::{Platform, ProviderError, Session};
use netpol_conformance::scenario::{Scenario, load_str};

const TIMEOUT: Duration = Duration::from_millis(800);

const BASE: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: hostile
model:
  namespaces: [{name: x}]
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ip: 10.77.0.1, ports: [80/TCP, 81/TCP]}
    - {namespace: x, name: b, labels: {pod: b}, ip: 10.77.0.2, ports: [80/TCP, 81/TCP]}
steps:
  - name: b-admits-80-only
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: only-80, namespace: x}
        spec:
          podSelector: {matchLabels: {pod: b}}
          ingress: [{ports: [{port: 80}]}]
"#;

fn require_tools() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create network namespaces and must run as root"
    );
    for (tool, arg) in [("nft", "--version"), ("ip", "-V"), ("bash", "--version")] {
        let ok = std::process::Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "`{tool}` is needed by this test");
    }
}

/// The scenario with namespace `x` renamed to `ns` and the policy renamed to `policy`,
/// everywhere the provider reads them — bypassing the loader's validation on purpose.
fn hostile(ns: &str, policy: &str) -> Scenario {
    let mut sc = match load_str(BASE, "hostile.yaml") {
        Ok(mut l) => l.scenarios.remove(0),
        Err(e) => panic!("base scenario: {e:?}"),
    };
    for step in &mut sc.steps {
        if let Some(mut n) = step.model.namespaces.remove("x") {
            n.name = ns.to_string();
            step.model.namespaces.insert(ns.to_string(), n);
        }
        let pods = std::mem::take(&mut step.model.pods);
        step.model.pods = pods
            .into_values()
            .map(|mut p| {
                p.namespace = ns.to_string();
                (p.pod_ref(), p)
            })
            .collect::<BTreeMap<_, _>>();
        for p in &mut step.policies {
            p.key.namespace = ns.to_string();
            p.key.name = policy.to_string();
        }
    }
    sc
}

/// Marker files an injected `touch` would create (relative ones land in the working directory
/// of whatever ran them: this process's, which is also the cwd of any child).
fn markers(tag: &str) -> Vec<PathBuf> {
    let cwd = std::env::current_dir().expect("cwd");
    vec![
        cwd.join(format!("pwned-{tag}")),
        Path::new("/tmp").join(format!("pwned-{tag}")),
    ]
}

fn run_id(test: &str) -> String {
    format!("dataplane{}-{test}", std::process::id())
}

fn ours(run_id: &str) -> Vec<String> {
    let prefix = format!("{}{run_id}-", local::PREFIX);
    let mut v: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn platform(id: &str) -> LocalPlatform {
    match LocalPlatform::new(LocalOptions::new(id, LocalCni::Nftables)) {
        Ok(p) => p,
        Err(e) => panic!("local dataplane unavailable: {e}"),
    }
}

/// Names that are legal file names but full of shell, `ip -batch` and nft syntax: each becomes
/// exactly that namespace, packets flow and the policy (with a hostile name in its rule
/// comment) is enforced, the printed reproduction command runs the probe when pasted into
/// `sh`, and no injected command ever runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_become_literal_namespaces_and_run_nothing() {
    require_tools();
    let tag = format!("{}", std::process::id());
    let cases = [
        format!("x\nnetns exec netpolc-evil touch pwned-{tag}\n"),
        format!("x;touch pwned-{tag};$(touch pwned-{tag})`touch pwned-{tag}`"),
        "x 'q' \"d\" \\ \t ü 日本".to_string(),
    ];
    let policy =
        format!("p\"; flush ruleset; add table ip pwned-{tag} {{ }}\n$(touch pwned-{tag})");
    for (i, ns) in cases.iter().enumerate() {
        let id = run_id(&format!("lit{i}"));
        let platform = platform(&id);
        let sc = hostile(ns, &policy);
        let step = &sc.steps[0];
        let mut session = platform.open(0, &sc).await.expect("open");
        session.apply(step).await.expect("apply");

        // Exactly the literal names: the node and one per pod.
        let prefix = format!("{}{id}--s0-", local::PREFIX);
        let mut want = vec![
            format!("{prefix}node"),
            format!("{prefix}{ns}.a"),
            format!("{prefix}{ns}.b"),
        ];
        want.sort();
        assert_eq!(ours(&id), want, "case {i}");

        // Real packets, and the policy holds: 80 admitted, 81 dropped.
        let (a, b) = (PodRef::new(ns.as_str(), "a"), PodRef::new(ns.as_str(), "b"));
        let req = |port| ProbeRequest {
            from: a.clone(),
            to: b.clone(),
            to_ip: step.model.pods[&b].ip,
            probe: Probe::new(port, Protocol::Tcp),
            via: netpol_conformance::service::ProbeMode::PodIp,
            service: None,
        };
        let obs = session.probe(&[req(80), req(81)], TIMEOUT).await;
        assert_eq!(
            obs[0].result,
            Connectivity::Connected,
            "case {i}: {:?}",
            obs[0]
        );
        assert_eq!(
            obs[1].result,
            Connectivity::Timeout,
            "case {i}: {:?}",
            obs[1]
        );

        // The hostile policy name is a comment, verbatim (or cut to nft's limit), and added no
        // table: the namespace holds the one table the provider wrote.
        let listed = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &want_pod(&prefix, ns, "b"),
                "nft",
                "-j",
                "list",
                "ruleset",
            ])
            .output()
            .expect("nft lists");
        assert!(listed.status.success(), "{listed:?}");
        let doc: serde_json::Value =
            serde_json::from_slice(&listed.stdout).expect("nft prints JSON");
        let items = doc["nftables"].as_array().cloned().unwrap_or_default();
        let tables: Vec<&serde_json::Value> = items.iter().filter_map(|o| o.get("table")).collect();
        assert_eq!(tables.len(), 1, "case {i}: {tables:?}");
        assert_eq!(tables[0]["name"], "netpolc");
        let comments: Vec<&str> = items
            .iter()
            .filter_map(|o| o.get("rule")?.get("comment")?.as_str())
            .collect();
        assert!(
            !comments.is_empty(),
            "case {i}: the policy's rule carries its name"
        );
        for c in comments {
            assert!(format!("{ns}/{policy}").starts_with(c), "case {i}: {c:?}");
        }

        // Pasting the printed command runs exactly the probe, in exactly that namespace.
        let allowed = std::process::Command::new("sh")
            .arg("-c")
            .arg(&obs[0].command)
            .output()
            .expect("sh runs");
        assert!(
            allowed.status.success(),
            "case {i}: {:?} → {allowed:?}",
            obs[0].command
        );
        let denied = std::process::Command::new("sh")
            .arg("-c")
            .arg(&obs[1].command)
            .output()
            .expect("sh runs");
        assert!(
            !denied.status.success(),
            "case {i}: {:?} connected",
            obs[1].command
        );

        session.teardown().await.expect("teardown");
        platform.close().await.expect("close");
        assert_eq!(ours(&id), Vec::<String>::new(), "case {i}: left behind");
    }
    for m in markers(&tag) {
        assert!(
            !m.exists(),
            "{} exists: an injected command ran",
            m.display()
        );
    }
    let ruleset = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    assert!(
        !String::from_utf8_lossy(&ruleset.stdout).contains("pwned"),
        "a table was injected into the host's namespace"
    );
}

fn want_pod(prefix: &str, ns: &str, pod: &str) -> String {
    format!("{prefix}{ns}.{pod}")
}

/// Names that cannot be one file name under /run/netns (a `/` would leave the directory, `..`
/// would name it): the step is refused before anything exists, and nothing is created or run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_one_file_name_are_refused_and_create_nothing() {
    require_tools();
    let tag = format!("{}r", std::process::id());
    let cases = [
        format!("x\nnetns exec netpolc-evil touch /tmp/pwned-{tag}\n"),
        "../../../tmp/evil".to_string(),
        "x/..".to_string(),
        "a\0b".to_string(),
    ];
    for (i, ns) in cases.iter().enumerate() {
        let id = run_id(&format!("ref{i}"));
        let platform = platform(&id);
        let sc = hostile(ns, "p");
        let mut session = platform.open(0, &sc).await.expect("open");
        let r = session.apply(&sc.steps[0]).await;
        assert!(
            matches!(&r, Err(ProviderError::InvalidInput(m)) if m.contains("one file name")),
            "case {i}: {r:?}"
        );
        assert_eq!(
            ours(&id),
            Vec::<String>::new(),
            "case {i}: created something"
        );
        session.teardown().await.expect("teardown");
        platform.close().await.expect("close");
    }
    assert!(!Path::new("/tmp/evil").exists());
    for m in markers(&tag) {
        assert!(
            !m.exists(),
            "{} exists: an injected command ran",
            m.display()
        );
    }
}

/// A namespace name that is already taken (here by an `ip netns add` of this test) is refused,
/// not adopted, and survives the session's teardown: a session deletes only what it created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_namespace_is_never_adopted_or_deleted() {
    require_tools();
    let id = run_id("taken");
    let taken = format!("{}{id}--s0-x.b", local::PREFIX);
    let st = std::process::Command::new("ip")
        .args(["netns", "add", &taken])
        .status();
    assert!(st.is_ok_and(|s| s.success()), "ip netns add {taken}");
    let platform = platform(&id);
    let sc = hostile("x", "p");
    let mut session = platform.open(0, &sc).await.expect("open");
    let r = session.apply(&sc.steps[0]).await;
    assert!(
        matches!(&r, Err(ProviderError::Failed(m)) if m.contains("exists")),
        "{r:?}"
    );
    assert_eq!(
        ours(&id),
        vec![taken.clone()],
        "only the foreign namespace is there"
    );
    session.teardown().await.expect("teardown");
    drop(session);
    assert_eq!(
        ours(&id),
        vec![taken.clone()],
        "teardown kept the foreign namespace"
    );
    let st = std::process::Command::new("ip")
        .args(["netns", "del", &taken])
        .status();
    assert!(st.is_ok_and(|s| s.success()));
    platform.close().await.expect("close");
}
