//! Reading scenario files, plain manifests and cluster dumps into resolved [`Scenario`]s.
//!
//! Files are found and read by `input` (each once, no FIFOs or devices, bounded size), split into
//! YAML or JSON documents by `docs`, and each document is either a scenario (`netpolc/v1`) or
//! Kubernetes objects (a `List`'s items are read as documents). Objects are read by `objects`
//! (strict for hand-written ones, lenient on what API servers add) and resolved into a model.
//! Every name and label passes `crate::names` first. Errors carry file, document index, field
//! path and line.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::model::{
    ContainerPort, Labels, Model, Namespace, Pod, PodRef, Probe, Protocol, Workload,
};
use crate::names;
use crate::policy::{ClusterKind, FieldError, PolicyRef};
use crate::truthtable::TruthTable;

use super::docs::{self, Doc, DocCtx, join_path};
use super::format::{
    AllowWord, ExpectationSpec, ModelSpec, PortSpecYaml, SCENARIO_API_VERSION, ScenarioFile,
    StepSpec, UpstreamSpec,
};
use super::input;
use super::limits::{
    MAX_DOCUMENTS, MAX_EXPECTATION_CELLS, MAX_POD_STEPS, MAX_PODS, MAX_REPLICAS, MAX_STEPS,
};
use super::objects::{self, Objects, Origin, PodObj, State, WORKLOAD_KINDS, WorkloadObj};
use super::{Change, Expectation, InputError, InputErrors, Scenario, Step};

/// What loading produced: the scenarios, and warnings (ignored kinds, CIDRs with host bits…).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub scenarios: Vec<Scenario>,
    pub warnings: Vec<InputError>,
}

/// One file's scenario and where its name was given (for duplicate names across files).
struct FileLoad {
    loaded: Loaded,
    name_at: InputError,
}

/// Loads every path: files as given, directories recursively (`*.yaml`/`*.yml`, sorted), each
/// file once. Scenario names must be unique over all of them.
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded, InputErrors> {
    load_paths_with(paths, Pods::Required)
}

/// Whether a manifest file without any pod is bad input. It is wherever a matrix is computed
/// from the file; `what-if --add` takes only policies from its files, which hold none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pods {
    Required,
    Optional,
}

