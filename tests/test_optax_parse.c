/* optax expressions (src/train/optax_parse.c) bound to optax's signatures as Python binds them:
 *  - plain calls with CPython's TypeError texts and order (Python/ceval.c): unexpected keyword,
 *    multiple values, "takes from 1 to 4 positional arguments but 5 were given" (keyword-only
 *    arguments counted), "missing 2 required positional arguments: 'a' and 'b'" (', and' for 3);
 *  - inject_hyperparams(alias)(...) as optax's wrapper binds it (inspect.Signature.bind over the
 *    alias's signature: positionals allowed, inspect's texts), numbers becoming hyperparameters and
 *    bools / dtypes / None staying static arguments of the inner optimizer (spec/training.md §A.5);
 *  - warmup_constant_schedule (§A.6): linear_schedule(init, peak, warmup). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/optax.h"
#include "lx_test.h"

static void expect_tx_error(const char *src, lx_status st, const char *msg) {
    lx_clear_error();
    optax_tx *t = optax_from_string(src);
    LX_TEST_REPORT_(!t && lx_last_status() == st && !strcmp(lx_last_error(), msg), "%s: got %s \"%s\", want %s \"%s\"",
                    src, lx_status_name(lx_last_status()), lx_last_error(), lx_status_name(st), msg);
    optax_tx_release(t);
}

static void expect_sched_error(const char *src, const char *msg) {
    lx_clear_error();
    optax_schedule *s = optax_schedule_from_string(src);
    LX_TEST_REPORT_(!s && lx_last_status() == LX_ERR_TYPE && !strcmp(lx_last_error(), msg), "%s: got \"%s\", want \"%s\"",
                    src, lx_last_error(), msg);
    optax_schedule_release(s);
}

static void test_cpython_texts(void) {
    expect_tx_error("sgd(0.1, 0.9, True, None, 5)", LX_ERR_TYPE, "sgd() takes from 1 to 4 positional arguments but 5 were given");
    expect_tx_error("adam(1, 2, 3, 4, 5, 6, 7)", LX_ERR_TYPE, "adam() takes from 1 to 6 positional arguments but 7 were given");
    /* keyword-only arguments given are counted, as CPython does */
    expect_tx_error("adam(1, 2, 3, 4, 5, 6, 7, nesterov=True)", LX_ERR_TYPE,
                    "adam() takes from 1 to 6 positional arguments but 7 positional arguments (and 1 keyword-only argument) "
                    "were given");
    expect_tx_error("scale(1, 2)", LX_ERR_TYPE, "scale() takes 1 positional argument but 2 were given");
    expect_tx_error("identity(1)", LX_ERR_TYPE, "identity() takes 0 positional arguments but 1 was given");
    expect_tx_error("scale_by_adam(1, 2, 3, 4, 5, 6)", LX_ERR_TYPE,
                    "scale_by_adam() takes from 0 to 5 positional arguments but 6 were given");
    expect_tx_error("adam()", LX_ERR_TYPE, "adam() missing 1 required positional argument: 'learning_rate'");
    expect_tx_error("adam(1e-3, lr=2)", LX_ERR_TYPE, "adam() got an unexpected keyword argument 'lr'");
    expect_tx_error("adam(1e-3, learning_rate=2)", LX_ERR_TYPE, "adam() got multiple values for argument 'learning_rate'");
    /* keywords are looked at before the positional count, in the order written */
    expect_tx_error("sgd(1, 2, 3, 4, 5, momentum=1)", LX_ERR_TYPE, "sgd() got multiple values for argument 'momentum'");
    expect_tx_error("sgd(1, 2, 3, 4, 5, zz=1)", LX_ERR_TYPE, "sgd() got an unexpected keyword argument 'zz'");
    expect_tx_error("adam(b1=0.5, b1=0.6)", LX_ERR_FORMAT, "optax expression: keyword argument repeated: b1");

    expect_sched_error("linear_schedule(1.0)",
                       "linear_schedule() missing 2 required positional arguments: 'end_value' and 'transition_steps'");
    expect_sched_error("linear_schedule()", "linear_schedule() missing 3 required positional arguments: 'init_value', "
                                            "'end_value', and 'transition_steps'");
    expect_sched_error("polynomial_schedule(end_value=0.0)",
                       "polynomial_schedule() missing 3 required positional arguments: 'init_value', 'power', and "
                       "'transition_steps'");
    expect_sched_error("warmup_cosine_decay_schedule(0.0, 1.0, decay_steps=10)",
                       "warmup_cosine_decay_schedule() missing 1 required positional argument: 'warmup_steps'");
    expect_sched_error("cosine_decay_schedule(1.0, 10, 0.0, 1.0, 5)",
                       "cosine_decay_schedule() takes from 2 to 4 positional arguments but 5 were given");
    expect_sched_error("constant_schedule(1.0, 2.0)", "constant_schedule() takes 1 positional argument but 2 were given");
    expect_sched_error("join_schedules()",
                       "join_schedules() missing 2 required positional arguments: 'schedules' and 'boundaries'");
    expect_sched_error("warmup_constant_schedule(0.0, 1.0)",
                       "warmup_constant_schedule() missing 1 required positional argument: 'warmup_steps'");
    expect_sched_error("warmup_constant_schedule(0.0, 1.0, 5, 6)",
                       "warmup_constant_schedule() takes 3 positional arguments but 4 were given");
    expect_sched_error("exponential_decay(1.0, 10, 0.5, transition_bgin=2)",
                       "exponential_decay() got an unexpected keyword argument 'transition_bgin'");
}

