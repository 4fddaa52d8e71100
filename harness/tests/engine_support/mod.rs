//! A scripted test double for the provider boundary: a platform whose sessions answer probes from
//! the oracle's own truth tables, bent by a [`Script`] (policies ignored, always-wrong cells, cells
//! wrong or erroring for their first N probes, unsupported protocols, a convergence delay, a stale
//! dataplane, failing applies). It logs what the engine asked for, so tests can check teardown,
//! batching and parallelism.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netpol_conformance::model::{PodRef, Probe, Protocol};
use netpol_conformance::probe::{Connectivity, Observation, ProbeRequest};
use netpol_conformance::provider::{Platform, PlatformInfo, ProviderError, Session};
use netpol_conformance::scenario::{Scenario, Step, load_str};
use netpol_conformance::truthtable::TruthTable;
use tokio::time::Instant;

pub type Key = (PodRef, PodRef, Probe);

pub fn key(from: &str, to: &str, probe: &str) -> Key {
    (
        from.parse().expect("pod ref"),
        to.parse().expect("pod ref"),
        probe.parse().expect("probe"),
    )
}

#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Every probe connects (a CNI without NetworkPolicy support).
    pub ignore_policies: bool,
    /// Inverted on every probe…
    pub always_wrong: HashSet<Key>,
    /// …in this scenario only (`None`: in every scenario).
    pub always_wrong_in: Option<usize>,
    /// Error for the first N probes of the cell in each step (`u32::MAX`: always), then…
    pub error_times: HashMap<Key, u32>,
    /// …inverted for the next N probes.
    pub wrong_times: HashMap<Key, u32>,
    pub unsupported: Vec<Protocol>,
    /// For this long after `apply` returns, the previous step's state is still in force.
    pub convergence_delay: Duration,
    /// Virtual time one `probe` call takes.
    pub probe_cost: Duration,
    /// Only the first step's state is ever in force.
    pub stale: bool,
    pub max_parallel: usize,
    /// `apply` fails at (scenario index, step index).
    pub fail_apply: Option<(usize, usize)>,
    /// The fake dataplane realises cluster-wide policies (it answers from the oracle, which
    /// includes them); otherwise the platform says it cannot, as real providers do today.
    pub realises_cluster_policies: bool,
    /// The harness fails the first N probes of the cell in each step (descriptors ran out…).
    pub harness_times: HashMap<Key, u32>,
    /// Observations time each probe alone (like the local dataplane), so the engine calibrates.
    pub times_each_probe: bool,
    /// How long an allowed connection takes: a probe with a shorter timeout times out.
    pub connect_latency: Duration,
    /// The first step's policies, too, take `convergence_delay` to apply (before that nothing
    /// is enforced), like a CNI that converges slowly from the start.
    pub delay_first_step: bool,
    /// Policies are ignored until this long after the platform was created, then enforced.
    pub enforce_from: Option<Duration>,
}

#[derive(Debug, Default)]
pub struct Log {
    pub opened: Vec<usize>,
    pub torn_down: Vec<usize>,
    pub closed: u32,
    pub applied: Vec<(usize, String)>,
    pub batch_sizes: Vec<usize>,
    pub active: usize,
    pub max_active: usize,
}

pub struct FakePlatform {
    pub script: Script,
    pub log: Arc<Mutex<Log>>,
    created: Instant,
}

impl FakePlatform {
    pub fn new(script: Script) -> Self {
        FakePlatform {
            script,
            log: Arc::default(),
            created: Instant::now(),
        }
    }
    pub fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().expect("log lock")
    }
}

type Tables = BTreeMap<Probe, TruthTable<bool>>;

#[derive(Default)]
struct State {
    /// (when apply returned, the truth tables of that step), oldest first.
    applied: Vec<(Instant, Tables)>,
    counts: HashMap<Key, u32>,
}

pub struct FakeSession {
    n: usize,
    created: Instant,
    script: Script,
    log: Arc<Mutex<Log>>,
    state: Mutex<State>,
    torn_down: bool,
}

fn tables(step: &Step) -> Tables {
    let oracle = step.oracle();
    step.probes.iter().map(|&p| (p, oracle.matrix(p))).collect()
}

impl FakeSession {
    fn observe(&self, req: &ProbeRequest, at: Instant, timeout: Duration) -> Observation {
        let mut st = self.state.lock().expect("state lock");
        let k: Key = (req.from.clone(), req.to.clone(), req.probe);
        let c = {
            let e = st.counts.entry(k.clone()).or_insert(0);
            *e += 1;
            *e - 1
        };
        let n = st.applied.len();
        let pending = at < st.applied[n - 1].0 + self.script.convergence_delay;
        let in_force = if self.script.stale {
            Some(0)
        } else if n >= 2 && pending {
            Some(n - 2)
        } else if n == 1 && pending && self.script.delay_first_step {
            None
        } else {
            Some(n - 1)
        };
        let truth = in_force
            .and_then(|k| {
                st.applied[k]
                    .1
                    .get(&req.probe)
                    .and_then(|t| t.try_get(&req.from, &req.to).copied())
            })
            // A cell unknown to the state in force: the dataplane has no rules for it yet.
            .unwrap_or(true);
        let command = format!("fake-probe {} {} {}", req.from, req.to, req.probe);
        let elapsed_ms = self.script.probe_cost.as_millis() as u64;
        let obs = |result, detail: Option<&str>| Observation {
            result,
            detail: detail.map(str::to_string),
            elapsed_ms,
            command: command.clone(),
        };
        if self.script.unsupported.contains(&req.probe.protocol) {
            return obs(
                Connectivity::Unsupported,
                Some("protocol not supported by the fake kernel"),
            );
        }
        let harness = self.script.harness_times.get(&k).copied().unwrap_or(0);
        if c < harness {
            return obs(
                Connectivity::Harness,
                Some("harness: Too many open files (os error 24)"),
            );
        }
        let c = c - harness;
        let errors = self.script.error_times.get(&k).copied().unwrap_or(0);
        if c < errors {
            return obs(Connectivity::Error, Some("fake exec failed"));
        }
        let here = self.script.always_wrong_in.is_none_or(|n| n == self.n);
        let wrong = here && self.script.always_wrong.contains(&k)
            || c - errors < self.script.wrong_times.get(&k).copied().unwrap_or(0);
        let ignoring = self.script.ignore_policies
            || self
                .script
                .enforce_from
                .is_some_and(|t| at < self.created + t);
        let allowed = ignoring || truth != wrong;
        let latency = self.script.connect_latency;
        let (result, took) = if allowed && latency < timeout {
            (Connectivity::Connected, latency)
        } else {
            (Connectivity::Timeout, timeout)
        };
        Observation {
            // Like a batch exec, an untimed platform reports the call's cost for every probe.
            elapsed_ms: if self.script.times_each_probe {
                took.as_millis() as u64
            } else {
                elapsed_ms
            },
            ..obs(result, None)
        }
    }
}

