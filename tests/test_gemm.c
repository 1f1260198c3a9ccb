/* linnx's own GEMM in every kernel set this machine runs (generic, AVX2, AVX-512), on each path
 * (small, packed, OpenBLAS), against a double-precision reference written here: all transpose
 * combinations, sizes around every register-tile edge, padded leading dimensions, beta 0 / 1 /
 * other with NaN and +-Inf in C when beta is 0, K beyond one K block, 1 and 2 threads, fused epilogues,
 * strided batches; plus the kernel-set selection (linnx/cpu.h). */
#define _DEFAULT_SOURCE /* mmap MAP_ANONYMOUS, sysconf */
#include <math.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../src/ops/linalg_internal.h"
#include "../src/ops/vmath.h"
#include "linnx/cpu.h"
#include "linnx/linalg.h"
#include "linnx/threads.h"
#include "lx_test.h"

static uint32_t rng_state = 2024;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) * (1.0 / 8388608.0)) - 1.0f;
}

static double act_ref(double x, lx_gemm_act act) {
    switch (act) {
    case LX_GEMM_ACT_RELU: return x < 0 ? 0 : x;
    case LX_GEMM_ACT_GELU_TANH: return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case LX_GEMM_ACT_GELU_ERF: return 0.5 * x * (1 + erf(x / 1.4142135623730951));
    case LX_GEMM_ACT_SILU: return x / (1 + exp(-x));
    default: return x;
    }
}

typedef struct {
    bool ta, tb;
    int M, N, K;
    float alpha, beta;
    int pad;            /* extra elements per row of A, B and C */
    const float *bias;  /* epilogue: NULL or N values */
    lx_gemm_act act;
    int threads;        /* 0: lx_sgemm; else lx_sgemm_ex on this many threads */
    bool aligned;       /* A, B and C on 64-byte boundaries (else malloc's) */
} gcase;

/* The reference's inner loop, sum a_k b_k and sum |a_k b_k| in k order over contiguous double
 * rows (each product of two floats is exact in double). In an unoptimised build (the sanitizer
 * pass of .ci/run: Debug, ASan + UBSan) GCC compiles it optimised anyway, still instrumented:
 * at -O0 it was most of test_gemm's ~90 s there; an optimised build is unchanged. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__OPTIMIZE__)
__attribute__((optimize("O2")))
#endif
static double ref_dot(const double *a, const double *b, int K, double *mag) {
    double s = 0, m = 0;
    for (int k = 0; k < K; k++) {
        double p = a[k] * b[k];
        s += p;
        m += fabs(p);
    }
    *mag = m;
    return s;
}

/* Runs one case; returns 1 (and says why on stderr) on a mismatch. */
static int run_case(const gcase *g) {
    int M = g->M, N = g->N, K = g->K;
    int lda = (g->ta ? M : K) + g->pad, ldb = (g->tb ? K : N) + g->pad, ldc = N + g->pad;
    int arows = g->ta ? K : M, brows = g->tb ? N : K;
    size_t na = (size_t)arows * lda + 1, nb = (size_t)brows * ldb + 1, nc = (size_t)M * ldc + 1;
    float *A, *B, *C, *C0 = malloc(sizeof(float) * nc);
    if (g->aligned) {
        A = aligned_alloc(64, (sizeof(float) * na + 63) / 64 * 64), B = aligned_alloc(64, (sizeof(float) * nb + 63) / 64 * 64);
        C = aligned_alloc(64, (sizeof(float) * nc + 63) / 64 * 64);
    } else {
        A = malloc(sizeof(float) * na), B = malloc(sizeof(float) * nb), C = malloc(sizeof(float) * nc);
    }
    for (size_t i = 0; i < na; i++) A[i] = frand();
    for (size_t i = 0; i < nb; i++) B[i] = frand();
    for (size_t i = 0; i < nc; i++) /* beta 0: C is never read, so NaN and +-Inf there must not leak */
        C0[i] = C[i] = g->beta != 0 ? frand() : i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
    lx_gemm_epilogue ep = {.bias = g->bias, .act = g->act};
    lx_status st = g->threads == 0 && !g->bias && g->act == LX_GEMM_ACT_NONE
                       ? lx_sgemm(g->ta, g->tb, M, N, K, g->alpha, A, lda, B, ldb, g->beta, C, ldc)
                       : lx_sgemm_ex(g->ta, g->tb, M, N, K, g->alpha, A, lda, B, ldb, g->beta, C, ldc, &ep, g->threads);
    int bad = st != LX_OK;
    /* The reference reads op(A) by rows and op(B) by columns from contiguous double copies: the
     * same sums in the same k order as indexing A and B in place, in fewer instructions. */
    double *ad = malloc(sizeof(double) * ((size_t)M * K + 1)), *bd = malloc(sizeof(double) * ((size_t)N * K + 1));
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) ad[(size_t)i * K + k] = g->ta ? A[k * lda + i] : A[i * lda + k];
    for (int j = 0; j < N; j++)
        for (int k = 0; k < K; k++) bd[(size_t)j * K + k] = g->tb ? B[j * ldb + k] : B[k * ldb + j];
    for (int i = 0; i < M && !bad; i++) {
        for (int j = 0; j < N && !bad; j++) {
            double mag, s = ref_dot(ad + (size_t)i * K, bd + (size_t)j * K, K, &mag);
            double c0 = g->beta != 0 ? C0[i * ldc + j] : 0;
            double r = g->alpha * s + g->beta * c0 + (g->bias ? g->bias[j] : 0);
            mag = fabs(g->alpha) * mag + fabs(g->beta * c0) + (g->bias ? fabs(g->bias[j]) : 0);
            r = act_ref(r, g->act);
            double got = C[i * ldc + j];
            if (!(fabs(got - r) <= 4e-6 * mag + 2e-6)) {
                fprintf(stderr, "  C[%d,%d] = %.9g, want %.9g\n", i, j, got, r);
                bad = 1;
            }
        }
        for (int j = N; j < ldc; j++) /* padding untouched */
            if (!(C[i * ldc + j] == C0[i * ldc + j] || (isnan(C[i * ldc + j]) && isnan(C0[i * ldc + j])))) bad = 1;
    }
    if (bad)
        fprintf(stderr, "gemm mismatch: set %s ta %d tb %d M %d N %d K %d alpha %g beta %g pad %d bias %d act %d threads %d\n",
                lx_isa_name(lx_isa_current()), g->ta, g->tb, M, N, K, g->alpha, g->beta, g->pad, g->bias != NULL,
                (int)g->act, g->threads);
    free(A), free(B), free(C), free(C0), free(ad), free(bd);
    return bad;
}

static const char *const sets[] = {"generic", "avx2", "avx512"};

