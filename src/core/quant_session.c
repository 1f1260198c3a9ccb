/* Running a model quantized by rules: fake quantization with the straight-through estimator
 * (QAT), the int8 kernel path, calibration of static activation scales, a PTQ session over
 * stored int8 weights, and the plan recorder PTQ builds its tree from (quant.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/autodiff.h"
#include "linnx/box.h"
#include "linnx/intercept.h"
#include "linnx/nn.h"
#include "linnx/nnx.h"
#include "linnx/ops.h"
#include "linnx/primitive.h"
#include "linnx/quant.h"
#include "linnx/variable.h"
#include "checked.h"
#include "frame_internal.h"
#include "quant_internal.h"
#include "status_internal.h"

enum { MODE_PLAN = 100, MODE_COMPARE = 101 };

typedef struct {
    lx_array *key;     /* the weight as the op sees it (float or int8), retained */
    lx_i8_packed **pk; /* one per tile of the contraction ((K, N) packed when ntiles is 1) */
    int ntiles;
    int64_t cover;     /* contraction rows per tile (K when ntiles is 1) */
    float *sw;         /* (ntiles, N) */
} wcache;

typedef struct {
    char *path;          /* full tree path of a static activation scale */
    char *dir;           /* its parent map ("params/Dense_0") */
    char *op;            /* the counted op ("dot_general0") */
    int side;            /* 0 lhs, 1 rhs */
    float scale;
} sentry;

typedef struct {
    lx_array *q, *scale; /* retained */
    char *dir;           /* the tree path of q's parent map ("params/Dense_0") */
    lx_array *deq;       /* q * scale, made on first use by an op without an int8 kernel; retained */
    int st0, nst;        /* its static activation scales: s->st[st0 .. st0 + nst) share its dir */
} qentry;

typedef struct {
    char *path, *op;     /* module path, counted op */
    int64_t calls;
    double err_sq, ref_sq;
} lerr;

struct lx_qt_session {
    const lx_qt_rules *rules;
    int mode;
    int sub_handle, icpt_handle;
    lx_qt_counters ctr;
    wcache *cache;
    int ncache, capcache;
    qentry *q;
    int nq, capq;
    sentry *st;
    int nst, capst;
    lx_tree *stats;      /* calibration and QAT with static scales: borrowed (owned with `nnx`) */
    nnx_module *nnx;     /* the module whose QuantStat Variables `stats` came from (retained) */
    bool update;         /* QAT: add each call's absmax to the statistics before using them */
    lx_qt_plan *plan;    /* plan: borrowed */
    int64_t quantized, int8_ops;
    int8_t *qa;          /* int8_dense's scratch: the quantized activation, the int32 product */
    int32_t *acc;
    size_t qa_cap, acc_cap;
    int8_t *col; /* int8_conv's im2col rows */
    size_t col_cap;
    lerr *lerrs;         /* compare: per (path, op) output error */
    int nlerr, caplerr;
    lx_qt_layer_error *report;
};

static _Thread_local lx_qt_session *active; /* one session per thread: quantizing twice is refused */

static void no_op(const lx_intercept_event *ev, void *user) {
    (void)ev;
    (void)user;
}

/* ------------------------------------------------------------------ quantize / dequantize */

static inline float q8f(float v, float inv) { return lx_qt_round_clamp(v, inv); }

/* A static activation scale is in force: > 0, or NaN (statistics that saw a NaN); 0 is "none". */
static inline bool has_static(float s) { return s > 0 || s != s; }

/* For element coordinates of x, the flat index of its scale (scale shape `ss`, each scale axis
 * covering `cover[d]` entries of x's axis). */
static void scale_geometry(const lx_array *x, const int64_t *ss, int64_t *cover) {
    for (int d = 0; d < x->ndim; d++) cover[d] = ss[d] > 0 ? (x->shape[d] + ss[d] - 1) / ss[d] : 1;
}

/* Walk x in row-major order calling the body with i (flat) and c (flat scale index). */
#define FOR_SCALED(x, ss, cover, BODY)                                                                       \
    do {                                                                                                     \
        int64_t coord_[LX_MAX_DIMS] = {0};                                                                   \
        for (int64_t i = 0; i < (x)->size; i++) {                                                            \
            int64_t c = 0;                                                                                   \
            for (int d_ = 0; d_ < (x)->ndim; d_++) c = c * (ss)[d_] + coord_[d_] / (cover)[d_];              \
            BODY;                                                                                            \
            for (int d_ = (x)->ndim - 1; d_ >= 0; d_--) {                                                    \
                if (++coord_[d_] < (x)->shape[d_]) break;                                                    \
                coord_[d_] = 0;                                                                              \
            }                                                                                                \
        }                                                                                                    \
    } while (0)

lx_status lx_qt_quantize_axes(const lx_array *x, const bool *reduce, int64_t tile, int tax, lx_array **q,
                              lx_array **scale) {
    if (!x || x->dtype != LX_F32 || lx_is_abstract(x))
        return lx_fail(LX_ERR_DTYPE, "quantize: expected a concrete float32 array");
    int64_t ss[LX_MAX_DIMS], cover[LX_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++)
        ss[d] = !reduce[d] ? x->shape[d] : (tile > 0 && d == tax) ? (x->shape[d] + tile - 1) / tile : 1;
    scale_geometry(x, ss, cover);
    lx_array *qa = lx_array_new(LX_I8, x->ndim, x->shape), *sa = lx_array_new(LX_F32, x->ndim, ss);
    if (!qa || !sa) {
        lx_release(qa), lx_release(sa);
        return lx_fail(LX_ERR_NO_MEMORY, "quantize: out of memory");
    }
    float *mx = lx_f32(sa); /* zero-filled: the max first, the scale after */
    const float *xd = lx_f32(x);
    FOR_SCALED(x, ss, cover, mx[c] = lx_qt_absmax_step(mx[c], xd[i]));
    for (int64_t c = 0; c < sa->size; c++) mx[c] = lx_qt_scale_of(mx[c]);
    int8_t *qd = lx_i8(qa);
    FOR_SCALED(x, ss, cover, qd[i] = (int8_t)q8f(xd[i], 1.0f / mx[c]));
    *q = qa, *scale = sa;
    return LX_OK;
}

