/* Linen inside NNX (spec/flax-bridge.md §1.4, §1.5, §2.1): bridge_lazy_init, ToNNX, Linen methods
 * by name, rng routing, mutable resolution, write-back, current_linen_module and MaxText's
 * get_layers. Tests named test_W<n>_... port flax/tests/nnx/bridge/wrappers_test.py case W<n>;
 * the get_layers tests port MaxText's tests/unit/nnx_wrappers_test.py.
 *
 * W6 (test_linen_to_nnx_transform: NNX vmap + split_rngs over a ToNNX) is in test_lift_bridge.c.
 * W7 runs under a mesh in Flax; here (no devices to shard over) it checks the sharding metadata,
 * as the issue asks for mesh-dependent cases. */
#include "lx_test.h"

#include "fixtures/bridge_to_nnx_fixtures.h"
#include "linnx/bridge.h"
#include "linnx/linen_layers.h"
#include "linnx/nnx.h"
#include "linnx/nnx_layers.h"
#include "linnx/to_linen.h"
#include "linnx/to_nnx.h"

/* ------------------------------------------------------------------ helpers */

static lx_array *ones(int r, int c) {
    lx_array *a = lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){r, c}));
    for (int i = 0; i < r * c; i++) lx_f32(a)[i] = 1.0f;
    return a;
}

static lx_array *normal(uint32_t seed, int r, int c) {
    return lx_random_normal(lx_key_from_seed(seed), 2, (int64_t[]){r, c}); /* pool-owned */
}

static linen_module *dense(int64_t features, bool use_bias) {
    linen_module *m = NULL;
    lx_call c = LX_CALL_KWARGS(LX_KW_INT("features", features), LX_KW_BOOL("use_bias", use_bias));
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &c, &m), LX_OK);
    return m;
}

static nnx_rngs *rngs_seed(int64_t seed) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(seed, &r), LX_OK);
    return r;
}

/* A Variable attribute of m (or at a path of an attribute tree: "Dense_0/kernel"). */
static lx_variable *var_at(nnx_module *m, const char *path) {
    lx_tree *st = NULL;
    if (nnx_state(m, 0, NULL, &st) != LX_OK) return NULL;
    const lx_value *v = lx_tree_find(st, path);
    lx_variable *out = v && v->kind == LX_V_VARIABLE ? v->u.var : NULL;
    lx_tree_release(st); /* the module still holds the Variable */
    return out;
}

static lx_array *value_at(nnx_module *m, const char *path) {
    lx_variable *v = var_at(m, path);
    return v ? lx_variable_get_value(v) : NULL;
}

/* nnx_call returning an array (pool-owned), NULL on failure. */
static lx_array *call_array(nnx_module *m, const char *method, const lx_call *c) {
    lx_value out;
    if (nnx_call(m, method, c, &out) != LX_OK) return NULL;
    if (out.kind != LX_V_ARRAY) {
        lx_value_free(&out);
        return NULL;
    }
    lx_array *a = lx_autorelease(lx_retain(out.u.array));
    lx_value_free(&out);
    return a;
}

static bool bits_equal(const lx_array *a, const uint32_t *bits, int n) {
    if (!a || a->dtype != LX_F32 || a->size != n) return false;
    return memcmp(a->data, bits, (size_t)n * 4) == 0;
}

static float f32_of(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* The count of stream `name` of an Rngs (or -1). */
static int64_t stream_count(nnx_rngs *r, const char *name) {
    char path[64];
    snprintf(path, sizeof path, "%s/count", name);
    lx_array *c = value_at(nnx_rngs_module(r), path);
    return c ? (int64_t)lx_u32(c)[0] : -1;
}

static lx_key stream_key(nnx_rngs *r, const char *name) {
    char path[64];
    snprintf(path, sizeof path, "%s/key", name);
    lx_array *k = value_at(nnx_rngs_module(r), path);
    lx_key out = {{0, 0}};
    if (k) out = (lx_key){{lx_u32(k)[0], lx_u32(k)[1]}};
    return out;
}

typedef struct {
    int64_t dout;
} dout_config;
static const lx_field DOUT_FIELDS[] = {LX_FIELD_REQUIRED_INT(dout_config, dout)};

static lx_status ret_array(lx_array *y, lx_value *out) {
    if (!y) return lx_last_status();
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}

/* A call with one array positional (an lvalue, so its address can be taken). */
#define ARGS1(x) (&(lx_call){1, (const lx_value[]){lx_array_v(x)}, 0, NULL})
/* A call with positionals and keywords. */
#define CALL(args_, kwargs_) ((lx_call){LX_NARGS_(args_), (args_), LX_NARGS_(kwargs_), (kwargs_)})

static lx_status int_zero_init(lx_key k, void *user, lx_value *leaf) {
    (void)k;
    (void)user;
    lx_array *a = lx_array_new(LX_I32, 0, NULL);
    if (!a) return lx_last_status();
    *leaf = lx_array_v(a);
    return LX_OK;
}

/* ------------------------------------------------------------------ W2 */

static void test_W2_linen_to_nnx(void) {
    linen_module *d = dense(64, true);
    nnx_rngs *r = rngs_seed(0);
    nnx_module *model = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(d, r, NULL, &model), LX_OK);
    CHECK(bridge_is_to_nnx(model));
    CHECK_STR(model->type->name, "ToNNX");
    lx_array *x = ones(1, 32);
    CHECK_EQ_INT(bridge_lazy_init(model, NULL, ARGS1(x)), LX_OK);
    lx_array *y = call_array(model, NULL, ARGS1(x));
    CHECK(y && y->ndim == 2 && y->shape[0] == 1 && y->shape[1] == 64);

    lx_value kv;
    CHECK_EQ_INT(nnx_getattr(model, "kernel", &kv), LX_OK);
    CHECK(kv.kind == LX_V_VARIABLE && lx_variable_type(kv.u.var) == &lx_Param);
    /* Flax's numbers: fork, one draw renamed to params, Dense's make_rng at the root. */
    CHECK(bits_equal(lx_variable_get_value(kv.u.var), BT_W2_KERNEL, 32 * 64));

    /* The output equals plain Linen apply with the same variables, exactly. */
    lx_tree *vars = lx_tree_new();
    CHECK_EQ_INT(lx_tree_set_path(vars, "params/kernel", lx_array_v(value_at(model, "kernel"))), LX_OK);
    CHECK_EQ_INT(lx_tree_set_path(vars, "params/bias", lx_array_v(value_at(model, "bias"))), LX_OK);
    lx_value direct;
    CHECK_EQ_INT(linen_apply(d, vars, LINEN_NO_RNGS, ARGS1(x), NULL, &direct, NULL), LX_OK);
    CHECK(direct.kind == LX_V_ARRAY && lx_array_equal(direct.u.array, y));
    lx_value_free(&direct);
    lx_tree_release(vars);
    if (strcmp(lx_sgemm_kernel(), "portable") != 0) CHECK(bits_equal(y, BT_W2_Y, 64));
    /* every kernel (the portable one rounds each product): within twice the float summation
     * bound, 33 u (sum_i |x_i k_ij| + |b_j|) for 32 products and the bias, of Flax's numbers
     * (both sums are within one bound of the exact one) */
    lx_array *kk = value_at(model, "kernel"), *kb = value_at(model, "bias");
    CHECK(kk && kb && kk->size == 32 * 64 && kb->size == 64);
    for (int j = 0; y && kk && kb && kk->size == 32 * 64 && kb->size == 64 && j < 64; j++) {
        double s = fabs(lx_f32(kb)[j]);
        for (int i = 0; i < 32; i++) s += fabs(lx_f32(kk)[i * 64 + j]);
        CHECK_NEAR(lx_f32(y)[j], f32_of(BT_W2_Y[j]), 2 * 33 * 0x1p-24 * s);
    }

    /* Rngs: the caller's stream advanced once (the fork); the wrapper's twice (init + call). */
    CHECK_EQ_INT(stream_count(r, "default"), 1);
    nnx_rngs *own = bridge_to_nnx_rngs(model);
    CHECK(own && own != r);
    CHECK_EQ_INT(stream_count(own, "default"), 2);
    CHECK_EQ_U32(stream_key(own, "default").k[0], BT_FORKED_KEY[0]);
    CHECK_EQ_U32(stream_key(own, "default").k[1], BT_FORKED_KEY[1]);
    /* to_nnx__module reads back the Linen module. */
    lx_value mv;
    CHECK_EQ_INT(nnx_getattr(model, "to_nnx__module", &mv), LX_OK);
    CHECK(mv.kind == LX_V_PTR && mv.u.ptr.p == d && bridge_to_nnx_linen_module(model) == d);
    nnx_module_release(model);
    nnx_rngs_release(r);
    linen_module_release(d);
}

/* The worked example with the exact Flax numbers: seed 0, x = [1, 2, 3, 4], Dense(3). */
static void test_linen_inside_nnx_flax_numbers(void) {
    linen_module *d = dense(3, true);
    nnx_rngs *r = rngs_seed(0);
    nnx_module *model = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(d, r, NULL, &model), LX_OK);
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){1, 4}, (float[]){1, 2, 3, 4}));
    CHECK_EQ_INT(bridge_lazy_init(model, NULL, ARGS1(x)), LX_OK);
    CHECK(bits_equal(value_at(model, "kernel"), BT_KERNEL, 12));
    lx_array *b = value_at(model, "bias");
    CHECK(b && b->size == 3 && lx_f32(b)[0] == 0.0f && lx_f32(b)[2] == 0.0f);
    lx_array *y = call_array(model, NULL, ARGS1(x));
    CHECK(y && y->size == 3);
    /* Flax accumulates x @ kernel with fused multiply-adds (XLA:CPU); so do linnx's AVX kernels.
     * The portable kernel rounds each product: allow it one ulp-scale difference. */
    if (y && strcmp(lx_sgemm_kernel(), "portable") != 0) CHECK(bits_equal(y, BT_Y, 3));
    for (int i = 0; y && i < 3; i++) CHECK_NEAR(lx_f32(y)[i], f32_of(BT_Y[i]), 1e-6);
    nnx_module_release(model);
    nnx_rngs_release(r);
    linen_module_release(d);
}

/* ------------------------------------------------------------------ W3 */

typedef struct {
    nnx_module base;
    dout_config cfg;
    nnx_module *nn_dense1, *batchnorm, *rngs;
    lx_variable *b;
} nnx_outer;

static lx_status outer_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    nnx_outer *self = (nnx_outer *)m;
    linen_module *d = NULL, *bn = NULL;
    lx_call dc = LX_CALL_KWARGS(LX_KW_INT("features", self->cfg.dout), LX_KW_BOOL("use_bias", false));
    lx_call bc = LX_CALL_KWARGS(LX_KW_BOOL("use_running_average", true));
    lx_status s = linen_module_new(&linen_Dense, &dc, &d);
    if (s == LX_OK) s = bridge_to_nnx_new(d, rngs, NULL, &self->nn_dense1);
    lx_key k;
    if (s == LX_OK) s = nnx_rngs_draw(rngs, "params", &k);
    if (s == LX_OK) {
        lx_array *u = lx_random_uniform(k, 2, (int64_t[]){1, self->cfg.dout}, 0.0f, 1.0f); /* pool-owned */
        s = u ? lx_variable_new(&lx_Param, u, &self->b) : lx_last_status();
    }
    if (s == LX_OK) s = linen_module_new(&linen_BatchNorm, &bc, &bn);
    if (s == LX_OK) s = bridge_to_nnx_new(bn, rngs, NULL, &self->batchnorm);
    if (s == LX_OK) self->rngs = nnx_module_retain(nnx_rngs_module(rngs));
    linen_module_release(d);
    linen_module_release(bn);
    return s;
}

