/* The one thread-count setting that OpenBLAS and linnx's OpenMP loops obey. */
#include "linnx/threads.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static atomic_int lx_threads; /* 0 until first use */
static pthread_once_t lx_threads_once = PTHREAD_ONCE_INIT;

static int default_threads(void) {
    const char *env = getenv("LINNX_THREADS");
    if (env && *env) {
        char *end = NULL;
        long n = strtol(env, &end, 10);
        /* A malformed value cannot be reported from here (no call to fail); the default wins. */
        if (end && *end == '\0' && n >= 1 && n <= 4096) return (int)n;
    }
    int n = omp_get_num_procs();
    return n >= 1 ? n : 1;
}

static void apply(int n) {
    atomic_store(&lx_threads, n);
    openblas_set_num_threads(n);
    /* Every linnx parallel region passes num_threads(lx_num_threads()) explicitly (op_internal.h,
     * LX_PAR_THREADS), so this ICV is not what sizes our teams: it only makes a user's own OpenMP
     * regions on the thread that applied the setting agree with it. */
    omp_set_num_threads(n);
}

static void init_once(void) {
    if (atomic_load(&lx_threads) == 0) apply(default_threads());
}

int lx_num_threads(void) {
    pthread_once(&lx_threads_once, init_once);
    int n = atomic_load(&lx_threads);
    return n >= 1 ? n : 1;
}

lx_status lx_set_num_threads(int n) {
    if (n < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "set_num_threads: thread count must be >= 0, got %d", n);
    pthread_once(&lx_threads_once, init_once);
    apply(n == 0 ? default_threads() : n);
    return LX_OK;
}
