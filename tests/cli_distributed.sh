#!/usr/bin/env bash
# Data-parallel training under mpirun (linnx/distributed.h): tests/test_distributed.c's worker on
# N = 1, 2, 3 ranks must give the single-process parameters and losses (and sync batch-norm the
# global batch's statistics and gradients), and ZeRO-1 sharding the
# optimizer state the same parameters as the unsharded run, its gathered state checkpointed and
# resumed unsharded and sharded the same losses, and every documented ZeRO-1 error path refused
# with its status and message, params and optimizer state untouched (it checks them itself on
# rank 0 and every rank's verdict decides the exit status); a rank that fails with an error or
# dies by SIGKILL at step 3 must make the others stop, exit non-zero, with a message naming the
# rank (and the step, for an error), in bounded time (a rank whose setup failed, linnx train's or
# train-lm's, stops the others at the start-of-run check); and `linnx train` under mpirun -np 2 prints
# the same loss lines as one process (rank 0 prints, the data sharded, gradients averaged); a run
# saved with N ranks resumes with M; a rank killed mid-run leaves the last checkpoint intact; and
# train's and train-lm's ranks ended by SIGTERM say which step they were at.
# Skipped (with a message) when mpirun is absent or linnx was built without MPI.
# Usage: cli_distributed.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_distributed.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"
prog="$(dirname "$bin")/test_distributed"

if ! command -v mpirun >/dev/null 2>&1; then
    echo "mpirun not found (scripts/install-deps.sh installs openmpi-bin): skipped"
    cli_finish || exit 1 # lib_cli.sh's own self-check still counts
    exit 77 # ctest reports it as skipped, not passed
fi
if [ ! -x "$prog" ]; then
    echo "$prog not built: skipped"
    cli_finish || exit 1 # lib_cli.sh's own self-check still counts
    exit 77 # ctest reports it as skipped, not passed
fi
# The guard of a launch that must end by itself (its ranks run --steps 100000 or more): after $1
# seconds, SIGKILL mpirun ($2) and every process under it, found while mpirun still lives (mpirun
# alone killed would leave its ranks training on a shared machine); `kill $guard` stops the timer
# (its sleep too, so nothing holds the test's output open)
descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }
guard_launch() {
    ( sleep "$1" & t=$!; trap 'kill $t 2>/dev/null; exit 0' TERM; wait $t
      kill -9 $(descendants "$2") "$2" 2>/dev/null ) >/dev/null 2>&1 &
    guard=$!
}
# The pid of rank $1 among mpirun $2's children (from its environment), or nothing
rank_pid() {
    local p
    for p in $(pgrep -P "$2"); do
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -q "^OMPI_COMM_WORLD_RANK=$1\$\|^PMI_RANK=$1\$"; then echo "$p"; fi
    done
}
mpi=(mpirun -np)
if mpirun --version 2>&1 | grep -q "Open MPI"; then
    mpi=(mpirun --oversubscribe --allow-run-as-root -np)
    # containers often forbid cross-memory attach; shared memory without it still works
    export OMPI_MCA_btl_vader_single_copy_mechanism=none
    # mpirun follows its SIGTERM with SIGKILL after odls_base_sigkill_timeout (1 s by default); on a
    # loaded machine a rank may not run its SIGTERM handler ("rank N: stopped at step K") within 1 s,
    # so the one launch that checks those lines (rank 1 killed, below) waits 5 s (at 10 s mpirun's
    # own wait, twice that, was 19-20 s against the test's 20 s bound: flaky). Not every launch:
    # mpirun waits about twice the timeout after any rank's non-zero exit, even when every rank has
    # already exited (20 s a launch at 10; ~20 launches here end that way)
    export OMPI_MCA_odls_base_sigkill_timeout=1
fi
# Open MPI's own allocations are not linnx's leaks (the sanitizer build runs this too)
export ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0
export OMP_NUM_THREADS=1 LINNX_DIST_WORKER=1
# where the ZeRO-1 checkpoint round trip writes (rank 0) and every rank reads
export LINNX_DIST_CKPT="$cli_tmp/zero1_ckpt.msgpack"

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; sed -n 1,20p "$cli_tmp/out"; }

