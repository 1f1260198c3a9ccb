/* Test vectors written the way spec/c-anchors.md §4 prints them: hex bytes, 'quoted' ASCII, and
 * XX*N for N repeats of one byte. */
#ifndef IO_VEC_H
#define IO_VEC_H
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static size_t vec_parse(const char *s, unsigned char *out, size_t cap) {
    size_t n = 0;
    while (*s) {
        if (isspace((unsigned char)*s)) { s++; continue; }
        if (*s == '\'') {
            s++;
            while (*s && *s != '\'') { if (n < cap) out[n] = (unsigned char)*s; n++; s++; }
            if (*s) s++;
            continue;
        }
        char *end;
        unsigned long b = strtoul(s, &end, 16);
        s = end;
        unsigned long rep = 1;
        if (*s == '*') rep = strtoul(s + 1, &end, 10), s = end;
        for (unsigned long i = 0; i < rep; i++) { if (n < cap) out[n] = (unsigned char)b; n++; }
    }
    return n;
}
#endif
