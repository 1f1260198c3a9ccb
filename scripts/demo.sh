#!/usr/bin/env bash
# `make demo`: the main job. Until the bridge lands this shows the random-number and
# initializer subcommands, which reproduce JAX's numbers for a seed.
set -euo pipefail
bin=${1:-build/linnx}
run() { echo "\$ linnx $*"; "$bin" "$@"; echo; }
run key --seed 0
run key --key 0,0 --fold-in 1
run random uniform --seed 0 --shape 3
run random normal --seed 0 --shape 2,3
run init lecun_normal --seed 0 --shape 4,8
