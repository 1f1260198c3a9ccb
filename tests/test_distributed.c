/* Data-parallel training (linnx/distributed.h).
 *
 * Run plainly (CTest): the pure parts (shard ranges, the axis name, errors before init, and
 * LX_ERR_UNSUPPORTED in a build without MPI). MPI itself is not started here (Open MPI's
 * allocations would show up in LeakSanitizer); the multi-rank checks run from
 * tests/cli_distributed.sh, which starts this program under `mpirun -np N` with
 * LINNX_DIST_WORKER=1:
 *
 *  - every rank initialises the MLP's parameters with its OWN key (rank-dependent), then
 *    lx_dist_broadcast_tree makes rank 0's the common start;
 *  - K Adam steps with a global batch B (shuffled by lx_batcher, sharded by
 *    lx_dist_batcher_next, gradients averaged by lx_dist_allreduce_mean with small buckets so
 *    there are several);
 *  - rank 0 then runs the single-process reference (the same model, batch B, lx_batcher_next,
 *    no communication, key of rank 0) and checks every parameter and every step's mean loss:
 *    |p_dist - p_ref| <= 2e-5 * (1 + |p_ref|) — float32 summation order (a gradient is a sum
 *    of B/N local terms, then a sum over N ranks) after K Adam steps, whose normalisation
 *    can magnify a tiny gradient's relative error; measured differences are ~1e-7;
 *  - ZeRO-1 (lx_dist_zero1_*): the same run with the optimizer state sharded (gradients
 *    reduce-scattered, params all-gathered) gives the same parameters (bit-identical on 1 and 2
 *    ranks), each rank holds a contiguous T/N (+1) elements and 8 bytes of Adam state for each,
 *    and a checkpoint of the gathered state resumes unsharded and sharded to the same losses;
 *  - batch-norm running statistics: a tree of rank-dependent float32 arrays and a Variable
 *    averages to the hand-computed mean; an int leaf passes unchanged.
 *  - sync batch-norm gradients (Linen and NNX, the pmean primitive's VJP): the pmean of the
 *    ranks' gradients through BatchNorm(axis_name='data') equals the one-process gradient on the
 *    global batch to 1e-5 (1 + |g|); local statistics give a different one.
 * With LINNX_DIST_FAIL_RANK / LINNX_DIST_FAIL_STEP / LINNX_DIST_FAIL_MODE (error|kill) one rank
 * fails (an error it reports through lx_dist_check, or SIGKILL) at that step; the other ranks
 * must stop with "rank R failed at step S" (or Open MPI's own report of the death). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "linnx/autodiff.h"
#include "linnx/checkpoint.h"
#include "linnx/distributed.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/losses.h"
#include "linnx/nnx.h"
#include "linnx/nnx_layers.h"
#include "linnx/ops.h"
#include "linnx/train.h"
#include "linen_loss.h"
#include "lx_test.h"

enum { NEX = 12, IN = 3, HID = 5, OUT = 2, BATCH = 6, STEPS = 6 };

static void test_shard_range(void) {
    int64_t s = -1, n = -1;
    /* 6 rows over 3 ranks: [0,2) [2,4) [4,6) */
    for (int r = 0; r < 3; r++) {
        CHECK_EQ_INT(lx_dist_shard_range(6, r, 3, &s, &n), LX_OK);
        CHECK_EQ_INT(s, 2 * r);
        CHECK_EQ_INT(n, 2);
    }
    CHECK_EQ_INT(lx_dist_shard_range(6, 0, 1, &s, &n), LX_OK);
    CHECK_EQ_INT(s, 0);
    CHECK_EQ_INT(n, 6);
    CHECK_EQ_INT(lx_dist_shard_range(7, 1, 2, &s, &n), LX_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lx_last_error(), "7 rows does not divide evenly over 2 ranks of the 'data' axis") != NULL);
    CHECK_EQ_INT(lx_dist_shard_range(6, 3, 3, &s, &n), LX_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(lx_dist_shard_range(6, -1, 3, &s, &n), LX_ERR_INVALID_ARGUMENT);
    /* a NULL argument: "<function>: <argument> is NULL" (the library's one wording) */
    CHECK_EQ_INT(lx_dist_shard_range(6, 0, 3, NULL, &n), LX_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_shard_range: start is NULL");
    CHECK_EQ_INT(lx_dist_shard_range(6, 0, 3, &s, NULL), LX_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_shard_range: len is NULL");
    CHECK(strcmp(lx_dist_axis_name(), "data") == 0);
}

static void test_before_init(void) {
    CHECK_EQ_INT(lx_dist_rank(), 0);
    CHECK_EQ_INT(lx_dist_size(), 1);
    CHECK(!lx_dist_active());
    lx_tree *t = lx_tree_new(), *out = NULL;
    lx_status want = lx_dist_available() ? LX_ERR_INVALID_ARGUMENT : LX_ERR_UNSUPPORTED;
    CHECK_EQ_INT(lx_dist_allreduce_mean(t, &out), want);
    CHECK(out == NULL);
    /* NULL arguments, named by function and argument (a NULL input is FAILED_INPUT, status.h) */
    lx_clear_error();
    CHECK_EQ_INT(lx_dist_allreduce_mean(NULL, &out), LX_ERR_FAILED_INPUT);
    CHECK_ERROR_IS(LX_ERR_FAILED_INPUT, "lx_dist_allreduce_mean: t is NULL");
    CHECK_EQ_INT(lx_dist_allreduce_mean(t, NULL), LX_ERR_INVALID_ARGUMENT);
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_allreduce_mean: output is NULL");
    if (lx_dist_available()) {
        lx_clear_error(); /* nothing pending, so the NULL is reported as itself */
        CHECK_EQ_INT(lx_dist_broadcast_tree(NULL, 0), LX_ERR_FAILED_INPUT);
        CHECK_ERROR_IS(LX_ERR_FAILED_INPUT, "lx_dist_broadcast_tree: t is NULL");
        CHECK_EQ_INT(lx_dist_allreduce_f32(NULL, 2, true), LX_ERR_INVALID_ARGUMENT);
        CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_allreduce_f32: buf is NULL");
        float one = 1;
        CHECK_EQ_INT(lx_dist_allreduce_f32(&one, -1, true), LX_ERR_INVALID_ARGUMENT);
        CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_allreduce_f32: n = -1 is outside 0..2^31-1");
        CHECK_EQ_INT(lx_dist_overlap_end(t, NULL), LX_ERR_INVALID_ARGUMENT);
        CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_overlap_end: output is NULL");
        /* a NULL grads tree with an out pointer is a missing input, not "abandon" (it was LX_OK
         * with *out NULL); only (NULL, NULL) abandons */
        out = t;
        lx_clear_error();
        CHECK_EQ_INT(lx_dist_overlap_end(NULL, &out), LX_ERR_FAILED_INPUT);
        CHECK_ERROR_IS(LX_ERR_FAILED_INPUT, "lx_dist_overlap_end: grads is NULL");
        CHECK(out == NULL);
        lx_clear_error();
    }
    CHECK_EQ_INT(lx_dist_set_timeout(0), LX_ERR_INVALID_ARGUMENT);
    /* a deadline must be finite: an infinite one hangs on a stopped rank */
    CHECK_FAILS(lx_dist_set_timeout(INFINITY), LX_ERR_INVALID_ARGUMENT, "distributed: timeout inf is not in (0, 1e9] seconds");
    CHECK_EQ_INT(lx_dist_set_timeout(NAN), LX_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(lx_dist_set_timeout(60), LX_OK);
    CHECK_EQ_INT(lx_dist_set_bucket_bytes(2), LX_ERR_INVALID_ARGUMENT);
    /* the overlapped all-reduce needs lx_dist_init; abandoning nothing is fine */
    CHECK_EQ_INT(lx_dist_overlap_begin(), want);
    if (lx_dist_available()) CHECK_EQ_INT(lx_dist_overlap_end(NULL, NULL), LX_OK);
    /* pmean: one process is its own mean; the axis must be 'data'; a failed input stays failed */
    lx_array *a = lx_array_full_f32(1, (int64_t[]){2}, 3.0f);
    size_t mark = lx_pool_open();
    CHECK(lx_dist_pmean(a, "data") == a);
    CHECK(lx_dist_pmean(a, "batch") == NULL);
    CHECK_EQ_INT(lx_last_status(), LX_ERR_NOT_FOUND);
    CHECK(strstr(lx_last_error(), "unbound axis name: batch") != NULL);
    CHECK(lx_dist_pmean(NULL, "data") == NULL); /* the failure above, still pending, stands */
    CHECK_ERROR_IS(LX_ERR_NOT_FOUND, "unbound axis name: batch (the data-parallel mesh axis is 'data')");
    lx_clear_error(); /* none pending: the NULL is reported as itself */
    CHECK(lx_dist_pmean(NULL, "data") == NULL);
    CHECK_ERROR_IS(LX_ERR_FAILED_INPUT, "lx_dist_pmean: x is NULL");
    lx_pool_close(mark);
    lx_release(a);
    /* a failed local status passes through lx_dist_check before init */
    CHECK_EQ_INT(lx_dist_check(LX_ERR_SHAPE), LX_ERR_SHAPE);
    if (!lx_dist_available()) {
        CHECK_EQ_INT(lx_dist_init(NULL, NULL, NULL, NULL), LX_ERR_UNSUPPORTED);
        CHECK(strstr(lx_last_error(), "built without it") != NULL);
    }
    lx_tree_release(t);
}

/* ZeRO-1's argument errors, in one process without MPI started: a NULL argument is FAILED_INPUT
 * (lx_dist_zero1_new takes tx all the same), a call before lx_dist_init is INVALID_ARGUMENT (in
 * a build without MPI every call is UNSUPPORTED); nothing is returned and nothing changes. */
static void test_zero1_before_init(void) {
    bool mpi = lx_dist_available();
    lx_status want = mpi ? LX_ERR_INVALID_ARGUMENT : LX_ERR_UNSUPPORTED;
    lx_status null_st = mpi ? LX_ERR_FAILED_INPUT : LX_ERR_UNSUPPORTED;
    /* a NULL argument: "<function>: <argument> is NULL", the library's one wording */
#define Z1_NULL(expr, msg)                                                                             \
    do {                                                                                               \
        lx_clear_error();                                                                              \
        lx_status s_ = (expr);                                                                         \
        CHECK_EQ_INT(s_, null_st);                                                                     \
        if (mpi) CHECK_ERROR_IS(LX_ERR_FAILED_INPUT, msg);                                             \
        else CHECK_ERROR_HAS("needs MPI");                                                             \
    } while (0)
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    lx_tree *p = lx_tree_new(), *p0 = NULL;
    lx_array *w = lx_array_full_f32(1, (int64_t[]){3}, 1.0f);
    CHECK_EQ_INT(lx_tree_set(p, "w", lx_array_v(w)), LX_OK);
    p0 = p;
    lx_dist_zero1 *z = (lx_dist_zero1 *)&p; /* any non-NULL: a failure must clear it */
    Z1_NULL(lx_dist_zero1_new(NULL, p, &z), "lx_dist_zero1_new: tx is NULL");
    CHECK(z == NULL);
    z = (lx_dist_zero1 *)&p;
    Z1_NULL(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), NULL, &z), "lx_dist_zero1_new: params is NULL");
    CHECK(z == NULL);
    CHECK_FAILS(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), p, NULL), want,
                mpi ? "lx_dist_zero1_new: output is NULL" : "lx_dist_zero1_new needs MPI");
    if (mpi) CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_zero1_new: output is NULL");
    z = (lx_dist_zero1 *)&p;
    CHECK_FAILS(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), p, &z), want,
                mpi ? "distributed: lx_dist_zero1_new before lx_dist_init" : "lx_dist_zero1_new needs MPI");
    CHECK(z == NULL);
    /* no object: begin, step (also the abandoning step(NULL, NULL, NULL)) and the state calls */
    Z1_NULL(lx_dist_zero1_begin(NULL, p), "lx_dist_zero1_begin: z is NULL");
    Z1_NULL(lx_dist_zero1_step(NULL, p, &p), "lx_dist_zero1_step: z is NULL");
    CHECK(p == p0 && lx_f32(w)[0] == 1.0f);
    Z1_NULL(lx_dist_zero1_step(NULL, NULL, NULL), "lx_dist_zero1_step: z is NULL");
    lx_tree *out = p;
    Z1_NULL(lx_dist_zero1_gather_state(NULL, p, &out), "lx_dist_zero1_gather_state: z is NULL");
    CHECK(out == NULL);
    Z1_NULL(lx_dist_zero1_load_state(NULL, p), "lx_dist_zero1_load_state: z is NULL");
#undef Z1_NULL
    int64_t total = -1;
    CHECK_EQ_INT(lx_dist_zero1_owned(NULL, &total), 0);
    CHECK_EQ_INT(total, 0);
    CHECK(lx_dist_zero1_state(NULL) == NULL);
    CHECK_EQ_INT(lx_dist_zero1_state_bytes(NULL), 0);
    lx_dist_zero1_free(NULL);
    lx_release(w);
    lx_tree_release(p);
}

/* One process (rank 0 of 1): the shard is the whole global batch, the rows lx_batcher_next
 * gives for the same permutation; a wrong row count is an error naming the array. */
