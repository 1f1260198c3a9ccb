/* Data-parallel training over MPI (include/linnx/distributed.h). Compiled with or without MPI:
 * without LINNX_HAVE_MPI the collectives report LX_ERR_UNSUPPORTED. */
#include "linnx/distributed.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "linnx/array.h"
#include "linnx/autodiff.h"
#include "linnx/box.h"
#include "linnx/ops.h"
#include "linnx/threads.h"
#include "data_internal.h"
#include "linnx/value.h"
#include "linnx/variable.h"
#include "../core/status_internal.h"
#include "optax_internal.h"

#ifdef LINNX_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
static bool g_inited = false;
static int64_t g_step = 0;
static double g_timeout = 60.0;
static size_t g_bucket = (size_t)256 << 10;
static double g_wait = 0.0;
#ifdef LINNX_HAVE_MPI /* the waits' tuning: only the MPI build waits (unused without it, and -Werror) */
static double g_spin = 0.05;  /* seconds a wait polls back to back (LINNX_DIST_SPIN_US) */
static long g_nap_ns = 200000; /* then the pause between polls (LINNX_DIST_NAP_US) */
#endif

bool lx_dist_available(void) {
#ifdef LINNX_HAVE_MPI
    return true;
#else
    return false;
#endif
}

const char *lx_dist_axis_name(void) { return "data"; }
int lx_dist_rank(void) { return g_rank; }
int lx_dist_size(void) { return g_size; }
bool lx_dist_active(void) { return g_inited && g_size > 1; }
void lx_dist_set_step(int64_t step) { g_step = step; }


lx_status lx_dist_set_timeout(double seconds) {
    /* finite: an infinite deadline is a hang waiting to happen (1e9 s is 31 years) */
    if (!(seconds > 0 && seconds <= 1e9))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: timeout %g is not in (0, 1e9] seconds", seconds);
    g_timeout = seconds;
    return LX_OK;
}

lx_status lx_dist_set_bucket_bytes(size_t bytes) {
    if (bytes < 4) return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: bucket of %zu bytes is under one float32", bytes);
    g_bucket = bytes;
    return LX_OK;
}

static double g_overlap = 0.0, g_early_bytes = 0.0, g_comm_bytes = 0.0;

double lx_dist_take_wait_seconds(void) {
    double w = g_wait;
    g_wait = 0;
    return w;
}

void lx_dist_take_stats(lx_dist_stats *s) {
    if (s) {
        s->wait_s = g_wait;
        s->overlap_s = g_overlap;
        s->bytes = g_comm_bytes;
        s->early_bytes = g_early_bytes;
    }
    g_wait = g_overlap = g_early_bytes = g_comm_bytes = 0;
}

lx_status lx_dist_shard_range(int64_t batch, int rank, int size, int64_t *start, int64_t *len) {
    if (!start) return lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_dist_shard_range: start is NULL");
    if (!len) return lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_dist_shard_range: len is NULL");
    if (size < 1 || rank < 0 || rank >= size || batch < 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: bad shard arguments (rank %d of %d, batch %lld)", rank, size,
                       (long long)batch);
    if (batch % size != 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "distributed: a global batch of %lld rows does not divide evenly over %d ranks of the '%s' axis",
                       (long long)batch, size, lx_dist_axis_name());
    *len = batch / size;
    *start = (int64_t)rank * *len;
    return LX_OK;
}

lx_array *lx_dist_pmean(lx_array *x, const char *axis_name) {
    if (!x) { /* a failed input's error stands (status.h); with none pending, the NULL is reported */
        lx_null_input("lx_dist_pmean: x is NULL");
        return NULL;
    }
    if (!axis_name || strcmp(axis_name, lx_dist_axis_name()) != 0) {
        lx_fail(LX_ERR_NOT_FOUND, "unbound axis name: %s (the data-parallel mesh axis is '%s')",
                axis_name ? axis_name : "None", lx_dist_axis_name());
        return NULL;
    }
    if (x->dtype != LX_F32) {
        lx_fail(LX_ERR_DTYPE, "distributed: pmean of a %s array (float32 only)", lx_dtype_name(x->dtype));
        return NULL;
    }
    if (!lx_dist_active()) return x; /* one rank: its own mean (and the identity's gradient) */
    /* the pmean primitive: the all-reduce through pmean_hook below, and its VJP the same
     * all-reduce of the cotangent (ops.h) */
    return lx_pmean(x, axis_name);
}

bool lx_dist_batcher_next(lx_batcher *b, int narrays, lx_array *const *arrays, lx_array **outs) {
    if (lx_batcher_check_next_("lx_dist_batcher_next", b, narrays, arrays, outs) != LX_OK) return false;
    if (b->next >= b->nbatches) return false;
    int64_t len, start, slen;
    const int32_t *idx = lx_batcher_indices(b, b->next, &len);
    if (lx_dist_shard_range(len, g_rank, g_size, &start, &slen) != LX_OK) { /* outs NULL, as lx_batcher_next's */
        for (int j = 0; j < narrays; j++) outs[j] = NULL;
        return false;
    }
    lx_array *ia = lx_autorelease(lx_array_from_data(LX_I32, 1, &slen, idx + start));
    for (int k = 0; k < narrays; k++) {
        outs[k] = ia ? lx_take(arrays[k], ia, 0) : NULL;
        if (!outs[k]) {
            for (int j = 0; j < narrays; j++) outs[j] = NULL;
            return false;
        }
    }
    b->next++;
    return true;
}

#ifndef LINNX_HAVE_MPI

static lx_status unsupported(const char *what) {
    return lx_fail(LX_ERR_UNSUPPORTED,
                   "distributed: %s needs MPI, and this linnx was built without it (install libopenmpi-dev and "
                   "rebuild)", what);
}
lx_status lx_dist_init(int *argc, char ***argv, int *rank, int *size) {
    (void)argc, (void)argv;
    if (rank) *rank = 0; /* one process: rank 0 of 1, as lx_dist_rank / lx_dist_size say */
    if (size) *size = 1;
    return unsupported("lx_dist_init");
}
lx_status lx_dist_finalize(void) { return LX_OK; }
lx_status lx_dist_allreduce_mean(const lx_tree *t, lx_tree **out) {
    if (!out) return lx_null_out("lx_dist_allreduce_mean");
    if (!t) return lx_null_input("lx_dist_allreduce_mean: t is NULL");
    *out = NULL;
    return unsupported("lx_dist_allreduce_mean");
}
lx_status lx_dist_allreduce_f32(float *buf, int64_t n, bool mean) { return unsupported("lx_dist_allreduce_f32"); }
lx_status lx_dist_overlap_begin(void) { return unsupported("lx_dist_overlap_begin"); }
lx_status lx_dist_overlap_end(const lx_tree *grads, lx_tree **out) {
    if (out) *out = NULL;
    return unsupported("lx_dist_overlap_end");
}
lx_status lx_dist_broadcast_tree(lx_tree *t, int root) { return unsupported("lx_dist_broadcast_tree"); }
lx_status lx_dist_check(lx_status local) { return local == LX_OK ? unsupported("lx_dist_check") : local; }

lx_status lx_dist_zero1_new(optax_tx *tx, const lx_tree *params, lx_dist_zero1 **out) {
    optax_tx_release(tx);
    if (out) *out = NULL;
    return unsupported("lx_dist_zero1_new");
}
lx_status lx_dist_zero1_begin(lx_dist_zero1 *z, const lx_tree *params) { return unsupported("lx_dist_zero1_begin"); }
lx_status lx_dist_zero1_step(lx_dist_zero1 *z, const lx_tree *grads, lx_tree **params) {
    return unsupported("lx_dist_zero1_step");
}
int64_t lx_dist_zero1_owned(const lx_dist_zero1 *z, int64_t *total) {
    if (total) *total = 0;
    return 0;
}
const lx_tree *lx_dist_zero1_state(const lx_dist_zero1 *z) { return NULL; }
int64_t lx_dist_zero1_state_bytes(const lx_dist_zero1 *z) { return 0; }
lx_status lx_dist_zero1_gather_state(const lx_dist_zero1 *z, const lx_tree *params, lx_tree **out) {
    if (out) *out = NULL;
    return unsupported("lx_dist_zero1_gather_state");
}
lx_status lx_dist_zero1_load_state(lx_dist_zero1 *z, const lx_tree *full) { return unsupported("lx_dist_zero1_load_state"); }
void lx_dist_zero1_free(lx_dist_zero1 *z) {}

#else

static bool g_we_init = false;

/* "at step S", or "before the first step" for a negative step (setup: lx_dist_set_step(-1)). */
static const char *step_words(char *buf, size_t cap) {
    if (g_step < 0) return "before the first step";
    snprintf(buf, cap, "at step %lld", (long long)g_step);
    return buf;
}

/* An environment setting read strictly: unset leaves *out alone; otherwise the whole text must
 * be a decimal number in [lo, hi] (no trailing text, nothing strtod alone would take: inf, nan,
 * hex), else LX_ERR_INVALID_ARGUMENT naming the variable. */
static lx_status env_num(const char *name, double lo, double hi, double *out) {
    const char *t = getenv(name);
    if (!t) return LX_OK;
    const char *c = t + (*t == '+' || *t == '-');
    bool ok = *c >= '0' && *c <= '9';
    for (; ok && *c; c++) ok = (*c >= '0' && *c <= '9') || *c == '.' || *c == 'e' || *c == 'E' || *c == '+' || *c == '-';
    char *end = NULL;
    double v = ok ? strtod(t, &end) : 0;
    if (!ok || *end || !(v >= lo && v <= hi))
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: %s='%.40s' is not a number in %g..%g", name, t, lo, hi);
    *out = v;
    return LX_OK;
}
static void ov_release(void);
static MPI_Comm g_grad_comm = MPI_COMM_NULL;
/* the pmean primitive's all-reduces (sync batch-norm, forward and backward) on a communicator of
 * their own: a rank that failed before reaching one joins the status check instead, and a check
 * on the world must never be matched with (and summed into) a batch-norm moment */
static MPI_Comm g_pmean_comm = MPI_COMM_NULL;

/* lx_dist_allreduce_mean's scratch, kept between calls: the packed sums, each leaf's place and
 * the requests (a buffer whose reduction was abandoned at a deadline is set aside, never reused) */
static struct {
    float *buf;
    size_t cap;
    float **sums;
    size_t caps;
    MPI_Request *reqs;
    size_t capr;
} ar;

/* Ranks sharing this machine share its cores: unless LINNX_THREADS says otherwise, each of k local
 * ranks uses cores/k threads (2 ranks on 2 cores: 1 thread each), for linnx's thread pool and
 * OpenBLAS alike (threads.h), so ranks do not oversubscribe the cores. */
