/* linnx/checkpoint.h - checkpoints: Flax msgpack, safetensors, layouts, restore, atomic saves.
 *
 * Formats (spec/checkpoints.md §C, spec/c-anchors.md §4):
 *  - Flax msgpack, byte-compatible with flax.serialization.to_bytes (keys in the tree's own order,
 *    ext 1 arrays [shape, dtype name, C-order bytes], ext 3 numpy scalars, ext 2 complex, arrays
 *    over 2^30 bytes chunked as __msgpack_chunked_array__) and readable from msgpack_restore's
 *    files (integer map keys, msgpack arrays, every int/str/bin form).
 *  - safetensors (8-byte LE header length, JSON header, data buffer), with the reference reader's
 *    checks; loads map the file and hand out arrays that point into the mapping.
 *
 * What a tree saves as (Flax's to_state_dict / nnx.to_pure_dict):
 *  - an array: itself; a Variable: its value (nnx.to_pure_dict); a box (Partitioned,
 *    LogicallyPartitioned, NNXMeta): {"value": array}, as Flax serializes its struct dataclass;
 *  - None, bool, int, float, str: msgpack's own types (safetensors takes arrays only);
 *  - a tuple of ints or strings (LX_V_INTS / LX_V_STRS): {"0": .., "1": ..}, as Flax's tuples;
 *  - a foreign array (lx_raw below): its dtype's bytes as they were read.
 * Reading gives back a tree of arrays and scalars (the "pure dict"); restore it into a target
 * structure with lx_ckpt_restore to get Variables and boxes back.
 *
 * Foreign arrays: linnx's dtypes are float32, int32, uint32, bool, bfloat16 and int8 (array.h;
 * int8 loads as an LX_I8 array, quant.h's weights). A checkpoint may hold other dtypes (float64,
 * int64, float16, uint8, complex, the float8 family);
 * they load as lx_raw leaves (an LX_V_PTR value tagged LX_RAW_TAG, reference-counted): a dtype
 * name, a shape and the bytes, so inspect, convert and a save after a load keep them exactly.
 * numpy scalars (ext 3) and Python complex numbers (ext 2) load as lx_raw too, so they write back
 * byte for byte; lx_ckpt_restore turns a raw leaf of a linnx dtype into an lx_array.
 *
 * Ownership: every `**out` / `*out` is the caller's (lx_tree_release, lx_value_free, free() for
 * byte buffers). Inputs are borrowed. Failures leave *out untouched and name the path or the byte
 * offset that failed. All file writes are atomic (lx_atomic_write_file).
 */
#ifndef LINNX_CHECKPOINT_H
#define LINNX_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "linnx/array.h"
#include "linnx/tree.h"
#include "linnx/value.h"

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the library is built with -fvisibility=hidden */

/* ---- foreign arrays ---- */
#define LX_RAW_TAG "ckpt_raw"

typedef enum lx_raw_kind {
    LX_RAW_NDARRAY = 1,  /* msgpack ext 1 / a safetensors tensor */
    LX_RAW_COMPLEX = 2,  /* msgpack ext 2: a Python complex, dtype complex128, shape () */
    LX_RAW_NPSCALAR = 3, /* msgpack ext 3: a numpy scalar, shape () */
    LX_RAW_BYTES = 4     /* msgpack bin outside an ext: dtype "bytes", shape (nbytes,) */
} lx_raw_kind;

typedef struct lx_raw {
    int refcount;
    lx_raw_kind kind;
    char dtype[24];      /* numpy's dtype.name: "float64", "int8", "float8_e4m3fn", ... */
    int ndim;
    int64_t shape[LX_MAX_DIMS];
    int64_t size;        /* element count */
    size_t nbytes;
    unsigned char *data; /* owned, nbytes long */
} lx_raw;

/* A raw leaf with a copy of `nbytes` bytes of `data`. The dtype must be a known numpy name
 * (lx_ckpt_dtype_bits; LX_ERR_DTYPE otherwise) and nbytes must fit the shape
 * (LX_ERR_INVALID_ARGUMENT otherwise, as for NULL data or out); a negative dimension or a rank
 * outside 0..LX_MAX_DIMS is LX_ERR_SHAPE. */
