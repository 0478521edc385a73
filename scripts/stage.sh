#!/bin/sh
#
# Lay out what a package installs, under DESTDIR, as its files will sit on the firewall.
#
#   scripts/stage.sh mcpgw DESTDIR BINARY   the gateway: bin/mcpgw, etc/rc.d/mcpgw,
#                                           etc/mcpgw/ (0700) with mcpgw.toml.sample,
#                                           share/mcpgw/policy.json.sample
#   scripts/stage.sh os-mcpgw DESTDIR       the OPNsense plugin: freebsd/os-mcpgw/src/
#   scripts/stage.sh port-files             copy rc.d/mcpgw into the port as files/mcpgw.in
#                                           (USE_RC_SUBR), with /usr/local as %%PREFIX%%,
#                                           and write Makefile.crates from Cargo.lock
#
# Parts that do not exist yet in the tree (rc.d/mcpgw, examples/mcpgw.toml) are skipped
# with a message. Then: scripts/mkpkg.py --root DESTDIR ... makes the .pkg.

set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
prefix=/usr/local

usage()
{
	sed -n '4,10p' "$0" >&2
	exit 2
}

[ $# -ge 1 ] || usage
what=$1

case "${what}" in
mcpgw)
	[ $# -eq 3 ] || usage
	dest=$2
	binary=$3
	[ -f "${binary}" ] || { echo "stage.sh: no binary at ${binary}" >&2; exit 1; }
	install -d -m 0755 "${dest}${prefix}/bin" "${dest}${prefix}/share/mcpgw"
	install -d -m 0700 "${dest}${prefix}/etc/mcpgw"
	install -m 0755 "${binary}" "${dest}${prefix}/bin/mcpgw"
	if [ -f "${top}/rc.d/mcpgw" ]; then
		install -d -m 0755 "${dest}${prefix}/etc/rc.d"
		install -m 0755 "${top}/rc.d/mcpgw" "${dest}${prefix}/etc/rc.d/mcpgw"
	else
		echo "stage.sh: rc.d/mcpgw is not in this tree: the package has no rc.d script" >&2
	fi
	if [ -f "${top}/examples/mcpgw.toml" ]; then
		install -m 0644 "${top}/examples/mcpgw.toml" "${dest}${prefix}/etc/mcpgw/mcpgw.toml.sample"
	else
		echo "stage.sh: examples/mcpgw.toml is not in this tree: no mcpgw.toml.sample" >&2
	fi
	install -m 0644 "${top}/examples/policy.json" "${dest}${prefix}/share/mcpgw/policy.json.sample"
	;;
os-mcpgw)
	[ $# -eq 2 ] || usage
	dest=$2
	install -d -m 0755 "${dest}${prefix}"
	# cp -R keeps the exec bits of the scripts; mkpkg.py sets owners and the other modes
	cp -R "${top}/freebsd/os-mcpgw/src/." "${dest}${prefix}/"
	;;
port-files)
	[ -f "${top}/rc.d/mcpgw" ] || { echo "stage.sh: rc.d/mcpgw is not in this tree" >&2; exit 1; }
	mkdir -p "${top}/freebsd/port/files"
	sed "s|/usr/local|%%PREFIX%%|g" "${top}/rc.d/mcpgw" > "${top}/freebsd/port/files/mcpgw.in"
	echo "stage.sh: wrote freebsd/port/files/mcpgw.in"
	# The crates list of `make cargo-crates`, from Cargo.lock, so it can never go stale.
	python3 - "${top}/Cargo.lock" > "${top}/freebsd/port/Makefile.crates" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    lock = tomllib.load(f)
crates = sorted(f"{p['name']}-{p['version']}" for p in lock["package"]
                if p.get("source", "").startswith("registry+"))
print("# Crates of Cargo.lock (the format of `make cargo-crates`), written by scripts/stage.sh port-files.")
print("CARGO_CRATES=\t" + " \\\n\t\t".join(crates))
PY
	echo "stage.sh: wrote freebsd/port/Makefile.crates ($(grep -c . "${top}/freebsd/port/Makefile.crates") lines)"
	;;
*)
	usage
	;;
esac
