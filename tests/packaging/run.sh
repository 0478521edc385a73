#!/usr/bin/env bash
# Packaging tests: shellcheck over the shell scripts we ship or run, then the
# rc.d script's behaviour test (rc_test.sh). `make test` runs this.
set -euo pipefail
cd "$(dirname "$0")/../.."

status=0
scripts=(rc.d/mcpgw tools/zigcc-freebsd scripts/deps.sh .ci/run
  tests/clients/inspector.sh tests/packaging/run.sh tests/packaging/rc_test.sh
  tests/packaging/rc_stub/rc.subr tests/packaging/freebsd_check.sh)
present=()
for f in "${scripts[@]}"; do [ -f "$f" ] && present+=("$f"); done

if command -v shellcheck >/dev/null 2>&1; then
  echo "== shellcheck ($(shellcheck --version | sed -n 's/^version: //p')): ${present[*]}"
  if shellcheck "${present[@]}"; then echo "shellcheck: clean"; else echo "shellcheck: FAILED"; status=1; fi
else
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!!! shellcheck is not installed: SKIPPING the shellcheck of ${present[*]}"
  echo "!!! (scripts/deps.sh test installs it from Debian's packages)"
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
fi

echo "== rc.d/mcpgw behaviour (tests/packaging/rc_test.sh)"
tests/packaging/rc_test.sh || status=1

if [ -f target/x86_64-unknown-freebsd/release/mcpgw ]; then
  echo "== FreeBSD binary (tests/packaging/freebsd_check.sh)"
  tests/packaging/freebsd_check.sh || status=1
else
  echo "!!! target/x86_64-unknown-freebsd/release/mcpgw is not built: FreeBSD binary checks SKIPPED"
fi

echo "== OPNsense plugin, templates and packages (tests/packaging/plugin_test.sh)"
tests/packaging/plugin_test.sh || status=1
exit $status
