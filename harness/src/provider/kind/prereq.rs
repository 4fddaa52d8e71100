//! The external tools the kind provider drives — docker (or podman), kind, kubectl, helm — found,
//! version-checked and run with bounded time. A missing tool is a `Prerequisite` error that says
//! what to install and how.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::cni::catalogue::{Arch, Catalogue};
use crate::provider::ProviderError;

/// Oldest kind whose default CNI enforces NetworkPolicy (kube-network-policies).
pub const KIND_MIN_FOR_KINDNET_POLICIES: (u32, u32) = (0, 24);

/// What the installed kind means for the pinned node images, which are built for one kind
/// release (kind supports a node image only with the release it was built for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindCompat {
    /// Same minor release: fine (a different patch is noted).
    Ok(Option<String>),
    /// Newer: it may not boot these images; said as a warning in the run's report.
    Warn(String),
    /// Older: refused before anything is created.
    Refuse(String),
}

/// Compares the installed kind (`kind version` output) with the catalogue's pinned release.
pub fn kind_compat(found: &str, pinned: &str) -> KindCompat {
    let (Some(have), Some(want)) = (parse_kind_semver(found), parse_kind_semver(pinned)) else {
        return KindCompat::Warn(format!(
            "cannot read the kind version from {found:?}; the node images are built for kind {pinned}"
        ));
    };
    let show = |v: (u32, u32, u32)| format!("v{}.{}.{}", v.0, v.1, v.2);
    let (h, w) = (show(have), show(want));
    if (have.0, have.1) < (want.0, want.1) {
        KindCompat::Refuse(format!(
            "kind {h} is older than kind {w}, which the pinned node images (harness/cni-catalogue.yaml) \
             are built for, and may fail to boot them"
        ))
    } else if (have.0, have.1) > (want.0, want.1) {
        KindCompat::Warn(format!(
            "kind {h} is newer than kind {w}, which the pinned node images are built for; if the \
             cluster does not come up, install kind {w}"
        ))
    } else if have != want {
        KindCompat::Ok(Some(format!(
            "kind {h} runs node images built for kind {w} (same minor release)"
        )))
    } else {
        KindCompat::Ok(None)
    }
}

/// `kind v0.30.0 go1.24.6 linux/amd64` (or `v0.30.0`) → (0, 30, 0).
pub fn parse_kind_semver(s: &str) -> Option<(u32, u32, u32)> {
    let v = s.split_whitespace().find(|w| w.starts_with('v'))?;
    let core = v.trim_start_matches('v').split(['-', '+']).next()?;
    let mut it = core.split('.');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next().unwrap_or("0").parse().ok()?,
    ))
}

/// How to install each tool, at the catalogue's pinned versions, for this host's architecture.
pub fn install_hint(tool: &str, cat: &Catalogue) -> String {
    let kind = &cat.kind.version;
    let kubectl = &cat.kubectl.version;
    let helm = &cat.helm.version;
    let arch = Arch::host().map(Arch::as_str).unwrap_or("amd64");
    match tool {
        "docker" => "install Docker (https://docs.docker.com/engine/install/) or Podman \
                     (https://podman.io/docs/installation) and make sure the daemon is running"
            .into(),
        "kind" => format!(
            "install kind {kind}: `go install sigs.k8s.io/kind@{kind}` or download \
             https://kind.sigs.k8s.io/dl/{kind}/kind-linux-{arch} (see https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
        ),
        "kubectl" => format!(
            "install kubectl {kubectl}: https://dl.k8s.io/release/{kubectl}/bin/linux/{arch}/kubectl \
             (see https://kubernetes.io/docs/tasks/tools/)"
        ),
        "helm" => format!(
            "install helm {helm}: https://get.helm.sh/helm-{helm}-linux-{arch}.tar.gz (see https://helm.sh/docs/intro/install/)"
        ),
        other => format!("install {other}"),
    }
}

/// Found tools and their versions.
#[derive(Debug, Clone)]
pub struct Prerequisites {
    /// `docker` or `podman`.
    pub runtime: String,
    pub versions: BTreeMap<String, String>,
    /// The nodes' architecture (the container runtime's; binaries installed on nodes match it).
    pub arch: Arch,
    /// Said in the run's report (e.g. a newer kind than the node images were built for).
    pub warnings: Vec<String>,
}

