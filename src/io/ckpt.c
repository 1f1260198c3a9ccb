/* Checkpoint files: atomic writes, file mappings, format sniffing, save/load, the pure dict and
 * restore into a target structure (flax.serialization.from_state_dict). */
#define _DEFAULT_SOURCE 1 /* fsync on directories, mkstemp-like names */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io_internal.h"
#include "linnx/box.h"
#include "linnx/variable.h"
#include "../core/status_internal.h"

lx_status io_msgpack_from_map(io_map *map, lx_value *out);
typedef int (*st_sink)(void *user, const void *data, size_t n);
lx_status io_safetensors_write(const lx_tree *t, const lx_safetensors_opts *opts, st_sink sink, void *user);
lx_status io_safetensors_parse(const unsigned char *data, size_t len, const lx_safetensors_opts *opts, io_map *map,
                               lx_tree **out, lx_tree **metadata);

/* ---- mappings ---- */

lx_status io_map_open(const char *path, io_map **out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lx_fail(errno == ENOENT ? LX_ERR_NOT_FOUND : LX_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lx_fail(LX_ERR_IO, "%s is not a regular file", path);
    }
    io_map *m = calloc(1, sizeof *m);
    if (!m) {
        close(fd);
        return lx_fail(LX_ERR_NO_MEMORY, "out of memory");
    }
    m->refs = 1;
    m->len = (size_t)st.st_size;
    if (m->len) {
        /* Private and writable: arrays handed out may be changed in place (copy-on-write) without
         * touching the file. */
        m->addr = mmap(NULL, m->len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (m->addr == MAP_FAILED) {
            close(fd);
            free(m);
            return lx_fail(LX_ERR_IO, "cannot map %s: %s", path, strerror(errno));
        }
    }
    close(fd);
    *out = m;
    return LX_OK;
}

void io_map_unref(void *p) {
    io_map *m = p;
    if (!m || --m->refs > 0) return;
    if (m->addr) munmap(m->addr, m->len);
    free(m);
}

/* ---- atomic writes ---- */

typedef struct io_atomic {
    FILE *f;
    char *tmp;
    const char *path;
} io_atomic;

static lx_status atomic_begin(const char *path, io_atomic *a) {
    static unsigned counter;
    size_t n = strlen(path) + 64;
    a->tmp = malloc(n);
    if (!a->tmp) return lx_fail(LX_ERR_NO_MEMORY, "out of memory");
    /* Same directory as the target, so the rename cannot cross file systems. */
    snprintf(a->tmp, n, "%s.tmp.%ld.%u", path, (long)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
    int fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        lx_status s = lx_fail(LX_ERR_IO, "cannot create %s: %s", a->tmp, strerror(errno));
        free(a->tmp);
        return s;
    }
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        close(fd);
        unlink(a->tmp);
        free(a->tmp);
        return lx_fail(LX_ERR_IO, "cannot open a stream: %s", strerror(errno));
    }
    setvbuf(a->f, NULL, _IOFBF, 1 << 20);
    a->path = path;
    return LX_OK;
}

static void atomic_abort(io_atomic *a) {
    if (a->f) fclose(a->f);
    unlink(a->tmp);
    free(a->tmp);
    a->f = NULL;
}

