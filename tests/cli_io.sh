#!/usr/bin/env bash
# `linnx inspect`, `linnx convert` and `linnx params --save`: the golden safetensors vector and
# the Flax TrainState msgpack vector of spec/checkpoints.md (written here with printf), format and
# layout round trips, and the usage errors. Usage: cli_io.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_io.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"
d=$cli_tmp

# hex bytes (and 'quoted' ASCII) -> file
hexfile() { # out, then the bytes
    local out=$1 tok s=""; shift
    for tok in $*; do
        case $tok in
        \'*\') s+="${tok:1:${#tok}-2}" ;;
        *) s+="\\x$tok" ;;
        esac
    done
    printf "$s" >"$out"
}

# $1: command (words), expected stdout in the here-doc
check_out() {
    local got rc
    got=$(eval "\"$bin\" $1" 2>"$d/err"); rc=$?
    if [ $rc -eq 0 ] && [ "$got" == "$(cat)" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: linnx $1 (exit $rc)"; cat "$d/err"; printf '%s\n' "$got"; fi
}

# The reference crate's golden vector (c-anchors §4.3): attn.0, F32 [1,2,3], 0..5.
hexfile "$d/golden.safetensors" 40 00 00 00 00 00 00 00 \
    "'{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}'" \
    00 00 00 00 00 00 80 3f 00 00 00 40 00 00 40 40 00 00 80 40 00 00 a0 40
check_out "inspect '$d/golden.safetensors'" <<EOT
$d/golden.safetensors: safetensors, 96 bytes, 1 leaves
path    dtype    shape            params         bytes
attn/0  float32  (1, 2, 3)             6            24
Total                                  6            24
EOT

# __metadata__, an empty bfloat16 tensor, a float64 scalar (a dtype linnx keeps as raw bytes)
cp "$here/fuzz/seeds/safetensors/meta" "$d/meta.safetensors"
check_out "inspect '$d/meta.safetensors' | tail -n +2" <<EOT
__metadata__ format: pt
path   dtype     shape         params         bytes
a      bfloat16  (2, 0)             0             0
b      float64   ()                 1             8
Total                               1             8
EOT
# float64 survives safetensors -> msgpack -> safetensors byte for byte
"$bin" convert "$d/meta.safetensors" "$d/meta.msgpack" >/dev/null && "$bin" convert "$d/meta.msgpack" "$d/meta2.safetensors" >/dev/null
tail -c 8 "$d/meta2.safetensors" | cmp -s - <(tail -c 8 "$d/meta.safetensors") && pass=$((pass + 1)) \
    || { fail=$((fail + 1)); echo "FAIL: float64 bytes changed"; }

# to_bytes(TrainState) with adamw (checkpoints.md §C.1, 132 bytes)
hexfile "$d/ts.msgpack" 83 a4 "'step'" 01 a6 "'params'" 81 a1 "'w'" c7 11 01 93 91 01 a7 "'float32'" c4 04 00 00 00 3f \
    a9 "'opt_state'" 83 a1 "'0'" 83 a5 "'count'" c7 0e 01 93 90 a5 "'int32'" c4 04 01 00 00 00 \
    a2 "'mu'" 81 a1 "'w'" c7 11 01 93 91 01 a7 "'float32'" c4 04 cd cc cc 3d \
    a2 "'nu'" 81 a1 "'w'" c7 11 01 93 91 01 a7 "'float32'" c4 04 6f 12 83 3a a1 "'1'" 80 a1 "'2'" 80
check_out "inspect '$d/ts.msgpack'" <<EOT
$d/ts.msgpack: Flax msgpack, 132 bytes, 5 leaves
path               dtype    shape        params         bytes
step               int      1                 0             0
params/w           float32  (1,)              1             4
opt_state/0/count  int32    ()                1             4
opt_state/0/mu/w   float32  (1,)              1             4
opt_state/0/nu/w   float32  (1,)              1             4
Total                                         4            16
EOT
# msgpack -> msgpack keeps every byte
"$bin" convert "$d/ts.msgpack" "$d/ts2.msgpack" >/dev/null
if cmp -s "$d/ts.msgpack" "$d/ts2.msgpack"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: msgpack copy differs"; fi

# params --save in both formats; safetensors <-> msgpack; the same table either way
"$bin" params 'linen.Dense(3)' --seed 0 --input-shape 1,2 --save "$d/dense.msgpack" >"$d/printed"
"$bin" params 'linen.Dense(3)' --seed 0 --input-shape 1,2 --save "$d/dense.safetensors" >/dev/null
check_out "inspect '$d/dense.msgpack' | tail -n +2" <<EOT
path           dtype    shape         params         bytes
params/kernel  float32  (2, 3)             6            24
params/bias    float32  (3,)               3            12
Total                                      9            36
EOT
# the header of the safetensors file: names joined with '.', sorted by the reference writer
hdr=$(dd if="$d/dense.safetensors" bs=1 skip=8 count=200 2>/dev/null | tr -d '\0')
case $hdr in
'{"params.bias":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"params.kernel":{"dtype":"F32","shape":[2,3],"data_offsets":[12,36]}}'*)
    pass=$((pass + 1)) ;;
