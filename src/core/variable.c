/* NNX Variables, Variable types, and the type <-> collection name registry (variablelib). */
#include "linnx/variable.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/box.h"
#include "tree_internal.h"
#include "status_internal.h"

/* ---- types ---- */

const lx_vartype lx_Variable = {"Variable", NULL};
const lx_vartype lx_Param = {"Param", &lx_Variable};
const lx_vartype lx_BatchStat = {"BatchStat", &lx_Variable};
const lx_vartype lx_Cache = {"Cache", &lx_Variable};
const lx_vartype lx_Intermediate = {"Intermediate", &lx_Variable};
const lx_vartype lx_Perturbation = {"Perturbation", &lx_Intermediate};
const lx_vartype lx_LoRAParam = {"LoRAParam", &lx_Param};
const lx_vartype lx_RngState = {"RngState", &lx_Variable};
const lx_vartype lx_RngKey = {"RngKey", &lx_RngState};
const lx_vartype lx_RngCount = {"RngCount", &lx_RngState};

/* Run-time types are never freed (any Variable may point at one); the list keeps them
 * reachable, which is also what keeps LeakSanitizer quiet. */
typedef struct user_type {
    lx_vartype type;
    struct user_type *next;
    char name[];
} user_type;

static user_type *user_types;

lx_status lx_vartype_new(const char *name, const lx_vartype *base, const lx_vartype **out) {
    if (!out) return lx_null_out("vartype_new");
    *out = NULL;
    if (!name || !name[0]) return lx_fail(LX_ERR_INVALID_ARGUMENT, "vartype_new: the type needs a name");
    size_t n = strlen(name) + 1;
    user_type *u = malloc(sizeof *u + n);
    if (!u) return lx_fail(LX_ERR_NO_MEMORY, "vartype_new: out of memory");
    memcpy(u->name, name, n);
    u->type.name = u->name;
    u->type.base = base ? base : &lx_Variable;
    u->next = user_types;
    user_types = u;
    *out = &u->type;
    return LX_OK;
}

bool lx_vartype_is(const lx_vartype *t, const lx_vartype *base) {
    if (!base) return false;
    for (; t; t = t->base)
        if (t == base) return true;
    return false;
}

const char *lx_vartype_str(const lx_vartype *t, char *buf, size_t cap) {
    snprintf(buf, cap, "<class '%s'>", t && t->name ? t->name : "?");
    return buf;
}

/* ---- the registry ---- */

/* One ordered list, like Flax's dict VariableTypeCache: lookups by type return the first match
 * in registration order, and an overwrite keeps the name's place. */
typedef struct {
    char *name;
    bool owned; /* pre-registered names are literals and outlive any reset */
    const lx_vartype *type;
} reg_entry;

/* The five pre-registered names live in static storage from program start: no lazy first-use
 * set-up, so lookups from several threads (each with its own Variables) never race on it. Only
 * registering and resetting write; they belong to setup (variable.h). */
#define REG_INITIAL_CAP 16
#define REG_DEFAULTS                                                                       \
    {(char *)"params", false, &lx_Param}, {(char *)"batch_stats", false, &lx_BatchStat},   \
        {(char *)"cache", false, &lx_Cache}, {(char *)"intermediates", false, &lx_Intermediate}, \
        {(char *)"perturbations", false, &lx_Perturbation}
static const reg_entry reg_defaults[] = {REG_DEFAULTS};
#define NDEFAULTS (sizeof reg_defaults / sizeof reg_defaults[0])
static reg_entry reg_initial[REG_INITIAL_CAP] = {REG_DEFAULTS}; /* overwrite may change these */
static reg_entry *reg = reg_initial;
static size_t reg_len = NDEFAULTS, reg_cap = REG_INITIAL_CAP;

void lx_variable_registry_reset(void) {
    for (size_t i = 0; i < reg_len; i++)
        if (reg[i].owned) free(reg[i].name);
    memcpy(reg, reg_defaults, sizeof reg_defaults);
    reg_len = NDEFAULTS;
}