static void pin_threads(void) {
    const char *env = getenv("LINNX_THREADS");
    if (env && atoi(env) > 0) return;
    int local = 1;
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
    }
    lx_set_num_threads(0); /* the default: every core this process may use */
    int n = lx_num_threads() / (local > 0 ? local : 1);
    lx_set_num_threads(n > 0 ? n : 1);
}

/* The float32 array behind a leaf (an array or a Variable's value), or NULL. */
static lx_array *leaf_f32(const lx_value *v) {
    lx_array *a = NULL;
    if (v->kind == LX_V_ARRAY) a = v->u.array;
    else if (v->kind == LX_V_VARIABLE) a = lx_variable_get_value(v->u.var);
    else if (v->kind == LX_V_BOX) a = lx_box_unbox(v->u.box);
    return a && a->dtype == LX_F32 && !lx_is_abstract(a) ? a : NULL;
}

/* A leaf whose mean is taken: a float32 or bfloat16 array (or Variable value, box); NULL for the
 * others (integer leaves, abstract arrays), which are kept as they are. bfloat16 travels as float32:
 * packed widened (exact), summed in float32, the mean rounded back to bfloat16 (nearest even). */
static lx_array *leaf_float(const lx_value *v) {
    lx_array *a = NULL;
    if (v->kind == LX_V_ARRAY) a = v->u.array;
    else if (v->kind == LX_V_VARIABLE) a = lx_variable_get_value(v->u.var);
    else if (v->kind == LX_V_BOX) a = lx_box_unbox(v->u.box);
    return a && (a->dtype == LX_F32 || a->dtype == LX_BF16) && !lx_is_abstract(a) ? a : NULL;
}

static float bf16_widen(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t bf16_round(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if (f != f) return (uint16_t)((bits >> 16) | 0x0040u); /* a quiet NaN stays NaN */
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

/* n floats of a float leaf (float32 copied, bfloat16 widened) into dst; NULL a: zeros. */
static void pack_leaf(float *dst, const lx_array *a, int64_t n) {
    if (!a) memset(dst, 0, (size_t)n * sizeof *dst);
    else if (a->dtype == LX_F32) memcpy(dst, a->data, (size_t)n * sizeof *dst);
    else
        for (int64_t k = 0; k < n; k++) dst[k] = bf16_widen(((const uint16_t *)a->data)[k]);
}

/* Append r (a reduced leaf) at `path` in the kind of `orig`: an array, the same box (names,
 * metadata) or a Variable of the same type around it, as value_and_grad gives gradients. */
static lx_status append_like(lx_flat *g, const char *path, const lx_value *orig, lx_array *r) {
    lx_status st;
    if (orig->kind == LX_V_BOX) {
        lx_box *b = NULL;
        st = lx_box_replace_boxed(orig->u.box, r, &b);
        if (st == LX_OK) st = lx_flat_append(g, path, lx_box_v(b));
        lx_box_release(b);
    } else if (orig->kind == LX_V_VARIABLE) {
        lx_variable *v = NULL;
        st = lx_variable_copy(orig->u.var, &v);
        if (st == LX_OK) st = lx_variable_set_value(v, r, false);
        if (st == LX_OK) st = lx_flat_append(g, path, lx_var_v(v));
        lx_variable_release(v);
    } else
        st = lx_flat_append(g, path, lx_array_v(r));
    return st;
}

/* The mean tree of a flattened tree whose float leaves' sums over the ranks are at sums[i] (NULL for
 * the leaves leaf_float skips, kept as they are): each float leaf a new array of its dtype holding
 * sum / size, in the leaf's kind (append_like). */
static lx_status mean_tree(const lx_flat *f, float *const *sums, lx_tree **out) {
    lx_flat g = {0};
    lx_status st = LX_OK;
    float inv = 1.0f / (float)g_size;
    for (size_t i = 0; st == LX_OK && i < f->len; i++) {
        lx_array *a = leaf_float(&f->items[i].value);
        if (!a || !sums[i]) {
            st = lx_flat_append(&g, f->items[i].path, f->items[i].value);
            continue;
        }
        lx_array *r = lx_array_empty(a->dtype, a->ndim, a->shape);
        if (!r) {
            st = lx_last_status();
            break;
        }
        const float *s = sums[i];
        if (a->dtype == LX_F32) {
            float *d = lx_f32(r);
            for (int64_t k = 0; k < a->size; k++) d[k] = s[k] * inv; /* exact copy for one rank */
        } else {
            uint16_t *d = r->data;
            for (int64_t k = 0; k < a->size; k++) d[k] = bf16_round(s[k] * inv);
        }
        st = append_like(&g, f->items[i].path, &f->items[i].value, r);
        lx_release(r);
    }
    if (st == LX_OK) st = lx_tree_unflatten(&g, out);
    lx_flat_free(&g);
    return st;
}

/* Grow a scratch array to hold n elements of `elt` bytes (kept between calls: a step in steady
 * state allocates nothing here). */
static bool grow(void *pp, size_t *cap, size_t n, size_t elt) {
    void **p = pp;
    if (n <= *cap) return true;
    size_t nc = *cap ? *cap : 16;
    while (nc < n) nc *= 2;
    void *np = realloc(*p, nc * elt);
    if (!np) return false;
    *p = np, *cap = nc;
    return true;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static lx_status mpi_fail(const char *what, int rc) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
    char sw[40];
    return lx_fail(LX_ERR_IO, "distributed: %s failed on rank %d %s: %s", what, g_rank, step_words(sw, sizeof sw), msg);
}

static lx_status wait_all(int n, MPI_Request *reqs, const char *what);

/* pmean buffers whose all-reduce was abandoned at the deadline (still reachable: not a leak) */
static float *abandoned[8];
static int nab;

/* The pmean primitive's all-reduce (ops.h lx_set_pmean_hook): the mean over the 'data' axis. */
static lx_status pmean_hook(const char *axis_name, float *buf, int64_t n) {
    if (strcmp(axis_name, lx_dist_axis_name()) != 0)
        return lx_fail(LX_ERR_NOT_FOUND, "unbound axis name: %s (the data-parallel mesh axis is '%s')", axis_name,
                       lx_dist_axis_name());
    if (!g_inited) return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: pmean before lx_dist_init");
    if (n < 0 || (n > 0 && !buf) || n > 0x7fffffff) return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: bad buffer");
    /* through a buffer of our own: an all-reduce abandoned at the deadline may still complete
     * later (inside MPI_Finalize), and must not write into the caller's freed array; such a
     * buffer is never reused nor freed (the run is stopping) */
    static float *scratch;
    static int64_t cap;
    if (n > cap) {
        float *nb = malloc((size_t)n * sizeof(float));
        if (!nb) return lx_fail(LX_ERR_NO_MEMORY, "distributed: pmean: out of memory (%lld floats)", (long long)n);
        free(scratch);
        scratch = nb, cap = n;
    }
    if (n) memcpy(scratch, buf, (size_t)n * sizeof(float));
    MPI_Request req;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, scratch, (int)n, MPI_FLOAT, MPI_SUM, g_pmean_comm, &req);
    if (rc != MPI_SUCCESS) return mpi_fail("pmean all-reduce", rc);
    lx_status w = wait_all(1, &req, "pmean all-reduce");
    if (w != LX_OK) {
        if (nab < 8) abandoned[nab++] = scratch, scratch = NULL, cap = 0;
        return w;
    }
    for (int64_t i = 0; i < n; i++) buf[i] = scratch[i] / (float)g_size;
    return LX_OK;
}

lx_status lx_dist_init(int *argc, char ***argv, int *rank, int *size) {
    /* this process's place also when the call fails (rank 0 of 1 until MPI runs) */
    if (rank) *rank = g_rank;
    if (size) *size = g_size;
    if (!g_inited) {
        /* MPI cannot start again once finalised (any MPI call then aborts the process) */
        int fin = 0;
        MPI_Finalized(&fin);
        if (fin)
            return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: lx_dist_init after MPI was finalized (lx_dist_finalize "
                           "or the program's MPI_Finalize): MPI cannot be initialised twice in a process");
        /* the settings first: a bad one fails before MPI starts */
        double timeout = g_timeout, bucket = (double)g_bucket, spin = g_spin * 1e6, nap = (double)g_nap_ns * 1e-3;
        LX_TRY(env_num("LINNX_DIST_TIMEOUT", 1e-3, 1e9, &timeout));
        LX_TRY(env_num("LINNX_DIST_BUCKET_BYTES", 4, 1ull << 40, &bucket));
        LX_TRY(env_num("LINNX_DIST_SPIN_US", 0, 1e9, &spin));
        LX_TRY(env_num("LINNX_DIST_NAP_US", 0, 999999, &nap));
        int flag = 0;
        MPI_Initialized(&flag);
        if (!flag) {
            int rc = MPI_Init(argc, argv);
            if (rc != MPI_SUCCESS) return lx_fail(LX_ERR_IO, "distributed: MPI_Init failed (%d)", rc);
            g_we_init = true;
        }
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
        MPI_Comm_size(MPI_COMM_WORLD, &g_size);
        /* the overlapped gradient buckets travel on a communicator of their own, so a status
         * check (on the world) never matches a bucket a failing rank did not start */
        if (MPI_Comm_dup(MPI_COMM_WORLD, &g_grad_comm) != MPI_SUCCESS) g_grad_comm = MPI_COMM_WORLD;
        else MPI_Comm_set_errhandler(g_grad_comm, MPI_ERRORS_RETURN);
        if (MPI_Comm_dup(MPI_COMM_WORLD, &g_pmean_comm) != MPI_SUCCESS) g_pmean_comm = MPI_COMM_WORLD;
        else MPI_Comm_set_errhandler(g_pmean_comm, MPI_ERRORS_RETURN);
        pin_threads();
        g_timeout = timeout;
        g_bucket = (size_t)bucket; /* <= 2^40: the cast is defined */
        g_spin = spin * 1e-6;
        g_nap_ns = (long)(nap * 1e3);
        g_inited = true;
        if (g_size > 1) lx_set_pmean_hook(pmean_hook);
    }
    if (rank) *rank = g_rank;
    if (size) *size = g_size;
    return LX_OK;
}

lx_status lx_dist_finalize(void) {
    ov_release();
    free(ar.buf);
    free(ar.sums);
    free(ar.reqs);
    memset(&ar, 0, sizeof ar);
    if (g_inited && g_grad_comm != MPI_COMM_NULL && g_grad_comm != MPI_COMM_WORLD) MPI_Comm_free(&g_grad_comm);
    g_grad_comm = MPI_COMM_NULL;
    if (g_inited && g_pmean_comm != MPI_COMM_NULL && g_pmean_comm != MPI_COMM_WORLD) MPI_Comm_free(&g_pmean_comm);
    g_pmean_comm = MPI_COMM_NULL;
    if (g_inited && g_we_init) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
    }
    if (lx_get_pmean_hook() == pmean_hook) lx_set_pmean_hook(NULL);
    g_inited = g_we_init = false;
    g_rank = 0;
    g_size = 1;
    return LX_OK;
}

