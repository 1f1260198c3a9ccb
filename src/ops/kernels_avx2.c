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

static const lx_kernels table = {
    .isa = LX_ISA_AVX2,
    .gemm_name = "avx2",
    .gemm = {.mr = TMPL_MR, .nr = TMPL_NR, .ukr = avx2_ukr, .pack_a = avx2_pack_a, .pack_b = avx2_pack_b,
             .small_panel = panel_avx2, .small_pack_bt = avx2_small_pack_bt},
    .softmax_row = avx2_softmax_row,
    .conv_direct_row = avx2_conv_direct_row,
};

const lx_kernels *lx_kernels_avx2(void) { return &table; }
#else
const lx_kernels *lx_kernels_avx2(void) { return 0; }
#endif
