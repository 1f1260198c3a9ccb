/* flax.nnx layers: parameters equal Flax's for the same seed (fixtures from jax_random_ref.py),
 * outputs against hand math, train/eval, dropout masks, metadata, functional, errors. */
#include "linnx/nnx.h"
#include "linnx/nnx_layers.h"
#include "lx_test.h"

#include "fixtures/nnx_fixtures.h"

#define N_(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))

static nnx_rngs *seed(int64_t s) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(s, &r), LX_OK);
    return r;
}

static lx_variable *var(nnx_module *m, const char *path) {
    lx_tree *st = NULL;
    if (nnx_state(m, 0, NULL, &st) != LX_OK) return NULL;
    const lx_value *v = lx_tree_find(st, path);
    lx_variable *out = v && v->kind == LX_V_VARIABLE ? v->u.var : NULL;
    lx_tree_release(st); /* the module keeps the Variable alive */
    return out;
}

/* Every element within 1 ulp (truncated normal may differ by 1 ulp with XLA's log1p). */
static void check_values(lx_variable *v, int64_t n, const float *want, const char *what) {
    lx_array *a = v ? lx_variable_get_value(v) : NULL;
    LX_TEST_REPORT_(a && a->size == n, "%s: size", what);
    if (!a || a->size != n) return;
    uint32_t worst = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t d = lx_ulp_distance(lx_f32(a)[i], want[i]);
        if (d > worst) worst = d;
    }
    LX_TEST_REPORT_(worst <= 1, "%s: max ulp distance %u", what, worst);
}

static void check_const(lx_variable *v, int64_t n, float c, const char *what) {
    lx_array *a = v ? lx_variable_get_value(v) : NULL;
    bool ok = a && a->size == n;
    for (int64_t i = 0; ok && i < n; i++) ok = lx_f32(a)[i] == c;
    LX_TEST_REPORT_(ok, "%s: not all %g", what, c);
}

static uint32_t stream_count(nnx_rngs *r) {
    lx_tree *st = NULL;
    nnx_state(nnx_rngs_module(r), 0, NULL, &st);
    const lx_value *c = lx_tree_find(st, "default/count");
    uint32_t n = c ? lx_u32(lx_variable_get_value(c->u.var))[0] : 9999;
    lx_tree_release(st);
    return n;
}

static void test_linear(void) {
    nnx_rngs *r = seed(0);
    nnx_linear *lin = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 8, r, &lin), LX_OK);
    check_values(lin->kernel, 32, FX_LINEAR_4_8_KERNEL, "Linear(4, 8) kernel");
    check_const(lin->bias, 8, 0.0f, "Linear bias");
    CHECK(lx_shape_eq(lx_variable_get_value(lin->kernel), 2, (int64_t[]){4, 8}));
    CHECK_EQ_U32(stream_count(r), 2); /* kernel and bias keys */
    lx_tree *st = NULL;
    CHECK_EQ_INT(nnx_state((nnx_module *)lin, 0, NULL, &st), LX_OK);
    CHECK_EQ_INT(lx_tree_len(st), 2);
    CHECK_STR(lx_tree_key(st, 0), "bias");
    CHECK_STR(lx_tree_key(st, 1), "kernel");
    lx_tree_release(st);

    /* y = x @ W + b by hand on a small layer. */
    nnx_linear *small = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(2), lx_int_v(3));
    CHECK_EQ_INT(nnx_module_new(&nnx_Linear, &c, r, (nnx_module **)&small), LX_OK);
    float w[] = {1, 2, 3, 4, 5, 6}, b[] = {0.5f, -1, 2}, x[] = {1, -1, 2, 0.5f};
    lx_array *W = lx_array_from_f32(2, (int64_t[]){2, 3}, w), *B = lx_array_from_f32(1, (int64_t[]){3}, b);
    lx_variable_set_value(small->kernel, W, true);
    lx_variable_set_value(small->bias, B, true);
    lx_array *X = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 2}, x));
    lx_array *y = nnx_linear_forward(small, X);
    float want[] = {1 - 4 + 0.5f, 2 - 5 - 1, 3 - 6 + 2, 2 + 2 + 0.5f, 4 + 2.5f - 1, 6 + 3 + 2};
    CHECK(y && lx_shape_eq(y, 2, (int64_t[]){2, 3}));
    for (int i = 0; y && i < 6; i++) CHECK_NEAR(lx_f32(y)[i], want[i], 1e-6);
    /* nnx_call with a call record gives the same. */
    lx_value out;
    lx_call xc = LX_ARGS(X);
    CHECK_EQ_INT(nnx_call((nnx_module *)small, NULL, &xc, &out), LX_OK);
    CHECK(out.kind == LX_V_ARRAY && lx_array_equal(out.u.array, y));
    lx_value_free(&out);
    /* A wrong input shape fails with the op's message; nothing changes. */
    lx_array *bad = lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){2, 5}));
    CHECK_NULL_FAILS(nnx_linear_forward(small, bad), LX_ERR_SHAPE, "dot_general");
    lx_release(W);
    lx_release(B);

    /* use_bias=False; errors. */
    nnx_module *nb = NULL;
    lx_call c2 = {2, LX_VALUES(lx_int_v(3), lx_int_v(2)), 1, LX_KWARGS(LX_KW_BOOL("use_bias", false))};
    CHECK_EQ_INT(nnx_module_new(&nnx_Linear, &c2, r, &nb), LX_OK);
    CHECK(((nnx_linear *)nb)->bias == NULL && var(nb, "bias") == NULL);
    nnx_module_release(nb);
    CHECK_FAILS(nnx_module_new(&nnx_Linear, &c2, NULL, &nb), LX_ERR_TYPE,
                "Linear.__init__() missing 1 required keyword-only argument: 'rngs'");
    lx_call c3 = LX_CALL_ARGS(lx_int_v(0), lx_int_v(2));
    CHECK_FAILS(nnx_module_new(&nnx_Linear, &c3, r, &nb), LX_ERR_INVALID_ARGUMENT, "in_features must be positive");
    nnx_stream_spec only_dropout = {"dropout", false, 0, {{0, 0}}};
    nnx_rngs *rd = NULL;
    CHECK_EQ_INT(nnx_rngs_new(1, &only_dropout, &rd), LX_OK);
    CHECK_FAILS(nnx_module_new(&nnx_Linear, &c2, rd, &nb), LX_ERR_RNG, "No RngStream named 'params' found in Rngs.");
    nnx_rngs_release(rd);

    nnx_module_release((nnx_module *)small);
    nnx_module_release((nnx_module *)lin);
    nnx_rngs_release(r);
}

