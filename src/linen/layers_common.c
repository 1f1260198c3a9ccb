/* Shared helpers of the Linen layers and the default initializer objects. */
#include <string.h>

#include "layers_internal.h"

/* Designated, so fields added to lx_initializer later (partitioning) start out zero. */
#define LL_VS(name_, scale_, mode_, dist_, out_axis_)                                               \
    {.kind = LX_INIT_VARIANCE_SCALING, .name = name_, .scale = scale_, .lower = -2.0, .upper = 2.0, \
     .mode = mode_, .distribution = dist_, .in_axis = {1, {-2}}, .out_axis = {1, {out_axis_}},    \
     .batch_axis = {0, {0}}}

const lx_initializer ll_lecun_normal = LL_VS("lecun_normal", 1.0, LX_FAN_IN, LX_DIST_TRUNCATED_NORMAL, -1);
/* flax.linen.linear.default_embed_init: variance_scaling(1.0, 'fan_in', 'normal', out_axis=0) */
const lx_initializer ll_embed_init = LL_VS("variance_scaling", 1.0, LX_FAN_IN, LX_DIST_NORMAL, 0);
const lx_initializer ll_zeros = {.kind = LX_INIT_ZEROS, .name = "zeros", .lower = -2.0, .upper = 2.0,
                                 .in_axis = {1, {-2}}, .out_axis = {1, {-1}}, .batch_axis = {0, {0}}};
const lx_initializer ll_ones = {.kind = LX_INIT_ONES, .name = "ones", .lower = -2.0, .upper = 2.0,
                                .in_axis = {1, {-2}}, .out_axis = {1, {-1}}, .batch_axis = {0, {0}}};

lx_status ll_check_dtypes(const char *layer, const char *dtype) {
    if (dtype && strcmp(dtype, "float32") != 0)
        return lx_fail(LX_ERR_UNSUPPORTED, "%s: dtype=%s is not supported (None or float32)", layer, dtype);
    return LX_OK;
}

lx_status ll_input(const lx_call *c, int pos, const char *name, const char *layer, lx_array **out) {
    const lx_value *v = lx_call_get(c, pos, name);
    if (!v && pos == 0) v = lx_call_kwarg(c, "x");
    if (!v || v->kind == LX_V_NONE)
        return lx_fail(LX_ERR_TYPE, "%s.__call__() missing 1 required positional argument: '%s'", layer, name);
    if (v->kind != LX_V_ARRAY)
        return lx_fail(LX_ERR_TYPE, "%s: argument '%s' must be an array, got %s", layer, name, lx_kind_name(v->kind));
    if (!v->u.array) {
        return lx_error_pending() ? lx_last_status() : lx_fail(LX_ERR_FAILED_INPUT, "%s: argument '%s' is NULL", layer, name);
    }
    *out = v->u.array;
    return LX_OK;
}

lx_status ll_axis(const char *layer, int64_t a, int ndim, int64_t *out) {
    int64_t r = a < 0 ? a + ndim : a;
    if (r < 0 || r >= ndim) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: axis %lld is out of range for %d dimensions", layer, (long long)a, ndim);
    *out = r;
    return LX_OK;
}

linen_module *ll_new(const linen_type *type, const lx_call *c) {
    linen_module *m = NULL;
    return linen_module_new(type, c, &m) == LX_OK ? m : NULL;
}

lx_array *ll_run_release(linen_scope *s, linen_module *child, const char *name, lx_array *x) {
    if (!child) return NULL;
    lx_array *y = linen_call_array(s, child, name, x);
    linen_module_release(child);
    return y;
}
