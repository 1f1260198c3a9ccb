/* Flax msgpack, reading: what flax.serialization.msgpack_restore accepts, into linnx trees.
 *
 * A bounded pull parser of our own rather than msgpack-c's unpacker: msgpack-c allocates
 * count * sizeof(msgpack_object) for a container header before it has seen the elements (five
 * hostile bytes `dd ff ff ff ff` ask for ~100 GB), builds an object tree of the whole file, and
 * reports failures without a byte offset. Here every length is checked against the bytes left
 * before anything is allocated, nesting is bounded, array bodies are copied once straight into
 * their lx_array, and every error names the byte offset and what was expected. */
#define _DEFAULT_SOURCE 1 /* madvise */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "io_internal.h"
#include "linnx/tree.h"

#define MAX_DEPTH 256

typedef struct rctx {
    const unsigned char *p;
    size_t len, pos;
    /* When the input is a private file mapping: pages before `pos` are handed back as bodies are
     * consumed, so a load does not keep both the file and the arrays resident. */
    const unsigned char *map_base;
    size_t dropped;
    io_map *map; /* set for file loads: aligned array bodies are used in place */
} rctx;

/* Large arrays get their own anonymous mapping with transparent huge pages: filling fresh
 * memory 4 KiB page by page costs more in page faults than the copy itself (a 160 MB load spent
 * ~70% of its time in the kernel's fault path). */
#define BIG_ARRAY ((size_t)4 << 20)
#define ZERO_COPY_MIN ((size_t)64 << 10)

typedef struct big_mem {
    void *addr;
    size_t len;
} big_mem;

static void big_free(void *p) {
    big_mem *b = p;
    munmap(b->addr, b->len);
    free(b);
}