/* Sizes around each set's tile edges (MR 4/6/12, NR 8/16/32) and the K block (256). */
static void test_every_set_and_path(void) {
    const int ms[] = {1, 6, 7, 12, 13, 37}; /* 13 and 37 are also 4k + 1 */
    const int ns[] = {1, 8, 16, 17, 33, 70};
    const int ks[] = {1, 9, 300};
    const lx_gemm_path paths[] = {LX_GEMM_PATH_SMALL, LX_GEMM_PATH_PACKED, LX_GEMM_PATH_BLAS};
    int ran = 0;
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        CHECK_EQ_INT(lx_isa_set(sets[s]), LX_OK);
        CHECK_STR(lx_isa_name(lx_isa_current()), sets[s]);
        for (int p = 0; p < 3; p++) {
            lx_sgemm_force_path(paths[p]);
            int bad = 0, cases = 0;
            for (int t = 0; t < 4; t++)
                for (int mi = 0; mi < 6; mi++)
                    for (int ni = 0; ni < 6; ni++)
                        for (int ki = 0; ki < 3; ki++) {
                            int v = (mi + ni + ki + t) % 4;
                            gcase g = {.ta = t & 1, .tb = t >> 1, .M = ms[mi], .N = ns[ni], .K = ks[ki],
                                       .alpha = v == 3 ? -0.5f : 1.0f, .beta = v == 0 ? 0.0f : v == 1 ? 1.0f : 0.75f,
                                       .pad = (mi + ki) % 3};
                            bad += run_case(&g);
                            cases++;
                        }
            CHECK_EQ_INT(bad, 0);
            CHECK_EQ_INT(cases, 432);
            ran++;
        }
    }
    CHECK(ran >= 3); /* the generic set at least */
    lx_sgemm_force_path(LX_GEMM_PATH_AUTO);
    lx_isa_set(NULL);
}

/* The packed path's pieces on one thread: A^T packed in groups of eight MR-row slivers (M around
 * 48 = 8 x 6 and 96), the assembly k loop's 4-step body and 1-3 step tail (K = 4, 7, 263 = 132 +
 * 131, 515), one row block (B packed just before use: a sliver at a time, or groups of four
 * slivers row by row, N = 100 being a full group then two slivers and a ragged one) and several
 * (shared B), ragged column slivers; every set, all transposes, padded leading dimensions, NaN in
 * C with beta 0. */
static void test_packed_edges(void) {
    const int ms[] = {48, 49, 55, 97, 300};
    const int ns[] = {16, 31, 64, 100};
    const int ks[] = {4, 7, 263, 515};
    lx_sgemm_force_path(LX_GEMM_PATH_PACKED);
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        int bad = 0, cases = 0;
        for (int t = 0; t < 4; t++)
            for (int mi = 0; mi < 5; mi++)
                for (int ni = 0; ni < 4; ni++)
                    for (int ki = 0; ki < 4; ki++) {
                        int v = (mi + ni + ki + t) % 3;
                        gcase g = {.ta = t & 1, .tb = t >> 1, .M = ms[mi], .N = ns[ni], .K = ks[ki], .alpha = 1.0f,
                                   .beta = v == 0 ? 0.0f : v == 1 ? 1.0f : 0.75f, .pad = 1 + (mi + ki) % 2};
                        bad += run_case(&g);
                        cases++;
                    }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(cases, 320);
        /* B on 64-byte boundaries with ldb a multiple of 16: the AVX-512 panel path reads
         * whole panels of it in place (else it copies them); a ragged last panel is copied */
        bad = 0;
        const int dims[][3] = {{97, 128, 515}, {200, 100, 263}, {37, 64, 9}};
        for (int d = 0; d < 3; d++)
            for (int t = 0; t < 4; t++) {
                gcase g = {.ta = t & 1, .tb = t >> 1, .M = dims[d][0], .N = dims[d][1], .K = dims[d][2], .alpha = 1.0f,
                           .beta = t == 1 ? 0.5f : 0.0f, .pad = t == 2 ? 0 : 16, .aligned = true};
                bad += run_case(&g);
            }
        CHECK_EQ_INT(bad, 0);
        /* A^T with lda far beyond M and K blocks over 256: the AVX-512 panel path copies its A
         * block to contiguous k rows (M near lda: read in place, as above with 48 rows) */
        bad = 0;
        for (int t = 0; t < 4; t++) {
            gcase g = {.ta = true, .tb = t & 1, .M = 97, .N = t < 2 ? 70 : 128, .K = t < 2 ? 515 : 300, .alpha = 1.0f,
                       .beta = t == 1 ? 0.5f : 0.0f, .pad = 1024 - 97};
            bad += run_case(&g);
        }
        CHECK_EQ_INT(bad, 0);
        /* B of 1 MiB or more: the AVX-512 tiles prefetch C and the next panel (shared packed
         * panels across two K blocks; B^T one K block of whole rows, ldb == K) */
        bad = 0;
        const int big[][5] = {{300, 520, 515, 0, 0}, {300, 520, 515, 1, 1}, {100, 600, 512, 0, 1}, {260, 530, 600, 1, 0}};
        for (int d = 0; d < 4; d++) {
            gcase g = {.ta = big[d][3], .tb = big[d][4], .M = big[d][0], .N = big[d][1], .K = big[d][2], .alpha = 1.0f,
                       .beta = d % 2 ? 0.5f : 0.0f, .pad = d == 2 ? 0 : 16, .aligned = true};
            bad += run_case(&g);
        }
        CHECK_EQ_INT(bad, 0);
    }
    lx_isa_set(NULL);
    lx_sgemm_force_path(LX_GEMM_PATH_AUTO);
}

/* The packed path on two threads: item grids split by rows, by columns, and both; more items than
 * threads; a K that needs several blocks. One row block (M <= the row block) shares one packed A
 * between the threads, packed in groups of eight slivers by whichever thread takes the item:
 * 145 rows are three full groups and a ragged one, 600 = 300 + 300 two K blocks (a padding
 * overrun between neighbouring groups would show as wrong rows 48, 96, 144). Then the automatic
 * choice at default settings. */
static void test_threads(void) {
    const int dims[][3] = {{200, 300, 150}, {30, 700, 64}, {700, 20, 33}, {129, 129, 513}, {64, 64, 64},
                           {145, 90, 600}, {96, 512, 256}};
    lx_sgemm_force_path(LX_GEMM_PATH_PACKED);
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        int bad = 0;
        for (int d = 0; d < 7; d++)
            for (int t = 0; t < 4; t++) {
                gcase g = {.ta = t & 1, .tb = t >> 1, .M = dims[d][0], .N = dims[d][1], .K = dims[d][2],
                           .alpha = 1.0f, .beta = t == 2 ? 0.5f : 0.0f, .pad = t, .threads = 2};
                bad += run_case(&g);
            }
        CHECK_EQ_INT(bad, 0);
    }
    lx_isa_set(NULL);
    lx_sgemm_force_path(LX_GEMM_PATH_AUTO);
    int bad = 0;
    for (int d = 0; d < 7; d++) {
        gcase g = {.M = dims[d][0], .N = dims[d][1], .K = dims[d][2], .alpha = 1.0f, .beta = 0.0f};
        bad += run_case(&g);
    }
    CHECK_EQ_INT(bad, 0);
}

/* The small path on two threads (row ranges of 24 rows claimed from the pool) against the same
 * product on one thread, bit for bit, on every set: the MLP's 10-wide last layer and its two
 * backward products, ragged row counts (a last range of 1 and of 23 rows), every transpose, beta 0
 * (C full of NaN) and 0.5, and the bias + ReLU epilogue writing y beside C (the ranges' rows of y). */
