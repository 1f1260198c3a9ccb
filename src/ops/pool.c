/* flax.linen.avg_pool / max_pool: lax.reduce_window over the spatial axes of channels-last input.
 * Each output position sums (or maxes) its window one input pixel at a time, the channel vector
 * innermost and contiguous, so the inner loop vectorises over channels. */
#include <math.h>
#include <stdlib.h>

#include "conv_internal.h"
#include "linnx/nn.h"
#include "linnx/threads.h"
#include "op_internal.h"

typedef struct {
    int nsp;
    int64_t n, c, ws, outsp;
    int64_t in[LX_MAX_DIMS], out[LX_MAX_DIMS], win[LX_MAX_DIMS], stride[LX_MAX_DIMS], lo[LX_MAX_DIMS],
        hi[LX_MAX_DIMS], pitch[LX_MAX_DIMS];
} pool_dims;

/* is_max: y = max over the window (padding ignored, -inf for a window of only padding);
 * else y = sum / (include_pad ? window size : in-bounds count). */
static void pool_forward(const pool_dims *p, const float *x, float *y, bool is_max, bool include_pad, int nt) {
    int64_t rows = p->n * p->outsp, C = p->c, insp = 1;
    for (int i = 0; i < p->nsp; i++) insp *= p->in[i];
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        int64_t n = row / p->outsp, rest = row % p->outsp, o[LX_MAX_DIMS];
        for (int i = p->nsp - 1; i >= 0; i--) o[i] = rest % p->out[i], rest /= p->out[i];
        float *yr = y + row * C;
        for (int64_t ch = 0; ch < C; ch++) yr[ch] = is_max ? -INFINITY : 0.0f;
        int64_t count = 0;
        for (int64_t w = 0; w < p->ws; w++) {
            int64_t wr = w, sp = 0;
            bool inside = true;
            for (int i = p->nsp - 1; i >= 0; i--) {
                int64_t pos = o[i] * p->stride[i] + wr % p->win[i] - p->lo[i];
                wr /= p->win[i];
                if (pos < 0 || pos >= p->in[i]) {
                    inside = false;
                    break;
                }
                sp += pos * p->pitch[i];
            }
            if (!inside) continue;
            count++;
            const float *xr = x + (n * insp + sp) * C;
            if (is_max) {
#pragma omp simd
                for (int64_t ch = 0; ch < C; ch++) yr[ch] = xr[ch] > yr[ch] || isnan(xr[ch]) ? xr[ch] : yr[ch];
            } else {
#pragma omp simd
                for (int64_t ch = 0; ch < C; ch++) yr[ch] += xr[ch];
            }
        }
        if (!is_max) {
            float div = (float)(include_pad ? p->ws : count);
            for (int64_t ch = 0; ch < C; ch++) yr[ch] = yr[ch] / div;
        }
    }
}

