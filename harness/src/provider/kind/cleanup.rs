//! `netpolc cleanup` for kind: deletes clusters that dead runs created, and only those.
//!
//! A kind run takes its lease on this machine (kind clusters live in this machine's container
//! runtime), so a cluster `netpolc-<run>--<cni>` belongs to a dead run exactly when the lease of
//! `<run>` is here and dead. Clusters without a lease — kept with `--keep-cluster`, made by
//! another user, or named by an older netpolc (`netpolc-<run>-<cni>`) — are left unless
//! `--run-id` names their run exactly. The decision ([`plan`]) is a pure function of
//! `kind get clusters` output and the leases; running `kind` is a thin shell around it.
//!
//! A kind run's external peers are containers beside the nodes (not in the cluster), labelled
//! `netpolc.io/run-id=<run>` and `netpolc.io/external=<name>` ([`super::external`]); a run killed
//! before it removed them leaves them running. They go by the same rule as clusters
//! ([`plan_peers`], over `docker|podman ps` output, [`parse_peers`]): only containers carrying
//! both labels, whose run is dead or named exactly by `--run-id`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use super::cluster_run;
use crate::provider::ProviderError;
use crate::provider::cleanup::{Report, Sweep, Target, sweep_blocking};
use crate::provider::lease::{self, Inspection, LeaseDir, RunLease, ThisMachine};

/// Cluster names in `kind get clusters` output (one per line; "No kind clusters found." goes to
/// stderr, but is ignored here too).
pub fn parse_clusters(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(' '))
        .map(String::from)
        .collect()
}

/// What the lease of a run says, as far as kind cleanup cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseView {
    Missing,
    Live(String),
    Dead(String),
}

/// Clusters to delete and clusters left, with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// (cluster, run, why it may go).
    pub delete: Vec<(String, String, String)>,
    pub left: Vec<String>,
}

/// Decides which clusters go. Only clusters whose name follows the scheme are considered; the run
/// is compared exactly.
pub fn plan(clusters: &[String], target: &Target, leases: &BTreeMap<String, LeaseView>) -> Plan {
    let mut out = Plan::default();
    for c in clusters {
        let Some(run) = cluster_run(c) else { continue };
        if !target.includes(run) {
            continue;
        }
        match (leases.get(run).unwrap_or(&LeaseView::Missing), target) {
            (LeaseView::Live(why), _) => out
                .left
                .push(format!("kind cluster {c} (run {run}): {why}")),
            (LeaseView::Dead(why), _) => out.delete.push((c.clone(), run.into(), why.clone())),
            (LeaseView::Missing, Target::Run(_)) => {
                out.delete
                    .push((c.clone(), run.into(), "named by --run-id, no lease".into()))
            }
            (LeaseView::Missing, Target::DeadRuns) => out.left.push(format!(
                "kind cluster {c} (run {run}): no lease on this machine (kept with \
                 --keep-cluster, made by another user or by an older netpolc); \
                 `netpolc cleanup --run-id {run}` deletes it"
            )),
        }
    }
    out
}

