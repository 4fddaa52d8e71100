//! Hostile and careless inputs, through the `netpolc` binary (`expect`, and `run` on the local
//! dataplane as root with its own `--run-id`). Every case must be refused with exit 2, without a
//! panic, with a message naming the file (and document and field where there is one), leaving no
//! network namespace of its run and no side effect: the commands the mutations try to inject
//! would create a marker file and a network namespace, which must not exist afterwards.
//!
//! Part one mutates every name-bearing field of every file shipped under `scenarios/` (names,
//! namespaces, label keys and values, port names, references, patterns, free text), one mutation
//! per copy, with newlines carrying `netns …` lines, `;`, `$(…)`, backticks, quotes, spaces,
//! control characters, over-long values, upper case and non-ASCII. Part two covers the bad inputs
//! of issue 9 one by one (no pods, port 0, duplicates, wrong shapes, symlink cycles, FIFOs,
//! devices, huge files, replica and pod limits, CLI ranges, duplicate addresses, YAML bombs).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn harness_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the `run` cases use the local dataplane and must run as root; run `sudo -E cargo test --test hostile_inputs`"
    );
}

/// Runs netpolc with a deadline: a FIFO that blocks a reader must fail the test, not hang it.
fn netpolc_in(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netpolc"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the netpolc binary runs");
    // Read both pipes on threads, so a chatty child never blocks on a full pipe.
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out_pipe.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err_pipe.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netpolc {args:?} did not finish within 60 s (blocked on input?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().expect("stdout thread"),
        stderr: err_t.join().expect("stderr thread"),
    }
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A unique, valid run id for one `run` invocation of this test process.
fn run_id(n: usize) -> String {
    format!("validate-h{}-{n}", std::process::id())
}

/// Network namespaces of one run (or of the injected name) still present.
fn leftovers(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// What an injected command would leave behind.
struct Traps {
    dir: tempfile::TempDir,
    evil_netns: String,
}

impl Traps {
    fn new() -> Self {
        Traps {
            dir: tempfile::tempdir().expect("temp dir"),
            evil_netns: format!("validate-evil-{}", std::process::id()),
        }
    }

    fn marker(&self) -> PathBuf {
        self.dir.path().join("MARKER")
    }

    fn assert_untouched(&self, context: &str) {
        assert!(
            !self.marker().exists(),
            "{context}: an injected command ran (the marker file exists)"
        );
        assert!(
            leftovers(&self.evil_netns).is_empty(),
            "{context}: an injected `netns add` ran"
        );
    }
}

/// The common checks of a refusal: exit 2, no panic, nothing on stdout.
fn assert_refused(out: &Output, context: &str) -> String {
    let stderr = stderr_of(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{context}: want exit 2; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{context}: panicked:\n{stderr}"
    );
    assert!(out.stdout.is_empty(), "{context}: nothing on stdout");
    stderr
}

/// An error line names `file` with its document, line and field.
fn names_field(stderr: &str, file: &str) -> bool {
    stderr.lines().any(|l| {
        l.contains(&format!("{file}: document "))
            && l.contains(", line ")
            && l.contains(": field ")
            && !l.contains("is already used by")
    })
}

// ------------------------------------------------------------------------------------------
// Part one: mutations of the shipped scenarios.

/// What rules a field obeys, which decides which mutations must be refused there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Namespaces, pod/object/container/port names, references and patterns: DNS-like.
    Dns,
    /// Label keys and values (upper case is valid there).
    Label,
    /// Scenario and step names: free text, but single-line and printable.
    Text,
    /// Descriptions: newlines allowed, other control characters not.
    Description,
    /// Container images: no whitespace or control characters.
    Image,
}

struct Mutation {
    name: &'static str,
    classes: &'static [Class],
    apply: fn(&str, &Traps) -> String,
}

const ALL: &[Class] = &[
    Class::Dns,
    Class::Label,
    Class::Text,
    Class::Description,
    Class::Image,
];
const NAMES: &[Class] = &[Class::Dns, Class::Label];
const NAMES_AND_IMAGE: &[Class] = &[Class::Dns, Class::Label, Class::Image];

