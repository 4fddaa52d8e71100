//! What is exposed, in sentences a person acts on. Derived from the class-level matrices and the
//! policies' rules only (pure), so every sentence can be traced to the oracle's answer.
//!
//! Findings, most urgent first:
//! - a namespace none of whose workloads is isolated for ingress ("default/* is not isolated …"),
//!   or single workloads that are not while their neighbours are;
//! - workloads whose ingress rules admit traffic from outside the cluster (a rule without `from`,
//!   or an ipBlock);
//! - egress that no policy restricts;
//! - for every isolated workload and port it declares, who may connect ("shop/db accepts
//!   5432/TCP from every pod in 3 namespaces (a, b, c)");
//! - policies that select no running pod (often a typo in a selector).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::analysis::Analysis;
use crate::policy::{Direction, Peer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    NamespaceNotIsolated,
    WorkloadNotIsolated,
    AcceptsExternal,
    EgressUnrestricted,
    Accepts,
    PolicySelectsNothing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub kind: FindingKind,
    /// The class, namespace (`ns/*`) or policy the finding is about.
    pub subject: String,
    pub text: String,
    /// Classes the finding concerns (for `accepts`: the sources admitted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

/// "a, b, c" for up to `max` items, then "and N more".
pub fn list(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{} and {} more", items[..max].join(", "), items.len() - max)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Every finding for an analysed state, most urgent first.
pub fn findings(a: &Analysis<'_>) -> Vec<Finding> {
    let classes = &a.grouping.classes;
    let mut out = Vec::new();

    // Ingress isolation, per namespace.
    let mut by_ns: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in classes.iter().enumerate() {
        by_ns.entry(c.namespace.as_str()).or_default().push(i);
    }
    for (ns, idx) in &by_ns {
        let open: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| a.isolation[i].ingress.is_empty())
            .collect();
        if open.is_empty() {
            continue;
        }
        let names: Vec<String> = open.iter().map(|&i| classes[i].name.clone()).collect();
        if open.len() == idx.len() {
            out.push(Finding {
                severity: Severity::Warning,
                kind: FindingKind::NamespaceNotIsolated,
                subject: format!("{ns}/*"),
                text: format!(
                    "{ns}/* is not isolated for ingress: any pod may reach its {} ({})",
                    plural(open.len(), "workload", "workloads"),
                    list(&names, 8)
                ),
                classes: names,
            });
        } else {
            for (i, name) in open.iter().zip(names) {
                out.push(Finding {
                    severity: Severity::Warning,
                    kind: FindingKind::WorkloadNotIsolated,
                    subject: name.clone(),
                    text: format!(
                        "{name} is not isolated for ingress: any pod may reach it (no policy in {ns} selects {})",
                        describe_labels(&classes[*i].labels)
                    ),
                    classes: vec![name],
                });
            }
        }
    }

    // Ingress from outside the cluster, per isolated class and declared port.
    for (i, c) in classes.iter().enumerate() {
        if a.isolation[i].ingress.is_empty() {
            continue;
        }
        let Some(rep) = a.model.pod(c.representative()) else {
            continue;
        };
        for probe in served(a, i) {
            let mut sources: BTreeSet<String> = BTreeSet::new();
            let mut rules: BTreeSet<String> = BTreeSet::new();
            for key in &a.isolation[i].ingress {
                let Some(pol) = a.policies.iter().find(|p| &p.key == key) else {
                    continue;
                };
                for (ri, rule) in pol
                    .rules(Direction::Ingress)
                    .unwrap_or(&[])
                    .iter()
                    .enumerate()
                {
                    let port_ok = rule.ports.as_ref().is_none_or(|ps| {
                        ps.iter().any(|pm| {
                            pm.matches(probe.protocol, probe.port, |n, proto| {
                                rep.named_port(n, proto)
                            })
                        })
                    });
                    if !port_ok {
                        continue;
                    }
                    match &rule.peers {
                        None => {
                            sources.insert("anywhere".into());
                            rules.insert(format!("{key} spec.ingress[{ri}]"));
                        }
                        Some(peers) => {
                            for peer in peers {
                                if let Peer::IpBlock { cidr, except } = peer {
                                    let ex: Vec<String> =
                                        except.iter().map(|e| e.to_string()).collect();
                                    sources.insert(if ex.is_empty() {
                                        cidr.to_string()
                                    } else {
                                        format!("{cidr} except {}", ex.join(", "))
                                    });
                                    rules.insert(format!("{key} spec.ingress[{ri}]"));
                                }
                            }
                        }
                    }
                }
            }
            if !sources.is_empty() {
                let src: Vec<String> = sources.into_iter().collect();
                let what = if src.iter().any(|s| s == "anywhere") {
                    "anywhere, including outside the cluster".to_string()
                } else {
                    format!("addresses {}", src.join("; "))
                };
                let rules: Vec<String> = rules.into_iter().collect();
                out.push(Finding {
                    severity: Severity::Warning,
                    kind: FindingKind::AcceptsExternal,
                    subject: c.name.clone(),
                    text: format!(
                        "{} accepts {probe} from {what} ({})",
                        c.name,
                        rules.join(", ")
                    ),
                    classes: vec![],
                });
            }
        }
    }

    // Egress.
    let unrestricted: Vec<String> = classes
        .iter()
        .enumerate()
        .filter(|(i, _)| a.isolation[*i].egress.is_empty())
        .map(|(_, c)| c.name.clone())
        .collect();
    if !unrestricted.is_empty() {
        let all = unrestricted.len() == classes.len();
        out.push(Finding {
            severity: Severity::Warning,
            kind: FindingKind::EgressUnrestricted,
            subject: "egress".into(),
            text: format!(
                "egress is unrestricted for {}{}: no policy limits where they connect ({})",
                if all { "all " } else { "" },
                if all {
                    plural(unrestricted.len(), "workload", "workloads")
                } else {
                    format!("{} of {} workloads", unrestricted.len(), classes.len())
                },
                list(&unrestricted, 8)
            ),
            classes: unrestricted,
        });
    }

    // Who may connect to each isolated class, per declared port.
    for (i, c) in classes.iter().enumerate() {
        if a.isolation[i].ingress.is_empty() {
            continue;
        }
        for probe in served(a, i) {
            let Some(pi) = a.probes.iter().position(|p| *p == probe) else {
                continue;
            };
            let sources: Vec<usize> = (0..classes.len())
                .filter(|&s| a.allowed(pi, s, i))
                .collect();
            out.push(Finding {
                severity: Severity::Info,
                kind: FindingKind::Accepts,
                subject: c.name.clone(),
                text: format!(
                    "{} accepts {probe} from {}",
                    c.name,
                    describe_sources(a, &sources, &by_ns)
                ),
                classes: sources.iter().map(|&s| classes[s].name.clone()).collect(),
            });
        }
    }

    // Policies selecting no running pod.
    for pol in a.policies {
        let selects = a
            .model
            .pods
            .values()
            .any(|p| p.namespace == pol.key.namespace && pol.pod_selector.matches(&p.labels));
        if !selects {
            out.push(Finding {
                severity: Severity::Info,
                kind: FindingKind::PolicySelectsNothing,
                subject: pol.key.to_string(),
                text: format!(
                    "policy {} selects no running pod in {} (check its podSelector)",
                    pol.key, pol.key.namespace
                ),
                classes: vec![],
            });
        }
    }
    out.sort_by_key(|x| (x.severity, x.kind));
    out
}

/// The probes a class declares, among the analysed ones.
fn served(a: &Analysis<'_>, class: usize) -> Vec<crate::model::Probe> {
    let c = &a.grouping.classes[class];
    a.probes
        .iter()
        .copied()
        .filter(|p| {
            c.ports
                .iter()
                .any(|cp| cp.port == p.port && cp.protocol == p.protocol)
        })
        .collect()
}

fn describe_labels(l: &crate::model::Labels) -> String {
    if l.is_empty() {
        "its pods".into()
    } else {
        let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("pods with {}", parts.join(","))
    }
}

/// "every workload in the cluster", "every pod in 3 namespaces (a, b, c) and 2 workloads: x/y,
/// x/z", "no workload".
fn describe_sources(
    a: &Analysis<'_>,
    sources: &[usize],
    by_ns: &BTreeMap<&str, Vec<usize>>,
) -> String {
    let classes = &a.grouping.classes;
    if sources.is_empty() {
        return "no workload (every connection to it is denied)".into();
    }
    if sources.len() == classes.len() {
        return format!(
            "every pod in the cluster ({})",
            plural(by_ns.len(), "namespace", "namespaces")
        );
    }
    let set: BTreeSet<usize> = sources.iter().copied().collect();
    let mut full = Vec::new();
    let mut rest = Vec::new();
    for (ns, idx) in by_ns {
        if idx.iter().all(|i| set.contains(i)) {
            full.push(ns.to_string());
        } else {
            rest.extend(
                idx.iter()
                    .filter(|i| set.contains(i))
                    .map(|&i| classes[i].name.clone()),
            );
        }
    }
    let mut parts = Vec::new();
    match full.len() {
        0 => {}
        1 => parts.push(format!("every pod in namespace {}", full[0])),
        n => parts.push(format!("every pod in {n} namespaces ({})", list(&full, 6))),
    }
    if !rest.is_empty() {
        parts.push(format!(
            "{}: {}",
            plural(rest.len(), "workload", "workloads"),
            list(&rest, 6)
        ));
    }
    parts.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_str;

    fn pod(ns: &str, name: &str, app: &str, port: u16) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\n\
             spec: {{containers: [{{name: c, image: i, ports: [{{containerPort: {port}}}]}}]}}\n---\n"
        )
    }

    fn texts(yaml: &str) -> Vec<String> {
        let loaded = load_str(yaml, "t.yaml").expect("loads");
        let step = &loaded.scenarios[0].steps[0];
        let a = Analysis::new(&step.model, &step.policies, &BTreeMap::new(), &[]);
        findings(&a).into_iter().map(|f| f.text).collect()
    }

    fn cluster() -> String {
        let mut y = String::new();
        for ns in ["a", "b", "c"] {
            y.push_str(&pod(ns, "client", "client", 8080));
        }
        y.push_str(&pod("shop", "db-0", "db", 5432));
        y.push_str(&pod("shop", "api", "api", 8080));
        y
    }

    #[test]
    fn a_cluster_without_policies_is_open_everywhere() {
        let t = texts(&cluster());
        assert_eq!(
            t,
            [
                "a/* is not isolated for ingress: any pod may reach its 1 workload (a/client)",
                "b/* is not isolated for ingress: any pod may reach its 1 workload (b/client)",
                "c/* is not isolated for ingress: any pod may reach its 1 workload (c/client)",
                "shop/* is not isolated for ingress: any pod may reach its 2 workloads (shop/api, shop/db-0)",
                "egress is unrestricted for all 5 workloads: no policy limits where they connect (a/client, b/client, c/client, shop/api, shop/db-0)",
            ]
        );
    }

    #[test]
    fn who_may_connect_is_summarised_by_namespace_then_workload() {
        let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\n\
             spec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from:\n    - namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [a, b, c]}]}\n    - podSelector: {matchLabels: {app: api}}\n    ports: [{port: 5432}]\n";
        let t = texts(&format!("{}{policy}", cluster()));
        assert!(
            t.contains(&"shop/db-0 accepts 5432/TCP from every pod in 3 namespaces (a, b, c) and 1 workload: shop/api".to_string()),
            "{t:#?}"
        );
        assert!(
            t.contains(&"shop/api is not isolated for ingress: any pod may reach it (no policy in shop selects pods with app=api)".to_string()),
            "{t:#?}"
        );
    }

    #[test]
    fn rules_without_peers_or_with_ip_blocks_admit_the_outside() {
        let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\n\
             spec:\n  podSelector: {}\n  ingress:\n  - ports: [{port: 8080}]\n  - from: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]\n    ports: [{port: 5432}]\n";
        let t = texts(&format!("{}{policy}", cluster()));
        assert!(
            t.contains(&"shop/api accepts 8080/TCP from anywhere, including outside the cluster (shop/web spec.ingress[0])".to_string()),
            "{t:#?}"
        );
        assert!(
            t.contains(&"shop/db-0 accepts 5432/TCP from addresses 0.0.0.0/0 except 10.0.0.0/8 (shop/web spec.ingress[1])".to_string()),
            "{t:#?}"
        );
        // Pod addresses are allocated from 10.244.0.0/16, inside the except: no pod may connect.
        assert!(
            t.contains(
                &"shop/db-0 accepts 5432/TCP from no workload (every connection to it is denied)"
                    .to_string()
            ),
            "{t:#?}"
        );
    }

    #[test]
    fn a_policy_that_selects_nothing_is_reported() {
        let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: typo, namespace: shop}\n\
             spec: {podSelector: {matchLabels: {app: dbb}}}\n";
        let t = texts(&format!("{}{policy}", cluster()));
        assert!(
            t.contains(
                &"policy shop/typo selects no running pod in shop (check its podSelector)"
                    .to_string()
            ),
            "{t:#?}"
        );
    }
}
