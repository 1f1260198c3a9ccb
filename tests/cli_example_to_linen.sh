#!/usr/bin/env bash
# `linnx example nnx-inside-linen` against the reference numbers of
# tests/fixtures/cli_example_to_linen.txt (scripts/gen_to_linen_fixtures.py, from
# spec/jax_random_ref.py), within 1e-6 relative; plus its usage errors (one `linnx: ...` line on
# stderr, exit status 2). Usage: cli_example_to_linen.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_example_to_linen.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"


while IFS='|' read -r seed x features want; do
    case $seed in '#'* | '') continue ;; esac
    got=$("$bin" example nnx-inside-linen --seed "$seed" --x "$x" --features "$features" 2>&1)
    if [ $? -eq 0 ] && numbers_close "$got" "$want" 1e-6; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: seed $seed x $x features $features: got '$got', want '$want'"; fi
done <"$here/fixtures/cli_example_to_linen.txt"

# seed and features may arrive as floats
got=$("$bin" example nnx-inside-linen --seed 0.0 --x '(1, 2, 3, 4)' --features 3.0)
if numbers_close "$got" "-1.27518129 0.1858325 2.69347811" 1e-6; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: float seed/features: '$got'"; fi

expect_usage_error "--seed is required" example nnx-inside-linen --x 1 --features 2
expect_usage_error "--seed: 1.5 is not an integer" example nnx-inside-linen --seed 1.5 --x 1 --features 2
expect_usage_error "--x: 'a' is not a number" example nnx-inside-linen --seed 0 --x 1,a --features 2
expect_usage_error "--features: 0 is outside 1..1048576" example nnx-inside-linen --seed 0 --x 1 --features 0
expect_usage_error "unknown example 'nope'" example nope
expect_usage_error "unknown option '--y'" example nnx-inside-linen --y 1
if "$bin" example --help | grep -q nnx-inside-linen; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: example --help"; fi

cli_finish
