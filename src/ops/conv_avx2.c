/* The AVX2+FMA register tiles of the indirect convolution (conv_igemm.c drives them; compiled with
 * -mavx2 -mfma, run only after cpuid says so).
 *
 * conv_igemm_ukr_avx2: a 6 x 16 tile of C = A B where row i of A is the gathered window of one
 * output (or, for the input gradient, input) position, read in place through the pointers
 * ind[t * 6 + i] (one per tap: kc contiguous channels of the NHWC image, or a zero row for padding),
 * and B is the kernel packed as 16-column slivers (conv_igemm.c). This is XNNPACK's indirect GEMM:
 * the patch matrix is never written. The k loop is in assembly, as in kernels_avx2.c's GEMM tile:
 * four k per iteration, the two B vectors loaded ahead of the twelve FMAs, each A value a broadcast
 * straight from the image.
 *
 * conv_dw_ukr_avx2: a tile of the kernel gradient, transposed: C[co, m] += sum over positions r of
 * dY[r, co] * patch(r, m), six output channels (broadcasts from dY's row) by sixteen patch columns
 * (two runs of eight channels, each through the position's tap pointer). */
#include <math.h>
#include <stdint.h>

#include "conv_internal.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define IG_STEP(u)                                                                                         \
    "vmovaps 64*" #u "(%[b]), %%ymm13\n\t"                                                                 \
    "vmovaps 64*" #u "+32(%[b]), %%ymm14\n\t"                                                              \
    "vbroadcastss 4*" #u "(%%r8,%%rax,4), %%ymm15\n\t"                                                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[c00]\n\t"                                                             \
    "vfmadd231ps %%ymm14, %%ymm15, %[c01]\n\t"                                                             \
    "vbroadcastss 4*" #u "(%%r9,%%rax,4), %%ymm15\n\t"                                                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[c10]\n\t"                                                             \
    "vfmadd231ps %%ymm14, %%ymm15, %[c11]\n\t"                                                             \
    "vbroadcastss 4*" #u "(%%r10,%%rax,4), %%ymm15\n\t"                                                    \
    "vfmadd231ps %%ymm13, %%ymm15, %[c20]\n\t"                                                             \
    "vfmadd231ps %%ymm14, %%ymm15, %[c21]\n\t"                                                             \
    "vbroadcastss 4*" #u "(%%r11,%%rax,4), %%ymm15\n\t"                                                    \
    "vfmadd231ps %%ymm13, %%ymm15, %[c30]\n\t"                                                             \
    "vfmadd231ps %%ymm14, %%ymm15, %[c31]\n\t"                                                             \
    "vbroadcastss 4*" #u "(%%r12,%%rax,4), %%ymm15\n\t"                                                    \
    "vfmadd231ps %%ymm13, %%ymm15, %[c40]\n\t"                                                             \
    "vfmadd231ps %%ymm14, %%ymm15, %[c41]\n\t"                                                             \
    "vbroadcastss 4*" #u "(%%r13,%%rax,4), %%ymm15\n\t"                                                    \
    "vfmadd231ps %%ymm13, %%ymm15, %[c50]\n\t"                                                             \
    "vfmadd231ps %%ymm14, %%ymm15, %[c51]\n\t"

