/* int8 x int8 -> int32 GEMM: portable, AVX2, AVX-512 VNNI and AMX-INT8 variants chosen at run time, and the
 * symmetric quantizers (quant.h). C[m, n] = sum_k A[m, k] * Bt[n, k]. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/cpu.h"
#include "linnx/quant.h"
#include "linnx/threads.h"
#include "../core/quant_internal.h"
#include "op_internal.h"
#include "team.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define LX_X86 1
#endif
/* AMX intrinsics and target attributes: gcc 11+, clang 12+, 64-bit only, and an assembler that
 * knows the tile instructions (CMake's probe defines LINNX_NO_AMX when it does not) */
#if defined(LX_X86) && defined(__x86_64__) && !defined(LINNX_NO_AMX) &&                              \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define LX_AMX 1
#endif

#ifdef LX_X86
/* Per-thread scratch kept between calls, as the f32 GEMM keeps its packing buffers (gemm.c): the
 * padded (AVX2, VNNI) or tile-major (AMX) copy of A in slot 0, AMX's edge tiles in slots 1 and 2;
 * so a steady-state decode step's int8 products allocate nothing. A block above I8_KEEP bytes is
 * the caller's alone (*own, to free); kept blocks are freed when their thread exits. 64-byte
 * aligned. */
#define I8_SLOTS 3
#define I8_KEEP ((size_t)16 << 20)
static pthread_key_t i8_key[I8_SLOTS];
static pthread_once_t i8_once = PTHREAD_ONCE_INIT;
static _Thread_local void *i8_ptr[I8_SLOTS];
static _Thread_local size_t i8_cap[I8_SLOTS];
static void i8_scratch_free(void *p) { free(p); }
static void i8_keys(void) {
    for (int i = 0; i < I8_SLOTS; i++) (void)lx_tls_key_create(&i8_key[i], i8_scratch_free);
}

static void *i8_scratch(int slot, size_t bytes, void **own) {
    *own = NULL;
    if (bytes <= i8_cap[slot]) return i8_ptr[slot];
    bytes = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes);
    if (!p || bytes > I8_KEEP) return *own = p;
    pthread_once(&i8_once, i8_keys);
    free(i8_ptr[slot]);
    i8_ptr[slot] = p;
    i8_cap[slot] = bytes;
    (void)pthread_setspecific(i8_key[slot], p);
    return p;
}
#endif

/* ------------------------------------------------------------------ portable */

/* The context of every int8 product's parallel loop below: the operands, the sizes, and the
 * blocking of the loop's items. */
typedef struct i8_job {
    int64_t M, N, K;
    const int8_t *a, *bt;
    const uint8_t *ua;
    int64_t lda;
    const lx_i8_packed *p;
    int32_t *c;
    int64_t P, np, MC, nm, npg, PG;
    void (*row)(int64_t, int64_t, int64_t, const int8_t *, const int8_t *, int32_t *);
} i8_job;

static int portable_rows(void *ctx, int64_t lo, int64_t hi) {
    const i8_job *j = ctx;
    const int64_t N = j->N, K = j->K;
    for (int64_t m = lo; m < hi; m++)
        for (int64_t n = 0; n < N; n++) {
            const int8_t *ar = j->a + m * K, *br = j->bt + n * K;
            int32_t s = 0;
            for (int64_t k = 0; k < K; k++) s += (int32_t)ar[k] * (int32_t)br[k];
            j->c[m * N + n] = s;
        }
    return 0;
}

static void gemm_portable(int64_t M, int64_t N, int64_t K, const int8_t *a, const int8_t *bt, int32_t *c) {
    i8_job j = {.M = M, .N = N, .K = K, .a = a, .bt = bt, .c = c};
    lx_parallel_for(LX_PAR_THREADS(M * N * K > (1 << 20)), M, portable_rows, &j);
}

#ifdef LX_X86
/* ------------------------------------------------------------------ AVX2 */

__attribute__((target("avx2"))) static inline int32_t hsum_avx2(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* acc += the 32 products av[j] * bv[j] summed into 8 int32 lanes. Fast (exact = 0):
 * maddubs(|a|, sign(b, a)) = a*b pairwise in int16, madd with ones widens to int32; exact when b
 * is never -128 (a = -128 is fine: |a| = 128 read as u8, and 2 * 128 * 127 = 32512 does not
 * saturate), wrong for b = -128 (sign(-128, a < 0) wraps to -128, and -128 * -128 pairs saturate).
 * Widened (exact = 1): both sign-extended to int16 and madd'ed, exact for every value, about
 * twice the instructions. */
__attribute__((target("avx2"), always_inline)) static inline __m256i dot32_avx2(const int exact, __m256i acc,
                                                                                __m256i av, __m256i aa,
                                                                                __m256i bv) {
    if (exact) {
        __m256i lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(av)),
                                       _mm256_cvtepi8_epi16(_mm256_castsi256_si128(bv)));
        __m256i hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(av, 1)),
                                       _mm256_cvtepi8_epi16(_mm256_extracti128_si256(bv, 1)));
        return _mm256_add_epi32(acc, _mm256_add_epi32(lo, hi));
    }
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(bv, av)),
                                                   _mm256_set1_epi16(1)));
}

/* Does any of the n bytes equal -128 (the value the fast AVX2 step cannot take in b)? */
__attribute__((target("avx2"))) static bool has_m128_avx2(const int8_t *x, int64_t n) {
    const __m256i m = _mm256_set1_epi8(-128);
    __m256i any = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) any = _mm256_or_si256(any, _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(x + i)), m));
    bool r = !_mm256_testz_si256(any, any);
    for (; i < n && !r; i++) r = x[i] == -128;
    return r;
}

/* One row of A against four rows of Bt: |a| is computed once per 32 bytes and reused four times
 * (dot32_avx2; `exact` when some b is -128). The tail (K % 32) is done in scalar code. */
