#!/usr/bin/env bash
# The data of `linnx grad` / `linnx train`: shape rules (x and y are read as shaped, 0-d included:
# one unbatched example with an integer label or a scalar target is loss(model(x), y).mean(); only
# --batch-size needs an example axis), integer data converted exactly to int32 with out-of-range
# values refused (.npy, safetensors, --y, float labels, token ids), and --data names holding commas.
# Hand-computed numbers (zero-initialised layers) and equality with the batched spelling.
# Usage: cli_data.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_data.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"

ok() { if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $*"; fi; }
values() { sed -n "s|^$1 [^:]*: ||p" <<<"$2"; } # the numbers of one line by its path (and type)
nums() { cut -d: -f2 <<<"$1" | tr '\n' ' '; }    # every line's numbers, in order
CE=softmax_cross_entropy_with_integer_labels
NZ='nnx.Linear(3, 4, kernel_init=nnx.initializers.zeros)'

# ---- one example, an integer label of shape (): logits (4,) = 0, label 2: loss log 4, dlogits =
# softmax - onehot = (.25, .25, -.75, .25), dkernel = x (outer) dlogits
g=$("$bin" grad "$NZ" --seed 0 --x 1,2,3 --y 2 --y-shape '()' --loss $CE)
ok numbers_close "$(sed -n 's/^loss float32\[\]: //p' <<<"$g")" 1.38629436 1e-6
ok numbers_close "$(values 'bias Param' "$g")" ".25 .25 -.75 .25" 1e-6
ok numbers_close "$(values 'kernel Param' "$g")" ".25 .25 -.75 .25 .5 .5 -1.5 .5 .75 .75 -2.25 .75" 1e-6
ok grep -q '^kernel Param float32\[3,4\]: ' <<<"$g"
# every style: the same numbers as the batch of that one example ((1, 3) and (1,))
for spec in 'nnx.Linear(3, 4)' 'linen.Dense(4)' 'bridge.ToNNX(linen.Dense(4))' 'bridge.to_linen(nnx.Linear, 3, 4)' \
            'linen.Sequential(linen.Dense(5), linen.relu, bridge.to_linen(nnx.Linear, 5, 4))'; do
    a=$("$bin" grad "$spec" --seed 1 --x 1,2,3 --y 2 --y-shape '()' --loss $CE)
    b=$("$bin" grad "$spec" --seed 1 --x 1,2,3 --x-shape 1,3 --y 2 --y-shape 1 --loss $CE)
    ok test -n "$a"
    ok test "$(nums "$a")" == "$(nums "$b")"
done
# an empty --y-shape is the same 0-d shape
ok test "$("$bin" grad "$NZ" --seed 0 --x 1,2,3 --y 2 --y-shape '' --loss $CE)" == "$g"

# ---- a scalar regression target: pred (1,) = 0 against y () = 4: loss ½·16 = 8, dk = -4·x, db = -4
ZL='linen.Dense(1, kernel_init=linen.initializers.zeros)'
g=$("$bin" grad "$ZL" --seed 0 --x 1,2,3 --y 4 --y-shape '()' --loss l2_loss)
ok test "$g" == "$(printf '%s\n' 'loss float32[]: 8' 'params/kernel float32[3,1]: -4 -8 -12' 'params/bias float32[1]: -4')"
# linnx train without --batch-size: step 0 at 8; sgd(0.1): k = (.4, .8, 1.2), b = .4, pred 6, loss 2
for spec in "$ZL" 'nnx.Linear(3, 1, kernel_init=nnx.initializers.zeros)'; do
    t=$("$bin" train "$spec" --seed 0 --x 1,2,3 --y 4 --y-shape '()' --loss l2_loss --optimizer 'sgd(0.1)' --steps 2)
    ok numbers_close "$(cut -d' ' -f4 <<<"$t" | tr '\n' ' ')" "8 2" 1e-6
    ok test "$(cut -d' ' -f1-3 <<<"$t" | tr '\n' '|')" == "step 0 loss|step 1 loss|"
done
# with --batch-size there is no example axis to take rows from
expect_usage_error "y has shape () (one unbatched example): no example axis to take rows from (--batch-size" \
    train "$ZL" --seed 0 --x 1,2,3 --y 4 --y-shape '()' --loss l2_loss --optimizer 'sgd(0.1)' --steps 1 --batch-size 1
expect_usage_error "x has shape () (one unbatched example)" \
    train "$ZL" --seed 0 --x 1 --x-shape '()' --y 4 --y-shape 1 --loss l2_loss --optimizer 'sgd(0.1)' --steps 1 --batch-size 1
# a 0-d x reaches the model as it is: Linear's dot_general cannot take it (one line, exit 2)
expect_usage_error "linnx: " grad 'nnx.Linear(1, 1)' --seed 0 --x 1 --x-shape '()' --y 4 --y-shape '()' --loss l2_loss
expect_usage_error "--y: 2 values do not fill --y-shape () (1 elements)" grad "$ZL" --seed 0 --x 1,2,3 --y 4,5 --y-shape '()' --loss l2_loss

# ---- the same one example from files: .npy x (3,) float32, y () int64; safetensors x F64 [3], y I64 []
F32_123='\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40'
F64_123='\x00\x00\x00\x00\x00\x00\xf0\x3f\x00\x00\x00\x00\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x08\x40'
I64() { # a decimal int64 as 8 little-endian printf escapes
    local v=$(( $1 & 0xFFFFFFFFFFFFFFFF )) i out=""
    for i in 0 1 2 3 4 5 6 7; do out="$out\\x$(printf %02x $(( (v >> (8 * i)) & 255 )))"; done
    printf '%s' "$out"
}
mkdir -p "$cli_tmp/one"
npy "$cli_tmp/one/x.npy" '<f4' '(3,)' "$F32_123"
npy "$cli_tmp/one/y.npy" '<i8' '()' "$(I64 2)"
want=$("$bin" grad 'nnx.Linear(3, 4)' --seed 1 --x 1,2,3 --y 2 --y-shape '()' --loss $CE)
ok test "$("$bin" grad 'nnx.Linear(3, 4)' --seed 1 --data "$cli_tmp/one" --loss $CE)" == "$want"
safet "$cli_tmp/one.safetensors" '{"x":{"dtype":"F64","shape":[3],"data_offsets":[0,24]},"y":{"dtype":"I64","shape":[],"data_offsets":[24,32]}}' "$F64_123$(I64 2)"
ok test "$("$bin" grad 'nnx.Linear(3, 4)' --seed 1 --data "$cli_tmp/one.safetensors" --loss $CE)" == "$want"

# ---- integers beyond int32 are refused, not wrapped; the int32 extremes are read exactly
# (zero-initialised Linear(1, 1): pred 0, y = -2^31 or 2^31 - 1 -> 2^31 in float32: loss 2^61)
NZ1='nnx.Linear(1, 1, kernel_init=nnx.initializers.zeros)'
mkdir -p "$cli_tmp/big" "$cli_tmp/min" "$cli_tmp/fbig"
npy "$cli_tmp/big/x.npy" '<f4' '(1, 1)' '\x00\x00\x80\x3f'
cp "$cli_tmp/big/x.npy" "$cli_tmp/min/x.npy"
cp "$cli_tmp/big/x.npy" "$cli_tmp/fbig/x.npy"
npy "$cli_tmp/big/y.npy" '<i8' '(1, 1)' "$(I64 3000000000)"
npy "$cli_tmp/min/y.npy" '<i8' '(1, 1)' "$(I64 -2147483648)"
npy "$cli_tmp/fbig/y.npy" '<f4' '(1,)' '\x5e\xd0\x32\x4f' # 3e9
expect_usage_error "$cli_tmp/big/y.npy: int64 value 3000000000 (flat index 0) is outside int32 (-2147483648..2147483647)" \
    grad "$NZ1" --seed 0 --data "$cli_tmp/big" --loss l2_loss
expect_usage_error "int64 value 3000000000 (flat index 0) is outside int32" grad "$NZ1" --seed 0 --data "$cli_tmp/big" --loss $CE
ok test "$("$bin" grad "$NZ1" --seed 0 --data "$cli_tmp/min" --loss l2_loss | head -1)" == "loss float32[]: 2.30584301e+18"
expect_usage_error "--data: y holds 3e+09, outside the int32 range of integer labels" grad "$NZ1" --seed 0 --data "$cli_tmp/fbig" --loss $CE
X1='\x00\x00\x00\x00\x00\x00\xf0\x3f'
safet "$cli_tmp/big.safetensors" '{"x":{"dtype":"F64","shape":[1,1],"data_offsets":[0,8]},"y":{"dtype":"I64","shape":[1,1],"data_offsets":[8,16]}}' "$X1$(I64 3000000000)"
safet "$cli_tmp/neg.safetensors" '{"x":{"dtype":"F64","shape":[1,1],"data_offsets":[0,8]},"y":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}' "$X1$(I64 -4294967298)"
safet "$cli_tmp/max.safetensors" '{"x":{"dtype":"F64","shape":[1,1],"data_offsets":[0,8]},"y":{"dtype":"I64","shape":[1,1],"data_offsets":[8,16]}}' "$X1$(I64 2147483647)"
expect_usage_error "$cli_tmp/big.safetensors: 'y' holds 3000000000 (flat index 0), outside int32" grad "$NZ1" --seed 0 --data "$cli_tmp/big.safetensors" --loss l2_loss
expect_usage_error "'y' holds -4294967298 (flat index 0), outside int32" grad 'nnx.Linear(1, 2)' --seed 0 --data "$cli_tmp/neg.safetensors" --loss $CE
ok test "$("$bin" grad "$NZ1" --seed 0 --data "$cli_tmp/max.safetensors" --loss l2_loss | head -1)" == "loss float32[]: 2.30584301e+18"
# every numpy integer type: int8 -3, int16 -300, uint16 65535, uint32 4000000 read exactly (the
# y of l2_loss against a zero prediction: loss = mean(½y²) of the four); uint32 and uint64 beyond
# int32 refused
mkdir -p "$cli_tmp/ints" "$cli_tmp/u4big" "$cli_tmp/u8big" "$cli_tmp/i2"
npy "$cli_tmp/ints/x.npy" '<f4' '(1, 1)' '\x00\x00\x80\x3f'
for d in u4big u8big i2; do cp "$cli_tmp/ints/x.npy" "$cli_tmp/$d/"; done
npy "$cli_tmp/i2/y.npy" '<i2' '(1, 1)' '\xd4\xfe' # -300
npy "$cli_tmp/u4big/y.npy" '<u4' '(1, 1)' '\x00\x00\x00\x80' # 2^31
npy "$cli_tmp/u8big/y.npy" '<u8' '(1, 1)' '\xff\xff\xff\xff\xff\xff\xff\xff'
ok test "$("$bin" grad "$NZ1" --seed 0 --data "$cli_tmp/i2" --loss l2_loss | head -1)" == "loss float32[]: 45000"
expect_usage_error "uint32 value 2147483648 (flat index 0) is outside int32" grad "$NZ1" --seed 0 --data "$cli_tmp/u4big" --loss l2_loss
expect_usage_error "uint64 value 18446744073709551615 (flat index 0) is outside int32" grad "$NZ1" --seed 0 --data "$cli_tmp/u8big" --loss l2_loss
for t in "|i1;\xfd;-3" "<u2;\xff\xff;65535" "<u4;\x00\x09\x3d\x00;4000000" "<i8;$(I64 -7);-7"; do
    IFS=';' read -r descr bytes v <<<"$t"
    npy "$cli_tmp/ints/y.npy" "$descr" '(1,)' "$bytes"
    ok test "$("$bin" grad "$NZ1" --seed 0 --data "$cli_tmp/ints" --loss l2_loss | head -1)" == \
            "$("$bin" grad "$NZ1" --seed 0 --x 1 --x-shape 1,1 --y "$v" --loss l2_loss | head -1)"
done
# integer labels on the command line: integers in the int32 range
expect_usage_error "--y: 3e+09 is outside the int32 range of integer labels" grad 'nnx.Linear(1, 2)' --seed 0 --x 1 --x-shape 1,1 --y 3e9 --loss $CE
expect_usage_error "--y: inf is outside the int32 range" grad 'nnx.Linear(1, 2)' --seed 0 --x 1 --x-shape 1,1 --y inf --loss $CE
expect_usage_error "--y: nan is not an integer label" grad 'nnx.Linear(1, 2)' --seed 0 --x 1 --x-shape 1,1 --y -nan --loss $CE
expect_usage_error "--y: 0.5 is not an integer label" grad 'nnx.Linear(1, 2)' --seed 0 --x 1 --x-shape 1,1 --y 0.5 --loss $CE
# token ids for a model that starts with an Embed: integers in the int32 range as well
expect_usage_error "x holds 1.5, not an integer token id (the model's first layer is an Embed" grad 'nnx.Embed(10, 4)' --seed 0 --x 1.5,2 --y 0 --y-shape '()' --loss l2_loss
expect_usage_error "x holds 3e+09, outside int32" train 'linen.Embed(10, 4)' --seed 0 --x 3e9 --y 0 --loss l2_loss --optimizer 'sgd(0.1)' --steps 1

# ---- value lists (--x, --y) as strict as the integer lists: exactly N,N,... or a Python tuple/list
# (spaces and one trailing comma inside the brackets only); numbers as Python's float() reads them
for bad in '1,2,3,' '1,2,3 ' ' 1,2,3' '1,,3' '(1, 2, 3' '1, 2, 3'; do
    expect_usage_error "is not a list of numbers" grad 'linen.Dense(1)' --seed 0 --x "$bad" --x-shape 3 --y 1 --y-shape '()' --loss l2_loss
done
for bad in '0x1p3,1,2' 'nan(123),1,2' '1e,2,3' '.,2,3' '1_0,2,3'; do
    expect_usage_error "is not a number" grad 'linen.Dense(1)' --seed 0 --x "$bad" --x-shape 3 --y 1 --y-shape '()' --loss l2_loss
done
vwant=$("$bin" grad 'linen.Dense(1)' --seed 0 --x 1,2,3 --x-shape 3 --y 1 --y-shape '()' --loss l2_loss)
for good in '(1, 2, 3,)' '[1,2,3]' '( 1 , 2.0 , 3e0 )' '+1,2.,30e-1'; do
    ok test "$("$bin" grad 'linen.Dense(1)' --seed 0 --x "$good" --x-shape 3 --y 1 --y-shape '()' --loss l2_loss)" == "$vwant"
done
ok test "$("$bin" grad 'linen.Dense(1)' --seed 0 --x Infinity,NAN,-inf --x-shape 3 --y 1 --y-shape '()' --loss l2_loss | head -1)" == \
        "loss float32[]: nan"

# ---- the .npy header, as numpy's reader takes it (ast.literal_eval, exactly the keys descr,
# fortran_order and shape, a bool, a tuple of ints, versions 1.0/2.0/3.0): the Python forms of the
# same header read the same array; what numpy refuses is refused (exit 2, one line), and so is a
# key given twice (numpy would keep the last)
npyh() { # file major header-text data-as-printf-escapes (the header as given, no padding)
    local len=${#3}
    printf '\x93NUMPY'"\\x$(printf %02x "$2")"'\x00' >"$1"
    if [ "$2" = 1 ]; then printf "\\x$(printf %02x $((len % 256)))\\x$(printf %02x $((len / 256)))" >>"$1"
    else printf "\\x$(printf %02x $((len % 256)))\\x$(printf %02x $((len / 256)))\\x00\\x00" >>"$1"; fi
    printf '%s' "$3" >>"$1"
    printf "$4" >>"$1"
}
X12='\x00\x00\x80\x3f\x00\x00\x00\x40' # 1, 2
Y34='\x00\x00\x40\x40\x00\x00\x80\x40' # 3, 4
mkdir -p "$cli_tmp/h"
npyh "$cli_tmp/h/y.npy" 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }"$'\n' "$Y34"
hdr_want=$("$bin" grad 'nnx.Linear(1, 1)' --seed 0 --x 1,2 --x-shape 2,1 --y 3,4 --y-shape 2,1 --loss l2_loss)
hdr_ok() { # major header: x.npy with this header reads as (2, 1) float32 [1, 2]
    npyh "$cli_tmp/h/x.npy" "$1" "$2" "$X12"
    local got
    got=$("$bin" grad 'nnx.Linear(1, 1)' --seed 0 --data "$cli_tmp/h/x.npy,$cli_tmp/h/y.npy" --loss l2_loss 2>&1)
    if [ "$got" = "$hdr_want" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: header v$1 $2 -> $got"; fi
}
hdr_bad() { # major header needle
    npyh "$cli_tmp/h/x.npy" "$1" "$2" "$X12"
    expect_usage_error "$3" grad 'nnx.Linear(1, 1)' --seed 0 --data "$cli_tmp/h/x.npy,$cli_tmp/h/y.npy" --loss l2_loss
}
hdr_ok 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }"$'\n'
# the data the header announces must be in the file before anything is allocated: a 100-byte file
# asking for 800 MB (or 128 GB, with no array limit) is a bad file (exit 2), not an allocation
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (100000000, 2), }" \
    "fewer values than its shape holds (the header's shape needs 800000000 bytes, the file has 8 after the header)"
# an array over --max-array-bytes is a bad input naming the file (exit 2), as a safetensors tensor is
npyh "$cli_tmp/h/x.npy" 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }" "$X12"
expect_usage_error "--data: $cli_tmp/h/x.npy: shape: an array of shape (2, 1) needs 8 bytes, over the limit of 4 bytes" \
    grad 'nnx.Linear(1, 1)' --seed 0 --data "$cli_tmp/h/x.npy,$cli_tmp/h/y.npy" --loss l2_loss --max-array-bytes 4
