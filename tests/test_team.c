/* The thread pool every parallel loop in linnx runs on (src/core/team.h): a parallel loop equals the
 * serial loop for every n, cuts static loops where OpenMP's schedule(static) cut them, reports a
 * failing item, survives nesting and concurrent callers, and honours lx_set_num_threads. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../src/core/team.h"
#include "linnx/threads.h"
#include "lx_test.h"

#define MAXN 100003

/* y[i] = f(x[i]) for i in [lo, hi); records each call's bounds and participant */
typedef struct loop_ctx {
    const uint32_t *x;
    uint32_t *y;
    atomic_int *seen;     /* times item i ran */
    int64_t bad;          /* this item fails (-1: none) */
    atomic_int ncalls;
    int64_t lo[64], hi[64];
    int tid[64];
    int nested;           /* run an inner parallel loop in each call */
} loop_ctx;

static uint32_t f(uint32_t v) { return v * 2654435761u ^ (v >> 7); }

static int inner(void *p, int64_t lo, int64_t hi) {
    uint32_t *acc = p;
    for (int64_t i = lo; i < hi; i++) acc[i] = f((uint32_t)i);
    return 0;
}

static int body(void *p, int64_t lo, int64_t hi) {
    loop_ctx *c = p;
    int k = atomic_fetch_add(&c->ncalls, 1);
    if (k < 64) c->lo[k] = lo, c->hi[k] = hi, c->tid[k] = lx_parallel_tid();
    int fail = 0;
    for (int64_t i = lo; i < hi; i++) {
        if (c->nested) { /* a loop inside an item: runs inline, completes */
            uint32_t t[5];
            int rc = lx_parallel_for(lx_num_threads(), 5, inner, t);
            uint32_t s = 0;
            for (int j = 0; j < 5; j++) s += t[j];
            c->y[i] = rc == 0 ? f(c->x[i]) + s : 0;
        } else {
            c->y[i] = f(c->x[i]);
        }
        atomic_fetch_add(&c->seen[i], 1);
        if (i == c->bad) fail = 1;
    }
    return fail;
}

static uint32_t xs[MAXN], ys[MAXN];
static atomic_int seen[MAXN];

static void run_case(int nt, int64_t n, int64_t grain, int64_t bad, int nested) {
    for (int64_t i = 0; i < n; i++) xs[i] = (uint32_t)(i * 7 + 1), ys[i] = 0, atomic_store(&seen[i], 0);
    static loop_ctx c;
    memset(&c, 0, sizeof c);
    c.x = xs, c.y = ys, c.seen = seen, c.bad = bad, c.nested = nested;
    int rc = grain > 0 ? lx_parallel_for_dynamic(nt, n, grain, body, &c) : lx_parallel_for(nt, n, body, &c);
    CHECK_EQ_INT(rc != 0, bad >= 0 && bad < n);
    uint32_t extra = 0;
    for (int j = 0; j < 5; j++) extra += f((uint32_t)j);
    int64_t wrong = 0, twice = 0;
    for (int64_t i = 0; i < n; i++) {
        wrong += ys[i] != f(xs[i]) + (nested ? extra : 0);
        twice += atomic_load(&seen[i]) != 1;
    }
    CHECK_EQ_INT((int)wrong, 0);
    CHECK_EQ_INT((int)twice, 0);
    int calls = atomic_load(&c.ncalls);
    if (grain == 0) {
        /* OpenMP's schedule(static) partition: k = min(nt, n) chunks, the first n % k one longer */
        int64_t k = n < nt ? n : nt;
        CHECK_EQ_INT(calls, (int)(k < 1 ? (n > 0) : k));
        if (k > 1 && k <= 64) {
            int64_t q = n / k, r = n % k, ok = 0;
            for (int s = 0; s < calls; s++) {
                int64_t t = -1;
                for (int64_t u = 0; u < k; u++)
                    if (c.lo[s] == u * q + (u < r ? u : r)) t = u;
                ok += t >= 0 && c.hi[s] - c.lo[s] == q + (t < r);
            }
            CHECK_EQ_INT((int)ok, calls);
        }
    } else if (n > 0) { /* one thread: the whole loop in one call */
        CHECK_EQ_INT(calls, nt > 1 ? (int)((n + grain - 1) / grain) : 1);
    }
    for (int s = 0; s < calls && s < 64; s++) CHECK(c.tid[s] >= 0 && c.tid[s] < (nt > 1 ? nt : 1));
}

