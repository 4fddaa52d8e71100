//! `netpolc faults`: one fault per line, its name then what it breaks.

use crate::cni::faults::Fault;

use super::exit;

/// The listing, name column padded so the sentences line up.
pub fn render() -> String {
    let width = Fault::ALL.iter().map(|f| f.name().len()).max().unwrap_or(0);
    Fault::ALL
        .iter()
        .map(|f| format!("{:width$}  {}\n", f.name(), f.description()))
        .collect()
}

pub fn run() -> u8 {
    match super::emit(&render()) {
        Ok(()) => exit::OK,
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_fault_name_first() {
        let text = render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), Fault::ALL.len());
        for (line, f) in lines.iter().zip(Fault::ALL) {
            let (name, sentence) = line.split_once(' ').unwrap_or_default();
            assert_eq!(name, f.name());
            assert_eq!(sentence.trim_start(), f.description());
        }
    }
}
