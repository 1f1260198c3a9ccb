/* Vector math, 8 lanes of AVX2+FMA (compiled with -mavx2 -mfma; run only after cpuid says so).
 * The algorithms of vmath.c (see there and docs/kernels.md), with FMA in the range reduction and
 * the polynomials. A ragged tail runs through the same vector code on a padded copy, so every
 * element's result is independent of its position in the row. */
#include "vmath.h"
#include "kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include "vmath_avx2_poly.h"
#include <string.h>

#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define LOG2E 1.44269504088896341f

static inline __m256 v_exp(__m256 x) {
    /* max/min return their second operand when one is NaN: the NaN passes */
    __m256 xc = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    __m256 p = lx_v_exp_taylor7(r);
    __m256i ni = _mm256_cvtps_epi32(n); /* exact: n is an integer in [-150, 129] */
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

static inline __m256 v_abs(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }

static inline __m256 v_tanh(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 ax = v_abs(x), sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    __m256 small = _mm256_or_ps(_mm256_fmadd_ps(_mm256_mul_ps(x, z), p, x), sign); /* tanh(-0) = -0 */
    __m256 e = v_exp(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
    __m256 large = _mm256_or_ps(_mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e)), sign);
    return _mm256_blendv_ps(large, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}

static inline __m256 v_sigmoid(__m256 x) {
    __m256 e = v_exp(_mm256_xor_ps(v_abs(x), _mm256_set1_ps(-0.0f))); /* exp(-|x|) */
    __m256 q = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    /* x >= 0: q, else e q (NaN: not >= 0, e q is NaN) */
    return _mm256_blendv_ps(_mm256_mul_ps(e, q), q, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
}

#define GELU_C 0.7978845608028654f
#define GELU_A 0.044715f

static inline __m256 v_gelu_u(__m256 x, __m256 x2) { /* sqrt(2/pi) (x + a x^3), the inner sum fused */
    return _mm256_mul_ps(_mm256_set1_ps(GELU_C), _mm256_fmadd_ps(_mm256_set1_ps(GELU_A), _mm256_mul_ps(x2, x), x));
}

static inline __m256 v_silu(__m256 x) { return _mm256_mul_ps(x, v_sigmoid(x)); }

static inline __m256 v_gelu_tanh(__m256 x) {
    __m256 u = v_gelu_u(x, _mm256_mul_ps(x, x));
    return _mm256_mul_ps(x, v_sigmoid(_mm256_add_ps(u, u)));
}

static inline __m256 v_gelu_tanh_grad(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 x2 = _mm256_mul_ps(x, x), u = v_gelu_u(x, x2);
    __m256 e = v_exp(_mm256_mul_ps(v_abs(u), _mm256_set1_ps(-2.0f)));
    __m256 q = _mm256_div_ps(one, _mm256_add_ps(one, e));
    __m256 s = _mm256_blendv_ps(_mm256_mul_ps(e, q), q, _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_GE_OQ));
    __m256 k = _mm256_mul_ps(_mm256_set1_ps(2.0f * GELU_C), _mm256_fmadd_ps(_mm256_set1_ps(3.0f * GELU_A), x2, one));
    __m256 t = _mm256_mul_ps(_mm256_mul_ps(x, k), _mm256_mul_ps(e, _mm256_mul_ps(q, q)));
    /* |x| >= 30 (or NaN): the second term is 0 and x^2 may have overflowed: s alone */
    __m256 keep = _mm256_cmp_ps(v_abs(x), _mm256_set1_ps(30.0f), _CMP_LT_OQ);
    return _mm256_add_ps(s, _mm256_and_ps(t, keep));
}

/* erf and the normal CDF (vmath.c has the algorithm and the coefficients' origin) */
static const float ERF_S[10] = {1.128379167e+00f,  -3.761263890e-01f, 1.128379167e-01f, -2.686617065e-02f,
                                5.223977625e-03f,  -8.548327023e-04f, 1.205533298e-04f, -1.492565036e-05f,
                                1.646211437e-06f,  -1.636584469e-07f};
static const float ERFC_C[10] = {-8.649927343e-01f, 4.468160099e-01f,  4.061980645e-02f,  -1.017390671e-02f,
                                 -4.625118241e-03f, 3.952261729e-04f,  5.737780142e-04f,  -9.201372413e-06f,
                                 -6.026582472e-05f, -5.217399308e-07f};
#define ERF_SPLIT 0.84f

static inline __m256 v_erf_small(__m256 z) {
    __m256 z2 = _mm256_mul_ps(z, z), p = _mm256_set1_ps(ERF_S[9]);
    for (int i = 8; i >= 1; i--) p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(ERF_S[i]));
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(0.1283791671f)); /* 2/sqrt(pi) - 1: z + z (P - 1) */
    return _mm256_fmadd_ps(z, p, z);
}
static inline __m256 v_erfc_big(__m256 z) {
    __m256 t = _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(_mm256_set1_ps(2.0f), z));
    __m256 y = _mm256_fmsub_ps(t, _mm256_set1_ps(2.0f / 0.705f), _mm256_set1_ps(1.0f));
    __m256 p = _mm256_set1_ps(ERFC_C[9]);
    for (int i = 8; i >= 0; i--) p = _mm256_fmadd_ps(p, y, _mm256_set1_ps(ERFC_C[i]));
    return _mm256_mul_ps(t, v_exp(_mm256_fnmadd_ps(z, z, p)));
}
static inline __m256 v_erf(__m256 x) {
    __m256 z = v_abs(x), sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    __m256 big = _mm256_or_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), v_erfc_big(z)), sign);
    return _mm256_blendv_ps(big, v_erf_small(x), _mm256_cmp_ps(z, _mm256_set1_ps(ERF_SPLIT), _CMP_LT_OQ));
}
static inline __m256 v_phi(__m256 x) {
    const __m256 half = _mm256_set1_ps(0.5f);
    __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)), az = v_abs(z);
    __m256 small = _mm256_fmadd_ps(half, v_erf_small(z), half);
    __m256 hc = _mm256_mul_ps(half, v_erfc_big(az));
    __m256 big = _mm256_blendv_ps(hc, _mm256_sub_ps(_mm256_set1_ps(1.0f), hc), _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GE_OQ));
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(az, _mm256_set1_ps(ERF_SPLIT), _CMP_LT_OQ));
}
static inline __m256 v_gelu_erf(__m256 x) { return _mm256_mul_ps(x, v_phi(x)); }
static inline __m256 v_gelu_erf_grad(__m256 x) {
    __m256 e = v_exp(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(x, x)));
    __m256 t = _mm256_mul_ps(x, _mm256_mul_ps(e, _mm256_set1_ps(0.39894228040143268f)));
    __m256 keep = _mm256_cmp_ps(v_abs(x), _mm256_set1_ps(30.0f), _CMP_LT_OQ);
    return _mm256_add_ps(v_phi(x), _mm256_and_ps(t, keep));
}

