/* Softmax, log-softmax, LayerNorm, RMSNorm, integer-label cross-entropy, dropout's scaling. */
#include <math.h>
#include <stdlib.h>

#include "linnx/nn.h"
#include "linnx/threads.h"
#include "kernels.h"
#include "nn_internal.h"
#include "linnx/autodiff.h"
#include "op_internal.h"

/* Rows of work worth a parallel loop: below this many elements threads cost more than they give. */
#define PAR_MIN_ELEMS (1 << 15)
static int threads_for(int64_t elems) { return elems >= PAR_MIN_ELEMS ? lx_num_threads() : 1; }

static bool check_f32(const char *op, const lx_array *x) {
    if (x->dtype == LX_F32) return true;
    char b[96];
    lx_fail(LX_ERR_DTYPE, "%s: expected a float32 input, got %s%s", op, lx_dtype_name(x->dtype),
            lx_shape_str(x->ndim, x->shape, b, sizeof b));
    return false;
}

static bool norm_axis(const char *op, const lx_array *x, int axis, int *out) {
    int ax = axis < 0 ? axis + x->ndim : axis;
    if (ax < 0 || ax >= x->ndim) {
        char b[96];
        lx_fail(LX_ERR_SHAPE, "%s: axis %d is out of range for shape %s", op, axis,
                lx_shape_str(x->ndim, x->shape, b, sizeof b));
        return false;
    }
    *out = ax;
    return true;
}

/* ---- softmax ---- */

/* Softmax over the middle axis of (outer, n, inner): rows are strided, so reduce `inner` columns
 * at once with per-column accumulators. */
static void softmax_strided_forward(const float *x, float *y, int64_t n, int64_t inner, bool log,
                                    float *mx, float *sum) {
    for (int64_t j = 0; j < inner; j++) mx[j] = -INFINITY, sum[j] = 0;
    for (int64_t i = 0; i < n; i++)
#pragma omp simd
        for (int64_t j = 0; j < inner; j++) mx[j] = x[i * inner + j] > mx[j] ? x[i * inner + j] : mx[j];
    for (int64_t j = 0; j < inner; j++) mx[j] = mx[j] == -INFINITY ? 0 : mx[j];
    for (int64_t i = 0; i < n; i++)
#pragma omp simd
        for (int64_t j = 0; j < inner; j++) {
            float e = nn_expf(x[i * inner + j] - mx[j]);
            if (!log) y[i * inner + j] = e;
            sum[j] += e;
        }
    if (log)
        for (int64_t j = 0; j < inner; j++) sum[j] = logf(sum[j]);
    for (int64_t i = 0; i < n; i++)
#pragma omp simd
        for (int64_t j = 0; j < inner; j++)
            y[i * inner + j] = log ? (x[i * inner + j] - mx[j]) - sum[j] : y[i * inner + j] / sum[j];
}

LX_RULE(softmax) {
    (void)nin;
    const char *op = id == LX_PRIM_LOG_SOFTMAX ? "log_softmax" : "softmax";
    lx_shape_params *p = params_;
    int ax;
    if (!check_f32(op, in[0]) || !norm_axis(op, in[0], (int)p->axis, &ax)) return lx_last_status();
    p->axis = ax;
    lx_aval_like(av, LX_F32, in[0]);
    return LX_OK;
}

typedef struct softmax_job {
    const float *x;
    float *y;
    int64_t n;
    bool log;
} softmax_job;

static int softmax_rows(void *p, int64_t lo, int64_t hi) {
    const softmax_job *j = p;
    for (int64_t r = lo; r < hi; r++) softmax_row_forward(j->x + r * j->n, j->y + r * j->n, j->n, j->log);
    return 0;
}

LX_FWD(softmax) {
    (void)nin, (void)saved;
    const bool log = id == LX_PRIM_LOG_SOFTMAX;
    const char *op = log ? "log_softmax" : "softmax";
    const lx_array *x = in[0];
    lx_array *out = *outp;
    const int ax = (int)((const lx_shape_params *)params_)->axis;
    if (x->size > 0) {
        int64_t n = x->shape[ax], inner = 1, outer;
        for (int i = ax + 1; i < x->ndim; i++) inner *= x->shape[i];
        outer = x->size / (n * inner);
        const float *xs = lx_f32(x);
        float *ys = lx_f32(out);
        if (inner == 1) {
            softmax_job j = {xs, ys, n, log};
            lx_parallel_for(threads_for(x->size), outer, softmax_rows, &j);
        } else {
            float *tmp = malloc(sizeof(float) * (size_t)inner * 2);
            if (!tmp) return lx_fail(LX_ERR_NO_MEMORY, "%s: out of memory", op);
            for (int64_t r = 0; r < outer; r++)
                softmax_strided_forward(xs + r * n * inner, ys + r * n * inner, n, inner, log, tmp, tmp + inner);
            free(tmp);
        }
    }
    return LX_OK;
}

