/* Random numbers against JAX: published vectors (spec/jax-random.md §7) and fixtures generated
 * by scripts/gen_random_fixtures.py from the reference model. Keys, bits, uniform and bernoulli
 * must be bit-exact; normal and truncated_normal may differ by 1 ulp (the count is printed). */
#include <string.h>

#include "linnx/random.h"
#include "lx_test.h"
#include "fixtures/random_fixtures.h"

static float f32_of(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}
/* numpy prints float32 with at most 8 fractional digits: printed value p matches v when f32(p)
 * is v or they are within half a unit of the 8th digit. */
static int printed_close(float v, double p) { return (float)p == v || fabs((double)v - p) <= 0.5e-8 * 1.0000001; }

#define CHECK_KEY(key, a, b)                                                                  \
    do {                                                                                      \
        lx_key k_ = (key);                                                                    \
        LX_TEST_REPORT_(k_.k[0] == (uint32_t)(a) && k_.k[1] == (uint32_t)(b),                 \
                        "%s = [%u, %u], want [%u, %u]", #key, k_.k[0], k_.k[1], (unsigned)(a), \
                        (unsigned)(b));                                                       \
    } while (0)

static int64_t ulp_total_diff, ulp_total_elems; /* normal / truncated_normal 1-ulp accounting */
static uint32_t ulp_max;

/* ---------------------------------------------------------------- §1, §2 published vectors */

static void test_threefry_kats(void) {
    uint32_t y[2];
    lx_threefry2x32(0, 0, 0, 0, y);
    CHECK_EQ_U32(y[0], 0x6b200159u);
    CHECK_EQ_U32(y[1], 0x99ba4efeu);
    lx_threefry2x32(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, y);
    CHECK_EQ_U32(y[0], 0x1cb996fcu);
    CHECK_EQ_U32(y[1], 0xbb002be7u);
    lx_threefry2x32(0x13198a2eu, 0x03707344u, 0x243f6a88u, 0x85a308d3u, y);
    CHECK_EQ_U32(y[0], 0xc4923a9cu);
    CHECK_EQ_U32(y[1], 0x483df7a0u);
    for (size_t i = 0; i < sizeof RF_THREEFRY / sizeof RF_THREEFRY[0]; i++) {
        const rf_tf *t = &RF_THREEFRY[i];
        lx_threefry2x32(t->k[0], t->k[1], t->x[0], t->x[1], y);
        LX_TEST_REPORT_(y[0] == t->y[0] && y[1] == t->y[1], "threefry case %zu", i);
    }
}

static void test_seeds(void) {
    /* test_prng_seeds_and_keys */
    CHECK_KEY(lx_key_from_seed(0), 0, 0);
    CHECK_KEY(lx_key_from_seed(-1), 0, 4294967295u);
    CHECK_KEY(lx_key_from_seed(2147483647LL + 100), 0, 2147483747u);
    CHECK_KEY(lx_key_from_seed(-2147483648LL - 100), 0, 2147483548u);
    CHECK_KEY(lx_key_from_seed(-2), 0, 4294967294u);
    CHECK_KEY(lx_key_from_seed_x64(0), 0, 0);
    CHECK_KEY(lx_key_from_seed_x64(-1), 4294967295u, 4294967295u);
    CHECK_KEY(lx_key_from_seed_x64(2147483647LL + 100), 0, 2147483747u);
    CHECK_KEY(lx_key_from_seed_x64(-2147483648LL - 100), 4294967295u, 2147483548u);
    CHECK_KEY(lx_key_from_seed((int64_t)1 << 32 | 5), 0, 5);
    CHECK_KEY(lx_key_from_seed_x64((int64_t)1 << 32 | 5), 1, 5);
    CHECK_KEY(lx_key_from_seed_x64(((int64_t)1 << 40) + 7), 256, 7);
    for (size_t i = 0; i < sizeof RF_SEEDS / sizeof RF_SEEDS[0]; i++) {
        const rf_seed *s = &RF_SEEDS[i];
        lx_key a = lx_key_from_seed(s->seed), b = lx_key_from_seed_x64(s->seed);
        LX_TEST_REPORT_(a.k[0] == s->x32[0] && a.k[1] == s->x32[1], "seed %lld x32", (long long)s->seed);
        LX_TEST_REPORT_(b.k[0] == s->x64[0] && b.k[1] == s->x64[1], "seed %lld x64", (long long)s->seed);
    }
}

