#!/usr/bin/env bash
# Checks the cross-built FreeBSD binary (make freebsd): a FreeBSD-branded ELF for x86-64 whose
# NEEDED libraries all come with FreeBSD's base system, and prints its size.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/x86_64-unknown-freebsd/release/mcpgw}
fail=0
ok() { echo "ok - $*"; }
bad() { echo "not ok - $*"; fail=1; }

[ -f "$bin" ] || { echo "not ok - $bin does not exist (run make freebsd)"; exit 1; }
echo "size: $(stat -c %s "$bin") bytes ($bin)"

header=$(readelf -h "$bin")
grep -q 'Class:.*ELF64' <<<"$header" && ok "ELF64" || bad "not ELF64"
grep -q 'Machine:.*X86-64' <<<"$header" && ok "x86-64" || bad "not x86-64"
# FreeBSD recognises its binaries by the .note.tag ABI note, not by EI_OSABI.
if readelf -n "$bin" | grep -A3 '\.note\.tag' | grep -q FreeBSD; then ok ".note.tag says FreeBSD"; else bad "no FreeBSD .note.tag"; fi
interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[ "$interp" = "/libexec/ld-elf.so.1" ] && ok "interpreter $interp" || bad "interpreter is '$interp'"

# Libraries of FreeBSD base (no pkg dependencies).
base="libc.so.7 libthr.so.3 libm.so.5 librt.so.1 libutil.so.9 libexecinfo.so.1 libgcc_s.so.1 libcxxrt.so.1"
needed=$(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
[ -n "$needed" ] || bad "no NEEDED entries found"
for lib in $needed; do
  if [[ " $base " == *" $lib "* ]]; then ok "NEEDED $lib (base system)"; else bad "NEEDED $lib is not a base-system library"; fi
done
exit $fail
