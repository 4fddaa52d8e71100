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
        "cargo build --release",
        "cargo test --features e2e --no-run",
    ] {
        assert!(
            ci.lines().any(|l| l.trim() == step),
            ".ci/run lost `{step}`"
        );
    }
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
