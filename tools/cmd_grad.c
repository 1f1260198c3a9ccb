/* `linnx grad SPEC (--seed S | --key K0,K1) --x VALUES --x-shape SHAPE --y VALUES --y-shape SHAPE
 * --loss L`: jax.value_and_grad from the shell. Builds the model SPEC describes (any `linnx params`
 * spec: linen., nnx., bridge.) with its parameters for the key, applies it to x, takes the loss
 * against y averaged over every element (optax.losses.L(...).mean()), and prints
 *   loss V
 * then every gradient leaf in the `linnx params` line format: Linen `params/path dtype[shape]:
 * values` (w.r.t. the params collection), NNX `path Param dtype[shape]: values` (w.r.t. nnx.Param).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "linnx/autodiff.h"
#include "params.h"

static const char GRAD_USAGE[] =
    "usage: linnx grad SPEC (--seed S | --key K0,K1) --x X0,X1,... --x-shape D0,D1,...\n"
    "                       --y Y0,Y1,... --y-shape D0,... --loss LOSS\n"
    "  SPEC: any `linnx params` spec ('linen.Dense(2)', 'nnx.Linear(4, 2)', 'bridge.to_linen(nnx.Linear, 4, 2)',\n"
    "        'bridge.ToNNX(linen.Dense(2))', ...). x and y are row-major values of the given shapes (x is\n"
    "        int32 token ids when the model starts with an Embed).\n"
    "  LOSS (optax.losses, averaged over all elements): l2_loss, squared_error,\n"
    "        softmax_cross_entropy (y: probabilities), softmax_cross_entropy_with_integer_labels\n"
    "        (y: int labels, shape of the output without its last axis), sigmoid_binary_cross_entropy.\n"
    "  Prints `loss V`, then each gradient leaf as `linnx params` prints a parameter.\n";

/* Comma-separated numbers, as `linnx example --x` takes them ("(1, 2)" and "[1, 2]" too). */
static int number_list(const char *opt, const char *s, double **out, int64_t *n) {
    size_t len = strlen(s);
    char *buf = malloc(len + 1);
    double *v = malloc(sizeof(double) * (len / 2 + 2));
    if (!buf || !v) {
        free(buf), free(v);
        return cli_oom(opt); /* exit 1, as every out of memory (tools/cli.h) */
    }
    memcpy(buf, s, len + 1);
    int64_t k = 0;
    for (char *tok = strtok(buf, ",()[] "); tok; tok = strtok(NULL, ",()[] ")) {
        if (cli_f64(opt, tok, &v[k])) {
            free(buf), free(v);
            return CLI_EXIT_USAGE;
        }
        k++;
    }
    free(buf);
    *out = v;
    *n = k;
    return 0;
}

/* x or y from --NAME VALUES --NAME-shape SHAPE, as dtype. */
static int read_array(const cli_opt *vals, const cli_opt *shape, const char *name, lx_dtype dtype, lx_array **out) {
    *out = NULL;
    if (!vals->seen || !shape->seen) return cli_error("grad: --%s and --%s-shape are required", name, name);
    int64_t dims[LX_MAX_DIMS], n = 0, size = 1;
    int nd = 0;
    double *v = NULL;
    if (cli_shape(shape->name, shape->value, dims, &nd)) return CLI_EXIT_USAGE;
    int nrc = number_list(vals->name, vals->value, &v, &n);
    if (nrc) return nrc;
    bool over = false; /* checked-arithmetic: the dims are user input */
    for (int i = 0; i < nd; i++) over = over || __builtin_mul_overflow(size, dims[i], &size);
    if (over || size != n) {
        free(v);
        if (over) return cli_error("grad: --%s has %lld values, --%s-shape %.60s has more elements than int64 holds", name,
                                   (long long)n, name, shape->value);
        return cli_error("grad: --%s has %lld values, --%s-shape %s needs %lld", name, (long long)n, name,
                         shape->value, (long long)size);
    }
    lx_array *a = lx_array_new(dtype, nd, dims);
    if (!a) {
        free(v);
        return cli_lib_error();
    }
    for (int64_t i = 0; i < n; i++) {
        if (dtype == LX_F32) {
            lx_f32(a)[i] = (float)v[i];
        } else if (v[i] != floor(v[i]) || fabs(v[i]) > 2147483647.0) {
            double bad = v[i];
            free(v);
            lx_release(a);
            return cli_error("grad: --%s: %g is not an integer (labels and token ids are int32)", name, bad);
        } else {
            lx_i32(a)[i] = (int32_t)v[i];
        }
    }
    free(v);
    *out = lx_autorelease(a);
    return *out ? 0 : cli_lib_error(); /* the pool may fail to take it: out of memory */
}

