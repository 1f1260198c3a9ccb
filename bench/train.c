/* Training workloads against PyTorch, measured in the same run: the workloads of
 * ../shared/peers/torch_peer.py with the same shapes, optimizers and thread count (LX_THREADS,
 * default 2, for both sides). linnx runs them as a Flax user writes them: a Linen model, a loss
 * from optax.losses, jax.value_and_grad of the params, TrainState.apply_gradients (with the old
 * state donated, as a step jitted with donate_argnums=0 does: linen_train_state_apply_gradients_donated).
 *
 *   mlp_train        784-512-512-10 MLP, relu, batch 128, softmax CE (integer labels), adam(1e-3)
 *   cnn_train        Conv(32, 3x3) relu Conv(64, 3x3) relu avg_pool 2 Dense(10) on 64 28x28x1
 *                    images (NHWC), sgd(0.1, momentum=0.9)
 *   lm_train         Embed(256, 128), 2 pre-LN blocks (4 heads, causal, MLP 4x, gelu), Dense(256)
 *                    on 16 x 64 tokens, adamw(3e-4, weight_decay=0.01) (torch.optim.AdamW's
 *                    defaults). Differences from the peer, same FLOPs: q, k, v are three Dense
 *                    layers instead of one fused qkv, and q/k/v/o carry a bias (the peer's have
 *                    none); gelu is Flax's default tanh form (the peer's is erf).
 *   mlp_infer_small  64-64-10 MLP forward at batch 1 (no gradient): linen apply; also the NNX
 *                    module call (mlp_infer_small_nnx) for comparison
 *
 * Both sides are timed in rounds (LINNX_BENCH_ROUNDS, default 5): one python process
 * (bench/torch_rounds.py, which imports the peer script and calls its functions) stays alive, and
 * each round times torch's step and ours back to back, each as the median of its reps (the
 * peer's warm-up and reps on both sides). Each side's figure is the fastest of its rounds'
 * medians: on a shared machine a slow stretch lengthens one round, never shortens one.
 * Prints `<workload> ms <ours>`, `<workload> torch_ms <theirs>`, `<workload> vs_torch <ratio>`
 * (ours / theirs, those two figures; lower is better; `vs_torch skipped` when python3-torch, the
 * peer script or the driver is missing), `vs_torch_rounds` (the round count) and
 * `vs_torch_median` (the ratio of the two sides' median rounds), `gflop_per_step` (FLOPs of one
 * step, counted below from the shapes), `frac_peak` and `torch_frac_peak` (FLOPs per second of
 * each side's best step over `fma_peak_t1 gflops`, one thread's FMA loop measured in this run,
 * times the thread count: how far from the machine's arithmetic limit each side runs),
 * and for mlp_train `backward_over_forward` (value_and_grad time minus forward time, over the
 * forward: the forward pass is apply + loss without a tape) and the array data allocations of a
 * steady-state step (`allocs_per_step`, `alloc_mb_per_step`, counted with lx_set_alloc_hook; and
 * `mallocs_per_step`, every heap allocation of the step: tree nodes, path strings, tape records);
 * `backward_over_forward_1thread_cpu` is the same ratio on one thread in process CPU time, which a
 * loaded machine disturbs less than wall time. `adam_fused_1thread_cpu_ms` / `adam_unfused_...`
 * time the optimizer alone on fixed gradients: optax_step's fused pass (src/train/optax_fused.c)
 * against optax_update + optax_apply_updates, in the same run. With LX_THREADS=1, mlp_infer_small
 * also prints `cpu_us`, process CPU microseconds per call (Linen apply, NNX call), and lm_train and
 * cnn_train `cpu_ms`, the median process CPU milliseconds of a step (no torch counterpart: compare
 * builds).
 * The peer script: $LINNX_TORCH_PEER, else ../shared/peers/torch_peer.py from the working
 * directory (scripts/bench.sh sets it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "linnx/autodiff.h"
#include "linnx/cpu.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/linnx.h"
#include "linnx/losses.h"
#include "linnx/threads.h"
#include "linnx/train.h"

/* ------------------------------------------------------------------ models */

static lx_array *mlp_call(linen_scope *s, lx_array *x) {
    x = lx_relu(linen_dense(s, NULL, 512, x));
    x = lx_relu(linen_dense(s, NULL, 512, x));
    return linen_dense(s, NULL, 10, x);
}
static const linen_method MLP_M[] = {LINEN_ARRAY_METHOD("__call__", mlp_call)};
static const linen_type MLP = {.name = "MLP", .methods = MLP_M, .nmethods = 1};