__attribute__((target("avx2"), always_inline)) static inline void avx2_row_t(const int exact, int64_t N0, int64_t N1,
                                                                             int64_t K, const int8_t *ar,
                                                                             const int8_t *bt, int32_t *cr) {
    const int64_t K32 = K & ~(int64_t)31;
    int64_t n = N0;
    for (; n + 4 <= N1; n += 4) {
        const int8_t *b0 = bt + n * K, *b1 = b0 + K, *b2 = b1 + K, *b3 = b2 + K;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t k = 0; k < K32; k += 32) {
            __m256i av = _mm256_loadu_si256((const __m256i *)(ar + k));
            __m256i aa = _mm256_abs_epi8(av);
#define LX_STEP(s, b) s = dot32_avx2(exact, s, av, aa, _mm256_loadu_si256((const __m256i *)((b) + k)))
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
            s0 = dot32_avx2(exact, s0, av, _mm256_abs_epi8(av), bv);
        }
        int32_t r0 = hsum_avx2(s0);
        for (int64_t k = K32; k < K; k++) r0 += (int32_t)ar[k] * b0[k];
        cr[n] = r0;
    }
}

__attribute__((target("avx2"))) static void avx2_row(int64_t N0, int64_t N1, int64_t K, const int8_t *ar,
                                                     const int8_t *bt, int32_t *cr) {
    avx2_row_t(0, N0, N1, K, ar, bt, cr);
}
__attribute__((target("avx2"))) static void avx2_row_exact(int64_t N0, int64_t N1, int64_t K, const int8_t *ar,
                                                           const int8_t *bt, int32_t *cr) {
    avx2_row_t(1, N0, N1, K, ar, bt, cr);
}

/* Blocked so a panel of Bt (about 64 KiB) stays in L2 while every row of A passes over it. */
static int64_t panel_rows(int64_t K) {
    int64_t r = K > 0 ? (64 * 1024) / K : 64;
    r = r < 4 ? 4 : r > 256 ? 256 : r;
    return r & ~(int64_t)3;
}

/* items (panel p, 64-row block) in the order of the former collapse(2) loop: p outer */
static int avx2_blocks(void *ctx, int64_t lo, int64_t hi) {
    const i8_job *j = ctx;
    const int64_t M = j->M, N = j->N, K = j->K, P = j->P;
    for (int64_t it = lo; it < hi; it++) {
        const int64_t p = it / j->nm, m0 = it % j->nm * 64;
        int64_t n0 = p * P, n1 = n0 + P < N ? n0 + P : N, m1 = m0 + 64 < M ? m0 + 64 : M;
        for (int64_t m = m0; m < m1; m++) j->row(n0, n1, K, j->a + m * K, j->bt, j->c + m * N);
    }
    return 0;
}

/* Exact for every int8 value: Bt is scanned for -128 once per call (N * K bytes, small next to the
 * M * N * K multiply-adds) and, when it holds one, the widened step runs instead. */
static void gemm_avx2(int64_t M, int64_t N, int64_t K, const int8_t *a, const int8_t *bt, int32_t *c) {
    const int64_t P = panel_rows(K), np = (N + P - 1) / P;
    i8_job j = {.M = M, .N = N, .K = K, .a = a, .bt = bt, .c = c, .P = P, .np = np, .nm = (M + 63) / 64,
                .row = has_m128_avx2(bt, N * K) ? avx2_row_exact : avx2_row};
    lx_parallel_for(LX_PAR_THREADS(M * N * K > (1 << 20)), np * j.nm, avx2_blocks, &j);
}
#endif

/* ------------------------------------------------------------------ packed layouts
 *
 * Two layouts (lx_i8_packed.layout), both zero padded so the kernels need no tail code and the
 * padding adds nothing to any sum:
 *  K32 (the AVX2 kernel's): panels of 4 output channels; in a panel, per chunk of 32 contraction
 *      indices, 128 bytes: channel 0's 32 values, then 1's, 2's, 3's (b[32 g + j, 4 p + c] at
 *      byte 128 g + 32 c + j of panel p). K padded to 32, N to 4.
 *  Q4 (the VNNI and AMX kernels'): panels of 16 output channels; in a panel, per group of 4
 *      contraction indices, 64 bytes: channel c's 4 values at bytes 4c..4c+3 (b[4 q + j, 16 p + c]
 *      at byte 64 q + 4 c + j of panel p). A group is what vpdpbusd multiplies into one int32
 *      lane, and 16 consecutive groups (1 KiB, rows of 64 bytes) are exactly the B tile tdpbssd
 *      takes (AMX's "VNNI-4" layout), so one packing serves both. K padded to 64, N to 32 (the
 *      AMX kernel's two panels). With it, colsum[n] = 128 * sum_k b[k, n] (mod 2^32): VNNI's
 *      correction for the +128 offset of the unsigned operand. */
enum { LAYOUT_K32 = 0, LAYOUT_Q4 = 1 };
#define LX_I8_NR 4
#define LX_I8_KC 32
#define Q4_NR 16
#define Q4_KC 64
#define Q4_NB 32

struct lx_i8_packed {
    int64_t K, N, Kp, Np;
    int layout;
    lx_i8_kernel kernel; /* the kernel it was packed for (resolved) */
    bool has_m128;       /* some weight is -128: the AVX2 kernel runs its widened, exact step */
    int8_t *data;        /* 64-byte aligned */
    int32_t *colsum;     /* Q4 only: Np values */
};

/* The byte of b[k, n] in either layout (the portable kernel's reader). */
static int64_t packed_at(const lx_i8_packed *p, int64_t k, int64_t n) {
    if (p->layout == LAYOUT_K32)
        return (n / LX_I8_NR) * p->Kp * LX_I8_NR + (k / LX_I8_KC) * (LX_I8_KC * LX_I8_NR) + (n % LX_I8_NR) * LX_I8_KC +
               k % LX_I8_KC;
    return (n / Q4_NR) * p->Kp * Q4_NR + (k / 4) * 64 + (n % Q4_NR) * 4 + k % 4;
}

