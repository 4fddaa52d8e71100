//! The README's two commands, as a newcomer pastes them: each is `ci/setup.sh MODE && cargo …`,
//! `.ci/run` runs exactly the README's test command, and the set-up script does nothing when
//! everything is present, refuses clearly when it is not root, and names what to install on a
//! machine without apt.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The first line of each ```sh block of the README section "The two commands".
fn readme_commands() -> Vec<String> {
    let readme = read("README.md");
    let section = readme
        .split("## The two commands")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a section \"The two commands\"");
    section
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.lines().next().map(str::to_string))
        .collect()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn setup(args: &[&str]) -> Command {
    let mut c = Command::new(root().join("ci/setup.sh"));
    c.args(args);
    c
}

#[test]
fn the_readme_commands_set_up_then_run() {
    assert_eq!(
        readme_commands(),
        [
            "ci/setup.sh run && cargo run --release -- run scenarios/",
            "ci/setup.sh test && cargo test",
        ]
    );
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let test_command = &readme_commands()[1];
    let ci = read(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == test_command),
        ".ci/run must run `{test_command}` as written in the README"
    );
    for step in [
        "cargo fmt --all -- --check",
        "cargo clippy --all-targets -- -D warnings",
        "cargo clippy --all-targets --features e2e -- -D warnings",
    ] {
        assert!(
            ci.lines().any(|l| l.trim() == step),
            ".ci/run lost `{step}`"
        );
    }
}

/// `.ci/run` skips the default-feature clippy when the e2e feature only adds the kind suite
/// (then the e2e pass checks a superset). Its guard must see every reader of the feature: here,
/// its grep run over this checkout agrees with a scan in Rust, and finds a reader added by hand.
#[test]
fn ci_skips_the_default_clippy_only_when_nothing_else_reads_the_e2e_feature() {
    fn readers(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry"))
        {
            let p = e.path();
            if e.file_type().expect("type").is_dir() {
                readers(&p, base, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).expect("read");
                let squeezed: String = text.chars().filter(|c| *c != ' ').collect();
                if squeezed.contains("feature=\"e2e\"") {
                    let rel = p.strip_prefix(base).expect("under the root");
                    out.push(rel.display().to_string());
                }
            }
        }
    }
    let ci = read(".ci/run");
    let guard = ci
        .lines()
        .find(|l| l.trim_start().starts_with("others=$(grep "))
        .expect(".ci/run has the e2e-feature guard")
        .trim()
        .strip_prefix("others=$(")
        .and_then(|l| l.strip_suffix(')'))
        .expect("others=$(…)")
        .to_string();
    let run_guard = |dir: &Path| -> Vec<String> {
        let o = Command::new("bash")
            .arg("-c")
            .arg(&guard)
            .current_dir(dir)
            .output()
            .expect("bash runs");
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let mut here = Vec::new();
    readers(&root().join("harness"), &root(), &mut here);
    here.retain(|p| p != "harness/tests/e2e.rs");
    here.sort();
    assert_eq!(run_guard(&root()), here);

    // A copy with a reader in the library: the guard names it (and only it).
    let tree = tempfile::tempdir().expect("tempdir");
    for (rel, body) in [
        ("harness/tests/e2e.rs", "#![cfg(feature = \"e2e\")]\n"),
        (
            "harness/src/lib.rs",
            "#[cfg(not(feature=\"e2e\"))]\nfn f() {}\n",
        ),
        ("harness/src/other.rs", "fn g() {}\n"),
    ] {
        let p = tree.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    }
    assert_eq!(run_guard(tree.path()), ["harness/src/lib.rs"]);
}

#[test]
fn setup_without_a_mode_is_a_usage_error() {
    for args in [&[][..], &["install"][..]] {
        let o = setup(args).output().expect("runs");
        assert_eq!(o.status.code(), Some(2), "{}", show(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("usage: ci/setup.sh run|test"));
    }
}

#[test]
fn setup_refuses_to_run_without_root() {
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(root().join("ci/setup.sh"))
        .arg("run")
        .output()
        .expect("setpriv runs");
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("error: must run as root"),
        "{}",
        show(&o)
    );
}

/// On this machine (root, nft and ip installed) the `run` set-up has nothing to do: it returns
/// 0 without a word, and installs nothing.
#[test]
fn setup_with_everything_present_does_nothing() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test must run as root (as the README's commands do)"
    );
    let o = setup(&["run"]).output().expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "", "{}", show(&o));
}

/// A machine without apt and without nft: the script stops before doing anything and lists the
/// packages to install. PATH holds only what the script itself needs.
#[test]
fn setup_without_apt_names_what_is_missing() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test must run as root (as the README's commands do)"
    );
    let bin = tempfile::tempdir().expect("tempdir");
    let which = |tool: &str| -> PathBuf {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .expect("sh runs");
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!p.is_empty(), "{tool} not found on this machine");
        PathBuf::from(p)
    };
    for tool in [
        "bash", "dirname", "id", "sed", "sort", "head", "awk", "cargo", "cc", "ip", "cat",
    ] {
        std::os::unix::fs::symlink(which(tool), bin.path().join(tool)).expect("symlink");
    }
    let o = Command::new(bin.path().join("bash"))
        .arg(root().join("ci/setup.sh"))
        .arg("run")
        .env("PATH", bin.path())
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not a Debian-like system (no apt-get); install these yourself")
            && err.contains("nftables")
            && !err.contains("iproute2"),
        "{}",
        show(&o)
    );
}
