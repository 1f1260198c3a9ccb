/* Trees: ordered nested maps with string keys (Flax's nested dicts, NNX State).
 *
 * Each level is a pair of parallel arrays (keys, values) searched linearly: a level holds the
 * children of one module or the collections of one variables dict, rarely more than a few dozen
 * entries, and keeping insertion order matters more than lookup speed here. */
#include "linnx/tree.h"

#include <stdlib.h>
#include <string.h>

#include "linnx/box.h"
#include "linnx/variable.h"
#include "tree_internal.h"
#include "status_internal.h"

struct lx_tree {
    int refcount;
    size_t len, cap;
    char **keys;
    lx_value *vals;
};

/* ---- refcounts ---- */

lx_tree *lx_tree_new(void) {
    lx_tree *t = calloc(1, sizeof *t);
    if (!t) {
        lx_fail(LX_ERR_NO_MEMORY, "tree: out of memory");
        return NULL;
    }
    t->refcount = 1;
    return t;
}

lx_tree *lx_tree_retain(lx_tree *t) {
    if (t) t->refcount++;
    return t;
}

bool lx_tree_is_shared(const lx_tree *t) { return t && t->refcount > 1; }

void lx_tree_release(lx_tree *t) {
    if (!t || --t->refcount > 0) return;
    for (size_t i = 0; i < t->len; i++) {
        free(t->keys[i]);
        lx_value_free(&t->vals[i]);
    }
    free(t->keys);
    free(t->vals);
    free(t);
}

/* ---- one level ---- */

static long find_n(const lx_tree *t, const char *key, size_t n) {
    for (size_t i = 0; i < t->len; i++)
        if (strncmp(t->keys[i], key, n) == 0 && t->keys[i][n] == '\0') return (long)i;
    return -1;
}

/* One strcmp per key whose first byte matches: lookups run for every param of every layer on
 * every apply (no strlen of the key, no strncmp call for the keys that differ at once). */
static long find(const lx_tree *t, const char *key) {
    char c0 = key[0];
    for (size_t i = 0; i < t->len; i++)
        if (t->keys[i][0] == c0 && strcmp(t->keys[i], key) == 0) return (long)i;
    return -1;
}

static lx_status check_key(const char *key) {
    if (!key) return lx_fail(LX_ERR_INVALID_ARGUMENT, "tree: key is NULL");
    if (!key[0]) return lx_fail(LX_ERR_INVALID_ARGUMENT, "tree: empty key");
    if (strchr(key, '/'))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "tree: key '%s' contains '/', the path separator", key);
    return LX_OK;
}

/* Does `hay` reach `needle` through sub-maps? Storing a tree that reaches its container would
 * make a reference cycle (never freed, and endless recursion when walked). */
static bool reaches(const lx_tree *hay, const lx_tree *needle) {
    if (hay == needle) return true;
    for (size_t i = 0; i < hay->len; i++)
        if (hay->vals[i].kind == LX_V_TREE && reaches(hay->vals[i].u.tree, needle)) return true;
    return false;
}

/* Store an owned value (moved in: on failure it is freed). */
static lx_status put_owned(lx_tree *t, const char *key, lx_value *owned) {
    long i = find(t, key);
    if (i >= 0) {
        lx_value_free(&t->vals[i]);
        t->vals[i] = *owned;
        *owned = lx_none();
        return LX_OK;
    }
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4;
        char **keys = realloc(t->keys, cap * sizeof *keys);
        if (keys) t->keys = keys;
        lx_value *vals = keys ? realloc(t->vals, cap * sizeof *vals) : NULL;
        if (!vals) {
            lx_value_free(owned);
            return lx_fail(LX_ERR_NO_MEMORY, "tree: out of memory");
        }
        t->vals = vals;
        t->cap = cap;
    }
    char *k = lx_strdup_(key);
    if (!k) {
        lx_value_free(owned);
        return lx_fail(LX_ERR_NO_MEMORY, "tree: out of memory");
    }
    t->keys[t->len] = k;
    t->vals[t->len] = *owned;
    t->len++;
    *owned = lx_none();
    return LX_OK;
}