static void test_batcher_single(void) {
    float xv[10];
    for (int i = 0; i < 10; i++) xv[i] = (float)i * 10;
    lx_array *x = lx_array_from_f32(2, (int64_t[]){5, 2}, xv), *bad = lx_array_from_f32(1, (int64_t[]){4}, xv);
    lx_batcher a = {0}, b = {0};
    CHECK_EQ_INT(lx_batcher_init(&a, 5, 2, false), LX_OK);
    CHECK_EQ_INT(lx_batcher_init(&b, 5, 2, false), LX_OK);
    CHECK_EQ_INT(lx_batcher_shuffle(&a, lx_key_from_seed(1)), LX_OK);
    CHECK_EQ_INT(lx_batcher_shuffle(&b, lx_key_from_seed(1)), LX_OK);
    size_t mark = lx_pool_open();
    int nb = 0;
    lx_array *oa = NULL, *ob = NULL;
    while (lx_batcher_next(&a, 1, &x, &oa)) {
        CHECK(lx_dist_batcher_next(&b, 1, &x, &ob));
        CHECK(ob && lx_array_equal(oa, ob));
        nb++;
    }
    CHECK_EQ_INT(nb, 2);
    CHECK(!lx_dist_batcher_next(&b, 1, &x, &ob)); /* the epoch is over */
    CHECK_EQ_INT(lx_last_status(), LX_OK);
    b.next = 0;
    CHECK(!lx_dist_batcher_next(&b, 1, &bad, &ob));
    CHECK_EQ_INT(lx_last_status(), LX_ERR_SHAPE);
    CHECK(strstr(lx_last_error(), "lx_dist_batcher_next: arrays[0] has ") != NULL);
    CHECK(strstr(lx_last_error(), "rows (axis 0), the batcher 5") != NULL);
    /* a NULL array is a failed input: an earlier failure's message is kept (it was cleared) */
    lx_fail(LX_ERR_SHAPE, "an earlier op failed");
    lx_array *nul = NULL;
    CHECK(!lx_dist_batcher_next(&b, 1, &nul, &ob));
    CHECK_ERROR_IS(LX_ERR_SHAPE, "an earlier op failed");
    lx_clear_error();
    CHECK(!lx_dist_batcher_next(&b, 1, &nul, &ob));
    CHECK_ERROR_IS(LX_ERR_FAILED_INPUT, "lx_dist_batcher_next: arrays[0] is NULL");
    /* bad arguments name the function and the argument */
    lx_batcher none = {0};
    CHECK(!lx_dist_batcher_next(NULL, 1, &x, &ob));
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_batcher_next: b is NULL");
    CHECK(!lx_dist_batcher_next(&none, 1, &x, &ob));
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_batcher_next: b holds no permutation (not made by lx_batcher_init)");
    CHECK(!lx_dist_batcher_next(&b, -1, &x, &ob));
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_batcher_next: narrays = -1 is negative");
    CHECK(!lx_dist_batcher_next(&b, 1, NULL, &ob));
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_batcher_next: arrays is NULL");
    CHECK(!lx_dist_batcher_next(&b, 1, &x, NULL));
    CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "lx_dist_batcher_next: outs is NULL");
    lx_pool_close(mark);
    lx_batcher_free(&a);
    lx_batcher_free(&b);
    lx_release(x);
    lx_release(bad);
}

/* The tape's "gradient is final" callback (autodiff.h), which the overlapped all-reduce uses:
 * loss = sum(tanh(x @ W1) @ W2) + 0 * nothing of u; every watched array is reported once, W2
 * (used last in the forward pass) before W1, with the gradient lx_tape_backward returns, and u,
 * which the loss does not use, with NULL. */
typedef struct {
    int n;
    const lx_array *who[8];
    lx_array *g[8];
} ready_log;

static void on_ready(void *user, const lx_array *x, const lx_array *g) {
    ready_log *l = user;
    if (l->n < 8) {
        l->who[l->n] = x;
        l->g[l->n] = g ? lx_array_copy(g) : NULL;
    }
    l->n++;
}

static void test_grad_ready(void) {
    lx_array *x = lx_retain(lx_random_normal(lx_key_from_seed(1), 2, (int64_t[]){4, 3}));
    lx_array *w1 = lx_retain(lx_random_normal(lx_key_from_seed(2), 2, (int64_t[]){3, 5}));
    lx_array *w2 = lx_retain(lx_random_normal(lx_key_from_seed(3), 2, (int64_t[]){5, 2}));
    lx_array *u = lx_array_full_f32(1, (int64_t[]){2}, 1.0f);
    ready_log log = {0};
    lx_tape_set_grad_ready(on_ready, &log);
    lx_tape *t = NULL;
    CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
    CHECK_EQ_INT(lx_tape_watch(t, w1), LX_OK);
    CHECK_EQ_INT(lx_tape_watch(t, u), LX_OK);
    CHECK_EQ_INT(lx_tape_watch(t, w2), LX_OK);
    size_t mark = lx_pool_open();
    lx_array *h = lx_tanh(lx_matmul(x, w1));
    lx_array *y = lx_sum(lx_matmul(h, w2), LX_ALL_AXES, false);
    lx_array *xs[3] = {w1, u, w2}, *gs[3] = {0};
    CHECK(y != NULL);
    CHECK_EQ_INT(lx_tape_backward(t, y, 3, xs, gs), LX_OK);
    lx_tape_set_grad_ready(NULL, NULL);
    CHECK_EQ_INT(log.n, 3);
    CHECK(log.who[0] == w2 && log.who[1] == w1 && log.who[2] == u);
    CHECK(log.g[0] && lx_array_equal(log.g[0], gs[2]));
    CHECK(log.g[1] && lx_array_equal(log.g[1], gs[0]));
    CHECK(log.g[2] == NULL);
    /* cleared: a later pass reports nothing */
    lx_tape_free(t);
    CHECK_EQ_INT(lx_tape_new(&t), LX_OK);
    CHECK_EQ_INT(lx_tape_watch(t, w2), LX_OK);
    lx_array *y2 = lx_sum(lx_matmul(h, w2), LX_ALL_AXES, false), *g2 = NULL;
    CHECK_EQ_INT(lx_tape_backward(t, y2, 1, &w2, &g2), LX_OK);
    CHECK_EQ_INT(log.n, 3);
    lx_pool_close(mark);
    lx_tape_free(t);
    for (int i = 0; i < 3; i++) {
        lx_release(gs[i]);
        lx_release(log.g[i]);
    }
    lx_release(g2);
    lx_release(x);
    lx_release(w1);
    lx_release(w2);
    lx_release(u);
}

/* ---------------------------------------------------------------- the multi-rank worker */

static linen_module *mlp(linen_module **parts) {
    linen_module *m = NULL;
    lx_call c1 = LX_CALL_KWARGS(LX_KW_INT("features", HID)), c2 = LX_CALL_KWARGS(LX_KW_INT("features", OUT));
    if (linen_module_new(&linen_Dense, &c1, &parts[0]) || linen_module_new(&linen_tanh, NULL, &parts[1]) ||
        linen_module_new(&linen_Dense, &c2, &parts[2]))
        return NULL;
    lx_call cs = LX_CALL_ARGS(linen_module_v(parts[0]), linen_module_v(parts[1]), linen_module_v(parts[2]));
    if (linen_module_new(&linen_Sequential, &cs, &m)) return NULL;
    return m;
}

static lx_tree *init_params(linen_module *m, lx_key key, lx_array *x) {
    lx_tree *vars = NULL;
    if (linen_init(m, LINEN_KEY(key), &LX_ARGS(x), NULL, &vars) != LX_OK) return NULL;
    lx_tree *p = lx_tree_copy(lx_tree_get(vars, "params")->u.tree);
    lx_tree_release(vars);
    /* own copies of the arrays: the broadcast writes into them */
    lx_flat f = {0}, g = {0};
    lx_tree *out = NULL;
    if (lx_tree_flatten(p, &f) == LX_OK) {
        for (size_t i = 0; i < f.len; i++) {
            lx_array *c = lx_array_copy(f.items[i].value.u.array);
            lx_flat_append(&g, f.items[i].path, lx_array_v(c));
            lx_release(c);
        }
        lx_tree_unflatten(&g, &out);
    }
    lx_flat_free(&f);
    lx_flat_free(&g);
    lx_tree_release(p);
    return out;
}

/* K steps; dist: sharded + averaged. losses[k]: the global batch's mean loss before step k. */
static lx_dist_zero1 *g_zero1; /* set: the dist run steps with ZeRO-1 */
static bool g_overlap;        /* set: the dist run overlaps the all-reduce with the backward pass */
static int g_k0 = 0, g_k1 = STEPS; /* the steps train() runs: [g_k0, g_k1) */
static lx_tree *g_state_in;   /* set: the unsharded optimizer state to start from (taken) */
static lx_tree **g_state_out; /* set: receives the unsharded optimizer state at the end */

static lx_status train(linen_module *m, lx_tree **params, lx_array *x, lx_array *y, bool dist, float *losses,
                       int fail_rank, int fail_step, int fail_mode) {
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    optax_tx *tx = optax_adam(OPTAX_CONST(0.05), &o);
    lx_tree *state = g_state_in;
    g_state_in = NULL;
    lx_status st = state ? LX_OK : optax_init(tx, *params, &state);
    lx_dist_zero1 *z = dist ? g_zero1 : NULL;
    lx_batcher b = {0};
    lx_key skey = lx_key_from_seed(11);
    if (st == LX_OK) st = lx_batcher_init(&b, NEX, BATCH, false);
    for (int k = g_k0; st == LX_OK && k < g_k1; k++) {
        size_t mark = lx_pool_open();
        lx_dist_set_step(k);
        if (k % b.nbatches == 0 || k == g_k0) { /* a resumed run replays the epoch's order */
            st = lx_batcher_shuffle(&b, lx_key_fold_in(skey, (uint32_t)(k / b.nbatches)));
            b.next = k % b.nbatches;
        }
        lx_array *in[2] = {x, y}, *bt[2] = {NULL, NULL};
        if (st == LX_OK && !(dist ? lx_dist_batcher_next(&b, 2, in, bt) : lx_batcher_next(&b, 2, in, bt)))
            st = lx_last_status() ? lx_last_status() : lx_fail(LX_ERR_INTERNAL, "epoch ended early");
        ctx c = {m, bt[0], bt[1], NULL};
        lx_array *loss = NULL;
        lx_tree *grads = NULL, *avg = NULL;
        bool ov = dist && g_overlap && !z;
        if (st == LX_OK && ov) st = lx_dist_overlap_begin();
        if (st == LX_OK && z && g_overlap) st = lx_dist_zero1_begin(z, *params);
        if (st == LX_OK) st = linen_value_and_grad(linen_mean_loss, &c, *params, &loss, &grads, NULL);
        if (dist && lx_dist_rank() == fail_rank && k == fail_step) {
            if (fail_mode == 1) raise(SIGKILL);
            if (fail_mode == 2) sleep(30); /* a rank that hangs: the others' deadline must fire */
            st = lx_fail(LX_ERR_SHAPE, "injected failure on rank %d", fail_rank);
        }
        if (dist) st = lx_dist_check(st);
        if (ov && st != LX_OK) lx_dist_overlap_end(NULL, NULL); /* the buckets in flight are abandoned */
        if (z && st != LX_OK) lx_dist_zero1_step(z, NULL, NULL);
        float l = st == LX_OK ? lx_f32(loss)[0] : 0;
        if (st == LX_OK && dist) st = lx_dist_allreduce_f32(&l, 1, true);
        if (st == LX_OK && z) st = lx_dist_zero1_step(z, grads, params);
        else {
            if (st == LX_OK && ov) st = lx_dist_overlap_end(grads, &avg);
            else if (st == LX_OK && dist) st = lx_dist_allreduce_mean(grads, &avg);
            if (st == LX_OK) st = optax_step(tx, dist ? avg : grads, params, &state);
        }
        losses[k] = l;
        lx_release(loss);
        lx_tree_release(grads);
        lx_tree_release(avg);
        lx_pool_close(mark);
    }
    lx_batcher_free(&b);
    if (g_state_out && st == LX_OK) *g_state_out = state, state = NULL;
    lx_tree_release(state);
    optax_tx_release(tx);
    return st;
}

/* A global batch that does not divide over the ranks (the remainder batch of keep_remainder):
 * false with the shard error, and outs NULL as lx_batcher_next leaves them on failure (they were
 * left holding the caller's old pointers); the batcher does not advance. */
static void test_batcher_uneven(int rank, int size) {
    lx_batcher b = {0};
    CHECK_EQ_INT(lx_batcher_init(&b, 2 * size + 1, 2 * size, true), LX_OK); /* batches of 2N rows, then 1 */
    lx_array *x = lx_array_full_f32(1, (int64_t[]){2 * size + 1}, 1.0f), *ob = NULL;
    size_t mark = lx_pool_open();
    CHECK(lx_dist_batcher_next(&b, 1, &x, &ob));
    CHECK(ob != NULL && ob->shape[0] == 2);
    ob = x; /* a stale pointer the failure must clear */
    bool got = lx_dist_batcher_next(&b, 1, &x, &ob);
    if (size > 1) {
        CHECK(!got);
        CHECK(ob == NULL);
        char want[160];
        snprintf(want, sizeof want, "distributed: a global batch of 1 rows does not divide evenly over %d ranks of the 'data' axis", size);
        CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, want);
        CHECK_EQ_INT((int)b.next, 1);
    } else
        CHECK(got && ob != NULL && ob->shape[0] == 1);
    lx_clear_error();
    lx_pool_close(mark);
    lx_release(x);
    lx_batcher_free(&b);
    (void)rank;
}

static void test_sync_stats(int rank, int size) {
    /* batch_stats-like tree: rank-dependent means, a Variable, an int leaf */
    float mv[3] = {(float)rank, 2.0f * (float)rank + 1.0f, -(float)rank};
    lx_array *mean = lx_array_from_f32(1, (int64_t[]){3}, mv);
    lx_array *var = lx_array_full_f32(1, (int64_t[]){2}, (float)(rank * rank));
    lx_variable *v = NULL;
    CHECK_EQ_INT(lx_variable_new(&lx_BatchStat, var, &v), LX_OK);
    lx_tree *t = lx_tree_new(), *out = NULL;
    lx_tree_set_path(t, "BatchNorm_0/mean", lx_array_v(mean));
    lx_tree_set_path(t, "BatchNorm_0/var", lx_var_v(v));
    lx_tree_set_path(t, "count", lx_int_v(7));
    CHECK_EQ_INT(lx_dist_set_bucket_bytes(8), LX_OK); /* 2 floats: several buckets */
    CHECK_EQ_INT(lx_dist_allreduce_mean(t, &out), LX_OK);
    double rbar = (size - 1) / 2.0, r2bar = 0;
    for (int r = 0; r < size; r++) r2bar += (double)r * r / size;
    const lx_value *m = out ? lx_tree_find(out, "BatchNorm_0/mean") : NULL, *vv = out ? lx_tree_find(out, "BatchNorm_0/var") : NULL;
    /* a Variable comes back as a Variable of its type holding the mean */
    CHECK(m && m->kind == LX_V_ARRAY && vv && vv->kind == LX_V_VARIABLE && lx_variable_type(vv->u.var) == &lx_BatchStat);
    if (m && vv && vv->kind == LX_V_VARIABLE) {
        CHECK(fabs(lx_f32(m->u.array)[0] - rbar) < 1e-6);
        CHECK(fabs(lx_f32(m->u.array)[1] - (2 * rbar + 1)) < 1e-6);
        CHECK(fabs(lx_f32(m->u.array)[2] + rbar) < 1e-6);
        CHECK(fabs(lx_f32(lx_variable_get_value(vv->u.var))[1] - r2bar) < 1e-6);
    }
    const lx_value *cnt = out ? lx_tree_find(out, "count") : NULL;
    CHECK(cnt && cnt->kind == LX_V_INT && cnt->u.i == 7);
    CHECK_EQ_INT(lx_dist_set_bucket_bytes(64), LX_OK);
    lx_tree_release(out);
    lx_tree_release(t);
    lx_variable_release(v);
    lx_release(mean);
    lx_release(var);
}