static void test_small_threads(void) {
    static const int dims[][3] = {{128, 10, 512}, {128, 512, 10}, {512, 10, 128}, {97, 70, 260}, {71, 33, 300}};
    float bias[512];
    for (int j = 0; j < 512; j++) bias[j] = frand();
    lx_sgemm_force_path(LX_GEMM_PATH_SMALL);
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        int bad = 0;
        for (int d = 0; d < 5; d++)
            for (int t = 0; t < 8; t++) {
                bool ta = t & 1, tb = (t >> 1) & 1, ep_on = t >> 2;
                int M = dims[d][0], N = dims[d][1], K = dims[d][2];
                int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2, ldc = N + 3, ldy = N + 1;
                float beta = t == 2 || t == 5 ? 0.5f : 0.0f;
                size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc,
                       ny = (size_t)M * ldy;
                float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb);
                float *C1 = malloc(sizeof(float) * nc), *C2 = malloc(sizeof(float) * nc);
                float *Y1 = malloc(sizeof(float) * ny), *Y2 = malloc(sizeof(float) * ny);
                for (size_t i = 0; i < na; i++) A[i] = frand();
                for (size_t i = 0; i < nb; i++) B[i] = frand();
                for (size_t i = 0; i < nc; i++) C1[i] = C2[i] = beta == 0.0f ? NAN : frand();
                for (size_t i = 0; i < ny; i++) Y1[i] = Y2[i] = NAN;
                lx_gemm_epilogue e1 = {.bias = bias, .act = LX_GEMM_ACT_RELU, .y = Y1, .ldy = ldy}, e2 = e1;
                e2.y = Y2;
                bad += lx_sgemm_ex(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C1, ldc, ep_on ? &e1 : NULL, 1) != LX_OK;
                bad += lx_sgemm_ex(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C2, ldc, ep_on ? &e2 : NULL, 2) != LX_OK;
                int diff = memcmp(C1, C2, sizeof(float) * nc) != 0 || memcmp(Y1, Y2, sizeof(float) * ny) != 0;
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) diff |= !isfinite(C2[(size_t)i * ldc + j]);
                if (diff)
                    fprintf(stderr, "small path on 2 threads differs: set %s %dx%dx%d ta %d tb %d epilogue %d\n",
                            sets[s], M, N, K, ta, tb, ep_on);
                bad += diff;
                free(A), free(B), free(C1), free(C2), free(Y1), free(Y2);
            }
        CHECK_EQ_INT(bad, 0);
    }
    lx_isa_set(NULL);
    lx_sgemm_force_path(LX_GEMM_PATH_AUTO);
}

/* The packed path's short row tiles (the last M % MR rows of a row block, all NR columns; AVX2:
 * avx2_ukr_rows, straight to C): every remainder 1-5 of the AVX2 set's MR = 6 and of the
 * others', one row block (the MLP's 128 rows: 21 tiles and 2 rows) and several, K of one, two and
 * three K blocks, with and without bias + ReLU, on 1 and 2 threads.
 * (1) against the double reference with alpha 0.5 and beta 0.75 (run_case);
 * (2) bit for bit: with alpha 1 and beta 0 or 1, the M-row product's rows equal the same rows of
 * the product with A grown to a whole number of tiles (there those rows are full tiles of the
 * 6-row kernel: the same FMA chains, and C + 1 * acc is one rounding either way). */
static int short_rows_bits_case(int M, int N, int K, float beta, bool ep_on, int threads, bool ta) {
    int Mf = (M + 11) / 12 * 12; /* whole tiles of 4, 6 and 12 rows */
    int lda = ta ? Mf : K;
    float *A = malloc(sizeof(float) * (size_t)Mf * K), *B = malloc(sizeof(float) * (size_t)K * N);
    float *C1 = malloc(sizeof(float) * (size_t)Mf * N), *C2 = malloc(sizeof(float) * (size_t)Mf * N);
    float *C0 = malloc(sizeof(float) * (size_t)Mf * N), bias[520];
    for (int i = 0; i < Mf * K; i++) A[i] = frand();
    for (int i = 0; i < K * N; i++) B[i] = frand();
    for (int j = 0; j < N; j++) bias[j] = frand();
    for (int i = 0; i < Mf * N; i++) C0[i] = C1[i] = C2[i] = beta == 0.0f ? NAN : frand();
    lx_gemm_epilogue ep = {.bias = bias, .act = LX_GEMM_ACT_RELU};
    /* A^T: the first M columns of the Mf-column A^T, lda the same */
    int bad = lx_sgemm_ex(ta, false, M, N, K, 1.0f, A, lda, B, N, beta, C1, N, ep_on ? &ep : NULL, threads) != LX_OK;
    bad += lx_sgemm_ex(ta, false, Mf, N, K, 1.0f, A, lda, B, N, beta, C2, N, ep_on ? &ep : NULL, threads) != LX_OK;
    int diff = memcmp(C1, C2, sizeof(float) * (size_t)M * N) != 0;
    for (int i = M * N; i < Mf * N && !diff; i++) /* rows past M untouched by the M-row product */
        diff = !(beta == 0.0f ? isnan(C1[i]) : C1[i] == C0[i]);
    if (diff || bad)
        fprintf(stderr, "short row tiles differ: set %s M %d N %d K %d beta %g epilogue %d threads %d ta %d\n",
                lx_isa_name(lx_isa_current()), M, N, K, beta, ep_on, threads, ta);
    free(A), free(B), free(C0), free(C1), free(C2);
    return bad + diff;
}

/* The same product on 1 and 2 threads, bit for bit (the packed path, any transposes, alpha, beta,
 * bias + ReLU): one row block (shared packed A, guided column items, the short last row tile) and
 * several (shared packed B, guided row items). */
static int threads_bits_case(bool ta, bool tb, int M, int N, int K, float alpha, float beta, bool ep_on) {
    int lda = ta ? M : K, ldb = tb ? K : N;
    float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)K * N);
    float *C1 = malloc(sizeof(float) * (size_t)M * N), *C2 = malloc(sizeof(float) * (size_t)M * N), bias[600];
    for (int i = 0; i < M * K; i++) A[i] = frand();
    for (int i = 0; i < K * N; i++) B[i] = frand();
    for (int j = 0; j < N; j++) bias[j] = frand();
    for (int i = 0; i < M * N; i++) C1[i] = C2[i] = beta == 0.0f ? NAN : frand();
    lx_gemm_epilogue ep = {.bias = bias, .act = LX_GEMM_ACT_RELU};
    int bad = lx_sgemm_ex(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C1, N, ep_on ? &ep : NULL, 1) != LX_OK;
    bad += lx_sgemm_ex(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C2, N, ep_on ? &ep : NULL, 2) != LX_OK;
    int diff = memcmp(C1, C2, sizeof(float) * (size_t)M * N) != 0;
    if (diff || bad)
        fprintf(stderr, "1 and 2 threads differ: set %s %dx%dx%d ta %d tb %d alpha %g beta %g epilogue %d\n",
                lx_isa_name(lx_isa_current()), M, N, K, ta, tb, alpha, beta, ep_on);
    free(A), free(B), free(C1), free(C2);
    return bad + diff;
}

static void test_packed_short_rows(void) {
    const int ms[] = {121, 122, 123, 124, 125, 127, 128, 487, 490};
    const int nks[][2] = {{512, 7}, {512, 263}, {96, 515}, {48, 784}};
    lx_sgemm_force_path(LX_GEMM_PATH_PACKED);
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        int bad = 0, cases = 0;
        for (int mi = 0; mi < 9; mi++)
            for (int q = 0; q < 4; q++)
                for (int th = 1; th <= 2; th++) {
                    if (mi >= 7 && q < 2) continue; /* several row blocks: the narrower products */
                    int v = (mi + q + th) % 4;
                    gcase g = {.ta = v == 3, .M = ms[mi], .N = nks[q][0], .K = nks[q][1], .alpha = 0.5f, .beta = 0.75f,
                               .pad = v % 2, .threads = th};
                    bad += run_case(&g);
                    bad += short_rows_bits_case(ms[mi], nks[q][0], nks[q][1], v % 2 ? 1.0f : 0.0f, v >= 2, th, v == 3);
                    cases++;
                }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(cases, 64);
        /* one row block on two threads (the MLP's 128 x 784 x 512 and smaller), then several */
        bad = 0;
        const int tdims[][3] = {{128, 512, 784}, {128, 512, 512}, {31, 200, 300}, {100, 48, 40}, {487, 112, 129}};
        for (int d = 0; d < 5; d++)
            for (int t = 0; t < 4; t++)
                bad += threads_bits_case(t & 1, t >> 1, tdims[d][0], tdims[d][1], tdims[d][2], t == 1 ? 0.5f : 1.0f,
                                         t == 0 ? 0.0f : t == 1 ? 0.75f : 1.0f, t >= 2);
        CHECK_EQ_INT(bad, 0);
    }
    lx_isa_set(NULL);
    lx_sgemm_force_path(LX_GEMM_PATH_AUTO);
}

