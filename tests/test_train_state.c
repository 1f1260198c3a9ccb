/* Train states: nnx.Optimizer against its published docstring run (Flax's optimizer.py: a
 * Linear(2,3) -> Linear(3,4) model from Rngs(0), loss 2.3359997, one adam(1e-3) update -> 2.310461;
 * the gradients here are the analytic ones of that loss, computed in double), its state layout,
 * in-place writes and atomic failures; Linen's TrainState; shuffled minibatches against
 * jax.random.permutation's fixture values. */
#include <stddef.h>
#include <stdio.h>

#include "linnx/nnx_layers.h"
#include "linnx/train.h"
#include "lx_test.h"
#include "fixtures/perm_fixtures.h"

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
static lx_status model2_call(nnx_module *m, const lx_call *call, lx_value *out) {
    model2 *self = (model2 *)m;
    lx_array *x;
    LX_TRY(lx_call_array(call, 0, "x", &x));
    x = nnx_call_array(self->linear2, nnx_call_array(self->linear1, x));
    if (!x) return lx_last_status();
    *out = lx_array_v(lx_retain(x));
    return LX_OK;
}
static const nnx_field MODEL2_FIELDS[] = {NNX_CHILD(model2, linear1), NNX_CHILD(model2, linear2)};
static const nnx_method MODEL2_METHODS[] = {{"__call__", model2_call}};
static const nnx_type MODEL2 = {.name = "Model", .size = sizeof(model2), .fields = MODEL2_FIELDS, .nfields = 2,
                                .methods = MODEL2_METHODS, .nmethods = 1, .init = model2_init};

static const float *val(nnx_module *lin, const char *which) {
    nnx_linear *l = (nnx_linear *)lin;
    return lx_f32(lx_variable_get_value(!strcmp(which, "kernel") ? l->kernel : l->bias));
}

/* loss = mean((model(x) - y)**2) with y = ones((1, 4)); grads (optional) in double. */
static double loss_and_grads(model2 *m, const float *x, double gw1[6], double gb1[3], double gw2[12], double gb2[4]) {
    const float *w1 = val(m->linear1, "kernel"), *b1 = val(m->linear1, "bias");
    const float *w2 = val(m->linear2, "kernel"), *b2 = val(m->linear2, "bias");
    double h[3], yh[4], dy[4], dh[3] = {0}, loss = 0;
    for (int j = 0; j < 3; j++) h[j] = (double)x[0] * w1[j] + (double)x[1] * w1[3 + j] + b1[j];
    for (int k = 0; k < 4; k++) {
        yh[k] = b2[k];
        for (int j = 0; j < 3; j++) yh[k] += h[j] * w2[j * 4 + k];
        loss += (yh[k] - 1) * (yh[k] - 1) / 4;
        dy[k] = 2 * (yh[k] - 1) / 4;
    }
    if (!gw1) return loss;
    for (int k = 0; k < 4; k++) gb2[k] = dy[k];
    for (int j = 0; j < 3; j++)
        for (int k = 0; k < 4; k++) {
            gw2[j * 4 + k] = h[j] * dy[k];
            dh[j] += dy[k] * w2[j * 4 + k];
        }
    for (int j = 0; j < 3; j++) {
        gb1[j] = dh[j];
        gw1[j] = x[0] * dh[j];
        gw1[3 + j] = x[1] * dh[j];
    }
    return loss;
}

static lx_array *f32_from_d(int ndim, const int64_t *shape, const double *v, int n) {
    float f[16];
    for (int i = 0; i < n; i++) f[i] = (float)v[i];
    return lx_array_from_f32(ndim, shape, f);
}

