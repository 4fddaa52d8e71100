//! Batched probing through `kubectl exec`-style calls: one exec per source pod per pass, running
//! that pod's probes concurrently inside it with `agnhost connect`, one parseable line each.
//!
//! Cells are decided up front when probing them would not judge the CNI: a catalogued gap
//! (e.g. SCTP on Cilium), a cell whose oracle answer hinges on an ipBlock that classifies the
//! pod's model address differently from its real one, or loopback when it is not judged.

use std::net::IpAddr;
use std::time::Duration;

use crate::model::Protocol;
use crate::policy::{CompiledPolicy, Peer};
use crate::probe::Connectivity;

/// Marker starting every result line of a probe script.
pub const LINE_MARK: &str = "NETPOLC";

/// How many `agnhost connect` processes a script starts at once before waiting for them.
pub const WAVE: usize = 64;

/// How self-connections (a pod to its own IP) are judged on real clusters.
///
/// CNIs legitimately differ on hairpin traffic to a pod's own address, so upstream's e2e does not
/// judge it (kubernetes/kubernetes#95879). By default this provider probes it anyway and records
/// what it saw in the cell's detail, but reports the cell `unsupported` so it cannot change the
/// verdict; `Judge` compares it with the oracle like any other cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loopback {
    #[default]
    Record,
    Judge,
}

/// One probe inside a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptProbe {
    pub index: usize,
    /// The address as written into the script (an IP, or a placeholder in plans).
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// `host:port`, bracketing IPv6 literals.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The agnhost argument vector for one probe.
pub fn connect_argv(host: &str, port: u16, protocol: Protocol, timeout: Duration) -> Vec<String> {
    vec![
        "/agnhost".into(),
        "connect".into(),
        host_port(host, port),
        format!("--protocol={}", protocol.lower()),
        format!("--timeout={}", go_duration(timeout)),
    ]
}

/// The agnhost command for one probe, shell-quoted (a line of the probe script).
pub fn connect_command(host: &str, port: u16, protocol: Protocol, timeout: Duration) -> String {
    crate::shell::join(&connect_argv(host, port, protocol, timeout))
}

/// Where an exec runs: namespace, pod and container, as the cluster names them.
#[derive(Debug, Clone, Copy)]
pub struct ExecTarget<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
}

/// The `kubectl exec` command reproducing one probe (each observation's reproduction command).
/// Every word is shell-quoted, so pasting it runs exactly this probe whatever the names are.
pub fn exec_command(
    at: ExecTarget<'_>,
    host: &str,
    port: u16,
    protocol: Protocol,
    timeout: Duration,
) -> String {
    let mut argv: Vec<String> = [
        "kubectl",
        "exec",
        "-n",
        at.namespace,
        at.pod,
        "-c",
        at.container,
        "--",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    argv.extend(connect_argv(host, port, protocol, timeout));
    crate::shell::join(&argv)
}

/// A Go `time.Duration` literal (`1s`, `1500ms`), as agnhost's flag parser expects.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The `sh -c` script for one source pod: every probe in the background (waves of [`WAVE`]),
/// each printing `NETPOLC <index> <exit code> <first line of agnhost's stderr>`.
pub fn script(probes: &[ScriptProbe], timeout: Duration) -> String {
    let mut s = String::from(
        "p() { n=$1; shift; o=$(\"$@\" 2>&1); r=$?; o=$(printf '%s' \"$o\" | head -n 1 | tr -d '\\r'); echo \"NETPOLC $n $r $o\"; }\n",
    );
    for (i, p) in probes.iter().enumerate() {
        if i > 0 && i % WAVE == 0 {
            s.push_str("wait\n");
        }
        s.push_str(&format!(
            "p {} {} &\n",
            p.index,
            connect_command(&p.host, p.port, p.protocol, timeout)
        ));
    }
    s.push_str("wait\n");
    s
}

/// How long one script may take: its waves plus slack for exec itself.
pub fn script_deadline(n: usize, timeout: Duration) -> Duration {
    let waves = n.div_ceil(WAVE).max(1) as u32;
    timeout * waves + Duration::from_secs(15)
}

/// One parsed result line: exit code and agnhost's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResult {
    pub code: i32,
    pub message: String,
}

/// Parses a script's stdout into results by index; missing or garbled lines stay `None`.
pub fn parse_output(stdout: &str, n: usize) -> Vec<Option<RawResult>> {
    let mut out = vec![None; n];
    for line in stdout.lines() {
        let mut parts = line.splitn(4, ' ');
        if parts.next() != Some(LINE_MARK) {
            continue;
        }
        let (Some(idx), Some(code)) = (
            parts.next().and_then(|s| s.parse::<usize>().ok()),
            parts.next().and_then(|s| s.parse::<i32>().ok()),
        ) else {
            continue;
        };
        if let Some(slot) = out.get_mut(idx) {
            *slot = Some(RawResult {
                code,
                message: parts.next().unwrap_or("").trim().to_string(),
            });
        }
    }
    out
}