static lx_status need_init(const char *what) {
    if (!g_inited) return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: %s before lx_dist_init", what);
    return LX_OK;
}

/* Wait for n requests, polling with the deadline: never hangs past g_timeout. */
static lx_status wait_all(int n, MPI_Request *reqs, const char *what) {
    double t0 = now_s();
    for (;;) {
        int done = 0;
        int rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) {
            g_wait += now_s() - t0;
            return mpi_fail(what, rc);
        }
        if (done) break;
        if (now_s() - t0 > g_timeout) {
            g_wait += now_s() - t0;
            char sw[40];
            return lx_fail(LX_ERR_IO,
                           "distributed: %s on rank %d %s timed out after %g s (another rank stopped or died)", what,
                           g_rank, step_words(sw, sizeof sw), g_timeout);
        }
        /* MPI progresses a large message only inside MPI calls: poll back to back for the first
         * 50 ms (yielding the core to anyone who needs it), then sleep between polls (a peer is
         * slow or gone; the deadline is what matters then) */
        if (now_s() - t0 < g_spin) sched_yield();
        else {
            struct timespec ts = {0, g_nap_ns};
            nanosleep(&ts, NULL);
        }
    }
    g_wait += now_s() - t0;
    return LX_OK;
}

lx_status lx_dist_allreduce_f32(float *buf, int64_t n, bool mean) {
    if (n > 0 && !buf) return lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_dist_allreduce_f32: buf is NULL");
    if (n < 0 || n > 0x7fffffff)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_dist_allreduce_f32: n = %lld is outside 0..2^31-1", (long long)n);
    LX_TRY(need_init("lx_dist_allreduce_f32"));
    MPI_Request req;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
    if (rc != MPI_SUCCESS) return mpi_fail("all-reduce", rc);
    LX_TRY(wait_all(1, &req, "all-reduce"));
    if (mean)
        for (int64_t i = 0; i < n; i++) buf[i] /= (float)g_size;
    return LX_OK;
}


lx_status lx_dist_allreduce_mean(const lx_tree *t, lx_tree **out) {
    if (!out) return lx_null_out("lx_dist_allreduce_mean");
    if (!t) return lx_null_input("lx_dist_allreduce_mean: t is NULL");
    *out = NULL;
    LX_TRY(need_init("lx_dist_allreduce_mean"));
    lx_flat f = {0};
    LX_TRY(lx_tree_flatten(t, &f));
    /* buckets: consecutive float leaves, cut at g_bucket bytes (a larger leaf is its own bucket) */
    size_t nleaf = f.len, nb = 0;
    lx_status st = LX_OK;
    int64_t total = 0;
    for (size_t i = 0; i < nleaf; i++) {
        lx_array *a = leaf_float(&f.items[i].value);
        if (a) total += a->size;
    }
    if (!grow(&ar.buf, &ar.cap, (size_t)total + 1, sizeof *ar.buf) || !grow(&ar.sums, &ar.caps, nleaf + 1, sizeof *ar.sums) ||
        !grow(&ar.reqs, &ar.capr, nleaf + 1, sizeof *ar.reqs))
        st = lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory for %lld gradients", (long long)total);
    /* pack leaf by leaf; start a bucket's all-reduce as soon as it is full */
    int64_t per = (int64_t)(g_bucket / sizeof(float)), bfirst = 0, end = 0;
    for (size_t i = 0; st == LX_OK && i < nleaf; i++) {
        lx_array *a = leaf_float(&f.items[i].value);
        ar.sums[i] = a ? ar.buf + end : NULL;
        if (!a) continue;
        pack_leaf(ar.buf + end, a, a->size);
        end += a->size;
        if (end - bfirst >= per || end == total) {
            if (end - bfirst > 0x7fffffff) {
                st = lx_fail(LX_ERR_UNSUPPORTED, "distributed: a bucket of %lld floats is over MPI's int count",
                             (long long)(end - bfirst));
                break;
            }
            int rc = MPI_Iallreduce(MPI_IN_PLACE, ar.buf + bfirst, (int)(end - bfirst), MPI_FLOAT, MPI_SUM,
                                    MPI_COMM_WORLD, &ar.reqs[nb]);
            if (rc != MPI_SUCCESS) {
                st = mpi_fail("gradient all-reduce", rc);
                break;
            }
            nb++;
            bfirst = end;
        }
    }
    /* wait for every started bucket, also after a failure (no request is left in flight) */
    if (nb > 0) {
        lx_status w = wait_all((int)nb, ar.reqs, "gradient all-reduce");
        if (w != LX_OK) { /* MPI may still write there: the buffer is set aside, never reused */
            if (nab < 8) abandoned[nab++] = ar.buf;
            ar.buf = NULL, ar.cap = 0;
        }
        if (st == LX_OK) st = w;
    }
    /* mean = sum / size; non-float leaves are kept */
    if (st == LX_OK) st = mean_tree(&f, ar.sums, out);
    lx_flat_free(&f);
    return st;
}

/* ------------------------------------------------ overlapped gradient all-reduce */
/* A bucket: gradients packed in the order the backward pass finished them; its all-reduce
 * starts (on g_grad_comm) once it holds g_bucket bytes. Buffers persist across steps. */
typedef struct {
    float *data;
    int64_t n, cap;
    MPI_Request req;
    bool started, done;
    double t0, tdone;
} ov_bucket;
typedef struct {
    const lx_array *g;
    size_t bucket;
    int64_t off, n;
} ov_leaf;
static struct {
    bool on, stuck;           /* stuck: requests abandoned after a failure; buffers never reused */
    lx_status err;
    ov_bucket *b;
    size_t nb, capb;          /* buckets used this step / allocated */
    ov_leaf *leaves;
    size_t nl, capl;
    double t_last;            /* when the pass reported its last gradient (its end) */
    /* lx_dist_overlap_end's scratch, kept between steps: the requests to wait for, the leaf
     * records sorted by gradient, and each tree leaf's sums */
    MPI_Request *reqs;
    size_t capr;
    size_t *order;
    size_t capo;
    size_t *rec;
    size_t capq;
    float **sums;
    size_t caps;
} ov;

static void ov_release(void) {
    if (ov.on) lx_tape_set_grad_ready(NULL, NULL);
    if (!ov.stuck)
        for (size_t i = 0; i < ov.capb; i++) free(ov.b[i].data);
    if (!ov.stuck) free(ov.b);
    free(ov.leaves);
    free(ov.reqs);
    free(ov.order);
    free(ov.rec);
    free(ov.sums);
    memset(&ov, 0, sizeof ov);
}

/* Test the started, unfinished buckets once: MPI progresses a non-blocking collective only
 * inside MPI calls, so every finished gradient also moves the reductions in flight along. */
static void ov_progress(void) {
    for (size_t i = 0; i < ov.nb; i++) {
        ov_bucket *b = &ov.b[i];
        if (!b->started || b->done) continue;
        int flag = 0;
        if (MPI_Test(&b->req, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) {
            b->done = true;
            b->tdone = now_s();
        }
    }
}

static lx_status ov_start(ov_bucket *b) {
    if (b->n > 0x7fffffff)
        return lx_fail(LX_ERR_UNSUPPORTED, "distributed: a bucket of %lld floats is over MPI's int count", (long long)b->n);
    b->t0 = now_s();
    int rc = MPI_Iallreduce(MPI_IN_PLACE, b->data, (int)b->n, MPI_FLOAT, MPI_SUM, g_grad_comm, &b->req);
    if (rc != MPI_SUCCESS) return mpi_fail("gradient all-reduce", rc);
    b->started = true;
    return LX_OK;
}

/* The open (last, unstarted) bucket, making one when there is none. */
static ov_bucket *ov_open(void) {
    if (ov.nb > 0 && !ov.b[ov.nb - 1].started) return &ov.b[ov.nb - 1];
    if (ov.nb == ov.capb) {
        size_t nc = ov.capb ? 2 * ov.capb : 8;
        ov_bucket *nb = realloc(ov.b, nc * sizeof *nb);
        if (!nb) return NULL;
        memset(nb + ov.capb, 0, (nc - ov.capb) * sizeof *nb);
        ov.b = nb, ov.capb = nc;
    }
    ov_bucket *b = &ov.b[ov.nb++];
    b->n = 0;
    b->started = b->done = false;
    return b;
}

/* Append a float leaf's n values (src NULL: zeros) to the open bucket; records where it went under
 * `key` (the gradient array, or the param's when the gradient is zeros). */
static lx_status ov_append(const lx_array *key, int64_t n, const lx_array *src) {
    ov_bucket *b = ov_open();
    if (!b) return lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory");
    if (b->n + n > b->cap) {
        int64_t nc = b->cap ? b->cap : 1024;
        while (nc < b->n + n) nc *= 2;
        float *nd = realloc(b->data, (size_t)nc * sizeof *nd);
        if (!nd) return lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory for %lld gradients", (long long)nc);
        b->data = nd, b->cap = nc;
    }
    pack_leaf(b->data + b->n, src, n);
    if (!grow(&ov.leaves, &ov.capl, ov.nl + 1, sizeof *ov.leaves)) return lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory");
    ov.leaves[ov.nl++] = (ov_leaf){key, (size_t)(b - ov.b), b->n, n};
    b->n += n;
    return LX_OK;
}

static void ov_ready(void *user, const lx_array *x, const lx_array *g) {
    (void)user;
    if (ov.err != LX_OK || !x || x->dtype != LX_F32) return;
    if (g && (g->dtype != LX_F32 || lx_is_abstract(g) || g->size != x->size)) return; /* left to the end */
    lx_status st = ov_append(g ? g : x, x->size, g);
    ov_bucket *b = st == LX_OK ? &ov.b[ov.nb - 1] : NULL;
    if (b && (size_t)b->n * sizeof(float) >= g_bucket) st = ov_start(b);
    if (st != LX_OK) ov.err = st;
    ov_progress();
    ov.t_last = now_s();
}

static int by_key(const void *pa, const void *pb) {
    uintptr_t a = (uintptr_t)ov.leaves[*(const size_t *)pa].g, b = (uintptr_t)ov.leaves[*(const size_t *)pb].g;
    return a < b ? -1 : a > b;
}

/* The record (of the first `reported`) of gradient array a, by identity and size, or -1: a binary
 * search of ov.order, the records sorted by key. */
static size_t ov_find(const lx_array *a, size_t reported) {
    size_t lo = 0, hi = reported;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)ov.leaves[ov.order[mid]].g < (uintptr_t)a) lo = mid + 1;
        else hi = mid;
    }
    for (; lo < reported && ov.leaves[ov.order[lo]].g == a; lo++)
        if (ov.leaves[ov.order[lo]].n == a->size) return ov.order[lo];
    return (size_t)-1;
}

