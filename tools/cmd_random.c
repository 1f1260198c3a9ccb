/* linnx key | random | init: JAX keys, samplers and Flax initializers from the command line. */
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "linnx/init.h"
#include "linnx/random.h"
#include "linnx/sampling.h"

/* Fail when an option that does not apply was given: `allowed` lists the options that do. */
static int only_options(const char *what, const cli_opt *opts, int nopts, const char *const *allowed) {
    for (int i = 0; i < nopts; i++) {
        if (!opts[i].seen) continue;
        bool ok = false;
        for (const char *const *a = allowed; *a; a++) ok |= !strcmp(*a, opts[i].name);
        if (!ok) return cli_error("option --%s does not apply to %s", opts[i].name, what);
    }
    return 0;
}

/* ------------------------------------------------------------------ key */

enum { K_SEED, K_KEY, K_X64, K_FOLD, K_SPLIT, K_LEGACY, K_PATH, K_COUNT, K_N };

static const char KEY_USAGE[] =
    "usage: linnx key (--seed S [--x64] | --key K0,K1)\n"
    "                 [--fold-in D | --split N [--legacy] | --linen-path A/B [--count C]]\n"
    "Prints `k0 k1` (one line per key for --split). --linen-path gives the key Linen's make_rng\n"
    "returns in the scope at that path on its C-th call (default 1); '' is the root scope.\n";

static void print_key(lx_key k) { printf("%u %u\n", k.k[0], k.k[1]); }

int cmd_key(int argc, char **argv) {
    cli_opt o[K_N] = {CLI_OPT("seed"), CLI_OPT("key"), CLI_FLAG("x64"), CLI_OPT("fold-in"), CLI_OPT("split"),
                      CLI_FLAG("legacy"), CLI_OPT("linen-path"), CLI_OPT("count")};
    const char *pos[1];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, K_N, pos, 0, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(KEY_USAGE, stdout);
        return 0;
    }
    lx_key key;
    if (cli_key(&o[K_SEED], &o[K_KEY], &o[K_X64], &key)) return CLI_EXIT_USAGE;
    if (o[K_FOLD].seen + o[K_SPLIT].seen + o[K_PATH].seen > 1)
        return cli_error("give at most one of --fold-in, --split, --linen-path");
    if (o[K_LEGACY].seen && !o[K_SPLIT].seen) return cli_error("--legacy applies to --split only");
    if (o[K_COUNT].seen && !o[K_PATH].seen) return cli_error("--count applies to --linen-path only");
    if (o[K_FOLD].seen) {
        uint32_t d;
        if (cli_u32("fold-in", o[K_FOLD].value, &d)) return CLI_EXIT_USAGE;
        print_key(lx_key_fold_in(key, d));
        return 0;
    }
    if (o[K_SPLIT].seen) {
        int64_t n;
        if (cli_i64("split", o[K_SPLIT].value, &n)) return CLI_EXIT_USAGE;
        if (n < 0 || n > (1 << 24)) return cli_error("--split: %lld is outside 0..16777216", (long long)n);
        lx_key *ks = malloc((size_t)(n ? n : 1) * sizeof *ks);
        if (!ks) return cli_oom("--split");
        if (lx_key_split(key, n, o[K_LEGACY].seen, ks) != LX_OK) {
            free(ks);
            return cli_lib_error();
        }
        for (int64_t i = 0; i < n; i++) print_key(ks[i]);
        free(ks);
        return 0;
    }
    if (o[K_PATH].seen) {
        uint32_t count = 1;
        if (o[K_COUNT].seen && cli_u32("count", o[K_COUNT].value, &count)) return CLI_EXIT_USAGE;
        char buf[1024];
        if (strlen(o[K_PATH].value) >= sizeof buf) return cli_error("--linen-path: too long");
        strcpy(buf, o[K_PATH].value);
        const char *names[64];
        int n = 0;
        for (char *p = buf; *p;) {
            char *slash = strchr(p, '/');
            if (slash) *slash = '\0';
            if (!*p) return cli_error("--linen-path: empty name in '%s'", o[K_PATH].value);
            if (n == 64) return cli_error("--linen-path: at most 64 names");
            names[n++] = p;
            if (!slash) break;
            p = slash + 1;
            if (!*p) return cli_error("--linen-path: empty name in '%s'", o[K_PATH].value);
        }
        print_key(lx_linen_make_rng_key(key, n, names, count));
        return 0;
    }
    print_key(key);
    return 0;
}

/* ------------------------------------------------------------------ random */

