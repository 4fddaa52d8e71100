//! Reading scenario files and plain manifests into resolved [`Scenario`]s.
//!
//! YAML is parsed untyped first (YAML 1.2 booleans, so a namespace called `y` stays a string), then
//! deserialized into the real API types with the field path of any error, then validated the way
//! the API server would. Errors carry file, document index, field path and line.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace as K8sNamespace, Pod as K8sPod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{
    ContainerPort, Labels, Model, Namespace, Pod, PodRef, Probe, Protocol, Workload,
};
use crate::policy::compile::{is_dns_label, is_dns_subdomain, is_port_name};
use crate::policy::selector::{check_label_key, check_label_value};
use crate::policy::{
    ClusterKind, ClusterPolicy, ClusterPolicyRef, CompiledPolicy, FieldError, PolicyRef,
};
use crate::truthtable::TruthTable;

use super::format::{
    AllowWord, ExpectationSpec, ModelSpec, PortSpecYaml, SCENARIO_API_VERSION, ScenarioFile,
    StepSpec,
};
use super::yamlpos::line_of;
use super::{Change, Expectation, InputError, InputErrors, Scenario, Step, allocate_ips};

/// What loading produced: the scenarios, and warnings (ignored kinds, CIDRs with host bits…).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub scenarios: Vec<Scenario>,
    pub warnings: Vec<InputError>,
}

/// Loads every path: files as given, directories recursively (`*.yaml`/`*.yml`, sorted).
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded, InputErrors> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_dir() {
            collect_dir(p, &mut files, &mut errors);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            errors.push(InputError::file(p, "no such file or directory"));
        }
    }
    let mut out = Loaded::default();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => match load_file_text(&text, &f) {
                Ok(l) => {
                    out.scenarios.extend(l.scenarios);
                    out.warnings.extend(l.warnings);
                }
                Err(e) => errors.extend(e.0),
            },
            Err(e) => errors.push(InputError::file(&f, format!("cannot read: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(InputErrors(errors))
    }
}

/// Loads one file's text; `source` names it in errors and reports.
pub fn load_str(text: &str, source: impl AsRef<Path>) -> Result<Loaded, InputErrors> {
    load_file_text(text, source.as_ref())
}

fn collect_dir(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<InputError>) {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            errors.push(InputError::file(dir, format!("cannot read directory: {e}")));
            return;
        }
    };
    entries.sort();
    for e in entries {
        if e.is_dir() {
            collect_dir(&e, files, errors);
        } else if matches!(e.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
            files.push(e);
        }
    }
}

/// One YAML document of a file: where it starts and its untyped content.
struct Doc {
    index: usize,
    /// 1-based line of the document's first line in the file.
    first_line: usize,
    text: String,
    value: Value,
}

/// Context for errors about one document.
struct DocCtx<'a> {
    file: &'a Path,
    index: usize,
    first_line: usize,
    text: &'a str,
}

impl DocCtx<'_> {
    /// An error at a field path inside this document (line looked up from the path). `base` is the
    /// path of the object inside the document (e.g. `steps[1].apply[0]`) when it is nested.
    fn field(&self, base: &str, fe: &FieldError) -> InputError {
        let path = join_path(base, &fe.path);
        let line = line_of(self.text, &path).map(|l| l + self.first_line - 1);
        InputError {
            file: self.file.to_path_buf(),
            document: Some(self.index),
            // A whole-document problem (not a mapping) has no field to name.
            field: (!path.is_empty()).then_some(path),
            line: line.or(Some(self.first_line)),
            column: None,
            message: fe.message.clone(),
        }
    }
}

fn join_path(base: &str, path: &str) -> String {
    match (base.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => base.to_string(),
        (false, false) if path.starts_with('[') => format!("{base}{path}"),
        _ => format!("{base}.{path}"),
    }
}

/// Splits on `---` lines, keeping each document's first line; then parses each as untyped YAML.
fn parse_documents(text: &str, file: &Path) -> Result<Vec<Doc>, InputErrors> {
    let mut chunks: Vec<(usize, String)> = vec![(1, String::new())];
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            // Keep inline content after the marker (`--- {a: 1}`) on the new document's first line.
            chunks.push((i + 1, format!("{}\n", line[3..].trim_start())));
        } else if line == "..." {
            chunks.push((i + 2, String::new()));
        } else if let Some(last) = chunks.last_mut() {
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    let options = serde_saphyr::options! {
        strict_booleans: true,
    };
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let mut index = 0;
    for (first_line, chunk) in chunks {
        let meaningful = chunk.lines().any(|l| {
            !l.trim().is_empty() && !l.trim_start().starts_with('#') && !l.starts_with('%')
        });
        if !meaningful {
            continue;
        }
        match serde_saphyr::from_str_with_options::<Value>(&chunk, options.clone()) {
            Ok(Value::Null) => {}
            Ok(value) => docs.push(Doc {
                index,
                first_line,
                text: chunk,
                value,
            }),
            Err(e) => {
                let loc = e.location();
                errors.push(InputError {
                    file: file.to_path_buf(),
                    document: Some(index),
                    field: None,
                    line: loc
                        .map(|l| l.line() as usize + first_line - 1)
                        .or(Some(first_line)),
                    column: loc.map(|l| l.column() as usize),
                    message: format!("malformed YAML: {}", yaml_message(&e.to_string())),
                });
            }
        }
        index += 1;
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(InputErrors(errors))
    }
}

