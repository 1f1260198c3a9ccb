/* The array storage cache (src/core/array.c, lx_array_cache_* in array.h): a released array's
 * data block serves the next array of the same (64-byte rounded) size without a heap allocation
 * (the allocation hook does not fire), lx_array_new still zeroes a reused block, the limit and
 * release calls bound and empty it, a block released on another thread is reused (and a release
 * empties other threads' per-thread fronts), the live count sums all threads, and a process
 * that meets more sizes than the table has classes keeps caching. Sanitizer builds bypass the
 * cache: there every allocation reaches the heap, which is checked instead. */
#include <pthread.h>

#include "lx_test.h"

static size_t hooks;
static void hook(size_t nbytes, void *user) {
    (void)nbytes;
    (void)user;
    hooks++;
}

static size_t count_new(int64_t n, void **data) {
    hooks = 0;
    lx_set_alloc_hook(hook, NULL);
    lx_array *a = lx_array_new(LX_F32, 1, (const int64_t[]){n});
    lx_set_alloc_hook(NULL, NULL);
    if (data) *data = a ? a->data : NULL;
    lx_release(a);
    return hooks;
}

static void test_reuse_by_size(void) {
    bool on = lx_array_cache_enabled();
    CHECK_EQ_INT(lx_array_cache_enabled(), !LX_TEST_ASAN); /* only the sanitizer build bypasses it */
    lx_array_cache_release();
    CHECK_EQ_INT(lx_array_cache_bytes(), 0);
    lx_array *a = lx_array_new(LX_F32, 2, (const int64_t[]){33, 7}); /* 924 bytes -> 960 */
    void *d = a->data;
    for (int64_t i = 0; i < a->size; i++) lx_f32(a)[i] = 1.0f + (float)i;
    lx_release(a);
    CHECK_EQ_INT(lx_array_cache_bytes(), on ? 960 : 0);
    /* the same rounded size, another shape and dtype: the same block, no heap allocation, zeroed */
    hooks = 0;
    lx_set_alloc_hook(hook, NULL);
    lx_array *b = lx_array_new(LX_I32, 1, (const int64_t[]){235}); /* 940 bytes -> 960 */
    lx_set_alloc_hook(NULL, NULL);
    CHECK_EQ_INT(hooks, on ? 0 : 1);
    if (on) CHECK(b->data == d);
    bool zero = true;
    for (int64_t i = 0; i < b->size; i++) zero = zero && lx_i32(b)[i] == 0;
    CHECK(zero);
    CHECK(((uintptr_t)b->data % LX_ALIGN) == 0);
    lx_release(b);
    /* another size misses */
    CHECK_EQ_INT(count_new(1000, NULL), 1);
    /* views and wrapped arrays own no block: releasing them caches nothing */
    lx_array_cache_release();
    float ext[8] = {0};
    lx_array *w = lx_array_wrap(LX_F32, 1, (const int64_t[]){8}, ext, NULL, NULL);
    lx_array *base = lx_array_new(LX_F32, 1, (const int64_t[]){8});
    lx_array *v = lx_array_reshape_view(base, 2, (const int64_t[]){2, 4});
    lx_release(w);
    lx_release(v);
    CHECK_EQ_INT(lx_array_cache_bytes(), 0);
    lx_release(base);
    CHECK_EQ_INT(lx_array_cache_bytes(), on ? 64 : 0);
    lx_array_cache_release();
    CHECK_EQ_INT(lx_array_cache_bytes(), 0);
}

static void test_limit(void) {
    size_t limit = lx_array_cache_limit();
    lx_array_cache_set_limit(0);
    void *d1 = NULL;
    CHECK_EQ_INT(count_new(4096, &d1), 1);
    CHECK_EQ_INT(count_new(4096, NULL), 1); /* nothing was kept */
    CHECK_EQ_INT(lx_array_cache_bytes(), 0);
    /* a limit below what is held empties the cache */
    lx_array_cache_set_limit(limit);
    count_new(4096, NULL);
    CHECK(!lx_array_cache_enabled() || lx_array_cache_bytes() == 16384);
    lx_array_cache_set_limit(1000);
    CHECK_EQ_INT(lx_array_cache_bytes(), 0);
    count_new(4096, NULL); /* 16 KiB does not fit under 1000 bytes */
    CHECK_EQ_INT(lx_array_cache_bytes(), 0);
    lx_array_cache_set_limit(limit);
    CHECK_EQ_INT(lx_array_cache_limit(), limit);
}