typedef enum { L2, SQUARED, SOFTMAX_XENT, SOFTMAX_XENT_INT, SIGMOID_BCE, NLOSSES } loss_kind;
static const char *const LOSS_NAMES[NLOSSES] = {"l2_loss", "squared_error", "softmax_cross_entropy",
                                                "softmax_cross_entropy_with_integer_labels",
                                                "sigmoid_binary_cross_entropy"};

/* optax.losses.<kind>(pred, y).mean() */
static lx_array *loss_of(loss_kind kind, lx_array *pred, lx_array *y) {
    lx_array *per = NULL;
    switch (kind) {
    case L2: per = lx_mul_scalar(lx_square(lx_sub(pred, y)), 0.5f); break;
    case SQUARED: per = lx_square(lx_sub(pred, y)); break;
    case SOFTMAX_XENT: per = lx_neg(lx_sum(lx_mul(y, lx_log_softmax(pred, -1)), LX_AXES(-1), false)); break;
    case SOFTMAX_XENT_INT: per = lx_softmax_cross_entropy_int(pred, y); break;
    case SIGMOID_BCE: {
        /* log_p = log_sigmoid(x) = -softplus(-x); log_not_p = log_sigmoid(-x) = -softplus(x) */
        lx_array *log_p = lx_neg(lx_softplus(lx_neg(pred))), *log_not_p = lx_neg(lx_softplus(pred));
        per = lx_neg(lx_add(lx_mul(y, log_p), lx_mul(lx_sub(lx_scalar(1.0f), y), log_not_p)));
        break;
    }
    default: break;
    }
    return lx_mean(per, LX_ALL_AXES, false);
}

typedef struct grad_ctx {
    linen_module *linen;
    lx_tree *vars; /* Linen: every collection */
    lx_array *x, *y;
    loss_kind kind;
} grad_ctx;

static lx_status check_pred(const lx_array *pred, const grad_ctx *c) {
    char b1[64], b2[64];
    bool ok = c->kind == SOFTMAX_XENT_INT ? pred->ndim == c->y->ndim + 1 : true;
    for (int i = 0; ok && c->kind == SOFTMAX_XENT_INT && i < c->y->ndim; i++) ok = pred->shape[i] == c->y->shape[i];
    if (!ok)
        return lx_fail(LX_ERR_SHAPE, "grad: labels %s do not fit the output %s (labels have the output's shape without its last axis)",
                       lx_array_sig(c->y, b1, sizeof b1), lx_array_sig(pred, b2, sizeof b2));
    return LX_OK;
}

static lx_status linen_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)aux;
    grad_ctx *c = user;
    lx_tree *vars = lx_tree_copy(c->vars);
    if (!vars) return lx_last_status();
    lx_status st = lx_tree_set(vars, "params", lx_tree_v((lx_tree *)params));
    lx_value out = lx_none();
    if (st == LX_OK) st = linen_apply(c->linen, vars, &LX_ARGS(c->x), LINEN_NO_RNGS, NULL, &out, NULL);
    lx_tree_release(vars);
    if (st == LX_OK && out.kind != LX_V_ARRAY) st = lx_fail(LX_ERR_TYPE, "grad: the model's output is not an array");
    if (st == LX_OK) st = check_pred(out.u.array, c);
    if (st == LX_OK && !(*loss = loss_of(c->kind, out.u.array, c->y))) st = lx_last_status();
    lx_value_free(&out);
    return st;
}

static lx_status nnx_loss(nnx_module *m, void *user, lx_array **loss) {
    grad_ctx *c = user;
    lx_array *pred = nnx_call_array(m, c->x);
    if (!pred) return lx_last_status();
    LX_TRY(check_pred(pred, c));
    *loss = loss_of(c->kind, pred, c->y);
    return *loss ? LX_OK : lx_last_status();
}

