/* GEMM: OpenBLAS above a size threshold, our own register-blocked kernel below it.
 *
 * Small problems lose most of their time in BLAS's packing and dispatch, so below the threshold
 * we compute C in MR x NR register tiles straight from the caller's buffers: B rows are read as
 * vectors (NR columns), A entries are broadcast, K is blocked so a B panel stays in L1. A
 * transposed B is the one layout that cannot be read as rows; it is packed one K x NR panel at a
 * time into a stack buffer. Row-major throughout. */
#include <cblas.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "linalg_internal.h"
#include "linnx/linalg.h"
#include "linnx/threads.h"

#define KC 256 /* K block: a KC x 64 B panel is 64 KiB, L2-resident; K is cut into equal blocks */
#define NR_MAX 64 /* panel width: the widest AVX-512 tile */

/* M*N*K at or below which the built-in kernel wins over OpenBLAS (measured by bench/ops.c). */
#define DEFAULT_SMALL_LIMIT (128LL * 128 * 128)

static _Atomic int64_t small_limit = DEFAULT_SMALL_LIMIT;

typedef enum { KERNEL_PORTABLE, KERNEL_AVX2, KERNEL_AVX512 } kernel_id;

#if defined(__AVX512F__)
#define BEST_KERNEL KERNEL_AVX512
#elif defined(__AVX2__) && defined(__FMA__)
#define BEST_KERNEL KERNEL_AVX2
#else
#define BEST_KERNEL KERNEL_PORTABLE
#endif

static atomic_int active_kernel = BEST_KERNEL;

/* One K block of a column panel: C[0:M, 0:nr] (+)= alpha * A[0:M, 0:kc] B[0:kc, 0:nr], nr <=
 * NR_MAX. A(r, k) = A[r*ars + k*acs]; B(k, j) = B[k*ldb + j], readable (zeros past nr) up to the
 * next multiple of 16 columns; `first` applies beta, later blocks add. Each kernel cuts the panel
 * into register tiles of its own height. */
typedef void (*panel_fn)(int64_t M, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                         const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                         int64_t ldc);

static inline float combine(float acc, float alpha, float beta, bool first, float c) {
    float v = alpha * acc;
    if (!first) return c + v;
    return beta == 0.0f ? v : v + beta * c;
}

/* ---- portable: plain C, MR x 16 tiles the compiler can vectorize ---- */
#define P_MR 4
#define P_NR 16
static void tile_portable(int mr, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                          const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                          int64_t ldc) {
    for (int j0 = 0; j0 < nr; j0 += P_NR) {
        int nj = nr - j0 < P_NR ? nr - j0 : P_NR;
        float acc[P_MR][P_NR] = {{0}};
        for (int64_t k = 0; k < kc; k++) {
            const float *b = B + k * ldb + j0;
            float bk[P_NR] = {0};
            for (int j = 0; j < nj; j++) bk[j] = b[j];
            for (int r = 0; r < mr; r++) {
                float a = A[r * ars + k * acs];
                for (int j = 0; j < P_NR; j++) acc[r][j] += a * bk[j];
            }
        }
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < nj; j++) {
                float *c = C + r * ldc + j0 + j;
                *c = combine(acc[r][j], alpha, beta, first, first && beta == 0.0f ? 0.0f : *c);
            }
    }
}
static void panel_portable(int64_t M, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                           const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                           int64_t ldc) {
    for (int64_t i0 = 0; i0 < M; i0 += P_MR)
        tile_portable((int)(M - i0 < P_MR ? M - i0 : P_MR), nr, kc, A + i0 * ars, ars, acs, B, ldb, alpha,
                      beta, first, C + i0 * ldc, ldc);
}