/* grads as nnx.grad returns them: a State with the Param paths (plain arrays here) */
static lx_tree *grads_tree(model2 *m, const float *x) {
    double gw1[6], gb1[3], gw2[12], gb2[4];
    loss_and_grads(m, x, gw1, gb1, gw2, gb2);
    lx_tree *g = lx_tree_new();
    lx_array *a[4] = {f32_from_d(2, (const int64_t[]){2, 3}, gw1, 6), f32_from_d(1, (const int64_t[]){3}, gb1, 3),
                      f32_from_d(2, (const int64_t[]){3, 4}, gw2, 12), f32_from_d(1, (const int64_t[]){4}, gb2, 4)};
    const char *paths[4] = {"linear1/kernel", "linear1/bias", "linear2/kernel", "linear2/bias"};
    for (int i = 0; i < 4; i++) {
        lx_tree_set_path(g, paths[i], lx_array_v(a[i]));
        lx_release(a[i]);
    }
    return g;
}

static model2 *new_model(void) {
    nnx_rngs *rngs = NULL;
    nnx_module *m = NULL;
    CHECK(nnx_rngs_from_seed(0, &rngs) == LX_OK);
    CHECK(nnx_module_new(&MODEL2, &(lx_call){0}, rngs, &m) == LX_OK);
    nnx_rngs_release(rngs);
    return (model2 *)m;
}

