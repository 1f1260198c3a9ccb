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
    fprintf(f, "\nglobal options (anywhere on the line):\n"
               "  --max-array-bytes N[K|M|G]  the most bytes one array may take (default 1G; 0: no limit)\n"
               "exit status: 0 success, 1 out of memory or another failure not caused by the input,\n"
               "2 bad usage or bad input; every failure prints one `linnx: ...` line on stderr.\n");
}

/* Take the global options out of argv (they may appear anywhere); 0 or an exit status. */
static int global_options(int *argc, char **argv) {
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strncmp(a, "--max-array-bytes=", 18)) v = a + 18;
        else if (!strcmp(a, "--max-array-bytes")) {
            if (i + 1 >= *argc) return cli_error("option --max-array-bytes needs a value");
            v = argv[++i];
        } else {
            argv[w++] = argv[i];
            continue;
        }
        if (cli_bytes("max-array-bytes", v, &cli_max_array_bytes)) return CLI_EXIT_USAGE;
    }
    *argc = w;
    argv[w] = NULL;
    lx_set_max_array_bytes(cli_max_array_bytes);
    return 0;
}

int main(int argc, char **argv) {
    int grc = global_options(&argc, argv);
    if (grc) return grc;
    if (argc < 2) {
        fprintf(stderr, "linnx: which command? (linnx --help lists them)\n");
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return cli_stdout_done();
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
            /* output that never reached stdout is a failure of every command ("linnx --help": exit
             * status 1 with one `linnx: ...` line), not a silent success */
            return rc == 0 ? cli_stdout_done() : rc;
        }
    return cli_error("unknown command '%s' (try linnx --help)", argv[1]);
}
