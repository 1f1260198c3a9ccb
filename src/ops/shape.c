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
    if (q >= 0) {
        enum { TB = 32 };
        const int64_t nq = sh[q], nouter = rows / nq;
        const int64_t ntiles = nouter * ((nq + TB - 1) / TB) * ((inner + TB - 1) / TB);
        const int64_t tq = (nq + TB - 1) / TB, tl = (inner + TB - 1) / TB;
#pragma omp parallel for schedule(static) num_threads(LX_PAR_THREADS(size > LX_PAR_MIN))
        for (int64_t t = 0; t < ntiles; t++) {
            int64_t r = t / (tq * tl), bq = (t / tl) % tq * TB, bl = t % tl * TB;
            int64_t ooff = 0, ioff = 0;
            for (int d = nd - 2; d >= 0 && r; d--) {
                if (d == q) continue;
                const int64_t k = r % sh[d];
                r /= sh[d];
                ooff += k * os[d];
                ioff += k * is[d];
            }
            const int64_t eq = bq + TB < nq ? bq + TB : nq, el = bl + TB < inner ? bl + TB : inner;
            uint32_t *o = (uint32_t *)out + ooff;
            const uint32_t *src = (const uint32_t *)in + ioff;
            for (int64_t i = bq; i < eq; i++)
                for (int64_t j = bl; j < el; j++) o[i * os[q] + j * os[nd - 1]] = src[i + j * is[nd - 1]];
        }
        return;
    }
    LX_PARALLEL_FOR(r, rows, size > LX_PAR_MIN && rows > 1,
        int64_t ooff = 0, ioff = 0, rem = r;
        for (int d = nd - 2; d >= 0 && rem; d--) {
            const int64_t q = rem % sh[d];
            rem /= sh[d];
            ooff += q * os[d];
            ioff += q * is[d];
        }
        copy_run((char *)out + ooff * (int64_t)elsize, os[nd - 1], (const char *)in + ioff * (int64_t)elsize,
                 is[nd - 1], elsize, inner);
    );
}

/* ---- views: reshape, expand_dims, squeeze ---- */

static lx_array *view_as(const char *op, lx_array *x, int ndim, const int64_t *shape) {
    lx_array *v = lx_autorelease(lx_array_reshape_view(x, ndim, shape));
    if (!v) lx_fail_context(lx_last_status(), "%s: ", op);
    return v;
}

lx_array *lx_reshape(lx_array *x, int ndim, const int64_t *shape) {
    LX_OP_INPUTS("reshape", x);
    if (ndim < 0 || ndim > LX_MAX_DIMS || (ndim > 0 && !shape)) {
        lx_fail(LX_ERR_SHAPE, "reshape: %d dims requested for array of shape %s (at most %d)", ndim, lx_ashp(x),
                LX_MAX_DIMS);
        return NULL;
    }
    int64_t dims[LX_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = shape[i];
        if (shape[i] == -1 && infer < 0) {
            infer = i;
            continue;
        }
        if (shape[i] < 0) {
            lx_fail(LX_ERR_SHAPE, "reshape: %s in shape %s for array of shape %s",
                    shape[i] == -1 ? "can only specify one unknown dimension" : "negative dimension",
                    lx_shp(ndim, shape), lx_ashp(x));
            return NULL;
        }
        if (!lx_mul_ok(known, shape[i], &known)) { /* checked-arithmetic */
            lx_fail(LX_ERR_SHAPE, "reshape: the element count of shape %s overflows int64 (array of shape %s)",
                    lx_shp(ndim, shape), lx_ashp(x));
            return NULL;
        }
    }
    if (infer >= 0) {
        if (known == 0 || x->size % known != 0) {
            lx_fail(LX_ERR_SHAPE, "reshape: cannot reshape array of shape %s (size %lld) into shape %s", lx_ashp(x),
                    (long long)x->size, lx_shp(ndim, shape));
            return NULL;
        }
        dims[infer] = x->size / known;
    } else if (known != x->size) {
        lx_fail(LX_ERR_SHAPE, "reshape: cannot reshape array of shape %s (size %lld) into shape %s", lx_ashp(x),
                (long long)x->size, lx_shp(ndim, shape));
        return NULL;
    }
    lx_array *out = view_as("reshape", x, ndim, dims);
    if (!out) return NULL;
    const lx_kwarg attrs[] = {LX_KW("shape", lx_ints_v(ndim, dims))};
    lx_shape_params prm = {.ndim = ndim};
    memcpy(prm.dims, dims, sizeof(int64_t) * (size_t)ndim);
    lx_prim_record(LX_PRIM_RESHAPE, &prm, 1, (lx_array *const[]){x}, out, 1, attrs);
    return out;
}