static lx_status outer_call(nnx_module *m, const lx_call *c, lx_value *out) {
    nnx_outer *self = (nnx_outer *)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    x = lx_add(nnx_call_array(self->nn_dense1, x), lx_variable_get_value(self->b));
    return ret_array(nnx_call_array(self->batchnorm, x), out);
}

static const nnx_field OUTER_FIELDS[] = {NNX_CHILD(nnx_outer, nn_dense1), NNX_VAR(nnx_outer, b),
                                         NNX_CHILD(nnx_outer, batchnorm), NNX_CHILD(nnx_outer, rngs)};
static const nnx_method OUTER_METHODS[] = {NNX_METHOD("__call__", outer_call)};
static const nnx_type NNX_OUTER = {
    .name = "NNXOuter", .size = sizeof(nnx_outer), .fields = OUTER_FIELDS, .nfields = LX_COUNT(OUTER_FIELDS),
    .config = DOUT_FIELDS, .nconfig = LX_COUNT(DOUT_FIELDS), .config_offset = offsetof(nnx_outer, cfg),
    .methods = OUTER_METHODS, .nmethods = LX_COUNT(OUTER_METHODS), .init = outer_init,
};

static void test_W3_linen_to_nnx_submodule(void) {
    lx_array *x = normal(0, 2, 4);
    nnx_rngs *r = rngs_seed(0);
    nnx_module *model = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(3));
    CHECK_EQ_INT(nnx_module_new(&NNX_OUTER, &c, r, &model), LX_OK);
    nnx_graphdef *before = NULL, *full = NULL, *after = NULL;
    lx_tree *state = NULL;
    CHECK_EQ_INT(nnx_graphdef_of(model, &before), LX_OK);
    CHECK_EQ_INT(bridge_lazy_init(model, NULL, ARGS1(x)), LX_OK);
    CHECK(!model->initializing && !((nnx_outer *)model)->nn_dense1->initializing &&
          !((nnx_outer *)model)->batchnorm->initializing);
    CHECK_EQ_INT(nnx_split(model, 0, NULL, &full, &state), LX_OK);
    CHECK(!nnx_graphdef_equal(before, full));
    CHECK(lx_tree_get(state, "nn_dense1") != NULL);
    CHECK(lx_tree_get(state, "batchnorm") != NULL);
    const lx_value *kv = lx_tree_find(state, "nn_dense1/kernel");
    CHECK(kv && kv->kind == LX_V_VARIABLE);
    CHECK(lx_tree_find(state, "nn_dense1/bias") == NULL); /* use_bias=False */
    /* BatchNorm: collection level dropped, params and batch_stats side by side. */
    const lx_value *mean = lx_tree_find(state, "batchnorm/mean"), *scale = lx_tree_find(state, "batchnorm/scale");
    CHECK(mean && mean->kind == LX_V_VARIABLE && lx_variable_type(mean->u.var) == &lx_BatchStat);
    CHECK(scale && scale->kind == LX_V_VARIABLE && lx_variable_type(scale->u.var) == &lx_Param);
    CHECK(lx_tree_find(state, "batchnorm/var") && lx_tree_find(state, "batchnorm/bias"));

    lx_array *y = call_array(model, NULL, ARGS1(x));
    lx_array *k = lx_variable_get_value(kv->u.var);
    lx_array *b = lx_variable_get_value(((nnx_outer *)model)->b);
    lx_array *want = lx_add(lx_matmul(x, k), b);
    CHECK(y && want && y->size == 6);
    for (int i = 0; y && want && i < 6; i++)
        CHECK_NEAR(lx_f32(y)[i], lx_f32(want)[i], 1e-5 * fabs(lx_f32(want)[i]) + 1e-7);
    CHECK_EQ_INT(nnx_graphdef_of(model, &after), LX_OK);
    CHECK(nnx_graphdef_equal(full, after)); /* static data is stable now */
    nnx_graphdef_free(before);
    nnx_graphdef_free(full);
    nnx_graphdef_free(after);
    lx_tree_release(state);
    nnx_module_release(model);
    nnx_rngs_release(r);
}

/* ------------------------------------------------------------------ W4 */

static lx_status foo_dot(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x, *w;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_initializer ln = lx_init_lecun_normal();
    LX_TRY(linen_param(s, "w", &ln, LX_F32, 2, (int64_t[]){4, 3}, &w));
    return linen_return_array(out, lx_matmul(x, w));
}
static lx_status foo_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *b;
    lx_initializer z = lx_init_zeros();
    LX_TRY(linen_param(s, "b", &z, LX_F32, 2, (int64_t[]){1, 3}, &b));
    lx_value d;
    LX_TRY(foo_dot(s, c, &d));
    lx_array *y = lx_add(d.u.array, b);
    lx_value_free(&d);
    return linen_return_array(out, y);
}
static const linen_method FOO_METHODS[] = {LINEN_METHOD("__call__", foo_call), LINEN_METHOD("dot", foo_dot)};
static const linen_type FOO = {.name = "Foo", .methods = FOO_METHODS, .nmethods = LX_COUNT(FOO_METHODS)};

static void test_W4_linen_to_nnx_noncall_method(void) {
    lx_array *x = normal(0, 2, 4);
    linen_module *foo = NULL;
    CHECK_EQ_INT(linen_module_new(&FOO, NULL, &foo), LX_OK);
    nnx_rngs *r = rngs_seed(0);
    nnx_module *model = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(foo, r, NULL, &model), LX_OK);
    CHECK_EQ_INT(bridge_lazy_init(model, "dot", ARGS1(x)), LX_OK);
    /* only dot's parameter exists */
    CHECK(value_at(model, "w") != NULL);
    CHECK_EQ_INT(nnx_attr_count(model), 1);
    lx_array *y = call_array(model, "dot", ARGS1(x));
    lx_array *want = lx_matmul(x, value_at(model, "w"));
    CHECK(y && want && lx_array_equal(y, want));
    /* __call__ was never initialised: Linen's parameter-not-found error. */
    lx_value out;
    CHECK_FAILS(nnx_call(model, NULL, ARGS1(x), &out), LX_ERR_NOT_FOUND,
                "Could not find parameter named \"b\" in scope \"/\".");
    CHECK(out.kind == LX_V_NONE);
    CHECK_EQ_INT(nnx_attr_count(model), 1); /* nothing written on failure */
    lx_value rv;
    CHECK_EQ_INT(nnx_getattr(model, "to_nnx__rngs", &rv), LX_OK);
    nnx_module *rm = nnx_module_from_value(&rv);
    CHECK(rm && rm->type == &nnx_Rngs);
    nnx_module_release(model);
    nnx_rngs_release(r);
    linen_module_release(foo);
}

/* ------------------------------------------------------------------ W5 */

/* Foo with a `counter` variable incremented outside init (Linen fails if it is immutable). */
static lx_status count_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_value v;
    LX_TRY(linen_variable(s, "counter", "count", int_zero_init, NULL, &v));
    lx_array *count = v.u.array;
    if (!linen_is_initializing(s)) {
        lx_array *n = lx_autorelease(lx_array_new(LX_I32, 0, NULL));
        if (!n) return lx_last_status();
        lx_i32(n)[0] = lx_i32(count)[0] + 1;
        lx_value nv = lx_array_v(n);
        LX_TRY(linen_put_variable(s, "counter", "count", &nv));
    }
    const lx_value *x = lx_call_get(c, 0, "x");
    return lx_value_dup(x ? x : &v, out);
}
static const linen_method COUNT_METHODS[] = {LINEN_METHOD("__call__", count_call)};
static const linen_type COUNT = {.name = "Foo", .methods = COUNT_METHODS, .nmethods = LX_COUNT(COUNT_METHODS)};

static void test_W5_linen_to_nnx_mutable(void) {
    linen_module *foo = NULL;
    CHECK_EQ_INT(linen_module_new(&COUNT, NULL, &foo), LX_OK);
    nnx_rngs *r = rngs_seed(0);
    nnx_module *model = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(foo, r, NULL, &model), LX_OK);
    lx_array *x = ones(1, 1);
    CHECK_EQ_INT(bridge_lazy_init(model, NULL, ARGS1(x)), LX_OK);
    lx_variable *count = var_at(model, "count");
    CHECK(count && lx_i32(lx_variable_get_value(count))[0] == 0);
    /* an unknown collection gets a Variable type named after it */
    CHECK(count && strcmp(lx_variable_type(count)->name, "counter") == 0);

    lx_value out;
    lx_call c = CALL(LX_VALUES(lx_array_v(x)), LX_KWARGS(LX_KW_BOOL("mutable", true)));
    CHECK_EQ_INT(nnx_call(model, NULL, &c, &out), LX_OK);
    CHECK(out.kind == LX_V_ARRAY && out.u.array == x); /* the output only, never the updates */
    lx_value_free(&out);
    lx_variable *after = var_at(model, "count");
    CHECK(after && lx_i32(lx_variable_get_value(after))[0] == 1);
    /* linnx keeps the Variable object and sets its value (Flax makes a new Variable). */
    CHECK(after == count);

    /* Without mutable (and outside any Linen module) the collection is immutable. */
    CHECK_FAILS(nnx_call(model, NULL, ARGS1(x), &out), LX_ERR_IMMUTABLE,
                "Cannot update variable \"count\" in \"/\" because collection \"counter\" is immutable.");
    CHECK(lx_i32(lx_variable_get_value(count))[0] == 1);
    nnx_module_release(model);
    nnx_rngs_release(r);
    linen_module_release(foo);
}

/* ------------------------------------------------------------------ W7 */

/* Linen Dense with kernel_init=nn.with_partitioning(lecun_normal(), ('in', 'out')) and
 * bias_init=nn.with_logical_partitioning(zeros, ('out-alias',), rules=(('out-alias', 'out'),)). */
static lx_status partitioned_kernel(lx_key key, void *user, lx_value *leaf) {
    const int64_t *shape = user;
    lx_initializer ln = lx_init_lecun_normal();
    lx_array *w = lx_init_apply(&ln, key, LX_F32, 2, shape);
    if (!w) return lx_last_status();
    const char *names[] = {"in", "out"};
    lx_box *b = NULL;
    LX_TRY(lx_box_partitioned(w, 2, names, NULL, &b));
    *leaf = lx_box_v(b);
    return LX_OK;
}
static lx_status logical_bias(lx_key key, void *user, lx_value *leaf) {
    const int64_t *n = user;
    lx_array *b0 = lx_autorelease(lx_array_new(LX_F32, 1, n));
    const char *names[] = {"out-alias"};
    const char *rules[] = {"out-alias", "out"};
    lx_box *b = NULL;
    LX_TRY(lx_box_logically_partitioned(b0, 1, names, NULL, 2, rules, &b));
    *leaf = lx_box_v(b);
    return LX_OK;
}
static lx_status sharded_dense_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    int64_t kshape[] = {x->shape[1], 4}, bshape[] = {4};
    lx_value k, b;
    LX_TRY(linen_param_custom(s, "kernel", partitioned_kernel, kshape, &k));
    LX_TRY(linen_param_custom(s, "bias", logical_bias, bshape, &b));
    if (k.kind != LX_V_ARRAY || b.kind != LX_V_ARRAY)
        return lx_fail(LX_ERR_TYPE, "params should reach the method unboxed");
    return linen_return_array(out, lx_add(lx_matmul(x, k.u.array), b.u.array));
}
static const linen_method SHARDED_METHODS[] = {LINEN_METHOD("__call__", sharded_dense_call)};
static const linen_type SHARDED_DENSE = {.name = "Dense", .methods = SHARDED_METHODS, .nmethods = LX_COUNT(SHARDED_METHODS)};

