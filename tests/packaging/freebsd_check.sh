#!/usr/bin/env bash
# Checks a cross-built FreeBSD binary (make freebsd / freebsd-aarch64): a FreeBSD-branded ELF whose
# NEEDED libraries all come with FreeBSD's base system, and prints its size.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/x86_64-unknown-freebsd/release/mcpgw}
machine=${2:-X86-64}   # readelf's name: X86-64 or AArch64
fail=0
ok() { echo "ok - $*"; }
bad() { echo "not ok - $*"; fail=1; }

[ -f "$bin" ] || { echo "not ok - $bin does not exist (run make freebsd)"; exit 1; }
echo "size: $(stat -c %s "$bin") bytes ($bin)"

header=$(readelf -h "$bin")
if grep -q 'Class:.*ELF64' <<<"$header"; then ok "ELF64"; else bad "not ELF64"; fi
if grep -q "Machine:.*$machine" <<<"$header"; then ok "$machine"; else bad "not $machine"; fi
# FreeBSD recognises its binaries by the .note.tag ABI note, not by EI_OSABI.
if readelf -n "$bin" | grep -A3 '\.note\.tag' | grep -q FreeBSD; then ok ".note.tag says FreeBSD"; else bad "no FreeBSD .note.tag"; fi
interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
if [ "$interp" = "/libexec/ld-elf.so.1" ]; then ok "interpreter $interp"; else bad "interpreter is '$interp'"; fi

# Libraries of FreeBSD base (no pkg dependencies).
base="libc.so.7 libthr.so.3 libm.so.5 librt.so.1 libutil.so.9 libexecinfo.so.1 libgcc_s.so.1 libcxxrt.so.1"
needed=$(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
[ -n "$needed" ] || bad "no NEEDED entries found"
for lib in $needed; do
  if [[ " $base " == *" $lib "* ]]; then ok "NEEDED $lib (base system)"; else bad "NEEDED $lib is not a base-system library"; fi
done
exit $fail
