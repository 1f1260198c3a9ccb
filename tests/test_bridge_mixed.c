/* The bridge cases that need both directions at once (spec/flax-bridge.md §2.1, issue 6):
 *  - W1  test_functional: nnx.bridge.functional over nnx.Linear;
 *  - W21 test_nnx_linen_nnx: NNX -> ToNNX(Linen -> to_linen(NNX)), dropout rngs through both
 *        bridges, reseed, metadata (out_sharding, sharding_rules) carried back to NNX;
 *  - the identical-tree check: one model written Linen-style and NNX-style gives the same
 *    variable paths and shapes, through to_linen and through ToNNX;
 *  - op interceptors see full module paths and operand roles across both bridge directions.
 * Expected paths, shapes and names are written out by hand; numbers are SELF checks (Flax's:
 * y against x @ w + b over the model's own parameters, summed here in double). W6, W7, W17
 * need vmap or a mesh; W19 and W22 are empty placeholders in Flax. */
#include <string.h>

#include "linnx/bridge.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/nnx.h"
#include "linnx/nnx_layers.h"
#include "linnx/to_linen.h"
#include "linnx/to_nnx.h"
#include "lx_test.h"

/* ---------------------------------------------------------------- helpers */

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

static lx_array *arr(int ndim, const int64_t *shape, const float *data) {
    return lx_autorelease(lx_array_from_f32(ndim, shape, data));
}

static lx_array *value_array(const lx_value *v) {
    if (!v) return NULL;
    if (v->kind == LX_V_ARRAY) return v->u.array;
    if (v->kind == LX_V_VARIABLE) return lx_variable_get_value(v->u.var);
    if (v->kind == LX_V_BOX) return lx_box_unbox(v->u.box);
    return NULL;
}

/* A tree's leaves as sorted "path (d0, d1)" lines, for comparing trees by paths and shapes. */
typedef struct {
    int n;
    char line[16][96];
} leaves_t;

static int cmp_line(const void *a, const void *b) { return strcmp(a, b); }

static leaves_t leaves_of(const lx_tree *t) {
    leaves_t out = {0};
    lx_flat f = {0};
    if (!t || lx_tree_flatten(t, &f) != LX_OK) return out;
    for (size_t i = 0; i < f.len && out.n < 16; i++) {
        const lx_array *a = value_array(&f.items[i].value);
        char shape[48] = "(";
        for (int d = 0; a && d < a->ndim; d++) {
            char dim[16];
            snprintf(dim, sizeof dim, d ? ", %lld" : "%lld", (long long)a->shape[d]);
            strcat(shape, dim);
        }
        strcat(shape, a && a->ndim == 1 ? ",)" : ")");
        snprintf(out.line[out.n++], sizeof out.line[0], "%s %s", f.items[i].path, a ? shape : "(not an array)");
    }
    lx_flat_free(&f);
    qsort(out.line, (size_t)out.n, sizeof out.line[0], cmp_line);
    return out;
}

/* Do the leaves equal `want` (sorted by the caller)? Reports the first difference. */
static bool leaves_are(const leaves_t *got, int n, const char *const *want) {
    if (got->n != n) {
        fprintf(stderr, "  leaves: got %d, want %d\n", got->n, n);
        for (int i = 0; i < got->n; i++) fprintf(stderr, "    %s\n", got->line[i]);
        return false;
    }
    for (int i = 0; i < n; i++)
        if (strcmp(got->line[i], want[i]) != 0) {
            fprintf(stderr, "  leaf %d: got \"%s\", want \"%s\"\n", i, got->line[i], want[i]);
            return false;
        }
    return true;
}

static bool same_leaves(const leaves_t *a, const leaves_t *b) {
    if (a->n != b->n) return false;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->line[i], b->line[i]) != 0) return false;
    return true;
}

/* y == x @ k + b (b broadcast over rows, NULL = none), summed in double, within tolerance. */
/* Does an LX_V_STRS value hold exactly these names? */
static lx_array *call_array(nnx_module *m, const lx_call *c) {
    lx_value out;
    if (nnx_call(m, NULL, c, &out) != LX_OK) return NULL;
    lx_array *a = out.kind == LX_V_ARRAY ? lx_autorelease(lx_retain(out.u.array)) : NULL;
    lx_value_free(&out);
    return a;
}

/* The Variable at `path` of m's state (the module keeps it alive), or NULL. */
static lx_variable *var_at(nnx_module *m, const char *path) {
    lx_tree *st = NULL;
    if (nnx_state(m, 0, NULL, &st) != LX_OK) return NULL;
    const lx_value *v = lx_tree_find(st, path);
    lx_variable *out = v && v->kind == LX_V_VARIABLE ? v->u.var : NULL;
    lx_tree_release(st);
    return out;
}

/* ---------------------------------------------------------------- W1 */

