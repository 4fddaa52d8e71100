//! A tiny fake Kubernetes API server for tests: plain HTTP/1.1 on 127.0.0.1, answering from
//! recorded list responses (`tests/fixtures/cluster/<name>/*.json`) and recording every request,
//! so `netpolc audit` runs end to end — kubeconfig, kube-rs client, pagination, errors — without a
//! cluster. Pod lists are served in pages (the client must follow `continue`).
//!
//! For `audit --probe` it also plays the kubelet's part: a strategic-merge patch of a pod's
//! `ephemeralcontainers` subresource is recorded, the pod then reports that container
//! terminated, and its log holds the probe script's result lines, computed per
//! `agnhost connect` line by the test's `answer(source pod, host, port)`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: String,
}

/// What a probe to `host:port` from `source` (`namespace/name`) answers: exit code and message
/// (agnhost's: 0 and empty when connected, 1 and `TIMEOUT` / `REFUSED` otherwise).
pub type Answer = dyn Fn(&str, &str, u16) -> (i32, String) + Send + Sync;

pub struct Options {
    pub fixtures: PathBuf,
    /// API paths answered with 403 Forbidden.
    pub forbidden: BTreeSet<String>,
    pub pod_page: usize,
    pub answer: Option<Box<Answer>>,
}

impl Options {
    pub fn new(fixtures: impl Into<PathBuf>) -> Self {
        Options {
            fixtures: fixtures.into(),
            forbidden: BTreeSet::new(),
            pod_page: 6,
            answer: None,
        }
    }
}

struct State {
    opts: Options,
    requests: Mutex<Vec<Request>>,
    /// (namespace, pod) → patched ephemeral containers (name → script).
    ephemeral: Mutex<BTreeMap<(String, String), BTreeMap<String, String>>>,
}

pub struct FakeApi {
    pub port: u16,
    state: Arc<State>,
    pub dir: tempfile::TempDir,
}

impl FakeApi {
    pub fn start(opts: Options) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(State {
            opts,
            requests: Mutex::new(Vec::new()),
            ephemeral: Mutex::new(BTreeMap::new()),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\n\
             users:\n- name: reader\n  user: {{token: recorded}}\ncontexts:\n- name: fake-eks\n  context: {{cluster: fake, user: reader}}\n\
             current-context: fake-eks\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).expect("kubeconfig");
        FakeApi { port, state, dir }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().expect("lock").clone()
    }

    /// Scripts patched into pods' ephemeral containers: (namespace/pod, container, script).
    pub fn ephemeral(&self) -> Vec<(String, String, String)> {
        let e = self.state.ephemeral.lock().expect("lock");
        e.iter()
            .flat_map(|((ns, p), cs)| {
                cs.iter()
                    .map(move |(c, s)| (format!("{ns}/{p}"), c.clone(), s.clone()))
            })
            .collect()
    }

    /// Runs netpolc against this server with a clean environment.
    pub fn netpolc(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_netpolc"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("KUBECONFIG", self.kubeconfig())
            .current_dir(self.dir.path())
            .output()
            .expect("netpolc runs")
    }
}

