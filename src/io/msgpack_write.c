/* Flax msgpack, writing: flax.serialization.to_bytes byte for byte.
 *
 * msgpack-c's packer (Debian libmsgpack-dev) emits the smallest form of every int, str, bin, map
 * and ext header exactly as msgpack-python does, so the bytes equal Flax's for the same state dict
 * in the same key order (to_bytes packs the tree in place, in its own order: spec/checkpoints.md
 * §C.1). The packer writes through a callback, so array bodies go straight from the array to the
 * output without an intermediate copy. */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "io_internal.h"
#include "linnx/box.h"
#include "linnx/variable.h"
#include "../core/status_internal.h"

#define FLAX_MAX_CHUNK ((size_t)1 << 30)

typedef struct wctx {
    msgpack_packer pk;
    size_t max_chunk;
    char path[1024];
} wctx;

/* A leaf array in the form every source gives: the dtype's numpy name, element bits, shape,
 * bytes. */
typedef struct leaf_view {
    const char *dtype;
    int bits;
    int ndim;
    const int64_t *shape;
    const unsigned char *data;
    size_t nbytes;
    int ext; /* 1 ndarray, 3 numpy scalar */
} leaf_view;

static int buf_put_cb(void *b, const char *data, size_t len) { return io_buf_put(b, data, len); }

static int pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static lx_status io_error(wctx *w) {
    return lx_fail(LX_ERR_IO, "msgpack: write failed at %s", w->path[0] ? w->path : ".");
}

/* The ext payload of an array: [shape, dtype name, bin], packed separately as Flax does
 * (msgpack.packb((shape, dtype.name, bytes))); the bin body is written from the array itself. */
static lx_status pack_array_ext(wctx *w, const leaf_view *a, int ndim, const int64_t *shape,
                                const unsigned char *data, size_t nbytes) {
    if (nbytes > UINT32_MAX - 1024)
        return lx_fail(LX_ERR_UNSUPPORTED, "msgpack: the array at %s has %zu bytes; msgpack's ext and bin lengths stop at "
                       "2^32-1 (lower max_chunk_bytes)", w->path[0] ? w->path : ".", nbytes);
    /* The prefix up to the bin body: array(3), shape, dtype str, bin header. */
    io_buf b = {0};
    msgpack_packer pp;
    msgpack_packer_init(&pp, &b, buf_put_cb);
    int bad = msgpack_pack_array(&pp, 3) || msgpack_pack_array(&pp, (size_t)ndim);
    for (int i = 0; i < ndim && !bad; i++) bad = msgpack_pack_uint64(&pp, (uint64_t)shape[i]);
    bad = bad || pack_str(&pp, a->dtype) || msgpack_pack_bin(&pp, nbytes);
    if (bad || b.failed) {
        free(b.p);
        return lx_fail(LX_ERR_NO_MEMORY, "msgpack: out of memory");
    }
    bad = msgpack_pack_ext(&w->pk, b.len + nbytes, (int8_t)a->ext) ||
          msgpack_pack_ext_body(&w->pk, b.p, b.len) || (nbytes && msgpack_pack_ext_body(&w->pk, data, nbytes));
    free(b.p);
    return bad ? io_error(w) : LX_OK;
}

/* Flax's _chunk: {"__msgpack_chunked_array__": True, "shape": {"0": d0, ..}, "chunks": {"0": a0, ..}},
 * pieces of floor(max_chunk / itemsize) elements of the C-order flattening. */
