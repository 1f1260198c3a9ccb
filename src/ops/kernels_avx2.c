/* The AVX2+FMA kernel set (compiled with -mavx2 -mfma; run only after cpuid says so). */
#include "kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define PORT_NAME(x) avx2_##x
#include "kernels_portable.h"

/* ---- small GEMM: 6 x 16 tiles (12 accumulators) straight from the caller's buffers, masked edges ---- */
#define A2_MR 6
static inline __m256i mask8(int n) { /* lanes [0, n) set, n clamped to 0..8 */
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __attribute__((always_inline)) void tile_avx2_t(const int mr, int nr, int64_t kc,
        const float *A, int64_t ars, int64_t acs, const float *B, int64_t ldb, float alpha,
        float beta, bool first, float *C, int64_t ldc) {
    __m256 c0[A2_MR], c1[A2_MR];
    for (int r = 0; r < mr; r++) c0[r] = c1[r] = _mm256_setzero_ps();
    __m256i m0 = mask8(nr), m1 = mask8(nr - 8);
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_maskload_ps(B + k * ldb, m0);
        __m256 b1 = _mm256_maskload_ps(B + k * ldb + 8, m1);
        for (int r = 0; r < mr; r++) {
            __m256 a = _mm256_broadcast_ss(A + r * ars + k * acs);
            c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int r = 0; r < mr; r++) {
        float *c = C + r * ldc;
        __m256 v0 = _mm256_mul_ps(va, c0[r]), v1 = _mm256_mul_ps(va, c1[r]);
        if (!first) {
            v0 = _mm256_add_ps(v0, _mm256_maskload_ps(c, m0));
            v1 = _mm256_add_ps(v1, _mm256_maskload_ps(c + 8, m1));
        } else if (beta != 0.0f) {
            v0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c, m0), v0);
            v1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c + 8, m1), v1);
        }
        _mm256_maskstore_ps(c, m0, v0);
        _mm256_maskstore_ps(c + 8, m1, v1);
    }
}
static void tile_avx2(int mr, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                      const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                      int64_t ldc) {
    for (int j0 = 0; j0 < nr; j0 += 16) {
        int nj = nr - j0 < 16 ? nr - j0 : 16;
#define A2_CASE(m) case m: tile_avx2_t(m, nj, kc, A, ars, acs, B + j0, ldb, alpha, beta, first, C + j0, ldc); break;
        switch (mr) { A2_CASE(1) A2_CASE(2) A2_CASE(3) A2_CASE(4) A2_CASE(5) A2_CASE(6) }
#undef A2_CASE
    }
}
static void panel_avx2(int64_t M, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                       const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                       int64_t ldc) {
    for (int64_t i0 = 0; i0 < M; i0 += A2_MR)
        tile_avx2((int)(M - i0 < A2_MR ? M - i0 : A2_MR), nr, kc, A + i0 * ars, ars, acs, B, ldb, alpha,
                  beta, first, C + i0 * ldc, ldc);
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
#include "gemm_tmpl.h"

/* out[k] = (in[0][k], ..., in[7][k]): an 8 x 8 transpose in registers. */
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
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
            for (int i = 0; i < TMPL_MR; i++) r[i] = _mm256_loadu_ps(a + i * ars + k0);
            r[6] = r[7] = _mm256_setzero_ps();
            transpose8(r);
            for (int k = 0; k < 8; k++) _mm256_storeu_ps(Ap + (k0 + k) * TMPL_MR, r[k]);
        }
        for (; k0 < kc; k0++)
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
            for (int h = 0; h < 2; h++) {
                __m256 r[8];
                for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(b + (h * 8 + j) * bcs + k0);
                transpose8(r);
                for (int k = 0; k < 8; k++) _mm256_store_ps(Bp + (k0 + k) * TMPL_NR + h * 8, r[k]);
            }
        for (; k0 < kc; k0++)
            for (int j = 0; j < TMPL_NR; j++) Bp[k0 * TMPL_NR + j] = b[j * bcs + k0];
    }
    if (full < nc) avx2_pack_b(kc, nc - full, B + full * bcs, brs, bcs, Bp);
}

static const lx_kernels table = {
    .isa = LX_ISA_AVX2,
    .gemm_name = "avx2",
    .gemm = {.mr = TMPL_MR, .nr = TMPL_NR, .ukr = avx2_ukr, .pack_a = avx2_pack_a_fast, .pack_b = avx2_pack_b_fast,
             .small_panel = panel_avx2, .small_pack_bt = avx2_small_pack_bt},
    .softmax_row = avx2_softmax_row,
    .norm_row = avx2_norm_row,
    .conv_direct_row = avx2_conv_direct_row,
};

const lx_kernels *lx_kernels_avx2(void) { return &table; }
#else
const lx_kernels *lx_kernels_avx2(void) { return 0; }
#endif