lx_array *lx_expand_dims(lx_array *x, int64_t axis) {
    LX_OP_INPUTS("expand_dims", x);
    if (x->ndim == LX_MAX_DIMS) {
        lx_fail(LX_ERR_SHAPE, "expand_dims: array of shape %s already has the most dims linnx allows (%d)",
                lx_ashp(x), LX_MAX_DIMS);
        return NULL;
    }
    int64_t a;
    if (lx_norm_axis("expand_dims", axis, x->ndim + 1, &a) != LX_OK) return NULL;
    int64_t dims[LX_MAX_DIMS];
    for (int i = 0, k = 0; i <= x->ndim; i++) dims[i] = i == a ? 1 : x->shape[k++];
    lx_array *out = view_as("expand_dims", x, x->ndim + 1, dims);
    if (!out) return NULL;
    const lx_kwarg attrs[] = {LX_KW_INT("axis", a)};
    const lx_shape_params prm = {.axis = a};
    lx_prim_record(LX_PRIM_EXPAND_DIMS, &prm, 1, (lx_array *const[]){x}, out, 1, attrs);
    return out;
}

lx_array *lx_squeeze(lx_array *x, int naxes, const int64_t *axes) {
    LX_OP_INPUTS("squeeze", x);
    bool drop[LX_MAX_DIMS] = {false};
    if (!axes) {
        for (int i = 0; i < x->ndim; i++) drop[i] = x->shape[i] == 1;
    } else {
        if (naxes < 0 || naxes > LX_MAX_DIMS) {
            lx_fail(LX_ERR_SHAPE, "squeeze: %d axes given for array of shape %s", naxes, lx_ashp(x));
            return NULL;
        }
        for (int i = 0; i < naxes; i++) {
            int64_t a;
            if (lx_norm_axis("squeeze", axes[i], x->ndim, &a) != LX_OK) return NULL;
            if (drop[a]) {
                lx_fail(LX_ERR_SHAPE, "squeeze: duplicate value in 'axis' %s for array of shape %s",
                        lx_shp(naxes, axes), lx_ashp(x));
                return NULL;
            }
            if (x->shape[a] != 1) {
                lx_fail(LX_ERR_SHAPE,
                        "squeeze: cannot select an axis to squeeze out which has size not equal to one "
                        "(axis %lld of shape %s)",
                        (long long)axes[i], lx_ashp(x));
                return NULL;
            }
            drop[a] = true;
        }
    }
    int64_t dims[LX_MAX_DIMS], dropped[LX_MAX_DIMS];
    int nd = 0, nk = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (drop[i]) dropped[nk++] = i;
        else dims[nd++] = x->shape[i];
    }
    lx_array *out = view_as("squeeze", x, nd, dims);
    if (!out) return NULL;
    const lx_kwarg attrs[] = {LX_KW("axes", lx_ints_v(nk, dropped))};
    lx_shape_params prm = {.ndim = nk};
    memcpy(prm.dims, dropped, sizeof(int64_t) * (size_t)nk);
    lx_prim_record(LX_PRIM_SQUEEZE, &prm, 1, (lx_array *const[]){x}, out, 1, attrs);
    return out;
}

/* ---- transpose ---- */

