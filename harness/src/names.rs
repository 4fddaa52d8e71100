//! Names, labels and free text, validated the way the Kubernetes API server validates them.
//!
//! This is the input trust boundary: every namespace, pod, workload and policy name, container
//! port name, label key and label value that enters a [`crate::model::Model`] — from scenario
//! files, the upstream shorthand, manifests, cluster dumps, step relabels, `delete` references,
//! expectation patterns or the command line — passes through one of these checks first. Names
//! later become network namespace names, nft identifiers, kube objects and printed commands, so
//! anything the API server would refuse is refused here, before any of that.
//!
//! The rules mirror `k8s.io/apimachinery/pkg/util/validation` (`IsDNS1123Label`,
//! `IsDNS1123Subdomain`, `IsValidPortName`, `IsQualifiedName`/`IsLabelKey`, `IsValidLabelValue`).
//! Free text (scenario and step names, descriptions) has no API rule, but it is printed on
//! terminals and in reports, so control and other invisible formatting characters are refused.

use std::borrow::Cow;
use std::fmt;

/// Longest DNS-1123 label (namespace names, label-name parts).
pub const DNS1123_LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain (pod and most object names, label-key prefixes).
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// Longest label value and label-key name part.
pub const LABEL_VALUE_MAX: usize = 63;
/// Longest container port name (IANA service name, RFC 6335).
pub const PORT_NAME_MAX: usize = 15;
/// Longest scenario or step name, in characters.
pub const TEXT_NAME_MAX: usize = 253;
/// Longest description, in characters.
pub const DESCRIPTION_MAX: usize = 16 * 1024;

/// A value refused by one of the checks, with every rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// What the value was meant to be, e.g. "namespace name".
    pub what: Cow<'static, str>,
    /// The value, shortened when very long (it is quoted and escaped when displayed).
    pub value: String,
    pub reasons: Vec<&'static str>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` escapes newlines and control characters: a refused value cannot forge lines.
        write!(
            f,
            "{} {:?} is invalid: {}",
            self.what,
            self.value,
            self.reasons.join("; ")
        )
    }
}

/// Characters of a refused value kept in its message: enough to recognise it, bounded output.
const SHOWN_CHARS: usize = 80;

fn shown(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(SHOWN_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

fn check(
    what: impl Into<Cow<'static, str>>,
    value: &str,
    reasons: Vec<&'static str>,
) -> Result<(), Invalid> {
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Invalid {
            what: what.into(),
            value: shown(value),
            reasons,
        })
    }
}