/* Two threads of the program calling GEMM at once: one gets the worker pool, the other runs alone. */
typedef struct {
    int bad;
    int seed;
} concurrent_arg;
static void *concurrent_body(void *p) {
    concurrent_arg *a = p;
    int M = 150 + a->seed, N = 170, K = 90;
    float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N));
    float *C = malloc(sizeof(float) * (size_t)(M * N));
    for (int i = 0; i < M * K; i++) A[i] = (float)((i * 7 + a->seed) % 11) - 5;
    for (int i = 0; i < K * N; i++) B[i] = (float)((i * 3) % 5) - 2;
    for (int rep = 0; rep < 20; rep++) {
        if (lx_sgemm(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N) != LX_OK) a->bad++;
        for (int i = 0; i < M; i += 17) /* small integers: the float sums are exact */
            for (int j = 0; j < N; j += 13) {
                double s = 0;
                for (int k = 0; k < K; k++) s += (double)A[i * K + k] * B[k * N + j];
                if (C[i * N + j] != (float)s) a->bad++;
            }
    }
    free(A), free(B), free(C);
    return NULL;
}
static void test_concurrent_callers(void) {
    lx_set_num_threads(2);
    lx_sgemm_force_path(LX_GEMM_PATH_PACKED);
    pthread_t t[2];
    concurrent_arg args[2] = {{0, 1}, {0, 2}};
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, concurrent_body, &args[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK_EQ_INT(args[0].bad + args[1].bad, 0);
    lx_sgemm_force_path(LX_GEMM_PATH_AUTO);
    lx_set_num_threads(0);
}

static void test_epilogues(void) {
    float bias[80];
    for (int j = 0; j < 80; j++) bias[j] = frand();
    const lx_gemm_path paths[] = {LX_GEMM_PATH_SMALL, LX_GEMM_PATH_PACKED, LX_GEMM_PATH_BLAS};
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        int bad = 0;
        for (int p = 0; p < 3; p++) {
            lx_sgemm_force_path(paths[p]);
            for (int a = 0; a <= LX_GEMM_ACT_SILU; a++)
                for (int b = 0; b < 2; b++) {
                    gcase g = {.tb = a % 2, .M = 19, .N = 77, .K = 40, .alpha = 1.0f, .beta = a == 2 ? 1.0f : 0.0f,
                               .pad = 1, .bias = b ? bias : NULL, .act = (lx_gemm_act)a, .threads = 1 + a % 2};
                    bad += run_case(&g);
                }
        }
        CHECK_EQ_INT(bad, 0);
    }
    /* Products big enough for several row blocks and K blocks on the packed path (AVX-512:
     * the panel path, whose epilogue runs per item after its last K block, over a shared packed
     * B or panels packed just before use), with beta accumulation, on 1 and 2 threads. */
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        lx_sgemm_force_path(LX_GEMM_PATH_PACKED);
        int bad = 0;
        for (int a = 0; a <= LX_GEMM_ACT_SILU; a++) {
            gcase g = {.ta = a == 1 || a == 4, .tb = a >= 3, .M = a % 2 ? 300 : 530, .N = 80, .K = 600, .alpha = 0.5f,
                       .beta = a == 2 ? 0.0f : 0.25f, .pad = a % 3, .bias = a == 3 ? NULL : bias, .act = (lx_gemm_act)a,
                       .threads = 1 + a % 2};
            bad += run_case(&g);
        }
        CHECK_EQ_INT(bad, 0);
    }
    lx_sgemm_force_path(LX_GEMM_PATH_AUTO);
    lx_isa_set(NULL);
    /* K == 0: the epilogue still runs on beta C */
    float c[2] = {1, -3}, bias2[2] = {0.5f, 0.25f};
    lx_gemm_epilogue ep = {.bias = bias2, .act = LX_GEMM_ACT_RELU};
    CHECK_EQ_INT(lx_sgemm_ex(false, false, 1, 2, 0, 1, NULL, 1, NULL, 2, 1.0f, c, 2, &ep, 1), LX_OK);
    CHECK(c[0] == 1.5f && c[1] == 0.0f);
    ep.act = (lx_gemm_act)99;
    CHECK_FAILS(lx_sgemm_ex(false, false, 1, 2, 1, 1, c, 1, c, 2, 0, c, 2, &ep, 1), LX_ERR_INVALID_ARGUMENT,
                "unknown epilogue activation 99");
}

/* The fused epilogue against the separate steps, bit for bit: the same product without an
 * epilogue, then z = C + bias (one float add per element, as lx_add), then relu as lx_relu's
 * kernel or gelu/silu by the set's vector math row over whole rows of z (what lx_gelu / lx_silu
 * run; the epilogue calls it per tile, so this also checks that a value does not depend on its
 * place in the row). Every set and path, sizes that leave ragged tiles at both edges (and several
 * row blocks, K blocks), beta 0 (C full of NaN, never read) and beta 0.5 with bias, 1 and 2
 * threads, each activation, in place or with y (C keeps z, y gets act(z), a padded ldy). */