static void test_W1_functional(void) {
    /* functional(nnx.Linear)(32, 64) */
    nnx_functional *f = NULL;
    lx_call ctor = LX_CALL_ARGS(lx_int_v(32), lx_int_v(64));
    CHECK_EQ_INT(nnx_functional_new(&nnx_Linear, &ctor, &f), LX_OK);
    lx_array *x = lx_autorelease(lx_array_full_f32(2, SHAPE(1, 32), 1.0f));
    lx_call c = LX_ARGS(x);
    lx_value y = lx_none();
    /* apply before init: Flax's bare AssertionError, here a message that says what to do */
    CHECK_FAILS(nnx_functional_apply(f, 0, NULL, NULL, &c, &y, NULL), LX_ERR_INVALID_ARGUMENT,
                "Functional.apply: no graphdef; call init first");
    CHECK(y.kind == LX_V_NONE);

    /* init(rngs=Rngs(0)) returns the state: Linear's kernel and bias */
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    lx_tree *state = NULL;
    CHECK_EQ_INT(nnx_functional_init(f, r, &state), LX_OK);
    leaves_t st = leaves_of(state);
    CHECK(leaves_are(&st, 2, (const char *[]){"bias (64,)", "kernel (32, 64)"}));
    CHECK(nnx_functional_graphdef(f) != NULL);

    /* apply(state)(x) -> (y, (graphdef, new_state)) */
    lx_tree *updates = NULL;
    CHECK_EQ_INT(nnx_functional_apply(f, 1, &state, NULL, &c, &y, &updates), LX_OK);
    lx_array *ya = y.kind == LX_V_ARRAY ? y.u.array : NULL;
    CHECK(ya && lx_shape_eq(ya, 2, SHAPE(1, 64)));
    leaves_t up = leaves_of(updates);
    CHECK(leaves_are(&up, 2, (const char *[]){"bias (64,)", "kernel (32, 64)"}));
    /* the output is the Linear of the state it was given (bias zeros) */
    CHECK(affine_close(ya, x, value_array(lx_tree_find(state, "kernel")), value_array(lx_tree_find(state, "bias"))));
    lx_value_free(&y);
    lx_tree_release(updates);
    lx_tree_release(state);
    nnx_rngs_release(r);
    nnx_functional_free(f);
}

/* ---------------------------------------------------------------- W21 */

/* NNXInner(din, dout, dropout_rate, *, rngs):
 *   w = Param(with_partitioning(lecun_normal, ('in', 'out'))(rngs.params(), (din, dout)))
 *   dropout = Dropout(rate=dropout_rate, rngs=rngs)
 *   __call__(x) = dropout(x @ w) */
typedef struct { int64_t din, dout; double rate; } inner_cfg;
typedef struct { nnx_module base; inner_cfg cfg; lx_variable *w; nnx_module *dropout; } inner_mod;
static lx_status inner_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    (void)c;
    inner_mod *s = (inner_mod *)m;
    lx_key k;
    LX_TRY(nnx_rngs_draw(rngs, "params", &k));
    lx_tree *md = NULL;
    LX_TRY(nnx_sharding_metadata(2, (const char *[]){"in", "out"}, NULL, &md));
    lx_initializer ln = lx_init_lecun_normal();
    lx_value mdv = lx_tree_v(md);
    lx_status st = nnx_param_new(&lx_Param, &ln, k, LX_F32, 2, (int64_t[]){s->cfg.din, s->cfg.dout}, &mdv, &s->w);
    lx_tree_release(md);
    LX_TRY(st);
    lx_call d = LX_CALL_KWARGS(LX_KW_FLOAT("rate", s->cfg.rate));
    return nnx_module_new(&nnx_Dropout, &d, rngs, &s->dropout);
}
static lx_status inner_call(nnx_module *m, const lx_call *c, lx_value *out) {
    inner_mod *s = (inner_mod *)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return linen_return_array(out, nnx_call_array(s->dropout, lx_matmul(x, lx_variable_get_value(s->w))));
}
static const lx_field INNER_CFG[] = {LX_FIELD_REQUIRED_INT(inner_cfg, din), LX_FIELD_REQUIRED_INT(inner_cfg, dout),
                                     LX_FIELD_REQUIRED_FLOAT(inner_cfg, rate)};
static const nnx_field INNER_FIELDS[] = {NNX_CHILD(inner_mod, dropout), NNX_VAR(inner_mod, w)};
static const nnx_method INNER_METHODS[] = {NNX_METHOD("__call__", inner_call)};
static const nnx_type NNX_INNER = {
    .name = "NNXInner", .size = sizeof(inner_mod), .fields = INNER_FIELDS, .nfields = LX_COUNT(INNER_FIELDS), .config = INNER_CFG,
    .nconfig = LX_COUNT(INNER_CFG), .config_offset = offsetof(inner_mod, cfg), .methods = INNER_METHODS, .nmethods = LX_COUNT(INNER_METHODS),
    .init = inner_init,
};

/* LinenMiddle(dout, dropout_rate), compact:
 *   dot = to_linen(NNXInner, x.shape[-1], dout, dropout_rate, name='dot')
 *   b = param('b', with_logical_partitioning(lecun_normal, ('out-alias',),
 *                                             rules=(('out-alias', 'out'),)), (1, dout))
 *   return dot(x) + b */
