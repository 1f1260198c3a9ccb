/* A steady-state training step's memory (issue 14 §5): after the first step, steps 2..5 of a Linen
 * TrainState (adam) loop and of an nnx.Optimizer (adam) loop on the same MLP make ZERO heap
 * allocations of any kind - every malloc, calloc, realloc, aligned_alloc, posix_memalign and
 * memalign of the process, the library's included, counted by the replacements below - and zero
 * array data allocations (counted through lx_set_alloc_hook), and leave the live array count and
 * the autorelease pools where they were: nothing accumulates. Also the audit's configurations (a
 * Sequential MLP with adam by apply_gradients, donated sgd momentum, adamw and adam + BatchNorm,
 * init variables released after create) and a second NNX model in the same process.
 *
 * What makes it zero: the array storage cache (src/core/array.c) hands every op result, gradient
 * and new optimizer-state / parameter leaf the block of an array of the same size that an earlier
 * step released, and the fused optimizer step (src/train/optax_fused.c) writes the new params and
 * moments straight into such blocks; the library's per-thread block cache (src/core/heap.c)
 * serves tree nodes, keys, paths, frames and scopes from the blocks the step before freed; the
 * tape keeps its records' arena and one cleared tape per thread (src/ops/autodiff.c).
 * Sanitizer builds bypass the caches (so ASan/LSan see every block) and replace malloc
 * themselves: there the test checks that every step makes the same array data allocations as the
 * one before instead, and says so. LX_STEADY_TRACE=1 prints each array allocation's size;
 * LX_STEADY_TRACE=2 also prints a backtrace of each heap allocation (stderr; symbolize the
 * addresses with addr2line -f -e build/test_train_steady). */
#include <execinfo.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "linnx/autodiff.h"
#include "linnx/linen.h"
#include "linnx/linen_layers.h"
#include "linnx/losses.h"
#include "linnx/nnx_layers.h"
#include "linnx/train.h"
#include "linen_loss.h"
#include "lx_test.h"

enum { B = 4, IN = 8, HID = 16, OUT = 4 };

static size_t n_allocs, n_bytes;
static bool trace; /* LX_STEADY_TRACE=1: print each allocation's size */
static void hook(size_t nbytes, void *user) {
    (void)user;
    if (trace) printf(" %zu", nbytes);
    n_allocs++;
    n_bytes += nbytes;
}

/* Every heap allocation of the process, the library's included (the test links liblinnx
 * statically, and glibc lets a program replace malloc & co; these forward to glibc's own
 * allocator). Not under the sanitizers, whose runtimes replace malloc themselves. */
#define HEAP_COUNTED (!LX_TEST_ASAN)

void *lx_heap_malloc_(size_t n); /* the library's allocator front (src/core/heap.c) */
void lx_heap_free_(void *p);

static atomic_bool heap_on;
static atomic_size_t heap_allocs;
static int heap_trace; /* LX_STEADY_TRACE=2: a backtrace of each (stderr) */

#if HEAP_COUNTED
static _Thread_local bool in_trace;

static void heap_count(size_t n) {
    if (!atomic_load_explicit(&heap_on, memory_order_relaxed) || in_trace) return;
    atomic_fetch_add(&heap_allocs, 1);
    if (heap_trace) {
        in_trace = true;
        void *bt[24];
        int k = backtrace(bt, 24);
        char head[64];
        int m = snprintf(head, sizeof head, "heap allocation of %zu bytes:\n", n);
        if (write(2, head, (size_t)m) < 0) {}
        backtrace_symbols_fd(bt + 1, k - 1, 2);
        in_trace = false;
    }
}
#endif
#include "lx_heap_count.h"

static lx_array *mlp_call(linen_scope *s, lx_array *x) {
    return linen_dense(s, NULL, OUT, lx_relu(linen_dense(s, NULL, HID, x)));
}
static const linen_method MLP_M[] = {LINEN_ARRAY_METHOD("__call__", mlp_call)};
static const linen_type MLP = {.name = "MLP", .methods = MLP_M, .nmethods = 1};