/* ---- AVX2 + FMA: 6 x 16 tiles (12 accumulators), masked edges ---- */
#if defined(__AVX2__) && defined(__FMA__)
#define A2_MR 6
static inline __m256i mask8(int n) { /* lanes [0, n) set, n clamped to 0..8 */
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __attribute__((always_inline)) void tile_avx2_t(const int mr, int nr, int64_t kc,
        const float *A, int64_t ars, int64_t acs, const float *B, int64_t ldb, float alpha,
        float beta, bool first, float *C, int64_t ldc) {
    __m256 c0[A2_MR], c1[A2_MR];
    for (int r = 0; r < mr; r++) c0[r] = c1[r] = _mm256_setzero_ps();
    __m256i m0 = mask8(nr), m1 = mask8(nr - 8);
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_maskload_ps(B + k * ldb, m0);
        __m256 b1 = _mm256_maskload_ps(B + k * ldb + 8, m1);
        for (int r = 0; r < mr; r++) {
            __m256 a = _mm256_broadcast_ss(A + r * ars + k * acs);
            c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int r = 0; r < mr; r++) {
        float *c = C + r * ldc;
        __m256 v0 = _mm256_mul_ps(va, c0[r]), v1 = _mm256_mul_ps(va, c1[r]);
        if (!first) {
            v0 = _mm256_add_ps(v0, _mm256_maskload_ps(c, m0));
            v1 = _mm256_add_ps(v1, _mm256_maskload_ps(c + 8, m1));
        } else if (beta != 0.0f) {
            v0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c, m0), v0);
            v1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c + 8, m1), v1);
        }
        _mm256_maskstore_ps(c, m0, v0);
        _mm256_maskstore_ps(c + 8, m1, v1);
    }
}
static void tile_avx2(int mr, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                      const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                      int64_t ldc) {
    for (int j0 = 0; j0 < nr; j0 += 16) {
        int nj = nr - j0 < 16 ? nr - j0 : 16;
#define A2_CASE(m) case m: tile_avx2_t(m, nj, kc, A, ars, acs, B + j0, ldb, alpha, beta, first, C + j0, ldc); break;
        switch (mr) { A2_CASE(1) A2_CASE(2) A2_CASE(3) A2_CASE(4) A2_CASE(5) A2_CASE(6) }
#undef A2_CASE
    }
}
static void panel_avx2(int64_t M, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                       const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                       int64_t ldc) {
    for (int64_t i0 = 0; i0 < M; i0 += A2_MR)
        tile_avx2((int)(M - i0 < A2_MR ? M - i0 : A2_MR), nr, kc, A + i0 * ars, ars, acs, B, ldb, alpha,
                  beta, first, C + i0 * ldc, ldc);
}
#endif

/* ---- AVX-512: up to 24 accumulators, rows x 16*nv tiles, edges by lane masks ----
 * A panel is cut into tiles of nv vectors (16 floats each) by the most rows that keep 24
 * accumulators: 6 x 64, 8 x 48, 12 x 32, 12 x 16. Per k a 6 x 64 tile loads 4 B vectors and
 * broadcasts 6 A entries for 24 FMAs, the ratio OpenBLAS's small-matrix kernel uses; the earlier
 * 8 x 32 tile (16 accumulators) measured ~7% slower at 64^3. B is read with plain loads: the
 * driver pads a panel whose width is not a multiple of 16 with zeros (masked loads in the k loop
 * cost another ~7%); only C is read and written under lane masks, once per tile. Accumulators
 * are named variables, not arrays: GCC keeps arrays of vectors on the stack. Every `r < mr` and
 * `nv > v` test folds away once the dispatcher inlines constants. */
#if defined(__AVX512F__)
#define A5_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
static inline int a5_rows(int nv) { return nv == 4 ? 6 : nv == 3 ? 8 : 12; }
static inline __mmask16 a5_mask(int nr, int v) { /* lanes of vector v inside [0, nr) */
    int n = nr - 16 * v;
    return n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}
