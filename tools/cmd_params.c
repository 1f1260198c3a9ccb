/* `linnx params SPEC (--seed S | --key K0,K1) [--legacy] [--input-shape D0,D1,...]`: the variables
 * a module gets at init, one line per leaf: `collection/path dtype[shape]: v0 v1 ...`. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "linnx/box.h"
#include "linnx/checkpoint.h"
#include "linnx/tree.h"
#include "linnx/variable.h"
#include "params.h"

/* The spec families by prefix; nnx. and bridge. entries go here. */
static const params_family PARAMS_FAMILIES[] = {
    {"linen.", params_linen},
    {"nnx.", params_nnx},
    {"bridge.", params_bridge},
};

static const char PARAMS_USAGE[] =
    "usage: linnx params SPEC (--seed S | --key K0,K1) [--x64] [--legacy] [--input-shape D0,D1,...]\n"
    "                    [--save FILE.msgpack|FILE.safetensors]\n"
    "  SPEC: a Flax-like constructor, e.g. 'linen.Dense(8)', 'linen.Conv(16, (3, 3))',\n"
    "        'linen.Sequential(linen.Dense(8), linen.relu, linen.Dense(2))', 'nnx.Linear(4, 8)',\n"
    "        'nnx.Conv(3, 16, (3, 3))', 'nnx.BatchNorm(8)', 'nnx.Dropout(0.5)',\n"
    "        'bridge.to_linen(nnx.Linear, 4, 8)', 'bridge.ToNNX(linen.Dense(8))'\n"
    "  Prints every variable init creates: collection/path dtype[shape]: values (row-major, %.9g).\n"
    "  Linen modules need --input-shape (the shape of the example input init runs on); NNX modules\n"
    "  are built with nnx.Rngs(seed) and print their whole state: path Type dtype[shape]: values,\n"
    "  RNG state marked [rng]. bridge.to_linen(...) prints Linen variables (needs --input-shape);\n"
    "  bridge.ToNNX(linen...) prints the NNX state after lazy_init on --input-shape.\n"
    "  Either bridge can be a layer of the other style's Sequential:\n"
    "  'linen.Sequential(linen.Dense(4), linen.relu, bridge.to_linen(nnx.Linear, 4, 2))' (its\n"
    "  variables at params/layers_2/...), 'nnx.Sequential(nnx.Linear(3, 4), nnx.relu,\n"
    "  bridge.ToNNX(linen.Dense(2)))' (layers/2/..., lazy_init on --input-shape).\n"
    "  The example input is zeros of --input-shape: int32 token ids when the first layer, through\n"
    "  any nesting (Sequential, a bridge, linen.vmap/scan), is an Embed; float32 otherwise.\n"
    "  Stacked layers (docs/stacking.md), with Python dicts as in Flax:\n"
    "  \"linen.vmap(linen.Dense(4), variable_axes={'params': 0}, split_rngs={'params': True},\n"
    "  axis_size=3)\", \"linen.scan(linen.remat(linen.Dense(4)), variable_axes={'params': 1},\n"
    "  split_rngs={'params': True}, length=2, metadata_params={nn.PARTITION_NAME: 'layers'})\"\n"
    "  (the lifted module may also be bridge.to_linen(...)), \"nnx.Stack(nnx.Linear(5, 4), 3,\n"
    "  out_axes=nnx.StateAxes({nnx.Param: 0, ...: None}),\n"
    "  transform_metadata={nnx.PARTITION_NAME: 'layers'})\".\n"
    "  Initializers: linen.initializers.NAME[(numbers)], nnx.initializers.NAME, wrapped as\n"
    "  linen.with_partitioning(INIT, ('in', 'out'), mesh=None),\n"
    "  linen.with_logical_partitioning(INIT, names, mesh=None, rules=(('in', 'data'),)) or\n"
    "  nnx.with_partitioning(INIT, ('in', 'out'), mesh=None) (a mesh by name); sharded leaves end\n"
    "  with [Partitioned ('in', 'out')] (a Linen box) or [out_sharding ('in', 'out')] (NNX).\n"
    "  --save FILE: also write the variables (Variables as their values, nnx.to_pure_dict) as Flax\n"
    "  msgpack or safetensors by FILE's extension (safetensors names: paths joined with '.').\n";

/* The sharding names a leaf carries, for the line's tail: a box's kind and names
 * ("Partitioned ('in', 'out')"), or a Variable's out_sharding ("out_sharding ('in', 'out')").
 * NULL when there are none. */
const char *params_sharding_note(const lx_value *leaf, char *buf, size_t cap) {
    const lx_value *names = NULL;
    const char *what = NULL;
    if (leaf->kind == LX_V_BOX) {
        names = lx_box_names(leaf->u.box);
        what = lx_box_kind_name(lx_box_get_kind(leaf->u.box));
    } else if (leaf->kind == LX_V_VARIABLE) {
        names = lx_variable_meta_get(leaf->u.var, "out_sharding");
        what = "out_sharding";
    }
    if (!names || names->kind != LX_V_STRS) return NULL;
    char nb[512];
    snprintf(buf, cap, "%s %s", what, lx_value_str(names, nb, sizeof nb));
    return buf;
}

