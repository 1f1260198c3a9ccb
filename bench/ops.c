/* Op benchmarks: GEMM-backed matmul against direct cblas_sgemm in the same run, conv_general,
 * softmax and layer-norm throughput, and (when Debian's python3-torch is installed) the same single
 * op timed in PyTorch with the same thread count. Prints `<workload> <metric> <value>`. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "linnx/linalg.h"
#include "linnx/linnx.h"
#include "linnx/nn.h"
#include "linnx/threads.h"

static lx_array *rand_array(int ndim, const int64_t *shape) {
    lx_array *a = lx_array_empty(LX_F32, ndim, shape);
    uint32_t s = 1234567u;
    for (int64_t i = 0; i < a->size; i++) {
        s = s * 1664525u + 1013904223u;
        lx_f32(a)[i] = (float)((s >> 8) * (1.0 / 8388608.0)) - 1.0f;
    }
    return a;
}

typedef struct {
    lx_array *a, *b, *c;
    int op; /* 0 matmul, 1 cblas, 2 conv, 3 softmax, 4 layer_norm, 5 sum over leading axes, 6 full sum,
             * 7 memcpy of a (the read+write peak the reductions are held against), 8 b broadcast to a's shape */
    lx_conv_params conv;
} job;

static void run(void *p) {
    job *j = p;
    size_t mark = lx_pool_open();
    switch (j->op) {
    case 0: lx_matmul(j->a, j->b); break;
    case 1:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)j->a->shape[0], (int)j->b->shape[1],
                    (int)j->a->shape[1], 1.0f, lx_f32(j->a), (int)j->a->shape[1], lx_f32(j->b), (int)j->b->shape[1],
                    0.0f, lx_f32(j->c), (int)j->b->shape[1]);
        break;
    case 2: lx_conv_general(j->a, j->b, &j->conv); break;
    case 3: lx_softmax(j->a, -1); break;
    case 4: lx_layer_norm(j->a, j->b, j->c, 1e-6f, 0, NULL); break;
    case 5: lx_sum(j->a, 3, (const int64_t[]){0, 1, 2}, false); break;
    case 6: lx_sum(j->a, LX_ALL_AXES, false); break;
    case 8: lx_broadcast_to(j->b, j->a->ndim, j->a->shape); break;
    case 7: memcpy(lx_f32(j->c), lx_f32(j->a), (size_t)j->a->size * 4); break;
    }
    lx_pool_close(mark);
}

static double timed(job *j, double est) {
    int inner = bench_inner_for(est, 5e-3);
    return bench_median(run, j, 3, est > 0.02 ? 7 : 21, inner);
}

/* ---- PyTorch peer: one subprocess times every op, printing `<name> <seconds>` ---- */
static const char *torch_script =
    "import sys, time, statistics, torch\n"
    "import torch.nn.functional as F\n"
    "torch.set_num_threads(int(sys.argv[1]))\n"
    "def t(f, reps=21):\n"
    "    for _ in range(3): f()\n"
    "    n = 1; s = time.perf_counter(); f(); e = time.perf_counter() - s\n"
    "    n = max(1, int(5e-3 / max(e, 1e-7)))\n"
    "    ts = []\n"
    "    for _ in range(reps):\n"
    "        s = time.perf_counter()\n"
    "        for _ in range(n): f()\n"
    "        ts.append((time.perf_counter() - s) / n)\n"
    "    return statistics.median(ts)\n"
    "with torch.no_grad():\n"
    "    for n in (64, 256, 512, 1024, 2048):\n"
    "        a = torch.randn(n, n); b = torch.randn(n, n)\n"
    "        print('matmul_%d' % n, t(lambda: a @ b, 7 if n >= 1024 else 21), flush=True)\n"
    "    for (m, k, n) in ((128, 784, 512), (128, 512, 512)):\n"
    "        a = torch.randn(m, k); b = torch.randn(k, n)\n"
    "        print('matmul_%dx%dx%d' % (m, k, n), t(lambda: a @ b), flush=True)\n"
    "    c1 = torch.nn.Conv2d(1, 32, 3, padding=1); c2 = torch.nn.Conv2d(32, 64, 3, padding=1)\n"
    "    x1 = torch.randn(64, 1, 28, 28); x2 = torch.randn(64, 32, 28, 28)\n"
    "    print('conv1_64x28x28x1_32', t(lambda: c1(x1)), flush=True)\n"
    "    print('conv2_64x28x28x32_64', t(lambda: c2(x2), 7), flush=True)\n"
    "    x = torch.randn(128, 4096); ln = torch.nn.LayerNorm(4096)\n"
    "    print('softmax_128x4096', t(lambda: torch.softmax(x, -1)), flush=True)\n"
    "    print('layer_norm_128x4096', t(lambda: ln(x)), flush=True)\n";

