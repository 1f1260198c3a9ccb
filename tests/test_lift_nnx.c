/* NNX stacked layers (nnx_transforms.h): split_rngs(splits=L) + vmap over a constructor gives
 * Flax's keys (spec/jax-random.md §6.2b, fixtures from jax_random_ref.py) and restores the
 * Rngs; scan over the stack against a double loop and its gradients against finite
 * differences; out_sharding gains/loses the partition name; errors. */
#include "lx_test.h"
#include "fixtures/lift_fixtures.h"


static nnx_rngs *params_rngs(int64_t seed) {
    nnx_rngs *r = NULL;
    nnx_stream_spec s[] = {{"params", false, seed, {{0, 0}}}};
    nnx_rngs_new(1, s, &r);
    return r;
}

static void test_create_keys(void) {
    nnx_rngs *r = params_rngs(0);
    nnx_module *stack = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(5), lx_int_v(4));
    CHECK_EQ_INT(nnx_vmap_create(&NNX_LINEAR_TYPE, &c, r, 3, NULL, NULL, &stack), LX_OK);
    lx_array *k = stack ? lx_test_var_value(stack, "kernel") : NULL;
    CHECK(k && k->ndim == 3 && k->shape[0] == 3 && k->shape[1] == 5 && k->shape[2] == 4);
    CHECK(same_bits(k, LIFT_NNX_KERNEL, 60));
    lx_array *b = stack ? lx_test_var_value(stack, "bias") : NULL;
    CHECK(b && b->ndim == 2 && b->shape[0] == 3 && b->shape[1] == 4);
    /* the Rngs is restored with count c0 + 1: a layer built next draws fold_in(K, 1) */
    nnx_module *after = NULL;
    CHECK_EQ_INT(nnx_module_new(&NNX_LINEAR_TYPE, &c, r, &after), LX_OK);
    CHECK(same_bits(after ? lx_test_var_value(after, "kernel") : NULL, LIFT_NNX_AFTER_KERNEL, 20));
    /* a slice is layer i */
    nnx_module *l1 = NULL;
    CHECK_EQ_INT(nnx_stack_slice(stack, 1, NULL, NULL, &l1), LX_OK);
    lx_array *k1 = l1 ? lx_test_var_value(l1, "kernel") : NULL;
    CHECK(k1 && k1->ndim == 2 && same_bits(k1, LIFT_NNX_KERNEL + 20, 20));
    nnx_module *bad = NULL;
    CHECK_FAILS(nnx_stack_slice(stack, 3, NULL, NULL, &bad), LX_ERR_INVALID_ARGUMENT, "index 3 out of range for 3 layers");
    nnx_module_release(l1);
    nnx_module_release(after);
    nnx_module_release(stack);
    nnx_rngs_release(r);
}

typedef struct scan_ctx {
    lx_array *x;
} scan_ctx;

static lx_status scan_loss(nnx_module *m, void *user, lx_array **loss) {
    scan_ctx *c = user;
    lx_value out = lx_none();
    LX_TRY(nnx_scan_call(m, NULL, NULL, NULL, &LX_ARGS(c->x), &out));
    lx_array *y = out.u.array;
    *loss = lx_sum(lx_mul(lx_tanh(y), lx_tanh(y)), 0, NULL, false);
    lx_value_free(&out);
    return *loss ? LX_OK : lx_last_status();
}

