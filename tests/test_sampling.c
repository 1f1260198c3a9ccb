/* jax.random.gumbel / categorical, lax.top_k and MaxText's sampling against the reference model
 * (tests/fixtures/llama_fixtures.h, from scripts/gen_llama_fixtures.py), plus bad input. */
#include <math.h>
#include <string.h>

#include "fixtures/llama_fixtures.h"
#include "linnx/linnx.h"
#include "linnx/sampling.h"
#include "lx_test.h"

static lx_key key_of(const uint32_t k[2]) { return (lx_key){{k[0], k[1]}}; }

static void test_gumbel(void) {
    lx_array *g = lx_random_gumbel(lx_key_from_seed(0), 1, (int64_t[]){8});
    CHECK(same_bits(g, LF_GUMBEL_KEY0, 8));
    g = lx_random_gumbel(lx_key_fold_in(lx_key_from_seed(3), 9), 1, (int64_t[]){5});
    CHECK(same_bits(g, LF_GUMBEL_FOLD, 5));
}

static void test_categorical_cases(void) {
    int n = (int)(sizeof LF_CATEGORICAL / sizeof LF_CATEGORICAL[0]), ok = 0;
    for (int i = 0; i < n; i++) {
        const lf_cat *c = &LF_CATEGORICAL[i];
        float l[256];
        for (int j = 0; j < c->n; j++) l[j] = (float)sin(j * c->a) * (float)c->scale;
        lx_array *x = lx_autorelease(lx_array_from_f32(1, (int64_t[]){c->n}, l));
        lx_sampling s = {c->temperature, c->top_k};
        lx_array *t = lx_sample_tokens(key_of(c->key), x, &s);
        bool good = t && t->ndim == 0 && lx_i32(t)[0] == c->expect;
        LX_TEST_REPORT_(good, "case %d (key %u %u, n %d, T %g, k %d): got %d, want %d", i, c->key[0], c->key[1], c->n,
                        c->temperature, c->top_k, t ? lx_i32(t)[0] : -1, c->expect);
        ok += good;
        if (c->temperature == 1.0 && c->top_k == 0) {
            lx_array *u = lx_random_categorical(key_of(c->key), x);
            CHECK(u && lx_i32(u)[0] == c->expect);
        }
    }
    CHECK_EQ_INT(ok, n);
}

/* a batch of rows draws one gumbel array of the batch's shape */
static void test_categorical_batch(void) {
    float l[2 * 5] = {0, 1, 2, 3, 4, 4, 3, 2, 1, 0};
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 5}, l));
    lx_array *t = lx_random_categorical(lx_key_from_seed(7), x);
    lx_array *g = lx_random_gumbel(lx_key_from_seed(7), 2, (int64_t[]){2, 5});
    CHECK(t && g && lx_shape_eq(t, 1, (int64_t[]){2}));
    for (int r = 0; r < 2 && t && g; r++) {
        int best = 0;
        for (int c = 1; c < 5; c++)
            if (l[r * 5 + c] + lx_f32(g)[r * 5 + c] > l[r * 5 + best] + lx_f32(g)[r * 5 + best]) best = c;
        CHECK_EQ_INT(lx_i32(t)[r], best);
    }
    /* a very peaked row always picks its peak; greedy ignores the key */
    float p[4] = {-100, 50, -100, -100};
    lx_array *px = lx_autorelease(lx_array_from_f32(1, (int64_t[]){4}, p));
    for (int s = 0; s < 20; s++) CHECK_EQ_INT(lx_i32(lx_random_categorical(lx_key_from_seed(s), px))[0], 1);
    lx_sampling greedy = {0, 0};
    CHECK_EQ_INT(lx_i32(lx_sample_tokens(lx_key_from_seed(1), x, &greedy))[0], 4);
    CHECK_EQ_INT(lx_i32(lx_sample_tokens(lx_key_from_seed(1), x, &greedy))[1], 0);
}

static void test_top_k(void) {
    float l[6] = {1, 5, 3, 5, -2, 3};
    lx_array *x = lx_autorelease(lx_array_from_f32(1, (int64_t[]){6}, l)), *v, *i;
    CHECK_EQ_INT(lx_top_k(x, 4, &v, &i), LX_OK);
    int32_t wi[4] = {1, 3, 2, 5};
    float wv[4] = {5, 5, 3, 3};
    for (int j = 0; j < 4; j++) {
        CHECK_EQ_INT(lx_i32(i)[j], wi[j]);
        CHECK(lx_f32(v)[j] == wv[j]);
    }
    CHECK_FAILS(lx_top_k(x, 7, &v, &i), LX_ERR_INVALID_ARGUMENT, "k must be in 1..6");
    CHECK_FAILS(lx_top_k(x, 0, &v, &i), LX_ERR_INVALID_ARGUMENT, "k must be in 1..6");
}

/* lx_top_k against a selection done the slow way: k passes, each taking the first not yet taken
 * element in lax.top_k's order (NaN above every number, larger first, the lower index first
 * among equal values; -0 == +0). Rows full of ties, NaNs and signed zeros; k from 1 to C. */
static bool ref_before(float a, int ia, float b, int ib) {
    if (isnan(a) != isnan(b)) return isnan(a);
    if (!isnan(a) && a != b) return a > b;
    return ia < ib;
}

