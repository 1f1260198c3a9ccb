/* Status messages, arrays, pools, values and call records, primitive observers. */
#include <pthread.h>

#include "lx_test.h"

/* ---- threads: each thread its own objects (array.h, "Threads") ----
 * linnx objects are not shared between threads; what is supported is several threads each using
 * objects of their own at once. Run that from the start of the program, so first-use
 * initialisation (the variable-type registry, the thread setting) happens concurrently too. */
#define OWN_THREADS 4
static pthread_barrier_t own_barrier;

static void *own_objects(void *arg) {
    int id = (int)(intptr_t)arg, bad = 0;
    pthread_barrier_wait(&own_barrier);
    for (int rep = 0; rep < 50; rep++) {
        size_t mark = lx_pool_open();
        const lx_vartype *ty = NULL;
        if (lx_variable_type_from_name("params", NULL, false, &ty) != LX_OK || ty != &lx_Param) bad++;
        const int64_t shape[] = {4, 5};
        lx_array *x = lx_array_full_f32(2, shape, (float)id);
        lx_variable *v = NULL;
        lx_tree *t = lx_tree_new();
        if (!x || !t || lx_variable_new(&lx_Param, x, &v) != LX_OK) bad++;
        if (t && v && lx_tree_set(t, "w", lx_var_v(v)) != LX_OK) bad++;
        lx_array *y = lx_sum(lx_add(x, x), LX_ALL_AXES, false);
        if (!y || lx_f32(y)[0] != 40.0f * (float)id) bad++;
        lx_fail(LX_ERR_SHAPE, "thread %d", id); /* messages are per thread */
        char want[32];
        snprintf(want, sizeof want, "thread %d", id);
        if (strcmp(lx_last_error(), want) != 0) bad++;
        lx_variable_release(v);
        lx_tree_release(t);
        lx_release(x);
        lx_pool_close(mark);
    }
    lx_pool_drain();
    return (void *)(intptr_t)bad;
}

static void test_threads_own_objects(void) {
    int64_t live = lx_array_live_count();
    pthread_t th[OWN_THREADS];
    CHECK(pthread_barrier_init(&own_barrier, NULL, OWN_THREADS) == 0);
    for (int i = 0; i < OWN_THREADS; i++) CHECK(pthread_create(&th[i], NULL, own_objects, (void *)(intptr_t)(i + 1)) == 0);
    for (int i = 0; i < OWN_THREADS; i++) {
        void *bad = NULL;
        pthread_join(th[i], &bad);
        CHECK_EQ_INT((intptr_t)bad, 0);
    }
    pthread_barrier_destroy(&own_barrier);
    CHECK_EQ_INT(lx_array_live_count(), live);
}

static void test_status(void) {
    lx_clear_error();
    CHECK_ERROR_IS(LX_OK, "");
    CHECK_EQ_INT(lx_fail(LX_ERR_SHAPE, "bad %s %d", "shape", 3), LX_ERR_SHAPE);
    CHECK_ERROR_IS(LX_ERR_SHAPE, "bad shape 3");
    lx_fail_context(LX_ERR_SHAPE, "in %s: ", "Dense_0");
    CHECK_ERROR_IS(LX_ERR_SHAPE, "in Dense_0: bad shape 3");
    CHECK_STR(lx_status_name(LX_ERR_IMMUTABLE), "LX_ERR_IMMUTABLE");
}

