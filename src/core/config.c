/* Named config fields: binding call records to plain structs by name and position. */
#include "linnx/config.h"
#include "status_internal.h"

#include <stdlib.h>
#include <string.h>

#define FIELD_PTR(cfg, f) ((char *)(cfg) + (f)->offset)

static void free_field(const lx_field *f, void *cfg) {
    char *p = FIELD_PTR(cfg, f);
    switch (f->kind) {
    case LX_FIELD_STR: free(*(char **)p); *(char **)p = NULL; break;
    case LX_FIELD_STRS: {
        lx_strs *s = (lx_strs *)p;
        for (int i = 0; i < s->n; i++) free(s->v[i]);
        memset(s, 0, sizeof *s);
        break;
    }
    case LX_FIELD_VALUE: lx_value_free((lx_value *)p); break;
    default: break;
    }
}

/* Store `v` into field f of cfg. The field must hold nothing owned (freshly zeroed or freed). */
static lx_status store(const lx_field *f, void *cfg, const lx_value *v, const char *owner) {
    char *p = FIELD_PTR(cfg, f);
    const char *who = owner ? owner : "config";
    if (v->kind == LX_V_NONE && f->kind != LX_FIELD_VALUE && f->kind != LX_FIELD_STR &&
        f->kind != LX_FIELD_OBJ && f->kind != LX_FIELD_STRS && f->kind != LX_FIELD_INTS) {
        return lx_fail(LX_ERR_TYPE, "%s: argument '%s' cannot be None", who, f->name);
    }
    switch (f->kind) {
    case LX_FIELD_INT: {
        lx_call c = {1, v, 0, NULL};
        int64_t x;
        LX_TRY(lx_call_int(&c, 0, f->name, 0, &x));
        *(int64_t *)p = x;
        return LX_OK;
    }
    case LX_FIELD_FLOAT: {
        lx_call c = {1, v, 0, NULL};
        double x;
        LX_TRY(lx_call_float(&c, 0, f->name, 0, &x));
        *(double *)p = x;
        return LX_OK;
    }
    case LX_FIELD_BOOL: {
        lx_call c = {1, v, 0, NULL};
        bool x;
        LX_TRY(lx_call_bool(&c, 0, f->name, false, &x));
        *(bool *)p = x;
        return LX_OK;
    }
    case LX_FIELD_STR:
        if (v->kind == LX_V_NONE) { *(char **)p = NULL; return LX_OK; }
        if (v->kind != LX_V_STR)
            return lx_fail(LX_ERR_TYPE, "%s: argument '%s' must be a str, got %s", who, f->name,
                           lx_kind_name(v->kind));
        *(char **)p = lx_strdup(v->u.s);
        return (v->u.s && !*(char **)p) ? lx_fail(LX_ERR_NO_MEMORY, "config: out of memory") : LX_OK;
    case LX_FIELD_INTS: {
        lx_ints *t = (lx_ints *)p;
        memset(t, 0, sizeof *t);
        if (v->kind == LX_V_NONE) return LX_OK;
        if (v->kind == LX_V_INT) { t->n = 1; t->v[0] = v->u.i; return LX_OK; }
        if (v->kind != LX_V_INTS)
            return lx_fail(LX_ERR_TYPE, "%s: argument '%s' must be a tuple of ints, got %s", who,
                           f->name, lx_kind_name(v->kind));
        if (v->u.ints.n > LX_MAX_DIMS)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: argument '%s' has %d entries (at most %d)",
                           who, f->name, v->u.ints.n, LX_MAX_DIMS);
        *t = lx_ints_of(v->u.ints.n, v->u.ints.v);
        return LX_OK;
    }
    case LX_FIELD_STRS: {
        lx_strs *s = (lx_strs *)p;
        memset(s, 0, sizeof *s);
        if (v->kind == LX_V_NONE) return LX_OK;
        if (v->kind != LX_V_STRS)
            return lx_fail(LX_ERR_TYPE, "%s: argument '%s' must be a tuple of str, got %s", who,
                           f->name, lx_kind_name(v->kind));
        if (v->u.strs.n > LX_MAX_STRS)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: argument '%s' has %d entries (at most %d)",
                           who, f->name, v->u.strs.n, LX_MAX_STRS);
        for (int i = 0; i < v->u.strs.n; i++) {
            s->v[i] = lx_strdup(v->u.strs.v[i]);
            s->n = i + 1;
            if (v->u.strs.v[i] && !s->v[i]) {
                free_field(f, p - f->offset);
                return lx_fail(LX_ERR_NO_MEMORY, "config: out of memory");
            }
        }
        return LX_OK;
    }
    case LX_FIELD_DTYPE:
        if (v->kind != LX_V_STR)
            return lx_fail(LX_ERR_TYPE, "%s: argument '%s' must be a dtype name, got %s", who,
                           f->name, lx_kind_name(v->kind));
        return lx_dtype_from_name(v->u.s, (lx_dtype *)p);
    case LX_FIELD_OBJ:
        if (v->kind == LX_V_NONE || (v->kind == LX_V_PTR && !v->u.ptr.p)) {
            memset(p, 0, f->size);
            return LX_OK;
        }
        if (v->kind != LX_V_PTR || !v->u.ptr.tag || strcmp(v->u.ptr.tag, f->tag) != 0)
            return lx_fail(LX_ERR_TYPE, "%s: argument '%s' must be a %s, got %s", who, f->name,
                           f->tag, v->kind == LX_V_PTR && v->u.ptr.tag ? v->u.ptr.tag : lx_kind_name(v->kind));
        memcpy(p, v->u.ptr.p, f->size);
        return LX_OK;
    case LX_FIELD_VALUE: return lx_value_dup(v, (lx_value *)p);
    }
    return lx_fail(LX_ERR_INTERNAL, "config: unknown field kind");
}