lx_array *lx_transpose(lx_array *x, int nperm, const int64_t *perm) {
    LX_OP_INPUTS("transpose", x);
    int64_t p[LX_MAX_DIMS];
    if (!perm) {
        for (int i = 0; i < x->ndim; i++) p[i] = x->ndim - 1 - i;
    } else {
        if (nperm != x->ndim) {
            lx_fail(LX_ERR_SHAPE, "transpose: axes %s don't match array of shape %s", lx_shp(nperm, perm),
                    lx_ashp(x));
            return NULL;
        }
        bool seen[LX_MAX_DIMS] = {false};
        for (int i = 0; i < nperm; i++) {
            if (lx_norm_axis("transpose", perm[i], x->ndim, &p[i]) != LX_OK) return NULL;
            if (seen[p[i]]) {
                lx_fail(LX_ERR_SHAPE, "transpose: repeated axis in axes %s for array of shape %s",
                        lx_shp(nperm, perm), lx_ashp(x));
                return NULL;
            }
            seen[p[i]] = true;
        }
    }
    int64_t shape[LX_MAX_DIMS], xs[LX_MAX_DIMS], is[LX_MAX_DIMS];
    lx_contiguous_strides(x->ndim, x->shape, xs);
    for (int i = 0; i < x->ndim; i++) {
        shape[i] = x->shape[p[i]];
        is[i] = xs[p[i]];
    }
    lx_array *out = lx_op_result(x->dtype, x->ndim, shape, lx_is_abstract(x));
    if (!out) return NULL;
    if (!lx_is_abstract(x)) lx_strided_copy(out->data, NULL, x->data, is, lx_dtype_size(x->dtype), x->ndim, shape);
    const lx_kwarg attrs[] = {LX_KW("permutation", lx_ints_v(x->ndim, p))};
    lx_shape_params prm = {.ndim = x->ndim};
    memcpy(prm.dims, p, sizeof(int64_t) * (size_t)x->ndim);
    lx_prim_record(LX_PRIM_TRANSPOSE, &prm, 1, (lx_array *const[]){x}, out, 1, attrs);
    return out;
}

/* ---- broadcast_to ---- */

static void copy_row_forward(void *out, const void *const *in, const int64_t *step, int64_t n, const void *ctx) {
    const size_t es = *(const size_t *)ctx;
    copy_run(out, 1, in[0], step[0], es, n);
}

