/* Linen-style value_and_grad: jax.value_and_grad(loss, has_aux=True)(params) around linen_apply.
 * Every layer's gradients against finite differences of the same apply; the grads tree has
 * exactly the params' paths, boxes come back boxed, batch_stats come back as aux; bad input is a
 * clear error and changes nothing. */
#include "grad_check.h"

typedef struct {
    const linen_module *m;
    lx_tree *vars; /* every collection; "params" is what is differentiated */
    lx_call call;
    linen_rngs rngs;
    bool mutable_stats;
} lin_case;

static lx_status run_apply(lin_case *c, const lx_tree *params, lx_array **y, lx_tree **mut) {
    lx_tree *v = lx_tree_copy(c->vars);
    if (!v) return lx_last_status();
    lx_status st = lx_tree_set(v, "params", lx_tree_v((lx_tree *)params));
    linen_opts opts = {.mutable = LINEN_MUTABLE("batch_stats"), .mutable_given = true};
    lx_value out = lx_none();
    lx_tree *m = NULL;
    if (st == LX_OK)
        st = linen_apply(c->m, v, &c->call, c->rngs, c->mutable_stats ? &opts : NULL, &out, c->mutable_stats ? &m : NULL);
    lx_tree_release(v);
    if (st == LX_OK && out.kind != LX_V_ARRAY) st = lx_fail(LX_ERR_TYPE, "test: the apply gave no array");
    *y = st == LX_OK ? lx_autorelease(lx_retain(out.u.array)) : NULL;
    lx_value_free(&out);
    if (mut) *mut = m;
    else lx_tree_release(m);
    return st;
}

static lx_status lin_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    lx_array *y = NULL;
    LX_TRY(run_apply(user, params, &y, aux));
    *loss = gc_weighted_loss(y);
    return *loss ? LX_OK : lx_last_status();
}

static lx_array *lin_forward(void *ctx) {
    lin_case *c = ctx;
    lx_array *y = NULL;
    run_apply(c, lx_tree_get(c->vars, "params")->u.tree, &y, NULL);
    return y;
}

static lx_array *leaf_value(const lx_value *v) {
    return v->kind == LX_V_ARRAY ? v->u.array : v->kind == LX_V_BOX ? lx_box_unbox(v->u.box) : NULL;
}

/* value_and_grad, the grads tree's structure, then finite differences over every param. */
static void check_linen(const char *name, lin_case *c, double h, double rtol, double atol, lx_tree **aux_out) {
    lx_test_current = name;
    const lx_tree *params = lx_tree_get(c->vars, "params")->u.tree;
    lx_array *value = NULL;
    lx_tree *grads = NULL, *aux = NULL;
    lx_status st = linen_value_and_grad(lin_loss, c, params, &value, &grads, &aux);
    LX_TEST_REPORT_(st == LX_OK, "%s: linen_value_and_grad: %s", name, lx_last_error());
    if (st != LX_OK) return;
    lx_flat fp = {0}, fg = {0};
    lx_tree_flatten(params, &fp);
    lx_tree_flatten(grads, &fg);
    CHECK_EQ_INT(fg.len, fp.len);
    lx_array *xs[16], *gs[16];
    int n = 0;
    for (size_t i = 0; i < fp.len && i < fg.len && n < 16; i++) {
        CHECK_STR(fg.items[i].path, fp.items[i].path);
        CHECK_EQ_INT(fg.items[i].value.kind, fp.items[i].value.kind);
        if (fp.items[i].value.kind == LX_V_BOX && fg.items[i].value.kind == LX_V_BOX)
            CHECK_EQ_INT(lx_box_get_kind(fg.items[i].value.u.box), lx_box_get_kind(fp.items[i].value.u.box));
        xs[n] = leaf_value(&fp.items[i].value);
        gs[n] = leaf_value(&fg.items[i].value);
        n++;
    }
    bool ok = true;
    double L = gc_eval(lin_forward, c, &ok);
    CHECK(ok && fabs(lx_f32(value)[0] - L) <= 1e-4 * (1 + fabs(L)));
    gc_compare(name, lin_forward, c, n, xs, gs, h, rtol, atol);
    lx_flat_free(&fp);
    lx_flat_free(&fg);
    lx_release(value);
    lx_tree_release(grads);
    if (aux_out) *aux_out = aux;
    else lx_tree_release(aux);
}

