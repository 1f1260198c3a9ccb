/* GEMM at the hardware's limit, measured in the same run (docs/kernels.md).
 *
 * Prints `<workload> <metric> <value>`:
 *   fma_peak_t<n> gflops       a register-only FMA loop of the kernel set in force, n = 1, 2 threads,
 *                              run once at the start (for reference: the fractions below divide by
 *                              peak samples taken in their own rounds)
 *   copy_bandwidth gbps        a streaming copy (bytes read + written per second), 1 thread
 *   gemm_<shape>_t<n> gflops       linnx's lx_sgemm (t1: the median of its rounds; t2: the best)
 *   gemm_<shape>_t<n> frac_peak    linnx's best GFLOPS over its rounds / the best FMA peak sample
 *                                  of the same rounds on n threads (same-moment rounds, below)
 *   gemm_<shape>_t<n> peak_gflops_same_rounds  that peak (the best of the rounds' samples)
 *   gemm_<shape>_t<n> frac_peak_round_median   the median over rounds of (round's GFLOPS /
 *                                  round's peak sample), for comparison
 *   gemm_<shape>_t<n> vs_openblas  linnx time / OpenBLAS time, OpenBLAS as the environment sets it,
 *                                  timed in the same rounds (t1 medians, t2 bests; below 1: linnx
 *                                  is faster)
 *   gemm_<shape>_t<n> vs_openblas_auto  the same against OpenBLAS in a child process with
 *                                  OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (its own detection;
 *                                  a `# vs_openblas_auto: ...` comment says why when it gave none)
 *   gemm_1x64x64 ns                one batch-1 call, nanoseconds
 *   gemm_1x1x1 ns                  a 1x1x1 call: the fixed cost of a call, nanoseconds
 *   rows_<op>_1024x4096_t<n> frac_bandwidth  softmax, log_softmax, cross_entropy, layer_norm,
 *                                  rms_norm and the VJPs softmax_vjp, log_softmax_vjp,
 *                                  cross_entropy_vjp: bytes read and written per second /
 *                                  rows_copy_1024x4096_t<n> (cross_entropy: / rows_read_...), n-thread
 *                                  streams over the same 16 MiB interleaved with the kernel (bench_rows)
 *   rows_<op>_1024x4096_t<n> frac_limit  softmax, log_softmax, cross_entropy: the same rate over
 *                                  min(memory reference, rows_<op>_l2_64x4096_t<n> gbps, the kernel
 *                                  on a small in-cache block: its compute rate, exp-bound)
 *   conv_fwd_..., conv_fwd_bwd_..., attention_fwd_..., attention_lm_fwd_bwd_... gflops (median),
 *                                  frac_peak, peak_gflops_same_rounds, frac_peak_round_median as
 *                                  the GEMM's (attention: the full T x T square counted, though
 *                                  causal skips about half)
 *   ..._cpu                        the one-thread figures again from the thread's CPU time instead
 *                                  of the wall clock (frac_peak_cpu: the median of the rounds over
 *                                  their best CPU-time peak sample): on a machine shared with other
 *                                  work, time the thread spent descheduled does not count
 *   gemm_<shape>_t1 frac_peak_best one thread, thread CPU time: the best round of the GEMM over the
 *                                  best peak sample of the same rounds
 * Same-moment rounds: every frac_peak line comes from R rounds of (a ~2 ms peak sample on the
 * line's threads, a timed run of the work), the rounds of all lines of a group spread over the
 * group's run (run_items); why best over best, at the "same-moment rounds" comment below.
 * Shapes: squares 64..4096 (2048 and 4096 with fewer rounds), 1 and 2 threads, the MLP's
 * forward GEMMs and their two backward GEMMs (transposed operands). Options (`bench_gemm --help`):
 * [max_dim] skips bigger shapes; --rows, --conv, --attention, --gemm print one group (they
 * combine); --no-gemm all but the GEMM shapes; `--blas-only N` is the child. */
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
#include "../src/core/team.h" /* the thread pool the kernels run on */
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

/* ---- FMA peak ----
 * The loops are common.h's (bench_peak_avx2 and the others: twelve independent chains, all kept
 * opaque to the compiler). `fma_peak_t<n>` runs the long loop once at the start; the `frac_peak`
 * lines divide by short samples of the same loop taken between the work's own timed runs
 * (peak_sample, below). */