static void test_warmup_constant(void) {
    /* linear_schedule(0.1, 1.0, 4): 0.1 + (1.0 - 0.1) * c / 4 up to 4, then 1.0 */
    optax_schedule *a = optax_schedule_from_string("warmup_constant_schedule(init_value=0.1, peak_value=1.0, warmup_steps=4)");
    optax_schedule *b = optax_warmup_constant_schedule(0.1, 1.0, 4);
    optax_schedule *l = optax_linear_schedule(0.1, 1.0, 4, 0);
    CHECK(a && b && l);
    for (int c = -2; a && b && l && c <= 12; c++) {
        CHECK(optax_schedule_eval(a, c) == optax_schedule_eval(l, c));
        CHECK(optax_schedule_eval(b, c) == optax_schedule_eval(l, c));
    }
    if (a) CHECK(optax_schedule_eval(a, 4) == 1.0f && optax_schedule_eval(a, 100) == 1.0f);
    optax_schedule_release(a);
    a = optax_schedule_from_string("optax.warmup_constant_schedule(0.0, 1.0, 4)");
    CHECK(a && optax_schedule_eval(a, 0) == 0.0f && optax_schedule_eval(a, 2) == 0.5f && optax_schedule_eval(a, 3) == 0.75f);
    CHECK(a && optax_schedule_eval(a, -3) == 0.0f && optax_schedule_eval(a, 9) == 1.0f);
    optax_schedule_release(a);
    optax_schedule_release(b);
    optax_schedule_release(l);
    /* warmup_steps <= 0: the constant init (linear_schedule's rule) */
    a = optax_schedule_from_string("warmup_constant_schedule(0.5, 2.0, 0)");
    CHECK(a && optax_schedule_eval(a, 0) == 0.5f && optax_schedule_eval(a, 10) == 0.5f);
    optax_schedule_release(a);
    /* as an optimizer's learning rate */
    optax_tx *t = optax_from_string("sgd(warmup_constant_schedule(0.0, 0.1, 2))");
    CHECK(t != NULL);
    optax_tx_release(t);
}

/* params {"x": [1, -2, 3]}, gradients fixed per step */
static lx_tree *tree_x(const float *v) {
    lx_tree *t = lx_tree_new();
    lx_array *a = lx_array_from_f32(1, (int64_t[]){3}, v);
    lx_tree_set(t, "x", lx_array_v(a));
    lx_release(a);
    return t;
}

