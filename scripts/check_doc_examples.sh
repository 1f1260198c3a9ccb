#!/usr/bin/env bash
# Every C example in README.md and docs/*.md is compiled (and run, when it has a main), so the
# documentation cannot drift from the headers. A ```c block is one translation unit: it gets
# `#include <linnx/linnx.h>` in front unless it includes headers itself, and must build with
# -std=c11 -pedantic -Wall -Wextra -Werror against the public headers only (no -I into src/).
# A block with `int main(` is linked against the shared library and must exit 0.
#
# usage: check_doc_examples.sh SOURCE_DIR SHARED_LIBRARY [CC]
set -u
src=${1:?source dir}
lib=${2:?shared library}
cc=${3:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0 n=0
for md in "$src"/README.md "$src"/docs/*.md; do
    base=$(basename "$md" .md)
    # Write each ```c block to $tmp/<doc>_<k>.c with a #line directive pointing at the document.
    awk -v out="$tmp/$base" -v doc="$md" '
        /^```c[[:space:]]*$/ { k++; f = out "_" k ".c"; printf "#line %d \"%s\"\n", NR + 1, doc > f; inb = 1; next }
        /^```/ { if (inb) close(f); inb = 0; next }
        inb { print > f }
    ' "$md"
done
shopt -s nullglob
for f in "$tmp"/*.c; do
    n=$((n + 1))
    name=$(basename "$f" .c)
    if ! grep -q '^#include' "$f"; then
        { echo '#include <linnx/linnx.h>'; cat "$f"; } > "$f.tmp" && mv "$f.tmp" "$f"
    fi
    if ! "$cc" -std=c11 -pedantic -Wall -Wextra -Werror -I "$src/include" -c "$f" -o "$tmp/$name.o" 2> "$tmp/$name.log"; then
        echo "FAIL compile $name:"; cat "$tmp/$name.log"; fail=1; continue
    fi
    if grep -q 'int main(' "$f"; then
        if ! "$cc" "$tmp/$name.o" "$lib" -Wl,-rpath,"$(cd "$(dirname "$lib")" && pwd)" -lm -o "$tmp/$name" 2> "$tmp/$name.log"; then
            echo "FAIL link $name:"; cat "$tmp/$name.log"; fail=1; continue
        fi
        if ! (cd "$tmp" && "./$name" > "$name.out" 2>&1); then
            echo "FAIL run $name:"; cat "$tmp/$name.out"; fail=1; continue
        fi
        echo "ok   $name (ran)"
    else
        echo "ok   $name (compiled)"
    fi
done
if [ "$n" -eq 0 ]; then echo "no C examples found"; exit 1; fi
exit $fail
