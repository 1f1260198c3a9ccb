/* Vector math (src/ops/vmath.h) in every kernel set this machine runs, against double-precision
 * references computed here (libm's exp / tanh in double): exp, tanh and sigmoid to a stated
 * maximum error in ulps over sweeps of float bit patterns across their whole ranges (both signs,
 * subnormal results, the overflow and underflow thresholds), the tanh-form GELU and its
 * derivative to a relative bound that allows for the rounding of u, and the special values
 * (+-inf, NaN, +-0). Rows of every length 0..40 check the vector tails against the scalar walk;
 * aliased in/out rows are checked too. */
#include <float.h>
#include <math.h>

#include "../src/ops/kernels.h"
#include "../src/ops/vmath.h"
#include "linnx/cpu.h"
#include "lx_test.h"
#include "linnx/threads.h"

/* The maximum errors documented in vmath.h and docs/kernels.md. */
#define EXP_MAX_ULP 2.0
#define TANH_MAX_ULP 2.0
#define SIGMOID_MAX_ULP 3.0
#define ERF_MAX_ULP 2.0

static float from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static uint32_t to_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

/* |y - ref| in units of the last place of ref as a float (2^-149 in the subnormal range); a
 * result of the right infinity where ref rounds to one counts 0. */
static double ulp_err(float y, double ref) {
    if (isnan(ref)) return isnan(y) ? 0 : INFINITY;
    if (isnan(y)) return INFINITY;
    float rf = (float)ref;
    if (isinf(rf)) return isinf(y) && signbit(y) == signbit(rf) ? 0 : INFINITY;
    if (isinf(y)) return INFINITY;
    int e = 0;
    if (ref != 0) frexp(ref, &e);
    int ue = e - 24 < -149 ? -149 : e - 24;
    return fabs((double)y - ref) / ldexp(1.0, ue);
}