fn mutations() -> Vec<Mutation> {
    vec![
        Mutation {
            name: "newline + netns lines",
            classes: &[Class::Dns, Class::Label, Class::Text, Class::Image],
            apply: |v, t| {
                format!(
                    "{v}\nnetns add {ns}\nnetns exec {ns} touch {m}",
                    ns = t.evil_netns,
                    m = t.marker().display()
                )
            },
        },
        Mutation {
            name: "semicolon",
            classes: NAMES_AND_IMAGE,
            apply: |v, t| format!("{v};touch {}", t.marker().display()),
        },
        Mutation {
            name: "command substitution",
            classes: NAMES_AND_IMAGE,
            apply: |v, t| format!("{v}$(touch {})", t.marker().display()),
        },
        Mutation {
            name: "backticks",
            classes: NAMES_AND_IMAGE,
            apply: |v, t| format!("{v}`touch {}`", t.marker().display()),
        },
        Mutation {
            name: "quotes",
            classes: NAMES,
            apply: |v, _| format!("{v}'\"x"),
        },
        Mutation {
            name: "space",
            classes: NAMES_AND_IMAGE,
            apply: |v, _| format!("{v} x"),
        },
        Mutation {
            name: "terminal escape",
            classes: ALL,
            apply: |v, _| format!("{v}\u{1b}[2J\u{1b}]0;owned\u{7}"),
        },
        Mutation {
            name: "carriage return",
            classes: &[Class::Dns, Class::Label, Class::Text, Class::Image],
            apply: |v, _| format!("{v}\rforged"),
        },
        Mutation {
            name: "bidi override",
            classes: ALL,
            apply: |v, _| format!("{v}\u{202e}x"),
        },
        Mutation {
            name: "NUL",
            classes: ALL,
            apply: |v, _| format!("{v}\u{0}x"),
        },
        Mutation {
            name: "over-long",
            classes: &[Class::Dns, Class::Label, Class::Text],
            apply: |v, _| format!("{v}{}", "a".repeat(300)),
        },
        Mutation {
            name: "upper case",
            classes: &[Class::Dns],
            apply: |v, _| v.to_uppercase(),
        },
        Mutation {
            name: "non-ASCII",
            classes: NAMES,
            apply: |v, _| format!("{v}é"),
        },
        Mutation {
            name: "empty",
            classes: &[Class::Dns, Class::Text],
            apply: |_, _| String::new(),
        },
    ]
}

/// Where a string sits in a document, for mutation: a value, or the key of a label map.
#[derive(Clone, Debug)]
enum Site {
    Value(Vec<Step>),
    Key(Vec<Step>, String),
}

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn classify(path: &[Step], scenario: bool) -> Option<Class> {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Index(_) => None,
        })
        .collect();
    let last = *keys.last()?;
    let parent = keys.len().checked_sub(2).map(|i| keys[i]);
    let last_is_index = matches!(path.last(), Some(Step::Index(_)));
    if matches!(parent, Some("labels" | "set" | "matchLabels")) && !last_is_index {
        return Some(Class::Label);
    }
    if last_is_index {
        return match last {
            "namespaces" | "pods" if parent == Some("upstream") => Some(Class::Dns),
            "delete" => Some(Class::Dns),
            "remove" | "values" => Some(Class::Label),
            _ => None,
        };
    }
    match last {
        "key" if parent == Some("matchExpressions") => Some(Class::Label),
        "namespace" | "pod" | "from" | "to" => Some(Class::Dns),
        // A named port in a policy.
        "port" => Some(Class::Dns),
        "image" => Some(Class::Image),
        "description" => Some(Class::Description),
        "name" if scenario && (keys.len() == 1 || (keys.len() == 2 && keys[0] == "steps")) => {
            Some(Class::Text)
        }
        // A cluster-wide policy's rule name: free text to the API, single-line to netpolc.
        "name" if matches!(parent, Some("ingress" | "egress")) => Some(Class::Text),
        "name" => Some(Class::Dns),
        _ => None,
    }
}

