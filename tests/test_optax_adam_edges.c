/* The fused adam step's edge values (src/train/optax_fused.c, adam_avx2_fma): its bias correction
 * is a float division by Markstein's fused multiply-add correction, valid for moments that are 0
 * or within [2^-100, 2^80]; groups of 16 elements holding any other moment (tiny nonzero,
 * subnormal, huge, inf, nan) take the double form. Here the fused step (in place: optax_step on
 * trees nothing else holds; and into fresh arrays: a caller keeps the old params) must equal
 * optax_update + optax_apply_updates bit for bit (any NaN equals any NaN: payloads are not part of
 * optax's contract) over several steps, with moments and gradients holding such values at scattered
 * positions, on leaves of 1..16k+remainder elements and one over the threading threshold, for
 * adam, adamw and hyperparameters whose bias correction 1 - b^t is tiny (b2 = 0.99999: 1e-5) or
 * exactly 1 (b1 = 0: the correction divides by 1) or 0 (b2 = 1: the division by zero keeps
 * the double form), under every kernel set this CPU runs. */
#include "linnx/cpu.h"
#include "linnx/optax.h"
#include "lx_test.h"

static const int64_t SIZES[][2] = {{1, 1}, {1, 15}, {1, 16}, {1, 17}, {1, 31}, {2, 33}, {64, 37}, {301, 401}};
enum { NLEAF = sizeof SIZES / sizeof SIZES[0] };

static lx_tree *make_tree(uint32_t seed, float scale) {
    lx_tree *t = lx_tree_new();
    for (int i = 0; i < NLEAF; i++) {
        lx_array *a = lx_random_normal(lx_key_from_seed(seed + (uint32_t)i), 2, SIZES[i]);
        for (int64_t j = 0; a && j < a->size; j++) lx_f32(a)[j] *= scale;
        char path[32];
        snprintf(path, sizeof path, "l%d", i);
        lx_tree_set_path(t, path, lx_array_v(a));
    }
    return t;
}

static float bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The values the fast path must leave to the double form, and the ones at its edges. */
static float special(int64_t j, bool square) {
    static const uint32_t V[] = {
        0x00000000u, 0x80000000u, /* +-0: the fast path, sign kept */
        0x00000001u, 0x807fffffu, /* subnormal */
        0x0d7fffffu, 0x0d800000u, /* just under 2^-100, 2^-100 */
        0x8d800001u, 0x1e000000u, /* tiny, normal */
        0x67800000u, 0xe7800001u, /* 2^80, just over */
        0x7f7fffffu, 0x7f800000u, /* FLT_MAX, inf */
        0xff800000u, 0x7fc00000u, /* -inf, nan */
    };
    float f = bits(V[(j / 7) % (sizeof V / sizeof V[0])]);
    return square ? fabsf(f) : f; /* the second moment of a real run is never negative */
}

/* Write special values into every `every`-th element of the leaves of `t` whose path contains
 * `part` ("" for all). */
static void sprinkle(lx_tree *t, const char *part, int every, bool square) {
    lx_flat f = {0};
    if (lx_tree_flatten(t, &f) != LX_OK) return;
    for (size_t i = 0; i < f.len; i++) {
        if (f.items[i].value.kind != LX_V_ARRAY || !strstr(f.items[i].path, part)) continue;
        lx_array *a = f.items[i].value.u.array;
        if (a->dtype != LX_F32) continue;
        for (int64_t j = (int64_t)i % every; j < a->size; j += every) lx_f32(a)[j] = special(j, square);
    }
    lx_flat_free(&f);
}

/* Differing floats of same-path leaves (NaN == NaN); -1 for different structures. */
static int64_t diff(const lx_tree *a, const lx_tree *b) {
    lx_flat fa = {0};
    if (lx_tree_flatten(a, &fa) != LX_OK) return -1;
    int64_t bad = 0;
    for (size_t i = 0; i < fa.len; i++) {
        const lx_value *va = &fa.items[i].value, *vb = lx_tree_find(b, fa.items[i].path);
        if (!vb || va->kind != vb->kind) {
            bad++;
            continue;
        }
        if (va->kind != LX_V_ARRAY) continue;
        const lx_array *x = va->u.array, *y = vb->u.array;
        if (x->dtype != LX_F32 || y->dtype != LX_F32 || x->size != y->size) {
            bad += x->dtype != y->dtype || x->size != y->size;
            continue;
        }
        for (int64_t j = 0; j < x->size; j++) {
            float p = lx_f32(x)[j], q = lx_f32(y)[j];
            if (memcmp(&p, &q, sizeof p) && !(isnan(p) && isnan(q))) bad++;
        }
    }
    lx_flat_free(&fa);
    return bad;
}

/* A deep copy with arrays of its own, empty sub-maps kept (lx_tree_set keeps a reference to what
 * it is given). */