static lx_array *big_array(lx_dtype dt, int ndim, const int64_t *shape, const void *data, size_t nbytes) {
    size_t len = (nbytes + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
    big_mem *b = malloc(sizeof *b);
    void *addr = b ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : MAP_FAILED;
    if (addr == MAP_FAILED) {
        free(b);
        return lx_array_from_data(dt, ndim, shape, data);
    }
    madvise(addr, len, MADV_HUGEPAGE);
    memcpy(addr, data, nbytes);
    b->addr = addr;
    b->len = len;
    lx_array *a = lx_array_wrap(dt, ndim, shape, addr, big_free, b);
    if (!a) big_free(b);
    return a;
}

static lx_status bad(const rctx *r, size_t at, const char *fmt, const char *what) {
    return lx_fail(LX_ERR_FORMAT, "msgpack: at byte %zu: %s%s", at, fmt, what ? what : "");
}

static lx_status need(const rctx *r, size_t n, const char *what) {
    if (n > r->len - r->pos) {
        char b[160];
        snprintf(b, sizeof b, "expected %zu bytes of %s, only %zu left (truncated input)", n, what, r->len - r->pos);
        return lx_fail(LX_ERR_FORMAT, "msgpack: at byte %zu: %s", r->pos, b);
    }
    return LX_OK;
}

static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

static void drop_consumed(rctx *r) {
    if (!r->map_base) return;
    size_t page = 4096, upto = (r->pos / page) * page;
    if (upto > r->dropped + ((size_t)16 << 20)) {
        madvise((void *)(r->map_base + r->dropped), upto - r->dropped, MADV_DONTNEED);
        r->dropped = upto;
    }
}

/* The name msgpack-python would give the type byte, for errors. */
static const char *type_name(unsigned char c) {
    if (c <= 0x7f || c >= 0xe0) return "int";
    if (c <= 0x8f) return "map";
    if (c <= 0x9f) return "array";
    if (c <= 0xbf) return "str";
    switch (c) {
    case 0xc0: return "nil";
    case 0xc2: case 0xc3: return "bool";
    case 0xc4: case 0xc5: case 0xc6: return "bin";
    case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return "ext";
    case 0xca: return "float32";
    case 0xcb: return "float64";
    case 0xcc: case 0xcd: case 0xce: case 0xcf: case 0xd0: case 0xd1: case 0xd2: case 0xd3: return "int";
    case 0xd9: case 0xda: case 0xdb: return "str";
    case 0xdc: case 0xdd: return "array";
    case 0xde: case 0xdf: return "map";
    default: return "the never-used byte 0xc1";
    }
}

/* Header readers: each checks the bytes it reads and the length it announces. */
static lx_status rd_int(rctx *r, int64_t *out, const char *what) {
    LX_TRY(need(r, 1, what));
    size_t at = r->pos;
    unsigned char c = r->p[r->pos++];
    if (c <= 0x7f) { *out = c; return LX_OK; }
    if (c >= 0xe0) { *out = (int8_t)c; return LX_OK; }
    int n = 0, sign = 0;
    switch (c) {
    case 0xcc: n = 1; break; case 0xcd: n = 2; break; case 0xce: n = 4; break; case 0xcf: n = 8; break;
    case 0xd0: n = 1; sign = 1; break; case 0xd1: n = 2; sign = 1; break;
    case 0xd2: n = 4; sign = 1; break; case 0xd3: n = 8; sign = 1; break;
    default: {
        char b[96];
        snprintf(b, sizeof b, "expected %s (an int), got %s", what, type_name(c));
        r->pos = at;
        return lx_fail(LX_ERR_FORMAT, "msgpack: at byte %zu: %s", at, b);
    }
    }
    LX_TRY(need(r, (size_t)n, what));
    uint64_t u = be(r->p + r->pos, n);
    r->pos += (size_t)n;
    if (sign) {
        int64_t v = n == 1 ? (int8_t)u : n == 2 ? (int16_t)u : n == 4 ? (int32_t)u : (int64_t)u;
        *out = v;
    } else {
        if (u > INT64_MAX) {
            /* msgpack_restore reads it as a Python int; a linnx int is an int64 */
            char b[160];
            snprintf(b, sizeof b, "%s %llu is above 2^63-1: a linnx int is int64 and cannot hold it", what,
                     (unsigned long long)u);
            return lx_fail(LX_ERR_UNSUPPORTED, "msgpack: at byte %zu: %s", at, b);
        }
        *out = (int64_t)u;
    }
    return LX_OK;
}

/* str or bin body: *s points into the input. */
static lx_status rd_bytes(rctx *r, const unsigned char **s, size_t *n, bool allow_str, bool allow_bin, const char *what) {
    LX_TRY(need(r, 1, what));
    size_t at = r->pos;
    unsigned char c = r->p[r->pos++];
    int hl = -1;
    bool is_str = false;
    if (c >= 0xa0 && c <= 0xbf) { *n = c & 0x1f; hl = 0; is_str = true; }
    else if (c == 0xd9 || c == 0xc4) hl = 1;
    else if (c == 0xda || c == 0xc5) hl = 2;
    else if (c == 0xdb || c == 0xc6) hl = 4;
    if (c == 0xd9 || c == 0xda || c == 0xdb) is_str = true;
    if (hl < 0 || (is_str && !allow_str) || (!is_str && !allow_bin)) {
        char b[128];
        snprintf(b, sizeof b, "expected %s (%s), got %s", what,
                 allow_str && allow_bin ? "str or bin" : allow_str ? "str" : "bin", type_name(c));
        return lx_fail(LX_ERR_FORMAT, "msgpack: at byte %zu: %s", at, b);
    }
    if (hl > 0) {
        LX_TRY(need(r, (size_t)hl, what));
        *n = (size_t)be(r->p + r->pos, hl);
        r->pos += (size_t)hl;
    }
    LX_TRY(need(r, *n, what));
    *s = r->p + r->pos;
    r->pos += *n;
    return LX_OK;
}

/* Container header: kind 'a' array or 'm' map; returns the count, checked against bytes left. */
static lx_status rd_container(rctx *r, char kind, size_t *count, const char *what) {
    LX_TRY(need(r, 1, what));
    size_t at = r->pos;
    unsigned char c = r->p[r->pos++];
    int hl = -1;
    if (kind == 'a') {
        if (c >= 0x90 && c <= 0x9f) { *count = c & 0x0f; hl = 0; }
        else if (c == 0xdc) hl = 2;
        else if (c == 0xdd) hl = 4;
    } else {
        if (c >= 0x80 && c <= 0x8f) { *count = c & 0x0f; hl = 0; }
        else if (c == 0xde) hl = 2;
        else if (c == 0xdf) hl = 4;
    }
    if (hl < 0) {
        char b[128];
        snprintf(b, sizeof b, "expected %s (%s), got %s", what, kind == 'a' ? "array" : "map", type_name(c));
        return lx_fail(LX_ERR_FORMAT, "msgpack: at byte %zu: %s", at, b);
    }
    if (hl > 0) {
        LX_TRY(need(r, (size_t)hl, what));
        *count = (size_t)be(r->p + r->pos, hl);
        r->pos += (size_t)hl;
    }
    /* every element takes at least one byte (a map entry two) */
    size_t per = kind == 'm' ? 2 : 1;
    if (*count > (r->len - r->pos) / per) {
        char b[160];
        snprintf(b, sizeof b, "%s announces %zu %s but only %zu bytes are left", what, *count,
                 kind == 'm' ? "entries" : "elements", r->len - r->pos);
        return lx_fail(LX_ERR_FORMAT, "msgpack: at byte %zu: %s", at, b);
    }
    return LX_OK;
}

/* The payload [shape, dtype, data] of ext 1 / ext 3 (inner offsets are offsets in the file). */
static lx_status rd_array_payload(rctx *outer, size_t start, size_t plen, int ext, lx_value *out) {
    rctx r = {outer->p, start + plen, start, NULL, 0, NULL};
    size_t n = 0;
    LX_TRY(rd_container(&r, 'a', &n, "an array payload [shape, dtype, data]"));
    if (n != 3) return bad(&r, start, "expected an array payload of 3 items [shape, dtype, data]", NULL);
    size_t ndim_u;
    size_t shape_at = r.pos;
    LX_TRY(rd_container(&r, 'a', &ndim_u, "the shape"));
    if (ndim_u > LX_MAX_DIMS) {
        char b[96];
        snprintf(b, sizeof b, "rank %zu is above linnx's limit of %d", ndim_u, LX_MAX_DIMS);
        return bad(&r, shape_at, b, NULL);
    }
    int64_t shape[LX_MAX_DIMS];
    for (size_t i = 0; i < ndim_u; i++) {
        size_t at = r.pos;
        LX_TRY(rd_int(&r, &shape[i], "a dimension"));
        if (shape[i] < 0) return bad(&r, at, "expected a dimension >= 0", NULL);
    }
    int ndim = (int)ndim_u;
    const unsigned char *name = NULL, *data = NULL;
    size_t name_len, nbytes, dtype_at = r.pos;
    LX_TRY(rd_bytes(&r, &name, &name_len, true, true, "the dtype name"));
    const io_dtype *d = io_dtype_by_numpy((const char *)name, name_len);
    if (!d || d->bits % 8) {
        char b[96];
        snprintf(b, sizeof b, "unsupported dtype '%.*s'", (int)(name_len < 40 ? name_len : 40), (const char *)name);
        return bad(&r, dtype_at, b, NULL);
    }
    size_t data_at = r.pos;
    LX_TRY(rd_bytes(&r, &data, &nbytes, false, true, "the array data"));
    if (r.pos != r.len) return bad(&r, r.pos, "expected the end of the ext payload", NULL);
    int64_t size;
    uint64_t want;
    if (io_shape_size(ndim, shape, &size) != LX_OK || !io_nbytes(size, d->bits, &want) || want != nbytes) {
        char b[160];
        snprintf(b, sizeof b, "%zu data bytes do not fit %s of %lld elements", nbytes, d->numpy, (long long)size);
        return bad(&r, data_at, b, NULL);
    }
    bool in_place = ext == 1 && d->lx >= 0 && outer->map && nbytes >= ZERO_COPY_MIN && (uintptr_t)data % (size_t)(d->bits / 8) == 0;
    if (!in_place && io_over_limit(nbytes)) {
        char sh[96];
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "msgpack: at byte %zu: the array %s%s needs %zu bytes, over the limit of %zu bytes per array",
                       data_at, d->numpy, lx_shape_str(ndim, shape, sh, sizeof sh), nbytes, lx_max_array_bytes());
    }
    if (in_place) {
        /* the body is aligned for its dtype: point into the private mapping, as safetensors loads do */
        lx_array *a = lx_array_wrap((lx_dtype)d->lx, ndim, shape, (void *)data, io_map_unref, outer->map);
        if (!a) return lx_last_status();
        outer->map->refs++;
        *out = lx_array_v(a);
        return LX_OK;
    }
    if (ext == 1 && d->lx >= 0) {
        lx_array *a = nbytes >= BIG_ARRAY ? big_array((lx_dtype)d->lx, ndim, shape, data, nbytes)
                                          : lx_array_from_data((lx_dtype)d->lx, ndim, shape, data);
        if (!a) return lx_last_status();
        *out = lx_array_v(a);
        return LX_OK;
    }
    lx_raw *raw;
    LX_TRY(lx_raw_new(ext == 3 ? LX_RAW_NPSCALAR : LX_RAW_NDARRAY, d->numpy, ndim, shape, data, nbytes, &raw));
    *out = lx_raw_v(raw);
    return LX_OK;
}

