/* Vector math, 16 lanes of AVX-512 (compiled with -mavx512f/bw/vl/dq and FMA; run only after cpuid
 * says so): exp, tanh, the sigmoid, SiLU, erf and the GELUs (vmath_avx2.c's algorithms op for op,
 * masks for its blends: the same values), and the softmax / log-softmax / cross-entropy rows
 * forward and backward, which are bound by exp and by memory.
 *
 * exp: vmath.c's algorithm (x = n ln2 + r, the two-part ln2, the degree-7 Taylor polynomial of e^r
 * by Horner in FMA, as vmath_avx2.c), with 2^n applied by vscalefps: one instruction that rounds
 * p 2^n once, also into the subnormal range and to +inf, where the AVX2 code multiplies by two
 * halves of 2^n. Same bits as the AVX2 exp (tests/test_vmath.c holds both to the same bound).
 *
 * Rows (docs/kernels.md "Rows"): the row's maximum is one pass from memory; the exps then run
 * over the row from L1 (a 4096-float row is 16 KiB) while the next row is prefetched, so the
 * memory reads of row r + 1 overlap the exp work of row r (the hardware prefetcher alone stops
 * at the row's end, and the max pass that comes next is a pure memory stream). Outputs are
 * prefetched for writing with the same distance, so stores do not wait for their lines.
 * A ragged tail is loaded under a mask with -inf in the missing lanes (exp 0), so every element's
 * exp is the same function of its value wherever it sits. */
#include "vmath.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__)
#include <immintrin.h>
#include <math.h>

#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define LOG2E 1.44269504088896341f

/* e^x for x already clamped to [-104, 89] (or NaN). n = round(x log2 e) by the 1.5 * 2^23
 * shifter inside one FMA. */
static inline __attribute__((always_inline)) __m512 exp16_core(__m512 xc) {
    const __m512 big = _mm512_set1_ps(12582912.0f);
    __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(LOG2E), big), big);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}
/* any x; max/min return their second operand when one is NaN: the NaN passes */
static inline __attribute__((always_inline)) __m512 exp16(__m512 x) {
    return exp16_core(_mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x)));
}
/* x <= 0 (a row's x - max) or NaN: no overflow clamp */
static inline __attribute__((always_inline)) __m512 exp16_le0(__m512 x) {
    return exp16_core(_mm512_max_ps(_mm512_set1_ps(-104.0f), x));
}

static inline __mmask16 tail16(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

static void avx512_exp(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = tail16(n - i);
        _mm512_mask_storeu_ps(y + i, k, exp16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

/* ---- tanh, sigmoid, SiLU, the GELUs, erf: vmath_avx2.c's functions op for op on 16 lanes (masks
 * where it blends), so every value is the AVX2 one ---- */

static inline __m512 sign16(__m512 x) { return _mm512_and_ps(x, _mm512_set1_ps(-0.0f)); }

static inline __m512 tanh16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 ax = _mm512_abs_ps(x), sign = sign16(x);
    __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
    __m512 small = _mm512_or_ps(_mm512_fmadd_ps(_mm512_mul_ps(x, z), p, x), sign); /* tanh(-0) = -0 */
    __m512 e = exp16(_mm512_mul_ps(ax, _mm512_set1_ps(-2.0f)));
    __m512 large = _mm512_or_ps(_mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e)), sign);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ), large, small);
}

static inline __m512 sigmoid16(__m512 x) {
    __m512 e = exp16(_mm512_xor_ps(_mm512_abs_ps(x), _mm512_set1_ps(-0.0f))); /* exp(-|x|) */
    __m512 q = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    /* x >= 0: q, else e q (NaN: not >= 0, e q is NaN) */
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), _mm512_mul_ps(e, q), q);
}

#define GELU_C 0.7978845608028654f
#define GELU_A 0.044715f

