/* GEMM at the hardware's limit, measured in the same run (docs/kernels.md).
 *
 * Prints `<workload> <metric> <value>`:
 *   fma_peak_t<n> gflops       a register-only FMA loop of the kernel set in force, n = 1, 2 threads
 *   copy_bandwidth gbps        a streaming copy (bytes read + written per second), 1 thread
 *   gemm_<shape>_t<n> frac_peak    linnx's lx_sgemm GFLOPS / fma_peak_t<n> (t1: the median of
 *                                  the repetitions; t2, and OpenBLAS on 2 threads: the best)
 *   gemm_<shape>_t<n> vs_openblas  linnx time / OpenBLAS time, OpenBLAS as the environment sets it
 *                                  (below 1: linnx is faster)
 *   gemm_<shape>_t<n> vs_openblas_auto  the same against OpenBLAS in a child process with
 *                                  OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (its own detection)
 *   gemm_1x64x64 ns                one batch-1 call, nanoseconds
 *   rows_<op>_1024x4096_t<n> frac_bandwidth  softmax, log_softmax, cross_entropy, layer_norm,
 *                                  rms_norm and the VJPs softmax_vjp, log_softmax_vjp,
 *                                  cross_entropy_vjp: bytes read and written per second /
 *                                  rows_copy_1024x4096_t<n> (cross_entropy: / rows_read_...), n-thread
 *                                  streams over the same 16 MiB interleaved with the kernel (bench_rows)
 *   conv_fwd_..., conv_fwd_bwd_..., attention_fwd_..., attention_lm_fwd_bwd_... frac_peak
 *                                  FLOPs per second / fma_peak_t<n> (attention: the full T x T
 *                                  square counted, though causal skips about half)
 *   ..._cpu                        the one-thread figures again from the thread's CPU time instead
 *                                  of the wall clock: on a machine shared with other work, time
 *                                  the thread spent descheduled does not count against either side
 *   gemm_<shape>_t1 frac_peak_best one thread, thread CPU time, short peak loops interleaved with
 *                                  the GEMM, the best of 15 of each (shapes up to 1024^3)
 * Shapes: squares 64..4096 (2048 and 4096 with fewer repetitions, 4096 on one thread only), the
 * MLP's forward GEMMs and
 * their two backward GEMMs (transposed operands). `bench_gemm --blas-only` is the child;
 * `bench_gemm --no-gemm` stops after the training-step kernels; `bench_gemm --rows` runs the rows alone;
 * `bench_gemm --attention` prints the peaks and the attention lines only. */
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common.h"
#include "linnx/cpu.h"
#include "linnx/linalg.h"
#include "linnx/linnx.h"
#include "linnx/llama.h"
#include "linnx/losses.h"
#include "linnx/nn.h"
#include "linnx/threads.h"

static int use_cpu_clock; /* time with CLOCK_THREAD_CPUTIME_ID (one-thread runs only) */
static double now(void) {
    if (!use_cpu_clock) return bench_now();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* bench_median with the clock above; best_of set: the fastest repetition instead of the median. */
static int best_of;
static double median_time(void (*fn)(void *), void *ctx, int warmup, int reps, int inner) {
    for (int i = 0; i < warmup; i++) fn(ctx);
    double t[32];
    if (reps > 32) reps = 32;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < inner; i++) fn(ctx);
        t[r] = (now() - t0) / inner;
    }
    qsort(t, (size_t)reps, sizeof t[0], bench_cmp_double);
    return best_of ? t[0] : t[reps / 2];
}

/* ---- FMA peak ---- */

#define PEAK_ITERS 20000000L
static volatile float peak_sink;

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static double peak_avx2_n(long iters) {
    /* Twelve chains with distinct starting values, all twelve opaque to the compiler after each
     * step: with equal starts and only six in the asm, GCC merged the other six into one chain
     * (7 FMAs per iteration counted as 12: the "peak" came out 1.5x the hardware's). */
    __m256 a0 = _mm256_set1_ps(1e-7f), a1 = _mm256_set1_ps(2e-7f), a2 = _mm256_set1_ps(3e-7f),
           a3 = _mm256_set1_ps(4e-7f), a4 = _mm256_set1_ps(5e-7f), a5 = _mm256_set1_ps(6e-7f),
           a6 = _mm256_set1_ps(7e-7f), a7 = _mm256_set1_ps(8e-7f), a8 = _mm256_set1_ps(9e-7f),
           a9 = _mm256_set1_ps(1e-6f), a10 = _mm256_set1_ps(1.1e-6f), a11 = _mm256_set1_ps(1.2e-6f),
           x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-9f);
    for (long i = 0; i < iters; i++) {
#define F(a) a = _mm256_fmadd_ps(a, x, y);
        F(a0) F(a1) F(a2) F(a3) F(a4) F(a5) F(a6) F(a7) F(a8) F(a9) F(a10) F(a11)
#undef F
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7),
                         "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    peak_sink = out[0];
    return (double)iters * 12 * 8 * 2;
}

