#!/usr/bin/env bash
# `linnx grad` and `linnx train`: hand-computed cases (a Dense(1) started at zeros, l2 loss, sgd and
# sgd with momentum: every number worked out below), the same in every style and both bridge
# directions, a small MLP + adam run against tests/fixtures/cli_train.txt (numpy reference,
# scripts/gen_train_fixtures.py), .npy data, the progress bar, --save/--restore continuing a run
# exactly, and the usage errors.
# Usage: cli_train.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_train.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"

# $1 = linnx arguments (shell words); expected stdout in $cli_tmp/want. Each line: the text before
# ':' (or the words before the last for `step K loss V`) exactly, the numbers within rtol 1e-5.
check_close() {
    local got rc
    got=$(eval "\"$bin\" $1" 2>"$cli_tmp/err"); rc=$?
    printf '%s\n' "$got" >"$cli_tmp/got"
    if [ $rc -eq 0 ] && awk -v tol=1e-5 "$awk_finite"'
        function split_line(s, parts) {   # label and numbers
            if (index(s, ":") > 0) { parts[1] = substr(s, 1, index(s, ":")); parts[2] = substr(s, index(s, ":") + 1) }
            else { n = split(s, w, " "); parts[1] = ""; for (i = 1; i < n; i++) parts[1] = parts[1] w[i] " "; parts[2] = w[n] }
        }
        NR == FNR { want[FNR] = $0; nw = FNR; next }
        { got[FNR] = $0; ng = FNR }
        END {
            if (ng != nw) exit 1
            for (k = 1; k <= nw; k++) {
                split_line(want[k], a); split_line(got[k], b)
                if (a[1] != b[1]) exit 1
                n = split(a[2], x, " "); m = split(b[2], y, " ")
                if (n != m) exit 1
                for (i = 1; i <= n; i++) {
                    if (!finite(x[i]) || !finite(y[i])) exit 1
                    d = x[i] - y[i]; if (d < 0) d = -d
                    s = x[i] < 0 ? -x[i] : x[i]
                    if (!(d <= tol * s + 1e-7)) exit 1
                }
            }
        }' "$cli_tmp/want" "$cli_tmp/got"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: linnx $1 (exit $rc)"; cat "$cli_tmp/err"
        diff "$cli_tmp/got" "$cli_tmp/want" | head -6
    fi
}

want() { printf '%s\n' "$@" >"$cli_tmp/want"; }

# ---- hand-computed: pred = k x + b from k = b = 0, x = (1, 2), y = (2, 4), l2_loss mean.
# r = pred - y = (-2, -4): loss = 0.5 (4 + 16) / 2 = 5, dk = mean(r x) = -5, db = mean(r) = -3.
# sgd(0.1): k = 0.5, b = 0.3; r = (-1.2, -2.7): loss 0.5 (1.44 + 7.29) / 2 = 2.1825,
# dk = -3.3, db = -1.95: k = 0.83, b = 0.495; r = (-0.675, -1.845): loss 0.9649125.
# sgd(0.1, momentum=0.9): step 2's trace = g2 + 0.9 g1 = (-7.8, -4.65): k = 1.28, b = 0.765;
# r = (0.045, -0.675): loss 0.5 (0.002025 + 0.455625) / 2 = 0.1144125.
D="--x 1,2 --x-shape 2,1 --y 2,4 --y-shape 2,1 --loss l2_loss"
LZ="'linen.Dense(1, kernel_init=linen.initializers.zeros)'"
NZ="'nnx.Linear(1, 1, kernel_init=nnx.initializers.zeros)'"
TL="'bridge.to_linen(nnx.Linear, 1, 1, kernel_init=nnx.initializers.zeros)'"
TN="'bridge.ToNNX(linen.Dense(1, kernel_init=linen.initializers.zeros))'"
want 'loss float32[]: 5' 'params/kernel float32[1,1]: -5' 'params/bias float32[1]: -3'
check_close "grad $LZ --seed 0 $D"
want 'loss float32[]: 5' 'params/bias float32[1]: -3' 'params/kernel float32[1,1]: -5'
check_close "grad $TL --seed 0 $D"
want 'loss float32[]: 5' 'bias Param float32[1]: -3' 'kernel Param float32[1,1]: -5'
check_close "grad $NZ --seed 0 $D"
check_close "grad $TN --seed 0 $D"
for s in "$LZ" "$NZ" "$TL" "$TN"; do
    want 'step 0 loss 5' 'step 1 loss 2.1825' 'step 2 loss 0.9649125'
    check_close "train $s --seed 0 $D --optimizer 'sgd(0.1)' --steps 3"
    want 'step 0 loss 5' 'step 1 loss 2.1825' 'step 2 loss 0.1144125'
    check_close "train $s --seed 0 $D --optimizer 'sgd(learning_rate=0.1, momentum=0.9)' --steps 3"