*) fail=$((fail + 1)); echo "FAIL: safetensors header: $hdr" ;;
esac
"$bin" convert "$d/dense.safetensors" "$d/back.msgpack" >/dev/null
diff <("$bin" inspect "$d/back.msgpack" | tail -n +2 | sort) <("$bin" inspect "$d/dense.msgpack" | tail -n +2 | sort) >/dev/null \
    && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: safetensors -> msgpack changed the table"; }

# layouts: linen -> maxtext-nnx -> maxtext-linen -> linen
check_out "convert '$d/dense.msgpack' '$d/mt.msgpack' --layout maxtext-nnx | sed 's|$d/||g'" <<EOT
dense.msgpack (linen) -> mt.msgpack (maxtext-nnx, msgpack): 3 leaves, 10 params
EOT
# keys sorted, as Flax's msgpack_serialize writes them
check_out "inspect '$d/mt.msgpack' | tail -n +2" <<EOT
path            dtype    shape         params         bytes
model/bias      float32  (3,)               3            12
model/kernel    float32  (2, 3)             6            24
optimizer/step  uint32   ()                 1             4
Total                                      10            40
EOT
check_out "convert '$d/mt.msgpack' '$d/ml.safetensors' --layout maxtext-linen | sed 's|$d/||g'" <<EOT
mt.msgpack (maxtext-nnx) -> ml.safetensors (maxtext-linen, safetensors): 3 leaves, 10 params
EOT
check_out "inspect '$d/ml.safetensors' | tail -n +2" <<EOT
path                  dtype    shape         params         bytes
params/params/bias    float32  (3,)               3            12
params/params/kernel  float32  (2, 3)             6            24
step                  int32    ()                 1             4
Total                                            10            40
EOT
"$bin" convert "$d/ml.safetensors" "$d/lin.msgpack" --from maxtext-linen --layout linen >/dev/null
"$bin" convert "$d/dense.msgpack" "$d/lin_ref.msgpack" --layout linen >/dev/null
diff <("$bin" inspect "$d/lin.msgpack" | tail -n +2 | sort) <("$bin" inspect "$d/lin_ref.msgpack" | tail -n +2 | sort) >/dev/null \
    && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: maxtext round trip changed the model"; }
# the bridge wrapper: NNX linear/kernel <-> Linen params/ToLinen_0/...
"$bin" params 'nnx.Linear(2, 3)' --seed 0 --save "$d/lin_nnx.msgpack" >/dev/null
check_out "convert '$d/lin_nnx.msgpack' '$d/wrapped.msgpack' --layout linen --wrapper ToLinen_0 >/dev/null && \"$bin\" inspect '$d/wrapped.msgpack' | tail -n +2" <<EOT
path                     dtype    shape         params         bytes
params/ToLinen_0/bias    float32  (3,)               3            12
params/ToLinen_0/kernel  float32  (2, 3)             6            24
Total                                                9            36
EOT
"$bin" convert "$d/wrapped.msgpack" "$d/unwrapped.msgpack" --layout nnx >/dev/null
cmp -s "$d/unwrapped.msgpack" "$d/lin_nnx.msgpack" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: unwrap differs"; }

# errors
hexfile "$d/trunc.msgpack" 81 a1 "'a'" c7 21 01 93 91 05
expect_usage_error "at byte 6: expected 33 bytes of an ext payload" inspect "$d/trunc.msgpack"
hexfile "$d/hole.safetensors" 36 00 00 00 00 00 00 00 \
    "'{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}'" 00 00 00 00 00 00 00 00
