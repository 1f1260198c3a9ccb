/* optax in C against optax's published numbers (spec/training.md §A.7: the alias docstring runs
 * and the schedule test vectors), against double-precision references of optax's formulas over
 * several steps, the optimizer-state layout, and every error path. */
#include "linnx/optax.h"
#include "lx_test.h"
#include "fixtures/optax_fixtures.h"

/* ------------------------------------------------------------------ helpers */

static lx_tree *tree1(const char *key, int n, const float *v) {
    lx_tree *t = lx_tree_new();
    int64_t sh[1] = {n};
    lx_array *a = lx_array_from_f32(1, sh, v);
    lx_tree_set(t, key, lx_array_v(a));
    lx_release(a);
    return t;
}

static lx_array *leaf(const lx_tree *t, const char *path) {
    const lx_value *v = lx_tree_find(t, path);
    return v && v->kind == LX_V_ARRAY ? v->u.array : NULL;
}

/* f(x) = sum(x**2) in float32, as the docstrings print it. */
static float sumsq_f32(const lx_array *a) {
    float s = 0.0f;
    for (int64_t i = 0; i < a->size; i++) {
        float x2 = lx_f32(a)[i] * lx_f32(a)[i];
        s = s + x2;
    }
    return s;
}

/* The alias docstring loop: params [1, 2, 3], grad 2x, five steps, '{:.2E}' of f after each. */
static void docstring_run(optax_tx *tx, const char *const want[5], const float *final_params, uint32_t max_ulp) {
    CHECK(tx != NULL);
    if (!tx) return;
    lx_tree *params = tree1("x", 3, (const float[]){1.0f, 2.0f, 3.0f});
    lx_tree *state = NULL;
    CHECK(optax_init(tx, params, &state) == LX_OK);
    for (int step = 0; step < 5 && state; step++) {
        const lx_array *p = leaf(params, "x");
        float g[3];
        for (int i = 0; i < 3; i++) g[i] = 2.0f * lx_f32(p)[i];
        lx_tree *grads = tree1("x", 3, g);
        CHECK(optax_step(tx, grads, &params, &state) == LX_OK);
        lx_tree_release(grads);
        char buf[32];
        snprintf(buf, sizeof buf, "%.2E", (double)sumsq_f32(leaf(params, "x")));
        LX_TEST_REPORT_(!strcmp(buf, want[step]), "%s step %d prints %s, optax prints %s", optax_tx_name(tx), step,
                        buf, want[step]);
    }
    if (final_params) {
        const lx_array *p = leaf(params, "x");
        for (int i = 0; i < 3; i++)
            LX_TEST_REPORT_(lx_ulp_distance(lx_f32(p)[i], final_params[i]) <= max_ulp,
                            "final param %d: %.9g vs the float32 emulation's %.9g", i, lx_f32(p)[i],
                            final_params[i]);
    }
    lx_tree_release(params);
    lx_tree_release(state);
    optax_tx_release(tx);
}

/* ------------------------------------------------------------------ §A.7 published values */

static void test_docstring_adam(void) {
    static const char *const w[5] = {"1.40E+01", "1.39E+01", "1.39E+01", "1.39E+01", "1.38E+01"};
    docstring_run(optax_adam(OPTAX_CONST(0.003), NULL), w, (const float[]){0.9850041f, 1.9850019f, 2.9850016f}, 0);
}
static void test_docstring_adamw(void) {
    static const char *const w[5] = {"1.40E+01", "1.39E+01", "1.39E+01", "1.39E+01", "1.38E+01"};
    docstring_run(optax_adamw(OPTAX_CONST(0.003), NULL), w, (const float[]){0.98500264f, 1.984999f, 2.9849968f}, 0);
}
static void test_docstring_nadam(void) {
    static const char *const w[5] = {"1.39E+01", "1.39E+01", "1.39E+01", "1.38E+01", "1.38E+01"};
    docstring_run(optax_nadam(OPTAX_CONST(0.003), NULL), w, (const float[]){0.9826614f, 1.9826509f, 2.9826474f}, 0);
    docstring_run(optax_nadamw(OPTAX_CONST(0.003), NULL), w, NULL, 0);
}
static void test_docstring_sgd(void) {
    static const char *const w[5] = {"1.38E+01", "1.37E+01", "1.35E+01", "1.33E+01", "1.32E+01"};
    docstring_run(optax_sgd(OPTAX_CONST(0.003), false, 0.0, false), w,
                  (const float[]){0.9703579f, 1.9407158f, 2.9110737f}, 0);
}
static void test_docstring_lion(void) {
    static const char *const w[5] = {"1.40E+01", "1.39E+01", "1.39E+01", "1.39E+01", "1.38E+01"};
    docstring_run(optax_lion(OPTAX_CONST(0.003), NULL), w, (const float[]){0.98498505f, 1.9849701f, 2.9849546f}, 0);
}
static void test_docstring_adafactor(void) {
    static const char *const w[5] = {"1.39E+01", "1.38E+01", "1.38E+01", "1.37E+01", "1.36E+01"};
    docstring_run(optax_adafactor(true, OPTAX_CONST(0.003), NULL), w, NULL, 0);
}

/* rmsprop's docstring run (optax alias.py, the same setup as the others): scale_by_rms with
 * eps inside the sqrt, then -lr. Final params from a numpy float32 emulation of those formulas. */
static void test_docstring_rmsprop(void) {
    static const char *const w[5] = {"1.39E+01", "1.38E+01", "1.37E+01", "1.37E+01", "1.36E+01"};
    docstring_run(optax_rmsprop(OPTAX_CONST(0.003), NULL), w, (const float[]){0.96823591f, 1.96814954f, 2.96812081f}, 2);
    docstring_run(optax_from_string("rmsprop(0.003)"), w, NULL, 0);
}

/* adamw's and lion's weight_decay is optax's ScalarOrSchedule: a schedule is evaluated at
 * add_decayed_weights' own count (WeightDecaySchedule {"count"} in the chain's second state).
 * The docstring setup; final params from a numpy float32 emulation of optax's formulas:
 * adamw(0.003, weight_decay=exponential_decay(0.1, 1, 0.5)) decays by 0.1, 0.05, 0.025, ...;
 * lion(0.003, weight_decay=linear_schedule(0.01, 0.0, 4)) by 0.01, 0.0075, ..., 0. */
static void test_weight_decay_schedule(void) {
    static const char *const w[5] = {"1.40E+01", "1.39E+01", "1.39E+01", "1.38E+01", "1.38E+01"};
    static const float adamw_final[3] = {0.98442471f, 1.98384154f, 2.98325968f};
    optax_adam_opts o = OPTAX_ADAMW_DEFAULTS;
    o.weight_decay_schedule = optax_exponential_decay(0.1, 1, 0.5, 0, false, false, 0.0);
    docstring_run(optax_adamw(OPTAX_CONST(0.003), &o), w, adamw_final, 0);
    docstring_run(optax_from_string("adamw(0.003, weight_decay=exponential_decay(0.1, 1, 0.5))"), w, adamw_final, 0);
    static const char *const wl[5] = {"1.40E+01", "1.39E+01", "1.39E+01", "1.39E+01", "1.38E+01"};
    static const float lion_final[3] = {0.98492521f, 1.98485017f, 2.9847753f};
    optax_lion_opts l = OPTAX_LION_DEFAULTS;
    l.weight_decay_schedule = optax_linear_schedule(0.01, 0.0, 4, 0);
    docstring_run(optax_lion(OPTAX_CONST(0.003), &l), wl, lion_final, 0);
    docstring_run(optax_from_string("lion(0.003, weight_decay=linear_schedule(0.01, 0.0, 4))"), wl, lion_final, 0);
    /* the state: add_decayed_weights keeps its count */
    optax_tx *tx = optax_from_string("adamw(0.1, weight_decay=constant_schedule(0.5))");
    lx_tree *params = tree1("x", 3, (const float[]){1.0f, 2.0f, 3.0f}), *state = NULL;
    CHECK(tx && optax_init(tx, params, &state) == LX_OK);
    const lx_value *c = state ? lx_tree_find(state, "1/count") : NULL;
    CHECK(c && c->kind == LX_V_ARRAY && c->u.array->dtype == LX_I32 && c->u.array->ndim == 0);
    lx_tree_release(params);
    lx_tree_release(state);
    optax_tx_release(tx);
    /* adam and nadam have no weight decay: they release a schedule given to them */
    optax_adam_opts a = OPTAX_ADAM_DEFAULTS;
    a.weight_decay_schedule = optax_constant_schedule(1.0);
    static const char *const wa[5] = {"1.40E+01", "1.39E+01", "1.39E+01", "1.39E+01", "1.38E+01"};
    docstring_run(optax_adam(OPTAX_CONST(0.003), &a), wa, (const float[]){0.9850041f, 1.9850019f, 2.9850016f}, 0);
    /* a bad schedule fails as the schedule does, and nothing leaks on the way */
    lx_clear_error();
    CHECK_NULL_FAILS(optax_from_string("adamw(0.1, weight_decay=cosine_decay_schedule(1.0, 0))"), LX_ERR_INVALID_ARGUMENT,
                     "requires positive decay_steps");
    CHECK_NULL_FAILS(optax_from_string("adamw(0.1, weight_decay=linear_schedule(1.0, 0.0, 4), mask=None, bogus=1)"),
                     LX_ERR_TYPE, "unexpected keyword argument 'bogus'");
    CHECK_NULL_FAILS(optax_from_string("lion(0.1, weight_decay='x')"), LX_ERR_TYPE,
                     "'weight_decay' must be a number or a schedule");
}

/* Adam's first step moves every param by lr: mu_hat / sqrt(nu_hat) is g / |g| up to float32
 * rounding. spec/training.md A.7 calls it exact; in float32 it is not quite: the bias correction
 * 1 - f32(0.9) is 0.100000024, so mu_hat = 1.99999952 for g = 2 and the first param lands one
 * ulp above f32(0.997). The others land on f32(k - 0.003). */
