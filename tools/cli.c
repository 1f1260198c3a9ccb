/* Shared helpers of the linnx subcommands (see cli.h). */
#include "cli.h"

#include "linnx/checkpoint.h"
#include "linnx/distributed.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* `linnx: <message>\n` as ONE write(2): ranks under mpirun share stderr, and a line written in
 * pieces (prefix, message, newline) interleaves with the other ranks' lines. A newline or carriage
 * return inside the message (a sample of text, a library message) is written as \n / \r, so
 * every error is one line. */
static void cli_errline_v(const char *fmt, va_list ap) {
    char small[1024], *msg = small;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n >= (int)sizeof small) {
        char *big = malloc((size_t)n + 1);
        if (big && vsnprintf(big, (size_t)n + 1, fmt, ap2) >= 0) msg = big;
        else free(big);
    }
    va_end(ap2);
    if (n < 0) msg = strcpy(small, "(unprintable message)");
    size_t len = strlen(msg), cap = 7 + 2 * len + 2;
    char lsmall[2200], *line = cap <= sizeof lsmall ? lsmall : malloc(cap);
    if (!line) { /* out of memory: the message as it is, still in one write when it fits */
        line = lsmall;
        cap = sizeof lsmall;
        len = len > 1000 ? 1000 : len;
    }
    size_t k = 0;
    memcpy(line, "linnx: ", 7);
    k = 7;
    for (size_t i = 0; i < len && k + 3 < cap; i++) {
        if (msg[i] == '\n' || msg[i] == '\r') {
            line[k++] = '\\';
            line[k++] = msg[i] == '\n' ? 'n' : 'r';
        } else {
            line[k++] = msg[i];
        }
    }
    line[k++] = '\n';
    fflush(stderr); /* anything stdio still holds for stderr goes first */
    for (size_t off = 0; off < k;) {
        ssize_t w = write(STDERR_FILENO, line + off, k - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    if (line != lsmall) free(line);
    if (msg != small) free(msg);
}

void cli_errline(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cli_errline_v(fmt, ap);
    va_end(ap);
}

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cli_errline_v(fmt, ap);
    va_end(ap);
    return CLI_EXIT_USAGE;
}

int cli_oom(const char *what) {
    cli_errline("%s: out of memory", what);
    return CLI_EXIT_FAILURE;
}

int cli_stdout_done(void) {
    errno = 0;
    bool bad = fflush(stdout) != 0;
    int e = errno;
    if (!bad && !ferror(stdout)) return 0;
    clearerr(stdout); /* reported once: a second check (main's) stays quiet */
    cli_errline("error writing to standard output: %s", e ? strerror(e) : "output lost");
    return CLI_EXIT_FAILURE;
}

/* Is `sb` the file this process's descriptor `fd` has open? */
static bool same_file(const struct stat *sb, int fd) {
    struct stat f;
    return fstat(fd, &f) == 0 && f.st_dev == sb->st_dev && f.st_ino == sb->st_ino;
}

/* May an output go to `path` (a step of a chain of links)? Not onto this run's own stdout or
 * stderr (`--svg log.txt > log.txt`: the rename would replace the run's log), and not into a
 * folder (its links followed) of open files or devices. NULL, or the reason to refuse. */
static const char *output_place(const char *path) {
    char dir[4096], real[4096];
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (same_file(&sb, STDOUT_FILENO)) return "it is this run's standard output";
        if (same_file(&sb, STDERR_FILENO)) return "it is this run's standard error";
    }
    const char *slash = strrchr(path, '/');
    size_t n = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir) return NULL; /* the checks after it report the length */
    if (n == 0) strcpy(dir, ".");
    else memcpy(dir, path, n), dir[n] = 0;
    if (!realpath(dir, real)) return NULL; /* a missing folder: reported by the checks after it */
    size_t k = strlen(real);
    /* /dev/stdout, /dev/fd/N, /proc/self/fd/N: a link there names an open file (a pipe, a
     * terminal, the file stdout was sent to), and its text is no path to write */
    if (strncmp(real, "/proc/", 6) == 0 && k >= 3 && strcmp(real + k - 3, "/fd") == 0)
        return "it names an open file (/proc/PID/fd, /dev/fd), not a file to replace";
    if (strcmp(real, "/dev") == 0 || (strncmp(real, "/dev/", 5) == 0 && strcmp(real, "/dev/shm") != 0 &&
                                     strncmp(real, "/dev/shm/", 9) != 0))
        return "a folder of devices (/dev) takes no output file";
    return NULL;
}

