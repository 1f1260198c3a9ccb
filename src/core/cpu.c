/* CPU feature and cache detection (cpuid), and the process-wide kernel-set choice (linnx/cpu.h). */
#include "linnx/cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define LX_X86 1
#endif

static lx_cpu_info info;
static pthread_once_t info_once = PTHREAD_ONCE_INIT;

#if defined(LX_X86)
static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    if (!__get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3])) r[0] = r[1] = r[2] = r[3] = 0;
}

/* XCR0: which register states the OS saves on a context switch (xgetbv, needs OSXSAVE). */
static uint64_t xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Deterministic cache parameters: leaf 4 (Intel) or 0x8000001D (AMD), same layout. */
static void caches_from_leaf(unsigned leaf) {
    for (unsigned i = 0; i < 16; i++) {
        unsigned r[4];
        cpuid(leaf, i, r);
        unsigned type = r[0] & 31, level = (r[0] >> 5) & 7;
        if (type == 0) break;
        if (type == 2) continue; /* instruction cache */
        int64_t size = (int64_t)((r[1] >> 22) + 1) * (((r[1] >> 12) & 0x3FF) + 1) * ((r[1] & 0xFFF) + 1) * ((int64_t)r[2] + 1);
        if (level == 1) info.l1d_bytes = size;
        else if (level == 2) info.l2_bytes = size;
        else if (level == 3) info.l3_bytes = size;
    }
}

static void detect_x86(void) {
    unsigned r[4];
    cpuid(0, 0, r);
    unsigned max_leaf = r[0];
    memcpy(info.vendor, &r[1], 4);
    memcpy(info.vendor + 4, &r[3], 4);
    memcpy(info.vendor + 8, &r[2], 4);
    info.vendor[12] = '\0';
    cpuid(1, 0, r);
    bool osxsave = (r[2] >> 27) & 1, fma = (r[2] >> 12) & 1, f16c = (r[2] >> 29) & 1, avx = (r[2] >> 28) & 1;
    uint64_t xcr = osxsave ? xcr0() : 0;
    bool ymm = (xcr & 0x6) == 0x6, zmm = ymm && (xcr & 0xE0) == 0xE0;
    if (max_leaf >= 7) {
        cpuid(7, 0, r);
        unsigned ebx = r[1], ecx = r[2];
        info.avx2 = ymm && avx && ((ebx >> 5) & 1);
        info.fma = ymm && fma;
        info.f16c = ymm && f16c;
        info.avx512f = zmm && ((ebx >> 16) & 1);
        info.avx512dq = info.avx512f && ((ebx >> 17) & 1);
        info.avx512bw = info.avx512f && ((ebx >> 30) & 1);
        info.avx512vl = info.avx512f && ((ebx >> 31) & 1);
        info.avx512_vnni = info.avx512f && ((ecx >> 11) & 1);
        cpuid(7, 1, r);
        info.avx512_bf16 = info.avx512f && ((r[0] >> 5) & 1);
    }
    if (max_leaf >= 4 && strcmp(info.vendor, "GenuineIntel") == 0) caches_from_leaf(4);
    cpuid(0x80000000u, 0, r);
    unsigned max_ext = r[0];
    if (info.l1d_bytes == 0 && max_ext >= 0x8000001Du) {
        cpuid(0x80000001u, 0, r);
        if ((r[2] >> 22) & 1) caches_from_leaf(0x8000001Du); /* TOPOEXT */
    }
    if (info.l1d_bytes == 0 && max_ext >= 0x80000006u) { /* AMD's older leaves */
        cpuid(0x80000005u, 0, r);
        info.l1d_bytes = (int64_t)(r[2] >> 24) << 10;
        cpuid(0x80000006u, 0, r);
        info.l2_bytes = (int64_t)(r[2] >> 16) << 10;
        info.l3_bytes = (int64_t)(r[3] >> 18) << 19;
    }
}
#endif

