//! The local dataplane against the oracle, with real packets in network namespaces.
//!
//! These tests need root (they create network namespaces) and the `ip` and `nft` binaries. Without
//! them they fail saying so; they never pass vacuously.

use std::collections::BTreeMap;
use std::time::Duration;

use netpol_conformance::cni::faults::{Fault, FaultSet};
use netpol_conformance::cni::nftables;
use netpol_conformance::model::{PodRef, Probe, Protocol};
use netpol_conformance::policy::{Direction, Oracle};
use netpol_conformance::probe::{Connectivity, Observation, ProbeRequest};
use netpol_conformance::provider::cleanup::Target;
use netpol_conformance::provider::lease::LeaseDir;
use netpol_conformance::provider::local::{self, LocalCni, LocalOptions, LocalPlatform};
use netpol_conformance::provider::{Platform, Session};
use netpol_conformance::scenario::{Scenario, Step, load_str};

const TIMEOUT: Duration = Duration::from_millis(600);

/// Timed-out cells are probed once more with this: on a loaded machine an allowed UDP exchange can
/// take longer than `TIMEOUT`, while a dropped packet times out again however long one waits, so the
/// retry cannot turn a real block into a pass.
const RETRY_TIMEOUT: Duration = Duration::from_millis(2500);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the local dataplane tests must run as root (they create network namespaces); \
         run `sudo -E cargo test --test local_dataplane`"
    );
}

fn run_id(test: &str) -> String {
    format!("t{}-{test}", std::process::id())
}

fn platform(run_id: &str, cni: LocalCni, faults: &[Fault]) -> LocalPlatform {
    require_root();
    match LocalPlatform::new(LocalOptions {
        faults: faults.to_vec(),
        ..LocalOptions::new(run_id, cni)
    }) {
        Ok(p) => p,
        Err(e) => panic!("local dataplane unavailable: {e}"),
    }
}

fn scenario(yaml: &str) -> Scenario {
    match load_str(yaml, "inline.yaml") {
        Ok(mut l) => l.scenarios.remove(0),
        Err(e) => panic!("inline scenario does not load: {e:?}"),
    }
}

/// Every pod × pod × probe of a step, in the engine's planning order.
fn batch(step: &Step) -> Vec<ProbeRequest> {
    netpol_conformance::run::plan_step(step, &step.probes)
        .into_iter()
        .map(|c| c.request)
        .collect()
}

type Cells = BTreeMap<(PodRef, PodRef, Probe), Observation>;

async fn observe(session: &impl Session, step: &Step) -> Cells {
    let reqs = batch(step);
    let mut obs = session.probe(&reqs, TIMEOUT).await;
    assert_eq!(obs.len(), reqs.len(), "one observation per request");
    let late: Vec<usize> = (0..obs.len())
        .filter(|&i| obs[i].result == Connectivity::Timeout)
        .collect();
    if !late.is_empty() {
        let again: Vec<ProbeRequest> = late.iter().map(|&i| reqs[i].clone()).collect();
        let retried = session.probe(&again, RETRY_TIMEOUT).await;
        assert_eq!(retried.len(), again.len(), "one observation per request");
        for (i, o) in late.into_iter().zip(retried) {
            obs[i] = o;
        }
    }
    reqs.into_iter()
        .zip(obs)
        .map(|(r, o)| ((r.from, r.to, r.probe), o))
        .collect()
}

/// Cells where the observation disagrees with `oracle` (SCTP must be `unsupported` here when the
/// kernel lacks it, otherwise compared like the others).
fn mismatches(cells: &Cells, oracle: &Oracle<'_>) -> Vec<String> {
    let sctp = netpol_conformance_sctp_supported();
    let mut out = Vec::new();
    for ((from, to, probe), obs) in cells {
        if probe.protocol == Protocol::Sctp && !sctp {
            if obs.result != Connectivity::Unsupported {
                out.push(format!(
                    "{from} -> {to} {probe}: SCTP not unsupported: {obs:?}"
                ));
            }
            continue;
        }
        let expected = oracle
            .decide(from, to, *probe)
            .map(|d| d.allowed)
            .unwrap_or(false);
        if obs.result.allowed() != Some(expected) {
            out.push(format!(
                "{from} -> {to} {probe}: expected {} observed {:?} ({:?}) [{}]",
                if expected { "allowed" } else { "denied" },
                obs.result,
                obs.detail,
                obs.command
            ));
        }
    }
    out
}

/// Whether this kernel has SCTP sockets (the provider detects it the same way).
fn netpol_conformance_sctp_supported() -> bool {
    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
    socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Sctp,
    )
    .is_ok()
}

fn leftovers(run_id: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // Names of this run exactly (`netpolc-<run>--s<n>-…`), never of a run whose id starts with it.
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| local::run_of(n) == Some(run_id))
        .map(str::to_string)
        .collect()
}

const BASIC: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: basic
model:
  namespaces:
    - {name: x, labels: {ns: x}}
    - {name: y, labels: {ns: y}}
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ports: [80/TCP, 81/TCP, 80/UDP, 80/SCTP]}
    - {namespace: x, name: b, labels: {pod: b}, ports: [80/TCP, 81/TCP, 80/UDP, 80/SCTP]}
    - {namespace: y, name: a, labels: {pod: a}, ports: [80/TCP, 81/TCP, 80/UDP, 80/SCTP]}
steps:
  - name: deny-ingress-to-x-a-but-from-x-b-on-80
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: only-b, namespace: x}
        spec:
          podSelector: {matchLabels: {pod: a}}
          ingress:
            - from: [{podSelector: {matchLabels: {pod: b}}}]
              ports: [{port: 80, protocol: TCP}, {port: 80, protocol: UDP}]
  - name: y-a-may-not-send
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: quiet, namespace: y}
        spec:
          podSelector: {}
          policyTypes: [Egress]
    delete: [x/only-b]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_are_enforced_as_the_oracle_says_and_teardown_is_clean() {
    let id = run_id("basic");
    let platform = platform(&id, LocalCni::Nftables, &[]);
    let sc = scenario(BASIC);
    let mut session = platform.open(0, &sc).await.expect("open");
    let mut previous: Option<Vec<bool>> = None;
    for step in &sc.steps {
        session.apply(step).await.expect("apply");
        let cells = observe(&session, step).await;
        let oracle = step.oracle();
        let bad = mismatches(&cells, &oracle);
        assert!(bad.is_empty(), "step {}:\n{}", step.name, bad.join("\n"));
        // Not vacuous: the step denies some cells and allows others, and differs from the last.
        let allowed: Vec<bool> = cells
            .keys()
            .map(|(f, t, p)| oracle.decide(f, t, *p).is_some_and(|d| d.allowed))
            .collect();
        assert!(allowed.contains(&true) && allowed.contains(&false));
        let observed_denied = cells
            .values()
            .filter(|o| matches!(o.result, Connectivity::Timeout | Connectivity::Refused))
            .count();
        assert!(observed_denied > 0, "step {} blocked nothing", step.name);
        assert_ne!(previous.as_ref(), Some(&allowed), "steps must differ");
        previous = Some(allowed);
    }
    // Back to the first step; a self-connection goes over `lo` through the same chains, so
    // x/a -> x/a on 81 is denied there as the oracle says.
    let step = &sc.steps[0];
    session.apply(step).await.expect("apply");
    let cells = observe(&session, step).await;
    let xa = PodRef::new("x", "a");
    let key = (xa.clone(), xa, Probe::new(81, Protocol::Tcp));
    assert_eq!(cells[&key].result, Connectivity::Timeout);
    assert!(mismatches(&cells, &step.oracle()).is_empty());
    assert!(cells[&key].command.starts_with("ip netns exec netpolc-"));

    assert!(
        !leftovers(&id).is_empty(),
        "the session's namespaces exist while it runs"
    );
    session.teardown().await.expect("teardown");
    session.teardown().await.expect("teardown is idempotent");
    platform.close().await.expect("close");
    assert_eq!(leftovers(&id), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_none_cni_ignores_policies() {
    let id = run_id("none");
    let platform = platform(&id, LocalCni::None, &[]);
    let sc = scenario(BASIC);
    let mut session = platform.open(0, &sc).await.expect("open");
    let step = &sc.steps[0];
    session.apply(step).await.expect("apply");
    let cells = observe(&session, step).await;
    for ((f, t, p), o) in &cells {
        let want = if p.protocol == Protocol::Sctp && !netpol_conformance_sctp_supported() {
            Connectivity::Unsupported
        } else {
            Connectivity::Connected
        };
        assert_eq!(o.result, want, "{f} -> {t} {p}: {o:?}");
    }
    session.teardown().await.expect("teardown");
    assert_eq!(leftovers(&id), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_no_step_lists_is_served_on_demand() {
    let id = run_id("ondemand");
    let platform = platform(&id, LocalCni::Nftables, &[]);
    let sc = scenario(BASIC);
    let mut session = platform.open(0, &sc).await.expect("open");
    let step = &sc.steps[1];
    session.apply(&sc.steps[0]).await.expect("apply");
    session.apply(step).await.expect("apply");
    let pod = |ns: &str, n: &str| step.model.pods[&PodRef::new(ns, n)].ip;
    let req = |from: (&str, &str), to: (&str, &str)| ProbeRequest {
        from: PodRef::new(from.0, from.1),
        to: PodRef::new(to.0, to.1),
        to_ip: pod(to.0, to.1),
        probe: Probe::new(9999, Protocol::Udp),
        via: netpol_conformance::service::ProbeMode::PodIp,
        service: None,
    };
    let obs = session
        .probe(
            &[req(("x", "a"), ("x", "b")), req(("y", "a"), ("x", "b"))],
            TIMEOUT,
        )
        .await;
    assert_eq!(obs[0].result, Connectivity::Connected, "{:?}", obs[0]);
    // y/a is isolated for egress: its datagram is dropped on the way out.
    assert!(obs[1].result.allowed() == Some(false), "{:?}", obs[1]);
    session.teardown().await.expect("teardown");
}

fn ip_netns_add(name: &str) {
    let st = std::process::Command::new("ip")
        .args(["netns", "add", name])
        .status();
    assert!(st.is_ok_and(|s| s.success()), "ip netns add {name}");
}

/// Run ids that prefix each other (`<id>` and `<id>-s1`) never match each other's namespaces:
/// `--run-id <id>` removes exactly `<id>`'s, and a plain cleanup removes nothing it cannot
/// attribute to a dead run through a lease (here: no lease at all, so nothing).
#[test]
fn cleanup_removes_only_the_runs_namespaces() {
    require_root();
    let leases = tempfile::tempdir().expect("tempdir");
    let leases = LeaseDir::at(leases.path());
    let id = run_id("cleanup");
    let long = format!("{id}-s1");
    let ours = format!("{}node", local::session_prefix(&id, 0));
    let other = format!("{}node", local::session_prefix(&long, 0));
    // What an older netpolc would have called `<id>`'s session 1: never touched.
    let legacy = format!("{}{id}-s1-node", local::PREFIX);
    for n in [&ours, &other, &legacy] {
        ip_netns_add(n);
    }
    let plain = local::cleanup(&Target::DeadRuns, &leases).expect("cleanup");
    assert!(plain.removed.is_empty(), "{plain:?}");
    assert!(
        plain
            .left
            .iter()
            .any(|l| l.contains(&ours) && l.contains("no lease")),
        "{plain:?}"
    );
    assert!(
        plain.left.iter().any(|l| l.contains("older netpolc")),
        "{plain:?}"
    );
    let removed = local::cleanup(&Target::Run(id.clone()), &leases).expect("cleanup");
    assert_eq!(removed.removed.len(), 1, "{removed:?}");
    assert!(
        removed.removed[0].starts_with(&format!("netns {ours} ")),
        "{removed:?}"
    );
    assert_eq!(leftovers(&long), vec![other.clone()]);
    assert!(std::path::Path::new("/run/netns").join(&legacy).exists());
    let removed = local::cleanup(&Target::Run(long.clone()), &leases).expect("cleanup");
    assert_eq!(removed.removed.len(), 1, "{removed:?}");
    assert!(leftovers(&id).is_empty() && leftovers(&long).is_empty());
    assert!(std::path::Path::new("/run/netns").join(&legacy).exists());
    // The temporary leases taken while cleaning are gone again.
    assert_eq!(leases.runs(), Ok(vec![]));
    let st = std::process::Command::new("ip")
        .args(["netns", "del", &legacy])
        .status();
    assert!(st.is_ok_and(|s| s.success()));
}

/// The shared model of the fault scenarios: x/{a,b,c}, y/{b,c}, fixed addresses, a named port.
const FAULT_MODEL: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: fault
model:
  namespaces:
    - {name: x, labels: {ns: x}}
    - {name: y, labels: {ns: y}}
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ip: 10.9.0.1, ports: [{port: 80, name: http}, 81/TCP, 80/UDP]}
    - {namespace: x, name: b, labels: {pod: b}, ip: 10.9.0.2, ports: [80/TCP, 81/TCP, 80/UDP]}
    - {namespace: x, name: c, labels: {pod: c}, ip: 10.9.0.3, ports: [80/TCP, 81/TCP, 80/UDP]}
    - {namespace: y, name: b, labels: {pod: b}, ip: 10.9.0.4, ports: [80/TCP, 81/TCP, 80/UDP]}
    - {namespace: y, name: c, labels: {pod: c}, ip: 10.9.0.5, ports: [80/TCP, 81/TCP, 80/UDP]}
probes: [80/TCP, 81/TCP, 80/UDP]
steps:
"#;

fn policy(name: &str, spec: &str) -> String {
    format!(
        "      - apiVersion: networking.k8s.io/v1\n        kind: NetworkPolicy\n        \
         metadata: {{name: {name}, namespace: x}}\n        spec: {spec}\n"
    )
}

/// A ClusterNetworkPolicy of `tier` at `priority` whose subject is x/a, with `rules` (YAML of
/// the `ingress`/`egress` keys).
fn cnp(name: &str, tier: &str, priority: u32, rules: &str) -> String {
    format!(
        "      - apiVersion: policy.networking.k8s.io/v1alpha2\n        kind: ClusterNetworkPolicy\n        \
         metadata: {{name: {name}}}\n        spec: {{tier: {tier}, priority: {priority}, \
         subject: {{pods: {{namespaceSelector: {{matchLabels: {{ns: x}}}}, podSelector: {{matchLabels: {{pod: a}}}}}}}}, \
         {rules}}}\n"
    )
}

fn one_step(policies: &[String]) -> String {
    format!(
        "{FAULT_MODEL}  - name: only\n    apply:\n{}",
        policies.concat()
    )
}

struct FaultCase {
    fault: Fault,
    yaml: String,
    /// The cell the fault must flip (on the last step).
    cell: (&'static str, &'static str, Probe),
}

fn fault_cases() -> Vec<FaultCase> {
    let tcp80 = Probe::new(80, Protocol::Tcp);
    let to_a = "{matchLabels: {pod: a}}";
    let from_b = "{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}}";
    vec![
        FaultCase {
            fault: Fault::Intersection,
            yaml: one_step(&[
                policy(
                    "from-b",
                    &format!(
                        "{{podSelector: {to_a}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}"
                    ),
                ),
                policy(
                    "from-c",
                    &format!(
                        "{{podSelector: {to_a}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: c}}}}}}]}}]}}"
                    ),
                ),
            ]),
            cell: ("x/b", "x/a", tcp80),
        },
        FaultCase {
            fault: Fault::IgnoreEgress,
            yaml: one_step(&[policy(
                "a-silent",
                &format!("{{podSelector: {to_a}, policyTypes: [Egress]}}"),
            )]),
            cell: ("x/a", "x/b", tcp80),
        },
        FaultCase {
            fault: Fault::IgnoreNamedPorts,
            yaml: one_step(&[policy(
                "http",
                &format!("{{podSelector: {to_a}, ingress: [{{ports: [{{port: http}}]}}]}}"),
            )]),
            cell: ("x/b", "x/a", tcp80),
        },
        FaultCase {
            fault: Fault::IgnoreEndport,
            yaml: one_step(&[policy(
                "range",
                &format!(
                    "{{podSelector: {to_a}, ingress: [{{ports: [{{port: 80, endPort: 81}}]}}]}}"
                ),
            )]),
            cell: ("x/b", "x/a", Probe::new(81, Protocol::Tcp)),
        },
        FaultCase {
            fault: Fault::IgnoreExcept,
            yaml: one_step(&[policy(
                "block",
                &format!(
                    "{{podSelector: {to_a}, ingress: [{{from: [{{ipBlock: {{cidr: 10.9.0.0/24, except: [10.9.0.2/32]}}}}]}}]}}"
                ),
            )]),
            cell: ("x/b", "x/a", tcp80),
        },
        FaultCase {
            fault: Fault::PeerOr,
            yaml: one_step(&[policy(
                "y-b",
                &format!(
                    "{{podSelector: {to_a}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}, podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}"
                ),
            )]),
            cell: ("y/c", "x/a", tcp80),
        },
        FaultCase {
            fault: Fault::IgnoreNamespaceSelector,
            yaml: one_step(&[policy(
                "from-y",
                &format!(
                    "{{podSelector: {to_a}, ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}]}}]}}"
                ),
            )]),
            cell: ("y/b", "x/a", tcp80),
        },
        FaultCase {
            fault: Fault::UdpUnenforced,
            yaml: one_step(&[policy("deny-a", &format!("{{podSelector: {to_a}}}"))]),
            cell: ("x/b", "x/a", Probe::new(80, Protocol::Udp)),
        },
        FaultCase {
            fault: Fault::StaleUpdates,
            yaml: format!(
                "{FAULT_MODEL}  - name: open\n  - name: deny\n    apply:\n{}",
                policy("deny-a", &format!("{{podSelector: {to_a}}}"))
            ),
            cell: ("x/b", "x/a", tcp80),
        },
        FaultCase {
            fault: Fault::Stateless,
            yaml: one_step(&[policy(
                "a-silent",
                &format!("{{podSelector: {to_a}, policyTypes: [Egress]}}"),
            )]),
            cell: ("x/b", "x/a", tcp80),
        },
        FaultCase {
            fault: Fault::ClusterPriorityInverted,
            yaml: one_step(&[
                cnp(
                    "deny-b",
                    "Admin",
                    10,
                    &format!("ingress: [{{action: Deny, from: [{from_b}]}}]"),
                ),
                cnp(
                    "accept-b",
                    "Admin",
                    20,
                    &format!("ingress: [{{action: Accept, from: [{from_b}]}}]"),
                ),
            ]),
            cell: ("x/b", "x/a", tcp80),
        },
        FaultCase {
            fault: Fault::PassAsAccept,
            yaml: one_step(&[
                cnp(
                    "pass-b",
                    "Admin",
                    10,
                    &format!("ingress: [{{action: Pass, from: [{from_b}]}}]"),
                ),
                policy("deny-a", &format!("{{podSelector: {to_a}}}")),
            ]),
            cell: ("x/b", "x/a", tcp80),
        },
        FaultCase {
            fault: Fault::ClusterRuleOrderIgnored,
            yaml: one_step(&[cnp(
                "b-then-all",
                "Admin",
                10,
                &format!(
                    "ingress: [{{action: Accept, from: [{from_b}]}}, {{action: Deny, from: [{{namespaces: {{}}}}]}}]"
                ),
            )]),
            cell: ("x/b", "x/a", tcp80),
        },
        FaultCase {
            fault: Fault::BaselineIgnoresIsolation,
            yaml: one_step(&[
                cnp(
                    "deny-b",
                    "Baseline",
                    10,
                    &format!("ingress: [{{action: Deny, from: [{from_b}]}}]"),
                ),
                policy(
                    "a-from-b",
                    &format!(
                        "{{podSelector: {to_a}, ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]}}"
                    ),
                ),
            ]),
            cell: ("x/b", "x/a", tcp80),
        },
        FaultCase {
            fault: Fault::NetworksSkipPods,
            yaml: one_step(&[cnp(
                "deny-pod-net",
                "Admin",
                10,
                "egress: [{action: Deny, to: [{networks: [10.9.0.0/24]}]}]",
            )]),
            cell: ("x/a", "x/b", tcp80),
        },
    ]
}

/// What a CNI with `fault` should show on `step`: the first packet must pass the faulty rules at
/// both ends; without connection tracking (stateless) the reply must pass them too, which these
/// port-agnostic cases model with an ephemeral port.
fn faulty_expectation(
    fault: Fault,
    first: &Step,
    step: &Step,
) -> impl Fn(&PodRef, &PodRef, Probe) -> bool {
    let faults = FaultSet::new([fault]);
    let rules = nftables::compile_step(first, step, &faults);
    let model = step.model.clone();
    move |f: &PodRef, t: &PodRef, p: Probe| {
        let ip = |r: &PodRef| match model.pods[r].ip {
            std::net::IpAddr::V4(v) => v,
            std::net::IpAddr::V6(_) => unreachable!("IPv4 model"),
        };
        let forward = rules[f].admits(Direction::Egress, ip(t), p.protocol, p.port)
            && rules[t].admits(Direction::Ingress, ip(f), p.protocol, p.port);
        let reply = fault != Fault::Stateless
            || (rules[t].admits(Direction::Egress, ip(f), p.protocol, 40000)
                && rules[f].admits(Direction::Ingress, ip(t), p.protocol, 40000));
        forward && reply
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_flips_its_cell() {
    let cases = fault_cases();
    // The service-path faults act only on DNAT'ed connections, which these pod-address cells
    // never make: they are checked through Services by `local_run` (caught via service-ip,
    // invisible via pod-ip) and in software by `cni::service_nat`'s tests.
    let pod_path = Fault::ALL.iter().filter(|f| !f.is_service()).count();
    assert_eq!(cases.len(), pod_path, "one case per pod-path fault");
    let runs = cases.iter().enumerate().map(|(i, case)| async move {
        let id = run_id(&format!("fault{i}"));
        let platform = platform(&id, LocalCni::Nftables, &[case.fault]);
        let sc = scenario(&case.yaml);
        let mut session = platform.open(0, &sc).await.expect("open");
        let mut problems = Vec::new();
        let mut last = None;
        for step in &sc.steps {
            session.apply(step).await.expect("apply");
            last = Some(observe(&session, step).await);
        }
        let cells = last.expect("a step");
        let step = sc.steps.last().expect("a step");
        let (from, to, probe) = (
            case.cell.0.parse::<PodRef>().expect("pod ref"),
            case.cell.1.parse::<PodRef>().expect("pod ref"),
            case.cell.2,
        );
        let truth = step.oracle().decide(&from, &to, probe).map(|d| d.allowed);
        let seen = cells[&(from.clone(), to.clone(), probe)].clone();
        if truth.is_none() || seen.result.allowed() != truth.map(|t| !t) {
            problems.push(format!(
                "{}: cell {from} -> {to} {probe}: oracle {truth:?}, observed {:?} — not flipped",
                case.fault, seen
            ));
        }
        let expect = faulty_expectation(case.fault, &sc.steps[0], step);
        for ((f, t, p), o) in &cells {
            if o.result.allowed() != Some(expect(f, t, *p)) {
                problems.push(format!(
                    "{}: {f} -> {t} {p}: the faulty rules say {}, observed {:?}",
                    case.fault,
                    expect(f, t, *p),
                    o
                ));
            }
        }
        session.teardown().await.expect("teardown");
        platform.close().await.expect("close");
        if !leftovers(&id).is_empty() {
            problems.push(format!("{}: namespaces left behind", case.fault));
        }
        problems
    });
    let problems: Vec<String> = futures::future::join_all(runs).await.concat();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

const OPEN_THEN_DENY: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: open-then-deny
model:
  namespaces: [{name: x}]
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ports: [80/UDP]}
    - {namespace: x, name: b, labels: {pod: b}, ports: [80/UDP]}
steps:
  - name: open
  - name: deny-a
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny-a, namespace: x}
        spec: {podSelector: {matchLabels: {pod: a}}}
"#;

/// Sends one datagram on `sock` and waits for the echo (blocking; run off the async workers).
fn echo(sock: &std::net::UdpSocket, to: std::net::SocketAddr) -> bool {
    let mut buf = [0u8; 64];
    sock.send_to(b"netpolc-probe", to).is_ok() && sock.recv(&mut buf).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_is_not_bypassed_by_established_udp_flows() {
    let id = run_id("conntrack");
    let platform = platform(&id, LocalCni::Nftables, &[]);
    let sc = scenario(OPEN_THEN_DENY);
    let mut session = platform.open(0, &sc).await.expect("open");
    session.apply(&sc.steps[0]).await.expect("apply");
    // A client socket in x/b with a fixed source port, created by this test on its own thread.
    let ns = format!("/run/netns/{}x.b", local::session_prefix(&id, 0));
    let sock = std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).expect("x/b namespace exists");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let s = std::net::UdpSocket::bind("0.0.0.0:40000").expect("bind");
        s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        s
    })
    .join()
    .expect("thread");
    let sock = std::sync::Arc::new(sock);
    let to = std::net::SocketAddr::new(sc.steps[0].model.pods[&PodRef::new("x", "a")].ip, 80);
    let s = sock.clone();
    let before = tokio::task::spawn_blocking(move || echo(&s, to))
        .await
        .expect("join");
    assert!(before, "x/b -> x/a 80/UDP is open in the first step");
    session.apply(&sc.steps[1]).await.expect("apply");
    let s = sock.clone();
    let after = tokio::task::spawn_blocking(move || echo(&s, to))
        .await
        .expect("join");
    assert!(!after, "the same flow must be denied once x/a is isolated");
    drop(sock);
    session.teardown().await.expect("teardown");
    assert_eq!(leftovers(&id), Vec::<String>::new());
}

const EXTERNAL: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: external
model:
  namespaces: [{name: x}]
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ports: [80/TCP]}
    - {namespace: x, name: b, labels: {pod: b}, ports: [80/TCP]}
  externals:
    - {name: web, ports: [80/TCP]}
probes: ["80/TCP"]
steps:
  - name: a-only-to-the-peer
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {namespace: x, name: out}
        spec:
          podSelector: {matchLabels: {pod: a}}
          policyTypes: [Egress]
          egress: [{to: [{ipBlock: {cidr: <(external)/web>/24}}]}]
  - name: except-the-peer
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {namespace: x, name: out}
        spec:
          podSelector: {matchLabels: {pod: a}}
          policyTypes: [Egress]
          egress: [{to: [{ipBlock: {cidr: <(external)/web>/24, except: [<(external)/web>]}}]}]
"#;

/// `ip -n NS -j link show` as JSON (inspection only: the provider itself never runs `ip`).
fn links(netns: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("ip")
        .args(["-n", netns, "-j", "link", "show"])
        .output()
        .expect("ip runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ip -j prints JSON")
}

/// An external peer is a namespace reached through the node as a router (its link `x<index>` is
/// no bridge port), ipBlock allows it and `except` denies it as the oracle says, and teardown
/// removes its namespace with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_peer_is_routed_by_the_node_and_judged_by_ipblock() {
    let id = run_id("external");
    let platform = platform(&id, LocalCni::Nftables, &[]);
    let sc = scenario(EXTERNAL);
    let mut session = platform.open(0, &sc).await.expect("open");
    let peer = PodRef::new("(external)", "web");
    let xa = PodRef::new("x", "a");
    let probe = Probe::new(80, Protocol::Tcp);
    let mut seen = Vec::new();
    for step in &sc.steps {
        session.apply(step).await.expect("apply");
        let cells = observe(&session, step).await;
        let bad = mismatches(&cells, &step.oracle());
        assert!(bad.is_empty(), "step {}:\n{}", step.name, bad.join("\n"));
        seen.push(cells[&(xa.clone(), peer.clone(), probe)].result);
        // Other pods reach the peer and it reaches them, through the node.
        let xb = PodRef::new("x", "b");
        assert_eq!(
            cells[&(xb.clone(), peer.clone(), probe)].result,
            Connectivity::Connected
        );
        assert_eq!(
            cells[&(peer.clone(), xb, probe)].result,
            Connectivity::Connected
        );
    }
    assert_eq!(
        seen[0],
        Connectivity::Connected,
        "the ipBlock admits the peer"
    );
    assert!(
        matches!(seen[1], Connectivity::Timeout | Connectivity::Refused),
        "except carves the peer out: {:?}",
        seen[1]
    );

    let names = leftovers(&id);
    let node = names
        .iter()
        .find(|n| n.ends_with("-node"))
        .expect("the node namespace");
    assert!(
        names.iter().any(|n| n.contains("(external).web")),
        "the peer has a namespace of its own: {names:?}"
    );
    let node_links = links(node);
    let x: Vec<&serde_json::Value> = node_links
        .iter()
        .filter(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with('x')))
        .collect();
    assert_eq!(x.len(), 1, "one link towards the peer: {node_links:?}");
    assert!(
        x[0].get("master").is_none(),
        "x<index> is not bridged: {:?}",
        x[0]
    );
    let bridged = node_links
        .iter()
        .filter(|l| l["master"].as_str() == Some("br0"))
        .count();
    assert_eq!(bridged, 2, "only the two pods are bridge ports");

    session.teardown().await.expect("teardown");
    platform.close().await.expect("close");
    assert_eq!(leftovers(&id), Vec::<String>::new());
}