static void test_array_basics(void) {
    int64_t shape[] = {2, 3};
    lx_array *a = lx_array_new(LX_F32, 2, shape);
    CHECK(a != NULL);
    CHECK_EQ_INT(a->size, 6);
    CHECK_EQ_INT((uintptr_t)a->data % LX_ALIGN, 0);
    CHECK_EQ_INT(lx_f32(a)[5], 0);
    for (int i = 0; i < 6; i++) lx_f32(a)[i] = (float)i;
    char buf[64];
    CHECK_STR(lx_array_sig(a, buf, sizeof buf), "float32[2,3]");
    CHECK_STR(lx_shape_str(a->ndim, a->shape, buf, sizeof buf), "(2, 3)");
    int64_t one[] = {5};
    CHECK_STR(lx_shape_str(1, one, buf, sizeof buf), "(5,)");
    CHECK_STR(lx_shape_str(0, NULL, buf, sizeof buf), "()");

    int64_t flat[] = {-1};
    lx_array *v = lx_array_reshape_view(a, 1, flat);
    CHECK(v != NULL && v->ndim == 1 && v->shape[0] == 6 && v->data == a->data);
    int64_t bad[] = {4, 2};
    lx_clear_error();
    CHECK_NULL_FAILS(lx_array_reshape_view(a, 2, bad), LX_ERR_SHAPE,
                     "cannot reshape array of shape (2, 3) into shape (4, 2)");
    /* NULL shape or data are errors, not crashes */
    lx_clear_error();
    CHECK_NULL_FAILS(lx_array_reshape_view(a, 2, NULL), LX_ERR_INVALID_ARGUMENT,
                     "reshape: shape is NULL for 2 dimensions");
    CHECK_NULL_FAILS(lx_array_from_data(LX_F32, 2, shape, NULL), LX_ERR_INVALID_ARGUMENT,
                     "array_from_data: data is NULL for float32(2, 3)");
    CHECK_NULL_FAILS(lx_array_from_f32(1, one, NULL), LX_ERR_INVALID_ARGUMENT,
                     "array_from_data: data is NULL for float32(5,)");
    int64_t empty[] = {0, 3};
    lx_array *e0 = lx_array_from_data(LX_I32, 2, empty, NULL); /* nothing to read: fine */
    CHECK(e0 && e0->size == 0);
    lx_release(e0);
    lx_array *s0 = lx_array_reshape_view(a, 0, NULL); /* shape () needs no list, but 6 != 1 */
    CHECK(s0 == NULL);
    lx_array *c = lx_array_copy(a);
    CHECK(lx_array_equal(a, c));
    lx_f32(c)[0] = 1e-30f;
    CHECK(!lx_array_equal(a, c));
    CHECK(lx_array_allclose(a, c, 0, 1e-20));
    lx_release(a); /* the view keeps the data alive */
    CHECK_EQ_INT((int)lx_f32(v)[5], 5);
    lx_release(v);
    lx_release(c);

    int64_t neg[] = {-2};
    lx_clear_error();
    CHECK_NULL_FAILS(lx_array_new(LX_F32, 1, neg), LX_ERR_SHAPE, "negative dimension");

    lx_array *abs_ = lx_array_abstract(LX_F32, 2, shape);
    CHECK(abs_ && lx_is_abstract(abs_) && abs_->size == 6);
    lx_release(abs_);
}

static void test_ulp(void) {
    CHECK_EQ_U32(lx_ulp_distance(1.0f, 1.0f), 0);
    CHECK_EQ_U32(lx_ulp_distance(0.0f, -0.0f), 0);
    CHECK_EQ_U32(lx_ulp_distance(1.0f, nextafterf(1.0f, 2.0f)), 1);
    CHECK_EQ_U32(lx_ulp_distance(-1.0f, nextafterf(-1.0f, 0.0f)), 1);
    /* Smallest positive and negative subnormals are two steps apart through zero. */
    CHECK_EQ_U32(lx_ulp_distance(nextafterf(0.0f, 1.0f), nextafterf(0.0f, -1.0f)), 2);
}

