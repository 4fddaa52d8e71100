//! The run engine with cluster-wide policies, against the scripted fake provider in paused time:
//! cells the API leaves to the implementation are probed and recorded but never judged
//! (`expected: null`, outcome `unsupported`, with the reason), and on a platform that cannot
//! realise cluster-wide policies the cells they decide are reported `unsupported` with the
//! platform's reason instead of being probed.

mod engine_support;

use std::time::Duration;

use engine_support::{FakePlatform, Script, key, scenario};
use netpol_conformance::probe::{Connectivity, Outcome};
use netpol_conformance::report::model::{CellReport, RunReport, Verdict};
use netpol_conformance::run::{Cancel, Recorder, RunOptions, execute};
use netpol_conformance::scenario::Scenario;

/// x and y with pods a and b. Into x: an Admin Accept and an Admin Deny of y at one priority
/// (y -> x is implementation-defined); an Admin Deny of x/b's traffic to x/a at another.
const TIERED: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
model:
  upstream: {namespaces: [x, y], pods: [a, b], protocols: [TCP], ports: [80]}
probes: ["80/TCP"]
steps:
  - name: tiers
    apply:
      - apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {name: accept-y}
        spec:
          tier: Admin
          priority: 10
          subject: {namespaces: {matchLabels: {ns: x}}}
          ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: y}}}]}]
      - apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {name: deny-y}
        spec:
          tier: Admin
          priority: 10
          subject: {namespaces: {matchLabels: {ns: x}}}
          ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: y}}}]}]
      - apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {name: deny-b}
        spec:
          tier: Admin
          priority: 20
          subject: {pods: {podSelector: {matchLabels: {pod: a}}, namespaceSelector: {matchLabels: {ns: x}}}}
          ingress: [{name: deny-from-b, action: Deny, from: [{pods: {podSelector: {matchLabels: {pod: b}}}}]}]
"#;

fn tiered() -> Scenario {
    scenario(TIERED, "tiered")
}

async fn run(script: Script, scenarios: &[Scenario]) -> (RunReport, FakePlatform) {
    let platform = FakePlatform::new(script);
    let mut rec = Recorder::default();
    let report = execute(
        &platform,
        scenarios,
        &RunOptions::new("test-run", "2026-01-02T03:04:05Z"),
        &mut rec,
        &Cancel::never(),
    )
    .await
    .expect("run succeeds");
    (report, platform)
}

fn find<'r>(r: &'r RunReport, from: &str, to: &str) -> &'r CellReport {
    r.scenarios[0].steps[0]
        .cells
        .iter()
        .find(|c| c.from.to_string() == from && c.to.to_string() == to)
        .expect("cell exists")
}

fn script() -> Script {
    Script {
        probe_cost: Duration::from_millis(50),
        max_parallel: 2,
        ..Script::default()
    }
}

#[tokio::test(start_paused = true)]
async fn implementation_defined_cells_are_probed_recorded_and_not_judged() {
    // The fake observes y -> x as denied (the bool view), and even a wrong observation of an
    // implementation-defined cell must not fail the run.
    let s = Script {
        realises_cluster_policies: true,
        always_wrong: [key("y/a", "x/b", "80/TCP")].into(),
        ..script()
    };
    let (r, platform) = run(s, &[tiered()]).await;
    assert_eq!(r.verdict, Verdict::Conformant, "{:?}", r.summary);
    assert_eq!(r.summary.cells, 16);
    assert_eq!(r.summary.unsupported, 4, "the four y -> x cells");
    assert_eq!(r.summary.passed, 12);
    for (from, to) in [
        ("y/a", "x/a"),
        ("y/a", "x/b"),
        ("y/b", "x/a"),
        ("y/b", "x/b"),
    ] {
        let c = find(&r, from, to);
        assert_eq!(c.expected, None, "{from} -> {to}");
        assert_eq!(c.outcome, Outcome::Unsupported);
        assert!(c.observed.is_some(), "probed and recorded: {c:?}");
        assert_eq!(c.attempts, 1, "never retried: nothing to contradict");
        let detail = c.detail.as_deref().unwrap_or("");
        assert!(detail.contains("not judged"), "{detail}");
        assert!(
            detail.contains("ClusterNetworkPolicy/accept-y (Accept)")
                && detail.contains("ClusterNetworkPolicy/deny-y (Deny)")
                && detail.contains("priority 10"),
            "{detail}"
        );
    }
    assert_eq!(find(&r, "y/a", "x/b").observed, Some(true), "the wrong one");
    // A decided cluster-policy cell is judged normally.
    let c = find(&r, "x/b", "x/a");
    assert_eq!((c.expected, c.outcome), (Some(false), Outcome::Pass));
    // Every cell was probed once (one pass, nothing to retry).
    assert_eq!(platform.log().batch_sizes, [16]);
    // report.json carries the contract's `null`.
    let json = serde_json::to_value(&r).expect("serializes");
    let cells = json["scenarios"][0]["steps"][0]["cells"]
        .as_array()
        .expect("cells");
    let nulls = cells.iter().filter(|c| c["expected"].is_null()).count();
    assert_eq!(nulls, 4);
}

