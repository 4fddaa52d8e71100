//! The cluster session (kind and kubeconfig providers) driven by the real engine against a
//! simulated API server and ideal CNI (`cluster_sim`), under tokio's paused clock: pod address
//! re-binding, the ServiceAccount wait, the reachability gate, pod reuse and parallel scenarios,
//! nodes without SCTP and catalogued gaps. What only a live cluster can show is listed in
//! docs/kind.md.

mod cluster_sim;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use cluster_sim::{Latency, SimApi};
use netpol_conformance::cni::gaps::{Gap, GapFeature};
use netpol_conformance::probe::Outcome;
use netpol_conformance::provider::PlatformInfo;
use netpol_conformance::provider::kube::{ClusterPool, PoolPlatform, SessionConfig};
use netpol_conformance::report::model::{RunReport, Verdict};
use netpol_conformance::run::{self, Cancel, NullReporter, RunOptions};
use netpol_conformance::scenario::{Scenario, load_paths, load_str};
use netpol_conformance::service::ProbeMode;

/// Calico's default pool: nothing like the model's 10.244.0.x.
const CALICO: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);

fn upstream(files: &[&str]) -> Vec<Scenario> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/upstream");
    let paths: Vec<_> = files.iter().map(|f| dir.join(f)).collect();
    match load_paths(&paths) {
        Ok(l) => l.scenarios,
        Err(e) => panic!("{e:?}"),
    }
}

fn config(parallel: usize, reuse: bool) -> SessionConfig {
    SessionConfig {
        parallel,
        reuse,
        gate_timeout: Duration::from_secs(30),
        ..SessionConfig::new("agnhost")
    }
}

fn options() -> RunOptions {
    RunOptions {
        probe_timeout: Duration::from_secs(3),
        step_timeout: Duration::from_secs(60),
        ..RunOptions::new("sim", "2026-11-26T00:00:00Z")
    }
}

async fn run_on(
    api: Arc<SimApi>,
    cfg: SessionConfig,
    sctp: Option<String>,
    scenarios: &[Scenario],
) -> RunReport {
    let pool = ClusterPool::new(api, "sim", cfg, sctp);
    let platform = PoolPlatform {
        pool,
        info: PlatformInfo {
            provider: "kind".into(),
            cni: "sim".into(),
            ..Default::default()
        },
    };
    let report = run::execute(
        &platform,
        scenarios,
        &options(),
        &mut NullReporter,
        &Cancel::never(),
    )
    .await
    .expect("the run completes");
    netpol_conformance::provider::Platform::close(&platform)
        .await
        .expect("closes");
    report
}

fn sim(sctp: bool, base: Ipv4Addr) -> Arc<SimApi> {
    Arc::new(SimApi::new(Latency::kind(), sctp, base))
}

/// The upstream ipBlock cases compute their CIDRs from pod addresses: on pods addressed from
/// 192.168.0.0/16 they are judged (not unsupported) and conformant, because the step is re-bound
/// to the real addresses and the oracle re-run on them.
#[tokio::test(start_paused = true)]
async fn ipblock_cases_are_judged_on_real_addresses() {
    let scenarios = upstream(&[
        "egress-cidr.yaml",
        "egress-cidr-except.yaml",
        "cidr-except-overlap.yaml",
    ]);
    let r = run_on(sim(true, CALICO), config(2, true), None, &scenarios).await;
    assert_eq!(r.verdict, Verdict::Conformant, "{:?}", r.summary);
    assert_eq!(r.summary.failed, 0);
    // Only loopback cells are not judged.
    let unsupported: Vec<_> = r
        .scenarios
        .iter()
        .flat_map(|s| &s.steps)
        .flat_map(|st| &st.cells)
        .filter(|c| c.outcome == Outcome::Unsupported)
        .collect();
    assert!(
        unsupported.iter().all(|c| c.from == c.to),
        "{unsupported:?}"
    );
    // The cell the policy allows through its /32 was observed allowed, the others blocked.
    let cells = &r
        .scenarios
        .iter()
        .find(|s| s.name == "upstream-egress-cidr")
        .expect("egress-cidr")
        .steps[0]
        .cells;
    let ayb = cells
        .iter()
        .find(|c| c.from.to_string() == "x/a" && c.to.to_string() == "y/b")
        .expect("x/a -> y/b");
    assert_eq!((ayb.expected, ayb.observed), (Some(true), Some(true)));
    let aya = cells
        .iter()
        .find(|c| c.from.to_string() == "x/a" && c.to.to_string() == "y/a")
        .expect("x/a -> y/a");
    assert_eq!((aya.expected, aya.observed), (Some(false), Some(false)));
}