/* softmax/log_softmax: the axis; also dropout's rate and the norms' epsilon/axes below. */
LX_ATTRS(softmax) {
    (void)id, (void)nin, (void)in, (void)scratch;
    attrs[0] = LX_KW_INT("axis", ((const lx_shape_params *)params_)->axis);
    return 1;
}

lx_array *lx_softmax(lx_array *x, int axis) {
    const lx_shape_params prm = {.axis = axis};
    return lx_bind(LX_PRIM_SOFTMAX, &prm, 1, &x);
}
lx_array *lx_log_softmax(lx_array *x, int axis) {
    const lx_shape_params prm = {.axis = axis};
    return lx_bind(LX_PRIM_LOG_SOFTMAX, &prm, 1, &x);
}

/* ---- LayerNorm / RMSNorm ---- */

/* Outputs of at least this many bytes are written with streaming stores where the kernel set has
 * them (kernels.h's norm_row_stream): the last-level cache's size (32 MiB where unknown). Such an
 * output has left the cache by the op's end anyway, and a plain store first reads each line it
 * fills (read for ownership): 3 memory passes where the norm needs 2. Measured on a Zen 1 (8 MiB
 * L3), 1024 x 4096 rows (16 MiB in, 16 out): see docs/kernels.md's rows. */
static int64_t norm_stream_min_bytes(void) {
    int64_t l3 = lx_cpu_info_get()->l3_bytes;
    return l3 > 0 ? l3 : (int64_t)32 << 20;
}

