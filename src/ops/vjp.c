/* Backward rules (VJPs) of the primitives, one per table entry (prim_table.c lists them).
 *
 * Each rule gets the recorded inputs, the output and the output's cotangent, and writes a
 * pool-owned cotangent per input (NULL: no gradient: integer inputs, masks, labels). Rules run
 * with the tape stopped, so the ops they use are not recorded. Elementwise rules are direct loops
 * over x, y and g; broadcasting is undone by summing over the broadcast axes (unbroadcast); the
 * fused ops (norms, convolution, pooling, attention) have loops of their own that recompute what
 * the forward derived (mean/rstd, softmax weights) from the retained inputs.
 *
 * Conventions follow JAX at the kinks: relu'(0) = 0 (select(x > 0, g, 0)), abs'(0) = 1 (lax's
 * select(x >= 0, g, -g)), max/min split the gradient evenly between ties, clip is jnp.clip's
 * minimum(maximum(x, lo), hi) and so passes half the gradient at x == lo and at x == hi, max/min
 * reductions share it evenly between the tied maxima, max_pool gives it to the window's first
 * maximum, pow's exponent gradient uses log(x) with log(1) at x == 0. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/dropout.h"
#include "linnx/linalg.h"
#include "linnx/nn.h"
#include "linnx/ops.h"
#include "broadcast.h"
#include "attention_internal.h"
#include "conv_internal.h"
#include "linalg_internal.h"
#include "nn_internal.h"
#include "op_internal.h"
#include "vmath.h"

#define VJP(name)                                                                                          \
    lx_status lx_vjp_##name(const void *params, int nin, lx_array *const *in, lx_array *out, lx_array *ct, \
                            const bool *wants, lx_array **in_ct)
#define UNUSED_VJP_ARGS (void)params, (void)nin, (void)in, (void)out, (void)ct, (void)wants, (void)in_ct

static bool is_float(const lx_array *a) { return a && (a->dtype == LX_F32 || a->dtype == LX_BF16); }

static lx_status st_of(const lx_array *a) { return a ? LX_OK : lx_last_status() ? lx_last_status() : LX_ERR_INTERNAL; }

/* g summed down to the shape of `like` (numpy broadcasting undone). */
static lx_array *unbroadcast(lx_array *g, const lx_array *like) {
    if (!g || lx_same_shape(g, like)) return g;
    int lead = g->ndim - like->ndim;
    int64_t axes[LX_MAX_DIMS];
    int na = 0;
    for (int i = 0; i < g->ndim; i++)
        if (i < lead || (like->shape[i - lead] == 1 && g->shape[i] != 1)) axes[na++] = i;
    lx_array *s = na ? lx_sum(g, na, axes, true) : g;
    return lx_reshape(s, like->ndim, like->shape);
}

static lx_array *f32_like(const lx_array *a) { return lx_autorelease(lx_array_new(LX_F32, a->ndim, a->shape)); }

/* ---- elementwise unary: dx = g * f'(x, y) ---- */

#define UNARY_VJP(name, EXPR)                                                        \
    VJP(name) {                                                                      \
        (void)nin, (void)wants;                                                      \
        (void)params;                                                                \
        if (!is_float(in[0])) return LX_OK;                                          \
        lx_array *dx = lx_op_result(LX_F32, ct->ndim, ct->shape, false);             \
        if (!dx) return lx_last_status();                                            \
        const float *X = lx_f32(in[0]), *Y = lx_f32(out), *G = lx_f32(ct);           \
        float *D = lx_f32(dx);                                                       \
        const int64_t n = ct->size;                                                  \
        for (int64_t i = 0; i < n; i++) {                                            \
            const float x = X[i], y = Y[i], g = G[i];                                 \
            (void)x, (void)y;                                                        \
            D[i] = (EXPR);                                                           \
        }                                                                            \
        in_ct[0] = dx;                                                               \
        return LX_OK;                                                                \
    }


UNARY_VJP(neg, -g)
UNARY_VJP(abs, x >= 0.0f ? g : -g) /* a NaN x gives -g, as select does */
UNARY_VJP(square, 2.0f * x * g)
UNARY_VJP(exp, g * y)
UNARY_VJP(log, g / x)
UNARY_VJP(log1p, g / (1.0f + x))
UNARY_VJP(sqrt, g * 0.5f / y)
UNARY_VJP(rsqrt, g * -0.5f * y / x)
UNARY_VJP(tanh, g * (1.0f - y * y))
UNARY_VJP(sigmoid, g * y * (1.0f - y))

/* silu' = s (1 + x (1 - s)) and softplus' = s, s = sigmoid(x) from the vector math (vmath.h) into
 * dx first, then one vectorisable pass. */
static lx_status sigmoid_based_vjp(lx_array *const *in, lx_array *ct, lx_array **in_ct, bool silu) {
    if (!is_float(in[0])) return LX_OK;
    lx_array *dx = lx_op_result(LX_F32, ct->ndim, ct->shape, false);
    if (!dx) return lx_last_status();
    const float *X = lx_f32(in[0]), *G = lx_f32(ct);
    float *D = lx_f32(dx);
    const int64_t n = ct->size;
    lx_vmath_map(lx_vmath_active()->sigmoid, X, D, n);
    if (silu) {
        for (int64_t i = 0; i < n; i++) D[i] = G[i] * (D[i] * (1.0f + X[i] * (1.0f - D[i])));
    } else {
        for (int64_t i = 0; i < n; i++) D[i] = G[i] * D[i];
    }
    in_ct[0] = dx;
    return LX_OK;
}
VJP(silu) { UNUSED_VJP_ARGS; return sigmoid_based_vjp(in, ct, in_ct, true); }
VJP(softplus) { UNUSED_VJP_ARGS; return sigmoid_based_vjp(in, ct, in_ct, false); }

/* A row function over the pool: chunks of VJP_CHUNK elements (vjp_chunks) or rows of n (vjp_row_range). */
#define VJP_CHUNK 8192
typedef struct vjp_rows_job {
    void (*row)(const float *, const float *, float *, int64_t);
    const float *a, *g;
    float *d;
    int64_t n;
} vjp_rows_job;

static int vjp_chunks(void *p, int64_t lo, int64_t hi) {
    const vjp_rows_job *j = p;
    for (int64_t c = lo; c < hi; c++) {
        int64_t i0 = c * VJP_CHUNK;
        j->row(j->a + i0, j->g + i0, j->d + i0, j->n - i0 < VJP_CHUNK ? j->n - i0 : VJP_CHUNK);
    }
    return 0;
}

static int vjp_row_range(void *p, int64_t lo, int64_t hi) {
    const vjp_rows_job *j = p;
    for (int64_t r = lo; r < hi; r++) j->row(j->a + r * j->n, j->g + r * j->n, j->d + r * j->n, j->n);
    return 0;
}

/* relu: dx = x > 0 ? g : 0 (relu'(0) = 0; a NaN x gives 0), in VJP_CHUNK chunks over the pool
 * above 2^15 values (a value is the same whoever computes it), each chunk a restrict loop GCC
 * vectorizes with no alias checks. mlp_train's step runs it twice on 128 x 512 values. */
static void relu_vjp_row(const float *restrict x, const float *restrict g, float *restrict dx, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float xi = x[i], gi = g[i]; /* both loaded: a select, not a branch */
        dx[i] = xi > 0.0f ? gi : 0.0f;
    }
}

VJP(relu) {
    (void)params, (void)nin, (void)out, (void)wants;
    if (!is_float(in[0])) return LX_OK;
    lx_array *dx = lx_op_result(LX_F32, ct->ndim, ct->shape, false); /* fresh: aliases neither input */
    if (!dx) return lx_last_status();
    const int64_t n = ct->size, nch = (n + VJP_CHUNK - 1) / VJP_CHUNK;
    vjp_rows_job j = {relu_vjp_row, lx_f32(in[0]), lx_f32(ct), lx_f32(dx), n};
    lx_parallel_for(LX_PAR_THREADS(n > (1 << 15)), nch, vjp_chunks, &j);
    in_ct[0] = dx;
    return LX_OK;
}

