/* lax.conv_general_dilated for channels-last inputs and HWIO kernels, by im2col + GEMM.
 *
 * Output rows (batch x output positions) are cut into chunks; each pool thread (team.h) unfolds one chunk
 * of input patches (kernel positions x input channels, the HWIO row order) into its own buffer and
 * multiplies it by the kernel with our GEMM kernel, group by group, straight into the output. Keeping
 * both steps on one thread avoids handing cache-warm patches to OpenBLAS's threads. A 1x1,
 * stride-1, unpadded, ungrouped convolution needs no patches: it is one GEMM on x; a 2-D one whose
 * window holds few values (a 3x3 kernel over 1-3 channels) runs the direct kernel of
 * conv_direct.c, since its patches would cost more to write than the GEMM does to read. */
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "linalg_internal.h"
#include "linnx/linalg.h"
#include "linnx/nn.h"
#include "linnx/threads.h"
#include "op_internal.h"
#include "team.h"

#define CHUNK_FLOATS (1 << 17) /* 512 KiB of patches per worker: inside L2 */

/* Input index along axis i for output position o and kernel tap t, or -1 where the window reads
 * padding or a hole of the dilated input: tab[i][o * k[i] + t]. Built once per call so the
 * unfolding loop does no division. */
static int64_t *conv_tables(const conv_dims *c, int64_t **tab) {
    int64_t total = 0, n;
    size_t bytes;
    for (int i = 0; i < c->nsp; i++)
        if (!lx_mul_ok(c->out[i], c->k[i], &n) || !lx_add_ok(total, n, &total)) return NULL;
    if (!lx_bytes_ok(total + 1, sizeof(int64_t), &bytes)) return NULL;
    int64_t *mem = malloc(bytes);
    if (!mem) return NULL;
    int64_t *t = mem;
    for (int i = 0; i < c->nsp; i++) {
        tab[i] = t;
        for (int64_t o = 0; o < c->out[i]; o++)
            for (int64_t k = 0; k < c->k[i]; k++) {
                int64_t p = o * c->stride[i] + k * c->rdil[i] - c->lo[i]; /* in the dilated input */
                *t++ = p < 0 || p % c->ldil[i] != 0 || p / c->ldil[i] >= c->in[i] ? -1 : p / c->ldil[i];
            }
    }
    return mem;
}

/* Patches of output rows [r0, r0 + nr) for group g: row-major (nr, ks * ig), taps in HWI order,
 * zeros where the window reads padding. */
static void im2col_forward(const conv_dims *c, int64_t *const *tab, const float *x, int64_t r0, int64_t nr,
                           int64_t g, float *cols) {
    int nsp = c->nsp;
    int64_t ig = c->cin / c->groups;
    for (int64_t r = 0; r < nr; r++) {
        int64_t row = r0 + r, n = row / c->outsp, rest = row % c->outsp;
        const int64_t *ax[LX_MAX_DIMS]; /* this row's slice of each table */
        for (int i = nsp - 1; i >= 0; i--) {
            ax[i] = tab[i] + (rest % c->out[i]) * c->k[i];
            rest /= c->out[i];
        }
        const float *img = x + n * c->insp * c->cin + g * ig;
        float *d = cols + r * c->ks * ig;
        int64_t t[LX_MAX_DIMS] = {0};
        for (int64_t kk = 0; kk < c->ks; kk++, d += ig) {
            int64_t sp = 0;
            bool inside = true;
            for (int i = 0; i < nsp; i++) {
                int64_t p = ax[i][t[i]];
                inside = inside && p >= 0;
                sp += p * c->pitch[i];
            }
            if (!inside) {
                for (int64_t ch = 0; ch < ig; ch++) d[ch] = 0.0f;
            } else {
                const float *src = img + sp * c->cin;
                for (int64_t ch = 0; ch < ig; ch++) d[ch] = src[ch];
            }
            for (int i = nsp - 1; i >= 0; i--) { /* next tap */
                if (++t[i] < c->k[i]) break;
                t[i] = 0;
            }
        }
    }
}

