/* linnx/linalg.h - GEMM, numpy matmul and lax.dot_general.
 *
 * Every op here takes float32 arrays and returns a float32 result owned by the innermost pool
 * (see array.h); NULL with a message naming the op and the shapes on failure (LX_ERR_SHAPE, or
 * LX_ERR_DTYPE for an operand that is not float32). A NULL input means an earlier call failed:
 * the op returns NULL and keeps that first message (LX_ERR_FAILED_INPUT when no failure is
 * pending, status.h). An abstract input gives
 * an abstract output (shape inference only).
 *
 * Layouts are chosen so that GEMM reads operands in place: a contraction whose operand axes can be
 * described by a row stride and a unit column stride (possibly transposed) runs without copies;
 * only an operand that cannot is transposed into a temporary first.
 */
#ifndef LINNX_LINALG_H
#define LINNX_LINALG_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/array.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* ---- GEMM on raw row-major buffers ----
 * C[M,N] = alpha * op(A) op(B) + beta * C, row-major, op(X) = X or X^T. op(A) is M x K: A is
 * stored M x K with row stride lda (transA false) or K x M (transA true); likewise B. With
 * beta == 0, C is not read (it may hold NaN); with alpha == 0 or K == 0, A and B are not read
 * (C = beta C). C must not overlap A or B (as in BLAS): nothing checks it, and the result is then
 * unspecified. Problems with M*N*K at or below the small limit (or fewer than 16 rows) run on
 * register tiles straight from the caller's buffers (above 64^3 multiply-adds in ranges of 24
 * rows over the pool, the same bits on any thread count); larger ones on linnx's packed
 * (BLIS-style) GEMM of the kernel set in force (linnx/cpu.h), or on OpenBLAS in the size ranges
 * where it measured faster (docs/kernels.md), threaded by lx_num_threads().
 * Fails (LX_ERR_INVALID_ARGUMENT, nothing written, the message naming the argument) on negative
 * sizes, a leading dimension smaller than the row it steps over (lda >= K, or M with transA;
 * ldb >= N, or K with transB; ldc >= N; a row of 0 floats takes 0), or a NULL buffer where data
 * is needed. */
lx_status lx_sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                   int64_t ldc);

/* Tuning and test knobs. The small limit is compared with M*N*K; a negative value restores the
 * default. The built-in kernel is that of the kernel set in force (linnx/cpu.h): "avx512", "avx2"
 * or "portable" (the generic set). lx_sgemm_use_kernel(name) is lx_isa_set for the same set
 * ("portable" or "generic", NULL: back to LINNX_ISA / the best), failing with
 * LX_ERR_UNSUPPORTED for a set this CPU or build cannot run and LX_ERR_INVALID_ARGUMENT for an
 * unknown name (as lx_isa_set). Process-wide settings. */
int64_t lx_sgemm_small_limit(void);
void lx_sgemm_set_small_limit(int64_t limit);
const char *lx_sgemm_kernel(void);
lx_status lx_sgemm_use_kernel(const char *name);

/* ---- array ops ---- */

/* numpy.matmul: 1-D operands are promoted ((K,) -> (1, K) on the left, (K, 1) on the right) and
 * the added axis removed from the result; leading (batch) axes broadcast. Both 1-D gives a 0-d
 * array. Primitive "matmul", no attributes. */
lx_array *lx_matmul(lx_array *a, lx_array *b);

/* jax.lax.dot_general with dimension_numbers ((lhs_contract, rhs_contract), (lhs_batch,
 * rhs_batch)): ncontract pairs of contracted axes and nbatch pairs of batch axes (negative axes
 * count from the end; int64_t like every axis list, so LX_AXES(...) spells one in place). Paired axes must have equal sizes; an axis may appear once. Output axes:
 * batch (in lhs_batch order), then the remaining lhs axes, then the remaining rhs axes, each in
 * their original order. Primitive "dot_general" with attributes lhs_contracting_dims,
 * rhs_contracting_dims, lhs_batch_dims, rhs_batch_dims (normalised, non-negative). */
lx_array *lx_dot_general(lx_array *a, lx_array *b, int ncontract, const int64_t *lhs_contract,
                         const int64_t *rhs_contract, int nbatch, const int64_t *lhs_batch,
                         const int64_t *rhs_batch);

/* ---- a Dense layer in one pass ---- */

/* The activation lx_dense applies after the bias: none, jax.nn.relu, jax.nn.gelu(approximate=True)
 * (Flax's default), jax.nn.gelu(approximate=False), jax.nn.silu. */
typedef enum lx_activation {
    LX_ACT_NONE,
    LX_ACT_RELU,
    LX_ACT_GELU_TANH,
    LX_ACT_GELU_ERF,
    LX_ACT_SILU
} lx_activation;

/* act(x @ kernel + bias): Flax's Dense (dot_general contracting x's last axis with the kernel's
 * first) plus its bias and an activation, as ONE primitive "dense" (attribute `activation`):
 * one GEMM whose epilogue adds the bias (and applies ReLU) per output tile; GELU/SiLU follow in a
 * second pass over the output with the unary ops' vector math. x (..., K) float32 with any
 * leading axes, kernel (K, N) float32, bias (N,) float32 or NULL (none; a failed bias computation
 * must be caught by the caller, as for layer_norm's optional operands). Result (..., N). The
 * result and the gradients (dx, dkernel, dbias) are bit-identical to
 * act(lx_dot_general(x, kernel, ...) + bias) and its backward pass. Errors are those of the ops
 * Flax's Dense runs, as Dense always gave them (a Module path prefix reads "l1: dot_general: ..."):
 * an x that does not meet a 2-D kernel is dot_general's ("dot_general: contracting dimensions
 * must have equal sizes: lhs axis 1 of (2, 5) has size 5, rhs axis 0 of (4, 3) has size 4"), a
 * bias that does not broadcast to (..., N) is add's ("add: operands could not be broadcast
 * together with shapes (2, 3) (4,)"), another dtype dot_general's LX_ERR_DTYPE; a kernel that is
 * not 2-D, and the primitive's own rule (lx_bind), say "dense: x (2, 5), kernel (5, 3, 1) and
 * bias None do not fit ...".
 *
 * While anything watches primitives (an observer: op interceptors, remat's recorder, tracing
 * tools; or a substituter: quantization sessions, remat replay), lx_dense binds dot_general, add
 * and the activation instead, exactly the ops Dense ran before, so every contraction is still a
 * dot_general for them; lx_dense_fuses() says which it does now. LINNX_DENSE=unfused in the
 * environment (read once; a benchmark switch) makes it always do that. */
lx_array *lx_dense(lx_array *x, lx_array *kernel, lx_array *bias, lx_activation act);
bool lx_dense_fuses(void);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
