/* linnx's one thread pool (not installed): every parallel loop in linnx runs on it, none on
 * OpenMP. Persistent workers, woken per job; the caller runs work itself and never waits for a
 * worker that has not joined, so a pre-empted vCPU delays a job by at most the item its thread
 * holds, never by a whole share of it. Workers spin briefly (sched_yield) after a job, then sleep.
 * One job at a time: a call made while the pool is busy (from inside an item, or from another
 * user thread) runs inline on its caller, alone, and so never deadlocks. */
#ifndef LINNX_TEAM_H
#define LINNX_TEAM_H

#include <pthread.h>
#include <stdint.h>

/* The most threads one job runs on (the caller and LX_TEAM_MAX - 1 workers): lx_parallel_tid() is
 * always below it, so per-thread scratch with this many slots covers every participant (conv.c).
 * include/linnx/threads.h documents the number. */
#define LX_TEAM_MAX 64

/* pthread_key_create for a key whose destructor is linnx code (per-thread caches and scratch): the
 * key is also recorded, and the library's unloading deletes every recorded key after the pool's
 * workers are joined (team_shutdown). Without that, a program thread that used linnx and exits
 * after dlclose would run a destructor in unmapped code. Such a thread's cached memory is then
 * not freed (a leak on that path only); keys are never deleted otherwise. Returns
 * pthread_key_create's result. */
int lx_tls_key_create(pthread_key_t *key, void (*destructor)(void *));

/* Run fn(arg) on the calling thread and on up to nthreads - 1 pool workers, each joining only if
 * it wakes while the job is still open. Returns once the caller's fn has returned and every worker
 * that joined has left fn. fn must take its work from a shared counter so that whoever runs it,
 * including the caller alone, finishes the job: a worker that the OS does not schedule in time is
 * simply never waited for. nthreads <= 1 calls fn directly; above LX_TEAM_MAX, LX_TEAM_MAX. */
void lx_team_run(int nthreads, void (*fn)(void *), void *arg);

/* Items [lo, hi) of a parallel loop; returns 0, or nonzero to report a failure (the loop goes on
 * with the other items: the caller sees the failure when the loop returns). */
typedef int (*lx_range_fn)(void *ctx, int64_t lo, int64_t hi);

/* for (i = 0; i < n; i++) over the pool, as OpenMP's schedule(static): the items are cut into
 * min(nthreads, n) contiguous chunks exactly where OpenMP cuts them (chunk t of k holds n / k
 * items, one more for t < n % k), and fn gets one whole chunk per call, so a loop whose result
 * depends on the partition gives the same bits as before. Whoever is free takes the next chunk
 * (the caller takes the others' chunks when they do not come). nthreads <= 1 or n <= 1 calls
 * fn(ctx, 0, n) on the caller, no thread touched. Returns nonzero when any call did. */
int lx_parallel_for(int nthreads, int64_t n, lx_range_fn fn, void *ctx);

/* The same with items handed out `grain` at a time (schedule(dynamic, grain)): for uneven items. */
int lx_parallel_for_dynamic(int nthreads, int64_t n, int64_t grain, lx_range_fn fn, void *ctx);

/* Inside fn: which participant of the current loop runs it, 0 (the caller) .. nthreads - 1, for
 * per-thread scratch. Two calls on one thread during one loop return the same id; no two threads
 * in one loop share an id. 0 outside a loop, and inside a loop run inline. */
int lx_parallel_tid(void);

/* Wait while `cond` holds: a CPU pause loop for up to LX_SPIN_WAIT_NS, then sched_yield() until it
 * no longer holds. For waits on another participant's item (microseconds). Why not sched_yield
 * from the start: on Linux's EEVDF scheduler (6.6 on) a sched_yield while any other task is
 * runnable on the CPU, even a nice-19 compile, pushes the caller's deadline out by a slice, and
 * that task then runs a whole slice (about a millisecond) although the wait would have ended
 * microseconds later. On a quiet machine sched_yield returns at once and the two are the same;
 * the pause loop is bounded so that a caller sharing its CPU with the thread it waits for gives
 * the CPU up after LX_SPIN_WAIT_NS. Needs <sched.h>, <time.h>. */
#define LX_SPIN_WAIT_NS 50000
#if defined(__x86_64__) || defined(__i386__)
#define LX_CPU_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define LX_CPU_PAUSE() __asm__ volatile("yield")
#else
#define LX_CPU_PAUSE() ((void)0)
#endif
#define LX_SPIN_WAIT(cond)                                                                                 \
    do {                                                                                                    \
        struct timespec lx_sw_t0_, lx_sw_t_;                                                                \
        clock_gettime(CLOCK_MONOTONIC, &lx_sw_t0_);                                                         \
        for (unsigned lx_sw_i_ = 1; (cond); lx_sw_i_++) {                                                   \
            LX_CPU_PAUSE();                                                                                 \
            if (lx_sw_i_ % 64 != 0) continue;                                                               \
            clock_gettime(CLOCK_MONOTONIC, &lx_sw_t_);                                                      \
            if ((lx_sw_t_.tv_sec - lx_sw_t0_.tv_sec) * 1000000000LL + (lx_sw_t_.tv_nsec - lx_sw_t0_.tv_nsec) >  \
                LX_SPIN_WAIT_NS)                                                                            \
                break;                                                                                      \
        }                                                                                                   \
        while (cond) sched_yield();                                                                         \
    } while (0)

#endif