/* Store lx_value_dup(v); check_cycle is off only for maps this file just made. */
static lx_status put(lx_tree *t, const char *key, const lx_value *v, bool check_cycle) {
    if (check_cycle && v->kind == LX_V_TREE && v->u.tree && reaches(v->u.tree, t))
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "tree: cannot store a tree under '%s' inside itself (a reference cycle)", key);
    lx_value owned;
    LX_TRY(lx_value_dup(v, &owned));
    return put_owned(t, key, &owned);
}

lx_status lx_tree_set(lx_tree *t, const char *key, lx_value v) {
    if (!t) return lx_null_input("tree_set: tree is NULL");
    LX_TRY(check_key(key));
    LX_TRY(lx_check_value_(&v, "tree_set"));
    return put(t, key, &v, true);
}

const lx_value *lx_tree_get(const lx_tree *t, const char *key) {
    if (!t || !key) return NULL;
    long i = find(t, key);
    return i < 0 ? NULL : &t->vals[i];
}

size_t lx_tree_len(const lx_tree *t) { return t ? t->len : 0; }

const char *lx_tree_key(const lx_tree *t, size_t i) { return t && i < t->len ? t->keys[i] : NULL; }

const lx_value *lx_tree_at(const lx_tree *t, size_t i) { return t && i < t->len ? &t->vals[i] : NULL; }

static void remove_at(lx_tree *t, size_t i) {
    free(t->keys[i]);
    lx_value_free(&t->vals[i]);
    memmove(t->keys + i, t->keys + i + 1, (t->len - i - 1) * sizeof *t->keys);
    memmove(t->vals + i, t->vals + i + 1, (t->len - i - 1) * sizeof *t->vals);
    t->len--;
}

lx_status lx_tree_delete(lx_tree *t, const char *key) {
    if (!t) return lx_null_input("tree_delete: tree is NULL");
    if (!key) return lx_fail(LX_ERR_INVALID_ARGUMENT, "tree: key is NULL");
    long i = find(t, key);
    if (i < 0) return lx_fail(LX_ERR_NOT_FOUND, "tree: no key '%s' at the root", key);
    remove_at(t, (size_t)i);
    return LX_OK;
}

/* ---- paths ---- */

/* A path split into NUL-terminated segments over a private copy. `where(i)` in messages is the
 * original path up to segment i ("params/Dense_0"), or "the root". */
typedef struct {
    char *buf;
    char **seg;
    size_t n;
    const char *path;
    /* paths of up to 256 bytes and 16 segments (every path of a model's variables) split here,
     * without a heap allocation: a training step looks paths up by the hundred */
    char ibuf[256];
    char *iseg[16];
} split_path;

static void split_free(split_path *s) {
    if (s->buf != s->ibuf) free(s->buf);
    if (s->seg != s->iseg) free(s->seg);
}

static lx_status split(const char *path, split_path *s, bool report) {
    memset(s, 0, sizeof *s);
    if (!path) return report ? lx_fail(LX_ERR_INVALID_ARGUMENT, "tree: path is NULL") : LX_ERR_INVALID_ARGUMENT;
    s->path = path;
    size_t n = 1;
    for (const char *p = path; *p; p++) n += *p == '/';
    size_t len = strlen(path);
    s->buf = len < sizeof s->ibuf ? memcpy(s->ibuf, path, len + 1) : lx_strdup_(path);
    s->seg = n <= sizeof s->iseg / sizeof s->iseg[0] ? s->iseg : malloc(n * sizeof *s->seg);
    if (!s->buf || !s->seg) {
        split_free(s);
        return lx_fail(LX_ERR_NO_MEMORY, "tree: out of memory");
    }
    char *p = s->buf;
    for (size_t i = 0; i < n; i++) {
        s->seg[i] = p;
        char *slash = strchr(p, '/');
        if (slash) *slash = '\0';
        if (!*p) {
            split_free(s);
            return report ? lx_fail(LX_ERR_INVALID_ARGUMENT, "tree: invalid path '%s' (empty key)", path)
                          : LX_ERR_INVALID_ARGUMENT;
        }
        p = slash ? slash + 1 : p + strlen(p);
    }
    s->n = n;
    return LX_OK;
}