typedef struct { char name[64]; double secs; } peer_time;
static peer_time peers[32];
static int npeers;

static void torch_times(int threads) {
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        printf("# torch not installed (apt-get install python3-torch for vs_torch lines)\n");
        return;
    }
    char path[] = "/tmp/linnx_bench_torch_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "w");
    fputs(torch_script, f);
    fclose(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=%d /usr/bin/python3 %s %d 2>/dev/null", threads, path, threads);
    FILE *p = popen(cmd, "r");
    if (p) {
        while (npeers < 32 && fscanf(p, "%63s %lf", peers[npeers].name, &peers[npeers].secs) == 2) npeers++;
        pclose(p);
    }
    unlink(path);
}

static void vs_torch(const char *name, double ours) {
    for (int i = 0; i < npeers; i++)
        if (strcmp(peers[i].name, name) == 0) printf("%s vs_torch %.3f\n", name, ours / peers[i].secs);
}

static void bench_matmul(const char *name, int64_t m, int64_t k, int64_t n) {
    job j = {.a = rand_array(2, (int64_t[]){m, k}), .b = rand_array(2, (int64_t[]){k, n}),
             .c = lx_array_empty(LX_F32, 2, (int64_t[]){m, n})};
    double est = 2.0 * m * n * k / 1.5e11;
    /* interleave to share any drift in clock speed between the two sides */
    double ours = 0, blas = 0;
    for (int round = 0; round < 2; round++) {
        j.op = 1;
        double b = timed(&j, est);
        j.op = 0;
        double o = timed(&j, est);
        if (round == 0 || o < ours) ours = o;
        if (round == 0 || b < blas) blas = b;
    }
    printf("%s vs_openblas %.3f\n", name, ours / blas);
    printf("%s gflops %.1f\n", name, 2.0 * m * n * k / ours / 1e9);
    vs_torch(name, ours);
    lx_release(j.a), lx_release(j.b), lx_release(j.c);
}

static void bench_conv(const char *name, int64_t cin, int64_t cout) {
    job j = {.a = rand_array(4, (int64_t[]){64, 28, 28, cin}), .b = rand_array(4, (int64_t[]){3, 3, cin, cout}), .op = 2,
             .conv = {.padding = {.mode = LX_PAD_SAME}}};
    double flops = 2.0 * 64 * 28 * 28 * 9 * cin * cout;
    double bytes = 4.0 * (64 * 28 * 28 * (cin + cout) + 9 * cin * cout);
    double t = timed(&j, flops / 1e11);
    printf("%s ms %.3f\n", name, t * 1e3);
    printf("%s gflops %.1f\n", name, flops / t / 1e9);
    printf("%s gbps %.2f\n", name, bytes / t / 1e9);
    vs_torch(name, t);
    lx_release(j.a), lx_release(j.b);
}

static void bench_rows(const char *name, int op) {
    job j = {.a = rand_array(2, (int64_t[]){128, 4096}), .op = op};
    if (op == 4) j.b = rand_array(1, (int64_t[]){4096}), j.c = rand_array(1, (int64_t[]){4096});
    double t = timed(&j, 1e-4);
    printf("%s us %.1f\n", name, t * 1e6);
    printf("%s gbps %.2f\n", name, 2.0 * 4 * 128 * 4096 / t / 1e9);
    vs_torch(name, t);
    lx_release(j.a), lx_release(j.b), lx_release(j.c);
}

