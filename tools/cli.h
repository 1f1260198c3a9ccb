/* tools/cli.h - what every `linnx` subcommand shares: the command table entry, option parsing,
 * number parsing and printing.
 *
 * Adding a subcommand family: write tools/cmd_<family>.c with `int cmd_<name>(int argc, char **argv)`
 * functions (argv[0] is the subcommand's name) and add one LINNX_COMMAND line per subcommand to
 * tools/commands.h. Conventions: bad arguments print one line `linnx: ...` on stderr and return
 * CLI_EXIT_USAGE (2); results go to stdout.
 *
 * Output of arrays (cli_print_array): one number per whitespace-separated token, row-major;
 * floats as %.9g, bools as 0/1. A result with ndim >= 2 prints one line per row of its last
 * axis; a scalar or a 1-D result prints one line.
 */
#ifndef LINNX_TOOLS_CLI_H
#define LINNX_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "linnx/linnx.h"
#include "linnx/random.h"

/* Exit statuses, one convention for every subcommand:
 *   0  success;
 *   1  the run failed for a reason other than its input: out of memory (wherever it happens: the
 *      option and spec parsers or the library), I/O, an internal error;
 *   2  bad usage or bad input (options, specs, shapes, values the library refuses).
 * Either failure prints exactly one `linnx: ...` line on stderr and nothing on stdout. */
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE 2

typedef int (*cli_command_fn)(int argc, char **argv);

typedef struct cli_command {
    const char *name;
    cli_command_fn run;
    const char *summary; /* one line for `linnx --help` */
} cli_command;

/* Print `linnx: <message>` on stderr (cli_errline); returns CLI_EXIT_USAGE. */
int cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Print `linnx: <message>` on stderr as one write (one line: a newline inside the message is
 * written as \n), without an exit status: every error line of the CLI goes through it. */