static void test_mlp_sequential(void) {
    nnx_rngs *r = seed(0);
    nnx_linear *l1 = NULL, *l2 = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 8, r, &l1), LX_OK);
    CHECK_EQ_INT(nnx_linear_new(8, 3, r, &l2), LX_OK);
    lx_call c = LX_CALL_ARGS(nnx_module_v((nnx_module *)l1), nnx_fn_v(&NNX_RELU), nnx_module_v((nnx_module *)l2));
    nnx_module *seq = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_Sequential, &c, NULL, &seq), LX_OK);
    nnx_module_release((nnx_module *)l1);
    nnx_module_release((nnx_module *)l2);
    /* The second Linear used draws 2 and 3 of the shared counter. */
    check_values(var(seq, "layers/0/kernel"), 32, FX_LINEAR_4_8_KERNEL, "MLP layer 0 kernel");
    check_values(var(seq, "layers/2/kernel"), 24, FX_MLP_LINEAR2_KERNEL, "MLP layer 2 kernel");
    CHECK(var(seq, "layers/1") == NULL);

    lx_array *x = lx_autorelease(lx_array_full_f32(2, (int64_t[]){2, 4}, 0.25f));
    lx_array *y = nnx_call_array(seq, x);
    CHECK(y && lx_shape_eq(y, 2, (int64_t[]){2, 3}));
    /* Same result as calling the layers by hand. */
    lx_array *h = lx_relu(nnx_linear_forward((nnx_linear *)nnx_module_from_value(&((nnx_sequential *)seq)->layers.items[0]), x));
    lx_array *y2 = nnx_linear_forward((nnx_linear *)nnx_module_from_value(&((nnx_sequential *)seq)->layers.items[2]), h);
    CHECK(lx_array_equal(y, y2));

    /* split -> merge: bit-identical outputs, functions kept, structure equal. */
    nnx_graphdef *g = NULL;
    lx_tree *st = NULL;
    CHECK_EQ_INT(nnx_split(seq, 0, NULL, &g, &st), LX_OK);
    nnx_module *m2 = NULL;
    CHECK_EQ_INT(nnx_merge(g, 1, &st, &m2), LX_OK);
    lx_array *y3 = nnx_call_array(m2, x);
    CHECK(lx_array_equal(y, y3));
    nnx_module *cl = NULL;
    CHECK_EQ_INT(nnx_clone(seq, &cl), LX_OK);
    CHECK(lx_array_equal(y, nnx_call_array(cl, x)));
    nnx_module_release(cl);
    nnx_graphdef_free(g);
    lx_tree_release(st);
    nnx_module_release(m2);

    lx_value out;
    nnx_module *empty = NULL;
    lx_call none = LX_NO_CALL;
    CHECK_EQ_INT(nnx_module_new(&nnx_Sequential, &none, NULL, &empty), LX_OK);
    /* no layers: the identity, as flax.nnx.Sequential() (tests/nnx/helpers_test.py: iden(12) == 12,
     * iden(12, 23) == (12, 23), iden() is None, iden(k=2) == {'k': 2}) */
    lx_call xc = LX_ARGS(x);
    CHECK_EQ_INT(nnx_call(empty, NULL, &xc, &out), LX_OK);
    CHECK(out.kind == LX_V_ARRAY && out.u.array == x); /* the same array, retained */
    lx_value_free(&out);
    lx_call two = LX_CALL_ARGS(lx_int_v(12), lx_int_v(23));
    CHECK_EQ_INT(nnx_call(empty, NULL, &two, &out), LX_OK);
    CHECK(out.kind == LX_V_TREE && lx_tree_len(out.u.tree) == 2);
    if (out.kind == LX_V_TREE) {
        const lx_value *v0 = lx_tree_get(out.u.tree, "0"), *v1 = lx_tree_get(out.u.tree, "1");
        CHECK(v0 && v0->kind == LX_V_INT && v0->u.i == 12);
        CHECK(v1 && v1->kind == LX_V_INT && v1->u.i == 23);
    }
    lx_value_free(&out);
    CHECK_EQ_INT(nnx_call(empty, NULL, &none, &out), LX_OK);
    CHECK(out.kind == LX_V_NONE);
    lx_kwarg kw[2] = {{"k", lx_int_v(2)}, {"rngs", nnx_module_v(nnx_rngs_module(r))}}; /* rngs is __call__'s own */
    lx_call kc = {0, NULL, 2, kw};
    CHECK_EQ_INT(nnx_call(empty, NULL, &kc, &out), LX_OK);
    CHECK(out.kind == LX_V_TREE && lx_tree_len(out.u.tree) == 1);
    if (out.kind == LX_V_TREE) {
        const lx_value *k = lx_tree_get(out.u.tree, "k");
        CHECK(k && k->kind == LX_V_INT && k->u.i == 2);
    }
    lx_value_free(&out);
    lx_value xv = lx_array_v(x);
    lx_call kr = {1, &xv, 1, kw + 1}; /* x, rngs=...: x */
    CHECK_EQ_INT(nnx_call(empty, NULL, &kr, &out), LX_OK);
    CHECK(out.kind == LX_V_ARRAY && out.u.array == x);
    lx_value_free(&out);
    /* a failed input (a NULL array) fails, as it does in a Sequential with layers */
    lx_clear_error();
    lx_call nullc = LX_ARGS(NULL);
    CHECK_FAILS(nnx_call(empty, NULL, &nullc, &out), LX_ERR_FAILED_INPUT, "Sequential: argument 0 is a NULL array");
    lx_kwarg nkw[1] = {{"x", lx_array_v(NULL)}};
    lx_call nullk = {0, NULL, 1, nkw};
    CHECK_FAILS(nnx_call(empty, NULL, &nullk, &out), LX_ERR_FAILED_INPUT, "Sequential: argument 'x' is a NULL array");
    lx_clear_error();
    CHECK(nnx_call_array(empty, NULL) == NULL); /* nothing pending: the NULL is reported as itself */
    CHECK_EQ_INT(lx_last_status(), LX_ERR_FAILED_INPUT);
    CHECK(strstr(lx_last_error(), "nnx_call_array: x is NULL") != NULL);
    lx_clear_error();
    nnx_module_release(empty);
    lx_call badc = LX_CALL_ARGS(lx_int_v(3));
    CHECK_FAILS(nnx_module_new(&nnx_Sequential, &badc, NULL, &empty), LX_ERR_TYPE, "layer 0 must be a module or a function");
    nnx_module_release(seq);
    nnx_rngs_release(r);
}

/* Layers for Sequential's calling convention. Pair(x) returns the tuple (x + 1, 2x), a tree
 * {"0": ..., "1": ...}; Kws(x) the dict {"b": 2x, "a": x + 1} (keyword order reversed); Sub(a, b)
 * is a - b (signature "a, b"); NoSig(x) declares no signature and returns 100x when it is handed
 * an rngs keyword, x otherwise. */
/* A tree {k0: v0, k1: v1} in that insertion order, as a method's result. */
static lx_status tree2(const char *k0, lx_array *v0, const char *k1, lx_array *v1, lx_value *out) {
    lx_tree *t = lx_tree_new();
    if (!t) return lx_last_status();
    lx_status s = v0 && v1 ? lx_tree_set(t, k0, lx_array_v(v0)) : lx_last_status();
    if (s == LX_OK) s = lx_tree_set(t, k1, lx_array_v(v1));
    if (s != LX_OK) {
        lx_tree_release(t);
        return s;
    }
    *out = lx_tree_v(t);
    return LX_OK;
}
static lx_status pair_call(nnx_module *m, const lx_call *c, lx_value *out) {
    (void)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return tree2("0", lx_add_scalar(x, 1.0f), "1", lx_mul_scalar(x, 2.0f), out);
}
static lx_status kws_call(nnx_module *m, const lx_call *c, lx_value *out) {
    (void)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return tree2("b", lx_mul_scalar(x, 2.0f), "a", lx_add_scalar(x, 1.0f), out);
}
static lx_status sub_call(nnx_module *m, const lx_call *c, lx_value *out) {
    (void)m;
    lx_array *a, *b;
    LX_TRY(lx_call_array(c, 0, "a", &a));
    LX_TRY(lx_call_array(c, 1, "b", &b));
    return nnx_return_array(out, lx_sub(a, b));
}
static lx_status nosig_call(nnx_module *m, const lx_call *c, lx_value *out) {
    (void)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return nnx_return_array(out, lx_call_kwarg(c, "rngs") ? lx_mul_scalar(x, 100.0f) : x);
}
/* {"inputs": x, "deterministic": True}: the keywords of a Dropout call */
static lx_status detkw_call(nnx_module *m, const lx_call *c, lx_value *out) {
    (void)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_tree *t = lx_tree_new();
    if (!t) return lx_last_status();
    lx_status s = lx_tree_set(t, "inputs", lx_array_v(x));
    if (s == LX_OK) s = lx_tree_set(t, "deterministic", lx_bool_v(true));
    if (s != LX_OK) {
        lx_tree_release(t);
        return s;
    }
    *out = lx_tree_v(t);
    return LX_OK;
}
static const nnx_type DETKW = {.name = "DetKw", .size = sizeof(nnx_module), NNX_METHODS(NNX_METHOD("__call__", detkw_call))};
static const nnx_type PAIR = {.name = "Pair", .size = sizeof(nnx_module), NNX_METHODS(NNX_METHOD("__call__", pair_call))};
static const nnx_type KWS = {.name = "Kws", .size = sizeof(nnx_module), NNX_METHODS(NNX_METHOD("__call__", kws_call))};
static const nnx_type SUB = {.name = "Sub", .size = sizeof(nnx_module), NNX_METHODS(NNX_METHOD("__call__", sub_call)),
                             .method_sigs = (const char *const[]){"a, b"}};
static const nnx_type NOSIG = {.name = "NoSig", .size = sizeof(nnx_module), NNX_METHODS(NNX_METHOD("__call__", nosig_call))};

static nnx_module *make(const nnx_type *t) {
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(t, &LX_NO_CALL, NULL, &m), LX_OK);
    return m;
}

/* Sequential(*layers) of n layers (module values or nnx_fn_v), the modules released to it. */
static nnx_module *seq_of(int n, const lx_value *layers) {
    nnx_module *seq = NULL;
    lx_call c = {n, layers, 0, NULL};
    CHECK_EQ_INT(nnx_module_new(&nnx_Sequential, &c, NULL, &seq), LX_OK);
    for (int i = 0; i < n; i++) nnx_module_release(nnx_module_from_value(&layers[i]));
    return seq;
}

static bool f32_are(const lx_value *v, int n, const float *want) {
    if (v->kind != LX_V_ARRAY || !v->u.array || v->u.array->size != n) return false;
    for (int i = 0; i < n; i++)
        if (lx_f32(v->u.array)[i] != want[i]) return false;
    return true;
}

/* flax.nnx.Sequential.__call__ (nnx/helpers.py): the call goes to the first layer; after it a
 * tuple output is the next layer's positional arguments, a dict its keyword arguments, anything
 * else its one argument; `rngs` reaches every layer that declares it and no other. */