static void test_print(void) {
    int64_t shape[] = {2, 2};
    float d[] = {1, 2.5f, -3, 4};
    lx_array *a = lx_array_from_f32(2, shape, d);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    lx_array_fprint(f, a);
    fclose(f);
    CHECK_STR(buf, "[[1. 2.5]\n [-3. 4.]]"); /* numpy's "1.": a float stays one (it printed "1") */
    free(buf);
    lx_release(a);
    /* an int array keeps integers; large, tiny and special floats */
    const int32_t di[] = {1, 2, 3, 4};
    a = lx_array_from_data(LX_I32, 2, shape, di);
    f = open_memstream(&buf, &len);
    lx_array_fprint(f, a);
    fclose(f);
    CHECK_STR(buf, "[[1 2]\n [3 4]]");
    free(buf);
    lx_release(a);
    const float ds[] = {1e10f, -0.0f, INFINITY, NAN, 1.5e-7f, 3e20f};
    a = lx_array_from_f32(1, (const int64_t[]){6}, ds);
    f = open_memstream(&buf, &len);
    lx_array_fprint(f, a);
    fclose(f);
    CHECK_STR(buf, "[1.e+10 -0. inf nan 1.50000005e-07 3.00000006e+20]"); /* %.9g of the float32 values */
    free(buf);
    lx_release(a);
}

static void test_pool_flat(void) {
    int64_t before = lx_array_live_count();
    for (int iter = 0; iter < 1000; iter++) {
        size_t mark = lx_pool_open();
        for (int k = 0; k < 10; k++) lx_autorelease(lx_array_scalar_f32((float)k));
        CHECK(lx_pool_size() == mark + 10 || iter > 0);
        lx_pool_close(mark);
    }
    CHECK_EQ_INT(lx_array_live_count(), before);
    /* A retained result survives its pool. */
    size_t mark = lx_pool_open();
    lx_array *keep = lx_retain(lx_autorelease(lx_array_scalar_f32(7)));
    lx_pool_close(mark);
    CHECK_EQ_INT(keep->refcount, 1);
    lx_release(keep);
}

static void test_calls(void) {
    int64_t shape[] = {3};
    lx_array *x = lx_array_new(LX_F32, 1, shape);
    lx_call c = LX_ARGS(x);
    CHECK_EQ_INT(c.nargs, 1);
    const lx_call *cp = &LX_ARGS(x, x); /* an lvalue: its address can be passed */
    CHECK(cp->nargs == 2 && cp->args[1].u.array == x);
    CHECK(c.args[0].kind == LX_V_ARRAY && c.args[0].u.array == x);

    lx_call k = LX_CALL_KWARGS(LX_KW_INT("features", 8), LX_KW_FLOAT("rate", 0.5),
                               LX_KW_STR("name", "dense"), LX_KW_BOOL("use_bias", false));
    int64_t feat = 0;
    double rate = 0;
    bool bias = true;
    const char *name = NULL;
    CHECK_EQ_INT(lx_call_int(&k, 0, "features", 1, &feat), LX_OK);
    CHECK_EQ_INT(feat, 8);
    CHECK_EQ_INT(lx_call_float(&k, 1, "rate", 0, &rate), LX_OK);
    CHECK_NEAR(rate, 0.5, 0);
    CHECK_EQ_INT(lx_call_bool(&k, 9, "use_bias", true, &bias), LX_OK);
    CHECK(!bias);
    CHECK_EQ_INT(lx_call_str(&k, 9, "name", NULL, &name), LX_OK);
    CHECK_STR(name, "dense");
    CHECK_EQ_INT(lx_call_int(&k, 9, "absent", 42, &feat), LX_OK);
    CHECK_EQ_INT(feat, 42);
    CHECK_FAILS(lx_call_int(&k, 9, "name", 0, &feat), LX_ERR_TYPE,
                "argument 'name' (position 9) must be an int, got str");
    lx_array *got = NULL;
    /* a missing argument is Python's TypeError, as in lx_config_bind and the layers */
    CHECK_FAILS(lx_call_array(&k, 0, "x", &got), LX_ERR_TYPE, "missing required argument 'x'");

    lx_call p = LX_CALL_ARGS(lx_int_v(4), lx_float_v(3.0));
    CHECK_EQ_INT(lx_call_int(&p, 1, "n", 0, &feat), LX_OK); /* an integral float binds as int */
    CHECK_EQ_INT(feat, 3);

    /* Owning copies. */
    const char *names[] = {"data", NULL};
    lx_value s = lx_strs_v(2, names), sd;
    CHECK_EQ_INT(lx_value_dup(&s, &sd), LX_OK);
    CHECK(lx_value_equal(&s, &sd) && sd.u.strs.v != s.u.strs.v);
    char buf[64];
    CHECK_STR(lx_value_str(&sd, buf, sizeof buf), "('data', None)");
    lx_value_free(&sd);
    lx_value av = lx_array_v(x), ad;
    lx_value_dup(&av, &ad);
    CHECK_EQ_INT(x->refcount, 2);
    lx_value_free(&ad);
    CHECK_EQ_INT(x->refcount, 1);
    int64_t t[] = {3};
    lx_value iv = lx_ints_v(1, t);
    CHECK_STR(lx_value_str(&iv, buf, sizeof buf), "(3,)");
    lx_release(x);
}