/* Length of the original path before segment i, without the trailing '/'. */
static int prefix_len(const split_path *s, size_t i) {
    return i == 0 ? 0 : (int)(s->seg[i] - s->buf - 1);
}

static const char *where(const split_path *s, size_t i, char *buf, size_t cap) {
    if (i == 0) snprintf(buf, cap, "the root");
    else snprintf(buf, cap, "%.*s", prefix_len(s, i), s->path);
    return buf;
}

/* Walk segments [0, upto) as maps. Stops early at a missing key (*reached = how many segments
 * were walked) and fails on a leaf in the way. */
static lx_status walk(const lx_tree *t, const split_path *s, size_t upto, const char *verb,
                      const lx_tree **cur, size_t *reached) {
    *cur = t;
    for (size_t i = 0; i < upto; i++) {
        long k = find(*cur, s->seg[i]);
        if (k < 0) {
            *reached = i;
            return LX_OK;
        }
        const lx_value *v = &(*cur)->vals[k];
        if (v->kind != LX_V_TREE) {
            char w[512], leaf[256];
            return lx_fail(LX_ERR_TYPE, "tree: cannot %s '%s': '%s' at %s is a leaf (%s), not a map", verb,
                           s->path, s->seg[i], where(s, i, w, sizeof w), lx_leaf_str_(v, leaf, sizeof leaf));
        }
        *cur = v->u.tree;
    }
    *reached = upto;
    return LX_OK;
}

static lx_status get_path(const lx_tree *t, const char *path, const lx_value **out, bool report) {
    split_path s;
    lx_status st = split(path, &s, report);
    if (st != LX_OK) return st;
    const lx_tree *cur = t;
    for (size_t i = 0; i < s.n; i++) {
        long k = find(cur, s.seg[i]);
        if (k < 0) {
            char w[512];
            st = report ? lx_fail(LX_ERR_NOT_FOUND, "tree: no key '%s' at %s", s.seg[i], where(&s, i, w, sizeof w))
                        : LX_ERR_NOT_FOUND;
            break;
        }
        const lx_value *v = &cur->vals[k];
        if (i + 1 == s.n) {
            *out = v;
            break;
        }
        if (v->kind != LX_V_TREE) {
            char w[512], leaf[256];
            st = report ? lx_fail(LX_ERR_NOT_FOUND, "tree: no key '%s' at %s: it is a leaf (%s), not a map",
                                  s.seg[i + 1], where(&s, i + 1, w, sizeof w), lx_leaf_str_(v, leaf, sizeof leaf))
                        : LX_ERR_NOT_FOUND;
            break;
        }
        cur = v->u.tree;
    }
    split_free(&s);
    return st;
}

lx_status lx_tree_get_path(const lx_tree *t, const char *path, const lx_value **out) {
    if (!out) return lx_null_out("tree_get_path");
    if (!t) return lx_null_input("tree_get_path: tree is NULL");
    return get_path(t, path, out, true);
}

const lx_value *lx_tree_find(const lx_tree *t, const char *path) {
    if (!t || !path) return NULL;
    /* Walks the path in place, allocating nothing, so NULL always means absent (never "out of
     * memory" folded into "absent"), and the thread's last message stays untouched: a miss is
     * an answer, not a failure. An invalid path (an empty key) is also just "absent". */
    const lx_tree *cur = t;
    const char *p = path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0) return NULL;
        long k = find_n(cur, p, n);
        if (k < 0) return NULL;
        const lx_value *v = &cur->vals[k];
        if (!slash) return v;
        if (v->kind != LX_V_TREE) return NULL;
        cur = v->u.tree;
        p = slash + 1;
    }
}

/* The set behind set_path and unflatten. `strict` (unflatten) also refuses to replace a map by
 * a leaf, since a path that is both is a contradiction in a flat list. */
