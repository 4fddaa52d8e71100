//! Kubernetes objects read from manifests and cluster dumps, and their resolution into a model.
//!
//! **Strictness.** A hand-written object must use only fields the Kubernetes API defines, so a
//! typo (`lables`, `podselector`) is an error instead of a silently different model. An object
//! that came from an API server — it has `status`, or server-set metadata (`uid`,
//! `resourceVersion`, `generation`, `managedFields`) — is read leniently: fields netpolc does not
//! use are ignored whatever they hold, so a dump from a newer server still loads. Either way
//! the top-level keys, `metadata`, container `ports` and every NetworkPolicy `spec` are checked
//! strictly, as netpolc's answer depends on them.
//!
//! **Workloads.** Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job and
//! CronJob synthesise pods `<name>-0`… from their pod template (one for DaemonSet, Job and
//! CronJob), unless the input already holds pods (or ReplicaSets / Jobs) whose
//! `ownerReferences` lead to the workload: then those real objects are the model and the
//! workload adds nothing, so a dump of both a Deployment and its pods counts each pod once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{
    ContainerPort, Labels, Model, NAMESPACE_NAME_LABEL, Namespace, Pod, PodRef, Protocol, Workload,
};
use crate::names;
use crate::policy::{
    ClusterPolicy, ClusterPolicyRef, CompiledPolicy, FieldError, PolicyRef, Selector,
};

use super::docs::{DocCtx, join_path};
use super::limits::{MAX_PODS, MAX_REPLICAS};
use super::{InputError, allocate_ips};

/// Where an object was written, for errors found later (duplicates, addresses, limits).
#[derive(Clone, Debug)]
pub(super) struct Origin {
    pub file: PathBuf,
    pub document: usize,
    pub line: usize,
    pub field: String,
    /// Path of the object's name (`metadata.name` in manifests, `name` in scenario models), where
    /// errors about the object as a whole (duplicates) point.
    pub name_field: String,
    /// Line of `name_field`.
    pub name_line: usize,
}

impl Origin {
    pub fn new(ctx: &DocCtx, field: &str, name_field: &str) -> Self {
        Origin {
            file: ctx.file.to_path_buf(),
            document: ctx.index,
            line: ctx.line(field),
            field: field.to_string(),
            name_field: name_field.to_string(),
            name_line: ctx.line(name_field),
        }
    }

    pub fn error(&self, message: impl Into<String>) -> InputError {
        InputError {
            file: self.file.clone(),
            document: Some(self.document),
            field: (!self.field.is_empty()).then(|| self.field.clone()),
            line: Some(self.line),
            column: None,
            message: message.into(),
        }
    }

    pub fn name_error(&self, message: impl Into<String>) -> InputError {
        InputError {
            field: Some(self.name_field.clone()),
            line: Some(self.name_line),
            ..self.error(message)
        }
    }

    /// An error at another field of the object (`ip`, `status.podIP`, …).
    pub fn at(&self, field: &str, line: usize, message: impl Into<String>) -> InputError {
        InputError {
            field: Some(field.to_string()),
            line: Some(line),
            ..self.error(message)
        }
    }
}

/// An `ownerReferences` entry: owners live in the dependent's namespace. Matched by kind and
/// name, not `uid`: a live cluster's garbage collector removes dependents whose owner's uid is
/// gone, so in a real dump the two agree anyway, while hand-edited or recorded dumps often carry
/// made-up uids, and a mismatch would synthesise the workload's pods beside its real ones.
#[derive(Clone, Debug)]
pub(super) struct Owner {
    pub kind: String,
    pub name: String,
}

/// A pod as read, before resolution.
pub(super) struct PodObj {
    pub pod: Pod,
    /// The address the input states, with the field path and line it was written at.
    pub ip: Option<(IpAddr, String, usize)>,
    pub origin: Origin,
    pub owners: Vec<Owner>,
    /// Why the pod is not part of the model (not running, host network), if it is not.
    pub left_out: Option<String>,
    /// Read from an API server's output (has `status`): a missing address is worth a warning.
    pub from_server: bool,
}

/// A controller of pods (Deployment, StatefulSet, …), before resolution.
pub(super) struct WorkloadObj {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub owners: Vec<Owner>,
    pub replicas: u32,
    pub labels: Labels,
    pub ports: Vec<ContainerPort>,
    pub image: Option<String>,
    pub host_network: bool,
    pub from_server: bool,
    pub origin: Origin,
}

/// Warnings of one load, at most [`WARNINGS_PER_KIND`] of each kind per file and then one line
/// saying how many more there were: a dump of thousands of Services must not bury the rest.
#[derive(Default)]
pub(super) struct Warnings {
    list: Vec<InputError>,
    counts: BTreeMap<(PathBuf, String), usize>,
}

const WARNINGS_PER_KIND: usize = 5;