#ifdef LX_X86
/* ------------------------------------------------------------------ AVX-512 VNNI (packed, Q4)
 *
 * vpdpbusd multiplies u8 by s8 four at a time into int32 lanes, exactly (no saturation). A is
 * made unsigned by xor 0x80 (a + 128) when it is copied into the padded row buffer, so each sum
 * gains 128 * sum_k b[k, n], subtracted at the end (colsum). Exact for every int8 value, -128
 * included. The micro-kernel holds an MR x NP tile of C (MR rows, NP panels of 16 channels) in
 * zmm registers: per group of 4 contraction indices, NP loads of B (64 bytes each), MR
 * broadcasts of 4 bytes of A and MR * NP vpdpbusd. */
#define LX_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))

LX_VNNI_TARGET __attribute__((always_inline)) static inline void vnni_tile(const int MR, const int NP, int64_t Q,
                                                                           const uint8_t *a, int64_t lda,
                                                                           const int8_t *b, int64_t pstride,
                                                                           const int32_t *colsum, int32_t *c,
                                                                           int64_t ldc, int64_t ncols) {
    __m512i acc[8][4];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NP; j++) acc[r][j] = _mm512_setzero_si512();
    for (int64_t q = 0; q < Q; q++) {
        __m512i bv[4];
        for (int j = 0; j < NP; j++) bv[j] = _mm512_load_si512((const void *)(b + j * pstride + q * 64));
        for (int r = 0; r < MR; r++) {
            int32_t a4;
            memcpy(&a4, a + r * lda + 4 * q, 4);
            const __m512i av = _mm512_set1_epi32(a4);
            for (int j = 0; j < NP; j++) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, bv[j]);
        }
    }
    for (int j = 0; j < NP; j++) {
        int64_t nc = ncols - 16 * j;
        if (nc <= 0) break;
        const __mmask16 mask = nc >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1);
        const __m512i corr = _mm512_loadu_si512((const void *)(colsum + 16 * j));
        for (int r = 0; r < MR; r++)
            _mm512_mask_storeu_epi32(c + r * ldc + 16 * j, mask, _mm512_sub_epi32(acc[r][j], corr));
    }
}

/* Rows m0..m1 of A (u8, rows of Kp) against panels p0..p1 (p1 - p0 even). Up to 4 rows (decode's
 * GEMVs): all the rows against 4 panels at a time (up to 16 accumulators, 4 B streams); else 8
 * rows against 2 panels (16 accumulators). */
LX_VNNI_TARGET static void vnni_block(const lx_i8_packed *p, int64_t m0, int64_t m1, int64_t p0, int64_t p1,
                                      const uint8_t *a, int32_t *c) {
    const int64_t Q = p->Kp / 4, ps = p->Kp * Q4_NR, lda = p->Kp, N = p->N;
#define LX_VT(MR, NP) vnni_tile(MR, NP, Q, a + m * lda, lda, bp, ps, p->colsum + n0, c + m * N + n0, N, N - n0)
    if (m1 - m0 <= 4) {
        const int64_t m = m0;
        const int mr = (int)(m1 - m0);
        for (int64_t pn = p0; pn < p1;) {
            const int8_t *bp = p->data + pn * ps;
            const int64_t n0 = pn * Q4_NR;
            if (n0 >= N) break;
            if (pn + 4 <= p1) {
                switch (mr) {
                case 1: LX_VT(1, 4); break;
                case 2: LX_VT(2, 4); break;
                case 3: LX_VT(3, 4); break;
                default: LX_VT(4, 4); break;
                }
                pn += 4;
            } else {
                switch (mr) {
                case 1: LX_VT(1, 2); break;
                case 2: LX_VT(2, 2); break;
                case 3: LX_VT(3, 2); break;
                default: LX_VT(4, 2); break;
                }
                pn += 2;
            }
        }
        return;
    }
    for (int64_t pn = p0; pn < p1; pn += 2) {
        const int8_t *bp = p->data + pn * ps;
        const int64_t n0 = pn * Q4_NR;
        if (n0 >= N) break;
        for (int64_t m = m0; m < m1; m += 8) {
            switch (m1 - m < 8 ? (int)(m1 - m) : 8) {
            case 1: LX_VT(1, 2); break;
            case 2: LX_VT(2, 2); break;
            case 3: LX_VT(3, 2); break;
            case 4: LX_VT(4, 2); break;
            case 5: LX_VT(5, 2); break;
            case 6: LX_VT(6, 2); break;
            case 7: LX_VT(7, 2); break;
            default: LX_VT(8, 2); break;
            }
        }
    }
#undef LX_VT
}

static int vnni_blocks(void *ctx, int64_t lo, int64_t hi) {
    const i8_job *j = ctx;
    const int64_t M = j->M, MC = j->MC, PG = j->PG, np = j->np;
    for (int64_t it = lo; it < hi; it++) {
        const int64_t ib = it / j->npg, jb = it % j->npg;
        int64_t m0 = ib * MC, m1 = m0 + MC < M ? m0 + MC : M, p0 = jb * PG, p1 = p0 + PG < np ? p0 + PG : np;
        vnni_block(j->p, m0, m1, p0, p1, j->ua, j->c);
    }
    return 0;
}

/* Row blocks of A (about 96 KiB: stay in L2) x groups of 8 panels (128 channels), handed out one
 * at a time; few rows run on one thread (a parallel region costs more than a GEMV saves). */