fn sites(v: &Value, path: &mut Vec<Step>, scenario: bool, out: &mut Vec<(Site, Class)>) {
    match v {
        Value::String(_) => {
            if let Some(c) = classify(path, scenario) {
                out.push((Site::Value(path.clone()), c));
            }
        }
        Value::Object(m) => {
            let is_label_map = matches!(
                path.last(),
                Some(Step::Key(k)) if k == "labels" || k == "set" || k == "matchLabels"
            );
            for (k, child) in m {
                if is_label_map {
                    out.push((Site::Key(path.clone(), k.clone()), Class::Label));
                }
                path.push(Step::Key(k.clone()));
                sites(child, path, scenario, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(Step::Index(i));
                sites(child, path, scenario, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(v, |cur, s| match s {
        Step::Key(k) => &mut cur[k.as_str()],
        Step::Index(i) => &mut cur[*i],
    })
}

/// Applies `f` to the string at `site`; `None` when the mutation leaves it unchanged.
fn mutate(doc: &Value, site: &Site, f: impl Fn(&str) -> String) -> Option<Value> {
    let mut doc = doc.clone();
    match site {
        Site::Value(path) => {
            let slot = at_mut(&mut doc, path);
            let old = slot.as_str()?.to_string();
            let new = f(&old);
            if new == old {
                return None;
            }
            *slot = Value::String(new);
        }
        Site::Key(path, key) => {
            let map = at_mut(&mut doc, path).as_object_mut()?;
            let new = f(key);
            if &new == key {
                return None;
            }
            let value = map.remove(key)?;
            map.insert(new, value);
        }
    }
    Some(doc)
}

/// Every YAML file under `scenarios/`, relative to it.
fn shipped_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("read scenarios")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                walk(&e, root, out);
            } else if e.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(e.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    let root = harness_dir().join("../scenarios");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

/// The documents of a shipped file, parsed as netpolc does (YAML 1.2 booleans).
fn documents(text: &str) -> Vec<Value> {
    text.split("\n---")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| {
            serde_saphyr::from_str_with_options::<Value>(
                d,
                serde_saphyr::options! { strict_booleans: true },
            )
            .expect("shipped files parse")
        })
        .collect()
}

/// Which mutations a field gets. Fields of the model (namespaces, pods, deployments, the
/// upstream shorthand) and of manifests — the names that become network namespaces, links and
/// nft identifiers — get every applicable mutation; the others get two, rotating with `seed`
/// so that every mutation still meets every kind of field across the files. Deterministic,
/// and it keeps the suite to a few thousand copies instead of fifteen thousand.
fn sample(applicable: &[usize], site: &Site, seed: usize) -> Vec<usize> {
    if is_critical(site) || applicable.len() <= 2 {
        return applicable.to_vec();
    }
    let n = applicable.len();
    (0..2).map(|k| applicable[(seed + k * n / 2) % n]).collect()
}

/// A field of the model or of a manifest object's metadata.
fn is_critical(site: &Site) -> bool {
    let path = match site {
        Site::Value(p) | Site::Key(p, _) => p,
    };
    matches!(path.first(), Some(Step::Key(k)) if k == "model" || k == "metadata")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("copy");
        }
    }
}

#[test]
fn every_name_bearing_field_of_every_shipped_file_refuses_every_mutation() {
    require_root();
    let traps = Traps::new();
    let work = tempfile::tempdir().expect("temp dir");
    let tree = work.path().join("scenarios");
    copy_tree(&harness_dir().join("../scenarios"), &tree);
    let muts = mutations();
    let mut total = 0;
    let mut per_mutation: BTreeMap<&str, usize> = BTreeMap::new();
    let files = shipped_files();
    assert!(files.len() > 60, "the shipped scenarios are found");
    for (fi, rel) in files.iter().enumerate() {
        let text = std::fs::read_to_string(tree.join(rel)).expect("read");
        let docs = documents(&text);
        let scenario = docs.len() == 1 && docs[0]["apiVersion"] == "netpolc/v1";
        let mut found = Vec::new();
        for (di, d) in docs.iter().enumerate() {
            let mut s = Vec::new();
            sites(d, &mut Vec::new(), scenario, &mut s);
            found.extend(s.into_iter().map(|x| (di, x)));
        }
        assert!(
            !found.is_empty(),
            "{}: no name-bearing field found",
            rel.display()
        );
        let dir = tree.join(rel).parent().expect("parent").to_path_buf();
        let stem = rel
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("stem")
            .to_string();
        let mut copies = Vec::new();
        for (si, (di, (site, class))) in found.iter().enumerate() {
            let applicable: Vec<usize> = (0..muts.len())
                .filter(|&mi| muts[mi].classes.contains(class))
                .collect();
            let chosen = sample(&applicable, site, fi + si);
            for mi in chosen {
                let m = &muts[mi];
                let Some(mutated) = mutate(&docs[*di], site, |v| (m.apply)(v, &traps)) else {
                    continue;
                };
                let mut all = docs.clone();
                all[*di] = mutated;
                // Unique scenario names, so a duplicate-name error can never stand in for the
                // refusal of the mutation itself.
                let at_name = matches!(site, Site::Value(p) if matches!(p.as_slice(), [Step::Key(k)] if k == "name"));
                if scenario && !at_name {
                    all[0]["name"] = Value::String(format!("{stem}-{si}-{mi}"));
                }
                // JSON text (valid YAML, and detected as JSON): strings carry any character.
                let body: Vec<String> = all
                    .iter()
                    .map(|d| serde_json::to_string_pretty(d).expect("JSON"))
                    .collect();
                let name = format!("{stem}.mut-{si}-{mi}.yaml");
                std::fs::write(dir.join(&name), body.join("\n")).expect("write");
                copies.push((
                    name,
                    format!("{site:?}"),
                    m.name,
                    is_critical(site) || total % 8 == 0,
                ));
                total += 1;
                *per_mutation.entry(m.name).or_default() += 1;
            }
        }
        let names: Vec<&str> = copies.iter().map(|c| c.0.as_str()).collect();
        let context = rel.display().to_string();
        // One invocation per shipped file: loading goes on past bad files, so each copy must
        // show its own error.
        let mut args = vec!["expect"];
        args.extend(&names);
        let out = netpolc_in(&dir, &args);
        let stderr = assert_refused(&out, &format!("expect, mutations of {context}"));
        let unrefused: Vec<String> = copies
            .iter()
            .filter(|(n, _, _, _)| !names_field(&stderr, n))
            .map(|(n, site, m, _)| format!("{n}: {m} at {site}"))
            .collect();
        assert!(
            unrefused.is_empty(),
            "mutations of {context} not refused with file, document, line and field:\n{}\n\nstderr:\n{stderr}",
            unrefused.join("\n")
        );
        // Through `run` on the local dataplane: every copy whose mutation is in the model or a
        // manifest's metadata (what becomes namespaces and links), and every eighth other one.
        let id = run_id(fi);
        let mut args = vec!["run", "--run-id", &id, "--quiet"];
        args.extend(copies.iter().filter(|c| c.3).map(|c| c.0.as_str()));
        let out = netpolc_in(&dir, &args);
        assert_refused(&out, &format!("run, mutations of {context}"));
        assert!(
            leftovers(&format!("netpolc-{id}--")).is_empty(),
            "run {id} left network namespaces"
        );
        traps.assert_untouched(&context);
    }
    // Every kind of mutation was really applied, to a good number of fields.
    for m in &muts {
        assert!(
            per_mutation.get(m.name).copied().unwrap_or(0) >= 20,
            "mutation {:?} applied only {:?} times",
            m.name,
            per_mutation.get(m.name)
        );
    }
    eprintln!("{total} mutated copies refused, by mutation: {per_mutation:?}");
    assert!(total > 1000, "{total} copies");
}

// ------------------------------------------------------------------------------------------
// Part two: the bad inputs of issue 9, one by one.

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Case {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) -> &Self {
        let p = self.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
        self
    }

    /// `expect ARGS` and `run ARGS` must both be refused; returns expect's stderr.
    fn refused(&self, args: &[&str], n: usize) -> String {
        let mut ea = vec!["expect"];
        ea.extend(args);
        let stderr = assert_refused(&netpolc_in(self.path(), &ea), &format!("expect {args:?}"));
        require_root();
        let id = run_id(1000 + n);
        let mut ra = vec!["run", "--run-id", &id, "--quiet"];
        ra.extend(args);
        assert_refused(&netpolc_in(self.path(), &ra), &format!("run {args:?}"));
        assert!(
            leftovers(&format!("netpolc-{id}--")).is_empty(),
            "run {args:?} left network namespaces"
        );
        assert!(
            !Path::new("/run/netpolc")
                .join(format!("{id}.lease"))
                .exists(),
            "run {args:?} left its lease file"
        );
        stderr
    }
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\n\
                   spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}\n";

fn scenario(model: &str) -> String {
    format!("apiVersion: netpolc/v1\nkind: Scenario\nmodel:\n{model}")
}

#[test]
fn inputs_without_pods_are_bad_input() {
    let c = Case::new();
    std::fs::create_dir(c.path().join("empty")).expect("mkdir");
    c.write("texts/readme.txt", "not yaml\n");
    c.write(
        "ignored.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    c.write(
        "policies.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n\
         spec: {podSelector: {}}\n",
    );
    c.write("comments.yaml", "# nothing here\n---\n");
    c.write(
        "zero.yaml",
        &scenario("  deployments: [{name: web, replicas: 0}]\n"),
    );
    c.write("empty-model.yaml", &scenario("  {}\n"));
    let e = c.refused(&["empty"], 1);
    assert!(e.contains("empty: holds no *.yaml or *.yml file"), "{e}");
    let e = c.refused(&["texts"], 2);
    assert!(e.contains("texts: holds no *.yaml or *.yml file"), "{e}");
    for (i, f) in ["ignored.yaml", "policies.yaml", "comments.yaml"]
        .iter()
        .enumerate()
    {
        let e = c.refused(&[f], 3 + i);
        assert!(
            e.contains(&format!("{f}: yields no pod"))
                || e.contains(&format!("{f}: no YAML or JSON documents")),
            "{e}"
        );
    }
    for (i, f) in ["zero.yaml", "empty-model.yaml"].iter().enumerate() {
        let e = c.refused(&[f], 6 + i);
        assert!(
            e.contains(&format!(
                "{f}: document 1 (index 0), line 3: field model: the scenario yields no pod"
            )),
            "{e}"
        );
    }
}

#[test]
fn port_zero_is_refused_everywhere() {
    let c = Case::new();
    c.write(
        "manifest.yaml",
        &POD.replace("containerPort: 80", "containerPort: 0"),
    );
    c.write("upstream.yaml", &scenario("  upstream: {ports: [0]}\n"));
    c.write(
        "long.yaml",
        &scenario("  pods: [{name: a, ports: [{port: 0}]}]\n"),
    );
    c.write(
        "short.yaml",
        &scenario("  pods: [{name: a, ports: [\"0/TCP\"]}]\n"),
    );
    for (i, (f, field)) in [
        ("manifest.yaml", "spec.containers[0].ports[0].containerPort"),
        ("upstream.yaml", "model.upstream.ports[0]"),
        ("long.yaml", "model.pods[0].ports[0].port"),
        ("short.yaml", "model.pods[0].ports[0]"),
    ]
    .iter()
    .enumerate()
    {
        let e = c.refused(&[f], 10 + i);
        assert!(e.contains(&format!("{f}: document 1 (index 0)")), "{e}");
        assert!(e.contains(&format!(": field {field}")), "{f}: {e}");
    }
    c.write("ok.yaml", POD);
    let e = c.refused(&["ok.yaml", "--probe", "0/TCP"], 14);
    assert!(e.contains("--probe"), "{e}");
}

#[test]
fn duplicate_namespaces_and_scenario_names_are_refused() {
    let c = Case::new();
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n";
    c.write("two-ns.yaml", &format!("{ns}---\n{ns}---\n{POD}"));
    c.write(
        "model-ns.yaml",
        &scenario("  namespaces: [{name: x}, {name: x}]\n  pods: [{namespace: x, name: a}]\n"),
    );
    c.write(
        "upstream-ns.yaml",
        &scenario("  upstream: {namespaces: [x, y, x]}\n"),
    );
    c.write(
        "upstream-pods.yaml",
        &scenario("  upstream: {pods: [a, a]}\n"),
    );
    let named = |n: &str| {
        format!(
            "apiVersion: netpolc/v1\nkind: Scenario\nname: same\nmodel:\n  pods: [{{name: {n}}}]\n"
        )
    };
    c.write("a/one.yaml", &named("a"));
    c.write("b/two.yaml", &named("b"));
    for (i, (args, want)) in [
        (vec!["two-ns.yaml"], "two-ns.yaml: document 2 (index 1), line 7: field metadata.name: namespace \"x\" is declared twice"),
        (vec!["model-ns.yaml"], "field model.namespaces[1].name: namespace \"x\" is declared twice"),
        (vec!["upstream-ns.yaml"], "field model.upstream.namespaces[2]: is listed twice"),
        (vec!["upstream-pods.yaml"], "field model.upstream.pods[1]: is listed twice"),
        (vec!["a", "b"], "b/two.yaml: document 1 (index 0), line 3: field name: scenario name \"same\" is already used by a/one.yaml"),
    ]
    .iter()
    .enumerate()
    {
        let e = c.refused(args, 20 + i);
        assert!(e.contains(want), "{args:?}: want {want:?} in\n{e}");
    }
}

#[test]
fn wrong_shapes_are_refused_with_their_field() {
    let c = Case::new();
    let cases = [
        ("model: []\n", "model", "must be a mapping"),
        (
            "model: {pods: [[default, a]]}\n",
            "model.pods[0]",
            "must be a mapping",
        ),
        (
            "model: {pods: [{name: a, ports: [[80, TCP]]}]}\n",
            "model.pods[0].ports[0]",
            "must be \"PORT/PROTO\"",
        ),
        (
            "model: {pods: [{name: a, ports: [80]}]}\n",
            "model.pods[0].ports[0]",
            "must be \"PORT/PROTO\"",
        ),
        // Each form of a port says what is wrong with it (serde's untagged enums would not).
        (
            "model: {pods: [{name: a, ports: [\"80/TPC\"]}]}\n",
            "model.pods[0].ports[0]",
            "unknown protocol \"TPC\"",
        ),
        (
            "model: {pods: [{name: a, ports: [\"0/TCP\"]}]}\n",
            "model.pods[0].ports[0]",
            "port \"0\" is not a number from 1 to 65535",
        ),
        (
            "model: {deployments: [{name: a, ports: [{port: 80, protcol: TCP}]}]}\n",
            "model.deployments[0].ports[0].protcol",
            "unknown field `protcol`",
        ),
        (
            "model: {upstream: []}\n",
            "model.upstream",
            "must be a mapping",
        ),
        (
            "model: {upstream: {}}\nsteps: {}\n",
            "steps",
            "invalid type",
        ),
        (
            "model: {upstream: {}}\nsteps: [[a]]\n",
            "steps[0]",
            "must be a mapping",
        ),
        ("model: {pods: 5}\n", "model.pods", "invalid type"),
        (
            "model: {pods: [{name: a, labels: [x]}]}\n",
            "model.pods[0].labels",
            "invalid type",
        ),
        (
            "model: {pods: [{name: a, labels: {k: 1}}]}\n",
            "model.pods[0].labels.k",
            "invalid type",
        ),
        (
            "model: {deployments: [{name: a, replicas: -1}]}\n",
            "model.deployments[0].replicas",
            "invalid value",
        ),
        (
            "model: {upstream: {}}\nprobes: 80/TCP\n",
            "probes",
            "invalid type",
        ),
    ];
    for (i, (body, field, msg)) in cases.iter().enumerate() {
        let f = format!("shape-{i}.yaml");
        c.write(
            &f,
            &format!("apiVersion: netpolc/v1\nkind: Scenario\n{body}"),
        );
        let e = c.refused(&[&f], 30 + i);
        assert!(
            e.contains(&format!("{f}: document 1 (index 0), line"))
                && e.contains(&format!(": field {field}: {msg}")),
            "{body}: want field {field} ({msg}) in\n{e}"
        );
    }
    c.write("scalar.yaml", "just a string\n");
    let e = c.refused(&["scalar.yaml"], 45);
    assert!(
        e.contains("scalar.yaml: document 1 (index 0), line 1: expected a Kubernetes object"),
        "{e}"
    );
}

#[test]
fn symlink_cycles_walk_each_file_once() {
    let c = Case::new();
    c.write("tree/a.yaml", POD);
    std::os::unix::fs::symlink(c.path().join("tree"), c.path().join("tree/loop")).expect("symlink");
    std::fs::create_dir(c.path().join("tree/sub")).expect("mkdir");
    std::os::unix::fs::symlink("..", c.path().join("tree/sub/up")).expect("symlink");
    std::os::unix::fs::symlink(
        c.path().join("tree/a.yaml"),
        c.path().join("tree/sub/again.yaml"),
    )
    .expect("symlink");
    let out = netpolc_in(
        c.path(),
        &["expect", "tree", "tree/a.yaml", "--format", "json"],
    );
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let sources: Vec<&str> = doc["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .filter_map(|s| s["source"].as_str())
        .collect();
    assert_eq!(sources, ["tree/a.yaml"], "one file, read once");
}

#[test]
fn fifos_devices_and_huge_files_are_refused_without_blocking() {
    let c = Case::new();
    let fifo = c.path().join("pipe.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    std::fs::create_dir(c.path().join("dir")).expect("mkdir");
    nix::unistd::mkfifo(
        &c.path().join("dir/pipe.yaml"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .expect("mkfifo");
    c.write("dir/ok.yaml", POD);
    std::os::unix::fs::symlink("/dev/zero", c.path().join("zero.yaml")).expect("symlink");
    let huge = std::fs::File::create(c.path().join("huge.yaml")).expect("create");
    huge.set_len(64 * 1024 * 1024 + 1).expect("sparse file");
    c.write(
        "via-manifests.yaml",
        &scenario("  manifests: [pipe.yaml]\n  pods: [{name: a}]\n"),
    );
    for (i, (args, want)) in [
        (vec!["pipe.yaml"], "pipe.yaml: is a FIFO"),
        (vec!["dir"], "dir/pipe.yaml: is a FIFO"),
        (vec!["/dev/zero"], "/dev/zero: is a character device"),
        (vec!["zero.yaml"], "zero.yaml: is a character device"),
        (
            vec!["huge.yaml"],
            "huge.yaml: is 67108865 bytes; netpolc reads files of at most 64 MiB",
        ),
        (
            vec!["via-manifests.yaml"],
            "field model.manifests[0]: cannot use",
        ),
    ]
    .iter()
    .enumerate()
    {
        let e = c.refused(args, 50 + i);
        assert!(e.contains(want), "{args:?}: want {want:?} in\n{e}");
    }
}

#[test]
fn replica_and_pod_counts_over_the_limits_are_refused_before_allocating() {
    let c = Case::new();
    c.write(
        "max-u32.yaml",
        &scenario("  deployments: [{name: web, replicas: 4294967295}]\n"),
    );
    let deploy = |name: &str, replicas: u64| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: x}}\nspec:\n  \
             replicas: {replicas}\n  selector: {{matchLabels: {{app: w}}}}\n  template:\n    \
             metadata: {{labels: {{app: w}}}}\n    spec: {{containers: [{{name: c, image: i}}]}}\n"
        )
    };
    c.write("manifest-replicas.yaml", &deploy("web", 2_147_483_647));
    let six: Vec<String> = (0..6).map(|i| deploy(&format!("w{i}"), 1000)).collect();
    c.write("total.yaml", &six.join("---\n"));
    c.write(
        "upstream-product.yaml",
        &scenario(&format!(
            "  upstream:\n    namespaces: [{}]\n    pods: [{}]\n",
            (0..80)
                .map(|i| format!("n{i}"))
                .collect::<Vec<_>>()
                .join(", "),
            (0..80)
                .map(|i| format!("p{i}"))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    );
    for (i, (f, want)) in [
        ("max-u32.yaml", "field model.deployments[0].replicas: 4294967295 is more than netpolc's limit of 1000 replicas"),
        ("manifest-replicas.yaml", "field spec.replicas: 2147483647 is more than netpolc's limit of 1000 replicas"),
        ("total.yaml", "the model has 6000 pods (0 pods and 6000 workload replicas), more than netpolc's limit of 5000"),
        ("upstream-product.yaml", "field model.upstream: 80 namespaces × 80 pods is more than netpolc's limit of 5000 pods"),
    ]
    .iter()
    .enumerate()
    {
        let e = c.refused(&[f], 60 + i);
        assert!(e.contains(want), "{f}: want {want:?} in\n{e}");
    }
}

#[test]
fn probe_and_step_timeouts_and_attempts_outside_their_ranges_are_refused() {
    require_root();
    let seed = harness_dir().join("../scenarios/seed/frontend-backend.yaml");
    let seed = seed.to_str().expect("utf8");
    let cases: [(&str, &str); 9] = [
        ("--probe-timeout-ms", "0"),
        ("--probe-timeout-ms", "1"),
        ("--probe-timeout-ms", "49"),
        ("--probe-timeout-ms", "120001"),
        ("--probe-timeout-ms", "18446744073709551615"),
        ("--step-timeout-ms", "0"),
        ("--step-timeout-ms", "18446744073709551615"),
        ("--attempts", "0"),
        ("--attempts", "11"),
    ];
    for (i, (flag, value)) in cases.iter().enumerate() {
        let id = run_id(70 + i);
        let out = netpolc_in(harness_dir(), &["run", seed, "--run-id", &id, flag, value]);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("is not in"),
            "{flag} {value}: {stderr}"
        );
        assert!(leftovers(&format!("netpolc-{id}--")).is_empty());
    }
}

#[test]
fn duplicate_pod_addresses_name_file_document_and_field() {
    let c = Case::new();
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x}}\nstatus:\n  podIP: 10.1.2.3\n"
        )
    };
    c.write("manifest.yaml", &format!("{}---\n{}", pod("a"), pod("b")));
    c.write(
        "scenario.yaml",
        &scenario("  pods:\n    - {name: a, ip: 10.0.0.1}\n    - name: b\n      ip: 10.0.0.1\n"),
    );
    let e = c.refused(&["manifest.yaml"], 80);
    assert!(
        e.contains("manifest.yaml: document 2 (index 1), line 11: field status.podIP: address 10.1.2.3 is already the address of pod x/a"),
        "{e}"
    );
    let e = c.refused(&["scenario.yaml"], 81);
    assert!(
        e.contains("scenario.yaml: document 1 (index 0), line 7: field model.pods[1].ip: address 10.0.0.1 is already the address of pod default/a"),
        "{e}"
    );
}

