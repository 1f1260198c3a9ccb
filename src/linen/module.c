/* Linen modules as values: a type plus a bound config, refcounted and immutable once built. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/tree_internal.h"
#include "linen_internal.h"

static lx_status check_name(const char *name) {
    if (!name) return LX_OK;
    if (!*name || strchr(name, '/'))
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "module name '%s' must be non-empty and may not contain '/'", name);
    return LX_OK;
}

/* Releases what the config holds; the config's memory is part of the module's block. */
static void config_release(const linen_type *t, void *cfg) {
    if (!cfg) return;
    /* read before the hook: a type owned by its modules' config (lift.h) may go with it */
    const lx_field *fields = t->config;
    int nfields = t->nconfig;
    if (t->config_release) t->config_release(cfg);
    else if (t->config_free) t->config_free(cfg);
    lx_config_free(fields, nfields, cfg);
}

static void retain_fn(void *p) { linen_module_retain(p); }
static void release_fn(void *p) { linen_module_release(p); }

/* Module values are counted (value.h): a config VALUE field, a kept call or a tree holding a
 * module keeps it alive. Registered before the first module exists. */
static lx_status register_module_values(void) {
    static atomic_bool done;
    if (atomic_load_explicit(&done, memory_order_acquire)) return LX_OK;
    LX_TRY(lx_ptr_register("linen_module", retain_fn, release_fn));
    atomic_store_explicit(&done, true, memory_order_release);
    return LX_OK;
}

/* One block: the module, its config (zeroed), its name. Layers such as linen_dense build a
 * module on every call, so this is on the apply path. */
static lx_status module_alloc(const linen_type *type, const char *name, linen_module **out) {
    const size_t align = _Alignof(max_align_t);
    size_t cfg_off = (sizeof(linen_module) + align - 1) / align * align;
    size_t cfg_size = type->config_size ? type->config_size : 1;
    size_t name_off = cfg_off + cfg_size, nlen = name ? strlen(name) + 1 : 0;
    LX_TRY(register_module_values());
    linen_module *m = calloc(1, name_off + nlen);
    if (!m) return lx_fail(LX_ERR_NO_MEMORY, "linen: out of memory");
    m->config = (char *)m + cfg_off;
    if (name) m->name = memcpy((char *)m + name_off, name, nlen);
    m->type = type;
    m->refcount = 1;
    *out = m;
    return LX_OK;
}

/* "<Type><suffix>" into buf (the owner named in config errors), without printf: built for every
 * module a layer makes. */
static const char *owner_name(const linen_type *type, const char *suffix, char *buf, size_t cap) {
    const char *tn = type->name ? type->name : "Module";
    size_t a = strlen(tn), b = strlen(suffix);
    if (a + b >= cap) a = cap - 1 - b; /* cap is far above any suffix used here */
    memcpy(buf, tn, a);
    memcpy(buf + a, suffix, b + 1);
    return buf;
}

lx_status linen_module_new_named(const linen_type *type, const lx_call *kwargs, const char *name,
                                 linen_module **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_module_new: out is NULL");
    *out = NULL;
    if (!type) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_module_new: type is NULL");
    {
        char who[160];
        LX_TRY(lx_call_check_(owner_name(type, ".__init__()", who, sizeof who), kwargs)); /* before any read */
    }
    /* Flax's implicit `name` field may come as a keyword: pull it out of the call. */
    lx_call call = kwargs ? *kwargs : LX_NO_CALL;
    lx_kwarg *rest = NULL;
    if (call.nkwargs > 0) {
        rest = malloc(sizeof *rest * (size_t)call.nkwargs);
        if (!rest) return lx_fail(LX_ERR_NO_MEMORY, "linen: out of memory");
        int n = 0;
        for (int i = 0; i < call.nkwargs; i++) {
            if (call.kwargs[i].name && strcmp(call.kwargs[i].name, "name") == 0) {
                const lx_value *v = &call.kwargs[i].value;
                if (v->kind == LX_V_STR) {
                    if (name) {
                        free(rest);
                        return lx_fail(LX_ERR_TYPE, "%s.__init__() got multiple values for argument 'name'",
                                       type->name);
                    }
                    name = v->u.s;
                } else if (v->kind != LX_V_NONE) {
                    free(rest);
                    return lx_fail(LX_ERR_TYPE, "%s: argument 'name' must be a str, got %s", type->name,
                                   lx_kind_name(v->kind));
                }
                continue;
            }
            rest[n++] = call.kwargs[i];
        }
        call.kwargs = rest;
        call.nkwargs = n;
    }
    lx_status st = check_name(name);
    linen_module *m = NULL;
    if (st == LX_OK) st = module_alloc(type, name, &m);
    if (st == LX_OK) {
        char owner[160];
        if (type->bind) {
            st = type->bind(type, m->config, &call);
        } else {
            st = lx_config_bind(type->config, type->nconfig, &call, m->config,
                                owner_name(type, ".__init__()", owner, sizeof owner));
            if (st == LX_OK && type->config_retain) {
                st = type->config_retain(m->config);
                if (st != LX_OK) lx_config_free(type->config, type->nconfig, m->config);
            }
        }
        if (st != LX_OK) {
            free(m); /* a failed bind leaves nothing bound to release */
            m = NULL;
        }
    }
    free(rest);
    if (st == LX_OK) *out = m;
    return st;
}