__attribute__((target("avx512f,fma"))) static double peak_avx512_n(long iters) {
    __m512 a0 = _mm512_set1_ps(1e-7f), a1 = _mm512_set1_ps(2e-7f), a2 = _mm512_set1_ps(3e-7f),
           a3 = _mm512_set1_ps(4e-7f), a4 = _mm512_set1_ps(5e-7f), a5 = _mm512_set1_ps(6e-7f),
           a6 = _mm512_set1_ps(7e-7f), a7 = _mm512_set1_ps(8e-7f), a8 = _mm512_set1_ps(9e-7f),
           a9 = _mm512_set1_ps(1e-6f), a10 = _mm512_set1_ps(1.1e-6f), a11 = _mm512_set1_ps(1.2e-6f),
           x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-9f);
    for (long i = 0; i < iters; i++) {
#define F(a) a = _mm512_fmadd_ps(a, x, y);
        F(a0) F(a1) F(a2) F(a3) F(a4) F(a5) F(a6) F(a7) F(a8) F(a9) F(a10) F(a11)
#undef F
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7),
                         "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    peak_sink = _mm512_reduce_add_ps(s);
    return (double)iters * 12 * 16 * 2;
}
#endif

/* The generic set: 4-lane vectors, multiply then add (what its kernels do). */
typedef float v4 __attribute__((vector_size(16)));
static double peak_generic_n(long iters) {
    v4 a[12], x = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, y = {1e-9f, 1e-9f, 1e-9f, 1e-9f};
    for (int i = 0; i < 12; i++) a[i] = y * (float)(i + 1); /* distinct: equal chains would be merged */
    for (long i = 0; i < iters / 4; i++) {
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
    peak_sink = s;
    return (double)(iters / 4) * 12 * 4 * 2;
}

static double peak_flops(void) {
#if defined(__x86_64__)
    lx_isa isa = lx_isa_current();
    if (isa == LX_ISA_AVX512) return peak_avx512_n(PEAK_ITERS);
    if (isa == LX_ISA_AVX2) return peak_avx2_n(PEAK_ITERS);
#endif
    return peak_generic_n(PEAK_ITERS);
}

/* The same loop, about a fiftieth of it (~1-2 ms): flops done. */
static double peak_short(void) {
#if defined(__x86_64__)
    lx_isa isa = lx_isa_current();
    if (isa == LX_ISA_AVX512) return peak_avx512_n(PEAK_ITERS / 50);
    if (isa == LX_ISA_AVX2) return peak_avx2_n(PEAK_ITERS / 50);
#endif
    return peak_generic_n(PEAK_ITERS / 50);
}

typedef struct {
    double flops, secs;
} peak_arg;
static void *peak_thread(void *p) {
    peak_arg *a = p;
    double t0 = now();
    a->flops = peak_flops();
    a->secs = now() - t0;
    return NULL;
}

/* GFLOPS of n threads running the loop at once (the best of 3 tries). */
static double measure_peak(int n) {
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        pthread_t th[8];
        peak_arg args[8];
        for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, peak_thread, &args[i]);
        double total = 0;
        for (int i = 0; i < n; i++) {
            pthread_join(th[i], NULL);
            total += args[i].flops / args[i].secs;
        }
        if (total > best) best = total;
    }
    return best / 1e9;
}

static double measure_copy(void) {
    size_t n = (size_t)64 << 20; /* 256 MiB each way: far beyond any cache */
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    if (!a || !b) return 0;
    memset(a, 1, n * sizeof(float));
    memset(b, 0, n * sizeof(float));
    double best = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        double t0 = bench_now();
        memcpy(b, a, n * sizeof(float));
        double t = bench_now() - t0;
        if (t < best) best = t;
    }
    peak_sink = b[n / 2];
    free(a), free(b);
    return 2.0 * (double)n * sizeof(float) / best / 1e9;
}

/* ---- GEMM shapes ---- */

typedef struct {
    const char *name;
    int64_t M, N, K;
    bool ta, tb;
} shape;

static const shape shapes[] = {
    {"64", 64, 64, 64, false, false},
    {"128", 128, 128, 128, false, false},
    {"256", 256, 256, 256, false, false},
    {"512", 512, 512, 512, false, false},
    {"1024", 1024, 1024, 1024, false, false},
    {"2048", 2048, 2048, 2048, false, false},
    {"4096", 4096, 4096, 4096, false, false},
    /* MLP 784-512-512-10 at batch 128: forward x W, then the backward dX = dY W^T and dW = X^T dY */
    {"mlp_128x784x512", 128, 512, 784, false, false},
    {"mlp_128x512x512", 128, 512, 512, false, false},
    {"mlp_dx_128x512x784_tb", 128, 784, 512, false, true},
    {"mlp_dw_784x128x512_ta", 784, 512, 128, true, false},
    {"sq_512_tatb", 512, 512, 512, true, true},
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

typedef struct {
    const shape *s;
    float *A, *B, *C;
    int blas;
} gemm_job;

static void gemm_call(void *p) {
    gemm_job *j = p;
    const shape *s = j->s;
    int64_t lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    if (j->blas)
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, (int)s->M,
                    (int)s->N, (int)s->K, 1.0f, j->A, (int)lda, j->B, (int)ldb, 0.0f, j->C, (int)s->N);
    else
        lx_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, j->A, lda, j->B, ldb, 0.0f, j->C, s->N);
}