typedef struct { int64_t dout; double dropout_rate; } middle_cfg;
static lx_status logical_b_init(lx_key key, void *user, lx_value *leaf) {
    int64_t dout = *(const int64_t *)user;
    lx_initializer ln = lx_init_lecun_normal();
    lx_array *v = lx_init_apply(&ln, key, LX_F32, 2, (int64_t[]){1, dout}); /* pool-owned */
    if (!v) return lx_last_status();
    lx_box *b = NULL;
    LX_TRY(lx_box_logically_partitioned(v, 1, (const char *[]){"out-alias"}, NULL, 2,
                                        (const char *[]){"out-alias", "out"}, &b));
    *leaf = lx_box_v(b);
    return LX_OK;
}
static lx_status middle_call(linen_scope *s, const lx_call *c, lx_value *out) {
    const middle_cfg *cfg = linen_config(s);
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_call ctor = LX_CALL_ARGS(lx_int_v(x->shape[x->ndim - 1]), lx_int_v(cfg->dout), lx_float_v(cfg->dropout_rate));
    bridge_to_linen_opts o = {.name = "dot"};
    linen_module *dot = NULL;
    LX_TRY(bridge_to_linen(&NNX_INNER, &ctor, &o, &dot));
    int64_t dout = cfg->dout;
    lx_value b = lx_none(), y = lx_none();
    lx_status st = linen_param_custom(s, "b", logical_b_init, &dout, &b);
    if (st == LX_OK) st = linen_call_child(s, dot, NULL, NULL, c, &y);
    linen_module_release(dot);
    if (st == LX_OK) st = linen_return_array(out, lx_add(y.u.array, b.u.array));
    lx_value_free(&y);
    return st;
}
static const lx_field MIDDLE_CFG[] = {LX_FIELD_REQUIRED_INT(middle_cfg, dout),
                                      LX_FIELD_REQUIRED_FLOAT(middle_cfg, dropout_rate)};
static const linen_method MIDDLE_METHODS[] = {LINEN_METHOD("__call__", middle_call)};
static const linen_type LINEN_MIDDLE = {
    .name = "LinenMiddle", .config_size = sizeof(middle_cfg), .config = MIDDLE_CFG, .nconfig = LX_COUNT(MIDDLE_CFG),
    .methods = MIDDLE_METHODS, .nmethods = LX_COUNT(MIDDLE_METHODS),
};

/* NNXOuter(dout, dropout_rate, *, rngs): inner = ToNNX(LinenMiddle(dout, dropout_rate), rngs);
 * rngs = rngs; __call__(x) = inner(x). */
typedef struct { int64_t dout; double dropout_rate; } outer_cfg;
typedef struct { nnx_module base; outer_cfg cfg; nnx_module *inner, *rngs; } outer_mod;
static lx_status outer_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    (void)c;
    outer_mod *s = (outer_mod *)m;
    linen_module *mid = NULL;
    lx_call mc = LX_CALL_KWARGS(LX_KW_INT("dout", s->cfg.dout), LX_KW_FLOAT("dropout_rate", s->cfg.dropout_rate));
    LX_TRY(linen_module_new(&LINEN_MIDDLE, &mc, &mid));
    lx_status st = bridge_to_nnx_new(mid, rngs, NULL, &s->inner);
    linen_module_release(mid);
    if (st == LX_OK) s->rngs = nnx_module_retain(nnx_rngs_module(rngs));
    return st;
}
static lx_status outer_call(nnx_module *m, const lx_call *c, lx_value *out) {
    return nnx_call(((outer_mod *)m)->inner, NULL, c, out);
}
static const lx_field OUTER_CFG[] = {LX_FIELD_REQUIRED_INT(outer_cfg, dout),
                                     LX_FIELD_REQUIRED_FLOAT(outer_cfg, dropout_rate)};
static const nnx_field OUTER_FIELDS[] = {NNX_CHILD(outer_mod, inner), NNX_CHILD(outer_mod, rngs)};
static const nnx_method OUTER_METHODS[] = {NNX_METHOD("__call__", outer_call)};
static const nnx_type NNX_OUTER = {
    .name = "NNXOuter", .size = sizeof(outer_mod), .fields = OUTER_FIELDS, .nfields = LX_COUNT(OUTER_FIELDS), .config = OUTER_CFG,
    .nconfig = LX_COUNT(OUTER_CFG), .config_offset = offsetof(outer_mod, cfg), .methods = OUTER_METHODS, .nmethods = LX_COUNT(OUTER_METHODS),
    .init = outer_init,
};

/* bridge.lazy_init(NNXOuter(dout=3, dropout_rate=rate, rngs=nnx.Rngs(default=1, dropout=2)), x) */
static nnx_module *nnx_outer(double rate, lx_array *x) {
    nnx_rngs *r = NULL;
    nnx_stream_spec streams[] = {{.name = "default", .seed = 1}, {.name = "dropout", .seed = 2}};
    CHECK_EQ_INT(nnx_rngs_new(2, streams, &r), LX_OK);
    nnx_module *m = NULL;
    lx_call c = LX_CALL_KWARGS(LX_KW_INT("dout", 3), LX_KW_FLOAT("dropout_rate", rate));
    CHECK_EQ_INT(nnx_module_new(&NNX_OUTER, &c, r, &m), LX_OK);
    nnx_rngs_release(r);
    lx_call xc = LX_ARGS(x);
    CHECK_EQ_INT(bridge_lazy_init(m, NULL, &xc), LX_OK);
    return m;
}

static lx_array *x_2x4(void) {
    return arr(2, SHAPE(2, 4), (float[]){0.5f, -1.25f, 2.0f, 0.75f, -0.3f, 1.5f, -2.5f, 1.0f});
}

