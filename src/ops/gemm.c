/* GEMM: linnx's own blocked GEMM (BLIS-style), a small-problem path, and OpenBLAS where it wins.
 *
 * Three paths, chosen per call (docs/kernels.md has the measurements behind the thresholds):
 *  - small (M*N*K at or below the small limit, 96^3, or fewer than 16 rows): register tiles computed
 *    straight from the caller's buffers, no packing, on the calling thread: what a batch-1 layer
 *    is made of.
 *  - packed (the AVX-512 set runs the panel path instead, gemm_panels below): B is packed once
 *    into NR-column slivers per K block (shared by every thread; with one row block, just before
 *    use, four slivers at a time), A packed once and shared (one row
 *    block, several threads) or read in place (one row block, one thread, <= 256 columns), then
 *    work items of (MC rows x a column range) each pack their A block into MR-row slivers
 *    (L2-resident) and run the MR x NR micro-kernel of the kernel set in force (kernels.h) with
 *    one B sliver in L1. Items are claimed from an atomic counter, several per thread, so a
 *    thread that is pre-empted holds back one item, not a fixed half of the matrix.
 *  - OpenBLAS (cblas_sgemm on the caller's buffers) where a same-run measurement says it is
 *    faster: above the small sizes with the generic set (its kernels beat our portable ones), and
 *    with the AVX2 set for large products whose A is not transposed (AVX2_BLAS_ABOVE).
 * Row-major throughout; transposes are stride swaps inside the packing routines. */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"
#include "linalg_internal.h"
#include "linnx/linalg.h"
#include "linnx/threads.h"
#include "team.h"
#include "vmath.h"

/* M*N*K at or below which the unpacked small path runs; it also runs for fewer than SMALL_ROWS
 * rows, where packing B would cost more than it saves (bench/gemm.c, docs/kernels.md). */
#define DEFAULT_SMALL_LIMIT (96LL * 96 * 96)
#define SMALL_ROWS 16
/* Sizes all below this (2^21) have a product M*N*K below 2^63: tests on it need no division. */
#define SIZE_NO_OVERFLOW (INT64_C(1) << 21)
/* Above this M*N*K, with more than AVX2_BLAS_ROWS rows and A not transposed, the AVX2 set hands
 * the product to OpenBLAS. Same-run measurement on Zen 3 (thread CPU time, best of 18, one
 * thread) after the assembly micro-kernel: 384^3 ours 0.545 / OpenBLAS 0.495 of the FMA peak,
 * 512^3 0.560 / 0.531, 1024^3 0.550 / 0.587; so OpenBLAS keeps only the large square-ish
 * products (its B packing is fused with the compute; ours is a separate pass over all of B when
 * there are several row blocks). Fewer rows (batch-size M) and transposed-A shapes stay ours.
 * Rechecked on Zen 1 with every other parallel loop on linnx's pool (docs/kernels.md, Threads):
 * one thread, each product right after a pool loop, packed/OpenBLAS 0.97-1.05 over 800^3-1024^3,
 * 512x1024x1024 and 2048x512x512, and a pool loop right after an OpenBLAS call no slower than
 * after ours: OpenBLAS does not lose these shapes, so it keeps them. */
#define AVX2_BLAS_ABOVE (768LL * 768 * 768)
#define AVX2_BLAS_ROWS 256
/* Work (M*N*K) from which the packed path uses more than one thread. */
#define PAR_MIN_WORK (96LL * 96 * 96)

static _Atomic int64_t small_limit = DEFAULT_SMALL_LIMIT;
static atomic_int forced_path = LX_GEMM_PATH_AUTO;

/* ---- epilogue: bias and activation on a finished C block ----
 * Resolved once per call: the kernel set's bias/ReLU block function (kernels.h epi, vector code)
 * and, for gelu/silu, the vector math row that lx_gelu / lx_silu run (vmath.h: every element's
 * value is independent of its place in the row), so the fused result has the separate ops' bits.
 * It runs on each tile (packed path), panel (small and panel paths) or all of C (OpenBLAS, K = 0:
 * in row ranges on the pool, epilogue_all) right after the block's last K block. */
typedef struct {
    void (*epi)(float *C, int64_t ldc, int64_t m, int64_t n, const float *bias, bool relu, float *Y, int64_t ldy);
    void (*act)(const float *x, float *y, int64_t n); /* gelu / silu, else NULL */
    const float *bias;
    bool relu;
    float *y;
    int64_t ldy;
} epi_plan;

lx_act_row_fn lx_gemm_act_row(lx_isa isa, lx_gemm_act act) {
    const lx_vmath *vm = lx_vmath_for(isa);
    switch (act) {
    case LX_GEMM_ACT_GELU_TANH: return vm->gelu_tanh;
    case LX_GEMM_ACT_GELU_ERF: return vm->gelu_erf;
    case LX_GEMM_ACT_SILU: return vm->silu;
    default: return NULL;
    }
}

static const epi_plan *epilogue_plan(const lx_kernels *k, const lx_gemm_epilogue *ep, epi_plan *pl) {
    if (!ep || (!ep->bias && ep->act == LX_GEMM_ACT_NONE && !ep->y)) return NULL;
    *pl = (epi_plan){.epi = k->gemm.epi, .act = lx_gemm_act_row(k->isa, ep->act), .bias = ep->bias,
                     .relu = ep->act == LX_GEMM_ACT_RELU, .y = ep->y, .ldy = ep->ldy};
    return pl;
}

#define EPI_ROW_MIN 64 /* gelu/silu rows shorter than this go through a buffer of EPI_BUF floats */
#define EPI_BUF 1024
/* Rows [r, r + m) x columns [c, c + n) of the product; C points at its element (r, c). */
static void epilogue_block(const epi_plan *pl, float *C, int64_t ldc, int64_t r, int64_t c, int64_t m, int64_t n) {
    float *y = pl->y ? pl->y + r * pl->ldy + c : NULL;
    const float *b = pl->bias ? pl->bias + c : NULL;
    if (pl->act && n < EPI_ROW_MIN && m > 1) {
        /* gelu/silu on short rows (a tile's 16): z gathered into a contiguous buffer by the block
         * kernel (C keeps z), one vector-math call over it, its rows copied out: a call per tile
         * instead of one per row (~40 instructions each; 3 Dense 128 x 512 -> 512 with SiLU:
         * 26.32 M instructions per row, 26.23 M so; the bias epilogue and a separate pass 26.08 M) */
        _Alignas(64) float buf[EPI_BUF];
        int64_t rows = EPI_BUF / n;
        for (int64_t i0 = 0; i0 < m; i0 += rows) {
            int64_t mm = m - i0 < rows ? m - i0 : rows;
            pl->epi(C + i0 * ldc, ldc, mm, n, b, false, buf, n);
            pl->act(buf, buf, mm * n);
            /* copied out by the block kernel too (as z to its y: the rows also stored back in buf) */
            pl->epi(buf, n, mm, n, NULL, false, y ? y + i0 * pl->ldy : C + i0 * ldc, y ? pl->ldy : ldc);
        }
        return;
    }
    if (!pl->act) {
        pl->epi(C, ldc, m, n, b, pl->relu, y, pl->ldy);
        return;
    }
    /* gelu/silu on long rows: row by row (all of C after OpenBLAS stays in L1 between the two
     * steps), the bias into C's row, then the activation from it to y's row (or in place) */
    for (int64_t i = 0; i < m; i++) {
        float *ci = C + i * ldc;
        if (b) pl->epi(ci, ldc, 1, n, b, false, NULL, 0);
        pl->act(ci, y ? y + i * pl->ldy : ci, n);
    }
}

/* The epilogue on all of C (after OpenBLAS, or K = 0) in row ranges over the pool, from
 * EPI_PAR_MIN values (vmath_map's threshold): each value is the one epilogue_block gives it
 * anywhere (element-wise; gelu/silu rows are position-independent), so the bits do not depend on
 * the thread count. */
#define EPI_PAR_MIN 32768
typedef struct {
    const epi_plan *pl;
    float *C;
    int64_t ldc, N;
} epi_rows_job;

static int epi_rows(void *ctx, int64_t lo, int64_t hi) {
    const epi_rows_job *j = ctx;
    epilogue_block(j->pl, j->C + lo * j->ldc, j->ldc, lo, 0, hi - lo, j->N);
    return 0;
}

static void epilogue_all(const epi_plan *pl, float *C, int64_t ldc, int64_t M, int64_t N, int nthreads) {
    epi_rows_job j = {pl, C, ldc, N};
    (void)lx_parallel_for(M * N >= EPI_PAR_MIN ? nthreads : 1, M, epi_rows, &j);
}

/* C = beta C (never reading C when beta is 0): the whole product when K == 0 or alpha == 0. */
static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