typedef double (*ref_fn)(double);
static double ref_exp(double x) { return exp(x); }
static double ref_tanh(double x) { return tanh(x); }
static double ref_erf(double x) { return erf(x); }
static double ref_sigmoid(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

#define BATCH 4099 /* not a multiple of 8: every batch ends in a ragged tail */

/* Max ulp error of f over the floats in [lo, hi] (same sign), every `stride`-th bit pattern. */
static double sweep(void (*f)(const float *, float *, int64_t), ref_fn ref, float lo, float hi, uint32_t stride,
                    float *worst_x) {
    static float xs[BATCH], ys[BATCH];
    double worst = 0;
    uint32_t a = to_bits(lo), b = to_bits(hi);
    if (a > b) { uint32_t t = a; a = b; b = t; }
    uint64_t u = a;
    while (u <= b) {
        int n = 0;
        for (; n < BATCH && u <= b; n++, u += stride) xs[n] = from_bits((uint32_t)u);
        f(xs, ys, n);
        for (int i = 0; i < n; i++) {
            double e = ulp_err(ys[i], ref((double)xs[i]));
            if (e > worst) worst = e, *worst_x = xs[i];
        }
    }
    return worst;
}

static const lx_isa SETS[] = {LX_ISA_GENERIC, LX_ISA_AVX2, LX_ISA_AVX512};

static void test_dispatch(void) {
    CHECK(lx_vmath_for(LX_ISA_GENERIC) == lx_vmath_generic());
    CHECK_EQ_INT(lx_vmath_generic()->isa, LX_ISA_GENERIC);
    if (lx_isa_supported(LX_ISA_AVX2)) {
        CHECK(lx_vmath_avx2() != NULL);
        CHECK(lx_vmath_for(LX_ISA_AVX2) == lx_vmath_avx2());
    }
    if (lx_isa_supported(LX_ISA_AVX512)) {
        CHECK(lx_vmath_avx512() != NULL);
        CHECK(lx_vmath_for(LX_ISA_AVX512) == lx_vmath_avx512());
        CHECK_EQ_INT(lx_vmath_avx512()->isa, LX_ISA_AVX512);
    }
    CHECK(lx_vmath_active() == lx_vmath_for(lx_isa_current()));
    CHECK_EQ_INT(lx_isa_set("generic"), LX_OK);
    CHECK(lx_vmath_active() == lx_vmath_generic());
    lx_isa_set(NULL);
}

static void test_exp_accuracy(void) {
    for (size_t s = 0; s < sizeof SETS / sizeof SETS[0]; s++) {
        if (!lx_isa_supported(SETS[s])) continue;
        const lx_vmath *v = lx_vmath_for(SETS[s]);
        float wx = 0;
        double e1 = sweep(v->exp, ref_exp, 0.0f, 89.0f, 421, &wx);
        LX_TEST_REPORT_(e1 <= EXP_MAX_ULP, "%s exp [0, 89]: %.3f ulp at %.9g", lx_isa_name(SETS[s]), e1, (double)wx);
        double e2 = sweep(v->exp, ref_exp, -0.0f, -104.0f, 421, &wx);
        LX_TEST_REPORT_(e2 <= EXP_MAX_ULP, "%s exp [-104, 0]: %.3f ulp at %.9g", lx_isa_name(SETS[s]), e2, (double)wx);
        /* every float near the thresholds */
        double e3 = sweep(v->exp, ref_exp, 88.6f, 89.0f, 1, &wx);
        double e4 = sweep(v->exp, ref_exp, -87.0f, -104.0f, 7, &wx);
        LX_TEST_REPORT_(e3 <= EXP_MAX_ULP && e4 <= EXP_MAX_ULP, "%s exp thresholds: %.3f / %.3f ulp",
                        lx_isa_name(SETS[s]), e3, e4);
        printf("# %s exp max ulp %.3f\n", lx_isa_name(SETS[s]), fmax(fmax(e1, e2), fmax(e3, e4)));
    }
}

static void test_tanh_sigmoid_accuracy(void) {
    for (size_t s = 0; s < sizeof SETS / sizeof SETS[0]; s++) {
        if (!lx_isa_supported(SETS[s])) continue;
        const lx_vmath *v = lx_vmath_for(SETS[s]);
        const char *nm = lx_isa_name(SETS[s]);
        float wx = 0;
        /* from the smallest subnormal to past saturation, both signs */
        double t1 = sweep(v->tanh, ref_tanh, FLT_TRUE_MIN, 20.0f, 193, &wx);
        LX_TEST_REPORT_(t1 <= TANH_MAX_ULP, "%s tanh (0, 20]: %.3f ulp at %.9g", nm, t1, (double)wx);
        double t2 = sweep(v->tanh, ref_tanh, -FLT_TRUE_MIN, -20.0f, 193, &wx);
        LX_TEST_REPORT_(t2 <= TANH_MAX_ULP, "%s tanh [-20, 0): %.3f ulp at %.9g", nm, t2, (double)wx);
        double t3 = sweep(v->tanh, ref_tanh, 0.5f, 0.75f, 1, &wx); /* every float around the 0.625 switch */
        LX_TEST_REPORT_(t3 <= TANH_MAX_ULP, "%s tanh [0.5, 0.75]: %.3f ulp at %.9g", nm, t3, (double)wx);
        double t4 = sweep(v->tanh, ref_tanh, 20.0f, FLT_MAX, 4099, &wx);
        LX_TEST_REPORT_(t4 == 0, "%s tanh [20, max]: %.3f ulp at %.9g", nm, t4, (double)wx);
        printf("# %s tanh max ulp %.3f\n", nm, fmax(fmax(t1, t2), t3));
        double s1 = sweep(v->sigmoid, ref_sigmoid, 0.0f, 120.0f, 421, &wx);
        LX_TEST_REPORT_(s1 <= SIGMOID_MAX_ULP, "%s sigmoid [0, 120]: %.3f ulp at %.9g", nm, s1, (double)wx);
        double s2 = sweep(v->sigmoid, ref_sigmoid, -0.0f, -104.0f, 421, &wx); /* down to subnormal results */
        LX_TEST_REPORT_(s2 <= SIGMOID_MAX_ULP, "%s sigmoid [-104, 0]: %.3f ulp at %.9g", nm, s2, (double)wx);
        printf("# %s sigmoid max ulp %.3f\n", nm, fmax(s1, s2));
    }
}

/* GELU (tanh form) and its derivative against double formulas. u = sqrt(2/pi)(x + 0.044715 x^3) is
 * rounded in float (as Flax's float32 computation rounds it); e^(-2u) turns that into a relative
 * error of about 2|u| eps, which the bound allows for. */
static void test_gelu_tanh(void) {
    const double c = 0.7978845608028654, a = 0.044715;
    enum { N = 20001 };
    static float xs[N], ys[N], gs[N], ds[N];
    for (int i = 0; i < N; i++) xs[i] = -12.0f + 24.0f * (float)i / (N - 1), gs[i] = 1.0f - 0.5f * (float)(i % 3);
    for (size_t s = 0; s < sizeof SETS / sizeof SETS[0]; s++) {
        if (!lx_isa_supported(SETS[s])) continue;
        const lx_vmath *v = lx_vmath_for(SETS[s]);
        v->gelu_tanh(xs, ys, N);
        v->gelu_tanh_vjp(xs, gs, ds, N);
        int bad = 0, badd = 0;
        double worst = 0, worstd = 0;
        for (int i = 0; i < N; i++) {
            double x = xs[i], u = c * (x + a * x * x * x), sg = 1 / (1 + exp(-2 * u));
            double y = x * sg;
            double t = 2 * x * c * (1 + 3 * a * x * x) * sg * (1 - sg), d = sg + t;
            double tol = 4e-7 * (1 + 2 * fabs(u));
            double ey = fabs(ys[i] - y) / (fabs(y) + 1e-38), ed = fabs(ds[i] - gs[i] * d) / (fabs(gs[i]) * (sg + fabs(t)) + 1e-38);
            bad += !(ey <= tol);
            badd += !(ed <= tol);
            worst = fmax(worst, ey / (1 + 2 * fabs(u)));
            worstd = fmax(worstd, ed / (1 + 2 * fabs(u)));
        }
        LX_TEST_REPORT_(bad == 0 && badd == 0, "%s gelu_tanh: %d / %d values out of bound (worst %.3g / %.3g)",
                        lx_isa_name(SETS[s]), bad, badd, worst, worstd);
        printf("# %s gelu_tanh rel err / (1 + 2|u|): value %.3g, derivative %.3g\n", lx_isa_name(SETS[s]), worst, worstd);
    }
}

static void test_erf_accuracy(void) {
    for (size_t s = 0; s < sizeof SETS / sizeof SETS[0]; s++) {
        if (!lx_isa_supported(SETS[s])) continue;
        const lx_vmath *v = lx_vmath_for(SETS[s]);
        const char *nm = lx_isa_name(SETS[s]);
        float wx = 0;
        double e1 = sweep(v->erf, ref_erf, FLT_TRUE_MIN, 12.0f, 193, &wx);
        LX_TEST_REPORT_(e1 <= ERF_MAX_ULP, "%s erf (0, 12]: %.3f ulp at %.9g", nm, e1, (double)wx);
        double e2 = sweep(v->erf, ref_erf, -FLT_TRUE_MIN, -12.0f, 193, &wx);
        LX_TEST_REPORT_(e2 <= ERF_MAX_ULP, "%s erf [-12, 0): %.3f ulp at %.9g", nm, e2, (double)wx);
        double e3 = sweep(v->erf, ref_erf, 0.8f, 0.9f, 1, &wx); /* every float around the 0.84 switch */
        LX_TEST_REPORT_(e3 <= ERF_MAX_ULP, "%s erf [0.8, 0.9]: %.3f ulp at %.9g", nm, e3, (double)wx);
        double e4 = sweep(v->erf, ref_erf, 12.0f, FLT_MAX, 4099, &wx);
        LX_TEST_REPORT_(e4 == 0, "%s erf [12, max]: %.3f ulp", nm, e4);
        printf("# %s erf max ulp %.3f\n", nm, fmax(fmax(e1, e2), e3));
    }
}

/* Exact GELU x Phi(x) and its derivative Phi(x) + x phi(x), against double with Phi from erfc (so
 * the left tail is exact); rounding x / sqrt 2 in float gives Phi a relative error of about
 * x^2 eps in the tail, which the bound allows for. */
static void test_gelu_erf(void) {
    enum { N = 20001 };
    static float xs[N], ys[N], gs[N], ds[N];
    for (int i = 0; i < N; i++) xs[i] = -14.0f + 28.0f * (float)i / (N - 1), gs[i] = 1.0f - 0.5f * (float)(i % 3);
    for (size_t s = 0; s < sizeof SETS / sizeof SETS[0]; s++) {
        if (!lx_isa_supported(SETS[s])) continue;
        const lx_vmath *v = lx_vmath_for(SETS[s]);
        v->gelu_erf(xs, ys, N);
        v->gelu_erf_vjp(xs, gs, ds, N);
        int bad = 0, badd = 0;
        double worst = 0, worstd = 0;
        for (int i = 0; i < N; i++) {
            double x = xs[i], phi = 0.5 * erfc(-x / sqrt(2.0)), t = x * exp(-0.5 * x * x) / 2.5066282746310002;
            double y = x * phi, d = phi + t;
            double tol = 4e-7 * (1 + x * x);
            double ey = fabs(ys[i] - y) / (fabs(y) + 1e-38), ed = fabs(ds[i] - gs[i] * d) / (fabs(gs[i]) * (phi + fabs(t)) + 1e-38);
            bad += !(ey <= tol);
            badd += !(ed <= tol);
            worst = fmax(worst, ey / (1 + x * x));
            worstd = fmax(worstd, ed / (1 + x * x));
        }
        LX_TEST_REPORT_(bad == 0 && badd == 0, "%s gelu_erf: %d / %d values out of bound (worst %.3g / %.3g)",
                        lx_isa_name(SETS[s]), bad, badd, worst, worstd);
        printf("# %s gelu_erf rel err / (1 + x^2): value %.3g, derivative %.3g\n", lx_isa_name(SETS[s]), worst, worstd);
    }
}

static void test_special_values(void) {
    const float inf = INFINITY, nan = NAN;
    for (size_t s = 0; s < sizeof SETS / sizeof SETS[0]; s++) {
        if (!lx_isa_supported(SETS[s])) continue;
        const lx_vmath *v = lx_vmath_for(SETS[s]);
        float x[10] = {inf, -inf, nan, 0.0f, -0.0f, 88.72283f, 88.72284f, -103.97f, -103.98f, 1e30f}, y[10];
        v->exp(x, y, 10);
        CHECK(isinf(y[0]) && y[0] > 0);
        CHECK(y[1] == 0 && !signbit(y[1]));
        CHECK(isnan(y[2]));
        CHECK(y[3] == 1.0f && y[4] == 1.0f);
        CHECK(isfinite(y[5]) && y[5] > 3.40e38f); /* just below the overflow threshold 88.7228391 */
        CHECK(isinf(y[6]));
        CHECK(y[7] == FLT_TRUE_MIN); /* e^-103.97 = 1.43e-45: the smallest subnormal */
        CHECK(y[8] == 0.0f);
        CHECK(isinf(y[9]));
        v->tanh(x, y, 10);
        CHECK(y[0] == 1.0f && y[1] == -1.0f && isnan(y[2]));
        CHECK(y[3] == 0.0f && !signbit(y[3]) && y[4] == 0.0f && signbit(y[4])); /* tanh(-0) = -0 */
        CHECK(y[5] == 1.0f && y[8] == -1.0f);
        v->sigmoid(x, y, 10);
        CHECK(y[0] == 1.0f && y[1] == 0.0f && isnan(y[2]) && y[3] == 0.5f && y[4] == 0.5f);
        float xs2[3] = {-100.0f, 100.0f, -30.0f}, ys2[3];
        v->sigmoid(xs2, ys2, 3);
        CHECK(ys2[0] > 0 && ulp_err(ys2[0], ref_sigmoid(-100.0)) <= SIGMOID_MAX_ULP); /* 3.7e-44, subnormal */
        CHECK(ys2[1] == 1.0f);
        CHECK(ulp_err(ys2[2], ref_sigmoid(-30.0)) <= SIGMOID_MAX_ULP);
        v->silu(xs2, ys2, 3);
        CHECK(ys2[1] == 100.0f && ys2[0] < 0 && ys2[0] > -1e-40f);
        float gx[5] = {inf, -inf, nan, 0.0f, 40.0f}, gy[5], gg[5] = {1, 1, 1, 1, 2}, gd[5];
        v->gelu_tanh(gx, gy, 5);
        CHECK(isinf(gy[0]) && gy[0] > 0);
        CHECK(isnan(gy[1])); /* -inf * 0, as x * 0.5 * (1 + tanh(u)) gives */
        CHECK(isnan(gy[2]) && gy[3] == 0.0f && gy[4] == 40.0f);
        v->gelu_tanh_vjp(gx, gg, gd, 5);
        CHECK(gd[0] == 1.0f && gd[1] == 0.0f && isnan(gd[2]) && gd[3] == 0.5f && gd[4] == 2.0f);
        v->gelu_erf(gx, gy, 5);
        CHECK(isinf(gy[0]) && gy[0] > 0 && isnan(gy[1]) && isnan(gy[2]) && gy[3] == 0.0f && gy[4] == 40.0f);
        v->gelu_erf_vjp(gx, gg, gd, 5);
        CHECK(gd[0] == 1.0f && gd[1] == 0.0f && isnan(gd[2]) && gd[3] == 0.5f && gd[4] == 2.0f);
        v->erf(x, y, 5);
        CHECK(y[0] == 1.0f && y[1] == -1.0f && isnan(y[2]) && y[3] == 0.0f && !signbit(y[3]) && signbit(y[4]));
    }
}

/* Rows of every length up to 40 give each element the value a whole-vector pass gives it (the
 * tails run the same code), and in-place rows equal out-of-place ones. */
static void test_rows_and_aliasing(void) {
    float x[40], ref[40], y[40], g[40];
    for (int i = 0; i < 40; i++) x[i] = -6.0f + 0.37f * (float)i, g[i] = 0.25f * (float)(i % 5) - 0.5f;
    for (size_t s = 0; s < sizeof SETS / sizeof SETS[0]; s++) {
        if (!lx_isa_supported(SETS[s])) continue;
        const lx_vmath *v = lx_vmath_for(SETS[s]);
        void (*fs[])(const float *, float *, int64_t) = {v->exp, v->tanh, v->sigmoid, v->silu, v->gelu_tanh, v->erf,
                                                         v->gelu_erf};
        for (size_t f = 0; f < sizeof fs / sizeof fs[0]; f++) {
            fs[f](x, ref, 40);
            int bad = 0;
            for (int n = 0; n <= 40; n++) {
                for (int i = 0; i < 40; i++) y[i] = -777.0f;
                fs[f](x + (40 - n), y, n); /* the row's last n values */
                for (int i = 0; i < n; i++) bad += to_bits(y[i]) != to_bits(ref[40 - n + i]);
                for (int i = n; i < 40; i++) bad += y[i] != -777.0f; /* nothing written past n */
            }
            memcpy(y, x, sizeof y);
            fs[f](y, y, 40);
            for (int i = 0; i < 40; i++) bad += to_bits(y[i]) != to_bits(ref[i]);
            LX_TEST_REPORT_(bad == 0, "%s function %zu: %d mismatches across row lengths", lx_isa_name(SETS[s]), f, bad);
        }
        v->gelu_erf_vjp(x, g, ref, 40);
        int bad = 0;
        for (int n = 0; n <= 40; n++) {
            v->gelu_erf_vjp(x + (40 - n), g + (40 - n), y, n);
            for (int i = 0; i < n; i++) bad += to_bits(y[i]) != to_bits(ref[40 - n + i]);
        }
        v->gelu_tanh_vjp(x, g, ref, 40);
        for (int n = 0; n <= 40; n++) {
            v->gelu_tanh_vjp(x + (40 - n), g + (40 - n), y, n);
            for (int i = 0; i < n; i++) bad += to_bits(y[i]) != to_bits(ref[40 - n + i]);
        }
        memcpy(y, g, sizeof y);
        v->gelu_tanh_vjp(x, y, y, 40);
        for (int i = 0; i < 40; i++) bad += to_bits(y[i]) != to_bits(ref[i]);
        LX_TEST_REPORT_(bad == 0, "%s gelu_tanh_vjp: %d mismatches", lx_isa_name(SETS[s]), bad);
    }
}

/* The AVX-512 functions (exp's 2^n by vscalefps, masks for the AVX2 code's blends) give the AVX2
 * functions' bits for every 997th float of the whole range (subnormal results, the thresholds
 * and the specials included), the derivatives with a cotangent of 1.5. */
static void test_avx512_bits(void) {
    if (!lx_isa_supported(LX_ISA_AVX512)) return;
    const lx_vmath *a = lx_vmath_for(LX_ISA_AVX2), *b = lx_vmath_for(LX_ISA_AVX512);
    void (*fa[])(const float *, float *, int64_t) = {a->exp, a->tanh, a->sigmoid, a->silu, a->gelu_tanh, a->erf, a->gelu_erf};
    void (*fb[])(const float *, float *, int64_t) = {b->exp, b->tanh, b->sigmoid, b->silu, b->gelu_tanh, b->erf, b->gelu_erf};
    const char *names[] = {"exp", "tanh", "sigmoid", "silu", "gelu_tanh", "erf", "gelu_erf", "gelu_tanh_vjp", "gelu_erf_vjp"};
    static float xs[BATCH], g[BATCH], ya[BATCH], yb[BATCH];
    for (int i = 0; i < BATCH; i++) g[i] = 1.5f;
    long bad[9] = {0};
    for (uint64_t u = 0; u <= 0xFFFFFFFFu;) {
        int n = 0;
        for (; n < BATCH && u <= 0xFFFFFFFFu; n++, u += 997) xs[n] = from_bits((uint32_t)u);
        for (int f = 0; f < 9; f++) {
            if (f < 7) fa[f](xs, ya, n), fb[f](xs, yb, n);
            else if (f == 7) a->gelu_tanh_vjp(xs, g, ya, n), b->gelu_tanh_vjp(xs, g, yb, n);
            else a->gelu_erf_vjp(xs, g, ya, n), b->gelu_erf_vjp(xs, g, yb, n);
            for (int i = 0; i < n; i++) bad[f] += to_bits(ya[i]) != to_bits(yb[i]) && !(isnan(ya[i]) && isnan(yb[i]));
        }
    }
    for (int f = 0; f < 9; f++)
        LX_TEST_REPORT_(bad[f] == 0, "avx512 %s differs from avx2 in %ld of the sampled floats", names[f], bad[f]);
}

/* The backward rows (vmath.h) of every set against double-precision references, rows of length
 * 0..40 (ragged tails), 1000 and 4101 (the prefetching long-row path), dx aliasing g, and the
 * specials: a -inf logit has softmax 0 (its gradient is -g at the label, else 0), a NaN logit makes
 * the row NaN. The bounds allow the float sum over the row (n 2^-24 relative to sum |terms|). */
static void test_vjp_rows(void) {
    enum { NMAX = 4101 };
    float *y = malloc(sizeof(float) * NMAX * 4), *g = y + NMAX, *dx = y + 2 * NMAX, *x = y + 3 * NMAX;
    if (!y) return;
    const int lens[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 40, 63, 64, 65, 1000, NMAX};
    for (size_t s = 0; s < sizeof SETS / sizeof SETS[0]; s++) {
        if (!lx_isa_supported(SETS[s])) continue;
        const lx_vmath *v = lx_vmath_for(SETS[s]);
        const char *nm = lx_isa_name(SETS[s]);
        int bad[3] = {0, 0, 0};
        double worst[3] = {0, 0, 0}; /* error / bound */
#define VJP_CHECK(k, err, tol) (worst[k] = fmax(worst[k], (err) / ((tol) + 1e-38)), bad[k] += !((err) <= (tol) + 1e-38))
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int n = lens[li];
            uint32_t seed = 12345u + (uint32_t)n;
            for (int i = 0; i < n; i++) {
                seed = seed * 1664525u + 1013904223u;
                x[i] = (float)(seed >> 8) * 0x1p-24f * 24.0f - 12.0f;
                seed = seed * 1664525u + 1013904223u;
                g[i] = (float)(seed >> 8) * 0x1p-24f * 2.0f - 1.0f;
            }
            /* y = softmax(x) in float (the VJPs' input), the reference sums in double */
            double mx = -INFINITY, se = 0;
            for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
            for (int i = 0; i < n; i++) se += exp((double)x[i] - mx);
            for (int i = 0; i < n; i++) y[i] = (float)(exp((double)x[i] - mx) / se);
            double sgy = 0, sagy = 0, sg = 0, sag = 0;
            for (int i = 0; i < n; i++) sgy += (double)g[i] * y[i], sagy += fabs((double)g[i] * y[i]);
            for (int i = 0; i < n; i++) sg += g[i], sag += fabs(g[i]);
            const double nu = (n + 8) * 0x1p-24;
            for (int alias = 0; alias < 2; alias++) {
                float *out = dx; /* alias: dx starts as a copy of g and is passed as g */
                if (alias) memcpy(dx, g, sizeof(float) * (size_t)n);
                v->softmax_vjp_row(y, alias ? dx : g, out, n);
                for (int i = 0; i < n; i++) {
                    double ref = (double)y[i] * (g[i] - sgy), tol = fabs(y[i]) * (0x1p-23 * fabs(g[i] - sgy) + nu * sagy);
                    VJP_CHECK(0, fabs(out[i] - ref), tol);
                }
                if (alias) memcpy(dx, g, sizeof(float) * (size_t)n);
                /* log_softmax's output: log(y) */
                static float ly[NMAX];
                for (int i = 0; i < n; i++) ly[i] = logf(y[i]);
                v->log_softmax_vjp_row(ly, alias ? dx : g, out, n);
                for (int i = 0; i < n; i++) {
                    double e = exp((double)ly[i]), ref = g[i] - e * sg;
                    double tol = 0x1p-23 * fabs(ref) + e * (3e-7 * fabs(sg) + nu * sag);
                    VJP_CHECK(1, fabs(out[i] - ref), tol);
                }
            }
            if (n == 0) continue;
            const int32_t label = (int32_t)((n * 7) / 11);
            const float gr = -1.75f;
            v->xent_vjp_row(x, label, gr, dx, n);
            for (int i = 0; i < n; i++) {
                double p = exp((double)x[i] - mx) / se, ref = (p - (i == label)) * gr;
                double tol = fabs(gr) * (1e-5 * p + (i == label ? 3e-7 : 0.0));
                VJP_CHECK(2, fabs(dx[i] - ref), tol);
            }
        }
        /* specials: a -inf logit, then a NaN logit */
        float xs[20], d2[20];
        for (int i = 0; i < 20; i++) xs[i] = 0.1f * (float)i;
        xs[5] = -INFINITY;
        v->xent_vjp_row(xs, 5, 2.0f, d2, 20);
        bad[2] += !(d2[5] == -2.0f);
        v->xent_vjp_row(xs, 3, 2.0f, d2, 20);
        bad[2] += !(d2[5] == 0.0f && d2[3] < 0);
        xs[7] = NAN;
        v->xent_vjp_row(xs, 3, 2.0f, d2, 20);
        for (int i = 0; i < 20; i++) bad[2] += !isnan(d2[i]);
        LX_TEST_REPORT_(bad[0] + bad[1] + bad[2] == 0, "%s vjp rows: softmax %d, log_softmax %d, xent %d mismatches",
                        nm, bad[0], bad[1], bad[2]);
        printf("# %s vjp rows: error / bound at most %.3f (softmax), %.3f (log_softmax), %.3f (xent)\n", nm, worst[0],
               worst[1], worst[2]);
#undef VJP_CHECK
    }
    free(y);
}