lx_status lx_raw_new(lx_raw_kind kind, const char *dtype, int ndim, const int64_t *shape,
                     const void *data, size_t nbytes, lx_raw **out);
lx_raw *lx_raw_retain(lx_raw *r);
void lx_raw_release(lx_raw *r);
/* The value to store in a tree (borrowed: lx_tree_set retains it). */
static inline lx_value lx_raw_v(lx_raw *r) { return lx_ptr_v(LX_RAW_TAG, r); }
/* The raw leaf a value holds, or NULL. */
lx_raw *lx_value_raw(const lx_value *v);
/* A copy as an lx_array when the dtype is one linnx computes with (LX_ERR_DTYPE otherwise). */
lx_status lx_raw_to_array(const lx_raw *r, lx_array **out);

/* Bits per element of a numpy dtype name (8 * itemsize; 4 for float4_e2m1fn, 6 for the float6
 * types), or 0 for an unknown name. */
int lx_ckpt_dtype_bits(const char *numpy_name);

/* ---- Flax msgpack ---- */
typedef struct lx_msgpack_opts {
    /* Arrays (dict values, or a bare root) over this many bytes are chunked as Flax does;
     * 0 means Flax's MAX_CHUNK_SIZE, 2^30. Tests set it small to see the layout. */
    size_t max_chunk_bytes;
} lx_msgpack_opts;

/* Serialize `root` (a tree, or a single leaf as msgpack_serialize(jnp.zeros(5)) does) to a
 * malloc'd buffer (*out, *len; free with free()). opts may be NULL. */
lx_status lx_msgpack_to_bytes(const lx_value *root, const lx_msgpack_opts *opts, unsigned char **out,
                              size_t *len);
/* Serialize to a stdio stream (the bytes of lx_msgpack_to_bytes). */
lx_status lx_msgpack_write(FILE *f, const lx_value *root, const lx_msgpack_opts *opts);
/* Parse Flax msgpack bytes (msgpack_restore): maps become trees (integer keys become decimal
 * strings, as nnx.restore_int_paths reads them), msgpack arrays become trees keyed "0", "1", ...,
 * chunked arrays are joined. *out is owned by the caller (lx_value_free). Errors name the byte
 * offset and what was expected: "msgpack: at byte 12: expected a map key (str or int), got
 * float64". The whole input must be one object (trailing bytes are an error); any root is read
 * (to_bytes of a bare array gives an array). Valid input a linnx value cannot hold is
 * LX_ERR_UNSUPPORTED with the offset and why: a map key that is empty or holds '/' or NUL, an
 * int above 2^63-1. An array to copy over lx_set_max_array_bytes is LX_ERR_INVALID_ARGUMENT. */
lx_status lx_msgpack_from_bytes(const void *data, size_t len, lx_value *out);

/* ---- safetensors ---- */
typedef struct lx_safetensors_opts {
    const char *sep;         /* joins tree paths into tensor names; NULL = "." */
    const lx_tree *metadata; /* written as __metadata__ (string leaves only); NULL = none */
    bool copy;               /* loads: copy every tensor instead of pointing into the mapping */
} lx_safetensors_opts;

/* The file's bytes for tree `t` (every leaf an array or raw array; a Variable's value, a box's
 * value), laid out as the reference writer does: tensors sorted by dtype alignment then name,
 * __metadata__ first, the header padded with spaces to a multiple of 8. */
lx_status lx_safetensors_to_bytes(const lx_tree *t, const lx_safetensors_opts *opts, unsigned char **out,
                                  size_t *len);
/* Write the same bytes to a stdio stream (array bodies go straight from the arrays). */
lx_status lx_safetensors_write(FILE *f, const lx_tree *t, const lx_safetensors_opts *opts);
/* Write them to `path` atomically, as lx_ckpt_save does (which is this with opts NULL): the
 * bodies stream from the arrays, so a large tree is never held twice in memory. */
lx_status lx_safetensors_save(const char *path, const lx_tree *t, const lx_safetensors_opts *opts);
/* Parse safetensors bytes into a tree (names split at opts->sep; tensors in file order). Arrays
 * are copies. *metadata (if not NULL) gets the __metadata__ map (an empty tree when absent).
 * JSON whitespace before the header's '{' is read, as the reference reader does. Names that give
 * no tree when split at sep ('/' in a name, an empty part, one name extending another: h.0 and
 * h.0.attn) are LX_ERR_UNSUPPORTED saying so; sep "/" keeps such names whole. An array to copy
 * over lx_set_max_array_bytes is LX_ERR_INVALID_ARGUMENT naming its byte offset. */
