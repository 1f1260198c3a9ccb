/* numpy matmul and lax.dot_general, both lowered onto one batched, strided GEMM.
 *
 * A contraction reads each operand in place when the operand's free axes and contracted axes
 * each flatten into one strided dimension and one of the two has unit stride: then the operand is
 * a (possibly transposed) row-major matrix with some leading dimension, batch axes are just
 * offsets, and GEMM runs on the array's own buffer. Only an operand for which no pairing order of
 * the contracted axes allows that is transposed into a temporary. */
#include <stdlib.h>
#include <string.h>

#include "linalg_internal.h"
#include "linnx/linalg.h"
#include "linnx/threads.h"
#include "op_internal.h"

/* ---- the batched GEMM every contraction lowers to ---- */

typedef struct {
    int nb;                                   /* batch axes */
    int64_t bshape[LX_MAX_DIMS];
    int64_t sa[LX_MAX_DIMS], sb[LX_MAX_DIMS]; /* element strides per batch axis (0: broadcast) */
    int64_t M, N, K, lda, ldb;
    bool ta, tb;
} bgemm_plan;

/* Fold batch axes into M where A's rows run on contiguously and B is shared (x @ W with x of
 * shape (..., K)): one large GEMM instead of many small ones. C is contiguous, so its rows always
 * run on. Size-1 batch axes are dropped. */
static void bgemm_simplify(bgemm_plan *p) {
    int w = 0;
    for (int i = 0; i < p->nb; i++)
        if (p->bshape[i] != 1) {
            p->bshape[w] = p->bshape[i], p->sa[w] = p->sa[i], p->sb[w] = p->sb[i];
            w++;
        }
    p->nb = w;
    while (p->nb > 0 && !p->ta) {
        int i = p->nb - 1;
        if (p->sb[i] != 0) break;
        /* One row: its stride is free, as long as it is a valid leading dimension (>= max(K, 1));
         * an empty contraction (K == 0) has batch stride 0, which no GEMM accepts as lda. */
        if (p->M == 1 && p->sa[i] >= (p->K > 1 ? p->K : 1)) p->lda = p->sa[i];
        if (p->sa[i] != p->M * p->lda) break;
        p->M *= p->bshape[i];
        p->nb--;
    }
}

static void batch_offsets(const bgemm_plan *p, int64_t b, int64_t *oa, int64_t *ob) {
    int64_t rest = b;
    *oa = *ob = 0;
    for (int i = p->nb - 1; i >= 0; i--) {
        int64_t ix = rest % p->bshape[i];
        rest /= p->bshape[i];
        *oa += ix * p->sa[i];
        *ob += ix * p->sb[i];
    }
}

typedef struct bgemm_job {
    const bgemm_plan *p;
    const float *A, *B;
    float *C;
    int64_t cstride;
} bgemm_job;

static int bgemm_range(void *ctx, int64_t lo, int64_t hi) {
    const bgemm_job *j = ctx;
    const bgemm_plan *p = j->p;
    for (int64_t b = lo; b < hi; b++) {
        int64_t oa, ob;
        batch_offsets(p, b, &oa, &ob);
        lx_sgemm_serial(p->ta, p->tb, p->M, p->N, p->K, 1.0f, j->A + oa, p->lda, j->B + ob, p->ldb, 0.0f,
                        j->C + b * j->cstride, p->N);
    }
    return 0;
}