static lx_status rd_double(rctx *r, double *out, const char *what) {
    LX_TRY(need(r, 1, what));
    size_t at = r->pos;
    unsigned char c = r->p[r->pos];
    if (c == 0xcb || c == 0xca) {
        r->pos++;
        int n = c == 0xcb ? 8 : 4;
        LX_TRY(need(r, (size_t)n, what));
        uint64_t u = be(r->p + r->pos, n);
        r->pos += (size_t)n;
        if (n == 8) memcpy(out, &u, 8);
        else {
            uint32_t u32 = (uint32_t)u;
            float f;
            memcpy(&f, &u32, 4);
            *out = f;
        }
        return LX_OK;
    }
    int64_t i = 0;
    if (rd_int(r, &i, what) != LX_OK) return bad(r, at, "expected a number for ", what);
    *out = (double)i;
    return LX_OK;
}

static lx_status rd_ext(rctx *r, lx_value *out) {
    size_t at = r->pos;
    unsigned char c = r->p[r->pos++];
    size_t plen;
    switch (c) {
    case 0xd4: plen = 1; break; case 0xd5: plen = 2; break; case 0xd6: plen = 4; break;
    case 0xd7: plen = 8; break; case 0xd8: plen = 16; break;
    default: {
        int hl = c == 0xc7 ? 1 : c == 0xc8 ? 2 : 4;
        LX_TRY(need(r, (size_t)hl, "an ext length"));
        plen = (size_t)be(r->p + r->pos, hl);
        r->pos += (size_t)hl;
    }
    }
    LX_TRY(need(r, 1, "an ext type"));
    int type = (int8_t)r->p[r->pos++];
    LX_TRY(need(r, plen, "an ext payload"));
    size_t start = r->pos;
    r->pos += plen;
    if (type == 1 || type == 3) {
        lx_status s = rd_array_payload(r, start, plen, type, out);
        drop_consumed(r);
        return s;
    }
    if (type == 2) {
        rctx in = {r->p, start + plen, start, NULL, 0, NULL};
        size_t n = 0;
        LX_TRY(rd_container(&in, 'a', &n, "a complex payload [real, imag]"));
        if (n != 2) return bad(&in, start, "expected a complex payload of 2 numbers [real, imag]", NULL);
        double parts[2];
        LX_TRY(rd_double(&in, &parts[0], "the real part"));
        LX_TRY(rd_double(&in, &parts[1], "the imaginary part"));
        if (in.pos != in.len) return bad(&in, in.pos, "expected the end of the complex payload", NULL);
        lx_raw *raw;
        LX_TRY(lx_raw_new(LX_RAW_COMPLEX, "complex128", 0, NULL, parts, 16, &raw));
        *out = lx_raw_v(raw);
        return LX_OK;
    }
    char b[96];
    snprintf(b, sizeof b, "unknown ext type %d (Flax writes 1 ndarray, 2 complex, 3 numpy scalar)", type);
    return bad(r, at, b, NULL);
}

