#!/usr/bin/env bash
# `make demo`: the main job. One model mixing both module styles in both directions
# (examples/bridge_demo.c), then the worked bridge examples and a few of the command-line tools,
# whose numbers equal Flax's for the same seeds.
set -euo pipefail
bin=${1:-build/linnx}
dir=$(dirname "$bin")
"$dir/example_bridge_demo"
echo
run() { echo "\$ linnx $*"; "$bin" "$@"; echo; }
echo "== The worked problems (spec/nnx-inside-linen.md), Flax's numbers =="
echo
run example nnx-inside-linen --seed 0 --x 1,2,3,4 --features 3
run example linen-inside-nnx --seed 0 --x 1,2,3,4 --features 3
echo "== Parameters for a seed, as Flax builds them =="
echo
run params 'linen.Dense(3)' --seed 0 --input-shape 1,2
run params 'nnx.Linear(2, 3)' --seed 0
run params 'nnx.Dropout(0.5)' --seed 0
run key --seed 0
run random normal --seed 0 --shape 2,3
