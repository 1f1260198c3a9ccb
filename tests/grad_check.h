/* Gradient checks shared by the test_grad_* programs: the tape's gradients against central finite
 * differences with the loss accumulated in double.
 *
 * A computation is a callback that reads its inputs (arrays it knows, e.g. through ctx) and returns
 * an output of any shape. The scalar checked is L = sum_i w_i out_i with fixed weights
 * w_i = (float)sin(0.7 i + 0.3) (so every output element matters, with different weights). The
 * finite difference perturbs one float input element by +-h (the actually representable step is
 * used), evaluates L in double from the float outputs and takes (L+ - L-) / (x+ - x-). Float
 * rounding of the forward (~1e-7 relative) divided by the step bounds the noise: the tolerance is
 * atol + rtol * |fd| with atol of a few 1e-3 for steps of 1e-2..1e-3. */
#ifndef GRAD_CHECK_H
#define GRAD_CHECK_H

#include "lx_test.h"

typedef lx_array *(*gc_forward)(void *ctx);

static inline float gc_weight(int64_t i) { return (float)sin(0.7 * (double)i + 0.3); }

static inline lx_array *gc_weights_like(const lx_array *out) {
    lx_array *w = lx_autorelease(lx_array_new(LX_F32, out->ndim, out->shape));
    for (int64_t i = 0; i < out->size; i++) lx_f32(w)[i] = gc_weight(i);
    return w;
}

/* The weighted sum as a recorded op chain (what the tape differentiates). */
static inline lx_array *gc_weighted_loss(lx_array *out) {
    if (!out) return NULL;
    return lx_sum(lx_mul(out, gc_weights_like(out)), LX_ALL_AXES, false);
}

static inline double gc_eval(gc_forward f, void *ctx, bool *ok) {
    size_t m = lx_pool_open();
    lx_array *out = f(ctx);
    double s = 0;
    if (!out) {
        *ok = false;
    } else {
        for (int64_t i = 0; i < out->size; i++) s += (double)gc_weight(i) * (double)lx_f32(out)[i];
    }
    lx_pool_close(m);
    return s;
}

/* Compare grads[k] (shape of xs[k]) with finite differences of f. Reports one CHECK per input. */
static inline bool gc_compare(const char *name, gc_forward f, void *ctx, int n, lx_array *const *xs, lx_array *const *grads,
                       double h, double rtol, double atol) {
    bool all = true;
    for (int k = 0; k < n; k++) {
        lx_array *x = xs[k];
        if (!grads[k] || !lx_same_shape(grads[k], x)) {
            LX_TEST_REPORT_(false, "%s: input %d has no gradient of its shape", name, k);
            all = false;
            continue;
        }
        double worst = 0, at_fd = 0, at_g = 0;
        int64_t worst_i = -1;
        bool ok = true;
        for (int64_t i = 0; i < x->size; i++) {
            float *p = &lx_f32(x)[i], orig = *p;
            float up = (float)(orig + h), dn = (float)(orig - h);
            *p = up;
            double lp = gc_eval(f, ctx, &ok);
            *p = dn;
            double lm = gc_eval(f, ctx, &ok);
            *p = orig;
            double fd = (lp - lm) / ((double)up - (double)dn), g = lx_f32(grads[k])[i];
            double excess = fabs(g - fd) - (atol + rtol * fabs(fd));
            if (excess != excess) excess = INFINITY; /* a NaN on either side is the worst error */
            if (worst_i < 0 || excess > worst) worst = excess, worst_i = i, at_fd = fd, at_g = g;
        }
        bool pass = ok && worst <= 0;
        LX_TEST_REPORT_(pass, "%s: input %d element %lld: tape %.7g vs finite difference %.7g", name, k,
                        (long long)worst_i, at_g, at_fd);
        all = all && pass;
    }
    return all;
}

typedef struct {
    gc_forward f;
    void *ctx;
} gc_loss_ctx;

static inline lx_status gc_loss_fn(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n, (void)xs;
    gc_loss_ctx *c = user;
    *loss = gc_weighted_loss(c->f(c->ctx));
    return *loss ? LX_OK : lx_last_status();
}

/* The whole check over plain arrays: tape gradients by lx_value_and_grad, then finite differences;
 * also that the value is L and that nothing stays alive. */
static inline bool gc_check(const char *name, gc_forward f, void *ctx, int n, lx_array *const *xs, double h, double rtol,
                     double atol) {
    lx_array *grads[16] = {NULL}, *value = NULL;
    int64_t live = lx_array_live_count();
    gc_loss_ctx c = {f, ctx};
    lx_status st = lx_value_and_grad(gc_loss_fn, &c, n, xs, &value, grads);
    LX_TEST_REPORT_(st == LX_OK, "%s: value_and_grad failed: %s", name, lx_last_error());
    if (st != LX_OK) return false;
    bool ok = true;
    double L = gc_eval(f, ctx, &ok);
    LX_TEST_REPORT_(fabs(lx_f32(value)[0] - L) <= 1e-4 * (1 + fabs(L)), "%s: value %.7g vs %.7g", name,
                    (double)lx_f32(value)[0], L);
    bool pass = gc_compare(name, f, ctx, n, xs, grads, h, rtol, atol);
    lx_release(value);
    for (int k = 0; k < n; k++) lx_release(grads[k]);
    LX_TEST_REPORT_(lx_array_live_count() == live, "%s: %lld arrays alive after the backward pass (before: %lld)",
                    name, (long long)lx_array_live_count(), (long long)live);
    return pass;
}

/* Deterministic inputs: uniform in [lo, hi) from a small LCG. */
static inline lx_array *gc_rand(uint64_t *seed, float lo, float hi, int ndim, const int64_t *shape) {
    lx_array *a = lx_array_new(LX_F32, ndim, shape);
    for (int64_t i = 0; i < a->size; i++) {
        *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(*seed >> 11) / 9007199254740992.0;
        lx_f32(a)[i] = (float)(lo + (hi - lo) * u);
    }
    return a;
}

#endif
