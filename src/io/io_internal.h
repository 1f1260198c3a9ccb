/* Internal helpers shared by the checkpoint readers and writers (src/io). */
#ifndef LINNX_IO_INTERNAL_H
#define LINNX_IO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "linnx/checkpoint.h"
#include "linnx/fault.h"

/* One dtype as the formats name it. */
typedef struct io_dtype {
    const char *numpy;       /* numpy / ml_dtypes dtype.name */
    const char *st;          /* safetensors dtype string, NULL when it has none */
    int bits;                /* bits per element */
    int lx;                  /* the lx_dtype, or -1 when linnx does not compute with it */
    int st_rank;             /* the reference writer's sort key: larger goes first */
} io_dtype;

const io_dtype *io_dtype_by_numpy(const char *name, size_t len);
const io_dtype *io_dtype_by_st(const char *name, size_t len);
const io_dtype *io_dtype_by_lx(lx_dtype d);

/* Element count of a shape with overflow checks (LX_ERR_FORMAT naming `what` on overflow). */
lx_status io_shape_size(int ndim, const int64_t *shape, int64_t *size);
/* Bytes for `size` elements of `bits` each (rounded up to whole bytes); false on overflow. */
int io_nbytes(int64_t size, int bits, uint64_t *out);

/* Whether an array of `nbytes` read from a file and copied into memory is over the process's
 * per-array limit (lx_set_max_array_bytes). The readers check it before allocating and fail with
 * LX_ERR_INVALID_ARGUMENT naming the byte offset: the input's fault, not an allocation failure.
 * Arrays that point into the file's mapping take no new memory and are not limited. */
static inline int io_over_limit(uint64_t nbytes) {
    size_t limit = lx_max_array_bytes();
    return limit && nbytes > limit;
}

/* The array a leaf saves as (an array, a Variable's value, an unboxed box), or NULL. */
lx_array *io_leaf_array(const lx_value *v);

/* A growable byte buffer. */
typedef struct io_buf {
    unsigned char *p;
    size_t len, cap;
    int failed;
} io_buf;
int io_buf_put(io_buf *b, const void *data, size_t n);

/* Map a whole file read-only-private (copy-on-write). The mapping is reference-counted: arrays
 * wrapped over it hold a reference each. */
typedef struct io_map {
    int refs;
    void *addr;
    size_t len;
} io_map;
lx_status io_map_open(const char *path, io_map **out);
void io_map_unref(void *map); /* the lx_array_wrap release function */

/* Flat path joined with `sep` from a '/' path (malloc'd). */
char *io_join_path(const char *path, const char *sep);

#endif
