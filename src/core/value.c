/* Tagged values and call records. */
#include "linnx/value.h"

#include "linnx/box.h"
#include "linnx/init.h"
#include "linnx/variable.h"
#include "status_internal.h"
#include "tree_internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

const lx_value *lx_values_of_arrays(int n, lx_array *const *arrays, lx_value *slots) {
    for (int i = 0; i < n; i++) slots[i] = lx_array_v(arrays[i]);
    return slots;
}

lx_call lx_call_arrays(int n, lx_array *const *arrays, lx_value *slots) {
    for (int i = 0; i < n; i++) slots[i] = lx_array_v(arrays[i]);
    lx_call c = {n, slots, 0, NULL};
    return c;
}

const lx_value *lx_call_kwarg(const lx_call *c, const char *name) {
    if (!c || !name) return NULL;
    for (int i = 0; i < c->nkwargs; i++)
        if (c->kwargs[i].name && strcmp(c->kwargs[i].name, name) == 0) return &c->kwargs[i].value;
    return NULL;
}

const lx_value *lx_call_get(const lx_call *c, int i, const char *name) {
    if (!c) return NULL;
    if (i >= 0 && i < c->nargs) return &c->args[i];
    return lx_call_kwarg(c, name);
}

const char *lx_value_pytype(const lx_value *v) {
    switch (v->kind) {
    case LX_V_NONE: return "<class 'NoneType'>";
    case LX_V_BOOL: return "<class 'bool'>";
    case LX_V_INT: return "<class 'int'>";
    case LX_V_FLOAT: return "<class 'float'>";
    case LX_V_STR: return "<class 'str'>";
    case LX_V_INTS:
    case LX_V_STRS: return "<class 'tuple'>";
    case LX_V_ARRAY: return "<class 'jax.Array'>";
    case LX_V_TREE: return "<class 'dict'>";
    case LX_V_VARIABLE: return "<class 'flax.nnx.Variable'>";
    case LX_V_BOX: return "<class 'flax.core.meta.AxisMetadata'>";
    case LX_V_PTR: return "<class 'object'>";
    }
    return "<class 'object'>";
}

const char *lx_kind_name(lx_kind kind) {
    static const char *names[] = {"None", "bool", "int", "float", "str", "tuple of ints",
                                  "tuple of str", "array", "tree", "Variable", "box", "object"};
    return (unsigned)kind < sizeof names / sizeof names[0] ? names[kind] : "invalid";
}

static lx_status wrong_kind(const char *name, int i, const char *want, const lx_value *v) {
    return lx_fail(LX_ERR_TYPE, "argument '%s' (position %d) must be %s, got %s",
                   name ? name : "?", i, want, lx_kind_name(v->kind));
}

lx_status lx_call_int(const lx_call *c, int i, const char *name, int64_t dflt, int64_t *out) {
    if (!out) return lx_null_out("call_int");
    const lx_value *v = lx_call_get(c, i, name);
    if (!v || v->kind == LX_V_NONE) { *out = dflt; return LX_OK; }
    if (v->kind == LX_V_INT) { *out = v->u.i; return LX_OK; }
    if (v->kind == LX_V_BOOL) { *out = v->u.b; return LX_OK; }
    if (v->kind == LX_V_FLOAT && v->u.f == floor(v->u.f) && fabs(v->u.f) < 9.2e18) {
        *out = (int64_t)v->u.f;
        return LX_OK;
    }
    return wrong_kind(name, i, "an int", v);
}

lx_status lx_call_float(const lx_call *c, int i, const char *name, double dflt, double *out) {
    if (!out) return lx_null_out("call_float");
    const lx_value *v = lx_call_get(c, i, name);
    if (!v || v->kind == LX_V_NONE) { *out = dflt; return LX_OK; }
    if (v->kind == LX_V_FLOAT) { *out = v->u.f; return LX_OK; }
    if (v->kind == LX_V_INT) { *out = (double)v->u.i; return LX_OK; }
    return wrong_kind(name, i, "a float", v);
}

lx_status lx_call_bool(const lx_call *c, int i, const char *name, bool dflt, bool *out) {
    if (!out) return lx_null_out("call_bool");
    const lx_value *v = lx_call_get(c, i, name);
    if (!v || v->kind == LX_V_NONE) { *out = dflt; return LX_OK; }
    if (v->kind == LX_V_BOOL) { *out = v->u.b; return LX_OK; }
    if (v->kind == LX_V_INT) { *out = v->u.i != 0; return LX_OK; }
    return wrong_kind(name, i, "a bool", v);
}

lx_status lx_call_str(const lx_call *c, int i, const char *name, const char *dflt, const char **out) {
    if (!out) return lx_null_out("call_str");
    const lx_value *v = lx_call_get(c, i, name);
    if (!v || v->kind == LX_V_NONE) { *out = dflt; return LX_OK; }
    if (v->kind == LX_V_STR) { *out = v->u.s; return LX_OK; }
    return wrong_kind(name, i, "a str", v);
}

