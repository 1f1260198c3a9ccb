/* Internal: forced include (-include) of every library source when LINNX_FAULT_INJECTION is ON.
 * Routes malloc/calloc/realloc/aligned_alloc through the fault counter of linnx/fault.h, so
 * fault injection is one file and one compile flag, not a wrapper at every call site.
 * free() is untouched. Used for the library and the linnx program (whose parsers are swept too).
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

static inline bool lx_fault_fail_(void) {
    return __builtin_expect(atomic_load_explicit(&lx_fault_armed_, memory_order_relaxed) != 0, 0) && lx_fault_hit_();
}
static inline void *lx_fault_malloc_(size_t n) { return lx_fault_fail_() ? NULL : malloc(n); }
static inline void *lx_fault_calloc_(size_t n, size_t s) { return lx_fault_fail_() ? NULL : calloc(n, s); }
static inline void *lx_fault_realloc_(void *p, size_t n) { return lx_fault_fail_() ? NULL : realloc(p, n); }
static inline void *lx_fault_aligned_alloc_(size_t a, size_t n) { return lx_fault_fail_() ? NULL : aligned_alloc(a, n); }

#define malloc(n) lx_fault_malloc_(n)
#define calloc(n, s) lx_fault_calloc_(n, s)
#define realloc(p, n) lx_fault_realloc_(p, n)
#define aligned_alloc(a, n) lx_fault_aligned_alloc_(a, n)

#endif
