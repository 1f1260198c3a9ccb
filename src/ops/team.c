/* lx_team_run (team.h): persistent workers woken per job; the caller never waits for a worker that
 * has not joined, so a busy vCPU delays a job by at most the item its thread holds. */
#include "team.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#define TEAM_MAX 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int nworkers;                  /* started so far (under mu) */
static atomic_flag busy = ATOMIC_FLAG_INIT;
static atomic_ullong generation;      /* bumped per job */
static atomic_bool open_;             /* the current job still takes workers */
static atomic_int active;             /* workers inside fn */
static atomic_int wanted;             /* workers the current job may use */
static void (*job_fn)(void *);
static void *job_arg;

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
        if (id >= atomic_load(&wanted)) continue;
        atomic_fetch_add(&active, 1);
        /* Dekker with the caller's close: either the caller sees us active, or we see it closed. */
        if (atomic_load(&open_) && atomic_load(&generation) == g) job_fn(job_arg);
        atomic_fetch_sub(&active, 1);
    }
    return NULL;
}

void lx_team_run(int nthreads, void (*fn)(void *), void *arg) {
    if (nthreads > TEAM_MAX) nthreads = TEAM_MAX;
    if (nthreads <= 1 || atomic_flag_test_and_set(&busy)) {
        fn(arg);
        return;
    }
    pthread_mutex_lock(&mu);
    while (nworkers < nthreads - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker, (void *)(long)nworkers);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
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
    while (atomic_load(&active) != 0) sched_yield(); /* only workers that joined: each finishes its item */
    atomic_flag_clear(&busy);
}
