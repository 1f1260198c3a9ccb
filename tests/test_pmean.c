/* The pmean primitive (ops.h lx_pmean, jax.lax.pmean) without MPI:
 *  - no hook (one process): the value is x and the VJP passes the cotangent through unchanged;
 *  - a test hook that plays a second process (its buffer averaged with a fixed "other rank"
 *    buffer) shows the forward goes through the hook AND that the VJP is the same pmean of the
 *    cotangent (JAX's transpose of pmean): for y = sum(c * pmean(x)) on this process and
 *    c' on the other, dy/dx = (c + c') / 2, hand-computed;
 *  - errors: an int input, an empty / over-long axis name, a failing hook (its status and message
 *    stand), a NULL input; the observer sees the op as "pmean" with axes='data'.
 * The multi-process gradients (Linen and NNX BatchNorm(axis_name='data') under mpirun) are checked
 * by tests/test_distributed.c's worker (tests/cli_distributed.sh). */
#include <math.h>
#include <string.h>

#include "linnx/autodiff.h"
#include "linnx/ops.h"
#include "linnx/primitive.h"
#include "lx_test.h"

static const float X[6] = {1, -2, 3, 0.5f, 4, -1};
static const float C[6] = {2, 0.25f, -1, 3, 1, 0.5f};
/* the other process's values: its x in the forward, its cotangent in the backward */
static const float XO[6] = {3, 2, -1, 1.5f, 0, 5};
static const float CO[6] = {0, 1.75f, 1, -1, 3, 0.5f};

static struct {
    int calls;
    char axis[LX_AXIS_NAME_MAX];
    bool fail;
} hk;

static lx_status two_process_hook(const char *axis_name, float *buf, int64_t n) {
    strncpy(hk.axis, axis_name, sizeof hk.axis - 1);
    if (hk.fail) return lx_fail(LX_ERR_IO, "distributed: all-reduce failed on rank 0 at step 7: peer gone");
    const float *other = hk.calls++ == 0 ? XO : CO; /* the first call is the forward, then the VJP */
    for (int64_t i = 0; i < n; i++) buf[i] = (buf[i] + other[i]) / 2;
    return LX_OK;
}

/* y = sum(c * pmean(x)); writes y and dy/dx (new reference) */
static lx_status run(float *y, lx_array **g) {
    lx_array *x = lx_array_from_f32(2, (int64_t[]){2, 3}, X);
    lx_array *c = lx_array_from_f32(2, (int64_t[]){2, 3}, C);
    lx_tape *t = NULL;
    size_t mark = lx_pool_open();
    lx_status st = lx_tape_new(&t);
    if (st == LX_OK) st = lx_tape_watch(t, x);
    lx_array *out = st == LX_OK ? lx_sum(lx_mul(c, lx_pmean(x, "data")), 0, NULL, false) : NULL;
    if (st == LX_OK && !out) st = lx_last_status();
    if (st == LX_OK) {
        *y = lx_f32(out)[0];
        lx_tape_stop(t);
        st = lx_tape_backward(t, out, 1, &x, g);
    }
    lx_tape_free(t);
    lx_pool_close(mark);
    lx_release(x);
    lx_release(c);
    return st;
}

static void test_identity(void) {
    CHECK(lx_get_pmean_hook() == NULL);
    size_t mark = lx_pool_open();
    lx_array *x = lx_autorelease(lx_array_from_f32(2, (int64_t[]){2, 3}, X));
    lx_array *m = lx_pmean(x, "data");
    CHECK(m != NULL && m != x && m->ndim == 2 && m->shape[0] == 2 && m->shape[1] == 3 && m->dtype == LX_F32);
    for (int i = 0; m && i < 6; i++) CHECK(lx_f32(m)[i] == X[i]);
    /* abstract in, abstract out */
    lx_array *a = lx_autorelease(lx_array_abstract(LX_F32, 1, (int64_t[]){4}));
    lx_array *ma = lx_pmean(a, "data");
    CHECK(ma && lx_is_abstract(ma) && ma->shape[0] == 4);
    lx_pool_close(mark);
    float y = 0;
    lx_array *g = NULL;
    CHECK_EQ_INT(run(&y, &g), LX_OK);
    double want = 0;
    for (int i = 0; i < 6; i++) want += (double)C[i] * X[i];
    CHECK_NEAR(y, want, 1e-6);
    for (int i = 0; g && i < 6; i++) CHECK(lx_f32(g)[i] == C[i]); /* the identity's VJP */
    lx_release(g);
}

