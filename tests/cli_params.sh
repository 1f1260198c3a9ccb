#!/usr/bin/env bash
# `linnx params` against expected output generated from the reference model: every
# tests/fixtures/cli_params_*.txt (linen.: scripts/gen_linen_fixtures.py; nnx.:
# scripts/gen_cli_params_fixtures.py), plus the usage errors (one `linnx: ...` line on stderr, exit
# status 2). Usage: cli_params.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_params.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"


for fixture in "$here"/fixtures/cli_params_*.txt; do check_fixture "$fixture"; done


expect_usage_error "unknown module 'linen.Foo(3)'" params 'linen.Foo(3)' --seed 0 --input-shape 1,4
expect_usage_error "unknown module 'torch.Linear'" params 'torch.Linear(3)' --seed 0 --input-shape 1,4
expect_usage_error "expected ',' or ')' at column 14" params 'linen.Dense(8' --seed 0 --input-shape 1,4
expect_usage_error "unterminated string" params "linen.Conv(4, (3,), padding='SAME)" --seed 0 --input-shape 1,4,2
expect_usage_error "positional argument follows keyword argument" params 'linen.Dense(features=8, 3)' --seed 0 --input-shape 1,4
expect_usage_error "keyword argument repeated: features at column 25" params 'linen.Dense(features=3, features=4)' --seed 0 --input-shape 1,4
expect_usage_error "keyword argument repeated: use_bias" params 'nnx.Linear(2, 3, use_bias=False, use_bias=True)' --seed 0
expect_usage_error "Dense.__init__() missing 1 required positional argument: 'features'" params 'linen.Dense()' --seed 0 --input-shape 1,4
expect_usage_error "Dense.__init__() got an unexpected keyword argument 'feature'" params 'linen.Dense(feature=8)' --seed 0 --input-shape 1,4
expect_usage_error "Dense.__init__() takes 6 positional arguments but 7 were given" params 'linen.Dense(1, True, None, "float32", None, None, 3)' --seed 0 --input-shape 1,4
expect_usage_error "need --input-shape" params 'linen.Dense(8)' --seed 0
expect_usage_error "exactly one of --seed" params 'linen.Dense(8)' --input-shape 1,4
expect_usage_error "which module" params --seed 0
expect_usage_error "is a class: call it" params 'linen.Dense' --seed 0 --input-shape 1,4
expect_usage_error "Parameter \"deterministic\" must be passed" params 'linen.Dropout(0.5)' --seed 0 --input-shape 2,3
expect_usage_error "Memory dimension (4) must be divisible by number of heads (3)." params 'linen.MultiHeadDotProductAttention(num_heads=3)' --seed 0 --input-shape 1,3,4
# a scalar input: no feature axis (read out of bounds before: .ci/run's fuzz_params found it)
expect_usage_error "MultiHeadDotProductAttention: inputs_q is a scalar; its last axis holds the features" params 'linen.MultiHeadDotProductAttention(num_heads=1, qkv_features=8)' --seed 0 --input-shape ''
expect_usage_error "variable_axes must be a dict {'collection': axis or None} or ('collection', axis) pairs" params "linen.vmap(linen.Dense(4), variable_axes=0, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "argument 0 has shape (3, 2, 5), size 3 on axis 0, but length is 2" params "linen.vmap(linen.Dense(4), variable_axes=('params', 0), split_rngs=('params',), axis_size=2)" --seed 0 --input-shape 3,2,5
expect_usage_error "linen.vmap: axis_size must be a positive int, got 0" params "linen.vmap(linen.Dense(4), variable_axes={'params': 0}, split_rngs={'params': True}, axis_size=0)" --seed 0 --input-shape 3,2,5
expect_usage_error "linen.scan: length must be a positive int, got -1" params "linen.scan(linen.Dense(4), variable_axes={'params': 0}, split_rngs={'params': True}, length=-1)" --seed 0 --input-shape 3,2,5
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

