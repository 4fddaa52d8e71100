//! `netpolc faults`.

use super::exit;

pub fn run() -> u8 {
    eprintln!("netpolc faults: not implemented yet");
    exit::PREREQUISITE
}
