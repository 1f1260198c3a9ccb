/* The fused optimizer step (src/train/optax_fused.c) against the unfused path: for adam, adamw
 * (with and without decay, constant and scheduled learning rates) and sgd (plain, momentum,
 * Nesterov), optax_step / TrainState.apply_gradients / nnx.Optimizer.update — which take the fused
 * pass — must give params and optimizer state bit for bit equal to optax_update followed by
 * optax_apply_updates, with the same state layout, over several steps, on leaves whose sizes cover
 * the vector lanes and their remainders, under every kernel set this CPU runs. The §A.7 docstring
 * runs and the float32 emulation fixtures in test_optax.c go through optax_step too, so the fused
 * pass also meets the published vectors there. */
#include "linnx/fault.h"
#include "linnx/nnx.h"
#include "linnx/nnx_layers.h"
#include "linnx/optax.h"
#include "linnx/train.h"
#include "lx_test.h"

/* lane remainders, and one leaf over the threading threshold (65536) split unevenly */
static const int64_t SIZES[][2] = {{1, 1}, {1, 7}, {1, 8}, {1, 33}, {64, 37}, {3, 1000}, {301, 401}};
enum { NLEAF = sizeof SIZES / sizeof SIZES[0] };

/* params {"a": {"l0": ..., "l1": ...}, "b": {...}} with values from a key */
static lx_tree *make_tree(uint32_t seed, float scale) {
    lx_tree *t = lx_tree_new();
    for (int i = 0; i < NLEAF; i++) {
        lx_array *a = lx_random_normal(lx_key_from_seed(seed + (uint32_t)i), 2, SIZES[i]);
        for (int64_t j = 0; a && j < a->size; j++) lx_f32(a)[j] *= scale;
        char path[32];
        snprintf(path, sizeof path, "%s/l%d", i % 2 ? "b" : "a", i);
        lx_tree_set_path(t, path, lx_array_v(a));
    }
    return t;
}

/* Every leaf of a and b (same paths) equal bit for bit; returns the number of differing floats. */
static int64_t tree_diff(const lx_tree *a, const lx_tree *b) {
    lx_flat fa = {0}, fb = {0};
    if (lx_tree_flatten(a, &fa) != LX_OK || lx_tree_flatten(b, &fb) != LX_OK || fa.len != fb.len) {
        lx_flat_free(&fa);
        lx_flat_free(&fb);
        return -1;
    }
    int64_t bad = 0;
    for (size_t i = 0; i < fa.len; i++) {
        lx_value *va = &fa.items[i].value;
        const lx_value *vb = lx_tree_find(b, fa.items[i].path);
        if (!vb || va->kind != vb->kind) {
            bad++;
            continue;
        }
        if (va->kind != LX_V_ARRAY) continue;
        const lx_array *x = va->u.array, *y = vb->u.array;
        if (x->dtype != y->dtype || !lx_same_shape(x, y)) {
            bad++;
            continue;
        }
        if (x != y && memcmp(x->data, y->data, lx_array_nbytes(x))) bad++;
    }
    lx_flat_free(&fa);
    lx_flat_free(&fb);
    return bad;
}

static char *layout(const lx_tree *state) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    optax_state_layout(f, state);
    fclose(f);
    return buf;
}

static const char *const EXPRS[] = {
    "adam(1e-3)",
    "adam(0.01, b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-3)",
    "adamw(3e-4, weight_decay=0.1)",
    "adamw(3e-4, weight_decay=0.0)",
    "adamw(exponential_decay(0.1, 3, 0.5), weight_decay=0.05)",
    "adam(warmup_cosine_decay_schedule(0.0, 1e-3, 2, 10))",
    "sgd(0.1)",
    "sgd(0.1, momentum=0.9)",
    "sgd(0.05, momentum=0.9, nesterov=True)",
    "sgd(linear_schedule(0.1, 0.01, 5))",
};

/* optax_step (fused) against update + apply_updates (unfused), 6 steps, gradients changing per
 * step. */
