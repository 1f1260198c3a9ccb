/* Gradients through the bridge, both directions (spec/nnx-inside-linen.md):
 *  - an NNX Linear inside a Linen model through to_linen and to_linen_class: its gradients appear
 *    at its Linen paths (params/ToLinen_0/kernel, params/LinearToLinen_0/...), and equal those of
 *    the same network written in Linen alone with the same parameters;
 *  - a Linen Dense inside an NNX model through ToNNX: its gradients appear at its NNX paths
 *    (layers/0/kernel), equal to the NNX network written directly;
 * and finite differences of the mixed models. */
#include "grad_check.h"

static uint64_t seed = 5;
static lx_array *X(int ndim, const int64_t *shape) { return lx_autorelease(gc_rand(&seed, -1, 1, ndim, shape)); }

/* ---- NNX inside Linen ---- */

static linen_type *linear_cls; /* to_linen_class(nnx.Linear) */

/* kind 0: to_linen(nnx.Linear, 4, 6); 1: to_linen_class; 2: Linen Dense named like the bridge's */
static lx_status outer_call(linen_scope *s, const lx_call *c, lx_value *out, int kind) {
    lx_array *x = NULL;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    lx_array *h = NULL;
    if (kind == 0) {
        lx_call ctor = LX_CALL_ARGS(lx_int_v(4), lx_int_v(6));
        linen_module *lin = NULL;
        LX_TRY(bridge_to_linen(&NNX_LINEAR_TYPE, &ctor, NULL, &lin));
        h = linen_call_array(s, lin, NULL, x);
        linen_module_release(lin);
    } else if (kind == 1) {
        lx_call kw = LX_CALL_KWARGS(LX_KW_INT("in_features", 4), LX_KW_INT("out_features", 6));
        linen_module *lin = NULL;
        LX_TRY(linen_module_new(linear_cls, &kw, &lin));
        h = linen_call_array(s, lin, NULL, x);
        linen_module_release(lin);
    } else {
        h = linen_dense(s, kind == 2 ? "ToLinen_0" : "LinearToLinen_0", 6, x);
    }
    return linen_return_array(out, linen_dense(s, NULL, 2, lx_tanh(h)));
}
static lx_status outer_to_linen(linen_scope *s, const lx_call *c, lx_value *out) { return outer_call(s, c, out, 0); }
static lx_status outer_class(linen_scope *s, const lx_call *c, lx_value *out) { return outer_call(s, c, out, 1); }
static lx_status outer_direct(linen_scope *s, const lx_call *c, lx_value *out) { return outer_call(s, c, out, 2); }
static lx_status outer_direct_cls(linen_scope *s, const lx_call *c, lx_value *out) { return outer_call(s, c, out, 3); }

static const linen_method M0[] = {LINEN_METHOD("__call__", outer_to_linen)};
static const linen_method M1[] = {LINEN_METHOD("__call__", outer_class)};
static const linen_method M2[] = {LINEN_METHOD("__call__", outer_direct)};
static const linen_method M3[] = {LINEN_METHOD("__call__", outer_direct_cls)};
static const linen_type OUTER_TO_LINEN = {.name = "Outer", .methods = M0, .nmethods = 1};
static const linen_type OUTER_CLASS = {.name = "Outer", .methods = M1, .nmethods = 1};
/* The Linen-only networks name their first Dense as the bridge names its module. */
static const linen_type OUTER_DIRECT = {.name = "Outer", .methods = M2, .nmethods = 1};
static const linen_type OUTER_DIRECT_CLS = {.name = "Outer", .methods = M3, .nmethods = 1};

typedef struct {
    linen_module *m;
    lx_call call;
    lx_tree *params; /* the 'params' collection */
} lin_ctx;

static lx_array *lin_apply(lin_ctx *c, const lx_tree *params) {
    lx_tree *vars = lx_tree_new();
    lx_tree_set(vars, "params", lx_tree_v((lx_tree *)params));
    lx_value out = lx_none();
    lx_status st = linen_apply(c->m, vars, &c->call, LINEN_NO_RNGS, NULL, &out, NULL);
    lx_tree_release(vars);
    lx_array *y = st == LX_OK && out.kind == LX_V_ARRAY ? lx_autorelease(lx_retain(out.u.array)) : NULL;
    lx_value_free(&out);
    return y;
}

static lx_status lin_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)aux;
    *loss = gc_weighted_loss(lin_apply(user, params));
    return *loss ? LX_OK : lx_last_status();
}

static lx_array *lin_forward(void *ctx) { return lin_apply(ctx, ((lin_ctx *)ctx)->params); }

