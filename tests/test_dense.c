/* The fused "dense" primitive (linalg.h lx_dense: act(x @ kernel + bias) in one GEMM epilogue):
 *  - forward and gradients bit-identical to the unfused ops (dot_general, add, relu/gelu/silu) for
 *    every activation, leading batch axes, no bias, a 1-d x, small / packed / edge-tile sizes;
 *  - gradients against central finite differences in double (grad_check.h);
 *  - one tape record instead of three; abstract inputs; failed inputs; bad shapes and dtypes;
 *  - the fallback: while an observer, an op interceptor or a substituter listens, lx_dense runs the
 *    separate ops, so the interceptor still sees a dot_general;
 *  - Linen Dense and NNX Linear give the same bits fused and unfused.
 * The bits and the tape tests run twice: GELU/SiLU as a pass after the GEMM (the default) and in
 * the GEMM epilogue per tile (lx_dense_act_in_epilogue), where under a tape the GEMM writes z and
 * the epilogue y beside it.
 * ctest runs it under every kernel set the machine has (LINNX_ISA). */
#include <string.h>

#include "../src/ops/linalg_internal.h"
#include "grad_check.h"
#include "linnx/intercept.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/nnx_layers.h"

static const lx_activation ACTS[] = {LX_ACT_NONE, LX_ACT_RELU, LX_ACT_GELU_TANH, LX_ACT_GELU_ERF, LX_ACT_SILU};
#define NACTS 5

static uint64_t seed = 12345;
static lx_array *rnd(float lo, float hi, int ndim, const int64_t *shape) {
    return lx_autorelease(gc_rand(&seed, lo, hi, ndim, shape));
}

/* What Dense computed before the primitive: dot_general, add, the activation. */
static lx_array *unfused(lx_array *x, lx_array *k, lx_array *b, lx_activation act) {
    const int64_t lc = x->ndim - 1, rc = 0;
    lx_array *y = lx_dot_general(x, k, 1, &lc, &rc, 0, NULL, NULL);
    if (b) y = lx_add(y, b);
    switch (act) {
    case LX_ACT_RELU: return lx_relu(y);
    case LX_ACT_GELU_TANH: return lx_gelu(y, true);
    case LX_ACT_GELU_ERF: return lx_gelu(y, false);
    case LX_ACT_SILU: return lx_silu(y);
    default: return y;
    }
}

static bool same_bytes(const lx_array *a, const lx_array *b) {
    return a && b && a->dtype == b->dtype && lx_same_shape(a, b) && !lx_is_abstract(a) && !lx_is_abstract(b) &&
           memcmp(a->data, b->data, lx_array_nbytes(a)) == 0;
}

typedef struct {
    lx_activation act;
    bool fused, has_bias;
} dense_ctx;

static lx_status loss_fn(int n, lx_array *const *xs, void *user, lx_array **out) {
    const dense_ctx *c = user;
    lx_array *b = c->has_bias ? xs[2] : NULL;
    (void)n;
    lx_array *y = c->fused ? lx_dense(xs[0], xs[1], b, c->act) : unfused(xs[0], xs[1], b, c->act);
    *out = gc_weighted_loss(y);
    return *out ? LX_OK : lx_last_status();
}

/* Shapes: x's leading axes, K, N. Small path, packed path (M*N*K above 96^3 and >= 16 rows:
 * 64 x 300 x 200, one row block with a ragged last row tile and column sliver 130 x 260 x 70,
 * several row blocks 300 x 100 x 37), ragged tiles, a 1-d x, K = 1, N = 1. The epilogue runs per
 * tile or panel, so every activation here is computed in pieces of rows and compared with the
 * separate ops' whole-array pass. */
typedef struct {
    int nlead;
    int64_t lead[3], K, N;
} dshape;
static const dshape SHAPES[] = {
    {1, {5}, 7, 3},      {2, {2, 3}, 17, 33}, {1, {64}, 300, 200}, {3, {2, 2, 9}, 130, 70},
    {0, {0}, 11, 19},    {1, {4}, 1, 5},      {1, {6}, 8, 1},      {1, {128}, 96, 40},
    {1, {130}, 260, 70}, {2, {3, 100}, 100, 37},
};
#define NSHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])