/// A literal CIDR written for the model's addresses is still judged — on the real addresses:
/// the oracle, not the scenario's tables, decides what the cluster must do.
#[tokio::test(start_paused = true)]
async fn literal_cidrs_are_judged_on_real_addresses_too() {
    let yaml = r#"
apiVersion: netpolc/v1
kind: Scenario
name: literal
model: {upstream: {namespaces: [x, y], pods: [a, b], ports: [80], protocols: [TCP]}}
steps:
  - name: only-10-244
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {namespace: x, name: p}
        spec:
          podSelector: {matchLabels: {pod: a}}
          policyTypes: [Egress]
          egress: [{to: [{ipBlock: {cidr: 10.244.0.0/16}}]}]
"#;
    let scenarios = load_str(yaml, "literal.yaml").expect("loads").scenarios;
    // In the model every pod is in 10.244.0.0/16: x/a may reach all.
    let model = scenarios[0].steps[0].oracle();
    assert!(
        model
            .decide(
                &"x/a".parse().expect("p"),
                &"y/b".parse().expect("p"),
                "80/TCP".parse().expect("p")
            )
            .expect("d")
            .allowed
    );
    let r = run_on(sim(true, CALICO), config(1, true), None, &scenarios).await;
    assert_eq!(r.verdict, Verdict::Conformant, "{:?}", r.summary);
    let cell = r.scenarios[0].steps[0]
        .cells
        .iter()
        .find(|c| c.from.to_string() == "x/a" && c.to.to_string() == "y/b")
        .expect("cell");
    assert_eq!(
        (cell.expected, cell.outcome),
        (Some(false), Outcome::Pass),
        "{cell:?}"
    );
}

/// Pods are only created once the namespace's default ServiceAccount exists, and no probe of a
/// scenario ever met a server that was not listening yet (the gate came first).
#[tokio::test(start_paused = true)]
async fn pods_wait_for_the_service_account_and_probes_for_the_gate() {
    let api = sim(true, CALICO);
    let scenarios = upstream(&["default-deny-ingress.yaml", "allow-from-pod-selector.yaml"]);
    let r = run_on(Arc::clone(&api), config(2, true), None, &scenarios).await;
    assert_eq!(r.verdict, Verdict::Conformant, "{:?}", r.summary);
    let log = api.log();
    assert_eq!(log.refused_pods, 0, "{log:?}");
    // The gate itself may meet servers before they listen; no cell does.
    assert!(
        r.scenarios
            .iter()
            .flat_map(|s| &s.steps)
            .flat_map(|st| &st.cells)
            .all(|c| c.connectivity != netpol_conformance::probe::Connectivity::Refused)
    );
}

/// Scenarios with the same model share pods: the upstream TCP cases create 9 pods once per slot,
/// run in parallel (up to `parallel` slots alive), and every scenario still starts from its own
/// labels (a relabelling scenario followed by others stays conformant).
#[tokio::test(start_paused = true)]
async fn same_model_scenarios_reuse_pods_in_parallel() {
    let files = [
        "updated-pod.yaml",
        "updated-namespace.yaml",
        "default-deny-ingress.yaml",
        "allow-from-pod-selector.yaml",
        "deny-to-updated-pod.yaml",
        "pod-and-namespace-selector.yaml",
    ];
    let api = sim(true, CALICO);
    let r = run_on(Arc::clone(&api), config(2, true), None, &upstream(&files)).await;
    assert_eq!(r.verdict, Verdict::Conformant, "{:?}", r.summary);
    let log = api.log();
    assert!(log.pods_created <= 2 * 9, "two slots at most: {log:?}");
    assert!(log.max_namespaces_alive <= 2 * 3, "{log:?}");
    assert_eq!(
        log.namespaces_created, log.namespaces_deleted,
        "everything removed: {log:?}"
    );

    let fresh = sim(true, CALICO);
    let r2 = run_on(
        Arc::clone(&fresh),
        config(1, false),
        None,
        &upstream(&files),
    )
    .await;
    assert_eq!(r2.verdict, Verdict::Conformant);
    assert_eq!(fresh.log().pods_created, files.len() * 9);
    assert!(
        r.duration_ms < r2.duration_ms,
        "{} vs {}",
        r.duration_ms,
        r2.duration_ms
    );
}

