/* A Linen loss for linen_value_and_grad, shared by the training tests: mean(loss(apply({'params':
 * params}, x), y)) with `loss` one of optax's per-element losses (losses.h). */
#ifndef LX_TEST_LINEN_LOSS_H
#define LX_TEST_LINEN_LOSS_H

#include "linnx/linnx.h"

typedef struct {
    linen_module *m;
    lx_array *x, *y;
    lx_array *(*loss)(lx_array *pred, lx_array *y); /* NULL: optax_squared_error */
} ctx;

static inline lx_status linen_mean_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)aux;
    ctx *c = user;
    lx_tree *vars = lx_tree_new();
    lx_status st = vars ? lx_tree_set(vars, "params", lx_tree_v((lx_tree *)params)) : lx_last_status();
    lx_value out = lx_none();
    if (st == LX_OK) st = linen_apply(c->m, vars, &LX_ARGS(c->x), LINEN_NO_RNGS, NULL, &out, NULL);
    lx_tree_release(vars);
    if (st == LX_OK)
        *loss = lx_mean((c->loss ? c->loss : optax_squared_error)(out.u.array, c->y), LX_ALL_AXES, false);
    if (st == LX_OK && !*loss) st = lx_last_status();
    lx_value_free(&out);
    return st;
}

#endif
