/* `linnx inspect FILE`: the tree of a checkpoint (Flax msgpack or safetensors) as a table, like
 * Flax's tabulate: path, dtype, shape, parameter count, bytes, and a total row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "linnx/checkpoint.h"

static const char INSPECT_USAGE[] =
    "usage: linnx inspect FILE [--sep SEP]\n"
    "  FILE: a Flax msgpack (flax.serialization.to_bytes) or safetensors file, told apart by content.\n"
    "  safetensors __metadata__ entries print first, one line each.\n"
    "  Prints one row per leaf: path, dtype, shape, params (element count), bytes; then the total.\n"
    "  Scalar leaves (ints, floats, None, strings) show their Python type and count 0.\n"
    "  A msgpack file whose root is one array (to_bytes of an array) prints one row with path '.';\n"
    "  a root msgpack array is a tree keyed 0, 1, ...\n"
    "  --sep SEP: split safetensors tensor names into paths at SEP (default '.'); '--sep /' keeps\n"
    "    names such as 'h.0' and 'h.0.attn' (one extending the other) or 'a..b' whole.\n";

/* to_bytes of a single array (c-anchors §4.2's 36-byte vector): the root is an ext, not a map,
 * so it is read as a value from a private mapping of the file. 1 read, 0 not an ext root,
 * -1 cannot map, -2 the reader failed. */
static int ext_root(const char *path, lx_value *out) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0; /* lx_ckpt_load reports it */
    struct stat st;
    void *p = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size > 0) p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return 0;
    unsigned char c = *(const unsigned char *)p;
    int r = 0;
    if (c == 0xc7 || c == 0xc8 || c == 0xc9 || (c >= 0xd4 && c <= 0xd8)) {
        lx_status s = lx_msgpack_from_bytes(p, (size_t)st.st_size, out);
        if (s != LX_OK) lx_fail_context(s, "%s: ", path);
        r = s == LX_OK ? 1 : -2;
    }
    munmap(p, (size_t)st.st_size);
    return r;
}

typedef struct row {
    char path[512], dtype[32], shape[96];
    long long params, bytes;
} row;

static void leaf_row(const char *path, const lx_value *v, row *r) {
    snprintf(r->path, sizeof r->path, "%s", path);
    r->params = r->bytes = 0;
    lx_array *a = v->kind == LX_V_ARRAY ? v->u.array : NULL;
    lx_raw *raw = lx_value_raw(v);
    if (a) {
        snprintf(r->dtype, sizeof r->dtype, "%s", lx_dtype_name(a->dtype));
        lx_shape_str(a->ndim, a->shape, r->shape, sizeof r->shape);
        r->params = cli_leaf_params(v);
        r->bytes = (long long)lx_array_nbytes(a);
    } else if (raw) {
        snprintf(r->dtype, sizeof r->dtype, "%s", raw->dtype);
        lx_shape_str(raw->ndim, raw->shape, r->shape, sizeof r->shape);
        r->params = cli_leaf_params(v);
        r->bytes = (long long)raw->nbytes;
    } else {
        const char *t = lx_value_pytype(v);
        const char *q = strchr(t, '\'');
        snprintf(r->dtype, sizeof r->dtype, "%.*s", q ? (int)(strcspn(q + 1, "'")) : (int)strlen(t), q ? q + 1 : t);
        char b[64];
        snprintf(r->shape, sizeof r->shape, "%s", lx_value_str(v, b, sizeof b));
    }
}

int cmd_inspect(int argc, char **argv) {
    const char *pos[1];
    int npos;
    bool help;
    cli_opt opts[] = {CLI_OPT("sep")};
    if (cli_parse(argc, argv, 1, opts, 1, pos, 1, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(INSPECT_USAGE, stdout);
        return 0;
    }
    if (npos != 1) return cli_error("inspect: which file? (linnx inspect --help)");
    lx_ckpt_format fmt;
    lx_tree *t = NULL, *md = NULL;
    if (lx_ckpt_sniff(pos[0], &fmt) != LX_OK) return cli_lib_error();
    lx_safetensors_opts so = {0};
    so.sep = opts[0].value;
    if (fmt == LX_CKPT_MSGPACK) {
        lx_value root = lx_none();
        int r = ext_root(pos[0], &root);
        if (r == -2) return cli_lib_error();
        if (r == 1) {
            /* one leaf at the root: path '.' */
            t = lx_tree_new();
            lx_status s = t ? lx_tree_set(t, ".", root) : lx_last_status();
            lx_value_free(&root);
            if (s != LX_OK) {
                lx_tree_release(t);
                return cli_lib_error();
            }
        }
    }
    if (!t && (fmt == LX_CKPT_SAFETENSORS ? lx_safetensors_load(pos[0], &so, &t, &md) != LX_OK : lx_ckpt_load(pos[0], &t) != LX_OK))
        return cli_lib_error();
    lx_flat flat = {0};
    if (lx_tree_flatten(t, &flat) != LX_OK) {
        lx_tree_release(t);
        return cli_lib_error();
    }
    row *rows = calloc(flat.len ? flat.len : 1, sizeof *rows);
    if (!rows) {
        lx_flat_free(&flat);
        lx_tree_release(t);
        return cli_oom("inspect");
    }
    int wp = 5, wd = 5, ws = 5;
    long long tp = 0, tb = 0;
    for (size_t i = 0; i < flat.len; i++) {
        leaf_row(flat.items[i].path, &flat.items[i].value, &rows[i]);
        int n = (int)strlen(rows[i].path);
        if (n > wp) wp = n;
        n = (int)strlen(rows[i].dtype);
        if (n > wd) wd = n;
        n = (int)strlen(rows[i].shape);
        if (n > ws) ws = n;
        tp += rows[i].params;
        tb += rows[i].bytes;
    }
    struct stat st;
    long long fsize = stat(pos[0], &st) == 0 ? (long long)st.st_size : -1;
    printf("%s: %s, %lld bytes, %zu leaves\n", pos[0], fmt == LX_CKPT_SAFETENSORS ? "safetensors" : "Flax msgpack", fsize,
           flat.len);
    for (size_t i = 0; md && i < lx_tree_len(md); i++)
        printf("__metadata__ %s: %s\n", lx_tree_key(md, i), lx_tree_at(md, i)->u.s);
    lx_tree_release(md);
    printf("%-*s  %-*s  %-*s  %12s  %12s\n", wp, "path", wd, "dtype", ws, "shape", "params", "bytes");
    for (size_t i = 0; i < flat.len; i++)
        printf("%-*s  %-*s  %-*s  %12lld  %12lld\n", wp, rows[i].path, wd, rows[i].dtype, ws, rows[i].shape,
               rows[i].params, rows[i].bytes);
    printf("%-*s  %-*s  %-*s  %12lld  %12lld\n", wp, "Total", wd, "", ws, "", tp, tb);
    free(rows);
    lx_flat_free(&flat);
    lx_tree_release(t);
    return 0;
}