static int epilogue_bits_case(bool tb, int M, int N, int K, float beta, const float *bias, lx_gemm_act act, bool with_y,
                              int threads) {
    int lda = K + 1, ldb = (tb ? K : N) + 2, ldc = N + 3, ldy = N + 1;
    size_t na = (size_t)M * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc, ny = (size_t)M * ldy;
    float *A = malloc(sizeof(float) * na), *B = malloc(sizeof(float) * nb), *C0 = malloc(sizeof(float) * nc);
    float *C1 = malloc(sizeof(float) * nc), *C2 = malloc(sizeof(float) * nc), *Y = malloc(sizeof(float) * ny);
    for (size_t i = 0; i < na; i++) A[i] = 2.0f * frand();
    for (size_t i = 0; i < nb; i++) B[i] = frand();
    for (size_t i = 0; i < nc; i++) C0[i] = beta == 0.0f ? NAN : frand();
    for (size_t i = 0; i < ny; i++) Y[i] = NAN;
    memcpy(C1, C0, sizeof(float) * nc);
    memcpy(C2, C0, sizeof(float) * nc);
    int bad = 0;
    lx_gemm_epilogue ep = {.bias = bias, .act = act, .y = with_y ? Y : NULL, .ldy = ldy};
    bad += lx_sgemm_ex(false, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C1, ldc, NULL, threads) != LX_OK;
    bad += lx_sgemm_ex(false, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C2, ldc, &ep, threads) != LX_OK;
    const lx_vmath *vm = lx_vmath_active();
    void (*f)(const float *, float *, int64_t) = act == LX_GEMM_ACT_GELU_TANH ? vm->gelu_tanh
                                                 : act == LX_GEMM_ACT_GELU_ERF ? vm->gelu_erf
                                                 : act == LX_GEMM_ACT_SILU     ? vm->silu
                                                                               : NULL;
    float *z = malloc(sizeof(float) * (size_t)N), *y = malloc(sizeof(float) * (size_t)N);
    for (int i = 0; i < M && !bad; i++) {
        for (int j = 0; j < N; j++) z[j] = bias ? C1[i * ldc + j] + bias[j] : C1[i * ldc + j];
        if (f) f(z, y, N);
        else
            for (int j = 0; j < N; j++) y[j] = act == LX_GEMM_ACT_RELU && z[j] < 0.0f ? 0.0f : z[j];
        const float *got_c = C2 + i * ldc, *want_c = with_y ? z : y;
        if (memcmp(got_c, want_c, sizeof(float) * (size_t)N) != 0) bad = 1;
        if (with_y && memcmp(Y + i * ldy, y, sizeof(float) * (size_t)N) != 0) bad = 1;
        for (int j = 0; j < N; j++) bad |= !isfinite(y[j]); /* no NaN from C with beta 0 */
        if (memcmp(C2 + i * ldc + N, C0 + i * ldc + N, sizeof(float) * (size_t)(ldc - N)) != 0) bad = 1;
        if (with_y) bad |= !isnan(Y[i * ldy + N]); /* y's padding untouched */
    }
    if (bad)
        fprintf(stderr, "epilogue bits differ: set %s tb %d M %d N %d K %d beta %g bias %d act %d y %d threads %d\n",
                lx_isa_name(lx_isa_current()), tb, M, N, K, beta, bias != NULL, (int)act, with_y, threads);
    free(A), free(B), free(C0), free(C1), free(C2), free(Y), free(z), free(y);
    return bad;
}

static void test_epilogue_bits(void) {
    static const int dims[][3] = {{1, 5, 3}, {7, 17, 9}, {13, 33, 300}, {50, 100, 40}, {97, 70, 260}, {300, 37, 20}};
    float bias[100];
    for (int j = 0; j < 100; j++) bias[j] = frand();
    const lx_gemm_path paths[] = {LX_GEMM_PATH_SMALL, LX_GEMM_PATH_PACKED, LX_GEMM_PATH_BLAS};
    int cases = 0;
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        int bad = 0;
        for (int p = 0; p < 3; p++) {
            lx_sgemm_force_path(paths[p]);
            for (int d = 0; d < 6; d++)
                for (int a = 0; a <= LX_GEMM_ACT_SILU; a++)
                    for (int v = 0; v < 4; v++) { /* bias or not, y or not; beta with the bias */
                        bool hb = v & 1, wy = v >> 1;
                        bad += epilogue_bits_case((d + a) % 2, dims[d][0], dims[d][1], dims[d][2],
                                                  hb && (a + d) % 2 ? 0.5f : 0.0f, hb ? bias : NULL, (lx_gemm_act)a, wy,
                                                  1 + (a + v + d) % 2);
                        cases++;
                    }
        }
        CHECK_EQ_INT(bad, 0);
    }
    CHECK(cases >= 3 * 6 * 5 * 4);
    lx_sgemm_force_path(LX_GEMM_PATH_AUTO);
    lx_isa_set(NULL);
}

/* relu's sign of zero and NaN in the epilogue, as lx_relu: a product of -0 (alpha -1 times a zero
 * sum) plus a bias of -0 is -0 and stays -0; a NaN row stays NaN; on each set and path. */
static void test_epilogue_relu_specials(void) {
    const lx_gemm_path paths[] = {LX_GEMM_PATH_SMALL, LX_GEMM_PATH_PACKED, LX_GEMM_PATH_BLAS};
    enum { M = 14, N = 21, K = 5 };
    float A[M * K], B[K * N], C[M * N], C1[M * N], bias[N];
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        for (int p = 0; p < 3; p++) {
            lx_sgemm_force_path(paths[p]);
            for (int i = 0; i < M * K; i++) A[i] = i / K == 3 ? NAN : 0.0f; /* row 3: NaN */
            for (int i = 0; i < K * N; i++) B[i] = frand() + 2.0f; /* positive: every product +0 */
            for (int j = 0; j < N; j++) bias[j] = -0.0f;
            for (int i = 0; i < M * N; i++) C[i] = C1[i] = NAN;
            lx_gemm_epilogue ep = {.bias = bias, .act = LX_GEMM_ACT_RELU};
            CHECK_EQ_INT(lx_sgemm_ex(false, false, M, N, K, -1.0f, A, K, B, N, 0.0f, C, N, &ep, 1), LX_OK);
            CHECK_EQ_INT(lx_sgemm_ex(false, false, M, N, K, -1.0f, A, K, B, N, 0.0f, C1, N, NULL, 1), LX_OK);
            int bad = 0, negzero = 0;
            for (int i = 0; i < M * N; i++) {
                float z = C1[i] + bias[i % N], want = z < 0.0f ? 0.0f : z;
                bad += memcmp(&C[i], &want, sizeof want) != 0;
                bad += i / N == 3 ? !isnan(C[i]) : C[i] != 0.0f;
                negzero += C[i] == 0.0f && signbit(C[i]);
            }
            CHECK_EQ_INT(bad, 0);
            /* our kernels sum from +0, so -1 times the sum is -0 (OpenBLAS may start elsewhere) */
            if (paths[p] != LX_GEMM_PATH_BLAS) CHECK_EQ_INT(negzero, (M - 1) * N);
        }
    }
    lx_sgemm_force_path(LX_GEMM_PATH_AUTO);
    lx_isa_set(NULL);
    /* alpha 0 (no product, C = beta C): the epilogue with y still runs, on all of C */
    {
        float c0[6], cz[6], yv[6], bz[3] = {0.25f, -1.5f, 2.0f}, want[6];
        for (int i = 0; i < 6; i++) c0[i] = cz[i] = 3.0f * frand(), yv[i] = NAN;
        lx_gemm_epilogue ez = {.bias = bz, .act = LX_GEMM_ACT_SILU, .y = yv, .ldy = 3};
        CHECK_EQ_INT(lx_sgemm_ex(false, false, 2, 3, 4, 0.0f, NULL, 4, NULL, 3, 0.5f, cz, 3, &ez, 1), LX_OK);
        for (int i = 0; i < 6; i++) c0[i] = 0.5f * c0[i] + bz[i % 3];
        lx_vmath_active()->silu(c0, want, 6);
        CHECK(memcmp(cz, c0, sizeof c0) == 0 && memcmp(yv, want, sizeof want) == 0);
    }
    /* y with ldy < N; y in a strided batch */
    float c[4] = {0}, yb[4];
    lx_gemm_epilogue ep = {.act = LX_GEMM_ACT_SILU, .y = yb, .ldy = 1};
    CHECK_FAILS(lx_sgemm_ex(false, false, 2, 2, 1, 1, c, 1, c, 2, 0, c, 2, &ep, 1), LX_ERR_INVALID_ARGUMENT, "ldy=1");
    ep.ldy = 2;
    CHECK_FAILS(lx_sgemm_strided_batched(false, false, 1, 2, 1, 1, c, 1, 0, c, 2, 0, 0, c, 2, 2, 1, &ep),
                LX_ERR_INVALID_ARGUMENT, "epilogue with y");
}

