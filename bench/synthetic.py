#!/usr/bin/env python3
"""Synthetic GGUF models of real shapes: random weights, the default model's tokenizer.

    python3 bench/synthetic.py llama-1b --type q4_k_m --out /work/models/llama-1b-q4_k_m.gguf
    python3 bench/synthetic.py mistral-7b --type q4_k_m q8_0 --out-dir /work/models
    python3 bench/synthetic.py --list

Why: the speed and fidelity questions that matter are about the shapes people run (Llama 3.2 1B,
Mistral 7B, Llama 3.1 8B) in the types GGUF files are published in (Q4_K_M most of all), and
real weights of those models cannot be fetched here. Kernel speed and llama.cpp-vs-airlock
agreement depend on the shape and the quantization type, not on what the weights learned.

How:
  1. An F16 GGUF is written tensor by tensor, row chunk by row chunk (a 7B F16 is 14.7 GB: it
     is never held in memory), with the default model's (SmolLM2) tokenizer and chat template
     copied from its GGUF, so both engines tokenize and template prompts as they do for it.
  2. llama.cpp quantizes it (`llama_cpp.llama_model_quantize`, the same code as
     `llama-quantize`), so the quantization mix (Q4_K_M's Q6_K tensors, Q6_K output, ...) is
     llama.cpp's own.
  3. The F16 is deleted unless --keep-f16.

Weights: uniform with standard deviation 1/sqrt(fan_in) (rows of unit RMS inputs give unit RMS
outputs), RMSNorm weights 1.0, so activations stay O(1) through every layer and logits are
~N(0, 1); no NaN or inf. Each tensor has its own generator seeded by (seed, tensor name), so the
F16 bytes depend only on the shape and --seed (and numpy's PCG64 stream, stable across
versions); llama.cpp's quantization is deterministic, so the same command gives the same file.

Not modelled: the real vocabularies (Llama 3 has 128256 tokens, Mistral 32000; every shape here
uses SmolLM2's 49152, so embedding and output matrices are smaller than the real ones) and
Llama 3's rope frequency factors (`rope_freqs.weight`), which change no cost.

Needs: numpy, gguf (PyPI, writes the F16), llama-cpp-python (quantizes; not needed with
--type f16). Prints the path of each file written on stdout; progress goes to stderr.
"""
import argparse
import ctypes
import dataclasses
import os
import sys
import threading
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ALIGN = 32  # GGUF default data alignment (general.alignment absent)
CHUNK_ELEMS = 1 << 24  # random numbers drawn per step: 64 MiB of f32 at a time, whatever the shape
VOCAB = 49152  # SmolLM2's; checked against the tokenizer copied in


@dataclasses.dataclass(frozen=True)
class Shape:
    """The hyper-parameters of a llama-architecture model (GGUF `llama.*` keys)."""
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    rope_base: float
    context: int
    tied: bool  # output projection shares token_embd.weight (no output.weight tensor)
    about: str
    rms_eps: float = 1e-5


SHAPES = {
    "mistral-7b": Shape(32, 4096, 32, 8, 14336, 1e6, 32768, False,
                        "Mistral-7B-v0.3 / Instruct-v0.2"),
    "llama-8b": Shape(32, 4096, 32, 8, 14336, 500000.0, 131072, False, "Llama-3.1-8B"),
    "llama-1b": Shape(16, 2048, 32, 8, 8192, 500000.0, 131072, True, "Llama-3.2-1B"),
    # The default model's own shape (its speed without carrying its file, e.g. to a GPU machine).
    "smollm2-135m": Shape(30, 576, 9, 3, 1536, 100000.0, 8192, True, "SmolLM2-135M-Instruct"),
    # Small enough to generate and quantize in seconds (tests, fidelity references in CI);
    # widths are multiples of 256 so the K-quant types apply to every matrix as at real sizes,
    # head width 64 and grouped-query attention (4 heads per KV head) as in the real shapes.
    "tiny": Shape(4, 256, 4, 1, 768, 10000.0, 4096, False, "test shape (not a real model)"),
    "tiny-tied": Shape(4, 256, 4, 1, 768, 10000.0, 4096, True, "test shape, tied embeddings"),
}