/* `loss V`, then the gradient leaves; flattened first, so a failure prints nothing on stdout. */
static int print_grads(double loss, const lx_tree *grads, const char *prefix) {
    lx_flat flat = {0};
    if (lx_tree_flatten(grads, &flat) != LX_OK) return cli_lib_error();
    printf("loss %.9g\n", loss);
    for (size_t i = 0; i < flat.len; i++) {
        const lx_value *v = &flat.items[i].value;
        const lx_array *a = v->kind == LX_V_ARRAY ? v->u.array
                          : v->kind == LX_V_BOX ? lx_box_unbox(v->u.box)
                          : v->kind == LX_V_VARIABLE ? lx_variable_get_value(v->u.var)
                          : NULL;
        if (!a) continue;
        char path[1024], note[600];
        snprintf(path, sizeof path, "%s%s", prefix, flat.items[i].path);
        params_print_leaf(path, v->kind == LX_V_VARIABLE ? v->u.var : NULL, a, params_sharding_note(v, note, sizeof note));
    }
    lx_flat_free(&flat);
    return 0;
}

int cmd_grad(int argc, char **argv) {
    enum { G_SEED, G_KEY, G_X64, G_X, G_XS, G_Y, G_YS, G_LOSS, G_N };
    cli_opt o[G_N] = {CLI_OPT("seed"), CLI_OPT("key"), CLI_FLAG("x64"), CLI_OPT("x"), CLI_OPT("x-shape"),
                      CLI_OPT("y"), CLI_OPT("y-shape"), CLI_OPT("loss")};
    const char *pos[1];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, G_N, pos, 1, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(GRAD_USAGE, stdout);
        return 0;
    }
    if (npos != 1) return cli_error("grad: which module? (linnx grad --help)");
    lx_key key;
    if (cli_key(&o[G_SEED], &o[G_KEY], &o[G_X64], &key)) return CLI_EXIT_USAGE;
    if (!o[G_LOSS].seen) return cli_error("grad: --loss is required (%s, ...)", LOSS_NAMES[0]);
    grad_ctx c = {.kind = NLOSSES};
    for (int i = 0; i < NLOSSES; i++)
        if (!strcmp(o[G_LOSS].value, LOSS_NAMES[i])) c.kind = (loss_kind)i;
    if (c.kind == NLOSSES)
        return cli_error("grad: unknown loss '%s' (l2_loss, squared_error, softmax_cross_entropy, "
                         "softmax_cross_entropy_with_integer_labels, sigmoid_binary_cross_entropy)",
                         o[G_LOSS].value);
    spec_node *spec = NULL;
    int prc = spec_parse_cli("grad", pos[0], &spec);
    if (prc) return prc;
    nnx_module *nnx = NULL;
    bool ids = false;
    int rc = 0;
    if (spec_suffix(spec, "linen.")) rc = params_linen_module(spec, &c.linen, &ids);
    if (!rc) rc = read_array(&o[G_X], &o[G_XS], "x", ids ? LX_I32 : LX_F32, &c.x);
    if (!rc) rc = read_array(&o[G_Y], &o[G_YS], "y", c.kind == SOFTMAX_XENT_INT ? LX_I32 : LX_F32, &c.y);
    if (!rc && spec_suffix(spec, "nnx.")) rc = params_nnx_module(spec, key, &nnx);
    else if (!rc && spec_suffix(spec, "bridge.")) rc = params_bridge_module(spec, key, c.x, &c.linen, &nnx);
    else if (!rc && !c.linen)
        rc = cli_error("grad: unknown module '%s' (known prefixes: linen., nnx., bridge.)", spec->s ? spec->s : pos[0]);
    spec_free(spec);
    lx_array *value = NULL;
    lx_tree *grads = NULL;
    if (!rc && c.linen) {
        if (linen_init(c.linen, LINEN_KEY(key), &LX_ARGS(c.x), NULL, &c.vars) != LX_OK) rc = cli_lib_error();
        const lx_value *params = c.vars ? lx_tree_get(c.vars, "params") : NULL;
        if (!rc && (!params || params->kind != LX_V_TREE)) rc = cli_error("grad: the model has no params");
        if (!rc && linen_value_and_grad(linen_loss, &c, params->u.tree, &value, &grads, NULL) != LX_OK)
            rc = cli_lib_error();
    } else if (!rc && nnx) {
        if (nnx_value_and_grad(nnx, NULL, nnx_loss, &c, &value, &grads) != LX_OK) rc = cli_lib_error();
    }
    if (!rc) rc = print_grads((double)lx_f32(value)[0], grads, c.linen ? "params/" : "");
    lx_release(value);
    lx_tree_release(grads);
    lx_tree_release(c.vars);
    linen_module_release(c.linen);
    nnx_module_release(nnx);
    return rc;
}
