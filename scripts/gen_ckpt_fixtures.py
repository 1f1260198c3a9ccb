#!/usr/bin/env python3
"""Write tests/fixtures/ckpt_flax_tree*.msgpack with msgpack-python + numpy making the packing
calls flax.serialization.to_bytes makes (spec/checkpoints.md §C.1: ext 1 ndarray payload
packb((shape, dtype.name, tobytes('C'))), ext 3 numpy scalars, ext 2 complex packb((real, imag)),
packb(tree, default=hook, strict_types=True), dict-value arrays over MAX_CHUNK bytes replaced by
{'__msgpack_chunked_array__': True, 'shape': {...}, 'chunks': {...}}), never from linnx.
test_io_msgpack.c builds the same tree in C and compares the bytes.

    python3 scripts/gen_ckpt_fixtures.py

Needs Debian's python3-msgpack and python3-numpy (re-runs itself under /usr/bin/python3 when the
current interpreter lacks them).
"""
import os
import sys

try:
    import msgpack
    import numpy as np
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ext_hook(x):
    if isinstance(x, np.ndarray):
        return msgpack.ExtType(1, msgpack.packb((x.shape, x.dtype.name, x.tobytes("C"))))
    if isinstance(x, np.generic):
        a = np.asarray(x)
        return msgpack.ExtType(3, msgpack.packb((a.shape, a.dtype.name, a.tobytes("C"))))
    if isinstance(x, complex):
        return msgpack.ExtType(2, msgpack.packb((x.real, x.imag)))
    return x


def chunk(tree, max_bytes):
    """Flax's chunking of oversized arrays that are dict values, in place."""
    for k, v in list(tree.items()):
        if isinstance(v, dict):
            chunk(v, max_bytes)
        elif isinstance(v, np.ndarray) and v.size * v.dtype.itemsize > max_bytes:
            per = max(1, int(max_bytes / v.dtype.itemsize))
            flat = v.reshape(-1)
            pieces = [flat[i:i + per] for i in range(0, flat.size, per)]
            tree[k] = {"__msgpack_chunked_array__": True,
                       "shape": {str(i): d for i, d in enumerate(v.shape)},
                       "chunks": {str(i): c for i, c in enumerate(pieces)}}
    return tree


def make_tree():
    return {
        "params": {
            "Dense_0": {"kernel": (np.arange(12, dtype=np.float32) / 8).reshape(3, 4),
                        "bias": np.full(4, -0.5, np.float32)},
            "layers": {"0": {"w": np.arange(6, dtype=np.int32).reshape(2, 3) - 3},
                       "1": {"w": np.array([2**31 - 1, -2**31], np.int32)}},
        },
        "batch_stats": {"mean": np.array([1e-8, 3.0e38, -0.0], np.float32)},
        "rng": np.array([0, 4294967295], np.uint32),
        "mask": np.array([[True, False, True]]),
        "f64": np.arange(3, dtype=np.float64) * 0.1,
        "i8": np.array([-128, 127], np.int8),
        "np_i64_scalar": np.int64(-5),
        "step": 300,
        "neg": -200,
        "lr": 1e-3,
        "name": "x" * 40,
        "none": None,
        "big": np.arange(10, dtype=np.float32),
        "empty": {},
        "c": complex(0.5, -1.5),
    }


def main():
    out = os.path.join(ROOT, "tests", "fixtures")
    for name, max_bytes in (("ckpt_flax_tree.msgpack", 2**30), ("ckpt_flax_tree_chunked16.msgpack", 16)):
        data = msgpack.packb(chunk(make_tree(), max_bytes), default=ext_hook, strict_types=True)
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print(f"wrote tests/fixtures/{name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