lx_status lx_call_array(const lx_call *c, int i, const char *name, lx_array **out) {
    if (!out) return lx_null_out("call_array");
    const lx_value *v = lx_call_get(c, i, name);
    if (!v || v->kind == LX_V_NONE)
        return lx_fail(LX_ERR_TYPE, "missing required argument '%s' (position %d)",
                       name ? name : "?", i);
    if (v->kind != LX_V_ARRAY) return wrong_kind(name, i, "an array", v);
    if (!v->u.array) /* a failed call's result: keep its message while it is pending */
        return lx_error_pending() ? lx_last_status()
                                  : lx_fail(LX_ERR_FAILED_INPUT, "argument '%s' is NULL", name ? name : "?");
    *out = v->u.array;
    return LX_OK;
}

char *lx_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- counted pointers ----
 * A small append-only table. Readers take `ntags` with acquire and see complete entries (each is
 * written before the count that publishes it); writers serialise on a spin flag. */
typedef struct ptr_kind {
    const char *tag;
    void (*retain)(void *);
    void (*release)(void *);
} ptr_kind;
static ptr_kind ptr_kinds[LX_PTR_MAX_TAGS];
static atomic_int ptr_nkinds;
static atomic_flag ptr_lock = ATOMIC_FLAG_INIT;

