/* optax expressions as Python writes them ("adamw(3e-4, weight_decay=0.1)",
 * "chain(clip_by_global_norm(1.0), adam(learning_rate=warmup_cosine_decay_schedule(0, 1e-3, 100,
 * 1000)))"): a small recursive-descent parser, then binding of positional and keyword arguments
 * to each function's optax signature with Python's TypeError texts. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/optax.h"
#include "optax_internal.h"

typedef enum { N_NUM, N_BOOL, N_NONE, N_STR, N_NAME, N_CALL, N_LIST, N_DICT } nkind;

typedef struct node node;
struct node {
    nkind k;
    double num;
    bool is_int, b;
    char *s;      /* STR, NAME, CALL: the function name */
    node *callee; /* a call of a call's result: inject_hyperparams(adam)(...) */
    int nargs, nkw;
    node **args;  /* CALL positional, LIST items, DICT keys */
    char **kwn;   /* CALL keyword names */
    node **kwv;   /* CALL keyword values, DICT values */
};

static void node_free(node *n) {
    if (!n) return;
    free(n->s);
    node_free(n->callee);
    for (int i = 0; i < n->nargs; i++) node_free(n->args[i]);
    for (int i = 0; i < n->nkw; i++) {
        if (n->kwn) free(n->kwn[i]);
        node_free(n->kwv[i]);
    }
    free(n->args);
    free(n->kwn);
    free(n->kwv);
    free(n);
}

/* ------------------------------------------------------------------ parser */

/* How deep calls, lists and dicts may nest (as the spec parser's 64): the parser, the tree it
 * builds and the transformations built from it recurse once a level, so an expression cannot
 * ask for more stack than that (a 108 KB chain(chain(...)) overflowed it). */
enum { OPTAX_MAX_DEPTH = 64 };

typedef struct parser {
    const char *src, *p;
    bool failed;
    int depth;
} parser;

static void skip(parser *ps) {
    while (isspace((unsigned char)*ps->p)) ps->p++;
}

/* The expression quoted whole when short, else about 60 characters around the offset with a '^'
 * before the failing character (a long expression is not echoed into one line). */
static node *perr(parser *ps, const char *what) {
    if (!ps->failed) {
        size_t off = (size_t)(ps->p - ps->src), len = strlen(ps->src);
        if (len <= 60)
            lx_fail(LX_ERR_FORMAT, "optax expression: %s at offset %zu in '%s'", what, off, ps->src);
        else {
            size_t a = off > 30 ? off - 30 : 0, b = off + 30 < len ? off + 30 : len;
            lx_fail(LX_ERR_FORMAT, "optax expression: %s at offset %zu: %s%.*s ^%.*s%s", what, off, a > 0 ? "..." : "",
                    (int)(off - a), ps->src + a, (int)(b - off), ps->src + off, b < len ? "..." : "");
        }
    }
    ps->failed = true;
    return NULL;
}

/* Running out of memory is LX_ERR_NO_MEMORY (a resource failure, not a malformed expression). */
static node *poom(parser *ps) {
    if (!ps->failed) lx_fail(LX_ERR_NO_MEMORY, "optax expression: out of memory");
    ps->failed = true;
    return NULL;
}

/* strndup through the library's allocator (counted by fault injection) */
static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static node *new_node(nkind k) {
    node *n = calloc(1, sizeof *n);
    if (n) n->k = k;
    return n;
}

static bool push(node ***arr, int *n, node *x) {
    node **a = realloc(*arr, (size_t)(*n + 1) * sizeof *a);
    if (!a) return false;
    a[(*n)++] = x;
    *arr = a;
    return true;
}

static node *parse_value(parser *ps);

/* '(' [arg {',' arg}] ')' where arg = value | NAME '=' value; fills a CALL node */
static bool parse_args(parser *ps, node *call) {
    ps->p++; /* '(' */
    skip(ps);
    if (*ps->p == ')') {
        ps->p++;
        return true;
    }
    for (;;) {
        skip(ps);
        const char *save = ps->p;
        char *kw = NULL;
        if (isalpha((unsigned char)*ps->p) || *ps->p == '_') {
            const char *q = ps->p;
            while (isalnum((unsigned char)*q) || *q == '_') q++;
            const char *r = q;
            while (isspace((unsigned char)*r)) r++;
            if (*r == '=' && r[1] != '=') {
                if (!(kw = dupn(ps->p, (size_t)(q - ps->p)))) {
                    poom(ps);
                    return false;
                }
                ps->p = r + 1;
            }
        }
        if (!kw && call->nkw > 0) {
            ps->p = save;
            perr(ps, "positional argument follows keyword argument");
            return false;
        }
        node *v = parse_value(ps);
        if (!v) {
            free(kw);
            return false;
        }
        if (kw) {
            char **kn = realloc(call->kwn, (size_t)(call->nkw + 1) * sizeof *kn);
            node **kv = kn ? realloc(call->kwv, (size_t)(call->nkw + 1) * sizeof *kv) : NULL;
            if (kn) call->kwn = kn;
            if (kv) call->kwv = kv;
            if (!kn || !kv) {
                free(kw);
                node_free(v);
                poom(ps);
                return false;
            }
            call->kwn[call->nkw] = kw;
            call->kwv[call->nkw++] = v;
        } else if (!push(&call->args, &call->nargs, v)) {
            node_free(v);
            poom(ps);
            return false;
        }
        skip(ps);
        if (*ps->p == ',') {
            ps->p++;
            skip(ps);
            if (*ps->p == ')') { /* trailing comma */
                ps->p++;
                return true;
            }
            continue;
        }
        if (*ps->p == ')') {
            ps->p++;
            return true;
        }
        perr(ps, "expected ',' or ')'");
        return false;
    }
}

static node *parse_value_at(parser *ps);