static void test_adam_first_step(void) {
    optax_tx *tx = optax_adam(OPTAX_CONST(0.003), NULL);
    lx_tree *params = tree1("x", 3, (const float[]){1, 2, 3}), *state = NULL, *grads = tree1("x", 3, (const float[]){2, 4, 6});
    CHECK(optax_init(tx, params, &state) == LX_OK);
    CHECK(optax_step(tx, grads, &params, &state) == LX_OK);
    const lx_array *p = leaf(params, "x");
    CHECK(lx_ulp_distance(lx_f32(p)[0], 0.997f) == 1);
    CHECK(lx_f32(p)[1] == 1.997f && lx_f32(p)[2] == 2.997f);
    lx_tree_release(params);
    lx_tree_release(state);
    lx_tree_release(grads);
    optax_tx_release(tx);
}

static void test_schedule_cosine(void) {
    optax_schedule *s = optax_cosine_decay_schedule(0.1, 100, 0.0, 2);
    const int64_t c[5] = {0, 10, 50, 75, 100};
    const double want[5] = {0.1, 0.09516553580760956, 0.025, 0.0021446612663567066, 0.0};
    for (int i = 0; i < 5; i++) CHECK_NEAR(optax_schedule_eval(s, c[i]), want[i], 1e-6 * fabs(want[i]) + 1e-12);
    optax_schedule_release(s);
    s = optax_cosine_decay_schedule(1000.0, 10000000000LL, 0.0, 1.0);
    char buf[32];
    snprintf(buf, sizeof buf, "%.8g", (double)optax_schedule_eval(s, 1000000000));
    CHECK_STR(buf, "975.52826");
    optax_schedule_release(s);
    /* cosine_decay_schedule(0.1, 10): 0.1 * (0.5 + 0.5 cos(pi k / 10)); alpha 0.1: 0.9 m + 0.1 */
    s = optax_cosine_decay_schedule(0.1, 10, 0.0, 1.0);
    optax_schedule *sa = optax_cosine_decay_schedule(0.1, 10, 0.1, 1.0);
    for (int k = 0; k <= 12; k++) {
        double m = 0.5 + 0.5 * cos(3.14159265358979323846 * (k > 10 ? 10 : k) / 10.0);
        CHECK_NEAR(optax_schedule_eval(s, k), 0.1 * m, 1e-7);
        CHECK_NEAR(optax_schedule_eval(sa, k), 0.1 * (0.9 * m + 0.1), 1e-7);
    }
    optax_schedule_release(s);
    optax_schedule_release(sa);
    lx_clear_error();
    CHECK_NULL_FAILS(optax_cosine_decay_schedule(0.1, 0, 0.0, 1.0), LX_ERR_INVALID_ARGUMENT,
                     "requires positive decay_steps");
}

static void test_schedule_warmup_cosine(void) {
    optax_schedule *s = optax_warmup_cosine_decay_schedule(0.2, 1.21, 50, 100, -3.0, 2);
    const int64_t c[5] = {0, 10, 50, 75, 100};
    const float want[5] = {0.20000004768371582f, 0.4020000100135803f, 1.2100000381469727f, -1.947500228881836f,
                           -3.000000238418579f};
    for (int i = 0; i < 5; i++) {
        float v = optax_schedule_eval(s, c[i]);
        LX_TEST_REPORT_(lx_ulp_distance(v, want[i]) <= 1, "warmup_cosine(%lld) = %.9g, optax %.9g", (long long)c[i],
                        v, want[i]);
    }
    /* the linear piece is bit-exact (no fused multiply-add: an FMA gives 0.40200004) */
    CHECK(optax_schedule_eval(s, 10) == 0.4020000100135803f);
    CHECK(optax_schedule_eval(s, 0) == 0.20000004768371582f);
    optax_schedule_release(s);
    s = optax_warmup_cosine_decay_schedule(0.2, 0.0, 50, 100, -3.0, 2);
    const float want0[5] = {0.2f, 0.16f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < 5; i++) CHECK_NEAR(optax_schedule_eval(s, c[i]), want0[i], 1e-7);
    optax_schedule_release(s);
    lx_clear_error();
    CHECK_NULL_FAILS(optax_warmup_cosine_decay_schedule(0.0, 1.0, 100, 100, 0.0, 1.0), LX_ERR_INVALID_ARGUMENT,
                     "warmup_cosine_decay_schedule"); /* decay == warmup */
}

static void test_schedule_polynomial(void) {
    optax_schedule *s = optax_polynomial_schedule(1.0, 0.01, 2, 100, 5);
    const int64_t c[6] = {0, 5, 6, 104, 105, 110};
    const char *const want[6] = {"1.0000", "1.0000", "0.9803", "0.0101", "0.0100", "0.0100"};
    for (int i = 0; i < 6; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.4f", (double)optax_schedule_eval(s, c[i]));
        LX_TEST_REPORT_(!strcmp(buf, want[i]), "polynomial(%lld) prints %s, optax %s", (long long)c[i], buf, want[i]);
    }
    optax_schedule_release(s);
    /* linear: init + (end - init) * c / steps, clipped */
    s = optax_linear_schedule(1.0, 0.0, 10, 0);
    CHECK(optax_schedule_eval(s, 0) == 1.0f && optax_schedule_eval(s, 10) == 0.0f && optax_schedule_eval(s, 20) == 0.0f);
    CHECK_NEAR(optax_schedule_eval(s, 3), 0.7, 1e-7);
    optax_schedule_release(s);
    s = optax_polynomial_schedule(2.0, 1.0, 1, 0, 0); /* steps <= 0: constant init */
    CHECK(optax_schedule_eval(s, 5) == 2.0f);
    optax_schedule_release(s);
}

static void test_schedule_exponential_join_piecewise(void) {
    optax_schedule *s = optax_exponential_decay(1.0, 10, 0.5, 0, false, false, 0);
    for (int k = 0; k <= 30; k += 5) CHECK_NEAR(optax_schedule_eval(s, k), pow(0.5, k / 10.0), 1e-6);
    optax_schedule_release(s);
    s = optax_exponential_decay(1.0, 10, 0.5, 5, true, true, 0.3);
    CHECK(optax_schedule_eval(s, 0) == 1.0f && optax_schedule_eval(s, 5) == 1.0f);
    CHECK(optax_schedule_eval(s, 14) == 1.0f && optax_schedule_eval(s, 15) == 0.5f);
    CHECK(optax_schedule_eval(s, 100) == 0.3f); /* clipped at end_value (rate < 1: max) */
    optax_schedule_release(s);
    /* join: the second schedule sees the step relative to its boundary */
    optax_schedule *parts[2] = {optax_constant_schedule(5.0), optax_linear_schedule(0.0, 10.0, 10, 0)};
    s = optax_join_schedules(2, parts, (const int64_t[]){3});
    CHECK(optax_schedule_eval(s, 2) == 5.0f && optax_schedule_eval(s, 3) == 0.0f);
    CHECK(optax_schedule_eval(s, 8) == 5.0f && optax_schedule_eval(s, 13) == 10.0f);
    optax_schedule_release(s);
    /* piecewise_constant docstring: {100: 0.1, 200: 0.01} from 1.0 */
    s = optax_piecewise_constant_schedule(1.0, 2, (const int64_t[]){200, 100}, (const double[]){0.01, 0.1});
    CHECK(optax_schedule_eval(s, 50) == 1.0f);
    CHECK(optax_schedule_eval(s, 150) == 0.1f);
    CHECK(optax_schedule_eval(s, 250) == 0.1f * 0.01f);
    CHECK(optax_schedule_eval(s, 100) == 0.1f); /* at the boundary the scale applies */
    optax_schedule_release(s);
    lx_clear_error();
    CHECK_NULL_FAILS(optax_piecewise_constant_schedule(1.0, 1, (const int64_t[]){10}, (const double[]){-1.0}), LX_ERR_INVALID_ARGUMENT,
                     "expects non-negative scale factors");
}

/* adafactor(learning_rate=None) is adafactor(): None is the signature's default (no lr step), as
 * momentum=None and weight_decay_rate=None are; the same chain and the same steps. */
static void test_adafactor_lr_none(void) {
    optax_tx *a = optax_from_string("adafactor(learning_rate=None)"), *b = optax_adafactor(false, OPTAX_CONST(0), NULL);
    CHECK(a != NULL && b != NULL);
    if (!a || !b) return;
    lx_tree *pa = tree1("x", 3, (const float[]){1.0f, 2.0f, 3.0f}), *pb = tree1("x", 3, (const float[]){1.0f, 2.0f, 3.0f});
    lx_tree *sa = NULL, *sb = NULL;
    CHECK(optax_init(a, pa, &sa) == LX_OK && optax_init(b, pb, &sb) == LX_OK);
    for (int step = 0; step < 3; step++) {
        lx_tree *g = tree1("x", 3, (const float[]){0.5f, -1.0f, 2.0f + (float)step});
        CHECK(optax_step(a, g, &pa, &sa) == LX_OK && optax_step(b, g, &pb, &sb) == LX_OK);
        lx_tree_release(g);
    }
    const float *xa = lx_f32(leaf(pa, "x")), *xb = lx_f32(leaf(pb, "x"));
    CHECK(memcmp(xa, xb, 3 * sizeof(float)) == 0 && xa[0] != 1.0f);
    CHECK(lx_tree_find(sa, "3") != NULL && lx_tree_find(sa, "4") == NULL); /* 4 parts: no lr step */
    lx_tree_release(pa);
    lx_tree_release(pb);
    lx_tree_release(sa);
    lx_tree_release(sb);
    optax_tx_release(a);
    optax_tx_release(b);
}

/* optax falls back instead of refusing (logging.info, optax/schedules/_schedule.py): a negative
 * transition_begin is 0 for polynomial / linear schedules and exponential_decay, and a zero
 * decay_rate makes exponential_decay the constant init_value. */