# probe: a build without MPI says so and the multi-rank tests are skipped
if LINNX_DIST_WORKER=1 "$prog" >"$cli_tmp/out" 2>&1; [ $? -eq 2 ] && grep -q "built without it" "$cli_tmp/out"; then
    # such a linnx started by mpirun (the launcher's size in the environment) refuses, rather than
    # train N full copies side by side
    OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 "$bin" train 'linen.Dense(2)' --seed 0 --x 1,2 --x-shape 1,2 --y 1,0 \
        --y-shape 1,2 --loss squared_error --optimizer 'sgd(0.1)' --steps 1 >"$cli_tmp/out" 2>&1
    if [ $? -eq 2 ] && grep -q "linnx: train: started by mpirun as one of 2 processes, but this linnx was built without MPI" \
        "$cli_tmp/out" && ! grep -q "^step" "$cli_tmp/out"; then ok; else bad "no-MPI linnx under mpirun"; fi
    OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 "$bin" train-lm --steps 2 --batch 2 --seq-len 16 --emb 16 --layers 1 \
        --mlp 32 --eval-batches 1 --sample-tokens 0 --svg "$cli_tmp/nompi.svg" >"$cli_tmp/out" 2>&1
    if [ $? -eq 2 ] && grep -q "linnx: train-lm: started by mpirun as one of 2 processes, but this linnx was built without MPI" \
        "$cli_tmp/out" && ! grep -q "^data: " "$cli_tmp/out" && [ ! -e "$cli_tmp/nompi.svg" ]; then ok
    else bad "no-MPI linnx train-lm under mpirun"; fi
    [ $fail -eq 0 ] || { cli_finish; exit 1; }
    echo "linnx built without MPI: skipped"
    cli_finish || exit 1 # lib_cli.sh's own self-check still counts
    exit 77 # ctest reports it as skipped, not passed
fi

for n in 1 2 3; do
    timeout 60 "${mpi[@]}" "$n" "$prog" >"$cli_tmp/out" 2>&1
    rc=$?
    if [ $rc -eq 0 ] && grep -q "distributed: $n ranks" "$cli_tmp/out" && [ "$(grep -c "^zero1: rank .* of $n holds" "$cli_tmp/out")" = "$n" ] \
        && [ "$(grep -c "^zero1 checkpoint: $n ranks" "$cli_tmp/out")" = 2 ] \
        && [ "$(grep -c "^zero1 errors: rank .* of $n:" "$cli_tmp/out")" = "$n" ]; then
        ok
        grep -E "distributed: $n ranks|^zero1|^sync batch-norm" "$cli_tmp/out"
    else bad "$n ranks: exit $rc"; fi
done

# a rank that fails before its sync BatchNorm while the others wait in the moments' pmean: they
# time out (2 s deadline) naming their rank and step 5, the failing rank keeps its own message
LINNX_DIST_PMEAN_FAULT=1 timeout 60 "${mpi[@]}" 2 "$prog" >"$cli_tmp/out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "^pmean fault: rank 0 .*pmean all-reduce on rank 0 at step 5 timed out" "$cli_tmp/out" &&
   grep -q "^pmean fault: rank 1 .*injected failure before batch-norm on rank 1" "$cli_tmp/out"; then
    ok
    grep "^pmean fault: rank 0" "$cli_tmp/out"
else bad "pmean fault: exit $rc"; fi

# a rank that reports an error at step 3: every rank stops with the rank and step named
t0=$(date +%s)
LINNX_DIST_FAIL_RANK=1 LINNX_DIST_FAIL_STEP=3 timeout 60 "${mpi[@]}" 3 "$prog" >"$cli_tmp/out" 2>&1
rc=$?
t1=$(date +%s)
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "rank 0: distributed: rank 1 failed at step 3" "$cli_tmp/out" &&
   grep -q "rank 2: distributed: rank 1 failed at step 3" "$cli_tmp/out" &&
   grep -q "rank 1: injected failure on rank 1" "$cli_tmp/out"; then
    ok
    echo "error on rank 1 at step 3: all ranks stopped in $((t1 - t0)) s (exit $rc)"
else bad "error on rank 1: exit $rc"; fi

# the same through the overlapped ZeRO-1 step (reduce-scatters started during the backward pass)
LINNX_DIST_FAIL_ZERO1=1 LINNX_DIST_FAIL_RANK=1 LINNX_DIST_FAIL_STEP=3 timeout 60 "${mpi[@]}" 3 "$prog" >"$cli_tmp/out" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "rank 0: distributed: rank 1 failed at step 3" "$cli_tmp/out" &&
   grep -q "rank 2: distributed: rank 1 failed at step 3" "$cli_tmp/out" &&
   grep -q "rank 1: injected failure on rank 1" "$cli_tmp/out"; then
    ok
    echo "zero1: error on rank 1 at step 3: all ranks stopped (exit $rc)"
else bad "zero1: error on rank 1: exit $rc"; fi
LINNX_DIST_FAIL_ZERO1=1 LINNX_DIST_TIMEOUT=10 LINNX_DIST_FAIL_RANK=1 LINNX_DIST_FAIL_STEP=3 LINNX_DIST_FAIL_MODE=kill \
    timeout 60 "${mpi[@]}" 3 "$prog" >"$cli_tmp/out" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -Eq "rank 1 .*(signal 9|Killed)|rank 1 failed at step 3|timed out" "$cli_tmp/out"; then
    ok
    echo "zero1: rank 1 killed at step 3: the job ended (exit $rc)"
else bad "zero1: rank 1 killed: exit $rc"; fi

# a rank that dies (SIGKILL) at step 3: the others must not hang in the all-reduce
t0=$(date +%s)
LINNX_DIST_TIMEOUT=10 LINNX_DIST_FAIL_RANK=1 LINNX_DIST_FAIL_STEP=3 LINNX_DIST_FAIL_MODE=kill \
    timeout 60 "${mpi[@]}" 3 "$prog" >"$cli_tmp/out" 2>&1
