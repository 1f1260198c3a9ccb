/* What the headers promise exists (issue 17): LX_CALL with both lists, BRIDGE_TO_LINEN with no
 * keyword arguments, one Rngs stream's count and key, an NNX constructor that is handed no
 * call (setup), NNX array methods and nnx_return_array, and nnx_call_method. */
#include "lx_test.h"

static void test_lx_call(void) {
    int64_t shape[] = {2};
    lx_array *x = lx_autorelease(lx_array_full_f32(1, shape, 1.0f));
    lx_call c = LX_CALL(LX_ARGS_LIST(lx_array_v(x), lx_int_v(3)),
                        LX_KWARGS_LIST(LX_KW_INT("features", 8), LX_KW_BOOL("use_bias", false)));
    CHECK_EQ_INT(c.nargs, 2);
    CHECK_EQ_INT(c.nkwargs, 2);
    CHECK(c.args[0].kind == LX_V_ARRAY && c.args[0].u.array == x);
    CHECK(c.args[1].kind == LX_V_INT && c.args[1].u.i == 3);
    int64_t f = 0;
    bool b = true;
    CHECK_EQ_INT(lx_call_int(&c, 5, "features", 0, &f), LX_OK);
    CHECK_EQ_INT(f, 8);
    CHECK_EQ_INT(lx_call_bool(&c, 5, "use_bias", true, &b), LX_OK);
    CHECK(!b);
}

/* ---- an NNX module built by setup (no call), with an array method ---- */
typedef struct {
    int64_t width;
} scale_config;
typedef struct {
    nnx_module base;
    scale_config cfg;
    lx_variable *w;
} scale;
static int setup_runs;
static lx_status scale_setup(nnx_module *m, nnx_rngs *rngs) {
    scale *self = (scale *)m;
    setup_runs++;
    int64_t shape[] = {self->cfg.width};
    lx_array *w = lx_array_full_f32(1, shape, 2.0f);
    lx_status s = w ? lx_variable_new(&lx_Param, w, &self->w) : lx_last_status();
    lx_release(w);
    return s;
}
static lx_array *scale_call(nnx_module *m, lx_array *x) {
    return lx_mul(x, lx_variable_get_value(((scale *)m)->w));
}
static lx_status scale_twice(nnx_module *m, const lx_call *c, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return nnx_return_array(out, lx_mul_scalar(scale_call(m, x), 2.0));
}
static const lx_field SCALE_CONFIG[] = {LX_FIELD_REQUIRED_INT(scale_config, width)};
static const nnx_field SCALE_FIELDS[] = {NNX_VAR(scale, w)};
static const nnx_method SCALE_METHODS[] = {NNX_ARRAY_METHOD("__call__", scale_call),
                                           NNX_METHOD("twice", scale_twice)};
static const nnx_type SCALE = {.name = "Scale", .size = sizeof(scale), .setup = scale_setup,
                               .fields = SCALE_FIELDS, .nfields = LX_COUNT(SCALE_FIELDS), .methods = SCALE_METHODS, .nmethods = LX_COUNT(SCALE_METHODS),
                               .config = SCALE_CONFIG, .nconfig = LX_COUNT(SCALE_CONFIG), .config_offset = offsetof(scale, cfg)};

