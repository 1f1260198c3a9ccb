/* flax.nnx.metrics.Average and Accuracy. */
#include <math.h>

#include "linnx/metrics.h"
#include "linnx/ops.h"
#include "../core/status_internal.h"

void nnx_average_reset(nnx_average *m) {
    m->total = 0.0f;
    m->count = 0;
}

lx_status nnx_average_update(nnx_average *m, lx_array *values) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Average.update: metric is NULL");
    if (!values) return lx_null_input("Average.update: values is NULL");
    if (lx_is_abstract(values)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Average.update: values are abstract");
    float s = 0.0f;
    if (values->dtype == LX_F32) {
        size_t mark = lx_pool_open();
        lx_array *t = lx_sum(values, LX_ALL_AXES, false);
        lx_status st = t ? LX_OK : lx_last_status();
        if (t) s = lx_f32(t)[0];
        lx_pool_close(mark);
        LX_TRY(st);
    } else if (values->dtype == LX_I32 || values->dtype == LX_BOOL || values->dtype == LX_U32) {
        int64_t acc = 0;
        for (int64_t i = 0; i < values->size; i++) acc += (int64_t)lx_array_get(values, i);
        s = (float)acc;
    } else {
        return lx_fail(LX_ERR_DTYPE, "Average.update: values of dtype %s", lx_dtype_name(values->dtype));
    }
    m->total = m->total + s;
    m->count += (int32_t)values->size;
    return LX_OK;
}

void nnx_average_update_scalar(nnx_average *m, float v) {
    m->total = m->total + v;
    m->count += 1;
}

float nnx_average_compute(const nnx_average *m) { return m->total / (float)m->count; }

void nnx_accuracy_reset(nnx_accuracy *m) { nnx_average_reset(&m->avg); }

lx_status nnx_accuracy_update(nnx_accuracy *m, lx_array *logits, lx_array *labels) {
    if (!m) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Accuracy.update: metric is NULL");
    if (!logits || !labels) return lx_null_input("Accuracy.update: an input is NULL");
    if (logits->ndim != labels->ndim + 1 || labels->dtype != LX_I32)
        return lx_fail(labels->dtype != LX_I32 ? LX_ERR_DTYPE : LX_ERR_SHAPE,
                       "Expected labels.dtype==jnp.int32 and logits.ndim=%d==labels.ndim+1=%d", logits->ndim,
                       labels->ndim + 1);
    if (logits->dtype != LX_F32)
        return lx_fail(LX_ERR_DTYPE, "Accuracy.update: logits must be float32, got %s", lx_dtype_name(logits->dtype));
    size_t mark = lx_pool_open();
    lx_array *eq = lx_eq(lx_argmax(logits, -1, false), labels);
    lx_status st = eq ? nnx_average_update(&m->avg, eq) : lx_last_status();
    lx_pool_close(mark);
    return st;
}

float nnx_accuracy_compute(const nnx_accuracy *m) { return nnx_average_compute(&m->avg); }