enum { R_SEED, R_KEY, R_X64, R_SHAPE, R_LEGACY, R_MIN, R_MAX, R_LOWER, R_UPPER, R_P, R_NUM, R_N };

static const char RANDOM_USAGE[] =
    "usage: linnx random bits|uniform|normal|truncated_normal|bernoulli|randint\n"
    "                    (--seed S [--x64] | --key K0,K1) --shape D0,D1,... [--legacy]\n"
    "                    [--minval A --maxval B] [--lower L --upper U] [--p P]\n"
    "       linnx random permutation (--seed S [--x64] | --key K0,K1) --n N [--legacy]\n"
    "       linnx random categorical (--seed S [--x64] | --key K0,K1) --logits L0,L1,...\n"
    "                    [--temperature T] [--top-k K]   (linnx random categorical --help)\n"
    "Row-major values, %.9g for floats, 0/1 for bernoulli; ndim >= 2 prints one line per row of\n"
    "the last axis. --shape '' is a scalar. --legacy uses the pre-JAX-0.5 bit layout.\n"
    "Defaults: --minval 0 --maxval 1, --lower -2 --upper 2, --p 0.5. randint (int32) needs\n"
    "integer --minval and --maxval (-3 or -3.0); permutation prints\n"
    "jax.random.permutation(key, N).\n";

/* randint's bounds: an integer, or a float that is one (-3.0, 5e2): JAX's randint casts a float
 * bound with astype(int), which truncates 2.5 to 2 silently; a fraction is refused here instead. */
static int opt_int32(const cli_opt *o, int64_t *out) {
    if (!o->seen) return cli_error("randint: --%s is required", o->name);
    const char *s = o->value;
    bool plain = *s != '\0';
    for (const char *c = s + (*s == '-' || *s == '+'); *c; c++) plain = plain && *c >= '0' && *c <= '9';
    if (!plain) {
        char *end;
        double v = *s && !isspace((unsigned char)*s) ? strtod(s, &end) : NAN;
        if (isnan(v) || *end) return cli_error("--%s: '%.60s' is not a number", o->name, s);
        if (v != floor(v))
            return cli_error("--%s: %.60s is not an integer (JAX's astype(int) would truncate it to %.0f: "
                             "write that)", o->name, s, trunc(v) + 0.0);
        if (v < INT32_MIN || v > INT32_MAX) return cli_error("--%s: %.60s is outside the int32 range", o->name, s);
        *out = (int64_t)v;
        return 0;
    }
    if (cli_i64(o->name, o->value, out)) return CLI_EXIT_USAGE;
    if (*out < INT32_MIN || *out > INT32_MAX)
        return cli_error("--%s: %lld is outside the int32 range", o->name, (long long)*out);
    return 0;
}

static int opt_float(const cli_opt *o, double dflt, float *out) {
    double v = dflt;
    if (o->seen && cli_f64(o->name, o->value, &v)) return CLI_EXIT_USAGE;
    *out = (float)v; /* jnp converts a Python float to float32 once */
    return 0;
}

static int cmd_random_categorical(int argc, char **argv);