const EMPTY: &str = "must not be empty";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`: the shape of one DNS-1123 label, without the length rule.
fn label_shape(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Rules a string breaks as a DNS-1123 label (RFC 1123): 1-63 characters of `a-z`, `0-9`, `-`,
/// starting and ending alphanumeric. Empty when valid.
pub fn dns1123_label_errors(s: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if s.is_empty() {
        out.push(EMPTY);
        return out;
    }
    if s.len() > DNS1123_LABEL_MAX {
        out.push("must be at most 63 characters");
    }
    if !label_shape(s.as_bytes()) {
        if s.contains('.') && subdomain_shape(s) {
            out.push("must not contain dots");
        } else {
            out.push(
                "must consist of lower-case letters, digits and '-', and start and end with a \
                 letter or digit",
            );
        }
    }
    out
}

/// Dot-separated DNS-1123 labels. As in the API, the 63-character limit applies to the whole
/// label only, not to each part of a subdomain.
fn subdomain_shape(s: &str) -> bool {
    s.split('.').all(|part| label_shape(part.as_bytes()))
}

/// Rules a string breaks as a DNS-1123 subdomain: at most 253 characters, dot-separated parts of
/// `a-z`, `0-9`, `-`, each starting and ending alphanumeric. Empty when valid.
pub fn dns1123_subdomain_errors(s: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if s.is_empty() {
        out.push(EMPTY);
        return out;
    }
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        out.push("must be at most 253 characters");
    }
    if !subdomain_shape(s) {
        out.push(
            "must consist of lower-case letters, digits, '-' and '.', each dot-separated part \
             starting and ending with a letter or digit",
        );
    }
    out
}

/// Rules a string breaks as a container port name (IANA_SVC_NAME, RFC 6335 as the API reads
/// it): 1-15 characters of `a-z`, `0-9`, `-`, at least one letter, no `--`, no leading or
/// trailing `-`. Empty when valid.
pub fn port_name_errors(s: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    if b.is_empty() {
        out.push(EMPTY);
        return out;
    }
    if b.len() > PORT_NAME_MAX {
        out.push("must be at most 15 characters");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    {
        out.push("must consist of lower-case letters, digits and '-'");
    }
    if !b.iter().any(u8::is_ascii_lowercase) {
        out.push("must contain at least one letter");
    }
    if s.contains("--") {
        out.push("must not contain two hyphens in a row");
    }
    if b[0] == b'-' || b[b.len() - 1] == b'-' {
        out.push("must not start or end with '-'");
    }
    out
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`: a label-key name part or a non-empty label value,
/// without the length rule.
fn qualified_shape(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Rules a string breaks as a label key (a "qualified name"): an optional DNS-1123 subdomain
/// prefix and `/`, then a name part of 1-63 characters of letters, digits, `-`, `_`, `.`,
/// starting and ending alphanumeric. Empty when valid.
pub fn label_key_errors(s: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                out.push("prefix part (before '/') must not be empty");
            } else if !dns1123_subdomain_errors(prefix).is_empty() {
                out.push(
                    "prefix part (before '/') must be a DNS-1123 subdomain (lower-case letters, \
                     digits, '-' and '.', at most 253 characters)",
                );
            }
            name
        }
        _ => {
            out.push("may contain at most one '/' (between an optional prefix and the name)");
            return out;
        }
    };
    if name.is_empty() {
        out.push("name part must not be empty");
        return out;
    }
    if name.len() > LABEL_VALUE_MAX {
        out.push("name part must be at most 63 characters");
    }
    if !qualified_shape(name.as_bytes()) {
        out.push(
            "name part must consist of letters, digits, '-', '_' and '.', and start and end with \
             a letter or digit",
        );
    }
    out
}

/// Rules a string breaks as a label value: empty, or at most 63 characters of letters, digits,
/// `-`, `_`, `.`, starting and ending alphanumeric. Empty when valid.
pub fn label_value_errors(s: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if s.is_empty() {
        return out;
    }
    if s.len() > LABEL_VALUE_MAX {
        out.push("must be at most 63 characters");
    }
    if !qualified_shape(s.as_bytes()) {
        out.push(
            "must be empty or consist of letters, digits, '-', '_' and '.', and start and end \
             with a letter or digit",
        );
    }
    out
}

pub fn is_dns1123_label(s: &str) -> bool {
    dns1123_label_errors(s).is_empty()
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    dns1123_subdomain_errors(s).is_empty()
}

pub fn is_port_name(s: &str) -> bool {
    port_name_errors(s).is_empty()
}

/// A namespace name: a DNS-1123 label (the API's `ValidateNamespaceName`).
pub fn namespace(s: &str) -> Result<(), Invalid> {
    check("namespace name", s, dns1123_label_errors(s))
}

/// The name of a peer outside the cluster (`model.externals`): a DNS-1123 label, as it becomes
/// part of a container's and a network namespace's name.
pub fn external(s: &str) -> Result<(), Invalid> {
    check("external peer name", s, dns1123_label_errors(s))
}

/// A pod name: a DNS-1123 subdomain (the API's `ValidatePodName`).
pub fn pod(s: &str) -> Result<(), Invalid> {
    check("pod name", s, dns1123_subdomain_errors(s))
}

