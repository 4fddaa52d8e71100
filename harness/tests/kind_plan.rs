//! `--dry-run` plans of the kind and kubeconfig providers: deterministic, complete for every
//! catalogued CNI, valid multi-document YAML, and touching nothing.

use netpol_conformance::cni::catalogue::Catalogue;
use netpol_conformance::provider::ProviderError;
use netpol_conformance::provider::kind::{self, KindOptions};
use netpol_conformance::provider::kubeconfig::{self, KubeconfigOptions};
use netpol_conformance::scenario::{Scenario, load_str};

/// Seed-like: two namespaces (one called `y`, the YAML 1.1 boolean trap), bare pods and a
/// Deployment, a named port, a selector on the namespace name label, then a relabel and a delete.
const SEED: &str = r#"
apiVersion: netpolc/v1
kind: Scenario
name: seed-like
model:
  namespaces:
    - {name: x, labels: {team: a}}
    - {name: y, labels: {team: b}}
  pods:
    - {namespace: x, name: a, labels: {pod: a}, ports: [80/TCP, {port: 53, protocol: UDP, name: dns}]}
    - {namespace: y, name: b, labels: {pod: b}, ports: [80/TCP]}
  deployments:
    - {namespace: y, name: web, replicas: 2, labels: {app: web}, ports: [{port: 8080, name: http}]}
steps:
  - name: initial
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: allow-x, namespace: y}
        spec:
          podSelector: {}
          ingress:
            - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}}]
              ports: [{port: http}]
  - name: relabel
    labelPods: [{pod: y/b, set: {pod: bb}}]
  - name: delete
    delete: [y/allow-x]
"#;

fn seed() -> Vec<Scenario> {
    match load_str(SEED, "seed-like.yaml") {
        Ok(l) => l.scenarios,
        Err(e) => panic!("{e:?}"),
    }
}

fn kind_plan(cni: &str) -> String {
    match kind::dry_run(&seed(), &KindOptions::new("snap", cni)) {
        Ok(p) => p,
        Err(e) => panic!("{cni}: {e}"),
    }
}

#[test]
fn kind_plan_snapshot() {
    insta::assert_snapshot!("kind_calico_seed", kind_plan("calico"));
}

#[test]
fn kubeconfig_plan_snapshot() {
    let plan = kubeconfig::dry_run(
        &seed(),
        &KubeconfigOptions::new("snap", Some("prod".into())),
    )
    .expect("plan");
    insta::assert_snapshot!("kubeconfig_seed", plan);
}

#[test]
fn plans_are_deterministic() {
    assert_eq!(kind_plan("cilium"), kind_plan("cilium"));
}

#[test]
fn every_catalogued_cni_produces_a_complete_plan() {
    let cat = Catalogue::builtin().expect("catalogue");
    for cni in &cat.cnis {
        let plan = kind_plan(&cni.name);
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&plan)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", cni.name));
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds[0], "Plan", "{}", cni.name);
        assert_eq!(kinds[1], "Cluster", "{}", cni.name);
        assert_eq!(
            kinds.iter().filter(|k| **k == "StepPlan").count(),
            3,
            "{}",
            cni.name
        );
        for k in ["Namespace", "Pod", "Deployment", "NetworkPolicy"] {
            assert!(kinds.contains(&k), "{}: no {k} in {kinds:?}", cni.name);
        }
        let header = &docs[0];
        assert_eq!(header["cni"]["version"], cni.version.as_str());
        assert_eq!(
            header["cni"]["expectedVerdict"],
            cni.expected_verdict.as_str()
        );
        let install = header["cni"]["install"].as_array().expect("install list");
        assert_eq!(install.len(), cni.install.len(), "{}", cni.name);
        for (doc, step) in install.iter().zip(&cni.install) {
            let sources = step.all_sources();
            if let [(None, src)] = &sources[..] {
                assert_eq!(doc["url"], src.url.as_str());
                assert_eq!(doc["sha256"].as_str(), src.sha256.as_deref());
            } else {
                let listed = doc["architectures"].as_array().expect("per-arch sources");
                assert_eq!(listed.len(), sources.len(), "{}", cni.name);
                for (d, (arch, src)) in listed.iter().zip(&sources) {
                    assert_eq!(d["arch"].as_str(), arch.map(|a| a.as_str()));
                    assert_eq!(d["url"], src.url.as_str());
                    assert!(
                        src.sha256.is_some(),
                        "node binaries are always pinned by checksum"
                    );
                    assert_eq!(d["sha256"].as_str(), src.sha256.as_deref());
                }
            }
        }
        assert_eq!(
            docs[1]["networking"]["podSubnet"].as_str(),
            Some(cni.pod_subnet.to_string().as_str())
        );
        // Probe commands are part of the plan (shell-quoted: the placeholder is not a plain word).
        assert!(
            plan.contains(
                "/agnhost connect '{ip=netpolc-snap--0-y/b}:80' --protocol=tcp --timeout=3s"
            ),
            "{}",
            cni.name
        );
    }
}