/* y[0:n] = F(x[0:n]) in whole vectors, the tail on a padded copy. */
#define MAP1(name, F)                                                     \
    static void avx2_##name(const float *x, float *y, int64_t n) {        \
        int64_t i = 0;                                                    \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, F(_mm256_loadu_ps(x + i))); \
        if (i < n) {                                                      \
            float buf[8] = {0};                                           \
            memcpy(buf, x + i, sizeof(float) * (size_t)(n - i));          \
            _mm256_storeu_ps(buf, F(_mm256_loadu_ps(buf)));               \
            memcpy(y + i, buf, sizeof(float) * (size_t)(n - i));          \
        }                                                                 \
    }

MAP1(exp, v_exp)
MAP1(tanh, v_tanh)
MAP1(sigmoid, v_sigmoid)
MAP1(silu, v_silu)
MAP1(gelu_tanh, v_gelu_tanh)
MAP1(erf, v_erf)
MAP1(gelu_erf, v_gelu_erf)

#define MAP_VJP(name, GRAD)                                        \
static void avx2_##name(const float *x, const float *g, float *dx, int64_t n) {    \
    int64_t i = 0;    \
    for (; i + 8 <= n; i += 8)    \
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), GRAD(_mm256_loadu_ps(x + i))));    \
    if (i < n) {    \
        float bx[8] = {0}, bg[8] = {0};    \
        memcpy(bx, x + i, sizeof(float) * (size_t)(n - i));    \
        memcpy(bg, g + i, sizeof(float) * (size_t)(n - i));    \
        _mm256_storeu_ps(bx, _mm256_mul_ps(_mm256_loadu_ps(bg), GRAD(_mm256_loadu_ps(bx))));    \
        memcpy(dx + i, bx, sizeof(float) * (size_t)(n - i));    \
    }    \
}

