/* Reductions over any set of axes: sum, mean, max, min, var, logsumexp, argmax.
 *
 * Every reduction is brought to one canonical form, (outer, R, inner) with R the reduced extent:
 * size-1 dims are dropped and neighbouring dims of one kind merged; a set of axes that is not a
 * single run after that (say axes (0, 2) of a 4-d array) is first transposed into a temporary
 * with the reduced dims last. Kernels then work on tiles: one outer index and up to TILE_W
 * columns of the inner extent, so a reduction over trailing axes is a contiguous row loop and a
 * reduction over leading axes accumulates whole rows, both vectorisable, and tiles spread over
 * threads. Float sums accumulate in double, in the run-time kernel set's sum kernels
 * (reduce_kernels.h: every set adds in the same order, so sums are the same bits in every set).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/ops.h"
#include "broadcast.h"
#include "op_internal.h"
#include "reduce_kernels.h"

#define TILE_W 256
#define LANES 8

typedef struct red_plan {
    int64_t outer, red, inner;
} red_plan;

/* One tile: x points at element (o, 0, c0), out at (o, c0); w columns, row stride `inner`. */
typedef void (*tile_fn)(const void *x, void *out, int64_t red, int64_t inner, int64_t w);

typedef struct tiles_job {
    const red_plan *p;
    const void *x;
    size_t xes;
    void *out;
    size_t oes;
    tile_fn fn;
    int64_t nchunk;
} tiles_job;

static int tiles_range(void *p_, int64_t lo, int64_t hi) {
    const tiles_job *j = p_;
    const red_plan *p = j->p;
    for (int64_t t = lo; t < hi; t++) {
        const int64_t o = t / j->nchunk, c0 = (t % j->nchunk) * TILE_W;
        const int64_t w = p->inner - c0 < TILE_W ? p->inner - c0 : TILE_W;
        j->fn((const char *)j->x + (size_t)(o * p->red * p->inner + c0) * j->xes,
              (char *)j->out + (size_t)(o * p->inner + c0) * j->oes, p->red, p->inner, w);
    }
    return 0;
}

static void run_tiles(const red_plan *p, const void *x, size_t xes, void *out, size_t oes, tile_fn fn) {
    if (p->outer == 0 || p->inner == 0) return;
    const int64_t nchunk = (p->inner + TILE_W - 1) / TILE_W, ntiles = p->outer * nchunk;
    const int64_t total = p->outer * p->red * p->inner;
    tiles_job j = {p, x, xes, out, oes, fn, nchunk};
    lx_parallel_for(LX_PAR_THREADS(total > LX_PAR_MIN && ntiles > 1), ntiles, tiles_range, &j);
}

/* ---- kernels ---- */

/* The generic float sum kernels (reduce_kernels.h gives the order all sets share). */
static double generic_sum_row(const float *x, int64_t n) {
    double acc[RED_ROW_LANES] = {0};
    int64_t i = 0;
    for (; i + RED_ROW_LANES <= n; i += RED_ROW_LANES)
        for (int j = 0; j < RED_ROW_LANES; j++) acc[j] += x[i + j];
    for (int j = 0; i + j < n; j++) acc[j] += x[i + j];
    for (int h = RED_ROW_LANES / 2; h >= 1; h /= 2)
        for (int j = 0; j < h; j++) acc[j] += acc[j + h];
    return acc[0];
}

/* Column sums of a tile into acc[0..w). */
static void generic_sum_cols(const float *x, int64_t red, int64_t inner, int64_t w, double *acc) {
    for (int64_t j = 0; j < w; j++) acc[j] = 0;
    for (int64_t r = 0; r < red; r++) {
        const float *row = x + r * inner;
        for (int64_t j = 0; j < w; j++) acc[j] += row[j];
    }
}

static const lx_reduce_kernels reduce_generic = {.sum_cols = generic_sum_cols, .sum_row = generic_sum_row};