/* Runs 4 steps; params after each into out[4][3]. */
static bool run4(optax_tx *tx, float out[4][3], lx_tree **state_out) {
    static const float G[4][3] = {{0.5f, -1.5f, 2.0f}, {0.25f, -1.0f, 4.0f}, {-0.75f, 0.125f, 1.0f}, {0.0f, 3.0f, -0.5f}};
    if (!tx) return false;
    lx_tree *params = tree_x((const float[]){1, -2, 3}), *state = NULL;
    bool ok = optax_init(tx, params, &state) == LX_OK;
    for (int k = 0; ok && k < 4; k++) {
        lx_tree *g = tree_x(G[k]);
        ok = optax_step(tx, g, &params, &state) == LX_OK;
        lx_tree_release(g);
        const lx_value *x = ok ? lx_tree_get(params, "x") : NULL;
        for (int i = 0; x && i < 3; i++) out[k][i] = lx_f32(x->u.array)[i];
    }
    lx_tree_release(params);
    if (state_out && ok) *state_out = state;
    else lx_tree_release(state);
    optax_tx_release(tx);
    return ok;
}

static bool same_runs(float a[4][3], float b[4][3], float tol) {
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 3; i++)
            if (!(fabsf(a[k][i] - b[k][i]) <= tol * fabsf(b[k][i]) + 1e-30f)) return false;
    return true;
}

static float hparam(const lx_tree *state, const char *name) {
    char path[64];
    snprintf(path, sizeof path, "hyperparams/%s", name);
    const lx_value *v = lx_tree_find(state, path);
    return v && v->kind == LX_V_ARRAY ? lx_f32(v->u.array)[0] : NAN;
}

static void test_inject_static_and_positional(void) {
    float inj[4][3], ref[4][3], plain[4][3];
    lx_tree *state = NULL;
    /* nesterov=True stays static: the run is sgd's Nesterov momentum, hyperparams hold lr and momentum only */
    CHECK(run4(optax_from_string("inject_hyperparams(sgd)(learning_rate=0.1, momentum=0.9, nesterov=True)"), inj, &state));
    CHECK(run4(optax_from_string("sgd(0.1, momentum=0.9, nesterov=True)"), ref, NULL));
    CHECK(run4(optax_from_string("sgd(0.1, momentum=0.9)"), plain, NULL));
    CHECK(same_runs(inj, ref, 1e-6f));
    CHECK(!same_runs(inj, plain, 1e-3f));
    if (state) {
        const lx_value *h = lx_tree_get(state, "hyperparams");
        CHECK(h && h->kind == LX_V_TREE && lx_tree_len(h->u.tree) == 2);
        CHECK(hparam(state, "learning_rate") == 0.1f && hparam(state, "momentum") == 0.9f);
        CHECK(lx_tree_find(state, "hyperparams/nesterov") == NULL);
    }
    lx_tree_release(state);
    state = NULL;
    /* positionals bound by adam's signature: (learning_rate, b1) */
    CHECK(run4(optax_from_string("inject_hyperparams(adam)(0.1, 0.8)"), inj, &state));
    CHECK(run4(optax_from_string("inject_hyperparams(adam)(learning_rate=0.1, b1=0.8)"), ref, NULL));
    CHECK(same_runs(inj, ref, 0.0f));
    if (state) CHECK(hparam(state, "learning_rate") == 0.1f && hparam(state, "b1") == 0.8f && hparam(state, "b2") == 0.999f);
    lx_tree_release(state);
    state = NULL;
    /* a positional schedule and a static dtype: mu in bfloat16 */
    CHECK(run4(optax_from_string("inject_hyperparams(adam)(linear_schedule(0.1, 0.0, 4), mu_dtype='bfloat16')"), inj, &state));
    if (state) {
        const lx_value *mu = lx_tree_find(state, "inner_state/0/mu/x");
        CHECK(mu && mu->kind == LX_V_ARRAY && mu->u.array->dtype == LX_BF16);
        CHECK(lx_tree_find(state, "hyperparams_states/learning_rate/count") != NULL);
    }
    lx_tree_release(state);
    state = NULL;
    /* rmsprop's bools are static too; momentum=None is no momentum */
    CHECK(run4(optax_from_string("inject_hyperparams(rmsprop)(0.01, centered=True, momentum=None)"), inj, &state));
    CHECK(run4(optax_from_string("rmsprop(0.01, centered=True)"), ref, NULL));
    CHECK(same_runs(inj, ref, 1e-5f));
    if (state) CHECK(lx_tree_find(state, "inner_state/0/mu") != NULL && lx_tree_find(state, "hyperparams/momentum") == NULL);
    lx_tree_release(state);

    /* inspect.Signature.bind's texts */
    expect_tx_error("inject_hyperparams(sgd)(0.1, 0.9, True, None, 5)", LX_ERR_TYPE, "too many positional arguments");
    expect_tx_error("inject_hyperparams(adam)(0.1, learning_rate=0.2)", LX_ERR_TYPE, "multiple values for argument 'learning_rate'");
    expect_tx_error("inject_hyperparams(adam)(b1=0.5)", LX_ERR_TYPE, "missing a required argument: 'learning_rate'");
    expect_tx_error("inject_hyperparams(adam)(0.1, gamma=2)", LX_ERR_TYPE, "got an unexpected keyword argument 'gamma'");
    expect_tx_error("inject_hyperparams(sgd)(0.1, nesterov=2)", LX_ERR_TYPE, "inject_hyperparams(sgd): 'nesterov' must be True or False");
    expect_tx_error("inject_hyperparams(adam)(0.1, b1='x')", LX_ERR_TYPE,
                    "inject_hyperparams(adam): 'b1' must be a number or a schedule");
}