static lx_status fsync_dir_of(const char *path) {
    char *dir = lx_strdup(path);
    if (!dir) return lx_fail(LX_ERR_NO_MEMORY, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = 0;
    else if (slash) *slash = 0;
    else strcpy(dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    lx_status s = LX_OK;
    if (fd < 0 || fsync(fd) != 0) s = lx_fail(LX_ERR_IO, "cannot sync directory %s: %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return s;
}

static lx_status atomic_commit(io_atomic *a) {
    lx_status s = LX_OK;
    if (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0)
        s = lx_fail(LX_ERR_IO, "cannot write %s: %s", a->tmp, strerror(errno));
    if (fclose(a->f) != 0 && s == LX_OK) s = lx_fail(LX_ERR_IO, "cannot close %s: %s", a->tmp, strerror(errno));
    a->f = NULL;
    if (s == LX_OK && rename(a->tmp, a->path) != 0)
        s = lx_fail(LX_ERR_IO, "cannot rename %s to %s: %s", a->tmp, a->path, strerror(errno));
    if (s != LX_OK) {
        unlink(a->tmp);
        free(a->tmp);
        return s;
    }
    free(a->tmp);
    return fsync_dir_of(a->path);
}

lx_status lx_atomic_write_file(const char *path, const void *data, size_t len) {
    if (!path) return lx_fail(LX_ERR_INVALID_ARGUMENT, "atomic write: path is NULL");
    io_atomic a;
    LX_TRY(atomic_begin(path, &a));
    if (len && fwrite(data, 1, len, a.f) != len) {
        lx_status s = lx_fail(LX_ERR_IO, "cannot write %s: %s", a.tmp, strerror(errno));
        atomic_abort(&a);
        return s;
    }
    return atomic_commit(&a);
}

/* ---- formats ---- */

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

lx_ckpt_format lx_ckpt_format_of(const char *path) {
    if (!path) return LX_CKPT_AUTO;
    if (ends_with(path, ".safetensors")) return LX_CKPT_SAFETENSORS;
    if (ends_with(path, ".msgpack")) return LX_CKPT_MSGPACK;
    return LX_CKPT_AUTO;
}

/* Whether the first byte a JSON reader would see at 8.. (after JSON whitespace, which the
 * reference reader accepts on either side) is '{'. Looks at most `upto` bytes. */
static bool st_brace(const unsigned char *p, size_t len, size_t upto) {
    size_t end = len - 8 < upto ? len : 8 + upto;
    for (size_t i = 8; i < end; i++) {
        if (p[i] == '{') return true;
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') return false;
    }
    return false;
}

/* A root msgpack_restore reads as a state: a map, an array (a list) or an ext (a bare ndarray,
 * numpy scalar or complex: to_bytes of a single array). */
static bool msgpack_root(unsigned char c) {
    return (c >= 0x80 && c <= 0x9f) || c == 0xdc || c == 0xdd || c == 0xde || c == 0xdf || c == 0xc7 || c == 0xc8 ||
           c == 0xc9 || (c >= 0xd4 && c <= 0xd8);
}

static lx_ckpt_format sniff_bytes(const unsigned char *p, size_t len) {
    uint64_t n = 0;
    if (len >= 9) {
        for (int k = 7; k >= 0; k--) n = n << 8 | p[k];
        if (n <= len - 8 && n <= 100000000u && st_brace(p, len, (size_t)n)) return LX_CKPT_SAFETENSORS;
    }
    if (len >= 1 && msgpack_root(p[0])) return LX_CKPT_MSGPACK;
    /* '{' at byte 8 but a header length that cannot be right: safetensors, whose reader then
     * names the length and the input's size */
    if (len >= 9 && st_brace(p, len, 64)) return LX_CKPT_SAFETENSORS;
    return LX_CKPT_AUTO;
}

lx_status lx_ckpt_sniff(const char *path, lx_ckpt_format *out) {
    io_map *m;
    LX_TRY(io_map_open(path, &m));
    lx_ckpt_format f = sniff_bytes(m->addr, m->len);
    io_map_unref(m);
    if (f == LX_CKPT_AUTO)
        return lx_fail(LX_ERR_FORMAT,
                       "%s is neither a safetensors file nor a Flax msgpack map: expected an 8-byte little-endian "
                       "header length and '{' at byte 8, or a msgpack map, array or ext at byte 0", path);
    *out = f;
    return LX_OK;
}

static int file_sink(void *f, const void *data, size_t n) { return fwrite(data, 1, n, f) == n ? 0 : -1; }

/* Both formats' atomic save; st_opts for safetensors only. */
static lx_status ckpt_save(const char *path, const lx_tree *t, lx_ckpt_format fmt, const lx_safetensors_opts *st_opts) {
    if (!path || !t) return lx_fail(LX_ERR_INVALID_ARGUMENT, "checkpoint save: path or tree is NULL");
    if (fmt == LX_CKPT_AUTO) fmt = lx_ckpt_format_of(path);
    if (fmt == LX_CKPT_AUTO) fmt = LX_CKPT_MSGPACK;
    io_atomic a;
    LX_TRY(atomic_begin(path, &a));
    lx_status s;
    if (fmt == LX_CKPT_SAFETENSORS) {
        s = io_safetensors_write(t, st_opts, file_sink, a.f);
    } else {
        lx_value root = lx_tree_v((lx_tree *)t);
        s = lx_msgpack_write(a.f, &root, NULL);
    }
    if (s != LX_OK) {
        atomic_abort(&a);
        return lx_fail_context(s, "saving %s: ", path);
    }
    return atomic_commit(&a);
}

lx_status lx_ckpt_save(const char *path, const lx_tree *t, lx_ckpt_format fmt) { return ckpt_save(path, t, fmt, NULL); }

lx_status lx_safetensors_save(const char *path, const lx_tree *t, const lx_safetensors_opts *opts) {
    return ckpt_save(path, t, LX_CKPT_SAFETENSORS, opts);
}

lx_status lx_ckpt_load(const char *path, lx_tree **out) {
    if (!path || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "checkpoint load: path or out is NULL");
    io_map *m;
    LX_TRY(io_map_open(path, &m));
    lx_ckpt_format f = sniff_bytes(m->addr, m->len);
    lx_status s;
    if (f == LX_CKPT_SAFETENSORS) {
        s = io_safetensors_parse(m->addr, m->len, NULL, m, out, NULL);
    } else if (f == LX_CKPT_MSGPACK) {
        if (m->len) madvise(m->addr, m->len, MADV_SEQUENTIAL);
        lx_value v = lx_none();
        s = io_msgpack_from_map(m, &v);
        if (s == LX_OK && v.kind != LX_V_TREE) {
            /* valid for msgpack_restore (to_bytes of a bare array or scalar), but not a tree */
            lx_raw *raw = lx_value_raw(&v);
            char b[64];
            s = lx_fail(LX_ERR_UNSUPPORTED,
                        "msgpack: at byte 0: the root is %s%s, not a map; a checkpoint load returns a tree "
                        "(lx_msgpack_from_bytes reads any root)", raw || v.kind == LX_V_ARRAY ? "an array of " : "",
                        raw ? raw->dtype : v.kind == LX_V_ARRAY ? lx_dtype_name(v.u.array->dtype) : lx_value_str(&v, b, sizeof b));
            lx_value_free(&v);
        }
        if (s == LX_OK) *out = v.u.tree;
    } else {
        s = lx_fail(LX_ERR_FORMAT, "at byte 0: expected a safetensors header or a msgpack map");
    }
    io_map_unref(m);
    if (s != LX_OK) lx_fail_context(s, "%s: ", path);
    return s;
}

lx_status lx_safetensors_load(const char *path, const lx_safetensors_opts *opts, lx_tree **out, lx_tree **metadata) {
    if (!path || !out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "safetensors load: path or out is NULL");
    io_map *m;
    LX_TRY(io_map_open(path, &m));
    lx_status s = io_safetensors_parse(m->addr, m->len, opts, m, out, metadata);
    io_map_unref(m);
    if (s != LX_OK) lx_fail_context(s, "%s: ", path);
    return s;
}

/* ---- pure dicts and restore ---- */

static lx_status pure_rec(const lx_tree *t, lx_tree **out) {
    lx_tree *o = lx_tree_new();
    if (!o) return lx_last_status();
    lx_status s = LX_OK;
    for (size_t i = 0; i < lx_tree_len(t) && s == LX_OK; i++) {
        const lx_value *v = lx_tree_at(t, i);
        const char *k = lx_tree_key(t, i);
        if (v->kind == LX_V_TREE) {
            lx_tree *sub;
            s = pure_rec(v->u.tree, &sub);
            if (s == LX_OK) {
                s = lx_tree_set(o, k, lx_tree_v(sub));
                lx_tree_release(sub);
            }
        } else if (v->kind == LX_V_VARIABLE) {
            s = lx_tree_set(o, k, lx_array_v(lx_variable_get_value(v->u.var)));
        } else if (v->kind == LX_V_BOX) {
            lx_tree *sub = lx_tree_new();
            s = sub ? lx_tree_set(sub, "value", lx_array_v(lx_box_unbox(v->u.box))) : lx_last_status();
            if (s == LX_OK) s = lx_tree_set(o, k, lx_tree_v(sub));
            lx_tree_release(sub);
        } else {
            s = lx_tree_set(o, k, *v);
        }
    }
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

lx_status lx_ckpt_pure_dict(const lx_tree *t, lx_tree **out) {
    if (!t) return lx_null_input("pure_dict: tree is NULL");
    return pure_rec(t, out);
}

lx_restore_opts lx_restore_defaults(void) {
    lx_restore_opts o = {true, true};
    return o;
}

typedef struct rst {
    lx_restore_opts o;
    char path[2048];
} rst;

static const char *cur(const rst *r) { return r->path[0] ? r->path : "."; }

static void push(rst *r, const char *k, size_t *save) {
    *save = strlen(r->path);
    snprintf(r->path + *save, sizeof r->path - *save, "%s%s", *save ? "/" : "./", k);
}

/* The state leaf as an array like `want` (dtype and shape checked when asked). */
static lx_status state_array(rst *r, const lx_array *want, const lx_value *sv, lx_array **out) {
    lx_array *a = NULL;
    lx_raw *raw = lx_value_raw(sv);
    char b1[128], b2[128];
    if (sv->kind == LX_V_ARRAY) {
        a = lx_retain(sv->u.array);
    } else if (raw && raw->kind != LX_RAW_BYTES && raw->kind != LX_RAW_COMPLEX) {
        if (lx_raw_to_array(raw, &a) != LX_OK)
            return lx_fail(LX_ERR_DTYPE, "Dtype mismatch at path %s: target %s, state %s", cur(r),
                           want ? lx_array_sig(want, b1, sizeof b1) : "an array", raw->dtype);
    } else if ((sv->kind == LX_V_INT || sv->kind == LX_V_FLOAT || sv->kind == LX_V_BOOL) && want && want->ndim == 0) {
        /* A counter saved as a native int (TrainState.step never jitted) restores into a 0-d
         * array target (spec/c-anchors.md §4.2: readers accept both). */
        double d = sv->kind == LX_V_INT ? (double)sv->u.i : sv->kind == LX_V_FLOAT ? sv->u.f : (double)sv->u.b;
        a = lx_array_new(want->dtype, 0, NULL);
        if (!a) return lx_last_status();
        switch (want->dtype) {
        case LX_F32: lx_f32(a)[0] = (float)d; break;
        case LX_I32: lx_i32(a)[0] = (int32_t)d; break;
        case LX_U32: lx_u32(a)[0] = (uint32_t)d; break;
        case LX_BOOL: lx_bool(a)[0] = d != 0; break;
        default: lx_release(a); return lx_fail(LX_ERR_DTYPE, "Dtype mismatch at path %s", cur(r));
        }
    } else {
        char vb[64];
        return lx_fail(LX_ERR_TYPE, "Expected an array at path %s, the state has %s", cur(r),
                       sv->kind == LX_V_TREE ? "a dict" : lx_value_str(sv, vb, sizeof vb));
    }
    if (want && r->o.check_shapes) {
        if (a->dtype != want->dtype) {
            lx_status s = lx_fail(LX_ERR_DTYPE, "Dtype mismatch at path %s: target %s, state %s", cur(r),
                                  lx_array_sig(want, b1, sizeof b1), lx_array_sig(a, b2, sizeof b2));
            lx_release(a);
            return s;
        }
        if (!lx_same_shape(a, want)) {
            lx_status s = lx_fail(LX_ERR_SHAPE, "Shape mismatch at path %s: target %s, state %s", cur(r),
                                  lx_array_sig(want, b1, sizeof b1), lx_array_sig(a, b2, sizeof b2));
            lx_release(a);
            return s;
        }
    }
    *out = a;
    return LX_OK;
}

static lx_status restore_rec(rst *r, const lx_value *tv, const lx_value *sv, lx_value *out);

static lx_status key_set_error(rst *r, const lx_tree *have, const lx_tree *other, bool target_side) {
    char buf[1024];
    size_t n = 0;
    bool first = true;
    for (size_t i = 0; i < lx_tree_len(have); i++) {
        const char *k = lx_tree_key(have, i);
        if (lx_tree_get(other, k)) continue;
        n += (size_t)snprintf(buf + n, n < sizeof buf ? sizeof buf - n : 0, "%s'%s'", first ? "" : ", ", k);
        first = false;
    }
    if (first) return LX_OK;
    if (n >= sizeof buf) strcpy(buf + sizeof buf - 5, "...");
    if (target_side)
        return lx_fail(LX_ERR_NOT_FOUND,
                       "The target dict keys and state dict keys do not match, target dict contains keys {%s} which "
                       "are not present in state dict at path %s", buf, cur(r));
    return lx_fail(LX_ERR_INVALID_ARGUMENT,
                   "The state dict contains keys {%s} which are not present in the target dict at path %s", buf, cur(r));
}

static lx_status restore_tree(rst *r, const lx_tree *tt, const lx_value *sv, lx_value *out) {
    if (sv->kind != LX_V_TREE) {
        char vb[64];
        return lx_fail(LX_ERR_TYPE, "Expected a dict at path %s, the state has %s", cur(r), lx_value_str(sv, vb, sizeof vb));
    }
    const lx_tree *st = sv->u.tree;
    LX_TRY(key_set_error(r, tt, st, true));
    if (!r->o.allow_extra) LX_TRY(key_set_error(r, st, tt, false));
    lx_tree *o = lx_tree_new();
    if (!o) return lx_last_status();
    lx_status s = LX_OK;
    for (size_t i = 0; i < lx_tree_len(tt) && s == LX_OK; i++) {
        size_t save;
        const char *k = lx_tree_key(tt, i);
        push(r, k, &save);
        lx_value v = lx_none();
        s = restore_rec(r, lx_tree_at(tt, i), lx_tree_get(st, k), &v);
        r->path[save] = 0;
        if (s == LX_OK) s = lx_tree_set(o, k, v);
        lx_value_free(&v);
    }
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = lx_tree_v(o);
    return LX_OK;
}

static lx_status restore_rec(rst *r, const lx_value *tv, const lx_value *sv, lx_value *out) {
    lx_array *a = NULL;
    switch (tv->kind) {
    case LX_V_TREE: return restore_tree(r, tv->u.tree, sv, out);
    case LX_V_ARRAY:
        LX_TRY(state_array(r, tv->u.array, sv, &a));
        *out = lx_array_v(a);
        return LX_OK;
    case LX_V_VARIABLE: {
        LX_TRY(state_array(r, lx_variable_get_value(tv->u.var), sv, &a));
        lx_variable *nv;
        lx_status s = lx_variable_new_md(lx_variable_type(tv->u.var), a, lx_variable_metadata(tv->u.var), &nv);
        lx_release(a);
        if (s != LX_OK) return s;
        *out = lx_var_v(nv);
        return LX_OK;
    }
    case LX_V_BOX: {
        const lx_value *inner = sv;
        size_t save = 0;
        bool pushed = false;
        if (sv->kind == LX_V_TREE) {
            inner = lx_tree_get(sv->u.tree, "value");
            if (!inner || lx_tree_len(sv->u.tree) != 1)
                return lx_fail(LX_ERR_NOT_FOUND, "The field names of the state dict and the dataclass do not match, "
                               "expected {'value'} at path %s", cur(r));
            push(r, "value", &save);
            pushed = true;
        }
        lx_status s = state_array(r, lx_box_unbox(tv->u.box), inner, &a);
        if (pushed) r->path[save] = 0;
        if (s != LX_OK) return s;
        lx_box *nb;
        s = lx_box_replace_boxed(tv->u.box, a, &nb);
        lx_release(a);
        if (s != LX_OK) return s;
        *out = lx_box_v(nb);
        return LX_OK;
    }
    case LX_V_INTS:
        if (sv->kind == LX_V_TREE && lx_tree_len(sv->u.tree) == (size_t)tv->u.ints.n) {
            int64_t vals[64];
            int n = tv->u.ints.n;
            bool ok = n <= 64;
            for (int i = 0; i < n && ok; i++) {
                char k[16];
                snprintf(k, sizeof k, "%d", i);
                const lx_value *x = lx_tree_get(sv->u.tree, k);
                ok = x && x->kind == LX_V_INT;
                if (ok) vals[i] = x->u.i;
            }
            if (ok) return lx_value_dup(&(lx_value){LX_V_INTS, {.ints = {n, vals}}}, out);
        }
        return lx_value_dup(sv, out);
    case LX_V_PTR:
        if (!lx_value_raw(tv))
            return lx_fail(LX_ERR_TYPE, "cannot restore a %s object at path %s", tv->u.ptr.tag ? tv->u.ptr.tag : "pointer", cur(r));
        return lx_value_dup(sv, out);
    default:
        /* Unregistered leaves take the state's value as it is (Flax's from_state_dict). */
        return lx_value_dup(sv, out);
    }
}

lx_status lx_ckpt_restore(const lx_tree *target, const lx_tree *state, const lx_restore_opts *opts, lx_tree **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "restore: out is NULL");
    if (!target || !state) return lx_null_input("restore: target or state is NULL");
    rst *r = calloc(1, sizeof *r);
    if (!r) return lx_fail(LX_ERR_NO_MEMORY, "out of memory");
    r->o = opts ? *opts : lx_restore_defaults();
    lx_value tv = lx_tree_v((lx_tree *)target), sv = lx_tree_v((lx_tree *)state), o = lx_none();
    lx_status s = restore_rec(r, &tv, &sv, &o);
    free(r);
    if (s == LX_OK) *out = o.u.tree;
    return s;
}