void conv_igemm_ukr_avx2(int mr, int nr, int64_t ntaps, int64_t kc, const float *const *ind, const float *bp,
                         float *C, int64_t ldc, bool acc) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t tap = 0; tap < ntaps; tap++, ind += CONV_MR) {
        /* r8..r13: the tap's six row pointers; rax: k; rcx: the loop count; ymm13/14: B; ymm15: A */
        __asm__ volatile(
            "mov 0(%[ind]), %%r8\n\t"
            "mov 8(%[ind]), %%r9\n\t"
            "mov 16(%[ind]), %%r10\n\t"
            "mov 24(%[ind]), %%r11\n\t"
            "mov 32(%[ind]), %%r12\n\t"
            "mov 40(%[ind]), %%r13\n\t"
            "xor %%eax, %%eax\n\t"
            "mov %[kc], %%rcx\n\t"
            "shr $2, %%rcx\n\t"
            "jz 2f\n\t"
            ".p2align 5\n"
            "1:\n\t"
            IG_STEP(0) IG_STEP(1) IG_STEP(2) IG_STEP(3)
            "add $4, %%rax\n\t"
            "add $256, %[b]\n\t"
            "dec %%rcx\n\t"
            "jnz 1b\n"
            "2:\n\t"
            "mov %[kc], %%rcx\n\t"
            "and $3, %%rcx\n\t"
            "jz 4f\n"
            "3:\n\t"
            IG_STEP(0)
            "add $1, %%rax\n\t"
            "add $64, %[b]\n\t"
            "dec %%rcx\n\t"
            "jnz 3b\n"
            "4:\n"
            : [b] "+r"(bp), [c00] "+x"(c00), [c01] "+x"(c01), [c10] "+x"(c10), [c11] "+x"(c11), [c20] "+x"(c20),
              [c21] "+x"(c21), [c30] "+x"(c30), [c31] "+x"(c31), [c40] "+x"(c40), [c41] "+x"(c41), [c50] "+x"(c50),
              [c51] "+x"(c51)
            : [ind] "r"(ind), [kc] "r"(kc)
            : "rax", "rcx", "r8", "r9", "r10", "r11", "r12", "r13", "xmm13", "xmm14", "xmm15", "memory", "cc");
    }
    __m256 r[CONV_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    if (nr == CONV_NR) {
        for (int i = 0; i < mr; i++) {
            float *c = C + i * ldc;
            if (acc) {
                _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), r[i][0]));
                _mm256_storeu_ps(c + 8, _mm256_add_ps(_mm256_loadu_ps(c + 8), r[i][1]));
            } else {
                _mm256_storeu_ps(c, r[i][0]);
                _mm256_storeu_ps(c + 8, r[i][1]);
            }
        }
    } else {
        float tile[16];
        for (int i = 0; i < mr; i++) {
            float *c = C + i * ldc;
            _mm256_storeu_ps(tile, r[i][0]);
            _mm256_storeu_ps(tile + 8, r[i][1]);
            if (acc)
                for (int j = 0; j < nr; j++) c[j] += tile[j];
            else
                for (int j = 0; j < nr; j++) c[j] = tile[j];
        }
    }
}
#undef IG_STEP

static inline __attribute__((always_inline)) void dw_tile(const int MR, const bool two, int64_t rows, const float *a,
                                                          int64_t lda, const float *const *ind, int64_t ks, int64_t t0,
                                                          int64_t o0, int64_t t1, int64_t o1, float *C, int64_t ldc) {
    __m256 c0[CONV_MR], c1[CONV_MR];
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    const float *const *p0 = ind + t0, *const *p1 = ind + t1;
    for (int64_t r = 0; r < rows; r++, a += lda, p0 += ks, p1 += ks) {
        __m256 b0 = _mm256_loadu_ps(*p0 + o0), b1 = two ? _mm256_loadu_ps(*p1 + o1) : b0;
        for (int i = 0; i < MR; i++) {
            __m256 s = _mm256_broadcast_ss(a + i);
            c0[i] = _mm256_fmadd_ps(s, b0, c0[i]);
            if (two) c1[i] = _mm256_fmadd_ps(s, b1, c1[i]);
        }
    }
    for (int i = 0; i < MR; i++) {
        float *c = C + i * ldc;
        _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), c0[i]));
        if (two) _mm256_storeu_ps(c + 8, _mm256_add_ps(_mm256_loadu_ps(c + 8), c1[i]));
    }
}

/* The full 6 x 16 tile, its position loop in assembly (GCC kept the twelve accumulators of
 * dw_tile on the stack). */
static void dw_full(int64_t rows, const float *a, int64_t lda, const float *const *ind, int64_t ks, int64_t t0,
                    int64_t o0, int64_t t1, int64_t o1, float *C, int64_t ldc) {
    const int64_t pp[9] = {(int64_t)(intptr_t)a, (int64_t)(intptr_t)ind, rows, lda * 4, ks * 8, t0 * 8, t1 * 8, o0 * 4, o1 * 4};
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#define DW_ROW(i)                                                                                          \
    "vbroadcastss 4*" #i "(%%rsi), %%ymm15\n\t"                                                            \
    "vfmadd231ps %%ymm13, %%ymm15, %[c" #i "0]\n\t"                                                        \
    "vfmadd231ps %%ymm14, %%ymm15, %[c" #i "1]\n\t"
    __asm__ volatile(
        "mov 0(%[pp]), %%rsi\n\t"
        "mov 8(%[pp]), %%rdi\n\t"
        "mov 16(%[pp]), %%rcx\n\t"
        "mov 24(%[pp]), %%rdx\n\t"
        "mov 32(%[pp]), %%r8\n\t"
        "mov 40(%[pp]), %%r9\n\t"
        "mov 48(%[pp]), %%r10\n\t"
        "mov 56(%[pp]), %%r11\n\t"
        "mov 64(%[pp]), %%r12\n\t"
        "test %%rcx, %%rcx\n\t"
        "jz 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        "mov (%%rdi,%%r9), %%rax\n\t"
        "mov (%%rdi,%%r10), %%r13\n\t"
        "vmovups (%%rax,%%r11), %%ymm13\n\t"
        "vmovups (%%r13,%%r12), %%ymm14\n\t"
        DW_ROW(0) DW_ROW(1) DW_ROW(2) DW_ROW(3) DW_ROW(4) DW_ROW(5)
        "add %%rdx, %%rsi\n\t"
        "add %%r8, %%rdi\n\t"
        "dec %%rcx\n\t"
        "jnz 1b\n"
        "2:\n"
        : [c00] "+x"(c00), [c01] "+x"(c01), [c10] "+x"(c10), [c11] "+x"(c11), [c20] "+x"(c20), [c21] "+x"(c21),
          [c30] "+x"(c30), [c31] "+x"(c31), [c40] "+x"(c40), [c41] "+x"(c41), [c50] "+x"(c50), [c51] "+x"(c51)
        : [pp] "r"(pp)
        : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "xmm13", "xmm14", "xmm15",
          "memory", "cc");
#undef DW_ROW
    __m256 r[CONV_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < CONV_MR; i++) {
        float *c = C + i * ldc;
        _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), r[i][0]));
        _mm256_storeu_ps(c + 8, _mm256_add_ps(_mm256_loadu_ps(c + 8), r[i][1]));
    }
}