static lx_status pack_chunked(wctx *w, const leaf_view *a) {
    size_t item = (size_t)a->bits / 8;
    size_t per = w->max_chunk / item;
    if (per < 1) per = 1;
    size_t total = a->nbytes / item, nchunks = (total + per - 1) / per;
    char key[32];
    int bad = msgpack_pack_map(&w->pk, 3) || pack_str(&w->pk, "__msgpack_chunked_array__") ||
              msgpack_pack_true(&w->pk) || pack_str(&w->pk, "shape") || msgpack_pack_map(&w->pk, (size_t)a->ndim);
    for (int i = 0; i < a->ndim && !bad; i++) {
        snprintf(key, sizeof key, "%d", i);
        bad = pack_str(&w->pk, key) || msgpack_pack_uint64(&w->pk, (uint64_t)a->shape[i]);
    }
    bad = bad || pack_str(&w->pk, "chunks") || msgpack_pack_map(&w->pk, nchunks);
    if (bad) return io_error(w);
    for (size_t c = 0; c < nchunks; c++) {
        size_t n = c + 1 < nchunks ? per : total - c * per;
        int64_t dim = (int64_t)n;
        snprintf(key, sizeof key, "%zu", c);
        if (pack_str(&w->pk, key)) return io_error(w);
        LX_TRY(pack_array_ext(w, a, 1, &dim, a->data + c * per * item, n * item));
    }
    return LX_OK;
}

static lx_status pack_leaf_array(wctx *w, const leaf_view *a, bool chunkable) {
    if (a->bits % 8)
        return lx_fail(LX_ERR_UNSUPPORTED, "msgpack: %s at %s has %d-bit elements; numpy stores it unpacked",
                       a->dtype, w->path[0] ? w->path : ".", a->bits);
    if (chunkable && a->ext == 1 && a->nbytes > w->max_chunk) return pack_chunked(w, a);
    return pack_array_ext(w, a, a->ndim, a->shape, a->data, a->nbytes);
}

static lx_status pack_value(wctx *w, const lx_value *v, bool chunkable);

static lx_status pack_tree(wctx *w, const lx_tree *t) {
    size_t n = lx_tree_len(t), plen = strlen(w->path);
    if (msgpack_pack_map(&w->pk, n)) return io_error(w);
    for (size_t i = 0; i < n; i++) {
        const char *k = lx_tree_key(t, i);
        snprintf(w->path + plen, sizeof w->path - plen, "%s%s", plen ? "/" : "", k);
        if (pack_str(&w->pk, k)) return io_error(w);
        LX_TRY(pack_value(w, lx_tree_at(t, i), true));
    }
    w->path[plen] = 0;
    return LX_OK;
}

static lx_status pack_lx_array(wctx *w, const lx_array *a, bool chunkable) {
    if (lx_is_abstract(a))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "msgpack: the array at %s is abstract (no data)",
                       w->path[0] ? w->path : ".");
    leaf_view lv = {lx_dtype_name(a->dtype), (int)lx_dtype_size(a->dtype) * 8, a->ndim, a->shape, a->data,
                    lx_array_nbytes(a), 1};
    return pack_leaf_array(w, &lv, chunkable);
}

