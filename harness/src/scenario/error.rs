//! Input errors: every one names the file, the document, the field path and (where known) the line.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: PathBuf,
    /// 0-based index of the YAML document in the file (printed 1-based as well).
    pub document: Option<usize>,
    /// Key path inside the document, e.g. `spec.ingress[0].ports[1].endPort`.
    pub field: Option<String>,
    /// 1-based line and column in the file.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl InputError {
    pub fn file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        InputError {
            file: file.into(),
            document: None,
            field: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

/// Every part is printed with control and invisible formatting characters escaped
/// ([`crate::names::escape`]): file names, label keys in field paths and parser messages come
/// from the input, and a newline in them must not start a forged line on the terminal.
impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::names::escape;
        write!(f, "{}", escape(&self.file.display().to_string()))?;
        if let Some(d) = self.document {
            write!(f, ": document {} (index {d})", d + 1)?;
        }
        if let Some(l) = self.line {
            write!(f, ", line {l}")?;
            if let Some(c) = self.column {
                write!(f, ", column {c}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": field {}", escape(field))?;
        }
        write!(f, ": {}", escape(&self.message))
    }
}

/// Every problem found in the inputs (loading continues past the first, so authors see them all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputErrors(pub Vec<InputError>);

impl fmt::Display for InputErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<InputError> for InputErrors {
    fn from(e: InputError) -> Self {
        InputErrors(vec![e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_from_the_input_can_start_a_new_line() {
        let e = InputError {
            file: PathBuf::from("a\nb.yaml"),
            document: Some(0),
            field: Some("metadata.labels.x\ny".into()),
            line: Some(3),
            column: None,
            message: "bad\r\nerror: forged".into(),
        };
        let shown = e.to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown}");
        assert_eq!(
            shown,
            "a\\nb.yaml: document 1 (index 0), line 3: field metadata.labels.x\\ny: bad\\r\\nerror: forged"
        );
    }
}
