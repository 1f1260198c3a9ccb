/* `linnx grad SPEC --seed S (--x V --x-shape S --y V --y-shape S | --data D) --loss L`:
 * jax.value_and_grad of loss(model(x), y).mean() w.r.t. the parameters, from the shell. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train_cli.h"

static const char GRAD_USAGE[] =
    "usage: linnx grad SPEC (--seed S | --key K0,K1) [--x64] (--x V0,V1,... [--x-shape D0,D1,...]\n"
    "                  --y V0,V1,... [--y-shape D0,...] | --data DIR | --data X.npy,Y.npy |\n"
    "                  --data FILE.safetensors) --loss NAME [--reduction mean|sum|none]\n"
    "  SPEC: any `linnx params` spec: 'linen.Dense(1)', 'nnx.Linear(3, 1)',\n"
    "        'bridge.to_linen(nnx.Linear, 3, 1)', 'bridge.ToNNX(linen.Dense(1))', and the bridges\n"
    "        inside the other style's Sequential: 'linen.Sequential(linen.Dense(4), linen.relu,\n"
    "        bridge.to_linen(nnx.Linear, 4, 1))' (params/layers_2/...), 'nnx.Sequential(nnx.Linear(3, 4),\n"
    "        nnx.relu, bridge.ToNNX(linen.Dense(1)))' (layers/2/..., lazy_init on x).\n"
    "  The model is initialised as `linnx params` does (Linen: init(key, x); NNX: Rngs(key)).\n"
    "  Data: values row-major (nan, inf are values); x and y are read as shaped, 0-d included\n"
    "  (--x 1,2,3 --y 2 --y-shape '()' is one unbatched example with one label). --data DIR or\n"
    "  X.npy,Y.npy reads x.npy and y.npy (float32/float64 or int32/int64 arrays, C order); --data\n"
    "  FILE.safetensors (or .msgpack) its tensors x and y. Integer data must fit int32. A model\n"
    "  whose first layer (through any nesting) is an Embed reads x as int32 token ids.\n"
    "  --loss: l2_loss, squared_error, softmax_cross_entropy,\n"
    "          softmax_cross_entropy_with_integer_labels (y: integer labels), sigmoid_binary_cross_entropy;\n"
    "  reduced as optax's loss(...).mean() (or .sum(); none fails: the gradient needs a scalar).\n"
    "  Prints `loss float32[]: V`, then every gradient leaf in the `linnx params` line format:\n"
    "  params/Dense_0/kernel float32[3,1]: g0 g1 g2 (Linen), kernel Param float32[3,1]: ... (NNX).\n";

int cmd_grad(int argc, char **argv) {
    enum { O_SEED, O_KEY, O_X64, O_X, O_XS, O_Y, O_YS, O_DATA, O_LOSS, O_RED, O_N };
    cli_opt o[O_N] = {CLI_OPT("seed"), CLI_OPT("key"), CLI_FLAG("x64"), CLI_OPT("x"), CLI_OPT("x-shape"), CLI_OPT("y"),
                      CLI_OPT("y-shape"), CLI_OPT("data"), CLI_OPT("loss"), CLI_OPT("reduction")};
    const char *pos[1];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, O_N, pos, 1, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(GRAD_USAGE, stdout);
        return 0;
    }
    if (npos != 1) return cli_error("grad: which model? (linnx grad --help)");
    if (!o[O_LOSS].seen) return cli_error("grad: --loss is required (e.g. --loss l2_loss)");
    lx_key key;
    tc_loss loss;
    if (cli_key(&o[O_SEED], &o[O_KEY], &o[O_X64], &key)) return CLI_EXIT_USAGE;
    if (tc_loss_parse(o[O_LOSS].value, o[O_RED].value, &loss)) return CLI_EXIT_USAGE;
    tc_data d;
    int rc = tc_data_load(&o[O_X], &o[O_XS], &o[O_Y], &o[O_YS], &o[O_DATA], &loss, &d);
    if (rc) return rc;
    tc_model *m = NULL;
    rc = tc_model_new(pos[0], key, d.x, &m);
    lx_array *value = NULL;
    lx_tree *grads = NULL;
    if (!rc && tc_model_grad(m, d.x, d.y, &loss, &value, &grads) != LX_OK) rc = cli_lib_error();
    if (!rc) {
        char line[64];
        snprintf(line, sizeof line, "loss float32[]: %.9g", cli_num(lx_f32(value)[0]));
        rc = tc_print_tree(line, grads);
    }
    lx_release(value);
    lx_tree_release(grads);
    tc_model_free(m);
    tc_data_free(&d);
    return rc;
}
