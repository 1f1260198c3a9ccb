#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include "/work/wt/perf/bench/common.h"
void row_fwd(const float *x, float *y, int64_t n);
static float *X, *Y;
static void f(void *p){(void)p; for (int r = 0; r < 128; r++) row_fwd(X + r*4096, Y + r*4096, 4096);}
int main(void){ X = aligned_alloc(64, 4*128*4096); Y = aligned_alloc(64, 4*128*4096);
 for (int64_t i=0;i<128*4096;i++) X[i]=((i*7919)%1000)*0.004f-2;
 for (int r=0;r<3;r++) printf("%.1f us ", 1e6*bench_median(f,0,10,21,10)); 
 double s = 0; for (int64_t i=0;i<128*4096;i++) s += Y[i]*(i%13); printf(" chk %.9g\n", s);}