static lx_tree *grads_of(lin_ctx *c) {
    lx_tree *g = NULL;
    lx_array *v = NULL;
    CHECK_EQ_INT(linen_value_and_grad(lin_loss, c, c->params, &v, &g, NULL), LX_OK);
    lx_release(v);
    return g;
}

/* Every leaf of a (unboxed) equal to b's at the same path, to float rounding. */
static void same_grads(const lx_tree *a, const lx_tree *b, int want_leaves) {
    lx_tree *ua = NULL, *ub = NULL;
    CHECK_EQ_INT(lx_tree_unbox(a, &ua), LX_OK);
    CHECK_EQ_INT(lx_tree_unbox(b, &ub), LX_OK);
    lx_flat fa = {0}, fb = {0};
    lx_tree_flatten(ua, &fa);
    lx_tree_flatten(ub, &fb);
    CHECK_EQ_INT(fa.len, want_leaves);
    CHECK_EQ_INT(fb.len, want_leaves);
    for (size_t i = 0; i < fa.len && i < fb.len; i++) {
        CHECK_STR(fa.items[i].path, fb.items[i].path);
        lx_array *x = fa.items[i].value.u.array, *y = fb.items[i].value.u.array;
        CHECK(lx_array_allclose(x, y, 1e-5, 1e-6));
    }
    lx_flat_free(&fa);
    lx_flat_free(&fb);
    lx_tree_release(ua);
    lx_tree_release(ub);
}

static void nnx_in_linen(const char *name, const linen_type *mixed, const linen_type *direct, const char *path) {
    lx_test_current = name;
    lx_array *x = X(LX_SHAPE(3, 4));
    lx_value args[1] = {lx_array_v(x)};
    lin_ctx cm = {.call = {1, args, 0, NULL}}, cd = {.call = {1, args, 0, NULL}};
    CHECK_EQ_INT(linen_module_new(mixed, NULL, &cm.m), LX_OK);
    CHECK_EQ_INT(linen_module_new(direct, NULL, &cd.m), LX_OK);
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(cm.m, LINEN_KEY(lx_key_from_seed(0)), &cm.call, NULL, &vars), LX_OK);
    if (!vars) return;
    cm.params = lx_tree_get(vars, "params")->u.tree;
    CHECK(lx_tree_find(cm.params, path) != NULL);
    /* the same parameters, unboxed, for the Linen-only network */
    CHECK_EQ_INT(lx_tree_unbox(cm.params, &cd.params), LX_OK);
    lx_tree *gm = grads_of(&cm), *gd = grads_of(&cd);
    CHECK(gm && lx_tree_find(gm, path) != NULL);
    if (gm && gd) same_grads(gm, gd, 4);
    /* the mixed model against finite differences */
    lx_flat fp = {0}, fg = {0};
    lx_tree_flatten(cm.params, &fp);
    lx_tree_flatten(gm, &fg);
    lx_array *xs[4], *gs[4];
    int n = 0;
    for (size_t i = 0; i < fp.len && i < fg.len && n < 4; i++, n++) {
        const lx_value *p = &fp.items[i].value, *g = &fg.items[i].value;
        xs[n] = p->kind == LX_V_BOX ? lx_box_unbox(p->u.box) : p->u.array;
        gs[n] = g->kind == LX_V_BOX ? lx_box_unbox(g->u.box) : g->u.array;
        CHECK_EQ_INT(p->kind, g->kind);
    }
    gc_compare(name, lin_forward, &cm, n, xs, gs, 1e-2, 2e-3, 2e-3);
    lx_flat_free(&fp);
    lx_flat_free(&fg);
    lx_tree_release(gm);
    lx_tree_release(gd);
    lx_tree_release(cd.params);
    lx_tree_release(vars);
    linen_module_release(cm.m);
    linen_module_release(cd.m);
}

static void test_nnx_inside_linen(void) {
    nnx_in_linen("to_linen", &OUTER_TO_LINEN, &OUTER_DIRECT, "ToLinen_0/kernel");
    CHECK_EQ_INT(bridge_to_linen_class(&NNX_LINEAR_TYPE, NULL, NULL, NULL, false, &linear_cls), LX_OK);
    if (linear_cls) nnx_in_linen("to_linen_class", &OUTER_CLASS, &OUTER_DIRECT_CLS, "LinearToLinen_0/kernel");
    bridge_to_linen_cache_clear();
    bridge_to_linen_class_free(linear_cls);
}

/* ---- Linen inside NNX ---- */

typedef struct {
    nnx_module *m;
    lx_array *x;
} nnx_ctx;

static lx_status nnx_loss(nnx_module *m, void *user, lx_array **loss) {
    *loss = gc_weighted_loss(nnx_call_array(m, ((nnx_ctx *)user)->x));
    return *loss ? LX_OK : lx_last_status();
}
static lx_array *nnx_forward(void *ctx) { return nnx_call_array(((nnx_ctx *)ctx)->m, ((nnx_ctx *)ctx)->x); }