static lx_status rd_value(rctx *r, int depth, lx_value *out);

/* Flax's _unchunk: a map with __msgpack_chunked_array__ becomes one array. Takes `t`. */
static lx_status unchunk(rctx *r, size_t at, lx_tree *t, lx_value *out) {
    const lx_value *shape_v = lx_tree_get(t, "shape"), *chunks_v = lx_tree_get(t, "chunks");
    lx_status s = LX_OK;
    if (!shape_v || shape_v->kind != LX_V_TREE || !chunks_v || chunks_v->kind != LX_V_TREE) {
        s = bad(r, at, "a chunked array needs 'shape' and 'chunks' maps", NULL);
        goto done;
    }
    const lx_tree *st = shape_v->u.tree, *ct = chunks_v->u.tree;
    size_t ndim = lx_tree_len(st), nchunks = lx_tree_len(ct);
    int64_t shape[LX_MAX_DIMS], size = 0;
    if (ndim > LX_MAX_DIMS) { s = bad(r, at, "chunked array: rank above 8", NULL); goto done; }
    for (size_t i = 0; i < ndim; i++) {
        char k[24];
        snprintf(k, sizeof k, "%zu", i);
        const lx_value *d = lx_tree_get(st, k);
        if (!d || d->kind != LX_V_INT || d->u.i < 0) { s = bad(r, at, "chunked array: 'shape' must map \"0\".. to dims", NULL); goto done; }
        shape[i] = d->u.i;
    }
    if (io_shape_size((int)ndim, shape, &size) != LX_OK) { s = bad(r, at, "chunked array: bad shape", NULL); goto done; }
    /* every chunk: a 1-D array of one dtype, in key order "0", "1", ... */
    const char *dtype = NULL;
    int bits = 0, lxd = -1;
    int64_t total = 0;
    for (size_t i = 0; i < nchunks; i++) {
        char k[24];
        snprintf(k, sizeof k, "%zu", i);
        const lx_value *c = lx_tree_get(ct, k);
        const char *cd = NULL;
        int64_t n = 0;
        if (c && c->kind == LX_V_ARRAY && c->u.array->ndim == 1) { cd = lx_dtype_name(c->u.array->dtype); n = c->u.array->size; }
        lx_raw *rw = c ? lx_value_raw(c) : NULL;
        if (rw && rw->kind == LX_RAW_NDARRAY && rw->ndim == 1) { cd = rw->dtype; n = rw->size; }
        if (!cd || (dtype && strcmp(cd, dtype))) { s = bad(r, at, "chunked array: chunks must be 1-D arrays of one dtype keyed \"0\", \"1\", ...", NULL); goto done; }
        dtype = cd;
        total += n;
    }
    if (!dtype || total != size) { s = bad(r, at, "chunked array: the chunks do not add up to the shape", NULL); goto done; }
    const io_dtype *d = io_dtype_by_numpy(dtype, strlen(dtype));
    bits = d->bits;
    lxd = d->lx;
    size_t item = (size_t)bits / 8;
    if (io_over_limit((uint64_t)size * item)) {
        char sh[96];
        s = lx_fail(LX_ERR_INVALID_ARGUMENT, "msgpack: at byte %zu: the chunked array %s%s needs %llu bytes, over the limit of %zu bytes per array",
                    at, dtype, lx_shape_str((int)ndim, shape, sh, sizeof sh), (unsigned long long)size * item, lx_max_array_bytes());
        goto done;
    }
    unsigned char *buf = NULL;
    lx_array *arr = NULL;
    if (lxd >= 0) {
        arr = lx_array_empty((lx_dtype)lxd, (int)ndim, shape);
        if (!arr) { s = lx_last_status(); goto done; }
        buf = arr->data;
    } else {
        buf = malloc((size_t)size * item + 1);
        if (!buf) { s = lx_fail(LX_ERR_NO_MEMORY, "msgpack: out of memory"); goto done; }
    }
    size_t off = 0;
    for (size_t i = 0; i < nchunks; i++) {
        char k[24];
        snprintf(k, sizeof k, "%zu", i);
        const lx_value *c = lx_tree_get(ct, k);
        lx_raw *rw = lx_value_raw(c);
        const void *src = rw ? (const void *)rw->data : c->u.array->data;
        size_t nb = rw ? rw->nbytes : lx_array_nbytes(c->u.array);
        if (nb) memcpy(buf + off, src, nb);
        off += nb;
    }
    if (arr) {
        *out = lx_array_v(arr);
    } else {
        lx_raw *raw;
        s = lx_raw_new(LX_RAW_NDARRAY, dtype, (int)ndim, shape, buf, off, &raw);
        free(buf);
        if (s == LX_OK) *out = lx_raw_v(raw);
    }
done:
    lx_tree_release(t);
    return s;
}