static lx_array *small_call(linen_scope *s, lx_array *x) {
    return linen_dense(s, NULL, 10, lx_relu(linen_dense(s, NULL, 64, x)));
}
static const linen_method SMALL_M[] = {LINEN_ARRAY_METHOD("__call__", small_call)};
static const linen_type SMALL = {.name = "MLP", .methods = SMALL_M, .nmethods = 1};

static lx_array *cnn_call(linen_scope *s, lx_array *x) {
    x = lx_relu(linen_conv(s, NULL, 32, 2, (int64_t[]){3, 3}, x));
    x = lx_relu(linen_conv(s, NULL, 64, 2, (int64_t[]){3, 3}, x));
    x = lx_avg_pool(x, 2, (int64_t[]){2, 2}, (int64_t[]){2, 2}, NULL, true);
    if (!x) return NULL;
    return linen_dense(s, NULL, 10, lx_reshape(x, 2, (int64_t[]){x->shape[0], -1}));
}
static const linen_method CNN_M[] = {LINEN_ARRAY_METHOD("__call__", cnn_call)};
static const linen_type CNN = {.name = "CNN", .methods = CNN_M, .nmethods = 1};

enum { LM_VOCAB = 256, LM_D = 128, LM_HEADS = 4, LM_LAYERS = 2, LM_B = 16, LM_T = 64 };

static lx_array *block(linen_scope *s, int i, lx_array *x) {
    char n[8][32];
    const char *names[8] = {"ln1", "q", "k", "v", "o", "ln2", "up", "down"};
    for (int j = 0; j < 8; j++) snprintf(n[j], sizeof n[j], "block%d_%s", i, names[j]);
    if (!x) return NULL;
    int64_t b = x->shape[0], t = x->shape[1], hd[4] = {b, t, LM_HEADS, LM_D / LM_HEADS};
    lx_array *h = linen_layer_norm(s, n[0], x);
    lx_array *q = lx_reshape(linen_dense(s, n[1], LM_D, h), 4, hd);
    lx_array *k = lx_reshape(linen_dense(s, n[2], LM_D, h), 4, hd);
    lx_array *v = lx_reshape(linen_dense(s, n[3], LM_D, h), 4, hd);
    lx_array *a = lx_dot_product_attention(q, k, v, NULL, NULL, true, 0.0f);
    x = lx_add(x, linen_dense(s, n[4], LM_D, lx_reshape(a, 3, (int64_t[]){b, t, LM_D})));
    h = lx_gelu(linen_dense(s, n[6], 4 * LM_D, linen_layer_norm(s, n[5], x)), true);
    return lx_add(x, linen_dense(s, n[7], LM_D, h));
}

static lx_array *lm_call(linen_scope *s, lx_array *ids) {
    lx_array *x = linen_embed(s, NULL, LM_VOCAB, LM_D, ids);
    for (int i = 0; i < LM_LAYERS; i++) x = block(s, i, x);
    return linen_dense(s, "head", LM_VOCAB, x);
}
static const linen_method LM_M[] = {LINEN_ARRAY_METHOD("__call__", lm_call)};
static const linen_type LM = {.name = "LM", .methods = LM_M, .nmethods = 1};

/* ------------------------------------------------------------------ a training step */

typedef struct job {
    const char *name;
    linen_module *model;
    lx_array *x, *y;
    linen_train_state *state;
    bool failed;
} job;

static lx_status loss_fn(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    (void)aux;
    job *j = user;
    lx_tree *vars = lx_tree_new();
    if (!vars) return lx_last_status();
    lx_status st = lx_tree_set(vars, "params", lx_tree_v((lx_tree *)params));
    lx_value out = lx_none();
    if (st == LX_OK) st = linen_apply(j->model, vars, &LX_ARGS(j->x), LINEN_NO_RNGS, NULL, &out, NULL);
    lx_tree_release(vars);
    if (st == LX_OK) {
        *loss = lx_mean(optax_softmax_cross_entropy_with_integer_labels(out.u.array, j->y), LX_ALL_AXES, false);
        if (!*loss) st = lx_last_status();
    }
    lx_value_free(&out);
    return st;
}

static void train_step(void *ctx) {
    job *j = ctx;
    if (j->failed) return;
    size_t mark = lx_pool_open();
    lx_array *loss = NULL;
    lx_tree *grads = NULL;
    /* state = state.apply_gradients(grads=grads) in a step jitted with donate_argnums=0 */
    if (linen_value_and_grad(loss_fn, j, j->state->params, &loss, &grads, NULL) != LX_OK ||
        linen_train_state_apply_gradients_donated(&j->state, grads) != LX_OK) {
        fprintf(stderr, "# %s: %s\n", j->name, lx_last_error());
        j->failed = true;
    }
    lx_release(loss);
    lx_tree_release(grads);
    lx_pool_close(mark);
}