static void test_fold_in_split(void) {
    lx_key k0 = lx_key_from_seed(0);
    /* stateful_rng.py doctest and testPRNGValues */
    CHECK_KEY(lx_key_fold_in(k0, 0), 1797259609u, 2579123966u);
    CHECK_KEY(lx_key_fold_in(k0, 1), 928981903u, 3453687069u);
    CHECK_KEY(lx_key_fold_in(k0, 4), 2285895361u, 433833334u);
    CHECK_KEY(lx_nnx_stream_key(k0, 0), 1797259609u, 2579123966u);
    lx_key ks[4];
    CHECK(lx_key_split(k0, 4, true, ks) == LX_OK);
    CHECK_KEY(ks[0], 2285895361u, 1501764800u);
    CHECK_KEY(ks[1], 1518642379u, 4090693311u);
    CHECK_KEY(ks[2], 433833334u, 4221794875u);
    CHECK_KEY(ks[3], 839183663u, 3740430601u);
    CHECK(lx_key_split(k0, 2, true, ks) == LX_OK);
    CHECK_KEY(ks[0], 4146024105u, 967050713u);
    CHECK_KEY(ks[1], 2718843009u, 1272950319u);
    /* partitionable split(key, n)[i] == fold_in(key, i) */
    CHECK(lx_key_split(k0, 4, false, ks) == LX_OK);
    for (uint32_t i = 0; i < 4; i++) {
        lx_key f = lx_key_fold_in(k0, i);
        CHECK(ks[i].k[0] == f.k[0] && ks[i].k[1] == f.k[1]);
    }
    for (size_t i = 0; i < sizeof RF_FOLDS / sizeof RF_FOLDS[0]; i++) {
        const rf_fold *t = &RF_FOLDS[i];
        lx_key k = {{t->k[0], t->k[1]}}, r = lx_key_fold_in(k, t->data);
        LX_TEST_REPORT_(r.k[0] == t->out[0] && r.k[1] == t->out[1], "fold_in case %zu", i);
    }
    for (size_t i = 0; i < sizeof RF_SPLITS / sizeof RF_SPLITS[0]; i++) {
        const rf_split *t = &RF_SPLITS[i];
        lx_key k = {{t->k[0], t->k[1]}}, out[17];
        CHECK(lx_key_split(k, t->n, t->legacy, out) == LX_OK);
        int ok = 1;
        for (int j = 0; j < t->n; j++) ok &= out[j].k[0] == t->out[2 * j] && out[j].k[1] == t->out[2 * j + 1];
        LX_TEST_REPORT_(ok, "split case %zu (n=%d legacy=%d)", i, t->n, t->legacy);
    }
    CHECK(lx_key_split(k0, 0, false, NULL) == LX_OK);
    CHECK_FAILS(lx_key_split(k0, -1, false, ks), LX_ERR_INVALID_ARGUMENT, "num must be >= 0");
    CHECK_FAILS(lx_key_split(k0, 3, true, NULL), LX_ERR_INVALID_ARGUMENT, "NULL");
}

static void test_published_bits(void) {
    lx_random_set_legacy(true);
    CHECK(lx_random_legacy());
    int64_t three[] = {3};
    lx_array *b = lx_random_bits(lx_key_from_seed(1701), 1, three);
    CHECK(b && b->dtype == LX_U32);
    CHECK_EQ_U32(lx_u32(b)[0], 56197195u);
    CHECK_EQ_U32(lx_u32(b)[1], 4200222568u);
    CHECK_EQ_U32(lx_u32(b)[2], 961309823u);
    int64_t s48[] = {4, 8};
    static const uint32_t legacy_row0[] = {1274352978u, 3436178359u, 3399368453u, 2238402666u,
                                           3288695047u, 1266601002u, 1774680043u, 3045801153u};
    static const uint32_t part_row0[] = {4070199207u, 4202968722u, 1427181096u, 2012915765u,
                                         2447653815u, 710830403u,  1332275837u, 2961296638u};
    b = lx_random_bits(lx_key_from_seed(0), 2, s48);
    CHECK(b && memcmp(lx_u32(b), legacy_row0, sizeof legacy_row0) == 0);
    lx_random_set_legacy(false);
    CHECK(!lx_random_legacy());
    b = lx_random_bits(lx_key_from_seed(0), 2, s48);
    CHECK(b && b->ndim == 2 && b->shape[0] == 4 && b->shape[1] == 8);
    CHECK(b && memcmp(lx_u32(b), part_row0, sizeof part_row0) == 0);
    /* Legacy, one element: the only pair is (0, 0) and the value is y0, not y0 ^ y1. */
    lx_random_set_legacy(true);
    uint32_t one, y[2];
    CHECK(lx_random_bits_into(lx_key_from_seed(9), 1, &one) == LX_OK);
    lx_threefry2x32(0, 9, 0, 0, y);
    CHECK_EQ_U32(one, y[0]);
    lx_random_set_legacy(false);
    CHECK(lx_random_bits_into(lx_key_from_seed(9), 1, &one) == LX_OK);
    CHECK_EQ_U32(one, y[0] ^ y[1]);
}

