/* The indirect convolution: forward, input gradient and kernel gradient of conv_general without a
 * patch matrix (XNNPACK's indirect GEMM; the register tiles are in conv_avx2.c).
 *
 * Forward: rows of C are output positions, C = y (rows x cout). For a tile of six rows the driver
 * writes a table of pointers, one per (tap, row), to the cin / groups contiguous channels that tap
 * reads in the NHWC input, or to a zero row where it reads padding or a hole of the input
 * dilation; the tile multiplies those rows in place by the kernel, packed once per call as
 * 16-column slivers: bp[sliver][tap][ci][16] = w[tap, ci, sliver * 16 + j] (zero past the group's
 * channels). So the input is read where it lies (once per 16 output channels, from L1/L2) and
 * nothing of the size of the patch matrix is ever written: im2col + GEMM wrote and re-read it.
 *
 * Input gradient: the same tiles over input positions with the output gradient as the image:
 * dx[i, ci] = sum over taps t and output channels co of dy[o(i, t), co] * w[t, ci, co], where
 * o(i, t) is the output position whose window reads i through tap t (o * stride + t * rhs_dil - lo
 * = i * lhs_dil), if any: a transposed convolution, the kernel packed transposed
 * (bp[sliver][tap][co][16] = w[tap, sliver * 16 + j, co]). Every input position is written (zero
 * where no window reads it), so dx needs no clearing and no scatter-add.
 *
 * Kernel gradient, transposed: dwT[co, (t, ci)] += sum over output positions r of dy[r, co] *
 * x[src(r, t), ci]; six output channels (broadcast from dy's row) by sixteen patch columns (two
 * runs of eight channels, each through the row's tap pointer); positions in chunks of 128, the
 * chunks in a fixed number of position groups (from dW's size, not the thread count), each group
 * summed in position order into its own partial dwT, the partials added in group order (and
 * transposed to HWIO) at the end: the same bits on every run and any thread count.
 *
 * Work is split over chunks of rows (and groups) on the thread team (team.h), each chunk on one
 * thread, taken from a shared counter: a worker whose vCPU is busy is never waited for. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "conv_internal.h"
#include "kernels.h"
#include "linnx/threads.h"
#include "team.h"

#define TILES_PER_CHUNK 16 /* 96 output rows per work item */
#define DW_ROWS 128        /* positions per kernel-gradient work item (AVX2 tiles) */
#define DW_ROWS_512 96     /* the AVX-512 tile's: its dY rows and patches stay in L1 (64: -2%, 128: -8%) */
#define DW_PART_BYTES (2 << 20) /* the kernel gradient's partial sums, one per position group */
#define DW_GROUPS_MAX 32        /* position groups at most */
#define DW_MIN_ITEMS 16         /* fewer position groups: output channels split into blocks too */
#define B_BLOCK_FLOATS 5120 /* 20 KiB of packed kernel per pass: a sliver's taps stay in L1 */
#define B_BLOCK_FLOATS_512 10240 /* the AVX-512 tile's (L1d 48 KiB where that set runs) */

bool conv_igemm_available(void) {
#if defined(LINNX_X86_KERNELS)
    lx_isa isa = lx_kernels_active()->isa;
    return isa == LX_ISA_AVX2 || isa == LX_ISA_AVX512;
#else
    return false;
#endif
}

/* Pointers from rows of one index space (output positions for the forward and the kernel
 * gradient, input positions for the input gradient) into an NHWC source: off[p * ks + t] = the
 * offset in floats, within one image, of what row position p reads through tap t, or -1 (a zero
 * row). Built once per call from per-axis tables (axis_tables), so a row's pointers cost a load and
 * an add each. */
typedef struct {
    int64_t ks, row_img;      /* taps; rows per image */
    const int64_t *off;       /* row_img x ks */
    int64_t src_img;          /* floats per source image */
    const float *src, *zero;  /* src already offset to the group's first channel */
} ind_geo;