/* batch 3: A with padding between matrices, B shared (stride 0), C with padding; small and big. */
static void test_strided_batched(void) {
    const int dims[][3] = {{5, 9, 7}, {70, 90, 110}};
    for (int d = 0; d < 2; d++)
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t >> 1;
            int M = dims[d][0], N = dims[d][1], K = dims[d][2], nb = 3;
            int lda = (ta ? M : K) + 1, ldb = tb ? K : N, ldc = N + 2;
            int64_t sa = (int64_t)(ta ? K : M) * lda + 5, sc = (int64_t)M * ldc + 7;
            float *A = malloc(sizeof(float) * (size_t)(sa * nb)), *B = malloc(sizeof(float) * (size_t)((tb ? N : K) * ldb));
            float *C = malloc(sizeof(float) * (size_t)(sc * nb));
            for (int64_t i = 0; i < sa * nb; i++) A[i] = frand();
            for (int i = 0; i < (tb ? N : K) * ldb; i++) B[i] = frand();
            for (int64_t i = 0; i < sc * nb; i++) C[i] = (float)i;
            float beta = t == 3 ? 0.5f : 0.0f;
            float *C0 = malloc(sizeof(float) * (size_t)(sc * nb));
            memcpy(C0, C, sizeof(float) * (size_t)(sc * nb));
            CHECK_EQ_INT(lx_sgemm_strided_batched(ta, tb, M, N, K, 1.0f, A, lda, sa, B, ldb, 0, beta, C, ldc, sc, nb, NULL), LX_OK);
            int bad = 0;
            for (int b = 0; b < nb; b++)
                for (int i = 0; i < M; i++) {
                    for (int j = 0; j < N; j++) {
                        double s = 0, mag = 0;
                        for (int k = 0; k < K; k++) {
                            const float *a = A + b * sa;
                            double x = ta ? a[k * lda + i] : a[i * lda + k], y = tb ? B[j * ldb + k] : B[k * ldb + j];
                            s += x * y;
                            mag += fabs(x * y);
                        }
                        double c0 = C0[b * sc + i * ldc + j], r = s + beta * c0;
                        if (!(fabs(C[b * sc + i * ldc + j] - r) <= 4e-6 * (mag + fabs(c0)) + 1e-6)) bad++;
                    }
                    for (int j = N; j < ldc; j++) bad += C[b * sc + i * ldc + j] != C0[b * sc + i * ldc + j];
                }
            CHECK_EQ_INT(bad, 0);
            free(A), free(B), free(C), free(C0);
        }
    float c[4] = {0};
    CHECK_FAILS(lx_sgemm_strided_batched(false, false, 2, 2, 1, 1, c, 1, 2, c, 2, 0, 0, c, 2, 2, -1, NULL),
                LX_ERR_INVALID_ARGUMENT, "negative batch -1");
    CHECK_FAILS(lx_sgemm_strided_batched(false, false, 2, 2, 1, 1, c, 1, 2, c, 2, 0, 0, c, 2, 3, 2, NULL),
                LX_ERR_INVALID_ARGUMENT, "stride_c=3 overlaps");
}

/* With beta = 0 and K <= 256 (one K block everywhere) the small and packed paths sum each element
 * in the same FMA chain from zero: the same bits, so results do not depend on the size threshold. */
static void paths_agree_k(int K) {
    int M = 37, N = 53;
    float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N));
    float *C1 = malloc(sizeof(float) * (size_t)(M * N)), *C2 = malloc(sizeof(float) * (size_t)(M * N));
    for (int i = 0; i < M * K; i++) A[i] = frand();
    for (int i = 0; i < K * N; i++) B[i] = frand();
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t >> 1;
            lx_sgemm_force_path(LX_GEMM_PATH_SMALL);
            CHECK_EQ_INT(lx_sgemm(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C1, N), LX_OK);
            lx_sgemm_force_path(LX_GEMM_PATH_PACKED);
            CHECK_EQ_INT(lx_sgemm(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C2, N), LX_OK);
            CHECK(memcmp(C1, C2, sizeof(float) * (size_t)(M * N)) == 0);
        }
    }
    lx_sgemm_force_path(LX_GEMM_PATH_AUTO);
    lx_isa_set(NULL);
    free(A), free(B), free(C1), free(C2);
}

static void test_paths_agree(void) {
    for (int K = 203; K <= 256; K += 53) /* 203: the assembly k loop's 3-step tail */
        paths_agree_k(K);
}

/* One row (batch 1) reads a ragged B panel in place (AVX2: masked loads): B ends right before an
 * unreadable page, so a read past its last column faults; the row must equal row 0 of the same
 * product on two equal rows (the tile kernels over a zero-padded copy): the same bits. */
static void test_one_row_ragged_in_place(void) {
    long page = sysconf(_SC_PAGESIZE);
    const int ks[] = {1, 9, 300};
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        int bad = 0, cases = 0;
        for (int ki = 0; ki < 3; ki++)
            for (int N = 1; N <= 70; N++) {
                int K = ks[ki];
                size_t bytes = sizeof(float) * (size_t)(K * N), span = (bytes + (size_t)page - 1) / (size_t)page * (size_t)page;
                char *map = mmap(NULL, span + (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                CHECK(map != MAP_FAILED);
                if (map == MAP_FAILED) return;
                CHECK_EQ_INT(mprotect(map + span, (size_t)page, PROT_NONE), 0);
                float *B = (float *)(map + span - bytes);
                float *A = malloc(sizeof(float) * 2 * (size_t)K), C1[70], C2[140];
                for (int i = 0; i < K * N; i++) B[i] = frand();
                for (int i = 0; i < K; i++) A[i] = A[K + i] = frand();
                CHECK_EQ_INT(lx_sgemm(false, false, 1, N, K, 1.0f, A, K, B, N, 0.0f, C1, N), LX_OK);
                CHECK_EQ_INT(lx_sgemm(false, false, 2, N, K, 1.0f, A, K, B, N, 0.0f, C2, N), LX_OK);
                bad += memcmp(C1, C2, sizeof(float) * (size_t)N) != 0 || memcmp(C1, C2 + N, sizeof(float) * (size_t)N) != 0;
                double ref = 0; /* column N - 1 against a double reference: the masked lane is used */
                for (int k = 0; k < K; k++) ref += (double)A[k] * B[k * N + N - 1];
                bad += !(fabs(C1[N - 1] - ref) <= 1e-4 * (1 + fabs(ref))); /* NaN counts */
                cases++;
                free(A);
                munmap(map, span + (size_t)page);
            }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(cases, 210);
    }
    lx_isa_set(NULL);
}

/* The small path's ragged edges read and write C only in its N columns (AVX2: plain loads and
 * stores of 1-7 lanes instead of masked ones): C's rows are ldc = N + 3 apart with sentinels in
 * the gap, and C's last row ends right before an unreadable page. Rows 1 (the batch-1 row) and
 * 2, 5, 7 (tiles), beta 0 / 1 / 0.5, K of one block and of two (later blocks add to C); each
 * value against a double reference, the sentinels untouched. */
static void test_small_ragged_c(void) {
    long page = sysconf(_SC_PAGESIZE);
    const int ms[] = {1, 2, 5, 7}, ks[] = {3, 300};
    const float betas[] = {0.0f, 1.0f, 0.5f};
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        int bad = 0, cases = 0;
        for (int mi = 0; mi < 4; mi++)
            for (int ki = 0; ki < 2; ki++)
                for (int bi = 0; bi < 3; bi++)
                    for (int N = 1; N <= 40; N += (N < 18 ? 1 : 7)) {
                        int M = ms[mi], K = ks[ki], ldc = N + 3;
                        float beta = betas[bi];
                        size_t cf = (size_t)((M - 1) * ldc + N), bytes = sizeof(float) * cf;
                        size_t span = (bytes + (size_t)page - 1) / (size_t)page * (size_t)page;
                        char *map = mmap(NULL, span + (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                        CHECK(map != MAP_FAILED);
                        if (map == MAP_FAILED) return;
                        CHECK_EQ_INT(mprotect(map + span, (size_t)page, PROT_NONE), 0);
                        float *C = (float *)(map + span - bytes), *C0 = malloc(bytes);
                        float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * N));
                        for (int i = 0; i < M * K; i++) A[i] = frand();
                        for (int i = 0; i < K * N; i++) B[i] = frand();
                        for (size_t i = 0; i < cf; i++) C[i] = C0[i] = (int)(i % (size_t)ldc) < N ? frand() : 1234.5f;
                        CHECK_EQ_INT(lx_sgemm(false, false, M, N, K, 1.5f, A, K, B, N, beta, C, ldc), LX_OK);
                        for (int i = 0; i < M; i++)
                            for (int j = 0; j < ldc && (size_t)(i * ldc + j) < cf; j++) {
                                float got = C[i * ldc + j];
                                if (j >= N) {
                                    bad += got != 1234.5f;
                                    continue;
                                }
                                double ref = 0, mag = 0;
                                for (int k = 0; k < K; k++) {
                                    ref += (double)A[i * K + k] * B[k * N + j];
                                    mag += fabs((double)A[i * K + k] * B[k * N + j]);
                                }
                                ref = 1.5 * ref + (beta != 0.0f ? (double)beta * C0[i * ldc + j] : 0.0);
                                bad += !(fabs(got - ref) <= 1e-5 * (1 + 1.5 * mag + fabs(ref))); /* NaN counts */
                            }
                        cases++;
                        free(A), free(B), free(C0);
                        munmap(map, span + (size_t)page);
                    }
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(cases, 4 * 2 * 3 * 21);
    }
    lx_isa_set(NULL);
}

