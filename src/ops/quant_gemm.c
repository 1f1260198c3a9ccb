/* int8 x int8 -> int32 GEMM: portable, AVX2 and AVX-512 VNNI variants chosen at run time, and the
 * symmetric quantizers (quant.h). C[m, n] = sum_k A[m, k] * Bt[n, k]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/quant.h"
#include "linnx/threads.h"
#include "op_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LX_X86 1
#endif

/* ------------------------------------------------------------------ portable */

static void gemm_portable(int64_t M, int64_t N, int64_t K, const int8_t *a, const int8_t *bt, int32_t *c) {
#pragma omp parallel for schedule(static) num_threads(LX_PAR_THREADS(M * N * K > (1 << 20)))
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            const int8_t *ar = a + m * K, *br = bt + n * K;
            int32_t s = 0;
            for (int64_t k = 0; k < K; k++) s += (int32_t)ar[k] * (int32_t)br[k];
            c[m * N + n] = s;
        }
}

#ifdef LX_X86
/* ------------------------------------------------------------------ AVX2 */

__attribute__((target("avx2"))) static inline int32_t hsum_avx2(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* One row of A against four rows of Bt: |a| is computed once per 32 bytes and reused four times;
 * maddubs(|a|, sign(b, a)) = a*b pairwise in int16 (|a|, |b| <= 127: no saturation), madd with
 * ones widens to int32. The tail (K % 32) is done in scalar code. */
__attribute__((target("avx2"))) static void avx2_row(int64_t N0, int64_t N1, int64_t K, const int8_t *ar,
                                                     const int8_t *bt, int32_t *cr) {
    const int64_t K32 = K & ~(int64_t)31;
    const __m256i ones = _mm256_set1_epi16(1);
    int64_t n = N0;
    for (; n + 4 <= N1; n += 4) {
        const int8_t *b0 = bt + n * K, *b1 = b0 + K, *b2 = b1 + K, *b3 = b2 + K;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t k = 0; k < K32; k += 32) {
            __m256i av = _mm256_loadu_si256((const __m256i *)(ar + k));
            __m256i aa = _mm256_abs_epi8(av);
#define LX_STEP(s, b)                                                                              \
    s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(            \
                                                  _mm256_loadu_si256((const __m256i *)((b) + k)), av)), \
                                              ones))
            LX_STEP(s0, b0);
            LX_STEP(s1, b1);
            LX_STEP(s2, b2);
            LX_STEP(s3, b3);
#undef LX_STEP
        }
        int32_t r0 = hsum_avx2(s0), r1 = hsum_avx2(s1), r2 = hsum_avx2(s2), r3 = hsum_avx2(s3);
        for (int64_t k = K32; k < K; k++) {
            int32_t x = ar[k];
            r0 += x * b0[k], r1 += x * b1[k], r2 += x * b2[k], r3 += x * b3[k];
        }
        cr[n] = r0, cr[n + 1] = r1, cr[n + 2] = r2, cr[n + 3] = r3;
    }
    for (; n < N1; n++) {
        const int8_t *b0 = bt + n * K;
        __m256i s0 = _mm256_setzero_si256();
        for (int64_t k = 0; k < K32; k += 32) {
            __m256i av = _mm256_loadu_si256((const __m256i *)(ar + k));
            __m256i bv = _mm256_loadu_si256((const __m256i *)(b0 + k));
            s0 = _mm256_add_epi32(
                s0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(av), _mm256_sign_epi8(bv, av)), ones));
        }
        int32_t r0 = hsum_avx2(s0);
        for (int64_t k = K32; k < K; k++) r0 += (int32_t)ar[k] * b0[k];
        cr[n] = r0;
    }
}

/* Blocked so a panel of Bt (about 64 KiB) stays in L2 while every row of A passes over it. */
static int64_t panel_rows(int64_t K) {
    int64_t r = K > 0 ? (64 * 1024) / K : 64;
    r = r < 4 ? 4 : r > 256 ? 256 : r;
    return r & ~(int64_t)3;
}

