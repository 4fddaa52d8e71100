//! The run engine: plans cells from the oracle, drives sessions, probes passes, measures
//! convergence, retries wrong cells, classifies and reaches a verdict. Filled by the engine work.
