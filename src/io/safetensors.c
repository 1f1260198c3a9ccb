/* safetensors, both directions, with the reference reader's rules (spec/c-anchors.md §4.3).
 *
 * The JSON header goes through jansson (Debian libjansson-dev): a maintained parser with
 * duplicate-key rejection (JSON_REJECT_DUPLICATES, a safetensors rule), a nesting limit, exact
 * 64-bit integers and byte positions in its errors; building the header with it also gives the
 * reference writer's compact form with keys in insertion order. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "io_internal.h"
#include "linnx/tree.h"
#include "../core/status_internal.h"

#define ST_MAX_HEADER 100000000ull

/* ---- writing ---- */

typedef struct st_item {
    char *name;
    const char *path;
    const io_dtype *dt;
    int ndim;
    const int64_t *shape;
    const void *data;
    size_t nbytes;
} st_item;

static int item_cmp(const void *pa, const void *pb) {
    const st_item *a = pa, *b = pb;
    if (a->dt->st_rank != b->dt->st_rank) return a->dt->st_rank > b->dt->st_rank ? -1 : 1;
    return strcmp(a->name, b->name);
}

typedef int (*st_sink)(void *user, const void *data, size_t n);

lx_status io_safetensors_write(const lx_tree *t, const lx_safetensors_opts *opts, st_sink sink, void *user);
lx_status io_safetensors_write(const lx_tree *t, const lx_safetensors_opts *opts, st_sink sink, void *user) {
    const char *sep = opts && opts->sep ? opts->sep : ".";
    lx_flat flat = {0};
    LX_TRY(lx_tree_flatten(t, &flat));
    st_item *items = calloc(flat.len ? flat.len : 1, sizeof *items);
    json_t *hdr = json_object();
    char *text = NULL;
    lx_status s = LX_OK;
    if (!items || !hdr) {
        s = lx_fail(LX_ERR_NO_MEMORY, "safetensors: out of memory");
        goto done;
    }
    if (opts && opts->metadata && lx_tree_len(opts->metadata)) {
        json_t *md = json_object();
        json_object_set_new(hdr, "__metadata__", md);
        for (size_t i = 0; i < lx_tree_len(opts->metadata); i++) {
            const lx_value *v = lx_tree_at(opts->metadata, i);
            if (v->kind != LX_V_STR) {
                s = lx_fail(LX_ERR_TYPE, "safetensors: __metadata__ values must be strings ('%s' is %s)",
                            lx_tree_key(opts->metadata, i), lx_kind_name(v->kind));
                goto done;
            }
            json_object_set_new(md, lx_tree_key(opts->metadata, i), json_string(v->u.s));
        }
    }
    for (size_t i = 0; i < flat.len; i++) {
        st_item *it = &items[i];
        const lx_value *v = &flat.items[i].value;
        it->path = flat.items[i].path;
        lx_array *a = io_leaf_array(v);
        lx_raw *r = lx_value_raw(v);
        if (a) {
            if (lx_is_abstract(a)) {
                s = lx_fail(LX_ERR_INVALID_ARGUMENT, "safetensors: the array at %s is abstract (no data)", it->path);
                goto done;
            }
            it->dt = io_dtype_by_lx(a->dtype);
            it->ndim = a->ndim;
            it->shape = a->shape;
            it->data = a->data;
            it->nbytes = lx_array_nbytes(a);
        } else if (r && (r->kind == LX_RAW_NDARRAY || r->kind == LX_RAW_NPSCALAR)) {
            it->dt = io_dtype_by_numpy(r->dtype, strlen(r->dtype));
            it->ndim = r->ndim;
            it->shape = r->shape;
            it->data = r->data;
            it->nbytes = r->nbytes;
        } else {
            char b[64];
            s = lx_fail(LX_ERR_TYPE, "safetensors holds arrays only: %s is %s", it->path,
                        r ? r->dtype : lx_value_str(v, b, sizeof b));
            goto done;
        }
        if (!it->dt || !it->dt->st) {
            s = lx_fail(LX_ERR_DTYPE, "safetensors has no dtype for %s (at %s)", it->dt ? it->dt->numpy : "?", it->path);
            goto done;
        }
        it->name = io_join_path(it->path, sep);
        if (!it->name) {
            s = lx_fail(LX_ERR_NO_MEMORY, "safetensors: out of memory");
            goto done;
        }
        if (!strcmp(it->name, "__metadata__")) {
            s = lx_fail(LX_ERR_INVALID_ARGUMENT, "safetensors: a tensor may not be named __metadata__");
            goto done;
        }
    }
    qsort(items, flat.len, sizeof *items, item_cmp);
    uint64_t off = 0;
    for (size_t i = 0; i < flat.len; i++) {
        if (i && !strcmp(items[i].name, items[i - 1].name)) {
            s = lx_fail(LX_ERR_EXISTS, "safetensors: two leaves give the tensor name '%s' (%s and %s); choose another separator",
                        items[i].name, items[i - 1].path, items[i].path);
            goto done;
        }
        json_t *info = json_object(), *shape = json_array(), *offs = json_array();
        for (int d = 0; d < items[i].ndim; d++) json_array_append_new(shape, json_integer(items[i].shape[d]));
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + items[i].nbytes)));
        json_object_set_new(info, "dtype", json_string(items[i].dt->st));
        json_object_set_new(info, "shape", shape);
        json_object_set_new(info, "data_offsets", offs);
        if (json_object_set_new(hdr, items[i].name, info)) {
            s = lx_fail(LX_ERR_FORMAT, "safetensors: tensor name '%s' is not valid UTF-8", items[i].name);
            goto done;
        }
        off += items[i].nbytes;
    }
    text = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) {
        s = lx_fail(LX_ERR_NO_MEMORY, "safetensors: cannot format the header");
        goto done;
    }
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    unsigned char n8[8];
    for (int k = 0; k < 8; k++) n8[k] = (unsigned char)((uint64_t)padded >> (8 * k));
    const char spaces[8] = "        ";
    if (sink(user, n8, 8) || sink(user, text, tl) || sink(user, spaces, padded - tl)) {
        s = lx_fail(LX_ERR_IO, "safetensors: write failed");
        goto done;
    }
    for (size_t i = 0; i < flat.len; i++)
        if (items[i].nbytes && sink(user, items[i].data, items[i].nbytes)) {
            s = lx_fail(LX_ERR_IO, "safetensors: write failed at %s", items[i].path);
            goto done;
        }