static void test_W21_nnx_linen_nnx(void) {
    lx_array *x = x_2x4();
    lx_call c = LX_ARGS(x);

    /* --- the dropout rng, through ToNNX's streams and ToLinen's make_rng */
    nnx_module *model = nnx_outer(0.5, x);
    CHECK_EQ_INT(nnx_rngs_reseed(model, "dropout", 2), LX_OK);
    lx_array *y1 = call_array(model, &c), *y2 = call_array(model, &c);
    CHECK(y1 && y2 && lx_shape_eq(y1, 2, SHAPE(2, 3)));
    /* the ToNNX dropout stream advanced between the two calls: other masks */
    CHECK(y1 && y2 && !lx_array_equal(y1, y2));
    CHECK_EQ_INT(nnx_rngs_reseed(model, "dropout", 2), LX_OK);
    lx_array *y3 = call_array(model, &c);
    CHECK(y1 && y3 && lx_array_equal(y1, y3)); /* reseed reproduces the first call */
    /* a different seed gives another mask than the first call */
    CHECK_EQ_INT(nnx_rngs_reseed(model, "dropout", 7), LX_OK);
    lx_array *y4 = call_array(model, &c);
    CHECK(y1 && y4 && !lx_array_equal(y1, y4));
    /* y - b is, entry by entry, either 0 (dropped) or 2 * (x @ w) (kept, scaled by 1/(1-0.5)),
     * over the model's own w and b (b is added after the dropout) */
    lx_variable *w = var_at(model, "inner/dot/w"), *b = var_at(model, "inner/b");
    CHECK(w && b);
    if (w && b && y1) {
        lx_array *wa = lx_variable_get_value(w), *ba = lx_variable_get_value(b);
        int dropped = 0;
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++) {
                double xw = 0;
                for (int t = 0; t < 4; t++) xw += (double)lx_f32(x)[i * 4 + t] * lx_f32(wa)[t * 3 + j];
                double got = lx_f32(y1)[i * 3 + j] - lx_f32(ba)[j];
                bool kept = fabs(got - 2 * xw) <= 1e-5 * (1 + fabs(xw)), zero = fabs(got) <= 1e-6;
                CHECK(kept || zero);
                dropped += zero && !kept;
            }
        CHECK(dropped > 0 && dropped < 6); /* a mask, not all or nothing (6 entries at 0.5) */
    }
    nnx_module_release(model);

    /* --- rate 0: the parameters and their metadata on the NNX side */
    model = nnx_outer(0.0, x);
    w = var_at(model, "inner/dot/w");
    b = var_at(model, "inner/b");
    CHECK(w && lx_variable_type(w) == &lx_Param);
    CHECK(b && lx_variable_type(b) == &lx_Param);
    lx_array *y = call_array(model, &c);
    CHECK(w && b && affine_close(y, x, lx_variable_get_value(w), lx_variable_get_value(b)));
    if (w) {
        CHECK(lx_shape_eq(lx_variable_get_value(w), 2, SHAPE(4, 3)));
        CHECK(strs_are(lx_variable_meta_get(w, "out_sharding"), 2, (const char *[]){"in", "out"}));
    }
    if (b) {
        CHECK(lx_shape_eq(lx_variable_get_value(b), 2, SHAPE(1, 3)));
        CHECK(strs_are(lx_variable_meta_get(b, "out_sharding"), 1, (const char *[]){"out-alias"}));
        CHECK(strs_are(lx_variable_meta_get(b, "sharding_rules"), 2, (const char *[]){"out-alias", "out"}));
        /* converting back to Linen gives the LogicallyPartitioned box again */
        const lx_value *mt = lx_variable_meta_get(b, "linen_meta_type");
        CHECK(mt && mt->kind == LX_V_INT && mt->u.i == LX_BOX_LOGICALLY_PARTITIONED);
    }
    /* the ToNNX attribute layout: dot = {w}, b; RNG state only under the Rngs */
    lx_tree *params = NULL;
    nnx_filter pf = NNX_OF_TYPE(&lx_Param);
    CHECK_EQ_INT(nnx_state(model, 1, &pf, &params), LX_OK);
    leaves_t pl = leaves_of(params);
    CHECK(leaves_are(&pl, 2, (const char *[]){"inner/b (1, 3)", "inner/dot/w (4, 3)"}));
    lx_tree_release(params);
    /* the same again: nothing in the round trip changed the parameters or the metadata */
    lx_array *again = call_array(model, &c);
    CHECK(y && again && lx_array_equal(y, again));
    CHECK(w && strs_are(lx_variable_meta_get(w, "out_sharding"), 2, (const char *[]){"in", "out"}));
    nnx_module_release(model);
}

/* ---------------------------------------------------------------- identical trees */

/* Linen Block, compact: Dense(2)(relu(Dense(8)(x))) -> Dense_0, Dense_1. */
static lx_array *block_fn(linen_scope *s, lx_array *x) {
    return linen_dense(s, NULL, 2, lx_relu(linen_dense(s, NULL, 8, x)));
}
static const linen_method BLOCK_METHODS[] = {LINEN_ARRAY_METHOD("__call__", block_fn)};
static const linen_type LINEN_BLOCK = {.name = "Block", .methods = BLOCK_METHODS, .nmethods = LX_COUNT(BLOCK_METHODS)};