/* A thread count passed down to the paths: 0 stands for the pool's (lx_num_threads), asked only
 * by a product big enough to use more than one thread (a tiny call never asks). */
static int pool_threads(int nthreads) { return nthreads > 0 ? nthreads : lx_num_threads(); }

/* ---- small path ---- */

static float *thread_scratch(int slot, size_t floats);

/* Does panel [j0, j0 + nr) of B need a packed copy (B transposed, or a ragged panel that the
 * kernel cannot read in place)? */
static bool small_panel_packed(const lx_gemm_kernels *g, bool transB, int64_t M, int nr) {
    return transB || (nr % 16 != 0 && !(M == 1 && g->small_row_exact));
}

/* The packed panel of B for K block [k0, k0 + kc) and columns [j0, j0 + nr): B^T transposed, or a
 * ragged panel copied, zero-padded to 16 lanes; GEMM_SMALL_NR floats a k. */
static void small_pack_panel(const lx_gemm_kernels *g, bool transB, const float *B, int64_t ldb, int64_t k0, int64_t kc,
                             int64_t j0, int nr, float *panel) {
    if (transB) {
        g->small_pack_bt(B + j0 * ldb + k0, ldb, nr, kc, panel);
        return;
    }
    int padded = (nr + 15) / 16 * 16;
    for (int64_t k = 0; k < kc; k++) {
        memcpy(panel + k * GEMM_SMALL_NR, B + (k0 + k) * ldb + j0, sizeof(float) * (size_t)nr);
        memset(panel + k * GEMM_SMALL_NR + nr, 0, sizeof(float) * (size_t)(padded - nr));
    }
}

/* r0: the row of the whole product that C's first row is (the epilogue's y); 0 but for the row
 * ranges of gemm_small_par. bpre: NULL, or every packed panel made beforehand (gemm_small_par),
 * the panel of K block [k0, k0 + kc) and columns from j0 at bpre + (k0 npan + (j0 / NR) kc) NR. */
static void gemm_small_rows(const lx_gemm_kernels *g, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                            float *C, int64_t ldc, const epi_plan *ep, int64_t r0, const float *bpre) {
    int64_t ars = transA ? 1 : lda, acs = transA ? lda : 1;
    _Alignas(64) float panel[GEMM_SMALL_KC * GEMM_SMALL_NR]; /* a packed K x NR slice of B */
    /* equal K blocks; one block (K <= KC) needs no division */
    int64_t nkb = (K + GEMM_SMALL_KC - 1) / GEMM_SMALL_KC, kb = nkb == 1 ? K : (K + nkb - 1) / nkb;
    int64_t npan = (N + GEMM_SMALL_NR - 1) / GEMM_SMALL_NR;
    for (int64_t k0 = 0; k0 < K; k0 += kb) {
        int64_t kc = K - k0 < kb ? K - k0 : kb;
        for (int64_t j0 = 0; j0 < N; j0 += GEMM_SMALL_NR) {
            int nr = (int)(N - j0 < GEMM_SMALL_NR ? N - j0 : GEMM_SMALL_NR);
            const float *bp;
            int64_t bld;
            if (small_panel_packed(g, transB, M, nr)) {
                if (bpre) {
                    bp = bpre + (k0 * npan + j0 / GEMM_SMALL_NR * kc) * GEMM_SMALL_NR;
                } else {
                    small_pack_panel(g, transB, B, ldb, k0, kc, j0, nr, panel);
                    bp = panel;
                }
                bld = GEMM_SMALL_NR;
            } else {
                bp = B + k0 * ldb + j0;
                bld = ldb;
            }
            g->small_panel(M, nr, kc, A + k0 * acs, ars, acs, bp, bld, alpha, beta, k0 == 0, C + j0, ldc);
            if (ep && k0 + kc == K) epilogue_block(ep, C + j0, ldc, r0, j0, M, nr); /* the panel is in L1 */
        }
    }
}

/* Inline in every caller (gemm_run is inline in lx_sgemm): a batch-1 call reaches the kernel
 * through no call of gemm.c's own, each of which cost ~30 instructions of 13-15 arguments */
static inline __attribute__((always_inline)) void gemm_small(const lx_gemm_kernels *g, bool transA, bool transB,
                                                             int64_t M, int64_t N, int64_t K, float alpha,
                                                             const float *A, int64_t lda, const float *B, int64_t ldb,
                                                             float beta, float *C, int64_t ldc, const epi_plan *ep) {
    /* One panel (0 < N <= NR), one K block (0 < K <= KC), B read in place: gemm_small_rows' one
     * iteration, the same kernel call, without its loop set-up (a 1x1x1 call spent ~175
     * instructions there) */
    if ((uint64_t)(N - 1) < GEMM_SMALL_NR && (uint64_t)(K - 1) < GEMM_SMALL_KC &&
        !small_panel_packed(g, transB, M, (int)N)) {
        g->small_panel(M, (int)N, K, A, transA ? 1 : lda, transA ? lda : 1, B, ldb, alpha, beta, true, C, ldc);
        if (ep) epilogue_block(ep, C, ldc, 0, 0, M, N);
        return;
    }
    gemm_small_rows(g, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, 0, NULL);
}

/* The small path on the pool: ranges of rows, claimed one at a time. A range starts at a multiple of
 * SMALL_PAR_ROWS rows (every small-path register tile height, 4, 6, 8 and 12, divides it), so each
 * tile covers the rows it covers in one call and every value keeps its bits. Worth it from
 * SMALL_PAR_WORK multiply-adds: the MLP's 10-wide last layer (128 x 512 x 10, its dX 128 x 10 x 512
 * and dW 512 x 128 x 10) took 76-80 us each on one thread, the other one idle. */
#define SMALL_PAR_ROWS 24
#define SMALL_PAR_WORK (64LL * 64 * 64)
typedef struct {
    const lx_gemm_kernels *g;
    bool transA, transB;
    int64_t M, N, K, rows, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
    const epi_plan *ep;
    const float *bpre; /* the packed panels, made once for every range (NULL: each range packs its own) */
} small_job;

static int small_range(void *p, int64_t lo, int64_t hi) {
    const small_job *s = p;
    for (int64_t c = lo; c < hi; c++) {
        int64_t i0 = c * s->rows, m = s->M - i0 < s->rows ? s->M - i0 : s->rows;
        gemm_small_rows(s->g, s->transA, s->transB, m, s->N, s->K, s->alpha, s->A + i0 * (s->transA ? 1 : s->lda),
                        s->lda, s->B, s->ldb, s->beta, s->C + i0 * s->ldc, s->ldc, s->ep, i0, s->bpre);
    }
    return 0;
}

/* n ranges of `per` rows on `nthreads` threads */
static __attribute__((noinline)) void gemm_small_pool(const lx_gemm_kernels *g, bool transA, bool transB, int64_t M,
                                                      int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                                                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                                                      const epi_plan *ep, int nthreads, int64_t per, int64_t n) {
    small_job s = {g, transA, transB, M, N, K, per, lda, ldb, ldc, alpha, beta, A, B, C, ep, NULL};
    /* B^T or a ragged last panel: packed once here instead of once per range (the MLP's last
     * layer, 128 x 10 x 512: each of its 6 ranges copied all 512 rows of the 10-wide B) */
    int64_t npan = (N + GEMM_SMALL_NR - 1) / GEMM_SMALL_NR;
    if (transB || N % 16 != 0) {
        float *bpre = thread_scratch(4, (size_t)(K * npan * GEMM_SMALL_NR));
        int64_t nkb = (K + GEMM_SMALL_KC - 1) / GEMM_SMALL_KC, kb = (K + nkb - 1) / nkb;
        for (int64_t k0 = 0; bpre && k0 < K; k0 += kb) {
            int64_t kc = K - k0 < kb ? K - k0 : kb;
            for (int64_t j0 = 0; j0 < N; j0 += GEMM_SMALL_NR) {
                int nr = (int)(N - j0 < GEMM_SMALL_NR ? N - j0 : GEMM_SMALL_NR);
                if (small_panel_packed(g, transB, per, nr))
                    small_pack_panel(g, transB, B, ldb, k0, kc, j0, nr, bpre + (k0 * npan + j0 / GEMM_SMALL_NR * kc) * GEMM_SMALL_NR);
            }
        }
        s.bpre = bpre; /* NULL (no memory): each range packs its own */
    }
    (void)lx_parallel_for_dynamic(nthreads, n, 1, small_range, &s);
}