static void make_inputs(const dshape *s, lx_array **x, lx_array **k, lx_array **b) {
    int64_t xs[4];
    for (int i = 0; i < s->nlead; i++) xs[i] = s->lead[i];
    xs[s->nlead] = s->K;
    *x = rnd(-2.0f, 2.0f, s->nlead + 1, xs);
    *k = rnd(-0.5f, 0.5f, 2, (int64_t[]){s->K, s->N});
    *b = rnd(-1.0f, 1.0f, 1, &s->N);
}

static void test_bits(void) {
    int nbad_fwd = 0, nbad_grad = 0, ncases = 0;
    for (int si = 0; si < NSHAPES; si++)
        for (int ai = 0; ai < NACTS; ai++)
            for (int hb = 0; hb < 2; hb++) {
                size_t mark = lx_pool_open();
                lx_array *x, *k, *b;
                make_inputs(&SHAPES[si], &x, &k, &b);
                lx_array *bias = hb ? b : NULL;
                lx_array *yf = lx_dense(x, k, bias, ACTS[ai]), *yu = unfused(x, k, bias, ACTS[ai]);
                if (!same_bytes(yf, yu)) {
                    nbad_fwd++;
                    fprintf(stderr, "forward differs: shape %d act %d bias %d\n", si, ai, hb);
                }
                lx_array *grads[2][3] = {{NULL}}, *vals[2] = {NULL};
                for (int f = 0; f < 2; f++) {
                    dense_ctx c = {ACTS[ai], f == 0, hb != 0};
                    CHECK_EQ_INT(lx_value_and_grad(loss_fn, &c, hb ? 3 : 2, (lx_array *const[]){x, k, b}, &vals[f],
                                                   grads[f]),
                                 LX_OK);
                }
                bool same = same_bytes(vals[0], vals[1]);
                for (int i = 0; i < (hb ? 3 : 2); i++) same = same && same_bytes(grads[0][i], grads[1][i]);
                if (!same) {
                    nbad_grad++;
                    fprintf(stderr, "gradients differ: shape %d act %d bias %d\n", si, ai, hb);
                }
                for (int f = 0; f < 2; f++) {
                    lx_release(vals[f]);
                    for (int i = 0; i < 3; i++) lx_release(grads[f][i]);
                }
                ncases++;
                lx_pool_close(mark);
            }
    CHECK_EQ_INT(nbad_fwd, 0);
    CHECK_EQ_INT(nbad_grad, 0);
    CHECK_EQ_INT(ncases, NSHAPES * NACTS * 2);
}

/* finite differences (double) of each activation, with and without bias, batch axes */
typedef struct {
    lx_array *x, *k, *b;
    lx_activation act;
} fd_ctx;
static lx_array *fd_forward(void *ctx) {
    fd_ctx *c = ctx;
    return lx_dense(c->x, c->k, c->b, c->act);
}

static void test_finite_differences(void) {
    for (int ai = 0; ai < NACTS; ai++)
        for (int hb = 0; hb < 2; hb++) {
            lx_array *x = rnd(-1.5f, 1.5f, 3, (int64_t[]){2, 3, 4});
            lx_array *k = rnd(-0.7f, 0.7f, 2, (int64_t[]){4, 5});
            lx_array *b = hb ? rnd(-0.3f, 0.3f, 1, (int64_t[]){5}) : NULL;
            fd_ctx c = {x, k, b, ACTS[ai]};
            char name[64];
            snprintf(name, sizeof name, "dense act %d bias %d", ai, hb);
            /* relu's kink: finite differences across it are wrong, so keep |z| away from 0 by
             * checking only that the error bound holds with the step 1e-3 */
            CHECK(gc_check(name, fd_forward, &c, hb ? 3 : 2, (lx_array *const[]){x, k, b}, 1e-3, 5e-3, 5e-3));
        }
}