/* The pointers of rows [r0, r0 + nrows), walking the image and row counters instead of dividing
 * per row (one division per call; the per-row one was ~2% of cnn_train): row r0 + i, tap t at
 * out[(i / mr) * ks * mr + i % mr + t * mr] when mr > 0 (the tiles' layout; mr = 1: row-major,
 * out[i * ks + t]), else out[t * nrows + i] (tap-major). */
static void rows_ptrs(const ind_geo *g, int64_t r0, int64_t nrows, int64_t mr, const float **out) {
    const int64_t ks = g->ks;
    int64_t n = r0 / g->row_img, p = r0 - n * g->row_img, lane = 0;
    const float *img = g->src + n * g->src_img;
    const int64_t *o = g->off + p * ks;
    const int64_t step = mr > 0 ? mr : nrows;
    const float **d = out;
    for (int64_t i = 0; i < nrows; i++) {
        for (int64_t t = 0; t < ks; t++) d[t * step] = o[t] < 0 ? g->zero : img + o[t];
        o += ks;
        if (++p == g->row_img) p = 0, img += g->src_img, o = g->off;
        if (mr <= 0) d++;
        else if (++lane < mr) d++;
        else lane = 0, d += 1 + (ks - 1) * mr;
    }
}

/* Per-axis tables. forward: source = input, rows = output positions; else source = output
 * (the gradient), rows = input positions. */
static int64_t *axis_tables(const conv_dims *c, bool forward, int64_t **tab) {
    int64_t total = 0, n;
    size_t bytes;
    for (int i = 0; i < c->nsp; i++)
        if (!lx_mul_ok(forward ? c->out[i] : c->in[i], c->k[i], &n) || !lx_add_ok(total, n, &total)) return NULL;
    int64_t *mem = lx_bytes_ok(total + 1, sizeof(int64_t), &bytes) ? malloc(bytes) : NULL;
    if (!mem) return NULL;
    int64_t *t = mem;
    for (int i = 0; i < c->nsp; i++) {
        tab[i] = t;
        int64_t rows = forward ? c->out[i] : c->in[i];
        for (int64_t o = 0; o < rows; o++)
            for (int64_t k = 0; k < c->k[i]; k++) {
                if (forward) { /* the input index read by output o through tap k */
                    int64_t p = o * c->stride[i] + k * c->rdil[i] - c->lo[i];
                    *t++ = p < 0 || p % c->ldil[i] != 0 || p / c->ldil[i] >= c->in[i] ? -1 : p / c->ldil[i];
                } else { /* the output whose window reads input o through tap k */
                    int64_t q = o * c->ldil[i] + c->lo[i] - k * c->rdil[i];
                    *t++ = q < 0 || q % c->stride[i] != 0 || q / c->stride[i] >= c->out[i] ? -1 : q / c->stride[i];
                }
            }
    }
    return mem;
}

/* The offsets table of ind_geo (NULL when out of memory); forward as in axis_tables. */
static int64_t *make_offsets(const conv_dims *c, bool forward, ind_geo *g) {
    int64_t *tab[LX_MAX_DIMS], sz[LX_MAX_DIMS], spitch[LX_MAX_DIMS], pitch = 1;
    int64_t *tabmem = axis_tables(c, forward, tab);
    if (!tabmem) return NULL;
    for (int i = c->nsp - 1; i >= 0; i--) {
        sz[i] = forward ? c->out[i] : c->in[i];
        spitch[i] = forward ? c->pitch[i] : pitch;
        pitch *= c->out[i];
    }
    const int64_t rows = forward ? c->outsp : c->insp, ks = c->ks, cstride = forward ? c->cin : c->cout;
    int64_t entries = 0;
    size_t bytes = 0;
    int64_t *off = lx_mul_ok(rows, ks, &entries) && lx_bytes_ok(entries + 1, sizeof(int64_t), &bytes) ? malloc(bytes) : NULL;
    if (!off) {
        free(tabmem);
        return NULL;
    }
    for (int64_t p = 0; p < rows; p++) {
        const int64_t *ax[LX_MAX_DIMS];
        int64_t rest = p, t[LX_MAX_DIMS] = {0};
        for (int i = c->nsp - 1; i >= 0; i--) {
            ax[i] = tab[i] + (rest % sz[i]) * c->k[i];
            rest /= sz[i];
        }
        for (int64_t kk = 0; kk < ks; kk++) {
            int64_t sp = 0;
            bool inside = true;
            for (int i = 0; i < c->nsp; i++) {
                int64_t q = ax[i][t[i]];
                inside = inside && q >= 0;
                sp += q * spitch[i];
            }
            off[p * ks + kk] = inside ? sp * cstride : -1;
            for (int i = c->nsp - 1; i >= 0; i--) { /* next tap, HWI order */
                if (++t[i] < c->k[i]) break;
                t[i] = 0;
            }
        }
    }
    free(tabmem);
    g->ks = ks, g->row_img = rows, g->off = off;
    g->src_img = (forward ? c->insp : c->outsp) * cstride;
    return off;
}