static void packed_vnni(int64_t M, const uint8_t *a, const lx_i8_packed *p, int32_t *c) {
    const int64_t np = p->Np / Q4_NR, PG = 8;
    int64_t MC = (96 * 1024) / p->Kp;
    MC = MC < 8 ? 8 : MC & ~(int64_t)7;
    const int64_t nm = (M + MC - 1) / MC, npg = (np + PG - 1) / PG;
    const int threads = LX_PAR_THREADS(M >= 16 && M * p->N * p->K > (1 << 22));
    i8_job j = {.M = M, .ua = a, .p = p, .c = c, .np = np, .MC = MC, .nm = nm, .npg = npg, .PG = PG};
    lx_parallel_for_dynamic(threads, nm * npg, 1, vnni_blocks, &j);
}

#ifdef LX_AMX
/* ------------------------------------------------------------------ AMX-INT8 (packed, Q4)
 *
 * tdpbssd: C tile (16 x 16 int32) += A tile (16 rows x 64 int8) . B tile (16 rows of 4-groups x
 * 16 channels), signed x signed, exact. Eight tile registers: a 32 x 32 block of C in four,
 * two A tiles and two B tiles per step of 64 along K. A is copied into a zero-padded buffer
 * (rows padded to 32, K to 64) so every tile load is whole; B's tiles are 1 KiB contiguous in
 * the Q4 layout. The tile configuration is per thread: each thread loads it before its share
 * and releases the tiles after. Runs only after the OS granted the process the tile data state
 * (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), in amx_permitted). */
#define LX_AMX_TARGET __attribute__((target("amx-tile,amx-int8")))

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

/* Where C's tiles go: straight into C when whole; a tile of the last, partial block of rows into
 * `redge` (32 rows x Np, the block's rows from mlast), one of the last, partial block of
 * channels into `cedge` (Mp rows x 32, channels from nlast); both are copied into C after every
 * tile is stored (reading a tile store back at once stalls, about a microsecond a tile here). */
typedef struct {
    int32_t *c, *redge, *cedge;
    int64_t M, N, Np, mlast, nlast;
} amx_out;

#define LX_AMX_STORE(t, i, j)                                                                          \
    do {                                                                                               \
        const int64_t r0 = m0 + 16 * (i), c0 = n0 + 16 * (j);                                          \
        if (m0 >= o->mlast)                                                                            \
            _tile_stored(t, o->redge + (r0 - o->mlast) * o->Np + c0, o->Np * 4);                       \
        else if (n0 >= o->nlast)                                                                       \
            _tile_stored(t, o->cedge + r0 * Q4_NB + (c0 - o->nlast), Q4_NB * 4);                       \
        else                                                                                           \
            _tile_stored(t, o->c + r0 * o->N + c0, o->N * 4);                                          \
    } while (0)

/* Items of the (32-row block, 32-channel block) grid, ordered as below (consecutive items reuse
 * one 2-panel slice of B), taken `chunk` at a time from the shared counter `next` until `items`:
 * a thread the OS pre-empts (the machine is shared) delays one chunk, not a fixed half of the
 * product. */
LX_AMX_TARGET static void amx_items(const lx_i8_packed *p, const int8_t *a, const amx_out *o, int64_t nmb,
                                    int64_t items, int64_t chunk, _Atomic int64_t *next) {
    amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
    const int64_t Kp = p->Kp, KB = Kp / Q4_KC, nnb = p->Np / Q4_NB;
    for (int64_t i0; (i0 = atomic_fetch_add_explicit(next, chunk, memory_order_relaxed)) < items;)
    for (int64_t it = i0, i1 = i0 + chunk < items ? i0 + chunk : items; it < i1; it++) {
        /* superblocks of 8 row blocks (256 rows of A: 256 KiB at K = 1024, kept in L2), inside
         * one channel block (32 KiB of B, kept in L1) against its 8 row blocks, then the next */
        const int64_t ms = it / (8 * nnb), msz = nmb - ms * 8 < 8 ? nmb - ms * 8 : 8, rem = it - ms * 8 * nnb;
        const int64_t m0 = (ms * 8 + rem % msz) * 32, n0 = (rem / msz) * Q4_NB;
        const int8_t *a0 = a + m0 * Kp, *a1 = a0 + 16 * Kp; /* tile-major: 1 KiB per tile */
        const int8_t *b0 = p->data + (n0 / Q4_NR) * Kp * Q4_NR, *b1 = b0 + Kp * Q4_NR;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t kb = 0; kb < KB; kb++) {
            _tile_loadd(4, a0 + kb * 1024, 64);
            _tile_loadd(6, b0 + kb * 1024, 64);
            _tile_dpbssd(0, 4, 6);
            _tile_loadd(7, b1 + kb * 1024, 64);
            _tile_dpbssd(1, 4, 7);
            _tile_loadd(5, a1 + kb * 1024, 64);
            _tile_dpbssd(2, 5, 6);
            _tile_dpbssd(3, 5, 7);
        }
        LX_AMX_STORE(0, 0, 0);
        LX_AMX_STORE(1, 0, 1);
        LX_AMX_STORE(2, 1, 0);
        LX_AMX_STORE(3, 1, 1);
    }
    _tile_release();
}
#undef LX_AMX_STORE

typedef struct amx_team {
    const lx_i8_packed *p;
    const int8_t *a;
    const amx_out *o;
    int64_t nmb, items, chunk;
    _Atomic int64_t *next;
} amx_team;

static void amx_team_fn(void *arg) {
    const amx_team *t = arg;
    amx_items(t->p, t->a, t->o, t->nmb, t->items, t->chunk, t->next);
}

