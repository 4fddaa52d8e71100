//! The few Kubernetes API calls the cluster session makes, behind a trait.
//!
//! [`KubeApi`] is the real thing (kube-rs). The trait exists so the session's logic — slots,
//! reuse, readiness, the reachability gate, SCTP detection, probing — runs unchanged against a
//! simulated API server in tests and in the `kind_sim` benchmark (`harness/tests/cluster_sim`),
//! under tokio's paused clock, on a machine without a cluster.

use std::future::Future;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Namespace as K8sNamespace, Pod as K8sPod, Service as K8sService, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{
    ApiResource, AttachParams, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams,
};

use crate::policy::ClusterKind;
use kube::{Api, Client};
use tokio::io::AsyncReadExt;

/// Field manager for server-side apply.
pub const FIELD_MANAGER: &str = "netpolc";

/// A failed API call: the HTTP status when the server answered, and its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: Option<u16>,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Option<u16>, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.code == Some(404)
    }
}

impl From<kube::Error> for ApiError {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) => ApiError::new(Some(s.code), e.to_string()),
            _ => ApiError::new(None, e.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// What the cluster session asks of an API server. Objects are created or updated by server-side
/// apply; label changes are JSON merge patches; deletes of missing objects succeed.
pub trait ClusterApi: Send + Sync + 'static {
    fn apply_namespace(&self, ns: &K8sNamespace) -> impl Future<Output = ApiResult<()>> + Send;
    fn get_namespace(
        &self,
        name: &str,
    ) -> impl Future<Output = ApiResult<Option<K8sNamespace>>> + Send;
    fn patch_namespace(
        &self,
        name: &str,
        merge: &serde_json::Value,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    fn delete_namespace(&self, name: &str) -> impl Future<Output = ApiResult<()>> + Send;
    /// Namespaces carrying `label_selector` (e.g. `netpolc.io/run-id=<run>`).
    fn list_namespaces(
        &self,
        label_selector: &str,
    ) -> impl Future<Output = ApiResult<Vec<K8sNamespace>>> + Send;
    fn get_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = ApiResult<Option<ServiceAccount>>> + Send;
    fn apply_pod(&self, pod: &K8sPod) -> impl Future<Output = ApiResult<()>> + Send;
    fn apply_deployment(&self, d: &Deployment) -> impl Future<Output = ApiResult<()>> + Send;
    fn list_pods(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> impl Future<Output = ApiResult<Vec<K8sPod>>> + Send;
    fn patch_pod(
        &self,
        namespace: &str,
        name: &str,
        merge: &serde_json::Value,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    fn apply_policy(&self, np: &NetworkPolicy) -> impl Future<Output = ApiResult<()>> + Send;
    fn delete_policy(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Creates or updates a cluster-wide policy (server-side apply of the JSON object, whose
    /// `kind` and `apiVersion` name the CRD).
    fn apply_cluster_policy(
        &self,
        kind: ClusterKind,
        obj: &serde_json::Value,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    fn delete_cluster_policy(
        &self,
        kind: ClusterKind,
        name: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Creates or updates a Service (server-side apply) and returns it as the server stored it:
    /// the ClusterIP probes dial is the one the API server allocated, read from the answer.
    fn apply_service(&self, svc: &K8sService)
    -> impl Future<Output = ApiResult<K8sService>> + Send;
    fn delete_service(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// EndpointSlices carrying `label_selector` (`kubernetes.io/service-name=<svc>`).
    fn list_endpoint_slices(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> impl Future<Output = ApiResult<Vec<EndpointSlice>>> + Send;
    /// Runs `command` in a container and returns its stdout (stderr is not collected).
    fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        command: Vec<String>,
    ) -> impl Future<Output = ApiResult<String>> + Send;
}

/// The real API server, through kube-rs.
#[derive(Clone)]
pub struct KubeApi {
    client: Client,
}

impl KubeApi {
    pub fn new(client: Client) -> Self {
        KubeApi { client }
    }
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The CRD resource serving `kind` (cluster-scoped, group `policy.networking.k8s.io`).
fn cluster_resource(kind: ClusterKind) -> ApiResource {
    let gvk = GroupVersionKind::gvk(
        "policy.networking.k8s.io",
        kind.api_version().rsplit('/').next().unwrap_or_default(),
        kind.as_str(),
    );
    ApiResource::from_gvk_with_plural(&gvk, crate::cni::catalogue::plural(kind))
}

fn ssa() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn name_of(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    m.name.clone().unwrap_or_default()
}

fn ns_of(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    m.namespace.clone().unwrap_or_default()
}

fn none_if_missing<T>(r: Result<T, kube::Error>) -> ApiResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn ok_if_missing<T>(r: Result<T, kube::Error>) -> ApiResult<()> {
    none_if_missing(r).map(drop)
}

impl ClusterApi for KubeApi {
    async fn apply_namespace(&self, ns: &K8sNamespace) -> ApiResult<()> {
        let api: Api<K8sNamespace> = Api::all(self.client.clone());
        api.patch(&name_of(&ns.metadata), &ssa(), &Patch::Apply(ns))
            .await?;
        Ok(())
    }
    async fn get_namespace(&self, name: &str) -> ApiResult<Option<K8sNamespace>> {
        let api: Api<K8sNamespace> = Api::all(self.client.clone());
        none_if_missing(api.get(name).await)
    }
    async fn patch_namespace(&self, name: &str, merge: &serde_json::Value) -> ApiResult<()> {
        let api: Api<K8sNamespace> = Api::all(self.client.clone());
        api.patch(name, &PatchParams::default(), &Patch::Merge(merge))
            .await?;
        Ok(())
    }
    async fn delete_namespace(&self, name: &str) -> ApiResult<()> {
        let api: Api<K8sNamespace> = Api::all(self.client.clone());
        ok_if_missing(api.delete(name, &DeleteParams::background()).await)
    }
    async fn list_namespaces(&self, label_selector: &str) -> ApiResult<Vec<K8sNamespace>> {
        let api: Api<K8sNamespace> = Api::all(self.client.clone());
        Ok(api
            .list(&ListParams::default().labels(label_selector))
            .await?
            .items)
    }
    async fn get_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> ApiResult<Option<ServiceAccount>> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        none_if_missing(api.get(name).await)
    }
    async fn apply_pod(&self, pod: &K8sPod) -> ApiResult<()> {
        let api: Api<K8sPod> = Api::namespaced(self.client.clone(), &ns_of(&pod.metadata));
        api.patch(&name_of(&pod.metadata), &ssa(), &Patch::Apply(pod))
            .await?;
        Ok(())
    }
    async fn apply_deployment(&self, d: &Deployment) -> ApiResult<()> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns_of(&d.metadata));
        api.patch(&name_of(&d.metadata), &ssa(), &Patch::Apply(d))
            .await?;
        Ok(())
    }
    async fn list_pods(&self, namespace: &str, label_selector: &str) -> ApiResult<Vec<K8sPod>> {
        let api: Api<K8sPod> = Api::namespaced(self.client.clone(), namespace);
        Ok(api
            .list(&ListParams::default().labels(label_selector))
            .await?
            .items)
    }
    async fn patch_pod(
        &self,
        namespace: &str,
        name: &str,
        merge: &serde_json::Value,
    ) -> ApiResult<()> {
        let api: Api<K8sPod> = Api::namespaced(self.client.clone(), namespace);
        api.patch(name, &PatchParams::default(), &Patch::Merge(merge))
            .await?;
        Ok(())
    }
    async fn apply_policy(&self, np: &NetworkPolicy) -> ApiResult<()> {
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), &ns_of(&np.metadata));
        api.patch(&name_of(&np.metadata), &ssa(), &Patch::Apply(np))
            .await?;
        Ok(())
    }
    async fn delete_policy(&self, namespace: &str, name: &str) -> ApiResult<()> {
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), namespace);
        ok_if_missing(api.delete(name, &DeleteParams::default()).await)
    }
    async fn apply_cluster_policy(
        &self,
        kind: ClusterKind,
        obj: &serde_json::Value,
    ) -> ApiResult<()> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &cluster_resource(kind));
        let name = obj
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        api.patch(&name, &ssa(), &Patch::Apply(obj)).await?;
        Ok(())
    }
    async fn delete_cluster_policy(&self, kind: ClusterKind, name: &str) -> ApiResult<()> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &cluster_resource(kind));
        ok_if_missing(api.delete(name, &DeleteParams::default()).await)
    }
    async fn apply_service(&self, svc: &K8sService) -> ApiResult<K8sService> {
        let api: Api<K8sService> = Api::namespaced(self.client.clone(), &ns_of(&svc.metadata));
        Ok(api
            .patch(&name_of(&svc.metadata), &ssa(), &Patch::Apply(svc))
            .await?)
    }
    async fn delete_service(&self, namespace: &str, name: &str) -> ApiResult<()> {
        let api: Api<K8sService> = Api::namespaced(self.client.clone(), namespace);
        ok_if_missing(api.delete(name, &DeleteParams::default()).await)
    }
    async fn list_endpoint_slices(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> ApiResult<Vec<EndpointSlice>> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        Ok(api
            .list(&ListParams::default().labels(label_selector))
            .await?
            .items)
    }
    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        command: Vec<String>,
    ) -> ApiResult<String> {
        let api: Api<K8sPod> = Api::namespaced(self.client.clone(), namespace);
        let ap = AttachParams::default()
            .container(container)
            .stdin(false)
            .stdout(true)
            .stderr(false);
        let mut proc = api.exec(pod, command, &ap).await?;
        let mut stdout = String::new();
        if let Some(mut r) = proc.stdout() {
            r.read_to_string(&mut stdout)
                .await
                .map_err(|e| ApiError::new(None, format!("reading exec output: {e}")))?;
        }
        let _ = proc.join().await;
        Ok(stdout)
    }
}
