/* Array helpers for the op layer (not installed). */
#ifndef LINNX_ARRAY_INTERNAL_H
#define LINNX_ARRAY_INTERNAL_H

#include "linnx/array.h"

/* lx_array_empty for a dtype and shape that bind's check already passed (a valid dtype, 0..
 * LX_MAX_DIMS non-negative dims whose non-zero product times 16 fits in int64): the same array,
 * without checking them again. Every op result is made here. */
lx_array *lx_array_empty_valid_(lx_dtype dtype, int ndim, const int64_t *shape);

#endif