static lx_status rd_map(rctx *r, int depth, lx_value *out, char kind) {
    size_t at = r->pos, n;
    LX_TRY(rd_container(r, kind, &n, kind == 'm' ? "a map" : "an array"));
    lx_tree *t = lx_tree_new();
    if (!t) return lx_last_status();
    lx_status s = LX_OK;
    bool chunked = false;
    for (size_t i = 0; i < n && s == LX_OK; i++) {
        char key[32];
        const char *k = key;
        char *kbuf = NULL;
        if (kind == 'a') {
            snprintf(key, sizeof key, "%zu", i);
        } else {
            size_t kat = r->pos;
            s = need(r, 1, "a map key");
            if (s != LX_OK) break;
            unsigned char c = r->p[r->pos];
            if ((c >= 0xa0 && c <= 0xbf) || c == 0xd9 || c == 0xda || c == 0xdb) {
                const unsigned char *ks = NULL;
                size_t kl = 0;
                s = rd_bytes(r, &ks, &kl, true, false, "a map key");
                if (s != LX_OK) break;
                if (kl == 0 || memchr(ks, '/', kl) || memchr(ks, 0, kl)) {
                    /* msgpack_restore takes any str key; a linnx tree key cannot be empty or hold
                     * '/' (the path separator) or NUL. Say which, with the key. */
                    char b[200];
                    int show = kl > 60 ? 60 : (int)kl;
                    if (kl == 0)
                        snprintf(b, sizeof b, "the map key is the empty string: a linnx tree key cannot be empty");
                    else if (memchr(ks, 0, kl))
                        snprintf(b, sizeof b, "the map key holds a NUL byte: a linnx tree key cannot");
                    else
                        snprintf(b, sizeof b,
                                 "the map key '%.*s%s' contains '/': a linnx tree key cannot, '/' separates its paths "
                                 "(a flatten_dict(sep='/') state: unflatten it before saving)",
                                 show, (const char *)ks, kl > 60 ? "..." : "");
                    s = lx_fail(LX_ERR_UNSUPPORTED, "msgpack: at byte %zu: %s", kat, b);
                    break;
                }
                kbuf = malloc(kl + 1);
                if (!kbuf) { s = lx_fail(LX_ERR_NO_MEMORY, "msgpack: out of memory"); break; }
                memcpy(kbuf, ks, kl);
                kbuf[kl] = 0;
                k = kbuf;
            } else {
                int64_t ik = 0;
                lx_status ks = rd_int(r, &ik, "the int map key");
                if (ks == LX_ERR_UNSUPPORTED) {
                    s = ks;
                    break;
                }
                if (ks != LX_OK) {
                    char b[96];
                    snprintf(b, sizeof b, "expected a map key (str or int), got %s", type_name(c));
                    s = bad(r, kat, b, NULL);
                    break;
                }
                snprintf(key, sizeof key, "%lld", (long long)ik);
            }
        }
        lx_value v = lx_none();
        s = rd_value(r, depth + 1, &v);
        if (s == LX_OK) {
            if (kind == 'm' && !strcmp(k, "__msgpack_chunked_array__")) chunked = true;
            s = lx_tree_set(t, k, v);
            lx_value_free(&v);
        }
        free(kbuf);
    }
    if (s != LX_OK) {
        lx_tree_release(t);
        return s;
    }
    if (chunked) return unchunk(r, at, t, out);
    *out = lx_tree_v(t);
    return LX_OK;
}

