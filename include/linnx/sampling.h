/* linnx/sampling.h - jax.random.gumbel / categorical, lax.top_k, and MaxText's token sampling
 * (inference_utils.sampling: greedy, weighted, topk), bit-exact with JAX for a key.
 *
 *   gumbel(key, shape)      = -log(-log(uniform(key, shape, minval=tiny, maxval=1)))   (mode 'low')
 *   categorical(key, l)     = argmax(gumbel(key, l.shape) + l, axis=-1), the first index on ties
 *   temperature T           = categorical(key, l / T)           (f32 division)
 *   top-k (k, T)            = idx[categorical(key, top_k(l, k).values / T)], idx = top_k's indices
 *   greedy                  = argmax(l, -1)
 * spec/jax-random.md §3.4. The logs are float32 results of correctly rounded logs (XLA's log is a
 * polynomial within 1 ulp of that; an argmax can only differ on a near-tie).
 *
 * Ownership: arrays are owned by the innermost pool (as ops), NULL + message on failure.
 */
#ifndef LINNX_SAMPLING_H
#define LINNX_SAMPLING_H

#include <stdint.h>

#include "linnx/array.h"
#include "linnx/random.h"

#ifdef __cplusplus
extern "C" {
#endif

/* jax.random.gumbel(key, shape, float32) */
lx_array *lx_random_gumbel(lx_key key, int ndim, const int64_t *shape);
/* jax.random.categorical(key, logits, axis=-1): logits f32 (..., C) with C >= 1 -> int32 (...). */
lx_array *lx_random_categorical(lx_key key, lx_array *logits);
/* lax.top_k(x, k) over the last axis: values (..., k) descending, indices int32 (..., k), the
 * lower index first among equal values. 1 <= k <= x.shape[-1]. */
lx_status lx_top_k(lx_array *x, int64_t k, lx_array **values, lx_array **indices);

/* MaxText's sampling(logits, rng, algorithm, topk, temperature): temperature 0 is greedy;
 * top_k 0 is "weighted" (categorical over every logit), top_k > 0 is "topk". */
typedef struct lx_sampling {
    double temperature; /* > 0, or 0 for greedy */
    int64_t top_k;      /* 0 = all */
} lx_sampling;
/* logits f32 (..., V) -> int32 token ids (...). Errors: a negative or NaN temperature, top_k < 0 or
 * > V (LX_ERR_INVALID_ARGUMENT). */
lx_array *lx_sample_tokens(lx_key key, lx_array *logits, const lx_sampling *s);

#ifdef __cplusplus
}
#endif
#endif
