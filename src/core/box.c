/* Linen axis-metadata boxes: Partitioned, LogicallyPartitioned (flax.core.meta) and the
 * bridge's NNXMeta. Boxes are immutable: every change makes a new box. */
#include "linnx/box.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tree_internal.h"
#include "status_internal.h"

struct lx_box {
    int refcount;
    lx_box_kind kind;
    lx_array *value;
    /* Partitioned and LogicallyPartitioned */
    lx_value names; /* LX_V_STRS */
    char *mesh;     /* NULL = None */
    lx_value rules; /* LogicallyPartitioned: LX_V_STRS pairs or LX_V_NONE */
    /* NNXMeta. The map is private and never changed after construction, so boxes derived from
     * one another (replace_boxed) share it. */
    const lx_vartype *var_type;
    lx_tree *meta;
};

#define FLAX_ERRORS_URL "https://flax.readthedocs.io/en/latest/api_reference/flax.errors.html"

const char *lx_box_kind_name(lx_box_kind kind) {
    switch (kind) {
    case LX_BOX_PARTITIONED: return "Partitioned";
    case LX_BOX_LOGICALLY_PARTITIONED: return "LogicallyPartitioned";
    case LX_BOX_NNX_META: return "NNXMeta";
    }
    return "invalid box";
}

lx_status lx_box_kind_from_value(const lx_value *v, lx_box_kind *out) {
    if (!out) return lx_null_out("box_kind_from_value");
    if (v && v->kind == LX_V_INT && v->u.i >= LX_BOX_PARTITIONED && v->u.i <= LX_BOX_NNX_META) {
        *out = (lx_box_kind)v->u.i;
        return LX_OK;
    }
    if (v && v->kind == LX_V_STR && v->u.s)
        for (int k = LX_BOX_PARTITIONED; k <= LX_BOX_NNX_META; k++)
            if (strcmp(v->u.s, lx_box_kind_name((lx_box_kind)k)) == 0) {
                *out = (lx_box_kind)k;
                return LX_OK;
            }
    char buf[256];
    return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_meta_type: %s names no box kind (Partitioned, "
                   "LogicallyPartitioned or NNXMeta)", v ? lx_value_str(v, buf, sizeof buf) : "NULL");
}

/* ---- lifetime ---- */

lx_box *lx_box_retain(lx_box *b) {
    if (b) b->refcount++;
    return b;
}

void lx_box_release(lx_box *b) {
    if (!b || --b->refcount > 0) return;
    lx_release(b->value);
    lx_value_free(&b->names);
    free(b->mesh);
    lx_value_free(&b->rules);
    lx_tree_release(b->meta);
    free(b);
}

/* A box of `kind` around `value` with empty fields; the caller fills the rest. */
static lx_box *box_alloc(lx_box_kind kind, lx_array *value) {
    lx_box *b = calloc(1, sizeof *b);
    if (!b) {
        lx_fail(LX_ERR_NO_MEMORY, "box: out of memory");
        return NULL;
    }
    b->refcount = 1;
    b->kind = kind;
    b->value = lx_retain(value);
    b->names = lx_none();
    b->rules = lx_none();
    return b;
}

/* A new box equal to `b` but around `value`. */
static lx_status box_clone(const lx_box *b, lx_array *value, lx_box **out) {
    lx_box *c = box_alloc(b->kind, value);
    if (!c) return LX_ERR_NO_MEMORY;
    lx_status st = lx_value_dup(&b->names, &c->names);
    if (st == LX_OK) st = lx_value_dup(&b->rules, &c->rules);
    if (st == LX_OK && b->mesh && !(c->mesh = lx_strdup_(b->mesh))) st = lx_fail(LX_ERR_NO_MEMORY, "box: out of memory");
    c->var_type = b->var_type;
    c->meta = lx_tree_retain(b->meta);
    if (st != LX_OK) {
        lx_box_release(c);
        return st;
    }
    *out = c;
    return LX_OK;
}

static lx_status check_value(const char *who, lx_array *value) {
    lx_value v = lx_array_v(value);
    return lx_check_value_(&v, who);
}