static void test_schedule_fallbacks(void) {
    optax_schedule *s = optax_polynomial_schedule(1.0, 0.0, 1.0, 10, -5);
    CHECK(s && optax_schedule_eval(s, 0) == 1.0f && optax_schedule_eval(s, 5) == 0.5f && optax_schedule_eval(s, 10) == 0.0f);
    optax_schedule_release(s);
    s = optax_schedule_from_string("linear_schedule(1.0, 0.0, 10, transition_begin=-5)");
    CHECK(s && optax_schedule_eval(s, 0) == 1.0f && optax_schedule_eval(s, 5) == 0.5f);
    optax_schedule_release(s);
    s = optax_exponential_decay(1.0, 10, 0.5, -10, false, false, 0.0);
    CHECK(s && optax_schedule_eval(s, 0) == 1.0f && optax_schedule_eval(s, 10) == 0.5f);
    optax_schedule_release(s);
    s = optax_exponential_decay(2.0, 10, 0.0, 0, false, true, 5.0); /* end_value has no effect then */
    CHECK(s && optax_schedule_eval(s, 0) == 2.0f && optax_schedule_eval(s, 1000) == 2.0f);
    optax_schedule_release(s);
    s = optax_schedule_from_string("exponential_decay(0.3, 10, 0.0)");
    CHECK(s && optax_schedule_eval(s, 7) == 0.3f);
    optax_schedule_release(s);
}

/* join_schedules nests as chain does: 256 levels build and evaluate (evaluation and release
 * recurse once a level), 257 are refused with every schedule released. */
static void test_join_depth(void) {
    optax_schedule *s = optax_linear_schedule(1.0, 0.0, 10, 0);
    for (int k = 0; s && k < 256; k++) {
        optax_schedule *one[1] = {s};
        s = optax_join_schedules(1, one, NULL);
    }
    CHECK(s != NULL && optax_schedule_eval(s, 5) == 0.5f);
    optax_schedule *two[2] = {s, optax_constant_schedule(3.0)};
    lx_clear_error();
    optax_schedule *deep = optax_join_schedules(2, two, (const int64_t[]){4});
    CHECK(deep == NULL && lx_last_status() == LX_ERR_INVALID_ARGUMENT &&
          strstr(lx_last_error(), "join_schedules: schedules nested more than 256 deep"));
    /* a deep nest built from many shallow ones is refused the same way */
    s = optax_constant_schedule(1.0);
    int built = 0;
    for (int k = 0; s && k < 100000; k++, built++) {
        optax_schedule *pair[2] = {s, optax_constant_schedule(2.0)};
        s = optax_join_schedules(2, pair, (const int64_t[]){k});
    }
    CHECK(s == NULL && built == 257 && strstr(lx_last_error(), "nested more than 256 deep"));
}

/* ------------------------------------------------------------------ formula references */

/* params {"b": f32[4], "a": f32[2,3]} and deterministic gradients per step */
#define NP 10
static lx_tree *make_params(const float *v) {
    lx_tree *t = lx_tree_new();
    lx_array *b = lx_array_from_f32(1, (const int64_t[]){4}, v + 6);
    lx_array *a = lx_array_from_f32(2, (const int64_t[]){2, 3}, v);
    lx_tree_set_path(t, "w/b", lx_array_v(b)); /* insertion order b before a: optax sorts */
    lx_tree_set_path(t, "w/a", lx_array_v(a));
    lx_release(a);
    lx_release(b);
    return t;
}
static void get_params(const lx_tree *t, float *v) {
    memcpy(v, lx_f32(leaf(t, "w/a")), 6 * sizeof(float));
    memcpy(v + 6, lx_f32(leaf(t, "w/b")), 4 * sizeof(float));
}
static void grads_at(int step, const float *p, float *g) {
    for (int i = 0; i < NP; i++) g[i] = (float)(sin(1.3 * i + 0.7 * step) * (1 + i % 3)) + 0.1f * p[i];
}

/* optax's constants are float32: b**t is f32(b)**t (spec/training.md A.8) */
#define F(x) ((double)(float)(x))
typedef struct ref_state {
    double m[NP], v[NP], t2[NP];
    int count;
} ref_state;
typedef void (*ref_fn)(ref_state *s, const double *g, const double *p, double *u);

/* Run tx and the double reference side by side for `steps` steps; updates must agree. */
static void compare_run(const char *name, optax_tx *tx, ref_fn ref, int steps, double rtol) {
    CHECK(tx != NULL);
    if (!tx) return;
    float pv[NP];
    for (int i = 0; i < NP; i++) pv[i] = 0.5f + 0.25f * (float)i - (i % 2 ? 1.5f : 0.0f);
    lx_tree *params = make_params(pv), *state = NULL;
    CHECK(optax_init(tx, params, &state) == LX_OK);
    ref_state rs = {0};
    double maxrel = 0;
    for (int step = 0; step < steps && state; step++) {
        float g[NP], cur[NP];
        get_params(params, cur);
        grads_at(step, cur, g);
        lx_tree *grads = make_params(g), *upd = NULL, *ns = NULL;
        CHECK(optax_update(tx, grads, state, params, &upd, &ns) == LX_OK);
        double gd[NP], pd[NP], ud[NP];
        for (int i = 0; i < NP; i++) {
            gd[i] = g[i];
            pd[i] = cur[i];
        }
        ref(&rs, gd, pd, ud);
        if (upd) {
            float uf[NP];
            get_params(upd, uf);
            /* relative to the element, with the step's largest update as the floor: float32
             * cancellation (adamw's adam + wd p) is not a formula difference */
            double scale = 0;
            for (int i = 0; i < NP; i++) scale = fabs(ud[i]) > scale ? fabs(ud[i]) : scale;
            for (int i = 0; i < NP; i++) {
                double den = fabs(ud[i]) > 0.1 * scale ? fabs(ud[i]) : 0.1 * scale;
                double rel = den > 0 ? fabs(uf[i] - ud[i]) / den : fabs(uf[i] - ud[i]);
                maxrel = lx_worse(maxrel, rel);
            }
            lx_tree *np = NULL;
            CHECK(optax_apply_updates(params, upd, &np) == LX_OK);
            lx_tree_release(params);
            params = np;
        }
        lx_tree_release(upd);
        lx_tree_release(grads);
        lx_tree_release(state);
        state = ns;
    }
    LX_TEST_REPORT_(maxrel <= rtol, "%s: largest relative difference to the double reference %.3g > %.3g", name, maxrel,
                    rtol);
    lx_tree_release(params);
    lx_tree_release(state);
    optax_tx_release(tx);
}

static void ref_adam(ref_state *s, const double *g, const double *p, double *u) {
    s->count++;
    for (int i = 0; i < NP; i++) {
        s->m[i] = 0.1 * g[i] + 0.9 * s->m[i];
        s->v[i] = 0.001 * g[i] * g[i] + 0.999 * s->v[i];
        double mh = s->m[i] / (1 - pow(F(0.9), s->count)), vh = s->v[i] / (1 - pow(F(0.999), s->count));
        u[i] = -0.01 * mh / (sqrt(vh) + 1e-8);
    }
}
static void ref_nadam_root(ref_state *s, const double *g, const double *p, double *u) {
    s->count++;
    int t = s->count;
    for (int i = 0; i < NP; i++) {
        s->m[i] = 0.2 * g[i] + 0.8 * s->m[i];
        s->v[i] = 0.01 * g[i] * g[i] + 0.99 * s->v[i];
        double mh = 0.8 * s->m[i] / (1 - pow(F(0.8), t + 1)) + 0.2 * g[i] / (1 - pow(F(0.8), t));
        double vh = s->v[i] / (1 - pow(F(0.99), t));
        u[i] = -0.05 * mh / (sqrt(vh + 1e-3) + 1e-4);
    }
}
static void ref_adamw(ref_state *s, const double *g, const double *p, double *u) {
    ref_adam(s, g, p, u);
    for (int i = 0; i < NP; i++) u[i] = u[i] + -0.01 * 0.1 * p[i]; /* -lr * (adam + wd p) */
}
static void ref_sgd_nesterov(ref_state *s, const double *g, const double *p, double *u) {
    for (int i = 0; i < NP; i++) {
        s->m[i] = g[i] + 0.9 * s->m[i];
        u[i] = -0.1 * (g[i] + 0.9 * s->m[i]);
    }
}
static void ref_sgd_momentum(ref_state *s, const double *g, const double *p, double *u) {
    for (int i = 0; i < NP; i++) {
        s->m[i] = g[i] + 0.5 * s->m[i];
        u[i] = -0.1 * s->m[i];
    }
}
static void ref_rmsprop(ref_state *s, const double *g, const double *p, double *u) {
    for (int i = 0; i < NP; i++) {
        if (s->count == 0) s->v[i] = 0.1; /* initial_scale */
        s->v[i] = 0.1 * g[i] * g[i] + 0.9 * s->v[i];
        u[i] = -0.01 * g[i] / sqrt(s->v[i] + 1e-6);
    }
    s->count++;
}
static void ref_rms_bias(ref_state *s, const double *g, const double *p, double *u) {
    s->count++;
    for (int i = 0; i < NP; i++) {
        s->v[i] = 0.1 * g[i] * g[i] + 0.9 * s->v[i];
        double vh = s->v[i] / (1 - pow(F(0.9), s->count));
        u[i] = g[i] / (sqrt(vh) + 1e-3);
    }
}
static void ref_lion(ref_state *s, const double *g, const double *p, double *u) {
    for (int i = 0; i < NP; i++) {
        double c = 0.1 * g[i] + 0.9 * s->m[i];
        double sg = c > 0 ? 1 : c < 0 ? -1 : 0;
        u[i] = -0.01 * (sg + 0.001 * p[i]);
        s->m[i] = 0.01 * g[i] + 0.99 * s->m[i];
    }
}
static void ref_ema(ref_state *s, const double *g, const double *p, double *u) {
    s->count++;
    for (int i = 0; i < NP; i++) {
        s->m[i] = 0.3 * g[i] + 0.7 * s->m[i];
        u[i] = s->m[i] / (1 - pow(F(0.7), s->count));
    }
}
static void ref_clip(ref_state *s, const double *g, const double *p, double *u) {
    for (int i = 0; i < NP; i++) u[i] = g[i] > 0.5 ? 0.5 : g[i] < -0.5 ? -0.5 : g[i];
}
static void ref_global_norm(ref_state *s, const double *g, const double *p, double *u) {
    double n = 0;
    for (int i = 0; i < NP; i++) n += g[i] * g[i];
    n = sqrt(n);
    for (int i = 0; i < NP; i++) u[i] = n < 1.0 ? g[i] : g[i] / n * 1.0;
}
static void ref_block_rms(ref_state *s, const double *g, const double *p, double *u) {
    /* per leaf: a = 0..5, b = 6..9 */
    int lo[2] = {0, 6}, hi[2] = {6, 10};
    for (int l = 0; l < 2; l++) {
        double ss = 0;
        for (int i = lo[l]; i < hi[l]; i++) ss += g[i] * g[i];
        double rms = sqrt(ss / (hi[l] - lo[l])), d = rms / 0.5 > 1 ? rms / 0.5 : 1;
        for (int i = lo[l]; i < hi[l]; i++) u[i] = g[i] / d;
    }
}
/* adafactor on small (unfactored) leaves: v = dr v + (1 - dr)(g^2 + eps), u = g / sqrt(v), block
 * RMS clip at 1, lr, times max(rms(p), 1e-3), then -1 */