VJP(gelu) {
    (void)wants;
    (void)nin;
    if (!is_float(in[0])) return LX_OK;
    const lx_gelu_params *p = params;
    lx_array *dx = lx_op_result(LX_F32, ct->ndim, ct->shape, false);
    if (!dx) return lx_last_status();
    const float *X = lx_f32(in[0]), *G = lx_f32(ct);
    float *D = lx_f32(dx);
    (void)out;
    /* vmath.h: tanh form s + x sqrt(2/pi) (1 + 3a x^2) 2 s (1 - s), s = sigmoid(2u); exact form
     * Phi(x) + x phi(x) */
    const lx_vmath *vm = lx_vmath_active();
    void (*rows)(const float *, const float *, float *, int64_t) = p->approximate ? vm->gelu_tanh_vjp : vm->gelu_erf_vjp;
    const int64_t n = ct->size, nch = (n + VJP_CHUNK - 1) / VJP_CHUNK;
    vjp_rows_job j = {rows, X, G, D, n};
    lx_parallel_for(LX_PAR_THREADS(n > (1 << 15)), nch, vjp_chunks, &j);
    in_ct[0] = dx;
    return LX_OK;
}

VJP(clip) {
    (void)wants;
    (void)nin, (void)out;
    if (!is_float(in[0])) return LX_OK;
    const lx_clip_params *p = params;
    lx_array *dx = lx_op_result(LX_F32, ct->ndim, ct->shape, false);
    if (!dx) return lx_last_status();
    const float *X = lx_f32(in[0]), *G = lx_f32(ct);
    float *D = lx_f32(dx);
    /* d maximum(x, lo)/dx = 1 above lo, 1/2 at it; d minimum(m, hi)/dm = 1 below hi, 1/2 at it
     * (where the first factor is not 0, m = x): 1/4 at lo == hi == x, as jnp.clip's chain gives */
    const float at = p->zero_grad_at_bounds ? 0.0f : 0.5f; /* relu6: select((x > lo) & (x < hi), g, 0) */
    for (int64_t i = 0; i < ct->size; i++) {
        const float x = X[i];
        const float a = x > p->lo ? 1.0f : x == p->lo ? at : 0.0f;
        const float b = x < p->hi ? 1.0f : x == p->hi ? at : 0.0f;
        D[i] = G[i] * a * b;
    }
    in_ct[0] = dx;
    return LX_OK;
}

VJP(cast) {
    (void)wants;
    (void)params, (void)nin;
    if (!is_float(in[0]) || !is_float(out)) return LX_OK; /* integers get no gradient */
    in_ct[0] = in[0]->dtype == ct->dtype ? ct : lx_cast(ct, in[0]->dtype);
    return st_of(in_ct[0]);
}

/* ---- elementwise binary ---- */

VJP(add) {
    UNUSED_VJP_ARGS;
    for (int i = 0; i < 2; i++)
        if (is_float(in[i]) && !(in_ct[i] = unbroadcast(ct, in[i]))) return lx_last_status();
    return LX_OK;
}

VJP(sub) {
    UNUSED_VJP_ARGS;
    if (is_float(in[0]) && !(in_ct[0] = unbroadcast(ct, in[0]))) return lx_last_status();
    if (is_float(in[1]) && !(in_ct[1] = unbroadcast(lx_neg(ct), in[1]))) return lx_last_status();
    return LX_OK;
}

VJP(mul) {
    UNUSED_VJP_ARGS;
    if (!is_float(in[0])) return LX_OK;
    if (!(in_ct[0] = unbroadcast(lx_mul(ct, in[1]), in[0]))) return lx_last_status();
    if (!(in_ct[1] = unbroadcast(lx_mul(ct, in[0]), in[1]))) return lx_last_status();
    return LX_OK;
}

VJP(div) {
    UNUSED_VJP_ARGS;
    lx_array *ga = lx_div(ct, in[1]);
    if (!(in_ct[0] = unbroadcast(ga, in[0]))) return lx_last_status();
    /* d(a/b)/db = -(a/b)/b */
    if (!(in_ct[1] = unbroadcast(lx_neg(lx_mul(ga, out)), in[1]))) return lx_last_status();
    return LX_OK;
}

VJP(pow) {
    UNUSED_VJP_ARGS;
    lx_array *a = in[0], *b = in[1];
    /* d/da = b * a^(b-1) * g;  d/db = log(a) * a^b * g with log(1) where a == 0 (JAX) */
    lx_array *ga = lx_mul(ct, lx_mul(b, lx_pow(a, lx_add_scalar(b, -1.0f))));
    lx_array *safe = lx_where(lx_eq(a, lx_scalar(0.0f)), lx_scalar(1.0f), a);
    lx_array *gb = lx_mul(ct, lx_mul(lx_log(safe), out));
    if (!(in_ct[0] = unbroadcast(ga, a)) || !(in_ct[1] = unbroadcast(gb, b))) return lx_last_status();
    return LX_OK;
}

/* max/min: the gradient goes to the operand that won, half to each on a tie (JAX). */
static lx_status minmax_vjp(lx_array *const *in, lx_array *ct, lx_array **in_ct, bool is_max) {
    lx_array *a = in[0], *b = in[1];
    if (!is_float(a)) return LX_OK;
    lx_array *win = lx_cast(is_max ? lx_gt(a, b) : lx_lt(a, b), LX_F32);
    lx_array *tie = lx_mul_scalar(lx_cast(lx_eq(a, b), LX_F32), 0.5f);
    lx_array *wa = lx_add(win, tie);
    lx_array *wb = lx_sub(lx_sub(lx_scalar(1.0f), win), tie);
    if (!(in_ct[0] = unbroadcast(lx_mul(ct, wa), a)) || !(in_ct[1] = unbroadcast(lx_mul(ct, wb), b)))
        return lx_last_status();
    return LX_OK;
}
VJP(maximum) { UNUSED_VJP_ARGS; return minmax_vjp(in, ct, in_ct, true); }
VJP(minimum) { UNUSED_VJP_ARGS; return minmax_vjp(in, ct, in_ct, false); }

VJP(where) {
    UNUSED_VJP_ARGS;
    lx_array *zero = lx_scalar(0.0f);
    if (!is_float(in[1])) return LX_OK;
    if (!(in_ct[1] = unbroadcast(lx_where(in[0], ct, zero), in[1]))) return lx_last_status();
    if (!(in_ct[2] = unbroadcast(lx_where(in[0], zero, ct), in[2]))) return lx_last_status();
    return LX_OK;
}

/* ---- reductions ---- */

/* The cotangent reshaped to the keepdims shape of the reduction (broadcastable against x). */
static lx_array *keep_shape(const lx_reduce_params *p, const lx_array *x, lx_array *g, int64_t *count) {
    int64_t shape[LX_MAX_DIMS];
    int64_t n = 1;
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    for (int i = 0; i < p->naxes; i++) {
        n *= x->shape[p->axes[i]];
        shape[p->axes[i]] = 1;
    }
    if (count) *count = n;
    return lx_reshape(g, x->ndim, shape);
}

VJP(sum) {
    UNUSED_VJP_ARGS;
    lx_array *x = in[0];
    if (!is_float(x)) return LX_OK;
    in_ct[0] = lx_broadcast_to(keep_shape(params, x, ct, NULL), x->ndim, x->shape);
    return st_of(in_ct[0]);
}

VJP(mean) {
    UNUSED_VJP_ARGS;
    lx_array *x = in[0];
    int64_t n;
    lx_array *g = keep_shape(params, x, ct, &n);
    in_ct[0] = lx_broadcast_to(lx_mul_scalar(g, n ? 1.0f / (float)n : NAN), x->ndim, x->shape);
    return st_of(in_ct[0]);
}

static lx_status chooser_vjp(const void *params, lx_array *const *in, lx_array *out, lx_array *ct, lx_array **in_ct) {
    const lx_reduce_params *p = params;
    lx_array *x = in[0];
    if (!is_float(x)) return LX_OK;
    lx_array *y = keep_shape(p, x, out, NULL), *g = keep_shape(p, x, ct, NULL);
    lx_array *hit = lx_cast(lx_eq(x, y), LX_F32);
    lx_array *cnt = lx_sum(hit, p->naxes, p->axes, true);
    in_ct[0] = lx_mul(hit, lx_div(g, cnt));
    return st_of(in_ct[0]);
}
VJP(max) { (void)nin, (void)wants; return chooser_vjp(params, in, out, ct, in_ct); }
VJP(min) { (void)nin, (void)wants; return chooser_vjp(params, in, out, ct, in_ct); }

VJP(var) {
    UNUSED_VJP_ARGS;
    const lx_reduce_params *p = params;
    lx_array *x = in[0];
    int64_t n;
    lx_array *g = keep_shape(p, x, ct, &n);
    lx_array *m = lx_mean(x, p->naxes, p->axes, true);
    in_ct[0] = lx_mul(lx_mul_scalar(lx_sub(x, m), 2.0f / (float)n), g);
    return st_of(in_ct[0]);
}

VJP(logsumexp) {
    UNUSED_VJP_ARGS;
    const lx_reduce_params *p = params;
    lx_array *x = in[0];
    lx_array *y = keep_shape(p, x, out, NULL), *g = keep_shape(p, x, ct, NULL);
    in_ct[0] = lx_mul(lx_exp(lx_sub(x, y)), g);
    return st_of(in_ct[0]);
}