static void test_optimizer_docstring(void) {
    model2 *m = new_model();
    if (!m) return;
    lx_array *xa = lx_random_normal(lx_key_from_seed(0), 2, (const int64_t[]){1, 2});
    const float *x = lx_f32(xa);
    double l0 = loss_and_grads(m, x, NULL, NULL, NULL, NULL);
    LX_TEST_REPORT_(fabs(l0 - 2.3359997) < 2e-6, "initial loss %.9g, Flax prints 2.3359997", l0);
    /* the model's own forward agrees */
    lx_array *yh = nnx_call_array(&m->base, xa);
    lx_array *lf = lx_mean(lx_square(lx_sub(yh, lx_scalar(1.0f))), LX_ALL_AXES, false);
    CHECK(lf && fabs(lx_f32(lf)[0] - 2.3359997f) < 2e-6);

    optax_tx *tx = optax_adam(OPTAX_CONST(1e-3), NULL);
    nnx_optimizer *opt = NULL;
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    CHECK(nnx_optimizer_new(&m->base, tx, &param, &opt) == LX_OK); /* takes tx */
    if (!opt) return;
    CHECK_EQ_INT(nnx_optimizer_step(opt), 0);
    CHECK(lx_variable_type(nnx_optimizer_step_var(opt)) == &lx_OptState);
    CHECK(lx_variable_get_value(nnx_optimizer_step_var(opt))->dtype == LX_U32);
    /* the Variable objects of the model, held across the update: one store */
    lx_variable *k1 = ((nnx_linear *)m->linear1)->kernel;
    lx_tree *g = grads_tree(m, x);
    lx_tree *upd = NULL;
    CHECK(nnx_optimizer_update(opt, &m->base, g, &upd) == LX_OK);
    CHECK(upd && lx_tree_find(upd, "linear2/bias") != NULL);
    lx_tree_release(upd);
    lx_tree_release(g);
    CHECK(((nnx_linear *)m->linear1)->kernel == k1);
    double l1 = loss_and_grads(m, x, NULL, NULL, NULL, NULL);
    LX_TEST_REPORT_(fabs(l1 - 2.310461) < 2e-6, "loss after one adam(1e-3) update %.9g, Flax prints 2.310461", l1);
    CHECK_EQ_INT(nnx_optimizer_step(opt), 1);

    /* state layout: OptArray count, OptVariable moments with the params' paths */
    const lx_tree *os = nnx_optimizer_opt_state(opt);
    const lx_value *c = lx_tree_find(os, "0/count"), *mu = lx_tree_find(os, "0/mu/linear1/kernel"),
                   *nu = lx_tree_find(os, "0/nu/linear2/bias"), *e = lx_tree_find(os, "1");
    CHECK(c && c->kind == LX_V_VARIABLE && lx_variable_type(c->u.var) == &lx_OptArray);
    CHECK(c && lx_i32(lx_variable_get_value(c->u.var))[0] == 1);
    CHECK(mu && mu->kind == LX_V_VARIABLE && lx_variable_type(mu->u.var) == &lx_OptVariable);
    CHECK(mu && lx_shape_eq(lx_variable_get_value(mu->u.var), 2, (const int64_t[]){2, 3}));
    CHECK(nu && nu->kind == LX_V_VARIABLE);
    CHECK(e && e->kind == LX_V_TREE && lx_tree_len(e->u.tree) == 0);
    CHECK(lx_vartype_is(&lx_OptVariable, &lx_OptState) && lx_vartype_is(&lx_OptArray, &lx_OptState));
    lx_tree *full = NULL;
    CHECK(nnx_optimizer_state(opt, &full) == LX_OK);
    CHECK(full && lx_tree_find(full, "step") && lx_tree_find(full, "opt_state/0/mu/linear2/kernel"));

    /* a failed update (a gradient of the wrong shape) changes nothing */
    float k1_before = lx_f32(lx_variable_get_value(k1))[0];
    lx_array *mu_before = lx_variable_get_value(mu->u.var);
    lx_tree *bad = grads_tree(m, x);
    lx_array *wrong = lx_array_full_f32(1, (const int64_t[]){5}, 1.0f);
    lx_tree_set_path(bad, "linear2/bias", lx_array_v(wrong));
    lx_release(wrong);
    CHECK_FAILS(nnx_optimizer_update(opt, &m->base, bad, NULL), LX_ERR_SHAPE, "'linear2/bias' has shape (5,)");
    CHECK(lx_f32(lx_variable_get_value(k1))[0] == k1_before);
    CHECK(lx_variable_get_value(mu->u.var) == mu_before);
    CHECK_EQ_INT(nnx_optimizer_step(opt), 1);
    /* a NaN gradient with debug_nans: named, nothing written */
    lx_tree_release(bad);
    bad = grads_tree(m, x);
    lx_f32(lx_tree_find(bad, "linear1/bias")->u.array)[1] = NAN;
    optax_set_debug_nans(true);
    CHECK_FAILS(nnx_optimizer_update(opt, &m->base, bad, NULL), LX_ERR_INVALID_ARGUMENT,
                "NaN in the gradients at 'linear1/bias' (flat index 1)");
    optax_set_debug_nans(false);
    CHECK(lx_f32(lx_variable_get_value(k1))[0] == k1_before);
    CHECK_EQ_INT(nnx_optimizer_step(opt), 1);
    lx_tree_release(bad);

    /* gradients of Variables the filter does not select are ignored (nnx.state(grads, wrt)) */
    g = grads_tree(m, x);
    lx_variable *stat = NULL;
    lx_array *sv = lx_array_full_f32(1, (const int64_t[]){7}, 1.0f);
    lx_variable_new(&lx_BatchStat, sv, &stat);
    lx_tree_set_path(g, "bn/mean", lx_var_v(stat));
    CHECK(nnx_optimizer_update(opt, &m->base, g, NULL) == LX_OK);
    CHECK_EQ_INT(nnx_optimizer_step(opt), 2);
    lx_variable_release(stat);
    lx_release(sv);
    lx_tree_release(g);

    /* restore: load the saved state into a fresh optimizer */
    nnx_optimizer *opt2 = NULL;
    tx = optax_adam(OPTAX_CONST(1e-3), NULL);
    CHECK(nnx_optimizer_new(&m->base, tx, &param, &opt2) == LX_OK);
    CHECK(nnx_optimizer_load_state(opt2, full) == LX_OK);
    CHECK_EQ_INT(nnx_optimizer_step(opt2), 2);
    CHECK(lx_array_equal(lx_variable_get_value(lx_tree_find(nnx_optimizer_opt_state(opt2), "0/mu/linear1/kernel")->u.var),
                         lx_variable_get_value(mu->u.var)));
    lx_tree *junk = lx_tree_new();
    lx_array *ja = lx_array_full_f32(1, (const int64_t[]){9}, 0.0f);
    lx_tree_set_path(junk, "opt_state/0/mu/linear1/kernel", lx_array_v(ja));
    CHECK_FAILS(nnx_optimizer_load_state(opt2, junk), LX_ERR_SHAPE, "opt_state/0/mu/linear1/kernel");
    lx_release(ja);
    lx_tree_release(junk);
    nnx_optimizer_free(opt2);
    lx_tree_release(full);

    /* wrt is required */
    nnx_optimizer *none = NULL;
    tx = optax_sgd(OPTAX_CONST(0.1), false, 0, false);
    CHECK_FAILS(nnx_optimizer_new(&m->base, tx, NULL, &none), LX_ERR_TYPE, "Missing required argument `wrt`");
    CHECK_FAILS(nnx_optimizer_update(opt, &m->base, NULL, NULL), LX_ERR_TYPE, "Missing required argument `grads`");
    CHECK_FAILS(nnx_optimizer_new(&m->base, NULL, &param, &none), LX_ERR_FAILED_INPUT, "tx is NULL");
    nnx_optimizer_free(opt);
    nnx_module_release(&m->base);
}

