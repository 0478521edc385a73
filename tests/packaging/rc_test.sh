#!/usr/bin/env bash
# Tests rc.d/mcpgw, the FreeBSD rc.d script, on Linux: the script runs under
# /bin/sh with a stand-in rc.subr (tests/packaging/rc_stub/rc.subr) in place
# of `. /etc/rc.subr`, and with stub `daemon` and `mcpgw` programs that
# record what they were called with. Asserts the exact daemon(8) command
# line, that start/restart/reload refuse a configuration `mcpgw check`
# rejects, that reload sends HUP to the child only after a passing check,
# and that stop sends TERM to the supervisor.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
script=$root/rc.d/mcpgw

work=$(mktemp -d)
bin=$work/bin
fakeroot=$work/root
events=$work/events.log
rcconf=$work/rc.conf
patched=$work/mcpgw.rc
mkdir -p "$bin" "$fakeroot/var/run"

kill_helpers() {
  local f pid
  for f in "$fakeroot"/var/run/*.pid; do
    [ -f "$f" ] || continue
    read -r pid < "$f" || true
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$f"
  done
}
cleanup() { kill_helpers; rm -rf "$work"; }
trap cleanup EXIT

# The script under test, with only its rc.subr line replaced.
n=$(grep -c '^\. /etc/rc\.subr$' "$script" || true)
if [ "$n" != 1 ]; then
  echo "rc_test: expected exactly one '. /etc/rc.subr' line in $script, found $n" >&2
  exit 1
fi
# shellcheck disable=SC2016  # $RC_TEST_SUBR is for the patched script to expand
sed 's|^\. /etc/rc\.subr$|. "$RC_TEST_SUBR"|' "$script" > "$patched"

# A process standing in for the supervisor or the child: records the signals
# it gets in the events log; TERM ends it. Exits by itself after 60 s.
cat > "$bin/sig-helper" <<'EOF'
#!/bin/sh
role=$1
trap 'echo "$role HUP" >> "$RC_TEST_EVENTS"' HUP
trap 'echo "$role TERM" >> "$RC_TEST_EVENTS"; exit 0' TERM
i=0
while [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
EOF

# daemon(8): records its argv (one per line) and, like the real one, leaves a
# supervisor and a child running with their pid files written.
cat > "$bin/daemon" <<'EOF'
#!/bin/sh
echo daemon >> "$RC_TEST_EVENTS"
: > "$RC_TEST_ARGV"
for a in "$@"; do printf '%s\n' "$a" >> "$RC_TEST_ARGV"; done
sup='' child=''
while getopts rSfT:P:p: opt; do
  case $opt in P) sup=$OPTARG ;; p) child=$OPTARG ;; *) ;; esac
done
here=$(dirname "$0")
if [ -n "$sup" ]; then "$here/sig-helper" supervisor </dev/null >/dev/null 2>&1 & echo $! > "$RC_TEST_ROOT$sup"; fi
if [ -n "$child" ]; then "$here/sig-helper" child </dev/null >/dev/null 2>&1 & echo $! > "$RC_TEST_ROOT$child"; fi
exit 0
EOF

# mcpgw: `check -c FILE` passes or fails as STUB_CHECK says, like the real
# one (one OK line / FILE:LINE:COL error and exit 1).
cat > "$bin/mcpgw" <<'EOF'
#!/bin/sh
echo "mcpgw $*" >> "$RC_TEST_EVENTS"
if [ "$1" = check ]; then
  if [ "${STUB_CHECK:-ok}" = ok ]; then echo "OK $3"; exit 0; fi
  echo "$3:3:7: unknown key \`listn\`" >&2; exit 1
fi
echo "stub mcpgw: unexpected $*" >&2; exit 3
EOF
chmod +x "$bin/sig-helper" "$bin/daemon" "$bin/mcpgw"

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "#   $l"; done; }

# rcconf LINE...: the rc.conf the script will read (mcpgw_program points
# rc.subr's command at the stub mcpgw).
rcconf() { { echo "mcpgw_program=\"$bin/mcpgw\""; printf '%s\n' "$@"; } > "$rcconf"; }

# rc ARG: run the script; sets rc, out (stdout), errout (stderr).
rc() {
  set +e
  env PATH="$bin:$PATH" RC_TEST_ROOT="$fakeroot" RC_TEST_SUBR="$here/rc_stub/rc.subr" \
    RC_TEST_RCCONF="$rcconf" RC_TEST_EVENTS="$events" RC_TEST_ARGV="$work/daemon.argv" \
    STUB_CHECK="${STUB_CHECK:-ok}" sh "$patched" "$@" > "$work/out" 2> "$work/err"
  rc=$?
  set -e
  out=$(cat "$work/out")
  errout=$(cat "$work/err")
}
reset() { kill_helpers; : > "$events"; rm -f "$work/daemon.argv"; }
has_event() { grep -qxF -- "$1" "$events"; }
# wait_event LINE: up to 5 s for a signal helper to record LINE.
wait_event() {
  local _
  for _ in $(seq 50); do has_event "$1" && return 0; sleep 0.1; done
  return 1
}
line_no() { { grep -nxF -- "$1" "$events" || true; } | head -1 | cut -d: -f1; }
pid_of() { cat "$fakeroot/var/run/$1" 2>/dev/null || true; }

# --- static checks --------------------------------------------------------
# shellcheck disable=SC2016  # literal lines of the script, not expansions
for want in '# PROVIDE: mcpgw' '# REQUIRE: NETWORKING syslogd' '# KEYWORD: shutdown' \
  'name="mcpgw"' 'rcvar="mcpgw_enable"' 'load_rc_config $name' \
  'command="/usr/local/bin/mcpgw"' ': ${mcpgw_enable:="NO"}' \
  ': ${mcpgw_config:="/usr/local/etc/mcpgw/mcpgw.toml"}' ': ${mcpgw_flags:=""}'; do
  if grep -qxF -- "$want" "$script"; then ok "line: $want"; else not_ok "line: $want" "missing"; fi
done

# --- start: the exact daemon(8) command line --------------------------------
reset; rcconf 'mcpgw_enable="YES"'; rc start
expected=(-r -S -T mcpgw -P /var/run/mcpgw.pid -p /var/run/mcpgw.child.pid
  "$bin/mcpgw" run -c /usr/local/etc/mcpgw/mcpgw.toml)
mapfile -t got < <(cat "$work/daemon.argv" 2>/dev/null)
if [ $rc -eq 0 ] && [ "${got[*]}" = "${expected[*]}" ] && [ ${#got[@]} -eq ${#expected[@]} ]; then
  ok "start runs: daemon ${expected[*]}"
else
  not_ok "start runs the expected daemon command" "rc=$rc" "want: ${expected[*]}" "got:  ${got[*]:-}" "$errout"
fi
check_at=$(line_no "mcpgw check -c /usr/local/etc/mcpgw/mcpgw.toml")
if [ -n "$check_at" ] && [ -n "$(line_no daemon)" ] && [ "$check_at" -lt "$(line_no daemon)" ]; then
  ok "start checks the configuration before daemon"
else
  not_ok "start checks the configuration before daemon" "$(cat "$events")"
fi

# --- status and "already running" -------------------------------------------
rc status
if [ $rc -eq 0 ] && [ "$out" = "mcpgw is running as pid $(pid_of mcpgw.pid)." ]; then
  ok "status reports the supervisor pid"
else
  not_ok "status reports the supervisor pid" "rc=$rc" "$out"
fi
: > "$events"; rc start
if [ $rc -ne 0 ] && ! has_event daemon; then ok "start refuses when already running"; else not_ok "start refuses when already running" "rc=$rc"; fi

# --- mcpgw_config and mcpgw_flags -------------------------------------------
reset; rcconf 'mcpgw_enable="YES"' 'mcpgw_config="/conf/gw.toml"' 'mcpgw_flags="--log-level debug"'; rc start
expected=(-r -S -T mcpgw -P /var/run/mcpgw.pid -p /var/run/mcpgw.child.pid
  "$bin/mcpgw" run -c /conf/gw.toml --log-level debug)
mapfile -t got < <(cat "$work/daemon.argv" 2>/dev/null)
if [ $rc -eq 0 ] && [ "${got[*]}" = "${expected[*]}" ] && [ ${#got[@]} -eq ${#expected[@]} ] \
  && has_event "mcpgw check -c /conf/gw.toml"; then
  ok "mcpgw_config and mcpgw_flags reach mcpgw, after 'run'"
else
  not_ok "mcpgw_config and mcpgw_flags reach mcpgw" "want: ${expected[*]}" "got:  ${got[*]:-}"
fi

# --- start refuses an invalid configuration ---------------------------------
reset; rcconf 'mcpgw_enable="YES"'; STUB_CHECK=fail rc start
if [ $rc -ne 0 ] && ! has_event daemon && has_event "mcpgw check -c /usr/local/etc/mcpgw/mcpgw.toml" \
  && [[ $errout == *"/usr/local/etc/mcpgw/mcpgw.toml:3:7:"* ]] && [[ $errout == *"refusing to start"* ]]; then
  ok "start refuses when mcpgw check fails, and shows its error"
else
  not_ok "start refuses when mcpgw check fails" "rc=$rc" "$errout" "$(cat "$events")"
fi

# --- not enabled --------------------------------------------------------------
reset; rcconf; rc start
if [ $rc -eq 0 ] && ! has_event daemon && [[ $out == *"Set mcpgw_enable to YES"* ]]; then
  ok "mcpgw_enable defaults to NO: start does nothing"
else
  not_ok "mcpgw_enable defaults to NO" "rc=$rc" "$out"
fi

# --- reload: check, then HUP to the child only ----------------------------------
reset; rcconf 'mcpgw_enable="YES"'; rc start
: > "$events"; rc reload
if [ $rc -eq 0 ] && wait_event "child HUP" && has_event "mcpgw check -c /usr/local/etc/mcpgw/mcpgw.toml" \
  && [ "$(line_no "mcpgw check -c /usr/local/etc/mcpgw/mcpgw.toml")" -lt "$(line_no "child HUP")" ] \
  && has_event "check_pidfile /var/run/mcpgw.child.pid $bin/mcpgw" && ! has_event "supervisor HUP"; then
  ok "reload checks the configuration, then sends HUP to the child (not the supervisor)"
else
  not_ok "reload: check then HUP to the child" "rc=$rc" "$out" "$errout" "$(cat "$events")"
fi

: > "$events"; STUB_CHECK=fail rc reload
sleep 0.5
if [ $rc -ne 0 ] && has_event "mcpgw check -c /usr/local/etc/mcpgw/mcpgw.toml" && ! has_event "child HUP" \
  && ! has_event "supervisor HUP" && kill -0 "$(pid_of mcpgw.child.pid)" && [[ $errout == *"refusing to reload"* ]]; then
  ok "reload with an invalid configuration sends no signal"
else
  not_ok "reload with an invalid configuration sends no signal" "rc=$rc" "$errout" "$(cat "$events")"
fi

# --- restart refuses an invalid configuration without stopping ------------------
: > "$events"; STUB_CHECK=fail rc restart
sleep 0.3
if [ $rc -ne 0 ] && ! has_event "supervisor TERM" && kill -0 "$(pid_of mcpgw.pid)"; then
  ok "restart with an invalid configuration leaves the running service alone"
else
  not_ok "restart with an invalid configuration leaves the service alone" "rc=$rc" "$(cat "$events")"
fi

# --- configtest -------------------------------------------------------------------
: > "$events"; rc configtest
if [ $rc -eq 0 ] && [ "$out" = "OK /usr/local/etc/mcpgw/mcpgw.toml" ]; then ok "configtest passes a valid configuration"; else not_ok "configtest passes" "rc=$rc" "$out"; fi
STUB_CHECK=fail rc configtest
if [ $rc -ne 0 ] && [[ $errout == *":3:7: unknown key"* ]]; then ok "configtest fails an invalid configuration"; else not_ok "configtest fails" "rc=$rc" "$errout"; fi

# --- stop: TERM to the supervisor, and wait ------------------------------------------
sup=$(pid_of mcpgw.pid)
: > "$events"; rc stop
if [ $rc -eq 0 ] && has_event "supervisor TERM" && ! has_event "child TERM" && ! kill -0 "$sup" 2>/dev/null; then
  ok "stop sends TERM to the supervisor and waits for it"
else
  not_ok "stop sends TERM to the supervisor" "rc=$rc" "$out" "$errout" "$(cat "$events")"
fi

echo "rc_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
