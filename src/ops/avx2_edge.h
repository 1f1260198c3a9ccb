/* AVX2 edge loads shared by the *_avx2.c files (compiled with -mavx2 -mfma; include only there). */
#ifndef LINNX_OPS_AVX2_EDGE_H
#define LINNX_OPS_AVX2_EDGE_H

#include <immintrin.h>
#include <stdint.h>

/* Lanes [0, n) of a vector from p, zeros past them (n clamped to 0..8), reading nothing past p + n,
 * by plain loads: a masked load is microcoded on Zen 1 (a load of 1 lane in a loop: ~7.7 ns
 * masked, ~3.3 so); the GEMM's batch-1 row with a ragged panel did one per k, attention's key
 * packing and edge tiles several per row. */
static inline __attribute__((always_inline)) __m128 load_n4(const float *p, int64_t n) { /* n 0..4 */
    if (n >= 4) return _mm_loadu_ps(p);
    if (n <= 0) return _mm_setzero_ps();
    __m128 x = n >= 2 ? _mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)p) : _mm_load_ss(p);
    return n == 3 ? _mm_movelh_ps(x, _mm_load_ss(p + 2)) : x;
}
static inline __attribute__((always_inline)) __m256 load_n(const float *p, int64_t n) {
    if (n >= 8) return _mm256_loadu_ps(p);
    if (n > 4) return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p)), load_n4(p + 4, n - 4), 1);
    return _mm256_zextps128_ps256(load_n4(p, n));
}

#endif