lx_array *lx_qt_dequantize(const lx_array *q, const lx_array *scale) {
    if (!q || !scale || q->dtype != LX_I8 || scale->dtype != LX_F32 || scale->ndim != q->ndim) {
        lx_fail(LX_ERR_SHAPE, "dequantize: expected int8 values and a float32 scale of the same rank");
        return NULL;
    }
    for (int d = 0; d < q->ndim; d++)
        if (scale->shape[d] < 1 || scale->shape[d] > (q->shape[d] > 0 ? q->shape[d] : 1)) {
            lx_fail(LX_ERR_SHAPE, "dequantize: a scale of shape axis %d = %lld does not divide values axis %lld", d,
                    (long long)scale->shape[d], (long long)q->shape[d]);
            return NULL;
        }
    lx_array *out = lx_array_new(LX_F32, q->ndim, q->shape);
    if (!out) return NULL;
    if (!lx_is_abstract(q)) {
        int64_t cover[LX_MAX_DIMS];
        scale_geometry(q, scale->shape, cover);
        const int8_t *qd = lx_i8(q);
        const float *sd = lx_f32(scale);
        float *o = lx_f32(out);
        FOR_SCALED(q, scale->shape, cover, o[i] = (float)qd[i] * sd[c]);
    }
    return lx_autorelease(out);
}

/* x's quantize-dequantize round trip (the values lx_qt_quantize_axes then lx_qt_dequantize give). */
static lx_array *fake_quant(lx_array *x, const bool *reduce, int64_t tile, int tax) {
    lx_array *q = NULL, *s = NULL;
    if (lx_qt_quantize_axes(x, reduce, tile, tax, &q, &s) != LX_OK) return NULL;
    lx_array *r = lx_qt_dequantize(q, s);
    lx_release(q), lx_release(s);
    return r;
}

/* The round trip with a given (static) scale. */
static lx_array *fake_quant_static(lx_array *x, float s) {
    lx_array *out = lx_array_new(LX_F32, x->ndim, x->shape);
    if (!out) return NULL;
    const float *xd = lx_f32(x);
    float *o = lx_f32(out), inv = 1.0f / s;
    for (int64_t i = 0; i < x->size; i++) o[i] = q8f(xd[i], inv) * s;
    return lx_autorelease(out);
}

/* x + stop_gradient(fq(x) - x): the forward sees fq(x), the backward the identity. */
static lx_array *ste(lx_array *x, lx_array *fq) {
    if (!fq) return NULL;
    return lx_add(x, lx_stop_gradient(lx_sub(fq, x)));
}

/* ------------------------------------------------------------------ op geometry */

/* The contraction axes of input i (for conv: the kernel's all but the output-feature axis). */
static void contract_axes(lx_prim_id id, const void *params, int i, const lx_array *x, bool *mask) {
    for (int d = 0; d < LX_MAX_DIMS; d++) mask[d] = false;
    if (id == LX_PRIM_DOT_GENERAL) {
        const lx_dot_general_params *p = params;
        for (int k = 0; k < p->ncontract; k++) mask[i == 0 ? p->lhs_contract[k] : p->rhs_contract[k]] = true;
    } else if (id == LX_PRIM_CONV_GENERAL) {
        for (int d = 0; d < x->ndim; d++) mask[d] = i == 0 || d != x->ndim - 1;
    } else if (id == LX_PRIM_MATMUL) { /* a's last axis, b's second to last (its only one when 1-D) */
        mask[i == 0 ? x->ndim - 1 : (x->ndim >= 2 ? x->ndim - 2 : 0)] = true;
    } else { /* attention's q.k^T: both activations, one scale per tensor */
        for (int d = 0; d < x->ndim; d++) mask[d] = true;
    }
}

static const char *op_name(lx_prim_id id) {
    switch (id) {
    case LX_PRIM_MATMUL: return "matmul";
    case LX_PRIM_DOT_GENERAL: return "dot_general";
    case LX_PRIM_CONV_GENERAL: return "conv_general";
    case LX_PRIM_DOT_PRODUCT_ATTENTION_WEIGHTS: return "einsum";
    default: return NULL;
    }
}

/* A Dense-like contraction: x (..., K-axes) . w (K-axes, N-axes), no batch axes. */
static bool dense_like(lx_prim_id id, const void *params, const lx_array *x, const lx_array *w, int64_t *K,
                       int64_t *N, int *ncontract) {
    int nc;
    int64_t k = 1;
    if (id == LX_PRIM_MATMUL) {
        if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[0]) return false;
        nc = 1;
    } else if (id == LX_PRIM_DOT_GENERAL) {
        const lx_dot_general_params *p = params;
        nc = p->ncontract;
        if (p->nbatch != 0 || nc < 1 || nc > x->ndim || nc > w->ndim) return false;
        for (int i = 0; i < nc; i++)
            if (p->rhs_contract[i] != i || p->lhs_contract[i] != x->ndim - nc + i) return false;
    } else {
        return false;
    }
    for (int i = 0; i < nc; i++) k *= w->shape[i];
    if (k == 0 || x->size == 0 || w->size == 0) return false;
    *K = k, *N = w->size / k, *ncontract = nc;
    return true;
}

/* ------------------------------------------------------------------ int8 kernel path */

static wcache *cache_find(lx_qt_session *s, const lx_array *key) {
    for (int i = 0; i < s->ncache; i++)
        if (s->cache[i].key == key) return &s->cache[i];
    return NULL;
}

static void wcache_free(wcache *e) {
    for (int t = 0; e->pk && t < e->ntiles; t++) lx_i8_packed_free(e->pk[t]);
    free(e->pk), free(e->sw);
}

/* The packed int8 copy of a weight: from its stored int8 values and scale (PTQ; per-tile scales
 * (ntiles, N) give one packed slice of rows per tile) or quantized per output channel from float
 * (once per session). */
static wcache *weight_packed(lx_qt_session *s, lx_array *w, const qentry *qe, int64_t K, int64_t N, int nc) {
    wcache *hit = cache_find(s, w);
    if (hit) return hit;
    if (s->ncache == s->capcache) {
        int cap = s->capcache ? 2 * s->capcache : 16;
        wcache *c = realloc(s->cache, (size_t)cap * sizeof *c);
        if (!c) return NULL;
        s->cache = c, s->capcache = cap;
    }
    int nt = qe ? (int)(qe->scale->size / N) : 1;
    wcache e = {w, calloc((size_t)nt, sizeof(lx_i8_packed *)), nt, nt > 1 ? (K + nt - 1) / nt : K,
                malloc(sizeof(float) * (size_t)(nt * N))};
    if (!e.pk || !e.sw) {
        wcache_free(&e);
        return NULL;
    }
    lx_status st = LX_OK;
    if (qe) {
        memcpy(e.sw, lx_f32(qe->scale), sizeof(float) * (size_t)(nt * N));
        for (int t = 0; st == LX_OK && t < nt; t++) {
            int64_t k0 = t * e.cover, k1 = k0 + e.cover < K ? k0 + e.cover : K;
            st = lx_i8_pack(k1 - k0, N, lx_i8(qe->q) + k0 * N, &e.pk[t]);
        }
    } else {
        bool reduce[LX_MAX_DIMS] = {false};
        for (int d = 0; d < nc; d++) reduce[d] = true;
        lx_array *q = NULL, *sc = NULL;
        st = lx_qt_quantize_axes(w, reduce, 0, 0, &q, &sc);
        if (st == LX_OK) {
            memcpy(e.sw, lx_f32(sc), sizeof(float) * (size_t)N);
            st = lx_i8_pack(K, N, lx_i8(q), &e.pk[0]);
        }
        lx_release(q), lx_release(sc);
    }
    if (st != LX_OK) {
        wcache_free(&e);
        return NULL;
    }
    lx_retain(w);
    s->cache[s->ncache++] = e;
    return &s->cache[s->ncache - 1];
}