/* W7's checks on a Linen module whose params are kernel (3, 4) Partitioned ('in', 'out') and
 * bias (4,) LogicallyPartitioned ('out-alias',) with rules (('out-alias', 'out'),). Returns the
 * kernel's value (pool-owned) for the caller's own checks. */
static lx_array *check_W7(linen_module *lin) {
    lx_array *kept = NULL;
    nnx_rngs *r = rngs_seed(0);
    nnx_module *model = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(lin, r, NULL, &model), LX_OK);
    lx_array *x = normal(3, 2, 3);
    CHECK_EQ_INT(bridge_lazy_init(model, NULL, ARGS1(x)), LX_OK);

    /* ToNNX's Variables carry the boxes' metadata: out_sharding, and sharding_rules for the
     * logically partitioned bias; linen_meta_type remembers the box kind for the way back. */
    lx_variable *k = var_at(model, "kernel"), *b = var_at(model, "bias");
    CHECK(k && lx_variable_type(k) == &lx_Param && b && lx_variable_type(b) == &lx_Param);
    const char *in_out[] = {"in", "out"}, *alias[] = {"out-alias"}, *rules[] = {"out-alias", "out"};
    CHECK(k && strs_are(lx_variable_meta_get(k, "out_sharding"), 2, in_out));
    CHECK(b && strs_are(lx_variable_meta_get(b, "out_sharding"), 1, alias));
    CHECK(b && strs_are(lx_variable_meta_get(b, "sharding_rules"), 2, rules));
    const lx_value *kt = k ? lx_variable_meta_get(k, "linen_meta_type") : NULL;
    const lx_value *bt = b ? lx_variable_meta_get(b, "linen_meta_type") : NULL;
    CHECK(kt && kt->kind == LX_V_INT && kt->u.i == LX_BOX_PARTITIONED);
    CHECK(bt && bt->kind == LX_V_INT && bt->u.i == LX_BOX_LOGICALLY_PARTITIONED);

    /* A call converts them back to the same boxes for Linen, which unboxes them: y = x @ k + b. */
    lx_array *y = call_array(model, NULL, ARGS1(x));
    lx_array *kv = k ? lx_variable_get_value(k) : NULL;
    CHECK(y && kv && y->shape[0] == 2 && y->shape[1] == 4);
    for (int i = 0; y && kv && i < 2; i++)
        for (int j = 0; j < 4; j++) {
            double want = 0;
            for (int d = 0; d < 3; d++) want += (double)lx_f32(x)[i * 3 + d] * lx_f32(kv)[d * 4 + j];
            CHECK_NEAR(lx_f32(y)[i * 4 + j], want, 1e-5);
        }
    lx_tree *attrs = NULL, *vars = NULL;
    CHECK_EQ_INT(nnx_state(model, 1, &NNX_NOT_RNG_STATE, &attrs), LX_OK);
    CHECK_EQ_INT(bridge_nnx_attrs_to_linen_vars(attrs, &vars), LX_OK);
    const lx_value *kb = vars ? lx_tree_find(vars, "params/kernel") : NULL;
    const lx_value *bb = vars ? lx_tree_find(vars, "params/bias") : NULL;
    CHECK(kb && kb->kind == LX_V_BOX && lx_box_get_kind(kb->u.box) == LX_BOX_PARTITIONED);
    CHECK(bb && bb->kind == LX_V_BOX && lx_box_get_kind(bb->u.box) == LX_BOX_LOGICALLY_PARTITIONED);
    CHECK(kb && strs_are(lx_box_names(kb->u.box), 2, in_out));
    lx_tree_release(vars);
    lx_tree_release(attrs);
    if (kv) kept = lx_autorelease(lx_retain(kv));
    nnx_module_release(model);
    nnx_rngs_release(r);
    return kept;
}

/* Flax's W7 itself: a real nn.Dense(4) with kernel_init=nn.with_partitioning(lecun_normal(),
 * ('in', 'out')) and bias_init=nn.with_logical_partitioning(zeros, ('out-alias',),
 * rules=(('out-alias', 'out'),)). The kernel is the plain Dense's for the same Rngs: the
 * wrappers draw no key. */
static void test_W7_linen_to_nnx_metadata(void) {
    lx_initializer ln = lx_init_lecun_normal(), z = lx_init_zeros(), kinit, binit;
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 2, (const char *[]){"in", "out"}, NULL, &kinit), LX_OK);
    CHECK_EQ_INT(lx_init_with_logical_partitioning(&z, 1, (const char *[]){"out-alias"}, NULL, 2,
                                                   (const char *[]){"out-alias", "out"}, &binit),
                 LX_OK);
    lx_call c = {1, LX_VALUES(lx_int_v(4)), 2,
                 LX_KWARGS(LX_KW("kernel_init", lx_ptr_v("initializer", &kinit)),
                           LX_KW("bias_init", lx_ptr_v("initializer", &binit)))};
    linen_module *lin = NULL;
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &c, &lin), LX_OK);
    lx_array *k = check_W7(lin);
    linen_module_release(lin);

    linen_module *plain = dense(4, true);
    nnx_rngs *r = rngs_seed(0);
    nnx_module *model = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(plain, r, NULL, &model), LX_OK);
    CHECK_EQ_INT(bridge_lazy_init(model, NULL, ARGS1(normal(3, 2, 3))), LX_OK);
    lx_array *pk = value_at(model, "kernel");
    CHECK(k && pk && lx_array_equal(k, pk));
    lx_variable *pv = var_at(model, "kernel");
    CHECK(pv && lx_variable_meta_get(pv, "out_sharding") == NULL);
    nnx_module_release(model);
    nnx_rngs_release(r);
    linen_module_release(plain);
}

/* The same with a hand-written module whose init functions build the boxes themselves
 * (linen_param_custom), as a Flax user's custom init returning nn.Partitioned would. */
static void test_W7_custom_box_init(void) {
    linen_module *lin = NULL;
    CHECK_EQ_INT(linen_module_new(&SHARDED_DENSE, NULL, &lin), LX_OK);
    CHECK(check_W7(lin) != NULL);
    linen_module_release(lin);
}

/* ------------------------------------------------------------------ W8 */

static const lx_vartype BIAS = {"Bias", &lx_Variable};

static lx_status inner_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const int64_t *dout = linen_config(s);
    lx_array *x, *w;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_initializer ln = lx_init_lecun_normal();
    LX_TRY(linen_param(s, "w", &ln, LX_F32, 2, (int64_t[]){x->shape[1], *dout}, &w));
    return linen_return_array(out, linen_dropout(s, NULL, 0.5, false, lx_matmul(x, w)));
}
static const linen_method INNER_METHODS[] = {LINEN_METHOD("__call__", inner_call)};
static const linen_type LINEN_INNER = {.name = "LinenInner", .config_size = sizeof(dout_config), .config = DOUT_FIELDS,
                                       .nconfig = LX_COUNT(DOUT_FIELDS), .methods = INNER_METHODS, .nmethods = LX_COUNT(INNER_METHODS)};

static lx_status zeros_1x3(lx_key k, void *user, lx_value *leaf) {
    (void)k;
    (void)user;
    lx_array *a = lx_array_new(LX_F32, 2, (int64_t[]){1, 3});
    if (!a) return lx_last_status();
    *leaf = lx_array_v(a);
    return LX_OK;
}

static lx_status middle_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const int64_t *dout = linen_config(s);
    linen_module *dot = NULL;
    lx_call ic = LX_CALL_ARGS(lx_int_v(*dout));
    LX_TRY(linen_module_new(&LINEN_INNER, &ic, &dot));
    lx_value y = lx_none(), b;
    lx_status st = linen_call_child(s, dot, "dot", NULL, c, &y);
    if (st == LX_OK) st = linen_variable(s, "bias", "b", zeros_1x3, NULL, &b);
    if (st == LX_OK) st = linen_return_array(out, lx_add(y.u.array, b.u.array));
    lx_value_free(&y);
    linen_module_release(dot);
    return st;
}
static const linen_method MIDDLE_METHODS[] = {LINEN_METHOD("__call__", middle_call)};
static const linen_type LINEN_MIDDLE = {.name = "LinenMiddle", .config_size = sizeof(dout_config), .config = DOUT_FIELDS,
                                        .nconfig = LX_COUNT(DOUT_FIELDS), .methods = MIDDLE_METHODS, .nmethods = LX_COUNT(MIDDLE_METHODS)};

typedef struct {
    nnx_module base;
    dout_config cfg;
    nnx_module *dot;
    lx_variable *b;
} nnx_middle;
static lx_status nnx_middle_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    nnx_middle *self = (nnx_middle *)m;
    linen_module *inner = NULL;
    lx_call ic = LX_CALL_ARGS(lx_int_v(self->cfg.dout));
    LX_TRY(linen_module_new(&LINEN_INNER, &ic, &inner));
    lx_status s = bridge_to_nnx_new(inner, rngs, NULL, &self->dot);
    linen_module_release(inner);
    lx_key k;
    if (s == LX_OK) s = nnx_rngs_draw(rngs, "params", &k);
    if (s == LX_OK) {
        lx_array *z = lx_array_new(LX_F32, 2, (int64_t[]){1, self->cfg.dout});
        s = z ? lx_variable_new(&BIAS, z, &self->b) : lx_last_status();
        lx_release(z);
    }
    return s;
}
static lx_status nnx_middle_call(nnx_module *m, const lx_call *c, lx_value *out) {
    nnx_middle *self = (nnx_middle *)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return ret_array(lx_add(nnx_call_array(self->dot, x), lx_variable_get_value(self->b)), out);
}
static const nnx_field MIDDLE_FIELDS[] = {NNX_CHILD(nnx_middle, dot), NNX_VAR(nnx_middle, b)};
static const nnx_method NNX_MIDDLE_METHODS[] = {NNX_METHOD("__call__", nnx_middle_call)};
static const nnx_type NNX_MIDDLE = {
    .name = "NNXMiddle", .size = sizeof(nnx_middle), .fields = MIDDLE_FIELDS, .nfields = LX_COUNT(MIDDLE_FIELDS),
    .config = DOUT_FIELDS, .nconfig = LX_COUNT(DOUT_FIELDS), .config_offset = offsetof(nnx_middle, cfg),
    .methods = NNX_MIDDLE_METHODS, .nmethods = LX_COUNT(NNX_MIDDLE_METHODS), .init = nnx_middle_init,
};

