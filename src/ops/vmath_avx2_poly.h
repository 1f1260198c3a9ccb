/* exp's polynomial on 8 lanes of AVX2+FMA, shared by vmath_avx2.c (lx_exp and friends) and the
 * softmax / log-softmax / cross-entropy rows of kernels_avx2.c, so both are one function: the
 * degree-7 Taylor polynomial of e^r for the reduced argument r = x - n ln2 (|r| <= ln2 / 2), by
 * Horner in FMA. Include only from a file compiled with -mavx2 -mfma, after <immintrin.h>. */
#ifndef LINNX_VMATH_AVX2_POLY_H
#define LINNX_VMATH_AVX2_POLY_H

static inline __attribute__((always_inline)) __m256 lx_v_exp_taylor7(__m256 r) {
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    return _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
}

#endif
