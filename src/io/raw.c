/* Foreign arrays (lx_raw) and the dtype table every format shares. */
#include <stdlib.h>
#include <string.h>

#include "io_internal.h"
#include "linnx/box.h"
#include "linnx/variable.h"

/* st_rank follows the reference safetensors writer: it sorts tensors by its Dtype enum,
 * descending, so 8-byte types come first and every tensor stays aligned to its element size. */
static const io_dtype DTYPES[] = {
    {"bool", "BOOL", 8, LX_BOOL, 0},
    {"float4_e2m1fn", "F4", 4, -1, 1},
    {"float6_e2m3fn", "F6_E2M3", 6, -1, 2},
    {"float6_e3m2fn", "F6_E3M2", 6, -1, 3},
    {"uint8", "U8", 8, -1, 4},
    {"int8", "I8", 8, LX_I8, 5},
    {"float8_e5m2", "F8_E5M2", 8, -1, 6},
    {"float8_e4m3fn", "F8_E4M3", 8, -1, 7},
    {"float8_e8m0fnu", "F8_E8M0", 8, -1, 8},
    {"float8_e4m3fnuz", "F8_E4M3FNUZ", 8, -1, 9},
    {"float8_e5m2fnuz", "F8_E5M2FNUZ", 8, -1, 10},
    {"int16", "I16", 16, -1, 11},
    {"uint16", "U16", 16, -1, 12},
    {"float16", "F16", 16, -1, 13},
    {"bfloat16", "BF16", 16, LX_BF16, 14},
    {"int32", "I32", 32, LX_I32, 15},
    {"uint32", "U32", 32, LX_U32, 16},
    {"float32", "F32", 32, LX_F32, 17},
    {"complex64", "C64", 64, -1, 18},
    {"float64", "F64", 64, -1, 19},
    {"int64", "I64", 64, -1, 20},
    {"uint64", "U64", 64, -1, 21},
    {"complex128", NULL, 128, -1, 22},
};
#define NDTYPES (sizeof DTYPES / sizeof DTYPES[0])

static int name_is(const char *a, const char *b, size_t len) { return strlen(a) == len && !memcmp(a, b, len); }

const io_dtype *io_dtype_by_numpy(const char *name, size_t len) {
    for (size_t i = 0; i < NDTYPES; i++)
        if (name_is(DTYPES[i].numpy, name, len)) return &DTYPES[i];
    return NULL;
}

const io_dtype *io_dtype_by_st(const char *name, size_t len) {
    for (size_t i = 0; i < NDTYPES; i++)
        if (DTYPES[i].st && name_is(DTYPES[i].st, name, len)) return &DTYPES[i];
    return NULL;
}

const io_dtype *io_dtype_by_lx(lx_dtype d) {
    for (size_t i = 0; i < NDTYPES; i++)
        if (DTYPES[i].lx == (int)d) return &DTYPES[i];
    return NULL;
}

int lx_ckpt_dtype_bits(const char *numpy_name) {
    const io_dtype *d = numpy_name ? io_dtype_by_numpy(numpy_name, strlen(numpy_name)) : NULL;
    return d ? d->bits : 0;
}

lx_status io_shape_size(int ndim, const int64_t *shape, int64_t *size) {
    if (ndim < 0 || ndim > LX_MAX_DIMS)
        return lx_fail(LX_ERR_FORMAT, "rank %d is outside 0..%d", ndim, LX_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return lx_fail(LX_ERR_FORMAT, "negative dimension %lld", (long long)shape[i]);
        if (shape[i] > 0 && n > (INT64_MAX / 16) / shape[i]) return lx_fail(LX_ERR_FORMAT, "shape too large");
        n *= shape[i];
    }
    *size = n;
    return LX_OK;
}

int io_nbytes(int64_t size, int bits, uint64_t *out) {
    if (size < 0 || bits <= 0) return 0;
    if ((uint64_t)size > UINT64_MAX / 128) return 0;
    *out = ((uint64_t)size * (uint64_t)bits + 7) / 8;
    return 1;
}

static void raw_retain_ptr(void *p) { lx_raw_retain(p); }
static void raw_release_ptr(void *p) { lx_raw_release(p); }

