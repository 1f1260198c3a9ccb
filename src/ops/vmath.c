/* Vector math: the generic C versions and the dispatch (vmath.h). The algorithms are the AVX2
 * file's step for step, with a multiply and an add where that file fuses them (the baseline has no
 * FMA, and a libm fmaf call per step would cost more than the function).
 *
 * exp: x = n ln2 + r, n = round(x / ln2), r = x - n ln2_hi - n ln2_lo (ln2_hi has 9 significant
 * bits, so n ln2_hi is exact for |n| <= 150), |r| <= ln2 / 2; e^r by its degree-7 Taylor
 * polynomial (truncation below 6e-9 relative); 2^n applied as 2^(n/2) 2^(n - n/2), two normal
 * factors, so results in the subnormal range round once and overflow gives +inf. x is first
 * clamped to [-104, 89], where e^x already rounds to 0 and inf.
 * tanh: |x| < 0.625: x + x^3 P(x^2) with Cephes' degree-4 minimax P for tanhf; else
 * (1 - e) / (1 + e) with e = exp(-2|x|) <= 0.287, sign of x. */
#include "vmath.h"
#include "kernels.h"

#include <math.h>
#include <string.h>

#include "linnx/threads.h"
#include "team.h"

#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define LOG2E 1.44269504088896341f

static inline float scalar_exp(float x) {
    float xc = x < -104.0f ? -104.0f : x; /* comparisons are false for NaN: it passes */
    xc = xc > 89.0f ? 89.0f : xc;
    float t = xc * LOG2E + 12582912.0f; /* 1.5 * 2^23: rounds to an integer, kept in t's low bits */
    float n = t - 12582912.0f;
    float r = xc - n * LN2_HI;
    r = r - n * LN2_LO;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, 4);
    int32_t ni = (int32_t)(tb - 0x4B400000u); /* n in [-150, 129]; garbage (unused) for NaN */
    int32_t n1 = ni / 2, n2 = ni - n1;
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    return (p * s1) * s2;
}

#define TANH_C4 -5.70498872745e-3f
#define TANH_C3 2.06390887954e-2f
#define TANH_C2 -5.37397155531e-2f
#define TANH_C1 1.33314422036e-1f
#define TANH_C0 -3.33332819422e-1f

static inline float scalar_tanh(float x) {
    float ax = fabsf(x);
    if (ax < 0.625f) {
        float z = x * x;
        float p = TANH_C4;
        p = p * z + TANH_C3;
        p = p * z + TANH_C2;
        p = p * z + TANH_C1;
        p = p * z + TANH_C0;
        return copysignf(x + (x * z) * p, x); /* tanh(-0) = -0 */
    }
    float e = scalar_exp(-2.0f * ax);
    return copysignf((1.0f - e) / (1.0f + e), x);
}

/* 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below (both from e = exp(-|x|) <= 1). */
static inline float scalar_sigmoid(float x) {
    float e = scalar_exp(-fabsf(x)), q = 1.0f / (1.0f + e);
    return x >= 0.0f ? q : e * q;
}

#define GELU_C 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_A 0.044715f

static inline float scalar_gelu_tanh(float x) {
    float u = GELU_C * (x + GELU_A * (x * x * x));
    return x * scalar_sigmoid(2.0f * u);
}

/* gelu' = s + x sqrt(2/pi) (1 + 3a x^2) 2 s (1 - s), s = sigmoid(2u); s (1 - s) = e q^2 with
 * e = exp(-2|u|), q = 1 / (1 + e), which neither cancels nor overflows. Past |x| = 30 the second
 * term is below 1e-300 (0 in float) and x^2 may overflow: it is dropped. */
static inline float scalar_gelu_tanh_grad(float x) {
    float x2 = x * x, u = GELU_C * (x + GELU_A * (x2 * x));
    float e = scalar_exp(-2.0f * fabsf(u)), q = 1.0f / (1.0f + e);
    float s = u >= 0.0f ? q : e * q;
    float k = (2.0f * GELU_C) * (1.0f + (3.0f * GELU_A) * x2);
    float t = (x * k) * (e * (q * q));
    return fabsf(x) < 30.0f ? s + t : s;
}

/* erf: |z| < 0.84: z P(z^2), P the degree-9 Taylor polynomial of erf(z)/z (truncation < 1e-9);
 * else 1 - erfc(|z|) with the sign of z, erfc(z) = t exp(-z^2 + C(y)), t = 2 / (2 + z),
 * y = t 2/0.705 - 1 in [-1, 1], C the degree-9 Chebyshev interpolant (as monomials in y) of
 * log(erfc(z)) + z^2 - log(t) over t in [0, 0.705] (Numerical Recipes' erfc form; coefficients
 * computed here from double erfc). The normal CDF Phi(x) = erfc(-x / sqrt 2) / 2 uses erfc
 * directly below -0.84 sqrt 2, so its left tail keeps its relative accuracy. */
static const float ERF_S[10] = {1.128379167e+00f,  -3.761263890e-01f, 1.128379167e-01f, -2.686617065e-02f,
                                5.223977625e-03f,  -8.548327023e-04f, 1.205533298e-04f, -1.492565036e-05f,
                                1.646211437e-06f,  -1.636584469e-07f};
static const float ERFC_C[10] = {-8.649927343e-01f, 4.468160099e-01f,  4.061980645e-02f,  -1.017390671e-02f,
                                 -4.625118241e-03f, 3.952261729e-04f,  5.737780142e-04f,  -9.201372413e-06f,
                                 -6.026582472e-05f, -5.217399308e-07f};
#define ERFC_YS (2.0f / 0.705f)
#define ERF_S0_M1 0.1283791671f /* ERF_S[0] - 1 = 2/sqrt(pi) - 1 */
#define ERF_SPLIT 0.84f
#define RSQRT2 0.70710678118654752f
#define RSQRT2PI 0.39894228040143268f