static void detect(void) {
#if defined(LX_X86)
    detect_x86();
#endif
#if defined(_SC_LEVEL1_DCACHE_SIZE)
    if (info.l1d_bytes <= 0) info.l1d_bytes = sysconf(_SC_LEVEL1_DCACHE_SIZE) > 0 ? sysconf(_SC_LEVEL1_DCACHE_SIZE) : 0;
    if (info.l2_bytes <= 0) info.l2_bytes = sysconf(_SC_LEVEL2_CACHE_SIZE) > 0 ? sysconf(_SC_LEVEL2_CACHE_SIZE) : 0;
    if (info.l3_bytes <= 0) info.l3_bytes = sysconf(_SC_LEVEL3_CACHE_SIZE) > 0 ? sysconf(_SC_LEVEL3_CACHE_SIZE) : 0;
#endif
}

const lx_cpu_info *lx_cpu_info_get(void) {
    pthread_once(&info_once, detect);
    return &info;
}

bool lx_isa_supported(lx_isa isa) {
    const lx_cpu_info *c = lx_cpu_info_get();
    switch (isa) {
    case LX_ISA_GENERIC: return true;
#if defined(LINNX_X86_KERNELS)
    case LX_ISA_AVX2: return c->avx2 && c->fma;
    case LX_ISA_AVX512: return c->avx2 && c->fma && c->avx512f && c->avx512bw && c->avx512vl && c->avx512dq;
#endif
    default: (void)c; return false;
    }
}

lx_isa lx_isa_best(void) {
    return lx_isa_supported(LX_ISA_AVX512) ? LX_ISA_AVX512 : lx_isa_supported(LX_ISA_AVX2) ? LX_ISA_AVX2 : LX_ISA_GENERIC;
}

const char *lx_isa_name(lx_isa isa) {
    switch (isa) {
    case LX_ISA_GENERIC: return "generic";
    case LX_ISA_AVX2: return "avx2";
    case LX_ISA_AVX512: return "avx512";
    }
    return NULL;
}

static int parse_isa(const char *name) {
    for (int i = LX_ISA_GENERIC; i <= LX_ISA_AVX512; i++)
        if (strcmp(name, lx_isa_name((lx_isa)i)) == 0) return i;
    return -1;
}

static atomic_int isa_default = -1; /* LINNX_ISA or the best, once */
static atomic_int isa_forced = -1;  /* lx_isa_set */
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void read_env(void) {
    lx_isa best = lx_isa_best(), pick = best;
    const char *env = getenv("LINNX_ISA");
    if (env && *env) {
        int want = parse_isa(env);
        /* There is no caller to fail to here: a warning on stderr, and the best set runs. */
        if (want < 0)
            fprintf(stderr, "linnx: LINNX_ISA=%s is not one of avx512, avx2, generic; using %s\n", env, lx_isa_name(best));
        else if (!lx_isa_supported((lx_isa)want))
            fprintf(stderr, "linnx: LINNX_ISA=%s is not supported by this CPU or build; using %s\n", env, lx_isa_name(best));
        else pick = (lx_isa)want;
    }
    atomic_store(&isa_default, (int)pick);
}

lx_isa lx_isa_current(void) {
    int f = atomic_load_explicit(&isa_forced, memory_order_relaxed);
    if (f >= 0) return (lx_isa)f;
    int d = atomic_load_explicit(&isa_default, memory_order_acquire);
    if (d >= 0) return (lx_isa)d;
    pthread_once(&env_once, read_env);
    return (lx_isa)atomic_load(&isa_default);
}

lx_status lx_isa_set(const char *name) {
    if (!name) {
        atomic_store(&isa_forced, -1);
        return LX_OK;
    }
    int want = parse_isa(name);
    if (want < 0) return lx_fail(LX_ERR_INVALID_ARGUMENT, "isa_set: unknown kernel set '%s' (avx512, avx2, generic)", name);
    if (!lx_isa_supported((lx_isa)want))
        return lx_fail(LX_ERR_UNSUPPORTED, "isa_set: kernel set '%s' is not supported by this CPU or build", name);
    atomic_store(&isa_forced, want);
    return LX_OK;
}