static bool linen_step(ctx *c, linen_train_state **s) {
    size_t mark = lx_pool_open();
    lx_array *loss = NULL;
    lx_tree *grads = NULL;
    linen_train_state *next = NULL;
    bool ok = linen_value_and_grad(linen_mean_loss, c, (*s)->params, &loss, &grads, NULL) == LX_OK &&
              linen_train_state_apply_gradients(*s, grads, &next) == LX_OK;
    if (ok) {
        linen_train_state_free(*s);
        *s = next;
    }
    lx_release(loss);
    lx_tree_release(grads);
    lx_pool_close(mark);
    return ok;
}

static lx_array *data_x(void) { return lx_retain(lx_random_normal(lx_key_from_seed(1), 2, (int64_t[]){B, IN})); }
static lx_array *data_y(void) {
    return lx_array_from_data(LX_I32, 1, (int64_t[]){B}, (const int32_t[]){0, 3, 1, 2});
}

/* Steps 2..5 allocate nothing (with the storage cache) and leave nothing behind. */
typedef bool (*step_fn)(void *);
static void check_steady(const char *name, step_fn step, void *arg) {
    lx_test_current = name;
    CHECK(step(arg)); /* the first step (fills the caches) */
    size_t counts[4], bytes[4], heap[4];
    int64_t live0 = lx_array_live_count();
    size_t pool0 = lx_pool_size();
    for (int i = 0; i < 4; i++) {
        n_allocs = n_bytes = 0;
        if (trace) printf("%s step %d:", name, i + 2);
        lx_set_alloc_hook(hook, NULL);
        atomic_store(&heap_allocs, 0);
        atomic_store(&heap_on, true);
        bool ok = step(arg);
        atomic_store(&heap_on, false);
        heap[i] = atomic_load(&heap_allocs);
        lx_set_alloc_hook(NULL, NULL);
        if (trace) printf("\n");
        CHECK(ok);
        counts[i] = n_allocs;
        bytes[i] = n_bytes;
        CHECK_EQ_INT(lx_array_live_count(), live0);
        CHECK_EQ_INT(lx_pool_size(), pool0);
    }
    CHECK_EQ_INT(lx_array_cache_enabled(), !LX_TEST_ASAN); /* only the sanitizer build bypasses it */
    if (lx_array_cache_enabled()) {
        for (int i = 0; i < 4; i++)
            LX_TEST_REPORT_(counts[i] == 0, "step %d makes %zu array data allocations (%zu bytes); want 0", i + 2,
                            counts[i], bytes[i]);
        printf("%s: steps 2..5 make %zu, %zu, %zu, %zu array data allocations\n", name, counts[0], counts[1],
               counts[2], counts[3]);
        if (HEAP_COUNTED) {
            for (int i = 0; i < 4; i++)
                LX_TEST_REPORT_(heap[i] == 0, "step %d makes %zu heap allocations; want 0", i + 2, heap[i]);
            printf("%s: steps 2..5 make %zu, %zu, %zu, %zu heap allocations (malloc, calloc, realloc, "
                   "aligned)\n", name, heap[0], heap[1], heap[2], heap[3]);
        }
    } else {
        for (int i = 2; i < 4; i++) {
            CHECK_EQ_INT(counts[i], counts[1]);
            CHECK_EQ_INT(bytes[i], bytes[1]);
        }
        printf("%s: zero-allocation check skipped: this build bypasses the array storage cache (sanitizers); "
               "a step makes %zu array data allocations, %zu bytes, the same every step\n",
               name, counts[3], bytes[3]);
    }
}

static bool linen_step_cb(void *p) {
    void **a = p;
    return linen_step(a[0], (linen_train_state **)&a[1]);
}

