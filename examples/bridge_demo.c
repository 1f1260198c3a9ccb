/* The main job (`make demo`): one model that mixes both module styles, in both directions.
 *
 * 1. A Linen pipeline with an NNX layer inside (what `bridge.to_linen` is for):
 *
 *      class Residual(nnx.Module):                 # written in NNX style
 *        def __init__(self, features, *, rngs):
 *          self.linear = nnx.Linear(features, features, rngs=rngs)
 *        def __call__(self, x):
 *          return x + nnx.relu(self.linear(x))
 *
 *      class Classifier(nn.Module):                # the Linen pipeline that takes it
 *        @nn.compact
 *        def __call__(self, x):
 *          x = nn.relu(nn.Dense(16)(x))
 *          x = bridge.to_linen(Residual, features=16)(x)     # child ToLinen_0
 *          return nn.Dense(4)(x)
 *
 *      variables = Classifier().init(jax.random.key(0), x); y = Classifier().apply(variables, x)
 *
 * 2. An NNX model with a Linen block inside (what `bridge.ToNNX` + `lazy_init` are for):
 *
 *      class Net(nnx.Module):
 *        def __init__(self, *, rngs):
 *          self.block = bridge.ToNNX(Block(), rngs=rngs)       # Block: Dense(16), relu, Dense(16)
 *          self.head = nnx.Linear(16, 4, rngs=rngs)
 *        def __call__(self, x):
 *          return self.head(nnx.relu(self.block(x)))
 *
 *      net = Net(rngs=nnx.Rngs(0)); bridge.lazy_init(net, x); y = net(x)
 *
 * Each part prints its variable table and its output. */
#include <stdio.h>

#include "linnx/linnx.h"
#include "linnx/to_linen.h"
#include "linnx/to_nnx.h"

/* ---------------------------------------------------------------- part 1: NNX inside Linen */

typedef struct { int64_t features; } residual_config;
typedef struct {
    nnx_module base;
    residual_config cfg;
    nnx_module *linear;
} residual;

static const lx_field RESIDUAL_CONFIG[] = {LX_FIELD_REQUIRED_INT(residual_config, features)};
static const nnx_field RESIDUAL_FIELDS[] = {NNX_CHILD(residual, linear)};

static lx_status residual_setup(nnx_module *self, nnx_rngs *rngs) {
    residual *m = (residual *)self;
    lx_call args = LX_CALL_ARGS(lx_int_v(m->cfg.features), lx_int_v(m->cfg.features));
    return nnx_module_new(&nnx_Linear, &args, rngs, &m->linear);
}

static lx_status residual_call(nnx_module *self, const lx_call *call, lx_value *out) {
    lx_array *x;
    LX_TRY(lx_call_array(call, 0, "x", &x));
    lx_array *y = lx_add(x, lx_relu(nnx_call_array(((residual *)self)->linear, x)));
    if (!y) return lx_last_status();
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}

static const nnx_method RESIDUAL_METHODS[] = {NNX_METHOD("__call__", residual_call)};
static const nnx_type RESIDUAL = {
    .name = "Residual", .size = sizeof(residual),
    .fields = RESIDUAL_FIELDS, .nfields = LX_COUNT(RESIDUAL_FIELDS),
    .config = RESIDUAL_CONFIG, .nconfig = LX_COUNT(RESIDUAL_CONFIG), .config_offset = offsetof(residual, cfg),
    .methods = RESIDUAL_METHODS, .nmethods = LX_COUNT(RESIDUAL_METHODS), .setup = residual_setup,
};

static lx_array *classifier_call(linen_scope *self, lx_array *x) {
    x = lx_relu(linen_dense(self, NULL, 16, x));
    linen_module *res = BRIDGE_TO_LINEN(&RESIDUAL, LX_KW_INT("features", 16));
    x = linen_call_array(self, res, NULL, x); /* auto-named ToLinen_0 */
    linen_module_release(res);
    return linen_dense(self, NULL, 4, x);
}
static const linen_method CLASSIFIER_METHODS[] = {LINEN_ARRAY_METHOD("__call__", classifier_call)};
static const linen_type CLASSIFIER = {.name = "Classifier", .methods = CLASSIFIER_METHODS, .nmethods = LX_COUNT(CLASSIFIER_METHODS)};

/* ---------------------------------------------------------------- part 2: Linen inside NNX */

static lx_array *block_call(linen_scope *self, lx_array *x) {
    return linen_dense(self, NULL, 16, lx_relu(linen_dense(self, NULL, 16, x)));
}
static const linen_method BLOCK_METHODS[] = {LINEN_ARRAY_METHOD("__call__", block_call)};
static const linen_type BLOCK = {.name = "Block", .methods = BLOCK_METHODS, .nmethods = LX_COUNT(BLOCK_METHODS)};

