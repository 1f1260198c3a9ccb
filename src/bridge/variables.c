/* Variable and metadata conversions between Linen leaves and NNX Variables
 * (flax/nnx/bridge/variables.py, spec/flax-bridge.md §1.2). */
#include "linnx/bridge.h"
#include "../core/status_internal.h"

#include <stdio.h>
#include <string.h>

bool bridge_is_vanilla_variable(const lx_variable *v) { return lx_variable_is_vanilla(v); }

lx_status bridge_to_linen_var(const lx_variable *v, lx_value *out) {
    if (!out) return lx_null_out("to_linen_var");
    *out = lx_none();
    if (!v) return lx_null_input("to_linen_var: Variable is NULL");
    lx_array *value = lx_variable_get_value(v);
    const lx_tree *md = lx_variable_metadata(v);
    const lx_value *meta_type = lx_variable_meta_get(v, "linen_meta_type");
    lx_box *box = NULL;
    if (meta_type) {
        lx_box_kind kind;
        LX_TRY(lx_box_kind_from_value(meta_type, &kind));
        if (kind == LX_BOX_NNX_META)
            LX_TRY(lx_box_nnx_meta(lx_variable_type(v), value, md, &box));
        else
            LX_TRY(lx_box_from_nnx_metadata(kind, value, md, &box));
    } else if (lx_variable_is_vanilla(v)) {
        *out = lx_array_v(lx_retain(value));
        return LX_OK;
    } else {
        LX_TRY(lx_box_nnx_meta(lx_variable_type(v), value, md, &box));
    }
    *out = lx_box_v(box); /* the reference made above moves to the caller */
    return LX_OK;
}

lx_status bridge_with_partitioning(int nnames, const char *const *names, const char *mesh, lx_tree **out) {
    if (!out) return lx_null_out("with_partitioning");
    *out = NULL;
    if (nnames < 0 || nnames > LX_MAX_DIMS)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "with_partitioning: %d names; an array has 0 to %d axes to name",
                       nnames, LX_MAX_DIMS);
    if (nnames > 0 && !names) return lx_fail(LX_ERR_INVALID_ARGUMENT, "with_partitioning: names is NULL");
    LX_TRY(nnx_sharding_metadata(nnames, names, mesh, out));
    lx_status s = lx_tree_set(*out, "linen_meta_type", lx_int_v(LX_BOX_PARTITIONED));
    if (s != LX_OK) {
        lx_tree_release(*out);
        *out = NULL;
    }
    return s;
}

lx_status bridge_metadata_to_linen_var(const lx_variable *v, void *user, lx_value *out) {
    (void)user;
    return bridge_to_linen_var(v, out);
}

lx_status bridge_metadata_to_logically_partitioned(const lx_variable *v, void *user, lx_value *out) {
    (void)user;
    if (!out) return lx_null_out("variable_to_logically_partitioned");
    *out = lx_none();
    if (!v) return lx_null_input("variable_to_logically_partitioned: Variable is NULL");
    lx_array *value = lx_variable_get_value(v);
    const lx_value *names = lx_variable_meta_get(v, "out_sharding");
    if (!names || names->kind != LX_V_STRS) {
        *out = lx_array_v(lx_retain(value));
        return LX_OK;
    }
    const lx_value *mesh = lx_variable_meta_get(v, "mesh");
    const lx_value *rules = lx_variable_meta_get(v, "sharding_rules");
    lx_box *box = NULL;
    LX_TRY(lx_box_logically_partitioned(
        value, names->u.strs.n, names->u.strs.v, mesh && mesh->kind == LX_V_STR ? mesh->u.s : NULL,
        rules && rules->kind == LX_V_STRS ? rules->u.strs.n : 0,
        rules && rules->kind == LX_V_STRS ? rules->u.strs.v : NULL, &box));
    *out = lx_box_v(box);
    return LX_OK;
}

lx_status bridge_to_nnx_var(const char *collection, const lx_value *leaf, lx_variable **out) {
    if (!out) return lx_null_out("to_nnx_var");
    *out = NULL;
    if (!leaf) return lx_null_input("to_nnx_var: leaf is NULL");
    const lx_vartype *vtype = NULL;
    LX_TRY(lx_variable_type_from_name(collection, NULL, true, &vtype));
    if (leaf->kind == LX_V_ARRAY) {
        if (!leaf->u.array) return lx_null_input("to_nnx_var: array is NULL");
        return lx_variable_new(vtype, leaf->u.array, out);
    }
    if (leaf->kind != LX_V_BOX || !leaf->u.box) {
        char buf[256];
        return lx_fail(LX_ERR_TYPE, "to_nnx_var: collection '%s' holds %s, expected an array or a box",
                       collection, lx_value_str(leaf, buf, sizeof buf));
    }
    const lx_box *box = leaf->u.box;
    if (lx_box_get_kind(box) == LX_BOX_NNX_META) {
        const lx_vartype *stored = lx_box_var_type(box);
        if (stored != vtype) {
            char a[128], b[128];
            return lx_fail(LX_ERR_TYPE, "Type stored in NNXMeta %s != type inferred from collection name %s",
                           lx_vartype_str(stored, a, sizeof a), lx_vartype_str(vtype, b, sizeof b));
        }
        return lx_variable_new_md(stored, lx_box_unbox(box), lx_box_metadata(box), out);
    }
    lx_tree *md = NULL;
    LX_TRY(lx_box_to_nnx_metadata(box, &md));
    lx_variable *v = NULL;
    lx_status s = lx_variable_new_md(vtype, lx_box_unbox(box), md, &v);
    lx_tree_release(md);
    if (s == LX_OK) s = lx_variable_meta_set(v, "linen_meta_type", lx_int_v(lx_box_get_kind(box)));
    if (s != LX_OK) {
        lx_variable_release(v);
        return s;
    }
    *out = v;
    return LX_OK;
}

