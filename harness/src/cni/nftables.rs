//! Compiles a step's policies into an nftables ruleset per pod. Filled by the local dataplane work.
