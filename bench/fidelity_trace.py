"""Compare airlock's intermediate activations with llama.cpp's, op by op.

How the engine was made to match llama.cpp bit for bit (see appliance/engine/src/kernels/ggml.rs).

  1. python bench/fidelity_trace.py dump OUT.npz        # llama.cpp (llama-cpp-python), graph callback
  2. cargo run -p airlock-engine --example trace -- MODEL appliance/testdata/smollm2-llamacpp.json DIR
  3. python bench/fidelity_trace.py compare OUT.npz DIR  # per layer and op: max/mean |diff|

Runs the reference file's teacher-forced sequence in one batch with the settings the reference
was made with (2 threads, flash attention off, weights not repacked). Tensor names are
llama.cpp's (`attn_norm-0`, `Qcur-0`, `kqv_out-0`, `ffn_out-0`, `l_out-0`, `result_norm`, ...).
To isolate one op, feed it llama.cpp's input: the differences of a whole forward pass compound
(8-bit activation codes amplify a last-bit difference about fivefold per quantized product).
"""
import ctypes
import json
import os
import sys

import numpy as np

REF = os.path.join(os.path.dirname(__file__), "..", "appliance", "testdata", "smollm2-llamacpp.json")
MODEL = os.environ.get("AIRLOCK_TEST_MODEL",
                       os.path.expanduser("~/.cache/airlock/models/SmolLM2-135M-Instruct.Q4_1.gguf"))


class GgmlTensor(ctypes.Structure):
    # struct ggml_tensor (ggml.h, GGML_MAX_DIMS 4, GGML_MAX_OP_PARAMS 64, GGML_MAX_SRC 10)
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
                ("ne", ctypes.c_int64 * 4), ("nb", ctypes.c_size_t * 4),
                ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16), ("flags", ctypes.c_int32),
                ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p),
                ("name", ctypes.c_char * 64), ("extra", ctypes.c_void_p)]


def dump(out_path):
    import llama_cpp
    import llama_cpp.llama_cpp as ll

    dumps = {}

    def cb(tp, ask, _ud):
        if ask:
            return True
        t = ctypes.cast(tp, ctypes.POINTER(GgmlTensor)).contents
        if t.type not in (0, 1) or not t.data:  # F32, F16 on the CPU
            return True
        ne, nb = list(t.ne), list(t.nb)
        esz, dt = (4, np.float32) if t.type == 0 else (2, np.float16)
        span = sum((ne[i] - 1) * nb[i] for i in range(4)) + esz
        raw = np.frombuffer((ctypes.c_char * span).from_address(t.data), dtype=np.uint8)
        arr = np.lib.stride_tricks.as_strided(raw[: span // esz * esz].view(dt), shape=tuple(reversed(ne)),
                                              strides=tuple(reversed(nb)))
        name, key, i = t.name.decode(), t.name.decode(), 1
        while key in dumps:  # the same name after reshapes/permutes: name#1, name#2
            key, i = f"{name}#{i}", i + 1
        dumps[key] = np.array(arr, dtype=np.float32)
        return True

    cb_c = llama_cpp.ggml_backend_sched_eval_callback(cb)
    orig = ll.llama_context_default_params

    def with_callback():
        p = orig()
        p.cb_eval, p.cb_eval_user_data = cb_c, None
        return p

    ll.llama_context_default_params = with_callback
    ref = json.load(open(REF))
    seq = ref["teacher_forced"]["sequence"]
    llm = llama_cpp.Llama(model_path=MODEL, n_threads=2, n_threads_batch=2, n_ctx=1024, n_batch=512,
                          logits_all=True, flash_attn=False, use_extra_bufts=False, verbose=False)
    dumps.clear()
    llm.eval(seq)
    logits = np.array(llm.scores[: len(seq)], dtype=np.float32)
    worst = max(abs(logits[p["pos"], t] - v) for p in ref["teacher_forced"]["positions"] for t, v in p["top5"])
    print(f"llama.cpp vs the reference file: max |diff| {worst:.2e} (should be ~5e-5: the file's rounding)")
    dumps["__logits"] = logits
    np.savez(out_path, **dumps)


def compare(npz, odir):
    L = np.load(npz)
    ours = {}
    for e in json.load(open(f"{odir}/index.json")):
        ours.setdefault(e["name"], np.fromfile(f"{odir}/{e['file']}", dtype="<f4").reshape(e["shape"]))
    n = L["embd"].shape[2]

    def theirs(name):
        base = name.rpartition("-")[0]
        if base in ("Qcur", "Kcur"):  # after RoPE; ours is [heads, n, hd] (queries f16-rounded)
            return L[f"{name}#2"][0].transpose(1, 0, 2)
        if base == "Vcur":
            return L[f"{name}#1"][0].transpose(1, 0, 2)
        if name == "result_output":
            return L["__logits"]
        return L[name].reshape(n, -1)

    print(f"{'tensor':16} {'max|d|':>10} {'mean|d|':>10} {'rel mean':>10}")
    for name, a in ours.items():
        b = theirs(name)
        d = np.abs(a.astype(np.float64) - b)
        print(f"{name:16} {d.max():10.3e} {d.mean():10.3e} {d.mean() / (np.abs(b).mean() + 1e-30):10.3e}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "dump":
        dump(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
