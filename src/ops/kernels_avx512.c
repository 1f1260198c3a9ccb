/* The AVX-512 kernel set (compiled with -mavx512f/bw/vl/dq and FMA; run only after cpuid says so).
 * Not exercised on the AVX2-only machines this was last built on (docs/kernels.md). */
#include "kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__)
#include <immintrin.h>
#include <math.h>

#include "nn_internal.h"
#include "vmath.h"

/* The plain-C rows (norms) compiled for AVX-512; direct conv is hand-written below, softmax in
 * vmath_avx512.c. */
#define PORT_NAME(x) avx512p_##x
#include "kernels_portable.h"

/* ---- small GEMM ---- */
/* AVX-512: up to 24 accumulators, rows x 16*nv tiles, edges by lane masks.
 * A panel is cut into tiles of nv vectors (16 floats each) by the most rows that keep 24
 * accumulators: 6 x 64, 8 x 48, 12 x 32, 12 x 16. Per k a 6 x 64 tile loads 4 B vectors and
 * broadcasts 6 A entries for 24 FMAs. B is read with plain loads: the driver pads a panel whose
 * width is not a multiple of 16 with zeros; only C is read and written under lane masks, once per
 * tile. Accumulators are named variables, not arrays: GCC keeps arrays of vectors on the stack.
 * Every `r < mr` and `nv > v` test folds away once the dispatcher inlines constants. */
#define A5_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
static inline int a5_rows(int nv) { return nv == 4 ? 6 : nv == 3 ? 8 : 12; }
static inline __mmask16 a5_mask(int nr, int v) { /* lanes of vector v inside [0, nr) */
    int n = nr - 16 * v;
    return n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}
static inline __attribute__((always_inline)) void tile_avx512_t(const int mr, const int nv, int nr,
        int64_t kc, const float *A, int64_t ars, int64_t acs, const float *B, int64_t ldb,
        float alpha, float beta, bool first, float *C, int64_t ldc, const bool use_pf, const char *pf) {
#define A5_DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0;
    A5_ROWS(A5_DECL)
    const __mmask16 m0 = a5_mask(nr, 0), m1 = a5_mask(nr, 1), m2 = a5_mask(nr, 2), m3 = a5_mask(nr, 3);
    /* use_pf (large products): C's lines into L2 while the k loop runs: they are read (beta, a
     * later K block) or written only after it, and a large C is in L3 or memory by then (2048^3:
     * 0.77-0.80 of the peak -> 0.80-0.81, 1024^3 +2-4%, same runs); and pf, see panel_avx512_pf.
     * Products whose B and C stay in L2 (the LM's) ran ~1% slower with them. */
    if (use_pf) {
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) _mm_prefetch((const char *)(C + r * ldc + 16 * v), _MM_HINT_T1);
            _mm_prefetch((const char *)(C + r * ldc + nr - 1), _MM_HINT_T1);
        }
    }
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        const float *a = A + k * acs, *b = B + k * ldb;
        if (use_pf && (k & 7) == 0) _mm_prefetch(pf + (k >> 3) * 64, _MM_HINT_T1);
        __m512 b0 = _mm512_loadu_ps(b), b1 = b0, b2 = b0, b3 = b0;
        if (nv > 1) b1 = _mm512_loadu_ps(b + 16);
        if (nv > 2) b2 = _mm512_loadu_ps(b + 32);
        if (nv > 3) b3 = _mm512_loadu_ps(b + 48);
