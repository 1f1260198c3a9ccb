/* Arrays: allocation, reference counts, views and autorelease pools. */
#include "linnx/array.h"

#include "checked.h"
#include "linnx/fault.h"
#include "team.h"
#include "status_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>


/* The storage cache and the header free list below are off under the sanitizers, so ASan sees
 * every use after free and LSan every leak. */
#if defined(__SANITIZE_ADDRESS__) || defined(LINNX_SANITIZE)
#define LX_CACHE_ON 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define LX_CACHE_ON 0
#endif
#endif
#ifndef LX_CACHE_ON
#define LX_CACHE_ON 1
#endif

/* ---- per-thread state ----
 * Every array's creation and release passes here, on the thread that does it; an atomic
 * read-modify-write (a locked instruction, ~20 cycles) per event was a measurable part of a small
 * op (issue 14's mlp_infer_small). So each thread keeps its own count of the arrays it made minus
 * those it released, and the cache's front (below), in one record that joins a process-wide list
 * on the thread's first array; lx_array_live_count sums the list. A thread that exits hands its
 * count and its front to the process (a pthread key's destructor). Plain loads and stores of the
 * counter by its owner, relaxed loads by the summing thread: no locked instruction per array. */
enum { FRONT_SLOTS = 8, FRONT_MAX = 64 << 10 };
typedef struct front_ent {
    size_t bytes; /* rounded data size */
    void *blk;    /* raw allocation */
} front_ent;
typedef struct thread_arrays {
    _Atomic int64_t live; /* arrays made here minus arrays released here */
    struct thread_arrays *next, *prev;
    bool listed;
    uint64_t gen;        /* cache_gen when the front was last valid */
    size_t front_bytes;  /* bytes in front[] */
    int nfront;
    front_ent front[FRONT_SLOTS]; /* roughly oldest first (a take moves the newest into its slot) */
} thread_arrays;

static pthread_mutex_t threads_mu = PTHREAD_MUTEX_INITIALIZER;
static thread_arrays *threads_head;
static atomic_llong live_retired; /* the counts of threads that exited */
static pthread_key_t threads_key;
static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static _Thread_local thread_arrays tl_arrays;

static void thread_exit(void *p);
static void threads_key_make(void) { (void)lx_tls_key_create(&threads_key, thread_exit); }

static __attribute__((noinline)) void thread_list(thread_arrays *t) {
    pthread_once(&threads_once, threads_key_make);
    pthread_mutex_lock(&threads_mu);
    t->next = threads_head;
    t->prev = NULL;
    if (threads_head) threads_head->prev = t;
    threads_head = t;
    t->listed = true;
    pthread_mutex_unlock(&threads_mu);
    (void)pthread_setspecific(threads_key, t); /* non-NULL: the destructor runs at exit */
}

static inline thread_arrays *this_thread(void) {
    thread_arrays *t = &tl_arrays;
    if (__builtin_expect(!t->listed, 0)) thread_list(t);
    return t;
}

static inline void live_add(int64_t d) {
    thread_arrays *t = this_thread();
    atomic_store_explicit(&t->live, atomic_load_explicit(&t->live, memory_order_relaxed) + d, memory_order_relaxed);
}

/* Array headers: a per-thread free list (at most HDR_CACHE), linked through `base`, so the
 * headers of a step's op results come back without malloc; freed when the thread exits. */
enum { HDR_CACHE = 1024 };
static _Thread_local lx_array *hdr_free;
static _Thread_local int hdr_n;
static _Thread_local bool hdr_registered;
static pthread_key_t hdr_key;
static pthread_once_t hdr_once = PTHREAD_ONCE_INIT;

static void hdr_exit(void *p) {
    (void)p;
    while (hdr_free) {
        lx_array *a = hdr_free;
        hdr_free = a->base;
        free(a);
    }
    hdr_n = 0;
    hdr_registered = false; /* a header freed by a later destructor registers again */
}
static void hdr_key_new(void) { (void)lx_tls_key_create(&hdr_key, hdr_exit); }

static lx_array *header_alloc(void) {
    lx_array *a = hdr_free;
    if (LX_CACHE_ON && a) {
        hdr_free = a->base;
        hdr_n--;
        return a;
    }
    return malloc(sizeof *a);
}

