//! Line lookup for a field path (`items[3].spec.containers[0].ports[1].name`) in JSON text, the
//! counterpart of `yamlpos` for `kubectl … -o json` dumps. Walks the text along the path without
//! building a tree; stops at the deepest segment it could locate.

use super::yamlpos::{Segment, segments};

/// The 1-based line (within `text`) of the value at `path`, or of the deepest part of the path
/// that exists. `None` when `text` does not start with a JSON value.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let mut w = Walker {
        b: text.as_bytes(),
        i: 0,
        line: 1,
    };
    w.ws();
    if w.i >= w.b.len() {
        return None;
    }
    let mut found = w.line;
    for seg in segments(path) {
        let located = match seg {
            Segment::Key(k) => w.enter_key(&k),
            Segment::Index(n) => w.enter_index(n),
        };
        if located.is_none() {
            break;
        }
        found = w.line;
    }
    Some(found)
}

/// The elements of the array at `path`: for each, its byte range in `text` and its 1-based line.
/// `None` when `path` is not an array. The counterpart of `yamlpos::elements`.
pub fn elements(text: &str, path: &str) -> Option<Vec<(usize, usize, usize)>> {
    let mut w = Walker {
        b: text.as_bytes(),
        i: 0,
        line: 1,
    };
    w.ws();
    for seg in segments(path) {
        match seg {
            Segment::Key(k) => w.enter_key(&k)?,
            Segment::Index(n) => w.enter_index(n)?,
        }
    }
    if w.peek() != Some(b'[') {
        return None;
    }
    w.bump();
    let mut out = Vec::new();
    loop {
        w.ws();
        if w.peek()? == b']' {
            return Some(out);
        }
        let (start, line) = (w.i, w.line);
        w.skip()?;
        out.push((start, w.i, line));
        w.ws();
        match w.peek()? {
            b',' => w.bump(),
            b']' => return Some(out),
            _ => return None,
        }
    }
}

struct Walker<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
}

impl Walker<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn bump(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line += 1;
        }
        self.i += 1;
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.bump();
        }
    }

    /// Reads a string starting at `"`, returning its raw (unescaped-enough) content.
    fn string(&mut self) -> Option<String> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.bump();
        let start = self.i;
        while let Some(c) = self.peek() {
            match c {
                b'\\' => {
                    self.bump();
                    self.bump();
                }
                b'"' => {
                    let s = String::from_utf8_lossy(&self.b[start..self.i]).into_owned();
                    self.bump();
                    return Some(s);
                }
                _ => self.bump(),
            }
        }
        None
    }

    /// Skips one value (object, array, string, scalar).
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.bump();
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.bump();
                }
            }
            _ => {
                while !matches!(self.peek(), None | Some(b',' | b'}' | b']')) {
                    self.bump();
                }
                Some(())
            }
        }
    }

    /// At an object: moves to the value of `key`.
    fn enter_key(&mut self, key: &str) -> Option<()> {
        if self.peek() != Some(b'{') {
            return None;
        }
        self.bump();
        loop {
            self.ws();
            if self.peek() == Some(b'}') {
                return None;
            }
            let k = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return None;
            }
            self.bump();
            self.ws();
            if k == key {
                return Some(());
            }
            self.skip()?;
            self.ws();
            match self.peek()? {
                b',' => self.bump(),
                _ => return None,
            }
        }
    }

    /// At an array: moves to its `n`th element.
    fn enter_index(&mut self, n: usize) -> Option<()> {
        if self.peek() != Some(b'[') {
            return None;
        }
        self.bump();
        self.ws();
        for _ in 0..n {
            if self.peek() == Some(b']') {
                return None;
            }
            self.skip()?;
            self.ws();
            if self.peek() != Some(b',') {
                return None;
            }
            self.bump();
            self.ws();
        }
        (self.peek() != Some(b']')).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::{elements, line_of};

    const DOC: &str = r#"{
    "apiVersion": "v1",
    "items": [
        {
            "kind": "Pod",
            "metadata": {"name": "a", "labels": {"x": "}{]["}},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "ports": [
                            {"containerPort": 80},
                            {
                                "containerPort": 0
                            }
                        ]
                    }
                ]
            }
        },
        {
            "kind": "Deployment"
        }
    ],
    "kind": "List"
}"#;

    #[test]
    fn lists_the_elements_of_an_array() {
        let items = elements(DOC, "items").expect("items");
        assert_eq!(items.iter().map(|e| e.2).collect::<Vec<_>>(), [4, 21]);
        assert!(DOC[items[1].0..items[1].1].starts_with('{'));
        assert!(DOC[items[1].0..items[1].1].ends_with('}'));
        assert_eq!(
            line_of(&DOC[items[0].0..items[0].1], "metadata.name"),
            Some(3)
        );
        assert_eq!(elements(DOC, "kind"), None);
        assert_eq!(elements("[]", ""), Some(vec![]));
    }

    #[test]
    fn finds_nested_fields_and_falls_back_to_the_deepest_found() {
        assert_eq!(line_of(DOC, "items[0].kind"), Some(5));
        assert_eq!(line_of(DOC, "items[0].metadata.name"), Some(6));
        assert_eq!(
            line_of(DOC, "items[0].spec.containers[0].ports[1].containerPort"),
            Some(14)
        );
        assert_eq!(line_of(DOC, "items[1].kind"), Some(22));
        assert_eq!(line_of(DOC, "kind"), Some(25));
        assert_eq!(line_of(DOC, "items[7].kind"), Some(3));
        assert_eq!(line_of(DOC, ""), Some(1));
        assert_eq!(line_of("", "kind"), None);
    }
}