static void gemm_avx2(int64_t M, int64_t N, int64_t K, const int8_t *a, const int8_t *bt, int32_t *c) {
    const int64_t P = panel_rows(K), np = (N + P - 1) / P;
#pragma omp parallel for schedule(static) collapse(2) num_threads(LX_PAR_THREADS(M * N * K > (1 << 20)))
    for (int64_t p = 0; p < np; p++)
        for (int64_t m0 = 0; m0 < M; m0 += 64) {
            int64_t n0 = p * P, n1 = n0 + P < N ? n0 + P : N, m1 = m0 + 64 < M ? m0 + 64 : M;
            for (int64_t m = m0; m < m1; m++) avx2_row(n0, n1, K, a + m * K, bt, c + m * N);
        }
}

/* ------------------------------------------------------------------ AVX-512 VNNI */

/* vpdpbusd multiplies u8 by s8 four at a time into int32 lanes without saturation. A is made
 * unsigned by adding 128 (xor 0x80), so each dot product gains 128 * sum_k b[n, k], taken off
 * with the per-channel sums computed once. Not runnable on the development machine (AVX2 only):
 * compiled here, selected only where __builtin_cpu_supports("avx512vnni") is true. */
/* One row of C; the OpenMP region below only calls it, so no 512-bit value crosses into the
 * outlined region (clang does not give that region the function's target features). */
__attribute__((target("avx512vnni,avx512bw,avx512f"))) static void vnni_row(int64_t m, int64_t N, int64_t K,
                                                                          const int8_t *a, const int8_t *bt,
                                                                          int32_t *c, const int32_t *bsum) {
    const int64_t K64 = K & ~(int64_t)63;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const int8_t *ar = a + m * K;
    for (int64_t n = 0; n < N; n += 4) {
        int nb = N - n < 4 ? (int)(N - n) : 4;
        __m512i s[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                        _mm512_setzero_si512()};
        for (int64_t k = 0; k < K64; k += 64) {
            __m512i au = _mm512_xor_si512(_mm512_loadu_si512((const void *)(ar + k)), flip);
            for (int j = 0; j < nb; j++)
                s[j] = _mm512_dpbusd_epi32(s[j], au, _mm512_loadu_si512((const void *)(bt + (n + j) * K + k)));
        }
        for (int j = 0; j < nb; j++) {
            const int8_t *br = bt + (n + j) * K;
            int32_t r = _mm512_reduce_add_epi32(s[j]) - 128 * bsum[n + j];
            for (int64_t k = K64; k < K; k++) r += (int32_t)ar[k] * br[k];
            c[m * N + n + j] = r;
        }
    }
}

static void gemm_vnni(int64_t M, int64_t N, int64_t K, const int8_t *a, const int8_t *bt, int32_t *c,
                      const int32_t *bsum) {
#pragma omp parallel for schedule(static) num_threads(LX_PAR_THREADS(M * N * K > (1 << 20)))
    for (int64_t m = 0; m < M; m++) vnni_row(m, N, K, a, bt, c, bsum);
}
#endif

/* ------------------------------------------------------------------ dispatch */

bool lx_i8_kernel_supported(lx_i8_kernel k) {
    switch (k) {
    case LX_I8_AUTO:
    case LX_I8_PORTABLE: return true;
#ifdef LX_X86
    case LX_I8_AVX2: return __builtin_cpu_supports("avx2");
    case LX_I8_VNNI: return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
#else
    case LX_I8_AVX2:
    case LX_I8_VNNI: return false;
#endif
    }
    return false;
}

static lx_i8_kernel resolve(lx_i8_kernel k) {
    if (k != LX_I8_AUTO) return k;
    if (lx_i8_kernel_supported(LX_I8_VNNI)) return LX_I8_VNNI;
    if (lx_i8_kernel_supported(LX_I8_AVX2)) return LX_I8_AVX2;
    return LX_I8_PORTABLE;
}

const char *lx_i8_kernel_name(lx_i8_kernel k) {
    switch (resolve(k)) {
    case LX_I8_PORTABLE: return "portable";
    case LX_I8_AVX2: return "avx2";
    case LX_I8_VNNI: return "avx512_vnni";
    default: return "unknown";
    }
}