static reg_entry *reg_find(const char *name) {
    for (size_t i = 0; i < reg_len; i++)
        if (strcmp(reg[i].name, name) == 0) return &reg[i];
    return NULL;
}

static lx_status reg_append(const char *name, const lx_vartype *type, const char **stored) {
    if (reg_len == reg_cap) {
        size_t cap = reg_cap * 2;
        reg_entry *r = reg == reg_initial ? malloc(cap * sizeof *r) : realloc(reg, cap * sizeof *r);
        if (!r) return lx_fail(LX_ERR_NO_MEMORY, "registry: out of memory");
        if (reg == reg_initial) memcpy(r, reg_initial, reg_len * sizeof *r);
        reg = r;
        reg_cap = cap;
    }
    char *n = lx_strdup_(name);
    if (!n) return lx_fail(LX_ERR_NO_MEMORY, "registry: out of memory");
    reg[reg_len++] = (reg_entry){n, true, type};
    if (stored) *stored = n;
    return LX_OK;
}

static lx_status check_name(const char *who, const char *name) {
    if (!name || !name[0]) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: empty collection name", who);
    return LX_OK;
}

lx_status lx_variable_register_name(const char *name, const lx_vartype *type, bool overwrite) {
    LX_TRY(check_name("register_variable_name", name));
    if (!type) return lx_fail(LX_ERR_INVALID_ARGUMENT, "register_variable_name: type is NULL");
    reg_entry *e = reg_find(name);
    if (e && !overwrite) {
        char old[256];
        return lx_fail(LX_ERR_EXISTS,
                       "Name %s already mapped to type %s. To overwrite, call register_variable_name() with "
                       "`overwrite=True`.",
                       name, lx_vartype_str(e->type, old, sizeof old));
    }
    if (e) {
        e->type = type;
        return LX_OK;
    }
    return reg_append(name, type, NULL);
}

lx_status lx_variable_type_from_name(const char *name, const lx_vartype *base, bool allow_register,
                                     const lx_vartype **out) {
    if (!out) return lx_null_out("variable_type_from_name");
    *out = NULL;
    LX_TRY(check_name("variable_type_from_name", name));
    reg_entry *e = reg_find(name);
    if (e) {
        *out = e->type;
        return LX_OK;
    }
    if (!allow_register)
        return lx_fail(LX_ERR_NOT_FOUND,
                       "Name %s is not registered in the registry. To register a new name, use "
                       "register_variable_name() or set allow_register=True.",
                       name);
    const lx_vartype *t;
    LX_TRY(lx_vartype_new(name, base, &t));
    LX_TRY(reg_append(name, t, NULL));
    *out = t;
    return LX_OK;
}

lx_status lx_variable_name_from_type(const lx_vartype *type, bool allow_register, const char **out) {
    if (!out) return lx_null_out("variable_name_from_type");
    *out = NULL;
    if (!type) return lx_fail(LX_ERR_INVALID_ARGUMENT, "variable_name_from_type: type is NULL");
    for (size_t i = 0; i < reg_len; i++)
        if (reg[i].type == type) { /* exact type: no subclass matching, as in Flax */
            *out = reg[i].name;
            return LX_OK;
        }
    char ts[256];
    lx_vartype_str(type, ts, sizeof ts);
    if (!allow_register)
        return lx_fail(LX_ERR_NOT_FOUND,
                       "Type %s is not registered in the registry. To register a new type, use "
                       "register_variable_name() or set allow_register=True.",
                       ts);
    reg_entry *e = reg_find(type->name);
    if (e) {
        char old[256];
        return lx_fail(LX_ERR_EXISTS,
                       "Name %s is already registered in the registry as %s. It cannot be linked with this type %s.",
                       type->name, lx_vartype_str(e->type, old, sizeof old), ts);
    }
    return reg_append(type->name, type, out);
}

/* ---- metadata ---- */