const lx_reduce_kernels *lx_reduce_kernels_active(void) {
    const lx_reduce_kernels *k = NULL;
    const lx_isa isa = lx_isa_current();
    if (isa == LX_ISA_AVX512) k = lx_reduce_kernels_avx512();
    else if (isa == LX_ISA_AVX2) k = lx_reduce_kernels_avx2();
    return k ? k : &reduce_generic;
}

static double sum_row_f32(const float *x, int64_t n) { return lx_reduce_kernels_active()->sum_row(x, n); }
static void sum_cols_f32(const float *x, int64_t red, int64_t inner, int64_t w, double *acc) {
    lx_reduce_kernels_active()->sum_cols(x, red, inner, w, acc);
}

static void sum_f32_forward(const void *x_, void *out_, int64_t red, int64_t inner, int64_t w) {
    const float *x = x_;
    float *out = out_;
    if (inner == 1) {
        out[0] = (float)sum_row_f32(x, red);
        return;
    }
    double acc[TILE_W];
    sum_cols_f32(x, red, inner, w, acc);
    for (int64_t j = 0; j < w; j++) out[j] = (float)acc[j];
}

static void mean_f32_forward(const void *x_, void *out_, int64_t red, int64_t inner, int64_t w) {
    const float *x = x_;
    float *out = out_;
    if (inner == 1) {
        out[0] = (float)(sum_row_f32(x, red) / (double)red); /* 0/0: NaN, as jnp.mean */
        return;
    }
    double acc[TILE_W];
    sum_cols_f32(x, red, inner, w, acc);
    for (int64_t j = 0; j < w; j++) out[j] = (float)(acc[j] / (double)red);
}

/* Two passes (mean, then squared deviations): no cancellation from sum(x^2) - sum(x)^2. */
static void var_f32_forward(const void *x_, void *out_, int64_t red, int64_t inner, int64_t w) {
    const float *x = x_;
    float *out = out_;
    if (inner == 1) {
        const double mean = sum_row_f32(x, red) / (double)red;
        double acc[LANES] = {0}, s = 0;
        int64_t i = 0;
        for (; i + LANES <= red; i += LANES)
            for (int j = 0; j < LANES; j++) {
                const double d = x[i + j] - mean;
                acc[j] += d * d;
            }
        for (; i < red; i++) s += (x[i] - mean) * (x[i] - mean);
        for (int j = 0; j < LANES; j++) s += acc[j];
        out[0] = (float)(s / (double)red);
        return;
    }
    double mean[TILE_W], acc[TILE_W];
    sum_cols_f32(x, red, inner, w, mean);
    for (int64_t j = 0; j < w; j++) {
        mean[j] /= (double)red;
        acc[j] = 0;
    }
    for (int64_t r = 0; r < red; r++) {
        const float *row = x + r * inner;
        for (int64_t j = 0; j < w; j++) {
            const double d = row[j] - mean[j];
            acc[j] += d * d;
        }
    }
    for (int64_t j = 0; j < w; j++) out[j] = (float)(acc[j] / (double)red);
}

/* Integer sums wrap modulo 2^32 (uint32_t arithmetic), as XLA's int32 adds do. */
#define SUM_INT_KERNEL(name, T)                                                          \
    static void name(const void *x_, void *out_, int64_t red, int64_t inner, int64_t w) { \
        const T *x = x_;                                                                 \
        T *out = out_;                                                                   \
        uint32_t acc[TILE_W] = {0};                                                      \
        for (int64_t r = 0; r < red; r++) {                                              \
            const T *row = x + r * inner;                                                \
            for (int64_t j = 0; j < w; j++) acc[j] += (uint32_t)row[j];                  \
        }                                                                                \
        for (int64_t j = 0; j < w; j++) out[j] = (T)acc[j];                              \
    }
SUM_INT_KERNEL(sum_i32_forward, int32_t)
SUM_INT_KERNEL(sum_u32_forward, uint32_t)

/* max/min: `BETTER(v, m)` says v replaces the running m (for floats a NaN always does, and
 * nothing replaces a NaN). red >= 1 is checked before. */
