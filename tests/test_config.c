/* Named config fields: binding by position and name, defaults, Python-style errors, copies. */
#include "lx_test.h"

typedef struct { int a; float b; } thing;
static const thing DEFAULT_THING = {7, 0.5f};

typedef struct {
    int64_t features;
    bool use_bias;
    double rate;
    char *name;
    lx_ints kernel_size;
    lx_strs names;
    lx_dtype dtype;
    thing init;
    lx_value extra;
} dense_cfg;

static const lx_field FIELDS[] = {
    LX_FIELD_REQUIRED_INT(dense_cfg, features),
    LX_FIELD_BOOL(dense_cfg, use_bias, true),
    LX_FIELD_FLOAT(dense_cfg, rate, 0.1),
    LX_FIELD_STR(dense_cfg, name, NULL),
    LX_FIELD_INTS(dense_cfg, kernel_size),
    LX_FIELD_STRS(dense_cfg, names),
    LX_FIELD_DTYPE(dense_cfg, dtype, "float32"),
    LX_FIELD_OBJ(dense_cfg, init, "thing", &DEFAULT_THING),
    LX_FIELD_VALUE(dense_cfg, extra),
};
#define NF ((int)(sizeof FIELDS / sizeof FIELDS[0]))

static void test_bind(void) {
    dense_cfg c;
    int64_t ks[] = {3, 3};
    const char *nm[] = {"in", NULL};
    thing t = {1, 2.0f};
    lx_call call = {1, LX_VALUES(lx_int_v(8)), 6,
                    LX_KWARGS(LX_KW_BOOL("use_bias", false), LX_KW_STR("name", "dense"),
                              LX_KW("kernel_size", lx_ints_v(2, ks)), LX_KW("names", lx_strs_v(2, nm)),
                              LX_KW("init", lx_ptr_v("thing", &t)), LX_KW_STR("dtype", "int32"))};
    CHECK_EQ_INT(lx_config_bind(FIELDS, NF, &call, &c, "Dense.__init__()"), LX_OK);
    CHECK_EQ_INT(c.features, 8);
    CHECK(!c.use_bias);
    CHECK_NEAR(c.rate, 0.1, 0);
    CHECK_STR(c.name, "dense");
    CHECK(c.kernel_size.n == 2 && c.kernel_size.v[1] == 3);
    CHECK(c.names.n == 2 && strcmp(c.names.v[0], "in") == 0 && c.names.v[1] == NULL);
    CHECK_EQ_INT(c.dtype, LX_I32);
    CHECK(c.init.a == 1 && c.init.b == 2.0f);
    CHECK(c.extra.kind == LX_V_NONE);

    lx_value v;
    CHECK_EQ_INT(lx_config_get(FIELDS, NF, &c, "features", &v), LX_OK);
    CHECK(v.kind == LX_V_INT && v.u.i == 8);
    CHECK_EQ_INT(lx_config_get(FIELDS, NF, &c, "dtype", &v), LX_OK);
    CHECK_STR(v.u.s, "int32");
    CHECK_FAILS(lx_config_get(FIELDS, NF, &c, "nope", &v), LX_ERR_NOT_FOUND, "config has no field 'nope'");

    dense_cfg d;
    CHECK_EQ_INT(lx_config_copy(FIELDS, NF, &d, &c), LX_OK);
    CHECK(d.name != c.name && strcmp(d.name, "dense") == 0);
    CHECK(d.names.v[0] != c.names.v[0]);

    /* Overrides: later wins; a failing override leaves the config untouched. */
    lx_call ov = LX_CALL_KWARGS(LX_KW_INT("features", 16), LX_KW_STR("name", "other"));
    CHECK_EQ_INT(lx_config_override(FIELDS, NF, &ov, &d, "X"), LX_OK);
    CHECK_EQ_INT(d.features, 16);
    CHECK_STR(d.name, "other");
    lx_call bad = LX_CALL_KWARGS(LX_KW_INT("features", 32), LX_KW_INT("bogus", 1));
    CHECK_FAILS(lx_config_override(FIELDS, NF, &bad, &d, "X"), LX_ERR_TYPE,
                "X got an unexpected keyword argument 'bogus'");
    CHECK_EQ_INT(d.features, 16);
    lx_config_free(FIELDS, NF, &d);
    lx_config_free(FIELDS, NF, &c);
}

