/* The library's allocator front (src/core/heap.c) and what it keeps per thread: realloc to 0
 * bytes, the cache's byte accounting, and a thread that runs a backward pass and exits leaves no
 * block behind (its spare tape and cached blocks are freed at its exit); nor does one that runs a
 * Linen init through a layer helper (linen_dense: the per-thread module cache of
 * src/linen/layers_common.c is released at its exit).
 *
 * The leak check counts the live heap blocks of the whole process through replacements of
 * malloc & co (the test links liblinnx statically; glibc lets a program replace them), so it runs
 * where the sanitizers do not replace malloc themselves; the sanitizer build's LeakSanitizer
 * checks the same program at exit. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

#include "lx_test.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"

void *lx_heap_malloc_(size_t n);
void *lx_heap_realloc_(void *p, size_t n);
void lx_heap_free_(void *p);
size_t lx_heap_held_(void);

#define HEAP_COUNTED (!LX_TEST_ASAN)

static atomic_long live_blocks; /* allocations minus frees, every thread */

#if HEAP_COUNTED
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void __libc_free(void *);

static void *counted(void *p) {
    if (p) atomic_fetch_add(&live_blocks, 1);
    return p;
}
void *malloc(size_t n) { return counted(__libc_malloc(n)); }
void *calloc(size_t n, size_t s) { return counted(__libc_calloc(n, s)); }
void *realloc(void *p, size_t n) {
    if (!p) return counted(__libc_realloc(p, n));
    void *q = __libc_realloc(p, n);
    if (!q && n == 0) atomic_fetch_sub(&live_blocks, 1); /* glibc freed p */
    return q;
}
void free(void *p) {
    if (p) atomic_fetch_sub(&live_blocks, 1);
    __libc_free(p);
}
void *aligned_alloc(size_t a, size_t n) { return counted(__libc_memalign(a, n)); }
void *memalign(size_t a, size_t n) { return counted(__libc_memalign(a, n)); }
int posix_memalign(void **out, size_t a, size_t n) {
    void *p = counted(__libc_memalign(a, n));
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}
#endif

/* realloc(p, 0) releases p's bytes and hands back a minimal block (never NULL on success: every
 * caller in the library reads NULL as "out of memory, p still mine"), in every build. */
static void test_realloc_zero(void) {
    char *p = lx_heap_malloc_(3000);
    CHECK(p != NULL);
    if (!p) return;
    memset(p, 7, 3000);
    char *q = lx_heap_realloc_(p, 0);
    CHECK(q != NULL);
    if (q) CHECK(malloc_usable_size(q) <= 24);
    lx_heap_free_(q);
    char *s = lx_heap_malloc_(8);
    CHECK(s != NULL);
    char *t = lx_heap_realloc_(s, 0); /* a minimal block already: may stay where it is */
    CHECK(t != NULL);
    lx_heap_free_(t);
    /* shrinking to a few bytes keeps the contents' head */
    char *u = lx_heap_malloc_(100);
    CHECK(u != NULL);
    if (!u) return;
    memcpy(u, "abc", 4);
    char *v = lx_heap_realloc_(u, 4);
    CHECK(v != NULL && strcmp(v, "abc") == 0);
    lx_heap_free_(v);
}

/* The cache's held bytes are the usable bytes of its blocks (HELD_MAX bounds real memory): a
 * block whose usable size is almost twice its class (one malloc'd elsewhere, of 2000 bytes, serves
 * the 1 KiB class) counts all its bytes, and taking it back subtracts as much. */
static void test_held_bytes(void) {
    if (LX_TEST_ASAN) { /* the sanitizer build bypasses the cache (heap.c) */
        printf("held bytes: skipped, this build has no block cache\n");
        return;
    }
    size_t h0 = lx_heap_held_();
    void *probe = malloc(64);
    lx_heap_free_(probe);
    size_t h1 = lx_heap_held_();
    CHECK_EQ_INT(h1 - h0, malloc_usable_size(probe = lx_heap_malloc_(64)));
    CHECK_EQ_INT(lx_heap_held_(), h0); /* the same block came back */
    lx_heap_free_(probe);
    h1 = lx_heap_held_();
    void *big = malloc(2000);
    size_t u = malloc_usable_size(big);
    CHECK(u >= 2000);
    lx_heap_free_(big);
    CHECK_EQ_INT(lx_heap_held_() - h1, u);
    void *again = lx_heap_malloc_(1010); /* the 1 KiB class (1016 usable): that block serves it */
    CHECK(again == big);
    CHECK_EQ_INT(lx_heap_held_(), h1);
    lx_heap_free_(again);
}