int cmd_random(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "categorical")) return cmd_random_categorical(argc, argv);
    cli_opt o[R_N] = {CLI_OPT("seed"),   CLI_OPT("key"),    CLI_FLAG("x64"),  CLI_OPT("shape"),
                      CLI_FLAG("legacy"), CLI_OPT("minval"), CLI_OPT("maxval"), CLI_OPT("lower"),
                      CLI_OPT("upper"),  CLI_OPT("p"),      CLI_OPT("n")};
    const char *pos[1];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, R_N, pos, 1, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(RANDOM_USAGE, stdout);
        return 0;
    }
    if (npos != 1)
        return cli_error("random: which sampler? (bits|uniform|normal|truncated_normal|bernoulli|randint|permutation|"
                         "categorical)");
    const char *kind = pos[0];
    static const char *const common[] = {"seed", "key", "x64", "shape", "legacy", NULL};
    static const char *const with_uniform[] = {"seed", "key", "x64", "shape", "legacy", "minval", "maxval", NULL};
    static const char *const with_trunc[] = {"seed", "key", "x64", "shape", "legacy", "lower", "upper", NULL};
    static const char *const with_p[] = {"seed", "key", "x64", "shape", "legacy", "p", NULL};
    static const char *const with_n[] = {"seed", "key", "x64", "legacy", "n", NULL};
    const char *const *allowed;
    if (!strcmp(kind, "bits") || !strcmp(kind, "normal")) allowed = common;
    else if (!strcmp(kind, "uniform")) allowed = with_uniform;
    else if (!strcmp(kind, "truncated_normal")) allowed = with_trunc;
    else if (!strcmp(kind, "bernoulli")) allowed = with_p;
    else if (!strcmp(kind, "randint")) allowed = with_uniform;
    else if (!strcmp(kind, "permutation")) allowed = with_n;
    else if (!strcmp(kind, "categorical"))
        return cli_error("random categorical: name the sampler first: linnx random categorical --seed S --logits ...");
    else
        return cli_error("random: unknown sampler '%s' (bits|uniform|normal|truncated_normal|bernoulli|randint|"
                         "permutation|categorical)", kind);
    if (only_options(kind, o, R_N, allowed)) return CLI_EXIT_USAGE;
    lx_key key;
    if (cli_key(&o[R_SEED], &o[R_KEY], &o[R_X64], &key)) return CLI_EXIT_USAGE;
    if (!strcmp(kind, "permutation")) {
        int64_t n;
        if (!o[R_NUM].seen) return cli_error("random permutation: --n is required");
        if (cli_i64("n", o[R_NUM].value, &n)) return CLI_EXIT_USAGE;
        if (n < 0 || n > (1 << 26)) return cli_error("--n: %lld is outside 0..67108864", (long long)n);
        lx_random_set_legacy(o[R_LEGACY].seen);
        lx_array *pa = lx_random_permutation(key, n);
        if (!pa) return cli_lib_error();
        return cli_print_array(pa);
    }
    if (!o[R_SHAPE].seen) return cli_error("random: --shape is required ('' for a scalar)");
    int64_t shape[LX_MAX_DIMS];
    int ndim;
    if (cli_shape("shape", o[R_SHAPE].value, shape, &ndim) || cli_check_size("shape", ndim, shape, 4)) return CLI_EXIT_USAGE;
    lx_random_set_legacy(o[R_LEGACY].seen);
    lx_array *a = NULL;
    float x, y;
    if (!strcmp(kind, "bits")) {
        a = lx_random_bits(key, ndim, shape);
    } else if (!strcmp(kind, "uniform")) {
        if (opt_float(&o[R_MIN], 0.0, &x) || opt_float(&o[R_MAX], 1.0, &y)) return CLI_EXIT_USAGE;
        a = lx_random_uniform(key, ndim, shape, x, y);
    } else if (!strcmp(kind, "randint")) {
        int64_t lo, hi;
        if (opt_int32(&o[R_MIN], &lo) || opt_int32(&o[R_MAX], &hi)) return CLI_EXIT_USAGE;
        a = lx_random_randint(key, ndim, shape, lo, hi);
    } else if (!strcmp(kind, "normal")) {
        a = lx_random_normal(key, ndim, shape);
    } else if (!strcmp(kind, "truncated_normal")) {
        if (opt_float(&o[R_LOWER], -2.0, &x) || opt_float(&o[R_UPPER], 2.0, &y)) return CLI_EXIT_USAGE;
        a = lx_random_truncated_normal(key, x, y, ndim, shape);
    } else {
        if (opt_float(&o[R_P], 0.5, &x)) return CLI_EXIT_USAGE;
        a = lx_random_bernoulli(key, x, ndim, shape);
    }
    if (!a) return cli_lib_error();
    return cli_print_array(a);
}

/* ------------------------------------------------------------------ init */

enum { I_SEED, I_KEY, I_X64, I_SHAPE, I_LEGACY, I_SCALE, I_MODE, I_DIST, I_IN, I_OUT, I_BATCH, I_STDDEV,
       I_VALUE, I_LOWER, I_UPPER, I_DTYPE, I_N };

static const char INIT_USAGE[] =
    "usage: linnx init NAME (--seed S [--x64] | --key K0,K1) --shape D0,D1,... [--legacy]\n"
    "       [--dtype float32|int32|uint32|bool|bfloat16|int8] (zeros, ones, constant)\n"
    "NAME and its options:\n"
    "  zeros ones zeros_init ones_init\n"
    "  constant --value V\n"
    "  normal [--stddev 0.01]   uniform [--scale 0.01]\n"
    "  truncated_normal [--stddev 0.01 --lower -2 --upper 2]\n"
    "  variance_scaling --scale S --mode fan_in|fan_out|fan_avg|fan_geo_avg\n"
    "                   --distribution truncated_normal|normal|uniform [axes]\n"
    "  lecun_normal lecun_uniform glorot_normal glorot_uniform xavier_normal xavier_uniform\n"
    "  he_normal he_uniform kaiming_normal kaiming_uniform [axes]\n"
    "axes: --in-axis A (default -2) --out-axis A (default -1) --batch-axis A (default ''), where A\n"
    "is an axis or a tuple like 0,1. Output as for `linnx random`.\n";

