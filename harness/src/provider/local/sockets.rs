//! The harness's own servers and probe clients.
//!
//! Sockets are *created* on a thread inside the pod's namespace ([`super::netns::in_netns`]) and
//! then driven from the tokio runtime: a socket keeps the namespace it was created in, so one
//! process can serve and probe thousands of (pod, port) pairs without a helper binary.
//! SCTP one-to-one sockets behave like TCP for connect/listen/accept, so they share the TCP code
//! once created; on kernels without SCTP the probe is `unsupported`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::task::JoinHandle;

use crate::model::Protocol;
use crate::probe::Connectivity;

/// What UDP probes send; the server echoes it back.
const PAYLOAD: &[u8] = b"netpolc-probe";

/// Whether this kernel can create SCTP sockets (`Err` says why not).
pub fn detect_sctp() -> Result<(), String> {
    sctp_fd().map(drop).map_err(|e| {
        format!("this kernel has no SCTP (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) failed: {e})")
    })
}

fn sctp_fd() -> io::Result<std::os::fd::OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::Sctp,
    )
    .map_err(io::Error::from)
}

fn stream_socket(protocol: Protocol) -> io::Result<TcpSocket> {
    match protocol {
        Protocol::Sctp => Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(
            sctp_fd()?,
        ))),
        _ => TcpSocket::new_v4(),
    }
}

/// A socket created inside a namespace, not yet registered with the runtime.
#[derive(Debug)]
pub enum RawSocket {
    Stream(TcpSocket),
    Datagram(std::net::UdpSocket),
}

/// A bound server socket for `port`/`protocol` (call on the namespace thread).
pub fn raw_server(port: u16, protocol: Protocol) -> io::Result<RawSocket> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    match protocol {
        Protocol::Udp => {
            let s = std::net::UdpSocket::bind(addr)?;
            s.set_nonblocking(true)?;
            Ok(RawSocket::Datagram(s))
        }
        _ => {
            let s = stream_socket(protocol)?;
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            Ok(RawSocket::Stream(s))
        }
    }
}

/// An unconnected client socket (call on the namespace thread).
pub fn raw_client(protocol: Protocol) -> io::Result<RawSocket> {
    match protocol {
        Protocol::Udp => {
            let s = std::net::UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
            s.set_nonblocking(true)?;
            Ok(RawSocket::Datagram(s))
        }
        _ => stream_socket(protocol).map(RawSocket::Stream),
    }
}

/// Starts serving on the runtime: streams are accepted and closed at once, datagrams echoed.
pub fn serve(raw: RawSocket) -> io::Result<JoinHandle<()>> {
    match raw {
        RawSocket::Stream(s) => {
            let listener = s.listen(4096)?;
            Ok(tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => drop(stream),
                        // Out of descriptors or a transient error: let probes finish, retry.
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }))
        }
        RawSocket::Datagram(s) => {
            let sock = UdpSocket::from_std(s)?;
            Ok(tokio::spawn(async move {
                let mut buf = [0u8; 1500];
                loop {
                    if let Ok((n, from)) = sock.recv_from(&mut buf).await {
                        let _ = sock.send_to(&buf[..n], from).await;
                    }
                }
            }))
        }
    }
}

/// How one probe ended, with a detail for anything but a plain connection.
pub struct Outcome {
    pub result: Connectivity,
    pub detail: Option<String>,
    pub elapsed: Duration,
}

/// Connects (streams) or exchanges an echo (datagrams) within `timeout`.
pub async fn probe(raw: RawSocket, to: SocketAddr, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let (result, detail) = match raw {
        RawSocket::Stream(s) => match tokio::time::timeout(timeout, s.connect(to)).await {
            Err(_) => (Connectivity::Timeout, None),
            Ok(Ok(_stream)) => (Connectivity::Connected, None),
            Ok(Err(e)) => classify(&e),
        },
        RawSocket::Datagram(s) => udp_echo(s, to, timeout).await,
    };
    Outcome {
        result,
        detail,
        elapsed: start.elapsed(),
    }
}

/// Sends the payload, resending a few times within the timeout (a datagram may be lost while
/// the path warms up), until the echo comes back.
async fn udp_echo(
    s: std::net::UdpSocket,
    to: SocketAddr,
    timeout: Duration,
) -> (Connectivity, Option<String>) {
    let sock = match UdpSocket::from_std(s) {
        Ok(s) => s,
        Err(e) => {
            let (c, _) = classify(&e);
            return (c, Some(format!("udp socket: {e}")));
        }
    };
    if let Err(e) = sock.connect(to).await {
        return classify(&e);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let resend = (timeout / 4).max(Duration::from_millis(50));
    let mut buf = [0u8; 64];
    loop {
        if let Err(e) = sock.send(PAYLOAD).await {
            return classify(&e);
        }
        let until = (tokio::time::Instant::now() + resend).min(deadline);
        match tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
            Ok(Ok(n)) if &buf[..n] == PAYLOAD => return (Connectivity::Connected, None),
            Ok(Ok(n)) => {
                return (
                    Connectivity::Error,
                    Some(format!("unexpected {n}-byte answer instead of the echo")),
                );
            }
            Ok(Err(e)) => return classify(&e),
            Err(_) if tokio::time::Instant::now() >= deadline => {
                return (Connectivity::Timeout, None);
            }
            Err(_) => {}
        }
    }
}

