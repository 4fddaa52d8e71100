//! Splitting a file into documents: multi-document YAML (YAML 1.2 booleans, so a namespace `y`
//! stays a string) or JSON (`kubectl … -o json`, one or more concatenated values), each parsed
//! untyped, with the line it starts on so later errors can point into the file.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::policy::FieldError;

use super::limits::{MAX_DEPTH, MAX_DOCUMENTS, MAX_FILE_BYTES, MAX_YAML_NODES};
use super::{InputError, InputErrors, jsonpos, yamlpos};

/// How a document was written, which decides how a field path is found in its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
    Yaml,
    Json,
}

/// One document of a file: where it starts and its untyped content.
#[derive(Debug)]
pub(super) struct Doc {
    pub index: usize,
    /// 1-based line of the document's first line in the file.
    pub first_line: usize,
    pub text: String,
    pub value: Value,
    pub syntax: Syntax,
}

impl Doc {
    pub fn ctx<'a>(&'a self, file: &'a Path) -> DocCtx<'a> {
        DocCtx {
            file,
            index: self.index,
            first_line: self.first_line,
            text: &self.text,
            syntax: self.syntax,
            elements: RefCell::new(HashMap::new()),
        }
    }
}

/// One element of a list in a document's text: its byte range and 1-based line in the text.
#[derive(Clone, Copy)]
struct Element {
    start: usize,
    end: usize,
    line: usize,
}

/// Context for errors about one document.
pub(super) struct DocCtx<'a> {
    pub file: &'a Path,
    pub index: usize,
    pub first_line: usize,
    pub text: &'a str,
    pub syntax: Syntax,
    /// The elements of lists looked into so far, by path (`items`, `model.pods`): a path inside
    /// element N is then looked up in that element's text only, so naming lines for every object
    /// of a 5,000-item `List` costs one pass over the document, not 5,000.
    elements: RefCell<HashMap<String, Option<Vec<Element>>>>,
}

fn line_in(syntax: Syntax, text: &str, path: &str) -> Option<usize> {
    match syntax {
        Syntax::Yaml => yamlpos::line_of(text, path),
        Syntax::Json => jsonpos::line_of(text, path),
    }
}

fn elements_in(syntax: Syntax, text: &str, path: &str) -> Option<Vec<Element>> {
    match syntax {
        Syntax::Json => jsonpos::elements(text, path).map(|v| {
            v.into_iter()
                .map(|(start, end, line)| Element { start, end, line })
                .collect()
        }),
        Syntax::Yaml => {
            let ranges = yamlpos::elements(text, path)?;
            // Byte offset of every line start, to cut the elements out of the text.
            let mut starts = vec![0];
            starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
            let at = |line: usize| starts.get(line).copied().unwrap_or(text.len());
            Some(
                ranges
                    .into_iter()
                    .map(|(first, after)| Element {
                        start: at(first),
                        end: at(after),
                        line: first + 1,
                    })
                    .collect(),
            )
        }
    }
}

impl DocCtx<'_> {
    /// The line in the file of `path` inside this document (its first line when not found).
    pub fn line(&self, path: &str) -> usize {
        if path.is_empty() {
            return self.first_line;
        }
        self.line_in_element(path)
            .or_else(|| line_in(self.syntax, self.text, path))
            .map_or(self.first_line, |l| l + self.first_line - 1)
    }

    /// `LIST[N].REST`, looked up inside element N of LIST (elements found once per list).
    fn line_in_element(&self, path: &str) -> Option<usize> {
        let open = path.find('[')?;
        let close = open + path[open..].find(']')?;
        let list = &path[..open];
        let n: usize = path[open + 1..close].parse().ok()?;
        let rest = path[close + 1..].trim_start_matches('.');
        let el = {
            let mut cache = self.elements.borrow_mut();
            let els = cache
                .entry(list.to_string())
                .or_insert_with(|| elements_in(self.syntax, self.text, list));
            *els.as_ref()?.get(n)?
        };
        let sub = self.text.get(el.start..el.end)?;
        Some(match line_in(self.syntax, sub, rest) {
            Some(l) if !rest.is_empty() => el.line + l - 1,
            _ => el.line,
        })
    }

    /// An error at a field path inside this document. `base` is the path of the object inside
    /// the document (e.g. `steps[1].apply[0]` or `items[3]`) when it is nested.
    pub fn field(&self, base: &str, fe: &FieldError) -> InputError {
        let path = join_path(base, &fe.path);
        InputError {
            file: self.file.to_path_buf(),
            document: Some(self.index),
            // A whole-document problem (not a mapping) has no field to name.
            line: Some(self.line(&path)),
            field: (!path.is_empty()).then_some(path),
            column: None,
            message: fe.message.clone(),
        }
    }
}

pub(super) fn join_path(base: &str, path: &str) -> String {
    match (base.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => base.to_string(),
        (false, false) if path.starts_with('[') => format!("{base}{path}"),
        _ => format!("{base}.{path}"),
    }
}

/// Is this text JSON rather than YAML? `.json` files always are; other files are when they start
/// with `{` or `[` and parse as JSON (a YAML flow mapping that is valid JSON means the same).
fn is_json(text: &str, file: &Path) -> bool {
    if file.extension().and_then(|e| e.to_str()) == Some("json") {
        return true;
    }
    let start = text.trim_start();
    (start.starts_with('{') || start.starts_with('['))
        && serde_json::Deserializer::from_str(text)
            .into_iter::<serde::de::IgnoredAny>()
            .all(|r| r.is_ok())
}

/// Parses a file's text into its documents.
pub(super) fn parse(text: &str, file: &Path) -> Result<Vec<Doc>, InputErrors> {
    if is_json(text, file) {
        parse_json(text, file)
    } else {
        parse_yaml(text, file)
    }
}

