/* An NNX training pipeline with a Linen block dropped in through ToNNX, in C:
 *
 *   class Block(nn.Module):                      # an existing Linen block
 *     @nn.compact
 *     def __call__(self, x):
 *       x = nn.relu(nn.Conv(16, (3, 3))(x))
 *       return nn.avg_pool(x, (2, 2), strides=(2, 2))
 *
 *   class CNN(nnx.Module):
 *     def __init__(self, rngs):
 *       self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
 *       self.block = bridge.ToNNX(Block(), rngs=rngs)
 *       self.head = nnx.Linear(16 * 4 * 4, 2, rngs=rngs)
 *     def __call__(self, x):
 *       x = self.block(nnx.relu(self.conv(x)))
 *       return self.head(x.reshape(x.shape[0], -1))
 *
 *   model = CNN(nnx.Rngs(0)); bridge.lazy_init(model, x)
 *   optimizer = nnx.Optimizer(model, optax.sgd(0.05, momentum=0.9), wrt=nnx.Param)
 *   for step in range(60):
 *     loss, grads = nnx.value_and_grad(loss_fn)(model, xb, yb)  # softmax CE, integer labels
 *     optimizer.update(model, grads)
 *
 * The data: 8x8 one-channel images (NHWC) of a vertical (label 0) or horizontal (label 1) bar at
 * a random place, plus uniform noise. The Linen block's parameters are NNX Params at
 * block/Conv_0/{kernel,bias}, updated in place by the optimizer like the NNX layers around them.
 * Prints `step K loss V` every 10 steps, then `first loss A last loss B`.
 */
#include <stdio.h>

#include "linnx/autodiff.h"
#include "linnx/linen_layers.h"
#include "linnx/linnx.h"
#include "linnx/losses.h"
#include "linnx/nnx_layers.h"
#include "linnx/to_nnx.h"
#include "linnx/train.h"

/* ---- the Linen block ---- */
static lx_status block_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x = NULL;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    x = lx_relu(linen_conv(s, NULL, 16, 2, (int64_t[]){3, 3}, x));
    return linen_return_array(out, lx_avg_pool(x, 2, (int64_t[]){2, 2}, (int64_t[]){2, 2}, NULL, true));
}
static const linen_method BLOCK_METHODS[] = {LINEN_METHOD("__call__", block_call)};
static const linen_type BLOCK = {.name = "Block", .methods = BLOCK_METHODS, .nmethods = 1};

/* ---- the NNX CNN ---- */
typedef struct {
    nnx_module base;
    nnx_module *conv, *block, *head;
} cnn;

static lx_status cnn_init(nnx_module *m, const lx_call *call, nnx_rngs *rngs) {
    (void)call;
    cnn *self = (cnn *)m;
    lx_call cc = LX_CALL_ARGS(lx_int_v(1), lx_int_v(8), lx_ints_v(2, (const int64_t[]){3, 3}));
    lx_call hc = LX_CALL_ARGS(lx_int_v(16 * 4 * 4), lx_int_v(2));
    LX_TRY(nnx_module_new(&NNX_CONV_TYPE, &cc, rngs, &self->conv));
    linen_module *block = NULL;
    LX_TRY(linen_module_new(&BLOCK, NULL, &block));
    lx_status st = bridge_to_nnx_new(block, rngs, NULL, &self->block);
    linen_module_release(block);
    LX_TRY(st);
    return nnx_module_new(&NNX_LINEAR_TYPE, &hc, rngs, &self->head);
}

static lx_status cnn_call(nnx_module *m, const lx_call *call, lx_value *out) {
    cnn *self = (cnn *)m;
    lx_array *x;
    LX_TRY(lx_call_array(call, 0, "x", &x));
    x = nnx_call_array(self->block, lx_relu(nnx_call_array(self->conv, x)));
    x = nnx_call_array(self->head, x ? lx_reshape(x, 2, (int64_t[]){x->shape[0], -1}) : NULL);
    if (!x) return lx_last_status();
    *out = lx_array_v(lx_retain(x));
    return LX_OK;
}

static const nnx_field CNN_FIELDS[] = {NNX_CHILD(cnn, conv), NNX_CHILD(cnn, block), NNX_CHILD(cnn, head)};
static const nnx_method CNN_METHODS[] = {{"__call__", cnn_call}};
static const nnx_type CNN = {
    .name = "CNN", .size = sizeof(cnn), .fields = CNN_FIELDS, .nfields = 3, .methods = CNN_METHODS, .nmethods = 1,
    .init = cnn_init,
};

typedef struct {
    lx_array *xb, *yb;
} batch;

