#!/bin/sh
#
# Run by configd before the mcpgw service starts, restarts or reloads (actions_mcpgw.conf).
#
#   setup.sh          prepare, and remember what a reload cannot change
#   setup.sh reload   prepare, then reload mcpgw (SIGHUP), or restart it when the listen
#                     address or threads, the upstream or its environment, or the syslog
#                     settings changed since it started
#
# Prepare means:
# - /usr/local/etc/mcpgw is root's only (0700). configd writes each rendered file with the
#   mode of its folder minus the exec bits, so mcpgw.toml and opnsense.env (which holds the
#   API secret) come out 0600; the chmod below covers files rendered before this ran.
# - the certificate chosen in the GUI is exported from config.xml to cert.pem and key.pem.
#
# The MCPGW_* environment variables below exist for the tests; OPNsense sets none of them.

set -e

ETC=${MCPGW_ETC:-/usr/local/etc/mcpgw}
RC=${MCPGW_RC:-/usr/local/etc/rc.d/mcpgw}
CONFIG_XML=${MCPGW_CONFIG_XML:-/conf/config.xml}
STAMP=${MCPGW_STAMP:-/var/run/mcpgw.restart-key}
HERE=$(dirname "$0")

digest()
{
	if command -v sha256 >/dev/null 2>&1; then
		sha256 -q
	else
		sha256sum | cut -d ' ' -f 1
	fi
}

# The parts of the rendered configuration a SIGHUP does not apply: [listen] address and
# workers, the [upstream] and [syslog] tables and the environment file [upstream] names.
restart_key()
{
	{
		sed -n '/^\[listen\]/,/^\[/{/^address/p;/^workers/p;}' "${ETC}/mcpgw.toml"
		sed -n '/^\[upstream\]/,/^\[/p' "${ETC}/mcpgw.toml"
		sed -n '/^\[syslog\]/,/^\[/p' "${ETC}/mcpgw.toml"
		cat "${ETC}/opnsense.env"
	} 2>/dev/null | digest
}

mkdir -p "${ETC}"
chmod 0700 "${ETC}"
for f in mcpgw.toml opnsense.env; do
	if [ -f "${ETC}/${f}" ]; then
		chmod 0600 "${ETC}/${f}"
	fi
done
"${MCPGW_PYTHON:-/usr/local/bin/python3}" "${HERE}/export_cert.py" --config "${CONFIG_XML}" --out "${ETC}"

if [ "$1" = "reload" ]; then
	if [ "$(restart_key)" = "$(cat "${STAMP}" 2>/dev/null)" ]; then
		"${RC}" reload || "${RC}" restart
	else
		"${RC}" restart
	fi
fi
restart_key > "${STAMP}"