done
# .sum() doubles the l2 loss and its gradients
want 'loss float32[]: 10' 'bias Param float32[1]: -6' 'kernel Param float32[1,1]: -10'
check_close "grad $NZ --seed 0 $D --reduction sum"
# zero logits: softmax cross-entropy log 3, sigmoid BCE log 2, squared_error twice l2_loss
X3="--x 1,2 --x-shape 2,1"
want 'step 0 loss 1.09861229'
check_close "train 'nnx.Linear(1, 3, kernel_init=nnx.initializers.zeros)' --seed 0 $X3 --y 0,2 --y-shape 2 --loss softmax_cross_entropy_with_integer_labels --optimizer 'adam(1e-3)' --steps 1"
check_close "train 'nnx.Linear(1, 3, kernel_init=nnx.initializers.zeros)' --seed 0 $X3 --y 1,0,0,0,0.5,0.5 --y-shape 2,3 --loss optax.losses.softmax_cross_entropy --optimizer 'adam(1e-3)' --steps 1"
want 'step 0 loss 0.693147181'
check_close "train 'nnx.Linear(1, 1, kernel_init=nnx.initializers.zeros)' --seed 0 $X3 --y 1,0 --y-shape 2,1 --loss sigmoid_binary_cross_entropy --optimizer 'adamw(3e-4, weight_decay=0.1)' --steps 1"
want 'step 0 loss 10'
check_close "train $LZ --seed 0 --x 1,2 --x-shape 2,1 --y 2,4 --y-shape 2,1 --loss squared_error --optimizer 'adam(learning_rate=warmup_cosine_decay_schedule(0.0, 1e-3, 2, 10))' --steps 1"

# ---- a small MLP, grad and adam, full batch and shuffled minibatches, against the numpy reference
args=""; : >"$cli_tmp/want"
while IFS= read -r line; do
    case $line in
    '#'*) ;;
    '$ '*) [ -n "$args" ] && check_close "$args"; args=${line#\$ }; : >"$cli_tmp/want" ;;
    *) printf '%s\n' "$line" >>"$cli_tmp/want" ;;
    esac
done <"$here/fixtures/cli_train.txt"
check_close "$args"

# ---- .npy data: x float64 (2, 1) = 1, 2; y float32 (2, 1) = 2, 4 (the hand-computed case)
mkdir -p "$cli_tmp/d"
npy "$cli_tmp/d/x.npy" '<f8' '(2, 1)' '\x00\x00\x00\x00\x00\x00\xf0\x3f\x00\x00\x00\x00\x00\x00\x00\x40'
npy "$cli_tmp/d/y.npy" '<f4' '(2, 1)' '\x00\x00\x00\x40\x00\x00\x80\x40'
want 'loss float32[]: 5' 'bias Param float32[1]: -3' 'kernel Param float32[1,1]: -5'
check_close "grad $NZ --seed 0 --data '$cli_tmp/d' --loss l2_loss"
check_close "grad $NZ --seed 0 --data '$cli_tmp/d/x.npy,$cli_tmp/d/y.npy' --loss l2_loss"
# integer x (uint8, as images come) reaches a Dense/Linear as float32 (promote_dtype), not as ids
mkdir -p "$cli_tmp/du"
npy "$cli_tmp/du/x.npy" '|u1' '(2, 1)' '\x01\x02'
cp "$cli_tmp/d/y.npy" "$cli_tmp/du/y.npy"
check_close "grad $NZ --seed 0 --data '$cli_tmp/du' --loss l2_loss"

# ---- --data FILE.safetensors: tensors x and y (x float64 (2, 1) = 1, 2; y int64 (2, 1) = 2, 4 read
# as float32: the same hand-computed case), and the same file converted to Flax msgpack
F64_12='\x00\x00\x00\x00\x00\x00\xf0\x3f\x00\x00\x00\x00\x00\x00\x00\x40'
safet "$cli_tmp/xy.safetensors" '{"x":{"dtype":"F64","shape":[2,1],"data_offsets":[0,16]},"y":{"dtype":"I64","shape":[2,1],"data_offsets":[16,32]}}' \
    "$F64_12"'\x02\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00'