/* bfloat16 leaves are averaged too (summed in float32, the mean rounded to nearest even), by
 * lx_dist_allreduce_mean and by the overlapped path (a bfloat16 gradient is never reported during
 * the backward pass: overlap_end reduces it in its last bucket). Rank r holds
 * [1 + r, 3, 1 + r/128, -2r] (all exact in bfloat16); the means: [1 + (N-1)/2, 3, m, -(N-1)] with
 * m = 1 (N = 1), 1 + 1/256 rounded to even = 1 (N = 2), 1 + 1/128 (N = 3). */
static uint16_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16); /* the values here are exact in bfloat16 */
}

static float bf16_value(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void test_bf16_mean(int rank, int size) {
    lx_array *b = lx_array_new(LX_BF16, 1, (int64_t[]){4});
    float v[4] = {1.0f + (float)rank, 3.0f, 1.0f + (float)rank / 128.0f, -2.0f * (float)rank};
    for (int k = 0; k < 4; k++) ((uint16_t *)b->data)[k] = bf16_bits(v[k]);
    lx_array *f = lx_array_full_f32(1, (int64_t[]){2}, (float)rank);
    lx_tree *t = lx_tree_new();
    lx_tree_set_path(t, "a/bf", lx_array_v(b));
    lx_tree_set_path(t, "a/f", lx_array_v(f));
    float want[4] = {1.0f + (float)(size - 1) / 2.0f, 3.0f, size == 3 ? 1.0f + 1.0f / 128.0f : 1.0f, -(float)(size - 1)};
    for (int path = 0; path < 2; path++) { /* 0: allreduce_mean, 1: overlap_begin/end */
        lx_tree *out = NULL;
        if (path == 0) CHECK_EQ_INT(lx_dist_allreduce_mean(t, &out), LX_OK);
        else {
            CHECK_EQ_INT(lx_dist_overlap_begin(), LX_OK);
            CHECK_EQ_INT(lx_dist_overlap_end(t, &out), LX_OK);
        }
        const lx_value *o = out ? lx_tree_find(out, "a/bf") : NULL, *of = out ? lx_tree_find(out, "a/f") : NULL;
        CHECK(o && o->kind == LX_V_ARRAY && o->u.array->dtype == LX_BF16 && o->u.array->size == 4);
        if (o && o->kind == LX_V_ARRAY && o->u.array->dtype == LX_BF16)
            for (int k = 0; k < 4; k++)
                LX_TEST_REPORT_(bf16_value(((const uint16_t *)o->u.array->data)[k]) == want[k],
                                "bf16 mean (path %d) [%d]: %.9g, want %.9g", path, k,
                                bf16_value(((const uint16_t *)o->u.array->data)[k]), want[k]);
        CHECK(of && of->kind == LX_V_ARRAY && lx_f32(of->u.array)[1] == (float)(size - 1) / 2.0f);
        lx_tree_release(out);
    }
    lx_tree_release(t);
    lx_release(b);
    lx_release(f);
}

/* loss = sum(x * x) * c: its gradient is 2 c x */
static lx_status sq_loss(int n, lx_array *const *xs, void *user, lx_array **loss) {
    (void)n;
    lx_array *c = lx_array_full_f32(0, NULL, *(const float *)user);
    *loss = lx_mul(lx_sum(lx_mul(xs[0], xs[0]), 0, NULL, false), lx_autorelease(c));
    return *loss ? LX_OK : lx_last_status();
}

/* A second lx_dist_overlap_begin after a backward pass whose gradients were not taken is refused
 * (it started over: that pass's buckets were dropped, requests and all), and the pass is kept:
 * lx_dist_overlap_end still averages it. With one rank no hook is set and nothing is refused. */
static void test_overlap_double_begin(int rank, int size) {
    lx_array *x = lx_array_full_f32(1, (int64_t[]){3}, 1.5f), *val = NULL, *g = NULL;
    float c = (float)(rank + 1);
    size_t mark = lx_pool_open();
    CHECK_EQ_INT(lx_dist_overlap_begin(), LX_OK);
    CHECK_EQ_INT(lx_value_and_grad(sq_loss, &c, 1, &x, &val, &g), LX_OK);
    lx_status st = lx_dist_overlap_begin();
    if (size > 1) {
        CHECK_EQ_INT(st, LX_ERR_INVALID_ARGUMENT);
        CHECK(strstr(lx_last_error(), "the previous backward pass's gradients were not taken") != NULL);
    } else
        CHECK_EQ_INT(st, LX_OK);
    lx_clear_error();
    lx_tree *t = lx_tree_new(), *avg = NULL;
    lx_tree_set(t, "x", lx_array_v(g));
    CHECK_EQ_INT(lx_dist_overlap_end(t, &avg), LX_OK);
    const lx_value *a = avg ? lx_tree_get(avg, "x") : NULL;
    float want = 2.0f * 1.5f * (float)(size + 1) / 2.0f; /* the mean over ranks of 2 c x */
    CHECK(a && a->kind == LX_V_ARRAY && a->u.array->size == 3);
    if (a && a->kind == LX_V_ARRAY)
        for (int k = 0; k < 3; k++)
            LX_TEST_REPORT_(lx_f32(a->u.array)[k] == want, "overlap after a refused begin [%d]: %.9g, want %.9g", k,
                            lx_f32(a->u.array)[k], want);
    lx_tree_release(avg);
    lx_tree_release(t);
    lx_release(val);
    lx_release(g);
    lx_release(x);
    lx_pool_close(mark);
}

/* ZeRO-1 with bfloat16 moments (adam's mu_dtype): the gathered state is optax_init's layout with
 * every per-parameter leaf whole (mu in bfloat16 was the rank's own shard: a checkpoint of it held
 * rank 0's slice only, and load_state handed that slice to every rank), and it equals the
 * unsharded run's state bit for bit; loading it back and stepping once more gives the unsharded
 * params. The gradients are small integers, so the sums over the ranks are exact in any order. */
static lx_tree *z1_tree(int rank, int step, bool grad) {
    float a[5], c[3];
    for (int k = 0; k < 5; k++) a[k] = grad ? (float)((k + rank + step) % 5) - 2.0f : 0.5f + 0.25f * (float)k;
    for (int k = 0; k < 3; k++) c[k] = grad ? (float)((2 * k + rank + step) % 3) - 1.0f : -1.0f + 0.5f * (float)k;
    lx_array *aa = lx_array_from_f32(1, (int64_t[]){5}, a), *ca = lx_array_from_f32(1, (int64_t[]){3}, c);
    lx_tree *t = lx_tree_new();
    lx_tree_set_path(t, "a", lx_array_v(aa));
    lx_tree_set_path(t, "b/c", lx_array_v(ca));
    lx_release(aa);
    lx_release(ca);
    return t;
}

static void check_same_tree(const char *what, const lx_tree *x, const lx_tree *y) {
    lx_flat a = {0}, b = {0};
    CHECK(x && y && lx_tree_flatten(x, &a) == LX_OK && lx_tree_flatten(y, &b) == LX_OK && a.len == b.len);
    for (size_t i = 0; i < a.len && a.len == b.len; i++) {
        const lx_value *u = &a.items[i].value, *v = &b.items[i].value;
        bool same = !strcmp(a.items[i].path, b.items[i].path) && u->kind == v->kind;
        if (same && u->kind == LX_V_ARRAY)
            same = u->u.array->dtype == v->u.array->dtype && u->u.array->size == v->u.array->size &&
                   !memcmp(u->u.array->data, v->u.array->data, lx_array_nbytes(u->u.array));
        LX_TEST_REPORT_(same, "%s: leaf %s differs (%s, %lld elements vs %s, %lld)", what, a.items[i].path,
                        u->kind == LX_V_ARRAY ? lx_dtype_name(u->u.array->dtype) : "-",
                        u->kind == LX_V_ARRAY ? (long long)u->u.array->size : -1LL,
                        v->kind == LX_V_ARRAY ? lx_dtype_name(v->u.array->dtype) : "-",
                        v->kind == LX_V_ARRAY ? (long long)v->u.array->size : -1LL);
    }
    lx_flat_free(&a);
    lx_flat_free(&b);
}

static void test_zero1_bf16_moments(int rank, int size) {
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    o.mu_dtype = LX_BF16;
    lx_tree *p = z1_tree(0, 0, false), *rp = z1_tree(0, 0, false), *rs = NULL, *full = NULL;
    optax_tx *tx = optax_adam(OPTAX_CONST(0.1), &o);
    lx_dist_zero1 *z = NULL;
    CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.1), &o), p, &z), LX_OK);
    CHECK_EQ_INT(optax_init(tx, rp, &rs), LX_OK);
    for (int step = 0; z && step < 4; step++) {
        /* the reference's gradient: the ranks' mean, as the library forms it (exact sum, * 1/N) */
        lx_tree *g = z1_tree(rank, step, true), *gm = z1_tree(0, step, true);
        lx_flat f = {0};
        lx_tree_flatten(gm, &f);
        for (size_t i = 0; i < f.len; i++) {
            lx_array *a = f.items[i].value.u.array;
            for (int64_t k = 0; k < a->size; k++) {
                float sum = 0;
                for (int r = 0; r < size; r++) {
                    lx_tree *gr = z1_tree(r, step, true);
                    sum += lx_f32(lx_tree_find(gr, f.items[i].path)->u.array)[k];
                    lx_tree_release(gr);
                }
                lx_f32(a)[k] = sum * (1.0f / (float)size);
            }
        }
        lx_flat_free(&f);
        CHECK_EQ_INT(optax_step(tx, gm, &rp, &rs), LX_OK);
        if (step == 3) { /* the last step runs on a fresh shard cut from the gathered state */
            CHECK_EQ_INT(lx_dist_zero1_gather_state(z, p, &full), LX_OK);
            lx_dist_zero1 *z2 = NULL;
            CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.1), &o), p, &z2), LX_OK);
            if (z2 && full) CHECK_EQ_INT(lx_dist_zero1_load_state(z2, full), LX_OK);
            lx_dist_zero1_free(z);
            z = z2;
        }
        if (z) CHECK_EQ_INT(lx_dist_zero1_step(z, g, &p), LX_OK);
        lx_tree_release(g);
        lx_tree_release(gm);
        if (step == 2) { /* compared with the reference's state after the same 3 steps */
            lx_tree *gs = NULL;
            CHECK_EQ_INT(lx_dist_zero1_gather_state(z, p, &gs), LX_OK);
            check_same_tree("zero1 gathered bf16-moment state after 3 steps", gs, rs);
            lx_tree_release(gs);
        }
    }
    check_same_tree("zero1 params after 4 steps (bf16 moments, reloaded at step 3)", p, rp);
    if (rank == 0 && !lx_test_failed) printf("zero1 bf16 moments: %d ranks, gathered state and params equal the unsharded run\n", size);
    lx_tree_release(full);
    lx_dist_zero1_free(z);
    optax_tx_release(tx);
    lx_tree_release(p);
    lx_tree_release(rp);
    lx_tree_release(rs);
}

/* Sync batch-norm: BatchNorm(axis_name='data') (Linen and NNX) on each rank's shard of a global
 * batch of 12 rows gives the running statistics and outputs that the one-process BatchNorm
 * computes on the whole batch (rank 0 runs that reference; every rank checks its own rows);
 * without axis_name the statistics are the shard's own (different when the shards differ). */
enum { BN_ROWS = 12, BN_F = 3 };

static lx_status linen_bn_run(lx_array *x, const char *axis_name, lx_tree **stats, lx_array **y) {
    lx_call c = axis_name ? LX_CALL_KWARGS(LX_KW_FLOAT("momentum", 0.5), LX_KW_STR("axis_name", axis_name))
                          : LX_CALL_KWARGS(LX_KW_FLOAT("momentum", 0.5));
    linen_module *bn = NULL;
    lx_tree *vars = NULL;
    lx_call train = {1, (lx_value[]){lx_array_v(x)}, 1, (lx_kwarg[]){LX_KW_BOOL("use_running_average", false)}};
    linen_opts mut = {.mutable = LINEN_MUTABLE("batch_stats"), .mutable_given = true};
    lx_value out = lx_none();
    lx_status st = linen_module_new(&linen_BatchNorm, &c, &bn);
    if (st == LX_OK) st = linen_init(bn, LINEN_KEY(lx_key_from_seed(0)), &train, NULL, &vars);
    if (st == LX_OK) st = linen_apply(bn, vars, LINEN_NO_RNGS, &train, &mut, &out, stats);
    if (st == LX_OK) *y = lx_retain(out.u.array);
    lx_value_free(&out);
    lx_tree_release(vars);
    linen_module_release(bn);
    return st;
}

static lx_status nnx_bn_run(lx_array *x, const char *axis_name, lx_array **mean, lx_array **var) {
    lx_call c = axis_name ? LX_CALL(LX_ARGS_LIST(lx_int_v(BN_F)),
                                    LX_KWARGS_LIST(LX_KW_FLOAT("momentum", 0.5), LX_KW_STR("axis_name", axis_name)))
                          : LX_CALL(LX_ARGS_LIST(lx_int_v(BN_F)), LX_KWARGS_LIST(LX_KW_FLOAT("momentum", 0.5)));
    nnx_rngs *r = NULL;
    nnx_module *bn = NULL;
    lx_status st = nnx_rngs_from_seed(0, &r);
    if (st == LX_OK) st = nnx_module_new(&nnx_BatchNorm, &c, r, &bn);
    size_t mark = lx_pool_open();
    if (st == LX_OK && !nnx_batch_norm_forward((nnx_batch_norm *)bn, x, 0)) st = lx_last_status();
    lx_pool_close(mark);
    if (st == LX_OK) {
        *mean = lx_retain(lx_variable_get_value(((nnx_batch_norm *)bn)->mean));
        *var = lx_retain(lx_variable_get_value(((nnx_batch_norm *)bn)->var));
    }
    nnx_module_release(bn);
    nnx_rngs_release(r);
    return st;
}

