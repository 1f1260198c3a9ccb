/* linnx/losses.h - optax.losses, written with the ops of ops.h and nn.h.
 *
 * Every loss is per element (or per example for the cross-entropies), as in optax: the caller
 * reduces, e.g. lx_mean(optax_l2_loss(pred, y), LX_ALL_AXES, false) for `loss(...).mean()`.
 * They are built only from ops (no private kernels), so they are differentiable wherever the ops
 * are, and they follow the op conventions (ops.h): pool-owned results, NULL with a message naming
 * the loss on bad shapes or dtypes, NULL without a new message when an input is NULL, abstract
 * results for abstract inputs.
 */
#ifndef LINNX_LOSSES_H
#define LINNX_LOSSES_H

#include "linnx/array.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* optax.losses.squared_error(predictions, targets): (p - t) ** 2; targets NULL means zeros. */
lx_array *optax_squared_error(lx_array *predictions, lx_array *targets);
/* optax.losses.l2_loss(predictions, targets): 0.5 * squared_error. */
lx_array *optax_l2_loss(lx_array *predictions, lx_array *targets);
/* optax.losses.softmax_cross_entropy(logits, labels): -sum(labels * log_softmax(logits), -1);
 * labels are probabilities of the logits' shape. Result shape: logits.shape[:-1]. */
lx_array *optax_softmax_cross_entropy(lx_array *logits, lx_array *labels);
/* optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels): logits (..., C),
 * int32 labels (...) in [0, C): logsumexp(logits) - logits[label] (the fused op of nn.h). */
lx_array *optax_softmax_cross_entropy_with_integer_labels(lx_array *logits, lx_array *labels);
/* optax.losses.sigmoid_binary_cross_entropy(logits, labels):
 * -labels * log_sigmoid(x) - (1 - labels) * log_sigmoid(-x), element-wise, labels float32 of the
 * logits' shape (broadcasting allowed). */
lx_array *optax_sigmoid_binary_cross_entropy(lx_array *logits, lx_array *labels);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