static void test_sequential_calling(void) {
    const float xs[3] = {0.25f, -2.0f, 3.0f}, one_minus_x[3] = {0.75f, 3.0f, -2.0f};
    lx_array *x = lx_autorelease(lx_array_from_f32(1, (int64_t[]){3}, xs));
    lx_value out = lx_none();
    /* a tuple (x + 1, 2x) feeds Sub(a, b) by position: a - b = 1 - x (swapped it would be x - 1) */
    nnx_module *s1 = seq_of(2, LX_VALUES(nnx_module_v(make(&PAIR)), nnx_module_v(make(&SUB))));
    CHECK_EQ_INT(nnx_call(s1, NULL, &LX_ARGS(x), &out), LX_OK);
    CHECK(f32_are(&out, 3, one_minus_x));
    lx_value_free(&out);
    /* a dict {"b": 2x, "a": x + 1} feeds Sub by keyword */
    nnx_module *s2 = seq_of(2, LX_VALUES(nnx_module_v(make(&KWS)), nnx_module_v(make(&SUB))));
    CHECK_EQ_INT(nnx_call(s2, NULL, &LX_ARGS(x), &out), LX_OK);
    CHECK(f32_are(&out, 3, one_minus_x));
    lx_value_free(&out);
    /* a function takes one argument, as Python binds relu(x) */
    nnx_module *s3 = seq_of(2, LX_VALUES(nnx_module_v(make(&PAIR)), nnx_fn_v(&NNX_RELU)));
    CHECK_FAILS(nnx_call(s3, NULL, &LX_ARGS(x), &out), LX_ERR_TYPE, "relu() takes 1 positional argument but 2 were given");
    nnx_module *s4 = seq_of(2, LX_VALUES(nnx_module_v(make(&KWS)), nnx_fn_v(&NNX_RELU)));
    CHECK_FAILS(nnx_call(s4, NULL, &LX_ARGS(x), &out), LX_ERR_TYPE, "relu() got an unexpected keyword argument 'b'");
    /* the first layer gets the whole call, keywords included; a layer's arguments are checked
     * against its signature as a direct call's are */
    nnx_module *s5 = seq_of(2, LX_VALUES(nnx_module_v(make(&SUB)), nnx_fn_v(&NNX_RELU)));
    lx_array *two = lx_autorelease(lx_array_full_f32(1, (int64_t[]){3}, 2.0f));
    lx_call kwc = LX_CALL_KWARGS(LX_KW_ARRAY("b", two), LX_KW_ARRAY("a", x));
    CHECK_EQ_INT(nnx_call(s5, NULL, &kwc, &out), LX_OK);
    CHECK(f32_are(&out, 3, (const float[]){0.0f, 0.0f, 1.0f})); /* relu(x - 2) */
    lx_value_free(&out);
    lx_call posc = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW_ARRAY("b", two)));
    CHECK_EQ_INT(nnx_call(s5, NULL, &posc, &out), LX_OK);
    CHECK(f32_are(&out, 3, (const float[]){0.0f, 0.0f, 1.0f}));
    lx_value_free(&out);
    CHECK_FAILS(nnx_call(s5, NULL, &LX_ARGS(x), &out), LX_ERR_TYPE, "Sub.__call__() missing 1 required positional argument: 'b'");

    /* rngs: Linear(4, 4) -> Dropout(0.5) made without rngs, called with rngs=Rngs(7). Linear's
     * signature has no rngs (handing it one is a TypeError); the Dropout draws its key from it,
     * so the output is what the two layers give by hand with another Rngs(7). */
    nnx_rngs *r = seed(0);
    nnx_linear *lin = NULL;
    nnx_module *drop = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 4, r, &lin), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&nnx_Dropout, &LX_CALL_ARGS(lx_float_v(0.5)), NULL, &drop), LX_OK);
    nnx_module_retain(&lin->base);
    nnx_module_retain(drop);
    nnx_module *s6 = seq_of(2, LX_VALUES(nnx_module_v(&lin->base), nnx_module_v(drop)));
    float x8[8] = {1, -2, 3, 0.5f, -1, 2, 0.25f, 4};
    lx_array *xb = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 4}, x8));
    nnx_rngs *r7 = seed(7), *r7b = seed(7);
    lx_call rc = LX_CALL(LX_ARGS_LIST(lx_array_v(xb)), LX_KWARGS_LIST(LX_KW("rngs", nnx_module_v(nnx_rngs_module(r7)))));
    CHECK_EQ_INT(nnx_call(s6, NULL, &rc, &out), LX_OK);
    lx_array *h = nnx_linear_forward(lin, xb);
    lx_array *want = nnx_dropout_forward((nnx_dropout *)drop, h, -1, r7b);
    CHECK(out.kind == LX_V_ARRAY && want && lx_array_equal(out.u.array, want));
    int zeros = 0, kept = 0;
    for (int i = 0; h && out.kind == LX_V_ARRAY && i < 8; i++) {
        float y = lx_f32(out.u.array)[i], hv = lx_f32(h)[i];
        zeros += y == 0.0f;
        kept += y != 0.0f && y == hv / 0.5f;
    }
    CHECK(zeros > 0 && kept > 0 && zeros + kept == 8); /* each element dropped or scaled by 1 / 0.5 */
    lx_value_free(&out);
    /* a nested Sequential declares rngs too: the same draw reaches the Dropout inside it */
    nnx_module_retain(&lin->base);
    nnx_module_retain(drop);
    nnx_module *inner = seq_of(1, LX_VALUES(nnx_module_v(drop)));
    nnx_module *s7 = seq_of(2, LX_VALUES(nnx_module_v(&lin->base), nnx_module_v(inner)));
    nnx_rngs *r7c = seed(7);
    lx_call rc2 = LX_CALL(LX_ARGS_LIST(lx_array_v(xb)), LX_KWARGS_LIST(LX_KW("rngs", nnx_module_v(nnx_rngs_module(r7c)))));
    CHECK_EQ_INT(nnx_call(s7, NULL, &rc2, &out), LX_OK);
    CHECK(out.kind == LX_V_ARRAY && want && lx_array_equal(out.u.array, want));
    lx_value_free(&out);
    /* a dict output as a Dropout's keywords: deterministic=True keeps the input as it is */
    nnx_module_retain(drop);
    nnx_module *s9 = seq_of(2, LX_VALUES(nnx_module_v(make(&DETKW)), nnx_module_v(drop)));
    CHECK_EQ_INT(nnx_call(s9, NULL, &LX_ARGS(xb), &out), LX_OK);
    CHECK(out.kind == LX_V_ARRAY && out.u.array == xb);
    lx_value_free(&out);
    nnx_module_release(s9);
    /* rngs=None is no rngs: the Dropout has none of its own */
    lx_call rn = LX_CALL(LX_ARGS_LIST(lx_array_v(xb)), LX_KWARGS_LIST(LX_KW("rngs", lx_none())));
    CHECK_FAILS(nnx_call(s6, NULL, &rn, &out), LX_ERR_RNG, "no `rngs` argument was provided to Dropout");
    /* a layer with no declared signature is not handed rngs (Flax: a **kwargs does not count) */
    nnx_module *s8 = seq_of(2, LX_VALUES(nnx_module_v(make(&NOSIG)), nnx_module_v(make(&NOSIG))));
    lx_call rc3 = LX_CALL(LX_ARGS_LIST(lx_array_v(x)), LX_KWARGS_LIST(LX_KW("rngs", nnx_module_v(nnx_rngs_module(r7c)))));
    CHECK_EQ_INT(nnx_call(s8, NULL, &rc3, &out), LX_OK);
    CHECK(f32_are(&out, 3, xs));
    lx_value_free(&out);

    nnx_module *all[] = {s1, s2, s3, s4, s5, s6, s7, s8};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) nnx_module_release(all[i]);
    nnx_module_release(&lin->base);
    nnx_module_release(drop);
    nnx_rngs_release(r7);
    nnx_rngs_release(r7b);
    nnx_rngs_release(r7c);
    nnx_rngs_release(r);
    lx_clear_error();
}

