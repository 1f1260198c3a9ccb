#!/usr/bin/env bash
# `make demo`: the main job. Trains the showcase decoder (MaxText's llama2 decoder: a Linen
# Transformer whose decoder layers are NNX modules through to_linen_class) on the texts of
# /usr/share/common-licenses, byte-level, with the last 10% of GPL-3 held out; then samples from
# the saved checkpoint. Writes under BUILD/demo/: loss.svg (train and held-out loss) and
# checkpoint/checkpoint_<step>.msgpack (+ .json). About two minutes on a quiet 2-core machine.
# Usage: demo.sh [PATH/TO/linnx]; DEMO_STEPS, DEMO_DIR, DEMO_ARGS (extra train-lm flags) and
# DEMO_SAMPLE_TOKENS override.
set -euo pipefail
bin=${1:-build/linnx}
out=${DEMO_DIR:-$(dirname "$bin")/demo}
steps=${DEMO_STEPS:-1000}
# linnx itself links no OpenMP runtime (its own pool); this only keeps an OpenMP-built OpenBLAS,
# if one is installed, from spinning on the other thread's core on a busy machine.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[ -d /usr/share/common-licenses ] || { echo "demo: /usr/share/common-licenses is missing (not a Debian system?)" >&2; exit 1; }
rm -rf "$out/checkpoint" "$out/loss.svg" # this demo's own outputs from an earlier run
mkdir -p "$out"
echo "== linnx train-lm: a llama2-style decoder (Linen Transformer over NNX layers via to_linen_class),"
echo "   trained on the bytes of /usr/share/common-licenses for $steps steps"
echo
# shellcheck disable=SC2086
"$bin" train-lm --steps "$steps" --eval-every 100 --checkpoint-dir "$out/checkpoint" --svg "$out/loss.svg" ${DEMO_ARGS:-}
echo
ntok=${DEMO_SAMPLE_TOKENS:-110}
echo "== linnx sample $out/checkpoint --prompt 'You may ' --tokens $ntok --temperature 0.7 --seed 1"
"$bin" sample "$out/checkpoint" --prompt "You may " --tokens "$ntok" --temperature 0.7 --seed 1
echo
echo "Open $out/loss.svg in a browser for the loss curve; the checkpoint is $out/checkpoint/."