static void test_published_floats(void) {
    /* docs/jep/9263-typed-keys.md (partitionable) */
    int64_t s3[] = {3};
    lx_array *u = lx_random_uniform(lx_key_from_seed(0), 1, s3, 0.0f, 1.0f);
    CHECK(u != NULL);
    const double want_u[] = {0.947667, 0.9785799, 0.33229148};
    for (int i = 0; i < 3; i++) LX_TEST_REPORT_(printed_close(lx_f32(u)[i], want_u[i]), "uniform key(0)[%d] = %.9g", i, lx_f32(u)[i]);
    /* initializers.py truncated_normal(5.0) docstring, legacy, key(42) */
    lx_random_set_legacy(true);
    int64_t s23[] = {2, 3};
    lx_array *t = lx_random_truncated_normal(lx_key_from_seed(42), -2.0f, 2.0f, 2, s23);
    CHECK(t != NULL);
    const double want_t[] = {2.9047365, 5.2338114, 5.29852, -3.836303, -4.192359, 0.6022964};
    for (int i = 0; i < 6; i++) {
        float v = lx_f32(t)[i] * 5.0f;
        LX_TEST_REPORT_(printed_close(v, want_t[i]), "truncated_normal(5.0) [%d] = %.9g want %.9g", i, v, want_t[i]);
    }
    /* uniform(10.0) docstring, legacy, key(42) */
    lx_array *u10 = lx_random_uniform(lx_key_from_seed(42), 2, s23, 0.0f, 1.0f);
    const double want_u10[] = {7.298188, 8.691938, 8.7230015, 2.0818567, 1.8662417, 5.5022564};
    for (int i = 0; i < 6; i++) {
        float v = lx_f32(u10)[i] * 10.0f;
        LX_TEST_REPORT_(printed_close(v, want_u10[i]), "uniform(10.0) [%d] = %.9g", i, v);
    }
    /* _RANDOM_VALUES_CASES (legacy, shape (5,), 6 printed digits) */
    int64_t s5[] = {5};
    lx_array *a = lx_random_uniform(lx_key_from_seed(1338574713), 1, s5, 0.0f, 1.0f);
    const double wu[] = {0.298671, 0.073213, 0.873356, 0.260549, 0.412797};
    for (int i = 0; i < 5; i++) CHECK_NEAR(lx_f32(a)[i], wu[i], 1e-6);
    a = lx_random_normal(lx_key_from_seed(1193674498), 1, s5);
    const double wn[] = {-1.173234, -1.511662, 0.070593, -0.099764, 1.052845};
    for (int i = 0; i < 5; i++) CHECK_NEAR(lx_f32(a)[i], wn[i], 1e-6);
    a = lx_random_truncated_normal(lx_key_from_seed(2846034731LL), 0.0f, 2.0f, 1, s5);
    const double wt[] = {0.582807, 1.709771, 0.159513, 0.861376, 0.36148};
    for (int i = 0; i < 5; i++) CHECK_NEAR(lx_f32(a)[i], wt[i], 1e-6);
    a = lx_random_bits(lx_key_from_seed(942802475), 1, s5);
    const uint32_t wb[] = {1978747883u, 4134381225u, 3628107870u, 689687174u, 2788938207u};
    CHECK(a && memcmp(lx_u32(a), wb, sizeof wb) == 0);
    lx_random_set_legacy(false);
    /* lax_numpy.py trunc doctest (partitionable, 2 decimals) */
    int64_t s33[] = {3, 3};
    a = lx_random_uniform(lx_key_from_seed(42), 2, s33, -10.0f, 10.0f);
    const double wd[] = {-0.23, 3.6, 2.33, 1.22, -0.99, 1.72, -8.5, 5.5, 3.98};
    for (int i = 0; i < 9; i++) CHECK_NEAR(lx_f32(a)[i], wd[i], 0.0051);
}