lx_status lx_raw_new(lx_raw_kind kind, const char *dtype, int ndim, const int64_t *shape, const void *data,
                     size_t nbytes, lx_raw **out) {
    LX_TRY(lx_ptr_register(LX_RAW_TAG, raw_retain_ptr, raw_release_ptr));
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "raw array: out is NULL");
    if (ndim > 0 && !shape) return lx_fail(LX_ERR_INVALID_ARGUMENT, "raw array: shape is NULL");
    /* a caller's shape (io_shape_size's FORMAT is for shapes read from a file) */
    if (ndim < 0 || ndim > LX_MAX_DIMS) return lx_fail(LX_ERR_SHAPE, "raw array: rank %d is outside 0..%d", ndim, LX_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return lx_fail(LX_ERR_SHAPE, "raw array: negative dimension %lld", (long long)shape[i]);
    const io_dtype *d = dtype ? io_dtype_by_numpy(dtype, strlen(dtype)) : NULL;
    if (kind == LX_RAW_BYTES) {
        if (ndim != 1 || (uint64_t)shape[0] != nbytes)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "raw bytes: shape must be (nbytes,)");
    } else if (!d) {
        return lx_fail(LX_ERR_DTYPE, "raw array: unknown dtype '%s'", dtype ? dtype : "(null)");
    }
    int64_t size = 0;
    LX_TRY(io_shape_size(ndim, shape, &size));
    uint64_t want = size;
    if (d && !io_nbytes(size, d->bits, &want)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "raw array: too large");
    if (want != nbytes)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "raw array: %zu bytes for %lld elements of %s (want %llu)",
                       nbytes, (long long)size, dtype, (unsigned long long)want);
    if (nbytes > 0 && !data) return lx_fail(LX_ERR_INVALID_ARGUMENT, "raw array: data is NULL");
    lx_raw *r = calloc(1, sizeof *r);
    unsigned char *copy = malloc(nbytes ? nbytes : 1);
    if (!r || !copy) {
        free(r);
        free(copy);
        return lx_fail(LX_ERR_NO_MEMORY, "raw array: cannot allocate %zu bytes", nbytes);
    }
    if (nbytes) memcpy(copy, data, nbytes);
    r->refcount = 1;
    r->kind = kind;
    snprintf(r->dtype, sizeof r->dtype, "%s", kind == LX_RAW_BYTES ? "bytes" : d->numpy);
    r->ndim = ndim;
    for (int i = 0; i < ndim; i++) r->shape[i] = shape[i];
    r->size = size;
    r->nbytes = nbytes;
    r->data = copy;
    *out = r;
    return LX_OK;
}

lx_raw *lx_raw_retain(lx_raw *r) {
    if (r) r->refcount++;
    return r;
}

void lx_raw_release(lx_raw *r) {
    if (!r || --r->refcount > 0) return;
    free(r->data);
    free(r);
}

lx_raw *lx_value_raw(const lx_value *v) {
    if (!v || v->kind != LX_V_PTR || !v->u.ptr.tag || strcmp(v->u.ptr.tag, LX_RAW_TAG) != 0) return NULL;
    return v->u.ptr.p;
}

lx_status lx_raw_to_array(const lx_raw *r, lx_array **out) {
    if (!r || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "raw_to_array: %s is NULL", r ? "out" : "the raw array");
    const io_dtype *d = r->kind == LX_RAW_BYTES ? NULL : io_dtype_by_numpy(r->dtype, strlen(r->dtype));
    if (!d || d->lx < 0)
        return lx_fail(LX_ERR_DTYPE, "dtype %s is not one linnx computes with (float32, int32, uint32, bool, bfloat16)",
                       r->dtype);
    lx_array *a = lx_array_from_data((lx_dtype)d->lx, r->ndim, r->shape, r->data);
    if (!a) return lx_last_status();
    *out = a;
    return LX_OK;
}

lx_array *io_leaf_array(const lx_value *v) {
    switch (v->kind) {
    case LX_V_ARRAY: return v->u.array;
    case LX_V_VARIABLE: return lx_variable_get_value(v->u.var);
    case LX_V_BOX: return lx_box_unbox(v->u.box);
    default: return NULL;
    }
}

int io_buf_put(io_buf *b, const void *data, size_t n) {
    if (b->failed) return -1;
    if (n > SIZE_MAX - b->len) {
        b->failed = 1;
        return -1;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

char *io_join_path(const char *path, const char *sep) {
    size_t n = 0, seps = 0, sl = strlen(sep);
    for (const char *p = path; *p; p++) {
        n++;
        if (*p == '/') seps++;
    }
    char *out = malloc(n + seps * sl + 1);
    if (!out) return NULL;
    char *o = out;
    for (const char *p = path; *p; p++) {
        if (*p == '/') {
            memcpy(o, sep, sl);
            o += sl;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
    return out;
}