static void header_free(lx_array *a) {
    if (LX_CACHE_ON && !hdr_registered) {
        pthread_once(&hdr_once, hdr_key_new);
        hdr_registered = pthread_setspecific(hdr_key, &hdr_key) == 0; /* non-NULL: the destructor runs */
    }
    if (LX_CACHE_ON && hdr_n < HDR_CACHE && hdr_registered) {
        a->base = hdr_free;
        hdr_free = a;
        hdr_n++;
        return;
    }
    free(a);
}

/* the one table of element sizes: lx_dtype_size and the inlined copy on the allocation path use it
 * (a dtype added to the enum without a size here fails to compile) */
#define DTYPE_SIZE_CASES \
    case LX_F32: case LX_I32: case LX_U32: return 4; \
    case LX_BOOL: case LX_I8: return 1; \
    case LX_BF16: return 2;
_Static_assert(LX_DTYPE_COUNT == 6, "a new dtype needs its size in DTYPE_SIZE_CASES");

size_t lx_dtype_size(lx_dtype dtype) {
    switch (dtype) {
    DTYPE_SIZE_CASES
    default: return 0;
    }
}

const char *lx_dtype_name(lx_dtype dtype) {
    switch (dtype) {
    case LX_F32: return "float32";
    case LX_I32: return "int32";
    case LX_U32: return "uint32";
    case LX_BOOL: return "bool";
    case LX_BF16: return "bfloat16";
    case LX_I8: return "int8";
    default: return "invalid";
    }
}

lx_status lx_dtype_from_name(const char *name, lx_dtype *out) {
    if (!out) return lx_null_out("dtype_from_name");
    for (int d = 0; d < LX_DTYPE_COUNT; d++)
        if (name && strcmp(name, lx_dtype_name((lx_dtype)d)) == 0) {
            *out = (lx_dtype)d;
            return LX_OK;
        }
    return lx_fail(LX_ERR_DTYPE, "unknown dtype '%s' (expected float32, int32, uint32, bool, bfloat16 or int8)",
                   name ? name : "(null)");
}

static lx_status check_shape(lx_dtype dtype, int ndim, const int64_t *shape, int64_t *size) {
    if (dtype < 0 || dtype >= LX_DTYPE_COUNT)
        return lx_fail(LX_ERR_DTYPE, "array: invalid dtype %d", (int)dtype);
    if (ndim < 0 || ndim > LX_MAX_DIMS)
        return lx_fail(LX_ERR_SHAPE, "array: ndim %d is outside 0..%d", ndim, LX_MAX_DIMS);
    if (ndim > 0 && !shape) return lx_fail(LX_ERR_INVALID_ARGUMENT, "array: shape is NULL");
    /* checked-arithmetic: the product of the non-zero dims must fit in INT64_MAX / 16 (numpy's
     * "array is too big" holds for a shape with a zero dim too), so every sub-product of an
     * array's dims, and every byte count of it, fits in int64: the ops rely on this. */
    int64_t n = 1, nz = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return lx_fail(LX_ERR_SHAPE, "array: negative dimension %lld at axis %d",
                           (long long)shape[i], i);
        if (shape[i] > 0 && nz > INT64_MAX / 16 / shape[i]) {
            char b[160];
            return lx_fail(LX_ERR_SHAPE, "array: shape %s is too big (its element count times 16 overflows int64)",
                           lx_shape_str(ndim, shape, b, sizeof b));
        }
        if (shape[i] > 0) nz *= shape[i];
        n = shape[i] == 0 ? 0 : n * shape[i];
    }
    *size = n;
    return LX_OK;
}

static inline size_t dtype_size_(lx_dtype dtype) {
    switch (dtype) {
    DTYPE_SIZE_CASES
    default: return 0;
    }
}

/* A header for a shape already checked; `size` is its element count. */
static lx_array *array_header_sized(lx_dtype dtype, int ndim, const int64_t *shape, int64_t size) {
    /* malloc, not calloc: glibc's calloc bypasses the per-thread cache while free fills it, so
     * headers freed by a pool pile up in fastbins and every large malloc after them (an op's
     * result) runs malloc_consolidate: ~2% of a 64^3 matmul. */
    lx_array *a = header_alloc();
    if (!a) {
        lx_fail(LX_ERR_NO_MEMORY, "array: out of memory");
        return NULL;
    }
    memset(a, 0, sizeof *a);
    a->dtype = dtype;
    a->ndim = ndim;
    for (int i = 0; i < ndim; i++) a->shape[i] = shape[i];
    a->size = size;
    a->refcount = 1;
    live_add(1);
    return a;
}