static void test_nnx_setup_and_array_methods(void) {
    nnx_module *m = NULL;
    setup_runs = 0;
    CHECK_EQ_INT(nnx_module_new(&SCALE, &LX_CALL_KWARGS(LX_KW_INT("width", 3)), NULL, &m), LX_OK);
    CHECK_EQ_INT(setup_runs, 1);
    CHECK_EQ_INT(((scale *)m)->cfg.width, 3);
    const float xs[] = {1, -2, 3};
    lx_array *x = lx_autorelease(lx_array_from_f32(1, (int64_t[]){3}, xs));
    lx_array *y = nnx_call_array(m, x);
    CHECK(y && y->size == 3 && lx_f32(y)[0] == 2.0f && lx_f32(y)[1] == -4.0f && lx_f32(y)[2] == 6.0f);
    lx_value out = lx_none();
    CHECK_EQ_INT(nnx_call(m, "twice", &LX_ARGS(x), &out), LX_OK);
    CHECK(out.kind == LX_V_ARRAY && lx_f32(out.u.array)[2] == 12.0f);
    lx_value_free(&out);
    /* an array method checks its argument like a Linen one */
    CHECK_FAILS(nnx_call(m, NULL, &LX_NO_CALL, &out), LX_ERR_TYPE, "Scale.__call__() missing 1 required positional argument: 'x'");
    CHECK_FAILS(nnx_call(m, NULL, &LX_CALL_ARGS(lx_int_v(1)), &out), LX_ERR_TYPE, "argument 'x' must be an array");
    /* nnx_call_method runs an entry given as a function (Flax's method=Module.fn) */
    CHECK_EQ_INT(nnx_call_method(m, &SCALE_METHODS[0], &LX_ARGS(x), &out), LX_OK);
    CHECK(out.kind == LX_V_ARRAY && lx_f32(out.u.array)[0] == 2.0f);
    lx_value_free(&out);
    CHECK_FAILS(nnx_call_method(m, NULL, &LX_ARGS(x), &out), LX_ERR_INVALID_ARGUMENT, "nnx_call_method: method is NULL");
    /* nnx_return_array: a NULL result with nothing pending is reported as itself */
    lx_clear_error();
    CHECK_EQ_INT(nnx_return_array(&out, NULL), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_HAS("produced no array");
    /* setup failing without a message gets one naming the type */
    nnx_module_release(m);
}

/* ---- BRIDGE_TO_LINEN with and without keyword arguments ---- */
typedef struct {
    nnx_module base;
    lx_variable *b;
} bias_only;
static lx_status bias_setup(nnx_module *m, nnx_rngs *rngs) {
    lx_key k;
    LX_TRY(nnx_rngs_draw(rngs, "params", &k));
    int64_t shape[] = {2};
    lx_array *b = lx_random_uniform(k, 1, shape, 0.0f, 1.0f); /* pool-owned */
    return b ? lx_variable_new(&lx_Param, b, &((bias_only *)m)->b) : lx_last_status();
}
static lx_array *bias_call(nnx_module *m, lx_array *x) { return lx_add(x, lx_variable_get_value(((bias_only *)m)->b)); }
static const nnx_field BIAS_FIELDS[] = {NNX_VAR(bias_only, b)};
static const nnx_method BIAS_METHODS[] = {NNX_ARRAY_METHOD("__call__", bias_call)};
static const nnx_type BIAS = {.name = "Bias", .size = sizeof(bias_only), .setup = bias_setup,
                              .fields = BIAS_FIELDS, .nfields = LX_COUNT(BIAS_FIELDS), .methods = BIAS_METHODS, .nmethods = LX_COUNT(BIAS_METHODS)};

static void test_bridge_no_kwargs(void) {
    linen_module *m = BRIDGE_TO_LINEN(&BIAS);
    CHECK(m != NULL);
    CHECK(bridge_to_linen_ctor(m) && bridge_to_linen_ctor(m)->nkwargs == 0);
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (int64_t[]){1, 2}, 1.0f));
    lx_tree *vars = NULL;
    lx_value y = lx_none();
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &vars), LX_OK);
    CHECK_EQ_INT(linen_apply(m, vars, LINEN_NO_RNGS, &LX_ARGS(x), NULL, &y, NULL), LX_OK);
    const lx_value *b = vars ? lx_tree_find(vars, "params/b") : NULL;
    CHECK(b && y.kind == LX_V_ARRAY);
    if (b && y.kind == LX_V_ARRAY) {
        lx_array *ba = b->kind == LX_V_ARRAY ? b->u.array : NULL;
        if (!ba && b->kind == LX_V_BOX) ba = lx_box_unbox(b->u.box);
        CHECK(ba && lx_f32(y.u.array)[0] == 1.0f + lx_f32(ba)[0] && lx_f32(y.u.array)[1] == 1.0f + lx_f32(ba)[1]);
    }
    lx_value_free(&y);
    lx_tree_release(vars);
    linen_module_release(m);
    /* with keyword arguments: one is counted, the end marker is not */
    linen_module *k = BRIDGE_TO_LINEN(&nnx_Linear, LX_KW_INT("in_features", 2), LX_KW_INT("out_features", 3));
    CHECK(k && bridge_to_linen_ctor(k)->nkwargs == 2);
    linen_module_release(k);
    bridge_to_linen_cache_clear();
}