static void test_path_hash(void) {
    /* §6.2 */
    const char *d0[] = {"Dense_0"}, *d1[] = {"Dense_1"}, *tl[] = {"ToLinen_0"}, *abc[] = {"A", "B", "C"};
    CHECK_EQ_U32(lx_flax_path_hash(0, NULL, 1, false), 3213575472u);
    CHECK_EQ_U32(lx_flax_path_hash(0, NULL, 2, false), 3303678395u);
    CHECK_EQ_U32(lx_flax_path_hash(1, d0, 1, false), 2998342421u);
    CHECK_EQ_U32(lx_flax_path_hash(1, d0, 2, false), 2299943050u);
    CHECK_EQ_U32(lx_flax_path_hash(1, d1, 1, false), 111800540u);
    CHECK_EQ_U32(lx_flax_path_hash(1, tl, 1, false), 699869245u);
    CHECK_EQ_U32(lx_flax_path_hash(3, abc, 1, false), 947574064u);
    for (size_t i = 0; i < sizeof RF_HASHES / sizeof RF_HASHES[0]; i++) {
        const rf_hash *h = &RF_HASHES[i];
        uint32_t got = lx_flax_path_hash(h->n, h->names, h->count, h->fix);
        LX_TEST_REPORT_(got == h->hash, "hash case %zu: %u want %u", i, got, h->hash);
    }
    for (size_t i = 0; i < sizeof RF_LINEN / sizeof RF_LINEN[0]; i++) {
        const rf_linen *c = &RF_LINEN[i];
        lx_key root = {{c->root[0], c->root[1]}};
        lx_key k = lx_linen_make_rng_key(root, c->n, c->path, c->count);
        LX_TEST_REPORT_(k.k[0] == c->key[0] && k.k[1] == c->key[1], "linen key case %zu", i);
    }
    /* The ToLinen derivation of §6.3: K = make_rng at the root with count 1, then NNX counts. */
    lx_key K = lx_linen_make_rng_key(lx_key_from_seed(0), 0, NULL, 1);
    CHECK_KEY(K, lx_key_fold_in(lx_key_from_seed(0), 3213575472u).k[0],
              lx_key_fold_in(lx_key_from_seed(0), 3213575472u).k[1]);
    CHECK_KEY(lx_nnx_stream_key(K, 1), lx_key_fold_in(K, 1).k[0], lx_key_fold_in(K, 1).k[1]);
}

static void test_erf(void) {
    for (size_t i = 0; i < sizeof RF_ERF_INV / sizeof RF_ERF_INV[0]; i++) {
        float x = f32_of(RF_ERF_INV[i].x), y = lx_erf_inv_f32(x);
        uint32_t d = lx_ulp_distance(y, f32_of(RF_ERF_INV[i].y));
        LX_TEST_REPORT_(d == 0, "erf_inv(%.9g) = %.9g, want %.9g", x, y, f32_of(RF_ERF_INV[i].y));
    }
    CHECK(isinf(lx_erf_inv_f32(1.0f)) && lx_erf_inv_f32(1.0f) > 0);
    CHECK(isinf(lx_erf_inv_f32(-1.0f)) && lx_erf_inv_f32(-1.0f) < 0);
    for (size_t i = 0; i < sizeof RF_ERF / sizeof RF_ERF[0]; i++) {
        float x = f32_of(RF_ERF[i].x), y = lx_erf_f32(x);
        LX_TEST_REPORT_(bits_of(y) == RF_ERF[i].y, "erf(%.9g) = %.9g, want %.9g", x, y, f32_of(RF_ERF[i].y));
    }
    /* §3.3: erf(-2/sqrt2) = -0.95449972f (0xBF745A18) */
    CHECK_EQ_U32(bits_of(lx_erf_f32(-2.0f / 1.41421354f)), 0xBF745A18u);
}

/* ---------------------------------------------------------------- fixtures */