static double max_rel(const lx_array *a, const lx_array *b, int64_t boff) {
    double m = 0;
    for (int64_t i = 0; a && b && i < a->size; i++) {
        double d = fabs((double)lx_f32(a)[i] - lx_f32(b)[boff + i]) / (1 + fabs(lx_f32(b)[boff + i]));
        m = lx_worse(m, d);
    }
    return a && b ? m : 1e30;
}

static void test_sync_batch_norm(int rank, int size) {
    size_t mark = lx_pool_open();
    /* rows drift with their index: the shards' moments differ */
    lx_array *xg = lx_random_normal(lx_key_from_seed(21), 2, (int64_t[]){BN_ROWS, BN_F});
    float rv[BN_ROWS];
    for (int i = 0; i < BN_ROWS; i++) rv[i] = (float)i;
    lx_array *ramp = lx_autorelease(lx_array_from_f32(2, (int64_t[]){BN_ROWS, 1}, rv));
    xg = lx_retain(lx_add(xg, ramp));
    int64_t start = 0, len = 0;
    CHECK_EQ_INT(lx_dist_shard_range(BN_ROWS, rank, size, &start, &len), LX_OK);
    int32_t idx[BN_ROWS];
    for (int64_t i = 0; i < len; i++) idx[i] = (int32_t)(start + i);
    lx_array *xl = lx_retain(lx_take(xg, lx_autorelease(lx_array_from_data(LX_I32, 1, &len, idx)), 0));
    lx_pool_close(mark);
    /* the one-process reference on the global batch (every rank computes it: no communication) */
    lx_tree *sref = NULL, *ssync = NULL, *sloc = NULL;
    lx_array *yref = NULL, *ysync = NULL, *yloc = NULL;
    CHECK_EQ_INT(linen_bn_run(xg, NULL, &sref, &yref), LX_OK);
    CHECK_EQ_INT(linen_bn_run(xl, "data", &ssync, &ysync), LX_OK);
    CHECK_EQ_INT(linen_bn_run(xl, NULL, &sloc, &yloc), LX_OK);
    double dsync = 0, dloc = 0;
    for (int k = 0; k < 2; k++) {
        const char *path = k ? "batch_stats/var" : "batch_stats/mean";
        const lx_value *r = sref ? lx_tree_find(sref, path) : NULL, *a = ssync ? lx_tree_find(ssync, path) : NULL,
                       *b = sloc ? lx_tree_find(sloc, path) : NULL;
        CHECK(r && a && b);
        if (!r || !a || !b) continue;
        double d = max_rel(a->u.array, r->u.array, 0), e = max_rel(b->u.array, r->u.array, 0);
        dsync = d > dsync ? d : dsync;
        dloc = e > dloc ? e : dloc;
    }
    double dy = max_rel(ysync, yref, start * BN_F);
    LX_TEST_REPORT_(dsync <= 1e-6, "rank %d: sync batch-norm statistics differ from the global batch's by %.3g", rank, dsync);
    LX_TEST_REPORT_(dy <= 1e-5, "rank %d: sync batch-norm output differs from the global batch's by %.3g", rank, dy);
    if (size > 1) LX_TEST_REPORT_(dloc > 1e-2, "rank %d: local statistics equal the global ones (%.3g)", rank, dloc);
    else CHECK(dloc <= 1e-6);
    /* NNX: the same through nnx.BatchNorm(axis_name='data') */
    lx_array *mr = NULL, *vr = NULL, *ms = NULL, *vs = NULL;
    CHECK_EQ_INT(nnx_bn_run(xg, NULL, &mr, &vr), LX_OK);
    CHECK_EQ_INT(nnx_bn_run(xl, "data", &ms, &vs), LX_OK);
    double dn = max_rel(ms, mr, 0), dv = max_rel(vs, vr, 0);
    LX_TEST_REPORT_(dn <= 1e-6 && dv <= 1e-6, "rank %d: nnx sync batch-norm statistics differ by %.3g / %.3g", rank, dn, dv);
    /* another axis name is unbound */
    lx_tree *sx = NULL;
    lx_array *yx = NULL;
    CHECK_EQ_INT(linen_bn_run(xl, "model", &sx, &yx), LX_ERR_NOT_FOUND);
    CHECK(strstr(lx_last_error(), "unbound axis name: model") != NULL);
    if (rank == 0)
        printf("sync batch-norm: %d ranks: statistics within %.3g of the global batch's (local: %.3g)\n", size, dsync, dloc);
    lx_tree_release(sref);
    lx_tree_release(ssync);
    lx_tree_release(sloc);
    lx_tree_release(sx);
    lx_release(yref);
    lx_release(ysync);
    lx_release(yloc);
    lx_release(mr);
    lx_release(vr);
    lx_release(ms);
    lx_release(vs);
    lx_release(xg);
    lx_release(xl);
}

static void test_sync_batch_norm_one(void) { test_sync_batch_norm(0, 1); }
static double tree_maxdiff(const lx_tree *ta, const lx_tree *tb, const char *what);

/* Sync batch-norm GRADIENTS (the pmean primitive's VJP, ops.h): Dense(5) -> BatchNorm(training,
 * axis_name='data') -> tanh -> Dense(2), squared error. Each rank differentiates its shard's mean
 * loss; the pmean of those gradients must be the gradient of the global batch's mean loss on one
 * process (BatchNorm without axis_name, every rank computes it, no communication). The first
 * Dense's gradient goes through the batch moments, so it needs each moment's cotangent averaged
 * over the ranks in the backward pass (JAX's transpose of pmean). Tolerance: 1e-5 * (1 + |g|)
 * (float32 summation order); with local statistics (no axis_name) they differ (size > 1). */
typedef struct {
    linen_module *m;
    const lx_tree *stats;
    lx_array *x, *y;
} bn_ctx;

static lx_status bn_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)aux;
    bn_ctx *c = user;
    lx_tree *vars = lx_tree_new(), *upd = NULL;
    lx_status st = vars ? lx_tree_set(vars, "params", lx_tree_v((lx_tree *)params)) : lx_last_status();
    if (st == LX_OK) st = lx_tree_set(vars, "batch_stats", lx_tree_v((lx_tree *)c->stats));
    linen_opts mut = {.mutable = LINEN_MUTABLE("batch_stats"), .mutable_given = true};
    lx_value out = lx_none();
    if (st == LX_OK) st = linen_apply(c->m, vars, LINEN_NO_RNGS, &LX_ARGS(c->x), &mut, &out, &upd);
    if (st == LX_OK) *loss = lx_mean(optax_squared_error(out.u.array, c->y), LX_ALL_AXES, false);
    if (st == LX_OK && !*loss) st = lx_last_status();
    lx_value_free(&out);
    lx_tree_release(upd);
    lx_tree_release(vars);
    return st;
}

static linen_module *bn_mlp(const char *axis_name) {
    linen_module *p[4] = {0}, *m = NULL;
    lx_call c1 = LX_CALL_KWARGS(LX_KW_INT("features", HID)), c2 = LX_CALL_KWARGS(LX_KW_INT("features", OUT));
    lx_call cb = axis_name ? LX_CALL_KWARGS(LX_KW_BOOL("use_running_average", false), LX_KW_STR("axis_name", axis_name))
                           : LX_CALL_KWARGS(LX_KW_BOOL("use_running_average", false));
    if (linen_module_new(&linen_Dense, &c1, &p[0]) == LX_OK && linen_module_new(&linen_BatchNorm, &cb, &p[1]) == LX_OK &&
        linen_module_new(&linen_tanh, NULL, &p[2]) == LX_OK && linen_module_new(&linen_Dense, &c2, &p[3]) == LX_OK) {
        lx_call cs = LX_CALL_ARGS(linen_module_v(p[0]), linen_module_v(p[1]), linen_module_v(p[2]), linen_module_v(p[3]));
        if (linen_module_new(&linen_Sequential, &cs, &m) != LX_OK) m = NULL;
    }
    for (int i = 0; i < 4; i++) linen_module_release(p[i]);
    return m;
}

/* the gradient of bn_mlp(axis_name) on x, y, averaged over the ranks when dist */
static lx_tree *bn_grads(const char *axis_name, const lx_tree *params, const lx_tree *stats, lx_array *x, lx_array *y,
                         bool dist) {
    linen_module *m = bn_mlp(axis_name);
    bn_ctx c = {m, stats, x, y};
    lx_array *loss = NULL;
    lx_tree *g = NULL, *avg = NULL;
    lx_status st = m ? linen_value_and_grad(bn_loss, &c, params, &loss, &g, NULL) : lx_last_status();
    if (dist) st = lx_dist_check(st);
    if (st == LX_OK && dist) st = lx_dist_allreduce_mean(g, &avg);
    CHECK_EQ_INT(st, LX_OK);
    lx_release(loss);
    linen_module_release(m);
    if (dist) {
        lx_tree_release(g);
        return avg;
    }
    return g;
}

/* The sync-BN tests' data: global x (rows shifted by 0.3 * row, so the shards' moments differ) and
 * y from two seeds, and this rank's shard of each (retained). */
static void bn_data(int rank, int size, uint64_t seed, lx_array **xg, lx_array **yg, lx_array **xl, lx_array **yl) {
    size_t mark = lx_pool_open();
    lx_array *x = lx_random_normal(lx_key_from_seed(seed), 2, (int64_t[]){BN_ROWS, IN});
    float rv[BN_ROWS];
    for (int i = 0; i < BN_ROWS; i++) rv[i] = 0.3f * (float)i;
    *xg = lx_retain(lx_add(x, lx_autorelease(lx_array_from_f32(2, (int64_t[]){BN_ROWS, 1}, rv))));
    *yg = lx_retain(lx_random_normal(lx_key_from_seed(seed + 1), 2, (int64_t[]){BN_ROWS, OUT}));
    int64_t start = 0, len = 0;
    CHECK_EQ_INT(lx_dist_shard_range(BN_ROWS, rank, size, &start, &len), LX_OK);
    int32_t idx[BN_ROWS];
    for (int64_t i = 0; i < len; i++) idx[i] = (int32_t)(start + i);
    lx_array *ia = lx_autorelease(lx_array_from_data(LX_I32, 1, &len, idx));
    *xl = lx_retain(lx_take(*xg, ia, 0));
    *yl = lx_retain(lx_take(*yg, ia, 0));
    lx_pool_close(mark);
}

static void test_sync_batch_norm_grads(int rank, int size) {
    lx_array *xg, *yg, *xl, *yl;
    bn_data(rank, size, 31, &xg, &yg, &xl, &yl);
    /* the same parameters on every rank (a fixed key), and the initial statistics */
    linen_module *m0 = bn_mlp(NULL);
    lx_tree *vars = NULL;
    CHECK(m0 && linen_init(m0, LINEN_KEY(lx_key_from_seed(33)), &LX_ARGS(xg), NULL, &vars) == LX_OK);
    const lx_value *pv = vars ? lx_tree_find(vars, "params") : NULL, *sv = vars ? lx_tree_find(vars, "batch_stats") : NULL;
    CHECK(pv && sv && pv->kind == LX_V_TREE && sv->kind == LX_V_TREE);
    if (pv && sv) {
        lx_tree *gref = bn_grads(NULL, pv->u.tree, sv->u.tree, xg, yg, false);
        lx_tree *gsync = bn_grads("data", pv->u.tree, sv->u.tree, xl, yl, size > 1);
        lx_tree *gloc = size > 1 ? bn_grads(NULL, pv->u.tree, sv->u.tree, xl, yl, true) : NULL;
        /* tree_maxdiff checks 2e-5 (1 + |g|); the claim here is 1e-5 (1 + |g|) */
        double d = tree_maxdiff(gsync, gref, "sync batch-norm gradients"), dl = 0, worst = 0;
        lx_flat a = {0}, b = {0};
        if (gsync && gref && lx_tree_flatten(gsync, &a) == LX_OK && lx_tree_flatten(gref, &b) == LX_OK && a.len == b.len)
            for (size_t i = 0; i < a.len; i++)
                for (int64_t e = 0; e < a.items[i].value.u.array->size; e++) {
                    double u = lx_f32(a.items[i].value.u.array)[e], v = lx_f32(b.items[i].value.u.array)[e];
                    double r = fabs(u - v) / (1 + fabs(v));
                    worst = lx_worse(worst, r);
                }
        lx_flat_free(&a);
        lx_flat_free(&b);
        LX_TEST_REPORT_(worst <= 1e-5, "rank %d: sync batch-norm gradients differ from the global batch's by %.3g", rank,
                        worst);
        if (gloc) { /* local statistics: a different gradient (the control) */
            lx_flat c = {0}, r = {0};
            if (lx_tree_flatten(gloc, &c) == LX_OK && lx_tree_flatten(gref, &r) == LX_OK && c.len == r.len)
                for (size_t i = 0; i < c.len; i++)
                    for (int64_t e = 0; e < c.items[i].value.u.array->size; e++) {
                        double q = fabs((double)lx_f32(c.items[i].value.u.array)[e] - lx_f32(r.items[i].value.u.array)[e]);
                        dl = q > dl ? q : dl;
                    }
            lx_flat_free(&c);
            lx_flat_free(&r);
            LX_TEST_REPORT_(dl > 1e-3, "rank %d: local-statistics gradients equal the global ones (%.3g)", rank, dl);
        }
        if (rank == 0)
            printf("sync batch-norm gradients (linen): %d ranks: max |g - g_1| %.3g, relative %.3g (local statistics: "
                   "%.3g)\n", size, d, worst, dl);
        lx_tree_release(gref);
        lx_tree_release(gsync);
        lx_tree_release(gloc);
    }
    lx_tree_release(vars);
    linen_module_release(m0);
    lx_release(xg);
    lx_release(yg);
    lx_release(xl);
    lx_release(yl);
}


/* NNX: the same model as nnx.Sequential(Linear(3, 5), BatchNorm(5, axis_name=...), tanh,
 * Linear(5, 2)) from a fixed seed (the same parameters on every rank and in both models),
 * differentiated with nnx_value_and_grad; the same 1e-5 (1 + |g|) claim. */
typedef struct { lx_array *x, *y; } nnx_bn_ctx;
static lx_status nnx_bn_loss(nnx_module *model, void *user, lx_array **loss) {
    nnx_bn_ctx *c = user;
    *loss = lx_mean(optax_squared_error(nnx_call_array(model, c->x), c->y), LX_ALL_AXES, false);
    return *loss ? LX_OK : lx_last_status();
}

