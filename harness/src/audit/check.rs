//! `netpolc check`: does this cluster enforce NetworkPolicy at all? A few seconds' evidence.
//!
//! The check is an ordinary two-step scenario run by the ordinary engine on the ordinary provider,
//! so it inherits their guarantees: a throwaway namespace named and labelled with the run id
//! (`netpolc-<run-id>--0-check`, `netpolc.io/run-id=<run-id>`), pods running the pinned agnhost
//! image, readiness waits with a deadline, convergence polling, and removal of everything it
//! created on every path (success, failure, Ctrl-C).
//!
//! - step `baseline`: pods `client` and `server` (serving 80/TCP), no policy: client → server
//!   must connect, or nothing after it means anything ("cannot tell");
//! - step `deny`: one policy selecting `server` for ingress with no rules: client → server must
//!   be blocked. Blocked: "enforcing". Still connected when the step timeout passes: "ignoring
//!   NetworkPolicy".
//!
//! [`judge`] turns the run's report into that verdict (pure, unit-tested); the CLI maps it to exit
//! 0 (enforcing), 1 (ignoring) or 3 (cannot tell, or the cluster was unreachable).

use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{PodRef, Probe, Protocol};
use crate::probe::Connectivity;
use crate::provider::ProviderError;
use crate::report::model::{CellReport, RunReport};
use crate::scenario::{Scenario, load_str};

/// The check's scenario, in the project's scenario format (read by the one loader).
pub const SCENARIO: &str = r#"apiVersion: netpolc/v1
kind: Scenario
name: enforcement-check
description: >-
  Two pods and one deny policy: does the cluster enforce NetworkPolicy at all?
model:
  namespaces:
    - {name: check}
  pods:
    - {namespace: check, name: server, labels: {app: server}, ports: [80/TCP]}
    - {namespace: check, name: client, labels: {app: client}}
probes: [80/TCP]
steps:
  - name: baseline
    description: no policy; client -> server must connect
  - name: deny
    description: server isolated for ingress with no rules; client -> server must be blocked
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny-ingress-to-server, namespace: check}
        spec:
          podSelector: {matchLabels: {app: server}}
          policyTypes: [Ingress]
"#;

pub const PROBE: Probe = Probe {
    port: 80,
    protocol: Protocol::Tcp,
};

/// The check's scenario, loaded.
pub fn scenario() -> Result<Scenario, ProviderError> {
    let loaded = load_str(SCENARIO, "netpolc-check")
        .map_err(|e| ProviderError::Failed(format!("the built-in check scenario: {e}")))?;
    loaded
        .scenarios
        .into_iter()
        .next()
        .ok_or_else(|| ProviderError::Failed("the built-in check scenario is empty".into()))
}

pub fn client() -> PodRef {
    PodRef::new("check", "client")
}

pub fn server() -> PodRef {
    PodRef::new("check", "server")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckVerdict {
    Enforcing,
    IgnoringNetworkPolicy,
    CannotTell,
}

impl CheckVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckVerdict::Enforcing => "enforcing",
            CheckVerdict::IgnoringNetworkPolicy => "ignoring NetworkPolicy",
            CheckVerdict::CannotTell => "cannot tell",
        }
    }

    /// Exit statuses in the contract's style: 0 the good answer, 1 the bad one, 3 when the
    /// environment did not let us answer.
    pub fn exit_code(self) -> u8 {
        match self {
            CheckVerdict::Enforcing => 0,
            CheckVerdict::IgnoringNetworkPolicy => 1,
            CheckVerdict::CannotTell => 3,
        }
    }
}

/// One probe's observation as the check reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    pub connectivity: Connectivity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub command: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub verdict: CheckVerdict,
    /// One sentence: why.
    pub reason: String,
    pub cni: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni_evidence: Option<String>,
    /// client → server before any policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Seen>,
    /// client → server with the deny policy in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<Seen>,
    /// From the policy being applied until client → server was first seen blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforced_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn seen(c: &CellReport) -> Seen {
    Seen {
        connectivity: c.connectivity,
        detail: c.detail.clone(),
        attempts: c.attempts,
        command: c.command.clone(),
    }
}

fn cell<'a>(
    report: &'a RunReport,
    step: &str,
    from: &PodRef,
    to: &PodRef,
) -> Option<&'a CellReport> {
    report
        .scenarios
        .first()?
        .steps
        .iter()
        .find(|s| s.name == step)?
        .cells
        .iter()
        .find(|c| {
            &c.from == from && &c.to == to && c.port == PROBE.port && c.protocol == PROBE.protocol
        })
}

fn describe(s: &Seen) -> String {
    match &s.detail {
        Some(d) if !d.is_empty() => format!("{} ({d})", s.connectivity.describe()),
        _ => s.connectivity.describe().to_string(),
    }
}

