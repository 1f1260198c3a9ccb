#!/usr/bin/env bash
# Every C example in README.md and docs/*.md is compiled (and run, when it has a main), so the
# documentation cannot drift from the headers. A ```c block is one translation unit: it gets
# `#include <linnx/linnx.h>` in front unless it includes headers itself, and must build with
# -std=c11 -pedantic -Wall -Wextra -Werror against the public headers only (no -I into src/).
# A block with `int main(` is linked against the shared library and must exit 0.
#
# usage: check_doc_examples.sh SOURCE_DIR SHARED_LIBRARY [CC [EXTRA_CFLAGS]]
set -u
src=${1:?source dir}
lib=${2:?shared library}
cc=${3:-cc}
extra=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0 n=0
for md in "$src"/README.md "$src"/docs/*.md; do
    base=$(basename "$md" .md)
    # Write each ```c block to $tmp/<doc>_<k>.c with a #line directive pointing at the document,
    # an ```output block right after it to <doc>_<k>.expected, and for every ```python block
    # followed by a ```c block the two line counts (not blank, not only a comment) to <doc>.pairs.
    awk -v out="$tmp/$base" -v doc="$md" '
        function countable(line, py) {
            if (line ~ /^[[:space:]]*$/) return 0
            if (py) return line !~ /^[[:space:]]*#/
            return line !~ /^[[:space:]]*(\/\*.*\*\/|\/\/.*)[[:space:]]*$/
        }
        /^```c[[:space:]]*$/ { k++; f = out "_" k ".c"; printf "#line %d \"%s\"\n", NR + 1, doc > f; inb = "c"; cl = 0; next }
        /^```python[[:space:]]*$/ { inb = "py"; pl = 0; next }
        /^```output[[:space:]]*$/ { if (last == "c") { f = out "_" k ".expected"; inb = "out" } else inb = "skip"; next }
        /^```/ {
            if (inb == "c" || inb == "out") close(f)
            if (inb == "c" && last == "py") printf "%d %d %s\n", pcount, cl, k >> (out ".pairs")
            if (inb == "py") pcount = pl
            if (inb != "") last = inb; else last = "other"
            inb = ""; next
        }
        inb == "c" { print > f; cl += countable($0, 0) }
        inb == "out" { print > f }
        inb == "py" { pl += countable($0, 1) }
    ' "$md"
    # The line-count table of the side-by-side page says what the blocks hold, and holds the goal.
    if [ -f "$tmp/$base.pairs" ]; then
        while read -r py c k; do
            if ! grep -qE "\| $py \| $c \|" "$md"; then
                echo "FAIL $base: block $k has $py Flax and $c C lines; the table does not say so"; fail=1
            fi
            if [ $((c)) -gt $((2 * py)) ]; then echo "FAIL $base: block $k: $c C lines > 2 x $py Flax lines"; fail=1; fi
            echo "ok   $base block $k: $c C lines for $py Flax lines"
        done < "$tmp/$base.pairs"
    fi
done
shopt -s nullglob
for f in "$tmp"/*.c; do
    n=$((n + 1))
    name=$(basename "$f" .c)
    if ! grep -q '^#include' "$f"; then
        { echo '#include <linnx/linnx.h>'; cat "$f"; } > "$f.tmp" && mv "$f.tmp" "$f"
    fi
    if ! "$cc" -std=c11 -pedantic -Wall -Wextra -Werror $extra -I "$src/include" -c "$f" -o "$tmp/$name.o" 2> "$tmp/$name.log"; then
        echo "FAIL compile $name:"; cat "$tmp/$name.log"; fail=1; continue
    fi
    if grep -q 'int main(' "$f"; then
        if ! "$cc" $extra "$tmp/$name.o" "$lib" -Wl,-rpath,"$(cd "$(dirname "$lib")" && pwd)" -lm -o "$tmp/$name" 2> "$tmp/$name.log"; then
            echo "FAIL link $name:"; cat "$tmp/$name.log"; fail=1; continue
        fi
        if ! (cd "$tmp" && "./$name" > "$name.out" 2>&1); then
            echo "FAIL run $name:"; cat "$tmp/$name.out"; fail=1; continue
        fi
        # The output block, compared without trailing blanks (a missing final newline included).
        if [ -f "$tmp/$name.expected" ] &&
           [ "$(sed -e 's/[[:space:]]*$//' "$tmp/$name.out")" != "$(sed -e 's/[[:space:]]*$//' "$tmp/$name.expected")" ]; then
            echo "FAIL output $name: got"; cat "$tmp/$name.out"; echo; echo "the document says"; cat "$tmp/$name.expected"
            fail=1; continue
        fi
        echo "ok   $name (ran)"
    else
        echo "ok   $name (compiled)"
    fi
done
if [ "$n" -eq 0 ]; then echo "no C examples found"; exit 1; fi
exit $fail