/* ---- shape ops ---- */

VJP(reshape_like) {
    UNUSED_VJP_ARGS;
    if (!is_float(in[0])) return LX_OK;
    in_ct[0] = lx_reshape(ct, in[0]->ndim, in[0]->shape);
    return st_of(in_ct[0]);
}

VJP(transpose) {
    UNUSED_VJP_ARGS;
    const lx_shape_params *p = params;
    int64_t inv[LX_MAX_DIMS];
    for (int i = 0; i < p->ndim; i++) inv[p->dims[i]] = i;
    in_ct[0] = lx_transpose(ct, p->ndim, inv);
    return st_of(in_ct[0]);
}

VJP(broadcast_to) {
    UNUSED_VJP_ARGS;
    in_ct[0] = unbroadcast(ct, in[0]);
    return st_of(in_ct[0]);
}

VJP(slice) {
    UNUSED_VJP_ARGS;
    const lx_slice_params *p = params;
    lx_array *x = in[0];
    lx_array *dx = f32_like(x);
    if (!dx) return lx_last_status();
    if (ct->size) {
        int64_t xs[LX_MAX_DIMS], os[LX_MAX_DIMS], off = 0;
        lx_contiguous_strides(x->ndim, x->shape, xs);
        for (int i = 0; i < x->ndim; i++) {
            off += p->start[i] * xs[i];
            os[i] = xs[i] * p->step[i];
        }
        int64_t cs[LX_MAX_DIMS];
        lx_contiguous_strides(ct->ndim, ct->shape, cs);
        lx_strided_copy(lx_f32(dx) + off, os, ct->data, cs, sizeof(float), x->ndim, p->len);
    }
    in_ct[0] = dx;
    return LX_OK;
}

/* ct[..., start:stop, ...] along axis (a basic slice). */
static lx_array *slice_axis(lx_array *g, int64_t axis, int64_t start, int64_t stop) {
    lx_range r[LX_MAX_DIMS];
    for (int i = 0; i < g->ndim; i++) r[i] = LX_RANGE_ALL;
    r[axis] = LX_RANGE(start, stop);
    return lx_slice(g, g->ndim, r);
}

VJP(concatenate) {
    UNUSED_VJP_ARGS;
    const lx_shape_params *p = params;
    int64_t off = 0;
    for (int k = 0; k < nin; k++) {
        int64_t len = in[k]->shape[p->axis];
        if (is_float(in[k]) && !(in_ct[k] = slice_axis(ct, p->axis, off, off + len))) return lx_last_status();
        off += len;
    }
    return LX_OK;
}

VJP(stack) {
    UNUSED_VJP_ARGS;
    const lx_shape_params *p = params;
    for (int k = 0; k < nin; k++)
        if (is_float(in[k]) &&
            !(in_ct[k] = lx_reshape(slice_axis(ct, p->axis, k, k + 1), in[k]->ndim, in[k]->shape)))
            return lx_last_status();
    return LX_OK;
}

VJP(split) {
    UNUSED_VJP_ARGS;
    const lx_split_params *p = params;
    lx_array *x = in[0];
    int64_t before[LX_MAX_DIMS] = {0}, after[LX_MAX_DIMS] = {0};
    before[p->axis] = p->start;
    after[p->axis] = x->shape[p->axis] - p->stop;
    in_ct[0] = lx_pad(ct, before, after, 0.0f);
    return st_of(in_ct[0]);
}

VJP(pad) {
    UNUSED_VJP_ARGS;
    const lx_pad_params *p = params;
    lx_range r[LX_MAX_DIMS];
    for (int i = 0; i < p->ndim; i++) r[i] = LX_RANGE(p->before[i], p->before[i] + in[0]->shape[i]);
    in_ct[0] = lx_slice(ct, p->ndim, r);
    return st_of(in_ct[0]);
}

VJP(take) {
    UNUSED_VJP_ARGS;
    const lx_shape_params *p = params;
    lx_array *a = in[0], *idx = in[1];
    if (!is_float(a)) return LX_OK;
    lx_array *da = f32_like(a);
    if (!da) return lx_last_status();
    int64_t outer = 1, inner = 1, A = a->shape[p->axis], ni = idx->size;
    for (int i = 0; i < p->axis; i++) outer *= a->shape[i];
    for (int i = (int)p->axis + 1; i < a->ndim; i++) inner *= a->shape[i];
    const int32_t *I = lx_i32(idx);
    const float *G = lx_f32(ct);
    float *D = lx_f32(da);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < ni; j++) {
            int64_t r = I[j] < 0 ? I[j] + A : I[j];
            float *dst = D + (o * A + r) * inner;
            const float *src = G + (o * ni + j) * inner;
            for (int64_t q = 0; q < inner; q++) dst[q] += src[q];
        }
    in_ct[0] = da;
    return LX_OK;
}

/* ---- contractions ---- */