#[test]
fn yaml_bombs_deep_nesting_and_binary_files_are_refused() {
    let c = Case::new();
    let mut bomb = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {}}\nx0: &x0 [a, a, a, a, a, a, a, a, a, a]\n",
    );
    for i in 1..10 {
        bomb.push_str(&format!(
            "x{i}: &x{i} [*x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}]\n",
            p = i - 1
        ));
    }
    c.write("bomb.yaml", &bomb);
    c.write(
        "deep.yaml",
        &format!("{}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
    );
    c.write(
        "deep.json",
        &format!("{}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
    );
    std::fs::write(
        c.path().join("binary.yaml"),
        [0x7f_u8, b'E', b'L', b'F', 0xff, 0xfe, 0, 0],
    )
    .expect("write");
    c.write(
        "nul.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: \"a\0\", namespace: x}\n",
    );
    for (i, f) in [
        "bomb.yaml",
        "deep.yaml",
        "deep.json",
        "binary.yaml",
        "nul.yaml",
    ]
    .iter()
    .enumerate()
    {
        let e = c.refused(&[f], 90 + i);
        assert!(e.contains(&format!("{f}:")), "{f}: {e}");
    }
}

#[test]
fn control_characters_in_free_text_are_refused() {
    let c = Case::new();
    let cases = [
        ("name: \"seed\\e[2J\"\n", "name"),
        ("description: \"ok\\e]0;owned\\a\"\n", "description"),
        ("steps: [{name: \"one\\ntwo\"}]\n", "steps[0].name"),
        (
            "steps: [{name: s, description: \"x\\u202Ey\"}]\n",
            "steps[0].description",
        ),
        ("steps: [{name: \"\"}]\n", "steps[0].name"),
    ];
    for (i, (extra, field)) in cases.iter().enumerate() {
        let f = format!("text-{i}.yaml");
        c.write(
            &f,
            &format!("apiVersion: netpolc/v1\nkind: Scenario\nmodel: {{upstream: {{}}}}\n{extra}"),
        );
        let e = c.refused(&[&f], 100 + i);
        assert!(e.contains(&format!(": field {field}: ")), "{extra}: {e}");
        assert!(
            e.lines()
                .all(|l| l.starts_with("error:") || l.starts_with("  ")),
            "no forged line: {e:?}"
        );
    }
    // A file name is printed escaped too.
    c.write("bad\nname.yaml", "x: [\n");
    let out = netpolc_in(c.path(), &["expect", "bad\nname.yaml"]);
    let e = assert_refused(&out, "file name with a newline");
    assert!(e.contains("bad\\nname.yaml: document 1"), "{e}");
}

/// Arguments the command line itself refuses (unknown flags, subcommands, values) are quoted
/// by the parser: a carriage return, a bidi override or a bell in one must come out escaped.
#[test]
fn refused_command_line_arguments_are_printed_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec!["run", "--a\rforged\u{202e}x\u{7}"],
        vec!["ru\rforged\u{202e}"],
        vec!["expect", "--probe", "8\r0/TCP\u{202e}"],
    ] {
        let out = netpolc_in(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            !e.contains(['\r', '\u{202e}', '\u{7}']),
            "{args:?} printed raw: {e:?}"
        );
        assert!(e.contains("\\r") || e.contains("\\u{"), "{args:?}: {e:?}");
    }
}

