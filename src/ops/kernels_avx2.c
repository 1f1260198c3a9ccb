/* The AVX2+FMA kernel set (compiled with -mavx2 -mfma; run only after cpuid says so). */
#include "kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include "vmath.h"

#define PORT_NAME(x) avx2_##x
#include "kernels_portable.h"
#include "avx2_edge.h"

/* ---- small GEMM: 6 x 16 tiles (12 accumulators) straight from the caller's buffers, ragged edges by plain loads and stores ---- */
#define A2_MR 6
static inline __m256i mask8(int n) { /* lanes [0, n) set, n clamped to 0..8 */
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* Lanes [0, n) of v stored to c by plain stores (n clamped to 0..8): a masked store is
 * microcoded on AMD (~10x a plain store on Zen 3; Zen 1, a store of 1-7 lanes in a loop: ~7 ns
 * masked, ~3.5 so), and it was a tenth of a 1x1x1 sgemm call. */
static inline __attribute__((always_inline)) void store_n(float *c, __m256 v, int n) {
    if (n >= 8) {
        _mm256_storeu_ps(c, v);
        return;
    }
    __m128 x = _mm256_castps256_ps128(v);
    if (n >= 4) {
        _mm_storeu_ps(c, x);
        x = _mm256_extractf128_ps(v, 1);
        c += 4, n -= 4;
    }
    if (n >= 2) {
        _mm_storel_pi((__m64 *)c, x);
        x = _mm_movehl_ps(x, x);
        c += 2, n -= 2;
    }
    if (n >= 1) _mm_store_ss(c, x);
}
/* load_n (plain loads at the edge): avx2_edge.h */
/* B is read with plain loads (the driver zero-pads a ragged panel to 16 columns); C is read and
 * written with plain loads and stores, by load_n and store_n at a ragged edge. */
static inline __attribute__((always_inline)) void tile_avx2_t(const int mr, const bool full, int nr, int64_t kc,
        const float *A, int64_t ars, int64_t acs, const float *B, int64_t ldb, float alpha,
        float beta, bool first, float *C, int64_t ldc) {
    __m256 c0[A2_MR], c1[A2_MR];
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) c0[r] = c1[r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(B + k * ldb);
        __m256 b1 = _mm256_loadu_ps(B + k * ldb + 8);
    #pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
            __m256 a = _mm256_broadcast_ss(A + r * ars + k * acs);
            c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        float *c = C + r * ldc;
        __m256 v0 = _mm256_mul_ps(va, c0[r]), v1 = _mm256_mul_ps(va, c1[r]);
        if (!first || beta != 0.0f) {
            __m256 o0 = full ? _mm256_loadu_ps(c) : load_n(c, nr);
            __m256 o1 = full ? _mm256_loadu_ps(c + 8) : load_n(c + 8, nr - 8);
            if (!first) {
                v0 = _mm256_add_ps(v0, o0);
                v1 = _mm256_add_ps(v1, o1);
            } else {
                v0 = _mm256_fmadd_ps(vb, o0, v0);
                v1 = _mm256_fmadd_ps(vb, o1, v1);
            }
        }
        if (full) {
            _mm256_storeu_ps(c, v0);
            _mm256_storeu_ps(c + 8, v1);
        } else {
            store_n(c, v0, nr);
            store_n(c + 8, v1, nr - 8);
        }
    }
}
static void tile_avx2(int mr, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                      const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                      int64_t ldc) {
    for (int j0 = 0; j0 < nr; j0 += 16) {
        int nj = nr - j0 < 16 ? nr - j0 : 16;
#define A2_CASE(m, f) case m: tile_avx2_t(m, f, nj, kc, A, ars, acs, B + j0, ldb, alpha, beta, first, C + j0, ldc); break;
        if (nj == 16) {
            switch (mr) { A2_CASE(1, true) A2_CASE(2, true) A2_CASE(3, true) A2_CASE(4, true) A2_CASE(5, true) A2_CASE(6, true) }
        } else {
            switch (mr) { A2_CASE(1, false) A2_CASE(2, false) A2_CASE(3, false) A2_CASE(4, false) A2_CASE(5, false) A2_CASE(6, false) }
        }
#undef A2_CASE
    }
}
/* One row (batch 1): the whole panel, up to 8 vectors, as independent FMA chains (a 16-wide tile
 * would be one 2-chain dependency per k: latency-bound). Same per-element sums as the tiles. */
static inline __attribute__((always_inline)) void row_avx2_t(const int nv, int nr, int64_t kc, const float *A,
        int64_t acs, const float *B, int64_t ldb, float alpha, float beta, bool first, float *C) {
    __m256 acc[8];
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) acc[v] = _mm256_setzero_ps();
    if (nr % 8 == 0 && nr >= 8 * nv) {
        for (int64_t k = 0; k < kc; k++) {
            __m256 a = _mm256_broadcast_ss(A + k * acs);
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++) acc[v] = _mm256_fmadd_ps(a, _mm256_loadu_ps(B + k * ldb + 8 * v), acc[v]);
        }
    } else { /* ragged: B is read only in columns [0, nr) (load_n reads nt of the last vector's
              * lanes); vectors past nr stay zero and are never stored */
        const int nfull = nr / 8, nt = nr - 8 * nfull;
        for (int64_t k = 0; k < kc; k++) {
            __m256 a = _mm256_broadcast_ss(A + k * acs);
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++) {
                if (v < nfull) acc[v] = _mm256_fmadd_ps(a, _mm256_loadu_ps(B + k * ldb + 8 * v), acc[v]);
                else if (v == nfull && nr > 8 * nfull)
                    acc[v] = _mm256_fmadd_ps(a, load_n(B + k * ldb + 8 * v, nt), acc[v]);
            }
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) {
        int left = nr - 8 * v;
        if (left <= 0) continue;
        __m256 x = _mm256_mul_ps(va, acc[v]);
        float *c = C + 8 * v;
        if (left >= 8) {
            if (!first) x = _mm256_add_ps(x, _mm256_loadu_ps(c));
            else if (beta != 0.0f) x = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), x);
            _mm256_storeu_ps(c, x);
        } else {
            if (!first) x = _mm256_add_ps(x, load_n(c, left));
            else if (beta != 0.0f) x = _mm256_fmadd_ps(vb, load_n(c, left), x);
            store_n(c, x, left);
        }
    }
}

/* panel_avx2 with M == 1; B is read only in columns [0, nr) (small_row_exact) */
static __attribute__((noipa)) void row_avx2(int64_t M, int nr, int64_t kc, const float *A, int64_t ars,
                                            int64_t acs, const float *B, int64_t ldb, float alpha, float beta,
                                            bool first, float *C, int64_t ldc) {
    switch ((nr + 15) / 16) {
    case 1: row_avx2_t(2, nr, kc, A, acs, B, ldb, alpha, beta, first, C); break;
    case 2: row_avx2_t(4, nr, kc, A, acs, B, ldb, alpha, beta, first, C); break;
    case 3: row_avx2_t(6, nr, kc, A, acs, B, ldb, alpha, beta, first, C); break;
    default: row_avx2_t(8, nr, kc, A, acs, B, ldb, alpha, beta, first, C); break;
    }
}

