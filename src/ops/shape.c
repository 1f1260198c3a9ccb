/* Shape ops: reshape, transpose, expand_dims, squeeze, broadcast_to, slice, concatenate, stack,
 * split, pad, take, one_hot.
 *
 * reshape, expand_dims and squeeze return views (the data is shared, the source kept alive by
 * the view's base reference): they only relabel a contiguous buffer. Everything else copies,
 * and all copies with a layout change go through one strided-copy kernel.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/checked.h"
#include "linnx/ops.h"
#include "broadcast.h"
#include "op_internal.h"

/* ---- the strided copy kernel ---- */

static void copy_run(char *out, int64_t os, const char *in, int64_t is, size_t es, int64_t n) {
    if (os == 1 && is == 1) {
        memcpy(out, in, (size_t)n * es);
        return;
    }
    switch (es) {
    case 4: {
        uint32_t *o = (uint32_t *)out;
        const uint32_t *s = (const uint32_t *)in;
        for (int64_t i = 0; i < n; i++) o[i * os] = s[i * is];
        break;
    }
    case 2: {
        uint16_t *o = (uint16_t *)out;
        const uint16_t *s = (const uint16_t *)in;
        for (int64_t i = 0; i < n; i++) o[i * os] = s[i * is];
        break;
    }
    default:
        for (int64_t i = 0; i < n; i++) memcpy(out + i * os * (int64_t)es, in + i * is * (int64_t)es, es);
    }
}

/* lx_strided_copy's loops over square tiles (q >= 0) or rows, after its dims are merged. */
#define SCOPY_TB 32
typedef struct scopy_job {
    const int64_t *sh, *os, *is;
    int nd, q;
    int64_t inner;
    void *out;
    const void *in;
    size_t elsize;
    int64_t tq, tl;
} scopy_job;

static int scopy_tiles(void *p, int64_t lo, int64_t hi) {
    const scopy_job *j = p;
    const int64_t *sh = j->sh, *os = j->os, *is = j->is, tq = j->tq, tl = j->tl, inner = j->inner;
    const int nd = j->nd, q = j->q;
    const int64_t nq = sh[q];
    for (int64_t t = lo; t < hi; t++) {
        int64_t r = t / (tq * tl), bq = (t / tl) % tq * SCOPY_TB, bl = t % tl * SCOPY_TB;
        int64_t ooff = 0, ioff = 0;
        for (int d = nd - 2; d >= 0 && r; d--) {
            if (d == q) continue;
            const int64_t k = r % sh[d];
            r /= sh[d];
            ooff += k * os[d];
            ioff += k * is[d];
        }
        const int64_t eq = bq + SCOPY_TB < nq ? bq + SCOPY_TB : nq, el = bl + SCOPY_TB < inner ? bl + SCOPY_TB : inner;
        uint32_t *o = (uint32_t *)j->out + ooff;
        const uint32_t *src = (const uint32_t *)j->in + ioff;
        for (int64_t i = bq; i < eq; i++)
            for (int64_t jj = bl; jj < el; jj++) o[i * os[q] + jj * os[nd - 1]] = src[i + jj * is[nd - 1]];
    }
    return 0;
}

static int scopy_rows(void *p, int64_t lo, int64_t hi) {
    const scopy_job *j = p;
    const int64_t *sh = j->sh, *os = j->os, *is = j->is;
    const int nd = j->nd;
    for (int64_t r = lo; r < hi; r++) {
        int64_t ooff = 0, ioff = 0, rem = r;
        for (int d = nd - 2; d >= 0 && rem; d--) {
            const int64_t q = rem % sh[d];
            rem /= sh[d];
            ooff += q * os[d];
            ioff += q * is[d];
        }
        copy_run((char *)j->out + ooff * (int64_t)j->elsize, os[nd - 1], (const char *)j->in + ioff * (int64_t)j->elsize,
                 is[nd - 1], j->elsize, j->inner);
    }
    return 0;
}

void lx_strided_copy(void *out, const int64_t *out_strides, const void *in, const int64_t *in_strides,
                     size_t elsize, int ndim, const int64_t *shape) {
    int64_t ocs[LX_MAX_DIMS], sh[LX_MAX_DIMS], os[LX_MAX_DIMS], is[LX_MAX_DIMS];
    int64_t size = 1;
    for (int i = 0; i < ndim; i++) size *= shape[i];
    if (size == 0) return;
    if (!out_strides) {
        lx_contiguous_strides(ndim, shape, ocs);
        out_strides = ocs;
    }
    /* Drop size-1 dims and merge neighbours both sides walk as one run. */
    int nd = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 1) continue;
        if (nd > 0 && os[nd - 1] == out_strides[i] * shape[i] && is[nd - 1] == in_strides[i] * shape[i]) {
            sh[nd - 1] *= shape[i];
            os[nd - 1] = out_strides[i];
            is[nd - 1] = in_strides[i];
        } else {
            sh[nd] = shape[i];
            os[nd] = out_strides[i];
            is[nd] = in_strides[i];
            nd++;
        }
    }
    if (nd == 0) {
        memcpy(out, in, elsize);
        return;
    }
    const int64_t inner = sh[nd - 1], rows = size / inner;
    /* A transpose-like copy (the input is contiguous along some other dim q): copy in square
     * tiles over (q, last) so both sides stay in cache instead of striding through memory. */
    int q = -1;
    if (is[nd - 1] != 1 && elsize == 4)
        for (int d = nd - 2; d >= 0 && q < 0; d--)
            if (is[d] == 1 && sh[d] >= 16 && inner >= 16) q = d;
    scopy_job j = {sh, os, is, nd, q, inner, out, in, elsize};
    if (q >= 0) {
        const int64_t nq = sh[q], nouter = rows / nq;
        j.tq = (nq + SCOPY_TB - 1) / SCOPY_TB, j.tl = (inner + SCOPY_TB - 1) / SCOPY_TB;
        lx_parallel_for(LX_PAR_THREADS(size > LX_PAR_MIN), nouter * j.tq * j.tl, scopy_tiles, &j);
        return;
    }
    lx_parallel_for(LX_PAR_THREADS(size > LX_PAR_MIN && rows > 1), rows, scopy_rows, &j);
}