MAP_VJP(gelu_tanh_vjp, v_gelu_tanh_grad)
MAP_VJP(gelu_erf_vjp, v_gelu_erf_grad)

/* ---- backward rows (vmath.h); the generic versions' loops in 8 lanes ---- */

static float dot8(const float *a, const float *b, int64_t n) { /* sum(a b), b NULL: sum(a) */
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a0 = _mm256_loadu_ps(a + i), a1 = _mm256_loadu_ps(a + i + 8);
        s0 = b ? _mm256_fmadd_ps(a0, _mm256_loadu_ps(b + i), s0) : _mm256_add_ps(a0, s0);
        s1 = b ? _mm256_fmadd_ps(a1, _mm256_loadu_ps(b + i + 8), s1) : _mm256_add_ps(a1, s1);
    }
    float l[8], s = 0;
    _mm256_storeu_ps(l, _mm256_add_ps(s0, s1));
    for (int k = 0; k < 8; k++) s += l[k];
    for (; i < n; i++) s += b ? a[i] * b[i] : a[i];
    return s;
}

/* The second passes prefetch the next row of y and g (dx's for writing) a line per 16 floats, so
 * its memory reads overlap this row's arithmetic (vmath_avx512.c has the reasoning); the address
 * as an integer, since it may lie past the array (a prefetch never faults). */
#define PF_ROW_MIN 1024
static inline void pf_rows(const float *y, const float *g, float *dx, int64_t n, int64_t i) {
    const uintptr_t off = (uintptr_t)n * sizeof(float);
    _mm_prefetch((const char *)((uintptr_t)(y + i) + off), _MM_HINT_T0);
    _mm_prefetch((const char *)((uintptr_t)(g + i) + off), _MM_HINT_T0);
    __builtin_prefetch((const void *)((uintptr_t)(dx + i) + off), 1, 3);
}

static void avx2_softmax_vjp_row(const float *y, const float *g, float *dx, int64_t n) {
    const float s = dot8(g, y, n);
    const __m256 vs = _mm256_set1_ps(s);
    const bool pf = n >= PF_ROW_MIN;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if (pf && i % 16 == 0) pf_rows(y, g, dx, n, i);
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), _mm256_sub_ps(_mm256_loadu_ps(g + i), vs)));
    }
    for (; i < n; i++) dx[i] = y[i] * (g[i] - s);
}

/* v_exp of four vectors whose lanes are all in [-87, 88] (the test below lets a few lanes just
 * past either end in, still far from -87.33 and 88.72): the clamps change nothing there and
 * p 2^n is normal, so it is p with n added to its exponent field, (p s1) s2 exactly. n is
 * round(x log2e) as v_exp's: the rounded product plus 1.5 * 2^23 rounds it to the nearest
 * integer (even on ties) as roundps does, and leaves n in the sum's low bits. The four vectors go
 * step by step (four FMA chains in flight; the loop of single v_exp calls ran them one by one). */
