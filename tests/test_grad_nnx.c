/* NNX-style value_and_grad: nnx.value_and_grad(loss)(model) w.r.t. Param (or any filter, e.g.
 * LoRAParam only). Every layer's gradients against finite differences; grads have the paths of
 * nnx.state(model, filter); BatchNorm statistics and Rngs counts changed inside are written back;
 * a failure restores the module. */
#include "grad_check.h"

typedef lx_array *(*nnx_fwd)(nnx_module *m, lx_array *x, void *extra);

typedef struct {
    nnx_module *m;
    nnx_fwd fwd;
    lx_array *x;
    void *extra;
} nnx_case;

static lx_status nnx_loss(nnx_module *m, void *user, lx_array **loss) {
    nnx_case *c = user;
    *loss = gc_weighted_loss(c->fwd(m, c->x, c->extra));
    return *loss ? LX_OK : lx_last_status();
}

static lx_array *nnx_forward(void *ctx) {
    nnx_case *c = ctx;
    return c->fwd(c->m, c->x, c->extra);
}

static void check_nnx(const char *name, nnx_case *c, const nnx_filter *wrt, double h, double tol) {
    lx_test_current = name;
    lx_array *value = NULL;
    lx_tree *grads = NULL, *state = NULL;
    lx_status st = nnx_value_and_grad(c->m, wrt, nnx_loss, c, &value, &grads);
    LX_TEST_REPORT_(st == LX_OK, "%s: nnx_value_and_grad: %s", name, lx_last_error());
    if (st != LX_OK) return;
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    CHECK_EQ_INT(nnx_state(c->m, 1, wrt ? wrt : &param, &state), LX_OK);
    lx_flat fs = {0}, fg = {0};
    lx_tree_flatten(state, &fs);
    lx_tree_flatten(grads, &fg);
    CHECK_EQ_INT(fg.len, fs.len);
    lx_array *xs[16], *gs[16];
    int n = 0;
    for (size_t i = 0; i < fs.len && i < fg.len && n < 16; i++) {
        CHECK_STR(fg.items[i].path, fs.items[i].path);
        CHECK(fg.items[i].value.kind == LX_V_VARIABLE &&
              lx_variable_type(fg.items[i].value.u.var) == lx_variable_type(fs.items[i].value.u.var));
        /* the grads are new Variables, not the model's */
        CHECK(fg.items[i].value.u.var != fs.items[i].value.u.var);
        xs[n] = lx_variable_get_value(fs.items[i].value.u.var);
        gs[n] = lx_variable_get_value(fg.items[i].value.u.var);
        n++;
    }
    gc_compare(name, nnx_forward, c, n, xs, gs, h, tol, tol);
    lx_flat_free(&fs);
    lx_flat_free(&fg);
    lx_tree_release(state);
    lx_tree_release(grads);
    lx_release(value);
}

static uint64_t seed = 11;
static lx_array *X(int ndim, const int64_t *shape) { return lx_autorelease(gc_rand(&seed, -1, 1, ndim, shape)); }

static lx_array *call_plain(nnx_module *m, lx_array *x, void *extra) {
    (void)extra;
    return nnx_call_array(m, x);
}

static nnx_module *make(const nnx_type *t, lx_call c, int64_t s) {
    nnx_rngs *r = NULL;
    nnx_rngs_from_seed(s, &r);
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(t, &c, r, &m), LX_OK);
    nnx_rngs_release(r);
    return m;
}

static void plain_case(const char *name, nnx_module *m, lx_array *x, double h, double tol) {
    nnx_case c = {m, call_plain, x, NULL};
    if (m) check_nnx(name, &c, NULL, h, tol);
    nnx_module_release(m);
}