static void test_conv(void) {
    nnx_rngs *r = seed(0);
    int64_t ks[] = {3, 3};
    lx_call c = LX_CALL_ARGS(lx_int_v(3), lx_int_v(4), lx_ints_v(2, ks));
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_Conv, &c, r, &m), LX_OK);
    CHECK(lx_shape_eq(lx_variable_get_value(((nnx_conv *)m)->kernel), 4, (int64_t[]){3, 3, 3, 4}));
    check_values(((nnx_conv *)m)->kernel, 108, FX_CONV_KERNEL, "Conv(3, 4, (3, 3)) kernel");
    check_const(((nnx_conv *)m)->bias, 4, 0.0f, "Conv bias");
    lx_array *x = lx_autorelease(lx_array_full_f32(4, (int64_t[]){1, 5, 5, 3}, 1.0f));
    lx_array *y = nnx_conv_forward((nnx_conv *)m, x);
    CHECK(y && lx_shape_eq(y, 4, (int64_t[]){1, 5, 5, 4})); /* SAME */
    /* unbatched input */
    lx_array *xu = lx_autorelease(lx_array_full_f32(3, (int64_t[]){5, 5, 3}, 1.0f));
    lx_array *yu = nnx_conv_forward((nnx_conv *)m, xu);
    CHECK(yu && lx_shape_eq(yu, 3, (int64_t[]){5, 5, 4}));
    nnx_module_release(m);

    /* 1-D hand math: Conv(1, 1, 3, padding='VALID') with kernel [1, 2, 3], bias 0.5. */
    int64_t k1[] = {3};
    lx_call c1 = {3, LX_VALUES(lx_int_v(1), lx_int_v(1), lx_ints_v(1, k1)), 1, LX_KWARGS(LX_KW_STR("padding", "VALID"))};
    CHECK_EQ_INT(nnx_module_new(&nnx_Conv, &c1, r, &m), LX_OK);
    float kw[] = {1, 2, 3};
    lx_array *K = lx_array_from_f32(3, (int64_t[]){3, 1, 1}, kw), *B = lx_array_full_f32(1, (int64_t[]){1}, 0.5f);
    CHECK_EQ_INT(lx_variable_set_value(((nnx_conv *)m)->kernel, K, true), LX_OK);
    CHECK_EQ_INT(lx_variable_set_value(((nnx_conv *)m)->bias, B, true), LX_OK);
    float xs[] = {1, 0, -1, 2, 4};
    lx_array *X = lx_autorelease(lx_array_from_f32(3, (int64_t[]){1, 5, 1}, xs));
    y = nnx_conv_forward((nnx_conv *)m, X);
    float want[] = {1 + 0 - 3 + 0.5f, 0 - 2 + 6 + 0.5f, -1 + 4 + 12 + 0.5f};
    CHECK(y && lx_shape_eq(y, 3, (int64_t[]){1, 3, 1}));
    for (int i = 0; y && i < 3; i++) CHECK_NEAR(lx_f32(y)[i], want[i], 1e-6);
    lx_release(K);
    lx_release(B);
    nnx_module_release(m);

    lx_call cg = {3, LX_VALUES(lx_int_v(3), lx_int_v(4), lx_ints_v(2, ks)), 1, LX_KWARGS(LX_KW_INT("feature_group_count", 2))};
    CHECK_FAILS(nnx_module_new(&nnx_Conv, &cg, r, &m), LX_ERR_INVALID_ARGUMENT, "must be divisible by feature_group_count");
    lx_call cp = {3, LX_VALUES(lx_int_v(3), lx_int_v(4), lx_ints_v(2, ks)), 1, LX_KWARGS(LX_KW_STR("padding", "WEIRD"))};
    CHECK_FAILS(nnx_module_new(&nnx_Conv, &cp, r, &m), LX_ERR_INVALID_ARGUMENT, "unknown padding 'WEIRD'");
    nnx_rngs_release(r);
}

static void test_embed(void) {
    nnx_rngs *r = seed(0);
    lx_call c = LX_CALL_ARGS(lx_int_v(5), lx_int_v(3));
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_Embed, &c, r, &m), LX_OK);
    nnx_embed *e = (nnx_embed *)m;
    check_values(e->embedding, 15, FX_EMBED, "Embed(5, 3) embedding");
    int32_t idx[] = {4, 0, 4};
    lx_array *I = lx_autorelease(lx_array_from_data(LX_I32, 1, (int64_t[]){3}, idx));
    lx_array *y = nnx_embed_forward(e, I);
    CHECK(y && lx_shape_eq(y, 2, (int64_t[]){3, 3}));
    for (int j = 0; y && j < 3; j++) {
        CHECK(lx_f32(y)[j] == FX_EMBED[12 + j]);
        CHECK(lx_f32(y)[3 + j] == FX_EMBED[j]);
    }
    /* attend: q @ embedding.T */
    float q[] = {1, 0, -1};
    lx_array *Q = lx_autorelease(lx_array_from_f32(1, (int64_t[]){3}, q));
    lx_value out;
    lx_call ac = LX_ARGS(Q);
    CHECK_EQ_INT(nnx_call(m, "attend", &ac, &out), LX_OK);
    CHECK(out.kind == LX_V_ARRAY && lx_shape_eq(out.u.array, 1, (int64_t[]){5}));
    for (int i = 0; out.kind == LX_V_ARRAY && i < 5; i++)
        CHECK_NEAR(lx_f32(out.u.array)[i], FX_EMBED[3 * i] - FX_EMBED[3 * i + 2], 1e-6);
    lx_value_free(&out);
    lx_array *F = lx_autorelease(lx_array_full_f32(1, (int64_t[]){2}, 1.0f));
    CHECK_NULL_FAILS(nnx_embed_forward(e, F), LX_ERR_DTYPE, "Input type must be an integer or unsigned integer.");
    nnx_module_release(m);
    nnx_rngs_release(r);
}

static void test_norms(void) {
    /* LayerNorm(3) draws two keys (scale, bias): the next Linear's kernel uses draw 2. */
    nnx_rngs *r = seed(0);
    lx_call c = LX_CALL_ARGS(lx_int_v(3));
    nnx_module *ln = NULL, *lin = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_LayerNorm, &c, r, &ln), LX_OK);
    CHECK_EQ_INT(nnx_linear_new(3, 2, r, (nnx_linear **)&lin), LX_OK);
    check_values(((nnx_linear *)lin)->kernel, 6, FX_AFTER_LN_KERNEL, "Linear after LayerNorm");
    check_const(((nnx_norm *)ln)->scale, 3, 1.0f, "LayerNorm scale");
    check_const(((nnx_norm *)ln)->bias, 3, 0.0f, "LayerNorm bias");
    float xs[] = {1, 2, 3, -1, 0, 5};
    lx_array *X = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 3}, xs));
    lx_array *y = nnx_layer_norm_forward((nnx_norm *)ln, X);
    CHECK(y != NULL);
    for (int row = 0; y && row < 2; row++) {
        double m = 0, v = 0;
        for (int j = 0; j < 3; j++) m += xs[3 * row + j] / 3.0;
        for (int j = 0; j < 3; j++) v += (xs[3 * row + j] - m) * (xs[3 * row + j] - m) / 3.0;
        for (int j = 0; j < 3; j++) CHECK_NEAR(lx_f32(y)[3 * row + j], (xs[3 * row + j] - m) / sqrt(v + 1e-6), 1e-5);
    }
    nnx_module_release(lin);
    nnx_module_release(ln);

    /* RMSNorm: scale only, one key. */
    nnx_module *rms = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_RMSNorm, &c, r, &rms), LX_OK);
    CHECK(((nnx_norm *)rms)->bias == NULL);
    y = nnx_rms_norm_forward((nnx_norm *)rms, X);
    double ms = (1 + 4 + 9) / 3.0;
    CHECK(y && fabs(lx_f32(y)[2] - 3 / sqrt(ms + 1e-6)) < 1e-5);
    nnx_module_release(rms);
    nnx_rngs_release(r);
}

static void test_batch_norm(void) {
    nnx_rngs *r = seed(0);
    lx_call c = LX_CALL_ARGS(lx_int_v(3));
    nnx_module *bn = NULL, *lin = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_BatchNorm, &c, r, &bn), LX_OK);
    CHECK_EQ_INT(nnx_linear_new(3, 2, r, (nnx_linear **)&lin), LX_OK);
    /* mean/var draw no key; scale and bias draw one each. */
    check_values(((nnx_linear *)lin)->kernel, 6, FX_AFTER_LN_KERNEL, "Linear after BatchNorm");
    nnx_module_release(lin);
    nnx_batch_norm *b = (nnx_batch_norm *)bn;
    CHECK(lx_variable_type(b->mean) == &lx_BatchStat && lx_variable_type(b->var) == &lx_BatchStat);
    check_const(b->mean, 3, 0.0f, "BatchNorm mean");
    check_const(b->var, 3, 1.0f, "BatchNorm var");
    lx_value mv;
    CHECK_EQ_INT(nnx_getattr(bn, "momentum", &mv), LX_OK);
    CHECK_NEAR(mv.u.f, 0.99, 0);
    CHECK_EQ_INT(nnx_getattr(bn, "epsilon", &mv), LX_OK);
    CHECK_NEAR(mv.u.f, 1e-5, 0);

    float xs[] = {1, 2, 3, 3, 6, 9};
    double mean[] = {2, 4, 6}, varr[] = {1, 4, 9};
    lx_array *X = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 3}, xs));
    lx_array *y = nnx_batch_norm_forward(b, X, -1); /* training: batch statistics */
    for (int i = 0; y && i < 6; i++) CHECK_NEAR(lx_f32(y)[i], (xs[i] - mean[i % 3]) / sqrt(varr[i % 3] + 1e-5), 1e-5);
    for (int j = 0; j < 3; j++) {
        CHECK_NEAR(lx_f32(lx_variable_get_value(b->mean))[j], 0.01 * mean[j], 1e-6);
        CHECK_NEAR(lx_f32(lx_variable_get_value(b->var))[j], 0.99 + 0.01 * varr[j], 1e-6);
    }
    /* eval: the running statistics, nothing updated. */
    lx_array *ra_m = lx_variable_get_value(b->mean);
    lx_array *ye = nnx_batch_norm_forward(b, X, 1);
    CHECK(lx_variable_get_value(b->mean) == ra_m);
    for (int i = 0; ye && i < 6; i++) {
        double m = 0.01 * mean[i % 3], v = 0.99 + 0.01 * varr[i % 3];
        CHECK_NEAR(lx_f32(ye)[i], (xs[i] - m) / sqrt(v + 1e-5), 1e-5);
    }
    /* use_running_average by kwarg through nnx_call; by setattr on the module. */
    lx_value out;
    lx_call ec = {1, LX_VALUES(lx_array_v(X)), 1, LX_KWARGS(LX_KW_BOOL("use_running_average", true))};
    CHECK_EQ_INT(nnx_call(bn, NULL, &ec, &out), LX_OK);
    CHECK(lx_array_equal(out.u.array, ye));
    lx_value_free(&out);
    lx_value t = lx_bool_v(true);
    CHECK_EQ_INT(nnx_setattr(bn, "use_running_average", &t), LX_OK);
    CHECK(lx_array_equal(nnx_call_array(bn, X), ye));

    /* Params vs batch stats, as Flax's filters split them. */
    lx_tree *st[3];
    nnx_filter fs[] = {NNX_OF_TYPE(&lx_Param), NNX_OF_TYPE(&lx_BatchStat)};
    CHECK_EQ_INT(nnx_split(bn, 2, fs, NULL, st), LX_OK);
    CHECK(lx_tree_find(st[0], "scale") && lx_tree_find(st[0], "bias") && lx_tree_len(st[0]) == 2);
    CHECK(lx_tree_find(st[1], "mean") && lx_tree_find(st[1], "var") && lx_tree_len(st[1]) == 2);
    for (int i = 0; i < 3; i++) lx_tree_release(st[i]);
    lx_array *bad = lx_autorelease(lx_array_new(LX_F32, 2, (int64_t[]){2, 4}));
    CHECK_NULL_FAILS(nnx_batch_norm_forward(b, bad, 0), LX_ERR_SHAPE,
                     "BatchNorm: input (2, 4) has no feature axis -1 of size 3");
    nnx_module_release(bn);
    nnx_rngs_release(r);
}

