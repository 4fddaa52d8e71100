//! CNIs: the local dataplane's rule compilers (`nftables`, `none`) with injectable faults, and the
//! catalogue of real CNIs the kind provider installs, with their known gaps.

pub mod catalogue;
pub mod faults;
pub mod gaps;
pub mod nft;
pub mod nftables;
pub mod service_nat;