/* The forward pass alone: apply + loss, no tape. */
static void forward_only(void *ctx) {
    job *j = ctx;
    size_t mark = lx_pool_open();
    lx_array *loss = NULL;
    if (loss_fn(j->state->params, j, &loss, NULL) != LX_OK) j->failed = true;
    lx_pool_close(mark);
}

/* Forward + backward, no optimizer. */
static void value_and_grad_only(void *ctx) {
    job *j = ctx;
    size_t mark = lx_pool_open();
    lx_array *loss = NULL;
    lx_tree *grads = NULL;
    if (linen_value_and_grad(loss_fn, j, j->state->params, &loss, &grads, NULL) != LX_OK) j->failed = true;
    lx_release(loss);
    lx_tree_release(grads);
    lx_pool_close(mark);
}

static bool job_init(job *j, const char *name, const linen_type *t, lx_array *x, lx_array *y, optax_tx *tx) {
    memset(j, 0, sizeof *j);
    j->name = name;
    j->x = x;
    j->y = y;
    lx_tree *vars = NULL;
    bool ok = x && y && tx && linen_module_new(t, NULL, &j->model) == LX_OK &&
              linen_init(j->model, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(x), NULL, &vars) == LX_OK &&
              linen_train_state_create(j->model, lx_tree_get(vars, "params")->u.tree, tx, &j->state) == LX_OK;
    if (!ok) {
        if (!j->state) optax_tx_release(tx);
        fprintf(stderr, "# %s: %s\n", name, lx_last_error());
    }
    lx_tree_release(vars);
    return ok;
}

static void job_free(job *j) {
    linen_train_state_free(j->state);
    linen_module_release(j->model);
    lx_release(j->x);
    lx_release(j->y);
}

/* Every heap allocation of the process while `g_count_mallocs` is set (tree nodes, strings, tape
 * records, headers: what the array hook does not see), by interposing glibc's malloc family in
 * this program. glibc only, and not under the sanitizers (which interpose it themselves). */
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
#define HAVE_MALLOC_COUNT 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t s);
extern void *__libc_realloc(void *p, size_t n);
static _Atomic size_t g_mallocs;
static _Atomic int g_count_mallocs;
void *malloc(size_t n) {
    if (g_count_mallocs) g_mallocs++;
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t s) {
    if (g_count_mallocs) g_mallocs++;
    return __libc_calloc(n, s);
}
void *realloc(void *p, size_t n) {
    if (g_count_mallocs) g_mallocs++;
    return __libc_realloc(p, n);
}
#endif

static size_t g_allocs, g_bytes;
static void count_alloc(size_t n, void *user) {
    (void)user;
    g_allocs++;
    g_bytes += n;
}

/* Median process CPU seconds of fn over reps runs (after 2 warm-up runs). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double cpu_median(void (*fn)(void *), void *ctx, int reps) {
    double t[64];
    if (reps > 64) reps = 64;
    fn(ctx);
    fn(ctx);
    for (int r = 0; r < reps; r++) {
        double t0 = cpu_now();
        fn(ctx);
        t[r] = cpu_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
    return t[reps / 2];
}

/* The optimizer alone on fixed gradients: optax_step (the fused pass for adam) against
 * optax_update + optax_apply_updates (three passes), same params, state and gradients. */
typedef struct {
    const optax_tx *tx;
    const lx_tree *grads;
    lx_tree *params, *state;
    bool fused, failed;
} opt_job;

static void opt_step(void *ctx) {
    opt_job *o = ctx;
    if (o->failed) return;
    if (o->fused) {
        o->failed = optax_step(o->tx, o->grads, &o->params, &o->state) != LX_OK;
        return;
    }
    lx_tree *upd = NULL, *ns = NULL, *np = NULL;
    o->failed = optax_update(o->tx, o->grads, o->state, o->params, &upd, &ns) != LX_OK ||
                optax_apply_updates(o->params, upd, &np) != LX_OK;
    lx_tree_release(upd);
    if (o->failed) {
        lx_tree_release(ns);
        return;
    }
    lx_tree_release(o->params);
    lx_tree_release(o->state);
    o->params = np;
    o->state = ns;
}

