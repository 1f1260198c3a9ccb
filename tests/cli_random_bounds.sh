#!/usr/bin/env bash
# `linnx random randint` bounds written as floats: jax.random.randint casts a float bound with
# astype(int), so --minval -3.0 --maxval 5.0 (or 5e0) draws exactly what -3 and 5 draw; a fraction
# (JAX would truncate it silently) is refused with a message naming the value JAX would use, and
# the int32 range and plain non-numbers keep their own messages. Usage: cli_random_bounds.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_random_bounds.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"

same() { # two argument strings: the same stdout, exit 0 both, non-empty
    local a b
    a=$(eval "\"$bin\" $1") && b=$(eval "\"$bin\" $2")
    if [ $? -eq 0 ] && [ -n "$a" ] && [ "$a" == "$b" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1 vs $2: $a / $b"; fi
}
same "random randint --seed 0 --shape 2,5 --minval -3.0 --maxval 5.0" "random randint --seed 0 --shape 2,5 --minval -3 --maxval 5"
same "random randint --seed 7 --shape 9 --minval 1e1 --maxval 1.5e2" "random randint --seed 7 --shape 9 --minval 10 --maxval 150"
same "random randint --seed 7 --shape 9 --minval -0.0 --maxval 2147483647.0" "random randint --seed 7 --shape 9 --minval 0 --maxval 2147483647"
# -3.0 .. 5.0 draws integers in [-3, 5)
out=$("$bin" random randint --seed 3 --shape 200 --minval -3.0 --maxval 5.0)
if [ -n "$out" ] && awk '{ for (i = 1; i <= NF; i++) if ($i < -3 || $i > 4 || $i != int($i)) exit 1 }' <<<"$out"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1)); echo "FAIL: randint -3.0..5.0 out of range: $out"
fi

expect_usage_error "--minval: 0.5 is not an integer (JAX's astype(int) would truncate it to 0: write that)" random randint --seed 0 --shape 3 --minval 0.5 --maxval 3
expect_usage_error "--maxval: -2.75 is not an integer (JAX's astype(int) would truncate it to -2: write that)" random randint --seed 0 --shape 3 --minval -5 --maxval -2.75
expect_usage_error "--maxval: 2147483648.0 is outside the int32 range" random randint --seed 0 --shape 3 --minval 0 --maxval 2147483648.0
expect_usage_error "--maxval: inf is outside the int32 range" random randint --seed 0 --shape 3 --minval 0 --maxval inf
expect_usage_error "--minval: 'nan' is not a number" random randint --seed 0 --shape 3 --minval nan --maxval 3
expect_usage_error "--minval: '3x' is not a number" random randint --seed 0 --shape 3 --minval 3x --maxval 5
expect_usage_error "--minval: ' 3.0' is not a number" random randint --seed 0 --shape 3 --minval ' 3.0' --maxval 5
cli_finish