static void test_linen_inside_nnx(void) {
    lx_test_current = "ToNNX";
    nnx_rngs *r = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    linen_module *block = NULL;
    lx_call dc = LX_CALL_KWARGS(LX_KW_INT("features", 6));
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &dc, &block), LX_OK); /* a Linen Dense as the block */
    nnx_module *wrapped = NULL, *l2 = NULL, *mixed = NULL, *l1 = NULL, *l2b = NULL, *pure = NULL;
    CHECK_EQ_INT(bridge_to_nnx_new(block, r, NULL, &wrapped), LX_OK);
    lx_call c2 = LX_CALL_ARGS(lx_int_v(6), lx_int_v(2)), c1 = LX_CALL_ARGS(lx_int_v(4), lx_int_v(6));
    CHECK_EQ_INT(nnx_module_new(&NNX_LINEAR_TYPE, &c2, r, &l2), LX_OK);
    lx_call cs = LX_CALL_ARGS(nnx_module_v(wrapped), nnx_fn_v(&NNX_TANH), nnx_module_v(l2));
    CHECK_EQ_INT(nnx_module_new(&NNX_SEQUENTIAL_TYPE, &cs, NULL, &mixed), LX_OK);
    lx_array *x = X(LX_SHAPE(3, 4));
    lx_call xc = LX_CALL_ARGS(lx_array_v(x));
    CHECK_EQ_INT(bridge_lazy_init(mixed, NULL, &xc), LX_OK);
    /* the same network in NNX alone, given the mixed model's parameters by path */
    CHECK_EQ_INT(nnx_module_new(&NNX_LINEAR_TYPE, &c1, r, &l1), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&NNX_LINEAR_TYPE, &c2, r, &l2b), LX_OK);
    lx_call cp = LX_CALL_ARGS(nnx_module_v(l1), nnx_fn_v(&NNX_TANH), nnx_module_v(l2b));
    CHECK_EQ_INT(nnx_module_new(&NNX_SEQUENTIAL_TYPE, &cp, NULL, &pure), LX_OK);
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    lx_tree *sm = NULL;
    CHECK_EQ_INT(nnx_state(mixed, 1, &param, &sm), LX_OK);
    CHECK(lx_tree_find(sm, "layers/0/kernel") && lx_tree_find(sm, "layers/2/kernel"));
    CHECK_EQ_INT(nnx_update(pure, 1, &sm), LX_OK);

    nnx_ctx cm = {mixed, x}, cpure = {pure, x};
    lx_tree *gm = NULL, *gp = NULL;
    CHECK_EQ_INT(nnx_grad(mixed, NULL, nnx_loss, &cm, &gm), LX_OK);
    CHECK_EQ_INT(nnx_grad(pure, NULL, nnx_loss, &cpure, &gp), LX_OK);
    lx_flat fm = {0}, fp = {0}, fs = {0};
    lx_tree_flatten(gm, &fm);
    lx_tree_flatten(gp, &fp);
    lx_tree_flatten(sm, &fs);
    CHECK_EQ_INT(fm.len, 4);
    CHECK_EQ_INT(fp.len, 4);
    lx_array *xs[4], *gs[4];
    for (size_t i = 0; i < fm.len && i < fp.len && i < fs.len && i < 4; i++) {
        CHECK_STR(fm.items[i].path, fp.items[i].path);
        CHECK_STR(fm.items[i].path, fs.items[i].path);
        lx_array *a = lx_variable_get_value(fm.items[i].value.u.var), *b = lx_variable_get_value(fp.items[i].value.u.var);
        CHECK(lx_array_allclose(a, b, 1e-5, 1e-6));
        xs[i] = lx_variable_get_value(fs.items[i].value.u.var);
        gs[i] = a;
    }
    if (fm.len == 4 && fs.len == 4) gc_compare("ToNNX", nnx_forward, &cm, 4, xs, gs, 1e-2, 2e-3, 2e-3);
    lx_flat_free(&fm);
    lx_flat_free(&fp);
    lx_flat_free(&fs);
    lx_tree_release(gm);
    lx_tree_release(gp);
    lx_tree_release(sm);
    nnx_module_release(mixed);
    nnx_module_release(pure);
    nnx_module_release(wrapped);
    nnx_module_release(l1);
    nnx_module_release(l2);
    nnx_module_release(l2b);
    linen_module_release(block);
    nnx_rngs_release(r);
}

int main(void) {
    RUN(test_nnx_inside_linen);
    RUN(test_linen_inside_nnx);
    lx_pool_drain();
    return lx_test_finish();
}
