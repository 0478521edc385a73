#!/usr/bin/env bash
# Packaging tests of the OPNsense plugin (freebsd/os-mcpgw), the port (freebsd/port) and
# the packer (scripts/mkpkg.py). Prints each check; exits non-zero if any fails.
#
#   tests/packaging/plugin_test.sh
#
# Needs php-cli, xmllint (libxml2-utils), openssl and Python 3.11+ with Jinja2
# (scripts/deps.sh test installs them); MCPGW_PYTHON picks the Python. syslog-ng and
# shellcheck are used when installed and skipped loudly when not. The mcpgw used for
# `mcpgw check` is target/debug/mcpgw (built when missing); the package is made from the
# FreeBSD build (target/x86_64-unknown-freebsd/release/mcpgw, `make freebsd`) when it
# exists, otherwise from the Linux binary as a stand-in (said in the output).
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
plugin=freebsd/os-mcpgw
python=${MCPGW_PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/mcpgw-plugin-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
skip() { echo "SKIP $* <<<<<<<<<<"; }
need() { command -v "$1" >/dev/null 2>&1 || { fail "$1 is not installed (scripts/deps.sh test installs it)"; return 1; }; }

echo "== PHP syntax (php -l)"
if need php; then
  while IFS= read -r -d '' f; do
    if out=$(php -l "$f" 2>&1); then pass "php -l $f"; else fail "php -l $f: $out"; fi
  done < <(find "$plugin/src" \( -name '*.php' -o -name '*.inc' \) -print0 | sort -z)
fi

echo "== XML well-formed (xmllint --noout)"
if need xmllint; then
  while IFS= read -r -d '' f; do
    if out=$(xmllint --noout "$f" 2>&1); then pass "xmllint $f"; else fail "xmllint $f: $out"; fi
  done < <(find "$plugin/src" -name '*.xml' -print0 | sort -z)
fi

echo "== plugin Makefile and layout"
for var in PLUGIN_NAME PLUGIN_VERSION PLUGIN_REVISION PLUGIN_COMMENT PLUGIN_DEPENDS PLUGIN_MAINTAINER PLUGIN_WWW; do
  if grep -Eq "^${var}=[[:space:]]*[^[:space:]]" "$plugin/Makefile"; then pass "Makefile sets $var"; else fail "Makefile does not set $var"; fi
done
grep -Eq '^PLUGIN_NAME=[[:space:]]*mcpgw$' "$plugin/Makefile" && pass "PLUGIN_NAME is mcpgw" || fail "PLUGIN_NAME is not mcpgw"
grep -Eq '^PLUGIN_DEPENDS=[[:space:]]*mcpgw$' "$plugin/Makefile" && pass "PLUGIN_DEPENDS is mcpgw" || fail "PLUGIN_DEPENDS is not mcpgw"
grep -q '^\.include "\.\./\.\./Mk/plugins\.mk"$' "$plugin/Makefile" && pass "Makefile includes plugins.mk" || fail "Makefile does not include ../../Mk/plugins.mk"
mvc=$plugin/src/opnsense/mvc/app
for f in $plugin/pkg-descr \
  $plugin/src/etc/inc/plugins.inc.d/mcpgw.inc \
  $plugin/src/opnsense/service/conf/actions.d/actions_mcpgw.conf \
  $plugin/src/opnsense/service/templates/OPNsense/McpGw/+TARGETS \
  $plugin/src/opnsense/service/templates/OPNsense/Syslog/local/mcpgw.conf \
  $mvc/models/OPNsense/McpGw/McpGw.xml $mvc/models/OPNsense/McpGw/McpGw.php \
  $mvc/models/OPNsense/McpGw/Menu/Menu.xml $mvc/models/OPNsense/McpGw/ACL/ACL.xml \
  $mvc/controllers/OPNsense/McpGw/IndexController.php \
  $mvc/controllers/OPNsense/McpGw/Api/SettingsController.php \
  $mvc/controllers/OPNsense/McpGw/Api/ServiceController.php \
  $mvc/views/OPNsense/McpGw/index.volt; do
  [ -s "$f" ] && pass "present: $f" || fail "missing: $f"
done
grep -q '<mount>//OPNsense/mcpgw</mount>' $mvc/models/OPNsense/McpGw/McpGw.xml && pass "model mounts //OPNsense/mcpgw" || fail "model mount"
grep -q 'url="/ui/diagnostics/log/core/mcpgw"' $mvc/models/OPNsense/McpGw/Menu/Menu.xml && pass "menu links the log viewer" || fail "menu has no Log File entry"
actions=$plugin/src/opnsense/service/conf/actions.d/actions_mcpgw.conf
for a in start stop restart reload status configtest; do
  grep -q "^\[$a\]$" "$actions" && pass "configd action $a" || fail "configd action $a missing"
done
for f in $plugin/src/opnsense/scripts/OPNsense/McpGw/*; do
  [ -x "$f" ] && pass "executable: $f" || fail "not executable: $f"
done
inc=$plugin/src/etc/inc/plugins.inc.d/mcpgw.inc
for fn in mcpgw_services mcpgw_syslog mcpgw_xmlrpc_sync; do
  grep -q "^function $fn()" "$inc" && pass "hook $fn" || fail "hook $fn missing"
done
grep -q "'pidfile' => '/var/run/mcpgw.pid'" "$inc" && pass "services hook names /var/run/mcpgw.pid" || fail "pidfile"
# the rc.d script (another branch) must keep the names the plugin relies on
if [ -f rc.d/mcpgw ]; then
  grep -q 'pidfile="/var/run/${name}.pid"' rc.d/mcpgw && pass "rc.d/mcpgw keeps /var/run/mcpgw.pid" || fail "rc.d/mcpgw pidfile differs from the services hook"
  grep -q 'configtest' rc.d/mcpgw && pass "rc.d/mcpgw has configtest" || fail "rc.d/mcpgw has no configtest"
else
  skip "rc.d/mcpgw is not in this tree: pid file and configtest not cross-checked"
fi

echo "== shell scripts (shellcheck)"
if command -v shellcheck >/dev/null 2>&1; then
  for f in scripts/stage.sh $plugin/src/opnsense/scripts/OPNsense/McpGw/setup.sh; do
    if out=$(shellcheck "$f" 2>&1); then pass "shellcheck $f"; else fail "shellcheck $f: $out"; fi
  done
  if out=$(shellcheck -s sh "$plugin/+POST_INSTALL.post" 2>&1); then pass "shellcheck $plugin/+POST_INSTALL.post"; else fail "shellcheck +POST_INSTALL.post: $out"; fi
else
  skip "shellcheck is not installed: setup.sh and stage.sh not linted"
fi

echo "== templates rendered like configd, checked by tomllib and mcpgw check"
mcpgw=target/debug/mcpgw
if [ ! -x "$mcpgw" ]; then
  echo "building $mcpgw"
  cargo build --quiet --bin mcpgw
fi
if ! "$python" -c 'import jinja2, tomllib' 2>/dev/null; then
  fail "$python has no jinja2 (or is older than 3.11): scripts/deps.sh test installs it"
elif "$python" tests/packaging/test_templates.py --mcpgw "$mcpgw"; then
  pass "test_templates.py"
else
  fail "test_templates.py"
fi

echo "== syslog-ng accepts the filter"
if command -v syslog-ng >/dev/null 2>&1; then
  snippet=$plugin/src/opnsense/service/templates/OPNsense/Syslog/local/mcpgw.conf
  # What OPNsense's syslog-ng-local.conf makes of a local/NAME.conf: the filter f_local_NAME,
  # a file destination /var/log/NAME/NAME_YYYYMMDD.log and a log path joining them.
  name=$(basename "$snippet" .conf)
  version=$(syslog-ng --version | sed -n 's/^Config version: *//p')
  {
    echo "@version: ${version:-3.35}"
    echo "source s_all { unix-dgram(\"$work/log\" flags(syslog-protocol)); internal(); };"
    cat "$snippet"
    echo "destination d_local_${name} { file(\"$work/var/log/${name}/${name}_\${YEAR}\${MONTH}\${DAY}.log\" create-dirs(yes)); };"
    echo "log { source(s_all); filter(f_local_${name}); destination(d_local_${name}); };"
  } > "$work/syslog-ng.conf"
  if out=$(syslog-ng --syntax-only -f "$work/syslog-ng.conf" 2>&1); then
    pass "syslog-ng --syntax-only with local/${name}.conf"
  else
    fail "syslog-ng rejects the filter: $out"
  fi
  grep -q "^filter f_local_${name} {" "$snippet" && pass "filter is named f_local_${name} (as OPNsense requires)" || fail "filter name"
else
  skip "syslog-ng is not installed: the filter snippet was not parsed"
fi

echo "== packages (scripts/stage.sh + scripts/mkpkg.py, read back by check_pkg.py)"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
freebsd_bin=target/x86_64-unknown-freebsd/release/mcpgw
if [ -f "$freebsd_bin" ]; then
  binary=$freebsd_bin
  echo "packing the FreeBSD build $binary"
else
  binary=$mcpgw
  echo "NOTE: $freebsd_bin is not built (make freebsd): packing the Linux binary as a stand-in"
fi
scripts/stage.sh mcpgw "$work/stage-mcpgw" "$binary"
scripts/stage.sh os-mcpgw "$work/stage-os-mcpgw"
"$python" scripts/mkpkg.py --name mcpgw --version "$version" --origin security/mcpgw \
  --comment "MCP policy gateway for OPNsense firewalls" --desc-file freebsd/port/pkg-descr \
  --message-file freebsd/port/pkg-message --abi FreeBSD:14:amd64 --prefix /usr/local \
  --dir /usr/local/etc/mcpgw=0700 --dir /usr/local/share/mcpgw \
  --root "$work/stage-mcpgw" --out "$work/pkgs"
plugin_version=$(sed -n 's/^PLUGIN_VERSION=[[:space:]]*//p' $plugin/Makefile)
"$python" scripts/mkpkg.py --name os-mcpgw --version "$plugin_version" --origin opnsense/os-mcpgw \
  --comment "$(sed -n 's/^PLUGIN_COMMENT=[[:space:]]*//p' $plugin/Makefile)" --desc-file $plugin/pkg-descr \
  --abi FreeBSD:14:amd64 --prefix /usr/local --dep "mcpgw:security/mcpgw:$version" \
  --script post-install=$plugin/+POST_INSTALL.post \
  --root "$work/stage-os-mcpgw" --out "$work/pkgs"
expect_rc=()
if [ -f rc.d/mcpgw ]; then expect_rc=(--expect /usr/local/etc/rc.d/mcpgw=0755); fi
expect_sample=()
if [ -f examples/mcpgw.toml ]; then expect_sample=(--expect /usr/local/etc/mcpgw/mcpgw.toml.sample=0644); fi
if "$python" tests/packaging/check_pkg.py "$work/pkgs/mcpgw-$version.pkg" --name mcpgw --version "$version" \
  --origin security/mcpgw --expect /usr/local/bin/mcpgw=0755 --expect /usr/local/etc/mcpgw=0700 \
  --expect /usr/local/share/mcpgw/policy.json.sample=0644 "${expect_rc[@]}" "${expect_sample[@]}"; then
  pass "mcpgw-$version.pkg"
else
  fail "mcpgw-$version.pkg"
fi
if "$python" tests/packaging/check_pkg.py "$work/pkgs/os-mcpgw-$plugin_version.pkg" --name os-mcpgw \
  --version "$plugin_version" --origin opnsense/os-mcpgw --dep mcpgw \
  --expect /usr/local/etc/inc/plugins.inc.d/mcpgw.inc=0644 \
  --expect /usr/local/opnsense/scripts/OPNsense/McpGw/setup.sh=0755 \
  --expect /usr/local/opnsense/scripts/OPNsense/McpGw/export_cert.py=0755 \
  --expect /usr/local/opnsense/service/templates/OPNsense/McpGw/mcpgw.toml=0644 \
  --expect /usr/local/opnsense/mvc/app/models/OPNsense/McpGw/McpGw.xml=0644; then
  pass "os-mcpgw-$plugin_version.pkg"
else
  fail "os-mcpgw-$plugin_version.pkg"
fi

echo "== port skeleton"
for var in PORTNAME DISTVERSION CATEGORIES MAINTAINER COMMENT WWW LICENSE USES USE_RC_SUBR; do
  grep -Eq "^${var}=[[:space:]]*[^[:space:]]" freebsd/port/Makefile && pass "port sets $var" || fail "port does not set $var"
done
grep -Eq "^DISTVERSION=[[:space:]]*${version//./\\.}$" freebsd/port/Makefile && pass "port DISTVERSION is Cargo.toml's $version" || fail "port DISTVERSION differs from Cargo.toml ($version)"
scripts/stage.sh port-files >/dev/null
lock_crates=$("$python" -c 'import tomllib; print(sum(1 for p in tomllib.load(open("Cargo.lock","rb"))["package"] if p.get("source","").startswith("registry+")))')
port_crates=$(grep -cE '^[[:space:]]+[A-Za-z0-9_-]+-[0-9]|^CARGO_CRATES=' freebsd/port/Makefile.crates)
[ "$lock_crates" = "$port_crates" ] && pass "Makefile.crates lists the $lock_crates crates of Cargo.lock" || fail "Makefile.crates has $port_crates crates, Cargo.lock $lock_crates: regenerate it"

echo
if [ "$failures" -gt 0 ]; then
  echo "plugin_test.sh: $failures check(s) FAILED"
  exit 1
fi
echo "plugin_test.sh: all checks passed"