#define A5_FMA(r)                                                   \
        if (r < mr) {                                               \
            __m512 ar = _mm512_set1_ps(a[r * ars]);                 \
            c##r##0 = _mm512_fmadd_ps(ar, b0, c##r##0);             \
            if (nv > 1) c##r##1 = _mm512_fmadd_ps(ar, b1, c##r##1); \
            if (nv > 2) c##r##2 = _mm512_fmadd_ps(ar, b2, c##r##2); \
            if (nv > 3) c##r##3 = _mm512_fmadd_ps(ar, b3, c##r##3); \
        }
        A5_ROWS(A5_FMA)
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#define A5_STORE1(r, v)                                                                      \
    if (nv > v) {                                                                            \
        float *c = C + r * ldc + 16 * v;                                                     \
        __m512 x = alpha == 1.0f ? c##r##v : _mm512_mul_ps(va, c##r##v);                     \
        if (!first) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m##v, c));                    \
        else if (beta != 0.0f) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m##v, c), x);   \
        _mm512_mask_storeu_ps(c, m##v, x);                                                   \
    }
#define A5_STORE(r) if (r < mr) { A5_STORE1(r, 0) A5_STORE1(r, 1) A5_STORE1(r, 2) A5_STORE1(r, 3) }
    A5_ROWS(A5_STORE)
#undef A5_DECL
#undef A5_FMA
#undef A5_STORE1
#undef A5_STORE
}
/* C[0:M, 0:nr] of one panel: full-height tiles, then one shorter tile for the leftover rows. */
/* With pf, tile t also prefetches lines [t ceil(kc/8), (t + 1) ceil(kc/8)) from pf into L2, one
 * every 8 k: the panel path's next packed panel (kc x 64 floats, kc / 4 lines) arrives over the
 * first quarter of the tiles, and no tile waits on its first pass through it. */
static inline __attribute__((always_inline)) void panel_tiles(const bool use_pf, int64_t M, int nr, int64_t kc,
        const float *A, int64_t ars, int64_t acs, const float *B, int64_t ldb, float alpha, float beta, bool first,
        float *C, int64_t ldc, const float *pf) {
    int nv = (nr + 15) / 16, MR = a5_rows(nv);
    int64_t pf_step = (kc + 7) / 8 * 64; /* bytes of pf per tile */
    const char *pfp = (const char *)pf;
    for (int64_t i0 = 0; i0 < M; i0 += MR, pfp += pf_step) {
        int mr = (int)(M - i0 < MR ? M - i0 : MR);
        const float *a = A + i0 * ars;
        float *c = C + i0 * ldc;
#define A5_CALL(m, v) tile_avx512_t(m, v, nr, kc, a, ars, acs, B, ldb, alpha, beta, first, c, ldc, use_pf, pfp)
#define A5_UPTO6(v) case 1: A5_CALL(1, v); break; case 2: A5_CALL(2, v); break; case 3: A5_CALL(3, v); break; \
                    case 4: A5_CALL(4, v); break; case 5: A5_CALL(5, v); break; case 6: A5_CALL(6, v); break;
#define A5_UPTO8(v) A5_UPTO6(v) case 7: A5_CALL(7, v); break; case 8: A5_CALL(8, v); break;
#define A5_UPTO12(v) A5_UPTO8(v) case 9: A5_CALL(9, v); break; case 10: A5_CALL(10, v); break; \
                     case 11: A5_CALL(11, v); break; case 12: A5_CALL(12, v); break;
        switch (nv) {
        case 4: switch (mr) { A5_UPTO6(4) } break;
        case 3: switch (mr) { A5_UPTO8(3) } break;
        case 2: switch (mr) { A5_UPTO12(2) } break;
        default: switch (mr) { A5_UPTO12(1) } break;
        }
#undef A5_CALL
#undef A5_UPTO6
#undef A5_UPTO8
#undef A5_UPTO12
    }
}
static void panel_avx512_pf(int64_t M, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                            const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                            int64_t ldc, const float *pf) {
    panel_tiles(true, M, nr, kc, A, ars, acs, B, ldb, alpha, beta, first, C, ldc, pf ? pf : B);
}
static void panel_avx512(int64_t M, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                         const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                         int64_t ldc) {
    panel_tiles(false, M, nr, kc, A, ars, acs, B, ldb, alpha, beta, first, C, ldc, B);
}
/* out[k*GEMM_SMALL_NR + j] = in[j*ld + k] for a 16 x 16 block, in registers: pairs of rows interleave
 * (ps, then pd), then 128-bit lanes regroup. */