rc=$?
t1=$(date +%s)
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -Eq "rank 1 .*(signal 9|Killed)|rank 1 failed at step 3|timed out" "$cli_tmp/out"; then
    ok
    echo "rank 1 killed at step 3: the job ended in $((t1 - t0)) s (exit $rc): $(grep -Em1 'rank 1 |timed out' "$cli_tmp/out")"
else bad "rank 1 killed: exit $rc"; fi

# a rank that hangs (sleeps) at step 3: the others' 3 s deadline turns the wait into an error
t0=$(date +%s)
LINNX_DIST_TIMEOUT=3 LINNX_DIST_FAIL_RANK=1 LINNX_DIST_FAIL_STEP=3 LINNX_DIST_FAIL_MODE=hang \
    timeout 60 "${mpi[@]}" 3 "$prog" >"$cli_tmp/out" 2>&1
rc=$?
t1=$(date +%s)
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $((t1 - t0)) -lt 25 ] &&
   grep -q "rank 0: distributed: status check on rank 0 at step 3 timed out after 3 s" "$cli_tmp/out"; then
    ok
    echo "rank 1 hangs at step 3: the others timed out, the job ended in $((t1 - t0)) s (exit $rc)"
else bad "rank 1 hangs: exit $rc after $((t1 - t0)) s"; fi

# `linnx train` unchanged under mpirun: rank 0 alone prints, the lines equal one process's within
# float32 summation order (rtol 1e-6 on the losses); minibatches and the whole data both shard
targs=(train 'linen.Sequential(linen.Dense(4), linen.relu, linen.Dense(2))' --seed 7
       --x 0.5,-1,2,1.5,0.25,-0.5,-2,1,0.75,0,-1.25,1,2.5,0.5,-0.25,1,1,-1 --x-shape 6,3
       --y 1,0,0,1,0.5,0.5,1,1,0,0,-1,2 --y-shape 6,2 --loss squared_error --optimizer 'adam(0.1)' --steps 5 --plain)
same_losses() { # $1 $2 files of `step K loss V` lines
    # (an `exit` in a rule still runs END, so the mismatch is a flag that END returns)
    awk "$awk_finite"'NR == FNR { w[FNR] = $4; n = FNR; next }
         { m = FNR; d = $4 - w[FNR]; if (d < 0) d = -d; a = w[FNR] < 0 ? -w[FNR] : w[FNR]
           if (!finite($4) || !finite(w[FNR]) || !(d <= 1e-6 * a + 1e-9)) { bad = 1; exit } }
         END { exit bad || m != n || n != 5 }' "$1" "$2"
}
for extra in "--batch-size 4" ""; do
    for n in 2 3; do
        [ "$n" = 3 ] && [ -n "$extra" ] && continue # 4 rows do not split over 3 ranks
        unset LINNX_DIST_WORKER
        "$bin" "${targs[@]}" $extra >"$cli_tmp/one" 2>&1
        timeout 60 "${mpi[@]}" "$n" "$bin" "${targs[@]}" $extra >"$cli_tmp/out" 2>&1
        rc=$?
        if [ $rc -eq 0 ] && same_losses "$cli_tmp/one" "$cli_tmp/out"; then ok
        else bad "linnx train $extra under mpirun -np $n: exit $rc"; diff "$cli_tmp/one" "$cli_tmp/out"; fi
    done
done
# without --plain (audit D13): each rank's stdout is a pty of Open MPI's, mpirun's own a file
# here, so the lines (not the bar's escapes) must reach it, every one of them
unset LINNX_DIST_WORKER
"$bin" "${targs[@]}" >"$cli_tmp/one" 2>&1
timeout 60 "${mpi[@]}" 2 "$bin" "${targs[@]:0:${#targs[@]}-1}" >"$cli_tmp/out" 2>&1
rc=$?
if [ $rc -eq 0 ] && ! grep -q $'\033' "$cli_tmp/out" && same_losses "$cli_tmp/one" "$cli_tmp/out"; then ok
else bad "linnx train under mpirun -np 2 without --plain, into a file: exit $rc"; od -c "$cli_tmp/out" | head -5; fi
# an NNX model (gradients are a State of Variables: the all-reduce keeps them Variables)
nargs=(train 'nnx.Linear(3, 2)' "${targs[@]:2}")
"$bin" "${nargs[@]}" >"$cli_tmp/one" 2>&1
timeout 60 "${mpi[@]}" 2 "$bin" "${nargs[@]}" >"$cli_tmp/out" 2>&1
rc=$?
if [ $rc -eq 0 ] && same_losses "$cli_tmp/one" "$cli_tmp/out"; then ok
else bad "linnx train nnx.Linear under mpirun -np 2: exit $rc"; diff "$cli_tmp/one" "$cli_tmp/out"; fi

