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

# An awk function for the scripts' number checks: is v a finite decimal numeral? awk reads "nan",
# "-nan" and "inf" as numbers, and mawk (the default awk here) compares NaN equal to everything, so
# a tolerance test alone (`d > tol`, or `!(d <= tol)`) lets a NaN through.
awk_finite='function finite(v) { return v ~ /^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$/ }'

# $1 got, $2 want: the same count of numbers, each a finite numeral within relative tolerance $3.
numbers_close() {
    awk -v got="$1" -v want="$2" -v tol="$3" "$awk_finite"'BEGIN {
        n = split(got, g, " "); m = split(want, w, " ")
        if (n != m || n == 0) exit 1
        for (i = 1; i <= n; i++) {
            if (!finite(g[i]) || !finite(w[i])) exit 1
            d = g[i] - w[i]; if (d < 0) d = -d
            s = w[i] < 0 ? -w[i] : w[i]; if (s < 1e-30) s = 1e-30
            if (!(d <= tol * s)) exit 1
        }
        exit 0 }'
}
# Self-check (every script that sources this): numbers_close rejects NaN, infinities, words and a
# value off by more than the tolerance, and accepts one within it.
for _nc in "nan|1" "-nan|-1" "1 nan|1 2" "inf|1" "1|inf" "x|1" "1.1|1" "|"; do
    if numbers_close "${_nc%|*}" "${_nc#*|}" 1e-6; then
        fail=$((fail + 1)); echo "FAIL: lib_cli.sh: numbers_close accepts '${_nc%|*}' for '${_nc#*|}'"
    fi
done
if ! numbers_close "-1.2751813 1e-3 .5 2E+2" "-1.27518129 0.001 0.5 200" 1e-6; then
    fail=$((fail + 1)); echo "FAIL: lib_cli.sh: numbers_close rejects equal numbers"
fi

# Data files written byte by byte (no numpy here): a .npy of format 1.0, and a safetensors file.
npy() { # file descr shape data-as-printf-escapes
    local hdr="{'descr': '$2', 'fortran_order': False, 'shape': $3, }"
    while [ $(( (${#hdr} + 11) % 64 )) -ne 0 ]; do hdr="$hdr "; done
    local len=$(( ${#hdr} + 1 ))
    printf '\x93NUMPY\x01\x00' >"$1"
    printf "\\x$(printf %02x $((len % 256)))\\x$(printf %02x $((len / 256)))" >>"$1"
    printf '%s\n' "$hdr" >>"$1"
    printf "$4" >>"$1"
}
safet() { # file header-json data-as-printf-escapes (the header padded to 8 bytes, as the writer does)
    local hdr=$2
    while [ $(( ${#hdr} % 8 )) -ne 0 ]; do hdr="$hdr "; done
    printf "\\x$(printf %02x $((${#hdr} % 256)))\\x$(printf %02x $((${#hdr} / 256)))\\x00\\x00\\x00\\x00\\x00\\x00" >"$1"
    printf '%s' "$hdr" >>"$1"
    printf "$3" >>"$1"
}

cli_finish() {
    echo "$pass passed, $fail failed"
    [ $fail -eq 0 ]
}