static inline __m512 gelu_u16(__m512 x, __m512 x2) {
    return _mm512_mul_ps(_mm512_set1_ps(GELU_C), _mm512_fmadd_ps(_mm512_set1_ps(GELU_A), _mm512_mul_ps(x2, x), x));
}
static inline __m512 silu16(__m512 x) { return _mm512_mul_ps(x, sigmoid16(x)); }
static inline __m512 gelu_tanh16(__m512 x) {
    __m512 u = gelu_u16(x, _mm512_mul_ps(x, x));
    return _mm512_mul_ps(x, sigmoid16(_mm512_add_ps(u, u)));
}
static inline __m512 gelu_tanh_grad16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 x2 = _mm512_mul_ps(x, x), u = gelu_u16(x, x2);
    __m512 e = exp16(_mm512_mul_ps(_mm512_abs_ps(u), _mm512_set1_ps(-2.0f)));
    __m512 q = _mm512_div_ps(one, _mm512_add_ps(one, e));
    __m512 s = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_GE_OQ), _mm512_mul_ps(e, q), q);
    __m512 k = _mm512_mul_ps(_mm512_set1_ps(2.0f * GELU_C), _mm512_fmadd_ps(_mm512_set1_ps(3.0f * GELU_A), x2, one));
    __m512 t = _mm512_mul_ps(_mm512_mul_ps(x, k), _mm512_mul_ps(e, _mm512_mul_ps(q, q)));
    /* |x| >= 30 (or NaN): the second term is 0 and x^2 may have overflowed: s alone */
    __mmask16 keep = _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(30.0f), _CMP_LT_OQ);
    return _mm512_add_ps(s, _mm512_maskz_mov_ps(keep, t));
}

static const float ERF_S[10] = {1.128379167e+00f,  -3.761263890e-01f, 1.128379167e-01f, -2.686617065e-02f,
                                5.223977625e-03f,  -8.548327023e-04f, 1.205533298e-04f, -1.492565036e-05f,
                                1.646211437e-06f,  -1.636584469e-07f};
static const float ERFC_C[10] = {-8.649927343e-01f, 4.468160099e-01f,  4.061980645e-02f,  -1.017390671e-02f,
                                 -4.625118241e-03f, 3.952261729e-04f,  5.737780142e-04f,  -9.201372413e-06f,
                                 -6.026582472e-05f, -5.217399308e-07f};
#define ERF_SPLIT 0.84f

static inline __m512 erf_small16(__m512 z) {
    __m512 z2 = _mm512_mul_ps(z, z), p = _mm512_set1_ps(ERF_S[9]);
    for (int i = 8; i >= 1; i--) p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(ERF_S[i]));
    p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(0.1283791671f)); /* 2/sqrt(pi) - 1: z + z (P - 1) */
    return _mm512_fmadd_ps(z, p, z);
}
static inline __m512 erfc_big16(__m512 z) {
    __m512 t = _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(_mm512_set1_ps(2.0f), z));
    __m512 y = _mm512_fmsub_ps(t, _mm512_set1_ps(2.0f / 0.705f), _mm512_set1_ps(1.0f));
    __m512 p = _mm512_set1_ps(ERFC_C[9]);
    for (int i = 8; i >= 0; i--) p = _mm512_fmadd_ps(p, y, _mm512_set1_ps(ERFC_C[i]));
    return _mm512_mul_ps(t, exp16(_mm512_fnmadd_ps(z, z, p)));
}
static inline __m512 erf16(__m512 x) {
    __m512 z = _mm512_abs_ps(x), sign = sign16(x);
    __m512 big = _mm512_or_ps(_mm512_sub_ps(_mm512_set1_ps(1.0f), erfc_big16(z)), sign);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_set1_ps(ERF_SPLIT), _CMP_LT_OQ), big, erf_small16(x));
}
static inline __m512 phi16(__m512 x) {
    const __m512 half = _mm512_set1_ps(0.5f);
    __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f)), az = _mm512_abs_ps(z);
    __m512 small = _mm512_fmadd_ps(half, erf_small16(z), half);
    __m512 hc = _mm512_mul_ps(half, erfc_big16(az));
    __m512 big = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ), hc,
                                      _mm512_sub_ps(_mm512_set1_ps(1.0f), hc));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(az, _mm512_set1_ps(ERF_SPLIT), _CMP_LT_OQ), big, small);
}
static inline __m512 gelu_erf16(__m512 x) { return _mm512_mul_ps(x, phi16(x)); }
static inline __m512 gelu_erf_grad16(__m512 x) {
    __m512 e = exp16(_mm512_mul_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(x, x)));
    __m512 t = _mm512_mul_ps(x, _mm512_mul_ps(e, _mm512_set1_ps(0.39894228040143268f)));
    __mmask16 keep = _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(30.0f), _CMP_LT_OQ);
    return _mm512_add_ps(phi16(x), _mm512_maskz_mov_ps(keep, t));
}