/* ---- one stream's count and key ---- */
static void test_rngs_stream_state(void) {
    nnx_rngs *r = NULL;
    nnx_stream_spec specs[] = {{"params", false, 0, {{0, 0}}}, {"dropout", false, 1, {{0, 0}}}};
    CHECK_EQ_INT(nnx_rngs_new(2, specs, &r), LX_OK);
    uint32_t n = 99;
    lx_key k;
    CHECK_EQ_INT(nnx_rngs_stream_count(r, "params", &n), LX_OK);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(nnx_rngs_draw(r, "params", &k), LX_OK);
    CHECK_EQ_INT(nnx_rngs_draw(r, "params", &k), LX_OK);
    CHECK_EQ_INT(nnx_rngs_stream_count(r, "params", &n), LX_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(nnx_rngs_stream_count(r, "dropout", &n), LX_OK);
    CHECK_EQ_INT(n, 0);
    /* the key is the seed's key, unchanged by draws (JAX: key(1) = [0, 1]) */
    CHECK_EQ_INT(nnx_rngs_stream_key(r, "dropout", &k), LX_OK);
    CHECK(k.k[0] == 0 && k.k[1] == 1);
    CHECK_FAILS(nnx_rngs_stream_count(r, "noise", &n), LX_ERR_RNG, "No RngStream named 'noise' found in Rngs.");
    CHECK_FAILS(nnx_rngs_stream_count(r, "params", NULL), LX_ERR_INVALID_ARGUMENT, "count is NULL");
    CHECK_FAILS(nnx_rngs_stream_key(NULL, "params", &k), LX_ERR_INVALID_ARGUMENT, "Rngs is NULL");
    nnx_rngs_release(r);
}

/* A stream whose Variables hold no concrete values (abstract arrays, as nnx.eval_shape leaves
 * them): count and key are LX_ERR_RNG (nnx.h), one abstract Variable is enough. */
static void test_rngs_stream_abstract(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    lx_value sv = lx_none(), kv = lx_none(), cv = lx_none();
    CHECK_EQ_INT(nnx_getattr(nnx_rngs_module(r), "default", &sv), LX_OK);
    nnx_module *s = nnx_module_from_value(&sv);
    CHECK(s != NULL);
    if (!s) {
        nnx_rngs_release(r);
        return;
    }
    CHECK_EQ_INT(nnx_getattr(s, "key", &kv), LX_OK);
    CHECK_EQ_INT(nnx_getattr(s, "count", &cv), LX_OK);
    CHECK(kv.kind == LX_V_VARIABLE && cv.kind == LX_V_VARIABLE);
    if (kv.kind != LX_V_VARIABLE || cv.kind != LX_V_VARIABLE) {
        nnx_rngs_release(r);
        return;
    }
    uint32_t n = 99;
    lx_key k = {{7, 7}};
    lx_array *ak = lx_array_abstract(LX_U32, 1, (const int64_t[]){2}), *ac = lx_array_abstract(LX_U32, 0, NULL);
    /* the count abstract, the key concrete */
    CHECK_EQ_INT(lx_variable_set_value(cv.u.var, ac, true), LX_OK);
    CHECK_FAILS(nnx_rngs_stream_count(r, "default", &n), LX_ERR_RNG,
                "RngStream 'default' has no concrete uint32[2] key and uint32 count");
    CHECK_FAILS(nnx_rngs_stream_key(r, "params", &k), LX_ERR_RNG, "RngStream 'default' has no concrete");
    CHECK(n == 99 && k.k[0] == 7 && k.k[1] == 7); /* nothing written */
    /* both abstract */
    CHECK_EQ_INT(lx_variable_set_value(kv.u.var, ak, true), LX_OK);
    CHECK_FAILS(nnx_rngs_stream_key(r, "default", &k), LX_ERR_RNG, "RngStream 'default' has no concrete");
    lx_release(ak);
    lx_release(ac);
    nnx_rngs_release(r);
}

/* ---- one vocabulary: the table macros, and the old spellings still compile and mean the same ---- */
typedef struct {
    int64_t features;
    double scale;
} tbl_config;
typedef struct {
    nnx_module base;
    tbl_config cfg;
    nnx_linear *linear;
} tbl_nnx;
static lx_status tbl_setup(nnx_module *m, nnx_rngs *rngs) {
    tbl_nnx *self = (tbl_nnx *)m;
    return nnx_linear_new(2, self->cfg.features, rngs, &self->linear);
}
static lx_array *tbl_call(nnx_module *m, lx_array *x) {
    return lx_mul_scalar(nnx_linear_forward(((tbl_nnx *)m)->linear, x), ((tbl_nnx *)m)->cfg.scale);
}
static const nnx_type TBL_NNX = {
    .name = "Tbl", .size = sizeof(tbl_nnx), .setup = tbl_setup,
    NNX_CONFIG(tbl_nnx, cfg, LX_FIELD_REQUIRED_INT(tbl_config, features), LX_FIELD_FLOAT(tbl_config, scale, 1.0)),
    NNX_FIELDS(NNX_CHILD(tbl_nnx, linear)),
    NNX_METHODS(NNX_ARRAY_METHOD("__call__", tbl_call), NNX_METHOD("twice", scale_twice)),
};
static lx_array *tbl_linen_call(linen_scope *s, lx_array *x) {
    const tbl_config *cfg = linen_config(s);
    return lx_mul_scalar(linen_dense(s, NULL, cfg->features, x), cfg->scale);
}
static const linen_type TBL_LINEN = {
    .name = "TblLinen",
    LINEN_CONFIG(tbl_config, LX_FIELD_REQUIRED_INT(tbl_config, features), LX_FIELD_FLOAT(tbl_config, scale, 1.0)),
    LINEN_METHODS(LINEN_ARRAY_METHOD("__call__", tbl_linen_call)),
};
/* the deprecated member spelling of the Linen config table */
static const lx_field OLD_FIELDS[] = {LX_FIELD_REQUIRED_INT(tbl_config, features), LX_FIELD_FLOAT(tbl_config, scale, 1.0)};
static const linen_method OLD_METHODS[] = {LINEN_ARRAY_METHOD("__call__", tbl_linen_call)};
static const linen_type OLD_LINEN = {.name = "Old", .config_size = sizeof(tbl_config), .fields = OLD_FIELDS,
                                     .nfields = 2, .methods = OLD_METHODS, .nmethods = 1};

static void test_vocabulary(void) {
    CHECK_EQ_INT(TBL_NNX.nconfig, 2);
    CHECK_EQ_INT(TBL_NNX.nfields, 1);
    CHECK_EQ_INT(TBL_NNX.nmethods, 2);
    CHECK(TBL_NNX.config_offset == offsetof(tbl_nnx, cfg));
    CHECK_EQ_INT(TBL_LINEN.nconfig, 2);
    CHECK_EQ_INT(TBL_LINEN.nmethods, 1);
    CHECK(TBL_LINEN.config_size == sizeof(tbl_config));
    CHECK(OLD_LINEN.config == OLD_FIELDS && OLD_LINEN.nconfig == 2);
    nnx_rngs *rngs = NULL;
    nnx_module *m = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &rngs), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&TBL_NNX, &LX_CALL_KWARGS(LX_KW_INT("features", 3), LX_KW_FLOAT("scale", 0.0)), rngs, &m),
                 LX_OK);
    lx_array *x = lx_autorelease(lx_array_full_f32(2, (int64_t[]){1, 2}, 1.0f));
    lx_array *y = nnx_call_array(m, x);
    CHECK(y && y->shape[1] == 3 && lx_f32(y)[0] == 0.0f && lx_f32(y)[2] == 0.0f); /* scale 0 */
    nnx_module_release(m);
    nnx_rngs_release(rngs);
    /* a Linen type by the macros and the same type by the old spelling give the same config */
    linen_module *a = NULL, *b = NULL;
    lx_call kw = LX_CALL_KWARGS(LX_KW_INT("features", 5), LX_KW_FLOAT("scale", 2.0));
    CHECK_EQ_INT(linen_module_new(&TBL_LINEN, &kw, &a), LX_OK);
    CHECK_EQ_INT(linen_module_new(&OLD_LINEN, &kw, &b), LX_OK);
    lx_value fa, fb;
    CHECK_EQ_INT(linen_module_attr(a, "features", &fa), LX_OK);
    CHECK_EQ_INT(linen_module_attr(b, "scale", &fb), LX_OK);
    CHECK(fa.kind == LX_V_INT && fa.u.i == 5 && fb.kind == LX_V_FLOAT && fb.u.f == 2.0);
    /* linen_apply in both argument orders: rngs before the call, and the deprecated call first */
    lx_tree *vars = NULL;
    lx_value y1 = lx_none(), y2 = lx_none();
    lx_call xc = LX_ARGS(x);
    CHECK_EQ_INT(linen_init(a, LINEN_KEY(lx_key_from_seed(0)), &xc, NULL, &vars), LX_OK);
    CHECK_EQ_INT(linen_apply(a, vars, LINEN_NO_RNGS, &xc, NULL, &y1, NULL), LX_OK);
    CHECK_EQ_INT(linen_apply(a, vars, &xc, LINEN_NO_RNGS, NULL, &y2, NULL), LX_OK);
    CHECK(y1.kind == LX_V_ARRAY && y2.kind == LX_V_ARRAY && lx_value_equal(&y1, &y2) && y1.u.array->shape[1] == 5);
    lx_value_free(&y1);
    lx_value_free(&y2);
    lx_tree_release(vars);
    linen_module_release(a);
    linen_module_release(b);
    /* old names are the new objects and functions (include/linnx/compat.h) */
    CHECK(&NNX_LINEAR_TYPE == &nnx_Linear && &NNX_RNGS_TYPE == &nnx_Rngs && &BRIDGE_TO_LINEN_TYPE == &bridge_ToLinen);
    CHECK(&BRIDGE_TO_NNX_TYPE == &bridge_ToNNX && &NNX_MHA_TYPE == &nnx_MultiHeadAttention);
    CHECK((void *)nnx_reseed == (void *)nnx_rngs_reseed && (void *)nnx_rng_stream_fork == (void *)nnx_rngs_fork_stream);
    CHECK((void *)nnx_rngs_count == (void *)nnx_rngs_num_streams);
    CHECK((void *)lx_register_variable_name == (void *)lx_variable_register_name);
    CHECK((void *)linen_make_causal_mask == (void *)lx_make_causal_mask);
}