static bool is_strs_or_none(const lx_value *v) { return v->kind == LX_V_STRS || v->kind == LX_V_NONE; }

/* The name a metadata key is stored under: Flax renames `sharding` and `sharding_names` to
 * `out_sharding` (with a DeprecationWarning; there is no warning channel here). Set, get and del
 * all go through this, so an alias names the same entry everywhere. */
static const char *meta_canon(const char *key) {
    if (key && (strcmp(key, "sharding") == 0 || strcmp(key, "sharding_names") == 0)) return "out_sharding";
    return key;
}

lx_status lx_meta_check_(const char *who, const char *key, const lx_value *v, const char **canon) {
    if (!key || !key[0]) return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: empty metadata key", who);
    if (strcmp(key, "value") == 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: 'value' is not a metadata key (the value is passed on its own)",
                       who);
    LX_TRY(lx_check_value_(v, who));
    key = meta_canon(key);
    *canon = key;
    const char *want = NULL;
    if (strcmp(key, "out_sharding") == 0) {
        if (!is_strs_or_none(v)) want = "a tuple of str (or None)";
    } else if (strcmp(key, "mesh") == 0) {
        if (v->kind != LX_V_STR && v->kind != LX_V_NONE) want = "a mesh name (str or None)";
    } else if (strcmp(key, "sharding_rules") == 0) {
        if (!is_strs_or_none(v)) want = "a tuple of str: (logical, mesh) pairs, flattened";
        else if (v->kind == LX_V_STRS && v->u.strs.n % 2)
            return lx_fail(LX_ERR_INVALID_ARGUMENT,
                           "%s: metadata 'sharding_rules' must hold (logical, mesh) pairs, got %d strings", who,
                           v->u.strs.n);
    } else if (strcmp(key, "linen_meta_type") == 0) {
        lx_box_kind k;
        if (v->kind != LX_V_INT && v->kind != LX_V_STR) want = "a box kind (int or str)";
        else LX_TRY(lx_box_kind_from_value(v, &k));
    } else if (strcmp(key, "tag") == 0) {
        if (v->kind != LX_V_STR) want = "a stream name (str)";
    }
    if (want)
        return lx_fail(LX_ERR_TYPE, "%s: metadata '%s' must be %s, got %s", who, key, want, lx_kind_name(v->kind));
    return LX_OK;
}

/* Flax shards a Variable as soon as it is made with out_sharding (eager sharding), and JAX refuses
 * a PartitionSpec longer than the array's rank there; linnx has no mesh, so the rank is checked
 * wherever names meet a value. */
lx_status lx_sharding_rank_check_(const char *who, const char *what, const lx_value *names, int ndim,
                                  const int64_t *shape) {
    if (!names || names->kind != LX_V_STRS || names->u.strs.n <= ndim) return LX_OK;
    char nbuf[LX_MAX_DIMS * 64 + 64], sh[96];
    int n = names->u.strs.n;
    return lx_fail(LX_ERR_SHAPE, "%s: %s %s %s %d %s, more than the rank of a value of shape %s", who, what,
                   lx_value_str(names, nbuf, sizeof nbuf), strcmp(what, "names") == 0 ? "have" : "has", n,
                   n == 1 ? "entry" : "entries", lx_shape_str(ndim, shape, sh, sizeof sh));
}

/* Add one entry to a fresh map; a key given twice (directly or through an alias) is an error
 * rather than a silent pick. */
static lx_status meta_add(const char *who, lx_tree *md, const char *key, const lx_value *v) {
    const char *canon = NULL;
    LX_TRY(lx_meta_check_(who, key, v, &canon));
    if (lx_tree_get(md, canon)) {
        if (strcmp(canon, key) == 0)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: metadata '%s' given twice", who, key);
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: metadata '%s' given twice (also as its alias '%s')", who, canon,
                       key);
    }
    return lx_tree_set(md, canon, *v);
}

