//! Figures for the local dataplane's set-up and teardown at 9, 100 and 500 pods (not a timed
//! test: it prints, and checks only that what it set up carries packets as the oracle says).
//!
//! Run as root: `cargo bench --bench netns_setup` (release) or, to save a build on a busy
//! machine, `cargo bench --profile dev --bench netns_setup` (set-up time is spent in the kernel
//! and in `nft`, not in the harness's code). `NETPOLC_BENCH_PODS=9,100` and
//! `NETPOLC_BENCH_CNI=none` narrow the runs.
//!
//! Per run it prints: set-up (namespaces, bridge ports, addresses, routes, static neighbours,
//! servers, and with `nftables` every pod's ruleset) and teardown wall time, the kernel's slab
//! growth and the number of mounts at peak (one per namespace under /run/netns), and a ring of
//! probes (pod i → pod i+1, 80/TCP) compared with the oracle.

use std::time::{Duration, Instant};

use netpol_conformance::probe::ProbeRequest;
use netpol_conformance::provider::local::{LocalCni, LocalOptions, LocalPlatform};
use netpol_conformance::provider::{Platform, Session};
use netpol_conformance::scenario::{Scenario, load_str};

const TIMEOUT: Duration = Duration::from_millis(1000);

/// `n` pods in namespaces of 10 (3 of 3 for the upstream-sized model), one TCP port, and a policy
/// isolating namespace n0 to traffic from itself (so the ring crosses allowed and denied cells).
fn scenario(n: usize) -> String {
    let per_ns = if n <= 9 { 3 } else { 10 };
    let namespaces = n.div_ceil(per_ns);
    let mut s =
        format!("apiVersion: netpolc/v1\nkind: Scenario\nname: setup-{n}\nmodel:\n  namespaces:\n");
    for k in 0..namespaces {
        s.push_str(&format!("    - {{name: n{k}, labels: {{ns: n{k}}}}}\n"));
    }
    s.push_str("  pods:\n");
    for i in 0..n {
        s.push_str(&format!(
            "    - {{namespace: n{}, name: p{i}, labels: {{pod: p{i}}}, ports: [80/TCP]}}\n",
            i / per_ns
        ));
    }
    s.push_str(
        "steps:\n  - name: n0-isolated\n    apply:\n      - {apiVersion: networking.k8s.io/v1, \
         kind: NetworkPolicy, metadata: {name: same-ns, namespace: n0}, \
         spec: {podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}}\n",
    );
    s
}

/// Destinations per source pod in the ring (`NETPOLC_BENCH_FANOUT`, default 1): pod i probes
/// pods i+1 … i+k, so k × n distinct neighbours must be resolvable at once.
fn fan_out() -> usize {
    std::env::var("NETPOLC_BENCH_FANOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn slab_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn netns_of(run_id: &str) -> usize {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("netpolc-{run_id}-")))
                .count()
        })
        .unwrap_or(0)
}

async fn measure(n: usize, cni: LocalCni) {
    let sc: Scenario = match load_str(&scenario(n), format!("setup-{n}.yaml")) {
        Ok(mut l) => l.scenarios.remove(0),
        Err(e) => panic!("setup-{n} does not load: {e:?}"),
    };
    let run_id = format!("dataplane-bench{}-{n}-{}", std::process::id(), cni.name());
    let platform = LocalPlatform::new(LocalOptions::new(run_id.clone(), cni))
        .unwrap_or_else(|e| panic!("local dataplane unavailable: {e}"));
    let step = &sc.steps[0];
    let slab0 = slab_kib();
    let t = Instant::now();
    let mut session = platform.open(0, &sc).await.expect("open");
    session.apply(step).await.expect("apply");
    let setup = t.elapsed();
    let slab1 = slab_kib();
    let peak_mounts = mounts();
    assert_eq!(
        netns_of(&run_id),
        n + 1,
        "one namespace per pod and the node"
    );

    let pods: Vec<_> = step.model.pods.values().collect();
    let k = fan_out();
    let ring: Vec<ProbeRequest> = (0..pods.len())
        .flat_map(|i| (1..=k).map(move |d| (i, (i + d) % n)))
        .map(|(i, j)| {
            let (from, to) = (pods[i], pods[j]);
            ProbeRequest {
                from: from.pod_ref(),
                to: to.pod_ref(),
                to_ip: to.ip,
                probe: netpol_conformance::model::Probe::new(
                    80,
                    netpol_conformance::model::Protocol::Tcp,
                ),
                via: netpol_conformance::service::ProbeMode::PodIp,
                service: None,
            }
        })
        .collect();
    let t = Instant::now();
    let obs = session.probe(&ring, TIMEOUT).await;
    let ring_ms = t.elapsed().as_millis();
    let oracle = step.oracle();
    let mut wrong = 0;
    for (r, o) in ring.iter().zip(&obs) {
        let expected = cni == LocalCni::None
            || oracle
                .decide(&r.from, &r.to, r.probe)
                .is_some_and(|d| d.allowed);
        if o.result.allowed() != Some(expected) {
            wrong += 1;
            if wrong <= 5 {
                eprintln!("  wrong: {} -> {}: {o:?}", r.from, r.to);
            }
        }
    }

    let t = Instant::now();
    session.teardown().await.expect("teardown");
    platform.close().await.expect("close");
    let teardown = t.elapsed();
    assert_eq!(netns_of(&run_id), 0, "teardown leaves nothing");

    let slab = match (slab0, slab1) {
        (Some(a), Some(b)) => format!("{:+} MiB", (b as i64 - a as i64) / 1024),
        _ => "n/a".into(),
    };
    println!(
        "netns-setup {cni:>8} {n:>4} pods: setup {:>6} ms ({:.1} ms/pod), teardown {:>5} ms, \
         kernel slab {slab}, mounts at peak {peak_mounts}, ring of {} probes in {ring_ms} ms, wrong {wrong}",
        setup.as_millis(),
        setup.as_secs_f64() * 1000.0 / n as f64,
        teardown.as_millis(),
        ring.len(),
        cni = cni.name(),
    );
    assert_eq!(wrong, 0, "observations disagree with the oracle");
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the set-up benchmark creates network namespaces and must run as root"
    );
    let sizes: Vec<usize> = std::env::var("NETPOLC_BENCH_PODS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![9, 100, 500]);
    let cnis: Vec<LocalCni> = std::env::var("NETPOLC_BENCH_CNI")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![LocalCni::None, LocalCni::Nftables]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        for &n in &sizes {
            for &cni in &cnis {
                measure(n, cni).await;
            }
        }
    });
}