static lx_tree *copy_tree(const lx_tree *t) {
    lx_tree *r = lx_tree_new();
    for (size_t i = 0; r && i < lx_tree_len(t); i++) {
        const lx_value *v = lx_tree_at(t, i);
        if (v->kind == LX_V_TREE) {
            lx_tree *c = copy_tree(v->u.tree);
            lx_tree_set(r, lx_tree_key(t, i), lx_tree_v(c));
            lx_tree_release(c);
        } else if (v->kind == LX_V_ARRAY) {
            const lx_array *src = v->u.array;
            lx_array *a = lx_array_empty(src->dtype, src->ndim, src->shape);
            if (a) memcpy(a->data, src->data, lx_array_nbytes(a));
            lx_tree_set(r, lx_tree_key(t, i), lx_array_v(a));
            lx_release(a);
        } else {
            lx_tree_set(r, lx_tree_key(t, i), *v);
        }
    }
    return r;
}

/* `steps` steps of expr from the same params, state and gradients, fused (in place, or into fresh
 * arrays when `keep`) against unfused; special values in the gradients and the moments. */
static void compare(const char *expr, bool keep, int steps) {
    optax_tx *tx = optax_from_string(expr);
    CHECK(tx != NULL);
    if (!tx) return;
    lx_tree *p0 = make_tree(3, 1.0f), *g = make_tree(4, 0.01f);
    sprinkle(g, "", 23, false);
    lx_tree *s0 = NULL;
    CHECK(optax_init(tx, p0, &s0) == LX_OK);
    sprinkle(s0, "mu", 29, false);
    sprinkle(s0, "nu", 31, true);
    /* separate storage for the two paths: the fused one writes into its own */
    lx_tree *pr = copy_tree(p0), *sr = copy_tree(s0), *pf = copy_tree(p0), *sf = copy_tree(s0);
    lx_tree_release(p0);
    lx_tree_release(s0);
    lx_pool_drain();
    for (int t = 0; t < steps && pr && sr && pf && sf; t++) {
        lx_tree *u = NULL, *ns = NULL, *np = NULL;
        CHECK(optax_update(tx, g, sr, pr, &u, &ns) == LX_OK);
        CHECK(optax_apply_updates(pr, u, &np) == LX_OK);
        lx_tree_release(u);
        lx_tree_release(pr);
        lx_tree_release(sr);
        pr = np;
        sr = ns;
        lx_tree *held = keep ? lx_tree_retain(pf) : NULL; /* a caller keeps the old params */
        uint64_t fused = optax_fused_steps();
        CHECK(optax_step(tx, g, &pf, &sf) == LX_OK);
        CHECK(optax_fused_steps() == fused + 1);
        lx_tree_release(held);
        if (!pr || !sr || !pf || !sf) break;
        int64_t dp = diff(pf, pr), ds = diff(sf, sr);
        if (dp || ds) fprintf(stderr, "%s (keep %d) step %d: %lld params, %lld state floats differ\n", expr, keep, t + 1,
                              (long long)dp, (long long)ds);
        CHECK_EQ_INT(dp, 0);
        CHECK_EQ_INT(ds, 0);
    }
    lx_tree_release(pr);
    lx_tree_release(sr);
    lx_tree_release(pf);
    lx_tree_release(sf);
    lx_tree_release(g);
    lx_pool_drain();
    optax_tx_release(tx);
}

static const char *const EXPRS[] = {
    "adam(1e-3)",
    "adamw(3e-4, weight_decay=0.1)",
    "adam(1e-2, b1=0.5, b2=0.99999, eps=1e-6, eps_root=1e-12)",
    "adam(1e-2, b1=0.0, b2=0.999)",
    "adam(1e-2, b1=0.9, b2=1.0)",
    /* bc1 = 1 - 2^-24 (the largest float below 1, a full significand) and bc2 = 1 - (1 - 2^-24)^t,
     * about t 2^-24: the FMA-corrected division where its remainder is not exact */
    "adam(1e-2, b1=5.9604645e-08, b2=0.99999994)",
    "adamw(warmup_cosine_decay_schedule(0.0, 1e-3, 2, 10), weight_decay=0.01)",
};

/* Under every kernel set this CPU runs (the AVX2 one is the kernel under test). */
static void test_edges(void) {
    const char *names[] = {"generic", "avx2", "avx512"};
    for (int s = 0; s < 3; s++) {
        if (!lx_isa_supported((lx_isa)s)) continue;
        CHECK(lx_isa_set(names[s]) == LX_OK);
        for (size_t i = 0; i < sizeof EXPRS / sizeof EXPRS[0]; i++) {
            compare(EXPRS[i], false, 4);
            compare(EXPRS[i], true, 3);
        }
    }
    lx_isa_set(NULL);
}

/* Many steps of plain adam (1 - b^t from 0.1 / 0.001 toward 1): every step's correction constant. */
static void test_many_steps(void) { compare("adam(1e-3)", false, 40); }

static void test_threads(void) {
    int nt = lx_num_threads();
    lx_set_num_threads(2);
    compare("adamw(3e-4, weight_decay=0.1)", false, 3);
    lx_set_num_threads(nt);
}

int main(void) {
    RUN(test_edges);
    RUN(test_many_steps);
    RUN(test_threads);
    optax_release_buffers();
    lx_pool_drain();
    return lx_test_finish();
}