want 'loss float32[]: 5' 'bias Param float32[1]: -3' 'kernel Param float32[1,1]: -5'
check_close "grad $NZ --seed 0 --data '$cli_tmp/xy.safetensors' --loss l2_loss"
"$bin" convert "$cli_tmp/xy.safetensors" "$cli_tmp/xy.msgpack" >/dev/null
check_close "grad $NZ --seed 0 --data '$cli_tmp/xy.msgpack' --loss l2_loss"
want 'loss float32[]: 5' 'params/kernel float32[1,1]: -5' 'params/bias float32[1]: -3'
check_close "grad $LZ --seed 0 --data '$cli_tmp/xy.safetensors' --loss l2_loss"
want 'step 0 loss 5' 'step 1 loss 2.1825' 'step 2 loss 0.9649125'
check_close "train $LZ --seed 0 --data '$cli_tmp/xy.safetensors' --loss l2_loss --optimizer 'sgd(0.1)' --steps 3"
# integer labels from a safetensors uint8 y
safet "$cli_tmp/lab.safetensors" '{"x":{"dtype":"F64","shape":[2,1],"data_offsets":[0,16]},"y":{"dtype":"U8","shape":[2],"data_offsets":[16,18]}}' \
    "$F64_12"'\x01\x00'
a=$("$bin" grad 'nnx.Linear(1, 2)' --seed 0 --data "$cli_tmp/lab.safetensors" --loss softmax_cross_entropy_with_integer_labels)
b=$("$bin" grad 'nnx.Linear(1, 2)' --seed 0 --x 1,2 --x-shape 2,1 --y 1,0 --y-shape 2 --loss softmax_cross_entropy_with_integer_labels)
if [ -n "$a" ] && [ "$a" == "$b" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: uint8 labels: $a / $b"; fi
safet "$cli_tmp/xonly.safetensors" '{"x":{"dtype":"F64","shape":[2,1],"data_offsets":[0,16]}}' "$F64_12"
safet "$cli_tmp/X.safetensors" '{"X":{"dtype":"F64","shape":[2,1],"data_offsets":[0,16]},"y":{"dtype":"F64","shape":[2,1],"data_offsets":[16,32]}}' "$F64_12$F64_12"
safet "$cli_tmp/f16.safetensors" '{"x":{"dtype":"F16","shape":[2,1],"data_offsets":[0,4]},"y":{"dtype":"F64","shape":[2,1],"data_offsets":[4,20]}}' '\x00\x3c\x00\x40'"$F64_12"
safet "$cli_tmp/scalar.safetensors" '{"x":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"y":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}}' "$F64_12"
expect_usage_error "--data: $cli_tmp/xonly.safetensors holds no tensor named 'y' (it needs x and y)" grad 'nnx.Linear(1, 1)' --seed 0 --data "$cli_tmp/xonly.safetensors" --loss l2_loss
expect_usage_error "--data: $cli_tmp/X.safetensors holds no tensor named 'x'" train 'linen.Dense(1)' --seed 0 --data "$cli_tmp/X.safetensors" --loss l2_loss --optimizer 'sgd(0.1)' --steps 1
expect_usage_error "'x' has dtype float16" grad 'nnx.Linear(1, 1)' --seed 0 --data "$cli_tmp/f16.safetensors" --loss l2_loss
# a 0-d x reaches the model as it is (tests/cli_data.sh): Linear's dot_general cannot take it
expect_usage_error "dot_general: 1 contracting and 0 batch dimensions do not fit shapes () and (1, 1)" grad 'nnx.Linear(1, 1)' --seed 0 --data "$cli_tmp/scalar.safetensors" --loss l2_loss
head -c 20 "$cli_tmp/xy.safetensors" >"$cli_tmp/cut.safetensors"
expect_usage_error "--data $cli_tmp/cut.safetensors: " grad 'nnx.Linear(1, 1)' --seed 0 --data "$cli_tmp/cut.safetensors" --loss l2_loss

# ---- the progress bar (forced: stdout is a pipe here): a bar line, then the last step's line
out=$("$bin" train 'nnx.Linear(1, 1, kernel_init=nnx.initializers.zeros)' --seed 0 $D --optimizer 'sgd(0.1)' --steps 3 --progress)
if [[ $out == *$'\r\033[K['*"    3/3  loss "*" steps/s  ETA 0s"* ]] && [[ $out != *"tok/s"* ]] && [[ $(printf '%s\n' "$out" | tail -1) == "step 2 loss 0.964912"* ]]; then
    pass=$((pass + 1))
else
    fail=$((fail + 1)); echo "FAIL: progress bar: $out"
fi

# on a terminal (a pty from script(1)) the bar by itself; under an MPI launcher's environment
# (PMIX_RANK: Open MPI gives every rank a pty even when mpirun writes to a file, audit D13) the
# plain lines
if command -v script >/dev/null 2>&1; then
    printf '#!/bin/sh\nexec "%s" train "nnx.Linear(1, 1, kernel_init=nnx.initializers.zeros)" --seed 0 %s --optimizer "sgd(0.1)" --steps 3\n' \
        "$bin" "$D" >"$cli_tmp/tty.sh"
    chmod +x "$cli_tmp/tty.sh"
    tty_bar=$(script -qec "$cli_tmp/tty.sh" /dev/null </dev/null 2>&1)
    tty_mpi=$(PMIX_RANK=0 script -qec "$cli_tmp/tty.sh" /dev/null </dev/null 2>&1 | tr -d '\r')
    if [[ $tty_bar == *$'\033[K['* ]] && [[ $tty_mpi != *$'\033'* ]] &&
       [ "$(printf '%s\n' "$tty_mpi" | grep -c '^step [0-2] loss ')" -eq 3 ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: progress on a pty: bar '$tty_bar', under a launcher '$tty_mpi'"
    fi
fi

# ---- --save / --restore: N steps saved, then restored for M more, print exactly the lines of an
# uninterrupted N+M-step run (minibatches of 5 of 12 rows: the resume lands mid-epoch, so the
# shuffled order and the batch position must carry over; BatchNorm's batch_stats and the dropout
# rngs too: NNX's RngCount is saved, Linen's dropout key is fold_in(key, step))
XS="--x '-1.25,-0.5,0.25,1.0,0.5,1.25,-0.75,0.0,-0.5,0.25,1.0,-1.0,1.25,-0.75,0.0,0.75,0.25,1.0,-1.0,-0.25,-0.75,0.0,0.75,-1.25,1.0,-1.0,-0.25,0.5,0.0,0.75,-1.25,-0.5,-1.0,-0.25,0.5,1.25,0.75,-1.25,-0.5,0.25,-0.25,0.5,1.25,-0.75,-1.25,-0.5,0.25,1.0' --x-shape 12,4 --y '0,2,1,0,2,1,0,2,1,0,2,1' --y-shape 12 --loss softmax_cross_entropy_with_integer_labels --batch-size 5 --plain"
resume_check() { # spec, optimizer, N, M
    local a="train '$1' --seed 3 $XS --optimizer '$2'" full part
    full=$(eval "\"$bin\" $a --steps $(($3 + $4))" 2>&1)
    part=$(eval "\"$bin\" $a --steps $3 --save '$cli_tmp/ts.msgpack'" 2>&1 &&
           eval "\"$bin\" $a --steps $4 --restore '$cli_tmp/ts.msgpack'" 2>&1)
    if [ $? -eq 0 ] && [ "$part" == "$full" ] && [ "$(printf '%s\n' "$full" | grep -c '^step ')" -eq $(($3 + $4)) ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: resume $1 $2 $3+$4:"; diff <(echo "$part") <(echo "$full") | head -6
    fi
}
resume_check 'nnx.Sequential(nnx.Linear(4, 8), nnx.relu, nnx.Linear(8, 3))' 'adam(0.01)' 3 4
resume_check 'nnx.Sequential(nnx.Linear(4, 8), nnx.relu, nnx.Linear(8, 3))' 'sgd(0.1, momentum=0.9)' 2 5
resume_check 'linen.Sequential(linen.Dense(8), linen.relu, linen.Dense(3))' 'adam(0.01)' 3 4
resume_check 'linen.Sequential(linen.Dense(8), linen.BatchNorm(use_running_average=False), linen.relu, linen.Dense(3))' 'adamw(0.01, weight_decay=0.1)' 4 3
resume_check 'bridge.ToNNX(linen.Dense(3))' 'adam(0.01)' 5 2
resume_check 'nnx.Sequential(nnx.Linear(4, 8), nnx.Dropout(0.5), nnx.Linear(8, 3))' 'adam(0.01)' 3 4
resume_check 'linen.Sequential(linen.Dense(8), linen.Dropout(0.5, deterministic=False), linen.Dense(3))' 'adam(0.01)' 3 4
resume_check 'bridge.to_linen(nnx.Linear, 4, 3)' 'adam(0.01)' 2 5
# the hand-computed momentum case: 2 steps saved, the third (step 2 loss 0.1144125) needs the
# restored params and the restored trace
# (NZ's through a symbolic link: written where it points, the link kept, and restored through it)
mkdir -p "$cli_tmp/saved" && ln -s saved/NZ.msgpack "$cli_tmp/NZ.msgpack"
for s in LZ NZ; do
    "$bin" train "$(eval echo "${!s}")" --seed 0 $D --optimizer 'sgd(0.1, momentum=0.9)' --steps 2 --save "$cli_tmp/$s.msgpack" >/dev/null
    want 'step 2 loss 0.1144125'
    check_close "train ${!s} --seed 0 $D --optimizer 'sgd(0.1, momentum=0.9)' --steps 1 --restore '$cli_tmp/$s.msgpack'"
done
if [ -L "$cli_tmp/NZ.msgpack" ] && [ -f "$cli_tmp/saved/NZ.msgpack" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: train --save through a link: $(ls -lA "$cli_tmp/NZ.msgpack" "$cli_tmp/saved")"; fi
# a checkpoint of another model / optimizer / kind of state: one line, exit 2, nothing trained
expect_usage_error "Shape mismatch at path ./params/kernel" train 'linen.Dense(2)' --seed 0 --x 1,2 --x-shape 2,1 --y 2,4,1,1 --y-shape 2,2 --loss l2_loss --optimizer 'sgd(0.1, momentum=0.9)' --steps 1 --restore "$cli_tmp/LZ.msgpack"
expect_usage_error "at path ./opt_state/0" train 'linen.Dense(1)' --seed 0 $D --optimizer 'adam(0.1)' --steps 1 --restore "$cli_tmp/LZ.msgpack"
expect_usage_error "--restore $cli_tmp/NZ.msgpack: The target dict keys and state dict keys do not match, target dict contains keys" train 'linen.Dense(1)' --seed 0 $D --optimizer 'sgd(0.1, momentum=0.9)' --steps 1 --restore "$cli_tmp/NZ.msgpack"
expect_usage_error "--restore $cli_tmp/LZ.msgpack: The target dict keys" train 'nnx.Linear(1, 1)' --seed 0 $D --optimizer 'sgd(0.1, momentum=0.9)' --steps 1 --restore "$cli_tmp/LZ.msgpack"
expect_usage_error "safetensors holds arrays only" train 'linen.Dense(1)' --seed 0 $D --optimizer 'sgd(0.1)' --steps 1 --save "$cli_tmp/t.safetensors"
expect_usage_error "give --progress or --plain, not both" train 'linen.Dense(1)' --seed 0 $D --optimizer 'sgd(0.1)' --steps 1 --progress --plain
# a --save path that cannot be written is found out before the first step (nothing on stdout)
expect_usage_error "--save $cli_tmp/no/such/dir/t.msgpack: cannot write: No such file or directory" train 'linen.Dense(1)' --seed 0 $D --optimizer 'sgd(0.1)' --steps 1 --save "$cli_tmp/no/such/dir/t.msgpack"
ok_save=$("$bin" train 'linen.Dense(1)' --seed 0 $D --optimizer 'sgd(0.1)' --steps 1 --save "$cli_tmp/no/t.msgpack" 2>/dev/null)
if [ -z "$ok_save" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: --save into a missing folder trained first: $ok_save"; fi
expect_usage_error "--save $cli_tmp/: cannot write: Is a directory" train 'linen.Dense(1)' --seed 0 $D --optimizer 'sgd(0.1)' --steps 1 --save "$cli_tmp/"
expect_usage_error "--save $cli_tmp: cannot write: Is a directory" train 'linen.Dense(1)' --seed 0 $D --optimizer 'sgd(0.1)' --steps 1 --save "$cli_tmp"
# a link ck.msgpack -> state.safetensors: the format is the typed name's (msgpack), not the link
# target's (a training state cannot be safetensors: it failed after training, the work lost)
ln -s state.safetensors "$cli_tmp/ck.msgpack"
out=$("$bin" train 'linen.Dense(1)' --seed 0 $D --optimizer 'sgd(0.1)' --steps 3 --save "$cli_tmp/ck.msgpack" 2>&1); rc=$?
if [ $rc -eq 0 ] && [ -L "$cli_tmp/ck.msgpack" ] && [ "$(head -c 6 "$cli_tmp/state.safetensors" | tail -c 4)" == step ]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: train --save ck.msgpack -> state.safetensors: exit $rc, $out"; fi
# a save that fails after the check (here a file-size limit: EFBIG) names the path typed, then the target
ln -s saved/big.msgpack "$cli_tmp/big.msgpack"
se=$( (trap '' XFSZ; ulimit -f 0; "$bin" train 'linen.Dense(1)' --seed 0 $D --optimizer 'sgd(0.1)' --steps 1 \
       --save "$cli_tmp/big.msgpack" 2>&1 >/dev/null) ); rc=$?
if [ $rc -eq 1 ] && [[ $se == "linnx: --save $cli_tmp/big.msgpack (-> $cli_tmp/saved/big.msgpack): "*"File too large" ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: a failed --save through a link: exit $rc, '$se'"; fi

# ---- bad input: one `linnx:` line, exit 2
expect_usage_error "unknown loss 'hinge'" grad 'nnx.Linear(1, 1)' --seed 0 --x 1,2 --y 2,4 --loss hinge
expect_usage_error "--loss is required" grad 'nnx.Linear(1, 1)' --seed 0 --x 1 --y 1
expect_usage_error "Gradient only defined for scalar-output functions" grad 'nnx.Linear(1, 1)' --seed 0 $D --reduction none
expect_usage_error "Gradient only defined for scalar-output functions" train 'linen.Dense(1)' --seed 0 $D --reduction none --optimizer 'sgd(0.1)' --steps 1
expect_usage_error "--optimizer" train 'nnx.Linear(1, 1)' --seed 0 $D --optimizer 'adamx(0.1)' --steps 1
expect_usage_error "unexpected keyword argument 'mom'" train 'nnx.Linear(1, 1)' --seed 0 $D --optimizer 'sgd(0.1, mom=0.9)' --steps 1
expect_usage_error "--optimizer is required" train 'nnx.Linear(1, 1)' --seed 0 $D --steps 1
expect_usage_error "--steps is required" train 'nnx.Linear(1, 1)' --seed 0 $D --optimizer 'sgd(0.1)'
expect_usage_error "--batch-size: 0" train 'nnx.Linear(1, 1)' --seed 0 $D --optimizer 'sgd(0.1)' --steps 1 --batch-size 0
expect_usage_error "3 values do not fill --x-shape (2, 1)" grad 'nnx.Linear(1, 1)' --seed 0 --x 1,2,3 --x-shape 2,1 --y 2,4 --y-shape 2,1 --loss l2_loss
expect_usage_error "x has 2 examples and y has 3: the first axes must agree (--batch-size takes rows of both)" train 'nnx.Linear(1, 1)' --seed 0 --x 1,2 --x-shape 2,1 --y 2,4,5 --y-shape 3,1 --loss l2_loss --optimizer 'sgd(0.1)' --steps 1 --batch-size 1
expect_usage_error "could not be broadcast together with shapes (2, 1) (3, 1)" grad 'nnx.Linear(1, 1)' --seed 0 --x 1,2 --x-shape 2,1 --y 2,4,5 --y-shape 3,1 --loss l2_loss
expect_usage_error "l2_loss: sub: operands could not be broadcast together with shapes (2, 2) (2, 3)" grad 'nnx.Linear(1, 2)' --seed 0 --x 1,2 --x-shape 2,1 --y 1,2,3,4,5,6 --y-shape 2,3 --loss l2_loss
expect_usage_error "(2, 3)" grad 'nnx.Linear(2, 3)' --seed 0 --x 1,2 --x-shape 2,1 --y 2,4 --y-shape 2,1 --loss l2_loss
expect_usage_error "not an integer label" grad 'nnx.Linear(1, 3)' --seed 0 --x 1,2 --x-shape 2,1 --y 0.5,1 --y-shape 2 --loss softmax_cross_entropy_with_integer_labels
expect_usage_error "unknown module" grad 'torch.Linear(1, 1)' --seed 0 $D
expect_usage_error "--data: cannot open /nonexistent: No such file or directory" grad 'nnx.Linear(1, 1)' --seed 0 --data /nonexistent --loss l2_loss
expect_usage_error "neither a directory holding x.npy and y.npy, nor X.npy,Y.npy, nor a safetensors (or msgpack) file holding x and y" grad 'nnx.Linear(1, 1)' --seed 0 --data "$here/lib_cli.sh" --loss l2_loss
expect_usage_error "is not a .npy file" grad 'nnx.Linear(1, 1)' --seed 0 --data "$here/lib_cli.sh,$here/lib_cli.sh" --loss l2_loss
expect_usage_error "--data replaces --x/--y" grad 'nnx.Linear(1, 1)' --seed 0 --data "$cli_tmp/d" --x 1 --loss l2_loss
# sgd(1e38): the first update overflows to inf; plain runs go on (as JAX does), --debug-nans stops
want 'step 0 loss 5' 'step 1 loss inf' 'step 2 loss nan'
check_block "train $NZ --seed 0 $D --optimizer 'sgd(1e38)' --steps 3"
expect_usage_error "debug_nans: Inf in the updates at 'kernel'" train 'nnx.Linear(1, 1, kernel_init=nnx.initializers.zeros)' --seed 0 $D --optimizer 'sgd(1e38)' --steps 3 --debug-nans
# NaN as a data value (nan, NaN, -nan, as numpy reads them): a plain run goes on with NaN losses
# printed as Python prints them; --debug-nans stops at the first bad gradient leaf
XN="--x 1,2,nan,4,5,6 --x-shape 2,3 --y 1,0,0,1 --y-shape 2,2 --loss l2_loss"
want 'step 0 loss nan' 'step 1 loss nan'
check_block "train 'linen.Dense(2)' --seed 0 $XN --optimizer 'adam(1e-3)' --steps 2"
# pred = 0 (zero kernel) on x = ((1, 2), (3, 4)), y = ((1, 0), (0, NaN)): r = -y, dW = x^T r / 4,
# db = sum r / 4: the first output's column is finite (-0.25, -0.5; -0.25), the second's NaN
for v in nan NaN -nan; do
    want 'loss float32[]: nan' 'params/kernel float32[2,2]: -0.25 nan -0.5 nan' 'params/bias float32[2]: -0.25 nan'
    check_block "grad 'linen.Dense(2, kernel_init=linen.initializers.zeros)' --seed 0 --x 1,2,3,4 --x-shape 2,2 --y 1,0,0,$v --y-shape 2,2 --loss l2_loss"
done
want 'loss float32[]: nan' 'kernel Param float32[2,2]: nan nan nan nan' 'bias Param float32[2]: nan nan'
check_block "grad 'nnx.Linear(2, 2, kernel_init=nnx.initializers.zeros)' --seed 0 --x 1,2,3,-nan --x-shape 2,2 --y 1,0,0,0 --y-shape 2,2 --loss l2_loss | sort -r"
expect_usage_error "debug_nans: NaN in the gradients at 'layers/0/bias' (flat index 0)" train 'nnx.Sequential(nnx.Linear(3, 4), nnx.Linear(4, 2))' --seed 0 $XN --optimizer 'adam(1e-3)' --steps 2 --debug-nans
# NaN stays refused where it is no datum: integer labels, and the other float options
expect_usage_error "nan is not an integer label" grad 'nnx.Linear(1, 3)' --seed 0 --x 1,2 --x-shape 2,1 --y 0,nan --y-shape 2 --loss softmax_cross_entropy_with_integer_labels
expect_usage_error "--minval: 'nan' is not a number" random uniform --seed 0 --shape 2 --minval nan

# --debug-nans names a Linen leaf by the path `linnx grad` prints: params/... (optax sees the
# TrainState's params, which have no collection level)
expect_usage_error "debug_nans: NaN in the gradients at 'params/bias' (flat index 0)" train 'linen.Dense(2)' --seed 0 $XN --optimizer 'adam(1e-3)' --steps 2 --debug-nans
expect_usage_error "debug_nans: NaN in the gradients at 'params/layers_0/bias' (flat index 0)" train 'linen.Sequential(linen.Dense(4), linen.Dense(2))' --seed 0 $XN --optimizer 'adam(1e-3)' --steps 2 --debug-nans
ok_grep() { if grep -q "$1" <<<"$2"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: no '$1' in: $2"; fi; }
ok_grep '^params/layers_0/bias ' "$("$bin" grad 'linen.Sequential(linen.Dense(4), linen.Dense(2))' --seed 0 $XN)"
expect_usage_error "debug_nans: NaN in the gradients at 'params/layers_0/kernel' (flat index 8)" train 'linen.Sequential(linen.Dense(4), linen.relu, bridge.to_linen(nnx.Linear, 4, 2))' --seed 0 $XN --optimizer 'sgd(0.1)' --steps 2 --debug-nans
expect_usage_error "debug_nans: Inf in the updates at 'params/kernel'" train "$(eval echo "$LZ")" --seed 0 $D --optimizer 'sgd(1e38)' --steps 3 --debug-nans

# an unbatched example, x (3,) and y (2,): the steps of the (1, 3) batch of that one example
a=$("$bin" train 'nnx.Linear(3, 2)' --seed 0 --x 1,2,3 --y 1,0 --loss l2_loss --optimizer 'sgd(0.1)' --steps 3)
b=$("$bin" train 'nnx.Linear(3, 2)' --seed 0 --x 1,2,3 --x-shape 1,3 --y 1,0 --y-shape 1,2 --loss l2_loss --optimizer 'sgd(0.1)' --steps 3)
if [ -n "$a" ] && [ "$a" == "$b" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: unbatched train: $a / $b"; fi
expect_usage_error "which model" train --seed 0 $D --optimizer 'sgd(0.1)' --steps 1
# adamw's weight_decay is optax's ScalarOrSchedule: a schedule evaluated at add_decayed_weights' own
# count (numpy float32 emulation of optax's adamw: wd 0.5, 0.25, 0, 0 over the steps; the first
# Adam step is -lr sign(g), so step 1 is pred = 0.1 x + 0.1)
want 'step 0 loss 5' 'step 1 loss 4.23250484' 'step 2 loss 3.54886436' 'step 3 loss 2.91473198'
check_close "train $NZ --seed 0 $D --optimizer 'adamw(0.1, weight_decay=linear_schedule(0.5, 0.0, 2))' --steps 4"

# every error is ONE line written with ONE write(2) (ranks share stderr under mpirun): a newline
# inside the message (here the optimizer text quoted back) is written as \n
expect_usage_error "at offset 10 in 'adam(1e-3\\n'" train "$(eval echo "$NZ")" --seed 0 $D --optimizer $'adam(1e-3\n' --steps 1
if strace -f -qq -e trace=write -o "$cli_tmp/strace" true 2>/dev/null; then
    for args in "random permutation --seed 0 --n x" "train nnx.Linear(1,1) --seed 0 --x 1 --y 1 --loss l2_loss --optimizer sgd(0.1)x --steps 1"; do
        # shellcheck disable=SC2086
        # LeakSanitizer cannot run under ptrace (the sanitizer build would abort with its own lines)
        ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -f -qq -e trace=write -o "$cli_tmp/strace" "$bin" $args >/dev/null 2>&1
        n=$(grep -c 'write(2,' "$cli_tmp/strace")
        if [ "$n" -eq 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: linnx $args: $n writes to stderr"; cat "$cli_tmp/strace"; fi
    done
else
    echo "strace cannot trace here: the one-write check of error lines is skipped"
fi
# train-lm's help says what the progress display does under an MPI launcher (docs/distributed.md)
ok_grep 'plain lines when piped or under an MPI launcher' "$("$bin" train-lm --help 2>&1 | tr '\n' ' ' | sed 's/  */ /g')"
# a NaN prints as Python prints it (nan, not glibc's -nan) in every printer: inf - inf in an output
# array (example), a -nan data value through the loss line and the piped progress lines
want 'nan -inf'
check_block "example nnx-inside-linen --seed 0 --x inf,-inf --features 2"
p=$("$bin" train 'linen.Dense(2)' --seed 0 --x 1,2,-nan,4,5,6 --x-shape 2,3 --y 1,0,0,1 --y-shape 2,2 --loss l2_loss --optimizer 'sgd(0.1)' --steps 2 --progress 2>&1)
if grep -q 'loss nan' <<<"$p" && ! grep -q -- '-nan' <<<"$p"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: NaN printing: $p"; fi
cli_finish
