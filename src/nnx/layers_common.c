/* Helpers every NNX layer uses: drawing parameter keys, making parameters, the layer registry. */
#include <stdint.h>
#include <stdio.h>

#include "linnx/nnx_layers.h"
#include "nnx_internal.h"

/* Flax's defaults as constants for config tables (init.h builds them with functions). */
#define VS(name_, scale_, mode_, dist_, out_axis_)                                               \
    {.kind = LX_INIT_VARIANCE_SCALING, .name = name_, .scale = scale_, .lower = -2.0, .upper = 2.0, \
     .mode = mode_, .distribution = dist_, .in_axis = {1, {-2}}, .out_axis = {1, {out_axis_}},    \
     .batch_axis = {0, {0}}}
const lx_initializer NNX_LECUN_NORMAL = VS("lecun_normal", 1.0, LX_FAN_IN, LX_DIST_TRUNCATED_NORMAL, -1);
const lx_initializer NNX_HE_UNIFORM = VS("he_uniform", 2.0, LX_FAN_IN, LX_DIST_UNIFORM, -1);
const lx_initializer NNX_EMBED_INIT = VS("variance_scaling", 1.0, LX_FAN_IN, LX_DIST_NORMAL, 0);
const lx_initializer NNX_ZEROS = {.kind = LX_INIT_ZEROS, .name = "zeros", .lower = -2.0, .upper = 2.0,
                                  .in_axis = {1, {-2}}, .out_axis = {1, {-1}}, .batch_axis = {0, {0}}};
const lx_initializer NNX_ONES = {.kind = LX_INIT_ONES, .name = "ones", .lower = -2.0, .upper = 2.0,
                                 .in_axis = {1, {-2}}, .out_axis = {1, {-1}}, .batch_axis = {0, {0}}};

lx_status nnx_draw_params(const nnx_module *self, nnx_rngs *rngs, lx_key *key) {
    if (!rngs)
        return lx_fail(LX_ERR_TYPE, "%s.__init__() missing 1 required keyword-only argument: 'rngs'",
                       self->type->name);
    return nnx_rngs_draw(rngs, "params", key);
}

/* The attribute `out` points into (&self->kernel -> "kernel"), for messages; NULL if not a field. */
static const char *field_name(const nnx_module *self, lx_variable **out) {
    uintptr_t base = (uintptr_t)self, at = (uintptr_t)out; /* `out` may lie outside *self */
    for (int i = 0; at >= base && i < self->type->nfields; i++)
        if (at - base == self->type->fields[i].offset) return self->type->fields[i].name;
    return NULL;
}

lx_status nnx_make_param(const nnx_module *self, nnx_rngs *rngs, const lx_vartype *type,
                         const lx_initializer *init, lx_dtype dtype, int ndim, const int64_t *shape,
                         int flat_ndim, const int64_t *flat_shape, const lx_value *metadata,
                         lx_variable **out) {
    *out = NULL;
    lx_key key;
    LX_TRY(nnx_draw_params(self, rngs, &key));
    lx_status s = flat_ndim <= 0 ? nnx_param_new(type, init, key, dtype, ndim, shape, metadata, out)
                                 : nnx_param_new_reshaped(type, init, key, dtype, ndim, shape, flat_ndim, flat_shape,
                                                          metadata, out);
    if (s != LX_OK) {
        const char *field = field_name(self, out);
        if (!field) return lx_fail_context(s, "%s: ", self->type->name);
        return lx_fail_context(s, "%s.%s: ", self->type->name, field);
    }
    return LX_OK;
}

lx_status nnx_return_array(lx_value *out, lx_array *y) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_return_array: out is NULL");
    if (!y) return lx_error_pending() ? lx_last_status()
                                      : lx_fail(LX_ERR_FAILED_INPUT, "nnx: a method produced no array");
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}

const nnx_type *nnx_layer_type(const char *name) {
    static const struct {
        const char *name;
        const nnx_type *type;
    } table[] = {
        {"Linear", &nnx_Linear},         {"LinearGeneral", &nnx_LinearGeneral},
        {"Conv", &nnx_Conv},             {"Embed", &nnx_Embed},
        {"LayerNorm", &nnx_LayerNorm},  {"RMSNorm", &nnx_RMSNorm},
        {"BatchNorm", &nnx_BatchNorm},  {"Dropout", &nnx_Dropout},
        {"MultiHeadAttention", &nnx_MultiHeadAttention}, {"LoRA", &nnx_LoRA},
        {"Sequential", &nnx_Sequential}, {"Rngs", &nnx_Rngs},
    };
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, name) == 0) return table[i].type;
    return NULL;
}
