/* The layer helpers reuse the child modules they built (src/linen/layers_common.c, ll_new): a
 * module nobody holds serves the next equal call. Equal layers in one method must still be
 * separate instances (Dense_0, Dense_1, Dense_2 with their own params), on the first init and on
 * every later apply, and applies must compute with each layer's own params: checked against a
 * double-precision reference of x @ k0 + b0 -> @ k1 + b1 -> @ k2 + b2. And the cache does serve:
 * the modules the ops run in (seen through an op observer and the innermost module frame, kept
 * alive by the test until the apply ends so that an address cannot be reused by a new module)
 * are held by the cache afterwards, and are the very instances the next apply runs in (release
 * builds; sanitizer builds keep no cache). */
#include "../src/linen/linen_internal.h"
#include "linnx/intercept.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "lx_test.h"

enum { F = 4 };

static lx_array *three(linen_scope *s, lx_array *x) {
    x = linen_dense(s, NULL, F, x);
    x = linen_dense(s, NULL, F, x);
    return linen_dense(s, NULL, F, x);
}
static const linen_method M[] = {LINEN_ARRAY_METHOD("__call__", three)};
static const linen_type THREE = {.name = "Three", .methods = M, .nmethods = 1};

static const lx_array *param(const lx_tree *v, const char *path) {
    const lx_value *x = lx_tree_find(v, path);
    return x && x->kind == LX_V_ARRAY ? x->u.array : NULL;
}

static void reference(const lx_tree *v, const float *x, double *out) {
    double h[F], in[F];
    for (int i = 0; i < F; i++) in[i] = x[i];
    for (int l = 0; l < 3; l++) {
        char pk[64], pb[64];
        snprintf(pk, sizeof pk, "params/Dense_%d/kernel", l);
        snprintf(pb, sizeof pb, "params/Dense_%d/bias", l);
        const lx_array *k = param(v, pk), *b = param(v, pb);
        for (int j = 0; j < F; j++) {
            double acc = k && b ? lx_f32(b)[j] : 0;
            for (int i = 0; i < F && k; i++) acc += in[i] * (double)lx_f32(k)[i * F + j];
            h[j] = acc;
        }
        for (int j = 0; j < F; j++) in[j] = h[j];
    }
    for (int j = 0; j < F; j++) out[j] = in[j];
}

/* The distinct modules the ops of one call ran in, in order of first use. */
static struct {
    const linen_module *root;
    const linen_module *seen[8];
    int n;
} ran;
static void note_module(const lx_prim_event *ev, void *user) {
    (void)ev, (void)user;
    lx_frame_kind kind = 0;
    const void *top = lx_frame_top(&kind);
    if (kind != LX_FRAME_LINEN || !top) return;
    const linen_module *mod = linen_self((const linen_scope *)top);
    if (!mod || mod == ran.root) return;
    for (int i = 0; i < ran.n && i < 8; i++)
        if (ran.seen[i] == mod) return;
    if (ran.n < 8) ran.seen[ran.n] = linen_module_retain((linen_module *)mod);
    ran.n++;
}

#define CACHE_ON (!LX_TEST_ASAN)

static void test_equal_layers_stay_separate(void) {
    linen_module *m = NULL;
    CHECK(linen_module_new(&THREE, NULL, &m) == LX_OK);
    const float xv[F] = {0.5f, -1.0f, 2.0f, 0.25f};
    lx_array *x = lx_array_from_f32(2, (const int64_t[]){1, F}, xv);
    lx_tree *v = NULL;
    for (int round = 0; round < 3; round++) { /* later inits meet cached modules */
        lx_tree_release(v);
        v = NULL;
        CHECK(linen_init(m, LINEN_KEY(lx_key_from_seed((uint32_t)round)), &LX_ARGS(x), NULL, &v) == LX_OK);
        const lx_array *k0 = param(v, "params/Dense_0/kernel"), *k1 = param(v, "params/Dense_1/kernel"),
                       *k2 = param(v, "params/Dense_2/kernel");
        CHECK(k0 && k1 && k2 && !param(v, "params/Dense_3/kernel"));
        /* three layers, three different kernels (separate rng paths) */
        CHECK(k0 && k1 && k2 && memcmp(k0->data, k1->data, F * F * 4) && memcmp(k1->data, k2->data, F * F * 4));
    }
    double want[F];
    reference(v, xv, want);
    int handle = 0;
    CHECK_EQ_INT(lx_prim_observe(note_module, NULL, &handle), LX_OK);
    const linen_module *first[3] = {0};
    for (int i = 0; i < 4; i++) {
        lx_value out = lx_none();
        ran.root = m, ran.n = 0;
        CHECK(linen_apply(m, v, &LX_ARGS(x), LINEN_NO_RNGS, NULL, &out, NULL) == LX_OK);
        /* three separate child instances ran */
        CHECK_EQ_INT(ran.n, 3);
        CHECK(ran.n == 3 && ran.seen[0] != ran.seen[1] && ran.seen[1] != ran.seen[2] && ran.seen[0] != ran.seen[2]);
        if (i == 0) {
            for (int k = 0; k < 3; k++) first[k] = ran.seen[k];
        } else if (CACHE_ON) { /* ... and they are the ones the previous apply ran in, reused */
            for (int k = 0; k < 3; k++) {
                bool found = false;
                for (int j = 0; j < 3; j++) found = found || ran.seen[k] == first[j];
                LX_TEST_REPORT_(found, "apply %d: Dense_%d ran in a new module, not a cached one", i, k);
            }
        }
        /* the cache holds each (our reference + the cache's): kept alive by it, an equal address
         * in the next apply is the same module, not a new one at a reused address */
        for (int k = 0; k < ran.n && k < 8; k++) {
            if (CACHE_ON)
                LX_TEST_REPORT_(ran.seen[k]->refcount == 2, "apply %d: module %d has refcount %d after the apply", i,
                                k, ran.seen[k]->refcount);
            linen_module_release((linen_module *)ran.seen[k]);
        }
        const lx_array *y = out.kind == LX_V_ARRAY ? out.u.array : NULL;
        CHECK(y && y->size == F);
        for (int j = 0; y && j < F; j++) CHECK_NEAR(lx_f32(y)[j], want[j], 1e-5);
        lx_value_free(&out);
    }
    lx_prim_unobserve(handle);
    lx_tree_release(v);
    lx_release(x);
    linen_module_release(m);
}

int main(void) {
    RUN(test_equal_layers_stay_separate);
    lx_pool_drain();
    return lx_test_finish();
}