/* nadam / nadamw are functools.partial(adam / adamw, nesterov=True): the keyword-only nesterov may
 * be given (False is then adam), directly and through inject_hyperparams; an optimizer the parser
 * knows but inject_hyperparams cannot wrap (adafactor, a schedule) is NOT_FOUND before any binding. */
static void test_nadam_nesterov_and_inject_names(void) {
    float a[4][3], b[4][3], n[4][3];
    CHECK(run4(optax_from_string("nadam(0.05, nesterov=False)"), a, NULL));
    CHECK(run4(optax_from_string("adam(0.05)"), b, NULL));
    CHECK(run4(optax_from_string("nadam(0.05)"), n, NULL));
    CHECK(same_runs(a, b, 0.0f));
    CHECK(!same_runs(n, b, 1e-4f));
    /* injected hyperparameters are float32 values: equal to float32 rounding */
    CHECK(run4(optax_from_string("inject_hyperparams(nadam)(0.05)"), a, NULL));
    CHECK(same_runs(a, n, 1e-6f) && !same_runs(a, b, 1e-4f));
    CHECK(run4(optax_from_string("inject_hyperparams(nadam)(0.05, nesterov=False)"), a, NULL));
    CHECK(same_runs(a, b, 1e-6f) && !same_runs(a, n, 1e-4f));
    CHECK(run4(optax_from_string("nadamw(0.05, weight_decay=0.1, nesterov=False)"), a, NULL));
    CHECK(run4(optax_from_string("adamw(0.05, weight_decay=0.1)"), b, NULL));
    CHECK(same_runs(a, b, 0.0f));
    CHECK(run4(optax_nadam(OPTAX_CONST(0.05), NULL), a, NULL)); /* the C API's nadam is still Nesterov */
    CHECK(same_runs(a, n, 0.0f));
    const char *unknown[] = {"inject_hyperparams(adafactor)(0.1, factored=True)", "inject_hyperparams(linear_schedule)(1.0)"};
    for (int i = 0; i < 2; i++) {
        optax_tx *t = NULL;
        CHECK_NULL_FAILS(t = optax_from_string(unknown[i]), LX_ERR_NOT_FOUND, "unknown optimizer");
        optax_tx_release(t);
    }
}

/* "chain(" x n, inner, ")" x n (malloc'ed). */
static char *nested(const char *open, int n, const char *inner, const char *close) {
    size_t lo = strlen(open), li = strlen(inner), lc = strlen(close), len = (lo + lc) * (size_t)n + li;
    char *s = malloc(len + 1), *p = s;
    for (int k = 0; s && k < n; k++) memcpy(p, open, lo), p += lo;
    if (s) memcpy(p, inner, li), p += li;
    for (int k = 0; s && k < n; k++) memcpy(p, close, lc), p += lc;
    if (s) *p = '\0';
    return s;
}

