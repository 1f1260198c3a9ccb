#!/usr/bin/env bash
# The training examples (examples/train_*.c, built beside linnx as example_train_*) run and learn:
# the last printed loss is below a fraction of the first. Usage: cli_train_examples.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_train_examples.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"
dir=$(dirname "$bin")

# $1 example name, $2 the factor the loss must fall by
check_learns() {
    local out rc
    out=$("$dir/example_$1" 2>&1); rc=$?
    local line=$(printf '%s\n' "$out" | grep '^first loss')
    if [ $rc -eq 0 ] && awk -v f="$2" '{ exit !($3 > 0 && $6 * f < $3) }' <<<"$line"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: example_$1 (exit $rc, want the loss to fall by $2x):"; printf '%s\n' "$out" | tail -5
    fi
}
check_learns train_linen_with_nnx 20
check_learns train_nnx_with_linen 20
cli_finish
