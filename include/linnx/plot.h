/* linnx/plot.h - line charts as SVG files (loss curves), with no dependency: a browser shows them.
 *
 * Layout (pixels): the plot area spans x in [LX_PLOT_LEFT, width - LX_PLOT_RIGHT] and y in
 * [LX_PLOT_TOP, height - LX_PLOT_BOTTOM]. Each axis runs over the "nice" range lx_plot_nice_range
 * gives for the data (the reference line included), data x maps linearly to the area's left..right
 * and data y to its bottom..top. Points that are not finite are skipped (a series may have gaps).
 * Series are <polyline> elements in order, with a legend; text is XML-escaped.
 *
 * Ownership: nothing is kept. The chart is drawn in memory and written as checkpoints are
 * (lx_atomic_write_file, checkpoint.h): to a temporary file of its own in PATH's folder
 * (PATH.tmp.<pid>.<n>, created exclusively, so a link or file of any other name, PATH.tmp
 * included, is neither followed nor overwritten, and two writers never share one), then renamed
 * over PATH. A failed write leaves the old file as it was and no temporary behind.
 */
#ifndef LINNX_PLOT_H
#define LINNX_PLOT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "linnx/status.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

#define LX_PLOT_LEFT 70
#define LX_PLOT_RIGHT 20
#define LX_PLOT_TOP 40
#define LX_PLOT_BOTTOM 50

typedef struct lx_plot_series {
    const char *name;  /* legend text */
    const double *x, *y;
    int64_t n;
    const char *color; /* an SVG colour ("#1f77b4"); NULL picks one from a palette */
} lx_plot_series;

typedef struct lx_plot {
    const char *title, *xlabel, *ylabel; /* may be NULL */
    int width, height;                   /* 0: 800 x 480 */
    bool has_hline;                      /* a dashed horizontal reference line at y = hline */
    double hline;
    const char *hline_label;
} lx_plot;

/* A range [lo, hi] covering [min, max] whose ticks `step` apart are 1, 2 or 5 times a power of ten,
 * about 5 of them (min == max widens by 1 either side). Not finite input: LX_ERR_INVALID_ARGUMENT. */
lx_status lx_plot_nice_range(double min, double max, double *lo, double *hi, double *step);
/* Write the chart. Errors: no series or no finite point at all, a width/height too small for the
 * margins (LX_ERR_INVALID_ARGUMENT), a file that cannot be written (LX_ERR_IO, naming the path:
 * "cannot create PATH: ...", "cannot write PATH: ..."). */
lx_status lx_plot_svg(const char *path, const lx_plot *plot, int nseries, const lx_plot_series *series);
lx_status lx_plot_svg_fprint(FILE *f, const lx_plot *plot, int nseries, const lx_plot_series *series);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