static void compare_step(const char *expr) {
    optax_tx *tx = optax_from_string(expr);
    LX_TEST_REPORT_(tx != NULL, "%s: %s", expr, lx_last_error());
    if (!tx) return;
    lx_tree *pf = make_tree(1, 1.0f), *pu = make_tree(1, 1.0f), *sf = NULL, *su = NULL;
    CHECK(optax_init(tx, pf, &sf) == LX_OK);
    CHECK(optax_init(tx, pu, &su) == LX_OK);
    int64_t worst_p = 0, worst_s = 0;
    for (int step = 0; step < 6 && sf && su; step++) {
        lx_tree *g = make_tree(100 + 10 * (uint32_t)step, 0.5f);
        lx_clear_error();
        uint64_t f0 = optax_fused_steps();
        CHECK(optax_step(tx, g, &pf, &sf) == LX_OK);
        LX_TEST_REPORT_(optax_fused_steps() == f0 + 1, "%s: optax_step did not take the fused pass", expr);
        CHECK(lx_last_status() == LX_OK); /* the fused pass leaves no message behind */
        lx_tree *upd = NULL, *ns = NULL, *np = NULL;
        CHECK(optax_update(tx, g, su, pu, &upd, &ns) == LX_OK);
        CHECK(optax_apply_updates(pu, upd, &np) == LX_OK);
        lx_tree_release(upd);
        lx_tree_release(pu);
        lx_tree_release(su);
        pu = np;
        su = ns;
        int64_t dp = tree_diff(pf, pu), ds = tree_diff(sf, su);
        if (dp < 0 || dp > worst_p) worst_p = dp < 0 ? 999 : dp;
        if (ds < 0 || ds > worst_s) worst_s = ds < 0 ? 999 : ds;
        lx_tree_release(g);
    }
    LX_TEST_REPORT_(worst_p == 0 && worst_s == 0, "%s (%s): %lld param leaves and %lld state leaves differ", expr,
                    lx_isa_name(lx_isa_current()), (long long)worst_p, (long long)worst_s);
    char *la = layout(sf), *lb = layout(su);
    LX_TEST_REPORT_(la && lb && !strcmp(la, lb), "%s: state layouts differ:\n%s---\n%s", expr, la ? la : "",
                    lb ? lb : "");
    free(la);
    free(lb);
    lx_tree_release(pf);
    lx_tree_release(pu);
    lx_tree_release(sf);
    lx_tree_release(su);
    optax_tx_release(tx);
}

static void test_fused_equals_unfused(void) {
    for (size_t k = 0; k < sizeof EXPRS / sizeof EXPRS[0]; k++) compare_step(EXPRS[k]);
}

/* The same under every kernel set this CPU runs (the fused pass has a baseline and an AVX2 body). */
static void test_every_isa(void) {
    const char *names[] = {"generic", "avx2", "avx512"};
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        CHECK(lx_isa_set(names[s]) == LX_OK);
        compare_step("adamw(3e-4, weight_decay=0.1)");
        compare_step("sgd(0.05, momentum=0.9, nesterov=True)");
    }
    lx_isa_set(NULL);
}

/* The big leaf split over 1, 2 and 3 threads: the same bits as the unfused path each time. */
static void test_threads(void) {
    int nt0 = lx_num_threads();
    for (int nt = 1; nt <= 3; nt++) {
        lx_set_num_threads(nt);
        compare_step("adamw(3e-4, weight_decay=0.1)");
        compare_step("sgd(0.05, momentum=0.9, nesterov=True)");
    }
    lx_set_num_threads(nt0);
}

/* Adam's first fused step in float32 moves params by -lr*sign(g) up to the rounding test_optax.c
 * documents: [1,2,3] with g = 2x lands on [0.997 + 1 ulp, 1.997, 2.997] (spec/training.md §A.7). */
static void test_first_step_vector(void) {
    optax_tx *tx = optax_adam(OPTAX_CONST(0.003), NULL);
    lx_tree *p = lx_tree_new(), *g = lx_tree_new(), *s = NULL;
    lx_array *pa = lx_array_from_f32(1, (const int64_t[]){3}, (const float[]){1, 2, 3});
    lx_array *ga = lx_array_from_f32(1, (const int64_t[]){3}, (const float[]){2, 4, 6});
    lx_tree_set(p, "x", lx_array_v(pa));
    lx_tree_set(g, "x", lx_array_v(ga));
    lx_release(pa);
    lx_release(ga);
    CHECK(optax_init(tx, p, &s) == LX_OK);
    CHECK(optax_step(tx, g, &p, &s) == LX_OK);
    const float *x = lx_f32(lx_tree_get(p, "x")->u.array);
    CHECK(lx_ulp_distance(x[0], 0.997f) == 1 && x[1] == 1.997f && x[2] == 2.997f);
    lx_tree_release(p);
    lx_tree_release(g);
    lx_tree_release(s);
    optax_tx_release(tx);
}

