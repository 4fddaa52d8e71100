//! Rebuilds the integration tests when shipped scenarios or test fixtures change: the data-driven
//! tests (`tests/scenarios.rs`) enumerate `../scenarios/**` at compile time, so a new file must
//! trigger a rebuild to get its own test.

fn main() {
    println!("cargo::rerun-if-changed=../scenarios");
    println!("cargo::rerun-if-changed=tests/fixtures");
    println!("cargo::rerun-if-changed=build.rs");
}
