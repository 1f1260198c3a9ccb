/* lx_team_run and the parallel loops on it (team.h): persistent workers woken per job; the caller
 * never waits for a worker that has not joined, so a busy vCPU delays a job by at most the item its
 * thread holds. The workers are joinable: unloading the library (dlclose, or the process's own
 * end) stops and joins them (team_shutdown), so none is left running code that is unmapped. */
#include "team.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int nworkers;                  /* started so far (under mu) */
static pthread_t threads[LX_TEAM_MAX]; /* their handles, for team_shutdown */
static atomic_bool quit;              /* set once by team_shutdown: workers leave, none starts */
static atomic_flag busy = ATOMIC_FLAG_INIT;
static atomic_ullong generation;      /* bumped per job */
static atomic_bool open_;             /* the current job still takes workers */
static atomic_int active;             /* workers inside fn */
static atomic_int wanted;             /* workers the current job may use */
static void (*job_fn)(void *);
static void *job_arg;
static _Thread_local int cur_tid;     /* lx_parallel_tid */

static void *worker(void *p) {
    int id = (int)(long)p;
    unsigned long long seen = 0;
    for (;;) {
        unsigned long long g = atomic_load(&generation);
        for (int spin = 0; g == seen && spin < 200; spin++) { /* a short spin: back-to-back jobs */
            sched_yield();
            g = atomic_load(&generation);
        }
        if (g == seen) {
            pthread_mutex_lock(&mu);
            while ((g = atomic_load(&generation)) == seen) pthread_cond_wait(&wake, &mu);
            pthread_mutex_unlock(&mu);
        }
        seen = g;
        if (atomic_load(&quit)) return NULL; /* team_shutdown bumped the generation */
        if (id >= atomic_load(&wanted)) continue;
        atomic_fetch_add(&active, 1);
        /* Dekker with the caller's close: either the caller sees us active, or we see it closed.
         * `wanted` again after it: a worker that read the last job's `wanted`, then slept while
         * that job closed and the next one opened (its `generation` not bumped yet), must not join
         * the next job beyond the threads it asked for (its tids are 0 .. nthreads - 1). */
        if (atomic_load(&open_) && atomic_load(&generation) == g && id < atomic_load(&wanted)) {
            cur_tid = id + 1;
            job_fn(job_arg);
            cur_tid = 0;
        }
        atomic_fetch_sub(&active, 1);
    }
    return NULL;
}

/* A child of fork() has none of the workers: it starts with an empty team (a lock or job the
 * parent's threads held at the fork is not the child's). */
static void team_after_fork_child(void) {
    pthread_mutex_init(&mu, NULL);
    pthread_cond_init(&wake, NULL);
    nworkers = 0;
    atomic_flag_clear(&busy);
    atomic_store(&open_, false);
    atomic_store(&active, 0);
    cur_tid = 0;
}
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void team_register_atfork(void) { (void)pthread_atfork(NULL, NULL, team_after_fork_child); }

/* The library's unloading (dlclose of liblinnx.so, or the end of the process: a destructor runs
 * in both): every worker is woken, leaves its loop and is joined, so no thread is left parked in
 * code about to be unmapped (it would crash when woken, or leak). A worker inside a job's item
 * finishes the item first. Nothing to do when the pool never started, nor in a child of fork()
 * (nworkers 0 there: the parent's workers are not its threads). A loop started afterwards (by a
 * destructor of another library at the process's end) runs on its caller alone. */
/* The keys lx_tls_key_create made (team.h): a handful per library (gemm's and int8's scratch
 * slots, the caches of heap.c, array.c, scope.c, layers_common.c, autodiff.c). */
#define TLS_KEYS_MAX 64
static pthread_key_t tls_keys[TLS_KEYS_MAX];
static int tls_nkeys;
static pthread_mutex_t tls_mu = PTHREAD_MUTEX_INITIALIZER;

/* fork() while another thread records a key: the child must not inherit tls_mu locked */
static void tls_prepare(void) { pthread_mutex_lock(&tls_mu); }
static void tls_parent(void) { pthread_mutex_unlock(&tls_mu); }
static void tls_child(void) { pthread_mutex_init(&tls_mu, NULL); }
static pthread_once_t tls_atfork_once = PTHREAD_ONCE_INIT;
static void tls_register_atfork(void) { (void)pthread_atfork(tls_prepare, tls_parent, tls_child); }