done:
    if (items)
        for (size_t i = 0; i < flat.len; i++) free(items[i].name);
    free(items);
    free(text);
    json_decref(hdr);
    lx_flat_free(&flat);
    return s;
}

static int buf_sink(void *b, const void *data, size_t n) { return io_buf_put(b, data, n); }

lx_status lx_safetensors_to_bytes(const lx_tree *t, const lx_safetensors_opts *opts, unsigned char **out,
                                  size_t *len) {
    if (!out || !len) return lx_fail(LX_ERR_INVALID_ARGUMENT, "safetensors: out or len is NULL");
    if (!t) return lx_null_input("safetensors: tree is NULL");
    io_buf b = {0};
    lx_status s = io_safetensors_write(t, opts, buf_sink, &b);
    if (s == LX_OK && b.failed) s = lx_fail(LX_ERR_NO_MEMORY, "safetensors: out of memory");
    if (s != LX_OK) {
        free(b.p);
        return s;
    }
    *out = b.p;
    *len = b.len;
    return LX_OK;
}

static int file_sink(void *f, const void *data, size_t n) { return fwrite(data, 1, n, f) == n ? 0 : -1; }

lx_status lx_safetensors_write(FILE *f, const lx_tree *t, const lx_safetensors_opts *opts) {
    if (!f) return lx_fail(LX_ERR_INVALID_ARGUMENT, "safetensors: stream is NULL");
    if (!t) return lx_null_input("safetensors: tree is NULL");
    return io_safetensors_write(t, opts, file_sink, f);
}

/* ---- reading ---- */

typedef struct st_tensor {
    const char *name;
    const io_dtype *dt;
    int ndim;
    int64_t shape[LX_MAX_DIMS];
    uint64_t begin, end;
} st_tensor;

static int tensor_cmp(const void *pa, const void *pb) {
    const st_tensor *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return 0;
}

static lx_status hdr_err(uint64_t n, const char *fmt, const char *name, const char *detail) {
    return lx_fail(LX_ERR_FORMAT, "safetensors: in the header (bytes 8..%llu): tensor '%s': %s%s",
                   (unsigned long long)(8 + n), name, fmt, detail ? detail : "");
}