/* Where a write to `path` lands: `path` itself, or where its chain of symbolic links ends (a
 * relative link read from the link's own folder, as the kernel reads it). The writers make a
 * temporary file next to the path they are given and rename it onto that path, which would
 * replace a link by a file and leave its target as it was; given the end of the chain, they
 * write the target and the link stays. 0, or the errno (ELOOP for a cycle); *why set instead
 * when a step of the chain lies where no output may go (output_place). */
static int output_target(const char *path, char *out, size_t cap, const char **why) {
    size_t n = strlen(path);
    if (cap > 0) out[0] = '\0'; /* the caller reads out even when the path is refused here */
    if (n >= cap) return ENAMETOOLONG;
    memcpy(out, path, n + 1);
    for (int hops = 0;; hops++) {
        struct stat sb;
        if ((*why = output_place(out)) != NULL) return 0;
        if (lstat(out, &sb) != 0 || !S_ISLNK(sb.st_mode)) return 0; /* an lstat error: the stat after it reports it */
        if (hops == 40) return ELOOP;                               /* the kernel's own limit */
        char link[4096];
        ssize_t k = readlink(out, link, sizeof link);
        if (k < 0) return errno;
        if ((size_t)k >= sizeof link) return ENAMETOOLONG;
        link[k] = 0;
        char *slash = strrchr(out, '/');
        size_t keep = link[0] == '/' || !slash ? 0 : (size_t)(slash - out) + 1;
        if (keep + (size_t)k >= cap) return ENAMETOOLONG;
        memcpy(out + keep, link, (size_t)k + 1);
    }
}

int cli_check_output(const char *what, const char *path, char *target, size_t cap) {
    struct stat sb;
    const char *why = NULL;
    char whybuf[300];
    int e = output_target(path, target, cap, &why), fd;
    bool exists = false;
    size_t n = strlen(target);
    if (!e && !why) e = n == 0 ? ENOENT : target[n - 1] == '/' ? EISDIR : 0; /* a folder's name, not a file's */
    if (!e && !why && stat(target, &sb) == 0) {
        exists = true;
        if (S_ISDIR(sb.st_mode)) e = EISDIR;
        else if (!S_ISREG(sb.st_mode)) why = "not a regular file"; /* a pipe, a device: the rename would replace it */
        else if ((fd = open(target, O_WRONLY | O_NOCTTY | O_CLOEXEC)) < 0) e = errno; /* no O_TRUNC: kept as it is */
        else close(fd);
    } else if (!e && !why && errno != ENOENT) e = errno;
    if (!e && !why) {
        /* the folder must take the writer's temporary file, named as lx_atomic_write_file names
         * its own (checkpoint.h: PATH.tmp.<pid>.<counter>) at its longest, a 10-digit counter, so a
         * name too long for any of them is found too: made and removed */
        char probe[4200];
        if (snprintf(probe, sizeof probe, "%s.tmp.%ld.%u", target, (long)getpid(), 4294967295u) >= (int)sizeof probe)
            e = ENAMETOOLONG;
        else if ((fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOCTTY | O_CLOEXEC, 0600)) < 0) e = errno;
        else {
            close(fd);
            unlink(probe);
        }
        /* the file is there: the probe's error is its folder's (procfs answers ENOENT) */
        if (e && exists && e != ENAMETOOLONG) {
            snprintf(whybuf, sizeof whybuf, "its folder takes no new files: %s", strerror(e));
            why = whybuf;
        }
    }
    if (e && !why) why = strerror(e);
    if (why) return cli_error("%s %s: cannot write: %s", what, path, why);
    return 0;
}

int cli_write_error(const char *what, const char *path, const char *target) {
    if (strcmp(path, target) == 0) return cli_lib_error();
    const char *e = lx_last_error();
    cli_errline("%s %s (-> %s): %s", what, path, target, e[0] ? e : "failed");
    return cli_status_exit(lx_last_status());
}

