/* Internal: forced include (-include) of every library source (and the linnx program).
 * Routes malloc/calloc/realloc/free through src/core/heap.c, one file and one compile flag rather
 * than a wrapper at every call site:
 *   - the per-thread block cache (heap.c): a block the library frees goes back to a short list of
 *     its size class and the next request of that class takes it, so a steady-state training step
 *     or inference call, which frees what the step before it allocated, calls no allocator at all
 *     (docs/autodiff.md, "Allocation-free steps"); every block is a plain malloc block, so memory
 *     the library hands out may still be released with free() by its users and vice versa;
 *   - with LINNX_FAULT_INJECTION, the fault counter of linnx/fault.h (every request counts,
 *     cached or not, so LINNX_FAIL_ALLOC=N means the same allocation either way).
 * aligned_alloc only passes the fault counter. Sanitizer builds bypass the cache.
 * It includes <stdlib.h> before the source does, so feature macros must come from the command
 * line (CMake passes _DEFAULT_SOURCE=1 with it); a source that needs _GNU_SOURCE says so there. */
#ifndef LINNX_CORE_FAULT_INJECT_H
#define LINNX_CORE_FAULT_INJECT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

extern atomic_int lx_fault_armed_;
bool lx_fault_hit_(void); /* counts one allocation; true when it must fail */

#ifdef LINNX_FAULT_INJECTION
static inline bool lx_fault_fail_(void) {
    return __builtin_expect(atomic_load_explicit(&lx_fault_armed_, memory_order_relaxed) != 0, 0) && lx_fault_hit_();
}
#else
static inline bool lx_fault_fail_(void) { return false; }
#endif

void *lx_heap_malloc_(size_t n);
void *lx_heap_calloc_(size_t n, size_t s);
void *lx_heap_realloc_(void *p, size_t n);
void lx_heap_free_(void *p);
size_t lx_heap_held_(void); /* bytes this thread's cache holds (tests/test_heap.c) */

static inline void *lx_fault_malloc_(size_t n) { return lx_fault_fail_() ? NULL : lx_heap_malloc_(n); }
static inline void *lx_fault_calloc_(size_t n, size_t s) { return lx_fault_fail_() ? NULL : lx_heap_calloc_(n, s); }
static inline void *lx_fault_realloc_(void *p, size_t n) { return lx_fault_fail_() ? NULL : lx_heap_realloc_(p, n); }
static inline void *lx_fault_aligned_alloc_(size_t a, size_t n) { return lx_fault_fail_() ? NULL : aligned_alloc(a, n); }

/* (src/core/heap.c #undefs these to reach the C library's own.) */
#define malloc(n) lx_fault_malloc_(n)
#define calloc(n, s) lx_fault_calloc_(n, s)
#define realloc(p, n) lx_fault_realloc_(p, n)
#define aligned_alloc(a, n) lx_fault_aligned_alloc_(a, n)
#define free(p) lx_heap_free_(p)

#endif