static double time_gemm(const shape *s, int blas) {
    size_t na = (size_t)(s->M * s->K), nb = (size_t)(s->K * s->N), nc = (size_t)(s->M * s->N);
    gemm_job j = {.s = s, .A = malloc(na * 4), .B = malloc(nb * 4), .C = malloc(nc * 4), .blas = blas};
    if (!j.A || !j.B || !j.C) return -1;
    uint32_t r = 99;
    for (size_t i = 0; i < na; i++) j.A[i] = (float)((r = r * 1664525u + 1013904223u) >> 9) * 0x1p-23f - 0.5f;
    for (size_t i = 0; i < nb; i++) j.B[i] = (float)((r = r * 1664525u + 1013904223u) >> 9) * 0x1p-23f - 0.5f;
    double flops = 2.0 * (double)s->M * (double)s->N * (double)s->K;
    double est = flops / 50e9;
    int reps = est > 0.5 ? 3 : est > 0.02 ? 5 : 11;
    /* several threads: the best of more repetitions. Two threads on two vCPUs shared with other
     * work are rarely both running for a whole repetition; the median measured that share, not
     * the code (the fastest repetition is one where both ran) */
    best_of = lx_num_threads() > 1;
    if (best_of) reps = est > 0.5 ? 5 : est > 0.02 ? 9 : 15;
    double t = median_time(gemm_call, &j, est > 0.5 ? 1 : 2, reps, bench_inner_for(est, 5e-3));
    best_of = 0;
    free(j.A), free(j.B), free(j.C);
    return t;
}

static const int thread_counts[] = {1, 2};

/* One thread, thread CPU time, interleaved: REPS rounds of (a short FMA peak loop, one timed batch
 * of the GEMM), the best of each over its best. On a machine shared with other work both sides
 * run at the clock and the sibling-thread contention of the moment; the best rounds of both are
 * the quiet ones, which a median of each taken minutes apart is not. */
#define BEST_REPS 15
static double frac_peak_best(const shape *s) {
    size_t na = (size_t)(s->M * s->K), nb = (size_t)(s->K * s->N), nc = (size_t)(s->M * s->N);
    gemm_job j = {.s = s, .A = malloc(na * 4), .B = malloc(nb * 4), .C = malloc(nc * 4), .blas = 0};
    if (!j.A || !j.B || !j.C) return -1;
    for (size_t i = 0; i < na; i++) j.A[i] = (float)(i % 17) / 17 - 0.5f;
    for (size_t i = 0; i < nb; i++) j.B[i] = (float)(i % 13) / 13 - 0.5f;
    double flops = 2.0 * (double)s->M * (double)s->N * (double)s->K;
    int inner = bench_inner_for(flops / 50e9, 4e-3);
    int saved = use_cpu_clock;
    use_cpu_clock = 1;
    gemm_call(&j);
    double best_peak = 0, best_gemm = 1e30;
    for (int r = 0; r < BEST_REPS; r++) {
        double t0 = now();
        double f = peak_short();
        double tp = now() - t0;
        if (f / tp > best_peak) best_peak = f / tp;
        t0 = now();
        for (int i = 0; i < inner; i++) gemm_call(&j);
        double t = (now() - t0) / inner;
        if (t < best_gemm) best_gemm = t;
    }
    use_cpu_clock = saved;
    free(j.A), free(j.B), free(j.C);
    return flops / best_gemm / best_peak;
}

/* ---- the other kernels of a training step, each against its own limit ----
 * Rows (softmax, log_softmax, integer-label cross-entropy, layer norm, RMS norm) over 1024 x 4096
 * (16 MiB, past L2; a bigger output would be a fresh mmap per call whose page faults cost as much
 * as the kernel), and the softmax family's VJPs: bytes per second against streams over the same
 * 16 MiB on as many threads (bench_rows below). conv (the CNN's 3x3, 32 -> 64 channels, 64 x 28 x 28, SAME) forward and
 * forward + backward (value_and_grad of sum(conv(x, w)): the forward, dW and dX products), and
 * attention forward (the llama showcase's tiny config, batch 16 x 128 tokens): FLOPs per second /
 * fma_peak_t<n>. One-thread figures also from thread CPU time (_cpu). */