/* panel_avx2 with M > 1: 6-row tiles */
static __attribute__((noipa)) void tiles_avx2(int64_t M, int nr, int64_t kc, const float *A, int64_t ars,
                                              int64_t acs, const float *B, int64_t ldb, float alpha, float beta,
                                              bool first, float *C, int64_t ldc) {
    for (int64_t i0 = 0; i0 < M; i0 += A2_MR)
        tile_avx2((int)(M - i0 < A2_MR ? M - i0 : A2_MR), nr, kc, A + i0 * ars, ars, acs, B, ldb, alpha,
                  beta, first, C + i0 * ldc, ldc);
}

/* Two functions with panel_avx2's own arguments, so that it jumps to either: with both inside it a
 * batch-1 call paid the tiles' prologue and spills (a 1x1x1 sgemm: 106 instructions in panel_avx2;
 * noipa keeps GCC from specialising them, which would turn the jumps into calls) */
static void panel_avx2(int64_t M, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                       const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                       int64_t ldc) {
    if (M == 1)
        row_avx2(M, nr, kc, A, ars, acs, B, ldb, alpha, beta, first, C, ldc);
    else
        tiles_avx2(M, nr, kc, A, ars, acs, B, ldb, alpha, beta, first, C, ldc);
}

/* ---- packed GEMM: 6 x 16 tiles, 12 accumulators + 2 B vectors + 1 broadcast of 16 registers ---- */
#define V __m256
#define VL 8
#define VZERO() _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VLOAD(p) _mm256_load_ps(p)
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREU(p, v) _mm256_storeu_ps((p), (v))
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm256_mul_ps((a), (b))
#define TMPL_MR 6
#define TMPL_NR 16
#define TMPL_NAME(x) avx2_##x
#define TMPL_CUSTOM_UKR
#include "gemm_tmpl.h"

/* The packed 6 x 16 micro-kernel, its k loop in assembly: GCC's code for the template loop (one k
 * per iteration) ran at ~0.65 of the register-only FMA peak on Zen 3 even with both slivers in
 * L1; four k per iteration with the loads of a step issued ahead of its FMAs, and the A sliver
 * prefetched 16 steps ahead (it streams from L2), ran at ~0.8. Register use: 12 accumulators, two
 * B vectors, one broadcast. The k order and one FMA per product are the template's, so results
 * are the same bits. */
#define A2_STEP(u) \
    "vmovaps 64*" #u "(%[b]), %[b0]\n\t" \
    "vmovaps 64*" #u "+32(%[b]), %[b1]\n\t" \
    "vbroadcastss 24*" #u "+0(%[a]), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c00]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c01]\n\t" \
    "vbroadcastss 24*" #u "+4(%[a]), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c10]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c11]\n\t" \
    "vbroadcastss 24*" #u "+8(%[a]), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c20]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c21]\n\t" \
    "vbroadcastss 24*" #u "+12(%[a]), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c30]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c31]\n\t" \
    "vbroadcastss 24*" #u "+16(%[a]), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c40]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c41]\n\t" \
    "vbroadcastss 24*" #u "+20(%[a]), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c50]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c51]\n\t"

/* the 12 accumulators cleared (both micro-kernels' asm starts with it) */
#define A2_ZERO \
    "vxorps %[c00], %[c00], %[c00]\n\t" "vxorps %[c01], %[c01], %[c01]\n\t" \
    "vxorps %[c10], %[c10], %[c10]\n\t" "vxorps %[c11], %[c11], %[c11]\n\t" \
    "vxorps %[c20], %[c20], %[c20]\n\t" "vxorps %[c21], %[c21], %[c21]\n\t" \
    "vxorps %[c30], %[c30], %[c30]\n\t" "vxorps %[c31], %[c31], %[c31]\n\t" \
    "vxorps %[c40], %[c40], %[c40]\n\t" "vxorps %[c41], %[c41], %[c41]\n\t" \
    "vxorps %[c50], %[c50], %[c50]\n\t" "vxorps %[c51], %[c51], %[c51]\n\t"

static inline __attribute__((always_inline)) void avx2_ukr_store(__m256 c[6][2], float *restrict C, int64_t ldc,
                                                                 float alpha, float beta);

static void avx2_ukr(int64_t kc, const float *restrict Ap, const float *restrict Bp, float *restrict C, int64_t ldc,
                     float alpha, float beta) {
    __m256 c[6][2], b0, b1, t;
    int64_t n4 = kc / 4, n1 = kc % 4;
    for (int i = 0; i < 6; i++) _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
    __asm__ volatile(
        A2_ZERO
        "test %[n4], %[n4]\n\t"
        "jz 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        "prefetcht0 384(%[a])\n\t"
        A2_STEP(0) A2_STEP(1) A2_STEP(2) A2_STEP(3)
        "add $96, %[a]\n\t"
        "add $256, %[b]\n\t"
        "dec %[n4]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        "test %[n1], %[n1]\n\t"
        "jz 4f\n"
        "3:\n\t"
        A2_STEP(0)
        "add $24, %[a]\n\t"
        "add $64, %[b]\n\t"
        "dec %[n1]\n\t"
        "jnz 3b\n"
        "4:\n"
        : [a] "+r"(Ap), [b] "+r"(Bp), [n4] "+r"(n4), [n1] "+r"(n1), [c00] "=&x"(c[0][0]), [c01] "=&x"(c[0][1]),
          [c10] "=&x"(c[1][0]), [c11] "=&x"(c[1][1]), [c20] "=&x"(c[2][0]), [c21] "=&x"(c[2][1]),
          [c30] "=&x"(c[3][0]), [c31] "=&x"(c[3][1]), [c40] "=&x"(c[4][0]), [c41] "=&x"(c[4][1]),
          [c50] "=&x"(c[5][0]), [c51] "=&x"(c[5][1]), [b0] "=&x"(b0), [b1] "=&x"(b1), [t] "=&x"(t)
        :
        : "memory", "cc");
    avx2_ukr_store(c, C, ldc, alpha, beta);
}

/* C[0:6, 0:16] = alpha * c + beta * C; beta == 0 never reads C. */
static inline __attribute__((always_inline)) void avx2_ukr_store(__m256 c[6][2], float *restrict C, int64_t ldc,
                                                                 float alpha, float beta) {
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (beta == 0.0f) {
        for (int i = 0; i < 6; i++) {
            _mm256_storeu_ps(C + i * ldc, _mm256_mul_ps(va, c[i][0]));
            _mm256_storeu_ps(C + i * ldc + 8, _mm256_mul_ps(va, c[i][1]));
        }
    } else if (beta == 1.0f) {
        for (int i = 0; i < 6; i++) {
            _mm256_storeu_ps(C + i * ldc, _mm256_fmadd_ps(va, c[i][0], _mm256_loadu_ps(C + i * ldc)));
            _mm256_storeu_ps(C + i * ldc + 8, _mm256_fmadd_ps(va, c[i][1], _mm256_loadu_ps(C + i * ldc + 8)));
        }
    } else {
        for (int i = 0; i < 6; i++) {
            _mm256_storeu_ps(C + i * ldc, _mm256_fmadd_ps(vb, _mm256_loadu_ps(C + i * ldc), _mm256_mul_ps(va, c[i][0])));
            _mm256_storeu_ps(C + i * ldc + 8,
                             _mm256_fmadd_ps(vb, _mm256_loadu_ps(C + i * ldc + 8), _mm256_mul_ps(va, c[i][1])));
        }
    }
}
/* The same k step with A unpacked: rows 0-2 at a, a + lda, a + 2 lda and rows 3-5 at a3 = a + 3 lda
 * (x86 scales an index by at most 8), both advancing 4 bytes per step. */