/* Median process CPU seconds per call of fn, over reps samples of `inner` calls each. */
static double cpu_median_per_call(void (*fn)(void *), void *ctx, int reps, int inner) {
    double t[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < inner; i++) fn(ctx);
    for (int r = 0; r < reps; r++) {
        double t0 = cpu_now();
        for (int i = 0; i < inner; i++) fn(ctx);
        t[r] = (cpu_now() - t0) / inner;
    }
    qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
    return t[reps / 2];
}

/* ------------------------------------------------------------------ torch, in rounds
 * The PyTorch side is one python process, bench/torch_rounds.py, that imports the peer script by
 * path and answers each request (a workload name on its stdin) with the peer's own function: the
 * peer's warm-up and reps, the median of its reps, in seconds. It stays alive for the whole run,
 * so a workload's rounds alternate torch and linnx back to back and a slow minute of the machine
 * falls on both sides (a noisy host moves one step by up to 2x between runs). */

typedef struct {
    pid_t pid;
    FILE *to, *from;
} torch_proc;

static void torch_stop(torch_proc *tp) {
    if (tp->to) fclose(tp->to);
    if (tp->from) fclose(tp->from);
    if (tp->pid > 0) waitpid(tp->pid, NULL, 0);
    tp->to = tp->from = NULL;
    tp->pid = -1;
}

/* Starts the driver with LX_THREADS = threads; false (and a `#` line saying why) when the peer
 * script, the driver or torch is missing. Call before any thread exists (it sets LX_THREADS in
 * this process's environment, for the child, before fork). */
static bool torch_start(int threads, torch_proc *tp) {
    memset(tp, 0, sizeof *tp);
    tp->pid = -1;
    const char *peer = getenv("LINNX_TORCH_PEER");
    if (!peer) peer = "../shared/peers/torch_peer.py";
    char drv[1024];
    const char *driver = getenv("LINNX_TORCH_ROUNDS");
    if (!driver || !*driver) { /* beside this source file */
        const char *f = __FILE__, *slash = strrchr(f, '/');
        snprintf(drv, sizeof drv, "%.*storch_rounds.py", slash ? (int)(slash - f + 1) : 0, f);
        driver = drv;
    }
    if (access(peer, R_OK) != 0 || access(driver, R_OK) != 0) {
        printf("# torch peer script (%s) or its driver (%s) not found: vs_torch skipped\n", peer, driver);
        return false;
    }
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        printf("# python3-torch not importable: vs_torch skipped\n");
        return false;
    }
    char t[16];
    snprintf(t, sizeof t, "%d", threads);
    setenv("LX_THREADS", t, 1);
    int in[2], out[2];
    if (pipe(in) != 0) return false;
    if (pipe(out) != 0) {
        close(in[0]), close(in[1]);
        return false;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execl("/usr/bin/python3", "python3", driver, peer, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        close(in[1]), close(out[0]);
        return false;
    }
    tp->pid = pid;
    tp->to = fdopen(in[1], "w");
    tp->from = fdopen(out[0], "r");
    if (!tp->to) close(in[1]); /* else python would never see EOF and torch_stop's wait would hang */
    if (!tp->from) close(out[0]);
    char line[256];
    if (!tp->to || !tp->from || !fgets(line, sizeof line, tp->from) || strncmp(line, "ready", 5) != 0) {
        printf("# torch driver %s did not start: vs_torch skipped\n", driver);
        torch_stop(tp);
        return false;
    }
    return true;
}

/* The peer's median seconds per step of one workload, timed now; -1 when not available. */
static double torch_time(torch_proc *tp, const char *name) {
    if (!tp->to) return -1;
    char line[256], got[64];
    double s;
    if (fprintf(tp->to, "%s\n", name) < 0 || fflush(tp->to) != 0 || !fgets(line, sizeof line, tp->from)) {
        torch_stop(tp);
        return -1;
    }
    return sscanf(line, "%63s %lf", got, &s) == 2 && !strcmp(got, name) && s > 0 ? s : -1;
}

enum { MAX_ROUNDS = 32 };
static int g_rounds = 5;       /* LINNX_BENCH_ROUNDS */
static double g_peak_gflops;   /* one thread's FMA peak in this run, times the thread count */

/* One of our timings in the rounds: fn(ctx) with bench_median's warm-up (first round; one call
 * in the later ones), reps and inner repetitions; t[r] is round r's median. */
typedef struct {
    void (*fn)(void *);
    void *ctx;
    int warmup, reps, inner;
    double t[MAX_ROUNDS];
} side;