/* `path [Type ]dtype[shape]: values[ [rng]][ [sharding]]`: NNX leaves show their Variable type,
 * RNG state (stream keys and counts) is marked, and so are sharding names (a Linen box's, an NNX
 * Variable's out_sharding). */
void params_print_leaf(const char *path, const lx_variable *var, const lx_array *a, const char *note) {
    char sig[128];
    printf("%s ", path);
    if (var) printf("%s ", lx_variable_type(var)->name);
    printf("%s:", lx_array_sig(a, sig, sizeof sig));
    if (!lx_is_abstract(a))
        for (int64_t i = 0; i < a->size; i++) {
            double v = lx_array_get(a, i);
            if (a->dtype == LX_F32 || a->dtype == LX_BF16) printf(" %.9g", cli_num(v));
            else printf(" %lld", (long long)lx_array_get(a, i));
        }
    if (var && lx_vartype_is(lx_variable_type(var), &lx_RngState)) fputs(" [rng]", stdout);
    if (note) printf(" [%s]", note);
    putchar('\n');
}

int cmd_params(int argc, char **argv) {
    enum { P_SEED, P_KEY, P_X64, P_LEGACY, P_SHAPE, P_SAVE, P_N };
    cli_opt o[P_N] = {CLI_OPT("seed"), CLI_OPT("key"), CLI_FLAG("x64"), CLI_FLAG("legacy"), CLI_OPT("input-shape"),
                      CLI_OPT("save")};
    const char *pos[1];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, P_N, pos, 1, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(PARAMS_USAGE, stdout);
        return 0;
    }
    if (npos != 1) return cli_error("params: which module? (linnx params --help)");
    params_request req;
    memset(&req, 0, sizeof req);
    if (cli_key(&o[P_SEED], &o[P_KEY], &o[P_X64], &req.key)) return CLI_EXIT_USAGE;
    if (o[P_SHAPE].seen) {
        if (cli_shape("input-shape", o[P_SHAPE].value, req.shape, &req.ndim) ||
            cli_check_size("input-shape", req.ndim, req.shape, 4))
            return CLI_EXIT_USAGE;
        req.has_shape = true;
    }
    if (o[P_SAVE].seen && lx_ckpt_format_of(o[P_SAVE].value) == LX_CKPT_AUTO)
        return cli_error("params: --save: '%s' must end in .msgpack or .safetensors", o[P_SAVE].value);
    char save_path[4096]; /* --save, or where its symbolic links end */
    if (o[P_SAVE].seen && cli_check_output("params: --save", o[P_SAVE].value, save_path, sizeof save_path))
        return CLI_EXIT_USAGE;
    spec_node *spec = NULL;
    int prc = spec_parse_cli("params", pos[0], &spec);
    if (prc) return prc;
    const params_family *fam = NULL;
    for (size_t i = 0; i < sizeof PARAMS_FAMILIES / sizeof PARAMS_FAMILIES[0]; i++)
        if (spec_suffix(spec, PARAMS_FAMILIES[i].prefix)) fam = &PARAMS_FAMILIES[i];
    if (!fam) {
        int rc = cli_error("params: unknown module '%.80s%s' (known prefixes: linen., nnx., bridge.)", spec->s ? spec->s : pos[0],
                           strlen(spec->s ? spec->s : pos[0]) > 80 ? "..." : "");
        spec_free(spec);
        return rc;
    }
    bool was_legacy = lx_random_legacy();
    lx_random_set_legacy(o[P_LEGACY].seen);
    lx_tree *vars = NULL;
    int rc = fam->init(spec, &req, &vars);
    lx_random_set_legacy(was_legacy);
    spec_free(spec);
    if (rc) return rc;
    /* the table after the save: a failed save prints nothing on stdout (docs/hardening.md) */
    lx_flat flat = {0};
    /* the format is the typed name's: a link out.msgpack -> x.safetensors gets msgpack */
    bool flat_ok = lx_tree_flatten(vars, &flat) == LX_OK;
    if (!flat_ok || (o[P_SAVE].seen && lx_ckpt_save(save_path, vars, lx_ckpt_format_of(o[P_SAVE].value)) != LX_OK)) {
        lx_flat_free(&flat);
        lx_tree_release(vars);
        return !flat_ok ? cli_lib_error() : cli_write_error("params: --save", o[P_SAVE].value, save_path);
    }
    for (size_t i = 0; i < flat.len; i++) {
        const lx_value *v = &flat.items[i].value;
        const lx_array *a = v->kind == LX_V_ARRAY ? v->u.array
                          : v->kind == LX_V_BOX ? lx_box_unbox(v->u.box)
                          : v->kind == LX_V_VARIABLE ? lx_variable_get_value(v->u.var)
                          : NULL;
        if (a) {
            char note[600];
            params_print_leaf(flat.items[i].path, v->kind == LX_V_VARIABLE ? v->u.var : NULL, a,
                              params_sharding_note(v, note, sizeof note));
        } else {
            char buf[128];
            printf("%s %s\n", flat.items[i].path, lx_value_str(v, buf, sizeof buf));
        }
    }
    lx_flat_free(&flat);
    lx_tree_release(vars);
    return 0;
}
