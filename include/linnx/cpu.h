/* linnx/cpu.h - what the CPU offers and which kernel set linnx runs.
 *
 * linnx is built for the baseline of its architecture (any x86-64, any aarch64); its hot kernels
 * (GEMM, convolution, softmax and norm rows) also exist in AVX2+FMA and AVX-512 versions, and one
 * set is chosen at run time:
 *
 *   1. lx_isa_set(name), if the program called it;
 *   2. else the environment variable LINNX_ISA ("avx512", "avx2" or "generic"), read once at the
 *      first kernel call: a value this CPU (or this build) cannot run, or an unknown value, falls
 *      back to the best supported set with one warning line on stderr ("linnx: LINNX_ISA=...");
 *   3. else the best set the CPU supports (cpuid, with the OS's saved-register check, so a
 *      virtual machine or valgrind that hides AVX-512 gets AVX2).
 *
 * Results differ between sets only by float rounding (summation order and FMA); random numbers and
 * everything that must be bit-exact with JAX are the same code in every set.
 */
#ifndef LINNX_CPU_H
#define LINNX_CPU_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/status.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* Kernel sets, from the most portable to the widest. */
typedef enum { LX_ISA_GENERIC = 0, LX_ISA_AVX2 = 1, LX_ISA_AVX512 = 2 } lx_isa;

/* Features and caches as detected once per process (never NULL; zeros where unknown). Cache
 * sizes are per core for L1d and L2 and per package for L3, in bytes. */
typedef struct {
    bool avx2, fma, f16c;                          /* with OS support for 256-bit state */
    bool avx512f, avx512bw, avx512vl, avx512dq;    /* with OS support for 512-bit state */
    bool avx512_vnni, avx512_bf16;
    int64_t l1d_bytes, l2_bytes, l3_bytes;
    char vendor[13];                               /* "GenuineIntel", "AuthenticAMD", "" off x86 */
} lx_cpu_info;

const lx_cpu_info *lx_cpu_info_get(void);

/* Whether this CPU and this build can run a kernel set (GENERIC always). */
bool lx_isa_supported(lx_isa isa);
/* The best supported set. */
lx_isa lx_isa_best(void);
/* The set in force (see the order above). */
lx_isa lx_isa_current(void);
/* "generic", "avx2", "avx512" (NULL for a value outside the enum). */
const char *lx_isa_name(lx_isa isa);
/* Force a set by name for the whole process; NULL returns to LINNX_ISA / the best. Fails, leaving
 * the setting unchanged, with LX_ERR_INVALID_ARGUMENT for an unknown name and LX_ERR_UNSUPPORTED
 * for a set this CPU or build cannot run. */
lx_status lx_isa_set(const char *name);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
