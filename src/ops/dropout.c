/* Dropout: a bernoulli keep-mask from a key, scaled by 1/keep_prob (flax/linen/stochastic.py). */
#include <math.h>
#include <string.h>

#include "linnx/dropout.h"
#include "op_internal.h"

static bool rate_ok(double rate) { return rate >= 0.0 && rate <= 1.0; }

/* The mask shape: `shape` with every broadcast axis set to 1. */
static bool mask_shape(const char *op, int ndim, const int64_t *shape, int nb, const int64_t *bd,
                       int64_t *out) {
    char buf[96];
    for (int i = 0; i < ndim; i++) out[i] = shape[i];
    if (nb < 0 || (nb > 0 && !bd)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: invalid broadcast_dims", op);
        return false;
    }
    for (int i = 0; i < nb; i++) {
        int64_t d = bd[i] < 0 ? bd[i] + ndim : bd[i];
        if (d < 0 || d >= ndim) {
            lx_fail(LX_ERR_SHAPE, "%s: broadcast dim %lld is out of range for shape %s", op,
                    (long long)bd[i], lx_shape_str(ndim, shape, buf, sizeof buf));
            return false;
        }
        out[d] = 1;
    }
    return true;
}

lx_array *lx_dropout_mask(lx_key key, double rate, int ndim, const int64_t *shape, int nbroadcast,
                          const int64_t *broadcast_dims) {
    if (!rate_ok(rate)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "dropout: rate must be in [0, 1], got %g", rate);
        return NULL;
    }
    if (ndim < 0 || ndim > LX_MAX_DIMS || (ndim > 0 && !shape)) {
        lx_fail(LX_ERR_SHAPE, "dropout: invalid shape (%d dimensions)", ndim);
        return NULL;
    }
    int64_t ms[LX_MAX_DIMS];
    if (!mask_shape("dropout", ndim, shape, nbroadcast, broadcast_dims, ms)) return NULL;
    return lx_random_bernoulli(key, (float)(1.0 - rate), ndim, ms);
}

/* out[i] = mask[broadcast index of i] ? x[i] / keep : 0 over row-major x. */
static void dropout_forward(const float *x, const uint8_t *mask, float keep, int ndim,
                            const int64_t *shape, const int64_t *mshape, int64_t n, float *out) {
    int64_t idx[LX_MAX_DIMS] = {0};
    int64_t mstride[LX_MAX_DIMS];
    int64_t st = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        mstride[d] = mshape[d] == 1 ? 0 : st;
        st *= mshape[d];
    }
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        out[i] = mask[m] ? x[i] / keep : 0.0f;
        for (int d = ndim - 1; d >= 0; d--) {
            m += mstride[d];
            if (++idx[d] < shape[d]) break;
            m -= mstride[d] * shape[d];
            idx[d] = 0;
        }
    }
}

/* dropout's primitive: (x, keep mask of the broadcast mask shape) -> x / keep_prob where kept. */
LX_RULE(dropout) {
    LX_UNUSED_RULE;
    const lx_array *x = in[0], *mask = in[1];
    const double rate = ((const lx_dropout_params *)params_)->rate;
    if (x->dtype != LX_F32) return lx_fail(LX_ERR_DTYPE, "dropout: expected float32, got %s", lx_dtype_name(x->dtype));
    if (!rate_ok(rate)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "dropout: rate must be in [0, 1], got %g", rate);
    bool ok = mask->dtype == LX_BOOL && mask->ndim == x->ndim;
    for (int i = 0; ok && i < x->ndim; i++) ok = mask->shape[i] == x->shape[i] || mask->shape[i] == 1;
    if (!ok) {
        char b1[96], b2[96];
        return lx_fail(LX_ERR_SHAPE, "dropout: keep mask %s%s does not broadcast to input shape %s",
                       lx_dtype_name(mask->dtype), lx_shape_str(mask->ndim, mask->shape, b1, sizeof b1),
                       lx_shape_str(x->ndim, x->shape, b2, sizeof b2));
    }
    lx_aval_like(av, LX_F32, x);
    return LX_OK;
}

LX_FWD(dropout) {
    LX_UNUSED_FWD;
    const lx_array *x = in[0], *mask = in[1];
    const double rate = ((const lx_dropout_params *)params_)->rate;
    dropout_forward(lx_f32(x), lx_bool(mask), (float)(1.0 - rate), x->ndim, x->shape, mask->shape, x->size,
                    lx_f32(*outp));
    return LX_OK;
}

/* The builder draws the keep mask (the random part) and binds dropout on (x, mask). */
lx_array *lx_dropout(lx_array *x, double rate, lx_key key, int nbroadcast,
                     const int64_t *broadcast_dims, bool deterministic) {
    const lx_dropout_params prm = {rate};
    if (!x) return lx_bind(LX_PRIM_DROPOUT, &prm, 2, (lx_array *const[]){x, NULL});
    if (x->dtype != LX_F32) {
        lx_fail(LX_ERR_DTYPE, "dropout: expected float32, got %s", lx_dtype_name(x->dtype));
        return NULL;
    }
    if (!rate_ok(rate)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "dropout: rate must be in [0, 1], got %g", rate);
        return NULL;
    }
    int64_t ms[LX_MAX_DIMS];
    if (!mask_shape("dropout", x->ndim, x->shape, nbroadcast, broadcast_dims, ms)) return NULL;
    if (rate == 0.0 || deterministic) return lx_autorelease(lx_retain(x));
    bool abstract = lx_is_abstract(x);
    if (rate == 1.0) {
        lx_array *out = lx_op_result(LX_F32, x->ndim, x->shape, abstract);
        if (out && !abstract) memset(out->data, 0, lx_array_nbytes(out));
        return out;
    }
    lx_array *mask = abstract ? lx_op_result(LX_BOOL, x->ndim, ms, true)
                              : lx_random_bernoulli(key, (float)(1.0 - rate), x->ndim, ms);
    if (!mask) return NULL;
    return lx_bind(LX_PRIM_DROPOUT, &prm, 2, (lx_array *const[]){x, mask});
}
