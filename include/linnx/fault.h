/* linnx/fault.h - allocation fault injection and the array size limit, for testing that every allocation failure turns
 * into a clean error (SQLite's malloc test, in small).
 *
 * Built in when CMake's LINNX_FAULT_INJECTION is ON (the default): every malloc, calloc, realloc
 * and aligned_alloc of the library goes through one counter (src/core/fault_inject.h, a forced
 * include, so the rule lives in one place). Disarmed it costs one predictable branch per
 * allocation. With the option OFF these functions exist but do nothing (lx_fault_count is 0).
 *
 * The environment arms it at program start:
 *   LINNX_FAIL_ALLOC=N          the N-th allocation (1-based) fails, later ones succeed
 *   LINNX_FAIL_ALLOC=0          count only (never fails)
 *   LINNX_FAIL_ALLOC_REPEAT=1   with N: the N-th and every later allocation fail
 * Not thread-safe to re-arm while other threads allocate; counting itself is atomic.
 */
#ifndef LINNX_FAULT_H
#define LINNX_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* Arm: n > 0 fails the n-th allocation from now (and every later one when `repeat`); n == 0
 * counts only; n < 0 disarms. Resets the count and the fired flag. */
void lx_fault_set(int64_t n, bool repeat);
/* Allocations counted since the last lx_fault_set (or program start when armed by the env). */
int64_t lx_fault_count(void);
/* Whether an injected failure has happened since the last lx_fault_set. */
bool lx_fault_fired(void);
/* Whether fault injection is compiled in. */
bool lx_fault_available(void);

/* A resource limit, like SQLite's hard heap limit: an array whose data would need more than
 * `bytes` fails to allocate (LX_ERR_NO_MEMORY, the message naming the size and the limit).
 * 0 (the default) means no limit. Abstract arrays (shape only) are not limited. Process-wide.
 * The linnx CLI sets 1 GiB unless given --max-array-bytes. */
void lx_set_max_array_bytes(size_t bytes);
size_t lx_max_array_bytes(void);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