int cli_check_output_dir(const char *what, const char *dir) {
    char probe[4200];
    if (snprintf(probe, sizeof probe, "%s/.linnx-write-check-%ld", dir, (long)getpid()) >= (int)sizeof probe)
        return cli_error("%s %s: cannot write: %s", what, dir, strerror(ENAMETOOLONG));
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOCTTY | O_CLOEXEC, 0600);
    if (fd < 0) return cli_error("%s %s: cannot write: %s", what, dir, strerror(errno));
    close(fd);
    unlink(probe);
    return 0;
}

/* ---- under mpirun: the line a rank prints when mpirun ends the job ---- */
static volatile long dist_step = -1; /* -1: before the first step */
static volatile int dist_rank = 0;

static char *put_long(char *p, long v) {
    char d[24];
    int n = 0;
    if (v < 0) *p++ = '-', v = -v;
    do d[n++] = (char)('0' + v % 10), v /= 10;
    while (v > 0);
    while (n > 0) *p++ = d[--n];
    return p;
}

/* Async-signal-safe: one write(2) of a line built by hand, then _exit. */
static void dist_on_term(int sig) {
    char buf[192], *p = buf;
    static const char a[] = "linnx: rank ", b[] = ": stopped at step ", b0[] = ": stopped before the first step",
                      c[] = " (mpirun ended the job: another rank failed or died)\n";
    long step = dist_step;
    memcpy(p, a, sizeof a - 1), p += sizeof a - 1;
    p = put_long(p, dist_rank);
    if (step < 0) memcpy(p, b0, sizeof b0 - 1), p += sizeof b0 - 1;
    else {
        memcpy(p, b, sizeof b - 1), p += sizeof b - 1;
        p = put_long(p, step);
    }
    memcpy(p, c, sizeof c - 1), p += sizeof c - 1;
    if (write(STDERR_FILENO, buf, (size_t)(p - buf)) < 0) p = buf;
    _exit(128 + sig);
}

void cli_dist_set_step(int64_t step) {
    lx_dist_set_step(step);
    dist_step = (long)step;
}

int cli_dist_start(const char *cmd, int *rank, int *nranks) {
    *rank = 0;
    *nranks = 1;
    const char *ws = getenv("OMPI_COMM_WORLD_SIZE") ? getenv("OMPI_COMM_WORLD_SIZE") : getenv("PMI_SIZE");
    if (ws && !lx_dist_available() && strcmp(ws, "1") != 0 && strcmp(ws, "0") != 0) /* N full copies otherwise */
        return cli_error("%s: started by mpirun as one of %.20s processes, but this linnx was built without MPI "
                         "(install libopenmpi-dev and rebuild, or run it without mpirun)", cmd, ws);
    if (ws && lx_dist_available() && lx_dist_init(NULL, NULL, rank, nranks) != LX_OK) return cli_lib_error();
    if (*nranks > 1) { /* when a rank dies or fails, mpirun ends the others with SIGTERM */
        dist_rank = *rank;
        dist_step = -1;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = dist_on_term;
        sigaction(SIGTERM, &sa, NULL);
    }
    return 0;
}

int cli_dist_setup_check(int rc) {
    cli_dist_set_step(-1);
    lx_status st = lx_dist_check(rc ? LX_ERR_INVALID_ARGUMENT : LX_OK);
    if (rc) return rc; /* its own message is printed */
    return st != LX_OK ? cli_lib_error() : 0; /* "distributed: rank R failed before the first step" */
}

uint64_t cli_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t cli_fnv_str(const char *s) { return s ? cli_fnv(CLI_FNV0, s, strlen(s) + 1) : cli_fnv(CLI_FNV0, "\1", 1); }

uint64_t cli_fnv_array(uint64_t h, const lx_array *a) {
    int32_t meta[2] = {(int32_t)a->dtype, a->ndim};
    h = cli_fnv(h, meta, sizeof meta);
    h = cli_fnv(h, a->shape, (size_t)a->ndim * sizeof a->shape[0]);
    return a->data ? cli_fnv(h, a->data, lx_array_nbytes(a)) : h;
}

