#!/usr/bin/env bash
# The `linnx key|random|init` subcommands against expected output generated from the reference
# model (tests/fixtures/cli_random.txt, written by scripts/gen_random_fixtures.py), plus the
# usage errors (one `linnx: ...` line on stderr, exit status 2). Usage: cli_random.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_random.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
fixture=$here/fixtures/cli_random.txt
. "$here/lib_cli.sh"

check_fixture "$fixture"
# permutation and randint (scripts/gen_perm_fixtures.py)
check_fixture "$here/fixtures/cli_random_perm.txt"

expect_usage_error "unknown command" frobnicate
expect_usage_error "exactly one of --seed" key
expect_usage_error "exactly one of --seed" key --seed 1 --key 0,1
expect_usage_error "not an integer" key --seed abc
expect_usage_error "two words" key --key 1,2,3
expect_usage_error "outside 0..4294967295" key --key 1,-2
expect_usage_error "at most one of" key --seed 0 --fold-in 1 --split 2
expect_usage_error "--legacy applies to --split only" key --seed 0 --legacy
expect_usage_error "outside 0..4294967295" key --seed 0 --fold-in -1
expect_usage_error "empty name" key --seed 0 --linen-path A//B
expect_usage_error "needs a value" key --seed
expect_usage_error "unknown option '--bogus'" key --seed 0 --bogus
expect_usage_error "given twice" key --seed 0 --seed 1
expect_usage_error "unknown sampler 'gamma'" random gamma --seed 0 --shape 3
expect_usage_error "which sampler" random --seed 0 --shape 3
expect_usage_error "--shape is required" random normal --seed 0
expect_usage_error "negative dimension" random normal --seed 0 --shape 3,-1
expect_usage_error "does not apply to normal" random normal --seed 0 --shape 3 --p 0.5
expect_usage_error "does not apply to bits" random bits --seed 0 --shape 3 --minval 1
expect_usage_error "not a number" random uniform --seed 0 --shape 3 --minval x
expect_usage_error "--n is required" random permutation --seed 0
expect_usage_error "does not apply to permutation" random permutation --seed 0 --n 3 --shape 3
expect_usage_error "outside 0..67108864" random permutation --seed 0 --n -1
expect_usage_error "--maxval is required" random randint --seed 0 --shape 3 --minval 0
expect_usage_error "outside the int32 range" random randint --seed 0 --shape 3 --minval 0 --maxval 2147483648
expect_usage_error "not an integer" random randint --seed 0 --shape 3 --minval 0.5 --maxval 3
expect_usage_error "unknown initializer 'lecun'" init lecun --seed 0 --shape 4,8
expect_usage_error "invalid mode for variance scaling initializer: fan_sum" init variance_scaling --seed 0 --shape 4,8 --scale 1 --mode fan_sum --distribution normal
expect_usage_error "invalid distribution for variance scaling initializer: cauchy" init variance_scaling --seed 0 --shape 4,8 --scale 1 --mode fan_in --distribution cauchy
expect_usage_error "are required" init variance_scaling --seed 0 --shape 4,8 --scale 1
expect_usage_error "--value is required" init constant --seed 0 --shape 2
expect_usage_error "Must be at least 2D" init lecun_normal --seed 0 --shape 5
expect_usage_error "in_axis 3 is out of range" init he_normal --seed 0 --shape 4,8 --in-axis 3
expect_usage_error "does not apply to lecun_normal" init lecun_normal --seed 0 --shape 4,8 --stddev 2
expect_usage_error "only float32" init normal --seed 0 --shape 4 --dtype bfloat16
expect_usage_error "unknown dtype" init zeros --seed 0 --shape 4 --dtype float64

# A constant outside an integer dtype is jnp.full's OverflowError (it wrapped to -1294967296 and
# 4294967291 with exit 0); int8 takes -128..127.
expect_usage_error "constant: 3000000000 does not fit int32" init constant --seed 0 --shape 2 --value 3000000000 --dtype int32
expect_usage_error "constant: -5 does not fit uint32" init constant --seed 0 --shape 2 --value -5 --dtype uint32
expect_usage_error "constant: 128 does not fit int8" init constant --seed 0 --shape 2 --value 128 --dtype int8
if [ "$("$bin" init constant --seed 0 --shape 3 --value -128.9 --dtype int8)" == "-128 -128 -128" ] &&
   [ "$("$bin" init ones --seed 0 --shape 2,2 --dtype int8)" == "$(printf '1 1\n1 1')" ]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: init constant/ones --dtype int8"; fi

# Output lost on stdout (> /dev/full): exit status 1 and one `linnx: ...` line for every command
# (key, --help and categorical exited 0 with nothing written; random/init exited 1 silently).
expect_write_error() {
    local out rc lines
    out=$("$bin" "$@" 2>&1 >/dev/full); rc=$?
    lines=$(printf '%s\n' "$out" | wc -l)
    if [ $rc -eq 1 ] && [[ $out == "linnx: error writing to standard output: "* ]] && [ "$lines" -eq 1 ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: linnx $* > /dev/full -> exit $rc, stderr: $out"
    fi
}
if [ -w /dev/full ]; then
    expect_write_error key --seed 0
    expect_write_error key --seed 0 --split 5
    expect_write_error key --seed 0 --fold-in 3
    expect_write_error key --help
    expect_write_error --help
    expect_write_error random bits --seed 0 --shape 3
    expect_write_error random normal --seed 0 --shape 3000 # more than stdio's buffer
    expect_write_error random categorical --seed 0 --logits 1,2
    expect_write_error random --help
    expect_write_error init zeros --seed 0 --shape 3
    expect_write_error init zeros --seed 0 --shape 0 # an empty result prints one newline
    expect_write_error init --help
fi

# --help goes to stdout with status 0.
if "$bin" random --help | grep -q "usage: linnx random" && "$bin" --help | grep -q "commands:" &&
   "$bin" --help | grep "^  random " | grep -q "randint, permutation"; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: --help"; fi

cli_finish
