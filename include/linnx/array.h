/* linnx/array.h - n-dimensional arrays, reference counts and autorelease pools.
 *
 * An array has a dtype, a shape in numpy order and contiguous row-major data, 64-byte aligned.
 * An *abstract* array has a shape and a dtype but no data (data == NULL): what a module is built
 * with when only its structure is needed (nnx.eval_shape).
 *
 * Ownership rules (they hold across linnx):
 *  - Functions named *_new, *_from_*, *_copy, *_abstract and lx_retain return a reference the
 *    caller owns: give it back with lx_release.
 *  - Op results (everything in ops.h, nn.h, linalg.h) are owned by the innermost open pool:
 *    use them freely until the pool closes; lx_retain one to keep it past that.
 *  - A function that takes an array never steals the caller's reference; it retains what it keeps.
 *
 * Pools: lx_pool_open() returns a mark; lx_pool_close(mark) releases every array autoreleased
 * since that mark. Pools nest. With no pool open, op results go to a per-thread base pool that
 * lx_pool_drain() empties.
 *
 * Threads: linnx objects are NOT shared between threads. This covers arrays, trees, Variables,
 * boxes, Linen and NNX modules (and their variables, Rngs and caches) and everything reachable
 * from them. Their reference counts are plain integers and their contents change without locks,
 * and even a call that only reads an object may retain and release it (an op result can be its
 * input, retained), so two threads using one object at the same time race, even if both only read.
 * What works:
 *  - each thread uses objects of its own (copy what a second thread needs: lx_array_copy,
 *    lx_tree_copy, ...; make the copy before the second thread starts, or under a lock);
 *  - an object may move to another thread when the first thread stops touching it, with a
 *    synchronisation in between (pthread_create/join, a mutex, a queue);
 *  - the caller may read an array's data from many threads (its own code, not linnx calls) while
 *    no thread calls linnx on that array.
 * Per-thread state needs no care: error messages, pools, primitive observers, interceptors and
 * the module stacks are thread-local. The thread-count setting (threads.h) and the live-array
 * count are safe from any thread; the variable-type registry and other process-wide switches are
 * set during setup (their headers say so). Inside one call linnx runs its own OpenMP and OpenBLAS
 * threads on the objects it was given; that is internal and needs nothing from the caller.
 */
#ifndef LINNX_ARRAY_H
#define LINNX_ARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "linnx/status.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

#define LX_MAX_DIMS 8
#define LX_ALIGN 64

typedef enum lx_dtype {
    LX_F32 = 0,
    LX_I32,
    LX_U32,
    LX_BOOL, /* one byte per element, 0 or 1 */
    LX_BF16, /* storage only for now: 16 bits, the top half of an f32 */
    LX_I8,   /* storage and the int8 kernels (quant.h): quantized weights, numpy "int8" */
    LX_DTYPE_COUNT
} lx_dtype;

typedef struct lx_array {
    lx_dtype dtype;
    int ndim;
    int64_t shape[LX_MAX_DIMS];
    int64_t size;         /* product of shape; 1 for a scalar (ndim 0) */
    void *data;           /* NULL for an abstract array */
    int refcount;
    struct lx_array *base; /* a view keeps the array that owns its data alive */
    void *alloc;          /* the allocation to free (NULL for views and abstract arrays) */
    /* Set by lx_array_wrap: called once when the last reference goes (data lives elsewhere,
     * e.g. in a file mapping). NULL for every other array. */
    void (*release_fn)(void *ctx);
    void *release_ctx;
} lx_array;

/* Element size in bytes and the numpy-style name ("float32", "int32", "uint32", "bool",
 * "bfloat16", "int8"). */
size_t lx_dtype_size(lx_dtype dtype);
const char *lx_dtype_name(lx_dtype dtype);
/* Parse a numpy-style dtype name ("float32", "int32", "uint32", "bool", "bfloat16", "int8");
 * LX_ERR_DTYPE for any other name (*out untouched). */
lx_status lx_dtype_from_name(const char *name, lx_dtype *out);

/* ---- construction (caller owns the result; NULL with a message on failure) ---- */
lx_array *lx_array_new(lx_dtype dtype, int ndim, const int64_t *shape); /* zero-filled */
lx_array *lx_array_empty(lx_dtype dtype, int ndim, const int64_t *shape); /* uninitialised */
lx_array *lx_array_abstract(lx_dtype dtype, int ndim, const int64_t *shape);
/* Copies size elements from data; NULL data is LX_ERR_INVALID_ARGUMENT unless the shape is empty. */
lx_array *lx_array_from_data(lx_dtype dtype, int ndim, const int64_t *shape, const void *data);
lx_array *lx_array_from_f32(int ndim, const int64_t *shape, const float *data);
lx_array *lx_array_scalar_f32(float v);
lx_array *lx_array_full_f32(int ndim, const int64_t *shape, float v);
/* A deep copy (an abstract array copies to an abstract array). */
lx_array *lx_array_copy(const lx_array *a);
/* A view with a new shape over the same data (sizes must match; -1 infers one dim). shape may be
 * NULL only when ndim is 0. */
