/* AVX-512 float sum kernels of the reductions (reduce_kernels.h: the order every set shares).
 * Floats widen to double (vcvtps2pd) and add in zmm accumulators: sum_cols keeps up to 8 column
 * vectors (64 columns) in registers while it walks the rows, sum_row four vectors (32 lanes), so
 * enough independent add chains cover the add latency and the loop runs at the read bandwidth. */
#include "reduce_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#include <immintrin.h>

/* Columns [0, w) of one block, w <= 8 * nv, nv <= 8 constant after inlining. */
static inline __attribute__((always_inline)) void cols_block(const float *x, int64_t red, int64_t ld, int64_t w,
                                                             double *out, const int nv) {
    __m512d a[8];
    __mmask8 m[8];
    for (int v = 0; v < nv; v++) {
        a[v] = _mm512_setzero_pd();
        int64_t left = w - 8 * v;
        m[v] = left >= 8 ? 0xff : (__mmask8)((1u << left) - 1);
    }
    for (int64_t r = 0; r < red; r++) {
        const float *row = x + r * ld;
        for (int v = 0; v < nv; v++)
            a[v] = _mm512_add_pd(a[v], _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m[v], row + 8 * v)));
    }
    for (int v = 0; v < nv; v++) _mm512_mask_storeu_pd(out + 8 * v, m[v], a[v]);
}

static void sum_cols(const float *x, int64_t red, int64_t ld, int64_t w, double *acc) {
    int64_t j = 0;
    for (; j + 64 <= w; j += 64) cols_block(x + j, red, ld, 64, acc + j, 8);
    const int64_t t = w - j;
    switch ((t + 7) / 8) {
    case 1: cols_block(x + j, red, ld, t, acc + j, 1); break;
    case 2: cols_block(x + j, red, ld, t, acc + j, 2); break;
    case 3: cols_block(x + j, red, ld, t, acc + j, 3); break;
    case 4: cols_block(x + j, red, ld, t, acc + j, 4); break;
    case 5: cols_block(x + j, red, ld, t, acc + j, 5); break;
    case 6: cols_block(x + j, red, ld, t, acc + j, 6); break;
    case 7: cols_block(x + j, red, ld, t, acc + j, 7); break;
    case 8: cols_block(x + j, red, ld, t, acc + j, 8); break;
    default: break;
    }
}

static double sum_row(const float *x, int64_t n) {
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm256_loadu_ps(x + i)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8)));
        a2 = _mm512_add_pd(a2, _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 16)));
        a3 = _mm512_add_pd(a3, _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 24)));
    }
    if (i < n) { /* the tail joins its lanes; masked-off lanes add +0, which changes no sum */
        const int64_t t = n - i;
        const __mmask8 m0 = t >= 8 ? 0xff : (__mmask8)((1u << t) - 1);
        const __mmask8 m1 = t >= 16 ? 0xff : t > 8 ? (__mmask8)((1u << (t - 8)) - 1) : 0;
        const __mmask8 m2 = t >= 24 ? 0xff : t > 16 ? (__mmask8)((1u << (t - 16)) - 1) : 0;
        const __mmask8 m3 = t > 24 ? (__mmask8)((1u << (t - 24)) - 1) : 0;
        a0 = _mm512_mask_add_pd(a0, m0, a0, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m0, x + i)));
        a1 = _mm512_mask_add_pd(a1, m1, a1, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m1, x + i + 8)));
        a2 = _mm512_mask_add_pd(a2, m2, a2, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m2, x + i + 16)));
        a3 = _mm512_mask_add_pd(a3, m3, a3, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m3, x + i + 24)));
    }
    a0 = _mm512_add_pd(a0, a2); /* h = 16 */
    a1 = _mm512_add_pd(a1, a3);
    a0 = _mm512_add_pd(a0, a1); /* h = 8 */
    __m256d b = _mm256_add_pd(_mm512_castpd512_pd256(a0), _mm512_extractf64x4_pd(a0, 1)); /* h = 4 */
    __m128d c = _mm_add_pd(_mm256_castpd256_pd128(b), _mm256_extractf128_pd(b, 1));     /* h = 2 */
    return _mm_cvtsd_f64(_mm_add_sd(c, _mm_unpackhi_pd(c, c)));                          /* h = 1 */
}

static const lx_reduce_kernels table = {.sum_cols = sum_cols, .sum_row = sum_row};
const lx_reduce_kernels *lx_reduce_kernels_avx512(void) { return &table; }
#else
const lx_reduce_kernels *lx_reduce_kernels_avx512(void) { return 0; }
#endif