/// The name of an object of `kind` (Deployment, NetworkPolicy, ReplicaSet, …) under the API's
/// rule for that kind: a DNS-1123 subdomain, except StatefulSet (a DNS-1123 label, as its pods'
/// host names derive from it), Job (at most 63 characters: it becomes the pods' `job-name` label)
/// and CronJob (at most 52 characters, leaving room for the Jobs' time suffix).
pub fn object(kind: &str, s: &str) -> Result<(), Invalid> {
    let what = format!("{kind} name");
    let mut reasons = match kind {
        "StatefulSet" => dns1123_label_errors(s),
        _ => dns1123_subdomain_errors(s),
    };
    match kind {
        "Job" if s.len() > 63 => reasons.push("must be at most 63 characters"),
        "CronJob" if s.len() > 52 => reasons.push("must be at most 52 characters"),
        _ => {}
    }
    check(what, s, reasons)
}

/// A container name: a DNS-1123 label, as the API validates `spec.containers[].name`.
pub fn container(s: &str) -> Result<(), Invalid> {
    check("container name", s, dns1123_label_errors(s))
}

/// A container port name (IANA_SVC_NAME).
pub fn port_name(s: &str) -> Result<(), Invalid> {
    check("port name", s, port_name_errors(s))
}

pub fn label_key(s: &str) -> Result<(), Invalid> {
    check("label key", s, label_key_errors(s))
}

pub fn label_value(s: &str) -> Result<(), Invalid> {
    check("label value", s, label_value_errors(s))
}

/// Characters that would let printed text lie about what it is: C0/C1 controls (newlines move
/// to a new terminal line, ESC starts terminal escapes), Unicode line and paragraph separators,
/// bidirectional overrides and isolates, zero-width and other invisible format characters.
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// A single-line name of free text (scenario and step names): not empty, at most
/// [`TEXT_NAME_MAX`] characters, no control or invisible formatting characters.
pub fn text_name(what: &'static str, s: &str) -> Result<(), Invalid> {
    let mut reasons = Vec::new();
    if s.trim().is_empty() {
        reasons.push(EMPTY);
    }
    if s.chars().count() > TEXT_NAME_MAX {
        reasons.push("must be at most 253 characters");
    }
    if s.chars().any(is_deceptive) {
        reasons.push(
            "must not contain control characters (newlines, tabs, escapes) or invisible \
             formatting characters",
        );
    }
    check(what, s, reasons)
}

/// Free text that may span lines (descriptions): at most [`DESCRIPTION_MAX`] characters;
/// newlines and tabs are allowed, every other control or invisible formatting character is not.
pub fn description(s: &str) -> Result<(), Invalid> {
    let mut reasons = Vec::new();
    if s.chars().count() > DESCRIPTION_MAX {
        reasons.push("must be at most 16384 characters");
    }
    if s.chars().any(|c| c != '\n' && c != '\t' && is_deceptive(c)) {
        reasons.push(
            "must not contain control characters other than newlines and tabs, nor invisible \
             formatting characters",
        );
    }
    check("description", s, reasons)
}

/// A container image reference as given in inputs (informative only): at most 4,096
/// characters, no whitespace, no control or invisible formatting characters.
pub fn image(s: &str) -> Result<(), Invalid> {
    let mut reasons = Vec::new();
    if s.len() > 4096 {
        reasons.push("must be at most 4096 characters");
    }
    if s.chars().any(|c| c.is_whitespace() || is_deceptive(c)) {
        reasons.push("must not contain whitespace, control or invisible formatting characters");
    }
    check("image", s, reasons)
}