static inline __attribute__((always_inline)) void gemm_small_par(const lx_gemm_kernels *g, bool transA, bool transB,
                                                                 int64_t M, int64_t N, int64_t K, float alpha,
                                                                 const float *A, int64_t lda, const float *B,
                                                                 int64_t ldb, float beta, float *C, int64_t ldc,
                                                                 const epi_plan *ep, int nthreads) {
    /* about four ranges a thread, whole multiples of SMALL_PAR_ROWS (no divisions for a call
     * that stays on this thread: it tests the cheap conditions first) */
    int64_t per = 0, n = 0;
    if (nthreads != 1 && M * N * K >= SMALL_PAR_WORK && (nthreads = pool_threads(nthreads)) > 1) {
        per = (M + 4LL * nthreads * SMALL_PAR_ROWS - 1) / (4LL * nthreads * SMALL_PAR_ROWS) * SMALL_PAR_ROWS;
        n = (M + per - 1) / per;
    }
    if (n < 2)
        gemm_small(g, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
    else
        gemm_small_pool(g, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, nthreads, per, n);
}

/* ---- packed path ---- */

typedef struct {
    int64_t mc, kc, nc; /* rows of an A block (L2), K block (a B sliver in L1), columns per B phase */
} blocking;

/* BLIS's rules of thumb from the cache sizes: a kc x NR B sliver fills half of L1 (the A sliver
 * streams through the rest), an mc x kc A block half of L2. */
static blocking blocking_for(const lx_gemm_kernels *g) {
    const lx_cpu_info *cpu = lx_cpu_info_get();
    int64_t l1 = cpu->l1d_bytes >= 16384 ? cpu->l1d_bytes : 32768;
    int64_t l2 = cpu->l2_bytes >= 131072 ? cpu->l2_bytes : 262144;
    blocking b;
    b.kc = l1 / 2 / ((int64_t)sizeof(float) * g->nr);
    /* at least 256: K up to 256 is then one block on every machine, summed in one FMA chain from
     * zero as the small path sums it (with beta = 0 both paths give the same bits) */
    b.kc = b.kc < 256 ? 256 : b.kc > 512 ? 512 : b.kc / 16 * 16;
    b.mc = l2 / 2 / ((int64_t)sizeof(float) * b.kc) / g->mr * g->mr;
    if (b.mc < g->mr * 4) b.mc = g->mr * 4;
    if (b.mc > 480) b.mc = 480 / g->mr * g->mr;
    b.nc = 0; /* per call: the whole N when the packed B fits the cap */
    return b;
}

/* Per-thread scratch kept between calls (slot 0: packed A blocks, slot 1: the caller's packed B
 * or a worker's B sliver, slot 2: the caller's shared packed A, slot 3: the panel path's
 * just-in-time B panel, slot 4: the small path's packed B panels on several threads), freed when
 * the thread exits. */
#define SCRATCH_SLOTS 5
static pthread_key_t scratch_key[SCRATCH_SLOTS];
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local float *scratch_ptr[SCRATCH_SLOTS];
static _Thread_local size_t scratch_cap[SCRATCH_SLOTS];
static void scratch_free(void *p) { free(p); }
static void scratch_init(void) {
    for (int i = 0; i < SCRATCH_SLOTS; i++) (void)lx_tls_key_create(&scratch_key[i], scratch_free);
}

static float *thread_scratch(int slot, size_t floats) {
    if (scratch_cap[slot] >= floats) return scratch_ptr[slot];
    pthread_once(&scratch_once, scratch_init);
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) return NULL;
    free(scratch_ptr[slot]);
    scratch_ptr[slot] = p;
    scratch_cap[slot] = bytes / sizeof(float);
    (void)pthread_setspecific(scratch_key[slot], p);
    return p;
}

#define PACKED_B_CAP (16LL << 20)  /* floats of packed B per phase (64 MiB) */
/* A shared packed A (one row block, several threads) is packed in items of A_GROUP slivers; each
 * group is followed by A_GROUP_PAD floats, because the AVX2 A packing stores 8 values for a k's
 * MR = 6 and so writes 2 floats past its last sliver (harmless in one thread, where the next
 * sliver overwrites them; a race between two threads packing neighbouring groups). */
#define A_GROUP 8
#define A_GROUP_PAD 16
#define PACKED_B_KEEP (4LL << 20)  /* packed B buffers up to this many floats are kept per thread */

#define GUIDE_MAX 48 /* items of a guided split (guide_cuts) */
typedef struct {
    const lx_gemm_kernels *g;
    blocking bk;
    int64_t M, K;
    float alpha, beta;
    const float *A, *B;
    int64_t ars, acs, brs, bcs;
    float *C;
    int64_t ldc;
    const epi_plan *ep;
    /* the phase: columns [j0, j0 + nc) of C */
    int64_t j0, nc, ncpad;
    float *Bp;            /* K x ncpad packed, K block after K block */
    float *Ash;           /* one row block on several threads: all of A packed once, shared (else NULL) */
    int64_t agroups;      /* groups of A_GROUP slivers in Ash per K block */
    int64_t nkb, kb;      /* K blocks: nkb equal blocks of at most kb */
    int64_t mi, nj;       /* item grid: mi row blocks x nj column ranges */
    int64_t mrows, ncols; /* rows per row block (multiple of MR), columns per range (multiple of NR) */
    int guided;           /* 1: item t is columns [cut[t], cut[t + 1]) of one row block; 2: rows [cut[t],
                           * cut[t + 1]) and every column; 0: the mi x nj grid */
    int64_t cut[GUIDE_MAX + 1];
    atomic_llong next_pack, packed, next_item;
    atomic_int failed;
} packed_job;

static int64_t kblock_start(const packed_job *j, int64_t p) { return p * j->kb < j->K ? p * j->kb : j->K; }

/* The shared packed A: K block p holds agroups groups of A_GROUP slivers (each MR x kc), every group
 * followed by A_GROUP_PAD floats; every block before the last has kb columns. */
static int64_t ash_group_floats(const packed_job *j, int64_t kc) { return A_GROUP * j->g->mr * kc + A_GROUP_PAD; }
static const float *ash_sliver(const packed_job *j, int64_t p, int64_t kc, int64_t s) {
    return j->Ash + p * j->agroups * ash_group_floats(j, j->kb) + (s / A_GROUP) * ash_group_floats(j, kc) +
           (s % A_GROUP) * j->g->mr * kc;
}

/* Pack item t of the shared A: one K block x one group of slivers. */
static void pack_a_item(packed_job *j, int64_t t) {
    int64_t p = t / j->agroups, grp = t % j->agroups;
    int64_t k0 = kblock_start(j, p), kc = kblock_start(j, p + 1) - k0;
    int64_t i0 = grp * A_GROUP * j->g->mr, rows = j->M - i0 < A_GROUP * j->g->mr ? j->M - i0 : A_GROUP * j->g->mr;
    if (rows <= 0) return;
    j->g->pack_a(rows, kc, j->A + i0 * j->ars + k0 * j->acs, j->ars, j->acs, (float *)ash_sliver(j, p, kc, i0 / j->g->mr));
}

/* Pack item t of B: one K block x 8 slivers. */
static void pack_b_item(packed_job *j, int64_t t) {
    int64_t nsl = j->ncpad / j->g->nr, per = 8, groups = (nsl + per - 1) / per;
    int64_t p = t / groups, s0 = (t % groups) * per;
    int64_t k0 = kblock_start(j, p), kc = kblock_start(j, p + 1) - k0;
    int64_t c0 = s0 * j->g->nr, cols = j->nc - c0 < per * j->g->nr ? j->nc - c0 : per * j->g->nr;
    if (cols <= 0) return;
    float *dst = j->Bp + k0 * j->ncpad + c0 * kc;
    j->g->pack_b(kc, cols, j->B + k0 * j->brs + (j->j0 + c0) * j->bcs, j->brs, j->bcs, dst);
}

/* Columns up to which a one-row-block product reads A in place instead of packing it. */
#define UA_MAX_COLS 256
/* Slivers of B packed together when rows of B are contiguous: 4 x NR x kc floats (64 KiB with the
 * AVX2 set's 16 x 256) stay in L2 beside the A block. */
#define B_GROUP 4
/* Packs cols (<= B_GROUP * NR) columns of a B whose rows are contiguous, row by row: each row's
 * B_GROUP * NR values are read at once (whole cache lines). Packing a sliver at a time read one
 * line per row, kc rows ld apart; with a power-of-two ld those lines share a few cache sets and
 * the neighbouring lines the next sliver needs were evicted before it ran (128 x 512 x 784 ran at
 * 77 GFLOPS with ldb 512, 94 with ldb 528; row by row, ~0.77 of the peak at ldb 512 against
 * ~0.62-0.75 before, thread CPU time, same run). */