static node *parse_value(parser *ps) {
    skip(ps);
    if (ps->depth >= OPTAX_MAX_DEPTH) return perr(ps, "nested more than 64 deep");
    ps->depth++;
    node *n = parse_value_at(ps);
    ps->depth--;
    return n;
}

/* A decimal numeral with Python's digit separators (1_000, 3_0.5e-1_0: each underscore between
 * two digits), copied without them into buf; *len is how much of c it spans (0: not one). */
static size_t numeral_without_underscores(const char *c, char *buf, size_t cap, size_t *len) {
    size_t i = 0, k = 0;
    if (c[i] == '-' || c[i] == '+') buf[k++] = c[i++];
    bool prev_e = false;
    while (k + 1 < cap) {
        char ch = c[i];
        bool dig = isdigit((unsigned char)ch);
        if (ch == '_' && i > 0 && isdigit((unsigned char)c[i - 1]) && isdigit((unsigned char)c[i + 1])) {
            i++;
            continue;
        }
        if (!(dig || ch == '.' || ch == 'e' || ch == 'E' || (prev_e && (ch == '-' || ch == '+')))) break;
        prev_e = ch == 'e' || ch == 'E';
        buf[k++] = ch;
        i++;
    }
    buf[k] = '\0';
    *len = i;
    return k;
}

static node *parse_value_at(parser *ps) {
    skip(ps);
    const char *c = ps->p;
    if (*c == '-' || *c == '+' || *c == '.' || isdigit((unsigned char)*c)) {
        char *end;
        double v = strtod(c, &end);
        if (end == c) return perr(ps, "expected a number");
        const char *numeral = c;
        size_t numeral_len = (size_t)(end - c);
        char buf[128];
        if (*end == '_' && end > c && isdigit((unsigned char)end[-1]) && isdigit((unsigned char)end[1])) {
            /* 1_000e-6: strtod stopped at a digit separator; read the numeral without them */
            size_t span, k = numeral_without_underscores(c, buf, sizeof buf, &span);
            char *bend;
            v = strtod(buf, &bend);
            if ((size_t)(bend - buf) != k) return perr(ps, "invalid number");
            numeral = buf;
            numeral_len = k;
            end = (char *)c + span;
        }
        node *n = new_node(N_NUM);
        if (!n) return poom(ps);
        n->num = v;
        n->is_int = strcspn(numeral, ".eE") >= numeral_len;
        ps->p = end;
        return n;
    }
    if (*c == '\'' || *c == '"') {
        const char *q = strchr(c + 1, *c);
        if (!q) return perr(ps, "unterminated string");
        node *n = new_node(N_STR);
        if (!n) return poom(ps);
        if (!(n->s = dupn(c + 1, (size_t)(q - c - 1)))) {
            node_free(n);
            return poom(ps);
        }
        ps->p = q + 1;
        return n;
    }
    if (*c == '[' || *c == '(' || *c == '{') {
        bool dict = *c == '{';
        char close = *c == '[' ? ']' : *c == '(' ? ')' : '}';
        node *n = new_node(dict ? N_DICT : N_LIST);
        if (!n) return poom(ps);
        ps->p++;
        skip(ps);
        while (*ps->p != close) {
            node *k = parse_value(ps);
            if (!k || !push(&n->args, &n->nargs, k)) {
                node_free(k);
                node_free(n);
                return k ? poom(ps) : perr(ps, "bad list");
            }
            skip(ps);
            if (dict) {
                if (*ps->p != ':') {
                    node_free(n);
                    return perr(ps, "expected ':'");
                }
                ps->p++;
                node *v = parse_value(ps);
                if (!v || !push(&n->kwv, &n->nkw, v)) {
                    node_free(v);
                    node_free(n);
                    return v ? poom(ps) : perr(ps, "bad dict");
                }
                skip(ps);
            }
            if (*ps->p == ',') {
                ps->p++;
                skip(ps);
            } else if (*ps->p != close) {
                node_free(n);
                return perr(ps, "expected ',' or a closing bracket");
            }
        }
        ps->p++;
        return n;
    }
    if (isalpha((unsigned char)*c) || *c == '_') {
        const char *q = c;
        while (isalnum((unsigned char)*q) || *q == '_' || *q == '.') q++;
        char *name = dupn(c, (size_t)(q - c));
        if (!name) return poom(ps);
        ps->p = q;
        /* `optax.adam`, `optax.schedules.cosine_decay_schedule`, `jnp.float32`: the last name */
        char *dot = strrchr(name, '.');
        if (dot) memmove(name, dot + 1, strlen(dot + 1) + 1);
        node *n;
        if (!strcmp(name, "True") || !strcmp(name, "False") || !strcmp(name, "true") || !strcmp(name, "false")) {
            n = new_node(N_BOOL);
            if (n) n->b = name[0] == 'T' || name[0] == 't';
            free(name);
        } else if (!strcmp(name, "None")) {
            n = new_node(N_NONE);
            free(name);
        } else {
            n = new_node(N_NAME);
            if (n) n->s = name;
            else free(name);
        }
        if (!n) return poom(ps);
        skip(ps);
        int extra = 0; /* f(a)(b)...: each call of a call's result nests the tree one level more */
        while (n->k == N_NAME || n->k == N_CALL) {
            skip(ps);
            if (*ps->p != '(') break;
            if (n->k == N_CALL) {
                if (ps->depth >= OPTAX_MAX_DEPTH) {
                    node_free(n);
                    return perr(ps, "nested more than 64 deep");
                }
                ps->depth++, extra++;
            }
            node *call = new_node(N_CALL);
            if (!call) {
                node_free(n);
                return poom(ps);
            }
            if (n->k == N_NAME) {
                call->s = n->s;
                n->s = NULL;
                node_free(n);
            } else {
                call->callee = n;
            }
            n = call;
            if (!parse_args(ps, n)) {
                node_free(n);
                return NULL;
            }
        }
        ps->depth -= extra;
        return n;
    }
    return perr(ps, *c ? "unexpected character" : "unexpected end");
}