static lx_array *array_header(lx_dtype dtype, int ndim, const int64_t *shape) {
    int64_t size = 0;
    if (check_shape(dtype, ndim, shape, &size) != LX_OK) return NULL;
    return array_header_sized(dtype, ndim, shape, size);
}

static lx_alloc_hook alloc_hook;
static void *alloc_hook_user;

void lx_set_alloc_hook(lx_alloc_hook fn, void *user) {
    alloc_hook = fn;
    alloc_hook_user = user;
}

static lx_alloc_hook free_hook;
static void *free_hook_user;

void lx_set_free_hook(lx_alloc_hook fn, void *user) {
    free_hook = fn;
    free_hook_user = user;
}

static _Atomic size_t max_array_bytes; /* 0: no limit (linnx/fault.h) */

void lx_set_max_array_bytes(size_t bytes) { atomic_store(&max_array_bytes, bytes); }
size_t lx_max_array_bytes(void) { return atomic_load(&max_array_bytes); }

/* ---- the storage cache ----
 * Data blocks of released arrays are kept by their exact (64-byte rounded) size and handed to the
 * next array of that size, so a training loop whose steps repeat the same shapes stops calling
 * malloc after its first steps (issue 14 §5; tests/test_train_steady.c). One process-wide table of
 * size classes, each a stack of blocks linked through their first bytes, under one mutex (an
 * array may be released on another thread than the one that made it). Bounded by
 * lx_array_cache_set_limit (bytes held; a block that does not fit is freed). Sanitizer builds
 * bypass it entirely so ASan still sees every use after free and LSan every leak. */

enum { CACHE_CLASSES = 256 };
typedef struct cache_class {
    size_t bytes; /* rounded data size; 0: empty slot */
    void *head;   /* raw allocation; its aligned data area holds the next pointer */
} cache_class;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static cache_class cache_tab[CACHE_CLASSES];
/* Written under cache_mu; atomic (relaxed) so cache_put's front check may read them without it. */
static _Atomic size_t cache_held;                        /* bytes in the table */
static _Atomic size_t cache_limit = (size_t)512 << 20; /* lx_array_cache_set_limit */
#define LOAD_(v) atomic_load_explicit(&(v), memory_order_relaxed)
#define STORE_(v, x) atomic_store_explicit(&(v), (x), memory_order_relaxed)

static void *align_data(void *alloc) { return (void *)(((uintptr_t)alloc + LX_ALIGN - 1) / LX_ALIGN * LX_ALIGN); }

/* Open addressing over the size classes. A class whose stack is empty may be taken over by a new
 * size (its old size has nothing to find), so a process that meets more than 256 sizes over its
 * life keeps caching the recent ones. */
static cache_class *cache_find(size_t rounded, bool insert) {
    size_t h = (rounded / LX_ALIGN * 0x9E3779B97F4A7C15ull) >> 56; /* 8 bits: 256 classes */
    cache_class *spare = NULL;
    for (size_t k = 0; k < CACHE_CLASSES; k++) {
        cache_class *c = &cache_tab[(h + k) % CACHE_CLASSES];
        if (c->bytes == rounded) return c;
        if (c->bytes == 0) {
            if (!insert) return NULL;
            if (!spare) spare = c;
            break;
        }
        if (!c->head && !spare) spare = c;
    }
    if (spare) spare->bytes = rounded;
    return spare;
}

/* The front: each thread's last few released blocks up to FRONT_MAX bytes, handed back to its
 * next arrays of those sizes without the mutex (a small model's op results are all this size; a
 * lock and unlock per array were ~10% of a batch-1 Dense). Blocks in a front count as the cache's
 * for the limit and for lx_array_cache_bytes (the calling thread's front). lx_array_cache_release
 * empties the global table and the calling thread's front, and bumps cache_gen, so every other
 * thread frees its front when it next touches it (or when it exits). */
static _Atomic uint64_t cache_gen;

static void front_free_all(thread_arrays *t) {
    for (int i = 0; i < t->nfront; i++) free(t->front[i].blk);
    t->nfront = 0;
    t->front_bytes = 0;
}

