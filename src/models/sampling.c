/* jax.random.gumbel / categorical, lax.top_k and MaxText's token sampling (sampling.h). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/ops.h"
#include "linnx/sampling.h"
#include "../core/status_internal.h"

lx_array *lx_random_gumbel(lx_key key, int ndim, const int64_t *shape) {
    /* uniform(key, shape, float32, minval=finfo(float32).tiny, maxval=1.0) */
    lx_array *u = lx_random_uniform(key, ndim, shape, FLT_MIN, 1.0f);
    if (!u) return NULL;
    lx_array *g = lx_autorelease(lx_array_empty(LX_F32, ndim, shape));
    if (!g) return NULL;
    for (int64_t i = 0; i < u->size; i++) {
        float inner = (float)log((double)lx_f32(u)[i]);  /* log(u) in f32 */
        lx_f32(g)[i] = -(float)log((double)-inner);       /* -log(-log(u)) */
    }
    return g;
}

static bool check_logits(lx_array *logits, const char *what) {
    if (!logits) { /* a NULL with nothing pending is reported as itself (status.h) */
        (void)lx_null_input("%s: input is NULL", what);
        return false;
    }
    char buf[64];
    bool bad_shape = logits->ndim < 1 || logits->shape[logits->ndim - 1] < 1;
    if (logits->dtype != LX_F32 || bad_shape || lx_is_abstract(logits)) {
        /* status.h's codes: a dtype the op does not take, then shapes, then an abstract array */
        lx_status st = logits->dtype != LX_F32 ? LX_ERR_DTYPE : bad_shape ? LX_ERR_SHAPE : LX_ERR_INVALID_ARGUMENT;
        lx_fail(st, "%s: logits must be float32 (..., C) with C >= 1, got %s", what,
                lx_array_sig(logits, buf, sizeof buf));
        return false;
    }
    return true;
}

/* argmax over the last axis of (logits + noise), first index on ties; noise may be NULL. */
static lx_array *argmax_plus(lx_array *logits, const float *noise) {
    int64_t C = logits->shape[logits->ndim - 1], rows = logits->size / C;
    lx_array *out = lx_autorelease(lx_array_empty(LX_I32, logits->ndim - 1, logits->shape));
    if (!out) return NULL;
    for (int64_t r = 0; r < rows; r++) {
        const float *l = lx_f32(logits) + r * C;
        int32_t best = 0;
        float bv = 0;
        for (int64_t c = 0; c < C; c++) {
            float v = noise ? l[c] + noise[r * C + c] : l[c];
            if (c == 0 || v > bv || (isnan(v) && !isnan(bv))) {
                bv = v;
                best = (int32_t)c;
            }
        }
        lx_i32(out)[r] = best;
    }
    return out;
}

lx_array *lx_random_categorical(lx_key key, lx_array *logits) {
    if (!check_logits(logits, "categorical")) return NULL;
    lx_array *g = lx_random_gumbel(key, logits->ndim, logits->shape);
    return g ? argmax_plus(logits, lx_f32(g)) : NULL;
}

typedef struct {
    float v;
    int32_t i;
} vi;

/* lax.top_k's order, a total order on (value, index): NaN above every number, then larger values,
 * then (equal values, -0 == +0, NaN == NaN) the lower index first. */
static inline bool vi_before(vi x, vi y) {
    bool xn = isnan(x.v), yn = isnan(y.v);
    if (xn != yn) return xn;
    if (!xn && x.v != y.v) return x.v > y.v;
    return x.i < y.i;
}

/* The heap of the k best so far, its root the last of them in top_k order: a candidate enters
 * when it comes before the root. */
static void heap_down(vi *h, int64_t n, int64_t at) {
    for (;;) {
        int64_t l = 2 * at + 1, r = l + 1, m = at;
        if (l < n && vi_before(h[m], h[l])) m = l;
        if (r < n && vi_before(h[m], h[r])) m = r;
        if (m == at) return;
        vi t = h[at];
        h[at] = h[m];
        h[m] = t;
        at = m;
    }
}