/* ------------------------------------------------------------------ binding */

typedef struct sig {
    const char *name;
    int npos;               /* parameters that may be given positionally */
    const char *params[14]; /* NULL-terminated */
    int nreq;
} sig;

static const sig SIGS[] = {
    /* optimizers */
    {"sgd", 4, {"learning_rate", "momentum", "nesterov", "accumulator_dtype"}, 1},
    {"adam", 6, {"learning_rate", "b1", "b2", "eps", "eps_root", "mu_dtype", "nesterov"}, 1},
    {"nadam", 6, {"learning_rate", "b1", "b2", "eps", "eps_root", "mu_dtype", "nesterov"}, 1},
    {"adamw", 8, {"learning_rate", "b1", "b2", "eps", "eps_root", "mu_dtype", "weight_decay", "mask", "nesterov"}, 1},
    {"nadamw", 8, {"learning_rate", "b1", "b2", "eps", "eps_root", "mu_dtype", "weight_decay", "mask", "nesterov"}, 1},
    {"rmsprop", 9, {"learning_rate", "decay", "eps", "initial_scale", "eps_in_sqrt", "centered", "momentum", "nesterov",
                    "bias_correction"}, 1},
    {"lion", 6, {"learning_rate", "b1", "b2", "mu_dtype", "weight_decay", "mask"}, 1},
    {"adafactor", 12, {"learning_rate", "min_dim_size_to_factor", "decay_rate", "decay_offset",
                       "multiply_by_parameter_scale", "clipping_threshold", "momentum", "dtype_momentum",
                       "weight_decay_rate", "eps", "factored", "weight_decay_mask"}, 0},
    /* transformations */
    {"identity", 0, {NULL}, 0},
    {"scale", 1, {"step_size"}, 1},
    {"scale_by_learning_rate", 1, {"learning_rate", "flip_sign"}, 1},
    {"scale_by_schedule", 1, {"step_size_fn"}, 1},
    {"scale_by_adam", 5, {"b1", "b2", "eps", "eps_root", "mu_dtype", "nesterov"}, 0},
    {"scale_by_rms", 5, {"decay", "eps", "initial_scale", "eps_in_sqrt", "bias_correction"}, 0},
    {"scale_by_stddev", 5, {"decay", "eps", "initial_scale", "eps_in_sqrt", "bias_correction"}, 0},
    {"trace", 3, {"decay", "nesterov", "accumulator_dtype"}, 1},
    {"ema", 3, {"decay", "debias", "accumulator_dtype"}, 1},
    {"add_decayed_weights", 2, {"weight_decay", "mask"}, 0},
    {"clip", 1, {"max_delta"}, 1},
    {"clip_by_block_rms", 1, {"threshold"}, 1},
    {"clip_by_global_norm", 1, {"max_norm"}, 1},
    {"scale_by_lion", 3, {"b1", "b2", "mu_dtype", "mode", "smooth_beta"}, 0},
    {"scale_by_factored_rms", 5, {"factored", "decay_rate", "step_offset", "min_dim_size_to_factor", "epsilon"}, 0},
    {"scale_by_param_block_rms", 1, {"min_scale"}, 0},
    /* schedules */
    {"constant_schedule", 1, {"value"}, 1},
    {"linear_schedule", 4, {"init_value", "end_value", "transition_steps", "transition_begin"}, 3},
    {"polynomial_schedule", 5, {"init_value", "end_value", "power", "transition_steps", "transition_begin"}, 4},
    {"exponential_decay", 6, {"init_value", "transition_steps", "decay_rate", "transition_begin", "staircase",
                              "end_value"}, 3},
    {"cosine_decay_schedule", 4, {"init_value", "decay_steps", "alpha", "exponent"}, 2},
    {"warmup_cosine_decay_schedule", 6, {"init_value", "peak_value", "warmup_steps", "decay_steps", "end_value",
                                         "exponent"}, 4},
    {"warmup_constant_schedule", 3, {"init_value", "peak_value", "warmup_steps"}, 3},
    {"join_schedules", 2, {"schedules", "boundaries"}, 2},
    {"piecewise_constant_schedule", 2, {"init_value", "boundaries_and_scales"}, 1},
};

static const sig *find_sig(const char *name) {
    for (size_t i = 0; i < sizeof SIGS / sizeof SIGS[0]; i++)
        if (!strcmp(SIGS[i].name, name)) return &SIGS[i];
    return NULL;
}

static int sig_len(const sig *s) {
    int n = 0;
    while (n < 14 && s->params[n]) n++;
    return n;
}

/* A keyword given twice is a SyntaxError in Python, before any call. */
static lx_status repeated_keyword(const node *call) {
    for (int k = 0; k < call->nkw; k++)
        for (int j = 0; j < k; j++)
            if (!strcmp(call->kwn[j], call->kwn[k]))
                return lx_fail(LX_ERR_FORMAT, "optax expression: keyword argument repeated: %s", call->kwn[k]);
    return LX_OK;
}

/* CPython's list of missing names: 'a' / 'a' and 'b' / 'a', 'b', and 'c'. */
static void py_name_list(char *buf, size_t cap, const char *const *names, int n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len < cap; i++) {
        const char *sep = i == 0 ? "" : n == 2 ? " and " : i == n - 1 ? ", and " : ", ";
        int w = snprintf(buf + len, cap - len, "%s'%s'", sep, names[i]);
        if (w < 0) break;
        len += (size_t)w;
    }
}

/* Python's binding of call arguments to a function's parameters, with CPython's TypeError texts
 * in CPython's order (Python/ceval.c): positionals fill the first npos slots; then each keyword in
 * the order written (unexpected keyword, multiple values); then too many positionals ("takes from
 * 1 to 4 positional arguments but 5 were given", with the keyword-only ones given counted); then
 * the required parameters still empty ("missing 2 required positional arguments: 'a' and 'b'").
 * Keyword-only parameters (index >= npos) all have defaults. out[i] = the node for parameter i
 * or NULL. */