static __attribute__((noinline)) void front_renew(thread_arrays *t, uint64_t g) {
    front_free_all(t);
    t->gen = g;
}

/* The front, emptied first when a release since its last use asked for that. */
static inline thread_arrays *front_of_thread(void) {
    thread_arrays *t = this_thread();
    uint64_t g = atomic_load_explicit(&cache_gen, memory_order_relaxed);
    if (__builtin_expect(t->gen != g, 0)) front_renew(t, g);
    return t;
}

static void *cache_take(size_t rounded) {
    if (!LX_CACHE_ON) return NULL;
    void *blk = NULL;
    if (rounded <= FRONT_MAX) {
        thread_arrays *t = front_of_thread();
        for (int i = t->nfront - 1; i >= 0; i--)
            if (t->front[i].bytes == rounded) {
                blk = t->front[i].blk;
                t->front[i] = t->front[--t->nfront]; /* the last fills the hole */
                t->front_bytes -= rounded;
                return blk;
            }
    }
    pthread_mutex_lock(&cache_mu);
    cache_class *c = LOAD_(cache_held) ? cache_find(rounded, false) : NULL;
    if (c && c->head) {
        blk = c->head;
        memcpy(&c->head, align_data(blk), sizeof c->head);
        STORE_(cache_held, LOAD_(cache_held) - rounded);
    }
    pthread_mutex_unlock(&cache_mu);
    return blk;
}

static bool cache_put_global(void *blk, size_t rounded);

/* Keep the block (true) or let the caller free it (false). */
static bool cache_put(void *blk, size_t rounded) {
    if (!LX_CACHE_ON || !blk || rounded == 0) return false;
    if (rounded <= FRONT_MAX) {
        thread_arrays *t = front_of_thread();
        if (t->front_bytes + rounded + LOAD_(cache_held) > LOAD_(cache_limit))
            return cache_put_global(blk, rounded); /* decides under the mutex */
        if (t->nfront == FRONT_SLOTS) { /* the oldest goes to the table (or is freed) */
            front_ent old = t->front[0];
            memmove(&t->front[0], &t->front[1], (FRONT_SLOTS - 1) * sizeof t->front[0]);
            t->nfront--;
            t->front_bytes -= old.bytes;
            if (!cache_put_global(old.blk, old.bytes)) free(old.blk);
        }
        t->front[t->nfront++] = (front_ent){rounded, blk};
        t->front_bytes += rounded;
        return true;
    }
    return cache_put_global(blk, rounded);
}

static bool cache_put_global(void *blk, size_t rounded) {
    bool kept = false;
    pthread_mutex_lock(&cache_mu);
    if (LOAD_(cache_held) + rounded <= LOAD_(cache_limit)) {
        cache_class *c = cache_find(rounded, true);
        if (c) {
            memcpy(align_data(blk), &c->head, sizeof c->head);
            c->head = blk;
            STORE_(cache_held, LOAD_(cache_held) + rounded);
            kept = true;
        }
    }
    pthread_mutex_unlock(&cache_mu);
    return kept;
}

void lx_array_cache_release(void) {
    if (LX_CACHE_ON) {
        atomic_fetch_add(&cache_gen, 1); /* the other threads' fronts: freed at their next use */
        thread_arrays *t = this_thread();
        front_free_all(t);
        t->gen = atomic_load(&cache_gen);
    }
    pthread_mutex_lock(&cache_mu);
    for (int k = 0; k < CACHE_CLASSES; k++) {
        void *b = cache_tab[k].head;
        while (b) {
            void *next;
            memcpy(&next, align_data(b), sizeof next);
            free(b);
            b = next;
        }
        cache_tab[k].head = NULL;
        cache_tab[k].bytes = 0;
    }
    STORE_(cache_held, 0);
    pthread_mutex_unlock(&cache_mu);
}

void lx_array_cache_set_limit(size_t bytes) {
    pthread_mutex_lock(&cache_mu);
    STORE_(cache_limit, bytes);
    bool over = LOAD_(cache_held) > bytes;
    pthread_mutex_unlock(&cache_mu);
    if (over || (LX_CACHE_ON && front_of_thread()->front_bytes > bytes)) lx_array_cache_release();
}

size_t lx_array_cache_limit(void) { return LOAD_(cache_limit); }