# checkpoints under mpirun: rank 0 writes, every rank restores, and a run saved with N ranks
# resumes with M (2 -> 1 and 1 -> 2): the restored run prints the uninterrupted run's lines for its
# steps (rtol 1e-6: float32 order). Minibatches of 2 rows, so the resume is mid-epoch.
cargs=("${targs[@]:0:16}" --plain --batch-size 2) # targs without --steps 5
ck=$cli_tmp/ck.msgpack
"$bin" "${cargs[@]}" --steps 5 >"$cli_tmp/full" 2>&1
for nm in "2 1" "1 2"; do
    set -- $nm
    run_n() { if [ "$1" = 1 ]; then "$bin" "${@:2}"; else timeout 60 "${mpi[@]}" "$1" "$bin" "${@:2}"; fi; }
    rm -f "$ck"
    run_n "$1" "${cargs[@]}" --steps 2 --save "$ck" >"$cli_tmp/a" 2>&1 && rca=0 || rca=$?
    run_n "$2" "${cargs[@]}" --steps 3 --restore "$ck" >"$cli_tmp/b" 2>&1 && rcb=0 || rcb=$?
    cat "$cli_tmp/a" "$cli_tmp/b" >"$cli_tmp/out"
    if [ $rca -eq 0 ] && [ $rcb -eq 0 ] && head -1 "$cli_tmp/b" | grep -q "^step 2 loss" && same_losses "$cli_tmp/full" "$cli_tmp/out"; then
        ok
        echo "checkpoint saved with $1 rank(s) at step 2, resumed with $2: the uninterrupted run's losses"
    else bad "checkpoint $1 -> $2 ranks: exit $rca/$rcb"; diff "$cli_tmp/full" "$cli_tmp/out"; fi
done

# a rank killed (SIGKILL) mid-run on 3 ranks, while the run would overwrite the checkpoint at its
# end: the job exits non-zero within seconds, mpirun names the dead rank, ranks 0 and 2 each name
# the step they were at, and the last checkpoint (step 2) is intact and resumes as the
# uninterrupted run does (the whole 6 rows each step: 2 per rank)
kargs=("${targs[@]:0:16}" --plain)
"$bin" "${kargs[@]}" --steps 5 >"$cli_tmp/full" 2>&1
rm -f "$ck"
"$bin" "${kargs[@]}" --steps 2 --save "$ck" >/dev/null 2>&1
cp "$ck" "$cli_tmp/ck0"
OMPI_MCA_odls_base_sigkill_timeout=5 "${mpi[@]}" 3 "$bin" "${kargs[@]}" --steps 100000000 --restore "$ck" --save "$ck" >"$cli_tmp/out" 2>&1 &
mp=$!
for _ in $(seq 50); do # until rank 0 has printed a few steps (at most ~10 s)
    [ "$(grep -c '^step' "$cli_tmp/out")" -ge 5 ] && break
    sleep 0.2
done
victim=$(rank_pid 1 $mp)
t0=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
guard_launch 30 $mp
wait $mp
rc=$?
kill $guard 2>/dev/null
t1=$(date +%s)
"$bin" "${kargs[@]}" --steps 1 --restore "$ck" >"$cli_tmp/b" 2>&1
if [ -n "$victim" ] && [ $rc -ne 0 ] && [ $((t1 - t0)) -lt 20 ] && grep -Eq "rank 1 .*(signal 9|Killed)" "$cli_tmp/out" &&
   grep -Eq "linnx: rank 0: stopped at step [0-9]+ " "$cli_tmp/out" && grep -Eq "linnx: rank 2: stopped at step [0-9]+ " "$cli_tmp/out" &&
   cmp -s "$ck" "$cli_tmp/ck0" && [ "$(cat "$cli_tmp/b")" = "$(sed -n 3p "$cli_tmp/full")" ]; then
    ok
    echo "linnx train on 3 ranks, rank 1 killed: exit $rc in $((t1 - t0)) s; $(grep -Eo 'rank [02]: stopped at step [0-9]+' "$cli_tmp/out" | tr '\n' ';') the step-2 checkpoint intact and resumable"
else
    bad "linnx train, rank 1 killed (pid ${victim:-none}): exit $rc after $((t1 - t0)) s"
    echo "--- the job's output (tail):"; tail -8 "$cli_tmp/out"
    cmp -s "$ck" "$cli_tmp/ck0" && echo "--- checkpoint intact" || echo "--- checkpoint changed"
    echo "--- resumed: $(cat "$cli_tmp/b") (want: $(sed -n 3p "$cli_tmp/full"))"
fi

# a rank that fails before the first step (its --restore file is missing): it joins the start-of-run
# check, so the other stops there at once naming it ("before the first step", not a 60 s deadline
# in the first step's collectives, not "step -1"); the data are the 6 rows of targs
base=("${targs[@]:0:2}" "${targs[@]:4:4}" "${targs[@]:12:2}" --plain --steps 2) # no --seed, --y, --optimizer
y0=(--y 1,0,0,1,0.5,0.5,1,1,0,0,-1,2 --y-shape 6,2)
sargs=("${base[@]}" --seed 7 "${y0[@]}" --optimizer 'adam(0.1)')
rm -f "$ck"
"$bin" "${sargs[@]}" --save "$ck" >/dev/null 2>&1
timeout 60 "${mpi[@]}" 1 "$bin" "${sargs[@]}" --restore "$ck" : -np 1 "$bin" "${sargs[@]}" --restore "$cli_tmp/nope.msgpack" \
    >"$cli_tmp/out" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "linnx: --restore $cli_tmp/nope.msgpack: cannot open" "$cli_tmp/out" &&
   grep -q "linnx: distributed: rank 1 failed before the first step" "$cli_tmp/out" &&
   ! grep -q "timed out\|step -1" "$cli_tmp/out" && ! grep -q "^step" "$cli_tmp/out"; then
    ok
    echo "rank 1 without its --restore file: rank 0 stopped before the first step (exit $rc)"
