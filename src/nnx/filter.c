/* NNX filters (flax.nnx.filterlib): what split / state pick. */
#include "nnx_internal.h"

static const nnx_filter RNG_STATE_FILTER = {NNX_FILTER_TYPE, &lx_RngState, NULL, 0, NULL, NULL, NULL};
const nnx_filter NNX_NOT_RNG_STATE = {NNX_FILTER_NOT, NULL, NULL, 1, &RNG_STATE_FILTER, NULL, NULL};

/* PathContains: one whole component of the path equals `key`. */
static bool path_contains(const char *path, const char *key) {
    if (!path || !key) return false;
    size_t k = strlen(key);
    const char *p = path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == k && strncmp(p, key, k) == 0) return true;
        if (!slash) return false;
        p = slash + 1;
    }
}

bool nnx_filter_match(const nnx_filter *f, const char *path, const lx_variable *v) {
    if (!f) return false;
    switch (f->kind) {
    case NNX_FILTER_TYPE: return v && f->type && lx_vartype_is(lx_variable_type(v), f->type);
    case NNX_FILTER_TAG: {
        /* Flax matches objects whose `tag` equals the string: RngState Variables carry it. */
        if (!v || !f->tag) return false;
        const lx_value *t = lx_variable_meta_get(v, "tag");
        return t && t->kind == LX_V_STR && t->u.s && strcmp(t->u.s, f->tag) == 0;
    }
    case NNX_FILTER_EVERYTHING: return true;
    case NNX_FILTER_NOTHING: return false;
    case NNX_FILTER_NOT: return f->nsubs >= 1 && f->subs && !nnx_filter_match(&f->subs[0], path, v);
    case NNX_FILTER_ALL:
        for (int i = 0; i < f->nsubs; i++)
            if (!nnx_filter_match(&f->subs[i], path, v)) return false;
        return true;
    case NNX_FILTER_ANY:
        for (int i = 0; i < f->nsubs; i++)
            if (nnx_filter_match(&f->subs[i], path, v)) return true;
        return false;
    case NNX_FILTER_PATH_CONTAINS: return path_contains(path, f->tag);
    case NNX_FILTER_FN: return f->fn && f->fn(path ? path : "", v, f->user);
    }
    return false;
}