/* g_rounds rounds of workload `name`: torch once and each of ours once per round, torch first
 * in even rounds and last in odd ones (a drift of the machine within a round then favours
 * neither side); theirs[r] is the peer's median of round r (-1: not measured). */
static void run_rounds(torch_proc *tp, const char *name, side *s, int ns, double *theirs) {
    for (int r = 0; r < g_rounds; r++) {
        if (r % 2 == 0) theirs[r] = torch_time(tp, name);
        for (int i = 0; i < ns; i++) s[i].t[r] = bench_median(s[i].fn, s[i].ctx, r == 0 ? s[i].warmup : 1, s[i].reps, s[i].inner);
        if (r % 2 == 1) theirs[r] = torch_time(tp, name);
    }
}

/* The fastest of the rounds' medians (best) and the median of them; -1 when no round measured. */
static double rounds_best(const double *t, int n) {
    double b = -1;
    for (int i = 0; i < n; i++)
        if (t[i] > 0 && (b < 0 || t[i] < b)) b = t[i];
    return b;
}
static double rounds_median(const double *t, int n) {
    double v[MAX_ROUNDS];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (t[i] > 0) v[k++] = t[i];
    if (!k) return -1;
    qsort(v, (size_t)k, sizeof *v, bench_cmp_double);
    return k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
}

/* `<name> ms` (our best round), `torch_ms` (torch's best round), `vs_torch` (their ratio), then
 * `vs_torch_rounds`, `vs_torch_median` (the ratio of the rounds' medians) and, where flops > 0,
 * `gflop_per_step`, `frac_peak` and `torch_frac_peak` (each side's best step against this run's
 * FMA peak). */
static void report(const char *name, const double *ours, const double *theirs, double flops) {
    double ob = rounds_best(ours, g_rounds), tb = rounds_best(theirs, g_rounds);
    printf("%s ms %.4f\n", name, ob * 1e3);
    if (tb > 0) {
        printf("%s torch_ms %.4f\n%s vs_torch %.3f\n", name, tb * 1e3, name, ob / tb);
        printf("%s vs_torch_rounds %d\n%s vs_torch_median %.3f\n", name, g_rounds, name,
               rounds_median(ours, g_rounds) / rounds_median(theirs, g_rounds));
    } else {
        printf("%s vs_torch skipped\n", name);
    }
    if (flops > 0 && g_peak_gflops > 0) {
        printf("%s gflop_per_step %.6g\n%s frac_peak %.3f\n", name, flops / 1e9, name, flops / ob / (g_peak_gflops * 1e9));
        if (tb > 0) printf("%s torch_frac_peak %.3f\n", name, flops / tb / (g_peak_gflops * 1e9));
    }
    fflush(stdout);
}

/* FLOPs of one step (multiply-adds x 2 of the matmuls, convolutions and attention products;
 * elementwise work, norms, softmax and the optimizer not counted). A backward pass forms dW of
 * every layer (as many FLOPs as its forward) and dX of every layer but the first: the input
 * needs no gradient, and neither linnx (the tape asks only for wanted cotangents) nor torch
 * computes it.
 *
 * mlp_train, B = 128, 784-512-512-10:
 *   forward 2 B (784*512 + 512*512 + 512*10) = 2*128*668672            = 171.18 M
 *   dW      the same                                                   = 171.18 M
 *   dX      2 B (512*512 + 512*10), layers 2 and 3 = 2*128*267264      =  68.42 M
 *   step                                                               = 410.78 M
 * cnn_train, B = 64, 28x28 (784 positions), 3x3 taps, same padding:
 *   conv1   2 B 784 * 32 * (9*1)  = 28.90 M;  conv2 2 B 784 * 64 * (9*32) = 1849.69 M
 *   dense   2 B (64*14*14) * 10   = 16.06 M;  forward                      = 1894.65 M
 *   dW      1894.65 M;  dX of conv2 and dense (not conv1): 1849.69 + 16.06 = 1865.75 M
 *   step                                                               = 5655.06 M
 * lm_train, N = B T = 16*64 = 1024 tokens, d = 128, 4 heads of 32, MLP 512, 2 blocks, vocab 256:
 *   per block: q, k, v, o 4 * 2 N d d = 134.22 M; up, down 2 * 2 N d 4d = 268.44 M;
 *              QK^T and PV 2 * 2 B heads T T 32 = 33.55 M (the full T x T square, causal or not)
 *   forward 2 * 436.21 + head 2 N d 256 (67.11 M)                      =  939.52 M
 *   backward: dW and dX of every product (the embedding's input is the gather's, whose dX is the
 *             embedding's gradient; attention's two products have four) = 2 * 939.52 M
 *   step                                                               = 2818.57 M
 * mlp_infer_small, batch 1, 64-64-10, forward only: 2 (64*64 + 64*10)   = 9472 */