static void transpose16(const float *in, int64_t ld, float *out) {
    __m512 r[16], t[16], u[16];
    #pragma GCC unroll 16
    for (int j = 0; j < 16; j++) r[j] = _mm512_loadu_ps(in + j * ld);
    #pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    #pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* u[4g + e], 128-bit lane L, holds rows 4g..4g+3 at column 4L + e */
    #pragma GCC unroll 16
    for (int e = 0; e < 4; e++) {
        __m512 v = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x44), w = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x44);
        __m512 v2 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xEE), w2 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xEE);
        _mm512_storeu_ps(out + (0 + e) * GEMM_SMALL_NR, _mm512_shuffle_f32x4(v, w, 0x88));
        _mm512_storeu_ps(out + (4 + e) * GEMM_SMALL_NR, _mm512_shuffle_f32x4(v, w, 0xDD));
        _mm512_storeu_ps(out + (8 + e) * GEMM_SMALL_NR, _mm512_shuffle_f32x4(v2, w2, 0x88));
        _mm512_storeu_ps(out + (12 + e) * GEMM_SMALL_NR, _mm512_shuffle_f32x4(v2, w2, 0xDD));
    }
}

/* panel[k*GEMM_SMALL_NR + j] = Bt[j*ld + k], 16 x 16 blocks through registers, 16 k at a time
 * across the panel's width: each block of 16 panel rows is written whole, while it is in L1 (16
 * columns at a time over all k: 128 x 784 x 512 with B^T ~1.3% slower, same runs). */
static void avx512_small_pack_bt(const float *Bt, int64_t ld, int nr, int64_t kc, float *panel) {
    int padded = (nr + 15) / 16 * 16, full = nr / 16 * 16;
    for (int64_t k = 0; nr < padded && k < kc; k++)
        for (int j = nr; j < padded; j++) panel[k * GEMM_SMALL_NR + j] = 0.0f;
    int64_t k = 0;
    for (; k + 16 <= kc; k += 16)
        for (int j = 0; j < full; j += 16) transpose16(Bt + j * ld + k, ld, panel + k * GEMM_SMALL_NR + j);
    for (int j = 0; j < full; j++)
        for (int64_t kk = k; kk < kc; kk++) panel[kk * GEMM_SMALL_NR + j] = Bt[j * ld + kk];
    for (int j = full; j < nr; j++)
        for (int64_t kk = 0; kk < kc; kk++) panel[kk * GEMM_SMALL_NR + j] = Bt[j * ld + kk];
}

/* ---- packed GEMM: 12 x 32 tiles, 24 accumulators + 2 B vectors + 1 broadcast of 32 registers ---- */
#define V __m512
#define VL 16
#define VZERO() _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_load_ps(p)
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTOREU(p, v) _mm512_storeu_ps((p), (v))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm512_mul_ps((a), (b))
#define TMPL_MR 12
#define TMPL_NR 32
#define TMPL_NAME(x) avx512_##x
#include "gemm_tmpl.h"

/* ---- softmax rows: vmath_avx512.c (with the AVX-512 exp) ---- */