/* Grow-only session scratch (int8_dense runs on every decode step: no malloc per call). */
static bool scratch(void **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = need > 2 * *cap ? need : 2 * *cap;
    void *b = realloc(*p, c);
    if (!b) return false;
    *p = b, *cap = c;
    return true;
}

/* x quantized per tensor into the session's scratch: with the static scale *sa > 0, else its max
 * (then *sa is set). */
static lx_status quantize_act(lx_qt_session *s, const lx_array *x, float *sa) {
    if (!scratch((void **)&s->qa, &s->qa_cap, (size_t)x->size)) return lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
    if (has_static(*sa)) {
        const float *xd = lx_f32(x);
        float inv = 1.0f / *sa;
        for (int64_t i = 0; i < x->size; i++) s->qa[i] = (int8_t)q8f(xd[i], inv);
    } else {
        lx_quantize_tiles_i8(1, x->size, x->size, lx_f32(x), s->qa, sa); /* one scale for the tensor */
    }
    return LX_OK;
}

/* conv_general through the int8 GEMM: x (batch, spatial..., Cin) quantized per tensor, gathered
 * im2col-style in int8 (a padding tap is 0: symmetric quantization maps 0.0 to 0, so it is the
 * float conv's zero padding exactly), times the kernel (spatial..., Cin, Cout) read as the (K =
 * taps * Cin, N = Cout) matrix it already is in memory, packed once per session like a Dense
 * weight; y = acc * s_a * s_w[cout]. 1 to 3 spatial axes, any strides, padding and kernel
 * dilation; grouped convolutions, input dilation and per-tile scales: *y NULL with LX_OK (the
 * caller takes the dequantizing path). */
static lx_status int8_conv(lx_qt_session *s, const lx_conv_params *cp, lx_array *x, lx_array *w, const qentry *qe,
                           float sa, lx_array **y) {
    const int nd = x->ndim, ns = nd - 2;
    if (ns < 1 || ns > 3 || w->ndim != nd || x->size == 0 || w->size == 0) return LX_OK;
    int64_t shape[LX_MAX_DIMS];
    if (lx_i8_conv_im2col(nd, x->shape, NULL, w->shape, cp, shape, NULL) != LX_OK) {
        lx_clear_error(); /* grouped, input-dilated, or a shape the float op reports */
        return LX_OK;
    }
    const int64_t N = w->shape[ns + 1], K = w->size / N;
    int64_t M = 1, MK, MN;
    for (int d = 0; d < nd - 1; d++)
        if (!lx_mul_ok(M, shape[d], &M)) return LX_OK; /* the float op reports the size */
    if (M == 0 || (qe && qe->scale->size != N) || !lx_mul_ok(M, K, &MK) || !lx_mul_ok(MK, 4, &MK) ||
        !lx_mul_ok(M, N, &MN))
        return LX_OK;
    wcache *wc = weight_packed(s, w, qe, K, N, ns + 1);
    if (!wc) return lx_last_status() != LX_OK && lx_error_pending() ? lx_last_status()
                                                                    : lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
    lx_status e = quantize_act(s, x, &sa);
    if (e != LX_OK) return e;
    if (!scratch((void **)&s->col, &s->col_cap, (size_t)(M * K)) ||
        !scratch((void **)&s->acc, &s->acc_cap, sizeof(int32_t) * (size_t)(M * N)))
        return lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
    lx_array *yo = lx_array_empty(LX_F32, nd, shape);
    if (!yo) return lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
    e = lx_i8_conv_im2col(nd, x->shape, s->qa, w->shape, cp, shape, s->col);
    if (e == LX_OK) e = lx_i8_gemm_packed(LX_I8_AUTO, M, s->col, wc->pk[0], s->acc);
    if (e != LX_OK) {
        lx_release(yo);
        return e;
    }
    float *yd = lx_f32(yo);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) yd[m * N + n] = (float)s->acc[m * N + n] * sa * wc->sw[n];
    s->int8_ops++;
    *y = lx_autorelease(yo);
    return LX_OK;
}

/* x . w through the int8 GEMM: x quantized per tensor (its max, or the static scale `sa` > 0).
 * *y NULL with LX_OK: not a Dense-like op (the caller takes the dequantizing path). */
