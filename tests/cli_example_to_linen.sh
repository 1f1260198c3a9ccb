#!/usr/bin/env bash
# `linnx example nnx-inside-linen` against the reference numbers of
# tests/fixtures/cli_example_to_linen.txt (scripts/gen_to_linen_fixtures.py, from
# spec/jax_random_ref.py), within 1e-6 relative; plus its usage errors (one `linnx: ...` line on
# stderr, exit status 2). Usage: cli_example_to_linen.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_example_to_linen.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
pass=0 fail=0

close() { # $1 got, $2 want: same count, each within 1e-6 relative
    awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); m = split(b, y, " ");
        if (n != m || n == 0) exit 1;
        for (i = 1; i <= n; i++) { d = x[i] - y[i]; if (d < 0) d = -d; t = y[i] < 0 ? -y[i] : y[i];
            if (d > 1e-6 * (1 + t)) exit 1 } }'
}

while IFS='|' read -r seed x features want; do
    case $seed in '#'* | '') continue ;; esac
    got=$("$bin" example nnx-inside-linen --seed "$seed" --x "$x" --features "$features" 2>&1)
    if [ $? -eq 0 ] && close "$got" "$want"; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: seed $seed x $x features $features: got '$got', want '$want'"; fi
done <"$here/fixtures/cli_example_to_linen.txt"

# seed and features may arrive as floats
got=$("$bin" example nnx-inside-linen --seed 0.0 --x '(1, 2, 3, 4)' --features 3.0)
if close "$got" "-1.27518129 0.1858325 2.69347811"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: float seed/features: '$got'"; fi

expect_usage() { # $1 = expected stderr fragment, rest = args
    local want=$1; shift
    local err rc
    err=$("$bin" "$@" 2>&1 >/dev/null); rc=$?
    if [ $rc -eq 2 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && [[ $err == "linnx: "*"$want"* ]]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: linnx $* -> exit $rc, stderr '$err' (want '$want')"
    fi
}
expect_usage "--seed is required" example nnx-inside-linen --x 1 --features 2
expect_usage "--seed: 1.5 is not an integer" example nnx-inside-linen --seed 1.5 --x 1 --features 2
expect_usage "--x: 'a' is not a number" example nnx-inside-linen --seed 0 --x 1,a --features 2
expect_usage "--features: 0 is outside 1..1048576" example nnx-inside-linen --seed 0 --x 1 --features 0
expect_usage "unknown example 'nope'" example nope
expect_usage "unknown option '--y'" example nnx-inside-linen --y 1
if "$bin" example --help | grep -q nnx-inside-linen; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: example --help"; fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
