/* optax step cost: optax_step(adam) on the parameters of a 784-512-512-10 MLP (the mlp_train
 * workload's 669,706 params) against a fused in-place Adam loop over the same floats, measured in
 * the same run. Prints `<workload> <metric> <value>` lines. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "linnx/linnx.h"

typedef struct {
    optax_tx *tx;
    lx_tree *params, *state, *grads;
} step_ctx;

static void run_step(void *p) {
    step_ctx *c = p;
    if (optax_step(c->tx, c->grads, &c->params, &c->state) != LX_OK) fprintf(stderr, "%s\n", lx_last_error());
}

typedef struct {
    float *p, *g, *m, *v;
    int64_t n;
    int t;
} fused_ctx;

static void run_fused(void *q) {
    fused_ctx *c = q;
    c->t++;
    float bc1 = 1.0f - powf(0.9f, (float)c->t), bc2 = 1.0f - powf(0.999f, (float)c->t);
    for (int64_t i = 0; i < c->n; i++) {
        float g = c->g[i];
        c->m[i] = 0.1f * g + 0.9f * c->m[i];
        c->v[i] = 0.001f * (g * g) + 0.999f * c->v[i];
        c->p[i] += -1e-3f * ((c->m[i] / bc1) / (sqrtf(c->v[i] / bc2) + 1e-8f));
    }
}

int main(void) {
    int threads = bench_threads(2); /* as bench_train: LINNX_THREADS or LX_THREADS, default 2 */
    lx_set_num_threads(threads);
    printf("# %d threads (LINNX_THREADS or LX_THREADS)\n", threads);
    const int64_t shapes[6][2] = {{784, 512}, {512, 0}, {512, 512}, {512, 0}, {512, 10}, {10, 0}};
    const char *paths[6] = {"Dense_0/kernel", "Dense_0/bias", "Dense_1/kernel", "Dense_1/bias", "Dense_2/kernel",
                            "Dense_2/bias"};
    step_ctx c = {optax_adam(OPTAX_CONST(1e-3), NULL), lx_tree_new(), NULL, lx_tree_new()};
    int64_t n = 0;
    for (int i = 0; i < 6; i++) {
        int nd = shapes[i][1] ? 2 : 1;
        lx_array *p = lx_array_full_f32(nd, shapes[i], 0.01f), *g = lx_array_full_f32(nd, shapes[i], 0.001f);
        lx_tree_set_path(c.params, paths[i], lx_array_v(p));
        lx_tree_set_path(c.grads, paths[i], lx_array_v(g));
        n += p->size;
        lx_release(p);
        lx_release(g);
    }
    if (optax_init(c.tx, c.params, &c.state) != LX_OK) {
        fprintf(stderr, "%s\n", lx_last_error());
        return 1;
    }
    fused_ctx f = {calloc((size_t)n, 4), calloc((size_t)n, 4), calloc((size_t)n, 4), calloc((size_t)n, 4), n, 0};
    for (int64_t i = 0; i < n; i++) f.g[i] = 0.001f;
    double t_opt = bench_median(run_step, &c, 3, 15, 1);
    double t_fused = bench_median(run_fused, &f, 3, 15, 1);
    printf("# %lld params; optax_step(adam) %.3f ms, fused in-place loop %.3f ms\n", (long long)n, 1e3 * t_opt,
           1e3 * t_fused);
    printf("optax_adam_step vs_fused_loop %.2f\n", t_opt / t_fused);
    lx_tree_release(c.params);
    lx_tree_release(c.state);
    lx_tree_release(c.grads);
    optax_tx_release(c.tx);
    free(f.p);
    free(f.g);
    free(f.m);
    free(f.v);
    return 0;
}
