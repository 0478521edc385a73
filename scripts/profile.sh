#!/usr/bin/env bash
# Profiles mcpgw's request path under the benchmark load.
#
# Builds symbolised release binaries (same profile, not stripped, frame pointers) into
# target/prof, then drives `mcpgw run` (HTTP mock upstream, TLS, 150-rule policy) with
# mcpgw-bench. Uses `perf record` when hardware counters work here (`perf stat -e
# instructions true`), otherwise valgrind's callgrind on a short run. Output goes to
# target/prof/profile/ and the top functions are printed.
#
#   scripts/profile.sh                 # 8 connections, 5 s
#   SECONDS_PER_RUN=10 CONNS=16 scripts/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECONDS_PER_RUN:-5}
conns=${CONNS:-8}
out=target/prof/profile
mkdir -p "$out"

CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
RUSTFLAGS="-C force-frame-pointers=yes" \
  cargo build --release --target-dir target/prof --bin mcpgw --bin mcpgw-mock --bin mcpgw-bench

bench=target/prof/release/mcpgw-bench
common=(--only mcpgw --seconds "$secs" --connections "$conns" --latency-connections 0)

if perf stat -e instructions true >/dev/null 2>&1 \
   && ! perf stat -e instructions true 2>&1 | grep -q 'not supported'; then
  echo "profile.sh: perf with hardware counters"
  echo "profile.sh: command: $bench ${common[*]} --perf-record $out/perf.data"
  "$bench" "${common[@]}" --perf-record "$out/perf.data"
  perf report -i "$out/perf.data" --no-children --percent-limit 1 --stdio | head -80
else
  command -v valgrind >/dev/null || { echo "profile.sh: !!! neither perf counters nor valgrind: nothing to profile with" >&2; exit 1; }
  echo "profile.sh: perf has no hardware counters here: valgrind --tool=callgrind"
  rm -f "$out"/callgrind.out*
  gw="valgrind --tool=callgrind --callgrind-out-file=$PWD/$out/callgrind.out $PWD/target/prof/release/mcpgw"
  echo "profile.sh: command: $bench ${common[*]} --gateway-cmd \"$gw\""
  "$bench" "${common[@]}" --gateway-cmd "$gw"
  echo "== exclusive (self) cost"
  callgrind_annotate "$out/callgrind.out" 2>/dev/null | head -60
  echo "== inclusive cost"
  callgrind_annotate --inclusive=yes "$out/callgrind.out" 2>/dev/null | head -80
fi
