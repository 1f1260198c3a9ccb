/* The NNX quick-start in C: define a model as a struct of layers, build it with Rngs, call it,
 * look at its state, split it into params and the rest, and merge it back.
 *
 *   class MLP(nnx.Module):
 *     def __init__(self, din, dmid, dout, *, rngs):
 *       self.linear1 = nnx.Linear(din, dmid, rngs=rngs)
 *       self.dropout = nnx.Dropout(0.1, rngs=rngs)
 *       self.bn = nnx.BatchNorm(dmid, rngs=rngs)
 *       self.linear2 = nnx.Linear(dmid, dout, rngs=rngs)
 *     def __call__(self, x):
 *       x = nnx.gelu(self.dropout(self.bn(self.linear1(x))))
 *       return self.linear2(x)
 */
#include <stdio.h>

#include "linnx/linnx.h"
#include "linnx/nnx.h"
#include "linnx/nnx_layers.h"

typedef struct {
    int64_t din, dmid, dout;
} mlp_config;

typedef struct {
    nnx_module base;
    mlp_config cfg;
    nnx_module *linear1, *dropout, *bn, *linear2;
} mlp;

static lx_status mlp_setup(nnx_module *m, nnx_rngs *rngs) {
    mlp *self = (mlp *)m;
    lx_call l1 = LX_CALL_ARGS(lx_int_v(self->cfg.din), lx_int_v(self->cfg.dmid));
    lx_call dr = LX_CALL_ARGS(lx_float_v(0.1));
    lx_call bn = LX_CALL_ARGS(lx_int_v(self->cfg.dmid));
    lx_call l2 = LX_CALL_ARGS(lx_int_v(self->cfg.dmid), lx_int_v(self->cfg.dout));
    LX_TRY(nnx_module_new(&nnx_Linear, &l1, rngs, &self->linear1));
    LX_TRY(nnx_module_new(&nnx_Dropout, &dr, rngs, &self->dropout));
    LX_TRY(nnx_module_new(&nnx_BatchNorm, &bn, rngs, &self->bn));
    return nnx_module_new(&nnx_Linear, &l2, rngs, &self->linear2);
}

static lx_status mlp_call(nnx_module *m, const lx_call *call, lx_value *out) {
    mlp *self = (mlp *)m;
    lx_array *x;
    LX_TRY(lx_call_array(call, 0, "x", &x));
    x = lx_gelu(nnx_call_array(self->dropout, nnx_call_array(self->bn, nnx_call_array(self->linear1, x))), true);
    x = nnx_call_array(self->linear2, x);
    if (!x) return lx_last_status();
    *out = lx_array_v(lx_retain(x));
    return LX_OK;
}

static const lx_field MLP_CONFIG[] = {
    LX_FIELD_REQUIRED_INT(mlp_config, din), LX_FIELD_REQUIRED_INT(mlp_config, dmid),
    LX_FIELD_REQUIRED_INT(mlp_config, dout)};
static const nnx_field MLP_FIELDS[] = {NNX_CHILD(mlp, linear1), NNX_CHILD(mlp, dropout), NNX_CHILD(mlp, bn),
                                       NNX_CHILD(mlp, linear2)};
static const nnx_method MLP_METHODS[] = {NNX_METHOD("__call__", mlp_call)};
static const nnx_type MLP = {
    .name = "MLP", .size = sizeof(mlp), .fields = MLP_FIELDS, .nfields = LX_COUNT(MLP_FIELDS), .config = MLP_CONFIG, .nconfig = LX_COUNT(MLP_CONFIG),
    .config_offset = offsetof(mlp, cfg), .methods = MLP_METHODS, .nmethods = LX_COUNT(MLP_METHODS), .setup = mlp_setup,
};

int main(void) {
    nnx_rngs *rngs = NULL;
    nnx_module *model = NULL, *model2 = NULL;
    nnx_graphdef *graphdef = NULL;
    lx_tree *states[3] = {NULL, NULL, NULL};
    int rc = 1;

    /* model = MLP(2, 16, 5, rngs=nnx.Rngs(0)) */
    lx_call args = LX_CALL_ARGS(lx_int_v(2), lx_int_v(16), lx_int_v(5));
    if (nnx_rngs_from_seed(0, &rngs) != LX_OK || nnx_module_new(&MLP, &args, rngs, &model) != LX_OK) goto done;

    /* y = model(x) for a batch of 3 (training mode: batch statistics, dropout on) */
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){3, 2}, (const float[]){1, 2, 3, -1, 0.5f, 0.5f}));
    lx_array *y = nnx_call_array(model, x);
    if (!y) goto done;
    printf("y = model(x):\n");
    lx_array_fprint(stdout, y);
    printf("\n\nnnx.state(model), first values of each leaf (RNG state marked):\n");
    if (nnx_module_fprint_state(stdout, model, 3) != LX_OK) goto done;

    /* graphdef, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...) */
    nnx_filter filters[] = {NNX_OF_TYPE(&lx_Param), NNX_OF_TYPE(&lx_BatchStat)};
    if (nnx_split(model, 2, filters, &graphdef, states) != LX_OK) goto done;
    printf("\nsplit: %lld parameters, %lld batch statistics, %zu other leaves (RNG state)\n",
           (long long)lx_tree_count_params(states[0]), (long long)lx_tree_count_params(states[1]),
           lx_tree_count_leaves(states[2]));

    /* model2 = nnx.merge(graphdef, params, batch_stats, rest): the same Variables, so the same
     * output in eval mode (no dropout, running statistics). */
    if (nnx_merge(graphdef, 3, states, &model2) != LX_OK) goto done;
    lx_value t = lx_bool_v(true);
    mlp *a = (mlp *)model, *b = (mlp *)model2;
    if (nnx_setattr(a->dropout, "deterministic", &t) != LX_OK || nnx_setattr(b->dropout, "deterministic", &t) != LX_OK ||
        nnx_setattr(a->bn, "use_running_average", &t) != LX_OK || nnx_setattr(b->bn, "use_running_average", &t) != LX_OK)
        goto done;
    lx_array *y1 = nnx_call_array(model, x), *y2 = nnx_call_array(model2, x);
    if (!y1 || !y2) goto done;
    printf("merge(split(model)) gives the same output in eval mode: %s\n", lx_array_equal(y1, y2) ? "yes" : "no");
    rc = 0;
done:
    if (rc) fprintf(stderr, "nnx_mlp: %s\n", lx_last_error());
    for (int i = 0; i < 3; i++) lx_tree_release(states[i]);
    nnx_graphdef_free(graphdef);
    nnx_module_release(model2);
    nnx_module_release(model);
    nnx_rngs_release(rngs);
    lx_pool_drain();
    return rc;
}