static lx_tree *nnx_bn_grads(const char *axis_name, lx_array *x, lx_array *y, bool dist) {
    nnx_rngs *r = NULL;
    nnx_linear *l1 = NULL, *l2 = NULL;
    nnx_module *bn = NULL, *seq = NULL;
    lx_call cb = axis_name ? LX_CALL(LX_ARGS_LIST(lx_int_v(HID)), LX_KWARGS_LIST(LX_KW_STR("axis_name", axis_name)))
                           : LX_CALL(LX_ARGS_LIST(lx_int_v(HID)), LX_KWARGS_LIST(LX_KW_FLOAT("momentum", 0.99)));
    lx_status st = nnx_rngs_from_seed(34, &r);
    if (st == LX_OK) st = nnx_linear_new(IN, HID, r, &l1);
    if (st == LX_OK) st = nnx_module_new(&nnx_BatchNorm, &cb, r, &bn);
    if (st == LX_OK) st = nnx_linear_new(HID, OUT, r, &l2);
    if (st == LX_OK) {
        lx_call cs = LX_CALL_ARGS(nnx_module_v((nnx_module *)l1), nnx_module_v(bn), nnx_fn_v(&NNX_TANH),
                                  nnx_module_v((nnx_module *)l2));
        st = nnx_module_new(&nnx_Sequential, &cs, NULL, &seq);
    }
    nnx_bn_ctx c = {x, y};
    lx_array *loss = NULL;
    lx_tree *g = NULL, *avg = NULL;
    if (st == LX_OK) st = nnx_value_and_grad(seq, NULL, nnx_bn_loss, &c, &loss, &g);
    if (dist) st = lx_dist_check(st);
    if (st == LX_OK && dist) st = lx_dist_allreduce_mean(g, &avg);
    CHECK_EQ_INT(st, LX_OK);
    lx_release(loss);
    nnx_module_release(seq);
    nnx_module_release(bn);
    nnx_module_release((nnx_module *)l1);
    nnx_module_release((nnx_module *)l2);
    nnx_rngs_release(r);
    if (dist) {
        lx_tree_release(g);
        return avg;
    }
    return g;
}

/* max |a - b| / (1 + |b|) over two State trees of Variables (1e30: different structures) */
static double state_maxrel(const lx_tree *ta, const lx_tree *tb) {
    lx_flat a = {0}, b = {0};
    double worst = 1e30;
    if (ta && tb && lx_tree_flatten(ta, &a) == LX_OK && lx_tree_flatten(tb, &b) == LX_OK && a.len == b.len && a.len > 0) {
        worst = 0;
        for (size_t i = 0; i < a.len; i++) {
            const lx_value *u = &a.items[i].value, *v = &b.items[i].value;
            const lx_array *ua = u->kind == LX_V_VARIABLE ? lx_variable_get_value(u->u.var) : NULL;
            const lx_array *va = v->kind == LX_V_VARIABLE ? lx_variable_get_value(v->u.var) : NULL;
            if (!ua || !va || ua->size != va->size || strcmp(a.items[i].path, b.items[i].path) != 0) {
                worst = 1e30;
                break;
            }
            for (int64_t e = 0; e < ua->size; e++) {
                double q = fabs((double)lx_f32(ua)[e] - lx_f32(va)[e]) / (1 + fabs(lx_f32(va)[e]));
                worst = lx_worse(worst, q);
            }
        }
    }
    lx_flat_free(&a);
    lx_flat_free(&b);
    return worst;
}

static void test_sync_batch_norm_grads_nnx(int rank, int size) {
    lx_array *xg, *yg, *xl, *yl;
    bn_data(rank, size, 35, &xg, &yg, &xl, &yl);
    lx_tree *gref = nnx_bn_grads(NULL, xg, yg, false);
    lx_tree *gsync = nnx_bn_grads("data", xl, yl, size > 1);
    lx_tree *gloc = size > 1 ? nnx_bn_grads(NULL, xl, yl, true) : NULL;
    double d = state_maxrel(gsync, gref), dl = gloc ? state_maxrel(gloc, gref) : 0;
    LX_TEST_REPORT_(d <= 1e-5, "rank %d: nnx sync batch-norm gradients differ from the global batch's by %.3g", rank, d);
    if (gloc) LX_TEST_REPORT_(dl > 1e-3 && dl < 1e30, "rank %d: nnx local-statistics gradients equal the global ones (%.3g)", rank, dl);
    if (rank == 0)
        printf("sync batch-norm gradients (nnx): %d ranks: relative %.3g (local statistics: %.3g)\n", size, d, dl);
    lx_tree_release(gref);
    lx_tree_release(gsync);
    lx_tree_release(gloc);
    lx_release(xg);
    lx_release(yg);
    lx_release(xl);
    lx_release(yl);
}

static void test_sync_batch_norm_grads_one(void) {
    test_sync_batch_norm_grads(0, 1);
    test_sync_batch_norm_grads_nnx(0, 1);
}

/* max |a - b| over two params-like trees, each element checked to 2e-5 (1 + |a|); non-float
 * leaves must be equal. 1e30 when the structures differ. */
static double tree_maxdiff(const lx_tree *ta, const lx_tree *tb, const char *what) {
    lx_flat a = {0}, b = {0};
    double maxd = 0;
    if (ta && tb && lx_tree_flatten(ta, &a) == LX_OK && lx_tree_flatten(tb, &b) == LX_OK && a.len == b.len) {
        for (size_t i = 0; i < a.len; i++) {
            const lx_array *u = a.items[i].value.kind == LX_V_ARRAY ? a.items[i].value.u.array : NULL;
            const lx_array *v = b.items[i].value.kind == LX_V_ARRAY ? b.items[i].value.u.array : NULL;
            LX_TEST_REPORT_(strcmp(a.items[i].path, b.items[i].path) == 0, "%s: path %s vs %s", what, a.items[i].path,
                            b.items[i].path);
            if (!u || !v || u->dtype != LX_F32 || v->dtype != LX_F32 || u->size != v->size) {
                LX_TEST_REPORT_(u && v && lx_array_equal(u, v), "%s: %s differs", what, a.items[i].path);
                continue;
            }
            for (int64_t e = 0; e < u->size; e++) {
                double d = fabs((double)lx_f32(u)[e] - lx_f32(v)[e]);
                maxd = lx_worse(maxd, d);
                LX_TEST_REPORT_(d <= 2e-5 * (1 + fabs(lx_f32(u)[e])), "%s: %s[%lld] %.9g vs %.9g", what, a.items[i].path,
                                (long long)e, lx_f32(u)[e], lx_f32(v)[e]);
            }
        }
    } else {
        LX_TEST_REPORT_(0, "%s: the trees differ in structure", what);
        maxd = 1e30;
    }
    lx_flat_free(&a);
    lx_flat_free(&b);
    return maxd;
}

static int64_t tree_array_bytes(const lx_tree *t) {
    lx_flat f = {0};
    int64_t n = 0;
    if (t && lx_tree_flatten(t, &f) == LX_OK)
        for (size_t i = 0; i < f.len; i++)
            if (f.items[i].value.kind == LX_V_ARRAY) n += (int64_t)lx_array_nbytes(f.items[i].value.u.array);
    lx_flat_free(&f);
    return n;
}

/* Synthetic params (which 0) or rank r's gradients at step k (which 1): three leaves, one a
 * scalar, one 2-D; 23 elements, so 2 and 3 ranks cut leaves in the middle. */
static lx_tree *synth_tree(int which, int r, int k) {
    static const char *const paths[3] = {"a/w", "a/b", "c/k"};
    static const int nd[3] = {1, 0, 2};
    static const int64_t shp[3][2] = {{7, 0}, {0, 0}, {3, 5}};
    lx_tree *t = lx_tree_new();
    int64_t base = 0;
    for (int l = 0; t && l < 3; l++) {
        float v[16];
        int64_t n = nd[l] == 0 ? 1 : nd[l] == 1 ? shp[l][0] : shp[l][0] * shp[l][1];
        for (int64_t i = 0; i < n; i++) {
            double j = (double)(base + i);
            v[i] = which == 0 ? (float)(0.1 * cos(j * 0.7)) : (float)sin(j * 0.37 + r * 1.3 + k * 0.11);
        }
        lx_array *a = lx_array_from_f32(nd[l], shp[l], v);
        CHECK_EQ_INT(lx_tree_set_path(t, paths[l], lx_array_v(a)), LX_OK);
        lx_release(a);
        base += n;
    }
    return t;
}

/* The mean over `size` ranks of synth_tree(1, r, k), summed in rank order. */
static lx_tree *synth_mean_grads(int size, int k) {
    lx_tree *g = synth_tree(1, 0, k);
    lx_flat f = {0};
    CHECK_EQ_INT(lx_tree_flatten(g, &f), LX_OK);
    for (size_t i = 0; i < f.len; i++) {
        lx_array *a = f.items[i].value.u.array;
        for (int r = 1; r < size; r++) {
            lx_tree *gr = synth_tree(1, r, k);
            const lx_value *v = lx_tree_find(gr, f.items[i].path);
            for (int64_t e = 0; e < a->size; e++) lx_f32(a)[e] += lx_f32(v->u.array)[e];
            lx_tree_release(gr);
        }
        for (int64_t e = 0; e < a->size; e++) lx_f32(a)[e] /= (float)size;
    }
    lx_flat_free(&f);
    return g;
}

/* 0: chain(scale(1), adam) (count at 1/0/count); 1: chain(identity, chain(scale(1), chain(scale_by_adam,
 * scale(-lr)))) (count at 1/1/0/count) */
static optax_tx *chain_tx(int which) {
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    if (which == 0) return optax_chain(2, (optax_tx *[]){optax_scale(1.0), optax_adam(OPTAX_CONST(0.05), &o)});
    optax_tx *in = optax_chain(2, (optax_tx *[]){optax_scale_by_adam(&o), optax_scale(-0.05)});
    optax_tx *mid = optax_chain(2, (optax_tx *[]){optax_scale(1.0), in});
    return optax_chain(2, (optax_tx *[]){optax_identity(), mid});
}

/* ZeRO-1 with chained and nested optimizers (the state's count at 1/0/count, 1/1/0/count): steps
 * equal to the unsharded run, the gathered state equal to the unsharded state, and that state
 * loads into a fresh sharded run of the same optimizer and resumes with the uninterrupted params;
 * a state of ANOTHER optimizer is refused naming the missing path. Transformations that are not
 * elementwise are refused by lx_dist_zero1_new naming them (they would see only the rank's slices:
 * clip_by_global_norm clipped each rank's shard by its own norm), an elementwise clip is taken. */
static void test_zero1_chains(int rank, int size) {
    enum { K = 3 };
    for (int which = 0; which < 2; which++) {
        optax_tx *ref = chain_tx(which);
        lx_tree *rp = synth_tree(0, 0, 0), *rs = NULL, *p = synth_tree(0, 0, 0), *full = NULL;
        CHECK_EQ_INT(optax_init(ref, rp, &rs), LX_OK);
        lx_dist_zero1 *z = NULL, *z2 = NULL;
        CHECK_EQ_INT(lx_dist_zero1_new(chain_tx(which), p, &z), LX_OK);
        for (int k = 0; k <= K; k++) {
            lx_tree *gm = synth_mean_grads(size, k), *g = synth_tree(1, rank, k);
            CHECK_EQ_INT(optax_step(ref, gm, &rp, &rs), LX_OK);
            if (k < K) CHECK_EQ_INT(lx_dist_zero1_step(z, g, &p), LX_OK);
            else { /* the checkpoint of step K, loaded into a fresh sharded run, steps on */
                CHECK_EQ_INT(lx_dist_zero1_gather_state(z, p, &full), LX_OK);
                CHECK_EQ_INT(lx_dist_zero1_new(chain_tx(which), p, &z2), LX_OK);
                CHECK_EQ_INT(lx_dist_zero1_load_state(z2, full), LX_OK);
                CHECK_EQ_INT(lx_dist_zero1_step(z2, g, &p), LX_OK);
            }
            if (k == K - 1) {
                lx_tree *gs = NULL;
                CHECK_EQ_INT(lx_dist_zero1_gather_state(z, p, &gs), LX_OK);
                double sd = tree_maxdiff(rs, gs, which ? "zero1 nested chain: gathered state" : "zero1 chain: gathered state");
                if (size <= 2) CHECK(sd == 0);
                lx_tree_release(gs);
            }
            lx_tree_release(gm);
            lx_tree_release(g);
        }
        double d = tree_maxdiff(rp, p, which ? "zero1 nested chain: resumed params" : "zero1 chain: resumed params");
        if (size <= 2) CHECK(d == 0);
        const lx_value *c = lx_tree_find(full, which ? "1/1/0/count" : "1/0/count");
        CHECK(c && c->kind == LX_V_ARRAY && lx_array_get(c->u.array, 0) == K);
        if (which == 0) { /* a chain's state into plain adam: not its layout */
            optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
            lx_dist_zero1 *z3 = NULL;
            CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), p, &z3), LX_OK);
            CHECK_FAILS(lx_dist_zero1_load_state(z3, full), LX_ERR_NOT_FOUND,
                        "the optimizer state has no 0/count: it is not laid out as this optimizer's state");
            lx_dist_zero1_free(z3);
        }
        if (rank == 0)
            printf("zero1 %s: %d ranks: %d steps, state gathered, loaded into a fresh run and stepped: max |p - p_1| = %.3g\n",
                   which ? "nested chain" : "chain", size, K, d);
        lx_dist_zero1_free(z);
        lx_dist_zero1_free(z2);
        lx_tree_release(full);
        lx_tree_release(rp);
        lx_tree_release(rs);
        lx_tree_release(p);
        optax_tx_release(ref);
    }
    /* not elementwise: refused, naming the transformation (and z left NULL) */
    lx_tree *p = synth_tree(0, 0, 0);
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    lx_dist_zero1 *z = (lx_dist_zero1 *)&p;
    CHECK_FAILS(lx_dist_zero1_new(optax_chain(2, (optax_tx *[]){optax_clip_by_global_norm(0.5), optax_adam(OPTAX_CONST(0.05), &o)}),
                                  p, &z),
                LX_ERR_UNSUPPORTED, "distributed: zero1: clip_by_global_norm is not elementwise");
    CHECK(z == NULL);
    CHECK_FAILS(lx_dist_zero1_new(optax_from_string("adafactor(1e-2)"), p, &z), LX_ERR_UNSUPPORTED,
                "distributed: zero1: scale_by_factored_rms is not elementwise");
    CHECK_FAILS(lx_dist_zero1_new(optax_clip_by_block_rms(1.0), p, &z), LX_ERR_UNSUPPORTED,
                "distributed: zero1: clip_by_block_rms is not elementwise");
    /* a mask by ndim: the 2-D c/k is selected, its 1-D slices would not be */
    optax_adam_opts ow = OPTAX_ADAM_DEFAULTS;
    ow.weight_decay = 0.1;
    ow.mask = optax_mask_min_ndim(2);
    CHECK_FAILS(lx_dist_zero1_new(optax_adamw(OPTAX_CONST(0.05), &ow), p, &z), LX_ERR_UNSUPPORTED,
                "the mask of masked selects c/k by its shape");
    /* elementwise ones are taken: clip, adamw without a mask */
    CHECK_EQ_INT(lx_dist_zero1_new(optax_chain(2, (optax_tx *[]){optax_clip(0.5), optax_adam(OPTAX_CONST(0.05), &o)}), p, &z),
                 LX_OK);
    lx_dist_zero1_free(z);
    ow.mask = OPTAX_NO_MASK;
    CHECK_EQ_INT(lx_dist_zero1_new(optax_adamw(OPTAX_CONST(0.05), &ow), p, &z), LX_OK);
    lx_dist_zero1_free(z);
    lx_tree_release(p);
}