static void expect_format_error(const char *src, const char *needle) {
    lx_clear_error();
    optax_tx *t = optax_from_string(src);
    LX_TEST_REPORT_(!t && lx_last_status() == LX_ERR_FORMAT && strstr(lx_last_error(), needle) &&
                        strlen(lx_last_error()) < 200,
                    "%.40s...: got %s \"%.300s\", want FORMAT with \"%s\" in a short message", src,
                    lx_status_name(lx_last_status()), lx_last_error(), needle);
    optax_tx_release(t);
}

/* Python's digit separators (PEP 515): an underscore between two digits, anywhere in the
 * numeral, exponent included; anything else (doubled, trailing, next to '.', 'e') is an error, as
 * Python's "invalid decimal literal". Integers stay integers (transition_steps). */
static void test_digit_separators(void) {
    static const struct { const char *src; float want; } ok[] = {
        {"constant_schedule(1_000)", 1000.0f},       {"constant_schedule(1_000.5)", 1000.5f},
        {"constant_schedule(1_0e-1_0)", 1e-9f},      {"constant_schedule(-2_5)", -25.0f},
        {"constant_schedule(+1_0e+0_1)", 100.0f},    {"constant_schedule(0.000_5)", 0.0005f},
        {"constant_schedule(100_000_000)", 1e8f},    {"constant_schedule(3e-4)", 3e-4f},
    };
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        optax_schedule *sc = optax_schedule_from_string(ok[k].src);
        LX_TEST_REPORT_(sc && optax_schedule_eval(sc, 0) == ok[k].want, "%s: %s %.9g", ok[k].src,
                        sc ? "value" : lx_last_error(), sc ? (double)optax_schedule_eval(sc, 0) : 0.0);
        optax_schedule_release(sc);
    }
    optax_schedule *lin = optax_schedule_from_string("linear_schedule(1.0, 0.0, 1_000)");
    CHECK(lin && optax_schedule_eval(lin, 500) == 0.5f);
    optax_schedule_release(lin);
    optax_tx *a = optax_from_string("adam(1_000e-6)");
    CHECK(a != NULL && !strcmp(optax_tx_name(a), "chain"));
    optax_tx_release(a);
    expect_format_error("sgd(1__0)", "at offset 5");
    expect_format_error("sgd(1_)", "at offset 5");
    expect_format_error("sgd(1_.5)", "at offset 5");
    expect_format_error("sgd(1._5)", "at offset 6");
    expect_format_error("sgd(1e_5)", "at offset 5");
}

/* Nesting is bounded like the spec parser's (64 levels: the parser, its tree and the built
 * transformations recurse once a level): 62 chains around sgd(0.1) (64 levels with the call and
 * its number) build and step, one more is a FORMAT error naming the bound, and so are 12,000
 * chains (a stack overflow before), 100,000 parentheses and 100,000 calls of a call's result; the
 * message quotes about 60 characters around the offset, not the whole expression. Built through
 * the API, chain and masked refuse nesting deeper than 256 (init, update and release recurse). */
/* Step counts beyond int64 (found by fuzz_optax: the conversion was undefined behaviour) */
static void test_huge_step_counts(void) {
    const char *bad[][2] = {
        {"join_schedules([constant_schedule(0.0), linear_schedule(1.0, 0.0, 10)], [4444444444444444444444444444445])",
         "join_schedules(): boundaries must be an integer step count, got 4.44444e+30"},
        {"linear_schedule(1.0, 0.0, 1e30)", "linear_schedule(): transition_steps must be an integer step count, got 1e+30"},
        {"piecewise_constant_schedule(1.0, {1e300: 0.5})",
         "piecewise_constant_schedule(): boundaries_and_scales must be an integer step count, got 1e+300"},
        {"warmup_cosine_decay_schedule(0.0, 1.0, 10, -1e19)",
         "warmup_cosine_decay_schedule(): decay_steps must be an integer step count, got -1e+19"},
    };
    for (int i = 0; i < 4; i++) {
        optax_schedule *sc = NULL;
        CHECK_NULL_FAILS(sc = optax_schedule_from_string(bad[i][0]), LX_ERR_INVALID_ARGUMENT, bad[i][1]);
        optax_schedule_release(sc);
    }
    /* the largest boundary that converts still builds (2^62) */
    optax_schedule *ok = optax_schedule_from_string(
        "join_schedules([constant_schedule(0.5), constant_schedule(1.0)], [4611686018427387904])");
    CHECK(ok != NULL);
    if (ok) CHECK_NEAR(optax_schedule_eval(ok, 3), 0.5, 0);
    optax_schedule_release(ok);
}