/// The verdict from a finished run of [`SCENARIO`].
pub fn judge(report: &RunReport, cni_evidence: Option<String>) -> CheckResult {
    let (client, server) = (client(), server());
    let mut result = CheckResult {
        verdict: CheckVerdict::CannotTell,
        reason: String::new(),
        cni: report.cni.clone(),
        cni_evidence,
        baseline: None,
        deny: None,
        enforced_after_ms: None,
        notes: Vec::new(),
    };
    let base = cell(report, "baseline", &client, &server);
    let deny = cell(report, "deny", &client, &server);
    result.baseline = base.map(seen);
    result.deny = deny.map(seen);
    let Some(base) = base else {
        result.reason = "the run has no baseline probe client -> server".into();
        return result;
    };
    if base.observed != Some(true) {
        result.reason = format!(
            "the allowed probe failed too: client -> server was {} before any policy existed, so a \
             blocked probe later would prove nothing (pod networking, the probe image or exec does \
             not work as needed)",
            describe(&seen(base))
        );
        return result;
    }
    let Some(deny) = deny else {
        result.reason = "the run has no probe with the deny policy in place".into();
        return result;
    };
    let timeout = report.probe_timeout_ms;
    match deny.observed {
        Some(false) => {
            result.verdict = CheckVerdict::Enforcing;
            result.enforced_after_ms = report
                .scenarios
                .first()
                .and_then(|s| s.steps.iter().find(|s| s.name == "deny"))
                .and_then(|s| s.convergence_ms);
            result.reason = format!(
                "client -> server connected before the deny policy and was blocked after it ({}{})",
                describe(&seen(deny)),
                match result.enforced_after_ms {
                    Some(ms) => format!(", enforced within {ms} ms"),
                    None => String::new(),
                }
            );
        }
        Some(true) => {
            result.verdict = CheckVerdict::IgnoringNetworkPolicy;
            result.reason = format!(
                "client -> server still connected with a policy denying all ingress to server in \
                 place ({} attempts, {timeout} ms probe timeout, until the step timeout passed)",
                deny.attempts
            );
        }
        None => {
            result.reason = format!(
                "the probe with the deny policy in place did not run: {}",
                describe(&seen(deny))
            );
        }
    }
    // The policy isolates only server's ingress: server -> client must stay allowed.
    if let Some(back) = cell(report, "deny", &server, &client)
        && back.observed == Some(false)
    {
        result.notes.push(format!(
            "server -> client was blocked ({}) although no policy restricts it: the dataplane \
             blocks more than the policy says",
            describe(&seen(back))
        ));
    }
    result
}

/// The verdict when the run could not finish (cluster unreachable, pods never ready…).
pub fn judge_error(e: &ProviderError, cni: &str) -> CheckResult {
    CheckResult {
        verdict: CheckVerdict::CannotTell,
        reason: match e {
            ProviderError::Failed(m) if m.contains("not Ready") => {
                format!("the check's pods never became ready: {m}")
            }
            other => other.to_string(),
        },
        cni: cni.to_string(),
        cni_evidence: None,
        baseline: None,
        deny: None,
        enforced_after_ms: None,
        notes: Vec::new(),
    }
}

