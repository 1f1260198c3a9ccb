/* Unloading the shared library stops its thread pool (src/core/team.c, team_shutdown): after a
 * parallel loop has started the pool's workers, dlclose(liblinnx.so) returns with every worker
 * joined, so the process has the threads it had before dlopen and none is left in unmapped code
 * (a worker still spinning or parked there would crash when it next ran, or leak). Also: loading
 * and unloading without ever starting the pool, loading it again after an unload, and unloading
 * in a child of fork() (whose pool is empty: the parent's workers are not its threads).
 *
 * The program loads the library with dlopen and calls it through dlsym only: it uses no linnx
 * symbol of its own (CMake links the static library to every test; nothing of it is pulled in).
 * LINNX_SHARED_LIB names the library (CMakeLists.txt sets it); without it the test is skipped. */
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "linnx/array.h"

static int passed, failed;
#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (cond) {                                                          \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
        }                                                                    \
    } while (0)

static const char *lib;

static int count_threads(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* The thread count once it has settled at `want` (a joined thread may leave /proc a moment after
 * pthread_join returns), or what it is after two seconds. */
static int threads_settled(int want) {
    /* Under the sanitizers their runtimes start and stop threads of their own (the sanitize build
     * saw 4 threads after dlclose and 2 before dlopen, 1 later): there CMake sets this and only
     * the crash checks (a worker or a destructor left in unmapped code) and the unmapping count. */
    if (getenv("LINNX_UNLOAD_NO_THREAD_COUNT")) return want;
    int n = count_threads();
    for (int i = 0; i < 200 && n != want; i++) sleep_ms(10), n = count_threads();
    return n;
}

static void *sym(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p) fprintf(stderr, "dlsym %s: %s\n", name, dlerror());
    return p;
}

/* exp over a 1 Mi-element array on 4 threads: an elementwise loop that runs on the pool. Returns
 * whether every value is right. */
static int run_parallel_loop(void *h) {
    lx_status (*set_threads)(int) = (lx_status(*)(int))sym(h, "lx_set_num_threads");
    lx_array *(*full)(int, const int64_t *, float) = (lx_array * (*)(int, const int64_t *, float)) sym(h, "lx_array_full_f32");
    lx_array *(*ex)(lx_array *) = (lx_array * (*)(lx_array *)) sym(h, "lx_exp");
    void (*release)(lx_array *) = (void (*)(lx_array *))sym(h, "lx_release");
    void (*drain)(void) = (void (*)(void))sym(h, "lx_pool_drain");
    if (!set_threads || !full || !ex || !release || !drain) return 0;
    if (set_threads(4) != LX_OK) return 0;
    const int64_t n = 1 << 20;
    lx_array *x = full(1, &n, 0.0f);
    lx_array *y = x ? ex(x) : NULL;
    int ok = y != NULL && y->size == n;
    for (int64_t i = 0; ok && i < n; i++) ok = lx_f32(y)[i] == 1.0f; /* exp(0) is exactly 1 */
    release(x);
    drain(); /* y was autoreleased to this thread's base pool */
    return ok;
}

static int unloaded(void) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
    if (h) dlclose(h);
    return h == NULL;
}

static void test_never_started(int base) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    CHECK(h != NULL, "%s", dlerror());
    if (!h) return;
    CHECK(dlclose(h) == 0, "%s", dlerror());
    CHECK(unloaded(), "the library is still mapped after dlclose");
    int n = threads_settled(base);
    CHECK(n == base, "%d threads after loading and unloading, %d before", n, base);
}

static void test_started_then_unloaded(int base, int round) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    CHECK(h != NULL, "%s", dlerror());
    if (!h) return;
    CHECK(run_parallel_loop(h), "round %d: exp on the pool gave wrong values", round);
    int during = count_threads();
    CHECK(during > base, "round %d: the pool did not start (%d threads, %d before)", round, during, base);
    CHECK(dlclose(h) == 0, "%s", dlerror());
    CHECK(unloaded(), "round %d: the library is still mapped after dlclose", round);
    /* a worker left behind would be spinning in unmapped code now, or parked on unmapped memory */
    int n = threads_settled(base);
    CHECK(n == base, "round %d: %d threads after dlclose, %d before dlopen (%d while loaded)", round, n, base, during);
    sleep_ms(50);
}

static void test_fork_child_unloads(int base) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    CHECK(h != NULL, "%s", dlerror());
    if (!h) return;
    CHECK(run_parallel_loop(h), "exp on the pool gave wrong values");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20); /* a join of the parent's workers would hang: fail instead */
        int ok = run_parallel_loop(h); /* the child's own pool starts */
        ok = dlclose(h) == 0 && ok;
        int n = threads_settled(1);
        _exit(ok && n == 1 ? 0 : 1 + (n != 1));
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/waitpid failed");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: %s %d", WIFEXITED(status) ? "exit status" : "signal",
          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    CHECK(dlclose(h) == 0, "%s", dlerror());
    int n = threads_settled(base);
    CHECK(n == base, "%d threads after dlclose, %d before dlopen", n, base);
}

/* A program thread that used linnx (its per-thread caches registered their exit destructors)
 * and exits after the library is unloaded: before team_shutdown deleted the library's keys, the
 * thread's exit ran those destructors in unmapped code and the process died of SIGSEGV. Run in a
 * child so that a crash is a failed check, not the end of the test. */
static void *outlive_h;
static sem_t outlive_used, outlive_closed;
static void *outliving_thread(void *unused) {
    (void)unused;
    lx_array *(*full)(int, const int64_t *, float) =
        (lx_array * (*)(int, const int64_t *, float)) sym(outlive_h, "lx_array_full_f32");
    lx_array *(*ex)(lx_array *) = (lx_array * (*)(lx_array *)) sym(outlive_h, "lx_exp");
    void (*release)(lx_array *) = (void (*)(lx_array *))sym(outlive_h, "lx_release");
    void (*drain)(void) = (void (*)(void))sym(outlive_h, "lx_pool_drain");
    if (full && ex && release && drain) {
        int64_t n = 100;
        lx_array *a = full(1, &n, 1.0f);
        if (a) (void)ex(a), release(a);
        drain();
    }
    sem_post(&outlive_used);
    sem_wait(&outlive_closed);
    return NULL; /* the thread's exit: its specific-data destructors would run now */
}
static void test_thread_outlives_unload(void) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20);
        outlive_h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        if (!outlive_h) _exit(3);
        sem_init(&outlive_used, 0, 0), sem_init(&outlive_closed, 0, 0);
        pthread_t t;
        if (pthread_create(&t, NULL, outliving_thread, NULL) != 0) _exit(4);
        sem_wait(&outlive_used);
        if (dlclose(outlive_h) != 0 || !unloaded()) _exit(5);
        sem_post(&outlive_closed);
        pthread_join(t, NULL);
        _exit(0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid, "fork/waitpid failed");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a thread exiting after dlclose: %s %d",
          WIFEXITED(status) ? "exit status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

int main(void) {
    lib = getenv("LINNX_SHARED_LIB");
    if (!lib || !*lib) {
        printf("test_unload: LINNX_SHARED_LIB is not set (the shared library's path): skipped\n");
        return 77;
    }
    /* OpenBLAS (loaded with the library) would start threads of its own */
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    int base = count_threads();
    test_never_started(base);
    test_started_then_unloaded(base, 1);
    test_started_then_unloaded(base, 2);
    test_fork_child_unloads(base);
    test_thread_outlives_unload();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