/* ------------------------------------------------------------------ Linen TrainState */

static void test_linen_train_state(void) {
    lx_tree *params = lx_tree_new();
    lx_array *k = lx_array_from_f32(2, (const int64_t[]){2, 2}, (const float[]){1, 2, 3, 4});
    lx_array *b = lx_array_from_f32(1, (const int64_t[]){2}, (const float[]){0.5f, -0.5f});
    lx_tree_set_path(params, "Dense_0/kernel", lx_array_v(k));
    lx_tree_set_path(params, "Dense_0/bias", lx_array_v(b));
    optax_tx *tx = optax_sgd(OPTAX_CONST(0.1), true, 0.9, false);
    linen_train_state *s0 = NULL, *s1 = NULL, *s2 = NULL;
    int apply_fn_token;
    CHECK(linen_train_state_create(&apply_fn_token, params, tx, &s0) == LX_OK);
    if (!s0) return;
    CHECK_EQ_INT(s0->step, 0);
    CHECK(s0->apply_fn == &apply_fn_token && s0->params == params);
    lx_tree *grads = lx_tree_new();
    lx_array *gk = lx_array_full_f32(2, (const int64_t[]){2, 2}, 1.0f), *gb = lx_array_full_f32(1, (const int64_t[]){2}, 2.0f);
    lx_tree_set_path(grads, "Dense_0/kernel", lx_array_v(gk));
    lx_tree_set_path(grads, "Dense_0/bias", lx_array_v(gb));
    CHECK(linen_train_state_apply_gradients(s0, grads, &s1) == LX_OK);
    CHECK(linen_train_state_apply_gradients(s1, grads, &s2) == LX_OK);
    /* momentum sgd by hand: m1 = g, m2 = g + 0.9 g; p -= 0.1 m */
    CHECK_EQ_INT(s1->step, 1);
    CHECK_EQ_INT(s2->step, 2);
    const lx_array *k1 = lx_tree_find(s1->params, "Dense_0/kernel")->u.array;
    const lx_array *k2 = lx_tree_find(s2->params, "Dense_0/kernel")->u.array;
    const lx_array *b2 = lx_tree_find(s2->params, "Dense_0/bias")->u.array;
    CHECK(lx_f32(k1)[0] == 1.0f + -0.1f * 1.0f);
    CHECK(lx_f32(k2)[0] == (1.0f + -0.1f * 1.0f) + -0.1f * (1.0f + 0.9f * 1.0f));
    CHECK(lx_f32(b2)[1] == (-0.5f + -0.1f * 2.0f) + -0.1f * (2.0f + 0.9f * 2.0f));
    /* the old state is a value: unchanged */
    CHECK(lx_f32(lx_tree_find(s0->params, "Dense_0/kernel")->u.array)[0] == 1.0f);
    CHECK(lx_f32(lx_tree_find(s0->opt_state, "0/trace/Dense_0/kernel")->u.array)[0] == 0.0f);
    /* serialized layout */
    lx_tree *d = NULL;
    CHECK(linen_train_state_dict(s2, &d) == LX_OK);
    CHECK(d && lx_tree_len(d) == 3 && !strcmp(lx_tree_key(d, 0), "step") && !strcmp(lx_tree_key(d, 1), "params") &&
          !strcmp(lx_tree_key(d, 2), "opt_state"));
    CHECK(d && lx_tree_get(d, "step")->kind == LX_V_INT && lx_tree_get(d, "step")->u.i == 2);
    CHECK(d && lx_tree_find(d, "opt_state/0/trace/Dense_0/bias") && lx_tree_find(d, "opt_state/1"));
    lx_tree_release(d);
    /* wrong gradients: an error naming the path, no new state */
    linen_train_state *bad = NULL;
    lx_tree_delete_path(grads, "Dense_0/bias");
    CHECK_FAILS(linen_train_state_apply_gradients(s2, grads, &bad), LX_ERR_SHAPE, "no leaf at 'Dense_0/bias'");
    CHECK(bad == NULL && s2->step == 2);
    CHECK_FAILS(linen_train_state_apply_gradients(s2, NULL, &bad), LX_ERR_FAILED_INPUT, "grads is NULL");

    /* _overwrite_with_gradient: only params['params'] is optimized, the OWG grads are written */
    lx_tree *vars = lx_tree_new(), *g2 = lx_tree_new();
    lx_tree_set(vars, "params", lx_tree_v(params));
    lx_array *sc = lx_array_scalar_f32(1.0f), *sc2 = lx_array_scalar_f32(7.0f);
    lx_tree_set_path(vars, "_overwrite_with_gradient/fp8/scale", lx_array_v(sc));
    lx_tree_delete_path(grads, "Dense_0/kernel");
    lx_tree_set_path(grads, "Dense_0/kernel", lx_array_v(gk));
    lx_tree_set_path(grads, "Dense_0/bias", lx_array_v(gb));
    lx_tree_set(g2, "params", lx_tree_v(grads));
    lx_tree_set_path(g2, "_overwrite_with_gradient/fp8/scale", lx_array_v(sc2));
    linen_train_state *o0 = NULL, *o1 = NULL;
    tx = optax_sgd(OPTAX_CONST(0.1), false, 0, false);
    CHECK(linen_train_state_create(NULL, vars, tx, &o0) == LX_OK);
    CHECK(o0 && lx_tree_find(o0->opt_state, "0") && !lx_tree_find(o0->opt_state, "params"));
    CHECK(o0 && linen_train_state_apply_gradients(o0, g2, &o1) == LX_OK);
    CHECK(o1 && lx_f32(lx_tree_find(o1->params, "_overwrite_with_gradient/fp8/scale")->u.array)[0] == 7.0f);
    CHECK(o1 && lx_f32(lx_tree_find(o1->params, "params/Dense_0/kernel")->u.array)[0] == 1.0f + -0.1f * 1.0f);
    linen_train_state_free(o0);
    linen_train_state_free(o1);
    lx_release(sc);
    lx_release(sc2);
    lx_tree_release(vars);
    lx_tree_release(g2);

    linen_train_state_free(s0);
    linen_train_state_free(s1);
    linen_train_state_free(s2);
    lx_release(k);
    lx_release(b);
    lx_release(gk);
    lx_release(gb);
    lx_tree_release(grads);
    lx_tree_release(params);
}