/* The table's bytes and the calling thread's front. */
size_t lx_array_cache_bytes(void) {
    size_t front = LX_CACHE_ON ? front_of_thread()->front_bytes : 0;
    pthread_mutex_lock(&cache_mu);
    size_t n = LOAD_(cache_held);
    pthread_mutex_unlock(&cache_mu);
    return n + front;
}

/* A thread that exits: its front to the table, its count to the retired total, off the list. */
static void thread_exit(void *p) {
    thread_arrays *t = p;
    uint64_t g = atomic_load(&cache_gen);
    for (int i = 0; i < t->nfront; i++)
        if (t->gen != g || !cache_put_global(t->front[i].blk, t->front[i].bytes)) free(t->front[i].blk);
    t->nfront = 0;
    t->front_bytes = 0;
    pthread_mutex_lock(&threads_mu);
    atomic_fetch_add(&live_retired, atomic_load_explicit(&t->live, memory_order_relaxed));
    atomic_store_explicit(&t->live, 0, memory_order_relaxed);
    if (t->prev) t->prev->next = t->next;
    else threads_head = t->next;
    if (t->next) t->next->prev = t->prev;
    t->listed = false;
    pthread_mutex_unlock(&threads_mu);
}

bool lx_array_cache_enabled(void) { return LX_CACHE_ON; }

static lx_array *array_storage(lx_array *a);

lx_array *lx_array_empty(lx_dtype dtype, int ndim, const int64_t *shape) {
    lx_array *a = array_header(dtype, ndim, shape);
    return a ? array_storage(a) : NULL;
}

lx_array *lx_array_empty_valid_(lx_dtype dtype, int ndim, const int64_t *shape) {
    int64_t size = 1;
    for (int i = 0; i < ndim; i++) size *= shape[i];
    lx_array *a = array_header_sized(dtype, ndim, shape, size);
    return a ? array_storage(a) : NULL;
}

/* The data block of a new header (freed with the header on failure). */
static lx_array *array_storage(lx_array *a) {
    lx_dtype dtype = a->dtype;
    int ndim = a->ndim;
    const int64_t *shape = a->shape;
    size_t bytes = (size_t)a->size * dtype_size_(dtype), limit = atomic_load_explicit(&max_array_bytes, memory_order_relaxed);
    if (limit && bytes > limit) {
        char b[128];
        lx_fail(LX_ERR_NO_MEMORY, "array: %s array of shape %s needs %zu bytes, over the limit of %zu bytes per array",
                lx_dtype_name(dtype), lx_shape_str(ndim, shape, b, sizeof b), bytes, limit);
        header_free(a);
        live_add(-1);
        return NULL;
    }
    size_t rounded = (bytes + LX_ALIGN - 1) / LX_ALIGN * LX_ALIGN;
    if (rounded == 0) rounded = LX_ALIGN;
    a->alloc = cache_take(rounded);
    if (a->alloc) {
        a->data = align_data(a->alloc);
        return a;
    }
    if (alloc_hook) alloc_hook(bytes, alloc_hook_user);
    /* malloc + align by hand: glibc's aligned_alloc costs ~60 ns against malloc's ~11 ns for a
     * 16 KiB block (it over-allocates and splits), a few percent of a 64^3 matmul. */
    a->alloc = malloc(rounded + LX_ALIGN);
    if (!a->alloc) {
        lx_fail(LX_ERR_NO_MEMORY, "array: cannot allocate %zu bytes", rounded);
        header_free(a);
        live_add(-1);
        return NULL;
    }
    a->data = align_data(a->alloc);
    return a;
}

lx_array *lx_array_new(lx_dtype dtype, int ndim, const int64_t *shape) {
    lx_array *a = lx_array_empty(dtype, ndim, shape);
    if (a) memset(a->data, 0, lx_array_nbytes(a));
    return a;
}

lx_array *lx_array_abstract(lx_dtype dtype, int ndim, const int64_t *shape) {
    return array_header(dtype, ndim, shape);
}

lx_array *lx_array_from_data(lx_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    int64_t size = 0;
    if (check_shape(dtype, ndim, shape, &size) != LX_OK) return NULL;
    if (size > 0 && !data) {
        char b[96];
        lx_fail(LX_ERR_INVALID_ARGUMENT, "array_from_data: data is NULL for %s%s", lx_dtype_name(dtype),
                lx_shape_str(ndim, shape, b, sizeof b));
        return NULL;
    }
    lx_array *a = lx_array_empty(dtype, ndim, shape);
    if (a && a->size) memcpy(a->data, data, lx_array_nbytes(a));
    return a;
}