static lx_status bind(const node *call, const sig *s, const node **out) {
    LX_TRY(repeated_keyword(call));
    int np = sig_len(s);
    for (int i = 0; i < np; i++) out[i] = NULL;
    for (int i = 0; i < call->nargs && i < s->npos; i++) out[i] = call->args[i];
    for (int k = 0; k < call->nkw; k++) {
        int i = 0;
        while (i < np && strcmp(s->params[i], call->kwn[k])) i++;
        if (i == np) return lx_fail(LX_ERR_TYPE, "%s() got an unexpected keyword argument '%s'", s->name, call->kwn[k]);
        if (out[i]) return lx_fail(LX_ERR_TYPE, "%s() got multiple values for argument '%s'", s->name, call->kwn[k]);
        out[i] = call->kwv[k];
    }
    if (call->nargs > s->npos) {
        int kwonly = 0, defaults = s->npos - s->nreq, given = call->nargs;
        for (int i = s->npos; i < np; i++) kwonly += out[i] != NULL;
        char takes[96], extra[128] = "";
        if (defaults > 0) snprintf(takes, sizeof takes, "from %d to %d positional arguments", s->nreq, s->npos);
        else snprintf(takes, sizeof takes, "%d positional argument%s", s->npos, s->npos == 1 ? "" : "s");
        if (kwonly)
            snprintf(extra, sizeof extra, " positional argument%s (and %d keyword-only argument%s)", given != 1 ? "s" : "",
                     kwonly, kwonly != 1 ? "s" : "");
        return lx_fail(LX_ERR_TYPE, "%s() takes %s but %d%s %s given", s->name, takes, given, extra,
                       given == 1 && !kwonly ? "was" : "were");
    }
    const char *missing[14];
    int nm = 0;
    for (int i = call->nargs; i < s->nreq; i++)
        if (!out[i]) missing[nm++] = s->params[i];
    if (nm) {
        char names[400];
        py_name_list(names, sizeof names, missing, nm);
        return lx_fail(LX_ERR_TYPE, "%s() missing %d required positional argument%s: %s", s->name, nm, nm == 1 ? "" : "s",
                       names);
    }
    return LX_OK;
}

/* inspect.Signature.bind, which optax's inject_hyperparams wrapper calls with the inner
 * optimizer's signature: its TypeError texts ("too many positional arguments", "multiple values
 * for argument 'x'", "missing a required argument: 'x'", "got an unexpected keyword argument
 * 'x'") in its order: positionals in turn, then the parameters left in order, then the keywords
 * that matched none. */
static int kw_index(const node *call, const char *name) {
    for (int k = 0; k < call->nkw; k++)
        if (!strcmp(call->kwn[k], name)) return k;
    return -1;
}

static lx_status bind_signature(const node *call, const sig *s, const node **out) {
    LX_TRY(repeated_keyword(call));
    int np = sig_len(s);
    for (int i = 0; i < np; i++) out[i] = NULL;
    for (int i = 0; i < call->nargs; i++) {
        if (i >= s->npos) return lx_fail(LX_ERR_TYPE, "too many positional arguments");
        if (kw_index(call, s->params[i]) >= 0)
            return lx_fail(LX_ERR_TYPE, "multiple values for argument '%s'", s->params[i]);
        out[i] = call->args[i];
    }
    for (int i = call->nargs; i < np; i++) {
        int k = kw_index(call, s->params[i]);
        if (k >= 0) out[i] = call->kwv[k];
        else if (i < s->nreq) return lx_fail(LX_ERR_TYPE, "missing a required argument: '%s'", s->params[i]);
    }
    for (int k = 0; k < call->nkw; k++) {
        int i = 0;
        while (i < np && strcmp(s->params[i], call->kwn[k])) i++;
        if (i == np) return lx_fail(LX_ERR_TYPE, "got an unexpected keyword argument '%s'", call->kwn[k]);
    }
    return LX_OK;
}

static int pidx(const sig *s, const char *name) {
    for (int i = 0; i < sig_len(s); i++)
        if (!strcmp(s->params[i], name)) return i;
    return -1;
}

typedef struct args {
    const sig *s;
    const node *v[14];
    lx_status st;
} args;

static const node *arg(args *a, const char *name) {
    int i = pidx(a->s, name);
    return i < 0 ? NULL : a->v[i];
}

static double num(args *a, const char *name, double dflt) {
    const node *n = arg(a, name);
    if (!n || n->k == N_NONE || a->st != LX_OK) return dflt;
    if (n->k == N_NUM) return n->num;
    a->st = lx_fail(LX_ERR_TYPE, "%s(): '%s' must be a number", a->s->name, name);
    return dflt;
}

static bool has(args *a, const char *name) {
    const node *n = arg(a, name);
    return n && n->k != N_NONE;
}

static bool boolean(args *a, const char *name, bool dflt) {
    const node *n = arg(a, name);
    if (!n || a->st != LX_OK) return dflt;
    if (n->k == N_BOOL) return n->b;
    if (n->k == N_NUM) return n->num != 0;
    a->st = lx_fail(LX_ERR_TYPE, "%s(): '%s' must be True or False", a->s->name, name);
    return dflt;
}

static lx_dtype dtype_arg(args *a, const char *name, lx_dtype dflt) {
    const node *n = arg(a, name);
    if (!n || n->k == N_NONE || a->st != LX_OK) return dflt;
    const char *s = n->s;
    if ((n->k == N_STR || n->k == N_NAME) && s) {
        if (!strcmp(s, "float32")) return LX_F32;
        if (!strcmp(s, "bfloat16")) return LX_BF16;
    }
    a->st = lx_fail(LX_ERR_DTYPE, "%s(): '%s' must be float32 or bfloat16", a->s->name, name);
    return dflt;
}