static int seen;
static void count_ops(const lx_prim_event *ev, void *user) {
    (void)ev;
    *(int *)user += 1;
}

static void test_observers(void) {
    int h1 = 0, h2 = 0;
    seen = 0;
    CHECK(!lx_prim_observed());
    CHECK_EQ_INT(lx_prim_observe(count_ops, &seen, &h1), LX_OK);
    CHECK_EQ_INT(lx_prim_observe(count_ops, &seen, &h2), LX_OK);
    lx_prim_event ev = {"add", 0, NULL, NULL, 0, NULL, LX_PRIM_ADD, NULL};
    lx_prim_emit(&ev);
    CHECK_EQ_INT(seen, 2);
    lx_prim_unobserve(h1);
    lx_prim_emit(&ev);
    CHECK_EQ_INT(seen, 3);
    lx_prim_unobserve(h2);
    CHECK(!lx_prim_observed());
    CHECK_FAILS(lx_prim_observe(NULL, NULL, &h1), LX_ERR_INVALID_ARGUMENT, "observer is NULL");
}

static void test_call_copies(void) {
    int64_t shape[] = {2};
    lx_array *x = lx_array_new(LX_F32, 1, shape);
    lx_call c = {2, LX_VALUES(lx_int_v(4), lx_array_v(x)), 2,
                 LX_KWARGS(LX_KW_STR("name", "lin"), LX_KW_BOOL("use_bias", true))};
    lx_call d;
    CHECK_EQ_INT(lx_call_dup(&c, &d), LX_OK);
    CHECK(d.nargs == 2 && d.nkwargs == 2 && d.kwargs[0].name != c.kwargs[0].name);
    CHECK_EQ_INT(x->refcount, 2);
    CHECK_STR(lx_call_kwarg(&d, "name")->u.s, "lin");
    lx_call e;
    lx_kwarg extra[] = {LX_KW_BOOL("use_bias", false), LX_KW_INT("rngs", 0)};
    CHECK_EQ_INT(lx_call_with_kwargs(&d, 2, extra, &e), LX_OK);
    CHECK_EQ_INT(e.nkwargs, 3);
    CHECK(!lx_call_kwarg(&e, "use_bias")->u.b && lx_call_kwarg(&e, "rngs") != NULL);
    lx_call f;
    const char *drop[] = {"name", "rngs"};
    CHECK_EQ_INT(lx_call_without(&e, 2, drop, &f), LX_OK);
    CHECK(f.nkwargs == 1 && strcmp(f.kwargs[0].name, "use_bias") == 0 && f.nargs == 2);
    lx_call_free(&d);
    lx_call_free(&e);
    lx_call_free(&f);
    CHECK_EQ_INT(x->refcount, 1);
    CHECK(d.nargs == 0 && d.args == NULL);
    /* Malformed records are refused before they are read (a count without its array crashed),
     * *out left empty. */
    lx_call bad = {0, NULL, 2, NULL};
    CHECK_FAILS(lx_call_dup(&bad, &d), LX_ERR_INVALID_ARGUMENT, "call: malformed call: 0 positional (NULL), 2 keyword (NULL)");
    CHECK(d.nargs == 0 && d.nkwargs == 0 && d.args == NULL && d.kwargs == NULL);
    bad = (lx_call){-1, NULL, 0, NULL};
    CHECK_FAILS(lx_call_dup(&bad, &d), LX_ERR_INVALID_ARGUMENT, "call: malformed call: -1 positional (NULL)");
    lx_kwarg unnamed[] = {{NULL, lx_int_v(1)}};
    bad = (lx_call){0, NULL, 1, unnamed};
    CHECK_FAILS(lx_call_dup(&bad, &d), LX_ERR_INVALID_ARGUMENT, "call: keyword argument 0 has no name");
    CHECK_FAILS(lx_call_with_kwargs(&c, 1, NULL, &d), LX_ERR_INVALID_ARGUMENT, "call: bad list of keywords to add (1, NULL)");
    CHECK_FAILS(lx_call_with_kwargs(&c, -1, extra, &d), LX_ERR_INVALID_ARGUMENT, "call: bad list of keywords to add (-1, given)");
    CHECK_FAILS(lx_call_with_kwargs(&c, 1, unnamed, &d), LX_ERR_INVALID_ARGUMENT, "call: keyword 0 to add has no name");
    CHECK_FAILS(lx_call_without(&c, 2, NULL, &d), LX_ERR_INVALID_ARGUMENT, "call: bad list of names to drop (2, NULL)");
    const char *nodrop[] = {NULL};
    CHECK_FAILS(lx_call_without(&c, 1, nodrop, &d), LX_ERR_INVALID_ARGUMENT, "call: name 0 to drop is NULL");
    CHECK(d.nargs == 0 && d.nkwargs == 0 && d.args == NULL && d.kwargs == NULL);
    CHECK_EQ_INT(x->refcount, 1);
    lx_release(x);
}