else bad "rank 1 without its --restore file: exit $rc"; fi
# ranks started differently (MPMD launches): one error naming what differs, no step printed
mism() { # $1: what must be named; then rank 0's extra words, ':', rank 1's
    local want=$1 a=() b=()
    shift
    while [ $# -gt 0 ] && [ "$1" != : ]; do a+=("$1"); shift; done
    shift
    b=("$@")
    timeout 60 "${mpi[@]}" 1 "$bin" "${base[@]}" "${a[@]}" : -np 1 "$bin" "${base[@]}" "${b[@]}" >"$cli_tmp/out" 2>&1
    rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && ! grep -q "^step" "$cli_tmp/out" &&
       grep -q "linnx: distributed: rank 1 was not started like rank 0: .*$want" "$cli_tmp/out" &&
       grep -q "linnx: distributed: the ranks were not started alike: .*$want.* from rank 0's on 1 of 2 ranks" "$cli_tmp/out"; then
        ok
        echo "mismatched ranks: $(grep -o 'rank 1 was not started like rank 0: [^(]*' "$cli_tmp/out")"
    else bad "mismatched ranks ($want): exit $rc"; fi
}
s7=(--seed 7 "${y0[@]}")
mism "--seed/--key/--x64" "${s7[@]}" --optimizer 'adam(0.1)' : --seed 8 "${y0[@]}" --optimizer 'adam(0.1)'
mism "--optimizer" "${s7[@]}" --optimizer 'adam(0.1)' : "${s7[@]}" --optimizer 'sgd(5.0)'
mism "the restored step (--restore)" "${s7[@]}" --optimizer 'adam(0.1)' --restore "$ck" : "${s7[@]}" --optimizer 'adam(0.1)'
mism "the data (x and y" "${s7[@]}" --optimizer 'adam(0.1)' : --seed 7 --y 1,0,0,1,0.5,0.5,1,1,0,0,-1,3 --y-shape 6,2 \
    --optimizer 'adam(0.1)'

# LINNX_DIST_* settings are read strictly: garbage, inf (a deadline that never comes), nan or a
# bucket size past 2^40 bytes is one error naming the variable (they were ignored, or an
# undefined float -> size_t cast), before MPI starts
for ev in LINNX_DIST_TIMEOUT=abc LINNX_DIST_TIMEOUT=1e999 LINNX_DIST_TIMEOUT=nan LINNX_DIST_TIMEOUT=0 \
          LINNX_DIST_BUCKET_BYTES=1e30 LINNX_DIST_BUCKET_BYTES=12x LINNX_DIST_NAP_US=-1; do
    env "$ev" timeout 60 "${mpi[@]}" 2 -x "${ev%%=*}" "$bin" "${sargs[@]}" >"$cli_tmp/out" 2>&1
    rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "linnx: distributed: ${ev%%=*}='${ev#*=}' is not a number in" "$cli_tmp/out" &&
       ! grep -q "^step" "$cli_tmp/out"; then ok
    else bad "$ev: exit $rc"; fi
done
LINNX_DIST_TIMEOUT=30 LINNX_DIST_BUCKET_BYTES=64 timeout 60 "${mpi[@]}" 2 -x LINNX_DIST_TIMEOUT -x LINNX_DIST_BUCKET_BYTES \
    "$bin" "${sargs[@]}" >"$cli_tmp/out" 2>&1
if [ $? -eq 0 ] && [ "$(grep -c '^step' "$cli_tmp/out")" = 2 ]; then ok; else bad "valid LINNX_DIST_* settings"; fi

# dropout under mpirun: each rank draws its own masks (pmap's fold_in(key, axis_index)). Data whose
# two halves are the same 3 rows: with one mask for all ranks (as before) the 2-rank run's losses
# equal one process's on the 3 rows; with per-rank masks they differ (Linen and NNX). Without
# dropout they are equal (the control; Linen's is the linnx train runs above)
hx=(--x 0.5,-1,2,1.5,0.25,-0.5,-2,1,0.75 --x-shape 3,3 --y 1,0,0,1,0.5,0.5 --y-shape 3,2)
dx=(--x 0.5,-1,2,1.5,0.25,-0.5,-2,1,0.75,0.5,-1,2,1.5,0.25,-0.5,-2,1,0.75 --x-shape 6,3
    --y 1,0,0,1,0.5,0.5,1,0,0,1,0.5,0.5 --y-shape 6,2)
dargs=(--seed 3 --loss squared_error --optimizer 'adam(0.05)' --plain --steps 3)
for spec in 'linen.Sequential(linen.Dense(16), linen.Dropout(0.5, deterministic=False), linen.Dense(2))' \
            'nnx.Sequential(nnx.Linear(3, 16), nnx.Dropout(0.5), nnx.Linear(16, 2))' \
            'nnx.Sequential(nnx.Linear(3, 16), nnx.Linear(16, 2))'; do
    "$bin" train "$spec" "${dargs[@]}" "${hx[@]}" >"$cli_tmp/one" 2>&1
    timeout 60 "${mpi[@]}" 2 "$bin" train "$spec" "${dargs[@]}" "${dx[@]}" >"$cli_tmp/out" 2>&1
    rc=$?
    if [[ $spec == *Dropout* ]]; then
        if [ $rc -eq 0 ] && [ "$(grep -c '^step' "$cli_tmp/out")" = 3 ] && ! cmp -s "$cli_tmp/one" "$cli_tmp/out"; then
            ok; echo "dropout on 2 ranks, per-rank masks: $(head -1 "$cli_tmp/out") (one mask for both: $(head -1 "$cli_tmp/one"))"
        else bad "dropout on 2 ranks ($spec): exit $rc"; diff "$cli_tmp/one" "$cli_tmp/out"; fi
    else
        if [ $rc -eq 0 ] && awk "$awk_finite"'NR == FNR { w[FNR] = $4; next } { d = $4 - w[FNR]; if (d < 0) d = -d
               if (!finite($4) || !(d <= 1e-6 * (w[FNR] < 0 ? -w[FNR] : w[FNR]) + 1e-9)) bad = 1 } END { exit bad }' \
               "$cli_tmp/one" "$cli_tmp/out" && [ "$(grep -c '^step' "$cli_tmp/out")" = 3 ]; then ok
        else bad "no dropout on 2 ranks ($spec): exit $rc"; diff "$cli_tmp/one" "$cli_tmp/out"; fi
    fi