/* A product of one panel (N <= 64) and one K block (K <= 256) calls the small kernel directly,
 * the loop over panels does the same call for each panel: the 64 columns alone and the first 64
 * of 80 (two panels, the same B rows) have the same bits, for each set, both transposes of A,
 * beta 0 and 0.5. */
static void test_small_one_panel_bits(void) {
    const int ms[] = {1, 3, 7}, ks[] = {1, 5, 256};
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        lx_isa_set(sets[s]);
        int bad = 0;
        for (int mi = 0; mi < 3; mi++)
            for (int ki = 0; ki < 3; ki++)
                for (int t = 0; t < 4; t++) {
                    int M = ms[mi], K = ks[ki];
                    bool ta = t & 1;
                    float beta = t & 2 ? 0.5f : 0.0f;
                    float *A = malloc(sizeof(float) * (size_t)(M * K)), *B = malloc(sizeof(float) * (size_t)(K * 80));
                    float C1[7 * 64], C2[7 * 80];
                    for (int i = 0; i < M * K; i++) A[i] = frand();
                    for (int i = 0; i < K * 80; i++) B[i] = frand();
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < 80; j++) C2[i * 80 + j] = (j < 64 ? (C1[i * 64 + j] = frand()) : 0.0f);
                    int lda = ta ? M : K;
                    CHECK_EQ_INT(lx_sgemm(ta, false, M, 64, K, 1.0f, A, lda, B, 80, beta, C1, 64), LX_OK);
                    CHECK_EQ_INT(lx_sgemm(ta, false, M, 80, K, 1.0f, A, lda, B, 80, beta, C2, 80), LX_OK);
                    for (int i = 0; i < M; i++) bad += memcmp(C1 + i * 64, C2 + i * 80, sizeof(float) * 64) != 0;
                    free(A), free(B);
                }
        CHECK_EQ_INT(bad, 0);
    }
    lx_isa_set(NULL);
}

/* Sizes at and past 2^21, where the argument checks and the small-size test stop using the
 * division-free comparisons: the same answers as M*N*K computed exactly. */
static void test_size_limits(void) {
    int64_t lim = lx_sgemm_small_limit(), big = INT64_C(1) << 21;
    CHECK(lx_sgemm_is_small(96, 96, 96) == (96 * 96 * 96 <= lim));
    CHECK(lx_sgemm_is_small(1, 1, lim) && !lx_sgemm_is_small(1, 1, lim + 1));
    CHECK(!lx_sgemm_is_small(big - 1, 1, 1) && !lx_sgemm_is_small(big, 1, 1) && !lx_sgemm_is_small(1, big, big));
    CHECK(!lx_sgemm_is_small(INT64_MAX, INT64_MAX, INT64_MAX) && lx_sgemm_is_small(0, INT64_MAX, INT64_MAX));
    /* negative sizes are not small (no signed product is formed: -1 * 2^62 * 4 would overflow);
     * a zero size is still an empty product */
    CHECK(!lx_sgemm_is_small(-1, -1, -1) && !lx_sgemm_is_small(-1, INT64_C(1) << 62, 4));
    CHECK(!lx_sgemm_is_small(-1, 2, 3) && !lx_sgemm_is_small(2, -3, 4) && !lx_sgemm_is_small(2, 3, INT64_MIN));
    CHECK(lx_sgemm_is_small(-1, 0, 5));
    lx_sgemm_set_small_limit(big * 4);
    CHECK(lx_sgemm_is_small(big, 2, 2) && !lx_sgemm_is_small(big, 2, 3) && lx_sgemm_is_small(2, 2, big));
    lx_sgemm_set_small_limit(-1);
    CHECK_EQ_INT(lx_sgemm_small_limit(), lim);
    float a[4] = {1, 2, 3, 4}, c[4] = {5, 6, 7, 8};
    /* 2^22 cubed overflows: refused before any buffer is read */
    CHECK_FAILS(lx_sgemm(false, false, big * 2, big * 2, big * 2, 1, a, big * 2, a, big * 2, 0, c, big * 2),
                LX_ERR_INVALID_ARGUMENT, "M*N*K overflows 64 bits");
    CHECK_FAILS(lx_sgemm(false, false, big, 1, 1, 1, a, 0, a, 1, 0, c, 1), LX_ERR_INVALID_ARGUMENT,
                "lda=0 is smaller than a row of A (1 floats");
    CHECK_EQ_INT(lx_sgemm(false, false, big, 0, big, 1, a, big, a, 0, 0, c, 0), LX_OK); /* N = 0: nothing */
    CHECK_EQ_INT(lx_sgemm(false, false, 1, 1, big, 0.0f, NULL, big, NULL, 1, 0.5f, c, 1), LX_OK); /* alpha 0 */
    CHECK(c[0] == 2.5f && c[1] == 6);
}

/* Argument checks (linalg.h): a leading dimension may not be smaller than the row it steps over,
 * and a row of 0 floats takes ld 0 (K = 0: C = beta C; N = 0 or M = 0: nothing to do); the
 * message names the offending ld or NULL buffer; a failed call writes nothing. A strided batch
 * with K = 0 reads neither A nor B, which may then be NULL (no offset is applied to them). */
