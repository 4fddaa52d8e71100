//! `netpolc diff`.

use super::exit;

pub fn run(_args: super::DiffArgs) -> u8 {
    eprintln!("netpolc diff: not implemented yet");
    exit::PREREQUISITE
}