lx_status cli_fnv_tree(const lx_tree *t, uint64_t *out) {
    lx_flat f = {0};
    LX_TRY(lx_tree_flatten(t, &f));
    uint64_t h = CLI_FNV0;
    for (size_t i = 0; i < f.len; i++) {
        const lx_value *v = &f.items[i].value;
        h = cli_fnv(h, f.items[i].path, strlen(f.items[i].path) + 1);
        h = cli_fnv(h, &v->kind, sizeof v->kind);
        const lx_array *a = v->kind == LX_V_ARRAY      ? v->u.array
                            : v->kind == LX_V_VARIABLE ? lx_variable_get_value(v->u.var)
                            : v->kind == LX_V_BOX      ? lx_box_unbox(v->u.box)
                                                       : NULL;
        if (a && !lx_is_abstract(a)) h = cli_fnv_array(h, a);
        else if (v->kind == LX_V_INT) h = cli_fnv(h, &v->u.i, sizeof v->u.i);
        else if (v->kind == LX_V_BOOL) h = cli_fnv(h, &v->u.b, sizeof v->u.b);
    }
    lx_flat_free(&f);
    *out = h;
    return LX_OK;
}

int cli_dist_same(int nf, const uint64_t *mine, const char *const *names, const char *hint, int rank, int nranks,
                  bool *midway) {
    enum { MAXF = 32 };
    if (midway) *midway = false;
    if (nf < 0 || nf > MAXF) nf = MAXF;
    /* rank 0's hashes, as 16-bit pieces (exact in float32), then how many ranks differ in each;
     * a failure to build the tree is agreed on first, so no rank skips a collective the others make */
    float ch[MAXF * 4], diff[MAXF];
    for (int k = 0; k < nf * 4; k++) ch[k] = (float)((mine[k / 4] >> (16 * (k % 4))) & 0xffff);
    int64_t n = nf * 4;
    lx_array *a = lx_array_from_f32(1, &n, ch);
    lx_tree *t = a ? lx_tree_new() : NULL;
    lx_status st = t ? lx_tree_set(t, "h", lx_array_v(a)) : lx_last_status();
    st = lx_dist_check(st);
    bool mid = false;
    if (st == LX_OK) { /* every error of the broadcast is agreed on, except a timed-out wait */
        st = lx_dist_broadcast_tree(t, 0);
        mid = st == LX_ERR_IO;
    }
    for (int k = 0; k < nf; k++) diff[k] = 0;
    for (int k = 0; st == LX_OK && k < nf * 4; k++)
        if (lx_f32(a)[k] != ch[k]) diff[k / 4] = 1;
    bool me = false;
    for (int k = 0; k < nf; k++) me |= diff[k] != 0;
    if (st == LX_OK) {
        st = lx_dist_allreduce_f32(diff, nf, false);
        mid = st != LX_OK;
    }
    lx_tree_release(t);
    lx_release(a);
    if (midway) *midway = mid;
    if (st != LX_OK) return cli_lib_error();
    char what[1000] = "";
    int nd = 0, most = 0;
    for (int k = 0; k < nf; k++)
        if (diff[k] > 0) {
            size_t l = strlen(what);
            snprintf(what + l, sizeof what - l, "%s%s", nd++ ? ", " : "", names[k]);
            most = diff[k] > (float)most ? (int)diff[k] : most;
        }
    if (!nd) return 0;
    /* one line, one write (cli_errline): the ranks' lines must not interleave */
    char msg[1400];
    if (me)
        snprintf(msg, sizeof msg, "rank %d was not started like rank 0: %s differ%s", rank, what, nd > 1 ? "" : "s");
    else
        snprintf(msg, sizeof msg, "the ranks were not started alike: %s differ%s from rank 0's on %d of %d ranks", what,
                 nd > 1 ? "" : "s", most, nranks);
    cli_errline("distributed: %s (%s)", msg, hint);
    return CLI_EXIT_USAGE;
}

int cli_lib_error(void) {
    lx_status s = lx_last_status();
    const char *e = lx_last_error();
    /* the library's array limit is the CLI's --max-array-bytes: name the option */
    bool limit = strstr(e, "bytes per array") != NULL; /* an allocation (exit 1) or an array in a file (exit 2) */
    cli_errline("%s%s", e[0] ? e : "failed", limit ? " (--max-array-bytes)" : "");
    return cli_status_exit(s);
}