fn too_many_documents(file: &Path, line: usize) -> InputError {
    InputError {
        line: Some(line),
        ..InputError::file(
            file,
            format!("holds more than {MAX_DOCUMENTS} documents (netpolc's limit)"),
        )
    }
}

fn line_at(text: &str, byte: usize) -> usize {
    1 + text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// One JSON value per document, as `kubectl get -o json` prints (one value, or several when
/// outputs were concatenated).
fn parse_json(text: &str, file: &Path) -> Result<Vec<Doc>, InputErrors> {
    let mut docs = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut end = 0;
    loop {
        let start = end + (text.len() - end - text[end..].trim_start().len());
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                end = stream.byte_offset();
                if docs.len() == MAX_DOCUMENTS {
                    return Err(too_many_documents(file, line_at(text, start)).into());
                }
                docs.push(Doc {
                    index: docs.len(),
                    first_line: line_at(text, start),
                    text: text[start..end].to_string(),
                    value,
                    syntax: Syntax::Json,
                });
            }
            Some(Err(e)) => {
                return Err(InputError {
                    file: file.to_path_buf(),
                    document: Some(docs.len()),
                    field: None,
                    line: Some(e.line().max(1)),
                    column: Some(e.column()),
                    message: format!("malformed JSON: {}", json_message(&e)),
                }
                .into());
            }
        }
    }
    Ok(docs)
}

/// serde_json's message without its own " at line L column C" suffix (the error says where).
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Most events aliases may replay in one document: anchors are a convenience of hand-written
/// files (kubectl never prints them), so this is small, and an alias bomb stops early.
const MAX_ALIAS_EVENTS: usize = 100_000;

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_FILE_BYTES as usize),
            max_nodes: MAX_YAML_NODES,
            max_events: 4 * MAX_YAML_NODES,
            max_depth: MAX_DEPTH,
            max_total_scalar_bytes: MAX_FILE_BYTES as usize,
            max_recorded_anchor_events: MAX_ALIAS_EVENTS,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_EVENTS,
        },
    }
}

/// Splits on `---` lines, keeping each document's first line; then parses each as untyped YAML.
fn parse_yaml(text: &str, file: &Path) -> Result<Vec<Doc>, InputErrors> {
    let mut chunks: Vec<(usize, String)> = vec![(1, String::new())];
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            if chunks.len() > MAX_DOCUMENTS {
                return Err(too_many_documents(file, i + 1).into());
            }
            // Keep inline content after the marker (`--- {a: 1}`) on the new document's first line.
            chunks.push((i + 1, format!("{}\n", line[3..].trim_start())));
        } else if line == "..." {
            chunks.push((i + 2, String::new()));
        } else if let Some(last) = chunks.last_mut() {
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    let options = yaml_options();
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let mut index = 0;
    for (first_line, chunk) in chunks {
        let meaningful = chunk.lines().any(|l| {
            !l.trim().is_empty() && !l.trim_start().starts_with('#') && !l.starts_with('%')
        });
        if !meaningful {
            continue;
        }
        match serde_saphyr::from_str_with_options::<Value>(&chunk, options.clone()) {
            Ok(Value::Null) => {}
            Ok(value) => docs.push(Doc {
                index,
                first_line,
                text: chunk,
                value,
                syntax: Syntax::Yaml,
            }),
            Err(e) => {
                let loc = e.location();
                errors.push(InputError {
                    file: file.to_path_buf(),
                    document: Some(index),
                    field: None,
                    line: loc
                        .map(|l| l.line() as usize + first_line - 1)
                        .or(Some(first_line)),
                    column: loc.map(|l| l.column() as usize),
                    message: format!("malformed YAML: {}", yaml_message(&e.to_string())),
                });
            }
        }
        index += 1;
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(InputErrors(errors))
    }
}

fn first_line_of(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// The parser's message without its own `error: line L column C: ` prefix, which the error's
/// location already says (with the line counted in the whole file, not the document).
pub(super) fn yaml_message(s: &str) -> &str {
    let first = first_line_of(s);
    let rest = first.strip_prefix("error: ").unwrap_or(first);
    match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((loc, msg)) if loc.contains("column") => msg,
        _ => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_syntax_errors_keep_only_the_message() {
        assert_eq!(
            yaml_message("error: line 4 column 5: did not find expected ','\nmore"),
            "did not find expected ','"
        );
        assert_eq!(yaml_message("something else"), "something else");
    }

    #[test]
    fn json_values_are_documents_with_their_lines() {
        let text = "{\"kind\": \"Pod\"}\n\n{\n  \"kind\": \"List\"\n}\n";
        let docs = parse(text, Path::new("d.txt")).expect("JSON");
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].first_line, docs[1].first_line), (1, 3));
        assert_eq!(docs[1].value["kind"], "List");
        assert_eq!(docs[1].syntax, Syntax::Json);
        let err = parse("{\"kind\": }", Path::new("d.json")).expect_err("bad JSON");
        assert!(err.0[0].message.starts_with("malformed JSON: "), "{err}");
        assert_eq!(err.0[0].line, Some(1));
    }

    #[test]
    fn a_yaml_flow_mapping_that_is_not_json_stays_yaml() {
        let docs = parse("{a: y}\n", Path::new("f.yaml")).expect("YAML");
        assert_eq!(docs[0].syntax, Syntax::Yaml);
        assert_eq!(docs[0].value["a"], "y");
    }

    #[test]
    fn an_alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        // Expanded, this would be 10^12 scalars: the parser's budget must stop it.
        assert!(parse(&text, Path::new("bomb.yaml")).is_err());
    }
}