static uint64_t seed = 7;
static lx_array *X(int ndim, const int64_t *shape) { return lx_autorelease(gc_rand(&seed, -1, 1, ndim, shape)); }

/* init a module on x and run the check; kwargs are the call's keyword arguments. */
static void layer_case(const char *name, const linen_type *t, lx_call cfg, lx_array *x, int nkw, lx_kwarg *kw,
                       bool stats, linen_rngs rngs, double h, double tol) {
    linen_module *m = NULL;
    CHECK_EQ_INT(linen_module_new(t, &cfg, &m), LX_OK);
    lx_value args[1] = {lx_array_v(x)};
    lin_case c = {.m = m, .call = {1, args, nkw, kw}, .rngs = rngs, .mutable_stats = stats};
    CHECK_EQ_INT(linen_init(m, LINEN_RNGS({"params", lx_key_from_seed(0)}, {"dropout", lx_key_from_seed(1)}), &c.call,
                            NULL, &c.vars),
                 LX_OK);
    lx_tree *aux = NULL;
    if (c.vars) check_linen(name, &c, h, tol, tol, &aux);
    if (stats) {
        CHECK(aux && lx_tree_find(aux, "batch_stats/mean") && lx_tree_find(aux, "batch_stats/var"));
        /* the statistics given in were not changed by the differentiated apply */
        const lx_value *mean = lx_tree_find(c.vars, "batch_stats/mean");
        CHECK(mean && lx_f32(mean->u.array)[0] == 0.0f);
    }
    lx_tree_release(aux);
    lx_tree_release(c.vars);
    linen_module_release(m);
}

static void test_layers(void) {
    layer_case("Dense", &linen_Dense, LX_CALL_KWARGS(LX_KW_INT("features", 3)), X(LX_SHAPE(2, 4)), 0, NULL, false,
               LINEN_NO_RNGS, 1e-2, 2e-3);
    int64_t ks[] = {3, 2}, st2[] = {2, 1}, dil[] = {1, 2};
    layer_case("Conv strided dilated", &linen_Conv,
               LX_CALL_KWARGS(LX_KW_INT("features", 4), LX_KW("kernel_size", lx_ints_v(2, ks)),
                              LX_KW("strides", lx_ints_v(2, st2)), LX_KW("kernel_dilation", lx_ints_v(2, dil))),
               X(LX_SHAPE(2, 5, 5, 2)), 0, NULL, false, LINEN_NO_RNGS, 1e-2, 3e-3);
    layer_case("Conv groups", &linen_Conv,
               LX_CALL_KWARGS(LX_KW_INT("features", 4), LX_KW("kernel_size", lx_ints_v(2, ks)),
                              LX_KW_INT("feature_group_count", 2)),
               X(LX_SHAPE(1, 4, 3, 4)), 0, NULL, false, LINEN_NO_RNGS, 1e-2, 3e-3);
    layer_case("LayerNorm", &linen_LayerNorm, LX_NO_CALL, X(LX_SHAPE(3, 5)), 0, NULL, false, LINEN_NO_RNGS, 1e-3,
               2e-3);
    layer_case("RMSNorm", &linen_RMSNorm, LX_NO_CALL, X(LX_SHAPE(3, 5)), 0, NULL, false, LINEN_NO_RNGS, 1e-3, 2e-3);
    lx_kwarg train[] = {LX_KW_BOOL("use_running_average", false)};
    layer_case("BatchNorm train", &linen_BatchNorm, LX_NO_CALL, X(LX_SHAPE(6, 3)), 1, train, true, LINEN_NO_RNGS,
               1e-3, 3e-3);
    lx_array *ids = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){2, 3}, (const int32_t[]){1, 4, 1, 0, 2, 4}));
    layer_case("Embed", &linen_Embed, LX_CALL_KWARGS(LX_KW_INT("num_embeddings", 5), LX_KW_INT("features", 3)), ids, 0,
               NULL, false, LINEN_NO_RNGS, 1e-2, 1e-3);
    uint8_t mb[2 * 1 * 3 * 3];
    for (int i = 0; i < 18; i++) mb[i] = (i % 4) != 2;
    lx_array *mask = lx_autorelease(lx_array_from_data(LX_BOOL, 4, (int64_t[]){2, 1, 3, 3}, mb));
    lx_kwarg att[] = {LX_KW("mask", lx_array_v(mask)), LX_KW_BOOL("deterministic", true)};
    layer_case("MultiHeadDotProductAttention mask", &linen_MultiHeadDotProductAttention,
               LX_CALL_KWARGS(LX_KW_INT("num_heads", 2), LX_KW_INT("qkv_features", 4)), X(LX_SHAPE(2, 3, 4)), 2, att,
               false, LINEN_NO_RNGS, 1e-3, 3e-3);
}

