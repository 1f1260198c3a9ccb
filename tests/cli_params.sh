#!/usr/bin/env bash
# `linnx params` against expected output generated from the reference model: every
# tests/fixtures/cli_params_*.txt (linen.: scripts/gen_linen_fixtures.py; nnx.:
# scripts/gen_cli_params_fixtures.py), plus the usage errors (one `linnx: ...` line on stderr, exit
# status 2). Usage: cli_params.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_params.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check_block() { # $1 = args, expected output in $tmp/want
    local got rc
    got=$(eval "\"$bin\" $1" 2>"$tmp/err"); rc=$?
    if [ $rc -eq 0 ] && [ "$got" == "$(cat "$tmp/want")" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: linnx $1 (exit $rc)"; cat "$tmp/err"
        diff <(printf '%s\n' "$got") "$tmp/want" | head -5
    fi
}

for fixture in "$here"/fixtures/cli_params_*.txt; do
    args=""
    : >"$tmp/want"
    while IFS= read -r line; do
        case $line in
        '#'*) ;;
        '$ '*)
            [ -n "$args" ] && check_block "$args"
            args=${line#\$ }
            : >"$tmp/want" ;;
        *) printf '%s\n' "$line" >>"$tmp/want" ;;
        esac
    done <"$fixture"
    [ -n "$args" ] && check_block "$args"
done

expect_usage_error() { # the expected stderr fragment, then the arguments
    local needle=$1; shift
    local out rc lines
    out=$("$bin" "$@" 2>&1 >/dev/null); rc=$?
    lines=$(printf '%s\n' "$out" | wc -l)
    if [ $rc -eq 2 ] && [[ $out == "linnx: "* ]] && [[ $out == *"$needle"* ]] && [ "$lines" -eq 1 ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: linnx $* -> exit $rc, stderr: $out (want '$needle')"
    fi
}

expect_usage_error "unknown module 'linen.Foo(3)'" params 'linen.Foo(3)' --seed 0 --input-shape 1,4
expect_usage_error "unknown module 'torch.Linear'" params 'torch.Linear(3)' --seed 0 --input-shape 1,4
expect_usage_error "expected ',' or ')' at column 14" params 'linen.Dense(8' --seed 0 --input-shape 1,4
expect_usage_error "unterminated string" params "linen.Conv(4, (3,), padding='SAME)" --seed 0 --input-shape 1,4,2
expect_usage_error "positional argument follows keyword argument" params 'linen.Dense(features=8, 3)' --seed 0 --input-shape 1,4
expect_usage_error "Dense.__init__() missing 1 required positional argument: 'features'" params 'linen.Dense()' --seed 0 --input-shape 1,4
expect_usage_error "Dense.__init__() got an unexpected keyword argument 'feature'" params 'linen.Dense(feature=8)' --seed 0 --input-shape 1,4
expect_usage_error "Dense.__init__() takes 6 positional arguments but 7 were given" params 'linen.Dense(1, True, None, "float32", None, None, 3)' --seed 0 --input-shape 1,4
expect_usage_error "need --input-shape" params 'linen.Dense(8)' --seed 0
expect_usage_error "exactly one of --seed" params 'linen.Dense(8)' --input-shape 1,4
expect_usage_error "which module" params --seed 0
expect_usage_error "is a class: call it" params 'linen.Dense' --seed 0 --input-shape 1,4
expect_usage_error "Parameter \"deterministic\" must be passed" params 'linen.Dropout(0.5)' --seed 0 --input-shape 2,3
expect_usage_error "Memory dimension (4) must be divisible by number of heads (3)." params 'linen.MultiHeadDotProductAttention(num_heads=3)' --seed 0 --input-shape 1,3,4
expect_usage_error "unknown initializer" params 'linen.Dense(3, kernel_init=linen.initializers.lecun)' --seed 0 --input-shape 1,2

expect_usage_error "unknown module 'nnx.Foo(1)'" params 'nnx.Foo(1)' --seed 0
expect_usage_error "Linear.__init__() missing 1 required positional argument: 'out_features'" params 'nnx.Linear(4)' --seed 0
expect_usage_error "is a class: call it" params 'nnx.Linear' --seed 0
expect_usage_error "bridge.to_linen needs an NNX class first" params 'bridge.to_linen(4, 8)' --seed 0 --input-shape 1,4
expect_usage_error "bridge.to_linen needs --input-shape" params 'bridge.to_linen(nnx.Linear, 4, 8)' --seed 0
expect_usage_error "bridge.ToNNX needs a Linen module" params 'bridge.ToNNX(nnx.Linear(4, 8))' --seed 0 --input-shape 1,4
expect_usage_error "bridge.ToNNX needs --input-shape" params 'bridge.ToNNX(linen.Dense(8))' --seed 0
expect_usage_error "unknown module 'bridge.foo(1)'" params 'bridge.foo(1)' --seed 0

# initializers by name, and their effect
out=$("$bin" params 'linen.Dense(2, kernel_init=linen.initializers.ones, bias_init=linen.initializers.constant(0.5))' --seed 0 --input-shape 1,2)
want=$'params/kernel float32[2,2]: 1 1 1 1\nparams/bias float32[2]: 0.5 0.5'
if [ "$out" == "$want" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: initializers: $out"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