static void test_linen_train_state(void) {
    ctx c = {NULL, data_x(), data_y(), optax_softmax_cross_entropy_with_integer_labels};
    lx_tree *vars = NULL;
    linen_train_state *s = NULL;
    CHECK_EQ_INT(linen_module_new(&MLP, NULL, &c.m), LX_OK);
    CHECK_EQ_INT(linen_init(c.m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(c.x), NULL, &vars), LX_OK);
    CHECK_EQ_INT(linen_train_state_create(c.m, lx_tree_get(vars, "params")->u.tree, optax_adam(OPTAX_CONST(1e-3), NULL), &s),
                 LX_OK);
    /* the state holds the params from here on, as in `state = TrainState.create(...)` followed by
     * `del variables`. (A caller that keeps the initial variables pins one params-sized set of
     * blocks, and step 2 then allocates that set once.) */
    lx_tree_release(vars);
    void *args[2] = {&c, s};
    if (s) check_steady("linen TrainState + adam", linen_step_cb, args);
    linen_train_state_free(args[1]);
    linen_module_release(c.m);
    lx_release(c.x);
    lx_release(c.y);
}

/* The audit's configurations (issue 14 §5): a Sequential MLP (Dense, [BatchNorm,] relu, Dense),
 * squared error, a TrainState from an optax expression, the init variables released after
 * create; steps by apply_gradients (a new state each step) or apply_gradients_donated, BatchNorm's
 * batch_stats carried from step to step as the Flax examples do. Each builds its model in the same
 * process after the ones before, so the caches it starts from are what those left. */
typedef struct {
    linen_module *m;
    lx_array *x, *y;
    lx_tree *stats; /* batch_stats, or NULL */
    linen_train_state *s;
    bool donated;
} seq_ctx;

static lx_status seq_loss(const lx_tree *params, void *user, lx_array **loss, lx_tree **aux) {
    seq_ctx *c = user;
    lx_tree *vars = lx_tree_new();
    lx_status st = vars ? lx_tree_set(vars, "params", lx_tree_v((lx_tree *)params)) : lx_last_status();
    if (st == LX_OK && c->stats) st = lx_tree_set(vars, "batch_stats", lx_tree_v(c->stats));
    lx_value out = lx_none();
    lx_tree *mut = NULL;
    linen_opts o = {.mutable = LINEN_MUTABLE("batch_stats"), .mutable_given = true};
    if (st == LX_OK)
        st = linen_apply(c->m, vars, LINEN_NO_RNGS, &LX_ARGS(c->x), c->stats ? &o : NULL, &out, c->stats ? &mut : NULL);
    lx_tree_release(vars);
    if (st == LX_OK) *loss = lx_mean(optax_squared_error(out.u.array, c->y), LX_ALL_AXES, false);
    if (st == LX_OK && !*loss) st = lx_last_status();
    lx_value_free(&out);
    if (aux) *aux = mut;
    else lx_tree_release(mut);
    return st;
}

static bool seq_step(void *p) {
    seq_ctx *c = p;
    size_t mark = lx_pool_open();
    lx_array *loss = NULL;
    lx_tree *grads = NULL, *aux = NULL;
    bool ok = linen_value_and_grad(seq_loss, c, c->s->params, &loss, &grads, c->stats ? &aux : NULL) == LX_OK;
    if (ok && c->donated) {
        ok = linen_train_state_apply_gradients_donated(&c->s, grads) == LX_OK;
    } else if (ok) {
        linen_train_state *next = NULL;
        ok = linen_train_state_apply_gradients(c->s, grads, &next) == LX_OK;
        if (ok) {
            linen_train_state_free(c->s);
            c->s = next;
        }
    }
    if (ok && aux) {
        const lx_value *bs = lx_tree_get(aux, "batch_stats");
        ok = bs && bs->kind == LX_V_TREE;
        if (ok) {
            lx_tree_release(c->stats);
            c->stats = lx_tree_retain(bs->u.tree);
        }
    }
    lx_release(loss);
    lx_tree_release(grads);
    lx_tree_release(aux);
    lx_pool_close(mark);
    return ok;
}

