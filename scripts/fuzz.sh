#!/usr/bin/env bash
# `make fuzz`: build every tests/fuzz/fuzz_*.c with clang (-fsanitize=fuzzer,address,undefined)
# against the library's and the CLI's sources (not its main), all instrumented, then run each for
# FUZZ_SECONDS on a copy of its seeds (tests/fuzz/seeds/<name>/ for fuzz_<name>.c) with
# tests/fuzz/<name>.dict when present. A crash, leak, UB, allocation over the limit or timeout
# fails the run; the input is left in BUILD/findings/. Usage: scripts/fuzz.sh BUILD_DIR SECONDS
# (FUZZ_SEED=N: libFuzzer's -seed, for CI; FUZZ_JOBS: parallel compiles).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-fuzz}
secs=${2:-60}
seed=()
[ -n "${FUZZ_SEED:-}" ] && seed=(-seed="$FUZZ_SEED") # CI: the same mutations every run
mkdir -p "$out/obj" "$out/findings"
CC=${FUZZ_CC:-clang}
flags=(-g -O1 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE=1 -DLINNX_FAULT_INJECTION -fopenmp-simd -ffp-contract=off
       -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -Wno-pass-failed
       -Iinclude -Itools $(pkg-config --cflags nettle openblas jansson msgpack))
libs=($(pkg-config --libs nettle openblas jansson msgpack) -lm)

# Library and CLI objects, rebuilt when their source or any header is newer.
newest_header=$(ls -t include/linnx/*.h src/*/*.h tools/*.h | head -1)
objs=()
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
running=0
for src in src/*/*.c tools/*.c; do
    [ "$src" = tools/linnx.c ] && continue
    obj="$out/obj/$(echo "$src" | tr / _).o"
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$newest_header" -nt "$obj" ]; then
        rm -f "$obj"
        "$CC" "${flags[@]}" -include src/core/fault_inject.h -c "$src" -o "$obj.tmp" && mv "$obj.tmp" "$obj" &
        running=$((running + 1))
        if [ $running -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
    fi
    objs+=("$obj")
done
wait
for o in "${objs[@]}"; do [ -f "$o" ] || { echo "fuzz: failed to compile ${o##*/}" >&2; exit 1; }; done

status=0
for t in tests/fuzz/fuzz_*.c; do
    name=$(basename "$t" .c)
    "$CC" "${flags[@]}" -fsanitize=fuzzer "$t" "${objs[@]}" "${libs[@]}" -o "$out/$name"
    corpus="$out/corpus/$name"
    mkdir -p "$corpus"
    [ -d "tests/fuzz/seeds/${name#fuzz_}" ] && cp -n tests/fuzz/seeds/"${name#fuzz_}"/* "$corpus"/ 2>/dev/null || true
    dict=()
    [ -f "tests/fuzz/${name#fuzz_}.dict" ] && dict=(-dict="tests/fuzz/${name#fuzz_}.dict")
    echo "fuzz: $name for ${secs}s"
    if ! ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
         "$out/$name" "${dict[@]}" "${seed[@]}" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
         -artifact_prefix="$out/findings/$name-" -print_final_stats=1 "$corpus" >"$out/$name.log" 2>&1; then
        echo "fuzz: $name FOUND A PROBLEM (log: $out/$name.log, reproducer in $out/findings/)"
        tail -40 "$out/$name.log"
        status=1
    else
        grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$out/$name.log" | tail -1 || true
    fi
done
exit $status