static void test_layers(void) {
    plain_case("Linear", make(&NNX_LINEAR_TYPE, LX_CALL_ARGS(lx_int_v(4), lx_int_v(3)), 0), X(LX_SHAPE(2, 4)), 1e-2,
               2e-3);
    int64_t ks[] = {3, 2}, st2[] = {2, 1}, dil[] = {1, 2};
    lx_call cc = {3, LX_VALUES(lx_int_v(2), lx_int_v(4), lx_ints_v(2, ks)), 2,
                  LX_KWARGS(LX_KW("strides", lx_ints_v(2, st2)), LX_KW("kernel_dilation", lx_ints_v(2, dil)))};
    plain_case("Conv strided dilated", make(&NNX_CONV_TYPE, cc, 1), X(LX_SHAPE(2, 5, 5, 2)), 1e-2, 3e-3);
    lx_call cg = {3, LX_VALUES(lx_int_v(4), lx_int_v(4), lx_ints_v(2, ks)), 1,
                  LX_KWARGS(LX_KW_INT("feature_group_count", 2))};
    plain_case("Conv groups", make(&NNX_CONV_TYPE, cg, 2), X(LX_SHAPE(1, 4, 3, 4)), 1e-2, 3e-3);
    plain_case("LayerNorm", make(&NNX_LAYER_NORM_TYPE, LX_CALL_ARGS(lx_int_v(5)), 0), X(LX_SHAPE(3, 5)), 1e-3, 2e-3);
    plain_case("RMSNorm", make(&NNX_RMS_NORM_TYPE, LX_CALL_ARGS(lx_int_v(5)), 0), X(LX_SHAPE(3, 5)), 1e-3, 2e-3);
    lx_array *ids = lx_autorelease(lx_array_from_data(LX_I32, 1, (int64_t[]){4}, (const int32_t[]){2, 0, 2, 3}));
    plain_case("Embed", make(&NNX_EMBED_TYPE, LX_CALL_ARGS(lx_int_v(4), lx_int_v(3)), 0), ids, 1e-2, 1e-3);
}

static lx_array *mha_fwd(nnx_module *m, lx_array *x, void *extra) {
    return nnx_mha_forward((nnx_mha *)m, x, NULL, NULL, extra, 1, NULL);
}

static void test_attention(void) {
    uint8_t mb[2 * 1 * 3 * 3];
    for (int i = 0; i < 18; i++) mb[i] = (i % 4) != 2;
    lx_array *mask = lx_autorelease(lx_array_from_data(LX_BOOL, 4, (int64_t[]){2, 1, 3, 3}, mb));
    nnx_module *m = make(&NNX_MHA_TYPE, LX_CALL_ARGS(lx_int_v(2), lx_int_v(4)), 0);
    nnx_case c = {m, mha_fwd, X(LX_SHAPE(2, 3, 4)), mask};
    check_nnx("MultiHeadAttention mask", &c, NULL, 1e-3, 3e-3);
    nnx_module_release(m);
}

static lx_array *bn_train(nnx_module *m, lx_array *x, void *extra) {
    (void)extra;
    return nnx_batch_norm_forward((nnx_batch_norm *)m, x, 0);
}

static void test_batch_norm(void) {
    nnx_module *m = make(&NNX_BATCH_NORM_TYPE, LX_CALL_ARGS(lx_int_v(3)), 0);
    nnx_batch_norm *b = (nnx_batch_norm *)m;
    lx_array *x = X(LX_SHAPE(6, 3));
    /* the statistics the call writes: momentum 0.99 towards the batch mean */
    double mean0 = 0;
    for (int i = 0; i < 6; i++) mean0 += lx_f32(x)[i * 3];
    mean0 /= 6;
    nnx_case c = {m, bn_train, x, NULL};
    lx_tree *grads = NULL;
    CHECK_EQ_INT(nnx_grad(m, NULL, nnx_loss, &c, &grads), LX_OK);
    CHECK_NEAR(lx_f32(lx_variable_get_value(b->mean))[0], 0.01 * mean0, 1e-6);
    CHECK_EQ_INT(lx_tree_count_leaves(grads), 2); /* bias, scale: BatchStat is not a Param */
    lx_tree_release(grads);
    check_nnx("BatchNorm train", &c, NULL, 1e-3, 3e-3);
    nnx_module_release(m);
}