impl Warnings {
    pub fn push(&mut self, kind: impl Into<String>, w: InputError) {
        let n = self
            .counts
            .entry((w.file.clone(), kind.into()))
            .or_default();
        *n += 1;
        if *n <= WARNINGS_PER_KIND {
            self.list.push(w);
        }
    }

    pub fn append(&mut self, other: Warnings) {
        for w in other.list {
            self.list.push(w);
        }
        for (k, n) in other.counts {
            *self.counts.entry(k).or_default() += n;
        }
    }

    pub fn into_vec(self) -> Vec<InputError> {
        let mut out = self.list;
        for ((file, kind), n) in self.counts {
            if n > WARNINGS_PER_KIND {
                out.push(InputError::file(
                    file,
                    format!(
                        "… and {} more warnings like these ({kind})",
                        n - WARNINGS_PER_KIND
                    ),
                ));
            }
        }
        out
    }
}

/// Objects read from manifests and scenario models, before resolution into a model.
#[derive(Default)]
pub(super) struct Objects {
    pub namespaces: Vec<(Namespace, Origin)>,
    pub pods: Vec<PodObj>,
    pub workloads: Vec<WorkloadObj>,
    pub policies: Vec<(CompiledPolicy, Origin)>,
    pub services: Vec<(crate::service::Service, Origin)>,
    pub cluster: Vec<(ClusterPolicy, Origin)>,
    pub warnings: Warnings,
}

impl Objects {
    /// A Service as read from a manifest or a scenario's `model.services`: kept, or a warning
    /// saying why it is not probed.
    pub fn add_service(&mut self, read: super::service_input::Read, origin: Origin) {
        match read {
            super::service_input::Read::Service(s) => self.services.push((s, origin)),
            super::service_input::Read::Ignored(why) => {
                self.warnings.push("service", origin.error(why))
            }
        }
    }
}

/// Deserializes an untyped value into `T`, reporting the field path of a failure.
pub(super) fn typed<T: DeserializeOwned>(v: &Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        FieldError::new(path, e.into_inner().to_string())
    })
}

