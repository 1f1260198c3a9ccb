/* linnx/metrics.h - flax.nnx.metrics.Average and Accuracy.
 *
 * Plain structs (zero-initialize or call *_reset): Average keeps `total` (float32, the sum of
 * every value seen, added in float32 as Flax's `total.value += values.sum()`) and `count` (int32,
 * the number of values); compute() is total / count in float32 (NaN before the first update, as in
 * Flax). Accuracy is an Average of (argmax(logits, -1) == labels).
 * Nothing allocated is kept: the structs hold numbers only.
 */
#ifndef LINNX_METRICS_H
#define LINNX_METRICS_H

#include <stdint.h>

#include "linnx/array.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

typedef struct nnx_average {
    float total;
    int32_t count;
} nnx_average;

void nnx_average_reset(nnx_average *m);
/* update(values=...): total += sum(values) (float32, int32 or bool values; another dtype is
 * LX_ERR_DTYPE), count += size. A NULL values keeps the pending failure (status.h). */
lx_status nnx_average_update(nnx_average *m, lx_array *values);
/* update with a Python number: total += v, count += 1. */
void nnx_average_update_scalar(nnx_average *m, float v);
float nnx_average_compute(const nnx_average *m);

typedef struct nnx_accuracy {
    nnx_average avg;
} nnx_accuracy;

void nnx_accuracy_reset(nnx_accuracy *m);
/* update(logits=..., labels=...): logits (..., C) float32, labels (...) int32. Anything else fails
 * with Flax's ValueError text "Expected labels.dtype==jnp.int32 and logits.ndim=N==labels.ndim+1=M",
 * LX_ERR_DTYPE when the labels are not int32 (or the logits not float32), else LX_ERR_SHAPE.
 * The metric is unchanged after a failure. */
lx_status nnx_accuracy_update(nnx_accuracy *m, lx_array *logits, lx_array *labels);
float nnx_accuracy_compute(const nnx_accuracy *m);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
