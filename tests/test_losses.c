/* optax.losses and nnx.metrics against double-precision references of optax's and Flax's
 * formulas, plus their error paths. */
#include "linnx/losses.h"
#include "linnx/metrics.h"
#include "lx_test.h"

static lx_array *arr(int ndim, const int64_t *shape, const float *v) { return lx_autorelease(lx_array_from_f32(ndim, shape, v)); }

static bool close_to(const lx_array *a, const double *want, int64_t n, double tol) {
    if (!a || a->dtype != LX_F32 || a->size != n) return false;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(lx_f32(a)[i] - want[i]) <= tol * (1 + fabs(want[i])))) { /* NaN fails */
            fprintf(stderr, "  element %lld: %.9g vs %.9g\n", (long long)i, lx_f32(a)[i], want[i]);
            return false;
        }
    return true;
}

static const float P[6] = {0.5f, -1.25f, 3.0f, 0.0f, 2.5f, -0.75f};
static const float T[6] = {1.0f, -1.0f, 2.0f, 0.5f, 2.5f, 0.25f};

static void test_regression(void) {
    lx_array *p = arr(2, (const int64_t[]){2, 3}, P), *t = arr(2, (const int64_t[]){2, 3}, T);
    double se[6], l2[6], se0[6];
    for (int i = 0; i < 6; i++) {
        double e = (double)P[i] - T[i];
        se[i] = e * e;
        l2[i] = 0.5 * e * e;
        se0[i] = (double)P[i] * P[i];
    }
    lx_array *a = optax_squared_error(p, t);
    CHECK(a && lx_shape_eq(a, 2, (const int64_t[]){2, 3}) && close_to(a, se, 6, 1e-7));
    CHECK(close_to(optax_l2_loss(p, t), l2, 6, 1e-7));
    CHECK(close_to(optax_squared_error(p, NULL), se0, 6, 1e-7));
    /* loss(...).mean() */
    lx_array *m = lx_mean(optax_l2_loss(p, t), LX_ALL_AXES, false);
    double mean = 0;
    for (int i = 0; i < 6; i++) mean += l2[i] / 6;
    CHECK(m && fabs(lx_f32(m)[0] - mean) < 1e-7);
    /* broadcasting targets (a scalar) */
    double sb[6];
    for (int i = 0; i < 6; i++) sb[i] = ((double)P[i] - 1) * ((double)P[i] - 1);
    CHECK(close_to(optax_squared_error(p, lx_scalar(1.0f)), sb, 6, 1e-7));
    lx_clear_error();
    CHECK_NULL_FAILS(optax_l2_loss(p, arr(1, (const int64_t[]){4}, T)), LX_ERR_SHAPE, "l2_loss: ");
    CHECK_ERROR_HAS("could not be broadcast");
    lx_clear_error();
    CHECK(optax_l2_loss(NULL, t) == NULL && lx_last_status() == LX_OK); /* a failed input: no new message */
}

static void test_softmax_ce(void) {
    const float logits[8] = {1.0f, 2.0f, 3.0f, 0.5f, -1.0f, 0.0f, 40.0f, -3.0f};
    const float labels[8] = {0.1f, 0.2f, 0.6f, 0.1f, 0.0f, 0.0f, 1.0f, 0.0f};
    lx_array *x = arr(2, (const int64_t[]){2, 4}, logits), *y = arr(2, (const int64_t[]){2, 4}, labels);
    double want[2];
    for (int r = 0; r < 2; r++) {
        double mx = -1e300, s = 0, l = 0;
        for (int c = 0; c < 4; c++) mx = fmax(mx, logits[r * 4 + c]);
        for (int c = 0; c < 4; c++) s += exp(logits[r * 4 + c] - mx);
        for (int c = 0; c < 4; c++) l -= labels[r * 4 + c] * (logits[r * 4 + c] - mx - log(s));
        want[r] = l;
    }
    lx_array *a = optax_softmax_cross_entropy(x, y);
    CHECK(a && lx_shape_eq(a, 1, (const int64_t[]){2}) && close_to(a, want, 2, 1e-6));
    /* integer labels: the same as one-hot probabilities */
    int32_t lab[2] = {2, 0};
    lx_array *li = lx_autorelease(lx_array_from_data(LX_I32, 1, (const int64_t[]){2}, lab));
    double wi[2];
    for (int r = 0; r < 2; r++) {
        double mx = -1e300, s = 0;
        for (int c = 0; c < 4; c++) mx = fmax(mx, logits[r * 4 + c]);
        for (int c = 0; c < 4; c++) s += exp(logits[r * 4 + c] - mx);
        wi[r] = mx + log(s) - logits[r * 4 + lab[r]];
    }
    CHECK(close_to(optax_softmax_cross_entropy_with_integer_labels(x, li), wi, 2, 1e-6));
    CHECK(close_to(optax_softmax_cross_entropy(x, lx_one_hot(li, 4)), wi, 2, 1e-6));
    lx_clear_error();
    CHECK_NULL_FAILS(optax_softmax_cross_entropy(x, arr(2, (const int64_t[]){4, 2}, labels)), LX_ERR_SHAPE,
                     "softmax_cross_entropy: ");
    int32_t bad[2] = {4, 0};
    lx_clear_error();
    CHECK_NULL_FAILS(optax_softmax_cross_entropy_with_integer_labels(
                         x, lx_autorelease(lx_array_from_data(LX_I32, 1, (const int64_t[]){2}, bad))),
                     LX_ERR_INVALID_ARGUMENT, "softmax_cross_entropy_with_integer_labels: ");
}