static void test_hook_forward_and_vjp(void) {
    memset(&hk, 0, sizeof hk);
    lx_set_pmean_hook(two_process_hook);
    float y = 0;
    lx_array *g = NULL;
    CHECK_EQ_INT(run(&y, &g), LX_OK);
    CHECK_EQ_INT(hk.calls, 2); /* one all-reduce forward, one backward */
    CHECK_STR(hk.axis, "data");
    double want = 0;
    for (int i = 0; i < 6; i++) want += (double)C[i] * (X[i] + XO[i]) / 2;
    CHECK_NEAR(y, want, 1e-6);
    /* (c + c') / 2: 1, 1, 0, 1, 2, 0.5 */
    const float gw[6] = {1, 1, 0, 1, 2, 0.5f};
    for (int i = 0; g && i < 6; i++) CHECK_NEAR(lx_f32(g)[i], gw[i], 0);
    lx_release(g);
    /* a failing hook: its error is the op's */
    hk.fail = true;
    size_t mark = lx_pool_open();
    lx_array *x = lx_autorelease(lx_array_from_f32(1, (int64_t[]){6}, X));
    lx_clear_error();
    CHECK(lx_pmean(x, "data") == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_IO);
    CHECK_ERROR_HAS("peer gone");
    lx_clear_error();
    lx_pool_close(mark);
    lx_set_pmean_hook(NULL);
    CHECK(lx_get_pmean_hook() == NULL);
}

static int nevents;
static char seen_axes[LX_AXIS_NAME_MAX];
static void observe(const lx_prim_event *ev, void *user) {
    (void)user;
    if (strcmp(ev->op, "pmean") != 0) return;
    nevents++;
    if (ev->nattrs == 1 && strcmp(ev->attrs[0].name, "axes") == 0 && ev->attrs[0].value.kind == LX_V_STR)
        strncpy(seen_axes, ev->attrs[0].value.u.s, sizeof seen_axes - 1);
}

static void test_errors_and_observer(void) {
    size_t mark = lx_pool_open();
    lx_array *x = lx_autorelease(lx_array_from_f32(1, (int64_t[]){6}, X));
    lx_array *xi = lx_autorelease(lx_array_empty(LX_I32, 1, (int64_t[]){3}));
    lx_clear_error();
    CHECK(lx_pmean(xi, "data") == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_DTYPE);
    CHECK_ERROR_HAS("pmean: x must be float32, got int32");
    lx_clear_error();
    CHECK(lx_pmean(x, "") == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_HAS("pmean: axis_name must be a non-empty name");
    lx_clear_error();
    char longname[LX_AXIS_NAME_MAX + 4];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(lx_pmean(x, longname) == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_INVALID_ARGUMENT);
    lx_clear_error();
    CHECK(lx_pmean(x, NULL) == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_INVALID_ARGUMENT);
    lx_clear_error();
    CHECK(lx_pmean(NULL, "data") == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_HAS("pmean: input is NULL");
    lx_clear_error();
    int h = 0;
    CHECK_EQ_INT(lx_prim_observe(observe, NULL, &h), LX_OK);
    CHECK(lx_pmean(x, "data") != NULL);
    lx_prim_unobserve(h);
    CHECK_EQ_INT(nevents, 1);
    CHECK_STR(seen_axes, "data");
    const lx_prim_def *d = NULL;
    CHECK_EQ_INT(lx_prim_find("pmean", &d), LX_OK);
    CHECK(d && d->id == LX_PRIM_PMEAN && d->vjp && d->params_size == sizeof(lx_pmean_params) && d->arity == 1);
    lx_pool_close(mark);
}

int main(void) {
    RUN(test_identity);
    RUN(test_hook_forward_and_vjp);
    RUN(test_errors_and_observer);
    return lx_test_finish();
}
