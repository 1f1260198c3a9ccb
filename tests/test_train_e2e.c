/* Training end to end with the tape's gradients (autodiff.h): nnx.Optimizer's published docstring
 * run (Flax's optimizer.py: loss 2.3359997, one adam(1e-3) update -> 2.310461) with the gradients
 * of nnx.value_and_grad over optax.losses.squared_error(...).mean(), and a Linen Dense trained with
 * TrainState over linen_value_and_grad, whose optimizer path must equal optax_update +
 * apply_updates applied by hand, bit for bit. */
#include <stddef.h>

#include "linnx/nnx_layers.h"
#include "lx_test.h"

typedef struct {
    nnx_module base;
    nnx_module *linear1, *linear2;
} model2;

static lx_status model2_init(nnx_module *m, const lx_call *call, nnx_rngs *rngs) {
    model2 *self = (model2 *)m;
    lx_call l1 = LX_CALL_ARGS(lx_int_v(2), lx_int_v(3));
    lx_call l2 = LX_CALL_ARGS(lx_int_v(3), lx_int_v(4));
    LX_TRY(nnx_module_new(&NNX_LINEAR_TYPE, &l1, rngs, &self->linear1));
    return nnx_module_new(&NNX_LINEAR_TYPE, &l2, rngs, &self->linear2);
}
static const nnx_field MODEL2_FIELDS[] = {NNX_CHILD(model2, linear1), NNX_CHILD(model2, linear2)};
static const nnx_type MODEL2 = {.name = "Model", .size = sizeof(model2), .fields = MODEL2_FIELDS, .nfields = 2,
                                .init = model2_init};

typedef struct {
    lx_array *x, *y;
} batch;

/* loss_fn = lambda model: ((model(x) - y) ** 2).mean(), written with optax.losses */
static lx_status nnx_loss(nnx_module *m, void *user, lx_array **loss) {
    batch *b = user;
    model2 *self = (model2 *)m;
    lx_array *yh = nnx_call_array(self->linear2, nnx_call_array(self->linear1, b->x));
    *loss = lx_mean(optax_squared_error(yh, b->y), LX_ALL_AXES, false);
    return *loss ? LX_OK : lx_last_status();
}

static void test_nnx_docstring_with_tape(void) {
    nnx_rngs *rngs = NULL;
    nnx_module *m = NULL;
    CHECK(nnx_rngs_from_seed(0, &rngs) == LX_OK);
    CHECK(nnx_module_new(&MODEL2, &(lx_call){0}, rngs, &m) == LX_OK);
    nnx_rngs_release(rngs);
    if (!m) return;
    batch b = {lx_random_normal(lx_key_from_seed(0), 2, (const int64_t[]){1, 2}),
               lx_array_full_f32(2, (const int64_t[]){1, 4}, 1.0f)};
    lx_autorelease(b.y);
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    nnx_optimizer *opt = NULL;
    CHECK(nnx_optimizer_new(m, optax_adam(OPTAX_CONST(1e-3), NULL), &param, &opt) == LX_OK);
    lx_array *loss = NULL;
    lx_tree *grads = NULL;
    CHECK(nnx_value_and_grad(m, &param, nnx_loss, &b, &loss, &grads) == LX_OK);
    LX_TEST_REPORT_(loss && fabsf(lx_f32(loss)[0] - 2.3359997f) <= 2e-6f, "loss %.9g, Flax prints 2.3359997",
                    loss ? lx_f32(loss)[0] : NAN);
    lx_release(loss);
    CHECK(opt && nnx_optimizer_update(opt, m, grads, NULL) == LX_OK);
    lx_tree_release(grads);
    loss = NULL;
    CHECK(nnx_value_and_grad(m, &param, nnx_loss, &b, &loss, &grads) == LX_OK);
    LX_TEST_REPORT_(loss && fabsf(lx_f32(loss)[0] - 2.310461f) <= 2e-6f, "loss after one update %.9g, Flax prints 2.310461",
                    loss ? lx_f32(loss)[0] : NAN);
    lx_release(loss);
    lx_tree_release(grads);
    nnx_optimizer_free(opt);
    nnx_module_release(m);
}