static lx_status set_path(lx_tree *t, const char *path, const lx_value *v, bool strict) {
    split_path s;
    LX_TRY(split(path, &s, true));
    const lx_tree *ccur;
    size_t reached;
    lx_status st = walk(t, &s, s.n - 1, "set", &ccur, &reached);
    lx_tree *cur = (lx_tree *)ccur; /* walk is read-only; the tree it walked is ours to change */
    if (st != LX_OK) goto done;
    if (v->kind == LX_V_TREE && reaches(v->u.tree, cur)) {
        st = lx_fail(LX_ERR_INVALID_ARGUMENT, "tree: cannot store a tree at '%s' inside itself (a reference cycle)",
                     path);
        goto done;
    }
    if (reached == s.n - 1) {
        const lx_value *old = lx_tree_get(cur, s.seg[s.n - 1]);
        if (strict && old && old->kind == LX_V_TREE) {
            st = lx_fail(LX_ERR_TYPE, "tree: path '%s' is both a leaf and a map", path);
            goto done;
        }
        st = put(cur, s.seg[s.n - 1], v, false);
        goto done;
    }
    /* Build the missing chain off to the side and attach it last, so a failure part-way leaves
     * `t` untouched. */
    lx_tree *chain = lx_tree_new();
    if (!chain) {
        st = LX_ERR_NO_MEMORY;
        goto done;
    }
    st = put(chain, s.seg[s.n - 1], v, false);
    for (size_t i = s.n - 1; st == LX_OK && i-- > reached + 1;) {
        lx_tree *up = lx_tree_new();
        if (!up) {
            st = LX_ERR_NO_MEMORY;
            break;
        }
        st = put(up, s.seg[i], &(lx_value){LX_V_TREE, {.tree = chain}}, false);
        lx_tree_release(chain);
        chain = up;
    }
    if (st == LX_OK) st = put(cur, s.seg[reached], &(lx_value){LX_V_TREE, {.tree = chain}}, false);
    lx_tree_release(chain);
done:
    split_free(&s);
    return st;
}

lx_status lx_tree_set_path(lx_tree *t, const char *path, lx_value v) {
    if (!t) return lx_null_input("tree_set_path: tree is NULL");
    LX_TRY(lx_check_value_(&v, "tree_set_path"));
    return set_path(t, path, &v, false);
}

lx_status lx_tree_delete_path(lx_tree *t, const char *path) {
    if (!t) return lx_null_input("tree_delete_path: tree is NULL");
    split_path s;
    LX_TRY(split(path, &s, true));
    const lx_tree *cur;
    size_t reached;
    lx_status st = walk(t, &s, s.n - 1, "delete", &cur, &reached);
    if (st == LX_OK) {
        long k = reached == s.n - 1 ? find(cur, s.seg[s.n - 1]) : -1;
        if (k < 0) {
            char w[512];
            st = lx_fail(LX_ERR_NOT_FOUND, "tree: no key '%s' at %s", s.seg[reached], where(&s, reached, w, sizeof w));
        } else {
            remove_at((lx_tree *)cur, (size_t)k);
        }
    }
    split_free(&s);
    return st;
}

/* ---- flat views ---- */

lx_status lx_flat_append(lx_flat *f, const char *path, lx_value v) {
    if (!f) return lx_null_out("flat_append");
    if (!path) return lx_fail(LX_ERR_INVALID_ARGUMENT, "flat: path is NULL");
    LX_TRY(lx_check_value_(&v, "flat_append"));
    if (f->len == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        lx_flat_item *items = realloc(f->items, cap * sizeof *items);
        if (!items) return lx_fail(LX_ERR_NO_MEMORY, "flat: out of memory");
        f->items = items;
        f->cap = cap;
    }
    lx_flat_item *it = &f->items[f->len];
    it->path = lx_strdup_(path);
    if (!it->path) return lx_fail(LX_ERR_NO_MEMORY, "flat: out of memory");
    lx_status st = lx_value_dup(&v, &it->value);
    if (st != LX_OK) {
        free(it->path);
        return st;
    }
    f->len++;
    return LX_OK;
}

void lx_flat_free(lx_flat *f) {
    if (!f) return;
    for (size_t i = 0; i < f->len; i++) {
        free(f->items[i].path);
        lx_value_free(&f->items[i].value);
    }
    free(f->items);
    memset(f, 0, sizeof *f);
}

