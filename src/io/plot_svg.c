/* Line charts as SVG (plot.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "linnx/checkpoint.h" /* lx_atomic_write_file */
#include "linnx/plot.h"

static const char *const PALETTE[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

lx_status lx_plot_nice_range(double min, double max, double *lo, double *hi, double *step) {
    if (!isfinite(min) || !isfinite(max) || min > max)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "plot: bad data range [%g, %g]", min, max);
    if (min == max) {
        min -= 1;
        max += 1;
    }
    double raw = (max - min) / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double s = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    *step = s;
    *lo = floor(min / s) * s;
    *hi = ceil(max / s) * s;
    return LX_OK;
}

static void xml_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

lx_status lx_plot_svg_fprint(FILE *f, const lx_plot *plot, int nseries, const lx_plot_series *series) {
    if (!f || !plot || nseries <= 0 || !series) return lx_fail(LX_ERR_INVALID_ARGUMENT, "plot: no series to draw");
    int W = plot->width ? plot->width : 800, H = plot->height ? plot->height : 480;
    if (W < LX_PLOT_LEFT + LX_PLOT_RIGHT + 10 || H < LX_PLOT_TOP + LX_PLOT_BOTTOM + 10)
        return lx_fail(LX_ERR_INVALID_ARGUMENT, "plot: %d x %d is too small", W, H);
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < nseries; s++)
        for (int64_t i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xmin = fmin(xmin, x), xmax = fmax(xmax, x), ymin = fmin(ymin, y), ymax = fmax(ymax, y);
        }
    if (!isfinite(xmin)) return lx_fail(LX_ERR_INVALID_ARGUMENT, "plot: no finite point in any series");
    if (plot->has_hline && isfinite(plot->hline)) ymin = fmin(ymin, plot->hline), ymax = fmax(ymax, plot->hline);
    double xlo, xhi, xs, ylo, yhi, ys;
    LX_TRY(lx_plot_nice_range(xmin, xmax, &xlo, &xhi, &xs));
    LX_TRY(lx_plot_nice_range(ymin, ymax, &ylo, &yhi, &ys));
    double L = LX_PLOT_LEFT, R = W - LX_PLOT_RIGHT, T = LX_PLOT_TOP, B = H - LX_PLOT_BOTTOM;
#define PX(x) (L + ((x) - xlo) / (xhi - xlo) * (R - L))
#define PY(y) (B - ((y) - ylo) / (yhi - ylo) * (B - T))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    if (plot->title) {
        fprintf(f, "<text x=\"%d\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">", W / 2);
        xml_text(f, plot->title);
        fputs("</text>\n", f);
    }
    /* grid and ticks */
    for (double v = xlo; v <= xhi + xs * 1e-9; v += xs)
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#ddd\"/>"
                   "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%g</text>\n",
                PX(v), T, PX(v), B, PX(v), B + 16, fabs(v) < xs * 1e-9 ? 0.0 : v);
    for (double v = ylo; v <= yhi + ys * 1e-9; v += ys)
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#ddd\"/>"
                   "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">%g</text>\n",
                L, PY(v), R, PY(v), L - 6, PY(v) + 4, fabs(v) < ys * 1e-9 ? 0.0 : v);
    fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"#444\"/>\n", L, T,
            R - L, B - T);
    if (plot->xlabel) {
        fprintf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">", (L + R) / 2, H - 12);
        xml_text(f, plot->xlabel);
        fputs("</text>\n", f);
    }
    if (plot->ylabel) {
        fprintf(f, "<text transform=\"translate(16 %.2f) rotate(-90)\" text-anchor=\"middle\">", (T + B) / 2);
        xml_text(f, plot->ylabel);
        fputs("</text>\n", f);
    }
    if (plot->has_hline && isfinite(plot->hline)) {
        fprintf(f, "<line class=\"hline\" x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#777\" "
                   "stroke-dasharray=\"6 4\"/>\n", L, PY(plot->hline), R, PY(plot->hline));
        if (plot->hline_label) {
            fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" fill=\"#555\">", R - 4, PY(plot->hline) - 4);
            xml_text(f, plot->hline_label);
            fputs("</text>\n", f);
        }
    }
    for (int s = 0; s < nseries; s++) {
        const char *color = series[s].color ? series[s].color : PALETTE[s % 6];
        /* one polyline per run of finite points */
        bool open = false;
        for (int64_t i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) {
                if (open) fputs("\"/>\n", f);
                open = false;
                continue;
            }
            if (!open) {
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"", color);
                open = true;
            } else {
                fputc(' ', f);
            }
            fprintf(f, "%.2f,%.2f", PX(x), PY(y));
        }
        if (open) fputs("\"/>\n", f);
        /* legend entry */
        double ly = T + 16 + 18 * s;
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" stroke-width=\"3\"/>"
                   "<text x=\"%.2f\" y=\"%.2f\">", R - 150, ly - 4, R - 130, ly - 4, color, R - 124, ly);
        xml_text(f, series[s].name ? series[s].name : "");
        fputs("</text>\n", f);
    }
#undef PX
#undef PY
    fputs("</svg>\n", f);
    return ferror(f) ? lx_fail(LX_ERR_IO, "plot: write error") : LX_OK;
}

lx_status lx_plot_svg(const char *path, const lx_plot *plot, int nseries, const lx_plot_series *series) {
    if (!path || !*path) return lx_fail(LX_ERR_INVALID_ARGUMENT, "plot: no output path");
    /* The chart is drawn in memory, then written by the checkpoints' writer: a temporary file of
     * its own in the same folder (PATH.tmp.<pid>.<n>, created exclusively: no link or file of
     * that name is followed or overwritten, two writers never share one), renamed over PATH. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return lx_fail(LX_ERR_NO_MEMORY, "plot: out of memory");
    lx_status st = lx_plot_svg_fprint(f, plot, nseries, series);
    if (fclose(f) != 0 && st == LX_OK) st = lx_fail(LX_ERR_NO_MEMORY, "plot: out of memory");
    if (st == LX_OK) st = lx_atomic_write_file(path, buf, len);
    free(buf);
    return st;
}