static void test_pytype(void) {
    lx_value vs[] = {lx_none(), lx_int_v(1), lx_str_v("a"), lx_ints_v(0, NULL)};
    const char *want[] = {"<class 'NoneType'>", "<class 'int'>", "<class 'str'>", "<class 'tuple'>"};
    for (int i = 0; i < 4; i++) CHECK_STR(lx_value_pytype(&vs[i]), want[i]);
}

static void test_initializer_values_are_copied(void) {
    lx_initializer it = lx_init_constant(2.5);
    lx_value v = lx_ptr_v("initializer", &it), d;
    CHECK_EQ_INT(lx_value_dup(&v, &d), LX_OK);
    CHECK(d.kind == LX_V_PTR && d.u.ptr.p != &it && strcmp(d.u.ptr.tag, "initializer") == 0);
    CHECK(memcmp(d.u.ptr.p, &it, sizeof it) == 0);
    it.value = 7; /* the copy does not follow the original */
    CHECK(((lx_initializer *)d.u.ptr.p)->value == 2.5);
    lx_value_free(&d); /* freed: the leak checker of the sanitizer run would see it otherwise */
    CHECK(d.kind == LX_V_NONE);
    int other = 3;
    lx_value o = lx_ptr_v("thing", &other), od;
    CHECK_EQ_INT(lx_value_dup(&o, &od), LX_OK);
    CHECK(od.u.ptr.p == &other); /* an unknown tag is borrowed */
    lx_value_free(&od);
}

static char warned[256];
static void capture_warning(const char *text, void *user) {
    snprintf(warned, sizeof warned, "%s|%s", (const char *)user, text);
}

static void test_warnings(void) {
    lx_set_warning_handler(capture_warning, "u");
    lx_warn("Found unknown module paths in incoming state:%s", "\n  - a/b");
    CHECK_STR(warned, "u|Found unknown module paths in incoming state:\n  - a/b");
    lx_set_warning_handler(NULL, NULL);
}

