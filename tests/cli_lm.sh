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
expect_usage_error "text: byte 0 is 104, outside the vocabulary [0, 100)" sample --vocab 100 --prompt hi
# the decoding length is --seq-len (default 256), checked before anything is built, naming the flags
expect_usage_error "sample: a prompt of 2 bytes and --tokens 300 need --seq-len 301 or more (it is 256)" sample --prompt hi --tokens 300
out=$("$bin" sample --prompt hi --tokens 300 --seq-len 301 --temperature 0 $small 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ $out == hi?* ]]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: sample --tokens 300 --seq-len 301: exit $rc, '$out'"; fi
expect_usage_error "lm_encode: empty text" sample --prompt ''
# `linnx random`'s own help and errors name categorical
out=$("$bin" random --help)
if [[ $out == *"linnx random categorical (--seed S"* ]]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: random --help lacks categorical: $out"; fi
expect_usage_error "|permutation|categorical)" random gumbel --seed 0 --shape 4
expect_usage_error "name the sampler first" random --seed 0 categorical
expect_usage_error "--style: 'jax' is not linen or nnx" sample --style jax
expect_usage_error "num_query_heads (3) must be a multiple of num_kv_heads (2)" sample --heads 3
expect_usage_error "--tokens: 0 is not a positive count" sample --tokens 0