/// [`load_paths`], with the no-pod rule chosen by the caller.
pub fn load_paths_with(paths: &[PathBuf], pods: Pods) -> Result<Loaded, InputErrors> {
    let mut errors = Vec::new();
    let files = input::collect(paths, &mut errors);
    let mut out = Loaded::default();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for f in files {
        let loaded = input::read(&f)
            .map_err(InputErrors::from)
            .and_then(|text| load_file(&text, &f, pods));
        match loaded {
            Ok(fl) => {
                for s in &fl.loaded.scenarios {
                    if let Some(first) = names.get(&s.name) {
                        errors.push(InputError {
                            message: format!(
                                "scenario name {:?} is already used by {first}: names identify \
                                 scenarios in reports, so they must be unique",
                                s.name
                            ),
                            ..fl.name_at.clone()
                        });
                    } else {
                        names.insert(s.name.clone(), s.source.clone());
                    }
                }
                out.scenarios.extend(fl.loaded.scenarios);
                out.warnings.extend(fl.loaded.warnings);
            }
            Err(e) => errors.extend(e.0),
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
    load_str_with(text, source, Pods::Required)
}

/// [`load_str`], with the no-pod rule chosen by the caller.
pub fn load_str_with(
    text: &str,
    source: impl AsRef<Path>,
    pods: Pods,
) -> Result<Loaded, InputErrors> {
    load_file(text, source.as_ref(), pods).map(|f| f.loaded)
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn load_file(text: &str, file: &Path, pods: Pods) -> Result<FileLoad, InputErrors> {
    let docs = docs::parse(text, file)?;
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
        return Err(InputError::file(
            file,
            "no YAML or JSON documents found: an input without pods is bad input",
        )
        .into());
    }
    load_manifest_scenario(&docs, file, pods)
}

/// Kinds read from manifests and dumps, with the apiVersion each must have. Workloads (read like
/// a Deployment) are in [`WORKLOAD_KINDS`]. Add a kind here and in `read_object`'s dispatch.
const KINDS: &[(&str, &str)] = &[
    ("Namespace", "v1"),
    ("Pod", "v1"),
    ("NetworkPolicy", "networking.k8s.io/v1"),
    ("Service", "v1"),
];

fn api_version_of(kind: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .chain(WORKLOAD_KINDS.iter())
        .find(|(k, _)| *k == kind)
        .map(|(_, api)| *api)
}

/// The `apiVersion` of a typed list's items: the kinds read above and the cluster-wide policy
/// kinds (`ClusterNetworkPolicyList` is `policy.networking.k8s.io/v1alpha2`, the ANP and BANP
/// lists `v1alpha1`, as the API server returns them).
fn list_item_api_version(kind: &str) -> Option<&'static str> {
    api_version_of(kind).or_else(|| ClusterKind::from_kind(kind).map(ClusterKind::api_version))
}

/// Names of the kinds read, for the "ignored" warning.
fn kind_list() -> String {
    let kinds: Vec<&str> = KINDS
        .iter()
        .chain(WORKLOAD_KINDS.iter())
        .map(|(k, _)| *k)
        .collect();
    format!("{} and the cluster-wide policy kinds", kinds.join(", "))
}

/// Reads one manifest document (or an object nested at `base`: a scenario's `apply` entry, a
/// `List` item) into `objs`.
fn read_object(
    v: &Value,
    ctx: &DocCtx,
    base: &str,
    objs: &mut Objects,
    errors: &mut Vec<InputError>,
) {
    if !v.is_object() {
        errors.push(ctx.field(
            base,
            &FieldError::new("", "expected a Kubernetes object (a mapping)"),
        ));
        return;
    }
    let Some(kind) = str_field(v, "kind") else {
        errors.push(ctx.field(base, &FieldError::new("kind", "is required")));
        return;
    };
    if let Some(ck) = ClusterKind::from_kind(kind) {
        match super::cluster::read(v, ck) {
            Ok(cp) => {
                for w in &cp.warnings {
                    objs.warnings
                        .push(format!("{kind} field"), ctx.field(base, w));
                }
                let origin = Origin::new(ctx, base, &join_path(base, "metadata.name"));
                objs.cluster.push((cp, origin));
            }
            Err(e) => errors.extend(e.iter().map(|e| ctx.field(base, e))),
        }
        return;
    }
    if kind == "List"
        || (kind.ends_with("List") && list_item_api_version(&kind[..kind.len() - 4]).is_some())
    {
        if base.is_empty() {
            read_list(kind, v, ctx, objs, errors);
        } else {
            errors.push(ctx.field(base, &FieldError::new("kind", "a List cannot be nested")));
        }
        return;
    }
    let Some(want_api) = api_version_of(kind) else {
        objs.warnings.push(
            format!("kind {kind}"),
            InputError {
                line: Some(ctx.line(base)),
                ..ctx.field(
                    base,
                    &FieldError::new(
                        "",
                        format!("kind {kind:?} is ignored (netpolc reads {})", kind_list()),
                    ),
                )
            },
        );
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
    let errs = match kind {
        "Namespace" => objects::read_namespace(v, ctx, base, objs),
        "Pod" => objects::read_pod(v, ctx, base, objs),
        "NetworkPolicy" => objects::read_network_policy(v, ctx, base, objs),
        "Service" => objects::read_service(v, ctx, base, objs),
        _ => match WORKLOAD_KINDS.iter().find(|(k, _)| *k == kind) {
            Some((k, _)) => objects::read_workload(k, v, ctx, base, objs),
            None => Vec::new(),
        },
    };
    errors.extend(errs.iter().map(|e| ctx.field(base, e)));
}

/// A `v1` `List` (what `kubectl get … -o yaml|json` prints) or a typed list (`PodList`, as the
/// API returns it, whose items may omit `kind`): every item is read as a document.
fn read_list(
    kind: &str,
    v: &Value,
    ctx: &DocCtx,
    objs: &mut Objects,
    errors: &mut Vec<InputError>,
) {
    let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
    let want_api = item_kind.and_then(list_item_api_version).unwrap_or("v1");
    let api = str_field(v, "apiVersion").unwrap_or("");
    if api != want_api {
        errors.push(ctx.field(
            "",
            &FieldError::new(
                "apiVersion",
                format!("{kind} must have apiVersion {want_api:?}, found {api:?}"),
            ),
        ));
        return;
    }
    let items = match v.get("items") {
        None | Some(Value::Null) => return,
        Some(Value::Array(items)) => items,
        Some(_) => {
            errors.push(ctx.field("", &FieldError::new("items", "must be a list of objects")));
            return;
        }
    };
    if items.len() > MAX_DOCUMENTS {
        errors.push(ctx.field(
            "",
            &FieldError::new(
                "items",
                format!("holds more than {MAX_DOCUMENTS} objects (netpolc's limit)"),
            ),
        ));
        return;
    }
    for (i, item) in items.iter().enumerate() {
        let base = format!("items[{i}]");
        // Typed lists from the API leave kind and apiVersion out of their items.
        match (item_kind, item) {
            (Some(k), Value::Object(o)) if !o.contains_key("kind") => {
                let mut filled = o.clone();
                filled.insert("kind".into(), Value::String(k.into()));
                filled
                    .entry("apiVersion")
                    .or_insert_with(|| Value::String(want_api.into()));
                read_object(&Value::Object(filled), ctx, &base, objs, errors);
            }
            _ => read_object(item, ctx, &base, objs, errors),
        }
    }
}

/// First address of external peers without one: TEST-NET-1, outside every pod range.
pub const EXTERNAL_ALLOCATION_BASE: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 10);

/// Adds `model.externals` as pods of [`crate::model::EXTERNAL_NAMESPACE`] (never a model
/// namespace, so no selector matches them; see [`crate::model::Workload::External`]).
fn add_externals(
    specs: &[super::format::ExternalSpec],
    ctx: &DocCtx,
    model: &mut Model,
    errors: &mut Vec<InputError>,
) {
    let mut next = u32::from(EXTERNAL_ALLOCATION_BASE);
    for (i, e) in specs.iter().enumerate() {
        let base = format!("model.externals[{i}]");
        if let Err(err) = names::external(&e.name) {
            errors.push(ctx.field(&base, &FieldError::new("name", err.to_string())));
            continue;
        }
        let taken = |ip: &IpAddr, m: &Model| m.pods.values().any(|p| p.ip == *ip);
        let ip = match e.ip {
            Some(ip) => ip,
            None => loop {
                let cand = IpAddr::V4(std::net::Ipv4Addr::from(next));
                next += 1;
                if !taken(&cand, model) {
                    break cand;
                }
            },
        };
        if taken(&ip, model) {
            errors.push(ctx.field(
                &base,
                &FieldError::new("ip", format!("{ip} is already a pod's address")),
            ));
            continue;
        }
        let mut errs = Vec::new();
        let ports = yaml_ports(&e.ports, "ports", &mut errs);
        errors.extend(errs.iter().map(|fe| ctx.field(&base, fe)));
        let r = PodRef::new(crate::model::EXTERNAL_NAMESPACE, &e.name);
        if model.pods.contains_key(&r) {
            errors.push(ctx.field(
                &base,
                &FieldError::new("name", format!("external {:?} is declared twice", e.name)),
            ));
            continue;
        }
        model.pods.insert(
            r,
            crate::model::Pod {
                namespace: crate::model::EXTERNAL_NAMESPACE.into(),
                name: e.name.clone(),
                labels: Labels::new(),
                ip,
                ports,
                image: None,
                workload: Workload::External,
            },
        );
    }
}

fn file_stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".into())
}

