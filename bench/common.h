/* Shared benchmark helpers: a monotonic clock and a median-of-reps timer.
 * Each benchmark prints `<workload> <metric> <value>` lines (comments start with '#'). */
#ifndef LINNX_BENCH_COMMON_H
#define LINNX_BENCH_COMMON_H

#include <stdlib.h>
#include <time.h>

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds per call of fn(ctx) over `reps` timed runs after `warmup` untimed ones. A run
 * repeats fn `inner` times so very short calls are measured above the clock's resolution. */
static inline double bench_median(void (*fn)(void *), void *ctx, int warmup, int reps, int inner) {
    for (int i = 0; i < warmup; i++) fn(ctx);
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t) return -1;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        for (int i = 0; i < inner; i++) fn(ctx);
        t[r] = (bench_now() - t0) / inner;
    }
    qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
    double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    free(t);
    return med;
}

/* The thread count a benchmark runs with: LINNX_THREADS (the library's own setting, threads.h)
 * or else LX_THREADS (the PyTorch peer's, scripts/bench.sh), whichever is set first in that
 * order and holds an integer in 1..4096; else `dflt`. Every benchmark that sets a thread count
 * takes it from here, so either name works for each of them. */
static inline int bench_threads(int dflt) {
    const char *names[2] = {"LINNX_THREADS", "LX_THREADS"};
    for (int i = 0; i < 2; i++) {
        const char *e = getenv(names[i]);
        if (!e || !*e) continue;
        char *end = NULL;
        long n = strtol(e, &end, 10);
        if (end && *end == '\0' && n >= 1 && n <= 4096) return (int)n;
    }
    return dflt;
}

/* Repetitions so that one timed run takes about `target` seconds given a rough per-call cost. */
static inline int bench_inner_for(double per_call, double target) {
    if (per_call <= 0) return 1;
    double n = target / per_call;
    return n < 1 ? 1 : n > 100000 ? 100000 : (int)n;
}

#endif