static const ptr_kind *ptr_kind_of(const char *tag) {
    if (!tag) return NULL;
    int n = atomic_load_explicit(&ptr_nkinds, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (strcmp(ptr_kinds[i].tag, tag) == 0) return &ptr_kinds[i];
    return NULL;
}

lx_status lx_ptr_register(const char *tag, void (*retain)(void *), void (*release)(void *)) {
    if (!tag || !*tag || !retain || !release)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_ptr_register: a tag, retain and release are required");
    while (atomic_flag_test_and_set_explicit(&ptr_lock, memory_order_acquire)) {
    }
    lx_status s = LX_OK;
    const ptr_kind *k = ptr_kind_of(tag);
    int n = atomic_load_explicit(&ptr_nkinds, memory_order_relaxed);
    if (k) {
        if (k->retain != retain || k->release != release)
            s = lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_ptr_register: tag '%s' is already registered with other functions", tag);
    } else if (n == LX_PTR_MAX_TAGS) {
        s = lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_ptr_register: at most %d tags", LX_PTR_MAX_TAGS);
    } else {
        ptr_kinds[n] = (ptr_kind){tag, retain, release};
        atomic_store_explicit(&ptr_nkinds, n + 1, memory_order_release);
    }
    atomic_flag_clear_explicit(&ptr_lock, memory_order_release);
    return s;
}

bool lx_ptr_counted(const char *tag) { return ptr_kind_of(tag) != NULL; }

/* Plain value structs carried by pointer: a kept copy of a call must not point at the caller's
 * (often stack) struct, so lx_value_dup copies them. 0 for other tags. */
static size_t value_tag_size(const char *tag) {
    if (tag && strcmp(tag, "initializer") == 0) return sizeof(lx_initializer);
    return 0;
}

lx_status lx_value_dup(const lx_value *v, lx_value *out) {
    if (!out) return lx_null_out("value_dup");
    if (!v) {
        *out = lx_none();
        return lx_null_input("value_dup: value is NULL");
    }
    *out = *v;
    switch (v->kind) {
    case LX_V_STR:
        out->u.s = lx_strdup(v->u.s);
        if (v->u.s && !out->u.s) goto oom;
        break;
    case LX_V_INTS: {
        int64_t *p = NULL;
        if (v->u.ints.n > 0) {
            p = malloc(sizeof *p * (size_t)v->u.ints.n);
            if (!p) goto oom;
            memcpy(p, v->u.ints.v, sizeof *p * (size_t)v->u.ints.n);
        }
        out->u.ints.v = p;
        break;
    }
    case LX_V_STRS: {
        char **p = NULL;
        if (v->u.strs.n > 0) {
            p = calloc((size_t)v->u.strs.n, sizeof *p);
            if (!p) goto oom;
            for (int i = 0; i < v->u.strs.n; i++) {
                p[i] = lx_strdup(v->u.strs.v[i]);
                if (v->u.strs.v[i] && !p[i]) {
                    for (int k = 0; k < i; k++) free(p[k]);
                    free(p);
                    goto oom;
                }
            }
        }
        out->u.strs.v = (const char *const *)p;
        break;
    }
    case LX_V_ARRAY: lx_retain(v->u.array); break;
    case LX_V_TREE: lx_tree_retain(v->u.tree); break;
    case LX_V_VARIABLE: lx_variable_retain(v->u.var); break;
    case LX_V_BOX: lx_box_retain(v->u.box); break;
    case LX_V_PTR:
        if (v->u.ptr.p) {
            size_t size = value_tag_size(v->u.ptr.tag);
            if (size) {
                void *copy = malloc(size);
                if (!copy) goto oom;
                memcpy(copy, v->u.ptr.p, size);
                out->u.ptr.p = copy;
                break;
            }
            const ptr_kind *k = ptr_kind_of(v->u.ptr.tag);
            if (k) k->retain(v->u.ptr.p);
        }
        break;
    default: break;
    }
    return LX_OK;
oom:
    *out = lx_none();
    return lx_fail(LX_ERR_NO_MEMORY, "value: out of memory");
}

void lx_value_free(lx_value *v) {
    switch (v->kind) {
    case LX_V_STR: free((char *)v->u.s); break;
    case LX_V_INTS: free((int64_t *)v->u.ints.v); break;
    case LX_V_STRS:
        for (int i = 0; i < v->u.strs.n; i++) free((char *)v->u.strs.v[i]);
        free((char **)v->u.strs.v);
        break;
    case LX_V_ARRAY: lx_release(v->u.array); break;
    case LX_V_TREE: lx_tree_release(v->u.tree); break;
    case LX_V_VARIABLE: lx_variable_release(v->u.var); break;
    case LX_V_BOX: lx_box_release(v->u.box); break;
    case LX_V_PTR:
        if (v->u.ptr.p) {
            if (value_tag_size(v->u.ptr.tag)) {
                free(v->u.ptr.p);
                break;
            }
            const ptr_kind *k = ptr_kind_of(v->u.ptr.tag);
            if (k) k->release(v->u.ptr.p);
        }
        break;
    default: break;
    }
    *v = lx_none();
}

static bool str_eq(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

lx_array *lx_value_leaf_array(const lx_value *v) {
    if (!v) return NULL;
    if (v->kind == LX_V_ARRAY) return v->u.array;
    if (v->kind == LX_V_VARIABLE) return lx_variable_get_value(v->u.var);
    if (v->kind == LX_V_BOX) return lx_box_unbox(v->u.box);
    return NULL;
}

bool lx_value_equal(const lx_value *a, const lx_value *b) {
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case LX_V_NONE: return true;
    case LX_V_BOOL: return a->u.b == b->u.b;
    case LX_V_INT: return a->u.i == b->u.i;
    case LX_V_FLOAT: return a->u.f == b->u.f;
    case LX_V_STR: return str_eq(a->u.s, b->u.s);
    case LX_V_INTS:
        if (a->u.ints.n != b->u.ints.n) return false;
        for (int i = 0; i < a->u.ints.n; i++)
            if (a->u.ints.v[i] != b->u.ints.v[i]) return false;
        return true;
    case LX_V_STRS:
        if (a->u.strs.n != b->u.strs.n) return false;
        for (int i = 0; i < a->u.strs.n; i++)
            if (!str_eq(a->u.strs.v[i], b->u.strs.v[i])) return false;
        return true;
    case LX_V_ARRAY: return a->u.array == b->u.array || lx_array_equal(a->u.array, b->u.array);
    case LX_V_TREE: return lx_tree_equal(a->u.tree, b->u.tree);
    case LX_V_VARIABLE: return a->u.var == b->u.var;
    case LX_V_BOX: return lx_box_equal(a->u.box, b->u.box);
    case LX_V_PTR: return a->u.ptr.p == b->u.ptr.p;
    }
    return false;
}

const char *lx_value_str(const lx_value *v, char *buf, size_t cap) {
    size_t n = 0;
#define PUT(...) (n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__))
    switch (v->kind) {
    case LX_V_NONE: PUT("None"); break;
    case LX_V_BOOL: PUT("%s", v->u.b ? "True" : "False"); break;
    case LX_V_INT: PUT("%lld", (long long)v->u.i); break;
    case LX_V_FLOAT: PUT("%.9g", v->u.f); break;
    case LX_V_STR: PUT("'%s'", v->u.s ? v->u.s : ""); break;
    case LX_V_INTS:
        PUT("(");
        for (int i = 0; i < v->u.ints.n; i++) PUT("%s%lld", i ? ", " : "", (long long)v->u.ints.v[i]);
        PUT(v->u.ints.n == 1 ? ",)" : ")");
        break;
    case LX_V_STRS:
        PUT("(");
        for (int i = 0; i < v->u.strs.n; i++) {
            if (v->u.strs.v[i]) PUT("%s'%s'", i ? ", " : "", v->u.strs.v[i]);
            else PUT("%sNone", i ? ", " : "");
        }
        PUT(v->u.strs.n == 1 ? ",)" : ")");
        break;
    case LX_V_ARRAY:
        if (v->u.array) {
            char sig[160];
            PUT("%s", lx_array_sig(v->u.array, sig, sizeof sig));
        } else {
            PUT("<NULL array>");
        }
        break;
    case LX_V_TREE: PUT("<tree>"); break;
    case LX_V_VARIABLE:
        if (v->u.var) {
            char tmp[512];
            PUT("%s", lx_variable_str(v->u.var, tmp, sizeof tmp));
        } else {
            PUT("<NULL Variable>");
        }
        break;
    case LX_V_BOX:
        if (v->u.box) {
            char tmp[512];
            PUT("%s", lx_box_str(v->u.box, tmp, sizeof tmp));
        } else {
            PUT("<NULL box>");
        }
        break;
    case LX_V_PTR: PUT("<%s>", v->u.ptr.tag ? v->u.ptr.tag : "object"); break;
    }
#undef PUT
    if (cap) buf[n < cap ? n : cap - 1] = '\0';
    return buf;
}

/* ---- owning copies of call records ---- */

void lx_call_free(lx_call *c) {
    lx_value *args = (lx_value *)c->args;
    lx_kwarg *kw = (lx_kwarg *)c->kwargs;
    for (int i = 0; i < c->nargs; i++) lx_value_free(&args[i]);
    for (int i = 0; i < c->nkwargs; i++) {
        free((char *)kw[i].name);
        lx_value_free(&kw[i].value);
    }
    free(args);
    free(kw);
    *c = (lx_call){0, NULL, 0, NULL};
}

/* Copy `base` minus the kwargs named in skip[], then the `extra` kwargs (replacing same names). */
static lx_status call_build(const lx_call *base, int nskip, const char *const *skip, int nextra,
                            const lx_kwarg *extra, lx_call *out) {
    lx_call none = LX_NO_CALL;
    if (!out) return lx_null_out("call");
    if (!base) base = &none;
    *out = (lx_call){0, NULL, 0, NULL};
    LX_TRY(lx_call_check_("call", base));
    if (nextra < 0 || (nextra > 0 && !extra))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "call: bad list of keywords to add (%d, %s)", nextra,
                       extra ? "given" : "NULL");
    for (int k = 0; k < nextra; k++)
        if (!extra[k].name) return lx_fail(LX_ERR_INVALID_ARGUMENT, "call: keyword %d to add has no name", k);
    if (nskip < 0 || (nskip > 0 && !skip))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "call: bad list of names to drop (%d, %s)", nskip, skip ? "given" : "NULL");
    for (int k = 0; k < nskip; k++)
        if (!skip[k]) return lx_fail(LX_ERR_INVALID_ARGUMENT, "call: name %d to drop is NULL", k);
    lx_value *args = base->nargs ? calloc((size_t)base->nargs, sizeof *args) : NULL;
    int cap = base->nkwargs + nextra;
    lx_kwarg *kw = cap ? calloc((size_t)cap, sizeof *kw) : NULL;
    if ((base->nargs && !args) || (cap && !kw)) {
        free(args);
        free(kw);
        return lx_fail(LX_ERR_NO_MEMORY, "call: out of memory");
    }
    out->args = args;
    out->kwargs = kw;
    for (int i = 0; i < base->nargs; i++) {
        if (lx_value_dup(&base->args[i], &args[i]) != LX_OK) goto fail;
        out->nargs = i + 1;
    }
    for (int i = 0; i < base->nkwargs + nextra; i++) {
        const lx_kwarg *src = i < base->nkwargs ? &base->kwargs[i] : &extra[i - base->nkwargs];
        bool drop = false;
        for (int k = 0; k < nskip && !drop; k++) drop = strcmp(src->name, skip[k]) == 0;
        for (int k = 0; k < nextra && !drop && i < base->nkwargs; k++) drop = strcmp(src->name, extra[k].name) == 0;
        if (drop) continue;
        int j = out->nkwargs;
        kw[j].name = lx_strdup(src->name);
        if (!kw[j].name || lx_value_dup(&src->value, &kw[j].value) != LX_OK) {
            free((char *)kw[j].name);
            goto fail;
        }
        out->nkwargs = j + 1;
    }
    return LX_OK;
fail:
    lx_call_free(out);
    return lx_fail(LX_ERR_NO_MEMORY, "call: out of memory");
}

lx_status lx_call_dup(const lx_call *c, lx_call *out) { return call_build(c, 0, NULL, 0, NULL, out); }

lx_status lx_call_with_kwargs(const lx_call *base, int nextra, const lx_kwarg *extra, lx_call *out) {
    return call_build(base, 0, NULL, nextra, extra, out);
}

lx_status lx_call_without(const lx_call *base, int nnames, const char *const *names, lx_call *out) {
    return call_build(base, nnames, names, 0, NULL, out);
}