/// A scenario name taken from the file name must be printable too.
fn check_stem_name(file: &Path, name: &str, errors: &mut Vec<InputError>) {
    if let Err(e) = names::text_name("scenario name (from the file name)", name) {
        errors.push(InputError::file(file, e.to_string()));
    }
}

/// "Yields no pod" is bad input: a matrix of nothing would pass vacuously.
const NO_POD: &str = "yields no pod: an input without pods is bad input (its matrix would be \
                      empty, so any verdict would be vacuous)";

fn load_manifest_scenario(docs: &[Doc], file: &Path, pods: Pods) -> Result<FileLoad, InputErrors> {
    let mut objs = Objects::default();
    let mut errors = Vec::new();
    for d in docs {
        read_object(&d.value, &d.ctx(file), "", &mut objs, &mut errors);
    }
    let name = file_stem(file);
    check_stem_name(file, &name, &mut errors);
    let (state, warnings) = objects::resolve(objs, &mut errors);
    if errors.is_empty() && pods == Pods::Required && state.model.pods.is_empty() {
        errors.push(InputError::file(
            file,
            format!(
                "{NO_POD}; its {} document(s) hold no Pod and no workload with replicas",
                docs.len()
            ),
        ));
    }
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
        templates: BTreeMap::new(),
    };
    let mut warnings = warnings.into_vec();
    warnings.extend(
        super::cluster::warnings(&step)
            .into_iter()
            .map(|w| InputError::file(file, w)),
    );
    Ok(FileLoad {
        loaded: Loaded {
            scenarios: vec![Scenario {
                name,
                source: file.display().to_string(),
                description: None,
                steps: vec![step],
            }],
            warnings,
        },
        name_at: InputError::file(file, ""),
    })
}

/// A value's validation error as a field error at `path`.
fn named(r: Result<(), names::Invalid>, path: impl Into<String>, errs: &mut Vec<FieldError>) {
    if let Err(e) = r {
        errs.push(FieldError::new(path, e.to_string()));
    }
}

