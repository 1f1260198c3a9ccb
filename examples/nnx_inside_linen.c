/* An NNX layer inside a Linen pipeline (spec/nnx-inside-linen.md), the Flax bridge guide's
 * first example in C:
 *
 *   def nnx_inside_linen(seed, x, features):
 *     class MyNNX(nnx.Module):
 *       def __init__(self, rngs):
 *         self.linear = nnx.Linear(len(x), features, rngs=rngs)
 *       def __call__(self, x):
 *         return self.linear(x)
 *     model = bridge.to_linen(MyNNX)
 *     variables = model.init(jax.random.PRNGKey(seed), x)
 *     return model.apply(variables, x)
 *
 * C has no closures, so the sizes the Python class captures travel as constructor keywords
 * through to_linen (Flax's to_linen(NNXClass, **kwargs) does the same). The Linen init key
 * becomes the `params` stream; ToLinen draws one make_rng('params') at its scope and builds
 * MyNNX with Rngs(params=that key), so the kernel is lecun_normal(fold_in(K, 0)).
 *
 * Run: example_nnx_inside_linen [seed [features [x0 x1 ...]]]  or  linnx example nnx-inside-linen.
 */
#include <stdio.h>
#include <stdlib.h>

#include "linnx/linen.h"
#include "linnx/linnx.h"
#include "linnx/to_linen.h"

typedef struct {
    int64_t in_features, out_features;
} my_nnx_config;

typedef struct {
    nnx_module base;
    my_nnx_config cfg;
    nnx_linear *linear;
} my_nnx;

static lx_status my_nnx_setup(nnx_module *m, nnx_rngs *rngs) {
    my_nnx *self = (my_nnx *)m;
    return nnx_linear_new(self->cfg.in_features, self->cfg.out_features, rngs, &self->linear);
}

static lx_status my_nnx_call(nnx_module *m, const lx_call *call, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(call, 0, "x", &x));
    return linen_return_array(out, nnx_linear_forward(((my_nnx *)m)->linear, x));
}

static const lx_field MY_NNX_CONFIG[] = {
    LX_FIELD_REQUIRED_INT(my_nnx_config, in_features),
    LX_FIELD_REQUIRED_INT(my_nnx_config, out_features),
};
static const nnx_field MY_NNX_FIELDS[] = {NNX_CHILD(my_nnx, linear)};
static const nnx_method MY_NNX_METHODS[] = {NNX_METHOD("__call__", my_nnx_call)};
static const nnx_type MY_NNX = {
    .name = "MyNNX", .size = sizeof(my_nnx), .setup = my_nnx_setup,
    .fields = MY_NNX_FIELDS, .nfields = LX_COUNT(MY_NNX_FIELDS), .methods = MY_NNX_METHODS, .nmethods = LX_COUNT(MY_NNX_METHODS),
    .config = MY_NNX_CONFIG, .nconfig = LX_COUNT(MY_NNX_CONFIG), .config_offset = offsetof(my_nnx, cfg),
};

/* The worked problem: a 1-D x of n floats; returns y (features,), owned by the caller
 * (lx_release), or NULL with the message in lx_last_error(). */
lx_array *nnx_inside_linen(int64_t seed, const float *x_data, int64_t n, int64_t features) {
    lx_array *x = lx_array_from_f32(1, (int64_t[]){n}, x_data);
    linen_module *model = BRIDGE_TO_LINEN(&MY_NNX, LX_KW_INT("in_features", n), LX_KW_INT("out_features", features));
    lx_tree *variables = NULL;
    lx_value y = lx_none();
    lx_call call = LX_ARGS(x);
    if (x && model && linen_init(model, LINEN_KEY(lx_key_from_seed(seed)), &call, NULL, &variables) == LX_OK)
        linen_apply(model, variables, LINEN_NO_RNGS, &call, NULL, &y, NULL);
    lx_tree_release(variables);
    linen_module_release(model);
    lx_release(x);
    return y.kind == LX_V_ARRAY ? y.u.array : NULL; /* y's reference moves to the caller */
}

#ifndef LINNX_EXAMPLE_NO_MAIN
int main(int argc, char **argv) {
    int64_t seed = argc > 1 ? atoll(argv[1]) : 0, features = argc > 2 ? atoll(argv[2]) : 3;
    float x[64] = {1, 2, 3, 4};
    int n = 4;
    if (argc > 3) {
        n = 0;
        for (int i = 3; i < argc && n < 64; i++) x[n++] = (float)atof(argv[i]);
    }
    lx_array *y = nnx_inside_linen(seed, x, n, features);
    if (!y) {
        fprintf(stderr, "linnx: %s\n", lx_last_error());
        return 1;
    }
    for (int64_t i = 0; i < y->size; i++) printf("%s%.9g", i ? " " : "", lx_f32(y)[i]);
    printf("\n");
    lx_release(y);
    return 0;
}
#endif