/* y[0:n] = F(x[0:n]): whole vectors, then the tail under a mask (zeros in the missing lanes) */
#define MAP16(name, F)                                                                \
    static void avx512_##name(const float *x, float *y, int64_t n) {                  \
        int64_t i = 0;                                                                \
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, F(_mm512_loadu_ps(x + i))); \
        if (i < n) {                                                                  \
            __mmask16 k = tail16(n - i);                                              \
            _mm512_mask_storeu_ps(y + i, k, F(_mm512_maskz_loadu_ps(k, x + i)));      \
        }                                                                             \
    }
#define MAP16_VJP(name, GRAD)                                                                           \
    static void avx512_##name(const float *x, const float *g, float *dx, int64_t n) {                   \
        for (int64_t i = 0; i < n; i += 16) {                                                           \
            __mmask16 k = tail16(n - i);                                                                \
            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, g + i), GRAD(_mm512_maskz_loadu_ps(k, x + i))); \
            _mm512_mask_storeu_ps(dx + i, k, v);                                                        \
        }                                                                                               \
    }
MAP16(tanh, tanh16)
MAP16(sigmoid, sigmoid16)
MAP16(silu, silu16)
MAP16(gelu_tanh, gelu_tanh16)
MAP16(erf, erf16)
MAP16(gelu_erf, gelu_erf16)
MAP16_VJP(gelu_tanh_vjp, gelu_tanh_grad16)
MAP16_VJP(gelu_erf_vjp, gelu_erf_grad16)

/* ---- rows ---- */

/* Prefetch the line at byte offset `off` of the row that follows p (p + n floats); the address as
 * an integer, since it may lie past the array (a prefetch never faults). */
static inline __attribute__((always_inline)) void pf_next(const float *p, int64_t n, int64_t i) {
    _mm_prefetch((const char *)((uintptr_t)(p + i) + (uintptr_t)n * sizeof(float)), _MM_HINT_T0);
}
static inline __attribute__((always_inline)) void pfw_next(float *p, int64_t n, int64_t i) {
    __builtin_prefetch((const void *)((uintptr_t)(p + i) + (uintptr_t)n * sizeof(float)), 1, 3);
}
#define PF_MIN 1024 /* rows shorter than this are not worth the prefetches (and may be one block) */

/* The row's maximum (NaN skipped as the scalar comparison skips it; 0 for an all -inf row, so
 * x - max stays -inf there, not NaN). Four independent max chains. */
static float rowmax16(const float *x, int64_t n) {
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        m0 = _mm512_max_ps(_mm512_loadu_ps(x + i), m0);
        m1 = _mm512_max_ps(_mm512_loadu_ps(x + i + 16), m1);
        m2 = _mm512_max_ps(_mm512_loadu_ps(x + i + 32), m2);
        m3 = _mm512_max_ps(_mm512_loadu_ps(x + i + 48), m3);
    }
    for (; i < n; i += 16) {
        __mmask16 k = tail16(n - i);
        m0 = _mm512_max_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + i), m0);
    }
    float mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
    return mx == -INFINITY ? 0.0f : mx;
}

/* sum(exp(x - mx)) over the row, the exps stored in e (if not NULL), the differences x - mx in d
 * (if not NULL; log_softmax); either may be x. Vector k adds into accumulator k % 4 and the four
 * combine as (s0 + s1) + (s2 + s3). pf: prefetch the next row of x, and of w for writing (w may be
 * NULL). */