typedef struct {
    lx_array *x, *scale, *bias, *labels, *w, *q, *k, *v;
    lx_array *lq, *lk, *lv; /* lm_train's attention: (16, 64, 4, 32) */
    lx_array *ysm, *ylsm, *g, *loss, *gl; /* the rows' VJPs: softmax / log_softmax outputs, cotangents */
    int op;
    lx_conv_params conv;
} step_job;
static lx_status conv_loss(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n;
    step_job *j = user;
    *loss = lx_sum(lx_conv_general(xs[0], xs[1], &j->conv), 0, NULL, false);
    return *loss ? LX_OK : lx_last_status();
}
static lx_status attention_loss(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n, (void)user;
    *loss = lx_sum(lx_dot_product_attention(xs[0], xs[1], xs[2], NULL, NULL, true, 0.0f), 0, NULL, false);
    return *loss ? LX_OK : lx_last_status();
}
static void step_call(void *p) {
    step_job *j = p;
    size_t mark = lx_pool_open();
    switch (j->op) {
    case 0: lx_softmax(j->x, -1); break;
    case 1: lx_log_softmax(j->x, -1); break;
    case 2: optax_softmax_cross_entropy_with_integer_labels(j->x, j->labels); break;
    case 3: lx_layer_norm(j->x, j->scale, j->bias, 1e-6f, 0, NULL); break;
    case 4: lx_rms_norm(j->x, j->scale, 1e-6f); break;
    case 5: lx_conv_general(j->x, j->w, &j->conv); break;
    case 6: {
        lx_array *xs[2] = {j->x, j->w}, *val = NULL, *g[2] = {NULL, NULL};
        if (lx_value_and_grad(conv_loss, j, 2, xs, &val, g) == LX_OK) lx_release(val), lx_release(g[0]), lx_release(g[1]);
        break;
    }
    case 7: lx_dot_product_attention(j->q, j->k, j->v, NULL, NULL, true, 0.0f); break;
    case 8: lx_dot_product_attention(j->lq, j->lk, j->lv, NULL, NULL, true, 0.0f); break;
    case 9: {
        lx_array *xs[3] = {j->lq, j->lk, j->lv}, *val = NULL, *g[3] = {NULL, NULL, NULL};
        if (lx_value_and_grad(attention_loss, j, 3, xs, &val, g) == LX_OK)
            lx_release(val), lx_release(g[0]), lx_release(g[1]), lx_release(g[2]);
        break;
    }
    case 10: case 11: case 12: { /* a VJP rule alone, from the primitive table (linnx/primitive.h) */
        const lx_shape_params prm = {.axis = 1};
        lx_array *in[2] = {j->x, j->labels}, *ct[2] = {NULL, NULL};
        const bool wants[2] = {true, false};
        if (j->op == 10) lx_prim_get(LX_PRIM_SOFTMAX)->vjp(&prm, 1, in, j->ysm, j->g, wants, ct);
        if (j->op == 11) lx_prim_get(LX_PRIM_LOG_SOFTMAX)->vjp(&prm, 1, in, j->ylsm, j->g, wants, ct);
        if (j->op == 12) lx_prim_get(LX_PRIM_SOFTMAX_CROSS_ENTROPY_INT)->vjp(NULL, 2, in, j->loss, j->gl, wants, ct);
        break;
    }
    }
    lx_pool_close(mark);
}
static lx_array *filled(int ndim, const int64_t *shape, uint32_t seed) {
    lx_array *a = lx_array_empty(LX_F32, ndim, shape);
    if (!a) return NULL;
    for (int64_t i = 0; i < a->size; i++) lx_f32(a)[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 9) * 0x1p-23f - 0.5f;
    return a;
}
/* ---- the rows against the memory bandwidth ----
 * References over the same 16 MiB as the rows, best of REPS samples taken interleaved with the
 * kernel's own samples (one reference sample, one kernel sample, ...), so a slow patch of the
 * shared machine hits both alike, on 1 and on 2 threads (a t2 row against a 2-thread stream):
 *   copy: the better of memcpy and a vector load/store loop into a reused buffer; bytes read +
 *         written per second (the rows that read and write: softmax, norms, the VJPs)
 *   read: a vector sum over the array; bytes read per second (cross_entropy reads only)
 * Two threads: each streams its half, timed from the start signal to the later one's end. */
#define ROWS_REPS 15
typedef struct {
    const float *src;
    float *dst;
    size_t n;
    int kind; /* 0 memcpy, 1 copy loop, 2 read */
    float sink;
} stream_part;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static float read_avx512(const float *p, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(p + i)), s1 = _mm512_add_ps(s1, _mm512_loadu_ps(p + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(p + i + 32)), s3 = _mm512_add_ps(s3, _mm512_loadu_ps(p + i + 48));
    }
    float t = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++) t += p[i];
    return t;
}
__attribute__((target("avx512f"))) static void copy_avx512(float *d, const float *p, size_t n) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 a = _mm512_loadu_ps(p + i), b = _mm512_loadu_ps(p + i + 16), c = _mm512_loadu_ps(p + i + 32),
               e = _mm512_loadu_ps(p + i + 48);
        _mm512_storeu_ps(d + i, a), _mm512_storeu_ps(d + i + 16, b), _mm512_storeu_ps(d + i + 32, c);
        _mm512_storeu_ps(d + i + 48, e);
    }
    for (; i < n; i++) d[i] = p[i];
}
__attribute__((target("avx2"))) static float read_avx2(const float *p, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i)), s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16)), s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
    }
    float l[8], t = 0;
    _mm256_storeu_ps(l, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (int k = 0; k < 8; k++) t += l[k];
    for (; i < n; i++) t += p[i];
    return t;
}
__attribute__((target("avx2"))) static void copy_avx2(float *d, const float *p, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 a = _mm256_loadu_ps(p + i), b = _mm256_loadu_ps(p + i + 8), c = _mm256_loadu_ps(p + i + 16),
               e = _mm256_loadu_ps(p + i + 24);
        _mm256_storeu_ps(d + i, a), _mm256_storeu_ps(d + i + 8, b), _mm256_storeu_ps(d + i + 16, c);
        _mm256_storeu_ps(d + i + 24, e);
    }
    for (; i < n; i++) d[i] = p[i];
}
#endif
static void stream_run(stream_part *s) {
    if (s->kind == 0) {
        memcpy(s->dst, s->src, s->n * sizeof(float));
        return;
    }
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) {
        if (s->kind == 1) copy_avx512(s->dst, s->src, s->n);
        else s->sink = read_avx512(s->src, s->n);
        return;
    }
    if (__builtin_cpu_supports("avx2")) {
        if (s->kind == 1) copy_avx2(s->dst, s->src, s->n);
        else s->sink = read_avx2(s->src, s->n);
        return;
    }
