/* int8 im2col for conv_general (quant.h): the rows the int8 GEMM multiplies by a conv kernel read
 * as its (taps * Cin, Cout) matrix. */
#include <string.h>

#include "conv_internal.h"
#include "linnx/quant.h"

lx_status lx_i8_conv_im2col(int nd, const int64_t *x_shape, const int8_t *x, const int64_t *kernel_shape,
                            const lx_conv_params *cp, int64_t *out_shape, int8_t *col) {
    const int ns = nd - 2;
    if (ns < 1 || ns > 3 || !x_shape || !kernel_shape || !out_shape)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_conv_im2col: need 1 to 3 spatial axes and the shapes, got rank %d", nd);
    const int64_t B = x_shape[0], Cin = x_shape[ns + 1];
    const int64_t kin = kernel_shape[ns], kout = kernel_shape[ns + 1];
    if (kin < 1 || Cin % kin != 0 || kout < 0 || (Cin / kin > 1 && kout % (Cin / kin) != 0))
        return lx_fail(LX_ERR_SHAPE, /* no grouping fits: bad geometry, as lx_conv_general says it */
                       "i8_conv_im2col: input features %lld must equal the kernel's input features %lld times a "
                       "group count that divides its output features %lld",
                       (long long)Cin, (long long)kin, (long long)kout);
    if (kin != Cin)
        return lx_fail(LX_ERR_UNSUPPORTED, "i8_conv_im2col: kernel input features %lld != %lld (grouped convolutions are not supported)",
                       (long long)kin, (long long)Cin);
    if (cp && cp->feature_group_count > 1)
        return lx_fail(LX_ERR_UNSUPPORTED, "i8_conv_im2col: feature_group_count %lld is not supported",
                       (long long)cp->feature_group_count);
    int64_t in[3] = {1, 1, 1}, win[3] = {1, 1, 1}, st[3] = {1, 1, 1}, dl[3] = {1, 1, 1}, lo[3] = {0, 0, 0},
            out[3] = {1, 1, 1};
    for (int d = 0; d < ns; d++) {
        if (cp && cp->lhs_dilation[d] > 1)
            return lx_fail(LX_ERR_UNSUPPORTED, "i8_conv_im2col: lhs_dilation is not supported");
        in[d] = x_shape[1 + d], win[d] = kernel_shape[d];
        st[d] = cp && cp->strides[d] > 0 ? cp->strides[d] : 1;
        dl[d] = cp && cp->rhs_dilation[d] > 0 ? cp->rhs_dilation[d] : 1;
        int64_t eff, hi = 0;
        if (in[d] < 0 || win[d] < 1 || !lx_mul_ok(win[d] - 1, dl[d], &eff) || !lx_add_ok(eff, 1, &eff))
            return lx_fail(LX_ERR_SHAPE, "i8_conv_im2col: bad size at spatial axis %d (input %lld, window %lld)", d,
                           (long long)in[d], (long long)win[d]);
        LX_TRY(conv_pads("i8_conv_im2col", cp ? &cp->padding : NULL, d, in[d], eff, st[d], &lo[d], &hi));
        LX_TRY(conv_out_len("i8_conv_im2col", d, in[d], 1, lo[d], hi, eff, st[d], &out[d]));
    }
    out_shape[0] = B;
    for (int d = 0; d < ns; d++) out_shape[1 + d] = out[d];
    out_shape[ns + 1] = kernel_shape[ns + 1];
    if (!col) return LX_OK;
    if (!x) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_conv_im2col: NULL input");
    /* row (b, o0, o1, o2), then per tap (t0, t1, t2) the Cin values at
     * i_d = o_d * stride_d + t_d * dilation_d - lo_d (zeros outside the input) */
    int8_t *row = col;
    for (int64_t b = 0; b < B; b++)
        for (int64_t o0 = 0; o0 < out[0]; o0++)
            for (int64_t o1 = 0; o1 < out[1]; o1++)
                for (int64_t o2 = 0; o2 < out[2]; o2++)
                    for (int64_t t0 = 0; t0 < win[0]; t0++) {
                        const int64_t i0 = o0 * st[0] + t0 * dl[0] - lo[0];
                        for (int64_t t1 = 0; t1 < win[1]; t1++) {
                            const int64_t i1 = o1 * st[1] + t1 * dl[1] - lo[1];
                            for (int64_t t2 = 0; t2 < win[2]; t2++, row += Cin) {
                                const int64_t i2 = o2 * st[2] + t2 * dl[2] - lo[2];
                                if (i0 < 0 || i0 >= in[0] || i1 < 0 || i1 >= in[1] || i2 < 0 || i2 >= in[2])
                                    memset(row, 0, (size_t)Cin);
                                else
                                    memcpy(row, x + (((b * in[0] + i0) * in[1] + i1) * in[2] + i2) * Cin, (size_t)Cin);
                            }
                        }
                    }
    return LX_OK;
}