/* Dense -> Dropout(0.5) -> Dense with a fixed dropout key: the same mask every apply. */
static lx_array *drop_mlp(linen_scope *s, lx_array *x) {
    return linen_dense(s, NULL, 2, linen_dropout(s, NULL, 0.5, false, lx_tanh(linen_dense(s, NULL, 6, x))));
}
static const linen_method DROP_METHODS[] = {LINEN_ARRAY_METHOD("__call__", drop_mlp)};
static const linen_type DROP_MLP = {.name = "DropMLP", .methods = DROP_METHODS, .nmethods = 1};

static void test_dropout_fixed_key(void) {
    layer_case("Dropout fixed key", &DROP_MLP, LX_NO_CALL, X(LX_SHAPE(3, 4)), 0, NULL, false,
               LINEN_RNGS({"dropout", lx_key_from_seed(5)}), 1e-2, 2e-3);
}

/* Boxes: a Partitioned kernel and an NNXMeta bias keep their kind, names and metadata. */
static void test_boxes(void) {
    lx_test_current = "boxes";
    linen_module *m = NULL;
    lx_call cfg = LX_CALL_KWARGS(LX_KW_INT("features", 3));
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &cfg, &m), LX_OK);
    lx_value args[1] = {lx_array_v(X(LX_SHAPE(2, 4)))};
    lin_case c = {.m = m, .call = {1, args, 0, NULL}};
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(3)), &c.call, NULL, &c.vars), LX_OK);
    lx_tree *params = lx_tree_get(c.vars, "params")->u.tree;
    lx_box *pk = NULL, *nb = NULL;
    const char *names[] = {"embed", "mlp"};
    CHECK_EQ_INT(lx_box_partitioned(lx_tree_get(params, "kernel")->u.array, 2, names, "mesh", &pk), LX_OK);
    CHECK_EQ_INT(lx_box_nnx_meta(&lx_Param, lx_tree_get(params, "bias")->u.array, NULL, &nb), LX_OK);
    lx_tree *boxed = lx_tree_new();
    lx_tree_set(boxed, "kernel", lx_box_v(pk));
    lx_tree_set(boxed, "bias", lx_box_v(nb));
    lx_box_release(pk);
    lx_box_release(nb);
    lx_tree_set(c.vars, "params", lx_tree_v(boxed));
    lx_tree_release(boxed);
    check_linen("boxed Dense", &c, 1e-2, 2e-3, 2e-3, NULL);
    lx_tree *grads = NULL;
    lx_array *value = NULL;
    CHECK_EQ_INT(linen_value_and_grad(lin_loss, &c, lx_tree_get(c.vars, "params")->u.tree, &value, &grads, NULL), LX_OK);
    const lx_value *gk = grads ? lx_tree_find(grads, "kernel") : NULL;
    CHECK(gk && gk->kind == LX_V_BOX && lx_box_get_kind(gk->u.box) == LX_BOX_PARTITIONED);
    if (gk && gk->kind == LX_V_BOX) {
        const lx_value *nm = lx_box_names(gk->u.box);
        CHECK(nm && nm->u.strs.n == 2 && strcmp(nm->u.strs.v[1], "mlp") == 0);
        CHECK_STR(lx_box_mesh(gk->u.box), "mesh");
    }
    const lx_value *gb = grads ? lx_tree_find(grads, "bias") : NULL;
    CHECK(gb && gb->kind == LX_V_BOX && lx_box_get_kind(gb->u.box) == LX_BOX_NNX_META &&
          lx_box_var_type(gb->u.box) == &lx_Param);
    /* d/dbias of sum(w * (x k + b)) = sum over the batch of w */
    if (gb && gb->kind == LX_V_BOX)
        CHECK_NEAR(lx_f32(lx_box_unbox(gb->u.box))[0], gc_weight(0) + gc_weight(3), 1e-6);
    lx_release(value);
    lx_tree_release(grads);
    lx_tree_release(c.vars);
    linen_module_release(m);
}

static lx_status vector_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)aux;
    lx_array *y = NULL;
    LX_TRY(run_apply(user, params, &y, NULL));
    *loss = y;
    return LX_OK;
}