static void test_dropout(void) {
    nnx_rngs *r = seed(0);
    lx_call c = LX_CALL_ARGS(lx_float_v(0.5));
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_Dropout, &c, r, &m), LX_OK);
    nnx_dropout *d = (nnx_dropout *)m;
    /* The fork took draw 0 of default (fallback for 'dropout'). */
    CHECK_EQ_U32(stream_count(r), 1);
    lx_variable *k = var(m, "rngs/key");
    CHECK(k && lx_u32(lx_variable_get_value(k))[0] == FX_DROPOUT_FORK[0] &&
          lx_u32(lx_variable_get_value(k))[1] == FX_DROPOUT_FORK[1]);
    CHECK(var(m, "rngs/count") && lx_variable_type(var(m, "rngs/count")) == &lx_RngCount);
    lx_array *x = lx_autorelease(lx_array_full_f32(1, (int64_t[]){8}, 1.0f));
    lx_array *y0 = nnx_dropout_forward(d, x, -1, NULL);
    lx_array *y1 = nnx_dropout_forward(d, x, -1, NULL);
    for (int i = 0; y0 && y1 && i < 8; i++) {
        CHECK(lx_f32(y0)[i] == (FX_DROPOUT_KEEP_0[i] ? 2.0f : 0.0f));
        CHECK(lx_f32(y1)[i] == (FX_DROPOUT_KEEP_1[i] ? 2.0f : 0.0f));
    }
    CHECK(!lx_array_equal(y0, y1)); /* a new mask per draw */
    CHECK(nnx_dropout_forward(d, x, 1, NULL) == x);
    /* reseed: the same masks again after the same reseed. */
    CHECK_EQ_INT(nnx_rngs_reseed(m, "default", 5), LX_OK);
    lx_array *a = nnx_dropout_forward(d, x, -1, NULL), *a2 = nnx_dropout_forward(d, x, -1, NULL);
    CHECK_EQ_INT(nnx_rngs_reseed(m, "default", 5), LX_OK);
    lx_array *b = nnx_dropout_forward(d, x, -1, NULL), *b2 = nnx_dropout_forward(d, x, -1, NULL);
    CHECK(lx_array_equal(a, b) && lx_array_equal(a2, b2) && !lx_array_equal(a, a2));
    /* deterministic via the call; rngs passed to the call. */
    lx_value out;
    lx_call dc = {1, LX_VALUES(lx_array_v(x)), 1, LX_KWARGS(LX_KW_BOOL("deterministic", true))};
    CHECK_EQ_INT(nnx_call(m, NULL, &dc, &out), LX_OK);
    CHECK(lx_array_equal(out.u.array, x));
    lx_value_free(&out);
    nnx_module_release(m);

    /* Rngs(dropout=...): the stream is tagged 'dropout' and reseed(dropout=) reaches it. */
    nnx_stream_spec sp[] = {{"params", false, 0, {{0, 0}}}, {"dropout", false, 1, {{0, 0}}}};
    nnx_rngs *r2 = NULL;
    CHECK_EQ_INT(nnx_rngs_new(2, sp, &r2), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&nnx_Dropout, &c, r2, &m), LX_OK);
    lx_array *p = nnx_dropout_forward((nnx_dropout *)m, x, -1, NULL);
    CHECK_EQ_INT(nnx_rngs_reseed(m, "dropout", 1), LX_OK);
    lx_array *q = nnx_dropout_forward((nnx_dropout *)m, x, -1, NULL);
    CHECK(p && q);
    nnx_filter tag = NNX_TAG("dropout");
    lx_tree *ts = NULL;
    CHECK_EQ_INT(nnx_state(m, 1, &tag, &ts), LX_OK);
    CHECK_EQ_INT(lx_tree_count_leaves(ts), 2);
    lx_tree_release(ts);
    nnx_module_release(m);

    /* No dropout stream and no default: the constructor fails like Flax's KeyError. */
    nnx_rngs *r3 = NULL;
    CHECK_EQ_INT(nnx_rngs_new(1, sp, &r3), LX_OK);
    CHECK_FAILS(nnx_module_new(&nnx_Dropout, &c, r3, &m), LX_ERR_RNG, "No RngStream named 'dropout' found in Rngs.");
    /* No rngs at all: building works, calling in training mode does not. */
    CHECK_EQ_INT(nnx_module_new(&nnx_Dropout, &c, NULL, &m), LX_OK);
    CHECK_NULL_FAILS(nnx_dropout_forward((nnx_dropout *)m, x, -1, NULL), LX_ERR_RNG,
                     "`deterministic` is False, but no `rngs` argument was provided to Dropout");
    CHECK(nnx_dropout_forward((nnx_dropout *)m, x, -1, r2) != NULL);
    nnx_module_release(m);
    lx_call c1 = LX_CALL_ARGS(lx_float_v(1.0));
    CHECK_EQ_INT(nnx_module_new(&nnx_Dropout, &c1, NULL, &m), LX_OK);
    lx_array *z = nnx_dropout_forward((nnx_dropout *)m, x, -1, NULL);
    CHECK(z && lx_f32(z)[0] == 0.0f && lx_f32(z)[7] == 0.0f);
    nnx_module_release(m);
    lx_call cbad = LX_CALL_ARGS(lx_float_v(1.5));
    CHECK_FAILS(nnx_module_new(&nnx_Dropout, &cbad, NULL, &m), LX_ERR_INVALID_ARGUMENT, "rate must be in [0, 1]");
    nnx_rngs_release(r3);
    nnx_rngs_release(r2);
    nnx_rngs_release(r);
}

/* nnx.reseed(model, dropout=7) over two Dropout layers: Flax builds Rngs(dropout=7) and gives each
 * matching stream, in iter_graph order, the next key of it: fold_in(key(7), i), count 0. */
static bool key_eq(lx_variable *v, const uint32_t *want) {
    lx_array *a = v ? lx_variable_get_value(v) : NULL;
    return a && lx_u32(a)[0] == want[0] && lx_u32(a)[1] == want[1];
}

static void test_reseed_two_dropouts(void) {
    nnx_stream_spec sp[] = {{"params", false, 0, {{0, 0}}}, {"dropout", false, 1, {{0, 0}}}};
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_new(2, sp, &r), LX_OK);
    lx_call c = LX_CALL_ARGS(lx_float_v(0.5));
    nnx_module *d1 = NULL, *d2 = NULL, *seq = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_Dropout, &c, r, &d1), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&nnx_Dropout, &c, r, &d2), LX_OK);
    lx_call cs = LX_CALL_ARGS(nnx_module_v(d1), nnx_module_v(d2));
    CHECK_EQ_INT(nnx_module_new(&nnx_Sequential, &cs, NULL, &seq), LX_OK);
    lx_key k;
    CHECK_EQ_INT(nnx_rngs_stream_draw(((nnx_dropout *)d2)->rngs, &k), LX_OK); /* counts differ before */
    CHECK_EQ_INT(nnx_rngs_reseed(seq, "dropout", 7), LX_OK);
    CHECK(key_eq(var(seq, "layers/0/rngs/key"), FX_RESEED_7_KEY_0));
    CHECK(key_eq(var(seq, "layers/1/rngs/key"), FX_RESEED_7_KEY_1));
    lx_variable *c0 = var(seq, "layers/0/rngs/count"), *c1 = var(seq, "layers/1/rngs/count");
    CHECK(c0 && c1 && lx_u32(lx_variable_get_value(c0))[0] == 0 && lx_u32(lx_variable_get_value(c1))[0] == 0);
    lx_key k0, k1;
    CHECK_EQ_INT(nnx_rngs_stream_draw(((nnx_dropout *)d1)->rngs, &k0), LX_OK);
    CHECK_EQ_INT(nnx_rngs_stream_draw(((nnx_dropout *)d2)->rngs, &k1), LX_OK);
    CHECK(k0.k[0] == FX_RESEED_7_DRAW_0[0] && k0.k[1] == FX_RESEED_7_DRAW_0[1]);
    CHECK(k1.k[0] == FX_RESEED_7_DRAW_1[0] && k1.k[1] == FX_RESEED_7_DRAW_1[1]);
    /* another tag leaves them alone */
    CHECK_EQ_INT(nnx_rngs_reseed(seq, "params", 7), LX_OK);
    CHECK(key_eq(var(seq, "layers/1/rngs/key"), FX_RESEED_7_KEY_1));
    nnx_module_release(seq);
    nnx_module_release(d1);
    nnx_module_release(d2);
    nnx_rngs_release(r);
}