/* lx_vmath_map: chunked on the thread team, the same values as one serial call. */
static void test_map(void) {
    enum { N = 100003 };
    float *x = malloc(sizeof(float) * N), *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    CHECK(x && a && b);
    if (!x || !a || !b) goto done;
    for (int i = 0; i < N; i++) x[i] = (float)((i * 7919) % 2001 - 1000) / 97.0f;
    const lx_vmath *v = lx_vmath_active();
    v->tanh(x, a, N);
    int saved = lx_num_threads();
    (void)lx_set_num_threads(4); /* chunked even where the machine has one CPU (else one serial call) */
    lx_vmath_map(v->tanh, x, b, N);
    (void)lx_set_num_threads(saved);
    CHECK(memcmp(a, b, sizeof(float) * N) == 0);
done:
    free(x), free(a), free(b);
}

/* The AVX2 softmax rows (kernels_avx2.c) bit for bit against their algorithm written out in scalar
 * C: exp(d) for d = x - max by the 1.5 * 2^23 shifter in one FMA with 8 log2 e, r = d - n ln2 / 8
 * in two FMA steps, q = fma(fma(c3, r, c2), r r, r), T = 2^(j/8) (j = n's low three bits, the
 * table rounded to float), T + T q in one FMA, 2^(n >> 3) as two halves (equal to one exponent
 * field wherever the result is normal), 0 below -104; each group of four vectors (the tail padded
 * with -inf, a short last group with zeros) sums as (e0 + e1) + (e2 + e3) into one accumulator, then lanes
 * ((0 + 4) + (1 + 5)) + ((2 + 6) + (3 + 7)); softmax e / sum as e * (1 / sum), log_softmax
 * d - log(sum), logsumexp max + log(sum). Rows of many lengths whose minimum passes the range
 * test (the row's loop without per-vector tests, 4 exps in flight) and rows that do not (-inf,
 * spans past -87 and -104). */
