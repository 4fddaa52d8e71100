//! What the kind and kubeconfig providers share: rendering scenarios into Kubernetes objects
//! ([`render`]), batched probing through exec ([`probing`]), the live kube-rs session
//! ([`session`]) and `--dry-run` plans ([`plan`]).

pub mod cleanup;
pub mod plan;
pub mod probing;
pub mod render;
pub mod session;

pub use probing::Loopback;
pub use render::NameMap;
pub use session::{ClusterSession, SessionConfig};
