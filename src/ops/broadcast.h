/* Internal: numpy broadcasting plans, strided copies and axis helpers shared by the
 * elementwise, reduction and shape ops (not installed).
 *
 * A broadcast plan describes an output of `size` elements as rows of `shape[ndim-1]` contiguous
 * elements; each input walks that row with a step of 0 (broadcast) or 1. Output dims of size 1
 * are dropped and neighbouring dims that every input walks contiguously are merged, so a
 * same-shape op is one long row and a bias add (B, T, C) + (C,) is B*T rows of C.
 */
#ifndef LINNX_OPS_BROADCAST_H
#define LINNX_OPS_BROADCAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "linnx/array.h"

/* Below this many elements an op runs on one thread: starting a team costs more than it saves. */
#define LX_PAR_MIN 32768

#define LX_BCAST_MAX_IN 3

typedef struct lx_bcast {
    int nin;
    int ndim; /* >= 1 after simplification */
    int64_t shape[LX_MAX_DIMS];
    int64_t stride[LX_BCAST_MAX_IN][LX_MAX_DIMS]; /* in elements; 0 where broadcast */
    int64_t size;
} lx_bcast;

/* One row of a broadcast op: in[k] advances by step[k] (0 or 1) elements per output element. */
typedef void (*lx_bcast_row_fn)(void *out, const void *const *in, const int64_t *step, int64_t n,
                                const void *ctx);

/* The broadcast shape of `nin` shapes; on failure an LX_ERR_SHAPE message
 * "<op>: operands could not be broadcast together with shapes (2, 3) (4,)". */
lx_status lx_bcast_shape(const char *op, int nin, const int *ndims, const int64_t *const *shapes,
                         int *out_ndim, int64_t *out_shape);
/* Plan `nin` contiguous inputs against an output shape they broadcast to. */
void lx_bcast_plan(lx_bcast *bc, int nin, const int *ndims, const int64_t *const *shapes,
                   int out_ndim, const int64_t *out_shape);
/* Run `fn` over every row of the plan (on the thread pool, team.h, above LX_PAR_MIN elements). */
void lx_bcast_run(const lx_bcast *bc, void *out, size_t out_elsize, const void *const *in,
                  const size_t *in_elsize, lx_bcast_row_fn fn, const void *ctx);

/* Copy `shape` elements of `elsize` bytes from `in` to `out`, each walked with its own element
 * strides (any sign; out_strides NULL means contiguous). Used by transpose, slice, pad and the
 * reductions' transposes. */
void lx_strided_copy(void *out, const int64_t *out_strides, const void *in, const int64_t *in_strides,
                     size_t elsize, int ndim, const int64_t *shape);
/* Row-major element strides of a shape. */
void lx_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);

/* Normalise a possibly negative axis against ndim; on failure an LX_ERR_SHAPE message
 * "<op>: axis 3 is out of bounds for array of dimension 2". */
lx_status lx_norm_axis(const char *op, int64_t axis, int ndim, int64_t *out);

/* Shape string helper for messages: a small rotating set of thread-local buffers, so a message
 * can name a few shapes at once. */
const char *lx_shp(int ndim, const int64_t *shape);
static inline const char *lx_ashp(const lx_array *a) { return lx_shp(a->ndim, a->shape); }

/* A float converted to one element of `dtype` at out (by lx_cast's rules); LX_ERR_DTYPE, out
 * untouched, for a value outside the enum. */
lx_status lx_scalar_to_dtype(double v, lx_dtype dtype, void *out);

/* bfloat16 <-> float32: bf16 is the top half of an f32; rounding is to nearest, ties to even. */
static inline float lx_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
static inline uint16_t lx_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if (f != f) return (uint16_t)((bits >> 16) | 0x0040u); /* stay a (quiet) NaN */
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

#endif
