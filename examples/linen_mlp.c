/* The Flax quick-start MLP, in C:
 *
 *   class MLP(nn.Module):
 *     features: Sequence[int]
 *     @nn.compact
 *     def __call__(self, x):
 *       for feat in self.features[:-1]:
 *         x = nn.relu(nn.Dense(feat)(x))
 *       return nn.Dense(self.features[-1])(x)
 *
 *   model = MLP([12, 8, 4])
 *   variables = model.init(jax.random.key(0), jnp.ones((32, 10)))
 *   y = model.apply(variables, jnp.ones((32, 10)))
 *
 * Same parameter names (Dense_0, Dense_1, Dense_2), shapes and values for the seed. */
#include <stdio.h>

#include "linnx/linnx.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"

typedef struct { lx_ints features; } mlp_config;
static const lx_field MLP_FIELDS[] = {LX_FIELD_REQUIRED_INTS(mlp_config, features)};

static lx_array *mlp_call(linen_scope *self, lx_array *x) {
    const mlp_config *cfg = linen_config(self);
    int n = cfg->features.n;
    for (int i = 0; i < n - 1; i++) x = lx_relu(linen_dense(self, NULL, cfg->features.v[i], x));
    return linen_dense(self, NULL, cfg->features.v[n - 1], x); /* failures fall through as NULL */
}

static const linen_method MLP_METHODS[] = {LINEN_ARRAY_METHOD("__call__", mlp_call)};
static const linen_type MLP = {
    .name = "MLP", .config_size = sizeof(mlp_config), .config = MLP_FIELDS, .nconfig = LX_COUNT(MLP_FIELDS),
    .methods = MLP_METHODS, .nmethods = LX_COUNT(MLP_METHODS),
};

int main(void) {
    int64_t features[] = {12, 8, 4};
    lx_call kwargs = LX_CALL_ARGS(lx_ints_v(3, features));
    linen_module *model = NULL;
    lx_array *batch = lx_array_full_f32(2, (int64_t[]){32, 10}, 1.0f);
    lx_value x = lx_array_v(batch);
    lx_call call = {1, &x, 0, NULL};
    lx_tree *variables = NULL;
    lx_value y = lx_none();
    int rc = 1;
    if (linen_module_new(&MLP, &kwargs, &model) == LX_OK &&
        linen_init(model, LINEN_KEY(lx_key_from_seed(0)), &call, NULL, &variables) == LX_OK &&
        linen_apply(model, variables, LINEN_NO_RNGS, &call, NULL, &y, NULL) == LX_OK) {
        lx_tree_fprint_table(stdout, variables);
        char sig[64];
        printf("\noutput: %s, first row:", lx_array_sig(y.u.array, sig, sizeof sig));
        for (int j = 0; j < 4; j++) printf(" %.6f", lx_f32(y.u.array)[j]);
        printf("\n");
        rc = 0;
    } else {
        fprintf(stderr, "linnx: %s\n", lx_last_error());
    }
    lx_value_free(&y);
    lx_tree_release(variables);
    lx_release(batch);
    linen_module_release(model);
    lx_pool_drain();
    return rc;
}