static lx_status bgemm_forward(const bgemm_plan *p, const float *A, const float *B, float *C) {
    int64_t nbatch = 1;
    for (int i = 0; i < p->nb; i++) nbatch *= p->bshape[i];
    int64_t cstride = p->M * p->N;
    if (nbatch == 1) return lx_sgemm(p->ta, p->tb, p->M, p->N, p->K, 1.0f, A, p->lda, B, p->ldb, 0.0f, C, p->N);
    if (!lx_sgemm_is_small(p->M, p->N, p->K)) { /* large: one after another, each threaded by OpenBLAS */
        for (int64_t b = 0; b < nbatch; b++) {
            int64_t oa, ob;
            batch_offsets(p, b, &oa, &ob);
            LX_TRY(lx_sgemm(p->ta, p->tb, p->M, p->N, p->K, 1.0f, A + oa, p->lda, B + ob, p->ldb, 0.0f,
                            C + b * cstride, p->N));
        }
        return LX_OK;
    }
    /* Many small GEMMs: spread over the thread pool, each on our kernel. */
    double work = (double)nbatch * (double)p->M * (double)p->N * (double)p->K;
    int nt = work > (1 << 18) ? lx_num_threads() : 1;
    bgemm_job j = {p, A, B, C, cstride};
    lx_parallel_for(nt, nbatch, bgemm_range, &j);
    return LX_OK;
}

static void row_major_strides(const lx_array *a, int64_t *st) {
    int64_t s = 1;
    for (int i = a->ndim - 1; i >= 0; i--) {
        st[i] = s;
        s *= a->shape[i];
    }
}

/* ---- matmul ---- */

/* The GEMM plan of a @ b (numpy matmul); false with the failure recorded when they do not fit. */
static bool matmul_plan(const lx_array *a, const lx_array *b, bgemm_plan *p, int *ond, int64_t *oshape) {
    /* shapes are formatted only on failure: a small matmul must not pay for snprintf */
    char sa_[96], sb_[96];
#define ss lx_shape_str(a->ndim, a->shape, sa_, sizeof sa_)
#define ts lx_shape_str(b->ndim, b->shape, sb_, sizeof sb_)
    if (a->dtype != LX_F32 || b->dtype != LX_F32) {
        lx_fail(LX_ERR_DTYPE, "matmul: expected float32 operands, got %s%s and %s%s",
                lx_dtype_name(a->dtype), ss, lx_dtype_name(b->dtype), ts);
        return false;
    }
    if (a->ndim == 0 || b->ndim == 0) {
        lx_fail(LX_ERR_SHAPE, "matmul: operand %d of shape () has no axis to contract (needs at least 1)",
                a->ndim == 0 ? 0 : 1);
        return false;
    }
    int an = a->ndim, bn = b->ndim;
    int64_t K = a->shape[an - 1], M = an >= 2 ? a->shape[an - 2] : 1;
    int64_t Kb = bn >= 2 ? b->shape[bn - 2] : b->shape[0], N = bn >= 2 ? b->shape[bn - 1] : 1;
    if (K != Kb) {
        lx_fail(LX_ERR_SHAPE, "matmul: shapes %s and %s not aligned: %lld (dim %d) != %lld (dim %d)",
                ss, ts, (long long)K, an - 1, (long long)Kb, bn >= 2 ? bn - 2 : 0);
        return false;
    }
    int abat = an > 2 ? an - 2 : 0, bbat = bn > 2 ? bn - 2 : 0;
    int nb = abat > bbat ? abat : bbat;
    int64_t ast[LX_MAX_DIMS], bst[LX_MAX_DIMS];
    row_major_strides(a, ast);
    row_major_strides(b, bst);
    *p = (bgemm_plan){.nb = nb, .M = M, .N = N, .K = K, .lda = K > 1 ? K : 1, .ldb = N > 1 ? N : 1};
    for (int i = 0; i < nb; i++) { /* right-aligned numpy broadcasting */
        int ia = i - (nb - abat), ib = i - (nb - bbat);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            lx_fail(LX_ERR_SHAPE, "matmul: batch dimensions of shapes %s and %s do not broadcast: %lld vs %lld",
                    ss, ts, (long long)da, (long long)db);
            return false;
        }
        p->bshape[i] = oshape[i] = da > db ? da : db;
        if (da == 0 || db == 0) p->bshape[i] = oshape[i] = 0;
        p->sa[i] = da == 1 ? 0 : ast[ia];
        p->sb[i] = db == 1 ? 0 : bst[ib];
    }
    *ond = nb;
    if (an >= 2) oshape[(*ond)++] = M;
    if (bn >= 2) oshape[(*ond)++] = N;
    return true;
