/* Initializers against fixtures generated from the reference model (jax.nn.initializers
 * numerics), fans, the lecun_normal worked example, and every error path. */
#include <string.h>

#include "linnx/init.h"
#include "lx_test.h"
#include "fixtures/random_fixtures.h"

static float f32_of(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static lx_axes axes_of(const rf_axes *a) {
    lx_axes x = {a->n, {0}};
    for (int i = 0; i < a->n; i++) x.axis[i] = a->axis[i];
    return x;
}

static int is_truncated(const rf_init *c) {
    return strstr(c->name, "normal") != NULL ||
           (c->distribution && strstr(c->distribution, "normal") != NULL);
}

static lx_status build(const rf_init *c, lx_initializer *it) {
    if (!strcmp(c->name, "variance_scaling"))
        return lx_init_variance_scaling(c->scale, c->mode, c->distribution, axes_of(&c->in_axis),
                                        axes_of(&c->out_axis), axes_of(&c->batch_axis), it);
    if (!strcmp(c->name, "normal")) { *it = lx_init_normal(c->stddev); return LX_OK; }
    if (!strcmp(c->name, "uniform")) { *it = lx_init_uniform(c->scale); return LX_OK; }
    if (!strcmp(c->name, "truncated_normal")) {
        *it = lx_init_truncated_normal(c->stddev, c->lower, c->upper);
        return LX_OK;
    }
    if (!strcmp(c->name, "constant")) { *it = lx_init_constant(c->value); return LX_OK; }
    LX_TRY(lx_initializer_from_name(c->name, it));
    if (c->set_axes) {
        it->in_axis = axes_of(&c->in_axis);
        it->out_axis = axes_of(&c->out_axis);
        it->batch_axis = axes_of(&c->batch_axis);
    }
    return LX_OK;
}

static void test_init_fixtures(void) {
    int64_t ndiff_all = 0, nnormal = 0;
    for (size_t i = 0; i < sizeof RF_INITS / sizeof RF_INITS[0]; i++) {
        const rf_init *c = &RF_INITS[i];
        lx_initializer it;
        CHECK(build(c, &it) == LX_OK);
        lx_random_set_legacy(c->legacy);
        lx_key key = {{c->key[0], c->key[1]}};
        lx_array *a = lx_init_apply(&it, key, LX_F32, c->ndim, c->shape);
        LX_TEST_REPORT_(a && a->size == c->n, "init case %zu (%s) [%s]", i, c->name, lx_last_error());
        if (!a) continue;
        int normalish = is_truncated(c) && strcmp(c->name, "constant") != 0;
        int64_t bad = 0, ndiff = 0;
        for (int64_t j = 0; j < c->n; j++) {
            uint32_t d = lx_ulp_distance(lx_f32(a)[j], f32_of(c->expect[j]));
            ndiff += d != 0;
            bad += normalish ? d > 1 : d != 0;
        }
        if (normalish) {
            ndiff_all += ndiff;
            nnormal += c->n;
        }
        LX_TEST_REPORT_(bad == 0, "init case %zu: %s legacy=%d: %lld elements off", i, c->name, c->legacy,
                        (long long)bad);
    }
    lx_random_set_legacy(false);
    printf("initializer fixtures: normal-based: %lld of %lld elements differ by 1 ulp\n",
           (long long)ndiff_all, (long long)nnormal);
}

static void test_fans(void) {
    for (size_t i = 0; i < sizeof RF_FANS / sizeof RF_FANS[0]; i++) {
        const rf_fans *c = &RF_FANS[i];
        double fi = 0, fo = 0;
        CHECK(lx_compute_fans(c->ndim, c->shape, axes_of(&c->in_axis), axes_of(&c->out_axis),
                              axes_of(&c->batch_axis), &fi, &fo) == LX_OK);
        LX_TEST_REPORT_(fi == c->fan_in && fo == c->fan_out, "fans case %zu: %a %a want %a %a", i, fi, fo,
                        c->fan_in, c->fan_out);
    }
    /* Embed (7, 3) with out_axis=0: receptive = 21/3/7 is inexact in doubles, as in JAX. */
    double fi, fo;
    CHECK(lx_compute_fans(2, (int64_t[]){7, 3}, lx_axis(-2), lx_axis(0), lx_no_axes(), &fi, &fo) == LX_OK);
    CHECK(fi == 3.0 * (21.0 / 3.0 / 7.0));
    CHECK(lx_compute_fans(4, (int64_t[]){3, 3, 2, 16}, lx_axis(-2), lx_axis(-1), lx_no_axes(), &fi, &fo) == LX_OK);
    CHECK(fi == 18.0 && fo == 144.0);
}

static void test_worked_example(void) {
    /* lecun_normal for fan_in 4: stddev 0.56842363f (0x3F118436). Draw with a known truncated
     * normal sample and check the product uses exactly that stddev. */
    lx_initializer ln = lx_init_lecun_normal();
    int64_t shape[] = {4, 8};
    lx_array *w = lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 2, shape);
    lx_array *t = lx_random_truncated_normal(lx_key_from_seed(0), -2.0f, 2.0f, 2, shape);
    CHECK(w && t);
    const float sd = 0.56842363f;
    uint32_t sdbits;
    memcpy(&sdbits, &sd, 4);
    CHECK_EQ_U32(sdbits, 0x3F118436u);
    int ok = 1;
    for (int i = 0; i < 32; i++) ok &= lx_f32(w)[i] == lx_f32(t)[i] * sd;
    CHECK(ok);
    CHECK_STR(ln.name, "lecun_normal");
}