static inline __attribute__((always_inline)) __m512 one16(const float *x, float *e, float *d, __m512 m, __mmask16 k) {
    __m512 dv = _mm512_sub_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x), m);
    if (d) _mm512_mask_storeu_ps(d, k, dv);
    __m512 ev = exp16_le0(dv);
    if (e) _mm512_mask_storeu_ps(e, k, ev);
    return ev;
}
static inline __attribute__((always_inline)) float expsum16(const float *x, float *e, float *d, int64_t n, float mx,
                                                            float *w) {
    const __m512 m = _mm512_set1_ps(mx);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    const bool pf = n >= PF_MIN;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        if (pf) {
            for (int c = 0; c < 4; c++) pf_next(x, n, i + 16 * c);
            if (w)
                for (int c = 0; c < 4; c++) pfw_next(w, n, i + 16 * c);
        }
        s0 = _mm512_add_ps(s0, one16(x + i, e ? e + i : NULL, d ? d + i : NULL, m, 0xFFFF));
        s1 = _mm512_add_ps(s1, one16(x + i + 16, e ? e + i + 16 : NULL, d ? d + i + 16 : NULL, m, 0xFFFF));
        s2 = _mm512_add_ps(s2, one16(x + i + 32, e ? e + i + 32 : NULL, d ? d + i + 32 : NULL, m, 0xFFFF));
        s3 = _mm512_add_ps(s3, one16(x + i + 48, e ? e + i + 48 : NULL, d ? d + i + 48 : NULL, m, 0xFFFF));
    }
    for (int k = 0; i < n; i += 16, k++) { /* i is a multiple of 64 here: vector k (< 4) goes to s_k */
        __m512 v = one16(x + i, e ? e + i : NULL, d ? d + i : NULL, m, tail16(n - i));
        if (k == 0) s0 = _mm512_add_ps(s0, v);
        else if (k == 1) s1 = _mm512_add_ps(s1, v);
        else if (k == 2) s2 = _mm512_add_ps(s2, v);
        else s3 = _mm512_add_ps(s3, v);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* y *= s, or y += s (add), over an L1-resident row */
static inline __attribute__((always_inline)) void scale_row(float *y, int64_t n, float s, bool add) {
    const __m512 v = _mm512_set1_ps(s);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 a = _mm512_loadu_ps(y + i);
        _mm512_storeu_ps(y + i, add ? _mm512_add_ps(a, v) : _mm512_mul_ps(a, v));
    }
    if (i < n) {
        __mmask16 k = tail16(n - i);
        __m512 a = _mm512_maskz_loadu_ps(k, y + i);
        _mm512_mask_storeu_ps(y + i, k, add ? _mm512_add_ps(a, v) : _mm512_mul_ps(a, v));
    }
}

/* softmax: max (memory), exp + sum with the exps stored in y (L1), y *= 1 / sum. log_softmax:
 * max, exp + sum storing x - max in y, y -= log(sum). */
static void avx512_softmax_row(const float *x, float *y, int64_t n, bool log) {
    float mx = rowmax16(x, n);
    if (log) {
        float lse = logf(expsum16(x, NULL, y, n, mx, y));
        scale_row(y, n, -lse, true);
    } else {
        float inv = 1.0f / expsum16(x, y, NULL, n, mx, y);
        scale_row(y, n, inv, false);
    }
}

/* max + log(sum(exp(x - max))); the exp pass reads the row again from L1. */
static float avx512_logsumexp_row(const float *x, int64_t n) {
    float mx = rowmax16(x, n);
    return mx + logf(expsum16(x, NULL, NULL, n, mx, NULL));
}

/* dx = (softmax(x) - one_hot(label)) g, with the values of softmax_row then `- 1` then `* g`. */
static void avx512_xent_vjp_row(const float *x, int32_t label, float g, float *dx, int64_t n) {
    float mx = rowmax16(x, n);
    float inv = 1.0f / expsum16(x, dx, NULL, n, mx, dx);
    const __m512 vi = _mm512_set1_ps(inv), vg = _mm512_set1_ps(g);
    float dl = dx[label] * inv - 1.0f;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = tail16(n - i);
        _mm512_mask_storeu_ps(dx + i, k, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, dx + i), vi), vg));
    }
    dx[label] = dl * g;
}