static inline __attribute__((always_inline)) void pack_b_rows_nr(const int NR, int64_t kc, int64_t full, const float *B,
                                                                  int64_t ld, float *Bp) {
    for (int64_t k = 0; k < kc; k++) {
        const float *b = B + k * ld;
        __builtin_prefetch(b + 8 * ld);                  /* the row 8 ahead: its first line */
        __builtin_prefetch(b + 8 * ld + B_GROUP * NR - 1); /* and its last */
        for (int64_t s = 0; s < full; s++) memcpy(Bp + s * NR * kc + k * NR, b + s * NR, sizeof(float) * (size_t)NR);
    }
}
static void pack_b_rows(const lx_gemm_kernels *g, int64_t kc, int64_t cols, const float *B, int64_t ld, float *Bp) {
    const int64_t NR = g->nr;
    int64_t full = cols / NR;
    /* a constant NR: the copies are inlined moves, not a memcpy call per NR values */
    if (NR == 8) pack_b_rows_nr(8, kc, full, B, ld, Bp);
    else if (NR == 16) pack_b_rows_nr(16, kc, full, B, ld, Bp);
    else if (NR == 32) pack_b_rows_nr(32, kc, full, B, ld, Bp);
    else pack_b_rows_nr((int)NR, kc, full, B, ld, Bp);
    if (full * NR < cols) g->pack_b(kc, cols - full * NR, B + full * NR, ld, 1, Bp + full * NR * kc);
}

/* Item t: rows [i0, i1) x columns [c0, c1) of the phase, every K block. Without a shared packed
 * B (j->Bp NULL: one row block) the item packs each NR-column sliver of a K block into Bpriv just
 * before the row tiles that use it, so the sliver is read from L1 (packing all the item's columns
 * first left them in L2/L3: the MLP's 128x784 -> 512 ran at 0.44 of peak against 0.6 at 128^3). */
static void run_item(packed_job *j, int64_t t, float *Ap, float *Bpriv) {
    const lx_gemm_kernels *g = j->g;
    const int MR = g->mr, NR = g->nr;
    int64_t ib = t / j->nj, jb = t % j->nj;
    int64_t i0 = ib * j->mrows, i1 = i0 + j->mrows < j->M ? i0 + j->mrows : j->M;
    int64_t c0 = jb * j->ncols, c1 = c0 + j->ncols < j->nc ? c0 + j->ncols : j->nc;
    if (j->guided == 1) i0 = 0, i1 = j->M, c0 = j->cut[t], c1 = j->cut[t + 1] < j->nc ? j->cut[t + 1] : j->nc;
    if (j->guided == 2) c0 = 0, c1 = j->nc, i0 = j->cut[t], i1 = j->cut[t + 1] < j->M ? j->cut[t + 1] : j->M;
    if (i0 >= i1 || c0 >= c1) return;
    _Alignas(64) float tile[16 * 64];
    bool epi = j->ep != NULL;
    for (int64_t p = 0; p < j->nkb; p++) {
        int64_t k0 = kblock_start(j, p), kc = kblock_start(j, p + 1) - k0;
        float beta = p == 0 ? j->beta : 1.0f;
        bool last = p == j->nkb - 1;
        for (int64_t ic = i0; ic < i1; ic += j->bk.mc) {
            int64_t mc = i1 - ic < j->bk.mc ? i1 - ic : j->bk.mc;
            /* rows of A contiguous, one row block, few columns (each A value then carries few FMAs,
             * so packing it is a large share: 128^3 ran at 0.71-0.75 of the peak packed, 0.87-0.88
             * in place; at 512 columns in place measured the same or ~3% slower): full tiles read
             * A in place (ukr_ua), only a ragged last sliver is packed (at Ap) */
            bool ua = g->ukr_ua && !j->Ash && !j->Bp && j->acs == 1 && j->nc <= UA_MAX_COLS;
            int64_t mfull = mc / MR * MR;
            if (ua) {
                if (mfull < mc) g->pack_a(mc - mfull, kc, j->A + (ic + mfull) * j->ars + k0, j->ars, 1, Ap);
            } else if (!j->Ash) {
                g->pack_a(mc, kc, j->A + ic * j->ars + k0 * j->acs, j->ars, j->acs, Ap);
            }
            const float *Bblk = j->Bp ? j->Bp + k0 * j->ncpad : NULL;
            for (int64_t jr = c0; jr < c1; jr += NR) {
                int64_t nr = c1 - jr < NR ? c1 - jr : NR;
                const float *bs = Bblk ? Bblk + jr * kc : Bpriv;
                /* one row block: pack B right before its row tiles, a sliver at a time (it stays in
                 * L1), or with rows of B contiguous B_GROUP slivers at a time, row by row (L2) */
                if (!Bblk) {
                    const float *src = j->B + k0 * j->brs + (j->j0 + jr) * j->bcs;
                    if (j->bcs == 1) {
                        int64_t q = (jr - c0) / NR % B_GROUP;
                        if (q == 0) {
                            int64_t cols = c1 - jr < B_GROUP * NR ? c1 - jr : B_GROUP * NR;
                            pack_b_rows(g, kc, cols, src, j->brs, Bpriv);
                        }
                        bs = Bpriv + q * NR * kc;
                    } else {
                        g->pack_b(kc, nr, src, j->brs, j->bcs, Bpriv);
                    }
                }
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    int64_t mr = mc - ir < MR ? mc - ir : MR;
                    float *c = j->C + (ic + ir) * j->ldc + j->j0 + jr;
                    const float *as = j->Ash ? ash_sliver(j, p, kc, (ic + ir) / MR) : ua ? Ap : Ap + ir * kc;
                    if (mr < MR && nr == NR && g->ukr_rows) { /* a short row tile, straight to C */
                        g->ukr_rows((int)mr, kc, as, bs, c, j->ldc, j->alpha, beta);
                        if (last && epi) epilogue_block(j->ep, c, j->ldc, ic + ir, j->j0 + jr, mr, nr);
                        continue;
                    }
                    bool full = mr == MR && nr == NR; /* else an edge tile: into the buffer, then the rows and columns that exist */
                    float *cd = full ? c : tile;
                    int64_t cld = full ? j->ldc : NR;
                    if (ua && mr == MR)
                        g->ukr_ua(kc, j->A + (ic + ir) * j->ars + k0, j->ars, bs, cd, cld, j->alpha, full ? beta : 0.0f);
                    else
                        g->ukr(kc, as, bs, cd, cld, j->alpha, full ? beta : 0.0f);
                    if (!full) {
                        for (int64_t r = 0; r < mr; r++)
                            for (int64_t q = 0; q < nr; q++) {
                                float v = tile[r * NR + q], *cc = c + r * j->ldc + q;
                                *cc = beta == 0.0f ? v : beta == 1.0f ? *cc + v : v + beta * *cc;
                            }
                    }
                    if (last && epi) epilogue_block(j->ep, c, j->ldc, ic + ir, j->j0 + jr, mr, nr); /* the tile is in L1 */
                }
            }
        }
    }
}

/* Every thread of the team: pack shared B items while there are any, wait for the ones others
 * still hold (there is no barrier: a thread that joins late finds them done), then compute items. */
static void packed_worker(void *arg) {
    packed_job *j = arg;
    int64_t npack_b = j->Bp ? j->nkb * ((j->ncpad / j->g->nr + 7) / 8) : 0, nitems = j->mi * j->nj;
    int64_t npack = npack_b + (j->Ash ? j->nkb * j->agroups : 0);
    for (int64_t t; (t = atomic_fetch_add(&j->next_pack, 1)) < npack;) {
        if (t < npack_b) pack_b_item(j, t);
        else pack_a_item(j, t - npack_b);
        atomic_fetch_add(&j->packed, 1);
    }
    LX_SPIN_WAIT(atomic_load(&j->packed) < npack); /* items another thread holds (team.h) */
    float *Ap = j->Ash ? j->Ash : thread_scratch(0, (size_t)(j->bk.mc * j->bk.kc + 64)); /* + slack for vector packing stores */
    float *Bpriv = j->Bp ? NULL : thread_scratch(1, (size_t)(j->kb * j->g->nr * B_GROUP + 64));
    if (!Ap || (!j->Bp && !Bpriv)) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (int64_t t; (t = atomic_fetch_add(&j->next_item, 1)) < nitems;) run_item(j, t, Ap, Bpriv);
}

/* Guided item sizes (OpenMP's schedule(guided) with 2 nt): each item takes 1 / (2 nt) of what is
 * left, at least one unit, so items shrink toward the end and the threads finish within a small
 * item of each other. With equal items (four a thread) a thread that ran a few percent slower, or
 * joined late, left the other one waiting for up to a whole item at the end: the MLP's products on
 * two threads had the caller waiting 30-50 us per product for the worker (and the reverse, unseen).
 * 128 x 784 x 512 on two threads: 8 items of 4 slivers become 8, 6, 5, 4, 3, 2, 1, 1, 1, 1. The
 * MLP's five big products (both passes, 2 threads, pinned, interleaved with the equal items in one
 * process, 200 rounds, three runs): median 1.4-1.9% faster, best of rounds 0-1.4%. cut[0..n] in
 * units; returns n, or 0 when that would take more than GUIDE_MAX items (then the grid stays). */