/* The last two axes swapped. */
static lx_array *swap_last(lx_array *x) {
    int64_t perm[LX_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[x->ndim - 1] = x->ndim - 2, perm[x->ndim - 2] = x->ndim - 1;
    return lx_transpose(x, x->ndim, perm);
}

VJP(matmul) {
    UNUSED_VJP_ARGS;
    lx_array *a = in[0], *b = in[1];
    /* promote 1-D operands as numpy does, and the cotangent with them */
    lx_array *a2 = a->ndim == 1 ? lx_reshape(a, 2, (int64_t[]){1, a->shape[0]}) : a;
    lx_array *b2 = b->ndim == 1 ? lx_reshape(b, 2, (int64_t[]){b->shape[0], 1}) : b;
    if (!a2 || !b2) return lx_last_status();
    int64_t gs[LX_MAX_DIMS];
    int nd = out->ndim;
    for (int i = 0; i < nd; i++) gs[i] = out->shape[i];
    if (a->ndim == 1 && b->ndim == 1) {
        nd = 2, gs[0] = 1, gs[1] = 1;
    } else if (a->ndim == 1) {
        for (int i = nd; i > nd - 1; i--) gs[i] = gs[i - 1];
        gs[nd - 1] = 1, nd++;
    } else if (b->ndim == 1) {
        gs[nd++] = 1;
    }
    lx_array *g2 = lx_reshape(ct, nd, gs);
    if (wants[0] && !(in_ct[0] = lx_reshape(unbroadcast(lx_matmul(g2, swap_last(b2)), a2), a->ndim, a->shape)))
        return lx_last_status();
    if (wants[1] && !(in_ct[1] = lx_reshape(unbroadcast(lx_matmul(swap_last(a2), g2), b2), b->ndim, b->shape)))
        return lx_last_status();
    return LX_OK;
}

static bool listed(const int64_t *v, int n, int64_t x) {
    for (int i = 0; i < n; i++)
        if (v[i] == x) return true;
    return false;
}

/* The operand's free axes (neither contracting nor batch), in order. */
static int free_axes(const lx_array *x, int nc, const int64_t *c, int nb, const int64_t *b, int64_t *out) {
    int n = 0;
    for (int i = 0; i < x->ndim; i++)
        if (!listed(c, nc, i) && !listed(b, nb, i)) out[n++] = i;
    return n;
}

/* r with axes permuted so that axis src[i] of r becomes axis i; no copy when already in order. */
static lx_array *put_back(lx_array *r, int ndim, const int64_t *src) {
    if (!r) return NULL;
    bool identity = true;
    for (int i = 0; i < ndim; i++) identity = identity && src[i] == i;
    return identity ? r : lx_transpose(r, ndim, src);
}

/* dL/dlhs = dot_general(g, rhs) contracting g's rhs-free positions with rhs's free axes: axes
 * batch, lhs free (in order), rhs contracting (ascending) -> back to lhs's order. A Dense x @ W
 * gets g @ W^T already in order. */
static lx_array *dot_general_lhs_ct(const lx_dot_general_params *p, lx_array *g, lx_array *a, lx_array *b) {
    int64_t af[LX_MAX_DIMS], bf[LX_MAX_DIMS], gf[LX_MAX_DIMS], gb[LX_MAX_DIMS], src[LX_MAX_DIMS];
    int naf = free_axes(a, p->ncontract, p->lhs_contract, p->nbatch, p->lhs_batch, af);
    int nbf = free_axes(b, p->ncontract, p->rhs_contract, p->nbatch, p->rhs_batch, bf);
    for (int i = 0; i < nbf; i++) gf[i] = p->nbatch + naf + i;
    for (int i = 0; i < p->nbatch; i++) gb[i] = i;
    lx_array *r = lx_dot_general(g, b, nbf, gf, bf, p->nbatch, gb, p->rhs_batch);
    for (int i = 0; i < p->nbatch; i++) src[p->lhs_batch[i]] = i;
    for (int i = 0; i < naf; i++) src[af[i]] = p->nbatch + i;
    int pos = p->nbatch + naf;
    for (int ax = 0; ax < b->ndim; ax++)
        for (int i = 0; i < p->ncontract; i++)
            if (p->rhs_contract[i] == ax) src[p->lhs_contract[i]] = pos++;
    return put_back(r, a->ndim, src);
}

/* dL/drhs = dot_general(lhs, g) contracting lhs's free axes with g's lhs-free positions: axes
 * batch, lhs contracting (ascending), rhs free (in order) -> back to rhs's order. A Dense kernel
 * (in, out) gets x^T g already in order. */
static lx_array *dot_general_rhs_ct(const lx_dot_general_params *p, lx_array *g, lx_array *a, lx_array *b) {
    int64_t af[LX_MAX_DIMS], bf[LX_MAX_DIMS], gf[LX_MAX_DIMS], gb[LX_MAX_DIMS], src[LX_MAX_DIMS];
    int naf = free_axes(a, p->ncontract, p->lhs_contract, p->nbatch, p->lhs_batch, af);
    int nbf = free_axes(b, p->ncontract, p->rhs_contract, p->nbatch, p->rhs_batch, bf);
    for (int i = 0; i < naf; i++) gf[i] = p->nbatch + i;
    for (int i = 0; i < p->nbatch; i++) gb[i] = i;
    lx_array *r = lx_dot_general(a, g, naf, af, gf, p->nbatch, p->lhs_batch, gb);
    for (int i = 0; i < p->nbatch; i++) src[p->rhs_batch[i]] = i;
    int pos = p->nbatch;
    for (int ax = 0; ax < a->ndim; ax++)
        for (int i = 0; i < p->ncontract; i++)
            if (p->lhs_contract[i] == ax) src[p->rhs_contract[i]] = pos++;
    for (int i = 0; i < nbf; i++) src[bf[i]] = pos++;
    return put_back(r, b->ndim, src);
}

VJP(dot_general) {
    UNUSED_VJP_ARGS;
    const lx_dot_general_params *p = params;
    if (wants[0] && !(in_ct[0] = dot_general_lhs_ct(p, ct, in[0], in[1]))) return lx_last_status();
    if (wants[1] && !(in_ct[1] = dot_general_rhs_ct(p, ct, in[0], in[1]))) return lx_last_status();
    return LX_OK;
}

/* ---- softmax family ---- */

/* Rows over the last axis of contiguous float32 arrays run the kernel set's backward row
 * (vmath.h), rows split over the threads; another axis runs the composite formula. */
static bool last_axis_rows(const lx_array *out, const lx_array *ct, int64_t axis) {
    return out->dtype == LX_F32 && ct->dtype == LX_F32 && lx_same_shape(out, ct) && out->ndim > 0 &&
           axis == out->ndim - 1 && out->size > 0;
}
static lx_array *vjp_rows(lx_array *out, lx_array *ct, bool log) {
    lx_array *dx = lx_op_result(LX_F32, ct->ndim, ct->shape, false);
    if (!dx) return NULL;
    const int64_t n = out->shape[out->ndim - 1], rows = out->size / n;
    const lx_vmath *v = lx_vmath_active();
    void (*row)(const float *, const float *, float *, int64_t) = log ? v->log_softmax_vjp_row : v->softmax_vjp_row;
    const float *Y = lx_f32(out), *G = lx_f32(ct);
    float *D = lx_f32(dx);
    vjp_rows_job j = {row, Y, G, D, n};
    lx_parallel_for(LX_PAR_THREADS(out->size > (1 << 15) && rows > 1), rows, vjp_row_range, &j);
    return dx;
}

VJP(softmax) {
    UNUSED_VJP_ARGS;
    const lx_shape_params *p = params;
    if (last_axis_rows(out, ct, p->axis)) {
        in_ct[0] = vjp_rows(out, ct, false);
        return st_of(in_ct[0]);
    }
    lx_array *s = lx_sum(lx_mul(ct, out), 1, &p->axis, true);
    in_ct[0] = lx_mul(out, lx_sub(ct, s));
    return st_of(in_ct[0]);
}

VJP(log_softmax) {
    UNUSED_VJP_ARGS;
    const lx_shape_params *p = params;
    if (last_axis_rows(out, ct, p->axis)) {
        in_ct[0] = vjp_rows(out, ct, true);
        return st_of(in_ct[0]);
    }
    lx_array *s = lx_sum(ct, 1, &p->axis, true);
    in_ct[0] = lx_sub(ct, lx_mul(lx_exp(out), s));
    return st_of(in_ct[0]);
}

typedef struct xent_vjp_job {
    void (*row)(const float *, int32_t, float, float *, int64_t);
    const float *x, *g;
    const int32_t *labels;
    float *dx;
    int64_t c;
} xent_vjp_job;

static int xent_vjp_rows(void *p, int64_t lo, int64_t hi) {
    const xent_vjp_job *j = p;
    for (int64_t r = lo; r < hi; r++) j->row(j->x + r * j->c, j->labels[r], j->g[r], j->dx + r * j->c, j->c);
    return 0;
}

/* One row kernel per row: dx = (softmax(x) - one_hot(label)) * g, the values of the composite
 * lx_mul(lx_sub(softmax, one_hot), g) (the forward checked every label is in [0, C)). */
VJP(softmax_cross_entropy_int) {
    UNUSED_VJP_ARGS;
    lx_array *logits = in[0], *labels = in[1];
    const int64_t C = logits->shape[logits->ndim - 1], rows = labels->size;
    lx_array *dx = lx_op_result(LX_F32, logits->ndim, logits->shape, false);
    if (!dx) return lx_last_status();
    const float *X = lx_f32(logits), *G = lx_f32(ct);
    const int32_t *L = lx_i32(labels);
    float *DX = lx_f32(dx);
    xent_vjp_job j = {lx_vmath_active()->xent_vjp_row, X, G, L, DX, C};
    lx_parallel_for(LX_PAR_THREADS(rows * C > (1 << 15) && rows > 1), rows, xent_vjp_rows, &j);
    in_ct[0] = dx;
    return LX_OK;
}

/* ---- normalisation: the forward's (mean, rstd) per row (recomputed in double when absent), then
 * the textbook backward ---- */

static lx_status norm_vjp(const lx_norm_params *p, lx_array *x, lx_array *scale, lx_array *bias, lx_array *ct,
                          const lx_array *saved, lx_array **in_ct, bool center) {
    int64_t d = 1;
    for (int i = 0; i < p->naxes; i++) d *= x->shape[x->ndim - 1 - i];
    int64_t rows = d ? x->size / d : 0, f = scale ? scale->size : bias ? bias->size : d;
    lx_array *dx = f32_like(x);
    double *ds = calloc((size_t)(f > 0 ? f : 1), sizeof(double)), *db = calloc((size_t)(f > 0 ? f : 1), sizeof(double));
    double *xh = malloc(sizeof(double) * (size_t)(d > 0 ? d : 1)), *dxh = malloc(sizeof(double) * (size_t)(d > 0 ? d : 1));
    if (!dx || !ds || !db || !xh || !dxh) {
        free(ds), free(db), free(xh), free(dxh);
        return dx ? lx_fail(LX_ERR_NO_MEMORY, "norm backward: out of memory") : lx_last_status();
    }
    const float *X = lx_f32(x), *G = lx_f32(ct), *S = scale ? lx_f32(scale) : NULL;
    float *DX = lx_f32(dx);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = X + r * d, *gr = G + r * d;
        double m = 0, rstd, a = 0, b = 0;
        if (saved) { /* the forward's own (mean, rstd) */
            m = lx_f32(saved)[2 * r], rstd = lx_f32(saved)[2 * r + 1];
        } else {
            double m2 = 0;
            for (int64_t j = 0; j < d; j++) m += xr[j], m2 += (double)xr[j] * xr[j];
            m /= (double)d, m2 /= (double)d;
            double var = center ? m2 - m * m : m2;
            if (var < 0) var = 0;
            if (!center) m = 0;
            rstd = 1.0 / sqrt(var + (double)p->epsilon);
        }
        /* scale / bias repeat every f values along the row: blocks of f, no j % f per element */
        for (int64_t j0 = 0; j0 < d; j0 += f) {
            const float *xb = xr + j0, *gb = gr + j0;
            double *xhb = xh + j0, *dxhb = dxh + j0;
            const int64_t fn = d - j0 < f ? d - j0 : f;
#pragma omp simd reduction(+ : a, b)
            for (int64_t j = 0; j < fn; j++) {
                double xv = (xb[j] - m) * rstd, gv = gb[j], dv = S ? gv * S[j] : gv;
                xhb[j] = xv, dxhb[j] = dv;
                ds[j] += gv * xv;
                db[j] += gv;
                a += dv;
                b += dv * xv;
            }
        }
        a /= (double)d, b /= (double)d;
        const double ca = center ? a : 0.0;
        float *dxr = DX + r * d;
#pragma omp simd
        for (int64_t j = 0; j < d; j++) dxr[j] = (float)(rstd * (dxh[j] - ca - xh[j] * b));
    }
    in_ct[0] = dx;
    if (scale) {
        lx_array *g = f32_like(scale);
        if (!g) goto fail;
        for (int64_t j = 0; j < f; j++) lx_f32(g)[j] = (float)ds[j];
        in_ct[1] = g;
    }
    if (bias) {
        lx_array *g = f32_like(bias);
        if (!g) goto fail;
        for (int64_t j = 0; j < f; j++) lx_f32(g)[j] = (float)db[j];
        in_ct[2] = g;
    }
    free(ds), free(db), free(xh), free(dxh);
    return LX_OK;
fail:
    free(ds), free(db), free(xh), free(dxh);
    return lx_last_status();
}