static lx_status int8_dense(lx_qt_session *s, lx_prim_id id, const void *params, lx_array *x, lx_array *w,
                            const qentry *qe, float sa, lx_array **y) {
    *y = NULL;
    if (id == LX_PRIM_CONV_GENERAL) return int8_conv(s, params, x, w, qe, sa, y);
    int64_t K, N;
    int nc;
    if (!dense_like(id, params, x, w, &K, &N, &nc)) return LX_OK;
    if (qe && qe->scale->size != N) { /* per-tile scales: tiles of the one contraction axis */
        int64_t nt = qe->scale->size / N;
        if (nc != 1 || qe->scale->size != nt * N || qe->scale->shape[0] != nt) return LX_OK;
    }
    int64_t M = x->size / K, shape[LX_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim - nc; d++) shape[nd++] = x->shape[d];
    for (int d = nc; d < w->ndim; d++) {
        if (nd == LX_MAX_DIMS) return LX_OK;
        shape[nd++] = w->shape[d];
    }
    wcache *wc = weight_packed(s, w, qe, K, N, nc);
    if (!wc) return lx_last_status() != LX_OK && lx_error_pending() ? lx_last_status()
                                                                    : lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
    lx_status qst = quantize_act(s, x, &sa);
    if (qst != LX_OK) return qst;
    if (!scratch((void **)&s->acc, &s->acc_cap, sizeof(int32_t) * (size_t)(M * N)))
        return lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
    lx_array *out = lx_array_empty(LX_F32, nd, shape);
    if (!out) return lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
    int8_t *qa = s->qa;
    int32_t *acc = s->acc;
    float *yd = lx_f32(out);
    lx_status st = LX_OK;
    if (wc->ntiles == 1) {
        st = lx_i8_gemm_packed(LX_I8_AUTO, M, qa, wc->pk[0], acc);
        for (int64_t m = 0; st == LX_OK && m < M; m++)
            for (int64_t n = 0; n < N; n++) yd[m * N + n] = (float)acc[m * N + n] * sa * wc->sw[n];
    } else { /* y = sum over tiles of (int32 product of the tile's rows) * s_a * s_w[tile, n] */
        memset(yd, 0, sizeof(float) * (size_t)(M * N));
        int8_t *at = NULL;
        size_t atcap = 0;
        for (int t = 0; st == LX_OK && t < wc->ntiles; t++) {
            int64_t k0 = t * wc->cover, kt = lx_i8_packed_k(wc->pk[t]);
            const int8_t *a = qa + k0;
            if (M > 1) { /* the tile's columns of each row, contiguous */
                if (!scratch((void **)&at, &atcap, (size_t)(M * kt))) {
                    st = lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
                    break;
                }
                for (int64_t m = 0; m < M; m++) memcpy(at + m * kt, qa + m * K + k0, (size_t)kt);
                a = at;
            }
            st = lx_i8_gemm_packed(LX_I8_AUTO, M, a, wc->pk[t], acc);
            const float *sw = wc->sw + (int64_t)t * N;
            for (int64_t m = 0; st == LX_OK && m < M; m++)
                for (int64_t n = 0; n < N; n++) yd[m * N + n] += (float)acc[m * N + n] * sa * sw[n];
        }
        free(at);
    }
    if (st != LX_OK) {
        lx_release(out);
        return st;
    }
    s->int8_ops++;
    *y = lx_autorelease(out);
    return LX_OK;
}

/* ------------------------------------------------------------------ PTQ lookups */

static qentry *qentry_find(lx_qt_session *s, const lx_array *q) {
    for (int i = 0; i < s->nq; i++)
        if (s->q[i].q == q) return &s->q[i];
    return NULL;
}

/* The static scale of the activation of `op` (counted) next to weight `qe`; 0 when none. The
 * weight's own scales were found once when the session began (no string building per op). */
static float static_scale(const lx_qt_session *s, const qentry *qe, const char *op, int side) {
    if (!qe) return 0;
    for (int i = qe->st0; i < qe->st0 + qe->nst; i++)
        if (s->st[i].side == side && strcmp(s->st[i].op, op) == 0) return s->st[i].scale;
    return 0;
}

/* The static scale of an activation-only op, stored under its module path ("params/<path>/..."
 * in a Linen tree, "<path>/..." in an NNX state); 0 when none. */
static float static_scale_at(const lx_qt_session *s, const char *path, const char *op, int side) {
    for (int i = 0; i < s->nst; i++) {
        const sentry *e = &s->st[i];
        if (e->side != side || strcmp(e->op, op) != 0) continue;
        const char *d = e->dir;
        if (strcmp(d, path) == 0) return e->scale;
        if (strncmp(d, "params", 6) == 0 && ((d[6] == '/' && strcmp(d + 7, path) == 0) || (!d[6] && !path[0])))
            return e->scale;
    }
    return 0;
}

/* ------------------------------------------------------------------ calibration and planning */

static float absmax(const lx_array *x) {
    float m = 0;
    const float *d = lx_f32(x);
    for (int64_t i = 0; i < x->size; i++) m = lx_qt_absmax_step(m, d[i]);
    return m;
}

/* stats[<path>/<op>_<side>] += {count 1, sum_of_absmax absmax}. */
static lx_status calib_add(lx_tree *stats, const char *path, const char *op, int side, const lx_array *x) {
    char key[512];
    snprintf(key, sizeof key, "%s%s%s_%s", path, path[0] ? "/" : "", op, side == 0 ? "lhs" : "rhs");
    char kc[600], ks[600];
    snprintf(kc, sizeof kc, "%s/count", key);
    snprintf(ks, sizeof ks, "%s/sum_of_absmax", key);
    const lx_value *vc = lx_tree_find(stats, kc), *vs = lx_tree_find(stats, ks);
    int32_t count = 0;
    float sum = 0;
    if (vc && vs && vc->kind == LX_V_ARRAY && vs->kind == LX_V_ARRAY && vc->u.array->dtype == LX_I32 &&
        vs->u.array->dtype == LX_F32 && vc->u.array->size == 1 && vs->u.array->size == 1) {
        count = lx_i32(vc->u.array)[0];
        sum = lx_f32(vs->u.array)[0];
    }
    int64_t ones[LX_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) ones[d] = 1;
    lx_array *c = lx_array_new(LX_I32, 0, NULL), *sm = lx_array_new(LX_F32, x->ndim, ones);
    if (!c || !sm) {
        lx_release(c), lx_release(sm);
        return lx_fail(LX_ERR_NO_MEMORY, "calibration: out of memory");
    }
    lx_i32(c)[0] = count + 1;
    lx_f32(sm)[0] = sum + absmax(x);
    lx_status st = lx_tree_set_path(stats, kc, lx_array_v(c));
    if (st == LX_OK) st = lx_tree_set_path(stats, ks, lx_array_v(sm));
    lx_release(c), lx_release(sm);
    return st;
}

/* The static scale the statistics give <path>/<op>_<side>: (sum_of_absmax / count) / 127 (1 for
 * an absmax of 0); 0 (use this call's own max) when there are none yet (count 0), as Qwix's
 * SimpleMovingAverage falls back to the call's calibration. */
static float stats_scale(const lx_tree *stats, const char *path, const char *op, int side) {
    char kc[600], ks[600];
    snprintf(kc, sizeof kc, "%s%s%s_%s/count", path, path[0] ? "/" : "", op, side == 0 ? "lhs" : "rhs");
    snprintf(ks, sizeof ks, "%s%s%s_%s/sum_of_absmax", path, path[0] ? "/" : "", op, side == 0 ? "lhs" : "rhs");
    lx_array *c = lx_value_leaf_array(lx_tree_find(stats, kc)), *sm = lx_value_leaf_array(lx_tree_find(stats, ks));
    if (!c || !sm || c->size != 1 || sm->size != 1 || lx_is_abstract(c) || lx_is_abstract(sm)) return 0;
    double count = lx_array_get(c, 0), am = count > 0 ? lx_array_get(sm, 0) / count : 0;
    return count > 0 ? lx_qt_scale_of((float)am) : 0;
}

