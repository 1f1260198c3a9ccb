/* linnx/threads.h - one thread-count setting for everything linnx runs in parallel.
 *
 * OpenBLAS (GEMM above the small-size threshold) and linnx's own OpenMP loops (im2col, pooling,
 * softmax rows, attention heads, small batched GEMMs) both obey this one number, so a program
 * pins linnx to n cores with a single call.
 *
 * Default: the environment variable LINNX_THREADS if it holds a positive integer, else every core
 * this process may use. The setting is process-wide.
 */
#ifndef LINNX_THREADS_H
#define LINNX_THREADS_H

#include "linnx/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Use n threads from now on (n >= 1); n == 0 restores the default. Negative n is
 * LX_ERR_INVALID_ARGUMENT and leaves the setting unchanged. */
lx_status lx_set_num_threads(int n);
/* The thread count in force (always >= 1). */
int lx_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif
