//! One test per shipped scenario file (`scenarios/**/*.yaml`): it loads cleanly, every step of a
//! scenario file carries hand-written expectations for every probe it runs, and those expectations
//! agree with the oracle cell by cell. Plain manifest files cannot carry expectations and are only
//! required to load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use netpol_conformance::cni::faults::Fault;
use netpol_conformance::model::{Probe, Protocol};
use netpol_conformance::policy::{
    Action, ClusterPeer, ClusterPolicy, CompiledPolicy, DecidedBy, NamespaceMatch, Oracle, Peer,
    PortSpec, Selector, Tier,
};
use netpol_conformance::scenario::{Scenario, load_paths};
use netpol_conformance::truthtable::TruthTable;
use rstest::rstest;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// A scenario file (as opposed to a plain manifest) declares `kind: Scenario` at the top level.
fn is_scenario_file(text: &str) -> bool {
    text.lines().any(|l| l.trim_end() == "kind: Scenario")
}

fn load_one(path: &Path) -> Scenario {
    let loaded = match load_paths(&[path.to_path_buf()]) {
        Ok(l) => l,
        Err(e) => panic!("{} does not load:\n{e}", path.display()),
    };
    let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings.is_empty(),
        "shipped scenarios load without warnings:\n{}",
        warnings.join("\n")
    );
    assert_eq!(loaded.scenarios.len(), 1, "one scenario per file");
    loaded.scenarios.into_iter().next().expect("checked above")
}

/// Checks that each step writes exactly one expectation per probe it runs, and none for others.
fn check_expectation_coverage(path: &Path, scenario: &Scenario) {
    for step in &scenario.steps {
        let mut written: BTreeMap<Probe, usize> = BTreeMap::new();
        for e in &step.expectations {
            *written.entry(e.probe).or_default() += 1;
        }
        let missing: Vec<String> = step
            .probes
            .iter()
            .filter(|p| !written.contains_key(p))
            .map(|p| p.to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "{}: step {:?} probes {} without a hand-written expectation",
            path.display(),
            step.name,
            missing.join(", ")
        );
        let twice: Vec<String> = written
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(p, _)| p.to_string())
            .collect();
        assert!(
            twice.is_empty(),
            "{}: step {:?} writes the expectation for {} more than once",
            path.display(),
            step.name,
            twice.join(", ")
        );
        let extra: Vec<String> = written
            .keys()
            .filter(|p| !step.probes.contains(p))
            .map(|p| p.to_string())
            .collect();
        assert!(
            extra.is_empty(),
            "{}: step {:?} has expectations for {}, which it does not probe",
            path.display(),
            step.name,
            extra.join(", ")
        );
    }
}

#[rstest]
fn scenario_file(
    #[base_dir = "../scenarios"]
    #[files("**/*.yaml")]
    path: PathBuf,
) {
    let text = std::fs::read_to_string(&path).expect("rstest found this file");
    let scenario = load_one(&path);
    assert!(
        !scenario.steps.is_empty(),
        "a scenario has at least one step"
    );

    if is_scenario_file(&text) {
        assert!(
            scenario
                .description
                .as_deref()
                .is_some_and(|d| !d.trim().is_empty()),
            "{}: every shipped scenario explains itself in `description`",
            path.display()
        );
        check_expectation_coverage(&path, &scenario);
    }

    let mismatches = scenario.check_expectations();
    assert!(
        mismatches.is_empty(),
        "{}: hand-written expectations disagree with the oracle:\n{}",
        path.display(),
        mismatches
            .iter()
            .map(|m| format!("  {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn all_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                walk(&e, out);
            } else if e.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(e);
            }
        }
    }
    let mut out = Vec::new();
    walk(&scenarios_dir(), &mut out);
    out
}

#[test]
fn only_yaml_extension_is_used() {
    // The data-driven test above globs `*.yaml`; a `.yml` file would silently get no test.
    let yml: Vec<_> = all_files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    assert!(yml.is_empty(), "rename to .yaml: {yml:?}");
}

#[test]
fn scenario_names_are_unique() {
    let loaded = load_paths(&[scenarios_dir()]).unwrap_or_else(|e| panic!("{e}"));
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for s in &loaded.scenarios {
        if let Some(prev) = seen.insert(s.name.clone(), s.source.clone()) {
            panic!("scenario name {:?} used by {prev} and {}", s.name, s.source);
        }
    }
    assert_eq!(
        seen.len(),
        all_files().len(),
        "one scenario per file in the catalogue"
    );
}

