/* The training progress display of `linnx train` and `linnx train-lm` (progress.h). */
#include "progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double progress_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *progress_fmt_duration(double s, char *buf, size_t cap) {
    if (!(s >= 0) || !isfinite(s)) {
        snprintf(buf, cap, "?");
        return buf;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%lds", t);
    return buf;
}

bool progress_is_terminal(int fd) {
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK")) return false;
    return isatty(fd);
}

void progress_begin(progress *p, FILE *out, int64_t total, int64_t every) {
    memset(p, 0, sizeof *p);
    p->out = out;
    p->total = total > 0 ? total : 1;
    p->every = every > 0 ? every : (p->total + 19) / 20;
    const char *mode = getenv("LINNX_PROGRESS");
    if (mode && !strcmp(mode, "plain")) p->tty = false;
    else if (mode && !strcmp(mode, "tty")) p->tty = true;
    else p->tty = progress_is_terminal(fileno(out));
    p->t0 = progress_now();
}

static void clear_line(progress *p) {
    if (p->tty && p->drawn) fputs("\r\033[K", p->out);
    p->drawn = false;
}

void progress_update(progress *p, int64_t step, double loss, int64_t tokens) {
    p->tokens += tokens;
    double now = progress_now(), el = now - p->t0;
    double steps_rate = el > 0 ? (double)(step - p->start) / el : 0;
    double tok_rate = el > 0 ? (double)p->tokens / el : 0;
    double eta = step > p->start ? el / (double)(step - p->start) * (double)(p->total - step) : -1;
    char e[32];
    progress_fmt_duration(eta, e, sizeof e);
    bool last = step >= p->total;
    if (p->tty) {
        if (!last && p->drawn && now - p->last_draw < 0.1) return;
        p->last_draw = now;
        enum { W = 24 };
        int fill = (int)((double)W * (double)step / (double)p->total);
        char bar[W + 1], tok[48] = "";
        for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
        bar[W] = 0;
        if (p->tokens > 0) snprintf(tok, sizeof tok, "  %.1fk tok/s", tok_rate / 1000);
        fprintf(p->out, "\r\033[K[%s] %5lld/%lld  loss %.6g  %.1f steps/s%s  ETA %s", bar, (long long)step,
                (long long)p->total, isnan(loss) ? fabs(loss) : loss, steps_rate, tok, last ? "0s" : e);
        p->drawn = true;
    } else if (!p->quiet && (step % p->every == 0 || last || step == 1)) {
        /* the rates after the loss, tok/s first: scripts cut lines at " tok/s" to compare losses */
        fprintf(p->out, "step %lld/%lld loss %.4f", (long long)step, (long long)p->total, isnan(loss) ? fabs(loss) : loss); /* nan, not -nan */
        if (p->tokens > 0) fprintf(p->out, " tok/s %.0f", tok_rate);
        fprintf(p->out, " steps/s %.2f eta %s\n", steps_rate, last ? "0s" : e);
    }
    fflush(p->out);
}

void progress_note(progress *p, const char *fmt, ...) {
    clear_line(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    fflush(p->out);
}

void progress_end(progress *p) {
    if (p->tty && p->drawn) fputc('\n', p->out);
    p->drawn = false;
    fflush(p->out);
}