/* Reductions on a training step's path: cnn_train's bias gradients (sums of a conv activation over
 * all but the channel axis) and full sums, read bandwidth against a memcpy of the same array in
 * the same run (`vs_copy`: memcpy reads and writes, so a reduction at the read bandwidth shows
 * near 2). 64x28x28x32 (6.4 MB) streams from memory, 8x24x24x64 (1.2 MB) stays in L2. */
static void bench_reduce_shape(const int64_t *shp) {
    char name[48];
    snprintf(name, sizeof name, "%lldx%lldx%lldx%lld", (long long)shp[0], (long long)shp[1], (long long)shp[2],
             (long long)shp[3]);
    job c = {.a = rand_array(4, shp), .c = rand_array(4, shp), .op = 7};
    const double bytes = 4.0 * (double)c.a->size, tc = timed(&c, 1e-4);
    printf("copy_%s gbps %.2f\n", name, 2 * bytes / tc / 1e9);
    job s = {.a = c.a, .op = 5}, f = {.a = c.a, .op = 6};
    const double ts = timed(&s, 1e-4), tf = timed(&f, 1e-4);
    printf("sum_lead_%s gbps %.2f\n", name, bytes / ts / 1e9);
    printf("sum_lead_%s vs_copy %.3f\n", name, tc / ts);
    printf("sum_all_%s gbps %.2f\n", name, bytes / tf / 1e9);
    printf("sum_all_%s vs_copy %.3f\n", name, tc / tf);
    /* the sum VJPs' broadcasts back: one channel row to every pixel, one value to every element */
    job br = {.a = c.a, .b = rand_array(4, (const int64_t[]){1, 1, 1, shp[3]}), .op = 8};
    job bs = {.a = c.a, .b = rand_array(0, NULL), .op = 8};
    const double tbr = timed(&br, 1e-4), tbs = timed(&bs, 1e-4);
    printf("bcast_row_%s gbps %.2f\n", name, bytes / tbr / 1e9);
    printf("bcast_row_%s vs_copy %.3f\n", name, tc / tbr);
    printf("bcast_all_%s gbps %.2f\n", name, bytes / tbs / 1e9);
    printf("bcast_all_%s vs_copy %.3f\n", name, tc / tbs);
    lx_release(br.b), lx_release(bs.b);
    lx_release(c.a), lx_release(c.c);
}

static void bench_reduce(void) {
    bench_reduce_shape((const int64_t[]){64, 28, 28, 32});
    bench_reduce_shape((const int64_t[]){8, 24, 24, 64});
}

/* `bench_ops reduce` runs only the reduction lines. */
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "reduce") == 0) {
        printf("# linnx ops bench: %d threads, kernel set %s\n", lx_num_threads(), lx_isa_name(lx_isa_current()));
        bench_reduce();
        lx_pool_drain();
        return 0;
    }
    int threads = lx_num_threads();
    printf("# linnx ops bench: %d threads, small-GEMM kernel %s, small limit %lld\n", threads, lx_sgemm_kernel(),
           (long long)lx_sgemm_small_limit());
    torch_times(threads);
    const int64_t sq[] = {64, 256, 512, 1024, 2048};
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "matmul_%lld", (long long)sq[i]);
        bench_matmul(name, sq[i], sq[i], sq[i]);
    }
    bench_matmul("matmul_128x784x512", 128, 784, 512);
    bench_matmul("matmul_128x512x512", 128, 512, 512);
    bench_conv("conv1_64x28x28x1_32", 1, 32);
    bench_conv("conv2_64x28x28x32_64", 32, 64);
    bench_rows("softmax_128x4096", 3);
    bench_rows("layer_norm_128x4096", 4);
    bench_reduce();
    lx_pool_drain();
    return 0;
}