static void test_top_k_reference(void) {
    enum { R = 7, C = 37 };
    static const float pool[] = {1.0f, -1.0f, 0.0f, -0.0f, 2.5f, 2.5f, NAN, -INFINITY, INFINITY, 1.0f, -3.0f};
    float x[R * C];
    uint32_t st = 12345u;
    for (int i = 0; i < R * C; i++) {
        st = st * 1664525u + 1013904223u;
        x[i] = pool[(st >> 16) % (sizeof pool / sizeof pool[0])];
    }
    for (int c = 0; c < C; c++) x[c] = 4.0f; /* row 0: all equal */
    for (int c = 0; c < C; c++) x[C + c] = NAN; /* row 1: all NaN */
    lx_array *xa = lx_autorelease(lx_array_from_f32(2, (int64_t[]){R, C}, x));
    const int ks[] = {1, 2, 3, 5, 18, 36, 37};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        int k = ks[t];
        lx_array *v = NULL, *ix = NULL;
        CHECK_EQ_INT(lx_top_k(xa, k, &v, &ix), LX_OK);
        if (!v || !ix) continue;
        CHECK(v->ndim == 2 && v->shape[0] == R && v->shape[1] == k);
        int bad = 0;
        for (int r = 0; r < R; r++) {
            bool taken[C] = {0};
            for (int j = 0; j < k; j++) {
                int best = -1;
                for (int c = 0; c < C; c++)
                    if (!taken[c] && (best < 0 || ref_before(x[r * C + c], c, x[r * C + best], best))) best = c;
                taken[best] = true;
                float got = lx_f32(v)[r * k + j], want = x[r * C + best];
                if (lx_i32(ix)[r * k + j] != best || memcmp(&got, &want, sizeof got) != 0) bad++;
            }
        }
        LX_TEST_REPORT_(bad == 0, "top_k k=%d: %d entries differ from the reference", k, bad);
    }
}

static void test_bad_input(void) {
    float l[3] = {1, 2, 3};
    lx_array *x = lx_autorelease(lx_array_from_f32(1, (int64_t[]){3}, l));
    lx_sampling s = {-1, 0};
    CHECK_NULL_FAILS(lx_sample_tokens(lx_key_from_seed(0), x, &s), LX_ERR_INVALID_ARGUMENT,
                     "temperature must be a finite number >= 0 (0 = greedy), got -1");
    s = (lx_sampling){NAN, 0};
    CHECK_NULL_FAILS(lx_sample_tokens(lx_key_from_seed(0), x, &s), LX_ERR_INVALID_ARGUMENT,
                     "temperature must be a finite number >= 0 (0 = greedy), got nan");
    s = (lx_sampling){INFINITY, 0};
    CHECK_NULL_FAILS(lx_sample_tokens(lx_key_from_seed(0), x, &s), LX_ERR_INVALID_ARGUMENT,
                     "temperature must be a finite number >= 0 (0 = greedy), got inf");
    s = (lx_sampling){1, 4};
    CHECK_NULL_FAILS(lx_sample_tokens(lx_key_from_seed(0), x, &s), LX_ERR_INVALID_ARGUMENT,
                     "top_k must be in 0..3 (0 = all), got 4");
    /* top_k < 0 (sampling.h) */
    s = (lx_sampling){1, -1};
    CHECK_NULL_FAILS(lx_sample_tokens(lx_key_from_seed(0), x, &s), LX_ERR_INVALID_ARGUMENT,
                     "top_k must be in 0..3 (0 = all), got -1");
    lx_array *xi = lx_autorelease(lx_array_new(LX_I32, 1, (int64_t[]){3}));
    CHECK_NULL_FAILS(lx_random_categorical(lx_key_from_seed(0), xi), LX_ERR_DTYPE,
                     "categorical: logits must be float32 (..., C) with C >= 1, got int32[3]");
    lx_array *e = lx_autorelease(lx_array_new(LX_F32, 1, (int64_t[]){0}));
    CHECK_NULL_FAILS(lx_random_categorical(lx_key_from_seed(0), e), LX_ERR_SHAPE,
                     "categorical: logits must be float32 (..., C) with C >= 1, got float32[0]");
    s = (lx_sampling){1, 0};
    CHECK_NULL_FAILS(lx_sample_tokens(lx_key_from_seed(0), lx_autorelease(lx_array_scalar_f32(1)), &s), LX_ERR_SHAPE,
                     "sampling: logits must be float32");
    lx_array *va = NULL, *ia = NULL;
    CHECK_FAILS(lx_top_k(xi, 1, &va, &ia), LX_ERR_DTYPE, "top_k: logits must be float32");
    CHECK(va == NULL && ia == NULL);
    /* a NULL with nothing pending names itself; with a failure pending it keeps that one */
    CHECK_NULL_FAILS(lx_random_categorical(lx_key_from_seed(0), NULL), LX_ERR_FAILED_INPUT, "categorical: input is NULL");
    CHECK_FAILS(lx_top_k(NULL, 1, &va, &ia), LX_ERR_FAILED_INPUT, "top_k: input is NULL");
    lx_clear_error();
    CHECK(lx_matmul(xi, xi) == NULL);
    CHECK(lx_random_categorical(lx_key_from_seed(0), NULL) == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_DTYPE);
    CHECK_ERROR_HAS("matmul: ");
}

int main(void) {
    RUN(test_gumbel);
    RUN(test_categorical_cases);
    RUN(test_categorical_batch);
    RUN(test_top_k);
    RUN(test_top_k_reference);
    RUN(test_bad_input);
    return lx_test_finish();
}
