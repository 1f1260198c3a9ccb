/* linnx example <name> [options]: the worked problems of spec/, run from the command line.
 * Each example is one row of EXAMPLES: its name, a one-line summary and a runner; the example
 * code itself lives in examples/ and is compiled in here without its main(). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define LINNX_EXAMPLE_NO_MAIN
#include "../examples/nnx_inside_linen.c"

#define CLI_MAX_X 4096

/* An integer that may arrive as a float ("3" or "3.0"), as the worked problems allow. */
static int int_or_float(const char *opt, const char *s, int64_t *out) {
    double v;
    if (cli_f64(opt, s, &v)) return CLI_EXIT_USAGE;
    if (v != floor(v) || fabs(v) > 9.007199254740992e15) return cli_error("--%s: '%s' is not a whole number", opt, s);
    *out = (int64_t)v;
    return 0;
}

/* "1,2,3.5" / "(1, 2, 3.5)" -> floats. */
static int float_list(const char *opt, const char *s, float *out, int max, int *n) {
    *n = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == '(' || *p == '[') p++;
        if (!*p || *p == ')' || *p == ']') break;
        char *end;
        double v = strtod(p, &end);
        if (end == p || isnan(v)) return cli_error("--%s: '%s' is not a list of numbers", opt, s);
        if (*n >= max) return cli_error("--%s: at most %d values", opt, max);
        out[(*n)++] = (float)v;
        p = end;
        while (*p == ' ' || *p == ')' || *p == ']') p++;
        if (*p == ',') p++;
        else if (*p) return cli_error("--%s: '%s' is not a list of numbers", opt, s);
    }
    return 0;
}

static const char NIL_USAGE[] =
    "usage: linnx example nnx-inside-linen --seed S --x X0,X1,... --features F\n"
    "An NNX Linear(len(x), F) wrapped with bridge.to_linen, init with PRNGKey(S) and x, applied\n"
    "to x (spec/nnx-inside-linen.md). Prints the output vector on one line (%.9g).\n";

static int run_nnx_inside_linen(int argc, char **argv) {
    enum { SEED, X, FEATURES, N };
    cli_opt o[N] = {CLI_OPT("seed"), CLI_OPT("x"), CLI_OPT("features")};
    const char *pos[1];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, N, pos, 0, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(NIL_USAGE, stdout);
        return 0;
    }
    for (int i = 0; i < N; i++)
        if (!o[i].seen) return cli_error("nnx-inside-linen: --%s is required", o[i].name);
    int64_t seed = 0, features = 0;
    static float x[CLI_MAX_X];
    int n;
    if (int_or_float("seed", o[SEED].value, &seed) || int_or_float("features", o[FEATURES].value, &features) ||
        float_list("x", o[X].value, x, CLI_MAX_X, &n))
        return CLI_EXIT_USAGE;
    if (n == 0) return cli_error("--x: give at least one value");
    if (features < 1) return cli_error("--features: must be at least 1, got %lld", (long long)features);
    lx_array *y = nnx_inside_linen(seed, x, n, features);
    if (!y) return cli_lib_error();
    for (int64_t i = 0; i < y->size; i++) printf("%s%.9g", i ? " " : "", lx_f32(y)[i]);
    printf("\n");
    lx_release(y);
    return 0;
}

typedef struct example {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the example's name */
} example;

static const example EXAMPLES[] = {
    {"nnx-inside-linen", "an NNX Linear inside a Linen pipeline through to_linen", run_nnx_inside_linen},
};
#define NEXAMPLES (sizeof EXAMPLES / sizeof EXAMPLES[0])

static void example_usage(FILE *f) {
    fprintf(f, "usage: linnx example <name> [options]   (linnx example <name> --help)\n\nexamples:\n");
    for (size_t i = 0; i < NEXAMPLES; i++) fprintf(f, "  %-18s %s\n", EXAMPLES[i].name, EXAMPLES[i].summary);
}

int cmd_example(int argc, char **argv) {
    if (argc < 2) {
        example_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        example_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < NEXAMPLES; i++)
        if (!strcmp(argv[1], EXAMPLES[i].name)) return EXAMPLES[i].run(argc - 1, argv + 1);
    return cli_error("unknown example '%s' (try linnx example --help)", argv[1]);
}