static void test_arg_errors(void) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 1, 1, 1, 1, 1}, c[6] = {2, 4, 6, 8, 10, 12};
    CHECK_EQ_INT(lx_sgemm(false, false, 2, 3, 0, 1, NULL, 0, NULL, 3, 0.5f, c, 3), LX_OK); /* lda 0: rows of 0 floats */
    CHECK(c[0] == 1 && c[5] == 6);
    CHECK_EQ_INT(lx_sgemm(false, true, 2, 3, 0, 1, NULL, 0, NULL, 0, 0.0f, c, 3), LX_OK); /* B^T: rows of K = 0 */
    CHECK(c[0] == 0 && c[5] == 0);
    CHECK_EQ_INT(lx_sgemm(false, false, 2, 0, 3, 1, a, 3, b, 0, 0, NULL, 0), LX_OK); /* N = 0: ldb = ldc = 0 */
    CHECK_EQ_INT(lx_sgemm(true, false, 0, 3, 2, 1, a, 0, b, 3, 0, c, 3), LX_OK);     /* A^T with M = 0: lda 0 */
    CHECK_EQ_INT(lx_sgemm(false, false, 0, 0, 0, 1, NULL, 0, NULL, 0, 0, NULL, 0), LX_OK);
    for (int i = 0; i < 6; i++) c[i] = 7;
    CHECK_FAILS(lx_sgemm(false, false, 2, 2, 3, 1, a, 2, b, 2, 0, c, 2), LX_ERR_INVALID_ARGUMENT,
                "sgemm: leading dimension lda=2 is smaller than a row of A (3 floats");
    CHECK_FAILS(lx_sgemm(true, false, 3, 2, 2, 1, a, 2, b, 2, 0, c, 2), LX_ERR_INVALID_ARGUMENT,
                "lda=2 is smaller than a row of A (3 floats");
    CHECK_FAILS(lx_sgemm(false, true, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2), LX_ERR_INVALID_ARGUMENT,
                "ldb=2 is smaller than a row of B (3 floats");
    CHECK_FAILS(lx_sgemm(false, false, 2, 3, 1, 1, a, 1, b, 3, 0, c, 2), LX_ERR_INVALID_ARGUMENT,
                "ldc=2 is smaller than a row of C (3 floats");
    CHECK_FAILS(lx_sgemm(false, false, 1, 1, 1, 1, a, -1, b, 1, 0, c, 1), LX_ERR_INVALID_ARGUMENT, "lda=-1");
    CHECK_FAILS(lx_sgemm(false, false, 2, 2, 2, 1, NULL, 2, b, 2, 0, c, 2), LX_ERR_INVALID_ARGUMENT, "NULL buffer A");
    CHECK_FAILS(lx_sgemm(false, false, 2, 2, 2, 1, a, 2, NULL, 2, 0, c, 2), LX_ERR_INVALID_ARGUMENT, "NULL buffer B");
    CHECK_FAILS(lx_sgemm(false, false, 2, 2, 2, 1, a, 2, b, 2, 0, NULL, 2), LX_ERR_INVALID_ARGUMENT, "NULL buffer C");
    for (int i = 0; i < 6; i++) CHECK(c[i] == 7); /* nothing written by the failed calls */
    /* alpha = 0: neither A nor B is read (BLAS), C = beta C */
    CHECK_EQ_INT(lx_sgemm(false, false, 2, 3, 2, 0.0f, NULL, 2, NULL, 3, 2.0f, c, 3), LX_OK);
    CHECK(c[0] == 14 && c[5] == 14);
    float cb[12];
    for (int i = 0; i < 12; i++) cb[i] = (float)i;
    CHECK_EQ_INT(lx_sgemm_strided_batched(false, false, 2, 2, 0, 1, NULL, 0, 5, NULL, 2, 7, 0.5f, cb, 2, 4, 3, NULL), LX_OK);
    for (int i = 0; i < 12; i++) CHECK(cb[i] == 0.5f * (float)i);
}

static void test_isa_selection(void) {
    const lx_cpu_info *cpu = lx_cpu_info_get();
    CHECK(cpu != NULL);
    CHECK(lx_isa_supported(LX_ISA_GENERIC));
    CHECK(lx_isa_supported(lx_isa_best()));
    CHECK(!lx_isa_supported(LX_ISA_AVX512) || lx_isa_supported(LX_ISA_AVX2));
    CHECK(!lx_isa_supported(LX_ISA_AVX2) || (cpu->avx2 && cpu->fma));
    CHECK(lx_isa_name((lx_isa)7) == NULL);
    /* Run under LINNX_ISA=<set> (CTest does, for the sets this machine has): that set is in force. */
    const char *env = getenv("LINNX_ISA");
    if (env && (strcmp(env, "generic") == 0 || strcmp(env, "avx2") == 0 || strcmp(env, "avx512") == 0)) {
        lx_isa want = strcmp(env, "generic") == 0 ? LX_ISA_GENERIC : strcmp(env, "avx2") == 0 ? LX_ISA_AVX2 : LX_ISA_AVX512;
        CHECK_STR(lx_isa_name(lx_isa_current()), lx_isa_supported(want) ? env : lx_isa_name(lx_isa_best()));
    } else {
        CHECK_EQ_INT(lx_isa_current(), lx_isa_best());
    }
    lx_isa env_default = lx_isa_current();
    CHECK_FAILS(lx_isa_set("sse9"), LX_ERR_INVALID_ARGUMENT, "unknown kernel set 'sse9' (avx512, avx2, generic)");
    CHECK_EQ_INT(lx_isa_current(), env_default);
    if (!lx_isa_supported(LX_ISA_AVX512))
        CHECK_FAILS(lx_isa_set("avx512"), LX_ERR_UNSUPPORTED, "kernel set 'avx512' is not supported");
    CHECK_EQ_INT(lx_isa_set("generic"), LX_OK);
    CHECK_STR(lx_sgemm_kernel(), "portable");
    CHECK_EQ_INT(lx_isa_set(NULL), LX_OK);
    CHECK_EQ_INT(lx_isa_current(), env_default);
    /* the older GEMM-only selector is the same switch */
    CHECK_EQ_INT(lx_sgemm_use_kernel("portable"), LX_OK);
    CHECK_EQ_INT(lx_isa_current(), LX_ISA_GENERIC);
    CHECK_EQ_INT(lx_sgemm_use_kernel(NULL), LX_OK);
    CHECK_EQ_INT(lx_isa_current(), env_default);
    if (cpu->l1d_bytes > 0) CHECK(cpu->l1d_bytes >= 4096 && cpu->l1d_bytes <= (1 << 22));
    printf("# cpu %s: avx2 %d fma %d avx512f %d bw %d vl %d dq %d vnni %d bf16 %d; L1d %lld L2 %lld L3 %lld; set %s\n",
           cpu->vendor, cpu->avx2, cpu->fma, cpu->avx512f, cpu->avx512bw, cpu->avx512vl, cpu->avx512dq, cpu->avx512_vnni,
           cpu->avx512_bf16, (long long)cpu->l1d_bytes, (long long)cpu->l2_bytes, (long long)cpu->l3_bytes,
           lx_isa_name(lx_isa_current()));
}

int main(void) {
    RUN(test_isa_selection);
    RUN(test_arg_errors);
    RUN(test_every_set_and_path);
    RUN(test_packed_edges);
    RUN(test_paths_agree);
    RUN(test_packed_short_rows);
    RUN(test_one_row_ragged_in_place);
    RUN(test_small_ragged_c);
    RUN(test_small_one_panel_bits);
    RUN(test_size_limits);
    RUN(test_threads);
    RUN(test_small_threads);
    RUN(test_concurrent_callers);
    RUN(test_epilogues);
    RUN(test_epilogue_bits);
    RUN(test_epilogue_relu_specials);
    RUN(test_strided_batched);
    return lx_test_finish();
}
