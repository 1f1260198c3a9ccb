#!/usr/bin/env bash
# Hostile command lines (issue 12): every one is refused with one `linnx: ...` line and exit 2,
# or gives the exact answer; none reaches undefined behaviour (the sanitizer build runs this too).
# Usage: cli_harden.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_harden.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"

# ---- checked shape arithmetic (item 1)
conv() { expect_usage_error "$1" params "linen.Conv(16, (3,3), $2)" --seed 0 --input-shape 1,8,8,3; }
conv "conv_general: padding (-9223372036854775807, -9223372036854775807) of dilated input size 8 at spatial axis 1 overflows int64" "padding=-9223372036854775807"
conv "conv_general: input size 8 dilated by lhs_dilation 4611686018427387904 at spatial axis 1 overflows int64" "input_dilation=4611686018427387904"
conv "conv_general: window 3 dilated by rhs_dilation 4611686018427387904 at spatial axis 1 overflows int64" "kernel_dilation=4611686018427387904"
conv "Negative padding is larger than the size of the corresponding dimension: got padding (-5, -5) for input size 8" "padding=-5"
conv "conv_general_dilated window_strides must have every element be positive, got (0, 0)" "strides=0"
conv "conv_general_dilated lhs_dilation must have every element be positive, got (-1, -1)" "input_dilation=-1"
expect_usage_error "conv_general: padding (-9223372036854775807, -9223372036854775807)" \
    params 'bridge.ToNNX(linen.Conv(16, (3,3), padding=-9223372036854775807))' --seed 0 --input-shape 1,8,8,3
expect_usage_error "conv_general_dilated window_strides must have every element be positive, got (0, 0)" \
    params 'bridge.ToNNX(linen.Conv(16, (3,3), strides=0))' --seed 0 --input-shape 1,8,8,3

# A stride past the input is valid: SAME gives one output position (JAX does the same), so init
# runs and prints the usual kernel and bias.
out=$("$bin" params 'linen.Conv(2, (3,3), strides=9223372036854775807)' --seed 0 --input-shape 1,8,8,1 2>&1); rc=$?
if [ $rc -eq 0 ] && [[ $out == "params/kernel float32[3,3,1,2]: "* ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: huge stride -> $rc $out"; fi

# ---- strict lists and numbers (item 3): exactly N,N,... or () / '' for a scalar
for v in '(1 2)' '1)2' '((((' ',' '2,3,,' '4,' '1,,2' ' 1' '(4, 8)' '1 2'; do
    expect_usage_error "--shape: '$v' is not a list of integers N,N,... (or () for a scalar)" random normal --seed 0 --shape "$v"
done
expect_usage_error "--key: '1)2,3' is not a list of integers" key --key '1)2,3'
expect_usage_error "--input-shape: '(1 2)' is not a list of integers" params 'linen.Dense(2)' --seed 0 --input-shape '(1 2)'
expect_usage_error "--seed: ' 1' is not an integer in the int64 range" key --seed ' 1'
expect_usage_error "--seed: '1 ' is not an integer" key --seed '1 '
expect_usage_error "--shape: '99999999999999999999' is not an integer in the int64 range" random normal --seed 0 --shape 99999999999999999999
for v in '()' ''; do # the scalar, documented
    out=$("$bin" random normal --seed 0 --shape "$v" 2>&1); rc=$?
    if [ $rc -eq 0 ] && [ "$out" == "1.62264216" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: --shape '$v' -> $rc $out"; fi
done

# ---- bounded work (item 4): sizes from the command line are checked before anything is allocated
expect_usage_error "--input-shape: an array of shape (1, 2147483648) needs 8589934592 bytes, over the limit of 1073741824 bytes per array (--max-array-bytes)" \
    params 'linen.Dense(3)' --seed 0 --input-shape 1,2147483648
expect_usage_error "--input-shape: an array of shape (4611686018427387904, 4) is too big, over the limit" \
    params 'linen.Dense(3)' --seed 0 --input-shape 4611686018427387904,4
expect_usage_error "--shape: an array of shape (3,) needs 12 bytes, over the limit of 8 bytes per array (--max-array-bytes)" \
    random normal --seed 0 --shape 3 --max-array-bytes=8
x1000=$(printf '1%.0s,' $(seq 999))1
expect_usage_error "--features: an array of shape (1000, 1048576) needs 4194304000 bytes, over the limit" \
    example nnx-inside-linen --seed 0 --x "$x1000" --features 1048576
expect_usage_error "--max-array-bytes: '12Q' is not a byte count" key --seed 0 --max-array-bytes 12Q
# a size inside a spec meets the library's limit: an allocation failure, exit 1, naming the option
out=$("$bin" params 'linen.Dense(1073741824)' --seed 0 --input-shape 1,4 2>&1 >/dev/null); rc=$?
if [ $rc -eq 1 ] && [[ $out == *"needs 17179869184 bytes, over the limit of 1073741824 bytes per array (--max-array-bytes)" ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: Dense(2^30) -> $rc $out"; fi
# the limit can be raised: 2 floats fit in 8 bytes
out=$("$bin" random normal --seed 0 --shape 2 --max-array-bytes 8 2>&1); rc=$?
if [ $rc -eq 0 ] && [ "$out" == "1.62264216 2.02526474" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: --max-array-bytes 8 -> $rc $out"; fi
# 40,000 string literals in one spec: linear work (it used to allocate the rest of the input per
# literal: 547 MB); refused quickly for its argument count, and its echo is cut
big="linen.Dense($(printf "'',%.0s" $(seq 40000))'')"
start=$(date +%s)
expect_usage_error "params: too many arguments" params "$big" --seed 0 --input-shape 1,4
[ $(( $(date +%s) - start )) -lt 5 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: 40,000 literals took too long"; }

# ---- one-line errors (item 6)
expect_usage_error "which command? (linnx --help lists them)" 
expect_usage_error "example: which example? (linnx example --help lists them)" example
long="linen.Dense($(printf '1,%.0s' $(seq 30000))1 x)"
out=$("$bin" params "$long" --seed 0 --input-shape 1,4 2>&1 >/dev/null); rc=$?
if [ $rc -eq 2 ] && [ ${#out} -lt 200 ] && [[ $out == "linnx: params: expected ',' or ')' at column 60015: ...1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1 ^x)" ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: long spec error: $rc ${out:0:300}"; fi
expect_usage_error "expected ',' or ')' at column 14: linen.Dense(8^" params 'linen.Dense(8' --seed 0 --input-shape 1,4
if "$bin" --help | grep -q "max-array-bytes" && [ "$("$bin" --help | wc -l)" -gt 3 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: --help"; fi

cli_finish