#define A2_STEP_UA(u) \
    "vmovaps 64*" #u "(%[b]), %[b0]\n\t" \
    "vmovaps 64*" #u "+32(%[b]), %[b1]\n\t" \
    "vbroadcastss 4*" #u "(%[a]), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c00]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c01]\n\t" \
    "vbroadcastss 4*" #u "(%[a],%[l],1), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c10]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c11]\n\t" \
    "vbroadcastss 4*" #u "(%[a],%[l],2), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c20]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c21]\n\t" \
    "vbroadcastss 4*" #u "(%[a3]), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c30]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c31]\n\t" \
    "vbroadcastss 4*" #u "(%[a3],%[l],1), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c40]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c41]\n\t" \
    "vbroadcastss 4*" #u "(%[a3],%[l],2), %[t]\n\t" \
    "vfmadd231ps %[b0], %[t], %[c50]\n\t" \
    "vfmadd231ps %[b1], %[t], %[c51]\n\t"

/* avx2_ukr with A read in place: A(i, k) = A[i*lda + k] for the 6 rows (all exist). */
static void avx2_ukr_ua(int64_t kc, const float *restrict A, int64_t lda, const float *restrict Bp, float *restrict C,
                        int64_t ldc, float alpha, float beta) {
    __m256 c[6][2], b0, b1, t;
    int64_t n4 = kc / 4, n1 = kc % 4, l = lda * (int64_t)sizeof(float);
    const float *a3 = A + 3 * lda;
    for (int i = 0; i < 6; i++) _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
    __asm__ volatile(
        A2_ZERO
        "test %[n4], %[n4]\n\t"
        "jz 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        A2_STEP_UA(0) A2_STEP_UA(1) A2_STEP_UA(2) A2_STEP_UA(3)
        "add $16, %[a]\n\t"
        "add $16, %[a3]\n\t"
        "add $256, %[b]\n\t"
        "dec %[n4]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        "test %[n1], %[n1]\n\t"
        "jz 4f\n"
        "3:\n\t"
        A2_STEP_UA(0)
        "add $4, %[a]\n\t"
        "add $4, %[a3]\n\t"
        "add $64, %[b]\n\t"
        "dec %[n1]\n\t"
        "jnz 3b\n"
        "4:\n"
        : [a] "+r"(A), [a3] "+r"(a3), [b] "+r"(Bp), [n4] "+r"(n4), [n1] "+r"(n1), [c00] "=&x"(c[0][0]),
          [c01] "=&x"(c[0][1]), [c10] "=&x"(c[1][0]), [c11] "=&x"(c[1][1]), [c20] "=&x"(c[2][0]),
          [c21] "=&x"(c[2][1]), [c30] "=&x"(c[3][0]), [c31] "=&x"(c[3][1]), [c40] "=&x"(c[4][0]),
          [c41] "=&x"(c[4][1]), [c50] "=&x"(c[5][0]), [c51] "=&x"(c[5][1]), [b0] "=&x"(b0), [b1] "=&x"(b1),
          [t] "=&x"(t)
        : [l] "r"(l)
        : "memory", "cc");
    avx2_ukr_store(c, C, ldc, alpha, beta);
}
#undef A2_STEP
#undef A2_STEP_UA
#undef A2_ZERO

/* An edge tile of the packed path: the last mr < 6 rows of a row block, all 16 columns (kernels.h
 * ukr_rows). The same FMA chains as avx2_ukr for the rows that exist (the sliver still holds 6
 * values per k, zeros past mr), and C written as gemm.c's tile buffer wrote such a tile:
 * v = alpha * acc, then C = v, C + v or v + beta * C. Before, the edge ran the whole 6-row kernel
 * into a buffer: a 128-row product (the MLP's batch) is 21 tiles and one of 2 rows, which cost a
 * full tile (12 FMAs per k for 4 useful); here 2 rows are 4 FMA chains (~5 cycles per k on Zen 1,
 * the FMA latency). */
