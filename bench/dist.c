/* Data-parallel communication overhead (docs/distributed.md): mlp_train (784-512-512-10 MLP,
 * relu, global batch 128, softmax cross-entropy with integer labels, adam(1e-3)) and llama_train
 * (the showcase decoder's training step at a global batch of 16 x 128, bench_llama's workload)
 * timed per step; the llama lines have the same names with the llama_train prefix.
 *
 * Run plainly it is one process on LINNX_THREADS threads and prints
 *   mlp_train dist_1xT_step_ms <ms>
 * Under `mpirun -np N` (LINNX_THREADS=1 each) every rank takes 128/N rows, the gradients are
 * averaged by buckets started during the backward pass, and rank 0 prints
 *   mlp_train dist_Nx1_step_ms <ms>
 *   mlp_train dist_grad_ms / dist_opt_ms / dist_cpu_ms <ms per step in value_and_grad, in the
 *                                        optimizer step, and CPU time used, rank 0>
 *   mlp_train dist_allreduce_wait_ms <ms per step blocked waiting in collectives, rank 0>
 *   mlp_train dist_allreduce_overlap_ms <ms per step gradient buckets were in flight during the
 *                                        backward pass>
 *   mlp_train dist_allreduce_early_frac <share of the gradient bytes reduced before the backward
 *                                        pass ended>
 *   mlp_train dist_grad_cpu_ms / dist_opt_cpu_ms <CPU time of those two phases, rank 0>
 *   mlp_train dist_zero1_state_bytes <its optimizer state> / dist_zero1_state_frac <of unsharded>
 * mlp_train shards the optimizer update (ZeRO-1, lx_dist_zero1_begin/step: the reduce-scatters
 * start during the backward pass, each rank updates its 1/N of the params, the params are
 * all-gathered; dist_opt_ms is that step); LINNX_DIST_ALLREDUCE=1 averages the gradients by
 * all-reduce instead (lx_dist_overlap_begin/end) and runs the whole Adam step on every rank;
 * LINNX_DIST_NO_OVERLAP=1 starts the reductions after the backward pass. llama_train keeps
 * llama_trainer_step's overlapped all-reduce.
 * scripts/bench.sh runs them and prints `<workload> dp2x1_vs_1x2 <1x2 ms / 2x1 ms>` (throughput
 * ratio, higher is better) and `mlp_train dp2x1_allreduce_vs_1x2` for the all-reduce series. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "linnx/autodiff.h"
#include "linnx/distributed.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/llama_train.h"
#include "linnx/losses.h"
#include "linnx/ops.h"
#include "linnx/threads.h"
#include "linnx/train.h"

enum { GB = 128, STEPS = 12, WARM = 2 };

typedef struct {
    const linen_module *m;
    lx_array *x, *y;
} ctx;

static lx_status loss_fn(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)aux;
    ctx *c = user;
    lx_tree *vars = lx_tree_new();
    lx_status st = vars ? lx_tree_set(vars, "params", lx_tree_v((lx_tree *)params)) : lx_last_status();
    lx_value out = lx_none();
    if (st == LX_OK) st = linen_apply(c->m, vars, &LX_ARGS(c->x), LINEN_NO_RNGS, NULL, &out, NULL);
    lx_tree_release(vars);
    if (st == LX_OK)
        *loss = lx_mean(optax_softmax_cross_entropy_with_integer_labels(out.u.array, c->y), LX_ALL_AXES, false);
    if (st == LX_OK && !*loss) st = lx_last_status();
    lx_value_free(&out);
    return st;
}

/* An environment switch: set, non-empty and not "0". */
static bool env_on(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds this process used (all its threads): against the wall time it tells computing
 * apart from waiting for a core on a shared machine. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The showcase decoder (llama_config_tiny, Linen composition, batch 16 x 128 as bench_llama's
 * llama_train): llama_trainer_step on this rank's rows (under MPI it averages the gradients over
 * the ranks itself, overlapped with the backward pass). */
enum { LB = 16, LS = 128, LSTEPS = 4, LWARM = 1 };