fn first_line_of(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// The parser's message without its own `error: line L column C: ` prefix, which the error's
/// location already says (with the line counted in the whole file, not the document).
fn yaml_message(s: &str) -> &str {
    let first = first_line_of(s);
    let rest = first.strip_prefix("error: ").unwrap_or(first);
    match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((loc, msg)) if loc.contains("column") => msg,
        _ => rest,
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn load_file_text(text: &str, file: &Path) -> Result<Loaded, InputErrors> {
    let docs = parse_documents(text, file)?;
    let is_scenario = |d: &Doc| {
        str_field(&d.value, "apiVersion").is_some_and(|v| v.starts_with("netpolc"))
            || str_field(&d.value, "kind") == Some("Scenario")
    };
    if let Some(first) = docs.iter().find(|d| is_scenario(d)) {
        if docs.len() > 1 {
            return Err(InputError {
                file: file.to_path_buf(),
                document: Some(first.index),
                field: None,
                line: Some(first.first_line),
                column: None,
                message: "a scenario file holds exactly one document (put manifests in their own \
                          files and list them under model.manifests)"
                    .into(),
            }
            .into());
        }
        return load_scenario(first, file);
    }
    if docs.is_empty() {
        return Err(InputError::file(file, "no YAML documents found").into());
    }
    load_manifest_scenario(&docs, file)
}

/// Objects read from manifests, before resolution into a model.
#[derive(Default)]
struct Objects {
    namespaces: Vec<(Namespace, Origin)>,
    pods: Vec<(Pod, Option<IpAddr>, Origin)>,
    policies: Vec<(CompiledPolicy, Origin)>,
    cluster: Vec<(ClusterPolicy, Origin)>,
    warnings: Vec<InputError>,
}

/// Where an object was written, for errors found later (duplicates, unknown references).
#[derive(Clone)]
struct Origin {
    file: PathBuf,
    document: usize,
    line: usize,
    field: String,
    /// Path of the object's name (`metadata.name` in manifests, `name` in scenario models), where
    /// errors about the object as a whole (duplicates) point.
    name_field: String,
}

impl Origin {
    fn error(&self, message: impl Into<String>) -> InputError {
        InputError {
            file: self.file.clone(),
            document: Some(self.document),
            field: (!self.field.is_empty()).then(|| self.field.clone()),
            line: Some(self.line),
            column: None,
            message: message.into(),
        }
    }

    fn name_error(&self, message: impl Into<String>) -> InputError {
        InputError {
            field: Some(self.name_field.clone()),
            ..self.error(message)
        }
    }
}

/// Deserializes an untyped value into `T`, reporting the field path of a failure.
fn typed<T: DeserializeOwned>(v: &Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize::<_, T>(v.clone()).map_err(|e| {
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
                    // Empty maps/lists may be dropped by the round trip without meaning anything.
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

const KINDS: [(&str, &str); 4] = [
    ("Namespace", "v1"),
    ("Pod", "v1"),
    ("Deployment", "apps/v1"),
    ("NetworkPolicy", "networking.k8s.io/v1"),
];

/// Reads one manifest document (or an object nested in a scenario at `base`) into `objs`.
fn read_object(
    v: &Value,
    ctx: &DocCtx,
    base: &str,
    objs: &mut Objects,
    errors: &mut Vec<InputError>,
) {
    let origin = Origin {
        file: ctx.file.to_path_buf(),
        document: ctx.index,
        line: line_of(ctx.text, base)
            .map(|l| l + ctx.first_line - 1)
            .unwrap_or(ctx.first_line),
        field: base.to_string(),
        name_field: join_path(base, "metadata.name"),
    };
    let Some(kind) = str_field(v, "kind") else {
        errors.push(ctx.field(base, &FieldError::new("kind", "is required")));
        return;
    };
    if let Some(ck) = ClusterKind::from_kind(kind) {
        match super::cluster::read(v, ck) {
            Ok(cp) => {
                let warnings = cp.warnings.iter().map(|w| ctx.field(base, w));
                objs.warnings.extend(warnings);
                objs.cluster.push((cp, origin));
            }
            Err(e) => errors.extend(e.iter().map(|e| ctx.field(base, e))),
        }
        return;
    }
    let Some(&(_, want_api)) = KINDS.iter().find(|(k, _)| *k == kind) else {
        objs.warnings.push(origin.error(format!(
            "kind {kind:?} is ignored (only Namespace, Pod, Deployment, NetworkPolicy and the \
             cluster-wide policy kinds are used)"
        )));
        return;
    };
    let api = str_field(v, "apiVersion").unwrap_or("");
    if api != want_api {
        errors.push(ctx.field(
            base,
            &FieldError::new(
                "apiVersion",
                format!("{kind} must have apiVersion {want_api:?}, found {api:?}"),
            ),
        ));
        return;
    }
    let fail = |errs: Vec<FieldError>, errors: &mut Vec<InputError>| {
        errors.extend(errs.iter().map(|e| ctx.field(base, e)));
    };
    match kind {
        "Namespace" => match strict::<K8sNamespace>(v) {
            Ok(ns) => {
                let name = ns.metadata.name.clone().unwrap_or_default();
                let mut errs = Vec::new();
                if !is_dns_label(&name) {
                    errs.push(FieldError::new(
                        "metadata.name",
                        format!("{name:?} is not a valid namespace name (lower-case DNS label)"),
                    ));
                }
                let labels = labels_of(ns.metadata.labels.as_ref(), "metadata.labels", &mut errs);
                if errs.is_empty() {
                    objs.namespaces.push((Namespace::new(name, labels), origin));
                } else {
                    fail(errs, errors);
                }
            }
            Err(e) => fail(e, errors),
        },
        "Pod" => match strict::<K8sPod>(v) {
            Ok(p) => {
                let mut errs = Vec::new();
                let containers = p
                    .spec
                    .as_ref()
                    .map(|s| s.containers.as_slice())
                    .unwrap_or(&[]);
                let ports = container_ports(containers, "spec.containers", &mut errs);
                let ip = pod_ip(&p, &mut errs);
                let image = containers.first().and_then(|c| c.image.clone());
                match pod_from_meta(
                    &p.metadata,
                    "metadata",
                    ports,
                    image,
                    Workload::Pod,
                    &mut errs,
                ) {
                    Some(pod) if errs.is_empty() => objs.pods.push((pod, ip, origin)),
                    _ => fail(errs, errors),
                }
            }
            Err(e) => fail(e, errors),
        },
        "Deployment" => match strict::<Deployment>(v) {
            Ok(d) => {
                let mut errs = Vec::new();
                let name = d.metadata.name.clone().unwrap_or_default();
                let ns = d
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let spec = Some(&d.spec);
                let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
                if replicas < 0 {
                    errs.push(FieldError::new(
                        "spec.replicas",
                        "must be greater than or equal to 0",
                    ));
                }
                let tmpl = spec.map(|s| &s.template);
                let containers = tmpl
                    .and_then(|t| t.spec.as_ref())
                    .map(|s| s.containers.as_slice())
                    .unwrap_or(&[]);
                let ports = container_ports(containers, "spec.template.spec.containers", &mut errs);
                let image = containers.first().and_then(|c| c.image.clone());
                let labels = labels_of(
                    tmpl.and_then(|t| t.metadata.as_ref())
                        .and_then(|m| m.labels.as_ref()),
                    "spec.template.metadata.labels",
                    &mut errs,
                );
                if !is_dns_subdomain(&name) {
                    errs.push(FieldError::new(
                        "metadata.name",
                        format!("{name:?} is not a valid name (lower-case DNS subdomain)"),
                    ));
                }
                if !errs.is_empty() {
                    fail(errs, errors);
                    return;
                }
                for i in 0..replicas.max(0) as u32 {
                    let pod = Pod {
                        namespace: ns.clone(),
                        name: format!("{name}-{i}"),
                        labels: labels.clone(),
                        ip: IpAddr::from([0, 0, 0, 0]),
                        ports: ports.clone(),
                        image: image.clone(),
                        workload: Workload::Deployment {
                            name: name.clone(),
                            replica: i,
                        },
                    };
                    objs.pods.push((pod, None, origin.clone()));
                }
            }
            Err(e) => fail(e, errors),
        },
        "NetworkPolicy" => match strict::<NetworkPolicy>(v) {
            Ok(np) => match CompiledPolicy::compile(&np, "default") {
                Ok(cp) => {
                    objs.warnings
                        .extend(cp.warnings.iter().map(|w| ctx.field(base, w)));
                    objs.policies.push((cp, origin));
                }
                Err(e) => fail(e, errors),
            },
            Err(e) => fail(e, errors),
        },
        _ => {}
    }
}

fn labels_of(
    labels: Option<&BTreeMap<String, String>>,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Labels {
    let labels = labels.cloned().unwrap_or_default();
    for (k, v) in &labels {
        check_label_key(k, &format!("{path}.{k}"), errs);
        check_label_value(v, &format!("{path}.{k}"), errs);
    }
    labels
}

fn pod_from_meta(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    path: &str,
    ports: Vec<ContainerPort>,
    image: Option<String>,
    workload: Workload,
    errs: &mut Vec<FieldError>,
) -> Option<Pod> {
    let name = meta.name.clone().unwrap_or_default();
    if !is_dns_subdomain(&name) {
        errs.push(FieldError::new(
            format!("{path}.name"),
            format!("{name:?} is not a valid pod name (lower-case DNS subdomain)"),
        ));
    }
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    if !is_dns_label(&namespace) {
        errs.push(FieldError::new(
            format!("{path}.namespace"),
            format!("{namespace:?} is not a valid namespace name"),
        ));
    }
    let labels = labels_of(meta.labels.as_ref(), &format!("{path}.labels"), errs);
    Some(Pod {
        namespace,
        name,
        labels,
        ip: IpAddr::from([0, 0, 0, 0]),
        ports,
        image,
        workload,
    })
}

fn container_ports(
    containers: &[Container],
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<ContainerPort> {
    let mut out = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let pp = format!("{path}[{i}].ports[{j}]");
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
            if let Some(n) = &p.name
                && !is_port_name(n)
            {
                errs.push(FieldError::new(
                    format!("{pp}.name"),
                    format!(
                        "{n:?} is not a valid port name (1-15 lower-case alphanumerics or '-')"
                    ),
                ));
                continue;
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

fn pod_ip(p: &K8sPod, errs: &mut Vec<FieldError>) -> Option<IpAddr> {
    let status = p.status.as_ref()?;
    let (raw, path) = match (&status.pod_ip, &status.pod_ips) {
        (Some(ip), _) => (ip.clone(), "status.podIP".to_string()),
        (None, Some(ips)) if !ips.is_empty() => {
            (ips[0].ip.clone(), "status.podIPs[0].ip".to_string())
        }
        _ => return None,
    };
    match raw.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            errs.push(FieldError::new(
                path,
                format!("{raw:?} is not an IP address"),
            ));
            None
        }
    }
}

/// The state a step starts from and ends in.
#[derive(Clone)]
struct State {
    model: Model,
    policies: BTreeMap<PolicyRef, CompiledPolicy>,
    cluster: BTreeMap<ClusterPolicyRef, ClusterPolicy>,
}

/// Resolves objects into a model: adds undeclared namespaces, allocates addresses, rejects
/// duplicates.
fn resolve(objs: Objects, errors: &mut Vec<InputError>) -> State {
    let mut model = Model::default();
    for (ns, origin) in objs.namespaces {
        if model.namespaces.contains_key(&ns.name) {
            errors.push(origin.name_error(format!("namespace {:?} is declared twice", ns.name)));
        }
        model.namespaces.insert(ns.name.clone(), ns);
    }
    let mut pods: BTreeMap<PodRef, (Pod, Option<IpAddr>)> = BTreeMap::new();
    for (pod, ip, origin) in objs.pods {
        let r = pod.pod_ref();
        if pods.contains_key(&r) {
            errors.push(origin.name_error(format!("pod {r} is declared twice")));
        }
        pods.insert(r, (pod, ip));
    }
    let mut slots: Vec<(PodRef, Option<IpAddr>)> =
        pods.iter().map(|(r, (_, ip))| (r.clone(), *ip)).collect();
    let ips = allocate_ips(&mut slots);
    let mut seen: BTreeMap<IpAddr, PodRef> = BTreeMap::new();
    for ((r, (mut pod, _)), ip) in pods.into_iter().zip(ips) {
        if let Some(other) = seen.insert(ip, r.clone()) {
            errors.push(InputError::file(
                PathBuf::from("<model>"),
                format!("pods {other} and {r} have the same address {ip}"),
            ));
        }
        pod.ip = ip;
        model
            .namespaces
            .entry(pod.namespace.clone())
            .or_insert_with(|| Namespace::new(pod.namespace.clone(), Labels::new()));
        model.pods.insert(r, pod);
    }
    let mut policies = BTreeMap::new();
    for (p, origin) in objs.policies {
        model
            .namespaces
            .entry(p.key.namespace.clone())
            .or_insert_with(|| Namespace::new(p.key.namespace.clone(), Labels::new()));
        if policies.contains_key(&p.key) {
            errors.push(origin.name_error(format!("NetworkPolicy {} is declared twice", p.key)));
        }
        policies.insert(p.key.clone(), p);
    }
    let mut cluster = BTreeMap::new();
    for (p, origin) in objs.cluster {
        if cluster.contains_key(&p.key) {
            errors.push(origin.name_error(format!("{} is declared twice", p.key)));
        }
        cluster.insert(p.key.clone(), p);
    }
    State {
        model,
        policies,
        cluster,
    }
}

fn file_stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into())
}

fn load_manifest_scenario(docs: &[Doc], file: &Path) -> Result<Loaded, InputErrors> {
    let mut objs = Objects::default();
    let mut errors = Vec::new();
    for d in docs {
        let ctx = DocCtx {
            file,
            index: d.index,
            first_line: d.first_line,
            text: &d.text,
        };
        if !d.value.is_object() {
            errors.push(ctx.field(
                "",
                &FieldError::new("", "expected a Kubernetes object (a mapping)"),
            ));
            continue;
        }
        read_object(&d.value, &ctx, "", &mut objs, &mut errors);
    }
    let warnings = std::mem::take(&mut objs.warnings);
    let state = resolve(objs, &mut errors);
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    let changes = state
        .policies
        .keys()
        .map(|k| Change::ApplyPolicy { policy: k.clone() })
        .chain(
            state
                .cluster
                .keys()
                .map(|k| Change::ApplyClusterPolicy { policy: k.clone() }),
        )
        .collect();
    let probes = state.model.declared_probes();
    let step = Step {
        name: "initial".into(),
        description: None,
        policies: state.policies.into_values().collect(),
        cluster_policies: state.cluster.into_values().collect(),
        model: state.model,
        changes,
        probes,
        expectations: Vec::new(),
    };
    let mut warnings = warnings;
    warnings.extend(
        super::cluster::warnings(&step)
            .into_iter()
            .map(|w| InputError::file(file, w)),
    );
    Ok(Loaded {
        scenarios: vec![Scenario {
            name: file_stem(file),
            source: file.display().to_string(),
            description: None,
            steps: vec![step],
        }],
        warnings,
    })
}

fn upstream_objects(spec: &super::format::UpstreamSpec, objs: &mut Objects, origin: &Origin) {
    let nss = spec
        .namespaces
        .clone()
        .unwrap_or_else(|| vec!["x".into(), "y".into(), "z".into()]);
    let pods = spec
        .pods
        .clone()
        .unwrap_or_else(|| vec!["a".into(), "b".into(), "c".into()]);
    let ports = spec.ports.clone().unwrap_or_else(|| vec![80, 81]);
    let protocols = spec
        .protocols
        .clone()
        .unwrap_or_else(|| Protocol::ALL.to_vec());
    for ns in &nss {
        objs.namespaces.push((
            Namespace::new(ns.clone(), Labels::from([("ns".to_string(), ns.clone())])),
            origin.clone(),
        ));
        for pod in &pods {
            let container_ports = ports
                .iter()
                .flat_map(|port| {
                    protocols.iter().map(move |proto| ContainerPort {
                        name: Some(format!("serve-{port}-{}", proto.lower())),
                        port: *port,
                        protocol: *proto,
                    })
                })
                .collect();
            objs.pods.push((
                Pod {
                    namespace: ns.clone(),
                    name: pod.clone(),
                    labels: Labels::from([("pod".to_string(), pod.clone())]),
                    ip: IpAddr::from([0, 0, 0, 0]),
                    ports: container_ports,
                    image: None,
                    workload: Workload::Pod,
                },
                None,
                origin.clone(),
            ));
        }
    }
}

fn yaml_ports(
    ports: &[PortSpecYaml],
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<ContainerPort> {
    ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            PortSpecYaml::Short(probe) => Some(ContainerPort {
                name: None,
                port: probe.port,
                protocol: probe.protocol,
            }),
            PortSpecYaml::Long {
                port,
                protocol,
                name,
            } => {
                if *port == 0 {
                    errs.push(FieldError::new(
                        format!("{path}[{i}].port"),
                        "0 is not a valid port number",
                    ));
                    return None;
                }
                if let Some(n) = name
                    && !is_port_name(n)
                {
                    errs.push(FieldError::new(
                        format!("{path}[{i}].name"),
                        format!("{n:?} is not a valid port name"),
                    ));
                    return None;
                }
                Some(ContainerPort {
                    name: name.clone(),
                    port: *port,
                    protocol: protocol.unwrap_or(Protocol::Tcp),
                })
            }
        })
        .collect()
}

fn model_objects(spec: &ModelSpec, ctx: &DocCtx, objs: &mut Objects, errors: &mut Vec<InputError>) {
    let origin = |field: String| Origin {
        file: ctx.file.to_path_buf(),
        document: ctx.index,
        line: line_of(ctx.text, &field)
            .map(|l| l + ctx.first_line - 1)
            .unwrap_or(ctx.first_line),
        // The upstream shorthand names its objects itself; elsewhere the entry's `name` key does.
        name_field: if field == "model.upstream" {
            field.clone()
        } else {
            join_path(&field, "name")
        },
        field,
    };
    if let Some(u) = &spec.upstream {
        upstream_objects(u, objs, &origin("model.upstream".into()));
    }
    for (i, ns) in spec.namespaces.iter().enumerate() {
        let base = format!("model.namespaces[{i}]");
        let mut errs = Vec::new();
        if !is_dns_label(&ns.name) {
            errs.push(FieldError::new(
                "name",
                format!("{:?} is not a valid namespace name", ns.name),
            ));
        }
        labels_of(Some(&ns.labels), "labels", &mut errs);
        if errs.is_empty() {
            // A namespace also declared by the upstream shorthand gets its labels merged.
            if let Some((existing, _)) = objs.namespaces.iter_mut().find(|(n, _)| n.name == ns.name)
            {
                existing.labels.extend(ns.labels.clone());
            } else {
                objs.namespaces.push((
                    Namespace::new(ns.name.clone(), ns.labels.clone()),
                    origin(base),
                ));
            }
        } else {
            errors.extend(errs.iter().map(|e| ctx.field(&base, e)));
        }
    }
    for (i, p) in spec.pods.iter().enumerate() {
        let base = format!("model.pods[{i}]");
        let mut errs = Vec::new();
        let ports = yaml_ports(&p.ports, "ports", &mut errs);
        let meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(p.name.clone()),
            namespace: Some(p.namespace.clone()),
            labels: Some(p.labels.clone()),
            ..Default::default()
        };
        let pod = pod_from_meta(&meta, "", ports, p.image.clone(), Workload::Pod, &mut errs);
        let errs: Vec<FieldError> = errs
            .into_iter()
            .map(|e| FieldError::new(e.path.trim_start_matches('.').to_string(), e.message))
            .collect();
        match pod {
            Some(pod) if errs.is_empty() => objs.pods.push((pod, p.ip, origin(base))),
            _ => errors.extend(errs.iter().map(|e| ctx.field(&base, e))),
        }
    }
    for (i, d) in spec.deployments.iter().enumerate() {
        let base = format!("model.deployments[{i}]");
        let mut errs = Vec::new();
        let ports = yaml_ports(&d.ports, "ports", &mut errs);
        labels_of(Some(&d.labels), "labels", &mut errs);
        if !is_dns_subdomain(&d.name) {
            errs.push(FieldError::new(
                "name",
                format!("{:?} is not a valid name", d.name),
            ));
        }
        if !errs.is_empty() {
            errors.extend(errs.iter().map(|e| ctx.field(&base, e)));
            continue;
        }
        for r in 0..d.replicas {
            objs.pods.push((
                Pod {
                    namespace: d.namespace.clone(),
                    name: format!("{}-{r}", d.name),
                    labels: d.labels.clone(),
                    ip: IpAddr::from([0, 0, 0, 0]),
                    ports: ports.clone(),
                    image: d.image.clone(),
                    workload: Workload::Deployment {
                        name: d.name.clone(),
                        replica: r,
                    },
                },
                None,
                origin(base.clone()),
            ));
        }
    }
    for (i, m) in spec.manifests.iter().enumerate() {
        let path = ctx.file.parent().unwrap_or(Path::new(".")).join(m);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ctx.field(
                    "",
                    &FieldError::new(
                        format!("model.manifests[{i}]"),
                        format!("cannot read {}: {e}", path.display()),
                    ),
                ));
                continue;
            }
        };
        match parse_documents(&text, &path) {
            Ok(docs) => {
                for d in docs {
                    let mctx = DocCtx {
                        file: &path,
                        index: d.index,
                        first_line: d.first_line,
                        text: &d.text,
                    };
                    read_object(&d.value, &mctx, "", objs, errors);
                }
            }
            Err(e) => errors.extend(e.0),
        }
    }
}

