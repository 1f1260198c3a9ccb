/* The AVX-512 register tiles of the indirect convolution (conv_igemm.c drives them; compiled with
 * -mavx512f/bw/vl/dq, run only after cpuid says so).
 *
 * conv_igemm_ukr_avx512: an 8 x 32 tile of C = A B, the AVX2 tile (conv_avx2.c) twice as wide:
 * row i of A is the gathered window of one output (or, for the input gradient, input) position,
 * read in place through ind[t * 8 + i] (kc contiguous channels per tap, or a zero row), B the
 * kernel packed as 32-column slivers, bp[tap][k][32]. Per k: two B vectors, eight broadcasts and
 * sixteen FMAs into sixteen zmm accumulators (enough independent chains to cover the FMA latency
 * on two ports; 10 loads per 16 FMAs leaves the load ports idle a third of the time). Eight rows,
 * not more: each row's tap pointer lives in a general register for the whole k loop (r8..r15).
 * The k loop is in assembly, four k per iteration, as the AVX2 tile's.
 *
 * conv_dw_ukr_avx512: a tile of the kernel gradient in HWIO order: C[i, j] += sum over positions r
 * of patch(r, m0 + i) * dY[r, co0 + j], eight patch columns (eight channels of one tap, broadcast
 * through the position's tap pointer) by 32 output channels (two vectors of dY's row, masked past
 * the group's channels). dY's rows are read where they lie: no packing, no transpose at the end. */
#include <stdint.h>

#include "conv_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__)
#include <immintrin.h>

#define IG_ROW(u, i, reg, acc0, acc1)                                                                      \
    "vbroadcastss 4*" #u "(%%" reg ",%%rax,4), %%zmm" #i "\n\t"                                              \
    "vfmadd231ps %%zmm16, %%zmm" #i ", %%zmm" #acc0 "\n\t"                                                   \
    "vfmadd231ps %%zmm17, %%zmm" #i ", %%zmm" #acc1 "\n\t"
#define IG_STEP(u)                                                                                         \
    "vmovaps 128*" #u "(%%rdi), %%zmm16\n\t"                                                                 \
    "vmovaps 128*" #u "+64(%%rdi), %%zmm17\n\t"                                                              \
    IG_ROW(u, 18, "r8", 0, 1) IG_ROW(u, 19, "r9", 2, 3) IG_ROW(u, 20, "r10", 4, 5) IG_ROW(u, 21, "r11", 6, 7)      \
    IG_ROW(u, 22, "r12", 8, 9) IG_ROW(u, 23, "r13", 10, 11) IG_ROW(u, 24, "r14", 12, 13)                         \
    IG_ROW(u, 25, "r15", 14, 15)
#define IG_STORE(i) "vmovaps %%zmm" #i ", 64*" #i "(%%rsi)\n\t"

