/* `linnx convert IN OUT [--layout L] [--from L] [--format F] [--wrapper NAME]`: rewrite a
 * checkpoint in another format (Flax msgpack <-> safetensors) and/or another layout (Linen, NNX,
 * MaxText Linen, MaxText NNX). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "linnx/checkpoint.h"

static const char CONVERT_USAGE[] =
    "usage: linnx convert IN OUT [--layout linen|nnx|maxtext-linen|maxtext-nnx|linen-train]\n"
    "                      [--from LAYOUT]\n"
    "                      [--format msgpack|safetensors] [--wrapper NAME]\n"
    "                      [--unscan PREFIX | --scan PREFIX] [--params-axis N] [--partition-name NAME]\n"
    "  Reads IN (Flax msgpack or safetensors, told apart by content) and writes OUT atomically.\n"
    "  --format: OUT's format (default: from OUT's extension, .msgpack or .safetensors).\n"
    "  --layout: the layout to write (default: IN's own). --from: IN's layout (default: detected:\n"
    "  {model, optimizer} is maxtext-nnx, {params: {params}, opt_state|step} maxtext-linen,\n"
    "  {step, params, opt_state[, batch_stats]} linen-train (a Linen `linnx train --save` file;\n"
    "  its NNX twin's is maxtext-nnx), collections (params, batch_stats, ...; not rngs) at the top\n"
    "  linen, anything else nnx).\n"
    "  A converted layout holds boxes ({value: W}) as plain arrays and lists keys sorted, as\n"
    "  Flax writes them. A safetensors OUT always has plain names and keeps a safetensors IN's\n"
    "  __metadata__.\n"
    "  --wrapper: going to linen or maxtext-linen, nest every collection under this bridge\n"
    "  wrapper name (e.g. ToLinen_0, as to_linen names its module). docs/checkpoints.md.\n"
    "  --unscan PREFIX: split the layer stack PREFIX (a module path, e.g. decoder/layers) wherever\n"
    "  it sits (parameters and their optimizer moments alike) along its layer axis into PREFIX_0,\n"
    "  PREFIX_1, ... (Linen layouts) or PREFIX/0, PREFIX/1, ... (NNX layouts), after any --layout\n"
    "  conversion; --scan PREFIX: the inverse. The layer axis is --params-axis (default 1,\n"
    "  MaxText's) for parameters and 0 for other state. A PREFIX that matches nothing is an error.\n"
    "  --partition-name is accepted for compatibility: files hold no sharding names.\n"
    "  docs/stacking.md.\n";

int cmd_convert(int argc, char **argv) {
    enum { C_LAYOUT, C_FROM, C_FORMAT, C_WRAPPER, C_UNSCAN, C_SCAN, C_PAXIS, C_PNAME, C_N };
    cli_opt o[C_N] = {CLI_OPT("layout"), CLI_OPT("from"), CLI_OPT("format"), CLI_OPT("wrapper"),
                      CLI_OPT("unscan"), CLI_OPT("scan"), CLI_OPT("params-axis"), CLI_OPT("partition-name")};
    const char *pos[2];
    int npos;
    bool help;
    if (cli_parse(argc, argv, 1, o, C_N, pos, 2, &npos, &help)) return CLI_EXIT_USAGE;
    if (help) {
        fputs(CONVERT_USAGE, stdout);
        return 0;
    }
    if (npos != 2) return cli_error("convert: need IN and OUT (linnx convert --help)");
    lx_layout to = LX_LAYOUT_AUTO, from = LX_LAYOUT_AUTO;
    if (o[C_LAYOUT].seen && lx_layout_from_name(o[C_LAYOUT].value, &to) != LX_OK)
        return cli_error("convert: --layout: %s", lx_last_error());
    if (o[C_FROM].seen && lx_layout_from_name(o[C_FROM].value, &from) != LX_OK)
        return cli_error("convert: --from: %s", lx_last_error());
    lx_ckpt_format fmt = lx_ckpt_format_of(pos[1]);
    if (o[C_FORMAT].seen) {
        if (!strcmp(o[C_FORMAT].value, "msgpack")) fmt = LX_CKPT_MSGPACK;
        else if (!strcmp(o[C_FORMAT].value, "safetensors")) fmt = LX_CKPT_SAFETENSORS;
        else return cli_error("convert: --format: unknown format '%s' (expected msgpack or safetensors)", o[C_FORMAT].value);
    }
    if (fmt == LX_CKPT_AUTO)
        return cli_error("convert: cannot tell OUT's format from '%s': give --format or end it in .msgpack or .safetensors",
                         pos[1]);
    if (o[C_UNSCAN].seen && o[C_SCAN].seen) return cli_error("convert: give one of --unscan and --scan");
    int paxis = 1;
    if (o[C_PAXIS].seen) {
        char *end = NULL;
        long v = strtol(o[C_PAXIS].value, &end, 10);
        if (!end || *end || end == o[C_PAXIS].value || v < -8 || v > 8)
            return cli_error("convert: --params-axis: expected an integer, got '%s'", o[C_PAXIS].value);
        paxis = (int)v;
    }
    char out_path[4096]; /* OUT, or where its symbolic links end: the file the save replaces */
    if (cli_check_output("convert:", pos[1], out_path, sizeof out_path)) return CLI_EXIT_USAGE;
    lx_tree *in = NULL, *out = NULL, *meta = NULL;
    lx_ckpt_format infmt = LX_CKPT_AUTO;
    if (lx_ckpt_sniff(pos[0], &infmt) != LX_OK) return cli_lib_error();
    /* a safetensors file's __metadata__ goes to a safetensors OUT too */
    if (infmt == LX_CKPT_SAFETENSORS ? lx_safetensors_load(pos[0], NULL, &in, &meta) != LX_OK
                                     : lx_ckpt_load(pos[0], &in) != LX_OK)
        return cli_lib_error();
    if (from == LX_LAYOUT_AUTO) from = lx_layout_detect(in);
    if (to == LX_LAYOUT_AUTO) to = from;
    if (o[C_WRAPPER].seen && to != LX_LAYOUT_LINEN && to != LX_LAYOUT_MAXTEXT_LINEN) {
        lx_tree_release(in);
        lx_tree_release(meta);
        return cli_error("convert: --wrapper %s: a bridge wrapper exists only in Linen layouts, and the output is %s "
                         "(give --layout linen or maxtext-linen)", o[C_WRAPPER].value, lx_layout_name(to));
    }
    lx_status s = to == from && !o[C_WRAPPER].seen ? (out = lx_tree_retain(in), LX_OK)
                                                    : lx_layout_convert(in, from, to, o[C_WRAPPER].value, &out);
    if (s == LX_OK && (o[C_UNSCAN].seen || o[C_SCAN].seen)) {
        lx_tree *t = NULL;
        s = lx_layout_restack(out, to, o[C_UNSCAN].seen ? o[C_UNSCAN].value : o[C_SCAN].value, o[C_UNSCAN].seen, paxis, &t);
        if (s == LX_OK) {
            lx_tree_release(out);
            out = t;
        }
    }
    if (s == LX_OK && fmt == LX_CKPT_SAFETENSORS) {
        /* one tensor name per leaf: params.kernel, as a boxed model saved straight to safetensors
         * is named, never params.kernel.value */
        lx_tree *t = NULL;
        s = lx_layout_unbox(out, &t);
        if (s == LX_OK) {
            lx_tree_release(out);
            out = t;
        }
    }
    bool saving = s == LX_OK; /* a failed save names OUT as typed (cli_write_error) */
    if (s == LX_OK && fmt == LX_CKPT_SAFETENSORS)
        s = lx_safetensors_save(out_path, out, &(lx_safetensors_opts){.metadata = meta});
    else if (s == LX_OK)
        s = lx_ckpt_save(out_path, out, fmt);
    int rc = s == LX_OK ? 0 : saving ? cli_write_error("convert:", pos[1], out_path) : cli_lib_error();
    if (rc == 0)
        printf("%s (%s) -> %s (%s, %s): %zu leaves, %lld params\n", pos[0], lx_layout_name(from), pos[1],
               lx_layout_name(to), fmt == LX_CKPT_SAFETENSORS ? "safetensors" : "msgpack", lx_tree_count_leaves(out),
               (long long)cli_tree_params(out));
    lx_tree_release(in);
    lx_tree_release(out);
    lx_tree_release(meta);
    return rc;
}