static lx_status pack_value(wctx *w, const lx_value *v, bool chunkable) {
    msgpack_packer *pk = &w->pk;
    int bad = 0;
    char key[32];
    switch (v->kind) {
    case LX_V_NONE: bad = msgpack_pack_nil(pk); break;
    case LX_V_BOOL: bad = v->u.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk); break;
    case LX_V_INT: bad = msgpack_pack_int64(pk, v->u.i); break;
    case LX_V_FLOAT: bad = msgpack_pack_double(pk, v->u.f); break;
    case LX_V_STR: bad = pack_str(pk, v->u.s); break;
    case LX_V_INTS:
        bad = msgpack_pack_map(pk, (size_t)v->u.ints.n);
        for (int i = 0; i < v->u.ints.n && !bad; i++) {
            snprintf(key, sizeof key, "%d", i);
            bad = pack_str(pk, key) || msgpack_pack_int64(pk, v->u.ints.v[i]);
        }
        break;
    case LX_V_STRS:
        bad = msgpack_pack_map(pk, (size_t)v->u.strs.n);
        for (int i = 0; i < v->u.strs.n && !bad; i++) {
            snprintf(key, sizeof key, "%d", i);
            bad = pack_str(pk, key) || (v->u.strs.v[i] ? pack_str(pk, v->u.strs.v[i]) : msgpack_pack_nil(pk));
        }
        break;
    case LX_V_ARRAY: return pack_lx_array(w, v->u.array, chunkable);
    case LX_V_VARIABLE: return pack_lx_array(w, lx_variable_get_value(v->u.var), chunkable);
    case LX_V_BOX: {
        /* A struct dataclass: its pytree fields only ({"value": ...}); names and mesh are static. */
        size_t plen = strlen(w->path);
        if (msgpack_pack_map(pk, 1) || pack_str(pk, "value")) return io_error(w);
        snprintf(w->path + plen, sizeof w->path - plen, "/value");
        LX_TRY(pack_lx_array(w, lx_box_unbox(v->u.box), true));
        w->path[plen] = 0;
        return LX_OK;
    }
    case LX_V_TREE: return pack_tree(w, v->u.tree);
    case LX_V_PTR: {
        lx_raw *r = lx_value_raw(v);
        if (!r) break;
        if (r->kind == LX_RAW_BYTES) {
            bad = msgpack_pack_bin(pk, r->nbytes) || msgpack_pack_bin_body(pk, r->data, r->nbytes);
        } else if (r->kind == LX_RAW_COMPLEX) {
            /* Python complex: ext 2 with packb((real, imag)) */
            double re, im;
            memcpy(&re, r->data, 8);
            memcpy(&im, r->data + 8, 8);
            unsigned char body[19];
            body[0] = 0x92;
            body[1] = 0xcb;
            body[10] = 0xcb;
            uint64_t bits[2];
            memcpy(&bits[0], &re, 8);
            memcpy(&bits[1], &im, 8);
            for (int k = 0; k < 2; k++)
                for (int j = 0; j < 8; j++) body[2 + 9 * k + j] = (unsigned char)(bits[k] >> (56 - 8 * j));
            bad = msgpack_pack_ext(pk, sizeof body, 2) || msgpack_pack_ext_body(pk, body, sizeof body);
        } else {
            leaf_view lv = {r->dtype, lx_ckpt_dtype_bits(r->dtype), r->ndim, r->shape, r->data, r->nbytes,
                            r->kind == LX_RAW_NPSCALAR ? 3 : 1};
            return pack_leaf_array(w, &lv, chunkable);
        }
        return bad ? io_error(w) : LX_OK;
    }
    }
    if (bad) return io_error(w);
    if (v->kind == LX_V_PTR && !lx_value_raw(v))
        return lx_fail(LX_ERR_TYPE, "msgpack: cannot serialize a %s object (%s) at %s", v->u.ptr.tag ? v->u.ptr.tag : "pointer",
                       "not a state-dict leaf", w->path[0] ? w->path : ".");
    return LX_OK;
}

static lx_status write_root(msgpack_packer_write cb, void *data, const lx_value *root, const lx_msgpack_opts *opts) {
    if (!root) return lx_null_input("msgpack: root is NULL");
    wctx *w = calloc(1, sizeof *w);
    if (!w) return lx_fail(LX_ERR_NO_MEMORY, "msgpack: out of memory");
    msgpack_packer_init(&w->pk, data, cb);
    w->max_chunk = opts && opts->max_chunk_bytes ? opts->max_chunk_bytes : FLAX_MAX_CHUNK;
    lx_status s = pack_value(w, root, true);
    free(w);
    return s;
}

lx_status lx_msgpack_to_bytes(const lx_value *root, const lx_msgpack_opts *opts, unsigned char **out, size_t *len) {
    if (!out || !len) return lx_fail(LX_ERR_INVALID_ARGUMENT, "msgpack: out or len is NULL");
    io_buf b = {0};
    lx_status s = write_root(buf_put_cb, &b, root, opts);
    if (s == LX_OK && b.failed) s = lx_fail(LX_ERR_NO_MEMORY, "msgpack: out of memory");
    if (s != LX_OK) {
        free(b.p);
        return s;
    }
    if (!b.p) b.p = malloc(1);
    *out = b.p;
    *len = b.len;
    return LX_OK;
}

static int file_put(void *f, const char *buf, size_t len) { return fwrite(buf, 1, len, f) == len ? 0 : -1; }

lx_status lx_msgpack_write(FILE *f, const lx_value *root, const lx_msgpack_opts *opts) {
    if (!f) return lx_fail(LX_ERR_INVALID_ARGUMENT, "msgpack: stream is NULL");
    return write_root(file_put, f, root, opts);
}