static lx_status failing_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)params, (void)user, (void)loss, (void)aux;
    return lx_fail(LX_ERR_SHAPE, "my loss failed");
}

/* sum(sqrt(bias)): finite at a zero bias, with an infinite gradient there */
static lx_status sqrt_bias_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)user, (void)aux;
    const lx_value *b = lx_tree_find(params, "bias");
    *loss = lx_sum(lx_sqrt(b ? b->u.array : NULL), LX_ALL_AXES, false);
    return *loss ? LX_OK : lx_last_status();
}

static void test_errors(void) {
    lx_test_current = "errors";
    linen_module *m = NULL;
    lx_call cfg = LX_CALL_KWARGS(LX_KW_INT("features", 2));
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &cfg, &m), LX_OK);
    lx_value args[1] = {lx_array_v(X(LX_SHAPE(2, 3)))};
    lin_case c = {.m = m, .call = {1, args, 0, NULL}};
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(3)), &c.call, NULL, &c.vars), LX_OK);
    lx_tree *params = lx_tree_get(c.vars, "params")->u.tree;
    lx_array *k0 = lx_array_copy(lx_tree_get(params, "kernel")->u.array);
    lx_tree *grads = NULL;
    lx_array *value = NULL;
    int64_t live = lx_array_live_count();
    size_t mark = lx_pool_open();
    /* a loss that is not a scalar */
    CHECK_FAILS(linen_value_and_grad(vector_loss, &c, params, &value, &grads, NULL), LX_ERR_SHAPE,
                "Output had shape: (2, 2)");
    CHECK(grads == NULL && value == NULL);
    /* the loss function's own failure comes through */
    CHECK_FAILS(linen_value_and_grad(failing_loss, &c, params, &value, &grads, NULL), LX_ERR_SHAPE, "my loss failed");
    /* an integer leaf, named by its path */
    lx_tree *bad = lx_tree_copy(params);
    lx_array *steps = lx_array_from_data(LX_I32, 0, NULL, (const int32_t[]){3});
    lx_tree_set_path(bad, "counter/steps", lx_array_v(steps));
    lx_release(steps);
    CHECK_FAILS(linen_value_and_grad(lin_loss, &c, bad, &value, &grads, NULL), LX_ERR_DTYPE, "int32[] at 'counter/steps'");
    lx_tree_set_path(bad, "counter/steps", lx_str_v("x"));
    CHECK_FAILS(linen_value_and_grad(lin_loss, &c, bad, &value, &grads, NULL), LX_ERR_TYPE, "'counter/steps'");
    lx_tree_release(bad);
    /* debug_nans: the first non-finite gradient leaf, by path */
    CHECK_EQ_INT(linen_value_and_grad(sqrt_bias_loss, &c, params, &value, &grads, NULL), LX_OK);
    CHECK(grads && isinf(lx_f32(lx_tree_find(grads, "bias")->u.array)[0]));
    lx_release(value);
    lx_tree_release(grads);
    grads = NULL, value = NULL;
    lx_set_debug_nans(true);
    CHECK(lx_debug_nans());
    CHECK_FAILS(linen_value_and_grad(sqrt_bias_loss, &c, params, &value, &grads, NULL), LX_ERR_INVALID_ARGUMENT,
                "inf in the gradient at 'bias' (element 0; debug_nans is on)");
    CHECK(grads == NULL && value == NULL);
    lx_set_debug_nans(false);
    /* a params tree that lacks what the model reads: Linen's own error names the scope */
    lx_tree *missing = lx_tree_copy(params);
    lx_tree_delete(missing, "kernel");
    CHECK_FAILS(linen_value_and_grad(lin_loss, &c, missing, &value, &grads, NULL), LX_ERR_NOT_FOUND,
                "Could not find parameter named \"kernel\"");
    lx_tree_release(missing);
    CHECK(lx_array_equal(lx_tree_get(params, "kernel")->u.array, k0));
    CHECK(!lx_tape_active());
    lx_pool_close(mark);
    CHECK_EQ_INT(lx_array_live_count(), live);
    lx_release(k0);
    lx_tree_release(c.vars);
    linen_module_release(m);
}

int main(void) {
    RUN(test_layers);
    RUN(test_dropout_fixed_key);
    RUN(test_boxes);
    RUN(test_errors);
    lx_pool_drain();
    return lx_test_finish();
}
