# Shared by the tests/cli_*.sh scripts (sourced, after `bin` is set): counters, the check that a
# command prints exactly a fixture's expected block, the check of a usage error, and the closing
# "N passed, N failed" line.
pass=0 fail=0
cli_tmp=$(mktemp -d)
trap 'rm -rf "$cli_tmp"' EXIT

# $1 = linnx arguments (shell words, as the fixture writes them); expected stdout in $cli_tmp/want.
check_block() {
    local got rc
    got=$(eval "\"$bin\" $1" 2>"$cli_tmp/err"); rc=$?
    if [ $rc -eq 0 ] && [ "$got" == "$(cat "$cli_tmp/want")" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: linnx $1 (exit $rc)"; cat "$cli_tmp/err"
        diff <(printf '%s\n' "$got") "$cli_tmp/want" | head -5
    fi
}

# Every "$ args" block of a fixture file: the lines after it are the expected stdout.
check_fixture() {
    local args="" line
    : >"$cli_tmp/want"
    while IFS= read -r line; do
        case $line in
        '#'*) ;;
        '$ '*)
            [ -n "$args" ] && check_block "$args"
            args=${line#\$ }
            : >"$cli_tmp/want" ;;
        *) printf '%s\n' "$line" >>"$cli_tmp/want" ;;
        esac
    done <"$1"
    [ -n "$args" ] && check_block "$args"
}

# A usage error: exit status 2 and exactly one stderr line, `linnx: ...` containing $1.
expect_usage_error() { # the expected fragment, then the arguments
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

# $1 got, $2 want: the same count of numbers, each within relative tolerance $3.
numbers_close() {
    awk -v got="$1" -v want="$2" -v tol="$3" 'BEGIN {
        n = split(got, g, " "); m = split(want, w, " ")
        if (n != m || n == 0) exit 1
        for (i = 1; i <= n; i++) {
            d = g[i] - w[i]; if (d < 0) d = -d
            s = w[i] < 0 ? -w[i] : w[i]; if (s < 1e-30) s = 1e-30
            if (d > tol * s) exit 1
        }
        exit 0 }'
}

cli_finish() {
    echo "$pass passed, $fail failed"
    [ $fail -eq 0 ]
}