#undef ss
#undef ts
}

LX_RULE(matmul) {
    (void)id, (void)params_, (void)nin;
    bgemm_plan p;
    if (!matmul_plan(in[0], in[1], &p, &av->ndim, av->shape)) return lx_last_status();
    av->dtype = LX_F32;
    return LX_OK;
}

LX_FWD(matmul) {
    (void)id, (void)params_, (void)nin, (void)saved;
    const lx_array *a = in[0], *b = in[1];
    lx_array *out = *outp;
    bgemm_plan p;
    int ond;
    int64_t oshape[LX_MAX_DIMS];
    if (out->size == 0) return LX_OK;
    if (!matmul_plan(a, b, &p, &ond, oshape)) return lx_last_status();
    bgemm_simplify(&p);
    lx_status st = bgemm_forward(&p, lx_f32(a), lx_f32(b), lx_f32(out));
    if (st != LX_OK) { /* name the op and the operands, not just the GEMM underneath */
        char sa_[96], sb_[96];
        return lx_fail_context(st, "matmul of shapes %s and %s: ", lx_shape_str(a->ndim, a->shape, sa_, sizeof sa_),
                               lx_shape_str(b->ndim, b->shape, sb_, sizeof sb_));
    }
    return LX_OK;
}

lx_array *lx_matmul(lx_array *a, lx_array *b) { return lx_bind(LX_PRIM_MATMUL, NULL, 2, (lx_array *const[]){a, b}); }

/* ---- dot_general ---- */

/* How one operand's groups of axes map onto a GEMM operand without copying. `rows` and `cols`
 * are the groups that become the matrix's rows and columns (for the lhs: free and contracted;
 * for the rhs: contracted and free). */
typedef struct {
    bool ok, trans;
    int64_t ld;
} operand_view;

/* Stride of a group of axes flattened in the given order, or -1 when they do not flatten.
 * A group of total size 1 reports stride 0 ("any"). */
static int64_t group_stride(const lx_array *x, const int64_t *st, const int *axes, int n, int64_t *size) {
    int64_t sz = 1, inner = -1, expect = -1;
    for (int i = n - 1; i >= 0; i--) {
        int64_t d = x->shape[axes[i]];
        sz *= d;
        if (d == 1) continue;
        if (expect >= 0 && st[axes[i]] != expect) inner = -2;
        if (inner == -1) inner = st[axes[i]];
        expect = st[axes[i]] * d;
    }
    *size = sz;
    if (inner == -2) return -1;
    return inner == -1 ? 0 : inner;
}

static operand_view view_of(const lx_array *x, const int *rows, int nrows, const int *cols, int ncols) {
    int64_t st[LX_MAX_DIMS], R, C;
    row_major_strides(x, st);
    int64_t rs = group_stride(x, st, rows, nrows, &R), cs = group_stride(x, st, cols, ncols, &C);
    operand_view v = {false, false, 0};
    if (rs < 0 || cs < 0) return v;
    if (R == 0 || C == 0) return (operand_view){true, false, C > 1 ? C : 1};
    if (cs <= 1 && (cs == 1 || C == 1)) { /* columns unit-stride: plain row-major */
        int64_t ld = R == 1 ? (C > 1 ? C : 1) : rs;
        if (ld >= (C > 1 ? C : 1)) return (operand_view){true, false, ld};
    }
    if (rs <= 1 && (rs == 1 || R == 1)) { /* rows unit-stride: stored transposed */
        int64_t ld = C == 1 ? (R > 1 ? R : 1) : cs;
        if (ld >= (R > 1 ? R : 1)) return (operand_view){true, true, ld};
    }
    return v;
}