/* sum(a * b) (b NULL: sum(a)), four chains; the rows' first pass, from memory */
static float rowdot16(const float *a, const float *b, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
#define LD(p, o) _mm512_loadu_ps((p) + i + (o))
    if (b)
        for (; i + 64 <= n; i += 64) {
            s0 = _mm512_fmadd_ps(LD(a, 0), LD(b, 0), s0);
            s1 = _mm512_fmadd_ps(LD(a, 16), LD(b, 16), s1);
            s2 = _mm512_fmadd_ps(LD(a, 32), LD(b, 32), s2);
            s3 = _mm512_fmadd_ps(LD(a, 48), LD(b, 48), s3);
        }
    else
        for (; i + 64 <= n; i += 64) {
            s0 = _mm512_add_ps(LD(a, 0), s0);
            s1 = _mm512_add_ps(LD(a, 16), s1);
            s2 = _mm512_add_ps(LD(a, 32), s2);
            s3 = _mm512_add_ps(LD(a, 48), s3);
        }
#undef LD
    for (; i < n; i += 16) {
        __mmask16 k = tail16(n - i);
        __m512 va = _mm512_maskz_loadu_ps(k, a + i);
        s0 = b ? _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(k, b + i), s0) : _mm512_add_ps(va, s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* softmax's VJP from its output: dx = y (g - sum(g y)). The dot reads y and g from memory, the
 * second pass from L1 while the next rows of y and g are prefetched. dx may alias g. */
static void avx512_softmax_vjp_row(const float *y, const float *g, float *dx, int64_t n) {
    const __m512 s = _mm512_set1_ps(rowdot16(g, y, n));
    const bool pf = n >= PF_MIN;
    for (int64_t i = 0; i < n; i += 16) {
        if (pf) pf_next(y, n, i), pf_next(g, n, i), pfw_next(dx, n, i);
        __mmask16 k = tail16(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, y + i), _mm512_sub_ps(_mm512_maskz_loadu_ps(k, g + i), s));
        _mm512_mask_storeu_ps(dx + i, k, v);
    }
}

/* log_softmax's VJP from its output: dx = g - exp(y) sum(g). sum(g) reads g from memory; the
 * second pass reads y from memory too (prefetched a row ahead) and g from L1. dx may alias g. */
static void avx512_log_softmax_vjp_row(const float *y, const float *g, float *dx, int64_t n) {
    const __m512 s = _mm512_set1_ps(rowdot16(g, NULL, n));
    const bool pf = n >= PF_MIN;
    for (int64_t i = 0; i < n; i += 16) {
        if (pf) pf_next(y, n, i), pf_next(g, n, i), pfw_next(dx, n, i);
        __mmask16 k = tail16(n - i);
        __m512 e = exp16(_mm512_maskz_loadu_ps(k, y + i));
        _mm512_mask_storeu_ps(dx + i, k, _mm512_fnmadd_ps(e, s, _mm512_maskz_loadu_ps(k, g + i)));
    }
}

/* the row kernels for the AVX-512 kernel table (kernels_avx512.c) */
void lx_avx512_softmax_row(const float *x, float *y, int64_t n, bool log) { avx512_softmax_row(x, y, n, log); }
float lx_avx512_logsumexp_row(const float *x, int64_t n) { return avx512_logsumexp_row(x, n); }

static const lx_vmath table = {
    .isa = LX_ISA_AVX512,
    .exp = avx512_exp,
    .tanh = avx512_tanh,
    .sigmoid = avx512_sigmoid,
    .silu = avx512_silu,
    .gelu_tanh = avx512_gelu_tanh,
    .gelu_tanh_vjp = avx512_gelu_tanh_vjp,
    .erf = avx512_erf,
    .gelu_erf = avx512_gelu_erf,
    .gelu_erf_vjp = avx512_gelu_erf_vjp,
    .softmax_vjp_row = avx512_softmax_vjp_row,
    .log_softmax_vjp_row = avx512_log_softmax_vjp_row,
    .xent_vjp_row = avx512_xent_vjp_row,
};

const lx_vmath *lx_vmath_avx512(void) { return &table; }
#else
const lx_vmath *lx_vmath_avx512(void) { return 0; }
#endif