lx_status lx_i8_gemm(lx_i8_kernel k, int64_t M, int64_t N, int64_t K, const int8_t *a, const int8_t *bt,
                     int32_t *c) {
    if (M < 0 || N < 0 || K < 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm: sizes must be >= 0, got M=%lld N=%lld K=%lld", (long long)M,
                       (long long)N, (long long)K);
    if ((int)k < LX_I8_AUTO || (int)k > LX_I8_VNNI)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm: unknown kernel %d", (int)k);
    if (!lx_i8_kernel_supported(k))
        return lx_fail(LX_ERR_UNSUPPORTED, "i8_gemm: this CPU cannot run the %s kernel", lx_i8_kernel_name(k));
    if (M * N == 0) return LX_OK;
    if ((K > 0 && (!a || !bt)) || !c) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm: NULL buffer");
    switch (resolve(k)) {
#ifdef LX_X86
    case LX_I8_AVX2: gemm_avx2(M, N, K, a, bt, c); return LX_OK;
    case LX_I8_VNNI: {
        /* sum_k b[n, k] over the 64-byte blocks the vector loop covers, once per call */
        int32_t *bsum = malloc(sizeof(int32_t) * (size_t)N);
        if (!bsum) return lx_fail(LX_ERR_NO_MEMORY, "i8_gemm: out of memory");
        const int64_t K64 = K & ~(int64_t)63;
        for (int64_t n = 0; n < N; n++) {
            int32_t t = 0;
            for (int64_t k = 0; k < K64; k++) t += bt[n * K + k];
            bsum[n] = t;
        }
        gemm_vnni(M, N, K, a, bt, c, bsum);
        free(bsum);
        return LX_OK;
    }
#endif
    default: gemm_portable(M, N, K, a, bt, c); return LX_OK;
    }
}

/* ------------------------------------------------------------------ packed weights */

/* Layout: panels of 4 output channels; in a panel, for each chunk of 32 contraction indices, 128
 * bytes: channel 0's 32 values, then channel 1's, 2's, 3's (b[32 g + j, 4 p + c] at byte
 * 128 g + 32 c + j). K is padded to a multiple of 32 and N to 4 with zeros, so the micro-kernel
 * streams one pointer, needs no tail code, and the padding adds nothing to any sum. */
#define LX_I8_NR 4
#define LX_I8_KC 32

struct lx_i8_packed {
    int64_t K, N, Kp, Np;
    int8_t *data; /* Np / 4 panels of Kp * 4 bytes, 64-byte aligned */
};

int64_t lx_i8_packed_k(const lx_i8_packed *p) { return p ? p->K : 0; }
int64_t lx_i8_packed_n(const lx_i8_packed *p) { return p ? p->N : 0; }

void lx_i8_packed_free(lx_i8_packed *p) {
    if (!p) return;
    free(p->data);
    free(p);
}

lx_status lx_i8_pack(int64_t K, int64_t N, const int8_t *b, lx_i8_packed **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_pack: NULL output");
    if (K < 0 || N < 0 || K > (INT64_MAX / 64) / (N + 64))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_pack: sizes must be >= 0 (and fit), got K=%lld N=%lld",
                       (long long)K, (long long)N);
    if (K * N > 0 && !b) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_pack: NULL weights");
    lx_i8_packed *p = calloc(1, sizeof *p);
    if (!p) return lx_fail(LX_ERR_NO_MEMORY, "i8_pack: out of memory");
    p->K = K, p->N = N, p->Kp = (K + LX_I8_KC - 1) / LX_I8_KC * LX_I8_KC;
    p->Np = (N + LX_I8_NR - 1) / LX_I8_NR * LX_I8_NR;
    size_t bytes = (size_t)(p->Kp * p->Np) + 64;
    p->data = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p->data) {
        free(p);
        return lx_fail(LX_ERR_NO_MEMORY, "i8_pack: out of memory (%zu bytes)", bytes);
    }
    memset(p->data, 0, (bytes + 63) / 64 * 64);
    const int64_t pstride = p->Kp * LX_I8_NR; /* bytes per panel */
    for (int64_t k = 0; k < K; k++) {
        const int8_t *row = b + k * N;
        int8_t *dst = p->data + (k / LX_I8_KC) * (LX_I8_KC * LX_I8_NR) + k % LX_I8_KC;
        int64_t n = 0;
        for (; n + LX_I8_NR <= N; n += LX_I8_NR, dst += pstride)
            for (int c = 0; c < LX_I8_NR; c++) dst[c * LX_I8_KC] = row[n + c];
        for (int c = 0; n + c < N; c++) dst[c * LX_I8_KC] = row[n + c];
    }
    *out = p;
    return LX_OK;
}

