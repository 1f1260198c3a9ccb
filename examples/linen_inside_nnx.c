/* A Linen layer inside NNX, as Flax's bridge guide does it:
 *
 *   from flax import linen as nn, nnx
 *   from flax.nnx import bridge
 *
 *   x = jnp.array([1., 2., 3., 4.])
 *   model = bridge.ToNNX(nn.Dense(features=3), rngs=nnx.Rngs(0)).lazy_init(x)  # like Linen init
 *   y = model(x)                                                                # like Linen apply
 *   print(model.kernel.shape)    # (4, 3): Linen's params/kernel is the NNX attribute `kernel`
 *   print(nnx.state(model))
 *
 * The Rngs is forked into the wrapper; lazy_init draws one key per stream, renames `default` to
 * `params` and runs Linen init; each later call rebuilds the Linen variables from the module's
 * attributes (no copy) and runs Linen apply. The numbers equal Flax's for the same seed
 * (`linnx example linen-inside-nnx --seed 0 --x 1,2,3,4 --features 3` prints them too).
 */
#include <stdio.h>

#include "linnx/linnx.h"
#include "linnx/linen_layers.h"
#include "linnx/to_nnx.h"

int main(void) {
    float xs[] = {1, 2, 3, 4};
    lx_array *x = lx_array_from_f32(1, (int64_t[]){4}, xs);
    lx_call call_x = LX_ARGS(x);

    linen_module *dense = NULL;  /* nn.Dense(features=3) */
    nnx_rngs *rngs = NULL;       /* nnx.Rngs(0) */
    nnx_module *model = NULL;    /* bridge.ToNNX(dense, rngs=rngs) */
    lx_value y = lx_none(), kernel;
    lx_call features = LX_CALL_KWARGS(LX_KW_INT("features", 3));
    if (linen_module_new(&linen_Dense, &features, &dense) != LX_OK || nnx_rngs_from_seed(0, &rngs) != LX_OK ||
        bridge_to_nnx_new(dense, rngs, NULL, &model) != LX_OK ||
        bridge_lazy_init(model, NULL, &call_x) != LX_OK ||   /* .lazy_init(x) */
        nnx_call(model, NULL, &call_x, &y) != LX_OK ||       /* y = model(x) */
        nnx_getattr(model, "kernel", &kernel) != LX_OK) {    /* model.kernel */
        fprintf(stderr, "linnx: %s\n", lx_last_error());
        return 1;
    }

    lx_array *k = lx_variable_get_value(kernel.u.var);
    printf("model.kernel.shape = (%lld, %lld)\n", (long long)k->shape[0], (long long)k->shape[1]);
    printf("y =");
    for (int64_t i = 0; i < y.u.array->size; i++) printf(" %.9g", lx_f32(y.u.array)[i]);
    printf("\n\nnnx.state(model):\n");
    nnx_module_fprint_state(stdout, model, 6);

    lx_value_free(&y);
    nnx_module_release(model);
    nnx_rngs_release(rngs);
    linen_module_release(dense);
    lx_release(x);
    return 0;
}