static lx_array *dropout_fixed(nnx_module *m, lx_array *x, void *extra) {
    nnx_module *seq = extra;
    (void)seq;
    nnx_rngs *r = NULL;
    nnx_rngs_from_seed(9, &r); /* a fixed key every call: the same mask */
    nnx_dropout *d = (nnx_dropout *)m;
    lx_array *y = nnx_dropout_forward(d, x, 0, r);
    nnx_rngs_release(r);
    return y;
}

/* Dropout holds no Param: differentiate a Linear feeding it, through a fixed-key mask. */
typedef struct {
    nnx_module base;
    nnx_module *lin, *drop;
} lin_drop;

static lx_array *lin_drop_fwd(nnx_module *m, lx_array *x, void *extra) {
    (void)m;
    lin_drop *ld = extra;
    return dropout_fixed(ld->drop, lx_tanh(nnx_call_array(ld->lin, x)), NULL);
}

static void test_dropout(void) {
    lin_drop ld = {0};
    ld.lin = make(&NNX_LINEAR_TYPE, LX_CALL_ARGS(lx_int_v(4), lx_int_v(6)), 0);
    ld.drop = make(&NNX_DROPOUT_TYPE, LX_CALL_ARGS(lx_float_v(0.5)), 1);
    nnx_case c = {ld.lin, lin_drop_fwd, X(LX_SHAPE(3, 4)), &ld};
    check_nnx("Linear + Dropout fixed key", &c, NULL, 1e-2, 2e-3);

    /* the module's own stream: one draw per call, and the count is written back */
    const nnx_filter cnt = NNX_OF_TYPE(&lx_RngCount);
    lx_tree *s0 = NULL, *s1 = NULL, *g = NULL;
    CHECK_EQ_INT(nnx_state(ld.drop, 1, &cnt, &s0), LX_OK);
    lx_flat f0 = {0};
    lx_tree_flatten(s0, &f0);
    uint32_t before = f0.len ? lx_u32(lx_variable_get_value(f0.items[0].value.u.var))[0] : 99;
    nnx_case c2 = {ld.drop, call_plain, X(LX_SHAPE(2, 3)), NULL};
    CHECK_EQ_INT(nnx_grad(ld.drop, NULL, nnx_loss, &c2, &g), LX_OK);
    CHECK_EQ_INT(lx_tree_count_leaves(g), 0); /* no Param */
    CHECK_EQ_INT(nnx_state(ld.drop, 1, &cnt, &s1), LX_OK);
    lx_flat f1 = {0};
    lx_tree_flatten(s1, &f1);
    CHECK(f1.len == 1 && lx_u32(lx_variable_get_value(f1.items[0].value.u.var))[0] == before + 1);
    lx_flat_free(&f0);
    lx_flat_free(&f1);
    lx_tree_release(s0);
    lx_tree_release(s1);
    lx_tree_release(g);
    nnx_module_release(ld.lin);
    nnx_module_release(ld.drop);
}

static void test_lora_filter(void) {
    nnx_rngs *rb = NULL, *r = NULL;
    nnx_rngs_from_seed(3, &rb);
    nnx_rngs_from_seed(0, &r);
    nnx_module *base = NULL, *m = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 3, rb, (nnx_linear **)&base), LX_OK);
    lx_call lc = {3, LX_VALUES(lx_int_v(4), lx_int_v(2), lx_int_v(3)), 1,
                  LX_KWARGS(LX_KW("base_module", nnx_module_v(base)))};
    CHECK_EQ_INT(nnx_module_new(&NNX_LORA_TYPE, &lc, r, &m), LX_OK);
    /* b starts at zero: give it values so that a's gradient is not zero */
    nnx_lora *lo = (nnx_lora *)m;
    lx_array *b = lx_variable_get_value(lo->lora_b);
    for (int64_t i = 0; i < b->size; i++) lx_f32(b)[i] = 0.1f * (float)(i - 2);
    nnx_case c = {m, call_plain, X(LX_SHAPE(2, 4)), NULL};
    const nnx_filter lf = NNX_OF_TYPE(&lx_LoRAParam);
    check_nnx("LoRA, LoRAParam only", &c, &lf, 1e-2, 2e-3);
    lx_tree *g = NULL;
    CHECK_EQ_INT(nnx_grad(m, &lf, nnx_loss, &c, &g), LX_OK);
    CHECK(lx_tree_find(g, "lora_a") && lx_tree_find(g, "lora_b") && !lx_tree_find(g, "base_module"));
    lx_tree_release(g);
    check_nnx("LoRA, every Param", &c, NULL, 1e-2, 2e-3);
    nnx_module_release(m);
    nnx_module_release(base);
    nnx_rngs_release(rb);
    nnx_rngs_release(r);
}

