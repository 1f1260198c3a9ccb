/* jax.random.permutation and randint against the reference model (scripts/gen_perm_fixtures.py
 * over spec/jax_random_ref.py): exact int32 values for keys, sizes, both bit schemes, the
 * one-to-two-round boundary of the shuffle, and the argument errors. */
#include "linnx/random.h"
#include "lx_test.h"
#include "fixtures/perm_fixtures.h"

static uint32_t fnv(const int32_t *v, int64_t n) {
    uint32_t h = 0x811C9DC5u;
    for (int64_t i = 0; i < n; i++) h = (h ^ (uint32_t)v[i]) * 0x01000193u;
    return h;
}

static void test_permutation_fixtures(void) {
    size_t bad = 0;
    for (size_t c = 0; c < sizeof PF_PERMS / sizeof PF_PERMS[0]; c++) {
        const pf_perm *p = &PF_PERMS[c];
        lx_random_set_legacy(p->legacy);
        lx_key key = {{p->key[0], p->key[1]}};
        CHECK_EQ_INT(lx_random_shuffle_rounds(p->n), p->rounds);
        lx_array *a = lx_random_permutation(key, p->n);
        CHECK(a && a->dtype == LX_I32 && a->ndim == 1 && a->shape[0] == p->n);
        if (!a) continue;
        for (int64_t i = 0; i < p->n; i++)
            if (lx_i32(a)[i] != p->expect[i]) {
                bad++;
                fprintf(stderr, "permutation case %zu (n=%lld legacy=%d) differs at %lld\n", c, (long long)p->n,
                        p->legacy, (long long)i);
                break;
            }
    }
    CHECK_EQ_INT(bad, 0);
    lx_random_set_legacy(false);
    lx_pool_drain();
}

static void test_permutation_two_rounds(void) {
    for (size_t c = 0; c < sizeof PF_BIG / sizeof PF_BIG[0]; c++) {
        const pf_big *b = &PF_BIG[c];
        lx_random_set_legacy(b->legacy);
        CHECK_EQ_INT(lx_random_shuffle_rounds(b->n), b->rounds);
        int32_t *v = malloc((size_t)b->n * sizeof *v);
        CHECK(lx_random_permutation_into((lx_key){{b->key[0], b->key[1]}}, b->n, v) == LX_OK);
        CHECK_EQ_U32(fnv(v, b->n), b->fnv);
        for (int i = 0; i < 8; i++) CHECK_EQ_INT(v[i], b->head[i]);
        /* every index once */
        char *seen = calloc((size_t)b->n, 1);
        int ok = 1;
        for (int64_t i = 0; i < b->n; i++) {
            if (v[i] < 0 || v[i] >= b->n || seen[v[i]]) ok = 0;
            else seen[v[i]] = 1;
        }
        CHECK(ok);
        free(seen);
        free(v);
    }
    lx_random_set_legacy(false);
    for (size_t c = 0; c < sizeof PF_ROUNDS / sizeof PF_ROUNDS[0]; c++)
        CHECK_EQ_INT(lx_random_shuffle_rounds(PF_ROUNDS[c].n), PF_ROUNDS[c].rounds);
}

/* _shuffle on caller values permutes them as it permutes arange. */
static void test_shuffle_values(void) {
    lx_key key = lx_key_from_seed(42);
    const pf_perm *p = NULL;
    for (size_t c = 0; c < sizeof PF_PERMS / sizeof PF_PERMS[0]; c++)
        if (!PF_PERMS[c].legacy && PF_PERMS[c].key[1] == 42 && PF_PERMS[c].n == 33) p = &PF_PERMS[c];
    CHECK(p != NULL);
    if (!p) return;
    int32_t x[33];
    for (int i = 0; i < 33; i++) x[i] = 1000 + 3 * i;
    CHECK(lx_random_shuffle_i32(key, 33, x) == LX_OK);
    for (int i = 0; i < 33; i++) CHECK_EQ_INT(x[i], 1000 + 3 * p->expect[i]);
}

static void test_randint_fixtures(void) {
    size_t bad = 0;
    for (size_t c = 0; c < sizeof PF_RANDINTS / sizeof PF_RANDINTS[0]; c++) {
        const pf_randint *r = &PF_RANDINTS[c];
        lx_random_set_legacy(r->legacy);
        int64_t shape[1] = {r->n};
        lx_array *a = lx_random_randint((lx_key){{r->key[0], r->key[1]}}, 1, shape, r->minval, r->maxval);
        CHECK(a && a->dtype == LX_I32);
        if (!a) continue;
        for (int64_t i = 0; i < r->n; i++) {
            int32_t v = lx_i32(a)[i];
            if (v != r->expect[i]) {
                bad++;
                fprintf(stderr, "randint case %zu [%lld, %lld) differs at %lld: %d vs %d\n", c,
                        (long long)r->minval, (long long)r->maxval, (long long)i, v, r->expect[i]);
                break;
            }
            /* the range property, independent of the fixture */
            if (r->maxval > r->minval && (v < r->minval || v >= r->maxval)) bad++;
            if (r->maxval <= r->minval && v != r->minval) bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    lx_random_set_legacy(false);
    lx_pool_drain();
}

static void test_errors(void) {
    int32_t buf[4];
    CHECK_FAILS(lx_random_permutation_into(lx_key_from_seed(0), -1, buf), LX_ERR_INVALID_ARGUMENT, "n must be >= 0");
    CHECK_FAILS(lx_random_permutation_into(lx_key_from_seed(0), 3, NULL), LX_ERR_INVALID_ARGUMENT, "NULL");
    CHECK_FAILS(lx_random_randint_into(lx_key_from_seed(0), 4, 0, (int64_t)1 << 31, buf), LX_ERR_INVALID_ARGUMENT,
                "must fit int32");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_random_permutation(lx_key_from_seed(0), -2), LX_ERR_INVALID_ARGUMENT,
                     "permutation: n must be >= 0");
    /* a scalar randint */
    lx_array *s = lx_random_randint(lx_key_from_seed(9), 0, NULL, 0, 1000);
    CHECK(s && s->ndim == 0 && s->size == 1 && lx_i32(s)[0] >= 0 && lx_i32(s)[0] < 1000);
    lx_pool_drain();
}

int main(void) {
    RUN(test_permutation_fixtures);
    RUN(test_permutation_two_rounds);
    RUN(test_shuffle_values);
    RUN(test_randint_fixtures);
    RUN(test_errors);
    return lx_test_finish();
}