/// Nodes without SCTP: porter crash-loops, the run goes on, SCTP cells are unsupported with
/// the reason and TCP cells are judged.
#[tokio::test(start_paused = true)]
async fn nodes_without_sctp_do_not_abort_the_run() {
    let api = sim(false, CALICO);
    let scenarios = upstream(&["sctp-not-tcp.yaml"]);
    let r = run_on(Arc::clone(&api), config(1, true), None, &scenarios).await;
    assert_eq!(r.verdict, Verdict::Conformant, "{:?}", r.summary);
    let cells: Vec<_> = r.scenarios[0].steps.iter().flat_map(|s| &s.cells).collect();
    let sctp: Vec<_> = cells
        .iter()
        .filter(|c| c.protocol == netpol_conformance::model::Protocol::Sctp)
        .collect();
    assert!(!sctp.is_empty());
    assert!(sctp.iter().all(|c| {
        c.outcome == Outcome::Unsupported
            && c.detail
                .as_deref()
                .is_some_and(|d| d.contains("kernel has no SCTP"))
    }));
    assert!(cells.iter().any(|c| c.outcome == Outcome::Pass));
}

/// Known up front (kind: the host kernel): SCTP servers are not even started.
#[tokio::test(start_paused = true)]
async fn sctp_known_missing_up_front_starts_no_sctp_server() {
    let api = sim(false, CALICO);
    let scenarios = upstream(&["sctp-not-tcp.yaml"]);
    let why = "this host's kernel has no SCTP".to_string();
    let r = run_on(
        Arc::clone(&api),
        config(1, true),
        Some(why.clone()),
        &scenarios,
    )
    .await;
    assert_eq!(r.verdict, Verdict::Conformant);
    assert!(
        r.scenarios[0].steps[0]
            .cells
            .iter()
            .any(|c| c.detail.as_deref() == Some(why.as_str()))
    );
}

/// A catalogued gap makes exactly its cells unsupported, counted in the report, and the CNI
/// reads conformant.
#[tokio::test(start_paused = true)]
async fn catalogued_gaps_are_unsupported_and_counted() {
    let gap = Gap {
        feature: GapFeature::IpBlockPodIps,
        reason: "no ipBlock on pod addresses".into(),
        references: vec![],
    };
    let cfg = SessionConfig {
        gaps: vec![gap.clone()],
        ..config(1, true)
    };
    let api = sim(true, CALICO);
    let pool = ClusterPool::new(api, "sim", cfg, None);
    let platform = PoolPlatform {
        pool,
        info: PlatformInfo {
            provider: "kind".into(),
            cni: "sim".into(),
            gaps: vec![gap],
            ..Default::default()
        },
    };
    let scenarios = upstream(&["egress-cidr.yaml"]);
    let r = run::execute(
        &platform,
        &scenarios,
        &options(),
        &mut NullReporter,
        &Cancel::never(),
    )
    .await
    .expect("runs");
    assert_eq!(r.verdict, Verdict::Conformant);
    assert_eq!(r.gaps.len(), 1);
    assert_eq!(r.gaps[0].cells, 1, "only x/a -> y/b rests on the ipBlock");
    assert!(r.phases.pods_ms >= 10_000, "{:?}", r.phases);
}