done

# an allocation failing on rank 1 alone anywhere in a run (setup, the backward pass, averaging,
# the optimizer step, the loss): every rank stops through a status check naming rank 1 ("failed
# before the first step" / "at step K"), or, inside a collective it cannot finish, without
# MPI_Finalize so mpirun ends the job at once (it names the rank, the others their step); never the
# 30 s deadline of a collective the others wait in. Six positions spread over the run's
# allocations (a fault-injection build; skipped otherwise)
fargs=("${targs[@]:0:16}" --plain --steps 3)
cat >"$cli_tmp/rank1fault.sh" <<'EOS'
#!/bin/sh
if [ "${OMPI_COMM_WORLD_RANK:-$PMI_RANK}" = 1 ]; then LINNX_FAIL_ALLOC=$RANK1_FAIL; export LINNX_FAIL_ALLOC; fi
exec "$@"
EOS
chmod +x "$cli_tmp/rank1fault.sh"
total=$(LINNX_FAIL_ALLOC=0 LINNX_ALLOC_STATS=1 timeout 60 "${mpi[@]}" 2 "$bin" "${fargs[@]}" 2>&1 >/dev/null |
        sed -n 's/^linnx: \([0-9]*\) allocations.*/\1/p' | sort -n | tail -1)
if [ -n "$total" ] && [ "$total" -gt 0 ]; then # LINNX_ALLOC_STATS counts only in a fault-injection build
    timeout 60 "${mpi[@]}" 2 "$bin" "${fargs[@]}" >"$cli_tmp/clean" 2>&1
    bad_runs=0
    for k in 1 2 3 4 5 6; do
        n=$((total * k / 7))
        RANK1_FAIL=$n LINNX_DIST_TIMEOUT=30 timeout 90 "${mpi[@]}" 2 -x RANK1_FAIL -x LINNX_DIST_TIMEOUT \
            "$cli_tmp/rank1fault.sh" "$bin" "${fargs[@]}" >"$cli_tmp/out" 2>&1
        rc=$?
        if [ $rc -eq 0 ] && cmp -s "$cli_tmp/out" "$cli_tmp/clean"; then continue; fi # the failure was absorbed
        if [ $rc -ne 0 ] && [ $rc -ne 124 ] && ! grep -q "timed out" "$cli_tmp/out" &&
           grep -Eq "distributed: rank 1 failed (before the first step|at step [0-9])|linnx: rank 0: stopped (at step [0-9]|before the first step)" "$cli_tmp/out"; then
            continue
        fi
        bad_runs=$((bad_runs + 1))
        echo "allocation $n of $total failing on rank 1: exit $rc"; grep -v "^--\|^ *$" "$cli_tmp/out" | head -8
    done
    if [ $bad_runs -eq 0 ]; then ok; echo "an allocation failing on rank 1 at 6 points of $total: every rank stopped, naming rank 1"
    else bad "allocation failures on rank 1: $bad_runs of 6 runs"; fi
fi

