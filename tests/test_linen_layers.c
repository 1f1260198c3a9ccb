/* Linen layers: parameters for a seed against reference fixtures (scripts/gen_linen_fixtures.py),
 * names and shapes as Flax lays them out, and outputs against hand-worked math on small inputs
 * (double-precision loops over the parameters, written out here). */
#include <string.h>

#include "fixtures/linen_fixtures.h"
#include "linnx/box.h"
#include "linnx/linen.h"
#include "linnx/dropout.h"
#include "linnx/linen_layers.h"
#include "linnx/ops.h"
#include "linnx/tree.h"
#include "lx_test.h"

static lx_array *leaf(const lx_tree *t, const char *path) {
    const lx_value *v = t ? lx_tree_find(t, path) : NULL;
    return v && v->kind == LX_V_ARRAY ? v->u.array : NULL;
}
static lx_array *arr(int ndim, const int64_t *shape, const float *data) {
    return lx_autorelease(lx_array_from_f32(ndim, shape, data));
}
static lx_array *ones(int n0, int n1) { return lx_autorelease(lx_array_full_f32(2, (int64_t[]){n0, n1}, 1.0f)); }

static lx_value a_slot_[1];
static lx_call a_call_;
static const lx_call *A(lx_array *x) {
    a_slot_[0] = lx_array_v(x);
    a_call_ = (lx_call){1, a_slot_, 0, NULL};
    return &a_call_;
}

static linen_module *make(const linen_type *t, lx_call c) {
    linen_module *m = NULL;
    CHECK(linen_module_new(t, &c, &m) == LX_OK);
    return m;
}

/* init, then apply the same input; returns the output (pool-owned) and the variables */
static lx_array *init_apply(const linen_module *m, lx_key key, lx_array *x, lx_tree **vars) {
    *vars = NULL;
    if (linen_init(m, LINEN_KEY(key), A(x), NULL, vars) != LX_OK) return NULL;
    lx_value out;
    if (linen_apply(m, *vars, LINEN_NO_RNGS, A(x), NULL, &out, NULL) != LX_OK) return NULL;
    lx_array *y = out.kind == LX_V_ARRAY ? lx_autorelease(lx_retain(out.u.array)) : NULL;
    lx_value_free(&out);
    return y;
}

static bool close_to(const lx_array *a, const double *want, int64_t n, double tol) {
    if (!a || a->size != n) return false;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(lx_f32(a)[i] - want[i]) <= tol * (1.0 + fabs(want[i])))) return false; /* NaN fails */
    return true;
}

/* ---------------------------------------------------------------- Dense */
static void test_dense(void) {
    linen_module *d = make(&linen_Dense, LX_CALL_ARGS(lx_int_v(8)));
    lx_tree *vars;
    lx_array *x = arr(2, (int64_t[]){1, 4}, (float[]){1, 2, 3, 4});
    lx_array *y = init_apply(d, lx_key_from_seed(0), x, &vars);
    lx_array *k = leaf(vars, "params/kernel"), *b = leaf(vars, "params/bias");
    CHECK(same_bits(k, LF_DENSE_TOP_KERNEL, 32));
    CHECK(b && b->ndim == 1 && b->shape[0] == 8 && lx_f32(b)[3] == 0.0f);
    double want[8];
    for (int j = 0; j < 8; j++) {
        want[j] = 0;
        for (int i = 0; i < 4; i++) want[j] += (i + 1) * (double)lx_f32(k)[i * 8 + j];
    }
    CHECK(y && y->ndim == 2 && y->shape[1] == 8 && close_to(y, want, 8, 1e-5));
    lx_tree_release(vars);
    linen_module_release(d);

    /* bias added, no-bias layout, 3-D input */
    linen_module *nb = make(&linen_Dense, LX_CALL_KWARGS(LX_KW_INT("features", 2), LX_KW_BOOL("use_bias", false)));
    CHECK(linen_init(nb, LINEN_KEY(lx_key_from_seed(1)), A(ones(2, 3)), NULL, &vars) == LX_OK);
    CHECK(lx_tree_len(lx_tree_get(vars, "params")->u.tree) == 1);
    lx_tree_release(vars);
    lx_tree *given = lx_tree_new();
    lx_tree_set_path(given, "params/kernel", lx_array_v(arr(2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4})));
    lx_tree_set_path(given, "params/bias", lx_array_v(arr(1, (int64_t[]){2}, (float[]){10, 20})));
    linen_module *d2 = make(&linen_Dense, LX_CALL_ARGS(lx_int_v(2)));
    lx_value out;
    lx_array *x3 = arr(3, (int64_t[]){2, 1, 2}, (float[]){1, 1, 0, 2});
    CHECK(linen_apply(d2, given, LINEN_NO_RNGS, A(x3), NULL, &out, NULL) == LX_OK);
    /* [1,1]@[[1,2],[3,4]] + [10,20] = [14, 26]; [0,2] -> [16, 28] */
    CHECK(out.kind == LX_V_ARRAY && close_to(out.u.array, (double[]){14, 26, 16, 28}, 4, 0));
    CHECK(out.u.array->ndim == 3);
    lx_value_free(&out);
    CHECK_FAILS(linen_apply(d2, given, LINEN_NO_RNGS, A(ones(1, 3)), NULL, &out, NULL), LX_ERR_SHAPE,
                "For parameter \"kernel\" in \"/\", the given initializer is expected to generate shape (2, 2), "
                "but the existing parameter it received has shape (3, 2).");
    lx_tree_release(given);
    linen_module_release(d2);
    linen_module_release(nb);
    linen_module *bad = NULL;
    CHECK_FAILS(linen_module_new(&linen_Dense, NULL, &bad), LX_ERR_TYPE,
                "Dense.__init__() missing 1 required positional argument: 'features'");
    lx_call wrong = LX_CALL_KWARGS(LX_KW_INT("features", 2), LX_KW_STR("dtype", "bfloat16"));
    linen_module *bf = make(&linen_Dense, wrong);
    CHECK_FAILS(linen_init(bf, LINEN_KEY(lx_key_from_seed(0)), A(ones(1, 2)), NULL, &vars), LX_ERR_UNSUPPORTED, "dtype=bfloat16");
    linen_module_release(bf);
}

/* An MLP written with the typed helpers: Dense_0 / Dense_1 as Flax names them. */
static lx_array *mlp(linen_scope *s, lx_array *x) {
    return linen_dense(s, NULL, 2, lx_relu(linen_dense(s, NULL, 8, x)));
}
static const linen_method MLP_METHODS[] = {LINEN_ARRAY_METHOD("__call__", mlp)};
static const linen_type MLP = {.name = "MLP", .methods = MLP_METHODS, .nmethods = LX_COUNT(MLP_METHODS)};

static void test_mlp_helpers(void) {
    linen_module *m = NULL;
    CHECK(linen_module_new(&MLP, NULL, &m) == LX_OK);
    lx_tree *vars;
    lx_array *x = arr(2, (int64_t[]){1, 4}, (float[]){0.5f, -1, 2, 0.25f});
    lx_array *y = init_apply(m, lx_key_from_seed(0), x, &vars);
    lx_array *k0 = leaf(vars, "params/Dense_0/kernel"), *k1 = leaf(vars, "params/Dense_1/kernel");
    CHECK(same_bits(k0, LF_MLP_DENSE0_KERNEL, 32));
    CHECK(same_bits(k1, LF_MLP_DENSE1_KERNEL, 16));
    double h[8], want[2] = {0, 0};
    for (int j = 0; j < 8; j++) {
        h[j] = 0;
        for (int i = 0; i < 4; i++) h[j] += lx_f32(x)[i] * (double)lx_f32(k0)[i * 8 + j];
        if (h[j] < 0) h[j] = 0;
    }
    for (int o = 0; o < 2; o++)
        for (int j = 0; j < 8; j++) want[o] += h[j] * lx_f32(k1)[j * 2 + o];
    CHECK(close_to(y, want, 2, 1e-5));
    lx_tree_release(vars);
    /* a failed input chains through the helpers */
    lx_value out;
    CHECK_FAILS(linen_init_with_output(m, LINEN_KEY(lx_key_from_seed(0)), A(NULL), NULL, &out, &vars),
                LX_ERR_FAILED_INPUT, "NULL");
    linen_module_release(m);
}