static int guide_cuts(int64_t units, int nt, int64_t *cut) {
    int n = 0;
    int64_t pos = 0;
    while (pos < units) {
        if (n == GUIDE_MAX) return 0;
        int64_t left = units - pos, sz = (left + 2 * nt - 1) / (2 * nt);
        cut[n++] = pos;
        pos += sz;
    }
    cut[n] = units;
    return n;
}

static lx_status gemm_packed(const lx_gemm_kernels *g, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                             float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                             float *C, int64_t ldc, const epi_plan *ep, int nthreads) {
    blocking bk = blocking_for(g);
    const int MR = g->mr, NR = g->nr;
    int64_t nkb = (K + bk.kc - 1) / bk.kc, kb = (K + nkb - 1) / nkb; /* equal K blocks: 300 is 150 + 150 */
    bk.kc = kb;
    /* columns per phase: all of N when the packed B fits the cap */
    int64_t phase = PACKED_B_CAP / (K > 0 ? K : 1) / NR * NR;
    if (phase < 4 * NR) phase = 4 * NR;
    float *heap = NULL, *bbuf = NULL;
    lx_status st = LX_OK;
    for (int64_t j0 = 0; j0 < N && st == LX_OK; j0 += phase) {
        int64_t nc = N - j0 < phase ? N - j0 : phase, ncpad = (nc + NR - 1) / NR * NR;
        /* One row block (M <= mc): column ranges that each pack their own B, K block by K block
         * (no thread ever waits for another's packing; B stays in L2). Several row blocks: B is
         * packed once, shared, so that no row block repacks it. */
        bool shared_b = M > bk.mc;
        if (shared_b && !bbuf && K * ncpad <= PACKED_B_KEEP) bbuf = thread_scratch(1, (size_t)(K * ncpad));
        if (shared_b && !bbuf) bbuf = heap = aligned_alloc(64, (size_t)((K * ncpad * (int64_t)sizeof(float) + 63) / 64 * 64));
        if (shared_b && !bbuf)
            return lx_fail(LX_ERR_NO_MEMORY, "sgemm: out of memory for a packed %lld x %lld panel", (long long)K,
                           (long long)ncpad);
        /* The item grid: row blocks of at most mc rows; with more than one thread, enough items
         * (about 4 per thread) that a pre-empted thread delays one of them, splitting columns
         * too when there are few row blocks (each column range repacks its A block). */
        int nt = nthreads;
        int64_t mi = (M + bk.mc - 1) / bk.mc, nj = 1;
        if (nt > 1 && !shared_b) {
            nj = 4 * (int64_t)nt;
            int64_t njmax = ncpad / (2 * NR) > 0 ? ncpad / (2 * NR) : 1;
            if (nj > njmax) nj = njmax;
            if (nj < nt) nt = (int)nj;
        } else if (nt > 1) {
            int64_t want = 4 * (int64_t)nt;
            if (mi < want) {
                int64_t rows_min = 4 * MR;
                int64_t mi2 = M / rows_min > 0 ? M / rows_min : 1;
                mi = mi2 < want ? (mi2 > mi ? mi2 : mi) : want;
            }
            if (mi < want) {
                nj = (want + mi - 1) / mi;
                int64_t njmax = ncpad / (4 * NR) > 0 ? ncpad / (4 * NR) : 1;
                if (nj > njmax) nj = njmax;
            }
            if (mi * nj < nt) nt = (int)(mi * nj);
        }
        int64_t mrows = ((M + mi - 1) / mi + MR - 1) / MR * MR;
        mi = (M + mrows - 1) / mrows;
        int64_t ncols = ((ncpad / NR + nj - 1) / nj) * NR;
        nj = (ncpad + ncols - 1) / ncols;
        /* One row block on several threads: A is packed once, by all of them, and shared (each
         * column range packing its own copy cost the MLP's 128-row products ~25% on two threads). */
        float *ash = NULL, *aheap = NULL;
        int64_t agroups = 0;
        if (!shared_b && nt > 1) {
            agroups = ((M + MR - 1) / MR + A_GROUP - 1) / A_GROUP;
            size_t floats = (size_t)(nkb * agroups * (A_GROUP * MR * kb + A_GROUP_PAD) + 64);
            if (floats <= (size_t)PACKED_B_KEEP) ash = thread_scratch(2, floats);
            else ash = aheap = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
            if (!ash) agroups = 0; /* no memory: each range packs its own A, as with one thread */
        }
        packed_job job = {.g = g, .bk = bk, .M = M, .K = K, .alpha = alpha, .beta = beta, .A = A, .B = B,
                          .ars = transA ? 1 : lda, .acs = transA ? lda : 1, .brs = transB ? 1 : ldb,
                          .bcs = transB ? ldb : 1, .C = C, .ldc = ldc, .ep = ep, .j0 = j0, .nc = nc,
                          .ncpad = ncpad, .Bp = shared_b ? bbuf : NULL, .Ash = ash, .agroups = agroups, .nkb = nkb, .kb = kb, .mi = mi, .nj = nj,
                          .mrows = mrows, .ncols = ncols};
        /* Two or more threads, one row block or one column range: guided items instead of the
         * grid (guide_cuts), columns in whole slivers or rows in whole tiles. Rows only while the
         * packed B stays in L2 (every row item streams all of it): the MLP's dW, K = 128. */
        int64_t l2 = lx_cpu_info_get()->l2_bytes >= 131072 ? lx_cpu_info_get()->l2_bytes : 262144;
        bool rows_fit = K * ncpad * (int64_t)sizeof(float) <= l2;
        if (nt > 1 && (mi == 1 || (nj == 1 && rows_fit))) {
            int64_t unit = mi == 1 ? NR : MR, units = mi == 1 ? ncpad / NR : (M + MR - 1) / MR;
            int n = guide_cuts(units, nt, job.cut);
            if (n > 0) {
                for (int i = 0; i <= n; i++) job.cut[i] *= unit;
                job.guided = mi == 1 ? 1 : 2;
                job.mi = mi == 1 ? 1 : n;
                job.nj = mi == 1 ? n : 1;
            }
        }
        atomic_init(&job.next_pack, 0);
        atomic_init(&job.packed, 0);
        atomic_init(&job.next_item, 0);
        atomic_init(&job.failed, 0);
        lx_team_run(nt, packed_worker, &job);
        free(aheap);
        if (atomic_load(&job.failed)) st = lx_fail(LX_ERR_NO_MEMORY, "sgemm: out of memory for a packed A block");
    }
    free(heap);
    return st;
}

/* ---- panel path (the AVX-512 set's packed path) ----
 * The small path's register tiles (6 x 64, 8 x 48, 12 x 32: B vectors, A broadcast straight from
 * the caller's rows) with the blocking the small path lacks. B goes into contiguous K-block x
 * 64-column panels (kc x 64 floats, <= 128 KiB, streaming from L2): packed once per call and
 * shared by every thread when several row blocks read each panel (B transposed: the 16 x 16
 * register transposes), else read in place, or copied just before use when it is transposed,
 * ragged or off its cache lines. A is not packed: a row block (<= 240 x 512 floats) stays in L2
 * while the panels stream past it (only a deep A^T block is copied, see copy_a). The tile kernel
 * alone runs at ~0.97 of the FMA peak with its panel in L2; what the packed 12 x 32 path lost
 * (0.68 of the peak at 128^3, ~0.80 at 512^3) was its scalar A packing (~0.25 ns a value) and
 * the tile buffer at every ragged edge. Work items are (row block x column range) pairs over
 * every K block, claimed from an atomic counter, several per thread, so a pre-empted thread
 * holds back one item; the epilogue runs on an item's C block right after its last K block. */
#define PANEL_W GEMM_SMALL_NR /* columns per B panel */
/* Deepest K block: C is read and written once per K block, and at 2048^3 that traffic (C far
 * beyond L2) cost more than a 128 KiB panel streaming from L2 (same runs, best of 3: 2048^3
 * 0.75 of the peak with 256, 0.81-0.83 with 512; 512^3 and 1024^3 the same or better). */
#define PANEL_KC 512
/* Most rows per row block on one thread: the A block (<= 480 KiB at kc 512) in L2 beside a panel.
 * 1024^3 and 2048^3 on one thread measured the same within noise at 96, 120, 240, 480 and 720;
 * 240 keeps 128- to 240-row products (the MLP's batch) in one block, so each panel is read once. */
#define PANEL_MC 240
/* B is read in place (not packed) below this many rows when its rows are contiguous: a panel is
 * then reused by too few row tiles to pay for the copy (128^3: in place ~0.94 of the peak). */
#define PANEL_PACK_ROWS 256
/* Floats of B (K x N) from which the tiles prefetch C and the next panel into L2 (panel_pf):
 * below, B and C stay in L2 and the prefetches cost ~1% (the LM's 1024 x 128-512 products) */
