#!/usr/bin/env bash
# The shared library exports exactly the public API: every dynamic symbol it defines is declared
# in include/linnx/*.h, and every function the headers declare (extern, not static inline) is
# exported. Function declarations come from the compiler itself (gcc -aux-info over linnx.h),
# so no declaration is missed by a hand-written parser.
#
# usage: check_exports.sh SOURCE_DIR SHARED_LIBRARY [CC]
set -u
src=${1:?source dir}
lib=${2:?shared library}
cc=${3:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# The soname carries the ABI version.
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
case "$soname" in
  liblinnx.so.[0-9]*) echo "soname $soname" ;;
  *) echo "FAIL: soname is '$soname', want liblinnx.so.<abi>"; fail=1 ;;
esac

# (Sanitizer builds add their own ODR indicators, __odr_asan.<name>: not part of the API.)
nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVWiu]$/ {print $3}' | sed 's/@.*//' | grep -v '^__odr_asan' | sort -u > "$tmp/exported"
cat "$src"/include/linnx/*.h > "$tmp/headers"
echo '#include <linnx/linnx.h>' > "$tmp/all.c"
if ! "$cc" -std=c11 -I "$src/include" -aux-info "$tmp/aux" -fsyntax-only "$tmp/all.c"; then
    echo "FAIL: linnx.h does not compile"; exit 1
fi
# "/* .../include/linnx/x.h:12:NC */ extern lx_status lx_fail (lx_status, ...);" -> lx_fail
grep "/include/linnx/" "$tmp/aux" | grep -v '\*/ static ' \
    | sed -E 's|^/\*[^*]*\*/ *||; s/ *\(.*//; s/.*[ *]([A-Za-z_][A-Za-z0-9_]*)$/\1/' | sort -u > "$tmp/declared"

nexp=$(wc -l < "$tmp/exported")
ndecl=$(wc -l < "$tmp/declared")
echo "$nexp exported symbols, $ndecl declared functions"
# Exported but not declared: an internal symbol leaking (data objects must appear in a header too).
while read -r sym; do
    if ! grep -qw -- "$sym" "$tmp/headers"; then echo "FAIL: exported but not in any public header: $sym"; fail=1; fi
done < "$tmp/exported"
# Declared but not exported: a public function missing from the library (or hidden by mistake).
comm -23 "$tmp/declared" "$tmp/exported" | while read -r sym; do echo "FAIL: declared but not exported: $sym"; done > "$tmp/missing"
if [ -s "$tmp/missing" ]; then cat "$tmp/missing"; fail=1; fi
# Layering: the core is below every other component and includes none of their internals.
if grep -rn '#include "\.\./' "$src"/src/core; then echo "FAIL: src/core includes another component's internals"; fail=1; fi
[ "$nexp" -gt 100 ] || { echo "FAIL: only $nexp symbols exported"; fail=1; }
exit $fail