static lx_status check_strs(const char *who, const char *what, int n, const char *const *s) {
    if (n < 0 || (n > 0 && !s)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: bad %s list (%d entries)", who, what, n);
    return LX_OK;
}

/* Rules are (logical, mesh) pairs: an even count and a logical name in every pair. */
static lx_status check_rules(const char *who, const lx_value *rules) {
    if (rules->kind == LX_V_NONE) return LX_OK;
    if (rules->kind != LX_V_STRS)
        return lx_fail(LX_ERR_TYPE, "%s: rules must be a tuple of str, got %s", who, lx_kind_name(rules->kind));
    if (rules->u.strs.n % 2)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: rules must be (logical, mesh) pairs, got %d strings", who,
                       rules->u.strs.n);
    for (int i = 0; i < rules->u.strs.n; i += 2)
        if (!rules->u.strs.v[i])
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: rule %d has no logical name", who, i / 2);
    return LX_OK;
}

/* The shared constructor of the two Partitioned kinds. */
static lx_status make_partitioned(lx_box_kind kind, lx_array *value, const lx_value *names, const char *mesh,
                                  const lx_value *rules, lx_box **out) {
    *out = NULL;
    const char *who = lx_box_kind_name(kind);
    LX_TRY(check_value(who, value));
    if (names->kind != LX_V_STRS)
        return lx_fail(LX_ERR_TYPE, "%s: names must be a tuple of str, got %s", who, lx_kind_name(names->kind));
    LX_TRY(lx_sharding_rank_check_(who, "names", names, value->ndim, value->shape));
    LX_TRY(check_rules(who, rules));
    lx_box *b = box_alloc(kind, value);
    if (!b) return LX_ERR_NO_MEMORY;
    lx_status st = lx_value_dup(names, &b->names);
    if (st == LX_OK) st = lx_value_dup(rules, &b->rules);
    if (st == LX_OK && mesh && !(b->mesh = lx_strdup_(mesh))) st = lx_fail(LX_ERR_NO_MEMORY, "box: out of memory");
    if (st != LX_OK) {
        lx_box_release(b);
        return st;
    }
    *out = b;
    return LX_OK;
}

lx_status lx_box_partitioned(lx_array *value, int nnames, const char *const *names, const char *mesh, lx_box **out) {
    if (!out) return lx_null_out("Partitioned");
    *out = NULL;
    LX_TRY(check_strs("Partitioned", "names", nnames, names));
    lx_value n = lx_strs_v(nnames, names), none = lx_none();
    return make_partitioned(LX_BOX_PARTITIONED, value, &n, mesh, &none, out);
}

lx_status lx_box_logically_partitioned(lx_array *value, int nnames, const char *const *names, const char *mesh,
                                       int nrules, const char *const *rules, lx_box **out) {
    if (!out) return lx_null_out("LogicallyPartitioned");
    *out = NULL;
    LX_TRY(check_strs("LogicallyPartitioned", "names", nnames, names));
    if (rules) LX_TRY(check_strs("LogicallyPartitioned", "rules", nrules, rules));
    lx_value n = lx_strs_v(nnames, names), r = rules ? lx_strs_v(nrules, rules) : lx_none();
    return make_partitioned(LX_BOX_LOGICALLY_PARTITIONED, value, &n, mesh, &r, out);
}

lx_status lx_box_from_initializer(const lx_initializer *init, lx_array *value, lx_box **out) {
    if (!out) return lx_null_out("box_from_initializer");
    *out = NULL;
    if (!init || init->partitioning.kind == LX_PARTITION_NONE)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "box_from_initializer: the initializer has no partitioning");
    const char *names[LX_MAX_DIMS], *rules[2 * LX_PARTITION_MAX_RULES];
    int nnames = lx_init_partition_names(init, names);
    const char *mesh = lx_init_partition_mesh(init);
    if (init->partitioning.kind == LX_PARTITION_PARTITIONED)
        return lx_box_partitioned(value, nnames, names, mesh, out);
    int nrules = lx_init_partition_rules(init, rules);
    return lx_box_logically_partitioned(value, nnames, names, mesh, nrules < 0 ? 0 : nrules,
                                        nrules < 0 ? NULL : rules, out);
}