/* "path Type dtype[shape]" per leaf of the state without RNG state. */
static char *weights_signature(nnx_module *m) {
    lx_tree *st = NULL;
    if (nnx_state(m, 1, &NNX_NOT_RNG_STATE, &st) != LX_OK) return NULL;
    lx_flat f = {0};
    char *buf = calloc(1, 4096);
    size_t n = 0;
    if (lx_tree_flatten(st, &f) == LX_OK)
        for (size_t i = 0; i < f.len; i++) {
            const lx_variable *v = f.items[i].value.u.var;
            char sig[64];
            n += (size_t)snprintf(buf + n, 4096 - n, "%s %s %s\n", f.items[i].path, lx_variable_type(v)->name,
                                  lx_array_sig(lx_variable_get_value(v), sig, sizeof sig));
        }
    lx_flat_free(&f);
    lx_tree_release(st);
    return buf;
}

static void test_W8_linen_to_nnx_state_structure_consistency(void) {
    CHECK_EQ_INT(lx_variable_register_name("bias", &BIAS, true), LX_OK);
    lx_array *x = normal(42, 2, 4);
    nnx_stream_spec specs[] = {{"default", false, 0, {{0, 0}}}, {"dropout", false, 1, {{0, 0}}}};
    nnx_rngs *r1 = NULL, *r2 = NULL;
    CHECK_EQ_INT(nnx_rngs_new(2, specs, &r1), LX_OK);
    CHECK_EQ_INT(nnx_rngs_new(2, specs, &r2), LX_OK);
    linen_module *middle = NULL;
    lx_call mc = LX_CALL_KWARGS(LX_KW_INT("dout", 3));
    CHECK_EQ_INT(linen_module_new(&LINEN_MIDDLE, &mc, &middle), LX_OK);
    nnx_module *from_top = NULL, *from_middle = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(middle, r1, NULL, &from_top), LX_OK);
    CHECK_EQ_INT(bridge_lazy_init(from_top, NULL, ARGS1(x)), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&NNX_MIDDLE, &mc, r2, &from_middle), LX_OK);
    CHECK_EQ_INT(bridge_lazy_init(from_middle, NULL, ARGS1(x)), LX_OK);
    char *a = weights_signature(from_top), *b = weights_signature(from_middle);
    CHECK_STR(a, "b Bias float32[1,3]\ndot/w Param float32[4,3]\n");
    CHECK_STR(a, b);
    free(a);
    free(b);
    nnx_module_release(from_top);
    nnx_module_release(from_middle);
    nnx_rngs_release(r1);
    nnx_rngs_release(r2);
    linen_module_release(middle);
    lx_variable_registry_reset();
}

/* ------------------------------------------------------------------ W9 (Flax issue 4484) */

static lx_status cache_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    if (!linen_is_initializing(s) && linen_is_mutable_collection(s, "cache")) {
        lx_array *z = lx_autorelease(lx_array_new(LX_I32, 0, NULL));
        lx_value zv = lx_array_v(z);
        LX_TRY(linen_put_variable(s, "cache", "x", &zv));
    }
    if (!linen_has_variable(s, "cache", "x")) {
        *out = lx_none();
        return LX_OK;
    }
    lx_value v;
    LX_TRY(linen_get_variable(s, "cache", "x", &v));
    return lx_value_dup(&v, out);
}
static const linen_method CACHE_METHODS[] = {LINEN_METHOD("__call__", cache_call)};
static const linen_type CACHE_MODULE = {.name = "LinenModule", .methods = CACHE_METHODS, .nmethods = LX_COUNT(CACHE_METHODS)};

static void test_W9_adding_new_attributes(void) {
    linen_module *lm = NULL;
    CHECK_EQ_INT(linen_module_new(&CACHE_MODULE, NULL, &lm), LX_OK);
    nnx_module *m = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(lm, NULL, NULL, &m), LX_OK); /* no rngs */
    CHECK(bridge_to_nnx_rngs(m) == NULL);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, NULL), LX_OK);
    CHECK_EQ_INT(nnx_attr_count(m), 0);
    lx_value r1, r2;
    lx_call c1 = LX_CALL_KWARGS(LX_KW(("mutable"), lx_strs_v(1, (const char *const[]){"cache"})));
    CHECK_EQ_INT(nnx_call(m, NULL, &c1, &r1), LX_OK);
    CHECK(r1.kind == LX_V_ARRAY && lx_i32(r1.u.array)[0] == 0);
    CHECK_EQ_INT(nnx_call(m, NULL, NULL, &r2), LX_OK); /* the new attribute persists */
    CHECK(r2.kind == LX_V_ARRAY && lx_i32(r2.u.array)[0] == 0);
    lx_variable *v = var_at(m, "x");
    CHECK(v && lx_variable_type(v) == &lx_Cache);
    lx_value_free(&r1);
    lx_value_free(&r2);
    nnx_module_release(m);
    linen_module_release(lm);
}

/* ------------------------------------------------------------------ Linen methods by name (issue 4758) */

static lx_status ae_encode(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    linen_module *enc = NULL;
    lx_call ec = LX_CALL_KWARGS(LX_KW_INT("features", 2));
    LX_TRY(linen_module_new(&linen_Dense, &ec, &enc));
    lx_array *y = linen_call_array(s, enc, "encoder", x);
    linen_module_release(enc);
    return linen_return_array(out, y);
}
static lx_status ae_decode(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *z;
    LX_TRY(lx_call_array(c, 0, "z", &z));
    linen_module *dec = NULL;
    lx_call dc = LX_CALL_KWARGS(LX_KW_INT("features", 4));
    LX_TRY(linen_module_new(&linen_Dense, &dc, &dec));
    lx_array *y = linen_call_array(s, dec, "decoder", z);
    linen_module_release(dec);
    return linen_return_array(out, y);
}
static lx_status ae_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_value z;
    LX_TRY(ae_encode(s, c, &z));
    lx_call dc = LX_CALL_ARGS(z);
    lx_status st = ae_decode(s, &dc, out);
    lx_value_free(&z);
    return st;
}
static const linen_method AE_METHODS[] = {LINEN_METHOD("__call__", ae_call), LINEN_METHOD("encode", ae_encode),
                                          LINEN_METHOD("decode", ae_decode)};
static const linen_type AUTOENCODER = {.name = "AutoEncoder", .methods = AE_METHODS, .nmethods = LX_COUNT(AE_METHODS)};

static void test_linen_method_by_name(void) {
    linen_module *ae = NULL;
    CHECK_EQ_INT(linen_module_new(&AUTOENCODER, NULL, &ae), LX_OK);
    nnx_rngs *r = rngs_seed(1);
    nnx_module *m = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(ae, r, NULL, &m), LX_OK);
    lx_array *x = normal(3, 2, 4);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, ARGS1(x)), LX_OK);
    CHECK(value_at(m, "encoder/kernel") && value_at(m, "decoder/kernel"));
    /* model.encode(x): a Linen method reached by name */
    lx_array *z = call_array(m, "encode", ARGS1(x));
    CHECK(z && z->shape[1] == 2);
    lx_array *want = lx_add(lx_matmul(x, value_at(m, "encoder/kernel")), value_at(m, "encoder/bias"));
    CHECK(z && want && lx_array_equal(z, want));
    lx_array *y = call_array(m, "decode", ARGS1(z));
    lx_array *full = call_array(m, NULL, ARGS1(x));
    CHECK(y && full && lx_array_equal(y, full));
    /* a name the Linen class does not have */
    lx_value out;
    CHECK_FAILS(nnx_call(m, "generate", ARGS1(x), &out), LX_ERR_NOT_FOUND,
                "'ToNNX' object has no attribute 'generate'");
    /* Flax's model(x, method='encode'): the keyword picks the method and is not forwarded */
    int64_t before = stream_count(bridge_to_nnx_rngs(m), "default");
    lx_call by_kw = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_STR("method", "encode")));
    lx_array *z2 = call_array(m, NULL, &by_kw);
    CHECK(z2 && z && lx_array_equal(z2, z));
    lx_call none_kw = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW("method", lx_none())));
    lx_array *full2 = call_array(m, NULL, &none_kw);
    CHECK(full2 && full && lx_array_equal(full2, full));
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), before + 2);
    /* refused before a stream is drawn */
    lx_call bad_name = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_STR("method", "generate")));
    CHECK_FAILS(nnx_call(m, NULL, &bad_name, &out), LX_ERR_NOT_FOUND, "\"AutoEncoder\" object has no attribute \"generate\".");
    lx_call bad_kind = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_INT("method", 3)));
    CHECK_FAILS(nnx_call(m, NULL, &bad_kind, &out), LX_ERR_TYPE,
                "ToNNX: method must be the name of a method of the Linen module or None, got 3");
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), before + 2);
    /* lazy_init(model, x, method='encode') initialises through that method */
    nnx_module *m2 = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(ae, r, NULL, &m2), LX_OK);
    CHECK_EQ_INT(bridge_lazy_init(m2, NULL, &by_kw), LX_OK);
    CHECK(value_at(m2, "encoder/kernel") && !value_at(m2, "decoder/kernel"));
    nnx_module_release(m2);
    nnx_module_release(m);
    nnx_rngs_release(r);
    linen_module_release(ae);
}

/* ------------------------------------------------------------------ mutable resolution */

/* Increments `counter/count` when the collection is mutable; returns the count. */
static lx_status soft_count_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    lx_value v;
    LX_TRY(linen_variable(s, "counter", "count", int_zero_init, NULL, &v));
    if (!linen_is_initializing(s) && linen_is_mutable_collection(s, "counter")) {
        lx_array *n = lx_autorelease(lx_array_new(LX_I32, 0, NULL));
        lx_i32(n)[0] = lx_i32(v.u.array)[0] + 1;
        lx_value nv = lx_array_v(n);
        LX_TRY(linen_put_variable(s, "counter", "count", &nv));
    }
    return LX_OK;
}
static const linen_method SOFT_METHODS[] = {LINEN_METHOD("__call__", soft_count_call)};
static const linen_type SOFT_COUNT = {.name = "SoftCount", .methods = SOFT_METHODS, .nmethods = LX_COUNT(SOFT_METHODS)};

/* A Linen host whose method calls an NNX module (its config `inner`) with the host's own call:
 * Linen -> NNX -> Linen. It also records bridge_current_linen_module(). */
typedef struct {
    lx_value inner;
} host_config;
static const lx_field HOST_FIELDS[] = {LX_FIELD_VALUE(host_config, inner)};
static linen_scope *host_seen_scope, *host_seen_current;
static lx_status host_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const host_config *cfg = linen_config(s);
    host_seen_scope = s;
    host_seen_current = bridge_current_linen_module();
    nnx_module *inner = nnx_module_from_value(&cfg->inner);
    return nnx_call(inner, NULL, c, out);
}
static const linen_method HOST_METHODS[] = {LINEN_METHOD("__call__", host_call)};
static const linen_type HOST = {.name = "Host", .config_size = sizeof(host_config), .config = HOST_FIELDS,
                                .nconfig = LX_COUNT(HOST_FIELDS), .methods = HOST_METHODS, .nmethods = LX_COUNT(HOST_METHODS)};

static int count_of(nnx_module *m) {
    lx_array *a = value_at(m, "count");
    return a ? lx_i32(a)[0] : -1;
}