typedef struct {
    const linen_module *m;
    lx_array *x, *y;
} lin_batch;

/* loss = optax.l2_loss(model.apply({'params': params}, x), y).mean() */
static lx_status linen_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    lin_batch *b = user;
    lx_tree *vars = lx_tree_new();
    lx_status st = vars ? lx_tree_set(vars, "params", lx_tree_v((lx_tree *)params)) : lx_last_status();
    lx_value out = lx_none();
    lx_call c = LX_CALL_ARGS(lx_array_v(b->x));
    if (st == LX_OK) st = linen_apply(b->m, vars, &c, LINEN_NO_RNGS, NULL, &out, NULL);
    lx_tree_release(vars);
    if (st == LX_OK && out.kind == LX_V_ARRAY) *loss = lx_mean(optax_l2_loss(out.u.array, b->y), LX_ALL_AXES, false);
    lx_value_free(&out);
    if (st == LX_OK && !*loss) st = lx_last_status();
    return st;
}

static void test_linen_train_state_with_tape(void) {
    linen_module *dense = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(3));
    CHECK(linen_module_new(&linen_Dense, &c, &dense) == LX_OK);
    lx_array *x = lx_random_normal(lx_key_from_seed(1), 2, (const int64_t[]){8, 5});
    lx_array *y = lx_random_normal(lx_key_from_seed(2), 2, (const int64_t[]){8, 3});
    lx_tree *vars = NULL;
    lx_call cx = LX_CALL_ARGS(lx_array_v(x));
    CHECK(linen_init(dense, LINEN_KEY(lx_key_from_seed(0)), &cx, NULL, &vars) == LX_OK);
    if (!vars) return;
    lx_tree *params = lx_tree_get(vars, "params")->u.tree;
    lin_batch b = {dense, x, y};
    linen_train_state *s = NULL;
    CHECK(linen_train_state_create(dense, params, optax_from_string("adamw(0.05, weight_decay=0.01)"), &s) == LX_OK);
    /* the same optimizer by hand, to compare bit for bit */
    optax_tx *tx = optax_from_string("adamw(0.05, weight_decay=0.01)");
    lx_tree *hp = lx_tree_retain(params), *hs = NULL;
    CHECK(optax_init(tx, hp, &hs) == LX_OK);
    float first = 0, last = 0;
    bool same = true, falling = true;
    for (int step = 0; step < 25 && s; step++) {
        lx_array *loss = NULL;
        lx_tree *grads = NULL;
        CHECK(linen_value_and_grad(linen_loss, &b, s->params, &loss, &grads, NULL) == LX_OK);
        if (!loss) break;
        float l = lx_f32(loss)[0];
        if (step == 0) first = l;
        else falling &= l < last;
        last = l;
        linen_train_state *n = NULL;
        CHECK(linen_train_state_apply_gradients(s, grads, &n) == LX_OK);
        CHECK(optax_step(tx, grads, &hp, &hs) == LX_OK);
        same &= lx_tree_equal(n->params, hp);
        linen_train_state_free(s);
        s = n;
        lx_release(loss);
        lx_tree_release(grads);
    }
    CHECK(same);
    LX_TEST_REPORT_(falling && last < 0.5f * first, "l2 loss %.6g -> %.6g over 25 adamw steps (falling: %d)", first, last,
                    falling);
    CHECK(s && s->step == 25);
    linen_train_state_free(s);
    lx_tree_release(hp);
    lx_tree_release(hs);
    optax_tx_release(tx);
    lx_tree_release(vars);
    linen_module_release(dense);
    optax_release_buffers();
}

int main(void) {
    RUN(test_nnx_docstring_with_tape);
    RUN(test_linen_train_state_with_tape);
    return lx_test_finish();
}