int lx_tls_key_create(pthread_key_t *key, void (*destructor)(void *)) {
    pthread_once(&tls_atfork_once, tls_register_atfork);
    int rc = pthread_key_create(key, destructor);
    if (rc != 0) return rc;
    pthread_mutex_lock(&tls_mu);
    if (tls_nkeys < TLS_KEYS_MAX) tls_keys[tls_nkeys++] = *key;
    pthread_mutex_unlock(&tls_mu);
    return 0;
}

__attribute__((destructor)) static void team_shutdown(void) {
    pthread_mutex_lock(&mu);
    atomic_store(&quit, true);
    int n = nworkers;
    nworkers = 0;
    atomic_fetch_add(&generation, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < n; i++)
        if (!pthread_equal(threads[i], pthread_self())) (void)pthread_join(threads[i], NULL);
    /* the workers ran their keys' destructors as they left; the keys go now, so that a program
     * thread exiting after an unload runs none of them (they would be in unmapped code) */
    pthread_mutex_lock(&tls_mu);
    for (int i = 0; i < tls_nkeys; i++) (void)pthread_key_delete(tls_keys[i]);
    tls_nkeys = 0;
    pthread_mutex_unlock(&tls_mu);
}

void lx_team_run(int nthreads, void (*fn)(void *), void *arg) {
    if (nthreads > LX_TEAM_MAX) nthreads = LX_TEAM_MAX;
    int tid = cur_tid;
    cur_tid = 0;
    if (nthreads <= 1 || atomic_flag_test_and_set(&busy)) {
        fn(arg);
        cur_tid = tid;
        return;
    }
    pthread_once(&atfork_once, team_register_atfork);
    pthread_mutex_lock(&mu);
    while (nworkers < nthreads - 1 && !atomic_load(&quit)) {
        if (pthread_create(&threads[nworkers], NULL, worker, (void *)(long)nworkers) != 0) break;
        nworkers++;
    }
    job_fn = fn;
    job_arg = arg;
    atomic_store(&wanted, nthreads - 1);
    atomic_store(&open_, true);
    atomic_fetch_add(&generation, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&mu);
    fn(arg);
    atomic_store(&open_, false);
    LX_SPIN_WAIT(atomic_load(&active) != 0); /* only workers that joined: each finishes its item */
    atomic_flag_clear(&busy);
    cur_tid = tid;
}

int lx_parallel_tid(void) { return cur_tid; }

/* One loop: chunk c is items [c q + min(c, r), + q + (c < r)) for a static loop, [c grain, + grain)
 * for a dynamic one; whoever runs pf_run claims chunks until none is left. */
typedef struct pf_job {
    lx_range_fn fn;
    void *ctx;
    int64_t n, nchunks, q, r, grain; /* grain 0: static */
    atomic_llong next;
    atomic_int failed;
} pf_job;

static void pf_run(void *p) {
    pf_job *j = p;
    for (;;) {
        int64_t c = (int64_t)atomic_fetch_add(&j->next, 1);
        if (c >= j->nchunks) return;
        int64_t lo, hi;
        if (j->grain > 0) {
            lo = c * j->grain;
            hi = j->n - lo < j->grain ? j->n : lo + j->grain;
        } else {
            lo = c * j->q + (c < j->r ? c : j->r);
            hi = lo + j->q + (c < j->r);
        }
        if (j->fn(j->ctx, lo, hi) != 0) atomic_store(&j->failed, 1);
    }
}

static int pf_start(int nthreads, pf_job *j) {
    if (j->nchunks <= 1 || nthreads <= 1) { /* no team: the whole loop in one call */
        int tid = cur_tid;
        cur_tid = 0;
        int rc = j->n > 0 ? j->fn(j->ctx, 0, j->n) : 0;
        cur_tid = tid;
        return rc != 0;
    }
    atomic_init(&j->next, 0);
    atomic_init(&j->failed, 0);
    lx_team_run(nthreads < j->nchunks ? nthreads : (int)j->nchunks, pf_run, j);
    return atomic_load(&j->failed);
}

int lx_parallel_for(int nthreads, int64_t n, lx_range_fn fn, void *ctx) {
    pf_job j = {.fn = fn, .ctx = ctx, .n = n};
    j.nchunks = n < nthreads ? n : nthreads;
    if (j.nchunks > 1) j.q = n / j.nchunks, j.r = n % j.nchunks;
    return pf_start(nthreads, &j);
}

int lx_parallel_for_dynamic(int nthreads, int64_t n, int64_t grain, lx_range_fn fn, void *ctx) {
    if (grain < 1) grain = 1;
    pf_job j = {.fn = fn, .ctx = ctx, .n = n, .grain = grain};
    j.nchunks = n > 0 ? (n + grain - 1) / grain : 0;
    return pf_start(nthreads, &j);
}