fn fixture(dir: &Path, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    serde_json::from_str(&text).ok()
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn route(st: &State, req: &Request) -> (u16, String) {
    let (code, v) = route_json(st, req);
    match v {
        Value::String(s) => (code, s),
        other => (code, other.to_string()),
    }
}

fn route_json(st: &State, req: &Request) -> (u16, Value) {
    let dir = &st.opts.fixtures;
    if st.opts.forbidden.contains(&req.path) {
        return status(
            403,
            "Forbidden",
            &format!("{} is forbidden: User \"reader\" cannot list it", req.path),
        );
    }
    let lists: &[(&str, &str)] = &[
        ("/api/v1/namespaces", "namespaces.json"),
        ("/api/v1/pods", "pods.json"),
        (
            "/apis/networking.k8s.io/v1/networkpolicies",
            "networkpolicies.json",
        ),
        ("/apis/apps/v1/replicasets", "replicasets.json"),
        ("/apis/apps/v1/deployments", "deployments.json"),
        ("/apis/apps/v1/statefulsets", "statefulsets.json"),
        ("/apis/apps/v1/daemonsets", "daemonsets.json"),
        ("/apis/batch/v1/jobs", "jobs.json"),
        ("/apis/batch/v1/cronjobs", "cronjobs.json"),
        (
            "/api/v1/replicationcontrollers",
            "replicationcontrollers.json",
        ),
    ];
    if req.method == "GET" && req.path == "/version" {
        return fixture(dir, "version.json")
            .map_or_else(|| status(404, "NotFound", "no version"), |v| (200, v));
    }
    if req.method == "GET"
        && let Some((_, file)) = lists.iter().find(|(p, _)| *p == req.path)
    {
        let Some(mut v) = fixture(dir, file) else {
            return status(404, "NotFound", "not recorded");
        };
        if req.path == "/api/v1/pods" {
            let items = v["items"].as_array().cloned().unwrap_or_default();
            let start: usize = query_param(&req.query, "continue")
                .and_then(|c| c.strip_prefix("page-"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let end = (start + st.opts.pod_page).min(items.len());
            v["items"] = Value::Array(items[start..end].to_vec());
            if end < items.len() {
                v["metadata"]["continue"] = json!(format!("page-{end}"));
            }
        }
        return (200, v);
    }
    // Pod-level calls of the probe path.
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    if let ["api", "v1", "namespaces", ns, "pods", name, rest @ ..] = parts.as_slice() {
        let pods = fixture(dir, "pods.json").unwrap_or(Value::Null);
        let Some(pod) = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["metadata"]["namespace"] == *ns && p["metadata"]["name"] == *name)
            .cloned()
        else {
            return status(404, "NotFound", &format!("pods \"{name}\" not found"));
        };
        let key = (ns.to_string(), name.to_string());
        match (req.method.as_str(), rest) {
            ("PATCH", ["ephemeralcontainers"]) => {
                let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
                let mut eph = st.ephemeral.lock().expect("lock");
                let entry = eph.entry(key).or_default();
                for c in body["spec"]["ephemeralContainers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let cname = c["name"].as_str().unwrap_or_default().to_string();
                    if entry.contains_key(&cname) {
                        return status(422, "Invalid", "ephemeral container names must be unique");
                    }
                    let script = c["command"][2].as_str().unwrap_or_default().to_string();
                    entry.insert(cname, script);
                }
                return (200, pod);
            }
            ("GET", []) => {
                let mut pod = pod;
                let eph = st.ephemeral.lock().expect("lock");
                if let Some(cs) = eph.get(&key) {
                    pod["status"]["ephemeralContainerStatuses"] = Value::Array(
                        cs.keys()
                            .map(|c| json!({"name": c, "ready": false, "restartCount": 0, "image": "agnhost", "imageID": "",
                                           "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}))
                            .collect(),
                    );
                }
                return (200, pod);
            }
            ("GET", ["log"]) => {
                let container = query_param(&req.query, "container").unwrap_or_default();
                let eph = st.ephemeral.lock().expect("lock");
                let Some(script) = eph.get(&key).and_then(|cs| cs.get(container)) else {
                    return status(400, "BadRequest", "container not found");
                };
                let source = format!("{ns}/{name}");
                let mut out = String::new();
                for line in script.lines() {
                    let mut w = line.split_whitespace();
                    if w.next() != Some("p") {
                        continue;
                    }
                    let (Some(idx), Some(_bin), Some(_connect), Some(hp)) =
                        (w.next(), w.next(), w.next(), w.next())
                    else {
                        continue;
                    };
                    let (host, port) = hp.rsplit_once(':').unwrap_or((hp, "0"));
                    let port: u16 = port.parse().unwrap_or(0);
                    let (code, msg) = match &st.opts.answer {
                        Some(f) => f(&source, host.trim_matches(['[', ']']), port),
                        None => (0, String::new()),
                    };
                    out.push_str(&format!("NETPOLC {idx} {code} {msg}\n"));
                }
                return (200, Value::String(out));
            }
            _ => {}
        }
    }
    status(
        404,
        "NotFound",
        &format!("{} {} is not recorded", req.method, req.path),
    )
}

fn serve(conn: TcpStream, st: &State) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut writer = conn;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut it = line.split_whitespace();
        let (Some(method), Some(target)) = (it.next(), it.next()) else {
            return;
        };
        let (method, target) = (method.to_string(), target.to_string());
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let req = Request {
            method,
            path: path.to_string(),
            query: query.to_string(),
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        st.requests.lock().expect("lock").push(req.clone());
        let (code, text) = route(st, &req);
        let ctype = if req.path.ends_with("/log") {
            "text/plain"
        } else {
            "application/json"
        };
        let head = format!(
            "HTTP/1.1 {code} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        if writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(text.as_bytes()))
            .is_err()
        {
            return;
        }
    }
}
