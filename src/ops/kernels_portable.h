/* Kernels written in plain C, included by more than one kernel set's file so each compiles them
 * for its own instructions (the generic set for the baseline, the AVX2 set with 256-bit vectors
 * and FMA). Not installed. Define PORT_NAME(x) first. */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "nn_internal.h"

/* One row of n contiguous values: y = softmax(x) or log_softmax(x); y may be x. */
__attribute__((unused)) static void PORT_NAME(softmax_row)(const float *x, float *y, int64_t n, bool log) {
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

/* max + log(sum(exp(x - max))) over n contiguous values (the cross-entropy's log-normaliser). */
__attribute__((unused)) static float PORT_NAME(logsumexp_row)(const float *x, int64_t n) {
    float mx = -INFINITY, sum = 0;
#pragma omp simd reduction(max : mx)
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) mx = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; i++) sum += nn_expf(x[i] - mx);
    return mx + logf(sum);
}

/* One LayerNorm (center) or RMSNorm row's statistics in double, Flax's fast variance
 * max(0, E[x^2] - E[x]^2) with NaN kept: *m = mean (0 for RMSNorm), *mul = rsqrt(var + eps); stats
 * (if not NULL) receives (mean, rstd) for the backward pass. Shared by norm_row and the AVX2 set's
 * streaming row, so both see the same two floats. */
__attribute__((unused)) static inline void PORT_NAME(norm_row_stats)(const float *xr, int64_t d, float eps, bool center,
                                                                    float *stats, float *m_out, float *mul_out) {
    double s = 0, s2 = 0;
#pragma omp simd reduction(+ : s, s2)
    for (int64_t i = 0; i < d; i++) {
        double v = xr[i];
        s += v;
        s2 += v * v;
    }
    double mean = center ? s / (double)d : 0.0, var = s2 / (double)d - mean * mean;
    /* jnp.maximum(0, var): round-off below 0 becomes 0, but NaN stays NaN (a NaN in the row,
     * or inf - inf from a +-inf in a LayerNorm row), so the whole row comes out NaN as in Flax.
     * RMSNorm's var = E[x^2] is never negative; the clamp leaves it alone. */
    if (var < 0) var = 0;
    float m = (float)mean, mul = 1.0f / sqrtf((float)var + eps);
    if (stats) stats[0] = m, stats[1] = mul; /* what the backward needs (llm.c's mean/rstd) */
    *m_out = m, *mul_out = mul;
}

/* One LayerNorm (center) or RMSNorm row: the statistics above, then
 * y = (x - mean) * (rsqrt(var + eps) * scale) + bias, with scale / bias (either may be NULL) of f
 * values repeating along the row (three roundings: the multiply, the subtract, the add). */
__attribute__((unused)) static void PORT_NAME(norm_row)(const float *xr, float *yr, int64_t d, const float *scale, const float *bias,
                                int64_t f, float eps, bool center, float *stats) {
    float m, mul;
    PORT_NAME(norm_row_stats)(xr, d, eps, center, stats, &m, &mul);
    for (int64_t j0 = 0; j0 < d; j0 += f) {
#pragma omp simd
        for (int64_t j = 0; j < f; j++) {
            float k = scale ? mul * scale[j] : mul;
            float v = (xr[j0 + j] - m) * k;
            yr[j0 + j] = bias ? v + bias[j] : v;
        }
    }
}

/* Direct convolution, one output position at a time, channels in a vectorisable loop. Each tap
 * is one FMA where the set has FMA (as its GEMM kernels do, so the result is the im2col path's),
 * else a multiply and an add (as the generic GEMM does; a libm fmaf call per product would be
 * ~100x slower). */
#if defined(__FMA__)
#define PORT_MADD(a, b, c) __builtin_fmaf((a), (b), (c))
#else
#define PORT_MADD(a, b, c) ((a) * (b) + (c))
#endif
__attribute__((unused)) static void PORT_NAME(conv_direct_row)(const conv_direct_plan *p, const float *row, float *y) {
    const conv2d_direct *c = p->c;
    int64_t ars = c->sw * c->cin;
    for (int64_t ow = 0; ow < c->ow; ow++) {
        float *yo = y + ow * c->cout;
        for (int64_t co = 0; co < c->cout; co++) yo[co] = 0.0f;
        for (int64_t t = 0; t < c->taps; t++) {
            float a = row[ow * ars + p->koff[t]];
            const float *wt = p->w + t * p->cop;
#pragma omp simd
            for (int64_t co = 0; co < c->cout; co++) yo[co] = PORT_MADD(a, wt[co], yo[co]);
        }
    }
}

/* panel[k*GEMM_SMALL_NR + j] = Bt[j*ld + k] for j < nr, k < kc, zeros in [nr, 16 * ceil(nr / 16)). */
__attribute__((unused)) static void PORT_NAME(small_pack_bt)(const float *Bt, int64_t ld, int nr, int64_t kc, float *panel) {
    int padded = (nr + 15) / 16 * 16;
    for (int64_t k = 0; nr < padded && k < kc; k++)
        for (int j = nr; j < padded; j++) panel[k * GEMM_SMALL_NR + j] = 0.0f;
    for (int j = 0; j < nr; j++)
        for (int64_t k = 0; k < kc; k++) panel[k * GEMM_SMALL_NR + j] = Bt[j * ld + k];
}
