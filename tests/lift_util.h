/* Helpers shared by the lifted-transform tests (test_lift_linen, test_lift_remat,
 * test_lift_bridge): a module with no config, deterministic inputs, and a leaf's array whether it
 * is stored plain or boxed (Partitioned / NNXMeta). */
#ifndef LX_LIFT_UTIL_H
#define LX_LIFT_UTIL_H

#include "lx_test.h"
#include "linnx/linnx.h"

static inline linen_module *plain(const linen_type *t) {
    linen_module *m = NULL;
    linen_module_new(t, NULL, &m);
    return m;
}

/* values scale * ((i * 7) % 11 - 5): small integers times scale, none repeating nearby */
static inline lx_array *iota(int ndim, const int64_t *shape, float scale) {
    lx_array *a = lx_array_new(LX_F32, ndim, shape);
    for (int64_t i = 0; i < a->size; i++) lx_f32(a)[i] = scale * (float)((i * 7) % 11 - 5);
    return a;
}

static inline const lx_array *leaf(const lx_tree *t, const char *path) {
    const lx_value *v = lx_tree_find(t, path);
    if (!v) return NULL;
    return v->kind == LX_V_ARRAY ? v->u.array : v->kind == LX_V_BOX ? lx_box_unbox(v->u.box) : NULL;
}

#endif