/* ---------------------------------------------------------------- with_partitioning */
static const lx_box *box_at(const lx_tree *t, const char *path) {
    const lx_value *v = t ? lx_tree_find(t, path) : NULL;
    return v && v->kind == LX_V_BOX ? v->u.box : NULL;
}

/* Dense(8, kernel_init=nn.with_partitioning(lecun_normal(), ('in', 'out')),
 *       bias_init=nn.with_logical_partitioning(zeros, ('out-alias',), rules=(('out-alias', 'out'),)))
 * stores boxes whose values are the plain Dense's bit for bit (the wrapper draws no key), and
 * computes the same output. */
#define DENSE8(...) ((lx_call){1, LX_VALUES(lx_int_v(8)), LX_NARGS_(LX_KWARGS(__VA_ARGS__)), LX_KWARGS(__VA_ARGS__)})
static void test_partitioned_params(void) {
    lx_initializer ln = lx_init_lecun_normal(), z = lx_init_zeros(), kinit, binit;
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 2, (const char *[]){"in", "out"}, NULL, &kinit), LX_OK);
    CHECK_EQ_INT(lx_init_with_logical_partitioning(&z, 1, (const char *[]){"out-alias"}, NULL, 2,
                                                   (const char *[]){"out-alias", "out"}, &binit),
                 LX_OK);
    linen_module *d = make(&linen_Dense, DENSE8(LX_KW("kernel_init", lx_ptr_v("initializer", &kinit)),
                                                LX_KW("bias_init", lx_ptr_v("initializer", &binit))));
    /* the config holds its own copy: the caller's initializers may change afterwards */
    kinit = lx_init_zeros();
    lx_tree *vars;
    lx_array *x = arr(2, (int64_t[]){1, 4}, (float[]){1, 2, 3, 4});
    lx_array *y = init_apply(d, lx_key_from_seed(0), x, &vars);
    const lx_box *kb = box_at(vars, "params/kernel"), *bb = box_at(vars, "params/bias");
    char buf[200];
    CHECK(kb && lx_box_get_kind(kb) == LX_BOX_PARTITIONED);
    CHECK_STR(kb ? lx_box_str(kb, buf, sizeof buf) : NULL,
              "Partitioned(value=float32[4,8], names=('in', 'out'), mesh=None)");
    CHECK(kb && same_bits(lx_box_unbox(kb), LF_DENSE_TOP_KERNEL, 32));
    CHECK(bb && lx_box_get_kind(bb) == LX_BOX_LOGICALLY_PARTITIONED);
    CHECK_STR(bb ? lx_box_str(bb, buf, sizeof buf) : NULL,
              "LogicallyPartitioned(value=float32[8], names=('out-alias',), mesh=None, rules=(('out-alias', 'out'),))");
    /* the same output as a plain Dense with the same key */
    linen_module *plain = make(&linen_Dense, LX_CALL_ARGS(lx_int_v(8)));
    lx_tree *pvars;
    lx_array *py = init_apply(plain, lx_key_from_seed(0), x, &pvars);
    CHECK(y && py && lx_array_equal(y, py));
    /* apply accepts the unboxed tree too (meta.unbox), and the boxes survive a round of apply */
    lx_tree *unboxed = NULL;
    CHECK_EQ_INT(lx_tree_unbox(vars, &unboxed), LX_OK);
    lx_value out;
    CHECK_EQ_INT(linen_apply(d, unboxed, LINEN_NO_RNGS, A(x), NULL, &out, NULL), LX_OK);
    CHECK(out.kind == LX_V_ARRAY && lx_array_equal(out.u.array, py));
    lx_value_free(&out);
    lx_tree_release(unboxed);
    lx_tree_release(pvars);
    lx_tree_release(vars);
    linen_module_release(plain);
    linen_module_release(d);

    /* DenseGeneral initialises flat (4, 6) and reshapes: the names describe the final (4, 2, 3)
     * kernel, whose box holds the reshaped value (Flax's replace_boxed). Fewer names than axes
     * are allowed (the rest are not sharded), with a mesh name. */
    lx_initializer k3, b1;
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 3, (const char *[]){"embed", "heads", NULL}, NULL, &k3), LX_OK);
    CHECK_EQ_INT(lx_init_with_partitioning(&z, 1, (const char *[]){"heads"}, "mesh0", &b1), LX_OK);
    int64_t f23[2] = {2, 3};
    linen_module *dg = make(&linen_DenseGeneral,
                            LX_CALL_KWARGS(LX_KW("features", lx_ints_v(2, f23)), LX_KW("kernel_init", lx_ptr_v("initializer", &k3)),
                                           LX_KW("bias_init", lx_ptr_v("initializer", &b1))));
    y = init_apply(dg, lx_key_from_seed(0), arr(2, (int64_t[]){1, 4}, (float[]){1, 0, 0, 2}), &vars);
    kb = box_at(vars, "params/kernel");
    bb = box_at(vars, "params/bias");
    CHECK(y && kb && same_bits(lx_box_unbox(kb), LF_DG_KERNEL, 24));
    CHECK_STR(kb ? lx_box_str(kb, buf, sizeof buf) : NULL,
              "Partitioned(value=float32[4,2,3], names=('embed', 'heads', None), mesh=None)");
    CHECK_STR(bb ? lx_box_str(bb, buf, sizeof buf) : NULL,
              "Partitioned(value=float32[2,3], names=('heads',), mesh='mesh0')");
    lx_tree_release(vars);
    linen_module_release(dg);

    /* More names than axes: an error naming the module path and the parameter when the param is
     * made; an apply over existing params never meets the initializer (as in Flax). */
    lx_initializer k4;
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 3, (const char *[]){"a", NULL, "c"}, NULL, &k4), LX_OK);
    linen_module *bad = make(&linen_Dense, DENSE8(LX_KW("kernel_init", lx_ptr_v("initializer", &k4))));
    CHECK_FAILS(linen_init(bad, LINEN_KEY(lx_key_from_seed(0)), A(ones(1, 4)), NULL, &vars), LX_ERR_SHAPE,
                "param \"kernel\" in \"/\": with_partitioning: names ('a', None, 'c') have 3 entries, more than the "
                "rank of a value of shape (4, 8)");
    lx_tree *given = lx_tree_new();
    lx_tree_set_path(given, "params/kernel", lx_array_v(ones(4, 8)));
    lx_tree_set_path(given, "params/bias", lx_array_v(lx_autorelease(lx_array_new(LX_F32, 1, (int64_t[]){8}))));
    CHECK_EQ_INT(linen_apply(bad, given, LINEN_NO_RNGS, A(ones(1, 4)), NULL, &out, NULL), LX_OK);
    lx_value_free(&out);
    lx_tree_release(given);
    linen_module_release(bad);
}