lx_status lx_config_defaults(const lx_field *fields, int nfields, void *cfg) {
    if (!cfg) return lx_null_out("config_defaults");
    for (int i = 0; i < nfields; i++) {
        memset(FIELD_PTR(cfg, &fields[i]), 0, fields[i].size);
    }
    for (int i = 0; i < nfields; i++) {
        if (fields[i].required) continue;
        lx_status s = store(&fields[i], cfg, &fields[i].dflt, "defaults");
        if (s != LX_OK) {
            lx_config_free(fields, nfields, cfg);
            return s;
        }
    }
    return LX_OK;
}

const lx_field *lx_config_find(const lx_field *fields, int nfields, const char *name) {
    for (int i = 0; i < nfields; i++)
        if (name && strcmp(fields[i].name, name) == 0) return &fields[i];
    return NULL;
}

/* Bind onto cfg; `set` marks which fields the call gave. */
static lx_status bind(const lx_field *fields, int nfields, const lx_call *call, void *cfg,
                      const char *owner, bool *set) {
    const char *who = owner ? owner : "config";
    if (call->nargs > nfields)
        return lx_fail(LX_ERR_TYPE, "%s takes %d positional arguments but %d were given", who,
                       nfields, call->nargs);
    for (int i = 0; i < call->nargs; i++) {
        free_field(&fields[i], cfg);
        LX_TRY(store(&fields[i], cfg, &call->args[i], who));
        set[i] = true;
    }
    for (int k = 0; k < call->nkwargs; k++) {
        const lx_field *f = lx_config_find(fields, nfields, call->kwargs[k].name);
        if (!f)
            return lx_fail(LX_ERR_TYPE, "%s got an unexpected keyword argument '%s'", who,
                           call->kwargs[k].name ? call->kwargs[k].name : "(null)");
        int idx = (int)(f - fields);
        if (idx < call->nargs)
            return lx_fail(LX_ERR_TYPE, "%s got multiple values for argument '%s'", who, f->name);
        free_field(f, cfg);
        LX_TRY(store(f, cfg, &call->kwargs[k].value, who));
        set[idx] = true;
    }
    return LX_OK;
}

static lx_status check_nfields(const lx_field *fields, int nfields, const char *owner) {
    if (nfields < 0 || nfields > LX_CONFIG_MAX_FIELDS || (nfields > 0 && !fields))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "%s: a config has 0..%d fields, got %d%s", owner ? owner : "config",
                       LX_CONFIG_MAX_FIELDS, nfields, nfields > 0 && !fields ? " and no field table" : "");
    return LX_OK;
}

lx_status lx_config_bind(const lx_field *fields, int nfields, const lx_call *call, void *cfg,
                         const char *owner) {
    if (!cfg) return lx_null_out(owner ? owner : "config");
    lx_call none = LX_NO_CALL;
    if (!call) call = &none;
    /* Before the defaults are bound: a refused table must leave nothing to free (strings). */
    LX_TRY(check_nfields(fields, nfields, owner));
    LX_TRY(lx_config_defaults(fields, nfields, cfg));
    bool set[LX_CONFIG_MAX_FIELDS] = {false};
    lx_status s = bind(fields, nfields, call, cfg, owner, set);
    if (s == LX_OK) {
        int missing = 0;
        const char *first = NULL;
        for (int i = 0; i < nfields; i++)
            if (fields[i].required && !set[i]) {
                if (!first) first = fields[i].name;
                missing++;
            }
        if (missing)
            s = lx_fail(LX_ERR_TYPE, "%s missing %d required positional argument%s: '%s'",
                        owner ? owner : "config", missing, missing > 1 ? "s" : "", first);
    }
    if (s != LX_OK) lx_config_free(fields, nfields, cfg);
    return s;
}

