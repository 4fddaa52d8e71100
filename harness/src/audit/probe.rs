//! `audit --probe`: does the cluster do what its own policies say?
//!
//! One pod per workload class probes the others' declared TCP ports from an **ephemeral
//! container** running agnhost (`agnhost connect HOST:PORT --protocol=tcp --timeout=…`). The
//! container shares the pod's network namespace, so a probe leaves from the pod's own address and
//! is judged by the policies that select the pod — exactly the traffic the oracle reasons about.
//! The container's command *is* the probe script: it runs a bounded number of probes at a bounded
//! rate and exits; its log holds one `NETPOLC <index> <exit code> <message>` line per probe.
//!
//! What that costs, said up front (the CLI refuses without `--accept-ephemeral-containers`, and
//! `--dry-run` prints this plan instead): Kubernetes cannot remove an ephemeral container; it
//! stays in the pod's spec, terminated, until the pod is replaced. No workload object is changed.
//!
//! This module plans (which pods, which cells, within which limits) and judges (per cell and as a
//! whole) — pure functions; [`super::live`] patches pods and reads logs.
//!
//! Judging a cell needs care because the destinations are real workloads, not netpolc's servers:
//! - denied by the policies and **connected**: the cluster does not enforce that policy;
//! - denied and **timed out**: enforced (dropped);
//! - denied and **refused**: enforced only if the same port answered another source (then the
//!   refusal is a rejecting rule); otherwise nothing may listen there, and it proves nothing;
//! - allowed and connected: agrees; allowed and timed out: something else blocks it (another
//!   firewall, a security group) or the workload does not answer — reported, never as a policy
//!   violation; allowed and refused: reached the pod, nothing listens: inconclusive.
//!   UDP and SCTP are not probed: without a server that answers, silence proves nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EphemeralContainer, Pod as K8sPod, SecurityContext};
use serde::Serialize;

use super::analysis::Analysis;
use super::snapshot::MIRROR_ANNOTATION;
use crate::model::{PodRef, Probe, Protocol};
use crate::probe::Connectivity;
use crate::provider::kube::probing::{self, RawResult, ScriptProbe};

/// Limits of one probing run (flags with defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProbeLimits {
    /// Pods that get an ephemeral container (one per workload class at most).
    pub max_pods: usize,
    /// Connection attempts in total.
    pub max_probes: usize,
    /// Connection attempts started per second, over the whole run (sources run one at a time).
    pub rate_per_second: u32,
    #[serde(serialize_with = "ser_ms")]
    pub timeout: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Default for ProbeLimits {
    fn default() -> Self {
        ProbeLimits {
            max_pods: 25,
            max_probes: 200,
            rate_per_second: 10,
            timeout: Duration::from_secs(3),
        }
    }
}

/// The RBAC `--probe` needs beyond the audit's read-only listing, as one sentence for messages.
pub const PROBE_RBAC: &str = "pods: get; pods/ephemeralcontainers: patch; pods/log: get \
                              (in every namespace probed)";

/// Whether a pod can probe from an ephemeral container, and why not.
pub fn source_ineligible(p: &K8sPod) -> Option<String> {
    if p.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
    {
        return Some("a static pod's mirror cannot take ephemeral containers".into());
    }
    if p.metadata.deletion_timestamp.is_some() {
        return Some("being deleted".into());
    }
    let spec = p.spec.as_ref();
    if spec
        .and_then(|s| s.os.as_ref())
        .is_some_and(|o| o.name == "windows")
        || spec
            .and_then(|s| s.node_selector.as_ref())
            .and_then(|n| n.get("kubernetes.io/os"))
            .is_some_and(|v| v == "windows")
    {
        return Some("a Windows pod cannot run the Linux probe image".into());
    }
    let status = p.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) != Some("Running") {
        return Some("not running".into());
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if !ready {
        return Some("not ready".into());
    }
    None
}

/// One connection attempt of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedProbe {
    pub from_class: String,
    pub to_class: String,
    pub from: PodRef,
    pub to: PodRef,
    pub to_ip: IpAddr,
    pub probe: Probe,
    /// What the policies say.
    pub expected: bool,
}

/// The probes run from one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcePlan {
    pub pod: PodRef,
    pub class: String,
    pub probes: Vec<PlannedProbe>,
}

/// A class or cell left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub what: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbePlan {
    pub container_name: String,
    pub image: String,
    pub limits: ProbeLimits,
    pub sources: Vec<SourcePlan>,
    pub skipped: Vec<Skipped>,
}