/// Maps agnhost's exit code and message prefix (TIMEOUT, REFUSED, OTHER, UNKNOWN, DNS) to a
/// connectivity. Active rejections (RST, ICMP unreachable, "no route to host" from a rejecting
/// rule) count as refused; a protocol the node cannot open is unsupported.
pub fn classify(r: &RawResult) -> Connectivity {
    if r.code == 0 {
        return Connectivity::Connected;
    }
    let m = r.message.to_ascii_lowercase();
    if m.starts_with("timeout") || m.contains("i/o timeout") {
        Connectivity::Timeout
    } else if m.contains("protocol not supported") || m.contains("address family not supported") {
        Connectivity::Unsupported
    } else if m.starts_with("refused")
        || m.contains("connection refused")
        || m.contains("no route to host")
        || m.contains("network is unreachable")
        || m.contains("permission denied")
    {
        Connectivity::Refused
    } else {
        Connectivity::Error
    }
}

/// Whether any ipBlock of any policy classifies `model` and `real` differently — then the
/// oracle's answer (computed on the model address) may not hold for the real pod.
pub fn ipblock_sensitive(policies: &[CompiledPolicy], model: IpAddr, real: IpAddr) -> bool {
    if model == real {
        return false;
    }
    policies
        .iter()
        .flat_map(|p| p.ingress.iter().flatten().chain(p.egress.iter().flatten()))
        .flat_map(|r| r.peers.iter().flatten())
        .any(|peer| match peer {
            Peer::IpBlock { cidr, except } => {
                Peer::ip_matches(cidr, except, model) != Peer::ip_matches(cidr, except, real)
            }
            Peer::Pods { .. } => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_runs_every_probe_in_background_and_waits() {
        let probes: Vec<ScriptProbe> = (0..3)
            .map(|i| ScriptProbe {
                index: i,
                host: format!("10.0.0.{i}"),
                port: 80,
                protocol: Protocol::Udp,
            })
            .collect();
        let s = script(&probes, Duration::from_millis(1500));
        assert_eq!(s.matches(" &\n").count(), 3);
        assert!(s.contains("p 2 /agnhost connect 10.0.0.2:80 --protocol=udp --timeout=1500ms &"));
        assert!(s.ends_with("wait\n"));
    }

    #[test]
    fn script_waits_between_waves() {
        let probes: Vec<ScriptProbe> = (0..(WAVE * 2 + 1))
            .map(|i| ScriptProbe {
                index: i,
                host: "h".into(),
                port: 1,
                protocol: Protocol::Tcp,
            })
            .collect();
        assert_eq!(
            script(&probes, Duration::from_secs(1))
                .matches("wait\n")
                .count(),
            3
        );
        assert_eq!(
            script_deadline(probes.len(), Duration::from_secs(1)),
            Duration::from_secs(18)
        );
    }

    /// The reproduction command splits back (under `sh`) into exactly the intended argv, and
    /// a hostile host in the script stays one argument of the probe.
    #[test]
    fn exec_commands_and_scripts_quote_every_name() {
        let at = ExecTarget {
            namespace: "ns;touch pwned",
            pod: "$(touch pwned)",
            container: "c\nd",
        };
        let line = exec_command(at, "10.0.0.1", 80, Protocol::Tcp, Duration::from_secs(1));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("set -- {line}; printf '%s\\0' \"$@\""))
            .output()
            .expect("sh runs");
        let words: Vec<&str> = std::str::from_utf8(&out.stdout)
            .expect("utf-8")
            .split_terminator('\0')
            .collect();
        assert_eq!(
            words,
            [
                "kubectl",
                "exec",
                "-n",
                "ns;touch pwned",
                "$(touch pwned)",
                "-c",
                "c\nd",
                "--",
                "/agnhost",
                "connect",
                "10.0.0.1:80",
                "--protocol=tcp",
                "--timeout=1s"
            ]
        );
        let probes = [ScriptProbe {
            index: 0,
            host: "h;touch pwned".into(),
            port: 1,
            protocol: Protocol::Tcp,
        }];
        let body = script(&probes, Duration::from_secs(1)).replace("/agnhost", "fake");
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = "fake() { printf '%s|' \"$@\" >&2; return 1; }\n";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{fake}{body}"))
            .current_dir(dir.path())
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("NETPOLC 0 1 connect|h;touch pwned:1|"),
            "{stdout}"
        );
        assert!(!dir.path().join("pwned").exists());
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(
            connect_command("fd00::5", 81, Protocol::Sctp, Duration::from_secs(2)),
            // Quoted: unquoted, `[fd00::5]` is a glob bracket expression.
            "/agnhost connect '[fd00::5]:81' --protocol=sctp --timeout=2s"
        );
    }

    /// The script really runs under a POSIX shell and its output parses back: a stand-in
    /// `/agnhost` is not available here, so the test swaps in a shell function with agnhost's
    /// exit codes and messages.
    #[test]
    fn script_output_parses_under_a_real_shell() {
        let probes = vec![
            ScriptProbe {
                index: 0,
                host: "ok".into(),
                port: 1,
                protocol: Protocol::Tcp,
            },
            ScriptProbe {
                index: 1,
                host: "slow".into(),
                port: 2,
                protocol: Protocol::Tcp,
            },
            ScriptProbe {
                index: 2,
                host: "rst".into(),
                port: 3,
                protocol: Protocol::Udp,
            },
        ];
        let body = script(&probes, Duration::from_secs(1)).replace("/agnhost connect", "fake");
        let fake = "fake() { case $1 in ok:*) return 0;; slow:*) echo TIMEOUT >&2; return 1;; *) echo 'REFUSED: read udp: connection refused' >&2; return 1;; esac; }\n";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{fake}{body}"))
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let parsed = parse_output(&stdout, 4);
        let got: Vec<Option<Connectivity>> =
            parsed.iter().map(|r| r.as_ref().map(classify)).collect();
        assert_eq!(
            got,
            [
                Some(Connectivity::Connected),
                Some(Connectivity::Timeout),
                Some(Connectivity::Refused),
                None
            ],
            "{stdout}"
        );
    }

    #[test]
    fn classification_follows_agnhost_prefixes() {
        let c = |code, m: &str| {
            classify(&RawResult {
                code,
                message: m.into(),
            })
        };
        assert_eq!(c(0, ""), Connectivity::Connected);
        assert_eq!(c(1, "TIMEOUT"), Connectivity::Timeout);
        assert_eq!(c(1, "REFUSED"), Connectivity::Refused);
        assert_eq!(
            c(1, "OTHER: dial tcp 10.0.0.1:80: connect: no route to host"),
            Connectivity::Refused
        );
        assert_eq!(
            c(1, "OTHER: socket: protocol not supported"),
            Connectivity::Unsupported
        );
        assert_eq!(c(1, "UNKNOWN: bad arguments"), Connectivity::Error);
        assert_eq!(c(126, "sh: /agnhost: not found"), Connectivity::Error);
    }

    #[test]
    fn garbled_lines_leave_cells_unobserved() {
        let r = parse_output(
            "noise\nNETPOLC x 0\nNETPOLC 1 0\nNETPOLC 9 0 out of range\n",
            2,
        );
        assert_eq!(r[0], None);
        assert_eq!(
            r[1],
            Some(RawResult {
                code: 0,
                message: String::new()
            })
        );
    }

    #[test]
    fn ipblock_sensitivity_only_when_membership_differs() {
        let yaml = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.0.2/32]}}]}]