static float sm_ref_exp(float d) {
    static const uint32_t tab[8] = {0x3f800000, 0x3f8b95c2, 0x3f9837f0, 0x3fa5fed7,
                                    0x3fb504f3, 0x3fc5672a, 0x3fd744fd, 0x3feac0c7};
    if (d < -104.0f) return 0.0f;
    float t = fmaf(d, 11.5415603637695312f, 12582912.0f), n = t - 12582912.0f;
    float r = fmaf(-n, 0.693359375f / 8, d);
    r = fmaf(-n, -2.12194440e-4f / 8, r);
    float q = fmaf(fmaf(0.166668579f, r, 0.500064492f), r * r, r);
    int32_t ni = (int32_t)(to_bits(t) - 0x4B400000u);
    float tv = from_bits(tab[ni & 7]), b = fmaf(tv, q, tv);
    int32_t m = ni >= 0 ? ni / 8 : -((7 - ni) / 8); /* floor(ni / 8), as srai */
    int32_t m1 = m >= 0 ? m / 2 : -((1 - m) / 2), m2 = m - m1; /* m1 = floor(m / 2), as srai */
    return (b * from_bits((uint32_t)(m1 + 127) << 23)) * from_bits((uint32_t)(m2 + 127) << 23);
}
static void sm_ref_row(const float *x, int64_t n, float *e, float *dd, float *mxo, float *sumo) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) mx = 0;
    float t[8] = {0};
    for (int64_t g = 0; g * 32 < n; g++)
        for (int l = 0; l < 8; l++) {
            float ev[4];
            for (int v = 0; v < 4; v++) {
                int64_t i = g * 32 + v * 8 + l;
                float d = i < n ? x[i] - mx : -INFINITY;
                ev[v] = sm_ref_exp(d);
                if (i < n) e[i] = ev[v], dd[i] = d;
            }
            t[l] += (ev[0] + ev[1]) + (ev[2] + ev[3]);
        }
    *mxo = mx;
    *sumo = ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}