/* The same in NNX: attributes Dense_0 = Linear(din, 8), Dense_1 = Linear(8, 2). */
typedef struct { int64_t din; } nblock_cfg;
typedef struct { nnx_module base; nblock_cfg cfg; nnx_module *Dense_0, *Dense_1; } nblock_mod;
static lx_status nblock_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    (void)c;
    nblock_mod *s = (nblock_mod *)m;
    lx_call c0 = LX_CALL_ARGS(lx_int_v(s->cfg.din), lx_int_v(8)), c1 = LX_CALL_ARGS(lx_int_v(8), lx_int_v(2));
    LX_TRY(nnx_module_new(&nnx_Linear, &c0, rngs, &s->Dense_0));
    return nnx_module_new(&nnx_Linear, &c1, rngs, &s->Dense_1);
}
static lx_status nblock_call(nnx_module *m, const lx_call *c, lx_value *out) {
    nblock_mod *s = (nblock_mod *)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return linen_return_array(out, nnx_call_array(s->Dense_1, lx_relu(nnx_call_array(s->Dense_0, x))));
}
static const lx_field NBLOCK_CFG[] = {LX_FIELD_REQUIRED_INT(nblock_cfg, din)};
static const nnx_field NBLOCK_FIELDS[] = {NNX_CHILD(nblock_mod, Dense_0), NNX_CHILD(nblock_mod, Dense_1)};
static const nnx_method NBLOCK_METHODS[] = {NNX_METHOD("__call__", nblock_call)};
static const nnx_type NNX_BLOCK = {
    .name = "NNXBlock", .size = sizeof(nblock_mod), .fields = NBLOCK_FIELDS, .nfields = LX_COUNT(NBLOCK_FIELDS), .config = NBLOCK_CFG,
    .nconfig = LX_COUNT(NBLOCK_CFG), .config_offset = offsetof(nblock_mod, cfg), .methods = NBLOCK_METHODS, .nmethods = LX_COUNT(NBLOCK_METHODS),
    .init = nblock_init,
};

static const char *const BLOCK_LINEN_LEAVES[] = {
    "params/Dense_0/bias (8,)", "params/Dense_0/kernel (4, 8)",
    "params/Dense_1/bias (2,)", "params/Dense_1/kernel (8, 2)",
};
static const char *const BLOCK_NNX_LEAVES[] = {
    "Dense_0/bias (8,)", "Dense_0/kernel (4, 8)", "Dense_1/bias (2,)", "Dense_1/kernel (8, 2)",
};

static void test_identical_trees_linen_and_to_linen(void) {
    lx_array *x = x_2x4();
    lx_call c = LX_ARGS(x);
    /* Linen style */
    linen_module *block = NULL;
    CHECK_EQ_INT(linen_module_new(&LINEN_BLOCK, NULL, &block), LX_OK);
    lx_tree *from_linen = NULL;
    CHECK_EQ_INT(linen_init(block, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &from_linen), LX_OK);
    /* NNX style, wrapped with to_linen at the top level */
    linen_module *wrapped = BRIDGE_TO_LINEN(&NNX_BLOCK, LX_KW_INT("din", 4));
    CHECK(wrapped != NULL);
    lx_tree *from_nnx = NULL;
    CHECK_EQ_INT(linen_init(wrapped, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &from_nnx), LX_OK);

    leaves_t a = leaves_of(from_linen), b = leaves_of(from_nnx);
    CHECK(leaves_are(&a, 4, BLOCK_LINEN_LEAVES));
    CHECK(leaves_are(&b, 4, BLOCK_LINEN_LEAVES));
    CHECK(same_leaves(&a, &b));
    /* the collections are the same too: only params */
    CHECK_EQ_INT(lx_tree_len(from_linen), 1);
    CHECK_EQ_INT(lx_tree_len(from_nnx), 1);

    /* so one variables tree serves both: the Linen Block's variables run the wrapped NNX Block,
     * and give the same output as the Linen Block itself */
    lx_value yl, yn;
    CHECK_EQ_INT(linen_apply(block, from_linen, LINEN_NO_RNGS, &c, NULL, &yl, NULL), LX_OK);
    CHECK_EQ_INT(linen_apply(wrapped, from_linen, LINEN_NO_RNGS, &c, NULL, &yn, NULL), LX_OK);
    CHECK(yl.kind == LX_V_ARRAY && yn.kind == LX_V_ARRAY && lx_shape_eq(yn.u.array, 2, SHAPE(2, 2)));
    if (yl.kind == LX_V_ARRAY && yn.kind == LX_V_ARRAY) {
        for (int i = 0; i < 4; i++) CHECK_NEAR(lx_f32(yl.u.array)[i], lx_f32(yn.u.array)[i], 1e-6);
    }
    lx_value_free(&yl);
    lx_value_free(&yn);
    lx_tree_release(from_linen);
    lx_tree_release(from_nnx);
    linen_module_release(block);
    linen_module_release(wrapped);
}