#define PEAK_ITERS 20000000L
static volatile float peak_sink;

static int peak_level(void) { /* common.h's loop level for the kernel set in force */
    lx_isa isa = lx_isa_current();
    return isa == LX_ISA_AVX512 ? 2 : isa == LX_ISA_AVX2 ? 1 : 0;
}

static double peak_flops(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    int level = peak_level();
    if (level == 2) return bench_peak_avx512(PEAK_ITERS);
    if (level == 1) return bench_peak_avx2(PEAK_ITERS);
#endif
    return bench_peak_generic(PEAK_ITERS / 4);
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

/* One same-moment peak sample on nt threads (nt <= 8): each thread runs one short loop of
 * bench_fma_peak_sample (~2 ms with AVX2); returns the GFLOPS of all of them together and, in
 * *cpu, the calling thread's GFLOPS in its own CPU time (used on one thread only). The loops run
 * as the items of a parallel loop on linnx's thread pool (src/core/team.h), the one the kernels
 * run on, each starting once every item has been taken (or after 20 ms: a pool thread that does
 * not come in time leaves its item to the others), and are timed from the first start to the
 * last end: timing each thread alone and adding their rates counted two loops that ran one after
 * the other on one free vCPU as two threads' worth (74 GFLOPS "on two threads" in a run whose
 * two-thread work got one vCPU). */
typedef struct peak_job {
    int level, nt;
    atomic_int arrived;
    double t0[8], t1[8], flops[8], cpu0;
} peak_job;

static int peak_item(void *ctx, int64_t lo, int64_t hi) {
    peak_job *j = ctx;
    for (int64_t i = lo; i < hi; i++) {
        atomic_fetch_add(&j->arrived, 1);
        for (double w = bench_now(); atomic_load(&j->arrived) < j->nt && bench_now() - w < 0.02;) {
        }
        double c = 0;
        j->t0[i] = bench_now();
        double g = bench_fma_peak_sample(j->level, &c);
        j->t1[i] = bench_now();
        j->flops[i] = g * 1e9 * (j->t1[i] - j->t0[i]); /* the loop's fixed count, from its rate */
        if (i == 0) j->cpu0 = c;
    }
    return 0;
}

static double peak_one_thread; /* fma_peak_t1_cpu, for peak_note */
static double peak_sample(int nt, double *cpu) {
    const int level = peak_level();
    if (nt <= 1) return bench_fma_peak_sample(level, cpu);
    if (nt > 8) nt = 8;
    peak_job j = {.level = level, .nt = nt};
    atomic_init(&j.arrived, 0);
    lx_parallel_for(nt, nt, peak_item, &j);
    double start = j.t0[0], end = j.t1[0], sum = 0;
    for (int i = 0; i < nt; i++) {
        start = j.t0[i] < start ? j.t0[i] : start, end = j.t1[i] > end ? j.t1[i] : end;
        sum += j.flops[i];
    }
    *cpu = j.cpu0;
    return end > start ? sum / (end - start) / 1e9 : 0;
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

/* ---- same-moment rounds ----
 * On this kind of machine (a VM whose vCPUs share cores with other guests) the peak loop and the
 * work do not slow down together: a neighbour on the sibling hardware thread takes cache and
 * memory bandwidth more than FMA issue slots, the load changes within minutes (the loop alone
 * read 18-38 GFLOPS on one Zen 1 vCPU in one afternoon), and a peak taken once at the start
 * divided every later line by a figure of another moment. So every fraction is taken over R
 * rounds of (one ~2 ms peak sample on the same number of threads, one timed run of each work),
 * and frac_peak = the best rate of the work / the best peak sample of the same rounds.
 * Why best over best, not a per-round ratio: the peak loop is register-only and its samples
 * barely move (36-40 GFLOPS on one Zen 1 thread in runs where the start-of-run loop read 30-38),
 * while the work slows by up to 2x in spells when a neighbour takes the caches and memory; the
 * best round of the work is a quiet moment and the best peak sample the machine's rate in the
 * same stretch of the run, so their ratio is the code's fraction, not the spell's. A per-round
 * ratio divides by one 2 ms sample each time: a sample that lost its CPU for a millisecond
 * makes that round's ratio too high (the best of such ratios is wrong by the worst hiccup), and
 * their median moves with how often the work met a slow spell, which is the noise this removes.
 * The median of per-round ratios is still printed as frac_peak_round_median for comparison. */
#define MAX_ROUNDS 32
typedef struct {
    int n;                                          /* rounds */
    double wall[2][MAX_ROUNDS], cpu[2][MAX_ROUNDS]; /* seconds per call of work w in round r */
    double peak[MAX_ROUNDS], peak_cpu[MAX_ROUNDS];  /* GFLOPS of round r's peak sample */
} rounds;

static double thread_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A line's works (1 or 2: ours and OpenBLAS) and its rounds. */
typedef struct {
    rounds o;
    int nwork, inner, warm_each; /* warm_each: one untimed call of a work before its timed run */
    void (*fn[2])(void *);
    void *ctx[2];
} round_item;

/* Round r of an item: a peak sample on nt threads, then each work's `inner` timed calls; both
 * clocks every time (the CPU-time figures mean something on one thread only). */
static void item_round(round_item *it, int r, int nt) {
    rounds *o = &it->o;
    o->peak[r] = peak_sample(nt, &o->peak_cpu[r]);
    for (int w = 0; w < it->nwork; w++) {
        if (it->warm_each) it->fn[w](it->ctx[w]);
        double c0 = thread_cpu_now(), t0 = bench_now();
        for (int i = 0; i < it->inner; i++) it->fn[w](it->ctx[w]);
        o->wall[w][r] = (bench_now() - t0) / it->inner;
        o->cpu[w][r] = (thread_cpu_now() - c0) / it->inner;
    }
}

/* The rounds of all items on nt threads, spread over the whole run: pass r does round r of every
 * item that has one (item k has items[k].o.n rounds), as bench_rows spreads its samples. On this
 * host a slow spell lasts seconds to minutes: one line's rounds back to back (~0.1-0.3 s) fell
 * inside one spell (a run where every one-thread GEMM ran at ~11 of its ~33 GFLOPS while the
 * peak samples read 36), rounds spread over the run give every line the quiet moments too. */
static void run_items(round_item *items, int nitems, int nt, int warmup) {
    int passes = 0;
    for (int k = 0; k < nitems; k++) {
        if (items[k].o.n > MAX_ROUNDS) items[k].o.n = MAX_ROUNDS;
        passes = items[k].o.n > passes ? items[k].o.n : passes;
        for (int w = 0; w < items[k].nwork; w++)
            for (int i = 0; i < warmup; i++) items[k].fn[w](items[k].ctx[w]);
    }
    for (int r = 0; r < passes; r++)
        for (int k = 0; k < nitems; k++)
            if (r < items[k].o.n) item_round(&items[k], r, nt);
}
static double arr_min(const double *x, int n) {
    double m = x[0];
    for (int i = 1; i < n; i++) m = x[i] < m ? x[i] : m;
    return m;
}
static double arr_max(const double *x, int n) {
    double m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
static double arr_median(const double *x, int n) { /* the upper middle for even n, as median_time */
    double t[MAX_ROUNDS];
    memcpy(t, x, (size_t)n * sizeof t[0]);
    qsort(t, (size_t)n, sizeof t[0], bench_cmp_double);
    return t[n / 2];
}
/* A comment line when no two-thread peak sample of the rounds reached 1.5x one thread's peak:
 * the other vCPU was taken throughout, and the line's t2 figures measure that share. */
static void peak_note(const char *line, int nt, double pk) {
    if (nt > 1 && peak_one_thread > 0 && pk < 1.5 * peak_one_thread)
        printf("# %s_t%d: the same-round %d-thread peak (%.1f GFLOPS) stayed below 1.5x one thread's (%.1f): "
               "the other vCPU was busy throughout, frac_peak measures a share\n",
               line, nt, nt, pk, peak_one_thread);
}
/* The median over rounds of (the work's GFLOPS in the round / the round's peak sample), wall clock. */
static double round_median_frac(const rounds *o, int w, double flops) {
    double f[MAX_ROUNDS];
    for (int r = 0; r < o->n; r++) f[r] = flops / o->wall[w][r] / 1e9 / o->peak[r];
    return arr_median(f, o->n);
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
        /* softmax, log_softmax and cross_entropy on the small in-cache block (op 0, 1, 2), below */
        double best_l2[3] = {1e30, 1e30, 1e30};
        for (int op = 0; op < NOPS; op++) best[op][0] = best[op][1] = 1e30;
        for (int rep = 0; rep < ROWS_REPS; rep++) /* each op's samples spread over the whole run */
            for (int op = 0; op < NOPS; op++) {
                if (opcode[op] <= 2)
                    for (int k = 0; k < 4; k++) { /* warm call first, as below */
                        jc.op = opcode[op];
                        step_call(&jc);
                        double t0 = bench_now();
                        step_call(&jc);
                        double t = bench_now() - t0;
                        if (t < best_l2[opcode[op]]) best_l2[opcode[op]] = t;
                    }
                j.op = opcode[op];
                for (int k = 0; k < 3; k++) {
                    double c, t = stream_once(k, lx_f32(j.x), dst, N, nt, &c);
                    int r = k == 2 ? 2 : 0;
                    if (t < ref[r][0]) ref[r][0] = t;
                    if (c < ref[r][1]) ref[r][1] = c;
                }
                step_call(&j); /* untimed: wakes the pool's workers, which then spin (sched_yield) into the
                                * timed call, as between the back-to-back ops of a step (the streams
                                * above outlast their spin, and a worker woken from sleep waits for a
                                * busy CPU) */
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
        /* The exp rows' other limit: one exp per element. The same kernel on the small 64 x 4096
         * block (1 MiB of x: in L2 or L3, sampled with the rest above) runs at its compute rate;
         * the roofline is the lower of that and the memory reference (the copy; for
         * cross_entropy the read stream), and frac_limit is the big run against it. Where
         * frac_limit is near 1 and frac_bandwidth is not, the kernel is compute-bound: on Zen 1
         * the exp (the AVX2 rows' table exp, the others' degree-7 polynomial: docs/kernels.md, rows). */
        for (int op = 0; op <= 2; op++) {
            const double mem = op == 2 ? read_bw : copy_bw;
            double incache = passes[op] * 4.0 * (double)(RC * D) / best_l2[op] / 1e9;
            double big = passes[op] * bytes / best[op][0] / 1e9;
            printf("rows_%s_l2_%lldx%lld_t%d gbps %.1f\n", rows[op], (long long)RC, (long long)D, nt, incache);
            printf("rows_%s_%lldx%lld_t%d frac_limit %.3f\n", rows[op], (long long)R, (long long)D, nt,
                   big / (incache < mem ? incache : mem));
        }
        fflush(stdout);
    }
    free(dst);
    lx_release(j.ysm), lx_release(j.ylsm), lx_release(j.loss), lx_release(j.g), lx_release(j.gl);
    lx_release(j.x), lx_release(j.scale), lx_release(j.bias), lx_release(j.labels);
    lx_release(jc.x), lx_release(jc.labels);
}

/* The groups of lines `bench_gemm` prints (main's options select them). */
enum { G_ROWS = 1, G_CONV = 2, G_ATTENTION = 4, G_SMALL = 8, G_GEMM = 16, G_ALL = 31 };
static int groups = G_ALL;
/* Rounds per conv / attention line (one call each; before the same-round peaks: 5 calls for the
 * wall median, and on one thread 5 more for the CPU-time one). */
#define STEP_ROUNDS 7
static void bench_step(void) {
    step_job j;
    if (groups & G_ROWS) bench_rows();
    if (!(groups & (G_CONV | G_ATTENTION))) return;
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
        const int nt = thread_counts[ti];
        lx_set_num_threads(nt);
        /* STEP_ROUNDS rounds of (a peak sample on nt threads, one call) per line, spread over
         * the lines (run_items), both clocks */
        step_job jk[5];
        round_item items[5];
        int idx[5], nitems = 0;
        for (int k = 0; k < 5; k++) {
            if (!(groups & (k < 2 ? G_CONV : G_ATTENTION))) continue;
            jk[k] = j, jk[k].op = ops[k];
            items[nitems] = (round_item){.o = {.n = STEP_ROUNDS}, .nwork = 1, .inner = 1, .fn = {step_call}, .ctx = {&jk[k]}};
            idx[nitems++] = k;
        }
        run_items(items, nitems, nt, 1);
        for (int it = 0; it < nitems; it++) {
            const int k = idx[it];
            const rounds *o = &items[it].o;
            const double pk = arr_max(o->peak, o->n), f = flops[k] / 1e9;
            printf("%s_t%d gflops %.1f\n", names[k], nt, f / arr_median(o->wall[0], o->n));
            printf("%s_t%d frac_peak %.3f\n", names[k], nt, f / arr_min(o->wall[0], o->n) / pk);
            printf("%s_t%d peak_gflops_same_rounds %.1f\n", names[k], nt, pk);
            printf("%s_t%d frac_peak_round_median %.3f\n", names[k], nt, round_median_frac(o, 0, flops[k]));
            peak_note(names[k], nt, pk);
            if (nt == 1)
                printf("%s_t1 frac_peak_cpu %.3f\n", names[k], f / arr_median(o->cpu[0], o->n) / arr_max(o->peak_cpu, o->n));
        }
        fflush(stdout);
    }
    lx_release(j.x), lx_release(j.w), lx_release(j.q), lx_release(j.k), lx_release(j.v);
    lx_release(j.lq), lx_release(j.lk), lx_release(j.lv);
}

/* The child: OpenBLAS seconds per shape and thread count. */
static int blas_only(int maxdim) {
    for (int ti = 0; ti < 2; ti++) {
        lx_set_num_threads(thread_counts[ti]);
        for (int i = 0; i < NSHAPES; i++)
            if (shapes[i].M <= maxdim && shapes[i].N <= maxdim) printf("%d %d %.9g\n", i, thread_counts[ti], time_gemm(&shapes[i], 1));
    }
    return 0;
}

static void small_call(void) {
    float A[64], B[64 * 64], C[64];
    for (int i = 0; i < 64; i++) A[i] = (float)i / 64;
    for (int i = 0; i < 64 * 64; i++) B[i] = (float)(i % 7) / 7;
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
    /* a 1x1x1 product: what a call costs besides its arithmetic (checks, kernel set, path) */
    best = 1e30;
    for (int rep = 0; rep < 7; rep++) {
        int n = 20000;
        double t0 = bench_now();
        for (int i = 0; i < n; i++) lx_sgemm(false, false, 1, 1, 1, 1.0f, A, 1, B, 1, 0.0f, C, 1);
        double t = (bench_now() - t0) / n;
        if (t < best) best = t;
    }
    peak_sink = C[0];
    printf("gemm_1x1x1 ns %.0f\n", best * 1e9);
}

/* The GEMM lines on nt threads: per shape ours and OpenBLAS on the same buffers, interleaved with
 * peak samples, the rounds spread over all shapes (run_items). Rounds per shape by its GFLOP:
 * one thread 25 (up to 0.1) / 15 (0.1-1) / 11 (1-5, 1024^3) / 7 / 5 (4096^3); two threads 15 /
 * 9 / 5. Before the same-round peaks a one-thread shape took four separate runs of 5-11 (wall
 * and CPU time, ours and OpenBLAS) and 15 more for frac_peak_best; each round now gives both
 * clocks at once. */
typedef struct {
    gemm_job ours, blas;
} gemm_pair;
static void bench_shapes(int nt, int maxdim, const double auto_secs[NSHAPES]) {
    gemm_pair jobs[NSHAPES];
    round_item items[NSHAPES];
    int idx[NSHAPES], nitems = 0;
    for (int i = 0; i < NSHAPES; i++) {
        const shape *s = &shapes[i];
        if (s->M > maxdim || s->N > maxdim) continue;
        size_t na = (size_t)(s->M * s->K), nb = (size_t)(s->K * s->N), nc = (size_t)(s->M * s->N);
        gemm_job jo = {.s = s, .A = malloc(na * 4), .B = malloc(nb * 4), .C = malloc(nc * 4), .blas = 0};
        if (!jo.A || !jo.B || !jo.C) {
            free(jo.A), free(jo.B), free(jo.C);
            continue;
        }
        uint32_t r = 99;
        for (size_t k = 0; k < na; k++) jo.A[k] = (float)((r = r * 1664525u + 1013904223u) >> 9) * 0x1p-23f - 0.5f;
        for (size_t k = 0; k < nb; k++) jo.B[k] = (float)((r = r * 1664525u + 1013904223u) >> 9) * 0x1p-23f - 0.5f;
        jobs[i].ours = jo, jobs[i].blas = jo, jobs[i].blas.blas = 1;
        const double est = 2.0 * (double)s->M * (double)s->N * (double)s->K / 50e9;
        const int inner = bench_inner_for(est, 5e-3);
        int n = nt > 1 ? (est > 0.5 ? 5 : est > 0.002 ? 9 : 15)
                       : (est > 0.5 ? 5 : est > 0.1 ? 7 : est > 0.02 ? 11 : est > 0.002 ? 15 : 25);
        /* warm_each: a shape timed one call at a time whose operands fit the caches (up to ~1
         * GFLOP) gets one untimed call before each timed one, so the other shapes' rounds in
         * between do not leave them out of cache (a batch of several calls warms itself; bigger
         * operands do not fit anyway) */
        items[nitems] = (round_item){.o = {.n = n}, .nwork = 2, .inner = inner,
                                     .warm_each = inner == 1 && est <= 0.02, .fn = {gemm_call, gemm_call},
                                     .ctx = {&jobs[i].ours, &jobs[i].blas}};
        idx[nitems++] = i;
    }
    run_items(items, nitems, nt, 1);
    for (int it = 0; it < nitems; it++) {
        const int si = idx[it];
        const shape *s = &shapes[si];
        const rounds *o = &items[it].o;
        free(jobs[si].ours.A), free(jobs[si].ours.B), free(jobs[si].ours.C);
        const double flops = 2.0 * (double)s->M * (double)s->N * (double)s->K;
        const double pk = arr_max(o->peak, o->n), gf = flops / 1e9;
        /* one thread: gflops and vs_openblas from the medians (as before); two threads: from the
         * best rounds (two threads on two shared vCPUs rarely both run for a whole batch; the
         * median measured that share, not the code) */
        double ours = nt > 1 ? arr_min(o->wall[0], o->n) : arr_median(o->wall[0], o->n);
        double blas = nt > 1 ? arr_min(o->wall[1], o->n) : arr_median(o->wall[1], o->n);
        printf("gemm_%s_t%d gflops %.1f\n", s->name, nt, gf / ours);
        printf("gemm_%s_t%d frac_peak %.3f\n", s->name, nt, gf / arr_min(o->wall[0], o->n) / pk);
        printf("gemm_%s_t%d vs_openblas %.3f\n", s->name, nt, ours / blas);
        if (auto_secs[si] > 0) printf("gemm_%s_t%d vs_openblas_auto %.3f\n", s->name, nt, ours / auto_secs[si]);
        printf("gemm_%s_t%d peak_gflops_same_rounds %.1f\n", s->name, nt, pk);
        printf("gemm_%s_t%d frac_peak_round_median %.3f\n", s->name, nt, round_median_frac(o, 0, flops));
        if (nt > 1) {
            char line[64];
            snprintf(line, sizeof line, "gemm_%s", s->name);
            peak_note(line, nt, pk);
        }
        if (nt == 1) {
            const double pkc = arr_max(o->peak_cpu, o->n), oc = arr_median(o->cpu[0], o->n);
            printf("gemm_%s_t1 frac_peak_cpu %.3f\n", s->name, gf / oc / pkc);
            printf("gemm_%s_t1 vs_openblas_cpu %.3f\n", s->name, oc / arr_median(o->cpu[1], o->n));
            printf("gemm_%s_t1 frac_peak_best %.3f\n", s->name, gf / arr_min(o->cpu[0], o->n) / pkc);
        }
    }
    fflush(stdout);
}

static const char usage[] =
    "usage: bench_gemm [options] [max_dim]\n"
    "  max_dim       skip GEMM shapes with M or N above it (default 4096)\n"
    "  --rows        the rows (softmax, norms, cross-entropy and the VJPs) and their bandwidth references only\n"
    "  --conv        the FMA peaks, copy bandwidth and the conv lines only\n"
    "  --attention   the FMA peaks, copy bandwidth and the attention lines only\n"
    "  --gemm        the FMA peaks, copy bandwidth, the batch-1 call and the GEMM shapes only\n"
    "  --no-gemm     everything but the GEMM shapes (rows, conv, attention, the batch-1 call)\n"
    "  --blas-only N the child process: OpenBLAS seconds per shape up to N (internal)\n"
    "  --help        this text\n"
    "--rows, --conv, --attention and --gemm combine (e.g. --conv --attention); with none, all groups.\n"
    "Output: `<workload> <metric> <value>` lines; see the comment at the top of bench/gemm.c and the\n"
    "Measurements section of docs/kernels.md.\n";

int main(int argc, char **argv) {
    int maxdim = 4096, picked = 0, no_gemm = 0;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        char *end = NULL;
        if (!strcmp(arg, "--blas-only")) {
            if (a + 1 >= argc) break;
            return blas_only(atoi(argv[a + 1]));
        } else if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(arg, "--rows")) picked |= G_ROWS;
        else if (!strcmp(arg, "--conv")) picked |= G_CONV;
        else if (!strcmp(arg, "--attention")) picked |= G_ATTENTION;
        else if (!strcmp(arg, "--gemm")) picked |= G_SMALL | G_GEMM;
        else if (!strcmp(arg, "--no-gemm")) no_gemm = 1;
        else if (strtol(arg, &end, 10) > 0 && end && *end == '\0') maxdim = atoi(arg); /* `bench_gemm 1024` */
        else {
            fprintf(stderr, "bench_gemm: unknown argument '%s'\n%s", arg, usage);
            return 2;
        }
    }
    groups = picked ? picked : G_ALL;
    if (no_gemm) groups &= ~G_GEMM;
    if (groups == G_ROWS) { /* the rows and their references only, as before: no peaks */
        bench_rows();
        return 0;
    }
    const lx_cpu_info *cpu = lx_cpu_info_get();
    printf("# bench_gemm: kernel set %s (best %s), L1d %lld KiB, L2 %lld KiB, L3 %lld KiB, OPENBLAS_CORETYPE=%s\n",
           lx_isa_name(lx_isa_current()), lx_isa_name(lx_isa_best()), (long long)cpu->l1d_bytes >> 10,
           (long long)cpu->l2_bytes >> 10, (long long)cpu->l3_bytes >> 10,
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    puts("# frac_peak: the best rate of the work / the best FMA peak sample taken in the same rounds (interleaved "
         "with its runs; peak_gflops_same_rounds); fma_peak_t<n> is the loop once at the start, for reference");
    double peak[2] = {measure_peak(1), measure_peak(2)};
    printf("fma_peak_t1 gflops %.1f\nfma_peak_t2 gflops %.1f\n", peak[0], peak[1]);
    use_cpu_clock = 1;
    double peak_cpu = measure_peak(1);
    use_cpu_clock = 0;
    printf("fma_peak_t1_cpu gflops %.1f\n", peak_cpu);
    peak_one_thread = peak_cpu;
    double copy_gbps = measure_copy();
    printf("copy_bandwidth gbps %.1f\n", copy_gbps);
    fflush(stdout);
    if (groups & G_SMALL) small_call();
    bench_step();
    if (!(groups & G_GEMM)) return 0; /* the kernels above only */

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
        int i, t, got = 0;
        double s;
        while (f && fscanf(f, "%d %d %lf", &i, &t, &s) == 3)
            if (i >= 0 && i < NSHAPES && (t == 1 || t == 2)) auto_secs[t - 1][i] = s, got++;
        int rc = f ? pclose(f) : -1;
        if (maxdim >= 64 && (!got || rc != 0)) /* say why vs_openblas_auto lines are missing, rather than drop them silently */
            printf("# vs_openblas_auto: the child process (OpenBLAS's own detection) %s\n",
                   !f ? "could not be started" : got ? "failed part way: lines only for the shapes it timed" : "gave no timings");
    } else {
        printf("# vs_openblas_auto: /proc/self/exe unreadable, no child process: no vs_openblas_auto lines\n");
    }
    for (int ti = 0; ti < 2; ti++) {
        int nt = thread_counts[ti];
        lx_set_num_threads(nt);
        bench_shapes(nt, maxdim, auto_secs[ti]);
    }
    return 0;
}
