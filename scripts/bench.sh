#!/usr/bin/env bash
# Builds the release binaries, installs nginx when missing (as root, idempotent), then runs
# target/release/mcpgw-bench with the given arguments and prints the command line used.
#
#   scripts/bench.sh                      # all scenarios, 5 s each, 32 connections
#   scripts/bench.sh --seconds 10 --connections 64
#   scripts/bench.sh --only direct,floor,mcpgw
#
# From make: `make bench BENCH_ARGS="--seconds 10"` (or call this script directly).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench.sh: installing nginx (Debian package) for the nginx baseline"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null \
      || echo "bench.sh: !!! could not install nginx: the nginx scenario will be SKIPPED" >&2
  else
    echo "bench.sh: !!! nginx is missing and this is not root with apt-get: the nginx scenario will be SKIPPED" >&2
  fi
fi

cargo build --release --bins
echo "bench.sh: command: target/release/mcpgw-bench $*"
exec target/release/mcpgw-bench "$@"
