/* Remat (jax.checkpoint): lx_remat_call, Linen nn.remat / nn.checkpoint and nnx.remat.
 *
 * What must hold: a rematerialised model has the plain model's parameters (same names, same
 * keys), outputs and gradients, bit for bit (the recomputation runs the same ops on the same
 * arrays with the same rng keys and counts); inside scan too (nn.scan(nn.remat(Block)), Flax's
 * idiom, and nnx.scan over a stacked LlamaDecoderLayer); gradients agree with finite
 * differences; the tape keeps one entry per call, so the peak of live array bytes over a
 * forward + backward of 8 scanned decoder layers is at most half of the plain run's (measured
 * with the allocation and free hooks). */
#include <math.h>

#include "lift_util.h"
#include "linnx/llama.h"

static linen_module *g_child; /* what Parent calls, bound as "layers" */

static lx_status parent_call(linen_scope *s, const lx_call *c, lx_value *out) {
    return linen_call_child(s, g_child, "layers", NULL, c, out);
}
static const linen_method PARENT_METHODS[] = {LINEN_METHOD("__call__", parent_call)};
static const linen_type PARENT = {.name = "Parent", .methods = PARENT_METHODS, .nmethods = 1};

/* Block: carry -> (LayerNorm(carry + Dense_1(dropout(gelu(Dense_0(carry))))), None), sowing the
 * hidden activation: parameters, an rng stream and a mutable collection inside the remat. */
static lx_status block_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *x = NULL;
    LX_TRY(lx_call_array(c, 0, "carry", &x));
    int64_t f = x->shape[x->ndim - 1];
    lx_array *h = lx_gelu(linen_dense(s, NULL, 2 * f, x), true);
    if (!h) return lx_last_status();
    LX_TRY(linen_sow(s, "intermediates", "h", h));
    h = linen_dropout(s, NULL, 0.25, false, h);
    lx_array *y = lx_tanh(lx_add(x, linen_dense(s, NULL, f, h)));
    if (!y) return lx_last_status();
    lx_tree *t = lx_tree_new();
    lx_status st = lx_tree_set(t, "0", lx_array_v(y));
    if (st == LX_OK) st = lx_tree_set(t, "1", lx_none());
    if (st != LX_OK) {
        lx_tree_release(t);
        return st;
    }
    *out = lx_tree_v(t);
    return LX_OK;
}
static const linen_method BLOCK_METHODS[] = {LINEN_METHOD("__call__", block_call)};
static const linen_type BLOCK = {.name = "Block", .methods = BLOCK_METHODS, .nmethods = 1};

/* Same paths and bit-equal arrays. */
static bool same_leaves(const lx_tree *a, const lx_tree *b) {
    lx_flat fa = {0}, fb = {0};
    bool ok = a && b && lx_tree_flatten(a, &fa) == LX_OK && lx_tree_flatten(b, &fb) == LX_OK && fa.len == fb.len &&
              fa.len > 0;
    for (size_t i = 0; ok && i < fa.len; i++) {
        const lx_value *va = &fa.items[i].value, *vb = &fb.items[i].value;
        ok = strcmp(fa.items[i].path, fb.items[i].path) == 0 && va->kind == vb->kind;
        /* arrays by bytes; every other leaf (ints, floats, strings, tuples, boxes, ...) by value */
        if (ok) ok = va->kind == LX_V_ARRAY ? lx_array_equal(va->u.array, vb->u.array) : lx_value_equal(va, vb);
    }
    lx_flat_free(&fa);
    lx_flat_free(&fb);
    return ok;
}

typedef struct grad_ctx {
    linen_module *m;
    lx_array *x;
    lx_key dropout;
} grad_ctx;

static lx_status loss_fn(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)aux;
    grad_ctx *c = user;
    lx_tree *v = lx_tree_new();
    lx_status st = lx_tree_set(v, "params", lx_tree_v((lx_tree *)params));
    lx_value out = lx_none();
    if (st == LX_OK) st = linen_apply(c->m, v, LINEN_RNGS({"dropout", c->dropout}), &LX_ARGS(c->x), NULL, &out, NULL);
    lx_tree_release(v);
    LX_TRY(st);
    lx_array *y = out.kind == LX_V_TREE ? lx_tree_get(out.u.tree, "0")->u.array : out.u.array;
    *loss = lx_sum(lx_mul(y, y), 0, NULL, false);
    lx_value_free(&out);
    return *loss ? LX_OK : lx_last_status();
}

/* value and gradients of `m` (bound through Parent) on `params` */
static lx_tree *grads_of(linen_module *child, const lx_tree *params, lx_array *x, lx_array **val) {
    g_child = child;
    linen_module *p = plain(&PARENT);
    grad_ctx c = {p, x, lx_key_from_seed(7)};
    lx_tree *g = NULL;
    if (linen_value_and_grad(loss_fn, &c, params, val, &g, NULL) != LX_OK) g = NULL;
    linen_module_release(p);
    return g;
}