#endif
    float t = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->kind == 1) s->dst[i] = s->src[i];
        else t += s->src[i];
    }
    s->sink = t;
}
/* Two threads start and stop by spinning on flags, not a blocking barrier: a thread woken from a
 * futex waits for a CPU (milliseconds when the other vCPU is busy), where OpenMP's team, which
 * the kernels run on, spins between regions; a blocking start made the reference, not the
 * kernel, pay for a busy machine (t2 copy 31 GB/s against kernels at 45). */
typedef struct {
    stream_part part;
    atomic_int ready, go, done;
} stream_helper;
static void spin_until(atomic_int *flag) {
    while (!atomic_load_explicit(flag, memory_order_acquire)) {
#if defined(__x86_64__)
        _mm_pause();
#endif
    }
}
static void *stream_helper_main(void *p) {
    stream_helper *h = p;
    atomic_store_explicit(&h->ready, 1, memory_order_release);
    spin_until(&h->go);
    stream_run(&h->part);
    atomic_store_explicit(&h->done, 1, memory_order_release);
    return NULL;
}
/* One sample: seconds for a stream of kind over n floats on nt threads (1: the calling thread, also
 * its CPU time in *cpu; 2: the calling thread streams the first half). */
static double stream_once(int kind, const float *src, float *dst, size_t n, int nt, double *cpu) {
    if (nt <= 1) {
        stream_part s = {src, dst, n, kind, 0};
        use_cpu_clock = 1;
        double c0 = now(), t0 = bench_now();
        stream_run(&s);
        double t = bench_now() - t0;
        *cpu = now() - c0;
        use_cpu_clock = 0;
        peak_sink = s.sink;
        return t;
    }
    const size_t h0 = n / 2;
    stream_helper h = {.part = {src + h0, dst + h0, n - h0, kind, 0}};
    atomic_init(&h.ready, 0), atomic_init(&h.go, 0), atomic_init(&h.done, 0);
    stream_part mine = {src, dst, h0, kind, 0};
    pthread_t th;
    if (pthread_create(&th, NULL, stream_helper_main, &h) != 0) return *cpu = 1e30;
    spin_until(&h.ready);
    double t0 = bench_now();
    atomic_store_explicit(&h.go, 1, memory_order_release);
    stream_run(&mine);
    spin_until(&h.done);
    double t = bench_now() - t0;
    pthread_join(th, NULL);
    peak_sink = mine.sink + h.part.sink;
    *cpu = t;
    return t;
}

