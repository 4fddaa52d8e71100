//! POSIX shell quoting for the commands the harness prints (an observation's "reproduce"
//! command, a plan's probe script).
//!
//! Those commands carry names from the input (namespaces, pods, containers). Printed unquoted, a
//! name with `;`, `$(…)` or a newline would run something else when a user pastes the command.
//! [`join`] renders an argument vector so that `sh` splits it back into exactly that vector;
//! plain words (letters, digits, `-_./:,+@%=`) stay as they are, so ordinary commands read as
//! before.

use std::borrow::Cow;

/// Characters a word may consist of and still be read literally by a POSIX shell, wherever it
/// stands on the line (`=` is only plain after the command word: see [`join`]).
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | ',' | '+' | '@' | '%')
}

/// Words the shell treats as syntax when they stand where a command name is expected.
const RESERVED: &[&str] = &[
    "!", "{", "}", "[[", "]]", "case", "do", "done", "elif", "else", "esac", "fi", "for",
    "function", "if", "in", "select", "then", "time", "until", "while",
];

/// One word as the shell must see it: unchanged when every character is plain (or `=`), else in
/// single quotes, with each `'` written as `'\''`. The empty string becomes `''`.
///
/// A NUL byte cannot be part of any process argument, so no command holding one can run;
/// such a word is still quoted (the shell then refuses or truncates it, never runs it).
pub fn quote(word: &str) -> Cow<'_, str> {
    if !word.is_empty() && word.chars().all(|c| is_plain(c) || c == '=') {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(single_quoted(word))
    }
}

fn single_quoted(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The command word: also quoted when it would be read as an assignment (`a=b`) or a reserved
/// word (`if`, `!`, `{`…).
fn quote_command(word: &str) -> Cow<'_, str> {
    if !word.is_empty() && word.chars().all(is_plain) && !RESERVED.contains(&word) {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(single_quoted(word))
    }
}

/// A command line that a POSIX shell splits into exactly `argv` (first word the command).
pub fn join<S: AsRef<str>>(argv: &[S]) -> String {
    let mut out = String::new();
    for (i, w) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let w = w.as_ref();
        out.push_str(&if i == 0 { quote_command(w) } else { quote(w) });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    /// Strings that break naive quoting, and a few that must stay readable.
    const HOSTILE: &[&str] = &[
        "",
        " ",
        "a b",
        "x\nnetns exec x touch pwned",
        "'",
        "''",
        "a'b",
        "\"",
        "a\"b'c",
        ";touch pwned",
        "a;b",
        "$(touch pwned)",
        "`touch pwned`",
        "${HOME}",
        "$HOME",
        "\\",
        "\\'",
        "a\\nb",
        "*",
        "?",
        "[a]",
        "~",
        "~root",
        "#comment",
        "a#b",
        "&",
        "|",
        "<>",
        "!",
        "!!",
        "{a,b}",
        "(x)",
        "\t",
        "\r\n",
        "ünïcödé",
        "日本語",
        "\u{202e}rtl",
        "--opt=va lue",
        "-n",
        "a=b",
        "netpolc-r-s0-x.a",
        "10.244.0.3:80",
    ];

    /// What `sh` makes of `line`: each argument of a `printf '%s\0'` run, split on NUL.
    fn sh_args(line: &str, dir: &std::path::Path) -> Vec<String> {
        let out = Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(dir)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{line:?}: {out:?}");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let mut v: Vec<String> = text.split('\0').map(String::from).collect();
        assert_eq!(v.pop().as_deref(), Some(""), "NUL-terminated");
        v
    }

    #[test]
    fn the_shell_reads_every_word_back_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut argv: Vec<&str> = vec!["printf", "%s\\0"];
        argv.extend(HOSTILE);
        let line = join(&argv);
        assert_eq!(sh_args(&line, dir.path()), HOSTILE, "{line}");
        // One at a time as well: no word depends on its neighbours being quoted.
        for w in HOSTILE {
            let line = join(&["printf", "%s\\0", w]);
            assert_eq!(sh_args(&line, dir.path()), [*w], "{line}");
        }
        assert!(
            std::fs::read_dir(dir.path())
                .expect("readable")
                .next()
                .is_none(),
            "quoting let a command run"
        );
    }

    /// The command word itself: reserved words and assignments are quoted, so the shell runs a
    /// program of that name (here a stand-in script) with the given arguments.
    #[test]
    fn command_words_are_never_syntax() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "if",
            "a=b",
            "!",
            "{",
            "x;y",
            "$(touch pwned)",
            "sp ace",
            "ü",
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, "#!/bin/sh\nprintf '%s\\0' \"${0##*/}\" \"$@\"\n")
                .expect("write stand-in");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let line = join(&[name, "one arg", "'two'"]);
            assert_eq!(
                sh_args(&line, dir.path()),
                [name, "one arg", "'two'"],
                "{line}"
            );
            std::fs::remove_file(&path).expect("remove stand-in");
        }
        assert!(!dir.path().join("pwned").exists());
    }

    #[test]
    fn plain_words_stay_readable() {
        assert_eq!(
            join(&[
                "ip",
                "netns",
                "exec",
                "netpolc-r-s0-x.a",
                "timeout",
                "1.5",
                "bash",
                "-c",
                "exec 3<>/dev/tcp/10.0.0.3/80"
            ]),
            "ip netns exec netpolc-r-s0-x.a timeout 1.5 bash -c 'exec 3<>/dev/tcp/10.0.0.3/80'"
        );
        assert_eq!(quote("--protocol=tcp"), "--protocol=tcp");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert!(quote("a\0b").starts_with('\''));
    }
}