typedef struct conv_job {
    const conv_dims *c;
    int64_t *const *tab;
    const float *x, *w;
    float *y;
    int64_t rows, chunk, kc, og;
    float *cols[LX_TEAM_MAX]; /* one per participant: lx_parallel_tid() < LX_TEAM_MAX */
} conv_job;

static int conv_chunks(void *ctx, int64_t lo, int64_t hi) {
    conv_job *j = ctx;
    const conv_dims *c = j->c;
    const int64_t chunk = j->chunk, kc = j->kc, og = j->og;
    int tid = lx_parallel_tid();
    float *cols = j->cols[tid];
    if (!cols && !(cols = j->cols[tid] = malloc(sizeof(float) * (size_t)(chunk * kc + 1)))) return 1;
    for (int64_t ch = lo; ch < hi; ch++) {
        int64_t r0 = ch * chunk, nr = j->rows - r0 < chunk ? j->rows - r0 : chunk;
        for (int64_t g = 0; g < c->groups; g++) {
            im2col_forward(c, j->tab, j->x, r0, nr, g, cols);
            lx_sgemm_serial(false, false, nr, og, kc, 1.0f, cols, kc, j->w + g * og, c->cout, 0.0f,
                            j->y + r0 * c->cout + g * og, c->cout);
        }
    }
    return 0;
}

static lx_status conv_forward(const conv_dims *c, const float *x, const float *w, float *y) {
    int64_t ig = c->cin / c->groups, og = c->cout / c->groups, kc = c->ks * ig, rows = c->n * c->outsp;
    int64_t chunk = CHUNK_FLOATS / (kc > 0 ? kc : 1);
    if (chunk < 16) chunk = 16;
    int64_t nchunks = (rows + chunk - 1) / chunk;
    double work = (double)rows * (double)kc * (double)c->cout;
    int nt = work > (1 << 18) ? lx_num_threads() : 1;
    if (nt > nchunks) nt = (int)nchunks;
    int64_t *tab[LX_MAX_DIMS];
    int64_t *tabmem = conv_tables(c, tab);
    if (!tabmem) return lx_fail(LX_ERR_NO_MEMORY, "conv_general: out of memory");
    /* a patch buffer per pool thread, allocated by the thread the first time it takes a chunk */
    conv_job j = {c, tab, x, w, y, rows, chunk, kc, og, {NULL}};
    int failed = lx_parallel_for_dynamic(nt > 0 ? nt : 1, nchunks, 1, conv_chunks, &j);
    for (int t = 0; t < LX_TEAM_MAX; t++) free(j.cols[t]);
    free(tabmem);
    return failed ? lx_fail(LX_ERR_NO_MEMORY, "conv_general: out of memory for patches") : LX_OK;
}

static bool read_positive(const char *what, const int64_t *v, int n, int64_t *out, const char *xs, const char *ks) {
    for (int i = 0; i < n; i++) {
        out[i] = v[i] == 0 ? 1 : v[i];
        if (out[i] < 1) {
            lx_fail(LX_ERR_INVALID_ARGUMENT, "conv_general: %s must be positive, got %lld at spatial axis %d (lhs %s, rhs %s)",
                    what, (long long)v[i], i, xs, ks);
            return false;
        }
    }
    return true;
}

/* The geometry of a convolution from its (possibly unnormalised) params: every check of the shape
 * rule, with checked arithmetic for each dilated, padded length. */
