/* Float sum kernels of the reductions (reduce.c), one set per ISA, chosen at run time like the
 * lx_kernels tables (kernels.h): reduce_generic in reduce.c, reduce_avx2.c, reduce_avx512.c.
 *
 * Every set adds in double and in the same order, so every set gives the same bits:
 *   sum_cols: acc[j] = x[j] + x[ld + j] + ... + x[(red-1)*ld + j], one chain per column, rows in order;
 *   sum_row:  32 lanes, lane k = sum of x[i] with i % 32 == k (i ascending), then the lanes fold
 *             pairwise: lane k += lane k + h for h = 16, 8, 4, 2, 1; the result is lane 0. */
#ifndef LINNX_REDUCE_KERNELS_H
#define LINNX_REDUCE_KERNELS_H

#include <stdint.h>

#include "linnx/cpu.h"

#define RED_ROW_LANES 32

typedef struct {
    void (*sum_cols)(const float *x, int64_t red, int64_t ld, int64_t w, double *acc);
    double (*sum_row)(const float *x, int64_t n);
} lx_reduce_kernels;

const lx_reduce_kernels *lx_reduce_kernels_avx2(void);   /* NULL when not compiled */
const lx_reduce_kernels *lx_reduce_kernels_avx512(void); /* NULL when not compiled */
/* The set of lx_isa_current(). */
const lx_reduce_kernels *lx_reduce_kernels_active(void);

#endif