static double mlp_train_flops(void) {
    double B = 128, fwd = 2 * B * (784.0 * 512 + 512.0 * 512 + 512.0 * 10);
    return 2 * fwd + 2 * B * (512.0 * 512 + 512.0 * 10);
}
static double cnn_train_flops(void) {
    double B = 64, P = 28 * 28, c1 = 2 * B * P * 32 * 9, c2 = 2 * B * P * 64 * (9 * 32), fc = 2 * B * (64 * 14 * 14) * 10;
    return 2 * (c1 + c2 + fc) + c2 + fc;
}
static double lm_train_flops(void) {
    double N = (double)LM_B * LM_T, d = LM_D, hd = (double)LM_D / LM_HEADS;
    double block = 4 * 2 * N * d * d + 2 * 2 * N * d * 4 * d + 2 * 2 * (double)LM_B * LM_HEADS * LM_T * LM_T * hd;
    return 3 * (LM_LAYERS * block + 2 * N * d * LM_VOCAB);
}
static double mlp_infer_small_flops(void) { return 2.0 * (64 * 64 + 64 * 10); }

/* ------------------------------------------------------------------ main */

typedef struct {
    linen_module *m;
    lx_tree *vars;
    lx_value xv;
} infer;

static void infer_linen(void *ctx) {
    infer *c = ctx;
    size_t mark = lx_pool_open();
    lx_value out = lx_none();
    lx_call call = {1, &c->xv, 0, NULL};
    linen_apply(c->m, c->vars, &call, LINEN_NO_RNGS, NULL, &out, NULL);
    lx_value_free(&out);
    lx_pool_close(mark);
}

typedef struct {
    nnx_module *m;
    lx_array *x;
} infer_nnx;

static void infer_nnx_call(void *ctx) {
    infer_nnx *c = ctx;
    size_t mark = lx_pool_open();
    nnx_call_array(c->m, c->x);
    lx_pool_close(mark);
}

static lx_status small_nnx_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs);
typedef struct {
    nnx_module base;
    nnx_module *l1, *l2;
} small_nnx;
static lx_status small_nnx_call(nnx_module *m, const lx_call *c, lx_value *out) {
    small_nnx *s = (small_nnx *)m;
    lx_array *x;
    LX_TRY(lx_call_array(c, 0, "x", &x));
    return linen_return_array(out, nnx_linear_forward((nnx_linear *)s->l2, lx_relu(nnx_linear_forward((nnx_linear *)s->l1, x))));
}
static const nnx_field SMALL_NNX_FIELDS[] = {NNX_CHILD(small_nnx, l1), NNX_CHILD(small_nnx, l2)};
static const nnx_method SMALL_NNX_METHODS[] = {{"__call__", small_nnx_call}};
static const nnx_type SMALL_NNX = {.name = "MLP", .size = sizeof(small_nnx), .init = small_nnx_init,
                                   .fields = SMALL_NNX_FIELDS, .nfields = 2, .methods = SMALL_NNX_METHODS,
                                   .nmethods = 1};
