#!/usr/bin/env bash
# `make fuzz`: build the libFuzzer targets of tests/fuzz/ with clang (ASan + UBSan + fuzzer
# coverage on the readers in src/io, the rest of linnx from BUILD/liblinnx.a) and run each for
# FUZZ_SECONDS seconds on a copy of its seed corpus. A crash, leak, allocation over the limit or
# timeout fails the run and leaves the input in BUILD/fuzz/.
# Usage: fuzz.sh BUILD [SECONDS]
set -euo pipefail
build=${1:?usage: fuzz.sh BUILD [SECONDS]}
secs=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$build/fuzz"
mkdir -p "$out"
flags=(-O1 -g -std=c11 -D_POSIX_C_SOURCE=200809L -I"$root/include" -fno-omit-frame-pointer)
san=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
libs=("$build/liblinnx.a" $(pkg-config --libs jansson msgpack nettle openblas) -lgomp -lm)
# the readers, instrumented once
objs=()
for src in "$root"/src/io/*.c; do
    o="$out/$(basename "${src%.c}").o"
    clang "${flags[@]}" -fsanitize=fuzzer-no-link,address,undefined $(pkg-config --cflags jansson msgpack) -c "$src" -o "$o"
    objs+=("$o")
done
status=0
for target in "$root"/tests/fuzz/fuzz_*.c; do
    name=$(basename "${target%.c}")
    clang "${flags[@]}" "${san[@]}" "$target" "${objs[@]}" "${libs[@]}" -o "$out/$name"
    corpus="$out/corpus_${name#fuzz_}"
    mkdir -p "$corpus"
    cp -n "$root/tests/fuzz/seeds/${name#fuzz_}/"* "$corpus/" 2>/dev/null || true
    echo "fuzz: $name for ${secs}s"
    if ! (cd "$out" && ASAN_OPTIONS=detect_leaks=1 "./$name" -max_total_time="$secs" -rss_limit_mb=1024 \
            -malloc_limit_mb=256 -timeout=5 -print_final_stats=1 "$(basename "$corpus")" 2>"$name.log"); then
        echo "fuzz: $name FAILED (see $out/$name.log)"; tail -30 "$out/$name.log"; status=1
    else
        grep -E "stat::number_of_executed_units" "$out/$name.log" | sed "s/^/fuzz: $name /"
    fi
done
exit $status
