/* Padding arithmetic shared by convolution and pooling, and the direct convolution's entry (not installed). */
#ifndef LINNX_CONV_INTERNAL_H
#define LINNX_CONV_INTERNAL_H

#include "../core/checked.h"
#include "linnx/nn.h"

/* lax.padtype_to_pads for one spatial axis: SAME makes out = ceil(in / stride) from the undilated
 * input size and the effective (dilated) window; explicit pads pass through. Checked arithmetic
 * (checked-arithmetic rule, src/core/checked.h): LX_ERR_SHAPE naming `op` on overflow. */
static inline lx_status conv_pads(const char *op, const lx_padding *p, int axis, int64_t in, int64_t eff_window,
                                  int64_t stride, int64_t *lo, int64_t *hi) {
    if (!p || p->mode == LX_PAD_VALID) {
        *lo = *hi = 0;
    } else if (p->mode == LX_PAD_EXPLICIT) {
        *lo = p->lo[axis], *hi = p->hi[axis];
    } else {
        /* ceil(in / stride) without forming in + stride - 1; (out - 1) * stride <= in - 1 */
        int64_t out = in > 0 ? (in - 1) / stride + 1 : 0, total;
        if (!lx_add_ok((out - 1) * stride, eff_window, &total) || !lx_sub_ok(total, in, &total))
            return lx_fail(LX_ERR_SHAPE, "%s: SAME padding of input size %lld for window %lld, stride %lld at spatial axis %d overflows int64",
                           op, (long long)in, (long long)eff_window, (long long)stride, axis);
        if (total < 0) total = 0;
        int64_t small = total / 2, big = total - small;
        *lo = p->mode == LX_PAD_SAME ? small : big;
        *hi = p->mode == LX_PAD_SAME ? big : small;
    }
    return LX_OK;
}

/* Output length of a window sliding over a (dilated, padded) axis; 0 when the window does not fit.
 * Fails (LX_ERR_SHAPE, naming `op`, the argument and its values) when the dilated, padded length
 * overflows int64 or negative padding removes more than the whole axis, as lax's conv shape
 * rule does ("Negative padding is larger than the size of the corresponding dimension"). Every
 * partial sum dil + lo, dil + hi, dil + lo + hi fits in int64 afterwards, which bounds the index
 * arithmetic of the kernels (o * stride + t * rhs_dil - lo <= dil + hi). */
static inline lx_status conv_out_len(const char *op, int axis, int64_t in, int64_t lhs_dil, int64_t lo, int64_t hi,
                                     int64_t eff_window, int64_t stride, int64_t *out) {
    int64_t dil = 0, with_lo, with_hi, padded;
    if (in > 0 && (!lx_mul_ok(in - 1, lhs_dil, &dil) || !lx_add_ok(dil, 1, &dil)))
        return lx_fail(LX_ERR_SHAPE, "%s: input size %lld dilated by lhs_dilation %lld at spatial axis %d overflows int64",
                       op, (long long)in, (long long)lhs_dil, axis);
    if (!lx_add_ok(dil, lo, &with_lo) || !lx_add_ok(dil, hi, &with_hi) || !lx_add_ok(with_lo, hi, &padded))
        return lx_fail(LX_ERR_SHAPE, "%s: padding (%lld, %lld) of dilated input size %lld at spatial axis %d overflows int64",
                       op, (long long)lo, (long long)hi, (long long)dil, axis);
    if (padded < 0)
        return lx_fail(LX_ERR_SHAPE, "%s: Negative padding is larger than the size of the corresponding dimension: got padding (%lld, %lld) for input size %lld at spatial axis %d",
                       op, (long long)lo, (long long)hi, (long long)in, axis);
    *out = padded < eff_window ? 0 : (padded - eff_window) / stride + 1;
    return LX_OK;
}

/* A 2-D, ungrouped, undilated-input convolution whose window holds few values: the direct path
 * (conv_direct.c). NHWC x, HWIO w, NHWC y; pads may be negative (crops). */
#define CONV_DIRECT_MAX_TAPS 32 /* kh * kw * cin at most this: beyond it im2col + GEMM wins */
typedef struct {
    int64_t n, h, w, cin, cout, kh, kw, oh, ow, taps;
    int64_t sh, sw, dh, dw, lo_h, lo_w; /* strides, kernel dilation, low pads */
} conv2d_direct;

/* What conv_direct.c prepares for the row kernels (kernels.h), one per call. */
typedef struct conv_direct_plan {
    const conv2d_direct *c;
    int64_t wp, rowlen, cop; /* padded row width, floats per row buffer, C_out rounded up to 16 */
    int64_t koff[CONV_DIRECT_MAX_TAPS];
    const float *w;          /* taps x cop, zero-padded columns: tiles load whole vectors */
} conv_direct_plan;

lx_status conv2d_direct_forward(const conv2d_direct *c, const float *x, const float *w, float *y);

#endif
