/* Every parallel region obeys the one thread setting (linnx/threads.h), on every thread.
 *
 * The test sets LINNX_THREADS=1 before any linnx call and runs large ops (elementwise, unary,
 * casts, clip, reductions, transposes, take, random bits and samplers) on a second thread, whose
 * OpenMP default team size is OMP_NUM_THREADS (2 under ctest) and was never touched by linnx. A
 * loop that used the OpenMP default instead of the setting would start a worker thread, which
 * shows in /proc/self/task. A control run with the setting at 2 shows that the count does move
 * when a team is started, so the check is not vacuous. */
#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>

#include "linnx/random.h"
#include "linnx/threads.h"
#include "ops_util.h"

static int count_tasks(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

typedef struct {
    int before, after;
    bool ok;
} run_result;

/* Large enough for every op's parallel threshold. */
#define N_BIG (1 << 19)

static void big_ops(run_result *r) {
    size_t mark = lx_pool_open();
    const int64_t s1[] = {N_BIG}, s2[] = {512, N_BIG / 512}, srow[] = {1, N_BIG / 512};
    lx_array *x = lx_autorelease(lx_array_full_f32(1, s1, 0.5f));
    lx_array *m = lx_autorelease(lx_array_full_f32(2, s2, 1.5f));
    lx_array *row = lx_autorelease(lx_array_full_f32(2, srow, 2.0f));
    int32_t idx[512];
    for (int i = 0; i < 512; i++) idx[i] = 511 - i;
    const int64_t sidx[] = {512};
    lx_array *ix = lx_autorelease(lx_array_from_data(LX_I32, 1, sidx, idx));
    lx_key key = lx_key_from_seed(0);
    lx_array *outs[] = {
        lx_add(x, x),                      /* same-shape binary */
        lx_mul(m, row),                    /* broadcast binary */
        lx_neg(x),                         /* unary kernel */
        lx_clip(x, 0.0f, 0.25f),           /* clip */
        lx_cast(x, LX_I32),                /* cast */
        lx_sum(m, LX_AXES(0), false),      /* reductions */
        lx_sum(m, LX_AXES(1), false),
        lx_transpose(m, LX_AXES(1, 0)),    /* strided copy */
        lx_take(m, ix, 0),                 /* take */
        lx_random_bits(key, 1, s1),        /* threefry bits */
        lx_random_normal(key, 1, s1),      /* a sampler */
    };
    r->ok = true;
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        if (!outs[i]) {
            fprintf(stderr, "  big_ops: op %zu failed: %s\n", i, lx_last_error());
            r->ok = false;
        }
    lx_pool_close(mark);
}

static void *worker(void *arg) {
    run_result *r = arg;
    r->before = count_tasks();
    big_ops(r);
    r->after = count_tasks(); /* OpenMP keeps a thread's team alive while the thread lives */
    return NULL;
}

static run_result on_new_thread(void) {
    run_result r = {-1, -1, false};
    pthread_t t;
    if (pthread_create(&t, NULL, worker, &r) == 0) pthread_join(t, NULL);
    return r;
}

static void test_env_setting_on_another_thread(void) {
    /* LINNX_THREADS=1 was set before the first linnx call; nothing called lx_num_threads yet. */
    run_result r = on_new_thread();
    CHECK(r.ok);
    CHECK(r.before > 0);
    CHECK_EQ_INT(r.after, r.before);
    CHECK_EQ_INT(lx_num_threads(), 1);
}

static void test_set_num_threads_on_another_thread(void) {
    CHECK_EQ_INT(lx_set_num_threads(1), LX_OK);
    run_result r = on_new_thread();
    CHECK(r.ok);
    CHECK_EQ_INT(r.after, r.before);
    /* control: with 2 threads the same ops do start a team, and the count shows it */
    CHECK_EQ_INT(lx_set_num_threads(2), LX_OK);
    r = on_new_thread();
    CHECK(r.ok);
    CHECK(r.after > r.before);
    CHECK_EQ_INT(lx_set_num_threads(0), LX_OK);
}

int main(void) {
    setenv("LINNX_THREADS", "1", 1); /* before any linnx call: the default comes from here */
    RUN(test_env_setting_on_another_thread);
    RUN(test_set_num_threads_on_another_thread);
    return lx_test_finish();
}
