#!/usr/bin/env python3
"""Gradients of a few layers with PyTorch autograd, for tests/test_grad_torch.c.

Reads the cases the test wrote (IN) and writes PyTorch's gradients (OUT). Each case is a block
  case NAME
  t NAME DTYPE D0,D1,... v0 v1 ...      (one line per tensor; DTYPE f32 / i32 / bool)
  end
and the loss is sum_i w_i out_i with w_i = float32(sin(0.7 i + 0.3)), as the C side computes it.
OUT gets, per case, one line per float input: `g CASE NAME v0 v1 ...`. Layouts are Flax's (NHWC
activations, HWIO kernels, (batch, seq, heads, dim) attention); they are permuted for torch.
"""
import math
import sys

import torch
import torch.nn.functional as F


def read_cases(path):
    cases, cur = [], None
    for line in open(path):
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "case":
            cur = {"name": parts[1], "t": {}, "order": []}
        elif parts[0] == "t":
            name, dtype, shape = parts[1], parts[2], parts[3]
            dims = [int(d) for d in shape.split(",")] if shape != "-" else []
            vals = parts[4:]
            if dtype == "f32":
                t = torch.tensor([float(v) for v in vals], dtype=torch.float64).reshape(dims)
                t.requires_grad_(True)
            elif dtype == "i32":
                t = torch.tensor([int(v) for v in vals], dtype=torch.int64).reshape(dims)
            else:
                t = torch.tensor([v == "1" for v in vals], dtype=torch.bool).reshape(dims)
            cur["t"][name] = t
            cur["order"].append(name)
        elif parts[0] == "end":
            cases.append(cur)
    return cases


def weighted(out):
    flat = out.reshape(-1)
    w = torch.tensor([float(torch.tensor(math.sin(0.7 * i + 0.3), dtype=torch.float32)) for i in range(flat.numel())],
                     dtype=torch.float64)
    return (flat * w).sum()


def nhwc_conv(x, k, stride, dilation, padding, groups):
    y = F.conv2d(x.permute(0, 3, 1, 2), k.permute(3, 2, 0, 1), stride=stride, dilation=dilation, padding=padding,
                 groups=groups)
    return y.permute(0, 2, 3, 1)


def attention(q, k, v, mask):
    heads, kv_heads, depth = q.shape[2], k.shape[2], q.shape[3]
    k = k.repeat_interleave(heads // kv_heads, dim=2)
    v = v.repeat_interleave(heads // kv_heads, dim=2)
    logits = torch.einsum("bthd,bshd->bhts", q / math.sqrt(depth), k)
    logits = logits.masked_fill(~mask, torch.finfo(torch.float32).min)
    return torch.einsum("bhts,bshd->bthd", torch.softmax(logits, dim=-1), v)


def run(c):
    t = c["t"]
    n = c["name"]
    if n == "dense_tanh":
        return torch.tanh(t["x"] @ t["kernel"] + t["bias"])
    if n == "conv":
        return nhwc_conv(t["x"], t["kernel"], (2, 1), (1, 2), (1, 2), 2)
    if n == "layer_norm":
        return F.layer_norm(t["x"], (t["x"].shape[-1],), t["scale"], t["bias"], 1e-6)
    if n == "attention":
        return attention(t["q"], t["k"], t["v"], t["mask"])
    if n == "pool_xent":
        p = F.max_pool2d(t["x"].permute(0, 3, 1, 2), 2, 2).permute(0, 2, 3, 1)
        return F.cross_entropy(p.reshape(p.shape[0], -1), t["labels"], reduction="none")
    if n == "linen_mlp":
        h = torch.relu(t["x"] @ t["params/Dense_0/kernel"] + t["params/Dense_0/bias"])
        return h @ t["params/Dense_1/kernel"] + t["params/Dense_1/bias"]
    raise SystemExit("unknown case " + n)


def main():
    cases = read_cases(sys.argv[1])
    with open(sys.argv[2], "w") as out:
        for c in cases:
            weighted(run(c)).backward()
            for name in c["order"]:
                x = c["t"][name]
                if x.dtype == torch.float64:
                    out.write("g %s %s %s\n" % (c["name"], name, " ".join("%.9g" % v for v in x.grad.reshape(-1).tolist())))


if __name__ == "__main__":
    main()