VJP(layer_norm) {
    UNUSED_VJP_ARGS;
    /* in[3]: the (mean, rstd) rows the forward kept, when it ran under a tape */
    return norm_vjp(params, in[0], in[1], in[2], ct, nin > 3 ? in[3] : NULL, in_ct, true);
}

VJP(rms_norm) {
    UNUSED_VJP_ARGS;
    lx_array *tmp[3] = {NULL, NULL, NULL};
    lx_status st = norm_vjp(params, in[0], in[1], NULL, ct, nin > 2 ? in[2] : NULL, tmp, false);
    in_ct[0] = tmp[0], in_ct[1] = tmp[1];
    return st;
}

/* ---- convolution: direct loops over (output position, window tap) ---- */

typedef struct {
    int nsp;
    int64_t n, cin, cout, groups, insp, outsp, ks;
    int64_t in[LX_MAX_DIMS], out[LX_MAX_DIMS], k[LX_MAX_DIMS];
} conv_geo;

/* The input position read by output position o through tap kk, or -1 (padding or a hole). */
static int64_t conv_src(const conv_geo *c, const lx_conv_params *p, int64_t o, int64_t kk) {
    int64_t pos = 0, stride_in = 1;
    for (int i = c->nsp - 1; i >= 0; i--) {
        int64_t oi = o % c->out[i], ki = kk % c->k[i];
        o /= c->out[i], kk /= c->k[i];
        int64_t dpos = oi * p->strides[i] - p->padding.lo[i] + ki * p->rhs_dilation[i];
        if (dpos < 0 || dpos % p->lhs_dilation[i]) return -1;
        int64_t ii = dpos / p->lhs_dilation[i];
        if (ii >= c->in[i]) return -1;
        pos += ii * stride_in;
        stride_in *= c->in[i];
    }
    return pos;
}

/* im2col / GEMM / col2im, a chunk of images at a time (the column buffer stays near 4 MB):
 * per group g, cols = the windows of x (rows: output positions, columns: tap * cig + ci),
 * dW_g += cols^T dY_g and dcols = dY_g W_g^T scattered back into dx. Taps that read padding or a
 * hole of the input dilation are zero columns. */
/* The im2col of one chunk of images into cols (a row per output position) and the col2im of
 * dcols back into DX (an image per item: images do not overlap), for group g. */
typedef struct im2col_job {
    const conv_geo *c;
    const int64_t *src;
    const float *X;
    float *cols, *dcols, *DX;
    int64_t n0, g, cig, width;
} im2col_job;

static int im2col_rows(void *p, int64_t lo, int64_t hi) {
    const im2col_job *j = p;
    const conv_geo *c = j->c;
    const int64_t cig = j->cig;
    for (int64_t r = lo; r < hi; r++) {
        const int64_t n = j->n0 + r / c->outsp, o = r % c->outsp;
        float *row = j->cols + r * j->width;
        for (int64_t kk = 0; kk < c->ks; kk++) {
            const int64_t s_ = j->src[o * c->ks + kk];
            if (s_ < 0) memset(row + kk * cig, 0, sizeof(float) * (size_t)cig);
            else memcpy(row + kk * cig, j->X + (n * c->insp + s_) * c->cin + j->g * cig, sizeof(float) * (size_t)cig);
        }
    }
    return 0;
}

static int col2im_images(void *p, int64_t lo, int64_t hi) {
    const im2col_job *j = p;
    const conv_geo *c = j->c;
    const int64_t cig = j->cig;
    for (int64_t i = lo; i < hi; i++) {
        const int64_t n = j->n0 + i;
        for (int64_t o = 0; o < c->outsp; o++) {
            const float *row = j->dcols + (i * c->outsp + o) * j->width;
            for (int64_t kk = 0; kk < c->ks; kk++) {
                const int64_t s_ = j->src[o * c->ks + kk];
                if (s_ < 0) continue;
                float *d = j->DX + (n * c->insp + s_) * c->cin + j->g * cig;
                const float *sr = row + kk * cig;
                for (int64_t ci = 0; ci < cig; ci++) d[ci] += sr[ci];
            }
        }
    }
    return 0;
}

VJP(conv_general) {
    UNUSED_VJP_ARGS;
    const lx_conv_params *p = params;
    lx_array *x = in[0], *w = in[1];
    conv_geo c = {.nsp = x->ndim - 2, .n = x->shape[0], .cin = x->shape[x->ndim - 1],
                  .cout = w->shape[w->ndim - 1], .groups = p->feature_group_count, .insp = 1, .outsp = 1, .ks = 1};
    for (int i = 0; i < c.nsp; i++) {
        c.in[i] = x->shape[1 + i], c.out[i] = out->shape[1 + i], c.k[i] = w->shape[i];
        c.insp *= c.in[i], c.outsp *= c.out[i], c.ks *= c.k[i];
    }
    const int64_t cig = c.cin / c.groups, cog = c.cout / c.groups, width = c.ks * cig;
    /* uncleared: the indirect products write every element; the paths that add clear first */
    lx_array *dx = wants[0] ? lx_autorelease(lx_array_empty(LX_F32, x->ndim, x->shape)) : NULL;
    lx_array *dw = wants[1] ? lx_autorelease(lx_array_empty(LX_F32, w->ndim, w->shape)) : NULL;
    if ((wants[0] && !dx) || (wants[1] && !dw)) return lx_last_status();
    if (c.n == 0 || c.outsp == 0 || width == 0 || cog == 0) {
        if (dx) memset(lx_f32(dx), 0, lx_array_nbytes(dx));
        if (dw) memset(lx_f32(dw), 0, lx_array_nbytes(dw));
        in_ct[0] = dx, in_ct[1] = dw;
        return LX_OK;
    }
    const float *X = lx_f32(x), *W = lx_f32(w), *G = lx_f32(ct);
    float *DX = dx ? lx_f32(dx) : NULL, *DW = dw ? lx_f32(dw) : NULL;
    lx_status st = LX_OK;
    /* The indirect convolution (conv_igemm.c) where the kernel set has its tiles: dx for any
     * geometry (dx from 8 input channels per group); im2col below for the rest. */
    if (conv_igemm_available() && (DX || DW)) {
        conv_dims cd;
        int64_t oshape[LX_MAX_DIMS];
        st = conv_plan(x, w, p, &cd, oshape);
        if (st == LX_OK && DX && cig >= 8) { /* fewer channels: most of a 16-wide tile would be waste */
            st = conv_igemm_dx(&cd, G, W, DX);
            DX = NULL;
        }
        if (st == LX_OK && DW) {
            st = conv_igemm_dw(&cd, X, G, DW);
            DW = NULL;
        }
        if (st != LX_OK || (!DX && !DW)) {
            if (st != LX_OK) return st;
            in_ct[0] = dx, in_ct[1] = dw;
            return LX_OK;
        }
    }
    if (DX) memset(DX, 0, sizeof(float) * (size_t)x->size); /* col2im adds into it */
    int64_t chunk = (int64_t)(1 << 20) / (c.outsp * width);
    if (chunk < 1) chunk = 1;
    if (chunk > c.n) chunk = c.n;
    const int64_t rows_max = chunk * c.outsp;
    int64_t *src = malloc(sizeof(int64_t) * (size_t)(c.outsp * c.ks));
    float *cols = DW ? malloc(sizeof(float) * (size_t)(rows_max * width)) : NULL;
    float *dcols = DX ? malloc(sizeof(float) * (size_t)(rows_max * width)) : NULL;
    if (!src || (DW && !cols) || (DX && !dcols)) {
        free(src), free(cols), free(dcols);
        return lx_fail(LX_ERR_NO_MEMORY, "conv_general backward: out of memory");
    }
    for (int64_t o = 0; o < c.outsp; o++)
        for (int64_t kk = 0; kk < c.ks; kk++) src[o * c.ks + kk] = conv_src(&c, p, o, kk);
    for (int64_t n0 = 0; n0 < c.n && st == LX_OK; n0 += chunk) {
        const int64_t nn = c.n - n0 < chunk ? c.n - n0 : chunk, rows = nn * c.outsp;
        const float *Gc = G + n0 * c.outsp * c.cout;
        for (int64_t g = 0; g < c.groups && st == LX_OK; g++) {
            im2col_job j = {&c, src, X, cols, dcols, DX, n0, g, cig, width};
            if (DW) {
                lx_parallel_for(LX_PAR_THREADS(rows * width > (1 << 16)), rows, im2col_rows, &j);
                st = lx_sgemm(true, false, width, cog, rows, 1.0f, cols, width, Gc + g * cog, c.cout, n0 ? 1.0f : 0.0f,
                              DW + g * cog, c.cout);
            }
            if (DX && st == LX_OK) {
                st = lx_sgemm(false, true, rows, width, cog, 1.0f, Gc + g * cog, c.cout, W + g * cog, c.cout, 0.0f, dcols,
                              width);
                lx_parallel_for(LX_PAR_THREADS(nn > 1 && rows * width > (1 << 16)), nn, col2im_images, &j);
            }
        }
    }
    free(src), free(cols), free(dcols);
    if (st != LX_OK) return st;
    in_ct[0] = dx;
    in_ct[1] = dw;
    return LX_OK;
}

