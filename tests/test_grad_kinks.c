/* Gradients at the points where an op is not differentiable, as JAX defines them (finite
 * differences cannot see these). d/dx sum(f(x)) at each kink, exact values:
 *   abs:        lax select(x >= 0, g, -g): 1 at 0 and at -0, -1 below
 *   clip:       jnp.clip = minimum(maximum(x, lo), hi), each tie split evenly: 1/2 at lo and at hi,
 *               1/4 at lo == hi == x, 0 outside, 1 inside
 *   relu6:      jax.nn.relu6's custom_jvp select((x > 0) & (x < 6), g, 0): 0 at 0 and at 6
 *   relu:       select(x > 0, g, 0): 0 at 0
 *   leaky_relu: where(x >= 0, x, slope x): 1 at 0
 *   maximum/minimum: 1/2 to each operand on a tie
 *   max/min reductions: the cotangent shared evenly by the tied extremes
 *   sqrt:       g * 0.5 / sqrt(x): +inf at 0
 *   pow:        d/da b a^(b-1), d/db log(a) a^b with log(1) at a == 0 */
#include "linnx/autodiff.h"
#include "linnx/linen_layers.h"
#include "linnx/ops.h"
#include "lx_test.h"

#define CHECK_MSG(ok, ...) LX_TEST_REPORT_((ok), __VA_ARGS__)

enum { ABS, CLIP, CLIP_POINT, RELU6, RELU, LEAKY, MAXIMUM, MINIMUM, RMAX, RMIN, SQRT, CLIP_REVERSED };
static int which;

static lx_status f(int n, lx_array *const *xs, void *u, lx_array **loss) {
    (void)n, (void)u;
    lx_array *x = xs[0], *y = NULL;
    switch (which) {
    case ABS: y = lx_abs(x); break;
    case CLIP: y = lx_clip(x, -1.0f, 1.0f); break;
    case CLIP_POINT: y = lx_clip(x, 2.0f, 2.0f); break;
    case CLIP_REVERSED: y = lx_clip(x, 3.0f, 1.0f); break;
    case RELU6: y = linen_relu6_fn(x); break;
    case RELU: y = lx_relu(x); break;
    case LEAKY: y = linen_leaky_relu_fn(x, 0.25f); break;
    case MAXIMUM: y = lx_maximum(x, lx_scalar(1.0f)); break;
    case MINIMUM: y = lx_minimum(x, lx_scalar(1.0f)); break;
    case RMAX: y = lx_max(x, 0, NULL, false); break;
    case RMIN: y = lx_min(x, 0, NULL, false); break;
    case SQRT: y = lx_sqrt(x); break;
    }
    *loss = lx_sum(y, 0, NULL, false);
    return *loss ? LX_OK : lx_last_status();
}

/* d/dx sum(f(x)) at xs against want, bit for bit (NaN == NaN). */
static void check(int w, const char *name, int n, const float *xs, const float *want) {
    which = w;
    lx_array *x = lx_array_from_f32(1, (int64_t[]){n}, xs), *v = NULL, *g = NULL;
    CHECK_EQ_INT(lx_value_and_grad(f, NULL, 1, &x, &v, &g), LX_OK);
    if (g)
        for (int i = 0; i < n; i++) {
            const float got = lx_f32(g)[i];
            const bool same = (isnan(got) && isnan(want[i])) || got == want[i];
            CHECK_MSG(same, "%s at x = %g: grad %g, JAX %g", name, (double)xs[i], (double)got, (double)want[i]);
        }
    lx_release(x), lx_release(v), lx_release(g);
}

static void test_abs(void) {
    check(ABS, "abs", 5, (float[]){0.0f, -0.0f, -1.0f, 2.0f, -1e-45f}, (float[]){1, 1, -1, 1, -1});
}

static void test_clip(void) {
    check(CLIP, "clip(-1, 1)", 6, (float[]){-1.0f, 1.0f, 0.0f, -2.0f, 2.0f, 0.999f}, (float[]){0.5f, 0.5f, 1, 0, 0, 1});
    check(CLIP_POINT, "clip(2, 2)", 3, (float[]){2.0f, 1.0f, 3.0f}, (float[]){0.25f, 0, 0});
    /* lo > hi: hi everywhere, no gradient (x == hi < lo loses the maximum) */
    check(CLIP_REVERSED, "clip(3, 1)", 4, (float[]){1.0f, 2.0f, 3.0f, 0.0f}, (float[]){0, 0, 0, 0});
}