static lx_status bn_then_fail(nnx_module *m, void *user, lx_array **loss) {
    nnx_case *c = user;
    lx_array *y = bn_train(m, c->x, NULL);
    (void)y;
    *loss = NULL;
    return lx_fail(LX_ERR_SHAPE, "loss failed after the statistics moved");
}

static lx_status bn_vector(nnx_module *m, void *user, lx_array **loss) {
    nnx_case *c = user;
    *loss = bn_train(m, c->x, NULL);
    return *loss ? LX_OK : lx_last_status();
}

static lx_status sqrt_loss(nnx_module *m, void *user, lx_array **loss) {
    nnx_case *c = user;
    *loss = lx_sum(lx_sqrt(c->fwd(m, c->x, c->extra)), LX_ALL_AXES, false);
    return *loss ? LX_OK : lx_last_status();
}

static void test_errors(void) {
    lx_test_current = "errors";
    nnx_module *m = make(&NNX_BATCH_NORM_TYPE, LX_CALL_ARGS(lx_int_v(3)), 0);
    nnx_batch_norm *b = (nnx_batch_norm *)m;
    nnx_case c = {m, bn_train, X(LX_SHAPE(4, 3)), NULL};
    lx_array *mean0 = lx_variable_get_value(b->mean);
    lx_tree *g = NULL;
    lx_array *v = NULL;
    CHECK_FAILS(nnx_value_and_grad(m, NULL, bn_then_fail, &c, &v, &g), LX_ERR_SHAPE, "statistics moved");
    CHECK(lx_variable_get_value(b->mean) == mean0 && lx_f32(mean0)[0] == 0.0f);
    CHECK_FAILS(nnx_value_and_grad(m, NULL, bn_vector, &c, &v, &g), LX_ERR_SHAPE, "Output had shape: (4, 3)");
    CHECK(lx_variable_get_value(b->mean) == mean0 && g == NULL && v == NULL);
    /* a filter that selects integer state: named by its path */
    nnx_module *d = make(&NNX_DROPOUT_TYPE, LX_CALL_ARGS(lx_float_v(0.5)), 1);
    const nnx_filter cnt = NNX_OF_TYPE(&lx_RngCount);
    nnx_case c2 = {d, call_plain, X(LX_SHAPE(2, 3)), NULL};
    CHECK_FAILS(nnx_value_and_grad(d, &cnt, nnx_loss, &c2, &v, &g), LX_ERR_DTYPE, "uint32[] at 'rngs/count'");
    CHECK(!lx_tape_active());
    /* debug_nans: BatchNorm with zero variance input and a sqrt of the output: inf gradients */
    lx_set_debug_nans(true);
    nnx_case c3 = {m, bn_train, lx_autorelease(lx_array_full_f32(2, (int64_t[]){4, 3}, 1.0f)), NULL};
    CHECK_FAILS(nnx_value_and_grad(m, NULL, sqrt_loss, &c3, &v, &g), LX_ERR_INVALID_ARGUMENT, "debug_nans is on");
    CHECK_ERROR_HAS("in the gradient at '");
    CHECK(lx_variable_get_value(b->mean) == mean0); /* the statistics the failed call moved are put back */
    lx_set_debug_nans(false);
    nnx_module_release(d);
    nnx_module_release(m);
}

int main(void) {
    RUN(test_layers);
    RUN(test_attention);
    RUN(test_batch_norm);
    RUN(test_dropout);
    RUN(test_lora_filter);
    RUN(test_errors);
    lx_pool_drain();
    return lx_test_finish();
}
