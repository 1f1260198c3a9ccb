/* Helpers shared by the op tests: pool-owned inputs, deterministic values and a numpy
 * broadcasting index written independently of src/ops (odometer over the output, right-aligned
 * dims, size-1 dims read at 0). */
#ifndef LX_OPS_UTIL_H
#define LX_OPS_UTIL_H

#include "lx_test.h"
#include "linnx/ops.h"

/* A pool-owned f32 array with the given values (NULL data: zeros). */
static inline lx_array *T_f32(int ndim, const int64_t *shape, const float *data) {
    lx_array *a = data ? lx_array_from_f32(ndim, shape, data) : lx_array_new(LX_F32, ndim, shape);
    return lx_autorelease(a);
}
static inline lx_array *T_i32(int ndim, const int64_t *shape, const int32_t *data) {
    return lx_autorelease(lx_array_from_data(LX_I32, ndim, shape, data));
}
static inline lx_array *T_typed(lx_dtype dt, int ndim, const int64_t *shape, const void *data) {
    return lx_autorelease(lx_array_from_data(dt, ndim, shape, data));
}
static inline lx_array *T_abstract(lx_dtype dt, int ndim, const int64_t *shape) {
    return lx_autorelease(lx_array_abstract(dt, ndim, shape));
}

/* Deterministic values in [lo, hi) from a small LCG, so tests need no random module. */
static inline lx_array *T_rand(int ndim, const int64_t *shape, float lo, float hi, uint32_t seed) {
    lx_array *a = lx_autorelease(lx_array_empty(LX_F32, ndim, shape));
    uint32_t s = seed * 2654435761u + 1u;
    for (int64_t i = 0; i < a->size; i++) {
        s = s * 1664525u + 1013904223u;
        lx_f32(a)[i] = lo + (hi - lo) * (float)((s >> 8) * (1.0 / 16777216.0));
    }
    return a;
}

/* Flat index into an input of shape (in_nd, in_shape) for flat output index `o` of shape
 * (out_nd, out_shape) under numpy broadcasting. */
static inline int64_t T_bcast_index(int64_t o, int out_nd, const int64_t *out_shape, int in_nd,
                                    const int64_t *in_shape) {
    int64_t idx[LX_MAX_DIMS];
    for (int d = out_nd - 1; d >= 0; d--) {
        idx[d] = o % out_shape[d];
        o /= out_shape[d];
    }
    int64_t flat = 0;
    for (int j = 0; j < in_nd; j++) {
        int d = j + (out_nd - in_nd);
        flat = flat * in_shape[j] + (in_shape[j] == 1 ? 0 : idx[d]);
    }
    return flat;
}

/* Compare an f32 array to double references: |got - want| <= atol + rtol * |want|, NaN == NaN,
 * equal infinities equal. Reports the first mismatch. */
static inline bool T_close(const lx_array *a, const double *want, int64_t n, double rtol, double atol) {
    if (!a || a->dtype != LX_F32 || a->size != n) {
        fprintf(stderr, "  T_close: bad array (%p, size %lld vs %lld)\n", (const void *)a,
                a ? (long long)a->size : -1LL, (long long)n);
        return false;
    }
    for (int64_t i = 0; i < n; i++) {
        double g = lx_f32(a)[i], w = want[i];
        if (isnan(w) && isnan(g)) continue;
        if (isinf(w) && g == w) continue;
        if (!(fabs(g - w) <= atol + rtol * fabs(w))) {
            fprintf(stderr, "  T_close: element %lld: got %.9g want %.9g\n", (long long)i, g, w);
            return false;
        }
    }
    return true;
}

/* An observer that records the last few events' names and a copy of one int attr. */
typedef struct T_seen {
    int count;
    char names[64][24];
    int ninputs[64];
    char attrs[64][160]; /* "name=value;name=value" with lx_value_str */
} T_seen;

static inline void T_record(const lx_prim_event *ev, void *user) {
    T_seen *s = user;
    if (s->count >= 64) return;
    int k = s->count++;
    snprintf(s->names[k], sizeof s->names[k], "%s", ev->op);
    s->ninputs[k] = ev->ninputs;
    size_t n = 0;
    s->attrs[k][0] = '\0';
    for (int i = 0; i < ev->nattrs; i++) {
        char buf[96];
        n += (size_t)snprintf(s->attrs[k] + n, n < sizeof s->attrs[k] ? sizeof s->attrs[k] - n : 0, "%s%s=%s",
                              i ? ";" : "", ev->attrs[i].name, lx_value_str(&ev->attrs[i].value, buf, sizeof buf));
    }
}

#endif