static int bench_llama_train(bool mpi, int rank, int size) {
    int64_t start = 0, len = LB;
    if (lx_dist_shard_range(LB, rank, size, &start, &len) != LX_OK) return 1;
    llama_config c = llama_config_tiny();
    c.max_target_length = LS;
    llama_model *m = NULL;
    llama_trainer *tr = NULL;
    llama_train_opts o = LLAMA_TRAIN_DEFAULTS;
    if (llama_model_new(&c, LLAMA_LINEN_TOP, 0, &m) != LX_OK || llama_trainer_new(m, &o, &tr) != LX_OK) return 1;
    /* this rank's rows of the global batch (row i: tokens (i * 129 + j) * 37 + 11 mod 256) */
    lx_array *tok = lx_array_new(LX_I32, 2, (int64_t[]){len, LS + 1});
    for (int64_t i = 0; i < tok->size; i++) lx_i32(tok)[i] = (int32_t)(((start * (LS + 1) + i) * 37 + 11) % 256);
    double t0 = 0, t_end;
    lx_status st = LX_OK;
    for (int s = 0; st == LX_OK && s < LWARM + LSTEPS; s++) {
        if (s == LWARM) {
            t0 = now_s();
            lx_dist_take_stats(NULL);
        }
        size_t mark = lx_pool_open();
        lx_dist_set_step(s);
        st = llama_trainer_step(tr, tok, NULL);
        lx_pool_close(mark);
    }
    t_end = now_s();
    lx_dist_stats ds;
    lx_dist_take_stats(&ds);
    double ms = (t_end - t0) * 1e3 / LSTEPS;
    if (st != LX_OK) fprintf(stderr, "bench_dist: llama: rank %d: %s\n", rank, lx_last_error());
    else if (rank == 0) {
        if (mpi) {
            printf("llama_train dist_%dx%d_step_ms %.3f\n", size, lx_num_threads(), ms);
            printf("llama_train dist_allreduce_wait_ms %.3f\n", ds.wait_s * 1e3 / LSTEPS);
            printf("llama_train dist_allreduce_overlap_ms %.3f\nllama_train dist_allreduce_early_frac %.3f\n",
                   ds.overlap_s * 1e3 / LSTEPS, ds.bytes > 0 ? ds.early_bytes / ds.bytes : 0.0);
            printf("llama_train dist_allreduce_bytes %.0f\n", ds.bytes / LSTEPS);
        } else printf("llama_train dist_1x%d_step_ms %.3f\n", lx_num_threads(), ms);
    }
    lx_release(tok);
    llama_trainer_free(tr);
    llama_model_free(m);
    return st == LX_OK ? 0 : 1;
}

