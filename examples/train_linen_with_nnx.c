/* A Linen training pipeline with an NNX layer dropped in (spec/nnx-inside-linen.md), in C:
 *
 *   class MLP(nn.Module):
 *     @nn.compact
 *     def __call__(self, x):
 *       x = nn.relu(nn.Dense(32)(x))
 *       x = nn.relu(bridge.to_linen(nnx.Linear, 32, 32)(x))    # the NNX layer: ToLinen_0
 *       return nn.Dense(1)(x)
 *
 *   model = MLP()
 *   params = model.init(jax.random.key(0), x[:64])['params']
 *   state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-2))
 *
 *   def loss_fn(params, xb, yb):
 *     return optax.losses.l2_loss(state.apply_fn({'params': params}, xb), yb).mean()
 *
 *   for step in range(300):                      # batches of 64, reshuffled every epoch
 *     loss, grads = jax.value_and_grad(loss_fn)(state.params, xb, yb)
 *     state = state.apply_gradients(grads=grads)
 *
 * The data: 256 points x in [-1, 1]^2, y = sin(3 x0) x1. The NNX Linear's parameters live at
 * params/ToLinen_0/{kernel,bias}, and train like the Dense layers around it.
 * Prints `step K loss V` every 50 steps, then `first loss A last loss B`.
 */
#include <math.h>
#include <stdio.h>

#include "linnx/autodiff.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/linnx.h"
#include "linnx/losses.h"
#include "linnx/to_linen.h"
#include "linnx/train.h"

static lx_status mlp_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x = NULL;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    x = lx_relu(linen_dense(s, NULL, 32, x));
    linen_module *nnx_layer = BRIDGE_TO_LINEN(&NNX_LINEAR_TYPE, LX_KW_INT("in_features", 32),
                                              LX_KW_INT("out_features", 32));
    if (!nnx_layer) return lx_last_status();
    x = lx_relu(linen_call_array(s, nnx_layer, NULL, x));
    linen_module_release(nnx_layer);
    return linen_return_array(out, linen_dense(s, NULL, 1, x));
}
static const linen_method MLP_METHODS[] = {LINEN_METHOD("__call__", mlp_call)};
static const linen_type MLP = {.name = "MLP", .methods = MLP_METHODS, .nmethods = 1};

typedef struct {
    const linen_module *model;
    lx_array *xb, *yb;
} batch;

static lx_status loss_fn(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)aux;
    batch *b = user;
    lx_tree *vars = lx_tree_new();
    if (!vars) return lx_last_status();
    lx_status st = lx_tree_set(vars, "params", lx_tree_v((lx_tree *)params));
    lx_value y = lx_none();
    if (st == LX_OK) st = linen_apply(b->model, vars, &LX_ARGS(b->xb), LINEN_NO_RNGS, NULL, &y, NULL);
    lx_tree_release(vars);
    if (st == LX_OK) {
        *loss = lx_mean(optax_l2_loss(y.u.array, b->yb), LX_ALL_AXES, false);
        if (!*loss) st = lx_last_status();
    }
    lx_value_free(&y);
    return st;
}

int main(void) {
    enum { N = 256, BS = 64, STEPS = 300 };
    lx_key key = lx_key_from_seed(0);
    lx_key keys[3];
    linen_module *model = NULL;
    lx_tree *vars = NULL;
    linen_train_state *state = NULL;
    lx_batcher batcher = {0};
    lx_array *x = NULL, *y = NULL;
    float first = NAN, last = NAN;
    int rc = 1;
    if (lx_key_split(key, 3, false, keys) != LX_OK) goto done;
    /* data */
    x = lx_retain(lx_random_uniform(keys[0], 2, (int64_t[]){N, 2}, -1.0f, 1.0f));
    y = lx_array_new(LX_F32, 2, (int64_t[]){N, 1});
    if (!x || !y) goto done;
    for (int i = 0; i < N; i++) lx_f32(y)[i] = sinf(3 * lx_f32(x)[2 * i]) * lx_f32(x)[2 * i + 1];
    /* model, params, TrainState */
    if (linen_module_new(&MLP, NULL, &model) != LX_OK ||
        linen_init(model, LINEN_KEY(keys[1]), &LX_ARGS(x), NULL, &vars) != LX_OK ||
        linen_train_state_create(model, lx_tree_get(vars, "params")->u.tree, optax_adam(OPTAX_CONST(1e-2), NULL),
                                 &state) != LX_OK ||
        lx_batcher_init(&batcher, N, BS, false) != LX_OK)
        goto done;
    printf("params: %lld in %zu leaves; the NNX layer at params/ToLinen_0: %s\n",
           (long long)lx_tree_count_params(state->params), lx_tree_count_leaves(state->params),
           lx_tree_find(state->params, "ToLinen_0/kernel") ? "yes" : "no");
    for (int step = 0; step < STEPS; step++) {
        size_t mark = lx_pool_open();
        if (step % batcher.nbatches == 0 &&
            lx_batcher_shuffle(&batcher, lx_key_fold_in(keys[2], (uint32_t)(step / batcher.nbatches))) != LX_OK)
            goto done;
        lx_array *in[2] = {x, y}, *bt[2];
        if (!lx_batcher_next(&batcher, 2, in, bt)) goto done;
        batch b = {model, bt[0], bt[1]};
        lx_array *loss = NULL;
        lx_tree *grads = NULL;
        linen_train_state *next = NULL;
        if (linen_value_and_grad(loss_fn, &b, state->params, &loss, &grads, NULL) != LX_OK) goto done;
        lx_status st = linen_train_state_apply_gradients(state, grads, &next);
        lx_tree_release(grads);
        if (st != LX_OK) {
            lx_release(loss);
            goto done;
        }
        linen_train_state_free(state);
        state = next;
        last = lx_f32(loss)[0];
        if (step == 0) first = last;
        if (step % 50 == 0 || step == STEPS - 1) printf("step %d loss %.6f\n", step, last);
        lx_release(loss);
        lx_pool_close(mark);
    }
    printf("first loss %.6f last loss %.6f\n", first, last);
    rc = 0;
done:
    if (rc) fprintf(stderr, "train_linen_with_nnx: %s\n", lx_last_error());
    lx_batcher_free(&batcher);
    linen_train_state_free(state);
    lx_tree_release(vars);
    linen_module_release(model);
    lx_release(x);
    lx_release(y);
    bridge_to_linen_cache_clear();
    lx_pool_drain();
    return rc;
}
