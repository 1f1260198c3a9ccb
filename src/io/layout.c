/* Checkpoint layouts: Linen variables, NNX pure dicts, MaxText's Linen and NNX train states
 * (spec/checkpoints.md §C.1, MaxText PR #3929), converted through one canonical form:
 *   model    the NNX-style model tree (no collection level, layers/<i>)
 *   opt      the optax chain in NNX form ({"0": .., "1": {}}) or NULL
 *   step     the step counter or none */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "io_internal.h"
#include "linnx/tree.h"
#include "../core/status_internal.h"

static const char *const LINEN_COLLECTIONS[] = {"params", "batch_stats", "cache", "intermediates", "perturbations",
                                               "losses", "rngs"};

const char *lx_layout_name(lx_layout l) {
    switch (l) {
    case LX_LAYOUT_LINEN: return "linen";
    case LX_LAYOUT_NNX: return "nnx";
    case LX_LAYOUT_MAXTEXT_LINEN: return "maxtext-linen";
    case LX_LAYOUT_MAXTEXT_NNX: return "maxtext-nnx";
    default: return "auto";
    }
}

lx_status lx_layout_from_name(const char *name, lx_layout *out) {
    for (int l = LX_LAYOUT_AUTO; l <= LX_LAYOUT_MAXTEXT_NNX; l++)
        if (name && !strcmp(name, lx_layout_name((lx_layout)l))) {
            *out = (lx_layout)l;
            return LX_OK;
        }
    return lx_fail(LX_ERR_INVALID_ARGUMENT, "unknown layout '%s' (expected linen, nnx, maxtext-linen or maxtext-nnx)",
                   name ? name : "(null)");
}

static bool is_collection(const char *k) {
    for (size_t i = 0; i < sizeof LINEN_COLLECTIONS / sizeof *LINEN_COLLECTIONS; i++)
        if (!strcmp(k, LINEN_COLLECTIONS[i])) return true;
    return false;
}

static const lx_tree *sub(const lx_tree *t, const char *k) {
    const lx_value *v = t ? lx_tree_get(t, k) : NULL;
    return v && v->kind == LX_V_TREE ? v->u.tree : NULL;
}

lx_layout lx_layout_detect(const lx_tree *t) {
    if (!t) return LX_LAYOUT_AUTO;
    if (lx_tree_get(t, "model") && sub(t, "optimizer")) return LX_LAYOUT_MAXTEXT_NNX;
    if (sub(sub(t, "params"), "params") && (lx_tree_get(t, "opt_state") || lx_tree_get(t, "step")))
        return LX_LAYOUT_MAXTEXT_LINEN;
    if (lx_tree_len(t) == 0) return LX_LAYOUT_NNX;
    for (size_t i = 0; i < lx_tree_len(t); i++)
        if (!is_collection(lx_tree_key(t, i)) || lx_tree_at(t, i)->kind != LX_V_TREE) return LX_LAYOUT_NNX;
    return LX_LAYOUT_LINEN;
}

/* ---- path rewrites ---- */

static bool all_digits(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return false;
    return true;
}

static bool is_wrapper(const char *k) {
    const char *u = strstr(k, "ToLinen_");
    return u && (u == k || u[-1] != '_') && all_digits(u + 8) && !strchr(u + 8, '_');
}

