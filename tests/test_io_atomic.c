/* Atomic saves: a forked writer killed at random points leaves the previous checkpoint (or the
 * new one) readable, never a torn file. The checkpoint manager: numbered steps, keep last N,
 * save every K, restore the latest or a given step, metadata JSON. */
#define _DEFAULT_SOURCE 1
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lx_test.h"

#define NVERS 4

/* Version v: a tree of ~1.5 MB whose every element is v (so a torn file cannot pass as whole). */
static lx_tree *version_tree(int v) {
    lx_tree *t = lx_tree_new();
    for (int i = 0; i < 3; i++) {
        char p[32];
        snprintf(p, sizeof p, "params/layer_%d/kernel", i);
        lx_array *a = lx_array_full_f32(2, (int64_t[]){256, 512}, (float)v);
        lx_tree_set_path(t, p, lx_array_v(a));
        lx_release(a);
    }
    return t;
}

/* Which version a loaded tree is (-1 if it is none of them). */
static int version_of(const lx_tree *t) {
    const lx_value *s = lx_tree_find(t, "params/layer_0/kernel");
    if (!s || s->kind != LX_V_ARRAY || s->u.array->dtype != LX_F32) return -1;
    int v = (int)lx_f32(s->u.array)[0];
    if (v < 0 || v >= NVERS) return -1;
    lx_tree *want = version_tree(v);
    bool same = lx_tree_equal(want, t);
    lx_tree_release(want);
    return same ? v : -1;
}

/* Whether a save of the writer `pid` was in progress when it died: its temporary file is still
 * there (ckpt.c names it "<path>.tmp.<pid>.<n>"). Removes what it finds. */
static bool tmp_left(const char *path, pid_t pid) {
    const char *slash = strrchr(path, '/');
    char dir[256], prefix[256], p[600];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    snprintf(prefix, sizeof prefix, "%s.tmp.%ld.", slash + 1, (long)pid);
    bool found = false;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            found = true;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    return found;
}

