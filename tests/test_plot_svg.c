/* SVG line charts (plot.h): nice ranges by hand, point coordinates from the documented layout,
 * escaping, gaps, the atomic write, bad input. */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "linnx/linnx.h"
#include "linnx/plot.h"
#include "lx_test.h"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_nice_range(void) {
    double lo, hi, st;
    CHECK_EQ_INT(lx_plot_nice_range(0.3, 5.7, &lo, &hi, &st), LX_OK);
    CHECK(lo == 0 && hi == 6 && st == 2); /* raw step 1.08 -> 2 */
    CHECK_EQ_INT(lx_plot_nice_range(1.2, 5.55, &lo, &hi, &st), LX_OK);
    CHECK(lo == 1 && hi == 6 && st == 1); /* raw 0.87 -> 1 */
    CHECK_EQ_INT(lx_plot_nice_range(0, 1000, &lo, &hi, &st), LX_OK);
    CHECK(lo == 0 && hi == 1000 && st == 200);
    CHECK_EQ_INT(lx_plot_nice_range(3, 3, &lo, &hi, &st), LX_OK);
    CHECK(lo == 2 && hi == 4 && fabs(st - 0.5) < 1e-12); /* widened to [2, 4], raw 0.4 -> 0.5 */
    CHECK_FAILS(lx_plot_nice_range(NAN, 1, &lo, &hi, &st), LX_ERR_INVALID_ARGUMENT, "bad data range");
}

static void test_chart(void) {
    char path[] = "/tmp/lx_plot_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    double x[4] = {0, 100, 200, 300}, y[4] = {5.5, 3.0, NAN, 2.0}, hx[2] = {0, 300}, hy[2] = {5.0, 2.5};
    lx_plot_series s[2] = {{"train <loss>", x, y, 4, NULL}, {"held-out & co", hx, hy, 2, "#123456"}};
    lx_plot p = {.title = "loss", .xlabel = "step", .ylabel = "nats", .width = 600, .height = 400,
                 .has_hline = true, .hline = 4.25, .hline_label = "unigram entropy"};
    CHECK_EQ_INT(lx_plot_svg(path, &p, 2, s), LX_OK);
    char *svg = slurp(path);
    CHECK(svg && strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"400\"", 63) == 0);
    CHECK(svg && strstr(svg, "train &lt;loss&gt;") && strstr(svg, "held-out &amp; co"));
    /* the NaN splits the first series: three polylines in all */
    CHECK(svg && count(svg, "<polyline") == 3);
    /* x range [0, 300] (step 100), y range [2, 6] (data 2..5.5, raw step 0.7 -> 1): the point
     * (0, 5.5) sits at y = 350 - 3.5/4 * 310 = 78.75 and (100, 3.0) at x = 70 + 100/300 * (600-20-70) = 240, y = (400-50) - (3-2)/4 * (350-40) = 272.5 */
    CHECK(svg && strstr(svg, "points=\"70.00,78.75 240.00,272.50\""));
    CHECK(svg && strstr(svg, "points=\"580.00,350.00\""));
    CHECK(svg && strstr(svg, "stroke=\"#123456\""));
    /* the reference line at 4.25: y = 350 - 2.25/4 * 310 = 175.625 */
    CHECK(svg && strstr(svg, "class=\"hline\" x1=\"70.00\" y1=\"175.62\""));
    CHECK(svg && strstr(svg, "</svg>\n"));
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);
    /* bad input leaves the existing chart alone */
    double nan2[2] = {NAN, NAN};
    lx_plot_series bad = {"x", nan2, nan2, 2, NULL};
    CHECK_FAILS(lx_plot_svg(path, &p, 1, &bad), LX_ERR_INVALID_ARGUMENT, "no finite point");
    CHECK(slurp(path) && strstr(slurp(path), "train &lt;loss&gt;"));
    CHECK_FAILS(lx_plot_svg(path, &p, 0, s), LX_ERR_INVALID_ARGUMENT, "no series");
    lx_plot tiny = {.width = 50, .height = 50};
    CHECK_FAILS(lx_plot_svg(path, &tiny, 2, s), LX_ERR_INVALID_ARGUMENT, "too small");
    CHECK_FAILS(lx_plot_svg("/nonexistent-dir/x.svg", &p, 2, s), LX_ERR_IO, "cannot create /nonexistent-dir/x.svg: No such file or directory");
    unlink(path);
}

