#!/usr/bin/env bash
# `linnx random categorical` against the reference model (tests/fixtures/cli_lm.txt, written by
# scripts/gen_llama_fixtures.py), `linnx sample` and `linnx train-lm` (small models, a small data
# directory), and their errors. Usage: cli_lm.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_lm.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"

check_fixture "$here/fixtures/cli_lm.txt"

expect_usage_error "--logits is required" random categorical --seed 0
expect_usage_error "not a comma-separated list" random categorical --seed 0 --logits 1,x,3
expect_usage_error "not a comma-separated list" random categorical --seed 0 --logits 1,,3
expect_usage_error "exactly one of --seed" random categorical --logits 1,2
expect_usage_error "top_k must be in 0..3" random categorical --seed 0 --logits 1,2,3 --top-k 4
expect_usage_error "temperature must be a finite number" random categorical --seed 0 --logits 1,2 --temperature -1

# ---- sample
small="--emb 16 --layers 1 --heads 2 --kv-heads 1 --head-dim 8 --mlp 32"
out=$("$bin" sample --prompt "Hi there" --tokens 6 --temperature 0 $small 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ $out == "Hi there"* ]] && [ ${#out} -gt 8 ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: sample: exit $rc, output '$out'"; fi
a=$("$bin" sample --prompt "ab" --tokens 8 --temperature 1 --top-k 5 --seed 3 $small --style nnx)
b=$("$bin" sample --prompt "ab" --tokens 8 --temperature 1 --top-k 5 --seed 3 $small --style nnx)
c=$("$bin" sample --prompt "ab" --tokens 8 --temperature 1 --top-k 5 --seed 4 $small --style nnx)
if [ "$a" == "$b" ] && [ "$a" != "$c" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: sample: seeds: '$a' '$b' '$c'"; fi
expect_usage_error "loading the checkpoint 'ckpt' is not wired yet" sample ckpt --prompt hi
expect_usage_error "text: byte 0 is 104, outside the vocabulary [0, 100)" sample --vocab 100 --prompt hi
expect_usage_error "a prompt of 2 tokens and 300 new ones need 301 positions; max_target_length is 256" sample --prompt hi --tokens 300
expect_usage_error "--style: 'jax' is not linen or nnx" sample --style jax
expect_usage_error "num_query_heads (3) must be a multiple of num_kv_heads (2)" sample --heads 3
expect_usage_error "--tokens: 0 is not a positive count" sample --tokens 0

# ---- train-lm on a small data directory
d=$cli_tmp/data
mkdir -p "$d"
for i in 1 2 3; do printf 'The quick brown fox %d jumps over the lazy dog. %.0s' $i {1..20} >"$d/text$i"; done
: >"$cli_tmp/empty"
tiny="$small --seq-len 16 --batch 2 --eval-batches 2 --sample-tokens 4"
out=$("$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --svg "$cli_tmp/loss.svg" 2>&1); rc=$?
for want in "data: 3 files" "byte-unigram entropy of the held-out text:" "initial held-out loss:" \
            "sample before training (greedy):" "loss curve: $cli_tmp/loss.svg"; do
    if [ $rc -eq 0 ] && [[ $out == *"$want"* ]]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: train-lm: exit $rc, no '$want' in: $out"; fi
done
if grep -q "<svg" "$cli_tmp/loss.svg" && grep -q "held-out loss" "$cli_tmp/loss.svg"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: train-lm: no chart in $cli_tmp/loss.svg"; fi
# the loop (dry run) with plain progress lines when piped, evaluations and the chart's two series
out=$(LINNX_PROGRESS=plain "$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 4 --eval-every 2 --dry-run \
      --svg "$cli_tmp/loss2.svg" 2>&1); rc=$?
for want in "dry run: forward losses only" "step 1/4 loss " "step 4/4 loss " "step 2: held-out loss" \
            "step 4: held-out loss" "sample after training (greedy):"; do
    if [ $rc -eq 0 ] && [[ $out == *"$want"* ]]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: train-lm --dry-run: exit $rc, no '$want' in: $out"; fi
done
if [ "$(grep -c "<polyline" "$cli_tmp/loss2.svg")" -eq 2 ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: train-lm --dry-run: the chart lacks two series"; fi
# a terminal gets one bar redrawn in place: carriage return, clear, [####....] step/total, loss, tok/s, ETA
out=$(LINNX_PROGRESS=tty "$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 3 --dry-run \
      --svg "$cli_tmp/loss3.svg" 2>&1)
if [[ $out == *$'\r\033[K['*'    3/3  loss '*' tok/s  ETA 0s'* ]] && [[ $out != *"step 1/3 loss"* ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: train-lm tty progress: $(printf '%q' "$out")"; fi
expect_usage_error "$cli_tmp/empty: the file is empty" train-lm --data "$cli_tmp/empty" --heldout "$cli_tmp/empty"
# an unreadable path is an I/O failure: exit 1, the path and the reason on stderr
err=$("$bin" train-lm --data "$cli_tmp/missing" --heldout "$d/text3" 2>&1 >/dev/null); rc=$?
if [ $rc -eq 1 ] && [ "$err" == "linnx: $cli_tmp/missing: cannot read: No such file or directory" ]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: train-lm missing data: exit $rc, '$err'"; fi
expect_usage_error "the held-out file is not among the data files" train-lm --data "$d/text1" --heldout "$d/text3"
expect_usage_error "--heldout FILE is required with --data" train-lm --data "$d"
expect_usage_error "the parameter update (gradients + adamw) is not wired in yet" train-lm --steps 5
expect_usage_error "--resume needs checkpoints" train-lm --resume
expect_usage_error "--seq-len 512 needs at least 513 bytes" train-lm --data "$d" --heldout "$d/text3" --seq-len 512 $small
expect_usage_error "training data: byte 0 is 84, outside the vocabulary [0, 50)" train-lm --data "$d" --heldout "$d/text3" --vocab 50 $small

# ---- examples/llama_showcase.c: both tables, equal logits on equal parameters, equal decoding
ex=$(dirname "$bin")/example_llama_showcase
out=$("$ex" 2>&1); rc=$?
lin=$(printf '%s\n' "$out" | sed -n 's/^Linen top, cached decoding (T 0.8, top-k 20): //p')
nnx=$(printf '%s\n' "$out" | sed -n 's/^NNX   top, cached decoding (T 0.8, top-k 20): //p')
if [ $rc -eq 0 ] && [[ $out == *"same logits: yes (max |difference| 0)"* ]] && [ -n "$lin" ] && [ "$lin" == "$nnx" ] &&
   [ "$(printf '%s\n' "$out" | grep -c "^Total  .*106816$")" -eq 2 ] &&
   [[ $out == *"decoder/layers_0/self_attention/query/kernel           LogicallyPartitioned  (64, 4, 16)"* ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: example_llama_showcase: exit $rc: $out"; fi
cli_finish
