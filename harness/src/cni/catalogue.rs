//! The catalogue of CNIs for kind clusters (data, not code). Filled by the kind provider work.