lx_array *lx_array_reshape_view(lx_array *a, int ndim, const int64_t *shape);
/* An array over memory the caller provides (a file mapping, a foreign buffer): `data` is used in
 * place, not copied, and need not be 64-byte aligned (element alignment is enough). When the last
 * reference goes, release_fn(ctx) is called (if not NULL) so the owner can unmap or free. On
 * failure release_fn is NOT called: the caller still owns the memory. */
lx_array *lx_array_wrap(lx_dtype dtype, int ndim, const int64_t *shape, void *data,
                        void (*release_fn)(void *ctx), void *ctx);

lx_array *lx_retain(lx_array *a);  /* NULL-safe; returns a */
void lx_release(lx_array *a);      /* NULL-safe */

/* ---- pools ---- */
size_t lx_pool_open(void);
void lx_pool_close(size_t mark);
/* Hand an owned reference to the innermost pool; returns a (NULL-safe). */
lx_array *lx_autorelease(lx_array *a);
/* Empty the base pool of this thread (and every pool still open). */
void lx_pool_drain(void);
/* How many references the pools of this thread hold (tests use it to check memory is flat). */
size_t lx_pool_size(void);
/* Live array count in this process (a debugging aid and a leak check for tests). */
int64_t lx_array_live_count(void);
/* Called with the byte count of every array data allocation from the heap (not headers, not
 * abstract arrays, not a block the storage cache below handed back): tests use it to show a code
 * path allocates nothing parameter-sized, and that a steady-state training step allocates
 * nothing. Process-wide; set it while no other thread allocates. NULL removes it. */
typedef void (*lx_alloc_hook)(size_t nbytes, void *user);
void lx_set_alloc_hook(lx_alloc_hook fn, void *user);
/* The storage cache: the data block of a released array is kept (by its exact size, rounded to
 * 64 bytes) and serves the next array of that size, so a loop that repeats its shapes (a training
 * step) stops calling malloc after the first iterations. Process-wide and thread-safe; at most
 * `limit` bytes are held (default 512 MiB; 0 turns caching off and frees what is held). Builds
 * with AddressSanitizer bypass it (lx_array_cache_enabled() is false there) so every use after
 * free and every leak is still reported. lx_array_cache_release frees what the cache holds (it
 * does not disable it). A reused block's contents are unspecified, as malloc's are. */
void lx_array_cache_set_limit(size_t limit);
size_t lx_array_cache_limit(void);
void lx_array_cache_release(void);
size_t lx_array_cache_bytes(void);
bool lx_array_cache_enabled(void);
/* The matching release: called with the same byte count when such an allocation goes back to
 * the heap, so the two together give the live and peak bytes of a code path (bench/stack.c's
 * remat lines). A block the storage cache keeps is not reported (nor is its reuse): measure with
 * the cache off (lx_array_cache_set_limit(0)). */
void lx_set_free_hook(lx_alloc_hook fn, void *user);

/* ---- access ---- */
static inline float *lx_f32(const lx_array *a) { return (float *)a->data; }
static inline int32_t *lx_i32(const lx_array *a) { return (int32_t *)a->data; }
static inline uint32_t *lx_u32(const lx_array *a) { return (uint32_t *)a->data; }
static inline uint8_t *lx_bool(const lx_array *a) { return (uint8_t *)a->data; }
static inline int8_t *lx_i8(const lx_array *a) { return (int8_t *)a->data; }
static inline bool lx_is_abstract(const lx_array *a) { return a->data == NULL; }
size_t lx_array_nbytes(const lx_array *a);
bool lx_same_shape(const lx_array *a, const lx_array *b);
bool lx_shape_eq(const lx_array *a, int ndim, const int64_t *shape);
/* "(2, 3)" style, numpy's tuple syntax ("()" for a scalar, "(5,)" for 1-D). */
const char *lx_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap);
/* "float32[2,3]" style, what the CLI and the tree printer show. */
const char *lx_array_sig(const lx_array *a, char *buf, size_t cap);
/* Flat element i as a double, whatever the dtype. */
double lx_array_get(const lx_array *a, int64_t i);

/* ---- comparisons for tests ---- */
/* Same dtype, shape and bytes. */
bool lx_array_equal(const lx_array *a, const lx_array *b);
/* Distance in units in the last place between two floats (0 when equal, also for +0/-0). */
uint32_t lx_ulp_distance(float a, float b);
/* Largest ulp distance over two f32 arrays of one shape; *ndiff gets how many differ. */
uint32_t lx_array_max_ulp(const lx_array *a, const lx_array *b, int64_t *ndiff);
/* numpy.allclose: |a - b| <= atol + rtol * |b| element-wise, shapes equal. */
bool lx_array_allclose(const lx_array *a, const lx_array *b, double rtol, double atol);

/* numpy-style printing, e.g. "[[1. 2.]\n [3. 4.]]": floats as %.9g with numpy's "." on a whole
 * number ("1.", "1.e+10"; inf and nan as is), ints as integers ("[[1 2]\n [3 4]]"), bools as
 * True/False; no column padding. */
lx_status lx_array_fprint(FILE *f, const lx_array *a);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