/// Where the kind platform started a container for `(external)/web` (its address on the kind
/// network, nothing like the model's 192.0.2.10), pods' egress to it is probed on that address:
/// the `<(external)/web>/24` template is re-bound to it, so the ipBlock admits it, `except`
/// carves it out and selectors never match it. Probes from it are not run. Without a started
/// peer the same cells are unsupported, never judged.
#[tokio::test(start_paused = true)]
async fn an_external_peer_is_probed_on_its_real_address() {
    use netpol_conformance::provider::kube::RealExternal;
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/egress/external-peer.yaml");
    let scenarios = load_paths(&[path]).expect("loads").scenarios;
    let wanted = netpol_conformance::provider::kind::external::wanted(&scenarios);
    let served = wanted.get("web").cloned().expect("web is wanted");
    let peer_ip: std::net::IpAddr = "172.18.0.5".parse().expect("ip");

    let api = sim(true, CALICO);
    api.add_external("web", peer_ip, served.clone());
    let cfg = SessionConfig {
        externals: [(
            "web".to_string(),
            RealExternal {
                ip: peer_ip,
                served,
                what: "container sim-web".into(),
            },
        )]
        .into(),
        ..config(1, true)
    };
    let r = run_on(Arc::clone(&api), cfg, None, &scenarios).await;
    let failed: Vec<String> = r
        .scenarios
        .iter()
        .flat_map(|s| s.steps.iter().map(move |st| (s, st)))
        .flat_map(|(s, st)| st.cells.iter().map(move |c| (s, st, c)))
        .filter(|(_, _, c)| {
            c.outcome == Outcome::Fail
                || c.observed != c.expected && c.outcome != Outcome::Unsupported
        })
        .take(10)
        .map(|(s, st, c)| {
            format!(
                "{} {} {} -> {} {}/{:?}",
                s.name, st.name, c.from, c.to, c.port, c.protocol
            )
        })
        .collect();
    eprintln!("FAILED CELLS {failed:?}");
    assert_eq!(
        r.verdict,
        Verdict::Conformant,
        "{:?} {failed:#?}",
        r.summary
    );
    assert_eq!(r.summary.failed, 0);
    let steps = &r.scenarios[0].steps;
    let cell = |step: usize, from: &str, to: &str| {
        steps[step]
            .cells
            .iter()
            .find(|c| c.from.to_string() == from && c.to.to_string() == to)
            .unwrap_or_else(|| panic!("{from} -> {to} in step {step}"))
            .clone()
    };
    let allowed = cell(0, "x/a", "(external)/web");
    assert_eq!(
        (allowed.expected, allowed.observed, allowed.outcome),
        (Some(true), Some(true), Outcome::Pass),
        "{allowed:?}"
    );
    assert!(
        allowed.command.contains("172.18.0.5"),
        "{}",
        allowed.command
    );
    for step in [1, 2] {
        let denied = cell(step, "x/a", "(external)/web");
        assert_eq!(
            (denied.expected, denied.observed, denied.outcome),
            (Some(false), Some(false), Outcome::Pass),
            "step {step}: {denied:?}"
        );
    }
    let other = cell(0, "x/b", "(external)/web");
    assert_eq!((other.expected, other.observed), (Some(true), Some(true)));
    let back = cell(0, "(external)/web", "x/b");
    assert_eq!(back.outcome, Outcome::Unsupported);
    assert!(
        back.detail
            .as_deref()
            .is_some_and(|d| d.contains("probes from a peer outside the cluster")),
        "{back:?}"
    );
    assert!(api.log().external_connects > 0);

    // No peer started: the same cells are not judged.
    let api = sim(true, CALICO);
    let r = run_on(api, config(1, true), None, &scenarios).await;
    let steps = &r.scenarios[0].steps;
    let c = steps[0]
        .cells
        .iter()
        .find(|c| c.from.to_string() == "x/a" && c.to.to_string() == "(external)/web")
        .expect("cell");
    assert_eq!(c.outcome, Outcome::Unsupported, "{c:?}");
    assert!(
        c.detail
            .as_deref()
            .is_some_and(|d| d.contains("no external peer is realised")),
        "{c:?}"
    );
}

fn cluster_policy_scenarios() -> Vec<Scenario> {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/cluster-policies");
    match load_paths(&[dir]) {
        Ok(l) => l.scenarios,
        Err(e) => panic!("{e:?}"),
    }
}

fn enforcing_every_kind(parallel: usize) -> SessionConfig {
    SessionConfig {
        cluster_gaps: Default::default(),
        ..config(parallel, true)
    }
}

/// On a cluster whose CNI enforces every network-policy-api kind, the session applies the
/// shipped cluster-policies scenarios (two at a time: the confined selectors keep one session's
/// `namespaces: {}` subjects off the other's pods) and the run is conformant, with cells the
/// Admin and Baseline tiers deny observed blocked.
#[tokio::test(start_paused = true)]
async fn cluster_policy_scenarios_are_applied_and_conformant_where_enforced() {
    let scenarios = cluster_policy_scenarios();
    assert!(scenarios.len() >= 10, "{}", scenarios.len());
    let r = run_on(
        sim(false, CALICO),
        enforcing_every_kind(2),
        None,
        &scenarios,
    )
    .await;
    assert_eq!(r.verdict, Verdict::Conformant, "{:?}", r.summary);
    assert_eq!(r.summary.failed, 0);
    let cells: Vec<_> = r
        .scenarios
        .iter()
        .flat_map(|s| &s.steps)
        .flat_map(|st| &st.cells)
        .collect();
    let denied_and_blocked = cells
        .iter()
        .filter(|c| c.outcome == Outcome::Pass && c.expected == Some(false))
        .count();
    assert!(denied_and_blocked > 100, "{denied_and_blocked}");
    // Nothing is held for want of cluster-policy support.
    assert!(
        cells.iter().all(|c| !c
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("is not applied on this cluster"))),
        "cluster-policy cells were held"
    );
}

