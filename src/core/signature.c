/* Python's argument binding check (signature.h). */
#include "signature.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SIG_MAX 32

typedef struct {
    char name[48];
    bool has_default, kwonly;
} sig_param;

/* Parse the signature; false on a malformed one (a programming error, reported as INTERNAL). */
static bool parse_sig(const char *sig, sig_param *ps, int *np, bool *varkw) {
    *np = 0;
    *varkw = false;
    bool kwonly = false;
    const char *p = sig;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        if (p[0] == '*' && p[1] == '*') {
            *varkw = true;
            while (*p && *p != ',') p++;
            continue;
        }
        if (*p == '*') {
            kwonly = true;
            p++;
            continue;
        }
        if (*np == SIG_MAX) return false;
        sig_param *q = &ps[(*np)++];
        size_t n = 0;
        while (*p && *p != ',' && *p != '=' && *p != ' ') {
            if (n + 1 >= sizeof q->name) return false;
            q->name[n++] = *p++;
        }
        q->name[n] = 0;
        while (*p == ' ') p++;
        q->has_default = *p == '=';
        q->kwonly = kwonly;
        while (*p && *p != ',') p++;
    }
    return true;
}

bool lx_sig_names_param(const char *sig, const char *name) {
    sig_param ps[SIG_MAX];
    int np;
    bool varkw;
    if (!sig || !name || !parse_sig(sig, ps, &np, &varkw)) return false;
    for (int i = 0; i < np; i++)
        if (strcmp(ps[i].name, name) == 0) return true;
    return false;
}

/* 'a', 'a' and 'b', 'a', 'b' and 'c' - Python's list of missing names. */
static void name_list(const sig_param *ps, const int *idx, int n, char *buf, size_t cap) {
    size_t off = 0;
    buf[0] = 0;
    for (int i = 0; i < n && off < cap; i++) {
        const char *sep = i == 0 ? "" : i == n - 1 ? (n > 2 ? ", and " : " and ") : ", ";
        int k = snprintf(buf + off, cap - off, "%s'%s'", sep, ps[idx[i]].name);
        if (k < 0) break;
        off += (size_t)k;
    }
}

lx_status lx_call_check_sig(const char *owner, const char *method, const char *sig, const lx_call *c) {
    if (!sig || !c) return LX_OK;
    /* Signatures are static strings checked on every module call: parse each once per thread
     * (a small cache keyed by the string's address). */
    enum { CACHE = 16 };
    static _Thread_local struct {
        const char *sig;
        sig_param ps[SIG_MAX];
        int np;
        bool varkw;
    } cache[CACHE];
    unsigned slot = (unsigned)(((uintptr_t)sig >> 3) % CACHE);
    if (cache[slot].sig != sig) {
        cache[slot].sig = NULL;
        if (!parse_sig(sig, cache[slot].ps, &cache[slot].np, &cache[slot].varkw))
            return lx_fail(LX_ERR_INTERNAL, "%s.%s: malformed signature \"%s\"", owner, method, sig);
        cache[slot].sig = sig;
    }
    const sig_param *ps = cache[slot].ps;
    const int np = cache[slot].np;
    /* the usual call: every parameter given by position, no keywords */
    if (c->nkwargs == 0 && c->nargs == np) {
        bool all_pos = true;
        for (int i = 0; i < np; i++) all_pos = all_pos && !ps[i].kwonly;
        if (all_pos) return LX_OK;
    }
    const bool varkw = cache[slot].varkw;
    int npos = 0, nreq = 0;
    for (int i = 0; i < np; i++)
        if (!ps[i].kwonly) {
            npos++;
            if (!ps[i].has_default) nreq++;
        }
    if (c->nargs > npos) {
        /* Python counts self: "takes 2 positional arguments but 3 were given" */
        if (nreq == npos)
            return lx_fail(LX_ERR_TYPE, "%s.%s() takes %d positional argument%s but %d were given", owner, method,
                           npos + 1, npos + 1 == 1 ? "" : "s", c->nargs + 1);
        return lx_fail(LX_ERR_TYPE, "%s.%s() takes from %d to %d positional arguments but %d were given", owner,
                       method, nreq + 1, npos + 1, c->nargs + 1);
    }
    bool given[SIG_MAX] = {false};
    int k = 0;
    for (int i = 0; i < np && k < c->nargs; i++)
        if (!ps[i].kwonly) given[i] = true, k++;
    for (int j = 0; j < c->nkwargs; j++) {
        const char *name = c->kwargs[j].name ? c->kwargs[j].name : "";
        int idx = -1;
        for (int i = 0; i < np; i++)
            if (strcmp(ps[i].name, name) == 0) idx = i;
        if (idx < 0) {
            if (varkw) continue;
            return lx_fail(LX_ERR_TYPE, "%s.%s() got an unexpected keyword argument '%s'", owner, method, name);
        }
        if (given[idx]) return lx_fail(LX_ERR_TYPE, "%s.%s() got multiple values for argument '%s'", owner, method, name);
        given[idx] = true;
    }
    for (int pass = 0; pass < 2; pass++) { /* positional first, as Python reports */
        int missing[SIG_MAX], nm = 0;
        for (int i = 0; i < np; i++)
            if (ps[i].kwonly == (pass == 1) && !ps[i].has_default && !given[i]) missing[nm++] = i;
        if (nm) {
            char names[512];
            name_list(ps, missing, nm, names, sizeof names);
            return lx_fail(LX_ERR_TYPE, "%s.%s() missing %d required %s argument%s: %s", owner, method, nm,
                           pass ? "keyword-only" : "positional", nm > 1 ? "s" : "", names);
        }
    }
    return LX_OK;
}