static void test_linen_remat(void) {
    linen_module *blk = plain(&BLOCK), *rm = NULL, *dm = NULL;
    CHECK_EQ_INT(linen_remat(blk, LX_REMAT_NOTHING_SAVEABLE, &rm), LX_OK);
    CHECK_EQ_INT(linen_checkpoint(blk, LX_REMAT_DOTS_SAVEABLE, &dm), LX_OK);
    CHECK_STR(linen_module_type(rm)->name, "CheckpointBlock");
    lx_array *x = iota(LX_SHAPE(3, 4), 0.2f);
    /* init: the same parameters under the same names */
    lx_tree *vp = NULL, *vr = NULL;
    g_child = blk;
    linen_module *p = plain(&PARENT);
    linen_rngs rngs = LINEN_RNGS({"params", lx_key_from_seed(3)}, {"dropout", lx_key_from_seed(4)});
    CHECK_EQ_INT(linen_init(p, rngs, &LX_ARGS(x), NULL, &vp), LX_OK);
    g_child = rm;
    CHECK_EQ_INT(linen_init(p, rngs, &LX_ARGS(x), NULL, &vr), LX_OK);
    CHECK(leaf(vr, "params/layers/Dense_0/kernel") && leaf(vr, "params/layers/Dense_1/bias"));
    /* init's mutability is DenyList('intermediates') in both */
    CHECK(!leaf(vp, "intermediates/layers/h") && !leaf(vr, "intermediates/layers/h"));
    CHECK(vp && vr && same_leaves(lx_tree_get(vp, "params")->u.tree, lx_tree_get(vr, "params")->u.tree));
    /* apply with the sown collection mutable: the forward writes it as the plain module does */
    lx_tree *vars = lx_tree_new();
    lx_tree_set(vars, "params", *lx_tree_get(vp, "params"));
    lx_value o1 = lx_none(), o2 = lx_none();
    lx_tree *m1 = NULL, *m2 = NULL;
    linen_opts mo = {.mutable = LINEN_MUTABLE("intermediates"), .mutable_given = true};
    g_child = blk;
    CHECK_EQ_INT(linen_apply(p, vars, LINEN_RNGS({"dropout", lx_key_from_seed(5)}), &LX_ARGS(x), &mo, &o1, &m1), LX_OK);
    g_child = rm;
    CHECK_EQ_INT(linen_apply(p, vars, LINEN_RNGS({"dropout", lx_key_from_seed(5)}), &LX_ARGS(x), &mo, &o2, &m2), LX_OK);
    CHECK(o1.kind == LX_V_TREE && o2.kind == LX_V_TREE &&
          lx_array_equal(lx_tree_get(o1.u.tree, "0")->u.array, lx_tree_get(o2.u.tree, "0")->u.array));
    CHECK(m1 && m2 && same_leaves(m1, m2) && leaf(m2, "intermediates/layers/h/0")); /* sow keeps a tuple */
    lx_value_free(&o1);
    lx_value_free(&o2);
    lx_tree_release(m1);
    lx_tree_release(m2);
    /* gradients: bit-equal to the plain module's, both policies (dropout on: keys replayed) */
    const lx_tree *params = lx_tree_get(vp, "params")->u.tree;
    lx_array *v0 = NULL, *v1 = NULL, *v2 = NULL;
    lx_tree *g0 = grads_of(blk, params, x, &v0), *g1 = grads_of(rm, params, x, &v1), *g2 = grads_of(dm, params, x, &v2);
    CHECK(g0 && g1 && g2);
    CHECK(v0 && v1 && v2 && lx_array_equal(v0, v1) && lx_array_equal(v0, v2));
    CHECK(same_leaves(g0, g1));
    CHECK(same_leaves(g0, g2));
    /* and finite differences on the rematerialised model */
    const lx_array *k = leaf(params, "layers/Dense_0/kernel"), *gk = g1 ? leaf(g1, "layers/Dense_0/kernel") : NULL;
    g_child = rm;
    grad_ctx c = {p, x, lx_key_from_seed(7)};
    int idx[] = {0, 13, 29};
    CHECK(k && gk); /* else the finite-difference check below would silently not run */
    for (int j = 0; j < 3 && k && gk; j++) {
        float *w = lx_f32(k), save = w[idx[j]];
        const float eps = 1e-2f;
        size_t mark = lx_pool_open();
        lx_array *lp = NULL, *lm = NULL;
        w[idx[j]] = save + eps;
        loss_fn(params, &c, &lp, NULL);
        w[idx[j]] = save - eps;
        loss_fn(params, &c, &lm, NULL);
        w[idx[j]] = save;
        double fd = ((double)lx_f32(lp)[0] - (double)lx_f32(lm)[0]) / (2 * eps);
        lx_pool_close(mark);
        CHECK_NEAR(lx_f32(gk)[idx[j]], fd, 2e-3 + 2e-2 * fabs(fd));
    }
    lx_release(v0);
    lx_release(v1);
    lx_release(v2);
    lx_tree_release(g0);
    lx_tree_release(g1);
    lx_tree_release(g2);
    lx_tree_release(vars);
    lx_tree_release(vp);
    lx_tree_release(vr);
    lx_release(x);
    linen_module_release(p);
    linen_module_release(rm);
    linen_module_release(dm);
    linen_module_release(blk);
}

