#!/usr/bin/env bash
# `linnx example linen-inside-nnx` against the numbers Flax gives (tests/fixtures/cli_example_to_nnx.txt,
# written by scripts/gen_bridge_fixtures.py from the JAX random reference model), plus its usage
# errors (one `linnx: ...` line on stderr, exit status 2). Usage: cli_example_to_nnx.sh PATH/TO/linnx
#
# Values are compared to 4e-7 relative: the bit-exact check (with linnx's FMA kernels, which
# accumulate as XLA:CPU does) is in test_bridge_to_nnx; the portable kernel may differ by an ulp.
set -u
bin=${1:?usage: cli_example_to_nnx.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
fixture=$here/fixtures/cli_example_to_nnx.txt
. "$here/lib_cli.sh"


args=""
while IFS= read -r line; do
    case $line in
    '#'*) ;;
    '$ '*) args=${line#\$ } ;;
    *)
        # shellcheck disable=SC2086
        got=$("$bin" $args 2>&1); rc=$?
        if [ $rc -eq 0 ] && [ "$(printf '%s\n' "$got" | wc -l)" -eq 1 ] && numbers_close "$got" "$line" 4e-7; then
            pass=$((pass + 1))
        else
            fail=$((fail + 1)); echo "FAIL: linnx $args (exit $rc): got '$got', want '$line'"
        fi ;;
    esac
done <"$fixture"

# seed and features may be integral floats
got=$("$bin" example linen-inside-nnx --seed 0.0 --x 1,2,3,4 --features 3.0)
want=$(sed -n '3p' "$fixture")
if [ "$got" == "$want" ] || numbers_close "$got" "$want" 4e-7; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: integral floats: got '$got', want '$want'"; fi

# --help goes to stdout with status 0
if "$bin" example linen-inside-nnx --help | grep -q 'bridge.ToNNX(nn.Dense(F), rngs=nnx.Rngs(S)).lazy_init(x)'; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: example --help"; fi
if "$bin" example --help | grep -q 'linen-inside-nnx'; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: example list"; fi


expect_usage_error "unknown example 'nope'" example nope --seed 0 --x 1 --features 1
expect_usage_error "--seed is required" example linen-inside-nnx --x 1,2 --features 2
expect_usage_error "--x is required" example linen-inside-nnx --seed 0 --features 2
expect_usage_error "--features is required" example linen-inside-nnx --seed 0 --x 1,2
expect_usage_error "--seed: 1.5 is not an integer" example linen-inside-nnx --seed 1.5 --x 1,2 --features 2
expect_usage_error "--features: 0 is outside 1..1048576" example linen-inside-nnx --seed 0 --x 1,2 --features 0
expect_usage_error "--x: '1,,2' is not a list of numbers" example linen-inside-nnx --seed 0 --x 1,,2 --features 2
expect_usage_error "--x: 'a' is not a number" example linen-inside-nnx --seed 0 --x a --features 2
expect_usage_error "unknown option '--bogus'" example linen-inside-nnx --seed 0 --x 1 --features 1 --bogus

cli_finish