static void bench_rows(void) {
    const int64_t R = 1024, D = 4096, RC = 64; /* RC rows: 1 MiB, L2-resident */
    const size_t N = (size_t)(R * D);
    step_job j = {.x = filled(2, (int64_t[]){R, D}, 1), .scale = filled(1, &D, 2), .bias = filled(1, &D, 3),
                  .labels = lx_array_empty(LX_I32, 1, &R), .g = filled(2, (int64_t[]){R, D}, 12),
                  .gl = filled(1, &R, 13)};
    step_job jc = {.x = filled(2, (int64_t[]){RC, D}, 14), .labels = lx_array_empty(LX_I32, 1, &RC)};
    float *dst = malloc(sizeof(float) * N);
    if (!j.x || !j.scale || !j.bias || !j.labels || !j.g || !j.gl || !jc.x || !jc.labels || !dst) return;
    for (int64_t i = 0; i < R; i++) lx_i32(j.labels)[i] = (int32_t)((i * 7919) % D);
    for (int64_t i = 0; i < RC; i++) lx_i32(jc.labels)[i] = (int32_t)((i * 7919) % D);
    j.ysm = lx_softmax(j.x, -1), j.ylsm = lx_log_softmax(j.x, -1);
    j.loss = optax_softmax_cross_entropy_with_integer_labels(j.x, j.labels);
    if (!j.ysm || !j.ylsm || !j.loss) return;
    lx_retain(j.ysm), lx_retain(j.ylsm), lx_retain(j.loss);
    enum { NOPS = 8 };
    const char *rows[NOPS] = {"softmax", "log_softmax", "cross_entropy", "layer_norm", "rms_norm",
                              "softmax_vjp", "log_softmax_vjp", "cross_entropy_vjp"};
    const int opcode[NOPS] = {0, 1, 2, 3, 4, 10, 11, 12};
    /* bytes per element / 4 that must cross memory: x read + y written; cross_entropy reads x;
     * the softmax VJPs read y and g and write dx; cross_entropy's reads x and writes dx */
    const double passes[NOPS] = {2, 2, 1, 2, 2, 3, 3, 2};
    puts("# rows: gbps = bytes that must cross memory per second (x read, y written); frac_bandwidth = gbps / "
         "rows_copy_1024x4096_t<n> (a copy of the same 16 MiB, the better of memcpy and a vector loop, on n threads), "
         "cross_entropy (reads only) against rows_read_1024x4096_t<n> (a vector sum); all best of 15, interleaved");
    for (int ti = 0; ti < 2; ti++) {
        const int nt = thread_counts[ti];
        lx_set_num_threads(nt);
        double best[NOPS][2], ref[3][2]; /* [..][0] wall, [1] the thread's CPU time (t1 only) */
        for (int k = 0; k < 3; k++) ref[k][0] = ref[k][1] = 1e30;
        double best_l2 = 1e30; /* cross_entropy on the L2-resident block, below */
        for (int op = 0; op < NOPS; op++) best[op][0] = best[op][1] = 1e30;
        jc.op = 2;
        for (int rep = 0; rep < ROWS_REPS; rep++) /* each op's samples spread over the whole run */
            for (int op = 0; op < NOPS; op++) {
                if (opcode[op] == 2)
                    for (int k = 0; k < 4; k++) { /* warm call first, as below */
                        step_call(&jc);
                        double t0 = bench_now();
                        step_call(&jc);
                        double t = bench_now() - t0;
                        if (t < best_l2) best_l2 = t;
                    }
                j.op = opcode[op];
                for (int k = 0; k < 3; k++) {
                    double c, t = stream_once(k, lx_f32(j.x), dst, N, nt, &c);
                    int r = k == 2 ? 2 : 0;
                    if (t < ref[r][0]) ref[r][0] = t;
                    if (c < ref[r][1]) ref[r][1] = c;
                }
                step_call(&j); /* untimed: wakes the OpenMP team, which then spins into the timed call, as
                                * between the back-to-back ops of a step (the streams above outlast
                                * its spin, and a team thread woken from sleep waits for a busy CPU) */
                use_cpu_clock = 1;
                double c0 = now(), t0 = bench_now();
                step_call(&j);
                double t = bench_now() - t0, c = now() - c0;
                use_cpu_clock = 0;
                if (t < best[op][0]) best[op][0] = t;
                if (c < best[op][1]) best[op][1] = c;
            }
        const double bytes = 4.0 * (double)N;
        double copy_bw = 2 * bytes / ref[0][0] / 1e9, copy_cpu = 2 * bytes / ref[0][1] / 1e9;
        double read_bw = bytes / ref[2][0] / 1e9, read_cpu = bytes / ref[2][1] / 1e9;
        if (nt == 1) { /* the names of the earlier one-reference output */
            printf("rows_copy_%lldx%lld gbps %.1f\n", (long long)R, (long long)D, copy_bw);
            printf("rows_copy_%lldx%lld gbps_cpu %.1f\n", (long long)R, (long long)D, copy_cpu);
        }
        printf("rows_copy_%lldx%lld_t%d gbps %.1f\n", (long long)R, (long long)D, nt, copy_bw);
        printf("rows_read_%lldx%lld_t%d gbps %.1f\n", (long long)R, (long long)D, nt, read_bw);
        for (int op = 0; op < NOPS; op++) {
            const bool ro = opcode[op] == 2;
            double gbps = passes[op] * bytes / best[op][0] / 1e9, gcpu = passes[op] * bytes / best[op][1] / 1e9;
            printf("rows_%s_%lldx%lld_t%d gbps %.1f\n", rows[op], (long long)R, (long long)D, nt, gbps);
            printf("rows_%s_%lldx%lld_t%d frac_bandwidth %.3f\n", rows[op], (long long)R, (long long)D, nt,
                   gbps / (ro ? read_bw : copy_bw));
            if (nt == 1)
                printf("rows_%s_%lldx%lld_t1 frac_bandwidth_cpu %.3f\n", rows[op], (long long)R, (long long)D,
                       gcpu / (ro ? read_cpu : copy_cpu));
        }
        /* cross_entropy's other limit: one exp per element. The same kernel on an L2-resident
         * 64 x 4096 block (sampled with the rest above) runs at its compute rate; the roofline is
         * the lower of that and the read stream, and frac_limit is the big run against it. */
        double incache = 4.0 * (double)(RC * D) / best_l2 / 1e9, ce = bytes / best[2][0] / 1e9;
        printf("rows_cross_entropy_l2_%lldx%lld_t%d gbps %.1f\n", (long long)RC, (long long)D, nt, incache);
        printf("rows_cross_entropy_%lldx%lld_t%d frac_limit %.3f\n", (long long)R, (long long)D, nt,
               ce / (incache < read_bw ? incache : read_bw));
        fflush(stdout);
    }
    free(dst);
    lx_release(j.ysm), lx_release(j.ylsm), lx_release(j.loss), lx_release(j.g), lx_release(j.gl);
    lx_release(j.x), lx_release(j.scale), lx_release(j.bias), lx_release(j.labels);
    lx_release(jc.x), lx_release(jc.labels);
}

