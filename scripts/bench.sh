#!/usr/bin/env bash
# `make bench`: run every benchmark program; each prints `<workload> <metric> <value>` lines.
# Where the PyTorch peer (../shared/peers/torch_peer.py, or $TORCH_PEER) and torch are available,
# the workloads it shares are also printed as `<workload> vs_torch <linnx time / torch time>`,
# both measured in this run with the same thread count (LX_THREADS, default 2).
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
export LX_THREADS=${LX_THREADS:-2}
export LINNX_THREADS=${LINNX_THREADS:-$LX_THREADS}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for b in "$build"/bench_*; do
  [ -x "$b" ] || continue
  echo "# $(basename "$b")"
  "$b" | tee -a "$out"
done
peer=${TORCH_PEER:-$root/../shared/peers/torch_peer.py}
py=/usr/bin/python3
[ -x "$py" ] || py=python3
if [ -f "$peer" ] && "$py" -c 'import torch' 2>/dev/null; then
  # llama_decode: per-token latency of greedy decoding at batch 1 with a KV cache (bench/llama.c)
  ours=$(awk '$1 == "llama_decode" && $2 == "s_per_token" {print $3}' "$out")
  if [ -n "$ours" ]; then
    theirs=$("$py" "$peer" llama_decode | awk '{print $2}')
    echo "# torch llama_decode $theirs s/token"
    awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b > 0) printf "llama_decode vs_torch %.3f\n", a / b }'
  fi
else
  echo "# PyTorch peer not available (install python3-torch: scripts/install-deps.sh --bench): no vs_torch lines"
fi