/// Finds the first repeated value in `items` (for `[x, x]` lists).
fn first_repeat<T: Ord>(items: &[T]) -> Option<usize> {
    let mut seen = BTreeSet::new();
    items.iter().position(|i| !seen.insert(i))
}

/// Upstream e2e's model: namespaces × pods, each pod serving every port on every protocol.
fn upstream_objects(spec: &UpstreamSpec, ctx: &DocCtx, objs: &mut Objects) -> Vec<FieldError> {
    let base = "model.upstream";
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
    let mut errs = Vec::new();
    for (i, ns) in nss.iter().enumerate() {
        named(
            names::namespace(ns),
            format!("{base}.namespaces[{i}]"),
            &mut errs,
        );
    }
    for (i, pod) in pods.iter().enumerate() {
        let path = format!("{base}.pods[{i}]");
        named(names::pod(pod), path.clone(), &mut errs);
        // Each pod carries the label pod=<name>.
        if names::is_dns1123_subdomain(pod) {
            named(names::label_value(pod), path, &mut errs);
        }
    }
    for (i, port) in ports.iter().enumerate() {
        if *port == 0 {
            errs.push(FieldError::new(
                format!("{base}.ports[{i}]"),
                "0 is not a valid port number (1-65535)",
            ));
        }
    }
    for (what, repeat) in [
        ("namespaces", first_repeat(&nss)),
        ("pods", first_repeat(&pods)),
        ("ports", first_repeat(&ports)),
        ("protocols", first_repeat(&protocols)),
    ] {
        if let Some(i) = repeat {
            errs.push(FieldError::new(
                format!("{base}.{what}[{i}]"),
                "is listed twice",
            ));
        }
    }
    if nss.len().saturating_mul(pods.len()) > MAX_PODS {
        errs.push(FieldError::new(
            base,
            format!(
                "{} namespaces × {} pods is more than netpolc's limit of {MAX_PODS} pods",
                nss.len(),
                pods.len()
            ),
        ));
    }
    if !errs.is_empty() {
        return errs;
    }
    let origin = Origin::new(ctx, base, base);
    let container_ports: Vec<ContainerPort> = ports
        .iter()
        .flat_map(|port| {
            protocols.iter().map(move |proto| ContainerPort {
                name: Some(format!("serve-{port}-{}", proto.lower())),
                port: *port,
                protocol: *proto,
            })
        })
        .collect();
    for ns in &nss {
        objs.namespaces.push((
            Namespace::new(ns.clone(), Labels::from([("ns".to_string(), ns.clone())])),
            origin.clone(),
        ));
        for pod in &pods {
            objs.pods.push(PodObj {
                pod: Pod {
                    namespace: ns.clone(),
                    name: pod.clone(),
                    labels: Labels::from([("pod".to_string(), pod.clone())]),
                    ip: std::net::IpAddr::from([0, 0, 0, 0]),
                    ports: container_ports.clone(),
                    image: None,
                    workload: Workload::Pod,
                },
                ip: None,
                origin: origin.clone(),
                owners: Vec::new(),
                left_out: None,
                from_server: false,
            });
        }
    }
    errs
}

/// Ports of the scenario format (`80/TCP` or `{port, protocol, name}`), names unique per pod.
fn yaml_ports(
    ports: &[PortSpecYaml],
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<ContainerPort> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        match p {
            PortSpecYaml::Short(probe) => out.push(ContainerPort {
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
                        "0 is not a valid port number (1-65535)",
                    ));
                    continue;
                }
                if let Some(n) = name {
                    if let Err(e) = names::port_name(n) {
                        errs.push(FieldError::new(format!("{path}[{i}].name"), e.to_string()));
                        continue;
                    }
                    if !seen.insert(n.clone()) {
                        errs.push(FieldError::new(
                            format!("{path}[{i}].name"),
                            format!("port name {n:?} is used twice in this pod"),
                        ));
                        continue;
                    }
                }
                out.push(ContainerPort {
                    name: name.clone(),
                    port: *port,
                    protocol: protocol.unwrap_or(Protocol::Tcp),
                });
            }
        }
    }
    out
}