/* Entries of `dir` whose name starts with `prefix` (the writer's temporaries). */
static int count_prefixed(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* The temporary file is made exclusively under a name of its own: a symbolic link or a file named
 * PATH.tmp (the name it used to write through fopen) is neither followed nor overwritten; a write
 * that fails (a file size limit) leaves the old chart and no temporary. */
static void test_temporary_file(void) {
    char dir[] = "/tmp/lx_plot_dir_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128], tmp[160], victim[128];
    snprintf(path, sizeof path, "%s/chart.svg", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(victim, sizeof victim, "%s/victim", dir);
    put(victim, "keep me");
    CHECK(symlink(victim, tmp) == 0);
    double x[2] = {0, 1}, y[2] = {2, 3};
    lx_plot_series s = {"loss", x, y, 2, NULL};
    lx_plot p = {.title = "t"};
    CHECK_EQ_INT(lx_plot_svg(path, &p, 1, &s), LX_OK);
    CHECK(slurp(victim) && strcmp(slurp(victim), "keep me") == 0);
    struct stat sb;
    CHECK(lstat(path, &sb) == 0 && S_ISREG(sb.st_mode)); /* the chart itself, not the link moved over it */
    CHECK(slurp(path) && strstr(slurp(path), "<polyline"));
    CHECK(lstat(tmp, &sb) == 0 && S_ISLNK(sb.st_mode));
    CHECK_EQ_INT(count_prefixed(dir, "chart.svg.tmp."), 0);
    unlink(tmp);
    put(tmp, "mine");
    CHECK_EQ_INT(lx_plot_svg(path, &p, 1, &s), LX_OK);
    CHECK(slurp(tmp) && strcmp(slurp(tmp), "mine") == 0);
    CHECK_EQ_INT(count_prefixed(dir, "chart.svg.tmp."), 0);

    /* a write that fails: the old chart stays, no temporary is left */
    char old[1 << 12];
    snprintf(old, sizeof old, "%s", slurp(path) ? slurp(path) : "");
    struct rlimit keep, small;
    CHECK(getrlimit(RLIMIT_FSIZE, &keep) == 0);
    small = keep;
    small.rlim_cur = 100; /* the chart is over 1 KB */
    void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    lx_status st = lx_plot_svg(path, &p, 1, &s);
    CHECK(setrlimit(RLIMIT_FSIZE, &keep) == 0);
    signal(SIGXFSZ, was);
    CHECK_EQ_INT(st, LX_ERR_IO);
    CHECK_ERROR_HAS(path);
    CHECK(slurp(path) && strcmp(slurp(path), old) == 0);
    CHECK_EQ_INT(count_prefixed(dir, "chart.svg.tmp."), 0);
    /* bad input: the same */
    lx_plot tiny = {.width = 50, .height = 50};
    CHECK_FAILS(lx_plot_svg(path, &tiny, 1, &s), LX_ERR_INVALID_ARGUMENT, "too small");
    CHECK(slurp(path) && strcmp(slurp(path), old) == 0);
    CHECK_EQ_INT(count_prefixed(dir, "chart.svg.tmp."), 0);
    unlink(tmp);
    unlink(victim);
    unlink(path);
    CHECK(rmdir(dir) == 0);
}

int main(void) {
    RUN(test_nice_range);
    RUN(test_chart);
    RUN(test_temporary_file);
    return lx_test_finish();
}
