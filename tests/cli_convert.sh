#!/usr/bin/env bash
# `linnx convert --unscan/--scan` on train states (MaxText #4369: parameters and their optimizer
# moments at the parameters' layer axis, layers_<i> in Linen layouts, layers/<i> in NNX layouts,
# the same bytes after a round trip), boxed parameters ({"value": W}) as plain arrays in converted
# layouts and in safetensors names, __metadata__ kept, and the usage errors.
# Fixtures (tests/fixtures/convert, hand-built msgpack bytes): mtscan.msgpack is a MaxText Linen
# TrainState {step, params: {params: decoder/layers/mlp/kernel (2, 3, 2)}, opt_state: [adam's
# {count, mu, nu}]} with the layer axis at 1; oldnnx.msgpack an older NNX state ({value: W}
# Variables); seq_scan.msgpack linen.Sequential([linen.scan(Dense), Dense]); drop.msgpack
# nnx.Dropout's {rngs: {key, count}}; meta.safetensors a tensor with __metadata__.
# Usage: cli_convert.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_convert.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"
d=$cli_tmp
fx=$here/fixtures/convert

# rows "path shape" of a file (dtype and counts left out), one per line
rows() { "$bin" inspect "$1" | awk 'NR > 2 && $1 != "Total" {$2 = ""; $NF = ""; $(NF - 1) = ""; print}' | sed 's/  */ /g; s/ *$//'; }
# $1 what, $2 got, $3 want
same() { if [ "$2" == "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | head -20; fi; }
ok() { if "$@" >/dev/null 2>"$d/err"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $*"; cat "$d/err"; fi; }

# --- D1: MaxText Linen train state, prefix matched wherever it sits, moments with their params
ok "$bin" convert "$fx/mtscan.msgpack" "$d/un.msgpack" --unscan decoder/layers
same "unscan maxtext-linen" "$(rows "$d/un.msgpack")" "step ()
params/params/decoder/layers_0/mlp/kernel (2, 2)
params/params/decoder/layers_1/mlp/kernel (2, 2)
params/params/decoder/layers_2/mlp/kernel (2, 2)
opt_state/0/count ()
opt_state/0/mu/params/decoder/layers_0/mlp/kernel (2, 2)
opt_state/0/mu/params/decoder/layers_1/mlp/kernel (2, 2)
opt_state/0/mu/params/decoder/layers_2/mlp/kernel (2, 2)
opt_state/0/nu/params/decoder/layers_0/mlp/kernel (2, 2)
opt_state/0/nu/params/decoder/layers_1/mlp/kernel (2, 2)
opt_state/0/nu/params/decoder/layers_2/mlp/kernel (2, 2)"
ok "$bin" convert "$fx/mtscan.msgpack" "$d/un2.msgpack" --unscan params/decoder/layers
cmp -s "$d/un.msgpack" "$d/un2.msgpack" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: params/decoder/layers differs from decoder/layers"; }
ok "$bin" convert "$d/un.msgpack" "$d/re.msgpack" --scan decoder/layers
cmp -s "$fx/mtscan.msgpack" "$d/re.msgpack" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: maxtext-linen --unscan/--scan round trip differs"; }

# the NNX layout names the layers layers/<i> and splits the same axis
ok "$bin" convert "$fx/mtscan.msgpack" "$d/nun.msgpack" --layout maxtext-nnx --unscan decoder/layers
same "unscan maxtext-nnx" "$(rows "$d/nun.msgpack" | grep layers)" "model/decoder/layers/0/mlp/kernel (2, 2)
model/decoder/layers/1/mlp/kernel (2, 2)
model/decoder/layers/2/mlp/kernel (2, 2)
optimizer/opt_state/0/mu/decoder/layers/0/mlp/kernel (2, 2)
optimizer/opt_state/0/mu/decoder/layers/1/mlp/kernel (2, 2)
optimizer/opt_state/0/mu/decoder/layers/2/mlp/kernel (2, 2)
optimizer/opt_state/0/nu/decoder/layers/0/mlp/kernel (2, 2)
optimizer/opt_state/0/nu/decoder/layers/1/mlp/kernel (2, 2)
optimizer/opt_state/0/nu/decoder/layers/2/mlp/kernel (2, 2)"
# unrolled Linen -> NNX and stacked there; the stack equals the NNX conversion of the scanned file
ok "$bin" convert "$d/un.msgpack" "$d/nre.msgpack" --layout maxtext-nnx --scan decoder/layers
ok "$bin" convert "$fx/mtscan.msgpack" "$d/nplain.msgpack" --layout maxtext-nnx
cmp -s "$d/nre.msgpack" "$d/nplain.msgpack" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: unrolled -> maxtext-nnx --scan differs from scanned -> maxtext-nnx"; }
ok "$bin" convert "$d/nun.msgpack" "$d/nre2.msgpack" --scan decoder/layers
cmp -s "$d/nre2.msgpack" "$d/nplain.msgpack" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: maxtext-nnx --unscan/--scan round trip differs"; }
expect_usage_error "is already unrolled (an nnx.List" convert "$d/nun.msgpack" "$d/x.msgpack" --unscan decoder/layers

# a prefix that matches nothing, --wrapper where there is no Linen layout
expect_usage_error "no layer stack 'nothing/here' in this maxtext-linen checkpoint" convert "$fx/mtscan.msgpack" "$d/x.msgpack" --unscan nothing/here
expect_usage_error "nothing to stack" convert "$fx/mtscan.msgpack" "$d/x.msgpack" --scan decoder/layers
expect_usage_error "--wrapper ToLinen_0: a bridge wrapper exists only in Linen layouts, and the output is nnx" convert "$fx/mtscan.msgpack" "$d/x.msgpack" --layout nnx --wrapper ToLinen_0
expect_usage_error "the output is maxtext-nnx" convert "$fx/mtscan.msgpack" "$d/x.msgpack" --layout maxtext-nnx --wrapper ToLinen_0
expect_usage_error "has shape (2, 3, 2), which has no layer axis 3" convert "$fx/mtscan.msgpack" "$d/x.msgpack" --unscan decoder/layers --params-axis 3

# --- D6: a scan inside a Sequential: the re-stacked entry keeps its place (same bytes)
ok "$bin" convert "$fx/seq_scan.msgpack" "$d/s1.msgpack" --unscan layers_0
same "unscan seq" "$(rows "$d/s1.msgpack")" "params/layers_0_0/kernel/value (4, 4)
params/layers_0_0/bias (4,)
params/layers_0_1/kernel/value (4, 4)
params/layers_0_1/bias (4,)
params/layers_1/kernel (4, 2)
params/layers_1/bias (2,)"
ok "$bin" convert "$d/s1.msgpack" "$d/s2.msgpack" --scan layers_0 --partition-name layers
cmp -s "$fx/seq_scan.msgpack" "$d/s2.msgpack" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: Sequential --unscan/--scan round trip differs"; }

# --- D2: boxed parameters. to_linen(nnx.Linear) with a partitioned kernel writes
# params/kernel/value (NNXMeta); its NNX twin writes kernel. They convert into each other.
box="nnx.with_partitioning(nnx.initializers.lecun_normal(), ('in', 'out'), mesh=None)"
ok "$bin" params "bridge.to_linen(nnx.Linear, 4, 3, kernel_init=$box)" --seed 0 --input-shape 1,4 --save "$d/btl.msgpack"
ok "$bin" params "nnx.Linear(4, 3, kernel_init=$box)" --seed 0 --save "$d/twin.msgpack"
same "boxed Linen file" "$(rows "$d/btl.msgpack")" "params/bias (3,)
params/kernel/value (4, 3)"
ok "$bin" convert "$d/btl.msgpack" "$d/btl_nnx.msgpack" --layout nnx
same "boxed Linen -> nnx has the twin's paths" "$(rows "$d/btl_nnx.msgpack")" "$(rows "$d/twin.msgpack")"
ok "$bin" convert "$d/twin.msgpack" "$d/twin_linen.msgpack" --layout linen
same "twin -> linen" "$(rows "$d/twin_linen.msgpack")" "params/bias (3,)
params/kernel (4, 3)"
# one tensor name per leaf in safetensors, whichever way the file was made
ok "$bin" params "bridge.to_linen(nnx.Linear, 4, 3, kernel_init=$box)" --seed 0 --input-shape 1,4 --save "$d/direct.safetensors"
ok "$bin" convert "$d/btl.msgpack" "$d/via.safetensors"
cmp -s "$d/direct.safetensors" "$d/via.safetensors" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: params --save .safetensors and convert of its .msgpack differ"; rows "$d/via.safetensors"; }
# an older NNX state's {value: W} Variables
ok "$bin" convert "$fx/oldnnx.msgpack" "$d/old.msgpack" --layout maxtext-linen
same "old NNX value leaves (keys sorted as Flax writes them)" "$(rows "$d/old.msgpack")" "params/params/decoder/w (1,)
step ()"

# converted layouts list keys sorted, as Flax writes them (maxtext-nnx: optimizer/{opt_state, step})
same "sorted keys" "$(rows "$d/nplain.msgpack" | cut -d' ' -f1 | grep -v /mu/ | grep -v /nu/)" "model/decoder/layers/mlp/kernel
optimizer/opt_state/0/count
optimizer/step"

# --- D5: __metadata__ survives a safetensors -> safetensors convert
ok "$bin" convert "$fx/meta.safetensors" "$d/meta.safetensors"
same "__metadata__ kept" "$("$bin" inspect "$d/meta.safetensors" | sed -n '2,3p')" "__metadata__ format: pt
__metadata__ k: v"

# --- D9: nnx.Dropout's {rngs: {key, count}} is NNX state: to Linen it leaves nothing
out=$("$bin" convert "$fx/drop.msgpack" "$d/drop_l.msgpack" --layout linen)
[[ $out == *"(nnx) -> "*"(linen, msgpack): 0 leaves"* ]] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: drop.msgpack: $out"; }

# --- a `linnx train --save` file moves between a Linen model and its NNX twin (audit D18): the
# Linen TrainState {step, params, opt_state} is detected as linen-train, its NNX twin's file is
# maxtext-nnx; either restores into the other and continues with the uninterrupted run's losses
TD="--x 1,2 --x-shape 2,1 --y 2,4 --y-shape 2,1 --loss l2_loss --optimizer adam(0.1) --plain"
"$bin" train 'linen.Dense(1)' --seed 0 $TD --steps 4 | tail -2 >"$d/want4"
"$bin" train 'linen.Dense(1)' --seed 0 $TD --steps 2 --save "$d/ta.msgpack" >/dev/null
out=$("$bin" convert "$d/ta.msgpack" "$d/tn.msgpack" --layout maxtext-nnx)
same "linen train state detected" "${out%%:*}" "$d/ta.msgpack (linen-train) -> $d/tn.msgpack (maxtext-nnx, msgpack)"
same "linen train state as NNX" "$(rows "$d/tn.msgpack")" "model/bias (1,)
model/kernel (1, 1)
optimizer/opt_state/0/count ()
optimizer/opt_state/0/mu/bias (1,)
optimizer/opt_state/0/mu/kernel (1, 1)
optimizer/opt_state/0/nu/bias (1,)
optimizer/opt_state/0/nu/kernel (1, 1)
optimizer/step ()"
same "NNX twin resumes a Linen run" "$("$bin" train 'nnx.Linear(1, 1)' --seed 0 $TD --steps 2 --restore "$d/tn.msgpack" 2>&1)" "$(cat "$d/want4")"
ok "$bin" convert "$d/tn.msgpack" "$d/tl.msgpack" --layout linen-train
same "NNX train state as Linen" "$(rows "$d/tl.msgpack" | sort)" "$(rows "$d/ta.msgpack" | sort)"
same "Linen resumes the round trip" "$("$bin" train 'linen.Dense(1)' --seed 0 $TD --steps 2 --restore "$d/tl.msgpack" 2>&1)" "$(cat "$d/want4")"
"$bin" train 'nnx.Linear(1, 1)' --seed 0 $TD --steps 2 --save "$d/tn2.msgpack" >/dev/null
ok "$bin" convert "$d/tn2.msgpack" "$d/tl2.msgpack" --layout linen-train
same "Linen resumes an NNX run" "$("$bin" train 'linen.Dense(1)' --seed 0 $TD --steps 2 --restore "$d/tl2.msgpack" 2>&1)" \
    "$("$bin" train 'nnx.Linear(1, 1)' --seed 0 $TD --steps 4 | tail -2)"
"$bin" params 'linen.Dense(2)' --seed 0 --input-shape 1,2 --save "$d/pl.msgpack" >/dev/null
expect_usage_error "linen-train needs a train state" convert "$d/pl.msgpack" "$d/x.msgpack" --layout linen-train

# --- an output folder that does not exist (audit D17): exit 2, the user's path, nothing on stdout
out=$("$bin" convert "$d/pl.msgpack" "$d/nonexist/o.msgpack" 2>"$d/err"); rc=$?
if [ $rc -eq 2 ] && [ -z "$out" ] &&
   [ "$(cat "$d/err")" == "linnx: convert: $d/nonexist/o.msgpack: cannot write: No such file or directory" ]; then
    pass=$((pass + 1))
else
    fail=$((fail + 1)); echo "FAIL: convert into a missing folder: exit $rc, stdout '$out', stderr '$(cat "$d/err")'"
fi

cli_finish