# llama.h `enum llama_ftype` (stable values; llama-cpp-python 0.3.36 exports the same names).
FTYPES = {
    "q4_0": 2,   # LLAMA_FTYPE_MOSTLY_Q4_0
    "q8_0": 7,   # LLAMA_FTYPE_MOSTLY_Q8_0
    "q4_k_m": 15,  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    "q5_k_m": 17,  # LLAMA_FTYPE_MOSTLY_Q5_K_M
    "q6_k": 18,  # LLAMA_FTYPE_MOSTLY_Q6_K
}
F16_FTYPE = 1  # LLAMA_FTYPE_MOSTLY_F16


class SynthError(Exception):
    """A failure with a message meant for the user (printed without a traceback)."""


def log(msg):
    print(f"synthetic: {msg}", file=sys.stderr, flush=True)


def tensors(shape):
    """(name, numpy shape [rows, cols], fan_in or None for a norm) in llama.cpp's file order.

    numpy shape is [out, in]; GGUF stores it reversed (ne0 = in), as llama.cpp's converter does."""
    d, hd = shape.d_model, shape.d_model // shape.n_heads
    kv = shape.n_kv_heads * hd
    vocab = VOCAB
    out = [("token_embd.weight", (vocab, d), d)]
    for i in range(shape.n_layers):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (d,), None),
                (b + "attn_q.weight", (d, d), d),
                (b + "attn_k.weight", (kv, d), d),
                (b + "attn_v.weight", (kv, d), d),
                (b + "attn_output.weight", (d, d), d),
                (b + "ffn_norm.weight", (d,), None),
                (b + "ffn_gate.weight", (shape.d_ff, d), d),
                (b + "ffn_up.weight", (shape.d_ff, d), d),
                (b + "ffn_down.weight", (d, shape.d_ff), shape.d_ff)]
    out.append(("output_norm.weight", (d,), None))
    if not shape.tied:
        out.append(("output.weight", (vocab, d), d))
    return out


def tokenizer_kv(model_path):
    """The tokenizer.* key/value pairs of the default model's GGUF: (key, value, type, subtype)."""
    from gguf import GGUFReader, GGUFValueType
    try:
        r = GGUFReader(model_path)
    except (OSError, ValueError) as e:
        raise SynthError(f"cannot read the tokenizer source {model_path}: {e}") from e
    kv = []
    for key, field in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        main = field.types[0]
        sub = field.types[-1] if main == GGUFValueType.ARRAY else None
        if sub == GGUFValueType.STRING:
            # Raw bytes, not str: copied exactly, whatever their encoding.
            value = [bytes(field.parts[i]) for i in field.data]
        elif main == GGUFValueType.ARRAY:
            value = [field.parts[i][0].item() for i in field.data]
        elif main == GGUFValueType.STRING:
            value = bytes(field.parts[field.data[0]])
        else:
            value = field.parts[field.data[0]][0].item()
        kv.append((key, value, main, sub))
    tokens = next((v for k, v, _, _ in kv if k == "tokenizer.ggml.tokens"), None)
    if tokens is None or len(tokens) != VOCAB:
        raise SynthError(f"{model_path}: expected a {VOCAB}-token vocabulary (tokenizer.ggml.tokens), "
                         f"got {None if tokens is None else len(tokens)}")
    return kv


def default_model():
    """The default model's path, from scripts/fetch-default-model.sh (verifies its digest)."""
    import subprocess
    script = os.path.join(ROOT, "scripts", "fetch-default-model.sh")
    try:
        return subprocess.run([script], check=True, capture_output=True, text=True).stdout.strip()
    except subprocess.CalledProcessError as e:
        raise SynthError(f"{script} failed (needed for the tokenizer; or pass --tokenizer-from):\n"
                         f"{e.stderr.strip()}") from e