static void test_linear_general_lora(void) {
    nnx_rngs *r = seed(0);
    int64_t out[] = {2, 3};
    lx_call c = LX_CALL_ARGS(lx_int_v(4), lx_ints_v(2, out));
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_LinearGeneral, &c, r, &m), LX_OK);
    nnx_linear_general *lg = (nnx_linear_general *)m;
    CHECK(lx_shape_eq(lx_variable_get_value(lg->kernel), 3, (int64_t[]){4, 2, 3}));
    check_values(lg->kernel, 24, FX_LINEAR_GENERAL_KERNEL, "LinearGeneral(4, (2, 3)) kernel (flat init)");
    CHECK(lx_shape_eq(lx_variable_get_value(lg->bias), 2, (int64_t[]){2, 3}));
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (int64_t[]){5, 4}, 1.0f));
    lx_array *y = nnx_linear_general_forward(lg, x);
    CHECK(y && lx_shape_eq(y, 3, (int64_t[]){5, 2, 3}));
    for (int j = 0; y && j < 6; j++) {
        double s = 0;
        for (int i = 0; i < 4; i++) s += FX_LINEAR_GENERAL_KERNEL[6 * i + j];
        CHECK_NEAR(lx_f32(y)[j], s, 1e-5);
    }
    nnx_module_release(m);
    int64_t in2[] = {2, 3}, ax[] = {-2, -1}, o1[] = {4};
    lx_call c2 = {2, LX_VALUES(lx_ints_v(2, in2), lx_ints_v(1, o1)), 1, LX_KWARGS(LX_KW("axis", lx_ints_v(2, ax)))};
    CHECK_EQ_INT(nnx_module_new(&nnx_LinearGeneral, &c2, r, &m), LX_OK);
    lx_array *x3 = lx_autorelease(lx_array_full_f32(3, (int64_t[]){7, 2, 3}, 1.0f));
    y = nnx_linear_general_forward((nnx_linear_general *)m, x3);
    CHECK(y && lx_shape_eq(y, 2, (int64_t[]){7, 4}));
    nnx_module_release(m);
    lx_call c3 = {2, LX_VALUES(lx_ints_v(2, in2), lx_ints_v(1, o1)), 0, NULL};
    CHECK_FAILS(nnx_module_new(&nnx_LinearGeneral, &c3, r, &m), LX_ERR_INVALID_ARGUMENT,
                "in_features and axis must have the same length. Got (2, 3) and (-1,).");
    nnx_rngs_release(r);

    /* LoRA(4, 2, 3): LoRAParam a (he_uniform, draw 0) and b (zeros, draw 1); a LoRAParam is a Param. */
    r = seed(0);
    nnx_module *base = NULL;
    nnx_rngs *rb = seed(3);
    CHECK_EQ_INT(nnx_linear_new(4, 3, rb, (nnx_linear **)&base), LX_OK);
    lx_call lc = {3, LX_VALUES(lx_int_v(4), lx_int_v(2), lx_int_v(3)), 1, LX_KWARGS(LX_KW("base_module", nnx_module_v(base)))};
    CHECK_EQ_INT(nnx_module_new(&nnx_LoRA, &lc, r, &m), LX_OK);
    nnx_lora *lo = (nnx_lora *)m;
    CHECK(lx_variable_type(lo->lora_a) == &lx_LoRAParam);
    check_values(lo->lora_a, 8, FX_LORA_A, "LoRA lora_a");
    check_const(lo->lora_b, 6, 0.0f, "LoRA lora_b");
    CHECK(lo->base_module == base);
    lx_array *xl = lx_autorelease(lx_array_full_f32(2, (int64_t[]){2, 4}, 0.5f));
    CHECK(lx_array_equal(nnx_lora_forward(lo, xl), nnx_linear_forward((nnx_linear *)base, xl))); /* b = 0 */
    nnx_filter lf = NNX_OF_TYPE(&lx_LoRAParam), pf = NNX_OF_TYPE(&lx_Param);
    lx_tree *s = NULL;
    CHECK_EQ_INT(nnx_state(m, 1, &lf, &s), LX_OK);
    CHECK_EQ_INT(lx_tree_count_leaves(s), 2);
    lx_tree_release(s);
    CHECK_EQ_INT(nnx_state(m, 1, &pf, &s), LX_OK);
    CHECK_EQ_INT(lx_tree_count_leaves(s), 4); /* base_module/bias, base_module/kernel, lora_a, lora_b */
    CHECK(lx_tree_find(s, "base_module/kernel") != NULL);
    lx_tree_release(s);
    /* merge rebuilds the base module as a child, not from config. */
    nnx_graphdef *g;
    lx_tree *st;
    CHECK_EQ_INT(nnx_split(m, 0, NULL, &g, &st), LX_OK);
    nnx_module *m2;
    CHECK_EQ_INT(nnx_merge(g, 1, &st, &m2), LX_OK);
    CHECK(((nnx_lora *)m2)->base_module && ((nnx_lora *)m2)->base_module != base);
    CHECK(lx_array_equal(nnx_call_array(m2, xl), nnx_lora_forward(lo, xl)));
    nnx_module_release(m2);
    nnx_graphdef_free(g);
    lx_tree_release(st);
    nnx_module_release(m);
    nnx_module_release(base);
    nnx_rngs_release(rb);
    nnx_rngs_release(r);
}

static void test_mha(void) {
    nnx_rngs *r = seed(0);
    /* decode=False: Flax's MHA refuses a call with decode None both here and at the call */
    lx_call c = {2, LX_VALUES(lx_int_v(2), lx_int_v(4)), 1, LX_KWARGS(LX_KW_BOOL("decode", false))};
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_MultiHeadAttention, &c, r, &m), LX_OK);
    CHECK(lx_shape_eq(lx_variable_get_value(var(m, "query/kernel")), 3, (int64_t[]){4, 2, 2}));
    check_values(var(m, "query/kernel"), 16, FX_MHA_QUERY, "MHA query kernel");
    check_values(var(m, "key/kernel"), 16, FX_MHA_KEY, "MHA key kernel");
    check_values(var(m, "value/kernel"), 16, FX_MHA_VALUE, "MHA value kernel");
    CHECK(lx_shape_eq(lx_variable_get_value(var(m, "out/kernel")), 3, (int64_t[]){2, 2, 4}));
    check_values(var(m, "out/kernel"), 16, FX_MHA_OUT, "MHA out kernel");
    CHECK(var(m, "query/bias") && var(m, "rngs/key") == NULL);
    lx_array *x = lx_autorelease(lx_array_full_f32(3, (int64_t[]){1, 3, 4}, 0.5f));
    lx_array *y = nnx_call_array(m, x);
    CHECK(y && lx_shape_eq(y, 3, (int64_t[]){1, 3, 4}));
    lx_array *bad = lx_autorelease(lx_array_full_f32(3, (int64_t[]){1, 3, 5}, 0.5f));
    CHECK_NULL_FAILS(nnx_mha_forward((nnx_mha *)m, bad, NULL, NULL, NULL, -1, NULL), LX_ERR_SHAPE,
                     "Incompatible input dimension, got 5 but module expects 4.");
    nnx_module_release(m);

    /* Hand math: one head of size 2, identity projections, no biases:
     * out = softmax(x x^T / sqrt(2)) x. */
    lx_call c1 = {2, LX_VALUES(lx_int_v(1), lx_int_v(2)), 2, LX_KWARGS(LX_KW_BOOL("use_bias", false), LX_KW_BOOL("decode", false))};
    CHECK_EQ_INT(nnx_module_new(&nnx_MultiHeadAttention, &c1, r, &m), LX_OK);
    float id[] = {1, 0, 0, 1};
    lx_array *I3 = lx_array_from_f32(3, (int64_t[]){2, 1, 2}, id), *O3 = lx_array_from_f32(3, (int64_t[]){1, 2, 2}, id);
    lx_variable_set_value(var(m, "query/kernel"), I3, true);
    lx_variable_set_value(var(m, "key/kernel"), I3, true);
    lx_variable_set_value(var(m, "value/kernel"), I3, true);
    lx_variable_set_value(var(m, "out/kernel"), O3, true);
    lx_release(I3);
    lx_release(O3);
    float xs[] = {1, 0, 0, 2};
    lx_array *X = lx_autorelease(lx_array_from_f32(3, (int64_t[]){1, 2, 2}, xs));
    y = nnx_call_array(m, X);
    for (int qi = 0; y && qi < 2; qi++) {
        double l[2], den = 0;
        for (int k = 0; k < 2; k++) {
            l[k] = (xs[2 * qi] * xs[2 * k] + xs[2 * qi + 1] * xs[2 * k + 1]) / sqrt(2.0);
            den += exp(l[k]);
        }
        for (int d = 0; d < 2; d++) {
            double o = 0;
            for (int k = 0; k < 2; k++) o += exp(l[k]) / den * xs[2 * k + d];
            CHECK_NEAR(lx_f32(y)[2 * qi + d], o, 1e-5);
        }
    }
    nnx_module_release(m);

    /* normalize_qk adds query_ln/key_ln (scale only); dropout keeps a fork. */
    lx_call c2 = {2, LX_VALUES(lx_int_v(2), lx_int_v(4)), 4,
                  LX_KWARGS(LX_KW_BOOL("normalize_qk", true), LX_KW_FLOAT("dropout_rate", 0.5),
                            LX_KW_BOOL("deterministic", false), LX_KW_BOOL("decode", false))};
    CHECK_EQ_INT(nnx_module_new(&nnx_MultiHeadAttention, &c2, r, &m), LX_OK);
    CHECK(var(m, "query_ln/scale") && !var(m, "query_ln/bias") && var(m, "key_ln/scale"));
    CHECK(var(m, "rngs/key") && var(m, "rngs/count"));
    lx_array *d1 = lx_retain(nnx_call_array(m, x)), *d2 = nnx_call_array(m, x);
    CHECK(d1 && d2 && !lx_array_equal(d1, d2));
    lx_value out;
    lx_call dc = {1, LX_VALUES(lx_array_v(x)), 1, LX_KWARGS(LX_KW_BOOL("deterministic", true))};
    CHECK_EQ_INT(nnx_call(m, NULL, &dc, &out), LX_OK);
    lx_value_free(&out);
    lx_release(d1);
    nnx_module_release(m);
    lx_call c3 = LX_CALL_ARGS(lx_int_v(3), lx_int_v(4));
    CHECK_FAILS(nnx_module_new(&nnx_MultiHeadAttention, &c3, r, &m), LX_ERR_INVALID_ARGUMENT,
                "Memory dimension (4) must be divisible by 'num_heads' heads (3).");
    nnx_rngs_release(r);
}