void conv_igemm_ukr_avx512(int mr, int nr, int64_t ntaps, int64_t kc, const float *const *ind, const float *bp,
                           float *C, int64_t ldc, bool acc) {
    /* The whole tile in one asm block (sixteen accumulators as operands would pass GCC's 30):
     * zmm0..15 the accumulators, stored to `out` at the end; r8..r15 the tap's eight row pointers;
     * rsi: the table (then `out`); rdi: B; rax: k; rcx: the k count; rbx: taps left; zmm16/17: B. */
    float out[CONV512_MR * CONV512_NR] __attribute__((aligned(64)));
    const int64_t pp[5] = {(int64_t)(intptr_t)ind, (int64_t)(intptr_t)bp, ntaps, kc, (int64_t)(intptr_t)out};
    __asm__ volatile(
        "mov 0(%[pp]), %%rsi\n\t"
        "mov 8(%[pp]), %%rdi\n\t"
        "mov 16(%[pp]), %%rbx\n\t"
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
        "vmovaps %%zmm0, %%zmm1\n\t" "vmovaps %%zmm0, %%zmm2\n\t" "vmovaps %%zmm0, %%zmm3\n\t"
        "vmovaps %%zmm0, %%zmm4\n\t" "vmovaps %%zmm0, %%zmm5\n\t" "vmovaps %%zmm0, %%zmm6\n\t"
        "vmovaps %%zmm0, %%zmm7\n\t" "vmovaps %%zmm0, %%zmm8\n\t" "vmovaps %%zmm0, %%zmm9\n\t"
        "vmovaps %%zmm0, %%zmm10\n\t" "vmovaps %%zmm0, %%zmm11\n\t" "vmovaps %%zmm0, %%zmm12\n\t"
        "vmovaps %%zmm0, %%zmm13\n\t" "vmovaps %%zmm0, %%zmm14\n\t" "vmovaps %%zmm0, %%zmm15\n\t"
        "test %%rbx, %%rbx\n\t"
        "jz 5f\n"
        "0:\n\t"
        "mov 0(%%rsi), %%r8\n\t"
        "mov 8(%%rsi), %%r9\n\t"
        "mov 16(%%rsi), %%r10\n\t"
        "mov 24(%%rsi), %%r11\n\t"
        "mov 32(%%rsi), %%r12\n\t"
        "mov 40(%%rsi), %%r13\n\t"
        "mov 48(%%rsi), %%r14\n\t"
        "mov 56(%%rsi), %%r15\n\t"
        "xor %%eax, %%eax\n\t"
        "mov 24(%[pp]), %%rcx\n\t"
        "shr $2, %%rcx\n\t"
        "jz 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        IG_STEP(0) IG_STEP(1) IG_STEP(2) IG_STEP(3)
        "add $4, %%rax\n\t"
        "add $512, %%rdi\n\t"
        "dec %%rcx\n\t"
        "jnz 1b\n"
        "2:\n\t"
        "mov 24(%[pp]), %%rcx\n\t"
        "and $3, %%rcx\n\t"
        "jz 4f\n"
        "3:\n\t"
        IG_STEP(0)
        "add $1, %%rax\n\t"
        "add $128, %%rdi\n\t"
        "dec %%rcx\n\t"
        "jnz 3b\n"
        "4:\n\t"
        "add $64, %%rsi\n\t"
        "dec %%rbx\n\t"
        "jnz 0b\n"
        "5:\n\t"
        "mov 32(%[pp]), %%rsi\n\t"
        IG_STORE(0) IG_STORE(1) IG_STORE(2) IG_STORE(3) IG_STORE(4) IG_STORE(5) IG_STORE(6) IG_STORE(7)
        IG_STORE(8) IG_STORE(9) IG_STORE(10) IG_STORE(11) IG_STORE(12) IG_STORE(13) IG_STORE(14) IG_STORE(15)
        :
        : [pp] "r"(pp)
        : "rax", "rbx", "rcx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "xmm0",
          "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
          "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25",
          "memory", "cc");
    if (nr == CONV512_NR) {
        for (int i = 0; i < mr; i++) {
            float *c = C + i * ldc;
            __m512 r0 = _mm512_load_ps(out + i * 32), r1 = _mm512_load_ps(out + i * 32 + 16);
            if (acc) {
                _mm512_storeu_ps(c, _mm512_add_ps(_mm512_loadu_ps(c), r0));
                _mm512_storeu_ps(c + 16, _mm512_add_ps(_mm512_loadu_ps(c + 16), r1));
            } else {
                _mm512_storeu_ps(c, r0);
                _mm512_storeu_ps(c + 16, r1);
            }
        }
    } else {
        const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1);
        const __mmask16 m1 = (__mmask16)(nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
        for (int i = 0; i < mr; i++) {
            float *c = C + i * ldc;
            __m512 r0 = _mm512_load_ps(out + i * 32), r1 = _mm512_load_ps(out + i * 32 + 16);
            if (acc) {
                _mm512_mask_storeu_ps(c, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), r0));
                _mm512_mask_storeu_ps(c + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), r1));
            } else {
                _mm512_mask_storeu_ps(c, m0, r0);
                _mm512_mask_storeu_ps(c + 16, m1, r1);
            }
        }
    }
}
#undef IG_STORE
#undef IG_STEP
#undef IG_ROW