static lx_status small_nnx_init(nnx_module *m, const lx_call *c, nnx_rngs *rngs) {
    (void)c;
    small_nnx *s = (small_nnx *)m;
    LX_TRY(nnx_linear_new(64, 64, rngs, (nnx_linear **)&s->l1));
    return nnx_linear_new(64, 10, rngs, (nnx_linear **)&s->l2);
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
    int threads = bench_threads(2);
    const char *re = getenv("LINNX_BENCH_ROUNDS");
    if (re && atoi(re) >= 1) g_rounds = atoi(re) > MAX_ROUNDS ? MAX_ROUNDS : atoi(re);
    signal(SIGPIPE, SIG_IGN); /* a driver that died answers EOF, not a signal */
    torch_proc tp;
    bool have_torch = torch_start(threads, &tp); /* before any thread of ours exists */
    lx_set_num_threads(threads);
    int level = lx_isa_current() >= LX_ISA_AVX512 ? 2 : lx_isa_current() >= LX_ISA_AVX2 ? 1 : 0;
    double peak1 = bench_fma_peak_gflops(level, 20);
    printf("# training workloads, %d threads (LINNX_THREADS or LX_THREADS); torch from %s (%s)\n"
           "# %d rounds alternating torch and linnx per workload (LINNX_BENCH_ROUNDS); each side's figure is the best\n"
           "# of its rounds' medians; frac_peak: FLOPs per step / best step time / (one thread's FMA peak x %d)\n",
           threads, getenv("LINNX_TORCH_PEER") ? getenv("LINNX_TORCH_PEER") : "../shared/peers/torch_peer.py",
           have_torch ? "running" : "absent", g_rounds, threads);
    printf("fma_peak_t1 gflops %.2f\n", peak1);
    g_peak_gflops = peak1 * threads;
    double theirs[MAX_ROUNDS];
    lx_key k = lx_key_from_seed(42);

    if (!only || !strcmp(only, "mlp_train")) {
        job j;
        if (job_init(&j, "mlp_train", &MLP, lx_retain(lx_random_normal(lx_key_fold_in(k, 0), 2, (int64_t[]){128, 784})),
                     lx_retain(lx_random_randint(lx_key_fold_in(k, 1), 1, (int64_t[]){128}, 0, 10)),
                     optax_adam(OPTAX_CONST(1e-3), NULL))) {
            side sd = {train_step, &j, 3, 20, 1, {0}};
            run_rounds(&tp, "mlp_train", &sd, 1, theirs);
            double fwd = bench_median(forward_only, &j, 3, 20, 1);
            double vag = bench_median(value_and_grad_only, &j, 3, 20, 1);
            /* the same ratio on one thread in process CPU time: robust to a loaded machine */
            lx_set_num_threads(1);
            double fwd1 = cpu_median(forward_only, &j, 10), vag1 = cpu_median(value_and_grad_only, &j, 10);
            double step1 = cpu_median(train_step, &j, 10);
            /* the fused optimizer pass against the unfused one, same gradients */
            double opt_f = -1, opt_u = -1;
            {
                size_t mark = lx_pool_open();
                lx_array *loss = NULL;
                lx_tree *grads = NULL;
                if (linen_value_and_grad(loss_fn, &j, j.state->params, &loss, &grads, NULL) == LX_OK) {
                    opt_job o[2];
                    for (int f = 0; f < 2; f++) {
                        o[f] = (opt_job){j.state->tx, grads, lx_tree_retain(j.state->params), NULL, f == 1, false};
                        o[f].failed = optax_init(j.state->tx, o[f].params, &o[f].state) != LX_OK;
                    }
                    opt_u = cpu_median(opt_step, &o[0], 10);
                    opt_f = cpu_median(opt_step, &o[1], 10);
                    for (int f = 0; f < 2; f++) {
                        if (o[f].failed && f) opt_f = -1;
                        if (o[f].failed && !f) opt_u = -1;
                        lx_tree_release(o[f].params);
                        lx_tree_release(o[f].state);
                    }
                }
                lx_release(loss);
                lx_tree_release(grads);
                lx_pool_close(mark);
            }
            lx_set_num_threads(threads);
            if (!j.failed) {
                report("mlp_train", sd.t, theirs, mlp_train_flops());
                printf("mlp_train forward_1thread_cpu_ms %.4f\nmlp_train value_and_grad_1thread_cpu_ms %.4f\n"
                       "mlp_train backward_over_forward_1thread_cpu %.3f\n",
                       fwd1 * 1e3, vag1 * 1e3, (vag1 - fwd1) / fwd1);
                printf("mlp_train step_1thread_cpu_ms %.4f\nmlp_train optimizer_1thread_cpu_ms %.4f\n", step1 * 1e3,
                       (step1 - vag1) * 1e3);
                if (opt_f > 0 && opt_u > 0)
                    printf("mlp_train adam_fused_1thread_cpu_ms %.4f\nmlp_train adam_unfused_1thread_cpu_ms %.4f\n"
                           "mlp_train adam_fused_over_unfused %.3f\n",
                           opt_f * 1e3, opt_u * 1e3, opt_f / opt_u);
                printf("mlp_train forward_ms %.4f\nmlp_train value_and_grad_ms %.4f\nmlp_train backward_over_forward %.3f\n",
                       fwd * 1e3, vag * 1e3, (vag - fwd) / fwd);
                train_step(&j); /* steady state: count one more step's allocations */
                g_allocs = g_bytes = 0;
                lx_set_alloc_hook(count_alloc, NULL);
                train_step(&j);
                lx_set_alloc_hook(NULL, NULL);
                printf("mlp_train allocs_per_step %zu\nmlp_train alloc_mb_per_step %.2f\n", g_allocs, g_bytes / 1048576.0);
#ifdef HAVE_MALLOC_COUNT
                g_mallocs = 0;
                g_count_mallocs = 1;
                train_step(&j);
                g_count_mallocs = 0;
                printf("mlp_train mallocs_per_step %zu\n", (size_t)g_mallocs);
#endif
            }
            job_free(&j);
        }
    }
    if (!only || !strcmp(only, "cnn_train")) {
        job j;
        if (job_init(&j, "cnn_train", &CNN,
                     lx_retain(lx_random_normal(lx_key_fold_in(k, 2), 4, (int64_t[]){64, 28, 28, 1})),
                     lx_retain(lx_random_randint(lx_key_fold_in(k, 3), 1, (int64_t[]){64}, 0, 10)),
                     optax_sgd(OPTAX_CONST(0.1), true, 0.9, false))) {
            side sd = {train_step, &j, 3, 10, 1, {0}};
            run_rounds(&tp, "cnn_train", &sd, 1, theirs);
            if (!j.failed) report("cnn_train", sd.t, theirs, cnn_train_flops());
            if (!j.failed && threads == 1) printf("cnn_train cpu_ms %.4f\n", 1e3 * cpu_median(train_step, &j, 7));
            job_free(&j);
        }
    }
    if (!only || !strcmp(only, "lm_train")) {
        job j;
        optax_adam_opts o = OPTAX_ADAMW_DEFAULTS;
        o.weight_decay = 0.01;
        if (job_init(&j, "lm_train", &LM,
                     lx_retain(lx_random_randint(lx_key_fold_in(k, 4), 2, (int64_t[]){LM_B, LM_T}, 0, LM_VOCAB)),
                     lx_retain(lx_random_randint(lx_key_fold_in(k, 5), 2, (int64_t[]){LM_B, LM_T}, 0, LM_VOCAB)),
                     optax_adamw(OPTAX_CONST(3e-4), &o))) {
            side sd = {train_step, &j, 3, 10, 1, {0}};
            run_rounds(&tp, "lm_train", &sd, 1, theirs);
            if (!j.failed) report("lm_train", sd.t, theirs, lm_train_flops());
            /* process CPU time per step: on a shared machine, time spent descheduled does not count */
            if (!j.failed && threads == 1) printf("lm_train cpu_ms %.4f\n", 1e3 * cpu_median(train_step, &j, 7));
            job_free(&j);
        }
    }
    if (!only || !strcmp(only, "mlp_infer_small")) {
        infer c = {0};
        lx_array *x = lx_retain(lx_random_normal(lx_key_fold_in(k, 6), 2, (int64_t[]){1, 64}));
        c.xv = lx_array_v(x);
        lx_call call = {1, &c.xv, 0, NULL};
        nnx_rngs *rngs = NULL;
        infer_nnx cn = {NULL, x};
        if (x && linen_module_new(&SMALL, NULL, &c.m) == LX_OK &&
            linen_init(c.m, LINEN_KEY(lx_key_from_seed(0)), &call, NULL, &c.vars) == LX_OK &&
            nnx_rngs_from_seed(0, &rngs) == LX_OK && nnx_module_new(&SMALL_NNX, NULL, rngs, &cn.m) == LX_OK) {
            side sd[2] = {{infer_linen, &c, 50, 5, 200, {0}}, {infer_nnx_call, &cn, 50, 5, 200, {0}}};
            run_rounds(&tp, "mlp_infer_small", sd, 2, theirs);
            report("mlp_infer_small", sd[0].t, theirs, mlp_infer_small_flops());
            double per_nnx = rounds_best(sd[1].t, g_rounds), tb = rounds_best(theirs, g_rounds);
            printf("mlp_infer_small_nnx ms %.4f\n", per_nnx * 1e3);
            if (tb > 0) printf("mlp_infer_small_nnx vs_torch %.3f\n", per_nnx / tb);
            /* process CPU time per call on this thread: what a loaded machine disturbs least */
            if (threads == 1)
                printf("mlp_infer_small cpu_us %.3f\nmlp_infer_small_nnx cpu_us %.3f\n",
                       cpu_median_per_call(infer_linen, &c, 9, 2000) * 1e6,
                       cpu_median_per_call(infer_nnx_call, &cn, 9, 2000) * 1e6);
        } else {
            fprintf(stderr, "# mlp_infer_small: %s\n", lx_last_error());
        }
        nnx_module_release(cn.m);
        if (rngs) nnx_rngs_release(rngs);
        lx_tree_release(c.vars);
        linen_module_release(c.m);
        lx_release(x);
    }
    torch_stop(&tp);
    lx_pool_drain();
    return 0;
}