static lx_status parse_info(const char *name, json_t *info, uint64_t n, st_tensor *t) {
    if (!json_is_object(info)) return hdr_err(n, "expected an object {dtype, shape, data_offsets}", name, NULL);
    json_t *dt = json_object_get(info, "dtype"), *shape = json_object_get(info, "shape"),
           *offs = json_object_get(info, "data_offsets");
    if (!json_is_string(dt)) return hdr_err(n, "expected \"dtype\" to be a string", name, NULL);
    t->dt = io_dtype_by_st(json_string_value(dt), json_string_length(dt));
    if (!t->dt) return hdr_err(n, "unknown dtype ", name, json_string_value(dt));
    if (!json_is_array(shape)) return hdr_err(n, "expected \"shape\" to be an array of dims", name, NULL);
    if (json_array_size(shape) > LX_MAX_DIMS) return hdr_err(n, "rank above linnx's limit of 8", name, NULL);
    t->ndim = (int)json_array_size(shape);
    for (int d = 0; d < t->ndim; d++) {
        json_t *x = json_array_get(shape, (size_t)d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return hdr_err(n, "expected \"shape\" entries to be integers >= 0", name, NULL);
        t->shape[d] = json_integer_value(x);
    }
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)) || json_integer_value(json_array_get(offs, 0)) < 0 ||
        json_integer_value(json_array_get(offs, 1)) < 0)
        return hdr_err(n, "expected \"data_offsets\" to be [BEGIN, END] with integers >= 0", name, NULL);
    t->begin = (uint64_t)json_integer_value(json_array_get(offs, 0));
    t->end = (uint64_t)json_integer_value(json_array_get(offs, 1));
    if (t->end < t->begin) return hdr_err(n, "data_offsets END is before BEGIN", name, NULL);
    int64_t size;
    uint64_t want;
    if (io_shape_size(t->ndim, t->shape, &size) != LX_OK || !io_nbytes(size, t->dt->bits, &want))
        return hdr_err(n, "shape too large", name, NULL);
    if ((uint64_t)size * (uint64_t)t->dt->bits % 8)
        return hdr_err(n, "the element count times the dtype's bits is not a whole number of bytes", name, NULL);
    if (t->end - t->begin != want) {
        char b[160];
        snprintf(b, sizeof b, "data_offsets [%llu, %llu] hold %llu bytes but %s%s needs %llu",
                 (unsigned long long)t->begin, (unsigned long long)t->end,
                 (unsigned long long)(t->end - t->begin), t->dt->st, "", (unsigned long long)want);
        return hdr_err(n, b, name, NULL);
    }
    return LX_OK;
}

/* The '/' path of a tensor name split at `sep`. */
static lx_status name_to_path(const char *name, const char *sep, char **out) {
    size_t sl = strlen(sep);
    /* The reference reader takes any name; a linnx tree key cannot be empty or hold '/'. These
     * are valid files linnx cannot represent with this separator: LX_ERR_UNSUPPORTED, and the way
     * out (sep "/" keeps names without '/' whole, each one key). */
    if (!*name) return lx_fail(LX_ERR_UNSUPPORTED, "safetensors: an empty tensor name: a linnx tree key cannot be empty");
    if (strcmp(sep, "/") && strchr(name, '/'))
        return lx_fail(LX_ERR_UNSUPPORTED,
                       "safetensors: tensor name '%s' contains '/': a linnx tree key cannot ('/' separates its paths); "
                       "load it with sep \"/\" (linnx inspect --sep /)", name);
    char *p = malloc(strlen(name) + 1), *o = p;
    if (!p) return lx_fail(LX_ERR_NO_MEMORY, "safetensors: out of memory");
    for (const char *c = name; *c;) {
        if (sl && !strncmp(c, sep, sl)) {
            *o++ = '/';
            c += sl;
        } else {
            *o++ = *c++;
        }
    }
    *o = 0;
    if (p[0] == '/' || (o > p && o[-1] == '/') || strstr(p, "//")) {
        free(p);
        return lx_fail(LX_ERR_UNSUPPORTED,
                       "safetensors: tensor name '%s' has an empty part when split at '%s': a linnx tree key cannot be "
                       "empty; load it with another sep (sep \"/\" keeps it whole; linnx inspect --sep /)", name, sep);
    }
    *out = p;
    return LX_OK;
}