#define PANEL_PF_FLOATS (256LL * 1024)

typedef struct {
    const lx_gemm_kernels *g;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t ars, acs, ldb;
    bool transB, copy_a;
    bool b_unaligned; /* rows of B not all on 64-byte boundaries: panels read in place would split loads */
    bool pf;          /* B of 1 MiB or more: prefetch C tiles and the next panel (panel_pf) */
    float *C;
    int64_t ldc;
    const epi_plan *ep;
    float *Bp;            /* NULL: B read in place; else nkb x npan panels of kb x PANEL_W */
    int64_t npan, nkb, kb;
    int64_t mi, nj, mrows;        /* item grid: mi row blocks of at most mrows rows x nj column ranges */
    atomic_int *pstate;   /* per shared panel (K block p, panel q at p * npan + q): see panel_ready */
    atomic_llong next_item;
} panel_job;

static float *panel_at(const panel_job *j, int64_t p, int64_t q) { return j->Bp + (p * j->npan + q) * j->kb * PANEL_W; }

/* Pack item t: panel t % npan of K block t / npan (zero columns up to the next multiple of 16). */
static void panel_pack(const panel_job *j, int64_t t) {
    int64_t p = t / j->npan, q = t % j->npan;
    int64_t k0 = p * j->kb, kc = j->K - k0 < j->kb ? j->K - k0 : j->kb, c0 = q * PANEL_W;
    int nr = (int)(j->N - c0 < PANEL_W ? j->N - c0 : PANEL_W);
    float *dst = panel_at(j, p, q);
    if (j->transB) {
        j->g->small_pack_bt(j->B + c0 * j->ldb + k0, j->ldb, nr, kc, dst);
        return;
    }
    int padded = (nr + 15) / 16 * 16;
    for (int64_t k = 0; k < kc; k++) {
        memcpy(dst + k * PANEL_W, j->B + (k0 + k) * j->ldb + c0, sizeof(float) * (size_t)nr);
        if (padded > nr) memset(dst + k * PANEL_W + nr, 0, sizeof(float) * (size_t)(padded - nr));
    }
}

/* Row block b starts at b M / mi rounded down to whole 6-row tiles: equal blocks within a tile, so
 * that no thread is left with one short block and the other with a long one. */
static int64_t panel_row_start(const panel_job *j, int64_t b) { return b >= j->mi ? j->M : b * j->M / j->mi / 6 * 6; }

/* Shared panel q of K block p, packed by the first item that needs it (0: not packed, 1: being
 * packed, 2: ready): packing overlaps the other thread's work instead of a pack phase that every
 * thread waits out, and the panel is in the packer's L2 when its first row block reads it. */
static const float *panel_ready(const panel_job *j, int64_t p, int64_t q) {
    atomic_int *st = &j->pstate[p * j->npan + q];
    int expect = 0;
    if (atomic_load_explicit(st, memory_order_acquire) != 2) {
        if (atomic_compare_exchange_strong(st, &expect, 1)) {
            panel_pack(j, p * j->npan + q);
            atomic_store_explicit(st, 2, memory_order_release);
        } else {
            while (atomic_load_explicit(st, memory_order_acquire) != 2) sched_yield();
        }
    }
    return panel_at(j, p, q);
}

static void panel_item(const panel_job *j, int64_t t, float *Ablk, float *edge) {
    int64_t ib = t / j->nj, jb = t % j->nj;
    int64_t i0 = panel_row_start(j, ib), m = panel_row_start(j, ib + 1) - i0;
    int64_t c0 = jb * j->npan / j->nj * PANEL_W, c1 = (jb + 1) * j->npan / j->nj * PANEL_W;
    if (c1 > j->N) c1 = j->N;
    if (m <= 0 || c0 >= c1) return;
    for (int64_t p = 0; p < j->nkb; p++) {
        int64_t k0 = p * j->kb, kc = j->K - k0 < j->kb ? j->K - k0 : j->kb;
        const float *a = j->A + i0 * j->ars + k0 * j->acs;
        int64_t ars = j->ars, acs = j->acs;
        if (Ablk) { /* the A block copied to contiguous rows (or k rows, A transposed) */
            if (acs == 1) {
                for (int64_t i = 0; i < m; i++) memcpy(Ablk + i * kc, a + i * ars, sizeof(float) * (size_t)kc);
                ars = kc;
            } else {
                int64_t ld = (m + 15) / 16 * 16;
                for (int64_t k = 0; k < kc; k++) memcpy(Ablk + k * ld, a + k * acs, sizeof(float) * (size_t)m);
                acs = ld;
            }
            a = Ablk;
        }
        for (int64_t c = c0; c < c1; c += PANEL_W) {
            int nr = (int)(c1 - c < PANEL_W ? c1 - c : PANEL_W);
            const float *bp;
            int64_t bld = PANEL_W;
            if (j->Bp) {
                bp = panel_ready(j, p, c / PANEL_W);
            } else if (j->transB) { /* B^T: transposed just before use, into L1/L2 */
                j->g->small_pack_bt(j->B + c * j->ldb + k0, j->ldb, nr, kc, edge);
                bp = edge;
            } else if (nr % 16 != 0 || j->b_unaligned) { /* a ragged or unaligned panel: copied */
                int padded = (nr + 15) / 16 * 16;
                for (int64_t k = 0; k < kc; k++) {
                    memcpy(edge + k * PANEL_W, j->B + (k0 + k) * j->ldb + c, sizeof(float) * (size_t)nr);
                    if (padded > nr) memset(edge + k * PANEL_W + nr, 0, sizeof(float) * (size_t)(padded - nr));
                }
                bp = edge;
            } else {
                bp = j->B + k0 * j->ldb + c;
                bld = j->ldb;
            }
            float *cc = j->C + i0 * j->ldc + c;
            /* Shared packed panels: the next one this item reads (the next column, or the first
             * of the next K block) is prefetched into L2 during this one; else the first row
             * tile of every panel streamed it from L3 (2048^3: 0.76-0.79 of the peak -> 0.88-0.89,
             * 1024^3 0.81 -> 0.82-0.88, 512^3 +1-8%; thread CPU time, best of 5, alternating runs) */
            if (j->Bp && j->g->panel_pf && j->pf) {
                int64_t np = c + PANEL_W < c1 ? p : p + 1, nq = c + PANEL_W < c1 ? c / PANEL_W + 1 : c0 / PANEL_W;
                const float *pf = np < j->nkb ? panel_at(j, np, nq) : NULL;
                j->g->panel_pf(m, nr, kc, a, ars, acs, bp, bld, j->alpha, j->beta, p == 0, cc, j->ldc, pf);
            } else if (j->transB && j->ldb == kc && c + PANEL_W < c1 && j->g->panel_pf && j->pf) {
                /* B^T whose K block is its whole rows: the next panel's source is one contiguous
                 * range, prefetched for the next transposition (128 x 784 x 512: +1%, same runs) */
                j->g->panel_pf(m, nr, kc, a, ars, acs, bp, bld, j->alpha, j->beta, p == 0, cc, j->ldc, j->B + (c + PANEL_W) * j->ldb + k0);
            } else {
                j->g->small_panel(m, nr, kc, a, ars, acs, bp, bld, j->alpha, j->beta, p == 0, cc, j->ldc);
            }
            if (p == j->nkb - 1 && j->ep) epilogue_block(j->ep, cc, j->ldc, i0, c, m, nr);
        }
    }
}

static void panel_worker(void *arg) {
    panel_job *j = arg;
    int64_t nitems = j->mi * j->nj;

    float *Ablk = j->copy_a ? thread_scratch(0, (size_t)((j->mrows + 16) * j->kb + 64)) : NULL;
    float *edge = thread_scratch(3, (size_t)(j->kb * PANEL_W)); /* a panel packed just before use */
    if ((j->copy_a && !Ablk) || !edge) return; /* claims nothing: gemm_panels sees the items left */
    for (int64_t t; (t = atomic_fetch_add(&j->next_item, 1)) < nitems;) panel_item(j, t, Ablk, edge);
}