impl Session for FakeSession {
    fn apply(&mut self, step: &Step) -> impl Future<Output = Result<(), ProviderError>> + Send {
        let k = self.state.lock().expect("state lock").applied.len();
        self.log
            .lock()
            .expect("log lock")
            .applied
            .push((self.n, step.name.clone()));
        let fail = self.script.fail_apply == Some((self.n, k));
        let t = tables(step);
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if fail {
                return Err(ProviderError::Failed(format!(
                    "fake apply of step {k} failed"
                )));
            }
            let mut st = self.state.lock().expect("state lock");
            st.applied.push((Instant::now(), t));
            st.counts.clear();
            Ok(())
        }
    }

    fn probe(
        &self,
        batch: &[ProbeRequest],
        timeout: Duration,
    ) -> impl Future<Output = Vec<Observation>> + Send {
        self.log
            .lock()
            .expect("log lock")
            .batch_sizes
            .push(batch.len());
        let batch = batch.to_vec();
        async move {
            let at = Instant::now();
            tokio::time::sleep(self.script.probe_cost).await;
            batch.iter().map(|r| self.observe(r, at, timeout)).collect()
        }
    }

    fn teardown(&mut self) -> impl Future<Output = Result<(), ProviderError>> + Send {
        if !self.torn_down {
            self.torn_down = true;
            let mut log = self.log.lock().expect("log lock");
            log.torn_down.push(self.n);
            log.active -= 1;
        }
        async { Ok(()) }
    }
}

impl Platform for FakePlatform {
    type Session = FakeSession;

    fn info(&self) -> PlatformInfo {
        PlatformInfo {
            provider: "fake".into(),
            cni: "scripted".into(),
            environment: [("fake-version".to_string(), "1.0".to_string())].into(),
            warnings: Vec::new(),
            ..Default::default()
        }
    }

    fn max_parallel(&self) -> usize {
        self.script.max_parallel.max(1)
    }

    fn times_each_probe(&self) -> bool {
        self.script.times_each_probe
    }

    fn open(
        &self,
        n: usize,
        _scenario: &Scenario,
    ) -> impl Future<Output = Result<FakeSession, ProviderError>> + Send {
        let script = self.script.clone();
        let log = self.log.clone();
        let created = self.created;
        async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            {
                let mut l = log.lock().expect("log lock");
                l.opened.push(n);
                l.active += 1;
                l.max_active = l.max_active.max(l.active);
            }
            Ok(FakeSession {
                n,
                created,
                script,
                log,
                state: Mutex::new(State::default()),
                torn_down: false,
            })
        }
    }

    fn close(&self) -> impl Future<Output = Result<(), ProviderError>> + Send {
        self.log.lock().expect("log lock").closed += 1;
        async { Ok(()) }
    }

    fn cluster_policy_gap(
        &self,
        _: netpol_conformance::policy::cluster::ClusterKind,
    ) -> Option<String> {
        (!self.script.realises_cluster_policies)
            .then(|| "the fake dataplane does not realise cluster-wide policies".to_string())
    }
}

/// Two namespaces x, y with pods a, b each serving 80/TCP; `y` denies all ingress except from
/// `x/a` (step `initial`). Optional second step `open-y` deletes both policies.
pub const TWO_NS: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: two-ns
model:
  upstream: {namespaces: [x, y], pods: [a, b], protocols: [TCP], ports: [80]}
probes: ["80/TCP"]
steps:
  - name: initial
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {namespace: y, name: deny}
        spec: {podSelector: {}}
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {namespace: y, name: allow-xa}
        spec:
          podSelector: {}
          ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]
  - name: open-y
    delete: [y/deny, y/allow-xa]
"#;

pub fn scenario(text: &str, name: &str) -> Scenario {
    let mut loaded = load_str(text, format!("{name}.yaml")).expect("valid test scenario");
    let mut s = loaded.scenarios.remove(0);
    s.name = name.to_string();
    s
}

pub fn two_ns() -> Scenario {
    scenario(TWO_NS, "two-ns")
}

/// The same model with only the first step, probing 80/TCP and 80/SCTP.
pub fn with_sctp() -> Scenario {
    let text = TWO_NS
        .replace("protocols: [TCP]", "protocols: [TCP, SCTP]")
        .replace(r#"probes: ["80/TCP"]"#, r#"probes: ["80/TCP", "80/SCTP"]"#);
    let mut s = scenario(&text, "with-sctp");
    s.steps.truncate(1);
    s
}