static inline __attribute__((always_inline)) void dw_tile512(const bool full, int64_t rows, const float *const *ind,
                                                             int64_t ks, int64_t t, int64_t ci0, const float *dy,
                                                             int64_t ldy, int nc, float *C, int64_t ldc) {
    const __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xffff : (1u << nc) - 1);
    const __mmask16 m1 = (__mmask16)(nc <= 16 ? 0 : nc >= 32 ? 0xffff : (1u << (nc - 16)) - 1);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, d0 = a0, d1 = a0, e0 = a0, e1 = a0;
    __m512 f0 = a0, f1 = a0, g0 = a0, g1 = a0, h0 = a0, h1 = a0, k0 = a0, k1 = a0;
    for (int i = 0; i < 8; i++) /* the sums this tile adds to: in L1 by the end of the row loop */
        _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0), _mm_prefetch((const char *)(C + i * ldc + 16), _MM_HINT_T0);
    const float *const *p = ind + t;
    for (int64_t r = 0; r < rows; r++, p += ks, dy += ldy) {
        const float *x = *p + ci0;
        /* plain loads for a full tile: a masked load costs an FMA port's slot here */
        __m512 y0 = full ? _mm512_loadu_ps(dy) : _mm512_maskz_loadu_ps(m0, dy);
        __m512 y1 = full ? _mm512_loadu_ps(dy + 16) : _mm512_maskz_loadu_ps(m1, dy + 16), s;
        s = _mm512_set1_ps(x[0]), a0 = _mm512_fmadd_ps(s, y0, a0), a1 = _mm512_fmadd_ps(s, y1, a1);
        s = _mm512_set1_ps(x[1]), b0 = _mm512_fmadd_ps(s, y0, b0), b1 = _mm512_fmadd_ps(s, y1, b1);
        s = _mm512_set1_ps(x[2]), d0 = _mm512_fmadd_ps(s, y0, d0), d1 = _mm512_fmadd_ps(s, y1, d1);
        s = _mm512_set1_ps(x[3]), e0 = _mm512_fmadd_ps(s, y0, e0), e1 = _mm512_fmadd_ps(s, y1, e1);
        s = _mm512_set1_ps(x[4]), f0 = _mm512_fmadd_ps(s, y0, f0), f1 = _mm512_fmadd_ps(s, y1, f1);
        s = _mm512_set1_ps(x[5]), g0 = _mm512_fmadd_ps(s, y0, g0), g1 = _mm512_fmadd_ps(s, y1, g1);
        s = _mm512_set1_ps(x[6]), h0 = _mm512_fmadd_ps(s, y0, h0), h1 = _mm512_fmadd_ps(s, y1, h1);
        s = _mm512_set1_ps(x[7]), k0 = _mm512_fmadd_ps(s, y0, k0), k1 = _mm512_fmadd_ps(s, y1, k1);
    }
    __m512 r[8][2] = {{a0, a1}, {b0, b1}, {d0, d1}, {e0, e1}, {f0, f1}, {g0, g1}, {h0, h1}, {k0, k1}};
    for (int i = 0; i < 8; i++) {
        float *c = C + i * ldc;
        _mm512_mask_storeu_ps(c, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), r[i][0]));
        _mm512_mask_storeu_ps(c + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), r[i][1]));
    }
}

void conv_dw_ukr_avx512(int64_t rows, const float *const *ind, int64_t ks, int64_t t, int64_t ci0, const float *dy,
                        int64_t ldy, int nc, float *C, int64_t ldc) {
    if (nc == CONV512_NR) dw_tile512(true, rows, ind, ks, t, ci0, dy, ldy, nc, C, ldc);
    else dw_tile512(false, rows, ind, ks, t, ci0, dy, ldy, nc, C, ldc);
}

#endif

