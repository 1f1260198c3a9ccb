/* linnx command-line program (subcommands land with their components). */
#include <stdio.h>
#include <string.h>
#include "linnx/linnx.h"
int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: linnx <command> [options]\n");
        return 2;
    }
    fprintf(stderr, "linnx: unknown command '%s'\n", argv[1]);
    return 2;
}