static lx_status packed_amx(int64_t M, const int8_t *a, const lx_i8_packed *p, int32_t *c) {
    const int64_t nmb = (M + 31) / 32, items = nmb * (p->Np / Q4_NB), Mp = nmb * 32;
    amx_out o = {c, NULL, NULL, M, p->N, p->Np, M % 32 ? Mp - 32 : Mp, p->N % Q4_NB ? p->Np - Q4_NB : p->Np};
    void *own_r = NULL, *own_c = NULL; /* edge buffers too large to keep (i8_scratch) */
    if (o.mlast < Mp) o.redge = i8_scratch(1, sizeof(int32_t) * (size_t)(32 * p->Np), &own_r);
    if (o.nlast < p->Np && o.mlast > 0) o.cedge = i8_scratch(2, sizeof(int32_t) * (size_t)(o.mlast * Q4_NB), &own_c);
    if ((o.mlast < Mp && !o.redge) || (o.nlast < p->Np && o.mlast > 0 && !o.cedge)) {
        free(own_r), free(own_c);
        return lx_fail(LX_ERR_NO_MEMORY, "i8_gemm_packed: out of memory");
    }
    const int threads = LX_PAR_THREADS(M >= 64 && M * p->N * p->K > (1 << 22));
    _Atomic int64_t next = 0;
    const int64_t chunk = nmb < 4 ? nmb : 4;
    if (threads <= 1) {
        amx_items(p, a, &o, nmb, items, items, &next);
    } else { /* every participant runs amx_items: it takes its items from the shared counter */
        amx_team t = {p, a, &o, nmb, items, chunk, &next};
        lx_team_run(threads, amx_team_fn, &t);
    }
    for (int64_t m = o.mlast; m < M; m++)
        memcpy(c + m * p->N, o.redge + (m - o.mlast) * p->Np, sizeof(int32_t) * (size_t)p->N);
    for (int64_t m = 0; o.cedge && m < o.mlast; m++)
        memcpy(c + m * p->N + o.nlast, o.cedge + m * Q4_NB, sizeof(int32_t) * (size_t)(p->N - o.nlast));
    free(own_r), free(own_c);
    return LX_OK;
}

/* cpuid says AMX-TILE and AMX-INT8 and XCR0 has the tile state enabled (checked once). The OS's
 * permission for the tile data (Linux >= 5.16: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA))
 * is asked for only when an AMX product first runs (amx_permitted): the permission is for the
 * whole process and for good (the kernel then refuses sigaltstack() stacks smaller than the AMX
 * signal frame, in every thread), so merely asking which kernels the CPU has must not request it.
 * When the OS refuses, the product runs on VNNI (the packed layout is the same) and AMX is no
 * longer reported as supported. */
static bool amx_ok;
static atomic_bool amx_refused;
static void amx_probe(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return;
    if (!(edx & (1u << 24)) || !(edx & (1u << 25))) return; /* AMX-TILE, AMX-INT8 */
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return; /* XTILECFG, XTILEDATA */
#if defined(__linux__) && defined(SYS_arch_prctl)
    amx_ok = true;
#endif
}
static bool amx_usable(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, amx_probe);
    return amx_ok && !atomic_load(&amx_refused);
}
static void amx_request(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0)
        atomic_store(&amx_refused, true);
#else
    atomic_store(&amx_refused, true);
#endif
}
/* Asked once, the first time an AMX product runs. */
static bool amx_permitted(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (!amx_usable()) return false;
    pthread_once(&once, amx_request);
    return !atomic_load(&amx_refused);
}
#else /* a compiler without AMX: never selected */
static bool amx_usable(void) { return false; }
static bool amx_permitted(void) { return false; }
static lx_status packed_amx(int64_t M, const int8_t *a, const lx_i8_packed *p, int32_t *c) {
    (void)M, (void)a, (void)p, (void)c;
    return lx_fail(LX_ERR_UNSUPPORTED, "i8_gemm_packed: built without AMX support");
}
#endif /* LX_AMX */
#endif /* LX_X86 */

#ifdef LX_X86
/* Four int32 vectors -> their four horizontal sums. */
__attribute__((target("avx2"), always_inline)) static inline __m128i hsum4(__m256i s0, __m256i s1, __m256i s2,
                                                                            __m256i s3) {
    __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

/* MR (1 or 2) rows of A (K padded to Kp) against one 4-channel panel, along K 32 values at a time:
 * |a| is taken once per chunk and row and reused for the 4 channels; dot32_avx2 sums a*b into
 * int32 lanes (its fast step, or the widened one when `exact`: weights holding -128); the lanes
 * are summed at the end. */
__attribute__((target("avx2"), always_inline)) static inline void micro_avx2(const int exact, const int MR, int64_t G,
                                                                             const int8_t *a, int64_t lda,
                                                                             const int8_t *bp, int32_t *c,
                                                                             int64_t ldc, int ncols) {
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
                s[r][j] = dot32_avx2(exact, s[r][j], av[r], aa[r], bv);
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
        if (p->has_m128) {
            for (; m + 2 <= m1; m += 2) micro_avx2(1, 2, G, a + m * lda, lda, bp, c + m * p->N + n0, p->N, ncols);
            if (m < m1) micro_avx2(1, 1, G, a + m * lda, lda, bp, c + m * p->N + n0, p->N, ncols);
            continue;
        }
        for (; m + 2 <= m1; m += 2) micro_avx2(0, 2, G, a + m * lda, lda, bp, c + m * p->N + n0, p->N, ncols);
        if (m < m1) micro_avx2(0, 1, G, a + m * lda, lda, bp, c + m * p->N + n0, p->N, ncols);
    }
}

static int avx2_packed_blocks(void *ctx, int64_t lo, int64_t hi) {
    const i8_job *j = ctx;
    const int64_t M = j->M, MC = j->MC, PG = j->PG, np = j->np;
    for (int64_t it = lo; it < hi; it++) {
        const int64_t ib = it / j->npg, jb = it % j->npg;
        int64_t m0 = ib * MC, m1 = m0 + MC < M ? m0 + MC : M, p0 = jb * PG, p1 = p0 + PG < np ? p0 + PG : np;
        block_avx2(m0, m1, p0, p1, j->a, j->lda, j->p, j->c);
    }
    return 0;
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
    i8_job j = {.M = M, .a = a, .lda = lda, .p = p, .c = c, .np = np, .MC = MC, .nm = nm, .npg = npg, .PG = PG};
    lx_parallel_for_dynamic(threads, nm * npg, 1, avx2_packed_blocks, &j);
}
#endif


