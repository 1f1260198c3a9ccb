#!/usr/bin/env bash
# `make bench`: run every benchmark program; each prints `<workload> <metric> <value>` lines.
set -euo pipefail
build=${1:-build}
# bench_train compares against ../shared/peers/torch_peer.py (the workloads' PyTorch peer)
root=$(cd "$(dirname "$0")/.." && pwd)
export LINNX_TORCH_PEER=${LINNX_TORCH_PEER:-$root/../shared/peers/torch_peer.py}
for b in "$build"/bench_*; do
  [ -x "$b" ] || continue
  echo "# $(basename "$b")"
  "$b"
done
