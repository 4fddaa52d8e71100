//! ipBlock CIDRs written relative to pods, and re-binding a step to a cluster's real addresses.
//!
//! Upstream's e2e suite computes its ipBlock CIDRs from the pods' real IPs at run time; a scenario
//! that wrote `10.244.0.6/32` would test nothing on Calico (pods in 192.168.0.0/16). In a
//! scenario's `steps[].apply`, `cidr` and `except` entries may therefore name a pod instead of an
//! address: `<y/b>` is y/b's address as a host prefix (/32 or /128), `<y/b>/4` the /4 around it.
//! At load time the templates are resolved with the model's addresses (so `expect`, `explain` and
//! the local dataplane see plain CIDRs); the template is kept ([`Step::templates`]) and
//! [`Step::rebind`] resolves it again once a provider reports the real addresses, so the oracle is
//! re-run on what the cluster really has. Literal CIDRs stay as written and are judged on the real
//! addresses too.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;

use super::Step;
use crate::model::{Model, PodRef};
use crate::policy::{CompiledPolicy, FieldError};

/// A parsed `<ns/pod>` or `<ns/pod>/N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressTemplate {
    pub pod: PodRef,
    /// `None`: the host prefix of the pod's address family.
    pub prefix: Option<u8>,
}

impl AddressTemplate {
    /// `Ok(None)` for a plain CIDR; `Err` for a malformed template.
    pub fn parse(s: &str) -> Result<Option<AddressTemplate>, String> {
        let Some(rest) = s.strip_prefix('<') else {
            return Ok(None);
        };
        let Some((pod, tail)) = rest.split_once('>') else {
            return Err(format!(
                "{s:?}: a pod address template is <NAMESPACE/POD> or <NAMESPACE/POD>/PREFIX"
            ));
        };
        let pod: PodRef = pod.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix = match tail {
            "" => None,
            t => Some(
                t.strip_prefix('/')
                    .and_then(|n| n.parse::<u8>().ok())
                    .ok_or_else(|| {
                        format!("{s:?}: expected /PREFIX after the pod, e.g. <{pod}>/24")
                    })?,
            ),
        };
        Ok(Some(AddressTemplate { pod, prefix }))
    }

    /// The CIDR for `ip` (the pod's address): its network of the template's prefix length.
    pub fn cidr(&self, ip: IpAddr) -> Result<IpNet, String> {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = self.prefix.unwrap_or(max);
        IpNet::new(ip, len)
            .map(|n| n.trunc())
            .map_err(|_| format!("/{len} is not a prefix length for {ip} (at most /{max})"))
    }
}