/* ---------------------------------------------------------------- DenseGeneral */
static void test_dense_general(void) {
    lx_tree *vars;
    int64_t f23[2] = {2, 3};
    linen_module *dg = make(&linen_DenseGeneral, LX_CALL_KWARGS(LX_KW("features", lx_ints_v(2, f23))));
    lx_array *x = arr(2, (int64_t[]){1, 4}, (float[]){1, 0, 0, 2});
    lx_array *y = init_apply(dg, lx_key_from_seed(0), x, &vars);
    lx_array *k = leaf(vars, "params/kernel");
    CHECK(k && lx_shape_eq(k, 3, (int64_t[]){4, 2, 3}) && same_bits(k, LF_DG_KERNEL, 24));
    CHECK(lx_shape_eq(leaf(vars, "params/bias"), 2, (int64_t[]){2, 3}));
    double want[6];
    for (int j = 0; j < 6; j++) want[j] = lx_f32(k)[j] + 2.0 * lx_f32(k)[18 + j];
    CHECK(y && lx_shape_eq(y, 3, (int64_t[]){1, 2, 3}) && close_to(y, want, 6, 1e-6));
    lx_tree_release(vars);
    linen_module_release(dg);

    /* batch_dims: kernel (2, 4, 3) initialised flat (8, 3) */
    int64_t b0[1] = {0};
    linen_module *db = make(&linen_DenseGeneral, LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW("batch_dims", lx_ints_v(1, b0))));
    lx_array *xb = lx_autorelease(lx_array_full_f32(2, (int64_t[]){2, 4}, 1.0f));
    y = init_apply(db, lx_key_from_seed(0), xb, &vars);
    k = leaf(vars, "params/kernel");
    CHECK(k && lx_shape_eq(k, 3, (int64_t[]){2, 4, 3}) && same_bits(k, LF_DG_BATCH_KERNEL, 24));
    CHECK(lx_shape_eq(leaf(vars, "params/bias"), 2, (int64_t[]){2, 3}));
    double wb[6];
    for (int bi = 0; bi < 2; bi++)
        for (int o = 0; o < 3; o++) {
            wb[bi * 3 + o] = 0;
            for (int i = 0; i < 4; i++) wb[bi * 3 + o] += lx_f32(k)[(bi * 4 + i) * 3 + o];
        }
    CHECK(y && lx_shape_eq(y, 2, (int64_t[]){2, 3}) && close_to(y, wb, 6, 1e-5));
    lx_tree_release(vars);
    linen_module_release(db);

    /* contraction over two axes with given parameters */
    int64_t ax2[2] = {-2, -1};
    linen_module *d2 = make(&linen_DenseGeneral, LX_CALL_KWARGS(LX_KW_INT("features", 1), LX_KW("axis", lx_ints_v(2, ax2))));
    lx_tree *given = lx_tree_new();
    lx_tree_set_path(given, "params/kernel", lx_array_v(arr(3, (int64_t[]){2, 2, 1}, (float[]){1, 2, 3, 4})));
    lx_tree_set_path(given, "params/bias", lx_array_v(arr(1, (int64_t[]){1}, (float[]){0.5f})));
    lx_value out;
    CHECK(linen_apply(d2, given, LINEN_NO_RNGS, A(arr(3, (int64_t[]){1, 2, 2}, (float[]){1, 1, 1, 1})), NULL, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && lx_shape_eq(out.u.array, 2, (int64_t[]){1, 1}) && lx_f32(out.u.array)[0] == 10.5f);
    lx_value_free(&out);
    lx_tree_release(given);
    linen_module_release(d2);
    int64_t bad[1] = {1};
    linen_module *dbad = make(&linen_DenseGeneral, LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW("batch_dims", lx_ints_v(1, bad))));
    CHECK_FAILS(linen_init(dbad, LINEN_KEY(lx_key_from_seed(0)), A(lx_autorelease(lx_array_full_f32(3, (int64_t[]){2, 2, 4}, 1.0f))),
                           NULL, &vars),
                LX_ERR_INVALID_ARGUMENT, "batch_dims (1,) must be consecutive leading dimensions starting from 0.");
    linen_module_release(dbad);
}