/* ---- views: reshape, expand_dims, squeeze ---- */

static lx_array *view_as(const char *op, lx_array *x, int ndim, const int64_t *shape) {
    lx_array *v = lx_autorelease(lx_array_reshape_view(x, ndim, shape));
    if (!v) lx_fail_context(lx_last_status(), "%s: ", op);
    return v;
}

/* reshape: dims as given (one -1 inferred); the rule writes them explicit. */
LX_RULE(reshape) {
    LX_UNUSED_RULE;
    lx_shape_params *p = params_;
    lx_array *x = in[0];
    const int ndim = p->ndim;
    const int64_t *shape = p->dims;
    if (ndim < 0 || ndim > LX_MAX_DIMS)
        return lx_fail(LX_ERR_SHAPE, "reshape: %d dims requested for array of shape %s (at most %d)", ndim, lx_ashp(x),
                       LX_MAX_DIMS);
    int64_t dims[LX_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = shape[i];
        if (shape[i] == -1 && infer < 0) {
            infer = i;
            continue;
        }
        if (shape[i] < 0)
            return lx_fail(LX_ERR_SHAPE, "reshape: %s in shape %s for array of shape %s",
                           shape[i] == -1 ? "can only specify one unknown dimension" : "negative dimension",
                           lx_shp(ndim, shape), lx_ashp(x));
        if (!lx_mul_ok(known, shape[i], &known)) /* checked-arithmetic */
            return lx_fail(LX_ERR_SHAPE, "reshape: the element count of shape %s overflows int64 (array of shape %s)",
                           lx_shp(ndim, shape), lx_ashp(x));
    }
    if (infer >= 0) {
        if (known == 0 || x->size % known != 0)
            return lx_fail(LX_ERR_SHAPE, "reshape: cannot reshape array of shape %s (size %lld) into shape %s", lx_ashp(x),
                           (long long)x->size, lx_shp(ndim, shape));
        dims[infer] = x->size / known;
    } else if (known != x->size) {
        return lx_fail(LX_ERR_SHAPE, "reshape: cannot reshape array of shape %s (size %lld) into shape %s", lx_ashp(x),
                       (long long)x->size, lx_shp(ndim, shape));
    }
    memcpy(p->dims, dims, sizeof(int64_t) * (size_t)ndim);
    lx_aval_set(av, x->dtype, ndim, dims);
    return LX_OK;
}
LX_FWD(reshape) {
    LX_UNUSED_FWD;
    const lx_shape_params *p = params_;
    *outp = view_as("reshape", in[0], p->ndim, p->dims);
    return *outp ? LX_OK : lx_last_status();
}
LX_ATTRS(reshape) {
    LX_UNUSED_ATTRS;
    const lx_shape_params *p = params_;
    attrs[0] = LX_KW(id == LX_PRIM_RESHAPE ? "shape" : id == LX_PRIM_BROADCAST_TO ? "shape"
                     : id == LX_PRIM_TRANSPOSE ? "permutation" : "axes",
                     lx_ints_v(p->ndim, p->dims));
    return 1;
}

lx_array *lx_reshape(lx_array *x, int ndim, const int64_t *shape) {
    lx_shape_params prm = {.ndim = ndim};
    if (x && (ndim < 0 || ndim > LX_MAX_DIMS || (ndim > 0 && !shape))) {
        lx_fail(LX_ERR_SHAPE, "reshape: %d dims requested for array of shape %s (at most %d)", ndim, lx_ashp(x),
                LX_MAX_DIMS);
        return NULL;
    }
    if (x && ndim > 0) memcpy(prm.dims, shape, sizeof(int64_t) * (size_t)ndim);
    return lx_bind(LX_PRIM_RESHAPE, &prm, 1, &x);
}

LX_RULE(expand_dims) {
    LX_UNUSED_RULE;
    lx_shape_params *p = params_;
    lx_array *x = in[0];
    if (x->ndim == LX_MAX_DIMS)
        return lx_fail(LX_ERR_SHAPE, "expand_dims: array of shape %s already has the most dims linnx allows (%d)",
                       lx_ashp(x), LX_MAX_DIMS);
    int64_t a;
    LX_TRY(lx_norm_axis("expand_dims", p->axis, x->ndim + 1, &a));
    p->axis = a;
    av->dtype = x->dtype, av->ndim = x->ndim + 1;
    for (int i = 0, k = 0; i <= x->ndim; i++) av->shape[i] = i == a ? 1 : x->shape[k++];
    return LX_OK;
}
LX_FWD(expand_dims) {
    LX_UNUSED_FWD;
    const lx_array *x = in[0];
    const int64_t a = ((const lx_shape_params *)params_)->axis;
    int64_t dims[LX_MAX_DIMS];
    for (int i = 0, k = 0; i <= x->ndim; i++) dims[i] = i == a ? 1 : x->shape[k++];
    *outp = view_as("expand_dims", in[0], x->ndim + 1, dims);
    return *outp ? LX_OK : lx_last_status();
}
/* expand_dims, concatenate, stack, take, one_hot: one integer attribute. */
LX_ATTRS(axis) {
    LX_UNUSED_ATTRS;
    if (id == LX_PRIM_ONE_HOT) {
        attrs[0] = LX_KW_INT("num_classes", ((const lx_one_hot_params *)params_)->num_classes);
    } else {
        attrs[0] = LX_KW_INT("axis", ((const lx_shape_params *)params_)->axis);
    }
    return 1;
}

lx_array *lx_expand_dims(lx_array *x, int64_t axis) {
    const lx_shape_params prm = {.axis = axis};
    return lx_bind(LX_PRIM_EXPAND_DIMS, &prm, 1, &x);
}