/* One indirect product: C (rows x groups * ncols at ldc) from a source of kc channels per group. */
typedef struct {
    ind_geo geo;
    const float *src;  /* group 0's channels */
    int64_t src_goff;  /* channels between groups in the source */
    int64_t rows, groups, kc, ncols, nsl;
    const float *bp;   /* [group][sliver][tap][kc][nr] */
    float *C;
    int64_t ldc, c_goff;
    int mr, nr;        /* the register tile of the kernel set in force */
    void (*ukr)(int mr, int nr, int64_t ntaps, int64_t kc, const float *const *ind, const float *bp, float *C,
                int64_t ldc, bool acc);
    int64_t b_block;   /* packed-kernel floats per pass over the taps */
} igemm_job;

#if defined(LINNX_X86_KERNELS)
/* One call's shared state for the workers (team.h): items taken from a counter, so a worker the
 * OS does not schedule is never waited for (OpenMP's team waited for both vCPUs at every call). */
typedef struct {
    const igemm_job *j;
    int64_t items, tile_rows, tb, per_tap;
    atomic_llong next;
    atomic_int failed;
} igemm_ctx;

static void igemm_worker(void *arg) {
    igemm_ctx *x = arg;
    const igemm_job *j = x->j;
    const int MR = j->mr, NR = j->nr;
    const int64_t ks = j->geo.ks, tile_rows = x->tile_rows, tb = x->tb, per_tap = x->per_tap;
    const float **ind = malloc(sizeof(float *) * (size_t)(TILES_PER_CHUNK * MR * ks));
    if (!ind) {
        atomic_store(&x->failed, 1);
        return;
    }
    for (int64_t it; (it = atomic_fetch_add(&x->next, 1)) < x->items;) {
        int64_t g = it % j->groups, r0 = (it / j->groups) * tile_rows;
        int64_t nr_rows = j->rows - r0 < tile_rows ? j->rows - r0 : tile_rows;
        int64_t ntiles = (nr_rows + MR - 1) / MR;
        ind_geo geo = j->geo;
        geo.src = j->src + g * j->src_goff;
        rows_ptrs(&geo, r0, nr_rows, MR, ind);
        for (int64_t r = nr_rows; r < ntiles * MR; r++) { /* the last tile's missing rows: zeros */
            const float **dst = ind + (r / MR) * ks * MR + r % MR;
            for (int64_t t = 0; t < ks; t++) dst[t * MR] = geo.zero;
        }
        for (int64_t s = 0; s < j->nsl; s++) {
            int nc = (int)(j->ncols - s * NR < NR ? j->ncols - s * NR : NR);
            const float *bs = j->bp + (g * j->nsl + s) * ks * per_tap;
            for (int64_t t0 = 0; t0 < ks; t0 += tb) {
                int64_t nb = ks - t0 < tb ? ks - t0 : tb;
                for (int64_t tl = 0; tl < ntiles; tl++) {
                    int64_t rr = r0 + tl * MR;
                    int mr = (int)(j->rows - rr < MR ? j->rows - rr : MR);
                    j->ukr(mr, nc, nb, j->kc, (const float *const *)ind + (tl * ks + t0) * MR, bs + t0 * per_tap,
                           j->C + rr * j->ldc + g * j->c_goff + s * NR, j->ldc, t0 > 0);
                }
            }
        }
    }
    free(ind);
}

