/* tools/spec.h - Flax-like constructor strings for the command line:
 *   linen.Dense(8)   linen.Conv(16, (3, 3), padding='VALID')   nnx.Linear(4, 8)
 *   linen.Sequential(linen.Dense(8), linen.relu, linen.Dense(2))
 * A spec is a dotted name with optional call arguments: positional and keyword values that are
 * ints, floats, bools (True/False), None, strings ('..' or ".."), tuples ((..) or [..]), dicts
 * ({'params': 0, nn.PARTITION_NAME: 'layers'}: keys strings, dotted names or tuples of those,
 * each once, at most 64 keys), bare dotted names (linen.relu, jnp.float32, and `...`) and nested specs. The parser knows no module names:
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
    SPEC_CALL, /* a dotted name with arguments */
    SPEC_DICT  /* {key: value, ...}: items key0, value0, key1, value1, ... (n = 2 * pairs); keys
                * are STR, NAME or TUPLE-of-STR/NAME nodes, no two equal */
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
    int cap, argcap;  /* allocated slots of items / args (they grow geometrically: linear work) */
    /* storage for spec_to_value (owned by the node) */
    int64_t *flat;
    const char **strs;
};

#define SPEC_SYNTAX (-1)    /* the text does not parse */
#define SPEC_NO_MEMORY (-2) /* an allocation failed */

/* Parse `text`; 0 on success (*out owned by the caller: spec_free), else SPEC_SYNTAX with a
 * one-line message in err ("expected ')' at column 12") or SPEC_NO_MEMORY. Work and memory are
 * linear in the length of `text`; nesting deeper than 64 is a syntax error. */
int spec_parse(const char *text, spec_node **out, char *err, size_t errcap);
/* spec_parse for a subcommand: on failure prints one line, `linnx: <cmd>: <message>: <excerpt>`,
 * where the excerpt is at most ~60 characters of the spec around the error with `^` at the
 * failing column (a long spec is never echoed whole), and returns the exit status
 * (CLI_EXIT_USAGE, or CLI_EXIT_FAILURE for out of memory); 0 on success. */
int spec_parse_cli(const char *cmd, const char *text, spec_node **out);
void spec_free(spec_node *n);
/* "linen.Dense" -> the part after `prefix` when n's name starts with it, else NULL. */
const char *spec_suffix(const spec_node *n, const char *prefix);
/* A plain value as an lx_value that borrows from the node: None, bool, int, float, str; a tuple
 * of ints (nested int tuples are flattened: ((1, 1), (2, 2)) -> (1, 1, 2, 2)) as LX_V_INTS; a
 * tuple of str/None as LX_V_STRS; the names jnp.X / np.X / jax.numpy.X as the string X (dtypes).
 * Other shapes (calls, other names, mixed tuples) fail: SPEC_SYNTAX with a message in err;
 * SPEC_NO_MEMORY when an allocation fails. */
int spec_to_value(spec_node *n, lx_value *out, char *err, size_t errcap);
/* Render back (for messages): "linen.Dense(8, use_bias=False)". */
const char *spec_str(const spec_node *n, char *buf, size_t cap);

#endif