static int attention_only; /* `bench_gemm --attention`: the peaks and the attention lines only */
static void bench_step(const double peak[2], double peak_cpu) {
    step_job j;
    if (!attention_only) bench_rows();
    /* conv */
    j = (step_job){.x = filled(4, (int64_t[]){64, 28, 28, 32}, 4), .w = filled(4, (int64_t[]){3, 3, 32, 64}, 5),
                   .conv = {.padding = {.mode = LX_PAD_SAME}}};
    /* attention: q (16, 128, H, d), k / v (16, 128, KV, d) */
    llama_config lc = llama_config_tiny();
    int64_t B = 16, T = 128, H = lc.num_query_heads, KV = lc.num_kv_heads, Dh = lc.head_dim;
    j.q = filled(4, (int64_t[]){B, T, H, Dh}, 6), j.k = filled(4, (int64_t[]){B, T, KV, Dh}, 7);
    j.v = filled(4, (int64_t[]){B, T, KV, Dh}, 8);
    /* lm_train's attention (bench/train.c): 16 x 64 tokens, 4 heads, depth 32 */
    const int64_t LB = 16, LT = 64, LH = 4, LD = 32;
    j.lq = filled(4, (int64_t[]){LB, LT, LH, LD}, 9), j.lk = filled(4, (int64_t[]){LB, LT, LH, LD}, 10);
    j.lv = filled(4, (int64_t[]){LB, LT, LH, LD}, 11);
    if (!j.x || !j.w || !j.q || !j.k || !j.v || !j.lq || !j.lk || !j.lv) return;
    double conv_flops = 2.0 * 64 * 28 * 28 * 9 * 32 * 64;
    /* causal: about half of the T x T square is needed; count the full square, as bench_llama does */
    double att_flops = 2.0 * 2.0 * (double)(B * H * T * T * Dh);
    /* forward + backward: the two forward products and dP, dQ, dV, dK (the weights are kept) */
    double lm_att_flops = 2.0 * 2.0 * (double)(LB * LH * LT * LT * LD);
    const char *names[] = {"conv_fwd_64x28x28x32_64", "conv_fwd_bwd_64x28x28x32_64", "attention_fwd_16x128",
                           "attention_lm_fwd_16x64", "attention_lm_fwd_bwd_16x64"};
    const int ops[] = {5, 6, 7, 8, 9};
    const double flops[] = {conv_flops, 3 * conv_flops, att_flops, lm_att_flops, 3 * lm_att_flops};
    char shape_note[64];
    snprintf(shape_note, sizeof shape_note, "# attention: heads %lld, kv heads %lld, head_dim %lld", (long long)H,
             (long long)KV, (long long)Dh);
    puts(shape_note);
    for (int ti = 0; ti < 2; ti++) {
        lx_set_num_threads(thread_counts[ti]);
        for (int k = attention_only ? 2 : 0; k < 5; k++) {
            j.op = ops[k];
            double t = median_time(step_call, &j, 1, 5, 1);
            printf("%s_t%d gflops %.1f\n", names[k], thread_counts[ti], flops[k] / t / 1e9);
            printf("%s_t%d frac_peak %.3f\n", names[k], thread_counts[ti], flops[k] / t / 1e9 / peak[ti]);
            if (ti == 0) {
                use_cpu_clock = 1;
                double tc = median_time(step_call, &j, 0, 5, 1);
                use_cpu_clock = 0;
                printf("%s_t1 frac_peak_cpu %.3f\n", names[k], flops[k] / tc / 1e9 / peak_cpu);
            }
            fflush(stdout);
        }
    }
    lx_release(j.x), lx_release(j.w), lx_release(j.q), lx_release(j.k), lx_release(j.v);
    lx_release(j.lq), lx_release(j.lk), lx_release(j.lv);
}

/* The child: OpenBLAS seconds per shape and thread count. */
static int blas_only(int maxdim) {
    for (int ti = 0; ti < 2; ti++) {
        lx_set_num_threads(thread_counts[ti]);
        for (int i = 0; i < NSHAPES; i++)
            if (shapes[i].M <= maxdim && shapes[i].N <= maxdim && !(thread_counts[ti] > 1 && shapes[i].M >= 4096)) printf("%d %d %.9g\n", i, thread_counts[ti], time_gemm(&shapes[i], 1));
    }
    return 0;
}