static void seq_case(const char *name, const char *opt, bool bn, bool donated) {
    seq_ctx c = {.donated = donated};
    float xv[B * IN], yv[B * OUT];
    for (int i = 0; i < B * IN; i++) xv[i] = sinf(0.7f * (float)i);
    for (int i = 0; i < B * OUT; i++) yv[i] = cosf(0.3f * (float)i);
    c.x = lx_array_from_f32(2, (int64_t[]){B, IN}, xv);
    c.y = lx_array_from_f32(2, (int64_t[]){B, OUT}, yv);
    linen_module *d1 = NULL, *d2 = NULL, *r = NULL, *b = NULL;
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &LX_CALL_KWARGS(LX_KW_INT("features", HID)), &d1), LX_OK);
    CHECK_EQ_INT(linen_module_new(&linen_relu, &LX_NO_CALL, &r), LX_OK);
    CHECK_EQ_INT(linen_module_new(&linen_Dense, &LX_CALL_KWARGS(LX_KW_INT("features", OUT)), &d2), LX_OK);
    if (bn) {
        CHECK_EQ_INT(linen_module_new(&linen_BatchNorm, &LX_CALL_KWARGS(LX_KW_BOOL("use_running_average", false)), &b),
                     LX_OK);
        CHECK_EQ_INT(linen_sequential_new(4, (linen_module *[]){d1, b, r, d2}, &c.m), LX_OK);
    } else {
        CHECK_EQ_INT(linen_sequential_new(3, (linen_module *[]){d1, r, d2}, &c.m), LX_OK);
    }
    lx_tree *vars = NULL;
    CHECK_EQ_INT(linen_init(c.m, LINEN_KEY(lx_key_from_seed(0)), &LX_ARGS(c.x), NULL, &vars), LX_OK);
    if (vars && bn) c.stats = lx_tree_retain((lx_tree *)lx_tree_get(vars, "batch_stats")->u.tree);
    optax_tx *tx = optax_from_string(opt);
    if (vars) CHECK_EQ_INT(linen_train_state_create(c.m, (lx_tree *)lx_tree_get(vars, "params")->u.tree, tx, &c.s), LX_OK);
    lx_tree_release(vars); /* `del variables` after TrainState.create */
    if (c.s) check_steady(name, seq_step, &c);
    linen_train_state_free(c.s);
    lx_tree_release(c.stats);
    linen_module_release(c.m);
    linen_module_release(d1);
    linen_module_release(d2);
    linen_module_release(r);
    linen_module_release(b);
    lx_release(c.x);
    lx_release(c.y);
}

static const struct {
    const char *name, *opt;
    bool bn, donated;
} SEQ_CASES[] = {
    {"Sequential adam apply_gradients", "adam(1e-2)", false, false},
    {"Sequential sgd momentum donated", "sgd(0.1, momentum=0.9)", false, true},
    {"Sequential adamw donated", "adamw(1e-2, weight_decay=0.1)", false, true},
    {"Sequential adam + BatchNorm donated", "adam(1e-2)", true, true},
    {"Sequential adam donated", "adam(1e-2)", false, true},
};
enum { NSEQ = sizeof SEQ_CASES / sizeof SEQ_CASES[0] };

static void test_linen_audit_cases(void) {
    for (int i = 0; i < NSEQ; i++) seq_case(SEQ_CASES[i].name, SEQ_CASES[i].opt, SEQ_CASES[i].bn, SEQ_CASES[i].donated);
}

typedef struct {
    nnx_module *m;
    nnx_optimizer *opt;
    lx_array *x, *y;
} nctx;

static lx_status nnx_loss(nnx_module *m, void *user, lx_array **loss) {
    nctx *c = user;
    *loss = lx_mean(optax_softmax_cross_entropy_with_integer_labels(nnx_call_array(m, c->x), c->y), LX_ALL_AXES, false);
    return *loss ? LX_OK : lx_last_status();
}

static bool nnx_step(void *p) {
    nctx *c = p;
    size_t mark = lx_pool_open();
    lx_array *loss = NULL;
    lx_tree *grads = NULL;
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    bool ok = nnx_value_and_grad(c->m, &param, nnx_loss, c, &loss, &grads) == LX_OK &&
              nnx_optimizer_update(c->opt, c->m, grads, NULL) == LX_OK;
    lx_release(loss);
    lx_tree_release(grads);
    lx_pool_close(mark);
    return ok;
}