static lx_status igemm_run(const igemm_job *j) {
    const int64_t ks = j->geo.ks, tile_rows = j->mr * TILES_PER_CHUNK;
    const int64_t nchunks = (j->rows + tile_rows - 1) / tile_rows, items = nchunks * j->groups;
    /* taps per pass: a sliver's share of the packed kernel stays in L1 */
    int64_t per_tap = j->kc * j->nr, nblk = (ks * per_tap + j->b_block - 1) / j->b_block;
    if (nblk < 1) nblk = 1;
    if (nblk > ks) nblk = ks;
    double work = (double)j->rows * (double)ks * (double)j->kc * (double)(j->ncols * j->groups);
    int nt = work > (1 << 18) ? lx_num_threads() : 1;
    if (nt > items) nt = (int)items;
    igemm_ctx x = {.j = j, .items = items, .tile_rows = tile_rows, .tb = (ks + nblk - 1) / nblk, .per_tap = per_tap};
    atomic_init(&x.next, 0);
    atomic_init(&x.failed, 0);
    lx_team_run(nt, igemm_worker, &x);
    return atomic_load(&x.failed) ? lx_fail(LX_ERR_NO_MEMORY, "conv_general: out of memory for the indirection table")
                                  : LX_OK;
}
#endif

/* The row of zeros that padding taps read: n floats and a vector's slack, on cache lines of its
 * own. (A calloc'd row shared a line with a worker's indirection table: with 32 channels, two
 * threads ran the forward at a third of one thread's speed, every padding read a coherence miss.) */
static float *zero_row(int64_t n) {
    size_t bytes = ((size_t)(n + 16) * sizeof(float) + 63) / 64 * 64;
    float *z = aligned_alloc(64, bytes);
    if (z) memset(z, 0, bytes);
    return z;
}

/* forward (transposed false): bp[g][s][t][ci][NR] = w[t, ci, g * cog + s * NR + j];
 * input gradient (true): bp[g][s][t][co][NR] = w[t, s * NR + j, g * cog + co]. */
static float *pack_kernel(const conv_dims *c, const float *w, bool transposed, int64_t NR, int64_t *nsl_out) {
    const int64_t cig = c->cin / c->groups, cog = c->cout / c->groups, ks = c->ks;
    const int64_t kc = transposed ? cog : cig, ncols = transposed ? cig : cog;
    const int64_t nsl = (ncols + NR - 1) / NR;
    size_t floats = (size_t)(c->groups * nsl * ks * kc * NR);
    float *bp = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64 + 64);
    if (!bp) return NULL;
    for (int64_t g = 0; g < c->groups; g++)
        for (int64_t s = 0; s < nsl; s++)
            for (int64_t t = 0; t < ks; t++)
                for (int64_t k = 0; k < kc; k++) {
                    float *d = bp + (((g * nsl + s) * ks + t) * kc + k) * NR;
                    for (int64_t jj = 0; jj < NR; jj++) {
                        int64_t col = s * NR + jj;
                        d[jj] = col >= ncols ? 0.0f
                                : transposed ? w[(t * cig + col) * c->cout + g * cog + k]
                                             : w[(t * cig + k) * c->cout + g * cog + col];
                    }
                }
    *nsl_out = nsl;
    return bp;
}

