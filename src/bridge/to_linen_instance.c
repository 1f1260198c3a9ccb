/* The cached abstract module instance of a ToLinen, and an apply's work on it.
 *
 * Apply never builds the NNX module for real: to_linen.c builds it with abstract arrays
 * (nnx_eval_shape) and this file describes it as an *instance*: the module, its non-RNG
 * Variables as slots sorted by path (each with its collection and its abstract placeholder). The
 * per-module state (tl_state) keeps one instance across applies. An apply then
 *   1. binds the caller's Linen variables into the slots: the fast path when the incoming leaves
 *      are exactly the slots' (no strings built, nothing allocated); otherwise the full path that
 *      reports duplicate paths, shape mismatches and missing Variables, warns once about unknown
 *      paths and inserts them as Flax's nnx.update does;
 *   2. (runs the method: to_linen.c)
 *   3. collects what changed: by comparing each Variable's value with its bound array when the
 *      graph's version says no child or Variable was replaced, else by walking the state;
 *   4. writes the changes into the mutable collections (an immutable one is an error, except for
 *      an Intermediate, which sow drops);
 *   5. unbinds: the abstract placeholders go back, the caller's arrays are not held.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/box.h"
#include "to_linen_internal.h"

/* The array a Linen leaf holds (boxes unboxed), or NULL. */
static lx_array *leaf_array(const lx_value *v) {
    if (v->kind == LX_V_ARRAY) return v->u.array;
    if (v->kind == LX_V_BOX && v->u.box) return lx_box_unbox(v->u.box);
    return NULL;
}

/* An int8 value for a float32 Variable is a PTQ-quantized weight (quant.h): its op runs under a
 * PTQ session, which knows the scale; anything else must match exactly. */
static bool same_sig(const lx_array *a, const lx_array *b) {
    return (a->dtype == b->dtype || (a->dtype == LX_I8 && b->dtype == LX_F32)) && lx_same_shape(a, b);
}

/* ------------------------------------------------------------------ making an instance */

static int slot_cmp(const void *a, const void *b) {
    return strcmp(((const tl_slot *)a)->path, ((const tl_slot *)b)->path);
}