#[test]
fn the_four_injection_fields_of_issue_9_are_refused_before_any_namespace_exists() {
    require_root();
    let traps = Traps::new();
    let c = Case::new();
    let inject = format!(
        "\"x\\nnetns add {ns}\\nnetns exec {ns} touch {m}\"",
        ns = traps.evil_netns,
        m = traps.marker().display()
    );
    c.write(
        "upstream-ns.yaml",
        &scenario(&format!("  upstream: {{namespaces: [{inject}]}}\n")),
    );
    c.write(
        "upstream-pods.yaml",
        &scenario(&format!("  upstream: {{pods: [{inject}]}}\n")),
    );
    c.write(
        "deploy-ns.yaml",
        &scenario(&format!(
            "  deployments: [{{namespace: {inject}, name: web}}]\n"
        )),
    );
    c.write(
        "manifest-deploy.yaml",
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {inject}\nspec:\n  \
             selector: {{matchLabels: {{app: w}}}}\n  template:\n    metadata: {{labels: {{app: w}}}}\n    \
             spec: {{containers: [{{name: c, image: i}}]}}\n"
        ),
    );
    for (i, (f, field)) in [
        ("upstream-ns.yaml", "model.upstream.namespaces[0]"),
        ("upstream-pods.yaml", "model.upstream.pods[0]"),
        ("deploy-ns.yaml", "model.deployments[0].namespace"),
        ("manifest-deploy.yaml", "metadata.namespace"),
    ]
    .iter()
    .enumerate()
    {
        let e = c.refused(&[f], 110 + i);
        assert!(
            e.contains(&format!("{f}: document 1 (index 0), line")),
            "{e}"
        );
        assert!(e.contains(&format!(": field {field}: ")), "{f}: {e}");
        assert!(
            e.contains("\\nnetns add"),
            "the value is shown escaped: {e}"
        );
        traps.assert_untouched(f);
    }
}

#[test]
fn explain_refuses_invalid_pod_references() {
    let seed = harness_dir().join("../scenarios/seed/frontend-backend.yaml");
    let seed = seed.to_str().expect("utf8");
    for (flag, bad) in [
        ("--from", "shop\n;touch x/client"),
        ("--from", "Shop/client"),
        ("--to", "shop/$(id)"),
        ("--to", "shop/backend-0/extra"),
        ("--to", "shop/"),
    ] {
        let (from, to) = if flag == "--from" {
            (bad, "shop/backend-0")
        } else {
            ("shop/client", bad)
        };
        let out = netpolc_in(
            harness_dir(),
            &[
                "explain", seed, "--from", from, "--to", to, "--probe", "80/TCP",
            ],
        );
        let stderr = assert_refused(&out, &format!("explain {flag} {bad:?}"));
        assert!(stderr.contains(flag), "{flag} {bad:?}: {stderr}");
        assert!(
            !stderr.contains("\n;touch"),
            "the value is not printed raw: {stderr}"
        );
    }
}
