/* Layer stacking: a scanned stack of the showcase decoder layer (LlamaDecoderLayer, stacked with
 * nnx_vmap_create and run with nnx_scan_call) against the same 8 layers unrolled, forward +
 * backward (a tape over every parameter), as a ratio measured in the same run.
 *
 *   bench_stack [layers=8] [emb=256] [seq=64] [rounds=7] [only]
 * prints `stack <metric> <value>` lines (docs/stacking.md lists them): the scanned and unrolled
 * times and their ratio, then the scanned stack with every layer rematerialised
 * (nnx_scan_call_remat, policies nothing_saveable and dots_saveable): time over the plain scanned
 * stack, and the peak of live array bytes over one forward + backward (from the allocation and
 * free hooks, above what was live before the step) over the plain scanned stack's. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "linnx/linnx.h"
#include "linnx/llama.h"

typedef struct ctx {
    nnx_module *stack;
    nnx_module **layers;
    int nlayers;
    bool scanned;
    int remat; /* -1: none; else the lx_remat_policy of every layer (scanned only) */
    lx_array *x, *pos;
    lx_array **params;
    int nparams;
} ctx;

static int collect(nnx_module *m, lx_array **out, int cap) {
    lx_tree *st = NULL;
    nnx_filter pf = NNX_OF_TYPE(&lx_Param);
    if (nnx_state(m, 1, &pf, &st) != LX_OK) return -1;
    lx_flat f = {0};
    lx_tree_flatten(st, &f);
    int n = 0;
    for (size_t i = 0; i < f.len && n < cap; i++)
        if (f.items[i].value.kind == LX_V_VARIABLE) out[n++] = lx_variable_get_value(f.items[i].value.u.var);
    lx_flat_free(&f);
    lx_tree_release(st);
    return n; /* the modules keep the arrays alive */
}

