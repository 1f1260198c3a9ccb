/* Run-time dispatched kernels (not installed): one table per kernel set (linnx/cpu.h).
 *
 * kernels_generic.c is compiled for the architecture's baseline, kernels_avx2.c with AVX2+FMA and
 * kernels_avx512.c with AVX-512 (CMakeLists.txt); a table whose instructions this build could not
 * compile is NULL. lx_kernels_active() returns the table of the set in force: callers fetch it once per
 * op (an atomic load), never cache it across calls, so lx_isa_set takes effect at the next op. */
#ifndef LINNX_KERNELS_H
#define LINNX_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "conv_internal.h"
#include "linnx/cpu.h"

/* ---- GEMM pieces (gemm.c drives them) ----
 * Packed layout (BLIS): an A block of mc x kc is stored as ceil(mc / MR) slivers, sliver s holding
 * Ap[s*MR*kc + k*MR + i] = A(s*MR + i, k) (zero past mc); a B block of kc x nc as slivers of NR
 * columns, Bp[t*NR*kc + k*NR + j] = B(k, t*NR + j) (zero past nc). A(i, k) = A[i*ars + k*acs],
 * B(k, j) = B[k*brs + j*bcs]: transposes are stride swaps. */
typedef struct {
    int mr, nr; /* register tile */
    /* C[0:MR, 0:NR] = alpha * Ap Bp + beta * C over kc; beta == 0 never reads C. */
    void (*ukr)(int64_t kc, const float *Ap, const float *Bp, float *C, int64_t ldc, float alpha, float beta);
    void (*pack_a)(int64_t mc, int64_t kc, const float *A, int64_t ars, int64_t acs, float *Ap);
    void (*pack_b)(int64_t kc, int64_t nc, const float *B, int64_t brs, int64_t bcs, float *Bp);
    /* The unpacked small-problem kernel: one K block of a column panel, C[0:M, 0:nr] (+)= alpha
     * A[0:M, 0:kc] B[0:kc, 0:nr], nr <= GEMM_SMALL_NR; B(k, j) = B[k*ldb + j] readable (zeros past
     * nr) up to the next multiple of 16 columns; `first` applies beta, later blocks add. */
    void (*small_panel)(int64_t M, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs, const float *B,
                        int64_t ldb, float alpha, float beta, bool first, float *C, int64_t ldc);
    /* panel[k*GEMM_SMALL_NR + j] = Bt[j*ld + k] for j < nr, k < kc; zeros in columns [nr, 16 * ceil(nr/16)). */
    void (*small_pack_bt)(const float *Bt, int64_t ld, int nr, int64_t kc, float *panel);
    /* Optional (NULL: small_panel): small_panel that also prefetches into L2, spread over its k
     * loops, the lines from pf on (the panel path's next packed panel; any address is harmless). */
    void (*panel_pf)(int64_t M, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs, const float *B,
                     int64_t ldb, float alpha, float beta, bool first, float *C, int64_t ldc, const float *pf);
    /* true: with M == 1, small_panel reads B only in columns [0, nr) (masked loads), so the driver
     * passes a ragged panel in place instead of a zero-padded copy */
    bool small_row_exact;
    /* Optional (NULL: none): ukr with A read in place, A(i, k) = A[i*lda + k] for i < MR (every
     * row exists), so that a batch-sized product need not pack A. Same sums, same bits as ukr. */
    void (*ukr_ua)(int64_t kc, const float *A, int64_t lda, const float *Bp, float *C, int64_t ldc, float alpha,
                   float beta);
    /* Optional (NULL: ukr into a buffer): ukr for an edge tile of mr < MR rows (the sliver's rows past
     * mr are zeros and are not computed) and all NR columns, written straight to C as the buffer's
     * copy-out writes it: v = alpha * acc, then C = v (beta 0), C + v (beta 1), else v + beta * C. */
    void (*ukr_rows)(int mr, int64_t kc, const float *Ap, const float *Bp, float *C, int64_t ldc, float alpha,
                     float beta);
    /* The fused epilogue's bias and ReLU on a finished m x n block of C (gemm.c runs it on each
     * tile right after its last K block): z = C + bias (bias NULL: z = C), one rounding, as
     * lx_add; then, Y NULL: C = relu ? relu(z) : z; else C = z and Y = relu ? relu(z) : z.
     * relu(z) is z < 0 ? +0 : z (NaN and -0 kept), as lx_relu. Every set has one (AVX-512's is
     * the AVX2 set's, lx_gemm_epi_avx2). */
    void (*epi)(float *C, int64_t ldc, int64_t m, int64_t n, const float *bias, bool relu, float *Y, int64_t ldy);
} lx_gemm_kernels;

#define GEMM_SMALL_NR 64 /* widest small-path panel */
#define GEMM_SMALL_KC 256

typedef struct {
    lx_isa isa;
    const char *gemm_name; /* lx_sgemm_kernel(): "avx512", "avx2", "portable" */
    lx_gemm_kernels gemm;
    /* y = softmax(x) or log_softmax(x) over n contiguous values; y may be x. */
    void (*softmax_row)(const float *x, float *y, int64_t n, bool log);
    /* log(sum(exp(x))) over n contiguous values, as max + log(sum(exp(x - max))) (all -inf: -inf). */
    float (*logsumexp_row)(const float *x, int64_t n);
    /* One LayerNorm (center true) or RMSNorm row (nn.c's norm_row_forward); stats, if not NULL,
     * receives (mean, rstd). */
    void (*norm_row)(const float *x, float *y, int64_t d, const float *scale, const float *bias, int64_t f, float eps,
                     bool center, float *stats);
    /* Optional (NULL: none): norm_row writing y with non-temporal (streaming) stores where y is
     * 32-byte aligned, plain stores at the ends; the same bits. For outputs much larger than the
     * last-level cache (nn.c's norm_forward decides): the output's lines are not read for
     * ownership first. Streaming stores are weakly ordered: each thread that ran it issues a store
     * fence (sfence) before its results are read elsewhere. */
    void (*norm_row_stream)(const float *x, float *y, int64_t d, const float *scale, const float *bias, int64_t f,
                            float eps, bool center, float *stats);
    /* One output row of the direct convolution (conv_direct.c). */
    void (*conv_direct_row)(const struct conv_direct_plan *p, const float *row, float *y);
} lx_kernels;

const lx_kernels *lx_kernels_generic(void);
const lx_kernels *lx_kernels_avx2(void);   /* NULL when not compiled */
/* The AVX2 set's GEMM epilogue block (lx_gemm_kernels.epi), shared by the AVX-512 set. */
void lx_gemm_epi_avx2(float *C, int64_t ldc, int64_t m, int64_t n, const float *bias, bool relu, float *Y, int64_t ldy);
const lx_kernels *lx_kernels_avx512(void); /* NULL when not compiled */

/* The table of the kernel set in force. */
const lx_kernels *lx_kernels_active(void);
const lx_kernels *lx_kernels_for(lx_isa isa);

#endif
