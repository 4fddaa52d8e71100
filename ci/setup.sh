#!/usr/bin/env bash
# Prepares a Debian/Ubuntu machine for the README's two commands and installs only what is
# missing; idempotent, and quick (a few checks, no network) when everything is already there.
#
#   ci/setup.sh run    what `cargo run --release -- run scenarios/` needs: root, Rust, a C
#                      compiler for the build, nft and ip for the local dataplane
#   ci/setup.sh test   the same, plus what `cargo test` needs: kill and mount for the CLI and
#                      disk tests, Chromium, Node.js with npm, and `npm ci` in
#                      harness/tests/browser (playwright-core for the HTML report's browser test)
#
# Rust is never installed here (Debian's own is older than the crate's rust-version): without a
# recent enough cargo this script stops and says how to get one. Set CHROMIUM=/path/to/chromium
# to use a browser that apt does not provide (Ubuntu ships Chromium only as a snap).
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  printf 'ci/setup.sh: error: %s\n' "$*" >&2
  exit 1
}
say() { printf 'ci/setup.sh: %s\n' "$*" >&2; }

mode=${1:-}
case "$mode" in
  run | test) ;;
  *)
    printf 'usage: ci/setup.sh run|test\n' >&2
    exit 2
    ;;
esac

[ "$(id -u)" -eq 0 ] || die "must run as root: the local dataplane creates network namespaces and nftables tables (try: sudo -E ci/setup.sh $mode)"

# $1 >= $2 for dotted versions.
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# Rust: the crate's rust-version, from the workspace manifest.
need_rust=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)
command -v cargo >/dev/null 2>&1 ||
  die "cargo not found: install Rust >= ${need_rust} with rustup (https://rustup.rs), open a new shell (or source ~/.cargo/env), then re-run"
have_rust=$(cargo --version | awk '{print $2}')
version_ge "${have_rust%%-*}" "$need_rust" ||
  die "cargo ${have_rust} is older than the ${need_rust} this crate needs: rustup update stable"

pkgs=()
command -v cc >/dev/null 2>&1 || pkgs+=(gcc libc6-dev)
command -v nft >/dev/null 2>&1 || pkgs+=(nftables)
command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ "$mode" = test ]; then
  command -v kill >/dev/null 2>&1 || pkgs+=(procps)
  command -v mount >/dev/null 2>&1 || pkgs+=(mount)
  if [ -n "${CHROMIUM:-}" ]; then
    [ -x "$CHROMIUM" ] || die "CHROMIUM=$CHROMIUM is not an executable"
  else
    [ -x /usr/bin/chromium ] || pkgs+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || pkgs+=(chromium-driver)
  fi
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi

if [ "${#pkgs[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 ||
    die "not a Debian-like system (no apt-get); install these yourself, then re-run: ${pkgs[*]}"
  say "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  for p in "${pkgs[@]}"; do
    if ! apt-cache show "$p" >/dev/null 2>&1; then
      case "$p" in
        chromium | chromium-driver)
          die "apt has no '$p' here (Ubuntu ships Chromium as a snap): install a Chromium or Chrome and re-run with CHROMIUM=/path/to/it (e.g. snap install chromium; CHROMIUM=/snap/bin/chromium)"
          ;;
        *) die "apt has no package '$p' on this system" ;;
      esac
    fi
  done
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

if [ "$mode" = test ]; then
  # playwright-core's supported Node.js (harness/tests/browser/package.json "engines").
  need_node=$(sed -n 's/.*"node": *">=\([0-9.]*\)".*/\1/p' harness/tests/browser/package.json | head -n1)
  have_node=$(node --version | sed 's/^v//')
  version_ge "$have_node" "$need_node" ||
    die "node ${have_node} is older than the ${need_node} the browser test needs (Ubuntu 22.04: install a newer nodejs, e.g. from NodeSource)"
  # npm ci only when node_modules does not match the lock file (it reinstalls from scratch).
  browser=harness/tests/browser
  stamp=$browser/node_modules/.netpolc-lock.sha256
  want=$(sha256sum "$browser/package-lock.json" | cut -d' ' -f1)
  if [ ! -f "$browser/node_modules/playwright-core/package.json" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "npm ci in $browser"
    (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
    printf '%s\n' "$want" >"$stamp"
  fi
fi