static void test_defaults_and_errors(void) {
    dense_cfg c;
    lx_call only = LX_CALL_ARGS(lx_int_v(4));
    CHECK_EQ_INT(lx_config_bind(FIELDS, NF, &only, &c, "Dense.__init__()"), LX_OK);
    CHECK(c.use_bias && c.name == NULL && c.kernel_size.n == 0 && c.dtype == LX_F32);
    CHECK(c.init.a == 7 && c.init.b == 0.5f);
    lx_config_free(FIELDS, NF, &c);

    lx_call none = LX_NO_CALL;
    CHECK_FAILS(lx_config_bind(FIELDS, NF, &none, &c, "Dense.__init__()"), LX_ERR_TYPE,
                "Dense.__init__() missing 1 required positional argument: 'features'");
    lx_call dup = {1, LX_VALUES(lx_int_v(4)), 1, LX_KWARGS(LX_KW_INT("features", 5))};
    CHECK_FAILS(lx_config_bind(FIELDS, NF, &dup, &c, "Dense.__init__()"), LX_ERR_TYPE,
                "Dense.__init__() got multiple values for argument 'features'");
    lx_call kind = LX_CALL_KWARGS(LX_KW_INT("features", 4), LX_KW_STR("use_bias", "yes"));
    CHECK_FAILS(lx_config_bind(FIELDS, NF, &kind, &c, "Dense.__init__()"), LX_ERR_TYPE,
                "argument 'use_bias' (position 0) must be a bool, got str");
    lx_call wrongobj = LX_CALL_KWARGS(LX_KW_INT("features", 4), LX_KW("init", lx_ptr_v("other", &c)));
    CHECK_FAILS(lx_config_bind(FIELDS, NF, &wrongobj, &c, "Dense.__init__()"), LX_ERR_TYPE,
                "argument 'init' must be a thing, got other");
    lx_call baddt = LX_CALL_KWARGS(LX_KW_INT("features", 4), LX_KW_STR("dtype", "float64"));
    CHECK_FAILS(lx_config_bind(FIELDS, NF, &baddt, &c, "Dense.__init__()"), LX_ERR_DTYPE,
                "unknown dtype 'float64'");
    lx_value many[12];
    for (int i = 0; i < 12; i++) many[i] = lx_int_v(i);
    lx_call toomany = {12, many, 0, NULL};
    CHECK_FAILS(lx_config_bind(FIELDS, NF, &toomany, &c, "Dense.__init__()"), LX_ERR_TYPE,
                "takes 9 positional arguments but 12 were given");

    /* A table of 65 string fields with defaults is refused before any default is bound: nothing
     * is allocated, so nothing leaks (the sanitizer build checks), and cfg is untouched. */
    enum { NBIG = LX_CONFIG_MAX_FIELDS + 1 };
    static lx_field big[NBIG];
    static char names[NBIG][8];
    char *strs[NBIG];
    for (int i = 0; i < NBIG; i++) {
        snprintf(names[i], sizeof names[i], "s%d", i);
        big[i] = (lx_field){names[i], LX_FIELD_STR, (size_t)i * sizeof(char *), sizeof(char *), NULL, false,
                            LX_VAL_STR("default")};
        strs[i] = (char *)"untouched";
    }
    CHECK_FAILS(lx_config_bind(big, NBIG, NULL, strs, "Big.__init__()"), LX_ERR_INVALID_ARGUMENT,
                "Big.__init__(): a config has 0..64 fields, got 65");
    CHECK_STR(strs[0], "untouched");
    CHECK_FAILS(lx_config_override(big, NBIG, NULL, strs, "Big"), LX_ERR_INVALID_ARGUMENT, "got 65");
    CHECK_FAILS(lx_config_bind(NULL, 2, NULL, strs, NULL), LX_ERR_INVALID_ARGUMENT,
                "config: a config has 0..64 fields, got 2 and no field table");
    /* exactly 64 still binds, and frees */
    CHECK_EQ_INT(lx_config_bind(big, LX_CONFIG_MAX_FIELDS, NULL, strs, "Big.__init__()"), LX_OK);
    CHECK_STR(strs[63], "default");
    lx_config_free(big, LX_CONFIG_MAX_FIELDS, strs);
}

int main(void) {
    RUN(test_bind);
    RUN(test_defaults_and_errors);
    return lx_test_finish();
}