/* nn.remat(nn.vmap(Dense)) bound as "layers": the vmap's body root is built from the remat body
 * root's parent (lift_vmap_scan.c reads root->parent), so its variables land at params/layers/...
 * only if that parent is the real one; the gradient runs the recomputation, which builds the
 * frames again from the closure. Under the sanitizer build a parent on a finished stack frame
 * would be a use after return. */
static void test_remat_of_vmap_parent(void) {
    linen_module *d = NULL, *v = NULL, *rm = NULL;
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &LX_CALL_KWARGS(LX_KW_INT("features", 4)), &d), LX_OK);
    linen_lift_opts o = {.variable_axes = LINEN_VAR_AXES({"params", 0}), .split_rngs = LINEN_NAMES("params"),
                         .in_axes = LINEN_AXES(0), .length = 3};
    CHECK_EQ_INT(linen_vmap(d, &o, &v), LX_OK);
    CHECK_EQ_INT(linen_remat(v, LX_REMAT_NOTHING_SAVEABLE, &rm), LX_OK);
    g_child = rm;
    linen_module *p = plain(&PARENT);
    lx_array *x = iota(LX_SHAPE(3, 2, 5), 0.25f);
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(p, LINEN_KEY(lx_key_from_seed(1)), &LX_ARGS(x), NULL, &vars), LX_OK);
    const lx_array *k = vars ? leaf(vars, "params/layers/kernel") : NULL;
    CHECK(k && k->ndim == 3 && k->shape[0] == 3 && k->shape[1] == 5 && k->shape[2] == 4);
    CHECK(vars && !leaf(vars, "params/kernel"));
    /* forward + backward through the recomputation: y[i] = x[i] @ k[i] + b[i], summed */
    lx_array *val = NULL;
    lx_tree *g = vars ? grads_of(rm, lx_tree_get(vars, "params")->u.tree, x, &val) : NULL;
    CHECK(g && val);
    /* loss = sum y^2: d loss / d b[i, f] = 2 sum_n y[i, n, f] */
    const lx_array *b = vars ? leaf(vars, "params/layers/bias") : NULL, *gb = g ? leaf(g, "layers/bias") : NULL;
    CHECK(b && gb && k);
    double loss = 0;
    for (int i = 0; b && gb && k && i < 3; i++)
        for (int f = 0; f < 4; f++) {
            double gsum = 0;
            for (int n = 0; n < 2; n++) {
                double y = lx_f32(b)[i * 4 + f];
                for (int j = 0; j < 5; j++) y += (double)lx_f32(x)[(i * 2 + n) * 5 + j] * lx_f32(k)[(i * 5 + j) * 4 + f];
                gsum += 2 * y, loss += y * y;
            }
            CHECK_NEAR(lx_f32(gb)[i * 4 + f], gsum, 1e-4 + 1e-4 * fabs(gsum));
        }
    if (val) CHECK_NEAR(lx_f32(val)[0], loss, 1e-3 + 1e-5 * loss);
    lx_tree_release(g);
    lx_release(val);
    lx_tree_release(vars);
    lx_release(x);
    linen_module_release(p);
    linen_module_release(rm);
    linen_module_release(v);
    linen_module_release(d);
}