/* ------------------------------------------------------------------ minibatches */

static void test_batcher(void) {
    const pf_perm *p = NULL;
    for (size_t c = 0; c < sizeof PF_PERMS / sizeof PF_PERMS[0]; c++)
        if (!PF_PERMS[c].legacy && PF_PERMS[c].key[1] == 42 && PF_PERMS[c].n == 10) p = &PF_PERMS[c];
    CHECK(p != NULL);
    if (!p) return;
    float xs[20];
    int32_t ys[10];
    for (int i = 0; i < 10; i++) {
        xs[2 * i] = (float)i;
        xs[2 * i + 1] = 100.0f + i;
        ys[i] = 7 * i;
    }
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (const int64_t[]){10, 2}, xs));
    lx_array *y = lx_autorelease(lx_array_from_data(LX_I32, 1, (const int64_t[]){10}, ys));
    lx_batcher b;
    CHECK(lx_batcher_init(&b, 10, 4, false) == LX_OK);
    CHECK_EQ_INT(b.nbatches, 2);
    CHECK(lx_batcher_shuffle(&b, lx_key_from_seed(42)) == LX_OK);
    lx_array *outs[2];
    int nb = 0;
    while (lx_batcher_next(&b, 2, (lx_array *[]){x, y}, outs)) {
        CHECK(lx_shape_eq(outs[0], 2, (const int64_t[]){4, 2}) && lx_shape_eq(outs[1], 1, (const int64_t[]){4}));
        for (int r = 0; r < 4; r++) {
            int32_t want = p->expect[nb * 4 + r];
            CHECK(lx_f32(outs[0])[2 * r] == (float)want && lx_f32(outs[0])[2 * r + 1] == 100.0f + want);
            CHECK_EQ_INT(lx_i32(outs[1])[r], 7 * want);
        }
        nb++;
    }
    CHECK_EQ_INT(nb, 2);
    CHECK(lx_last_status() == LX_OK);
    lx_batcher_free(&b);
    /* keep_remainder: a last short batch */
    CHECK(lx_batcher_init(&b, 10, 4, true) == LX_OK);
    CHECK_EQ_INT(b.nbatches, 3);
    int64_t len;
    const int32_t *idx = lx_batcher_indices(&b, 2, &len);
    CHECK(idx && len == 2 && idx[0] == 8 && idx[1] == 9); /* unshuffled order */
    CHECK(!lx_batcher_next(&b, 1, (lx_array *[]){lx_autorelease(lx_array_new(LX_F32, 1, (const int64_t[]){9}))}, outs));
    CHECK_EQ_INT(lx_last_status(), LX_ERR_SHAPE);
    CHECK_ERROR_HAS("lx_batcher_next: arrays[0] has 9 rows (axis 0), the batcher 10");
    lx_batcher_free(&b);
    CHECK_FAILS(lx_batcher_init(&b, 10, 0, false), LX_ERR_INVALID_ARGUMENT, "lx_batcher_init: batch_size = 0 must be positive");
}