static void test_constants_and_dtypes(void) {
    int64_t s[] = {2, 3};
    lx_initializer z = lx_init_zeros(), o = lx_init_ones(), c = lx_init_constant(-2.5);
    lx_array *a = lx_init_apply(&o, lx_key_from_seed(0), LX_I32, 2, s);
    CHECK(a && a->dtype == LX_I32 && lx_i32(a)[5] == 1);
    a = lx_init_apply(&z, lx_key_from_seed(0), LX_BOOL, 2, s);
    CHECK(a && lx_bool(a)[0] == 0);
    a = lx_init_apply(&c, lx_key_from_seed(0), LX_I32, 2, s);
    CHECK(a && lx_i32(a)[0] == -2); /* numpy's cast truncates toward zero */
    a = lx_init_apply(&c, lx_key_from_seed(0), LX_BF16, 2, s);
    CHECK(a && ((uint16_t *)a->data)[3] == 0xC020); /* -2.5 in bfloat16 */
    a = lx_init_apply(&o, lx_key_from_seed(0), LX_F32, 0, NULL);
    CHECK(a && a->ndim == 0 && lx_f32(a)[0] == 1.0f);
    float buf[6];
    CHECK(lx_init_apply_into(&c, lx_key_from_seed(0), LX_F32, 2, s, buf) == LX_OK);
    CHECK(buf[5] == -2.5f);
    /* Empty shapes are fine for elementwise initializers. */
    lx_initializer nrm = lx_init_normal(1e-2);
    a = lx_init_apply(&nrm, lx_key_from_seed(0), LX_F32, 2, (int64_t[]){0, 4});
    CHECK(a && a->size == 0);
}

static void test_names(void) {
    static const char *ok[] = {"zeros", "ones", "zeros_init", "ones_init", "normal", "uniform", "truncated_normal",
                               "lecun_normal", "lecun_uniform", "glorot_normal", "glorot_uniform", "xavier_normal",
                               "xavier_uniform", "he_normal", "he_uniform", "kaiming_normal", "kaiming_uniform"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        lx_initializer it;
        LX_TEST_REPORT_(lx_initializer_from_name(ok[i], &it) == LX_OK, "name %s", ok[i]);
        CHECK_STR(it.name, ok[i]);
    }
    lx_initializer it;
    CHECK(lx_initializer_from_name("normal", &it) == LX_OK && it.kind == LX_INIT_NORMAL && it.stddev == 1e-2);
    CHECK(lx_initializer_from_name("uniform", &it) == LX_OK && it.scale == 1e-2);
    CHECK(lx_initializer_from_name("truncated_normal", &it) == LX_OK && it.lower == -2 && it.upper == 2);
    CHECK(lx_initializer_from_name("kaiming_uniform", &it) == LX_OK && it.kind == LX_INIT_VARIANCE_SCALING &&
          it.scale == 2.0 && it.mode == LX_FAN_IN && it.distribution == LX_DIST_UNIFORM);
    CHECK(lx_initializer_from_name("xavier_normal", &it) == LX_OK && it.mode == LX_FAN_AVG &&
          it.distribution == LX_DIST_TRUNCATED_NORMAL);
    CHECK_FAILS(lx_initializer_from_name("lecun", &it), LX_ERR_NOT_FOUND, "unknown initializer 'lecun'");
    CHECK_FAILS(lx_initializer_from_name("constant", &it), LX_ERR_INVALID_ARGUMENT, "needs a value");
    CHECK_FAILS(lx_initializer_from_name("variance_scaling", &it), LX_ERR_INVALID_ARGUMENT, "needs scale");
    CHECK_FAILS(lx_initializer_from_name("orthogonal", &it), LX_ERR_UNSUPPORTED, "orthogonal");
    CHECK_FAILS(lx_initializer_from_name(NULL, &it), LX_ERR_INVALID_ARGUMENT, "name is NULL");
    CHECK_FAILS(lx_initializer_from_name("zeros", NULL), LX_ERR_INVALID_ARGUMENT, "output is NULL");
}