/// Every string field of `policy` that may hold a CIDR, with its field path.
fn cidr_fields(policy: &mut Value) -> Vec<(String, &mut Value)> {
    let mut out = Vec::new();
    let Some(spec) = policy.get_mut("spec") else {
        return out;
    };
    let Some(spec) = spec.as_object_mut() else {
        return out;
    };
    for (dir, rules) in spec.iter_mut() {
        let peers_key = match dir.as_str() {
            "ingress" => "from",
            "egress" => "to",
            _ => continue,
        };
        let Some(rules) = rules.as_array_mut() else {
            continue;
        };
        for (ri, rule) in rules.iter_mut().enumerate() {
            let Some(peers) = rule.get_mut(peers_key).and_then(Value::as_array_mut) else {
                continue;
            };
            for (pi, peer) in peers.iter_mut().enumerate() {
                let Some(block) = peer.get_mut("ipBlock").and_then(Value::as_object_mut) else {
                    continue;
                };
                let base = format!("spec.{dir}[{ri}].{peers_key}[{pi}].ipBlock");
                for (k, v) in block.iter_mut() {
                    match (k.as_str(), v) {
                        ("cidr", v @ Value::String(_)) => out.push((format!("{base}.cidr"), v)),
                        ("except", Value::Array(list)) => {
                            for (ei, e) in list.iter_mut().enumerate() {
                                if e.is_string() {
                                    out.push((format!("{base}.except[{ei}]"), e));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    out
}

/// Whether a policy object (untyped, as written) uses any pod address template.
pub fn has_templates(policy: &Value) -> bool {
    let mut copy = policy.clone();
    cidr_fields(&mut copy)
        .iter()
        .any(|(_, v)| v.as_str().is_some_and(|s| s.starts_with('<')))
}

/// Replaces every template of `policy` with the CIDR computed from `addr`; errors name the field.
pub fn resolve(
    policy: &Value,
    addr: impl Fn(&PodRef) -> Option<IpAddr>,
) -> Result<Value, Vec<FieldError>> {
    let mut out = policy.clone();
    let mut errors = Vec::new();
    for (path, v) in cidr_fields(&mut out) {
        let Some(s) = v.as_str() else { continue };
        match AddressTemplate::parse(s) {
            Ok(None) => {}
            Ok(Some(t)) => match addr(&t.pod) {
                None => errors.push(FieldError::new(
                    path,
                    format!("{s:?} names pod {}, which is not in the model", t.pod),
                )),
                Some(ip) => match t.cidr(ip) {
                    Ok(net) => *v = Value::String(net.to_string()),
                    Err(e) => errors.push(FieldError::new(path, format!("{s:?}: {e}"))),
                },
            },
            Err(e) => errors.push(FieldError::new(path, e)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// For `--dry-run` plans: every template's pod written as `placeholder(pod)` (the plan's
/// placeholder for a real address) followed by its prefix.
pub fn placeholders(policy: &Value, placeholder: impl Fn(&PodRef) -> String) -> Value {
    let mut out = policy.clone();
    for (_, v) in cidr_fields(&mut out) {
        let Some(s) = v.as_str() else { continue };
        if let Ok(Some(t)) = AddressTemplate::parse(s) {
            let prefix = t.prefix.map(|p| format!("/{p}")).unwrap_or_default();
            *v = Value::String(format!("{}{prefix}", placeholder(&t.pod)));
        }
    }
    out
}

/// Why a step could not be re-bound to real addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("re-binding step {step:?} to the cluster's pod addresses: {message}")]
pub struct RebindError {
    pub step: String,
    pub message: String,
}

impl Step {
    /// This step with the pods' real addresses (pods missing from `addrs` keep theirs) and every
    /// templated policy resolved and compiled again on them. What the oracle must answer for on a
    /// dataplane that assigned its own addresses.
    pub fn rebind(&self, addrs: &BTreeMap<PodRef, IpAddr>) -> Result<Step, RebindError> {
        let err = |message: String| RebindError {
            step: self.name.clone(),
            message,
        };
        let mut model: Model = self.model.clone();
        for (r, pod) in model.pods.iter_mut() {
            if let Some(ip) = addrs.get(r) {
                pod.ip = *ip;
            }
        }
        let mut policies = Vec::with_capacity(self.policies.len());
        for p in &self.policies {
            let Some(template) = self.templates.get(&p.key) else {
                policies.push(p.clone());
                continue;
            };
            let resolved = resolve(template, |r| model.pod(r).map(|p| p.ip)).map_err(|e| {
                err(format!(
                    "policy {}: {}",
                    p.key,
                    e.iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })?;
            let np: NetworkPolicy = serde_json::from_value(resolved)
                .map_err(|e| err(format!("policy {}: {e}", p.key)))?;
            let compiled = CompiledPolicy::compile(&np, &p.key.namespace).map_err(|e| {
                err(format!(
                    "policy {} is invalid with these addresses: {}",
                    p.key,
                    e.iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })?;
            policies.push(compiled);
        }
        Ok(Step {
            model,
            policies,
            // Hand-written tables describe the model's addresses; the oracle decides at run time.
            expectations: Vec::new(),
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_parse_and_reject() {
        assert_eq!(AddressTemplate::parse("10.0.0.0/8"), Ok(None));
        let t = AddressTemplate::parse("<y/b>/4")
            .expect("ok")
            .expect("template");
        assert_eq!((t.pod, t.prefix), (PodRef::new("y", "b"), Some(4)));
        let host = AddressTemplate::parse("<x/a>")
            .expect("ok")
            .expect("template");
        assert_eq!(host.prefix, None);
        for bad in ["<x/a", "<xa>/4", "<x/a>4", "<x/a>/x", "<x/a>/300"] {
            assert!(AddressTemplate::parse(bad).is_err(), "{bad}");
        }
        let ip: IpAddr = "192.168.7.9".parse().expect("ip");
        assert_eq!(t_cidr("<x/a>/4", ip), "192.0.0.0/4");
        assert_eq!(t_cidr("<x/a>", ip), "192.168.7.9/32");
        let v6: IpAddr = "fd00::5".parse().expect("ip");
        assert_eq!(t_cidr("<x/a>", v6), "fd00::5/128");
        assert!(
            AddressTemplate::parse("<x/a>/33")
                .expect("ok")
                .expect("t")
                .cidr(ip)
                .is_err()
        );
    }

    fn t_cidr(s: &str, ip: IpAddr) -> String {
        AddressTemplate::parse(s)
            .expect("ok")
            .expect("template")
            .cidr(ip)
            .expect("cidr")
            .to_string()
    }

    #[test]
    fn resolve_rewrites_cidr_and_except_and_names_bad_fields() {
        let p = json!({"spec": {"podSelector": {}, "egress": [{"to": [
            {"ipBlock": {"cidr": "<x/b>/4", "except": ["<x/b>", "10.9.0.0/16"]}},
            {"podSelector": {}}]}]}});
        assert!(has_templates(&p));
        let ip: IpAddr = "192.168.1.7".parse().expect("ip");
        let out = resolve(&p, |r| (r == &PodRef::new("x", "b")).then_some(ip)).expect("resolves");
        assert_eq!(
            out["spec"]["egress"][0]["to"][0]["ipBlock"],
            json!({"cidr": "192.0.0.0/4", "except": ["192.168.1.7/32", "10.9.0.0/16"]})
        );
        assert!(!has_templates(&out));
        let errs = resolve(&p, |_| None).expect_err("unknown pod");
        assert_eq!(errs[0].path, "spec.egress[0].to[0].ipBlock.cidr");
        assert!(errs[0].message.contains("x/b"), "{errs:?}");
        let shown = placeholders(&p, |r| format!("{{ip=real-{}}}", r.name));
        assert_eq!(
            shown["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"],
            "{ip=real-b}/4"
        );
    }
}