/* nn.scan(nn.remat(Block)): parameters and gradients of the scanned plain block. */
static void test_linen_scan_of_remat(void) {
    linen_module *blk = plain(&BLOCK), *rm = NULL, *s0 = NULL, *s1 = NULL;
    CHECK_EQ_INT(linen_remat(blk, LX_REMAT_NOTHING_SAVEABLE, &rm), LX_OK);
    linen_lift_opts o = {.variable_axes = LINEN_VAR_AXES({"params", 1}, {"intermediates", 0}),
                         .split_rngs = LINEN_NAMES("params", "dropout"),
                         .length = 3,
                         .partition_name = "layers"};
    CHECK_EQ_INT(linen_scan(blk, &o, &s0), LX_OK);
    CHECK_EQ_INT(linen_scan(rm, &o, &s1), LX_OK);
    CHECK_STR(linen_module_type(s1)->name, "ScanCheckpointBlock");
    lx_array *x = iota(LX_SHAPE(2, 4), 0.15f);
    linen_module *p = plain(&PARENT);
    linen_rngs rngs = LINEN_RNGS({"params", lx_key_from_seed(11)}, {"dropout", lx_key_from_seed(12)});
    lx_tree *v0 = NULL, *v1 = NULL;
    g_child = s0;
    CHECK_EQ_INT(linen_init(p, rngs, &LX_ARGS(x), NULL, &v0), LX_OK);
    g_child = s1;
    CHECK_EQ_INT(linen_init(p, rngs, &LX_ARGS(x), NULL, &v1), LX_OK);
    const lx_array *k = v1 ? leaf(v1, "params/layers/Dense_0/kernel") : NULL;
    CHECK(k && k->ndim == 3 && k->shape[0] == 4 && k->shape[1] == 3 && k->shape[2] == 8);
    CHECK(v0 && v1 && same_leaves(lx_tree_get(v0, "params")->u.tree, lx_tree_get(v1, "params")->u.tree));
    const lx_tree *params = lx_tree_get(v0, "params")->u.tree;
    lx_array *a = NULL, *b = NULL;
    lx_tree *g0 = grads_of(s0, params, x, &a), *g1 = grads_of(s1, params, x, &b);
    CHECK(g0 && g1 && a && b && lx_array_equal(a, b));
    CHECK(same_leaves(g0, g1));
    lx_release(a);
    lx_release(b);
    lx_tree_release(g0);
    lx_tree_release(g1);
    lx_tree_release(v0);
    lx_tree_release(v1);
    lx_release(x);
    linen_module_release(p);
    linen_module_release(s0);
    linen_module_release(s1);
    linen_module_release(rm);
    linen_module_release(blk);
}

/* lx_remat_call directly: the closure contract, no tape, errors. */
typedef struct fn_ctx {
    lx_array *w, *x;
    int runs, recomputes, frees, flagged; /* flagged: runs that saw lx_remat_recomputing() */
} fn_ctx;

static lx_status fn_body(void *user, bool recompute, lx_value *out) {
    fn_ctx *c = user;
    c->runs++;
    c->recomputes += recompute;
    c->flagged += lx_remat_recomputing();
    lx_array *y = lx_tanh(lx_matmul(c->x, c->w));
    if (!y) return lx_last_status();
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}
static void fn_free(void *user) { ((fn_ctx *)user)->frees++; }

typedef struct ready_log {
    const lx_array *w;
    int n;          /* reports for w */
    lx_array *g;    /* a copy of the last one */
} ready_log;
static void on_ready(void *user, const lx_array *x, const lx_array *g) {
    ready_log *l = user;
    if (x != l->w || !g) return;
    l->n++;
    lx_release(l->g);
    l->g = lx_array_copy(g);
}