/* Under a tape: one record (the unfused ops make three). */
static void test_tape_and_abstract(void) {
    lx_array *x = rnd(-1, 1, 2, (int64_t[]){3, 4}), *k = rnd(-1, 1, 2, (int64_t[]){4, 2}), *b = rnd(-1, 1, 1, (int64_t[]){2});
    lx_tape *t = NULL;
    CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
    CHECK_EQ_INT(lx_tape_watch(t, k), LX_OK);
    lx_array *y = lx_dense(x, k, b, LX_ACT_GELU_TANH);
    CHECK(y && y->ndim == 2 && y->shape[0] == 3 && y->shape[1] == 2);
    CHECK_EQ_INT(lx_tape_size(t), 2); /* the watched leaf and the dense record */
    lx_tape_free(t);
    CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
    CHECK_EQ_INT(lx_tape_watch(t, k), LX_OK);
    CHECK(unfused(x, k, b, LX_ACT_GELU_TANH) != NULL);
    CHECK_EQ_INT(lx_tape_size(t), 4); /* the leaf, dot_general, add, gelu */
    lx_tape_free(t);

    /* abstract inputs: an abstract (3, 2) result; nothing computed */
    lx_array *xa = lx_autorelease(lx_array_abstract(LX_F32, 3, (int64_t[]){7, 3, 4}));
    lx_array *ya = lx_dense(xa, k, b, LX_ACT_RELU);
    CHECK(ya && lx_is_abstract(ya) && lx_shape_eq(ya, 3, (int64_t[]){7, 3, 2}));
    lx_array *yb = lx_dense(x, lx_autorelease(lx_array_abstract(LX_F32, 2, (int64_t[]){4, 9})), NULL, LX_ACT_NONE);
    CHECK(yb && lx_is_abstract(yb) && lx_shape_eq(yb, 2, (int64_t[]){3, 9}));
    /* the primitive bound directly */
    const lx_dense_params p = {LX_ACT_SILU};
    lx_array *yd = lx_bind(LX_PRIM_DENSE, &p, 3, (lx_array *const[]){x, k, NULL});
    CHECK(same_bytes(yd, unfused(x, k, NULL, LX_ACT_SILU)));
    const lx_prim_def *d = NULL;
    CHECK_EQ_INT(lx_prim_find("dense", &d), LX_OK);
    CHECK(d && d->id == LX_PRIM_DENSE && d->vjp && d->arity == 3 && d->optional == 4u);
}

static void test_errors(void) {
    lx_array *x = rnd(-1, 1, 2, (int64_t[]){2, 5}), *k = rnd(-1, 1, 2, (int64_t[]){5, 3});
    /* a failed input keeps the first message */
    lx_clear_error();
    lx_fail(LX_ERR_SHAPE, "earlier failure");
    CHECK(lx_dense(NULL, k, NULL, LX_ACT_NONE) == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_SHAPE);
    CHECK_ERROR_HAS("earlier failure");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_dense(x, NULL, NULL, LX_ACT_RELU), LX_ERR_FAILED_INPUT, "dense: input is NULL");
    /* bad shapes name them */
    lx_clear_error();
    /* add's broadcasting, as before */
    CHECK_NULL_FAILS(lx_dense(x, k, rnd(-1, 1, 1, (int64_t[]){4}), LX_ACT_NONE), LX_ERR_SHAPE,
                     "add: operands could not be broadcast together with shapes (2, 3) (4,)");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_dense(x, rnd(-1, 1, 3, (int64_t[]){5, 3, 1}), NULL, LX_ACT_NONE), LX_ERR_SHAPE,
                     "dense: x (2, 5), kernel (5, 3, 1) and bias None do not fit");
    /* an x that does not meet the kernel: dot_general's message, as Dense always gave */
    lx_clear_error();
    CHECK_NULL_FAILS(lx_dense(x, rnd(-1, 1, 2, (int64_t[]){4, 3}), NULL, LX_ACT_NONE), LX_ERR_SHAPE,
                     "contracting dimensions must have equal sizes: lhs axis 1 of (2, 5) has size 5, rhs axis 0 of (4, 3)");
    /* the primitive's own rule for it */
    lx_clear_error();
    const lx_dense_params p = {LX_ACT_NONE}, bad = {(lx_activation)17};
    CHECK_NULL_FAILS(lx_bind(LX_PRIM_DENSE, &p, 3, (lx_array *const[]){x, rnd(-1, 1, 2, (int64_t[]){4, 3}), NULL}), LX_ERR_SHAPE,
                     "dense: x (2, 5), kernel (4, 3) and bias None do not fit");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_bind(LX_PRIM_DENSE, &bad, 3, (lx_array *const[]){x, k, NULL}), LX_ERR_INVALID_ARGUMENT,
                     "dense: unknown activation 17");
    lx_clear_error();
    lx_array *xi = lx_autorelease(lx_array_new(LX_I32, 2, (int64_t[]){2, 5}));
    CHECK_NULL_FAILS(lx_bind(LX_PRIM_DENSE, &p, 3, (lx_array *const[]){xi, k, NULL}), LX_ERR_DTYPE,
                     "dense: expected float32 operands, got x int32(2, 5), kernel float32(5, 3)");
    CHECK_EQ_INT(lx_last_status(), LX_ERR_DTYPE);
    lx_clear_error();
    CHECK_NULL_FAILS(lx_dense(xi, k, NULL, LX_ACT_NONE), LX_ERR_DTYPE,
                     "dot_general: expected float32 operands"); /* the unfused ops' dtype rule */
    lx_clear_error();
}

