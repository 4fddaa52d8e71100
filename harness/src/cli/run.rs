//! `netpolc run`.

use super::exit;

pub fn run(_args: super::RunArgs) -> u8 {
    eprintln!("netpolc run: not implemented yet");
    exit::PREREQUISITE
}