static lx_status gemm_panels(const lx_gemm_kernels *g, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                             float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                             float *C, int64_t ldc, const epi_plan *ep, int nthreads) {
    /* equal K blocks of at most PANEL_KC: K <= 256 is one block here as on the small path, so
     * with beta = 0 both give the same bits */
    int64_t nkb = (K + PANEL_KC - 1) / PANEL_KC, kb = (K + nkb - 1) / nkb;
    /* column phases: the packed B of a phase within the cap */
    int64_t phase = PACKED_B_CAP / (nkb * kb) / PANEL_W * PANEL_W;
    if (phase < PANEL_W) phase = PANEL_W;
    /* Never fails once C is touched: the column phases write disjoint columns, and a phase that
     * cannot get its memory (packed B, panel states, every worker's scratch) has written nothing,
     * so it and the phases after it run on the small path, which needs none. (Returning an error
     * there made lx_sgemm_serial's fallback redo earlier phases' columns with beta applied twice.) */
    for (int64_t j0 = 0; j0 < N; j0 += phase) {
        int64_t nc = N - j0 < phase ? N - j0 : phase, npan = (nc + PANEL_W - 1) / PANEL_W;
        /* The item grid: one thread, row blocks of at most PANEL_MC over all columns. Several:
         * at least 4 items per thread and a multiple of the thread count, rows split first
         * (each column range re-reads its A block), blocks of at least 48 rows (8 whole tiles),
         * then columns, ranges of at least 2 panels (1 when there is one row block). */
        int nt = nthreads;
        int64_t rb = (M + PANEL_MC - 1) / PANEL_MC, nj = 1;
        if (nt > 1) {
            int64_t want = 4 * (int64_t)nt, maxrb = M / 48 > 0 ? M / 48 : 1, njmax = npan / 2 > 0 ? npan / 2 : 1;
            /* one row block's worth of rows: columns only, each panel read (B^T: transposed,
             * B off its lines: copied) by one item, in its own L2; 128 x 784 x 512 with B^T
             * ran at 0.71-0.73 of the two-thread peak split 2 x 4, 0.82-0.84 split 1 x 8 (quiet
             * moments, same run); 128^3 0.80 against 0.85 */
            if (M <= PANEL_MC) maxrb = 1, njmax = npan;
            if (rb < want) rb = want < maxrb ? want : maxrb;
            nj = rb >= want ? 1 : (want + rb - 1) / rb;
            if (nj > njmax) nj = njmax;
            if ((rb * nj) % nt != 0 && nj < njmax) nj++;
            if (rb * nj < nt) nt = (int)(rb * nj);
        }
        int64_t mrows = (M + rb - 1) / rb + 6;
        /* B packed once, shared, when several row blocks read each panel and it pays: B
         * transposed, or enough rows; else each item reads it in place or packs a panel just
         * before use */
        bool pack = rb > 1 && (transB || M >= PANEL_PACK_ROWS);
        float *Bp = NULL, *heap = NULL;
        if (pack) {
            size_t floats = (size_t)(nkb * npan * kb * PANEL_W);
            Bp = floats <= (size_t)PACKED_B_KEEP ? thread_scratch(1, floats) : NULL;
            if (!Bp) Bp = heap = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
            /* no memory: B read in place or packed a panel at a time, as without sharing */
        }
        panel_job job = {.g = g, .M = M, .N = nc, .K = K, .alpha = alpha, .beta = beta, .A = A,
                         .B = transB ? B + j0 * ldb : B + j0, .ars = transA ? 1 : lda, .acs = transA ? lda : 1,
                         .ldb = ldb, .transB = transB, .C = C + j0, .ldc = ldc, .ep = NULL, .Bp = Bp, .npan = npan,
                         .nkb = nkb, .kb = kb, .mrows = mrows};
        epi_plan ep_phase;
        if (ep) { /* the phase's columns */
            ep_phase = *ep;
            if (ep->bias) ep_phase.bias += j0;
            if (ep->y) ep_phase.y += j0;
            job.ep = &ep_phase;
        }
        /* A transposed, K blocks over 256, its k rows longer than a row block: the block is
         * copied to contiguous k rows (in place, k rows lda apart: 1024^3 with A^T ran at 0.49 of
         * the peak, 0.81 copied; 512^3 0.80-0.82 against 0.86-0.87). When a row block spans
         * (nearly) all of lda, the block is already dense and the copy pure cost: the LM's dW
         * products (128 x 128-512 x 1024, lda 128) ran 3-8% faster in place (thread CPU time,
         * best of 9, alternating runs). With rows of A contiguous, copying measured slower or the
         * same (2048^3 too) */
        job.copy_a = transA && kb > 256 && lda > mrows + 16;
        /* In place, a B row that does not start a cache line makes every 64-byte load of the
         * tiles two (128x512x512 with B 16 bytes off: 0.79 of the peak in place, against 0.95
         * aligned); such panels are copied just before use instead */
        job.b_unaligned = ((uintptr_t)job.B % 64 != 0 || ldb % 16 != 0);
        /* B of 1 MiB or more (it and C then leave L2): the tiles prefetch C and the next panel */
        job.pf = K * nc >= PANEL_PF_FLOATS;
        job.mi = rb;
        job.nj = nj;
        atomic_init(&job.next_item, 0);
        if (Bp) {
            job.pstate = malloc(sizeof(atomic_int) * (size_t)(nkb * npan));
            if (!job.pstate) free(heap), heap = NULL, job.Bp = NULL; /* unshared instead */
            for (int64_t i = 0; job.pstate && i < nkb * npan; i++) atomic_init(&job.pstate[i], 0);
        }
        lx_team_run(nt, panel_worker, &job);
        free(job.pstate);
        free(heap);
        /* a worker that claims an item runs until none is left: unless every worker failed to get
         * its scratch before claiming one, the phase is complete */
        if (atomic_load(&job.next_item) < job.mi * job.nj) {
            gemm_small(g, transA, transB, M, N - j0, K, alpha, A, lda, transB ? B + j0 * ldb : B + j0, ldb, beta,
                       C + j0, ldc, job.ep);
            break;
        }
    }
    return LX_OK;
}

/* ---- entry points ---- */

static inline __attribute__((always_inline)) lx_gemm_path choose_path(const lx_kernels *k, bool transA, int64_t M, int64_t N, int64_t K) {
    lx_gemm_path p = (lx_gemm_path)atomic_load_explicit(&forced_path, memory_order_relaxed);
    if (p != LX_GEMM_PATH_AUTO) return p;
    if (lx_sgemm_is_small(M, N, K) || M < SMALL_ROWS) return LX_GEMM_PATH_SMALL;
    if (k->isa == LX_ISA_GENERIC) return LX_GEMM_PATH_BLAS; /* its kernels beat our portable ones */
    if (k->isa == LX_ISA_AVX2 && !transA && M > AVX2_BLAS_ROWS && M * N * K > AVX2_BLAS_ABOVE) return LX_GEMM_PATH_BLAS;
    return LX_GEMM_PATH_PACKED;
}

/* The OpenBLAS and packed paths (gemm_run's arms for products that are not small). */
static __attribute__((noinline)) lx_status gemm_large(const lx_kernels *k, lx_gemm_path path, bool transA,
                                                      bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                                                      const float *A, int64_t lda, const float *B, int64_t ldb,
                                                      float beta, float *C, int64_t ldc, const epi_plan *pl,
                                                      int nthreads) {
    if (path == LX_GEMM_PATH_BLAS) {
        (void)lx_num_threads(); /* make sure OpenBLAS got the thread setting */
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, (int)M,
                    (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
        if (pl) epilogue_all(pl, C, ldc, M, N, pool_threads(nthreads));
        return LX_OK;
    }
    int nt = M * N * K >= PAR_MIN_WORK ? pool_threads(nthreads) : 1; /* sizes fit: M, N, K were validated */
    if (k->isa == LX_ISA_AVX512)
        return gemm_panels(&k->gemm, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pl, nt);
    return gemm_packed(&k->gemm, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pl, nt);
}

/* After validation: one product on `nthreads` threads (1: the calling thread only, 0: the pool's
 * count, asked only where a product may use more than one). Inline in its callers, so that a
 * small call passes its arguments once (the paths it does not take are calls). */
static inline __attribute__((always_inline)) lx_status gemm_run(bool transA, bool transB, int64_t M, int64_t N,
                                                                int64_t K, float alpha, const float *A, int64_t lda,
                                                                const float *B, int64_t ldb, float beta, float *C,
                                                                int64_t ldc, const lx_gemm_epilogue *ep, int nthreads,
                                                                bool allow_blas) {
    if (M == 0 || N == 0) return LX_OK;
    const lx_kernels *k = lx_kernels_active();
    epi_plan plan;
    const epi_plan *pl = epilogue_plan(k, ep, &plan);
    if (K == 0 || alpha == 0.0f) { /* no product: C = beta C, never reading C when beta is 0 */
        scale_c(M, N, beta, C, ldc);
        if (pl) epilogue_all(pl, C, ldc, M, N, pool_threads(nthreads));
        return LX_OK;
    }
    lx_gemm_path path = choose_path(k, transA, M, N, K);
    if (path == LX_GEMM_PATH_BLAS && (!allow_blas || M > INT_MAX || N > INT_MAX || K > INT_MAX || lda > INT_MAX ||
                                      ldb > INT_MAX || ldc > INT_MAX))
        path = LX_GEMM_PATH_PACKED;
    if (path != LX_GEMM_PATH_SMALL)
        return gemm_large(k, path, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pl, nthreads);
    gemm_small_par(&k->gemm, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pl, nthreads);
    return LX_OK;
}

static __attribute__((noinline, cold)) lx_status check_args_full(const char *op, bool transA, bool transB, int64_t M,
                                                                 int64_t N, int64_t K, float alpha, const float *A,
                                                                 int64_t lda, const float *B, int64_t ldb,
                                                                 const float *C, int64_t ldc) {
    if (M < 0 || N < 0 || K < 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: negative size M=%lld N=%lld K=%lld", op, (long long)M,
                       (long long)N, (long long)K);
    /* A leading dimension steps over one stored row: it may not be smaller than that row (a row
     * of 0 floats takes any ld >= 0; such an operand is never read). */
    int64_t acols = transA ? M : K, bcols = transB ? K : N;
    const int64_t ld[3] = {lda, ldb, ldc}, row[3] = {acols, bcols, N};
    for (int i = 0; i < 3; i++)
        if (ld[i] < row[i])
            return lx_fail(LX_ERR_INVALID_ARGUMENT,
                           "%s: leading dimension ld%c=%lld is smaller than a row of %c (%lld floats; M=%lld N=%lld "
                           "K=%lld, transA %d transB %d)",
                           op, "abc"[i], (long long)ld[i], "ABC"[i], (long long)row[i], (long long)M, (long long)N,
                           (long long)K, (int)transA, (int)transB);
    if (M == 0 || N == 0) return LX_OK;
    const bool product = K > 0 && alpha != 0.0f; /* A and B are read */
    const char null = !C ? 'C' : product && !A ? 'A' : product && !B ? 'B' : 0;
    if (null)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: NULL buffer %c (M=%lld N=%lld K=%lld)", op, null, (long long)M,
                       (long long)N, (long long)K);
    /* sizes below 2^21 cannot overflow (M*N*K < 2^63): no divisions (two 64-bit idivs, ~30
     * cycles each on Zen 1, were a quarter of a 1x1x1 call) */
    if ((M | N | K) >= SIZE_NO_OVERFLOW && M > INT64_MAX / (N > 0 ? N : 1) / (K > 0 ? K : 1))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: M*N*K overflows 64 bits", op);
    return LX_OK;
}

