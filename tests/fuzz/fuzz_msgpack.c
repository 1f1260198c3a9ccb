/* libFuzzer target: the Flax msgpack reader (lx_msgpack_from_bytes). Any input must give a tree
 * or an error naming a byte offset: never a crash, a leak, an unbounded allocation or a hang.
 * Whatever parses must also serialize again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linnx/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lx_value v = lx_none();
    if (lx_msgpack_from_bytes(data, size, &v) == LX_OK) {
        unsigned char *b = NULL;
        size_t n = 0;
        if (lx_msgpack_to_bytes(&v, NULL, &b, &n) == LX_OK) free(b);
        lx_value_free(&v);
    } else if (!strstr(lx_last_error(), "at byte ") && lx_last_status() == LX_ERR_FORMAT) {
        abort(); /* a format error must say where */
    }
    return 0;
}