lx_array *lx_broadcast_to(lx_array *x, int ndim, const int64_t *shape) {
    LX_OP_INPUTS("broadcast_to", x);
    bool ok = ndim >= x->ndim && ndim <= LX_MAX_DIMS && (ndim == 0 || shape);
    for (int i = 0; ok && i < ndim; i++) {
        int j = i - (ndim - x->ndim);
        if (shape[i] < 0 || (j >= 0 && x->shape[j] != 1 && x->shape[j] != shape[i])) ok = false;
    }
    if (!ok) {
        lx_fail(LX_ERR_SHAPE, "broadcast_to: incompatible shapes for broadcasting: %s and requested shape %s",
                lx_ashp(x), shape ? lx_shp(ndim, shape) : "None");
        return NULL;
    }
    lx_array *out = lx_op_result(x->dtype, ndim, shape, lx_is_abstract(x));
    if (!out) return NULL;
    if (!lx_is_abstract(x)) {
        lx_bcast bc;
        const int64_t *shapes[] = {x->shape};
        lx_bcast_plan(&bc, 1, &x->ndim, shapes, ndim, shape);
        const size_t es = lx_dtype_size(x->dtype);
        lx_bcast_run(&bc, out->data, es, (const void *const[]){x->data}, &es, copy_row_forward, &es);
    }
    const lx_kwarg attrs[] = {LX_KW("shape", lx_ints_v(ndim, out->shape))};
    lx_shape_params prm = {.ndim = ndim};
    memcpy(prm.dims, out->shape, sizeof(int64_t) * (size_t)ndim);
    lx_prim_record(LX_PRIM_BROADCAST_TO, &prm, 1, (lx_array *const[]){x}, out, 1, attrs);
    return out;
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

/* The strided view of x given per-axis start/step/len, copied into a new pool-owned array. */
static lx_array *gather_strided(const lx_array *x, const int64_t *start, const int64_t *step, const int64_t *len) {
    lx_array *out = lx_op_result(x->dtype, x->ndim, len, lx_is_abstract(x));
    if (!out || lx_is_abstract(x) || out->size == 0) return out;
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
    return out;
}

lx_array *lx_slice(lx_array *x, int nranges, const lx_range *ranges) {
    LX_OP_INPUTS("slice", x);
    if (nranges < 0 || nranges > x->ndim || (nranges > 0 && !ranges)) {
        lx_fail(LX_ERR_SHAPE, "slice: too many indices for array: array of shape %s is %d-dimensional, but %d were indexed",
                lx_ashp(x), x->ndim, nranges);
        return NULL;
    }
    int64_t start[LX_MAX_DIMS], stop[LX_MAX_DIMS], step[LX_MAX_DIMS], len[LX_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        lx_range r = i < nranges ? ranges[i] : LX_RANGE_ALL;
        if (r.step == 0) {
            lx_fail(LX_ERR_INVALID_ARGUMENT, "slice: slice step cannot be zero (axis %d of shape %s)", i, lx_ashp(x));
            return NULL;
        }
        range_indices(r, x->shape[i], &start[i], &stop[i], &step[i], &len[i]);
    }
    lx_array *out = gather_strided(x, start, step, len);
    if (!out) return NULL;
    const lx_kwarg attrs[] = {LX_KW("start", lx_ints_v(x->ndim, start)), LX_KW("stop", lx_ints_v(x->ndim, stop)),
                              LX_KW("step", lx_ints_v(x->ndim, step))};
    lx_slice_params prm = {.ndim = x->ndim};
    for (int i = 0; i < x->ndim; i++) prm.start[i] = start[i], prm.step[i] = step[i], prm.len[i] = len[i];
    lx_prim_record(LX_PRIM_SLICE, &prm, 1, (lx_array *const[]){x}, out, 3, attrs);
    return out;
}

/* ---- concatenate, stack ---- */

/* Common checks of a list of arrays: non-empty, no NULL (a failed input), one dtype. */
static bool check_list(const char *op, int n, lx_array *const *xs, bool *abstract) {
    if (n > 0 && !xs) {
        lx_op_null_input(op);
        return false;
    }
    for (int k = 0; k < n; k++)
        if (!xs[k]) {
            lx_op_null_input(op);
            return false;
        }
    if (n <= 0) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: need at least one array to %s", op,
                strcmp(op, "stack") == 0 ? "stack" : "concatenate");
        return false;
    }
    *abstract = false;
    for (int k = 0; k < n; k++) {
        if (xs[k]->dtype != xs[0]->dtype) {
            lx_fail(LX_ERR_DTYPE, "%s: arrays have different dtypes: %s %s at index 0 and %s %s at index %d", op,
                    lx_dtype_name(xs[0]->dtype), lx_ashp(xs[0]), lx_dtype_name(xs[k]->dtype), lx_ashp(xs[k]), k);
            return false;
        }
        *abstract |= lx_is_abstract(xs[k]);
    }
    return true;
}