/* The arguments' checks (check_args_full). Inline: arguments that pass them all with sizes below
 * 2^21 are accepted by a few comparisons, anything else (an error, a huge size) goes through
 * check_args_full, which names what is wrong. */
static inline __attribute__((always_inline)) lx_status check_args(const char *op, bool transA, bool transB, int64_t M,
                                                                  int64_t N, int64_t K, float alpha, const float *A,
                                                                  int64_t lda, const float *B, int64_t ldb,
                                                                  const float *C, int64_t ldc) {
    if ((uint64_t)(M | N | K) < SIZE_NO_OVERFLOW && lda >= (transA ? M : K) && ldb >= (transB ? K : N) && ldc >= N &&
        (M == 0 || N == 0 || (C && (K == 0 || alpha == 0.0f || (A && B)))))
        return LX_OK;
    return check_args_full(op, transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc);
}

void lx_sgemm_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                     int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    /* Never OpenBLAS here (callers run inside parallel loops); a packed-path allocation failure
     * falls back to the small path, which needs no memory. */
    if (gemm_run(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, 1, false) != LX_OK)
        gemm_small(&lx_kernels_active()->gemm, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

bool lx_sgemm_is_small(int64_t M, int64_t N, int64_t K) {
    int64_t lim = atomic_load(&small_limit);
    if (M == 0 || N == 0 || K == 0) return true;
    if (M < 0 || N < 0 || K < 0) return false; /* not a size (callers validate): no signed products */
    if ((M | N | K) < SIZE_NO_OVERFLOW) return M * N * K <= lim; /* the same test, no division */
    /* overflow-safe M*N*K <= lim */
    if (M > lim || N > lim || K > lim) return false;
    return M * N <= lim / K;
}

lx_status lx_sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    LX_TRY(check_args("sgemm", transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc));
    return gemm_run(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, 0, true);
}

lx_status lx_sgemm_ex(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                      const lx_gemm_epilogue *ep, int nthreads) {
    LX_TRY(check_args("sgemm", transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc));
    if (ep && ((unsigned)ep->act > LX_GEMM_ACT_SILU))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "sgemm: unknown epilogue activation %d", (int)ep->act);
    if (ep && ep->y && M > 0 && N > 0 && ep->ldy < N)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "sgemm: epilogue ldy=%lld is smaller than N=%lld", (long long)ep->ldy,
                       (long long)N);
    return gemm_run(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep,
                    nthreads > 0 ? nthreads : 0, true);
}

typedef struct sbatch_job {
    bool ta, tb;
    int64_t M, N, K;
    float alpha;
    const float *A;
    int64_t lda, sa;
    const float *B;
    int64_t ldb, sb;
    float beta;
    float *C;
    int64_t ldc, sc;
    const lx_gemm_epilogue *ep;
} sbatch_job;

/* The b-th matrix of a strided operand; NULL stays NULL (A and B may be when K = 0 or alpha = 0:
 * an offset applied to NULL is undefined behaviour) */
static const float *batch_ptr(const float *p, int64_t b, int64_t stride) { return p ? p + b * stride : NULL; }

/* products [lo, hi) of a strided batch, each on the calling thread */
static int sbatch_range(void *ctx, int64_t lo, int64_t hi) {
    const sbatch_job *j = ctx;
    for (int64_t b = lo; b < hi; b++)
        (void)gemm_run(j->ta, j->tb, j->M, j->N, j->K, j->alpha, batch_ptr(j->A, b, j->sa), j->lda,
                       batch_ptr(j->B, b, j->sb), j->ldb, j->beta, j->C + b * j->sc, j->ldc, j->ep, 1, false);
    return 0;
}

lx_status lx_sgemm_strided_batched(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                                   const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb,
                                   int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c,
                                   int64_t batch, const lx_gemm_epilogue *ep) {
    if (batch < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "sgemm_strided_batched: negative batch %lld", (long long)batch);
    LX_TRY(check_args("sgemm_strided_batched", transA, transB, M, N, K, alpha, A, lda, B, ldb, C, ldc));
    if (ep && (ep->y || (unsigned)ep->act > LX_GEMM_ACT_SILU))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "sgemm_strided_batched: an epilogue with y or an unknown activation");
    if (batch == 0 || M == 0 || N == 0) return LX_OK;
    if (stride_c < M * ldc && batch > 1)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "sgemm_strided_batched: stride_c=%lld overlaps C matrices of %lld x %lld (ldc %lld)",
                       (long long)stride_c, (long long)M, (long long)N, (long long)ldc);
    int nt = lx_num_threads();
    bool small = lx_sgemm_is_small(M, N, K);
    if (!small || nt == 1 || batch == 1) { /* big products: one after another, each threaded */
        for (int64_t b = 0; b < batch; b++)
            LX_TRY(gemm_run(transA, transB, M, N, K, alpha, batch_ptr(A, b, stride_a), lda, batch_ptr(B, b, stride_b), ldb,
                            beta, C + b * stride_c, ldc, ep, nt, true));
        return LX_OK;
    }
    /* many small products: spread over the team, each on the calling worker */
    double work = (double)batch * (double)M * (double)N * (double)K;
    nt = work > (1 << 18) ? nt : 1;
    sbatch_job j = {transA, transB, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, ep};
    lx_parallel_for(nt, batch, sbatch_range, &j);
    return LX_OK;
}

int64_t lx_sgemm_small_limit(void) { return atomic_load(&small_limit); }

void lx_sgemm_set_small_limit(int64_t limit) { atomic_store(&small_limit, limit < 0 ? DEFAULT_SMALL_LIMIT : limit); }

void lx_sgemm_force_path(lx_gemm_path path) { atomic_store(&forced_path, (int)path); }

const char *lx_sgemm_kernel(void) { return lx_kernels_active()->gemm_name; }

lx_status lx_sgemm_use_kernel(const char *name) {
    if (!name) return lx_isa_set(NULL);
    const char *isa = strcmp(name, "portable") == 0 ? "generic" : name;
    if (strcmp(isa, "generic") != 0 && strcmp(isa, "avx2") != 0 && strcmp(isa, "avx512") != 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "sgemm_use_kernel: unknown kernel '%s' (avx512, avx2, portable)", name);
    if (!lx_isa_supported(strcmp(isa, "generic") == 0 ? LX_ISA_GENERIC : strcmp(isa, "avx2") == 0 ? LX_ISA_AVX2 : LX_ISA_AVX512))
        return lx_fail(LX_ERR_UNSUPPORTED, "sgemm_use_kernel: kernel '%s' is not supported by this CPU or build", name);
    return lx_isa_set(isa);
}