lx_array *lx_array_from_f32(int ndim, const int64_t *shape, const float *data) {
    return lx_array_from_data(LX_F32, ndim, shape, data);
}

lx_array *lx_array_scalar_f32(float v) { return lx_array_from_f32(0, NULL, &v); }

lx_array *lx_array_full_f32(int ndim, const int64_t *shape, float v) {
    lx_array *a = lx_array_empty(LX_F32, ndim, shape);
    if (a)
        for (int64_t i = 0; i < a->size; i++) lx_f32(a)[i] = v;
    return a;
}

lx_array *lx_array_copy(const lx_array *a) {
    if (!a) {
        lx_null_input("array_copy: input is NULL");
        return NULL;
    }
    if (lx_is_abstract(a)) return lx_array_abstract(a->dtype, a->ndim, a->shape);
    return lx_array_from_data(a->dtype, a->ndim, a->shape, a->data);
}

lx_array *lx_array_reshape_view(lx_array *a, int ndim, const int64_t *shape) {
    if (!a) {
        (void)lx_null_input("reshape: input is NULL");
        return NULL;
    }
    if (ndim < 0 || ndim > LX_MAX_DIMS) {
        lx_fail(LX_ERR_SHAPE, "reshape: ndim %d is outside 0..%d", ndim, LX_MAX_DIMS);
        return NULL;
    }
    if (ndim > 0 && !shape) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "reshape: shape is NULL for %d dimensions", ndim);
        return NULL;
    }
    int64_t dims[LX_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) {
                lx_fail(LX_ERR_SHAPE, "reshape: can only specify one unknown dimension");
                return NULL;
            }
            infer = i;
        } else if (shape[i] < 0 || !lx_mul_ok(known, shape[i], &known)) {
            char b1[128], b2[128];
            lx_fail(LX_ERR_SHAPE, "reshape: %s %lld in shape %s for array of shape %s",
                    shape[i] < 0 ? "negative dimension" : "element count overflows int64 at dimension",
                    (long long)shape[i], lx_shape_str(ndim, shape, b2, sizeof b2),
                    lx_shape_str(a->ndim, a->shape, b1, sizeof b1));
            return NULL;
        }
    }
    if (infer >= 0) {
        if (known == 0) {
            char b1[128];
            lx_fail(LX_ERR_SHAPE, "reshape: cannot infer -1 for array of shape %s when other dims are 0",
                    lx_shape_str(a->ndim, a->shape, b1, sizeof b1));
            return NULL;
        }
        dims[infer] = a->size / known;
    }
    int64_t n = 1; /* checked-arithmetic: |known| and a->size bound this product */
    for (int i = 0; i < ndim; i++) n *= dims[i];
    if (n != a->size || (infer >= 0 && known * dims[infer] != a->size)) {
        char b1[128], b2[128];
        lx_fail(LX_ERR_SHAPE, "reshape: cannot reshape array of shape %s into shape %s",
                lx_shape_str(a->ndim, a->shape, b1, sizeof b1), lx_shape_str(ndim, shape, b2, sizeof b2));
        return NULL;
    }
    lx_array *v = array_header(a->dtype, ndim, dims);
    if (!v) return NULL;
    v->data = a->data;
    v->base = lx_retain(a->base ? a->base : a);
    return v;
}

lx_array *lx_array_wrap(lx_dtype dtype, int ndim, const int64_t *shape, void *data,
                        void (*release_fn)(void *ctx), void *ctx) {
    lx_array *a = array_header(dtype, ndim, shape);
    if (!a) return NULL;
    if (!data && a->size > 0) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "array_wrap: data is NULL");
        header_free(a);
        live_add(-1);
        return NULL;
    }
    a->data = data;
    a->release_fn = release_fn;
    a->release_ctx = ctx;
    return a;
}

lx_array *lx_retain(lx_array *a) {
    if (a) a->refcount++;
    return a;
}