static lx_status over_limit(const st_tensor *t, size_t nb, uint64_t n) {
    char sh[96];
    return lx_fail(LX_ERR_INVALID_ARGUMENT,
                   "safetensors: at byte %llu: tensor '%s' (%s%s) needs %zu bytes, over the limit of %zu bytes per array",
                   (unsigned long long)(8 + n + t->begin), t->name, t->dt->st, lx_shape_str(t->ndim, t->shape, sh, sizeof sh),
                   nb, lx_max_array_bytes());
}

/* Parse `data` (len bytes). With `map`, aligned tensors of linnx dtypes point into it. */
lx_status io_safetensors_parse(const unsigned char *data, size_t len, const lx_safetensors_opts *opts, io_map *map,
                               lx_tree **out, lx_tree **metadata);
lx_status io_safetensors_parse(const unsigned char *data, size_t len, const lx_safetensors_opts *opts, io_map *map,
                               lx_tree **out, lx_tree **metadata) {
    const char *sep = opts && opts->sep ? opts->sep : ".";
    if (len < 8)
        return lx_fail(LX_ERR_FORMAT, "safetensors: at byte 0: expected an 8-byte header length, the input has %zu bytes", len);
    uint64_t n = 0;
    for (int k = 7; k >= 0; k--) n = n << 8 | data[k];
    if (n > ST_MAX_HEADER)
        return lx_fail(LX_ERR_FORMAT, "safetensors: at byte 0: header length %llu is above the 100,000,000-byte limit",
                       (unsigned long long)n);
    if (n > len - 8)
        return lx_fail(LX_ERR_FORMAT, "safetensors: at byte 0: header length %llu runs past the end of the input (%zu bytes)",
                       (unsigned long long)n, len);
    /* The README says the header starts with '{'; the reference reader (serde_json, its '{'
     * check left commented out) also takes JSON whitespace before it, and so does this one. */
    size_t lead = 0;
    while (lead < n && (data[8 + lead] == ' ' || data[8 + lead] == '\t' || data[8 + lead] == '\n' || data[8 + lead] == '\r'))
        lead++;
    if (lead == n || data[8 + lead] != '{')
        return lx_fail(LX_ERR_FORMAT, "safetensors: at byte %zu: expected the header (%llu bytes from byte 8) to start with '{'",
                       8 + lead, (unsigned long long)n);
    json_error_t jerr;
    json_t *hdr = json_loadb((const char *)data + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!hdr)
        return lx_fail(LX_ERR_FORMAT, "safetensors: at byte %llu: header JSON: %s",
                       (unsigned long long)(8 + (uint64_t)(jerr.position > 0 ? jerr.position : 0)), jerr.text);
    lx_status s = LX_OK;
    lx_tree *tree = NULL, *md = NULL;
    st_tensor *ts = NULL;
    char *path = NULL;
    if (!json_is_object(hdr)) {
        s = lx_fail(LX_ERR_FORMAT, "safetensors: at byte 8: expected the header to be a JSON object");
        goto done;
    }
    size_t count = json_object_size(hdr), nt = 0;
    ts = calloc(count ? count : 1, sizeof *ts);
    md = lx_tree_new();
    tree = lx_tree_new();
    if (!ts || !md || !tree) {
        s = lx_fail(LX_ERR_NO_MEMORY, "safetensors: out of memory");
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(hdr, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val)) {
                s = lx_fail(LX_ERR_FORMAT, "safetensors: in the header: __metadata__ must be an object of strings");
                goto done;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    s = lx_fail(LX_ERR_FORMAT, "safetensors: in the header: __metadata__['%s'] is not a string", mk);
                    goto done;
                }
                if (!*mk || strchr(mk, '/')) {
                    s = lx_fail(LX_ERR_FORMAT, "safetensors: in the header: __metadata__ key '%s' is empty or has '/'", mk);
                    goto done;
                }
                if ((s = lx_tree_set(md, mk, lx_str_v(json_string_value(mv)))) != LX_OK) goto done;
            }
            continue;
        }
        ts[nt].name = key;
        if ((s = parse_info(key, val, n, &ts[nt])) != LX_OK) goto done;
        nt++;
    }
    qsort(ts, nt, sizeof *ts, tensor_cmp);
    uint64_t expect = 0, buffer = (uint64_t)len - 8 - n;
    for (size_t i = 0; i < nt; i++) {
        if (ts[i].begin != expect) {
            s = lx_fail(LX_ERR_FORMAT, "safetensors: tensor '%s': data_offsets begin at %llu, expected %llu (%s)", ts[i].name,
                        (unsigned long long)ts[i].begin, (unsigned long long)expect,
                        ts[i].begin < expect ? "overlaps the previous tensor" : "a hole before it");
            goto done;
        }
        expect = ts[i].end;
    }
    if (expect != buffer) {
        s = lx_fail(LX_ERR_FORMAT, "safetensors: at byte %llu: the tensors end there but the input has %zu bytes (%s)",
                    (unsigned long long)(8 + n + expect), len, expect > buffer ? "truncated" : "trailing bytes");
        goto done;
    }
    const unsigned char *base = data + 8 + n;
    for (size_t i = 0; i < nt; i++) {
        const st_tensor *t = &ts[i];
        free(path);
        path = NULL;
        if ((s = name_to_path(t->name, sep, &path)) != LX_OK) goto done;
        const lx_value *there = lx_tree_find(tree, path);
        if (there && there->kind == LX_V_TREE) {
            s = lx_fail(LX_ERR_UNSUPPORTED,
                        "safetensors: tensor '%s': the path %s is already a map of other tensors; one tensor name "
                        "extends another at '%s', which a linnx tree cannot hold (a node is a leaf or a map); load with "
                        "sep \"/\" to keep names whole (linnx inspect --sep /)", t->name, path, sep);
            goto done;
        }
        if (there) {
            s = lx_fail(LX_ERR_FORMAT, "safetensors: two tensor names give the path %s", path);
            goto done;
        }
        const unsigned char *p = base + t->begin;
        size_t nb = (size_t)(t->end - t->begin);
        lx_value v;
        if (t->dt->lx >= 0) {
            lx_array *a;
            size_t item = (size_t)t->dt->bits / 8;
            if (map && !(opts && opts->copy) && nb > 0 && (uintptr_t)p % item == 0) {
                a = lx_array_wrap((lx_dtype)t->dt->lx, t->ndim, t->shape, (void *)p, io_map_unref, map);
                if (a) map->refs++;
            } else if (io_over_limit(nb)) {
                s = over_limit(t, nb, n);
                goto done;
            } else {
                a = lx_array_from_data((lx_dtype)t->dt->lx, t->ndim, t->shape, p);
            }
            if (!a) {
                s = lx_last_status();
                goto done;
            }
            v = lx_array_v(a);
        } else {
            lx_raw *r;
            if (io_over_limit(nb)) {
                s = over_limit(t, nb, n);
                goto done;
            }
            if ((s = lx_raw_new(LX_RAW_NDARRAY, t->dt->numpy, t->ndim, t->shape, p, nb, &r)) != LX_OK) goto done;
            v = lx_raw_v(r);
        }
        s = lx_tree_set_path(tree, path, v);
        lx_value_free(&v);
        if (s == LX_ERR_NO_MEMORY) {
            lx_fail_context(s, "safetensors: tensor '%s': ", t->name);
            goto done;
        }
        if (s != LX_OK) {
            /* valid for the reference reader (h.0 and h.0.attn): a linnx tree node is either a
             * leaf or a map, so with this separator one name cannot extend another */
            char why[256];
            snprintf(why, sizeof why, "%s", lx_last_error());
            s = lx_fail(LX_ERR_UNSUPPORTED,
                        "safetensors: tensor '%s': %s; one tensor name extends another at '%s', which a linnx tree "
                        "cannot hold (a node is a leaf or a map); load with sep \"/\" to keep names whole "
                        "(linnx inspect --sep /)", t->name, why, sep);
            goto done;
        }
    }
done:
    free(path);
    free(ts);
    json_decref(hdr);
    if (s != LX_OK) {
        lx_tree_release(tree);
        lx_tree_release(md);
        return s;
    }
    *out = tree;
    if (metadata) *metadata = md;
    else lx_tree_release(md);
    return LX_OK;
}

lx_status lx_safetensors_from_bytes(const void *data, size_t len, const lx_safetensors_opts *opts, lx_tree **out,
                                    lx_tree **metadata) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "safetensors: out is NULL");
    if (!data && len) return lx_fail(LX_ERR_INVALID_ARGUMENT, "safetensors: data is NULL");
    return io_safetensors_parse(data, len, opts, NULL, out, metadata);
}