static inline __attribute__((always_inline)) void ukr_rows_t(const int mr, int64_t kc, const float *restrict Ap,
                                                             const float *restrict Bp, float *restrict C, int64_t ldc,
                                                             float alpha, float beta) {
    __m256 c0[5], c1[5];
#pragma GCC unroll 5
    for (int i = 0; i < mr; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(Bp), b1 = _mm256_load_ps(Bp + 8);
#pragma GCC unroll 5
        for (int i = 0; i < mr; i++) {
            __m256 a = _mm256_broadcast_ss(Ap + i);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
        Ap += 6;
        Bp += 16;
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 5
    for (int i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        __m256 v0 = _mm256_mul_ps(va, c0[i]), v1 = _mm256_mul_ps(va, c1[i]);
        if (beta == 1.0f) {
            v0 = _mm256_add_ps(_mm256_loadu_ps(c), v0);
            v1 = _mm256_add_ps(_mm256_loadu_ps(c + 8), v1);
        } else if (beta != 0.0f) {
            v0 = _mm256_add_ps(v0, _mm256_mul_ps(vb, _mm256_loadu_ps(c)));
            v1 = _mm256_add_ps(v1, _mm256_mul_ps(vb, _mm256_loadu_ps(c + 8)));
        }
        _mm256_storeu_ps(c, v0);
        _mm256_storeu_ps(c + 8, v1);
    }
}
static void avx2_ukr_rows(int mr, int64_t kc, const float *restrict Ap, const float *restrict Bp, float *restrict C,
                          int64_t ldc, float alpha, float beta) {
    switch (mr) {
    case 1: ukr_rows_t(1, kc, Ap, Bp, C, ldc, alpha, beta); break;
    case 2: ukr_rows_t(2, kc, Ap, Bp, C, ldc, alpha, beta); break;
    case 3: ukr_rows_t(3, kc, Ap, Bp, C, ldc, alpha, beta); break;
    case 4: ukr_rows_t(4, kc, Ap, Bp, C, ldc, alpha, beta); break;
    default: ukr_rows_t(5, kc, Ap, Bp, C, ldc, alpha, beta); break;
    }
}

/* The GEMM epilogue's bias and ReLU on a finished C block (kernels.h epi), 8 lanes: what the
 * generic loops compute, element for element. relu is max(0, z) with 0 first: vmaxps returns its
 * second operand for a NaN or when both are zeros, so NaN and -0 pass as in z < 0 ? 0 : z.
 * Columns outside, rows inside: a 16-column strip's bias stays in two registers for every row
 * (a tile of the packed path is one strip: ~11 instructions a row). */
static inline __attribute__((always_inline)) __m256 avx2_epi_vec(const bool hasb, const bool relu, const bool toy,
                                                                 float *c, __m256 b, float *y) {
    __m256 z = _mm256_loadu_ps(c);
    if (hasb) z = _mm256_add_ps(z, b);
    if (toy) _mm256_storeu_ps(c, z);
    if (relu) z = _mm256_max_ps(_mm256_setzero_ps(), z);
    _mm256_storeu_ps(toy ? y : c, z);
    return z;
}
static inline __attribute__((always_inline)) void avx2_epi_t(const bool hasb, const bool relu, const bool toy,
                                                             float *C, int64_t ldc, int64_t m, int64_t n,
                                                             const float *bias, float *Y, int64_t ldy) {
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 b0 = hasb ? _mm256_loadu_ps(bias + j) : _mm256_setzero_ps();
        __m256 b1 = hasb ? _mm256_loadu_ps(bias + j + 8) : _mm256_setzero_ps();
        for (int64_t i = 0; i < m; i++) {
            float *c = C + i * ldc + j, *y = toy ? Y + i * ldy + j : NULL;
            avx2_epi_vec(hasb, relu, toy, c, b0, y);
            avx2_epi_vec(hasb, relu, toy, c + 8, b1, toy ? y + 8 : NULL);
        }
    }
    if (j + 8 <= n) {
        __m256 b0 = hasb ? _mm256_loadu_ps(bias + j) : _mm256_setzero_ps();
        for (int64_t i = 0; i < m; i++) avx2_epi_vec(hasb, relu, toy, C + i * ldc + j, b0, toy ? Y + i * ldy + j : NULL);
        j += 8;
    }
    if (j < n) /* under 8 columns: one scalar pass */
        for (int64_t i = 0; i < m; i++)
            for (int64_t q = j; q < n; q++) {
                float *c = C + i * ldc + q, z = hasb ? *c + bias[q] : *c;
                if (toy) *c = z;
                *(toy ? Y + i * ldy + q : c) = relu && z < 0.0f ? 0.0f : z;
            }
}
void lx_gemm_epi_avx2(float *C, int64_t ldc, int64_t m, int64_t n, const float *bias, bool relu, float *Y,
                          int64_t ldy) {
#define A2_EPI(b, r, t) avx2_epi_t(b, r, t, C, ldc, m, n, bias, Y, ldy)
    switch ((bias != NULL) + 2 * relu + 4 * (Y != NULL)) {
    case 1: A2_EPI(true, false, false); break;
    case 2: A2_EPI(false, true, false); break;
    case 3: A2_EPI(true, true, false); break;
    case 4: A2_EPI(false, false, true); break;
    case 5: A2_EPI(true, false, true); break;
    case 6: A2_EPI(false, true, true); break;
    case 7: A2_EPI(true, true, true); break;
    default: break;
    }
#undef A2_EPI
}

/* ---- softmax rows, 8 lanes ----
 * exp(d) for d = x - max <= 0 (or NaN) by a table of 2^(j/8) held in one register: n =
 * round(d 8 log2 e) by the 1.5 * 2^23 shifter inside one FMA (the sum's low bits hold n as an
 * integer, its low three bits j), r = d - n ln2 / 8 in two FMA steps (|r| <= ln2 / 16), q = r + r^2
 * (c2 + c3 r) (minimax for e^r - 1 there: relative error 2.6e-8), and e^d = 2^m 2^(j/8) (1 + q)
 * with m = n >> 3, the table value T = 2^(j/8) picked by `vpermps` with t's own bits as the index
 * (a permute of one register, no gather) and T + T q as one FMA. 1.14 ulp at most over [-104, 0]
 * (every float, against exp in double); seven FMA-pipe operations per vector where the degree-7
 * polynomial took ten. There is no overflow clamp (d <= 0). When every lane is >= -87 (results
 * normal) 2^m goes into T's exponent field before the FMA (T 2^m is normal, so the FMA's result
 * is 2^m times its result for T); else the slow variant applies 2^m as two halves to T + T q so
 * subnormal results keep their digits (one rounding), and lanes below -104 (-inf, masked logits)
 * are set to 0 without computing an underflow (an underflowing multiply costs a microcode assist
 * per lane). A NaN passes (the range compare is false for it, and T + T NaN is NaN). */
static inline __m256 sm_tab(void) { /* 2^(j/8) rounded to float */
    return _mm256_castsi256_ps(_mm256_setr_epi32(0x3f800000, 0x3f8b95c2, 0x3f9837f0, 0x3fa5fed7, 0x3fb504f3, 0x3fc5672a,
                                                 0x3fd744fd, 0x3feac0c7));
}
/* the same values with j << 20 taken off their bits: adding t's bits << 20 (= n << 20 = (m << 23)
 * + (j << 20), the shifter's own bits wrap to 0) then adds exactly m to the exponent */
static inline __m256i sm_tab_adj(void) {
    return _mm256_setr_epi32(0x3f800000, 0x3f8b95c2 - (1 << 20), 0x3f9837f0 - (2 << 20), 0x3fa5fed7 - (3 << 20),
                             0x3fb504f3 - (4 << 20), 0x3fc5672a - (5 << 20), 0x3fd744fd - (6 << 20), 0x3feac0c7 - (7 << 20));
}
#define SM_C2 0.500064492f
#define SM_C3 0.166668579f
/* the reduction and q(r) of d; *tout: the shifter sum t (its bits hold n) */
static inline __attribute__((always_inline)) __m256 sm_exp_q(__m256 xc, __m256 *tout) {
    const __m256 big = _mm256_set1_ps(12582912.0f);
    __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(11.5415603637695312f), big);
    __m256 n = _mm256_sub_ps(t, big);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f / 8), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f / 8), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(SM_C3), r, _mm256_set1_ps(SM_C2));
    *tout = t;
    return _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
}
/* every lane >= -87 (or NaN): T 2^m by an integer add, then T 2^m + T 2^m q */
static inline __attribute__((always_inline)) __m256 sm_exp8_fast(__m256 x) {
    __m256 t, q = sm_exp_q(x, &t);
    __m256i ti = _mm256_castps_si256(t);
    __m256 s = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_permutevar8x32_epi32(sm_tab_adj(), ti), _mm256_slli_epi32(ti, 20)));
    return _mm256_fmadd_ps(s, q, s);
}
/* any x <= 0: 2^m as two halves (subnormal results keep their digits), below -104 exactly 0 */
static inline __attribute__((always_inline)) __m256 sm_exp8_slow(__m256 x) {
    __m256 dead = _mm256_cmp_ps(x, _mm256_set1_ps(-104.0f), _CMP_LT_OQ);
    __m256 t, q = sm_exp_q(_mm256_blendv_ps(x, _mm256_setzero_ps(), dead), &t);
    __m256 tv = _mm256_permutevar8x32_ps(sm_tab(), _mm256_castps_si256(t));
    __m256 b = _mm256_fmadd_ps(tv, q, tv);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B400000)); /* n in [-1200, 0] */
    __m256i m = _mm256_srai_epi32(ni, 3), m1 = _mm256_srai_epi32(m, 1), m2 = _mm256_sub_epi32(m, m1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(m1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(m2, bias), 23));
    return _mm256_andnot_ps(dead, _mm256_mul_ps(_mm256_mul_ps(b, s1), s2));
}
static inline __m256 sm_low(__m256 x) { return _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ); }
static inline __m256 sm_exp8(__m256 x) {
    return __builtin_expect(_mm256_movemask_ps(sm_low(x)) != 0, 0) ? sm_exp8_slow(x) : sm_exp8_fast(x);
}