lx_status lx_box_nnx_meta(const lx_vartype *var_type, lx_array *value, const lx_tree *metadata, lx_box **out) {
    if (!out) return lx_null_out("NNXMeta");
    *out = NULL;
    if (!var_type) return lx_fail(LX_ERR_INVALID_ARGUMENT, "NNXMeta: var_type is NULL");
    LX_TRY(check_value("NNXMeta", value));
    lx_tree *md;
    LX_TRY(lx_meta_copy_("NNXMeta", metadata, &md));
    lx_status st = lx_sharding_rank_check_("NNXMeta", "out_sharding", lx_tree_get(md, "out_sharding"), value->ndim,
                                           value->shape);
    if (st != LX_OK) {
        lx_tree_release(md);
        return st;
    }
    lx_box *b = box_alloc(LX_BOX_NNX_META, value);
    if (!b) {
        lx_tree_release(md);
        return LX_ERR_NO_MEMORY;
    }
    b->var_type = var_type;
    b->meta = md;
    *out = b;
    return LX_OK;
}

/* ---- reading ---- */

lx_box_kind lx_box_get_kind(const lx_box *b) { return b ? b->kind : (lx_box_kind)0; }

lx_array *lx_box_unbox(const lx_box *b) { return b ? b->value : NULL; }

const lx_value *lx_box_names(const lx_box *b) {
    if (!b) return NULL;
    if (b->kind != LX_BOX_NNX_META) return &b->names;
    const lx_value *v = lx_tree_get(b->meta, "out_sharding");
    return v && v->kind == LX_V_STRS ? v : NULL;
}

const char *lx_box_mesh(const lx_box *b) {
    if (!b) return NULL;
    if (b->kind != LX_BOX_NNX_META) return b->mesh;
    const lx_value *v = lx_tree_get(b->meta, "mesh");
    return v && v->kind == LX_V_STR ? v->u.s : NULL;
}

const lx_value *lx_box_rules(const lx_box *b) {
    return b && b->kind == LX_BOX_LOGICALLY_PARTITIONED ? &b->rules : NULL;
}

const lx_vartype *lx_box_var_type(const lx_box *b) { return b ? b->var_type : NULL; }

const lx_tree *lx_box_metadata(const lx_box *b) { return b ? b->meta : NULL; }

/* ---- operations ---- */

lx_status lx_box_replace_boxed(const lx_box *b, lx_array *value, lx_box **out) {
    if (!out) return lx_null_out("replace_boxed");
    *out = NULL;
    if (!b) return lx_null_input("replace_boxed: box is NULL");
    LX_TRY(check_value(lx_box_kind_name(b->kind), value));
    return box_clone(b, value, out);
}

static lx_status unspecified(const lx_box *b) {
    char buf[1024];
    return lx_fail(LX_ERR_INVALID_ARGUMENT,
                   "Trying to transform a Partitioned variable but \"partition_name\" is not specified in "
                   "metadata_params: %s (" FLAX_ERRORS_URL "#flax.errors.PartitioningUnspecifiedError)",
                   lx_box_str(b, buf, sizeof buf));
}

/* A new box like `b` whose sharding names are `names` (for NNXMeta: metadata['out_sharding']). */
static lx_status with_names(const lx_box *b, const lx_value *names, lx_box **out) {
    lx_box *c;
    LX_TRY(box_clone(b, b->value, &c));
    lx_status st = LX_OK;
    if (b->kind == LX_BOX_NNX_META) {
        /* The shared map must not change: give the new box its own copy. */
        lx_tree *md = lx_tree_copy(b->meta);
        st = md ? lx_tree_set(md, "out_sharding", *names) : LX_ERR_NO_MEMORY;
        lx_tree_release(c->meta);
        c->meta = md;
    } else {
        lx_value_free(&c->names);
        st = lx_value_dup(names, &c->names);
    }
    if (st != LX_OK) {
        lx_box_release(c);
        return st;
    }
    *out = c;
    return LX_OK;
}

