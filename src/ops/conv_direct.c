/* 2-D convolution without im2col, for windows of few values (kh * kw * C_in <= 32).
 *
 * With a 3x3 kernel over one to three channels im2col writes as much as the GEMM reads, and
 * unfolding is most of the time. Here each output row (n, oh) copies the kh input rows it reads,
 * zero-padded (or cropped) to the window's reach, into a small buffer; register tiles of R output
 * positions x 16*nv output channels then accumulate every tap straight from it:
 *   A(ow, t) = row[ow * s * C_in + koff[t]]   (the im2col matrix, read in place)
 *   y[ow, co] = sum over t of A(ow, t) * w[t, co]   (t in HWIO order, as im2col + GEMM sums it)
 * Taps are summed in that order with one FMA each, as the GEMM kernel does, so the result is
 * what the im2col path gives. The thread pool (team.h) runs over batch x output rows. */
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "kernels.h"
#include "linnx/linalg.h"
#include "linnx/threads.h"
#include "team.h"

typedef conv_direct_plan direct_plan; /* conv_internal.h: the row kernels (kernels.h) read it */

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

/* The row kernels (a portable loop, AVX-512 register tiles) live in the kernel sets: kernels.h. */

typedef struct direct_job {
    const direct_plan *p;
    const float *x;
    float *y;
    void (*row_kernel)(const conv_direct_plan *, const float *, float *);
} direct_job;

/* output rows [lo, hi), each gathered into a scratch row first */
static int direct_rows(void *ctx, int64_t lo, int64_t hi) {
    const direct_job *j = ctx;
    const conv2d_direct *c = j->p->c;
    float *row = malloc(sizeof(float) * (size_t)j->p->rowlen);
    if (!row) return 1;
    for (int64_t r = lo; r < hi; r++) {
        int64_t n = r / c->oh, oh = r % c->oh;
        gather_rows(j->p, j->x + n * c->h * c->w * c->cin, oh, row);
        j->row_kernel(j->p, row, j->y + r * c->ow * c->cout);
    }
    free(row);
    return 0;
}

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
    void (*row_kernel)(const conv_direct_plan *, const float *, float *) = lx_kernels_active()->conv_direct_row;
    int64_t rows = c->n * c->oh;
    double work = (double)rows * (double)c->ow * (double)c->taps * (double)c->cout;
    int nt = work > (1 << 18) ? lx_num_threads() : 1;
    direct_job j = {&p, x, y, row_kernel};
    int failed = lx_parallel_for(nt, rows, direct_rows, &j);
    free(wpad);
    return failed ? lx_fail(LX_ERR_NO_MEMORY, "conv_general: out of memory for input rows") : LX_OK;
}
