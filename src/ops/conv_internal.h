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

/* The geometry of one conv_general call (conv.c's conv_plan): channels-last x (n, in..., cin), HWIO
 * kernel (k..., cin / groups, cout), pads in the dilated input, pitch[i] = elements of x's spatial
 * axes after axis i (one input position = cin floats). */
typedef struct {
    int nsp;
    int64_t n, cin, cout, groups, ks, outsp, insp;
    int64_t in[LX_MAX_DIMS], out[LX_MAX_DIMS], k[LX_MAX_DIMS], pitch[LX_MAX_DIMS];
    int64_t stride[LX_MAX_DIMS], lo[LX_MAX_DIMS], hi[LX_MAX_DIMS], ldil[LX_MAX_DIMS], rdil[LX_MAX_DIMS];
} conv_dims;

/* conv_general's shape rule (conv.c): every check, the geometry in *c, the output shape in oshape. */
lx_status conv_plan(const lx_array *x, const lx_array *kernel, const lx_conv_params *p, conv_dims *c, int64_t *oshape);

/* ---- the indirect convolution (conv_igemm.c; register tiles in conv_avx2.c) ----
 * Forward, input gradient and kernel gradient without a patch matrix: the tiles read the image in
 * place through a table of row pointers (XNNPACK's indirection buffer). Available when the kernel
 * set in force is AVX2 or AVX-512 on an x86 build; the callers keep im2col + GEMM otherwise. */
#define CONV_MR 6
#define CONV_NR 16
bool conv_igemm_available(void);
/* y = conv(x, w): any geometry (strides, both dilations, pads, groups). */
lx_status conv_igemm_forward(const conv_dims *c, const float *x, const float *w, float *y);
/* dx = the input gradient (any geometry); NULL skips it. */
lx_status conv_igemm_dx(const conv_dims *c, const float *dy, const float *w, float *dx);
/* dw = the kernel gradient (any geometry). */
lx_status conv_igemm_dw(const conv_dims *c, const float *x, const float *dy, float *dw);

/* C[0:mr, 0:nr] (+= when acc, else =) sum over taps t < ntaps and k < kc of
 * ind[t * CONV_MR + i][k] * bp[(t * kc + k) * CONV_NR + j]; all CONV_MR pointers of a tap readable
 * for kc floats; bp 32-byte aligned. */
void conv_igemm_ukr_avx2(int mr, int nr, int64_t ntaps, int64_t kc, const float *const *ind, const float *bp,
                         float *C, int64_t ldc, bool acc);
/* The AVX-512 tiles (conv_avx512.c): conv_igemm_ukr_avx2's contract with 8-row tables
 * (ind[t * CONV512_MR + i]) and 32-column slivers (bp 64-byte aligned); nr < 32 stores masked. */
#define CONV512_MR 8
#define CONV512_NR 32
void conv_igemm_ukr_avx512(int mr, int nr, int64_t ntaps, int64_t kc, const float *const *ind, const float *bp,
                           float *C, int64_t ldc, bool acc);
/* The kernel gradient in HWIO order: C[i * ldc + j] += sum over r < rows of
 * ind[r * ks + t][ci0 + i] * dy[r * ldy + j], i < 8, j < nc <= 32. */
void conv_dw_ukr_avx512(int64_t rows, const float *const *ind, int64_t ks, int64_t t, int64_t ci0, const float *dy,
                        int64_t ldy, int nc, float *C, int64_t ldc);
/* C[i, j] += sum over r < rows of a[r * lda + i] * b_j(r), i < mr, j < nr (8 or 16), where
 * b_j(r) = ind[r * ks + t0][o0 + j] for j < 8 and ind[r * ks + t1][o1 + j - 8] above. */
void conv_dw_ukr_avx2(int mr, int nr, int64_t rows, const float *a, int64_t lda, const float *const *ind, int64_t ks,
                      int64_t t0, int64_t o0, int64_t t1, int64_t o1, float *C, int64_t ldc);
/* acc[(t * cig + ci) * cog + co] += ind[r * ks + t][ci] * dy[r * ldy + co] over r < rows: the
 * kernel gradient when the patch has few columns. */
void conv_dw_rows_avx2(int64_t rows, const float *const *ind, int64_t ks, int64_t cig, const float *dy, int64_t ldy,
                       int64_t cog, float *acc);

#endif
