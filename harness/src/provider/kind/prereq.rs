//! The external tools the kind provider drives — docker (or podman), kind, kubectl, helm — found,
//! version-checked and run with bounded time. A missing tool is a `Prerequisite` error that says
//! what to install and how.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::cni::catalogue::Catalogue;
use crate::provider::ProviderError;

/// Oldest kind whose default CNI enforces NetworkPolicy (kube-network-policies).
pub const KIND_MIN_FOR_KINDNET_POLICIES: (u32, u32) = (0, 24);

/// How to install each tool, at the catalogue's pinned versions.
pub fn install_hint(tool: &str, cat: &Catalogue) -> String {
    let kind = &cat.kind.version;
    let kubectl = &cat.kubectl.version;
    let helm = &cat.helm.version;
    match tool {
        "docker" => "install Docker (https://docs.docker.com/engine/install/) or Podman \
                     (https://podman.io/docs/installation) and make sure the daemon is running"
            .into(),
        "kind" => format!(
            "install kind {kind}: `go install sigs.k8s.io/kind@{kind}` or download \
             https://kind.sigs.k8s.io/dl/{kind}/kind-linux-amd64 (see https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
        ),
        "kubectl" => format!(
            "install kubectl {kubectl}: https://dl.k8s.io/release/{kubectl}/bin/linux/amd64/kubectl \
             (see https://kubernetes.io/docs/tasks/tools/)"
        ),
        "helm" => format!(
            "install helm {helm}: https://get.helm.sh/helm-{helm}-linux-amd64.tar.gz (see https://helm.sh/docs/intro/install/)"
        ),
        other => format!("install {other}"),
    }
}

/// Found tools and their versions.
#[derive(Debug, Clone, Default)]
pub struct Prerequisites {
    /// `docker` or `podman`.
    pub runtime: String,
    pub versions: BTreeMap<String, String>,
}

/// Runs `program args`, returning stdout; `None` when the program does not exist.
async fn run(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
    stdin: Option<&[u8]>,
) -> Result<Option<std::process::Output>, ProviderError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ProviderError::Failed(format!("running {program}: {e}"))),
    };
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(data)
            .await
            .map_err(|e| ProviderError::Failed(format!("feeding {program}: {e}")))?;
        drop(w);
    }
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(Some(out)),
        Ok(Err(e)) => Err(ProviderError::Failed(format!("running {program}: {e}"))),
        Err(_) => Err(ProviderError::Failed(format!(
            "`{program} {}` did not finish within {}s",
            args.join(" "),
            timeout.as_secs()
        ))),
    }
}