/// The terminal rendering.
pub fn render_text(r: &CheckResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "netpolc check: {}", r.verdict.as_str());
    let _ = writeln!(out, "  {}", r.reason);
    let _ = write!(out, "  CNI: {}", r.cni);
    if let Some(e) = &r.cni_evidence {
        let _ = write!(out, " ({e})");
    }
    out.push('\n');
    if let Some(b) = &r.baseline {
        let _ = writeln!(
            out,
            "  baseline (no policy): client -> server 80/TCP {}",
            describe(b)
        );
    }
    if let Some(d) = &r.deny {
        let _ = writeln!(
            out,
            "  with deny-ingress-to-server: client -> server 80/TCP {}",
            describe(d)
        );
        if !d.command.is_empty() {
            let _ = writeln!(out, "    reproduce: {}", d.command);
        }
    }
    for n in &r.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Outcome;
    use crate::report::model::{RunReport, ScenarioReport, StepReport, Summary, Verdict};

    fn c(from: &PodRef, to: &PodRef, expected: bool, conn: Connectivity) -> CellReport {
        CellReport {
            from: from.clone(),
            to: to.clone(),
            port: 80,
            protocol: Protocol::Tcp,
            via: Default::default(),
            expected: Some(expected),
            observed: conn.allowed(),
            outcome: if conn.allowed() == Some(expected) {
                Outcome::Pass
            } else if conn.allowed().is_none() {
                Outcome::Error
            } else {
                Outcome::Fail
            },
            attempts: 1,
            connectivity: conn,
            detail: None,
            explanation: None,
            decided: None,
            command: String::new(),
            features: vec![],
            history: vec![],
        }
    }

    fn report(base: Connectivity, deny: Connectivity, back: Connectivity) -> RunReport {
        let (cl, sv) = (client(), server());
        let step = |name: &str, cells| StepReport {
            name: name.into(),
            convergence_ms: Some(420),
            probe_wall_ms: 10,
            passes: 1,
            converged: true,
            cells,
            ..StepReport::default()
        };
        RunReport {
            verdict: Verdict::Conformant,
            provider: "kubeconfig".into(),
            cni: "calico".into(),
            probe_timeout_ms: 3000,
            summary: Summary::default(),
            scenarios: vec![ScenarioReport {
                name: "enforcement-check".into(),
                source: "netpolc-check".into(),
                steps: vec![
                    step(
                        "baseline",
                        vec![
                            c(&cl, &sv, true, base),
                            c(&sv, &cl, true, Connectivity::Connected),
                        ],
                    ),
                    step(
                        "deny",
                        vec![c(&cl, &sv, false, deny), c(&sv, &cl, true, back)],
                    ),
                ],
            }],
            run_id: "t".into(),
            started_at: String::new(),
            duration_ms: 0,
            harness_version: String::new(),
            faults: vec![],
            failing_features: vec![],
            environment: Default::default(),
            step_timeout_ms: 15000,
            attempts: 2,
            warnings: vec![],
            gaps: vec![],
            phases: Default::default(),
            expected_verdict: None,
            sample: None,
            enforcement: Default::default(),
        }
    }

    #[test]
    fn the_verdict_follows_the_two_probes() {
        use Connectivity::*;
        let v = |b, d| judge(&report(b, d, Connected), None).verdict;
        assert_eq!(v(Connected, Timeout), CheckVerdict::Enforcing);
        assert_eq!(v(Connected, Refused), CheckVerdict::Enforcing);
        assert_eq!(v(Connected, Connected), CheckVerdict::IgnoringNetworkPolicy);
        assert_eq!(v(Timeout, Timeout), CheckVerdict::CannotTell);
        assert_eq!(v(Error, Connected), CheckVerdict::CannotTell);
        assert_eq!(v(Connected, Error), CheckVerdict::CannotTell);
        let r = judge(&report(Timeout, Timeout, Connected), None);
        assert!(
            r.reason.contains("the allowed probe failed too"),
            "{}",
            r.reason
        );
        let r = judge(&report(Connected, Timeout, Connected), None);
        assert_eq!(r.enforced_after_ms, Some(420));
        assert!(r.notes.is_empty());
    }

    #[test]
    fn over_blocking_is_noted() {
        use Connectivity::*;
        let r = judge(&report(Connected, Timeout, Timeout), None);
        assert_eq!(r.verdict, CheckVerdict::Enforcing);
        assert_eq!(r.notes.len(), 1, "{r:?}");
    }

    #[test]
    fn exit_codes_follow_the_contract_style() {
        assert_eq!(CheckVerdict::Enforcing.exit_code(), 0);
        assert_eq!(CheckVerdict::IgnoringNetworkPolicy.exit_code(), 1);
        assert_eq!(CheckVerdict::CannotTell.exit_code(), 3);
        let r = judge_error(
            &ProviderError::Failed(
                "pods not Ready after 120s: check/server Pending (ErrImagePull)".into(),
            ),
            "calico",
        );
        assert_eq!(r.verdict, CheckVerdict::CannotTell);
        assert!(r.reason.starts_with("the check's pods never became ready"));
    }

    /// The VPC CNI's policy agent is the `aws-eks-nodeagent` container (image
    /// `…/aws-network-policy-agent`); it enforces only with `--enable-network-policy=true`.
    #[test]
    fn the_vpc_cni_enforces_only_with_its_agent_switched_on() {
        use crate::provider::kubeconfig::{DaemonSetFacts, detect_cni};
        let aws = |agent: Option<&str>| {
            DaemonSetFacts {
            namespace: "kube-system".into(),
            name: "aws-node".into(),
            containers: std::iter::once((
                "aws-node".to_string(),
                "602401143452.dkr.ecr.eu-west-1.amazonaws.com/amazon-k8s-cni:v1.19.2".to_string(),
                vec![],
            ))
            .chain(agent.map(|flag| {
                (
                    "aws-eks-nodeagent".to_string(),
                    "602401143452.dkr.ecr.eu-west-1.amazonaws.com/amazon/aws-network-policy-agent:v1.1.6".to_string(),
                    vec!["--enable-ipv6=false".to_string(), flag.to_string()],
                )
            }))
            .collect(),
        }
        };
        let on = detect_cni(&[aws(Some("--enable-network-policy=true"))]);
        assert_eq!(
            (on.name.as_str(), on.enforces),
            ("aws-vpc-cni", Some(true)),
            "{on:?}"
        );
        let off = detect_cni(&[aws(Some("--enable-network-policy=false"))]);
        assert_eq!(off.enforces, Some(false), "{off:?}");
        assert!(
            off.evidence.contains("network policy agent present"),
            "{off:?}"
        );
        let none = detect_cni(&[aws(None)]);
        assert_eq!(none.enforces, Some(false));
    }

    #[test]
    fn the_scenario_loads_with_one_deny_policy() {
        let s = scenario().expect("loads");
        assert_eq!(s.steps.len(), 2);
        assert!(s.steps[0].policies.is_empty());
        assert_eq!(s.steps[1].policies.len(), 1);
        let o = s.steps[1].oracle();
        let t = o.matrix(PROBE);
        assert!(!t.get(&client(), &server()));
        assert!(t.get(&server(), &client()));
    }
}