/* Orders a thread's streaming stores before what follows (its arrival at the loop's join). */
static void store_fence(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_sfence();
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

/* rows x d values; scale/bias (may be NULL) of f values, repeating along the row (d % f == 0).
 * Flax's fast variance: var = jnp.maximum(0, E[x^2] - E[x]^2) (NaN kept); y = (x - mean) * (rsqrt(var + eps) * scale)
 * + bias. With center false (RMSNorm) mean is 0 and E[x]^2 is dropped. The kernel set in force
 * runs each row (kernels.h, kernels_portable.h). */
typedef struct norm_job {
    const lx_kernels *k;
    const float *x, *scale, *bias;
    float *y, *stats;
    int64_t d, f;
    float eps;
    bool center;
} norm_job;

static int norm_rows(void *p, int64_t lo, int64_t hi) {
    const norm_job *j = p;
    const int64_t d = j->d;
    for (int64_t r = lo; r < hi; r++)
        j->k->norm_row(j->x + r * d, j->y + r * d, d, j->scale, j->bias, j->f, j->eps, j->center,
                       j->stats ? j->stats + 2 * r : NULL);
    return 0;
}

/* each chunk fences its own streaming stores before the loop's join */
static int norm_rows_stream(void *p, int64_t lo, int64_t hi) {
    const norm_job *j = p;
    const int64_t d = j->d;
    for (int64_t r = lo; r < hi; r++)
        j->k->norm_row_stream(j->x + r * d, j->y + r * d, d, j->scale, j->bias, j->f, j->eps, j->center,
                              j->stats ? j->stats + 2 * r : NULL);
    store_fence();
    return 0;
}

static void norm_forward(const float *x, float *y, int64_t rows, int64_t d, const float *scale,
                         const float *bias, int64_t f, float eps, bool center, int nt, float *stats) {
    const lx_kernels *k = lx_kernels_active();
    norm_job j = {k, x, scale, bias, y, stats, d, f, eps, center};
    if (!k->norm_row_stream || rows * d * (int64_t)sizeof(float) < norm_stream_min_bytes())
        lx_parallel_for(nt, rows, norm_rows, &j);
    else
        lx_parallel_for(nt, rows, norm_rows_stream, &j);
}

/* While a tape records, the per-row (mean, rstd) pairs the forward computes, kept for the backward. */
static lx_array *norm_stats(int64_t rows) {
    if (!lx_tape_active()) return NULL;
    return lx_op_result(LX_F32, 2, (const int64_t[]){rows, 2}, false);
}

/* scale/bias must be float32 with the shape of a suffix of x's trailing `naxes` axes. */
static bool check_feature(const char *op, const char *what, const lx_array *p, const lx_array *x, int naxes) {
    char b1[96], b2[96];
    if (p->dtype != LX_F32) {
        lx_fail(LX_ERR_DTYPE, "%s: %s must have the input's dtype float32, got dtype %s (shape %s)", op, what,
                lx_dtype_name(p->dtype), lx_shape_str(p->ndim, p->shape, b1, sizeof b1));
        return false;
    }
    bool ok = p->ndim <= naxes && p->ndim >= 1;
    for (int i = 0; ok && i < p->ndim; i++) ok = p->shape[i] == x->shape[x->ndim - p->ndim + i];
    if (!ok)
        lx_fail(LX_ERR_SHAPE, "%s: %s of %s%s does not match the trailing normalised axes of input shape %s", op, what,
                lx_dtype_name(p->dtype), lx_shape_str(p->ndim, p->shape, b1, sizeof b1),
                lx_shape_str(x->ndim, x->shape, b2, sizeof b2));
    return ok;
}

/* layer_norm's rule: the axes (default: the last) must be x's trailing axes; normalised in place. */
LX_RULE(layer_norm) {
    (void)id, (void)nin;
    lx_norm_params *p = params_;
    lx_array *x = in[0], *scale = in[1], *bias = in[2];
    if (!check_f32("layer_norm", x)) return lx_last_status();
    char b[96];
    const char *xs = lx_shape_str(x->ndim, x->shape, b, sizeof b);
    int k = p->naxes;
    bool seen[LX_MAX_DIMS] = {0};
    int64_t nax[LX_MAX_DIMS];
    for (int i = 0; i < k; i++) {
        int64_t a = p->axes[i < LX_MAX_DIMS ? i : LX_MAX_DIMS - 1], ax = a < 0 ? a + x->ndim : a;
        if (i >= LX_MAX_DIMS || ax < 0 || ax >= x->ndim || seen[ax])
            return lx_fail(LX_ERR_SHAPE, "layer_norm: reduction axis %lld is out of range or repeated for shape %s",
                           (long long)a, xs);
        seen[ax] = true;
        nax[i] = ax;
    }
    for (int i = x->ndim - k; i < x->ndim; i++)
        if (i < 0 || !seen[i])
            return lx_fail(LX_ERR_UNSUPPORTED, "layer_norm: reduction axes must be the trailing %d axes of shape %s", k,
                           xs);
    if ((scale && !check_feature("layer_norm", "scale", scale, x, k)) ||
        (bias && !check_feature("layer_norm", "bias", bias, x, k)))
        return lx_last_status();
    if (scale && bias && !lx_same_shape(scale, bias)) {
        char b1[96], b2[96];
        return lx_fail(LX_ERR_SHAPE, "layer_norm: scale %s and bias %s differ in shape",
                       lx_shape_str(scale->ndim, scale->shape, b1, sizeof b1),
                       lx_shape_str(bias->ndim, bias->shape, b2, sizeof b2));
    }
    for (int i = 0; i < k; i++) p->axes[i] = nax[i];
    lx_aval_like(av, LX_F32, x);
    return LX_OK;
}

LX_FWD(layer_norm) {
    (void)id, (void)nin;
    const lx_norm_params *p = params_;
    const lx_array *x = in[0], *scale = in[1], *bias = in[2];
    lx_array *out = *outp;
    const int k = p->naxes;
    if (x->size > 0) {
        int64_t d = 1;
        for (int i = x->ndim - k; i < x->ndim; i++) d *= x->shape[i];
        int64_t f = scale ? scale->size : bias ? bias->size : d;
        lx_array *stats = *saved = norm_stats(x->size / d);
        norm_forward(lx_f32(x), lx_f32(out), x->size / d, d, scale ? lx_f32(scale) : NULL,
                     bias ? lx_f32(bias) : NULL, f, p->epsilon, true, threads_for(x->size), stats ? lx_f32(stats) : NULL);
    }
    return LX_OK;
}

LX_ATTRS(norm) {
    (void)nin, (void)in, (void)scratch;
    const lx_norm_params *p = params_;
    attrs[0] = LX_KW_FLOAT("epsilon", p->epsilon);
    if (id == LX_PRIM_RMS_NORM) return 1;
    attrs[1] = LX_KW("axes", lx_ints_v(p->naxes, p->axes));
    return 2;
}

lx_array *lx_layer_norm(lx_array *x, lx_array *scale, lx_array *bias, float epsilon, int naxes,
                        const int64_t *axes) {
    lx_norm_params prm = {.epsilon = epsilon, .naxes = 1, .axes = {-1}};
    if (naxes > 0 && axes) {
        prm.naxes = naxes;
        for (int i = 0; i < naxes && i < LX_MAX_DIMS; i++) prm.axes[i] = axes[i];
    }
    return lx_bind(LX_PRIM_LAYER_NORM, &prm, 3, (lx_array *const[]){x, scale, bias});
}

LX_RULE(rms_norm) {
    (void)id, (void)nin;
    lx_norm_params *p = params_;
    lx_array *x = in[0], *scale = in[1];
    if (!check_f32("rms_norm", x)) return lx_last_status();
    if (x->ndim == 0) return lx_fail(LX_ERR_SHAPE, "rms_norm: input of shape () has no feature axis");
    if (scale && (!check_feature("rms_norm", "scale", scale, x, 1))) return lx_last_status();
    p->naxes = 1;
    p->axes[0] = x->ndim - 1;
    lx_aval_like(av, LX_F32, x);
    return LX_OK;
}

LX_FWD(rms_norm) {
    (void)id, (void)nin;
    const lx_norm_params *p = params_;
    const lx_array *x = in[0], *scale = in[1];
    lx_array *out = *outp;
    if (x->size > 0) {
        int64_t d = x->shape[x->ndim - 1];
        lx_array *stats = *saved = norm_stats(x->size / d);
        norm_forward(lx_f32(x), lx_f32(out), x->size / d, d, scale ? lx_f32(scale) : NULL, NULL, d, p->epsilon,
                     false, threads_for(x->size), stats ? lx_f32(stats) : NULL);
    }
    return LX_OK;
}

lx_array *lx_rms_norm(lx_array *x, lx_array *scale, float epsilon) {
    const lx_norm_params prm = {.epsilon = epsilon, .naxes = 1, .axes = {-1}};
    return lx_bind(LX_PRIM_RMS_NORM, &prm, 2, (lx_array *const[]){x, scale});
}

/* ---- cross-entropy with integer labels ---- */

/* logsumexp(row) - row[label]: the kernel set's logsumexp_row (kernels.h), rows over the threads. */
typedef struct ce_job {
    float (*lse)(const float *, int64_t);
    const float *logits;
    const int32_t *labels;
    float *loss;
    int64_t c;
} ce_job;

static int ce_rows(void *p, int64_t lo, int64_t hi) {
    const ce_job *j = p;
    const int64_t c = j->c;
    for (int64_t r = lo; r < hi; r++) j->loss[r] = j->lse(j->logits + r * c, c) - j->logits[r * c + j->labels[r]];
    return 0;
}

static void cross_entropy_int_forward(const float *logits, const int32_t *labels, float *loss, int64_t rows,
                                      int64_t c) {
    ce_job j = {lx_kernels_active()->logsumexp_row, logits, labels, loss, c};
    lx_parallel_for(threads_for(rows * c), rows, ce_rows, &j);
}

LX_RULE(softmax_cross_entropy_int) {
    LX_UNUSED_RULE;
    const lx_array *logits = in[0], *labels = in[1];
    char b1[96], b2[96]; /* the shapes are formatted only for a message (the rule runs every step) */
    if (logits->dtype != LX_F32 || labels->dtype != LX_I32)
        return lx_fail(LX_ERR_DTYPE, "softmax_cross_entropy_int: expected float32 logits and int32 labels, got %s%s and %s%s",
                       lx_dtype_name(logits->dtype), lx_shape_str(logits->ndim, logits->shape, b1, sizeof b1),
                       lx_dtype_name(labels->dtype), lx_shape_str(labels->ndim, labels->shape, b2, sizeof b2));
    if (logits->ndim == 0 || labels->ndim != logits->ndim - 1 || !lx_shape_eq(labels, labels->ndim, logits->shape))
        return lx_fail(LX_ERR_SHAPE, "softmax_cross_entropy_int: labels of shape %s do not match logits of shape %s (want logits.shape[:-1])",
                       lx_shape_str(labels->ndim, labels->shape, b2, sizeof b2),
                       lx_shape_str(logits->ndim, logits->shape, b1, sizeof b1));
    lx_aval_like(av, LX_F32, labels);
    return LX_OK;
}

/* The labels' range is a property of their values: checked here, on concrete inputs only. */
LX_FWD(softmax_cross_entropy_int) {
    LX_UNUSED_FWD;
    const lx_array *logits = in[0], *labels = in[1];
    lx_array *out = *outp;
    int64_t c = logits->shape[logits->ndim - 1];
    for (int64_t i = 0; i < labels->size; i++)
        if (lx_i32(labels)[i] < 0 || lx_i32(labels)[i] >= c) {
            char b1[96];
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "softmax_cross_entropy_int: label %d at flat index %lld is outside [0, %lld) for logits of shape %s",
                           lx_i32(labels)[i], (long long)i, (long long)c,
                           lx_shape_str(logits->ndim, logits->shape, b1, sizeof b1));
        }
    if (out->size > 0) cross_entropy_int_forward(lx_f32(logits), lx_i32(labels), lx_f32(out), out->size, c);
    return LX_OK;
}

