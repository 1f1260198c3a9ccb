#!/usr/bin/env bash
# `make bench`: run every benchmark program; each prints `<workload> <metric> <value>` lines.
# bench_llama runs with the PyTorch peer's thread count (LX_THREADS, default 2); where the peer
# (../shared/peers/torch_peer.py, or $TORCH_PEER) and torch are available, its shared workload is
# also printed as `llama_decode vs_torch <linnx time / torch time>`, both measured in this run.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
threads=${LX_THREADS:-2}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for b in "$build"/bench_*; do
  [ -x "$b" ] || continue
  echo "# $(basename "$b")"
  if [ "$(basename "$b")" = bench_llama ]; then
    LINNX_THREADS=$threads "$b" | tee -a "$out"
  else
    "$b"
  fi
done
peer=${TORCH_PEER:-$root/../shared/peers/torch_peer.py}
py=/usr/bin/python3
[ -x "$py" ] || py=python3
ours=$(awk '$1 == "llama_decode" && $2 == "s_per_token" {print $3}' "$out")
if [ -n "$ours" ] && [ -f "$peer" ] && "$py" -c 'import torch' 2>/dev/null; then
  # per-token latency of greedy decoding at batch 1 with a KV cache after a 64-token prompt
  theirs=$(LX_THREADS=$threads "$py" "$peer" llama_decode | awk '{print $2}')
  echo "# torch llama_decode $theirs s/token ($threads threads)"
  awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b > 0) printf "llama_decode vs_torch %.3f\n", a / b }'
elif [ -n "$ours" ]; then
  echo "# PyTorch peer not available (scripts/install-deps.sh --bench installs python3-torch): no llama_decode vs_torch"
fi