static void ref_adafactor(ref_state *s, const double *g, const double *p, double *u) {
    double dr = 1 - pow(s->count + 1, -0.8);
    s->count++;
    double x[NP];
    for (int i = 0; i < NP; i++) {
        s->v[i] = dr * s->v[i] + (1 - dr) * (g[i] * g[i] + 1e-30);
        x[i] = g[i] / sqrt(s->v[i]);
    }
    int lo[2] = {0, 6}, hi[2] = {6, 10};
    for (int l = 0; l < 2; l++) {
        double ss = 0, ps = 0;
        for (int i = lo[l]; i < hi[l]; i++) {
            ss += x[i] * x[i];
            ps += p[i] * p[i];
        }
        double rms = sqrt(ss / (hi[l] - lo[l])), d = rms > 1 ? rms : 1;
        double prms = sqrt(ps / (hi[l] - lo[l]));
        if (prms <= 1e-3) prms = 1e-3;
        for (int i = lo[l]; i < hi[l]; i++) u[i] = -(x[i] / d * 0.01 * prms);
    }
}

static bool mask_not_b(const char *path, const lx_array *p, void *user) { return strcmp(path, "w/b") != 0; }
static void ref_adamw_masked(ref_state *s, const double *g, const double *p, double *u) {
    ref_adam(s, g, p, u);
    for (int i = 0; i < 6; i++) u[i] = u[i] + -0.01 * 0.1 * p[i];
}
static void ref_sched_sgd(ref_state *s, const double *g, const double *p, double *u) {
    double lr = 0.1 * (1.0 - (s->count < 4 ? s->count : 4) / 4.0) + 0.0; /* linear 0.1 -> 0 over 4 */
    s->count++;
    for (int i = 0; i < NP; i++) u[i] = -lr * g[i];
}
static void ref_chain_clip_adam(ref_state *s, const double *g, const double *p, double *u) {
    double gg[NP];
    ref_global_norm(s, g, p, gg);
    ref_adam(s, gg, p, u);
}

/* Tolerances: 2e-6 where optax's float32 arithmetic has no cancellation; 2e-5 where it forms
 * 1 - b**t in float32 (with b2 = 0.999 that subtraction alone costs ~1e-5 relative). */
static void test_formulas(void) {
    compare_run("adam", optax_adam(OPTAX_CONST(0.01), NULL), ref_adam, 6, 2e-5);
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    o.b1 = 0.8;
    o.b2 = 0.99;
    o.eps = 1e-4;
    o.eps_root = 1e-3;
    o.nesterov = true;
    compare_run("nadam eps_root", optax_adam(OPTAX_CONST(0.05), &o), ref_nadam_root, 6, 2e-5);
    optax_adam_opts w = OPTAX_ADAMW_DEFAULTS;
    w.weight_decay = 0.1;
    compare_run("adamw", optax_adamw(OPTAX_CONST(0.01), &w), ref_adamw, 6, 2e-5);
    w.mask = (optax_mask){mask_not_b, NULL};
    compare_run("adamw masked", optax_adamw(OPTAX_CONST(0.01), &w), ref_adamw_masked, 6, 2e-5);
    compare_run("sgd nesterov", optax_sgd(OPTAX_CONST(0.1), true, 0.9, true), ref_sgd_nesterov, 6, 2e-6);
    compare_run("sgd momentum", optax_sgd(OPTAX_CONST(0.1), true, 0.5, false), ref_sgd_momentum, 6, 2e-6);
    optax_rmsprop_opts r = OPTAX_RMSPROP_DEFAULTS;
    r.initial_scale = 0.1;
    r.eps = 1e-6;
    compare_run("rmsprop", optax_rmsprop(OPTAX_CONST(0.01), &r), ref_rmsprop, 6, 2e-6);
    compare_run("scale_by_rms bias", optax_scale_by_rms(0.9, 1e-3, 0.0, false, true), ref_rms_bias, 6, 2e-5);
    compare_run("lion", optax_lion(OPTAX_CONST(0.01), NULL), ref_lion, 6, 2e-6);
    compare_run("ema", optax_ema(0.7, true, OPTAX_DTYPE_DEFAULT), ref_ema, 6, 2e-5);
    compare_run("clip", optax_clip(0.5), ref_clip, 3, 0);
    compare_run("clip_by_global_norm", optax_clip_by_global_norm(1.0), ref_global_norm, 4, 2e-6);
    compare_run("clip_by_block_rms", optax_clip_by_block_rms(0.5), ref_block_rms, 4, 2e-6);
    compare_run("adafactor", optax_adafactor(true, OPTAX_CONST(0.01), NULL), ref_adafactor, 6, 2e-6);
    compare_run("sgd(linear schedule)", optax_sgd(OPTAX_SCHED(optax_linear_schedule(0.1, 0.0, 4, 0)), false, 0, false),
                ref_sched_sgd, 6, 2e-6);
    optax_tx *parts[2] = {optax_clip_by_global_norm(1.0), optax_adam(OPTAX_CONST(0.01), NULL)};
    compare_run("chain(clip_by_global_norm, adam)", optax_chain(2, parts), ref_chain_clip_adam, 5, 2e-5);
}

/* Adafactor's factored second moment on a (130, 129) leaf against a double loop. */
static void test_factored(void) {
    enum { R = 130, C = 129 };
    optax_tx *tx = optax_scale_by_factored_rms(true, 0.8, 0, 128, 1e-30);
    float *g = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) g[i] = (float)sin(0.37 * i) + 0.01f;
    lx_tree *params = lx_tree_new(), *grads = lx_tree_new(), *state = NULL;
    lx_array *p = lx_array_full_f32(2, (const int64_t[]){R, C}, 0.5f);
    lx_array *ga = lx_array_from_f32(2, (const int64_t[]){R, C}, g);
    lx_tree_set(params, "k", lx_array_v(p));
    lx_tree_set(grads, "k", lx_array_v(ga));
    CHECK(optax_init(tx, params, &state) == LX_OK);
    /* the state: v_row drops the largest axis (0: 130), v_col the second (1: 129) */
    CHECK(lx_shape_eq(leaf(state, "v_row/k"), 1, (const int64_t[]){C}));
    CHECK(lx_shape_eq(leaf(state, "v_col/k"), 1, (const int64_t[]){R}));
    CHECK(lx_shape_eq(leaf(state, "v/k"), 1, (const int64_t[]){1}));
    double vr[C] = {0}, vc[R] = {0};
    double maxrel = 0;
    for (int step = 0; step < 3 && state; step++) {
        lx_tree *upd = NULL, *ns = NULL;
        CHECK(optax_update(tx, grads, state, params, &upd, &ns) == LX_OK);
        if (!upd) break;
        double dr = 1 - pow(step + 1, -0.8);
        double mr[C] = {0}, mc[R] = {0};
        for (int i = 0; i < R; i++)
            for (int j = 0; j < C; j++) {
                double gs = (double)g[i * C + j] * g[i * C + j] + 1e-30;
                mr[j] += gs / R;
                mc[i] += gs / C;
            }
        double rcm = 0;
        for (int j = 0; j < C; j++) {
            vr[j] = dr * vr[j] + (1 - dr) * mr[j];
            rcm += vr[j] / C;
        }
        for (int i = 0; i < R; i++) vc[i] = dr * vc[i] + (1 - dr) * mc[i];
        const float *u = lx_f32(leaf(upd, "k"));
        for (int i = 0; i < R; i++)
            for (int j = 0; j < C; j++) {
                double want = g[i * C + j] / sqrt(vr[j] / rcm) / sqrt(vc[i]);
                double rel = fabs(u[i * C + j] - want) / fabs(want);
                maxrel = lx_worse(maxrel, rel);
            }
        lx_tree_release(upd);
        lx_tree_release(state);
        state = ns;
    }
    LX_TEST_REPORT_(maxrel < 1e-5, "factored rms: relative difference %.3g", maxrel);
    free(g);
    lx_release(p);
    lx_release(ga);
    lx_tree_release(params);
    lx_tree_release(grads);
    lx_tree_release(state);
    optax_tx_release(tx);
}

/* ------------------------------------------------------------------ state layout */

static char *layout_of(const lx_tree *state) {
    static char buf[4096];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    optax_state_layout(f, state);
    fclose(f);
    return buf;
}