static inline float sm_hsum8(__m256 v) {
    float l[8];
    _mm256_storeu_ps(l, v);
    return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
}

/* The row's maximum (a NaN x is skipped, as the scalar comparison skips it); 0 for an all -inf
 * row, so x - max stays -inf there, not NaN. Four independent max chains. With the maximum the
 * row's minimum (NaN skipped too) in *mn: when mn - max >= -87 every x - max is (the float
 * subtraction is monotonic), so the exp pass needs no per-vector range test (sm_expsum). */
static inline __attribute__((always_inline)) float sm_rowmax_t(const float *x, int64_t n, float *mn, const bool wmin) {
    int64_t nv = n / 8 * 8, i = 0;
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    __m256 l0 = _mm256_set1_ps(INFINITY), l1 = l0;
    for (; i + 32 <= nv; i += 32) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        __m256 c = _mm256_loadu_ps(x + i + 16), d = _mm256_loadu_ps(x + i + 24);
        m0 = _mm256_max_ps(a, m0), m1 = _mm256_max_ps(b, m1), m2 = _mm256_max_ps(c, m2), m3 = _mm256_max_ps(d, m3);
        if (wmin) l0 = _mm256_min_ps(_mm256_min_ps(a, b), l0), l1 = _mm256_min_ps(_mm256_min_ps(c, d), l1);
    }
    for (; i < nv; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i);
        m0 = _mm256_max_ps(a, m0), l0 = _mm256_min_ps(a, l0);
    }
    m0 = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    l0 = _mm256_min_ps(l0, l1);
    float l[8], h[8], mx = -INFINITY, lo = INFINITY;
    _mm256_storeu_ps(l, m0), _mm256_storeu_ps(h, l0);
    for (int k = 0; k < 8; k++) mx = l[k] > mx ? l[k] : mx, lo = h[k] < lo ? h[k] : lo;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx, lo = x[i] < lo ? x[i] : lo;
    if (wmin) *mn = lo;
    return mx == -INFINITY ? 0.0f : mx;
}
static float sm_rowmax(const float *x, int64_t n, float *mn) { return sm_rowmax_t(x, n, mn, true); }
/* the maximum alone (the exp pass checks the minimum itself: sm_expsum_c's chunks); the minimum
 * took ~5% of a 4096-float softmax row */
static float sm_rowmax1(const float *x, int64_t n) { return sm_rowmax_t(x, n, NULL, false); }

/* exp of K <= 8 vectors whose lanes are all >= -87 (or NaN): sm_exp8_fast's operations, the K
 * vectors step by step (same operations, same bits). Each exp is a chain of dependent FMAs (5
 * cycles each on Zen 1): written one vector after the other, a chain's waiting FMAs filled the FP
 * scheduler and the chains hardly overlapped; interleaved, K FMAs are ready at every step. The row
 * runs K = 4: with this exp (seven FMA-pipe operations) eight in flight spilled more and ran ~6%
 * slower (same-process A/B on the Zen 1; the degree-7 exp was ~6% faster with eight). */
static inline __attribute__((always_inline)) void sm_expk_fast(__m256 *v, const int K) {
    const __m256 big = _mm256_set1_ps(12582912.0f);
    __m256 t[8], r[8], p[8];
#pragma GCC unroll 8
    for (int k = 0; k < K; k++) t[k] = _mm256_fmadd_ps(v[k], _mm256_set1_ps(11.5415603637695312f), big);
#pragma GCC unroll 8
    for (int k = 0; k < K; k++) r[k] = _mm256_fnmadd_ps(_mm256_sub_ps(t[k], big), _mm256_set1_ps(0.693359375f / 8), v[k]);
#pragma GCC unroll 8
    for (int k = 0; k < K; k++) r[k] = _mm256_fnmadd_ps(_mm256_sub_ps(t[k], big), _mm256_set1_ps(-2.12194440e-4f / 8), r[k]);
#pragma GCC unroll 8
    for (int k = 0; k < K; k++) {
        __m256i ti = _mm256_castps_si256(t[k]);
        v[k] = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_permutevar8x32_epi32(sm_tab_adj(), ti), _mm256_slli_epi32(ti, 20)));
    }
#pragma GCC unroll 8
    for (int k = 0; k < K; k++) p[k] = _mm256_fmadd_ps(_mm256_set1_ps(SM_C3), r[k], _mm256_set1_ps(SM_C2));
#pragma GCC unroll 8
    for (int k = 0; k < K; k++) p[k] = _mm256_fmadd_ps(p[k], _mm256_mul_ps(r[k], r[k]), r[k]);
#pragma GCC unroll 8
    for (int k = 0; k < K; k++) v[k] = _mm256_fmadd_ps(v[k], p[k], v[k]);
}

/* sum(exp(x - mx)) over the row; with e != NULL the exps are stored there, with d != NULL the
 * differences x - mx (either may be x; log_softmax stores d so that its output lines are fetched
 * while the exps compute). Each group of four vectors (from the row's start) sums as (e0 + e1) +
 * (e2 + e3) into one accumulator (four accumulators kept more registers live and spilled: ~2-3%
 * slower), so a row that only differs by trailing lanes of exp 0 (the
 * causal-prefix attention against an explicit mask) sums to the same bits. A ragged tail runs the
 * same vector exp on a copy padded with -inf (exp 0), so every element's exp is the same function
 * of its value wherever it sits in the row. w (may be NULL): the output row, whose successor is
 * prefetched for writing along with x's. */
static inline __attribute__((always_inline)) __m256 sm_one(const float *x, float *e, float *d, __m256 m) {
    __m256 dv = _mm256_sub_ps(_mm256_loadu_ps(x), m);
    if (d) _mm256_storeu_ps(d, dv);
    __m256 ev = sm_exp8(dv);
    if (e) _mm256_storeu_ps(e, ev);
    return ev;
}
/* Every lane of a group's four differences below -104 (masked logits, -inf; NaN is not): their
 * exps are sm_exp8_slow's +0 and add nothing to the sum (s + 0 = s), so the group stores zeros
 * and is done, where a run of -inf (a mask's tail or head) used to cost the slow exp per vector.
 * sm_groups asks only when each lane is below -87 in at least one of the four vectors; the last
 * vector is tested alone first. */