/* ---- direct convolution rows ---- */
/* R positions x nv vectors of channels, R * nv <= 24 accumulators; `nr` channels are stored. */
#define D5_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
static inline __attribute__((always_inline)) void direct_tile(const int R, const int nv, const float *a,
        int64_t ars, const int64_t *koff, int64_t taps, const float *w, int64_t ldw, float *y, int64_t ldy, int nr) {
#define D5_DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0;
    D5_ROWS(D5_DECL)
    for (int64_t t = 0; t < taps; t++) {
        const float *at = a + koff[t], *wt = w + t * ldw;
        __m512 b0 = _mm512_loadu_ps(wt), b1 = b0, b2 = b0, b3 = b0;
        if (nv > 1) b1 = _mm512_loadu_ps(wt + 16);
        if (nv > 2) b2 = _mm512_loadu_ps(wt + 32);
        if (nv > 3) b3 = _mm512_loadu_ps(wt + 48);
#define D5_FMA(r)                                                   \
        if (r < R) {                                                \
            __m512 ar = _mm512_set1_ps(at[r * ars]);                \
            c##r##0 = _mm512_fmadd_ps(ar, b0, c##r##0);             \
            if (nv > 1) c##r##1 = _mm512_fmadd_ps(ar, b1, c##r##1); \
            if (nv > 2) c##r##2 = _mm512_fmadd_ps(ar, b2, c##r##2); \
            if (nv > 3) c##r##3 = _mm512_fmadd_ps(ar, b3, c##r##3); \
        }
        D5_ROWS(D5_FMA)
    }
#define D5_STORE1(r, v) \
    if (nv > v) _mm512_mask_storeu_ps(y + r * ldy + 16 * v, nr - 16 * v >= 16 ? 0xFFFF : (__mmask16)((1u << (nr - 16 * v)) - 1), c##r##v);
#define D5_STORE(r) if (r < R) { D5_STORE1(r, 0) D5_STORE1(r, 1) D5_STORE1(r, 2) D5_STORE1(r, 3) }
    D5_ROWS(D5_STORE)
#undef D5_DECL
#undef D5_FMA
#undef D5_STORE1
#undef D5_STORE
}

/* One output row: channel blocks of up to 64, positions split into equal tiles of at most
 * 24 / nv (12 at most) so no tile is a short leftover: 28 positions x 32 channels is 10 + 9 + 9. */
static void avx512_conv_direct_row(const conv_direct_plan *p, const float *row, float *y) {
    const conv2d_direct *c = p->c;
    int64_t ars = c->sw * c->cin;
    for (int64_t co0 = 0; co0 < c->cout; co0 += 64) {
        int nr = (int)(c->cout - co0 < 64 ? c->cout - co0 : 64), nv = (nr + 15) / 16;
        int64_t rmax = nv == 4 ? 6 : nv == 3 ? 8 : 12, ntiles = (c->ow + rmax - 1) / rmax;
        for (int64_t tile = 0, ow0 = 0; tile < ntiles; tile++) {
            int R = (int)((c->ow - ow0) / (ntiles - tile) + ((c->ow - ow0) % (ntiles - tile) != 0));
            const float *a = row + ow0 * ars;
            const float *w = p->w + co0;
            float *yt = y + ow0 * c->cout + co0;
#define D5_CALL(r, v) direct_tile(r, v, a, ars, p->koff, c->taps, w, p->cop, yt, c->cout, nr)
#define D5_UPTO6(v) case 1: D5_CALL(1, v); break; case 2: D5_CALL(2, v); break; case 3: D5_CALL(3, v); break; \
                    case 4: D5_CALL(4, v); break; case 5: D5_CALL(5, v); break; case 6: D5_CALL(6, v); break;
#define D5_UPTO8(v) D5_UPTO6(v) case 7: D5_CALL(7, v); break; case 8: D5_CALL(8, v); break;
#define D5_UPTO12(v) D5_UPTO8(v) case 9: D5_CALL(9, v); break; case 10: D5_CALL(10, v); break; \
                     case 11: D5_CALL(11, v); break; case 12: D5_CALL(12, v); break;
            switch (nv) {
            case 4: switch (R) { D5_UPTO6(4) } break;
            case 3: switch (R) { D5_UPTO8(3) } break;
            case 2: switch (R) { D5_UPTO12(2) } break;
            default: switch (R) { D5_UPTO12(1) } break;
            }
#undef D5_CALL
#undef D5_UPTO6
#undef D5_UPTO8
#undef D5_UPTO12
            ow0 += R;
        }
    }
}

static const lx_kernels table = {
    .isa = LX_ISA_AVX512,
    .gemm_name = "avx512",
    .gemm = {.mr = TMPL_MR, .nr = TMPL_NR, .ukr = avx512_ukr, .pack_a = avx512_pack_a, .pack_b = avx512_pack_b,
             .small_panel = panel_avx512, .panel_pf = panel_avx512_pf, .small_pack_bt = avx512_small_pack_bt,
             .epi = lx_gemm_epi_avx2 /* 8 lanes: no 16-lane kernel of its own (none could be run yet) */},
    .softmax_row = lx_avx512_softmax_row,
    .logsumexp_row = lx_avx512_logsumexp_row,
    .norm_row = avx512p_norm_row,
    .conv_direct_row = avx512_conv_direct_row,
};

const lx_kernels *lx_kernels_avx512(void) { return &table; }
#else
const lx_kernels *lx_kernels_avx512(void) { return 0; }
#endif