/* Errors still come from the unfused path with its messages, and change nothing. */
static void test_errors_unchanged(void) {
    optax_tx *tx = optax_adam(OPTAX_CONST(1e-3), NULL);
    lx_tree *p = make_tree(1, 1.0f), *s = NULL, *g = make_tree(5, 1.0f);
    CHECK(optax_init(tx, p, &s) == LX_OK);
    lx_tree *bad = lx_tree_copy(g);
    lx_array *wrong = lx_array_new(LX_F32, 2, (const int64_t[]){2, 2});
    lx_tree_set_path(bad, "a/l0", lx_array_v(wrong));
    lx_release(wrong);
    lx_tree *p0 = p, *s0 = s;
    CHECK(optax_step(tx, bad, &p, &s) == LX_ERR_SHAPE);
    CHECK(strstr(lx_last_error(), "gradients leaf at 'a/l0' has shape (2, 2)") != NULL);
    CHECK(p == p0 && s == s0);
    /* a state of another optimizer */
    lx_tree *sgd_state = NULL;
    optax_tx *sgd = optax_sgd(OPTAX_CONST(0.1), true, 0.9, false);
    CHECK(optax_init(sgd, p, &sgd_state) == LX_OK);
    CHECK(optax_step(tx, g, &p, &sgd_state) == LX_ERR_SHAPE);
    CHECK(strstr(lx_last_error(), "optimizer state has no '0/count'") != NULL);
    /* bfloat16 params decline the fused pass and still train through the unfused one */
    lx_tree *pb = lx_tree_new(), *gb = lx_tree_new(), *sb = NULL;
    lx_array *b16 = lx_array_new(LX_BF16, 1, (const int64_t[]){4});
    lx_array *g32 = lx_array_full_f32(1, (const int64_t[]){4}, 1.0f);
    lx_tree_set(pb, "w", lx_array_v(b16));
    lx_tree_set(gb, "w", lx_array_v(g32));
    lx_release(b16);
    lx_release(g32);
    CHECK(optax_init(tx, pb, &sb) == LX_OK);
    lx_clear_error();
    uint64_t f0 = optax_fused_steps();
    CHECK(optax_step(tx, gb, &pb, &sb) == LX_OK);
    CHECK(optax_fused_steps() == f0);
    CHECK(lx_last_status() == LX_OK);
    CHECK(lx_tree_get(pb, "w")->u.array->dtype == LX_BF16);
    lx_tree_release(pb);
    lx_tree_release(gb);
    lx_tree_release(sb);
    lx_tree_release(sgd_state);
    optax_tx_release(sgd);
    lx_tree_release(bad);
    lx_tree_release(p);
    lx_tree_release(s);
    lx_tree_release(g);
    optax_tx_release(tx);
}

/* A gradient tree: every array (or Variable value) of `st` times k, as plain arrays. */
static lx_tree *scaled(const lx_tree *st, float k) {
    lx_flat f = {0}, o = {0};
    lx_tree *t = NULL;
    if (lx_tree_flatten(st, &f) != LX_OK) return NULL;
    for (size_t i = 0; i < f.len; i++) {
        const lx_value *v = &f.items[i].value;
        lx_array *a = v->kind == LX_V_VARIABLE ? lx_variable_get_value(v->u.var) : v->kind == LX_V_ARRAY ? v->u.array : NULL;
        if (!a) continue;
        lx_array *c = lx_array_copy(a);
        for (int64_t j = 0; c && j < c->size; j++) lx_f32(c)[j] *= k;
        lx_flat_append(&o, f.items[i].path, lx_array_v(c));
        lx_release(c);
    }
    lx_tree_unflatten(&o, &t);
    lx_flat_free(&f);
    lx_flat_free(&o);
    return t;
}

/* TrainState.apply_gradients and
 * nnx.Optimizer.update (Variables written back) match the unfused path too. */