# the same for `linnx train-lm`: a rank failing in the held-out evaluations, the samples or the
# update after the step's status check stopped nobody and left rank 0 waiting out the deadline
# (rank 1 sat in MPI_Finalize); now every position ends the job within seconds (the 30 s deadline
# is never reached): rank 1 prints its own error ("linnx: ...out of memory") and rank 0 names it
# ("linnx: distributed: rank 1 failed at step K", a failure in the update included: the step's
# second status check), or, for a failure while averaging, where rank 0 waits for rank 1's
# buckets, rank 0 prints "stopped at step K" when mpirun ends the job
lfargs=(train-lm --steps 3 --batch 4 --seq-len 16 --emb 16 --layers 1 --mlp 32 --eval-every 1 --eval-batches 1
        --sample-tokens 4 --svg "$cli_tmp/lmfault.svg")
total=$(LINNX_FAIL_ALLOC=0 LINNX_ALLOC_STATS=1 timeout 60 "${mpi[@]}" 2 "$bin" "${lfargs[@]}" 2>&1 >/dev/null |
        sed -n 's/^linnx: \([0-9]*\) allocations.*/\1/p' | sort -n | tail -1)
if [ -n "$total" ] && [ "$total" -gt 0 ]; then
    timeout 60 "${mpi[@]}" 2 "$bin" "${lfargs[@]}" >"$cli_tmp/clean" 2>&1
    bad_runs=0 named=0 ended=0
    for k in 1 2 3 4 5 6 7 8 9 10 11 12 13; do
        n=$((total * k / 14))
        RANK1_FAIL=$n LINNX_DIST_TIMEOUT=30 timeout 90 "${mpi[@]}" 2 -x RANK1_FAIL -x LINNX_DIST_TIMEOUT \
            "$cli_tmp/rank1fault.sh" "$bin" "${lfargs[@]}" >"$cli_tmp/out" 2>&1
        rc=$?
        if [ $rc -eq 0 ] && [ "$(grep "held-out loss" "$cli_tmp/out")" = "$(grep "held-out loss" "$cli_tmp/clean")" ]; then
            continue # the failure was absorbed
        fi
        if [ $rc -ne 0 ] && [ $rc -ne 124 ] && ! grep -q "timed out" "$cli_tmp/out" &&
           grep -v "^linnx: distributed: rank 1 failed\|^linnx: rank [0-9]: stopped" "$cli_tmp/out" | grep -q "^linnx: .*out of memory"; then
            if grep -Eq "^linnx: distributed: rank 1 failed (before the first step|at step [0-9]+)$" "$cli_tmp/out"; then
                named=$((named + 1))
                continue
            fi
            if grep -Eq "^linnx: rank 0: stopped (at step [0-9]+|before the first step) " "$cli_tmp/out"; then
                ended=$((ended + 1))
                continue
            fi
        fi
        bad_runs=$((bad_runs + 1))
        echo "train-lm: allocation $n of $total failing on rank 1: exit $rc"; grep -v "^--\|^ *$" "$cli_tmp/out" | grep -v "^data\|^byte\|^held\|^model\|^train\|^step\|^init\|^greedy\|^sample" | head -8
    done
    if [ $bad_runs -eq 0 ]; then ok; echo "train-lm: an allocation failing on rank 1 at 13 points of $total: every rank stopped ($named naming rank 1, $ended ended by mpirun)"
    else bad "train-lm: allocation failures on rank 1: $bad_runs of 13 runs"; fi
fi

# the update's failure in the library, deterministically (the sweep above lands where it may):
# rank 1's last allocation of a step fails (the parameters' replacement, after the averaging);
# both ranks learn it in the step's second status check (rank 0: "distributed: rank 1 failed at
# step 7"), keep their parameters, and step on together (tests/test_llama_train.c)
ltrain="$(dirname "$bin")/test_llama_train"
if [ -x "$ltrain" ]; then
    LINNX_DIST_TIMEOUT=30 timeout 120 "${mpi[@]}" 2 "$ltrain" --dist >"$cli_tmp/out" 2>&1
    rc=$?
    if [ $rc -eq 0 ] && [ "$(grep -c "^[0-9]* passed, 0 failed$" "$cli_tmp/out")" = 2 ]; then
        ok; echo "llama_trainer_step, the update failing on rank 1 of 2: both ranks stopped at the step and went on together"
    else bad "llama_trainer_step, the update failing on rank 1 of 2: exit $rc"; tail -8 "$cli_tmp/out"; fi
fi