fn load_scenario(doc: &Doc, file: &Path) -> Result<Loaded, InputErrors> {
    let ctx = DocCtx {
        file,
        index: doc.index,
        first_line: doc.first_line,
        text: &doc.text,
    };
    let sf: ScenarioFile = typed(&doc.value).map_err(|e| InputErrors(vec![ctx.field("", &e)]))?;
    let mut errors = Vec::new();
    if sf.api_version != SCENARIO_API_VERSION {
        errors.push(ctx.field(
            "",
            &FieldError::new(
                "apiVersion",
                format!(
                    "unsupported scenario schema {:?} (this build reads {SCENARIO_API_VERSION:?})",
                    sf.api_version
                ),
            ),
        ));
    }
    if sf.kind != "Scenario" {
        errors.push(ctx.field(
            "",
            &FieldError::new(
                "kind",
                format!("expected \"Scenario\", found {:?}", sf.kind),
            ),
        ));
    }
    let mut objs = Objects::default();
    model_objects(&sf.model, &ctx, &mut objs, &mut errors);
    let mut warnings = std::mem::take(&mut objs.warnings);
    let initial_policies: Vec<Change> = objs
        .policies
        .iter()
        .map(|(p, _)| Change::ApplyPolicy {
            policy: p.key.clone(),
        })
        .chain(
            objs.cluster
                .iter()
                .map(|(p, _)| Change::ApplyClusterPolicy {
                    policy: p.key.clone(),
                }),
        )
        .collect();
    let mut state = resolve(objs, &mut errors);
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    let default_probes = sf.probes.clone();
    let step_specs: Vec<StepSpec> = if sf.steps.is_empty() {
        vec![StepSpec {
            name: "initial".into(),
            description: None,
            apply: vec![],
            delete: vec![],
            label_pods: vec![],
            label_namespaces: vec![],
            probes: None,
            expect: vec![],
        }]
    } else {
        sf.steps
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut names = BTreeSet::new();
    for (si, spec) in step_specs.iter().enumerate() {
        let base = format!("steps[{si}]");
        if !names.insert(spec.name.clone()) {
            errors.push(ctx.field(
                &base,
                &FieldError::new("name", format!("step name {:?} is used twice", spec.name)),
            ));
        }
        let mut changes: Vec<Change> = if si == 0 {
            initial_policies.clone()
        } else {
            Vec::new()
        };
        for (ai, v) in spec.apply.iter().enumerate() {
            let abase = format!("{base}.apply[{ai}]");
            let mut objs = Objects::default();
            let kind = str_field(v, "kind");
            let policy_kind = |k: &str| k == "NetworkPolicy" || ClusterKind::from_kind(k).is_some();
            if !kind.is_some_and(policy_kind) {
                errors.push(ctx.field(
                    &abase,
                    &FieldError::new(
                        "kind",
                        "steps apply NetworkPolicy, ClusterNetworkPolicy, AdminNetworkPolicy or \
                         BaselineAdminNetworkPolicy objects only",
                    ),
                ));
                continue;
            }
            read_object(v, &ctx, &abase, &mut objs, &mut errors);
            warnings.extend(objs.warnings);
            for (p, _) in objs.cluster {
                changes.push(Change::ApplyClusterPolicy {
                    policy: p.key.clone(),
                });
                state.cluster.insert(p.key.clone(), p);
            }
            for (p, _) in objs.policies {
                state
                    .model
                    .namespaces
                    .entry(p.key.namespace.clone())
                    .or_insert_with(|| Namespace::new(p.key.namespace.clone(), Labels::new()));
                changes.push(Change::ApplyPolicy {
                    policy: p.key.clone(),
                });
                state.policies.insert(p.key.clone(), p);
            }
        }
        for (di, d) in spec.delete.iter().enumerate() {
            let key = match super::cluster::delete_target(d) {
                Ok(super::cluster::DeleteTarget::NetworkPolicy(key)) => key,
                Ok(super::cluster::DeleteTarget::Cluster(key)) => {
                    if state.cluster.remove(&key).is_none() {
                        errors.push(ctx.field(
                            &base,
                            &FieldError::new(
                                format!("delete[{di}]"),
                                format!("no {key} exists at this step"),
                            ),
                        ));
                    } else {
                        changes.push(Change::DeleteClusterPolicy { policy: key });
                    }
                    continue;
                }
                Err(msg) => {
                    errors.push(ctx.field(&base, &FieldError::new(format!("delete[{di}]"), msg)));
                    continue;
                }
            };
            if state.policies.remove(&key).is_none() {
                errors.push(ctx.field(
                    &base,
                    &FieldError::new(
                        format!("delete[{di}]"),
                        format!("no NetworkPolicy {key} exists at this step"),
                    ),
                ));
            } else {
                changes.push(Change::DeletePolicy { policy: key });
            }
        }
        for (li, l) in spec.label_pods.iter().enumerate() {
            let lbase = format!("{base}.labelPods[{li}]");
            let r: PodRef = match l.pod.parse() {
                Ok(r) => r,
                Err(e) => {
                    errors.push(ctx.field(&lbase, &FieldError::new("pod", e.to_string())));
                    continue;
                }
            };
            let mut errs = Vec::new();
            labels_of(Some(&l.set), "set", &mut errs);
            match state.model.pods.get_mut(&r) {
                Some(p) if errs.is_empty() => {
                    for k in &l.remove {
                        p.labels.remove(k);
                    }
                    p.labels.extend(l.set.clone());
                    changes.push(Change::LabelPod {
                        pod: r,
                        set: l.set.clone(),
                        remove: l.remove.clone(),
                    });
                }
                Some(_) => errors.extend(errs.iter().map(|e| ctx.field(&lbase, e))),
                None => errors.push(ctx.field(
                    &lbase,
                    &FieldError::new("pod", format!("no pod {r} in the model")),
                )),
            }
        }
        for (li, l) in spec.label_namespaces.iter().enumerate() {
            let lbase = format!("{base}.labelNamespaces[{li}]");
            let mut errs = Vec::new();
            labels_of(Some(&l.set), "set", &mut errs);
            if l.remove
                .iter()
                .any(|k| k == crate::model::NAMESPACE_NAME_LABEL)
                || l.set.contains_key(crate::model::NAMESPACE_NAME_LABEL)
            {
                errs.push(FieldError::new(
                    "set",
                    "kubernetes.io/metadata.name is managed by the API server",
                ));
            }
            match state.model.namespaces.get_mut(&l.namespace) {
                Some(ns) if errs.is_empty() => {
                    for k in &l.remove {
                        ns.labels.remove(k);
                    }
                    ns.labels.extend(l.set.clone());
                    changes.push(Change::LabelNamespace {
                        namespace: l.namespace.clone(),
                        set: l.set.clone(),
                        remove: l.remove.clone(),
                    });
                }
                Some(_) => errors.extend(errs.iter().map(|e| ctx.field(&lbase, e))),
                None => errors.push(ctx.field(
                    &lbase,
                    &FieldError::new(
                        "namespace",
                        format!("no namespace {:?} in the model", l.namespace),
                    ),
                )),
            }
        }
        let probes = spec
            .probes
            .clone()
            .or_else(|| default_probes.clone())
            .unwrap_or_else(|| state.model.declared_probes());
        let mut expectations = Vec::new();
        for (ei, e) in spec.expect.iter().enumerate() {
            let ebase = format!("{base}.expect[{ei}]");
            match resolve_expectation(e, &state.model, &probes) {
                Ok(v) => {
                    // Where the expectation was written, so a disagreement names it.
                    let at = ctx.field(&ebase, &FieldError::new("", ""));
                    expectations.extend(v.into_iter().map(|mut x| {
                        x.written_at = Some(at.clone());
                        x
                    }));
                }
                Err(fe) => errors.push(ctx.field(&ebase, &fe)),
            }
        }
        let step = Step {
            name: spec.name.clone(),
            description: spec.description.clone(),
            model: state.model.clone(),
            policies: state.policies.values().cloned().collect(),
            cluster_policies: state.cluster.values().cloned().collect(),
            changes,
            probes,
            expectations,
        };
        let name_at = FieldError::new("name", "");
        warnings.extend(
            super::cluster::warnings(&step)
                .into_iter()
                .map(|w| InputError {
                    message: w,
                    ..ctx.field(&base, &name_at)
                }),
        );
        steps.push(step);
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    Ok(Loaded {
        scenarios: vec![Scenario {
            name: sf.name.unwrap_or_else(|| file_stem(file)),
            source: file.display().to_string(),
            description: sf.description,
            steps,
        }],
        warnings,
    })
}

/// Does `pattern` (`*`, `ns/*`, `*/pod`, `ns/pod`) cover `pod`?
fn pattern_matches(pattern: &str, pod: &PodRef) -> bool {
    if pattern == "*" || pattern == "*/*" {
        return true;
    }
    match pattern.split_once('/') {
        Some((ns, name)) => (ns == "*" || ns == pod.namespace) && (name == "*" || name == pod.name),
        None => false,
    }
}

fn check_pattern(pattern: &str, model: &Model, path: String) -> Result<(), FieldError> {
    if model.pods.keys().any(|p| pattern_matches(pattern, p)) {
        Ok(())
    } else {
        Err(FieldError::new(
            path,
            format!("{pattern:?} matches no pod of this step (patterns: *, ns/*, */pod, ns/pod)"),
        ))
    }
}

fn resolve_expectation(
    e: &ExpectationSpec,
    model: &Model,
    step_probes: &[Probe],
) -> Result<Vec<Expectation>, FieldError> {
    let probes: Vec<Probe> = match (&e.probe, &e.probes) {
        (Some(p), None) => vec![*p],
        (None, Some(ps)) => ps.clone(),
        (None, None) => step_probes.to_vec(),
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                "probe",
                "give `probe` or `probes`, not both",
            ));
        }
    };
    let base = Some(e.default.unwrap_or(AllowWord::Allow) == AllowWord::Allow);
    let mut table = TruthTable::new(model.pod_refs(), base);
    if let Some(t) = &e.table {
        if !e.cells.is_empty() {
            return Err(FieldError::new(
                "table",
                "give `table` or `cells`, not both",
            ));
        }
        let mut lines = t.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines
            .next()
            .map(|h| h.split_whitespace().skip(1).collect())
            .unwrap_or_default();
        let cols: Vec<PodRef> = header
            .iter()
            .map(|h| {
                h.parse::<PodRef>()
                    .map_err(|err| FieldError::new("table", err.to_string()))
            })
            .collect::<Result<_, _>>()?;
        for line in lines {
            let mut parts = line.split_whitespace();
            let Some(row) = parts.next() else { continue };
            let from: PodRef = row.parse().map_err(|err: crate::model::BadPodRef| {
                FieldError::new("table", err.to_string())
            })?;
            let marks: Vec<&str> = parts.collect();
            if marks.len() != cols.len() {
                return Err(FieldError::new(
                    "table",
                    format!(
                        "row {from} has {} cells for {} columns",
                        marks.len(),
                        cols.len()
                    ),
                ));
            }
            for (to, m) in cols.iter().zip(marks) {
                let allowed = match m {
                    "." => Some(true),
                    "X" | "x" => Some(false),
                    // Implementation-defined (cluster-wide policies of one priority disagreeing).
                    "?" => None,
                    other => {
                        return Err(FieldError::new(
                            "table",
                            format!(
                                "cell {other:?} in row {from} (use . or X, or ? where the API leaves the answer to the implementation)"
                            ),
                        ));
                    }
                };
                if !table.set(&from, to, allowed) {
                    return Err(FieldError::new(
                        "table",
                        format!("{from} -> {to}: no such pod in this step"),
                    ));
                }
            }
        }
    }
    for (ci, c) in e.cells.iter().enumerate() {
        check_pattern(&c.from, model, format!("cells[{ci}].from"))?;
        check_pattern(&c.to, model, format!("cells[{ci}].to"))?;
        let pods = model.pod_refs();
        for f in pods.iter().filter(|p| pattern_matches(&c.from, p)) {
            for t in pods.iter().filter(|p| pattern_matches(&c.to, p)) {
                table.set(f, t, c.allow);
            }
        }
    }
    Ok(probes
        .into_iter()
        .map(|probe| Expectation {
            probe,
            table: table.clone(),
            written_at: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY_HEAD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                               metadata: {name: p, namespace: x}\n";

    fn load(spec: &str) -> Result<Loaded, InputErrors> {
        load_str(&format!("{POLICY_HEAD}spec:\n{spec}"), "t.yaml")
    }

    #[test]
    fn a_misspelt_key_with_an_empty_value_is_still_unknown() {
        // `namespaceselector: {}` dropped silently would change "every namespace" into "this one".
        let err = load("  podSelector: {}\n  ingress: [{from: [{namespaceselector: {}}]}]\n")
            .expect_err("typo must be rejected");
        assert_eq!(
            err.0[0].field.as_deref(),
            Some("spec.ingress[0].from[0].namespaceselector")
        );
        let err = load("  podselector: {}\n").expect_err("typo must be rejected");
        assert_eq!(err.0[0].field.as_deref(), Some("spec.podselector"));
    }

    #[test]
    fn known_keys_with_empty_values_are_accepted() {
        let loaded = load(
            "  podSelector: {matchLabels: {}, matchExpressions: []}\n  policyTypes: []\n  \
             ingress: [{from: [], ports: []}, {}]\n  \
             egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: []}}], ports: []}]\n",
        );
        assert!(loaded.is_ok(), "{loaded:?}");
    }

    #[test]
    fn yaml_syntax_errors_keep_only_the_message() {
        assert_eq!(
            yaml_message("error: line 4 column 5: did not find expected ','\nmore"),
            "did not find expected ','"
        );
        assert_eq!(yaml_message("something else"), "something else");
    }

    #[test]
    fn duplicates_point_at_the_name() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\n";
        let err = load_str(&format!("{pod}---\n{pod}"), "t.yaml").expect_err("duplicate");
        assert_eq!(err.0[0].document, Some(1));
        assert_eq!(err.0[0].field.as_deref(), Some("metadata.name"));
    }
}