/// A cluster whose CNI enforces only the v1alpha1 kinds (as Calico v3.30): cells a
/// ClusterNetworkPolicy decides are unsupported with the CNI's reason and never probed, while the
/// AdminNetworkPolicy/BaselineAdminNetworkPolicy scenario is applied and judged.
#[tokio::test(start_paused = true)]
async fn only_the_enforced_kinds_are_applied_and_judged() {
    use netpol_conformance::policy::ClusterKind;
    // One scenario of each version. (The whole directory with ClusterNetworkPolicy held is not
    // conformant yet on the simulated cluster: see docs/kind.md, "Cluster-wide policies".)
    let scenarios: Vec<Scenario> = cluster_policy_scenarios()
        .into_iter()
        .filter(|s| {
            s.source.ends_with("v1alpha1-admin-and-baseline.yaml")
                || s.source.ends_with("admin-ingress-actions.yaml")
        })
        .collect();
    assert_eq!(scenarios.len(), 2);
    let why = "ClusterNetworkPolicy is not enforced by CNI sim-calico (v1alpha1 only)";
    let cfg = SessionConfig {
        cluster_gaps: [(ClusterKind::ClusterNetworkPolicy, why.to_string())].into(),
        ..config(1, true)
    };
    let api = sim(false, CALICO);
    let r = run_on(Arc::clone(&api), cfg, None, &scenarios).await;
    let failed: Vec<String> = r
        .scenarios
        .iter()
        .flat_map(|s| s.steps.iter().map(move |st| (s, st)))
        .flat_map(|(s, st)| st.cells.iter().map(move |c| (s, st, c)))
        .filter(|(_, _, c)| c.outcome == Outcome::Fail)
        .take(10)
        .map(|(s, st, c)| {
            format!(
                "{} {} {} -> {} {:?}",
                s.name, st.name, c.from, c.to, c.detail
            )
        })
        .collect();
    assert_eq!(
        r.verdict,
        Verdict::Conformant,
        "{:?} {failed:#?}",
        r.summary
    );
    let v1 = r
        .scenarios
        .iter()
        .find(|s| s.source.ends_with("v1alpha1-admin-and-baseline.yaml"))
        .expect("the v1alpha1 scenario");
    let judged = v1
        .steps
        .iter()
        .flat_map(|st| &st.cells)
        .filter(|c| c.outcome == Outcome::Pass && c.expected == Some(false))
        .count();
    assert!(judged > 0, "ANP/BANP cells are judged");
    let held = r
        .scenarios
        .iter()
        .flat_map(|s| &s.steps)
        .flat_map(|st| &st.cells)
        .filter(|c| c.detail.as_deref() == Some(why))
        .count();
    assert!(held > 50, "{held}");
    assert!(r.summary.unsupported as usize >= held);
}

/// The whole directory on a v1alpha1-only cluster: the ClusterNetworkPolicy scenarios' cells are
/// held, and the run still waits for the v1alpha1 scenario's policies to converge (held cells
/// are no evidence that the dataplane enforces nothing).
#[tokio::test(start_paused = true)]
async fn held_scenarios_do_not_cut_the_wait_of_later_ones() {
    use netpol_conformance::policy::ClusterKind;
    let why = "ClusterNetworkPolicy is not enforced by CNI sim-calico (v1alpha1 only)";
    let cfg = SessionConfig {
        cluster_gaps: [(ClusterKind::ClusterNetworkPolicy, why.to_string())].into(),
        ..config(1, true)
    };
    let r = run_on(sim(false, CALICO), cfg, None, &cluster_policy_scenarios()).await;
    assert_eq!(
        r.verdict,
        Verdict::Conformant,
        "{:?} {:?}",
        r.summary,
        r.enforcement
    );
}