static void small_call(void) {
    float A[64], B[64 * 64], C[64];
    for (int i = 0; i < 64; i++) A[i] = (float)i / 64;
    for (int i = 0; i < 64 * 64; i++) B[i] = (float)(i % 7) / 7;
    gemm_job j = {0};
    (void)j;
    double best = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        int n = 20000;
        double t0 = bench_now();
        for (int i = 0; i < n; i++) lx_sgemm(false, false, 1, 64, 64, 1.0f, A, 64, B, 64, 0.0f, C, 64);
        double t = (bench_now() - t0) / n;
        if (t < best) best = t;
    }
    peak_sink = C[3];
    printf("gemm_1x64x64 ns %.0f\n", best * 1e9);
    use_cpu_clock = 1; /* the same from thread CPU time: what the call costs when the thread runs */
    best = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        int n = 20000;
        double t0 = now();
        for (int i = 0; i < n; i++) lx_sgemm(false, false, 1, 64, 64, 1.0f, A, 64, B, 64, 0.0f, C, 64);
        double t = (now() - t0) / n;
        if (t < best) best = t;
    }
    use_cpu_clock = 0;
    printf("gemm_1x64x64 ns_cpu %.0f\n", best * 1e9);
    /* the same call through OpenBLAS */
    best = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        int n = 20000;
        double t0 = bench_now();
        for (int i = 0; i < n; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 64, 64, 1.0f, A, 64, B, 64, 0.0f, C, 64);
        double t = (bench_now() - t0) / n;
        if (t < best) best = t;
    }
    printf("gemm_1x64x64_openblas ns %.0f\n", best * 1e9);
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "--blas-only") == 0) return blas_only(atoi(argv[2]));
    if (argc > 1 && strcmp(argv[1], "--rows") == 0) { /* the rows and their references only */
        bench_rows();
        return 0;
    }
    attention_only = argc > 1 && strcmp(argv[1], "--attention") == 0;
    int maxdim = argc > 1 ? atoi(argv[1]) : 4096; /* `bench_gemm 1024` skips the bigger squares */
    if (maxdim <= 0) maxdim = 4096;
    const lx_cpu_info *cpu = lx_cpu_info_get();
    printf("# bench_gemm: kernel set %s (best %s), L1d %lld KiB, L2 %lld KiB, L3 %lld KiB, OPENBLAS_CORETYPE=%s\n",
           lx_isa_name(lx_isa_current()), lx_isa_name(lx_isa_best()), (long long)cpu->l1d_bytes >> 10,
           (long long)cpu->l2_bytes >> 10, (long long)cpu->l3_bytes >> 10,
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    double peak[2] = {measure_peak(1), measure_peak(2)};
    printf("fma_peak_t1 gflops %.1f\nfma_peak_t2 gflops %.1f\n", peak[0], peak[1]);
    use_cpu_clock = 1;
    double peak_cpu = measure_peak(1);
    use_cpu_clock = 0;
    printf("fma_peak_t1_cpu gflops %.1f\n", peak_cpu);
    double copy_gbps = measure_copy();
    printf("copy_bandwidth gbps %.1f\n", copy_gbps);
    fflush(stdout);
    small_call();
    bench_step(peak, peak_cpu);
    if (argc > 1 && (strcmp(argv[1], "--no-gemm") == 0 || attention_only)) return 0; /* the kernels above only */

    /* OpenBLAS with its own detection, in a child started before our timings */
    double auto_secs[2][NSHAPES] = {{0}};
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = '\0';
        char *del = strstr(self, " (deleted)"); /* rebuilt while running: the new binary is at the path */
        if (del) *del = '\0';
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE '%s' --blas-only %d", self, maxdim);
        FILE *f = popen(cmd, "r");
        int i, t;
        double s;
        while (f && fscanf(f, "%d %d %lf", &i, &t, &s) == 3)
            if (i >= 0 && i < NSHAPES && (t == 1 || t == 2)) auto_secs[t - 1][i] = s;
        if (f) pclose(f);
    }
    for (int ti = 0; ti < 2; ti++) {
        int nt = thread_counts[ti];
        lx_set_num_threads(nt);
        for (int i = 0; i < NSHAPES; i++) {
            const shape *s = &shapes[i];
            if (s->M > maxdim || s->N > maxdim || (nt > 1 && s->M >= 4096)) continue; /* 4096^3: one thread */
            double ours = time_gemm(s, 0), blas = time_gemm(s, 1);
            double gf = 2.0 * (double)s->M * (double)s->N * (double)s->K / ours / 1e9;
            printf("gemm_%s_t%d gflops %.1f\n", s->name, nt, gf);
            printf("gemm_%s_t%d frac_peak %.3f\n", s->name, nt, gf / peak[ti]);
            printf("gemm_%s_t%d vs_openblas %.3f\n", s->name, nt, ours / blas);
            if (auto_secs[ti][i] > 0) printf("gemm_%s_t%d vs_openblas_auto %.3f\n", s->name, nt, ours / auto_secs[ti][i]);
            if (nt == 1) {
                use_cpu_clock = 1;
                double ours_c = time_gemm(s, 0), blas_c = time_gemm(s, 1);
                use_cpu_clock = 0;
                double gfc = 2.0 * (double)s->M * (double)s->N * (double)s->K / ours_c / 1e9;
                printf("gemm_%s_t1 frac_peak_cpu %.3f\n", s->name, gfc / peak_cpu);
                printf("gemm_%s_t1 vs_openblas_cpu %.3f\n", s->name, ours_c / blas_c);
                if (s->M * s->N * s->K <= 1024LL * 1024 * 1024)
                    printf("gemm_%s_t1 frac_peak_best %.3f\n", s->name, frac_peak_best(s));
            }
            fflush(stdout);
        }
    }
    return 0;
}