/* squeeze: the axes as given (SQUEEZE_ALL: every size-1 axis); the rule writes the dropped axes. */
#define SQUEEZE_ALL LX_NAXES_NONE
LX_RULE(squeeze) {
    LX_UNUSED_RULE;
    lx_shape_params *p = params_;
    lx_array *x = in[0];
    bool drop[LX_MAX_DIMS] = {false};
    if (p->ndim == SQUEEZE_ALL) {
        for (int i = 0; i < x->ndim; i++) drop[i] = x->shape[i] == 1;
    } else {
        const int naxes = p->ndim;
        const int64_t *axes = p->dims;
        if (naxes < 0 || naxes > LX_MAX_DIMS)
            return lx_fail(LX_ERR_SHAPE, "squeeze: %d axes given for array of shape %s", naxes, lx_ashp(x));
        for (int i = 0; i < naxes; i++) {
            int64_t a;
            LX_TRY(lx_norm_axis("squeeze", axes[i], x->ndim, &a));
            if (drop[a])
                return lx_fail(LX_ERR_SHAPE, "squeeze: duplicate value in 'axis' %s for array of shape %s",
                               lx_shp(naxes, axes), lx_ashp(x));
            if (x->shape[a] != 1)
                return lx_fail(LX_ERR_SHAPE,
                               "squeeze: cannot select an axis to squeeze out which has size not equal to one "
                               "(axis %lld of shape %s)",
                               (long long)axes[i], lx_ashp(x));
            drop[a] = true;
        }
    }
    int nd = 0, nk = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (drop[i]) p->dims[nk++] = i;
        else av->shape[nd++] = x->shape[i];
    }
    p->ndim = nk;
    av->ndim = nd;
    av->dtype = x->dtype;
    return LX_OK;
}
LX_FWD(squeeze) {
    LX_UNUSED_FWD;
    const lx_shape_params *p = params_;
    const lx_array *x = in[0];
    bool drop[LX_MAX_DIMS] = {false};
    for (int i = 0; i < p->ndim; i++) drop[p->dims[i]] = true;
    int64_t dims[LX_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (!drop[i]) dims[nd++] = x->shape[i];
    *outp = view_as("squeeze", in[0], nd, dims);
    return *outp ? LX_OK : lx_last_status();
}

lx_array *lx_squeeze(lx_array *x, int naxes, const int64_t *axes) {
    lx_shape_params prm = {.ndim = axes ? naxes : SQUEEZE_ALL};
    if (axes && naxes > 0 && naxes <= LX_MAX_DIMS) memcpy(prm.dims, axes, sizeof(int64_t) * (size_t)naxes);
    return lx_bind(LX_PRIM_SQUEEZE, &prm, 1, &x);
}

/* ---- transpose ---- */

/* transpose: perm as given (TRANSPOSE_REVERSE: axes reversed); the rule normalises it. */
#define TRANSPOSE_REVERSE LX_NAXES_NONE
LX_RULE(transpose) {
    LX_UNUSED_RULE;
    lx_shape_params *p = params_;
    lx_array *x = in[0];
    int64_t pm[LX_MAX_DIMS];
    if (p->ndim == TRANSPOSE_REVERSE) {
        for (int i = 0; i < x->ndim; i++) pm[i] = x->ndim - 1 - i;
    } else {
        const int nperm = p->ndim;
        const int64_t *perm = p->dims;
        if (nperm != x->ndim)
            return lx_fail(LX_ERR_SHAPE, "transpose: axes %s don't match array of shape %s",
                           nperm >= 0 && nperm <= LX_MAX_DIMS ? lx_shp(nperm, perm) : "(...)", lx_ashp(x));
        bool seen[LX_MAX_DIMS] = {false};
        for (int i = 0; i < nperm; i++) {
            LX_TRY(lx_norm_axis("transpose", perm[i], x->ndim, &pm[i]));
            if (seen[pm[i]])
                return lx_fail(LX_ERR_SHAPE, "transpose: repeated axis in axes %s for array of shape %s",
                               lx_shp(nperm, perm), lx_ashp(x));
            seen[pm[i]] = true;
        }
    }
    p->ndim = x->ndim;
    memcpy(p->dims, pm, sizeof(int64_t) * (size_t)x->ndim);
    av->dtype = x->dtype, av->ndim = x->ndim;
    for (int i = 0; i < x->ndim; i++) av->shape[i] = x->shape[pm[i]];
    return LX_OK;
}
LX_FWD(transpose) {
    LX_UNUSED_FWD;
    const lx_shape_params *p = params_;
    const lx_array *x = in[0];
    lx_array *out = *outp;
    int64_t xs[LX_MAX_DIMS], is[LX_MAX_DIMS];
    lx_contiguous_strides(x->ndim, x->shape, xs);
    for (int i = 0; i < x->ndim; i++) is[i] = xs[p->dims[i]];
    lx_strided_copy(out->data, NULL, x->data, is, lx_dtype_size(x->dtype), x->ndim, out->shape);
    return LX_OK;
}

lx_array *lx_transpose(lx_array *x, int nperm, const int64_t *perm) {
    lx_shape_params prm = {.ndim = perm ? nperm : TRANSPOSE_REVERSE};
    if (perm && x && (nperm < 0 || nperm > LX_MAX_DIMS)) { /* more axes than the params hold */
        lx_fail(LX_ERR_SHAPE, "transpose: axes %s don't match array of shape %s", nperm >= 0 ? lx_shp(nperm, perm) : "()",
                lx_ashp(x));
        return NULL;
    }
    if (perm && nperm > 0 && nperm <= LX_MAX_DIMS) memcpy(prm.dims, perm, sizeof(int64_t) * (size_t)nperm);
    return lx_bind(LX_PRIM_TRANSPOSE, &prm, 1, &x);
}

/* ---- broadcast_to ---- */

static void copy_row_forward(void *out, const void *const *in, const int64_t *step, int64_t n, const void *ctx) {
    const size_t es = *(const size_t *)ctx;
    if (step[0] == 0 && es == 4) { /* a fill: a vector store loop, not a strided copy with stride 0 */
        uint32_t v, *o = out;
        memcpy(&v, in[0], 4);
        for (int64_t i = 0; i < n; i++) o[i] = v;
        return;
    }
    copy_run(out, 1, in[0], step[0], es, n);
}

/* The two broadcasts of the sum / mean VJPs without the general plan's per-row index arithmetic:
 * one value to every element (a full sum's cotangent) and one row repeated (a sum over leading
 * axes, a bias gradient's transpose). Returns false for any other broadcast. */
typedef struct fill_job {
    char *out;
    const void *src;
    int64_t total, chunk;
    size_t bytes;
} fill_job;

static int fill_chunks(void *p, int64_t lo, int64_t hi) {
    const fill_job *j = p;
    uint32_t v, *o = (uint32_t *)j->out;
    memcpy(&v, j->src, 4);
    for (int64_t c = lo; c < hi; c++) {
        const int64_t e = (c + 1) * j->chunk < j->total ? (c + 1) * j->chunk : j->total;
        for (int64_t i = c * j->chunk; i < e; i++) o[i] = v;
    }
    return 0;
}

static int repeat_rows(void *p, int64_t lo, int64_t hi) {
    const fill_job *j = p;
    for (int64_t r = lo; r < hi; r++) memcpy(j->out + (size_t)r * j->bytes, j->src, j->bytes);
    return 0;
}

static bool broadcast_fast(const lx_bcast *bc, const lx_array *x, lx_array *out, size_t es) {
    const int64_t total = out->size;
    if (x->size == 1 && es == 4) {
        const int64_t chunk = 16384, nch = (total + chunk - 1) / chunk;
        fill_job j = {out->data, x->data, total, chunk, 0};
        lx_parallel_for(LX_PAR_THREADS(total > LX_PAR_MIN && nch > 1), nch, fill_chunks, &j);
        return true;
    }
    if (bc->ndim == 2 && bc->stride[0][0] == 0 && bc->stride[0][1] == 1) {
        const int64_t rows = bc->shape[0], w = bc->shape[1];
        fill_job j = {out->data, x->data, total, 0, (size_t)w * es};
        lx_parallel_for(LX_PAR_THREADS(total > LX_PAR_MIN && rows > 1), rows, repeat_rows, &j);
        return true;
    }
    return false;
}

LX_RULE(broadcast_to) {
    LX_UNUSED_RULE;
    const lx_shape_params *p = params_;
    lx_array *x = in[0];
    const int ndim = p->ndim;
    const int64_t *shape = p->dims;
    bool ok = ndim >= x->ndim && ndim <= LX_MAX_DIMS;
    for (int i = 0; ok && i < ndim; i++) {
        int j = i - (ndim - x->ndim);
        if (shape[i] < 0 || (j >= 0 && x->shape[j] != 1 && x->shape[j] != shape[i])) ok = false;
    }
    if (!ok)
        return lx_fail(LX_ERR_SHAPE, "broadcast_to: incompatible shapes for broadcasting: %s and requested shape %s",
                       lx_ashp(x), ndim >= 0 && ndim <= LX_MAX_DIMS ? lx_shp(ndim, shape) : "None");
    lx_aval_set(av, x->dtype, ndim, shape);
    return LX_OK;
}
LX_FWD(broadcast_to) {
    LX_UNUSED_FWD;
    const lx_array *x = in[0];
    lx_array *out = *outp;
    lx_bcast bc;
    const int64_t *shapes[] = {x->shape};
    lx_bcast_plan(&bc, 1, &x->ndim, shapes, out->ndim, out->shape);
    const size_t es = lx_dtype_size(x->dtype);
    if (out->size == 0 || broadcast_fast(&bc, x, out, es)) return LX_OK;
    lx_bcast_run(&bc, out->data, es, (const void *const[]){x->data}, &es, copy_row_forward, &es);
    return LX_OK;
}

lx_array *lx_broadcast_to(lx_array *x, int ndim, const int64_t *shape) {
    lx_shape_params prm = {.ndim = ndim};
    if (x && !(ndim >= x->ndim && ndim <= LX_MAX_DIMS && (ndim == 0 || shape))) {
        lx_fail(LX_ERR_SHAPE, "broadcast_to: incompatible shapes for broadcasting: %s and requested shape %s",
                lx_ashp(x), shape ? lx_shp(ndim, shape) : "None");
        return NULL;
    }
    if (x && ndim > 0) memcpy(prm.dims, shape, sizeof(int64_t) * (size_t)ndim);
    return lx_bind(LX_PRIM_BROADCAST_TO, &prm, 1, &x);
}

/* ---- slice ---- */

/* Python's slice.indices(n) plus the length of the result. */
static void range_indices(lx_range r, int64_t n, int64_t *start, int64_t *stop, int64_t *step, int64_t *len) {
    const int64_t st = r.step == LX_NIL ? 1 : r.step;
    const int64_t lower = st > 0 ? 0 : -1, upper = st > 0 ? n : n - 1;
    int64_t b = r.start, e = r.stop;
    if (b == LX_NIL) {
        b = st > 0 ? lower : upper;
    } else {
        if (b < 0) b += n;
        b = b < lower ? lower : b > upper ? upper : b;
    }
    if (e == LX_NIL) {
        e = st > 0 ? upper : lower;
    } else {
        if (e < 0) e += n;
        e = e < lower ? lower : e > upper ? upper : e;
    }
    *start = b;
    *stop = e;
    *step = st;
    /* checked-arithmetic: no st - 1 or -st (st may be INT64_MAX or INT64_MIN); e - b fits */
    if (st > 0) *len = e > b ? (e - b - 1) / st + 1 : 0;
    else *len = b > e ? (e - b + 1) / st + 1 : 0;
}

/* The strided view of x given per-axis start/step/len (the shape of out), copied into out. */
static void gather_into(lx_array *out, const lx_array *x, const int64_t *start, const int64_t *step, const int64_t *len) {
    if (out->size == 0) return;
    int64_t xs[LX_MAX_DIMS], is[LX_MAX_DIMS], off = 0;
    lx_contiguous_strides(x->ndim, x->shape, xs);
    for (int i = 0; i < x->ndim; i++) {
        off += start[i] * xs[i];
        /* checked-arithmetic: with len > 1, |step| * (len - 1) < shape, so this fits; a step
         * taken once or never is never multiplied */
        is[i] = len[i] > 1 ? xs[i] * step[i] : xs[i];
    }
    const size_t es = lx_dtype_size(x->dtype);
    lx_strided_copy(out->data, NULL, (const char *)x->data + off * (int64_t)es, is, es, x->ndim, len);
}

/* slice's params are resolved against x by the builder (Python's slice.indices); the rule checks
 * that they fit x (checked arithmetic for the last index). */
LX_RULE(slice) {
    LX_UNUSED_RULE;
    const lx_slice_params *p = params_;
    lx_array *x = in[0];
    if (p->ndim != x->ndim)
        return lx_fail(LX_ERR_SHAPE, "slice: too many indices for array: array of shape %s is %d-dimensional, but %d were indexed",
                       lx_ashp(x), x->ndim, p->ndim);
    for (int i = 0; i < x->ndim; i++) {
        int64_t last = 0;
        bool ok = p->step[i] != 0 && p->len[i] >= 0;
        if (ok && p->len[i] > 0)
            ok = p->start[i] >= 0 && p->start[i] < x->shape[i] && lx_mul_ok(p->len[i] - 1, p->step[i], &last) &&
                 lx_add_ok(p->start[i], last, &last) && last >= 0 && last < x->shape[i];
        if (!ok)
            return lx_fail(LX_ERR_SHAPE, "slice: start %lld, step %lld and length %lld do not fit axis %d of shape %s",
                           (long long)p->start[i], (long long)p->step[i], (long long)p->len[i], i, lx_ashp(x));
    }
    lx_aval_set(av, x->dtype, x->ndim, p->len);
    return LX_OK;
}
LX_FWD(slice) {
    LX_UNUSED_FWD;
    const lx_slice_params *p = params_;
    gather_into(*outp, in[0], p->start, p->step, p->len);
    return LX_OK;
}
LX_ATTRS(slice) {
    LX_UNUSED_ATTRS;
    const lx_slice_params *p = params_;
    attrs[0] = LX_KW("start", lx_ints_v(p->ndim, p->start));
    attrs[1] = LX_KW("stop", lx_ints_v(p->ndim, p->stop));
    attrs[2] = LX_KW("step", lx_ints_v(p->ndim, p->step));
    return 3;
}

lx_array *lx_slice(lx_array *x, int nranges, const lx_range *ranges) {
    lx_slice_params prm = {0};
    if (!x) return lx_bind(LX_PRIM_SLICE, &prm, 1, &x);
    if (nranges < 0 || nranges > x->ndim || (nranges > 0 && !ranges)) {
        lx_fail(LX_ERR_SHAPE, "slice: too many indices for array: array of shape %s is %d-dimensional, but %d were indexed",
                lx_ashp(x), x->ndim, nranges);
        return NULL;
    }
    prm.ndim = x->ndim;
    for (int i = 0; i < x->ndim; i++) {
        lx_range r = i < nranges ? ranges[i] : LX_RANGE_ALL;
        if (r.step == 0) {
            lx_fail(LX_ERR_INVALID_ARGUMENT, "slice: slice step cannot be zero (axis %d of shape %s)", i, lx_ashp(x));
            return NULL;
        }
        range_indices(r, x->shape[i], &prm.start[i], &prm.stop[i], &prm.step[i], &prm.len[i]);
    }
    return lx_bind(LX_PRIM_SLICE, &prm, 1, &x);
}

/* ---- concatenate, stack ---- */

/* Common checks of a list of arrays (all present: bind checked): one dtype. */
static lx_status check_list(const char *op, int n, lx_array *const *xs) {
    for (int k = 0; k < n; k++)
        if (xs[k]->dtype != xs[0]->dtype)
            return lx_fail(LX_ERR_DTYPE, "%s: arrays have different dtypes: %s %s at index 0 and %s %s at index %d", op,
                           lx_dtype_name(xs[0]->dtype), lx_ashp(xs[0]), lx_dtype_name(xs[k]->dtype), lx_ashp(xs[k]), k);
    return LX_OK;
}

/* The builders' side of a list: a NULL list or an empty one is the builder's own argument error. */
static lx_array *bind_list(lx_prim_id id, const char *op, int n, lx_array *const *xs, int64_t axis) {
    if (n > 0 && !xs) {
        lx_op_null_input(op);
        return NULL;
    }
    for (int k = 0; k < n; k++)
        if (!xs[k]) {
            lx_op_null_input(op);
            return NULL;
        }
    if (n <= 0) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: need at least one array to %s", op, op);
        return NULL;
    }
    const lx_shape_params prm = {.axis = axis};
    return lx_bind(id, &prm, n, xs);
}