static void test_remat_call(void) {
    fn_ctx c = {iota(LX_SHAPE(2, 3), 0.3f), iota(LX_SHAPE(3, 2), 0.2f), 0, 0, 0, 0};
    /* no tape: one run, the closure freed at once */
    lx_value o = lx_none();
    CHECK_EQ_INT(lx_remat_call(fn_body, &c, fn_free, LX_REMAT_NOTHING_SAVEABLE, &o), LX_OK);
    CHECK(c.runs == 1 && c.recomputes == 0 && c.frees == 1);
    lx_value_free(&o);
    /* a tape: one entry + one output record; the backward runs the body once more */
    for (int pol = 0; pol < 2; pol++) {
        c.runs = c.recomputes = c.frees = c.flagged = 0;
        lx_tape *t = NULL;
        CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
        lx_tape_watch(t, c.w);
        size_t mark = lx_pool_open();
        CHECK_EQ_INT(lx_remat_call(fn_body, &c, fn_free, (lx_remat_policy)pol, &o), LX_OK);
        CHECK_EQ_INT((int)lx_tape_size(t), 3); /* the watched leaf, the entry, its output */
        CHECK(c.frees == 0);
        lx_array *loss = lx_sum(lx_mul(o.u.array, o.u.array), 0, NULL, false);
        lx_array *g = NULL;
        CHECK_EQ_INT(lx_tape_backward(t, loss, 1, &c.w, &g), LX_OK);
        CHECK(c.runs == 2 && c.recomputes == 1 && c.frees == 1);
        /* lx_remat_recomputing() is true exactly inside the recomputation, false after it */
        CHECK(c.flagged == 1 && !lx_remat_recomputing());
        /* the plain gradient: dL/dW = x^T (2 y (1 - y^2)), a double loop */
        double maxerr = 0;
        for (int i = 0; g && i < 2; i++)
            for (int j = 0; j < 3; j++) {
                double acc = 0;
                for (int r = 0; r < 3; r++) {
                    double z = 0;
                    for (int k = 0; k < 2; k++) z += (double)lx_f32(c.x)[r * 2 + k] * lx_f32(c.w)[k * 3 + j];
                    double y = tanh(z);
                    acc += (double)lx_f32(c.x)[r * 2 + i] * 2 * y * (1 - y * y);
                }
                maxerr = lx_worse(maxerr, fabs(acc - lx_f32(g)[i * 3 + j]));
            }
        CHECK(g && maxerr < 1e-5);
        lx_release(g);
        lx_value_free(&o);
        lx_pool_close(mark);
        lx_tape_free(t);
    }
    /* the grad-ready callback (autodiff.h) reports w once, with its whole gradient, although the
     * remat's inner backward pass computes a part of it first (w is also used outside the call) */
    {
        c.runs = c.recomputes = c.frees = c.flagged = 0;
        ready_log log = {c.w, 0, NULL};
        lx_tape *t = NULL;
        CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
        lx_tape_watch(t, c.w);
        size_t mark = lx_pool_open();
        CHECK_EQ_INT(lx_remat_call(fn_body, &c, fn_free, LX_REMAT_NOTHING_SAVEABLE, &o), LX_OK);
        lx_array *loss = lx_add(lx_sum(lx_mul(o.u.array, o.u.array), 0, NULL, false), lx_sum(c.w, 0, NULL, false));
        lx_array *g = NULL;
        lx_tape_set_grad_ready(on_ready, &log);
        CHECK_EQ_INT(lx_tape_backward(t, loss, 1, &c.w, &g), LX_OK);
        lx_tape_set_grad_ready(NULL, NULL);
        CHECK_EQ_INT(log.n, 1);
        CHECK(g && log.g && memcmp(lx_f32(g), lx_f32(log.g), 6 * sizeof(float)) == 0);
        lx_release(log.g);
        lx_release(g);
        lx_value_free(&o);
        lx_pool_close(mark);
        lx_tape_free(t);
    }
    /* a tape freed without a backward pass still frees the closure */
    c.frees = 0;
    lx_tape *t = NULL;
    CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
    lx_tape_watch(t, c.w);
    CHECK_EQ_INT(lx_remat_call(fn_body, &c, fn_free, LX_REMAT_NOTHING_SAVEABLE, &o), LX_OK);
    lx_value_free(&o);
    lx_tape_free(t);
    CHECK(c.frees == 1);
    /* errors */
    c.frees = 0;
    CHECK_FAILS(lx_remat_call(fn_body, &c, fn_free, (lx_remat_policy)7, &o), LX_ERR_INVALID_ARGUMENT, "unknown policy 7");
    CHECK(c.frees == 1);
    CHECK_FAILS(lx_remat_call(NULL, &c, fn_free, LX_REMAT_NOTHING_SAVEABLE, &o), LX_ERR_INVALID_ARGUMENT, "NULL");
    linen_module *r = NULL;
    /* a NULL target is a failed input (status.h; tests/test_stack_contract.c has the rest) */
    CHECK_FAILS(linen_remat(NULL, LX_REMAT_NOTHING_SAVEABLE, &r), LX_ERR_FAILED_INPUT, "linen_remat: target is NULL");
    lx_release(c.w);
    lx_release(c.x);
}

/* ---- NNX: a stacked decoder layer, scanned, with and without remat ---- */
typedef struct stack_run {
    nnx_module *stack;
    lx_array *x, *pos;
    int remat; /* -1: none */
    int64_t live, peak;
} stack_run;

static _Thread_local stack_run *g_meter;
static void on_alloc(size_t n, void *u) {
    (void)u;
    if (!g_meter) return;
    g_meter->live += (int64_t)n;
    if (g_meter->live > g_meter->peak) g_meter->peak = g_meter->live;
}
static void on_free(size_t n, void *u) {
    (void)u;
    if (g_meter) g_meter->live -= (int64_t)n;
}

static int params_of(nnx_module *m, lx_array **out, int cap) {
    lx_tree *st = NULL;
    nnx_filter pf = NNX_OF_TYPE(&lx_Param);
    if (nnx_state(m, 1, &pf, &st) != LX_OK) return 0;
    lx_flat f = {0};
    lx_tree_flatten(st, &f);
    int n = 0;
    for (size_t i = 0; i < f.len && n < cap; i++)
        if (f.items[i].value.kind == LX_V_VARIABLE) out[n++] = lx_variable_get_value(f.items[i].value.u.var);
    lx_flat_free(&f);
    lx_tree_release(st);
    return n;
}