static void test_train_state_and_optimizer(void) {
    optax_tx *tx = optax_from_string("adamw(1e-2, weight_decay=0.1)");
    lx_tree *p = make_tree(7, 1.0f), *g = make_tree(8, 1.0f);
    linen_train_state *s = NULL;
    CHECK(linen_train_state_create(NULL, p, optax_tx_retain(tx), &s) == LX_OK);
    lx_tree *pu = lx_tree_retain(p), *su = NULL;
    CHECK(optax_init(tx, pu, &su) == LX_OK);
    for (int i = 0; i < 3 && s && su; i++) {
        linen_train_state *n = NULL;
        uint64_t f0 = optax_fused_steps();
        CHECK(linen_train_state_apply_gradients(s, g, &n) == LX_OK);
        CHECK(optax_fused_steps() == f0 + 1);
        linen_train_state_free(s);
        s = n;
        lx_tree *upd = NULL, *ns = NULL, *np = NULL; /* the unfused reference: update + apply_updates */
        CHECK(optax_update(tx, g, su, pu, &upd, &ns) == LX_OK);
        CHECK(optax_apply_updates(pu, upd, &np) == LX_OK);
        lx_tree_release(upd);
        lx_tree_release(pu);
        lx_tree_release(su);
        pu = np;
        su = ns;
    }
    if (s) {
        CHECK(s->step == 3);
        CHECK(tree_diff(s->params, pu) == 0 && tree_diff(s->opt_state, su) == 0);
    }
    linen_train_state_free(s);
    lx_tree_release(pu);
    lx_tree_release(su);
    lx_tree_release(p);
    lx_tree_release(g);

    /* nnx.Optimizer over a Linear: fused (no updates asked) against the same with updates asked
     * (which runs update + apply_updates) */
    nnx_rngs *r1 = NULL, *r2 = NULL;
    nnx_linear *m1 = NULL, *m2 = NULL;
    CHECK(nnx_rngs_from_seed(0, &r1) == LX_OK && nnx_rngs_from_seed(0, &r2) == LX_OK);
    CHECK(nnx_linear_new(33, 9, r1, &m1) == LX_OK && nnx_linear_new(33, 9, r2, &m2) == LX_OK);
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    nnx_optimizer *o1 = NULL, *o2 = NULL;
    CHECK(m1 && m2 && nnx_optimizer_new(&m1->base, optax_tx_retain(tx), &param, &o1) == LX_OK);
    CHECK(m2 && nnx_optimizer_new(&m2->base, optax_tx_retain(tx), &param, &o2) == LX_OK);
    for (int i = 0; i < 3 && o1 && o2; i++) {
        lx_tree *st = NULL;
        CHECK(nnx_state(&m1->base, 1, &param, &st) == LX_OK);
        lx_tree *gr = scaled(st, 0.25f * (float)(i + 1));
        CHECK(gr != NULL);
        lx_tree *upd = NULL;
        uint64_t f0 = optax_fused_steps();
        CHECK(nnx_optimizer_update(o1, &m1->base, gr, NULL) == LX_OK);
        CHECK(optax_fused_steps() == f0 + 1);
        CHECK(nnx_optimizer_update(o2, &m2->base, gr, &upd) == LX_OK);
        CHECK(optax_fused_steps() == f0 + 1 && upd != NULL);
        lx_tree_release(upd);
        lx_tree_release(gr);
        lx_tree_release(st);
    }
    lx_tree *s1 = NULL, *s2 = NULL;
    CHECK(nnx_state(&m1->base, 1, &param, &s1) == LX_OK && nnx_state(&m2->base, 1, &param, &s2) == LX_OK);
    CHECK(s1 && s2 && tree_diff(s1, s2) == 0);
    CHECK(o1 && o2 && tree_diff(nnx_optimizer_opt_state(o1), nnx_optimizer_opt_state(o2)) == 0);
    CHECK(nnx_optimizer_step(o1) == 3);
    lx_tree_release(s1);
    lx_tree_release(s2);
    nnx_optimizer_free(o1);
    nnx_optimizer_free(o2);
    if (m1) nnx_module_release(&m1->base);
    if (m2) nnx_module_release(&m2->base);
    if (r1) nnx_rngs_release(r1);
    if (r2) nnx_rngs_release(r2);
    optax_tx_release(tx);
}

/* The first leaf's data pointer (to see whether a step wrote in place). */
static const void *first_data(const lx_tree *params) {
    const lx_value *v = lx_tree_find(params, "a/l0");
    return v && v->kind == LX_V_ARRAY ? v->u.array->data : NULL;
}

/* apply_gradients with the old state donated: the same bits as apply_gradients, in place once
 * nothing else holds the state (optax_step too), never in place while something does (a tree or
 * an array the caller kept is unchanged), and a failed donated step leaves the state as it was. */
