#!/usr/bin/env bash
# `linnx random categorical` against the reference model (tests/fixtures/cli_lm.txt, written by
# scripts/gen_llama_fixtures.py) and its usage errors. Usage: cli_lm.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_lm.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"

check_fixture "$here/fixtures/cli_lm.txt"

expect_usage_error "--logits is required" random categorical --seed 0
expect_usage_error "not a comma-separated list" random categorical --seed 0 --logits 1,x,3
expect_usage_error "not a comma-separated list" random categorical --seed 0 --logits 1,,3
expect_usage_error "exactly one of --seed" random categorical --logits 1,2
expect_usage_error "top_k must be in 0..3" random categorical --seed 0 --logits 1,2,3 --top-k 4
expect_usage_error "temperature must be a finite number" random categorical --seed 0 --logits 1,2 --temperature -1
cli_finish
