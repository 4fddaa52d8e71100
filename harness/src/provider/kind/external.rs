//! External peers on kind: one container per `model.externals` name, on the docker network kind
//! attaches its nodes to (`kind`), serving with the probe image. Pods reach it by its address on
//! that network, which is outside every pod subnet, so only ipBlock peers can allow it: "egress to
//! a CIDR outside the cluster" is probed, not assumed (`scenarios/egress/external-peer.yaml`).
//!
//! The containers are started with the same runtime kind uses (docker or podman), as argument
//! vectors: names come from the run id and DNS-label external names, the serving script is built
//! only from port numbers and fixed words. Each container carries the run's label
//! ([`RUN_LABEL`]) so a dead run's peers can be found, and is removed when the platform closes.
//! Its address is read from `inspect` ([`address_on`]) and handed to the cluster session, which
//! re-binds `<(external)/name>` templates to it, gates on pods reaching it, and probes pods'
//! egress to it. Probes *from* it are not run: it has no route to pod addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::model::{Probe, Protocol};
use crate::provider::ProviderError;
use crate::provider::kube::RealExternal;
use crate::scenario::Scenario;

/// The docker network kind attaches its nodes to.
pub const KIND_NETWORK: &str = "kind";

/// Container label carrying the run id (the same value namespaces carry).
pub const RUN_LABEL: &str = "netpolc.io/run-id";

/// Container label carrying the external's model name.
pub const NAME_LABEL: &str = "netpolc.io/external";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPeer {
    /// The model's name (`(external)/<name>`), a DNS label (the loader checks it).
    pub external: String,
    /// Container name, unique per run (`netpolc-<run>--external-<name>`).
    pub name: String,
    /// The run's label value.
    pub run: String,
    pub image: String,
    pub network: String,
    /// Probes it serves (no SCTP: not every host has it).
    pub probes: BTreeSet<Probe>,
}

/// What every scenario of the run needs from each external name: the union of the probes of the
/// scenarios declaring it and of its declared ports (a peer, like a pod, serves every probe of
/// its scenario, so an allowed cell never reads REFUSED), SCTP left out.
pub fn wanted(scenarios: &[Scenario]) -> BTreeMap<String, BTreeSet<Probe>> {
    let mut out: BTreeMap<String, BTreeSet<Probe>> = BTreeMap::new();
    for sc in scenarios {
        let probes = crate::provider::kube::render::scenario_probes(sc);
        for step in &sc.steps {
            for pod in step.model.pods.values().filter(|p| p.is_external()) {
                let e = out.entry(pod.name.clone()).or_default();
                e.extend(probes.iter().copied());
                e.extend(pod.ports.iter().map(|c| Probe::new(c.port, c.protocol)));
            }
        }
    }
    for probes in out.values_mut() {
        probes.retain(|p| p.protocol != Protocol::Sctp);
    }
    out.retain(|_, p| !p.is_empty());
    out
}

impl ExternalPeer {
    /// `run` is the run's label value ([`crate::provider::kube::NameMap::run_label`]).
    pub fn new(run: &str, external: &str, image: &str, probes: &BTreeSet<Probe>) -> Self {
        ExternalPeer {
            external: external.to_string(),
            name: format!("netpolc-{run}--external-{external}"),
            run: run.to_string(),
            image: image.to_string(),
            network: KIND_NETWORK.into(),
            probes: probes
                .iter()
                .copied()
                .filter(|p| p.protocol != Protocol::Sctp)
                .collect(),
        }
    }

    /// The peers of a run, one per external name.
    pub fn all(run: &str, image: &str, wanted: &BTreeMap<String, BTreeSet<Probe>>) -> Vec<Self> {
        wanted
            .iter()
            .map(|(name, probes)| ExternalPeer::new(run, name, image, probes))
            .collect()
    }

    /// One `agnhost serve-hostname` per probe (one process serves one port), all in a single
    /// container so the peer has one address. The script holds only numbers and fixed words.
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