/* ---- pooling ---- */

/* Window geometry shared by the images: per spatial axis i the input extent, output extent,
 * window, stride, low pad and pitch (in pixels); per window cell w its offset in pixels from the
 * window's first cell (woff[w]) and its coordinate along each axis (wc[w * nsp + i]), so no window
 * cell costs a division (they were most of a small pool's backward time). */
typedef struct {
    int nsp;
    int64_t C, insp, outsp, ws, in[LX_MAX_DIMS], out[LX_MAX_DIMS], win[LX_MAX_DIMS], stride[LX_MAX_DIMS],
        lo[LX_MAX_DIMS], pitch[LX_MAX_DIMS];
    int64_t *woff, *wc;
} pool_geom;

/* One image n of the pooling gradient: dx of that image only (images run in parallel). avg: each
 * output's g / divisor (computed once per output, as lax divides before the window-sum transpose)
 * added to every in-bounds cell of its window; max: g to the first maximal (or NaN) cell. The
 * output position advances as an odometer; a window inside the input adds woff[w] to its first
 * pixel, a border window checks each cell's coordinates. */
static void pool_vjp_image(const pool_geom *g, const float *X, const float *G, float *DX, int64_t n, bool is_max,
                           bool include_pad, int64_t *best, float *bv) {
    const int nsp = g->nsp;
    const int64_t C = g->C;
    float *tmp = bv; /* avg: the scaled gradient row */
    int64_t oi[LX_MAX_DIMS] = {0};
    for (int64_t o = 0; o < g->outsp; o++) {
        if (o > 0)
            for (int i = nsp - 1; i >= 0 && ++oi[i] == g->out[i]; i--) oi[i] = 0;
        int64_t first[LX_MAX_DIMS], base = 0, count = 1;
        bool whole = true;
        for (int i = 0; i < nsp; i++) {
            first[i] = oi[i] * g->stride[i] - g->lo[i];
            const int64_t a = first[i] < 0 ? 0 : first[i];
            const int64_t e = first[i] + g->win[i] > g->in[i] ? g->in[i] : first[i] + g->win[i];
            count *= e > a ? e - a : 0;
            whole = whole && first[i] >= 0 && first[i] + g->win[i] <= g->in[i];
            base += first[i] * g->pitch[i];
        }
        const float *gr = G + (n * g->outsp + o) * C;
        if (is_max) {
            for (int64_t ch = 0; ch < C; ch++) best[ch] = -1, bv[ch] = -INFINITY;
        } else {
            const float div = (float)(include_pad ? g->ws : count);
            for (int64_t ch = 0; ch < C; ch++) tmp[ch] = gr[ch] / div;
        }
        for (int64_t w = 0; w < g->ws; w++) {
            int64_t sp = base + g->woff[w];
            if (!whole) {
                const int64_t *c = g->wc + w * nsp;
                bool inside = true;
                for (int i = 0; i < nsp && inside; i++) {
                    const int64_t pos = first[i] + c[i];
                    inside = pos >= 0 && pos < g->in[i];
                }
                if (!inside) continue;
            }
            const int64_t bix = (n * g->insp + sp) * C;
            if (is_max) {
                const float *xr = X + bix;
                for (int64_t ch = 0; ch < C; ch++)
                    if (xr[ch] > bv[ch] || isnan(xr[ch]) || best[ch] < 0) bv[ch] = xr[ch], best[ch] = bix + ch;
            } else {
                float *d = DX + bix;
#pragma omp simd
                for (int64_t ch = 0; ch < C; ch++) d[ch] += tmp[ch];
            }
        }
        if (is_max)
            for (int64_t ch = 0; ch < C; ch++)
                if (best[ch] >= 0) DX[best[ch]] += gr[ch];
    }
}

typedef struct pool_vjp_ctx {
    const pool_geom *g;
    const float *X, *G;
    float *DX;
    int64_t C;
    bool is_max, include_pad;
} pool_vjp_ctx;

static int pool_vjp_images(void *ctx, int64_t lo, int64_t hi) {
    const pool_vjp_ctx *c = ctx;
    int64_t *best = malloc(sizeof(int64_t) * (size_t)(c->C > 0 ? c->C : 1));
    float *bv = malloc(sizeof(float) * (size_t)(c->C > 0 ? c->C : 1));
    for (int64_t n = lo; best && bv && n < hi; n++) pool_vjp_image(c->g, c->X, c->G, c->DX, n, c->is_max, c->include_pad, best, bv);
    int failed = !best || !bv;
    free(best), free(bv);
    return failed;
}

static lx_status pool_vjp(const lx_pool_params *p, lx_array *x, lx_array *out, lx_array *ct, lx_array **in_ct,
                          bool is_max) {
    lx_array *dx = f32_like(x);
    if (!dx) return lx_last_status();
    const int nsp = p->nwin, lead = x->ndim - nsp - 1;
    pool_geom g = {.nsp = nsp, .C = x->shape[x->ndim - 1], .insp = 1, .outsp = 1, .ws = 1};
    for (int i = nsp - 1; i >= 0; i--) {
        g.in[i] = x->shape[lead + i], g.out[i] = out->shape[lead + i], g.win[i] = p->window[i];
        g.stride[i] = p->strides[i], g.lo[i] = p->lo[i], g.pitch[i] = g.insp;
        g.insp *= g.in[i], g.outsp *= g.out[i], g.ws *= g.win[i];
    }
    const int64_t N = lead ? x->shape[0] : 1, C = g.C;
    g.woff = malloc(sizeof(int64_t) * (size_t)(g.ws > 0 ? g.ws : 1));
    g.wc = malloc(sizeof(int64_t) * (size_t)(g.ws > 0 ? g.ws * nsp : 1));
    if (!g.woff || !g.wc) {
        free(g.woff), free(g.wc); /* dx is autoreleased */
        return lx_fail(LX_ERR_NO_MEMORY, "pool backward: out of memory");
    }
    { /* the cells in row-major window order, counted as an odometer */
        int64_t c[LX_MAX_DIMS] = {0};
        for (int64_t w = 0; w < g.ws; w++) {
            if (w > 0)
                for (int i = nsp - 1; i >= 0 && ++c[i] == g.win[i]; i--) c[i] = 0;
            int64_t off = 0;
            for (int i = 0; i < nsp; i++) g.wc[w * nsp + i] = c[i], off += c[i] * g.pitch[i];
            g.woff[w] = off;
        }
    }
    const float *G = lx_f32(ct), *X = lx_f32(x);
    float *DX = lx_f32(dx);
    int nt = N > 1 && (double)x->size * 2 > (1 << 16) ? lx_num_threads() : 1;
    pool_vjp_ctx pc = {&g, X, G, DX, C, is_max, p->count_include_pad};
    int failed = lx_parallel_for(nt, N, pool_vjp_images, &pc);
    free(g.woff), free(g.wc);
    if (failed) return lx_fail(LX_ERR_NO_MEMORY, "pool backward: out of memory");
    in_ct[0] = dx;
    return LX_OK;
}