/* One backward pass of sum(x * x) on the calling thread: the gradient is 2x. */
static void *backward_once(void *arg) {
    bool *ok = arg;
    size_t mark = lx_pool_open();
    lx_array *x = lx_array_from_data(LX_F32, 1, (int64_t[]){4}, (const float[]){1, 2, 3, 4});
    lx_tape *t = NULL;
    lx_array *g = NULL;
    *ok = x && lx_tape_new(&t) == LX_OK && lx_tape_watch(t, x) == LX_OK;
    if (*ok) {
        lx_array *y = lx_sum(lx_mul(x, x), LX_ALL_AXES, false);
        *ok = y && lx_tape_backward(t, y, 1, &x, &g) == LX_OK && g;
    }
    if (*ok) {
        const float *d = lx_f32(g);
        *ok = d && d[0] == 2 && d[1] == 4 && d[2] == 6 && d[3] == 8;
    }
    lx_release(g);
    lx_tape_free(t);
    lx_release(x);
    lx_pool_close(mark);
    return NULL;
}

static bool run_thread_fn(void *(*fn)(void *)) {
    pthread_t th;
    bool ok = false;
    if (pthread_create(&th, NULL, fn, &ok) != 0) return false;
    pthread_join(th, NULL);
    return ok;
}
static bool run_thread(void) { return run_thread_fn(backward_once); }

/* A module whose __call__ is linen_dense(s, NULL, 3, x): the helper's module comes from ll_new,
 * which keeps it in the thread's module cache. */
static lx_status mlp_call(linen_scope *s, const lx_call *c, lx_value *out) {
    lx_array *y = linen_dense(s, NULL, 3, c->args[0].u.array);
    if (!y) return lx_last_status();
    *out = lx_array_v(lx_retain(y)); /* y is pool-owned */
    return LX_OK;
}
static const linen_method MLP_METHODS[] = {LINEN_METHOD("__call__", mlp_call)};
static const linen_type MLP = {.name = "Mlp", .methods = MLP_METHODS, .nmethods = 1};

/* One Linen init on the calling thread: params/Dense_0/kernel is (2, 3). */
static void *dense_init_once(void *arg) {
    bool *ok = arg;
    size_t mark = lx_pool_open();
    linen_module *m = NULL;
    lx_array *x = lx_array_from_data(LX_F32, 2, (int64_t[]){1, 2}, (const float[]){1, 2});
    lx_tree *vars = NULL;
    *ok = x && linen_module_new(&MLP, NULL, &m) == LX_OK &&
          linen_init(m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &vars) == LX_OK;
    const lx_value *k = NULL;
    if (*ok && lx_tree_get_path(vars, "params/Dense_0/kernel", &k) != LX_OK) k = NULL;
    *ok = *ok && k && k->kind == LX_V_ARRAY && k->u.array->ndim == 2 && k->u.array->shape[0] == 2 &&
          k->u.array->shape[1] == 3;
    lx_tree_release(vars);
    lx_release(x);
    linen_module_release(m);
    lx_pool_close(mark);
    return NULL;
}

/* Threads that each run a backward pass and exit leave no heap block behind: the live block
 * count after the 20th is the count after the 4th (the first few fill process-wide caches). */
static void test_thread_exit_frees(void) {
    for (int i = 0; i < 4; i++) CHECK(run_thread());
    long after4 = atomic_load(&live_blocks);
    for (int i = 4; i < 20; i++) CHECK(run_thread());
    long after20 = atomic_load(&live_blocks);
    if (HEAP_COUNTED) {
        LX_TEST_REPORT_(after20 == after4, "16 more threads left %ld heap blocks behind", after20 - after4);
        /* the counter counts: a block the test allocates itself shows */
        void *p = malloc(32);
        CHECK_EQ_INT(atomic_load(&live_blocks), after20 + 1);
        free(p);
    } else {
        printf("thread exit: block count skipped under the sanitizers (LeakSanitizer checks at exit)\n");
    }
}

/* The same for threads that each run one Linen init through linen_dense and exit: the module
 * cache ll_new keeps per thread goes with the thread (a pthread key's destructor), as the heap
 * cache and the spare tape do; without it every thread left its cached Dense behind. */
static void test_thread_exit_frees_module_cache(void) {
    for (int i = 0; i < 4; i++) CHECK(run_thread_fn(dense_init_once));
    long after4 = atomic_load(&live_blocks);
    for (int i = 4; i < 20; i++) CHECK(run_thread_fn(dense_init_once));
    long after20 = atomic_load(&live_blocks);
    if (HEAP_COUNTED)
        LX_TEST_REPORT_(after20 == after4, "16 more Linen-init threads left %ld heap blocks behind", after20 - after4);
    else
        printf("thread exit (linen): block count skipped under the sanitizers (no module cache there)\n");
}

int main(void) {
    RUN(test_realloc_zero);
    RUN(test_held_bytes);
    RUN(test_thread_exit_frees);
    RUN(test_thread_exit_frees_module_cache);
    return lx_test_finish();
}