void conv_dw_ukr_avx2(int mr, int nr, int64_t rows, const float *a, int64_t lda, const float *const *ind, int64_t ks,
                      int64_t t0, int64_t o0, int64_t t1, int64_t o1, float *C, int64_t ldc) {
    if (mr == CONV_MR && nr == CONV_NR) {
        dw_full(rows, a, lda, ind, ks, t0, o0, t1, o1, C, ldc);
        return;
    }
#define DW_CASE(m)                                                                                         \
    case m:                                                                                                \
        if (nr > 8) dw_tile(m, true, rows, a, lda, ind, ks, t0, o0, t1, o1, C, ldc);                       \
        else dw_tile(m, false, rows, a, lda, ind, ks, t0, o0, t1, o1, C, ldc);                             \
        break;
    switch (mr) { DW_CASE(1) DW_CASE(2) DW_CASE(3) DW_CASE(4) DW_CASE(5) DW_CASE(6) }
#undef DW_CASE
}

#endif

#if defined(__AVX2__) && defined(__FMA__)
/* The kernel gradient for few patch columns (input channels per group not a multiple of 8, such
 * as a first layer's one to three): acc[m * cog + co] += patch(r, m) * dy[r * ldy + co] over rows
 * r, m = t * cig + ci. Per patch column and block of 32 output channels, four accumulators run
 * down the rows (dy's rows of the block stay in L1); the last channels below 8 are scalar. */
void conv_dw_rows_avx2(int64_t rows, const float *const *ind, int64_t ks, int64_t cig, const float *dy, int64_t ldy,
                       int64_t cog, float *acc) {
    const int64_t nv = cog / 8;
    for (int64_t t = 0; t < ks; t++)
        for (int64_t ci = 0; ci < cig; ci++) {
            float *a = acc + (t * cig + ci) * cog;
            const float *const *p = ind + t;
            int64_t v = 0;
            for (; v + 4 <= nv; v += 4) {
                __m256 a0 = _mm256_loadu_ps(a + v * 8), a1 = _mm256_loadu_ps(a + v * 8 + 8),
                       a2 = _mm256_loadu_ps(a + v * 8 + 16), a3 = _mm256_loadu_ps(a + v * 8 + 24);
                const float *d = dy + v * 8;
                for (int64_t r = 0; r < rows; r++, d += ldy) {
                    __m256 s = _mm256_broadcast_ss(p[r * ks] + ci);
                    a0 = _mm256_fmadd_ps(s, _mm256_loadu_ps(d), a0);
                    a1 = _mm256_fmadd_ps(s, _mm256_loadu_ps(d + 8), a1);
                    a2 = _mm256_fmadd_ps(s, _mm256_loadu_ps(d + 16), a2);
                    a3 = _mm256_fmadd_ps(s, _mm256_loadu_ps(d + 24), a3);
                }
                _mm256_storeu_ps(a + v * 8, a0), _mm256_storeu_ps(a + v * 8 + 8, a1);
                _mm256_storeu_ps(a + v * 8 + 16, a2), _mm256_storeu_ps(a + v * 8 + 24, a3);
            }
            for (; v < nv; v++) {
                __m256 a0 = _mm256_loadu_ps(a + v * 8);
                const float *d = dy + v * 8;
                for (int64_t r = 0; r < rows; r++, d += ldy) a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p[r * ks] + ci), _mm256_loadu_ps(d), a0);
                _mm256_storeu_ps(a + v * 8, a0);
            }
            for (int64_t co = nv * 8; co < cog; co++) {
                float s = a[co];
                for (int64_t r = 0; r < rows; r++) s = fmaf(p[r * ks][ci], dy[r * ldy + co], s);
                a[co] = s;
            }
        }
}
#endif