LX_RULE(concatenate) {
    (void)id;
    lx_shape_params *p = params_;
    LX_TRY(check_list("concatenate", nin, in));
    const lx_array *x0 = in[0];
    if (x0->ndim == 0) return lx_fail(LX_ERR_SHAPE, "concatenate: zero-dimensional arrays cannot be concatenated");
    int64_t a;
    LX_TRY(lx_norm_axis("concatenate", p->axis, x0->ndim, &a));
    int64_t *shape = av->shape;
    memcpy(shape, x0->shape, sizeof(int64_t) * (size_t)x0->ndim);
    shape[a] = 0;
    for (int k = 0; k < nin; k++) {
        const lx_array *x = in[k];
        if (x->ndim != x0->ndim)
            return lx_fail(LX_ERR_SHAPE,
                           "concatenate: all the input arrays must have same number of dimensions, but the array at "
                           "index 0 has shape %s and the array at index %d has shape %s",
                           lx_ashp(x0), k, lx_ashp(x));
        for (int i = 0; i < x->ndim; i++)
            if (i != a && x->shape[i] != x0->shape[i])
                return lx_fail(LX_ERR_SHAPE,
                               "concatenate: all the input array dimensions except for the concatenation axis must "
                               "match exactly, but along dimension %d, the array at index 0 has shape %s and the "
                               "array at index %d has shape %s",
                               i, lx_ashp(x0), k, lx_ashp(x));
        if (!lx_add_ok(shape[a], x->shape[a], &shape[a])) /* checked-arithmetic */
            return lx_fail(LX_ERR_SHAPE, "concatenate: the total size along axis %lld overflows int64 (%d arrays)",
                           (long long)a, nin);
    }
    p->axis = a;
    av->ndim = x0->ndim;
    av->dtype = x0->dtype;
    return LX_OK;
}
LX_FWD(concatenate) {
    (void)id, (void)saved;
    const int64_t a = ((const lx_shape_params *)params_)->axis;
    lx_array *out = *outp;
    const lx_array *x0 = in[0];
    const int64_t *shape = out->shape;
    if (out->size) {
        const size_t es = lx_dtype_size(x0->dtype);
        int64_t outer = 1, inner = 1;
        for (int i = 0; i < a; i++) outer *= shape[i];
        for (int i = (int)a + 1; i < x0->ndim; i++) inner *= shape[i];
        char *dst = out->data;
        for (int64_t o = 0; o < outer; o++)
            for (int k = 0; k < nin; k++) {
                const size_t chunk = (size_t)(in[k]->shape[a] * inner) * es;
                memcpy(dst, (const char *)in[k]->data + (size_t)o * chunk, chunk);
                dst += chunk;
            }
    }
    return LX_OK;
}