lx_array *lx_concatenate(int n, lx_array *const *xs, int64_t axis) {
    bool abstract;
    if (!check_list("concatenate", n, xs, &abstract)) return NULL;
    const lx_array *x0 = xs[0];
    if (x0->ndim == 0) {
        lx_fail(LX_ERR_SHAPE, "concatenate: zero-dimensional arrays cannot be concatenated");
        return NULL;
    }
    int64_t a;
    if (lx_norm_axis("concatenate", axis, x0->ndim, &a) != LX_OK) return NULL;
    int64_t shape[LX_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[a] = 0;
    for (int k = 0; k < n; k++) {
        const lx_array *x = xs[k];
        if (x->ndim != x0->ndim) {
            lx_fail(LX_ERR_SHAPE,
                    "concatenate: all the input arrays must have same number of dimensions, but the array at "
                    "index 0 has shape %s and the array at index %d has shape %s",
                    lx_ashp(x0), k, lx_ashp(x));
            return NULL;
        }
        for (int i = 0; i < x->ndim; i++)
            if (i != a && x->shape[i] != x0->shape[i]) {
                lx_fail(LX_ERR_SHAPE,
                        "concatenate: all the input array dimensions except for the concatenation axis must "
                        "match exactly, but along dimension %d, the array at index 0 has shape %s and the "
                        "array at index %d has shape %s",
                        i, lx_ashp(x0), k, lx_ashp(x));
                return NULL;
            }
        shape[a] += x->shape[a];
    }
    lx_array *out = lx_op_result(x0->dtype, x0->ndim, shape, abstract);
    if (!out) return NULL;
    if (!abstract && out->size) {
        const size_t es = lx_dtype_size(x0->dtype);
        int64_t outer = 1, inner = 1;
        for (int i = 0; i < a; i++) outer *= shape[i];
        for (int i = (int)a + 1; i < x0->ndim; i++) inner *= shape[i];
        char *dst = out->data;
        for (int64_t o = 0; o < outer; o++)
            for (int k = 0; k < n; k++) {
                const size_t chunk = (size_t)(xs[k]->shape[a] * inner) * es;
                memcpy(dst, (const char *)xs[k]->data + (size_t)o * chunk, chunk);
                dst += chunk;
            }
    }
    const lx_kwarg attrs[] = {LX_KW_INT("axis", a)};
    const lx_shape_params prm = {.axis = a};
    lx_prim_record(LX_PRIM_CONCATENATE, &prm, n, xs, out, 1, attrs);
    return out;
}

lx_array *lx_stack(int n, lx_array *const *xs, int64_t axis) {
    bool abstract;
    if (!check_list("stack", n, xs, &abstract)) return NULL;
    const lx_array *x0 = xs[0];
    for (int k = 1; k < n; k++)
        if (!lx_same_shape(xs[k], x0)) {
            lx_fail(LX_ERR_SHAPE, "stack: all input arrays must have the same shape, but the array at index 0 has "
                    "shape %s and the array at index %d has shape %s",
                    lx_ashp(x0), k, lx_ashp(xs[k]));
            return NULL;
        }
    if (x0->ndim == LX_MAX_DIMS) {
        lx_fail(LX_ERR_SHAPE, "stack: arrays of shape %s already have the most dims linnx allows (%d)", lx_ashp(x0),
                LX_MAX_DIMS);
        return NULL;
    }
    int64_t a;
    if (lx_norm_axis("stack", axis, x0->ndim + 1, &a) != LX_OK) return NULL;
    int64_t shape[LX_MAX_DIMS];
    for (int i = 0, j = 0; i <= x0->ndim; i++) shape[i] = i == a ? n : x0->shape[j++];
    lx_array *out = lx_op_result(x0->dtype, x0->ndim + 1, shape, abstract);
    if (!out) return NULL;
    if (!abstract && out->size) {
        const size_t es = lx_dtype_size(x0->dtype);
        int64_t outer = 1;
        for (int i = 0; i < a; i++) outer *= x0->shape[i];
        const size_t chunk = (size_t)(x0->size / outer) * es;
        char *dst = out->data;
        for (int64_t o = 0; o < outer; o++)
            for (int k = 0; k < n; k++) {
                memcpy(dst, (const char *)xs[k]->data + (size_t)o * chunk, chunk);
                dst += chunk;
            }
    }
    const lx_kwarg attrs[] = {LX_KW_INT("axis", a)};
    const lx_shape_params prm = {.axis = a};
    lx_prim_record(LX_PRIM_STACK, &prm, n, xs, out, 1, attrs);
    return out;
}

/* ---- split ---- */

static lx_status split_pieces(lx_array *x, int64_t axis, int npieces, const int64_t *bounds, lx_array **outs) {
    int64_t start[LX_MAX_DIMS] = {0}, step[LX_MAX_DIMS], len[LX_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        step[i] = 1;
        len[i] = x->shape[i];
    }
    for (int k = 0; k < npieces; k++) {
        /* Python slice semantics for each piece x[bounds[k]:bounds[k+1]] along axis. */
        int64_t b, e, st, n;
        range_indices(LX_RANGE(bounds[k], bounds[k + 1]), x->shape[axis], &b, &e, &st, &n);
        start[axis] = b;
        len[axis] = n;
        outs[k] = gather_strided(x, start, step, len);
        if (!outs[k]) {
            for (int q = 0; q < npieces; q++) outs[q] = NULL;
            return lx_last_status();
        }
        const lx_kwarg attrs[] = {LX_KW_INT("axis", axis), LX_KW_INT("start", b), LX_KW_INT("stop", b + n),
                                  LX_KW_INT("index", k)};
        const lx_split_params prm = {axis, b, b + n, k};
        lx_prim_record(LX_PRIM_SPLIT, &prm, 1, (lx_array *const[]){x}, outs[k], 4, attrs);
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

lx_array *lx_pad(lx_array *x, const int64_t *before, const int64_t *after, float value) {
    LX_OP_INPUTS("pad", x);
    if (x->ndim > 0 && (!before || !after)) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "pad: before/after widths are NULL for array of shape %s", lx_ashp(x));
        return NULL;
    }
    int64_t shape[LX_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        if (before[i] < 0 || after[i] < 0) {
            lx_fail(LX_ERR_INVALID_ARGUMENT, "pad: negative pad width (%lld, %lld) at axis %d of shape %s",
                    (long long)before[i], (long long)after[i], i, lx_ashp(x));
            return NULL;
        }
        if (!lx_add_ok(x->shape[i], before[i], &shape[i]) || !lx_add_ok(shape[i], after[i], &shape[i])) {
            lx_fail(LX_ERR_SHAPE, "pad: pad widths (%lld, %lld) at axis %d of shape %s overflow int64",
                    (long long)before[i], (long long)after[i], i, lx_ashp(x));
            return NULL;
        }
    }
    lx_array *out = lx_op_result(x->dtype, x->ndim, shape, lx_is_abstract(x));
    if (!out) return NULL;
    if (!lx_is_abstract(x)) {
        unsigned char v[8];
        lx_scalar_to_dtype(value, x->dtype, v); /* by the rules of lx_cast */
        const size_t es = lx_dtype_size(x->dtype);
        fill_forward(out->data, v, es, out->size);
        int64_t os[LX_MAX_DIMS], xs[LX_MAX_DIMS], off = 0;
        lx_contiguous_strides(x->ndim, shape, os);
        lx_contiguous_strides(x->ndim, x->shape, xs);
        for (int i = 0; i < x->ndim; i++) off += before[i] * os[i];
        lx_strided_copy((char *)out->data + off * (int64_t)es, os, x->data, xs, es, x->ndim, x->shape);
    }
    const lx_kwarg attrs[] = {LX_KW("before", lx_ints_v(x->ndim, before)),
                              LX_KW("after", lx_ints_v(x->ndim, after)), LX_KW_FLOAT("value", value)};
    lx_pad_params prm = {.ndim = x->ndim, .value = value};
    for (int i = 0; i < x->ndim; i++) prm.before[i] = before[i], prm.after[i] = after[i];
    lx_prim_record(LX_PRIM_PAD, &prm, 1, (lx_array *const[]){x}, out, 3, attrs);
    return out;
}

/* ---- take, one_hot ---- */

static void take_forward(char *out, const char *a, const int32_t *idx, int64_t outer, int64_t n, int64_t m,
                         size_t row_bytes) {
    const int64_t total = outer * m;
#pragma omp parallel for schedule(static) num_threads(LX_PAR_THREADS(total * (int64_t)row_bytes > 4 * LX_PAR_MIN))
    for (int64_t t = 0; t < total; t++) {
        const int64_t o = t / m, j = t % m;
        const int64_t i = idx[j] < 0 ? idx[j] + n : idx[j];
        memcpy(out + (size_t)t * row_bytes, a + (size_t)(o * n + i) * row_bytes, row_bytes);
    }
}

lx_array *lx_take(lx_array *a, lx_array *indices, int64_t axis) {
    LX_OP_INPUTS("take", a, indices);
    if (indices->dtype != LX_I32) {
        lx_fail(LX_ERR_DTYPE, "take: indices must be int32, got %s with shape %s", lx_dtype_name(indices->dtype),
                lx_ashp(indices));
        return NULL;
    }
    int64_t ax;
    if (lx_norm_axis("take", axis, a->ndim, &ax) != LX_OK) return NULL;
    const int nd = a->ndim - 1 + indices->ndim;
    if (nd > LX_MAX_DIMS) {
        lx_fail(LX_ERR_SHAPE, "take: result of array %s and indices %s would have %d dims (at most %d)", lx_ashp(a),
                lx_ashp(indices), nd, LX_MAX_DIMS);
        return NULL;
    }
    const int64_t n = a->shape[ax];
    if (!lx_is_abstract(indices))
        for (int64_t j = 0; j < indices->size; j++) {
            const int32_t i = lx_i32(indices)[j];
            if (i < -n || i >= n) {
                lx_fail(LX_ERR_SHAPE, "take: index %d is out of bounds for axis %lld with size %lld (array of shape %s)",
                        (int)i, (long long)ax, (long long)n, lx_ashp(a));
                return NULL;
            }
        }
    int64_t shape[LX_MAX_DIMS], outer = 1, inner = 1;
    int k = 0;
    for (int i = 0; i < ax; i++) shape[k++] = a->shape[i], outer *= a->shape[i];
    for (int i = 0; i < indices->ndim; i++) shape[k++] = indices->shape[i];
    for (int i = (int)ax + 1; i < a->ndim; i++) shape[k++] = a->shape[i], inner *= a->shape[i];
    const bool abstract = lx_is_abstract(a) || lx_is_abstract(indices);
    lx_array *out = lx_op_result(a->dtype, nd, shape, abstract);
    if (!out) return NULL;
    if (!abstract && out->size)
        take_forward(out->data, a->data, lx_i32(indices), outer, n, indices->size,
                     (size_t)inner * lx_dtype_size(a->dtype));
    const lx_kwarg attrs[] = {LX_KW_INT("axis", ax)};
    const lx_shape_params prm = {.axis = ax};
    lx_prim_record(LX_PRIM_TAKE, &prm, 2, (lx_array *const[]){a, indices}, out, 1, attrs);
    return out;
}

static void one_hot_forward(float *out, const int32_t *labels, int64_t n, int64_t classes) {
    memset(out, 0, (size_t)(n * classes) * sizeof *out);
    for (int64_t i = 0; i < n; i++)
        if (labels[i] >= 0 && labels[i] < classes) out[i * classes + labels[i]] = 1.0f;
}

lx_array *lx_one_hot(lx_array *labels, int64_t num_classes) {
    LX_OP_INPUTS("one_hot", labels);
    if (labels->dtype != LX_I32) {
        lx_fail(LX_ERR_DTYPE, "one_hot: labels must be int32, got %s with shape %s", lx_dtype_name(labels->dtype),
                lx_ashp(labels));
        return NULL;
    }
    if (num_classes < 0) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "one_hot: num_classes must be non-negative, got %lld",
                (long long)num_classes);
        return NULL;
    }
    if (labels->ndim == LX_MAX_DIMS) {
        lx_fail(LX_ERR_SHAPE, "one_hot: labels of shape %s already have the most dims linnx allows (%d)",
                lx_ashp(labels), LX_MAX_DIMS);
        return NULL;
    }
    int64_t shape[LX_MAX_DIMS];
    memcpy(shape, labels->shape, sizeof shape);
    shape[labels->ndim] = num_classes;
    lx_array *out = lx_op_result(LX_F32, labels->ndim + 1, shape, lx_is_abstract(labels));
    if (!out) return NULL;
    if (!lx_is_abstract(labels)) one_hot_forward(lx_f32(out), lx_i32(labels), labels->size, num_classes);
    const lx_kwarg attrs[] = {LX_KW_INT("num_classes", num_classes)};
    const lx_one_hot_params prm = {num_classes};
    lx_prim_record(LX_PRIM_ONE_HOT, &prm, 1, (lx_array *const[]){labels}, out, 1, attrs);
    return out;
}