static inline __attribute__((always_inline)) void tile_avx512_t(const int mr, const int nv, int nr,
        int64_t kc, const float *A, int64_t ars, int64_t acs, const float *B, int64_t ldb,
        float alpha, float beta, bool first, float *C, int64_t ldc) {
#define A5_DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0;
    A5_ROWS(A5_DECL)
    const __mmask16 m0 = a5_mask(nr, 0), m1 = a5_mask(nr, 1), m2 = a5_mask(nr, 2), m3 = a5_mask(nr, 3);
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        const float *a = A + k * acs, *b = B + k * ldb;
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
static void panel_avx512(int64_t M, int nr, int64_t kc, const float *A, int64_t ars, int64_t acs,
                         const float *B, int64_t ldb, float alpha, float beta, bool first, float *C,
                         int64_t ldc) {
    int nv = (nr + 15) / 16, MR = a5_rows(nv);
    for (int64_t i0 = 0; i0 < M; i0 += MR) {
        int mr = (int)(M - i0 < MR ? M - i0 : MR);
        const float *a = A + i0 * ars;
        float *c = C + i0 * ldc;
#define A5_CALL(m, v) tile_avx512_t(m, v, nr, kc, a, ars, acs, B, ldb, alpha, beta, first, c, ldc)
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
#endif

static panel_fn kernel_for(kernel_id id) {
    switch (id) {
#if defined(__AVX512F__)
    case KERNEL_AVX512: return panel_avx512;
#endif
#if defined(__AVX2__) && defined(__FMA__)
    case KERNEL_AVX2: return panel_avx2;
#endif
    default: return panel_portable;
    }
}

#if defined(__AVX512F__)
/* out[k*NR_MAX + j] = in[j*ld + k] for a 16 x 16 block, in registers: pairs of rows interleave
 * (ps, then pd), then 128-bit lanes regroup. */
static void transpose16(const float *in, int64_t ld, float *out) {
    __m512 r[16], t[16], u[16];
    for (int j = 0; j < 16; j++) r[j] = _mm512_loadu_ps(in + j * ld);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* u[4g + e], 128-bit lane L, holds rows 4g..4g+3 at column 4L + e */
    for (int e = 0; e < 4; e++) {
        __m512 v = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x44), w = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x44);
        __m512 v2 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xEE), w2 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xEE);
        _mm512_storeu_ps(out + (0 + e) * NR_MAX, _mm512_shuffle_f32x4(v, w, 0x88));
        _mm512_storeu_ps(out + (4 + e) * NR_MAX, _mm512_shuffle_f32x4(v, w, 0xDD));
        _mm512_storeu_ps(out + (8 + e) * NR_MAX, _mm512_shuffle_f32x4(v2, w2, 0x88));
        _mm512_storeu_ps(out + (12 + e) * NR_MAX, _mm512_shuffle_f32x4(v2, w2, 0xDD));
    }
}
#endif

/* panel[k*NR_MAX + j] = Bt[j*ld + k] for j < nr, k < kc: one K x NR slice of a transposed B,
 * zeros in columns [nr, 16 * ceil(nr / 16)). */
static void pack_transposed(const float *Bt, int64_t ld, int nr, int64_t kc, float *panel) {
    int padded = (nr + 15) / 16 * 16;
    for (int64_t k = 0; nr < padded && k < kc; k++)
        for (int j = nr; j < padded; j++) panel[k * NR_MAX + j] = 0.0f;
    int j = 0;
#if defined(__AVX512F__)
    for (; j + 16 <= nr; j += 16) {
        int64_t k = 0;
        for (; k + 16 <= kc; k += 16) transpose16(Bt + j * ld + k, ld, panel + k * NR_MAX + j);
        for (int jj = j; jj < j + 16; jj++)
            for (int64_t kk = k; kk < kc; kk++) panel[kk * NR_MAX + jj] = Bt[jj * ld + kk];
    }
#endif
    for (; j < nr; j++)
        for (int64_t k = 0; k < kc; k++) panel[k * NR_MAX + j] = Bt[j * ld + k];
}

/* C = alpha op(A) op(B) + beta C with the built-in kernel, any size, on this thread. */
void lx_sgemm_serial(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == 0.0f) { /* no product: C = beta C, never reading C when beta is 0 */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    panel_fn kernel = kernel_for((kernel_id)atomic_load(&active_kernel));
    int64_t ars = transA ? 1 : lda, acs = transA ? lda : 1;
    _Alignas(64) float panel[KC * NR_MAX]; /* a packed K x NR slice of a transposed B */
    int64_t nkb = (K + KC - 1) / KC, kb = (K + nkb - 1) / nkb; /* equal blocks: 288 is 144 + 144 */
    for (int64_t k0 = 0; k0 < K; k0 += kb) {
        int64_t kc = K - k0 < kb ? K - k0 : kb;
        for (int64_t j0 = 0; j0 < N; j0 += NR_MAX) {
            int nr = (int)(N - j0 < NR_MAX ? N - j0 : NR_MAX);
            const float *bp;
            int64_t bld;
            if (transB) {
                pack_transposed(B + j0 * ldb + k0, ldb, nr, kc, panel);
                bp = panel;
                bld = NR_MAX;
            } else if (nr % 16 != 0) { /* a ragged last panel: copy it, zero-padded to 16 lanes */
                int padded = (nr + 15) / 16 * 16;
                for (int64_t k = 0; k < kc; k++) {
                    memcpy(panel + k * NR_MAX, B + (k0 + k) * ldb + j0, sizeof(float) * (size_t)nr);
                    memset(panel + k * NR_MAX + nr, 0, sizeof(float) * (size_t)(padded - nr));
                }
                bp = panel;
                bld = NR_MAX;
            } else {
                bp = B + k0 * ldb + j0;
                bld = ldb;
            }
            kernel(M, nr, kc, A + k0 * acs, ars, acs, bp, bld, alpha, beta, k0 == 0, C + j0, ldc);
        }
    }
}