lx_array *lx_concatenate(int n, lx_array *const *xs, int64_t axis) {
    return bind_list(LX_PRIM_CONCATENATE, "concatenate", n, xs, axis);
}

LX_RULE(stack) {
    (void)id;
    lx_shape_params *p = params_;
    LX_TRY(check_list("stack", nin, in));
    const lx_array *x0 = in[0];
    for (int k = 1; k < nin; k++)
        if (!lx_same_shape(in[k], x0))
            return lx_fail(LX_ERR_SHAPE, "stack: all input arrays must have the same shape, but the array at index 0 has "
                           "shape %s and the array at index %d has shape %s",
                           lx_ashp(x0), k, lx_ashp(in[k]));
    if (x0->ndim == LX_MAX_DIMS)
        return lx_fail(LX_ERR_SHAPE, "stack: arrays of shape %s already have the most dims linnx allows (%d)", lx_ashp(x0),
                       LX_MAX_DIMS);
    int64_t a;
    LX_TRY(lx_norm_axis("stack", p->axis, x0->ndim + 1, &a));
    for (int i = 0, j = 0; i <= x0->ndim; i++) av->shape[i] = i == a ? nin : x0->shape[j++];
    p->axis = a;
    av->ndim = x0->ndim + 1;
    av->dtype = x0->dtype;
    return LX_OK;
}
LX_FWD(stack) {
    (void)id, (void)saved;
    const int64_t a = ((const lx_shape_params *)params_)->axis;
    lx_array *out = *outp;
    const lx_array *x0 = in[0];
    if (out->size) {
        const size_t es = lx_dtype_size(x0->dtype);
        int64_t outer = 1;
        for (int i = 0; i < a; i++) outer *= x0->shape[i];
        const size_t chunk = (size_t)(x0->size / outer) * es;
        char *dst = out->data;
        for (int64_t o = 0; o < outer; o++)
            for (int k = 0; k < nin; k++) {
                memcpy(dst, (const char *)in[k]->data + (size_t)o * chunk, chunk);
                dst += chunk;
            }
    }
    return LX_OK;
}