/* dst = x with its axes in the order perm (dst axis i is x's axis perm[i]). */
static void permute_copy(const lx_array *x, const int *perm, float *dst) {
    int n = x->ndim;
    int64_t st[LX_MAX_DIMS], shp[LX_MAX_DIMS], pst[LX_MAX_DIMS], idx[LX_MAX_DIMS] = {0};
    row_major_strides(x, st);
    for (int i = 0; i < n; i++) shp[i] = x->shape[perm[i]], pst[i] = st[perm[i]];
    if (x->size == 0) return;
    if (n == 0) {
        dst[0] = lx_f32(x)[0];
        return;
    }
    const float *src = lx_f32(x);
    int64_t inner = shp[n - 1], istride = pst[n - 1], off = 0;
    for (int64_t o = 0; o < x->size; o += inner) {
        for (int64_t j = 0; j < inner; j++) dst[o + j] = src[off + j * istride];
        for (int i = n - 2; i >= 0; i--) { /* odometer over the outer axes */
            off += pst[i];
            if (++idx[i] < shp[i]) break;
            off -= pst[i] * shp[i];
            idx[i] = 0;
        }
    }
}

static bool normalise_axes(const char *what, const lx_array *x, int side, int n, const int64_t *in, int *out,
                           bool *used) {
    char xb[96];
#define xs lx_shape_str(x->ndim, x->shape, xb, sizeof xb)
    for (int i = 0; i < n; i++) {
        int64_t ax = in[i] < 0 ? in[i] + x->ndim : in[i];
        if (ax < 0 || ax >= x->ndim) {
            lx_fail(LX_ERR_SHAPE, "dot_general: %s %s axis %lld is out of range for shape %s",
                    side ? "rhs" : "lhs", what, (long long)in[i], xs);
            return false;
        }
        if (used[ax]) {
            lx_fail(LX_ERR_SHAPE, "dot_general: %s axis %d of shape %s appears more than once in the dimension numbers",
                    side ? "rhs" : "lhs", (int)ax, xs);
            return false;
        }
        used[ax] = true;
        out[i] = (int)ax;
    }
    return true;
#undef xs
}

static void sort_pairs_by(int n, int *key, int *other) { /* insertion sort of pairs on key */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && key[j - 1] > key[j]; j--) {
            int t = key[j]; key[j] = key[j - 1]; key[j - 1] = t;
            t = other[j]; other[j] = other[j - 1]; other[j - 1] = t;
        }
}