lx_status lx_safetensors_from_bytes(const void *data, size_t len, const lx_safetensors_opts *opts,
                                    lx_tree **out, lx_tree **metadata);

/* Load a safetensors file by mapping it (see lx_ckpt_load), with the options (separator, copy)
 * and its __metadata__ (*metadata may be NULL). */
lx_status lx_safetensors_load(const char *path, const lx_safetensors_opts *opts, lx_tree **out, lx_tree **metadata);

/* ---- files (format chosen by the extension: .msgpack or .safetensors) ---- */
typedef enum lx_ckpt_format { LX_CKPT_AUTO = 0, LX_CKPT_MSGPACK, LX_CKPT_SAFETENSORS } lx_ckpt_format;

/* The format of a file name by its extension (LX_CKPT_AUTO when neither). */
lx_ckpt_format lx_ckpt_format_of(const char *path);
/* Save `t` atomically. LX_CKPT_AUTO picks by extension; msgpack when unknown. */
lx_status lx_ckpt_save(const char *path, const lx_tree *t, lx_ckpt_format fmt);
/* Load a file; the format is sniffed from its bytes (a safetensors header, or a msgpack map,
 * array or ext; a root that is not a map or an array, e.g. to_bytes of one array, is
 * LX_ERR_UNSUPPORTED here: read it with lx_msgpack_from_bytes).
 * safetensors arrays point into a private mapping of the file (copy-on-write: changing them does
 * not change the file); the mapping goes when the last such array is released. msgpack array
 * bodies of 64 KiB or more that happen to be aligned for their dtype are used in place the same
 * way; the others are copies (the mapping's pages are dropped as they are consumed, so a load's
 * resident memory stays near the model's size). A file that does not exist is LX_ERR_NOT_FOUND,
 * one that cannot be read LX_ERR_IO, bytes of neither format (or a broken file) LX_ERR_FORMAT
 * naming the byte offset. */
lx_status lx_ckpt_load(const char *path, lx_tree **out);
/* Which format a file is (by content), LX_ERR_FORMAT when neither; LX_ERR_NOT_FOUND / LX_ERR_IO
 * as lx_ckpt_load for a file that does not exist or cannot be read. */
lx_status lx_ckpt_sniff(const char *path, lx_ckpt_format *out);

/* ---- restore into a target structure (flax.serialization.from_state_dict) ---- */
typedef struct lx_restore_opts {
    bool allow_extra;  /* keys in the state that the target lacks are ignored (Flax's default:
                        * true); false makes them an error */
    bool check_shapes; /* array leaves must match the target's shape and dtype (default true) */
} lx_restore_opts;
/* The defaults: allow_extra true, check_shapes true. */
lx_restore_opts lx_restore_defaults(void);
/* A new tree shaped like `target` whose leaves come from `state` (a pure dict as loaded):
 * a target array takes the state's array; a Variable becomes a new Variable of the same type and
 * metadata holding the state's array; a box is rebuilt around the state's {"value": array} (or a
 * bare array); scalar leaves take the state's scalar. A raw leaf in the state is converted when
 * its dtype is a linnx dtype. Errors use Flax's text and path:
 *   "The target dict keys and state dict keys do not match, target dict contains keys {'b'}
 *    which are not present in state dict at path ./params"
 *   "The state dict contains keys {'c'} which are not present in the target dict at path ./params"
 *   "Shape mismatch at path ./params/kernel: target float32[2,3], state float32[3,2]"
 *   "Dtype mismatch at path ./params/kernel: target float32[2,3], state int32[2,3]" (LX_ERR_DTYPE).
 * opts may be NULL (defaults). */
lx_status lx_ckpt_restore(const lx_tree *target, const lx_tree *state, const lx_restore_opts *opts,
                          lx_tree **out);
/* The pure dict of a tree: Variables become their values, boxes {"value": v} (as msgpack writes
 * them). Leaves are shared. */
