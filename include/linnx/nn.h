/* linnx/nn.h - the math of Flax's neural layers: softmax, normalisation, convolution, pooling,
 * cross-entropy, attention, dropout's scaling.
 *
 * Conventions as in linalg.h: float32 in (masks bool, labels int32), results owned by the innermost
 * pool, NULL + a message naming the op and the shapes on failure, a NULL input propagates the first
 * failure, an abstract input gives an abstract output. Layouts are Flax's: channels last (NHWC),
 * kernels HWIO, attention (batch..., seq, heads, head_dim). Each op reports a primitive of the same
 * name; optional inputs that are absent appear as NULL entries in the event's inputs.
 */
#ifndef LINNX_NN_H
#define LINNX_NN_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/array.h"
#include "linnx/dropout.h" /* lx_dropout_apply was declared here */

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* ---- softmax ---- */
/* exp(x - max) / sum over `axis` (negative counts from the end), and its log
 * (x - max - log(sum(exp(x - max)))). Attribute: axis. */
lx_array *lx_softmax(lx_array *x, int axis);
lx_array *lx_log_softmax(lx_array *x, int axis);

/* ---- normalisation (Flax LayerNorm / RMSNorm) ----
 * layer_norm over the `naxes` axes listed (NULL/0: the last axis), which must be the trailing axes
 * of x in some order: mean = mean(x), var = max(0, mean(x^2) - mean^2),
 * y = (x - mean) * (rsqrt(var + epsilon) * scale) + bias. scale and bias (each optional) have the
 * shape of a suffix of the normalised axes (Flax's feature axes: (x.shape[-1],) by default) and
 * broadcast over the rest. Statistics are accumulated in double. Attributes: epsilon, axes. */
lx_array *lx_layer_norm(lx_array *x, lx_array *scale, lx_array *bias, float epsilon, int naxes,
                        const int64_t *axes);
/* RMSNorm over the last axis: y = x * (rsqrt(mean(x^2) + epsilon) * scale); scale (optional) has
 * shape (x.shape[-1],). Attribute: epsilon. */
lx_array *lx_rms_norm(lx_array *x, lx_array *scale, float epsilon);

/* ---- convolution (lax.conv_general_dilated with NHWC / HWIO / NHWC) ---- */
typedef enum lx_pad_mode {
    LX_PAD_VALID = 0,  /* no padding */
    LX_PAD_SAME,       /* out = ceil(in / stride); the odd element of padding goes high */
    LX_PAD_SAME_LOWER, /* as SAME, the odd element goes low */
    LX_PAD_EXPLICIT    /* lo[i], hi[i] per spatial axis (negative crops) */
} lx_pad_mode;

typedef struct lx_padding {
    lx_pad_mode mode;
    int64_t lo[LX_MAX_DIMS], hi[LX_MAX_DIMS];
} lx_padding;

/* Zero fields mean the default: strides 1, VALID padding, no dilation, one feature group. */
typedef struct lx_conv_params {
    int64_t strides[LX_MAX_DIMS];
    lx_padding padding;
    int64_t lhs_dilation[LX_MAX_DIMS]; /* input dilation (transposed convolution) */
    int64_t rhs_dilation[LX_MAX_DIMS]; /* kernel dilation (atrous) */
    int64_t feature_group_count;
} lx_conv_params;

/* x: (N, spatial..., C_in); kernel: (spatial..., C_in / groups, C_out); 1 to 3 spatial axes (any
 * count the dims allow works). Output (N, out_spatial..., C_out). SAME pads from the undilated input
 * size and the dilated kernel, as lax.conv_general_dilated. params NULL: all defaults. A 1x1,
 * stride-1, unpadded, ungrouped convolution is one GEMM on x in place; otherwise the AVX2 and
 * AVX-512 kernel sets run direct or indirect-GEMM tiles (no patch matrix) and the generic set
 * im2col + GEMM (docs/kernels.md, Convolution). Attributes:
 * window_strides, padding (lo, hi pairs flattened), lhs_dilation, rhs_dilation,
 * feature_group_count. */
lx_array *lx_conv_general(lx_array *x, lx_array *kernel, const lx_conv_params *params);

/* ---- pooling (flax.linen.avg_pool / max_pool) ----
 * x: (batch, spatial..., features) with nwin spatial axes, or (spatial..., features) without the
 * batch axis. window has nwin entries; strides NULL means 1; padding NULL means VALID. avg_pool
 * divides by the full window size when count_include_pad (Flax's default), else by the number of
 * non-padding elements. Padding never wins a max. Attributes: window_shape, strides, padding
 * (+ count_include_pad). Errors: x not float32 is LX_ERR_DTYPE; a rank that does not fit nwin
 * LX_ERR_SHAPE; a window or stride < 1, or an unknown padding mode, LX_ERR_INVALID_ARGUMENT;
 * negative (cropping) explicit padding, which convolution takes, LX_ERR_UNSUPPORTED here. */
lx_array *lx_avg_pool(lx_array *x, int nwin, const int64_t *window, const int64_t *strides,
                      const lx_padding *padding, bool count_include_pad);
lx_array *lx_max_pool(lx_array *x, int nwin, const int64_t *window, const int64_t *strides,
                      const lx_padding *padding);

/* ---- losses ---- */
/* optax.softmax_cross_entropy_with_integer_labels: logits (..., C), labels (...) int32 in [0, C);
 * returns per-example losses (...) = logsumexp(logits) - logits[label]. A label out of range is
 * LX_ERR_INVALID_ARGUMENT naming the first one. */
lx_array *lx_softmax_cross_entropy_int(lx_array *logits, lx_array *labels);

/* ---- attention (flax.linen.dot_product_attention) ----
 * q: (batch..., q_len, heads, d), k: (batch..., kv_len, kv_heads, d), v: (batch..., kv_len,
 * kv_heads, dv), kv_heads dividing heads (grouped-query: query head h reads kv head
 * h / (heads / kv_heads)). Logits: scale 0 (Flax's dot_product_attention) divides q by sqrt(d) in
 * float32 first and then takes (q / sqrt(d)) k^T, as Flax does; a positive finite scale gives
 * (q k^T) * scale (jax.nn.dot_product_attention's `scale`, applied after the product); a negative,
 * infinite or NaN scale is LX_ERR_INVALID_ARGUMENT. Then + bias, masked where mask
 * is false or (causal) where the key position exceeds the query position, softmax over keys, times
 * v. bias (f32) and mask (bool) are optional and broadcast to (batch..., heads, q_len, kv_len).
 * Masked logits take float32's lowest value, as Flax does (a fully masked row averages v).
 * Output (batch..., q_len, heads, dv). Attributes: causal, scale. */
lx_array *lx_dot_product_attention(lx_array *q, lx_array *k, lx_array *v, lx_array *bias,
                                   lx_array *mask, bool causal, float scale);
/* The softmax weights alone: (batch..., heads, q_len, kv_len) (Flax's
 * dot_product_attention_weights). */
lx_array *lx_dot_product_attention_weights(lx_array *q, lx_array *k, lx_array *bias, lx_array *mask,
                                           bool causal, float scale);
/* flax.linen.make_causal_mask: x (batch..., len) -> bool (batch..., 1, len, len), true where the
 * key position <= the query position. Only x's shape is read. (Flax returns float32 1/0 by default;
 * linnx masks are bool.) */
lx_array *lx_make_causal_mask(lx_array *x);

/* Dropout (lx_dropout, lx_dropout_mask, lx_dropout_apply) lives in dropout.h. */

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