/* dot_general's rule: checks the dimension numbers and normalises them in place. */
LX_RULE(dot_general) {
    (void)id, (void)nin;
    lx_dot_general_params *p = params_;
    const lx_array *a = in[0], *b = in[1];
    const int ncontract = p->ncontract, nbatch = p->nbatch;
    char sa_[96], sb_[96];
#define ss lx_shape_str(a->ndim, a->shape, sa_, sizeof sa_)
#define ts lx_shape_str(b->ndim, b->shape, sb_, sizeof sb_)
    if (a->dtype != LX_F32 || b->dtype != LX_F32)
        return lx_fail(LX_ERR_DTYPE, "dot_general: expected float32 operands, got %s%s and %s%s",
                       lx_dtype_name(a->dtype), ss, lx_dtype_name(b->dtype), ts);
    if (ncontract < 0 || nbatch < 0 || ncontract + nbatch > a->ndim || ncontract + nbatch > b->ndim)
        return lx_fail(LX_ERR_SHAPE, "dot_general: %d contracting and %d batch dimensions do not fit shapes %s and %s",
                       ncontract, nbatch, ss, ts);
    int lc[LX_MAX_DIMS], rc[LX_MAX_DIMS], lb[LX_MAX_DIMS], rb[LX_MAX_DIMS];
    bool lused[LX_MAX_DIMS] = {0}, rused[LX_MAX_DIMS] = {0};
    if (!normalise_axes("batch", a, 0, nbatch, p->lhs_batch, lb, lused) ||
        !normalise_axes("batch", b, 1, nbatch, p->rhs_batch, rb, rused) ||
        !normalise_axes("contracting", a, 0, ncontract, p->lhs_contract, lc, lused) ||
        !normalise_axes("contracting", b, 1, ncontract, p->rhs_contract, rc, rused))
        return lx_last_status();
    for (int i = 0; i < nbatch + ncontract; i++) {
        bool bat = i < nbatch;
        int la = bat ? lb[i] : lc[i - nbatch], ra = bat ? rb[i] : rc[i - nbatch];
        if (a->shape[la] != b->shape[ra])
            return lx_fail(LX_ERR_SHAPE, "dot_general: %s dimensions must have equal sizes: lhs axis %d of %s has size %lld, rhs axis %d of %s has size %lld",
                           bat ? "batch" : "contracting", la, ss, (long long)a->shape[la], ra, ts, (long long)b->shape[ra]);
    }
    int nlf = 0, nrf = 0;
    int64_t lf[LX_MAX_DIMS], rf[LX_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) if (!lused[i]) lf[nlf++] = a->shape[i];
    for (int i = 0; i < b->ndim; i++) if (!rused[i]) rf[nrf++] = b->shape[i];
    int ond = nbatch + nlf + nrf;
    if (ond > LX_MAX_DIMS)
        return lx_fail(LX_ERR_SHAPE, "dot_general: result of %s and %s would have %d dimensions (at most %d)", ss, ts, ond,
                       LX_MAX_DIMS);
#undef ss
#undef ts
    for (int i = 0; i < ncontract; i++) p->lhs_contract[i] = lc[i], p->rhs_contract[i] = rc[i];
    for (int i = 0; i < nbatch; i++) p->lhs_batch[i] = lb[i], p->rhs_batch[i] = rb[i];
    for (int i = 0; i < nbatch; i++) av->shape[i] = a->shape[lb[i]];
    for (int i = 0; i < nlf; i++) av->shape[nbatch + i] = lf[i];
    for (int i = 0; i < nrf; i++) av->shape[nbatch + nlf + i] = rf[i];
    av->ndim = ond;
    av->dtype = LX_F32;
    return LX_OK;
}

