//! Cluster-wide policies in inputs: reading `ClusterNetworkPolicy`, `AdminNetworkPolicy` and
//! `BaselineAdminNetworkPolicy` documents (manifests, `model.manifests`, step `apply`), naming them
//! in step `delete`, and the loader's warnings about them.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::model::Probe;
use crate::policy::cluster::api::Document;
use crate::policy::cluster::compile::split_unknown_peers;
use crate::policy::{ClusterKind, ClusterPolicy, ClusterPolicyRef, FieldError, PolicyRef, Tier};

use super::Step;
use super::format::DeleteSpec;
use super::objects::strict;

/// Parses one cluster-wide policy object strictly (unknown fields and wrong types are errors with
/// their paths, except a peer of an unknown type, which fails closed) and compiles it. Public as
/// [`crate::scenario::read_cluster_policy`]: the simulated API server validates what the cluster
/// session applies with it, as the real one does with the CRD.
pub fn read(v: &Value, kind: ClusterKind) -> Result<ClusterPolicy, Vec<FieldError>> {
    let api = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if api != kind.api_version() {
        let hint = match (kind, api) {
            (ClusterKind::ClusterNetworkPolicy, crate::policy::cluster::API_V1ALPHA1) => {
                " (v1alpha1 has AdminNetworkPolicy and BaselineAdminNetworkPolicy instead)"
            }
            (_, crate::policy::cluster::API_V1ALPHA2) => {
                " (v1alpha2 replaced it with ClusterNetworkPolicy)"
            }
            _ => "",
        };
        return Err(vec![FieldError::new(
            "apiVersion",
            format!(
                "{kind} must have apiVersion {:?}, found {api:?}{hint}",
                kind.api_version()
            ),
        )]);
    }
    let (stripped, unknown) = split_unknown_peers(v);
    let doc: Document = strict(&stripped)?;
    let bad_names = rule_name_errors(v);
    if !bad_names.is_empty() {
        return Err(bad_names);
    }
    crate::policy::cluster::compile(kind, &doc, &unknown, v.clone())
}

/// Rule names are free text to the API, but netpolc prints them in
/// explanations and reports, so they are held to the single-line printable rules of other names.
fn rule_name_errors(v: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    for dir in ["ingress", "egress"] {
        let Some(rules) = v.pointer(&format!("/spec/{dir}")).and_then(Value::as_array) else {
            continue;
        };
        for (i, r) in rules.iter().enumerate() {
            let Some(name) = r.get("name").and_then(Value::as_str) else {
                continue;
            };
            let path = format!("spec.{dir}[{i}].name");
            // (The API's 100-character limit is checked where the policy is compiled.)
            if let Err(e) = crate::names::text_name("rule name", name) {
                out.push(FieldError::new(path, e.to_string()));
            }
        }
    }
    out
}

/// What a step's `delete` entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DeleteTarget {
    NetworkPolicy(PolicyRef),
    Cluster(ClusterPolicyRef),
}

/// Resolves a `delete` entry; the error is a message for the entry's path.
pub(super) fn delete_target(d: &DeleteSpec) -> Result<DeleteTarget, String> {
    let (kind, namespace, name) = match d {
        DeleteSpec::Name(s) => match s.split_once('/') {
            Some((first, name)) if ClusterKind::from_kind(first).is_some() => {
                (Some(first.to_string()), None, name.to_string())
            }
            Some((ns, name)) => (None, Some(ns.to_string()), name.to_string()),
            None => (None, None, s.clone()),
        },
        DeleteSpec::Object(o) => (Some(o.kind.clone()), o.namespace.clone(), o.name.clone()),
    };
    if name.is_empty() || name.contains('/') {
        return Err(format!(
            "{name:?} is not a policy name (write \"namespace/name\" or \"Kind/name\")"
        ));
    }
    match kind.as_deref() {
        None | Some("NetworkPolicy") => Ok(DeleteTarget::NetworkPolicy(PolicyRef {
            namespace: namespace.unwrap_or_else(|| "default".into()),
            name,
        })),
        Some(k) => {
            let Some(kind) = ClusterKind::from_kind(k) else {
                return Err(format!(
                    "unknown kind {k:?} (NetworkPolicy, ClusterNetworkPolicy, AdminNetworkPolicy \
                     or BaselineAdminNetworkPolicy)"
                ));
            };
            if namespace.is_some() {
                return Err(format!("{kind} is cluster-scoped: give no namespace"));
            }
            Ok(DeleteTarget::Cluster(ClusterPolicyRef { kind, name }))
        }
    }
}