/* The k first of row[0..C) in top_k order into h[0..k): a bounded heap over the row (O(C log k),
 * not a sort of the whole row), then the heap sorted in place. The order is total (indices are
 * distinct), so the result is the full sort's first k exactly. */
static void select_top_k(const float *row, int64_t C, int64_t k, vi *h) {
    for (int64_t c = 0; c < k; c++) h[c] = (vi){row[c], (int32_t)c};
    for (int64_t i = k / 2; i-- > 0;) heap_down(h, k, i);
    for (int64_t c = k; c < C; c++) {
        vi x = {row[c], (int32_t)c};
        if (vi_before(x, h[0])) {
            h[0] = x;
            heap_down(h, k, 0);
        }
    }
    for (int64_t n = k; n > 1; n--) { /* the root (last in order) to the end */
        vi t = h[0];
        h[0] = h[n - 1];
        h[n - 1] = t;
        heap_down(h, n - 1, 0);
    }
}

lx_status lx_top_k(lx_array *x, int64_t k, lx_array **values, lx_array **indices) {
    if (!values || !indices) return lx_fail(LX_ERR_INVALID_ARGUMENT, "top_k: values or indices is NULL");
    *values = *indices = NULL;
    if (!check_logits(x, "top_k")) return lx_last_status() != LX_OK ? lx_last_status() : LX_ERR_FAILED_INPUT;
    int64_t C = x->shape[x->ndim - 1], rows = x->size / C;
    if (k < 1 || k > C)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "top_k: k must be in 1..%lld (the last axis), got %lld", (long long)C,
                       (long long)k);
    int64_t shape[LX_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[x->ndim - 1] = k;
    lx_array *v = lx_autorelease(lx_array_empty(LX_F32, x->ndim, shape));
    lx_array *ix = lx_autorelease(lx_array_empty(LX_I32, x->ndim, shape));
    vi *tmp = malloc(sizeof *tmp * (size_t)k);
    if (!v || !ix || !tmp) {
        free(tmp);
        return lx_fail(LX_ERR_NO_MEMORY, "top_k: out of memory");
    }
    for (int64_t r = 0; r < rows; r++) {
        select_top_k(lx_f32(x) + r * C, C, k, tmp);
        for (int64_t j = 0; j < k; j++) {
            lx_f32(v)[r * k + j] = tmp[j].v;
            lx_i32(ix)[r * k + j] = tmp[j].i;
        }
    }
    free(tmp);
    *values = v;
    *indices = ix;
    return LX_OK;
}

lx_array *lx_sample_tokens(lx_key key, lx_array *logits, const lx_sampling *s) {
    if (!check_logits(logits, "sampling")) return NULL;
    if (!s) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "sampling: NULL settings");
        return NULL;
    }
    int64_t C = logits->shape[logits->ndim - 1];
    if (!(s->temperature >= 0) || isinf(s->temperature)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "sampling: temperature must be a finite number >= 0 (0 = greedy), got %g",
                s->temperature);
        return NULL;
    }
    if (s->top_k < 0 || s->top_k > C) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "sampling: top_k must be in 0..%lld (0 = all), got %lld", (long long)C,
                (long long)s->top_k);
        return NULL;
    }
    if (s->temperature == 0) return argmax_plus(logits, NULL); /* "greedy" */
    float t = (float)s->temperature;
    if (s->top_k == 0) return lx_random_categorical(key, lx_div(logits, lx_scalar(t))); /* "weighted" */
    lx_array *vals, *idx;
    if (lx_top_k(logits, s->top_k, &vals, &idx) != LX_OK) return NULL;
    lx_array *pick = lx_random_categorical(key, lx_div(vals, lx_scalar(t)));
    if (!pick) return NULL;
    lx_array *out = lx_autorelease(lx_array_empty(LX_I32, pick->ndim, pick->shape));
    if (!out) return NULL;
    for (int64_t r = 0; r < pick->size; r++) lx_i32(out)[r] = lx_i32(idx)[r * s->top_k + lx_i32(pick)[r]];
    return out;
}