void lx_release(lx_array *a) {
    if (!a) return;
    if (--a->refcount > 0) return;
    lx_release(a->base);
    if (a->release_fn) a->release_fn(a->release_ctx);
    if (a->alloc) {
        /* lx_array_empty made it: its data size (dtype and size never change after) */
        size_t bytes = (size_t)a->size * dtype_size_(a->dtype);
        size_t rounded = (bytes + LX_ALIGN - 1) / LX_ALIGN * LX_ALIGN;
        if (!cache_put(a->alloc, rounded ? rounded : LX_ALIGN)) {
            if (free_hook) free_hook(bytes, free_hook_user);
            free(a->alloc);
        }
    }
    header_free(a);
    live_add(-1);
}

int64_t lx_array_live_count(void) {
    pthread_mutex_lock(&threads_mu);
    int64_t n = (int64_t)atomic_load(&live_retired);
    for (thread_arrays *t = threads_head; t; t = t->next) n += atomic_load_explicit(&t->live, memory_order_relaxed);
    pthread_mutex_unlock(&threads_mu);
    return n;
}

/* ---- pools: one growable stack of autoreleased references per thread ---- */

static _Thread_local lx_array **pool_items;
static _Thread_local size_t pool_len, pool_cap;

size_t lx_pool_open(void) { return pool_len; }

void lx_pool_close(size_t mark) {
    while (pool_len > mark) lx_release(pool_items[--pool_len]);
    if (pool_len == 0) {
        free(pool_items);
        pool_items = NULL;
        pool_cap = 0;
    }
}

void lx_pool_drain(void) { lx_pool_close(0); }

size_t lx_pool_size(void) { return pool_len; }

lx_array *lx_autorelease(lx_array *a) {
    if (!a) return NULL;
    if (pool_len == pool_cap) {
        size_t cap = pool_cap ? pool_cap * 2 : 64;
        lx_array **items = realloc(pool_items, cap * sizeof *items);
        if (!items) {
            /* Cannot track it: release now rather than leak, and report the failure. */
            lx_release(a);
            lx_fail(LX_ERR_NO_MEMORY, "pool: out of memory");
            return NULL;
        }
        pool_items = items;
        pool_cap = cap;
    }
    pool_items[pool_len++] = a;
    return a;
}

/* ---- access helpers ---- */

size_t lx_array_nbytes(const lx_array *a) { return (size_t)a->size * lx_dtype_size(a->dtype); }

bool lx_shape_eq(const lx_array *a, int ndim, const int64_t *shape) {
    if (a->ndim != ndim) return false;
    for (int i = 0; i < ndim; i++)
        if (a->shape[i] != shape[i]) return false;
    return true;
}

bool lx_same_shape(const lx_array *a, const lx_array *b) { return lx_shape_eq(a, b->ndim, b->shape); }

const char *lx_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "(");
    for (int i = 0; i < ndim; i++)
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%lld", i ? ", " : "",
                              (long long)shape[i]);
    snprintf(buf + n, n < cap ? cap - n : 0, ndim == 1 ? ",)" : ")");
    return buf;
}

const char *lx_array_sig(const lx_array *a, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "%s[", lx_dtype_name(a->dtype));
    for (int i = 0; i < a->ndim; i++)
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s%lld", i ? "," : "",
                              (long long)a->shape[i]);
    snprintf(buf + n, n < cap ? cap - n : 0, "]");
    return buf;
}

