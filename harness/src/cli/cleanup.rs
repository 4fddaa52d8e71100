//! `netpolc cleanup`.

use super::exit;

pub fn run(_args: super::CleanupArgs) -> u8 {
    eprintln!("netpolc cleanup: not implemented yet");
    exit::PREREQUISITE
}