void cli_errline(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Report the library's last error: exit 2 for bad input, 1 for resource/internal failures. */
int cli_lib_error(void);
/* The exit status for a library status, cli_lib_error's rule (for a command that prints its own
 * line): CLI_EXIT_FAILURE for out of memory, I/O and internal errors, else CLI_EXIT_USAGE. */
int cli_status_exit(lx_status s);
/* Print `linnx: <what>: out of memory`; returns CLI_EXIT_FAILURE. */
int cli_oom(const char *what);
/* Flush stdout after a command's output: 0, or when anything written to it was lost (a full disk,
 * a closed pipe, > /dev/full) one `linnx: error writing to standard output: ...` line on stderr
 * and CLI_EXIT_FAILURE. main() runs it after every command that returned 0. */
int cli_stdout_done(void);
/* An output path the command writes later, checked before any work or output (a bad output path
 * is bad input, exit 2), one rule and one message for every command: "linnx: <what> <path>:
 * cannot write: <reason>". `target` (cap bytes) receives the path to give the writer: `path`, or
 * for a symbolic link the end of its chain of links, so that the write replaces the link's target
 * and keeps the link (a link into a missing folder is refused: No such file or directory). The
 * file's folder must take a new file (a probe named like the writers' temporary files is made
 * and removed; an existing file whose folder refuses it: "its folder takes no new files: ...");
 * an existing file must be a regular file (a pipe or a device: "not a regular file") that opens
 * for writing (opened, not truncated: a read-only file is refused even where its folder takes
 * files); a folder is refused (Is a directory). This process's own stdout or stderr, however it
 * is named (a link to /dev/stdout, the file stdout was redirected to), is refused (the rename
 * would replace the run's log), and so are a link in /proc/PID/fd or /dev/fd (its text is no
 * path) and a name in /dev (but /dev/shm). Nothing is left, changed or removed. 0 when fine.
 * The writer chooses a format from the name typed, not from `target`'s. */
int cli_check_output(const char *what, const char *path, char *target, size_t cap);
/* After a failed write to `target` (cli_check_output's, for the typed `path`): the library's
 * message, as cli_lib_error prints it, after "<what> <path> (-> <target>): " when a link was
 * followed, so that the line names the path the user typed. Returns the exit status. */
int cli_write_error(const char *what, const char *path, const char *target);
/* The same for a folder the command writes files into: a file is made in it and removed. */
int cli_check_output_dir(const char *what, const char *dir);

/* Under an MPI launcher (OMPI_COMM_WORLD_SIZE or PMI_SIZE set): lx_dist_init, giving this
 * process's rank and the number of ranks (0 and 1 otherwise). A linnx built without MPI that was
 * started as one of N > 1 processes refuses ("<cmd>: started by mpirun as one of N processes, but
 * this linnx was built without MPI"), exit 2, rather than run N full copies. */
int cli_dist_start(const char *cmd, int *rank, int *nranks);
/* (cli_dist_start, under mpirun with more than one rank, also installs a SIGTERM handler: mpirun
 * ends the other ranks with SIGTERM when one dies or fails, and each then prints one line, "linnx:
 * rank R: stopped at step K (mpirun ended the job: another rank failed or died)" or "... stopped
 * before the first step (...)", and exits 128 + 15.) */
/* The step a rank is at under mpirun: the one its SIGTERM line names, and lx_dist_set_step's (the
 * step the other ranks name when this one fails); -1 before the first step. */
void cli_dist_set_step(int64_t step);
/* The start-of-run check under mpirun: every rank calls it once before the first step, with its
 * setup's exit status rc (0: ready), whether its setup worked or not, so that one rank's failure
 * stops the others at once. Returns rc when non-zero (its message was printed), else 0 or, when
 * another rank failed, the exit for "linnx: distributed: rank R failed before the first step". */
int cli_dist_setup_check(int rc);
/* After cli_dist_setup_check passed: do the ranks start the same run? Each rank gives n 64-bit
 * hashes (cli_fnv*) of what it is about to run, field i named names[i]; rank 0's are broadcast,
 * then a sum of the per-field differences. 0 when every rank agrees; otherwise every rank prints
 * one line and gets CLI_EXIT_USAGE: the ranks that differ "distributed: rank R was not started like
 * rank 0: F1, F2 differ (give every rank the same ...)", the others "distributed: the ranks were
 * not started alike: F1 differs from rank 0's on K of N ranks (...)", `hint` in the parentheses.
 * A library failure is its exit (cli_lib_error); *midway (optional) is set when it happened inside
 * a collective other ranks may still wait in (end without MPI_Finalize then). n <= 32. */
int cli_dist_same(int n, const uint64_t *mine, const char *const *names, const char *hint, int rank, int nranks,
                  bool *midway);
/* 64-bit FNV-1a hashes for cli_dist_same: of bytes (h: CLI_FNV0 or a previous hash), a string
 * (NULL and "" differ), an array (dtype, shape, bytes), a tree (paths, kinds and values of every
 * leaf: arrays, Variables and boxes by their arrays, ints, bools). */
#define CLI_FNV0 0xcbf29ce484222325ull
uint64_t cli_fnv(uint64_t h, const void *p, size_t n);
uint64_t cli_fnv_str(const char *s);
uint64_t cli_fnv_array(uint64_t h, const lx_array *a);
lx_status cli_fnv_tree(const lx_tree *t, uint64_t *out);

/* The parameter count of a checkpoint leaf, one rule for `linnx inspect` and `linnx convert`
 * (jax.tree counting of array leaves): the element count of an array (also a Variable's or a
 * box's value) and of a raw leaf the library keeps as numpy wrote it (float64, int64, a numpy
 * scalar, a complex: size 1 for shape ()); 0 for Python scalars, strings, None and raw bytes. */
int64_t cli_leaf_params(const lx_value *v);
/* The sum of cli_leaf_params over every leaf of `t` (NULL: 0). */
int64_t cli_tree_params(const lx_tree *t);

/* Options: `--name value`, `--name=value`, or `--name` for flags. A value may start with '-'
 * (negative numbers): an option that takes a value always consumes the next word. */
typedef struct cli_opt {
    const char *name; /* without the dashes */
    bool has_value;
    const char *value; /* set by cli_parse */
    bool seen;
} cli_opt;
#define CLI_OPT(name_) {(name_), true, NULL, false}   /* an option with a value */
#define CLI_FLAG(name_) {(name_), false, NULL, false} /* a flag */

/* Parse argv[first..argc) into opts; the remaining words go to pos (at most maxpos). Returns 0, or
 * CLI_EXIT_USAGE after printing the error (unknown option, missing value, repeated option, too
 * many positional words). `--help` sets *help and stops. */
int cli_parse(int argc, char **argv, int first, cli_opt *opts, int nopts, const char **pos, int maxpos,
              int *npos, bool *help);

/* Number parsers: 0 or CLI_EXIT_USAGE with "linnx: --opt: ..." printed. */
int cli_i64(const char *opt, const char *s, int64_t *out);
int cli_u32(const char *opt, const char *s, uint32_t *out);
int cli_f64(const char *opt, const char *s, double *out);
/* Exactly "N,N,..." (no spaces, no parentheses, no empty entries), or "()" or "" for the empty
 * tuple (a scalar's shape); at most `max` entries. Anything else ("(1 2)", "1)2", ",", "2,3,,")
 * is a usage error. Numbers take no leading space either: --seed ' 1' is refused. */
int cli_i64_list(const char *opt, const char *s, int64_t *out, int max, int *n);
/* A shape: a list of non-negative dims. */
/* "1,2.5,-3" exactly (no spaces, no empty entry), or a Python tuple or list "(1, 2.5, -3)" /
 * "[...]" (spaces around the numbers and a trailing comma allowed); each number as Python's
 * float() reads it (no hex floats, no nan(...)): *n >= 1 numbers in a new buffer (*out, the
 * caller frees). 0, or an exit status after printing the error. */
int cli_f64_list_new(const char *opt, const char *s, double **out, int64_t *n);
/* The same for data values (--x, --y): NaN ("nan", "NaN", "-nan") is a value too, as in numpy. */
int cli_data_list_new(const char *opt, const char *s, double **out, int64_t *n);
int cli_shape(const char *opt, const char *s, int64_t *shape, int *ndim);

/* The key of `--seed S [--x64]` or `--key K0,K1` (exactly one of the two). */
int cli_key(const cli_opt *seed, const cli_opt *key, const cli_opt *x64, lx_key *out);

/* Size limits (checked before allocating, so a small command line cannot ask for gigabytes):
 * every array a command makes, from a shape on its command line or a size in a spec, holds at
 * most CLI_DEFAULT_MAX_ARRAY_BYTES (1 GiB) unless the global option --max-array-bytes N[K|M|G]
 * (anywhere on the line; 0 = no limit) says otherwise. A shape given on the command line over
 * the limit is a usage error naming the limit and the option; an array made inside the library
 * over it fails like an allocation (exit 1), its message naming the limit
 * (lx_set_max_array_bytes, linnx/fault.h). */
#define CLI_DEFAULT_MAX_ARRAY_BYTES ((size_t)1 << 30)
extern size_t cli_max_array_bytes;
/* Parse "N", "NK", "NM", "NG" (powers of 1024) into bytes; 0 or CLI_EXIT_USAGE. */
int cli_bytes(const char *opt, const char *s, size_t *out);
/* 0 when an array of `ndim` dims `shape` of `elsize`-byte elements fits the limit, else prints
 * "--opt: float32 (1, 2147483648) needs 8589934592 bytes, over the limit ..." and returns
 * CLI_EXIT_USAGE. */
int cli_check_size(const char *opt, int ndim, const int64_t *shape, size_t elsize);

/* Print an array as described above, then cli_stdout_done(): 0 on success, else the exit status
 * after its one `linnx: ...` line. */
int cli_print_array(const lx_array *a);
/* A float for printf as Python prints it: a NaN is "nan" whatever its sign bit (glibc would print
 * "-nan"); every other value unchanged. */
static inline double cli_num(double v) { return v != v ? __builtin_fabs(v) : v; }

#endif
