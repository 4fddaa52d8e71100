//! netpolc's own limits on inputs, so a hostile or careless input is refused (exit 2) in bounded
//! time and memory instead of exhausting the machine. Documented in `scenarios/README.md` and the
//! README; each is far above what a real cluster dump or a hand-written scenario needs.

/// Largest input file read, in bytes (64 MiB). `kubectl get … -o yaml` prints a few KiB per pod
/// (managedFields are omitted by default since kubectl 1.21), so this holds well over
/// [`MAX_PODS`] pods.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Most documents in one file, `List` items included.
pub const MAX_DOCUMENTS: usize = 50_000;

/// Most YAML nodes (mappings, sequences, scalars) in one document: a `List` of 5,000 pods with
/// their status and managedFields is about a million.
pub const MAX_YAML_NODES: usize = 4_000_000;

/// Deepest nesting of mappings and sequences in one document.
pub const MAX_DEPTH: usize = 64;

/// Deepest directory nesting walked under a directory given on the command line.
pub const MAX_DIRECTORY_DEPTH: usize = 64;

/// Most replicas one workload may declare (`spec.replicas`, `replicas` in scenario files).
pub const MAX_REPLICAS: u64 = 1_000;

/// Most pods in one scenario (real pods plus those synthesised for workloads). A step's truth
/// table has pods² cells per probe, so this bounds the oracle's work and the JSON output.
pub const MAX_PODS: usize = 5_000;

/// Most steps in one scenario.
pub const MAX_STEPS: usize = 500;

/// Most pods summed over a scenario's steps (each step holds its complete state).
pub const MAX_POD_STEPS: usize = 200_000;

/// Most truth-table cells of hand-written expectations in one scenario (pods² per probe each
/// `expect` entry describes, summed).
pub const MAX_EXPECTATION_CELLS: usize = 20_000_000;