/* Linear(4, 8, kernel_init=nnx.with_partitioning(lecun_normal(), ('in', 'out'))): the Variable
 * gets out_sharding and mesh=None; the values are Flax's for the seed (no extra key drawn). */
static void test_with_partitioning(void) {
    nnx_rngs *r = seed(0);
    lx_initializer ln = lx_init_lecun_normal(), z = lx_init_zeros(), kinit, binit;
    const char *in_out[] = {"in", "out"}, *alias[] = {"out-alias"}, *rules[] = {"out-alias", "out"};
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 2, in_out, NULL, &kinit), LX_OK);
    CHECK_EQ_INT(lx_init_with_logical_partitioning(&z, 1, alias, "mesh0", 2, rules, &binit), LX_OK);
    lx_call c = {2, LX_VALUES(lx_int_v(4), lx_int_v(8)), 2,
                 LX_KWARGS(LX_KW("kernel_init", lx_ptr_v("initializer", &kinit)),
                           LX_KW("bias_init", lx_ptr_v("initializer", &binit)))};
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_Linear, &c, r, &m), LX_OK);
    nnx_linear *lin = (nnx_linear *)m;
    check_values(lin ? lin->kernel : NULL, 32, FX_LINEAR_4_8_KERNEL, "partitioned Linear(4, 8) kernel");
    CHECK_EQ_U32(stream_count(r), 2);
    lx_variable *k = lin ? lin->kernel : NULL, *b = lin ? lin->bias : NULL;
    CHECK(k && strs_are(lx_variable_meta_get(k, "out_sharding"), 2, in_out));
    const lx_value *mesh = k ? lx_variable_meta_get(k, "mesh") : NULL;
    CHECK(mesh && mesh->kind == LX_V_NONE);
    CHECK(k && lx_variable_meta_get(k, "sharding_rules") == NULL);
    CHECK(k && lx_variable_meta_get(k, "linen_meta_type") == NULL); /* nnx's, not bridge's */
    CHECK(b && strs_are(lx_variable_meta_get(b, "out_sharding"), 1, alias));
    CHECK(b && strs_are(lx_variable_meta_get(b, "sharding_rules"), 2, rules));
    mesh = b ? lx_variable_meta_get(b, "mesh") : NULL;
    CHECK(mesh && mesh->kind == LX_V_STR && strcmp(mesh->u.s, "mesh0") == 0);
    nnx_module_release(m);

    /* With kernel_metadata too: the initializer's keys win (Flax's Variable.__init__ updates the
     * keyword metadata with the VariableMetadata), an alias of out_sharding goes with it (no
     * "given twice" error), other keys stay. */
    lx_tree *md = lx_tree_new();
    const char *xy[] = {"x", "y"};
    lx_tree_set(md, "sharding_names", lx_strs_v(2, xy));
    lx_tree_set(md, "mesh", lx_str_v("mesh1"));
    lx_tree_set(md, "note", lx_int_v(7));
    lx_call cm = {2, LX_VALUES(lx_int_v(4), lx_int_v(8)), 2,
                  LX_KWARGS(LX_KW("kernel_init", lx_ptr_v("initializer", &kinit)), LX_KW("kernel_metadata", lx_tree_v(md)))};
    CHECK_EQ_INT(nnx_module_new(&nnx_Linear, &cm, r, &m), LX_OK);
    k = m ? ((nnx_linear *)m)->kernel : NULL;
    CHECK(k && strs_are(lx_variable_meta_get(k, "out_sharding"), 2, in_out));
    mesh = k ? lx_variable_meta_get(k, "mesh") : NULL;
    CHECK(mesh && mesh->kind == LX_V_NONE);
    const lx_value *note = k ? lx_variable_meta_get(k, "note") : NULL;
    CHECK(note && note->kind == LX_V_INT && note->u.i == 7);
    CHECK_EQ_INT(lx_tree_len(md), 3); /* the layer's map is not changed */
    nnx_module_release(m);
    lx_tree_release(md);

    /* LinearGeneral initialises flat and reshapes: the names describe the (4, 2, 3) kernel. */
    lx_initializer k3;
    const char *three[] = {"embed", "heads", NULL};
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 3, three, NULL, &k3), LX_OK);
    int64_t out23[] = {2, 3};
    lx_call cg = {2, LX_VALUES(lx_int_v(4), lx_ints_v(2, out23)), 1,
                  LX_KWARGS(LX_KW("kernel_init", lx_ptr_v("initializer", &k3)))};
    nnx_rngs *r0 = seed(0);
    CHECK_EQ_INT(nnx_module_new(&nnx_LinearGeneral, &cg, r0, &m), LX_OK);
    k = m ? ((nnx_linear_general *)m)->kernel : NULL;
    CHECK(k && lx_shape_eq(lx_variable_get_value(k), 3, (int64_t[]){4, 2, 3}));
    check_values(k, 24, FX_LINEAR_GENERAL_KERNEL, "partitioned LinearGeneral kernel");
    CHECK(k && strs_are(lx_variable_meta_get(k, "out_sharding"), 3, three));
    nnx_module_release(m);
    /* ... and in eval_shape: abstract, metadata present. */
    CHECK_EQ_INT(nnx_eval_shape(&nnx_LinearGeneral, &cg, r0, &m), LX_OK);
    k = m ? ((nnx_linear_general *)m)->kernel : NULL;
    CHECK(k && lx_is_abstract(lx_variable_get_value(k)) && strs_are(lx_variable_meta_get(k, "out_sharding"), 3, three));
    nnx_module_release(m);
    nnx_rngs_release(r0);

    /* More names than the kernel's rank: an error naming the layer and the attribute. */
    lx_call c3 = {2, LX_VALUES(lx_int_v(4), lx_int_v(8)), 1, LX_KWARGS(LX_KW("bias_init", lx_ptr_v("initializer", &kinit)))};
    CHECK_FAILS(nnx_module_new(&nnx_Linear, &c3, r, &m), LX_ERR_SHAPE,
                "Linear.bias: with_partitioning: names ('in', 'out') have 2 entries, more than the rank of a "
                "value of shape (8,)");

    /* nnx_initializer_metadata on its own. */
    lx_tree *got = NULL;
    CHECK_EQ_INT(nnx_initializer_metadata(&ln, &got), LX_OK);
    CHECK(got && lx_tree_len(got) == 0);
    lx_tree_release(got);
    lx_initializer lnone;
    CHECK_EQ_INT(lx_init_with_logical_partitioning(&ln, 1, alias, NULL, 0, NULL, &lnone), LX_OK);
    CHECK_EQ_INT(nnx_initializer_metadata(&lnone, &got), LX_OK);
    CHECK(got && lx_tree_len(got) == 3 && lx_tree_get(got, "sharding_rules")->kind == LX_V_NONE);
    lx_tree_release(got);
    CHECK_FAILS(nnx_initializer_metadata(NULL, &got), LX_ERR_INVALID_ARGUMENT, "nnx_initializer_metadata: init is NULL");
    nnx_rngs_release(r);
}