int main(void) {
    int rank = 0, size = 1;
    bool overlap = !env_on("LINNX_DIST_NO_OVERLAP");
    bool zero1 = !env_on("LINNX_DIST_ALLREDUCE"); /* the sharded update unless asked otherwise */
    bool mpi = (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE")) && lx_dist_available();
    if (mpi && lx_dist_init(NULL, NULL, &rank, &size) != LX_OK) {
        fprintf(stderr, "bench_dist: %s\n", lx_last_error());
        return 1;
    }
    lx_key k = lx_key_from_seed(0);
    int64_t start = 0, len = GB;
    if (lx_dist_shard_range(GB, rank, size, &start, &len) != LX_OK) {
        fprintf(stderr, "bench_dist: %s\n", lx_last_error());
        return 1;
    }
    lx_array *xg = lx_retain(lx_random_normal(lx_key_fold_in(k, 0), 2, (int64_t[]){GB, 784}));
    lx_array *yg = lx_retain(lx_random_randint(lx_key_fold_in(k, 1), 1, (int64_t[]){GB}, 0, 10));
    int32_t *idx = malloc((size_t)len * sizeof *idx);
    for (int64_t i = 0; i < len; i++) idx[i] = (int32_t)(start + i);
    lx_array *ia = lx_array_from_data(LX_I32, 1, &len, idx);
    lx_array *x = lx_retain(lx_take(xg, ia, 0)), *y = lx_retain(lx_take(yg, ia, 0));
    linen_module *d[3] = {0}, *relu = NULL, *m = NULL;
    int feats[3] = {512, 512, 10};
    for (int i = 0; i < 3; i++) {
        lx_call c = LX_CALL_KWARGS(LX_KW_INT("features", feats[i]));
        linen_module_new(&linen_Dense, &c, &d[i]);
    }
    linen_module_new(&linen_relu, NULL, &relu);
    lx_call cs = LX_CALL_ARGS(linen_module_v(d[0]), linen_module_v(relu), linen_module_v(d[1]), linen_module_v(relu),
                              linen_module_v(d[2]));
    linen_module_new(&linen_Sequential, &cs, &m);
    lx_tree *vars = NULL, *state = NULL;
    if (!m || linen_init(m, LINEN_KEY(lx_key_fold_in(k, 2)), &LX_ARGS(x), NULL, &vars) != LX_OK) {
        fprintf(stderr, "bench_dist: %s\n", lx_last_error());
        return 1;
    }
    lx_tree *params = lx_tree_retain(lx_tree_get(vars, "params")->u.tree);
    optax_adam_opts o = OPTAX_ADAM_DEFAULTS;
    optax_tx *tx = optax_adam(OPTAX_CONST(1e-3), &o);
    optax_init(tx, params, &state);
    lx_dist_zero1 *z = NULL;
    if (mpi && zero1 && lx_dist_zero1_new(optax_adam(OPTAX_CONST(1e-3), &o), params, &z) != LX_OK) {
        fprintf(stderr, "bench_dist: %s\n", lx_last_error());
        return 1;
    }
    double t0 = 0, c0 = 0, t_grad = 0, t_opt = 0, c_grad = 0, c_opt = 0;
    lx_status st = LX_OK;
    for (int s = 0; st == LX_OK && s < WARM + STEPS; s++) {
        if (s == WARM) {
            t0 = now_s();
            c0 = cpu_s();
            lx_dist_take_stats(NULL);
        }
        size_t mark = lx_pool_open();
        ctx c = {m, x, y};
        lx_array *loss = NULL;
        lx_tree *g = NULL, *avg = NULL;
        lx_dist_set_step(s);
        if (mpi && overlap && !z) st = lx_dist_overlap_begin();
        if (z && overlap) st = lx_dist_zero1_begin(z, params);
        double tc = now_s(), cc = cpu_s();
        if (st == LX_OK) st = linen_value_and_grad(loss_fn, &c, params, &loss, &g, NULL);
        if (s >= WARM) t_grad += now_s() - tc, c_grad += cpu_s() - cc;
        if (mpi) st = lx_dist_check(st);
        if (z && st != LX_OK) lx_dist_zero1_step(z, NULL, NULL);
        if (st == LX_OK && mpi && !z) st = overlap ? lx_dist_overlap_end(g, &avg) : lx_dist_allreduce_mean(g, &avg);
        double to = now_s(), co = cpu_s();
        if (st == LX_OK && z) st = lx_dist_zero1_step(z, g, &params);
        else if (st == LX_OK) st = optax_step(tx, mpi ? avg : g, &params, &state);
        if (s >= WARM) t_opt += now_s() - to, c_opt += cpu_s() - co;
        lx_release(loss);
        lx_tree_release(g);
        lx_tree_release(avg);
        lx_pool_close(mark);
    }
    double ms = (now_s() - t0) * 1e3 / STEPS, cpu_ms = (cpu_s() - c0) * 1e3 / STEPS;
    lx_dist_stats ds;
    lx_dist_take_stats(&ds);
    if (st != LX_OK) fprintf(stderr, "bench_dist: rank %d: %s\n", rank, lx_last_error());
    else if (rank == 0) {
        if (mpi) {
            printf("mlp_train dist_%dx%d_step_ms %.3f\n", size, lx_num_threads(), ms);
            printf("mlp_train dist_grad_ms %.3f\nmlp_train dist_opt_ms %.3f\nmlp_train dist_cpu_ms %.3f\n",
                   t_grad * 1e3 / STEPS, t_opt * 1e3 / STEPS, cpu_ms);
            printf("mlp_train dist_grad_cpu_ms %.3f\nmlp_train dist_opt_cpu_ms %.3f\n", c_grad * 1e3 / STEPS,
                   c_opt * 1e3 / STEPS);
            printf("mlp_train dist_allreduce_wait_ms %.3f\n", ds.wait_s * 1e3 / STEPS);
            if (z) {
                int64_t full = 0, zb = lx_dist_zero1_state_bytes(z);
                lx_flat f = {0};
                if (lx_tree_flatten(state, &f) == LX_OK)
                    for (size_t i = 0; i < f.len; i++)
                        if (f.items[i].value.kind == LX_V_ARRAY) full += (int64_t)lx_array_nbytes(f.items[i].value.u.array);
                lx_flat_free(&f);
                printf("mlp_train dist_zero1_state_bytes %lld\nmlp_train dist_zero1_state_frac %.4f\n", (long long)zb,
                       full > 0 ? (double)zb / (double)full : 0.0);
            }
            if (overlap)
                printf("mlp_train dist_allreduce_overlap_ms %.3f\nmlp_train dist_allreduce_early_frac %.3f\n",
                       ds.overlap_s * 1e3 / STEPS, ds.bytes > 0 ? ds.early_bytes / ds.bytes : 0.0);
        } else {
            int nt = lx_num_threads();
            printf("mlp_train dist_1x%d_step_ms %.3f\nmlp_train dist_1x%d_grad_ms %.3f\n", nt, ms, nt, t_grad * 1e3 / STEPS);
            printf("mlp_train dist_1x%d_opt_ms %.3f\nmlp_train dist_1x%d_cpu_ms %.3f\n", nt, t_opt * 1e3 / STEPS, nt, cpu_ms);
            printf("mlp_train dist_1x%d_grad_cpu_ms %.3f\nmlp_train dist_1x%d_opt_cpu_ms %.3f\n", nt, c_grad * 1e3 / STEPS, nt,
                   c_opt * 1e3 / STEPS);
        }
    }
    lx_dist_zero1_free(z);
    optax_tx_release(tx);
    lx_tree_release(state);
    lx_tree_release(params);
    lx_tree_release(vars);
    linen_module_release(m);
    linen_module_release(relu);
    for (int i = 0; i < 3; i++) linen_module_release(d[i]);
    lx_release(x);
    lx_release(y);
    lx_release(xg);
    lx_release(yg);
    lx_release(ia);
    free(idx);
    int rc = st == LX_OK ? 0 : 1;
    if (!rc && !getenv("LINNX_BENCH_DIST_MLP_ONLY")) rc = bench_llama_train(mpi, rank, size);
    if (mpi) lx_dist_finalize();
    return rc;
}