/* ---- the fallback while something watches primitives ---- */
static char seen[16][32];
static int nseen;
static void observe(const lx_prim_event *ev, void *user) {
    (void)user;
    if (nseen < 16) snprintf(seen[nseen++], sizeof seen[0], "%s", ev->op);
}
static int nintercepted;
static char intercepted_op[32];
static void intercept(const lx_intercept_event *ev, void *user) {
    (void)user;
    nintercepted++;
    snprintf(intercepted_op, sizeof intercepted_op, "%s", ev->op);
}
static lx_array *keep_result(lx_prim_id id, const void *params, int nin, lx_array **inputs, void *user) {
    (void)params, (void)nin, (void)inputs;
    (*(int *)user) += id == LX_PRIM_DOT_GENERAL;
    return NULL;
}

static void test_fallback(void) {
    lx_array *x = rnd(-1, 1, 2, (int64_t[]){3, 4}), *k = rnd(-1, 1, 2, (int64_t[]){4, 2}), *b = rnd(-1, 1, 1, (int64_t[]){2});
    CHECK(lx_dense_fuses());
    int h = 0;
    nseen = 0;
    CHECK_EQ_INT(lx_prim_observe(observe, NULL, &h), LX_OK);
    CHECK(!lx_dense_fuses());
    lx_array *y = lx_dense(x, k, b, LX_ACT_RELU);
    lx_prim_unobserve(h);
    CHECK_EQ_INT(nseen, 3);
    CHECK(nseen == 3 && !strcmp(seen[0], "dot_general") && !strcmp(seen[1], "add") && !strcmp(seen[2], "relu"));
    CHECK(same_bytes(y, lx_dense(x, k, b, LX_ACT_RELU)));
    /* a bias of shape (1,) or (1, N) broadcasts, as Flax's reshape-then-add does (fused or not) */
    for (int watch = 0; watch < 2; watch++) {
        if (watch) CHECK_EQ_INT(lx_prim_observe(observe, NULL, &h), LX_OK);
        lx_array *b1 = rnd(-1, 1, 1, (int64_t[]){1}), *b2 = lx_reshape(b, 2, (int64_t[]){1, 2});
        lx_array *ref1 = lx_add(lx_matmul(x, k), b1), *ref2 = lx_add(lx_matmul(x, k), b2);
        CHECK(same_bytes(lx_dense(x, k, b1, LX_ACT_NONE), ref1));
        CHECK(same_bytes(lx_dense(x, k, b2, LX_ACT_NONE), ref2));
        if (watch) lx_prim_unobserve(h);
    }

    /* an op interceptor sees the dot_general */
    nintercepted = 0;
    CHECK_EQ_INT(lx_interceptor_add(intercept, NULL, &h), LX_OK);
    lx_array *yi = lx_dense(x, k, b, LX_ACT_GELU_TANH);
    lx_interceptor_remove(h);
    CHECK_EQ_INT(nintercepted, 1);
    CHECK_STR(intercepted_op, "dot_general");
    CHECK(same_bytes(yi, lx_dense(x, k, b, LX_ACT_GELU_TANH)));

    /* a substituter is offered the dot_general */
    int dots = 0;
    CHECK_EQ_INT(lx_prim_substitute_add(keep_result, &dots, &h), LX_OK);
    CHECK(!lx_dense_fuses());
    lx_array *ys = lx_dense(x, k, NULL, LX_ACT_SILU);
    lx_prim_substitute_remove(h);
    CHECK_EQ_INT(dots, 1);
    CHECK(same_bytes(ys, lx_dense(x, k, NULL, LX_ACT_SILU)));
    CHECK(lx_dense_fuses());
}