static lx_array *pool_op(const char *op, lx_array *x, int nwin, const int64_t *window, const int64_t *strides,
                         const lx_padding *padding, bool is_max, bool include_pad) {
    LX_OP_INPUTS(op, x);
    char b[96];
    const char *xs = lx_shape_str(x->ndim, x->shape, b, sizeof b);
    if (x->dtype != LX_F32) {
        lx_fail(LX_ERR_DTYPE, "%s: expected a float32 input, got %s%s", op, lx_dtype_name(x->dtype), xs);
        return NULL;
    }
    if (nwin < 1 || !window || (x->ndim != nwin + 2 && x->ndim != nwin + 1)) {
        lx_fail(LX_ERR_SHAPE, "%s: a window over %d spatial axes needs input (batch, spatial..., features) or (spatial..., features), got shape %s",
                op, nwin, xs);
        return NULL;
    }
    if (padding && (padding->mode < LX_PAD_VALID || padding->mode > LX_PAD_EXPLICIT)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: unknown padding mode %d", op, (int)padding->mode);
        return NULL;
    }
    int lead = x->ndim - nwin - 1; /* 1 with a batch axis, 0 without */
    pool_dims p = {.nsp = nwin, .n = lead ? x->shape[0] : 1, .c = x->shape[x->ndim - 1], .ws = 1, .outsp = 1};
    int64_t oshape[LX_MAX_DIMS], pads[2 * LX_MAX_DIMS], pitch = 1;
    for (int i = 0; i < x->ndim; i++) oshape[i] = x->shape[i];
    for (int i = nwin - 1; i >= 0; i--) {
        p.in[i] = x->shape[lead + i], p.win[i] = window[i], p.stride[i] = strides ? strides[i] : 1;
        if (p.win[i] < 1 || p.stride[i] < 1) {
            lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: window %lld and stride %lld at spatial axis %d must be positive (input %s)", op,
                    (long long)p.win[i], (long long)p.stride[i], i, xs);
            return NULL;
        }
        if (conv_pads(op, padding, i, p.in[i], p.win[i], p.stride[i], &p.lo[i], &p.hi[i]) != LX_OK) return NULL;
        if (p.lo[i] < 0 || p.hi[i] < 0) {
            lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: negative padding (%lld, %lld) at spatial axis %d is not supported", op,
                    (long long)p.lo[i], (long long)p.hi[i], i);
            return NULL;
        }
        if (conv_out_len(op, i, p.in[i], 1, p.lo[i], p.hi[i], p.win[i], p.stride[i], &p.out[i]) != LX_OK) return NULL;
        p.pitch[i] = pitch;
        pitch *= p.in[i]; /* checked-arithmetic: a factor of x's size */
        oshape[lead + i] = p.out[i];
        if (!lx_mul_ok(p.ws, p.win[i], &p.ws) || !lx_mul_ok(p.outsp, p.out[i], &p.outsp)) {
            lx_fail(LX_ERR_SHAPE, "%s: window %s or output size overflows int64 at spatial axis %d (input %s)", op,
                    lx_shape_str(nwin, window, (char[96]){0}, 96), i, xs);
            return NULL;
        }
        pads[2 * i] = p.lo[i], pads[2 * i + 1] = p.hi[i];
    }
    lx_array *out = lx_op_result(LX_F32, x->ndim, oshape, lx_is_abstract(x));
    if (!out) return NULL;
    if (!lx_is_abstract(x) && out->size > 0)
        pool_forward(&p, lx_f32(x), lx_f32(out), is_max, include_pad, (double)out->size * (double)p.ws >= (1 << 15) ? lx_num_threads() : 1);
    int64_t strd[LX_MAX_DIMS];
    for (int i = 0; i < nwin; i++) strd[i] = p.stride[i];
    lx_kwarg attrs[] = {LX_KW("window_shape", lx_ints_v(nwin, window)), LX_KW("strides", lx_ints_v(nwin, strd)),
                        LX_KW("padding", lx_ints_v(2 * nwin, pads)), LX_KW_BOOL("count_include_pad", include_pad)};
    lx_pool_params prm = {.nwin = nwin, .count_include_pad = include_pad};
    for (int i = 0; i < nwin; i++)
        prm.window[i] = p.win[i], prm.strides[i] = p.stride[i], prm.lo[i] = p.lo[i], prm.hi[i] = p.hi[i];
    lx_prim_record(is_max ? LX_PRIM_MAX_POOL : LX_PRIM_AVG_POOL, &prm, 1, &x, out, is_max ? 3 : 4, attrs);
    return out;
}

lx_array *lx_avg_pool(lx_array *x, int nwin, const int64_t *window, const int64_t *strides, const lx_padding *padding,
                      bool count_include_pad) {
    return pool_op("avg_pool", x, nwin, window, strides, padding, false, count_include_pad);
}

lx_array *lx_max_pool(lx_array *x, int nwin, const int64_t *window, const int64_t *strides, const lx_padding *padding) {
    return pool_op("max_pool", x, nwin, window, strides, padding, true, true);
}