static void test_identical_trees_nnx_and_to_nnx(void) {
    lx_array *x = x_2x4();
    lx_call c = LX_ARGS(x);
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    /* NNX style */
    nnx_module *pure = NULL;
    lx_call bc = LX_CALL_KWARGS(LX_KW_INT("din", 4));
    CHECK_EQ_INT(nnx_module_new(&NNX_BLOCK, &bc, r, &pure), LX_OK);
    /* Linen style through ToNNX, after lazy_init */
    linen_module *block = NULL;
    CHECK_EQ_INT(linen_module_new(&LINEN_BLOCK, NULL, &block), LX_OK);
    nnx_module *wrapped = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(block, r, NULL, &wrapped), LX_OK);
    CHECK_EQ_INT(bridge_lazy_init(wrapped, NULL, &c), LX_OK);

    /* nnx.state without the RNG state (the ToNNX keeps its forked Rngs as to_nnx__rngs) */
    lx_tree *sp = NULL, *sw = NULL, *all = NULL;
    CHECK_EQ_INT(nnx_state(pure, 1, &NNX_NOT_RNG_STATE, &sp), LX_OK);
    CHECK_EQ_INT(nnx_state(wrapped, 1, &NNX_NOT_RNG_STATE, &sw), LX_OK);
    leaves_t a = leaves_of(sp), b = leaves_of(sw);
    CHECK(leaves_are(&a, 4, BLOCK_NNX_LEAVES));
    CHECK(leaves_are(&b, 4, BLOCK_NNX_LEAVES));
    CHECK(same_leaves(&a, &b));
    /* what the filter took out is exactly the ToNNX's own stream */
    CHECK_EQ_INT(nnx_state(wrapped, 0, NULL, &all), LX_OK);
    leaves_t everything = leaves_of(all);
    CHECK(leaves_are(&everything, 6,
                     (const char *[]){"Dense_0/bias (8,)", "Dense_0/kernel (4, 8)", "Dense_1/bias (2,)",
                                      "Dense_1/kernel (8, 2)", "to_nnx__rngs/default/count ()",
                                      "to_nnx__rngs/default/key (2,)"}));
    /* every parameter is a Param on both sides */
    const char *paths[] = {"Dense_0/kernel", "Dense_0/bias", "Dense_1/kernel", "Dense_1/bias"};
    for (int i = 0; i < 4; i++) {
        const lx_value *p = lx_tree_find(sp, paths[i]), *q = lx_tree_find(sw, paths[i]);
        CHECK(p && p->kind == LX_V_VARIABLE && lx_variable_type(p->u.var) == &lx_Param);
        CHECK(q && q->kind == LX_V_VARIABLE && lx_variable_type(q->u.var) == &lx_Param);
    }
    /* the pure module's state, put into the ToNNX, runs the same function: nnx.update by path */
    CHECK_EQ_INT(nnx_update(wrapped, 1, &sp), LX_OK);
    lx_array *yp = call_array(pure, &c), *yw = call_array(wrapped, &c);
    CHECK(yp && yw && lx_shape_eq(yw, 2, SHAPE(2, 2)));
    for (int i = 0; yp && yw && i < 4; i++) CHECK_NEAR(lx_f32(yp)[i], lx_f32(yw)[i], 1e-6);
    lx_tree_release(sp);
    lx_tree_release(sw);
    lx_tree_release(all);
    nnx_module_release(pure);
    nnx_module_release(wrapped);
    linen_module_release(block);
    nnx_rngs_release(r);
}

/* ---------------------------------------------------------------- interceptors */

typedef struct {
    int n;
    char lines[16][160];
} log_t;

static void log_op(const lx_intercept_event *ev, void *user) {
    log_t *l = user;
    if (l->n == 16) return;
    char roles[64] = "";
    for (int i = 0; i < ev->ninputs && i < 4; i++) {
        if (i) strcat(roles, ",");
        strcat(roles, ev->roles[i] == LX_OPERAND_PARAM ? "param" : "activation");
    }
    snprintf(l->lines[l->n++], sizeof l->lines[0], "%s %s %s", ev->path, ev->op, roles);
}

/* MaxText's shape: Transformer (Linen) -> decoder (Linen) -> layers_0 = to_linen(DecoderLayer)
 * -> mlp (NNX MlpBlock) -> wi_0, wo (nnx.Linear). */
typedef struct { nnx_module base; nnx_module *wi_0, *wo; } mlp_mod;
static lx_status mlp_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    (void)c;
    mlp_mod *s = (mlp_mod *)m;
    lx_call c0 = LX_CALL_ARGS(lx_int_v(4), lx_int_v(8)), c1 = LX_CALL_ARGS(lx_int_v(8), lx_int_v(4));
    LX_TRY(nnx_module_new(&nnx_Linear, &c0, rngs, &s->wi_0));
    return nnx_module_new(&nnx_Linear, &c1, rngs, &s->wo);
}
static lx_status mlp_call(nnx_module *m, const lx_call *c, lx_value *out) {
    mlp_mod *s = (mlp_mod *)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return linen_return_array(out, nnx_call_array(s->wo, lx_relu(nnx_call_array(s->wi_0, x))));
}
static const nnx_field MLP_FIELDS[] = {NNX_CHILD(mlp_mod, wi_0), NNX_CHILD(mlp_mod, wo)};
static const nnx_method MLP_METHODS[] = {NNX_METHOD("__call__", mlp_call)};
static const nnx_type NNX_MLP = {
    .name = "MlpBlock", .size = sizeof(mlp_mod), .fields = MLP_FIELDS, .nfields = LX_COUNT(MLP_FIELDS),
    .methods = MLP_METHODS, .nmethods = LX_COUNT(MLP_METHODS), .init = mlp_init,
};

