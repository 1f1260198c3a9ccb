/* Helpers shared by every op: result allocation, failed inputs, primitive events. */
#include "op_internal.h"

void lx_op_null_input(const char *op) {
    if (!lx_error_pending())
        lx_fail(LX_ERR_FAILED_INPUT, "%s: input is NULL", op);
}

lx_array *lx_op_result(lx_dtype dtype, int ndim, const int64_t *shape, bool abstract) {
    lx_array *a = abstract ? lx_array_abstract(dtype, ndim, shape) : lx_array_empty(dtype, ndim, shape);
    return lx_autorelease(a);
}

void lx_prim_record(lx_prim_id id, const void *params, int nin, lx_array *const *inputs, lx_array *out, int nattrs,
                    const lx_kwarg *attrs) {
    if (lx_tape_recording_) lx_tape_record_(id, params, nin, inputs, out);
    if (!lx_prim_observed()) return;
    lx_prim_event ev = {lx_prim_get(id)->name, nin, inputs, out, nattrs, attrs, id, params};
    lx_prim_emit(&ev);
}