static void test_errors(void) {
    lx_initializer it;
    lx_axes a2 = lx_axis(-2), a1 = lx_axis(-1), none = lx_no_axes();
    CHECK_FAILS(lx_init_variance_scaling(1.0, "fan_sum", "normal", a2, a1, none, &it), LX_ERR_INVALID_ARGUMENT,
                "invalid mode for variance scaling initializer: fan_sum");
    CHECK_FAILS(lx_init_variance_scaling(1.0, "fan_in", "cauchy", a2, a1, none, &it), LX_ERR_INVALID_ARGUMENT,
                "invalid distribution for variance scaling initializer: cauchy");
    CHECK_FAILS(lx_init_variance_scaling(1.0, NULL, "normal", a2, a1, none, &it), LX_ERR_INVALID_ARGUMENT,
                "invalid mode for variance scaling initializer: None");
    lx_axes too_many = {LX_MAX_DIMS + 1, {0}};
    CHECK_FAILS(lx_init_variance_scaling(1.0, "fan_in", "normal", too_many, a1, none, &it), LX_ERR_INVALID_ARGUMENT,
                "in_axis has 9 axes");
    CHECK_FAILS(lx_init_variance_scaling(1.0, "fan_in", "normal", a2, a1, none, NULL), LX_ERR_INVALID_ARGUMENT, "NULL");

    lx_initializer ln = lx_init_lecun_normal();
    int64_t s1[] = {5}, s48[] = {4, 8};
    lx_clear_error();
    CHECK_NULL_FAILS(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 1, s1), LX_ERR_SHAPE,
                     "Can't compute input and output sizes of a 1-dimensional weights tensor. Must be at least 2D.");
    CHECK_EQ_INT(lx_last_status(), LX_ERR_SHAPE);
    ln.in_axis = lx_axis(2);
    lx_clear_error();
    CHECK_NULL_FAILS(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 2, s48), LX_ERR_INVALID_ARGUMENT,
                     "in_axis 2 is out of range for a weights tensor of shape (4, 8)");
    ln = lx_init_lecun_normal();
    ln.out_axis = lx_axis(-3);
    lx_clear_error();
    CHECK_NULL_FAILS(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 2, s48), LX_ERR_INVALID_ARGUMENT,
                     "out_axis -3 is out of range");
    ln = lx_init_lecun_normal();
    ln.batch_axis = (lx_axes){2, {0, 5}};
    lx_clear_error();
    CHECK_NULL_FAILS(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 2, s48), LX_ERR_INVALID_ARGUMENT,
                     "batch_axis 5 is out of range");
    ln = lx_init_lecun_normal();
    lx_clear_error();
    CHECK_NULL_FAILS(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 2, (int64_t[]){0, 8}), LX_ERR_SHAPE,
                     "division by zero");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_init_apply(&ln, lx_key_from_seed(0), LX_BF16, 2, s48), LX_ERR_DTYPE, "only float32");
    CHECK_EQ_INT(lx_last_status(), LX_ERR_DTYPE);
    lx_clear_error();
    CHECK_NULL_FAILS(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 2, (int64_t[]){-1, 8}), LX_ERR_SHAPE,
                     "negative dimension");
    lx_clear_error();
    CHECK_NULL_FAILS(lx_init_apply(NULL, lx_key_from_seed(0), LX_F32, 2, s48), LX_ERR_INVALID_ARGUMENT,
                     "initializer is NULL");
    CHECK_FAILS(lx_init_apply_into(&ln, lx_key_from_seed(0), LX_F32, 2, s48, NULL), LX_ERR_INVALID_ARGUMENT,
                "output buffer is NULL");
    lx_initializer big = lx_init_constant(1e12);
    float buf[32];
    CHECK_FAILS(lx_init_apply_into(&big, lx_key_from_seed(0), LX_I32, 2, s48, buf), LX_ERR_INVALID_ARGUMENT,
                "does not fit int32");
    /* jnp.full(2, 3000000000, jnp.int32) and jnp.full(2, -5, jnp.uint32) are OverflowErrors: no
     * wrap-around (these wrote -1294967296 and 4294967291 before) */
    const int64_t s2[] = {2};
    int32_t ib[2] = {7, 7};
    lx_initializer c = lx_init_constant(3000000000.0);
    CHECK_FAILS(lx_init_apply_into(&c, lx_key_from_seed(0), LX_I32, 1, s2, ib), LX_ERR_INVALID_ARGUMENT,
                "constant: 3000000000 does not fit int32");
    CHECK(ib[0] == 7 && ib[1] == 7);
    c = lx_init_constant(2147483648.0);
    CHECK_FAILS(lx_init_apply_into(&c, lx_key_from_seed(0), LX_I32, 1, s2, ib), LX_ERR_INVALID_ARGUMENT, "int32");
    c = lx_init_constant(-5);
    CHECK_FAILS(lx_init_apply_into(&c, lx_key_from_seed(0), LX_U32, 1, s2, ib), LX_ERR_INVALID_ARGUMENT,
                "constant: -5 does not fit uint32");
    c = lx_init_constant(4294967296.0);
    CHECK_FAILS(lx_init_apply_into(&c, lx_key_from_seed(0), LX_U32, 1, s2, ib), LX_ERR_INVALID_ARGUMENT, "uint32");
    c = lx_init_constant(NAN);
    CHECK_FAILS(lx_init_apply_into(&c, lx_key_from_seed(0), LX_I32, 1, s2, ib), LX_ERR_INVALID_ARGUMENT, "int32");
    /* the edges fit; a fraction truncates toward zero */
    lx_clear_error();
    c = lx_init_constant(-2147483648.0);
    CHECK_EQ_INT(lx_init_apply_into(&c, lx_key_from_seed(0), LX_I32, 1, s2, ib), LX_OK);
    CHECK(ib[0] == INT32_MIN && ib[1] == INT32_MIN);
    c = lx_init_constant(4294967295.0);
    CHECK_EQ_INT(lx_init_apply_into(&c, lx_key_from_seed(0), LX_U32, 1, s2, ib), LX_OK);
    CHECK(ib[0] == -1 && ib[1] == -1); /* 0xffffffff */
    c = lx_init_constant(-0.75);
    CHECK_EQ_INT(lx_init_apply_into(&c, lx_key_from_seed(0), LX_U32, 1, s2, ib), LX_OK);
    CHECK(ib[0] == 0 && ib[1] == 0);
    c = lx_init_constant(-2.5);
    CHECK_EQ_INT(lx_init_apply_into(&c, lx_key_from_seed(0), LX_I32, 1, s2, ib), LX_OK);
    CHECK(ib[0] == -2 && ib[1] == -2);
    /* int8 is a dtype too: -128..127 (this failed with "invalid dtype 5") */
    int8_t qb[2] = {0, 0};
    c = lx_init_constant(-128);
    CHECK_EQ_INT(lx_init_apply_into(&c, lx_key_from_seed(0), LX_I8, 1, s2, qb), LX_OK);
    CHECK(qb[0] == -128 && qb[1] == -128);
    c = lx_init_constant(128);
    CHECK_FAILS(lx_init_apply_into(&c, lx_key_from_seed(0), LX_I8, 1, s2, qb), LX_ERR_INVALID_ARGUMENT,
                "constant: 128 does not fit int8");
    lx_initializer ones = lx_init_ones();
    lx_clear_error();
    CHECK_EQ_INT(lx_init_apply_into(&ones, lx_key_from_seed(0), LX_I8, 1, s2, qb), LX_OK);
    CHECK(qb[0] == 1 && qb[1] == 1);
    /* a zero-filled initializer (kind zeros, no name) names itself "init", not "(null)" */
    lx_initializer blank = {0};
    CHECK_FAILS(lx_init_apply_into(&blank, lx_key_from_seed(0), LX_F32, 1, s2, NULL), LX_ERR_INVALID_ARGUMENT,
                "init: output buffer is NULL");
    double fi, fo;
    CHECK_FAILS(lx_compute_fans(2, s48, lx_axis(-2), lx_axis(-1), lx_no_axes(), NULL, &fo), LX_ERR_INVALID_ARGUMENT,
                "compute_fans: fan_in or fan_out is NULL");
    CHECK_FAILS(lx_compute_fans(2, s48, lx_axis(-2), lx_axis(-1), lx_no_axes(), &fi, NULL), LX_ERR_INVALID_ARGUMENT,
                "compute_fans");
    CHECK_FAILS(lx_compute_fans(1, s1, lx_axis(-2), lx_axis(-1), lx_no_axes(), &fi, &fo), LX_ERR_SHAPE,
                "1-dimensional");
}