/* Trees that differ between ranks are refused, never half-used: lx_dist_broadcast_tree with
 * another shape or another leaf count on the last rank (MPI's counts would differ: Open MPI
 * broadcast 4 of 5 floats and reported nothing) fails on every rank with LX_ERR_SHAPE, the
 * differing rank naming its leaf; a ZeRO-1 step given a gradient at a path the params do not have
 * fails (on that rank LX_ERR_SHAPE, on the others "rank R failed"). */
static void test_mismatched_trees(int rank, int size) {
    if (size < 2) return;
    int last = size - 1;
    for (int mode = 0; mode < 2; mode++) {
        lx_tree *t = synth_tree(0, 0, 0);
        if (rank == last && mode == 0) { /* c/k of shape (5, 3) instead of (3, 5) */
            float v[15] = {0};
            lx_array *k = lx_array_from_f32(2, (int64_t[]){5, 3}, v);
            CHECK_EQ_INT(lx_tree_set_path(t, "c/k", lx_array_v(k)), LX_OK);
            lx_release(k);
        } else if (rank == last) { /* one leaf more */
            float one = 1;
            lx_array *e = lx_array_from_f32(0, NULL, &one);
            CHECK_EQ_INT(lx_tree_set_path(t, "c/z", lx_array_v(e)), LX_OK);
            lx_release(e);
        }
        char want[160];
        if (rank != last)
            snprintf(want, sizeof want, "distributed: broadcast: rank %d's float32 leaves differ from root rank 0's", last);
        else if (mode == 0)
            snprintf(want, sizeof want, "distributed: broadcast: rank %d's leaf c/k differs from root rank 0's", last);
        else
            snprintf(want, sizeof want, "distributed: broadcast: rank %d has 4 float32 leaves, root rank 0 3", last);
        CHECK_FAILS(lx_dist_broadcast_tree(t, 0), LX_ERR_SHAPE, want);
        lx_tree_release(t);
    }
    /* the same trees broadcast fine afterwards (nothing left in flight) */
    lx_tree *t = synth_tree(0, rank, 0), *ref = synth_tree(0, 0, 0);
    CHECK_EQ_INT(lx_dist_broadcast_tree(t, 0), LX_OK);
    CHECK(tree_maxdiff(ref, t, "broadcast after refusals") == 0);
    lx_tree_release(ref);
    /* ZeRO-1: an extra gradient leaf on the last rank */
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    lx_dist_zero1 *z = NULL;
    CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), t, &z), LX_OK);
    lx_tree *g = synth_tree(1, rank, 0);
    if (rank == last) {
        float one = 1;
        lx_array *e = lx_array_from_f32(0, NULL, &one);
        CHECK_EQ_INT(lx_tree_set_path(g, "c/extra", lx_array_v(e)), LX_OK);
        lx_release(e);
    }
    char want[160];
    if (rank == last) snprintf(want, sizeof want, "distributed: zero1: the gradients have 4 leaves, the params 3");
    else snprintf(want, sizeof want, "distributed: rank %d failed", last);
    lx_tree *before = t;
    CHECK_FAILS(lx_dist_zero1_step(z, g, &t), rank == last ? LX_ERR_SHAPE : LX_ERR_INTERNAL, want);
    CHECK(t == before);
    lx_dist_zero1_free(z);
    lx_tree_release(g);
    lx_tree_release(t);
}

/* A checkpoint of a ZeRO-1 run: 3 sharded steps, the state gathered (unsharded: compared with the
 * all-reduce run's state after 3 steps) and saved with the params by rank 0; every rank loads it
 * and resumes (a) unsharded and (b) sharded again: both must give the uninterrupted run's losses
 * for steps 3..5 and its final params (p, ld), to the same tolerance. */
static void test_zero1_checkpoint(linen_module *m, lx_array *x, lx_array *y, const lx_tree *p, const float *ld, int rank,
                                  int size) {
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    const char *env = getenv("LINNX_DIST_CKPT");
    char path[512];
    snprintf(path, sizeof path, "%s", env ? env : "linnx_zero1_ckpt.msgpack");
    float lc[STEPS] = {0}, lu[STEPS] = {0}, ls[STEPS] = {0}, la[STEPS] = {0};
    lx_tree *c = init_params(m, lx_key_from_seed(100), x), *full = NULL, *ref_state = NULL;
    CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), c, &g_zero1), LX_OK);
    g_k1 = 3;
    CHECK_EQ_INT(train(m, &c, x, y, true, lc, -1, -1, 0), LX_OK);
    CHECK_EQ_INT(lx_dist_zero1_gather_state(g_zero1, c, &full), LX_OK);
    lx_dist_zero1_free(g_zero1);
    g_zero1 = NULL;
    /* the all-reduce run's state after the same 3 steps */
    lx_tree *a = init_params(m, lx_key_from_seed(100), x);
    g_state_out = &ref_state;
    CHECK_EQ_INT(train(m, &a, x, y, true, la, -1, -1, 0), LX_OK);
    g_state_out = NULL;
    double sd = tree_maxdiff(ref_state, full, "zero1 gathered state");
    if (size <= 2) CHECK(sd == 0);
    lx_status st = LX_OK;
    if (rank == 0) {
        lx_tree *t = lx_tree_new();
        st = t ? LX_OK : lx_last_status();
        if (st == LX_OK) st = lx_tree_set(t, "params", lx_tree_v(c));
        if (st == LX_OK) st = lx_tree_set(t, "opt_state", lx_tree_v(full));
        if (st == LX_OK) st = lx_ckpt_save(path, t, LX_CKPT_MSGPACK);
        if (st != LX_OK) fprintf(stderr, "rank 0: %s\n", lx_last_error());
        lx_tree_release(t);
    }
    CHECK_EQ_INT(lx_dist_check(st), LX_OK); /* every rank waits for the file */
    /* resume from the file: unsharded, then sharded */
    g_k0 = 3;
    g_k1 = STEPS;
    for (int sharded = 0; sharded < 2; sharded++) {
        lx_tree *t = NULL;
        CHECK_EQ_INT(lx_ckpt_load(path, &t), LX_OK);
        const lx_value *pv = t ? lx_tree_find(t, "params") : NULL, *sv = t ? lx_tree_find(t, "opt_state") : NULL;
        CHECK(pv && pv->kind == LX_V_TREE && sv && sv->kind == LX_V_TREE);
        if (!pv || pv->kind != LX_V_TREE || !sv || sv->kind != LX_V_TREE) {
            lx_tree_release(t);
            continue;
        }
        lx_tree *q = lx_tree_copy(pv->u.tree);
        float *l = sharded ? ls : lu;
        if (sharded) {
            CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), q, &g_zero1), LX_OK);
            CHECK_EQ_INT(lx_dist_zero1_load_state(g_zero1, sv->u.tree), LX_OK);
        } else
            g_state_in = lx_tree_retain(sv->u.tree);
        lx_status rs = train(m, &q, x, y, true, l, -1, -1, 0);
        LX_TEST_REPORT_(rs == LX_OK, "resumed (%s): %s", sharded ? "sharded" : "unsharded", lx_last_error());
        for (int k = 3; k < STEPS; k++)
            LX_TEST_REPORT_(fabsf(l[k] - ld[k]) <= 2e-6f * (1 + fabsf(ld[k])), "resumed (%s) step %d loss %.9g vs %.9g",
                            sharded ? "sharded" : "unsharded", k, l[k], ld[k]);
        double d = tree_maxdiff(p, q, sharded ? "zero1 resumed sharded" : "zero1 resumed unsharded");
        if (rank == 0)
            printf("zero1 checkpoint: %d ranks, saved after 3 sharded steps, resumed %s: max |p - p_uninterrupted| = %.3g\n",
                   size, sharded ? "sharded" : "unsharded", d);
        lx_dist_zero1_free(g_zero1);
        g_zero1 = NULL;
        lx_tree_release(g_state_in);
        g_state_in = NULL;
        lx_tree_release(q);
        lx_tree_release(t);
    }
    g_k0 = 0;
    g_k1 = STEPS;
    CHECK_EQ_INT(lx_dist_check(LX_OK), LX_OK); /* everyone has read the file */
    if (rank == 0) remove(path);
    /* a state that does not fit: a missing leaf is NOT_FOUND and leaves the state as it was */
    lx_tree *q = init_params(m, lx_key_from_seed(100), x), *empty = lx_tree_new();
    CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), q, &g_zero1), LX_OK);
    int64_t before = lx_dist_zero1_state_bytes(g_zero1);
    CHECK_EQ_INT(lx_dist_zero1_load_state(g_zero1, empty), LX_ERR_NOT_FOUND);
    CHECK_EQ_INT(lx_dist_zero1_state_bytes(g_zero1), before);
    lx_dist_zero1_free(g_zero1);
    g_zero1 = NULL;
    lx_tree_release(empty);
    lx_tree_release(q);
    lx_tree_release(a);
    lx_tree_release(c);
    lx_tree_release(full);
    lx_tree_release(ref_state);
}

/* Own copies of every array leaf of t (a snapshot to compare with after a refused call). */
static lx_tree *tree_clone(const lx_tree *t) {
    lx_flat f = {0}, g = {0};
    lx_tree *out = NULL;
    if (t && lx_tree_flatten(t, &f) == LX_OK) {
        for (size_t i = 0; i < f.len; i++) {
            lx_value v = f.items[i].value;
            lx_array *c = v.kind == LX_V_ARRAY ? lx_array_copy(v.u.array) : NULL;
            lx_flat_append(&g, f.items[i].path, c ? lx_array_v(c) : v);
            lx_release(c);
        }
        if (g.len == 0) out = lx_tree_new();
        else lx_tree_unflatten(&g, &out);
    }
    lx_flat_free(&f);
    lx_flat_free(&g);
    return out;
}

/* The same paths in the same order, and array leaves of the same dtype, shape and bytes. */
static bool tree_same(const lx_tree *a, const lx_tree *b) {
    lx_flat fa = {0}, fb = {0};
    bool same = a && b && lx_tree_flatten(a, &fa) == LX_OK && lx_tree_flatten(b, &fb) == LX_OK && fa.len == fb.len;
    for (size_t i = 0; same && i < fa.len; i++) {
        const lx_value *u = &fa.items[i].value, *v = &fb.items[i].value;
        same = strcmp(fa.items[i].path, fb.items[i].path) == 0 && u->kind == v->kind &&
               (u->kind != LX_V_ARRAY || lx_array_equal(u->u.array, v->u.array));
    }
    lx_flat_free(&fa);
    lx_flat_free(&fb);
    return same;
}

/* A copy of t with the leaf at `path` replaced by v (NULL: removed). */
static lx_tree *tree_with(const lx_tree *t, const char *path, lx_array *v) {
    lx_tree *c = tree_clone(t);
    if (c && (v ? lx_tree_set_path(c, path, lx_array_v(v)) : lx_tree_delete_path(c, path)) != LX_OK) {
        lx_tree_release(c);
        c = NULL;
    }
    return c;
}

/* ZeRO-1's documented error paths, on every rank with the same calls (the collectives match):
 * each refused call returns its status and message, and leaves the params tree (the same
 * pointer, the same bytes) and the optimizer state (the same tree, the same bytes) as they were;
 * after all of them a good step gives, bit for bit, what one step of a fresh object gives from
 * the same params (no count or moment was advanced by a failed step). Then the documented ends
 * of a run: lx_dist_zero1_step(z, NULL, NULL) (a later begin or step fails), and, on 2+ ranks, a
 * begin while the previous backward pass's reductions are still in flight. */
static void test_zero1_errors(linen_module *m, lx_array *x, lx_array *y, int rank, int size) {
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    lx_tree *p = init_params(m, lx_key_from_seed(100), x), *g = NULL;
    ctx c = {m, x, y, NULL};
    lx_array *loss = NULL;
    CHECK_EQ_INT(linen_value_and_grad(linen_mean_loss, &c, p, &loss, &g, NULL), LX_OK);
    lx_release(loss);
    loss = NULL;
    lx_dist_set_step(77);
    /* the reference: one good step of a fresh object */
    lx_tree *pref = tree_clone(p);
    lx_dist_zero1 *zr = NULL, *z = NULL;
    CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), pref, &zr), LX_OK);
    CHECK_EQ_INT(lx_dist_zero1_step(zr, g, &pref), LX_OK);

    /* a params leaf that is not a float32 array: TYPE naming it, no object */
    lx_array *iv = lx_array_new(LX_I32, 1, (int64_t[]){2});
    lx_tree *pint = tree_with(p, "layers_0/count", iv);
    z = (lx_dist_zero1 *)&pint;
    CHECK_FAILS(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), pint, &z), LX_ERR_TYPE,
                "distributed: zero1: layers_0/count is not a float32 array");
    CHECK(z == NULL);
    lx_release(iv);
    lx_tree_release(pint);

    CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), p, &z), LX_OK);
    lx_tree *const p_at = p, *p0 = tree_clone(p), *s0 = tree_clone(lx_dist_zero1_state(z));
    const lx_tree *const s_at = lx_dist_zero1_state(z);
    int refused = 0;