static void test_donated(void) {
    optax_tx *tx = optax_from_string("adamw(1e-2, weight_decay=0.1)");
    lx_tree *p = make_tree(7, 1.0f), *g = make_tree(8, 1.0f);
    linen_train_state *sd = NULL, *sr = NULL;
    CHECK(linen_train_state_create(NULL, p, optax_tx_retain(tx), &sd) == LX_OK);
    CHECK(linen_train_state_create(NULL, p, optax_tx_retain(tx), &sr) == LX_OK);
    lx_tree_release(p); /* the states hold the only references now */
    lx_pool_drain();    /* and no pool holds the arrays make_tree drew */
    int in_place = 0;
    for (int i = 0; i < 4 && sd && sr; i++) {
        const void *before = first_data(sd->params);
        linen_train_state *d = sd, *n = NULL;
        CHECK(linen_train_state_apply_gradients_donated(&sd, g) == LX_OK);
        CHECK(sd != d && sd->step == i + 1);
        in_place += first_data(sd->params) == before;
        CHECK(linen_train_state_apply_gradients(sr, g, &n) == LX_OK);
        linen_train_state_free(sr);
        sr = n;
        CHECK(tree_diff(sd->params, sr->params) == 0 && tree_diff(sd->opt_state, sr->opt_state) == 0);
    }
    /* create's params came from a pool-free tree: every step could write in place */
    CHECK(!lx_array_cache_enabled() || in_place >= 3);
    /* a caller holding the params tree: the donated step must not write into it */
    lx_tree *held = sd ? lx_tree_retain(sd->params) : NULL;
    lx_tree *copy = held ? scaled(held, 1.0f) : NULL;
    if (sd && sr) {
        linen_train_state *n = NULL;
        CHECK(linen_train_state_apply_gradients_donated(&sd, g) == LX_OK);
        CHECK(linen_train_state_apply_gradients(sr, g, &n) == LX_OK);
        linen_train_state_free(sr);
        sr = n;
        CHECK(tree_diff(held, copy) == 0); /* unchanged */
        CHECK(tree_diff(sd->params, sr->params) == 0 && tree_diff(sd->opt_state, sr->opt_state) == 0);
    }
    lx_tree_release(held);
    lx_tree_release(copy);
    /* a failed donated step (gradients of another structure): the state is the same object, same values */
    if (sd) {
        lx_tree *bad = lx_tree_new();
        lx_array *one = lx_array_scalar_f32(1.0f);
        lx_tree_set_path(bad, "a/zz", lx_array_v(one));
        lx_release(one);
        linen_train_state *before = sd;
        lx_tree *pc = scaled(sd->params, 1.0f), *sc = scaled(sd->opt_state, 1.0f);
        CHECK_FAILS(linen_train_state_apply_gradients_donated(&sd, bad), LX_ERR_SHAPE,
                    "update: the gradients have no leaf at 'a/l0'");
        CHECK(sd == before && tree_diff(sd->params, pc) == 0 && tree_diff(sd->opt_state, sc) == 0);
        lx_clear_error();
        lx_tree_release(pc);
        lx_tree_release(sc);
        lx_tree_release(bad);
    }
    /* an allocation failing anywhere in a donated step (fault injection: the n-th allocation fails,
     * for every n the step makes): the state is the same object with the same values, nothing was
     * written in place before the failure */
    for (int64_t n = 1; sd && lx_fault_available() && n < 10000; n++) {
        linen_train_state *before = sd;
        int64_t step = sd->step;
        lx_tree *pc = scaled(sd->params, 1.0f), *sc = scaled(sd->opt_state, 1.0f);
        lx_fault_set(n, false);
        lx_status st = linen_train_state_apply_gradients_donated(&sd, g);
        bool fired = lx_fault_fired();
        lx_fault_set(-1, false);
        if (st != LX_OK) {
            CHECK(fired && st == LX_ERR_NO_MEMORY);
            CHECK(sd == before && sd->step == step && tree_diff(sd->params, pc) == 0 &&
                  tree_diff(sd->opt_state, sc) == 0);
            lx_clear_error();
        }
        lx_tree_release(pc);
        lx_tree_release(sc);
        if (!fired) break; /* past the step's last allocation */
    }
    CHECK(linen_train_state_apply_gradients_donated(NULL, g) == LX_ERR_INVALID_ARGUMENT);
    lx_clear_error();
    linen_train_state_free(sd);
    linen_train_state_free(sr);
    lx_tree_release(g);
    optax_tx_release(tx);
}

int main(void) {
    RUN(test_fused_equals_unfused);
    RUN(test_every_isa);
    RUN(test_threads);
    RUN(test_first_step_vector);
    RUN(test_errors_unchanged);
    RUN(test_train_state_and_optimizer);
    RUN(test_donated);
    optax_release_buffers();
    lx_pool_drain();
    return lx_test_finish();
}