lx_array *lx_stack(int n, lx_array *const *xs, int64_t axis) { return bind_list(LX_PRIM_STACK, "stack", n, xs, axis); }

/* ---- split ---- */

/* One piece of split, x[start:stop] along axis (Python slice bounds; the rule resolves them). */
LX_RULE(split) {
    LX_UNUSED_RULE;
    lx_split_params *p = params_;
    lx_array *x = in[0];
    int64_t a, b, e, st, n;
    LX_TRY(lx_norm_axis("split", p->axis, x->ndim, &a));
    range_indices(LX_RANGE(p->start, p->stop), x->shape[a], &b, &e, &st, &n);
    p->axis = a, p->start = b, p->stop = b + n;
    lx_aval_like(av, x->dtype, x);
    av->shape[a] = n;
    return LX_OK;
}
LX_FWD(split) {
    LX_UNUSED_FWD;
    const lx_split_params *p = params_;
    const lx_array *x = in[0];
    int64_t start[LX_MAX_DIMS] = {0}, step[LX_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) step[i] = 1;
    start[p->axis] = p->start;
    gather_into(*outp, x, start, step, (*outp)->shape);
    return LX_OK;
}
LX_ATTRS(split) {
    LX_UNUSED_ATTRS;
    const lx_split_params *p = params_;
    attrs[0] = LX_KW_INT("axis", p->axis);
    attrs[1] = LX_KW_INT("start", p->start);
    attrs[2] = LX_KW_INT("stop", p->stop);
    attrs[3] = LX_KW_INT("index", p->index);
    return 4;
}

