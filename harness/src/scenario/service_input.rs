//! Reading Services: `kind: Service` (v1) in manifests and dumps, and `model.services` entries of
//! scenario files (the same fields, flattened). Kept apart from `load` so the loader only routes
//! documents here.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::Service as K8sService;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

use crate::model::{Labels, Protocol};
use crate::policy::FieldError;
use crate::policy::compile::{is_dns_label, is_port_name};
use crate::service::{Backing, Service, ServicePort, TargetPort};

/// What reading one Service gave: a Service to model, or a reason it is not one (a warning).
pub enum Read {
    Service(Service),
    Ignored(String),
}

/// A Service name is a DNS-1035 label: a DNS label starting with a letter.
fn is_service_name(s: &str) -> bool {
    is_dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn check_labels(labels: &Labels, path: &str, errs: &mut Vec<FieldError>) {
    for (k, v) in labels {
        let at = format!("{path}.{k}");
        crate::policy::selector::check_label_key(k, &at, errs);
        crate::policy::selector::check_label_value(v, &at, errs);
    }
}

fn target(
    t: Option<&IntOrString>,
    port: u16,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> TargetPort {
    match t {
        None => TargetPort::Number(port),
        Some(IntOrString::Int(n)) => match u16::try_from(*n) {
            Ok(n) if n > 0 => TargetPort::Number(n),
            _ => {
                errs.push(FieldError::new(
                    path,
                    format!("{n} is not a port number from 1 to 65535"),
                ));
                TargetPort::Number(port)
            }
        },
        Some(IntOrString::String(s)) => {
            // The API accepts a numeric string here too and reads it as the number.
            if let Ok(n) = s
                .parse::<u16>()
                .map_err(drop)
                .and_then(|n| if n > 0 { Ok(n) } else { Err(()) })
            {
                TargetPort::Number(n)
            } else if is_port_name(s) {
                TargetPort::Name(s.clone())
            } else {
                errs.push(FieldError::new(
                    path,
                    format!("{s:?} is neither a port number nor a valid port name"),
                ));
                TargetPort::Number(port)
            }
        }
    }
}

fn protocol(p: Option<&str>, path: &str, errs: &mut Vec<FieldError>) -> Protocol {
    match p.map(str::parse::<Protocol>) {
        None => Protocol::Tcp,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            errs.push(FieldError::new(path, e.to_string()));
            Protocol::Tcp
        }
    }
}

fn cluster_ip(raw: Option<&str>, path: &str, errs: &mut Vec<FieldError>) -> Option<Ipv4Addr> {
    match raw {
        None | Some("") => Some(Ipv4Addr::UNSPECIFIED),
        Some("None") => None,
        Some(s) => match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(v)) if !v.is_unspecified() => Some(v),
            Ok(_) => {
                errs.push(FieldError::new(
                    path,
                    format!("{s:?}: only IPv4 ClusterIPs are modelled"),
                ));
                Some(Ipv4Addr::UNSPECIFIED)
            }
            Err(_) => {
                errs.push(FieldError::new(path, format!("{s:?} is not an IP address")));
                Some(Ipv4Addr::UNSPECIFIED)
            }
        },
    }
}

/// Reads a `v1` `Service` object (already strictly deserialized). Field paths are relative to
/// the object.
pub fn from_k8s(s: &K8sService, errs: &mut Vec<FieldError>) -> Read {
    let name = s.metadata.name.clone().unwrap_or_default();
    let namespace = s
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    if !is_service_name(&name) {
        errs.push(FieldError::new(
            "metadata.name",
            format!(
                "{:?} is not a valid Service name (DNS-1035 label)",
                crate::names::escape(&name)
            ),
        ));
    }
    if let Err(e) = crate::names::namespace(&namespace) {
        errs.push(FieldError::new("metadata.namespace", e.to_string()));
    }
    for (i, p) in s
        .spec
        .iter()
        .flat_map(|sp| sp.ports.iter().flatten())
        .enumerate()
    {
        // Service port names are DNS-1123 labels (the API's rule for ServicePort.name).
        if let Some(n) = &p.name
            && !crate::names::is_dns1123_label(n)
        {
            errs.push(FieldError::new(
                format!("spec.ports[{i}].name"),
                format!(
                    "{:?} is not a valid Service port name (DNS-1123 label)",
                    crate::names::escape(n)
                ),
            ));
        }
    }
    let Some(spec) = &s.spec else {
        return Read::Ignored(format!("Service {namespace}/{name} has no spec"));
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Read::Ignored(format!(
            "Service {namespace}/{name} is of type ExternalName (no ClusterIP): not probed"
        ));
    }
    let Some(ip) = cluster_ip(spec.cluster_ip.as_deref(), "spec.clusterIP", errs) else {
        return Read::Ignored(format!(
            "Service {namespace}/{name} is headless (clusterIP: None): not probed"
        ));
    };
    let Some(selector) = spec.selector.clone() else {
        return Read::Ignored(format!(
            "Service {namespace}/{name} has no selector (its endpoints are managed by hand): not probed"
        ));
    };
    check_labels(&selector, "spec.selector", errs);
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let base = format!("spec.ports[{i}]");
        let Ok(port) = u16::try_from(p.port)
            .map_err(drop)
            .and_then(|n| if n > 0 { Ok(n) } else { Err(()) })
        else {
            errs.push(FieldError::new(
                format!("{base}.port"),
                format!("{} is not a port number from 1 to 65535", p.port),
            ));
            continue;
        };
        let protocol = protocol(p.protocol.as_deref(), &format!("{base}.protocol"), errs);
        let target_port = target(
            p.target_port.as_ref(),
            port,
            &format!("{base}.targetPort"),
            errs,
        );
        ports.push(ServicePort {
            name: p.name.clone(),
            port,
            protocol,
            target_port,
        });
    }
    Read::Service(Service {
        namespace,
        name,
        cluster_ip: ip,
        backing: Backing::Selector(selector.into_iter().collect()),
        ports,
        synthesised: false,
    })
}

/// A `model.services` entry of a scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    pub selector: Labels,
    pub ports: Vec<ServicePortSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePortSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub port: i32,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub target_port: Option<IntOrString>,
}

fn default_namespace() -> String {
    "default".into()
}

impl ServiceSpec {
    /// The same checks as a manifest's Service, through the API type.
    pub fn read(&self, errs: &mut Vec<FieldError>) -> Read {
        use k8s_openapi::api::core::v1::{ServicePort as K8sPort, ServiceSpec as K8sSpec};
        let s = K8sService {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            spec: Some(K8sSpec {
                cluster_ip: self.cluster_ip.clone(),
                selector: Some(self.selector.clone()),
                ports: Some(
                    self.ports
                        .iter()
                        .map(|p| K8sPort {
                            name: p.name.clone(),
                            port: p.port,
                            protocol: p.protocol.clone(),
                            target_port: p.target_port.clone(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut inner = Vec::new();
        let r = from_k8s(&s, &mut inner);
        // Scenario entries are flat: `metadata.name` is `name`, `spec.ports` is `ports`.
        errs.extend(inner.into_iter().map(|e| {
            let path = e
                .path
                .replacen("metadata.", "", 1)
                .replacen("spec.clusterIP", "clusterIP", 1)
                .replacen("spec.", "", 1);
            FieldError::new(path, e.message)
        }));
        r
    }
}
