#!/usr/bin/env bash
# `make demo`'s model runs and shows both bridge directions: the variable layouts Flax gives
# (ToLinen_0 under a Linen parent; ToNNX attributes without the collection level) and outputs of
# the right shape. Usage: cli_demo.sh PATH/TO/linnx (the demo program sits beside it).
set -u
bin=${1:?usage: cli_demo.sh PATH/TO/linnx}
demo=$(dirname "$bin")/example_bridge_demo
. "$(cd "$(dirname "$0")" && pwd)/lib_cli.sh"
out=$("$demo" 2>&1); rc=$?
check() { # $1 = description, $2 = a line the output must contain
    if printf '%s\n' "$out" | grep -qF -- "$2"; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $1: no line containing '$2'"; fi
}
if [ $rc -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: demo exited $rc: $out"; fi
check "Linen parent, Dense child" "params/Dense_0/kernel           Array  (8, 16)   float32     128"
check "NNX layer inside Linen"   "params/ToLinen_0/linear/kernel  Array  (16, 16)  float32     256"
check "Linen total"              "Total                                                        484"
check "Linen output"             "Classifier().apply(variables, x) -> float32[2,4]:"
check "Linen block inside NNX"   "block/Dense_1/kernel  Param  (16, 16)  float32     256"
check "NNX head"                 "head/kernel           Param  (16, 4)   float32      64"
check "NNX output"               "net(x) -> float32[2,4]:"
# scripts/demo.sh (what `make demo` runs) end to end, a few steps of a smaller model: data, baseline,
# training, held-out loss against the unigram entropy, the chart, the checkpoint and its reload
if [ -d /usr/share/common-licenses ]; then
    root=$(cd "$(dirname "$0")/.." && pwd)
    out=$(LINNX_PROGRESS=plain DEMO_DIR="$cli_tmp/demo" DEMO_STEPS=4 DEMO_SAMPLE_TOKENS=16 \
          DEMO_ARGS="--emb 32 --layers 1 --mlp 64 --seq-len 32 --batch 4 --eval-batches 1 --sample-tokens 8" \
          bash "$root/scripts/demo.sh" "$bin" 2>&1); rc=$?
    for want in "byte-unigram entropy of the held-out text:" "initial held-out loss:" "step 4/4 loss " \
                "step 4: held-out loss" "loss curve: $cli_tmp/demo/loss.svg" \
                "checkpoint: $cli_tmp/demo/checkpoint/checkpoint_4.msgpack" "samples identical" \
                "== linnx sample $cli_tmp/demo/checkpoint" "Open $cli_tmp/demo/loss.svg"; do
        if [ $rc -eq 0 ] && [[ $out == *"$want"* ]]; then pass=$((pass + 1)); else
            fail=$((fail + 1)); echo "FAIL: demo.sh: exit $rc, no '$want'"; shown=1; fi
    done
    [ -n "${shown:-}" ] && printf '%s\n' "$out"
    if [ "$(grep -c "<polyline" "$cli_tmp/demo/loss.svg" 2>/dev/null)" == 2 ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: demo.sh: no two-series chart"; fi
fi
cli_finish