fn model_objects(spec: &ModelSpec, ctx: &DocCtx, objs: &mut Objects, errors: &mut Vec<InputError>) {
    if let Some(u) = &spec.upstream {
        let errs = upstream_objects(u, ctx, objs);
        errors.extend(errs.iter().map(|e| ctx.field("", e)));
    }
    let mut declared = BTreeSet::new();
    for (i, ns) in spec.namespaces.iter().enumerate() {
        let base = format!("model.namespaces[{i}]");
        let mut errs = Vec::new();
        named(names::namespace(&ns.name), "name", &mut errs);
        objects::labels_of(Some(&ns.labels), "labels", &mut errs);
        if !declared.insert(ns.name.clone()) {
            errs.push(FieldError::new(
                "name",
                format!(
                    "namespace {:?} is declared twice in model.namespaces",
                    ns.name
                ),
            ));
        }
        if !errs.is_empty() {
            errors.extend(errs.iter().map(|e| ctx.field(&base, e)));
            continue;
        }
        // A namespace also declared by the upstream shorthand gets its labels merged.
        if let Some((existing, _)) = objs.namespaces.iter_mut().find(|(n, _)| n.name == ns.name) {
            existing.labels.extend(ns.labels.clone());
        } else {
            objs.namespaces.push((
                Namespace::new(ns.name.clone(), ns.labels.clone()),
                Origin::new(ctx, &base, &join_path(&base, "name")),
            ));
        }
    }
    for (i, p) in spec.pods.iter().enumerate() {
        let base = format!("model.pods[{i}]");
        let mut errs = Vec::new();
        named(names::namespace(&p.namespace), "namespace", &mut errs);
        named(names::pod(&p.name), "name", &mut errs);
        let labels = objects::labels_of(Some(&p.labels), "labels", &mut errs);
        let ports = yaml_ports(&p.ports, "ports", &mut errs);
        if let Some(img) = &p.image {
            named(names::image(img), "image", &mut errs);
        }
        if !errs.is_empty() {
            errors.extend(errs.iter().map(|e| ctx.field(&base, e)));
            continue;
        }
        let ip_field = join_path(&base, "ip");
        objs.pods.push(PodObj {
            pod: Pod {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                labels,
                ip: std::net::IpAddr::from([0, 0, 0, 0]),
                ports,
                image: p.image.clone(),
                workload: Workload::Pod,
            },
            ip: p.ip.map(|ip| (ip, ip_field.clone(), ctx.line(&ip_field))),
            origin: Origin::new(ctx, &base, &join_path(&base, "name")),
            owners: Vec::new(),
            left_out: None,
            from_server: false,
        });
    }
    for (i, d) in spec.deployments.iter().enumerate() {
        let base = format!("model.deployments[{i}]");
        let mut errs = Vec::new();
        named(names::namespace(&d.namespace), "namespace", &mut errs);
        named(names::object("Deployment", &d.name), "name", &mut errs);
        let labels = objects::labels_of(Some(&d.labels), "labels", &mut errs);
        let ports = yaml_ports(&d.ports, "ports", &mut errs);
        if let Some(img) = &d.image {
            named(names::image(img), "image", &mut errs);
        }
        if u64::from(d.replicas) > MAX_REPLICAS {
            errs.push(FieldError::new(
                "replicas",
                format!(
                    "{} is more than netpolc's limit of {MAX_REPLICAS} replicas",
                    d.replicas
                ),
            ));
        } else if errs.is_empty()
            && d.replicas > 0
            && let Err(e) = names::pod(&format!("{}-{}", d.name, d.replicas - 1))
        {
            errs.push(FieldError::new(
                "name",
                format!("the names of its pods ({}-0…) are invalid: {e}", d.name),
            ));
        }
        if !errs.is_empty() {
            errors.extend(errs.iter().map(|e| ctx.field(&base, e)));
            continue;
        }
        objs.workloads.push(WorkloadObj {
            kind: "Deployment",
            namespace: d.namespace.clone(),
            name: d.name.clone(),
            owners: Vec::new(),
            replicas: d.replicas,
            labels,
            ports,
            image: d.image.clone(),
            host_network: false,
            from_server: false,
            origin: Origin::new(ctx, &base, &join_path(&base, "name")),
        });
    }
    for (i, s) in spec.services.iter().enumerate() {
        let base = format!("model.services[{i}]");
        let mut errs = Vec::new();
        let read = s.read(&mut errs);
        if !errs.is_empty() {
            errors.extend(errs.iter().map(|e| ctx.field(&base, e)));
            continue;
        }
        objs.add_service(read, Origin::new(ctx, &base, &join_path(&base, "name")));
    }
    for (i, m) in spec.manifests.iter().enumerate() {
        let path = ctx.file.parent().unwrap_or(Path::new(".")).join(m);
        let text = match input::read(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ctx.field(
                    "",
                    &FieldError::new(
                        format!("model.manifests[{i}]"),
                        format!("cannot use {}: {}", path.display(), e.message),
                    ),
                ));
                continue;
            }
        };
        match docs::parse(&text, &path) {
            Ok(docs) => {
                for d in &docs {
                    read_object(&d.value, &d.ctx(&path), "", objs, errors);
                }
            }
            Err(e) => errors.extend(e.0),
        }
    }
}