static void test_metadata_eval_shape_functional(void) {
    nnx_rngs *r = seed(0);
    const char *names[] = {"in", "out"};
    lx_tree *md = NULL;
    CHECK_EQ_INT(nnx_sharding_metadata(2, names, "mesh0", &md), LX_OK);
    lx_call c = {2, LX_VALUES(lx_int_v(4), lx_int_v(8)), 1, LX_KWARGS(LX_KW("kernel_metadata", lx_tree_v(md)))};
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_module_new(&nnx_Linear, &c, r, &m), LX_OK);
    const lx_value *os = lx_variable_meta_get(((nnx_linear *)m)->kernel, "out_sharding");
    CHECK(os && os->kind == LX_V_STRS && os->u.strs.n == 2 && strcmp(os->u.strs.v[1], "out") == 0);
    const lx_value *mesh = lx_variable_meta_get(((nnx_linear *)m)->kernel, "mesh");
    CHECK(mesh && mesh->kind == LX_V_STR && strcmp(mesh->u.s, "mesh0") == 0);
    CHECK(lx_variable_meta_get(((nnx_linear *)m)->bias, "out_sharding") == NULL);
    nnx_module_release(m);
    lx_call cb = {2, LX_VALUES(lx_int_v(4), lx_int_v(8)), 1, LX_KWARGS(LX_KW_INT("kernel_metadata", 3))};
    CHECK_FAILS(nnx_module_new(&nnx_Linear, &cb, r, &m), LX_ERR_TYPE, "metadata must be a mapping");
    lx_tree_release(md);

    /* More names than the parameter's rank through the layer's metadata: the initializer's rule
     * (LX_ERR_SHAPE naming the attribute), also through an alias; as many as axes is fine. */
    const char *three[] = {"a", "b", "c"};
    CHECK_EQ_INT(nnx_sharding_metadata(3, three, NULL, &md), LX_OK);
    lx_call c3 = {2, LX_VALUES(lx_int_v(4), lx_int_v(8)), 1, LX_KWARGS(LX_KW("kernel_metadata", lx_tree_v(md)))};
    m = (nnx_module *)&m;
    CHECK_FAILS(nnx_module_new(&nnx_Linear, &c3, r, &m), LX_ERR_SHAPE,
                "Linear.kernel: Param: out_sharding ('a', 'b', 'c') has 3 entries, more than the rank of a value of "
                "shape (4, 8)");
    CHECK(m == NULL);
    CHECK_FAILS(nnx_eval_shape(&nnx_Linear, &c3, r, &m), LX_ERR_SHAPE, "Linear.kernel: Param: out_sharding");
    lx_tree_release(md);
    lx_tree *ma = lx_tree_new();
    lx_tree_set(ma, "sharding", lx_strs_v(2, three));
    lx_call cbias = {2, LX_VALUES(lx_int_v(4), lx_int_v(8)), 1, LX_KWARGS(LX_KW("bias_metadata", lx_tree_v(ma)))};
    CHECK_FAILS(nnx_module_new(&nnx_Linear, &cbias, r, &m), LX_ERR_SHAPE,
                "Linear.bias: Param: out_sharding ('a', 'b') has 2 entries, more than the rank of a value of shape (8,)");
    lx_call cok = {2, LX_VALUES(lx_int_v(4), lx_int_v(8)), 1, LX_KWARGS(LX_KW("kernel_metadata", lx_tree_v(ma)))};
    CHECK_EQ_INT(nnx_module_new(&nnx_Linear, &cok, r, &m), LX_OK);
    os = m ? lx_variable_meta_get(((nnx_linear *)m)->kernel, "out_sharding") : NULL;
    CHECK(os && os->kind == LX_V_STRS && os->u.strs.n == 2);
    nnx_module_release(m);
    lx_tree_release(ma);

    /* nnx_sharding_metadata refuses what no array could take: NULL names with a count, a count
     * outside 0..LX_MAX_DIMS (*out NULL); names=() is fine. */
    md = (lx_tree *)&md;
    CHECK_FAILS(nnx_sharding_metadata(2, NULL, NULL, &md), LX_ERR_INVALID_ARGUMENT, "nnx_sharding_metadata: names is NULL");
    CHECK(md == NULL);
    CHECK_FAILS(nnx_sharding_metadata(-1, three, NULL, &md), LX_ERR_INVALID_ARGUMENT,
                "nnx_sharding_metadata: -1 names; an array has 0 to 8 axes to name");
    CHECK_FAILS(nnx_sharding_metadata(LX_MAX_DIMS + 1, three, NULL, &md), LX_ERR_INVALID_ARGUMENT, "9 names");
    CHECK(md == NULL);
    CHECK_EQ_INT(nnx_sharding_metadata(0, NULL, "m", &md), LX_OK);
    os = md ? lx_tree_get(md, "out_sharding") : NULL;
    CHECK(os && os->kind == LX_V_STRS && os->u.strs.n == 0);
    lx_tree_release(md);

    /* eval_shape: structure only, nothing parameter-sized. */
    int64_t live = lx_array_live_count();
    lx_call big = LX_CALL_ARGS(lx_int_v(4096), lx_int_v(4096));
    CHECK_EQ_INT(nnx_eval_shape(&nnx_Linear, &big, r, &m), LX_OK);
    CHECK(lx_is_abstract(lx_variable_get_value(((nnx_linear *)m)->kernel)));
    CHECK(lx_shape_eq(lx_variable_get_value(((nnx_linear *)m)->kernel), 2, (int64_t[]){4096, 4096}));
    CHECK(lx_array_live_count() - live <= 4);
    nnx_module_release(m);
    int64_t ks[] = {3, 3};
    lx_call cc = LX_CALL_ARGS(lx_int_v(3), lx_int_v(16), lx_ints_v(2, ks));
    CHECK_EQ_INT(nnx_eval_shape(&nnx_Conv, &cc, r, &m), LX_OK);
    CHECK(lx_is_abstract(lx_variable_get_value(((nnx_conv *)m)->kernel)));
    nnx_module_release(m);
    lx_call mc = {2, LX_VALUES(lx_int_v(2), lx_int_v(4)), 1, LX_KWARGS(LX_KW_BOOL("decode", false))};
    CHECK_EQ_INT(nnx_eval_shape(&nnx_MultiHeadAttention, &mc, r, &m), LX_OK);
    lx_array *x = lx_autorelease(lx_array_abstract(LX_F32, 3, (int64_t[]){1, 3, 4}));
    lx_array *y = nnx_call_array(m, x);
    CHECK(y && lx_is_abstract(y) && lx_shape_eq(y, 3, (int64_t[]){1, 3, 4}));
    nnx_module_release(m);

    /* functional(Linear)(2, 3).init(rngs) / .apply(state)(x) */
    nnx_functional *f = NULL;
    lx_call fc = LX_CALL_ARGS(lx_int_v(2), lx_int_v(3));
    CHECK_EQ_INT(nnx_functional_new(&nnx_Linear, &fc, &f), LX_OK);
    lx_value out;
    lx_array *xi = lx_autorelease(lx_array_full_f32(2, (int64_t[]){1, 2}, 1.0f));
    lx_call xc = LX_ARGS(xi);
    CHECK_FAILS(nnx_functional_apply(f, 0, NULL, NULL, &xc, &out, NULL), LX_ERR_INVALID_ARGUMENT,
                "Functional.apply: no graphdef; call init first");
    lx_tree *st = NULL, *ns = NULL;
    CHECK_EQ_INT(nnx_functional_init(f, r, &st), LX_OK);
    CHECK(lx_tree_find(st, "kernel") && lx_tree_find(st, "bias") && nnx_functional_graphdef(f));
    CHECK_EQ_INT(nnx_functional_apply(f, 1, &st, NULL, &xc, &out, &ns), LX_OK);
    lx_array *k = lx_variable_get_value(lx_tree_find(st, "kernel")->u.var);
    CHECK(out.kind == LX_V_ARRAY && fabs(lx_f32(out.u.array)[0] - (lx_f32(k)[0] + lx_f32(k)[3])) < 1e-6);
    CHECK(ns && lx_tree_find(ns, "kernel"));
    lx_value_free(&out);
    lx_tree_release(ns);
    lx_tree_release(st);
    nnx_functional_free(f);

    CHECK(nnx_layer_type("BatchNorm") == &nnx_BatchNorm && nnx_layer_type("Nope") == NULL);
    nnx_rngs_release(r);
}

int main(void) {
    RUN(test_linear);
    RUN(test_mlp_sequential);
    RUN(test_sequential_calling);
    RUN(test_conv);
    RUN(test_embed);
    RUN(test_norms);
    RUN(test_batch_norm);
    RUN(test_dropout);
    RUN(test_reseed_two_dropouts);
    RUN(test_linear_general_lora);
    RUN(test_mha);
    RUN(test_metadata_eval_shape_functional);
    RUN(test_with_partitioning);
    return lx_test_finish();
}
