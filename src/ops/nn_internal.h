/* Helpers shared by the neural ops (not installed): a vectorisable exp and broadcast strides. */
#ifndef LINNX_NN_INTERNAL_H
#define LINNX_NN_INTERNAL_H

#include <float.h>
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

#include "kernels.h"

/* One row of n contiguous values: y = softmax(x) or log_softmax(x); y may be x. The kernel set in
 * force runs it (kernels.h): the same math everywhere, the sum reassociated across vector lanes. */
static inline void softmax_row_forward(const float *x, float *y, int64_t n, bool log) {
    lx_kernels_active()->softmax_row(x, y, n, log);
}

/* The last of `rows` rows (stride ld) with an inf or NaN among its first n values, or -1
 * (attention's causal skipping, forward and backward, falls back to full rows past it). */
static inline int64_t nn_last_nonfinite_row(const float *v, int64_t ld, int64_t rows, int64_t n) {
    for (int64_t r = rows - 1; r >= 0; r--) {
        int bad = 0; /* a loop the compiler vectorises */
        for (int64_t c = 0; c < n; c++) bad |= !(fabsf(v[r * ld + c]) <= FLT_MAX);
        if (bad) return r;
    }
    return -1;
}

#endif
