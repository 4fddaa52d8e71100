//! The plan for a server *outside* the cluster, for ipBlock egress scenarios: a container on the
//! kind docker network (the e2e suite starts it with testcontainers or `docker run`), serving the
//! probe ports with the same agnhost image. Pods reach it by its address on that network, which
//! is outside the pod subnet, so only ipBlock peers can allow it.
//!
//! The two checks it enables: egress to an `ipBlock` containing the peer's /32 is allowed, and
//! egress to an `ipBlock` whose `except` carves that /32 out is denied.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::json;

use crate::model::{Probe, Protocol};

/// The docker network kind attaches its nodes to.
pub const KIND_NETWORK: &str = "kind";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPeer {
    /// Container name, unique per run (`netpolc-<run>-external`).
    pub name: String,
    pub image: String,
    pub network: String,
    pub probes: Vec<Probe>,
}

impl ExternalPeer {
    pub fn new(run: &str, image: &str, probes: &[Probe]) -> Self {
        let mut probes: Vec<Probe> = probes
            .iter()
            .copied()
            .filter(|p| p.protocol != Protocol::Sctp)
            .collect();
        probes.sort();
        probes.dedup();
        ExternalPeer {
            name: format!("netpolc-{run}-external"),
            image: image.to_string(),
            network: KIND_NETWORK.into(),
            probes,
        }
    }

    /// One `agnhost serve-hostname` per port under a shell (a single container, unlike pods,
    /// because nothing selects its ports by name). SCTP is left out: not every host has it.
    pub fn command(&self) -> Vec<String> {
        let mut script: String = self
            .probes
            .iter()
            .map(|p| {
                format!(
                    "/agnhost serve-hostname --{} --http=false --port {} & ",
                    p.protocol.lower(),
                    p.port
                )
            })
            .collect();
        script.push_str("wait");
        vec!["sh".into(), "-c".into(), script]
    }

    /// Equivalent `docker run` arguments (what testcontainers does, for plans and debugging).
    pub fn docker_run_args(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            "run",
            "--detach",
            "--rm",
            "--name",
            &self.name,
            "--network",
            &self.network,
            "--label",
            "netpolc.io/role=external-peer",
            "--entrypoint",
            "",
            &self.image,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(self.command());
        v
    }

    /// An egress policy for pods matching `pod_label` in `namespace`, allowing `cidr` minus
    /// `except`: with `cidr` ⊇ peer and no except → allowed; with except = peer/32 → denied.
    pub fn egress_policy(
        &self,
        name: &str,
        namespace: &str,
        pod_label: (&str, &str),
        cidr: IpNet,
        except: &[IpNet],
    ) -> serde_json::Value {
        let mut block = json!({ "cidr": cidr.to_string() });
        if !except.is_empty() {
            block["except"] = json!(except.iter().map(|e| e.to_string()).collect::<Vec<_>>());
        }
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": { "name": name, "namespace": namespace },
            "spec": {
                "podSelector": { "matchLabels": { pod_label.0: pod_label.1 } },
                "policyTypes": ["Egress"],
                "egress": [{ "to": [{ "ipBlock": block }] }],
            }
        })
    }

    /// The allowed/denied pair for a peer at `ip`: (policy, whether egress to the peer passes).
    pub fn allow_and_deny(
        &self,
        namespace: &str,
        pod_label: (&str, &str),
        ip: IpAddr,
    ) -> [(serde_json::Value, bool); 2] {
        let host = IpNet::from(ip);
        let wide = host.supernet_or_self(if ip.is_ipv4() { 16 } else { 64 });
        [
            (
                self.egress_policy("egress-to-external", namespace, pod_label, wide, &[]),
                true,
            ),
            (
                self.egress_policy(
                    "egress-except-external",
                    namespace,
                    pod_label,
                    wide,
                    &[host],
                ),
                false,
            ),
        ]
    }
}

trait SupernetOrSelf {
    fn supernet_or_self(&self, prefix: u8) -> IpNet;
}

impl SupernetOrSelf for IpNet {
    fn supernet_or_self(&self, prefix: u8) -> IpNet {
        IpNet::new(self.addr(), prefix.min(self.prefix_len()))
            .map(|n| n.trunc())
            .unwrap_or(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CompiledPolicy, Peer};

    fn peer() -> ExternalPeer {
        ExternalPeer::new(
            "r1",
            "agnhost@sha256:x",
            &[
                Probe::new(80, Protocol::Tcp),
                Probe::new(53, Protocol::Udp),
                Probe::new(80, Protocol::Tcp),
                Probe::new(9, Protocol::Sctp),
            ],
        )
    }

    #[test]
    fn container_runs_on_the_kind_network_serving_each_port() {
        let p = peer();
        let args = p.docker_run_args();
        let i = args
            .iter()
            .position(|a| a == "--network")
            .expect("network flag");
        assert_eq!(args[i + 1], "kind");
        let script = p.command()[2].clone();
        assert_eq!(
            script,
            "/agnhost serve-hostname --udp --http=false --port 53 & /agnhost serve-hostname --tcp --http=false --port 80 & wait"
        );
        assert!(!script.contains("sctp"));
    }

    #[test]
    fn allow_and_deny_policies_classify_the_peer_as_the_oracle_would() {
        let p = peer();
        let ip: IpAddr = "172.18.0.9".parse().expect("ip");
        for (policy, allowed) in p.allow_and_deny("x", ("pod", "a"), ip) {
            let np: k8s_openapi::api::networking::v1::NetworkPolicy =
                serde_json::from_value(policy).expect("a NetworkPolicy");
            let cp = CompiledPolicy::compile(&np, "x").expect("valid");
            let rules = cp.egress.as_ref().expect("egress");
            let peers = rules[0].peers.as_ref().expect("peers");
            let got = peers.iter().any(|pe| match pe {
                Peer::IpBlock { cidr, except } => Peer::ip_matches(cidr, except, ip),
                Peer::Pods { .. } => false,
            });
            assert_eq!(got, allowed, "{np:?}");
            // The wide block stays outside typical pod subnets.
            assert!(!got || !Peer::ip_matches(&"10.244.0.0/16".parse().expect("net"), &[], ip));
        }
    }
}