/* ---------------------------------------------------------------- Conv */
static void test_conv(void) {
    lx_tree *vars;
    int64_t k33[2] = {3, 3};
    linen_module *cv = make(&linen_Conv, LX_CALL_ARGS(lx_int_v(4), lx_ints_v(2, k33)));
    lx_array *x = lx_autorelease(lx_array_full_f32(4, (int64_t[]){1, 5, 5, 2}, 1.0f));
    lx_array *y = init_apply(cv, lx_key_from_seed(1), x, &vars);
    lx_array *k = leaf(vars, "params/kernel");
    CHECK(k && lx_shape_eq(k, 4, (int64_t[]){3, 3, 2, 4}) && same_bits(k, LF_CONV_KERNEL, 72));
    CHECK(lx_shape_eq(leaf(vars, "params/bias"), 1, (int64_t[]){4}));
    CHECK(y && lx_shape_eq(y, 4, (int64_t[]){1, 5, 5, 4}));
    /* centre pixel under SAME: the sum of the whole kernel per output channel */
    if (y && k) {
        for (int o = 0; o < 4; o++) {
            double sum = 0;
            for (int i = 0; i < 18; i++) sum += lx_f32(k)[i * 4 + o];
            CHECK_NEAR(lx_f32(y)[(2 * 5 + 2) * 4 + o], sum, 1e-5);
        }
    }
    lx_tree_release(vars);
    linen_module_release(cv);

    linen_module *cg = make(&linen_Conv, LX_CALL_KWARGS(LX_KW_INT("features", 4), LX_KW("kernel_size", lx_ints_v(2, k33)),
                                                        LX_KW_INT("feature_group_count", 2)));
    CHECK(linen_init(cg, LINEN_KEY(lx_key_from_seed(1)), A(x), NULL, &vars) == LX_OK);
    CHECK(same_bits(leaf(vars, "params/kernel"), LF_CONV_GROUPED_KERNEL, 36));
    lx_tree_release(vars);
    linen_module_release(cg);

    /* 1-D with given weights: kernel [1, 2, 3] over [1, 2, 3, 4, 5] */
    int64_t k3[1] = {3};
    lx_tree *given = lx_tree_new();
    lx_tree_set_path(given, "params/kernel", lx_array_v(arr(3, (int64_t[]){3, 1, 1}, (float[]){1, 2, 3})));
    lx_array *x1 = arr(3, (int64_t[]){1, 5, 1}, (float[]){1, 2, 3, 4, 5});
    struct { const char *pad; lx_value padv; int64_t n; double want[5]; } cases[] = {
        {"VALID", lx_str_v("VALID"), 3, {14, 20, 26}},
        {"SAME", lx_str_v("SAME"), 5, {8, 14, 20, 26, 14}},
        {"CIRCULAR", lx_str_v("CIRCULAR"), 5, {5 + 2 + 6, 14, 20, 26, 4 + 10 + 3}},
        {"CAUSAL", lx_str_v("CAUSAL"), 5, {3, 8, 14, 20, 26}},
        {"int 1", lx_int_v(1), 5, {8, 14, 20, 26, 14}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        linen_module *c1 = make(&linen_Conv, LX_CALL_KWARGS(LX_KW_INT("features", 1), LX_KW("kernel_size", lx_ints_v(1, k3)),
                                                            LX_KW("padding", cases[i].padv), LX_KW_BOOL("use_bias", false)));
        lx_value out;
        lx_status st = linen_apply(c1, given, LINEN_NO_RNGS, A(x1), NULL, &out, NULL);
        LX_TEST_REPORT_(st == LX_OK && out.kind == LX_V_ARRAY && close_to(out.u.array, cases[i].want, cases[i].n, 1e-6),
                        "conv padding %s [%s]", cases[i].pad, lx_last_error());
        if (st == LX_OK) lx_value_free(&out);
        linen_module_release(c1);
    }
    /* no batch axis, and two batch axes */
    linen_module *c1 = make(&linen_Conv, LX_CALL_KWARGS(LX_KW_INT("features", 1), LX_KW("kernel_size", lx_ints_v(1, k3)),
                                                        LX_KW_STR("padding", "VALID"), LX_KW_BOOL("use_bias", false)));
    lx_value out;
    CHECK(linen_apply(c1, given, LINEN_NO_RNGS, A(arr(2, (int64_t[]){5, 1}, (float[]){1, 2, 3, 4, 5})), NULL, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && lx_shape_eq(out.u.array, 2, (int64_t[]){3, 1}));
    lx_value_free(&out);
    CHECK(linen_apply(c1, given, LINEN_NO_RNGS, A(lx_autorelease(lx_array_full_f32(4, (int64_t[]){2, 3, 5, 1}, 1.0f))), NULL,
                      &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && lx_shape_eq(out.u.array, 4, (int64_t[]){2, 3, 3, 1}) && lx_f32(out.u.array)[5] == 6.0f);
    lx_value_free(&out);
    linen_module_release(c1);
    linen_module *cbad = make(&linen_Conv, LX_CALL_KWARGS(LX_KW_INT("features", 1), LX_KW("kernel_size", lx_ints_v(1, k3)),
                                                          LX_KW_STR("padding", "REFLECTED")));
    CHECK_FAILS(linen_apply(cbad, given, LINEN_NO_RNGS, A(x1), NULL, &out, NULL), LX_ERR_UNSUPPORTED, "padding 'REFLECTED'");
    linen_module_release(cbad);
    lx_tree_release(given);
}

/* ---------------------------------------------------------------- Embed */
static void test_embed(void) {
    linen_module *e = make(&linen_Embed, LX_CALL_ARGS(lx_int_v(5), lx_int_v(3)));
    lx_array *ids = lx_autorelease(lx_array_from_data(LX_I32, 1, (int64_t[]){2}, (int32_t[]){4, 1}));
    lx_tree *vars;
    lx_array *y = init_apply(e, lx_key_from_seed(0), ids, &vars);
    lx_array *t = leaf(vars, "params/embedding");
    CHECK(t && lx_shape_eq(t, 2, (int64_t[]){5, 3}) && same_bits(t, LF_EMBED, 15));
    CHECK(y && lx_shape_eq(y, 2, (int64_t[]){2, 3}));
    if (y && t) {
        CHECK(lx_f32(y)[0] == lx_f32(t)[12] && lx_f32(y)[2] == lx_f32(t)[14] && lx_f32(y)[3] == lx_f32(t)[3]);
    }
    /* attend: query @ embedding.T */
    linen_opts att = {.method = "attend"};
    lx_value out;
    lx_array *q = arr(2, (int64_t[]){1, 3}, (float[]){1, 0, 2});
    CHECK(linen_apply(e, vars, LINEN_NO_RNGS, A(q), &att, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && lx_shape_eq(out.u.array, 2, (int64_t[]){1, 5}));
    if (out.kind == LX_V_ARRAY && t) {
        double w[5];
        for (int i = 0; i < 5; i++) w[i] = lx_f32(t)[i * 3] + 2.0 * lx_f32(t)[i * 3 + 2];
        CHECK(close_to(out.u.array, w, 5, 1e-6));
    }
    lx_value_free(&out);
    CHECK_FAILS(linen_apply(e, vars, LINEN_NO_RNGS, A(q), NULL, &out, NULL), LX_ERR_DTYPE,
                "Input type must be an integer or unsigned integer.");
    lx_tree_release(vars);
    linen_module_release(e);
}

/* ---------------------------------------------------------------- norms */
static void test_norms(void) {
    lx_tree *vars;
    linen_module *ln = make(&linen_LayerNorm, LX_NO_CALL);
    lx_array *x = arr(2, (int64_t[]){2, 4}, (float[]){1, 2, 3, 4, -1, 0, 1, 6});
    lx_array *y = init_apply(ln, lx_key_from_seed(0), x, &vars);
    CHECK(lx_shape_eq(leaf(vars, "params/scale"), 1, (int64_t[]){4}) && lx_f32(leaf(vars, "params/scale"))[0] == 1.0f);
    CHECK(lx_shape_eq(leaf(vars, "params/bias"), 1, (int64_t[]){4}));
    CHECK_STR(lx_tree_key(lx_tree_get(vars, "params")->u.tree, 0), "scale"); /* scale first, then bias */
    double want[8];
    double rows[2][4] = {{1, 2, 3, 4}, {-1, 0, 1, 6}};
    for (int r = 0; r < 2; r++) {
        double m = 0, v = 0;
        for (int i = 0; i < 4; i++) m += rows[r][i] / 4;
        for (int i = 0; i < 4; i++) v += (rows[r][i] - m) * (rows[r][i] - m) / 4;
        for (int i = 0; i < 4; i++) want[r * 4 + i] = (rows[r][i] - m) / sqrt(v + 1e-6);
    }
    CHECK(close_to(y, want, 8, 1e-5));
    lx_tree_release(vars);
    linen_module_release(ln);

    linen_module *rms = make(&linen_RMSNorm, LX_NO_CALL);
    y = init_apply(rms, lx_key_from_seed(0), arr(2, (int64_t[]){1, 2}, (float[]){3, 4}), &vars);
    CHECK(lx_tree_len(lx_tree_get(vars, "params")->u.tree) == 1 && leaf(vars, "params/scale"));
    CHECK(close_to(y, (double[]){3 / sqrt(12.5 + 1e-6), 4 / sqrt(12.5 + 1e-6)}, 2, 1e-6));
    lx_tree_release(vars);
    linen_module_release(rms);

    linen_module *nosc = make(&linen_LayerNorm, LX_CALL_KWARGS(LX_KW_BOOL("use_scale", false), LX_KW_FLOAT("epsilon", 0.5)));
    y = init_apply(nosc, lx_key_from_seed(0), arr(2, (int64_t[]){1, 2}, (float[]){0, 2}), &vars);
    CHECK(lx_tree_find(vars, "params/scale") == NULL && leaf(vars, "params/bias"));
    CHECK(close_to(y, (double[]){-1 / sqrt(1.5), 1 / sqrt(1.5)}, 2, 1e-6));
    lx_tree_release(vars);
    linen_module_release(nosc);
}

static void test_batch_norm(void) {
    linen_module *bn = make(&linen_BatchNorm, LX_NO_CALL);
    lx_array *x = arr(2, (int64_t[]){4, 2}, (float[]){1, 10, 2, 20, 3, 30, 6, 40});
    lx_tree *vars;
    lx_call train = {1, (lx_value[]){lx_array_v(x)}, 1, (lx_kwarg[]){LX_KW_BOOL("use_running_average", false)}};
    CHECK(linen_init(bn, LINEN_KEY(lx_key_from_seed(0)), &train, NULL, &vars) == LX_OK);
    /* init does not update the statistics; the order is batch_stats mean, var, then params */
    CHECK_STR(lx_tree_key(vars, 0), "batch_stats");
    CHECK(close_to(leaf(vars, "batch_stats/mean"), (double[]){0, 0}, 2, 0));
    CHECK(close_to(leaf(vars, "batch_stats/var"), (double[]){1, 1}, 2, 0));
    CHECK(leaf(vars, "params/scale") && leaf(vars, "params/bias"));
    /* training step with mutable batch_stats: batch mean (3, 25), var (3.5, 125) */
    linen_opts mut = {.mutable = LINEN_MUTABLE("batch_stats"), .mutable_given = true};
    lx_value out;
    lx_tree *upd = NULL;
    CHECK(linen_apply(bn, vars, LINEN_NO_RNGS, &train, &mut, &out, &upd) == LX_OK);
    CHECK(upd && lx_tree_len(upd) == 1);
    float m = 0.99f, m1 = (float)(1.0 - 0.99);
    CHECK(close_to(leaf(upd, "batch_stats/mean"), (double[]){m * 0.0f + m1 * 3.0f, m * 0.0f + m1 * 25.0f}, 2, 1e-6));
    CHECK(close_to(leaf(upd, "batch_stats/var"), (double[]){m * 1.0f + m1 * 3.5f, m * 1.0f + m1 * 125.0f}, 2, 1e-6));
    double want[8];
    double xs[4][2] = {{1, 10}, {2, 20}, {3, 30}, {6, 40}}, mu[2] = {3, 25}, var[2] = {3.5, 125};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) want[i * 2 + j] = (xs[i][j] - mu[j]) / sqrt(var[j] + 1e-5);
    CHECK(out.kind == LX_V_ARRAY && close_to(out.u.array, want, 8, 1e-5));
    lx_value_free(&out);
    /* training without mutable batch_stats is an error, as in Flax */
    CHECK_FAILS(linen_apply(bn, vars, LINEN_NO_RNGS, &train, NULL, &out, NULL), LX_ERR_IMMUTABLE,
                "Cannot update variable \"mean\" in \"/\" because collection \"batch_stats\" is immutable.");
    /* evaluation reads the running statistics */
    lx_tree *merged = NULL;
    CHECK(lx_tree_merge(vars, upd, &merged) == LX_OK);
    lx_call eval = {1, (lx_value[]){lx_array_v(x)}, 1, (lx_kwarg[]){LX_KW_BOOL("use_running_average", true)}};
    CHECK(linen_apply(bn, merged, LINEN_NO_RNGS, &eval, NULL, &out, NULL) == LX_OK);
    double rm[2] = {m1 * 3.0f, m1 * 25.0f}, rv[2] = {m + m1 * 3.5f, m + m1 * 125.0f};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) want[i * 2 + j] = (xs[i][j] - rm[j]) / sqrt(rv[j] + 1e-5);
    CHECK(out.kind == LX_V_ARRAY && close_to(out.u.array, want, 8, 1e-5));
    lx_value_free(&out);
    CHECK_FAILS(linen_apply(bn, merged, LINEN_NO_RNGS, A(x), NULL, &out, NULL), LX_ERR_INVALID_ARGUMENT,
                "Parameter \"use_running_average\" must be passed to the constructor or at call time.");
    linen_module *bn2 = make(&linen_BatchNorm, LX_CALL_KWARGS(LX_KW_BOOL("use_running_average", true)));
    CHECK_FAILS(linen_apply(bn2, merged, LINEN_NO_RNGS, &eval, NULL, &out, NULL), LX_ERR_INVALID_ARGUMENT,
                "was passed to the constructor and at call time. Should be passed just once.");
    linen_module_release(bn2);
    lx_tree_release(merged);
    lx_tree_release(upd);
    lx_tree_release(vars);
    linen_module_release(bn);
}

/* ---------------------------------------------------------------- Dropout */
static lx_status drop_twice_setup(linen_scope *s) {
    linen_module *d = NULL;
    lx_call c = LX_CALL_ARGS(lx_float_v(0.5));
    LX_TRY(linen_module_new(&linen_Dropout, &c, &d));
    lx_status st = linen_setup_child(s, "drop", d);
    linen_module_release(d);
    return st;
}
static lx_status drop_twice_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_call cc = {1, (lx_value[]){lx_array_v(x)}, 1, (lx_kwarg[]){LX_KW_BOOL("deterministic", false)}};
    lx_value a, b;
    LX_TRY(linen_call_attr(s, "drop", NULL, &cc, &a));
    lx_status st = linen_call_attr(s, "drop", NULL, &cc, &b);
    if (st == LX_OK) {
        lx_array *both[2] = {a.u.array, b.u.array};
        st = linen_return_array(out, lx_stack(2, both, 0));
        lx_value_free(&b);
    }
    lx_value_free(&a);
    return st;
}
static const linen_method DROP_TWICE_METHODS[] = {LINEN_METHOD("__call__", drop_twice_call)};
static const linen_type DROP_TWICE = {.name = "DropTwice", .methods = DROP_TWICE_METHODS, .nmethods = LX_COUNT(DROP_TWICE_METHODS), .setup = drop_twice_setup};

static bool masked_like(const lx_array *y, const lx_array *x, const uint8_t *mask, int64_t mstride_rows, float keep) {
    if (!y || y->size != x->size) return false;
    int64_t cols = x->shape[x->ndim - 1];
    for (int64_t i = 0; i < x->size; i++) {
        int64_t mi = mstride_rows ? i : i % cols;
        float want = mask[mi] ? lx_f32(x)[i] / keep : 0.0f;
        if (lx_f32(y)[i] != want) return false;
    }
    return true;
}

static void test_dropout(void) {
    float xv[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    lx_array *x = arr(2, (int64_t[]){2, 5}, xv);
    linen_module *d = make(&linen_Dropout, LX_CALL_ARGS(lx_float_v(0.5)));
    lx_tree *empty = lx_tree_new();
    lx_call train = {1, (lx_value[]){lx_array_v(x)}, 1, (lx_kwarg[]){LX_KW_BOOL("deterministic", false)}};
    lx_call eval = {1, (lx_value[]){lx_array_v(x)}, 1, (lx_kwarg[]){LX_KW_BOOL("deterministic", true)}};
    lx_value out;
    CHECK(linen_apply(d, empty, LINEN_RNGS({"dropout", lx_key_from_seed(3)}), &train, NULL, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && masked_like(out.u.array, x, LF_DROPOUT_MASK, 1, 0.5f));
    lx_value_free(&out);
    /* another key, another mask (rate 0.3: keep 0.7) */
    linen_module *d3 = make(&linen_Dropout, LX_CALL_KWARGS(LX_KW_FLOAT("rate", 0.3)));
    CHECK(linen_apply(d3, empty, LINEN_RNGS({"dropout", lx_key_from_seed(4)}), &train, NULL, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && masked_like(out.u.array, x, LF_DROPOUT_MASK_K4, 1, 0.7f));
    CHECK(memcmp(LF_DROPOUT_MASK, LF_DROPOUT_MASK_K4, 10) != 0);
    lx_value_free(&out);
    linen_module_release(d3);
    /* deterministic: the input itself, no rng needed */
    CHECK(linen_apply(d, empty, LINEN_NO_RNGS, &eval, NULL, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && out.u.array == x);
    lx_value_free(&out);
    /* broadcast_dims=(0,): one mask row shared by both rows */
    int64_t b0[1] = {0};
    linen_module *db = make(&linen_Dropout, LX_CALL_KWARGS(LX_KW_FLOAT("rate", 0.5), LX_KW("broadcast_dims", lx_ints_v(1, b0))));
    CHECK(linen_apply(db, empty, LINEN_RNGS({"dropout", lx_key_from_seed(3)}), &train, NULL, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && masked_like(out.u.array, x, LF_DROPOUT_MASK_BCAST, 0, 0.5f));
    lx_value_free(&out);
    linen_module_release(db);
    /* rate 0 and rate 1 draw nothing */
    linen_module *d0 = make(&linen_Dropout, LX_CALL_ARGS(lx_float_v(0.0)));
    CHECK(linen_apply(d0, empty, LINEN_NO_RNGS, &train, NULL, &out, NULL) == LX_OK && out.u.array == x);
    lx_value_free(&out);
    linen_module *d1 = make(&linen_Dropout, LX_CALL_ARGS(lx_float_v(1.0)));
    CHECK(linen_apply(d1, empty, LINEN_NO_RNGS, &train, NULL, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && close_to(out.u.array, (double[10]){0}, 10, 0));
    lx_value_free(&out);
    /* rate 1 is jnp.zeros_like(inputs): +0.0 everywhere, whatever the input (NaN, inf, negative) */
    float special[6] = {NAN, INFINITY, -INFINITY, -3.0f, -0.0f, 2.0f};
    lx_array *xs = arr(2, (int64_t[]){2, 3}, special);
    lx_call train_s = {1, (lx_value[]){lx_array_v(xs)}, 1, (lx_kwarg[]){LX_KW_BOOL("deterministic", false)}};
    CHECK(linen_apply(d1, empty, LINEN_NO_RNGS, &train_s, NULL, &out, NULL) == LX_OK);
    CHECK(out.kind == LX_V_ARRAY && lx_shape_eq(out.u.array, 2, (int64_t[]){2, 3}) && out.u.array->dtype == LX_F32);
    for (int i = 0; out.kind == LX_V_ARRAY && i < 6; i++) {
        float z = lx_f32(out.u.array)[i];
        CHECK(z == 0.0f && !signbit(z));
    }
    lx_value_free(&out);
    linen_module_release(d0);
    linen_module_release(d1);
    /* errors: no stream, no deterministic */
    CHECK_FAILS(linen_apply(d, empty, LINEN_NO_RNGS, &train, NULL, &out, NULL), LX_ERR_RNG, "None needs PRNG for \"dropout\"");
    CHECK_FAILS(linen_apply(d, empty, LINEN_NO_RNGS, A(x), NULL, &out, NULL), LX_ERR_INVALID_ARGUMENT,
                "Parameter \"deterministic\" must be passed to the constructor or at call time.");
    /* one scope called twice: counts 1 and 2 of the child 'drop' */
    linen_module *dt = make(&DROP_TWICE, LX_NO_CALL);
    CHECK(linen_apply(dt, empty, LINEN_RNGS({"dropout", lx_key_from_seed(3)}), A(x), NULL, &out, NULL) == LX_OK);
    if (out.kind == LX_V_ARRAY) {
        lx_array *first = lx_slice(out.u.array, 1, (lx_range[]){LX_RANGE(0, 1)});
        lx_array *second = lx_slice(out.u.array, 1, (lx_range[]){LX_RANGE(1, 2)});
        CHECK(masked_like(first, x, LF_DROPOUT_MASK_DROP_1, 1, 0.5f));
        CHECK(masked_like(second, x, LF_DROPOUT_MASK_DROP_2, 1, 0.5f));
    }
    lx_value_free(&out);
    CHECK_FAILS(linen_apply(dt, empty, LINEN_NO_RNGS, A(x), NULL, &out, NULL), LX_ERR_RNG, "drop needs PRNG for \"dropout\"");
    linen_module_release(dt);
    /* the op alone */
    CHECK(lx_dropout(NULL, 0.5, lx_key_from_seed(0), 0, NULL, false) == NULL);
    CHECK_NULL_FAILS(lx_dropout(x, 1.5, lx_key_from_seed(0), 0, NULL, false), LX_ERR_INVALID_ARGUMENT,
                     "rate must be in [0, 1]");
    /* an axis out of range for the shape is LX_ERR_SHAPE, as in every op (softmax, sum, dot_general) */
    CHECK_NULL_FAILS(lx_dropout(x, 0.5, lx_key_from_seed(0), 1, (int64_t[]){2}, false), LX_ERR_SHAPE,
                     "broadcast dim 2 is out of range");
    CHECK_NULL_FAILS(lx_dropout_mask(lx_key_from_seed(0), 0.5, 2, (int64_t[]){2, 5}, 1, (int64_t[]){-3}), LX_ERR_SHAPE,
                     "broadcast dim -3 is out of range for shape (2, 5)");
    CHECK_NULL_FAILS(lx_dropout_mask(lx_key_from_seed(0), 0.5, 2, (int64_t[]){2, 5}, 1, NULL), LX_ERR_INVALID_ARGUMENT,
                     "invalid broadcast_dims");
    CHECK_NULL_FAILS(lx_dropout_mask(lx_key_from_seed(0), -0.1, 2, (int64_t[]){2, 5}, 0, NULL), LX_ERR_INVALID_ARGUMENT,
                     "rate must be in [0, 1]");
    lx_array *xi = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){2, 5}));
    CHECK_NULL_FAILS(lx_dropout(xi, 0.5, lx_key_from_seed(0), 0, NULL, false), LX_ERR_DTYPE, "dropout: expected float32, got int32");
    /* a NULL x with nothing pending is reported as itself (status.h) */
    CHECK_NULL_FAILS(lx_dropout(NULL, 0.5, lx_key_from_seed(0), 0, NULL, false), LX_ERR_FAILED_INPUT, "dropout");
    lx_array *ab = lx_autorelease(lx_array_abstract(LX_F32, 2, (int64_t[]){2, 5}));
    lx_array *ay = lx_dropout(ab, 0.5, lx_key_from_seed(0), 0, NULL, false);
    CHECK(ay && lx_is_abstract(ay) && lx_same_shape(ay, ab));
    lx_array *mk = lx_dropout_mask(lx_key_from_seed(0), 0.5, 2, (int64_t[]){2, 5}, 1, (int64_t[]){-1});
    CHECK(mk && mk->dtype == LX_BOOL && lx_shape_eq(mk, 2, (int64_t[]){2, 1}));
    lx_tree_release(empty);
    linen_module_release(d);
}

/* ---------------------------------------------------------------- attention */
static void attention_ref(const lx_tree *p, const float *x, int L, int F, int H, int D, const bool *mask, double *out) {
    /* projections */
    double q[16][16], k[16][16], v[16][16], o[16][16];
    const char *names[3] = {"params/query", "params/key", "params/value"};
    double (*dst[3])[16] = {q, k, v};
    char path[64];
    for (int t = 0; t < 3; t++) {
        snprintf(path, sizeof path, "%s/kernel", names[t]);
        const float *W = lx_f32(leaf(p, path));
        snprintf(path, sizeof path, "%s/bias", names[t]);
        const float *B = lx_f32(leaf(p, path));
        for (int l = 0; l < L; l++)
            for (int j = 0; j < H * D; j++) {
                double acc = B[j];
                for (int i = 0; i < F; i++) acc += x[l * F + i] * (double)W[i * H * D + j];
                dst[t][l][j] = acc;
            }
    }
    for (int h = 0; h < H; h++)
        for (int a = 0; a < L; a++) {
            double w[16], mx = -1e300, sum = 0;
            for (int b = 0; b < L; b++) {
                double s = 0;
                for (int d = 0; d < D; d++) s += q[a][h * D + d] * k[b][h * D + d];
                s /= sqrt((double)D);
                if (mask && !mask[a * L + b]) s = -3.4028234663852886e38;
                w[b] = s;
                if (s > mx) mx = s;
            }
            for (int b = 0; b < L; b++) sum += (w[b] = exp(w[b] - mx));
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int b = 0; b < L; b++) acc += w[b] / sum * v[b][h * D + d];
                o[a][h * D + d] = acc;
            }
        }
    const float *W = lx_f32(leaf(p, "params/out/kernel")), *B = lx_f32(leaf(p, "params/out/bias"));
    for (int a = 0; a < L; a++)
        for (int f = 0; f < F; f++) {
            double acc = B[f];
            for (int j = 0; j < H * D; j++) acc += o[a][j] * W[j * F + f];
            out[a * F + f] = acc;
        }
}

static void test_attention(void) {
    linen_module *m = make(&linen_MultiHeadDotProductAttention,
                           LX_CALL_KWARGS(LX_KW_INT("num_heads", 2), LX_KW_INT("qkv_features", 4)));
    float xv[12] = {0.1f, -0.2f, 0.3f, 0.4f, 1, 0, -1, 0.5f, 0.2f, 0.2f, -0.3f, 0.9f};
    lx_array *x = arr(3, (int64_t[]){1, 3, 4}, xv);
    lx_tree *vars;
    lx_array *y = init_apply(m, lx_key_from_seed(0), x, &vars);
    CHECK(same_bits(leaf(vars, "params/query/kernel"), LF_MHA_QUERY_KERNEL, 16));
    CHECK(same_bits(leaf(vars, "params/key/kernel"), LF_MHA_KEY_KERNEL, 16));
    CHECK(same_bits(leaf(vars, "params/value/kernel"), LF_MHA_VALUE_KERNEL, 16));
    CHECK(same_bits(leaf(vars, "params/out/kernel"), LF_MHA_OUT_KERNEL, 16));
    CHECK(lx_shape_eq(leaf(vars, "params/query/kernel"), 3, (int64_t[]){4, 2, 2}));
    CHECK(lx_shape_eq(leaf(vars, "params/query/bias"), 2, (int64_t[]){2, 2}));
    CHECK(lx_shape_eq(leaf(vars, "params/out/kernel"), 3, (int64_t[]){2, 2, 4}));
    CHECK(lx_shape_eq(leaf(vars, "params/out/bias"), 1, (int64_t[]){4}));
    const lx_tree *params = lx_tree_get(vars, "params")->u.tree;
    CHECK(lx_tree_len(params) == 4 && strcmp(lx_tree_key(params, 0), "query") == 0 && strcmp(lx_tree_key(params, 3), "out") == 0);
    double want[12];
    attention_ref(vars, xv, 3, 4, 2, 2, NULL, want);
    CHECK(y && lx_shape_eq(y, 3, (int64_t[]){1, 3, 4}) && close_to(y, want, 12, 1e-5));
    /* causal mask */
    lx_array *causal = lx_make_causal_mask(lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){1, 3})));
    CHECK(causal && lx_shape_eq(causal, 4, (int64_t[]){1, 1, 3, 3}));
    lx_call cm = {1, (lx_value[]){lx_array_v(x)}, 1, (lx_kwarg[]){LX_KW("mask", lx_array_v(causal))}};
    lx_value out;
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, &cm, NULL, &out, NULL) == LX_OK);
    bool tri[9] = {1, 0, 0, 1, 1, 0, 1, 1, 1};
    attention_ref(vars, xv, 3, 4, 2, 2, tri, want);
    CHECK(out.kind == LX_V_ARRAY && close_to(out.u.array, want, 12, 1e-5));
    lx_value_free(&out);
    /* make_attention_mask: padding positions */
    lx_array *tok = lx_autorelease(lx_array_from_data(LX_I32, 2, (int64_t[]){1, 3}, (int32_t[]){5, 7, 0}));
    lx_array *pm = linen_make_attention_mask(tok, tok);
    CHECK(pm && pm->dtype == LX_BOOL && lx_shape_eq(pm, 4, (int64_t[]){1, 1, 3, 3}));
    if (pm) CHECK(lx_bool(pm)[0] == 1 && lx_bool(pm)[2] == 0 && lx_bool(pm)[8] == 0 && lx_bool(pm)[4] == 1);
    /* sow_weights */
    lx_call sw = {1, (lx_value[]){lx_array_v(x)}, 1, (lx_kwarg[]){LX_KW_BOOL("sow_weights", true)}};
    linen_opts inter = {.mutable = LINEN_MUTABLE("intermediates"), .mutable_given = true};
    lx_tree *mut = NULL;
    CHECK(linen_apply(m, vars, LINEN_NO_RNGS, &sw, &inter, &out, &mut) == LX_OK);
    lx_array *aw = leaf(mut, "intermediates/attention_weights/0");
    CHECK(aw && lx_shape_eq(aw, 4, (int64_t[]){1, 2, 3, 3}));
    CHECK(out.kind == LX_V_ARRAY && close_to(out.u.array, (attention_ref(vars, xv, 3, 4, 2, 2, NULL, want), want), 12, 1e-5));
    lx_value_free(&out);
    lx_tree_release(mut);
    lx_tree_release(vars);
    linen_module_release(m);

    linen_module *bad = make(&linen_MultiHeadDotProductAttention, LX_CALL_KWARGS(LX_KW_INT("num_heads", 3)));
    CHECK_FAILS(linen_init(bad, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &vars), LX_ERR_INVALID_ARGUMENT,
                "Memory dimension (4) must be divisible by number of heads (3).");
    linen_module_release(bad);
    /* dropout in attention needs deterministic, and a dropout stream when training */
    linen_module *md = make(&linen_MultiHeadDotProductAttention,
                            LX_CALL_KWARGS(LX_KW_INT("num_heads", 2), LX_KW_FLOAT("dropout_rate", 0.5)));
    CHECK_FAILS(linen_init(md, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &vars), LX_ERR_INVALID_ARGUMENT,
                "Parameter \"deterministic\" must be passed");
    lx_call tr = {1, (lx_value[]){lx_array_v(x)}, 1, (lx_kwarg[]){LX_KW_BOOL("deterministic", false)}};
    CHECK(linen_init(md, LINEN_RNGS({"params", lx_key_from_seed(0)}, {"dropout", lx_key_from_seed(1)}), &tr, NULL, &vars) == LX_OK);
    lx_tree_release(vars);
    linen_module_release(md);

    /* the self-attention helper and normalize_qk */
    linen_module *nq = make(&linen_MultiHeadDotProductAttention,
                            LX_CALL_KWARGS(LX_KW_INT("num_heads", 2), LX_KW_BOOL("normalize_qk", true), LX_KW_BOOL("use_bias", false)));
    CHECK(linen_init(nq, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &vars) == LX_OK);
    CHECK(leaf(vars, "params/query_ln/scale") && lx_tree_find(vars, "params/query_ln/bias") == NULL);
    CHECK(leaf(vars, "params/key_ln/scale") && lx_tree_find(vars, "params/query/bias") == NULL);
    lx_tree_release(vars);
    linen_module_release(nq);
}