/* Portable: the same packed layout read back in plain C. */
static void packed_portable(int64_t M, const int8_t *a, const lx_i8_packed *p, int32_t *c) {
#pragma omp parallel for schedule(static) num_threads(LX_PAR_THREADS(M >= 16 && M * p->N * p->K > (1 << 22)))
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < p->N; n++) {
            const int8_t *panel = p->data + (n / LX_I8_NR) * p->Kp * LX_I8_NR + (n % LX_I8_NR) * LX_I8_KC;
            int32_t s = 0;
            for (int64_t k = 0; k < p->K; k++)
                s += (int32_t)a[m * p->K + k] * panel[(k / LX_I8_KC) * (LX_I8_KC * LX_I8_NR) + k % LX_I8_KC];
            c[m * p->N + n] = s;
        }
}

#ifdef LX_X86
/* Four int32 vectors -> their four horizontal sums. */
__attribute__((target("avx2"), always_inline)) static inline __m128i hsum4(__m256i s0, __m256i s1, __m256i s2,
                                                                            __m256i s3) {
    __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

/* MR (1 or 2) rows of A (K padded to Kp) against one 4-channel panel, along K 32 values at a time:
 * |a| is taken once per chunk and row and reused for the 4 channels; maddubs(|a|, sign(b, a))
 * gives a*b summed in pairs in int16 (|a|, |b| <= 127: at most 2 * 127 * 127 = 32258, never
 * saturating), madd with ones sums the pairs into int32 lanes; the lanes are summed at the end. */
__attribute__((target("avx2"), always_inline)) static inline void micro_avx2(const int MR, int64_t G, const int8_t *a,
                                                                             int64_t lda, const int8_t *bp, int32_t *c,
                                                                             int64_t ldc, int ncols) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s[2][4];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < 4; j++) s[r][j] = _mm256_setzero_si256();
    for (int64_t g = 0; g < G; g++) {
        __m256i av[2], aa[2];
        for (int r = 0; r < MR; r++) {
            av[r] = _mm256_loadu_si256((const __m256i *)(a + r * lda + g * LX_I8_KC));
            aa[r] = _mm256_abs_epi8(av[r]);
        }
        const int8_t *bg = bp + g * (LX_I8_KC * LX_I8_NR);
        for (int j = 0; j < 4; j++) {
            __m256i bv = _mm256_load_si256((const __m256i *)(bg + j * LX_I8_KC));
            for (int r = 0; r < MR; r++)
                s[r][j] = _mm256_add_epi32(
                    s[r][j], _mm256_madd_epi16(_mm256_maddubs_epi16(aa[r], _mm256_sign_epi8(bv, av[r])), ones));
        }
    }
    for (int r = 0; r < MR; r++) {
        __m128i v = hsum4(s[r][0], s[r][1], s[r][2], s[r][3]);
        if (ncols == 4) {
            _mm_storeu_si128((__m128i *)(c + r * ldc), v);
        } else {
            int32_t tmp[4];
            _mm_storeu_si128((__m128i *)tmp, v);
            memcpy(c + r * ldc, tmp, sizeof(int32_t) * (size_t)ncols);
        }
    }
}

/* Rows m0..m1 of A against panels p0..p1. */
__attribute__((target("avx2"))) static void block_avx2(int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                                                       const int8_t *a, int64_t lda, const lx_i8_packed *p,
                                                       int32_t *c) {
    const int64_t G = p->Kp / LX_I8_KC;
    for (int64_t pn = p0; pn < p1; pn++) {
        const int8_t *bp = p->data + pn * p->Kp * LX_I8_NR;
        int64_t n0 = pn * LX_I8_NR;
        int ncols = (int)(p->N - n0 < LX_I8_NR ? p->N - n0 : LX_I8_NR);
        int64_t m = m0;
        for (; m + 2 <= m1; m += 2) micro_avx2(2, G, a + m * lda, lda, bp, c + m * p->N + n0, p->N, ncols);
        if (m < m1) micro_avx2(1, G, a + m * lda, lda, bp, c + m * p->N + n0, p->N, ncols);
    }
}

/* Row blocks of A that stay in L2 (about 96 KiB) while the panels stream past them, panels in
 * groups of 16 (64 channels); the (row block, panel group) items are handed out one at a time, so
 * a thread the OS pre-empts delays one item, not half the product. */