static lx_status igemm_product(const conv_dims *c, bool forward, const float *src, const float *w, float *C) {
#if defined(LINNX_X86_KERNELS)
    const int64_t cig = c->cin / c->groups, cog = c->cout / c->groups;
    int64_t nsl = 0;
    ind_geo geo;
    /* the kernel set's tile: AVX-512's 8 x 32 (zmm) or AVX2's 6 x 16 (ymm) */
    const bool wide = lx_kernels_active()->isa == LX_ISA_AVX512;
    const int MR = wide ? CONV512_MR : CONV_MR, NR = wide ? CONV512_NR : CONV_NR;
    int64_t *tabmem = make_offsets(c, forward, &geo);
    float *bp = tabmem ? pack_kernel(c, w, !forward, NR, &nsl) : NULL;
    const int64_t kc = forward ? cig : cog;
    float *zero = bp ? zero_row(kc) : NULL;
    if (!zero) {
        free(tabmem), free(bp);
        return lx_fail(LX_ERR_NO_MEMORY, "conv_general: out of memory");
    }
    igemm_job j = {.src = src, .src_goff = kc, .rows = c->n * (forward ? c->outsp : c->insp), .groups = c->groups,
                   .kc = kc, .ncols = forward ? cog : cig, .nsl = nsl, .bp = bp, .C = C,
                   .ldc = forward ? c->cout : c->cin, .c_goff = forward ? cog : cig, .mr = MR, .nr = NR,
                   .ukr = wide ? conv_igemm_ukr_avx512 : conv_igemm_ukr_avx2,
                   .b_block = wide ? B_BLOCK_FLOATS_512 : B_BLOCK_FLOATS};
    j.geo = geo;
    j.geo.zero = zero;
    lx_status st = igemm_run(&j);
    free(tabmem), free(bp), free(zero);
    return st;
#else
    (void)c, (void)forward, (void)src, (void)w, (void)C;
    return lx_fail(LX_ERR_UNSUPPORTED, "conv_general: the indirect convolution needs the AVX2 kernels");
#endif
}

lx_status conv_igemm_forward(const conv_dims *c, const float *x, const float *w, float *y) {
    return igemm_product(c, true, x, w, y);
}

lx_status conv_igemm_dx(const conv_dims *c, const float *dy, const float *w, float *dx) {
    return igemm_product(c, false, dy, w, dx);
}

#if defined(LINNX_X86_KERNELS)
/* One kernel-gradient call's shared state for the workers (team.h). The positions are cut into
 * npg fixed groups of whole chunks and each group's output channels into blocks; a work item is
 * one (position group, channel group, channel block), taken from the counter, and sums its
 * group's chunks in position order into its block of the group's own partial dW (part + pg *
 * wfloats); the caller adds the partials in group order. Every element's sum is therefore the same
 * sequence of operations whichever worker takes which item and however many threads run: npg
 * depends on the sizes only. */
typedef struct {
    const conv_dims *c;
    const float *x, *dy;
    ind_geo geo0;
    int64_t cig, cog, ks, km, rows, nchunks, chunk_rows, npg, cob, nblk, items;
    bool tiled, hwio;
    size_t wfloats;
    float *part;
    atomic_llong next;
} dw_ctx;

