/* libFuzzer target: the spec parser (tools/spec.c) on any bytes. Parses, renders back, converts
 * every argument that is a plain value, frees. Any crash, leak, UB or a render that does not
 * re-parse to the same rendering is a finding. Built by `make fuzz` (scripts/fuzz.sh). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spec.h"

static void walk(spec_node *n, int depth) {
    if (!n || depth > 80) return;
    char err[200];
    lx_value v;
    (void)spec_to_value(n, &v, err, sizeof err);
    for (int i = 0; i < n->n; i++) walk(n->items[i], depth + 1);
    for (int i = 0; i < n->nargs; i++) walk(n->args[i].value, depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0; /* an embedded NUL ends the spec, as it would on a command line */
    spec_node *n = NULL;
    char err[256];
    if (spec_parse(text, &n, err, sizeof err) == 0) {
        walk(n, 0);
        /* The rendering is Python-like; when it fits the buffer it must parse again to itself. */
        static char r1[4096], r2[4096];
        spec_str(n, r1, sizeof r1);
        spec_node *m = NULL;
        if (strlen(r1) < sizeof r1 - 1 && spec_parse(r1, &m, err, sizeof err) == 0) {
            spec_str(m, r2, sizeof r2);
            if (strcmp(r1, r2) != 0) abort();
        }
        spec_free(m);
    }
    spec_free(n);
    free(text);
    return 0;
}
