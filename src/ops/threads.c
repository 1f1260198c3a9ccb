/* The one thread-count setting that linnx's thread pool (team.h) and OpenBLAS obey. */
#include "linnx/threads.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

static atomic_int lx_threads; /* 0 until first use */
static pthread_once_t lx_threads_once = PTHREAD_ONCE_INIT;

/* The CPUs this process may run on: its affinity mask where the OS has one (taskset, cgroups'
 * cpusets), else the online processors. */
static int usable_cpus(void) {
#if defined(__linux__) && defined(SYS_sched_getaffinity)
    unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {0};
    long bytes = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask); /* bytes written, or -1 */
    if (bytes > 0) {
        int n = 0;
        for (size_t i = 0; i < (size_t)bytes / sizeof(unsigned long); i++) n += __builtin_popcountl(mask[i]);
        if (n >= 1) return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 && n <= 4096 ? (int)n : 1;
}

static int default_threads(void) {
    const char *env = getenv("LINNX_THREADS");
    if (env && *env) {
        char *end = NULL;
        long n = strtol(env, &end, 10);
        /* A malformed value cannot be reported from here (no call to fail); the default wins. */
        if (end && *end == '\0' && n >= 1 && n <= 4096) return (int)n;
    }
    return usable_cpus();
}

static void apply(int n) {
    atomic_store(&lx_threads, n);
    openblas_set_num_threads(n);
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