/* ---- one pair of config hooks for both descriptors: config_retain / config_release ---- */
static int live_refs;
typedef struct {
    int64_t features;
    int *ref; /* a reference the field table does not know about */
} hooked_config;
static lx_status hooked_retain(void *cfg) {
    hooked_config *c = cfg;
    if (!c->ref) c->ref = &live_refs; /* freshly bound: take the first reference */
    live_refs++;
    return LX_OK;
}
static void hooked_release(void *cfg) {
    if (((hooked_config *)cfg)->ref) live_refs--;
}
static lx_array *hooked_call(linen_scope *s, lx_array *x) { return x; }
static const linen_type HOOKED_LINEN = {
    .name = "Hooked", LINEN_CONFIG(hooked_config, LX_FIELD_REQUIRED_INT(hooked_config, features)),
    LINEN_METHODS(LINEN_ARRAY_METHOD("__call__", hooked_call)),
    .config_retain = hooked_retain, .config_release = hooked_release};
/* the deprecated pair still works */
static lx_status old_copy(void *dst, const void *src) {
    ((hooked_config *)dst)->ref = ((const hooked_config *)src)->ref;
    live_refs++;
    return LX_OK;
}
static void old_free(void *cfg) { hooked_release(cfg); }
static const linen_type OLD_HOOKED = {
    .name = "OldHooked", LINEN_CONFIG(hooked_config, LX_FIELD_REQUIRED_INT(hooked_config, features)),
    LINEN_METHODS(LINEN_ARRAY_METHOD("__call__", hooked_call)), .config_copy = old_copy, .config_free = old_free};