static void test_mutable_resolution(void) {
    linen_module *lm = NULL, *host = NULL;
    CHECK_EQ_INT(linen_module_new(&SOFT_COUNT, NULL, &lm), LX_OK);
    nnx_module *m = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(lm, NULL, NULL, &m), LX_OK);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, NULL), LX_OK);
    CHECK_EQ_INT(count_of(m), 0);
    lx_value out;
    /* 3. no explicit mutable, no enclosing Linen module: immutable */
    CHECK(bridge_current_linen_module() == NULL);
    CHECK_EQ_INT(nnx_call(m, NULL, NULL, &out), LX_OK);
    CHECK_EQ_INT(count_of(m), 0);
    /* 1. explicit: a name, a tuple, True, False */
    lx_call as_str = LX_CALL_KWARGS(LX_KW_STR("mutable", "counter"));
    lx_call as_tuple = LX_CALL_KWARGS(LX_KW("mutable", lx_strs_v(2, (const char *const[]){"cache", "counter"})));
    lx_call as_true = LX_CALL_KWARGS(LX_KW_BOOL("mutable", true));
    lx_call as_false = LX_CALL_KWARGS(LX_KW_BOOL("mutable", false));
    lx_call as_other = LX_CALL_KWARGS(LX_KW_STR("mutable", "cache"));
    CHECK_EQ_INT(nnx_call(m, NULL, &as_str, &out), LX_OK);
    CHECK_EQ_INT(count_of(m), 1);
    CHECK_EQ_INT(nnx_call(m, NULL, &as_tuple, &out), LX_OK);
    CHECK_EQ_INT(count_of(m), 2);
    CHECK_EQ_INT(nnx_call(m, NULL, &as_true, &out), LX_OK);
    CHECK_EQ_INT(count_of(m), 3);
    CHECK_EQ_INT(nnx_call(m, NULL, &as_false, &out), LX_OK);
    CHECK_EQ_INT(nnx_call(m, NULL, &as_other, &out), LX_OK);
    CHECK_EQ_INT(count_of(m), 3);

    /* 2. inside a Linen module: the enclosing scope's mutability */
    host_config hc = {nnx_module_v(m)};
    lx_call hcall = LX_CALL_KWARGS(LX_KW("inner", hc.inner));
    CHECK_EQ_INT(linen_module_new(&HOST, &hcall, &host), LX_OK);
    lx_tree *empty = lx_tree_new();
    linen_opts counter_mutable = {.mutable = LINEN_MUTABLE("counter"), .mutable_given = true};
    lx_tree *mutated = NULL;
    CHECK_EQ_INT(linen_apply(host, empty, LINEN_NO_RNGS, NULL, &counter_mutable, &out, &mutated), LX_OK);
    CHECK_EQ_INT(count_of(m), 4);
    CHECK(host_seen_current == host_seen_scope && host_seen_scope != NULL);
    CHECK(bridge_current_linen_module() == NULL);
    lx_tree_release(mutated);
    /* ... and the enclosing module's immutability */
    CHECK_EQ_INT(linen_apply(host, empty, LINEN_NO_RNGS, NULL, NULL, &out, NULL), LX_OK);
    CHECK_EQ_INT(count_of(m), 4);
    /* 1 beats 2: explicit False inside a mutable host, explicit True inside an immutable one */
    CHECK_EQ_INT(linen_apply(host, empty, LINEN_NO_RNGS, &as_false, &counter_mutable, &out, &mutated), LX_OK);
    CHECK_EQ_INT(count_of(m), 4);
    lx_tree_release(mutated);
    CHECK_EQ_INT(linen_apply(host, empty, LINEN_NO_RNGS, &as_true, NULL, &out, NULL), LX_OK);
    CHECK_EQ_INT(count_of(m), 5);

    /* bad `mutable` values are refused before anything runs */
    lx_call bad_int = LX_CALL_KWARGS(LX_KW_INT("mutable", 1));
    lx_call bad_none = LX_CALL_KWARGS(LX_KW("mutable", lx_strs_v(1, (const char *const[]){NULL})));
    CHECK_FAILS(nnx_call(m, NULL, &bad_int, &out), LX_ERR_TYPE,
                "ToNNX: mutable must be a bool, a collection name or a tuple of names, got 1");
    CHECK_FAILS(nnx_call(m, NULL, &bad_none, &out), LX_ERR_TYPE, "mutable collection names cannot be None");
    CHECK_EQ_INT(count_of(m), 5);
    lx_tree_release(empty);
    linen_module_release(host);
    nnx_module_release(m);
    linen_module_release(lm);
}

/* ------------------------------------------------------------------ rng routing */

/* Records the keys make_rng('params') and make_rng('dropout') give at the root. */
static lx_key probe_params, probe_dropout;
static lx_status probe_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    LX_TRY(linen_make_rng(s, "params", &probe_params));
    LX_TRY(linen_make_rng(s, "dropout", &probe_dropout));
    *out = lx_none();
    return LX_OK;
}
static const linen_method PROBE_METHODS[] = {LINEN_METHOD("__call__", probe_call)};
static const linen_type PROBE = {.name = "Probe", .methods = PROBE_METHODS, .nmethods = LX_COUNT(PROBE_METHODS)};

static bool key_eq(lx_key a, lx_key b) { return a.k[0] == b.k[0] && a.k[1] == b.k[1]; }

static void test_rng_routing(void) {
    linen_module *probe = NULL;
    CHECK_EQ_INT(linen_module_new(&PROBE, NULL, &probe), LX_OK);
    lx_value out;
    /* Rngs(0): forked, each call draws fold_in(forked, count), `default` renamed to `params`;
     * dropout falls back to params in Linen. */
    nnx_rngs *r = rngs_seed(0);
    nnx_module *m = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(probe, r, NULL, &m), LX_OK);
    lx_key forked = {{BT_FORKED_KEY[0], BT_FORKED_KEY[1]}};
    for (uint32_t count = 0; count < 2; count++) {
        CHECK_EQ_INT(nnx_call(m, NULL, NULL, &out), LX_OK);
        lx_key root = lx_nnx_stream_key(forked, count);
        CHECK(key_eq(probe_params, lx_linen_make_rng_key(root, 0, NULL, 1)));
        CHECK(key_eq(probe_dropout, lx_linen_make_rng_key(root, 0, NULL, 2))); /* params fallback, count 2 */
    }
    CHECK(key_eq(lx_nnx_stream_key(forked, 0), (lx_key){{BT_PARAMS_KEY[0], BT_PARAMS_KEY[1]}}));

    /* rngs= an Rngs at call time: drawn from it (its counts advance, the wrapper's do not);
     * with params and dropout streams nothing is renamed. */
    nnx_stream_spec specs[] = {{"params", false, 5, {{0, 0}}}, {"dropout", false, 6, {{0, 0}}}};
    nnx_rngs *other = NULL;
    CHECK_EQ_INT(nnx_rngs_new(2, specs, &other), LX_OK);
    lx_call with_rngs = LX_CALL_KWARGS(LX_KW("rngs", nnx_module_v(nnx_rngs_module(other))));
    CHECK_EQ_INT(nnx_call(m, NULL, &with_rngs, &out), LX_OK);
    CHECK(key_eq(probe_params, lx_linen_make_rng_key(lx_nnx_stream_key(lx_key_from_seed(5), 0), 0, NULL, 1)));
    CHECK(key_eq(probe_dropout, lx_linen_make_rng_key(lx_nnx_stream_key(lx_key_from_seed(6), 0), 0, NULL, 1)));
    CHECK_EQ_INT(stream_count(other, "params"), 1);
    CHECK_EQ_INT(stream_count(other, "dropout"), 1);
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 2);

    /* rngs= a raw key: {params: key} */
    lx_array *ka = lx_autorelease(lx_array_from_data(LX_U32, 1, (int64_t[]){2}, (uint32_t[]){7, 9}));
    lx_call with_key = LX_CALL_KWARGS(LX_KW("rngs", lx_array_v(ka)));
    CHECK_EQ_INT(nnx_call(m, NULL, &with_key, &out), LX_OK);
    CHECK(key_eq(probe_params, lx_linen_make_rng_key((lx_key){{7, 9}}, 0, NULL, 1)));

    /* anything else is refused, and no stream moves */
    lx_call bad = LX_CALL_KWARGS(LX_KW_INT("rngs", 3));
    CHECK_FAILS(nnx_call(m, NULL, &bad, &out), LX_ERR_TYPE, "ToNNX: rngs must be an Rngs, a key (uint32[2]) or None, got 3");
    lx_array *kf = lx_autorelease(lx_array_new(LX_F32, 1, (int64_t[]){2}));
    lx_call badk = LX_CALL_KWARGS(LX_KW("rngs", lx_array_v(kf)));
    CHECK_FAILS(nnx_call(m, NULL, &badk, &out), LX_ERR_TYPE, "got float32[2]");
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 2);
    nnx_module_release(m);

    /* ToNNX(module, key): Rngs(params=key), not forked */
    lx_key k = {{11, 12}};
    CHECK_EQ_INT(bridge_to_nnx_new(probe, NULL, &k, &m), LX_OK);
    nnx_rngs *own = bridge_to_nnx_rngs(m);
    CHECK(own && nnx_rngs_num_streams(own) == 1 && strcmp(nnx_rngs_stream_name(own, 0), "params") == 0);
    CHECK(key_eq(stream_key(own, "params"), k));
    CHECK_EQ_INT(nnx_call(m, NULL, NULL, &out), LX_OK);
    CHECK(key_eq(probe_params, lx_linen_make_rng_key(lx_nnx_stream_key(k, 0), 0, NULL, 1)));
    nnx_module_release(m);

    /* No rngs at all: Linen's missing-PRNG error, from a Dense at init */
    linen_module *d = dense(2, true);
    CHECK_EQ_INT(bridge_to_nnx_new(d, NULL, NULL, &m), LX_OK);
    lx_array *x = ones(1, 3);
    CHECK_FAILS(bridge_lazy_init(m, NULL, ARGS1(x)), LX_ERR_RNG, "needs PRNG for \"params\"");
    CHECK_EQ_INT(nnx_attr_count(m), 0);
    CHECK(!m->initializing);
    nnx_module_release(m);
    linen_module_release(d);
    nnx_rngs_release(other);
    nnx_rngs_release(r);
    linen_module_release(probe);
}

/* Arguments the Linen method's signature refuses (Python's TypeError, Linen's own check) are
 * refused before a stream is drawn, at lazy_init and call alike: a refused call changes nothing,
 * so the next good call draws the same keys as it would have (bridge9 F2). */
static void test_refused_arguments_draw_nothing(void) {
    linen_module *d = dense(2, true);
    nnx_rngs *r = rngs_seed(0);
    nnx_module *m = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(d, r, NULL, &m), LX_OK);
    lx_array *x = ones(1, 3);
    lx_call foo = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_INT("foo", 3)));
    CHECK_FAILS(bridge_lazy_init(m, NULL, &foo), LX_ERR_TYPE, "Dense.__call__() got an unexpected keyword argument 'foo'");
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 0);
    CHECK_EQ_INT(nnx_attr_count(m), 0);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, ARGS1(x)), LX_OK);
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 1);
    lx_value out;
    CHECK_FAILS(nnx_call(m, NULL, &foo, &out), LX_ERR_TYPE, "Dense.__call__() got an unexpected keyword argument 'foo'");
    lx_call two = LX_CALL_ARGS(lx_array_v(x), lx_array_v(x));
    CHECK_FAILS(nnx_call(m, NULL, &two, &out), LX_ERR_TYPE, "Dense.__call__() takes 2 positional arguments but 3 were given");
    CHECK_FAILS(nnx_call(m, NULL, NULL, &out), LX_ERR_TYPE, "Dense.__call__() missing 1 required positional argument: 'inputs'");
    /* the bridge's own keywords are taken out before the check */
    lx_call kw = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_BOOL("mutable", false), LX_KW_INT("foo", 1)));
    CHECK_FAILS(nnx_call(m, NULL, &kw, &out), LX_ERR_TYPE, "got an unexpected keyword argument 'foo'");
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 1);
    lx_call ok = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_BOOL("mutable", false)));
    CHECK_EQ_INT(nnx_call(m, NULL, &ok, &out), LX_OK);
    lx_value_free(&out);
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 2);
    nnx_module_release(m);
    nnx_rngs_release(r);
    linen_module_release(d);
}