static lx_array *attn_user(linen_scope *s, lx_array *x) { return linen_self_attention(s, NULL, 2, x, NULL, true); }
static lx_array *norm_user(linen_scope *s, lx_array *x) {
    lx_array *ids = lx_cast(lx_gt(x, lx_scalar(0.0f)), LX_I32);
    lx_array *e = linen_embed(s, NULL, 2, 4, ids); /* (2, 4, 4) */
    lx_array *h = linen_layer_norm(s, NULL, linen_rms_norm(s, NULL, x));
    h = linen_batch_norm(s, NULL, true, linen_dropout(s, NULL, 0.5, true, h));
    h = linen_conv(s, NULL, 4, 1, (int64_t[]){1}, h);
    h = linen_dense_general(s, NULL, 1, (int64_t[]){4}, 0, NULL, h);
    return lx_add(h, lx_mean(e, LX_AXES(1), false));
}

static void test_helpers_names(void) {
    static const linen_method AM[] = {LINEN_ARRAY_METHOD("__call__", attn_user)};
    static const linen_type AT = {.name = "AttnUser", .methods = AM, .nmethods = LX_COUNT(AM)};
    linen_module *m = make(&AT, LX_NO_CALL);
    lx_tree *vars;
    CHECK(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), A(ones(3, 4)), NULL, &vars) == LX_OK);
    CHECK(leaf(vars, "params/MultiHeadDotProductAttention_0/query/kernel") != NULL);
    lx_tree_release(vars);
    linen_module_release(m);
    static const linen_method NM[] = {LINEN_ARRAY_METHOD("__call__", norm_user)};
    static const linen_type NT = {.name = "NormUser", .methods = NM, .nmethods = LX_COUNT(NM)};
    m = make(&NT, LX_NO_CALL);
    lx_value out;
    CHECK(linen_init_with_output(m, LINEN_KEY(lx_key_from_seed(0)), A(ones(2, 4)), NULL, &out, &vars) == LX_OK);
    const char *want[] = {"params/Embed_0/embedding", "params/RMSNorm_0/scale", "params/LayerNorm_0/scale",
                          "batch_stats/BatchNorm_0/mean", "params/BatchNorm_0/scale", "params/Conv_0/kernel",
                          "params/DenseGeneral_0/kernel"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        LX_TEST_REPORT_(lx_tree_find(vars, want[i]) != NULL, "missing %s", want[i]);
    CHECK(out.kind == LX_V_ARRAY && lx_shape_eq(out.u.array, 2, (int64_t[]){2, 4}));
    lx_value_free(&out);
    lx_tree_release(vars);
    linen_module_release(m);
}

