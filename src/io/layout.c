/* Checkpoint layouts: Linen variables, NNX pure dicts, MaxText's Linen and NNX train states
 * (spec/checkpoints.md §C.1, MaxText PR #3929), converted through one canonical form:
 *   model    the NNX-style model tree (no collection level, layers/<i>)
 *   opt      the optax chain in NNX form ({"0": .., "1": {}}) or NULL
 *   step     the step counter or none */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io_internal.h"
#include "linnx/checkpoint.h"
#include "linnx/ops.h"
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
    case LX_LAYOUT_LINEN_TRAIN: return "linen-train";
    default: return "auto";
    }
}

lx_status lx_layout_from_name(const char *name, lx_layout *out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "layout: out is NULL");
    for (int l = LX_LAYOUT_AUTO; l <= LX_LAYOUT_LINEN_TRAIN; l++)
        if (name && !strcmp(name, lx_layout_name((lx_layout)l))) {
            *out = (lx_layout)l;
            return LX_OK;
        }
    return lx_fail(LX_ERR_INVALID_ARGUMENT,
                   "unknown layout '%s' (expected linen, nnx, maxtext-linen, maxtext-nnx or linen-train)",
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

/* Flax's TrainState.state_dict of a Linen model (what `linnx train --save` writes): step,
 * params (the params collection itself), opt_state, and batch_stats when the model has them. */
static bool is_linen_train(const lx_tree *t) {
    if (!sub(t, "params") || !lx_tree_get(t, "opt_state")) return false;
    for (size_t i = 0; i < lx_tree_len(t); i++) {
        const char *k = lx_tree_key(t, i);
        if (strcmp(k, "step") && strcmp(k, "params") && strcmp(k, "opt_state") && strcmp(k, "batch_stats"))
            return false;
    }
    return true;
}

lx_layout lx_layout_detect(const lx_tree *t) {
    if (!t) return LX_LAYOUT_AUTO;
    if (lx_tree_get(t, "model") && sub(t, "optimizer")) return LX_LAYOUT_MAXTEXT_NNX;
    if (sub(sub(t, "params"), "params") && (lx_tree_get(t, "opt_state") || lx_tree_get(t, "step")))
        return LX_LAYOUT_MAXTEXT_LINEN;
    if (is_linen_train(t)) return LX_LAYOUT_LINEN_TRAIN;
    if (lx_tree_len(t) == 0) return LX_LAYOUT_NNX;
    for (size_t i = 0; i < lx_tree_len(t); i++)
        if (!is_collection(lx_tree_key(t, i)) || lx_tree_at(t, i)->kind != LX_V_TREE) return LX_LAYOUT_NNX;
    /* Linen keeps no RNG state in its variables: a top-level rngs is an NNX module's Rngs (or a
     * Dropout's stream, {rngs: {key, count}}) */
    if (lx_tree_get(t, "rngs")) return LX_LAYOUT_NNX;
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

static lx_status convert_chain(const lx_value *opt, bool to_linen, lx_tree **out);

/* A chain's state: a non-empty map keyed "0", "1", ... (optax.adamw is itself a chain, so
 * chain(clip_by_global_norm, adamw)'s state holds one inside another). */
static bool is_chain(const lx_tree *t) {
    if (lx_tree_len(t) == 0) return false;
    for (size_t i = 0; i < lx_tree_len(t); i++)
        if (!all_digits(lx_tree_key(t, i))) return false;
    return true;
}

/* One chain element NNX -> Linen (to_linen) or back: a nested chain (and a MaskedState's
 * inner_state) converts element by element; in any other state the map-valued fields (mu, nu,
 * trace) are params-shaped. */
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
    if (is_chain(t)) {
        lx_tree *c = NULL;
        LX_TRY(convert_chain(e, to_linen, &c));
        *out = lx_tree_v(c);
        return LX_OK;
    }
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
        if (!strcmp(k, "inner_state")) {
            lx_value c = lx_none();
            s = chain_elem(v, to_linen, &c);
            if (s == LX_OK) s = lx_tree_set(o, k, c);
            lx_value_free(&c);
            continue;
        }
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

/* {"value": array} -> array, everywhere: a box (Partitioned, LogicallyPartitioned, NNXMeta) or an
 * older NNX Variable state as Flax serializes it. A copy of the map structure; leaves shared. */
static lx_status unbox_tree(const lx_tree *t, lx_tree **out) {
    lx_tree *o = lx_tree_new();
    if (!o) return lx_last_status();
    lx_status s = LX_OK;
    for (size_t i = 0; i < lx_tree_len(t) && s == LX_OK; i++) {
        const lx_value *v = lx_tree_at(t, i);
        if (v->kind != LX_V_TREE) {
            s = lx_tree_set(o, lx_tree_key(t, i), *v);
            continue;
        }
        const lx_tree *c = v->u.tree;
        const lx_value *inner = lx_tree_len(c) == 1 ? lx_tree_get(c, "value") : NULL;
        if (inner && (inner->kind == LX_V_ARRAY || lx_value_raw(inner))) {
            s = lx_tree_set(o, lx_tree_key(t, i), *inner);
            continue;
        }
        lx_tree *sub = NULL;
        s = unbox_tree(c, &sub);
        if (s == LX_OK) s = lx_tree_set(o, lx_tree_key(t, i), lx_tree_v(sub));
        lx_tree_release(sub);
    }
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

lx_status lx_layout_unbox(const lx_tree *t, lx_tree **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "layout: out is NULL");
    if (!t) return lx_null_input("layout: tree is NULL");
    return unbox_tree(t, out);
}

typedef struct canon {
    lx_tree *model;
    const lx_value *opt;  /* borrowed from the input */
    bool opt_linen;       /* opt is in Linen form */
    const lx_value *step; /* borrowed */
    const lx_tree *top;   /* a MaxText input's top level: keys beyond its layout's are kept */
} canon;

/* A top-level key of a MaxText layout (the rest, such as linnx train-lm's config / run / history,
 * travel along from one MaxText layout to the other). */
static bool maxtext_key(const char *k) {
    static const char *const keys[] = {"step", "params", "opt_state", "model", "optimizer"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!strcmp(k, keys[i])) return true;
    return false;
}

/* An NNX-form chain as a Linen TrainState holds it: moments by Linen names (layers_<i>) with no
 * params level (its params are the params collection), EmptyState as {} (Flax's state dict of
 * an EmptyState; MaxText's Linen layout writes None). */
static lx_status chain_to_linen_train(const lx_tree *chain, lx_tree **out) {
    lx_tree *o = lx_tree_new();
    lx_status s = o ? LX_OK : lx_last_status();
    for (size_t i = 0; s == LX_OK && i < lx_tree_len(chain); i++) {
        const lx_value *e = lx_tree_at(chain, i);
        if (e->kind != LX_V_TREE) {
            s = lx_tree_set(o, lx_tree_key(chain, i), *e);
            continue;
        }
        lx_tree *ne = lx_tree_new();
        s = ne ? LX_OK : lx_last_status();
        for (size_t j = 0; s == LX_OK && j < lx_tree_len(e->u.tree); j++) {
            const lx_value *v = lx_tree_at(e->u.tree, j);
            lx_tree *named = NULL;
            if (v->kind == LX_V_TREE) s = rename_layers(v->u.tree, false, &named);
            if (s == LX_OK) s = lx_tree_set(ne, lx_tree_key(e->u.tree, j), named ? lx_tree_v(named) : *v);
            lx_tree_release(named);
        }
        if (s == LX_OK) s = lx_tree_set(o, lx_tree_key(chain, i), lx_tree_v(ne));
        lx_tree_release(ne);
    }
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

/* The canonical form as a Linen TrainState: {step: int, params, opt_state, [batch_stats]}. */
static lx_status to_linen_train(const canon *c, lx_tree **out) {
    lx_tree *vars = NULL, *mid = NULL, *chain = NULL, *o = NULL;
    lx_value step = lx_none();
    lx_status s = model_to_linen(c->model, NULL, &vars);
    for (size_t i = 0; s == LX_OK && i < lx_tree_len(vars); i++)
        if (strcmp(lx_tree_key(vars, i), "params") && strcmp(lx_tree_key(vars, i), "batch_stats"))
            s = lx_fail(LX_ERR_UNSUPPORTED, "layout: a Linen TrainState holds params and batch_stats, not '%s'",
                        lx_tree_key(vars, i));
    /* a MaxText input's other top-level keys (linnx train-lm's config / run / history): a Linen
     * TrainState has no field for them (Flax's restore refuses unknown keys), so they are dropped,
     * and said so */
    for (size_t i = 0; s == LX_OK && c->top && i < lx_tree_len(c->top); i++)
        if (!maxtext_key(lx_tree_key(c->top, i)))
            lx_warn("layout: linen-train has no place for the top-level key '%s': dropped", lx_tree_key(c->top, i));
    if (s == LX_OK && !c->opt)
        s = lx_fail(LX_ERR_NOT_FOUND, "layout: linen-train needs a train state (an optimizer state) to convert");
    /* the chain in NNX form first (either source form), then as the TrainState holds it */
    if (s == LX_OK) s = convert_chain(c->opt, false, &mid);
    if (s == LX_OK) s = chain_to_linen_train(mid, &chain);
    if (s == LX_OK) s = c->step ? cast_step(c->step, LX_I32, &step) : LX_OK;
    if (s == LX_OK && !(o = lx_tree_new())) s = lx_last_status();
    /* Flax writes a never-jitted TrainState.step as a Python int (what linnx train restores) */
    if (s == LX_OK)
        s = lx_tree_set(o, "step", lx_int_v(step.kind == LX_V_ARRAY ? lx_i32(step.u.array)[0] : 0));
    const lx_value *p = s == LX_OK ? lx_tree_get(vars, "params") : NULL;
    const lx_value *bs = s == LX_OK ? lx_tree_get(vars, "batch_stats") : NULL;
    if (s == LX_OK && p) s = lx_tree_set(o, "params", *p);
    if (s == LX_OK && !p) { /* a model without params */
        lx_tree *e = lx_tree_new();
        s = e ? lx_tree_set(o, "params", lx_tree_v(e)) : lx_last_status();
        lx_tree_release(e);
    }
    if (s == LX_OK) s = lx_tree_set(o, "opt_state", lx_tree_v(chain));
    if (s == LX_OK && bs) s = lx_tree_set(o, "batch_stats", *bs);
    lx_value_free(&step);
    lx_tree_release(vars);
    lx_tree_release(mid);
    lx_tree_release(chain);
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

static lx_status convert_plain(const lx_tree *t, lx_layout from, lx_layout to, const char *wrapper, lx_tree **out) {
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
        c.top = t;
        break;
    }
    case LX_LAYOUT_LINEN_TRAIN: { /* the collections it holds as Linen variables, then as above */
        lx_tree *vars = lx_tree_new();
        s = vars ? LX_OK : lx_last_status();
        for (size_t i = 0; s == LX_OK && i < lx_tree_len(t); i++)
            if (!strcmp(lx_tree_key(t, i), "params") || !strcmp(lx_tree_key(t, i), "batch_stats"))
                s = lx_tree_set(vars, lx_tree_key(t, i), *lx_tree_at(t, i));
        if (s == LX_OK) s = linen_to_model(vars, &c.model);
        lx_tree_release(vars);
        c.opt = lx_tree_get(t, "opt_state");
        c.opt_linen = true; /* moments without the params level: chain_elem takes both */
        c.step = lx_tree_get(t, "step");
        break;
    }
    case LX_LAYOUT_MAXTEXT_NNX: {
        const lx_tree *m = sub(t, "model"), *o = sub(t, "optimizer");
        if (!m) return lx_fail(LX_ERR_NOT_FOUND, "layout: a MaxText NNX checkpoint needs 'model'");
        s = rename_layers(m, true, &c.model);
        c.opt = o ? lx_tree_get(o, "opt_state") : NULL;
        c.step = o ? lx_tree_get(o, "step") : NULL;
        c.top = t;
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
        for (size_t i = 0; c.top && s == LX_OK && i < lx_tree_len(c.top); i++)
            if (!maxtext_key(lx_tree_key(c.top, i))) s = lx_tree_set(o, lx_tree_key(c.top, i), *lx_tree_at(c.top, i));
        break;
    }
    case LX_LAYOUT_LINEN_TRAIN: s = to_linen_train(&c, &o); break;
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

/* ---- scanned <-> unrolled layer stacks in a checkpoint (linnx convert --unscan / --scan) ----
 * PREFIX (e.g. decoder/layers) is matched wherever it sits: params/params/decoder/layers and
 * opt_state/0/mu/params/decoder/layers of a MaxText Linen state, model/decoder/layers and
 * optimizer/opt_state/0/mu/decoder/layers of a MaxText NNX state. The layer axis of a leaf is
 * `paxis` for parameters (and their optimizer moments, which have the parameters' shapes) and 0
 * for other state (MaxText #4369). Linen layouts name the layers PREFIX_<i>, NNX layouts
 * PREFIX/<i> (an nnx.List). Keys keep their place in their map, so --unscan then --scan gives
 * back the same tree, in the same order. */

enum { STK_MAX_DEPTH = 64 };

typedef struct stk {
    bool nnx;         /* NNX naming (layers/<i>) and axes by leaf name */
    lx_layout layout;
    int paxis;
    char **pre;       /* the prefix's components */
    int npre;
    int64_t n;        /* layers seen so far (-1: none yet) */
    const char *first; /* where n was first seen, for messages */
    char firstbuf[512];
    int matches;
    const char *anc[STK_MAX_DEPTH];
    int depth;
} stk;

static const char *stk_path(const stk *c, const char *last, const char *rel, char *b, size_t n) {
    size_t o = 0;
    b[0] = 0;
    for (int i = 0; i < c->depth && o < n; i++) o += (size_t)snprintf(b + o, n - o, "%s/", c->anc[i]);
    if (o < n) o += (size_t)snprintf(b + o, n - o, "%s", last);
    if (rel && *rel && o < n) snprintf(b + o, n - o, "/%s", rel);
    return b;
}

/* Does the prefix end at key k of the map at the current depth (its earlier components being the
 * last ancestors)? */
static bool stk_matches(const stk *c, const char *k) {
    if (strcmp(k, c->pre[c->npre - 1]) || c->depth < c->npre - 1) return false;
    for (int i = 0; i < c->npre - 1; i++)
        if (strcmp(c->anc[c->depth - (c->npre - 1) + i], c->pre[i])) return false;
    return true;
}

/* The Linen collection an occurrence belongs to (Linen layouts): the first key for `linen`,
 * params/<collection> for MaxText's params, else the nearest collection-named ancestor. */
static const char *stk_collection(const stk *c) {
    if (c->layout == LX_LAYOUT_LINEN && c->depth > 0) return c->anc[0];
    if (c->layout == LX_LAYOUT_MAXTEXT_LINEN && c->depth > 1 && !strcmp(c->anc[0], "params")) return c->anc[1];
    for (int i = c->depth - 1; i >= 0; i--)
        if (is_collection(c->anc[i])) return c->anc[i];
    return "params";
}

/* The layer axis of a leaf at `rel` inside an occurrence whose Linen collection is `coll` (NULL
 * for NNX layouts: decided by the leaf's Flax name, as model_to_linen sorts leaves). */
static int stk_axis(const stk *c, const char *coll, const char *rel) {
    if (coll) return strcmp(coll, "params") ? 0 : c->paxis;
    return under_rngs(rel) || strcmp(collection_of(rel), "params") ? 0 : c->paxis;
}

/* b = a/k (just k when a is empty); a path too long for b is an error */
static lx_status join_path(char *b, size_t n, const char *a, const char *k) {
    size_t la = strlen(a), lk = strlen(k);
    if (la + lk + 2 > n) return lx_fail(LX_ERR_INVALID_ARGUMENT, "convert: path %s/%s is too long", a, k);
    memcpy(b, a, la);
    if (la) b[la++] = '/';
    memcpy(b + la, k, lk + 1);
    return LX_OK;
}

typedef struct leafdesc {
    int ndim;
    const int64_t *shape;
} leafdesc;

static bool leaf_desc(const lx_value *v, leafdesc *d) {
    lx_raw *r = lx_value_raw(v);
    if (v->kind == LX_V_ARRAY) *d = (leafdesc){v->u.array->ndim, v->u.array->shape};
    else if (r && r->kind == LX_RAW_NDARRAY) *d = (leafdesc){r->ndim, r->shape};
    else return false;
    return true;
}

static lx_status stk_not_array(const stk *c, const char *where, const lx_value *v) {
    char b[64];
    (void)c;
    return lx_fail(LX_ERR_TYPE, "convert: %s is %s, not an array: a layer stack holds arrays", where,
                   lx_value_str(v, b, sizeof b));
}

/* Bytes of a raw array: layer i of n along `ax` (unstack) or n layers stacked on `ax`. */
static lx_status raw_item(const lx_raw *r, const char *where, size_t *item) {
    if (r->size > 0 && r->nbytes % (size_t)r->size)
        return lx_fail(LX_ERR_UNSUPPORTED, "convert: %s: a %s array cannot be split by layer", where, r->dtype);
    *item = r->size > 0 ? r->nbytes / (size_t)r->size : (size_t)(lx_ckpt_dtype_bits(r->dtype) / 8);
    return LX_OK;
}

static lx_status raw_slice(const lx_raw *r, int ax, int64_t i, const char *where, lx_value *out) {
    size_t item = 0;
    LX_TRY(raw_item(r, where, &item));
    int64_t outer = 1, inner = (int64_t)item, shape[LX_MAX_DIMS];
    int nd = 0;
    for (int k = 0; k < r->ndim; k++) {
        if (k < ax) outer *= r->shape[k];
        if (k > ax) inner *= r->shape[k];
        if (k != ax) shape[nd++] = r->shape[k];
    }
    size_t nb = (size_t)(outer * inner);
    unsigned char *buf = malloc(nb ? nb : 1);
    if (!buf) return lx_fail(LX_ERR_NO_MEMORY, "out of memory");
    for (int64_t o = 0; o < outer; o++)
        memcpy(buf + o * inner, r->data + (o * r->shape[ax] + i) * inner, (size_t)inner);
    lx_raw *nr = NULL;
    lx_status s = lx_raw_new(LX_RAW_NDARRAY, r->dtype, nd, shape, buf, nb, &nr);
    free(buf);
    if (s == LX_OK) *out = lx_raw_v(nr);
    return s;
}

static lx_status raw_stack(lx_raw *const *rs, int64_t n, int ax, const char *where, lx_value *out) {
    const lx_raw *r = rs[0];
    size_t item = 0;
    LX_TRY(raw_item(r, where, &item));
    int64_t outer = 1, inner = (int64_t)item, shape[LX_MAX_DIMS];
    int nd = 0;
    for (int k = 0; k <= r->ndim; k++) {
        if (k == ax) shape[nd++] = n;
        if (k < r->ndim) shape[nd++] = r->shape[k];
        if (k < ax && k < r->ndim) outer *= r->shape[k];
        if (k >= ax && k < r->ndim) inner *= r->shape[k];
    }
    size_t nb = (size_t)(outer * inner * n);
    unsigned char *buf = malloc(nb ? nb : 1);
    if (!buf) return lx_fail(LX_ERR_NO_MEMORY, "out of memory");
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < n; i++) memcpy(buf + (o * n + i) * inner, rs[i]->data + o * inner, (size_t)inner);
    lx_raw *nr = NULL;
    lx_status s = lx_raw_new(LX_RAW_NDARRAY, r->dtype, nd, shape, buf, nb, &nr);
    free(buf);
    if (s == LX_OK) *out = lx_raw_v(nr);
    return s;
}

/* Check every leaf of an occurrence has a layer axis of one common length (c->n). */
static lx_status stk_count(stk *c, const char *coll, const lx_tree *t, const char *base, const char *rel) {
    char p[512], w[512];
    for (size_t i = 0; i < lx_tree_len(t); i++) {
        const lx_value *v = lx_tree_at(t, i);
        LX_TRY(join_path(p, sizeof p, rel, lx_tree_key(t, i)));
        if (v->kind == LX_V_TREE) {
            LX_TRY(stk_count(c, coll, v->u.tree, base, p));
            continue;
        }
        if (v->kind == LX_V_NONE) continue;
        leafdesc d;
        LX_TRY(join_path(w, sizeof w, base, p));
        if (!leaf_desc(v, &d)) return stk_not_array(c, w, v);
        int ax0 = stk_axis(c, coll, p), ax = ax0 < 0 ? ax0 + d.ndim : ax0;
        char b[96];
        if (ax < 0 || ax >= d.ndim)
            return lx_fail(LX_ERR_SHAPE, "convert: --unscan: %s has shape %s, which has no layer axis %d", w,
                           lx_shape_str(d.ndim, d.shape, b, sizeof b), ax0);
        if (c->n < 0) {
            c->n = d.shape[ax];
            memcpy(c->firstbuf, w, strlen(w) + 1);
            c->first = c->firstbuf;
        } else if (d.shape[ax] != c->n) {
            return lx_fail(LX_ERR_SHAPE, "convert: --unscan: %s has shape %s: %lld layers on axis %d, but %s has %lld", w,
                           lx_shape_str(d.ndim, d.shape, b, sizeof b), (long long)d.shape[ax], ax, c->first,
                           (long long)c->n);
        }
    }
    return LX_OK;
}

/* Layer i of an occurrence. */
static lx_status stk_slice(const stk *c, const char *coll, const lx_tree *t, const char *base, const char *rel,
                           int64_t li, lx_tree **out) {
    lx_tree *o = lx_tree_new();
    if (!o) return lx_last_status();
    lx_status s = LX_OK;
    char p[512], w[512];
    for (size_t i = 0; i < lx_tree_len(t) && s == LX_OK; i++) {
        const lx_value *v = lx_tree_at(t, i);
        const char *k = lx_tree_key(t, i);
        s = join_path(p, sizeof p, rel, k);
        if (s != LX_OK) break;
        if (v->kind == LX_V_TREE) {
            lx_tree *st = NULL;
            s = stk_slice(c, coll, v->u.tree, base, p, li, &st);
            if (s == LX_OK) s = lx_tree_set(o, k, lx_tree_v(st));
            lx_tree_release(st);
            continue;
        }
        if (v->kind == LX_V_NONE) {
            s = lx_tree_set(o, k, *v);
            continue;
        }
        s = join_path(w, sizeof w, base, p);
        if (s != LX_OK) break;
        int ax = stk_axis(c, coll, p);
        lx_value nv = lx_none();
        if (v->kind == LX_V_ARRAY) {
            lx_array *a = v->u.array;
            if (ax < 0) ax += a->ndim;
            lx_range r[LX_MAX_DIMS];
            for (int d = 0; d <= ax; d++) r[d] = d == ax ? LX_RANGE(li, li + 1) : LX_RANGE_ALL;
            int64_t sq = ax;
            lx_array *y = lx_squeeze(lx_slice(a, ax + 1, r), 1, &sq);
            if (!y) s = lx_last_status();
            else nv = lx_array_v(y);
        } else {
            const lx_raw *rw = lx_value_raw(v);
            if (ax < 0) ax += rw->ndim;
            s = raw_slice(rw, ax, li, w, &nv);
        }
        if (s == LX_OK) s = lx_tree_set(o, k, nv);
        if (v->kind != LX_V_ARRAY) lx_value_free(&nv); /* arrays belong to the pool */
    }
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

/* The n layers of an occurrence stacked back (each layer must have layer 0's structure). */
static lx_status stk_join(const stk *c, const char *coll, const lx_tree *const *ls, int64_t n, const char *base,
                          const char *rel, lx_tree **out) {
    lx_tree *o = lx_tree_new();
    if (!o) return lx_last_status();
    const lx_value **vs = malloc(sizeof *vs * (size_t)n);
    if (!vs) {
        lx_tree_release(o);
        return lx_fail(LX_ERR_NO_MEMORY, "out of memory");
    }
    lx_status s = LX_OK;
    char p[512], w[512], b1[96], b2[96];
    for (int64_t j = 1; j < n && s == LX_OK; j++)
        if (lx_tree_len(ls[j]) != lx_tree_len(ls[0]))
            s = lx_fail(LX_ERR_NOT_FOUND, "convert: --scan: layer %lld of %s%s%s has %zu entries, layer 0 has %zu",
                        (long long)j, base, rel[0] ? "/" : "", rel, lx_tree_len(ls[j]), lx_tree_len(ls[0]));
    for (size_t i = 0; i < lx_tree_len(ls[0]) && s == LX_OK; i++) {
        const char *k = lx_tree_key(ls[0], i);
        s = join_path(p, sizeof p, rel, k);
        if (s == LX_OK) s = join_path(w, sizeof w, base, p);
        if (s != LX_OK) break;
        const lx_value *v0 = lx_tree_at(ls[0], i);
        for (int64_t j = 0; j < n && s == LX_OK; j++) {
            vs[j] = lx_tree_get(ls[j], k);
            if (!vs[j] || vs[j]->kind != v0->kind)
                s = lx_fail(LX_ERR_NOT_FOUND, "convert: --scan: layer %lld has no %s like layer 0's (%s)", (long long)j,
                            p, base);
        }
        if (s != LX_OK) break;
        if (v0->kind == LX_V_TREE) {
            const lx_tree **sub = malloc(sizeof *sub * (size_t)n);
            if (!sub) {
                s = lx_fail(LX_ERR_NO_MEMORY, "out of memory");
                break;
            }
            for (int64_t j = 0; j < n; j++) sub[j] = vs[j]->u.tree;
            lx_tree *st = NULL;
            s = stk_join(c, coll, sub, n, base, p, &st);
            free(sub);
            if (s == LX_OK) s = lx_tree_set(o, k, lx_tree_v(st));
            lx_tree_release(st);
            continue;
        }
        if (v0->kind == LX_V_NONE) {
            s = lx_tree_set(o, k, *v0);
            continue;
        }
        leafdesc d0, dj;
        if (!leaf_desc(v0, &d0)) {
            s = stk_not_array(c, w, v0);
            break;
        }
        for (int64_t j = 1; j < n && s == LX_OK; j++) {
            bool same = leaf_desc(vs[j], &dj) && dj.ndim == d0.ndim;
            for (int d = 0; same && d < d0.ndim; d++) same = dj.shape[d] == d0.shape[d];
            if (same && v0->kind == LX_V_ARRAY) same = vs[j]->u.array->dtype == v0->u.array->dtype;
            if (same && v0->kind != LX_V_ARRAY) same = !strcmp(lx_value_raw(vs[j])->dtype, lx_value_raw(v0)->dtype);
            if (!same)
                s = lx_fail(LX_ERR_SHAPE, "convert: --scan: %s: layer %lld has %s, layer 0 has %s (%s)", p, (long long)j,
                            leaf_desc(vs[j], &dj) ? lx_shape_str(dj.ndim, dj.shape, b2, sizeof b2) : "no array",
                            lx_shape_str(d0.ndim, d0.shape, b1, sizeof b1), base);
        }
        if (s != LX_OK) break;
        int ax0 = stk_axis(c, coll, p), ax = ax0 < 0 ? ax0 + d0.ndim + 1 : ax0;
        if (ax < 0 || ax > d0.ndim) {
            s = lx_fail(LX_ERR_SHAPE, "convert: --scan: %s has shape %s, which cannot take a layer axis %d", w,
                        lx_shape_str(d0.ndim, d0.shape, b1, sizeof b1), ax0);
            break;
        }
        if (n > INT_MAX) {
            s = lx_fail(LX_ERR_INVALID_ARGUMENT, "convert: --scan: %lld layers", (long long)n);
            break;
        }
        lx_value nv = lx_none();
        if (v0->kind == LX_V_ARRAY) {
            lx_array **xs = malloc(sizeof *xs * (size_t)n);
            if (!xs) {
                s = lx_fail(LX_ERR_NO_MEMORY, "out of memory");
                break;
            }
            for (int64_t j = 0; j < n; j++) xs[j] = vs[j]->u.array;
            lx_array *y = lx_stack((int)n, xs, ax);
            free(xs);
            if (!y) s = lx_last_status();
            else s = lx_tree_set(o, k, lx_array_v(y));
        } else {
            lx_raw **rs = malloc(sizeof *rs * (size_t)n);
            if (!rs) {
                s = lx_fail(LX_ERR_NO_MEMORY, "out of memory");
                break;
            }
            for (int64_t j = 0; j < n; j++) rs[j] = lx_value_raw(vs[j]);
            s = raw_stack(rs, n, ax, w, &nv);
            free(rs);
            if (s == LX_OK) s = lx_tree_set(o, k, nv);
            lx_value_free(&nv);
        }
    }
    free(vs);
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

/* PREFIX_<i> -> i when `k` is one (i < 2^62), else -1. */
static int64_t layer_index(const char *k, const char *last) {
    size_t n = strlen(last);
    if (strncmp(k, last, n) || k[n] != '_' || !all_digits(k + n + 1) || strlen(k + n + 1) > 18) return -1;
    if (k[n + 1] == '0' && k[n + 2]) return -1; /* layers_01 is not layer 1 */
    return strtoll(k + n + 1, NULL, 10);
}

/* An nnx.List of layers: keys exactly "0", "1", ..., "n-1" in any order, every one a map. */
static int64_t list_len(const lx_tree *t) {
    int64_t n = (int64_t)lx_tree_len(t);
    if (n == 0) return -1;
    for (int64_t i = 0; i < n; i++) {
        char k[32];
        snprintf(k, sizeof k, "%lld", (long long)i);
        const lx_value *v = lx_tree_get(t, k);
        if (!v || v->kind != LX_V_TREE) return -1;
    }
    return n;
}

static lx_status stk_walk(stk *c, bool unscan, const lx_tree *t, lx_tree **out);

/* Stack the occurrence made of `layers` (n maps) and store it under `key` in `o`. */
static lx_status stk_store_joined(stk *c, lx_tree *o, const char *key, const lx_tree *const *layers, int64_t n) {
    char where[512];
    stk_path(c, key, NULL, where, sizeof where);
    const char *coll = c->nnx ? NULL : stk_collection(c);
    if (c->n >= 0 && n != c->n)
        return lx_fail(LX_ERR_SHAPE, "convert: --scan: %s has %lld layers, but %s has %lld", where, (long long)n,
                       c->first, (long long)c->n);
    if (c->n < 0) {
        c->n = n;
        memcpy(c->firstbuf, where, strlen(where) + 1);
        c->first = c->firstbuf;
    }
    lx_tree *j = NULL;
    LX_TRY(stk_join(c, coll, layers, n, where, "", &j));
    lx_status s = lx_tree_set(o, key, lx_tree_v(j));
    lx_tree_release(j);
    c->matches++;
    return s;
}

static lx_status stk_entry(stk *c, bool unscan, const lx_tree *t, size_t i, lx_tree *o) {
    const char *k = lx_tree_key(t, i);
    const lx_value *v = lx_tree_at(t, i);
    const char *last = c->pre[c->npre - 1];
    char where[512], name[300];
    if (unscan && v->kind == LX_V_TREE && stk_matches(c, k)) {
        stk_path(c, k, NULL, where, sizeof where);
        if (c->nnx && list_len(v->u.tree) > 0)
            return lx_fail(LX_ERR_INVALID_ARGUMENT,
                           "convert: --unscan: %s is already unrolled (an nnx.List: %s/0, %s/1, ...); --scan stacks it", where,
                           where, where);
        const char *coll = c->nnx ? NULL : stk_collection(c);
        LX_TRY(stk_count(c, coll, v->u.tree, where, ""));
        if (c->n < 0) return lx_fail(LX_ERR_NOT_FOUND, "convert: --unscan: %s holds no arrays", where);
        lx_tree *list = c->nnx ? lx_tree_new() : NULL;
        if (c->nnx && !list) return lx_last_status();
        lx_status s = LX_OK;
        for (int64_t li = 0; li < c->n && s == LX_OK; li++) {
            lx_tree *layer = NULL;
            s = stk_slice(c, coll, v->u.tree, where, "", li, &layer);
            if (s != LX_OK) break;
            if (c->nnx) {
                snprintf(name, sizeof name, "%lld", (long long)li);
                s = lx_tree_set(list, name, lx_tree_v(layer));
            } else {
                snprintf(name, sizeof name, "%s_%lld", k, (long long)li);
                if (lx_tree_get(t, name))
                    s = lx_fail(LX_ERR_EXISTS, "convert: --unscan: %s: its parent already has %s", where, name);
                else s = lx_tree_set(o, name, lx_tree_v(layer));
            }
            lx_tree_release(layer);
        }
        if (s == LX_OK && c->nnx) s = lx_tree_set(o, k, lx_tree_v(list));
        lx_tree_release(list);
        c->matches++;
        return s;
    }
    if (!unscan && c->nnx && v->kind == LX_V_TREE && stk_matches(c, k) && list_len(v->u.tree) > 0) {
        int64_t n = list_len(v->u.tree);
        const lx_tree **ls = malloc(sizeof *ls * (size_t)n);
        if (!ls) return lx_fail(LX_ERR_NO_MEMORY, "out of memory");
        for (int64_t j = 0; j < n; j++) {
            snprintf(name, sizeof name, "%lld", (long long)j);
            ls[j] = lx_tree_get(v->u.tree, name)->u.tree;
        }
        lx_status s = stk_store_joined(c, o, k, ls, n);
        free(ls);
        return s;
    }
    int64_t li = unscan ? -1 : layer_index(k, last);
    if (li >= 0) {
        /* PREFIX_<i> siblings: the stack goes where PREFIX_0 is; the others are dropped */
        bool m = stk_matches(c, last);
        if (m && li > 0) {
            snprintf(name, sizeof name, "%s_0", last);
            const lx_value *z = lx_tree_get(t, name);
            if (z && z->kind == LX_V_TREE) return LX_OK; /* stacked with layer 0 */
        }
        if (m && li == 0 && v->kind == LX_V_TREE) {
            if (lx_tree_get(t, last)) {
                stk_path(c, last, NULL, where, sizeof where);
                return lx_fail(LX_ERR_EXISTS, "convert: --scan: %s already exists next to %s_0", where, last);
            }
            int64_t n = 0, cap = 16;
            const lx_tree **ls = malloc(sizeof *ls * (size_t)cap);
            lx_status s = ls ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "out of memory");
            for (; s == LX_OK; n++) {
                snprintf(name, sizeof name, "%s_%lld", last, (long long)n);
                const lx_value *lv = lx_tree_get(t, name);
                if (!lv || lv->kind != LX_V_TREE) break;
                if (n == cap) {
                    const lx_tree **g = realloc(ls, sizeof *g * (size_t)(cap *= 2));
                    if (!g) s = lx_fail(LX_ERR_NO_MEMORY, "out of memory");
                    else ls = g;
                }
                if (s == LX_OK) ls[n] = lv->u.tree;
            }
            if (s == LX_OK) s = stk_store_joined(c, o, last, ls, n);
            free(ls);
            return s;
        }
    }
    if (v->kind == LX_V_TREE) {
        if (c->depth >= STK_MAX_DEPTH - 1) return lx_fail(LX_ERR_INVALID_ARGUMENT, "convert: the tree is nested too deeply");
        c->anc[c->depth++] = k;
        lx_tree *sub = NULL;
        lx_status s = stk_walk(c, unscan, v->u.tree, &sub);
        c->depth--;
        if (s == LX_OK) s = lx_tree_set(o, k, lx_tree_v(sub));
        lx_tree_release(sub);
        return s;
    }
    return lx_tree_set(o, k, *v);
}

static lx_status stk_walk(stk *c, bool unscan, const lx_tree *t, lx_tree **out) {
    lx_tree *o = lx_tree_new();
    if (!o) return lx_last_status();
    lx_status s = LX_OK;
    for (size_t i = 0; i < lx_tree_len(t) && s == LX_OK; i++) s = stk_entry(c, unscan, t, i, o);
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

lx_status lx_layout_restack(const lx_tree *t, lx_layout layout, const char *prefix, bool unscan, int params_axis,
                            lx_tree **out) {
    if (!out || !prefix) return lx_fail(LX_ERR_INVALID_ARGUMENT, "layout: %s is NULL", out ? "prefix" : "out");
    if (!t) return lx_null_input("layout: tree is NULL");
    if (layout == LX_LAYOUT_AUTO) layout = lx_layout_detect(t);
    const char *opt = unscan ? "--unscan" : "--scan";
    char *buf = malloc(strlen(prefix) + 1);
    if (!buf) return lx_fail(LX_ERR_NO_MEMORY, "out of memory");
    strcpy(buf, prefix);
    char *parts[STK_MAX_DEPTH];
    int np = 0;
    for (char *tok = strtok(buf, "/"); tok; tok = strtok(NULL, "/")) {
        if (np == STK_MAX_DEPTH) {
            free(buf);
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "convert: %s %s: too many components", opt, prefix);
        }
        parts[np++] = tok;
    }
    /* a leading collection or top-level name (params/, model/) names where, not what: dropped so
     * that the optimizer's copies of the stack match too */
    int skip = 0;
    while (skip < np - 1 && (is_collection(parts[skip]) || (!strcmp(parts[skip], "model") && layout == LX_LAYOUT_MAXTEXT_NNX)))
        skip++;
    if (np - skip == 0) {
        free(buf);
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "convert: %s: empty prefix (expected a module path such as decoder/layers)",
                       opt);
    }
    stk c = {.nnx = layout == LX_LAYOUT_NNX || layout == LX_LAYOUT_MAXTEXT_NNX, .layout = layout, .paxis = params_axis,
             .pre = parts + skip, .npre = np - skip, .n = -1};
    size_t mark = lx_pool_open();
    lx_tree *o = NULL;
    lx_status s = stk_walk(&c, unscan, t, &o);
    lx_pool_close(mark);
    if (s == LX_OK && c.matches == 0) {
        s = unscan ? lx_fail(LX_ERR_NOT_FOUND,
                             "convert: --unscan %s: no layer stack '%s' in this %s checkpoint (nothing to split)", prefix,
                             prefix, lx_layout_name(layout))
                   : lx_fail(LX_ERR_NOT_FOUND,
                             "convert: --scan %s: no unrolled layers %s in this %s checkpoint (nothing to stack)", prefix,
                             c.nnx ? "'<prefix>/0', '<prefix>/1', ..." : "'<prefix>_0', '<prefix>_1', ...",
                             lx_layout_name(layout));
    }
    free(buf);
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

/* Keys in the order Flax writes them: msgpack_serialize rebuilds every dict with sorted keys
 * (jax.tree_util), so Flax's files list keys sorted; an nnx.List's int keys sort as numbers. */
static int key_cmp(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    if (all_digits(x) && all_digits(y)) {
        size_t lx = strlen(x), ly = strlen(y);
        if (lx != ly) return lx < ly ? -1 : 1;
    }
    return strcmp(x, y);
}

static lx_status sorted_tree(const lx_tree *t, lx_tree **out) {
    size_t n = lx_tree_len(t);
    const char **keys = malloc(sizeof *keys * (n ? n : 1));
    if (!keys) return lx_fail(LX_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) keys[i] = lx_tree_key(t, i);
    qsort(keys, n, sizeof *keys, key_cmp);
    lx_tree *o = lx_tree_new();
    lx_status s = o ? LX_OK : lx_last_status();
    for (size_t i = 0; i < n && s == LX_OK; i++) {
        const lx_value *v = lx_tree_get(t, keys[i]);
        if (v->kind != LX_V_TREE) {
            s = lx_tree_set(o, keys[i], *v);
            continue;
        }
        lx_tree *sub = NULL;
        s = sorted_tree(v->u.tree, &sub);
        if (s == LX_OK) s = lx_tree_set(o, keys[i], lx_tree_v(sub));
        lx_tree_release(sub);
    }
    free(keys);
    if (s != LX_OK) {
        lx_tree_release(o);
        return s;
    }
    *out = o;
    return LX_OK;
}

lx_status lx_layout_convert(const lx_tree *t, lx_layout from, lx_layout to, const char *wrapper, lx_tree **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "layout: out is NULL");
    if (!t) return lx_null_input("layout: tree is NULL");
    if (from == LX_LAYOUT_AUTO) from = lx_layout_detect(t);
    if (to == LX_LAYOUT_AUTO) to = from;
    /* boxes are plain arrays in every converted layout: the twins' files then have the same
     * paths (params/ToLinen_0/linear/kernel/value <-> linear/kernel) */
    lx_tree *plain = NULL;
    LX_TRY(unbox_tree(t, &plain));
    lx_tree *o = NULL;
    lx_status s = convert_plain(plain, from, to, wrapper, &o);
    lx_tree_release(plain);
    if (s == LX_OK) s = sorted_tree(o, out);
    lx_tree_release(o);
    return s;
}