npyh "$cli_tmp/h/x.npy" 1 "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 16000), }" "$X12"
expect_usage_error "the header's shape needs 128000000000 bytes" grad 'nnx.Linear(1, 1)' --seed 0 \
    --data "$cli_tmp/h/x.npy,$cli_tmp/h/y.npy" --loss l2_loss --max-array-bytes 0
hdr_ok 2 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }"$'\n'
hdr_ok 3 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }"$'\n'
hdr_ok 1 '{"shape":(2,1),"fortran_order":False,"descr":"<f4"}'
hdr_ok 1 "{'descr' : ('<f4') ,"$'\n\t'"'fortran_order': (False), 'shape': ((2), +1,) }   "$'\n\n'
hdr_ok 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (0x2, 0b1)}"
hdr_ok 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 1L), }" # Python 2's longs: numpy drops the L (1.0, 2.0)
hdr_bad 3 "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 1L), }" "cannot parse the header: bad integer"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), } trailing" "cannot parse the header: characters after the dict"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': '(2, 1)', }" "the header's shape is not valid (a tuple of ints)"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2), }" "the header's shape is not valid (a tuple of ints)"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2.0, 1), }" "the header's shape is not valid (a tuple of ints)"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 1], }" "a list or dict value in the header"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': 'False', 'shape': (2, 1), }" "the header's fortran_order is not a valid bool"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 1), }" "the header's fortran_order is not a valid bool"
hdr_bad 9 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }" ".npy format version 9.0: only 1.0, 2.0 and 3.0 exist"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), 'shape': (1, 2), }" "the header gives 'shape' twice"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (0002, 1), }" "an integer with leading zeros"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (0_2, 1), }" "an integer with leading zeros"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (--2, 1), }" "a sign without a number"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 1), }" "the header's shape has a negative dimension"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), 'x': 1}" "keys must be exactly 'descr', 'fortran_order' and 'shape'"
hdr_bad 1 "{'descr': '<f4', 'shape': (2, 1)}" "keys must be exactly 'descr', 'fortran_order' and 'shape'"
hdr_bad 1 "{'descr': '<' 'f4', 'fortran_order': False, 'shape': (2, 1)}" "adjacent strings in the header are not supported"
hdr_bad 1 "{'descr': '\\x3cf4', 'fortran_order': False, 'shape': (2, 1)}" "cannot parse the header: a bad string"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1)} # c" "cannot parse the header: characters after the dict"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, nan)}" "a name that is not True, False or None"
hdr_bad 1 "['descr', '<f4']" "the header is not a dictionary"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1)" "cannot parse the header: expected ',' or '}'"
hdr_bad 1 "$(printf '%*s' 40 '' | tr ' ' '(')" "the header is not a dictionary"
hdr_bad 1 "{'descr': '<f4', 'fortran_order': False, 'shape': $(printf '%*s' 40 '' | tr ' ' '(')2$(printf '%*s' 40 '' | tr ' ' ')')}" "the header nests too deeply"

