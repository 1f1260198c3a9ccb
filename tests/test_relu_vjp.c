/* ReLU's backward (src/ops/vjp.c): dx = x > 0 ? g : 0, JAX's convention (relu'(0) = 0), a NaN x
 * giving 0, every g passed bit for bit (-0, inf, NaN). Above 2^15 values the rule runs in chunks
 * over the pool: the same bits on 1, 2 and 3 threads, at sizes below, at and past the split, odd
 * tails included. Through the tape: d/dx sum(relu(x) * w) = relu'(x) w, w's bits reaching the rule
 * unchanged (the cotangent of relu(x) is 1 * w). */
#include <string.h>

#include "linnx/autodiff.h"
#include "linnx/ops.h"
#include "linnx/threads.h"
#include "lx_test.h"

static float xval(int64_t i) {
    static const float special[] = {0.0f, -0.0f, 1e-45f, -1e-45f, INFINITY, -INFINITY, NAN, -NAN, 1.0f, -1.0f};
    if (i % 7 == 3) return special[(i / 7) % 10];
    uint32_t h = (uint32_t)i * 2654435761u;
    return ((float)(h >> 8) / 16777216.0f - 0.5f) * 8.0f;
}
static float wval(int64_t i) {
    static const float special[] = {-0.0f, 0.0f, INFINITY, -INFINITY, 3.5f};
    if (i % 11 == 5) return special[(i / 11) % 5];
    uint32_t h = (uint32_t)(i + 17) * 2246822519u;
    return ((float)(h >> 8) / 16777216.0f - 0.5f) * 2.0f;
}

static void check_size(int64_t n) {
    float *xs = malloc(sizeof(float) * (size_t)n), *ws = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) xs[i] = xval(i), ws[i] = wval(i);
    for (int nt = 1; nt <= 3; nt++) {
        CHECK_EQ_INT(lx_set_num_threads(nt), LX_OK);
        size_t mark = lx_pool_open();
        lx_array *x = lx_array_from_f32(1, &n, xs), *w = lx_array_from_f32(1, &n, ws), *g = NULL;
        lx_tape *t = NULL;
        CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
        CHECK_EQ_INT(lx_tape_watch(t, x), LX_OK);
        lx_array *y = lx_sum(lx_mul(lx_relu(x), w), LX_ALL_AXES, false);
        CHECK_EQ_INT(lx_tape_backward(t, y, 1, &x, &g), LX_OK);
        int64_t bad = g ? 0 : n;
        for (int64_t i = 0; g && i < n; i++) {
            float want = xs[i] > 0.0f ? ws[i] : 0.0f;
            bad += memcmp(&lx_f32(g)[i], &want, sizeof want) != 0;
        }
        LX_TEST_REPORT_(bad == 0, "n = %lld, %d threads: %lld gradient values wrong", (long long)n, nt, (long long)bad);
        lx_release(g);
        lx_tape_free(t);
        lx_release(x), lx_release(w);
        lx_pool_close(mark);
    }
    CHECK_EQ_INT(lx_set_num_threads(0), LX_OK);
    free(xs), free(ws);
}

static void test_relu_vjp(void) {
    const int64_t sizes[] = {1, 7, 8193, 32768, 32769, 65536, 100003};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) check_size(sizes[s]);
}

int main(void) {
    RUN(test_relu_vjp);
    return lx_test_finish();
}