/* dot_general's forward, from normalised dimension numbers. */
LX_FWD(dot_general) {
    (void)id, (void)nin, (void)saved;
    const lx_dot_general_params *prm = params_;
    const lx_array *a = in[0], *b = in[1];
    lx_array *out = *outp;
    if (out->size == 0) return LX_OK;
    const int ncontract = prm->ncontract, nbatch = prm->nbatch;
    char sa_[96], sb_[96];
#define ss lx_shape_str(a->ndim, a->shape, sa_, sizeof sa_)
#define ts lx_shape_str(b->ndim, b->shape, sb_, sizeof sb_)
    if (nbatch == 0 && ncontract == 1 && a->ndim == 2 && b->ndim == 2 && prm->lhs_contract[0] == 1 &&
        prm->rhs_contract[0] == 0) {
        /* x (M, K) . w (K, N), a dense layer: both row-major in place, the GEMM that the general
         * path below plans for this case (same arguments, so the same bits), without its views. */
        const int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
        lx_status st = lx_sgemm(false, false, M, N, K, 1.0f, lx_f32(a), K > 1 ? K : 1, lx_f32(b), N > 1 ? N : 1, 0.0f,
                                lx_f32(out), N);
        return st == LX_OK ? LX_OK : lx_fail_context(st, "dot_general of shapes %s and %s: ", ss, ts);
    }
    int lc[LX_MAX_DIMS], rc[LX_MAX_DIMS], lb[LX_MAX_DIMS], rb[LX_MAX_DIMS];
    bool lused[LX_MAX_DIMS] = {0}, rused[LX_MAX_DIMS] = {0};
    for (int i = 0; i < ncontract; i++) lc[i] = (int)prm->lhs_contract[i], rc[i] = (int)prm->rhs_contract[i];
    for (int i = 0; i < nbatch; i++) lb[i] = (int)prm->lhs_batch[i], rb[i] = (int)prm->rhs_batch[i];
    for (int i = 0; i < ncontract; i++) lused[lc[i]] = true, rused[rc[i]] = true;
    for (int i = 0; i < nbatch; i++) lused[lb[i]] = true, rused[rb[i]] = true;
    int lf[LX_MAX_DIMS], rf[LX_MAX_DIMS], nlf = 0, nrf = 0;
    for (int i = 0; i < a->ndim; i++) if (!lused[i]) lf[nlf++] = i;
    for (int i = 0; i < b->ndim; i++) if (!rused[i]) rf[nrf++] = i;
    const int64_t *oshape = out->shape;
    int64_t M = 1, N = 1, K = 1;
    for (int i = 0; i < nlf; i++) M *= a->shape[lf[i]];
    for (int i = 0; i < nrf; i++) N *= b->shape[rf[i]];
    for (int i = 0; i < ncontract; i++) K *= a->shape[lc[i]];
    {
        /* Pick the pairing order of contracted axes that lets both operands be read in place:
         * as given, sorted by lhs axis, or sorted by rhs axis. */
        int orders[3][2][LX_MAX_DIMS];
        /* With at most one contracted axis the three orders are the same: only the first is
         * looked at (x @ W of a dense layer). Views are built lazily: the first order that
         * reads both operands in place wins, so later ones need not be built. */
        const int norders = ncontract > 1 ? 3 : 1;
        for (int o = 0; o < norders; o++) {
            memcpy(orders[o][0], lc, sizeof(int) * (size_t)ncontract);
            memcpy(orders[o][1], rc, sizeof(int) * (size_t)ncontract);
        }
        if (norders > 1) {
            sort_pairs_by(ncontract, orders[1][0], orders[1][1]);
            sort_pairs_by(ncontract, orders[2][1], orders[2][0]);
        }
        operand_view lv[3], rv[3];
        int pick = -1, built = 0;
        for (int o = 0; o < norders && pick < 0; o++, built++) {
            lv[o] = view_of(a, lf, nlf, orders[o][0], ncontract);
            rv[o] = view_of(b, orders[o][1], ncontract, rf, nrf);
            if (lv[o].ok && rv[o].ok) pick = o;
        }
        for (int o = 0; o < built && pick < 0; o++) if (lv[o].ok || rv[o].ok) pick = o;
        if (pick < 0) pick = 0;
        const int *lco = orders[pick][0], *rco = orders[pick][1];
        int64_t ast[LX_MAX_DIMS], bst[LX_MAX_DIMS];
        row_major_strides(a, ast);
        row_major_strides(b, bst);
        bgemm_plan p = {.nb = nbatch, .M = M, .N = N, .K = K};
        for (int i = 0; i < nbatch; i++) p.bshape[i] = oshape[i], p.sa[i] = ast[lb[i]], p.sb[i] = bst[rb[i]];
        const float *A = lx_f32(a), *B = lx_f32(b);
        float *tmpa = NULL, *tmpb = NULL;
        if (lv[pick].ok) {
            p.ta = lv[pick].trans, p.lda = lv[pick].ld;
        } else { /* transpose into (batch..., free..., contracted...) */
            int perm[LX_MAX_DIMS], n = 0;
            for (int i = 0; i < nbatch; i++) perm[n++] = lb[i];
            for (int i = 0; i < nlf; i++) perm[n++] = lf[i];
            for (int i = 0; i < ncontract; i++) perm[n++] = lco[i];
            tmpa = aligned_alloc(LX_ALIGN, ((size_t)a->size * 4 + LX_ALIGN - 1) / LX_ALIGN * LX_ALIGN);
            if (!tmpa) goto nomem;
            permute_copy(a, perm, tmpa);
            A = tmpa, p.ta = false, p.lda = K > 1 ? K : 1;
            for (int i = nbatch - 1; i >= 0; i--) p.sa[i] = i == nbatch - 1 ? M * K : p.sa[i + 1] * oshape[i + 1];
        }
        if (rv[pick].ok) {
            p.tb = rv[pick].trans, p.ldb = rv[pick].ld;
        } else { /* transpose into (batch..., contracted..., free...) */
            int perm[LX_MAX_DIMS], n = 0;
            for (int i = 0; i < nbatch; i++) perm[n++] = rb[i];
            for (int i = 0; i < ncontract; i++) perm[n++] = rco[i];
            for (int i = 0; i < nrf; i++) perm[n++] = rf[i];
            tmpb = aligned_alloc(LX_ALIGN, ((size_t)b->size * 4 + LX_ALIGN - 1) / LX_ALIGN * LX_ALIGN);
            if (!tmpb) goto nomem;
            permute_copy(b, perm, tmpb);
            B = tmpb, p.tb = false, p.ldb = N > 1 ? N : 1;
            for (int i = nbatch - 1; i >= 0; i--) p.sb[i] = i == nbatch - 1 ? K * N : p.sb[i + 1] * oshape[i + 1];
        }
        bgemm_simplify(&p);
        lx_status st = bgemm_forward(&p, A, B, lx_f32(out));
        free(tmpa);
        free(tmpb);
        if (st != LX_OK) {
            return lx_fail_context(st, "dot_general of shapes %s and %s: ", ss, ts);
        }
        return LX_OK;
    nomem:
        free(tmpa);
        return lx_fail(LX_ERR_NO_MEMORY, "dot_general: cannot allocate a transposed copy of %s or %s", ss, ts);
    }
#undef ss
#undef ts
}