static void dw_worker(void *arg) {
    dw_ctx *d = arg;
    const conv_dims *c = d->c;
    const float *x = d->x, *dy = d->dy;
    const int64_t cig = d->cig, cog = d->cog, ks = d->ks, km = d->km, rows = d->rows, chunk_rows = d->chunk_rows;
    const bool tiled = d->tiled, hwio = d->hwio;
    const float **ind = malloc(sizeof(float *) * (size_t)(DW_ROWS * ks));
    float apk[DW_ROWS * CONV_MR];
    if (!ind) return; /* the others take its items (conv_igemm_dw checks that every item ran) */
    for (int64_t it; (it = atomic_fetch_add(&d->next, 1)) < d->items;) {
        const int64_t pg = it / (c->groups * d->nblk), rest = it % (c->groups * d->nblk);
        const int64_t g = rest / d->nblk, b = rest % d->nblk;
        const int64_t co0 = b * d->cob, co1 = co0 + d->cob < cog ? co0 + d->cob : cog;
        const int64_t ch0 = pg * d->nchunks / d->npg, ch1 = (pg + 1) * d->nchunks / d->npg;
        float *acc = d->part + (size_t)pg * d->wfloats; /* dwT[g * cog + co][t * cig + ci] (hwio: dw's order) */
        for (int64_t ch = ch0; ch < ch1; ch++) {
            const int64_t r0 = ch * chunk_rows, nr_rows = rows - r0 < chunk_rows ? rows - r0 : chunk_rows;
            ind_geo geo = d->geo0;
            geo.src = x + g * cig;
            const float *a = dy + r0 * c->cout + g * cog;
            if (hwio) { /* acc[t * cig + ci][g * cog + co]; the pointers tap-major, ind[t * nr_rows + r] */
                rows_ptrs(&geo, r0, nr_rows, 0, ind);
                for (int64_t t = 0; t < ks; t++)
                    for (int64_t ci = 0; ci < cig; ci += 8)
                        for (int64_t co = co0; co < co1; co += CONV512_NR) {
                            int nc = (int)(co1 - co < CONV512_NR ? co1 - co : CONV512_NR);
                            conv_dw_ukr_avx512(nr_rows, (const float *const *)ind + t * nr_rows, 1, 0, ci, a + co,
                                               c->cout, nc, acc + (t * cig + ci) * c->cout + g * cog + co, c->cout);
                        }
                continue;
            }
            rows_ptrs(&geo, r0, nr_rows, 1, ind); /* ind[r * ks + t] */
            if (!tiled) { /* acc[g][t * cig + ci][co] (one block: all of the group's channels) */
                conv_dw_rows_avx2(nr_rows, (const float *const *)ind, ks, cig, a, c->cout, cog, acc + g * km * cog);
                continue;
            }
            for (int64_t co = co0; co < co1; co += CONV_MR) {
                int mr = (int)(cog - co < CONV_MR ? cog - co : CONV_MR);
                /* a ragged last tile of channels: the full tile ending at cog into `edge`, of which
                 * the rows from co are added (the others were summed by the previous tile) */
                bool shifted = mr < CONV_MR && cog >= CONV_MR;
                int64_t cb = shifted ? cog - CONV_MR : co, am = shifted ? CONV_MR : mr;
                /* this tile's channels of dy, packed: apk[r * 6 + i] (a strided read of dy's rows
                 * for every patch column ran ~25% slower: they filled L1) */
                if (am == CONV_MR) /* a fixed 24 bytes: GCC inlines the copy (a per-float loop with the
                                    * zero fill below was ~8% of the kernel gradient on Zen 1) */
                    for (int64_t r = 0; r < nr_rows; r++) memcpy(apk + r * CONV_MR, a + r * c->cout + cb, CONV_MR * sizeof(float));
                else
                    for (int64_t r = 0; r < nr_rows; r++)
                        for (int i = 0; i < CONV_MR; i++) apk[r * CONV_MR + i] = i < am ? a[r * c->cout + cb + i] : 0.0f;
                for (int64_t m0 = 0; m0 < km; m0 += CONV_NR) {
                    int nr = (int)(km - m0 < CONV_NR ? km - m0 : CONV_NR);
                    int64_t m1 = m0 + 8 < km ? m0 + 8 : m0;
                    if (!shifted) {
                        conv_dw_ukr_avx2(mr, nr, nr_rows, apk, CONV_MR, (const float *const *)ind, ks, m0 / cig,
                                         m0 % cig, m1 / cig, m1 % cig, acc + (g * cog + co) * km + m0, km);
                        continue;
                    }
                    float edge[CONV_MR * CONV_NR] = {0};
                    conv_dw_ukr_avx2(CONV_MR, nr, nr_rows, apk, CONV_MR, (const float *const *)ind, ks, m0 / cig,
                                     m0 % cig, m1 / cig, m1 % cig, edge, CONV_NR);
                    for (int64_t i = co - cb; i < CONV_MR; i++)
                        for (int jj = 0; jj < nr; jj++) acc[(g * cog + cb + i) * km + m0 + jj] += edge[i * CONV_NR + jj];
                }
            }
        }
    }
    free(ind);
}
#endif