bool lx_sgemm_is_small(int64_t M, int64_t N, int64_t K) {
    int64_t lim = atomic_load(&small_limit);
    if (M == 0 || N == 0 || K == 0) return true;
    /* overflow-safe M*N*K <= lim */
    if (M > lim || N > lim || K > lim) return false;
    return M * N <= lim / K;
}

lx_status lx_sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                   int64_t ldc) {
    if (M < 0 || N < 0 || K < 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "sgemm: negative size M=%lld N=%lld K=%lld",
                       (long long)M, (long long)N, (long long)K);
    int64_t acols = transA ? M : K, bcols = transB ? K : N;
    if (lda < (acols > 1 ? acols : 1) || ldb < (bcols > 1 ? bcols : 1) || ldc < (N > 1 ? N : 1))
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "sgemm: leading dimensions lda=%lld ldb=%lld ldc=%lld are smaller than the "
                       "rows they step over (%lld, %lld, %lld)",
                       (long long)lda, (long long)ldb, (long long)ldc, (long long)acols,
                       (long long)bcols, (long long)N);
    if (M == 0 || N == 0) return LX_OK;
    if (!C || (K > 0 && alpha != 0.0f && (!A || !B)))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "sgemm: NULL buffer");
    if (lx_sgemm_is_small(M, N, K) || alpha == 0.0f) {
        lx_sgemm_serial(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return LX_OK;
    }
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
        return lx_fail(LX_ERR_UNSUPPORTED, "sgemm: sizes beyond 32-bit BLAS indices");
    (void)lx_num_threads(); /* make sure OpenBLAS got the thread setting */
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
    return LX_OK;
}

int64_t lx_sgemm_small_limit(void) { return atomic_load(&small_limit); }

void lx_sgemm_set_small_limit(int64_t limit) {
    atomic_store(&small_limit, limit < 0 ? DEFAULT_SMALL_LIMIT : limit);
}

static const char *kernel_name(kernel_id id) {
    return id == KERNEL_AVX512 ? "avx512" : id == KERNEL_AVX2 ? "avx2" : "portable";
}

const char *lx_sgemm_kernel(void) { return kernel_name((kernel_id)atomic_load(&active_kernel)); }

lx_status lx_sgemm_use_kernel(const char *name) {
    if (!name) {
        atomic_store(&active_kernel, BEST_KERNEL);
        return LX_OK;
    }
    kernel_id want;
    if (strcmp(name, "portable") == 0) want = KERNEL_PORTABLE;
    else if (strcmp(name, "avx2") == 0) want = KERNEL_AVX2;
    else if (strcmp(name, "avx512") == 0) want = KERNEL_AVX512;
    else return lx_fail(LX_ERR_INVALID_ARGUMENT, "sgemm_use_kernel: unknown kernel '%s' (avx512, avx2, portable)", name);
    bool have = want == KERNEL_PORTABLE;
#if defined(__AVX512F__)
    have = have || want == KERNEL_AVX512;
#endif
#if defined(__AVX2__) && defined(__FMA__)
    have = have || want == KERNEL_AVX2;
#endif
    if (!have) return lx_fail(LX_ERR_UNSUPPORTED, "sgemm_use_kernel: kernel '%s' is not compiled into this build", name);
    atomic_store(&active_kernel, want);
    return LX_OK;
}
