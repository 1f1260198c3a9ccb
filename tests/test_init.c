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
    CHECK(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 1, s1) == NULL);
    CHECK_ERROR_HAS("Can't compute input and output sizes of a 1-dimensional weights tensor. Must be at least 2D.");
    CHECK_EQ_INT(lx_last_status(), LX_ERR_SHAPE);
    ln.in_axis = lx_axis(2);
    lx_clear_error();
    CHECK(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 2, s48) == NULL);
    CHECK_ERROR_HAS("in_axis 2 is out of range for a weights tensor of shape (4, 8)");
    ln = lx_init_lecun_normal();
    ln.out_axis = lx_axis(-3);
    lx_clear_error();
    CHECK(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 2, s48) == NULL);
    CHECK_ERROR_HAS("out_axis -3 is out of range");
    ln = lx_init_lecun_normal();
    ln.batch_axis = (lx_axes){2, {0, 5}};
    lx_clear_error();
    CHECK(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 2, s48) == NULL);
    CHECK_ERROR_HAS("batch_axis 5 is out of range");
    ln = lx_init_lecun_normal();
    lx_clear_error();
    CHECK(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 2, (int64_t[]){0, 8}) == NULL);
    CHECK_ERROR_HAS("division by zero");
    lx_clear_error();
    CHECK(lx_init_apply(&ln, lx_key_from_seed(0), LX_BF16, 2, s48) == NULL);
    CHECK_ERROR_HAS("only float32");
    CHECK_EQ_INT(lx_last_status(), LX_ERR_DTYPE);
    lx_clear_error();
    CHECK(lx_init_apply(&ln, lx_key_from_seed(0), LX_F32, 2, (int64_t[]){-1, 8}) == NULL);
    CHECK_ERROR_HAS("negative dimension");
    lx_clear_error();
    CHECK(lx_init_apply(NULL, lx_key_from_seed(0), LX_F32, 2, s48) == NULL);
    CHECK_ERROR_HAS("initializer is NULL");
    CHECK_FAILS(lx_init_apply_into(&ln, lx_key_from_seed(0), LX_F32, 2, s48, NULL), LX_ERR_INVALID_ARGUMENT,
                "output buffer is NULL");
    lx_initializer big = lx_init_constant(1e12);
    float buf[32];
    CHECK_FAILS(lx_init_apply_into(&big, lx_key_from_seed(0), LX_I32, 2, s48, buf), LX_ERR_INVALID_ARGUMENT,
                "does not fit int32");
    double fi, fo;
    CHECK_FAILS(lx_compute_fans(1, s1, lx_axis(-2), lx_axis(-1), lx_no_axes(), &fi, &fo), LX_ERR_SHAPE,
                "1-dimensional");
}

int main(void) {
    RUN(test_init_fixtures);
    RUN(test_fans);
    RUN(test_worked_example);
    RUN(test_constants_and_dtypes);
    RUN(test_names);
    RUN(test_errors);
    return lx_test_finish();
}
