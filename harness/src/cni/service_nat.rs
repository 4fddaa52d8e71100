//! kube-proxy-like service NAT for the local dataplane, as a typed nftables table.
//!
//! Every pod namespace gets `table inet netpolc_svc` with one `nat` chain on the `output` hook at
//! `dstnat` priority: `ip daddr <ClusterIP> <proto> dport <port>` → `dnat to <pod>:<targetPort>`.
//! Connection tracking records the translation, so replies are un-NATed on their way back (the
//! client sees the ClusterIP answer) without any rule. The translation happens at the client's
//! own output, as kube-proxy's OUTPUT chain does for node-local clients and Cilium's socket load
//! balancer does for pods; the CNI's egress chain runs after it (priority `filter`), so policy
//! sees the backing pod's address, and the destination's ingress chain sees an ordinary
//! pod-to-pod packet — NetworkPolicy acts after DNAT, as the API requires. A pod reaching its own
//! Service is translated to its own address and loops through `lo`, crossing its egress and then
//! its ingress chain: the hairpin case, answered like the pod's loopback.
//!
//! Kept apart from the policy table so the `none` CNI (which enforces nothing) still has
//! Services, as a cluster with kube-proxy and a non-enforcing CNI has.

use crate::cni::nft::{self, Hook, Key, Match, Stmt, Val};
use crate::model::Protocol;
use crate::service::NatEntry;

/// The table holding the service NAT chain (family `inet`).
pub const TABLE: &str = "netpolc_svc";

/// The table that realises `entries` (one rule per ClusterIP, port and protocol).
pub fn table(entries: &[NatEntry]) -> nft::Table {
    let rules = entries
        .iter()
        .map(|e| {
            nft::Rule::new(vec![
                Stmt::Match(Match::new(Key::IpDaddr, vec![Val::Addr(e.cluster_ip)])),
                Stmt::Match(Match::new(Key::Dport(e.protocol), vec![Val::Port(e.port)])),
                Stmt::Dnat {
                    addr: e.endpoint,
                    port: Some(e.target_port),
                },
            ])
            .comment(format!(
                "{}:{}/{} -> {}:{}",
                e.cluster_ip,
                e.port,
                proto(e.protocol),
                e.endpoint,
                e.target_port
            ))
        })
        .collect();
    nft::Table {
        family: nft::Family::Inet,
        name: TABLE.into(),
        chains: vec![nft::Chain {
            name: "services".into(),
            base: Some(nft::Base {
                kind: nft::ChainType::Nat,
                hook: Hook::Output,
                priority: nft::priority::DSTNAT,
                policy: nft::Policy::Accept,
            }),
            rules,
        }],
    }
}

fn proto(p: Protocol) -> &'static str {
    p.lower()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::cni::faults::{Fault, FaultSet};
    use crate::cni::nftables::{Shape, compile};
    use crate::model::PodRef;
    use crate::scenario::load_str;

    const SCENARIO: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
model:
  pods:
    - {namespace: x, name: a, ip: 10.1.0.1, labels: {app: a}, ports: [80/TCP]}
    - {namespace: x, name: b, ip: 10.1.0.2, labels: {app: b}, ports: [80/TCP]}
    - {namespace: x, name: c, ip: 10.1.0.3, labels: {app: c}, ports: [80/TCP]}
steps:
  - name: s
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: a-to-b-only, namespace: x}
        spec:
          podSelector: {matchLabels: {app: a}}
          policyTypes: [Egress]
          egress: [{to: [{podSelector: {matchLabels: {app: b}}}]}]
"#;

    /// What the first packet of `x/a → ClusterIP of `to`:80` meets in x/a's namespace: the
    /// service table and the policy table on the output hook, interleaved by priority.
    fn egress_of_a(faults: &[Fault], to: &str) -> Option<nft::Packet> {
        let loaded = load_str(SCENARIO, "t.yaml").expect("loads");
        let step = &loaded.scenarios[0].steps[0];
        let probe = crate::model::Probe::new(80, Protocol::Tcp);
        let svcs = crate::service::probe_services(&step.model, &[], &[probe]);
        let nat = table(&crate::service::nat_entries(&step.model, &svcs));
        let fs = FaultSet::new(faults.iter().copied());
        let rules = compile(
            &step.model,
            &fs.distort(&step.policies),
            Shape::from_faults(&fs),
        );
        let policy = rules[&PodRef::new("x", "a")].table(1);
        let target = crate::service::target_for(&step.model, &svcs, &PodRef::new("x", to), probe)
            .expect("per-pod service");
        let pkt = nft::Packet {
            saddr: Ipv4Addr::new(10, 1, 0, 1),
            daddr: target.cluster_ip,
            protocol: Protocol::Tcp,
            dport: target.port,
            ct: nft::CtState::New,
            ct_dnat: false,
        };
        nft::Table::verdict_all(&[nat, policy], Hook::Output, &pkt)
    }

    #[test]
    fn policy_sees_the_backing_pod_after_dnat() {
        let to_b = egress_of_a(&[], "b").expect("a may reach b through its Service");
        assert_eq!(to_b.daddr, Ipv4Addr::new(10, 1, 0, 2));
        assert!(to_b.ct_dnat);
        assert!(egress_of_a(&[], "c").is_none(), "a may not reach c");
    }

    #[test]
    fn service_faults_change_what_service_packets_meet() {
        // Matched before DNAT: the ClusterIP is no allowed peer.
        assert!(egress_of_a(&[Fault::ServicePreDnat], "b").is_none());
        // Bypass: DNAT'ed connections skip egress policy.
        assert!(egress_of_a(&[Fault::ServiceBypass], "c").is_some());
    }

    #[test]
    fn renders_a_nat_chain_with_dnat_statements() {
        let e = NatEntry {
            cluster_ip: Ipv4Addr::new(10, 96, 0, 11),
            port: 80,
            protocol: Protocol::Udp,
            endpoint: Ipv4Addr::new(10, 244, 0, 2),
            target_port: 8080,
        };
        let doc = table(&[e]).replace_commands();
        let text = doc.to_string();
        assert!(text.contains(r#""type":"nat""#), "{text}");
        assert!(text.contains(r#""hook":"output""#), "{text}");
        assert!(
            text.contains(r#"{"dnat":{"addr":"10.244.0.2","family":"ip","port":8080}}"#),
            "{text}"
        );
    }
}