#define EXTREME_KERNEL(name, T, BETTER)                                                  \
    static void name(const void *x_, void *out_, int64_t red, int64_t inner, int64_t w) { \
        const T *x = x_;                                                                 \
        T *out = out_;                                                                   \
        if (inner == 1) {                                                                \
            T m[LANES];                                                                  \
            for (int j = 0; j < LANES; j++) m[j] = x[0];                                 \
            int64_t i = 0;                                                               \
            for (; i + LANES <= red; i += LANES)                                         \
                for (int j = 0; j < LANES; j++) {                                        \
                    const T v = x[i + j];                                                \
                    m[j] = (BETTER(v, m[j])) ? v : m[j];                                 \
                }                                                                        \
            T best = m[0];                                                               \
            for (int j = 1; j < LANES; j++) best = (BETTER(m[j], best)) ? m[j] : best;   \
            for (; i < red; i++) best = (BETTER(x[i], best)) ? x[i] : best;              \
            out[0] = best;                                                               \
            return;                                                                      \
        }                                                                                \
        for (int64_t j = 0; j < w; j++) out[j] = x[j];                                   \
        for (int64_t r = 1; r < red; r++) {                                              \
            const T *row = x + r * inner;                                                \
            for (int64_t j = 0; j < w; j++) out[j] = (BETTER(row[j], out[j])) ? row[j] : out[j]; \
        }                                                                                \
    }
#define FMAX_BETTER(v, m) ((v) > (m) || isnan(v))
#define FMIN_BETTER(v, m) ((v) < (m) || isnan(v))
#define IMAX_BETTER(v, m) ((v) > (m))
#define IMIN_BETTER(v, m) ((v) < (m))
/* For floats the NaN test must not let a later non-NaN replace a NaN: v > NaN and v < NaN are
 * false, and isnan(v) only fires for a NaN v. */
EXTREME_KERNEL(max_f32_forward, float, FMAX_BETTER)
EXTREME_KERNEL(max_i32_forward, int32_t, IMAX_BETTER)
EXTREME_KERNEL(max_u32_forward, uint32_t, IMAX_BETTER)
EXTREME_KERNEL(min_f32_forward, float, FMIN_BETTER)
EXTREME_KERNEL(min_i32_forward, int32_t, IMIN_BETTER)
EXTREME_KERNEL(min_u32_forward, uint32_t, IMIN_BETTER)

/* m + log(sum(exp(x - m))), m the max or 0 where it is infinite (what jax.nn.logsumexp does):
 * all -inf gives -inf, a +inf gives +inf, a NaN gives NaN, an empty reduction -inf. */
static void logsumexp_f32_forward(const void *x_, void *out_, int64_t red, int64_t inner, int64_t w) {
    const float *x = x_;
    float *out = out_;
    float m[TILE_W];
    double acc[TILE_W];
    for (int64_t j = 0; j < w; j++) {
        m[j] = -INFINITY;
        acc[j] = 0;
    }
    for (int64_t r = 0; r < red; r++) {
        const float *row = x + r * inner;
        for (int64_t j = 0; j < w; j++) m[j] = FMAX_BETTER(row[j], m[j]) ? row[j] : m[j];
    }
    for (int64_t j = 0; j < w; j++)
        if (!isfinite(m[j])) m[j] = 0;
    for (int64_t r = 0; r < red; r++) {
        const float *row = x + r * inner;
        for (int64_t j = 0; j < w; j++) acc[j] += expf(row[j] - m[j]);
    }
    for (int64_t j = 0; j < w; j++) out[j] = (float)(log(acc[j]) + m[j]);
}

