/* linnx/threads.h - one thread-count setting for everything linnx runs in parallel.
 *
 * linnx runs its parallel work on one pool of its own threads (elementwise and broadcast ops,
 * casts, reductions, transposes and gathers, random bits and samplers, GEMM, convolution, pooling,
 * softmax and norm rows, attention heads, optimizer steps), and OpenBLAS (GEMM shapes it still
 * wins) on its own threads; both obey this one number, whichever thread calls them. linnx does
 * not use OpenMP: OMP_NUM_THREADS and OMP_WAIT_POLICY do not change it, and a program's own OpenMP
 * regions keep their own settings. A program pins linnx to n cores with a single call.
 *
 * Default: the environment variable LINNX_THREADS if it holds a positive integer, else every CPU
 * this process may run on (its affinity mask). It is read once, by the first linnx call that needs
 * the count (set it before then); lx_set_num_threads(0) reads it again. The setting is
 * process-wide. One parallel loop runs on the pool at a time: a loop started while another runs
 * (from a second user thread) runs on its caller's thread alone. linnx's own loops use at most
 * 64 threads (OpenBLAS takes the number as it is).
 *
 * The setting is safe to read and change from any thread. This does not make linnx objects
 * shareable: arrays, trees, Variables, boxes and modules are not shared between threads
 * (linnx/array.h).
 */
#ifndef LINNX_THREADS_H
#define LINNX_THREADS_H

#include "linnx/status.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* Use n threads from now on (n >= 1); n == 0 restores the default. Negative n is
 * LX_ERR_INVALID_ARGUMENT and leaves the setting unchanged. */
lx_status lx_set_num_threads(int n);
/* The thread count in force (always >= 1). */
int lx_num_threads(void);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