static void step(void *p) {
    ctx *c = p;
    size_t mark = lx_pool_open();
    lx_tape *t = NULL;
    if (lx_tape_new(&t) != LX_OK) abort();
    for (int i = 0; i < c->nparams; i++) lx_tape_watch(t, c->params[i]);
    lx_kwarg kw[] = {LX_KW_ARRAY("decoder_positions", c->pos)};
    lx_array *y = NULL;
    if (c->scanned) {
        lx_value out = lx_none();
        lx_call call = {1, (lx_value[]){lx_array_v(c->x)}, 1, kw};
        lx_status st = c->remat < 0 ? nnx_scan_call(c->stack, NULL, NULL, NULL, &call, &out)
                                    : nnx_scan_call_remat(c->stack, NULL, NULL, NULL, (lx_remat_policy)c->remat, &call, &out);
        if (st != LX_OK) {
            fprintf(stderr, "bench_stack: %s\n", lx_last_error());
            abort();
        }
        y = lx_autorelease(lx_retain(out.u.array));
        lx_value_free(&out);
    } else {
        y = c->x;
        for (int l = 0; l < c->nlayers; l++) {
            lx_value out = lx_none();
            lx_call call = {1, (lx_value[]){lx_array_v(y)}, 1, kw};
            if (nnx_call(c->layers[l], NULL, &call, &out) != LX_OK) {
                fprintf(stderr, "bench_stack: %s\n", lx_last_error());
                abort();
            }
            y = lx_autorelease(lx_retain(out.u.array));
            lx_value_free(&out);
        }
    }
    lx_array *loss = lx_sum(lx_mul(y, y), 0, NULL, false);
    lx_tape_stop(t);
    lx_array **g = calloc((size_t)c->nparams, sizeof *g);
    if (lx_tape_backward(t, loss, c->nparams, c->params, g) != LX_OK) abort();
    for (int i = 0; i < c->nparams; i++) lx_release(g[i]);
    free(g);
    lx_tape_free(t);
    lx_pool_close(mark);
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t live_bytes, peak_bytes;
static void on_alloc(size_t n, void *u) {
    (void)u;
    live_bytes += (int64_t)n;
    if (live_bytes > peak_bytes) peak_bytes = live_bytes;
}
static void on_free(size_t n, void *u) {
    (void)u;
    live_bytes -= (int64_t)n;
}

/* The peak live bytes of one step above the bytes live before it. */
static int64_t step_peak(ctx *c) {
    live_bytes = peak_bytes = 0;
    size_t cache_limit = lx_array_cache_limit(); /* the hooks see every block only with the cache off */
    lx_array_cache_set_limit(0);
    lx_set_alloc_hook(on_alloc, NULL);
    lx_set_free_hook(on_free, NULL);
    step(c);
    lx_set_alloc_hook(NULL, NULL);
    lx_set_free_hook(NULL, NULL);
    lx_array_cache_set_limit(cache_limit);
    return peak_bytes;
}

int main(int argc, char **argv) {
    /* as linnx train-lm does (tools/cmd_lm.c): large results from the heap, not fresh mmaps whose
     * page faults would be charged to whichever configuration allocates most */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    int L = argc > 1 ? atoi(argv[1]) : 8;
    int64_t E = argc > 2 ? atoll(argv[2]) : 256, S = argc > 3 ? atoll(argv[3]) : 64, B = 4;
    llama_config cfg = llama_config_tiny();
    cfg.emb_dim = E;
    cfg.num_query_heads = 8;
    cfg.num_kv_heads = 4;
    cfg.head_dim = E / 8;
    cfg.mlp_dim = 4 * E;
    cfg.num_decoder_layers = L;
    lx_kwarg kw[LLAMA_CONFIG_NKW];
    llama_config_kwargs(&cfg, kw);
    lx_call ctor = {0, NULL, LLAMA_CONFIG_NKW, kw};
    nnx_rngs *r = NULL;
    nnx_stream_spec s[] = {{"params", false, 0, {{0, 0}}}};
    ctx c = {0};
    c.nlayers = L;
    c.remat = -1;
    if (nnx_rngs_new(1, s, &r) != LX_OK || nnx_vmap_create(&LLAMA_DECODER_LAYER_TYPE, &ctor, r, L, NULL, NULL, &c.stack) != LX_OK) {
        fprintf(stderr, "bench_stack: %s\n", lx_last_error());
        return 1;
    }
    c.layers = calloc((size_t)L, sizeof *c.layers);
    for (int l = 0; l < L; l++)
        if (nnx_stack_slice(c.stack, l, NULL, NULL, &c.layers[l]) != LX_OK) return 1;
    c.x = lx_array_new(LX_F32, 3, (int64_t[]){B, S, E});
    for (int64_t i = 0; i < c.x->size; i++) lx_f32(c.x)[i] = 0.01f * (float)((i * 37) % 101 - 50);
    c.pos = lx_array_new(LX_I32, 2, (int64_t[]){B, S});
    for (int64_t i = 0; i < c.pos->size; i++) ((int32_t *)c.pos->data)[i] = (int32_t)(i % S);
    lx_array *sp[64], *up[1024];
    int ns = collect(c.stack, sp, 64), nu = 0;
    for (int l = 0; l < L; l++) nu += collect(c.layers[l], up + nu, 1024 - nu);
    printf("# %d LlamaDecoderLayers, B %lld S %lld E %lld, forward + backward\n", L, (long long)B, (long long)S, (long long)E);
    /* Four configurations (scanned, unrolled, scanned + remat nothing, scanned + remat dots),
     * run in interleaved rounds and each timed by its fastest round: on a shared machine the load
     * changes from second to second, and the minimum is what the code costs when it runs. */
    static const char *const pol_name[2] = {"nothing", "dots"};
    const int rounds = argc > 4 ? atoi(argv[4]) : 7;
    /* `only` (0 scanned, 1 unrolled, 2 remat nothing, 3 remat dots) runs that configuration alone
     * for `rounds` steps and prints nothing else: for an outside counter, such as
     * `perf stat -e instructions:u`, which a loaded machine does not disturb */
    const int only = argc > 5 ? atoi(argv[5]) : -1;
    if (only >= 0 && only < 4) {
        c.scanned = only != 1;
        c.params = only == 1 ? up : sp;
        c.nparams = only == 1 ? nu : ns;
        c.remat = only < 2 ? -1 : only - 2;
        double t0 = bench_now();
        for (int r = 0; r < rounds; r++) step(&c);
        printf("stack only_%d_fwd_bwd_ms %.3f\n", only, 1e3 * (bench_now() - t0) / rounds);
        return 0;
    }
    double best[4] = {1e30, 1e30, 1e30, 1e30}, cpu[4] = {1e30, 1e30, 1e30, 1e30};
    for (int r = -1; r < rounds; r++) /* round -1 warms up */
        for (int k = 0; k < 4; k++) {
            c.scanned = k != 1;
            c.params = k == 1 ? up : sp;
            c.nparams = k == 1 ? nu : ns;
            c.remat = k < 2 ? -1 : k - 2;
            double t0 = bench_now(), c0 = cpu_now();
            step(&c);
            double dt = bench_now() - t0, dc = cpu_now() - c0;
            if (r >= 0 && dt < best[k]) best[k] = dt;
            if (r >= 0 && dc < cpu[k]) cpu[k] = dc;
        }
    double ts = best[0], tu = best[1], tr[2] = {best[2], best[3]};
    printf("stack scanned_fwd_bwd_ms %.3f\n", 1e3 * ts);
    printf("stack unrolled_fwd_bwd_ms %.3f\n", 1e3 * tu);
    printf("stack scanned_over_unrolled %.3f\n", ts / tu);
    /* remat: every scanned layer recomputed in the backward pass */
    for (int pol = 0; pol < 2; pol++) {
        printf("stack remat_%s_fwd_bwd_ms %.3f\n", pol_name[pol], 1e3 * tr[pol]);
        printf("stack remat_%s_over_scanned %.3f\n", pol_name[pol], tr[pol] / ts);
    }
    /* the same from the process's CPU time: what the work costs when other processes take the
     * cores away (wall time then mostly measures the machine's load); with LINNX_THREADS=1 it is
     * the wall time of an idle machine */
    printf("stack cpu_scanned_over_unrolled %.3f\n", cpu[0] / cpu[1]);
    for (int pol = 0; pol < 2; pol++) printf("stack cpu_remat_%s_over_scanned %.3f\n", pol_name[pol], cpu[2 + pol] / cpu[0]);
    c.scanned = true;
    c.params = sp;
    c.nparams = ns;
    int64_t pk[3];
    for (int k = 0; k < 3; k++) {
        c.remat = k - 1;
        pk[k] = step_peak(&c);
    }
    /* Both peaks hold every layer's parameter slices (the per-layer views the scan makes) and the
     * stacked gradients, each the size of the parameters; the rest is activations. */
    int64_t pbytes = 0;
    for (int i = 0; i < ns; i++) pbytes += (int64_t)lx_array_nbytes(sp[i]);
    printf("stack param_bytes %lld\n", (long long)pbytes);
    printf("stack peak_bytes_scanned %lld\n", (long long)pk[0]);
    for (int pol = 0; pol < 2; pol++) {
        printf("stack peak_bytes_remat_%s %lld\n", pol_name[pol], (long long)pk[pol + 1]);
        printf("stack peak_remat_%s_over_scanned %.3f\n", pol_name[pol], (double)pk[pol + 1] / (double)pk[0]);
    }
    for (int pol = 0; pol < 2; pol++)
        printf("stack act_peak_remat_%s_over_scanned %.3f\n", pol_name[pol],
               (double)(pk[pol + 1] - 2 * pbytes) / (double)(pk[0] - 2 * pbytes));
    for (int l = 0; l < L; l++) nnx_module_release(c.layers[l]);
    free(c.layers);
    nnx_module_release(c.stack);
    nnx_rngs_release(r);
    lx_release(c.x);
    lx_release(c.pos);
    return 0;
}