lx_status lx_dist_overlap_begin(void) {
    LX_TRY(need_init("lx_dist_overlap_begin"));
    if (ov.stuck) return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: overlap after a failed step (the run must end)");
    /* a begin after a backward pass whose gradients were not taken: starting over would drop that
     * pass's buckets (their requests never waited for, MPI perhaps still writing into the buffers
     * the next pass packs). Refused, the pass kept: lx_dist_overlap_end still takes it */
    if (ov.on && ov.nl > 0)
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "distributed: lx_dist_overlap_begin: the previous backward pass's gradients were not taken "
                       "(lx_dist_overlap_end after each pass; lx_dist_overlap_end(NULL, NULL) after a failed one)");
    ov.nb = ov.nl = 0;
    ov.err = LX_OK;
    if (g_size < 2) return LX_OK; /* nothing to reduce: lx_dist_overlap_end copies */
    ov.on = true;
    lx_tape_set_grad_ready(ov_ready, NULL);
    return LX_OK;
}

lx_status lx_dist_overlap_end(const lx_tree *grads, lx_tree **out) {
    if (out) *out = NULL;
    bool was_on = ov.on;
    if (ov.on) lx_tape_set_grad_ready(NULL, NULL);
    ov.on = false;
    if (!grads || !out) { /* a failed step: in-flight buckets are abandoned with their buffers */
        for (size_t i = 0; i < ov.nb; i++)
            if (ov.b[i].started && !ov.b[i].done) ov.stuck = true;
        ov.nb = ov.nl = 0;
        if (!grads && !out) return LX_OK; /* the documented abandon form */
        if (!out) return lx_null_out("lx_dist_overlap_end");
        /* grads NULL with an out pointer: a failed backward pass's missing tree, not an average */
        return lx_null_input("lx_dist_overlap_end: grads is NULL");
    }
    if (!was_on) return lx_dist_allreduce_mean(grads, out);
    double tb = ov.nl > 0 ? ov.t_last : now_s(); /* the end of the backward pass */
    lx_flat f = {0};
    lx_status st = ov.err;
    if (st == LX_OK) st = lx_tree_flatten(grads, &f);
    size_t reported = ov.nl;
    if (st == LX_OK && (!grow(&ov.order, &ov.capo, reported + 1, sizeof *ov.order) ||
                        !grow(&ov.rec, &ov.capq, f.len + 1, sizeof *ov.rec) ||
                        !grow(&ov.sums, &ov.caps, f.len + 1, sizeof *ov.sums)))
        st = lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory");
    /* each float leaf's record: a reported one found through the records sorted by gradient
     * (n log n in all); a leaf the backward pass did not report (bfloat16, or a gradient made
     * after the pass) goes to a last bucket */
    for (size_t j = 0; st == LX_OK && j < reported; j++) ov.order[j] = j;
    if (st == LX_OK) qsort(ov.order, reported, sizeof *ov.order, by_key);
    for (size_t i = 0; st == LX_OK && i < f.len; i++) {
        lx_array *a = leaf_float(&f.items[i].value);
        ov.rec[i] = (size_t)-1;
        if (!a) continue;
        size_t j = a->dtype == LX_F32 ? ov_find(a, reported) : (size_t)-1;
        if (j == (size_t)-1) {
            st = ov_append(a, a->size, a);
            j = ov.nl - 1;
        }
        ov.rec[i] = j; /* its floats once no append can move a bucket's memory (below) */
    }
    if (st == LX_OK && ov.nb > 0 && !ov.b[ov.nb - 1].started) st = ov_start(&ov.b[ov.nb - 1]);
    if (st == LX_OK) ov_progress();
    /* the statistics: time the reductions were in flight during the backward pass, and the
     * bytes whose reduction finished before it ended */
    double first = -1;
    for (size_t i = 0; i < ov.nb; i++) {
        ov_bucket *b = &ov.b[i];
        if (!b->started) continue;
        g_comm_bytes += 4.0 * (double)b->n;
        if (b->t0 < tb && (first < 0 || b->t0 < first)) first = b->t0;
        if (b->done && b->tdone <= tb) g_early_bytes += 4.0 * (double)b->n;
    }
    if (first >= 0) g_overlap += tb - first;
    /* wait for every started bucket (also after a failure: no request left in flight) */
    int nr = 0;
    if (!grow(&ov.reqs, &ov.capr, ov.nb + 1, sizeof *ov.reqs)) {
        for (size_t i = 0; i < ov.nb; i++)
            if (ov.b[i].started && !ov.b[i].done) ov.stuck = true;
        if (st == LX_OK) st = lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory");
    } else
        for (size_t i = 0; i < ov.nb; i++)
            if (ov.b[i].started && !ov.b[i].done) ov.reqs[nr++] = ov.b[i].req;
    if (nr > 0) {
        lx_status w = wait_all(nr, ov.reqs, "gradient all-reduce");
        if (w != LX_OK) ov.stuck = true;
        if (st == LX_OK) st = w;
    }
    /* the mean tree */
    for (size_t i = 0; st == LX_OK && i < f.len; i++) {
        const ov_leaf *l = ov.rec[i] == (size_t)-1 ? NULL : &ov.leaves[ov.rec[i]];
        ov.sums[i] = l ? ov.b[l->bucket].data + l->off : NULL;
    }
    if (st == LX_OK) st = mean_tree(&f, ov.sums, out);
    lx_flat_free(&f);
    ov.nb = ov.nl = 0;
    return st;
}

/* 64-bit FNV-1a of a float32 leaf's path, dtype and shape (what the broadcast's counts rest on). */
static uint64_t leaf_sig(const char *path, const lx_array *a) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *c = path; *c; c++) h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
    int64_t meta[2 + LX_MAX_DIMS] = {a->dtype, a->ndim};
    for (int d = 0; d < a->ndim; d++) meta[2 + d] = a->shape[d];
    const unsigned char *b = (const unsigned char *)meta;
    for (size_t k = 0; k < (size_t)(2 + a->ndim) * sizeof meta[0]; k++) h = (h ^ b[k]) * 0x100000001b3ull;
    return h;
}

static lx_status check_low(lx_status local, int *low_out);

/* Before a broadcast: every rank's float32 leaves must be root's (paths, dtypes, shapes), or MPI's
 * counts differ and the broadcast is silently partial. Root's leaf count and signatures are
 * broadcast; a rank that differs names the first leaf, and all ranks fail with LX_ERR_SHAPE (a
 * rank's own failure, `local`, travels the same way: every rank returns an error). */
static lx_status bcast_same_leaves(const lx_flat *f, int root, lx_status local) {
    int64_t n = 0;
    for (size_t i = 0; i < f->len; i++) n += leaf_f32(&f->items[i].value) != NULL;
    uint64_t *mine = malloc((size_t)(n + 1) * sizeof *mine), *theirs = malloc((size_t)(n + 1) * sizeof *theirs);
    if (local == LX_OK && (!mine || !theirs)) local = lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory");
    const char **paths = local == LX_OK ? malloc((size_t)(n + 1) * sizeof *paths) : NULL;
    if (local == LX_OK && !paths) local = lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory");
    for (size_t i = 0, j = 0; local == LX_OK && i < f->len; i++) {
        lx_array *a = leaf_f32(&f->items[i].value);
        if (a) paths[j] = f->items[i].path, mine[j++] = leaf_sig(f->items[i].path, a);
    }
    /* the count, then (when every rank could take part) the signatures */
    static int64_t rn; /* static: an abandoned request may complete later */
    rn = n;
    MPI_Request req;
    int rc = MPI_Ibcast(&rn, 1, MPI_INT64_T, root, MPI_COMM_WORLD, &req);
    lx_status st = rc == MPI_SUCCESS ? wait_all(1, &req, "broadcast") : mpi_fail("broadcast", rc);
    if (st != LX_OK) {
        free(mine), free(theirs), free(paths);
        return st;
    }
    if (local == LX_OK && rn != n)
        local = lx_fail(LX_ERR_SHAPE, "distributed: broadcast: rank %d has %lld float32 leaves, root rank %d %lld",
                        g_rank, (long long)n, root, (long long)rn);
    int low = g_size;
    st = check_low(local, &low); /* all ranks agree before the signatures (their counts) */
    if (st == LX_OK && low < g_size) st = LX_ERR_SHAPE;
    if (st == LX_OK && g_rank == root) memcpy(theirs, mine, (size_t)n * sizeof *mine);
    if (st == LX_OK && n > 0) {
        rc = MPI_Ibcast(theirs, (int)n, MPI_UINT64_T, root, MPI_COMM_WORLD, &req);
        st = rc == MPI_SUCCESS ? wait_all(1, &req, "broadcast") : mpi_fail("broadcast", rc);
        if (st != LX_OK) theirs = NULL; /* MPI may still write it */
        for (int64_t j = 0; st == LX_OK && j < n; j++)
            if (theirs[j] != mine[j]) {
                local = lx_fail(LX_ERR_SHAPE, "distributed: broadcast: rank %d's leaf %s differs from root rank %d's "
                                "(its path, dtype or shape)", g_rank, paths[j], root);
                break;
            }
        if (st == LX_OK) st = check_low(local, &low);
        if (st == LX_OK && low < g_size) st = LX_ERR_SHAPE;
    }
    if (st == LX_ERR_SHAPE && local != LX_OK) st = local; /* this rank's own message */
    else if (st == LX_ERR_SHAPE)
        st = lx_fail(LX_ERR_SHAPE, "distributed: broadcast: rank %d's float32 leaves differ from root rank %d's (paths, "
                     "dtypes or shapes)", low, root);
    free(mine), free(theirs), free(paths);
    return st;
}

lx_status lx_dist_broadcast_tree(lx_tree *t, int root) {
    if (!t) return lx_null_input("lx_dist_broadcast_tree: t is NULL");
    LX_TRY(need_init("lx_dist_broadcast_tree"));
    if (root < 0 || root >= g_size) return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: root %d of %d ranks", root, g_size);
    lx_flat f = {0};
    /* a failure here still takes part in the checks (the other ranks would wait for this one) */
    lx_status st = bcast_same_leaves(&f, root, lx_tree_flatten(t, &f));
    for (size_t i = 0; st == LX_OK && i < f.len; i++) {
        lx_array *a = leaf_f32(&f.items[i].value);
        if (!a) continue;
        if (a->size > 0x7fffffff) {
            st = lx_fail(LX_ERR_UNSUPPORTED, "distributed: leaf %s is over MPI's int count", f.items[i].path);
            break;
        }
        MPI_Request req;
        int rc = MPI_Ibcast(lx_f32(a), (int)a->size, MPI_FLOAT, root, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) st = mpi_fail("broadcast", rc);
        else st = wait_all(1, &req, "broadcast");
    }
    lx_flat_free(&f);
    return st;
}

