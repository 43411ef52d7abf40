#!/usr/bin/env python3
"""Writes ggufpy-blocks.gguf: a cross-check fixture made by an independent implementation.

The file is written by gguf-py (llama.cpp's Python GGUF package, `pip install gguf==0.19.0`),
not by our writer, and holds for each supported type:
  q.<TYPE>    random blocks of that type (2 rows),
  ref.<TYPE>  the same values dequantized by gguf-py's numpy decoders (F32, same shape),
plus metadata of every scalar type and a few arrays. The Rust test `cross_check` opens it with
our reader and compares our dequantization with ref.<TYPE>.

Random bytes everywhere except the f16 scale fields, which are set to finite values in [-2, 2]
(random bits there are sometimes Inf/NaN, which compare badly and test nothing more).
Regenerate: python3 appliance/gguf/testdata/gen-ggufpy-blocks.py (deterministic, seed 20261125).
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

assert gguf.__version__ if hasattr(gguf, "__version__") else True

rng = np.random.default_rng(20261125)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ggufpy-blocks.gguf")

# (type, block bytes, block size, byte offsets of f16 scale fields)
TYPES = [
    (T.F32, 4, 1, []),
    (T.F16, 2, 1, [0]),
    (T.BF16, 2, 1, []),
    (T.Q4_0, 18, 32, [0]),
    (T.Q4_1, 20, 32, [0, 2]),
    (T.Q8_0, 34, 32, [0]),
    (T.Q4_K, 144, 256, [0, 2]),
    (T.Q5_K, 176, 256, [0, 2]),
    (T.Q6_K, 210, 256, [208]),
]

w = gguf.GGUFWriter(out, "crosscheck")
w.add_custom_alignment(64)
w.add_uint8("x.u8", 200)
w.add_int8("x.i8", -100)
w.add_uint16("x.u16", 60000)
w.add_int16("x.i16", -30000)
w.add_uint32("x.u32", 4000000000)
w.add_int32("x.i32", -2000000000)
w.add_uint64("x.u64", 2**64 - 1)
w.add_int64("x.i64", -(2**63))
w.add_float32("x.f32", 0.125)
w.add_float64("x.f64", -2.5e300)
w.add_bool("x.bool", True)
w.add_string("x.str", "héllo ✓")
w.add_array("x.tokens", ["<|im_start|>", "Ġa", ""])
w.add_array("x.ints", [3, 1, -1])
w.add_array("x.floats", [0.5, -0.25])

for ty, bb, bs, scales in TYPES:
    rows = 2
    blocks_per_row = 8 if bs == 256 else 16
    n_blocks = rows * blocks_per_row
    if ty == T.F32:
        raw = rng.uniform(-100, 100, n_blocks).astype("<f4").view(np.uint8).reshape(n_blocks, bb)
    elif ty == T.BF16:
        f = rng.uniform(-100, 100, n_blocks).astype("<f4").view("<u4") >> 16
        raw = f.astype("<u2").view(np.uint8).reshape(n_blocks, bb)
    else:
        raw = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
        for off in scales:
            h = rng.uniform(-2, 2, n_blocks).astype("<f2").view(np.uint8).reshape(n_blocks, 2)
            raw[:, off:off + 2] = h
    data = raw.reshape(rows, blocks_per_row * bb)
    ref = gguf.quants.dequantize(data, ty).astype(np.float32)
    assert ref.shape == (rows, blocks_per_row * bs), ref.shape
    assert np.isfinite(ref).all()
    w.add_tensor(f"q.{ty.name}", data, raw_dtype=ty)
    w.add_tensor(f"ref.{ty.name}", ref)

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(out, os.path.getsize(out), file=sys.stderr)