lx_array *lx_softmax_cross_entropy_int(lx_array *logits, lx_array *labels) {
    return lx_bind(LX_PRIM_SOFTMAX_CROSS_ENTROPY_INT, NULL, 2, (lx_array *const[]){logits, labels});
}

/* ---- dropout's scaling ---- */

LX_RULE(dropout_apply) {
    (void)id, (void)nin;
    const lx_array *x = in[0], *keep_mask = in[1];
    const double rate = ((const lx_dropout_params *)params_)->rate;
    char b1[96], b2[96];
    const char *xs = lx_shape_str(x->ndim, x->shape, b1, sizeof b1);
    const char *ms = lx_shape_str(keep_mask->ndim, keep_mask->shape, b2, sizeof b2);
    if (!check_f32("dropout_apply", x)) return lx_last_status();
    if (keep_mask->dtype != LX_BOOL)
        return lx_fail(LX_ERR_DTYPE, "dropout_apply: keep_mask must be bool, got %s%s", lx_dtype_name(keep_mask->dtype), ms);
    if (!(rate >= 0.0 && rate <= 1.0))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "dropout_apply: rate must be in [0, 1], got %g", rate);
    int64_t st[LX_MAX_DIMS];
    if (!nn_bcast_strides(keep_mask, x->ndim, x->shape, st))
        return lx_fail(LX_ERR_SHAPE, "dropout_apply: keep_mask of shape %s does not broadcast to input shape %s", ms, xs);
    lx_aval_like(av, LX_F32, x);
    return LX_OK;
}