static void test_avx2_softmax_row_bits(void) {
    if (!lx_isa_supported(LX_ISA_AVX2) || !lx_kernels_avx2()) return;
    const lx_kernels *k = lx_kernels_avx2();
    enum { NMAX = 4200 };
    static float x[NMAX], e[NMAX], d[NMAX], y[NMAX], xo[NMAX + 4], yo[NMAX + 4];
    const int64_t lens[] = {1, 2, 7, 8, 9, 31, 32, 33, 63, 64, 65, 95, 96, 97, 127, 128, 129, 200, 1000, 1023, 1024, 4099};
    uint32_t seed = 12345;
    long bad = 0, rows = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (int kind = 0; kind < 11; kind++)
            for (int rep = 0; rep < 3; rep++) {
                const int64_t n = lens[li];
                const float span[11] = {2.0f, 20.0f, 86.0f, 87.5f, 120.0f, 30.0f, 20.0f, 20.0f, 20.0f, 20.0f, 20.0f};
                for (int64_t i = 0; i < n; i++) {
                    float u = (float)((seed = seed * 1664525u + 1013904223u) >> 8) * 0x1p-24f;
                    x[i] = 5.0f - u * span[kind];
                    if (kind == 5 && (seed >> 28) == 3) x[i] = -INFINITY; /* masked logits */
                }
                if (kind == 2 && n > 3) x[n / 2] = 5.0f, x[n / 3] = -81.0f; /* span exactly 86 */
                /* one value below the range late in the row (a later chunk of the untested exp
                 * pass fails its check: the row goes on tested from that chunk) */
                if (kind == 6) x[n - 1 - n / 7] = -200.0f;
                if (kind == 7) x[n * 3 / 4] = -INFINITY;
                /* whole groups of four vectors below -104 (their exps +0 without computing them): a
                 * -inf tail from a ragged start, a -inf first half, a run of finite -200s */
                for (int64_t i = 0; i < n; i++) {
                    if (kind == 8 && i >= n - n / 4 - 5) x[i] = -INFINITY;
                    if (kind == 9 && i < n / 2) x[i] = -INFINITY;
                    if (kind == 10 && i >= n / 3 && i < 2 * n / 3) x[i] = -200.0f;
                }
                float mx, sum;
                sm_ref_row(x, n, e, d, &mx, &sum);
                k->softmax_row(x, y, n, false);
                float inv = 1.0f / sum;
                for (int64_t i = 0; i < n; i++) bad += to_bits(y[i]) != to_bits(e[i] * inv);
                k->softmax_row(x, y, n, true);
                float lse = logf(sum);
                for (int64_t i = 0; i < n; i++) bad += to_bits(y[i]) != to_bits(d[i] - lse);
                float l = k->logsumexp_row(x, n);
                bad += to_bits(l) != to_bits(mx + lse);
                /* in place (attention's rows): the same values */
                memcpy(y, x, (size_t)n * sizeof(float));
                k->softmax_row(y, y, n, false);
                for (int64_t i = 0; i < n; i++) bad += to_bits(y[i]) != to_bits(e[i] * inv);
                memcpy(y, x, (size_t)n * sizeof(float));
                k->softmax_row(y, y, n, true);
                for (int64_t i = 0; i < n; i++) bad += to_bits(y[i]) != to_bits(d[i] - lse);
                /* rows at odd float offsets (every load and store of the row loops
                 * unaligned): the same values */
                memcpy(xo + 1, x, (size_t)n * sizeof(float));
                k->softmax_row(xo + 1, yo + 3, n, false);
                for (int64_t i = 0; i < n; i++) bad += to_bits(yo[3 + i]) != to_bits(e[i] * inv);
                k->softmax_row(xo + 1, yo + 3, n, true);
                for (int64_t i = 0; i < n; i++) bad += to_bits(yo[3 + i]) != to_bits(d[i] - lse);
                bad += to_bits(k->logsumexp_row(xo + 1, n)) != to_bits(mx + lse);
                rows++;
            }
    if (bad) fprintf(stderr, "avx2 softmax rows: %ld values differ from the scalar algorithm (%ld rows)\n", bad, rows);
    CHECK(bad == 0);
    /* a NaN among masked logits (a group whose other lanes are all -inf is not skipped as dead):
     * every output NaN, on the tested path (200 floats) and the chunked one (4099) */
    const int64_t nl[2] = {200, 4099};
    for (int c = 0; c < 2; c++) {
        const int64_t n = nl[c];
        for (int64_t i = 0; i < n; i++) x[i] = i < n / 2 ? -INFINITY : (float)(i % 13) * 0.25f;
        x[n / 4] = NAN;
        long nan_out = 0;
        k->softmax_row(x, y, n, false);
        for (int64_t i = 0; i < n; i++) nan_out += isnan(y[i]) != 0;
        k->softmax_row(x, y, n, true);
        for (int64_t i = 0; i < n; i++) nan_out += isnan(y[i]) != 0;
        nan_out += isnan(k->logsumexp_row(x, n)) != 0;
        CHECK(nan_out == 2 * n + 1);
    }
}