# ---- train-lm on a small data directory
d=$cli_tmp/data
mkdir -p "$d"
for i in 1 2 3; do printf 'The quick brown fox %d jumps over the lazy dog. %.0s' $i {1..20} >"$d/text$i"; done
: >"$cli_tmp/empty"
tiny="$small --seq-len 16 --batch 2 --eval-batches 2 --sample-tokens 4"
# --svg a symbolic link into a folder: the chart is written where it points and the link stays
mkdir -p "$cli_tmp/charts" && ln -s charts/loss.svg "$cli_tmp/loss.svg"
out=$("$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --svg "$cli_tmp/loss.svg" 2>&1); rc=$?
if [ -L "$cli_tmp/loss.svg" ] && [ -f "$cli_tmp/charts/loss.svg" ] && [ "$(ls -A "$cli_tmp/charts")" == loss.svg ]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: train-lm --svg through a link: $(ls -lA "$cli_tmp" "$cli_tmp/charts")"; fi
for want in "data: 3 files" "byte-unigram entropy of the held-out text:" "initial held-out loss:" \
            "sample before training (greedy):" "loss curve: $cli_tmp/loss.svg"; do
    if [ $rc -eq 0 ] && [[ $out == *"$want"* ]]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: train-lm: exit $rc, no '$want' in: $out"; fi
done
if grep -q "<svg" "$cli_tmp/loss.svg" && grep -q "held-out loss" "$cli_tmp/loss.svg"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: train-lm: no chart in $cli_tmp/loss.svg"; fi
# the chart's title names the run's data
if grep -q "bytes of $d<" "$cli_tmp/loss.svg"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: train-lm: the chart's title: $(grep -o 'bytes of[^<]*' "$cli_tmp/loss.svg")"; fi
# --eval-batches 2 x --batch 2 covers the 3 held-out windows (53 bytes, 17 a window): the loss is
# compared with the entropy of the held-out text
entall=$(printf '%s\n' "$out" | sed -n 's/^byte-unigram entropy of the held-out text: \([0-9.]*\) nats.*/\1/p')
if [ -n "$entall" ] && [[ $out != *"windows"* ]] && [[ $out == *"held-out loss: "*"byte-unigram entropy $entall nats"* ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: train-lm: whole held-out text: $out"; fi
# the loop: plain progress lines when piped, evaluations, the chart's two series, the checkpoint
# and its reload
out=$(LINNX_PROGRESS=plain "$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 6 --eval-every 2 --lr 1e-2 \
      --checkpoint-dir "$cli_tmp/ckA" 2>&1); rc=$?
for want in "step 1/6 loss " "step 6/6 loss " "step 2: held-out loss" "step 6: held-out loss" \
            "sample after training (greedy):" "loss curve: $cli_tmp/ckA/loss.svg" \
            "checkpoint: $cli_tmp/ckA/checkpoint_6.msgpack" \
            "reloaded $cli_tmp/ckA/checkpoint_6.msgpack into a fresh model: samples identical"; do
    if [ $rc -eq 0 ] && [[ $out == *"$want"* ]]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: train-lm: exit $rc, no '$want' in: $out"; fi
done
if [ "$(grep -c "<polyline" "$cli_tmp/ckA/loss.svg")" -eq 2 ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: train-lm: the chart lacks two series"; fi
# the training loss falls on this repetitive text (first vs last step)
l1=$(printf '%s\n' "$out" | sed -n 's/^step 1\/6 loss \([0-9.]*\).*/\1/p')
l6=$(printf '%s\n' "$out" | sed -n 's/^step 6\/6 loss \([0-9.]*\).*/\1/p')
if awk -v a="$l1" -v b="$l6" 'BEGIN { exit !(a > 5 && b < a - 0.5) }'; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: train-lm: loss $l1 -> $l6 does not fall"; fi
# `linnx sample CHECKPOINT` (file or directory) continues the prompt as the run's greedy sample did
greedy=$(printf '%s\n' "$out" | sed -n '/^sample after training (greedy):/{n;s/^  //;p;}')
s1=$("$bin" sample "$cli_tmp/ckA" --prompt "This License " --tokens 4 --temperature 0 2>&1)
s2=$("$bin" sample "$cli_tmp/ckA/checkpoint_6.msgpack" --prompt "This License " --tokens 4 --temperature 0 --style nnx 2>&1)
if [ -n "$greedy" ] && [ "$s1" == "$greedy" ] && [ "$s2" == "$greedy" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: sample CHECKPOINT: '$s1' / '$s2', the run's greedy sample '$greedy'"; fi
expect_usage_error "emb_dim is 16 in the checkpoint, 32 in this model" sample "$cli_tmp/ckA" --emb 32
# trained on 16 positions, sampled over 40 (RoPE has no learned positions); the first 4 bytes agree
s3=$("$bin" sample "$cli_tmp/ckA" --prompt "This License " --tokens 20 --temperature 0 --seq-len 40 2>&1); rc=$?
if [ $rc -eq 0 ] && [ -n "$greedy" ] && [[ $s3 == "$greedy"* ]] && [ "$s3" != "$greedy" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: sample --seq-len 40: exit $rc, '$s3'"; fi
# a checkpoint path that does not exist is bad input (exit 2)
expect_usage_error "$cli_tmp/nothing: cannot read: No such file or directory" sample "$cli_tmp/nothing"
# trained on 16 positions, sampled with the defaults (64 tokens after 'The ', --seq-len 256)
s4=$("$bin" sample "$cli_tmp/ckA" 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ $s4 == "The "* ]]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: sample CHECKPOINT with the defaults: exit $rc, '$s4'"; fi
# the layout is MaxText's Linen train state: mu/nu under the params collection
rows=$("$bin" inspect "$cli_tmp/ckA/checkpoint_6.msgpack" 2>&1)
if [[ $rows == *"opt_state/1/0/mu/params/decoder/decoder_norm/scale"* ]] &&
   [[ $rows == *"opt_state/1/0/nu/params/token_embedder/embedding"* ]] && [[ $rows != *"opt_state/1/0/mu/decoder"* ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: train-lm checkpoint layout: $rows"; fi
# linnx convert's maxtext-linen is that layout: through maxtext-nnx and back the same paths, and
# both converted files sample as the checkpoint does
"$bin" convert "$cli_tmp/ckA/checkpoint_6.msgpack" "$cli_tmp/cv_nnx.msgpack" --layout maxtext-nnx >/dev/null &&
    "$bin" convert "$cli_tmp/cv_nnx.msgpack" "$cli_tmp/cv_back.msgpack" --layout maxtext-linen >/dev/null
paths() { "$bin" inspect "$1" | tail -n +3 | awk '{print $1}' | sort; }
s5=$("$bin" sample "$cli_tmp/cv_nnx.msgpack" --prompt "This License " --tokens 4 --temperature 0 2>&1)
s6=$("$bin" sample "$cli_tmp/cv_back.msgpack" --prompt "This License " --tokens 4 --temperature 0 2>&1)
if [ "$(paths "$cli_tmp/ckA/checkpoint_6.msgpack")" == "$(paths "$cli_tmp/cv_back.msgpack")" ] &&
   [ -n "$greedy" ] && [ "$s5" == "$greedy" ] && [ "$s6" == "$greedy" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: convert maxtext-nnx and back: '$s5' '$s6' (want '$greedy')";
    diff <(paths "$cli_tmp/ckA/checkpoint_6.msgpack") <(paths "$cli_tmp/cv_back.msgpack"); fi
# linen-train (Flax's TrainState) has no field for train-lm's config / run / history: converting
# there drops them with one warning each, not silently
w=$("$bin" convert "$cli_tmp/ckA/checkpoint_6.msgpack" "$cli_tmp/cv_lt.msgpack" --layout linen-train 2>&1 >/dev/null); rc=$?
if [ $rc -eq 0 ] && [ "$(grep -c "linnx: warning: layout: linen-train has no place for the top-level key '\(config\|run\|history\)': dropped" <<<"$w")" = 3 ]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: convert to linen-train: exit $rc, '$w'"; fi
# --scan-layers (MaxText's scan_layers): the scanned decoder trains, its checkpoint reloads into a
# fresh scanned model, and `linnx sample` decodes it with the layers unstacked (same greedy text)
scan_flags="--emb 16 --layers 2 --heads 2 --kv-heads 1 --head-dim 8 --mlp 32 --seq-len 16 --batch 2 --eval-batches 2 --sample-tokens 4"
out_s=$(LINNX_PROGRESS=plain "$bin" train-lm --data "$d" --heldout "$d/text3" $scan_flags --scan-layers --steps 6 --eval-every 3 \
      --lr 1e-2 --checkpoint-dir "$cli_tmp/ckS" 2>&1); rc=$?
greedy_s=$(printf '%s\n' "$out_s" | sed -n '/^sample after training (greedy):/{n;s/^  //;p;}')
s1=$("$bin" sample "$cli_tmp/ckS" --prompt "This License " --tokens 4 --temperature 0 2>&1)
s2=$("$bin" sample "$cli_tmp/ckS" --prompt "This License " --tokens 4 --temperature 0 --scan-layers --style nnx 2>&1)
if [ $rc -eq 0 ] && [[ $out_s == *"reloaded $cli_tmp/ckS/checkpoint_6.msgpack into a fresh model: samples identical"* ]] &&
   [ -n "$greedy_s" ] && [ "$s1" == "$greedy_s" ] && [ "$s2" == "$greedy_s" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: train-lm --scan-layers: exit $rc, sample '$s1' / '$s2', greedy '$greedy_s': $out_s"; fi

sum=$(cat "$cli_tmp/ckA"/* | cksum)
expect_usage_error "already holds checkpoints (latest step 6); pass --resume" \
    train-lm --data "$d" --heldout "$d/text3" $tiny --steps 6 --checkpoint-dir "$cli_tmp/ckA"
expect_usage_error "checkpoint_6.msgpack: llama checkpoint: a model of another size: emb_dim is 16 in the checkpoint, 32 in this model" \
    train-lm --data "$d" --heldout "$d/text3" --emb 32 --layers 1 --heads 2 --kv-heads 1 --head-dim 8 --mlp 32 --seq-len 16 --batch 2 --steps 8 --resume --checkpoint-dir "$cli_tmp/ckA"
expect_usage_error "--resume: the run in $cli_tmp/ckA was started with --steps 6 (its schedule depends on it), not 9" \
    train-lm --data "$d" --heldout "$d/text3" $tiny --steps 9 --resume --checkpoint-dir "$cli_tmp/ckA"
expect_usage_error "--resume: the run in $cli_tmp/ckA was started with --lr 0.01 --warmup-frac 0.1, not 0.02 and 0.1" \
    train-lm --data "$d" --heldout "$d/text3" $tiny --steps 6 --lr 0.02 --resume --checkpoint-dir "$cli_tmp/ckA"
if [ "$(cat "$cli_tmp/ckA"/* | cksum)" == "$sum" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: a failed train-lm changed $cli_tmp/ckA"; fi
# --resume continues exactly: 3 steps, stop, resume to 6 gives the uninterrupted run's losses
LINNX_PROGRESS=plain "$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 6 --eval-every 2 --lr 1e-2 \
    --checkpoint-dir "$cli_tmp/ckB" --stop-after 3 >"$cli_tmp/b1" 2>&1
# the data stream depends on --batch and --seed: a resume must repeat them (nothing changes)
sumB=$(cat "$cli_tmp/ckB"/* | cksum)
expect_usage_error "--resume: the run in $cli_tmp/ckB was started with --batch 2 --seed 0 (its data stream depends on them), not 4 and 0" \
    train-lm --data "$d" --heldout "$d/text3" $small --seq-len 16 --batch 4 --eval-batches 2 --sample-tokens 4 --steps 6 --eval-every 2 --lr 1e-2 --checkpoint-dir "$cli_tmp/ckB" --resume
expect_usage_error "--resume: the run in $cli_tmp/ckB was started with --batch 2 --seed 0 (its data stream depends on them), not 2 and 5" \
    train-lm --data "$d" --heldout "$d/text3" $tiny --seed 5 --steps 6 --eval-every 2 --lr 1e-2 --checkpoint-dir "$cli_tmp/ckB" --resume
if [ "$(cat "$cli_tmp/ckB"/* | cksum)" == "$sumB" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: a refused --resume changed $cli_tmp/ckB"; fi
res=$(LINNX_PROGRESS=plain "$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 6 --eval-every 2 --lr 1e-2 \
      --checkpoint-dir "$cli_tmp/ckB" --resume 2>&1); rc=$?
want=$(printf '%s\n' "$out" | grep -E "^step [456](/6 loss|: held-out)" | sed 's/ tok\/s.*//')
got=$(printf '%s\n' "$res" | grep -E "^step [456](/6 loss|: held-out)" | sed 's/ tok\/s.*//')
if [ $rc -eq 0 ] && grep -q "stopped after step 3 of 6" "$cli_tmp/b1" && [[ $res == *"resumed from $cli_tmp/ckB/checkpoint_3.msgpack at step 3"* ]] &&
   [ "$(printf '%s\n' "$want" | wc -l)" -eq 5 ] && [ "$got" == "$want" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: --resume: exit $rc; uninterrupted:"; echo "$want"; echo "resumed:"; echo "$got"; fi
# a resume may evaluate at another interval: the chart keeps the earlier evaluations
LINNX_PROGRESS=plain "$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 6 --eval-every 1 \
    --checkpoint-dir "$cli_tmp/ckD" --stop-after 4 >/dev/null 2>&1
res=$(LINNX_PROGRESS=plain "$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 6 --eval-every 5 \
      --checkpoint-dir "$cli_tmp/ckD" --resume 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ $res == *"step 5: held-out loss"* ]] && [[ $res == *"step 6: held-out loss"* ]] &&
   [[ $res == *"checkpoint: $cli_tmp/ckD/checkpoint_6.msgpack"* ]]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: --resume --eval-every 5: exit $rc: $res"; fi
# the resumed run's chart holds the whole history (6 training points)
if grep -q "held-out loss" "$cli_tmp/ckB/loss.svg"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: --resume: no chart"; fi
# a terminal gets one bar redrawn in place: carriage return, clear, [####....] step/total, loss, steps/s,
# tok/s, ETA (the same display as linnx train's, tools/progress.c)
out=$(LINNX_PROGRESS=tty "$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 3 \
      --svg "$cli_tmp/loss3.svg" 2>&1)
if [[ $out == *$'\r\033[K['*'    3/3  loss '*' steps/s  '*'k tok/s  ETA 0s'* ]] && [[ $out != *"step 1/3 loss"* ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: train-lm tty progress: $(printf '%q' "$out")"; fi
expect_usage_error "$cli_tmp/empty: the file is empty" train-lm --data "$cli_tmp/empty" --heldout "$cli_tmp/empty"
# a data path that does not exist is bad input: exit 2, the path and the reason, nothing printed
# or trained first
lm_fails() { # stdout must stay empty; the expected stderr line, then the arguments
    local want=$1; shift
    local so se rc
    so=$("$bin" "$@" 2>"$cli_tmp/stderr"); rc=$?; se=$(cat "$cli_tmp/stderr")
    if [ $rc -eq 2 ] && [ -z "$so" ] && [ "$se" == "linnx: $want" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: linnx $* -> exit $rc, stderr '$se' (want '$want'), stdout: $so"; fi
}
lm_fails "$cli_tmp/missing: cannot read: No such file or directory" train-lm --data "$cli_tmp/missing" --heldout "$d/text3"
lm_fails "$cli_tmp/nope: cannot read: No such file or directory" train-lm --data "$d/text1,$cli_tmp/nope" --heldout "$d/text1"
lm_fails "$cli_tmp/nope: cannot read: No such file or directory" train-lm --data "$d" --heldout "$cli_tmp/nope"
lm_fails "$d/text1/x: cannot read: Not a directory" train-lm --data "$d/text1/x" --heldout "$d/text1"
# a prompt that cannot be sampled is found with the flags: one line, before any output
lm_fails "--prompt: lm_encode: empty text (a prompt needs at least one byte)" train-lm --data "$d" --heldout "$d/text3" $tiny --prompt ''
# output paths are checked before training: nothing trained, nothing written
lm_fails "--svg $cli_tmp/nodir/x.svg: cannot write: No such file or directory" \
    train-lm --data "$d" --heldout "$d/text3" $tiny --steps 4 --checkpoint-dir "$cli_tmp/ckV" --svg "$cli_tmp/nodir/x.svg"
if [ ! -e "$cli_tmp/ckV" ] || [ -z "$(ls -A "$cli_tmp/ckV")" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: a refused --svg left files: $(ls -A "$cli_tmp/ckV")"; fi
lm_fails "--svg $d: cannot write: Is a directory" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 4 --svg "$d"
# the check (tools/cli.c cli_check_output, linnx train's --save, convert and params use it too)
# leaves nothing behind: a new path is made and removed, an existing file keeps its bytes; here a
# later check (the data) fails, so nothing else would write them
lm_fails "$cli_tmp/missing: cannot read: No such file or directory" \
    train-lm --data "$cli_tmp/missing" --heldout "$d/text3" $tiny --steps 4 --svg "$cli_tmp/fresh.svg"
if [ ! -e "$cli_tmp/fresh.svg" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: the --svg check left $cli_tmp/fresh.svg"; fi
# a link into a folder that does not exist: refused before any work, the link kept, nothing made
ln -s nodir/x.svg "$cli_tmp/dangling.svg"
lm_fails "--svg $cli_tmp/dangling.svg: cannot write: No such file or directory" \
    train-lm --data "$d" --heldout "$d/text3" $tiny --steps 4 --svg "$cli_tmp/dangling.svg"
if [ "$(readlink "$cli_tmp/dangling.svg")" == nodir/x.svg ] && [ ! -e "$cli_tmp/nodir" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: a refused --svg link changed: $(ls -lA "$cli_tmp")"; fi
# --svg a link to /dev/stdout with stdout sent to a log (or the log's own name): refused before any
# work; the chart's rename replaced the log (every line of the run lost, exit 0)
ln -s /dev/stdout "$cli_tmp/out.svg"
for svg in "$cli_tmp/out.svg" "$cli_tmp/log.txt"; do
    "$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 2 --svg "$svg" >"$cli_tmp/log.txt" 2>"$cli_tmp/stderr"; rc=$?
    if [ $rc -eq 2 ] && [ ! -s "$cli_tmp/log.txt" ] && [ -L "$cli_tmp/out.svg" ] &&
       [ "$(cat "$cli_tmp/stderr")" == "linnx: --svg $svg: cannot write: it is this run's standard output" ]; then
        pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: --svg $svg > log.txt: exit $rc, $(cat "$cli_tmp/stderr"), log: $(head -c 80 "$cli_tmp/log.txt")"; fi
done
# a chart that fails after the check (a file-size limit: EFBIG) names --svg as typed, then the target
se=$( (trap '' XFSZ; ulimit -f 0; "$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 2 --svg "$cli_tmp/loss.svg" 2>&1 >/dev/null) ); rc=$?
if [ $rc -eq 1 ] && [[ $se == "linnx: --svg $cli_tmp/loss.svg (-> $cli_tmp/charts/loss.svg): "*"File too large" ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: a failed --svg through a link: exit $rc, '$se'"; fi
printf 'keep me' >"$cli_tmp/kept.svg"
lm_fails "$cli_tmp/missing: cannot read: No such file or directory" \
    train-lm --data "$cli_tmp/missing" --heldout "$d/text3" $tiny --steps 4 --svg "$cli_tmp/kept.svg"
if [ "$(cat "$cli_tmp/kept.svg")" == "keep me" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: the --svg check changed an existing file: '$(cat "$cli_tmp/kept.svg")'"; fi
# an existing file that cannot be written, in a folder that takes files: refused before training
# (a read-only file; root writes those, so there a read-only sysfs file stands in, if present)
ro=
if [ "$(id -u)" != 0 ]; then
    printf 'ro' >"$cli_tmp/ro.svg" && chmod 444 "$cli_tmp/ro.svg" && ro=$cli_tmp/ro.svg
elif [ -f /sys/kernel/mm/transparent_hugepage/hpage_pmd_size ] &&
     ! (: >>/sys/kernel/mm/transparent_hugepage/hpage_pmd_size) 2>/dev/null; then
    ro=/sys/kernel/mm/transparent_hugepage/hpage_pmd_size
fi
if [ -n "$ro" ]; then
    lm_fails "--svg $ro: cannot write: Permission denied" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 4 --svg "$ro"
    lm_fails "--save $ro: cannot write: Permission denied" train 'linen.Dense(1)' --seed 0 --x 1,2 --x-shape 2,1 --y 1,2 \
        --y-shape 2,1 --loss l2_loss --optimizer 'sgd(0.1)' --steps 1 --save "$ro"
else echo "no read-only file to test with: skipped"; fi
lm_fails "--checkpoint-dir $cli_tmp/empty: not a directory" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 4 --checkpoint-dir "$cli_tmp/empty"
lm_fails "checkpoint manager: cannot create $cli_tmp/empty/sub: Not a directory" \
    train-lm --data "$d" --heldout "$d/text3" $tiny --steps 4 --checkpoint-dir "$cli_tmp/empty/sub"
# a directory that exists but takes no files (procfs: even root cannot create one there)
if [ -d /proc/self ]; then
    lm_fails "--checkpoint-dir /proc/self: cannot write: No such file or directory" \
        train-lm --data "$d" --heldout "$d/text3" $tiny --steps 4 --checkpoint-dir /proc/self --svg "$cli_tmp/p.svg"
fi
# a sample longer than the training length: trains on 16 positions, samples 13 + 8 bytes
out=$(LINNX_PROGRESS=plain "$bin" train-lm --data "$d" --heldout "$d/text3" $small --seq-len 16 --batch 2 --eval-batches 1 \
      --sample-tokens 8 --steps 2 --checkpoint-dir "$cli_tmp/ckL" 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ $out == *"reloaded $cli_tmp/ckL/checkpoint_2.msgpack into a fresh model: samples identical"* ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: train-lm --seq-len 16 --sample-tokens 8: exit $rc: $out"; fi
# that run's --eval-batches 1 x --batch 2 takes 2 of the 3 held-out windows: the output says so
# and compares the loss with the entropy of those 34 bytes
nheld=$(printf '%s\n' "$out" | sed -n 's/.* \([0-9]*\) held-out bytes .*/\1/p')
ent34=$(printf '%s\n' "$out" | sed -n 's/^held-out evaluations: the first 2 of 3 windows of 17 bytes (--eval-batches 1 x --batch 2); byte-unigram entropy of those bytes: \([0-9.]*\) nats$/\1/p')
want34=$(tail -c "${nheld:-1}" "$d/text3" | head -c 34 | od -An -v -tu1 | tr -s ' ' '\n' | grep . |
         awk '{c[$1]++; n++} END {for (b in c) { p = c[b] / n; h -= p * log(p) } printf "%.4f", h}')
if [ "$nheld" == 53 ] && [ -n "$ent34" ] && [ "$ent34" == "$want34" ] &&
   [[ $out == *"held-out loss: "*"byte-unigram entropy $ent34 nats: "*"; both of the first 2 of 3 held-out windows"* ]] &&
   grep -q "byte-unigram entropy (evaluated held-out bytes)" "$cli_tmp/ckL/loss.svg"; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: train-lm: held-out prefix: entropy '$ent34' (want '$want34'): $out"; fi
expect_usage_error "the held-out file is not among the data files" train-lm --data "$d/text1" --heldout "$d/text3"
expect_usage_error "--heldout FILE is required with --data" train-lm --data "$d"
expect_usage_error "--resume needs --checkpoint-dir DIR" train-lm --resume
expect_usage_error "--steps: 1: use 0 (baselines only) or at least 2" train-lm --steps 1
expect_usage_error "--resume: $cli_tmp/ckC holds no checkpoint to continue" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 4 --resume --checkpoint-dir "$cli_tmp/ckC"
expect_usage_error "--seq-len 512 needs at least 513 bytes of training and of held-out text (have 1516 and 53)" train-lm --data "$d" --heldout "$d/text3" --seq-len 512 $small
expect_usage_error "training data: $(realpath "$d/text1"), byte 4 is 113, outside the vocabulary [0, 110)" train-lm --data "$d" --heldout "$d/text3" --vocab 110 $small --sample-tokens 0
lm_fails "--prompt: text: byte 0 is 84, outside the vocabulary [0, 50)" train-lm --data "$d" --heldout "$d/text3" --vocab 50 $small

# a diverging run stops at the first non-finite loss with a message saying so: no checkpoint,
# the chart of what ran
out=$(LINNX_PROGRESS=plain "$bin" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 20 --lr 1e30 --eval-every 5 \
      --checkpoint-dir "$cli_tmp/ckN" 2>"$cli_tmp/stderr"); rc=$?
err=$(cat "$cli_tmp/stderr")
if [ $rc -eq 2 ] && [[ $err =~ ^"linnx: train-lm: the "(training|held-out)" loss is "(nan|inf)" at step "[0-9]+": training diverged (try a lower --lr); no checkpoint was saved"$ ]] &&
   [ -s "$cli_tmp/ckN/loss.svg" ] && [ -z "$(ls "$cli_tmp/ckN" | grep checkpoint_)" ] && [[ $out != *"step 20/20"* ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: diverging train-lm: exit $rc, '$err': $out"; fi
# stdout that cannot be written: exit 1 and one line (train-lm finds it before training)
if [ -w /dev/full ]; then
    for args in "sample --tokens 3 $small" "train-lm --data $d --heldout $d/text3 $tiny --steps 2 --svg $cli_tmp/full.svg"; do
        # shellcheck disable=SC2086
        err=$("$bin" $args 2>&1 >/dev/full); rc=$?
        if [ $rc -eq 1 ] && [ "$err" == "linnx: error writing to standard output: No space left on device" ]; then pass=$((pass + 1)); else
            fail=$((fail + 1)); echo "FAIL: linnx $args >/dev/full: exit $rc, '$err'"; fi
    done
fi

# flags the run cannot use are refused before any output: an infinite --lr, model sizes and
# batches whose arrays break --max-array-bytes (named, with the shape and bytes)
lm_fails "--lr must be a finite positive number and --warmup-frac in [0, 1)" train-lm --data "$d" --heldout "$d/text3" $tiny --steps 2 --lr 1e999
lm_fails "--heldout-fraction: 2 is not in (0, 1)" train-lm --data "$d" --heldout "$d/text3" $tiny --heldout-fraction 2
lm_fails "decoder/layers_0/mlp/wi_0/kernel: float32 (65536, 65536) needs 17179869184 bytes, over the limit of 1073741824 bytes per array (--max-array-bytes)" \
    train-lm --data "$d" --heldout "$d/text3" --steps 2 --emb 65536 --mlp 65536
lm_fails "logits (--batch, --seq-len, --vocab): float32 (2, 16, 256) needs 32768 bytes, over the limit of 20480 bytes per array (--max-array-bytes)" \
    --max-array-bytes 20K train-lm --data "$d" --heldout "$d/text3" $tiny --steps 2
lm_fails "decoder/layers/mlp/wi_0/kernel: float32 (64, 3, 3000000) needs 2304000000 bytes, over the limit of 1073741824 bytes per array (--max-array-bytes)" \
    sample --scan-layers --layers 3 --mlp 3000000
lm_fails "--temperature: inf is not a finite number >= 0 (0 = greedy)" sample --temperature inf $small
lm_fails "sample: --tokens 9223372036854775807 is more than any --seq-len holds" sample --tokens 9223372036854775807 $small
lm_fails "--sample-tokens: 9223372036854775807 is more than a model's 16777216 positions" \
    train-lm --data "$d" --heldout "$d/text3" $small --sample-tokens 9223372036854775807
lm_fails "--top-k: 300 is outside 0..256 (0 = all)" sample --top-k 300 $small

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