static inline bool sm_dead4(const __m256 *v) {
    const __m256 c = _mm256_set1_ps(-104.0f);
    if (_mm256_movemask_ps(_mm256_cmp_ps(v[3], c, _CMP_LT_OQ)) != 0xff) return false;
    __m256 d = _mm256_and_ps(_mm256_cmp_ps(v[0], c, _CMP_LT_OQ), _mm256_cmp_ps(v[1], c, _CMP_LT_OQ));
    return _mm256_movemask_ps(_mm256_and_ps(d, _mm256_cmp_ps(v[2], c, _CMP_LT_OQ))) == 0xff;
}
/* groups of four vectors from i to end (multiples of 32) added into s; fast: no range tests, and
 * the differences' minimum (NaN skipped) kept in *lo */
static inline __attribute__((always_inline)) __m256 sm_groups(const float *x, float *e, float *d, int64_t n, int64_t i,
                                                              int64_t end, __m256 m, __m256 s, float *w, __m256 *lo,
                                                              const bool fast) {
    /* A long row's successor (at x + n where rows are contiguous, as in nn.c; elsewhere the
     * prefetch is only wasted, and one past the array cannot fault) is fetched while this row's
     * exps compute, so the next max pass finds it in cache instead of waiting on memory alone
     * (1024 x 4096 rows: logsumexp ~0.50 -> ~0.40 ns per element). */
    const bool pf = n >= 1024;
    for (; i < end; i += 32) { /* four independent exps, one range test for all four */
        if (pf) { /* the address as an integer: x + n + i may lie past the array object */
            uintptr_t a = (uintptr_t)(x + i) + (uintptr_t)n * sizeof(float);
            _mm_prefetch((const char *)a, _MM_HINT_T0), _mm_prefetch((const char *)(a + 64), _MM_HINT_T0);
            if (w) { /* the output's next row, for writing: its stores then find their lines */
                uintptr_t b = (uintptr_t)(w + i) + (uintptr_t)n * sizeof(float);
                __builtin_prefetch((const void *)b, 1, 3), __builtin_prefetch((const void *)(b + 64), 1, 3);
            }
        }
        __m256 v[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8 * k), m);
            if (d) _mm256_storeu_ps(d + i + 8 * k, v[k]);
        }
        if (fast) { /* checked after the chunk (sm_expsum_c) */
            if (lo) *lo = _mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(_mm256_min_ps(v[2], v[3]), *lo));
            sm_expk_fast(v, 4);
        } else {
            __m256 lo = _mm256_or_ps(_mm256_or_ps(sm_low(v[0]), sm_low(v[1])), _mm256_or_ps(sm_low(v[2]), sm_low(v[3])));
            const int lm = _mm256_movemask_ps(lo);
            if (__builtin_expect(lm == 0xff, 0) && sm_dead4(v)) { /* written as its own exit: with the
                * zeros merged into the slow branch's results GCC spilled more there (rows with
                * scattered -inf 4-8% slower) */
                if (e)
#pragma GCC unroll 4
                    for (int k = 0; k < 4; k++) _mm256_storeu_ps(e + i + 8 * k, _mm256_setzero_ps());
                continue;
            }
            if (__builtin_expect(lm != 0, 0)) {
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) v[k] = sm_exp8_slow(v[k]);
            } else {
                sm_expk_fast(v, 4);
            }
        }
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            if (e) _mm256_storeu_ps(e + i + 8 * k, v[k]);
        s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3])));
    }
    return s;
}
/* sm_groups over the row's whole groups, then the tail. tested: every group range-tested
 * (sm_rowmax's minimum failed the test); chunked: chunks of 256 floats run
 * without tests, each followed by one test of its minimum: a chunk with a difference below -87
 * is discarded and the row goes on tested from its start (its outputs are rewritten with the
 * same or the right values: x is not among them). */
static inline __attribute__((always_inline)) float sm_expsum_c(const float *x, float *e, float *d, int64_t n, float mx,
                                                               float *w, const bool tested, const bool chunked) {
    int64_t nv = n / 8 * 8, n32 = nv / 32 * 32, i = 0;
    __m256 m = _mm256_set1_ps(mx), s = _mm256_setzero_ps();
    if (chunked) {
        while (i < n32) {
            int64_t end = i + 256 < n32 ? i + 256 : n32;
            __m256 lo = _mm256_set1_ps(INFINITY);
            __m256 s1 = sm_groups(x, e, d, n, i, end, m, s, w, &lo, true);
            if (__builtin_expect(_mm256_movemask_ps(sm_low(lo)) != 0, 0)) break;
            s = s1, i = end;
        }
        s = sm_groups(x, e, d, n, i, n32, m, s, w, NULL, false);
    } else {
        s = sm_groups(x, e, d, n, 0, n32, m, s, w, NULL, !tested);
    }
    i = n32;
    if (i == n) return sm_hsum8(s);
    /* i is a multiple of 32 here: the last 1-4 vectors (the ragged one padded) as one group, the
     * missing ones 0 (x + 0 = x for the exps' non-negative values: a padded row's bits) */
    __m256 g[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int k = 0;
    for (; i < nv; i += 8, k++) g[k] = sm_one(x + i, e ? e + i : NULL, d ? d + i : NULL, m);
    if (i < n) {
        float buf[8], eb[8], db[8];
        int64_t j = 0;
        for (; j < n - i; j++) buf[j] = x[i + j];
        for (; j < 8; j++) buf[j] = -INFINITY;
        g[k] = sm_one(buf, eb, db, m);
        for (j = 0; j < n - i; j++) {
            if (e) e[i + j] = eb[j];
            if (d) d[i + j] = db[j];
        }
    }
    return sm_hsum8(_mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(g[0], g[1]), _mm256_add_ps(g[2], g[3]))));
}
/* The row's loop without range tests when its minimum allows (lo: sm_rowmax's minimum). */
static inline __attribute__((always_inline)) float sm_expsum(const float *x, float *e, float *d, int64_t n, float mx, float lo,
                                                             float *w) {
    if (lo - mx >= -87.0f) return sm_expsum_c(x, e, d, n, mx, w, false, false);
    return sm_expsum_c(x, e, d, n, mx, w, true, false);
}
/* the max pass and the chunked exp pass; a function of its own: inlined beside the tested path it
 * made short rows with a -inf 6-10% slower (same-process A/B) */
static __attribute__((noinline)) float sm_chunked(const float *x, float *e, float *d, int64_t n, float *w, float *mxo) {
    float mx = sm_rowmax1(x, n);
    *mxo = mx;
    if (e) return sm_expsum_c(x, e, NULL, n, mx, w, false, true);
    if (d) return sm_expsum_c(x, NULL, d, n, mx, w, false, true);
    return sm_expsum_c(x, NULL, NULL, n, mx, w, false, true);
}
/* the max pass and the exp + sum pass: the row's minimum tested after each chunk of the exp pass
 * for rows of 4096 floats and more, unless an output (e or d) overlaps x (attention's rows are in
 * place), where a failed chunk could not be run again: else sm_rowmax's minimum decides, as
 * before. A row with a -inf (a mask) runs one chunk twice: on shorter rows that cost more than the
 * minimum saves (64-256 floats with a -inf tail: 1.5x the time; 4096: the same time) */
