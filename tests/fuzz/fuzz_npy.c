/* libFuzzer target: the .npy reader of `linnx grad/train --data X.npy,Y.npy` (tc_npy_read,
 * tools/train_cli.c). The input is the file; it is written to a temporary file (the reader takes
 * a path). The header parser must refuse what numpy refuses without reading past the header, and
 * the data size is checked against the file before anything is allocated (arrays limited to 1 MiB
 * so the fuzzer explores behaviour, not memory size). Any crash, leak, UB or allocation over
 * libFuzzer's limit is a finding; every error is a normal outcome. Built by `make fuzz`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"
#include "train_cli.h"

static char g_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* the CLI's one-line errors go to the FILE *stderr: /dev/null (as fuzz_params does) */
    FILE *sink = fopen("/dev/null", "w");
    if (sink) stderr = sink;
    snprintf(g_path, sizeof g_path, "/tmp/linnx_fuzz_npy_%d.npy", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *f = fopen(g_path, "wb");
    if (!f) return 0;
    size_t w = fwrite(data, 1, size, f);
    fclose(f);
    if (w != size) return 0;
    cli_max_array_bytes = (size_t)1 << 20;
    lx_set_max_array_bytes(cli_max_array_bytes);
    int rc = 0;
    lx_array *a = tc_npy_read(g_path, &rc);
    if (a) { /* touch every element: the data really is there */
        volatile double s = 0;
        for (int64_t i = 0; i < a->size; i++) s += lx_array_get(a, i);
        lx_release(a);
    }
    lx_clear_error();
    return 0;
}
