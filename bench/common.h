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

/* ---- A same-run FMA peak (the loop of bench_gemm's fma_peak_t1), for `frac_peak` lines.
 * Twelve independent multiply-add chains, each kept opaque to the compiler after every step (equal
 * starts or chains the compiler can see through get merged and the "peak" comes out too high).
 * `level` picks the vector width of the kernel set in force: 0 4-lane generic vectors (multiply
 * then add, as the generic kernels), 1 AVX2+FMA (8 lanes), 2 AVX-512 (16 lanes). Returns the
 * FLOPs done; bench_fma_peak_gflops times it. */
static volatile float bench_peak_sink;

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BENCH_PEAK_CHAINS(T, SET1, FMA, CONSTRAINT)                                                              \
    T a0 = SET1(1e-7f), a1 = SET1(2e-7f), a2 = SET1(3e-7f), a3 = SET1(4e-7f), a4 = SET1(5e-7f), a5 = SET1(6e-7f), \
      a6 = SET1(7e-7f), a7 = SET1(8e-7f), a8 = SET1(9e-7f), a9 = SET1(1e-6f), a10 = SET1(1.1e-6f),              \
      a11 = SET1(1.2e-6f), x = SET1(0.999999f), y = SET1(1e-9f);                                               \
    for (long i = 0; i < iters; i++) {                                                                          \
        a0 = FMA(a0, x, y), a1 = FMA(a1, x, y), a2 = FMA(a2, x, y), a3 = FMA(a3, x, y);                         \
        a4 = FMA(a4, x, y), a5 = FMA(a5, x, y), a6 = FMA(a6, x, y), a7 = FMA(a7, x, y);                         \
        a8 = FMA(a8, x, y), a9 = FMA(a9, x, y), a10 = FMA(a10, x, y), a11 = FMA(a11, x, y);                     \
        __asm__ volatile("" : CONSTRAINT(a0), CONSTRAINT(a1), CONSTRAINT(a2), CONSTRAINT(a3), CONSTRAINT(a4),   \
                         CONSTRAINT(a5), CONSTRAINT(a6), CONSTRAINT(a7), CONSTRAINT(a8), CONSTRAINT(a9),        \
                         CONSTRAINT(a10), CONSTRAINT(a11));                                                     \
    }
#define BENCH_PEAK_X(v) "+x"(v)
#define BENCH_PEAK_V(v) "+v"(v)
__attribute__((target("avx2,fma"))) static inline double bench_peak_avx2(long iters) {
    BENCH_PEAK_CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, BENCH_PEAK_X)
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    bench_peak_sink = _mm256_cvtss_f32(s);
    return (double)iters * 12 * 8 * 2;
}
__attribute__((target("avx512f,fma"))) static inline double bench_peak_avx512(long iters) {
    BENCH_PEAK_CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, BENCH_PEAK_V)
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    bench_peak_sink = _mm512_reduce_add_ps(s);
    return (double)iters * 12 * 16 * 2;
}
#endif

typedef float bench_v4 __attribute__((vector_size(16)));
static inline double bench_peak_generic(long iters) {
    bench_v4 a[12], x = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, y = {1e-9f, 1e-9f, 1e-9f, 1e-9f};
    for (int i = 0; i < 12; i++) a[i] = y * (float)(i + 1);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) a[j] = a[j] * x + y;
#if defined(__x86_64__)
        __asm__ volatile("" : "+x"(a[0]), "+x"(a[1]), "+x"(a[2]), "+x"(a[3]), "+x"(a[4]), "+x"(a[5]), "+x"(a[6]),
                         "+x"(a[7]), "+x"(a[8]), "+x"(a[9]), "+x"(a[10]), "+x"(a[11]));
#elif defined(__aarch64__)
        __asm__ volatile("" : "+w"(a[0]), "+w"(a[1]), "+w"(a[2]), "+w"(a[3]), "+w"(a[4]), "+w"(a[5]), "+w"(a[6]),
                         "+w"(a[7]), "+w"(a[8]), "+w"(a[9]), "+w"(a[10]), "+w"(a[11]));
#endif
    }
    float s = 0;
    for (int i = 0; i < 12; i++) s += a[i][0];
    bench_peak_sink = s;
    return (double)iters * 12 * 4 * 2;
}

/* One short run of the same loop (one try of bench_fma_peak_gflops) timed by both clocks: returns
 * GFLOPS of the wall clock and, in *cpu_gflops (if not NULL), GFLOPS of the calling thread's CPU
 * time. For fractions measured at the same moment as the work they divide: one sample next to
 * each timed run of the work, the best of them over the same rounds as the work's. */
static inline double bench_fma_peak_sample(int level, double *cpu_gflops) {
    struct timespec c0, c1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    double t0 = bench_now(), flops;
#if defined(__x86_64__) && defined(__GNUC__)
    if (level >= 2) flops = bench_peak_avx512(200000);
    else if (level == 1) flops = bench_peak_avx2(400000);
    else
#endif
        flops = bench_peak_generic(400000);
    double dt = bench_now() - t0;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    double dc = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
    (void)level;
    if (cpu_gflops) *cpu_gflops = dc > 0 ? flops / dc / 1e9 : 0;
    return dt > 0 ? flops / dt / 1e9 : 0;
}

/* GFLOPS of one thread: the best of `tries` short runs of the loop (~2 ms each on AVX2), so a
 * run descheduled by a busy machine does not lower it. */
static inline double bench_fma_peak_gflops(int level, int tries) {
    double best = 0;
    for (int t = 0; t < tries; t++) {
        double g = bench_fma_peak_sample(level, NULL);
        if (g > best) best = g;
    }
    return best;
}

#endif