static lx_array *run_sampler(const rf_sample *c) {
    lx_key k = {{c->key[0], c->key[1]}};
    if (!strcmp(c->kind, "bits")) return lx_random_bits(k, c->ndim, c->shape);
    if (!strcmp(c->kind, "uniform")) return lx_random_uniform(k, c->ndim, c->shape, c->a, c->b);
    if (!strcmp(c->kind, "normal")) return lx_random_normal(k, c->ndim, c->shape);
    if (!strcmp(c->kind, "truncated_normal")) return lx_random_truncated_normal(k, c->a, c->b, c->ndim, c->shape);
    if (!strcmp(c->kind, "bernoulli")) return lx_random_bernoulli(k, c->a, c->ndim, c->shape);
    return NULL;
}

static void test_sampler_fixtures(void) {
    int64_t nd_normal = 0, n_normal = 0;
    for (size_t i = 0; i < sizeof RF_SAMPLES / sizeof RF_SAMPLES[0]; i++) {
        const rf_sample *c = &RF_SAMPLES[i];
        lx_random_set_legacy(c->legacy);
        size_t mark = lx_pool_open();
        lx_array *a = run_sampler(c);
        LX_TEST_REPORT_(a && a->size == c->n && a->ndim == c->ndim, "sample case %zu (%s) shape", i, c->kind);
        if (!a || a->size != c->n) {
            lx_pool_close(mark);
            continue;
        }
        int exact = !strcmp(c->kind, "bits") || !strcmp(c->kind, "uniform") || !strcmp(c->kind, "bernoulli");
        int64_t bad = 0, ndiff = 0;
        uint32_t maxd = 0;
        for (int64_t j = 0; j < c->n; j++) {
            uint32_t got;
            if (a->dtype == LX_BOOL) got = lx_bool(a)[j];
            else memcpy(&got, (uint32_t *)a->data + j, 4);
            if (exact) {
                bad += got != c->expect[j];
            } else {
                uint32_t d = lx_ulp_distance(f32_of(got), f32_of(c->expect[j]));
                ndiff += d != 0;
                bad += d > 1;
                if (d > maxd) maxd = d;
            }
        }
        if (!exact) {
            nd_normal += ndiff;
            n_normal += c->n;
            if (maxd > ulp_max) ulp_max = maxd;
        }
        LX_TEST_REPORT_(bad == 0, "sample case %zu: %s legacy=%d ndim=%d n=%lld: %lld elements off", i,
                        c->kind, c->legacy, c->ndim, (long long)c->n, (long long)bad);
        lx_pool_close(mark);
    }
    lx_random_set_legacy(false);
    ulp_total_diff += nd_normal;
    ulp_total_elems += n_normal;
    printf("sampler fixtures: normal/truncated_normal: %lld of %lld elements differ by 1 ulp\n",
           (long long)nd_normal, (long long)n_normal);
}

static uint32_t fnv(const uint32_t *v, int64_t n) {
    uint32_t h = 0x811C9DC5u;
    for (int64_t i = 0; i < n; i++) h = (h ^ v[i]) * 0x01000193u;
    return h;
}

/* Arrays big enough for the OpenMP paths: spot values at block edges, and a hash of everything. */
static void test_big_arrays(void) {
    lx_key k = {{RF_BIG_KEY[0], RF_BIG_KEY[1]}};
    int64_t n = RF_BIG_N;
    const int nspots = (int)(sizeof RF_BIG_SPOTS / sizeof RF_BIG_SPOTS[0]);
    for (size_t i = 0; i < sizeof RF_BIG / sizeof RF_BIG[0]; i++) {
        const rf_big *c = &RF_BIG[i];
        lx_random_set_legacy(c->legacy);
        lx_array *a = NULL;
        if (!strcmp(c->kind, "bits")) a = lx_random_bits(k, 1, &n);
        else if (!strcmp(c->kind, "uniform")) a = lx_random_uniform(k, 1, &n, c->a, c->b);
        else if (!strcmp(c->kind, "normal")) a = lx_random_normal(k, 1, &n);
        else a = lx_random_truncated_normal(k, c->a, c->b, 1, &n);
        CHECK(a != NULL);
        if (!a) continue;
        const uint32_t *v = (const uint32_t *)a->data;
        int exact = !strcmp(c->kind, "bits") || !strcmp(c->kind, "uniform");
        for (int s = 0; s < nspots; s++) {
            uint32_t d = exact ? (v[RF_BIG_SPOTS[s]] != c->spot[s]) : lx_ulp_distance(f32_of(v[RF_BIG_SPOTS[s]]), f32_of(c->spot[s]));
            LX_TEST_REPORT_(d <= (exact ? 0u : 1u), "big %s legacy=%d at %lld", c->kind, c->legacy, (long long)RF_BIG_SPOTS[s]);
            if (!exact) {
                ulp_total_diff += d != 0;
                ulp_total_elems++;
            }
        }
        if (exact) LX_TEST_REPORT_(fnv(v, n) == c->fnv, "big %s legacy=%d hash", c->kind, c->legacy);
        /* The _into variant gives the same values. */
        if (!strcmp(c->kind, "uniform")) {
            float *buf = malloc((size_t)n * sizeof *buf);
            CHECK(lx_random_uniform_into(k, n, c->a, c->b, buf) == LX_OK);
            CHECK(memcmp(buf, a->data, (size_t)n * 4) == 0);
            free(buf);
        }
    }
    lx_random_set_legacy(false);
}

