/* Helpers shared by tree.c, variable.c and box.c (not installed). */
#ifndef LINNX_TREE_INTERNAL_H
#define LINNX_TREE_INTERNAL_H

#include <stdlib.h>
#include <string.h>

#include "linnx/status.h"
#include "linnx/value.h"
#include "status_internal.h"

/* A copy of s (NULL stays NULL); NULL also when out of memory - callers that pass a non-NULL s
 * check for it. */
static inline char *lx_strdup_(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* v in decimal into buf (at least 12 bytes), as snprintf("%d") writes it, without stdio: tuple and
 * list keys ("0", "1", ...) are formatted on every training step. Returns buf. */
static inline char *lx_dec_(char *buf, int v) {
    char tmp[12];
    int n = 0;
    unsigned u = v < 0 ? 0u - (unsigned)v : (unsigned)v;
    do tmp[n++] = (char)('0' + u % 10); while (u /= 10);
    char *p = buf;
    if (v < 0) *p++ = '-';
    while (n) *p++ = tmp[--n];
    *p = '\0';
    return buf;
}

/* A reference-kind value whose pointer is NULL stands for the result of a call that failed
 * (the op protocol). Refuse it with LX_ERR_FAILED_INPUT, keeping the earlier message, which
 * explains the failure better than we can. */
static inline lx_status lx_check_value_(const lx_value *v, const char *what) {
    bool null_ref = (v->kind == LX_V_ARRAY && !v->u.array) || (v->kind == LX_V_TREE && !v->u.tree) ||
                    (v->kind == LX_V_VARIABLE && !v->u.var) || (v->kind == LX_V_BOX && !v->u.box) ||
                    (v->kind == LX_V_STR && !v->u.s);
    if (!null_ref) return LX_OK;
    return lx_null_input("%s: value is NULL", what);
}

/* A call handed to a public entry point must be well formed before anything walks it: counts
 * not negative, arrays present for non-zero counts, every keyword named. LX_ERR_INVALID_ARGUMENT
 * "who: malformed call: 0 positional (NULL), 2 keyword (NULL)" otherwise. NULL is no call. */
static inline lx_status lx_call_check_(const char *who, const lx_call *c) {
    if (!c) return LX_OK;
    if (c->nargs < 0 || c->nkwargs < 0 || (c->nargs > 0 && !c->args) || (c->nkwargs > 0 && !c->kwargs))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: malformed call: %d positional (%s), %d keyword (%s)", who,
                       c->nargs, c->args ? "given" : "NULL", c->nkwargs, c->kwargs ? "given" : "NULL");
    for (int i = 0; i < c->nkwargs; i++)
        if (!c->kwargs[i].name) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: keyword argument %d has no name", who, i);
    return LX_OK;
}

/* Leaf rendering shared by the tree printers: Variables and boxes by their own printers, the
 * rest by lx_value_str. */
const char *lx_leaf_str_(const lx_value *v, char *buf, size_t cap);

/* Validate one Variable metadata entry (variable.c): `key` may be an alias; *canon gets the
 * name it is stored under (a static string or `key` itself). */
lx_status lx_meta_check_(const char *who, const char *key, const lx_value *v, const char **canon);
/* A validated, alias-normalised copy of a metadata map (NULL = empty); caller owns it. */
lx_status lx_meta_copy_(const char *who, const lx_tree *md, lx_tree **out);
/* The rank rule for sharding names, the one producer of its message (init.h
 * lx_init_check_partition_rank and every route that puts names next to a value): `names` (LX_V_STRS; anything else passes) may have at most `ndim`
 * entries. LX_ERR_SHAPE "who: out_sharding ('a', 'b', 'c') has 3 entries, more than the rank of a
 * value of shape (2, 3)" otherwise (`what` names the field: out_sharding, names). */
lx_status lx_sharding_rank_check_(const char *who, const char *what, const lx_value *names, int ndim,
                                  const int64_t *shape);
/* Make `meta` (a map from lx_meta_copy_, taken) v's metadata and return the old map (the caller
 * releases it). Never fails: what can fail (the copy) is done before, so a caller can change
 * several Variables all or nothing (nnx_update). */
lx_tree *lx_variable_swap_meta_(lx_variable *v, lx_tree *meta);

#endif