static void test_state_layout(void) {
    float pv[NP] = {0};
    lx_tree *params = make_params(pv), *state = NULL;
    optax_tx *tx = optax_adam(OPTAX_CONST(0.1), NULL);
    CHECK(optax_init(tx, params, &state) == LX_OK);
    CHECK_STR(layout_of(state), "0/count int32[]\n0/mu/w/b float32[4]\n0/mu/w/a float32[2,3]\n"
                                "0/nu/w/b float32[4]\n0/nu/w/a float32[2,3]\n1 {}\n");
    lx_tree_release(state);
    optax_tx_release(tx);
    optax_adam_opts w = OPTAX_ADAMW_DEFAULTS;
    w.mask = (optax_mask){mask_not_b, NULL};
    tx = optax_adamw(OPTAX_SCHED(optax_constant_schedule(0.1)), &w);
    CHECK(optax_init(tx, params, &state) == LX_OK);
    CHECK_STR(layout_of(state), "0/count int32[]\n0/mu/w/b float32[4]\n0/mu/w/a float32[2,3]\n"
                                "0/nu/w/b float32[4]\n0/nu/w/a float32[2,3]\n1/inner_state {}\n2/count int32[]\n");
    lx_tree_release(state);
    optax_tx_release(tx);
    /* masked trace: MaskedNode {} at the masked-out leaf */
    tx = optax_masked(optax_trace(0.9, false, OPTAX_DTYPE_DEFAULT), (optax_mask){mask_not_b, NULL});
    CHECK(optax_init(tx, params, &state) == LX_OK);
    CHECK_STR(layout_of(state), "inner_state/trace/w/b {}\ninner_state/trace/w/a float32[2,3]\n");
    lx_tree_release(state);
    optax_tx_release(tx);
    tx = optax_adafactor(true, OPTAX_CONST(0.1), NULL);
    CHECK(optax_init(tx, params, &state) == LX_OK);
    CHECK_STR(layout_of(state), "0/count int32[]\n0/v_row/w/b float32[1]\n0/v_row/w/a float32[1]\n"
                                "0/v_col/w/b float32[1]\n0/v_col/w/a float32[1]\n0/v/w/b float32[4]\n"
                                "0/v/w/a float32[2,3]\n1 {}\n2 {}\n3 {}\n4 {}\n");
    lx_tree_release(state);
    optax_tx_release(tx);
    tx = optax_sgd(OPTAX_CONST(0.1), true, 0.9, false);
    CHECK(optax_init(tx, params, &state) == LX_OK);
    CHECK_STR(layout_of(state), "0/trace/w/b float32[4]\n0/trace/w/a float32[2,3]\n1 {}\n");
    lx_tree_release(state);
    optax_tx_release(tx);
    lx_tree_release(params);
}

/* ------------------------------------------------------------------ inject_hyperparams */

static void test_inject(void) {
    lx_tree *params = tree1("x", 3, (const float[]){1, 2, 3}), *state = NULL;
    optax_tx *tx = optax_inject_hyperparams("adam", 1, (optax_hparam[]){{"learning_rate", OPTAX_CONST(0.003)}});
    CHECK(tx && optax_init(tx, params, &state) == LX_OK);
    CHECK_STR(layout_of(state), "count int32[]\nhyperparams/learning_rate float32[]\nhyperparams/b1 float32[]\n"
                                "hyperparams/b2 float32[]\nhyperparams/eps float32[]\nhyperparams/eps_root float32[]\n"
                                "hyperparams_states {}\ninner_state/0/count int32[]\ninner_state/0/mu/x float32[3]\n"
                                "inner_state/0/nu/x float32[3]\ninner_state/1 {}\n");
    CHECK(lx_f32(leaf(state, "hyperparams/learning_rate"))[0] == 0.003f);
    /* same published run as plain adam */
    static const char *const w[5] = {"1.40E+01", "1.39E+01", "1.39E+01", "1.39E+01", "1.38E+01"};
    for (int step = 0; step < 5; step++) {
        const lx_array *p = leaf(params, "x");
        float g[3];
        for (int i = 0; i < 3; i++) g[i] = 2.0f * lx_f32(p)[i];
        lx_tree *grads = tree1("x", 3, g);
        CHECK(optax_step(tx, grads, &params, &state) == LX_OK);
        lx_tree_release(grads);
        char buf[32];
        snprintf(buf, sizeof buf, "%.2E", (double)sumsq_f32(leaf(params, "x")));
        CHECK_STR(buf, w[step]);
    }
    CHECK_EQ_INT(lx_i32(leaf(state, "count"))[0], 5);
    /* editing the lr between steps takes effect: lr 0 freezes the params */
    CHECK(optax_inject_set_hyperparam(&state, "learning_rate", 0.0f) == LX_OK);
    float before = lx_f32(leaf(params, "x"))[0];
    lx_tree *grads = tree1("x", 3, (const float[]){1, 1, 1});
    CHECK(optax_step(tx, grads, &params, &state) == LX_OK);
    CHECK(lx_f32(leaf(params, "x"))[0] == before);
    CHECK_FAILS(optax_inject_set_hyperparam(&state, "gamma", 1.0f), LX_ERR_NOT_FOUND, "KeyError: 'gamma'");
    lx_tree_release(grads);
    lx_tree_release(state);
    optax_tx_release(tx);
    /* a scheduled lr: evaluated at its own count, listed after the numeric ones */
    tx = optax_inject_hyperparams("sgd", 1, (optax_hparam[]){{"learning_rate", OPTAX_SCHED(optax_linear_schedule(1.0, 0.0, 4, 0))}});
    CHECK(optax_init(tx, params, &state) == LX_OK);
    CHECK(lx_f32(leaf(state, "hyperparams/learning_rate"))[0] == 1.0f);
    CHECK_EQ_INT(lx_i32(leaf(state, "hyperparams_states/learning_rate/count"))[0], 0);
    lx_tree *g1 = tree1("x", 3, (const float[]){1, 1, 1}), *upd = NULL, *ns = NULL;
    CHECK(optax_update(tx, g1, state, params, &upd, &ns) == LX_OK);
    CHECK(upd && lx_f32(leaf(upd, "x"))[0] == -1.0f);
    lx_tree_release(upd);
    lx_tree_release(state);
    state = ns;
    CHECK(optax_update(tx, g1, state, params, &upd, &ns) == LX_OK);
    CHECK(upd && lx_f32(leaf(upd, "x"))[0] == -0.75f);
    CHECK(lx_f32(leaf(ns, "hyperparams/learning_rate"))[0] == 0.75f);
    lx_tree_release(upd);
    lx_tree_release(ns);
    lx_tree_release(g1);
    lx_tree_release(state);
    optax_tx_release(tx);
    lx_tree_release(params);
    /* float32 hyperparameters: 1 - b1 is formed in float32 (1 - f32(0.9) = 0.100000024) */
    lx_clear_error();
    CHECK_NULL_FAILS(optax_inject_hyperparams("adam", 1, (optax_hparam[]){{"lr", OPTAX_CONST(0.1)}}), LX_ERR_TYPE,
                     "adam() got an unexpected keyword argument 'lr'");
    CHECK_NULL_FAILS(optax_inject_hyperparams("adam", 1, (optax_hparam[]){{"b1", OPTAX_CONST(0.1)}}), LX_ERR_TYPE,
                     "missing 1 required positional argument: 'learning_rate'");
    /* an unknown name is LX_ERR_NOT_FOUND (status.h; lx_initializer_from_name and optax_from_string agree) */
    CHECK_NULL_FAILS(optax_inject_hyperparams("sgdx", 0, NULL), LX_ERR_NOT_FOUND, "unknown optimizer 'sgdx'");
    CHECK_NULL_FAILS(optax_from_string("inject_hyperparams(sgdx)(learning_rate=0.1)"), LX_ERR_NOT_FOUND,
                     "unknown optimizer 'sgdx'");
    CHECK_NULL_FAILS(optax_inject_hyperparams("sgd", 1, NULL), LX_ERR_INVALID_ARGUMENT, "hparams is NULL");
    CHECK_NULL_FAILS(optax_inject_hyperparams("adam", 2, (optax_hparam[]){{"learning_rate", OPTAX_CONST(0.1)},
                                                                      {"learning_rate", OPTAX_CONST(0.2)}}),
                     LX_ERR_TYPE, "adam() got multiple values for argument 'learning_rate'");
}

/* With float32 hyperparameters (inject) optax's momentum is (1 - f32(b1)) * g; with Python
 * floats it is f32(1 - b1) * g. After one step of ema from zero the two differ. */
