//! Label selectors (`metav1.LabelSelector`) compiled and matched.
//!
//! An empty selector selects everything; a *missing* selector is represented by the caller (for
//! example a peer with only `namespaceSelector` means "all pods" there), never by this type.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Serialize;

use crate::model::Labels;

use super::FieldError;
use crate::names;

/// One `matchExpressions` requirement (or a `matchLabels` entry, which is `In` with one value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "operator", rename_all = "PascalCase")]
pub enum Requirement {
    In {
        key: String,
        values: BTreeSet<String>,
    },
    NotIn {
        key: String,
        values: BTreeSet<String>,
    },
    Exists {
        key: String,
    },
    DoesNotExist {
        key: String,
    },
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In { key, values } => labels.get(key).is_some_and(|v| values.contains(v)),
            // NotIn matches pods without the key too, as the API documents.
            Requirement::NotIn { key, values } => {
                labels.get(key).is_none_or(|v| !values.contains(v))
            }
            Requirement::Exists { key } => labels.contains_key(key),
            Requirement::DoesNotExist { key } => !labels.contains_key(key),
        }
    }
}

/// A compiled label selector: all requirements must hold (AND).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// The empty selector, which matches every object.
    pub fn everything() -> Self {
        Selector::default()
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Compiles and validates a selector the way the API server does, reporting problems at
    /// `path` (e.g. `spec.podSelector`).
    pub fn compile(sel: &LabelSelector, path: &str, errors: &mut Vec<FieldError>) -> Selector {
        let mut requirements = Vec::new();
        if let Some(ml) = &sel.match_labels {
            for (k, v) in ml {
                let p = format!("{path}.matchLabels.{k}");
                check_label_key(k, &p, errors);
                check_label_value(v, &p, errors);
                requirements.push(Requirement::In {
                    key: k.clone(),
                    values: BTreeSet::from([v.clone()]),
                });
            }
        }
        for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
            let p = format!("{path}.matchExpressions[{i}]");
            check_label_key(&e.key, &format!("{p}.key"), errors);
            let values: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
            for v in &values {
                check_label_value(v, &format!("{p}.values"), errors);
            }
            let key = e.key.clone();
            let req = match e.operator.as_str() {
                "In" | "NotIn" => {
                    if values.is_empty() {
                        errors.push(FieldError::new(
                            format!("{p}.values"),
                            format!("must be specified when `operator` is {:?}", e.operator),
                        ));
                    }
                    if e.operator == "In" {
                        Requirement::In { key, values }
                    } else {
                        Requirement::NotIn { key, values }
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !values.is_empty() {
                        errors.push(FieldError::new(
                            format!("{p}.values"),
                            format!("may not be specified when `operator` is {:?}", e.operator),
                        ));
                    }
                    if e.operator == "Exists" {
                        Requirement::Exists { key }
                    } else {
                        Requirement::DoesNotExist { key }
                    }
                }
                other => {
                    errors.push(FieldError::new(
                        format!("{p}.operator"),
                        format!(
                            "unsupported operator {other:?} (expected In, NotIn, Exists or DoesNotExist)"
                        ),
                    ));
                    continue;
                }
            };
            requirements.push(req);
        }
        Selector { requirements }
    }
}

impl fmt::Display for Selector {
    /// kubectl-style rendering (`app=web,tier in (a,b),!legacy`); `{}` for the empty selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("{}");
        }
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::In { key, values } if values.len() == 1 => {
                    format!(
                        "{key}={}",
                        values.iter().next().map(String::as_str).unwrap_or("")
                    )
                }
                Requirement::In { key, values } => format!("{key} in ({})", join(values)),
                Requirement::NotIn { key, values } => format!("{key} notin ({})", join(values)),
                Requirement::Exists { key } => key.clone(),
                Requirement::DoesNotExist { key } => format!("!{key}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn join(values: &BTreeSet<String>) -> String {
    values.iter().cloned().collect::<Vec<_>>().join(",")
}

/// Label keys as the API checks them (see [`crate::names::label_key`]).
pub fn check_label_key(key: &str, path: &str, errors: &mut Vec<FieldError>) {
    if let Err(e) = names::label_key(key) {
        errors.push(FieldError::new(path, e.to_string()));
    }
}

/// Label values as the API checks them (see [`crate::names::label_value`]).
pub fn check_label_value(value: &str, path: &str, errors: &mut Vec<FieldError>) {
    if let Err(e) = names::label_value(value) {
        errors.push(FieldError::new(path, e.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| v.to_string()).collect())
            },
        }
    }

    fn compile(sel: LabelSelector) -> (Selector, Vec<FieldError>) {
        let mut errs = Vec::new();
        let s = Selector::compile(&sel, "spec.podSelector", &mut errs);
        (s, errs)
    }

    #[test]
    fn empty_selector_matches_everything() {
        let (s, errs) = compile(LabelSelector::default());
        assert!(errs.is_empty());
        assert!(s.matches(&Labels::new()));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn operators_follow_the_api() {
        let l = labels(&[("pod", "a"), ("tier", "web")]);
        let none = Labels::new();
        let cases = [
            (expr("pod", "In", &["a", "b"]), true, false),
            (expr("pod", "In", &["c"]), false, false),
            (expr("pod", "NotIn", &["b"]), true, true),
            (expr("pod", "NotIn", &["a"]), false, true),
            (expr("tier", "Exists", &[]), true, false),
            (expr("tier", "DoesNotExist", &[]), false, true),
        ];
        for (e, on_l, on_none) in cases {
            let (s, errs) = compile(LabelSelector {
                match_expressions: Some(vec![e.clone()]),
                ..Default::default()
            });
            assert!(errs.is_empty(), "{e:?}: {errs:?}");
            assert_eq!(s.matches(&l), on_l, "{e:?} on {l:?}");
            assert_eq!(s.matches(&none), on_none, "{e:?} on no labels");
        }
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let (s, _) = compile(LabelSelector {
            match_labels: Some([("pod".to_string(), "a".to_string())].into()),
            match_expressions: Some(vec![expr("tier", "Exists", &[])]),
        });
        assert!(s.matches(&labels(&[("pod", "a"), ("tier", "x")])));
        assert!(!s.matches(&labels(&[("pod", "a")])));
        assert!(!s.matches(&labels(&[("tier", "x")])));
    }

    #[test]
    fn invalid_selectors_are_rejected_with_paths() {
        let (_, errs) = compile(LabelSelector {
            match_expressions: Some(vec![
                expr("pod", "Equals", &["a"]),
                expr("pod", "In", &[]),
                expr("pod", "Exists", &["a"]),
                expr("-bad", "Exists", &[]),
            ]),
            ..Default::default()
        });
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.podSelector.matchExpressions[0].operator",
                "spec.podSelector.matchExpressions[1].values",
                "spec.podSelector.matchExpressions[2].values",
                "spec.podSelector.matchExpressions[3].key",
            ]
        );
    }

    #[test]
    fn renders_like_kubectl() {
        let (s, _) = compile(LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                expr("env", "NotIn", &["dev", "qa"]),
                expr("x", "DoesNotExist", &[]),
            ]),
        });
        assert_eq!(s.to_string(), "app=web,env notin (dev,qa),!x");
    }
}