VJP(avg_pool) { UNUSED_VJP_ARGS; return pool_vjp(params, in[0], out, ct, in_ct, false); }
VJP(max_pool) { UNUSED_VJP_ARGS; return pool_vjp(params, in[0], out, ct, in_ct, true); }

/* ---- dropout: linear in x with the recorded mask ---- */

VJP(dropout) {
    UNUSED_VJP_ARGS;
    const lx_dropout_params *p = params;
    in_ct[0] = lx_dropout_apply(ct, in[1], p->rate);
    return st_of(in_ct[0]);
}

/* ---- attention ----
 * P = softmax(masked(scale q k^T + bias)), kept by the forward under a tape (else recomputed; the
 * fused forward keeps the rows' log-sum-exp instead and P = exp(scale q k^T - lse) is rebuilt per
 * head, one GEMM and one exp pass); then
 * per (batch, head), on linnx's GEMM: dP = dO V^T, dS = P (dP - rowsum(P dP)) where not masked,
 * dQ = scale dS K, and per kv head dV += P^T dO, dK += scale dS^T Q (the heads of a GQA group
 * accumulate), dbias = dS summed to bias's shape. A job is one (batch, kv head): it owns its rows
 * of dK, dV and of the heads' dQ, so jobs run on the thread team without sharing.
 * Causal attention skips what is exactly zero, in blocks of ATT_BLK rows: dS (and, when the
 * weights' upper triangle is zero, P) vanish for key s > query t, so a query block reads keys
 * [0, block end) and a key block [s0, s1) reads queries [s0, T). The row sums would see more than
 * zeros only when a value row past the block holds inf / NaN (then dO V^T there is not finite) or
 * the weights past it are not zero (a row whose kept logits were all -inf): such a block runs over
 * every key. Entries of dS or P that are zero (masked, causal) multiply the other operand in the
 * products, so an inf there gives NaN, as JAX's dense products do. */
#define ATT_BLK 32

/* The fused backward's jobs [lo, hi): one (batch, kv head) each. */
typedef struct flash_bwd_ctx {
    lx_flash_bwd_fn fbwd;
    const lx_flash_bwd_args *fa;
    const float *Q, *K, *V, *O, *GO, *LSE;
    float *DQ, *DK, *DV;
    int64_t T, H, D, S, G, Dv, R;
} flash_bwd_ctx;

static int flash_bwd_jobs(void *ctx, int64_t lo, int64_t hi) {
    const flash_bwd_ctx *c = ctx;
    const int64_t T = c->T, H = c->H, D = c->D, S = c->S, G = c->G, Dv = c->Dv, R = c->R;
    float *scratch = malloc(sizeof(float) * (size_t)lx_flash_bwd_scratch(c->fa));
    if (!scratch) return 1;
    for (int64_t j = lo; j < hi; j++) {
        const int64_t b = j / G, g = j % G, h = g * R;
        c->fbwd(c->fa, c->Q + (b * T * H + h) * D, c->K + (b * S * G + g) * D, c->V + (b * S * G + g) * Dv,
                c->O + (b * T * H + h) * Dv, c->GO + (b * T * H + h) * Dv, c->LSE + (b * H + h) * T,
                c->DQ + (b * T * H + h) * D, c->DK + (b * S * G + g) * D, c->DV + (b * S * G + g) * Dv, scratch);
    }
    free(scratch);
    return 0;
}

/* The general backward's jobs [lo, hi): one (batch, kv head) each (attention_vjp below). */
typedef struct att_bwd_ctx {
    const lx_attention_params *p;
    bool has_v, from_lse;
    const float *Q, *K, *V, *PP, *GO, *LSE;
    const uint8_t *MM;
    float *DQ, *DK, *DV, *DS;
    int64_t T, H, D, S, G, Dv, R, ldq, ldk, ldo, ldv, TS;
    float sc;
    void (*vexp)(const float *, float *, int64_t);
    lx_flash_exp_fn fexp;
    lx_attn_ds_fn dsrow;
} att_bwd_ctx;

static int att_bwd_jobs(void *ctx, int64_t lo, int64_t hi) {
    const att_bwd_ctx *c = ctx;
    const lx_attention_params *p = c->p;
    const bool v = c->has_v, from_lse = c->from_lse;
    const float *Q = c->Q, *K = c->K, *V = c->V, *PP = c->PP, *GO = c->GO, *LSE = c->LSE;
    const uint8_t *MM = c->MM;
    float *DQ = c->DQ, *DK = c->DK, *DV = c->DV, *DS = c->DS;
    const int64_t T = c->T, H = c->H, D = c->D, S = c->S, G = c->G, Dv = c->Dv, R = c->R;
    const int64_t ldq = c->ldq, ldk = c->ldk, ldo = c->ldo, ldv = c->ldv, TS = c->TS;
    const float sc = c->sc;
    void (*vexp)(const float *, float *, int64_t) = c->vexp;
    const lx_flash_exp_fn fexp = c->fexp;
    const lx_attn_ds_fn dsrow = c->dsrow;
    /* dP and (without bias) dS of one head, and its weights when recomputed */
    float *scratch = malloc(sizeof(float) * (size_t)(TS > 0 ? (from_lse ? 3 : 2) * TS : 1));
    if (!scratch) return 1;
    for (int64_t j = lo; j < hi; j++) {
    const int64_t b = j / G, g = j % G;
    const float *Vb = V ? V + (b * S * G + g) * Dv : NULL, *Kb = K + (b * S * G + g) * D;
    float *dKb = DK + (b * S * G + g) * D, *dVb = DV ? DV + (b * S * G + g) * Dv : NULL;
    /* a non-finite value row at or past vbad makes the row sums see it */
    const int64_t vbad = p->causal && v ? nn_last_nonfinite_row(Vb, ldv, S, Dv) : -1;
    for (int64_t h = g * R; h < (g + 1) * R; h++) {
        const int64_t prow0 = (b * H + h) * TS;
        const float *Pb = PP ? PP + prow0 : scratch + 2 * TS, *Qb = Q + (b * T * H + h) * D;
        if (from_lse) { /* P = exp(scale q k^T - lse), exact zeros above the causal diagonal */
            float *pw = scratch + 2 * TS;
            const float *lb = LSE + (b * H + h) * T;
            for (int64_t t0 = 0; t0 < T; t0 += ATT_BLK) {
                const int64_t tq = T - t0 < ATT_BLK ? T - t0 : ATT_BLK;
                const int64_t nc = p->causal && t0 + tq < S ? t0 + tq : S;
                lx_sgemm_serial(false, true, tq, nc, D, sc, Qb + t0 * ldq, ldq, Kb, ldk, 0.0f, pw + t0 * S, S);
                for (int64_t t = t0; t < t0 + tq; t++) {
                    float *row = pw + t * S;
                    const int64_t lim = p->causal && t + 1 < S ? t + 1 : S;
                    if (fexp) {
                        fexp(row, lim, lb[t]);
                    } else {
                        for (int64_t s2 = 0; s2 < lim; s2++) row[s2] -= lb[t];
                        vexp(row, row, lim);
                    }
                    for (int64_t s2 = lim; s2 < S; s2++) row[s2] = 0.0f;
                }
            }
        }
        const float *dOb = v ? GO + (b * T * H + h) * Dv : NULL;
        float *dQb = DQ + (b * T * H + h) * D, *dP = scratch, *dSb = DS ? DS + prow0 : scratch + TS;
        /* the weights vanish above the diagonal (the causal forward's zeros) */
        bool upper_zero = p->causal;
        for (int64_t t = 0; upper_zero && !from_lse && t < T; t++) {
            int nz = 0;
            for (int64_t s = t + 1; s < S; s++) nz |= Pb[t * S + s] != 0.0f;
            upper_zero = !nz;
        }
        for (int64_t t0 = 0; t0 < T; t0 += ATT_BLK) {
            const int64_t tq = T - t0 < ATT_BLK ? T - t0 : ATT_BLK;
            int64_t ncols = S;
            if (upper_zero && v && t0 + tq < S && vbad < t0 + tq) ncols = t0 + tq;
            const float *dPr = v ? dP : GO + prow0; /* the weights' cotangent is dP itself */
            if (v) lx_sgemm_serial(false, true, tq, ncols, Dv, 1.0f, dOb + t0 * ldo, ldo, Vb, ldv, 0.0f, dP + t0 * S, S);
            for (int64_t t = t0; t < t0 + tq; t++) {
                const float *pr = Pb + t * S, *dpr = dPr + t * S;
                const uint8_t *mr = MM ? MM + prow0 + t * S : NULL;
                float *dsr = dSb + t * S;
                const int64_t lim0 = p->causal && t + 1 < ncols ? t + 1 : ncols;
                if (!mr && dsrow) { /* the same row on AVX-512 / AVX2 */
                    dsrow(pr, dpr, dsr, ncols, lim0, S);
                    continue;
                }
                double dot = 0;
#pragma omp simd reduction(+ : dot)
                for (int64_t s = 0; s < ncols; s++) dot += (double)pr[s] * dpr[s];
                const float fdot = (float)dot;
                const int64_t lim = p->causal && t + 1 < ncols ? t + 1 : ncols; /* causal: s > t masked */
                for (int64_t s = 0; s < lim; s++) {
                    float ds = pr[s] * (dpr[s] - fdot);
                    dsr[s] = mr && !mr[s] ? 0.0f : ds;
                }
                for (int64_t s = lim; s < S; s++) dsr[s] = 0.0f;
            }
            lx_sgemm_serial(false, false, tq, D, ncols, sc, dSb + t0 * S, S, Kb, ldk, 0.0f, dQb + t0 * ldq, ldq);
        }
        /* key blocks: queries t < s0 contribute zeros when causal (dS always, P if its upper triangle is 0) */
        for (int64_t s0 = 0; s0 < S; s0 += ATT_BLK) {
            const int64_t sk = S - s0 < ATT_BLK ? S - s0 : ATT_BLK;
            int64_t tk = p->causal ? (s0 < T ? s0 : T) : 0, tv = upper_zero ? tk : 0;
            if (v && tv < T)
                lx_sgemm_serial(true, false, sk, Dv, T - tv, 1.0f, Pb + tv * S + s0, S, dOb + tv * ldo, ldo, 1.0f,
                                dVb + s0 * ldv, ldv);
            if (tk < T)
                lx_sgemm_serial(true, false, sk, D, T - tk, sc, dSb + tk * S + s0, S, Qb + tk * ldq, ldq, 1.0f,
                                dKb + s0 * ldk, ldk);
        }
    }
    }
    free(scratch);
    return 0;
}

