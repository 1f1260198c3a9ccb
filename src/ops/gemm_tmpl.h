/* The packed GEMM micro-kernel and packing routines, written once and compiled per kernel set
 * (kernels_generic.c, kernels_avx2.c, kernels_avx512.c). Not installed; included by those files
 * only, after they define:
 *   V           the vector type, VL lanes
 *   VZERO() VSET1(x) VLOAD(p) (64-byte-aligned) VLOADU(p) VSTOREU(p, v)
 *   VFMA(a, b, c)  a * b + c (one rounding where the set has FMA)
 *   VMUL(a, b)
 *   TMPL_MR, TMPL_NR (a multiple of VL), TMPL_NAME(x) (a per-set prefix)
 *   TMPL_CUSTOM_UKR (optional): the set writes its own micro-kernel (kernels_avx2.c)
 * Layouts as kernels.h describes. */

#define TMPL_NV (TMPL_NR / VL)

#ifndef TMPL_CUSTOM_UKR
/* C[0:MR, 0:NR] = alpha * (Ap Bp) + beta * C. Accumulators are summed in k order from zero, one
 * FMA per product (where the set has FMA), as the small-path kernels do. */
static void TMPL_NAME(ukr)(int64_t kc, const float *restrict Ap, const float *restrict Bp, float *restrict C,
                           int64_t ldc, float alpha, float beta) {
    V c[TMPL_MR][TMPL_NV];
#pragma GCC unroll 16
    for (int i = 0; i < TMPL_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < TMPL_NV; j++) c[i][j] = VZERO();
    for (int64_t k = 0; k < kc; k++) {
        V b[TMPL_NV];
#pragma GCC unroll 4
        for (int j = 0; j < TMPL_NV; j++) b[j] = VLOAD(Bp + j * VL);
#pragma GCC unroll 16
        for (int i = 0; i < TMPL_MR; i++) {
            V a = VSET1(Ap[i]);
#pragma GCC unroll 4
            for (int j = 0; j < TMPL_NV; j++) c[i][j] = VFMA(a, b[j], c[i][j]);
        }
        Ap += TMPL_MR;
        Bp += TMPL_NR;
    }
    V va = VSET1(alpha), vb = VSET1(beta);
    if (beta == 0.0f) {
#pragma GCC unroll 16
        for (int i = 0; i < TMPL_MR; i++)
#pragma GCC unroll 4
            for (int j = 0; j < TMPL_NV; j++) VSTOREU(C + i * ldc + j * VL, VMUL(va, c[i][j]));
    } else if (beta == 1.0f) {
#pragma GCC unroll 16
        for (int i = 0; i < TMPL_MR; i++)
#pragma GCC unroll 4
            for (int j = 0; j < TMPL_NV; j++)
                VSTOREU(C + i * ldc + j * VL, VFMA(va, c[i][j], VLOADU(C + i * ldc + j * VL)));
    } else {
#pragma GCC unroll 16
        for (int i = 0; i < TMPL_MR; i++)
#pragma GCC unroll 4
            for (int j = 0; j < TMPL_NV; j++)
                VSTOREU(C + i * ldc + j * VL, VFMA(vb, VLOADU(C + i * ldc + j * VL), VMUL(va, c[i][j])));
    }
}

#endif

/* Ap slivers of TMPL_MR rows from A(i, k) = A[i*ars + k*acs], zero rows past mc. */
static void TMPL_NAME(pack_a)(int64_t mc, int64_t kc, const float *restrict A, int64_t ars, int64_t acs,
                              float *restrict Ap) {
    for (int64_t i0 = 0; i0 < mc; i0 += TMPL_MR, Ap += TMPL_MR * kc) {
        int64_t m = mc - i0 < TMPL_MR ? mc - i0 : TMPL_MR;
        const float *a = A + i0 * ars;
        if (m == TMPL_MR && ars == 1) { /* A transposed: each k is MR contiguous values */
            for (int64_t k = 0; k < kc; k++)
#pragma GCC unroll 16
                for (int i = 0; i < TMPL_MR; i++) Ap[k * TMPL_MR + i] = a[k * acs + i];
        } else if (m == TMPL_MR) { /* rows contiguous in k: read rows, write with stride MR */
#pragma GCC unroll 16
            for (int i = 0; i < TMPL_MR; i++)
                for (int64_t k = 0; k < kc; k++) Ap[k * TMPL_MR + i] = a[i * ars + k * acs];
        } else {
            for (int64_t k = 0; k < kc; k++)
                for (int i = 0; i < TMPL_MR; i++) Ap[k * TMPL_MR + i] = i < m ? a[i * ars + k * acs] : 0.0f;
        }
    }
}

/* Bp slivers of TMPL_NR columns from B(k, j) = B[k*brs + j*bcs], zero columns past nc. */
static void TMPL_NAME(pack_b)(int64_t kc, int64_t nc, const float *restrict B, int64_t brs, int64_t bcs,
                              float *restrict Bp) {
    for (int64_t j0 = 0; j0 < nc; j0 += TMPL_NR, Bp += TMPL_NR * kc) {
        int64_t n = nc - j0 < TMPL_NR ? nc - j0 : TMPL_NR;
        const float *b = B + j0 * bcs;
        if (n == TMPL_NR && bcs == 1) {
            for (int64_t k = 0; k < kc; k++)
#pragma GCC unroll 4
                for (int j = 0; j < TMPL_NV; j++) VSTOREU(Bp + k * TMPL_NR + j * VL, VLOADU(b + k * brs + j * VL));
        } else if (n == TMPL_NR) { /* B transposed: columns contiguous in k */
            for (int j = 0; j < TMPL_NR; j++)
                for (int64_t k = 0; k < kc; k++) Bp[k * TMPL_NR + j] = b[j * bcs + k * brs];
        } else {
            for (int64_t k = 0; k < kc; k++)
                for (int j = 0; j < TMPL_NR; j++) Bp[k * TMPL_NR + j] = j < n ? b[k * brs + j * bcs] : 0.0f;
        }
    }
}

#undef TMPL_NV