/* layers_<i> -> layers/<i> (to_nnx) or back, recursively; a copy of the map structure. */
static lx_status rename_layers(const lx_tree *t, bool to_nnx, lx_tree **out) {
    lx_tree *o = lx_tree_new();
    if (!o) return lx_last_status();
    lx_status s = LX_OK;
    for (size_t i = 0; i < lx_tree_len(t) && s == LX_OK; i++) {
        const char *k = lx_tree_key(t, i);
        const lx_value *v = lx_tree_at(t, i);
        lx_value nv = *v;
        lx_tree *conv = NULL;
        if (v->kind == LX_V_TREE) {
            s = rename_layers(v->u.tree, to_nnx, &conv);
            if (s != LX_OK) break;
            nv = lx_tree_v(conv);
        }
        if (to_nnx && !strncmp(k, "layers_", 7) && all_digits(k + 7)) {
            const lx_value *lv = lx_tree_get(o, "layers");
            if (!lv) {
                lx_tree *l = lx_tree_new();
                s = l ? lx_tree_set(o, "layers", lx_tree_v(l)) : lx_last_status();
                lx_tree_release(l);
                lv = lx_tree_get(o, "layers");
            }
            if (s == LX_OK && lv->kind != LX_V_TREE)
                s = lx_fail(LX_ERR_TYPE, "layout: 'layers' is a leaf next to layers_%s", k + 7);
            if (s == LX_OK) s = lx_tree_set(lv->u.tree, k + 7, nv);
        } else if (!to_nnx && !strcmp(k, "layers") && v->kind == LX_V_TREE && lx_tree_len(conv) > 0) {
            bool list = true;
            for (size_t j = 0; j < lx_tree_len(conv); j++) list = list && all_digits(lx_tree_key(conv, j));
            if (list) {
                for (size_t j = 0; j < lx_tree_len(conv) && s == LX_OK; j++) {
                    char name[64];
                    snprintf(name, sizeof name, "layers_%s", lx_tree_key(conv, j));
                    s = lx_tree_set(o, name, *lx_tree_at(conv, j));
                }
            } else {
                s = lx_tree_set(o, k, nv);
            }
        } else {
            s = lx_tree_set(o, k, nv);
        }
        lx_tree_release(conv);
    }
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

/* Merge `src` into `dst` path-wise; a path in both is an error naming it (a variable in two
 * collections is an error in every direction: DESIGN). */
static lx_status merge_into(lx_tree *dst, const lx_tree *src, const char *coll) {
    lx_flat f = {0};
    LX_TRY(lx_tree_flatten(src, &f));
    lx_status s = LX_OK;
    for (size_t i = 0; i < f.len && s == LX_OK; i++) {
        if (lx_tree_find(dst, f.items[i].path))
            s = lx_fail(LX_ERR_EXISTS, "layout: %s is in two collections (the second is %s)", f.items[i].path, coll);
        else
            s = lx_tree_set_path(dst, f.items[i].path, f.items[i].value);
    }
    lx_flat_free(&f);
    return s;
}

/* Linen variables -> NNX model. */
static lx_status linen_to_model(const lx_tree *vars, lx_tree **out) {
    /* unwrap a lone bridge wrapper present in every collection */
    const char *wrap = NULL;
    bool lone = lx_tree_len(vars) > 0;
    for (size_t i = 0; i < lx_tree_len(vars) && lone; i++) {
        const lx_value *c = lx_tree_at(vars, i);
        lone = c->kind == LX_V_TREE && lx_tree_len(c->u.tree) == 1 && is_wrapper(lx_tree_key(c->u.tree, 0)) &&
               (!wrap || !strcmp(wrap, lx_tree_key(c->u.tree, 0)));
        if (lone) wrap = lx_tree_key(c->u.tree, 0);
    }
    lx_tree *merged = lx_tree_new();
    if (!merged) return lx_last_status();
    lx_status s = LX_OK;
    for (size_t i = 0; i < lx_tree_len(vars) && s == LX_OK; i++) {
        const lx_value *c = lx_tree_at(vars, i);
        const char *coll = lx_tree_key(vars, i);
        if (c->kind != LX_V_TREE) {
            s = lx_fail(LX_ERR_TYPE, "layout: Linen collection '%s' is not a dict", coll);
            break;
        }
        const lx_tree *body = lone ? sub(c->u.tree, wrap) : c->u.tree;
        if (body) s = merge_into(merged, body, coll);
    }
    if (s == LX_OK) s = rename_layers(merged, true, out);
    lx_tree_release(merged);
    return s;
}

static const char *collection_of(const char *path) {
    const char *leaf = strrchr(path, '/');
    leaf = leaf ? leaf + 1 : path;
    if (!strcmp(leaf, "mean") || !strcmp(leaf, "var")) return "batch_stats";
    if (!strcmp(leaf, "cache_index") || !strcmp(leaf, "cached_key") || !strcmp(leaf, "cached_value")) return "cache";
    return "params";
}

static bool under_rngs(const char *path) {
    if (!strncmp(path, "rngs/", 5)) return true;
    return strstr(path, "/rngs/") != NULL;
}

/* NNX model -> Linen variables. */
static lx_status model_to_linen(const lx_tree *model, const char *wrapper, lx_tree **out) {
    lx_tree *named;
    LX_TRY(rename_layers(model, false, &named));
    lx_flat f = {0};
    lx_status s = lx_tree_flatten(named, &f);
    lx_tree *o = lx_tree_new();
    if (!o) s = lx_last_status();
    for (size_t i = 0; i < f.len && s == LX_OK; i++) {
        if (under_rngs(f.items[i].path)) continue;
        const char *coll = collection_of(f.items[i].path);
        size_t n = strlen(coll) + (wrapper ? strlen(wrapper) + 1 : 0) + strlen(f.items[i].path) + 2;
        char *p = malloc(n);
        if (!p) {
            s = lx_fail(LX_ERR_NO_MEMORY, "out of memory");
            break;
        }
        snprintf(p, n, "%s/%s%s%s", coll, wrapper ? wrapper : "", wrapper ? "/" : "", f.items[i].path);
        s = lx_tree_set_path(o, p, f.items[i].value);
        free(p);
    }
    lx_flat_free(&f);
    lx_tree_release(named);
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

/* ---- optax chains ---- */

/* One chain element NNX -> Linen (to_linen) or back. */
static lx_status chain_elem(const lx_value *e, bool to_linen, lx_value *out) {
    if (to_linen) {
        if (e->kind == LX_V_TREE && lx_tree_len(e->u.tree) == 0) {
            *out = lx_none();
            return LX_OK;
        }
    } else if (e->kind == LX_V_NONE) {
        lx_tree *t = lx_tree_new();
        if (!t) return lx_last_status();
        *out = lx_tree_v(t);
        return LX_OK;
    }
    if (e->kind != LX_V_TREE) return lx_value_dup(e, out);
    const lx_tree *t = e->u.tree;
    lx_tree *o = lx_tree_new();
    if (!o) return lx_last_status();
    lx_status s = LX_OK;
    for (size_t i = 0; i < lx_tree_len(t) && s == LX_OK; i++) {
        const lx_value *v = lx_tree_at(t, i);
        const char *k = lx_tree_key(t, i);
        if (v->kind != LX_V_TREE) {
            s = lx_tree_set(o, k, *v);
            continue;
        }
        lx_tree *conv = NULL;
        if (to_linen) {
            lx_tree *named;
            s = rename_layers(v->u.tree, false, &named);
            if (s == LX_OK) {
                conv = lx_tree_new();
                s = conv ? lx_tree_set(conv, "params", lx_tree_v(named)) : lx_last_status();
                lx_tree_release(named);
            }
        } else {
            const lx_tree *body = sub(v->u.tree, "params");
            if (!body || lx_tree_len(v->u.tree) != 1) body = v->u.tree;
            s = rename_layers(body, true, &conv);
        }
        if (s == LX_OK) s = lx_tree_set(o, k, lx_tree_v(conv));
        lx_tree_release(conv);
    }
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = lx_tree_v(o);
    return LX_OK;
}

static lx_status convert_chain(const lx_value *opt, bool to_linen, lx_tree **out) {
    lx_tree *o = lx_tree_new();
    if (!o) return lx_last_status();
    lx_status s = LX_OK;
    if (opt->kind != LX_V_TREE) {
        lx_tree_release(o);
        return lx_fail(LX_ERR_TYPE, "layout: opt_state is not a chain (a dict keyed \"0\", \"1\", ...)");
    }
    for (size_t i = 0; i < lx_tree_len(opt->u.tree) && s == LX_OK; i++) {
        lx_value e = lx_none();
        s = chain_elem(lx_tree_at(opt->u.tree, i), to_linen, &e);
        if (s == LX_OK) s = lx_tree_set(o, lx_tree_key(opt->u.tree, i), e);
        lx_value_free(&e);
    }
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

/* A step as a 0-d array of `dt` (from an int leaf or any 0-d integer array). */
static lx_status cast_step(const lx_value *v, lx_dtype dt, lx_value *out) {
    int64_t n;
    if (v->kind == LX_V_INT) {
        n = v->u.i;
    } else if (v->kind == LX_V_ARRAY && v->u.array->size == 1 && !lx_is_abstract(v->u.array) &&
               (v->u.array->dtype == LX_I32 || v->u.array->dtype == LX_U32)) {
        n = (int64_t)lx_array_get(v->u.array, 0);
    } else {
        char b[64];
        return lx_fail(LX_ERR_TYPE, "layout: step must be an integer, got %s", lx_value_str(v, b, sizeof b));
    }
    if (n < 0 || n > INT32_MAX) return lx_fail(LX_ERR_INVALID_ARGUMENT, "layout: step %lld does not fit int32", (long long)n);
    lx_array *a = lx_array_new(dt, 0, NULL);
    if (!a) return lx_last_status();
    if (dt == LX_I32) lx_i32(a)[0] = (int32_t)n;
    else lx_u32(a)[0] = (uint32_t)n;
    *out = lx_array_v(a);
    return LX_OK;
}

typedef struct canon {
    lx_tree *model;
    const lx_value *opt;  /* borrowed from the input */
    bool opt_linen;       /* opt is in Linen form */
    const lx_value *step; /* borrowed */
} canon;

lx_status lx_layout_convert(const lx_tree *t, lx_layout from, lx_layout to, const char *wrapper, lx_tree **out) {
    if (!t || !out) return lx_null_input("layout: tree or out is NULL");
    if (from == LX_LAYOUT_AUTO) from = lx_layout_detect(t);
    if (to == LX_LAYOUT_AUTO) to = from;
    canon c = {0};
    lx_status s = LX_OK;
    switch (from) {
    case LX_LAYOUT_LINEN: s = linen_to_model(t, &c.model); break;
    case LX_LAYOUT_NNX: s = rename_layers(t, true, &c.model); break;
    case LX_LAYOUT_MAXTEXT_LINEN: {
        const lx_tree *p = sub(t, "params");
        if (!p) return lx_fail(LX_ERR_NOT_FOUND, "layout: a MaxText Linen checkpoint needs 'params'");
        s = linen_to_model(p, &c.model);
        c.opt = lx_tree_get(t, "opt_state");
        c.opt_linen = true;
        c.step = lx_tree_get(t, "step");
        break;
    }
    case LX_LAYOUT_MAXTEXT_NNX: {
        const lx_tree *m = sub(t, "model"), *o = sub(t, "optimizer");
        if (!m) return lx_fail(LX_ERR_NOT_FOUND, "layout: a MaxText NNX checkpoint needs 'model'");
        s = rename_layers(m, true, &c.model);
        c.opt = o ? lx_tree_get(o, "opt_state") : NULL;
        c.step = o ? lx_tree_get(o, "step") : NULL;
        break;
    }
    default: return lx_fail(LX_ERR_INVALID_ARGUMENT, "layout: unknown source layout %d", (int)from);
    }
    if (s != LX_OK) return s;
    lx_tree *o = NULL, *chain = NULL, *model = NULL;
    lx_value step = lx_none();
    switch (to) {
    case LX_LAYOUT_LINEN: s = model_to_linen(c.model, wrapper, &o); break;
    case LX_LAYOUT_NNX: o = lx_tree_retain(c.model); break;
    case LX_LAYOUT_MAXTEXT_LINEN:
    case LX_LAYOUT_MAXTEXT_NNX: {
        bool lin = to == LX_LAYOUT_MAXTEXT_LINEN;
        s = c.step ? cast_step(c.step, lin ? LX_I32 : LX_U32, &step) : cast_step(&(lx_value){LX_V_INT, {.i = 0}}, lin ? LX_I32 : LX_U32, &step);
        if (s == LX_OK && c.opt) {
            if (c.opt_linen == lin) {
                /* same family: the elements convert to themselves (paths still normalised) */
                lx_tree *mid;
                s = convert_chain(c.opt, !lin, &mid);
                if (s == LX_OK) {
                    lx_value mv = lx_tree_v(mid);
                    s = convert_chain(&mv, lin, &chain);
                    lx_tree_release(mid);
                }
            } else {
                s = convert_chain(c.opt, lin, &chain);
            }
        }
        if (s == LX_OK) s = lin ? model_to_linen(c.model, wrapper, &model) : LX_OK;
        if (s != LX_OK) break;
        o = lx_tree_new();
        if (!o) {
            s = lx_last_status();
            break;
        }
        if (lin) {
            s = lx_tree_set(o, "step", step);
            if (s == LX_OK) s = lx_tree_set(o, "params", lx_tree_v(model));
            if (s == LX_OK && chain) s = lx_tree_set(o, "opt_state", lx_tree_v(chain));
        } else {
            lx_tree *opt = lx_tree_new();
            s = opt ? lx_tree_set(o, "model", lx_tree_v(c.model)) : lx_last_status();
            if (s == LX_OK) s = lx_tree_set(opt, "step", step);
            if (s == LX_OK && chain) s = lx_tree_set(opt, "opt_state", lx_tree_v(chain));
            if (s == LX_OK) s = lx_tree_set(o, "optimizer", lx_tree_v(opt));
            lx_tree_release(opt);
        }
        break;
    }
    default: s = lx_fail(LX_ERR_INVALID_ARGUMENT, "layout: unknown target layout %d", (int)to);
    }
    lx_value_free(&step);
    lx_tree_release(chain);
    lx_tree_release(model);
    lx_tree_release(c.model);
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}