/* ---------------------------------------------------------------- Sequential, activations */
static void test_sequential(void) {
    linen_module *a = make(&linen_Dense, LX_CALL_ARGS(lx_int_v(8))), *b = make(&linen_Dense, LX_CALL_ARGS(lx_int_v(2)));
    linen_module *relu = make(&linen_relu, LX_NO_CALL);
    linen_module *seq = NULL;
    CHECK(linen_sequential_new(2, (linen_module *[]){a, b}, &seq) == LX_OK);
    lx_tree *vars;
    lx_array *x = arr(2, (int64_t[]){1, 4}, (float[]){1, -1, 0.5f, 2});
    lx_array *y = init_apply(seq, lx_key_from_seed(0), x, &vars);
    CHECK(same_bits(leaf(vars, "params/layers_0/kernel"), LF_SEQ_L0_KERNEL, 32));
    CHECK(same_bits(leaf(vars, "params/layers_1/kernel"), LF_SEQ_L1_KERNEL, 16));
    CHECK(y && lx_shape_eq(y, 2, (int64_t[]){1, 2}));
    lx_tree_release(vars);
    linen_module_release(seq);
    CHECK(linen_sequential_new(3, (linen_module *[]){a, relu, b}, &seq) == LX_OK);
    y = init_apply(seq, lx_key_from_seed(0), x, &vars);
    lx_array *k0 = leaf(vars, "params/layers_0/kernel"), *k2 = leaf(vars, "params/layers_2/kernel");
    CHECK(same_bits(k0, LF_SEQ_L0_KERNEL, 32) && same_bits(k2, LF_SEQ_RELU_L2_KERNEL, 16));
    CHECK(lx_tree_find(vars, "params/layers_1") == NULL);
    if (k0 && k2) {
        double h[8], want[2] = {0, 0};
        for (int j = 0; j < 8; j++) {
            h[j] = 0;
            for (int i = 0; i < 4; i++) h[j] += lx_f32(x)[i] * (double)lx_f32(k0)[i * 8 + j];
            h[j] = h[j] > 0 ? h[j] : 0;
        }
        for (int o = 0; o < 2; o++)
            for (int j = 0; j < 8; j++) want[o] += h[j] * lx_f32(k2)[j * 2 + o];
        CHECK(close_to(y, want, 2, 1e-5));
    }
    lx_tree_release(vars);
    /* a clone shares its layers */
    linen_module *c = NULL;
    CHECK(linen_module_clone(seq, NULL, &c) == LX_OK);
    linen_module_release(c);
    linen_module_release(seq);
    CHECK(linen_sequential_new(0, NULL, &seq) == LX_OK);
    lx_value out;
    CHECK_FAILS(linen_init_with_output(seq, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &out, &vars), LX_ERR_INVALID_ARGUMENT,
                "Empty Sequential module None.");
    linen_module_release(seq);
    lx_call notmod = LX_CALL_ARGS(lx_int_v(3));
    CHECK_FAILS(linen_module_new(&linen_Sequential, &notmod, &seq), LX_ERR_TYPE, "layer 0 must be a Module");
    linen_module_release(a);
    linen_module_release(b);
    linen_module_release(relu);
}

