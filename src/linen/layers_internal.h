/* Shared pieces of the Linen layers (not installed). */
#ifndef LINNX_LINEN_LAYERS_INTERNAL_H
#define LINNX_LINEN_LAYERS_INTERNAL_H

#include <stddef.h>

#include "layers_promote.h"
#include "linnx/linen_layers.h"

/* Flax's default initializers as constant objects (field defaults point at them). */
extern const lx_initializer ll_lecun_normal, ll_zeros, ll_ones, ll_embed_init;

/* An INTS field whose default is one int (a 1-tuple: axis=-1, strides=1). */
#define LL_FIELD_INTS_D(type, member, d) \
    {#member, LX_FIELD_INTS, offsetof(type, member), sizeof(((type *)0)->member), NULL, false, LX_VAL_INT(d)}
/* A VALUE field with a default (None when d is LX_VAL_NONE). */
#define LL_FIELD_VALUE_D(type, member, d) \
    {#member, LX_FIELD_VALUE, offsetof(type, member), sizeof(((type *)0)->member), NULL, false, d}
#define LL_FIELD_INIT(type, member, dflt) LX_FIELD_OBJ(type, member, "initializer", dflt)
#define LL_NFIELDS(t) LX_COUNT(t)

/* dtype must be None or float32; param_dtype float32 (or bfloat16 for zeros/ones). */
lx_status ll_check_dtypes(const char *layer, const char *dtype);
/* param_dtype float32, or bfloat16 for the constant initializers (zeros, ones, constant), for
 * each initializer given (NULL entries: parameters the config leaves out); else
 * LX_ERR_UNSUPPORTED (linen_layers.h's supported subset). */
lx_status ll_check_param_dtype(const char *layer, lx_dtype param_dtype, const lx_initializer *a,
                               const lx_initializer *b);
/* The array argument `inputs` (positional 0, or keyword inputs / x). */
lx_status ll_input(const lx_call *c, int pos, const char *name, const char *layer, lx_array **out);
/* Normalise axis a of an ndim array (negative counts from the end); fails naming the layer. */
lx_status ll_axis(const char *layer, int64_t a, int ndim, int64_t *out);
/* A module of `type` from a call record, built and checked, or NULL. */
linen_module *ll_new(const linen_type *type, const lx_call *c);
/* Call `child` on one array under `name` and release the module (helpers' one-liner). */
lx_array *ll_run_release(linen_scope *s, linen_module *child, const char *name, lx_array *x);

#endif