    /// `docker run` arguments (after the runtime's name): detached, on the kind network, labelled
    /// with the run and the external's name.
    pub fn run_args(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "run".into(),
            "--detach".into(),
            "--name".into(),
            self.name.clone(),
            "--network".into(),
            self.network.clone(),
            "--label".into(),
            format!("{RUN_LABEL}={}", self.run),
            "--label".into(),
            format!("{NAME_LABEL}={}", self.external),
            "--entrypoint".into(),
            String::new(),
            self.image.clone(),
        ];
        v.extend(self.command());
        v
    }

    /// This peer once started at `ip`, for the cluster session.
    pub fn realised(&self, ip: IpAddr) -> RealExternal {
        RealExternal {
            ip,
            served: self.probes.clone(),
            what: format!("container {} at {ip}", self.name),
        }
    }
}

/// The address of a container on `network`, from the JSON `docker inspect` / `podman inspect`
/// prints for it (an array of one object; `NetworkSettings.Networks.<network>.IPAddress`, the
/// IPv6 address when the network has no IPv4).
pub fn address_on(inspect: &str, network: &str) -> Result<IpAddr, String> {
    let v: serde_json::Value =
        serde_json::from_str(inspect).map_err(|e| format!("inspect output is not JSON: {e}"))?;
    let obj = match &v {
        serde_json::Value::Array(a) if a.len() == 1 => &a[0],
        serde_json::Value::Object(_) => &v,
        _ => return Err("inspect output is not one container".into()),
    };
    let net = &obj["NetworkSettings"]["Networks"][network];
    if net.is_null() {
        return Err(format!(
            "the container is not attached to network {network:?}"
        ));
    }
    ["IPAddress", "GlobalIPv6Address"]
        .iter()
        .filter_map(|k| net[*k].as_str())
        .find(|s| !s.is_empty())
        .ok_or_else(|| format!("the container has no address on network {network:?}"))?
        .parse()
        .map_err(|e| format!("its address on network {network:?} does not parse: {e}"))
}

/// Starts `peers` and returns them realised by external name. On any failure the peers already
/// started are removed before the error is returned.
pub async fn start(
    tools: &super::Prerequisites,
    peers: &[ExternalPeer],
) -> Result<BTreeMap<String, RealExternal>, ProviderError> {
    let mut out = BTreeMap::new();
    for (i, p) in peers.iter().enumerate() {
        match start_one(tools, p).await {
            Ok(ip) => {
                out.insert(p.external.clone(), p.realised(ip));
            }
            Err(e) => {
                let _ = remove(tools, &peers[..=i]).await;
                return Err(e);
            }
        }
    }
    Ok(out)
}

async fn start_one(
    tools: &super::Prerequisites,
    p: &ExternalPeer,
) -> Result<IpAddr, ProviderError> {
    let args = p.run_args();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    tools.run_runtime(&refs).await?;
    let inspect = tools.run_runtime(&["inspect", &p.name]).await?;
    address_on(&inspect, &p.network)
        .map_err(|e| ProviderError::Failed(format!("external peer container {}: {e}", p.name)))
}