double lx_array_get(const lx_array *a, int64_t i) {
    switch (a->dtype) {
    case LX_F32: return lx_f32(a)[i];
    case LX_I32: return lx_i32(a)[i];
    case LX_U32: return lx_u32(a)[i];
    case LX_BOOL: return lx_bool(a)[i];
    case LX_I8: return lx_i8(a)[i];
    case LX_BF16: {
        uint32_t bits = (uint32_t)((const uint16_t *)a->data)[i] << 16;
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
    default: return NAN;
    }
}

/* ---- comparisons ---- */

bool lx_array_equal(const lx_array *a, const lx_array *b) {
    if (!a || !b || a->dtype != b->dtype || !lx_same_shape(a, b)) return false;
    if (lx_is_abstract(a) || lx_is_abstract(b)) return lx_is_abstract(a) && lx_is_abstract(b);
    return memcmp(a->data, b->data, lx_array_nbytes(a)) == 0;
}

/* Map a float's bits onto a line where adjacent floats differ by one. */
static int64_t ordered_bits(float f) {
    int32_t i;
    memcpy(&i, &f, 4);
    return i < 0 ? -(int64_t)(i & 0x7fffffff) : (int64_t)i;
}

uint32_t lx_ulp_distance(float a, float b) {
    if (a == b) return 0;
    if (isnan(a) || isnan(b)) return UINT32_MAX;
    int64_t d = ordered_bits(a) - ordered_bits(b);
    if (d < 0) d = -d;
    return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

uint32_t lx_array_max_ulp(const lx_array *a, const lx_array *b, int64_t *ndiff) {
    uint32_t worst = 0;
    int64_t diff = 0;
    if (!a || !b || a->dtype != LX_F32 || b->dtype != LX_F32 || !lx_same_shape(a, b)) {
        if (ndiff) *ndiff = -1;
        return UINT32_MAX;
    }
    for (int64_t i = 0; i < a->size; i++) {
        uint32_t d = lx_ulp_distance(lx_f32(a)[i], lx_f32(b)[i]);
        if (d) diff++;
        if (d > worst) worst = d;
    }
    if (ndiff) *ndiff = diff;
    return worst;
}

bool lx_array_allclose(const lx_array *a, const lx_array *b, double rtol, double atol) {
    if (!a || !b || !lx_same_shape(a, b) || lx_is_abstract(a) || lx_is_abstract(b)) return false;
    for (int64_t i = 0; i < a->size; i++) {
        double x = lx_array_get(a, i), y = lx_array_get(b, i);
        if (isnan(x) || isnan(y)) return false;
        if (x == y) continue; /* also equal infinities */
        if (fabs(x - y) > atol + rtol * fabs(y)) return false;
    }
    return true;
}

/* ---- printing ---- */

/* A float as %.9g with numpy's mark of a float: "1." for 1, "1.e+10" for 1e10 (inf, nan as is). */
static void print_float(FILE *f, double v) {
    char buf[48];
    snprintf(buf, sizeof buf, "%.9g", v);
    if (!isfinite(v) || strchr(buf, '.')) {
        fputs(buf, f);
        return;
    }
    char *e = strchr(buf, 'e');
    if (e) fprintf(f, "%.*s.%s", (int)(e - buf), buf, e);
    else fprintf(f, "%s.", buf);
}

static void print_elem(FILE *f, const lx_array *a, int64_t i) {
    switch (a->dtype) {
    case LX_F32: case LX_BF16: print_float(f, lx_array_get(a, i)); break;
    case LX_I32: fprintf(f, "%d", lx_i32(a)[i]); break;
    case LX_I8: fprintf(f, "%d", lx_i8(a)[i]); break;
    case LX_U32: fprintf(f, "%u", lx_u32(a)[i]); break;
    case LX_BOOL: fputs(lx_bool(a)[i] ? "True" : "False", f); break;
    case LX_DTYPE_COUNT: fputs("?", f); break; /* no default: -Wswitch names a dtype added without a case */
    }
}

static void print_rec(FILE *f, const lx_array *a, int axis, int64_t offset, int64_t stride) {
    if (axis == a->ndim) {
        print_elem(f, a, offset);
        return;
    }
    int64_t inner = stride / (a->shape[axis] ? a->shape[axis] : 1);
    fputc('[', f);
    for (int64_t i = 0; i < a->shape[axis]; i++) {
        if (i) {
            if (axis == a->ndim - 1) {
                fputc(' ', f);
            } else {
                for (int k = axis; k < a->ndim - 1; k++) fputc('\n', f);
                for (int k = 0; k <= axis; k++) fputc(' ', f);
            }
        }
        print_rec(f, a, axis + 1, offset + i * inner, inner);
    }
    fputc(']', f);
}

lx_status lx_array_fprint(FILE *f, const lx_array *a) {
    if (!f) return lx_fail(LX_ERR_INVALID_ARGUMENT, "array_fprint: FILE is NULL");
    if (!a) return lx_null_input("array_fprint: input is NULL");
    if (lx_is_abstract(a)) {
        char buf[128];
        fprintf(f, "ShapeDtypeStruct(shape=%s, dtype=%s)", lx_shape_str(a->ndim, a->shape, buf, sizeof buf),
                lx_dtype_name(a->dtype));
        return LX_OK;
    }
    print_rec(f, a, 0, 0, a->size);
    return LX_OK;
}