int cli_status_exit(lx_status s) {
    return (s == LX_ERR_NO_MEMORY || s == LX_ERR_IO || s == LX_ERR_INTERNAL) ? CLI_EXIT_FAILURE : CLI_EXIT_USAGE;
}

int cli_parse(int argc, char **argv, int first, cli_opt *opts, int nopts, const char **pos, int maxpos,
              int *npos, bool *help) {
    *npos = 0;
    *help = false;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = true;
            return 0;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (*npos >= maxpos) return cli_error("unexpected argument '%s'", a);
            pos[(*npos)++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        cli_opt *o = NULL;
        for (int k = 0; k < nopts; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, name, len)) o = &opts[k];
        if (!o) return cli_error("unknown option '--%.*s'", (int)len, name);
        if (o->seen) return cli_error("option --%s given twice", o->name);
        o->seen = true;
        if (!o->has_value) {
            if (eq) return cli_error("option --%s takes no value", o->name);
            continue;
        }
        if (eq) {
            o->value = eq + 1;
        } else {
            if (i + 1 >= argc) return cli_error("option --%s needs a value", o->name);
            o->value = argv[++i];
        }
    }
    return 0;
}

/* Numbers are exactly what they look like: no leading space (strtoll/strtod would skip it), no
 * trailing text, in range. Values are echoed cut to 60 characters so a message stays short. */
int cli_i64(const char *opt, const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = !*s || isspace((unsigned char)*s) ? 0 : strtoll(s, &end, 10);
    if (!*s || isspace((unsigned char)*s) || *end || errno)
        return cli_error("--%s: '%.60s%s' is not an integer in the int64 range", opt, s, strlen(s) > 60 ? "..." : "");
    *out = v;
    return 0;
}

int cli_u32(const char *opt, const char *s, uint32_t *out) {
    int64_t v = 0;
    if (cli_i64(opt, s, &v)) return CLI_EXIT_USAGE;
    if (v < 0 || v > (int64_t)UINT32_MAX) return cli_error("--%s: %s is outside 0..4294967295", opt, s);
    *out = (uint32_t)v;
    return 0;
}

/* Python's float() literal: [+-] then digits with at most one '.' (a digit on either side), an
 * optional exponent e[+-]digits, or inf / infinity / nan in any case. strtod's own extras (hex
 * floats 0x1p3, nan(123), leading space) are not numbers here. */
static bool py_float_text(const char *s) {
    if (*s == '+' || *s == '-') s++;
    if (!strcasecmp(s, "inf") || !strcasecmp(s, "infinity") || !strcasecmp(s, "nan")) return true;
    int digits = 0;
    while (isdigit((unsigned char)*s)) s++, digits++;
    if (*s == '.') {
        s++;
        while (isdigit((unsigned char)*s)) s++, digits++;
    }
    if (!digits) return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!isdigit((unsigned char)*s)) return false;
        while (isdigit((unsigned char)*s)) s++;
    }
    return *s == '\0';
}

/* NaN ("nan", "NaN", "-nan") is a value only where the number is data (allow_nan). */
static int f64_parse(const char *opt, const char *s, bool allow_nan, double *out) {
    char *end;
    bool ok = py_float_text(s);
    double v = ok ? strtod(s, &end) : 0;
    if (!ok || *end || (isnan(v) && !allow_nan))
        return cli_error("--%s: '%.60s%s' is not a number", opt, s, strlen(s) > 60 ? "..." : "");
    *out = v;
    return 0;
}

int cli_f64(const char *opt, const char *s, double *out) { return f64_parse(opt, s, false, out); }