/* ------------------------------------------------------------------ dispatch */

bool lx_i8_kernel_supported(lx_i8_kernel k) {
    switch (k) {
    case LX_I8_AUTO:
    case LX_I8_PORTABLE: return true;
#ifdef LX_X86
    case LX_I8_AVX2: return __builtin_cpu_supports("avx2");
    case LX_I8_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni") &&
               __builtin_cpu_supports("avx512bw");
    case LX_I8_AMX: return amx_usable();
#else
    case LX_I8_AVX2:
    case LX_I8_VNNI:
    case LX_I8_AMX: return false;
#endif
    }
    return false;
}

static const char *kernel_name(lx_i8_kernel k) {
    switch (k) {
    case LX_I8_PORTABLE: return "portable";
    case LX_I8_AVX2: return "avx2";
    case LX_I8_VNNI: return "avx512_vnni";
    case LX_I8_AMX: return "amx_int8";
    default: return "unknown";
    }
}

/* LINNX_INT8 (amx, vnni, avx2, generic/portable), read once: -1 when unset or unusable (with one
 * warning line, as LINNX_ISA's). */
static int int8_env = -1;
static void read_int8_env(void) {
    const char *e = getenv("LINNX_INT8");
    if (!e || !*e) return;
    int want = !strcmp(e, "amx") || !strcmp(e, "amx_int8")        ? LX_I8_AMX
               : !strcmp(e, "vnni") || !strcmp(e, "avx512_vnni") ? LX_I8_VNNI
               : !strcmp(e, "avx2")                              ? LX_I8_AVX2
               : !strcmp(e, "generic") || !strcmp(e, "portable") ? LX_I8_PORTABLE
                                                                 : -1;
    if (want < 0)
        fprintf(stderr, "linnx: LINNX_INT8=%s is not one of amx, vnni, avx2, generic; ignored\n", e);
    else if (!lx_i8_kernel_supported((lx_i8_kernel)want))
        fprintf(stderr, "linnx: LINNX_INT8=%s is not supported by this CPU; ignored\n", e);
    else int8_env = want;
}
static int int8_forced(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_int8_env);
    return int8_env;
}

/* AUTO: LINNX_INT8 if set, else the best the CPU has within the kernel set in force (linnx/cpu.h:
 * LINNX_ISA=avx2 runs the AVX2 kernel, generic the portable one, as on such a machine). */
static lx_i8_kernel resolve(lx_i8_kernel k) {
    if (k != LX_I8_AUTO) return k;
    int f = int8_forced();
    if (f >= 0) return (lx_i8_kernel)f;
    lx_isa isa = lx_isa_current();
    if (isa == LX_ISA_GENERIC) return LX_I8_PORTABLE;
    if (isa == LX_ISA_AVX512) {
        if (lx_i8_kernel_supported(LX_I8_AMX)) return LX_I8_AMX;
        if (lx_i8_kernel_supported(LX_I8_VNNI)) return LX_I8_VNNI;
    }
    if (lx_i8_kernel_supported(LX_I8_AVX2)) return LX_I8_AVX2;
    return LX_I8_PORTABLE;
}

const char *lx_i8_kernel_name(lx_i8_kernel k) { return kernel_name(resolve(k)); }

/* ------------------------------------------------------------------ packing */

int64_t lx_i8_packed_k(const lx_i8_packed *p) { return p ? p->K : 0; }
int64_t lx_i8_packed_n(const lx_i8_packed *p) { return p ? p->N : 0; }
lx_i8_kernel lx_i8_packed_kernel(const lx_i8_packed *p) { return p ? p->kernel : LX_I8_AUTO; }

void lx_i8_packed_free(lx_i8_packed *p) {
    if (!p) return;
    free(p->data);
    free(p->colsum);
    free(p);
}

/* b[k, n] = src[k * sk + n * sn]: (K, N) row-major is (N, 1), output channel major (N, K) is (1, K). */
static lx_status pack_strided(lx_i8_kernel kern, int64_t K, int64_t N, const int8_t *b, int64_t sk, int64_t sn,
                              lx_i8_packed **out) {
    lx_i8_packed *p = calloc(1, sizeof *p);
    if (!p) return lx_fail(LX_ERR_NO_MEMORY, "i8_pack: out of memory");
    p->K = K, p->N = N, p->kernel = kern;
    p->layout = kern == LX_I8_VNNI || kern == LX_I8_AMX ? LAYOUT_Q4 : LAYOUT_K32;
    const int64_t kc = p->layout == LAYOUT_Q4 ? Q4_KC : LX_I8_KC, nr = p->layout == LAYOUT_Q4 ? Q4_NB : LX_I8_NR;
    p->Kp = (K + kc - 1) / kc * kc;
    p->Np = (N + nr - 1) / nr * nr;
    size_t bytes = ((size_t)(p->Kp * p->Np) + 64 + 63) / 64 * 64;
    p->data = aligned_alloc(64, bytes);
    if (p->data && p->layout == LAYOUT_Q4) p->colsum = calloc((size_t)p->Np, sizeof(int32_t));
    if (!p->data || (p->layout == LAYOUT_Q4 && !p->colsum)) {
        lx_i8_packed_free(p);
        return lx_fail(LX_ERR_NO_MEMORY, "i8_pack: out of memory (%zu bytes)", bytes);
    }
    memset(p->data, 0, bytes);
    if (p->layout == LAYOUT_K32) {
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < K; k++) {
                int8_t v = b[k * sk + n * sn];
                p->data[packed_at(p, k, n)] = v;
                p->has_m128 |= v == -128;
            }
    } else {
        for (int64_t n = 0; n < N; n++) {
            int8_t *dst = p->data + (n / Q4_NR) * p->Kp * Q4_NR + (n % Q4_NR) * 4;
            const int8_t *src = b + n * sn;
            uint32_t s = 0;
            if (sk == 1) { /* 4 contiguous bytes per group */
                int64_t k = 0;
                for (; k + 4 <= K; k += 4) {
                    memcpy(dst + k * 16, src + k, 4);
                    s += (uint32_t)((int32_t)src[k] + src[k + 1] + src[k + 2] + src[k + 3]);
                }
                for (; k < K; k++) dst[(k >> 2) * 64 + (k & 3)] = src[k], s += (uint32_t)(int32_t)src[k];
            } else {
                for (int64_t k = 0; k < K; k++) {
                    int8_t v = src[k * sk];
                    dst[(k >> 2) * 64 + (k & 3)] = v;
                    s += (uint32_t)(int32_t)v;
                }
            }
            p->colsum[n] = (int32_t)(s * 128u);
        }
    }
    *out = p;
    return LX_OK;
}