/* masks are callables or trees in optax: not expressible here beyond None */
static void no_mask(args *a, const char *name) {
    if (has(a, name) && a->st == LX_OK)
        a->st = lx_fail(LX_ERR_UNSUPPORTED, "%s(): '%s' other than None cannot be written in an expression (use the C "
                        "API's optax_mask)", a->s->name, name);
}

static optax_schedule *build_schedule(const node *n);

static optax_sos sos(args *a, const char *name, double dflt) {
    const node *n = arg(a, name);
    if (!n || a->st != LX_OK) return OPTAX_CONST(dflt);
    if (n->k == N_NUM) return OPTAX_CONST(n->num);
    if (n->k == N_CALL) {
        optax_schedule *s = build_schedule(n);
        if (!s) a->st = lx_last_status();
        return OPTAX_SCHED(s);
    }
    a->st = lx_fail(LX_ERR_TYPE, "%s(): '%s' must be a number or a schedule", a->s->name, name);
    return OPTAX_CONST(dflt);
}

static void sos_free(optax_sos v) { optax_schedule_release(v.schedule); }

static lx_status start(const node *n, const char *want_kind, args *a) {
    memset(a, 0, sizeof *a);
    if (n->k != N_CALL || !n->s)
        return lx_fail(LX_ERR_FORMAT, "optax expression: expected a call of a %s", want_kind);
    a->s = find_sig(n->s);
    if (!a->s) return lx_fail(LX_ERR_NOT_FOUND, "optax has no %s named '%s'", want_kind, n->s);
    return bind(n, a->s, a->v);
}

/* A step count as int64 (truncated as int() would): a value outside int64's range (1e30, inf, nan)
 * is an error, not an out-of-range conversion (undefined behaviour in C). */
static int64_t to_steps(args *a, const char *name, double v) {
    if (!(v > -0x1p63 && v < 0x1p63)) {
        if (a->st == LX_OK)
            a->st = lx_fail(LX_ERR_INVALID_ARGUMENT, "%s(): %s must be an integer step count, got %g", a->s->name, name, v);
        return 0;
    }
    return (int64_t)v;
}

static int64_t int_arg(args *a, const char *name, int64_t dflt) {
    return to_steps(a, name, num(a, name, (double)dflt));
}

static optax_schedule *build_schedule(const node *n) {
    args a;
    if (start(n, "schedule", &a) != LX_OK) return NULL;
    const char *f = a.s->name;
    optax_schedule *r = NULL;
    if (!strcmp(f, "constant_schedule")) {
        double v = num(&a, "value", 0);
        if (a.st == LX_OK) r = optax_constant_schedule(v);
    } else if (!strcmp(f, "linear_schedule")) {
        double i = num(&a, "init_value", 0), e = num(&a, "end_value", 0);
        int64_t s = int_arg(&a, "transition_steps", 0), b = int_arg(&a, "transition_begin", 0);
        if (a.st == LX_OK) r = optax_linear_schedule(i, e, s, b);
    } else if (!strcmp(f, "polynomial_schedule")) {
        double i = num(&a, "init_value", 0), e = num(&a, "end_value", 0), p = num(&a, "power", 1);
        int64_t s = int_arg(&a, "transition_steps", 0), b = int_arg(&a, "transition_begin", 0);
        if (a.st == LX_OK) r = optax_polynomial_schedule(i, e, p, s, b);
    } else if (!strcmp(f, "exponential_decay")) {
        double i = num(&a, "init_value", 0), d = num(&a, "decay_rate", 0), e = num(&a, "end_value", 0);
        int64_t s = int_arg(&a, "transition_steps", 0), b = int_arg(&a, "transition_begin", 0);
        bool st = boolean(&a, "staircase", false);
        if (a.st == LX_OK) r = optax_exponential_decay(i, s, d, b, st, has(&a, "end_value"), e);
    } else if (!strcmp(f, "cosine_decay_schedule")) {
        double i = num(&a, "init_value", 0), al = num(&a, "alpha", 0), ex = num(&a, "exponent", 1);
        int64_t s = int_arg(&a, "decay_steps", 0);
        if (a.st == LX_OK) r = optax_cosine_decay_schedule(i, s, al, ex);
    } else if (!strcmp(f, "warmup_cosine_decay_schedule")) {
        double i = num(&a, "init_value", 0), p = num(&a, "peak_value", 0), e = num(&a, "end_value", 0),
               ex = num(&a, "exponent", 1);
        int64_t w = int_arg(&a, "warmup_steps", 0), d = int_arg(&a, "decay_steps", 0);
        if (a.st == LX_OK) r = optax_warmup_cosine_decay_schedule(i, p, w, d, e, ex);
    } else if (!strcmp(f, "warmup_constant_schedule")) {
        double i = num(&a, "init_value", 0), p = num(&a, "peak_value", 0);
        int64_t w = int_arg(&a, "warmup_steps", 0);
        if (a.st == LX_OK) r = optax_warmup_constant_schedule(i, p, w);
    } else if (!strcmp(f, "join_schedules")) {
        const node *sl = arg(&a, "schedules"), *bl = arg(&a, "boundaries");
        if (sl->k != N_LIST || bl->k != N_LIST || bl->nargs != sl->nargs - 1 || sl->nargs < 1 || sl->nargs > 32) {
            a.st = lx_fail(LX_ERR_INVALID_ARGUMENT, "join_schedules(): needs a list of n schedules and n - 1 boundaries");
        } else {
            optax_schedule *ss[32];
            int64_t bs[32];
            for (int i = 0; i < sl->nargs; i++) ss[i] = build_schedule(sl->args[i]);
            for (int i = 0; i < bl->nargs; i++) bs[i] = to_steps(&a, "boundaries", bl->args[i]->num);
            bool ok = a.st == LX_OK;
            for (int i = 0; i < sl->nargs; i++) ok &= ss[i] != NULL;
            if (ok) {
                r = optax_join_schedules(sl->nargs, ss, bs);
            } else {
                if (a.st == LX_OK) a.st = lx_last_status();
                for (int i = 0; i < sl->nargs; i++) optax_schedule_release(ss[i]);
            }
        }
    } else if (!strcmp(f, "piecewise_constant_schedule")) {
        double i = num(&a, "init_value", 0);
        const node *d = arg(&a, "boundaries_and_scales");
        if (d && d->k != N_NONE && (d->k != N_DICT || d->nargs > 64)) {
            a.st = lx_fail(LX_ERR_TYPE, "piecewise_constant_schedule(): boundaries_and_scales must be a dict");
        } else if (a.st == LX_OK) {
            int64_t bs[64];
            double sc[64];
            int m = d && d->k == N_DICT ? d->nargs : 0;
            for (int k = 0; k < m; k++) {
                bs[k] = to_steps(&a, "boundaries_and_scales", d->args[k]->num);
                sc[k] = d->kwv[k]->num;
            }
            if (a.st == LX_OK) r = optax_piecewise_constant_schedule(i, m, bs, sc);
        }
    } else {
        a.st = lx_fail(LX_ERR_TYPE, "'%s' is a transformation, not a schedule", f);
    }
    if (a.st != LX_OK) return NULL;
    return r;
}