# the showcase's `linnx train-lm` (tiny sizes) unchanged under mpirun -np 2: rank 0 alone prints
# (one header) and writes the loss curve and the checkpoint; the held-out losses are the one-process
# run's (printed to 4 decimals; float32 order differs)
largs=(train-lm --steps 6 --batch 4 --seq-len 16 --emb 16 --layers 1 --mlp 32 --eval-every 3 --eval-batches 1 --sample-tokens 0)
"$bin" "${largs[@]}" --checkpoint-dir "$cli_tmp/lm1" --svg "$cli_tmp/lm1.svg" >"$cli_tmp/one" 2>&1
timeout 120 "${mpi[@]}" 2 "$bin" "${largs[@]}" --checkpoint-dir "$cli_tmp/lm2" --svg "$cli_tmp/lm2.svg" >"$cli_tmp/out" 2>&1
rc=$?
held() { grep -o "held-out loss:\? [0-9.]*" "$1" | awk '{print $NF}'; }
if [ $rc -eq 0 ] && [ "$(grep -c '^model: ' "$cli_tmp/out")" = 1 ] && [ -s "$cli_tmp/lm2/checkpoint_6.msgpack" ] &&
   [ -s "$cli_tmp/lm2.svg" ] && [ "$(held "$cli_tmp/one" | wc -l)" -ge 3 ] &&
   paste <(held "$cli_tmp/one") <(held "$cli_tmp/out") | awk "$awk_finite"'{ d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || !finite($1) || !finite($2) || !(d <= 2e-4)) bad = 1 } END { exit bad || NR == 0 }'; then
    ok
    echo "linnx train-lm under mpirun -np 2: held-out losses $(held "$cli_tmp/out" | tr '\n' ' ')(one process: $(held "$cli_tmp/one" | tr '\n' ' '))"
else bad "linnx train-lm under mpirun -np 2: exit $rc"; diff "$cli_tmp/one" "$cli_tmp/out"; fi
# a check rank 0 alone makes (train-lm's --svg: rank 0 writes it) fails there: rank 1 passed its own
# setup and stops at the start-of-run check naming rank 0, before the first step (not killed by
# mpirun after rank 0's exit, nor timed out in the first step's collectives); nothing trained
timeout 60 "${mpi[@]}" 2 "$bin" "${largs[@]}" --svg /nonexistent/dir/x.svg >"$cli_tmp/out" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] &&
   grep -q "^linnx: --svg /nonexistent/dir/x.svg: cannot write: No such file or directory$" "$cli_tmp/out" &&
   grep -q "^linnx: distributed: rank 0 failed before the first step$" "$cli_tmp/out" &&
   ! grep -q "timed out\|step -1\|mpirun ended\|^model: \|^data: " "$cli_tmp/out"; then
    ok
    echo "linnx train-lm, --svg unwritable on rank 0: rank 1 stopped before the first step (exit $rc)"
else bad "linnx train-lm, --svg unwritable on rank 0: exit $rc"; fi
# train-lm's ranks say where they were when ended by SIGTERM, as train's do (the one handler of
# cli_dist_start). Not another killed-rank launch (mpirun waits twice the 5 s sigkill timeout
# after one): rank 1 gets the SIGTERM mpirun would send, from here, once training is under way,
# and must print its line and exit; mpirun then ends rank 0 (its line is not asserted: at the
# default 1 s timeout a loaded machine may SIGKILL it first) and exits non-zero
"${mpi[@]}" 2 "$bin" "${largs[@]:0:1}" --steps 100000 "${largs[@]:3}" --svg "$cli_tmp/lmterm.svg" >"$cli_tmp/out" 2>&1 &
mp=$!
for _ in $(seq 100); do # until rank 0 has printed its first step (at most ~20 s)
    grep -q '^step 1/' "$cli_tmp/out" && break
    sleep 0.2
done
victim=$(rank_pid 1 $mp)
[ -n "$victim" ] && kill -TERM "$victim"
guard_launch 30 $mp
wait $mp
rc=$?
kill $guard 2>/dev/null
if [ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -ne 137 ] &&
   grep -Eq "^linnx: rank 1: stopped at step [0-9]+ \(mpirun ended the job: another rank failed or died\)$" "$cli_tmp/out" &&
   [ ! -e "$cli_tmp/lmterm.svg" ]; then
    ok
    echo "linnx train-lm on 2 ranks, SIGTERM to rank 1: exit $rc; $(grep -Eo 'rank [01]: stopped at step [0-9]+' "$cli_tmp/out" | tr '\n' ';')"
else bad "linnx train-lm, SIGTERM to rank 1 (pid ${victim:-none}): exit $rc"; tail -8 "$cli_tmp/out"; fi

# train-lm's ranks compare what they start too (mism above): before, another --seed on rank 1 trained
# a mixture silently (exit 0), another --steps left rank 1 waiting out the deadline at the end
base=(train-lm --batch 4 --seq-len 16 --emb 16 --layers 1 --mlp 32 --eval-batches 1 --sample-tokens 0
      --svg "$cli_tmp/lmmism.svg")
mism "--seed, the training state it starts from" --steps 2 --seed 0 : --steps 2 --seed 1
LINNX_DIST_TIMEOUT=20 mism "--steps" --steps 2 : --steps 3
mism "--eval-every/--eval-batches" --steps 2 --eval-every 1 : --steps 2 --eval-every 2

timeout 60 "${mpi[@]}" 4 "$bin" "${targs[@]}" >"$cli_tmp/out" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "a global batch of 6 rows does not divide evenly over 4 ranks of the 'data' axis" "$cli_tmp/out"; then ok
else bad "linnx train, 6 rows on 4 ranks: exit $rc"; fi

cli_finish