/* The lowest failing rank (*low; g_size when every rank passed LX_OK); the wait's status. */
static lx_status check_low(lx_status local, int *low_out) {
    /* static: a check abandoned at the deadline may complete later (inside MPI_Finalize) and must
     * not write into a returned stack frame */
    static int mine, low;
    mine = local == LX_OK ? g_size : g_rank, low = g_size;
    MPI_Request req;
    int rc = MPI_Iallreduce(&mine, &low, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &req);
    lx_status w = rc == MPI_SUCCESS ? wait_all(1, &req, "status check") : mpi_fail("status check", rc);
    *low_out = w == LX_OK ? low : g_size;
    return w;
}

lx_status lx_dist_check(lx_status local) {
    if (!g_inited) return local;
    char keep[512] = "";
    if (local != LX_OK) snprintf(keep, sizeof keep, "%s", lx_last_error());
    int low;
    lx_status w = check_low(local, &low);
    if (local != LX_OK) { /* keep this rank's own message (a timed-out check must not replace it) */
        if (w != LX_OK) lx_fail(local, "%s", keep);
        return local;
    }
    if (w != LX_OK) return w;
    if (low < g_size) {
        char sw[40];
        return lx_fail(LX_ERR_INTERNAL, "distributed: rank %d failed %s", low, step_words(sw, sizeof sw));
    }
    return LX_OK;
}


/* ---------------------------------------------------------------- ZeRO-1 */
/* The float32 params, flattened in tree order, are one vector of `total` elements; rank r owns
 * the contiguous elements [displs[r], displs[r] + counts[r]) (counts differ by at most one). Its
 * "shard tree" holds, at each param's path, the 1-D slice of that param inside its range (params
 * outside it are absent); the optimizer state is optax_init of that tree. */
struct lx_dist_zero1 {
    optax_tx *tx;
    size_t n;        /* float32 leaves */
    char **paths;    /* their paths, in tree order */
    int64_t *off;    /* each leaf's first element in the flat vector; off[n] = total */
    int *counts, *displs;
    int64_t owned, total, lo; /* this rank: [lo, lo + owned) */
    float *flat;     /* total floats: where buckets of several leaves (or a zero gradient) are packed */
    float *mine;     /* owned floats: the summed, then averaged, gradient shard */
    lx_tree *state;  /* the optimizer state of this rank's shard */
    /* Buckets: the leaves [bl[k], bl[k + 1]) in flat order, reduce-scattered by one collective
     * (rank r receives the part inside its range: bcounts[k * size + r] floats) as soon as all of
     * them are in; a leaf of g_bucket bytes or more is a bucket of its own and is sent straight
     * from its gradient array (held, gin[i], until the collective completes). */
    size_t nb;
    size_t *bl, *bof;         /* nb + 1 / the bucket of each leaf */
    int *bcounts, *pending;   /* nb * size / leaves still to come this step */
    MPI_Request *breq;        /* nb: MPI_REQUEST_NULL until started */
    double *bt0, *btdone;     /* start (-1: not started) and completion (-1: not seen done) times */
    /* per leaf: */
    const lx_array **px;      /* the params arrays lx_dist_zero1_begin registered */
    size_t *pidx;             /* the leaves sorted by px (the callback's look-up) */
    lx_array **gin;           /* the gradient a leaf's bucket sends (held), NULL: packed in flat */
    bool *in;                 /* the leaf is in its bucket this step */
    int *lcounts, *ldispls;   /* n * size: each rank's part of leaf i (the all-gather) */
    MPI_Request *lreq;        /* n */
    const lx_array **pcur;    /* the step's params arrays (borrowed from its tree) */
    lx_array **np;            /* the step's new params arrays */
    bool on, begun, stuck;    /* stuck: collectives abandoned after a failure; buffers never freed */
    bool ended;               /* lx_dist_zero1_step(z, NULL, NULL) came: a later begin or step fails */
    lx_status err;
    double t_last;
};

static bool zero1_in_flight(lx_dist_zero1 *z);

void lx_dist_zero1_free(lx_dist_zero1 *z) {
    if (!z) return;
    if (z->on) lx_tape_set_grad_ready(NULL, NULL);
    for (size_t i = 0; z->paths && i < z->n; i++) free(z->paths[i]);
    if (!z->stuck && zero1_in_flight(z)) z->stuck = true;
    if (!z->stuck) { /* abandoned collectives may still read or write these: kept */
        for (size_t i = 0; z->gin && i < z->n; i++) lx_release(z->gin[i]);
        free(z->flat);
        free(z->mine);
    }
    free(z->paths);
    free(z->off);
    free(z->counts);
    free(z->displs);
    free(z->bl);
    free(z->bof);
    free(z->bcounts);
    free(z->pending);
    free(z->breq);
    free(z->bt0);
    free(z->btdone);
    free(z->pcur);
    free(z->np);
    free(z->px);
    free(z->pidx);
    free(z->gin);
    free(z->in);
    free(z->lcounts);
    free(z->ldispls);
    free(z->lreq);
    lx_tree_release(z->state);
    optax_tx_release(z->tx);
    free(z);
}

int64_t lx_dist_zero1_owned(const lx_dist_zero1 *z, int64_t *total) {
    if (total) *total = z ? z->total : 0;
    return z ? z->owned : 0;
}

const lx_tree *lx_dist_zero1_state(const lx_dist_zero1 *z) { return z ? z->state : NULL; }

int64_t lx_dist_zero1_state_bytes(const lx_dist_zero1 *z) {
    if (!z || !z->state) return 0;
    lx_flat f = {0};
    if (lx_tree_flatten(z->state, &f) != LX_OK) return -1;
    int64_t bytes = 0;
    for (size_t i = 0; i < f.len; i++)
        if (f.items[i].value.kind == LX_V_ARRAY) bytes += (int64_t)lx_array_nbytes(f.items[i].value.u.array);
    lx_flat_free(&f);
    return bytes;
}

/* The part of leaf i inside rank r's range: [*a, *b) in flat elements (empty: *a == *b). */
static void zero1_cut(const lx_dist_zero1 *z, size_t i, int r, int64_t *a, int64_t *b) {
    int64_t lo = z->displs[r], hi = lo + z->counts[r];
    *a = z->off[i] > lo ? z->off[i] : lo;
    *b = z->off[i + 1] < hi ? z->off[i + 1] : hi;
    if (*b < *a) *b = *a;
}

/* This rank's shard tree of `src` (the floats of flat elements [base, ...), or NULL: the params
 * tree `t`). */
static lx_status zero1_shard_tree(const lx_dist_zero1 *z, const float *src, int64_t base, const lx_tree *t,
                                  lx_tree **out) {
    lx_flat f = {0};
    lx_status st = LX_OK;
    for (size_t i = 0; st == LX_OK && i < z->n; i++) {
        int64_t a, b;
        zero1_cut(z, i, g_rank, &a, &b);
        if (a == b) continue;
        const float *from = src ? src + (a - base) : NULL;
        if (!from) {
            const lx_value *v = NULL;
            st = lx_tree_get_path(t, z->paths[i], &v);
            lx_array *p = st == LX_OK ? leaf_f32(v) : NULL;
            if (st == LX_OK && (!p || p->size != z->off[i + 1] - z->off[i]))
                st = lx_fail(LX_ERR_SHAPE, "distributed: zero1: %s changed shape or dtype", z->paths[i]);
            if (st != LX_OK) break;
            from = lx_f32(p) + (a - z->off[i]);
        }
        int64_t len = b - a;
        lx_array *s = lx_array_from_f32(1, &len, from);
        if (!s) st = lx_last_status();
        else st = lx_flat_append(&f, z->paths[i], lx_array_v(s));
        lx_release(s);
    }
    if (st == LX_OK && f.len == 0) *out = lx_tree_new(), st = *out ? LX_OK : lx_last_status();
    else if (st == LX_OK) st = lx_tree_unflatten(&f, out);
    lx_flat_free(&f);
    return st;
}

static lx_status zero1_plan(lx_dist_zero1 *z);

/* Whether tx gives the same numbers on the rank's 1-D slices as on the whole params: every
 * transformation must be elementwise. Refused (LX_ERR_UNSUPPORTED, naming it): those that reduce
 * over a leaf or over all leaves (clip_by_global_norm, clip_by_block_rms, scale_by_param_block_rms)
 * or look at a param's shape (scale_by_factored_rms: adafactor), and a mask (optax.masked,
 * adamw's or add_decayed_weights' mask) whose choice for a param differs between the param and any
 * rank's slice of it (optax_mask_min_ndim does: a slice is 1-D). Every rank decides the same (all
 * ranks' slices are tried). `f`: the params, flattened as z->paths. */
static lx_status zero1_check_tx(const lx_dist_zero1 *z, const optax_tx *tx, const lx_flat *f, int depth) {
    static const char *const whole[] = {"clip_by_global_norm", "clip_by_block_rms", "scale_by_param_block_rms",
                                        "scale_by_factored_rms"};
    if (!tx || !tx->ops) return LX_OK;
    if (depth > LX_OPTAX_MAX_NEST) /* optax_chain and optax_masked refuse deeper ones */
        return lx_fail(LX_ERR_UNSUPPORTED, "distributed: zero1: transformations nested more than %d deep", LX_OPTAX_MAX_NEST);
    for (size_t k = 0; k < sizeof whole / sizeof whole[0]; k++)
        if (!strcmp(tx->ops->name, whole[k]))
            return lx_fail(LX_ERR_UNSUPPORTED,
                           "distributed: zero1: %s is not elementwise (it reduces over %s), and a rank holds only its "
                           "1-D slices of the params: not supported with ZeRO-1 sharding (use the all-reduce path, "
                           "lx_dist_overlap_begin/end, which steps the whole gradient)",
                           tx->ops->name, k == 0 ? "every element of the gradient" : k == 3 ? "a param's rows and columns" : "each leaf");
    if (tx->mask.fn)
        for (size_t i = 0; i < z->n; i++) {
            lx_array *p = leaf_f32(&f->items[i].value);
            bool want = tx->mask.fn(z->paths[i], p, tx->mask.user);
            for (int r = 0; r < g_size; r++) {
                int64_t a, b;
                zero1_cut(z, i, r, &a, &b);
                if (a == b) continue;
                int64_t len = b - a;
                lx_array *v = lx_array_wrap(LX_F32, 1, &len, lx_f32(p) + (a - z->off[i]), NULL, NULL);
                if (!v) return lx_last_status();
                bool got = tx->mask.fn(z->paths[i], v, tx->mask.user);
                lx_release(v);
                if (got != want)
                    return lx_fail(LX_ERR_UNSUPPORTED,
                                   "distributed: zero1: the mask of %s selects %s by its shape (%s for the param, %s for "
                                   "rank %d's 1-D slice of it): not supported with ZeRO-1 sharding (give a mask tree of "
                                   "paths, optax_mask_tree)",
                                   tx->ops->name, z->paths[i], want ? "true" : "false", got ? "true" : "false", r);
            }
        }
    for (int k = 0; k < tx->n; k++) LX_TRY(zero1_check_tx(z, tx->subs[k], f, depth + 1));
    return LX_OK;
}