lx_status lx_ckpt_pure_dict(const lx_tree *t, lx_tree **out);

/* ---- layouts (Linen, NNX, MaxText) ---- */
typedef enum lx_layout {
    LX_LAYOUT_AUTO = 0,
    LX_LAYOUT_LINEN,          /* {params: {...}, batch_stats: ...}; bridge wrappers as ToLinen_0 */
    LX_LAYOUT_NNX,            /* nnx.to_pure_dict(state): no collection level */
    LX_LAYOUT_MAXTEXT_LINEN,  /* {params: {params: ...}, opt_state: [..], step: int32} */
    LX_LAYOUT_MAXTEXT_NNX,    /* {model: ..., optimizer: {opt_state: {0: ..}, step: uint32}} */
    LX_LAYOUT_LINEN_TRAIN     /* Flax's TrainState of a Linen model, as `linnx train --save` writes
                                 it: {step: int, params: <the params collection>, opt_state: [..]
                                 with mu/nu/trace by Linen names, [batch_stats]} */
} lx_layout;

/* "linen", "nnx", "maxtext-linen", "maxtext-nnx", "linen-train" (and back; another name is
 * LX_ERR_INVALID_ARGUMENT, like another value of a fixed option elsewhere). */
const char *lx_layout_name(lx_layout l);
lx_status lx_layout_from_name(const char *name, lx_layout *out);
/* Guess the layout of a loaded tree from its top-level keys (model/optimizer: maxtext-nnx;
 * params with a params child and opt_state or step: maxtext-linen; only step, params,
 * opt_state and batch_stats with params and opt_state among them: linen-train (the NNX twin's
 * `linnx train --save` file is maxtext-nnx); a collection name (params,
 * batch_stats, cache, ...) at the top: linen, unless one is rngs (Linen keeps no RNG state: an
 * NNX module's Rngs, e.g. nnx.Dropout's {rngs: {key, count}}); anything else: nnx). */
lx_layout lx_layout_detect(const lx_tree *t);
/* Convert a pure dict between layouts. Leaves are shared, never copied. The mapping
 * (docs/checkpoints.md has the table):
 *  - boxes written as {"value": array} (lx_layout_unbox) become their arrays, in every layout;
 *  - every map of the result lists its keys sorted, as Flax's msgpack_serialize writes them
 *    (all-digit keys, an nnx.List's indices, as numbers);
 *  - Linen -> NNX: the collection level goes (params/x/kernel + batch_stats/x/mean ->
 *    x/kernel + x/mean, the bridge's ToNNX rule); a lone bridge wrapper `ToLinen_<i>` (the
 *    auto-name of to_linen / ToLinen) under every collection is unwrapped, so
 *    params/ToLinen_0/linear/kernel <-> linear/kernel; `layers_<i>` keys become an nnx.List
 *    `layers/<i>`.
 *  - NNX -> Linen: leaves go to collections by their Flax names (`mean`, `var` -> batch_stats;
 *    `cache_index`, `cached_key`, `cached_value` -> cache; everything else -> params); `rngs`
 *    subtrees (RngKey/RngCount state) are dropped (Linen keeps no RNG state); `layers/<i>` ->
 *    `layers_<i>`; with `wrapper` (e.g. "ToLinen_0") every collection is nested under it.
 *  - MaxText Linen {step: int32, params: {params: ..}, opt_state: {"0": .., "1": None, ..}} <->
 *    MaxText NNX {model: .., optimizer: {step: uint32, opt_state: {"0": .., "1": {}, ..}}}:
 *    the model as above; an optax chain element's subtrees (mu, nu, trace) are params-shaped:
 *    Linen wraps them in {params: ..} with Linen names, NNX keeps them bare with NNX names;
 *    EmptyState is None (Linen) or {} (NNX); step is cast int32 <-> uint32; a chain inside a
 *    chain (optax.adamw's) and a MaskedState's inner_state convert element by element; other
 *    top-level keys (linnx train-lm's config, run, history) are kept.
 *  - linen / nnx <-> maxtext-*: the model part only (a plain variables tree has no optimizer;
 *    going to maxtext-* adds step 0 and no opt_state). */
