//! `netpolc cleanup [--run-id ID]`: removes leftovers of crashed local runs.

use crate::provider::ProviderError;
use crate::provider::local;

use super::exit;

pub fn run(args: super::CleanupArgs) -> u8 {
    match local::cleanup(args.run_id.as_deref()) {
        Ok(removed) if removed.is_empty() => {
            println!("nothing to remove");
            exit::OK
        }
        Ok(removed) => {
            for r in removed {
                println!("removed {r}");
            }
            exit::OK
        }
        Err(e @ ProviderError::InvalidInput(_)) => {
            eprintln!("error: {e}");
            exit::BAD_INPUT
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::PREREQUISITE
        }
    }
}
