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

cli_finish
