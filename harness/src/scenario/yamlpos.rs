//! Best-effort line lookup for a field path (`spec.ingress[0].ports[1].endPort`) in block-style YAML,
//! so semantic errors found after parsing can still point at a line. Flow-style YAML (`{...}`)
//! degrades to the nearest enclosing key found.

/// Returns the 1-based line (within `doc`) of the deepest segment of `path` it could locate.
pub fn line_of(doc: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = doc.lines().collect();
    walk(&lines, path).found
}

/// The elements of the block sequence at `path`: for each, its first line and the line after its
/// last (0-based, within `doc`). `None` when the path is not a block sequence found in full (a
/// flow sequence `[a, b]`, or a missing key). Lets a caller look up many paths inside one element
/// of a long list (a `List` dump's `items`) without walking the whole document each time.
pub fn elements(doc: &str, path: &str) -> Option<Vec<(usize, usize)>> {
    let lines: Vec<&str> = doc.lines().collect();
    let loc = walk(&lines, path);
    if !loc.complete {
        return None;
    }
    let (start, end) = loc.range;
    let dashes: Vec<(usize, usize)> = (start + 1..end)
        .filter_map(|i| {
            let (ind, c) = split_indent(lines[i]);
            (c.starts_with("- ") || c == "-").then_some((i, ind))
        })
        .collect();
    let min = dashes.iter().map(|d| d.1).min()?;
    let starts: Vec<usize> = dashes.iter().filter(|d| d.1 == min).map(|d| d.0).collect();
    Some(
        starts
            .iter()
            .enumerate()
            .map(|(k, &s)| (s, starts.get(k + 1).copied().unwrap_or(end)))
            .collect(),
    )
}

/// Where a walk along a path ended: the deepest line found, the line range of its value, and
/// whether every segment was found.
struct Located {
    found: Option<usize>,
    range: (usize, usize),
    complete: bool,
}

fn walk(lines: &[&str], path: &str) -> Located {
    let mut range = (0usize, lines.len());
    let mut parent_indent: isize = -1;
    let mut found = None;
    // Whether the range starts at the line of the key just matched: that line (`- key:` when the
    // key opens a list item itself) is never one of the key's own items.
    let mut after_key = false;
    let mut complete = true;
    for seg in segments(path) {
        match seg {
            Segment::Key(k) => {
                after_key = true;
                let hit = (range.0..range.1).find_map(|i| {
                    let (indent, content) = split_indent(lines[i]);
                    let content = content
                        .strip_prefix("- ")
                        .map(str::trim_start)
                        .unwrap_or(content);
                    let extra = if lines[i].trim_start().starts_with("- ") {
                        lines[i].trim_start().len() - content.len()
                    } else {
                        0
                    };
                    let key_indent = (indent + extra) as isize;
                    (key_indent > parent_indent && is_key(content, &k)).then_some((i, key_indent))
                });
                let Some((i, ind)) = hit else {
                    complete = false;
                    break;
                };
                found = Some(i + 1);
                let end = (i + 1..range.1)
                    .find(|&j| {
                        let (ji, c) = split_indent(lines[j]);
                        !c.is_empty()
                            && !c.starts_with('#')
                            && (ji as isize) <= ind
                            && !c.starts_with("- ")
                            || (!c.is_empty() && (ji as isize) < ind)
                    })
                    .unwrap_or(range.1);
                range = (i, end);
                parent_indent = ind;
            }
            Segment::Index(n) => {
                // Items are the `- ` lines at the smallest indentation inside the range.
                let first = range.0 + usize::from(after_key);
                after_key = false;
                let dashes: Vec<(usize, usize)> = (first..range.1)
                    .filter_map(|i| {
                        let (ind, c) = split_indent(lines[i]);
                        c.starts_with("- ")
                            .then_some((i, ind))
                            .or((c == "-").then_some((i, ind)))
                    })
                    .collect();
                let Some(min) = dashes.iter().map(|d| d.1).min() else {
                    complete = false;
                    break;
                };
                let items: Vec<usize> = dashes.iter().filter(|d| d.1 == min).map(|d| d.0).collect();
                let Some(&start) = items.get(n) else {
                    complete = false;
                    break;
                };
                let end = items.get(n + 1).copied().unwrap_or(range.1);
                found = Some(start + 1);
                range = (start, end);
                parent_indent = min as isize;
            }
        }
    }
    Located {
        found,
        range,
        complete,
    }
}

pub(super) enum Segment {
    Key(String),
    Index(usize),
}

pub(super) fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Key(name.to_string()));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(n) = idx.trim_end_matches(']').parse() {
                out.push(Segment::Index(n));
            }
        }
    }
    out
}

fn split_indent(line: &str) -> (usize, &str) {
    let t = line.trim_start_matches(' ');
    (line.len() - t.len(), t.trim_end())
}

fn is_key(content: &str, key: &str) -> bool {
    let unq = |c: &str| c.strip_prefix(key).is_some_and(|r| r.starts_with(':'));
    unq(content)
        || content
            .strip_prefix('"')
            .is_some_and(|c| c.strip_prefix(key).is_some_and(|r| r.starts_with("\":")))
}

#[cfg(test)]
mod tests {
    use super::{elements, line_of};

    const DOC: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: p
spec:
  podSelector: {}
  ingress:
  - from:
    - podSelector: {}
    ports:
    - port: 80
    - port: 81
      endPort: 70
  - ports:
      - protocol: TCP
        port: 9
";

    #[test]
    fn lists_the_elements_of_a_block_sequence() {
        assert_eq!(elements(DOC, "spec.ingress"), Some(vec![(7, 13), (13, 16)]));
        assert_eq!(
            elements(DOC, "spec.ingress[0].ports"),
            Some(vec![(10, 11), (11, 13)])
        );
        assert_eq!(elements(DOC, "spec.egress"), None);
        assert_eq!(elements("a: [x, y]\n", "a"), None);
        let list = "apiVersion: v1\nitems:\n- kind: Pod\n  metadata:\n    name: a\n- kind: Pod\nkind: List\n";
        assert_eq!(elements(list, "items"), Some(vec![(2, 5), (5, 6)]));
    }

    #[test]
    fn finds_nested_fields() {
        assert_eq!(line_of(DOC, "spec.ingress[0].ports[1].endPort"), Some(13));
        assert_eq!(line_of(DOC, "spec.ingress[0].ports[0].port"), Some(11));
        assert_eq!(line_of(DOC, "spec.ingress[1].ports[0].port"), Some(16));
        assert_eq!(line_of(DOC, "spec.ingress[0].from[0].podSelector"), Some(9));
        assert_eq!(line_of(DOC, "metadata.name"), Some(4));
        assert_eq!(line_of(DOC, "spec.egress[0]"), Some(5));
    }

    #[test]
    fn items_of_a_key_that_opens_a_list_item() {
        let doc = "spec:\n  egress:\n  - to:\n    - networks:\n      - 10.0.0.0/8\n      - 10.1.0.0/16\n  - ports:\n      - port: 1\n      - port: 2\n";
        assert_eq!(line_of(doc, "spec.egress[0].to[0].networks[1]"), Some(6));
        assert_eq!(line_of(doc, "spec.egress[0].to[0].networks[0]"), Some(5));
        assert_eq!(line_of(doc, "spec.egress[1].ports[1].port"), Some(9));
    }
}