/* forward + backward; grads[i] owned by the caller */
static lx_status stack_grads(stack_run *r, lx_array **ps, int np, lx_array **grads, lx_array **val) {
    size_t mark = lx_pool_open();
    lx_tape *t = NULL;
    LX_TRY(lx_tape_new(&t));
    for (int i = 0; i < np; i++) lx_tape_watch(t, ps[i]);
    lx_kwarg kw[] = {LX_KW_ARRAY("decoder_positions", r->pos)};
    lx_call call = {1, (lx_value[]){lx_array_v(r->x)}, 1, kw};
    lx_value out = lx_none();
    g_meter = r;
    lx_status st = r->remat < 0 ? nnx_scan_call(r->stack, NULL, NULL, NULL, &call, &out)
                                : nnx_scan_call_remat(r->stack, NULL, NULL, NULL, (lx_remat_policy)r->remat, &call, &out);
    lx_array *loss = st == LX_OK ? lx_sum(lx_mul(out.u.array, out.u.array), 0, NULL, false) : NULL;
    if (st == LX_OK && !loss) st = lx_last_status();
    lx_value_free(&out);
    lx_tape_stop(t);
    if (st == LX_OK) st = lx_tape_backward(t, loss, np, ps, grads);
    g_meter = NULL;
    if (st == LX_OK) *val = lx_retain(loss);
    lx_tape_free(t);
    lx_pool_close(mark);
    return st;
}

static void test_nnx_scan_remat_llama(void) {
    llama_config cfg = llama_config_tiny();
    cfg.emb_dim = 32;
    cfg.num_query_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.head_dim = 8;
    cfg.mlp_dim = 64;
    cfg.num_decoder_layers = 8;
    lx_kwarg kw[LLAMA_CONFIG_NKW];
    llama_config_kwargs(&cfg, kw);
    lx_call ctor = {0, NULL, LLAMA_CONFIG_NKW, kw};
    nnx_rngs *rngs = NULL;
    nnx_stream_spec s[] = {{"params", false, 0, {{0, 0}}}};
    nnx_module *stack = NULL;
    CHECK_EQ_INT(nnx_rngs_new(1, s, &rngs), LX_OK);
    CHECK_EQ_INT(nnx_vmap_create(&LLAMA_DECODER_LAYER_TYPE, &ctor, rngs, 8, NULL, NULL, &stack), LX_OK);
    if (!stack) return;
    const int64_t B = 2, S = 64, E = 32;
    lx_array *x = lx_array_new(LX_F32, 3, (int64_t[]){B, S, E});
    for (int64_t i = 0; i < x->size; i++) lx_f32(x)[i] = 0.02f * (float)((i * 37) % 101 - 50);
    lx_array *pos = lx_array_new(LX_I32, 2, (int64_t[]){B, S});
    for (int64_t i = 0; i < pos->size; i++) lx_i32(pos)[i] = (int32_t)(i % S);
    lx_array *ps[64];
    int np = params_of(stack, ps, 64);
    CHECK(np >= 7);
    lx_array *g[3][64] = {{0}}, *v[3] = {0};
    int64_t peak[3] = {0};
    size_t cache_limit = lx_array_cache_limit(); /* every block to and from the heap, for the hooks */
    lx_array_cache_set_limit(0);
    lx_set_alloc_hook(on_alloc, NULL);
    lx_set_free_hook(on_free, NULL);
    for (int k = 0; k < 3; k++) {
        stack_run r = {stack, x, pos, k - 1, 0, 0};
        CHECK_EQ_INT(stack_grads(&r, ps, np, g[k], &v[k]), LX_OK);
        peak[k] = r.peak;
    }
    lx_set_alloc_hook(NULL, NULL);
    lx_set_free_hook(NULL, NULL);
    lx_array_cache_set_limit(cache_limit);
    /* bit-equal values and gradients */
    for (int k = 1; k < 3; k++) {
        CHECK(v[0] && v[k] && lx_array_equal(v[0], v[k]));
        bool same = true;
        for (int i = 0; i < np; i++) same = same && g[0][i] && g[k][i] && lx_array_equal(g[0][i], g[k][i]);
        CHECK(same);
    }
    /* memory: the plain tape holds every layer's activations; remat one layer's at a time */
    printf("# peak live bytes: plain %lld, remat(nothing) %lld (%.3f), remat(dots) %lld (%.3f)\n", (long long)peak[0],
           (long long)peak[1], (double)peak[1] / (double)peak[0], (long long)peak[2], (double)peak[2] / (double)peak[0]);
    CHECK(peak[0] > 0 && peak[1] * 2 <= peak[0]);
    CHECK(peak[2] < peak[0] && peak[2] >= peak[1]);
    for (int k = 0; k < 3; k++) {
        lx_release(v[k]);
        for (int i = 0; i < np; i++) lx_release(g[k][i]);
    }
    lx_release(x);
    lx_release(pos);
    nnx_module_release(stack);
    nnx_rngs_release(rngs);
}

/* nnx.remat on one module (nnx_remat_call), under nnx_value_and_grad: equal to the plain call. */
typedef struct nnx_ctx {
    lx_array *x;
    int remat;
} nnx_ctx;