lx_status lx_dist_zero1_new(optax_tx *tx, const lx_tree *params, lx_dist_zero1 **out) {
    if (out) *out = NULL;
    if (!tx || !params || !out) {
        optax_tx_release(tx);
        if (!out) return lx_null_out("lx_dist_zero1_new");
        return lx_null_input("lx_dist_zero1_new: %s is NULL", !tx ? "tx" : "params");
    }
    lx_status st = need_init("lx_dist_zero1_new");
    lx_dist_zero1 *z = st == LX_OK ? calloc(1, sizeof *z) : NULL;
    if (!z) {
        optax_tx_release(tx);
        return st != LX_OK ? st : lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory");
    }
    z->tx = tx;
    lx_flat f = {0};
    st = lx_tree_flatten(params, &f);
    if (st == LX_OK) {
        z->paths = calloc(f.len + 1, sizeof *z->paths);
        z->off = calloc(f.len + 1, sizeof *z->off);
        z->counts = calloc((size_t)g_size, sizeof *z->counts);
        z->displs = calloc((size_t)g_size, sizeof *z->displs);
        if (!z->paths || !z->off || !z->counts || !z->displs) st = lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory");
    }
    for (size_t i = 0; st == LX_OK && i < f.len; i++) {
        lx_array *a = leaf_f32(&f.items[i].value);
        if (f.items[i].value.kind != LX_V_ARRAY || !a) {
            st = lx_fail(LX_ERR_TYPE, "distributed: zero1: %s is not a float32 array", f.items[i].path);
            break;
        }
        if (!(z->paths[z->n] = strdup(f.items[i].path))) st = lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory");
        else {
            z->off[z->n] = z->total;
            z->total += a->size;
            z->n++;
        }
    }
    if (st == LX_OK) z->off[z->n] = z->total;
    if (st == LX_OK && z->total > 0x7fffffff)
        st = lx_fail(LX_ERR_UNSUPPORTED, "distributed: zero1: %lld parameters are over MPI's int count", (long long)z->total);
    /* contiguous shards: the first total % size ranks get one element more */
    for (int r = 0, d = 0; st == LX_OK && r < g_size; r++) {
        z->counts[r] = (int)(z->total / g_size + (r < z->total % g_size));
        z->displs[r] = d;
        d += z->counts[r];
    }
    if (st == LX_OK) {
        z->owned = z->counts[g_rank];
        z->lo = z->displs[g_rank];
        z->flat = malloc((size_t)(z->total + 1) * sizeof *z->flat);
        z->mine = malloc((size_t)(z->owned + 1) * sizeof *z->mine);
        if (!z->flat || !z->mine) st = lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory for %lld parameters", (long long)z->total);
    }
    if (st == LX_OK) st = zero1_plan(z);
    if (st == LX_OK) st = zero1_check_tx(z, z->tx, &f, 0);
    lx_tree *mine = NULL;
    if (st == LX_OK) st = zero1_shard_tree(z, NULL, 0, params, &mine);
    if (st == LX_OK) st = optax_init(z->tx, mine, &z->state);
    lx_tree_release(mine);
    lx_flat_free(&f);
    if (st != LX_OK) {
        lx_dist_zero1_free(z);
        return st;
    }
    *out = z;
    return LX_OK;
}

/* The buckets and the per-leaf tables (after the shards are known). */
static lx_status zero1_plan(lx_dist_zero1 *z) {
    size_t n = z->n, N = (size_t)g_size;
    z->bl = calloc(n + 1, sizeof *z->bl);
    z->bof = calloc(n + 1, sizeof *z->bof);
    z->bcounts = calloc((n + 1) * N, sizeof *z->bcounts);
    z->pending = calloc(n + 1, sizeof *z->pending);
    z->breq = calloc(n + 1, sizeof *z->breq);
    z->bt0 = calloc(n + 1, sizeof *z->bt0);
    z->btdone = calloc(n + 1, sizeof *z->btdone);
    z->pcur = calloc(n + 1, sizeof *z->pcur);
    z->np = calloc(n + 1, sizeof *z->np);
    z->px = calloc(n + 1, sizeof *z->px);
    z->pidx = calloc(n + 1, sizeof *z->pidx);
    z->gin = calloc(n + 1, sizeof *z->gin);
    z->in = calloc(n + 1, sizeof *z->in);
    z->lcounts = calloc((n + 1) * N, sizeof *z->lcounts);
    z->ldispls = calloc((n + 1) * N, sizeof *z->ldispls);
    z->lreq = calloc(n + 1, sizeof *z->lreq);
    if (!z->bl || !z->bof || !z->bcounts || !z->pending || !z->breq || !z->bt0 || !z->btdone || !z->pcur || !z->np || !z->px ||
        !z->pidx || !z->gin || !z->in || !z->lcounts || !z->ldispls || !z->lreq)
        return lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory");
    /* buckets: consecutive leaves up to g_bucket bytes; a leaf that size or larger alone */
    size_t per = g_bucket / sizeof(float);
    z->nb = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int64_t len = 0;
        if ((size_t)(z->off[i + 1] - z->off[i]) >= per) j = i + 1;
        else
            while (j < n && (size_t)(z->off[j + 1] - z->off[j]) < per && (size_t)(len + z->off[j + 1] - z->off[j]) <= per)
                len += z->off[j + 1] - z->off[j], j++;
        if (j == i) j = i + 1;
        z->bl[z->nb++] = i;
        i = j;
    }
    z->bl[z->nb] = n;
    for (size_t k = 0; k < z->nb; k++) {
        for (size_t i = z->bl[k]; i < z->bl[k + 1]; i++) z->bof[i] = k;
        int64_t s = z->off[z->bl[k]], e = z->off[z->bl[k + 1]];
        for (int r = 0; r < g_size; r++) {
            int64_t lo = z->displs[r], hi = lo + z->counts[r];
            int64_t a = s > lo ? s : lo, b = e < hi ? e : hi;
            z->bcounts[k * N + (size_t)r] = b > a ? (int)(b - a) : 0;
        }
    }
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < g_size; r++) {
            int64_t a, b;
            zero1_cut(z, i, r, &a, &b);
            z->lcounts[i * N + (size_t)r] = (int)(b - a);
            z->ldispls[i * N + (size_t)r] = (int)(a - z->off[i]);
        }
    /* <= : the slot after the last bucket / leaf holds the step's status check */
    for (size_t k = 0; k <= z->nb; k++) z->breq[k] = MPI_REQUEST_NULL, z->bt0[k] = -1;
    for (size_t i = 0; i <= n; i++) z->lreq[i] = MPI_REQUEST_NULL;
    return LX_OK;
}

/* Whether a collective this object started is still running (a reduce-scatter of a backward pass
 * whose step never came, or an all-gather abandoned at a deadline): its buffers must then stay. */
static bool zero1_in_flight(lx_dist_zero1 *z) {
    int fin = 1;
    if (!z->breq || !z->lreq || MPI_Finalized(&fin) != MPI_SUCCESS || fin) return false;
    for (size_t k = 0; k <= z->nb; k++) {
        int done = 1;
        if (z->breq[k] != MPI_REQUEST_NULL && (MPI_Test(&z->breq[k], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done))
            return true;
    }
    for (size_t i = 0; i <= z->n; i++) {
        int done = 1;
        if (z->lreq[i] != MPI_REQUEST_NULL && (MPI_Test(&z->lreq[i], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done))
            return true;
    }
    return false;
}

/* A new step: no leaf in, no bucket started. */
static void zero1_reset(lx_dist_zero1 *z) {
    for (size_t k = 0; k < z->nb; k++) {
        z->pending[k] = (int)(z->bl[k + 1] - z->bl[k]);
        z->breq[k] = MPI_REQUEST_NULL;
        z->bt0[k] = -1;
        z->btdone[k] = -1;
    }
    for (size_t i = 0; i < z->n; i++) {
        lx_release(z->gin[i]);
        z->gin[i] = NULL;
        z->in[i] = false;
    }
    z->err = LX_OK;
    z->t_last = 0;
}

static lx_status zero1_start(lx_dist_zero1 *z, size_t k) {
    size_t i0 = z->bl[k];
    int64_t s = z->off[i0], e = z->off[z->bl[k + 1]];
    const float *send = z->bl[k + 1] == i0 + 1 && z->gin[i0] ? lx_f32(z->gin[i0]) : z->flat + s;
    int64_t a = s > z->lo ? s : z->lo;
    float *recv = a < z->lo + z->owned && a < e ? z->mine + (a - z->lo) : z->mine;
    double t0 = now_s();
    int rc = MPI_Ireduce_scatter(send, recv, z->bcounts + k * (size_t)g_size, MPI_FLOAT, MPI_SUM, g_grad_comm, &z->breq[k]);
    if (rc != MPI_SUCCESS) return mpi_fail("zero1 gradient reduce-scatter", rc);
    z->bt0[k] = t0; /* started */
    return LX_OK;
}

/* Leaf i's gradient g (NULL: zeros) into its bucket; the bucket starts when it is complete
 * (start = false: left to the caller, which starts the rest in order). */
static lx_status zero1_take(lx_dist_zero1 *z, size_t i, const lx_array *g, bool start) {
    size_t k = z->bof[i];
    bool alone = z->bl[k + 1] == z->bl[k] + 1;
    if (g) z->gin[i] = lx_retain((lx_array *)g); /* held: a bucket of its own sends from it */
    if (!alone || !g) pack_leaf(z->flat + z->off[i], g, z->off[i + 1] - z->off[i]);
    z->in[i] = true;
    if (--z->pending[k] == 0 && start) return zero1_start(z, k);
    return LX_OK;
}

static void zero1_progress(lx_dist_zero1 *z) {
    for (size_t k = 0; k < z->nb; k++) {
        if (z->bt0[k] < 0 || z->btdone[k] >= 0) continue;
        int flag = 0;
        if (MPI_Test(&z->breq[k], &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) z->btdone[k] = now_s();
    }
}

static lx_dist_zero1 *g_z_sort; /* qsort's context */
static int by_param(const void *pa, const void *pb) {
    uintptr_t a = (uintptr_t)g_z_sort->px[*(const size_t *)pa], b = (uintptr_t)g_z_sort->px[*(const size_t *)pb];
    if (a != b) return a < b ? -1 : 1;
    /* one array at two paths (tied parameters): by leaf index, so every rank credits the same
     * leaf first whatever the addresses (qsort is not stable) and starts the same buckets */
    size_t ia = *(const size_t *)pa, ib = *(const size_t *)pb;
    return ia < ib ? -1 : ia > ib;
}

static size_t zero1_leaf_of(const lx_dist_zero1 *z, const lx_array *x) {
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)z->px[z->pidx[mid]] < (uintptr_t)x) lo = mid + 1;
        else hi = mid;
    }
    for (; lo < z->n && z->px[z->pidx[lo]] == x; lo++)
        if (!z->in[z->pidx[lo]]) return z->pidx[lo];
    return z->n;
}