/// Removes `peers` (a missing container is not an error: it may never have started).
pub async fn remove(
    tools: &super::Prerequisites,
    peers: &[ExternalPeer],
) -> Result<(), ProviderError> {
    let mut errors = Vec::new();
    for p in peers {
        if let Err(e) = tools.run_runtime(&["rm", "--force", &p.name]).await {
            let m = e.to_string();
            if !m.contains("No such container") && !m.contains("no such container") {
                errors.push(m);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ProviderError::Failed(format!(
            "removing external peers: {}",
            errors.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes(list: &[(u16, Protocol)]) -> BTreeSet<Probe> {
        list.iter().map(|(p, pr)| Probe::new(*p, *pr)).collect()
    }

    fn peer() -> ExternalPeer {
        ExternalPeer::new(
            "r1",
            "web",
            "agnhost@sha256:x",
            &probes(&[
                (80, Protocol::Tcp),
                (53, Protocol::Udp),
                (9, Protocol::Sctp),
            ]),
        )
    }

    #[test]
    fn container_runs_on_the_kind_network_labelled_serving_each_port() {
        let p = peer();
        assert_eq!(p.name, "netpolc-r1--external-web");
        let args = p.run_args();
        let after = |flag: &str| -> Vec<&str> {
            args.windows(2)
                .filter(|w| w[0] == flag)
                .map(|w| w[1].as_str())
                .collect()
        };
        assert_eq!(after("--network"), ["kind"]);
        assert_eq!(
            after("--label"),
            ["netpolc.io/run-id=r1", "netpolc.io/external=web"]
        );
        let script = args.last().expect("script");
        assert_eq!(
            script,
            "/agnhost serve-hostname --udp --http=false --port 53 & /agnhost serve-hostname --tcp --http=false --port 80 & wait"
        );
        assert!(!script.contains("sctp"));
        assert_eq!(args[args.len() - 3], "sh");
    }

    #[test]
    fn wanted_unions_probes_and_ports_per_external_name() {
        let text = |name: &str, probe: &str, port: &str| {
            format!(
                "apiVersion: netpolc/v1\nkind: Scenario\nname: {name}\nmodel:\n  namespaces: [{{name: x}}]\n  pods: [{{namespace: x, name: a, labels: {{pod: a}}, ports: [80/TCP]}}]\n  externals: [{{name: web, ports: [{port}]}}]\nprobes: [\"{probe}\"]\nsteps: [{{name: s}}]\n"
            )
        };
        let a = crate::scenario::load_str(&text("one", "80/TCP", "8080/TCP"), "a.yaml").expect("a");
        let b = crate::scenario::load_str(&text("two", "53/UDP", "9/SCTP"), "b.yaml").expect("b");
        let mut all = a.scenarios;
        all.extend(b.scenarios);
        let w = wanted(&all);
        assert_eq!(w.keys().collect::<Vec<_>>(), ["web"]);
        assert_eq!(
            w["web"],
            probes(&[
                (80, Protocol::Tcp),
                (8080, Protocol::Tcp),
                (53, Protocol::Udp)
            ])
        );
        assert!(wanted(&[]).is_empty());
    }

    /// A `docker inspect` answer in the shape docker 27 prints (trimmed to the fields read; the
    /// test fixture was written from docker's documented output, not recorded here: this
    /// machine cannot pull images).
    #[test]
    fn the_address_is_read_from_inspect_on_the_kind_network() {
        let path = format!(
            "{}/tests/fixtures/kind/docker-inspect-external.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("fixture");
        assert_eq!(
            address_on(&text, "kind"),
            Ok("172.18.0.5".parse::<IpAddr>().expect("ip"))
        );
        assert!(
            address_on(&text, "bridge")
                .is_err_and(|e| e.contains("not attached to network \"bridge\""))
        );
        let v6only = r#"[{"NetworkSettings":{"Networks":{"kind":{"IPAddress":"","GlobalIPv6Address":"fc00:f853:ccd:e793::5"}}}}]"#;
        assert_eq!(
            address_on(v6only, "kind"),
            Ok("fc00:f853:ccd:e793::5".parse::<IpAddr>().expect("ip"))
        );
        let none = r#"[{"NetworkSettings":{"Networks":{"kind":{"IPAddress":""}}}}]"#;
        assert!(address_on(none, "kind").is_err_and(|e| e.contains("no address")));
        assert!(address_on("[]", "kind").is_err());
        assert!(address_on("not json", "kind").is_err());
    }

    #[test]
    fn realised_peers_serve_what_they_were_started_with() {
        let p = peer();
        let r = p.realised("172.18.0.5".parse().expect("ip"));
        assert_eq!(
            r.served,
            probes(&[(80, Protocol::Tcp), (53, Protocol::Udp)])
        );
        assert!(r.what.contains("netpolc-r1--external-web"));
    }
}