#define Z1_UNCHANGED(what)                                                                                   \
    do {                                                                                                     \
        refused++;                                                                                           \
        LX_TEST_REPORT_(p == p_at && tree_same(p, p0), "rank %d: %s changed the params", rank, what);        \
        LX_TEST_REPORT_(lx_dist_zero1_state(z) == s_at && tree_same(lx_dist_zero1_state(z), s0),             \
                        "rank %d: %s changed the optimizer state", rank, what);                              \
    } while (0)
    /* NULL grads or params (local: no collective starts) */
    CHECK_FAILS(lx_dist_zero1_step(z, NULL, &p), LX_ERR_FAILED_INPUT, "lx_dist_zero1_step: grads is NULL");
    Z1_UNCHANGED("step(z, NULL, &p)");
    CHECK_FAILS(lx_dist_zero1_step(z, g, NULL), LX_ERR_INVALID_ARGUMENT,
                "lx_dist_zero1_step: params (the in/out tree pointer) is NULL");
    Z1_UNCHANGED("step(z, g, NULL)");
    CHECK_FAILS(lx_dist_zero1_begin(z, NULL), LX_ERR_FAILED_INPUT, "lx_dist_zero1_begin: params is NULL");
    Z1_UNCHANGED("begin(z, NULL)");
    /* grads that do not match the params: a missing leaf, a leaf of another size */
    lx_tree *gmiss = tree_with(g, "layers_2/bias", NULL);
    CHECK_FAILS(lx_dist_zero1_step(z, gmiss, &p), LX_ERR_NOT_FOUND, "bias");
    Z1_UNCHANGED("grads without layers_2/bias");
    lx_array *b4 = lx_array_full_f32(1, (int64_t[]){4}, 0.5f);
    lx_tree *gshape = tree_with(g, "layers_0/bias", b4);
    CHECK_FAILS(lx_dist_zero1_step(z, gshape, &p), LX_ERR_SHAPE,
                "distributed: zero1: gradient layers_0/bias is not a float32 array of 5 elements");
    Z1_UNCHANGED("grads with a (4,) layers_0/bias");
    /* a params tree that no longer matches the one z was made for: the step and begin refuse it */
    lx_tree *pshape = tree_with(p, "layers_0/bias", b4), *const pshape_at = pshape, *pshape0 = tree_clone(pshape);
    CHECK_FAILS(lx_dist_zero1_step(z, g, &pshape), LX_ERR_SHAPE, "distributed: zero1: layers_0/bias changed shape or dtype");
    CHECK(pshape == pshape_at && tree_same(pshape, pshape0));
    Z1_UNCHANGED("params with a (4,) layers_0/bias");
    CHECK_FAILS(lx_dist_zero1_begin(z, pshape), LX_ERR_SHAPE, "distributed: zero1: layers_0/bias changed shape or dtype");
    Z1_UNCHANGED("begin with a (4,) layers_0/bias");
    /* an error on one rank only fails the step on every rank: that rank keeps its own message,
     * the others get "rank R failed at step S" (the status travels with the reduce-scatter for
     * the grads, with the all-gather for the params) */
    char want[96];
    snprintf(want, sizeof want, "distributed: rank %d failed at step 77", size - 1);
    if (rank == size - 1)
        CHECK_FAILS(lx_dist_zero1_step(z, gshape, &p), LX_ERR_SHAPE, "gradient layers_0/bias is not a float32 array");
    else
        CHECK_FAILS(lx_dist_zero1_step(z, g, &p), LX_ERR_INTERNAL, want);
    Z1_UNCHANGED("bad grads on the last rank");
    if (rank == size - 1) {
        CHECK_FAILS(lx_dist_zero1_step(z, g, &pshape), LX_ERR_SHAPE, "layers_0/bias changed shape or dtype");
        CHECK(pshape == pshape_at && tree_same(pshape, pshape0));
    } else
        CHECK_FAILS(lx_dist_zero1_step(z, g, &p), LX_ERR_INTERNAL, want);
    Z1_UNCHANGED("bad params on the last rank");
    /* the optimizer fails on the rank that owns a NaN gradient (element 0: rank 0's shard) */
    lx_tree *gnan = tree_clone(g);
    const lx_value *kv = gnan ? lx_tree_find(gnan, "layers_0/kernel") : NULL;
    if (kv && kv->kind == LX_V_ARRAY) lx_f32(kv->u.array)[0] = NAN;
    optax_set_debug_nans(true);
    if (rank == 0)
        CHECK_FAILS(lx_dist_zero1_step(z, gnan, &p), LX_ERR_INVALID_ARGUMENT, "layers_0/kernel");
    else
        CHECK_FAILS(lx_dist_zero1_step(z, gnan, &p), LX_ERR_INTERNAL, "distributed: rank 0 failed at step 77");
    optax_set_debug_nans(false);
    Z1_UNCHANGED("a NaN gradient under debug_nans");
    /* 2+ ranks, after begin: grads that are not the arrays the backward pass reported, on the last
     * rank only: INVALID_ARGUMENT there, "rank R failed" on the others (one rank: begin watches
     * nothing, the step reduces whatever it is given) */
    if (size > 1) {
        lx_tree *gb = NULL, *gcopy = NULL;
        CHECK_EQ_INT(lx_dist_zero1_begin(z, p), LX_OK);
        CHECK_EQ_INT(linen_value_and_grad(linen_mean_loss, &c, p, &loss, &gb, NULL), LX_OK);
        gcopy = tree_clone(gb);
        if (rank == size - 1)
            CHECK_FAILS(lx_dist_zero1_step(z, gcopy, &p), LX_ERR_INVALID_ARGUMENT,
                        "the gradient at layers_0/kernel is not the one the backward pass after lx_dist_zero1_begin made");
        else
            CHECK_FAILS(lx_dist_zero1_step(z, gb, &p), LX_ERR_INTERNAL, want);
        Z1_UNCHANGED("grads other than the backward pass's on the last rank");
        lx_release(loss);
        loss = NULL;
        lx_tree_release(gb);
        lx_tree_release(gcopy);
    }
    /* nothing lost: the next good step is the fresh object's first */
    CHECK_EQ_INT(lx_dist_zero1_step(z, g, &p), LX_OK);
    CHECK(p != p_at && tree_same(p, pref));
    CHECK(tree_same(lx_dist_zero1_state(z), lx_dist_zero1_state(zr)));
    CHECK(!tree_same(p, p0) && !tree_same(lx_dist_zero1_state(z), s0)); /* and they did move: tree_same sees it */
#undef Z1_UNCHANGED

    /* a failed step's lx_dist_zero1_step(z, NULL, NULL) abandons the reductions the backward pass
     * started and ends the run: a later step or begin fails, params and state untouched */
    lx_tree *g2 = NULL, *const p1 = p, *p1c = tree_clone(p), *s1c = tree_clone(lx_dist_zero1_state(z));
    CHECK_EQ_INT(lx_dist_zero1_begin(z, p), LX_OK);
    CHECK_EQ_INT(linen_value_and_grad(linen_mean_loss, &c, p, &loss, &g2, NULL), LX_OK);
    CHECK_EQ_INT(lx_dist_zero1_step(z, NULL, NULL), LX_OK);
    CHECK_FAILS(lx_dist_zero1_step(z, g2, &p), LX_ERR_INVALID_ARGUMENT,
                "distributed: zero1 step after a failed one (the run must end)");
    CHECK_FAILS(lx_dist_zero1_begin(z, p), LX_ERR_INVALID_ARGUMENT,
                "distributed: zero1 step after a failed one (the run must end)");
    CHECK(p == p1 && tree_same(p, p1c) && tree_same(lx_dist_zero1_state(z), s1c));
    refused += 2;
    lx_dist_zero1_free(z);
    z = NULL;
    lx_release(loss);
    loss = NULL;
    lx_tree_release(g2);
    g2 = NULL;

    /* 2+ ranks: rank 0 begins again while its first backward pass's reduce-scatters wait for the
     * other ranks (they start theirs only after the status check below, so they cannot have
     * completed): refused, and the object is done (the step too); the others then start the
     * same reductions and abandon them, so every rank has started the same collectives */
    if (size > 1) {
        CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), p, &z), LX_OK);
        if (rank == 0) {
            CHECK_EQ_INT(lx_dist_zero1_begin(z, p), LX_OK);
            CHECK_EQ_INT(linen_value_and_grad(linen_mean_loss, &c, p, &loss, &g2, NULL), LX_OK);
            CHECK_FAILS(lx_dist_zero1_begin(z, p), LX_ERR_INVALID_ARGUMENT,
                        "lx_dist_zero1_begin again while the previous backward pass's gradient reductions are in flight");
            CHECK_FAILS(lx_dist_zero1_step(z, g2, &p), LX_ERR_INVALID_ARGUMENT,
                        "distributed: zero1 step after a failed one (the run must end)");
            CHECK(p == p1 && tree_same(p, p1c));
            refused += 2;
        }
        CHECK_EQ_INT(lx_dist_check(LX_OK), LX_OK);
        if (rank != 0) {
            CHECK_EQ_INT(lx_dist_zero1_begin(z, p), LX_OK);
            CHECK_EQ_INT(linen_value_and_grad(linen_mean_loss, &c, p, &loss, &g2, NULL), LX_OK);
            CHECK_EQ_INT(lx_dist_zero1_step(z, NULL, NULL), LX_OK);
        }
        lx_dist_zero1_free(z);
        lx_release(loss);
        lx_tree_release(g2);
    }
    printf("zero1 errors: rank %d of %d: %d refused calls left the params and the optimizer state as they were\n", rank,
           size, refused);
    lx_dist_zero1_free(zr);
    lx_release(b4);
    lx_tree_release(gmiss);
    lx_tree_release(gshape);
    lx_tree_release(gnan);
    lx_tree_release(pshape);
    lx_tree_release(pshape0);
    lx_tree_release(p0);
    lx_tree_release(s0);
    lx_tree_release(p1c);
    lx_tree_release(s1c);
    lx_tree_release(pref);
    lx_tree_release(g);
    lx_tree_release(p);
}

/* LINNX_DIST_PMEAN_FAULT: the last rank fails before its sync BatchNorm while the others wait in
 * the batch moments' pmean: they must leave it within the deadline (2 s here) with a timeout, and
 * the status check that follows must not be matched with that pmean (pmean all-reduces travel on
 * a communicator of their own: the waiting ranks time out instead of summing a status into a
 * moment); every rank leaves with an error in bounded time, the failing rank with its own
 * message, the others with the timed-out pmean naming their rank and the step. The run stops
 * there (as a real run would: the abandoned pmean leaves its communicator unusable). */