static void *release_there(void *p) {
    lx_release(p);
    return NULL;
}

static void test_other_thread(void) {
    lx_array_cache_release();
    lx_array *a = lx_array_new(LX_F32, 1, (const int64_t[]){5000});
    void *d = a->data;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, release_there, a) == 0);
    pthread_join(t, NULL);
    void *d2 = NULL;
    size_t h = count_new(5000, &d2);
    if (lx_array_cache_enabled()) CHECK(h == 0 && d2 == d);
    else CHECK_EQ_INT(h, 1);
    lx_array_cache_release();
}

/* 300 sizes through a table of 256 size classes. Each size's block is released and taken back
 * (the array stays alive), so every class ends with an empty stack; then the last size's block is
 * released: a class whose blocks are all taken serves a new size, so it is cached (without the
 * takeover the full table would refuse it). */
static void test_many_sizes(void) {
    lx_array_cache_release();
    enum { N = 300 };
    static lx_array *held[N + 1];
    for (int64_t k = 1; k <= N; k++) {
        lx_release(lx_array_new(LX_F32, 1, (const int64_t[]){k * 16}));
        held[k] = lx_array_new(LX_F32, 1, (const int64_t[]){k * 16});
    }
    lx_release(held[N]);
    held[N] = NULL;
    CHECK_EQ_INT(lx_array_cache_bytes(), lx_array_cache_enabled() ? N * 64 : 0);
    CHECK_EQ_INT(count_new(N * 16, NULL), lx_array_cache_enabled() ? 0 : 1);
    for (int k = 1; k <= N; k++) lx_release(held[k]);
    lx_array_cache_release();
}

/* Another thread's front (its last small released blocks, kept without the mutex): a release on
 * this thread empties it before that thread's next array, and the live-array count sums every
 * thread's arrays. The hook counter is the worker's own while main waits at a barrier. */
static pthread_barrier_t bar;
static lx_array *worker_held;
static size_t worker_fresh;
static void *front_worker(void *p) {
    (void)p;
    lx_release(lx_array_new(LX_F32, 1, (const int64_t[]){300})); /* into this thread's front */
    worker_held = lx_array_new(LX_F32, 1, (const int64_t[]){7});  /* alive while main counts */
    pthread_barrier_wait(&bar); /* main: counts, then lx_array_cache_release() */
    pthread_barrier_wait(&bar);
    worker_fresh = count_new(300, NULL); /* the front was emptied: a heap block */
    pthread_barrier_wait(&bar);
    return NULL;
}

static void test_front_other_thread(void) {
    lx_array_cache_release();
    int64_t live0 = lx_array_live_count();
    pthread_t t;
    CHECK(pthread_barrier_init(&bar, NULL, 2) == 0);
    CHECK(pthread_create(&t, NULL, front_worker, NULL) == 0);
    pthread_barrier_wait(&bar);
    CHECK_EQ_INT(lx_array_live_count(), live0 + 1); /* the worker's array */
    lx_array_cache_release();
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    pthread_join(t, NULL);
    CHECK_EQ_INT(worker_fresh, 1);
    lx_release(worker_held); /* made there, released here: the sum is back where it was */
    CHECK_EQ_INT(lx_array_live_count(), live0);
    pthread_barrier_destroy(&bar);
    lx_array_cache_release();
}

int main(void) {
    RUN(test_reuse_by_size);
    RUN(test_limit);
    RUN(test_other_thread);
    RUN(test_many_sizes);
    RUN(test_front_other_thread);
    lx_pool_drain();
    return lx_test_finish();
}
