"""Airlock vs llama.cpp on one GGUF: prompt processing (128 and 512 tokens, and a long document,
4096 by default), generation (128 new tokens; 32 for files over 3 GB), time to first token, peak
RSS, and generation while another process keeps one core busy (`yes > /dev/null`); medians of N
runs; ratios airlock / llama.cpp.

Each measurement runs in its own process so peak RSS (wait4's ru_maxrss) is per run; the two
engines alternate run by run, so a load change on a shared machine hits both. llama.cpp runs
inside a small Python driver, so its RSS includes the interpreter (`import llama_cpp` alone is
measured and reported)."""
import argparse, datetime, json, os, platform, re, statistics, subprocess, sys, textwrap

TIMING = re.compile(r"timing: prompt_tokens=(\d+) prompt_tps=([\d.]+) gen_tokens=(\d+) gen_tps=([\d.]+) ttft_ms=([\d.]+)")

TEXT = ("The history of computing is a story of people building tools to think with. "
        "Early machines filled rooms and were programmed by rewiring panels; later, stored "
        "programs, compilers and operating systems turned them into general instruments. ") * 150

LLAMA_DRIVER = textwrap.dedent("""
    import json, sys, time
    from llama_cpp import Llama
    model, threads, n_prompt, n_gen, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    # The context this run needs (at least 1024, as in earlier tables): llama.cpp allocates its
    # f16 KV cache for all of n_ctx up front, so a larger one would inflate its RSS.
    n_ctx = max(1024, -(-(n_prompt + n_gen) // 256) * 256)
    llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx, n_batch=512,
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


class Contention:
    """One core kept busy by another process (`yes > /dev/null`) while the block runs."""

    def __enter__(self):
        self.p = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc):
        self.p.kill()
        self.p.wait()


def measure(args, label, n_prompt, n_gen, text, results, runs=None):
    """`runs` (default `args.runs`) runs of each engine, alternating; medians printed and kept
    under `label`."""
    rows = {"airlock": [], "llama.cpp": []}
    for _ in range(runs or args.runs):
        for name, fn in (("airlock", airlock), ("llama.cpp", llama)):
            rows[name].append(fn(args, n_prompt, n_gen, text))
    for name, r in rows.items():
        results[(name, label)] = r
        print(f"{name:9} {label}: " + json.dumps({k: round(median(r, k), 2) for k in r[0]}), flush=True)


def section_header(model):
    return f"# Benchmark: airlock vs llama.cpp, `{os.path.basename(model)}`"


def write_section(path, model, table):
    """Replaces this model's section of `path` (other models' sections and bench/api.sh's
    "# API benchmark" section are kept); a new model's section goes before the API benchmark."""
    old = open(path).read() if os.path.exists(path) else ""
    parts = re.split(r"(?m)^(?=# )", old)
    name = os.path.basename(model)
    keep = [p for p in parts if p and not (
        p.startswith(section_header(model) + "\n")
        # Tables written before sections were per model: one header, the model named inside.
        or (p.startswith("# Benchmark: airlock vs llama.cpp\n") and f"Model: `{name}`" in p))]
    at = next((i for i, p in enumerate(keep) if p.startswith("# API benchmark")), len(keep))
    keep.insert(at, table if table.endswith("\n\n") else table + "\n")
    with open(path, "w") as f:
        f.write("".join(keep).rstrip("\n") + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--airlock", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--gen", type=int, help="new tokens per decode run (default 128; 32 for files over 3 GB)")
    ap.add_argument("--long", type=int, default=4096, help="long-document prompt tokens (0: no long row)")
    ap.add_argument("--long-runs", type=int, help="runs of the long-document row (default --runs)")
    ap.add_argument("--no-contention", action="store_true", help="skip the decode-under-contention row")
    ap.add_argument("--out", help="markdown file whose section for this model is replaced")
    args = ap.parse_args()
    gen = args.gen or (32 if os.path.getsize(args.model) > 3e9 else 128)
    load = os.getloadavg()[0]
    t_start = datetime.datetime.now(datetime.timezone.utc)
    results = {}
    texts = {n: cut(args, n) for n in (128, 512) + ((args.long,) if args.long else ())}
    # Prompt rows generate `gen` tokens too, so "peak RSS (512 + gen)" is the memory of a chat turn;
    # the long row generates a few, its point being the prompt pass and the cache it fills.
    measure(args, "p128", 128, gen, texts[128], results)
    measure(args, "p512", 512, gen, texts[512], results)
    if args.long:
        measure(args, "long", args.long, 16, texts[args.long], results, args.long_runs)
    if not args.no_contention:
        with Contention():
            measure(args, "busy", 128, gen, texts[128], results)
    _, _, py_rss = run_rss([sys.executable, "-c", "import llama_cpp"])
    metrics = [(f"prompt tokens/s (512)", "p512", "prompt_tps"),
               (f"generation tokens/s ({gen} new, 128 prompt)", "p128", "gen_tps"),
               (f"prompt tokens/s (128)", "p128", "prompt_tps")]
    if args.long:
        metrics.append((f"prompt tokens/s ({args.long}, long document)", "long", "prompt_tps"))
    metrics += [("time to first token, ms (128 prompt)", "p128", "ttft_ms"),
                ("time to first token, ms (512 prompt)", "p512", "ttft_ms")]
    if args.long:
        metrics.append((f"time to first token, ms ({args.long} prompt)", "long", "ttft_ms"))
    metrics.append((f"peak RSS, MiB (512 prompt + {gen} new)", "p512", "rss_mib"))
    if args.long:
        metrics.append((f"peak RSS, MiB ({args.long} prompt + 16 new)", "long", "rss_mib"))
    if not args.no_contention:
        metrics.append((f"generation tokens/s, one core busy ({gen} new, 128 prompt)", "busy", "gen_tps"))
    lines = ["| metric | airlock | llama.cpp | airlock / llama.cpp |", "|---|---:|---:|---:|"]
    for label, row, key in metrics:
        a = median(results[("airlock", row)], key)
        l = median(results[("llama.cpp", row)], key)
        lines.append(f"| {label} | {a:.1f} | {l:.1f} | {a / l:.2f} |")
    notes = []
    if not args.no_contention:
        slow = {n: median(results[(n, "p128")], "gen_tps") / median(results[(n, "busy")], "gen_tps")
                for n in ("airlock", "llama.cpp")}
        notes.append(f"Generation slows by {slow['airlock']:.2f}× (airlock) and {slow['llama.cpp']:.2f}× "
                     f"(llama.cpp) when another process keeps one of the cores busy.")
    prompts = {row: (median(results[("airlock", row)], "prompt_tokens"), median(results[("llama.cpp", row)], "prompt_tokens"))
               for row in ("p128", "p512") + (("long",) if args.long else ())}
    if any(a != l for a, l in prompts.values()):
        notes.append("Prompt tokens as each engine counted them (airlock re-tokenizes llama.cpp's detokenized cut): "
                     + ", ".join(f"{a:.0f} / {l:.0f}" for a, l in prompts.values()) + ".")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    minutes = (datetime.datetime.now(datetime.timezone.utc) - t_start).total_seconds() / 60
    head = [section_header(args.model),
            "",
            f"Date: {t_start:%Y-%m-%d %H:%M} UTC. Machine: {cpu}, {os.cpu_count()} logical CPUs, "
            f"{args.threads} threads each. Model: `{os.path.basename(args.model)}` ({os.path.getsize(args.model) / 1e9:.2f} GB). "
            f"Medians of {args.runs} runs{f' ({args.long_runs} for the long document)' if args.long and args.long_runs else ''}; each run a fresh process, the engines alternating "
            f"(load average at start {load:.2f}{'; **figures are under load**' if load > 1.5 else ''}). Took {minutes:.0f} min.",
            f"airlock binary: `{os.path.relpath(args.airlock)}`. llama.cpp: llama-cpp-python (use_extra_bufts=False, n_ctx max(1024, prompt + new), n_batch 512); its RSS includes the Python "
            f"interpreter and the package (`import llama_cpp` alone: {py_rss:.1f} MiB). Prompt tokens/s for airlock is "
            f"measured to the first token (prompt pass + one sample), as for llama.cpp.",
            ""]
    table = "\n".join(head + lines + ([""] + notes if notes else [])) + "\n"
    print(table)
    if args.out:
        write_section(args.out, args.model, table)


if __name__ == "__main__":
    main()
