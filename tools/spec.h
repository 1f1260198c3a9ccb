/* tools/spec.h - Flax-like constructor strings for the command line:
 *   linen.Dense(8)   linen.Conv(16, (3, 3), padding='VALID')   nnx.Linear(4, 8)
 *   linen.Sequential(linen.Dense(8), linen.relu, linen.Dense(2))
 * A spec is a dotted name with optional call arguments: positional and keyword values that are
 * ints, floats, bools (True/False), None, strings ('..' or ".."), tuples ((..) or [..]), bare
 * dotted names (linen.relu, jnp.float32) and nested specs. The parser knows no module names:
 * each family (linen., nnx., bridge.) interprets the tree (tools/cmd_params.c).
 */
#ifndef LINNX_TOOLS_SPEC_H
#define LINNX_TOOLS_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "linnx/value.h"

typedef enum spec_kind {
    SPEC_NONE,
    SPEC_BOOL,
    SPEC_INT,
    SPEC_FLOAT,
    SPEC_STR,
    SPEC_TUPLE,
    SPEC_NAME, /* a bare dotted name */
    SPEC_CALL  /* a dotted name with arguments */
} spec_kind;

typedef struct spec_node spec_node;

typedef struct spec_arg {
    char *name; /* NULL for a positional argument */
    spec_node *value;
} spec_arg;

struct spec_node {
    spec_kind kind;
    bool b;
    int64_t i;
    double f;
    char *s;          /* STR: the text; NAME / CALL: the dotted name */
    int n;            /* TUPLE: items */
    spec_node **items;
    int nargs;        /* CALL: arguments in source order */
    spec_arg *args;
    /* storage for spec_to_value (owned by the node) */
    int64_t *flat;
    const char **strs;
};

/* Parse `text`; 0 on success (*out owned by the caller: spec_free), else -1 with a one-line
 * message in err ("expected ')' at column 12"). */
int spec_parse(const char *text, spec_node **out, char *err, size_t errcap);
void spec_free(spec_node *n);
/* "linen.Dense" -> the part after `prefix` when n's name starts with it, else NULL. */
const char *spec_suffix(const spec_node *n, const char *prefix);
/* A plain value as an lx_value that borrows from the node: None, bool, int, float, str; a tuple
 * of ints (nested int tuples are flattened: ((1, 1), (2, 2)) -> (1, 1, 2, 2)) as LX_V_INTS; a
 * tuple of str/None as LX_V_STRS; the names jnp.X / np.X / jax.numpy.X as the string X (dtypes).
 * Other shapes (calls, other names, mixed tuples) fail: -1 with a message in err. */
int spec_to_value(spec_node *n, lx_value *out, char *err, size_t errcap);
/* Render back (for messages): "linen.Dense(8, use_bias=False)". */
const char *spec_str(const spec_node *n, char *buf, size_t cap);

#endif