/// Where the scenario format has an object, a list or a mapping must be written. serde would
/// also read a struct from a list (`model: []` as an empty model, `[80, TCP]` as a port), which
/// hides mistakes, so such shapes are refused before deserializing.
fn format_shape_errors(v: &Value) -> Vec<FieldError> {
    fn map(v: Option<&Value>, path: String, out: &mut Vec<FieldError>) -> bool {
        match v {
            None | Some(Value::Null) => false,
            Some(Value::Object(_)) => true,
            Some(_) => {
                out.push(FieldError::new(path, "must be a mapping"));
                false
            }
        }
    }
    fn each<'a>(v: Option<&'a Value>, path: &str) -> Vec<(String, &'a Value)> {
        match v {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("{path}[{i}]"), item))
                .collect(),
            _ => Vec::new(),
        }
    }
    let mut out = Vec::new();
    if map(v.get("model"), "model".into(), &mut out) {
        let m = &v["model"];
        map(m.get("upstream"), "model.upstream".into(), &mut out);
        for list in ["namespaces", "pods", "deployments"] {
            for (p, item) in each(m.get(list), &format!("model.{list}")) {
                if map(Some(item), p.clone(), &mut out) {
                    for (pp, port) in each(item.get("ports"), &format!("{p}.ports")) {
                        if !port.is_string() && !port.is_object() {
                            out.push(FieldError::new(
                                pp,
                                "must be \"PORT/PROTO\" (e.g. \"80/TCP\") or a mapping \
                                 {port, protocol, name}",
                            ));
                        }
                    }
                }
            }
        }
    }
    for (sp, step) in each(v.get("steps"), "steps") {
        if !map(Some(step), sp.clone(), &mut out) {
            continue;
        }
        for list in ["labelPods", "labelNamespaces", "expect"] {
            for (p, item) in each(step.get(list), &format!("{sp}.{list}")) {
                if map(Some(item), p.clone(), &mut out) && list == "expect" {
                    for (cp, cell) in each(item.get("cells"), &format!("{p}.cells")) {
                        map(Some(cell), cp, &mut out);
                    }
                }
            }
        }
    }
    out
}

