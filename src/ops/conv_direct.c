/* 2-D convolution without im2col, for windows of few values (kh * kw * C_in <= 32).
 *
 * With a 3x3 kernel over one to three channels im2col writes as much as the GEMM reads, and
 * unfolding is most of the time. Here each output row (n, oh) copies the kh input rows it reads,
 * zero-padded (or cropped) to the window's reach, into a small buffer; register tiles of R output
 * positions x 16*nv output channels then accumulate every tap straight from it:
 *   A(ow, t) = row[ow * s * C_in + koff[t]]   (the im2col matrix, read in place)
 *   y[ow, co] = sum over t of A(ow, t) * w[t, co]   (t in HWIO order, as im2col + GEMM sums it)
 * Taps are summed in that order with one FMA each, as the GEMM kernel does, so the result is
 * what the im2col path gives. OpenMP runs over batch x output rows. */
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "conv_internal.h"
#include "linnx/linalg.h"
#include "linnx/threads.h"

typedef struct {
    const conv2d_direct *c;
    int64_t wp, rowlen, cop; /* padded row width, floats per row buffer, C_out rounded up to 16 */
    int64_t koff[CONV_DIRECT_MAX_TAPS];
    const float *w;          /* taps x cop, zero-padded columns: tiles load whole vectors */
} direct_plan;

/* The kh input rows output row oh reads, as row[(i * wp + j) * cin + c], zeros outside x. */
static void gather_rows(const direct_plan *p, const float *img, int64_t oh, float *row) {
    const conv2d_direct *c = p->c;
    for (int64_t i = 0; i < c->kh; i++) {
        int64_t ih = oh * c->sh + i * c->dh - c->lo_h;
        float *dst = row + i * p->wp * c->cin;
        if (ih < 0 || ih >= c->h) {
            memset(dst, 0, sizeof(float) * (size_t)(p->wp * c->cin));
            continue;
        }
        /* columns j with 0 <= j - lo_w < w are copied, the rest are padding */
        int64_t j0 = c->lo_w > 0 ? c->lo_w : 0, j1 = c->w + c->lo_w;
        j0 = j0 < p->wp ? j0 : p->wp;
        j1 = j1 < p->wp ? j1 : p->wp;
        j1 = j1 > j0 ? j1 : j0;
        memset(dst, 0, sizeof(float) * (size_t)(j0 * c->cin));
        memcpy(dst + j0 * c->cin, img + (ih * c->w + j0 - c->lo_w) * c->cin, sizeof(float) * (size_t)((j1 - j0) * c->cin));
        memset(dst + j1 * c->cin, 0, sizeof(float) * (size_t)((p->wp - j1) * c->cin));
    }
}

/* Portable: one output position at a time, channels in a vectorisable loop. */
static void direct_row_portable(const direct_plan *p, const float *row, float *y) {
    const conv2d_direct *c = p->c;
    int64_t ars = c->sw * c->cin;
    for (int64_t ow = 0; ow < c->ow; ow++) {
        float *yo = y + ow * c->cout;
        for (int64_t co = 0; co < c->cout; co++) yo[co] = 0.0f;
        for (int64_t t = 0; t < c->taps; t++) {
            float a = row[ow * ars + p->koff[t]];
            const float *wt = p->w + t * p->cop;
#pragma omp simd
            for (int64_t co = 0; co < c->cout; co++) yo[co] = __builtin_fmaf(a, wt[co], yo[co]);
        }
    }
}

#if defined(__AVX512F__)
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
static void direct_row_avx512(const direct_plan *p, const float *row, float *y) {
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
#endif

lx_status conv2d_direct_forward(const conv2d_direct *c, const float *x, const float *w, float *y) {
    direct_plan p = {.c = c, .wp = (c->ow - 1) * c->sw + (c->kw - 1) * c->dw + 1, .cop = (c->cout + 15) / 16 * 16};
    p.rowlen = c->kh * p.wp * c->cin;
    for (int64_t i = 0, t = 0; i < c->kh; i++)
        for (int64_t j = 0; j < c->kw; j++)
            for (int64_t ch = 0; ch < c->cin; ch++) p.koff[t++] = (i * p.wp + j * c->dw) * c->cin + ch;
    float *wpad = calloc((size_t)(c->taps * p.cop), sizeof(float));
    if (!wpad) return lx_fail(LX_ERR_NO_MEMORY, "conv_general: out of memory");
    for (int64_t t = 0; t < c->taps; t++) memcpy(wpad + t * p.cop, w + t * c->cout, sizeof(float) * (size_t)c->cout);
    p.w = wpad;
    bool avx512 = false;
#if defined(__AVX512F__)
    avx512 = strcmp(lx_sgemm_kernel(), "avx512") == 0; /* lx_sgemm_use_kernel picks the path, for tests */
#endif
    int64_t rows = c->n * c->oh;
    double work = (double)rows * (double)c->ow * (double)c->taps * (double)c->cout;
    int nt = work > (1 << 18) ? lx_num_threads() : 1, failed = 0;
#pragma omp parallel num_threads(nt)
    {
        float *row = malloc(sizeof(float) * (size_t)p.rowlen);
        if (!row) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!row) continue;
            int64_t n = r / c->oh, oh = r % c->oh;
            gather_rows(&p, x + n * c->h * c->w * c->cin, oh, row);
            float *yr = y + r * c->ow * c->cout;
#if defined(__AVX512F__)
            if (avx512) {
                direct_row_avx512(&p, row, yr);
                continue;
            }
#endif
            direct_row_portable(&p, row, yr);
        }
        free(row);
    }
    free(wpad);
    (void)avx512;
    return failed ? lx_fail(LX_ERR_NO_MEMORY, "conv_general: out of memory for input rows") : LX_OK;
}