/* with_partitioning / with_logical_partitioning: the wrapper is metadata only (the values are the
 * base's, bit for bit, from the same key), stored inline so a by-value copy keeps it. */
static void test_partitioning(void) {
    lx_initializer ln = lx_init_lecun_normal(), wrapped;
    CHECK_EQ_INT(ln.partitioning.kind, LX_PARTITION_NONE);
    const char *names[] = {"embed", NULL};
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 2, names, "mesh0", &wrapped), LX_OK);
    CHECK_EQ_INT(wrapped.partitioning.kind, LX_PARTITION_PARTITIONED);
    CHECK_STR(wrapped.name, "lecun_normal");
    int64_t s[] = {4, 8};
    lx_array *a = lx_init_apply(&ln, lx_key_from_seed(7), LX_F32, 2, s); /* pool-owned */
    lx_array *b = lx_init_apply(&wrapped, lx_key_from_seed(7), LX_F32, 2, s);
    CHECK(a && b && lx_array_equal(a, b));

    /* A copy is self-contained: the caller's name strings may go away. */
    char tmp[16];
    strcpy(tmp, "mlp");
    const char *n2[] = {tmp};
    lx_initializer copy;
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 1, n2, NULL, &copy), LX_OK);
    lx_initializer moved = copy;
    strcpy(tmp, "XXX");
    const char *got[LX_MAX_DIMS];
    CHECK_EQ_INT(lx_init_partition_names(&moved, got), 1);
    CHECK_STR(got[0], "mlp");
    CHECK(lx_init_partition_mesh(&moved) == NULL);
    CHECK_EQ_INT(lx_init_partition_rules(&moved, (const char *[2 * LX_PARTITION_MAX_RULES]){0}), -1);

    CHECK_EQ_INT(lx_init_partition_names(&wrapped, got), 2);
    CHECK_STR(got[0], "embed");
    CHECK(got[1] == NULL);
    CHECK_STR(lx_init_partition_mesh(&wrapped), "mesh0");
    CHECK_EQ_INT(lx_init_partition_names(&ln, got), 0);
    CHECK(lx_init_partition_mesh(&ln) == NULL);

    /* Logical: rules=None, and rules with a None mesh axis. */
    lx_initializer lg;
    const char *rules[LX_PARTITION_MAX_RULES * 2] = {"out-alias", "out", "batch", NULL};
    const char *rgot[2 * LX_PARTITION_MAX_RULES];
    CHECK_EQ_INT(lx_init_with_logical_partitioning(&ln, 1, (const char *[]){"out-alias"}, NULL, 0, NULL, &lg), LX_OK);
    CHECK_EQ_INT(lg.partitioning.kind, LX_PARTITION_LOGICAL);
    CHECK_EQ_INT(lx_init_partition_rules(&lg, rgot), -1);
    CHECK_EQ_INT(lx_init_with_logical_partitioning(&ln, 1, (const char *[]){"out-alias"}, NULL, 4, rules, &lg), LX_OK);
    CHECK_EQ_INT(lx_init_partition_rules(&lg, rgot), 4);
    CHECK_STR(rgot[0], "out-alias");
    CHECK_STR(rgot[1], "out");
    CHECK_STR(rgot[2], "batch");
    CHECK(rgot[3] == NULL);
    lx_initializer empty;
    CHECK_EQ_INT(lx_init_with_logical_partitioning(&ln, 0, NULL, NULL, 0, rules, &empty), LX_OK);
    CHECK_EQ_INT(lx_init_partition_rules(&empty, rgot), 0); /* rules=() is not rules=None */
    CHECK_EQ_INT(lx_init_partition_names(&empty, got), 0);

    /* Errors leave *out as it was. */
    lx_initializer keep = lx_init_zeros();
    CHECK_FAILS(lx_init_with_partitioning(NULL, 1, names, NULL, &keep), LX_ERR_INVALID_ARGUMENT, "NULL argument");
    CHECK_FAILS(lx_init_with_partitioning(&ln, 1, names, NULL, NULL), LX_ERR_INVALID_ARGUMENT, "NULL argument");
    CHECK_FAILS(lx_init_with_partitioning(&wrapped, 1, names, NULL, &keep), LX_ERR_INVALID_ARGUMENT,
                "with_partitioning: the initializer is already wrapped (Partitioned)");
    CHECK_FAILS(lx_init_with_logical_partitioning(&lg, 1, names, NULL, 0, NULL, &keep), LX_ERR_INVALID_ARGUMENT,
                "with_logical_partitioning: the initializer is already wrapped (LogicallyPartitioned)");
    CHECK_FAILS(lx_init_with_partitioning(&ln, LX_MAX_DIMS + 1, names, NULL, &keep), LX_ERR_INVALID_ARGUMENT,
                "9 names (at most 8");
    CHECK_FAILS(lx_init_with_partitioning(&ln, -1, names, NULL, &keep), LX_ERR_INVALID_ARGUMENT, "-1 names");
    CHECK_FAILS(lx_init_with_partitioning(&ln, 2, NULL, NULL, &keep), LX_ERR_INVALID_ARGUMENT, "names is NULL");
    char longname[LX_PARTITION_NAME_CAP + 1];
    memset(longname, 'a', LX_PARTITION_NAME_CAP);
    longname[LX_PARTITION_NAME_CAP] = '\0';
    CHECK_FAILS(lx_init_with_partitioning(&ln, 1, (const char *[]){longname}, NULL, &keep), LX_ERR_INVALID_ARGUMENT,
                "with_partitioning: name 'aaaa");
    CHECK_ERROR_HAS("is 48 bytes long (at most 47)");
    longname[LX_PARTITION_NAME_CAP - 1] = '\0'; /* 47 bytes: fits */
    CHECK_EQ_INT(lx_init_with_partitioning(&ln, 1, (const char *[]){longname}, NULL, &copy), LX_OK);
    CHECK_EQ_INT((int)strlen(copy.partitioning.names[0]), LX_PARTITION_NAME_CAP - 1);
    longname[LX_PARTITION_NAME_CAP - 1] = 'a';
    CHECK_FAILS(lx_init_with_partitioning(&ln, 1, names, longname, &keep), LX_ERR_INVALID_ARGUMENT, "mesh 'aaa");
    CHECK_FAILS(lx_init_with_logical_partitioning(&ln, 1, names, NULL, 3, rules, &keep), LX_ERR_INVALID_ARGUMENT,
                "rules must be (logical, mesh) pairs, got 3 strings");
    CHECK_FAILS(lx_init_with_logical_partitioning(&ln, 1, names, NULL, 2, NULL, &keep), LX_ERR_INVALID_ARGUMENT,
                "rules is NULL but nrules is 2");
    CHECK_FAILS(lx_init_with_logical_partitioning(&ln, 1, names, NULL, 2, (const char *[]){NULL, "x"}, &keep),
                LX_ERR_INVALID_ARGUMENT, "rule 0 has no logical name");
    CHECK_FAILS(lx_init_with_logical_partitioning(&ln, 1, names, NULL, 2 * LX_PARTITION_MAX_RULES + 2, rules, &keep),
                LX_ERR_INVALID_ARGUMENT, "9 rules (at most 8)");
    CHECK_FAILS(lx_init_with_logical_partitioning(&ln, 1, names, NULL, 2, (const char *[]){"a", longname}, &keep),
                LX_ERR_INVALID_ARGUMENT, "rule mesh axis 'aaa");
    CHECK_EQ_INT(keep.kind, LX_INIT_ZEROS);
    CHECK_EQ_INT(keep.partitioning.kind, LX_PARTITION_NONE);
}

int main(void) {
    RUN(test_init_fixtures);
    RUN(test_fans);
    RUN(test_worked_example);
    RUN(test_constants_and_dtypes);
    RUN(test_names);
    RUN(test_errors);
    RUN(test_partitioning);
    return lx_test_finish();
}