static void nnx_case(const char *name) {
    nctx c = {NULL, NULL, data_x(), data_y()};
    nnx_rngs *r = NULL;
    nnx_module *l1 = NULL, *l2 = NULL;
    const nnx_filter param = NNX_OF_TYPE(&lx_Param);
    lx_call c1 = LX_CALL_ARGS(lx_int_v(IN), lx_int_v(HID)), c2 = LX_CALL_ARGS(lx_int_v(HID), lx_int_v(OUT));
    CHECK_EQ_INT(nnx_rngs_from_seed(0, &r), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&NNX_LINEAR_TYPE, &c1, r, &l1), LX_OK);
    CHECK_EQ_INT(nnx_module_new(&NNX_LINEAR_TYPE, &c2, r, &l2), LX_OK);
    lx_call cs = LX_CALL_ARGS(nnx_module_v(l1), nnx_fn_v(&NNX_RELU), nnx_module_v(l2));
    CHECK_EQ_INT(nnx_module_new(&NNX_SEQUENTIAL_TYPE, &cs, NULL, &c.m), LX_OK);
    CHECK_EQ_INT(nnx_optimizer_new(c.m, optax_adam(OPTAX_CONST(1e-3), NULL), &param, &c.opt), LX_OK);
    if (c.opt) check_steady(name, nnx_step, &c);
    nnx_optimizer_free(c.opt);
    nnx_module_release(c.m);
    nnx_module_release(l1);
    nnx_module_release(l2);
    nnx_rngs_release(r);
    lx_release(c.x);
    lx_release(c.y);
}

/* A second model trained in the same process starts from the caches the first one left. */
static void test_nnx_optimizer(void) {
    nnx_case("nnx.Optimizer + adam");
    nnx_case("nnx.Optimizer + adam, a second model");
}

/* The counter counts: a malloc of the test's own and one the library makes (a block too large for
 * its cache, so it goes to malloc) each show as one allocation, so a zero above is a real zero. */
static void test_counter_counts(void) {
    if (!HEAP_COUNTED) {
        printf("heap counter: not under the sanitizers (their runtimes replace malloc)\n");
        return;
    }
    void *(*volatile alloc)(size_t) = malloc; /* through a volatile pointer: the call stays */
    atomic_store(&heap_allocs, 0);
    atomic_store(&heap_on, true);
    void *own = alloc(40);
    size_t after_own = atomic_load(&heap_allocs);
    void *lib = lx_heap_malloc_((size_t)1 << 20);
    size_t after_lib = atomic_load(&heap_allocs);
    atomic_store(&heap_on, false);
    CHECK(own != NULL && lib != NULL);
    CHECK_EQ_INT(after_own, 1);
    CHECK_EQ_INT(after_lib, 2);
    free(own);
    lx_heap_free_(lib);
}

/* Case k alone in a fresh process (this program again with --case k): the caches start empty, as
 * in a training program that runs only it. The audit's step-2 mallocs showed only so. */
static void test_fresh_processes(void) {
    for (int k = 0; k <= NSEQ; k++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            char arg[16];
            snprintf(arg, sizeof arg, "%d", k);
            execl("/proc/self/exe", "test_train_steady", "--case", arg, (char *)NULL);
            _exit(127);
        }
        int status = 0;
        bool ok = pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        LX_TEST_REPORT_(ok, "case %d (%s) in a fresh process failed (status %d)", k,
                        k < NSEQ ? SEQ_CASES[k].name : "two NNX models", status);
    }
}

int main(int argc, char **argv) {
    const char *tr = getenv("LX_STEADY_TRACE");
    trace = tr != NULL;
    heap_trace = tr && atoi(tr) >= 2;
    if (heap_trace) { /* load libgcc's unwinder now, not inside a counted step */
        void *bt[4];
        backtrace(bt, 4);
    }
    if (argc == 3 && !strcmp(argv[1], "--case")) {
        int k = atoi(argv[2]);
        if (k >= 0 && k < NSEQ) seq_case(SEQ_CASES[k].name, SEQ_CASES[k].opt, SEQ_CASES[k].bn, SEQ_CASES[k].donated);
        else RUN(test_nnx_optimizer);
        return lx_test_finish();
    }
    RUN(test_counter_counts);
    RUN(test_linen_train_state);
    RUN(test_nnx_optimizer);
    RUN(test_linen_audit_cases);
    RUN(test_fresh_processes);
    return lx_test_finish();
}