lx_status lx_box_add_axis(const lx_box *b, int index, const char *partition_name, lx_box **out) {
    if (!out) return lx_null_out("add_axis");
    *out = NULL;
    if (!b) return lx_null_input("add_axis: box is NULL");
    const lx_value *names = lx_box_names(b);
    if (!names) return box_clone(b, b->value, out); /* an NNXMeta without names: nothing to update */
    if (!partition_name) return unspecified(b);
    int n = names->u.strs.n;
    /* Names beyond LX_MAX_DIMS can describe no array, and a huge index would overflow `index + 1`
     * and ask for gigabytes of None padding: refuse it. */
    if (index >= LX_MAX_DIMS || n >= LX_MAX_DIMS) {
        char buf[512];
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "%s.add_axis: axis %d would give %lld axis names (names %s); arrays have at most %d axes",
                       lx_box_kind_name(b->kind), index, (long long)(index > n ? (long long)index + 1 : n + 1LL),
                       lx_value_str(names, buf, sizeof buf), LX_MAX_DIMS);
    }
    /* Python: pad with None up to `index`, then list.insert (negative counts from the end). */
    int len = index > n ? index + 1 : n + 1;
    int at = index > n ? index : index >= 0 ? index : (index + n < 0 ? 0 : index + n);
    const char **v = malloc((size_t)len * sizeof *v);
    if (!v) return lx_fail(LX_ERR_NO_MEMORY, "add_axis: out of memory");
    for (int i = 0, j = 0; i < len; i++) v[i] = i == at ? partition_name : j < n ? names->u.strs.v[j++] : NULL;
    lx_value nv = lx_strs_v(len, v);
    lx_status st = with_names(b, &nv, out);
    free(v);
    return st;
}

lx_status lx_box_remove_axis(const lx_box *b, int index, const char *partition_name, lx_box **out) {
    if (!out) return lx_null_out("remove_axis");
    *out = NULL;
    if (!b) return lx_null_input("remove_axis: box is NULL");
    const lx_value *names = lx_box_names(b);
    if (!names) return box_clone(b, b->value, out);
    if (!partition_name) return unspecified(b);
    int n = names->u.strs.n, at = index < 0 ? index + n : index;
    char buf[512];
    if (at < 0 || at >= n)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s.remove_axis: axis %d is out of range for names %s",
                       lx_box_kind_name(b->kind), index, lx_value_str(names, buf, sizeof buf));
    const char *old = names->u.strs.v[at];
    if (!old || strcmp(old, partition_name) != 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s.remove_axis: axis %d is named %s%s%s, not '%s' (names %s)",
                       lx_box_kind_name(b->kind), index, old ? "'" : "", old ? old : "None", old ? "'" : "",
                       partition_name, lx_value_str(names, buf, sizeof buf));
    /* Dropping one entry: the remaining pointers are still owned by `names`, and with_names
     * copies them before this returns. */
    const char **v = malloc((size_t)(n > 1 ? n - 1 : 1) * sizeof *v);
    if (!v) return lx_fail(LX_ERR_NO_MEMORY, "remove_axis: out of memory");
    for (int i = 0, j = 0; i < n; i++)
        if (i != at) v[j++] = names->u.strs.v[i];
    lx_value nv = lx_strs_v(n - 1, v);
    lx_status st = with_names(b, &nv, out);
    free(v);
    return st;
}

/* ---- NNX metadata conversions ---- */

lx_status lx_box_to_nnx_metadata(const lx_box *b, lx_tree **out) {
    if (!out) return lx_null_out("to_nnx_metadata");
    *out = NULL;
    if (!b) return lx_null_input("to_nnx_metadata: box is NULL");
    if (b->kind == LX_BOX_NNX_META) {
        *out = lx_tree_copy(b->meta);
        return *out ? LX_OK : LX_ERR_NO_MEMORY;
    }
    lx_tree *md = lx_tree_new();
    if (!md) return LX_ERR_NO_MEMORY;
    lx_status st = lx_tree_set(md, "out_sharding", b->names);
    if (st == LX_OK) st = lx_tree_set(md, "mesh", b->mesh ? lx_str_v(b->mesh) : lx_none());
    if (st == LX_OK && b->kind == LX_BOX_LOGICALLY_PARTITIONED) st = lx_tree_set(md, "sharding_rules", b->rules);
    if (st != LX_OK) {
        lx_tree_release(md);
        return st;
    }
    *out = md;
    return LX_OK;
}