static void test_nesting_bound(void) {
    char *ok = nested("chain(", 62, "sgd(0.1)", ")"), *deep = nested("chain(", 63, "sgd(0.1)", ")");
    optax_tx *t = optax_from_string(ok);
    CHECK(t != NULL);
    lx_tree *p = lx_tree_new(), *st = NULL, *g = lx_tree_new();
    float one = 1.0f, half = 0.5f;
    lx_array *pa = lx_array_from_f32(0, NULL, &one), *ga = lx_array_from_f32(0, NULL, &half);
    CHECK_EQ_INT(lx_tree_set(p, "w", lx_array_v(pa)), LX_OK);
    CHECK_EQ_INT(lx_tree_set(g, "w", lx_array_v(ga)), LX_OK);
    CHECK_EQ_INT(optax_init(t, p, &st), LX_OK);
    CHECK_EQ_INT(optax_step(t, g, &p, &st), LX_OK);
    const lx_value *w = lx_tree_get(p, "w");
    CHECK(w && lx_f32(w->u.array)[0] == 1.0f - 0.1f * 0.5f);
    optax_tx_release(t);
    expect_format_error(deep, "nested more than 64 deep at offset 382: ...");
    free(ok);
    free(deep);
    char *huge = nested("chain(", 12000, "sgd(0.1)", ")");
    expect_format_error(huge, "nested more than 64 deep");
    free(huge);
    huge = nested("(", 100000, "2", ")");
    char *adam = malloc(strlen(huge) + 6);
    snprintf(adam, strlen(huge) + 6, "adam%s", huge);
    expect_format_error(adam, "nested more than 64 deep");
    free(adam);
    free(huge);
    huge = nested("", 100000, "identity", "()");
    expect_format_error(huge, "nested more than 64 deep");
    free(huge);
    /* the API: 256 levels of chain build, 257 are refused (every layer released) */
    optax_tx *c = optax_identity();
    for (int k = 0; c && k < 256; k++) c = optax_chain(1, &c);
    CHECK(c != NULL);
    lx_tree_release(st);
    st = NULL;
    CHECK_EQ_INT(optax_init(c, p, &st), LX_OK);
    CHECK_EQ_INT(optax_step(c, g, &p, &st), LX_OK);
    lx_clear_error();
    optax_tx *c2 = optax_chain(1, &c);
    CHECK(c2 == NULL && lx_last_status() == LX_ERR_INVALID_ARGUMENT &&
          strstr(lx_last_error(), "chain: transformations nested more than 256 deep"));
    optax_tx *m = optax_identity();
    for (int k = 0; m && k < 256; k++) m = optax_masked(m, optax_mask_min_ndim(0));
    CHECK(m != NULL);
    lx_clear_error();
    CHECK(optax_masked(m, optax_mask_min_ndim(0)) == NULL && strstr(lx_last_error(), "masked: transformations nested more than 256 deep"));
    lx_release(pa);
    lx_release(ga);
    lx_tree_release(p);
    lx_tree_release(g);
    lx_tree_release(st);
}

int main(void) {
    RUN(test_nadam_nesterov_and_inject_names);
    RUN(test_cpython_texts);
    RUN(test_warmup_constant);
    RUN(test_inject_static_and_positional);
    RUN(test_nesting_bound);
    RUN(test_digit_separators);
    RUN(test_huge_step_counts);
    return lx_test_finish();
}
