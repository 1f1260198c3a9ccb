#!/usr/bin/env bash
# `linnx grad`: jax.value_and_grad from the shell. The gradients of a Dense under squared_error and
# of an NNX Linear under integer-label softmax cross-entropy against closed forms evaluated in
# double by awk from the parameters `linnx params` prints for the same seed; the bridge specs give
# gradients at exactly their parameters' paths; usage errors. Usage: cli_grad.sh PATH/TO/linnx
set -u
bin=${1:?usage: cli_grad.sh PATH/TO/linnx}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib_cli.sh"

X=0.5,-1,2,0.25,1.5,0.75,-0.5,-2,0,1,-1.25,0.5
ok() { if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $*"; fi; }
values() { sed -n "s|^$1 [^:]*: ||p" <<<"$2"; } # the numbers of one line by its path (and type)

# --- linen.Dense(2), squared_error: L = mean((xW + b - y)^2); dW = 2/(n*2) x^T r, db = 2/(n*2) sum r
params=$("$bin" params 'linen.Dense(2)' --seed 3 --input-shape 3,4)
grad=$("$bin" grad 'linen.Dense(2)' --seed 3 --x $X --x-shape 3,4 --y 1,0,0,1,0.5,-0.5 --y-shape 3,2 --loss squared_error)
want=$(awk -v x="$X" -v Y="1,0,0,1,0.5,-0.5" -v W="$(values params/kernel "$params")" -v B="$(values params/bias "$params")" 'BEGIN {
    split(x, xs, ","); split(Y, ys, ","); split(W, w, " "); split(B, b, " ")
    for (n = 0; n < 3; n++) for (o = 0; o < 2; o++) {
        p = b[o + 1]; for (i = 0; i < 4; i++) p += xs[n * 4 + i + 1] * w[i * 2 + o + 1]
        r[n, o] = p - ys[n * 2 + o + 1]; L += r[n, o] * r[n, o] }
    printf "%.9g\n", L / 6
    for (i = 0; i < 4; i++) for (o = 0; o < 2; o++) { g = 0; for (n = 0; n < 3; n++) g += xs[n * 4 + i + 1] * r[n, o]; printf "%.9g ", g / 3 }
    printf "\n"; for (o = 0; o < 2; o++) { g = 0; for (n = 0; n < 3; n++) g += r[n, o]; printf "%.9g ", g / 3 }
    printf "\n" }')
ok numbers_close "$(sed -n 's/^loss float32\[\]: //p' <<<"$grad")" "$(sed -n 1p <<<"$want")" 1e-5
ok numbers_close "$(values params/kernel "$grad")" "$(sed -n 2p <<<"$want")" 1e-4
ok numbers_close "$(values params/bias "$grad")" "$(sed -n 3p <<<"$want")" 1e-4

# --- nnx.Linear(4, 3), softmax_cross_entropy_with_integer_labels: dlogits = (softmax - onehot) / n
params=$("$bin" params 'nnx.Linear(4, 3)' --seed 1)
grad=$("$bin" grad 'nnx.Linear(4, 3)' --seed 1 --x $X --x-shape 3,4 --y 2,0,1 --y-shape 3 \
       --loss softmax_cross_entropy_with_integer_labels)
want=$(awk -v x="$X" -v Y="2,0,1" -v W="$(values 'kernel Param' "$params")" -v B="$(values 'bias Param' "$params")" 'BEGIN {
    split(x, xs, ","); split(Y, ys, ","); split(W, w, " "); split(B, b, " ")
    for (n = 0; n < 3; n++) {
        m = -1e30; for (o = 0; o < 3; o++) { z[o] = b[o + 1]; for (i = 0; i < 4; i++) z[o] += xs[n * 4 + i + 1] * w[i * 3 + o + 1]; if (z[o] > m) m = z[o] }
        s = 0; for (o = 0; o < 3; o++) s += exp(z[o] - m)
        L += m + log(s) - z[ys[n + 1]]
        for (o = 0; o < 3; o++) d[n, o] = (exp(z[o] - m) / s - (o == ys[n + 1])) / 3 }
    printf "%.9g\n", L / 3
    for (o = 0; o < 3; o++) { g = 0; for (n = 0; n < 3; n++) g += d[n, o]; printf "%.9g ", g }
    printf "\n"; for (i = 0; i < 4; i++) for (o = 0; o < 3; o++) { g = 0; for (n = 0; n < 3; n++) g += xs[n * 4 + i + 1] * d[n, o]; printf "%.9g ", g }
    printf "\n" }')
ok numbers_close "$(sed -n 's/^loss float32\[\]: //p' <<<"$grad")" "$(sed -n 1p <<<"$want")" 1e-5
ok numbers_close "$(values 'bias Param' "$grad")" "$(sed -n 2p <<<"$want")" 1e-4
ok numbers_close "$(values 'kernel Param' "$grad")" "$(sed -n 3p <<<"$want")" 1e-4

# --- the bridge: gradients at exactly the parameters' paths, with their shapes
paths() { sed -n 's/^\([^ ]*\) \(Param \)\{0,1\}\(float32\[[0-9,]*\]\):.*/\1 \3/p' <<<"$1" | grep -v '^loss' | sort; }
for spec in 'bridge.to_linen(nnx.Linear, 4, 2)' 'bridge.ToNNX(linen.Dense(2))' \
            'linen.Sequential(linen.Dense(5), linen.relu, linen.Dense(2))'; do
    params=$("$bin" params "$spec" --seed 0 --input-shape 3,4 | grep -v '\[rng\]')
    grad=$("$bin" grad "$spec" --seed 0 --x $X --x-shape 3,4 --y 1,0,0,1,1,1 --y-shape 3,2 --loss l2_loss)
    ok test -n "$(paths "$grad")"
    ok test "$(paths "$grad")" == "$(paths "$params")"
done

# boxes come back boxed: a Partitioned Linen kernel, the NNXMeta of to_linen, an NNX out_sharding
for pair in "linen.Dense(2, kernel_init=linen.with_partitioning(linen.initializers.lecun_normal(), ('in', 'out')))|params/kernel .*\\[Partitioned ('in', 'out')\\]" \
            "bridge.to_linen(nnx.Linear, 4, 2, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ('in', 'out')))|params/kernel .*\\[NNXMeta ('in', 'out')\\]" \
            "nnx.Linear(4, 2, kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ('in', 'out')))|kernel Param .*\\[out_sharding ('in', 'out')\\]"; do
    spec=${pair%%|*} want=${pair#*|}
    ok grep -q "$want" <<<"$("$bin" grad "$spec" --seed 0 --x 1,2,3,4 --x-shape 1,4 --y 1,0 --y-shape 1,2 --loss squared_error)"
done

# --- bridged layers nested in a Sequential: an NNX layer inside a Linen model (to_linen, named
# layers_2 as nn.Sequential names its children, its variables under params/layers_2) and a Linen
# layer inside an NNX model (ToNNX, lazy_init on the (3, 3) input, at layers/2). The gradients
# equal those of the same network written in one style: layers_0 / layers/0 draw the same keys
# either way, and the last layer starts from the same constants.
D3="--x 1,-2,3,0.5,5,-6,-1,0.25,2 --x-shape 3,3 --y 1,0,0,1,-1,2 --y-shape 3,2 --loss squared_error"
sorted_lines() { grep -v '^loss' <<<"$1" | sort; }
same_grads() { # spec, the one-style spec: every line (the loss first) and its numbers within 1e-6
    local a b
    a=$("$bin" grad "$1" --seed 0 $D3) && b=$("$bin" grad "$2" --seed 0 $D3)
    if [ -n "$a" ] && [ "$(sed -n 1p <<<"$a")" == "$(sed -n 1p <<<"$b")" ] &&
       [ "$(sorted_lines "$a" | cut -d: -f1)" == "$(sorted_lines "$b" | cut -d: -f1)" ] &&
       numbers_close "$(sorted_lines "$a" | cut -d: -f2 | tr '\n' ' ')" "$(sorted_lines "$b" | cut -d: -f2 | tr '\n' ' ')" 1e-6; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: grad $1 vs $2:"; diff <(echo "$a") <(echo "$b") | head -8
    fi
}
C="kernel_init=linen.initializers.constant(0.3), bias_init=linen.initializers.constant(-0.1)"
NC="kernel_init=nnx.initializers.constant(0.3), bias_init=nnx.initializers.constant(-0.1)"
same_grads "linen.Sequential(linen.Dense(4), linen.relu, bridge.to_linen(nnx.Linear, 4, 2, $NC))" \
           "linen.Sequential(linen.Dense(4), linen.relu, linen.Dense(2, $C))"
same_grads "nnx.Sequential(nnx.Linear(3, 4), nnx.relu, bridge.ToNNX(linen.Dense(2, $C)))" \
           "nnx.Sequential(nnx.Linear(3, 4), nnx.relu, nnx.Linear(4, 2, $NC))"
# the paths, with `linnx params` (which needs --input-shape for the nested ToNNX's lazy_init)
for pair in "linen.Sequential(linen.Dense(4), linen.relu, bridge.to_linen(nnx.Linear, 4, 2))|params/layers_0/bias float32[4] params/layers_0/kernel float32[3,4] params/layers_2/bias float32[2] params/layers_2/kernel float32[4,2]" \
            "nnx.Sequential(nnx.Linear(3, 4), nnx.relu, bridge.ToNNX(linen.Dense(2)))|layers/0/bias float32[4] layers/0/kernel float32[3,4] layers/2/bias float32[2] layers/2/kernel float32[4,2]"; do
    spec=${pair%%|*} want=${pair#*|}
    params=$("$bin" params "$spec" --seed 0 --input-shape 3,3 | grep -v '\[rng\]')
    grad=$("$bin" grad "$spec" --seed 0 $D3)
    ok test "$(paths "$grad" | tr '\n' ' ')" == "$want "
    ok test "$(paths "$params" | tr '\n' ' ')" == "$want "
done
# the Linen layers inside to_linen's Sequential keep Linen's keys: layers_0 as in the all-Linen spec
ok test "$("$bin" params 'linen.Sequential(linen.Dense(4), linen.relu, bridge.to_linen(nnx.Linear, 4, 2))' --seed 5 --input-shape 3,3 | grep layers_0/kernel)" == \
        "$("$bin" params 'linen.Sequential(linen.Dense(4), linen.relu, linen.Dense(2))' --seed 5 --input-shape 3,3 | grep layers_0/kernel)"
# training runs through both: the same losses as the one-style networks
for pair in "linen.Sequential(linen.Dense(4), linen.relu, bridge.to_linen(nnx.Linear, 4, 2, $NC))|linen.Sequential(linen.Dense(4), linen.relu, linen.Dense(2, $C))" \
            "nnx.Sequential(nnx.Linear(3, 4), nnx.relu, bridge.ToNNX(linen.Dense(2, $C)))|nnx.Sequential(nnx.Linear(3, 4), nnx.relu, nnx.Linear(4, 2, $NC))"; do
    a=$("$bin" train "${pair%%|*}" --seed 0 $D3 --optimizer 'adam(0.05)' --steps 4 | cut -d' ' -f4 | tr '\n' ' ')
    b=$("$bin" train "${pair#*|}" --seed 0 $D3 --optimizer 'adam(0.05)' --steps 4 | cut -d' ' -f4 | tr '\n' ' ')
    ok numbers_close "$a" "$b" 1e-5
done
expect_usage_error "a bridge.ToNNX layer needs --input-shape" params 'nnx.Sequential(nnx.Linear(3, 4), bridge.ToNNX(linen.Dense(2)))' --seed 0
expect_usage_error "bridge.ToNNX makes an NNX module, not a layer of a Linen one" grad 'linen.Sequential(linen.Dense(4), bridge.ToNNX(linen.Dense(2)))' --seed 0 $D3
expect_usage_error "bridge.to_linen makes a Linen module, not a layer of an NNX one" grad 'nnx.Sequential(nnx.Linear(3, 4), bridge.to_linen(nnx.Linear, 4, 2))' --seed 0 $D3
expect_usage_error "bridge.to_linen needs an NNX class first" params 'linen.Sequential(linen.Dense(4), bridge.to_linen(linen.Dense, 2))' --seed 0 --input-shape 3,3

# the nested ToNNX's own Rngs, literally (spec/jax-random.md 6.3, flax-bridge.md 1.5): Rngs(S) has
# one stream `default`; nnx.Linear(3, 4) draws counts 0 (kernel) and 1 (bias); ToNNX(..., rngs)
# stores rngs.fork(), a stream keyed fold_in(key(S), 2) (one draw: the parent's count 2); lazy_init
# draws its count 0 for the Linen init (count 1 after), `default` renamed `params`; the top-level
# Dense's kernel key is make_rng('params') at path () count 1: lecun_normal of
# fold_in(fold_in(child, 0), hash((1,))). Expected values from ../shared/spec/jax_random_ref.py:
#   c = fold_in(prng_key(S), 2); lecun_normal(linen_make_rng(fold_in(c, 0), (), 1), (4, 2))
NEST='nnx.Sequential(nnx.Linear(3, 4), nnx.relu, bridge.ToNNX(linen.Dense(2)))'
for pair in "0|4146024105 2718843009|-0.645294905 -0.690725625 -0.285557926 -0.19699806 0.379178286 -0.108739085 -0.183121517 0.407092929" \
            "7|966301609 1948237315|-0.486808062 0.767180026 0.0460281968 -0.115717411 0.42202571 0.610271215 -0.426366717 -0.883905768"; do
    IFS='|' read -r seed key kernel <<<"$pair"
    params=$("$bin" params "$NEST" --seed "$seed" --input-shape 3,3)
    ok test "$(grep '^layers/2/to_nnx__rngs' <<<"$params")" == "$(printf '%s\n' \
        'layers/2/to_nnx__rngs/default/count RngCount uint32[]: 1 [rng]' \
        "layers/2/to_nnx__rngs/default/key RngKey uint32[2]: $key [rng]")"
    ok numbers_close "$(values 'layers/2/kernel Param' "$params")" "$kernel" 1e-6
done
# and, where the reference model is at hand (../shared/spec beside the repository), computed live
ref=$here/../../shared/spec/jax_random_ref.py
if command -v python3 >/dev/null && [ -f "$ref" ]; then
    want=$(python3 -c "
import sys; sys.path.insert(0, '$(dirname "$ref")'); import jax_random_ref as r
c = r.fold_in(r.prng_key(11), 2)
print(c[0], c[1]); print(' '.join('%.9g' % v for v in r.lecun_normal(r.linen_make_rng(r.fold_in(c, 0), (), 1), (4, 2))))")
    params=$("$bin" params "$NEST" --seed 11 --input-shape 3,3)
    ok test -n "$(sed -n 1p <<<"$want")"
    ok test "$(sed -n 's|^layers/2/to_nnx__rngs/default/key RngKey uint32\[2\]: \(.*\) \[rng\]$|\1|p' <<<"$params")" == "$(sed -n 1p <<<"$want")"
    ok numbers_close "$(values 'layers/2/kernel Param' "$params")" "$(sed -n 2p <<<"$want")" 1e-6
fi
# two ToNNX layers fork in turn: fold_in(key(0), 0) and fold_in(key(0), 1) (jax's stateful_rng doctest values)
ok test "$("$bin" params 'nnx.Sequential(bridge.ToNNX(linen.Dense(4)), bridge.ToNNX(linen.Dense(2)))' --seed 0 --input-shape 3,3 | grep '/key ')" == \
        "$(printf '%s\n' 'layers/0/to_nnx__rngs/default/key RngKey uint32[2]: 1797259609 2579123966 [rng]' \
                         'layers/1/to_nnx__rngs/default/key RngKey uint32[2]: 928981903 3453687069 [rng]')"

# --- an Embed first, through any nesting, reads x as int32 token ids (params, grad, train): the
# bridged networks' gradients equal the one-style network's (the Embed starts from a constant, the
# next layer draws the same keys in both spellings: layers_1's path in Linen, counts 1 and 2 after
# the Embed's (or the ToNNX fork's) one draw in NNX); ids 1, 3, 3, 0: rows 1 and 0 once, row 3 twice
DE="--x 1,3,3,0 --x-shape 2,2 --y 1,0,0,1,-1,2,0.5,0.5 --y-shape 2,2,2 --loss squared_error"
LE="embedding_init=linen.initializers.constant(0.3)" NE="embedding_init=nnx.initializers.constant(0.3)"
D3_SAVED=$D3 D3=$DE
same_grads "linen.Sequential(bridge.to_linen(nnx.Embed, 10, 4, $NE), linen.Dense(2))" \
           "linen.Sequential(linen.Embed(10, 4, $LE), linen.Dense(2))"
same_grads "nnx.Sequential(bridge.ToNNX(linen.Embed(10, 4, $LE)), nnx.Linear(4, 2))" \
           "nnx.Sequential(nnx.Embed(10, 4, $NE), nnx.Linear(4, 2))"
same_grads "bridge.to_linen(nnx.Embed, 10, 2, $NE)" "linen.Embed(10, 2, $LE)"
D3=$D3_SAVED
# a Sequential inside a Sequential: the same numbers (its paths gain a level: layers/0/layers/0/...)
a=$("$bin" grad "nnx.Sequential(nnx.Sequential(nnx.Embed(10, 4, $NE)), nnx.Linear(4, 2))" --seed 0 $DE)
b=$("$bin" grad "nnx.Sequential(nnx.Embed(10, 4, $NE), nnx.Linear(4, 2))" --seed 0 $DE)
ok test -n "$a"
ok test "$(cut -d: -f2 <<<"$a")" == "$(cut -d: -f2 <<<"$b")"
# the embedding's gradient lands on the rows of the ids: row 3 twice row 1's... (rows 2, 4.. are 0)
g=$("$bin" grad "nnx.Sequential(bridge.ToNNX(linen.Embed(10, 4, $LE)), nnx.Linear(4, 2))" --seed 0 $DE)
ok test "$(values 'layers/0/embedding Param' "$g" | cut -d' ' -f9-12,17-40)" == "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"
# linnx params inits on int32 zeros of --input-shape, train runs: the same losses either way
for pair in "linen.Sequential(bridge.to_linen(nnx.Embed, 10, 4, $NE), linen.Dense(2))|linen.Sequential(linen.Embed(10, 4, $LE), linen.Dense(2))" \
            "nnx.Sequential(bridge.ToNNX(linen.Embed(10, 4, $LE)), nnx.Linear(4, 2))|nnx.Sequential(nnx.Embed(10, 4, $NE), nnx.Linear(4, 2))"; do
    a=$("$bin" params "${pair%%|*}" --seed 0 --input-shape 2,2 | grep -v '\[rng\]')
    b=$("$bin" params "${pair#*|}" --seed 0 --input-shape 2,2)
    ok test -n "$a"
    ok test "$(sed 's/ Param//' <<<"$a" | sort)" == "$(sed 's/ Param//' <<<"$b" | sort)"
    a=$("$bin" train "${pair%%|*}" --seed 0 $DE --optimizer 'adam(0.05)' --steps 3 | cut -d' ' -f4 | tr '\n' ' ')
    b=$("$bin" train "${pair#*|}" --seed 0 $DE --optimizer 'adam(0.05)' --steps 3 | cut -d' ' -f4 | tr '\n' ' ')
    ok numbers_close "$a" "$b" 1e-5
done
for spec in 'bridge.to_linen(nnx.Embed, 10, 4)' 'nnx.Embed(10, 4)' 'nnx.Sequential(bridge.ToNNX(linen.Embed(10, 4)), nnx.Linear(4, 2))' \
            'linen.Sequential(bridge.to_linen(nnx.Embed, 10, 4), linen.Dense(2))' \
            "linen.vmap(linen.Embed(10, 4), variable_axes=('params', 0), split_rngs=('params',), in_axes=0, axis_size=2)"; do
    ok test -n "$("$bin" params "$spec" --seed 0 --input-shape 2,2 | grep embedding)"
done

# --- an unbatched example: x (3,) and y (2,) as model(x) reads them in JAX; the same numbers as
# the (1, 3) batch of that one example (the mean runs over the same two elements)
for spec in 'nnx.Linear(3, 2)' 'linen.Dense(2)' 'bridge.ToNNX(linen.Dense(2))'; do
    a=$("$bin" grad "$spec" --seed 0 --x 1,2,3 --y 1,0 --loss l2_loss)
    b=$("$bin" grad "$spec" --seed 0 --x 1,2,3 --x-shape 1,3 --y 1,0 --y-shape 1,2 --loss l2_loss)
    ok test -n "$a"
    ok test "$(cut -d: -f2 <<<"$a")" == "$(cut -d: -f2 <<<"$b")"
    ok test "$(sed 's/\[[0-9,]*\]//' <<<"$a" | cut -d: -f1)" == "$(sed 's/\[[0-9,]*\]//' <<<"$b" | cut -d: -f1)"
done

expect_usage_error "unknown loss 'mse'" grad 'linen.Dense(2)' --seed 0 --x 1,2 --x-shape 1,2 --y 1,2 --y-shape 1,2 --loss mse
expect_usage_error "--loss is required" grad 'linen.Dense(2)' --seed 0 --x 1,2 --x-shape 1,2 --y 1,2 --y-shape 1,2
expect_usage_error "3 values do not fill --x-shape (1, 2)" grad 'linen.Dense(2)' --seed 0 --x 1,2,3 --x-shape 1,2 --y 1,2 --y-shape 1,2 --loss l2_loss
expect_usage_error "--y is required" grad 'linen.Dense(2)' --seed 0 --x 1,2 --x-shape 1,2 --loss l2_loss
expect_usage_error "is not an integer" grad 'linen.Dense(2)' --seed 0 --x 1,2 --x-shape 1,2 --y 0.5 --y-shape 1 --loss softmax_cross_entropy_with_integer_labels
expect_usage_error "labels of shape (2,) do not match logits of shape (1, 2)" grad 'linen.Dense(2)' --seed 0 --x 1,2 --x-shape 1,2 --y 0,1 --y-shape 2 --loss softmax_cross_entropy_with_integer_labels
expect_usage_error "could not be broadcast together" grad 'nnx.Linear(2, 3)' --seed 0 --x 1,2 --x-shape 1,2 --y 1,2 --y-shape 1,2 --loss squared_error
expect_usage_error "unknown module" grad 'torch.Linear(2)' --seed 0 --x 1,2 --x-shape 1,2 --y 1 --y-shape 1 --loss l2_loss
if "$bin" grad --help | grep -q "usage: linnx grad"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: --help"; fi

cli_finish