fn services_config() -> SessionConfig {
    SessionConfig {
        services: true,
        ..config(1, true)
    }
}

async fn run_via(
    api: Arc<SimApi>,
    cfg: SessionConfig,
    scenarios: &[Scenario],
    modes: &[ProbeMode],
) -> RunReport {
    let pool = ClusterPool::new(api, "sim", cfg, None);
    let platform = PoolPlatform {
        pool,
        info: PlatformInfo {
            provider: "kind".into(),
            cni: "sim".into(),
            ..Default::default()
        },
    };
    let opts = RunOptions {
        probe_modes: modes.to_vec(),
        ..options()
    };
    let report = run::execute(
        &platform,
        scenarios,
        &opts,
        &mut NullReporter,
        &Cancel::never(),
    )
    .await
    .expect("the run completes");
    netpol_conformance::provider::Platform::close(&platform)
        .await
        .expect("closes");
    report
}

fn service_scenarios() -> Vec<Scenario> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let paths: Vec<_> = [
        "services/named-target-port.yaml",
        "services/hairpin.yaml",
        "services/egress-to-service-pods.yaml",
        "upstream/allow-from-pod-selector.yaml",
        "upstream/deny-to-updated-pod.yaml",
        "upstream/named-port-ingress.yaml",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    load_paths(&paths).expect("loads").scenarios
}

/// Through the simulated cluster's Services (ClusterIPs from 10.96.200.0/24, never the model's
/// 10.96.0.x; the ideal kube-proxy and DNS translate to the endpoint before the CNI decides),
/// probing via service-ip and service-name is conformant: the session created the Services,
/// waited for their endpoints and dialled the real ClusterIP or the DNS name in the real
/// namespace, on the Service port the cell maps to (the named-target-port case dials port 80 and
/// lands on 8080). Hairpin through a pod's own Service is recorded, not judged.
#[tokio::test(start_paused = true)]
async fn probes_through_services_use_real_cluster_ips_and_names() {
    let scenarios = service_scenarios();
    let api = sim(true, CALICO);
    let modes = [
        ProbeMode::PodIp,
        ProbeMode::ServiceIp,
        ProbeMode::ServiceName,
    ];
    let r = run_via(Arc::clone(&api), services_config(), &scenarios, &modes).await;
    assert_eq!(r.verdict, Verdict::Conformant, "{:?}", r.summary);
    assert_eq!(
        (r.summary.failed, r.summary.errors),
        (0, 0),
        "{:?}",
        r.summary
    );
    let log = api.log();
    assert!(
        log.services_applied > 0 && log.service_connects > 0,
        "{log:?}"
    );
    assert!(log.dns_lookups > 0, "{log:?}");
    let cells: Vec<_> = r
        .scenarios
        .iter()
        .flat_map(|s| s.steps.iter().flat_map(|st| st.cells.iter()))
        .collect();
    for via in [ProbeMode::ServiceIp, ProbeMode::ServiceName] {
        let judged: Vec<_> = cells
            .iter()
            .filter(|c| c.via == via && c.outcome == Outcome::Pass)
            .collect();
        assert!(
            judged.iter().any(|c| c.expected == Some(false))
                && judged.iter().any(|c| c.expected == Some(true)),
            "{via}: both answers judged"
        );
        for c in &judged {
            match via {
                ProbeMode::ServiceIp => assert!(
                    c.command.contains(" 10.96.200.") && !c.command.contains("10.96.0."),
                    "{}",
                    c.command
                ),
                _ => assert!(
                    c.command.contains(".svc.cluster.local:")
                        && c.command.contains("netpolc-sim--"),
                    "{}",
                    c.command
                ),
            }
        }
    }
    // The scenario's own Service `web` (port 80, targetPort http = 8080 on svc/api).
    let web = cells
        .iter()
        .find(|c| {
            c.via == ProbeMode::ServiceIp
                && c.from.to_string() == "svc/client"
                && c.to.to_string() == "svc/api"
        })
        .expect("client -> api via service-ip");
    assert_eq!(
        (web.expected, web.outcome),
        (Some(true), Outcome::Pass),
        "{web:?}"
    );
    let web_ip = api
        .services()
        .into_iter()
        .find(|(ns, n, _)| n == "web" && ns.ends_with("-svc"))
        .map(|(_, _, ip)| ip)
        .expect("web was created");
    assert!(
        web.command.contains(&format!("{web_ip}:80")),
        "{}",
        web.command
    );
    // Hairpin: x/a -> x/a through s-x-a.
    let hairpin = cells
        .iter()
        .find(|c| {
            c.via == ProbeMode::ServiceIp
                && c.from.to_string() == "x/a"
                && c.to == c.from
                && c.command.contains("10.96.200.")
        })
        .expect("a hairpin cell");
    assert_eq!(hairpin.outcome, Outcome::Unsupported, "{hairpin:?}");
    assert!(
        hairpin
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("hairpin through the pod's own Service")),
        "{hairpin:?}"
    );
    // Every Service the run created lives in the run's namespaces.
    assert!(
        api.services()
            .iter()
            .all(|(ns, _, _)| ns.starts_with("netpolc-sim--")),
        "{:?}",
        api.services()
    );
}

