/* linnx command-line program: a dispatcher over the subcommand table of tools/commands.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "linnx/fault.h"

#define LINNX_COMMAND(name, fn, summary) int fn(int argc, char **argv);
#include "commands.h"
#undef LINNX_COMMAND

static const cli_command COMMANDS[] = {
#define LINNX_COMMAND(name, fn, summary) {#name, fn, summary},
#include "commands.h"
#undef LINNX_COMMAND
};
#define NCOMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f) {
    fprintf(f, "usage: linnx <command> [options]   (linnx <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) {
            size_t mark = lx_pool_open();
            int rc = COMMANDS[i].run(argc - 1, argv + 1);
            lx_pool_close(mark);
            lx_pool_drain();
            /* For the fault-injection sweeps (tests/cli_fault.sh): how many library allocations
             * the run made, so a sweep knows where to stop. */
            if (getenv("LINNX_ALLOC_STATS"))
                fprintf(stderr, "linnx: %lld allocations%s\n", (long long)lx_fault_count(),
                        lx_fault_fired() ? " (an injected failure fired)" : "");
            return rc;
        }
    return cli_error("unknown command '%s' (try linnx --help)", argv[1]);
}