static void kill_run(const char *path, lx_ckpt_format fmt, unsigned seed) {
    srand(seed);
    lx_tree *t0 = version_tree(0);
    CHECK(lx_ckpt_save(path, t0, fmt) == LX_OK);
    lx_tree_release(t0);
    /* The kill time is random: a kill before the writer's first save, or between two saves,
     * tests nothing. So at least 12 kills, and more (up to 200) until 3 of them interrupted a
     * save in progress (its temporary file left behind); fewer than 3 fails. */
    int good = 0, runs = 0, mid = 0, newer = 0;
    while (runs < 12 || (mid < 3 && runs < 200)) {
        int run = runs++;
        pid_t pid = fork();
        /* never kill(-1, ...): a failed fork would otherwise signal every process we may signal */
        if (pid < 0) {
            LX_TEST_REPORT_(false, "run %d: fork failed", run);
            continue;
        }
        if (pid == 0) {
            for (int i = 1;; i = i % (NVERS - 1) + 1) {
                lx_tree *t = version_tree(i);
                if (lx_ckpt_save(path, t, fmt) != LX_OK) _exit(3);
                lx_tree_release(t);
            }
        }
        struct timespec ts = {0, (long)(rand() % 40000) * 1000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st = 0;
        pid_t w = waitpid(pid, &st, 0);
        /* the writer only ends by the kill (a failed save would be its exit status 3) */
        LX_TEST_REPORT_(w == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                        "run %d: the writer was not killed: wait status %#x", run, (unsigned)st);
        mid += tmp_left(path, pid);
        lx_tree *back = NULL;
        lx_status s = lx_ckpt_load(path, &back);
        int v = s == LX_OK ? version_of(back) : -1;
        LX_TEST_REPORT_(v >= 0, "run %d: the checkpoint is torn: %s", run, s == LX_OK ? "wrong contents" : lx_last_error());
        good += v >= 0;
        newer += v > 0;
        lx_tree_release(back);
    }
    CHECK_EQ_INT(good, runs);
    const char *name = fmt == LX_CKPT_SAFETENSORS ? "safetensors" : "msgpack";
    LX_TEST_REPORT_(mid >= 3, "%s: only %d of %d kills interrupted a save", name, mid, runs);
    fprintf(stderr, "  %s: %d of %d kills interrupted a save; %d found a newer version than 0 in place\n", name, mid,
            runs, newer);
    unlink(path);
}

static void test_kill_writer(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/linnx_atomic_%ld.msgpack", (long)getpid());
    kill_run(path, LX_CKPT_MSGPACK, 1);
    snprintf(path, sizeof path, "/tmp/linnx_atomic_%ld.safetensors", (long)getpid());
    kill_run(path, LX_CKPT_SAFETENSORS, 2);
}

static void test_atomic_file(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/linnx_atomic_%ld.bin", (long)getpid());
    CHECK(lx_atomic_write_file(path, "hello", 5) == LX_OK);
    CHECK(lx_atomic_write_file(path, "bye", 3) == LX_OK);
    FILE *f = fopen(path, "rb");
    char buf[16] = {0};
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK(n == 3 && !memcmp(buf, "bye", 3));
    unlink(path);
    /* the message names the caller's path, not the temporary file's */
    CHECK_FAILS(lx_atomic_write_file("/nonexistent-dir/x", "a", 1), LX_ERR_IO, "cannot create /nonexistent-dir/x: ");
    CHECK(!strstr(lx_last_error(), ".tmp."));
}

/* Which version the file at `path` holds: a small tree {params/w: float32[3] of v}, or -1. */
static lx_tree *small_tree(float v) {
    lx_tree *t = lx_tree_new();
    lx_array *a = lx_array_full_f32(1, (int64_t[]){3}, v);
    lx_tree_set_path(t, "params/w", lx_array_v(a));
    lx_release(a);
    return t;
}

static float small_version(const char *path) {
    lx_tree *t = NULL;
    if (lx_ckpt_load(path, &t) != LX_OK) return -1;
    const lx_value *w = lx_tree_find(t, "params/w");
    float v = w && w->kind == LX_V_ARRAY && w->u.array->dtype == LX_F32 ? lx_f32(w->u.array)[0] : -1;
    lx_tree_release(t);
    return v;
}

/* A save that fails for want of memory leaves the old file as it was, and one that reports
 * success has replaced it (audit A12-7: the folder's path was allocated after the rename). Every
 * allocation of the save is failed in turn, in both formats. */
static void test_save_fault_sweep(void) {
    if (!lx_fault_available()) return;
    for (int fmt = 0; fmt < 2; fmt++) {
        char path[128];
        snprintf(path, sizeof path, "/tmp/linnx_atomic_fault_%ld.%s", (long)getpid(), fmt ? "safetensors" : "msgpack");
        lx_tree *old = small_tree(1.0f), *neu = small_tree(2.0f);
        lx_fault_set(0, false);
        CHECK(lx_ckpt_save(path, neu, LX_CKPT_AUTO) == LX_OK);
        int64_t total = lx_fault_count();
        lx_fault_set(-1, false);
        CHECK(total > 0);
        int bad = 0;
        for (int64_t n = 1; n <= total + 1; n++) {
            CHECK(lx_ckpt_save(path, old, LX_CKPT_AUTO) == LX_OK);
            lx_fault_set(n, false);
            lx_status st = lx_ckpt_save(path, neu, LX_CKPT_AUTO);
            bool fired = lx_fault_fired();
            lx_fault_set(-1, false);
            float got = small_version(path);
            bool ok = st == LX_OK ? got == 2.0f : st == LX_ERR_NO_MEMORY && fired && got == 1.0f;
            if (!ok && bad++ < 3)
                fprintf(stderr, "  %s: allocation %lld of %lld failed: status %d, file holds version %g\n", path,
                        (long long)n, (long long)total, (int)st, got);
        }
        CHECK_EQ_INT(bad, 0);
        unlink(path);
        lx_tree_release(old);
        lx_tree_release(neu);
    }
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

static void test_manager(void) {
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/linnx_mgr_%ld", (long)getpid());
    rm_rf(dir);
    lx_ckpt_manager m;
    CHECK(lx_ckpt_manager_open(dir, 2, 3, LX_CKPT_MSGPACK, &m) == LX_OK);
    lx_tree *t;
    CHECK_FAILS(lx_ckpt_manager_restore(&m, -1, &t, NULL), LX_ERR_NOT_FOUND, "no checkpoint in");
    int saved_count = 0;
    for (int step = 0; step <= 10; step++) {
        lx_tree *v = lx_tree_new();
        lx_array *a = lx_array_full_f32(1, (int64_t[]){4}, (float)step);
        lx_tree_set_path(v, "params/w", lx_array_v(a));
        lx_release(a);
        bool saved;
        CHECK(lx_ckpt_manager_maybe_save(&m, step, v, &saved) == LX_OK);
        CHECK(saved == (step % 3 == 0));
        saved_count += saved;
        lx_tree_release(v);
    }
    CHECK_EQ_INT(saved_count, 4); /* 0 3 6 9 */
    int64_t *steps;
    size_t n;
    CHECK(lx_ckpt_manager_steps(&m, &steps, &n) == LX_OK);
    CHECK(n == 2 && steps[0] == 6 && steps[1] == 9);
    free(steps);
    int64_t got = -1;
    CHECK(lx_ckpt_manager_restore(&m, -1, &t, &got) == LX_OK);
    CHECK(got == 9);
    const lx_value *w = lx_tree_find(t, "params/w");
    CHECK(w && w->kind == LX_V_ARRAY && lx_f32(w->u.array)[3] == 9.0f);
    lx_tree_release(t);
    CHECK(lx_ckpt_manager_restore(&m, 6, &t, &got) == LX_OK && got == 6);
    lx_tree_release(t);
    CHECK_FAILS(lx_ckpt_manager_restore(&m, 3, &t, NULL), LX_ERR_NOT_FOUND, "no checkpoint for step 3");
    char p[256];
    /* steps must increase (Orbax's CheckpointManager): an older or existing step writes nothing */
    {
        lx_tree *v = lx_tree_new();
        lx_array *a = lx_array_full_f32(1, (int64_t[]){4}, 4.0f);
        lx_tree_set_path(v, "params/w", lx_array_v(a));
        lx_release(a);
        CHECK_FAILS(lx_ckpt_manager_save(&m, 4, v), LX_ERR_INVALID_ARGUMENT,
                    "step 4 is older than the latest step 9");
        CHECK_FAILS(lx_ckpt_manager_save(&m, 9, v), LX_ERR_EXISTS, "checkpoint for step 9 already exists");
        bool saved = true;
        CHECK(lx_ckpt_manager_maybe_save(&m, 6, v, &saved) == LX_OK && !saved); /* should_save: skipped */
        saved = true;
        CHECK(lx_ckpt_manager_maybe_save(&m, 9, v, &saved) == LX_OK && !saved);
        CHECK(lx_ckpt_manager_steps(&m, &steps, &n) == LX_OK);
        CHECK(n == 2 && steps[0] == 6 && steps[1] == 9);
        free(steps);
        CHECK(lx_ckpt_manager_restore(&m, 9, &t, &got) == LX_OK);
        w = lx_tree_find(t, "params/w");
        CHECK(w && w->kind == LX_V_ARRAY && lx_f32(w->u.array)[0] == 9.0f); /* step 9 untouched */
        lx_tree_release(t);
        snprintf(p, sizeof p, "%s/checkpoint_4.msgpack", dir);
        CHECK(access(p, F_OK) != 0);
        lx_tree_release(v);
    }
    /* metadata next to each step */
    snprintf(p, sizeof p, "%s/checkpoint_9.json", dir);
    FILE *f = fopen(p, "r");
    char buf[1024] = {0};
    size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    CHECK(len > 0 && strstr(buf, "\"step\": 9") && strstr(buf, "\"linnx_version\"") && strstr(buf, "\"params\": 4") &&
          strstr(buf, "\"bytes\": 16") && strstr(buf, "\"time\""));
    /* a data file without metadata (a save killed in between) is not a step */
    snprintf(p, sizeof p, "%s/checkpoint_12.msgpack", dir);
    CHECK(lx_atomic_write_file(p, "\x80", 1) == LX_OK);
    CHECK(lx_ckpt_manager_restore(&m, -1, &t, &got) == LX_OK && got == 9);
    lx_tree_release(t);
    lx_ckpt_manager_close(&m);
    CHECK_FAILS(lx_ckpt_manager_open(dir, -1, 0, LX_CKPT_AUTO, &m), LX_ERR_INVALID_ARGUMENT, "must be >= 0");
    rm_rf(dir);
}

int main(void) {
    RUN(test_atomic_file);
    RUN(test_save_fault_sweep);
    RUN(test_kill_writer);
    RUN(test_manager);
    CHECK_EQ_INT(lx_array_live_count(), 0);
    return lx_test_finish();
}
