"""Airlock vs llama.cpp on one GGUF: prompt processing (128 and 512 tokens), generation of 128
tokens, time to first token and peak RSS; medians of N runs; ratios airlock / llama.cpp.

Each measurement runs in its own process so peak RSS (wait4's ru_maxrss) is per run. llama.cpp
runs inside a small Python driver, so its RSS includes the interpreter (~15 MiB, measured and
reported separately as `python baseline`)."""
import argparse, datetime, json, os, platform, re, statistics, subprocess, sys, textwrap

TIMING = re.compile(r"timing: prompt_tokens=(\d+) prompt_tps=([\d.]+) gen_tokens=(\d+) gen_tps=([\d.]+) ttft_ms=([\d.]+)")

TEXT = ("The history of computing is a story of people building tools to think with. "
        "Early machines filled rooms and were programmed by rewiring panels; later, stored "
        "programs, compilers and operating systems turned them into general instruments. ") * 60

LLAMA_DRIVER = textwrap.dedent("""
    import json, sys, time
    from llama_cpp import Llama
    model, threads, n_prompt, n_gen, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=1024, n_batch=512,
                use_extra_bufts=False, verbose=False)
    toks = llm.tokenize(text.encode(), add_bos=True, special=False)[:n_prompt]
    t0 = time.perf_counter()
    llm.eval(toks)
    first = llm.sample(temp=0.0)
    t1 = time.perf_counter()
    out = [first]
    for _ in range(n_gen - 1):
        llm.eval([out[-1]])
        out.append(llm.sample(temp=0.0))
    t2 = time.perf_counter()
    print(json.dumps({"prompt_tokens": len(toks), "prompt_tps": len(toks) / (t1 - t0),
                      "gen_tokens": n_gen, "gen_tps": (n_gen - 1) / (t2 - t1), "ttft_ms": (t1 - t0) * 1000}))
""")


def run_rss(cmd):
    """Runs cmd; returns (stdout, stderr, peak RSS in MiB)."""
    r, w = os.pipe()
    re_, we = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1); os.dup2(we, 2)
        os.close(r); os.close(re_)
        os.execv(cmd[0], cmd)
    os.close(w); os.close(we)
    out = os.fdopen(r).read()
    err = os.fdopen(re_).read()
    _, status, ru = os.wait4(pid, 0)
    if status != 0:
        sys.exit(f"command failed ({status}): {' '.join(cmd[:3])}...\n{err[-2000:]}")
    return out, err, ru.ru_maxrss / 1024.0


def airlock(args, n_prompt, n_gen, text):
    out, err, rss = run_rss([args.airlock, "generate", "--model", args.model, "--prompt", text,
                             "--max-tokens", str(n_gen), "--ignore-eos", "--temperature", "0",
                             "--threads", str(args.threads)])
    m = TIMING.search(err)
    if not m:
        sys.exit(f"no timing line from airlock:\n{err[-2000:]}")
    return {"prompt_tokens": int(m[1]), "prompt_tps": float(m[2]), "gen_tokens": int(m[3]),
            "gen_tps": float(m[4]), "ttft_ms": float(m[5]), "rss_mib": rss}


def llama(args, n_prompt, n_gen, text):
    out, err, rss = run_rss([sys.executable, "-c", LLAMA_DRIVER, args.model, str(args.threads),
                             str(n_prompt), str(n_gen), text])
    d = json.loads(out.strip().splitlines()[-1])
    d["rss_mib"] = rss
    return d


def cut(args, n):
    """Text that llama.cpp's tokenizer (same vocabulary) turns into n tokens with BOS."""
    code = ("import sys;from llama_cpp import Llama;l=Llama(model_path=sys.argv[1],vocab_only=True,verbose=False);"
            "t=l.tokenize(sys.argv[2].encode(),add_bos=False,special=False)[:int(sys.argv[3])-1];"
            "sys.stdout.write(l.detokenize(t).decode())")
    out, _, _ = run_rss([sys.executable, "-c", code, args.model, TEXT, str(n)])
    return out


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--airlock", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    results = {}
    for n_prompt in (128, 512):
        text = cut(args, n_prompt)
        for name, fn in (("airlock", airlock), ("llama.cpp", llama)):
            rows = [fn(args, n_prompt, 128, text) for _ in range(args.runs)]
            results[(name, n_prompt)] = rows
            print(f"{name:9} prompt {n_prompt}: " + json.dumps({k: round(median(rows, k), 2) for k in rows[0]}), flush=True)
    _, _, py_rss = run_rss([sys.executable, "-c", "import llama_cpp"])
    lines = []
    metrics = [("prompt tokens/s (128)", 128, "prompt_tps", True), ("prompt tokens/s (512)", 512, "prompt_tps", True),
               ("generation tokens/s (128 new, 128 prompt)", 128, "gen_tps", True),
               ("time to first token, ms (128 prompt)", 128, "ttft_ms", False),
               ("time to first token, ms (512 prompt)", 512, "ttft_ms", False),
               ("peak RSS, MiB (512 prompt + 128 new)", 512, "rss_mib", False)]
    lines.append("| metric | airlock | llama.cpp | airlock / llama.cpp |")
    lines.append("|---|---:|---:|---:|")
    for label, n, key, _ in metrics:
        a = median(results[("airlock", n)], key)
        l = median(results[("llama.cpp", n)], key)
        lines.append(f"| {label} | {a:.1f} | {l:.1f} | {a / l:.2f} |")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    head = [f"# Benchmark: airlock vs llama.cpp",
            "",
            f"Date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC. Machine: {cpu}, {os.cpu_count()} logical CPUs, "
            f"{args.threads} threads each. Model: `{os.path.basename(args.model)}`. Medians of {args.runs} runs; each run a "
            f"fresh process (load average at start {load:.2f}{'; figures are under load' if load > 2.5 else ''}).",
            f"airlock binary: `{os.path.relpath(args.airlock)}`. llama.cpp: llama-cpp-python (use_extra_bufts=False, n_ctx 1024, n_batch 512); its RSS includes the Python "
            f"interpreter and the package (`import llama_cpp` alone: {py_rss:.1f} MiB). Prompt tokens/s for airlock is "
            f"measured to the first token (prompt pass + one sample), as for llama.cpp.",
            ""]
    table = "\n".join(head + lines) + "\n"
    print(table)
    if args.out:
        # Replace this benchmark's section only: bench/api.sh keeps its "# API benchmark"
        # section (and anything after it) in the same file.
        rest = ""
        if os.path.exists(args.out):
            old = open(args.out).read()
            at = old.find("\n# API benchmark\n")
            rest = old[at:] if at >= 0 else ""
        with open(args.out, "w") as f:
            f.write(table + rest)


if __name__ == "__main__":
    main()