static lx_status nnx_loss(nnx_module *m, void *user, lx_array **loss) {
    nnx_ctx *c = user;
    lx_value o = lx_none();
    lx_call call = {1, (lx_value[]){lx_array_v(c->x)}, 0, NULL};
    LX_TRY(c->remat < 0 ? nnx_call(m, NULL, &call, &o) : nnx_remat_call(m, NULL, (lx_remat_policy)c->remat, &call, &o));
    lx_array *y = lx_tanh(o.u.array);
    *loss = lx_sum(lx_mul(y, y), 0, NULL, false);
    lx_value_free(&o);
    return *loss ? LX_OK : lx_last_status();
}

static void test_nnx_remat(void) {
    nnx_rngs *rngs = NULL;
    nnx_stream_spec s[] = {{"params", false, 0, {{0, 0}}}};
    CHECK_EQ_INT(nnx_rngs_new(1, s, &rngs), LX_OK);
    nnx_linear *lin = NULL;
    CHECK_EQ_INT(nnx_linear_new(4, 3, rngs, &lin), LX_OK);
    if (!lin) return;
    lx_array *x = iota(LX_SHAPE(5, 4), 0.3f);
    lx_array *val[3] = {0};
    lx_tree *gr[3] = {0};
    for (int k = 0; k < 3; k++) {
        nnx_ctx c = {x, k - 1};
        CHECK_EQ_INT(nnx_value_and_grad((nnx_module *)lin, NULL, nnx_loss, &c, &val[k], &gr[k]), LX_OK);
    }
    for (int k = 1; k < 3; k++) {
        CHECK(val[0] && val[k] && lx_array_equal(val[0], val[k]));
        lx_flat f0 = {0}, fk = {0};
        bool ok = gr[0] && gr[k] && lx_tree_flatten(gr[0], &f0) == LX_OK && lx_tree_flatten(gr[k], &fk) == LX_OK &&
                  f0.len == 2 && fk.len == 2;
        for (size_t i = 0; ok && i < f0.len; i++)
            ok = strcmp(f0.items[i].path, fk.items[i].path) == 0 &&
                 lx_array_equal(lx_variable_get_value(f0.items[i].value.u.var), lx_variable_get_value(fk.items[i].value.u.var));
        CHECK(ok);
        lx_flat_free(&f0);
        lx_flat_free(&fk);
    }
    /* no tape: the plain call */
    lx_value o = lx_none();
    CHECK_EQ_INT(nnx_remat_call((nnx_module *)lin, NULL, LX_REMAT_DOTS_SAVEABLE, &LX_ARGS(x), &o), LX_OK);
    CHECK(o.kind == LX_V_ARRAY && o.u.array->shape[0] == 5 && o.u.array->shape[1] == 3);
    lx_value_free(&o);
    CHECK_FAILS(nnx_remat_call((nnx_module *)lin, NULL, (lx_remat_policy)3, &LX_ARGS(x), &o), LX_ERR_INVALID_ARGUMENT,
                "unknown policy");
    for (int k = 0; k < 3; k++) {
        lx_release(val[k]);
        lx_tree_release(gr[k]);
    }
    lx_release(x);
    nnx_module_release((nnx_module *)lin);
    nnx_rngs_release(rngs);
}

/* The recomputation's ops carry the forward's module paths (what quantization rules match on):
 * layers/Dense_0 in the forward and again in the backward, never Dense_0 alone or doubled. */
typedef struct path_log {
    int dense0, bad;
    char first_bad[128];
} path_log;
static void log_path(const lx_intercept_event *ev, void *user) {
    path_log *l = user;
    if (strcmp(ev->path, "layers/Dense_0") == 0) l->dense0++;
    else if (*ev->path && strcmp(ev->path, "layers/Dense_1") != 0 && !l->bad++)
        snprintf(l->first_bad, sizeof l->first_bad, "%s", ev->path);
}

static void test_remat_paths(void) {
    linen_module *blk = plain(&BLOCK), *rm = NULL, *sc = NULL;
    CHECK_EQ_INT(linen_remat(blk, LX_REMAT_NOTHING_SAVEABLE, &rm), LX_OK);
    linen_lift_opts o = {.variable_axes = LINEN_VAR_AXES({"params", 0}), .split_rngs = LINEN_NAMES("params", "dropout"),
                         .length = 2};
    CHECK_EQ_INT(linen_scan(rm, &o, &sc), LX_OK);
    lx_array *x = iota(LX_SHAPE(3, 4), 0.2f);
    linen_module *kids[] = {rm, sc};
    int expect[] = {2, 4}; /* forward + recomputation, per layer */
    for (int k = 0; k < 2; k++) {
        g_child = kids[k];
        linen_module *p = plain(&PARENT);
        lx_tree *vars = NULL;
        linen_rngs rngs = LINEN_RNGS({"params", lx_key_from_seed(3)}, {"dropout", lx_key_from_seed(4)});
        CHECK_EQ_INT(linen_init(p, rngs, &LX_ARGS(x), NULL, &vars), LX_OK);
        path_log log = {0};
        int h = 0;
        CHECK_EQ_INT(lx_interceptor_add(log_path, &log, &h), LX_OK);
        lx_array *v = NULL;
        lx_tree *g = vars ? grads_of(kids[k], lx_tree_get(vars, "params")->u.tree, x, &v) : NULL;
        lx_interceptor_remove(h);
        CHECK(g != NULL);
        CHECK_EQ_INT(log.dense0, expect[k]);
        if (log.bad) fprintf(stderr, "  path seen: %s\n", log.first_bad);
        CHECK_EQ_INT(log.bad, 0);
        lx_release(v);
        lx_tree_release(g);
        lx_tree_release(vars);
        linen_module_release(p);
    }
    lx_release(x);
    linen_module_release(sc);
    linen_module_release(rm);
    linen_module_release(blk);
}