static lx_status split_pieces(lx_array *x, int64_t axis, int npieces, const int64_t *bounds, lx_array **outs) {
    for (int k = 0; k < npieces; k++) {
        const lx_split_params prm = {axis, bounds[k], bounds[k + 1], k};
        outs[k] = lx_bind(LX_PRIM_SPLIT, &prm, 1, &x);
        if (!outs[k]) {
            for (int q = 0; q < npieces; q++) outs[q] = NULL;
            return lx_last_status();
        }
    }
    return LX_OK;
}

lx_status lx_split(lx_array *x, int64_t nsections, int64_t axis, lx_array **outs) {
    if (!outs) return lx_fail(LX_ERR_INVALID_ARGUMENT, "split: outs is NULL");
    const bool valid = nsections > 0 && nsections <= INT32_MAX;
    for (int64_t k = 0; valid && k < nsections; k++) outs[k] = NULL;
    if (!x) {
        lx_op_null_input("split");
        return LX_ERR_FAILED_INPUT;
    }
    if (!valid)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "split: number sections must be larger than 0, got %lld",
                       (long long)nsections);
    int64_t a;
    LX_TRY(lx_norm_axis("split", axis, x->ndim, &a));
    if (x->shape[a] % nsections != 0)
        return lx_fail(LX_ERR_SHAPE,
                       "split: array split does not result in an equal division: size %lld along axis %lld of "
                       "shape %s into %lld sections",
                       (long long)x->shape[a], (long long)axis, lx_ashp(x), (long long)nsections);
    int64_t *bounds = malloc((size_t)(nsections + 1) * sizeof *bounds);
    if (!bounds) return lx_fail(LX_ERR_NO_MEMORY, "split: out of memory");
    const int64_t part = x->shape[a] / nsections;
    for (int64_t k = 0; k <= nsections; k++) bounds[k] = k * part;
    lx_status s = split_pieces(x, a, (int)nsections, bounds, outs);
    free(bounds);
    return s;
}

lx_status lx_split_at(lx_array *x, int nindices, const int64_t *indices, int64_t axis, lx_array **outs) {
    if (!outs) return lx_fail(LX_ERR_INVALID_ARGUMENT, "split: outs is NULL");
    for (int k = 0; k <= nindices; k++) outs[k] = NULL; /* nothing when nindices < 0 */
    if (!x) {
        lx_op_null_input("split");
        return LX_ERR_FAILED_INPUT;
    }
    if (nindices < 0 || (nindices > 0 && !indices))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "split: %d indices given", nindices);
    int64_t a;
    LX_TRY(lx_norm_axis("split", axis, x->ndim, &a));
    int64_t *bounds = malloc((size_t)(nindices + 2) * sizeof *bounds);
    if (!bounds) return lx_fail(LX_ERR_NO_MEMORY, "split: out of memory");
    bounds[0] = 0;
    for (int k = 0; k < nindices; k++) bounds[k + 1] = indices[k];
    bounds[nindices + 1] = LX_NIL; /* the last piece runs to the end */
    lx_status s = split_pieces(x, a, nindices + 1, bounds, outs);
    free(bounds);
    return s;
}

/* ---- pad ---- */

static void fill_forward(void *out, const void *value, size_t es, int64_t n) {
    char *o = out;
    if (es == 4) {
        uint32_t v;
        memcpy(&v, value, 4);
        uint32_t *p = out;
        for (int64_t i = 0; i < n; i++) p[i] = v;
        return;
    }
    for (int64_t i = 0; i < n; i++) memcpy(o + (size_t)i * es, value, es);
}

LX_RULE(pad) {
    LX_UNUSED_RULE;
    const lx_pad_params *p = params_;
    lx_array *x = in[0];
    if (p->ndim != x->ndim)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "pad: %d before/after widths for array of shape %s", p->ndim, lx_ashp(x));
    for (int i = 0; i < x->ndim; i++) {
        if (p->before[i] < 0 || p->after[i] < 0)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "pad: negative pad width (%lld, %lld) at axis %d of shape %s",
                           (long long)p->before[i], (long long)p->after[i], i, lx_ashp(x));
        if (!lx_add_ok(x->shape[i], p->before[i], &av->shape[i]) || !lx_add_ok(av->shape[i], p->after[i], &av->shape[i]))
            return lx_fail(LX_ERR_SHAPE, "pad: pad widths (%lld, %lld) at axis %d of shape %s overflow int64",
                           (long long)p->before[i], (long long)p->after[i], i, lx_ashp(x));
    }
    av->ndim = x->ndim;
    av->dtype = x->dtype;
    return LX_OK;
}
LX_FWD(pad) {
    LX_UNUSED_FWD;
    const lx_pad_params *p = params_;
    const lx_array *x = in[0];
    lx_array *out = *outp;
    unsigned char v[8];
    LX_TRY(lx_scalar_to_dtype(p->value, x->dtype, v)); /* by the rules of lx_cast */
    const size_t es = lx_dtype_size(x->dtype);
    fill_forward(out->data, v, es, out->size);
    int64_t os[LX_MAX_DIMS], xs[LX_MAX_DIMS], off = 0;
    lx_contiguous_strides(x->ndim, out->shape, os);
    lx_contiguous_strides(x->ndim, x->shape, xs);
    for (int i = 0; i < x->ndim; i++) off += p->before[i] * os[i];
    lx_strided_copy((char *)out->data + off * (int64_t)es, os, x->data, xs, es, x->ndim, x->shape);
    return LX_OK;
}
LX_ATTRS(pad) {
    LX_UNUSED_ATTRS;
    const lx_pad_params *p = params_;
    attrs[0] = LX_KW("before", lx_ints_v(p->ndim, p->before));
    attrs[1] = LX_KW("after", lx_ints_v(p->ndim, p->after));
    attrs[2] = LX_KW_FLOAT("value", p->value);
    return 3;
}

