//! What the kind and kubeconfig providers share: rendering scenarios into Kubernetes objects
//! ([`render`]), batched probing through exec ([`probing`]), the session and the pool of reusable
//! slots ([`session`]), its decisions on recorded API objects ([`decide`]), the API boundary
//! ([`api`]) and `--dry-run` plans ([`plan`]).

pub mod api;
pub mod cleanup;
pub mod decide;
pub mod plan;
pub mod probing;
pub mod render;
pub mod session;

pub use api::{ClusterApi, KubeApi};
pub use probing::Loopback;
pub use render::NameMap;
pub use session::{ClusterPool, ClusterSession, PoolPlatform, RealExternal, SessionConfig};