static void test_bernoulli_is_uniform_lt_p(void) {
    int64_t s[] = {257};
    for (int legacy = 0; legacy < 2; legacy++) {
        lx_random_set_legacy(legacy);
        lx_array *u = lx_random_uniform(lx_key_from_seed(3), 1, s, 0.0f, 1.0f);
        lx_array *b = lx_random_bernoulli(lx_key_from_seed(3), 0.7f, 1, s);
        CHECK(u && b && b->dtype == LX_BOOL);
        int ok = 1;
        for (int i = 0; i < 257; i++) ok &= lx_bool(b)[i] == (lx_f32(u)[i] < 0.7f);
        CHECK(ok);
        b = lx_random_bernoulli(lx_key_from_seed(3), 0.0f, 1, s);
        int64_t ones = 0;
        for (int i = 0; i < 257; i++) ones += lx_bool(b)[i];
        CHECK_EQ_INT(ones, 0);
    }
    lx_random_set_legacy(false);
}

static void test_errors(void) {
    int64_t neg[] = {-3};
    lx_clear_error();
    CHECK_NULL_FAILS(lx_random_uniform(lx_key_from_seed(0), 1, neg, 0, 1), LX_ERR_SHAPE, "negative dimension");
    CHECK_ERROR_HAS("uniform");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_random_normal(lx_key_from_seed(0), 2, NULL), LX_ERR_INVALID_ARGUMENT, "shape is NULL");
    CHECK_FAILS(lx_random_bits_into(lx_key_from_seed(0), -1, NULL), LX_ERR_INVALID_ARGUMENT, "negative size");
    CHECK_FAILS(lx_random_normal_into(lx_key_from_seed(0), 4, NULL), LX_ERR_INVALID_ARGUMENT, "output buffer is NULL");
    CHECK_FAILS(lx_random_truncated_normal_into(lx_key_from_seed(0), -2, 2, 4, NULL), LX_ERR_INVALID_ARGUMENT, "truncated_normal");
    CHECK_FAILS(lx_random_bernoulli_into(lx_key_from_seed(0), 0.5f, 4, NULL), LX_ERR_INVALID_ARGUMENT, "bernoulli");
    CHECK(lx_random_uniform_into(lx_key_from_seed(0), 0, 0, 1, NULL) == LX_OK);
    /* Empty and scalar arrays. */
    int64_t zero[] = {0};
    lx_array *e = lx_random_normal(lx_key_from_seed(0), 1, zero);
    CHECK(e && e->size == 0);
    lx_array *sc = lx_random_bits(lx_key_from_seed(0), 0, NULL);
    CHECK(sc && sc->ndim == 0 && sc->size == 1);
}

int main(void) {
    RUN(test_threefry_kats);
    RUN(test_seeds);
    RUN(test_fold_in_split);
    RUN(test_published_bits);
    RUN(test_published_floats);
    RUN(test_path_hash);
    RUN(test_erf);
    RUN(test_sampler_fixtures);
    RUN(test_big_arrays);
    RUN(test_bernoulli_is_uniform_lt_p);
    RUN(test_errors);
    printf("normal/truncated_normal overall: %lld of %lld elements differ by 1 ulp (max %u ulp)\n",
           (long long)ulp_total_diff, (long long)ulp_total_elems, ulp_max);
    return lx_test_finish();
}