# ---- --data names with commas: an existing path is one file (or directory); otherwise the comma
# where both halves exist splits X.npy,Y.npy
mkdir -p "$cli_tmp/d,1" "$cli_tmp/e,2"
cp "$cli_tmp/one/x.npy" "$cli_tmp/one/y.npy" "$cli_tmp/d,1/"
cp "$cli_tmp/one.safetensors" "$cli_tmp/a,b.safetensors"
cp "$cli_tmp/one/x.npy" "$cli_tmp/e,2/x,1.npy"
cp "$cli_tmp/one/y.npy" "$cli_tmp/e,2/y,1.npy"
ok test "$("$bin" grad 'nnx.Linear(3, 4)' --seed 1 --data "$cli_tmp/a,b.safetensors" --loss $CE)" == "$want"
ok test "$("$bin" grad 'nnx.Linear(3, 4)' --seed 1 --data "$cli_tmp/d,1" --loss $CE)" == "$want"
ok test "$("$bin" grad 'nnx.Linear(3, 4)' --seed 1 --data "$cli_tmp/e,2/x,1.npy,$cli_tmp/e,2/y,1.npy" --loss $CE)" == "$want"
ok test "$("$bin" train 'nnx.Linear(3, 4)' --seed 1 --data "$cli_tmp/a,b.safetensors" --loss $CE --optimizer 'sgd(0.1)' --steps 1)" == \
        "$("$bin" train 'nnx.Linear(3, 4)' --seed 1 --data "$cli_tmp/one.safetensors" --loss $CE --optimizer 'sgd(0.1)' --steps 1)"
# a name that is neither: split at the first comma, the error names the missing half
expect_usage_error "--data: cannot open $cli_tmp/nope: No such file or directory" grad 'nnx.Linear(3, 4)' --seed 1 --data "$cli_tmp/nope,$cli_tmp/one/y.npy" --loss $CE

cli_finish