static optax_tx *build_tx(const node *n);

static optax_adam_opts adam_opts(args *a, bool adamw) {
    optax_adam_opts o = OPTAX_ADAMW_DEFAULTS;
    o.b1 = num(a, "b1", 0.9);
    o.b2 = num(a, "b2", 0.999);
    o.eps = num(a, "eps", 1e-8);
    o.eps_root = num(a, "eps_root", 0.0);
    o.mu_dtype = dtype_arg(a, "mu_dtype", OPTAX_DTYPE_DEFAULT);
    o.nesterov = boolean(a, "nesterov", false);
    if (adamw) { /* a number or a schedule (optax's ScalarOrSchedule); the caller owns the schedule */
        optax_sos wd = sos(a, "weight_decay", 1e-4);
        o.weight_decay = wd.value;
        o.weight_decay_schedule = wd.schedule;
        no_mask(a, "mask");
    } else {
        o.weight_decay = 0.0;
    }
    return o;
}

/* inject_hyperparams(alias)(...): the arguments bound to the alias's own signature as optax's
 * wrapper binds them (inspect.Signature.bind, positionals included); then, as optax sorts them,
 * numbers become hyperparameters, schedule calls scheduled ones, and bools, dtypes and None stay
 * static arguments of the inner optimizer. */
static bool static_bool_param(const char *p) {
    return !strcmp(p, "nesterov") || !strcmp(p, "centered") || !strcmp(p, "eps_in_sqrt") || !strcmp(p, "bias_correction");
}
static bool dtype_param(const char *p) { return !strcmp(p, "mu_dtype") || !strcmp(p, "accumulator_dtype"); }

static optax_tx *build_inject(const node *n) {
    const node *inner = n->callee;
    if (inner->nargs != 1 || inner->nkw != 0 || inner->args[0]->k != N_NAME) {
        lx_fail(LX_ERR_FORMAT, "inject_hyperparams(...) takes one optimizer name");
        return NULL;
    }
    const char *alias = inner->args[0]->s;
    const sig *s = find_sig(alias);
    if (!s || !lx_optax_inject_knows(alias)) /* its error names the optimizers it knows */
        return optax_inject_hyperparams(alias, 0, NULL);
    const node *v[14];
    if (bind_signature(n, s, v) != LX_OK) return NULL;
    optax_hparam hp[14];
    lx_inject_statics stat = LX_INJECT_STATICS_DEFAULT;
    stat.nesterov = !strncmp(alias, "nadam", 5); /* optax: partial(adam(w), nesterov=True) */
    int m = 0;
    lx_status st = LX_OK;
    for (int j = 0; j < sig_len(s) && st == LX_OK; j++) {
        const node *x = v[j];
        const char *p = s->params[j];
        if (!x) continue;
        if (static_bool_param(p)) {
            if (x->k == N_BOOL) {
                bool b = x->b;
                if (!strcmp(p, "nesterov")) stat.nesterov = b;
                else if (!strcmp(p, "centered")) stat.centered = b;
                else if (!strcmp(p, "eps_in_sqrt")) stat.eps_in_sqrt = b;
                else stat.bias_correction = b;
            } else {
                st = lx_fail(LX_ERR_TYPE, "inject_hyperparams(%s): '%s' must be True or False", alias, p);
            }
        } else if (dtype_param(p)) {
            if (x->k != N_NONE) {
                args a = {.s = s};
                a.v[j] = x;
                stat.dtype = dtype_arg(&a, p, OPTAX_DTYPE_DEFAULT);
                st = a.st;
            }
        } else if (!strcmp(p, "mask")) {
            if (x->k != N_NONE)
                st = lx_fail(LX_ERR_UNSUPPORTED, "%s(): 'mask' other than None cannot be written in an expression (use "
                             "the C API's optax_mask)", alias);
        } else if (x->k == N_NONE && !strcmp(p, "momentum")) {
            /* momentum=None: no momentum, as when it is not given */
        } else if (x->k == N_NUM) {
            hp[m++] = (optax_hparam){p, OPTAX_CONST(x->num)};
        } else if (x->k == N_CALL) {
            hp[m] = (optax_hparam){p, OPTAX_SCHED(build_schedule(x))};
            if (!hp[m++].value.schedule) st = lx_last_status();
        } else {
            st = lx_fail(LX_ERR_TYPE, "inject_hyperparams(%s): '%s' must be a number or a schedule", alias, p);
        }
    }
    if (st != LX_OK) {
        for (int k = 0; k < m; k++) optax_schedule_release(hp[k].value.schedule);
        return NULL;
    }
    optax_tx *tx = optax_inject_hyperparams(alias, m, hp);
    lx_optax_inject_set_statics(tx, &stat);
    return tx;
}