lx_status linen_module_new(const linen_type *type, const lx_call *kwargs, linen_module **out) {
    return linen_module_new_named(type, kwargs, NULL, out);
}

lx_status linen_module_clone(const linen_module *m, const lx_call *overrides, linen_module **out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_module_clone: out is NULL");
    *out = NULL;
    if (!m) return lx_null_input("linen_module_clone: module is NULL");
    *out = NULL;
    const linen_type *t = m->type;
    LX_TRY(linen_clone_check_(t, overrides));
    linen_module *c = NULL;
    LX_TRY(module_alloc(t, m->name, &c));
    /* The other bytes come as they are; the table copies its fields; config_retain takes the
     * references the table does not count. */
    if (t->config_retain && t->config_size) memcpy(c->config, m->config, t->config_size);
    lx_status st = lx_config_copy(t->config, t->nconfig, c->config, m->config);
    if (st == LX_OK && t->config_retain) {
        st = t->config_retain(c->config);
        if (st != LX_OK) lx_config_free(t->config, t->nconfig, c->config);
    } else if (st == LX_OK && t->config_copy) {
        st = t->config_copy(c->config, m->config);
        if (st != LX_OK) lx_config_free(t->config, t->nconfig, c->config);
    }
    if (st == LX_OK && overrides) {
        char owner[160];
        st = lx_config_override(t->config, t->nconfig, overrides, c->config,
                                owner_name(t, ".clone()", owner, sizeof owner));
        if (st != LX_OK) config_release(t, c->config);
    }
    if (st != LX_OK) {
        free(c);
        return st;
    }
    *out = c;
    return LX_OK;
}

linen_module *linen_module_retain(linen_module *m) {
    if (m) m->refcount++;
    return m;
}

void linen_module_release(linen_module *m) {
    if (!m || --m->refcount > 0) return;
    config_release(m->type, m->config);
    free(m); /* config and name live in the same block */
}

const linen_type *linen_module_type(const linen_module *m) { return m ? m->type : NULL; }
const void *linen_module_config(const linen_module *m) { return m ? m->config : NULL; }
const char *linen_module_name(const linen_module *m) { return m ? m->name : NULL; }

lx_status linen_module_attr(const linen_module *m, const char *name, lx_value *out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_module_attr: out is NULL");
    if (!m) return lx_null_input("linen_module_attr: module is NULL");
    if (!name) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_module_attr: name is NULL");
    if (strcmp(name, "name") == 0) {
        *out = m->name ? lx_str_v(m->name) : lx_none();
        return LX_OK;
    }
    if (lx_config_find(m->type->config, m->type->nconfig, name))
        return lx_config_get(m->type->config, m->type->nconfig, m->config, name, out);
    if (m->type->getattr) {
        lx_status st = m->type->getattr(m, name, out);
        if (st != LX_ERR_NOT_FOUND) return st;
    }
    return lx_fail(LX_ERR_NOT_FOUND, "\"%s\" object has no attribute \"%s\".", m->type->name, name);
}

bool linen_mutable_allows(const linen_mutable *m, const char *collection) {
    if (!m || !collection) return false;
    switch (m->kind) {
    case LINEN_MUTABLE_NONE: return false;
    case LINEN_MUTABLE_ALL: return true;
    case LINEN_MUTABLE_LIST:
    case LINEN_MUTABLE_DENY: {
        bool listed = false;
        for (int i = 0; i < m->n; i++)
            if (m->names[i] && strcmp(m->names[i], collection) == 0) listed = true;
        return m->kind == LINEN_MUTABLE_LIST ? listed : !listed;
    }
    }
    return false;
}

lx_status linen_merge_param(const char *name, const lx_value *module_attr, const lx_value *call_arg,
                            bool *out) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "merge_param: out is NULL");
    bool has_attr = module_attr && module_attr->kind != LX_V_NONE;
    bool has_arg = call_arg && call_arg->kind != LX_V_NONE;
    if (has_attr && has_arg)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "Parameter \"%s\" was passed to the constructor and at call time. Should be "
                       "passed just once.",
                       name);
    if (!has_attr && !has_arg)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "Parameter \"%s\" must be passed to the constructor or at call time.", name);
    const lx_value *v = has_attr ? module_attr : call_arg;
    if (v->kind == LX_V_BOOL) *out = v->u.b;
    else if (v->kind == LX_V_INT) *out = v->u.i != 0;
    else return lx_fail(LX_ERR_TYPE, "parameter \"%s\" must be a bool, got %s", name, lx_kind_name(v->kind));
    return LX_OK;
}

lx_status linen_return_array(lx_value *out, lx_array *y) {
    if (!out) return lx_fail(LX_ERR_INVALID_ARGUMENT, "linen_return_array: out is NULL");
    if (!y) {
        return lx_error_pending() ? lx_last_status()
                                  : lx_fail(LX_ERR_FAILED_INPUT, "linen: a method produced no array");
    }
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}

