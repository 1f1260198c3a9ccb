/* Random-number throughput: bits and samplers, one core and all cores.
 * Prints `<workload> <metric> <value>` lines; about one second in total. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "linnx/linnx.h"
#include "linnx/random.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { BITS, UNIFORM, NORMAL, TRUNC };

static void run_one(int kind, int64_t n, void *buf, uint32_t iter) {
    lx_key k = lx_key_fold_in(lx_key_from_seed(0), iter);
    switch (kind) {
    case BITS: lx_random_bits_into(k, n, buf); break;
    case UNIFORM: lx_random_uniform_into(k, n, -1.0f, 1.0f, buf); break;
    case NORMAL: lx_random_normal_into(k, n, buf); break;
    default: lx_random_truncated_normal_into(k, -2.0f, 2.0f, n, buf); break;
    }
}

/* Values per second over repeated fills of n values for about `budget` seconds. */
static double measure(int kind, int64_t n, void *buf, double budget) {
    run_one(kind, n, buf, 0); /* warm up */
    double t0 = now(), t;
    uint32_t it = 0;
    do run_one(kind, n, buf, ++it);
    while ((t = now() - t0) < budget);
    return (double)n * it / t;
}

int main(void) {
    const int64_t n = 1 << 20;
    void *buf = malloc((size_t)n * 4);
    if (!buf) return 1;
    int threads = lx_num_threads();
    static const struct { const char *name; int kind; double budget; } w[] = {
        {"random_bits", BITS, 0.08}, {"uniform", UNIFORM, 0.08}, {"normal", NORMAL, 0.1},
        {"truncated_normal", TRUNC, 0.08}};
    for (int legacy = 0; legacy < 2; legacy++) {
        lx_random_set_legacy(legacy);
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
            if (legacy && w[i].kind != BITS && w[i].kind != NORMAL) continue;
            char name[64];
            snprintf(name, sizeof name, "%s%s", w[i].name, legacy ? "_legacy" : "");
            lx_set_num_threads(1); /* the one setting linnx's OpenMP teams obey */
            printf("%s values_per_s_per_core %.3g\n", name, measure(w[i].kind, n, buf, w[i].budget));
            if (threads > 1 && !legacy) {
                lx_set_num_threads(threads);
                printf("%s values_per_s_%d_threads %.3g\n", name, threads, measure(w[i].kind, n, buf, w[i].budget));
            }
            fflush(stdout);
        }
    }
    free(buf);
    return 0;
}