static void packed_avx2(int64_t M, const int8_t *a, int64_t lda, const lx_i8_packed *p, int32_t *c) {
    const int64_t np = p->Np / LX_I8_NR, PG = 16;
    int64_t MC = p->Kp > 0 ? (96 * 1024) / p->Kp : M;
    MC = MC < 2 ? 2 : MC & ~(int64_t)1;
    const int64_t nm = (M + MC - 1) / MC, npg = (np + PG - 1) / PG;
    /* few rows (decode's GEMVs): one thread; the product is memory-bound on the weights and a
     * parallel region costs more than it saves (as the float GEMM's small path) */
    const int threads = LX_PAR_THREADS(M >= 16 && M * p->N * p->K > (1 << 22));
#pragma omp parallel for schedule(dynamic, 1) collapse(2) num_threads(threads)
    for (int64_t ib = 0; ib < nm; ib++)
        for (int64_t jb = 0; jb < npg; jb++) {
            int64_t m0 = ib * MC, m1 = m0 + MC < M ? m0 + MC : M, p0 = jb * PG, p1 = p0 + PG < np ? p0 + PG : np;
            block_avx2(m0, m1, p0, p1, a, lda, p, c);
        }
}
#endif

lx_status lx_i8_gemm_packed(lx_i8_kernel k, int64_t M, const int8_t *a, const lx_i8_packed *p, int32_t *c) {
    if (!p || M < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm_packed: NULL weights or M < 0");
    if ((int)k < LX_I8_AUTO || (int)k > LX_I8_VNNI)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm_packed: unknown kernel %d", (int)k);
    if (k == LX_I8_VNNI)
        return lx_fail(LX_ERR_UNSUPPORTED, "i8_gemm_packed: the packed layout has no avx512_vnni kernel yet");
    if (!lx_i8_kernel_supported(k))
        return lx_fail(LX_ERR_UNSUPPORTED, "i8_gemm_packed: this CPU cannot run the %s kernel", lx_i8_kernel_name(k));
    if (M == 0 || p->N == 0) return LX_OK;
    if (!c || (p->K > 0 && !a)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm_packed: NULL buffer");
    if (p->K == 0) {
        memset(c, 0, sizeof(int32_t) * (size_t)(M * p->N));
        return LX_OK;
    }
#ifdef LX_X86
    if (k == LX_I8_AVX2 || (k == LX_I8_AUTO && lx_i8_kernel_supported(LX_I8_AVX2))) {
        /* rows padded to a multiple of 4 bytes for the 4-byte broadcasts (zeros add nothing) */
        const int8_t *ap = a;
        int8_t *pad = NULL;
        if (p->Kp != p->K) {
            pad = calloc((size_t)(M * p->Kp), 1);
            if (!pad) return lx_fail(LX_ERR_NO_MEMORY, "i8_gemm_packed: out of memory");
            for (int64_t m = 0; m < M; m++) memcpy(pad + m * p->Kp, a + m * p->K, (size_t)p->K);
            ap = pad;
        }
        packed_avx2(M, ap, p->Kp, p, c);
        free(pad);
        return LX_OK;
    }
#endif
    packed_portable(M, a, p, c);
    return LX_OK;
}

/* ------------------------------------------------------------------ quantizers */

static int8_t q8(float v, float inv) {
    float r = nearbyintf(v * inv); /* round half to even in the default rounding mode */
    return (int8_t)(r > 127.f ? 127 : r < -127.f ? -127 : r);
}

void lx_quantize_tiles_i8(int64_t rows, int64_t cols, int64_t tile, const float *x, int8_t *q, float *scale) {
    if (tile < 1) tile = cols > 0 ? cols : 1;
    int64_t nt = (cols + tile - 1) / tile;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t t = 0; t < nt; t++) {
            int64_t k0 = t * tile, k1 = k0 + tile < cols ? k0 + tile : cols;
            float mx = 0;
            for (int64_t k = k0; k < k1; k++) mx = fmaxf(mx, fabsf(x[r * cols + k]));
            float s = mx > 0 ? mx / 127.0f : 1.0f, inv = 1.0f / s;
            scale[r * nt + t] = s;
            for (int64_t k = k0; k < k1; k++) q[r * cols + k] = q8(x[r * cols + k], inv);
        }
}

void lx_quantize_rows_i8(int64_t rows, int64_t cols, const float *x, int8_t *q, float *scale) {
    lx_quantize_tiles_i8(rows, cols, cols > 0 ? cols : 1, x, q, scale);
}