static void test_equals_serial(void) {
    const int64_t ns[] = {0, 1, 2, 3, 7, 1001, MAXN};
    for (int nt = 1; nt <= 4; nt++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
            run_case(nt, ns[i], 0, -1, 0);
            run_case(nt, ns[i], 1, -1, 0);
            run_case(nt, ns[i], 3, -1, 0);
        }
    run_case(64, 1000, 0, -1, 0); /* more threads than workers may start: still every item once */
}

static void test_failure_reported(void) {
    for (int nt = 1; nt <= 3; nt++) {
        run_case(nt, 1001, 0, 0, 0);
        run_case(nt, 1001, 0, 500, 0);
        run_case(nt, 1001, 0, 1000, 0);
        run_case(nt, 1001, 2, 777, 0);
    }
}

static void test_nested(void) {
    for (int nt = 1; nt <= 3; nt++) {
        CHECK_EQ_INT(lx_set_num_threads(nt), LX_OK);
        run_case(nt, 1001, 0, -1, 1);
        run_case(nt, 101, 1, -1, 1);
    }
    CHECK_EQ_INT(lx_set_num_threads(0), LX_OK);
}

/* Two user threads looping at once: one gets the pool, the other runs inline; both complete. */
typedef struct user_arg {
    uint32_t x[4099], y[4099];
    int64_t wrong;
} user_arg;

static int square_range(void *p, int64_t lo, int64_t hi) {
    user_arg *u = p;
    for (int64_t i = lo; i < hi; i++) u->y[i] = f(u->x[i]);
    return 0;
}

static void *user_thread(void *p) {
    user_arg *u = p;
    for (int rep = 0; rep < 300; rep++) {
        for (int i = 0; i < 4099; i++) u->x[i] = (uint32_t)(i + rep), u->y[i] = 0;
        int rc = (rep & 1) ? lx_parallel_for_dynamic(2, 4099, 64, square_range, u) : lx_parallel_for(3, 4099, square_range, u);
        for (int i = 0; i < 4099; i++) u->wrong += u->y[i] != f(u->x[i]);
        u->wrong += rc != 0;
    }
    return NULL;
}

static void test_concurrent_users(void) {
    static user_arg a[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, user_thread, &a[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK_EQ_INT((int)(a[0].wrong + a[1].wrong), 0);
}

/* lx_set_num_threads(n): a loop of lx_num_threads() threads is cut in n chunks, run by at most n
 * participants. */
static void test_set_num_threads(void) {
    for (int n = 1; n <= 3; n++) {
        CHECK_EQ_INT(lx_set_num_threads(n), LX_OK);
        CHECK_EQ_INT(lx_num_threads(), n);
        run_case(lx_num_threads(), 999, 0, -1, 0);
    }
    CHECK_FAILS(lx_set_num_threads(-1), LX_ERR_INVALID_ARGUMENT, "must be >= 0");
    CHECK_EQ_INT(lx_num_threads(), 3);
    CHECK_EQ_INT(lx_set_num_threads(0), LX_OK);
    CHECK(lx_num_threads() >= 1);
}

/* fork(): the child has none of the parent's workers, so its first two-thread job must start a
 * worker of its own (a child that believed the parent's workers were there would run every job
 * alone: the job below would wait for a second participant that never comes). */
static atomic_int arrived;
static void wait_for_two(void *p) {
    (void)p;
    atomic_fetch_add(&arrived, 1);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do clock_gettime(CLOCK_MONOTONIC, &t);
    while (atomic_load(&arrived) < 2 && (t.tv_sec - t0.tv_sec) < 5);
}

static void test_fork_child(void) {
    atomic_store(&arrived, 0);
    lx_team_run(2, wait_for_two, NULL); /* the parent's pool has its worker */
    CHECK(atomic_load(&arrived) >= 2);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        atomic_store(&arrived, 0);
        lx_team_run(2, wait_for_two, NULL);
        user_arg *u = &(user_arg){0};
        for (int i = 0; i < 4099; i++) u->x[i] = (uint32_t)i;
        int rc = lx_parallel_for(2, 4099, square_range, u);
        for (int i = 0; i < 4099; i++) u->wrong += u->y[i] != f(u->x[i]);
        _exit(atomic_load(&arrived) >= 2 && rc == 0 && u->wrong == 0 ? 0 : 3);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void) {
    RUN(test_equals_serial);
    RUN(test_failure_reported);
    RUN(test_nested);
    RUN(test_concurrent_users);
    RUN(test_set_num_threads);
    RUN(test_fork_child);
    return lx_test_finish();
}
