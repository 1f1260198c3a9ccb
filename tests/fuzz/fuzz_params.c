/* libFuzzer target: the whole `linnx params` pipeline. The input is "SHAPE\nSPEC": SHAPE is the
 * --input-shape value, SPEC the module spec; the run is `linnx params SPEC --seed 0
 * --input-shape SHAPE` in process (tools/cmd_params.c and the library). Arrays are limited to
 * 1 MiB so the fuzzer explores behaviour, not memory size. Output goes to /dev/null. Any crash,
 * leak or UB is a finding; every error is a normal outcome. Built by `make fuzz`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "linnx/fault.h"

int cmd_params(int argc, char **argv);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (!freopen("/dev/null", "w", stdout)) return 0;
    /* The CLI's one-line errors go to the FILE *stderr: point it at /dev/null. Sanitizer reports
     * write to file descriptor 2 directly, and libFuzzer kept its own copy of the old pointer,
     * so findings are still printed. */
    FILE *sink = fopen("/dev/null", "w");
    if (sink) stderr = sink;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char *nl = strchr(text, '\n');
    const char *shape = nl ? text : "1,4", *spec = nl ? nl + 1 : text;
    if (nl) *nl = 0;
    cli_max_array_bytes = (size_t)1 << 20;
    lx_set_max_array_bytes(cli_max_array_bytes);
    char *argv[] = {"params", (char *)spec, "--seed", "0", "--input-shape", (char *)shape, NULL};
    size_t mark = lx_pool_open();
    (void)cmd_params(6, argv);
    lx_pool_close(mark);
    lx_pool_drain();
    lx_clear_error();
    free(text);
    return 0;
}