static int parse_axes(const cli_opt *o, lx_axes *out) {
    int64_t v[LX_MAX_DIMS];
    int n;
    if (cli_i64_list(o->name, o->value, v, LX_MAX_DIMS, &n)) return CLI_EXIT_USAGE;
    out->n = n;
    for (int i = 0; i < n; i++) {
        if (v[i] < -LX_MAX_DIMS || v[i] >= LX_MAX_DIMS) return cli_error("--%s: axis %lld is out of range", o->name, (long long)v[i]);
        out->axis[i] = (int)v[i];
    }
    return 0;
}

static int opt_double(const cli_opt *o, double *v) { return o->seen ? cli_f64(o->name, o->value, v) : 0; }

int cmd_init(int argc, char **argv) {
    cli_opt o[I_N] = {CLI_OPT("seed"),  CLI_OPT("key"),          CLI_FLAG("x64"),     CLI_OPT("shape"),
                      CLI_FLAG("legacy"), CLI_OPT("scale"),      CLI_OPT("mode"),     CLI_OPT("distribution"),
                      CLI_OPT("in-axis"), CLI_OPT("out-axis"),   CLI_OPT("batch-axis"), CLI_OPT("stddev"),
                      CLI_OPT("value"),  CLI_OPT("lower"),       CLI_OPT("upper"),    CLI_OPT("dtype")};
    const char *pos[1];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, I_N, pos, 1, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(INIT_USAGE, stdout);
        return 0;
    }
    if (npos != 1) return cli_error("init: which initializer? (linnx init --help)");
    const char *name = pos[0];
    lx_initializer it;
    static const char *const k_plain[] = {"seed", "key", "x64", "shape", "legacy", "dtype", NULL};
    static const char *const k_const[] = {"seed", "key", "x64", "shape", "legacy", "dtype", "value", NULL};
    static const char *const k_normal[] = {"seed", "key", "x64", "shape", "legacy", "dtype", "stddev", NULL};
    static const char *const k_uniform[] = {"seed", "key", "x64", "shape", "legacy", "dtype", "scale", NULL};
    static const char *const k_trunc[] = {"seed", "key", "x64", "shape", "legacy", "dtype", "stddev", "lower", "upper", NULL};
    static const char *const k_named[] = {"seed", "key", "x64", "shape", "legacy", "dtype", "in-axis", "out-axis",
                                          "batch-axis", NULL};
    static const char *const k_vs[] = {"seed", "key", "x64", "shape", "legacy", "dtype", "in-axis", "out-axis",
                                       "batch-axis", "scale", "mode", "distribution", NULL};
    const char *const *allowed;
    if (!strcmp(name, "constant")) {
        double v = 0;
        if (!o[I_VALUE].seen) return cli_error("init constant: --value is required");
        if (opt_double(&o[I_VALUE], &v)) return CLI_EXIT_USAGE;
        it = lx_init_constant(v);
        allowed = k_const;
    } else if (!strcmp(name, "variance_scaling")) {
        double s = 0;
        if (!o[I_SCALE].seen || !o[I_MODE].seen || !o[I_DIST].seen)
            return cli_error("init variance_scaling: --scale, --mode and --distribution are required");
        if (opt_double(&o[I_SCALE], &s)) return CLI_EXIT_USAGE;
        if (lx_init_variance_scaling(s, o[I_MODE].value, o[I_DIST].value, lx_axis(-2), lx_axis(-1), lx_no_axes(),
                                     &it) != LX_OK)
            return cli_lib_error();
        allowed = k_vs;
    } else {
        if (lx_initializer_from_name(name, &it) != LX_OK) return cli_lib_error();
        switch (it.kind) {
        case LX_INIT_NORMAL: allowed = k_normal; break;
        case LX_INIT_UNIFORM: allowed = k_uniform; break;
        case LX_INIT_TRUNCATED_NORMAL: allowed = k_trunc; break;
        case LX_INIT_VARIANCE_SCALING: allowed = k_named; break;
        default: allowed = k_plain; break;
        }
        if (opt_double(&o[I_STDDEV], &it.stddev) || opt_double(&o[I_SCALE], &it.scale) ||
            opt_double(&o[I_LOWER], &it.lower) || opt_double(&o[I_UPPER], &it.upper))
            return CLI_EXIT_USAGE;
    }
    if (only_options(name, o, I_N, allowed)) return CLI_EXIT_USAGE;
    if ((o[I_IN].seen && parse_axes(&o[I_IN], &it.in_axis)) || (o[I_OUT].seen && parse_axes(&o[I_OUT], &it.out_axis)) ||
        (o[I_BATCH].seen && parse_axes(&o[I_BATCH], &it.batch_axis)))
        return CLI_EXIT_USAGE;
    lx_dtype dtype = LX_F32;
    if (o[I_DTYPE].seen) {
        bool found = false;
        for (int d = 0; d < LX_DTYPE_COUNT; d++)
            if (!strcmp(o[I_DTYPE].value, lx_dtype_name((lx_dtype)d))) {
                dtype = (lx_dtype)d;
                found = true;
            }
        if (!found) return cli_error("--dtype: unknown dtype '%s'", o[I_DTYPE].value);
    }
    lx_key key;
    if (cli_key(&o[I_SEED], &o[I_KEY], &o[I_X64], &key)) return CLI_EXIT_USAGE;
    if (!o[I_SHAPE].seen) return cli_error("init: --shape is required");
    int64_t shape[LX_MAX_DIMS];
    int ndim;
    if (cli_shape("shape", o[I_SHAPE].value, shape, &ndim) || cli_check_size("shape", ndim, shape, 4)) return CLI_EXIT_USAGE;
    lx_random_set_legacy(o[I_LEGACY].seen);
    lx_array *a = lx_init_apply(&it, key, dtype, ndim, shape);
    if (!a) return cli_lib_error();
    return cli_print_array(a);
}