static void test_scan(void) {
    nnx_rngs *r = params_rngs(3);
    nnx_module *stack = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(4), lx_int_v(4));
    CHECK_EQ_INT(nnx_vmap_create(&NNX_LINEAR_TYPE, &c, r, 3, NULL, NULL, &stack), LX_OK);
    lx_array *x = lx_array_new(LX_F32, 2, (int64_t[]){2, 4});
    for (int i = 0; i < 8; i++) lx_f32(x)[i] = 0.3f * (float)(i % 5) - 0.5f;
    lx_value out = lx_none();
    CHECK_EQ_INT(nnx_scan_call(stack, NULL, NULL, NULL, &LX_ARGS(x), &out), LX_OK);
    lx_array *k = lx_test_var_value(stack, "kernel"), *b = lx_test_var_value(stack, "bias");
    double h[8], t[8];
    for (int i = 0; i < 8; i++) h[i] = lx_f32(x)[i];
    for (int l = 0; l < 3; l++) {
        for (int n = 0; n < 2; n++)
            for (int f = 0; f < 4; f++) {
                double acc = lx_f32(b)[l * 4 + f];
                for (int j = 0; j < 4; j++) acc += h[n * 4 + j] * lx_f32(k)[(l * 4 + j) * 4 + f];
                t[n * 4 + f] = acc;
            }
        memcpy(h, t, sizeof h);
    }
    double maxerr = 0;
    for (int i = 0; out.kind == LX_V_ARRAY && i < 8; i++) maxerr = lx_worse(maxerr, fabs(h[i] - lx_f32(out.u.array)[i]));
    CHECK(out.kind == LX_V_ARRAY && maxerr < 1e-5);
    lx_value_free(&out);
    /* gradients through the scan against central differences */
    scan_ctx sc = {x};
    lx_array *val = NULL;
    lx_tree *grads = NULL;
    nnx_filter pf = NNX_OF_TYPE(&lx_Param);
    CHECK_EQ_INT(nnx_value_and_grad(stack, &pf, scan_loss, &sc, &val, &grads), LX_OK);
    const lx_value *gv = grads ? lx_tree_find(grads, "kernel") : NULL;
    lx_array *gk = gv ? (gv->kind == LX_V_VARIABLE ? lx_variable_get_value(gv->u.var) : gv->kind == LX_V_ARRAY ? gv->u.array : NULL) : NULL;
    CHECK(gk && gk->size == 48);
    int idx[] = {1, 22, 47};
    for (int j = 0; j < 3 && gk; j++) {
        float save = lx_f32(k)[idx[j]], eps = 1e-2f;
        size_t mark = lx_pool_open();
        lx_array *lp = NULL, *lm = NULL;
        lx_f32(k)[idx[j]] = save + eps;
        scan_loss(stack, &sc, &lp);
        double fp = lx_f32(lp)[0];
        lx_f32(k)[idx[j]] = save - eps;
        scan_loss(stack, &sc, &lm);
        double fm = lx_f32(lm)[0];
        lx_f32(k)[idx[j]] = save;
        lx_pool_close(mark);
        double fd = (fp - fm) / (2 * eps);
        CHECK_NEAR(lx_f32(gk)[idx[j]], fd, 2e-3 + 2e-2 * fabs(fd));
    }
    lx_release(val);
    lx_tree_release(grads);
    lx_release(x);
    nnx_module_release(stack);
    nnx_rngs_release(r);
}

static void test_errors(void) {
    nnx_rngs *r = params_rngs(0);
    nnx_module *stack = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(5), lx_int_v(4));
    CHECK_EQ_INT(nnx_vmap_create(&NNX_LINEAR_TYPE, &c, r, 2, NULL, NULL, &stack), LX_OK);
    lx_array *x = lx_array_new(LX_F32, 2, (int64_t[]){2, 5});
    lx_value out = lx_none();
    CHECK_FAILS(nnx_scan_call(stack, NULL, NULL, NULL, &LX_ARGS(x), &out), LX_ERR_SHAPE,
                "nnx.scan over Linear: the carry changed from float32 (2, 5) to float32 (2, 4) in iteration 0");
    lx_array *xs = lx_array_new(LX_F32, 2, (int64_t[]){3, 5});
    lx_call c2 = LX_CALL_ARGS(lx_array_v(x), lx_array_v(xs));
    CHECK_FAILS(nnx_scan_call(stack, NULL, NULL, NULL, &c2, &out), LX_ERR_SHAPE,
                "argument 1 has shape (3, 5), but the stack has 2 layers");
    /* StateAxes naming an axis the bias lacks */
    nnx_filter f[] = {NNX_EVERYTHING};
    int axes[] = {2};
    nnx_state_axes sa = {1, f, axes};
    CHECK_FAILS(nnx_scan_call(stack, NULL, &sa, NULL, &LX_ARGS(x), &out), LX_ERR_SHAPE,
                "StateAxes puts Variable bias on axis 2, but it has shape (2, 4)");
    /* nothing half-built: a failed call leaves every Variable of the stack as it was */
    lx_tree *before = NULL, *after = NULL;
    nnx_state(stack, 0, NULL, &before);
    /* fails after layer 0 ran */
    CHECK_FAILS(nnx_scan_call(stack, NULL, NULL, NULL, &LX_ARGS(x), &out), LX_ERR_SHAPE,
                "nnx.scan over Linear: the carry changed from float32 (2, 5) to float32 (2, 4)");
    nnx_state(stack, 0, NULL, &after);
    lx_flat fb = {0}, fa = {0};
    bool same = before && after && lx_tree_flatten(before, &fb) == LX_OK && lx_tree_flatten(after, &fa) == LX_OK &&
                fb.len == fa.len && fb.len == 2;
    for (size_t i = 0; same && i < fb.len; i++)
        same = lx_variable_get_value(fb.items[i].value.u.var) == lx_variable_get_value(fa.items[i].value.u.var);
    CHECK(same);
    lx_flat_free(&fb);
    lx_flat_free(&fa);
    lx_tree_release(before);
    lx_tree_release(after);
    nnx_module *bad = NULL;
    CHECK_FAILS(nnx_vmap_create(&NNX_LINEAR_TYPE, &c, r, 0, NULL, NULL, &bad), LX_ERR_INVALID_ARGUMENT,
                "splits must be positive");
    lx_release(x);
    lx_release(xs);
    nnx_module_release(stack);
    nnx_rngs_release(r);
}

