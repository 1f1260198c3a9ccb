#!/usr/bin/env bash
# `make bench`: run every benchmark program; each prints `<workload> <metric> <value>` lines.
# bench_llama runs with the PyTorch peer's thread count (LX_THREADS, default 2); where the peer
# (../shared/peers/torch_peer.py, or $TORCH_PEER) and torch are available, its shared workload is
# shared workloads are also printed as `llama_decode vs_torch <linnx time / torch time>` (per-token
# decode latency) and `llama_train vs_torch <linnx time / torch time>` (seconds per training step
# of batch 16 x 128, i.e. torch tokens/s over linnx tokens/s), both sides measured in this run.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
threads=${LX_THREADS:-2}
# bench_llama and its PyTorch peer (both OpenMP) run with passive waiting: spinning threads take
# the core the other thread needs whenever anything else runs (10x slower on a busy machine).
wait=${OMP_WAIT_POLICY:-passive}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# bench_train compares against ../shared/peers/torch_peer.py (the workloads' PyTorch peer)
export LINNX_TORCH_PEER=${LINNX_TORCH_PEER:-$root/../shared/peers/torch_peer.py}
for b in "$build"/bench_*; do
  [ -x "$b" ] || continue
  echo "# $(basename "$b")"
  if [ "$(basename "$b")" = bench_dist ]; then
    # data parallelism: 2 ranks x 1 thread vs 1 rank x 2 threads, same global batch
    # (both with passive OpenMP waiting and 1 OpenBLAS/OpenMP thread per rank; the machine is shared,
    # so the set-ups alternate 3 times and each keeps its fastest run). mlp_train's 2x1 run shards
    # the optimizer update (ZeRO-1, reduce-scatters overlapped with the backward pass); a third run
    # (mlp_train only, its lines named mlp_train_allreduce) averages the gradients by all-reduce
    # instead and repeats the whole update on each rank: `mlp_train dp2x1_allreduce_vs_1x2`.
    if command -v mpirun >/dev/null 2>&1; then
      mo=(); mpirun --version 2>&1 | grep -q "Open MPI" &&
        mo=(--oversubscribe --allow-run-as-root --bind-to none -x LINNX_THREADS -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x OMP_WAIT_POLICY)
      ma=(); [ ${#mo[@]} -gt 0 ] && ma=(-x LINNX_DIST_ALLREDUCE -x LINNX_BENCH_DIST_MLP_ONLY)
      runs=$(mktemp)
      for _ in 1 2 3; do
        LINNX_THREADS=2 OMP_WAIT_POLICY=$wait "$b" | tee /dev/stderr >>"$runs"
        LINNX_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=$wait mpirun "${mo[@]}" -np 2 "$b" |
          tee /dev/stderr >>"$runs"
        LINNX_DIST_ALLREDUCE=1 LINNX_BENCH_DIST_MLP_ONLY=1 LINNX_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
          OMP_WAIT_POLICY=$wait mpirun "${mo[@]}" "${ma[@]}" -np 2 "$b" | sed 's/^mlp_train /mlp_train_allreduce /' |
          tee /dev/stderr >>"$runs"
      done
      for w in mlp_train llama_train; do
        awk -v w="$w" '$1 == w && $2 == "dist_1x2_step_ms" && (a == "" || $3 < a) { a = $3 }
                       $1 == w && $2 == "dist_2x1_step_ms" && (b == "" || $3 < b) { b = $3 }
                       END { if (a != "" && b != "") printf "%s dp2x1_vs_1x2 %.3f\n", w, a / b }' "$runs"
      done
      awk '$1 == "mlp_train" && $2 == "dist_1x2_step_ms" && (a == "" || $3 < a) { a = $3 }
           $1 == "mlp_train_allreduce" && $2 == "dist_2x1_step_ms" && (b == "" || $3 < b) { b = $3 }
           END { if (a != "" && b != "") printf "mlp_train dp2x1_allreduce_vs_1x2 %.3f\n", a / b }' "$runs"
      rm -f "$runs"
    else
      echo "# bench_dist: mpirun not found, skipped"
    fi
  elif [ "$(basename "$b")" = bench_llama ]; then
    LINNX_THREADS=$threads OMP_WAIT_POLICY=$wait "$b" | tee -a "$out"
  else
    "$b"
  fi
done
peer=${TORCH_PEER:-$root/../shared/peers/torch_peer.py}
py=/usr/bin/python3
[ -x "$py" ] || py=python3
ours=$(awk '$1 == "llama_decode" && $2 == "s_per_token" {print $3}' "$out")
ours_train=$(awk '$1 == "llama_train" && $2 == "s_per_step" {print $3}' "$out")
if [ -n "$ours" ] && [ -f "$peer" ] && "$py" -c 'import torch' 2>/dev/null; then
  # per-token latency of greedy decoding at batch 1 with a KV cache after a 64-token prompt
  theirs=$(LX_THREADS=$threads OMP_WAIT_POLICY=$wait "$py" "$peer" llama_decode | awk '{print $2}')
  echo "# torch llama_decode $theirs s/token ($threads threads)"
  awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b > 0) printf "llama_decode vs_torch %.3f\n", a / b }'
  if [ -n "$ours_train" ]; then
    # one adamw training step (clip_by_global_norm 1.0) at batch 16 x 128
    theirs=$(LX_THREADS=$threads OMP_WAIT_POLICY=$wait "$py" "$peer" llama_train | awk '{print $2}')
    echo "# torch llama_train $theirs s/step ($threads threads): $(awk -v b="$theirs" 'BEGIN { if (b > 0) printf "%.0f", 2048 / b }') tokens/s"
    awk -v a="$ours_train" -v b="$theirs" 'BEGIN { if (b > 0) printf "llama_train vs_torch %.3f\n", a / b }'
  fi
elif [ -n "$ours" ]; then
  echo "# PyTorch peer not available (scripts/install-deps.sh --bench installs python3-torch): no llama_decode / llama_train vs_torch"
fi