# audit456: Flax's TypeError for an int Conv kernel_size (F1); bfloat16 params with the constant
# initializers run (F4: the layer computes in float32), and MHA hands param_dtype to its
# projections (F6) or refuses an initializer it cannot make in bfloat16
expect_usage_error "Expected Conv kernel_size to be a tuple/list of integers (eg.: [3, 3]) but got 3." params 'linen.Conv(2, 3)' --seed 0 --input-shape 1,6,4
out=$("$bin" params 'linen.Dense(3, param_dtype=jnp.bfloat16, kernel_init=linen.initializers.zeros)' --seed 0 --input-shape 1,2 2>&1)
expect_same_() { if [ "$2" == "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1: $2"; fi; }
expect_same_ "Dense bfloat16 params" "$out" $'params/kernel bfloat16[2,3]: 0 0 0 0 0 0\nparams/bias bfloat16[3]: 0 0 0'
out=$("$bin" params 'linen.LayerNorm(param_dtype=jnp.bfloat16)' --seed 0 --input-shape 1,2 2>&1)
expect_same_ "LayerNorm bfloat16 params" "$out" $'params/scale bfloat16[2]: 1 1\nparams/bias bfloat16[2]: 0 0'
out=$("$bin" params 'linen.MultiHeadDotProductAttention(2, param_dtype=jnp.bfloat16, kernel_init=linen.initializers.ones)' --seed 0 --input-shape 1,3,4 2>&1 | cut -d: -f1 | tr '\n' ' ')
expect_same_ "MHA bfloat16 params" "$out" "params/query/kernel bfloat16[4,2,2] params/query/bias bfloat16[2,2] params/key/kernel bfloat16[4,2,2] params/key/bias bfloat16[2,2] params/value/kernel bfloat16[4,2,2] params/value/bias bfloat16[2,2] params/out/kernel bfloat16[2,2,4] params/out/bias bfloat16[4] "
expect_usage_error "MultiHeadDotProductAttention: param_dtype=bfloat16 with the lecun_normal initializer is not supported" params 'linen.MultiHeadDotProductAttention(2, param_dtype=jnp.bfloat16)' --seed 0 --input-shape 1,3,4

# partitioning wrappers: the same values as the plain initializer (no extra key drawn), the names
# at the end of the line
expect_same() { # $1 = what, $2 = got, $3 = want
    if [ "$2" == "$3" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1:"; diff <(echo "$2") <(echo "$3"); fi
}
plain=$("$bin" params 'linen.Dense(8)' --seed 0 --input-shape 1,4)
out=$("$bin" params 'linen.Dense(8, kernel_init=linen.with_partitioning(linen.initializers.lecun_normal, ("in", "out")))' --seed 0 --input-shape 1,4)
expect_same "linen.with_partitioning" "$out" "$(printf '%s\n' "$plain" | sed '/^params\/kernel/s/$/ [Partitioned ('"'in', 'out'"')]/')"
out=$("$bin" params 'linen.Dense(2, kernel_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed", None), mesh="m", rules=(("embed", "data"),)), bias_init=linen.with_partitioning(linen.initializers.zeros, ("mlp",)))' --seed 0 --input-shape 1,2)
expect_same "with_logical_partitioning" "$out" $'params/kernel float32[2,2]: 1 1 1 1 [LogicallyPartitioned (\'embed\', None)]\nparams/bias float32[2]: 0 0 [Partitioned (\'mlp\',)]'
plain=$("$bin" params 'nnx.Linear(2, 3)' --seed 0)
out=$("$bin" params 'nnx.Linear(2, 3, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("in", "out")))' --seed 0)
expect_same "nnx.with_partitioning" "$out" "$(printf '%s\n' "$plain" | sed '/^kernel/s/$/ [out_sharding ('"'in', 'out'"')]/')"
out=$("$bin" params 'bridge.to_linen(nnx.Linear, 2, 3, kernel_init=nnx.with_partitioning(nnx.initializers.ones, ("in", "out")))' --seed 0 --input-shape 1,2)
expect_same "to_linen + nnx.with_partitioning" "$out" $'params/bias float32[3]: 0 0 0\nparams/kernel float32[2,3]: 1 1 1 1 1 1 [NNXMeta (\'in\', \'out\')]'
out=$("$bin" params 'bridge.ToNNX(linen.Dense(3, kernel_init=linen.with_partitioning(linen.initializers.ones, ("in", "out"))))' --seed 0 --input-shape 1,2 | grep '^kernel')
expect_same "ToNNX + linen.with_partitioning" "$out" "kernel Param float32[2,3]: 1 1 1 1 1 1 [out_sharding ('in', 'out')]"

wp='linen.with_partitioning'
expect_usage_error "$wp() missing 1 required positional argument: 'names'" params "linen.Dense(3, kernel_init=$wp(linen.initializers.ones))" --seed 0 --input-shape 1,2
expect_usage_error "names must be a tuple of str or None" params "linen.Dense(3, kernel_init=$wp(linen.initializers.ones, 'in'))" --seed 0 --input-shape 1,2
expect_usage_error "param \"kernel\" in \"/\": with_partitioning: names ('a', 'b', 'c') have 3 entries, more than the rank of a value of shape (2, 3)" params "linen.Dense(3, kernel_init=$wp(linen.initializers.ones, ('a', 'b', 'c')))" --seed 0 --input-shape 1,2
expect_usage_error "the initializer is already wrapped (Partitioned)" params "linen.Dense(3, kernel_init=$wp($wp(linen.initializers.ones, ('a',)), ('b',)))" --seed 0 --input-shape 1,2
expect_usage_error "'linen.Dense(3)' is not an initializer" params "linen.Dense(3, kernel_init=$wp(linen.Dense(3), ('a',)))" --seed 0 --input-shape 1,2
expect_usage_error "rules must be a tuple of (logical, mesh) pairs" params "linen.Dense(3, kernel_init=linen.with_logical_partitioning(linen.initializers.ones, ('a',), rules=('a', 'b')))" --seed 0 --input-shape 1,2
expect_usage_error "is 56 bytes long (at most 47)" params "linen.Dense(3, kernel_init=$wp(linen.initializers.ones, ('$(printf 'a%.0s' {1..56})',)))" --seed 0 --input-shape 1,2
expect_usage_error "is a function: call it" params "linen.Dense(3, kernel_init=$wp)" --seed 0 --input-shape 1,2
expect_usage_error "mesh must be a mesh name" params "linen.Dense(3, kernel_init=$wp(linen.initializers.ones, ('a',), mesh=3))" --seed 0 --input-shape 1,2
expect_usage_error "takes from 2 to 3 positional arguments but 4 were given" params "linen.Dense(3, kernel_init=$wp(linen.initializers.ones, ('a',), None, 4))" --seed 0 --input-shape 1,2
expect_usage_error "got multiple values for argument 'fn'" params "linen.Dense(3, kernel_init=$wp(linen.initializers.ones, ('a',), fn=linen.initializers.ones))" --seed 0 --input-shape 1,2
expect_usage_error "nnx.with_partitioning is for NNX layers" params "linen.Dense(3, kernel_init=nnx.with_partitioning(nnx.initializers.ones, ('a',)))" --seed 0 --input-shape 1,2
expect_usage_error "linen.with_partitioning is for Linen layers" params "nnx.Linear(2, 3, kernel_init=$wp(linen.initializers.ones, ('a', 'b')))" --seed 0
expect_usage_error "nnx.with_partitioning() got an unexpected keyword argument 'names'" params "nnx.Linear(2, 3, kernel_init=nnx.with_partitioning(nnx.initializers.ones, ('a', 'b'), names=1))" --seed 0
expect_usage_error "Linear.bias: with_partitioning: names ('a', 'b') have 2 entries" params "nnx.Linear(2, 3, bias_init=nnx.with_partitioning(nnx.initializers.ones, ('a', 'b')))" --seed 0

# ---- lifted specs written as in Flax (issue16): dicts for variable_axes / split_rngs /
# metadata_params, scan's unroll / check_constancy_invariants / variable_broadcast / variable_carry,
# name=, linen.remat, bridge.to_linen as the lifted module, nnx.StateAxes. Each new form prints what
# the equivalent, fixture-checked form prints (cli_params_lift*.txt hold Flax's values).
same_params() { # $1 = what, $2 = new spec, $3 = equivalent spec, then the other arguments
    local what=$1 a=$2 b=$3; shift 3
    local ga gb ra rb
    ga=$("$bin" params "$a" "$@" 2>&1); ra=$?; gb=$("$bin" params "$b" "$@" 2>&1); rb=$?
    if [ $ra -eq 0 ] && [ $rb -eq 0 ] && [ -n "$gb" ] && [ "$ga" == "$gb" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $what:"; diff <(echo "$ga") <(echo "$gb") | head -6; fi
}
D4='linen.Dense(4)'
same_params "vmap with dicts (issue16's spelling)" \
    "linen.vmap($D4, variable_axes={'params': 0}, split_rngs={'params': True}, in_axes=0, out_axes=0, axis_size=3)" \
    "linen.vmap($D4, variable_axes=('params', 0), split_rngs=('params',), in_axes=0, out_axes=0, axis_size=3)" --seed 0 --input-shape 3,2,5
same_params "scan with dicts, a False stream, a trailing comma" \
    "linen.scan($D4, variable_axes={'params': 1,}, split_rngs={'params': True, 'dropout': False}, length=2)" \
    "linen.scan($D4, variable_axes=('params', 1), split_rngs=('params',), length=2)" --seed 0 --input-shape 2,4
same_params "variable_axes with a broadcast (None) collection" \
    "linen.vmap($D4, variable_axes={'params': 0, 'batch_stats': None}, split_rngs={'params': True}, axis_size=3)" \
    "linen.vmap($D4, variable_axes=('params', 0), split_rngs=('params',), axis_size=3)" --seed 0 --input-shape 3,2,5
KP="kernel_init=linen.with_partitioning(linen.initializers.lecun_normal, ('embed', 'mlp'))"
for key in nn.PARTITION_NAME linen.PARTITION_NAME "'partition_name'"; do
    same_params "metadata_params={$key: 'layers'}" \
        "linen.scan(linen.Dense(4, $KP), variable_axes={'params': 1}, split_rngs={'params': True}, length=2, metadata_params={$key: 'layers'})" \
        "linen.scan(linen.Dense(4, $KP), variable_axes=('params', 1), split_rngs=('params',), length=2, partition_name='layers')" --seed 0 --input-shape 2,4
done
out=$("$bin" params "linen.scan(linen.Dense(4, $KP), variable_axes={'params': 1}, split_rngs={'params': True}, length=2, metadata_params={nn.PARTITION_NAME: 'layers'})" --seed 0 --input-shape 2,4 | grep '^params/kernel')
[[ $out == "params/kernel float32[4,2,4]: "*" [Partitioned ('embed', 'layers', 'mlp')]" ]] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: metadata_params names: $out"; }
same_params "scan unroll=2 (parity only)" \
    "linen.scan($D4, variable_axes={'params': 1}, split_rngs={'params': True}, length=2, unroll=2)" \
    "linen.scan($D4, variable_axes=('params', 1), split_rngs=('params',), length=2)" --seed 0 --input-shape 2,4
same_params "scan check_constancy_invariants=True (the default)" \
    "linen.scan($D4, variable_axes={'params': 1}, split_rngs={'params': True}, length=2, check_constancy_invariants=True)" \
    "linen.scan($D4, variable_axes=('params', 1), split_rngs=('params',), length=2)" --seed 0 --input-shape 2,4
# without the check the body is traced once, so its draws are vmap's (counts 1, 2: lift.h)
a=$("$bin" params "linen.scan($D4, variable_axes={'params': 0}, split_rngs={'params': True}, length=3, check_constancy_invariants=False)" --seed 0 --input-shape 2,4)
b=$("$bin" params "linen.vmap($D4, variable_axes={'params': 0}, split_rngs={'params': True}, axis_size=3)" --seed 0 --input-shape 3,2,4)
c=$("$bin" params "linen.scan($D4, variable_axes={'params': 0}, split_rngs={'params': True}, length=3)" --seed 0 --input-shape 2,4)
[ -n "$b" ] && [ "$a" == "$b" ] && [ "$c" != "$b" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: check_constancy_invariants=False:"; diff <(echo "$a") <(echo "$b") | head -4; }
same_params "scan variable_carry (a collection Dense does not use)" \
    "linen.scan($D4, variable_axes={'params': 1}, split_rngs={'params': True}, length=2, variable_carry='batch_stats', variable_broadcast=('cache',))" \
    "linen.scan($D4, variable_axes=('params', 1), split_rngs=('params',), length=2)" --seed 0 --input-shape 2,4
out=$("$bin" params "linen.scan($D4, variable_broadcast='params', split_rngs={'params': False}, length=2)" --seed 0 --input-shape 2,4 | cut -d: -f1 | tr '\n' ' ')
[ "$out" == "params/kernel float32[4,4] params/bias float32[4] " ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: variable_broadcast='params': $out"; }
same_params "name= on the top-level lifted module" \
    "linen.vmap($D4, variable_axes={'params': 0}, split_rngs={'params': True}, axis_size=3, name='layers')" \
    "linen.vmap($D4, variable_axes=('params', 0), split_rngs=('params',), axis_size=3)" --seed 0 --input-shape 3,2,5
same_params "linen.remat keeps the module's parameters" "linen.remat($D4)" "$D4" --seed 0 --input-shape 2,5
same_params "linen.checkpoint with a policy" "linen.checkpoint($D4, policy=jax.checkpoint_policies.dots_saveable)" "$D4" --seed 0 --input-shape 2,5
same_params "scan of a remat" \
    "linen.scan(linen.remat($D4, policy=jax.checkpoint_policies.nothing_saveable), variable_axes={'params': 1}, split_rngs={'params': True}, length=2)" \
    "linen.scan($D4, variable_axes=('params', 1), split_rngs=('params',), length=2)" --seed 0 --input-shape 2,4
same_params "vmap of bridge.to_linen is vmap of its Linen twin's keys" \
    "linen.vmap(bridge.to_linen(nnx.Linear, 5, 4), variable_axes={'params': 0}, split_rngs={'params': True}, axis_size=3)" \
    "linen.vmap(bridge.to_linen(nnx.Linear, 5, 4), variable_axes=('params', 0), split_rngs=('params',), axis_size=3)" --seed 0 --input-shape 3,2,5
out=$("$bin" params "linen.vmap(bridge.to_linen(nnx.Linear, 5, 4), variable_axes={'params': 0}, split_rngs={'params': True}, axis_size=3)" --seed 0 --input-shape 3,2,5 | cut -d: -f1 | sort | tr '\n' ' ')
[ "$out" == "params/bias float32[3,4] params/kernel float32[3,5,4] " ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: vmap of to_linen: $out"; }
# nn.scan of a to_linen layer keeps the stacked axis in its NNXMeta names (Flax #5590)
out=$("$bin" params "linen.scan(bridge.to_linen(nnx.Linear, 4, 4, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ('embed', 'mlp'))), variable_axes={'params': 1}, split_rngs={'params': True}, length=2, metadata_params={nn.PARTITION_NAME: 'layers'})" --seed 0 --input-shape 2,4 | grep '^params/kernel')
[[ $out == "params/kernel float32[4,2,4]: "*" [NNXMeta ('embed', 'layers', 'mlp')]" ]] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: scan of to_linen, NNXMeta names: $out"; }
# NNX: nnx.StateAxes (bare dict or the call; `...` and tuple filters), transform_metadata
N54='nnx.Linear(5, 4)'
for sa in "nnx.StateAxes({nnx.Param: 0, ...: None})" "{(nnx.Param, 'default'): 0}" "nnx.StateAxes({nnx.Param: 0})"; do
    same_params "nnx.Stack out_axes=$sa" "nnx.Stack($N54, 3, in_axes=0, out_axes=$sa)" "nnx.Stack($N54, 3)" --seed 0
done
NK="kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ('embed', 'mlp'))"
same_params "nnx.Stack transform_metadata" "nnx.Stack(nnx.Linear(5, 4, $NK), 3, transform_metadata={nnx.PARTITION_NAME: 'layers'})" \
    "nnx.Stack(nnx.Linear(5, 4, $NK), 3, partition_name='layers')" --seed 0
out=$("$bin" params "nnx.Stack(nnx.Linear(5, 4, $NK), 3, transform_metadata={nnx.PARTITION_NAME: 'layers'})" --seed 0 | grep '^kernel')
[[ $out == *"[out_sharding ('layers', 'embed', 'mlp')]" ]] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: transform_metadata names: $out"; }
# the other commands read the same specs
out=$("$bin" grad "linen.vmap(linen.Dense(2), variable_axes={'params': 0}, split_rngs={'params': True}, axis_size=2)" --seed 0 --x 1,2,3,4 --x-shape 2,1,2 --y 1,0,0,1 --y-shape 2,1,2 --loss l2_loss 2>&1)
ref=$("$bin" grad "linen.vmap(linen.Dense(2), variable_axes=('params', 0), split_rngs=('params',), axis_size=2)" --seed 0 --x 1,2,3,4 --x-shape 2,1,2 --y 1,0,0,1 --y-shape 2,1,2 --loss l2_loss 2>&1)
[ -n "$ref" ] && [ "$out" == "$ref" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: grad with dicts: $out / $ref"; }

# train through a remat with dicts: the losses of the plain tuple-spelled model (remat recomputes
# the forward in the backward; gradients unchanged)
T="--x 1,2,3,4,5,6,7,8 --x-shape 2,2,2 --y 1,0,0,1,1,1,0,0 --y-shape 2,2,2 --loss squared_error --optimizer adam(0.05) --steps 3"
a=$("$bin" train "linen.vmap(linen.remat(linen.Dense(2)), variable_axes={'params': 0}, split_rngs={'params': True}, axis_size=2)" --seed 0 $T 2>&1)
b=$("$bin" train "linen.vmap(linen.Dense(2), variable_axes=('params', 0), split_rngs=('params',), axis_size=2)" --seed 0 $T 2>&1)
[[ $b == "step 0 loss "* ]] && [ "$a" == "$b" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: train with remat and dicts: $a / $b"; }

V="linen.vmap($D4, variable_axes="
expect_usage_error "expected ':' after a dict key at column 65" params "$V{'params': 0, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "expected ',' or '}' at column 54" params "$V{'params': 0), axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "expected '}' (unterminated dict)" params "$V{'params': 0" --seed 0 --input-shape 3,2,5
expect_usage_error "duplicate dict key 'params'" params "$V{'params': 0, 'params': 1}, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "dict keys must be strings or names, not 0" params "$V{0: 'params'}, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "dict keys must be strings or names, not None" params "$V{None: 0}, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "expected ':' after a dict key" params "$V{'params' 0}, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "variable_axes must be a dict {'collection': axis or None}" params "$V{'params': 'x'}, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "variable_axes must be a dict {'collection': axis or None}" params "$V{nn.Param: 0}, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "split_rngs must map stream names to True or False" params "$V{'params': 0}, split_rngs={'params': 1}, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "metadata_params: unsupported key 'foo'" params "$V{'params': 0}, metadata_params={'foo': 'x'}, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "metadata_params must be a dict" params "$V{'params': 0}, metadata_params='layers', axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "linen.vmap: unsupported argument 'unroll'" params "$V{'params': 0}, unroll=2, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "unroll must be a positive int" params "linen.scan($D4, variable_axes={'params': 1}, length=2, unroll=0)" --seed 0 --input-shape 2,4
expect_usage_error "keyword argument repeated: axis_size" params "$V{'params': 0}, axis_size=3, axis_size=3)" --seed 0 --input-shape 3,2,5
expect_usage_error "policy must be jax.checkpoint_policies" params "linen.remat($D4, policy=jax.checkpoint_policies.everything)" --seed 0 --input-shape 2,5
expect_usage_error "'nnx.Foo' is not a filter" params "nnx.Stack($N54, 3, out_axes=nnx.StateAxes({nnx.Foo: 0}))" --seed 0
expect_usage_error "in_axes is the constructor's (0)" params "nnx.Stack($N54, 3, in_axes=1)" --seed 0

"$bin" params --help 2>&1 | grep -qF "variable_axes={'params': 0}, split_rngs={'params': True}" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: params --help shows no dict spelling"; }
# --save into a folder that does not exist (audit D17): bad input, exit 2, the user's path named
# (not the temporary file's), nothing on stdout
out=$("$bin" params 'linen.Dense(2)' --seed 0 --input-shape 1,2 --save "$cli_tmp/nonexist/p.msgpack" 2>"$cli_tmp/err"); rc=$?
if [ $rc -eq 2 ] && [ -z "$out" ] && [ ! -e "$cli_tmp/nonexist" ] &&
   [ "$(cat "$cli_tmp/err")" == "linnx: params: --save $cli_tmp/nonexist/p.msgpack: cannot write: No such file or directory" ]; then
    pass=$((pass + 1))
else
    fail=$((fail + 1)); echo "FAIL: params --save into a missing folder: exit $rc, stdout '$out', stderr '$(cat "$cli_tmp/err")'"
fi
mkdir -p "$cli_tmp/adir.msgpack"
expect_usage_error "params: --save $cli_tmp/adir.msgpack: cannot write: Is a directory" params 'linen.Dense(2)' --seed 0 --input-shape 1,2 --save "$cli_tmp/adir.msgpack"

# --save through a symbolic link (the writers write a temporary file and rename it onto the path:
# given a link, they would replace the link by a file and leave its target as it was). The write
# goes where the chain of links ends and the link stays; a link that leads nowhere writable is
# refused before any work, and the check leaves nothing and removes nothing.
P=(params 'linen.Dense(2)' --seed 0 --input-shape 1,2)
"$bin" "${P[@]}" --save "$cli_tmp/direct.msgpack" >/dev/null
L=$cli_tmp/links
mkdir -p "$L/sub"
ln -s /nonexistent/dir/x.msgpack "$L/dangling.msgpack"
expect_usage_error "params: --save $L/dangling.msgpack: cannot write: No such file or directory" "${P[@]}" --save "$L/dangling.msgpack"
ln -s sub/new.msgpack "$L/tonew.msgpack"     # into a folder that exists: the target is made
ln -s tonew.msgpack "$L/chain.msgpack"       # a link to that link
printf 'old' >"$L/sub/old.msgpack"
ln -s sub/old.msgpack "$L/toold.msgpack"     # an existing file: replaced, the link kept
ln -s sub "$L/todir.msgpack"
ln -s loop.msgpack "$L/loop.msgpack"
mkfifo "$L/fifo.msgpack"
before=$(ls -A "$L" | tr '\n' ' ')
expect_usage_error "params: --save $L/todir.msgpack: cannot write: Is a directory" "${P[@]}" --save "$L/todir.msgpack"
expect_usage_error "params: --save $L/loop.msgpack: cannot write: Too many levels of symbolic links" "${P[@]}" --save "$L/loop.msgpack"
expect_usage_error "params: --save $L/fifo.msgpack: cannot write: not a regular file" "${P[@]}" --save "$L/fifo.msgpack"
long=$L/$(printf 'n%.0s' $(seq 240)).msgpack # a name that fits, but not with the temporary file's suffix
expect_usage_error "params: --save $long: cannot write: File name too long" "${P[@]}" --save "$long"
longer=$L/$(printf 'd%.0s' $(seq 250))/$(printf 'e%.0s' $(seq 250))/$(printf 'f%.0s' $(seq 4600)).msgpack # past the
# commands' 4096-byte path buffers: refused before the link walk writes anything (review28b R28b-1)
expect_usage_error "params: --save $longer: cannot write: File name too long" "${P[@]}" --save "$longer"
expect_usage_error "convert: $longer: cannot write: File name too long" convert "$L/sub/old.msgpack" "$longer"
if [ "$(ls -A "$L" | tr '\n' ' ')" == "$before" ] && [ "$(ls -A "$L/sub")" == "old.msgpack" ] &&
   [ "$(readlink "$L/dangling.msgpack")" == /nonexistent/dir/x.msgpack ] && [ -p "$L/fifo.msgpack" ]; then
    pass=$((pass + 1))
else
    fail=$((fail + 1)); echo "FAIL: the refused --save paths changed $L: $(ls -lA "$L" "$L/sub")"
fi
for link in chain.msgpack toold.msgpack; do
    "$bin" "${P[@]}" --save "$L/$link" >/dev/null 2>"$cli_tmp/err"; rc=$?
    target=$(readlink -f "$L/$link")
    if [ $rc -eq 0 ] && [ -L "$L/$link" ] && [ -f "$target" ] && cmp -s "$target" "$cli_tmp/direct.msgpack"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: params --save $L/$link: exit $rc, $(cat "$cli_tmp/err"), $(ls -lA "$L" "$L/sub")"
    fi
done
if [ "$(ls -A "$L/sub" | tr '\n' ' ')" == "new.msgpack old.msgpack " ] &&
   [ "$(ls -A "$L" | tr '\n' ' ')" == "$before" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: --save through links left: $(ls -lA "$L" "$L/sub")"; fi
# the format is the typed name's, not the link target's: out.msgpack -> real.safetensors gets msgpack
ln -s real.safetensors "$L/out.msgpack"
"$bin" "${P[@]}" --save "$L/out.msgpack" >/dev/null 2>"$cli_tmp/err"; rc=$?
if [ $rc -eq 0 ] && [ -L "$L/out.msgpack" ] && cmp -s "$L/real.safetensors" "$cli_tmp/direct.msgpack"; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: params --save out.msgpack -> real.safetensors: exit $rc, $(cat "$cli_tmp/err")"; fi
# a write that fails after the check (a file-size limit: EFBIG) names the path typed, then the target
se=$( (trap '' XFSZ; ulimit -f 0; "$bin" "${P[@]}" --save "$L/chain.msgpack" 2>&1 >/dev/null) ); rc=$?
if [ $rc -eq 1 ] && [[ $se == "linnx: params: --save $L/chain.msgpack (-> $L/sub/new.msgpack): "*"File too large" ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: a failed params --save through links: exit $rc, '$se'"; fi
se=$( (trap '' XFSZ; ulimit -f 0; "$bin" convert "$cli_tmp/direct.msgpack" "$L/toold.msgpack" 2>&1 >/dev/null) ); rc=$?
if [ $rc -eq 1 ] && [[ $se == "linnx: convert: $L/toold.msgpack (-> $L/sub/old.msgpack): "*"File too large" ]]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: a failed convert through a link: exit $rc, '$se'"; fi
# an existing file in a folder that takes no new file (procfs: not even root's): the write's
# temporary file could not be made, so the file is refused before any work, the reason the folder's
if [ -f /proc/self/comm ]; then
    expect_usage_error "convert: /proc/self/comm: cannot write: its folder takes no new files: No such file or directory" \
        convert "$cli_tmp/direct.msgpack" /proc/self/comm --format msgpack
fi
# this run's own stdout or stderr, however it is named (through a link to /dev/stdout, /dev/fd/N,
# or the redirected file's own name), is refused: the writer's rename would replace the file the
# run's output goes to (`> log.txt`: the log lost). Nothing written, the log file kept.
ln -s /dev/stdout "$L/stdout.msgpack"
for out in "$L/stdout.msgpack" /dev/stdout /dev/fd/1 "$cli_tmp/log.msgpack"; do
    printf 'log' >"$cli_tmp/log.msgpack"
    "$bin" convert "$cli_tmp/direct.msgpack" "$out" --format msgpack >>"$cli_tmp/log.msgpack" 2>"$cli_tmp/err"; rc=$?
    if [ $rc -eq 2 ] && [ "$(cat "$cli_tmp/log.msgpack")" == log ] && [ -L "$L/stdout.msgpack" ] &&
       [ "$(cat "$cli_tmp/err")" == "linnx: convert: $out: cannot write: it is this run's standard output" ]; then
        pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: convert to $out > the log: exit $rc, $(cat "$cli_tmp/err")"; fi
done
se=$("$bin" "${P[@]}" --save "$L/stdout.msgpack" 2>&1 | cat); rc=${PIPESTATUS[0]} # stdout a pipe
if [ "$se" == "linnx: params: --save $L/stdout.msgpack: cannot write: it is this run's standard output" ]; then
    pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: params --save a link to stdout, a pipe: '$se'"; fi
expect_usage_error "convert: /dev/stderr: cannot write: it is this run's standard error" convert "$cli_tmp/direct.msgpack" /dev/stderr --format msgpack
# another open file (/proc/self/fd/N: its link's text is no path) and a new name among the devices
expect_usage_error "convert: /proc/self/fd/7: cannot write: it names an open file (/proc/PID/fd, /dev/fd), not a file to replace" \
    convert "$cli_tmp/direct.msgpack" /proc/self/fd/7 --format msgpack 7>>"$cli_tmp/log.msgpack"
dev=/dev/linnx-cli-params-$$.msgpack
if [ ! -e "$dev" ]; then
    expect_usage_error "params: --save $dev: cannot write: a folder of devices (/dev) takes no output file" "${P[@]}" --save "$dev"
    if [ ! -e "$dev" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: params --save $dev made it"; rm -f "$dev"; fi
fi
if [ "$(cat "$cli_tmp/log.msgpack")" == log ]; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "FAIL: an open file was written: $(head -c 40 "$cli_tmp/log.msgpack")"; fi

cli_finish