lx_status lx_meta_copy_(const char *who, const lx_tree *md, lx_tree **out) {
    *out = lx_tree_new();
    if (!*out) return LX_ERR_NO_MEMORY;
    for (size_t i = 0; i < lx_tree_len(md); i++) {
        lx_status st = meta_add(who, *out, lx_tree_key(md, i), lx_tree_at(md, i));
        if (st != LX_OK) {
            lx_tree_release(*out);
            *out = NULL;
            return st;
        }
    }
    return LX_OK;
}

/* ---- Variables ---- */

struct lx_variable {
    int refcount;
    const lx_vartype *type;
    lx_array *value;
    lx_tree *meta;
};

lx_variable *lx_variable_retain(lx_variable *v) {
    if (v) v->refcount++;
    return v;
}

void lx_variable_release(lx_variable *v) {
    if (!v || --v->refcount > 0) return;
    lx_release(v->value);
    lx_tree_release(v->meta);
    free(v);
}

static lx_status check_new(const lx_vartype *type, lx_array *value) {
    if (!type) return lx_fail(LX_ERR_INVALID_ARGUMENT, "Variable: type is NULL");
    lx_value av = lx_array_v(value);
    return lx_check_value_(&av, type->name);
}

/* Takes ownership of `meta`. */
static lx_status make(const lx_vartype *type, lx_array *value, lx_tree *meta, lx_variable **out) {
    lx_variable *v = malloc(sizeof *v);
    if (!v) {
        lx_tree_release(meta);
        return lx_fail(LX_ERR_NO_MEMORY, "Variable: out of memory");
    }
    *v = (lx_variable){1, type, lx_retain(value), meta};
    *out = v;
    return LX_OK;
}

lx_status lx_variable_new_kw(const lx_vartype *type, lx_array *value, int nmeta, const lx_kwarg *meta,
                             lx_variable **out) {
    if (!out) return lx_null_out("Variable");
    *out = NULL;
    LX_TRY(check_new(type, value));
    if (nmeta < 0 || (nmeta > 0 && !meta))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: bad metadata list (%d entries)", type->name, nmeta);
    lx_tree *md = lx_tree_new();
    if (!md) return LX_ERR_NO_MEMORY;
    for (int i = 0; i < nmeta; i++) {
        lx_status st = meta_add(type->name, md, meta[i].name, &meta[i].value);
        if (st != LX_OK) {
            lx_tree_release(md);
            return st;
        }
    }
    lx_status st = lx_sharding_rank_check_(type->name, "out_sharding", lx_tree_get(md, "out_sharding"), value->ndim,
                                           value->shape);
    if (st != LX_OK) {
        lx_tree_release(md);
        return st;
    }
    return make(type, value, md, out);
}

lx_status lx_variable_new(const lx_vartype *type, lx_array *value, lx_variable **out) {
    return lx_variable_new_kw(type, value, 0, NULL, out);
}

lx_status lx_variable_new_md(const lx_vartype *type, lx_array *value, const lx_tree *metadata, lx_variable **out) {
    if (!out) return lx_null_out("Variable");
    *out = NULL;
    LX_TRY(check_new(type, value));
    lx_tree *md;
    LX_TRY(lx_meta_copy_(type->name, metadata, &md));
    return make(type, value, md, out);
}

const lx_vartype *lx_variable_type(const lx_variable *v) { return v ? v->type : NULL; }

lx_array *lx_variable_get_value(const lx_variable *v) { return v ? v->value : NULL; }

lx_status lx_variable_set_value(lx_variable *v, lx_array *value, bool check_shape) {
    if (!v) return lx_null_input("variable_set_value: Variable is NULL");
    lx_value av = lx_array_v(value);
    LX_TRY(lx_check_value_(&av, v->type->name));
    if (check_shape && (value->dtype != v->value->dtype || !lx_same_shape(value, v->value))) {
        char a[160], b[160];
        return lx_fail(LX_ERR_SHAPE, "%s: cannot set a value of %s over a value of %s", v->type->name,
                       lx_array_sig(value, a, sizeof a), lx_array_sig(v->value, b, sizeof b));
    }
    lx_retain(value); /* before the release: value may be the current array */
    lx_release(v->value);
    v->value = value;
    return LX_OK;
}