/* method='features' names a config field of the Linen module, not a method: the TypeError Linen's
 * own apply gives for that name, refused before a stream is drawn (review29 R29-1). */
static void test_method_naming_a_field(void) {
    linen_module *d = dense(2, true);
    nnx_rngs *r = rngs_seed(0);
    nnx_module *m = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(d, r, NULL, &m), LX_OK);
    lx_array *x = ones(1, 3);
    lx_call mf = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_STR("method", "features")));
    const char *want = "'Dense.features' must be a callable, got <class 'int'>.";
    CHECK_FAILS(bridge_lazy_init(m, NULL, &mf), LX_ERR_TYPE, want);
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 0);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, ARGS1(x)), LX_OK);
    lx_value out;
    CHECK_FAILS(nnx_call(m, NULL, &mf, &out), LX_ERR_TYPE, want);
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 1);
    /* linen_apply says the same for the same name */
    lx_tree *v = NULL;
    CHECK_EQ_INT(linen_init(d, LINEN_KEY(lx_key_from_seed(0)), ARGS1(x), NULL, &v), LX_OK);
    linen_opts o = {0};
    o.method = "features";
    CHECK_FAILS(linen_apply(d, v, LINEN_NO_RNGS, ARGS1(x), &o, &out, NULL), LX_ERR_TYPE, want);
    lx_tree_release(v);
    nnx_module_release(m);
    nnx_rngs_release(r);
    linen_module_release(d);
}

/* ToNNX(ToLinen(nnx.Linear)): the Linen type decides per name, and the NNX method's signature is
 * the one that binds; an unknown method or arguments that do not bind are refused before any
 * stream is drawn, in the words the call itself would use (review29 R29-2). */
static void test_to_linen_inside_refused_before_draw(void) {
    lx_call lc = LX_CALL_KWARGS(LX_KW_INT("in_features", 3), LX_KW_INT("out_features", 2));
    linen_module *tl = bridge_to_linen_kw(&nnx_Linear, lc.nkwargs, lc.kwargs);
    CHECK(tl != NULL);
    nnx_rngs *r = rngs_seed(1);
    nnx_module *m = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(tl, r, NULL, &m), LX_OK);
    lx_array *x = ones(1, 3);
    lx_call foo = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_INT("foo", 3)));
    const char *unexpected = "Linear.__call__() got an unexpected keyword argument 'foo'";
    CHECK_FAILS(bridge_lazy_init(m, NULL, &foo), LX_ERR_TYPE, unexpected);
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 0);
    CHECK_EQ_INT(nnx_attr_count(m), 0);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, ARGS1(x)), LX_OK);
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 1);
    lx_value out;
    CHECK_FAILS(nnx_call(m, NULL, &foo, &out), LX_ERR_TYPE, unexpected);
    lx_call two = LX_CALL_ARGS(lx_array_v(x), lx_array_v(x));
    CHECK_FAILS(nnx_call(m, NULL, &two, &out), LX_ERR_TYPE, "Linear.__call__() takes 2 positional arguments but 3 were given");
    lx_call nope = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_STR("method", "nope")));
    CHECK_FAILS(nnx_call(m, NULL, &nope, &out), LX_ERR_NOT_FOUND, "\"ToLinen\" object has no attribute \"nope\".");
    lx_call field = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_STR("method", "in_features")));
    CHECK_FAILS(nnx_call(m, NULL, &field, &out), LX_ERR_TYPE, "'ToLinen.in_features' must be a callable, got <class 'int'>.");
    lx_call nnx_nope = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_STR("nnx_method", "nope")));
    CHECK_FAILS(nnx_call(m, NULL, &nnx_nope, &out), LX_ERR_NOT_FOUND, "type object 'Linear' has no attribute 'nope'");
    lx_call named_foo =
        LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_STR("nnx_method", "__call__"), LX_KW_INT("foo", 1)));
    CHECK_FAILS(nnx_call(m, NULL, &named_foo, &out), LX_ERR_TYPE, unexpected);
    lx_call by_name = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_STR("method", "__call__"), LX_KW_INT("foo", 1)));
    CHECK_FAILS(nnx_call(m, NULL, &by_name, &out), LX_ERR_TYPE, unexpected);
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 1);
    /* the good calls still run, one draw each */
    lx_array *y = call_array(m, NULL, ARGS1(x));
    lx_array *want = lx_add(lx_matmul(x, value_at(m, "kernel")), value_at(m, "bias"));
    CHECK(y && want && lx_array_equal(y, want));
    lx_call named = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_STR("nnx_method", "__call__")));
    lx_array *y2 = call_array(m, NULL, &named);
    CHECK(y2 && y && lx_array_equal(y2, y));
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 3);
    nnx_module_release(m);
    nnx_rngs_release(r);
    linen_module_release(tl);
}

/* ------------------------------------------------------------------ Flax's rule for non-Variables */

static void test_non_variable_attribute_is_an_error(void) {
    linen_module *d = dense(2, true);
    nnx_rngs *r = rngs_seed(0);
    nnx_module *m = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(d, r, NULL, &m), LX_OK);
    lx_array *x = ones(1, 3);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, ARGS1(x)), LX_OK);
    /* What Qwix hangs on modules: MaxText skips such values; linnx keeps Flax's error. */
    lx_value qp = lx_str_v("decoder/layers_0");
    CHECK_EQ_INT(nnx_setattr(m, "qwix_path", &qp), LX_OK);
    lx_value out;
    CHECK_FAILS(nnx_call(m, NULL, ARGS1(x), &out), LX_ERR_TYPE,
                "Cannot infer collection name from value: 'decoder/layers_0'");
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 1); /* refused before drawing */
    CHECK_EQ_INT(nnx_delattr(m, "qwix_path"), LX_OK);
    CHECK(call_array(m, NULL, ARGS1(x)) != NULL);
    /* The wrapper's own `to_nnx__*` attributes are never taken for Linen state. */
    lx_value note = lx_int_v(3);
    CHECK_EQ_INT(nnx_setattr(m, "to_nnx__note", &note), LX_OK);
    CHECK(call_array(m, NULL, ARGS1(x)) != NULL);
    nnx_module_release(m);
    nnx_rngs_release(r);
    linen_module_release(d);
}

/* ------------------------------------------------------------------ the Linen view between calls */

/* Peek: param b (2,) at the root, param w (3,) in a child "Inner"; returns {b, w, vars} where
 * vars is self.variables, so a test sees the arrays and the very leaves Linen was given. With
 * peek_reenter set, the call runs the ToNNX that wraps it once more, from inside. */
static nnx_module *peek_reenter;
static lx_status peek_inner_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    lx_initializer o = lx_init_ones();
    lx_array *w;
    LX_TRY(linen_param(s, "w", &o, LX_F32, 1, (int64_t[]){3}, &w));
    return linen_return_array(out, w);
}
static const linen_method PEEK_INNER_METHODS[] = {LINEN_METHOD("__call__", peek_inner_call)};
static const linen_type PEEK_INNER = {.name = "PeekInner", .methods = PEEK_INNER_METHODS, .nmethods = LX_COUNT(PEEK_INNER_METHODS)};
static lx_status peek_call(linen_scope *s, const lx_call *c, lx_value *out) {
    if (peek_reenter) {
        nnx_module *m = peek_reenter;
        peek_reenter = NULL;
        lx_value inner;
        LX_TRY(nnx_call(m, NULL, c, &inner));
        lx_value_free(&inner);
    }
    lx_initializer o = lx_init_ones();
    lx_array *b;
    LX_TRY(linen_param(s, "b", &o, LX_F32, 1, (int64_t[]){2}, &b));
    linen_module *im = NULL;
    LX_TRY(linen_module_new(&PEEK_INNER, NULL, &im));
    lx_value w;
    lx_status st = linen_call_child(s, im, "Inner", NULL, c, &w);
    linen_module_release(im);
    LX_TRY(st);
    lx_tree *vars = NULL, *t = lx_tree_new();
    st = linen_variables(s, &vars);
    if (st == LX_OK) st = lx_tree_set(t, "b", lx_array_v(b));
    if (st == LX_OK) st = lx_tree_set(t, "w", w);
    if (st == LX_OK) st = lx_tree_set(t, "vars", lx_tree_v(vars));
    lx_value_free(&w);
    lx_tree_release(vars);
    if (st == LX_OK) *out = lx_tree_v(t);
    else lx_tree_release(t);
    return st;
}
static const linen_method PEEK_METHODS[] = {LINEN_METHOD("__call__", peek_call)};
static const linen_type PEEK = {.name = "Peek", .methods = PEEK_METHODS, .nmethods = LX_COUNT(PEEK_METHODS)};

/* The peeked output of one call (a tree the caller releases), NULL on failure. */
static lx_tree *peek(nnx_module *m) {
    lx_value out;
    if (nnx_call(m, NULL, NULL, &out) != LX_OK) return NULL;
    if (out.kind != LX_V_TREE) {
        lx_value_free(&out);
        return NULL;
    }
    return out.u.tree;
}

static lx_array *arr(const lx_tree *t, const char *path) {
    const lx_value *v = t ? lx_tree_find(t, path) : NULL;
    return v && v->kind == LX_V_ARRAY ? v->u.array : NULL;
}

static lx_array *vec(int n, float x) {
    lx_array *a = lx_autorelease(lx_array_new(LX_F32, 1, (int64_t[]){n}));
    for (int i = 0; i < n; i++) lx_f32(a)[i] = x;
    return a;
}

/* ToNNX keeps the Linen variables tree between calls; every change to the attributes made
 * between calls must still reach Linen, and nothing Linen handed out may change afterwards. */