static inline __attribute__((always_inline)) void v_exp4_normal(__m256 x[4]) {
    const __m256 big = _mm256_set1_ps(12582912.0f);
    __m256 t[4], r[4], p[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) t[k] = _mm256_add_ps(_mm256_mul_ps(x[k], _mm256_set1_ps(LOG2E)), big);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) r[k] = _mm256_fnmadd_ps(_mm256_sub_ps(t[k], big), _mm256_set1_ps(LN2_HI), x[k]);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) r[k] = _mm256_fnmadd_ps(_mm256_sub_ps(t[k], big), _mm256_set1_ps(LN2_LO), r[k]);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) x[k] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t[k]), 23));
    LX_V_EXP_TAYLOR7_K(4, p, r);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) x[k] = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p[k]), _mm256_castps_si256(x[k])));
}
/* all lanes: -87 <= x <= 88, i.e. |x - 0.5| <= 87.5 (false for NaN, which takes v_exp): e^x is a
 * normal float there (below -126 ln 2 = -87.34 it is subnormal, and adding n to the exponent
 * field would give a wrong value) */
static inline __m256 v_exp_normal_lanes(__m256 x) {
    return _mm256_cmp_ps(v_abs(_mm256_sub_ps(x, _mm256_set1_ps(0.5f))), _mm256_set1_ps(87.5f), _CMP_LE_OQ);
}

static void avx2_log_softmax_vjp_row(const float *y, const float *g, float *dx, int64_t n) {
    const __m256 vs = _mm256_set1_ps(dot8(g, NULL, n));
    const bool pf = n >= PF_ROW_MIN;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        if (pf) pf_rows(y, g, dx, n, i), pf_rows(y, g, dx, n, i + 16);
        __m256 v[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(y + i + 8 * k);
        __m256 ok = _mm256_and_ps(_mm256_and_ps(v_exp_normal_lanes(v[0]), v_exp_normal_lanes(v[1])),
                                  _mm256_and_ps(v_exp_normal_lanes(v[2]), v_exp_normal_lanes(v[3])));
        if (__builtin_expect(_mm256_movemask_ps(ok) == 0xFF, 1)) {
            v_exp4_normal(v);
        } else {
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) v[k] = v_exp(v[k]);
        }
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(dx + i + 8 * k, _mm256_fnmadd_ps(v[k], vs, _mm256_loadu_ps(g + i + 8 * k)));
    }
    for (; i + 8 <= n; i += 8) {
        if (pf && i % 16 == 0) pf_rows(y, g, dx, n, i);
        _mm256_storeu_ps(dx + i, _mm256_fnmadd_ps(v_exp(_mm256_loadu_ps(y + i)), vs, _mm256_loadu_ps(g + i)));
    }
    if (i < n) {
        float by[8] = {0}, bg[8] = {0};
        memcpy(by, y + i, sizeof(float) * (size_t)(n - i));
        memcpy(bg, g + i, sizeof(float) * (size_t)(n - i));
        _mm256_storeu_ps(by, _mm256_fnmadd_ps(v_exp(_mm256_loadu_ps(by)), vs, _mm256_loadu_ps(bg)));
        memcpy(dx + i, by, sizeof(float) * (size_t)(n - i));
    }
}

static const lx_vmath table = {
    .isa = LX_ISA_AVX2,
    .exp = avx2_exp,
    .tanh = avx2_tanh,
    .sigmoid = avx2_sigmoid,
    .silu = avx2_silu,
    .gelu_tanh = avx2_gelu_tanh,
    .gelu_tanh_vjp = avx2_gelu_tanh_vjp,
    .erf = avx2_erf,
    .gelu_erf = avx2_gelu_erf,
    .gelu_erf_vjp = avx2_gelu_erf_vjp,
    .softmax_vjp_row = avx2_softmax_vjp_row,
    .log_softmax_vjp_row = avx2_log_softmax_vjp_row,
    .xent_vjp_row = lx_avx2_xent_vjp_row, /* kernels_avx2.c */
};

const lx_vmath *lx_vmath_avx2(void) { return &table; }
#else
const lx_vmath *lx_vmath_avx2(void) { return 0; }
#endif
