/* Replacements of malloc & co. that count every heap allocation of the process, the library's
 * included (a test links liblinnx statically, and glibc lets a program replace malloc; these
 * forward to glibc's own allocator). The including test defines, before including this,
 *     static void heap_count(size_t bytes);
 * which each allocating call invokes first (free is not counted). Compiled only when
 * HEAP_COUNTED (not under the sanitizers, whose runtimes replace malloc themselves). Used by
 * test_train_steady.c and test_quant_steady.c. */
#ifndef LX_HEAP_COUNT_H
#define LX_HEAP_COUNT_H

#include <stddef.h>

#if HEAP_COUNTED
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void __libc_free(void *);

void *malloc(size_t n) {
    heap_count(n);
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t s) {
    heap_count(n * s);
    return __libc_calloc(n, s);
}
void *realloc(void *p, size_t n) {
    heap_count(n);
    return __libc_realloc(p, n);
}
void free(void *p) { __libc_free(p); }
void *aligned_alloc(size_t a, size_t n) {
    heap_count(n);
    return __libc_memalign(a, n);
}
void *memalign(size_t a, size_t n) {
    heap_count(n);
    return __libc_memalign(a, n);
}
int posix_memalign(void **out, size_t a, size_t n) {
    heap_count(n);
    void *p = __libc_memalign(a, n);
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}
#endif

#endif