#define ARGMAX_KERNEL(name, T, BETTER)                                                   \
    static void name(const void *x_, void *out_, int64_t red, int64_t inner, int64_t w) { \
        const T *x = x_;                                                                 \
        int32_t *out = out_;                                                             \
        T best[TILE_W];                                                                  \
        for (int64_t j = 0; j < w; j++) {                                                \
            best[j] = x[j];                                                              \
            out[j] = 0;                                                                  \
        }                                                                                \
        for (int64_t r = 1; r < red; r++) {                                              \
            const T *row = x + r * inner;                                                \
            for (int64_t j = 0; j < w; j++)                                              \
                if (BETTER(row[j], best[j])) {                                           \
                    best[j] = row[j];                                                    \
                    out[j] = (int32_t)r;                                                 \
                }                                                                        \
        }                                                                                \
    }
/* Strictly better only, so the first maximum (and the first NaN) wins. */
#define FARG_BETTER(v, m) ((v) > (m) || (isnan(v) && !isnan(m)))
ARGMAX_KERNEL(argmax_f32_forward, float, FARG_BETTER)
ARGMAX_KERNEL(argmax_i32_forward, int32_t, IMAX_BETTER)
ARGMAX_KERNEL(argmax_u32_forward, uint32_t, IMAX_BETTER)

/* ---- planning ---- */

typedef struct red_op {
    const char *name;
    tile_fn fn[LX_DTYPE_COUNT];
    bool needs_nonempty; /* max/min/argmax have no identity */
} red_op;

static const char *axes_str(int n, const int64_t *axes, char *buf, size_t cap) {
    return lx_shape_str(n, axes, buf, cap);
}

/* Normalise `axes` into a mask; NULL axes means all. */
static lx_status axes_mask(const char *op, const lx_array *x, int naxes, const int64_t *axes, bool *mask) {
    for (int i = 0; i < LX_MAX_DIMS; i++) mask[i] = axes == NULL;
    if (!axes) return LX_OK;
    if (naxes < 0 || naxes > LX_MAX_DIMS)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: %d axes given for array of shape %s", op, naxes, lx_ashp(x));
    for (int i = 0; i < naxes; i++) {
        int64_t a;
        LX_TRY(lx_norm_axis(op, axes[i], x->ndim, &a));
        if (mask[a]) {
            char buf[160];
            return lx_fail(LX_ERR_SHAPE, "%s: duplicate value in 'axis' %s for array of shape %s", op,
                           axes_str(naxes, axes, buf, sizeof buf), lx_ashp(x));
        }
        mask[a] = true;
    }
    return LX_OK;
}

/* Reduce x (non-abstract) over mask into out, transposing into a temporary when the reduced
 * dims do not form one run. */
static lx_status reduce_into(const red_op *op, const lx_array *x, const bool *mask, lx_array *out) {
    /* Canonical groups: drop size-1 dims, merge neighbours of one kind. */
    int ng = 0;
    bool gkind[LX_MAX_DIMS];
    int64_t gsize[LX_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        if (x->shape[i] == 1) continue;
        if (ng > 0 && gkind[ng - 1] == mask[i]) {
            gsize[ng - 1] *= x->shape[i];
        } else {
            gkind[ng] = mask[i];
            gsize[ng++] = x->shape[i];
        }
    }
    int nred = 0;
    for (int g = 0; g < ng; g++) nred += gkind[g];
    const size_t es = lx_dtype_size(x->dtype), oes = lx_dtype_size(out->dtype);
    tile_fn fn = op->fn[x->dtype];
    if (nred <= 1) {
        red_plan p = {1, 1, 1};
        int g = 0;
        for (; g < ng && !gkind[g]; g++) p.outer *= gsize[g];
        if (g < ng) p.red = gsize[g++];
        for (; g < ng; g++) p.inner *= gsize[g];
        run_tiles(&p, x->data, es, out->data, oes, fn);
        return LX_OK;
    }
    /* Several reduced runs: move the reduced dims last (kept dims keep their order). */
    int64_t perm[LX_MAX_DIMS], tshape[LX_MAX_DIMS], xstr[LX_MAX_DIMS], tstr[LX_MAX_DIMS];
    int k = 0;
    red_plan p = {1, 1, 1};
    for (int i = 0; i < x->ndim; i++)
        if (!mask[i]) perm[k++] = i, p.outer *= x->shape[i];
    for (int i = 0; i < x->ndim; i++)
        if (mask[i]) perm[k++] = i, p.red *= x->shape[i];
    lx_contiguous_strides(x->ndim, x->shape, xstr);
    for (int i = 0; i < x->ndim; i++) {
        tshape[i] = x->shape[perm[i]];
        tstr[i] = xstr[perm[i]];
    }
    lx_array *tmp = lx_array_empty(x->dtype, x->ndim, tshape);
    if (!tmp) return lx_fail_context(lx_last_status(), "%s: ", op->name);
    lx_strided_copy(tmp->data, NULL, x->data, tstr, es, x->ndim, tshape);
    run_tiles(&p, tmp->data, es, out->data, oes, fn);
    lx_release(tmp);
    return LX_OK;
}