static inline __attribute__((always_inline)) float sm_maxexpsum(const float *x, float *e, float *d, int64_t n, float *w,
                                                                float *mxo) {
    const float *o = e ? e : d;
    if (n < 4096 || (o && (uintptr_t)o < (uintptr_t)(x + n) && (uintptr_t)x < (uintptr_t)(o + n))) {
        float lo, mx = sm_rowmax(x, n, &lo);
        *mxo = mx;
        return sm_expsum(x, e, d, n, mx, lo, w);
    }
    return sm_chunked(x, e, d, n, w, mxo);
}

/* softmax: max, then exp + sum with the exps stored in y (a 4096-float row stays in L1), then one
 * scale by the sum's reciprocal. log_softmax: max, then exp + sum storing x - max in y, then one
 * pass y - log(sum) over the L1-resident row. */
static void avx2_softmax_row_v(const float *x, float *y, int64_t n, bool log) {
    int64_t nv = n / 8 * 8;
    float mx;
    if (log) {
        float lse = logf(sm_maxexpsum(x, NULL, y, n, y, &mx));
        __m256 vl = _mm256_set1_ps(lse);
        for (int64_t i = 0; i < nv; i += 8) _mm256_storeu_ps(y + i, _mm256_sub_ps(_mm256_loadu_ps(y + i), vl));
        for (int64_t i = nv; i < n; i++) y[i] -= lse;
    } else {
        float inv = 1.0f / sm_maxexpsum(x, y, NULL, n, y, &mx);
        __m256 sc = _mm256_set1_ps(inv);
        for (int64_t i = 0; i < nv; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), sc));
        for (int64_t i = nv; i < n; i++) y[i] *= inv;
    }
}

/* ---- LayerNorm / RMSNorm with streaming stores (kernels.h's norm_row_stream) ----
 * One segment of n values sharing scale[0..n) / bias[0..n): plain stores up to y's first 32-byte
 * boundary and after its last, _mm256_stream_ps between. Every value is the portable norm_row's:
 * k = mul * scale, (x - m) * k, + bias, each rounded on its own (the build never contracts into
 * an FMA), in the scalar ends as in the vector body. */
static inline float nrs_value(float x, float m, float mul, const float *scale, const float *bias, int64_t i) {
    float k = scale ? mul * scale[i] : mul;
    float v = (x - m) * k;
    return bias ? v + bias[i] : v;
}
static void nrs_segment(const float *x, float *y, int64_t n, float m, float mul, const float *scale, const float *bias) {
    int64_t head = (int64_t)(((32 - ((uintptr_t)y & 31)) & 31) / sizeof(float)), i = 0;
    if ((uintptr_t)y & 3 || head > n) head = n; /* off 4 bytes (no aligned body at all) or too short */
    for (; i < head; i++) y[i] = nrs_value(x[i], m, mul, scale, bias, i);
    const __m256 vm = _mm256_set1_ps(m), vk = _mm256_set1_ps(mul);
    for (; i + 8 <= n; i += 8) {
        __m256 k = scale ? _mm256_mul_ps(vk, _mm256_loadu_ps(scale + i)) : vk;
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), k);
        if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + i));
        _mm256_stream_ps(y + i, v);
    }
    for (; i < n; i++) y[i] = nrs_value(x[i], m, mul, scale, bias, i);
}
static void avx2_norm_row_stream(const float *xr, float *yr, int64_t d, const float *scale, const float *bias, int64_t f,
                                 float eps, bool center, float *stats) {
    float m, mul;
    avx2_norm_row_stats(xr, d, eps, center, stats, &m, &mul);
    for (int64_t j0 = 0; j0 < d; j0 += f) nrs_segment(xr + j0, yr + j0, f, m, mul, scale, bias);
}

/* The integer-label cross-entropy's backward row (vmath.h's xent_vjp_row, run by vmath_avx2.c):
 * softmax_row's values, - 1 at the label, times g, as before, with the times-g pass fused into
 * the scale pass: (e (1 / sum)) g is the same two roundings. */
void lx_avx2_xent_vjp_row(const float *x, int32_t label, float g, float *dx, int64_t n) {
    int64_t nv = n / 8 * 8;
    float mx, inv = 1.0f / sm_maxexpsum(x, dx, NULL, n, dx, &mx);
    const float el = dx[label];
    const __m256 sc = _mm256_set1_ps(inv), vg = _mm256_set1_ps(g);
    for (int64_t i = 0; i < nv; i += 8) _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(dx + i), sc), vg));
    for (int64_t i = nv; i < n; i++) dx[i] = (dx[i] * inv) * g;
    dx[label] = (el * inv - 1.0f) * g;
}

/* max + log(sum(exp(x - max))): the softmax row's first two passes without the store (the row is
 * read twice, the second time from L1). */
static float avx2_logsumexp_row_v(const float *x, int64_t n) {
    float mx, sum = sm_maxexpsum(x, NULL, NULL, n, NULL, &mx);
    return mx + logf(sum);
}

/* ---- direct convolution rows: R positions x nv vectors of 8 channels, R * nv <= 12 ----
 * Taps in order, one FMA each (the im2col path's sums). Weights are zero-padded to 16 channels,
 * so loads are plain; a ragged last channel vector is stored by store_n's plain stores (a masked
 * store made a row with C_out 3 or 10 1.3-2.2x slower on Zen 1). */
static inline __attribute__((always_inline)) void direct_tile8(const int R, const int nv, const float *a, int64_t ars,
        const int64_t *koff, int64_t taps, const float *w, int64_t ldw, float *y, int64_t ldy, int nr) {
    __m256 c[12][2];
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) c[r][0] = c[r][1] = _mm256_setzero_ps();
    for (int64_t t = 0; t < taps; t++) {
        const float *at = a + koff[t], *wt = w + t * ldw;
        __m256 b0 = _mm256_loadu_ps(wt), b1 = nv > 1 ? _mm256_loadu_ps(wt + 8) : b0;
    #pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
            __m256 ar = _mm256_broadcast_ss(at + r * ars);
            c[r][0] = _mm256_fmadd_ps(ar, b0, c[r][0]);
            if (nv > 1) c[r][1] = _mm256_fmadd_ps(ar, b1, c[r][1]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++) {
            float *dst = y + r * ldy + 8 * v;
            if (nr - 8 * v >= 8) _mm256_storeu_ps(dst, c[r][v]);
            else store_n(dst, c[r][v], nr - 8 * v);
        }
}