static void test_activations(void) {
    lx_array *x = arr(1, (int64_t[]){4}, (float[]){-2, -0.5f, 3, 7});
    CHECK(close_to(linen_relu6_fn(x), (double[]){0, 0, 3, 6}, 4, 0));
    CHECK(close_to(linen_leaky_relu_fn(x, 0.1f), (double[]){-0.2f, -0.05f, 3, 7}, 4, 1e-7));
    const char *names[] = {"relu", "relu6", "gelu", "silu", "swish", "sigmoid", "tanh", "softplus", "leaky_relu",
                           "softmax", "log_softmax", "Dense", "MultiHeadAttention", "Sequential"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        LX_TEST_REPORT_(linen_layer_type(names[i]) != NULL, "linen_layer_type(%s)", names[i]);
    CHECK(linen_layer_type("Dense2") == NULL);
    /* a function module with a setting, used through Sequential */
    linen_module *lr = make(&linen_leaky_relu, LX_CALL_KWARGS(LX_KW_FLOAT("negative_slope", 0.5)));
    linen_module *sm = make(&linen_softmax, LX_NO_CALL);
    linen_module *seq = NULL;
    CHECK(linen_sequential_new(2, (linen_module *[]){lr, sm}, &seq) == LX_OK);
    lx_tree *vars;
    lx_array *y = init_apply(seq, lx_key_from_seed(0), arr(2, (int64_t[]){1, 2}, (float[]){-2, 0}), &vars);
    /* leaky: [-1, 0]; softmax: [e^-1, 1] / (1 + e^-1) */
    double e = exp(-1.0);
    CHECK(close_to(y, (double[]){e / (1 + e), 1 / (1 + e)}, 2, 1e-6));
    CHECK(vars && lx_tree_len(vars) == 0);
    lx_tree_release(vars);
    linen_module_release(seq);
    linen_module_release(lr);
    linen_module_release(sm);
}

static void test_memory_flat(void) {
    int64_t before = lx_array_live_count();
    linen_module *m = make(&linen_MultiHeadDotProductAttention, LX_CALL_KWARGS(LX_KW_INT("num_heads", 2)));
    lx_array *x = lx_array_full_f32(3, (int64_t[]){2, 3, 4}, 0.5f);
    lx_tree *vars = NULL;
    CHECK(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), A(x), NULL, &vars) == LX_OK);
    for (int i = 0; i < 3; i++) {
        lx_value out;
        CHECK(linen_apply(m, vars, LINEN_NO_RNGS, A(x), NULL, &out, NULL) == LX_OK);
        lx_value_free(&out);
    }
    lx_tree_release(vars);
    lx_release(x);
    linen_module_release(m);
    CHECK_EQ_INT(lx_array_live_count(), before);
}

int main(void) {
    RUN(test_dense);
    RUN(test_mlp_helpers);
    RUN(test_dense_general);
    RUN(test_partitioned_params);
    RUN(test_conv);
    RUN(test_embed);
    RUN(test_norms);
    RUN(test_batch_norm);
    RUN(test_dropout);
    RUN(test_attention);
    RUN(test_helpers_names);
    RUN(test_sequential);
    RUN(test_activations);
    RUN(test_memory_flat);
    return lx_test_finish();
}
