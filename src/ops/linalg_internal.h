/* Internal GEMM entry points shared by the linear-algebra and neural ops (not installed). */
#ifndef LINNX_LINALG_INTERNAL_H
#define LINNX_LINALG_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

/* linnx's own kernel on the calling thread, whatever the size: what code already running inside
 * an OpenMP region calls, so OpenBLAS's threads are not woken from every worker. Arguments as
 * lx_sgemm, already validated. */
void lx_sgemm_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc);

/* Whether a problem of this size runs on the built-in kernel (rather than OpenBLAS). */
bool lx_sgemm_is_small(int64_t M, int64_t N, int64_t K);

#endif
