/* A small pool of persistent worker threads for the kernels that must not wait on a pre-empted
 * thread (not installed). */
#ifndef LINNX_TEAM_H
#define LINNX_TEAM_H

/* Run fn(arg) on the calling thread and on up to nthreads - 1 pool workers, each joining only if
 * it wakes while the job is still open. Returns once the caller's fn has returned and every worker
 * that joined has left fn. fn must take its work from a shared counter so that whoever runs it,
 * including the caller alone, finishes the job: a worker that the OS does not schedule in time is
 * simply never waited for. One job at a time: a caller that finds the pool busy (another thread's
 * job) runs fn alone. nthreads <= 1 calls fn directly. */
void lx_team_run(int nthreads, void (*fn)(void *), void *arg);

#endif