typedef struct { nnx_module base; nnx_module *mlp; } layer_mod;
static lx_status layer_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    (void)c;
    return nnx_module_new(&NNX_MLP, NULL, rngs, &((layer_mod *)m)->mlp);
}
static lx_status layer_call(nnx_module *m, const lx_call *c, lx_value *out) {
    return nnx_call(((layer_mod *)m)->mlp, NULL, c, out);
}
static const nnx_field LAYER_FIELDS[] = {NNX_CHILD(layer_mod, mlp)};
static const nnx_method LAYER_METHODS[] = {NNX_METHOD("__call__", layer_call)};
static const nnx_type NNX_DECODER_LAYER = {
    .name = "DecoderLayer", .size = sizeof(layer_mod), .fields = LAYER_FIELDS, .nfields = LX_COUNT(LAYER_FIELDS),
    .methods = LAYER_METHODS, .nmethods = LX_COUNT(LAYER_METHODS), .init = layer_init,
};

static lx_status decoder_call(linen_scope *s, const lx_call *c, lx_value *out) {
    bridge_to_linen_opts o = {.name = "layers_0"};
    linen_module *layer = NULL;
    LX_TRY(bridge_to_linen(&NNX_DECODER_LAYER, NULL, &o, &layer));
    lx_status st = linen_call_child(s, layer, NULL, NULL, c, out);
    linen_module_release(layer);
    return st;
}
static const linen_method DECODER_METHODS[] = {LINEN_METHOD("__call__", decoder_call)};
static const linen_type LINEN_DECODER = {.name = "Decoder", .methods = DECODER_METHODS, .nmethods = LX_COUNT(DECODER_METHODS)};

static lx_status transformer_setup(linen_scope *s) {
    linen_module *d = NULL;
    LX_TRY(linen_module_new(&LINEN_DECODER, NULL, &d));
    lx_status st = linen_setup_child(s, "decoder", d);
    linen_module_release(d);
    return st;
}
static lx_status transformer_call(linen_scope *s, const lx_call *c, lx_value *out) {
    return linen_call_attr(s, "decoder", NULL, c, out);
}
static const linen_method TRANSFORMER_METHODS[] = {LINEN_METHOD("__call__", transformer_call)};
static const linen_type LINEN_TRANSFORMER = {
    .name = "Transformer", .methods = TRANSFORMER_METHODS, .nmethods = LX_COUNT(TRANSFORMER_METHODS), .setup = transformer_setup,
};

static void test_interceptor_paths_linen_to_nnx(void) {
    linen_module *model = NULL;
    CHECK_EQ_INT(linen_module_new(&LINEN_TRANSFORMER, NULL, &model), LX_OK);
    lx_array *x = x_2x4();
    lx_call c = LX_ARGS(x);
    log_t log = {0};
    int h = -1;
    CHECK_EQ_INT(lx_interceptor_add(log_op, &log, &h), LX_OK);
    lx_tree *vars = NULL;
    /* init: the NNX module is built for real and run */
    CHECK_EQ_INT(linen_init(model, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &vars), LX_OK);
    CHECK_EQ_INT(log.n, 2);
    CHECK_STR(log.lines[0], "decoder/layers_0/mlp/wi_0 dot_general activation,param");
    CHECK_STR(log.lines[1], "decoder/layers_0/mlp/wo dot_general activation,param");
    /* the variables sit at the same paths the ops report */
    CHECK(lx_tree_find(vars, "params/decoder/layers_0/mlp/wi_0/kernel") != NULL);
    CHECK(lx_tree_find(vars, "params/decoder/layers_0/mlp/wo/kernel") != NULL);
    /* apply: the cached abstract module bound to the caller's arrays; the kernels are still
     * the modules' Params */
    log.n = 0;
    lx_value y;
    CHECK_EQ_INT(linen_apply(model, vars, LINEN_NO_RNGS, &c, NULL, &y, NULL), LX_OK);
    CHECK_EQ_INT(log.n, 2);
    CHECK_STR(log.lines[0], "decoder/layers_0/mlp/wi_0 dot_general activation,param");
    CHECK_STR(log.lines[1], "decoder/layers_0/mlp/wo dot_general activation,param");
    char buf[64];
    CHECK_STR(lx_frame_path(buf, sizeof buf), ""); /* every frame popped */
    lx_interceptor_remove(h);
    lx_value_free(&y);
    lx_tree_release(vars);
    linen_module_release(model);
}

/* An NNX model with attribute block = ToNNX(Linen Block). */
typedef struct { nnx_module base; nnx_module *block; } holder_mod;
static lx_status holder_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    (void)c;
    linen_module *b = NULL;
    LX_TRY(linen_module_new(&LINEN_BLOCK, NULL, &b));
    lx_status st = bridge_to_nnx_new(b, rngs, NULL, &((holder_mod *)m)->block);
    linen_module_release(b);
    return st;
}
static lx_status holder_call(nnx_module *m, const lx_call *c, lx_value *out) {
    return nnx_call(((holder_mod *)m)->block, NULL, c, out);
}
static const nnx_field HOLDER_FIELDS[] = {NNX_CHILD(holder_mod, block)};
static const nnx_method HOLDER_METHODS[] = {NNX_METHOD("__call__", holder_call)};
static const nnx_type NNX_HOLDER = {
    .name = "Holder", .size = sizeof(holder_mod), .fields = HOLDER_FIELDS, .nfields = LX_COUNT(HOLDER_FIELDS),
    .methods = HOLDER_METHODS, .nmethods = LX_COUNT(HOLDER_METHODS), .init = holder_init,
};