/* The tape's "gradient is final" callback during a ZeRO-1 step's backward pass. */
static void zero1_ready(void *user, const lx_array *x, const lx_array *g) {
    lx_dist_zero1 *z = user;
    if (z->err != LX_OK || !x) return;
    size_t i = zero1_leaf_of(z, x);
    if (i == z->n) return;
    if (g && (g->dtype != LX_F32 || lx_is_abstract(g) || g->size != x->size)) return; /* left to the step */
    z->err = zero1_take(z, i, g, true);
    zero1_progress(z);
    z->t_last = now_s();
}

lx_status lx_dist_zero1_begin(lx_dist_zero1 *z, const lx_tree *params) {
    if (!z || !params) return lx_null_input("lx_dist_zero1_begin: %s is NULL", !z ? "z" : "params");
    LX_TRY(need_init("lx_dist_zero1_begin"));
    if (z->stuck || z->ended)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: zero1 step after a failed one (the run must end)");
    if (z->on) lx_tape_set_grad_ready(NULL, NULL);
    z->on = false;
    /* the previous begin's backward pass started reductions and no step (nor the failed-step
     * call lx_dist_zero1_step(z, NULL, NULL)) came: they cannot be dropped (MPI still reads the
     * gradients and writes the shard) and the ranks may no longer agree on what runs next */
    if (z->begun && zero1_in_flight(z)) {
        z->stuck = true;
        z->begun = false;
        return lx_fail(LX_ERR_INVALID_ARGUMENT,
                       "distributed: lx_dist_zero1_begin again while the previous backward pass's gradient "
                       "reductions are in flight (call lx_dist_zero1_step, or lx_dist_zero1_step(z, NULL, NULL) "
                       "after a failed step; the run must end)");
    }
    zero1_reset(z);
    for (size_t i = 0; i < z->n; i++) {
        const lx_value *v = NULL;
        lx_status st = lx_tree_get_path(params, z->paths[i], &v);
        lx_array *p = st == LX_OK ? leaf_f32(v) : NULL;
        if (st == LX_OK && (!p || p->size != z->off[i + 1] - z->off[i]))
            st = lx_fail(LX_ERR_SHAPE, "distributed: zero1: %s changed shape or dtype", z->paths[i]);
        if (st != LX_OK) return st;
        z->px[i] = p;
        z->pidx[i] = i;
    }
    g_z_sort = z;
    qsort(z->pidx, z->n, sizeof *z->pidx, by_param);
    g_z_sort = NULL;
    z->begun = true;
    if (g_size > 1) { /* one rank: the step packs everything itself */
        z->on = true;
        lx_tape_set_grad_ready(zero1_ready, z);
    }
    return LX_OK;
}

/* A status check that travels with a step's collectives instead of a round of its own: started
 * after them on the same communicator, waited for with them; status_end then gives LX_OK when
 * every rank passed LX_OK, otherwise what lx_dist_check gives. (Static buffers: an abandoned one
 * may complete later.) */
static int g_st_mine[2], g_st_low[2];

static lx_status status_start(lx_status local, int slot, MPI_Request *req) {
    g_st_mine[slot] = local == LX_OK ? g_size : g_rank;
    g_st_low[slot] = g_size;
    int rc = MPI_Iallreduce(&g_st_mine[slot], &g_st_low[slot], 1, MPI_INT, MPI_MIN, g_grad_comm, req);
    return rc == MPI_SUCCESS ? LX_OK : mpi_fail("status check", rc);
}

static lx_status status_end(lx_status local, int slot) {
    if (local != LX_OK) return local; /* this rank's own message (status_keep) */
    if (g_st_low[slot] < g_size) {
        char sw[40];
        return lx_fail(LX_ERR_INTERNAL, "distributed: rank %d failed %s", g_st_low[slot], step_words(sw, sizeof sw));
    }
    return LX_OK;
}

/* This rank's own failure again, with the message kept before the waits (a wait that timed out
 * has replaced it). */
static lx_status status_local(lx_status local, const char *keep) { return lx_fail(local, "%s", keep); }

/* A new params tree: `params`' structure, the float32 leaves replaced by arr[i] (borrowed). */
static lx_status zero1_params_tree(const lx_dist_zero1 *z, const lx_tree *params, lx_array **arr, lx_tree **out) {
    lx_flat f = {0}, g = {0};
    lx_status st = lx_tree_flatten(params, &f);
    for (size_t i = 0, j = 0; st == LX_OK && i < f.len; i++) {
        if (j < z->n && strcmp(f.items[i].path, z->paths[j]) == 0) {
            st = lx_flat_append(&g, f.items[i].path, lx_array_v(arr[j]));
            j++;
        } else
            st = lx_flat_append(&g, f.items[i].path, f.items[i].value);
    }
    if (st == LX_OK) st = lx_tree_unflatten(&g, out);
    lx_flat_free(&f);
    lx_flat_free(&g);
    return st;
}

lx_status lx_dist_zero1_step(lx_dist_zero1 *z, const lx_tree *grads, lx_tree **params) {
    if (z && z->on) lx_tape_set_grad_ready(NULL, NULL);
    if (z) z->on = false;
    if (z && !grads && !params) { /* after a failed step: the collectives in flight are abandoned */
        for (size_t k = 0; k < z->nb; k++)
            if (z->bt0[k] >= 0 && z->btdone[k] < 0) z->stuck = true;
        z->begun = false;
        z->ended = true; /* the run ends whether or not a reduction was still in flight (distributed.h) */
        return LX_OK;
    }
    if (!z) return lx_null_input("lx_dist_zero1_step: z is NULL");
    if (!params) return lx_fail(LX_ERR_INVALID_ARGUMENT, "lx_dist_zero1_step: params (the in/out tree pointer) is NULL");
    if (!grads || !*params) return lx_null_input("lx_dist_zero1_step: %s is NULL", !grads ? "grads" : "*params");
    if (z->stuck || z->ended)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "distributed: zero1 step after a failed one (the run must end)");
    if (!z->begun) zero1_reset(z);
    z->begun = false;
    double tb = z->t_last > 0 ? z->t_last : now_s(); /* the end of the backward pass */
    lx_tree *p_own = NULL, *g_own = NULL, *state = NULL, *out = NULL;
    lx_array **np = z->np;
    lx_status st = z->err;
    /* the gradients the backward pass did not report (all of them without lx_dist_zero1_begin);
     * a reported one must be the tree's (its bucket may be on its way already) */
    for (size_t i = 0; st == LX_OK && i < z->n; i++) {
        const lx_value *v = NULL;
        st = lx_tree_get_path(grads, z->paths[i], &v);
        lx_array *g = st == LX_OK ? leaf_f32(v) : NULL;
        if (st == LX_OK && (!g || g->size != z->off[i + 1] - z->off[i]))
            st = lx_fail(LX_ERR_SHAPE, "distributed: zero1: gradient %s is not a float32 array of %lld elements", z->paths[i],
                         (long long)(z->off[i + 1] - z->off[i]));
        if (st != LX_OK) break;
        if (!z->in[i]) st = zero1_take(z, i, g, false);
        else if (z->gin[i] && z->gin[i] != g)
            st = lx_fail(LX_ERR_INVALID_ARGUMENT,
                         "distributed: zero1: the gradient at %s is not the one the backward pass after "
                         "lx_dist_zero1_begin made (its reduction has started)", z->paths[i]);
    }
    if (st == LX_OK && lx_tree_count_leaves(grads) != z->n) /* a leaf the params do not have: not ignored */
        st = lx_fail(LX_ERR_SHAPE, "distributed: zero1: the gradients have %zu leaves, the params %zu",
                     lx_tree_count_leaves(grads), z->n);
    /* every bucket starts on every rank, also after an error here (its floats are then
     * whatever they are), and this rank's status travels with them: an error on one rank fails
     * the step on all once the reductions are in, with no round of its own */
    lx_status local = st;
    char keep[512] = "";
    if (local != LX_OK) snprintf(keep, sizeof keep, "%s", lx_last_error());
    st = LX_OK;
    for (size_t k = 0; st == LX_OK && k < z->nb; k++)
        if (z->bt0[k] < 0) st = zero1_start(z, k);
    if (st == LX_OK) st = status_start(local, 0, &z->breq[z->nb]);
    /* the statistics: the reductions in flight during the backward pass, and the bytes whose
     * reduction completed before it ended */
    g_comm_bytes += 4.0 * (double)z->total;
    double first = -1;
    for (size_t k = 0; k < z->nb; k++) {
        if (z->bt0[k] < 0) continue;
        if (z->bt0[k] < tb && (first < 0 || z->bt0[k] < first)) first = z->bt0[k];
        if (z->btdone[k] >= 0 && z->btdone[k] <= tb) g_early_bytes += 4.0 * (double)(z->off[z->bl[k + 1]] - z->off[z->bl[k]]);
    }
    if (first >= 0) g_overlap += tb - first;
    /* wait for every started bucket and the status (not started: MPI_REQUEST_NULL) */
    {
        lx_status w = wait_all((int)z->nb + 1, z->breq, "zero1 gradient reduce-scatter");
        if (w != LX_OK) z->stuck = true; /* MPI may still read gin and write mine: kept */
        else
            for (size_t i = 0; i < z->n; i++) lx_release(z->gin[i]), z->gin[i] = NULL;
        if (st == LX_OK) st = w;
        if (st == LX_OK) st = status_end(local, 0);
        else if (local != LX_OK) st = status_local(local, keep);
        if (st != LX_OK) return st;
    }
    if (g_size > 1) {
        float inv = 1.0f / (float)g_size;
        for (int64_t k = 0; k < z->owned; k++) z->mine[k] *= inv;
    }
    /* the optimizer on this rank's shard: 1-D views of the averaged gradients and of the params
     * (no copies), the state of the shard; every param looked up once (pcur) */
    lx_flat sg = {0}, sp = {0};
    for (size_t i = 0; i < z->n; i++) z->pcur[i] = NULL, np[i] = NULL;
    for (size_t i = 0; st == LX_OK && i < z->n; i++) {
        const lx_value *v = NULL;
        st = lx_tree_get_path(*params, z->paths[i], &v);
        lx_array *p = st == LX_OK ? leaf_f32(v) : NULL;
        if (st == LX_OK && (!p || p->size != z->off[i + 1] - z->off[i]))
            st = lx_fail(LX_ERR_SHAPE, "distributed: zero1: %s changed shape or dtype", z->paths[i]);
        if (st != LX_OK) break;
        z->pcur[i] = p;
        int64_t a, b;
        zero1_cut(z, i, g_rank, &a, &b);
        if (a == b) continue;
        int64_t len = b - a;
        lx_array *gv = lx_array_wrap(LX_F32, 1, &len, z->mine + (a - z->lo), NULL, NULL);
        lx_array *pv = gv ? lx_array_wrap(LX_F32, 1, &len, lx_f32(p) + (a - z->off[i]), NULL, NULL) : NULL;
        if (!gv || !pv) st = lx_last_status();
        if (st == LX_OK) st = lx_flat_append(&sg, z->paths[i], lx_array_v(gv));
        if (st == LX_OK) st = lx_flat_append(&sp, z->paths[i], lx_array_v(pv));
        lx_release(gv);
        lx_release(pv);
    }
    if (st == LX_OK && sg.len == 0) {
        g_own = lx_tree_new(), p_own = lx_tree_new();
        if (!g_own || !p_own) st = lx_last_status();
    } else if (st == LX_OK) {
        st = lx_tree_unflatten(&sg, &g_own);
        if (st == LX_OK) st = lx_tree_unflatten(&sp, &p_own);
    }
    lx_flat_free(&sg);
    lx_flat_free(&sp);
    state = lx_tree_retain(z->state);
    if (st == LX_OK) st = optax_step(z->tx, g_own, &p_own, &state);
    /* the new params: fresh arrays, this rank's shard written in, the rest all-gathered */
    for (size_t i = 0; st == LX_OK && i < z->n; i++) {
        const lx_array *old = z->pcur[i];
        if (!(np[i] = lx_array_empty(LX_F32, old->ndim, old->shape))) st = lx_last_status();
        int64_t a, b;
        zero1_cut(z, i, g_rank, &a, &b);
        if (st != LX_OK || a == b) continue;
        const lx_value *nv = NULL;
        st = lx_tree_get_path(p_own, z->paths[i], &nv);
        lx_array *ps = st == LX_OK ? leaf_f32(nv) : NULL;
        if (st == LX_OK && (!ps || ps->size != b - a))
            st = lx_fail(LX_ERR_SHAPE, "distributed: zero1: the optimizer changed %s's shard", z->paths[i]);
        if (st == LX_OK) memcpy(lx_f32(np[i]) + (a - z->off[i]), lx_f32(ps), (size_t)(b - a) * sizeof(float));
    }
    /* all-gather the params, every rank (after a failure here, into scratch), with this rank's
     * status (the optimizer may fail on one) */
    local = st;
    if (local != LX_OK) snprintf(keep, sizeof keep, "%s", lx_last_error());
    st = LX_OK;
    size_t started = 0;
    for (size_t i = 0; st == LX_OK && i < z->n; i++, started++) {
        size_t N = (size_t)g_size;
        float *into = local == LX_OK ? lx_f32(np[i]) : z->flat + z->off[i];
        int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, into, z->lcounts + i * N, z->ldispls + i * N,
                                 MPI_FLOAT, g_grad_comm, &z->lreq[i]);
        if (rc != MPI_SUCCESS) st = mpi_fail("zero1 parameter all-gather", rc);
    }
    if (st == LX_OK) st = status_start(local, 1, &z->lreq[started++]);
    {
        lx_status w = wait_all((int)started, z->lreq, "zero1 parameter all-gather");
        if (w != LX_OK) { /* MPI may still write into the new arrays: they are kept */
            z->stuck = true;
            for (size_t i = 0; i < z->n; i++) np[i] = NULL;
        }
        if (st == LX_OK) st = w;
        if (st == LX_OK) st = status_end(local, 1);
        else if (local != LX_OK) st = status_local(local, keep);
    }
    if (st == LX_OK) st = zero1_params_tree(z, *params, np, &out);
    if (st == LX_OK) {
        lx_tree_release(*params);
        *params = out;
        lx_tree_release(z->state);
        z->state = state;
        state = NULL;
    }
    for (size_t i = 0; i < z->n; i++) {
        lx_release(np[i]);
        np[i] = NULL;
        z->pcur[i] = NULL;
    }
    lx_tree_release(state);
    lx_tree_release(g_own);
    lx_tree_release(p_own);
    return st;
}