#[test]
fn upstream_directory_covers_the_e2e_suite() {
    let upstream: Vec<_> = all_files()
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("upstream")))
        .collect();
    assert!(
        upstream.len() >= 30,
        "only {} upstream cases",
        upstream.len()
    );
    for p in &upstream {
        let text = std::fs::read_to_string(p).expect("readable");
        assert!(
            text.contains("Upstream \""),
            "{} should say which upstream case it is in its description",
            p.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Fault coverage. Each fault the local dataplane can inject is emulated here on the oracle, from
// its one-sentence description (`netpolc faults`), and the README's table is checked: every file
// it names for a fault has some TCP or UDP cell (SCTP is unsupported locally) where the faulty
// answer differs from the right one, so running that file against the faulty dataplane fails.
// This checks the catalogue, not the dataplane: the real faults live in the local CNI.
// ---------------------------------------------------------------------------------------------

/// Rewrites compiled policies the way a fault that can be expressed as a policy change would.
fn rewrite(fault: Fault, policies: &[CompiledPolicy]) -> Vec<CompiledPolicy> {
    let mut out = policies.to_vec();
    for p in &mut out {
        let ns = p.key.namespace.clone();
        if matches!(fault, Fault::IgnoreEgress | Fault::ServiceBypass) {
            // Bypass: every probe goes through a Service (`--probe-mode service-ip`) and skips
            // egress policy.
            p.egress = None;
        }
        if fault == Fault::ServicePreDnat
            && let Some(rules) = p.egress.as_mut()
        {
            // Egress matched against the ClusterIP (10.96.0.0/16): no pod selector matches it, a
            // named port resolves on no pod, and an ipBlock matches only if it holds the whole
            // service range (a coarse but sufficient stand-in for "holds this ClusterIP").
            let range: ipnet::IpNet = "10.96.0.0/16".parse().expect("range");
            for rule in rules.iter_mut() {
                for pm in rule.ports.iter_mut().flatten() {
                    if let PortSpec::Named(name) = &mut pm.port {
                        *name = "NEVER".to_string();
                    }
                }
                if let Some(peers) = rule.peers.as_mut() {
                    *peers = peers
                        .drain(..)
                        .filter_map(|peer| match peer {
                            Peer::IpBlock { cidr, except }
                                if cidr.contains(&range)
                                    && except.iter().all(|e| !e.contains(&range.network())) =>
                            {
                                Some(Peer::IpBlock {
                                    cidr: "0.0.0.0/0".parse().expect("cidr"),
                                    except: Vec::new(),
                                })
                            }
                            _ => None,
                        })
                        .collect();
                }
            }
            continue;
        }
        for rules in [p.ingress.as_mut(), p.egress.as_mut()]
            .into_iter()
            .flatten()
        {
            for rule in rules.iter_mut() {
                for pm in rule.ports.iter_mut().flatten() {
                    match (&mut pm.port, fault) {
                        // A name no pod can declare (upper case): never resolves, never matches.
                        (PortSpec::Named(name), Fault::IgnoreNamedPorts) => {
                            *name = "NEVER".to_string();
                        }
                        (PortSpec::Range { start, end }, Fault::IgnoreEndport) => *end = *start,
                        _ => {}
                    }
                }
                let Some(peers) = rule.peers.as_mut() else {
                    continue;
                };
                let mut rewritten = Vec::new();
                for peer in peers.drain(..) {
                    match (peer, fault) {
                        (Peer::IpBlock { cidr, .. }, Fault::IgnoreExcept) => {
                            rewritten.push(Peer::IpBlock {
                                cidr,
                                except: Vec::new(),
                            });
                        }
                        (
                            Peer::Pods {
                                namespaces: NamespaceMatch::Selector(nss),
                                pods,
                            },
                            Fault::PeerOr,
                        ) if !pods.is_everything() => {
                            // Either selector alone: the namespaces' pods, or the policy's own
                            // namespace's matching pods.
                            rewritten.push(Peer::Pods {
                                namespaces: NamespaceMatch::Selector(nss),
                                pods: Selector::everything(),
                            });
                            rewritten.push(Peer::Pods {
                                namespaces: NamespaceMatch::Same(ns.clone()),
                                pods,
                            });
                        }
                        (
                            Peer::Pods {
                                namespaces: NamespaceMatch::Selector(_),
                                pods,
                            },
                            Fault::IgnoreNamespaceSelector,
                        ) => rewritten.push(Peer::Pods {
                            namespaces: NamespaceMatch::Same(ns.clone()),
                            pods,
                        }),
                        (peer, _) => rewritten.push(peer),
                    }
                }
                *peers = rewritten;
            }
        }
    }
    out
}

/// Rewrites cluster-wide policies the way a cluster-policy fault that is a change of meaning
/// would (`None`: the fault is not one of those).
fn rewrite_cluster(fault: Fault, policies: &[ClusterPolicy]) -> Option<Vec<ClusterPolicy>> {
    if !matches!(
        fault,
        Fault::ClusterPriorityInverted
            | Fault::PassAsAccept
            | Fault::ClusterRuleOrderIgnored
            | Fault::NetworksSkipPods
    ) {
        return None;
    }
    let mut out = policies.to_vec();
    for c in &mut out {
        if fault == Fault::ClusterPriorityInverted {
            c.priority = c.priority.map(|p| 1000 - p);
        }
        for rules in [&mut c.ingress, &mut c.egress] {
            if fault == Fault::ClusterRuleOrderIgnored {
                rules.reverse();
            }
            for r in rules.iter_mut() {
                if fault == Fault::PassAsAccept && r.action == Action::Pass {
                    r.action = Action::Accept;
                }
                if fault == Fault::NetworksSkipPods {
                    // No CIDR at all: the peer matches no pod (nothing else is probed).
                    for peer in &mut r.peers {
                        if let ClusterPeer::Networks(nets) = peer {
                            nets.clear();
                        }
                    }
                }
            }
        }
    }
    Some(out)
}

/// The matrix a dataplane with `fault` would show for step `si` of `scenario`: `None` where the
/// answer is left to the implementation (nothing to catch there).
fn faulty_matrix(
    fault: Fault,
    scenario: &Scenario,
    si: usize,
    probe: Probe,
) -> TruthTable<Option<bool>> {
    let step = &scenario.steps[si];
    if let Some(cluster) = rewrite_cluster(fault, &step.cluster_policies) {
        return Oracle::with_cluster(&step.model, &step.policies, &cluster).expected_matrix(probe);
    }
    if fault == Fault::BaselineIgnoresIsolation {
        // Where a NetworkPolicy isolates a pod and allows the traffic (the Admin tier not having
        // decided), the Baseline tier still gets its say, as if alone.
        let full = step.oracle();
        let baseline: Vec<ClusterPolicy> = step
            .cluster_policies
            .iter()
            .filter(|c| c.tier == Tier::Baseline)
            .cloned()
            .collect();
        let alone = Oracle::with_cluster(&step.model, &[], &baseline);
        let pods = step.model.pod_refs();
        return TruthTable::from_fn(pods.clone(), |i, j| {
            let d = full.decide(&pods[i], &pods[j], probe).expect("pods");
            if d.implementation_defined {
                return None;
            }
            let b = alone.decide(&pods[i], &pods[j], probe).expect("pods");
            let side =
                |s: &netpol_conformance::policy::DirectionDecision,
                 base: &netpol_conformance::policy::DirectionDecision| {
                    let by_np = s
                        .tiers
                        .as_ref()
                        .is_some_and(|t| t.decided_by == DecidedBy::NetworkPolicy);
                    s.allowed && (!by_np || base.allowed)
                };
            Some(side(&d.egress, &b.egress) && side(&d.ingress, &b.ingress))
        });
    }
    faulty_np_matrix(fault, scenario, si, probe).map(|v| Some(*v))
}

/// [`faulty_matrix`] for the NetworkPolicy faults.
fn faulty_np_matrix(
    fault: Fault,
    scenario: &Scenario,
    si: usize,
    probe: Probe,
) -> TruthTable<bool> {
    let step = &scenario.steps[si];
    let pods = step.model.pod_refs();
    match fault {
        Fault::UdpUnenforced if probe.protocol == Protocol::Udp => TruthTable::new(pods, true),
        Fault::UdpUnenforced => step.oracle().matrix(probe),
        Fault::StaleUpdates => {
            let first = &scenario.steps[0];
            Oracle::new(&first.model, &first.policies).matrix(probe)
        }
        Fault::Intersection => {
            // Every selecting policy must allow, per direction.
            let full = step.oracle();
            let single: BTreeMap<String, Oracle<'_>> = step
                .policies
                .iter()
                .map(|p| {
                    (
                        p.key.to_string(),
                        Oracle::new(&step.model, std::slice::from_ref(p)),
                    )
                })
                .collect();
            TruthTable::from_fn(pods.clone(), |i, j| {
                let d = full.decide(&pods[i], &pods[j], probe).expect("pods");
                let each = |sel: &[netpol_conformance::policy::PolicyRef], egress: bool| {
                    sel.iter().all(|k| {
                        let one = single[&k.to_string()]
                            .decide(&pods[i], &pods[j], probe)
                            .expect("pods");
                        if egress {
                            one.egress.allowed
                        } else {
                            one.ingress.allowed
                        }
                    })
                };
                each(&d.egress.selecting, true) && each(&d.ingress.selecting, false)
            })
        }
        // Through a Service nothing answers: every probe is denied.
        Fault::ServiceRepliesDropped => TruthTable::new(pods, false),
        Fault::ServicePreDnat => {
            // Egress as the pre-DNAT rules see it, ingress as the API says.
            let right = step.oracle();
            let faulty_policies = rewrite(fault, &step.policies);
            let faulty = Oracle::new(&step.model, &faulty_policies);
            TruthTable::from_fn(pods.clone(), |i, j| {
                let r = right.decide(&pods[i], &pods[j], probe).expect("pods");
                let f = faulty.decide(&pods[i], &pods[j], probe).expect("pods");
                f.egress.allowed && r.ingress.allowed
            })
        }
        Fault::Stateless => {
            // The reply travels to -> from and must itself pass both ends' policies.
            let o = step.oracle();
            TruthTable::from_fn(pods.clone(), |i, j| {
                let fwd = o.decide(&pods[i], &pods[j], probe).expect("pods").allowed;
                let back = o.decide(&pods[j], &pods[i], probe).expect("pods").allowed;
                fwd && back
            })
        }
        other => Oracle::new(&step.model, &rewrite(other, &step.policies)).matrix(probe),
    }
}

/// Whether running `scenario` on a dataplane with `fault` shows a wrong TCP or UDP cell.
fn catches(fault: Fault, scenario: &Scenario) -> bool {
    scenario.steps.iter().enumerate().any(|(si, step)| {
        let right = step.oracle();
        step.probes
            .iter()
            .filter(|p| p.protocol != Protocol::Sctp)
            .any(|&probe| {
                let want = right.expected_matrix(probe);
                let got = faulty_matrix(fault, scenario, si, probe);
                want.iter()
                    .zip(got.iter())
                    .any(|(w, g)| matches!((w.2, g.2), (Some(a), Some(b)) if a != b))
            })
    })
}

#[test]
fn every_fault_is_caught_by_the_files_the_readme_names() {
    let readme = std::fs::read_to_string(scenarios_dir().join("README.md")).expect("README");
    let dir = scenarios_dir();
    for fault in Fault::ALL {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", fault.name())))
            .unwrap_or_else(|| panic!("README has no row for {}", fault.name()));
        let named: Vec<&str> = row
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| t.ends_with(".yaml"))
            .collect();
        for pattern in named {
            let files: Vec<PathBuf> = all_files()
                .into_iter()
                .filter(|f| {
                    let rel = f
                        .strip_prefix(&dir)
                        .expect("under scenarios/")
                        .to_string_lossy();
                    match pattern.strip_suffix("*.yaml") {
                        Some(prefix) => rel.starts_with(prefix),
                        None => rel == pattern,
                    }
                })
                .collect();
            assert!(!files.is_empty(), "{pattern} matches no file");
            for f in files {
                let scenario = load_one(&f);
                assert!(
                    catches(fault, &scenario),
                    "README says {} catches fault {}, but no TCP/UDP cell would differ",
                    f.display(),
                    fault.name()
                );
            }
        }
    }
}

#[test]
fn fault_emulation_is_not_vacuous() {
    // A scenario with no policy at all must not be "caught" by any fault: the emulation only
    // differs from the oracle where policies make it differ.
    let loaded = netpol_conformance::scenario::load_str(
        "apiVersion: netpolc/v1\nkind: Scenario\nmodel: {upstream: {protocols: [TCP, UDP]}}\n",
        "empty.yaml",
    )
    .expect("loads");
    for fault in Fault::ALL {
        // Dropping the replies of every Service connection breaks a cluster with no policy at
        // all too: the one fault that does not need a policy to show.
        let needs_no_policy = fault == Fault::ServiceRepliesDropped;
        assert_eq!(
            catches(fault, &loaded.scenarios[0]),
            needs_no_policy,
            "{}",
            fault.name()
        );
    }
}