static lx_status check_dtype(const red_op *op, const lx_array *x) {
    if (op->fn[x->dtype]) return LX_OK;
    char list[96] = "";
    size_t n = 0;
    int count = 0, seen = 0;
    for (int d = 0; d < LX_DTYPE_COUNT; d++) count += op->fn[d] != NULL;
    for (int d = 0; d < LX_DTYPE_COUNT; d++)
        if (op->fn[d]) {
            seen++;
            n += (size_t)snprintf(list + n, n < sizeof list ? sizeof list - n : 0, "%s%s",
                                  seen == 1 ? "" : seen == count ? " or " : ", ", lx_dtype_name((lx_dtype)d));
        }
    return lx_fail(LX_ERR_DTYPE, "%s: expects %s, got %s with shape %s", op->name, list,
                   lx_dtype_name(x->dtype), lx_ashp(x));
}

static const red_op red_ops[LX_PRIM_COUNT] = {
    [LX_PRIM_SUM] = {"sum", {[LX_F32] = sum_f32_forward, [LX_I32] = sum_i32_forward, [LX_U32] = sum_u32_forward},
                     false},
    [LX_PRIM_MEAN] = {"mean", {[LX_F32] = mean_f32_forward}, false},
    [LX_PRIM_MAX] = {"max", {[LX_F32] = max_f32_forward, [LX_I32] = max_i32_forward, [LX_U32] = max_u32_forward},
                     true},
    [LX_PRIM_MIN] = {"min", {[LX_F32] = min_f32_forward, [LX_I32] = min_i32_forward, [LX_U32] = min_u32_forward},
                     true},
    [LX_PRIM_VAR] = {"var", {[LX_F32] = var_f32_forward}, false},
    [LX_PRIM_LOGSUMEXP] = {"logsumexp", {[LX_F32] = logsumexp_f32_forward}, false},
    [LX_PRIM_ARGMAX] = {"argmax",
                        {[LX_F32] = argmax_f32_forward, [LX_I32] = argmax_i32_forward, [LX_U32] = argmax_u32_forward},
                        true},
};

/* lx_reduce_params as a builder fills it: naxes REDUCE_ALL for axis=None; otherwise the axes as
 * given (copied only when naxes is in range: the rule reports the rest). */
#define REDUCE_ALL LX_NAXES_NONE

static lx_reduce_params reduce_params(int naxes, const int64_t *axes, bool keepdims) {
    lx_reduce_params p = {.naxes = axes ? naxes : REDUCE_ALL, .keepdims = keepdims};
    if (axes && naxes > 0 && naxes <= LX_MAX_DIMS)
        for (int i = 0; i < naxes; i++) p.axes[i] = axes[i];
    return p;
}

/* The reduced-axes mask of normalised params. */
static void params_mask(const lx_reduce_params *p, bool *mask) {
    for (int i = 0; i < LX_MAX_DIMS; i++) mask[i] = false;
    for (int i = 0; i < p->naxes; i++) mask[p->axes[i]] = true;
}