expect_usage_error "data_offsets begin at 4, expected 0 (a hole before it)" inspect "$d/hole.safetensors"
expect_usage_error "is neither a safetensors file nor a Flax msgpack map" inspect "$here/cli_io.sh"
expect_usage_error "which file?" inspect
expect_usage_error "unknown layout 'orbax'" convert "$d/ts.msgpack" "$d/x.msgpack" --layout orbax
expect_usage_error "unknown format 'npz'" convert "$d/ts.msgpack" "$d/x.msgpack" --format npz
expect_usage_error "cannot tell OUT's format" convert "$d/ts.msgpack" "$d/x.bin"
expect_usage_error "need IN and OUT" convert "$d/ts.msgpack"
expect_usage_error "safetensors holds arrays only: step is 1" convert "$d/ts.msgpack" "$d/x.safetensors"
expect_usage_error "must end in .msgpack or .safetensors" params 'linen.Dense(3)' --seed 0 --input-shape 1,2 --save "$d/x.npz"
# valid files the readers used to refuse (audit D4): to_bytes of a bare array (c-anchors §4.2),
# a root msgpack array, a safetensors header after whitespace, names kept whole with --sep /
hexfile "$d/bare.msgpack" c7 21 01 93 91 05 a7 "'float32'" c4 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
check_out "inspect '$d/bare.msgpack' | tail -n +2" <<EOT
path   dtype    shape        params         bytes
.      float32  (5,)              5            20
Total                             5            20
EOT
hexfile "$d/rootarr.msgpack" 92 01 81 a1 "'w'" c3
check_out "inspect '$d/rootarr.msgpack' | tail -n +2" <<EOT
path   dtype  shape        params         bytes
0      int    1                 0             0
1/w    bool   True              0             0
Total                           0             0
EOT
h='  {"h.0":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"h.0.attn":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}'
{ printf "\\x$(printf %02x ${#h})\\x00\\x00\\x00\\x00\\x00\\x00\\x00"; printf '%s' "$h"; printf '\x00\x00\x80\x3f\x01\x02'; } >"$d/leadws.safetensors"
expect_usage_error "tensor 'h.0.attn': tree: cannot set 'h/0/attn'" inspect "$d/leadws.safetensors"
check_out "inspect '$d/leadws.safetensors' --sep / | tail -n +2" <<EOT
path      dtype    shape        params         bytes
h.0       float32  ()                1             4
h.0.attn  uint8    (2,)              2             2
Total                                3             6
EOT
hexfile "$d/slashkey.msgpack" 81 a3 "'a/b'" 01
expect_usage_error "at byte 1: the map key 'a/b' contains '/': a linnx tree key cannot" inspect "$d/slashkey.msgpack"
# a header length past the end names byte 0 (it used to be 'neither ... nor')
hexfile "$d/hdrbeyond.safetensors" 40 42 0f 00 00 00 00 00 "'{}'"
expect_usage_error "safetensors: at byte 0: header length 1000000 runs past the end of the input (10 bytes)" inspect "$d/hdrbeyond.safetensors"
# an array in a file over --max-array-bytes is bad input: exit 2, like every other reader error (audit D7)
expect_usage_error "msgpack: at byte 14: the array float32(5,) needs 20 bytes, over the limit of 4 bytes per array (--max-array-bytes)" \
    inspect "$d/bare.msgpack" --max-array-bytes 4
hexfile "$d/one.msgpack" 81 a1 "'a'" c7 21 01 93 91 05 a7 "'float32'" c4 14 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
expect_usage_error "msgpack: at byte 17: the array float32(5,) needs 20 bytes, over the limit of 16 bytes per array (--max-array-bytes)" \
    convert "$d/one.msgpack" "$d/x.safetensors" --max-array-bytes 16
out=$("$bin" inspect "$d/missing.msgpack" 2>&1); rc=$?
[ $rc -ne 0 ] && [[ $out == *"cannot open"* ]] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: missing file: $out"; }


# --unscan / --scan (docs/stacking.md; train states and round trips in cli_convert.sh): this tree
# is NNX-shaped, where params/layers/{0,1} is an nnx.List (already unrolled); a prefix whose leaves
# disagree on the layer count fails naming both.
expect_usage_error "params/layers is already unrolled (an nnx.List: params/layers/0, params/layers/1, ...)" convert "$here/fixtures/ckpt_flax_tree.msgpack" "$d/x.msgpack" --unscan layers --params-axis 0
expect_usage_error "convert: --unscan: params/Dense_0/bias has shape (4,): 4 layers on axis 0, but params/Dense_0/kernel has 3" convert "$here/fixtures/ckpt_flax_tree.msgpack" "$d/x.msgpack" --unscan Dense_0 --params-axis 0
expect_usage_error "give one of --unscan and --scan" convert "$here/fixtures/ckpt_flax_tree.msgpack" "$d/x.msgpack" --unscan a --scan b

# convert and inspect count parameters by one rule (every array leaf's element count, raw numpy
# arrays and scalars too; Python scalars 0): meta.safetensors holds an empty bfloat16 tensor and a
# float64 scalar (1 param), ts.msgpack a Python int step (0) and 4 float32/int32 elements, the
# fixture tree int32 stacks; the expected counts are the tables above, added by hand.
same_count() { # file, expected count
    local conv insp
    conv=$("$bin" convert "$1" "$d/count.msgpack" | sed -n 's/.*, \([0-9]*\) params$/\1/p')
    insp=$("$bin" inspect "$1" | awk '$1 == "Total" {print $2}')
    if [ "$conv" == "$2" ] && [ "$insp" == "$2" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $1: convert counts '$conv' params, inspect '$insp', expected $2"; fi
}
same_count "$d/meta.safetensors" 1
same_count "$d/ts.msgpack" 4
same_count "$d/mt.msgpack" 10
same_count "$d/dense.msgpack" 9
all=$("$bin" inspect "$here/fixtures/ckpt_flax_tree.msgpack" | awk 'NR > 2 && $1 != "Total" {n += $(NF - 1)} END {print n}')
same_count "$here/fixtures/ckpt_flax_tree.msgpack" "$all"

cli_finish
