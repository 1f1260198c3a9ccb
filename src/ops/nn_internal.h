/* Helpers shared by the neural ops (not installed): a vectorisable exp and broadcast strides. */
#ifndef LINNX_NN_INTERNAL_H
#define LINNX_NN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include "linnx/array.h"

/* `omp simd` is a vectorisation hint; where clang cannot honour it after inlining (an in-place row
 * in attention) that is a missed optimisation, not an error. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

/* exp(x) for x <= 88, written so loops over it vectorise (no calls, no float->int conversion):
 * x = n ln2 + r with |r| <= ln2/2 (two-part ln2), e^r by its degree-7 Taylor polynomial (error
 * below 1e-8 relative), 2^n built in the exponent bits. Below ln(FLT_MIN) it flushes to 0, as
 * XLA's denormal-flushing CPU code does. NaN propagates. Softmax-style callers pass x - max <= 0. */
static inline float nn_expf(float x) {
    const float lo = -87.33654f, hi = 88.0f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    float t = xc * 1.44269504f + 12582912.0f; /* 1.5 * 2^23: rounds x/ln2 to an integer */
    float n = t - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t tb, sb; /* unsigned: a NaN's bits wrap here (and the NaN passes on) instead of overflowing */
    memcpy(&tb, &t, 4);
    sb = (tb - 0x4B400000u + 127u) << 23; /* t's low mantissa bits hold n */
    float s;
    memcpy(&s, &sb, 4);
    float y = p * s;
    return x < lo ? 0.0f : y;
}

/* Strides (in elements) that read m broadcast to `shape` (numpy rules, right-aligned): 0 on
 * broadcast axes. False when m does not broadcast to shape. */
static inline bool nn_bcast_strides(const lx_array *m, int ndim, const int64_t *shape, int64_t *st) {
    if (m->ndim > ndim) return false;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        int j = i - (ndim - m->ndim);
        if (j < 0) {
            st[i] = 0;
            continue;
        }
        if (m->shape[j] != shape[i] && m->shape[j] != 1) return false;
        st[i] = m->shape[j] == 1 ? 0 : s;
        s *= m->shape[j];
    }
    return true;
}

#if defined(__AVX512F__)
#include <immintrin.h>

/* nn_expf on 16 lanes, step for step (mul then add, no FMA), so every lane is bit-identical to
 * the scalar. GCC vectorises the scalar loops below only 8 wide (-march=native prefers 256-bit)
 * and, to keep FP traps exact, runs the polynomial under masks: this is ~30% faster per row.
 * min/max operand order keeps the scalar's comparisons (a NaN passes through). */
static inline __m512 nn_exp16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654f), big = _mm512_set1_ps(12582912.0f);
    __m512 xc = _mm512_max_ps(lo, _mm512_min_ps(_mm512_set1_ps(88.0f), x));
    __m512 t = _mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504f)), big);
    __m512 n = _mm512_sub_ps(t, big);
    __m512 r = _mm512_sub_ps(xc, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(-2.12194440e-4f)));
    const float c[] = {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    for (int i = 0; i < 7; i++) p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(c[i]));
    __m512i sb = _mm512_slli_epi32(_mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(127 - 0x4B400000)), 23);
    __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(sb));
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ), y); /* x < lo: 0 */
}

static inline __mmask16 nn_tail16(int64_t left) { return left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1); }

/* One row of n contiguous values: y = softmax(x) or log_softmax(x); y may be x. Same math as
 * the portable version below; the sum is reassociated 16 ways, as `omp simd` may do. */
static inline void softmax_row_forward(const float *x, float *y, int64_t n, bool log) {
    __m512 vmx = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n; i += 16) { /* x > mx ? x : mx, as the scalar max */
        __mmask16 k = nn_tail16(n - i);
        vmx = _mm512_mask_max_ps(vmx, k, _mm512_maskz_loadu_ps(k, x + i), vmx);
    }
    float mx = _mm512_reduce_max_ps(vmx);
    if (mx == -INFINITY) mx = 0; /* all -inf: keep x - mx at -inf, not NaN */
    __m512 m = _mm512_set1_ps(mx), sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = nn_tail16(n - i);
        __m512 e = _mm512_maskz_mov_ps(k, nn_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m)));
        if (!log) _mm512_mask_storeu_ps(y + i, k, e);
        sum = _mm512_add_ps(sum, e);
    }
    float total = _mm512_reduce_add_ps(sum);
    if (log) {
        __m512 lse = _mm512_set1_ps(logf(total));
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 k = nn_tail16(n - i);
            __m512 v = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m), lse);
            _mm512_mask_storeu_ps(y + i, k, v);
        }
    } else {
        __m512 s = _mm512_set1_ps(total);
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 k = nn_tail16(n - i);
            _mm512_mask_storeu_ps(y + i, k, _mm512_div_ps(_mm512_maskz_loadu_ps(k, y + i), s));
        }
    }
}
#else
/* One row of n contiguous values: y = softmax(x) or log_softmax(x); y may be x. */
static inline void softmax_row_forward(const float *x, float *y, int64_t n, bool log) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) mx = 0; /* all -inf: keep x - mx at -inf, not NaN */
    float sum = 0;
    if (log) {
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < n; i++) sum += nn_expf(x[i] - mx);
        float lse = logf(sum);
#pragma omp simd
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mx) - lse;
    } else {
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < n; i++) {
            y[i] = nn_expf(x[i] - mx);
            sum += y[i];
        }
#pragma omp simd
        for (int64_t i = 0; i < n; i++) y[i] = y[i] / sum;
    }
}
#endif

#endif
