/* The integer-label cross-entropy backward (one fused pass per row, rows split over the thread
 * team above 32768 values) against a double-precision reference written here:
 * d/dlogits sum(w * ce(logits, labels)) = w (softmax(logits) - one_hot(label)), on 1 and 2
 * threads, with rows that hold large logits and a label at each end of the row. */
#include <math.h>

#include "linnx/autodiff.h"
#include "linnx/losses.h"
#include "linnx/nn.h"
#include "linnx/threads.h"
#include "lx_test.h"

enum { ROWS = 301, C = 131 };

typedef struct {
    lx_array *labels, *w;
} xent_job;

static lx_status loss_fn(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n;
    xent_job *j = user;
    *loss = lx_sum(lx_mul(lx_softmax_cross_entropy_int(xs[0], j->labels), j->w), 0, NULL, false);
    return *loss ? LX_OK : lx_last_status();
}

static void test_xent_grad(void) {
    uint32_t rng = 11;
    lx_array *x = lx_array_new(LX_F32, 2, (int64_t[]){ROWS, C});
    xent_job j = {lx_array_new(LX_I32, 1, (int64_t[]){ROWS}), lx_array_new(LX_F32, 1, (int64_t[]){ROWS})};
    CHECK(x && j.labels && j.w);
    if (!x || !j.labels || !j.w) return;
    for (int64_t i = 0; i < ROWS * C; i++) {
        rng = rng * 1664525u + 1013904223u;
        lx_f32(x)[i] = (float)((rng >> 8) * (8.0 / 16777216.0)) - 4.0f;
    }
    for (int64_t c = 0; c < C; c++) lx_f32(x)[5 * C + c] += 80.0f; /* large logits: the max is subtracted */
    for (int64_t r = 0; r < ROWS; r++) {
        lx_i32(j.labels)[r] = r == 0 ? 0 : r == 1 ? C - 1 : (int32_t)((r * 37) % C);
        lx_f32(j.w)[r] = 0.5f + 0.01f * (float)(r % 7) - (r % 11 == 0 ? 1.0f : 0.0f);
    }
    int saved = lx_num_threads();
    for (int nt = 1; nt <= 2; nt++) {
        lx_set_num_threads(nt);
        lx_array *val = NULL, *g = NULL;
        CHECK_EQ_INT(lx_value_and_grad(loss_fn, &j, 1, &x, &val, &g), LX_OK);
        if (!g) continue;
        double worst = 0;
        for (int64_t r = 0; r < ROWS; r++) {
            const float *xr = lx_f32(x) + r * C;
            double mx = -INFINITY, s = 0;
            for (int64_t c = 0; c < C; c++) mx = fmax(mx, xr[c]);
            for (int64_t c = 0; c < C; c++) s += exp(xr[c] - mx);
            for (int64_t c = 0; c < C; c++) {
                double want = lx_f32(j.w)[r] * (exp(xr[c] - mx) / s - (c == lx_i32(j.labels)[r]));
                worst = lx_worse(worst, fabs(lx_f32(g)[r * C + c] - want));
            }
        }
        LX_TEST_REPORT_(worst <= 1e-6, "%d threads: max |error| %.3g", nt, worst);
        lx_release(val), lx_release(g);
    }
    lx_set_num_threads(saved);
    lx_release(x), lx_release(j.labels), lx_release(j.w);
}

int main(void) {
    RUN(test_xent_grad);
    return lx_test_finish();
}