static lx_status attention_vjp(const lx_attention_params *p, lx_array *q, lx_array *k, lx_array *v, lx_array *bias,
                               lx_array *mask, lx_array *kept, lx_array *out, lx_array *ct, lx_array **dq_,
                               lx_array **dk_, lx_array **dv_, lx_array **dbias_) {
    int n = q->ndim;
    int64_t T = q->shape[n - 3], H = q->shape[n - 2], D = q->shape[n - 1], S = k->shape[n - 3], G = k->shape[n - 2];
    int64_t Dv = v ? v->shape[n - 1] : 0, B = 1, R = H / G;
    for (int i = 0; i < n - 3; i++) B *= q->shape[i];
    /* the fused forward keeps each row's log-sum-exp (batch..., H, T) instead of the weights */
    const bool from_lse = v && kept && kept->ndim == n - 1;
    lx_array *P = !v ? out
                : from_lse ? NULL
                : kept ? kept /* the forward's weights */
                       : lx_dot_product_attention_weights(q, k, bias, mask, p->causal, p->flax_scaling ? 0.0f : p->scale);
    if (!P && !from_lse) return lx_last_status();
    /* the fused backward (attention_internal.h) where the fused forward ran: it writes every entry
     * of dq, dk and dv, so they are not zeroed first */
    const lx_isa isa = lx_isa_current();
    const lx_flash_bwd_fn fbwd = !from_lse ? NULL
                                 : isa == LX_ISA_AVX512 ? lx_flash_bwd_avx512()
                                 : isa == LX_ISA_AVX2 ? lx_flash_bwd_avx2()
                                                      : NULL;
    if (fbwd && T > 0 && S > 0) {
        lx_array *dq = lx_op_result(LX_F32, n, q->shape, false), *dk = lx_op_result(LX_F32, n, k->shape, false);
        lx_array *dv = lx_op_result(LX_F32, n, v->shape, false);
        if (!dq || !dk || !dv) return lx_fail(LX_ERR_NO_MEMORY, "dot_product_attention backward: out of memory");
        const lx_flash_bwd_args fa = {.T = T, .S = S, .d = D, .dv = Dv, .R = R, .ldq = H * D, .ldk = G * D,
                                      .ldv = G * Dv, .ldo = H * Dv, .sc = p->scale, .causal = p->causal};
        const float *Q = lx_f32(q), *K = lx_f32(k), *V = lx_f32(v), *O = lx_f32(out), *GO = lx_f32(ct), *LSE = lx_f32(kept);
        float *DQ = lx_f32(dq), *DK = lx_f32(dk), *DV = lx_f32(dv);
        const int64_t jobs = B * G;
        const int nt = (double)B * H * T * S * (D + Dv) > (1 << 18) && jobs > 1 ? lx_num_threads() : 1;
        const flash_bwd_ctx fc = {fbwd, &fa, Q, K, V, O, GO, LSE, DQ, DK, DV, T, H, D, S, G, Dv, R};
        if (lx_parallel_for(nt, jobs, flash_bwd_jobs, (void *)&fc))
            return lx_fail(LX_ERR_NO_MEMORY, "dot_product_attention backward: out of memory");
        *dq_ = dq, *dk_ = dk, *dv_ = dv;
        return LX_OK;
    }
    lx_array *M = NULL;
    if (mask && !(M = lx_broadcast_to(mask, P->ndim, P->shape))) return lx_last_status();
    lx_array *dq = f32_like(q), *dk = f32_like(k), *dv = v ? f32_like(v) : NULL, *dS = bias && P ? f32_like(P) : NULL;
    if (!dq || !dk || (v && !dv) || (bias && !dS)) return lx_fail(LX_ERR_NO_MEMORY, "dot_product_attention backward: out of memory");
    const float *Q = lx_f32(q), *K = lx_f32(k), *V = v ? lx_f32(v) : NULL, *PP = P ? lx_f32(P) : NULL, *GO = lx_f32(ct);
    const float *LSE = from_lse ? lx_f32(kept) : NULL;
    void (*vexp)(const float *, float *, int64_t) = lx_vmath_active()->exp;
    const lx_flash_exp_fn fexp = isa == LX_ISA_AVX512 ? lx_flash_exp_avx512() : isa == LX_ISA_AVX2 ? lx_flash_exp_avx2() : NULL;
    const lx_attn_ds_fn dsrow = isa == LX_ISA_AVX512 ? lx_attn_ds_avx512() : isa == LX_ISA_AVX2 ? lx_attn_ds_avx2() : NULL;
    const uint8_t *MM = M ? lx_bool(M) : NULL;
    float *DQ = lx_f32(dq), *DK = lx_f32(dk), *DV = dv ? lx_f32(dv) : NULL, *DS = dS ? lx_f32(dS) : NULL;
    const float sc = p->scale;
    const int64_t ldq = H * D, ldk = G * D, ldo = H * Dv, ldv = G * Dv, jobs = B * G, TS = T * S;
    const int nt = (double)B * H * T * S * (D + Dv) > (1 << 18) && jobs > 1 ? lx_num_threads() : 1;
    const att_bwd_ctx ac = {p, v != NULL, from_lse, Q, K, V, PP, GO, LSE, MM, DQ, DK, DV, DS, T, H, D, S, G, Dv, R,
                            ldq, ldk, ldo, ldv, TS, sc, vexp, fexp, dsrow};
    if (lx_parallel_for(nt, jobs, att_bwd_jobs, (void *)&ac))
        return lx_fail(LX_ERR_NO_MEMORY, "dot_product_attention backward: out of memory");
    *dq_ = dq, *dk_ = dk;
    if (dv_) *dv_ = dv;
    if (bias && !(*dbias_ = unbroadcast(dS, bias))) return lx_last_status();
    return LX_OK;
}

VJP(attention) {
    UNUSED_VJP_ARGS;
    lx_array *dbias = NULL;
    lx_status st = attention_vjp(params, in[0], in[1], in[2], in[3], in[4], nin > 5 ? in[5] : NULL, out, ct, &in_ct[0],
                                 &in_ct[1], &in_ct[2], &dbias);
    in_ct[3] = dbias;
    return st;
}

VJP(attention_weights) {
    UNUSED_VJP_ARGS;
    lx_array *dbias = NULL;
    lx_status st = attention_vjp(params, in[0], in[1], NULL, in[2], in[3], NULL, out, ct, &in_ct[0], &in_ct[1], NULL,
                                 &dbias);
    in_ct[2] = dbias;
    return st;
}
