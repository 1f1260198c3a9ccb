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

typedef struct pool_rows_ctx {
    const pool_dims *p;
    const float *x;
    float *y;
    const int64_t *woff;
    int64_t insp;
    bool is_max, include_pad;
} pool_rows_ctx;

static int pool_rows(void *ctx, int64_t lo, int64_t hi) {
    const pool_rows_ctx *c = ctx;
    const pool_dims *p = c->p;
    const float *x = c->x;
    float *y = c->y;
    const int64_t *woff = c->woff, insp = c->insp, C = p->c;
    const bool is_max = c->is_max, include_pad = c->include_pad;
    for (int64_t row = lo; row < hi; row++) {
        int64_t n = row / p->outsp, rest = row % p->outsp, o[LX_MAX_DIMS], base = 0;
        bool whole = woff != NULL; /* the window lies inside the input */
        for (int i = p->nsp - 1; i >= 0; i--) {
            o[i] = rest % p->out[i], rest /= p->out[i];
            int64_t first = o[i] * p->stride[i] - p->lo[i];
            whole = whole && first >= 0 && first + p->win[i] <= p->in[i];
            base += first * p->pitch[i];
        }
        float *yr = y + row * C;
        for (int64_t ch = 0; ch < C; ch++) yr[ch] = is_max ? -INFINITY : 0.0f;
        int64_t count = 0;
        for (int64_t w = 0; w < p->ws; w++) {
            int64_t sp = base + (whole ? woff[w] : 0);
            if (!whole) {
                int64_t wr = w;
                bool inside = true;
                sp = 0;
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
            }
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
    return 0;
}

/* is_max: y = max over the window (padding ignored, -inf for a window of only padding);
 * else y = sum / (include_pad ? window size : in-bounds count). */
static void pool_forward(const pool_dims *p, const float *x, float *y, bool is_max, bool include_pad, int nt) {
    int64_t rows = p->n * p->outsp, insp = 1;
    for (int i = 0; i < p->nsp; i++) insp *= p->in[i];
    /* woff[w]: window cell w's offset in pixels from the window's first cell, so a window that lies
     * inside the input costs no division per cell (they were most of a 2x2 pool's time) */
    int64_t wbuf[64], *woff = p->ws <= 64 ? wbuf : malloc(sizeof(int64_t) * (size_t)p->ws);
    for (int64_t w = 0; woff && w < p->ws; w++) {
        int64_t wr = w, sp = 0;
        for (int i = p->nsp - 1; i >= 0; i--) sp += (wr % p->win[i]) * p->pitch[i], wr /= p->win[i];
        woff[w] = sp;
    }
    pool_rows_ctx c = {p, x, y, woff, insp, is_max, include_pad};
    lx_parallel_for(nt, rows, pool_rows, &c);
    if (woff != wbuf) free(woff);
}

/* The window geometry of (possibly unresolved) params over x; every check of the shape rule.
 * Resolves the padding into prm->lo/hi. */
static lx_status pool_plan(const char *op, const lx_array *x, lx_pool_params *prm, pool_dims *pp, int64_t *oshape) {
    char b[96];
    const char *xs = lx_shape_str(x->ndim, x->shape, b, sizeof b);
    const int nwin = prm->nwin;
    if (x->dtype != LX_F32)
        return lx_fail(LX_ERR_DTYPE, "%s: expected a float32 input, got %s%s", op, lx_dtype_name(x->dtype), xs);
    if (nwin < 1 || (x->ndim != nwin + 2 && x->ndim != nwin + 1))
        return lx_fail(LX_ERR_SHAPE, "%s: a window over %d spatial axes needs input (batch, spatial..., features) or (spatial..., features), got shape %s",
                       op, nwin, xs);
    lx_padding padding = {.mode = prm->resolve ? prm->mode : LX_PAD_EXPLICIT};
    if (padding.mode < LX_PAD_VALID || padding.mode > LX_PAD_EXPLICIT)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: unknown padding mode %d", op, (int)padding.mode);
    for (int i = 0; i < nwin; i++) padding.lo[i] = prm->lo[i], padding.hi[i] = prm->hi[i];
    int lead = x->ndim - nwin - 1; /* 1 with a batch axis, 0 without */
    pool_dims p = {.nsp = nwin, .n = lead ? x->shape[0] : 1, .c = x->shape[x->ndim - 1], .ws = 1, .outsp = 1};
    int64_t pitch = 1;
    for (int i = 0; i < x->ndim; i++) oshape[i] = x->shape[i];
    for (int i = nwin - 1; i >= 0; i--) {
        p.in[i] = x->shape[lead + i], p.win[i] = prm->window[i], p.stride[i] = prm->strides[i];
        if (p.win[i] < 1 || p.stride[i] < 1)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: window %lld and stride %lld at spatial axis %d must be positive (input %s)", op,
                           (long long)p.win[i], (long long)p.stride[i], i, xs);
        LX_TRY(conv_pads(op, &padding, i, p.in[i], p.win[i], p.stride[i], &p.lo[i], &p.hi[i]));
        if (p.lo[i] < 0 || p.hi[i] < 0)
            return lx_fail(LX_ERR_UNSUPPORTED, "%s: negative padding (%lld, %lld) at spatial axis %d is not supported", op,
                           (long long)p.lo[i], (long long)p.hi[i], i);
        LX_TRY(conv_out_len(op, i, p.in[i], 1, p.lo[i], p.hi[i], p.win[i], p.stride[i], &p.out[i]));
        p.pitch[i] = pitch;
        pitch *= p.in[i]; /* checked-arithmetic: a factor of x's size */
        oshape[lead + i] = p.out[i];
        if (!lx_mul_ok(p.ws, p.win[i], &p.ws) || !lx_mul_ok(p.outsp, p.out[i], &p.outsp))
            return lx_fail(LX_ERR_SHAPE, "%s: window %s or output size overflows int64 at spatial axis %d (input %s)", op,
                           lx_shape_str(nwin, prm->window, (char[96]){0}, 96), i, xs);
    }
    for (int i = 0; i < nwin; i++) prm->lo[i] = p.lo[i], prm->hi[i] = p.hi[i];
    prm->resolve = false;
    prm->mode = LX_PAD_EXPLICIT;
    *pp = p;
    return LX_OK;
}

static const char *pool_name(lx_prim_id id) { return id == LX_PRIM_MAX_POOL ? "max_pool" : "avg_pool"; }

LX_RULE(pool) {
    (void)nin;
    pool_dims p;
    LX_TRY(pool_plan(pool_name(id), in[0], params_, &p, av->shape));
    av->ndim = in[0]->ndim;
    av->dtype = LX_F32;
    return LX_OK;
}

LX_FWD(pool) {
    (void)nin, (void)saved;
    lx_pool_params prm = *(const lx_pool_params *)params_;
    const lx_array *x = in[0];
    lx_array *out = *outp;
    pool_dims p;
    int64_t oshape[LX_MAX_DIMS];
    LX_TRY(pool_plan(pool_name(id), x, &prm, &p, oshape));
    if (out->size > 0)
        pool_forward(&p, lx_f32(x), lx_f32(out), id == LX_PRIM_MAX_POOL, prm.count_include_pad,
                     (double)out->size * (double)p.ws >= (1 << 15) ? lx_num_threads() : 1);
    return LX_OK;
}

LX_ATTRS(pool) {
    (void)nin, (void)in;
    const lx_pool_params *p = params_;
    for (int i = 0; i < p->nwin; i++) scratch[2 * i] = p->lo[i], scratch[2 * i + 1] = p->hi[i];
    attrs[0] = LX_KW("window_shape", lx_ints_v(p->nwin, p->window));
    attrs[1] = LX_KW("strides", lx_ints_v(p->nwin, p->strides));
    attrs[2] = LX_KW("padding", lx_ints_v(2 * p->nwin, scratch));
    if (id == LX_PRIM_MAX_POOL) return 3;
    attrs[3] = LX_KW_BOOL("count_include_pad", p->count_include_pad);
    return 4;
}

static lx_array *pool_op(lx_prim_id id, lx_array *x, int nwin, const int64_t *window, const int64_t *strides,
                         const lx_padding *padding, bool include_pad) {
    lx_pool_params prm = {.nwin = nwin, .count_include_pad = include_pad, .resolve = true,
                          .mode = padding ? padding->mode : LX_PAD_VALID};
    if (!window && x) { /* a missing window is the builder's own argument error */
        char b[96];
        lx_fail(LX_ERR_SHAPE, "%s: a window over %d spatial axes needs input (batch, spatial..., features) or (spatial..., features), got shape %s",
                pool_name(id), nwin, lx_shape_str(x->ndim, x->shape, b, sizeof b));
        return NULL;
    }
    for (int i = 0; window && i < nwin && i < LX_MAX_DIMS; i++) {
        prm.window[i] = window[i];
        prm.strides[i] = strides ? strides[i] : 1;
        if (padding) prm.lo[i] = padding->lo[i], prm.hi[i] = padding->hi[i];
    }
    return lx_bind(id, &prm, 1, &x);
}

lx_array *lx_avg_pool(lx_array *x, int nwin, const int64_t *window, const int64_t *strides, const lx_padding *padding,
                      bool count_include_pad) {
    return pool_op(LX_PRIM_AVG_POOL, x, nwin, window, strides, padding, count_include_pad);
}

lx_array *lx_max_pool(lx_array *x, int nwin, const int64_t *window, const int64_t *strides, const lx_padding *padding) {
    return pool_op(LX_PRIM_MAX_POOL, x, nwin, window, strides, padding, true);
}