static inline float scalar_erf_small(float z) { /* |z| < ERF_SPLIT: z + z (P(z^2) - 1), the 1 exact */
    float z2 = z * z, p = ERF_S[9];
    for (int i = 8; i >= 1; i--) p = p * z2 + ERF_S[i];
    p = p * z2 + ERF_S0_M1;
    return z + z * p;
}
static inline float scalar_erfc_big(float z) { /* z >= ERF_SPLIT, +inf or NaN */
    float t = 2.0f / (2.0f + z), y = t * ERFC_YS - 1.0f, p = ERFC_C[9];
    for (int i = 8; i >= 0; i--) p = p * y + ERFC_C[i];
    return t * scalar_exp(p - z * z);
}
static inline float scalar_erf(float x) {
    float z = fabsf(x);
    if (z < ERF_SPLIT) return scalar_erf_small(x);
    return copysignf(1.0f - scalar_erfc_big(z), x);
}
static inline float scalar_phi(float x) {
    float z = x * RSQRT2, az = fabsf(z);
    if (az < ERF_SPLIT) return 0.5f + 0.5f * scalar_erf_small(z);
    float c = scalar_erfc_big(az);
    return z >= 0.0f ? 1.0f - 0.5f * c : 0.5f * c;
}
/* gelu' = Phi(x) + x phi(x); past |x| = 30 the second term is 0 in float (and x^2 may overflow) */
static inline float scalar_gelu_erf_grad(float x) {
    float t = x * (scalar_exp(-0.5f * (x * x)) * RSQRT2PI);
    return fabsf(x) < 30.0f ? scalar_phi(x) + t : scalar_phi(x);
}

static void generic_exp(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = scalar_exp(x[i]);
}
static void generic_tanh(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = scalar_tanh(x[i]);
}
static void generic_sigmoid(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = scalar_sigmoid(x[i]);
}
static void generic_silu(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scalar_sigmoid(x[i]);
}
static void generic_gelu_tanh(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = scalar_gelu_tanh(x[i]);
}
static void generic_gelu_tanh_vjp(const float *x, const float *g, float *dx, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = g[i] * scalar_gelu_tanh_grad(x[i]);
}

static void generic_erf(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = scalar_erf(x[i]);
}
static void generic_gelu_erf(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scalar_phi(x[i]);
}
static void generic_gelu_erf_vjp(const float *x, const float *g, float *dx, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = g[i] * scalar_gelu_erf_grad(x[i]);
}

/* ---- backward rows (vmath.h) ---- */

static void generic_softmax_vjp_row(const float *y, const float *g, float *dx, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += g[i] * y[i];
    for (int64_t i = 0; i < n; i++) dx[i] = y[i] * (g[i] - s);
}
static void generic_log_softmax_vjp_row(const float *y, const float *g, float *dx, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += g[i];
    for (int64_t i = 0; i < n; i++) dx[i] = g[i] - scalar_exp(y[i]) * s;
}
static void generic_xent_vjp_row(const float *x, int32_t label, float g, float *dx, int64_t n) {
    lx_kernels_generic()->softmax_row(x, dx, n, false);
    dx[label] -= 1.0f;
    for (int64_t i = 0; i < n; i++) dx[i] *= g;
}

static const lx_vmath generic_table = {
    .isa = LX_ISA_GENERIC,
    .exp = generic_exp,
    .tanh = generic_tanh,
    .sigmoid = generic_sigmoid,
    .silu = generic_silu,
    .gelu_tanh = generic_gelu_tanh,
    .gelu_tanh_vjp = generic_gelu_tanh_vjp,
    .erf = generic_erf,
    .gelu_erf = generic_gelu_erf,
    .gelu_erf_vjp = generic_gelu_erf_vjp,
    .softmax_vjp_row = generic_softmax_vjp_row,
    .log_softmax_vjp_row = generic_log_softmax_vjp_row,
    .xent_vjp_row = generic_xent_vjp_row,
};

const lx_vmath *lx_vmath_generic(void) { return &generic_table; }

const lx_vmath *lx_vmath_for(lx_isa isa) {
    const lx_vmath *v = isa == LX_ISA_AVX512 ? lx_vmath_avx512() : NULL;
    if (!v && (isa == LX_ISA_AVX2 || isa == LX_ISA_AVX512)) v = lx_vmath_avx2();
    return v ? v : &generic_table;
}

const lx_vmath *lx_vmath_active(void) { return lx_vmath_for(lx_isa_current()); }

#define VMATH_CHUNK 8192 /* a multiple of every vector width */
#define VMATH_PAR_MIN 32768

typedef struct vmap_job {
    void (*f)(const float *, float *, int64_t);
    const float *x;
    float *y;
    int64_t n;
} vmap_job;

static int vmap_chunks(void *p, int64_t lo, int64_t hi) {
    const vmap_job *j = p;
    for (int64_t c = lo; c < hi; c++) {
        int64_t i0 = c * VMATH_CHUNK, m = j->n - i0 < VMATH_CHUNK ? j->n - i0 : VMATH_CHUNK;
        j->f(j->x + i0, j->y + i0, m);
    }
    return 0;
}

void lx_vmath_map(void (*f)(const float *, float *, int64_t), const float *x, float *y, int64_t n) {
    if (n <= VMATH_PAR_MIN || lx_num_threads() <= 1) {
        f(x, y, n);
        return;
    }
    const int64_t nch = (n + VMATH_CHUNK - 1) / VMATH_CHUNK;
    vmap_job j = {f, x, y, n};
    lx_parallel_for(lx_num_threads(), nch, vmap_chunks, &j);
}
