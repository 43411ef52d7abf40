#!/usr/bin/env python3
"""llama.cpp's teacher-forced logits on synthetic models of each quantization type: the
references of the engine's K-quant fidelity test (`appliance/engine/tests/engine/kquant.rs`).

    python3 bench/synthetic_refs.py                       # tiny shape, all types
    python3 bench/synthetic_refs.py --shape llama-1b --models-dir /work/models

For each type the model is written by bench/synthetic.py when absent (same seed, same bytes:
the reference records each file's SHA-256 and the test checks it first), evaluated by
llama-cpp-python in one batch with the settings of `appliance/testdata/smollm2-llamacpp.json`
(2 threads, flash attention off, weights not repacked, `logits_all=True`), and at every position
of the sequence the top-5 logits and those of a fixed sample of token ids are recorded, rounded to
4 decimals. Output: `appliance/testdata/synthetic-<shape>-llamacpp.json`.
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np

import synthetic

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TYPES = ("q4_0", "q8_0", "q4_k_m", "q5_k_m", "q6_k")
TEXT = ("Patient is a 67-year-old man admitted with chest pain radiating to the left arm. "
        "Troponin was elevated on arrival; an ECG showed ST depression in the lateral leads. "
        "He was started on aspirin, heparin and a beta blocker, and taken for angiography.")
N_PROBE = 16  # token ids sampled once (fixed seed) and recorded at every position


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tensor_types(path):
    """How many tensors of each ggml type the file holds (shows llama.cpp's quantization mix)."""
    from gguf import GGUFReader
    counts = {}
    for t in GGUFReader(path).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="tiny", choices=sorted(synthetic.SHAPES))
    ap.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    ap.add_argument("--models-dir", help="where the models are (written if absent); default "
                    "$AIRLOCK_SYNTH_DIR or $AIRLOCK_CACHE/models/synthetic")
    ap.add_argument("--out", help="reference JSON (default appliance/testdata/synthetic-SHAPE-llamacpp.json)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import llama_cpp

    cache = os.environ.get("AIRLOCK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "airlock")
    mdir = args.models_dir or os.environ.get("AIRLOCK_SYNTH_DIR") or os.path.join(cache, "models", "synthetic")
    out = args.out or os.path.join(ROOT, "appliance", "testdata", f"synthetic-{args.shape}-llamacpp.json")
    paths = {t: os.path.join(mdir, f"{args.shape}-{t}.gguf") for t in args.types}
    missing = [t for t, p in paths.items() if not os.path.exists(p)]
    if missing:
        synthetic.main([args.shape, "--type", *missing, "--out-dir", mdir, "--seed", str(args.seed)])

    ref = {
        "generator": "bench/synthetic_refs.py",
        "llama_cpp_python": llama_cpp.__version__,
        "settings": "n_threads 2, n_batch 512, flash_attn off, use_extra_bufts off, logits_all, one batch",
        "shape": args.shape,
        "seed": args.seed,
        "regenerate_models": f"python3 bench/synthetic.py {args.shape} --seed {args.seed} --type "
                             + " ".join(args.types) + " --out-dir DIR",
        "models": {},
    }
    for t, path in paths.items():
        llm = llama_cpp.Llama(model_path=path, n_threads=2, n_threads_batch=2, n_ctx=512, n_batch=512,
                              logits_all=True, flash_attn=False, use_extra_bufts=False, verbose=False)
        if "sequence" not in ref:
            ref["sequence"] = llm.tokenize(TEXT.encode(), add_bos=True, special=False)
            vocab = llm.n_vocab()
            ref["probe_ids"] = sorted(np.random.default_rng(12).choice(vocab, N_PROBE, replace=False).tolist())
        seq = ref["sequence"]
        llm.eval(seq)
        logits = np.array(llm.scores[: len(seq)], dtype=np.float32)
        if not np.isfinite(logits).all():
            sys.exit(f"synthetic_refs: {path}: llama.cpp's logits are not all finite")
        positions = []
        for pos in range(len(seq)):
            row = logits[pos]
            top = np.argsort(-row, kind="stable")[:5]
            positions.append({"pos": pos,
                              "top5": [[int(i), round(float(row[i]), 4)] for i in top],
                              "probe": [round(float(row[i]), 4) for i in ref["probe_ids"]]})
        ref["models"][t] = {"file": os.path.basename(path), "sha256": sha256(path),
                            "tensor_types": tensor_types(path),
                            "logit_std": round(float(logits.std()), 4),
                            "positions": positions}
        print(f"synthetic_refs: {t}: {len(seq)} positions, logit std {logits.std():.3f}, "
              f"types {ref['models'][t]['tensor_types']}", file=sys.stderr)
        del llm
    with open(out, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print(out)


if __name__ == "__main__":
    try:
        main()
    except synthetic.SynthError as e:
        sys.exit(f"synthetic_refs: error: {e}")