/// Warnings for a step with cluster-wide policies, each a sentence:
/// - cells the API leaves to the implementation (same tier and priority, different actions) at a
///   probe the step's hand-written expectations do not cover (where they do, writing the cell as
///   anything but `null` is already an error);
/// - both API versions in one tier, which neither version orders against the other.
pub(super) fn warnings(step: &Step) -> Vec<String> {
    let mut out = Vec::new();
    if step.cluster_policies.is_empty() {
        return out;
    }
    for tier in [Tier::Admin, Tier::Baseline] {
        let versions: BTreeSet<bool> = step
            .cluster_policies
            .iter()
            .filter(|p| p.tier == tier)
            .map(|p| p.key.kind.is_v1alpha1())
            .collect();
        if versions.len() > 1 {
            out.push(format!(
                "step {:?} mixes v1alpha1 and v1alpha2 policies in the {tier} tier; the API does \
                 not order them against each other (the oracle orders them by priority, a \
                 BaselineAdminNetworkPolicy after every Baseline ClusterNetworkPolicy)",
                step.name
            ));
        }
    }
    let written: BTreeSet<Probe> = step.expectations.iter().map(|e| e.probe).collect();
    let oracle = step.oracle();
    for &probe in step.probes.iter().filter(|p| !written.contains(p)) {
        let table = oracle.expected_matrix(probe);
        let undefined: Vec<String> = table
            .iter()
            .filter(|c| c.2.is_none())
            .map(|(f, t, _)| format!("{f} -> {t}"))
            .collect();
        if undefined.is_empty() {
            continue;
        }
        let shown: Vec<&str> = undefined.iter().take(3).map(String::as_str).collect();
        out.push(format!(
            "step {:?}, {probe}: {} cell(s) are implementation-defined ({}{}): policies of one \
             tier and priority match them with different actions; give them distinct priorities \
             (`netpolc explain` names them)",
            step.name,
            undefined.len(),
            shown.join(", "),
            if undefined.len() > 3 { ", …" } else { "" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::format::DeleteObject;
    use super::*;

    #[test]
    fn delete_targets_are_unambiguous() {
        let t = |s: &str| delete_target(&DeleteSpec::Name(s.into()));
        assert_eq!(
            t("x/p"),
            Ok(DeleteTarget::NetworkPolicy(PolicyRef {
                namespace: "x".into(),
                name: "p".into()
            }))
        );
        assert_eq!(
            t("p"),
            Ok(DeleteTarget::NetworkPolicy(PolicyRef {
                namespace: "default".into(),
                name: "p".into()
            }))
        );
        assert_eq!(
            t("ClusterNetworkPolicy/p"),
            Ok(DeleteTarget::Cluster(ClusterPolicyRef {
                kind: ClusterKind::ClusterNetworkPolicy,
                name: "p".into()
            }))
        );
        assert!(t("x/").is_err() && t("a/b/c").is_err());
        let obj = |kind: &str, ns: Option<&str>| {
            delete_target(&DeleteSpec::Object(DeleteObject {
                kind: kind.into(),
                name: "default".into(),
                namespace: ns.map(String::from),
            }))
        };
        assert_eq!(
            obj("BaselineAdminNetworkPolicy", None),
            Ok(DeleteTarget::Cluster(ClusterPolicyRef {
                kind: ClusterKind::BaselineAdminNetworkPolicy,
                name: "default".into()
            }))
        );
        assert!(obj("AdminNetworkPolicy", Some("x")).is_err());
        assert!(obj("Pod", None).is_err());
        assert!(obj("NetworkPolicy", Some("x")).is_ok());
    }
}