static lx_status rd_value(rctx *r, int depth, lx_value *out) {
    if (depth > MAX_DEPTH) return bad(r, r->pos, "nesting deeper than 256 levels", NULL);
    LX_TRY(need(r, 1, "a value"));
    size_t at = r->pos;
    unsigned char c = r->p[at];
    if ((c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf) return rd_map(r, depth, out, 'm');
    if ((c >= 0x90 && c <= 0x9f) || c == 0xdc || c == 0xdd) return rd_map(r, depth, out, 'a');
    if ((c >= 0xa0 && c <= 0xbf) || c == 0xd9 || c == 0xda || c == 0xdb) {
        const unsigned char *s = NULL;
        size_t n = 0;
        LX_TRY(rd_bytes(r, &s, &n, true, false, "a str"));
        if (memchr(s, 0, n)) return bad(r, at, "a str with a NUL byte", NULL);
        char *copy = malloc(n + 1);
        if (!copy) return lx_fail(LX_ERR_NO_MEMORY, "msgpack: out of memory");
        memcpy(copy, s, n);
        copy[n] = 0;
        lx_status st = lx_value_dup(&(lx_value){LX_V_STR, {.s = copy}}, out);
        free(copy);
        return st;
    }
    if (c == 0xc4 || c == 0xc5 || c == 0xc6) {
        const unsigned char *s = NULL;
        size_t n = 0;
        LX_TRY(rd_bytes(r, &s, &n, false, true, "a bin"));
        lx_raw *raw;
        int64_t dim = (int64_t)n;
        LX_TRY(lx_raw_new(LX_RAW_BYTES, "bytes", 1, &dim, s, n, &raw));
        *out = lx_raw_v(raw);
        return LX_OK;
    }
    if (c == 0xc7 || c == 0xc8 || c == 0xc9 || (c >= 0xd4 && c <= 0xd8)) return rd_ext(r, out);
    if (c == 0xc0) { r->pos++; *out = lx_none(); return LX_OK; }
    if (c == 0xc2 || c == 0xc3) { r->pos++; *out = lx_bool_v(c == 0xc3); return LX_OK; }
    if (c == 0xca || c == 0xcb) {
        double d;
        LX_TRY(rd_double(r, &d, "a float"));
        *out = lx_float_v(d);
        return LX_OK;
    }
    if (c == 0xc1) return bad(r, at, "expected a value, got the never-used byte 0xc1", NULL);
    int64_t i = 0;
    LX_TRY(rd_int(r, &i, "a value"));
    *out = lx_int_v(i);
    return LX_OK;
}

static lx_status parse(rctx *r, lx_value *out) {
    if (!r->p && r->len) return lx_fail(LX_ERR_INVALID_ARGUMENT, "msgpack: data is NULL");
    lx_value v = lx_none();
    LX_TRY(rd_value(r, 0, &v));
    if (r->pos != r->len) {
        lx_value_free(&v);
        return bad(r, r->pos, "expected the end of the input after one object", NULL);
    }
    *out = v;
    return LX_OK;
}

lx_status lx_msgpack_from_bytes(const void *data, size_t len, lx_value *out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "msgpack: out is NULL");
    if (!data && len) return lx_fail(LX_ERR_INVALID_ARGUMENT, "msgpack: data is NULL");
    rctx r = {data, len, 0, NULL, 0, NULL};
    return parse(&r, out);
}

/* For lx_ckpt_load: the same over a private mapping whose consumed pages may be dropped. */
lx_status io_msgpack_from_map(io_map *map, lx_value *out);
lx_status io_msgpack_from_map(io_map *map, lx_value *out) {
    rctx r = {map->addr, map->len, 0, map->addr, 0, map};
    return parse(&r, out);
}
