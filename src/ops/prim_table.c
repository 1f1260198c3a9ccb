/* The primitive table: one entry per lx_prim_id, in the order of LX_PRIM_LIST. */
#include <string.h>

#include "op_internal.h"

static const lx_prim_def table[LX_PRIM_COUNT] = {
#define LX_PRIM_ENTRY_(id_, name_) [LX_PRIM_##id_] = {.id = LX_PRIM_##id_, .name = name_},
    LX_PRIM_LIST(LX_PRIM_ENTRY_)
#undef LX_PRIM_ENTRY_
};

const lx_prim_def *lx_prim_get(lx_prim_id id) {
    if ((int)id < 0 || id >= LX_PRIM_COUNT) return NULL;
    return &table[id];
}

lx_status lx_prim_find(const char *name, const lx_prim_def **out) {
    *out = NULL;
    for (int i = 0; name && i < LX_PRIM_COUNT; i++)
        if (strcmp(table[i].name, name) == 0) {
            *out = &table[i];
            return LX_OK;
        }
    return lx_fail(LX_ERR_NOT_FOUND, "prim_find: no primitive named '%s'", name ? name : "(null)");
}