/* Every refused argument is named: '<function>: <argument> is NULL' for a NULL, the argument and
 * its value otherwise; a NULL array stands for an earlier failure while that one is pending. */
static void test_batcher_arguments(void) {
    lx_batcher b;
    CHECK_FAILS(lx_batcher_init(NULL, 4, 2, false), LX_ERR_INVALID_ARGUMENT, "");
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_batcher_init: b is NULL");
    CHECK_FAILS(lx_batcher_init(&b, -1, 2, false), LX_ERR_INVALID_ARGUMENT, "");
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_batcher_init: n = -1 is outside 0..2^31-1");
    CHECK(b.perm == NULL);
    CHECK_FAILS(lx_batcher_init(&b, (int64_t)1 << 31, 2, false), LX_ERR_INVALID_ARGUMENT, "");
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_batcher_init: n = 2147483648 is outside 0..2^31-1");
    CHECK_FAILS(lx_batcher_init(&b, 10, -3, false), LX_ERR_INVALID_ARGUMENT, "");
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_batcher_init: batch_size = -3 must be positive");

    CHECK_FAILS(lx_batcher_shuffle(NULL, lx_key_from_seed(0)), LX_ERR_INVALID_ARGUMENT, "");
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_batcher_shuffle: b is NULL");
    lx_batcher zero = {0};
    CHECK_FAILS(lx_batcher_shuffle(&zero, lx_key_from_seed(0)), LX_ERR_INVALID_ARGUMENT, "");
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_batcher_shuffle: b holds no permutation (not made by lx_batcher_init)");

    float xs[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    lx_array *x = lx_autorelease(lx_array_from_f32(1, (const int64_t[]){10}, xs));
    lx_array *x9 = lx_autorelease(lx_array_from_f32(1, (const int64_t[]){9}, xs));
    lx_array *sc = lx_autorelease(lx_array_from_f32(0, NULL, xs));
    CHECK(lx_batcher_init(&b, 10, 4, false) == LX_OK);
    lx_array *outs[2] = {x, x};
    struct {
        lx_batcher *b;
        int n;
        lx_array *const *arrays;
        lx_array **outs;
        const char *msg;
    } bad[] = {
        {NULL, 1, (lx_array *[]){x}, outs, "lx_batcher_next: b is NULL"},
        {&zero, 1, (lx_array *[]){x}, outs, "lx_batcher_next: b holds no permutation (not made by lx_batcher_init)"},
        {&b, -2, (lx_array *[]){x}, outs, "lx_batcher_next: narrays = -2 is negative"},
        {&b, 1, NULL, outs, "lx_batcher_next: arrays is NULL"},
        {&b, 1, (lx_array *[]){x}, NULL, "lx_batcher_next: outs is NULL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lx_clear_error();
        CHECK(!lx_batcher_next(bad[i].b, bad[i].n, bad[i].arrays, bad[i].outs));
        CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, bad[i].msg);
    }
    CHECK_EQ_INT(b.next, 0);
    /* a NULL array with nothing pending is reported as itself; outs are all NULL */
    lx_clear_error();
    CHECK(!lx_batcher_next(&b, 2, (lx_array *[]){x, NULL}, outs));
    CHECK_ERROR_IS(LX_ERR_FAILED_INPUT, "lx_batcher_next: arrays[1] is NULL");
    CHECK(outs[0] == NULL && outs[1] == NULL);
    /* ... and while an earlier failure is pending, it stands for that failure (status.h) */
    lx_clear_error();
    lx_array *failed = lx_reshape(x, 1, (const int64_t[]){7});
    CHECK(failed == NULL && lx_last_status() == LX_ERR_SHAPE);
    char earlier[512];
    snprintf(earlier, sizeof earlier, "%s", lx_last_error());
    outs[0] = outs[1] = x;
    CHECK(!lx_batcher_next(&b, 2, (lx_array *[]){failed, x}, outs));
    CHECK_ERROR_IS(LX_ERR_SHAPE, earlier);
    CHECK(outs[0] == NULL && outs[1] == NULL);
    lx_clear_error();
    CHECK(!lx_batcher_next(&b, 2, (lx_array *[]){x, x9}, outs));
    CHECK_ERROR_IS(LX_ERR_SHAPE, "lx_batcher_next: arrays[1] has 9 rows (axis 0), the batcher 10");
    CHECK(!lx_batcher_next(&b, 1, (lx_array *[]){sc}, outs));
    CHECK_ERROR_IS(LX_ERR_SHAPE, "lx_batcher_next: arrays[0] is a scalar, the batcher has 10 rows (axis 0)");
    CHECK_EQ_INT(b.next, 0); /* nothing consumed */
    CHECK(lx_batcher_next(&b, 1, (lx_array *[]){x}, outs) && lx_last_status() == LX_OK);

    int64_t len = 5;
    CHECK_NULL_FAILS(lx_batcher_indices(&b, 2, &len), LX_ERR_INVALID_ARGUMENT, "");
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_batcher_indices: i = 2 is outside 0..1");
    CHECK_EQ_INT(len, 0);
    CHECK_NULL_FAILS(lx_batcher_indices(&b, -1, &len), LX_ERR_INVALID_ARGUMENT, "i = -1 is outside 0..1");
    CHECK_NULL_FAILS(lx_batcher_indices(NULL, 0, &len), LX_ERR_INVALID_ARGUMENT, "");
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_batcher_indices: b is NULL");
    CHECK_NULL_FAILS(lx_batcher_indices(&zero, 0, &len), LX_ERR_INVALID_ARGUMENT, "");
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_batcher_indices: b holds no permutation (not made by lx_batcher_init)");
    lx_clear_error();
    CHECK(lx_batcher_indices(&b, 1, &len) != NULL && len == 4 && lx_last_status() == LX_OK);
    lx_batcher_free(&b);
    lx_clear_error();
}


/* ------------------------------------------------------------------ steady state */

static size_t n_allocs;
static void count_alloc(size_t nbytes, void *user) { n_allocs++; }

/* After the first steps, a training step allocates no array data (issue 14 §5): outputs come from
 * the buffers the previous step gave back. */
static void test_no_allocations(void) {
    model2 *m = new_model();
    if (!m) return;
    lx_array *xa = lx_random_normal(lx_key_from_seed(0), 2, (const int64_t[]){1, 2});
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    nnx_optimizer *opt = NULL;
    CHECK(nnx_optimizer_new(&m->base, optax_adamw(OPTAX_CONST(1e-3), NULL), &param, &opt) == LX_OK);
    lx_tree *g = grads_tree(m, lx_f32(xa));
    size_t per_step[4];
    for (int i = 0; i < 4 && opt; i++) {
        n_allocs = 0;
        lx_set_alloc_hook(count_alloc, NULL);
        CHECK(nnx_optimizer_update(opt, &m->base, g, NULL) == LX_OK);
        lx_set_alloc_hook(NULL, NULL);
        per_step[i] = n_allocs;
    }
    CHECK_EQ_INT(lx_array_cache_enabled(), !LX_TEST_ASAN); /* only the sanitizer build bypasses it */
    if (lx_array_cache_enabled()) /* sanitizer builds bypass the storage cache */
        LX_TEST_REPORT_(per_step[2] == 0 && per_step[3] == 0, "nnx.Optimizer steps allocate %zu, %zu, %zu, %zu arrays",
                        per_step[0], per_step[1], per_step[2], per_step[3]);
    CHECK_EQ_INT(nnx_optimizer_step(opt), 4);
    lx_tree_release(g);
    nnx_optimizer_free(opt);
    nnx_module_release(&m->base);

    /* Linen: state = state.apply_gradients(grads), the old state freed */
    lx_tree *params = lx_tree_new(), *grads = lx_tree_new();
    lx_array *k = lx_array_full_f32(2, (const int64_t[]){64, 32}, 0.5f), *gk = lx_array_full_f32(2, (const int64_t[]){64, 32}, 0.1f);
    lx_tree_set_path(params, "Dense_0/kernel", lx_array_v(k));
    lx_tree_set_path(grads, "Dense_0/kernel", lx_array_v(gk));
    lx_release(k);
    lx_release(gk);
    linen_train_state *s = NULL;
    CHECK(linen_train_state_create(NULL, params, optax_adam(OPTAX_CONST(1e-3), NULL), &s) == LX_OK);
    lx_tree_release(params);
    for (int i = 0; i < 4 && s; i++) {
        linen_train_state *n = NULL;
        n_allocs = 0;
        lx_set_alloc_hook(count_alloc, NULL);
        CHECK(linen_train_state_apply_gradients(s, grads, &n) == LX_OK);
        linen_train_state_free(s);
        lx_set_alloc_hook(NULL, NULL);
        per_step[i] = n_allocs;
        s = n;
    }
    CHECK_EQ_INT(lx_array_cache_enabled(), !LX_TEST_ASAN); /* only the sanitizer build bypasses it */
    if (lx_array_cache_enabled()) /* sanitizer builds bypass the storage cache */
        LX_TEST_REPORT_(per_step[2] == 0 && per_step[3] == 0, "TrainState steps allocate %zu, %zu, %zu, %zu arrays",
                        per_step[0], per_step[1], per_step[2], per_step[3]);
    CHECK(s && s->step == 4);
    linen_train_state_free(s);
    lx_tree_release(grads);
    optax_release_buffers();
}

int main(void) {
    RUN(test_optimizer_docstring);
    RUN(test_linen_train_state);
    RUN(test_batcher);
    RUN(test_batcher_arguments);
    RUN(test_no_allocations);
    return lx_test_finish();
}