/* The param leaf a state leaf at `path` stands for: the longest param path p with path == p or
 * path ending in "/" p (optax state trees nest the params' tree: mu/<param path>). n: none. */
static size_t zero1_param_of(const lx_dist_zero1 *z, const char *path) {
    size_t best = z->n, bestlen = 0, pl = strlen(path);
    for (size_t i = 0; i < z->n; i++) {
        size_t ql = strlen(z->paths[i]);
        if (ql > pl || ql <= bestlen || strcmp(path + pl - ql, z->paths[i]) != 0) continue;
        if (ql < pl && path[pl - ql - 1] != '/') continue;
        best = i, bestlen = ql;
    }
    return best;
}

lx_status lx_dist_zero1_gather_state(const lx_dist_zero1 *z, const lx_tree *params, lx_tree **out) {
    if (out) *out = NULL;
    if (!out) return lx_null_out("lx_dist_zero1_gather_state");
    if (!z || !params) return lx_null_input("lx_dist_zero1_gather_state: %s is NULL", !z ? "z" : "params");
    lx_tree *tmpl = NULL, *res = NULL;
    lx_flat f = {0};
    int *cnt = malloc((size_t)g_size * sizeof *cnt), *dsp = malloc((size_t)g_size * sizeof *dsp);
    lx_status st = cnt && dsp ? LX_OK : lx_fail(LX_ERR_NO_MEMORY, "distributed: out of memory");
    /* the unsharded layout: the state optax_init gives for the whole params */
    if (st == LX_OK) st = optax_init(z->tx, params, &tmpl);
    if (st == LX_OK) st = lx_tree_flatten(tmpl, &f);
    /* the result: a copy of the template's maps (empty states such as optax's EmptyState kept),
     * its leaves replaced */
    if (st == LX_OK && !(res = lx_tree_copy(tmpl))) st = lx_last_status();
    st = lx_dist_check(st);
    for (size_t i = 0; st == LX_OK && i < f.len; i++) {
        const lx_value *tv = &f.items[i].value;
        size_t q = tv->kind == LX_V_ARRAY ? zero1_param_of(z, f.items[i].path) : z->n;
        /* a per-parameter leaf: float32, or bfloat16 (adam's mu_dtype): gathered in its own dtype */
        lx_array *ta = q < z->n ? leaf_float(tv) : NULL;
        const lx_value *mv = lx_tree_find(z->state, f.items[i].path);
        if (!ta || ta->size != z->off[q + 1] - z->off[q]) { /* not per-parameter (a count): this rank's own */
            if (mv) st = lx_tree_set_path(res, f.items[i].path, *mv);
            continue;
        }
        for (int r = 0; r < g_size; r++) {
            int64_t a, b;
            zero1_cut(z, q, r, &a, &b);
            cnt[r] = (int)(b - a);
            dsp[r] = (int)(a - z->off[q]);
        }
        lx_array *mine = mv ? leaf_float(mv) : NULL;
        if (cnt[g_rank] > 0 && (!mine || mine->size != cnt[g_rank] || mine->dtype != ta->dtype)) {
            st = lx_fail(LX_ERR_SHAPE, "distributed: zero1: the state has no %lld-element %s shard at %s",
                         (long long)cnt[g_rank], lx_dtype_name(ta->dtype), f.items[i].path);
            break;
        }
        lx_array *r = lx_array_empty(ta->dtype, ta->ndim, ta->shape);
        if (!r) {
            st = lx_last_status();
            break;
        }
        size_t es = lx_dtype_size(ta->dtype);
        if (cnt[g_rank] > 0) memcpy((char *)r->data + (size_t)dsp[g_rank] * es, mine->data, (size_t)cnt[g_rank] * es);
        MPI_Datatype dt = ta->dtype == LX_F32 ? MPI_FLOAT : MPI_UINT16_T;
        MPI_Request req;
        int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, r->data, cnt, dsp, dt, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) st = mpi_fail("zero1 state all-gather", rc);
        else st = wait_all(1, &req, "zero1 state all-gather");
        if (st == LX_OK) st = lx_tree_set_path(res, f.items[i].path, lx_array_v(r));
        lx_release(r);
    }
    if (st == LX_OK) *out = res, res = NULL;
    lx_tree_release(res);
    lx_flat_free(&f);
    lx_tree_release(tmpl);
    free(cnt);
    free(dsp);
    return st;
}

lx_status lx_dist_zero1_load_state(lx_dist_zero1 *z, const lx_tree *full) {
    if (!z || !full) return lx_null_input("lx_dist_zero1_load_state: %s is NULL", !z ? "z" : "full");
    lx_flat f = {0};
    lx_tree *ns = lx_tree_copy(z->state); /* the maps kept (empty states too), leaves replaced */
    lx_status st = ns ? lx_tree_flatten(z->state, &f) : lx_last_status();
    for (size_t i = 0; st == LX_OK && i < f.len; i++) {
        const char *path = f.items[i].path;
        const lx_value *fv = lx_tree_find(full, path);
        if (!fv) {
            st = lx_fail(LX_ERR_NOT_FOUND,
                         "distributed: zero1: the optimizer state has no %s: it is not laid out as this optimizer's "
                         "state (optax_init(tx, params) of the same transformation; saved with another optimizer?)",
                         path);
            break;
        }
        size_t q = f.items[i].value.kind == LX_V_ARRAY ? zero1_param_of(z, path) : z->n;
        /* per-parameter: float32, or bfloat16 (adam's mu_dtype), cut in its own dtype */
        lx_array *sa = q < z->n ? leaf_float(&f.items[i].value) : NULL;
        int64_t a = 0, b = 0;
        if (sa) zero1_cut(z, q, g_rank, &a, &b);
        if (!sa || sa->ndim != 1 || sa->size != b - a) { /* not per-parameter: taken whole */
            st = lx_tree_set_path(ns, path, *fv);
            continue;
        }
        lx_array *fa = leaf_float(fv);
        if (!fa || fa->dtype != sa->dtype || fa->size != z->off[q + 1] - z->off[q]) {
            st = lx_fail(LX_ERR_SHAPE, "distributed: zero1: %s must be a %s array of %lld elements", path,
                         lx_dtype_name(sa->dtype), (long long)(z->off[q + 1] - z->off[q]));
            break;
        }
        int64_t len = b - a;
        lx_array *s = lx_array_from_data(sa->dtype, 1, &len,
                                         (const char *)fa->data + (size_t)(a - z->off[q]) * lx_dtype_size(sa->dtype));
        if (!s) st = lx_last_status();
        else st = lx_tree_set_path(ns, path, lx_array_v(s));
        lx_release(s);
    }
    if (st == LX_OK) { /* replaced only when every leaf was found */
        lx_tree_release(z->state);
        z->state = ns;
        ns = NULL;
    }
    lx_tree_release(ns);
    lx_flat_free(&f);
    return st;
}

#endif