def fill(rng, out, std):
    """Writes uniform(-a, a) with standard deviation `std` into the f16 array `out` in chunks."""
    a = np.float32(std * np.sqrt(3.0))
    flat = out.reshape(-1)
    for lo in range(0, flat.size, CHUNK_ELEMS):
        n = min(CHUNK_ELEMS, flat.size - lo)
        x = rng.random(n, dtype=np.float32)  # [0, 1)
        x *= 2 * a
        x -= a
        flat[lo:lo + n] = x


def model_name(shape_name, seed):
    """general.name: names the shape and seed, so a kept F16 can be checked before reuse."""
    return f"synthetic {shape_name} (random weights, seed {seed})"


def check_f16(path, shape_name, seed):
    from gguf import GGUFReader
    field = GGUFReader(path).fields.get("general.name")
    name = field.contents() if field else None
    if name != model_name(shape_name, seed):
        raise SynthError(f"{path} holds {name!r}, not {model_name(shape_name, seed)!r}: delete it "
                         f"or pass that file's seed")


def write_tokenizer(path, tok_kv):
    """A GGUF holding only `tok_kv` (what --tokenizer-from reads)."""
    import gguf
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("SmolLM2-135M-Instruct tokenizer (no tensors)")
    for key, value, vtype, sub in tok_kv:
        w.add_key_value(key, value, vtype, sub_type=sub)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# LLAMA_FTYPE_MOSTLY_Q4_K_M, for a file written with --random-blocks.
Q4_K_M_FTYPE = 15


def add_metadata(w, shape, name, description, ftype, tok_kv):
    """The `llama` hyper-parameters of `shape`, the file's name, description and type, and the
    tokenizer's keys."""
    w.add_name(name)
    w.add_description(description)
    w.add_context_length(shape.context)
    w.add_embedding_length(shape.d_model)
    w.add_block_count(shape.n_layers)
    w.add_feed_forward_length(shape.d_ff)
    w.add_head_count(shape.n_heads)
    w.add_head_count_kv(shape.n_kv_heads)
    w.add_rope_freq_base(shape.rope_base)
    w.add_rope_dimension_count(shape.d_model // shape.n_heads)
    w.add_layer_norm_rms_eps(shape.rms_eps)
    w.add_vocab_size(VOCAB)
    w.add_file_type(ftype)
    for key, value, vtype, sub in tok_kv:
        w.add_key_value(key, value, vtype, sub_type=sub)


def write_f16(shape_name, shape, path, seed, tok_kv):
    """Streams the F16 GGUF to `path` (via a temporary name: no half-written file is left)."""
    import gguf
    specs = tensors(shape)
    w = gguf.GGUFWriter(None, "llama")  # path given to open_output_file below
    add_metadata(w, shape, model_name(shape_name, seed),
                 f"Random weights in the shape of {shape.about}; tokenizer of SmolLM2-135M-Instruct. "
                 f"Written by airlock bench/synthetic.py; not a language model.", F16_FTYPE, tok_kv)
    total = 0
    for name, dims, fan_in in specs:
        dt = np.float16 if fan_in else np.float32
        nbytes = int(np.prod(dims)) * np.dtype(dt).itemsize
        w.add_tensor_info(name, dims, np.dtype(dt), nbytes)
        total += nbytes
    log(f"writing {path} ({len(specs)} tensors, {total / 1e9:.2f} GB F16, seed {seed})")
    write_gguf(w, path, lambda f: _stream(f, specs, total, seed))
    log(f"wrote {path}")


def write_gguf(w, path, body):
    """Header, metadata and tensor infos of `w`, then `body(f)` writes the tensors' data (each
    aligned), into `path` via a temporary name: no half-written file is left."""
    tmp = path + ".partial"
    try:
        w.open_output_file(tmp)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        f = w.fout[0]
        body(f)
        f.write(b"\0" * (-f.tell() % ALIGN))
        w.close()
    except BaseException:
        w.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)