/* Join prefix and key into a new string ("a/b" + "c" -> "a/b/c"). */
static char *join(const char *prefix, const char *key) {
    size_t np = prefix ? strlen(prefix) : 0, nk = strlen(key);
    char *p = malloc(np + nk + 2);
    if (!p) return NULL;
    if (np) {
        memcpy(p, prefix, np);
        p[np++] = '/';
    }
    memcpy(p + np, key, nk + 1);
    return p;
}

static lx_status flatten_rec(const lx_tree *t, const char *prefix, lx_flat *out) {
    for (size_t i = 0; i < t->len; i++) {
        char *path = join(prefix, t->keys[i]);
        if (!path) return lx_fail(LX_ERR_NO_MEMORY, "tree: out of memory");
        lx_status st = t->vals[i].kind == LX_V_TREE ? flatten_rec(t->vals[i].u.tree, path, out)
                                                    : lx_flat_append(out, path, t->vals[i]);
        free(path);
        LX_TRY(st);
    }
    return LX_OK;
}

lx_status lx_tree_flatten(const lx_tree *t, lx_flat *out) {
    if (!out) return lx_null_out("tree_flatten");
    memset(out, 0, sizeof *out);
    if (!t) return lx_null_input("tree_flatten: tree is NULL");
    lx_status st = flatten_rec(t, NULL, out);
    if (st != LX_OK) lx_flat_free(out);
    return st;
}

lx_status lx_tree_unflatten(const lx_flat *f, lx_tree **out) {
    if (!out) return lx_null_out("tree_unflatten");
    *out = NULL;
    lx_tree *t = lx_tree_new();
    if (!t) return LX_ERR_NO_MEMORY;
    for (size_t i = 0; i < (f ? f->len : 0); i++) {
        const lx_value *v = &f->items[i].value;
        lx_status st = lx_check_value_(v, "tree_unflatten");
        /* Later paths insert into the maps of this tree: a tree value given in the list is
         * copied so that never writes into a caller's map. */
        lx_value copy = *v;
        if (st == LX_OK && v->kind == LX_V_TREE) {
            copy.u.tree = lx_tree_copy(v->u.tree);
            if (!copy.u.tree) st = LX_ERR_NO_MEMORY;
        }
        if (st == LX_OK) st = set_path(t, f->items[i].path, &copy, true);
        if (v->kind == LX_V_TREE) lx_tree_release(copy.u.tree);
        if (st != LX_OK) {
            lx_tree_release(t);
            return st;
        }
    }
    *out = t;
    return LX_OK;
}

lx_status lx_tree_merge(const lx_tree *a, const lx_tree *b, lx_tree **out) {
    if (!out) return lx_null_out("tree_merge");
    *out = NULL;
    if (!a || !b) return lx_null_input("tree_merge: tree is NULL");
    lx_flat fa, fb;
    LX_TRY(lx_tree_flatten(a, &fa));
    lx_status st = lx_tree_flatten(b, &fb);
    if (st != LX_OK) {
        lx_flat_free(&fa);
        return st;
    }
    /* Later wins because unflatten replaces a repeated path in place. */
    for (size_t i = 0; st == LX_OK && i < fb.len; i++) st = lx_flat_append(&fa, fb.items[i].path, fb.items[i].value);
    if (st == LX_OK) st = lx_tree_unflatten(&fa, out);
    lx_flat_free(&fa);
    lx_flat_free(&fb);
    return st;
}

/* ---- whole-tree operations ---- */

lx_tree *lx_tree_copy(const lx_tree *t) {
    if (!t) {
        lx_null_input("tree_copy: tree is NULL");
        return NULL;
    }
    lx_tree *c = lx_tree_new();
    if (!c) return NULL;
    for (size_t i = 0; i < t->len; i++) {
        lx_status st;
        if (t->vals[i].kind == LX_V_TREE) {
            lx_tree *sub = lx_tree_copy(t->vals[i].u.tree);
            st = sub ? put(c, t->keys[i], &(lx_value){LX_V_TREE, {.tree = sub}}, false) : LX_ERR_NO_MEMORY;
            lx_tree_release(sub);
        } else {
            st = put(c, t->keys[i], &t->vals[i], false);
        }
        if (st != LX_OK) {
            lx_tree_release(c);
            return NULL;
        }
    }
    return c;
}