static void plan_seen(lx_qt_plan *p, const char *path, const char *op) {
    char item[600];
    snprintf(item, sizeof item, " %s:%s", path[0] ? path : "(root)", op);
    if (p->seen && strstr(p->seen, item)) return;
    size_t n = strlen(item);
    if (p->seen_len + n + 1 > p->seen_cap) {
        size_t cap = (p->seen_len + n + 1) * 2;
        char *b = realloc(p->seen, cap);
        if (!b) {
            p->oom = true;
            return;
        }
        p->seen = b, p->seen_cap = cap;
    }
    memcpy(p->seen + p->seen_len, item, n + 1);
    p->seen_len += n;
}

static void plan_record(lx_qt_plan *p, lx_array *w, const bool *reduce, int64_t tile, int tax, const char *path,
                        const char *op, int act_side, int act_ndim) {
    bool again = false;
    for (int i = 0; i < p->n; i++) {
        /* a weight used twice keeps its first op's quantization; a later op of its own (a layer
         * called twice in one forward: dot_general1) still gets its static activation scale */
        if (w && p->v[i].w == w) {
            if (act_side < 0 || !strcmp(p->v[i].op, op)) return;
            again = true;
        }
        if (!w && !p->v[i].w && p->v[i].act_side == act_side && !strcmp(p->v[i].path, path) && !strcmp(p->v[i].op, op))
            return; /* an activation-only op seen again (a later call of the module) */
    }
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        lx_qt_record *v = realloc(p->v, (size_t)cap * sizeof *v);
        if (!v) {
            p->oom = true;
            return;
        }
        p->v = v, p->cap = cap;
    }
    lx_qt_record r = {lx_retain(w), {false}, tile, tax, lx_strdup(path), lx_strdup(op), act_side, act_ndim, again};
    if (reduce) memcpy(r.reduce, reduce, sizeof r.reduce);
    if (!r.path || !r.op) {
        free(r.path), free(r.op), lx_release(w);
        p->oom = true;
        return;
    }
    p->v[p->n++] = r;
}

/* A Param of the running module read by an op that is not a contraction (Embed's lookup of a
 * table `attend` also contracts): stored as int8 it would reach that op as int8 values, which
 * no session dequantizes (a substituter may not change an input's dtype), and the PTQ model
 * would fail. Such weights stay float32 (quantize warns). */
static void plan_other(lx_qt_plan *p, int nin, lx_array **in) {
    for (int i = 0; i < nin; i++) {
        if (!in[i] || in[i]->dtype != LX_F32 || !lx_frame_is_param(in[i])) continue;
        bool known = false;
        for (int k = 0; k < p->nother && !known; k++) known = p->other[k] == in[i];
        if (known) continue;
        if (p->nother == p->capother) {
            int cap = p->capother ? 2 * p->capother : 8;
            lx_array **v = realloc(p->other, (size_t)cap * sizeof *v);
            if (!v) {
                p->oom = true;
                return;
            }
            p->other = v, p->capother = cap;
        }
        p->other[p->nother++] = lx_retain(in[i]);
    }
}

void lx_qt_plan_free(lx_qt_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->nother; i++) lx_release(p->other[i]);
    free(p->other);
    for (int i = 0; i < p->n; i++) lx_release(p->v[i].w), free(p->v[i].path), free(p->v[i].op);
    free(p->v), free(p->rule_hit), free(p->seen);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------ per-layer output error */

static lerr *lerr_get(lx_qt_session *s, const char *path, const char *op) {
    for (int i = 0; i < s->nlerr; i++)
        if (!strcmp(s->lerrs[i].path, path) && !strcmp(s->lerrs[i].op, op)) return &s->lerrs[i];
    if (s->nlerr == s->caplerr) {
        int cap = s->caplerr ? 2 * s->caplerr : 16;
        lerr *v = realloc(s->lerrs, (size_t)cap * sizeof *v);
        if (!v) return NULL;
        s->lerrs = v, s->caplerr = cap;
    }
    lerr e = {lx_strdup(path), lx_strdup(op), 0, 0, 0};
    if (!e.path || !e.op) {
        free(e.path), free(e.op);
        return NULL;
    }
    s->lerrs[s->nlerr++] = e;
    return &s->lerrs[s->nlerr - 1];
}

/* ------------------------------------------------------------------ the substituter */

/* The quantized operands of a matched op, in place: stored int8 weights dequantized (once per
 * session), float weights and activations through the quantize-dequantize round trip (with the
 * straight-through estimator when `st_est`). *any: some operand changed. */
static lx_status quantize_operands(lx_qt_session *s, lx_prim_id id, const void *params, lx_array **in,
                                   const bool *wt, const lx_qt_rule *rule, qentry **qe, const float *sa, bool st_est,
                                   bool *any) {
    bool act_q = rule && rule->act_qtype, w_q = rule && rule->weight_qtype;
    *any = false;
    for (int i = 0; i < 2; i++) {
        bool reduce[LX_MAX_DIMS];
        lx_array *nq = NULL, *fq = NULL;
        if (qe[i]) {
            /* the stored values, nothing re-quantized; made once, kept for the session */
            if (!qe[i]->deq) {
                size_t mark = lx_pool_open();
                lx_array *d = lx_qt_dequantize(qe[i]->q, qe[i]->scale);
                qe[i]->deq = lx_retain(d);
                lx_pool_close(mark);
                if (!qe[i]->deq) return lx_error_pending() ? lx_last_status() : lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
            }
            nq = qe[i]->deq;
        } else if (wt[i] && w_q) {
            contract_axes(id, params, i, in[i], reduce);
            int tax = -1, nred = 0;
            for (int d = 0; d < in[i]->ndim; d++)
                if (reduce[d]) tax = d, nred++;
            int64_t tile = rule->tile_size > 0 && nred == 1 ? rule->tile_size : 0;
            fq = fake_quant(in[i], reduce, tile, tax);
        } else if (!wt[i] && act_q) {
            for (int d = 0; d < LX_MAX_DIMS; d++) reduce[d] = true;
            fq = has_static(sa[i]) ? fake_quant_static(in[i], sa[i]) : fake_quant(in[i], reduce, 0, 0);
        } else {
            continue;
        }
        if (!nq) {
            if (!fq) return lx_error_pending() ? lx_last_status() : lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
            nq = st_est ? ste(in[i], fq) : fq;
            if (!nq) return lx_error_pending() ? lx_last_status() : lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory");
        }
        in[i] = nq, *any = true;
    }
    return LX_OK;
}

/* Fail the op: the substituter's NULL after a pending failure (primitive.h) stops bind from
 * computing the op unquantized. */
static lx_array *fail_op(lx_status st) {
    if (!lx_error_pending()) lx_fail(st != LX_OK ? st : LX_ERR_INTERNAL, "quantization: the op could not be quantized");
    return NULL;
}