lx_status lx_i8_pack_for(lx_i8_kernel k, int64_t K, int64_t N, const int8_t *b, lx_i8_packed **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_pack: NULL output");
    if ((int)k < LX_I8_AUTO || (int)k > LX_I8_AMX) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_pack: unknown kernel %d", (int)k);
    if (K < 0 || N < 0 || K > (INT64_MAX / 64) / (N + 64))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_pack: sizes must be >= 0 (and fit), got K=%lld N=%lld",
                       (long long)K, (long long)N);
    if (K * N > 0 && !b) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_pack: NULL weights");
    return pack_strided(resolve(k), K, N, b, N, 1, out);
}

lx_status lx_i8_pack(int64_t K, int64_t N, const int8_t *b, lx_i8_packed **out) {
    return lx_i8_pack_for(LX_I8_AUTO, K, N, b, out);
}

/* Portable: either layout read back in plain C. */
static int packed_portable_rows(void *ctx, int64_t lo, int64_t hi) {
    const i8_job *j = ctx;
    const lx_i8_packed *p = j->p;
    for (int64_t m = lo; m < hi; m++)
        for (int64_t n = 0; n < p->N; n++) {
            int32_t s = 0;
            for (int64_t k = 0; k < p->K; k++) s += (int32_t)j->a[m * p->K + k] * p->data[packed_at(p, k, n)];
            j->c[m * p->N + n] = s;
        }
    return 0;
}

static void packed_portable(int64_t M, const int8_t *a, const lx_i8_packed *p, int32_t *c) {
    i8_job j = {.M = M, .a = a, .p = p, .c = c};
    lx_parallel_for(LX_PAR_THREADS(M >= 16 && M * p->N * p->K > (1 << 22)), M, packed_portable_rows, &j);
}

/* Rows below this run VNNI rather than AMX under AUTO: with few rows both are bound by reading
 * the weights, which VNNI's loads do faster than AMX's tile loads (measured here, 512 x 2048
 * weights, one thread: M = 1 VNNI 10 us, AMX 19; M = 4 14 / 18; M = 8 24 / 19; M = 16 44 / 22). */
#define LX_AMX_MIN_ROWS 8

/* The product on a packed B with a resolved kernel whose layout matches. */
static lx_status run_packed(lx_i8_kernel k, int64_t M, const int8_t *a, const lx_i8_packed *p, int32_t *c) {
    if (p->K == 0) {
        memset(c, 0, sizeof(int32_t) * (size_t)(M * p->N));
        return LX_OK;
    }
#ifdef LX_X86
    /* the OS's permission for AMX's tile data, asked the first time (amx_permitted); refused: the
     * same packed layout on VNNI */
    if (k == LX_I8_AMX && !amx_permitted()) k = lx_i8_kernel_supported(LX_I8_VNNI) ? LX_I8_VNNI : LX_I8_PORTABLE;
    void *own = NULL; /* an A copy too large to keep (i8_scratch) */
    if (k == LX_I8_AVX2) {
        /* rows padded to the 32-chunk (zeros add nothing) */
        const int8_t *ap = a;
        if (p->Kp != p->K) {
            int8_t *pad = i8_scratch(0, (size_t)(M * p->Kp), &own);
            if (!pad) return lx_fail(LX_ERR_NO_MEMORY, "i8_gemm_packed: out of memory");
            for (int64_t m = 0; m < M; m++) {
                memcpy(pad + m * p->Kp, a + m * p->K, (size_t)p->K);
                memset(pad + m * p->Kp + p->K, 0, (size_t)(p->Kp - p->K));
            }
            ap = pad;
        }
        packed_avx2(M, ap, p->Kp, p, c);
        free(own);
        return LX_OK;
    }
    if (k == LX_I8_VNNI) { /* A as u8 (a + 128), rows padded to Kp (the padding meets zero weights) */
        uint8_t *au = i8_scratch(0, (size_t)(M * p->Kp), &own);
        if (!au) return lx_fail(LX_ERR_NO_MEMORY, "i8_gemm_packed: out of memory");
        for (int64_t m = 0; m < M; m++) {
            const int8_t *src = a + m * p->K;
            uint8_t *dst = au + m * p->Kp;
            for (int64_t k = 0; k < p->K; k++) dst[k] = (uint8_t)src[k] ^ 0x80u;
            memset(dst + p->K, 0x80, (size_t)(p->Kp - p->K));
        }
        packed_vnni(M, au, p, c);
        free(own);
        return LX_OK;
    }
    if (k == LX_I8_AMX) {
        /* A zero padded (rows to a multiple of 32, K to Kp) and tile-major: the 16 x 64 tile of
         * rows 16 t.. and columns 64 kb.. is 1 KiB at (t * Kp / 64 + kb) * 1024, so each tile
         * load reads one contiguous KiB */
        const int64_t Mp = (M + 31) / 32 * 32, KB = p->Kp / Q4_KC;
        int8_t *ap = i8_scratch(0, (size_t)(Mp * p->Kp), &own);
        if (!ap) return lx_fail(LX_ERR_NO_MEMORY, "i8_gemm_packed: out of memory");
        memset(ap, 0, (size_t)(Mp * p->Kp));
        for (int64_t m = 0; m < M; m++) {
            int8_t *row = ap + (m / 16) * KB * 1024 + (m % 16) * 64;
            const int8_t *src = a + m * p->K;
            for (int64_t kb = 0; kb < KB; kb++) {
                int64_t k0 = kb * Q4_KC, nk = p->K - k0 < Q4_KC ? p->K - k0 : Q4_KC;
                if (nk > 0) memcpy(row + kb * 1024, src + k0, (size_t)nk);
            }
        }
        lx_status st = packed_amx(M, ap, p, c);
        free(own);
        return st;
    }
#endif
    packed_portable(M, a, p, c);
    return LX_OK;
}