static void test_view_follows_attribute_changes(void) {
    linen_module *lm = NULL;
    CHECK_EQ_INT(linen_module_new(&PEEK, NULL, &lm), LX_OK);
    nnx_rngs *r = rngs_seed(0);
    nnx_module *m = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(lm, r, NULL, &m), LX_OK);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, NULL), LX_OK);

    /* calls see the attributes' arrays themselves (shared, not copied), also when repeated */
    lx_tree *o1 = peek(m), *o2 = peek(m);
    CHECK(o1 && arr(o1, "b") == value_at(m, "b") && arr(o1, "w") == value_at(m, "Inner/w"));
    CHECK(o2 && arr(o2, "b") == value_at(m, "b") && arr(o2, "w") == value_at(m, "Inner/w"));
    lx_tree_release(o2);

    /* a value replaced in place; the earlier output (which holds Linen's maps) keeps its arrays */
    lx_array *old_w = value_at(m, "Inner/w"), *w2 = vec(3, 2.0f);
    CHECK_EQ_INT(lx_variable_set_value(var_at(m, "Inner/w"), w2, true), LX_OK);
    lx_tree *o = peek(m);
    CHECK(o && arr(o, "w") == w2 && arr(o, "vars/params/Inner/w") == w2);
    CHECK(arr(o1, "w") == old_w && arr(o1, "vars/params/Inner/w") == old_w);
    lx_tree_release(o);
    lx_tree_release(o1);
    /* and with no output held any more (the view is patched in place then) */
    lx_array *w3 = vec(3, 3.0f);
    CHECK_EQ_INT(lx_variable_set_value(var_at(m, "Inner/w"), w3, true), LX_OK);
    o = peek(m);
    CHECK(o && arr(o, "w") == w3);
    lx_tree_release(o);

    /* nnx_update with new values (in place: the Variables stay) */
    lx_array *b4 = vec(2, 4.0f);
    lx_tree *upd = lx_tree_new();
    CHECK_EQ_INT(lx_tree_set(upd, "b", lx_array_v(b4)), LX_OK);
    CHECK_EQ_INT(nnx_update(m, 1, &upd), LX_OK);
    lx_tree_release(upd);
    o = peek(m);
    CHECK(o && arr(o, "b") == b4);
    lx_tree_release(o);

    /* setattr replacing a whole attribute with a new tree of Variables */
    lx_variable *nw = NULL;
    lx_array *w5 = vec(3, 5.0f);
    CHECK_EQ_INT(lx_variable_new(&lx_Param, w5, &nw), LX_OK);
    lx_tree *inner = lx_tree_new();
    CHECK_EQ_INT(lx_tree_set(inner, "w", lx_var_v(nw)), LX_OK);
    lx_value iv = lx_tree_v(inner);
    CHECK_EQ_INT(nnx_setattr(m, "Inner", &iv), LX_OK);
    lx_variable_release(nw);
    o = peek(m);
    CHECK(o && arr(o, "w") == w5);
    lx_tree_release(o);

    /* an edit made directly to a tree the attribute holds (no graph epoch counts it) */
    lx_array *w6 = vec(3, 6.0f);
    CHECK_EQ_INT(lx_variable_new(&lx_Param, w6, &nw), LX_OK);
    CHECK_EQ_INT(lx_tree_set(inner, "w", lx_var_v(nw)), LX_OK);
    lx_variable_release(nw);
    lx_tree_release(inner);
    o = peek(m);
    CHECK(o && arr(o, "w") == w6);
    lx_tree_release(o);

    /* metadata added to a Variable: Linen gets a box (unboxed for the param), and back */
    lx_variable *bv = var_at(m, "b");
    const char *axis[] = {"embed"};
    CHECK_EQ_INT(lx_variable_meta_set(bv, "out_sharding", lx_strs_v(1, axis)), LX_OK);
    o = peek(m);
    const lx_value *leaf = o ? lx_tree_find(o, "vars/params/b") : NULL;
    CHECK(leaf && leaf->kind == LX_V_BOX && lx_box_unbox(leaf->u.box) == b4);
    CHECK(o && arr(o, "b") == b4);
    lx_tree_release(o);
    CHECK_EQ_INT(lx_variable_meta_del(bv, "out_sharding"), LX_OK);
    o = peek(m);
    CHECK(o && arr(o, "vars/params/b") == b4);
    lx_tree_release(o);

    /* an attribute deleted: Linen's own error; set again: found again */
    lx_variable_retain(bv);
    CHECK_EQ_INT(nnx_delattr(m, "b"), LX_OK);
    lx_value out;
    CHECK_FAILS(nnx_call(m, NULL, NULL, &out), LX_ERR_NOT_FOUND, "Could not find parameter named \"b\" in scope \"/\".");
    lx_value bvv = lx_var_v(bv);
    CHECK_EQ_INT(nnx_setattr(m, "b", &bvv), LX_OK);
    lx_variable_release(bv);
    o = peek(m);
    CHECK(o && arr(o, "b") == b4 && arr(o, "w") == w6);
    lx_tree_release(o);

    /* the same module called again from inside its own call */
    peek_reenter = m;
    o = peek(m);
    CHECK(o && peek_reenter == NULL && arr(o, "b") == b4 && arr(o, "w") == w6);
    lx_tree_release(o);
    o = peek(m);
    CHECK(o && arr(o, "b") == b4);
    lx_tree_release(o);

    nnx_module_release(m);
    nnx_rngs_release(r);
    linen_module_release(lm);
}

/* ------------------------------------------------------------------ get_layers (MaxText) */

/* A decoder calling Dense(4) children under the names in its config, in order; the name
 * "pipeline_module" is a Pipeline child holding a Dense named "layers". */
typedef struct {
    lx_strs names;
} decoder_config;
static const lx_field DECODER_FIELDS[] = {LX_FIELD_STRS(decoder_config, names)};
static lx_status pipe_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    linen_module *d = dense(4, true);
    lx_array *y = linen_call_array(s, d, "layers", x);
    linen_module_release(d);
    return linen_return_array(out, y);
}
static const linen_method PIPE_METHODS[] = {LINEN_METHOD("__call__", pipe_call)};
static const linen_type PIPELINE = {.name = "Pipeline", .methods = PIPE_METHODS, .nmethods = LX_COUNT(PIPE_METHODS)};
static lx_status decoder_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const decoder_config *cfg = linen_config(s);
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    linen_module *d = dense(4, true), *p = NULL;
    LX_TRY(linen_module_new(&PIPELINE, NULL, &p));
    for (int i = 0; i < cfg->names.n; i++)
        x = linen_call_array(s, strcmp(cfg->names.v[i], "pipeline_module") == 0 ? p : d, cfg->names.v[i], x);
    linen_module_release(d);
    linen_module_release(p);
    return linen_return_array(out, x);
}
static const linen_method DECODER_METHODS[] = {LINEN_METHOD("__call__", decoder_call)};
static const linen_type DECODER = {.name = "Decoder", .config_size = sizeof(decoder_config), .config = DECODER_FIELDS,
                                   .nconfig = LX_COUNT(DECODER_FIELDS), .methods = DECODER_METHODS, .nmethods = LX_COUNT(DECODER_METHODS)};

static nnx_module *wrapped_decoder(int n, const char *const *names) {
    linen_module *dec = NULL;
    lx_call c = LX_CALL_KWARGS(LX_KW("names", lx_strs_v(n, names)));
    CHECK_EQ_INT(linen_module_new(&DECODER, &c, &dec), LX_OK);
    nnx_rngs *r = rngs_seed(0);
    nnx_module *m = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(dec, r, NULL, &m), LX_OK);
    lx_array *x = ones(1, 4);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, ARGS1(x)), LX_OK);
    nnx_rngs_release(r);
    linen_module_release(dec);
    return m;
}

static void check_layers(nnx_module *m, int n, const char *const *want) {
    lx_flat layers;
    CHECK_EQ_INT(bridge_to_nnx_get_layers(m, &layers), LX_OK);
    CHECK_EQ_INT(layers.len, n);
    for (size_t i = 0; i < layers.len && (int)i < n; i++) {
        CHECK_STR(layers.items[i].path, want[i]);
        CHECK(layers.items[i].value.kind == LX_V_TREE);
        /* the layer is the module's own attribute tree (shared, not a copy) */
        const char *slash = strchr(want[i], '/');
        lx_value top;
        char head[64];
        snprintf(head, sizeof head, "%.*s", slash ? (int)(slash - want[i]) : (int)strlen(want[i]), want[i]);
        CHECK_EQ_INT(nnx_getattr(m, head, &top), LX_OK);
        const lx_value *v = slash ? lx_tree_get(top.u.tree, slash + 1) : &top;
        CHECK(v && v->kind == LX_V_TREE && v->u.tree == layers.items[i].value.u.tree);
    }
    lx_flat_free(&layers);
}

static void test_get_layers_scanned(void) {
    const char *names[] = {"layers"};
    nnx_module *m = wrapped_decoder(1, names);
    check_layers(m, 1, names);
    nnx_module_release(m);
}

static void test_get_layers_unscanned(void) {
    const char *names[] = {"layers_0", "layers_1"};
    nnx_module *m = wrapped_decoder(2, names);
    check_layers(m, 2, names);
    nnx_module_release(m);
}

static void test_get_layers_order_and_fallback(void) {
    /* created in a scrambled order; returned in MaxText's execution order */
    const char *names[] = {"layers_outside_pipeline", "layers_1", "layers_0", "pipeline_module",
                           "moe_layers_0", "dense_layers", "layers_remainder", "scanned_blocks"};
    const char *want[] = {"dense_layers", "moe_layers_0", "pipeline_module/layers", "scanned_blocks",
                          "layers_0", "layers_1", "layers_outside_pipeline"};
    nnx_module *m = wrapped_decoder(8, names);
    check_layers(m, 7, want); /* layers_remainder: a tree of Variables has no num_of_layers */
    nnx_module_release(m);
    /* _i counts from 0 while the attribute exists: layers_3 is not reached without layers_0..2 */
    const char *gap[] = {"dense_layers_1", "layers_3", "norm", "dense_layers_0"};
    const char *gap_want[] = {"dense_layers_0", "dense_layers_1"};
    m = wrapped_decoder(4, gap);
    check_layers(m, 2, gap_want);
    nnx_module_release(m);
    /* none of the known names: every attribute with a layer prefix, in attribute order */
    const char *odd[] = {"layers_extra", "norm", "moe_layers_x", "dense_layers_final"};
    const char *fb[] = {"layers_extra", "moe_layers_x", "dense_layers_final"};
    m = wrapped_decoder(4, odd);
    check_layers(m, 3, fb);
    /* a static attribute carrying num_of_layers makes the remainder count; the same tree under
     * two names is returned once */
    lx_value tv;
    CHECK_EQ_INT(nnx_getattr(m, "layers_extra", &tv), LX_OK);
    lx_tree *rem = lx_tree_new();
    CHECK_EQ_INT(lx_tree_set(rem, "num_of_layers", lx_int_v(2)), LX_OK);
    lx_value rv = lx_tree_v(rem);
    CHECK_EQ_INT(nnx_setattr(m, "layers_remainder", &rv), LX_OK);
    CHECK_EQ_INT(nnx_setattr(m, "layers", &tv), LX_OK);
    CHECK_EQ_INT(nnx_setattr(m, "layers_0", &tv), LX_OK);
    const char *after[] = {"layers", "layers_remainder"};
    lx_flat l;
    CHECK_EQ_INT(bridge_to_nnx_get_layers(m, &l), LX_OK);
    CHECK_EQ_INT(l.len, 2);
    for (size_t i = 0; i < l.len && i < 2; i++) CHECK_STR(l.items[i].path, after[i]);
    lx_flat_free(&l);
    lx_tree_release(rem);
    nnx_module_release(m);
    /* errors */
    nnx_rngs *r = rngs_seed(0);
    CHECK_FAILS(bridge_to_nnx_get_layers(nnx_rngs_module(r), &l), LX_ERR_TYPE,
                "get_layers: 'Rngs' object is not a ToNNX module");
    CHECK_EQ_INT(l.len, 0);
    CHECK_FAILS(bridge_to_nnx_get_layers(NULL, &l), LX_ERR_INVALID_ARGUMENT, "get_layers: module is NULL");
    CHECK_FAILS(bridge_to_nnx_get_layers(nnx_rngs_module(r), NULL), LX_ERR_INVALID_ARGUMENT, "out is NULL");
    nnx_rngs_release(r);
}

/* ------------------------------------------------------------------ lazy_init */