typedef struct {
    nnx_module base;
    nnx_module *block, *head;
} net;
static const nnx_field NET_FIELDS[] = {NNX_CHILD(net, block), NNX_CHILD(net, head)};

static lx_status net_setup(nnx_module *self, nnx_rngs *rngs) {
    net *m = (net *)self;
    linen_module *block = NULL;
    LX_TRY(linen_module_new(&BLOCK, NULL, &block));
    lx_status s = bridge_to_nnx_new(block, rngs, NULL, &m->block);
    linen_module_release(block); /* ToNNX keeps its own reference */
    LX_TRY(s);
    lx_call args = LX_CALL_ARGS(lx_int_v(16), lx_int_v(4));
    return nnx_module_new(&nnx_Linear, &args, rngs, &m->head);
}

static lx_status net_call(nnx_module *self, const lx_call *call, lx_value *out) {
    net *m = (net *)self;
    lx_array *x;
    LX_TRY(lx_call_array(call, 0, "x", &x));
    lx_array *y = nnx_call_array(m->head, lx_relu(nnx_call_array(m->block, x)));
    if (!y) return lx_last_status();
    *out = lx_array_v(lx_retain(y));
    return LX_OK;
}
static const nnx_method NET_METHODS[] = {NNX_METHOD("__call__", net_call)};
static const nnx_type NET = {
    .name = "Net", .size = sizeof(net), .fields = NET_FIELDS, .nfields = LX_COUNT(NET_FIELDS),
    .methods = NET_METHODS, .nmethods = LX_COUNT(NET_METHODS), .setup = net_setup,
};

/* ---------------------------------------------------------------- main */

static void print_output(const char *what, const lx_array *y) {
    char sig[64];
    printf("%s %s:\n", what, lx_array_sig(y, sig, sizeof sig));
    lx_array_fprint(stdout, y);
    printf("\n");
}

static int linen_with_nnx_inside(lx_array *x) {
    printf("== A Linen pipeline with an NNX layer inside (bridge.to_linen) ==\n\n");
    linen_module *model = NULL;
    lx_tree *variables = NULL;
    lx_value y = lx_none();
    int rc = 1;
    if (linen_module_new(&CLASSIFIER, NULL, &model) == LX_OK &&
        linen_init(model, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &variables) == LX_OK &&
        linen_apply(model, variables, LINEN_NO_RNGS, &LX_ARGS(x), NULL, &y, NULL) == LX_OK) {
        printf("Classifier().init(jax.random.key(0), x):\n");
        lx_tree_fprint_table(stdout, variables);
        printf("\n");
        print_output("Classifier().apply(variables, x) ->", y.u.array);
        rc = 0;
    } else {
        fprintf(stderr, "linnx: %s\n", lx_last_error());
    }
    lx_value_free(&y);
    lx_tree_release(variables);
    linen_module_release(model);
    return rc;
}

static int nnx_with_linen_inside(lx_array *x) {
    printf("\n== An NNX model with a Linen block inside (bridge.ToNNX + lazy_init) ==\n\n");
    nnx_rngs *rngs = NULL;
    nnx_module *model = NULL;
    lx_tree *state = NULL;
    int rc = 1;
    if (nnx_rngs_from_seed(0, &rngs) == LX_OK && nnx_module_new(&NET, NULL, rngs, &model) == LX_OK &&
        bridge_lazy_init(model, NULL, &LX_ARGS(x)) == LX_OK && nnx_state(model, 1, &NNX_NOT_RNG_STATE, &state) == LX_OK) {
        lx_array *y = nnx_call_array(model, x);
        if (y) {
            printf("nnx.state(Net(rngs=nnx.Rngs(0)), nnx.Not(nnx.RngState)) after lazy_init(net, x):\n");
            lx_tree_fprint_table(stdout, state);
            printf("\n");
            print_output("net(x) ->", y);
            rc = 0;
        }
    }
    if (rc) fprintf(stderr, "linnx: %s\n", lx_last_error());
    lx_tree_release(state);
    nnx_module_release(model);
    nnx_rngs_release(rngs);
    return rc;
}

int main(void) {
    size_t pool = lx_pool_open();
    float data[2 * 8];
    for (int i = 0; i < 16; i++) data[i] = (float)(i % 8) / 8.0f - 0.5f + (float)(i / 8);
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 8}, data));
    int rc = linen_with_nnx_inside(x) || nnx_with_linen_inside(x);
    lx_pool_close(pool);
    return rc;
}