lx_status conv_igemm_dw(const conv_dims *c, const float *x, const float *dy, float *dw) {
#if defined(LINNX_X86_KERNELS)
    const int64_t cig = c->cin / c->groups, cog = c->cout / c->groups, ks = c->ks, km = ks * cig;
    /* patch columns in tiles of 16 when the group's channels come in runs of 8; else whole rows.
     * AVX-512 (hwio): tiles of 8 patch columns x 32 output channels summed straight in HWIO order */
    const bool tiled = cig % 8 == 0, hwio = tiled && lx_kernels_active()->isa == LX_ISA_AVX512;
    const int64_t chunk_rows = hwio ? DW_ROWS_512 : DW_ROWS;
    const int64_t rows = c->n * c->outsp, nchunks = (rows + chunk_rows - 1) / chunk_rows;
    const size_t wfloats = (size_t)(c->cout * km);
    /* Position groups: as many partials as DW_PART_BYTES holds, at most DW_GROUPS_MAX and one
     * per chunk, at least one. Where that leaves fewer than DW_MIN_ITEMS items (a large dW), the
     * group's output channels are split too, in blocks of whole tiles (6 channels AVX2, 32
     * AVX-512; the rows kernel keeps all of them): each block then re-reads its positions'
     * patches, which cost ~10% with six 12-channel blocks on cnn_train's conv2 (one thread), so
     * blocks only where the positions alone give too few items. */
    int64_t npg = (int64_t)(DW_PART_BYTES / (wfloats * sizeof(float) + 1));
    npg = npg < 1 ? 1 : npg > DW_GROUPS_MAX ? DW_GROUPS_MAX : npg;
    if (npg > nchunks) npg = nchunks > 0 ? nchunks : 1;
    const int64_t tile = hwio ? CONV512_NR : CONV_MR, ntile = cog > 0 ? (cog + tile - 1) / tile : 1;
    int64_t want = (DW_MIN_ITEMS + npg * c->groups - 1) / (npg * c->groups);
    if (!tiled || want < 1) want = 1;
    if (want > ntile) want = ntile;
    const int64_t cob = (ntile + want - 1) / want * tile, nblk = cog > 0 ? (cog + cob - 1) / cob : 1;
    const int64_t items = npg * c->groups * nblk;
    ind_geo geo0;
    int64_t *tabmem = make_offsets(c, true, &geo0);
    float *zero = tabmem ? zero_row(cig) : NULL;
    size_t pbytes = 0;
    float *part = zero && lx_bytes_ok(npg * (int64_t)wfloats + 1, sizeof(float), &pbytes) ? calloc(pbytes / sizeof(float), sizeof(float)) : NULL;
    if (!part) {
        free(tabmem), free(zero);
        return lx_fail(LX_ERR_NO_MEMORY, "conv_general backward: out of memory");
    }
    double work = (double)rows * (double)km * (double)c->cout;
    int nt = work > (1 << 18) ? lx_num_threads() : 1;
    if (nt > items) nt = (int)(items > 0 ? items : 1);
    geo0.zero = zero;
    dw_ctx d = {.c = c, .x = x, .dy = dy, .geo0 = geo0, .cig = cig, .cog = cog, .ks = ks, .km = km, .rows = rows,
                .nchunks = nchunks, .chunk_rows = chunk_rows, .npg = npg, .cob = cob, .nblk = nblk, .items = items,
                .tiled = tiled, .hwio = hwio, .wfloats = wfloats, .part = part};
    atomic_init(&d.next, 0);
    lx_team_run(nt, dw_worker, &d);
    /* a worker that claims an item runs until none is left: unless every worker failed to get its
     * table, every item ran */
    const bool failed = atomic_load(&d.next) < items;
    if (!failed) { /* the partials added in group order into the first, then moved to HWIO */
        for (int64_t i = 1; i < npg; i++) {
            const float *src = part + (size_t)i * wfloats;
            for (size_t k = 0; k < wfloats; k++) part[k] += src[k];
        }
        for (int64_t g = 0; g < c->groups; g++) /* dw[t, ci, g * cog + co] = dwT[g * cog + co][t * cig + ci] */
            for (int64_t m = 0; m < km; m++)
                for (int64_t co = 0; co < cog; co++)
                    dw[m * c->cout + g * cog + co] =
                        part[hwio ? m * c->cout + g * cog + co : tiled ? (g * cog + co) * km + m : (g * km + m) * cog + co];
    }
    free(part), free(tabmem), free(zero);
    return failed ? lx_fail(LX_ERR_NO_MEMORY, "conv_general backward: out of memory") : LX_OK;
#else
    (void)c, (void)x, (void)dy, (void)dw;
    return lx_fail(LX_ERR_UNSUPPORTED, "conv_general: the indirect convolution needs the AVX2 kernels");
#endif
}