static void test_inject_f32_arithmetic(void) {
    lx_tree *params = tree1("x", 1, (const float[]){0}), *g = tree1("x", 1, (const float[]){1});
    lx_tree *s1 = NULL, *s2 = NULL, *u1 = NULL, *u2 = NULL, *n1 = NULL, *n2 = NULL;
    optax_tx *plain = optax_adam(OPTAX_CONST(1.0), NULL);
    optax_tx *inj = optax_inject_hyperparams("adam", 1, (optax_hparam[]){{"learning_rate", OPTAX_CONST(1.0)}});
    CHECK(optax_init(plain, params, &s1) == LX_OK && optax_init(inj, params, &s2) == LX_OK);
    CHECK(optax_update(plain, g, s1, params, &u1, &n1) == LX_OK);
    CHECK(optax_update(inj, g, s2, params, &u2, &n2) == LX_OK);
    CHECK(lx_f32(leaf(n1, "0/mu/x"))[0] == 0.1f);
    CHECK(lx_f32(leaf(n2, "inner_state/0/mu/x"))[0] == 1.0f - 0.9f);
    CHECK(0.1f != 1.0f - 0.9f);
    lx_tree *all[] = {params, g, s1, s2, u1, u2, n1, n2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lx_tree_release(all[i]);
    optax_tx_release(plain);
    optax_tx_release(inj);
}

/* ------------------------------------------------------------------ errors, atomicity */

static void test_errors(void) {
    float pv[NP] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    lx_tree *params = make_params(pv), *state = NULL, *upd = NULL, *ns = NULL;
    optax_tx *tx = optax_adam(OPTAX_CONST(0.1), NULL);
    CHECK(optax_init(tx, params, &state) == LX_OK);
    /* gradients with a missing leaf, an extra leaf, a wrong shape */
    lx_tree *g = lx_tree_copy(params);
    lx_tree_delete_path(g, "w/a");
    CHECK_FAILS(optax_update(tx, g, state, params, &upd, &ns), LX_ERR_SHAPE, "gradients have no leaf at 'w/a'");
    CHECK(upd == NULL && ns == NULL);
    lx_tree_release(g);
    g = lx_tree_copy(params);
    lx_array *extra = lx_array_full_f32(1, (const int64_t[]){2}, 1.0f);
    lx_tree_set_path(g, "w/c", lx_array_v(extra));
    CHECK_FAILS(optax_update(tx, g, state, params, &upd, &ns), LX_ERR_SHAPE, "leaf at 'w/c' that the params do not have");
    lx_tree_set_path(g, "w/a", lx_array_v(extra));
    lx_tree_delete_path(g, "w/c");
    CHECK_FAILS(optax_update(tx, g, state, params, &upd, &ns), LX_ERR_SHAPE, "'w/a' has shape (2,)");
    lx_tree_release(g);
    /* a state made for other params */
    lx_tree *other = tree1("x", 3, (const float[]){1, 2, 3}), *ostate = NULL;
    CHECK(optax_init(tx, other, &ostate) == LX_OK);
    CHECK_FAILS(optax_update(tx, params, ostate, params, &upd, &ns), LX_ERR_SHAPE,
                "'0/mu' has no leaf at params path 'w/a'");
    lx_tree_release(ostate);
    /* a state of another optimizer: chain lengths differ */
    optax_tx *sgd = optax_sgd(OPTAX_CONST(0.1), false, 0, false);
    lx_tree *sstate = NULL;
    CHECK(optax_init(sgd, params, &sstate) == LX_OK);
    CHECK_FAILS(optax_update(tx, params, sstate, params, &upd, &ns), LX_ERR_SHAPE, "no '0/count'");
    lx_tree_release(sstate);
    optax_tx_release(sgd);
    /* a chain of three given a two-entry state */
    optax_tx *three = optax_chain(3, (optax_tx *[]){optax_identity(), optax_identity(), optax_identity()});
    CHECK_FAILS(optax_update(three, params, state, params, &upd, &ns), LX_ERR_SHAPE,
                "The number of updates and states has to be the same in chain!");
    optax_tx_release(three);
    /* add_decayed_weights without params */
    optax_tx *aw = optax_adamw(OPTAX_CONST(0.1), NULL);
    lx_tree *awstate = NULL;
    CHECK(optax_init(aw, params, &awstate) == LX_OK);
    CHECK_FAILS(optax_update(aw, params, awstate, NULL, &upd, &ns), LX_ERR_INVALID_ARGUMENT,
                "requires the current value of parameters");
    lx_tree_release(awstate);
    optax_tx_release(aw);
    /* non-float leaves */
    lx_tree *ip = lx_tree_new();
    lx_array *ia = lx_array_new(LX_I32, 1, (const int64_t[]){3});
    lx_tree_set(ip, "i", lx_array_v(ia));
    lx_tree *istate = NULL;
    CHECK_FAILS(optax_init(tx, ip, &istate), LX_ERR_DTYPE, "leaf at 'i' is int32");
    lx_release(ia);
    lx_tree_release(ip);
    /* apply_updates with mismatched trees */
    lx_tree *np = NULL;
    CHECK_FAILS(optax_apply_updates(params, other, &np), LX_ERR_SHAPE, "updates have no leaf at 'w/a'");
    CHECK(np == NULL);
    /* NaN checking: off it passes, on it names the first bad leaf in sorted order */
    float bad[NP] = {0};
    bad[7] = NAN;   /* w/b[1] */
    bad[2] = INFINITY; /* w/a[2]: sorted first */
    lx_tree *gn = make_params(bad);
    CHECK(optax_update(tx, gn, state, params, &upd, &ns) == LX_OK);
    lx_tree_release(upd);
    lx_tree_release(ns);
    optax_set_debug_nans(true);
    CHECK_FAILS(optax_update(tx, gn, state, params, &upd, &ns), LX_ERR_INVALID_ARGUMENT,
                "debug_nans: Inf in the gradients at 'w/a' (flat index 2)");
    /* a failed step leaves params and state untouched */
    lx_tree *p0 = params, *s0 = state;
    lx_array *a0 = leaf(params, "w/a");
    float keep = lx_f32(a0)[0];
    CHECK_FAILS(optax_step(tx, gn, &params, &state), LX_ERR_INVALID_ARGUMENT,
                "debug_nans: Inf in the gradients at 'w/a' (flat index 2)");
    CHECK(params == p0 && state == s0 && leaf(params, "w/a") == a0 && lx_f32(a0)[0] == keep);
    CHECK_EQ_INT(lx_i32(leaf(state, "0/count"))[0], 0);
    optax_set_debug_nans(false);
    lx_tree_release(gn);
    lx_release(extra);
    lx_tree_release(other);
    lx_tree_release(state);
    lx_tree_release(params);
    optax_tx_release(tx);
    /* constructors propagate a NULL part and release the others */
    int64_t live = lx_array_live_count();
    lx_clear_error();
    CHECK(optax_chain(2, (optax_tx *[]){optax_identity(), NULL}) == NULL);
    CHECK_NULL_FAILS(optax_scale_by_lion(0.9, 0.99, OPTAX_DTYPE_DEFAULT, (optax_lion_mode)7, 1.0), LX_ERR_INVALID_ARGUMENT,
                     "Unknown lion mode");
    CHECK_EQ_INT(lx_array_live_count(), live);
}

/* apply_updates keeps Variable and box leaves, casts to the param dtype (bfloat16 rounding). */
static void test_apply_updates_kinds(void) {
    lx_tree *params = lx_tree_new(), *upd = lx_tree_new(), *out = NULL;
    lx_array *p = lx_array_from_f32(1, (const int64_t[]){2}, (const float[]){1.0f, 2.0f});
    lx_variable *var = NULL;
    CHECK(lx_variable_new(&lx_Param, p, &var) == LX_OK);
    lx_tree_set(params, "v", lx_var_v(var));
    lx_array *pb = lx_cast(p, LX_BF16);
    lx_tree_set(params, "h", lx_array_v(pb));
    lx_array *u = lx_array_from_f32(1, (const int64_t[]){2}, (const float[]){0.001f, 0.5f});
    lx_tree_set(upd, "v", lx_array_v(u));
    lx_tree_set(upd, "h", lx_array_v(u));
    CHECK(optax_apply_updates(params, upd, &out) == LX_OK);
    const lx_value *ov = lx_tree_get(out, "v");
    CHECK(ov && ov->kind == LX_V_VARIABLE && ov->u.var != var && lx_variable_type(ov->u.var) == &lx_Param);
    CHECK(ov && lx_f32(lx_variable_get_value(ov->u.var))[0] == 1.001f);
    CHECK(lx_f32(lx_variable_get_value(var))[0] == 1.0f); /* the input is untouched */
    lx_array *h = leaf(out, "h");
    CHECK(h && h->dtype == LX_BF16);
    CHECK(h && lx_array_get(h, 0) == 1.0 && lx_array_get(h, 1) == 2.5); /* 1.001 rounds to 1 in bf16 */
    lx_variable_release(var);
    lx_release(p);
    lx_release(u);
    lx_tree_release(params);
    lx_tree_release(upd);
    lx_tree_release(out);
}


/* ------------------------------------------------------------------ expressions */

static void test_from_string(void) {
    static const char *const wa[5] = {"1.40E+01", "1.39E+01", "1.39E+01", "1.39E+01", "1.38E+01"};
    static const char *const wn[5] = {"1.39E+01", "1.39E+01", "1.39E+01", "1.38E+01", "1.38E+01"};
    static const char *const ws[5] = {"1.38E+01", "1.37E+01", "1.35E+01", "1.33E+01", "1.32E+01"};
    static const char *const wf[5] = {"1.39E+01", "1.38E+01", "1.38E+01", "1.37E+01", "1.36E+01"};
    docstring_run(optax_from_string("adam(0.003)"), wa, (const float[]){0.9850041f, 1.9850019f, 2.9850016f}, 0);
    docstring_run(optax_from_string("optax.adamw(learning_rate=3e-3)"), wa,
                  (const float[]){0.98500264f, 1.984999f, 2.9849968f}, 0);
    docstring_run(optax_from_string(" nadam( 0.003 , ) "), wn, (const float[]){0.9826614f, 1.9826509f, 2.9826474f}, 0);
    docstring_run(optax_from_string("sgd(learning_rate=0.003)"), ws, NULL, 0);
    docstring_run(optax_from_string("lion(0.003)"), wa, (const float[]){0.98498505f, 1.9849701f, 2.9849546f}, 0);
    docstring_run(optax_from_string("adafactor(0.003)"), wf, NULL, 0);
    /* injected hyperparameters are float32 arrays: 1 - b1 differs from adam's in the last bits, so
     * only the printed values are the docstring's */
    docstring_run(optax_from_string("inject_hyperparams(adam)(learning_rate=0.003)"), wa, NULL, 0);
    compare_run("sgd nesterov (string)", optax_from_string("sgd(0.1, momentum=0.9, nesterov=True)"), ref_sgd_nesterov,
                6, 2e-6);
    compare_run("chain (string)", optax_from_string("chain(clip_by_global_norm(1.0), adam(0.01))"),
                ref_chain_clip_adam, 5, 2e-5);
    compare_run("sgd(linear schedule) (string)",
                optax_from_string("sgd(optax.linear_schedule(init_value=0.1, end_value=0.0, transition_steps=4))"),
                ref_sched_sgd, 6, 2e-6);
    optax_schedule *a = optax_schedule_from_string(
        "warmup_cosine_decay_schedule(init_value=0.2, peak_value=1.21, end_value=-3.0, warmup_steps=50, "
        "decay_steps=100, exponent=2)");
    optax_schedule *b = optax_warmup_cosine_decay_schedule(0.2, 1.21, 50, 100, -3.0, 2);
    CHECK(a != NULL);
    for (int c = 0; a && c <= 120; c += 5) CHECK(optax_schedule_eval(a, c) == optax_schedule_eval(b, c));
    optax_schedule_release(a);
    optax_schedule_release(b);
    a = optax_schedule_from_string("piecewise_constant_schedule(1.0, {100: 0.1, 200: 0.01})");
    CHECK(a && optax_schedule_eval(a, 150) == 0.1f && optax_schedule_eval(a, 250) == 0.1f * 0.01f);
    optax_schedule_release(a);
    a = optax_schedule_from_string("join_schedules([constant_schedule(5.0), linear_schedule(0.0, 10.0, 10)], [3])");
    CHECK(a && optax_schedule_eval(a, 2) == 5.0f && optax_schedule_eval(a, 13) == 10.0f);
    optax_schedule_release(a);
    a = optax_schedule_from_string("exponential_decay(1.0, 10, 0.5, staircase=True, end_value=None)");
    CHECK(a && optax_schedule_eval(a, 15) == 0.5f);
    optax_schedule_release(a);
    /* state layout follows the expression */
    float pv[NP] = {0};
    lx_tree *params = make_params(pv), *state = NULL;
    optax_tx *tx = optax_from_string("sgd(cosine_decay_schedule(0.1, 4), momentum=0.9)");
    CHECK(tx && optax_init(tx, params, &state) == LX_OK);
    CHECK_STR(layout_of(state), "0/trace/w/b float32[4]\n0/trace/w/a float32[2,3]\n1/count int32[]\n");
    lx_tree_release(state);
    lx_tree_release(params);
    optax_tx_release(tx);

    struct { const char *src; lx_status st; const char *msg; } bad[] = {
        {"adam()", LX_ERR_TYPE, "adam() missing 1 required positional argument: 'learning_rate'"},
        {"adam(1e-3, lr=2)", LX_ERR_TYPE, "adam() got an unexpected keyword argument 'lr'"},
        {"adam(1e-3, learning_rate=2)", LX_ERR_TYPE, "adam() got multiple values for argument 'learning_rate'"},
        {"sgd(1, 2, False, None, 5)", LX_ERR_TYPE, "sgd() takes from 1 to 4 positional arguments but 5 were given"},
        {"adamx(1)", LX_ERR_NOT_FOUND, "optax has no transformation named 'adamx'"},
        {"adam(1e-3", LX_ERR_FORMAT, "expected ',' or ')' at offset 9"},
        {"adam(b1=0.9, 1e-3)", LX_ERR_FORMAT, "positional argument follows keyword argument"},
        {"adam(1e-3) x", LX_ERR_FORMAT, "trailing characters"},
        {"adafactor(0.1, dtype_momentum='bfloat16')", LX_ERR_UNSUPPORTED, "dtype_momentum other than float32"},
        {"adamw(0.1, mask=m)", LX_ERR_UNSUPPORTED, "'mask' other than None"},
        {"adam(cosine_decay_schedule(0.1, 0))", LX_ERR_INVALID_ARGUMENT, "requires positive decay_steps"},
        {"adam(adam(0.1))", LX_ERR_TYPE, "'adam' is a transformation, not a schedule"},
        {"adam('x')", LX_ERR_TYPE, "'learning_rate' must be a number or a schedule"},
        {"inject_hyperparams(adam)(learning_rate=0.1, gamma=2)", LX_ERR_TYPE, "unexpected keyword argument 'gamma'"},
        {"inject_hyperparams(adamw)(0.1, b1=0.9, b2=0.9, eps=1e-8, eps_root=0, weight_decay=0.1, x=1, y=2, z=3)",
         LX_ERR_TYPE, "got an unexpected keyword argument 'x'"}, /* Signature.bind's text (train6's binder) */
        {"optax.nothing(1)", LX_ERR_NOT_FOUND, "optax has no transformation named 'nothing'"},
    };
    int64_t live = lx_array_live_count();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lx_clear_error();
        optax_tx *t = optax_from_string(bad[i].src);
        LX_TEST_REPORT_(!t && lx_last_status() == bad[i].st && strstr(lx_last_error(), bad[i].msg),
                        "%s: got %s \"%s\", want %s", bad[i].src, lx_status_name(lx_last_status()), lx_last_error(),
                        bad[i].msg);
        optax_tx_release(t);
    }
    CHECK_EQ_INT(lx_array_live_count(), live);
}