LX_FWD(dropout_apply) {
    LX_UNUSED_FWD;
    const lx_array *x = in[0], *keep_mask = in[1];
    const double rate = ((const lx_dropout_params *)params_)->rate;
    lx_array *out = *outp;
    int64_t st[LX_MAX_DIMS];
    nn_bcast_strides(keep_mask, x->ndim, x->shape, st);
    if (x->size > 0) {
        const float *xv = lx_f32(x);
        const uint8_t *m = lx_bool(keep_mask);
        /* Flax: keep_prob = 1.0 - rate in Python (double), then x / keep_prob in x's dtype */
        float *y = lx_f32(out), keep = (float)(1.0 - rate);
        int n = x->ndim;
        int64_t idx[LX_MAX_DIMS] = {0}, off = 0;
        for (int64_t i = 0; i < x->size; i++) {
            y[i] = rate == 1.0 || !m[off] ? 0.0f : xv[i] / keep; /* Flax: select(mask, x / keep_prob, 0) */
            for (int a = n - 1; a >= 0; a--) {
                off += st[a];
                if (++idx[a] < x->shape[a]) break;
                off -= st[a] * x->shape[a];
                idx[a] = 0;
            }
        }
    }
    return LX_OK;
}

/* dropout and dropout_apply: the rate. */
LX_ATTRS(dropout) {
    (void)id, (void)nin, (void)in, (void)scratch;
    attrs[0] = LX_KW_FLOAT("rate", ((const lx_dropout_params *)params_)->rate);
    return 1;
}

lx_array *lx_dropout_apply(lx_array *x, lx_array *keep_mask, double rate) {
    const lx_dropout_params prm = {rate};
    return lx_bind(LX_PRIM_DROPOUT_APPLY, &prm, 2, (lx_array *const[]){x, keep_mask});
}