/// A Service whose endpoints never appear makes exactly the cells probed through it `error`,
/// with the reason, after the bounded wait: the run neither hangs nor judges them, and the other
/// cells (pod-ip, and the per-pod Services of the other pods) are judged as usual.
#[tokio::test(start_paused = true)]
async fn a_service_without_endpoints_makes_its_cells_errors() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let scenarios = load_paths(&[root.join("services/named-target-port.yaml")])
        .expect("loads")
        .scenarios;
    let api = sim(true, CALICO);
    api.withhold_endpoints("web");
    let started = tokio::time::Instant::now();
    let r = run_via(
        Arc::clone(&api),
        services_config(),
        &scenarios,
        &[ProbeMode::PodIp, ProbeMode::ServiceIp],
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(600), "bounded");
    let cells = &r.scenarios[0].steps[0].cells;
    let to_api: Vec<_> = cells
        .iter()
        .filter(|c| c.via == ProbeMode::ServiceIp && c.to.to_string() == "svc/api")
        .collect();
    assert_eq!(to_api.len(), 3);
    for c in &to_api {
        assert_eq!(c.outcome, Outcome::Error, "{c:?}");
        let d = c.detail.as_deref().unwrap_or_default();
        assert!(
            d.contains("/web: endpoints not ready after 30s") && d.contains("no ready endpoint"),
            "{d}"
        );
    }
    let others = cells
        .iter()
        .filter(|c| !(c.via == ProbeMode::ServiceIp && c.to.to_string() == "svc/api"))
        .filter(|c| c.from != c.to);
    for c in others {
        assert_eq!(c.outcome, Outcome::Pass, "{c:?}");
    }
    assert!(r.summary.errors >= 3, "{:?}", r.summary);
    assert_ne!(r.verdict, Verdict::Conformant);
}

/// EndpointSlices ready is not a programmed service path: a Service kube-proxy never programs
/// (its ClusterIP leads nowhere, so every probe through it times out — which an expected-deny
/// cell would count as a pass) is caught by the reachability gate through Services, and its cells
/// are `error`, never judged. Cells through the other Services are judged.
#[tokio::test(start_paused = true)]
async fn the_service_gate_keeps_an_unprogrammed_service_from_passing_deny_cells() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let scenarios = load_paths(&[root.join("services/named-target-port.yaml")])
        .expect("loads")
        .scenarios;
    let api = sim(true, CALICO);
    api.withhold_proxy("web");
    let r = run_via(
        Arc::clone(&api),
        services_config(),
        &scenarios,
        &[ProbeMode::ServiceIp],
    )
    .await;
    let cells = &r.scenarios[0].steps[0].cells;
    let to_api: Vec<_> = cells
        .iter()
        .filter(|c| c.to.to_string() == "svc/api" && c.from != c.to)
        .collect();
    assert_eq!(to_api.len(), 2);
    // svc/admin -> svc/api is expected denied: without the gate it would pass on a timeout.
    assert!(to_api.iter().any(|c| c.expected == Some(false)));
    for c in &to_api {
        assert_eq!(c.outcome, Outcome::Error, "{c:?}");
        assert!(
            c.detail.as_deref().is_some_and(|d| d.contains(
                "never reached Service svc/web port 80/TCP before any policy was applied"
            )),
            "{c:?}"
        );
    }
    let judged = cells
        .iter()
        .filter(|c| c.to.to_string() != "svc/api" && c.from != c.to);
    for c in judged {
        assert_eq!(c.outcome, Outcome::Pass, "{c:?}");
    }
}
