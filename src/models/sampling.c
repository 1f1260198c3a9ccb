/* jax.random.gumbel / categorical, lax.top_k and MaxText's token sampling (sampling.h). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/ops.h"
#include "linnx/sampling.h"

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
    if (!logits) return false;
    char buf[64];
    if (logits->dtype != LX_F32 || logits->ndim < 1 || logits->shape[logits->ndim - 1] < 1 || lx_is_abstract(logits)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: logits must be float32 (..., C) with C >= 1, got %s", what,
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

static int vi_cmp(const void *a, const void *b) {
    const vi *x = a, *y = b;
    if (x->v > y->v || (isnan(x->v) && !isnan(y->v))) return -1;
    if (x->v < y->v || (isnan(y->v) && !isnan(x->v))) return 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

lx_status lx_top_k(lx_array *x, int64_t k, lx_array **values, lx_array **indices) {
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
    vi *tmp = malloc(sizeof *tmp * (size_t)C);
    if (!v || !ix || !tmp) {
        free(tmp);
        return lx_fail(LX_ERR_NO_MEMORY, "top_k: out of memory");
    }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < C; c++) tmp[c] = (vi){lx_f32(x)[r * C + c], (int32_t)c};
        qsort(tmp, (size_t)C, sizeof *tmp, vi_cmp);
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
