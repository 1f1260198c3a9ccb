/* How the erfc coefficients of src/ops/vmath.c (ERFC_C) were computed: Chebyshev interpolation
 * at 200 nodes of g(t) = log(erfc(z)) + z^2 - log(t), z = 2/t - 2, over t in [0, 0.705] (z from
 * 0.84 to infinity; past z = 20 from erfc's asymptotic series, where double erfc underflows),
 * converted to monomials in y = t * 2/0.705 - 1. Also prints the float evaluation's worst relative
 * error of erfc over z in [0.84, 10].
 *   cc -O2 -o /tmp/cheb scripts/gen_vmath_erfc_coeffs.c -lm && /tmp/cheb 9 */
#define _DEFAULT_SOURCE /* M_PI */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
/* g(t) = log(erfc(z)) + z^2 - log(t), z = 2/t - 2, on t in [0, T1] */
static const double T1 = 0.705;
static double g(double t) {
    if (t == 0) return -log(2 * sqrt(M_PI));
    double z = 2 / t - 2;
    if (z > 20) {
        double u = 1 / (z * z);
        return log((1 - u / 2 + 0.75 * u * u - 1.875 * u * u * u + 6.5625 * u * u * u * u) / (z * sqrt(M_PI))) - log(t);
    }
    return log(erfc(z)) + z * z - log(t);
}
int main(int argc, char **argv) {
    int N = argc > 1 ? atoi(argv[1]) : 12; /* degree */
    int M = 200;
    double c[64] = {0};
    for (int j = 0; j <= N; j++) {
        double s = 0;
        for (int k = 0; k < M; k++) {
            double th = M_PI * (k + 0.5) / M, y = cos(th), t = (y + 1) * T1 / 2;
            /* t at y=-1 is 0: z infinite; fine (g handles t==0 only exactly) */
            s += g(t) * cos(j * th);
        }
        c[j] = 2 * s / M;
    }
    c[0] /= 2;
    /* convert Chebyshev sum to monomials in y */
    double mono[64] = {0}, Tm2[64] = {0}, Tm1[64] = {0}, Tc[64];
    Tm2[0] = 1;                /* T0 */
    Tm1[1] = 1;                /* T1 */
    mono[0] += c[0];
    for (int i = 0; i <= N; i++) mono[i] += c[1] * Tm1[i];
    for (int j = 2; j <= N; j++) {
        for (int i = 0; i < 64; i++) Tc[i] = -Tm2[i] + (i ? 2 * Tm1[i - 1] : 0);
        for (int i = 0; i <= N; i++) mono[i] += c[j] * Tc[i];
        for (int i = 0; i < 64; i++) Tm2[i] = Tm1[i], Tm1[i] = Tc[i];
    }
    /* evaluate error in float Horner over z in [0.84, 10] */
    double worst = 0, wz = 0;
    for (int k = 0; k <= 200000; k++) {
        double z = 0.84 + (10 - 0.84) * k / 200000.0;
        float zf = (float)z;
        float t = 2.0f / (2.0f + zf), y = t * (float)(2 / T1) - 1.0f;
        float p = (float)mono[N];
        for (int i = N - 1; i >= 0; i--) p = fmaf(p, y, (float)mono[i]);
        double ref = erfc((double)zf);
        if (ref < 1e-37) break;
        double got = (double)t * exp(-(double)zf * zf + p);
        double e = fabs(got - ref) / ref;
        if (e > worst) worst = e, wz = zf;
    }
    printf("deg %d last cheb %.3g worst rel %.3g at %.4f\n", N, c[N], worst, wz);
    for (int i = 0; i <= N; i++) printf("%.9ef,\n", mono[i]);
    return 0;
}