static lx_status loss_fn(nnx_module *model, void *user, lx_array **loss) {
    batch *b = user;
    *loss = lx_mean(optax_softmax_cross_entropy_with_integer_labels(nnx_call_array(model, b->xb), b->yb), LX_ALL_AXES,
                    false);
    return *loss ? LX_OK : lx_last_status();
}

/* n images: a bar along a random row or column, plus noise in [0, 0.5). */
static lx_status make_data(lx_key key, int n, lx_array **x, lx_array **y) {
    lx_key k[3];
    LX_TRY(lx_key_split(key, 3, false, k));
    *x = lx_retain(lx_random_uniform(k[0], 4, (int64_t[]){n, 8, 8, 1}, 0.0f, 0.5f));
    lx_array *cls = lx_random_randint(k[1], 1, (int64_t[]){n}, 0, 2);
    lx_array *pos = lx_random_randint(k[2], 1, (int64_t[]){n}, 0, 8);
    if (!*x || !cls || !pos) return lx_last_status();
    *y = lx_retain(cls);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 8; j++) {
            int p = lx_i32(pos)[i];
            int r = lx_i32(cls)[i] ? p : j, c = lx_i32(cls)[i] ? j : p; /* 1: a row (horizontal) */
            lx_f32(*x)[(i * 8 + r) * 8 + c] += 1.0f;
        }
    return LX_OK;
}

int main(void) {
    enum { N = 256, BS = 32, STEPS = 60 };
    nnx_rngs *rngs = NULL;
    nnx_module *model = NULL;
    nnx_optimizer *opt = NULL;
    lx_batcher batcher = {0};
    lx_array *x = NULL, *y = NULL;
    float first = 0, last = 0;
    int rc = 1;
    const nnx_filter params = NNX_OF_TYPE(&lx_Param);
    lx_key data_key = lx_key_from_seed(1), shuffle_key = lx_key_from_seed(2);
    if (make_data(data_key, N, &x, &y) != LX_OK || nnx_rngs_from_seed(0, &rngs) != LX_OK ||
        nnx_module_new(&CNN, NULL, rngs, &model) != LX_OK)
        goto done;
    /* bridge.lazy_init(model, x): the Linen block's variables are created on the first call */
    lx_array *sample = lx_autorelease(lx_array_reshape_view(x, 4, (int64_t[]){N, 8, 8, 1}));
    if (!sample || bridge_lazy_init(model, NULL, &LX_ARGS(sample)) != LX_OK) goto done;
    if (nnx_optimizer_new(model, optax_sgd(OPTAX_CONST(0.05), true, 0.9, false), &params, &opt) != LX_OK ||
        lx_batcher_init(&batcher, N, BS, false) != LX_OK)
        goto done;
    lx_tree *state = NULL;
    if (nnx_state(model, 1, &params, &state) != LX_OK) goto done;
    printf("params: %lld; the Linen block's kernel at block/Conv_0/kernel: %s\n",
           (long long)lx_tree_count_params(state), lx_tree_find(state, "block/Conv_0/kernel") ? "yes" : "no");
    lx_tree_release(state);
    for (int step = 0; step < STEPS; step++) {
        size_t mark = lx_pool_open();
        if (step % batcher.nbatches == 0 &&
            lx_batcher_shuffle(&batcher, lx_key_fold_in(shuffle_key, (uint32_t)(step / batcher.nbatches))) != LX_OK)
            goto done;
        lx_array *in[2] = {x, y}, *bt[2];
        if (!lx_batcher_next(&batcher, 2, in, bt)) goto done;
        batch b = {bt[0], bt[1]};
        lx_array *loss = NULL;
        lx_tree *grads = NULL;
        if (nnx_value_and_grad(model, &params, loss_fn, &b, &loss, &grads) != LX_OK) goto done;
        lx_status st = nnx_optimizer_update(opt, model, grads, NULL);
        lx_tree_release(grads);
        last = lx_f32(loss)[0];
        lx_release(loss);
        if (st != LX_OK) goto done;
        if (step == 0) first = last;
        if (step % 10 == 0 || step == STEPS - 1) printf("step %d loss %.6f\n", step, last);
        lx_pool_close(mark);
    }
    printf("first loss %.6f last loss %.6f (optimizer step %u)\n", first, last, nnx_optimizer_step(opt));
    rc = 0;
done:
    if (rc) fprintf(stderr, "train_nnx_with_linen: %s\n", lx_last_error());
    lx_batcher_free(&batcher);
    nnx_optimizer_free(opt);
    nnx_module_release(model);
    if (rngs) nnx_rngs_release(rngs);
    lx_release(x);
    lx_release(y);
    lx_pool_drain();
    return rc;
}