bool lx_tree_equal(const lx_tree *a, const lx_tree *b) {
    if (a == b) return true;
    if (!a || !b || a->len != b->len) return false;
    for (size_t i = 0; i < a->len; i++) {
        const lx_value *vb = lx_tree_get(b, a->keys[i]);
        if (!vb || !lx_value_equal(&a->vals[i], vb)) return false;
    }
    return true;
}

static lx_status map_rec(const lx_tree *t, const char *prefix, lx_tree_map_fn fn, void *user, lx_tree *out) {
    for (size_t i = 0; i < t->len; i++) {
        char *path = join(prefix, t->keys[i]);
        if (!path) return lx_fail(LX_ERR_NO_MEMORY, "tree: out of memory");
        lx_status st;
        lx_value nv = lx_none();
        if (t->vals[i].kind == LX_V_TREE) {
            lx_tree *sub = lx_tree_new();
            st = sub ? map_rec(t->vals[i].u.tree, path, fn, user, sub) : LX_ERR_NO_MEMORY;
            nv = lx_tree_v(sub);
            if (st != LX_OK) lx_value_free(&nv);
        } else {
            st = fn(path, &t->vals[i], user, &nv);
            if (st != LX_OK) lx_value_free(&nv);
        }
        if (st == LX_OK) st = put_owned(out, t->keys[i], &nv);
        free(path);
        LX_TRY(st);
    }
    return LX_OK;
}

lx_status lx_tree_map(const lx_tree *t, lx_tree_map_fn fn, void *user, lx_tree **out) {
    if (!out) return lx_null_out("tree_map");
    *out = NULL;
    if (!t) return lx_null_input("tree_map: tree is NULL");
    if (!fn) return lx_fail(LX_ERR_INVALID_ARGUMENT, "tree_map: function is NULL");
    lx_tree *r = lx_tree_new();
    if (!r) return LX_ERR_NO_MEMORY;
    lx_status st = map_rec(t, NULL, fn, user, r);
    if (st != LX_OK) {
        lx_tree_release(r);
        return st;
    }
    *out = r;
    return LX_OK;
}

size_t lx_tree_count_leaves(const lx_tree *t) {
    size_t n = 0;
    for (size_t i = 0; t && i < t->len; i++)
        n += t->vals[i].kind == LX_V_TREE ? lx_tree_count_leaves(t->vals[i].u.tree) : 1;
    return n;
}

/* The array a leaf stands for (a Variable's or a box's value), or NULL for scalars. */
static const lx_array *leaf_array(const lx_value *v) {
    switch (v->kind) {
    case LX_V_ARRAY: return v->u.array;
    case LX_V_VARIABLE: return lx_variable_get_value(v->u.var);
    case LX_V_BOX: return lx_box_unbox(v->u.box);
    default: return NULL;
    }
}

int64_t lx_tree_count_params(const lx_tree *t) {
    int64_t n = 0;
    for (size_t i = 0; t && i < t->len; i++) {
        const lx_value *v = &t->vals[i];
        if (v->kind == LX_V_TREE) {
            n += lx_tree_count_params(v->u.tree);
        } else {
            const lx_array *a = leaf_array(v);
            if (a) n += a->size;
        }
    }
    return n;
}

/* ---- printing ---- */

const char *lx_leaf_str_(const lx_value *v, char *buf, size_t cap) {
    if (v->kind == LX_V_VARIABLE && v->u.var) return lx_variable_str(v->u.var, buf, cap);
    if (v->kind == LX_V_BOX && v->u.box) return lx_box_str(v->u.box, buf, cap);
    return lx_value_str(v, buf, cap);
}