lx_status lx_box_from_nnx_metadata(lx_box_kind kind, lx_array *value, const lx_tree *metadata, lx_box **out) {
    if (!out) return lx_null_out("from_nnx_metadata");
    *out = NULL;
    if (kind == LX_BOX_NNX_META)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "NNXMeta.from_nnx_metadata: an NNXMeta needs its Variable type; build it with lx_box_nnx_meta");
    if (kind != LX_BOX_PARTITIONED && kind != LX_BOX_LOGICALLY_PARTITIONED)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "from_nnx_metadata: invalid box kind %d", (int)kind);
    const char *who = lx_box_kind_name(kind);
    const lx_value *names = lx_tree_get(metadata, "out_sharding");
    if (!names)
        return lx_fail(LX_ERR_NOT_FOUND, "%s.from_nnx_metadata: the metadata has no 'out_sharding' (the box's names)",
                       who);
    const lx_value *mesh = lx_tree_get(metadata, "mesh");
    if (mesh && mesh->kind != LX_V_STR && mesh->kind != LX_V_NONE)
        return lx_fail(LX_ERR_TYPE, "%s.from_nnx_metadata: 'mesh' must be a mesh name (str or None), got %s", who,
                       lx_kind_name(mesh->kind));
    const char *mesh_name = mesh && mesh->kind == LX_V_STR ? mesh->u.s : NULL;
    lx_value none = lx_none();
    const lx_value *rules = &none;
    if (kind == LX_BOX_LOGICALLY_PARTITIONED) {
        rules = lx_tree_get(metadata, "sharding_rules");
        if (!rules)
            return lx_fail(LX_ERR_NOT_FOUND,
                           "LogicallyPartitioned.from_nnx_metadata: the metadata has no 'sharding_rules' (a "
                           "LogicallyPartitioned box needs its rules; a Variable made from a Partitioned box "
                           "converts back with linen_meta_type=Partitioned)");
    }
    return make_partitioned(kind, value, names, mesh_name, rules, out);
}

/* ---- comparing and printing ---- */

static bool str_eq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

bool lx_box_equal(const lx_box *a, const lx_box *b) {
    if (a == b) return true;
    if (!a || !b || a->kind != b->kind || a->var_type != b->var_type) return false;
    if (a->value != b->value && !lx_array_equal(a->value, b->value)) return false;
    return lx_value_equal(&a->names, &b->names) && str_eq(a->mesh, b->mesh) && lx_value_equal(&a->rules, &b->rules) &&
           lx_tree_equal(a->meta, b->meta);
}

const char *lx_box_str(const lx_box *b, char *buf, size_t cap) {
    if (!cap) return buf;
    if (!b) {
        snprintf(buf, cap, "<NULL box>");
        return buf;
    }
    size_t n = 0;
    char tmp[512];
#define PUT(...) (n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__))
    PUT("%s(", lx_box_kind_name(b->kind));
    if (b->kind == LX_BOX_NNX_META) PUT("var_type=%s, ", b->var_type->name);
    PUT("value=%s", lx_array_sig(b->value, tmp, sizeof tmp));
    if (b->kind == LX_BOX_NNX_META) {
        PUT(", metadata={");
        for (size_t i = 0; i < lx_tree_len(b->meta); i++)
            PUT("%s'%s': %s", i ? ", " : "", lx_tree_key(b->meta, i), lx_value_str(lx_tree_at(b->meta, i), tmp, sizeof tmp));
        PUT("}");
    } else {
        PUT(", names=%s", lx_value_str(&b->names, tmp, sizeof tmp));
        if (b->mesh) PUT(", mesh='%s'", b->mesh);
        else PUT(", mesh=None");
        if (b->kind == LX_BOX_LOGICALLY_PARTITIONED) {
            if (b->rules.kind == LX_V_NONE) {
                PUT(", rules=None");
            } else {
                /* Shown as the pairs they are: (('embed', 'data'), ('mlp', None)). */
                const lx_value *r = &b->rules;
                PUT(", rules=(");
                for (int i = 0; i < r->u.strs.n; i += 2) {
                    lx_value pair = lx_strs_v(2, r->u.strs.v + i);
                    PUT("%s%s", i ? ", " : "", lx_value_str(&pair, tmp, sizeof tmp));
                }
                PUT(r->u.strs.n == 2 ? ",)" : ")");
            }
        }
    }
    PUT(")");
#undef PUT
    if (n >= cap) buf[cap - 1] = '\0';
    return buf;
}

/* ---- meta.unbox over a tree ---- */

static lx_status unbox_leaf(const char *path, const lx_value *leaf, void *user, lx_value *out) {
    (void)path;
    (void)user;
    if (leaf->kind == LX_V_BOX) {
        *out = lx_array_v(lx_retain(lx_box_unbox(leaf->u.box)));
        return LX_OK;
    }
    return lx_value_dup(leaf, out);
}

lx_status lx_tree_unbox(const lx_tree *t, lx_tree **out) { return lx_tree_map(t, unbox_leaf, NULL, out); }
