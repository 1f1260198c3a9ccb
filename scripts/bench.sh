#!/usr/bin/env bash
# `make bench`: run every benchmark program; each prints `<workload> <metric> <value>` lines.
set -euo pipefail
build=${1:-build}
for b in "$build"/bench_*; do
  [ -x "$b" ] || continue
  echo "# $(basename "$b")"
  "$b"
done
