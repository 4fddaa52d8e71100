//! CNIs: the local dataplane's rule compilers (`nftables`, `none`) with injectable faults, and the
//! catalogue of real CNIs the kind provider installs.

pub mod catalogue;
pub mod faults;
pub mod nft;
pub mod nftables;