static void test_relu6(void) {
    check(RELU6, "relu6", 6, (float[]){0.0f, 6.0f, 3.0f, -1.0f, 7.0f, -0.0f}, (float[]){0, 0, 1, 0, 0, 0});
    /* the value is clip's, under the tape and without it */
    float xs[5] = {-2.0f, 0.0f, 2.5f, 6.0f, 9.0f};
    lx_array *x = lx_array_from_f32(1, (int64_t[]){5}, xs);
    lx_array *y = linen_relu6_fn(x);
    const float want[5] = {0, 0, 2.5f, 6, 6};
    CHECK(y != NULL);
    for (int i = 0; y && i < 5; i++) CHECK(lx_f32(y)[i] == want[i]);
    lx_release(x);
}

static void test_relu_leaky(void) {
    check(RELU, "relu", 3, (float[]){0.0f, -0.0f, 1.0f}, (float[]){0, 0, 1});
    check(LEAKY, "leaky_relu", 4, (float[]){0.0f, -0.0f, -1.0f, 1.0f}, (float[]){1, 1, 0.25f, 1});
}

static void test_ties(void) {
    check(MAXIMUM, "maximum(x, 1)", 3, (float[]){1.0f, 2.0f, 0.0f}, (float[]){0.5f, 1, 0});
    check(MINIMUM, "minimum(x, 1)", 3, (float[]){1.0f, 2.0f, 0.0f}, (float[]){0.5f, 0, 1});
    check(RMAX, "max", 4, (float[]){3.0f, 1.0f, 3.0f, 3.0f}, (float[]){1.0f / 3, 0, 1.0f / 3, 1.0f / 3});
    check(RMIN, "min", 4, (float[]){3.0f, 1.0f, 1.0f, 3.0f}, (float[]){0, 0.5f, 0.5f, 0});
}

static void test_sqrt_zero(void) { check(SQRT, "sqrt", 2, (float[]){0.0f, 4.0f}, (float[]){INFINITY, 0.25f}); }

static lx_status pow_f(int n, lx_array *const *xs, void *u, lx_array **loss) {
    (void)n, (void)u;
    *loss = lx_sum(lx_pow(xs[0], xs[1]), 0, NULL, false);
    return *loss ? LX_OK : lx_last_status();
}

static void test_pow_zero(void) {
    lx_array *in[2] = {lx_array_from_f32(1, (int64_t[]){3}, (float[]){0.0f, 2.0f, 0.0f}),
                       lx_array_from_f32(1, (int64_t[]){3}, (float[]){2.0f, 3.0f, 1.0f})};
    lx_array *v = NULL, *g[2] = {NULL, NULL};
    CHECK_EQ_INT(lx_value_and_grad(pow_f, NULL, 2, in, &v, g), LX_OK);
    CHECK(g[0] && g[1]);
    if (g[0] && g[1]) {
        /* d/da: 2 * 0^1 = 0, 3 * 2^2 = 12, 1 * 0^0 = 1; d/db: log(1) 0 = 0, log(2) 8, log(1) 0 = 0 */
        CHECK(lx_f32(g[0])[0] == 0.0f && lx_f32(g[0])[1] == 12.0f && lx_f32(g[0])[2] == 1.0f);
        CHECK(lx_f32(g[1])[0] == 0.0f && fabsf(lx_f32(g[1])[1] - 8.0f * logf(2.0f)) < 1e-5f && lx_f32(g[1])[2] == 0.0f);
    }
    lx_release(in[0]), lx_release(in[1]), lx_release(v);
    lx_release(g[0]), lx_release(g[1]);
}

int main(void) {
    RUN(test_abs);
    RUN(test_clip);
    RUN(test_relu6);
    RUN(test_relu_leaky);
    RUN(test_ties);
    RUN(test_sqrt_zero);
    RUN(test_pow_zero);
    return lx_test_finish();
}