/* ------------------------------------------------------------------ random categorical */

enum { C_SEED, C_KEY, C_X64, C_LOGITS, C_TEMP, C_TOPK, C_N };

static const char CATEGORICAL_USAGE[] =
    "usage: linnx random categorical (--seed S [--x64] | --key K0,K1) --logits L0,L1,...\n"
    "                                [--temperature T] [--top-k K]\n"
    "Prints the index jax.random.categorical(key, logits / T) draws (argmax of gumbel + logits);\n"
    "--top-k K draws among lax.top_k's K largest (MaxText's topk sampling); --temperature 0 is\n"
    "greedy (argmax). Defaults: --temperature 1, --top-k 0 (all).\n";

static int cmd_random_categorical(int argc, char **argv) {
    cli_opt o[C_N] = {CLI_OPT("seed"), CLI_OPT("key"), CLI_FLAG("x64"), CLI_OPT("logits"), CLI_OPT("temperature"),
                      CLI_OPT("top-k")};
    const char *pos[2];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, C_N, pos, 1, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(CATEGORICAL_USAGE, stdout);
        return 0;
    }
    lx_key key;
    if (cli_key(&o[C_SEED], &o[C_KEY], &o[C_X64], &key)) return CLI_EXIT_USAGE;
    if (!o[C_LOGITS].seen) return cli_error("random categorical: --logits is required (comma-separated floats)");
    enum { MAXC = 1 << 16 };
    float *l = malloc(sizeof *l * MAXC);
    if (!l) return cli_oom("random");
    int n = 0;
    const char *s = o[C_LOGITS].value;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || (*end && *end != ',') || v != v || n == MAXC) {
            free(l);
            return cli_error("--logits: '%s' is not a comma-separated list of at most %d numbers", o[C_LOGITS].value,
                             MAXC);
        }
        l[n++] = (float)v;
        s = *end ? end + 1 : end;
    }
    double t = 1.0;
    int64_t k = 0;
    if (n == 0) {
        free(l);
        return cli_error("--logits: empty");
    }
    if ((o[C_TEMP].seen && cli_f64("temperature", o[C_TEMP].value, &t)) ||
        (o[C_TOPK].seen && cli_i64("top-k", o[C_TOPK].value, &k))) {
        free(l);
        return CLI_EXIT_USAGE;
    }
    lx_array *x = lx_autorelease(lx_array_from_f32(1, (int64_t[]){n}, l));
    free(l);
    lx_sampling smp = {t, k};
    lx_array *tok = x ? lx_sample_tokens(key, x, &smp) : NULL;
    if (!tok) return cli_lib_error();
    printf("%d\n", lx_i32(tok)[0]);
    return 0;
}