/// `s` with every deceptive character written as a `\u{…}` escape (newline as `\n`), for text
/// that is printed but was not validated (file paths, parser messages).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_deceptive) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_deceptive(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cases follow the API's own tables (apimachinery's validation tests): what it accepts, what
    // it refuses, and the limits at exactly the boundary.

    #[test]
    fn dns1123_labels() {
        let long = "a".repeat(63);
        for ok in [
            "a",
            "ab",
            "abc",
            "a1",
            "a-1",
            "a--1--2--b",
            "0",
            "01",
            "0-1",
            long.as_str(),
        ] {
            assert!(is_dns1123_label(ok), "{ok:?}");
        }
        let too_long = "a".repeat(64);
        for bad in [
            "",
            "A",
            "ABC",
            "aBc",
            "A1",
            "A-1",
            "1-A",
            "-",
            "a-",
            "-a",
            "1-",
            "-1",
            "_",
            "a_",
            "_a",
            "a_b",
            "1_",
            "_1",
            "1_2",
            ".",
            "a.",
            ".a",
            "a.b",
            "1.",
            ".1",
            "1.2",
            " ",
            "a ",
            " a",
            "a b",
            "1 ",
            " 1",
            "1 2",
            "a\nb",
            "é",
            too_long.as_str(),
        ] {
            assert!(!is_dns1123_label(bad), "{bad:?}");
        }
        assert_eq!(dns1123_label_errors("a.b"), ["must not contain dots"]);
        assert_eq!(
            dns1123_label_errors(&too_long),
            ["must be at most 63 characters"]
        );
    }

    #[test]
    fn dns1123_subdomains() {
        let part = "a".repeat(63);
        let long_part = "a".repeat(100);
        let max = format!("{}.{}.{}.{}", part, part, part, "a".repeat(61));
        assert_eq!(max.len(), 253);
        for ok in [
            "a",
            "ab",
            "a1",
            "a-1",
            "a--1--2--b",
            "0",
            "0-1",
            "a.a",
            "ab.a",
            "a-1.a",
            "a.b.c.d.e",
            "11.22.33.44.55",
            part.as_str(),
            // Only the whole name is limited: one part may exceed 63 characters.
            long_part.as_str(),
            max.as_str(),
        ] {
            assert!(is_dns1123_subdomain(ok), "{ok:?}");
        }
        let over = format!("{max}a");
        for bad in [
            "",
            "A",
            "aBc",
            "A.a",
            "-",
            "a-",
            "-a",
            "_",
            "a_b",
            ".",
            "a.",
            ".a",
            "a..b",
            "a.-b",
            "a-.b",
            "a b",
            "a\nb",
            "a;touch x",
            over.as_str(),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
    }

    #[test]
    fn port_names_follow_iana_svc_name() {
        for ok in [
            "telnet",
            "re-mail-ck",
            "pop3",
            "a",
            "a-1",
            "1-a",
            "a-1-b-2-c",
            "1-a-2-b-3",
            "serve-80-sctp",
        ] {
            assert!(is_port_name(ok), "{ok:?}");
        }
        for (bad, reason) in [
            ("", EMPTY),
            ("1234", "must contain at least one letter"),
            ("-abc", "must not start or end with '-'"),
            ("abc-", "must not start or end with '-'"),
            ("a--b", "must not contain two hyphens in a row"),
            ("Abc", "must consist of lower-case letters, digits and '-'"),
            ("a_b", "must consist of lower-case letters, digits and '-'"),
            ("a b", "must consist of lower-case letters, digits and '-'"),
            ("longerthan15char", "must be at most 15 characters"),
        ] {
            assert!(
                port_name_errors(bad).contains(&reason),
                "{bad:?}: {:?}",
                port_name_errors(bad)
            );
        }
        assert!(is_port_name(&"a".repeat(15)));
    }

    #[test]
    fn label_keys_are_qualified_names() {
        let prefixed_max = format!("{}/{}", "a".repeat(253), "b".repeat(63));
        for ok in [
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "1234",
            "simple/simple",
            "now-with-dashes/simple",
            "now.with.dots/simple",
            "1-num.2-num/3-num",
            "1234/5678",
            "1.2.3.4/5678",
            "Uppercase_Is_OK_123",
            "example.com/Uppercase_Is_OK_123",
            "requests.storage-foo",
            "kubernetes.io/metadata.name",
            &"a".repeat(63),
            prefixed_max.as_str(),
        ] {
            assert!(
                label_key_errors(ok).is_empty(),
                "{ok:?}: {:?}",
                label_key_errors(ok)
            );
        }
        let over_prefix = format!("{}/abc", "a".repeat(254));
        for bad in [
            "",
            "nospecialchars%^=@",
            "cantendwithadash-",
            "-cantstartwithadash-",
            "only/one/slash",
            "Example.com/abc",
            "example_com/abc",
            "example.com/",
            "/simple",
            "bad key!",
            "a\nb",
            &"a".repeat(64),
            over_prefix.as_str(),
        ] {
            assert!(!label_key_errors(bad).is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn label_values() {
        for ok in [
            "",
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "end-with-num-1",
            "1234",
            "A_b.C",
            &"a".repeat(63),
        ] {
            assert!(label_value_errors(ok).is_empty(), "{ok:?}");
        }
        for bad in [
            "nospecialchars%^=@",
            "Tama-nui-te-rā.is.Māori.sun",
            "\\backslashes\\are\\bad",
            "-starts-with-dash",
            "ends-with-dash-",
            ".starts.with.dot",
            "ends.with.dot.",
            "has space",
            "new\nline",
            &"a".repeat(64),
        ] {
            assert!(!label_value_errors(bad).is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn object_names_follow_their_kind() {
        let sixty_four = "a".repeat(64);
        assert!(object("Deployment", &sixty_four).is_ok());
        assert!(object("StatefulSet", &sixty_four).is_err());
        assert!(
            object("StatefulSet", "db.v1").is_err(),
            "a label has no dots"
        );
        assert!(object("Deployment", "db.v1").is_ok());
        assert!(object("Job", &sixty_four).is_err());
        assert!(object("Job", &"a".repeat(63)).is_ok());
        assert!(object("CronJob", &"a".repeat(53)).is_err());
        assert!(object("CronJob", &"a".repeat(52)).is_ok());
    }

    #[test]
    fn messages_quote_escape_and_shorten_the_value() {
        let e = namespace("x\nnetns exec x touch /tmp/m").unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(
            shown.starts_with("namespace name \"x\\nnetns exec"),
            "{shown}"
        );
        let e = pod(&"a".repeat(10_000)).unwrap_err();
        assert!(e.to_string().len() < 400, "{}", e.to_string().len());
        assert!(e.to_string().contains("must be at most 253 characters"));
    }

    #[test]
    fn free_text_refuses_what_would_forge_output() {
        assert!(text_name("scenario name", "seed frontend → backend (TCP/80)").is_ok());
        for bad in [
            "",
            " ",
            "a\nb",
            "a\rb",
            "a\tb",
            "\u{1b}[2Ja",
            "a\u{202E}b",
            "a\u{2028}b",
            "a\u{200B}b",
            "a\u{7f}",
        ] {
            assert!(text_name("step name", bad).is_err(), "{bad:?}");
        }
        assert!(text_name("step name", &"é".repeat(253)).is_ok());
        assert!(text_name("step name", &"é".repeat(254)).is_err());
        assert!(description("line one\n\tline two\n").is_ok());
        assert!(description("ok\u{1b}]0;title\u{7}").is_err());
        assert!(description("a\u{202E}b").is_err());
        assert!(image("nginx:1.27@sha256:abc").is_ok());
        assert!(image("nginx\n").is_err());
        assert!(image("a b").is_err());
    }

    #[test]
    fn escape_makes_every_deceptive_character_visible() {
        assert_eq!(escape("plain/path.yaml"), "plain/path.yaml");
        assert_eq!(escape("a\nb\u{1b}c\u{202E}"), "a\\nb\\u{1b}c\\u{202e}");
    }
}
