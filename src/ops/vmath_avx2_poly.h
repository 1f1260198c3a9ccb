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

/* The same polynomial of K vectors r[0..K) into p[0..K), one Horner step for all K before the next
 * (K independent FMA chains in flight instead of one: the same operations, the same bits). */
#define LX_V_EXP_TAYLOR7_K(K, p, r)                                                                  \
    do {                                                                                             \
        static const float lx_tc_[7] = {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}; \
        _Pragma("GCC unroll 8") for (int k_ = 0; k_ < (K); k_++)                                   \
            (p)[k_] = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 5040), (r)[k_], _mm256_set1_ps(lx_tc_[0])); \
        _Pragma("GCC unroll 8") for (int s_ = 1; s_ < 7; s_++)                                      \
            _Pragma("GCC unroll 8") for (int k_ = 0; k_ < (K); k_++)                                \
                (p)[k_] = _mm256_fmadd_ps((p)[k_], (r)[k_], _mm256_set1_ps(lx_tc_[s_]));           \
    } while (0)

#endif