/* An NNX module with an Rngs child that records every flag during its call. */
typedef struct {
    nnx_module base;
    nnx_module *rngs, *wrapped;
} spy;
static bool spy_seen[3];
static lx_status spy_call(nnx_module *m, const lx_call *c, lx_value *out) {
    spy *self = (spy *)m;
    spy_seen[0] = m->initializing;
    spy_seen[1] = self->rngs->initializing;
    spy_seen[2] = self->wrapped->initializing;
    if (lx_call_kwarg(c, "fail")) return lx_fail(LX_ERR_INVALID_ARGUMENT, "spy: asked to fail");
    return nnx_call(self->wrapped, NULL, c, out);
}
static lx_status spy_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    spy *self = (spy *)m;
    self->rngs = nnx_module_retain(nnx_rngs_module(rngs));
    linen_module *d = dense(2, true);
    lx_status s = bridge_to_nnx_new(d, rngs, NULL, &self->wrapped);
    linen_module_release(d);
    return s;
}
static const nnx_field SPY_FIELDS[] = {NNX_CHILD(spy, rngs), NNX_CHILD(spy, wrapped)};
static const nnx_method SPY_METHODS[] = {NNX_METHOD("__call__", spy_call)};
static const nnx_type SPY = {.name = "Spy", .size = sizeof(spy), .fields = SPY_FIELDS, .nfields = LX_COUNT(SPY_FIELDS),
                             .methods = SPY_METHODS, .nmethods = LX_COUNT(SPY_METHODS), .init = spy_init};

static void test_lazy_init_sets_and_clears_the_flag(void) {
    nnx_rngs *r = rngs_seed(0);
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&SPY, NULL, r, &m), LX_OK);
    spy *sp = (spy *)m;
    lx_array *x = ones(1, 3);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, ARGS1(x)), LX_OK);
    CHECK(spy_seen[0] && spy_seen[1] && spy_seen[2]); /* every module of the graph */
    CHECK(!m->initializing && !sp->rngs->initializing && !sp->wrapped->initializing);
    CHECK(value_at(m, "wrapped/kernel") != NULL);
    /* cleared on error too */
    lx_call failing = {1, LX_VALUES(lx_array_v(x)), 1, LX_KWARGS(LX_KW_BOOL("fail", true))};
    CHECK_FAILS(bridge_lazy_init(m, NULL, &failing), LX_ERR_INVALID_ARGUMENT, "spy: asked to fail");
    CHECK(spy_seen[0] && spy_seen[2]);
    CHECK(!m->initializing && !sp->rngs->initializing && !sp->wrapped->initializing);
    /* a second lazy_init re-runs Linen init and writes the new values into the same Variables */
    lx_variable *k = var_at(m, "wrapped/kernel");
    lx_array *before = lx_retain(lx_variable_get_value(k));
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, ARGS1(x)), LX_OK);
    CHECK(var_at(m, "wrapped/kernel") == k && !lx_array_equal(lx_variable_get_value(k), before));
    lx_release(before);
    nnx_module_release(m);
    nnx_rngs_release(r);
}

static void test_lazy_init_errors(void) {
    lx_array *x = ones(1, 3);
    CHECK_FAILS(bridge_lazy_init(NULL, NULL, ARGS1(x)), LX_ERR_INVALID_ARGUMENT,
                "fn = None needs to be a method of an NNX Module.");
    linen_module *foo = NULL;
    CHECK_EQ_INT(linen_module_new(&FOO, NULL, &foo), LX_OK);
    nnx_module *m = NULL;
    nnx_rngs *r = rngs_seed(0);
    CHECK_EQ_INT(bridge_to_nnx_new(foo, r, NULL, &m), LX_OK);
    CHECK_FAILS(bridge_lazy_init(m, "encode", ARGS1(x)), LX_ERR_INVALID_ARGUMENT,
                "fn = <ToNNX.encode> needs to be a method of an NNX Module.");
    CHECK(!m->initializing);
    CHECK_EQ_INT(stream_count(bridge_to_nnx_rngs(m), "default"), 0);
    /* an NNX module without __call__ (Rngs): the plain-module form is refused the same way */
    CHECK_FAILS(bridge_lazy_init(nnx_rngs_module(r), NULL, NULL), LX_ERR_INVALID_ARGUMENT,
                "fn = <Rngs.__call__> needs to be a method of an NNX Module.");
    /* the method's own failure comes back, and the flag is cleared */
    CHECK_FAILS(bridge_lazy_init(m, "dot", NULL), LX_ERR_TYPE, "missing required argument 'x'");
    CHECK(!m->initializing && !nnx_rngs_module(bridge_to_nnx_rngs(m))->initializing);
    nnx_module_release(m);
    nnx_rngs_release(r);
    linen_module_release(foo);
}

/* ------------------------------------------------------------------ construction and graph */

/* params/x and cache/x: one attribute path from two collections. */
static lx_status dup_call(linen_scope *s, const lx_call *c, lx_value *out) {
    (void)c;
    lx_initializer z = lx_init_zeros();
    lx_array *p;
    LX_TRY(linen_param(s, "x", &z, LX_F32, 1, (int64_t[]){2}, &p));
    lx_array *a = lx_autorelease(lx_array_new(LX_F32, 1, (int64_t[]){2}));
    lx_value av = lx_array_v(a);
    LX_TRY(linen_put_variable(s, "cache", "x", &av));
    *out = lx_none();
    return LX_OK;
}
static const linen_method DUP_METHODS[] = {LINEN_METHOD("__call__", dup_call)};
static const linen_type DUP = {.name = "Dup", .methods = DUP_METHODS, .nmethods = LX_COUNT(DUP_METHODS)};

static void test_construction_errors(void) {
    nnx_module *m = (nnx_module *)1;
    nnx_rngs *r = rngs_seed(0);
    lx_key k = {{1, 2}};
    CHECK_FAILS(bridge_to_nnx_new(NULL, r, NULL, &m), LX_ERR_INVALID_ARGUMENT, "ToNNX: the Linen module is NULL");
    CHECK(m == NULL);
    linen_module *d = dense(2, true);
    CHECK_FAILS(bridge_to_nnx_new(d, r, &k, &m), LX_ERR_INVALID_ARGUMENT, "give rngs (an Rngs) or a key, not both");
    CHECK_FAILS(bridge_to_nnx_new(d, r, NULL, NULL), LX_ERR_INVALID_ARGUMENT, "ToNNX: out is NULL");
    CHECK_EQ_INT(stream_count(r, "default"), 0);
    /* the NNX way: nnx_module_new with the Linen module as `to_nnx__module` */
    lx_call ok = LX_CALL_KWARGS(LX_KW("to_nnx__module", linen_module_v(d)));
    CHECK_EQ_INT(nnx_module_new(&bridge_ToNNX, &ok, r, &m), LX_OK);
    CHECK(bridge_to_nnx_linen_module(m) == d && bridge_to_nnx_rngs(m) != NULL);
    CHECK_EQ_INT(stream_count(r, "default"), 1);
    /* the Linen module is fixed at construction */
    lx_value other = lx_int_v(3);
    CHECK_FAILS(nnx_setattr(m, "to_nnx__module", &other), LX_ERR_TYPE,
                "cannot set attribute 'to_nnx__module' of 'ToNNX': it is fixed at construction");
    nnx_module_release(m);
    lx_call bad = LX_CALL_KWARGS(LX_KW_INT("to_nnx__module", 3));
    CHECK_FAILS(nnx_module_new(&bridge_ToNNX, &bad, NULL, &m), LX_ERR_TYPE,
                "ToNNX.__init__(): argument 'to_nnx__module' must be a Linen module, got 3");
    CHECK(bridge_to_nnx_linen_module(NULL) == NULL && bridge_to_nnx_rngs(nnx_rngs_module(r)) == NULL);
    CHECK(!bridge_is_to_nnx(nnx_rngs_module(r)));

    /* a path in two collections: Flax's duplicate error, and nothing is written */
    linen_module *dup = NULL;
    CHECK_EQ_INT(linen_module_new(&DUP, NULL, &dup), LX_OK);
    CHECK_EQ_INT(bridge_to_nnx_new(dup, r, NULL, &m), LX_OK);
    CHECK_FAILS(bridge_lazy_init(m, NULL, NULL), LX_ERR_EXISTS,
                "Found duplicate variable path ('x',) with variables");
    CHECK_EQ_INT(nnx_attr_count(m), 0);
    CHECK(!m->initializing);
    nnx_module_release(m);
    linen_module_release(dup);
    linen_module_release(d);
    nnx_rngs_release(r);
}

static void test_split_merge_clone_keep_the_linen_module(void) {
    linen_module *d = dense(3, true);
    nnx_rngs *r = rngs_seed(4);
    nnx_module *m = NULL, *merged = NULL, *cloned = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(d, r, NULL, &m), LX_OK);
    linen_module_release(d); /* the ToNNX keeps its own reference */
    nnx_rngs_release(r);
    lx_array *x = normal(1, 2, 4);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, ARGS1(x)), LX_OK);
    lx_array *y = lx_retain(call_array(m, NULL, ARGS1(x)));
    nnx_graphdef *gd = NULL;
    lx_tree *state = NULL;
    CHECK_EQ_INT(nnx_split(m, 0, NULL, &gd, &state), LX_OK);
    CHECK_EQ_INT(nnx_clone(m, &cloned), LX_OK);
    nnx_module_release(m); /* only the graphdef and the clone hold the Linen module now */
    CHECK_EQ_INT(nnx_merge(gd, 1, &state, &merged), LX_OK);
    CHECK(bridge_is_to_nnx(merged) && bridge_to_nnx_linen_module(merged) != NULL);
    lx_array *y2 = call_array(merged, NULL, ARGS1(x)), *y3 = call_array(cloned, NULL, ARGS1(x));
    CHECK(y2 && lx_array_equal(y, y2));
    CHECK(y3 && lx_array_equal(y, y3));
    nnx_graphdef_free(gd);
    lx_tree_release(state);
    nnx_module_release(merged);
    CHECK(call_array(cloned, "__call__", ARGS1(x)) != NULL);
    nnx_module_release(cloned);
    lx_release(y);
}

int main(void) {
    RUN(test_W2_linen_to_nnx);
    RUN(test_method_naming_a_field);
    RUN(test_to_linen_inside_refused_before_draw);
    RUN(test_linen_inside_nnx_flax_numbers);
    RUN(test_W3_linen_to_nnx_submodule);
    RUN(test_W4_linen_to_nnx_noncall_method);
    RUN(test_W5_linen_to_nnx_mutable);
    RUN(test_W7_linen_to_nnx_metadata);
    RUN(test_W7_custom_box_init);
    RUN(test_W8_linen_to_nnx_state_structure_consistency);
    RUN(test_W9_adding_new_attributes);
    RUN(test_linen_method_by_name);
    RUN(test_mutable_resolution);
    RUN(test_rng_routing);
    RUN(test_refused_arguments_draw_nothing);
    RUN(test_non_variable_attribute_is_an_error);
    RUN(test_view_follows_attribute_changes);
    RUN(test_get_layers_scanned);
    RUN(test_get_layers_unscanned);
    RUN(test_get_layers_order_and_fallback);
    RUN(test_lazy_init_sets_and_clears_the_flag);
    RUN(test_lazy_init_errors);
    RUN(test_construction_errors);
    RUN(test_split_merge_clone_keep_the_linen_module);
    return lx_test_finish();
}
