/* tools/progress.h - the one training progress display of the command-line program (`linnx train`
 * and `linnx train-lm`).
 *
 * On a terminal (progress_is_terminal): one line redrawn in place (at most 10 times a second, and always on the last
 * step): "[#########...........]  120/1000  loss 2.3456  8.1 steps/s  ETA 1m23s", with
 * "  12.3k tok/s" before the ETA when the caller counts tokens (train-lm). Otherwise (piped,
 * logged, under mpirun, or LINNX_PROGRESS=plain): a plain line every `every` steps and on the last one,
 * "step 120/1000 loss 2.3456 tok/s 12345 steps/s 8.10 eta 83s" — unless `quiet` is set: `linnx
 * train` prints its own `step K loss V` line per step when piped and keeps the display for the
 * terminal only. LINNX_PROGRESS=tty forces the bar.
 * progress_note prints a line of its own (held-out loss, samples) without breaking the bar.
 */
#ifndef LINNX_TOOLS_PROGRESS_H
#define LINNX_TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct progress {
    FILE *out;
    int64_t total, every, tokens;
    int64_t start; /* the step the run started after (0; a resumed run sets it for the ETA) */
    double t0, last_draw;
    bool tty, drawn;
    bool quiet; /* no plain lines (the caller prints its own when not on a terminal) */
} progress;

/* Whether `fd` is a terminal the user watches: isatty, except under an MPI launcher (mpirun,
 * srun: OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK set), which gives each rank a pty even when
 * its own output goes to a file or a pipe; there the plain lines are the default. */
bool progress_is_terminal(int fd);
/* Seconds since an arbitrary start (CLOCK_MONOTONIC). */
double progress_now(void);
/* "1h02m", "3m05s", "12s", "?" for a negative or non-finite time. */
const char *progress_fmt_duration(double seconds, char *buf, size_t cap);
/* total steps; plain-mode lines every `every` steps (0: about 20 lines over the run). */
void progress_begin(progress *p, FILE *out, int64_t total, int64_t every);
/* After step `step` (1-based, counted like `total`) which processed `tokens` tokens (0: none
 * counted, no tok/s shown) with training loss `loss`. */
void progress_update(progress *p, int64_t step, double loss, int64_t tokens);
void progress_note(progress *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* End the bar's line (a newline on a terminal). */
void progress_end(progress *p);

#endif
