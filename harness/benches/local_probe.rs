//! Figures for the local dataplane's probing speed (not a timed test: it prints, and only checks
//! that the observations are right).
//!
//! Run as root: `cargo bench --bench local_probe`.
//!
//! Goals: one pass over the upstream 9-pod model (ports 80/81 × TCP/UDP, 324 cells, a default
//! deny so probes time out) within 1.5× the probe timeout; a 100-pod single-port matrix (10,000
//! cells) within 3×.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use netpol_conformance::probe::{Connectivity, ProbeRequest};
use netpol_conformance::provider::local::{LocalCni, LocalOptions, LocalPlatform};
use netpol_conformance::provider::{Platform, Session};
use netpol_conformance::scenario::{Scenario, Step, load_str};

const TIMEOUT: Duration = Duration::from_millis(1000);

fn upstream_scenario() -> String {
    r#"
apiVersion: netpolc/v1
kind: Scenario
name: upstream-324
model:
  upstream: {ports: [80, 81], protocols: [TCP, UDP]}
steps:
  - name: deny-ingress-in-x
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny-all, namespace: x}
        spec: {podSelector: {}}
"#
    .to_string()
}

fn hundred_pods() -> String {
    let mut s = String::from(
        "apiVersion: netpolc/v1\nkind: Scenario\nname: hundred\nmodel:\n  namespaces:\n",
    );
    for n in 0..10 {
        let _ = writeln!(s, "    - {{name: n{n}, labels: {{ns: n{n}}}}}");
    }
    s.push_str("  pods:\n");
    for n in 0..10 {
        for p in 0..10 {
            let _ = writeln!(
                s,
                "    - {{namespace: n{n}, name: p{p}, labels: {{pod: p{p}}}, ports: [80/TCP]}}"
            );
        }
    }
    s.push_str("steps:\n  - name: same-namespace-only-in-n0-to-n4\n    apply:\n");
    for n in 0..5 {
        let _ = writeln!(
            s,
            "      - {{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, \
             metadata: {{name: same-ns, namespace: n{n}}}, \
             spec: {{podSelector: {{}}, ingress: [{{from: [{{podSelector: {{}}}}]}}]}}}}"
        );
    }
    s
}

/// Every pod × pod × probe of a step, in the engine's planning order.
fn batch(step: &Step) -> Vec<ProbeRequest> {
    netpol_conformance::run::plan_step(step, &step.probes)
        .into_iter()
        .map(|c| c.request)
        .collect()
}

async fn measure(name: &str, yaml: &str, goal: f64) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the local dataplane benchmark must run as root"
    );
    let sc: Scenario = match load_str(yaml, format!("{name}.yaml")) {
        Ok(mut l) => l.scenarios.remove(0),
        Err(e) => panic!("{name} does not load: {e:?}"),
    };
    let run_id = format!("bench{}-{name}", std::process::id());
    let platform = LocalPlatform::new(LocalOptions::new(run_id, LocalCni::Nftables))
        .unwrap_or_else(|e| panic!("local dataplane unavailable: {e}"));
    let step = &sc.steps[0];
    let reqs = batch(step);
    let t = Instant::now();
    let mut session = platform.open(0, &sc).await.expect("open");
    session.apply(step).await.expect("apply");
    let setup = t.elapsed();
    let oracle = step.oracle();
    for pass in 1..=2 {
        let t = Instant::now();
        let obs = session.probe(&reqs, TIMEOUT).await;
        let wall = t.elapsed();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut wrong = 0;
        for (r, o) in reqs.iter().zip(&obs) {
            *counts.entry(format!("{:?}", o.result)).or_default() += 1;
            let expected = oracle
                .decide(&r.from, &r.to, r.probe)
                .is_some_and(|d| d.allowed);
            if o.result.allowed() != Some(expected) {
                wrong += 1;
                if wrong <= 5 {
                    eprintln!("  wrong: {} -> {} {}: {o:?}", r.from, r.to, r.probe);
                }
            }
        }
        let ratio = wall.as_secs_f64() / TIMEOUT.as_secs_f64();
        println!(
            "{name}: {} pods, {} cells, setup {} ms, pass {pass}: wall {} ms = {ratio:.2}x the {} ms probe timeout (goal <= {goal}x) {counts:?}, wrong {wrong}",
            step.model.pods.len(),
            reqs.len(),
            setup.as_millis(),
            wall.as_millis(),
            TIMEOUT.as_millis(),
        );
        assert!(counts.contains_key(&format!("{:?}", Connectivity::Timeout)));
        assert_eq!(wrong, 0, "observations disagree with the oracle");
    }
    let t = Instant::now();
    session.teardown().await.expect("teardown");
    platform.close().await.expect("close");
    println!("{name}: teardown {} ms", t.elapsed().as_millis());
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        measure("upstream-324", &upstream_scenario(), 1.5).await;
        measure("hundred-pods", &hundred_pods(), 3.0).await;
    });
}