fn load_scenario(doc: &Doc, file: &Path) -> Result<FileLoad, InputErrors> {
    let ctx = doc.ctx(file);
    let shape = format_shape_errors(&doc.value);
    if !shape.is_empty() {
        return Err(InputErrors(
            shape.iter().map(|e| ctx.field("", e)).collect(),
        ));
    }
    let sf: ScenarioFile =
        objects::typed(&doc.value).map_err(|e| InputErrors(vec![ctx.field("", &e)]))?;
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
    let name = match &sf.name {
        Some(n) => {
            if let Err(e) = names::text_name("scenario name", n) {
                errors.push(ctx.field("", &FieldError::new("name", e.to_string())));
            }
            n.clone()
        }
        None => {
            let stem = file_stem(file);
            check_stem_name(file, &stem, &mut errors);
            stem
        }
    };
    let name_at = match &sf.name {
        Some(_) => ctx.field("", &FieldError::new("name", "")),
        None => InputError::file(file, ""),
    };
    if let Some(d) = &sf.description
        && let Err(e) = names::description(d)
    {
        errors.push(ctx.field("", &FieldError::new("description", e.to_string())));
    }
    if sf.steps.len() > MAX_STEPS {
        errors.push(ctx.field(
            "",
            &FieldError::new(
                "steps",
                format!(
                    "{} steps is more than netpolc's limit of {MAX_STEPS}",
                    sf.steps.len()
                ),
            ),
        ));
        return Err(InputErrors(errors));
    }
    let mut objs = Objects::default();
    model_objects(&sf.model, &ctx, &mut objs, &mut errors);
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
    let (mut state, mut warnings) = objects::resolve(objs, &mut errors);
    let mut cluster_warnings: Vec<InputError> = Vec::new();
    add_externals(&sf.model.externals, &ctx, &mut state.model, &mut errors);
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    if state.model.pods.is_empty() {
        return Err(ctx
            .field(
                "",
                &FieldError::new("model", format!("the scenario {NO_POD}")),
            )
            .into());
    }
    let steps_count = sf.steps.len().max(1);
    if state.model.pods.len().saturating_mul(steps_count) > MAX_POD_STEPS {
        return Err(ctx
            .field(
                "",
                &FieldError::new(
                    "steps",
                    format!(
                        "{} pods × {steps_count} steps is more than netpolc's limit of \
                         {MAX_POD_STEPS} pods summed over the steps",
                        state.model.pods.len()
                    ),
                ),
            )
            .into());
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
    // Policies written with pod address templates (`<ns/pod>/N`), as written (see
    // `scenario::address`); they are resolved with the model's addresses below.
    let mut templates: BTreeMap<PolicyRef, serde_json::Value> = BTreeMap::new();
    let mut step_names = BTreeSet::new();
    let mut expectation_cells: usize = 0;
    for (si, spec) in step_specs.iter().enumerate() {
        let base = format!("steps[{si}]");
        let mut errs = Vec::new();
        named(names::text_name("step name", &spec.name), "name", &mut errs);
        if let Some(d) = &spec.description {
            named(names::description(d), "description", &mut errs);
        }
        if !step_names.insert(spec.name.clone()) {
            errs.push(FieldError::new(
                "name",
                format!("step name {:?} is used twice", spec.name),
            ));
        }
        errors.extend(errs.iter().map(|e| ctx.field(&base, e)));
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
            let templated = super::address::has_templates(v);
            let resolved = if templated {
                match super::address::resolve(v, |r| state.model.pod(r).map(|p| p.ip)) {
                    Ok(r) => r,
                    Err(es) => {
                        errors.extend(es.iter().map(|e| ctx.field(&abase, e)));
                        continue;
                    }
                }
            } else {
                v.clone()
            };
            read_object(&resolved, &ctx, &abase, &mut objs, &mut errors);
            warnings.append(objs.warnings);
            for (p, _) in objs.cluster {
                changes.push(Change::ApplyClusterPolicy {
                    policy: p.key.clone(),
                });
                state.cluster.insert(p.key.clone(), p);
            }
            for (p, _) in objs.policies {
                if templated {
                    templates.insert(p.key.clone(), v.clone());
                } else {
                    templates.remove(&p.key);
                }
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
        apply_deletes(spec, &base, &ctx, &mut state, &mut changes, &mut errors);
        apply_relabels(spec, &base, &ctx, &mut state, &mut changes, &mut errors);
        // A deleted policy's template goes with it.
        templates.retain(|k, _| state.policies.contains_key(k));
        let probes = spec
            .probes
            .clone()
            .or_else(|| default_probes.clone())
            .unwrap_or_else(|| state.model.declared_probes());
        let mut expectations = Vec::new();
        let pods = state.model.pods.len();
        for (ei, e) in spec.expect.iter().enumerate() {
            let ebase = format!("{base}.expect[{ei}]");
            let tables = match (&e.probe, &e.probes) {
                (Some(_), None) => 1,
                (None, Some(ps)) => ps.len(),
                _ => probes.len(),
            };
            expectation_cells = expectation_cells
                .saturating_add(pods.saturating_mul(pods).saturating_mul(tables.max(1)));
            if expectation_cells > MAX_EXPECTATION_CELLS {
                errors.push(ctx.field(
                    &ebase,
                    &FieldError::new(
                        "",
                        format!(
                            "hand-written expectations of this scenario exceed netpolc's limit \
                             of {MAX_EXPECTATION_CELLS} cells (pods² per probe, summed)"
                        ),
                    ),
                ));
                return Err(InputErrors(errors));
            }
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
            templates: templates.clone(),
        };
        // Not capped per kind like object warnings: each names a different step's cells.
        let step_at = FieldError::new("name", "");
        cluster_warnings.extend(
            super::cluster::warnings(&step)
                .into_iter()
                .map(|w| InputError {
                    message: w,
                    ..ctx.field(&base, &step_at)
                }),
        );
        steps.push(step);
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors));
    }
    Ok(FileLoad {
        loaded: Loaded {
            scenarios: vec![Scenario {
                name,
                source: file.display().to_string(),
                description: sf.description,
                steps,
            }],
            warnings: {
                let mut all = warnings.into_vec();
                all.append(&mut cluster_warnings);
                all
            },
        },
        name_at,
    })
}

/// A `delete` entry: `namespace/name`, or `name` in `default`, validated as the API would.
fn policy_ref(d: &str) -> Result<PolicyRef, String> {
    let (namespace, name) = d.split_once('/').unwrap_or(("default", d));
    let mut reasons = Vec::new();
    if let Err(e) = names::namespace(namespace) {
        reasons.push(e.to_string());
    }
    if let Err(e) = names::object("NetworkPolicy", name) {
        reasons.push(e.to_string());
    }
    if reasons.is_empty() {
        Ok(PolicyRef {
            namespace: namespace.into(),
            name: name.into(),
        })
    } else {
        Err(format!(
            "{d:?} is not a valid reference NAMESPACE/NAME (or NAME in default): {}",
            reasons.join("; ")
        ))
    }
}

