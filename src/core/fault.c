/* Allocation fault injection (linnx/fault.h): the counter behind src/core/fault_inject.h. */
#include "linnx/fault.h"

#include <stdatomic.h>
#include <stdlib.h>

#ifdef LINNX_FAULT_INJECTION
#include "fault_inject.h"

atomic_int lx_fault_armed_;
static atomic_llong fault_count, fault_at;
static atomic_int fault_repeat, fault_fired;

bool lx_fault_hit_(void) {
    long long k = atomic_fetch_add(&fault_count, 1) + 1, at = atomic_load(&fault_at);
    if (at > 0 && (k == at || (k > at && atomic_load(&fault_repeat)))) {
        atomic_store(&fault_fired, 1);
        return true;
    }
    return false;
}

void lx_fault_set(int64_t n, bool repeat) {
    atomic_store(&lx_fault_armed_, 0);
    atomic_store(&fault_count, 0);
    atomic_store(&fault_fired, 0);
    atomic_store(&fault_repeat, repeat);
    atomic_store(&fault_at, n > 0 ? n : 0);
    if (n >= 0) atomic_store(&lx_fault_armed_, 1);
}

int64_t lx_fault_count(void) { return atomic_load(&fault_count); }
bool lx_fault_fired(void) { return atomic_load(&fault_fired) != 0; }
bool lx_fault_available(void) { return true; }

/* Armed from the environment before main runs, so a whole CLI run is covered. */
__attribute__((constructor)) static void fault_from_env(void) {
    const char *s = getenv("LINNX_FAIL_ALLOC");
    if (!s || !*s) return;
    char *end;
    long long n = strtoll(s, &end, 10);
    if (*end || n < 0) return;
    const char *r = getenv("LINNX_FAIL_ALLOC_REPEAT");
    lx_fault_set(n, r && *r == '1');
}
#else
void lx_fault_set(int64_t n, bool repeat) { (void)n, (void)repeat; }
int64_t lx_fault_count(void) { return 0; }
bool lx_fault_fired(void) { return false; }
bool lx_fault_available(void) { return false; }
#endif
