/* Internal GEMM entry points shared by the linear-algebra and neural ops (not installed). */
#ifndef LINNX_LINALG_INTERNAL_H
#define LINNX_LINALG_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/cpu.h"
#include "linnx/status.h"

/* linnx's own kernels on the calling thread, whatever the size (never OpenBLAS): what code already
 * running inside a parallel loop (team.h) calls. Arguments as lx_sgemm, already validated. */
void lx_sgemm_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc);

/* Whether a problem of this size runs on the unpacked small path. */
bool lx_sgemm_is_small(int64_t M, int64_t N, int64_t K);

/* Fused epilogue: after C = alpha op(A) op(B) + beta C, add bias[j] to column j (bias NULL: none)
 * and apply the activation on each tile while it is still in cache, with the very operations of
 * the separate ops: z = C + bias rounded once (lx_add), then lx_relu's compare, or the vector math
 * row of lx_gelu / lx_silu (vmath.h) of the kernel set in force; so the result has their bits.
 * y NULL: C = act(z). Else C keeps z (what the activation's backward needs) and y (M x N, leading
 * dimension ldy, not overlapping C) receives act(z). */
typedef enum {
    LX_GEMM_ACT_NONE,
    LX_GEMM_ACT_RELU,
    LX_GEMM_ACT_GELU_TANH,
    LX_GEMM_ACT_GELU_ERF,
    LX_GEMM_ACT_SILU
} lx_gemm_act;
typedef struct {
    const float *bias;
    lx_gemm_act act;
    float *y;
    int64_t ldy;
} lx_gemm_epilogue;

/* The vector-math row (vmath.h) that GELU tanh / GELU erf / SiLU run in kernel set `isa`: the one
 * mapping the epilogue (gemm.c) and lx_dense's pass after the GEMM (dense.c) share, so the two
 * forms give the same bits. NULL for NONE and RELU. */
typedef void (*lx_act_row_fn)(const float *x, float *y, int64_t n);
lx_act_row_fn lx_gemm_act_row(lx_isa isa, lx_gemm_act act);

/* Where lx_dense runs GELU/SiLU: 1 in the GEMM epilogue, 0 as a pass after the GEMM, -1 as
 * LINNX_DENSE says (act_epilogue: the former; the default is the latter). Same bits either way;
 * for tests and same-process measurements. */
void lx_dense_act_in_epilogue(int on);

/* lx_sgemm with an epilogue (NULL: none) on nthreads threads (0: lx_num_threads()). */
lx_status lx_sgemm_ex(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                      const lx_gemm_epilogue *ep, int nthreads);

/* batch products C_b = alpha op(A_b) op(B_b) + beta C_b with A_b = A + b * stride_a (likewise B,
 * C); a stride of 0 shares the operand. C matrices may not overlap. An epilogue's y must be NULL. */
lx_status lx_sgemm_strided_batched(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                                   const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb,
                                   int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c,
                                   int64_t batch, const lx_gemm_epilogue *ep);

/* Which path runs (tests and benchmarks): AUTO chooses by size and kernel set. */
typedef enum { LX_GEMM_PATH_AUTO, LX_GEMM_PATH_SMALL, LX_GEMM_PATH_PACKED, LX_GEMM_PATH_BLAS } lx_gemm_path;
void lx_sgemm_force_path(lx_gemm_path path);

#endif