LX_ATTRS(dot_general) {
    (void)id, (void)nin, (void)in, (void)scratch;
    const lx_dot_general_params *p = params_;
    attrs[0] = LX_KW("lhs_contracting_dims", lx_ints_v(p->ncontract, p->lhs_contract));
    attrs[1] = LX_KW("rhs_contracting_dims", lx_ints_v(p->ncontract, p->rhs_contract));
    attrs[2] = LX_KW("lhs_batch_dims", lx_ints_v(p->nbatch, p->lhs_batch));
    attrs[3] = LX_KW("rhs_batch_dims", lx_ints_v(p->nbatch, p->rhs_batch));
    return 4;
}

lx_array *lx_dot_general(lx_array *a, lx_array *b, int ncontract, const int64_t *lhs_contract,
                         const int64_t *rhs_contract, int nbatch, const int64_t *lhs_batch,
                         const int64_t *rhs_batch) {
    lx_array *ins[] = {a, b};
    /* The dimension numbers as given; counts the params cannot hold are left for the rule to
     * report (they never fit an array's rank). */
    lx_dot_general_params prm = {.ncontract = ncontract, .nbatch = nbatch};
    if ((ncontract > 0 && (!lhs_contract || !rhs_contract)) || (nbatch > 0 && (!lhs_batch || !rhs_batch))) {
        if (!a || !b) return lx_bind(LX_PRIM_DOT_GENERAL, &prm, 2, ins); /* the earlier failure */
        char sa_[96], sb_[96];
        lx_fail(LX_ERR_SHAPE, "dot_general: %d contracting and %d batch dimensions do not fit shapes %s and %s",
                ncontract, nbatch, lx_shape_str(a->ndim, a->shape, sa_, sizeof sa_),
                lx_shape_str(b->ndim, b->shape, sb_, sizeof sb_));
        return NULL;
    }
    if (ncontract > 0 && ncontract <= LX_MAX_DIMS)
        for (int i = 0; i < ncontract; i++) prm.lhs_contract[i] = lhs_contract[i], prm.rhs_contract[i] = rhs_contract[i];
    if (nbatch > 0 && nbatch <= LX_MAX_DIMS)
        for (int i = 0; i < nbatch; i++) prm.lhs_batch[i] = lhs_batch[i], prm.rhs_batch[i] = rhs_batch[i];
    return lx_bind(LX_PRIM_DOT_GENERAL, &prm, 2, ins);
}