lx_status conv_plan(const lx_array *x, const lx_array *kernel, const lx_conv_params *p, conv_dims *cp,
                    int64_t *oshape) {
    char b1[96], b2[96];
    const char *xs = lx_shape_str(x->ndim, x->shape, b1, sizeof b1);
    const char *ks = lx_shape_str(kernel->ndim, kernel->shape, b2, sizeof b2);
    if (x->dtype != LX_F32 || kernel->dtype != LX_F32) {
        return lx_fail(LX_ERR_DTYPE, "conv_general: expected float32 lhs and rhs, got %s%s and %s%s", lx_dtype_name(x->dtype), xs,
                lx_dtype_name(kernel->dtype), ks);
    }
    if (x->ndim < 3 || kernel->ndim != x->ndim) {
        return lx_fail(LX_ERR_SHAPE, "conv_general: lhs %s (N, spatial..., C) and rhs %s (spatial..., I, O) need the same rank, at least 3",
                xs, ks);
    }
    conv_dims c = {.nsp = x->ndim - 2, .n = x->shape[0], .cin = x->shape[x->ndim - 1],
                   .cout = kernel->shape[kernel->ndim - 1], .groups = p->feature_group_count ? p->feature_group_count : 1};
    int nsp = c.nsp;
    int64_t kin = kernel->shape[kernel->ndim - 2];
    int64_t kin_groups = 0; /* checked-arithmetic: feature_group_count is the caller's number */
    if (c.groups < 1 || !lx_mul_ok(kin, c.groups, &kin_groups) || c.cin != kin_groups || c.cout % c.groups != 0) {
        return lx_fail(LX_ERR_SHAPE, "conv_general: lhs feature dimension %lld must equal rhs input feature dimension %lld times feature_group_count %lld, and rhs output features %lld must be a multiple of it (lhs %s, rhs %s)",
                (long long)c.cin, (long long)kin, (long long)c.groups, (long long)c.cout, xs, ks);
    }
    if (!read_positive("window_strides", p->strides, nsp, c.stride, xs, ks) ||
        !read_positive("lhs_dilation", p->lhs_dilation, nsp, c.ldil, xs, ks) ||
        !read_positive("rhs_dilation", p->rhs_dilation, nsp, c.rdil, xs, ks))
        return lx_last_status();
    if (p->padding.mode < LX_PAD_VALID || p->padding.mode > LX_PAD_EXPLICIT) {
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "conv_general: unknown padding mode %d", (int)p->padding.mode);
    }
    oshape[0] = c.n, oshape[x->ndim - 1] = c.cout;
    c.ks = 1, c.outsp = 1, c.insp = 1;
    for (int i = nsp - 1; i >= 0; i--) {
        c.in[i] = x->shape[1 + i], c.k[i] = kernel->shape[i];
        c.pitch[i] = c.insp;
        c.insp *= c.in[i]; /* checked-arithmetic: a factor of x's size, which fits */
        int64_t eff = 0;
        if (c.k[i] > 0 && (!lx_mul_ok(c.k[i] - 1, c.rdil[i], &eff) || !lx_add_ok(eff, 1, &eff))) {
            return lx_fail(LX_ERR_SHAPE, "conv_general: window %lld dilated by rhs_dilation %lld at spatial axis %d overflows int64 (lhs %s, rhs %s)",
                    (long long)c.k[i], (long long)c.rdil[i], i, xs, ks);
        }
        if (conv_pads("conv_general", &p->padding, i, c.in[i], eff, c.stride[i], &c.lo[i], &c.hi[i]) != LX_OK ||
            conv_out_len("conv_general", i, c.in[i], c.ldil[i], c.lo[i], c.hi[i], eff, c.stride[i], &c.out[i]) != LX_OK)
            return lx_last_status();
        oshape[1 + i] = c.out[i];
        c.ks *= c.k[i]; /* checked-arithmetic: a factor of the kernel's size */
        if (!lx_mul_ok(c.outsp, c.out[i], &c.outsp)) {
            return lx_fail(LX_ERR_SHAPE, "conv_general: output spatial size overflows int64 at spatial axis %d (lhs %s, rhs %s)", i, xs, ks);
        }
    }
    *cp = c;
    return LX_OK;
}

/* conv_general's rule: normalises the params (every field set, padding EXPLICIT). */
LX_RULE(conv_general) {
    (void)id, (void)nin;
    lx_conv_params *p = params_;
    conv_dims c;
    LX_TRY(conv_plan(in[0], in[1], p, &c, av->shape));
    av->ndim = in[0]->ndim;
    av->dtype = LX_F32;
    lx_conv_params prm = {.padding = {.mode = LX_PAD_EXPLICIT}, .feature_group_count = c.groups};
    for (int i = 0; i < c.nsp; i++) {
        prm.strides[i] = c.stride[i], prm.lhs_dilation[i] = c.ldil[i], prm.rhs_dilation[i] = c.rdil[i];
        prm.padding.lo[i] = c.lo[i], prm.padding.hi[i] = c.hi[i];
    }
    *p = prm;
    return LX_OK;
}