fn checked(
    program: &str,
    args: &[&str],
    out: std::process::Output,
) -> Result<String, ProviderError> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ProviderError::Failed(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `kind v0.30.0 go1.24.6 linux/amd64` → (0, 30).
pub fn parse_kind_version(s: &str) -> Option<(u32, u32)> {
    let v = s.split_whitespace().find(|w| w.starts_with('v'))?;
    let mut it = v.trim_start_matches('v').split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Checks every tool the kind provider needs; all missing ones are named at once.
pub async fn check_prerequisites(needs_helm: bool) -> Result<Prerequisites, ProviderError> {
    check_with_path(needs_helm, None).await
}

/// As [`check_prerequisites`], looking programs up in `path` instead of `$PATH` when given.
async fn check_with_path(
    needs_helm: bool,
    path: Option<&str>,
) -> Result<Prerequisites, ProviderError> {
    let cat = Catalogue::builtin().map_err(|e| ProviderError::Failed(e.to_string()))?;
    let env: Vec<(&str, &str)> = path.map(|p| vec![("PATH", p)]).unwrap_or_default();
    let env = &env[..];
    let quick = Duration::from_secs(30);
    let mut missing = Vec::new();
    let mut p = Prerequisites::default();

    let docker = run(
        "docker",
        &["version", "--format", "{{.Server.Version}}"],
        env,
        quick,
        None,
    )
    .await?;
    match docker {
        Some(out) if out.status.success() => {
            p.runtime = "docker".into();
            p.versions.insert(
                "docker".into(),
                String::from_utf8_lossy(&out.stdout).trim().into(),
            );
        }
        other => {
            let podman = run(
                "podman",
                &["version", "--format", "{{.Version}}"],
                env,
                quick,
                None,
            )
            .await?;
            match podman {
                Some(out) if out.status.success() => {
                    p.runtime = "podman".into();
                    p.versions.insert(
                        "podman".into(),
                        String::from_utf8_lossy(&out.stdout).trim().into(),
                    );
                }
                _ => {
                    let why = match other {
                        Some(out) => format!(
                            "docker is installed but not usable ({}). ",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                        None => String::new(),
                    };
                    missing.push(format!("docker: {why}{}", install_hint("docker", &cat)));
                }
            }
        }
    }
    match run("kind", &["version"], env, quick, None).await? {
        Some(out) if out.status.success() => {
            let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if parse_kind_version(&v).is_some_and(|v| v < KIND_MIN_FOR_KINDNET_POLICIES) {
                missing.push(format!(
                    "kind: {v} is older than v0.24, whose kindnet enforces NetworkPolicy; {}",
                    install_hint("kind", &cat)
                ));
            }
            p.versions.insert("kind".into(), v);
        }
        _ => missing.push(format!("kind: {}", install_hint("kind", &cat))),
    }
    match run(
        "kubectl",
        &["version", "--client", "-o", "json"],
        env,
        quick,
        None,
    )
    .await?
    {
        Some(out) if out.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let ver = v["clientVersion"]["gitVersion"]
                .as_str()
                .unwrap_or("unknown");
            p.versions.insert("kubectl".into(), ver.into());
        }
        _ => missing.push(format!("kubectl: {}", install_hint("kubectl", &cat))),
    }
    if needs_helm {
        match run("helm", &["version", "--short"], env, quick, None).await? {
            Some(out) if out.status.success() => {
                p.versions.insert(
                    "helm".into(),
                    String::from_utf8_lossy(&out.stdout).trim().into(),
                );
            }
            _ => missing.push(format!(
                "helm (this CNI installs from a Helm chart): {}",
                install_hint("helm", &cat)
            )),
        }
    }
    if missing.is_empty() {
        Ok(p)
    } else {
        Err(ProviderError::Prerequisite(missing.join("\n")))
    }
}

impl Prerequisites {
    fn kind_env(&self) -> Vec<(&'static str, &'static str)> {
        if self.runtime == "podman" {
            vec![("KIND_EXPERIMENTAL_PROVIDER", "podman")]
        } else {
            Vec::new()
        }
    }

    pub async fn run_kind(&self, args: &[&str]) -> Result<String, ProviderError> {
        let out = run(
            "kind",
            args,
            &self.kind_env(),
            Duration::from_secs(600),
            None,
        )
        .await?
        .ok_or_else(|| ProviderError::Prerequisite("kind disappeared from PATH".into()))?;
        checked("kind", args, out)
    }

    pub async fn run_kubectl(&self, args: &[&str]) -> Result<String, ProviderError> {
        let out = run("kubectl", args, &[], Duration::from_secs(900), None)
            .await?
            .ok_or_else(|| ProviderError::Prerequisite("kubectl disappeared from PATH".into()))?;
        checked("kubectl", args, out)
    }

    pub async fn run_helm(&self, args: &[&str]) -> Result<String, ProviderError> {
        let out = run("helm", args, &[], Duration::from_secs(600), None)
            .await?
            .ok_or_else(|| ProviderError::Prerequisite("helm disappeared from PATH".into()))?;
        checked("helm", args, out)
    }

    /// The node containers of a kind cluster.
    pub async fn kind_nodes(&self, cluster: &str) -> Result<Vec<String>, ProviderError> {
        let out = self.run_kind(&["get", "nodes", "--name", cluster]).await?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// Unpacks a tar.gz into `directory` inside a node container.
    pub async fn node_untar(
        &self,
        node: &str,
        directory: &str,
        archive: &[u8],
    ) -> Result<(), ProviderError> {
        let args = ["exec", "-i", node, "tar", "-xz", "-C", directory];
        let out = run(
            &self.runtime,
            &args,
            &[],
            Duration::from_secs(120),
            Some(archive),
        )
        .await?
        .ok_or_else(|| {
            ProviderError::Prerequisite(format!("{} disappeared from PATH", self.runtime))
        })?;
        checked(&self.runtime, &args, out).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_versions_parse() {
        assert_eq!(
            parse_kind_version("kind v0.30.0 go1.24.6 linux/amd64"),
            Some((0, 30))
        );
        assert_eq!(
            parse_kind_version("kind v0.23.0 go1.21.10 linux/amd64"),
            Some((0, 23))
        );
        assert!(
            parse_kind_version("kind v0.23.0").is_some_and(|v| v < KIND_MIN_FOR_KINDNET_POLICIES)
        );
        assert_eq!(parse_kind_version("garbage"), None);
    }

    #[test]
    fn hints_name_pinned_versions() {
        let cat = Catalogue::builtin().expect("catalogue");
        assert!(install_hint("kind", &cat).contains("v0.30.0"));
        assert!(install_hint("kubectl", &cat).contains("v1.34.0"));
    }

    /// With no tools on the search path the check fails naming each one, never passes.
    #[tokio::test]
    async fn missing_tools_are_a_prerequisite_error_naming_them() {
        let empty = tempfile::tempdir().expect("tempdir");
        match check_with_path(true, Some(&empty.path().to_string_lossy())).await {
            Err(ProviderError::Prerequisite(m)) => {
                assert!(m.contains("kind: install kind v0.30.0"), "{m}");
                assert!(m.contains("kubectl: install kubectl v1.34.0"), "{m}");
                assert!(m.contains("helm"), "{m}");
                assert!(m.contains("docker: install Docker"), "{m}");
            }
            other => panic!("expected a Prerequisite error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_none_and_a_failing_one_is_an_error() {
        let none = run(
            "netpolc-no-such-tool",
            &[],
            &[],
            Duration::from_secs(5),
            None,
        )
        .await;
        assert!(matches!(none, Ok(None)));
        let out = run(
            "sh",
            &["-c", "echo boom >&2; exit 3"],
            &[],
            Duration::from_secs(5),
            None,
        )
        .await
        .expect("sh runs")
        .expect("sh exists");
        assert!(
            matches!(checked("sh", &["-c"], out), Err(ProviderError::Failed(m)) if m.contains("boom"))
        );
        let fed = run(
            "sh",
            &["-c", "cat"],
            &[],
            Duration::from_secs(5),
            Some(b"abc"),
        )
        .await
        .expect("runs")
        .expect("exists");
        assert_eq!(fed.stdout, b"abc");
    }
}
