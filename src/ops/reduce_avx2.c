/* AVX2 float sum kernels of the reductions (reduce_kernels.h: the order every set shares), the
 * AVX-512 ones (reduce_avx512.c) at half the width: ymm accumulators of 4 doubles, up to 8 column
 * vectors (32 columns) per pass over the rows, eight vectors (32 lanes) for a row sum. */
#include "reduce_kernels.h"

#if defined(__AVX2__)
#include <immintrin.h>

static inline __m128 load_part(const float *p, int64_t left) { /* left >= 1 floats */
    if (left >= 4) return _mm_loadu_ps(p);
    static const int32_t ones[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
    return _mm_maskload_ps(p, _mm_loadu_si128((const __m128i *)(ones + 4 - left)));
}

static inline __attribute__((always_inline)) void cols_block(const float *x, int64_t red, int64_t ld, int64_t w,
                                                             double *out, const int nv) {
    __m256d a[8];
    for (int v = 0; v < nv; v++) a[v] = _mm256_setzero_pd();
    if (w == 4 * nv) {
        for (int64_t r = 0; r < red; r++) {
            const float *row = x + r * ld;
            for (int v = 0; v < nv; v++) a[v] = _mm256_add_pd(a[v], _mm256_cvtps_pd(_mm_loadu_ps(row + 4 * v)));
        }
    } else { /* the last vector partial: masked loads give +0 past w */
        const int64_t last = w - 4 * (nv - 1);
        for (int64_t r = 0; r < red; r++) {
            const float *row = x + r * ld;
            for (int v = 0; v < nv - 1; v++)
                a[v] = _mm256_add_pd(a[v], _mm256_cvtps_pd(_mm_loadu_ps(row + 4 * v)));
            a[nv - 1] = _mm256_add_pd(a[nv - 1], _mm256_cvtps_pd(load_part(row + 4 * (nv - 1), last)));
        }
    }
    double tmp[32];
    for (int v = 0; v < nv; v++) _mm256_storeu_pd(tmp + 4 * v, a[v]);
    for (int64_t j = 0; j < w; j++) out[j] = tmp[j];
}

static void sum_cols(const float *x, int64_t red, int64_t ld, int64_t w, double *acc) {
    int64_t j = 0;
    for (; j + 32 <= w; j += 32) cols_block(x + j, red, ld, 32, acc + j, 8);
    const int64_t t = w - j;
    switch ((t + 3) / 4) {
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
    __m256d a[8];
    for (int v = 0; v < 8; v++) a[v] = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int v = 0; v < 8; v++) a[v] = _mm256_add_pd(a[v], _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * v)));
    for (int v = 0; v < 8 && i + 4 * v < n; v++) /* the tail joins its lanes (+0 past n) */
        a[v] = _mm256_add_pd(a[v], _mm256_cvtps_pd(load_part(x + i + 4 * v, n - i - 4 * v)));
    for (int v = 0; v < 4; v++) a[v] = _mm256_add_pd(a[v], a[v + 4]); /* h = 16 */
    a[0] = _mm256_add_pd(a[0], a[2]);                                  /* h = 8 */
    a[1] = _mm256_add_pd(a[1], a[3]);
    a[0] = _mm256_add_pd(a[0], a[1]); /* h = 4 */
    __m128d c = _mm_add_pd(_mm256_castpd256_pd128(a[0]), _mm256_extractf128_pd(a[0], 1)); /* h = 2 */
    return _mm_cvtsd_f64(_mm_add_sd(c, _mm_unpackhi_pd(c, c)));                            /* h = 1 */
}

static const lx_reduce_kernels table = {.sum_cols = sum_cols, .sum_row = sum_row};
const lx_reduce_kernels *lx_reduce_kernels_avx2(void) { return &table; }
#else
const lx_reduce_kernels *lx_reduce_kernels_avx2(void) { return 0; }
#endif