static int pmean_fault(int rank, int size) {
    CHECK_EQ_INT(lx_dist_set_timeout(2.0), LX_OK);
    lx_dist_set_step(5);
    lx_array *x = lx_retain(lx_random_normal(lx_key_from_seed(37 + rank), 2, (int64_t[]){4, BN_F}));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lx_status st;
    lx_tree *stats = NULL;
    lx_array *y = NULL;
    if (rank == size - 1) st = lx_fail(LX_ERR_SHAPE, "injected failure before batch-norm on rank %d", rank);
    else {
        st = linen_bn_run(x, "data", &stats, &y);
        LX_TEST_REPORT_(st == LX_ERR_IO && strstr(lx_last_error(), "pmean all-reduce on rank") &&
                            strstr(lx_last_error(), "timed out"),
                        "rank %d: the pmean with a missing rank: %s \"%s\"", rank, lx_status_name(st), lx_last_error());
    }
    lx_status all = lx_dist_check(st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    char want[96];
    if (rank == size - 1) snprintf(want, sizeof want, "injected failure before batch-norm on rank %d", rank);
    else snprintf(want, sizeof want, "pmean all-reduce on rank %d at step 5 timed out", rank);
    LX_TEST_REPORT_(all != LX_OK && strstr(lx_last_error(), want), "rank %d: after the status check: %s \"%s\"", rank,
                    lx_status_name(all), lx_last_error());
    LX_TEST_REPORT_(dt < 15, "rank %d: the failure took %.1f s to reach every rank", rank, dt);
    printf("pmean fault: rank %d stopped after %.1f s: %s\n", rank, dt, lx_last_error());
    lx_tree_release(stats);
    lx_release(y);
    lx_release(x);
    lx_dist_finalize();
    return lx_test_finish();
}

static int worker(void) {
    int rank = 0, size = 1;
    if (lx_dist_init(NULL, NULL, &rank, &size) != LX_OK) {
        fprintf(stderr, "rank ?: %s\n", lx_last_error());
        return 2;
    }
    const char *fr = getenv("LINNX_DIST_FAIL_RANK"), *fs = getenv("LINNX_DIST_FAIL_STEP"), *fm = getenv("LINNX_DIST_FAIL_MODE");
    int fail_rank = fr ? atoi(fr) : -1, fail_step = fs ? atoi(fs) : -1;
    int fail_mode = !fm ? 0 : strcmp(fm, "kill") == 0 ? 1 : strcmp(fm, "hang") == 0 ? 2 : 0;
    if (getenv("LINNX_DIST_PMEAN_FAULT")) return pmean_fault(rank, size);
    test_batcher_uneven(rank, size);
    test_overlap_double_begin(rank, size);
    test_zero1_bf16_moments(rank, size);
    test_sync_stats(rank, size);
    test_bf16_mean(rank, size);
    test_sync_batch_norm(rank, size);
    test_sync_batch_norm_grads(rank, size);
    test_sync_batch_norm_grads_nnx(rank, size);
    linen_module *parts[3] = {0}, *m = mlp(parts);
    /* samplers and ops give pool-owned arrays: keep our own references */
    lx_array *x = lx_retain(lx_random_normal(lx_key_from_seed(3), 2, (int64_t[]){NEX, IN}));
    lx_array *w = lx_retain(lx_random_normal(lx_key_from_seed(4), 2, (int64_t[]){IN, OUT}));
    lx_array *y = lx_retain(lx_tanh(lx_matmul(x, w)));
    /* each rank its own init; rank 0's wins by broadcast */
    lx_tree *p = init_params(m, lx_key_from_seed(100 + rank), x);
    CHECK(p != NULL);
    CHECK_EQ_INT(lx_dist_broadcast_tree(p, 0), LX_OK);
    float ld[STEPS] = {0}, lr[STEPS] = {0}, lo[STEPS] = {0};
    g_overlap = fail_rank >= 0; /* the fault runs go through the overlapped all-reduce */
    if (fail_rank >= 0 && getenv("LINNX_DIST_FAIL_ZERO1")) { /* or the overlapped ZeRO-1 step */
        optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
        CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), p, &g_zero1), LX_OK);
    }
    lx_status st = train(m, &p, x, y, true, ld, fail_rank, fail_step, fail_mode);
    g_overlap = false;
    lx_dist_zero1_free(g_zero1);
    g_zero1 = NULL;
    if (st != LX_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, lx_last_error());
        lx_tree_release(p);
        fflush(stderr);
        /* every rank agreed through lx_dist_check: finalize together (so no rank is killed before
         * it prints); after a timeout a peer may be stuck: exit and let mpirun end the job */
        if (lx_last_status() != LX_ERR_IO) lx_dist_finalize();
        exit(3);
    }
    /* the overlapped all-reduce (buckets of 16 floats started during the backward pass): the
     * same losses and parameters as the all-reduce after it, to float32 order (the buckets cut the
     * sums differently; with 2 ranks a sum of two terms is exact in either order) */
    lx_tree *po = init_params(m, lx_key_from_seed(100), x);
    g_overlap = true;
    lx_dist_stats ds;
    lx_dist_take_stats(NULL);
    CHECK_EQ_INT(train(m, &po, x, y, true, lo, -1, -1, 0), LX_OK);
    lx_dist_take_stats(&ds);
    g_overlap = false;
    {
        lx_flat a = {0}, b = {0};
        double maxd = 0;
        if (po && lx_tree_flatten(p, &a) == LX_OK && lx_tree_flatten(po, &b) == LX_OK && a.len == b.len)
            for (size_t i = 0; i < a.len; i++)
                for (int64_t e = 0; e < a.items[i].value.u.array->size; e++) {
                    double d = fabs((double)lx_f32(a.items[i].value.u.array)[e] - lx_f32(b.items[i].value.u.array)[e]);
                    maxd = lx_worse(maxd, d);
                }
        else
            CHECK(!"overlap parameter tree differs in structure");
        CHECK(maxd <= 2e-5);
        if (size <= 2) CHECK(maxd == 0);
        for (int k = 0; k < STEPS; k++) CHECK(fabsf(lo[k] - ld[k]) <= 2e-6f * (1 + fabsf(ld[k])));
        /* 6 steps x every parameter's gradient, all through the overlapped buckets */
        if (size > 1) CHECK(ds.bytes == 4.0 * STEPS * (IN * HID + HID + HID * OUT + OUT));
        if (rank == 0)
            printf("overlap: %d ranks: max |p_overlap - p_after| = %.3g, %.0f of %.0f gradient bytes reduced before "
                   "the backward pass ended\n", size, maxd, ds.early_bytes, ds.bytes);
        lx_flat_free(&a);
        lx_flat_free(&b);
    }
    lx_tree_release(po);
    /* ZeRO-1: the same run with the optimizer state sharded (gradients reduce-scattered, params
     * all-gathered) gives the same parameters and losses as the all-reduce run, to float32
     * summation order (bit-identical on 1 and 2 ranks: a sum of two terms is exact in any order,
     * and Adam is elementwise, so a 1-D slice takes the same float operations) */
    if (fail_mode == 0 && fail_rank < 0) {
        const int64_t T = IN * HID + HID + HID * OUT + OUT;
        lx_tree *z0 = init_params(m, lx_key_from_seed(100), x);
        optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
        CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), z0, &g_zero1), LX_OK);
        float lz[STEPS];
        lx_dist_stats zs_stats;
        lx_dist_take_stats(NULL);
        CHECK_EQ_INT(train(m, &z0, x, y, true, lz, -1, -1, 0), LX_OK);
        lx_dist_take_stats(&zs_stats);
        double maxd = tree_maxdiff(p, z0, "zero1 params");
        if (size <= 2) CHECK(maxd == 0);
        for (int k = 0; k < STEPS; k++) CHECK(fabsf(lz[k] - ld[k]) <= 2e-6f * (1 + fabsf(ld[k])));
        CHECK(zs_stats.bytes == 4.0 * STEPS * T); /* the reduce-scatter's input, every step */
        /* the reduce-scatter overlapped with the backward pass (lx_dist_zero1_begin; buckets of 10
         * floats, so the kernels (15 and 10 floats) are buckets of their own, sent from the
         * gradient arrays, and the biases are packed; the run above had buckets of 16 floats:
         * [bias 5], [kernel 15], [bias 2 + kernel 10] packed): the same parameters and losses */
        {
            lx_tree *zo = init_params(m, lx_key_from_seed(100), x);
            lx_dist_zero1 *zz = NULL;
            CHECK_EQ_INT(lx_dist_set_bucket_bytes(40), LX_OK);
            CHECK_EQ_INT(lx_dist_zero1_new(optax_adam(OPTAX_CONST(0.05), &o), zo, &zz), LX_OK);
            CHECK_EQ_INT(lx_dist_set_bucket_bytes(64), LX_OK);
            lx_dist_zero1 *keep = g_zero1;
            float lzo[STEPS];
            g_zero1 = zz, g_overlap = true;
            lx_dist_take_stats(NULL);
            CHECK_EQ_INT(train(m, &zo, x, y, true, lzo, -1, -1, 0), LX_OK);
            lx_dist_stats os;
            lx_dist_take_stats(&os);
            g_zero1 = keep, g_overlap = false;
            double d2 = tree_maxdiff(p, zo, "zero1 overlapped params");
            if (size <= 2) CHECK(d2 == 0);
            CHECK(d2 <= 2e-5);
            for (int k = 0; k < STEPS; k++) CHECK(fabsf(lzo[k] - ld[k]) <= 2e-6f * (1 + fabsf(ld[k])));
            CHECK(os.bytes == 4.0 * STEPS * T);
            if (size > 1) CHECK(os.overlap_s > 0); /* buckets started before the pass ended */
            if (rank == 0)
                printf("zero1 overlapped: %d ranks: max |p - p_allreduce| = %.3g, %.0f of %.0f bytes reduced before the "
                       "backward pass ended\n", size, d2, os.early_bytes, os.bytes);
            /* grads that are not the ones the pass reported: refused on every rank, the step not
             * taken (params and state as they were); the reductions all completed, so the next
             * step (here without begin: all reduced after the pass) goes on */
            if (size > 1) {
                ctx c = {m, x, y, NULL};
                lx_array *loss = NULL;
                lx_tree *g = NULL, *g2 = NULL;
                CHECK_EQ_INT(lx_dist_zero1_begin(zz, zo), LX_OK);
                CHECK_EQ_INT(linen_value_and_grad(linen_mean_loss, &c, zo, &loss, &g, NULL), LX_OK);
                lx_flat gf = {0}, cf = {0};
                CHECK_EQ_INT(lx_tree_flatten(g, &gf), LX_OK);
                for (size_t i = 0; i < gf.len; i++) { /* the same values in other arrays */
                    lx_array *cp = lx_array_copy(gf.items[i].value.u.array);
                    CHECK_EQ_INT(lx_flat_append(&cf, gf.items[i].path, lx_array_v(cp)), LX_OK);
                    lx_release(cp);
                }
                CHECK_EQ_INT(lx_tree_unflatten(&cf, &g2), LX_OK);
                lx_flat_free(&gf);
                lx_flat_free(&cf);
                lx_tree *before = zo, *snap = tree_clone(zo), *ssnap = tree_clone(lx_dist_zero1_state(zz));
                const lx_tree *sat = lx_dist_zero1_state(zz);
                lx_tree_retain(before);
                CHECK_FAILS(lx_dist_zero1_step(zz, g2, &zo), LX_ERR_INVALID_ARGUMENT,
                            "distributed: zero1: the gradient at layers_0/kernel is not the one the backward pass");
                /* against copies taken before the call (zo itself would compare equal to itself) */
                CHECK(before == zo && tree_same(zo, snap));
                CHECK(lx_dist_zero1_state(zz) == sat && tree_same(lx_dist_zero1_state(zz), ssnap));
                lx_tree_release(snap);
                lx_tree_release(ssnap);
                CHECK_EQ_INT(lx_dist_zero1_step(zz, g, &zo), LX_OK);
                const lx_value *k0 = lx_tree_find(before, "layers_0/kernel"), *k1 = lx_tree_find(zo, "layers_0/kernel");
                CHECK(zo != before && k0 && k1 && memcmp(lx_f32(k0->u.array), lx_f32(k1->u.array), 4 * IN * HID) != 0);
                lx_tree_release(before);
                lx_release(loss);
                lx_tree_release(g);
                lx_tree_release(g2);
            }
            lx_dist_zero1_free(zz);
            lx_tree_release(zo);
        }
        /* the shards: contiguous, T/N or T/N + 1 elements, every param exactly once */
        int64_t total = 0, owned = lx_dist_zero1_owned(g_zero1, &total);
        CHECK_EQ_INT(total, T);
        CHECK_EQ_INT(owned, T / size + (rank < T % size));
        float sum = (float)owned;
        CHECK_EQ_INT(lx_dist_allreduce_f32(&sum, 1, false), LX_OK);
        CHECK_EQ_INT((int64_t)sum, total);
        /* memory: the unsharded Adam state's bytes, and this rank's: mu and nu of its shard only
         * (8 bytes an element) plus what is not per parameter (the count), so <= 8 ceil(T/N) + that */
        lx_tree *fs = NULL;
        optax_tx *ftx = optax_adam(OPTAX_CONST(0.05), &o);
        CHECK_EQ_INT(optax_init(ftx, z0, &fs), LX_OK);
        int64_t full_b = tree_array_bytes(fs), mine_b = lx_dist_zero1_state_bytes(g_zero1), fixed = full_b - 8 * T;
        CHECK(fixed >= 0 && fixed <= 16);
        CHECK_EQ_INT(mine_b, 8 * owned + fixed);
        CHECK(mine_b <= 8 * ((T + size - 1) / size) + fixed);
        printf("zero1: rank %d of %d holds optimizer state for %lld of %lld params: %lld of %lld bytes (%.3f; 1/N = %.3f), "
               "max |p_zero1 - p_allreduce| = %.3g\n", rank, size, (long long)owned, (long long)total, (long long)mine_b,
               (long long)full_b, (double)mine_b / (double)full_b, 1.0 / size, maxd);
        lx_tree_release(fs);
        optax_tx_release(ftx);
        lx_dist_zero1_free(g_zero1);
        g_zero1 = NULL;
        lx_tree_release(z0);
        test_zero1_checkpoint(m, x, y, p, ld, rank, size);
        test_zero1_errors(m, x, y, rank, size);
        test_zero1_chains(rank, size);
        test_mismatched_trees(rank, size);
    }
    if (rank == 0) {
        lx_tree *q = init_params(m, lx_key_from_seed(100), x);
        CHECK_EQ_INT(train(m, &q, x, y, false, lr, -1, -1, 0), LX_OK);
        for (int k = 0; k < STEPS; k++)
            LX_TEST_REPORT_(fabsf(ld[k] - lr[k]) <= 2e-6f * (1 + fabsf(lr[k])), "step %d loss: %d ranks %.9g, 1 process %.9g",
                            k, size, ld[k], lr[k]);
        CHECK(lr[STEPS - 1] < lr[0]);
        lx_flat a = {0}, b = {0};
        double maxd = 0;
        if (q && lx_tree_flatten(p, &a) == LX_OK && lx_tree_flatten(q, &b) == LX_OK && a.len == b.len) {
            for (size_t i = 0; i < a.len; i++) {
                const lx_array *u = a.items[i].value.u.array, *v = b.items[i].value.u.array;
                for (int64_t e = 0; e < u->size; e++) {
                    double d = fabs((double)lx_f32(u)[e] - lx_f32(v)[e]);
                    maxd = lx_worse(maxd, d);
                    LX_TEST_REPORT_(d <= 2e-5 * (1 + fabs(lx_f32(v)[e])), "%s[%lld]: %d ranks %.9g, 1 process %.9g",
                                    a.items[i].path, (long long)e, size, lx_f32(u)[e], lx_f32(v)[e]);
                }
            }
        } else
            CHECK(!"parameter trees differ in structure");
        printf("distributed: %d ranks, global batch %d, %d adam steps: max |p_dist - p_1| = %.3g\n", size, BATCH, STEPS, maxd);
        lx_flat_free(&a);
        lx_flat_free(&b);
        lx_tree_release(q);
    }
    lx_tree_release(p);
    linen_module_release(m);
    for (int i = 0; i < 3; i++) linen_module_release(parts[i]);
    lx_release(x);
    lx_release(w);
    lx_release(y);
    lx_pool_drain();
    /* every rank's verdict decides the exit status of all */
    lx_status mine = lx_test_failed ? LX_ERR_INTERNAL : LX_OK;
    lx_status all = lx_dist_check(mine);
    lx_dist_finalize();
    if (all != LX_OK && !lx_test_failed) lx_test_failed = 1;
    /* MPI starts once per process: a second lx_dist_init is an error, not Open MPI's abort of the
     * process ("MPI_Comm_set_errhandler() function was called after MPI_FINALIZE") */
    int r2 = -1, s2 = -1;
    CHECK_FAILS(lx_dist_init(NULL, NULL, &r2, &s2), LX_ERR_INVALID_ARGUMENT,
                "distributed: lx_dist_init after MPI was finalized (lx_dist_finalize or the program's MPI_Finalize): MPI "
                "cannot be initialised twice in a process");
    CHECK_EQ_INT(r2, 0);
    CHECK_EQ_INT(s2, 1);
    CHECK(!lx_dist_active());
    if (rank == 0 && !lx_test_failed) printf("re-init after finalize: refused on %d ranks\n", size);
    return lx_test_finish();
}

/* A failed lx_dist_init still says where this process stands: rank 0 of 1 (the callers of the
 * docs' example read them unchecked). Without MPI every call fails so; with it, a bad setting
 * fails before MPI starts. */
static void test_init_failure(void) {
    int rank = -1, size = -1;
    setenv("LINNX_DIST_TIMEOUT", "abc", 1);
    lx_status st = lx_dist_init(NULL, NULL, &rank, &size);
    unsetenv("LINNX_DIST_TIMEOUT");
    if (lx_dist_available()) CHECK_ERROR_IS(LX_ERR_INVALID_ARGUMENT, "distributed: LINNX_DIST_TIMEOUT='abc' is not a number in 0.001..1e+09");
    else CHECK_EQ_INT(st, LX_ERR_UNSUPPORTED);
    CHECK_EQ_INT(rank, 0);
    CHECK_EQ_INT(size, 1);
    CHECK(!lx_dist_active());
}

int main(void) {
    if (getenv("LINNX_DIST_WORKER")) return worker();
    RUN(test_init_failure);
    RUN(test_shard_range);
    RUN(test_before_init);
    RUN(test_zero1_before_init);
    RUN(test_batcher_single);
    RUN(test_grad_ready);
    RUN(test_sync_batch_norm_one); /* one process: the mean over one rank */
    RUN(test_sync_batch_norm_grads_one);
    return lx_test_finish();
}