lx_status lx_layout_convert(const lx_tree *t, lx_layout from, lx_layout to, const char *wrapper, lx_tree **out);
/* Every {"value": array} map (a box such as Partitioned / LogicallyPartitioned / NNXMeta, or an
 * older NNX Variable, as Flax serializes them) replaced by its array; lx_layout_convert does this
 * first, so converted layouts hold plain arrays. Leaves are shared. */
lx_status lx_layout_unbox(const lx_tree *t, lx_tree **out);
/* Scanned <-> unrolled layer stacks in a checkpoint of `layout` (AUTO: detected), as `linnx
 * convert --unscan/--scan` does. `prefix` (a module path such as "decoder/layers"; a leading
 * collection name such as params/ is dropped) is matched wherever it sits, so a train state's
 * parameters and their optimizer moments (mu, nu, ...) move together. A leaf's layer axis is
 * `params_axis` for parameters (MaxText's scanned layout: 1) and 0 for other state (batch_stats,
 * cache, RNG state: MaxText #4369); in Linen layouts the collection decides, in NNX layouts the
 * leaf's Flax name (as for the collection mapping above). unscan: PREFIX becomes PREFIX_0,
 * PREFIX_1, ... (Linen layouts) or PREFIX/0, PREFIX/1, ... (NNX layouts, an nnx.List); scan: the
 * inverse. Keys keep their place, so unscan then scan gives the same tree in the same order.
 * Errors: a prefix that matches nothing (LX_ERR_NOT_FOUND), leaves whose layer counts differ or
 * that lack the layer axis (LX_ERR_SHAPE), layers of different structure, a leaf that is not an
 * array. */
lx_status lx_layout_restack(const lx_tree *t, lx_layout layout, const char *prefix, bool unscan, int params_axis,
                            lx_tree **out);

/* ---- atomic files and the checkpoint manager ---- */
/* Write `len` bytes to `path` atomically: a temporary file in the same directory (PATH.tmp.<pid>.<n>,
 * created exclusively: an existing file or link of that name is never followed), fsync, rename
 * over `path`, fsync the directory. A crash at any point leaves the old file or the new one. */
lx_status lx_atomic_write_file(const char *path, const void *data, size_t len);

typedef struct lx_ckpt_manager {
    char *dir;            /* owned */
    int keep;             /* keep the last `keep` steps (0 = all) */
    int64_t save_every;   /* lx_ckpt_manager_maybe_save saves when step % save_every == 0 (0 = 1) */
    lx_ckpt_format format;
} lx_ckpt_manager;

/* Open (creating the directory if needed). Files are DIR/checkpoint_<step>.<ext> with
 * DIR/checkpoint_<step>.json next to each: {"step", "time", "linnx_version", "format",
 * "leaves", "params", "bytes"}. */
lx_status lx_ckpt_manager_open(const char *dir, int keep, int64_t save_every, lx_ckpt_format fmt,
                               lx_ckpt_manager *out);
void lx_ckpt_manager_close(lx_ckpt_manager *m);
/* Save step `step` (atomically, metadata after data) and delete the oldest beyond `keep`.
 * Steps must increase, as in Orbax's CheckpointManager: a step already present is LX_ERR_EXISTS
 * (Orbax's StepAlreadyExistsError), a step older than the latest is LX_ERR_INVALID_ARGUMENT;
 * nothing is written or deleted then. */
lx_status lx_ckpt_manager_save(lx_ckpt_manager *m, int64_t step, const lx_tree *t);
/* Save when step is a multiple of save_every and after the latest step present (Orbax's
 * should_save: a step <= the latest is skipped with LX_OK); *saved tells (may be NULL). */
lx_status lx_ckpt_manager_maybe_save(lx_ckpt_manager *m, int64_t step, const lx_tree *t, bool *saved);
/* The steps present (those whose data and metadata both exist), ascending; *steps is malloc'd. */
lx_status lx_ckpt_manager_steps(const lx_ckpt_manager *m, int64_t **steps, size_t *n);
/* Load a step (step < 0: the latest). *step_out (may be NULL) gets the step loaded.
 * LX_ERR_NOT_FOUND when there is none. */
lx_status lx_ckpt_manager_restore(const lx_ckpt_manager *m, int64_t step, lx_tree **out, int64_t *step_out);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