int cli_i64_list(const char *opt, const char *s, int64_t *out, int max, int *n) {
    *n = 0;
    if (!*s || !strcmp(s, "()")) return 0; /* the empty tuple: a scalar's shape */
    const char *p = s;
    for (;;) {
        /* one entry: [+-]digits, then ',' and another entry, or the end */
        const char *q = p + (*p == '-' || *p == '+');
        const char *d = q;
        while (*d >= '0' && *d <= '9') d++;
        if (d == q || (*d != ',' && *d != '\0'))
            return cli_error("--%s: '%.60s%s' is not a list of integers N,N,... (or () for a scalar)", opt, s,
                             strlen(s) > 60 ? "..." : "");
        if (*n >= max) return cli_error("--%s: at most %d entries", opt, max);
        char tok[32];
        size_t len = (size_t)(d - p);
        if (len >= sizeof tok) return cli_error("--%s: %.*s... is not an integer in the int64 range", opt, 30, p);
        memcpy(tok, p, len);
        tok[len] = '\0';
        if (cli_i64(opt, tok, &out[*n])) return CLI_EXIT_USAGE;
        (*n)++;
        if (!*d) return 0;
        p = d + 1;
    }
}

int cli_shape(const char *opt, const char *s, int64_t *shape, int *ndim) {
    if (cli_i64_list(opt, s, shape, LX_MAX_DIMS, ndim)) return CLI_EXIT_USAGE;
    for (int i = 0; i < *ndim; i++)
        if (shape[i] < 0) return cli_error("--%s: negative dimension %lld", opt, (long long)shape[i]);
    return 0;
}

int cli_key(const cli_opt *seed, const cli_opt *key, const cli_opt *x64, lx_key *out) {
    if (seed->seen == key->seen) return cli_error("give exactly one of --seed S or --key K0,K1");
    if (seed->seen) {
        int64_t s = 0;
        if (cli_i64("seed", seed->value, &s)) return CLI_EXIT_USAGE;
        *out = (x64 && x64->seen) ? lx_key_from_seed_x64(s) : lx_key_from_seed(s);
        return 0;
    }
    if (x64 && x64->seen) return cli_error("--x64 applies to --seed only");
    int64_t k[3] = {0, 0, 0};
    int n;
    if (cli_i64_list("key", key->value, k, 3, &n)) return CLI_EXIT_USAGE;
    if (n != 2) return cli_error("--key: want two words K0,K1, got '%s'", key->value);
    for (int i = 0; i < 2; i++)
        if (k[i] < 0 || k[i] > (int64_t)UINT32_MAX)
            return cli_error("--key: %lld is outside 0..4294967295", (long long)k[i]);
    out->k[0] = (uint32_t)k[0];
    out->k[1] = (uint32_t)k[1];
    return 0;
}

size_t cli_max_array_bytes = CLI_DEFAULT_MAX_ARRAY_BYTES;

int cli_bytes(const char *opt, const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = isdigit((unsigned char)*s) ? strtoull(s, &end, 10) : 0;
    if (!isdigit((unsigned char)*s) || errno) return cli_error("--%s: '%.60s' is not a byte count N[K|M|G]", opt, s);
    int shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : 0;
    if (shift) end++;
    if (*end || v > (SIZE_MAX >> shift)) return cli_error("--%s: '%.60s' is not a byte count N[K|M|G]", opt, s);
    *out = (size_t)v << shift;
    return 0;
}

int cli_check_size(const char *opt, int ndim, const int64_t *shape, size_t elsize) {
    /* checked-arithmetic: the dims are user input; a product past int64 is over any limit */
    int64_t n = 1;
    bool over = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0) return 0;
        over = over || __builtin_mul_overflow(n, shape[i], &n);
    }
    size_t bytes;
    over = over || __builtin_mul_overflow((size_t)n, elsize, &bytes);
    if (cli_max_array_bytes && (over || bytes > cli_max_array_bytes)) {
        char b[160];
        lx_shape_str(ndim, shape, b, sizeof b);
        if (over)
            return cli_error("--%s: an array of shape %s is too big, over the limit of %zu bytes per array (--max-array-bytes)",
                             opt, b, cli_max_array_bytes);
        return cli_error("--%s: an array of shape %s needs %zu bytes, over the limit of %zu bytes per array (--max-array-bytes)",
                         opt, b, bytes, cli_max_array_bytes);
    }
    return 0;
}