/* transform_metadata={PARTITION_NAME: 'layers'}: out_sharding gains the name at the stacked
 * axis; the per-layer view scan builds loses it again (and a view without it is an error). */
static void test_partition_name(void) {
    nnx_rngs *r = params_rngs(0);
    lx_initializer ln = lx_init_lecun_normal(), kinit;
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 2, (const char *[]){"embed", "mlp"}, NULL, &kinit), LX_OK);
    lx_call c = {2, (lx_value[]){lx_int_v(4), lx_int_v(4)}, 1,
                 (lx_kwarg[]){LX_KW("kernel_init", lx_ptr_v("initializer", &kinit))}};
    nnx_module *stack = NULL;
    CHECK_EQ_INT(nnx_vmap_create(&NNX_LINEAR_TYPE, &c, r, 2, NULL, "layers", &stack), LX_OK);
    lx_tree *st = NULL;
    if (stack) nnx_state(stack, 0, NULL, &st);
    const lx_value *kv = st ? lx_tree_find(st, "kernel") : NULL;
    const char *n3[] = {"layers", "embed", "mlp"};
    CHECK(kv && kv->kind == LX_V_VARIABLE && strs_are(lx_variable_meta_get(kv->u.var, "out_sharding"), 3, n3));
    nnx_module *l0 = NULL;
    CHECK_EQ_INT(nnx_stack_slice(stack, 0, NULL, "layers", &l0), LX_OK);
    lx_tree *s0 = NULL;
    if (l0) nnx_state(l0, 0, NULL, &s0);
    const lx_value *k0 = s0 ? lx_tree_find(s0, "kernel") : NULL;
    const char *n2[] = {"embed", "mlp"};
    CHECK(k0 && k0->kind == LX_V_VARIABLE && strs_are(lx_variable_meta_get(k0->u.var, "out_sharding"), 2, n2));
    lx_array *x = lx_array_new(LX_F32, 2, (int64_t[]){2, 4});
    lx_value out = lx_none();
    CHECK_EQ_INT(nnx_scan_call(stack, NULL, NULL, "layers", &LX_ARGS(x), &out), LX_OK);
    lx_value_free(&out);
    CHECK_FAILS(nnx_scan_call(stack, NULL, NULL, "stage", &LX_ARGS(x), &out), LX_ERR_INVALID_ARGUMENT,
                "kernel's out_sharding has no 'stage' at axis 0");
    lx_release(x);
    lx_tree_release(s0);
    lx_tree_release(st);
    nnx_module_release(l0);
    nnx_module_release(stack);
    nnx_rngs_release(r);
}

int main(void) {
    RUN(test_partition_name);
    RUN(test_create_keys);
    RUN(test_scan);
    RUN(test_errors);
    return lx_test_finish();
}
