/* Padding arithmetic shared by convolution and pooling, and the direct convolution's entry (not installed). */
#ifndef LINNX_CONV_INTERNAL_H
#define LINNX_CONV_INTERNAL_H

#include "linnx/nn.h"

/* lax.padtype_to_pads for one spatial axis: SAME makes out = ceil(in / stride) from the undilated
 * input size and the effective (dilated) window; explicit pads pass through. */
static inline void conv_pads(const lx_padding *p, int axis, int64_t in, int64_t eff_window, int64_t stride,
                             int64_t *lo, int64_t *hi) {
    if (!p || p->mode == LX_PAD_VALID) {
        *lo = *hi = 0;
    } else if (p->mode == LX_PAD_EXPLICIT) {
        *lo = p->lo[axis], *hi = p->hi[axis];
    } else {
        int64_t out = (in + stride - 1) / stride, total = (out - 1) * stride + eff_window - in;
        if (total < 0) total = 0;
        int64_t small = total / 2, big = total - small;
        *lo = p->mode == LX_PAD_SAME ? small : big;
        *hi = p->mode == LX_PAD_SAME ? big : small;
    }
}

/* Output length of a window sliding over a (dilated, padded) axis; 0 when the window does not fit. */
static inline int64_t conv_out_len(int64_t in, int64_t lhs_dil, int64_t lo, int64_t hi, int64_t eff_window,
                                   int64_t stride) {
    int64_t dil = in > 0 ? (in - 1) * lhs_dil + 1 : 0, padded = dil + lo + hi;
    return padded < eff_window ? 0 : (padded - eff_window) / stride + 1;
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