static size_t n_allocs;
static void count_alloc(size_t nbytes, void *user) { n_allocs++; }

/* optax_step in a loop: from the second step on no array data is allocated; the cache gives its
 * buffers back with optax_release_buffers (the live-array count returns to where it was). */
static void test_step_buffers(void) {
    optax_release_buffers(); /* earlier tests' steps left buffers in the cache */
    int64_t live0 = lx_array_live_count();
    float pv[NP] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    lx_tree *params = make_params(pv), *grads = make_params(pv), *state = NULL;
    optax_tx *tx = optax_chain(2, (optax_tx *[]){optax_clip_by_global_norm(1.0), optax_adamw(OPTAX_CONST(0.1), NULL)});
    CHECK(optax_init(tx, params, &state) == LX_OK);
    size_t per[4];
    for (int i = 0; i < 4; i++) {
        n_allocs = 0;
        lx_set_alloc_hook(count_alloc, NULL);
        CHECK(optax_step(tx, grads, &params, &state) == LX_OK);
        lx_set_alloc_hook(NULL, NULL);
        per[i] = n_allocs;
    }
    CHECK_EQ_INT(lx_array_cache_enabled(), !LX_TEST_ASAN); /* only the sanitizer build bypasses it */
    if (lx_array_cache_enabled())
        LX_TEST_REPORT_(per[1] == 0 && per[2] == 0 && per[3] == 0, "optax_step allocates %zu, %zu, %zu, %zu arrays",
                        per[0], per[1], per[2], per[3]);
    else
        printf("test_step_buffers: zero-allocation check skipped (this build bypasses the array storage cache)\n");
    /* a recycled buffer never aliases a live leaf: every leaf of params and state is distinct */
    lx_flat f = {0};
    lx_tree *both = lx_tree_new();
    lx_tree_set(both, "p", lx_tree_v(params));
    lx_tree_set(both, "s", lx_tree_v(state));
    lx_tree_flatten(both, &f);
    int dup = 0;
    for (size_t i = 0; i < f.len; i++)
        for (size_t j = i + 1; j < f.len; j++)
            dup += f.items[i].value.kind == LX_V_ARRAY && f.items[j].value.kind == LX_V_ARRAY &&
                   (f.items[i].value.u.array == f.items[j].value.u.array ||
                    f.items[i].value.u.array->data == f.items[j].value.u.array->data);
    CHECK_EQ_INT(dup, 0);
    lx_flat_free(&f);
    lx_tree_release(both);
    lx_tree_release(params);
    lx_tree_release(grads);
    lx_tree_release(state);
    optax_tx_release(tx);
    CHECK_EQ_INT(lx_array_live_count(), live0); /* the cache holds data blocks, not arrays */
    CHECK(!lx_array_cache_enabled() || lx_array_cache_bytes() > 0); /* the last step's blocks */
    optax_release_buffers();
    CHECK_EQ_INT(lx_array_cache_bytes(), 0);
}

/* ------------------------------------------------------------------ float32 emulation fixtures */