lx_status lx_i8_gemm_packed(lx_i8_kernel k, int64_t M, const int8_t *a, const lx_i8_packed *p, int32_t *c) {
    if (!p || M < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm_packed: NULL weights or M < 0");
    if ((int)k < LX_I8_AUTO || (int)k > LX_I8_AMX)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm_packed: unknown kernel %d", (int)k);
    if (!lx_i8_kernel_supported(k))
        return lx_fail(LX_ERR_UNSUPPORTED, "i8_gemm_packed: this CPU cannot run the %s kernel", kernel_name(k));
    const int want = p->layout == LAYOUT_Q4 ? 1 : 0;
    if (k == LX_I8_AUTO) {
        /* the kernel set in force may have changed since the packing: the layout decides */
        lx_i8_kernel best = resolve(LX_I8_AUTO);
        if (want == 1) {
            k = best == LX_I8_AMX && (M >= LX_AMX_MIN_ROWS || int8_forced() == LX_I8_AMX) ? LX_I8_AMX
                : (best == LX_I8_AMX || best == LX_I8_VNNI) && lx_i8_kernel_supported(LX_I8_VNNI) ? LX_I8_VNNI
                                                                                                  : LX_I8_PORTABLE;
        } else {
            k = best != LX_I8_PORTABLE && lx_i8_kernel_supported(LX_I8_AVX2) ? LX_I8_AVX2 : LX_I8_PORTABLE;
        }
    } else if (k != LX_I8_PORTABLE && (k == LX_I8_AVX2 ? 0 : 1) != want) {
        /* weights packed for the other layout (lx_i8_pack packs for the best kernel of the CPU it
         * runs on): the portable kernel reads either, so the result is the same on every machine,
         * only slower (lx_i8_pack_for packs for a chosen kernel) */
        k = LX_I8_PORTABLE;
    }
    if (M == 0 || p->N == 0) return LX_OK;
    if (!c || (p->K > 0 && !a)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm_packed: NULL buffer");
    return run_packed(k, M, a, p, c);
}

/* ------------------------------------------------------------------ unpacked (bt output-channel major) */

lx_status lx_i8_gemm(lx_i8_kernel k, int64_t M, int64_t N, int64_t K, const int8_t *a, const int8_t *bt,
                     int32_t *c) {
    if (M < 0 || N < 0 || K < 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm: sizes must be >= 0, got M=%lld N=%lld K=%lld", (long long)M,
                       (long long)N, (long long)K);
    if ((int)k < LX_I8_AUTO || (int)k > LX_I8_AMX)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm: unknown kernel %d", (int)k);
    if (!lx_i8_kernel_supported(k))
        return lx_fail(LX_ERR_UNSUPPORTED, "i8_gemm: this CPU cannot run the %s kernel", kernel_name(k));
    if (M * N == 0) return LX_OK;
    if ((K > 0 && (!a || !bt)) || !c) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm: NULL buffer");
    if (K > (INT64_MAX / 64) / (N + 64)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "i8_gemm: sizes too large");
    lx_i8_kernel r = resolve(k);
    switch (r) {
#ifdef LX_X86
    case LX_I8_AVX2: gemm_avx2(M, N, K, a, bt, c); return LX_OK;
    case LX_I8_VNNI:
    case LX_I8_AMX: { /* B packed per call (N * K bytes, small next to M * N * K multiply-adds) */
        lx_i8_packed *p = NULL;
        lx_status st = pack_strided(r, K, N, bt, 1, K, &p);
        if (st != LX_OK) return st;
        if (r == LX_I8_AMX && k == LX_I8_AUTO && M < LX_AMX_MIN_ROWS && int8_forced() != LX_I8_AMX) r = LX_I8_VNNI;
        st = run_packed(r, M, a, p, c);
        lx_i8_packed_free(p);
        return st;
    }
#endif
    default: gemm_portable(M, N, K, a, bt, c); return LX_OK;
    }
}

/* ------------------------------------------------------------------ quantizers */

static int8_t q8(float v, float inv) { return (int8_t)lx_qt_round_clamp(v, inv); }

void lx_quantize_tiles_i8(int64_t rows, int64_t cols, int64_t tile, const float *x, int8_t *q, float *scale) {
    if (tile < 1) tile = cols > 0 ? cols : 1;
    int64_t nt = (cols + tile - 1) / tile;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t t = 0; t < nt; t++) {
            int64_t k0 = t * tile, k1 = k0 + tile < cols ? k0 + tile : cols;
            float mx = 0;
            for (int64_t k = k0; k < k1; k++) mx = lx_qt_absmax_step(mx, x[r * cols + k]);
            float s = lx_qt_scale_of(mx), inv = 1.0f / s;
            scale[r * nt + t] = s;
            for (int64_t k = k0; k < k1; k++) q[r * cols + k] = q8(x[r * cols + k], inv);
        }
}

void lx_quantize_rows_i8(int64_t rows, int64_t cols, const float *x, int8_t *q, float *scale) {
    lx_quantize_tiles_i8(rows, cols, cols > 0 ? cols : 1, x, q, scale);
}