/// Refused and unreachable are the network's answers; the process running short of descriptors,
/// buffers or ports is the harness's own problem ([`Connectivity::Harness`]); anything else is a
/// probe error.
fn classify(e: &io::Error) -> (Connectivity, Option<String>) {
    use nix::errno::Errno;
    if super::netns::is_resource_shortage(e) {
        return (Connectivity::Harness, Some(format!("harness: {e}")));
    }
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ECONNREFUSED) => (
            Connectivity::Refused,
            Some("connection refused (TCP RST or ICMP port unreachable)".into()),
        ),
        Some(Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EACCES | Errno::EPERM) => {
            (Connectivity::Refused, Some(format!("rejected: {e}")))
        }
        _ => (Connectivity::Error, Some(e.to_string())),
    }
}

/// A shell command reproducing a probe from inside the source namespace (while the run's servers
/// are up): bash's /dev/tcp and /dev/udp for TCP and UDP, ncat for SCTP. Every word is quoted
/// ([`crate::shell::join`]), so pasting it runs exactly this probe whatever the namespace is
/// called.
pub fn command(netns: &str, to: SocketAddr, protocol: Protocol, timeout: Duration) -> String {
    crate::shell::join(&command_argv(netns, to, protocol, timeout))
}

/// The argument vector behind [`command`].
pub fn command_argv(
    netns: &str,
    to: SocketAddr,
    protocol: Protocol,
    timeout: Duration,
) -> Vec<String> {
    let t = format!("{:.3}", timeout.as_secs_f64());
    let t = t.trim_end_matches('0').trim_end_matches('.');
    let (ip, port) = (to.ip(), to.port());
    let mut argv: Vec<String> = ["ip", "netns", "exec", netns, "timeout", t]
        .into_iter()
        .map(String::from)
        .collect();
    match protocol {
        Protocol::Tcp => argv.extend([
            "bash".into(),
            "-c".into(),
            format!("exec 3<>/dev/tcp/{ip}/{port}"),
        ]),
        Protocol::Udp => argv.extend([
            "bash".into(),
            "-c".into(),
            format!("exec 3<>/dev/udp/{ip}/{port}; echo netpolc-probe >&3; head -c1 <&3"),
        ]),
        Protocol::Sctp => argv.extend([
            "ncat".into(),
            "--sctp".into(),
            "-z".into(),
            ip.to_string(),
            port.to_string(),
        ]),
    }
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_reproduce_the_probe() {
        let to: SocketAddr = "10.244.0.3:80".parse().expect("addr");
        assert_eq!(
            command(
                "netpolc-r-s0-x.a",
                to,
                Protocol::Tcp,
                Duration::from_millis(1500)
            ),
            "ip netns exec netpolc-r-s0-x.a timeout 1.5 bash -c 'exec 3<>/dev/tcp/10.244.0.3/80'"
        );
        assert!(command("n", to, Protocol::Udp, Duration::from_secs(1)).contains("timeout 1 bash"));
    }

    /// A hostile namespace name stays one word: `sh` splits the printed command back into the
    /// exact argument vector, for every protocol.
    #[test]
    fn commands_survive_hostile_namespace_names() {
        let to: SocketAddr = "10.0.0.9:81".parse().expect("addr");
        for ns in [
            "a\nnetns exec b touch pwned",
            "x;touch pwned",
            "$(touch pwned)",
            "'`q`'",
            "",
        ] {
            for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
                let argv = command_argv(ns, to, p, Duration::from_millis(250));
                let line = command(ns, to, p, Duration::from_millis(250));
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("set -- {line}; printf '%s\\0' \"$@\""))
                    .output()
                    .expect("sh runs");
                let words: Vec<&str> = std::str::from_utf8(&out.stdout)
                    .expect("utf-8")
                    .split_terminator('\0')
                    .collect();
                assert_eq!(words, argv, "{line}");
                assert_eq!(argv[3], ns);
            }
        }
    }

    #[test]
    fn refusals_and_errors_are_told_apart() {
        let refused = io::Error::from_raw_os_error(nix::libc::ECONNREFUSED);
        assert_eq!(classify(&refused).0, Connectivity::Refused);
        for shortage in [
            nix::libc::EMFILE,
            nix::libc::ENFILE,
            nix::libc::ENOBUFS,
            nix::libc::EADDRNOTAVAIL,
        ] {
            let e = io::Error::from_raw_os_error(shortage);
            assert_eq!(classify(&e).0, Connectivity::Harness, "{e}");
        }
        let other = io::Error::from_raw_os_error(nix::libc::EINVAL);
        assert_eq!(classify(&other).0, Connectivity::Error);
    }
}