const lx_tree *lx_variable_metadata(const lx_variable *v) { return v ? v->meta : NULL; }

const lx_value *lx_variable_meta_get(const lx_variable *v, const char *key) {
    return v && key ? lx_tree_get(v->meta, meta_canon(key)) : NULL;
}

lx_status lx_variable_meta_set(lx_variable *v, const char *key, lx_value value) {
    if (!v) return lx_null_input("variable_meta_set: Variable is NULL");
    const char *canon = NULL;
    LX_TRY(lx_meta_check_(v->type->name, key, &value, &canon));
    if (strcmp(canon, "out_sharding") == 0)
        LX_TRY(lx_sharding_rank_check_(v->type->name, canon, &value, v->value->ndim, v->value->shape));
    return lx_tree_set(v->meta, canon, value);
}

lx_tree *lx_variable_swap_meta_(lx_variable *v, lx_tree *meta) {
    lx_tree *old = v->meta;
    v->meta = meta;
    return old;
}

lx_status lx_variable_meta_del(lx_variable *v, const char *key) {
    if (!v) return lx_null_input("variable_meta_del: Variable is NULL");
    const char *canon = meta_canon(key);
    if (!canon || !lx_tree_get(v->meta, canon))
        return lx_fail(LX_ERR_NOT_FOUND, "%s: no metadata '%s'", v->type->name, key ? key : "(null)");
    return lx_tree_delete(v->meta, canon);
}

lx_status lx_variable_copy(const lx_variable *v, lx_variable **out) {
    if (!out) return lx_null_out("variable_copy");
    *out = NULL;
    if (!v) return lx_null_input("variable_copy: Variable is NULL");
    lx_tree *md = lx_tree_copy(v->meta);
    if (!md) return LX_ERR_NO_MEMORY;
    return make(v->type, v->value, md, out);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool is_empty_tuple(const lx_value *v) {
    return (v->kind == LX_V_INTS && v->u.ints.n == 0) || (v->kind == LX_V_STRS && v->u.strs.n == 0) ||
           (v->kind == LX_V_TREE && lx_tree_len(v->u.tree) == 0);
}

bool lx_variable_is_vanilla(const lx_variable *v) {
    if (!v) return false;
    for (size_t i = 0; i < lx_tree_len(v->meta); i++) {
        const char *k = lx_tree_key(v->meta, i);
        if (strcmp(k, "hijax") == 0 || strcmp(k, "ref") == 0 || strcmp(k, "eager_sharding") == 0) continue;
        if (ends_with(k, "_hooks") && is_empty_tuple(lx_tree_at(v->meta, i))) continue;
        return false;
    }
    return true;
}

bool lx_variable_equal(const lx_variable *a, const lx_variable *b) {
    if (a == b) return true;
    if (!a || !b || a->type != b->type) return false;
    if (a->value != b->value && !lx_array_equal(a->value, b->value)) return false;
    return lx_tree_equal(a->meta, b->meta);
}

const char *lx_variable_str(const lx_variable *v, char *buf, size_t cap) {
    if (!cap) return buf;
    if (!v) {
        snprintf(buf, cap, "<NULL Variable>");
        return buf;
    }
    size_t n = 0;
    char tmp[512];
#define PUT(...) (n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__))
    PUT("%s(%s", v->type->name, lx_array_sig(v->value, tmp, sizeof tmp));
    for (size_t i = 0; i < lx_tree_len(v->meta); i++)
        PUT(", %s=%s", lx_tree_key(v->meta, i), lx_value_str(lx_tree_at(v->meta, i), tmp, sizeof tmp));
    PUT(")");
#undef PUT
    return buf;
}