"#;
        let np: k8s_openapi::api::networking::v1::NetworkPolicy =
            serde_saphyr::from_str(yaml).expect("policy");
        let cp = CompiledPolicy::compile(&np, "default").expect("compiles");
        let ps = [cp];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(!ipblock_sensitive(&ps, ip("10.244.0.3"), ip("10.244.1.7")));
        assert!(ipblock_sensitive(&ps, ip("10.244.0.2"), ip("10.244.1.7")));
        assert!(ipblock_sensitive(&ps, ip("10.244.0.3"), ip("192.168.1.7")));
        assert!(!ipblock_sensitive(&[], ip("10.244.0.3"), ip("192.168.1.7")));
    }

    /// Probes through Services dial a ClusterIP or a DNS name with the Service port; under a
    /// real `sh` the stand-in receives exactly `host:port` as one argument.
    #[test]
    fn service_hosts_reach_agnhost_as_one_host_port_argument() {
        let probes = [
            ScriptProbe {
                index: 0,
                host: "10.96.200.7".into(),
                port: 80,
                protocol: Protocol::Tcp,
            },
            ScriptProbe {
                index: 1,
                host: "s-x-a.netpolc-r--0-x.svc.cluster.local".into(),
                port: 81,
                protocol: Protocol::Udp,
            },
            ScriptProbe {
                index: 2,
                host: "fd00:10:96::a".into(),
                port: 80,
                protocol: Protocol::Tcp,
            },
        ];
        let body = script(&probes, Duration::from_secs(1)).replace("/agnhost connect", "fake");
        let fake = "fake() { printf '%s|' \"$@\" >&2; return 1; }\n";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{fake}{body}"))
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        for want in [
            "NETPOLC 0 1 10.96.200.7:80|--protocol=tcp|--timeout=1s|",
            "NETPOLC 1 1 s-x-a.netpolc-r--0-x.svc.cluster.local:81|--protocol=udp|--timeout=1s|",
            "NETPOLC 2 1 [fd00:10:96::a]:80|--protocol=tcp|--timeout=1s|",
        ] {
            assert!(stdout.lines().any(|l| l == want), "{want} in {stdout}");
        }
    }
}
