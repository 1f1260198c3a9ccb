/* The library's allocator front (src/core/fault_inject.h routes every malloc, calloc, realloc and
 * free of the library here): a per-thread cache of freed blocks by size class in front of malloc.
 *
 * Why: a training step or an inference call builds the same short-lived structures every time
 * (tape records, tree nodes, keys, scopes, module frames, optimizer-state maps) and frees them
 * before the next one starts. With the cache, the second and every later call take those blocks
 * back from the lists the call before filled and never enter malloc (tests/test_train_steady.c
 * counts every heap allocation of a step: zero), which also costs a few instructions where
 * malloc + free cost a hundred.
 *
 * Every cached block is a plain malloc block (its size read back with malloc_usable_size), so the
 * cache stays invisible to callers: what the library returns may be released with free() and what
 * it is handed may have come from malloc. A request takes a block from the list of its size class
 * (classes are glibc's chunk sizes up to 1 KiB, then powers of two up to 64 KiB, and a request of a
 * power-of-two class is rounded up to it so its block comes back to the same list); a freed block
 * goes to the list of the largest class it can serve, unless the list is full. Bounded: at most
 * LIST_MAX blocks per class and HELD_MAX bytes per thread; a thread's lists are freed when it
 * exits. Off under the sanitizers (so ASan sees every use after free and LSan every leak) and
 * where malloc_usable_size is missing (not glibc).
 *
 * realloc(p, 0) releases p and returns a minimal block, in every build (glibc's own would free p
 * and return NULL, which each caller here reads as "out of memory, p is still yours": a double
 * free); NULL always means out of memory with p untouched. */
#include "fault_inject.h"
#include "team.h"
/* The forced include defined these as macros for every library source, this one included: here
 * they must name the C library's functions. */
#undef malloc
#undef calloc
#undef realloc
#undef aligned_alloc
#undef free

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__) || defined(LINNX_SANITIZE) || !defined(__GLIBC__)
#define HEAP_CACHE_ON 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define HEAP_CACHE_ON 0
#endif
#endif
#ifndef HEAP_CACHE_ON
#define HEAP_CACHE_ON 1
#endif

#if HEAP_CACHE_ON
#include <malloc.h>

enum {
    SMALL_MAX = 1024,                  /* chunk sizes 32, 48, ..., 1024: one class each */
    NSMALL = SMALL_MAX / 16 + 1,       /* indices 2..64 used */
    NLARGE = 6,                        /* 2, 4, 8, 16, 32, 64 KiB */
    LARGE_MAX = SMALL_MAX << NLARGE,   /* 64 KiB */
    NCLASS = NSMALL + NLARGE,
    LIST_MAX = 512,                    /* blocks per class */
    LIST_MAX_LARGE = 16,
};
#define HELD_MAX ((size_t)8 << 20) /* bytes cached per thread */

typedef struct block { /* a cached block's first bytes (every block has 24 usable at least) */
    struct block *next;
    size_t usable; /* its malloc_usable_size, what `held` counts for it */
} block;

typedef struct {
    block *head[NCLASS];
    uint16_t n[NCLASS];
    size_t held; /* the usable bytes of the cached blocks (what HELD_MAX bounds) */
    bool registered, dead;
} heap_cache;

static _Thread_local heap_cache cache;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