LX_FWD(conv_general) {
    (void)id, (void)nin, (void)saved;
    const lx_array *x = in[0], *kernel = in[1];
    lx_array *out = *outp;
    conv_dims c;
    int64_t oshape[LX_MAX_DIMS];
    LX_TRY(conv_plan(x, kernel, params_, &c, oshape));
    const int nsp = c.nsp;
    if (out->size > 0) {
        bool pointwise = c.groups == 1 && c.cin > 0;
        for (int i = 0; i < nsp; i++)
            pointwise = pointwise && c.k[i] == 1 && c.stride[i] == 1 && c.ldil[i] == 1 && c.lo[i] == 0 && c.hi[i] == 0;
        bool direct = nsp == 2 && c.groups == 1 && c.ks * c.cin >= 1 && c.ks * c.cin <= CONV_DIRECT_MAX_TAPS &&
                      c.ldil[0] == 1 && c.ldil[1] == 1;
        /* The direct path buffers kh padded input rows of (ow - 1) * sw + (kw - 1) * dw + 1 pixels;
         * huge strides over huge pads make that row absurd (checked-arithmetic): im2col then. */
        int64_t wp, rowlen;
        direct = direct && lx_mul_ok(c.out[1] - 1, c.stride[1], &wp) && lx_add_ok(wp, (c.k[1] - 1) * c.rdil[1] + 1, &wp) &&
                 lx_mul_ok(wp, c.k[0] * c.cin, &rowlen) && rowlen <= ((int64_t)1 << 28);
        lx_status st;
        if (pointwise)
            st = lx_sgemm(false, false, c.n * c.insp, c.cout, c.cin, 1.0f, lx_f32(x), c.cin, lx_f32(kernel), c.cout,
                          0.0f, lx_f32(out), c.cout);
        else if (direct)
            st = conv2d_direct_forward(&(conv2d_direct){.n = c.n, .h = c.in[0], .w = c.in[1], .cin = c.cin, .cout = c.cout,
                                                        .kh = c.k[0], .kw = c.k[1], .oh = c.out[0], .ow = c.out[1],
                                                        .taps = c.ks * c.cin,
                                                        /* checked-arithmetic: a stride taken at most once is 1 to the
                                                         * kernel (its row pitch sw * cin must not overflow) */
                                                        .sh = c.out[0] > 1 ? c.stride[0] : 1, .sw = c.out[1] > 1 ? c.stride[1] : 1,
                                                        .dh = c.rdil[0], .dw = c.rdil[1], .lo_h = c.lo[0], .lo_w = c.lo[1]},
                                       lx_f32(x), lx_f32(kernel), lx_f32(out));
        else if (conv_igemm_available() && c.ks > 0 && c.cin > 0)
            st = conv_igemm_forward(&c, lx_f32(x), lx_f32(kernel), lx_f32(out));
        else
            st = conv_forward(&c, lx_f32(x), lx_f32(kernel), lx_f32(out));
        if (st != LX_OK) return st;
    }
    return LX_OK;
}

LX_ATTRS(conv_general) {
    (void)id, (void)nin;
    const lx_conv_params *p = params_;
    const int nsp = in[0]->ndim - 2;
    for (int i = 0; i < nsp; i++) scratch[2 * i] = p->padding.lo[i], scratch[2 * i + 1] = p->padding.hi[i];
    attrs[0] = LX_KW("window_strides", lx_ints_v(nsp, p->strides));
    attrs[1] = LX_KW("padding", lx_ints_v(2 * nsp, scratch));
    attrs[2] = LX_KW("lhs_dilation", lx_ints_v(nsp, p->lhs_dilation));
    attrs[3] = LX_KW("rhs_dilation", lx_ints_v(nsp, p->rhs_dilation));
    attrs[4] = LX_KW_INT("feature_group_count", p->feature_group_count);
    return 5;
}

lx_array *lx_conv_general(lx_array *x, lx_array *kernel, const lx_conv_params *params) {
    static const lx_conv_params defaults;
    return lx_bind(LX_PRIM_CONV_GENERAL, params ? params : &defaults, 2, (lx_array *const[]){x, kernel});
}