static void fprint_rec(FILE *f, const lx_tree *t, int depth) {
    if (t->len == 0) {
        fputs("{}", f);
        return;
    }
    fputs("{\n", f);
    for (size_t i = 0; i < t->len; i++) {
        fprintf(f, "%*s'%s': ", 2 * (depth + 1), "", t->keys[i]);
        if (t->vals[i].kind == LX_V_TREE) {
            fprint_rec(f, t->vals[i].u.tree, depth + 1);
        } else {
            char buf[1024];
            fputs(lx_leaf_str_(&t->vals[i], buf, sizeof buf), f);
        }
        fputs(",\n", f);
    }
    fprintf(f, "%*s}", 2 * depth, "");
}

lx_status lx_tree_fprint(FILE *f, const lx_tree *t) {
    if (!f) return lx_fail(LX_ERR_INVALID_ARGUMENT, "tree_fprint: FILE is NULL");
    if (!t) return lx_null_input("tree_fprint: tree is NULL");
    fprint_rec(f, t, 0);
    fputc('\n', f);
    return LX_OK;
}

/* One table row; the cells are short, so fixed buffers keep it allocation-light. */
typedef struct {
    char type[128], shape[128], dtype[32], params[32];
} table_row;

static void table_cells(const lx_value *v, table_row *r) {
    const lx_array *a = leaf_array(v);
    switch (v->kind) {
    case LX_V_ARRAY: snprintf(r->type, sizeof r->type, "Array"); break;
    case LX_V_VARIABLE: snprintf(r->type, sizeof r->type, "%s", lx_variable_type(v->u.var)->name); break;
    case LX_V_BOX: snprintf(r->type, sizeof r->type, "%s", lx_box_kind_name(lx_box_get_kind(v->u.box))); break;
    default: snprintf(r->type, sizeof r->type, "%s", lx_kind_name(v->kind)); break;
    }
    if (a) {
        lx_shape_str(a->ndim, a->shape, r->shape, sizeof r->shape);
        snprintf(r->dtype, sizeof r->dtype, "%s", lx_dtype_name(a->dtype));
    } else {
        r->shape[0] = r->dtype[0] = '\0';
    }
    snprintf(r->params, sizeof r->params, "%lld", (long long)(a ? a->size : 0));
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

lx_status lx_tree_fprint_table(FILE *f, const lx_tree *t) {
    if (!f) return lx_fail(LX_ERR_INVALID_ARGUMENT, "tree_fprint_table: FILE is NULL");
    if (!t) return lx_null_input("tree_fprint_table: tree is NULL");
    lx_flat flat;
    LX_TRY(lx_tree_flatten(t, &flat));
    table_row *rows = calloc(flat.len ? flat.len : 1, sizeof *rows);
    if (!rows) {
        lx_flat_free(&flat);
        return lx_fail(LX_ERR_NO_MEMORY, "tree: out of memory");
    }
    char total[32];
    snprintf(total, sizeof total, "%lld", (long long)lx_tree_count_params(t));
    size_t wp = strlen("Total"), wt = strlen("type"), ws = strlen("shape"), wd = strlen("dtype");
    size_t wn = max_sz(strlen("params"), strlen(total));
    for (size_t i = 0; i < flat.len; i++) {
        table_cells(&flat.items[i].value, &rows[i]);
        wp = max_sz(wp, strlen(flat.items[i].path));
        wt = max_sz(wt, strlen(rows[i].type));
        ws = max_sz(ws, strlen(rows[i].shape));
        wd = max_sz(wd, strlen(rows[i].dtype));
        wn = max_sz(wn, strlen(rows[i].params));
    }
    /* Columns are separated by two spaces; params is right-aligned so totals line up, and being
     * last it leaves no trailing blanks. */
    const char *fmt = "%-*s  %-*s  %-*s  %-*s  %*s\n";
    int ip = (int)wp, it = (int)wt, is = (int)ws, id = (int)wd, in = (int)wn;
    fprintf(f, fmt, ip, "path", it, "type", is, "shape", id, "dtype", in, "params");
    for (size_t i = 0; i < flat.len; i++)
        fprintf(f, fmt, ip, flat.items[i].path, it, rows[i].type, is, rows[i].shape, id, rows[i].dtype, in,
                rows[i].params);
    fprintf(f, fmt, ip, "Total", it, "", is, "", id, "", in, total);
    free(rows);
    lx_flat_free(&flat);
    return LX_OK;
}
