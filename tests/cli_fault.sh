#!/usr/bin/env bash
# Allocation fault injection over whole CLI runs (issue 12, item 2): for each workload, fail its
# N-th library allocation for every N (LINNX_FAIL_ALLOC=N, include/linnx/fault.h) and require
# the run to either print exactly the fault-free output (exit 0, nothing on stderr) or fail
# cleanly: nothing on stdout (a streaming command: the fault-free output's first lines), exactly
# one `linnx: ...` line on stderr that says memory ran out,
# exit status 1 (the out-of-memory convention of tools/cli.h). Usage: cli_fault.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_fault.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"

total=$(LINNX_FAIL_ALLOC=0 LINNX_ALLOC_STATS=1 "$bin" key --seed 0 2>&1 >/dev/null | sed -n 's/^linnx: \([0-9]*\) allocations.*/\1/p')
if [ -z "$total" ]; then
    # skipped only when a run with its first allocation failed still succeeds (no injection):
    # exit 77, CTest's SKIP_RETURN_CODE for the cli_*.sh scripts (CMakeLists.txt)
    if LINNX_FAIL_ALLOC=1 "$bin" key --seed 0 >/dev/null 2>&1; then
        echo "fault injection is not built in (LINNX_FAULT_INJECTION=OFF): skipped"; cli_finish || exit 1; exit 77
    fi
    fail=$((fail + 1)); echo "FAIL: fault injection is built in, but LINNX_ALLOC_STATS=1 prints no allocation count"
fi

# LINNX_FAULT_STRIDE=K tries every K-th allocation only (the sanitizer build, whose runs are slow).
stride=${LINNX_FAULT_STRIDE:-1}

sweep() { # the linnx arguments as words
    local want n t rc out err lines bad=0
    want=$("$bin" "$@" 2>"$cli_tmp/err0") || { fail=$((fail + 1)); echo "FAIL: fault-free run of linnx $*"; cat "$cli_tmp/err0"; return; }
    t=$(LINNX_FAIL_ALLOC=0 LINNX_ALLOC_STATS=1 "$bin" "$@" 2>&1 >/dev/null | sed -n 's/^linnx: \([0-9]*\) allocations.*/\1/p')
    # no count (the stats line missing or changed) or none: nothing would be swept
    if ! [[ $t =~ ^[0-9]+$ ]] || [ "$t" -eq 0 ]; then
        fail=$((fail + 1)); echo "FAIL: no allocation count for linnx $* (got '$t')"; return
    fi
    [ -n "${SWEEP_MAX:-}" ] && [ "$SWEEP_MAX" -lt "$t" ] && t=$SWEEP_MAX # only the first allocations
    for ((n = 1; n <= t; n += stride)); do
        out=$(LINNX_FAIL_ALLOC=$n "$bin" "$@" 2>"$cli_tmp/err"); rc=$?
        err=$(cat "$cli_tmp/err")
        if [ $rc -eq 0 ] && [ "$out" == "$want" ] && [ -z "$err" ]; then continue; fi
        lines=$(printf '%s\n' "$err" | wc -l)
        # a streaming command (STREAM=1: train prints a line per step) may have printed the
        # fault-free output's first lines before it failed; anything else prints nothing
        if [ $rc -eq 1 ] && { [ -z "$out" ] || { [ "${STREAM:-0}" = 1 ] && [[ $want == "$out"$'\n'* ]]; }; } &&
           [ "$lines" -eq 1 ] && [[ $err == "linnx: "* ]] &&
           [[ $err == *"out of memory"* || $err == *"cannot allocate"* ]]; then continue; fi
        bad=$((bad + 1))
        # under the sanitizers (make test-sanitize) a leak is LeakSanitizer's report on stderr
        [[ $err == *"LeakSanitizer"* ]] && [ $bad -le ${FAULT_SHOW:-3} ] &&
            echo "FAIL: LINNX_FAIL_ALLOC=$n linnx $* leaked: $(grep -m1 'leak of' "$cli_tmp/err")"
        [ $bad -le ${FAULT_SHOW:-3} ] && echo "FAIL: LINNX_FAIL_ALLOC=$n linnx $* -> exit $rc, stdout '${out:0:120}', stderr '${err:0:300}'"
    done
    if [ $bad -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "  ($bad of $t allocations failed badly)"; fi
}

sweep example nnx-inside-linen --seed 0 --x 1,2,3,4 --features 3
sweep example linen-inside-nnx --seed 0 --x 1,2,3,4 --features 3
sweep params 'bridge.ToNNX(linen.Dense(3))' --seed 0 --input-shape 1,4
sweep params 'bridge.to_linen(nnx.Linear, 4, 3)' --seed 0 --input-shape 1,4
# a gradient step's worth of work: value_and_grad of a loss through the bridge (linnx grad)
sweep grad 'bridge.to_linen(nnx.Linear, 4, 2)' --seed 0 --x 1,2,3,4 --x-shape 1,4 --y 1,0 --y-shape 1,2 --loss squared_error
# training: the --optimizer expression's parser and builders (an optimizer that runs out of memory
# exits 1 like every other out-of-memory failure, not 2 as a bad expression), then steps
STREAM=1 sweep train 'linen.Dense(2)' --seed 0 --x 1,2,3,4 --x-shape 2,2 --y 1,0,0,1 --y-shape 2,2 --loss l2_loss \
    --optimizer 'chain(clip_by_global_norm(1.0), adamw(learning_rate=linear_schedule(0.1, 0.01, 5), weight_decay=0.1))' --steps 2
# .npy data (--data): the reader's header and value buffers (npy() from lib_cli.sh)
mkdir -p "$cli_tmp/d"
npy "$cli_tmp/d/x.npy" '<f8' '(2, 1)' '\x00\x00\x00\x00\x00\x00\xf0\x3f\x00\x00\x00\x00\x00\x00\x00\x40'
npy "$cli_tmp/d/y.npy" '<f4' '(2, 1)' '\x00\x00\x00\x40\x00\x00\x80\x40'
# (the first 80 allocations: the data is read before the model is built; the sweep above covers
# the rest of a training run)
SWEEP_MAX=80 STREAM=1 sweep train 'nnx.Linear(1, 1)' --seed 0 --data "$cli_tmp/d" --loss l2_loss --optimizer 'sgd(0.1, momentum=0.9)' --steps 1

cli_finish