#[test]
fn namespace_y_stays_a_string() {
    let plan = kind_plan("kindnet");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&plan).expect("yaml");
    let step = docs
        .iter()
        .find(|d| d["kind"] == "StepPlan")
        .expect("step plan");
    assert_eq!(step["namespaces"]["y"], "netpolc-snap--0-y");
    let ns = docs
        .iter()
        .find(|d| d["kind"] == "Namespace" && d["metadata"]["labels"]["netpolc.io/name"] == "y")
        .expect("namespace y");
    assert_eq!(ns["metadata"]["name"], "netpolc-snap--0-y");
}

#[test]
fn unknown_cni_is_bad_input_naming_the_known_ones() {
    match kind::dry_run(&seed(), &KindOptions::new("r", "weave")) {
        Err(ProviderError::InvalidInput(m)) => {
            assert!(m.contains("kindnet, calico, cilium, flannel"), "{m}")
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn cilium_plan_marks_sctp_cells_unsupported() {
    let sctp = SEED.replace("80/TCP, {port: 53", "80/TCP, 9/SCTP, {port: 53");
    let scenarios = load_str(&sctp, "s.yaml").expect("loads").scenarios;
    let plan = kind::dry_run(&scenarios, &KindOptions::new("r", "cilium")).expect("plan");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&plan).expect("yaml");
    let step = docs
        .iter()
        .find(|d| d["kind"] == "StepPlan")
        .expect("step plan");
    let not_judged = step["probes"]["notJudged"].as_array().expect("notJudged");
    let sctp: Vec<&serde_json::Value> = not_judged
        .iter()
        .filter(|c| c["cell"].as_str().is_some_and(|s| s.ends_with("9/SCTP")))
        .collect();
    assert_eq!(sctp.len(), 16, "every SCTP cell of 4 pods");
    assert!(sctp.iter().all(|c| {
        c["unsupported"]
            .as_str()
            .is_some_and(|r| r.contains("sctp.enabled"))
    }));
    assert!(!plan.contains("--protocol=sctp"));
    let calico = kind::dry_run(&scenarios, &KindOptions::new("r", "calico")).expect("plan");
    assert!(calico.contains("--protocol=sctp"));
}

fn upstream() -> Vec<Scenario> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/upstream");
    match netpol_conformance::scenario::load_paths(&[dir]) {
        Ok(l) => l.scenarios,
        Err(e) => panic!("{e:?}"),
    }
}

/// `netpolc run scenarios/upstream --provider kind --cni cilium --dry-run` lists Cilium's
/// ipBlock gap with its references, and marks exactly the cells whose answer rests on an
/// ipBlock containing a pod address as not judged.
#[test]
fn cilium_upstream_plan_lists_the_ipblock_gap() {
    let plan = kind::dry_run(&upstream(), &KindOptions::new("r", "cilium")).expect("plan");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&plan).expect("yaml");
    let gaps = docs[0]["cni"]["gaps"].as_array().expect("gaps");
    let features: Vec<&str> = gaps.iter().filter_map(|g| g["feature"].as_str()).collect();
    assert_eq!(features, ["ipBlock-pod-ips", "sctp"]);
    assert!(
        gaps[0]["references"]
            .as_array()
            .expect("references")
            .iter()
            .any(|r| r == "https://github.com/cilium/cilium/issues/19601")
    );
    let step = docs
        .iter()
        .find(|d| d["kind"] == "StepPlan" && d["scenario"] == "upstream-egress-cidr")
        .expect("the egress-cidr step");
    let not_judged: Vec<&str> = step["probes"]["notJudged"]
        .as_array()
        .expect("notJudged")
        .iter()
        .filter(|c| {
            c["unsupported"]
                .as_str()
                .is_some_and(|r| r.starts_with("catalogued gap ipBlock-pod-ips: "))
        })
        .filter_map(|c| c["cell"].as_str())
        .collect();
    assert_eq!(not_judged, ["x/a -> y/b 80/TCP"]);
    // Calico has no such gap: the same cell is probed.
    let calico = kind::dry_run(&upstream(), &KindOptions::new("r", "calico")).expect("plan");
    assert!(!calico.contains("catalogued gap ipBlock-pod-ips"));
}