/* ---- Linen Dense and NNX Linear: the same bits fused (nothing listens) and unfused ---- */
static void count_ops(const lx_prim_event *ev, void *user) {
    (void)ev;
    (*(int *)user)++;
}

static void test_layers(void) {
    linen_module *d = NULL;
    lx_call c = LX_CALL_ARGS(lx_int_v(6));
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &c, &d), LX_OK);
    lx_array *x = rnd(-1, 1, 3, (int64_t[]){2, 3, 5});
    lx_tree *vars = NULL;
    lx_value xv = lx_array_v(x);
    lx_call args = {1, &xv, 0, NULL};
    CHECK_EQ_INT(linen_init(d, LINEN_KEY(lx_key_from_seed(3)), &args, NULL, &vars), LX_OK);
    const lx_value *bv = vars ? lx_tree_find(vars, "params/bias") : NULL;
    lx_array *bias = bv && bv->kind == LX_V_ARRAY ? bv->u.array : NULL;
    CHECK(bias && bias->size == 6);
    for (int64_t j = 0; bias && j < bias->size; j++) lx_f32(bias)[j] = 0.1f * (float)(j - 2);
    lx_value out[2];
    int h = 0, nops = 0;
    CHECK_EQ_INT(linen_apply(d, vars, LINEN_NO_RNGS, &args, NULL, &out[0], NULL), LX_OK);
    CHECK_EQ_INT(lx_prim_observe(count_ops, &nops, &h), LX_OK);
    CHECK_EQ_INT(linen_apply(d, vars, LINEN_NO_RNGS, &args, NULL, &out[1], NULL), LX_OK);
    lx_prim_unobserve(h);
    CHECK_EQ_INT(nops, 2); /* dot_general, add */
    CHECK(out[0].kind == LX_V_ARRAY && out[1].kind == LX_V_ARRAY && same_bytes(out[0].u.array, out[1].u.array));
    CHECK(out[0].kind == LX_V_ARRAY && lx_shape_eq(out[0].u.array, 3, (int64_t[]){2, 3, 6}));
    lx_value_free(&out[0]);
    lx_value_free(&out[1]);
    lx_tree_release(vars);
    linen_module_release(d);

    nnx_rngs *r = NULL;
    nnx_linear *l = NULL;
    CHECK_EQ_INT(nnx_rngs_from_seed(4, &r), LX_OK);
    CHECK_EQ_INT(nnx_linear_new(5, 4, r, &l), LX_OK);
    if (l) {
        lx_array *y0 = nnx_linear_forward(l, x);
        nops = 0;
        CHECK_EQ_INT(lx_prim_observe(count_ops, &nops, &h), LX_OK);
        lx_array *y1 = nnx_linear_forward(l, x);
        lx_prim_unobserve(h);
        CHECK_EQ_INT(nops, 2);
        CHECK(same_bytes(y0, y1) && lx_shape_eq(y0, 3, (int64_t[]){2, 3, 4}));
    }
    nnx_module_release((nnx_module *)l);
    nnx_rngs_release(r);
}

/* GELU/SiLU in the GEMM epilogue: the same bits, forward and gradients (z kept by the epilogue). */
static void test_act_in_epilogue(void) {
    lx_dense_act_in_epilogue(1);
    test_bits();
    test_tape_and_abstract();
    lx_dense_act_in_epilogue(-1);
}

int main(void) {
    RUN(test_bits);
    RUN(test_act_in_epilogue);
    RUN(test_finite_differences);
    RUN(test_tape_and_abstract);
    RUN(test_errors);
    RUN(test_fallback);
    RUN(test_layers);
    return lx_test_finish();
}