static float fbits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* Every optimizer run of scripts/gen_optax_fixtures.py (an independent float32 emulation of
 * optax's rules) bit for bit: 8 steps of fixed gradients on a 7-float leaf. */
static void test_emulation_runs(void) {
    for (size_t r = 0; r < sizeof OF_RUNS / sizeof OF_RUNS[0]; r++) {
        const of_run *run = &OF_RUNS[r];
        optax_tx *tx = optax_from_string(run->expr);
        LX_TEST_REPORT_(tx != NULL, "%s: %s", run->expr, lx_last_error());
        if (!tx) continue;
        float p0[OF_N];
        for (int i = 0; i < OF_N; i++) p0[i] = fbits(OF_P0[i]);
        lx_tree *params = tree1("x", OF_N, p0), *state = NULL;
        CHECK(optax_init(tx, params, &state) == LX_OK);
        uint32_t worst = 0;
        int first_bad = -1;
        for (int step = 0; step < OF_STEPS && state; step++) {
            float g[OF_N];
            for (int i = 0; i < OF_N; i++) g[i] = fbits(OF_GRADS[step][i]);
            lx_tree *grads = tree1("x", OF_N, g);
            CHECK(optax_step(tx, grads, &params, &state) == LX_OK);
            lx_tree_release(grads);
            const float *p = lx_f32(leaf(params, "x"));
            for (int i = 0; i < OF_N; i++) {
                uint32_t d = lx_ulp_distance(p[i], fbits(run->params[step][i]));
                if (d && first_bad < 0) first_bad = step;
                if (d > worst) worst = d;
            }
        }
        LX_TEST_REPORT_(worst == 0, "%s: differs from the float32 emulation from step %d (max %u ulp)", run->expr,
                        first_bad, worst);
        lx_tree_release(params);
        lx_tree_release(state);
        optax_tx_release(tx);
    }
}

/* Every schedule of the emulation at 56 counts: exact, except cosines within 1 ulp (cosf against
 * the emulation's correctly rounded cos). */
static void test_emulation_schedules(void) {
    size_t nc = sizeof OF_COUNTS / sizeof OF_COUNTS[0];
    for (size_t k = 0; k < sizeof OF_SCHEDS / sizeof OF_SCHEDS[0]; k++) {
        optax_schedule *s = optax_schedule_from_string(OF_SCHEDS[k].expr);
        LX_TEST_REPORT_(s != NULL, "%s: %s", OF_SCHEDS[k].expr, lx_last_error());
        if (!s) continue;
        uint32_t allowed = strstr(OF_SCHEDS[k].expr, "cosine") ? 1 : 0, worst = 0;
        for (size_t i = 0; i < nc; i++) {
            uint32_t d = lx_ulp_distance(optax_schedule_eval(s, OF_COUNTS[i]), fbits(OF_SCHEDS[k].values[i]));
            if (d > worst) worst = d;
        }
        LX_TEST_REPORT_(worst <= allowed, "%s: %u ulp from the float32 emulation", OF_SCHEDS[k].expr, worst);
        optax_schedule_release(s);
    }
}

/* Masks as optax writes them: a bool pytree (a prefix covers its subtree) and ndim >= 2. */
static void test_mask_helpers(void) {
    float pv[NP] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    lx_tree *params = make_params(pv), *grads = make_params((const float[NP]){0}), *mask = lx_tree_new();
    lx_tree_set_path(mask, "w/a", lx_bool_v(true));
    lx_tree_set_path(mask, "w/b", lx_bool_v(false));
    const optax_mask masks[3] = {optax_mask_tree(mask), optax_mask_min_ndim(2), OPTAX_NO_MASK};
    for (int k = 0; k < 3; k++) {
        /* zero gradients: only the decayed leaves move (by -lr * wd * p) */
        optax_tx *tx = optax_chain(2, (optax_tx *[]){optax_add_decayed_weights(OPTAX_CONST(0.5), masks[k]),
                                                    optax_sgd(OPTAX_CONST(1.0), false, 0, false)});
        lx_tree *state = NULL, *upd = NULL, *ns = NULL;
        CHECK(optax_init(tx, params, &state) == LX_OK);
        CHECK(optax_update(tx, grads, state, params, &upd, &ns) == LX_OK);
        float a0 = lx_f32(leaf(upd, "w/a"))[0], b0 = lx_f32(leaf(upd, "w/b"))[0];
        CHECK(a0 == -0.5f * 1.0f);
        CHECK(b0 == (k == 2 ? -0.5f * 7.0f : 0.0f));
        lx_tree_release(state);
        lx_tree_release(upd);
        lx_tree_release(ns);
        optax_tx_release(tx);
    }
    /* a prefix: {"w": True} covers both leaves */
    lx_tree *pre = lx_tree_new();
    lx_tree_set(pre, "w", lx_bool_v(true));
    optax_mask pm = optax_mask_tree(pre);
    CHECK(pm.fn("w/a", leaf(params, "w/a"), pm.user) && pm.fn("w/b", leaf(params, "w/b"), pm.user));
    CHECK(!pm.fn("v/a", leaf(params, "w/a"), pm.user));
    lx_tree_release(pre);
    lx_tree_release(mask);
    lx_tree_release(params);
    lx_tree_release(grads);
}

static float bf16_round(float x) { /* round to nearest even, as the library stores bfloat16 */
    uint32_t b;
    memcpy(&b, &x, 4);
    b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &b, 4);
    return x;
}

/* bfloat16 params: scale_by_rms and scale_by_stddev keep their moments in the params' dtype step
 * after step (optax: the state is tree_zeros_like / tree_full_like(params), and each update
 * moment is `(1 - decay) * g + decay * t` in that dtype), as adam does for nu. */
static void test_moments_keep_bf16(void) {
    lx_tree *params = lx_tree_new(), *g = lx_tree_new();
    lx_array *p = lx_array_from_f32(1, (const int64_t[]){3}, (const float[]){1, 2, 3});
    lx_array *pb = lx_cast(p, LX_BF16);
    lx_array *gr = lx_array_from_f32(1, (const int64_t[]){3}, (const float[]){0.3f, -1.7f, 2.9f});
    lx_array *gb = lx_cast(gr, LX_BF16);
    lx_tree_set(params, "x", lx_array_v(pb));
    lx_tree_set(g, "x", lx_array_v(gb));
    optax_tx *txs[2] = {optax_scale_by_rms(0.9, 1e-8, 0.0, true, false), optax_scale_by_stddev(0.9, 1e-8, 0.0, true, false)};
    for (int k = 0; k < 2; k++) {
        lx_test_current = k ? "stddev keeps bf16" : "rms keeps bf16";
        lx_tree *s = NULL, *u = NULL, *ns = NULL;
        CHECK(optax_init(txs[k], params, &s) == LX_OK);
        CHECK(optax_update(txs[k], g, s, params, &u, &ns) == LX_OK);
        const lx_array *nu = ns ? leaf(ns, "nu/x") : NULL, *mu = k && ns ? leaf(ns, "mu/x") : NULL;
        CHECK(leaf(s, "nu/x") && leaf(s, "nu/x")->dtype == LX_BF16);
        CHECK(nu && nu->dtype == LX_BF16);
        if (k) CHECK(mu && mu->dtype == LX_BF16);
        for (int i = 0; nu && i < 3; i++) {
            double gi = (double)bf16_round(lx_f32(gr)[i]);
            CHECK(lx_array_get(nu, i) == bf16_round((float)(0.1 * gi * gi)));
            if (mu) CHECK(lx_array_get(mu, i) == bf16_round((float)(0.1 * gi)));
        }
        lx_tree_release(s);
        lx_tree_release(u);
        lx_tree_release(ns);
        optax_tx_release(txs[k]);
    }
    lx_release(p);
    lx_release(gr);
    lx_tree_release(params);
    lx_tree_release(g);
}

/* mu_dtype=bfloat16: mu is stored rounded to bfloat16 (the update uses the float32 mu, as optax
 * casts only what it stores); nu stays float32. */
static void test_mu_dtype_bf16(void) {
    lx_tree *params = tree1("x", 3, (const float[]){1, 2, 3}), *g = tree1("x", 3, (const float[]){0.3f, -1.7f, 2.9f});
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    o.mu_dtype = LX_BF16;
    optax_tx *tx = optax_adam(OPTAX_CONST(0.1), &o), *ref = optax_adam(OPTAX_CONST(0.1), NULL);
    lx_tree *s = NULL, *sr = NULL, *u = NULL, *ur = NULL, *ns = NULL, *nsr = NULL;
    CHECK(optax_init(tx, params, &s) == LX_OK && optax_init(ref, params, &sr) == LX_OK);
    CHECK(leaf(s, "0/mu/x")->dtype == LX_BF16 && leaf(s, "0/nu/x")->dtype == LX_F32);
    CHECK(optax_update(tx, g, s, params, &u, &ns) == LX_OK);
    CHECK(optax_update(ref, g, sr, params, &ur, &nsr) == LX_OK);
    const lx_array *m = leaf(ns, "0/mu/x"), *mr = leaf(nsr, "0/mu/x");
    CHECK(m->dtype == LX_BF16);
    for (int i = 0; i < 3; i++) {
        float want = lx_f32(mr)[i];
        uint32_t b;
        memcpy(&b, &want, 4);
        b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u; /* round to nearest even */
        memcpy(&want, &b, 4);
        CHECK(lx_array_get(m, i) == want);
        CHECK(lx_f32(leaf(u, "x"))[i] == lx_f32(leaf(ur, "x"))[i]); /* the first update is the same */
    }
    lx_tree *all[] = {params, g, s, sr, u, ur, ns, nsr};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lx_tree_release(all[i]);
    optax_tx_release(tx);
    optax_tx_release(ref);
}

/* Partitioned boxes in Linen params: apply_updates keeps the box and its names. */
static void test_boxed_params(void) {
    lx_array *k = lx_array_from_f32(2, (const int64_t[]){2, 2}, (const float[]){1, 2, 3, 4});
    lx_box *box = NULL;
    const char *names[2] = {"embed", "mlp"};
    CHECK(lx_box_partitioned(k, 2, names, NULL, &box) == LX_OK);
    lx_tree *params = lx_tree_new(), *grads = lx_tree_new(), *state = NULL;
    lx_tree_set_path(params, "Dense_0/kernel", lx_box_v(box));
    lx_array *g = lx_array_full_f32(2, (const int64_t[]){2, 2}, 1.0f);
    lx_tree_set_path(grads, "Dense_0/kernel", lx_array_v(g));
    optax_tx *tx = optax_sgd(OPTAX_CONST(0.5), false, 0, false);
    CHECK(optax_init(tx, params, &state) == LX_OK);
    CHECK(optax_step(tx, grads, &params, &state) == LX_OK);
    const lx_value *v = lx_tree_find(params, "Dense_0/kernel");
    CHECK(v && v->kind == LX_V_BOX && lx_box_get_kind(v->u.box) == lx_box_get_kind(box));
    CHECK(v && strs_are(lx_box_names(v->u.box), 2, names));
    CHECK(v && lx_f32(lx_box_unbox(v->u.box))[3] == 3.5f);
    lx_box_release(box);
    lx_release(k);
    lx_release(g);
    lx_tree_release(params);
    lx_tree_release(grads);
    lx_tree_release(state);
    optax_tx_release(tx);
}

int main(void) {
    RUN(test_docstring_adam);
    RUN(test_docstring_adamw);
    RUN(test_docstring_nadam);
    RUN(test_docstring_sgd);
    RUN(test_docstring_lion);
    RUN(test_docstring_adafactor);
    RUN(test_docstring_rmsprop);
    RUN(test_weight_decay_schedule);
    RUN(test_schedule_fallbacks);
    RUN(test_join_depth);
    RUN(test_adafactor_lr_none);
    RUN(test_adam_first_step);
    RUN(test_schedule_cosine);
    RUN(test_schedule_warmup_cosine);
    RUN(test_schedule_polynomial);
    RUN(test_schedule_exponential_join_piecewise);
    RUN(test_formulas);
    RUN(test_factored);
    RUN(test_state_layout);
    RUN(test_inject);
    RUN(test_inject_f32_arithmetic);
    RUN(test_errors);
    RUN(test_apply_updates_kinds);
    RUN(test_from_string);
    RUN(test_step_buffers);
    RUN(test_emulation_runs);
    RUN(test_emulation_schedules);
    RUN(test_mask_helpers);
    RUN(test_mu_dtype_bf16);
    RUN(test_moments_keep_bf16);
    RUN(test_boxed_params);
    return lx_test_finish();
}