/// `ps` arguments (docker or podman) listing every container that is some run's external peer,
/// with its labels.
pub fn peer_list_args() -> Vec<String> {
    [
        "ps",
        "--all",
        "--filter",
        &format!("label={}", super::external::NAME_LABEL),
        "--format",
        "{{.Names}}\t{{.Labels}}",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// `rm` arguments removing one peer container.
pub fn peer_remove_args(container: &str) -> Vec<String> {
    vec!["rm".into(), "--force".into(), container.into()]
}

/// (container, run) of every listed container carrying both peer labels. Docker prints labels as
/// `k=v,k=v`, podman as `map[k:v k:v]`; anything else is skipped.
pub fn parse_peers(stdout: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in stdout.lines() {
        let Some((name, labels)) = line.trim_end().split_once('\t') else {
            continue;
        };
        let pairs: Vec<(&str, &str)> = match labels
            .strip_prefix("map[")
            .and_then(|l| l.strip_suffix(']'))
        {
            Some(inner) => inner
                .split(' ')
                .filter_map(|kv| kv.split_once(':'))
                .collect(),
            None => labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .collect(),
        };
        let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let (Some(run), Some(_)) = (
            get(super::external::RUN_LABEL),
            get(super::external::NAME_LABEL),
        ) else {
            continue;
        };
        if name.is_empty() || run.is_empty() {
            continue;
        }
        out.push((name.to_string(), run.to_string()));
    }
    out
}

/// Which external peer containers go: those of dead kind runs, or of exactly the run `--run-id`
/// names when it has no lease (the same rule as [`plan`]'s for clusters); a live run's stay.
pub fn plan_peers(
    peers: &[(String, String)],
    target: &Target,
    leases: &BTreeMap<String, LeaseView>,
) -> Plan {
    let mut out = Plan::default();
    for (c, run) in peers {
        if !target.includes(run) {
            continue;
        }
        match (leases.get(run).unwrap_or(&LeaseView::Missing), target) {
            (LeaseView::Live(why), _) => out
                .left
                .push(format!("external peer container {c} (run {run}): {why}")),
            (LeaseView::Dead(why), _) => out.delete.push((c.clone(), run.clone(), why.clone())),
            (LeaseView::Missing, Target::Run(_)) => {
                out.delete
                    .push((c.clone(), run.clone(), "named by --run-id, no lease".into()))
            }
            (LeaseView::Missing, Target::DeadRuns) => out.left.push(format!(
                "external peer container {c} (run {run}): no lease on this machine; \
                 `netpolc cleanup --run-id {run}` removes it"
            )),
        }
    }
    out
}

/// The container runtime on PATH (docker first, as kind prefers it), if any.
fn runtime() -> Option<&'static str> {
    ["docker", "podman"].into_iter().find(|r| {
        Command::new(r)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn run_runtime(rt: &str, args: &[String]) -> Result<String, String> {
    let out = Command::new(rt)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {rt}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{rt} {}` failed: {}",
            crate::shell::join(args),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// How long cleanup waits for a dead run's `kind` child (it holds the lease while it may still
/// be creating the cluster).
const ORPHAN_WAIT: Duration = Duration::from_secs(10);

/// Watching for clusters that reappear: `kind delete` takes seconds, so scans are spaced.
const KIND_SWEEP: Sweep = Sweep {
    every: Duration::from_millis(500),
    quiet_passes: 2,
    bound: Duration::from_secs(120),
};

fn kind(args: &[&str]) -> Result<String, ProviderError> {
    let out = Command::new("kind").args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ProviderError::Prerequisite("`kind` is not installed".into())
        } else {
            ProviderError::Failed(format!("cannot run kind: {e}"))
        }
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ProviderError::Failed(format!(
            "`kind {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn list() -> Result<Vec<String>, ProviderError> {
    kind(&["get", "clusters"]).map(|s| parse_clusters(&s))
}

/// Deletes kind clusters of dead runs (or of run `target` exactly). `Err(Prerequisite)` when
/// `kind` is not installed, `Err(Failed)` when clusters cannot be listed: the caller says so and
/// goes on with the other providers.
pub fn cleanup(target: &Target, leases: &LeaseDir) -> Result<Report, ProviderError> {
    let procs = ThisMachine::new();
    let clusters = list()?;
    let mut report = Report::default();
    let rt = runtime();
    let peers = match rt {
        Some(rt) => match run_runtime(rt, &peer_list_args()) {
            Ok(out) => parse_peers(&out),
            Err(e) => {
                report.errors.push(format!("external peer containers: {e}"));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let mut runs: Vec<String> = clusters
        .iter()
        .filter_map(|c| cluster_run(c))
        .map(String::from)
        .chain(peers.iter().map(|(_, r)| r.clone()))
        .collect();
    runs.extend(leases.runs().map_err(ProviderError::Failed)?);
    runs.sort();
    runs.dedup();
    runs.retain(|r| target.includes(r));
    let mut views = BTreeMap::new();
    // Dead kind runs' leases (finished once their cluster is gone), and other dead leases held
    // only so that no run with that id starts while this cleanup works.
    let mut claims = BTreeMap::new();
    let mut held = Vec::new();
    let mut no_file = Vec::new();
    for run in &runs {
        let view = match lease::inspect(leases, run, ORPHAN_WAIT, &procs)
            .map_err(ProviderError::Failed)?
        {
            Inspection::Missing => {
                no_file.push(run.clone());
                LeaseView::Missing
            }
            Inspection::Live(l, _) => LeaseView::Live(l.why().to_string()),
            // Only a dead *kind* run's lease attributes a cluster (a dead local run with the
            // same id says nothing about a cluster kept by an earlier kind run).
            Inspection::Dead(c) if c.record.as_ref().is_some_and(|r| r.provider == "kind") => {
                let why = c.why.clone();
                claims.insert(run.clone(), c);
                LeaseView::Dead(why)
            }
            Inspection::Dead(c) => {
                held.push(c);
                LeaseView::Missing
            }
        };
        views.insert(run.clone(), view);
    }
    let p = plan(&clusters, target, &views);
    report.left.extend(p.left);
    let pp = plan_peers(&peers, target, &views);
    report.left.extend(pp.left);
    // Runs named by --run-id without a lease: hold a lease while deleting.
    let mut temporary = Vec::new();
    let mut named: Vec<&String> = p
        .delete
        .iter()
        .chain(&pp.delete)
        .map(|(_, r, _)| r)
        .collect();
    named.sort();
    named.dedup();
    for run in named {
        if no_file.contains(run) {
            match RunLease::acquire(leases, run, "cleanup", None) {
                Ok(l) => temporary.push(l),
                Err(e) => report.errors.push(format!("run {run}: {e}")),
            }
        }
    }
    let doomed: BTreeMap<String, (String, String)> = p
        .delete
        .iter()
        .map(|(c, r, w)| (c.clone(), (r.clone(), w.clone())))
        .collect();
    let doomed_runs: Vec<String> = doomed.values().map(|(r, _)| r.clone()).collect();
    if !doomed.is_empty() {
        let swept = sweep_blocking(
            KIND_SWEEP,
            || {
                let now = list().map_err(|e| e.to_string())?;
                Ok(now
                    .into_iter()
                    .filter(|c| cluster_run(c).is_some_and(|r| doomed_runs.iter().any(|d| d == r)))
                    .collect())
            },
            |batch| {
                for c in batch {
                    kind(&["delete", "cluster", "--name", c]).map_err(|e| e.to_string())?;
                }
                Ok(())
            },
        );
        match swept {
            Ok(removed) => {
                for c in removed {
                    let (run, why) = doomed
                        .get(&c)
                        .cloned()
                        .or_else(|| {
                            cluster_run(&c).map(|r| (r.to_string(), "same run".to_string()))
                        })
                        .unwrap_or_default();
                    report
                        .removed
                        .push(format!("kind cluster {c} (run {run}: {why})"));
                }
            }
            Err(e) => {
                report.errors.push(format!("kind clusters: {e}"));
                // Keep the leases of runs whose clusters may remain.
                claims.clear();
            }
        }
    }
    if let Some(rt) = rt {
        for (c, run, why) in &pp.delete {
            match run_runtime(rt, &peer_remove_args(c)) {
                Ok(_) => report
                    .removed
                    .push(format!("external peer container {c} (run {run}: {why})")),
                Err(e) => {
                    report
                        .errors
                        .push(format!("external peer container {c}: {e}"));
                    // Its run's lease stays, so a later cleanup finds the container again.
                    claims.remove(run);
                }
            }
        }
    }
    for (run, claim) in claims {
        if !doomed_runs.contains(&run) {
            report.removed.push(format!(
                "lease of run {run} (its kind cluster is gone: {})",
                claim.why
            ));
        }
        claim.finish();
    }
    for l in temporary {
        l.release();
    }
    drop(held);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kind get clusters` on a machine with: a dead run `a`, a live run `a-s1` (whose id starts
    /// with `a`), a cluster kept with --keep-cluster (no lease), a cluster of an older netpolc, and
    /// a cluster that is not netpolc's.
    const RECORDED: &str = "kind\nnetpolc-a--kindnet\nnetpolc-a-s1--calico\nnetpolc-kept--cilium\n\
                            netpolc-20261126-abcd-flannel\n";

    fn leases() -> BTreeMap<String, LeaseView> {
        BTreeMap::from([
            (
                "a".to_string(),
                LeaseView::Dead("its process is gone (pid 9)".into()),
            ),
            (
                "a-s1".to_string(),
                LeaseView::Live("live: lease held (pid 10)".into()),
            ),
        ])
    }

    #[test]
    fn kind_output_parses() {
        assert_eq!(parse_clusters(RECORDED).len(), 5);
        assert!(parse_clusters("No kind clusters found.\n").is_empty());
        assert!(parse_clusters("").is_empty());
    }

    #[test]
    fn plain_cleanup_deletes_only_dead_runs_clusters() {
        let p = plan(&parse_clusters(RECORDED), &Target::DeadRuns, &leases());
        let deleted: Vec<&str> = p.delete.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(deleted, vec!["netpolc-a--kindnet"]);
        assert_eq!(p.left.len(), 3, "{:?}", p.left);
        assert!(p.left[0].contains("netpolc-a-s1--calico") && p.left[0].contains("live"));
        assert!(p.left[1].contains("netpolc-kept--cilium") && p.left[1].contains("no lease"));
        assert!(p.left[2].contains("netpolc-20261126-abcd-flannel"));
        assert!(!p.left.iter().any(|l| l.contains("kind cluster kind ")));
    }

    #[test]
    fn an_exact_run_id_targets_one_run() {
        let clusters = parse_clusters(RECORDED);
        let p = plan(&clusters, &Target::Run("a".into()), &leases());
        assert_eq!(p.delete.len(), 1);
        assert_eq!(p.delete[0].0, "netpolc-a--kindnet");
        assert!(p.left.is_empty());
        // Live even when named.
        let p = plan(&clusters, &Target::Run("a-s1".into()), &leases());
        assert!(p.delete.is_empty() && p.left.len() == 1);
        // No lease: named exactly, so it goes.
        let p = plan(&clusters, &Target::Run("kept".into()), &leases());
        assert_eq!(p.delete[0].0, "netpolc-kept--cilium");
        // An older netpolc's cluster goes when its whole old name is given as the run id.
        let p = plan(
            &clusters,
            &Target::Run("20261126-abcd-flannel".into()),
            &leases(),
        );
        assert_eq!(p.delete[0].0, "netpolc-20261126-abcd-flannel");
        let p = plan(&clusters, &Target::Run("20261126-abcd".into()), &leases());
        assert_eq!(p, Plan::default());
    }

    /// `docker ps` output (labels `k=v,k=v`) and podman's (`map[k:v]`) for: a dead run `a`'s
    /// peer, a live run `a-s1`'s, a peer of a run without a lease, and containers that only look
    /// like peers (one label missing).
    const PEERS_DOCKER: &str = "netpolc-a--external-web\tnetpolc.io/external=web,netpolc.io/run-id=a\n\
                                netpolc-a-s1--external-web\tnetpolc.io/run-id=a-s1,netpolc.io/external=web\n\
                                netpolc-kept--external-db\tnetpolc.io/external=db,netpolc.io/run-id=kept\n\
                                impostor\tnetpolc.io/external=web\n\
                                other\tnetpolc.io/run-id=a\n";
    const PEERS_PODMAN: &str =
        "netpolc-a--external-web\tmap[netpolc.io/external:web netpolc.io/run-id:a]\n";

    #[test]
    fn peer_containers_parse_from_docker_and_podman() {
        let d = parse_peers(PEERS_DOCKER);
        assert_eq!(
            d,
            [
                ("netpolc-a--external-web".to_string(), "a".to_string()),
                ("netpolc-a-s1--external-web".into(), "a-s1".into()),
                ("netpolc-kept--external-db".into(), "kept".into()),
            ]
        );
        assert_eq!(parse_peers(PEERS_PODMAN), d[..1]);
        assert!(parse_peers("").is_empty());
    }

    #[test]
    fn only_a_dead_or_named_runs_peers_are_removed() {
        let peers = parse_peers(PEERS_DOCKER);
        let p = plan_peers(&peers, &Target::DeadRuns, &leases());
        let gone: Vec<&str> = p.delete.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(gone, ["netpolc-a--external-web"]);
        assert_eq!(p.left.len(), 2, "{:?}", p.left);
        assert!(p.left[0].contains("a-s1") && p.left[0].contains("live"));
        assert!(p.left[1].contains("netpolc-kept--external-db") && p.left[1].contains("no lease"));
        // Named exactly: its peer goes even without a lease; a prefix names nothing.
        let p = plan_peers(&peers, &Target::Run("kept".into()), &leases());
        assert_eq!(p.delete[0].0, "netpolc-kept--external-db");
        assert_eq!(
            plan_peers(&peers, &Target::Run("ke".into()), &leases()),
            Plan::default()
        );
        let p = plan_peers(&peers, &Target::Run("a-s1".into()), &leases());
        assert!(p.delete.is_empty() && p.left.len() == 1);
    }

    #[test]
    fn peer_commands_are_argv_never_shell_text() {
        let list = peer_list_args();
        assert_eq!(
            list,
            [
                "ps",
                "--all",
                "--filter",
                "label=netpolc.io/external",
                "--format",
                "{{.Names}}\t{{.Labels}}"
            ]
        );
        // A hostile name stays one argument.
        assert_eq!(
            peer_remove_args("x; rm -rf /"),
            ["rm", "--force", "x; rm -rf /"]
        );
    }
}