def _stream(f, specs, total, seed):
    """Each tensor's data in row chunks."""
    written, t0, last = 0, time.monotonic(), 0.0
    for name, dims, fan_in in specs:
        f.write(b"\0" * (-f.tell() % ALIGN))
        if fan_in is None:
            np.ones(dims, dtype=np.float32).tofile(f)
            written += dims[0] * 4
        else:
            rng = np.random.Generator(np.random.PCG64([seed, zlib.crc32(name.encode())]))
            rows_per_chunk = max(1, CHUNK_ELEMS // dims[1])
            buf = np.empty((rows_per_chunk, dims[1]), dtype=np.float16)
            for r0 in range(0, dims[0], rows_per_chunk):
                part = buf[: min(rows_per_chunk, dims[0] - r0)]
                fill(rng, part, 1.0 / np.sqrt(fan_in))
                part.tofile(f)
                written += part.nbytes
                now = time.monotonic()
                if now - last >= 10:
                    rate = written / (now - t0)
                    log(f"  {written / 1e9:6.2f} / {total / 1e9:.2f} GB ({100 * written / total:3.0f}%), "
                        f"{rate / 1e6:.0f} MB/s, about {(total - written) / rate:.0f} s left ({name})")
                    last = now
    log(f"  {written / 1e9:.2f} GB in {time.monotonic() - t0:.0f} s")


# Bytes per 256-value superblock, and where its f16 scale(s) sit.
Q4_K_BYTES, Q6_K_BYTES = 144, 210


def q4_k_m_type(name, n_layers):
    """The K-quant llama.cpp's Q4_K_M gives `name` (llama_tensor_get_type: Q6_K for the
    output head, and for attn_v/ffn_down in the first and last eighth of the layers and every
    third layer between; Q4_K elsewhere)."""
    if name == "output.weight":
        return "Q6_K"
    if name.endswith(("attn_v.weight", "ffn_down.weight")):
        i = int(name.split(".")[1])
        if i < n_layers // 8 or i >= 7 * n_layers // 8 or (i - n_layers // 8) % 3 == 2:
            return "Q6_K"
    return "Q4_K"


def write_random_blocks(shape_name, shape, path, seed, tok_kv):
    """Writes a Q4_K_M-shaped file without llama.cpp: every matrix is superblocks of random
    quants with fixed scales chosen so the values are centred and of the F16 files' spread
    (1/sqrt(fan_in)): Q4_K sub-block scale and minimum 32 with dmin = 7.5 d, values
    32 d (q - 7.5); Q6_K scales 64, values 64 d (q - 32). Activations then stay of a real model's
    size (off-centre values made logits of ~1 000, where f32 rounding in attention decides), a
    kernel reads exactly the bytes a real file's would, and nothing meaningful is computed: for
    timing on a machine without llama.cpp, never for fidelity."""
    import gguf
    specs = tensors(shape)
    w = gguf.GGUFWriter(None, "llama")
    add_metadata(w, shape, model_name(shape_name, seed) + " random blocks",
                 f"Random Q4_K_M blocks in the shape of {shape.about}; tokenizer of "
                 f"SmolLM2-135M-Instruct. Written by airlock bench/synthetic.py "
                 f"--random-blocks; not a language model.", Q4_K_M_FTYPE, tok_kv)
    plan = []
    for name, dims, fan_in in specs:
        if fan_in is None:
            w.add_tensor_info(name, dims, np.dtype(np.float32), dims[0] * 4)
            plan.append((name, dims, None, None))
            continue
        ty = q4_k_m_type(name, shape.n_layers)
        per = Q4_K_BYTES if ty == "Q4_K" else Q6_K_BYTES
        byte_shape = (dims[0], dims[1] // 256 * per)
        w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), byte_shape[0] * byte_shape[1],
                          raw_dtype=getattr(gguf.GGMLQuantizationType, ty))
        plan.append((name, byte_shape, ty, fan_in))
    f16 = lambda v: np.array([v], dtype=np.float16).view(np.uint8)  # noqa: E731
    # Q4_K's 12 scale bytes giving every sub-block scale 32 and minimum 32 (ggml's
    # get_scale_min_k4: bytes 0..8 hold the low 6 bits and, in bits 6..7, the high bits of
    # sub-blocks 4..7; bytes 8..12 their low nibbles, here 0).
    k4_scales = np.array([160] * 8 + [0] * 4, dtype=np.uint8)

    def body(f):
        for name, dims, ty, fan_in in plan:
            f.write(b"\0" * (-f.tell() % ALIGN))
            if ty is None:
                np.ones(dims, dtype=np.float32).tofile(f)
                continue
            rng = np.random.Generator(np.random.PCG64([seed, zlib.crc32(name.encode())]))
            per = Q4_K_BYTES if ty == "Q4_K" else Q6_K_BYTES
            rows = max(1, CHUNK_ELEMS // dims[1])
            for r0 in range(0, dims[0], rows):
                n = min(rows, dims[0] - r0)
                blocks = rng.integers(0, 256, size=(n * dims[1] // per, per), dtype=np.uint8)
                if ty == "Q4_K":
                    d = 1.0 / (32 * 4.61 * np.sqrt(fan_in))
                    blocks[:, 0:2], blocks[:, 2:4] = f16(d), f16(7.5 * d)
                    blocks[:, 4:16] = k4_scales
                else:
                    d = 1.0 / (64 * 18.5 * np.sqrt(fan_in))
                    blocks[:, 192:208] = 64
                    blocks[:, 208:210] = f16(d)
                blocks.tofile(f)

    t0 = time.monotonic()
    write_gguf(w, path, body)
    log(f"wrote {path} ({os.path.getsize(path) / 1e9:.2f} GB) in {time.monotonic() - t0:.0f} s")


def quantize(src, dst, qtype, threads, verbose=False):
    """llama.cpp quantizes `src` (F16 GGUF) to `dst` with the ftype of `qtype`."""
    try:
        import llama_cpp
    except ImportError as e:
        raise SynthError("quantizing needs llama-cpp-python (pip install llama-cpp-python==0.3.36); "
                         "--type f16 needs only numpy and gguf") from e
    import logging
    # llama-cpp-python prints llama.cpp's log (a line per tensor) unless its logger says otherwise;
    # errors still show. The heartbeat below reports progress instead.
    logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG if verbose else logging.ERROR)
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = FTYPES[qtype]
    tmp = dst + ".partial"
    done = threading.Event()

    def heartbeat():
        t0 = time.monotonic()
        while not done.wait(10):
            size = os.path.getsize(tmp) if os.path.exists(tmp) else 0
            log(f"  quantizing to {qtype}: {size / 1e9:.2f} GB written, {time.monotonic() - t0:.0f} s")

    log(f"quantizing to {qtype} with llama.cpp ({threads} threads): {dst}")
    t0 = time.monotonic()
    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    try:
        rc = llama_cpp.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(params))
    finally:
        done.set()
        beat.join()
    if rc != 0:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise SynthError(f"llama_model_quantize({src} -> {qtype}) failed with {rc}")
    os.replace(tmp, dst)
    log(f"quantized {dst} ({os.path.getsize(dst) / 1e9:.2f} GB) in {time.monotonic() - t0:.0f} s")


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Write synthetic GGUF models of real shapes (random weights, SmolLM2's tokenizer), "
        "quantized by llama.cpp. Prints each file written on stdout.",
        epilog="Shapes: " + "; ".join(f"{n}: {s.about}, {s.n_layers} layers, d {s.d_model}, "
                                      f"{s.n_heads}/{s.n_kv_heads} heads, ffn {s.d_ff}, rope base {s.rope_base:g}, "
                                      f"context {s.context}{', tied embeddings' if s.tied else ''}"
                                      for n, s in SHAPES.items())
        + ". Example: bench/synthetic.py llama-1b --type q4_k_m q4_0 --out-dir /work/models",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shape", nargs="?", choices=sorted(SHAPES), help="model shape")
    ap.add_argument("--type", nargs="+", default=["q4_k_m"], choices=sorted(FTYPES) + ["f16"],
                    help="quantization type(s) to write (default q4_k_m); f16 keeps the unquantized file")
    ap.add_argument("--out", help="output file (one --type only)")
    ap.add_argument("--out-dir", default=".", help="directory for SHAPE-TYPE.gguf files (default: .)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="quantization threads")
    ap.add_argument("--random-blocks", action="store_true",
                    help="q4_k_m without llama.cpp: random quants, small fixed scales, the Q4_K/Q6_K "
                         "mix of llama.cpp's Q4_K_M; times exactly like a real file, computes nothing "
                         "meaningful (for a machine where llama.cpp is not built)")
    ap.add_argument("--keep-f16", action="store_true",
                    help="keep the F16 file (SHAPE-f16.gguf beside the outputs), and reuse it if present")
    ap.add_argument("--force", action="store_true", help="overwrite existing outputs")
    ap.add_argument("--tokenizer-from", metavar="GGUF",
                    help="GGUF to copy tokenizer.* keys from (default: scripts/fetch-default-model.sh's model)")
    ap.add_argument("--verbose", action="store_true", help="show llama.cpp's log while quantizing")
    ap.add_argument("--list", action="store_true", help="list the shapes and exit")
    ap.add_argument("--tokenizer-out", metavar="GGUF",
                    help="write only the tokenizer (a GGUF without tensors, ~1 MB) and exit: "
                         "carry it as --tokenizer-from to a machine without the default model")
    args = ap.parse_args(argv)
    if args.list:
        for n, s in SHAPES.items():
            params = sum(int(np.prod(d)) for _, d, _ in tensors(s))
            print(f"{n:11} {s.about}: {params / 1e9:.2f} B parameters, F16 {params * 2 / 1e9:.1f} GB")
        return 0
    if args.tokenizer_out:
        write_tokenizer(args.tokenizer_out, tokenizer_kv(args.tokenizer_from or default_model()))
        print(args.tokenizer_out)
        return 0
    if not args.shape:
        ap.error("a shape is required (see --list)")
    if args.out and len(args.type) != 1:
        ap.error("--out takes one --type; use --out-dir for several")
    shape = SHAPES[args.shape]
    types = list(dict.fromkeys(args.type))
    outs = {t: args.out or os.path.join(args.out_dir, f"{args.shape}-{t}.gguf") for t in types}
    todo = {t: p for t, p in outs.items() if args.force or not os.path.exists(p)}
    for t, p in outs.items():
        if t not in todo:
            log(f"{p} exists, kept (--force rewrites it)")
            print(p)
    if not todo:
        return 0
    for p in todo.values():
        d = os.path.dirname(os.path.abspath(p))
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as e:
            raise SynthError(f"cannot create the output directory {d}: {e}") from e
        if not os.access(d, os.W_OK):
            raise SynthError(f"output directory {d} is not writable")
    tok_kv = tokenizer_kv(args.tokenizer_from or default_model())
    if args.random_blocks:
        if set(todo) != {"q4_k_m"}:
            ap.error("--random-blocks writes q4_k_m only")
        write_random_blocks(args.shape, shape, todo["q4_k_m"], args.seed, tok_kv)
        print(todo["q4_k_m"], flush=True)
        return 0
    keep = args.keep_f16 or "f16" in todo
    f16 = todo.get("f16") or os.path.join(os.path.dirname(os.path.abspath(next(iter(todo.values())))),
                                          f".{args.shape}-seed{args.seed}-f16.gguf" if not keep
                                          else f"{args.shape}-f16.gguf")
    if keep and "f16" not in todo and os.path.exists(f16):
        # A kept F16 from an earlier run: reused if it is this shape and seed (same bytes).
        check_f16(f16, args.shape, args.seed)
        log(f"reusing {f16}")
    else:
        write_f16(args.shape, shape, f16, args.seed, tok_kv)
    try:
        for t, p in todo.items():
            if t != "f16":
                quantize(f16, p, t, args.threads, args.verbose)
                print(p, flush=True)
    finally:
        if not keep and os.path.exists(f16):
            os.remove(f16)
    if keep:
        print(f16)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SynthError as e:
        sys.exit(f"synthetic: error: {e}")
    except KeyboardInterrupt:
        sys.exit("synthetic: interrupted")
    except OSError as e:  # disk full, permissions: the message says which file
        sys.exit(f"synthetic: error: {e}")