/// Templated ipBlocks appear with the placeholder of the real pod address.
#[test]
fn templated_cidrs_show_the_real_address_placeholder() {
    let plan = kind::dry_run(&upstream(), &KindOptions::new("r", "calico")).expect("plan");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&plan).expect("yaml");
    let np = docs
        .iter()
        .find(|d| {
            d["kind"] == "NetworkPolicy"
                && d["metadata"]["name"] == "allow-client-a-via-cidr-egress-rule"
                && d["spec"]["egress"][0]["to"][0]["ipBlock"]["except"].is_array()
        })
        .expect("the cidr-except policy");
    let block = &np["spec"]["egress"][0]["to"][0]["ipBlock"];
    let ns = np["metadata"]["namespace"].as_str().expect("namespace");
    let real_xb = format!("{{ip={}/b}}", ns.trim_end_matches("-x").to_string() + "-x");
    assert_eq!(
        block["cidr"].as_str(),
        Some(format!("{real_xb}/4").as_str()),
        "{block}"
    );
    assert_eq!(
        block["except"][0].as_str(),
        Some(real_xb.as_str()),
        "{block}"
    );
}

#[test]
fn flannel_plan_unpacks_only_bridge_for_both_architectures() {
    let plan = kind_plan("flannel");
    assert!(plan.contains("cni-plugins-linux-amd64-v1.7.1.tgz"));
    assert!(plan.contains("cni-plugins-linux-arm64-v1.7.1.tgz"));
    assert!(
        plan.contains("tar -x -C /opt/cni/bin < <only bridge"),
        "{plan}"
    );
}

/// A scenario with an external peer: the kind plan starts one labelled container for it on the
/// kind network, probes pods' egress to it at its real address (a placeholder in the plan), and
/// lists probes from it as not run. The kubeconfig plan starts nothing and runs none of them.
#[test]
fn the_external_peer_is_a_container_on_the_kind_network() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/egress/external-peer.yaml");
    let scenarios = netpol_conformance::scenario::load_paths(&[path])
        .expect("loads")
        .scenarios;
    let opts = KindOptions {
        externals: kind::external::wanted(&scenarios),
        ..KindOptions::new("r", "calico")
    };
    let plan = kind::dry_run(&scenarios, &opts).expect("plan");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&plan).expect("yaml");
    let containers = docs[0]["externalPeers"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "{containers:?}");
    let c = &containers[0];
    assert_eq!(c["external"], "(external)/web");
    assert_eq!(c["name"], "netpolc-r--external-web");
    assert_eq!(c["network"], "kind");
    assert_eq!(c["serves"], serde_json::json!(["80/TCP"]));
    let start = c["start"].as_str().expect("start");
    for part in [
        "run --detach --name netpolc-r--external-web --network kind",
        "--label netpolc.io/run-id=r",
        "--label netpolc.io/external=web",
        "serve-hostname --tcp --http=false --port 80",
    ] {
        assert!(start.contains(part), "{part:?} in {start}");
    }
    let step = docs
        .iter()
        .find(|d| d["kind"] == "StepPlan" && d["scenario"] == "egress-external-peer")
        .expect("a step plan");
    let xa = step["probes"]["execs"]
        .as_array()
        .expect("execs")
        .iter()
        .find(|e| e["from"] == "x/a")
        .expect("x/a execs");
    assert!(
        xa["script"]
            .as_str()
            .is_some_and(|s| s.contains("{ip=external peer web}:80")),
        "{xa:?}"
    );
    let not_judged: Vec<&str> = step["probes"]["notJudged"]
        .as_array()
        .expect("notJudged")
        .iter()
        .filter(|c| c.get("external").is_some())
        .filter_map(|c| c["cell"].as_str())
        .collect();
    assert!(!not_judged.is_empty());
    assert!(
        not_judged
            .iter()
            .all(|c| c.starts_with("(external)/web -> ")),
        "{not_judged:?}"
    );

    let kc = kubeconfig::dry_run(&scenarios, &KubeconfigOptions::new("r", None)).expect("plan");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&kc).expect("yaml");
    let step = docs
        .iter()
        .find(|d| d["kind"] == "StepPlan" && d["scenario"] == "egress-external-peer")
        .expect("a step plan");
    let scripts: Vec<&str> = step["probes"]["execs"]
        .as_array()
        .expect("execs")
        .iter()
        .filter_map(|e| e["script"].as_str())
        .collect();
    assert!(scripts.iter().all(|s| !s.contains("external peer")));
}