/* sum/mean/max/min/var/logsumexp: normalises the axes into the sorted list of reduced axes. */
LX_RULE(reduce) {
    (void)nin;
    const red_op *op = &red_ops[id];
    lx_reduce_params *p = params_;
    lx_array *x = in[0];
    LX_TRY(check_dtype(op, x));
    bool mask[LX_MAX_DIMS];
    if (p->naxes == REDUCE_ALL) {
        LX_TRY(axes_mask(op->name, x, 0, NULL, mask));
    } else {
        if (p->naxes < 0 || p->naxes > LX_MAX_DIMS)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: %d axes given for array of shape %s", op->name, p->naxes,
                           lx_ashp(x));
        LX_TRY(axes_mask(op->name, x, p->naxes, p->axes, mask));
    }
    int nd = 0, nused = 0;
    int64_t red = 1;
    for (int i = 0; i < x->ndim; i++) {
        if (mask[i]) {
            red *= x->shape[i]; /* a sub-product of x's dims: fits (checked-arithmetic, array.c) */
            p->axes[nused++] = i;
            if (p->keepdims) av->shape[nd++] = 1;
        } else {
            av->shape[nd++] = x->shape[i];
        }
    }
    p->naxes = nused;
    if (op->needs_nonempty && red == 0)
        return lx_fail(LX_ERR_SHAPE, "%s: zero-size array to reduction operation %s which has no identity (shape %s)",
                       op->name, op->name, lx_ashp(x));
    av->ndim = nd;
    av->dtype = (id == LX_PRIM_SUM || id == LX_PRIM_MAX || id == LX_PRIM_MIN) ? x->dtype : LX_F32;
    return LX_OK;
}

/* argmax: one axis (axes[0]). */
LX_RULE(argmax) {
    (void)nin;
    const red_op *op = &red_ops[id];
    lx_reduce_params *p = params_;
    lx_array *x = in[0];
    LX_TRY(check_dtype(op, x));
    const int64_t axis = p->axes[0];
    int64_t a;
    LX_TRY(lx_norm_axis("argmax", axis, x->ndim, &a));
    if (x->shape[a] == 0)
        return lx_fail(LX_ERR_SHAPE, "argmax: attempt to get argmax of an empty sequence (axis %lld of shape %s)",
                       (long long)axis, lx_ashp(x));
    p->naxes = 1;
    p->axes[0] = a;
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != a || p->keepdims) av->shape[nd++] = i == a ? 1 : x->shape[i];
    av->ndim = nd;
    av->dtype = LX_I32;
    return LX_OK;
}

LX_FWD(reduce) {
    (void)nin, (void)saved;
    bool mask[LX_MAX_DIMS];
    params_mask(params_, mask);
    return reduce_into(&red_ops[id], in[0], mask, *outp);
}

LX_ATTRS(reduce) {
    (void)nin, (void)in, (void)scratch;
    const lx_reduce_params *p = params_;
    if (id == LX_PRIM_ARGMAX) {
        attrs[0] = LX_KW_INT("axis", p->axes[0]);
    } else {
        attrs[0] = LX_KW("axes", lx_ints_v(p->naxes, p->axes));
    }
    attrs[1] = LX_KW_BOOL("keepdims", p->keepdims);
    return 2;
}

#define REDUCE_BUILDER(name, ID)                                                                      \
    lx_array *lx_##name(lx_array *x, int naxes, const int64_t *axes, bool keepdims) {                  \
        const lx_reduce_params prm = reduce_params(naxes, axes, keepdims);                             \
        return lx_bind(LX_PRIM_##ID, &prm, 1, &x);                                                     \
    }

REDUCE_BUILDER(sum, SUM)
REDUCE_BUILDER(mean, MEAN)
REDUCE_BUILDER(max, MAX)
REDUCE_BUILDER(min, MIN)
REDUCE_BUILDER(var, VAR)
REDUCE_BUILDER(logsumexp, LOGSUMEXP)

lx_array *lx_argmax(lx_array *x, int64_t axis, bool keepdims) {
    const lx_reduce_params prm = {.naxes = 1, .axes = {axis}, .keepdims = keepdims};
    return lx_bind(LX_PRIM_ARGMAX, &prm, 1, &x);
}