#[tokio::test(start_paused = true)]
async fn a_platform_without_cluster_policies_reports_their_cells_unsupported() {
    let (r, platform) = run(script(), &[tiered()]).await;
    assert_eq!(r.verdict, Verdict::Conformant);
    // Into x everything is touched by a cluster-wide policy except a pod's own address; the
    // other 8 cells (into y, and x/a -> x/a, x/b -> x/b) are probed.
    assert_eq!(r.summary.unsupported, 6);
    assert_eq!(r.summary.passed, 10);
    assert_eq!(
        platform.log().batch_sizes,
        [10],
        "held cells are not probed"
    );
    let held = find(&r, "x/b", "x/a");
    assert_eq!(held.outcome, Outcome::Unsupported);
    assert_eq!(held.expected, Some(false), "the oracle's answer is kept");
    assert_eq!(held.observed, None);
    assert_eq!(held.connectivity, Connectivity::Unsupported);
    assert!(
        held.detail
            .as_deref()
            .is_some_and(|d| d.contains("does not realise cluster-wide policies")),
        "{held:?}"
    );
    // An implementation-defined cell held back says both things.
    let d = find(&r, "y/a", "x/a").detail.clone().unwrap_or_default();
    assert!(
        d.contains("not judged") && d.contains("does not realise"),
        "{d}"
    );
    // Hairpin cells are never subject to cluster-wide policies: probed and judged.
    assert_eq!(find(&r, "x/a", "x/a").outcome, Outcome::Pass);
    // Report order is the plan's: probe, then from, then to.
    let order: Vec<String> = r.scenarios[0].steps[0]
        .cells
        .iter()
        .map(|c| format!("{}>{}", c.from, c.to))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

#[tokio::test(start_paused = true)]
async fn a_cluster_policy_cell_observed_wrong_fails_where_it_is_realised() {
    let s = Script {
        realises_cluster_policies: true,
        always_wrong: [key("x/b", "x/a", "80/TCP")].into(),
        ..script()
    };
    let (r, _) = run(s, &[tiered()]).await;
    // x/b -> x/a is the only judged cell the oracle denies (y -> x is not judged), so with it
    // observed allowed every judged cell was allowed: the dataplane looks like it ignores policy.
    assert_eq!(r.verdict, Verdict::PoliciesIgnored);
    assert_eq!(r.summary.failed, 1);
    let c = find(&r, "x/b", "x/a");
    assert_eq!(
        (c.expected, c.observed, c.outcome),
        (Some(false), Some(true), Outcome::Fail)
    );
    assert!(
        c.explanation
            .as_deref()
            .is_some_and(|e| e.contains("ClusterNetworkPolicy/deny-b") && e.contains("deny-from-b")),
        "{c:?}"
    );
    // The details name the tier, policy, priority, rule and action; the features the tier and
    // action (not the NetworkPolicy shape, which did not decide).
    assert_eq!(
        c.decided.as_deref(),
        Some(
            "egress of x/b: default allow; ingress of x/a: Admin tier, ClusterNetworkPolicy/deny-b \
             (priority 20) rule spec.ingress[0] \"deny-from-b\": Deny"
        ),
        "{c:?}"
    );
    assert_eq!(c.features, ["ingress", "admin-deny"], "{c:?}");
    assert_eq!(r.failing_features, ["ingress", "admin-deny"]);
}