static double sq_sum(const lx_array *a) {
    double t = 0;
    const float *d = lx_f32(a);
    for (int64_t i = 0; i < a->size; i++) t += (double)d[i] * d[i];
    return t;
}

static lx_array *substitute(lx_prim_id id, const void *params, int nin, lx_array **in, void *user) {
    lx_qt_session *s = user;
    const char *op = op_name(id);
    if (!op && s->mode == MODE_PLAN) plan_other(s->plan, nin, in);
    if (!op || nin < 2 || !in[0] || !in[1]) return NULL;
    /* a path that cannot be built is no path at all: matching "" (the root's) would leave an op
     * of layers_0/mlp float, or apply a root rule to it */
    const char *path = NULL;
    if (lx_frame_path_(&path) != LX_OK)
        return fail_op(lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory for the module path (%s)", op));
    int count = lx_qt_next_count(&s->ctr, path, op);
    if (count < 0) return fail_op(lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory"));
    int r = lx_qt_rules_match(s->rules, path, op, count);
    char counted[80];
    snprintf(counted, sizeof counted, "%s%d", op, count);
    if (s->mode == MODE_PLAN) plan_seen(s->plan, path, counted);

    /* stored int8 weights (PTQ): every one must be known, or the op fails on its dtype */
    qentry *qe[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++)
        if (in[i]->dtype == LX_I8 && !(qe[i] = qentry_find(s, in[i]))) return NULL;
    if (r < 0 && !qe[0] && !qe[1]) return NULL;
    const lx_qt_rule *rule = r >= 0 ? lx_qt_rules_get(s->rules, r) : NULL;
    for (int i = 0; i < 2; i++) {
        if (lx_is_abstract(in[i])) {
            if (qe[i]) in[i] = lx_autorelease(lx_array_abstract(LX_F32, in[i]->ndim, in[i]->shape));
            return NULL;
        }
        if (in[i]->dtype != LX_F32 && !qe[i]) return NULL;
    }
    bool wt[2]; /* lx_frame_is_param cannot fail (intercept.h): a weight is never lost to OOM */
    for (int i = 0; i < 2; i++) wt[i] = qe[i] || (id != LX_PRIM_DOT_PRODUCT_ATTENTION_WEIGHTS && lx_frame_is_param(in[i]));
    bool act_q = rule && rule->act_qtype, w_q = rule && rule->weight_qtype;

    if (s->mode == MODE_PLAN) {
        if (rule) s->plan->rule_hit[r] = true;
        int act_side = -1;
        for (int i = 0; i < 2; i++)
            if (!wt[i] && act_q && rule->act_static_scale) act_side = i;
        for (int i = 0; i < 2; i++) {
            if (!wt[i] || !w_q || qe[i]) continue;
            bool reduce[LX_MAX_DIMS];
            contract_axes(id, params, i, in[i], reduce);
            int tax = -1, nred = 0;
            for (int d = 0; d < in[i]->ndim; d++)
                if (reduce[d]) tax = d, nred++;
            int64_t tile = rule->tile_size > 0 && nred == 1 ? rule->tile_size : 0;
            plan_record(s->plan, in[i], reduce, tile, tax, path, counted, act_side,
                        act_side >= 0 ? in[act_side]->ndim : 0);
        }
        /* two activations (attention's products): static scales kept under the module's path */
        if (!wt[0] && !wt[1] && act_q && rule->act_static_scale)
            for (int i = 0; i < 2; i++) plan_record(s->plan, NULL, NULL, 0, 0, path, counted, i, in[i]->ndim);
        return NULL;
    }
    if (s->mode == LX_QT_CALIBRATE) {
        if (act_q && rule->act_static_scale)
            for (int i = 0; i < 2; i++)
                if (!wt[i] && calib_add(s->stats, path, counted, i, in[i]) != LX_OK) return fail_op(lx_last_status());
        return NULL;
    }

    /* a static activation scale: QAT's moving statistics (this call's absmax added first when
     * updating, as Qwix's QT does), or stored next to the weight (PTQ with calibration) */
    float sa[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        if (wt[i] || !act_q || !rule->act_static_scale) continue;
        if (s->stats) {
            if (s->update && !lx_remat_recomputing() && calib_add(s->stats, path, counted, i, in[i]) != LX_OK) return fail_op(lx_last_status());
            sa[i] = stats_scale(s->stats, path, counted, i);
        } else {
            sa[i] = wt[1 - i] ? static_scale(s, qe[1 - i], counted, i) : static_scale_at(s, path, counted, i);
        }
    }

    bool int8_ok = (s->mode == LX_QT_INT8 || s->mode == MODE_COMPARE) && !wt[0] && wt[1] && act_q && (w_q || qe[1]) &&
                   !lx_tape_active() && (qe[1] || rule->tile_size == 0);
    if (s->mode == MODE_COMPARE) {
        /* the float result goes on (every layer sees float inputs); the quantized one is measured */
        lx_array *orig[2] = {in[0], in[1]}, *yq = NULL;
        lx_status st = int8_ok ? int8_dense(s, id, params, in[0], in[1], qe[1], sa[0], &yq) : LX_OK;
        bool any = yq != NULL;
        if (st == LX_OK && !yq) {
            st = quantize_operands(s, id, params, in, wt, rule, qe, sa, false, &any);
            if (st == LX_OK && any && !(yq = lx_bind(id, params, nin, in))) st = lx_last_status();
            in[0] = orig[0], in[1] = orig[1];
        }
        if (st != LX_OK) return fail_op(st);
        if (!any) return NULL;
        lx_array *yf = lx_bind(id, params, nin, in);
        if (!yf) return fail_op(lx_last_status());
        lerr *e = lerr_get(s, path, counted);
        if (!e) return fail_op(lx_fail(LX_ERR_NO_MEMORY, "quantization: out of memory"));
        double err = 0;
        const float *a = lx_f32(yq), *b = lx_f32(yf);
        for (int64_t i = 0; i < yf->size; i++) err += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        e->calls++, e->err_sq += err, e->ref_sq += sq_sum(yf);
        s->quantized++;
        return yf;
    }
    if (int8_ok) {
        lx_array *y = NULL;
        lx_status st = int8_dense(s, id, params, in[0], in[1], qe[1], sa[0], &y);
        if (st != LX_OK) return fail_op(st);
        if (y) {
            s->quantized++;
            return y;
        }
    }
    bool any = false;
    lx_status st = quantize_operands(s, id, params, in, wt, rule, qe, sa, true, &any);
    if (st != LX_OK) return fail_op(st);
    if (any) s->quantized++;
    return NULL;
}

/* ------------------------------------------------------------------ sessions */

static lx_status begin(const lx_qt_rules *rules, int mode, lx_qt_session **out) {
    if (!rules || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_begin: NULL argument");
    if (active)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "qt_begin: a quantization session is already active on this thread (quantizing twice); "
                       "end it with lx_qt_end first");
    lx_qt_session *s = calloc(1, sizeof *s);
    if (!s) return lx_fail(LX_ERR_NO_MEMORY, "qt_begin: out of memory");
    s->rules = rules;
    s->mode = mode;
    *out = s;
    return LX_OK;
}

static lx_status install(lx_qt_session *s) {
    lx_status st = lx_interceptor_add(no_op, NULL, &s->icpt_handle); /* keeps module frames */
    if (st != LX_OK) return st;
    st = lx_prim_substitute_add(substitute, s, &s->sub_handle);
    if (st != LX_OK) {
        lx_interceptor_remove(s->icpt_handle);
        return st;
    }
    active = s;
    return LX_OK;
}

static void session_free(lx_qt_session *s) {
    lx_qt_counters_free(&s->ctr);
    for (int i = 0; i < s->ncache; i++) {
        lx_release(s->cache[i].key);
        wcache_free(&s->cache[i]);
    }
    free(s->cache);
    for (int i = 0; i < s->nq; i++)
        lx_release(s->q[i].q), lx_release(s->q[i].scale), lx_release(s->q[i].deq), free(s->q[i].dir);
    free(s->q);
    for (int i = 0; i < s->nst; i++) free(s->st[i].path), free(s->st[i].dir), free(s->st[i].op);
    free(s->st);
    free(s->qa), free(s->acc), free(s->col);
    for (int i = 0; i < s->nlerr; i++) free(s->lerrs[i].path), free(s->lerrs[i].op);
    free(s->lerrs), free(s->report);
    if (s->nnx) {
        lx_tree_release(s->stats);
        nnx_module_release(s->nnx);
    }
    free(s);
}

static lx_status begin_installed(const lx_qt_rules *rules, int mode, lx_qt_session **out) {
    if (!out) return lx_null_out("qt_begin");
    lx_qt_session *s = NULL;
    LX_TRY(begin(rules, mode, &s));
    lx_status st = install(s);
    if (st != LX_OK) {
        session_free(s);
        return st;
    }
    *out = s;
    return LX_OK;
}

lx_status lx_qt_begin(const lx_qt_rules *rules, lx_qt_mode mode, lx_qt_session **out) {
    if (mode != LX_QT_FAKE && mode != LX_QT_INT8)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "qt_begin: unknown mode %d (LX_QT_FAKE or LX_QT_INT8; LX_QT_CALIBRATE through "
                       "lx_qt_calibrate_begin)",
                       (int)mode);
    return begin_installed(rules, mode, out);
}

lx_status lx_qt_calibrate_begin(const lx_qt_rules *rules, lx_tree *stats, lx_qt_session **out) {
    if (!out) return lx_null_out("qt_calibrate_begin");
    if (!stats) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_calibrate_begin: NULL statistics tree");
    lx_qt_session *s = NULL;
    LX_TRY(begin(rules, LX_QT_CALIBRATE, &s));
    s->stats = stats;
    lx_status st = install(s);
    if (st != LX_OK) {
        session_free(s);
        return st;
    }
    *out = s;
    return LX_OK;
}

lx_status lx_qt_begin_qat(const lx_qt_rules *rules, lx_tree *stats, bool update, lx_qt_session **out) {
    if (!out) return lx_null_out("qt_begin_qat");
    if (!stats) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_begin_qat: NULL statistics tree");
    lx_qt_session *s = NULL;
    LX_TRY(begin(rules, LX_QT_FAKE, &s));
    s->stats = stats, s->update = update;
    lx_status st = install(s);
    if (st != LX_OK) {
        session_free(s);
        return st;
    }
    *out = s;
    return LX_OK;
}

/* A session over the module's QuantStat Variables (a plain copy the session owns; lx_qt_finish
 * stores it back). */
static lx_status begin_nnx_stats(const lx_qt_rules *rules, int mode, bool update, nnx_module *m, lx_qt_session **out) {
    if (!out) return lx_null_out("qt_begin");
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_begin: NULL module");
    lx_qt_session *s = NULL;
    LX_TRY(begin(rules, mode, &s));
    lx_status st = lx_qt_stats_nnx(m, &s->stats);
    if (st == LX_OK) {
        s->nnx = nnx_module_retain(m), s->update = update;
        st = install(s);
    }
    if (st != LX_OK) {
        if (!s->nnx) lx_tree_release(s->stats), s->stats = NULL;
        session_free(s);
        return st;
    }
    *out = s;
    return LX_OK;
}

lx_status lx_qt_calibrate_begin_nnx(const lx_qt_rules *rules, nnx_module *m, lx_qt_session **out) {
    return begin_nnx_stats(rules, LX_QT_CALIBRATE, true, m, out);
}

lx_status lx_qt_begin_qat_nnx(const lx_qt_rules *rules, nnx_module *m, bool update, lx_qt_session **out) {
    return begin_nnx_stats(rules, LX_QT_FAKE, update, m, out);
}

lx_status lx_qt_finish(lx_qt_session *s) {
    if (!s) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_finish: NULL session");
    lx_status st = LX_OK;
    if (s->nnx) {
        if (active == s) active = NULL; /* the store runs no quantized op */
        lx_prim_substitute_remove(s->sub_handle), s->sub_handle = 0;
        lx_interceptor_remove(s->icpt_handle), s->icpt_handle = 0;
        st = lx_qt_stats_store_nnx(s->nnx, s->stats);
    }
    lx_qt_end(s);
    return st;
}

lx_status lx_qt_plan_begin(const lx_qt_rules *rules, lx_qt_plan *plan, lx_qt_session **out) {
    memset(plan, 0, sizeof *plan);
    plan->rule_hit = calloc((size_t)(lx_qt_rules_count(rules) + 1), sizeof(bool));
    if (!plan->rule_hit) return lx_fail(LX_ERR_NO_MEMORY, "quantize: out of memory");
    lx_qt_session *s = NULL;
    lx_status st = begin(rules, MODE_PLAN, &s);
    if (st == LX_OK) {
        s->plan = plan;
        st = install(s);
        if (st != LX_OK) session_free(s);
    }
    if (st != LX_OK) {
        lx_qt_plan_free(plan);
        return st;
    }
    *out = s;
    return LX_OK;
}

static lx_status add_q(lx_qt_session *s, lx_array *q, lx_array *scale, const char *path) {
    if (s->nq == s->capq) {
        int cap = s->capq ? 2 * s->capq : 16;
        qentry *v = realloc(s->q, (size_t)cap * sizeof *v);
        if (!v) return lx_fail(LX_ERR_NO_MEMORY, "qt_begin_ptq: out of memory");
        s->q = v, s->capq = cap;
    }
    char *dir = lx_strdup(path);
    if (!dir) return lx_fail(LX_ERR_NO_MEMORY, "qt_begin_ptq: out of memory");
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else dir[0] = '\0';
    s->q[s->nq++] = (qentry){lx_retain(q), lx_retain(scale), dir, NULL, 0, 0};
    return LX_OK;
}

static lx_status add_static(lx_qt_session *s, const char *path, float v) {
    if (s->nst == s->capst) {
        int cap = s->capst ? 2 * s->capst : 16;
        sentry *e = realloc(s->st, (size_t)cap * sizeof *e);
        if (!e) return lx_fail(LX_ERR_NO_MEMORY, "qt_begin_ptq: out of memory");
        s->st = e, s->capst = cap;
    }
    /* "<dir>/<op>_<lhs|rhs>_scale": the parts kept apart, so an op finds its scale by comparing
     * names, never by building one */
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    size_t bl = strlen(base) - strlen("_lhs_scale");
    sentry e = {lx_strdup(path), lx_strdup(path), malloc(bl + 1), base[bl + 1] == 'l' ? 0 : 1, v};
    if (!e.path || !e.dir || !e.op) {
        free(e.path), free(e.dir), free(e.op);
        return lx_fail(LX_ERR_NO_MEMORY, "qt_begin_ptq: out of memory");
    }
    e.dir[slash ? (size_t)(slash - path) : 0] = '\0';
    memcpy(e.op, base, bl);
    e.op[bl] = '\0';
    s->st[s->nst++] = e;
    return LX_OK;
}

static int sentry_cmp(const void *a, const void *b) {
    return strcmp(((const sentry *)a)->dir, ((const sentry *)b)->dir);
}

/* Static scales grouped by directory; each int8 weight gets the range of those next to it. */
static void link_static(lx_qt_session *s) {
    if (s->nst > 1) qsort(s->st, (size_t)s->nst, sizeof *s->st, sentry_cmp);
    for (int k = 0; k < s->nq; k++) {
        qentry *q = &s->q[k];
        q->st0 = q->nst = 0;
        for (int i = 0; i < s->nst; i++) {
            if (strcmp(s->st[i].dir, q->dir) != 0) continue;
            if (!q->nst) q->st0 = i;
            q->nst++;
        }
    }
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

lx_status lx_qt_begin_ptq(const lx_qt_rules *rules, const lx_tree *quantized, lx_qt_session **out) {
    if (!out) return lx_null_out("qt_begin_ptq");
    if (!quantized) return lx_fail(LX_ERR_INVALID_ARGUMENT, "qt_begin_ptq: NULL tree");
    lx_qt_session *s = NULL;
    LX_TRY(begin(rules, LX_QT_INT8, &s));
    lx_flat f = {0};
    lx_status st = lx_tree_flatten(quantized, &f);
    for (size_t i = 0; st == LX_OK && i < f.len; i++) {
        lx_array *a = lx_value_leaf_array(&f.items[i].value);
        const char *p = f.items[i].path;
        if (!a) continue;
        if (a->dtype == LX_I8) {
            char sp[600];
            snprintf(sp, sizeof sp, "%s_scale", p);
            lx_array *sc = lx_value_leaf_array(lx_tree_find(quantized, sp));
            if (!sc || sc->dtype != LX_F32 || sc->ndim != a->ndim) {
                st = lx_fail(LX_ERR_NOT_FOUND,
                             "qt_begin_ptq: int8 values at '%s' have no float32 scale '%s' of the same rank", p, sp);
                break;
            }
            for (int d = 0; st == LX_OK && d < a->ndim; d++) {
                /* each scale entry covers ceil(q / ss) values (lx_qt_dequantize): a scale axis
                 * that no tiling gives would leave scales unread, values under the wrong one */
                int64_t q = a->shape[d], ss = sc->shape[d], cover = ss > 0 && q > 0 ? (q + ss - 1) / ss : 1;
                if (ss < 1 || (q == 0 ? ss != 1 : (ss > q || (q + cover - 1) / cover != ss)))
                    st = lx_fail(LX_ERR_SHAPE,
                                 "qt_begin_ptq: scale '%s' axis %d has %lld entries, which do not tile the %lld "
                                 "values of '%s' on that axis (1, one per value, or one per tile)",
                                 sp, d, (long long)ss, (long long)q, p);
            }
            if (st != LX_OK) break;
            st = add_q(s, a, sc, p);
        } else if (a->dtype == LX_F32 && a->size == 1 && (ends_with(p, "_lhs_scale") || ends_with(p, "_rhs_scale"))) {
            st = lx_is_abstract(a) ? LX_OK : add_static(s, p, lx_f32(a)[0]);
        }
    }
    lx_flat_free(&f);
    if (st == LX_OK) link_static(s);
    if (st == LX_OK) st = install(s);
    if (st != LX_OK) {
        session_free(s);
        return st;
    }
    *out = s;
    return LX_OK;
}

lx_status lx_qt_compare_begin(const lx_qt_rules *rules, lx_qt_session **out) {
    return begin_installed(rules, MODE_COMPARE, out);
}

int lx_qt_session_layers(lx_qt_session *s, const lx_qt_layer_error **out) {
    if (!s || !out) return 0;
    free(s->report);
    s->report = s->nlerr ? calloc((size_t)s->nlerr, sizeof *s->report) : NULL;
    *out = s->report;
    if (!s->report) return 0;
    for (int i = 0; i < s->nlerr; i++) {
        const lerr *e = &s->lerrs[i];
        s->report[i] = (lx_qt_layer_error){e->path, e->op, e->calls, e->err_sq, e->ref_sq,
                                           e->ref_sq > 0 ? sqrt(e->err_sq / e->ref_sq) : sqrt(e->err_sq)};
    }
    return s->nlerr;
}

int64_t lx_qt_session_quantized(const lx_qt_session *s) { return s ? s->quantized : 0; }
int64_t lx_qt_session_int8(const lx_qt_session *s) { return s ? s->int8_ops : 0; }
int64_t lx_qt_session_weights(const lx_qt_session *s) { return s ? s->nq : 0; }

void lx_qt_end(lx_qt_session *s) {
    if (!s) return;
    if (active == s) active = NULL;
    lx_prim_substitute_remove(s->sub_handle);
    lx_interceptor_remove(s->icpt_handle);
    session_free(s);
}