lx_status bridge_get_col_name(const char *path, char *buf, size_t cap) {
    if (!buf) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_col_name: buf is NULL");
    if (cap) buf[0] = '\0';
    if (!path || !*path) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_col_name: empty path");
    const char *slash = strchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : strlen(path);
    if (n == 0 || n >= cap) return lx_fail(LX_ERR_INVALID_ARGUMENT, "get_col_name: bad path '%s'", path);
    memcpy(buf, path, n);
    buf[n] = '\0';
    return LX_OK;
}

/* "a/b" -> "('a', 'b')": how Flax prints a path tuple in messages. */
static const char *path_tuple(const char *path, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "(");
    int parts = 0;
    const char *p = path;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%s'%.*s'", parts ? ", " : "", (int)len, p);
        parts++;
        p += len;
        if (*p == '/') p++;
    }
    snprintf(buf + n, n < cap ? cap - n : 0, parts == 1 ? ",)" : ")");
    return buf;
}

lx_status bridge_linen_vars_to_nnx_attrs(const lx_tree *variables, lx_tree **attrs) {
    if (!attrs) return lx_null_out("linen_vars_to_nnx_attrs");
    *attrs = NULL;
    if (!variables) return lx_null_input("linen_vars_to_nnx_attrs: variables is NULL");
    lx_flat flat = {0};
    lx_status s = LX_OK;
    for (size_t c = 0; c < lx_tree_len(variables) && s == LX_OK; c++) {
        const char *col = lx_tree_key(variables, c);
        const lx_value *sub = lx_tree_at(variables, c);
        if (sub->kind != LX_V_TREE) {
            s = lx_fail(LX_ERR_TYPE, "linen_vars_to_nnx_attrs: collection '%s' is not a mapping", col);
            break;
        }
        lx_flat items = {0};
        s = lx_tree_flatten(sub->u.tree, &items);
        for (size_t i = 0; i < items.len && s == LX_OK; i++) {
            for (size_t k = 0; k < flat.len; k++) {
                if (strcmp(flat.items[k].path, items.items[i].path) != 0) continue;
                lx_variable *other = NULL;
                s = bridge_to_nnx_var(col, &items.items[i].value, &other);
                if (s != LX_OK) break;
                char pt[256], a[512], b[512];
                s = lx_fail(LX_ERR_EXISTS,
                            "Found duplicate variable path %s with variables %s and %s. This is not allowed in NNX.",
                            path_tuple(items.items[i].path, pt, sizeof pt),
                            lx_variable_str(flat.items[k].value.u.var, a, sizeof a),
                            lx_variable_str(other, b, sizeof b));
                lx_variable_release(other);
                break;
            }
            if (s != LX_OK) break;
            lx_variable *v = NULL;
            s = bridge_to_nnx_var(col, &items.items[i].value, &v);
            if (s == LX_OK) {
                s = lx_flat_append(&flat, items.items[i].path, lx_var_v(v));
                lx_variable_release(v); /* the flat list holds its own reference */
            }
        }
        lx_flat_free(&items);
    }
    if (s == LX_OK) s = lx_tree_unflatten(&flat, attrs);
    lx_flat_free(&flat);
    return s;
}

lx_status bridge_nnx_attrs_to_linen_vars(const lx_tree *attrs, lx_tree **variables) {
    if (!variables) return lx_null_out("nnx_attrs_to_linen_vars");
    *variables = NULL;
    if (!attrs) return lx_null_input("nnx_attrs_to_linen_vars: attrs is NULL");
    lx_flat flat = {0}, out = {0};
    LX_TRY(lx_tree_flatten(attrs, &flat));
    lx_status s = LX_OK;
    for (size_t i = 0; i < flat.len && s == LX_OK; i++) {
        const lx_value *leaf = &flat.items[i].value;
        if (leaf->kind != LX_V_VARIABLE || !leaf->u.var) {
            char buf[256];
            s = lx_fail(LX_ERR_TYPE, "Cannot infer collection name from value: %s",
                        lx_value_str(leaf, buf, sizeof buf));
            break;
        }
        const char *col = NULL;
        s = lx_variable_name_from_type(lx_variable_type(leaf->u.var), false, &col);
        if (s != LX_OK) break;
        lx_value linen_leaf;
        s = bridge_to_linen_var(leaf->u.var, &linen_leaf);
        if (s != LX_OK) break;
        size_t n = strlen(col) + 1 + strlen(flat.items[i].path) + 1;
        char path[1024];
        if (n > sizeof path) {
            lx_value_free(&linen_leaf);
            s = lx_fail(LX_ERR_INVALID_ARGUMENT, "nnx_attrs_to_linen_vars: path too long");
            break;
        }
        size_t nc = strlen(col), np = strlen(flat.items[i].path);
        memcpy(path, col, nc);
        path[nc] = '/';
        memcpy(path + nc + 1, flat.items[i].path, np + 1);
        s = lx_flat_append(&out, path, linen_leaf);
        lx_value_free(&linen_leaf);
    }
    if (s == LX_OK) s = lx_tree_unflatten(&out, variables);
    lx_flat_free(&flat);
    lx_flat_free(&out);
    return s;
}