/* Every set's log_softmax backward row bit for bit against its own exp: dx = g - exp(y) sum(g)
 * with one FMA where the set has FMA (AVX2: the row takes a shortcut for vectors whose lanes are
 * all within [-87, 88], which must give v_exp's bits). g holds dyadic values whose sum is exact in
 * any order; y sweeps the shortcut's edges, both signs, -inf, inf and NaN. */
static void test_log_softmax_vjp_bits(void) {
    enum { N = 4103 };
    static float y[N], g[N], e[N], dx[N];
    uint32_t seed = 99;
    for (int64_t i = 0; i < N; i++) {
        float u = (float)((seed = seed * 1664525u + 1013904223u) >> 8) * 0x1p-24f;
        int kind = (int)(seed >> 29);
        y[i] = kind < 2 ? -89.0f + 4 * u : kind < 4 ? 86.0f + 4 * u : kind < 6 ? -110.0f + 220 * u : -20 * u;
        g[i] = (float)((int)(seed >> 20) % 9 - 4) * 0.25f;
    }
    y[5] = -INFINITY, y[77] = INFINITY, y[300] = NAN, y[4100] = NAN;
    float s = 0;
    for (int64_t i = 0; i < N; i++) s += g[i];
    for (size_t k = 0; k < sizeof SETS / sizeof SETS[0]; k++) {
        if (!lx_isa_supported(SETS[k])) continue;
        const lx_vmath *v = lx_vmath_for(SETS[k]);
        const bool fma = SETS[k] != LX_ISA_GENERIC;
        v->exp(y, e, N);
        long bad = 0;
        for (int64_t n = 1; n <= N; n += n < 80 ? 1 : 1009) { /* ragged tails and a long row */
            v->log_softmax_vjp_row(y, g, dx, n);
            float sn = 0;
            for (int64_t i = 0; i < n; i++) sn += g[i];
            for (int64_t i = 0; i < n; i++) {
                float ref = fma ? fmaf(-e[i], sn, g[i]) : g[i] - e[i] * sn;
                bad += !(to_bits(dx[i]) == to_bits(ref) || (isnan(dx[i]) && isnan(ref)));
            }
        }
        /* whole rows inside one window, so every 32-value block can take a shortcut: the edges of
         * the normal range of e^y (below -126 ln 2 = -87.34 it is subnormal) and of overflow */
        static const float win[][2] = {{-88.5f, -86.0f}, {-88.0f, -87.3f}, {-87.5f, -86.9f}, {86.0f, 88.6f}, {-1.0f, 1.0f}};
        for (size_t w = 0; w < sizeof win / sizeof win[0]; w++) {
            float wy[96], wg[96], we[96], wdx[96];
            for (int i = 0; i < 96; i++) {
                float u = (float)((seed = seed * 1664525u + 1013904223u) >> 8) * 0x1p-24f;
                wy[i] = win[w][0] + (win[w][1] - win[w][0]) * u;
                wg[i] = (float)((int)(seed >> 20) % 9 - 4) * 0.25f;
            }
            wg[3] = 0.0f; /* dx = -e^y sum(g) exactly where g is 0 */
            v->exp(wy, we, 96);
            v->log_softmax_vjp_row(wy, wg, wdx, 96);
            float sn = 0;
            for (int i = 0; i < 96; i++) sn += wg[i];
            for (int i = 0; i < 96; i++) {
                float ref = fma ? fmaf(-we[i], sn, wg[i]) : wg[i] - we[i] * sn;
                bad += !(to_bits(wdx[i]) == to_bits(ref) || (isnan(wdx[i]) && isnan(ref)));
            }
        }
        if (bad) fprintf(stderr, "%s log_softmax_vjp_row: %ld values differ from g - exp(y) sum(g)\n", lx_isa_name(SETS[k]), bad);
        CHECK(bad == 0);
    }
    (void)s;
}

int main(void) {
    RUN(test_dispatch);
    RUN(test_exp_accuracy);
    RUN(test_tanh_sigmoid_accuracy);
    RUN(test_gelu_tanh);
    RUN(test_erf_accuracy);
    RUN(test_gelu_erf);
    RUN(test_special_values);
    RUN(test_rows_and_aliasing);
    RUN(test_avx512_bits);
    RUN(test_avx2_softmax_row_bits);
    RUN(test_log_softmax_vjp_bits);
    RUN(test_vjp_rows);
    RUN(test_map);
    return lx_test_finish();
}