static void test_sigmoid_bce(void) {
    const float x[6] = {0.0f, 2.0f, -3.0f, 50.0f, -50.0f, 0.7f};
    const float y[6] = {1.0f, 0.0f, 1.0f, 1.0f, 1.0f, 0.3f};
    double want[6];
    for (int i = 0; i < 6; i++) {
        /* -y log(sigmoid(x)) - (1 - y) log(1 - sigmoid(x)), written stably */
        double sp_neg = log1p(exp(-fabs(x[i]))) + fmax(-x[i], 0.0); /* softplus(-x) */
        double sp_pos = log1p(exp(-fabs(x[i]))) + fmax(x[i], 0.0);  /* softplus(x) */
        want[i] = y[i] * sp_neg + (1 - y[i]) * sp_pos;
    }
    lx_array *a = optax_sigmoid_binary_cross_entropy(arr(1, (const int64_t[]){6}, x), arr(1, (const int64_t[]){6}, y));
    CHECK(a && close_to(a, want, 6, 1e-6));
    CHECK(a && fabs(lx_f32(a)[4] - 50.0f) < 1e-5); /* large |x| stays finite */
}

static void test_metrics(void) {
    nnx_average avg;
    nnx_average_reset(&avg);
    CHECK(isnan(nnx_average_compute(&avg))); /* 0 / 0 before any update */
    CHECK(nnx_average_update(&avg, arr(1, (const int64_t[]){4}, (const float[]){1, 2, 3, 4})) == LX_OK);
    nnx_average_update_scalar(&avg, 10.0f);
    CHECK_EQ_INT(avg.count, 5);
    CHECK(nnx_average_compute(&avg) == 4.0f);
    CHECK_FAILS(nnx_average_update(&avg, NULL), LX_ERR_FAILED_INPUT, "values is NULL");
    CHECK_EQ_INT(avg.count, 5);
    nnx_average_reset(&avg);
    CHECK(avg.total == 0.0f && avg.count == 0);

    nnx_accuracy acc;
    nnx_accuracy_reset(&acc);
    const float logits[8] = {0.1f, 0.9f, 0.8f, 0.2f, 0.3f, 0.3f, 0.0f, 1.0f}; /* argmax 1, 0, 0 (first), 1 */
    int32_t lab[4] = {1, 1, 0, 1};
    lx_array *l = arr(2, (const int64_t[]){4, 2}, logits);
    lx_array *y = lx_autorelease(lx_array_from_data(LX_I32, 1, (const int64_t[]){4}, lab));
    CHECK(nnx_accuracy_update(&acc, l, y) == LX_OK);
    CHECK(nnx_accuracy_compute(&acc) == 0.75f);
    CHECK(nnx_accuracy_update(&acc, l, y) == LX_OK);
    CHECK_EQ_INT(acc.avg.count, 8);
    CHECK(nnx_accuracy_compute(&acc) == 0.75f);
    /* Flax's one ValueError text, with status.h's code for what is wrong: the dtype, else the rank */
    CHECK_FAILS(nnx_accuracy_update(&acc, l, l), LX_ERR_DTYPE,
                "Expected labels.dtype==jnp.int32 and logits.ndim=2==labels.ndim+1=3");
    lx_array *y2 = lx_autorelease(lx_array_new(LX_I32, 2, (const int64_t[]){4, 1}));
    CHECK_FAILS(nnx_accuracy_update(&acc, l, y2), LX_ERR_SHAPE,
                "Expected labels.dtype==jnp.int32 and logits.ndim=2==labels.ndim+1=3");
    lx_array *li = lx_autorelease(lx_array_new(LX_I32, 2, (const int64_t[]){4, 2}));
    CHECK_FAILS(nnx_accuracy_update(&acc, li, y), LX_ERR_DTYPE, "logits must be float32, got int32");
    CHECK_FAILS(nnx_accuracy_update(&acc, NULL, y), LX_ERR_FAILED_INPUT, "an input is NULL");
    CHECK_EQ_INT(acc.avg.count, 8);
    lx_array *vb = lx_autorelease(lx_array_new(LX_BF16, 1, (const int64_t[]){2}));
    CHECK_FAILS(nnx_average_update(&avg, vb), LX_ERR_DTYPE, "values of dtype bfloat16");
}

int main(void) {
    RUN(test_regression);
    RUN(test_softmax_ce);
    RUN(test_sigmoid_bce);
    RUN(test_metrics);
    return lx_test_finish();
}
