/* `linnx train` against the same run written with the library's lower-level API, whose pieces are
 * checked on their own (value_and_grad against finite differences in test_grad_*, adamw and
 * exponential_decay against optax's published runs in test_optax, permutations against JAX's in
 * test_random_perm): the CLI's wiring is what is tested here — the optimizer expression parsed
 * into the same transformation as the C constructors, Linen init on x with key(seed), minibatch
 * order fold_in(key(seed), epoch), and `step K loss V` meaning the loss before step K's update.
 * The binary comes from $LINNX_BIN (CTest sets it); without it the test is skipped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "linnx/autodiff.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/losses.h"
#include "linnx/train.h"
#include "linen_loss.h"
#include "lx_test.h"

enum { N = 6, IN = 3, OUT = 2, BS = 2, STEPS = 7 };
static const float XS[N * IN] = {0.5f, -1, 2, 1.5f, 0.25f, -0.5f, -2, 1, 0.75f, 0, -1.25f, 1, 2.5f, 0.5f, -0.25f, 1, 1, -1};
static const float YS[N * OUT] = {1, 0, 0, 1, 0.5f, 0.5f, 1, 1, 0, 0, -1, 2};

static void test_linen_adamw_schedule_minibatches(const char *bin) {
    /* the CLI run */
    char cmd[2048];
    int off = snprintf(cmd, sizeof cmd, "'%s' train 'linen.Sequential(linen.Dense(4), linen.relu, linen.Dense(%d))' --seed 7 --x ", bin, OUT);
    for (int i = 0; i < N * IN; i++) off += snprintf(cmd + off, sizeof cmd - (size_t)off, "%s%.9g", i ? "," : "", XS[i]);
    off += snprintf(cmd + off, sizeof cmd - (size_t)off, " --x-shape %d,%d --y ", N, IN);
    for (int i = 0; i < N * OUT; i++) off += snprintf(cmd + off, sizeof cmd - (size_t)off, "%s%.9g", i ? "," : "", YS[i]);
    snprintf(cmd + off, sizeof cmd - (size_t)off,
             " --y-shape %d,%d --loss squared_error --optimizer 'adamw(learning_rate=exponential_decay(0.1, 2, 0.5),"
             " weight_decay=0.1)' --steps %d --batch-size %d --plain",
             N, OUT, STEPS, BS);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p) return;
    double cli[STEPS];
    int n = 0, k;
    double v;
    char line[256];
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "step %d loss %lf", &k, &v) == 2 && k == n && n < STEPS) cli[n++] = v;
    CHECK_EQ_INT(pclose(p), 0);
    CHECK_EQ_INT(n, STEPS);

    /* the same with the library */
    lx_array *x = lx_array_from_f32(2, (int64_t[]){N, IN}, XS), *y = lx_array_from_f32(2, (int64_t[]){N, OUT}, YS);
    linen_module *d1 = NULL, *d2 = NULL, *relu = NULL, *m = NULL;
    lx_call c1 = LX_CALL_KWARGS(LX_KW_INT("features", 4)), c2 = LX_CALL_KWARGS(LX_KW_INT("features", OUT));
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &c1, &d1), LX_OK);
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &c2, &d2), LX_OK);
    CHECK_EQ_INT(linen_module_new(&linen_relu, NULL, &relu), LX_OK);
    lx_call cs = LX_CALL_ARGS(linen_module_v(d1), linen_module_v(relu), linen_module_v(d2));
    CHECK_EQ_INT(linen_module_new(&linen_Sequential, &cs, &m), LX_OK);
    lx_tree *vars = NULL, *params = NULL, *state = NULL;
    lx_key key = lx_key_from_seed(7);
    CHECK_EQ_INT(linen_init(m, LINEN_KEY(key), &LX_ARGS(x), NULL, &vars), LX_OK);
    if (!vars) return;
    params = lx_tree_retain(lx_tree_get(vars, "params")->u.tree);
    optax_adam_opts o = OPTAX_ADAMW_DEFAULTS;
    o.weight_decay = 0.1;
    optax_tx *tx = optax_adamw(OPTAX_SCHED(optax_exponential_decay(0.1, 2, 0.5, 0, false, false, 0.0)), &o);
    CHECK_EQ_INT(optax_init(tx, params, &state), LX_OK);
    lx_batcher b = {0};
    CHECK_EQ_INT(lx_batcher_init(&b, N, BS, false), LX_OK);
    for (int s = 0; s < STEPS && s < n; s++) {
        size_t mark = lx_pool_open();
        if (s % b.nbatches == 0) CHECK_EQ_INT(lx_batcher_shuffle(&b, lx_key_fold_in(key, (uint32_t)(s / b.nbatches))), LX_OK);
        lx_array *in[2] = {x, y}, *bt[2] = {NULL, NULL};
        CHECK(lx_batcher_next(&b, 2, in, bt));
        ctx c = {m, bt[0], bt[1], NULL};
        lx_array *loss = NULL;
        lx_tree *grads = NULL;
        CHECK_EQ_INT(linen_value_and_grad(linen_mean_loss, &c, params, &loss, &grads, NULL), LX_OK);
        if (loss) {
            LX_TEST_REPORT_(fabs(lx_f32(loss)[0] - cli[s]) <= 1e-6 * fabs(cli[s]) + 1e-9,
                            "step %d: linnx train printed %.9g, the library gives %.9g", s, cli[s], lx_f32(loss)[0]);
            CHECK_EQ_INT(optax_step(tx, grads, &params, &state), LX_OK);
        }
        lx_release(loss);
        lx_tree_release(grads);
        lx_pool_close(mark);
    }
    CHECK(cli[STEPS - 1] < cli[0]);
    lx_batcher_free(&b);
    optax_tx_release(tx);
    lx_tree_release(state);
    lx_tree_release(params);
    lx_tree_release(vars);
    linen_module_release(m);
    linen_module_release(d1);
    linen_module_release(d2);
    linen_module_release(relu);
    lx_release(x);
    lx_release(y);
}

int main(void) {
    const char *bin = getenv("LINNX_BIN");
    if (!bin) {
        printf("LINNX_BIN not set: skipped\n");
        return 77; /* CTest's SKIP_RETURN_CODE (CMakeLists.txt) */
    }
    lx_test_current = "linen adamw + schedule + minibatches";
    test_linen_adamw_schedule_minibatches(bin);
    return lx_test_finish();
}