static void avx2_conv_direct_row_v(const conv_direct_plan *p, const float *row, float *y) {
    const conv2d_direct *c = p->c;
    int64_t ars = c->sw * c->cin;
    for (int64_t co0 = 0; co0 < c->cout; co0 += 16) {
        int nr = (int)(c->cout - co0 < 16 ? c->cout - co0 : 16), nv = (nr + 7) / 8;
        int64_t rmax = nv == 2 ? 6 : 12, ntiles = (c->ow + rmax - 1) / rmax;
        for (int64_t tile = 0, ow0 = 0; tile < ntiles; tile++) { /* equal tiles: no short leftover */
            int R = (int)((c->ow - ow0) / (ntiles - tile) + ((c->ow - ow0) % (ntiles - tile) != 0));
            const float *a = row + ow0 * ars;
            const float *w = p->w + co0;
            float *yt = y + ow0 * c->cout + co0;
#define D2_CALL(r, v) direct_tile8(r, v, a, ars, p->koff, c->taps, w, p->cop, yt, c->cout, nr)
#define D2_UPTO6(v) case 1: D2_CALL(1, v); break; case 2: D2_CALL(2, v); break; case 3: D2_CALL(3, v); break; \
                    case 4: D2_CALL(4, v); break; case 5: D2_CALL(5, v); break; case 6: D2_CALL(6, v); break;
#define D2_UPTO12(v) D2_UPTO6(v) case 7: D2_CALL(7, v); break; case 8: D2_CALL(8, v); break; \
                     case 9: D2_CALL(9, v); break; case 10: D2_CALL(10, v); break; case 11: D2_CALL(11, v); break; \
                     case 12: D2_CALL(12, v); break;
            if (nv == 2) {
                switch (R) { D2_UPTO6(2) }
            } else {
                switch (R) { D2_UPTO12(1) }
            }
#undef D2_CALL
#undef D2_UPTO6
#undef D2_UPTO12
            ow0 += R;
        }
    }
}

/* out[k] = (in[0][k], ..., in[7][k]): an 8 x 8 transpose in registers. Every loop here is
 * unrolled: GCC -O2 otherwise kept the arrays on the stack (packing ran at ~0.5 values per cycle). */
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    #pragma GCC unroll 8
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* Packing A with rows contiguous in k (A not transposed): 6 rows x 8 k values per transpose,
 * each k's 6 values stored as 8 (the 2 extra are overwritten by the next store; the packing
 * buffer has slack for the last). Other layouts: the template's loops. */
static void avx2_pack_a_fast(int64_t mc, int64_t kc, const float *restrict A, int64_t ars, int64_t acs,
                             float *restrict Ap) {
    if (ars == 1) { /* A transposed: each k's 6 values are contiguous (4 + 2, never past row 6) */
        /* Eight slivers (48 contiguous values of each k) at a time, k outermost: a k's cache lines
         * are read once for all of them instead of once per sliver (strided by lda, they do not
         * stay in L1 between slivers). */
        int64_t full = mc / TMPL_MR * TMPL_MR;
        for (int64_t i0 = 0; i0 < full; i0 += 8 * TMPL_MR) {
            int ns = (int)((full - i0) / TMPL_MR < 8 ? (full - i0) / TMPL_MR : 8);
            const float *a = A + i0;
            float *ap = Ap + i0 * kc;
            for (int64_t k = 0; k < kc; k++)
                for (int q = 0; q < ns; q++) {
                    const float *src = a + k * acs + q * TMPL_MR;
                    float *dst = ap + q * TMPL_MR * kc + k * TMPL_MR;
                    _mm_storeu_ps(dst, _mm_loadu_ps(src));
                    _mm_storel_pi((__m64 *)(dst + 4), _mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)(src + 4)));
                }
        }
        if (full < mc) avx2_pack_a(mc - full, kc, A + full, ars, acs, Ap + full * kc);
        return;
    }
    if (acs != 1 || kc < 8) {
        avx2_pack_a(mc, kc, A, ars, acs, Ap);
        return;
    }
    int64_t full = mc / TMPL_MR * TMPL_MR;
    for (int64_t i0 = 0; i0 < full; i0 += TMPL_MR, Ap += TMPL_MR * kc) {
        const float *a = A + i0 * ars;
        int64_t k0 = 0;
        for (; k0 + 8 <= kc; k0 += 8) {
            __m256 r[8];
            #pragma GCC unroll 8
            for (int i = 0; i < TMPL_MR; i++) r[i] = _mm256_loadu_ps(a + i * ars + k0);
            r[6] = r[7] = _mm256_setzero_ps();
            transpose8(r);
            #pragma GCC unroll 8
            for (int k = 0; k < 8; k++) _mm256_storeu_ps(Ap + (k0 + k) * TMPL_MR, r[k]);
        }
        for (; k0 < kc; k0++)
            #pragma GCC unroll 8
            for (int i = 0; i < TMPL_MR; i++) Ap[k0 * TMPL_MR + i] = a[i * ars + k0];
    }
    if (full < mc) avx2_pack_a(mc - full, kc, A + full * ars, ars, acs, Ap);
}

/* Packing B^T (columns contiguous in k): two 8 x 8 transposes per 8 k values per sliver. */
static void avx2_pack_b_fast(int64_t kc, int64_t nc, const float *restrict B, int64_t brs, int64_t bcs,
                             float *restrict Bp) {
    if (brs != 1 || kc < 8) {
        avx2_pack_b(kc, nc, B, brs, bcs, Bp);
        return;
    }
    int64_t full = nc / TMPL_NR * TMPL_NR;
    for (int64_t j0 = 0; j0 < full; j0 += TMPL_NR, Bp += TMPL_NR * kc) {
        const float *b = B + j0 * bcs;
        int64_t k0 = 0;
        for (; k0 + 8 <= kc; k0 += 8)
            #pragma GCC unroll 8
            for (int h = 0; h < 2; h++) {
                __m256 r[8];
                #pragma GCC unroll 8
                for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(b + (h * 8 + j) * bcs + k0);
                transpose8(r);
                #pragma GCC unroll 8
                for (int k = 0; k < 8; k++) _mm256_store_ps(Bp + (k0 + k) * TMPL_NR + h * 8, r[k]);
            }
        for (; k0 < kc; k0++)
            #pragma GCC unroll 8
            for (int j = 0; j < TMPL_NR; j++) Bp[k0 * TMPL_NR + j] = b[j * bcs + k0];
    }
    if (full < nc) avx2_pack_b(kc, nc - full, B + full * bcs, brs, bcs, Bp);
}

static const lx_kernels table = {
    .isa = LX_ISA_AVX2,
    .gemm_name = "avx2",
    .gemm = {.mr = TMPL_MR, .nr = TMPL_NR, .ukr = avx2_ukr, .pack_a = avx2_pack_a_fast, .pack_b = avx2_pack_b_fast,
             .small_panel = panel_avx2, .small_pack_bt = avx2_small_pack_bt, .small_row_exact = true,
             .ukr_ua = avx2_ukr_ua, .ukr_rows = avx2_ukr_rows, .epi = lx_gemm_epi_avx2},
    .softmax_row = avx2_softmax_row_v,
    .logsumexp_row = avx2_logsumexp_row_v,
    .norm_row = avx2_norm_row,
    .norm_row_stream = avx2_norm_row_stream,
    .conv_direct_row = avx2_conv_direct_row_v,
};

const lx_kernels *lx_kernels_avx2(void) { return &table; }
#else
const lx_kernels *lx_kernels_avx2(void) { return 0; }
#endif