/* glibc's chunk size for a request of n bytes (8 bytes of header, 16-byte steps, 32 at least). */
static inline size_t chunk_of(size_t n) {
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static inline int large_class(size_t chunk) { /* the smallest power-of-two class >= chunk */
    int k = 0;
    while ((size_t)(SMALL_MAX << (k + 1)) < chunk) k++;
    return NSMALL + k;
}

static inline size_t class_bytes(int c) { /* the usable size a block of class c has at least */
    return c < NSMALL ? (size_t)c * 16 - 8 : ((size_t)SMALL_MAX << (c - NSMALL + 1)) - 8;
}

/* The class a request is served from, or -1 when it is not cached. */
static inline int request_class(size_t n) {
    size_t ch = chunk_of(n);
    if (ch <= SMALL_MAX) return (int)(ch / 16);
    if (ch > LARGE_MAX) return -1;
    return large_class(ch);
}

/* The largest class a block of `usable` bytes serves, or -1. */
static inline int block_class(size_t usable) {
    size_t ch = usable + 8;
    if (ch < 32) return -1;
    if (ch <= SMALL_MAX) return (int)(ch / 16);
    if (ch < 2 * (size_t)SMALL_MAX) return NSMALL - 1; /* serves every small request */
    int c = NSMALL;
    while (c + 1 < NCLASS && ch >= ((size_t)SMALL_MAX << (c + 1 - NSMALL + 1))) c++;
    return ch > 2 * (size_t)LARGE_MAX ? -1 : c;
}

static void drain(heap_cache *h) {
    for (int c = 0; c < NCLASS; c++) {
        while (h->head[c]) {
            block *b = h->head[c];
            h->head[c] = b->next;
            free(b);
        }
        h->n[c] = 0;
    }
    h->held = 0;
}

static void on_thread_exit(void *p) {
    (void)p;
    drain(&cache);
    cache.dead = true; /* frees after this point (other destructors) go straight to free */
}

static void make_key(void) { (void)lx_tls_key_create(&exit_key, on_thread_exit); }

static inline void register_exit(heap_cache *h) {
    if (h->registered) return;
    pthread_once(&exit_once, make_key);
    pthread_setspecific(exit_key, h); /* non-NULL, so the destructor runs */
    h->registered = true;
}

void *lx_heap_malloc_(size_t n) {
    int c = request_class(n);
    if (c < 0) return malloc(n);
    heap_cache *h = &cache;
    block *b = h->head[c];
    /* only the exact class serves: a block borrowed from a larger class would go back to that
     * class's list when freed, so after a first step that borrowed, the smaller class is short
     * by the loan and the second step's peak mallocs there (tests/test_train_steady.c counted 1-2
     * in Linen TrainState steps when two larger classes could lend) */
    if (b) {
        h->head[c] = b->next;
        h->n[c]--;
        h->held -= b->usable;
        return b;
    }
    /* a miss: a block of the whole class, so it comes back to this list when freed */
    return malloc(class_bytes(c));
}

void lx_heap_free_(void *p) {
    if (!p) return;
    heap_cache *h = &cache;
    size_t u = malloc_usable_size(p);
    int c = block_class(u);
    if (c < 0 || h->dead || h->n[c] >= (c < NSMALL ? LIST_MAX : LIST_MAX_LARGE) || h->held + u > HELD_MAX) {
        free(p);
        return;
    }
    register_exit(h);
    block *b = p;
    b->next = h->head[c];
    b->usable = u;
    h->head[c] = b;
    h->n[c]++;
    h->held += u; /* u, not class_bytes(c): a block may be up to twice its class (realloc'd ones) */
}

void *lx_heap_calloc_(size_t n, size_t s) {
    if (s && n > SIZE_MAX / s) return NULL;
    size_t bytes = n * s;
    if (request_class(bytes) < 0) return calloc(n, s);
    void *p = lx_heap_malloc_(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void *lx_heap_realloc_(void *p, size_t n) {
    if (!p) return lx_heap_malloc_(n);
    size_t u = malloc_usable_size(p);
    /* fits, and not much smaller; n == 0 only keeps a block of the smallest class */
    if (n <= u && n + 4096 > u && (n || u <= class_bytes(2))) return p;
    if (n > LARGE_MAX && u > LARGE_MAX) return realloc(p, n);
    void *q = lx_heap_malloc_(n ? n : 1);
    if (!q) return NULL;
    memcpy(q, p, u < n ? u : n);
    lx_heap_free_(p);
    return q;
}

size_t lx_heap_held_(void) { return cache.held; }

#else /* no cache */

void *lx_heap_malloc_(size_t n) { return malloc(n); }
void *lx_heap_calloc_(size_t n, size_t s) { return calloc(n, s); }
void *lx_heap_realloc_(void *p, size_t n) { return realloc(p, n ? n : 1); } /* see the top comment */
void lx_heap_free_(void *p) { free(p); }
size_t lx_heap_held_(void) { return 0; }

#endif