lx_status lx_config_override(const lx_field *fields, int nfields, const lx_call *call, void *cfg,
                             const char *owner) {
    if (!cfg) return lx_null_out(owner ? owner : "config");
    bool set[LX_CONFIG_MAX_FIELDS] = {false};
    LX_TRY(check_nfields(fields, nfields, owner));
    if (!call) return LX_OK;
    /* Bind into a scratch copy so a failure leaves cfg as it was. */
    size_t size = 0;
    for (int i = 0; i < nfields; i++)
        if (fields[i].offset + fields[i].size > size) size = fields[i].offset + fields[i].size;
    void *tmp = calloc(1, size ? size : 1);
    if (!tmp) return lx_fail(LX_ERR_NO_MEMORY, "config: out of memory");
    lx_status s = lx_config_copy(fields, nfields, tmp, cfg);
    if (s == LX_OK) s = bind(fields, nfields, call, tmp, owner, set);
    if (s != LX_OK) {
        lx_config_free(fields, nfields, tmp);
        free(tmp);
        return s;
    }
    lx_config_free(fields, nfields, cfg);
    for (int i = 0; i < nfields; i++)
        memcpy(FIELD_PTR(cfg, &fields[i]), FIELD_PTR(tmp, &fields[i]), fields[i].size);
    free(tmp);
    return LX_OK;
}

lx_status lx_config_get(const lx_field *fields, int nfields, const void *cfg, const char *name,
                        lx_value *out) {
    if (!out) return lx_null_out("config_get");
    if (!cfg) return lx_fail(LX_ERR_INVALID_ARGUMENT, "config_get: config is NULL");
    const lx_field *f = lx_config_find(fields, nfields, name);
    if (!f) return lx_fail(LX_ERR_NOT_FOUND, "config has no field '%s'", name ? name : "(null)");
    const char *p = (const char *)cfg + f->offset;
    switch (f->kind) {
    case LX_FIELD_INT: *out = lx_int_v(*(const int64_t *)p); break;
    case LX_FIELD_FLOAT: *out = lx_float_v(*(const double *)p); break;
    case LX_FIELD_BOOL: *out = lx_bool_v(*(const bool *)p); break;
    case LX_FIELD_STR: *out = *(char *const *)p ? lx_str_v(*(char *const *)p) : lx_none(); break;
    case LX_FIELD_INTS: {
        const lx_ints *t = (const lx_ints *)p;
        *out = lx_ints_v(t->n, t->v);
        break;
    }
    case LX_FIELD_STRS: {
        const lx_strs *s = (const lx_strs *)p;
        *out = lx_strs_v(s->n, (const char *const *)s->v);
        break;
    }
    case LX_FIELD_DTYPE: *out = lx_str_v(lx_dtype_name(*(const lx_dtype *)p)); break;
    case LX_FIELD_OBJ: *out = lx_ptr_v(f->tag, (void *)p); break;
    case LX_FIELD_VALUE: *out = *(const lx_value *)p; break;
    }
    return LX_OK;
}

lx_status lx_config_copy(const lx_field *fields, int nfields, void *dst, const void *src) {
    if (!dst || !src) return lx_fail(LX_ERR_INVALID_ARGUMENT, "config_copy: %s is NULL", dst ? "src" : "dst");
    for (int i = 0; i < nfields; i++) memset(FIELD_PTR(dst, &fields[i]), 0, fields[i].size);
    for (int i = 0; i < nfields; i++) {
        const lx_field *f = &fields[i];
        lx_value v;
        LX_TRY(lx_config_get(fields, nfields, src, f->name, &v));
        lx_status s;
        if (f->kind == LX_FIELD_OBJ) {
            memcpy(FIELD_PTR(dst, f), (const char *)src + f->offset, f->size);
            s = LX_OK;
        } else if (f->kind == LX_FIELD_DTYPE) {
            *(lx_dtype *)FIELD_PTR(dst, f) = *(const lx_dtype *)((const char *)src + f->offset);
            s = LX_OK;
        } else {
            s = store(f, dst, &v, "copy");
        }
        if (s != LX_OK) {
            lx_config_free(fields, nfields, dst);
            return s;
        }
    }
    return LX_OK;
}

void lx_config_free(const lx_field *fields, int nfields, void *cfg) {
    for (int i = 0; i < nfields; i++) free_field(&fields[i], cfg);
}