static void test_interceptor_paths_nnx_to_linen(void) {
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    nnx_module *model = NULL;
    CHECK_EQ_INT(nnx_module_new(&NNX_HOLDER, NULL, r, &model), LX_OK);
    lx_array *x = x_2x4();
    lx_call c = LX_ARGS(x);
    log_t log = {0};
    int h = -1;
    CHECK_EQ_INT(lx_interceptor_add(log_op, &log, &h), LX_OK);
    CHECK_EQ_INT(bridge_lazy_init(model, NULL, &c), LX_OK); /* Linen init inside ToNNX */
    CHECK_EQ_INT(log.n, 2);
    CHECK_STR(log.lines[0], "block/Dense_0 dot_general activation,param");
    CHECK_STR(log.lines[1], "block/Dense_1 dot_general activation,param");
    log.n = 0;
    CHECK(call_array(model, &c) != NULL); /* Linen apply inside ToNNX */
    CHECK_EQ_INT(log.n, 2);
    CHECK_STR(log.lines[0], "block/Dense_0 dot_general activation,param");
    CHECK_STR(log.lines[1], "block/Dense_1 dot_general activation,param");
    lx_interceptor_remove(h);
    nnx_module_release(model);
    nnx_rngs_release(r);
}

static void test_interceptor_paths_nnx_linen_nnx(void) {
    /* W21's model: NNX `inner` -> Linen scope `dot` -> NNXInner's own matmul with its Param w */
    lx_array *x = x_2x4();
    lx_call c = LX_ARGS(x);
    log_t log = {0};
    int h = -1;
    CHECK_EQ_INT(lx_interceptor_add(log_op, &log, &h), LX_OK);
    /* lazy_init: ToNNX runs Linen init, which runs ToLinen init. The NNX module there is the
     * root of its graph, called from the Linen scope `dot`: its frame adds no name, but it is
     * the innermost frame, so w counts as its Param although the Linen scope holds no `w` yet
     * (ToLinen stores the state after the method ran). */
    nnx_module *model = nnx_outer(0.0, x);
    CHECK_EQ_INT(log.n, 1);
    CHECK_STR(log.lines[0], "inner/dot matmul activation,param");
    log.n = 0;
    CHECK(call_array(model, &c) != NULL); /* apply through both bridges */
    lx_interceptor_remove(h);
    CHECK_EQ_INT(log.n, 1);
    CHECK_STR(log.lines[0], "inner/dot matmul activation,param");
    nnx_module_release(model);
}

static void test_interceptor_paths_method_by_function(void) {
    /* to_linen(MlpBlock) at the top level, applied with nnx_method=MlpBlock.__call__ (a
     * function): the module still gets its frame, so its children are named from it */
    linen_module *m = BRIDGE_TO_LINEN(&NNX_MLP);
    CHECK(m != NULL);
    lx_array *x = x_2x4();
    lx_call c = LX_ARGS(x);
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &c, NULL, &vars), LX_OK);
    lx_call cf = {1, (lx_value[]){lx_array_v(x)}, 1,
                  (lx_kwarg[]){LX_KW("nnx_method", lx_ptr_v("nnx_method", (void *)&MLP_METHODS[0]))}};
    log_t log = {0};
    int h = -1;
    CHECK_EQ_INT(lx_interceptor_add(log_op, &log, &h), LX_OK);
    lx_value y;
    CHECK_EQ_INT(linen_apply(m, vars, LINEN_NO_RNGS, &cf, NULL, &y, NULL), LX_OK);
    CHECK_EQ_INT(log.n, 2);
    CHECK_STR(log.lines[0], "wi_0 dot_general activation,param");
    CHECK_STR(log.lines[1], "wo dot_general activation,param");
    lx_value_free(&y);
    /* nnx_call_fn itself: the same frame as nnx_call, and NULL arguments refused */
    nnx_rngs *r = NULL;
    nnx_module *mlp = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&NNX_MLP, NULL, r, &mlp), LX_OK);
    log.n = 0;
    CHECK_EQ_INT(nnx_call_fn(mlp, mlp_call, &c, &y), LX_OK);
    CHECK(y.kind == LX_V_ARRAY && lx_shape_eq(y.u.array, 2, SHAPE(2, 4)));
    lx_value_free(&y);
    CHECK_EQ_INT(log.n, 2);
    CHECK_STR(log.lines[0], "wi_0 dot_general activation,param");
    lx_interceptor_remove(h);
    CHECK_FAILS(nnx_call_fn(mlp, NULL, &c, &y), LX_ERR_INVALID_ARGUMENT, "nnx_call_fn: fn is NULL");
    CHECK_FAILS(nnx_call_fn(NULL, mlp_call, &c, &y), LX_ERR_INVALID_ARGUMENT, "nnx_call_fn: module is NULL");
    nnx_module_release(mlp);
    nnx_rngs_release(r);
    lx_tree_release(vars);
    linen_module_release(m);
}

int main(void) {
    RUN(test_W1_functional);
    RUN(test_W21_nnx_linen_nnx);
    RUN(test_identical_trees_linen_and_to_linen);
    RUN(test_identical_trees_nnx_and_to_nnx);
    RUN(test_interceptor_paths_linen_to_nnx);
    RUN(test_interceptor_paths_nnx_to_linen);
    RUN(test_interceptor_paths_nnx_linen_nnx);
    RUN(test_interceptor_paths_method_by_function);
    return lx_test_finish();
}