impl Default for Prerequisites {
    fn default() -> Self {
        Prerequisites {
            runtime: String::new(),
            versions: BTreeMap::new(),
            arch: Arch::Amd64,
            warnings: Vec::new(),
        }
    }
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
    let mut arch_seen = None;
    match docker {
        Some(out) if out.status.success() => {
            p.runtime = "docker".into();
            p.versions.insert(
                "docker".into(),
                String::from_utf8_lossy(&out.stdout).trim().into(),
            );
            if let Some(a) = run(
                "docker",
                &["info", "--format", "{{.Architecture}}"],
                env,
                quick,
                None,
            )
            .await?
            .filter(|o| o.status.success())
            {
                arch_seen = Some(String::from_utf8_lossy(&a.stdout).trim().to_string());
            }
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
                    if let Some(a) = run(
                        "podman",
                        &["info", "--format", "{{.Host.Arch}}"],
                        env,
                        quick,
                        None,
                    )
                    .await?
                    .filter(|o| o.status.success())
                    {
                        arch_seen = Some(String::from_utf8_lossy(&a.stdout).trim().to_string());
                    }
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
            match kind_compat(&v, &cat.kind.version) {
                KindCompat::Refuse(why) => {
                    missing.push(format!("kind: {why}; {}", install_hint("kind", &cat)))
                }
                KindCompat::Warn(why) => p.warnings.push(why),
                KindCompat::Ok(note) => p.warnings.extend(note),
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
    match arch_seen
        .as_deref()
        .map(Arch::parse)
        .unwrap_or_else(Arch::host)
    {
        Ok(a) => p.arch = a,
        Err(ProviderError::Prerequisite(m)) => missing.push(m),
        Err(e) => missing.push(e.to_string()),
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

    /// Runs the container runtime (docker or podman) with `args` as an argument vector.
    pub async fn run_runtime(&self, args: &[&str]) -> Result<String, ProviderError> {
        let out = run(&self.runtime, args, &[], Duration::from_secs(600), None)
            .await?
            .ok_or_else(|| {
                ProviderError::Prerequisite(format!("{} disappeared from PATH", self.runtime))
            })?;
        checked(&self.runtime, args, out)
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

    /// Unpacks an (uncompressed) tar into `directory` inside a node container.
    pub async fn node_untar(
        &self,
        node: &str,
        directory: &str,
        archive: &[u8],
    ) -> Result<(), ProviderError> {
        let args = ["exec", "-i", node, "tar", "-x", "-C", directory];
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
    fn kind_versions_are_compared_with_the_pinned_release() {
        assert_eq!(
            kind_compat("kind v0.30.0 go1.24.6 linux/amd64", "v0.30.0"),
            KindCompat::Ok(None)
        );
        assert!(
            matches!(kind_compat("kind v0.30.1 go1.25 linux/arm64", "v0.30.0"),
            KindCompat::Ok(Some(m)) if m.contains("v0.30.1") && m.contains("v0.30.0"))
        );
        match kind_compat("kind v0.29.0 go1.24.2 linux/amd64", "v0.30.0") {
            KindCompat::Refuse(m) => {
                assert!(m.contains("kind v0.29.0 is older than kind v0.30.0"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        match kind_compat("kind v0.31.0-alpha.12+abc go1.25 linux/amd64", "v0.30.0") {
            KindCompat::Warn(m) => {
                assert!(m.contains("kind v0.31.0 is newer than kind v0.30.0"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            kind_compat("garbage", "v0.30.0"),
            KindCompat::Warn(_)
        ));
    }

    #[test]
    fn architectures_are_read_in_every_spelling_and_others_refused() {
        for s in ["x86_64", "amd64", "linux/amd64"] {
            assert_eq!(Arch::parse(s).expect(s), Arch::Amd64);
        }
        for s in ["aarch64", "arm64", "linux/arm64"] {
            assert_eq!(Arch::parse(s).expect(s), Arch::Arm64);
        }
        match Arch::parse("riscv64") {
            Err(ProviderError::Prerequisite(m)) => {
                assert!(
                    m.contains("\"riscv64\"") && m.contains("amd64 and arm64"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
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