/* lx_remat_call keeps the module path current at the call: the recomputation's matmul reports
 * it although the backward pass runs outside every frame (before: "" in the backward). */
typedef struct mm_paths {
    int n;
    char path[3][64];
} mm_paths;
static void log_mm(const lx_intercept_event *ev, void *user) {
    mm_paths *l = user;
    if (strcmp(ev->op, "matmul") == 0 && l->n < 3) snprintf(l->path[l->n], sizeof l->path[0], "%s", ev->path);
    if (strcmp(ev->op, "matmul") == 0) l->n++;
}

static void test_remat_call_path(void) {
    fn_ctx c = {iota(LX_SHAPE(2, 3), 0.3f), iota(LX_SHAPE(3, 2), 0.2f), 0, 0, 0, 0};
    mm_paths log = {0};
    int h = 0;
    CHECK_EQ_INT(lx_interceptor_add(log_mm, &log, &h), LX_OK);
    lx_tape *t = NULL;
    CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
    lx_tape_watch(t, c.w);
    size_t mark = lx_pool_open();
    lx_value o = lx_none();
    CHECK_EQ_INT(lx_frame_push(LX_FRAME_LINEN, "outer/blk", NULL, NULL), LX_OK);
    CHECK_EQ_INT(lx_remat_call(fn_body, &c, fn_free, LX_REMAT_NOTHING_SAVEABLE, &o), LX_OK);
    lx_frame_pop();
    CHECK_STR(lx_frame_current_path(), "");
    lx_array *loss = lx_sum(lx_mul(o.u.array, o.u.array), 0, NULL, false);
    lx_array *g = NULL;
    CHECK_EQ_INT(lx_tape_backward(t, loss, 1, &c.w, &g), LX_OK);
    lx_interceptor_remove(h);
    CHECK(c.runs == 2 && c.recomputes == 1 && c.frees == 1);
    /* the forward's matmul, the recomputation's, and the inner backward's x^T.g (after the frame) */
    CHECK_EQ_INT(log.n, 3);
    CHECK_STR(log.path[0], "outer/blk");
    CHECK_STR(log.path[1], "outer/blk");
    CHECK_STR(log.path[2], "");
    CHECK_STR(lx_frame_current_path(), ""); /* the backward popped its frame */
    lx_release(g);
    lx_value_free(&o);
    lx_pool_close(mark);
    lx_tape_free(t);
    lx_release(c.w);
    lx_release(c.x);
}

/* same_leaves itself: trees that differ only in a non-array leaf (an int, a string) differ */
static void test_same_leaves(void) {
    lx_array *a = iota(LX_SHAPE(2), 1.0f);
    lx_tree *t1 = lx_tree_new(), *t2 = lx_tree_new();
    CHECK_EQ_INT(lx_tree_set_path(t1, "p/w", lx_array_v(a)), LX_OK);
    CHECK_EQ_INT(lx_tree_set_path(t2, "p/w", lx_array_v(a)), LX_OK);
    CHECK_EQ_INT(lx_tree_set_path(t1, "p/n", lx_int_v(1)), LX_OK);
    CHECK_EQ_INT(lx_tree_set_path(t2, "p/n", lx_int_v(1)), LX_OK);
    CHECK(same_leaves(t1, t2));
    CHECK_EQ_INT(lx_tree_set_path(t2, "p/n", lx_int_v(2)), LX_OK);
    CHECK(!same_leaves(t1, t2));
    CHECK_EQ_INT(lx_tree_set_path(t2, "p/n", lx_str_v("1")), LX_OK);
    CHECK(!same_leaves(t1, t2));
    lx_tree_release(t1);
    lx_tree_release(t2);
    lx_release(a);
}

int main(void) {
    test_same_leaves();
    test_remat_paths();
    test_remat_call();
    test_remat_call_path();
    test_linen_remat();
    test_linen_scan_of_remat();
    test_remat_of_vmap_parent();
    test_nnx_remat();
    test_nnx_scan_remat_llama();
    return lx_test_finish();
}