/// Keys present in `original` that the typed round trip dropped: fields the API does not know.
fn unknown_fields(original: &Value, typed: &Value, path: &str, out: &mut Vec<FieldError>) {
    match (original, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                let p = join_path(path, k);
                match t.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(FieldError::new(p, "unknown field")),
                }
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            for (i, (ov, tv)) in o.iter().zip(t).enumerate() {
                unknown_fields(ov, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Deserializes a known API object strictly: bad types and unknown fields are errors.
pub(super) fn strict<T: DeserializeOwned + serde::Serialize>(
    v: &Value,
) -> Result<T, Vec<FieldError>> {
    let obj: T = typed(v).map_err(|e| vec![e])?;
    let back = serde_json::to_value(&obj).map_err(|e| vec![FieldError::new("", e.to_string())])?;
    let mut unknown = Vec::new();
    unknown_fields(v, &back, "", &mut unknown);
    if unknown.is_empty() {
        Ok(obj)
    } else {
        Err(unknown)
    }
}

/// `strict` for a value nested at `path`, with the path prefixed to every error.
fn strict_at<T: DeserializeOwned + serde::Serialize>(
    v: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<T> {
    match strict::<T>(v) {
        Ok(t) => Some(t),
        Err(es) => {
            errs.extend(
                es.into_iter()
                    .map(|e| FieldError::new(join_path(path, &e.path), e.message)),
            );
            None
        }
    }
}

/// Lenient deserialization of the value at `path` (missing or null: `T::default()`).
fn view_at<T: DeserializeOwned + Default>(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> T {
    let mut cur = v;
    for key in path.split('.') {
        match cur.get(key) {
            Some(next) => cur = next,
            None => return T::default(),
        }
    }
    if cur.is_null() {
        return T::default();
    }
    match typed::<T>(cur) {
        Ok(t) => t,
        Err(e) => {
            errs.push(FieldError::new(join_path(path, &e.path), e.message));
            T::default()
        }
    }
}

/// Did an API server write this object? (See the module doc.)
pub(super) fn from_server(v: &Value) -> bool {
    let set = |x: Option<&Value>| x.is_some_and(|x| !x.is_null());
    let meta = v.get("metadata");
    set(v.get("status"))
        || ["uid", "resourceVersion", "generation", "managedFields"]
            .iter()
            .any(|k| set(meta.and_then(|m| m.get(*k))))
}

/// Only these keys exist at the top of an API object.
fn top_level(v: &Value, errs: &mut Vec<FieldError>) {
    if let Some(o) = v.as_object() {
        for k in o.keys() {
            if !matches!(
                k.as_str(),
                "apiVersion" | "kind" | "metadata" | "spec" | "status"
            ) {
                errs.push(FieldError::new(k.clone(), "unknown field"));
            }
        }
    }
}

/// `metadata`, strictly (ObjectMeta is stable and fully known).
fn metadata(v: &Value, errs: &mut Vec<FieldError>) -> ObjectMeta {
    match v.get("metadata") {
        None | Some(Value::Null) => ObjectMeta::default(),
        Some(m) => strict_at::<ObjectMeta>(m, "metadata", errs).unwrap_or_default(),
    }
}

fn owners(meta: &ObjectMeta) -> Vec<Owner> {
    meta.owner_references
        .iter()
        .flatten()
        // Only controllers own pods; an explicitly non-controlling reference does not.
        .filter(|o: &&OwnerReference| o.controller != Some(false))
        .map(|o| Owner {
            kind: o.kind.clone(),
            name: o.name.clone(),
        })
        .collect()
}

pub(super) fn labels_of(
    labels: Option<&BTreeMap<String, String>>,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Labels {
    let labels = labels.cloned().unwrap_or_default();
    for (k, v) in &labels {
        let p = join_path(path, k);
        if let Err(e) = names::label_key(k) {
            errs.push(FieldError::new(p.clone(), e.to_string()));
        }
        if let Err(e) = names::label_value(v) {
            errs.push(FieldError::new(p, e.to_string()));
        }
    }
    labels
}

fn check<T>(r: Result<T, names::Invalid>, path: &str, errs: &mut Vec<FieldError>) {
    if let Err(e) = r {
        errs.push(FieldError::new(path, e.to_string()));
    }
}

/// The parts of a pod spec netpolc reads.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSpecView {
    #[serde(default)]
    containers: Vec<ContainerView>,
    #[serde(default)]
    host_network: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ContainerView {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    ports: Option<Vec<Value>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodStatusView {
    #[serde(default)]
    phase: Option<String>,
    #[serde(rename = "podIP", default)]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs", default)]
    pod_ips: Option<Vec<PodIpView>>,
}

#[derive(Deserialize, Default)]
struct PodIpView {
    #[serde(default)]
    ip: String,
}

/// Container ports of `containers` (at `path`), validated as the API does: numbers 1-65535,
/// TCP/UDP/SCTP, IANA names unique within the pod.
fn container_ports(
    containers: &[ContainerView],
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<ContainerPort> {
    let mut out = Vec::new();
    let mut names_seen = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, raw) in c.ports.iter().flatten().enumerate() {
            let pp = format!("{path}[{i}].ports[{j}]");
            let Some(p) = strict_at::<k8s_openapi::api::core::v1::ContainerPort>(raw, &pp, errs)
            else {
                continue;
            };
            let Some(port) = u16::try_from(p.container_port).ok().filter(|n| *n != 0) else {
                errs.push(FieldError::new(
                    format!("{pp}.containerPort"),
                    format!("{} is not a valid port number (1-65535)", p.container_port),
                ));
                continue;
            };
            let protocol = match p.protocol.as_deref() {
                None => Protocol::Tcp,
                Some(s) => match s.parse::<Protocol>() {
                    Ok(proto) => proto,
                    Err(e) => {
                        errs.push(FieldError::new(format!("{pp}.protocol"), e.to_string()));
                        continue;
                    }
                },
            };
            if let Some(n) = &p.name {
                if let Err(e) = names::port_name(n) {
                    errs.push(FieldError::new(format!("{pp}.name"), e.to_string()));
                    continue;
                }
                if !names_seen.insert(n.clone()) {
                    errs.push(FieldError::new(
                        format!("{pp}.name"),
                        format!("port name {n:?} is used twice in this pod"),
                    ));
                    continue;
                }
            }
            out.push(ContainerPort {
                name: p.name.clone(),
                port,
                protocol,
            });
        }
    }
    out
}

fn first_image(
    containers: &[ContainerView],
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<String> {
    for (i, c) in containers.iter().enumerate() {
        if let Some(name) = &c.name {
            check(names::container(name), &format!("{path}[{i}].name"), errs);
        }
        if let Some(img) = &c.image {
            check(names::image(img), &format!("{path}[{i}].image"), errs);
        }
    }
    containers.first().and_then(|c| c.image.clone())
}

/// The pod's address as the API server reported it, with the field it came from.
fn pod_ip(status: &PodStatusView, errs: &mut Vec<FieldError>) -> Option<(IpAddr, String)> {
    let (raw, path) = match (&status.pod_ip, &status.pod_ips) {
        (Some(ip), _) if !ip.is_empty() => (ip.clone(), "status.podIP".to_string()),
        (_, Some(ips)) if !ips.is_empty() => (ips[0].ip.clone(), "status.podIPs[0].ip".to_string()),
        _ => return None,
    };
    let mut ok = true;
    for (i, extra) in status.pod_ips.iter().flatten().enumerate() {
        if extra.ip.parse::<IpAddr>().is_err() {
            errs.push(FieldError::new(
                format!("status.podIPs[{i}].ip"),
                format!("{:?} is not an IP address", extra.ip),
            ));
            ok = false;
        }
    }
    match raw.parse() {
        Ok(ip) if ok => Some((ip, path)),
        Ok(_) => None,
        Err(_) => {
            errs.push(FieldError::new(
                path,
                format!("{raw:?} is not an IP address"),
            ));
            None
        }
    }
}

/// Reads a `Namespace`.
/// A `kind: Service` (v1): ClusterIP Services are probed through (`--probe-mode`); headless,
/// `ExternalName` and selector-less ones are read with a warning and not probed.
pub(super) fn read_service(
    v: &Value,
    ctx: &DocCtx,
    base: &str,
    objs: &mut Objects,
) -> Vec<FieldError> {
    let svc: k8s_openapi::api::core::v1::Service = if from_server(v) {
        match typed(v) {
            Ok(s) => s,
            Err(e) => return vec![e],
        }
    } else {
        match strict(v) {
            Ok(s) => s,
            Err(e) => return e,
        }
    };
    let mut errs = Vec::new();
    let read = super::service_input::from_k8s(&svc, &mut errs);
    if errs.is_empty() {
        objs.add_service(
            read,
            Origin::new(ctx, base, &join_path(base, "metadata.name")),
        );
    }
    errs
}

pub(super) fn read_namespace(
    v: &Value,
    ctx: &DocCtx,
    base: &str,
    objs: &mut Objects,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !shape("Namespace", v, &mut errs) {
        return errs;
    }
    let meta = metadata(v, &mut errs);
    let name = meta.name.clone().unwrap_or_default();
    check(names::namespace(&name), "metadata.name", &mut errs);
    let labels = labels_of(meta.labels.as_ref(), "metadata.labels", &mut errs);
    if errs.is_empty() {
        let origin = Origin::new(ctx, base, &join_path(base, "metadata.name"));
        objs.namespaces.push((Namespace::new(name, labels), origin));
    }
    errs
}

/// Name and namespace of an object, validated (`kind` decides the name rule).
fn name_and_namespace(
    meta: &ObjectMeta,
    kind: &str,
    errs: &mut Vec<FieldError>,
) -> (String, String) {
    let name = meta.name.clone().unwrap_or_default();
    if name.is_empty() && meta.generate_name.is_some() {
        errs.push(FieldError::new(
            "metadata.name",
            "is required (netpolc cannot predict a name from generateName)",
        ));
    } else {
        check(
            if kind == "Pod" {
                names::pod(&name)
            } else {
                names::object(kind, &name)
            },
            "metadata.name",
            errs,
        );
    }
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    check(names::namespace(&namespace), "metadata.namespace", errs);
    (name, namespace)
}

/// Reads a `Pod`.
pub(super) fn read_pod(v: &Value, ctx: &DocCtx, base: &str, objs: &mut Objects) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let server = from_server(v);
    if !shape("Pod", v, &mut errs) {
        return errs;
    }
    let meta = metadata(v, &mut errs);
    let (name, namespace) = name_and_namespace(&meta, "Pod", &mut errs);
    let labels = labels_of(meta.labels.as_ref(), "metadata.labels", &mut errs);
    let spec: PodSpecView = view_at(v, "spec", &mut errs);
    let status: PodStatusView = view_at(v, "status", &mut errs);
    let ports = container_ports(&spec.containers, "spec.containers", &mut errs);
    let image = first_image(&spec.containers, "spec.containers", &mut errs);
    let ip = pod_ip(&status, &mut errs);
    if !errs.is_empty() {
        return errs;
    }
    let left_out = left_out_reason(spec.host_network == Some(true), status.phase.as_deref());
    let origin = Origin::new(ctx, base, &join_path(base, "metadata.name"));
    let ip = ip.map(|(ip, field)| {
        let field = join_path(base, &field);
        let line = ctx.line(&field);
        (ip, field, line)
    });
    objs.pods.push(PodObj {
        pod: Pod {
            namespace,
            name,
            labels,
            ip: IpAddr::from([0, 0, 0, 0]),
            ports,
            image,
            workload: Workload::Pod,
        },
        ip,
        origin,
        owners: owners(&meta),
        left_out,
        from_server: server,
    });
    errs
}

/// Why a pod is not part of the NetworkPolicy model, if it is not: it shares the node's address
/// (`hostNetwork`; several such pods share one, and NetworkPolicy does not govern them like pod
/// traffic) or it has finished (its address is released and may have gone to another pod). One
/// rule for dumps and for `audit`'s live snapshot, so both leave out the same pods.
pub fn left_out_reason(host_network: bool, phase: Option<&str>) -> Option<String> {
    if host_network {
        return Some(
            "host network (hostNetwork: true): its address is the node's, and NetworkPolicy \
             does not govern it like pod traffic"
                .to_string(),
        );
    }
    match phase {
        Some(phase @ ("Succeeded" | "Failed")) => Some(format!(
            "finished ({phase}): it runs nothing, and its address may belong to another pod by now"
        )),
        _ => None,
    }
}

/// The workload kinds read like a Deployment, with their apiVersion.
pub(super) const WORKLOAD_KINDS: [(&str, &str); 7] = [
    ("Deployment", "apps/v1"),
    ("StatefulSet", "apps/v1"),
    ("DaemonSet", "apps/v1"),
    ("ReplicaSet", "apps/v1"),
    ("ReplicationController", "v1"),
    ("Job", "batch/v1"),
    ("CronJob", "batch/v1"),
];

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TemplateView {
    #[serde(default)]
    metadata: Option<TemplateMetaView>,
    #[serde(default)]
    spec: Option<PodSpecView>,
}

#[derive(Deserialize, Default)]
struct TemplateMetaView {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Checks a hand-written object against its full API type (unknown fields, wrong types) or a
/// server-written one against the keys every API object has. Returns whether it passed.
fn shape(kind: &str, v: &Value, errs: &mut Vec<FieldError>) -> bool {
    if from_server(v) {
        let before = errs.len();
        top_level(v, errs);
        return errs.len() == before;
    }
    fn ok<T>(r: Option<T>) -> bool {
        r.is_some()
    }
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    match kind {
        "Namespace" => ok(strict_at::<core::Namespace>(v, "", errs)),
        "Pod" => ok(strict_at::<core::Pod>(v, "", errs)),
        "Deployment" => ok(strict_at::<apps::Deployment>(v, "", errs)),
        "StatefulSet" => ok(strict_at::<apps::StatefulSet>(v, "", errs)),
        "DaemonSet" => ok(strict_at::<apps::DaemonSet>(v, "", errs)),
        "ReplicaSet" => ok(strict_at::<apps::ReplicaSet>(v, "", errs)),
        "ReplicationController" => ok(strict_at::<core::ReplicationController>(v, "", errs)),
        "Job" => ok(strict_at::<batch::Job>(v, "", errs)),
        "CronJob" => ok(strict_at::<batch::CronJob>(v, "", errs)),
        _ => true,
    }
}

/// A workload's pod selector, validated like any selector: a label map for a
/// ReplicationController, a `LabelSelector` for the others. `None` when absent.
fn workload_selector(
    kind: &str,
    v: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Selector> {
    if kind == "ReplicationController" {
        let map: Option<BTreeMap<String, String>> = view_at(v, path, errs);
        let map = map?;
        labels_of(Some(&map), path, errs);
        let sel = LabelSelector {
            match_labels: Some(map),
            ..Default::default()
        };
        return Some(Selector::compile(&sel, path, errs));
    }
    let sel: Option<LabelSelector> = view_at(v, path, errs);
    sel.map(|s| Selector::compile(&s, path, errs))
}

/// Reads a workload (one of [`WORKLOAD_KINDS`]).
pub(super) fn read_workload(
    kind: &'static str,
    v: &Value,
    ctx: &DocCtx,
    base: &str,
    objs: &mut Objects,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let server = from_server(v);
    if !shape(kind, v, &mut errs) {
        return errs;
    }
    let meta = metadata(v, &mut errs);
    let (name, namespace) = name_and_namespace(&meta, kind, &mut errs);
    labels_of(meta.labels.as_ref(), "metadata.labels", &mut errs);
    let template_path = if kind == "CronJob" {
        "spec.jobTemplate.spec.template"
    } else {
        "spec.template"
    };
    let replicas = match kind {
        "DaemonSet" | "Job" | "CronJob" => 1,
        _ => {
            let raw: Option<i64> = view_at(v, "spec.replicas", &mut errs);
            match raw {
                None => 1,
                Some(n) if n < 0 => {
                    errs.push(FieldError::new(
                        "spec.replicas",
                        "must be greater than or equal to 0",
                    ));
                    0
                }
                Some(n) if n as u64 > MAX_REPLICAS => {
                    errs.push(FieldError::new(
                        "spec.replicas",
                        format!("{n} is more than netpolc's limit of {MAX_REPLICAS} replicas"),
                    ));
                    0
                }
                Some(n) => n as u32,
            }
        }
    };
    let template: TemplateView = view_at(v, template_path, &mut errs);
    let selector_path = if kind == "CronJob" {
        "spec.jobTemplate.spec.selector"
    } else {
        "spec.selector"
    };
    let selector = workload_selector(kind, v, selector_path, &mut errs);
    let spec = template.spec.unwrap_or_default();
    let containers_path = format!("{template_path}.spec.containers");
    let ports = container_ports(&spec.containers, &containers_path, &mut errs);
    let image = first_image(&spec.containers, &containers_path, &mut errs);
    let labels = labels_of(
        template.metadata.and_then(|m| m.labels).as_ref(),
        &format!("{template_path}.metadata.labels"),
        &mut errs,
    );
    // As the API requires, the selector must select the pods the template makes.
    if let Some(sel) = selector
        && errs.is_empty()
        && !sel.matches(&labels)
    {
        errs.push(FieldError::new(
            format!("{template_path}.metadata.labels"),
            format!("`selector` does not match the template's labels (selector: {sel})"),
        ));
    }
    // The pods it stands for must have valid names too (`<name>-<replicas-1>` is the longest).
    if errs.is_empty()
        && replicas > 0
        && let Err(e) = names::pod(&format!("{name}-{}", replicas - 1))
    {
        errs.push(FieldError::new(
            "metadata.name",
            format!("the names of the pods it stands for ({name}-0…) are invalid: {e}"),
        ));
    }
    if !errs.is_empty() {
        return errs;
    }
    objs.workloads.push(WorkloadObj {
        kind,
        namespace,
        name,
        owners: owners(&meta),
        replicas,
        labels,
        ports,
        image,
        host_network: spec.host_network == Some(true),
        from_server: server,
        origin: Origin::new(ctx, base, &join_path(base, "metadata.name")),
    });
    errs
}

/// Reads a `NetworkPolicy`: always strict (its spec is what the oracle evaluates); a `status`
/// written by older API servers is ignored.
pub(super) fn read_network_policy(
    v: &Value,
    ctx: &DocCtx,
    base: &str,
    objs: &mut Objects,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    let Some(np) = strict_at::<k8s_openapi::api::networking::v1::NetworkPolicy>(&v, "", &mut errs)
    else {
        return errs;
    };
    if !errs.is_empty() {
        return errs;
    }
    match CompiledPolicy::compile(&np, "default") {
        Ok(cp) => {
            for w in &cp.warnings {
                objs.warnings.push("policy", ctx.field(base, w));
            }
            let origin = Origin::new(ctx, base, &join_path(base, "metadata.name"));
            objs.policies.push((cp, origin));
        }
        Err(e) => errs.extend(e),
    }
    errs
}

/// The state a step starts from and ends in.
#[derive(Clone)]
pub(super) struct State {
    pub model: Model,
    pub policies: BTreeMap<PolicyRef, CompiledPolicy>,
    pub cluster: BTreeMap<ClusterPolicyRef, ClusterPolicy>,
}

type WorkloadKey = (String, String, String);

fn key(namespace: &str, kind: &str, name: &str) -> WorkloadKey {
    (namespace.to_string(), kind.to_string(), name.to_string())
}

/// Marks every workload `owners` lead to (directly, or through ReplicaSets and Jobs) as covered.
/// Iterative, and each workload is entered once, so long or cyclic owner chains cost nothing.
fn cover(
    namespace: &str,
    owners: &[Owner],
    labels: &Labels,
    workloads: &[WorkloadObj],
    index: &HashMap<WorkloadKey, usize>,
    covered: &mut [bool],
) {
    let mut stack: Vec<(&[Owner], &Labels)> = vec![(owners, labels)];
    while let Some((owners, labels)) = stack.pop() {
        for o in owners {
            let found = index
                .get(&key(namespace, &o.kind, &o.name))
                .copied()
                .or_else(|| inferred_owner(namespace, o, labels, index));
            if let Some(i) = found
                && !covered[i]
            {
                covered[i] = true;
                stack.push((&workloads[i].owners, &workloads[i].labels));
            }
        }
    }
}

/// The Deployment or CronJob behind an owner missing from the input, from the names their
/// controllers give: a Deployment's ReplicaSet is `<deployment>-<pod-template-hash>` (the hash
/// is also the pods' `pod-template-hash` label), a CronJob's Job is `<cronjob>-<minutes>`. So a
/// dump of `pods,deploy` without ReplicaSets still counts each pod once.
fn inferred_owner(
    namespace: &str,
    o: &Owner,
    labels: &Labels,
    index: &HashMap<WorkloadKey, usize>,
) -> Option<usize> {
    match o.kind.as_str() {
        "ReplicaSet" => {
            let hash = labels.get("pod-template-hash")?;
            let deployment = o.name.strip_suffix(hash.as_str())?.strip_suffix('-')?;
            index
                .get(&key(namespace, "Deployment", deployment))
                .copied()
        }
        "Job" => {
            let (cronjob, minutes) = o.name.rsplit_once('-')?;
            (!minutes.is_empty() && minutes.bytes().all(|b| b.is_ascii_digit()))
                .then(|| index.get(&key(namespace, "CronJob", cronjob)).copied())
                .flatten()
        }
        _ => None,
    }
}

/// Resolves objects into a model: real pods, plus pods synthesised for workloads no real object
/// stands for; undeclared namespaces; addresses allocated; duplicates and limits refused.
pub(super) fn resolve(objs: Objects, errors: &mut Vec<InputError>) -> (State, Warnings) {
    let Objects {
        namespaces,
        pods: read_pods,
        workloads,
        policies: read_policies,
        services: read_services,
        cluster: read_cluster,
        mut warnings,
    } = objs;
    let mut model = Model::default();
    for (ns, origin) in namespaces {
        if model.namespaces.contains_key(&ns.name) {
            errors.push(origin.name_error(format!("namespace {:?} is declared twice", ns.name)));
        }
        model.namespaces.insert(ns.name.clone(), ns);
    }

    let mut index: HashMap<WorkloadKey, usize> = HashMap::new();
    for (i, w) in workloads.iter().enumerate() {
        if index
            .insert(key(&w.namespace, w.kind, &w.name), i)
            .is_some()
        {
            errors.push(w.origin.name_error(format!(
                "{} {}/{} is declared twice",
                w.kind, w.namespace, w.name
            )));
        }
    }
    let mut covered = vec![false; workloads.len()];
    for p in &read_pods {
        cover(
            &p.pod.namespace,
            &p.owners,
            &p.pod.labels,
            &workloads,
            &index,
            &mut covered,
        );
    }
    for w in &workloads {
        cover(
            &w.namespace,
            &w.owners,
            &w.labels,
            &workloads,
            &index,
            &mut covered,
        );
    }

    // Counted before anything is allocated for them.
    let real = read_pods.iter().filter(|p| p.left_out.is_none()).count();
    let synthesised: u64 = workloads
        .iter()
        .zip(&covered)
        .filter(|(w, c)| !**c && !w.host_network)
        .map(|(w, _)| u64::from(w.replicas))
        .sum();
    if real as u64 + synthesised > MAX_PODS as u64 {
        let at = read_pods
            .first()
            .map(|p| &p.origin)
            .or(workloads.first().map(|w| &w.origin));
        let message = format!(
            "the model has {} pods ({real} pods and {synthesised} workload replicas), more \
             than netpolc's limit of {MAX_PODS}",
            real as u64 + synthesised
        );
        errors.push(match at {
            Some(o) => o.error(message),
            None => InputError::file("<model>", message),
        });
        return (
            State {
                model,
                policies: BTreeMap::new(),
                cluster: BTreeMap::new(),
            },
            warnings,
        );
    }

    let mut pods: Vec<PodObj> = Vec::with_capacity(real + synthesised as usize);
    for p in read_pods {
        match &p.left_out {
            Some(why) => warnings.push(
                "pods left out",
                p.origin.name_error(format!(
                    "pod {} is left out of the model: {why}",
                    p.pod.pod_ref()
                )),
            ),
            None => {
                if p.ip.is_none() && p.from_server {
                    warnings.push(
                        "pods without an address",
                        p.origin.name_error(format!(
                            "pod {} has no address in its status (not scheduled yet?): it gets \
                             one from 10.244.0.0/16, which ipBlock rules may judge differently \
                             from the cluster",
                            p.pod.pod_ref()
                        )),
                    );
                }
                pods.push(p);
            }
        }
    }
    for (w, c) in workloads.iter().zip(&covered) {
        if *c || w.replicas == 0 {
            continue;
        }
        if w.host_network {
            warnings.push(
                "pods left out",
                w.origin.name_error(format!(
                    "the pods of {} {}/{} are left out of the model: they use the node's network \
                     (hostNetwork: true), which NetworkPolicy does not govern like pod traffic",
                    w.kind, w.namespace, w.name
                )),
            );
            continue;
        }
        if w.from_server {
            warnings.push(
                "workloads without pods",
                w.origin.name_error(format!(
                    "{} {}/{}: no pod of it is in the input, so its {} replica(s) are \
                     synthesised ({}-0…) with addresses from 10.244.0.0/16",
                    w.kind, w.namespace, w.name, w.replicas, w.name
                )),
            );
        }
        for r in 0..w.replicas {
            pods.push(PodObj {
                pod: Pod {
                    namespace: w.namespace.clone(),
                    name: format!("{}-{r}", w.name),
                    labels: w.labels.clone(),
                    ip: IpAddr::from([0, 0, 0, 0]),
                    ports: w.ports.clone(),
                    image: w.image.clone(),
                    workload: Workload::Deployment {
                        name: w.name.clone(),
                        replica: r,
                    },
                },
                ip: None,
                origin: w.origin.clone(),
                owners: Vec::new(),
                left_out: None,
                from_server: false,
            });
        }
    }

    let mut by_ref: BTreeMap<PodRef, PodObj> = BTreeMap::new();
    for p in pods {
        let r = p.pod.pod_ref();
        if by_ref.contains_key(&r) {
            errors.push(p.origin.name_error(format!("pod {r} is declared twice")));
            continue;
        }
        by_ref.insert(r, p);
    }
    let mut slots: Vec<(PodRef, Option<IpAddr>)> = by_ref
        .iter()
        .map(|(r, p)| (r.clone(), p.ip.as_ref().map(|x| x.0)))
        .collect();
    let ips = allocate_ips(&mut slots);
    let mut seen: BTreeMap<IpAddr, PodRef> = BTreeMap::new();
    for ((r, p), ip) in by_ref.into_iter().zip(ips) {
        if let Some(other) = seen.get(&ip) {
            let message = format!("address {ip} is already the address of pod {other}");
            errors.push(match &p.ip {
                Some((_, field, line)) => p.origin.at(field, *line, message),
                None => p.origin.name_error(message),
            });
            continue;
        }
        seen.insert(ip, r.clone());
        let mut pod = p.pod;
        pod.ip = ip;
        model
            .namespaces
            .entry(pod.namespace.clone())
            .or_insert_with(|| Namespace::new(pod.namespace.clone(), Labels::new()));
        model.pods.insert(r, pod);
    }
    let mut seen_services = BTreeSet::new();
    for (s, origin) in read_services {
        model
            .namespaces
            .entry(s.namespace.clone())
            .or_insert_with(|| Namespace::new(s.namespace.clone(), Labels::new()));
        if !seen_services.insert((s.namespace.clone(), s.name.clone())) {
            errors.push(origin.name_error(format!(
                "Service {}/{} is declared twice",
                s.namespace, s.name
            )));
            continue;
        }
        if !s.cluster_ip.is_unspecified()
            && let Some(other) = model.services.iter().find(|o| o.cluster_ip == s.cluster_ip)
        {
            errors.push(origin.error(format!(
                "Services {}/{} and {}/{} have the same clusterIP {}",
                other.namespace, other.name, s.namespace, s.name, s.cluster_ip
            )));
            continue;
        }
        model.services.push(s);
    }
    let mut policies = BTreeMap::new();
    for (p, origin) in read_policies {
        model
            .namespaces
            .entry(p.key.namespace.clone())
            .or_insert_with(|| Namespace::new(p.key.namespace.clone(), Labels::new()));
        if policies.contains_key(&p.key) {
            errors.push(origin.name_error(format!("NetworkPolicy {} is declared twice", p.key)));
        }
        policies.insert(p.key.clone(), p);
    }
    debug_assert!(
        model
            .namespaces
            .values()
            .all(|n| n.labels.get(NAMESPACE_NAME_LABEL) == Some(&n.name))
    );
    let mut cluster = BTreeMap::new();
    for (p, origin) in read_cluster {
        if cluster.contains_key(&p.key) {
            errors.push(origin.name_error(format!("{} is declared twice", p.key)));
        }
        cluster.insert(p.key.clone(), p);
    }
    (
        State {
            model,
            policies,
            cluster,
        },
        warnings,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_written_objects_are_recognised_by_status_or_server_metadata() {
        let hand = serde_json::json!({"kind": "Pod", "metadata": {"name": "a", "creationTimestamp": null}});
        assert!(!from_server(&hand));
        for served in [
            serde_json::json!({"metadata": {"name": "a"}, "status": {}}),
            serde_json::json!({"metadata": {"name": "a", "uid": "u"}}),
            serde_json::json!({"metadata": {"name": "a", "resourceVersion": "1"}}),
            serde_json::json!({"metadata": {"name": "a", "managedFields": []}}),
        ] {
            assert!(from_server(&served), "{served}");
        }
        // `status: null` is what a hand-written template often carries; it says nothing.
        assert!(!from_server(
            &serde_json::json!({"metadata": {}, "status": null})
        ));
    }

    #[test]
    fn missing_replicasets_and_jobs_are_inferred_from_their_names() {
        let index: HashMap<WorkloadKey, usize> = HashMap::from([
            (key("shop", "Deployment", "web"), 0),
            (key("ops", "CronJob", "backup"), 1),
        ]);
        let owner = |kind: &str, name: &str| Owner {
            kind: kind.into(),
            name: name.into(),
        };
        let hashed = Labels::from([("pod-template-hash".to_string(), "5d9c7b".to_string())]);
        let none = Labels::new();
        assert_eq!(
            inferred_owner("shop", &owner("ReplicaSet", "web-5d9c7b"), &hashed, &index),
            Some(0)
        );
        // Without the pod's hash label, or with another hash, nothing is guessed.
        assert_eq!(
            inferred_owner("shop", &owner("ReplicaSet", "web-5d9c7b"), &none, &index),
            None
        );
        assert_eq!(
            inferred_owner("shop", &owner("ReplicaSet", "web-aaaaaa"), &hashed, &index),
            None
        );
        // Owners live in the dependent's namespace.
        assert_eq!(
            inferred_owner("ops", &owner("ReplicaSet", "web-5d9c7b"), &hashed, &index),
            None
        );
        assert_eq!(
            inferred_owner("ops", &owner("Job", "backup-29397600"), &none, &index),
            Some(1)
        );
        assert_eq!(
            inferred_owner("ops", &owner("Job", "backup-manual"), &none, &index),
            None
        );
        assert_eq!(
            inferred_owner("ops", &owner("Job", "backup-"), &none, &index),
            None
        );
    }

    #[test]
    fn warnings_are_capped_per_kind_and_file() {
        let mut w = Warnings::default();
        for i in 0..8 {
            w.push("kind Service", InputError::file("a.yaml", format!("w{i}")));
        }
        w.push("kind Service", InputError::file("b.yaml", "other file"));
        let out = w.into_vec();
        assert_eq!(out.len(), 5 + 1 + 1, "{out:?}");
        assert!(
            out.iter()
                .any(|e| e.message == "… and 3 more warnings like these (kind Service)")
        );
    }
}