/* Counted pointers: a registered tag makes lx_value_dup retain and lx_value_free release. */
typedef struct {
    int refs;
} counted_obj;
static void obj_retain(void *p) { ((counted_obj *)p)->refs++; }
static void obj_release(void *p) { ((counted_obj *)p)->refs--; }
static void obj_other(void *p) { (void)p; }

static void test_counted_pointers(void) {
    counted_obj o = {1};
    lx_value v = lx_ptr_v("test_obj", &o), d;
    /* before registration: borrowed */
    CHECK(!lx_ptr_counted("test_obj"));
    CHECK_EQ_INT(lx_value_dup(&v, &d), LX_OK);
    CHECK_EQ_INT(o.refs, 1);
    lx_value_free(&d);
    CHECK_EQ_INT(o.refs, 1);
    CHECK_EQ_INT(lx_ptr_register("test_obj", obj_retain, obj_release), LX_OK);
    CHECK_EQ_INT(lx_ptr_register("test_obj", obj_retain, obj_release), LX_OK); /* again: nothing */
    char tag[] = "test_obj"; /* tags compare by content */
    CHECK(lx_ptr_counted(tag) && !lx_ptr_counted("other") && !lx_ptr_counted(NULL));
    CHECK_FAILS(lx_ptr_register("test_obj", obj_retain, obj_other), LX_ERR_INVALID_ARGUMENT,
                "tag 'test_obj' is already registered with other functions");
    CHECK_FAILS(lx_ptr_register(NULL, obj_retain, obj_release), LX_ERR_INVALID_ARGUMENT, "a tag, retain and release");
    CHECK_FAILS(lx_ptr_register("x", NULL, obj_release), LX_ERR_INVALID_ARGUMENT, "a tag, retain and release");
    CHECK_EQ_INT(lx_value_dup(&v, &d), LX_OK);
    CHECK_EQ_INT(o.refs, 2);
    CHECK(d.kind == LX_V_PTR && d.u.ptr.p == &o);
    lx_value_free(&d);
    CHECK_EQ_INT(o.refs, 1);
    CHECK(d.kind == LX_V_NONE);
    /* a NULL pointer is not retained; kept call records hold a reference */
    lx_value null_obj = lx_ptr_v("test_obj", NULL);
    CHECK_EQ_INT(lx_value_dup(&null_obj, &d), LX_OK);
    lx_value_free(&d);
    lx_call c = {1, LX_VALUES(v), 1, LX_KWARGS(LX_KW("obj", v))}, k, w;
    CHECK_EQ_INT(lx_call_dup(&c, &k), LX_OK);
    CHECK_EQ_INT(o.refs, 3);
    const char *drop[] = {"obj"};
    CHECK_EQ_INT(lx_call_without(&k, 1, drop, &w), LX_OK);
    CHECK_EQ_INT(o.refs, 4);
    lx_call_free(&k);
    lx_call_free(&w);
    CHECK_EQ_INT(o.refs, 1);
    /* the table is bounded */
    static const char *const names[] = {"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8",
                                        "t9", "t10", "t11", "t12", "t13", "t14", "t15", "t16"};
    lx_status last = LX_OK;
    for (int i = 0; i < 17 && last == LX_OK; i++) last = lx_ptr_register(names[i], obj_retain, obj_release);
    CHECK_EQ_INT(last, LX_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lx_last_error(), "at most 16 tags") != NULL);
}

int main(void) {
    RUN(test_threads_own_objects); /* first: first-use initialisation runs on several threads */
    RUN(test_call_copies);
    RUN(test_initializer_values_are_copied);
    RUN(test_pytype);
    RUN(test_warnings);
    RUN(test_status);
    RUN(test_array_basics);
    RUN(test_ulp);
    RUN(test_print);
    RUN(test_pool_flat);
    RUN(test_calls);
    RUN(test_observers);
    RUN(test_counted_pointers);
    return lx_test_finish();
}
