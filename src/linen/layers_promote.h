/* Flax's promote_dtype for the layers of both module systems (not installed): Linen's and
 * NNX's Dense/Linear, DenseGeneral/LinearGeneral, Conv and the norms run their operands through
 * it before the op, as flax/linen/linear.py and normalization.py do. */
#ifndef LINNX_LAYERS_PROMOTE_H
#define LINNX_LAYERS_PROMOTE_H

#include "linnx/array.h"
#include "linnx/status.h"

/* promote_dtype(*ops, dtype=dtype, inexact=True): the computation dtype is `dtype` when given
 * (the layers accept only "float32": ll_check_dtypes), else jnp.result_type of the operands
 * made inexact: float32 when any operand is float32, or when none is a float (an int32 or bool
 * input with no float parameter: promote_types(float32, int32)); bfloat16 when every float
 * operand is bfloat16. NULL entries (a bias the config leaves out) are skipped. Each operand of
 * another dtype is replaced by lx_cast to it, a pool-owned array whose VJP casts the cotangent
 * back (a bfloat16 parameter gets a bfloat16 gradient); operands already of that dtype are left
 * as they are, so an all-float32 layer runs no extra op and allocates nothing. A computation
 * dtype the ops cannot do (bfloat16 arithmetic: array.h) is LX_ERR_UNSUPPORTED naming it and
 * `layer`. int8 operands are quantized weights (quant.h), not numbers to promote: they are left
 * as they are and take no part in the decision, so the op (under a quantization session, its
 * int8 kernel) sees them. A NULL `ops[0]` (a failed input) returns the pending failure. */
lx_status lx_layer_promote(const char *layer, const char *dtype, int n, lx_array **ops);
/* The computation dtype alone (the check above, nothing cast): for a layer that computes from a
 * float32 copy of its input before the parameters exist (BatchNorm's statistics). */
lx_status lx_layer_dtype(const char *layer, const char *dtype, int n, lx_array *const *ops, lx_dtype *out);

/* RMSNorm over the `naxes` axes listed (negative counts from the end), which must be x's
 * trailing axes in some order: y = x * (rsqrt(mean(x^2 over them) + epsilon) * scale), scale
 * (optional) of the shape of a suffix of the normalised axes, as Flax's RMSNorm with
 * reduction_axes=(1, 2), feature_axes=-1. The last axis alone is nn.h's rms_norm op itself; more
 * axes (or a scale of fewer axes) run it on x viewed as (..., prod(normalised shape)) with the
 * scale broadcast to the normalised shape. Other axes are LX_ERR_UNSUPPORTED naming `layer`, as
 * layer_norm refuses them. NULL on failure (a NULL x keeps the pending one). */
lx_array *lx_layer_rms_norm(const char *layer, lx_array *x, lx_array *scale, float epsilon, int naxes,
                            const int64_t *axes);

#endif