fn cluster_policy_scenarios() -> Vec<Scenario> {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/cluster-policies");
    match netpol_conformance::scenario::load_paths(&[
        dir.join("v1alpha1-admin-and-baseline.yaml"),
        dir.join("priorities.yaml"),
    ]) {
        Ok(l) => l.scenarios,
        Err(e) => panic!("{e:?}"),
    }
}

/// The plan says per CNI what happens to cluster-wide policies: on Calico (v1alpha1 kinds) the
/// AdminNetworkPolicy is rendered confined to the session's namespaces and applied, the
/// ClusterNetworkPolicies are listed as not applied with a reason naming Calico, and their
/// cells are not judged; on kindnet nothing is applied and the reason names kindnet.
#[test]
fn plans_show_the_per_cni_cluster_policy_decision() {
    let calico = kind::dry_run(
        &cluster_policy_scenarios(),
        &KindOptions::new("snap", "calico"),
    )
    .expect("plan");
    let anp =
        "---\napiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata:";
    let cnp =
        "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata:";
    assert!(calico.contains(anp), "{calico}");
    assert!(
        calico.contains("serverSideApplyClusterPolicies:\n  - AdminNetworkPolicy/netpolc-snap--0-"),
        "{calico}"
    );
    assert!(calico.contains("netpolc.io/slot: \"0\""));
    assert!(calico.contains("netpolc.io/run-id: snap"));
    assert!(
        calico.contains(
            "ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) is not enforced by CNI calico"
        ),
        "{calico}"
    );
    assert!(!calico.contains(cnp), "no CNP object is applied on Calico");
    assert!(calico.contains("crd/adminnetworkpolicies.policy.networking.k8s.io"));
    let kindnet = kind::dry_run(
        &cluster_policy_scenarios(),
        &KindOptions::new("snap", "kindnet"),
    )
    .expect("plan");
    assert!(
        !kindnet.contains(anp) && !kindnet.contains(cnp),
        "{kindnet}"
    );
    assert!(
        kindnet.contains(
            "AdminNetworkPolicy (policy.networking.k8s.io/v1alpha1) is not enforced by CNI kindnet"
        ),
        "{kindnet}"
    );
    assert!(kindnet.contains("installCrds: []"));
    for plan in [&calico, &kindnet] {
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(plan).expect("yaml");
        assert!(docs.len() > 5);
    }
}

/// With Service modes the plan lists the Services (per-pod `s-<ns>-<pod>`, in the real
/// namespaces, no ClusterIP: the API server allocates it), when endpoints are waited for, and
/// one exec per source pod and mode dialling the ClusterIP placeholder or the DNS name in the
/// real namespace. Without them, no Service appears.
#[test]
fn service_modes_plan_lists_services_endpoint_waits_and_probes_through_them() {
    use netpol_conformance::service::ProbeMode;
    let opts = KindOptions {
        probe_modes: vec![
            ProbeMode::PodIp,
            ProbeMode::ServiceIp,
            ProbeMode::ServiceName,
        ],
        ..KindOptions::new("snap", "calico")
    };
    let plan = kind::dry_run(&seed(), &opts).expect("plan");
    for want in [
        "kind: Service\n",
        "name: s-x-a\n",
        "namespace: netpolc-snap--0-x\n",
        "netpolc.io/pod: a\n",
        "{clusterIP=netpolc-snap--0-x/s-x-a}:80",
        "s-y-b.netpolc-snap--0-y.svc.cluster.local:80",
        "via: service-ip",
        "via: service-name",
        "waitForEndpoints:",
    ] {
        assert!(plan.contains(want), "{want:?} missing");
    }
    assert!(
        !plan.contains("clusterIP: "),
        "ClusterIPs are not requested"
    );
    // Services are created in the first step only: later steps apply none.
    let docs: Vec<&str> = plan.split("\n---\n").collect();
    let steps: Vec<&&str> = docs
        .iter()
        .filter(|d| d.contains("kind: StepPlan"))
        .collect();
    assert_eq!(steps.len(), 3);
    assert!(
        steps[0].contains("serverSideApplyServices:\n  - netpolc-snap--0-x/s-x-a"),
        "{}",
        steps[0]
    );
    assert!(
        steps[2].contains("serverSideApplyServices: []"),
        "{}",
        steps[2]
    );
    insta::assert_snapshot!("kind_calico_seed_service_modes", plan);
    let pod_ip = kind_plan("calico");
    assert!(!pod_ip.contains("kind: Service\n") && !pod_ip.contains("waitForEndpoints"));
}
