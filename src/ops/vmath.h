/* Vector math over float32 rows (not installed): exp, tanh, the logistic sigmoid and the tanh-form
 * GELU with its derivative, run by the kernel set in force (linnx/cpu.h) as the other kernels are.
 *
 * vmath_avx2.c holds 8-lane AVX2+FMA versions, vmath_avx512.c 16-lane AVX-512 ones (the same
 * values) and the AVX-512 rows; vmath.c holds the generic C
 * versions of the same algorithms (multiply and add where the vector code fuses them) and the
 * dispatch. docs/kernels.md ("Vector math") has the algorithms and the accuracy that
 * tests/test_vmath.c measures against double-precision references:
 *
 *   exp      0.88 ulp (AVX2, AVX-512) / 1.16 ulp (generic) at most over [-104, 89], subnormal results
 *            included (counted in units of the smallest subnormal); +inf from 88.7229, +0 below
 *            -103.98 (test bound 2 ulp)
 *   tanh     1.49 ulp at most (bound 2); +-1 from |x| ~ 9.01; tanh(-0) = -0
 *   sigmoid  2.49 ulp at most (bound 3); 1 / (1 + exp(-x)) for x >= 0 and exp(x) / (1 + exp(x))
 *            below, so tiny results keep their digits (down to subnormals)
 *   gelu_tanh x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): the same value as
 *            x * 0.5 (1 + tanh(u)) without its cancellation for negative x
 * NaN propagates through every function. y may alias x in all of them; g and dx may alias too. */
#ifndef LINNX_VMATH_H
#define LINNX_VMATH_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/cpu.h"

typedef struct {
    lx_isa isa; /* the set these kernels belong to (AVX-512 runs the AVX2 ones) */
    void (*exp)(const float *x, float *y, int64_t n);
    void (*tanh)(const float *x, float *y, int64_t n);
    void (*sigmoid)(const float *x, float *y, int64_t n);
    /* y = x * sigmoid(x) (silu / swish) */
    void (*silu)(const float *x, float *y, int64_t n);
    /* jax.nn.gelu(approximate=True) */
    void (*gelu_tanh)(const float *x, float *y, int64_t n);
    /* dx = g * gelu_tanh'(x); at x = +-inf the derivative's limits 1 and 0 */
    void (*gelu_tanh_vjp)(const float *x, const float *g, float *dx, int64_t n);
    void (*erf)(const float *x, float *y, int64_t n);
    /* jax.nn.gelu(approximate=False): x Phi(x), Phi the normal CDF */
    void (*gelu_erf)(const float *x, float *y, int64_t n);
    /* dx = g * (Phi(x) + x phi(x)); at x = +-inf the limits 1 and 0 */
    void (*gelu_erf_vjp)(const float *x, const float *g, float *dx, int64_t n);
    /* Backward rows of n contiguous values (vjp.c; the forward rows are lx_kernels' softmax_row
     * and logsumexp_row). dx may alias g.
     * softmax from its output y: dx = y (g - sum(g y)) */
    void (*softmax_vjp_row)(const float *y, const float *g, float *dx, int64_t n);
    /* log_softmax from its output y: dx = g - exp(y) sum(g) */
    void (*log_softmax_vjp_row)(const float *y, const float *g, float *dx, int64_t n);
    /* integer-label cross-entropy: dx = (softmax(x) - one_hot(label)) g, with the values of the
     * kernel set's softmax_row, then - 1 at the label, then * g */
    void (*xent_vjp_row)(const float *x, int32_t label, float g, float *dx, int64_t n);
} lx_vmath;

const lx_vmath *lx_vmath_generic(void);
const lx_vmath *lx_vmath_avx2(void);   /* NULL when not compiled */
const lx_vmath *lx_vmath_avx512(void); /* NULL when not compiled */
/* The functions of a set (generic where the build has no vector version) and of the set in force. */
const lx_vmath *lx_vmath_for(lx_isa isa);
const lx_vmath *lx_vmath_active(void);

#if defined(LINNX_X86_KERNELS)
/* The AVX-512 forward rows the AVX-512 kernel table uses (vmath_avx512.c). Call only where cpuid
 * allows. */
void lx_avx512_softmax_row(const float *x, float *y, int64_t n, bool log);
float lx_avx512_logsumexp_row(const float *x, int64_t n);
/* The AVX2 cross-entropy backward row (kernels_avx2.c, beside the softmax row it fuses with). */
void lx_avx2_xent_vjp_row(const float *x, int32_t label, float g, float *dx, int64_t n);
#endif

/* y[i] = f(x[i]) for n values on the thread team when n is large (chunks of whole vectors), else
 * serially. */
void lx_vmath_map(void (*f)(const float *, float *, int64_t), const float *x, float *y, int64_t n);

#endif