static optax_tx *build_tx(const node *n) {
    if (n->k == N_CALL && n->callee) {
        if (n->callee->k == N_CALL && n->callee->s && !strcmp(n->callee->s, "inject_hyperparams"))
            return build_inject(n);
        lx_fail(LX_ERR_FORMAT, "optax expression: only inject_hyperparams(name)(...) may be called twice");
        return NULL;
    }
    if (n->k == N_CALL && n->s && !strcmp(n->s, "chain")) {
        if (n->nkw) {
            lx_fail(LX_ERR_TYPE, "chain() got an unexpected keyword argument '%s'", n->kwn[0]);
            return NULL;
        }
        optax_tx **txs = calloc((size_t)n->nargs + 1, sizeof *txs);
        if (!txs) {
            lx_fail(LX_ERR_NO_MEMORY, "chain: out of memory");
            return NULL;
        }
        for (int i = 0; i < n->nargs; i++) txs[i] = build_tx(n->args[i]);
        optax_tx *r = optax_chain(n->nargs, txs);
        free(txs);
        return r;
    }
    args a;
    if (start(n, "transformation", &a) != LX_OK) return NULL;
    const char *f = a.s->name;
    optax_tx *r = NULL;
    optax_sos lr = OPTAX_CONST(0);
    if (!strcmp(f, "sgd")) {
        lr = sos(&a, "learning_rate", 0);
        double m = num(&a, "momentum", 0);
        bool nest = boolean(&a, "nesterov", false);
        lx_dtype acc = dtype_arg(&a, "accumulator_dtype", OPTAX_DTYPE_DEFAULT);
        if (a.st == LX_OK) {
            r = lx_optax_sgd_acc(lr, has(&a, "momentum"), m, nest, acc);
            lr.schedule = NULL;
        }
    } else if (!strcmp(f, "adam") || !strcmp(f, "nadam") || !strcmp(f, "adamw") || !strcmp(f, "nadamw")) {
        bool w = f[strlen(f) - 1] == 'w';
        lr = sos(&a, "learning_rate", 0);
        optax_adam_opts o = adam_opts(&a, w);
        if (f[0] == 'n' && !has(&a, "nesterov")) o.nesterov = true; /* partial(adam(w), nesterov=True) */
        if (a.st == LX_OK) {
            r = w ? optax_adamw(lr, &o) : optax_adam(lr, &o);
            lr.schedule = NULL;
        } else {
            optax_schedule_release(o.weight_decay_schedule);
        }
    } else if (!strcmp(f, "rmsprop")) {
        lr = sos(&a, "learning_rate", 0);
        optax_rmsprop_opts o = OPTAX_RMSPROP_DEFAULTS;
        o.decay = num(&a, "decay", 0.9);
        o.eps = num(&a, "eps", 1e-8);
        o.initial_scale = num(&a, "initial_scale", 0.0);
        o.eps_in_sqrt = boolean(&a, "eps_in_sqrt", true);
        o.bias_correction = boolean(&a, "bias_correction", false);
        o.has_momentum = has(&a, "momentum");
        o.momentum = num(&a, "momentum", 0);
        o.nesterov = boolean(&a, "nesterov", false);
        o.centered = boolean(&a, "centered", false);
        if (a.st == LX_OK) {
            r = optax_rmsprop(lr, &o);
            lr.schedule = NULL;
        }
    } else if (!strcmp(f, "lion")) {
        lr = sos(&a, "learning_rate", 0);
        optax_lion_opts o = OPTAX_LION_DEFAULTS;
        o.b1 = num(&a, "b1", 0.9);
        o.b2 = num(&a, "b2", 0.99);
        o.mu_dtype = dtype_arg(&a, "mu_dtype", OPTAX_DTYPE_DEFAULT);
        optax_sos wd = sos(&a, "weight_decay", 1e-3);
        o.weight_decay = wd.value;
        o.weight_decay_schedule = wd.schedule;
        no_mask(&a, "mask");
        if (a.st == LX_OK) {
            r = optax_lion(lr, &o);
            lr.schedule = NULL;
        } else {
            optax_schedule_release(o.weight_decay_schedule);
        }
    } else if (!strcmp(f, "adafactor")) {
        bool has_lr = has(&a, "learning_rate"); /* learning_rate=None is the default: no lr step */
        lr = has_lr ? sos(&a, "learning_rate", 0) : OPTAX_CONST(0);
        optax_adafactor_opts o = OPTAX_ADAFACTOR_DEFAULTS;
        o.min_dim_size_to_factor = int_arg(&a, "min_dim_size_to_factor", 128);
        o.decay_rate = num(&a, "decay_rate", 0.8);
        o.decay_offset = int_arg(&a, "decay_offset", 0);
        o.multiply_by_parameter_scale = boolean(&a, "multiply_by_parameter_scale", true);
        o.has_clipping_threshold = !arg(&a, "clipping_threshold") || has(&a, "clipping_threshold");
        o.clipping_threshold = num(&a, "clipping_threshold", 1.0);
        o.has_momentum = has(&a, "momentum");
        o.momentum = num(&a, "momentum", 0);
        o.has_weight_decay_rate = has(&a, "weight_decay_rate");
        if (o.has_weight_decay_rate) o.weight_decay_rate = sos(&a, "weight_decay_rate", 0);
        o.eps = num(&a, "eps", 1e-30);
        o.factored = boolean(&a, "factored", true);
        no_mask(&a, "weight_decay_mask");
        if (has(&a, "dtype_momentum") && dtype_arg(&a, "dtype_momentum", LX_F32) != LX_F32 && a.st == LX_OK)
            a.st = lx_fail(LX_ERR_UNSUPPORTED, "adafactor(): dtype_momentum other than float32");
        if (a.st == LX_OK) {
            r = optax_adafactor(has_lr, lr, &o);
            lr.schedule = NULL;
        } else {
            sos_free(o.weight_decay_rate);
        }
    } else if (!strcmp(f, "identity")) {
        r = optax_identity();
    } else if (!strcmp(f, "scale")) {
        double s = num(&a, "step_size", 0);
        if (a.st == LX_OK) r = optax_scale(s);
    } else if (!strcmp(f, "scale_by_learning_rate")) {
        lr = sos(&a, "learning_rate", 0);
        bool flip = boolean(&a, "flip_sign", true);
        if (a.st == LX_OK) {
            r = optax_scale_by_learning_rate(lr, flip);
            lr.schedule = NULL;
        }
    } else if (!strcmp(f, "scale_by_schedule")) {
        const node *s = arg(&a, "step_size_fn");
        optax_schedule *sc = s->k == N_CALL ? build_schedule(s) : NULL;
        if (!sc && s->k != N_CALL) lx_fail(LX_ERR_TYPE, "scale_by_schedule(): step_size_fn must be a schedule");
        r = optax_scale_by_schedule(sc);
    } else if (!strcmp(f, "scale_by_adam")) {
        optax_adam_opts o = adam_opts(&a, false);
        if (a.st == LX_OK) r = optax_scale_by_adam(&o);
    } else if (!strcmp(f, "scale_by_rms") || !strcmp(f, "scale_by_stddev")) {
        double d = num(&a, "decay", 0.9), e = num(&a, "eps", 1e-8), i = num(&a, "initial_scale", 0);
        bool s = boolean(&a, "eps_in_sqrt", true), b = boolean(&a, "bias_correction", false);
        if (a.st == LX_OK)
            r = f[9] == 'r' ? optax_scale_by_rms(d, e, i, s, b) : optax_scale_by_stddev(d, e, i, s, b);
    } else if (!strcmp(f, "trace") || !strcmp(f, "ema")) {
        double d = num(&a, "decay", 0);
        bool fl = boolean(&a, f[0] == 't' ? "nesterov" : "debias", f[0] != 't');
        lx_dtype acc = dtype_arg(&a, "accumulator_dtype", OPTAX_DTYPE_DEFAULT);
        if (a.st == LX_OK) r = f[0] == 't' ? optax_trace(d, fl, acc) : optax_ema(d, fl, acc);
    } else if (!strcmp(f, "add_decayed_weights")) {
        optax_sos wd = sos(&a, "weight_decay", 0.0);
        no_mask(&a, "mask");
        if (a.st == LX_OK) r = optax_add_decayed_weights(wd, OPTAX_NO_MASK);
        else sos_free(wd);
    } else if (!strcmp(f, "clip") || !strcmp(f, "clip_by_block_rms") || !strcmp(f, "clip_by_global_norm")) {
        double v = num(&a, a.s->params[0], 0);
        if (a.st == LX_OK)
            r = !strcmp(f, "clip") ? optax_clip(v) : f[8] == 'b' ? optax_clip_by_block_rms(v) : optax_clip_by_global_norm(v);
    } else if (!strcmp(f, "scale_by_lion")) {
        double b1 = num(&a, "b1", 0.9), b2 = num(&a, "b2", 0.99), beta = num(&a, "smooth_beta", 1.0);
        lx_dtype mu = dtype_arg(&a, "mu_dtype", OPTAX_DTYPE_DEFAULT);
        const node *mode = arg(&a, "mode");
        optax_lion_mode m = OPTAX_LION_HARD;
        if (mode && mode->k == N_STR && !strcmp(mode->s, "smooth")) m = OPTAX_LION_SMOOTH;
        else if (mode && mode->k == N_STR && !strcmp(mode->s, "refined")) m = OPTAX_LION_REFINED;
        else if (mode && !(mode->k == N_STR && !strcmp(mode->s, "hard")))
            m = (optax_lion_mode)99; /* the constructor's error names it */
        if (a.st == LX_OK) r = optax_scale_by_lion(b1, b2, mu, m, beta);
    } else if (!strcmp(f, "scale_by_factored_rms")) {
        bool fa = boolean(&a, "factored", true);
        double d = num(&a, "decay_rate", 0.8), e = num(&a, "epsilon", 1e-30);
        int64_t off = int_arg(&a, "step_offset", 0), md = int_arg(&a, "min_dim_size_to_factor", 128);
        if (a.st == LX_OK) r = optax_scale_by_factored_rms(fa, d, off, md, e);
    } else if (!strcmp(f, "scale_by_param_block_rms")) {
        double m = num(&a, "min_scale", 1e-3);
        if (a.st == LX_OK) r = optax_scale_by_param_block_rms(m);
    } else {
        a.st = lx_fail(LX_ERR_TYPE, "'%s' is a schedule, not a transformation", f);
    }
    sos_free(lr);
    return a.st == LX_OK ? r : NULL;
}

static node *parse_all(const char *src) {
    if (!src) {
        lx_fail(LX_ERR_INVALID_ARGUMENT, "optax expression is NULL");
        return NULL;
    }
    parser ps = {src, src, false, 0};
    node *n = parse_value(&ps);
    skip(&ps);
    if (n && *ps.p) {
        node_free(n);
        perr(&ps, "trailing characters");
        return NULL;
    }
    return n;
}

optax_tx *optax_from_string(const char *src) {
    node *n = parse_all(src);
    if (!n) return NULL;
    optax_tx *r = build_tx(n);
    node_free(n);
    return r;
}

optax_schedule *optax_schedule_from_string(const char *src) {
    node *n = parse_all(src);
    if (!n) return NULL;
    optax_schedule *r = build_schedule(n);
    node_free(n);
    return r;
}