int cli_print_array(const lx_array *a) {
    if (!a || lx_is_abstract(a)) return cli_error("no data to print");
    int64_t row = a->ndim >= 2 ? a->shape[a->ndim - 1] : a->size;
    if (a->size == 0) {
        putchar('\n');
        return cli_stdout_done();
    }
    for (int64_t i = 0; i < a->size; i++) {
        switch (a->dtype) {
        case LX_F32: case LX_BF16: printf("%.9g", cli_num(lx_array_get(a, i))); break;
        case LX_BOOL: printf("%d", lx_bool(a)[i] ? 1 : 0); break;
        case LX_U32: printf("%u", lx_u32(a)[i]); break;
        case LX_I32: printf("%d", lx_i32(a)[i]); break;
        case LX_I8: printf("%d", lx_i8(a)[i]); break;
        case LX_DTYPE_COUNT: return cli_error("cannot print dtype %s", lx_dtype_name(a->dtype));
        }
        putchar((i + 1) % row == 0 ? '\n' : ' ');
    }
    return cli_stdout_done();
}

/* "1,2.5,-3", also "(1, 2.5, -3)" or "[...]": *n numbers in a new buffer (*out, caller frees). */
/* Two forms: exactly N,N,... (no spaces, no empty entry), or a Python tuple or list, (N, N, ...)
 * or [N, N, ...], with spaces around the numbers and one trailing comma allowed. */
static int f64_list_new(const char *opt, const char *s, bool allow_nan, double **out, int64_t *n) {
    size_t len = strlen(s);
    const char *start = s, *stop = s + len;
    bool python = len >= 2 && ((*start == '(' && stop[-1] == ')') || (*start == '[' && stop[-1] == ']'));
    if (python) {
        start++;
        stop--;
    } else if (strchr(s, ' '))
        return cli_error("--%s: '%.60s%s' is not a list of numbers N,N,... (spaces only inside (...) or [...])", opt, s,
                         len > 60 ? "..." : "");
    int64_t cap = 1;
    for (const char *p = start; p < stop; p++) cap += *p == ',';
    double *v = malloc((size_t)cap * sizeof *v);
    if (!v) return cli_oom(opt);
    int64_t count = 0;
    const char *p = start;
    for (int64_t i = 0; i < cap; i++) {
        const char *comma = memchr(p, ',', (size_t)(stop - p));
        const char *end = comma ? comma : stop;
        while (p < end && *p == ' ') p++;
        const char *e = end;
        while (e > p && e[-1] == ' ') e--;
        char buf[64];
        size_t tl = (size_t)(e - p);
        if (python && tl == 0 && !comma && i == cap - 1 && i > 0) break; /* a trailing comma: (1,) */
        if (tl == 0 || tl >= sizeof buf) {
            free(v);
            return cli_error("--%s: '%s' is not a list of numbers", opt, s);
        }
        memcpy(buf, p, tl);
        buf[tl] = '\0';
        if (f64_parse(opt, buf, allow_nan, &v[count])) {
            free(v);
            return CLI_EXIT_USAGE;
        }
        count++;
        p = comma ? comma + 1 : stop;
    }
    *out = v;
    *n = count;
    return 0;
}

int cli_f64_list_new(const char *opt, const char *s, double **out, int64_t *n) {
    return f64_list_new(opt, s, false, out, n);
}

int cli_data_list_new(const char *opt, const char *s, double **out, int64_t *n) {
    return f64_list_new(opt, s, true, out, n);
}

int64_t cli_leaf_params(const lx_value *v) {
    if (!v) return 0;
    const lx_array *a = lx_value_leaf_array(v); /* an array, a Variable's or a box's value */
    if (a) return a->size;
    const lx_raw *raw = lx_value_raw(v); /* float64, int64, float8, ... kept as numpy wrote them */
    if (raw) return raw->kind == LX_RAW_BYTES ? 0 : raw->size;
    return 0; /* Python scalars, strings, None: not arrays */
}

int64_t cli_tree_params(const lx_tree *t) {
    int64_t n = 0;
    for (size_t i = 0; t && i < lx_tree_len(t); i++) {
        const lx_value *v = lx_tree_at(t, i);
        n += v->kind == LX_V_TREE ? cli_tree_params(v->u.tree) : cli_leaf_params(v);
    }
    return n;
}
