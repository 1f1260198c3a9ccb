/* linnx example <name>: the bridge examples of the Flax guide, printing their output vector.
 *
 * Each example is one row of EXAMPLES (name, function, summary). They share the options
 * `--seed S --x 1,2,3,4 --features F` (seed and features may be written as integral floats, "3.0")
 * and print the output as one line of %.9g numbers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "linnx/linen_layers.h"
#include "linnx/to_nnx.h"

/* The worked problem's code lives in examples/ and is compiled in here without its main(). */
#define LINNX_EXAMPLE_NO_MAIN
#include "../examples/nnx_inside_linen.c"

/* The options every example takes. */
typedef struct example_args {
    int64_t seed;
    int64_t features;
    int n;
    float *x; /* owned */
} example_args;

static int integral(const char *opt, const char *s, int64_t *out) {
    double v;
    if (cli_f64(opt, s, &v)) return CLI_EXIT_USAGE;
    if (v != floor(v) || fabs(v) > 9007199254740992.0) return cli_error("--%s: %s is not an integer", opt, s);
    *out = (int64_t)v;
    return 0;
}

/* --x: the shared number-list form (cli_f64_list_new), as float32. */
static int float_list(const char *opt, const char *s, example_args *a) {
    double *v = NULL;
    int64_t n = 0;
    int rc = cli_f64_list_new(opt, s, &v, &n);
    if (rc) return rc;
    a->x = malloc((size_t)n * sizeof *a->x);
    if (!a->x) {
        free(v);
        return cli_oom("--x");
    }
    for (int64_t i = 0; i < n; i++) a->x[i] = (float)v[i];
    a->n = (int)n;
    free(v);
    return 0;
}

static const char EXAMPLE_OPTS[] = "--seed S --x X0,X1,... --features F";

static int parse_example_args(int argc, char **argv, const char *usage, example_args *a, bool *help) {
    enum { O_SEED, O_X, O_FEATURES, O_N };
    cli_opt o[O_N] = {CLI_OPT("seed"), CLI_OPT("x"), CLI_OPT("features")};
    const char *pos[1];
    int npos;
    memset(a, 0, sizeof *a);
    if (cli_parse(argc, argv, 1, o, O_N, pos, 0, &npos, help)) return CLI_EXIT_USAGE;
    if (*help) {
        fputs(usage, stdout);
        return 0;
    }
    for (int i = 0; i < O_N; i++)
        if (!o[i].seen) return cli_error("--%s is required (%s)", o[i].name, EXAMPLE_OPTS);
    if (integral("seed", o[O_SEED].value, &a->seed) || integral("features", o[O_FEATURES].value, &a->features))
        return CLI_EXIT_USAGE;
    if (a->features < 1 || a->features > (1 << 20))
        return cli_error("--features: %lld is outside 1..1048576", (long long)a->features);
    int rc = float_list("x", o[O_X].value, a);
    if (rc) return rc;
    /* the layer's kernel is (len(x), F): check it against the size limit before building it */
    return cli_check_size("features", 2, (int64_t[]){a->n, a->features}, 4);
}

/* ------------------------------------------------------------------ linen-inside-nnx */

static const char LINEN_INSIDE_NNX_USAGE[] =
    "usage: linnx example linen-inside-nnx --seed S --x X0,X1,... --features F\n"
    "A Linen Dense inside NNX, as Flax's bridge guide does it:\n"
    "  model = bridge.ToNNX(nn.Dense(F), rngs=nnx.Rngs(S)).lazy_init(x)\n"
    "  print(model(x))\n";

static int linen_inside_nnx(int argc, char **argv) {
    example_args a;
    bool help;
    int rc = parse_example_args(argc, argv, LINEN_INSIDE_NNX_USAGE, &a, &help);
    if (rc || help) {
        free(a.x);
        return rc;
    }
    linen_module *dense = NULL;
    nnx_rngs *rngs = NULL;
    nnx_module *model = NULL;
    lx_value y = lx_none();
    lx_array *x = lx_array_from_f32(1, (int64_t[]){a.n}, a.x);
    lx_call dc = LX_CALL_KWARGS(LX_KW_INT("features", a.features));
    lx_call xc = {1, (const lx_value[]){lx_array_v(x)}, 0, NULL};
    if (!x || linen_module_new(&linen_Dense, &dc, &dense) != LX_OK || nnx_rngs_from_seed(a.seed, &rngs) != LX_OK ||
        bridge_to_nnx_new(dense, rngs, NULL, &model) != LX_OK || bridge_lazy_init(model, NULL, &xc) != LX_OK ||
        nnx_call(model, NULL, &xc, &y) != LX_OK)
        rc = cli_lib_error();
    else if (y.kind != LX_V_ARRAY)
        rc = cli_error("the model returned %s, not an array", lx_kind_name(y.kind));
    else
        rc = cli_print_array(y.u.array);
    lx_value_free(&y);
    nnx_module_release(model);
    nnx_rngs_release(rngs);
    linen_module_release(dense);
    lx_release(x);
    free(a.x);
    return rc;
}

/* ------------------------------------------------------------------ nnx-inside-linen */

static const char NNX_INSIDE_LINEN_USAGE[] =
    "usage: linnx example nnx-inside-linen --seed S --x X0,X1,... --features F\n"
    "An NNX Linear(len(x), F) wrapped with bridge.to_linen, init with PRNGKey(S) and x, applied\n"
    "to x (spec/nnx-inside-linen.md). Prints the output vector on one line (%.9g).\n";

static int nnx_inside_linen_cmd(int argc, char **argv) {
    example_args a;
    bool help;
    int rc = parse_example_args(argc, argv, NNX_INSIDE_LINEN_USAGE, &a, &help);
    if (rc || help) {
        free(a.x);
        return rc;
    }
    lx_array *y = nnx_inside_linen(a.seed, a.x, a.n, a.features);
    rc = y ? cli_print_array(y) : cli_lib_error();
    lx_release(y);
    free(a.x);
    return rc;
}

/* ------------------------------------------------------------------ the table */

typedef struct example {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the example's name */
    const char *summary;
} example;

static const example EXAMPLES[] = {
    {"nnx-inside-linen", nnx_inside_linen_cmd, "to_linen(NNX Linear(len(x), F)).init(PRNGKey(S), x); apply"},
    {"linen-inside-nnx", linen_inside_nnx, "ToNNX(nn.Dense(F), rngs=nnx.Rngs(S)).lazy_init(x); model(x)"},
};
#define NEXAMPLES (sizeof EXAMPLES / sizeof EXAMPLES[0])

static void example_usage(FILE *f) {
    fprintf(f, "usage: linnx example <name> %s   (linnx example <name> --help)\n\nexamples:\n", EXAMPLE_OPTS);
    for (size_t i = 0; i < NEXAMPLES; i++) fprintf(f, "  %-18s %s\n", EXAMPLES[i].name, EXAMPLES[i].summary);
}

int cmd_example(int argc, char **argv) {
    if (argc < 2) return cli_error("example: which example? (linnx example --help lists them)");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        example_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < NEXAMPLES; i++)
        if (!strcmp(argv[1], EXAMPLES[i].name)) return EXAMPLES[i].run(argc - 1, argv + 1);
    return cli_error("unknown example '%s' (try linnx example --help)", argv[1]);
}