static tl_slot *find_slot(const tl_inst *in, const char *path) {
    size_t lo = 0, hi = in->nslots;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(in->slots[mid].path, path);
        if (c == 0) return &in->slots[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* Trees held in dynamic attributes can be changed in place (lx_tree_set) without the graph's
 * version moving: an instance with one always takes the slow path. */
static lx_status tree_visit(const char *path, const lx_value *node, void *user) {
    (void)path;
    if (node->kind == LX_V_TREE) ((tl_inst *)user)->has_tree = true;
    return LX_OK;
}

/* Describe a freshly built (abstract) module: its non-RNG Variables, sorted by path. Takes the
 * module reference. */
lx_status tl_inst_make(nnx_module *m, tl_inst *in) {
    memset(in, 0, sizeof *in);
    in->m = m;
    lx_tree *state = NULL;
    lx_flat flat = {0};
    lx_status st = nnx_state(m, 0, NULL, &state);
    if (st == LX_OK) st = lx_tree_flatten(state, &flat);
    lx_tree_release(state);
    if (st == LX_OK && flat.len) {
        in->slots = calloc(flat.len, sizeof *in->slots);
        if (!in->slots) st = tl_oom();
    }
    for (size_t i = 0; i < flat.len && st == LX_OK; i++) {
        lx_variable *v = flat.items[i].value.u.var;
        if (lx_vartype_is(lx_variable_type(v), &lx_RngState)) {
            in->has_rng = true;
            continue;
        }
        tl_slot *sl = &in->slots[in->nslots];
        sl->order = in->nslots;
        const char *col = NULL;
        st = tl_collection_of(v, &col);
        if (st != LX_OK) break;
        sl->col = lx_strdup(col);
        sl->path = lx_strdup(flat.items[i].path);
        sl->segbuf = lx_strdup(flat.items[i].path);
        int nseg = 1;
        for (const char *q = flat.items[i].path; *q; q++) nseg += *q == '/';
        sl->segs = malloc(sizeof *sl->segs * (size_t)nseg);
        if (!sl->path || !sl->segbuf || !sl->segs || !sl->col) {
            free(sl->col);
            free(sl->path);
            free(sl->segbuf);
            free(sl->segs);
            st = tl_oom();
            break;
        }
        for (char *q = sl->segbuf;;) {
            sl->segs[sl->nseg++] = q;
            char *slash = strchr(q, '/');
            if (!slash) break;
            *slash = '\0';
            q = slash + 1;
        }
        sl->var = lx_variable_retain(v);
        sl->placeholder = lx_retain(lx_variable_get_value(v));
        in->nslots++;
    }
    lx_flat_free(&flat);
    if (st == LX_OK && in->nslots) {
        qsort(in->slots, in->nslots, sizeof *in->slots, slot_cmp);
        in->by_order = malloc(in->nslots * sizeof *in->by_order);
        if (!in->by_order) st = tl_oom();
        for (size_t i = 0; st == LX_OK && i < in->nslots; i++) in->by_order[in->slots[i].order] = i;
    }
    if (st == LX_OK) st = nnx_iter_graph(m, tree_visit, in);
    if (st != LX_OK) tl_inst_free(in);
    return st;
}

void tl_inst_free(tl_inst *in) {
    for (size_t i = 0; i < in->nslots; i++) {
        free(in->slots[i].path);
        free(in->slots[i].segbuf);
        free(in->slots[i].segs);
        free(in->slots[i].col);
        lx_variable_release(in->slots[i].var);
        lx_release(in->slots[i].placeholder);
    }
    free(in->slots);
    free(in->by_order);
    nnx_module_release(in->m);
    memset(in, 0, sizeof *in);
}

/* ------------------------------------------------------------------ per-module state */

/* What one ToLinen keeps across applies: the instance (keyed by the Linen stream names it was
 * built under, since a constructor may look at them) and the unknown paths it has warned about.
 * `busy` makes it single-user: an apply that finds it held builds its own instance. */

tl_state *tl_state_new(void) {
    tl_state *st = calloc(1, sizeof *st);
    if (st) atomic_flag_clear(&st->busy);
    return st;
}

void tl_state_drop_cache(tl_state *st) {
    if (st->cached) tl_inst_free(&st->cache);
    st->cached = false;
    for (int i = 0; i < st->nnames; i++) free(st->names[i]);
    st->nnames = 0;
}

void tl_state_free(tl_state *st) {
    if (!st) return;
    tl_state_drop_cache(st);
    for (size_t i = 0; i < st->nwarned; i++) free(st->warned[i]);
    free(st->warned);
    free(st);
}

/* ------------------------------------------------------------------ binding incoming variables */

static bool warned_before(tl_state *st, const char *path) {
    for (size_t i = 0; i < st->nwarned; i++)
        if (strcmp(st->warned[i], path) == 0) return true;
    return false;
}

static void note_warned(tl_state *st, const char *path) {
    if (st->nwarned == st->capwarned) {
        size_t nc = st->capwarned ? st->capwarned * 2 : 8;
        char **p = realloc(st->warned, nc * sizeof *p);
        if (!p) return; /* only means a later warning may repeat */
        st->warned = p;
        st->capwarned = nc;
    }
    char *d = lx_strdup(path);
    if (d) st->warned[st->nwarned++] = d;
}

static bool static_scale_key(const char *key) {
    size_t n = strlen(key);
    return n > 10 && (!strcmp(key + n - 10, "_lhs_scale") || !strcmp(key + n - 10, "_rhs_scale"));
}

/* A PTQ scale next to a quantized weight (quant.h): `<w>_scale` beside an int8 `<w>`, or an op's
 * static activation scale `<op>_lhs_scale`; the PTQ session reads them, the module need not. */
static bool ptq_companion(const tl_inst *in, const char *path) {
    size_t n = strlen(path);
    if (static_scale_key(path)) return true;
    if (n <= 6 || strcmp(path + n - 6, "_scale") != 0) return false;
    for (size_t i = 0; i < in->nslots; i++)
        if (in->slots[i].bound && in->slots[i].bound->dtype == LX_I8 && strlen(in->slots[i].path) == n - 6 &&
            strncmp(in->slots[i].path, path, n - 6) == 0)
            return true;
    return false;
}

/* Leaves named like a static activation scale, at any depth. */
static size_t count_static_scales(const lx_tree *t) {
    size_t n = 0;
    for (size_t k = 0; k < lx_tree_len(t); k++) {
        const lx_value *v = lx_tree_at(t, k);
        n += v->kind == LX_V_TREE ? count_static_scales(v->u.tree) : static_scale_key(lx_tree_key(t, k));
    }
    return n;
}

/* The fast bind: every incoming leaf is exactly one slot's, in the slot's own collection, with
 * the slot's shape. Returns false (nothing bound) when anything differs. */
bool tl_inst_bind_fast(tl_inst *in, const lx_tree *vars) {
    size_t total = 0;
    for (size_t c = 0; c < lx_tree_len(vars); c++) {
        const lx_value *sub = lx_tree_at(vars, c);
        if (sub->kind != LX_V_TREE) return false;
        total += lx_tree_count_leaves(sub->u.tree);
    }
    if (total < in->nslots) return false;
    /* PTQ scales (quant.h), read by the PTQ session, not by the module: `<w>_scale` beside an
     * int8 weight, and every static activation scale `<op>_lhs_scale` / `_rhs_scale` */
    size_t companions = 0;
    for (size_t c = 0; total > in->nslots && c < lx_tree_len(vars); c++)
        companions += count_static_scales(lx_tree_at(vars, c)->u.tree);
    for (size_t i = 0; i < in->nslots; i++) {
        tl_slot *sl = &in->slots[i];
        const lx_value *leaf = lx_tree_get(vars, sl->col), *parent = NULL;
        for (int k = 0; leaf && k < sl->nseg; k++) {
            parent = leaf;
            leaf = leaf->kind == LX_V_TREE ? lx_tree_get(leaf->u.tree, sl->segs[k]) : NULL;
        }
        lx_array *a = leaf ? leaf_array(leaf) : NULL;
        if (!a || !same_sig(a, sl->placeholder)) {
            for (size_t j = 0; j < i; j++) in->slots[j].bound = NULL, in->slots[j].leaf = NULL;
            return false;
        }
        if (a->dtype == LX_I8 && parent && parent->kind == LX_V_TREE) {
            char name[256];
            snprintf(name, sizeof name, "%s_scale", sl->segs[sl->nseg - 1]);
            companions += lx_tree_get(parent->u.tree, name) != NULL;
        }
        sl->bound = a;
        sl->leaf = leaf;
    }
    if (total != in->nslots + companions) {
        for (size_t j = 0; j < in->nslots; j++) in->slots[j].bound = NULL, in->slots[j].leaf = NULL;
        return false;
    }
    for (size_t i = 0; i < in->nslots; i++) {
        lx_retain(in->slots[i].bound);
        lx_variable_set_value(in->slots[i].var, in->slots[i].bound, false);
    }
    return true;
}

typedef struct tl_unknown {
    const char *col;
    char *path;
    const lx_value *leaf;
} tl_unknown;

static lx_status dup_error(const char *path, const char *col_a, const lx_value *a, const char *col_b,
                           const lx_value *b) {
    lx_variable *va = NULL, *vb = NULL;
    char pt[512], sa[256], sb[256];
    size_t n = (size_t)snprintf(pt, sizeof pt, "(");
    int parts = 0;
    for (const char *p = path; *p && n < sizeof pt;) {
        const char *sl = strchr(p, '/');
        size_t len = sl ? (size_t)(sl - p) : strlen(p);
        n += (size_t)snprintf(pt + n, sizeof pt - n, "%s'%.*s'", parts ? ", " : "", (int)len, p);
        parts++;
        p += len + (sl ? 1 : 0);
    }
    if (n < sizeof pt) snprintf(pt + n, sizeof pt - n, parts == 1 ? ",)" : ")");
    lx_status st = bridge_to_nnx_var(col_a, a, &va);
    if (st == LX_OK) st = bridge_to_nnx_var(col_b, b, &vb);
    if (st == LX_OK)
        st = lx_fail(LX_ERR_EXISTS,
                     "Found duplicate variable path %s with variables %s and %s. This is not allowed in NNX.", pt,
                     lx_variable_str(va, sa, sizeof sa), lx_variable_str(vb, sb, sizeof sb));
    lx_variable_release(va);
    lx_variable_release(vb);
    return st;
}

/* The full bind: flatten every incoming collection, report duplicates (also across the unknown
 * paths), shape mismatches and missing Variables, warn about unknown paths, insert them, then
 * bind. On failure nothing is bound. *extras (n) get the inserted Variables. */
lx_status tl_inst_bind_slow(linen_scope *s, const tl_config *cfg, tl_state *state, tl_inst *in,
                            const lx_tree *vars, tl_extra **extras, size_t *nextras, bool *inserted) {
    *extras = NULL;
    *nextras = 0;
    *inserted = false;
    lx_flat *flats = calloc(lx_tree_len(vars) + 1, sizeof *flats);
    tl_unknown *unk = NULL;
    size_t nunk = 0, capunk = 0;
    const char **slot_cols = calloc(in->nslots + 1, sizeof *slot_cols);
    lx_status st = flats && slot_cols ? LX_OK : tl_oom();
    for (size_t c = 0; c < lx_tree_len(vars) && st == LX_OK; c++) {
        const char *col = lx_tree_key(vars, c);
        const lx_value *sub = lx_tree_at(vars, c);
        if (sub->kind != LX_V_TREE) continue;
        st = lx_tree_flatten(sub->u.tree, &flats[c]);
        for (size_t i = 0; i < flats[c].len && st == LX_OK; i++) {
            const char *path = flats[c].items[i].path;
            const lx_value *leaf = lx_tree_find(sub->u.tree, path); /* borrowed from the frame */
            tl_slot *sl = find_slot(in, path);
            if (sl) {
                size_t k = (size_t)(sl - in->slots);
                if (sl->leaf) {
                    st = dup_error(path, slot_cols[k], sl->leaf, col, leaf);
                    break;
                }
                lx_array *a = leaf_array(leaf);
                if (!a) {
                    char buf[128];
                    st = lx_fail(LX_ERR_TYPE, "ToLinen(%s): incoming variable \"%s\" of collection \"%s\" is %s, not an array",
                                 tl_type_label(cfg), path, col, lx_value_str(leaf, buf, sizeof buf));
                    break;
                }
                if (!same_sig(a, sl->placeholder)) {
                    char have[96], want[96];
                    st = lx_fail(LX_ERR_SHAPE,
                                 "ToLinen(%s) in \"%s\": incoming variable \"%s\" of collection \"%s\" is %s, but the "
                                 "module's Variable is %s",
                                 tl_type_label(cfg), linen_scope_path(s), path, col, lx_array_sig(a, have, sizeof have),
                                 lx_array_sig(sl->placeholder, want, sizeof want));
                    break;
                }
                sl->leaf = leaf;
                sl->bound = a;
                slot_cols[k] = col;
                continue;
            }
            for (size_t u = 0; u < nunk; u++)
                if (strcmp(unk[u].path, path) == 0) {
                    st = dup_error(path, unk[u].col, unk[u].leaf, col, leaf);
                    break;
                }
            if (st != LX_OK) break;
            if (nunk == capunk) {
                size_t nc = capunk ? capunk * 2 : 4;
                tl_unknown *p = realloc(unk, nc * sizeof *p);
                if (!p) {
                    st = tl_oom();
                    break;
                }
                unk = p;
                capunk = nc;
            }
            unk[nunk++] = (tl_unknown){col, (char *)path, leaf};
        }
    }
    for (size_t i = 0; i < in->nslots && st == LX_OK; i++)
        if (!in->slots[i].leaf)
            st = lx_fail(LX_ERR_NOT_FOUND,
                         "ToLinen(%s) in \"%s\": no incoming value for Variable \"%s\" (collection \"%s\"). ToLinen "
                         "builds its module without running initializers, so apply needs every variable init made.",
                         tl_type_label(cfg), linen_scope_path(s), in->slots[i].path, in->slots[i].col);
    if (st == LX_OK && nunk) {
        /* Warn about each path once per ToLinen module (Python shows a warning once too). */
        size_t len = 64;
        for (size_t u = 0; u < nunk; u++) len += strlen(unk[u].path) + 6;
        char *msg = malloc(len);
        if (!msg) st = tl_oom();
        size_t off = 0, nnew = 0;
        if (msg) off = (size_t)snprintf(msg, len, "Found unknown module paths in incoming state:");
        for (size_t u = 0; msg && u < nunk; u++) {
            if (state && warned_before(state, unk[u].path)) continue;
            if (ptq_companion(in, unk[u].path)) continue; /* expected: a PTQ scale (quant.h) */
            if (strcmp(unk[u].col, "quant_stats") == 0) continue; /* expected: quantization statistics */
            off += (size_t)snprintf(msg + off, len - off, "\n  - %s", unk[u].path);
            if (state) note_warned(state, unk[u].path);
            nnew++;
        }
        if (msg && nnew) lx_warn("%s", msg);
        free(msg);
        /* As Flax's nnx.update does: the unknown paths become attributes of the module. */
        lx_tree *ins = st == LX_OK ? lx_tree_new() : NULL;
        tl_extra *ex = st == LX_OK ? calloc(nunk, sizeof *ex) : NULL;
        if (st == LX_OK && (!ins || !ex)) st = tl_oom();
        for (size_t u = 0; u < nunk && st == LX_OK; u++) {
            lx_variable *v = NULL;
            st = bridge_to_nnx_var(unk[u].col, unk[u].leaf, &v);
            if (st == LX_OK) st = lx_tree_set_path(ins, unk[u].path, lx_var_v(v));
            if (st == LX_OK) {
                ex[*nextras].var = v;
                ex[*nextras].bound = lx_variable_get_value(v);
                (*nextras)++;
            } else {
                lx_variable_release(v);
            }
        }
        if (st == LX_OK) {
            st = nnx_update(in->m, 1, &ins);
            *inserted = st == LX_OK;
        }
        lx_tree_release(ins);
        *extras = ex;
        if (st != LX_OK) {
            for (size_t i = 0; i < *nextras; i++) lx_variable_release(ex[i].var);
            free(ex);
            *extras = NULL;
            *nextras = 0;
        }
    }
    if (st == LX_OK)
        for (size_t i = 0; i < in->nslots; i++) {
            lx_retain(in->slots[i].bound);
            lx_variable_set_value(in->slots[i].var, in->slots[i].bound, false);
        }
    else
        for (size_t i = 0; i < in->nslots; i++) in->slots[i].leaf = NULL, in->slots[i].bound = NULL;
    for (size_t c = 0; flats && c < lx_tree_len(vars); c++) lx_flat_free(&flats[c]);
    free(flats);
    free(unk);
    free(slot_cols);
    return st;
}

/* ------------------------------------------------------------------ after the method: writing back */

/* After the method: collect what changed. Fast when the graph's version (nnx_graph_epoch) is
 * the one before the method, i.e. no child or Variable was replaced: every replacement goes
 * through nnx_setattr / the list functions, which move it (nnx.h). Else a walk of the module's
 * state. *same_structure tells whether the instance may be kept. */
lx_status tl_inst_collect_changes(tl_inst *in, uint64_t epoch, const tl_extra *ex, size_t nex, tl_change **out,
                                  size_t *nout, lx_flat *walk, bool *same_structure) {
    *out = NULL;
    *nout = 0;
    *same_structure = false;
    tl_change *ch = NULL;
    if (!in->has_tree && nex == 0 && nnx_graph_epoch() == epoch) {
        *same_structure = true;
        for (size_t k = 0; k < in->nslots; k++) {
            tl_slot *sl = &in->slots[in->by_order[k]];
            if (lx_variable_get_value(sl->var) == sl->bound) continue;
            if (!ch && !(ch = malloc(in->nslots * sizeof *ch))) return tl_oom();
            ch[(*nout)++] = (tl_change){sl->path, sl->var, sl->col};
        }
        *out = ch;
        return LX_OK;
    }
    lx_tree *state = NULL;
    LX_TRY(nnx_state(in->m, 1, &NNX_NOT_RNG_STATE, &state));
    lx_status st = lx_tree_flatten(state, walk);
    lx_tree_release(state);
    LX_TRY(st);
    if (walk->len && !(ch = malloc(walk->len * sizeof *ch))) return tl_oom();
    bool same = walk->len == in->nslots && !in->has_tree && nex == 0;
    for (size_t i = 0; i < walk->len; i++) {
        lx_variable *v = walk->items[i].value.u.var;
        const char *path = walk->items[i].path;
        tl_slot *sl = find_slot(in, path);
        if (!sl || sl->var != v) same = false;
        bool unchanged = sl && sl->var == v && lx_variable_get_value(v) == sl->bound;
        for (size_t e = 0; !unchanged && e < nex; e++)
            unchanged = ex[e].var == v && lx_variable_get_value(v) == ex[e].bound;
        if (!unchanged) ch[(*nout)++] = (tl_change){path, v, sl && sl->var == v ? sl->col : NULL};
    }
    *same_structure = same;
    *out = ch;
    return LX_OK;
}

static bool intermediate(const lx_variable *v) { return lx_vartype_is(lx_variable_type(v), &lx_Intermediate); }

/* Write one changed leaf at state path `path` of collection `col`, keeping its siblings. */
static lx_status write_leaf(linen_scope *s, const char *col, const char *path, const lx_value *leaf) {
    const char *slash = strchr(path, '/');
    if (!slash) return linen_put_variable(s, col, path, leaf);
    char top[256];
    size_t n = (size_t)(slash - path);
    if (n >= sizeof top) return lx_fail(LX_ERR_INVALID_ARGUMENT, "ToLinen: attribute name too long in '%s'", path);
    memcpy(top, path, n);
    top[n] = '\0';
    lx_tree *t = NULL;
    if (linen_has_variable(s, col, top)) {
        lx_value cur;
        LX_TRY(linen_get_variable(s, col, top, &cur));
        if (cur.kind == LX_V_TREE) t = lx_tree_copy(cur.u.tree);
        else t = lx_tree_new();
    } else {
        t = lx_tree_new();
    }
    if (!t) return tl_oom();
    lx_status st = lx_tree_set_path(t, slash + 1, *leaf);
    if (st == LX_OK) {
        lx_value tv = lx_tree_v(t);
        st = linen_put_variable(s, col, top, &tv);
    }
    lx_tree_release(t);
    return st;
}

/* A plain array written where the caller's variables hold a metadata box keeps the box around the
 * new value (Linen's Variable.value = v, replace_boxed), so Partitioned / LogicallyPartitioned /
 * NNXMeta annotations the caller gave survive a mutable apply. */
static lx_status keep_box(linen_scope *s, const char *col, const char *path, lx_value *leaf) {
    if (leaf->kind != LX_V_ARRAY) return LX_OK;
    lx_tree *vars = NULL;
    LX_TRY(linen_variables(s, &vars)); /* the stored leaves, boxes included (get_variable unboxes) */
    const lx_value *c = lx_tree_get(vars, col);
    const lx_value *at = c && c->kind == LX_V_TREE ? lx_tree_find(c->u.tree, path) : NULL;
    lx_status st = LX_OK;
    if (at && at->kind == LX_V_BOX && at->u.box) {
        lx_box *b = NULL;
        st = lx_box_replace_boxed(at->u.box, leaf->u.array, &b);
        if (st == LX_OK) {
            lx_value_free(leaf);
            *leaf = lx_box_v(b);
        }
    }
    lx_tree_release(vars);
    return st;
}

/* Check every change against the mutability first (so a refused one writes nothing), then
 * write the allowed ones. */
lx_status tl_write_changes(linen_scope *s, const tl_config *cfg, tl_change *ch, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!ch[i].col) LX_TRY(tl_collection_of(ch[i].var, &ch[i].col));
        if (linen_is_mutable_collection(s, ch[i].col) || intermediate(ch[i].var)) continue;
        return lx_fail(LX_ERR_IMMUTABLE,
                       "Cannot update variable \"%s\" in \"%s\" because collection \"%s\" is immutable. (The %s "
                       "module run by ToLinen changed it; pass mutable=['%s'] to apply.)",
                       ch[i].path, linen_scope_path(s), ch[i].col, tl_type_label(cfg), ch[i].col);
    }
    for (size_t i = 0; i < n; i++) {
        if (!linen_is_mutable_collection(s, ch[i].col)) continue; /* an Intermediate: sow is a no-op */
        lx_value leaf = lx_none();
        LX_TRY(tl_to_leaf(cfg, ch[i].var, &leaf));
        lx_status st = keep_box(s, ch[i].col, ch[i].path, &leaf);
        if (st == LX_OK) st = write_leaf(s, ch[i].col, ch[i].path, &leaf);
        lx_value_free(&leaf);
        LX_TRY(st);
    }
    return LX_OK;
}

/* ------------------------------------------------------------------ unbinding */

/* Put the abstract placeholders back: the caller's arrays are released. */
void tl_inst_unbind(tl_inst *in) {
    for (size_t i = 0; i < in->nslots; i++) {
        tl_slot *sl = &in->slots[i];
        if (lx_variable_get_value(sl->var) != sl->placeholder) lx_variable_set_value(sl->var, sl->placeholder, false);
        lx_release(sl->bound); /* bound arrays are held so a pointer compare can never see a reused address */
        sl->bound = NULL;
        sl->leaf = NULL;
    }
}