impl ProbePlan {
    pub fn probe_count(&self) -> usize {
        self.sources.iter().map(|s| s.probes.len()).sum()
    }
}

/// The ephemeral container's name for a run id (a DNS label of at most 63 characters).
pub fn container_name(run_id: &str) -> String {
    let mut n: String = format!("netpolc-probe-{run_id}")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    n.truncate(63);
    n.trim_end_matches('-').to_string()
}

/// Chooses the pods and cells to probe. `eligibility` says, per pod, why it cannot be a source
/// (`None`: it can); pods missing from it cannot.
pub fn plan(
    a: &Analysis<'_>,
    eligibility: &BTreeMap<PodRef, Option<String>>,
    limits: ProbeLimits,
    container_name: String,
    image: String,
) -> ProbePlan {
    let classes = &a.grouping.classes;
    let mut skipped = Vec::new();
    // One source pod per class: its first eligible member.
    let mut sources: Vec<(usize, PodRef)> = Vec::new();
    for (i, c) in classes.iter().enumerate() {
        let pick = c
            .pods
            .iter()
            .find(|p| matches!(eligibility.get(*p), Some(None)));
        match pick {
            Some(p) if sources.len() < limits.max_pods => sources.push((i, p.clone())),
            Some(_) => skipped.push(Skipped {
                what: c.name.clone(),
                reason: format!("as a source: beyond --max-pods {}", limits.max_pods),
            }),
            None => {
                let why = c
                    .pods
                    .first()
                    .and_then(|p| eligibility.get(p).cloned().flatten())
                    .unwrap_or_else(|| "no pod can run a probe".into());
                skipped.push(Skipped {
                    what: c.name.clone(),
                    reason: format!("as a source: {why}"),
                });
            }
        }
    }
    // Candidate cells grouped by destination class and probe: TCP ports the class declares.
    let mut groups: BTreeMap<(usize, usize), (Vec<PlannedProbe>, Vec<PlannedProbe>)> =
        BTreeMap::new();
    let mut non_tcp: BTreeSet<Probe> = BTreeSet::new();
    for (pi, probe) in a.probes.iter().enumerate() {
        for (di, d) in classes.iter().enumerate() {
            if !d
                .ports
                .iter()
                .any(|p| p.port == probe.port && p.protocol == probe.protocol)
            {
                continue;
            }
            if probe.protocol != Protocol::Tcp {
                non_tcp.insert(*probe);
                continue;
            }
            for (si, src) in &sources {
                // Within one class, probe another member; a pod to itself is not judged.
                let Some(to) = d.pods.iter().find(|p| *p != src) else {
                    continue;
                };
                let Some(to_pod) = a.model.pod(to) else {
                    continue;
                };
                let cell = PlannedProbe {
                    from_class: classes[*si].name.clone(),
                    to_class: d.name.clone(),
                    from: src.clone(),
                    to: to.clone(),
                    to_ip: to_pod.ip,
                    probe: *probe,
                    expected: a.allowed(pi, *si, di),
                };
                let g = groups.entry((di, pi)).or_default();
                if cell.expected {
                    g.1.push(cell);
                } else {
                    g.0.push(cell);
                }
            }
        }
    }
    for p in non_tcp {
        skipped.push(Skipped {
            what: p.to_string(),
            reason: "only TCP is probed: a silent UDP or SCTP port proves nothing".into(),
        });
    }
    // Round-robin over destinations: each round takes one denied and one allowed cell per
    // (class, port), so a small budget still tests every destination and keeps, next to each
    // denied cell, an allowed one that shows the port answers.
    let mut chosen: Vec<PlannedProbe> = Vec::new();
    let mut queues: Vec<(
        std::vec::IntoIter<PlannedProbe>,
        std::vec::IntoIter<PlannedProbe>,
    )> = groups
        .into_values()
        .map(|(d, al)| (d.into_iter(), al.into_iter()))
        .collect();
    let total: usize = queues.iter().map(|q| q.0.len() + q.1.len()).sum();
    'fill: loop {
        let mut progressed = false;
        for (denied, allowed) in &mut queues {
            for next in [denied.next(), allowed.next()].into_iter().flatten() {
                if chosen.len() >= limits.max_probes {
                    break 'fill;
                }
                chosen.push(next);
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    if total > chosen.len() {
        skipped.push(Skipped {
            what: format!("{} cells", total - chosen.len()),
            reason: format!("beyond --max-probes {}", limits.max_probes),
        });
    }
    let mut by_source: BTreeMap<PodRef, Vec<PlannedProbe>> = BTreeMap::new();
    for c in chosen {
        by_source.entry(c.from.clone()).or_default().push(c);
    }
    let sources = sources
        .into_iter()
        .filter_map(|(ci, pod)| {
            let mut probes = by_source.remove(&pod)?;
            probes.sort_by(|x, y| (&x.to, x.probe).cmp(&(&y.to, y.probe)));
            Some(SourcePlan {
                pod,
                class: classes[ci].name.clone(),
                probes,
            })
        })
        .collect();
    ProbePlan {
        container_name,
        image,
        limits,
        sources,
        skipped,
    }
}

/// The script one source runs: batches of at most `rate_per_second` probes, a second apart, each
/// printing its result line (the format [`probing::parse_output`] reads).
pub fn source_script(src: &SourcePlan, limits: &ProbeLimits) -> String {
    let probes: Vec<ScriptProbe> = src
        .probes
        .iter()
        .enumerate()
        .map(|(i, p)| ScriptProbe {
            index: i,
            host: p.to_ip.to_string(),
            port: p.probe.port,
            protocol: p.probe.protocol,
        })
        .collect();
    let per = limits.rate_per_second.max(1) as usize;
    probes
        .chunks(per)
        .map(|c| probing::script(c, limits.timeout))
        .collect::<Vec<_>>()
        .join("sleep 1\n")
}

/// How long a source's script may take: its batches, a second apart, each up to the timeout.
pub fn script_duration(n: usize, limits: &ProbeLimits) -> Duration {
    let per = limits.rate_per_second.max(1) as usize;
    let batches = n.div_ceil(per).max(1) as u32;
    (limits.timeout + Duration::from_secs(1)) * batches
}

/// The ephemeral container for one source: agnhost running the script, as an unprivileged user
/// with no capabilities (so it passes the `restricted` Pod Security level), no service account
/// token, nothing mounted.
pub fn ephemeral_container(name: &str, image: &str, script: String) -> EphemeralContainer {
    EphemeralContainer {
        name: name.to_string(),
        image: Some(image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["sh".into(), "-c".into(), script]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            run_as_user: Some(65534),
            capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(k8s_openapi::api::core::v1::SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The message `--probe` prints before doing anything (and in refusals and dry runs).
pub fn disclosure(plan: &ProbePlan) -> String {
    format!(
        "--probe adds an ephemeral container `{}` (image {}) to {} pod(s), one per workload, and \
         runs at most {} connection attempts ({} per second at most, {} ms timeout each) from them. \
         Kubernetes cannot remove an ephemeral container: it stays in each pod's spec, terminated, \
         until the pod is replaced. No Deployment, StatefulSet or other workload object is changed. \
         It needs, besides the audit's read-only access: {PROBE_RBAC}.",
        plan.container_name,
        plan.image,
        plan.sources.len(),
        plan.probe_count(),
        plan.limits.rate_per_second,
        plan.limits.timeout.as_millis(),
    )
}

/// The `--probe --dry-run` output: the disclosure, every pod and cell, what is skipped.
pub fn render_plan(plan: &ProbePlan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", disclosure(plan));
    for s in &plan.sources {
        let _ = writeln!(
            out,
            "would add ephemeral container {} to pod {} (workload {}), probing:",
            plan.container_name, s.pod, s.class
        );
        for p in &s.probes {
            let _ = writeln!(
                out,
                "  {} ({}) {} -> expected {}   {}",
                p.to,
                p.to_class,
                p.probe,
                if p.expected { "allowed" } else { "denied" },
                probing::connect_command(
                    &p.to_ip.to_string(),
                    p.probe.port,
                    p.probe.protocol,
                    plan.limits.timeout
                )
            );
        }
    }
    if !plan.skipped.is_empty() {
        out.push_str("not probed:\n");
        for s in &plan.skipped {
            let _ = writeln!(out, "  {}: {}", s.what, s.reason);
        }
    }
    out
}

/// How one cell compares with the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellJudgement {
    Agrees,
    /// Connected although the policies deny it: the policy is not enforced.
    AllowedDespiteDeny,
    /// Timed out although the policies allow it: something else blocks it, or nothing answers.
    BlockedDespiteAllow,
    Inconclusive,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellResult {
    #[serde(flatten)]
    pub planned: PlannedProbe,
    pub observed: Connectivity,
    pub judgement: CellJudgement,
    pub note: String,
    /// The command that reproduces the probe by hand.
    pub command: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeVerdict {
    /// Denied connections were blocked and none went through.
    Enforcing,
    /// Every conclusive denied connection went through: the cluster ignores your policies.
    IgnoresPolicies,
    /// Some denied connections went through, others were blocked.
    PartiallyEnforced,
    /// No probe tested a denied connection conclusively.
    CannotTell,
}

impl ProbeVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeVerdict::Enforcing => "enforcing",
            ProbeVerdict::IgnoresPolicies => "ignores-policies",
            ProbeVerdict::PartiallyEnforced => "partially-enforced",
            ProbeVerdict::CannotTell => "cannot-tell",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeOutcome {
    pub verdict: ProbeVerdict,
    pub headline: String,
    pub container_name: String,
    pub cells: Vec<CellResult>,
    pub skipped: Vec<Skipped>,
}

/// What one source's run produced: per planned probe, the parsed result line (or why the
/// whole source failed).
pub type SourceResult = Result<Vec<Option<RawResult>>, String>;

/// Judges every cell and the whole run from what the sources reported.
pub fn judge(plan: &ProbePlan, results: &[SourceResult]) -> ProbeOutcome {
    let mut observed: Vec<(PlannedProbe, Connectivity, String, String)> = Vec::new();
    for (src, res) in plan.sources.iter().zip(results) {
        for (i, p) in src.probes.iter().enumerate() {
            let command = format!(
                "kubectl debug -n {} {} --image={} -- {}",
                src.pod.namespace,
                src.pod.name,
                plan.image,
                probing::connect_command(
                    &p.to_ip.to_string(),
                    p.probe.port,
                    p.probe.protocol,
                    plan.limits.timeout
                )
            );
            let (c, detail) = match res {
                Err(e) => (Connectivity::Error, e.clone()),
                Ok(lines) => match lines.get(i).cloned().flatten() {
                    None => (Connectivity::Error, "no result line from the probe".into()),
                    Some(r) => (probing::classify(&r), r.message.clone()),
                },
            };
            observed.push((p.clone(), c, detail, command));
        }
    }
    // (destination pod, probe) pairs some source reached: the port answers.
    let answers: BTreeSet<(PodRef, Probe)> = observed
        .iter()
        .filter(|o| o.1 == Connectivity::Connected)
        .map(|o| (o.0.to.clone(), o.0.probe))
        .collect();
    let cells: Vec<CellResult> = observed
        .into_iter()
        .map(|(p, c, detail, command)| {
            let answers_others = answers.contains(&(p.to.clone(), p.probe));
            let (judgement, note) = judge_cell(p.expected, c, answers_others, &detail);
            CellResult {
                planned: p,
                observed: c,
                judgement,
                note,
                command,
            }
        })
        .collect();
    let violations = cells
        .iter()
        .filter(|c| c.judgement == CellJudgement::AllowedDespiteDeny)
        .count();
    let enforced = cells
        .iter()
        .filter(|c| !c.planned.expected && c.judgement == CellJudgement::Agrees)
        .count();
    let blocked = cells
        .iter()
        .filter(|c| c.judgement == CellJudgement::BlockedDespiteAllow)
        .count();
    let (verdict, mut headline) = match (violations, enforced) {
        (0, 0) => (
            ProbeVerdict::CannotTell,
            "no probe tested a connection your policies deny conclusively (no denied cell was probed, \
             or every one was inconclusive)"
                .to_string(),
        ),
        (0, n) => (
            ProbeVerdict::Enforcing,
            format!("the cluster enforces your policies: all {n} denied connections probed were blocked"),
        ),
        (v, 0) => (
            ProbeVerdict::IgnoresPolicies,
            format!(
                "the cluster ignores your policies: all {v} connections your policies deny went through"
            ),
        ),
        (v, n) => (
            ProbeVerdict::PartiallyEnforced,
            format!(
                "the cluster enforces your policies only in part: {v} denied connections went through, {n} were blocked"
            ),
        ),
    };
    if blocked > 0 {
        let _ = write!(
            headline,
            "; {blocked} connections your policies allow timed out (something else blocks them, or nothing answers)"
        );
    }
    ProbeOutcome {
        verdict,
        headline,
        container_name: plan.container_name.clone(),
        cells,
        skipped: plan.skipped.clone(),
    }
}

/// One cell's judgement; see the module documentation.
pub fn judge_cell(
    expected: bool,
    observed: Connectivity,
    port_answers_others: bool,
    detail: &str,
) -> (CellJudgement, String) {
    use CellJudgement::*;
    match (expected, observed) {
        (_, Connectivity::Error | Connectivity::Unsupported | Connectivity::Harness) => {
            (Inconclusive, format!("the probe did not run: {detail}"))
        }
        (false, Connectivity::Connected) => (
            AllowedDespiteDeny,
            "connected although your policies deny it".into(),
        ),
        (false, Connectivity::Timeout) => (Agrees, "blocked (dropped), as your policies say".into()),
        (false, Connectivity::Refused) if port_answers_others => (
            Agrees,
            "blocked (rejected) while the port answers others, as your policies say".into(),
        ),
        (false, Connectivity::Refused) => (
            Inconclusive,
            "refused, and no source reached this port: nothing may listen there".into(),
        ),
        (true, Connectivity::Connected) => (Agrees, "connected, as your policies allow".into()),
        (true, Connectivity::Refused) => (
            Inconclusive,
            "reached the pod but refused: nothing listens on that port".into(),
        ),
        (true, Connectivity::Timeout) => (
            BlockedDespiteAllow,
            "timed out although your policies allow it: something else blocks it, or the workload does not answer".into(),
        ),
    }
}

/// The probe section of the terminal output.
pub fn render_text(o: &ProbeOutcome) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "observed on the cluster: {} — {}",
        o.verdict.as_str(),
        o.headline
    );
    let interesting: Vec<&CellResult> = o
        .cells
        .iter()
        .filter(|c| c.judgement != CellJudgement::Agrees)
        .collect();
    let _ = writeln!(
        out,
        "  {} probes: {} as the policies say, {} differ, {} inconclusive",
        o.cells.len(),
        o.cells
            .iter()
            .filter(|c| c.judgement == CellJudgement::Agrees)
            .count(),
        o.cells
            .iter()
            .filter(|c| matches!(
                c.judgement,
                CellJudgement::AllowedDespiteDeny | CellJudgement::BlockedDespiteAllow
            ))
            .count(),
        o.cells
            .iter()
            .filter(|c| c.judgement == CellJudgement::Inconclusive)
            .count(),
    );
    for c in interesting {
        let _ = writeln!(
            out,
            "  {} {} -> {} {} ({} -> {}): {}\n      {}",
            match c.judgement {
                CellJudgement::AllowedDespiteDeny | CellJudgement::BlockedDespiteAllow => "DIFFERS",
                _ => "?",
            },
            c.planned.from_class,
            c.planned.to_class,
            c.planned.probe,
            c.planned.from,
            c.planned.to,
            c.note,
            c.command
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_str;

    #[test]
    fn cells_are_judged_by_what_the_policies_say_and_what_else_was_seen() {
        use CellJudgement::*;
        use Connectivity::*;
        let j = |e, o, a| judge_cell(e, o, a, "x").0;
        assert_eq!(j(false, Connected, false), AllowedDespiteDeny);
        assert_eq!(j(false, Timeout, false), Agrees);
        assert_eq!(j(false, Refused, true), Agrees);
        assert_eq!(j(false, Refused, false), Inconclusive);
        assert_eq!(j(true, Connected, false), Agrees);
        assert_eq!(j(true, Timeout, true), BlockedDespiteAllow);
        assert_eq!(j(true, Refused, false), Inconclusive);
        assert_eq!(j(false, Error, false), Inconclusive);
        assert_eq!(j(true, Unsupported, false), Inconclusive);
    }

    const STATE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {containers: [{name: c, image: i, ports: [{containerPort: 5432}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: batch, labels: {app: job}}
spec: {containers: [{name: c, image: i}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
"#;

    fn analysis_plan(
        limits: ProbeLimits,
        ineligible: &[&str],
    ) -> (ProbePlan, Vec<crate::scenario::Step>) {
        let loaded = load_str(STATE, "s.yaml").expect("loads");
        let steps = loaded.scenarios[0].steps.clone();
        let step = &steps[0];
        let a = Analysis::new(&step.model, &step.policies, &BTreeMap::new(), &[]);
        let elig = step
            .model
            .pods
            .keys()
            .map(|r| {
                let bad = ineligible.contains(&r.to_string().as_str());
                (r.clone(), bad.then(|| "not ready".to_string()))
            })
            .collect();
        let p = plan(&a, &elig, limits, container_name("t1"), "agnhost".into());
        (p, steps)
    }

    #[test]
    fn one_source_per_class_tcp_only_and_no_self_probe() {
        let (p, _) = analysis_plan(ProbeLimits::default(), &[]);
        let sources: Vec<String> = p.sources.iter().map(|s| s.pod.to_string()).collect();
        assert_eq!(sources, ["batch/job", "shop/db", "shop/web-0"]);
        let web = &p.sources[2];
        // web-0 probes db:5432 (allowed) and its sibling web-1:80 (not itself).
        let cells: Vec<(String, String, bool)> = web
            .probes
            .iter()
            .map(|c| (c.to.to_string(), c.probe.to_string(), c.expected))
            .collect();
        assert_eq!(
            cells,
            [
                ("shop/db".into(), "5432/TCP".into(), true),
                ("shop/web-1".into(), "80/TCP".into(), true)
            ]
        );
        let job = &p.sources[0];
        assert!(job.probes.iter().any(|c| c.to.name == "db" && !c.expected));
        assert!(p.skipped.iter().any(|s| s.what == "53/UDP"));
        assert_eq!(p.probe_count(), 2 + 1 + 2);
    }

    #[test]
    fn budgets_bound_sources_and_probes_and_keep_denied_cells() {
        let limits = ProbeLimits {
            max_pods: 2,
            max_probes: 3,
            ..Default::default()
        };
        let (p, _) = analysis_plan(limits, &["shop/db"]);
        assert!(p.sources.len() <= 2);
        assert!(p.probe_count() <= 3);
        assert!(
            p.skipped
                .iter()
                .any(|s| s.what == "shop/db" && s.reason.contains("not ready"))
        );
        // The denied cell batch/job -> shop/db is kept before a second allowed cell.
        assert!(
            p.sources
                .iter()
                .flat_map(|s| &s.probes)
                .any(|c| !c.expected),
            "{p:#?}"
        );
        assert!(p.skipped.iter().any(|s| s.reason.contains("--max-probes")));
    }

    #[test]
    fn the_script_is_paced_and_parses_back() {
        let (p, _) = analysis_plan(
            ProbeLimits {
                rate_per_second: 1,
                ..Default::default()
            },
            &[],
        );
        let s = source_script(&p.sources[2], &p.limits);
        assert_eq!(s.matches("sleep 1\n").count(), 1, "{s}");
        assert_eq!(s.matches("/agnhost connect").count(), 2);
        assert_eq!(script_duration(2, &p.limits), Duration::from_secs(8));
        let c = ephemeral_container(&p.container_name, "img", s);
        assert_eq!(c.name, "netpolc-probe-t1");
        assert_eq!(
            c.security_context.and_then(|s| s.run_as_non_root),
            Some(true)
        );
        assert!(disclosure(&p).contains("cannot remove an ephemeral container"));
    }

    fn line(code: i32, msg: &str) -> Option<RawResult> {
        Some(RawResult {
            code,
            message: msg.into(),
        })
    }

    #[test]
    fn the_verdict_follows_the_denied_cells() {
        let (p, _) = analysis_plan(ProbeLimits::default(), &[]);
        // Sources: batch/job (job->db denied, job->web-1 allowed), shop/db (db->web-1 allowed,
        // ...), shop/web-1 (web->db allowed, web->web-2 allowed).
        let all_connect: Vec<SourceResult> = p
            .sources
            .iter()
            .map(|s| Ok(s.probes.iter().map(|_| line(0, "")).collect()))
            .collect();
        let o = judge(&p, &all_connect);
        assert_eq!(o.verdict, ProbeVerdict::IgnoresPolicies, "{}", o.headline);
        assert!(o.headline.contains("ignores your policies"));

        let enforcing: Vec<SourceResult> = p
            .sources
            .iter()
            .map(|s| {
                Ok(s.probes
                    .iter()
                    .map(|c| {
                        if c.expected {
                            line(0, "")
                        } else {
                            line(1, "TIMEOUT")
                        }
                    })
                    .collect())
            })
            .collect();
        assert_eq!(judge(&p, &enforcing).verdict, ProbeVerdict::Enforcing);

        let broken: Vec<SourceResult> = p
            .sources
            .iter()
            .map(|_| Err("exec forbidden".into()))
            .collect();
        let o = judge(&p, &broken);
        assert_eq!(o.verdict, ProbeVerdict::CannotTell);
        assert!(o.cells.iter().all(|c| c.note.contains("exec forbidden")));
    }
}