static void test_config_hooks(void) {
    live_refs = 0;
    linen_module *a = NULL, *b = NULL, *c = NULL;
    CHECK_EQ_INT(linen_module_new(&HOOKED_LINEN, &LX_CALL_KWARGS(LX_KW_INT("features", 2)), &a), LX_OK);
    CHECK_EQ_INT(live_refs, 1); /* retained after the table bound it */
    CHECK_EQ_INT(linen_module_clone(a, &LX_CALL_KWARGS(LX_KW_INT("features", 3)), &b), LX_OK);
    CHECK_EQ_INT(live_refs, 2); /* and after the clone copied it */
    CHECK(((const hooked_config *)linen_module_config(b))->features == 3);
    CHECK(((const hooked_config *)linen_module_config(b))->ref == &live_refs);
    /* a bind that fails retains nothing */
    CHECK_FAILS(linen_module_new(&HOOKED_LINEN, NULL, &c), LX_ERR_TYPE, "features");
    CHECK_EQ_INT(live_refs, 2);
    linen_module_release(a);
    linen_module_release(b);
    CHECK_EQ_INT(live_refs, 0);
    /* the old spelling: config_copy on clone, config_free on release */
    int base = live_refs;
    CHECK_EQ_INT(linen_module_new(&OLD_HOOKED, &LX_CALL_KWARGS(LX_KW_INT("features", 2)), &a), LX_OK);
    ((hooked_config *)linen_module_config(a))->ref = &live_refs; /* as a custom bind would */
    live_refs++;
    CHECK_EQ_INT(linen_module_clone(a, NULL, &b), LX_OK);
    CHECK_EQ_INT(live_refs, base + 2);
    linen_module_release(a);
    linen_module_release(b);
    CHECK_EQ_INT(live_refs, base);
}

int main(void) {
    RUN(test_config_hooks);
    RUN(test_vocabulary);
    RUN(test_lx_call);
    RUN(test_nnx_setup_and_array_methods);
    RUN(test_bridge_no_kwargs);
    RUN(test_rngs_stream_state);
    RUN(test_rngs_stream_abstract);
    return lx_test_finish();
}