fn apply_deletes(
    spec: &StepSpec,
    base: &str,
    ctx: &DocCtx,
    state: &mut State,
    changes: &mut Vec<Change>,
    errors: &mut Vec<InputError>,
) {
    for (di, d) in spec.delete.iter().enumerate() {
        let path = format!("delete[{di}]");
        let key = match super::cluster::delete_target(d) {
            Ok(super::cluster::DeleteTarget::NetworkPolicy(key)) => {
                match policy_ref(&format!("{}/{}", key.namespace, key.name)) {
                    Ok(k) => k,
                    Err(m) => {
                        errors.push(ctx.field(base, &FieldError::new(path, m)));
                        continue;
                    }
                }
            }
            Ok(super::cluster::DeleteTarget::Cluster(key)) => {
                if let Err(e) = names::object(&key.kind.to_string(), &key.name) {
                    errors.push(ctx.field(base, &FieldError::new(path, e.to_string())));
                } else if state.cluster.remove(&key).is_none() {
                    errors.push(ctx.field(
                        base,
                        &FieldError::new(path, format!("no {key} exists at this step")),
                    ));
                } else {
                    changes.push(Change::DeleteClusterPolicy { policy: key });
                }
                continue;
            }
            Err(m) => {
                errors.push(ctx.field(base, &FieldError::new(path, m)));
                continue;
            }
        };
        if state.policies.remove(&key).is_none() {
            errors.push(ctx.field(
                base,
                &FieldError::new(path, format!("no NetworkPolicy {key} exists at this step")),
            ));
        } else {
            changes.push(Change::DeletePolicy { policy: key });
        }
    }
}

/// Label keys to remove, validated as label keys.
fn removed_keys(remove: &[String], errs: &mut Vec<FieldError>) {
    for (i, k) in remove.iter().enumerate() {
        named(names::label_key(k), format!("remove[{i}]"), errs);
    }
}

fn apply_relabels(
    spec: &StepSpec,
    base: &str,
    ctx: &DocCtx,
    state: &mut State,
    changes: &mut Vec<Change>,
    errors: &mut Vec<InputError>,
) {
    for (li, l) in spec.label_pods.iter().enumerate() {
        let lbase = format!("{base}.labelPods[{li}]");
        let r: PodRef = match l.pod.parse() {
            Ok(r) => r,
            Err(e) => {
                errors.push(ctx.field(&lbase, &FieldError::new("pod", format!("{e}"))));
                continue;
            }
        };
        let mut errs = Vec::new();
        objects::labels_of(Some(&l.set), "set", &mut errs);
        removed_keys(&l.remove, &mut errs);
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
        if let Err(e) = names::namespace(&l.namespace) {
            errors.push(ctx.field(&lbase, &FieldError::new("namespace", e.to_string())));
            continue;
        }
        objects::labels_of(Some(&l.set), "set", &mut errs);
        removed_keys(&l.remove, &mut errs);
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

/// A pattern's parts must be `*` or valid names, and it must match some pod of the step.
fn check_pattern(pattern: &str, model: &Model, path: String) -> Result<(), FieldError> {
    const SHAPES: &str = "patterns: *, ns/*, */pod, ns/pod";
    if pattern != "*" {
        let Some((ns, pod)) = pattern.split_once('/') else {
            return Err(FieldError::new(
                path,
                format!("{pattern:?} is not a pattern ({SHAPES})"),
            ));
        };
        let mut reasons = Vec::new();
        if ns != "*"
            && let Err(e) = crate::model::check_ref_namespace(ns)
        {
            reasons.push(e.to_string());
        }
        if pod != "*"
            && let Err(e) = names::pod(pod)
        {
            reasons.push(e.to_string());
        }
        if !reasons.is_empty() {
            return Err(FieldError::new(
                path,
                format!("{pattern:?} is not a valid pattern: {}", reasons.join("; ")),
            ));
        }
    }
    if model.pods.keys().any(|p| pattern_matches(pattern, p)) {
        Ok(())
    } else {
        Err(FieldError::new(
            path,
            format!("{pattern:?} matches no pod of this step ({SHAPES})"),
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

    /// A policy with this spec, beside one pod (an input without pods is refused).
    fn load(spec: &str) -> Result<Loaded, InputErrors> {
        load_str(
            &format!(
                "{POLICY_HEAD}spec:\n{spec}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: a, namespace: x}}\n"
            ),
            "t.yaml",
        )
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
    fn duplicates_point_at_the_name() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\n";
        let err = load_str(&format!("{pod}---\n{pod}"), "t.yaml").expect_err("duplicate");
        assert_eq!(err.0[0].document, Some(1));
        assert_eq!(err.0[0].field.as_deref(), Some("metadata.name"));
    }
}