lx_array *lx_pad(lx_array *x, const int64_t *before, const int64_t *after, float value) {
    lx_pad_params prm = {.ndim = x ? x->ndim : 0, .value = value};
    if (x && x->ndim > 0 && (!before || !after)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "pad: before/after widths are NULL for array of shape %s", lx_ashp(x));
        return NULL;
    }
    for (int i = 0; i < prm.ndim; i++) prm.before[i] = before[i], prm.after[i] = after[i];
    return lx_bind(LX_PRIM_PAD, &prm, 1, &x);
}

/* ---- take, one_hot ---- */

typedef struct take_job {
    char *out;
    const char *a;
    const int32_t *idx;
    int64_t n, m;
    size_t row_bytes;
} take_job;

static int take_rows(void *p, int64_t lo, int64_t hi) {
    const take_job *j = p;
    for (int64_t t = lo; t < hi; t++) {
        const int64_t o = t / j->m, jj = t % j->m;
        const int64_t i = j->idx[jj] < 0 ? j->idx[jj] + j->n : j->idx[jj];
        memcpy(j->out + (size_t)t * j->row_bytes, j->a + (size_t)(o * j->n + i) * j->row_bytes, j->row_bytes);
    }
    return 0;
}

static void take_forward(char *out, const char *a, const int32_t *idx, int64_t outer, int64_t n, int64_t m,
                         size_t row_bytes) {
    const int64_t total = outer * m;
    take_job j = {out, a, idx, n, m, row_bytes};
    lx_parallel_for(LX_PAR_THREADS(total * (int64_t)row_bytes > 4 * LX_PAR_MIN), total, take_rows, &j);
}

LX_RULE(take) {
    LX_UNUSED_RULE;
    lx_shape_params *p = params_;
    const lx_array *a = in[0], *indices = in[1];
    if (indices->dtype != LX_I32)
        return lx_fail(LX_ERR_DTYPE, "take: indices must be int32, got %s with shape %s", lx_dtype_name(indices->dtype),
                       lx_ashp(indices));
    int64_t ax;
    LX_TRY(lx_norm_axis("take", p->axis, a->ndim, &ax));
    const int nd = a->ndim - 1 + indices->ndim;
    if (nd > LX_MAX_DIMS)
        return lx_fail(LX_ERR_SHAPE, "take: result of array %s and indices %s would have %d dims (at most %d)", lx_ashp(a),
                       lx_ashp(indices), nd, LX_MAX_DIMS);
    int k = 0;
    for (int i = 0; i < ax; i++) av->shape[k++] = a->shape[i];
    for (int i = 0; i < indices->ndim; i++) av->shape[k++] = indices->shape[i];
    for (int i = (int)ax + 1; i < a->ndim; i++) av->shape[k++] = a->shape[i];
    p->axis = ax;
    av->ndim = nd;
    av->dtype = a->dtype;
    return LX_OK;
}
/* The indices' range is a property of their values: checked here, on concrete inputs only. */
LX_FWD(take) {
    LX_UNUSED_FWD;
    const int64_t ax = ((const lx_shape_params *)params_)->axis;
    const lx_array *a = in[0], *indices = in[1];
    lx_array *out = *outp;
    const int64_t n = a->shape[ax];
    for (int64_t j = 0; j < indices->size; j++) {
        const int32_t i = lx_i32(indices)[j];
        if (i < -n || i >= n)
            return lx_fail(LX_ERR_SHAPE, "take: index %d is out of bounds for axis %lld with size %lld (array of shape %s)",
                           (int)i, (long long)ax, (long long)n, lx_ashp(a));
    }
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < ax; i++) outer *= a->shape[i];
    for (int i = (int)ax + 1; i < a->ndim; i++) inner *= a->shape[i];
    if (out->size)
        take_forward(out->data, a->data, lx_i32(indices), outer, n, indices->size,
                     (size_t)inner * lx_dtype_size(a->dtype));
    return LX_OK;
}

lx_array *lx_take(lx_array *a, lx_array *indices, int64_t axis) {
    const lx_shape_params prm = {.axis = axis};
    return lx_bind(LX_PRIM_TAKE, &prm, 2, (lx_array *const[]){a, indices});
}

static void one_hot_forward(float *out, const int32_t *labels, int64_t n, int64_t classes) {
    memset(out, 0, (size_t)(n * classes) * sizeof *out);
    for (int64_t i = 0; i < n; i++)
        if (labels[i] >= 0 && labels[i] < classes) out[i * classes + labels[i]] = 1.0f;
}

LX_RULE(one_hot) {
    LX_UNUSED_RULE;
    const int64_t num_classes = ((const lx_one_hot_params *)params_)->num_classes;
    const lx_array *labels = in[0];
    if (labels->dtype != LX_I32)
        return lx_fail(LX_ERR_DTYPE, "one_hot: labels must be int32, got %s with shape %s", lx_dtype_name(labels->dtype),
                       lx_ashp(labels));
    if (num_classes < 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "one_hot: num_classes must be non-negative, got %lld",
                       (long long)num_classes);
    if (labels->ndim == LX_MAX_DIMS)
        return lx_fail(LX_ERR_SHAPE, "one_hot: labels of shape %s already have the most dims linnx allows (%d)",
                       lx_ashp(labels), LX_MAX_DIMS);
    lx_aval_like(av, LX_F32, labels);
    av->shape[labels->ndim] = num_classes;
    av->ndim = labels->ndim + 1;
    return LX_OK;
}
LX_FWD(one_hot) {
    LX_UNUSED_FWD;
    const lx_array *labels = in[0];
    one_hot_forward(lx_f32(*outp), lx_i32(labels), labels->size, ((const lx_one_hot_params *)params_)->num_classes);
    return LX_OK;
}

lx_array *lx_one_hot(lx_array *labels, int64_t num_classes) {
    const lx_one_hot_params prm = {num_classes};
    return lx_bind(LX_PRIM_ONE_HOT, &prm, 1, &labels);
}
