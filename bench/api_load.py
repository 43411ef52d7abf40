"""Streaming load generator and report for the API benchmark (bench/api.sh).

Subcommands (bench/api.sh calls them; each can be run by hand):

  wait    poll a server's readiness URL until it answers 200 (or its process exits)
  run     N concurrent streaming clients against one server, for each N of --clients;
          writes one JSON file of raw per-request samples
  report  read the JSON files of one run directory, print the table and ratios, and
          replace the "API benchmark" section of bench/RESULTS.md (the rest is kept)

Load model: every client is one asyncio task with its own keep-alive connection (httpx,
HTTP/1.1; over mutual TLS when --cert/--key are given). A round starts all N clients at
once; each sends --requests streamed chat completions back to back (same prompt,
temperature 0, max_tokens --max-tokens). Before the measured rounds every client sends one
unmeasured request (connection + TLS handshake, the servers' prompt caches, page cache).

Per request: TTFT = request sent -> first SSE chunk whose delta has non-empty content;
latency = request sent -> `data: [DONE]` (or the end of the body); generated tokens =
the server's `usage.completion_tokens` when it sends usage (`stream_options.include_usage`),
else the number of content chunks (one token each for llama.cpp's servers). Aggregate
tokens/s of a round = all tokens generated in the round / the round's wall time (first
request sent -> last one done); the report takes the median over rounds.
"""
import argparse
import asyncio
import datetime
import glob
import json
import os
import platform
import re
import ssl
import statistics
import sys
import time

import httpx

# 42 tokens with SmolLM2's chat template (its default system prompt included); the greedy
# answer is longer than 64 tokens on every server, so max_tokens ends each request.
DEFAULT_PROMPT = "Explain in detail how a modern household refrigerator keeps food cold."

SECTION = "# API benchmark"


def tls_context(ca, cert, key):
    if not (ca or cert):
        return None
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def percentile(values, q):
    """Linear-interpolated percentile (q in [0, 100]); None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# ---------------------------------------------------------------------------------------
# wait


def alive(pid):
    """False once the process exited (a zombie its parent has not reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def wait_ready(args):
    deadline = time.monotonic() + args.timeout
    verify = tls_context(args.ca, args.cert, args.key) or True
    last = "no answer"
    async with httpx.AsyncClient(verify=verify, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if args.pid and not alive(args.pid):
                sys.exit(f"api_load wait: server process {args.pid} exited before it was ready ({last})")
            try:
                r = await client.get(args.url)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
            await asyncio.sleep(0.25)
    sys.exit(f"api_load wait: {args.url} not ready after {args.timeout}s ({last})")


# ---------------------------------------------------------------------------------------
# run


def request_body(args):
    body = {
        "model": args.model,
        "messages": [{"role": "user", "content": args.prompt}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": True,
    }
    if args.usage:
        body["stream_options"] = {"include_usage": True}
    if args.ignore_eos:
        body["ignore_eos"] = True
    for kv in args.extra or []:
        k, _, v = kv.partition("=")
        body[k] = json.loads(v)
    return body


async def one_request(client, url, body):
    """One streamed chat completion; returns its sample (times in seconds, relative).
    Transport errors (refused, reset, timeout) are samples with an error, not exceptions."""
    t0 = time.perf_counter()
    try:
        return await stream_request(client, url, body, t0)
    except httpx.HTTPError as e:
        return {"error": f"{type(e).__name__}: {e}", "t0": t0, "t_end": time.perf_counter()}


async def stream_request(client, url, body, t0):
    first = last = None
    gap_max = 0.0
    chunks = 0
    usage = None
    finish = None
    done = False
    error = None
    async with client.stream("POST", url, json=body) as r:
        if r.status_code != 200:
            text = (await r.aread()).decode(errors="replace")
            return {"error": f"HTTP {r.status_code}: {text[:300]}", "t0": t0, "t_end": time.perf_counter()}
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            try:
                event = json.loads(data)
            except json.JSONDecodeError:
                error = f"bad SSE data: {data[:200]}"
                continue
            if "error" in event:
                error = json.dumps(event["error"])[:300]
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    chunks += 1
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    else:
                        gap_max = max(gap_max, now - last)
                    last = now
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
    t_end = time.perf_counter()
    if usage and usage.get("completion_tokens") is not None:
        tokens, source = int(usage["completion_tokens"]), "usage"
    else:
        tokens, source = chunks, "chunks"
    sample = {"t0": t0, "t_first": first, "t_last": last, "t_end": t_end, "tokens": tokens, "tokens_from": source,
              "chunks": chunks, "gap_max_ms": round(gap_max * 1000.0, 3), "finish": finish, "done": done,
              "prompt_tokens": (usage or {}).get("prompt_tokens")}
    if error or first is None:
        sample["error"] = error or "no content in the stream"
    return sample


async def client_task(args, client, url, body, n, out):
    for _ in range(n):
        out.append(await one_request(client, url, body))


def make_client(args):
    verify = tls_context(args.ca, args.cert, args.key) or True
    # One connection per client, kept alive across its requests; generous read timeout
    # (a loaded machine can take seconds per token).
    return httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(args.timeout, connect=30.0),
                             limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


async def sample_metrics(args, stop, samples):
    """Polls Prometheus gauges (airlock: batch size, queue depth) while a round runs."""
    verify = tls_context(args.ca, args.metrics_cert, args.metrics_key) or True
    async with httpx.AsyncClient(verify=verify, timeout=5.0) as client:
        while not stop.is_set():
            try:
                r = await client.get(args.metrics_url)
                if r.status_code == 200:
                    samples.append(parse_metrics(r.text))
            except httpx.HTTPError:
                pass
            try:
                await asyncio.wait_for(stop.wait(), args.metrics_interval)
            except asyncio.TimeoutError:
                pass


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN|[+-]Inf)$")


def parse_metrics(text):
    """Prometheus text -> {name{labels}: value} (only what the report reads)."""
    out = {}
    for line in text.splitlines():
        m = METRIC_LINE.match(line.strip())
        if m:
            try:
                out[m[1] + (m[2] or "")] = float(m[3])
            except ValueError:
                pass
    return out


async def fetch_metrics(args):
    if not args.metrics_url:
        return None
    verify = tls_context(args.ca, args.metrics_cert, args.metrics_key) or True
    try:
        async with httpx.AsyncClient(verify=verify, timeout=10.0) as client:
            r = await client.get(args.metrics_url)
            return parse_metrics(r.text) if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


async def run_load(args):
    url = args.base_url.rstrip("/") + "/v1/chat/completions"
    body = request_body(args)
    result = {"name": args.name, "label": args.label or args.name, "base_url": args.base_url,
              "body": body, "rounds": args.rounds, "requests_per_client": args.requests,
              "max_tokens": args.max_tokens, "levels": {}, "info": json.loads(args.info or "{}"),
              "metrics_before": await fetch_metrics(args),
              "loadavg_start": os.getloadavg()[0]}
    for n in args.clients:
        # Enough requests for percentiles at low client counts: at least --min-samples per level.
        per_round = max(args.requests, -(-args.min_samples // (n * args.rounds)))
        clients = [make_client(args) for _ in range(n)]
        try:
            warm = []
            await asyncio.gather(*(client_task(args, c, url, body, 1, warm) for c in clients))
            bad = [s for s in warm if "error" in s]
            if bad:
                sys.exit(f"api_load run [{args.name}]: warm-up request failed: {bad[0]['error']}")
            rounds = []
            for i in range(args.rounds):
                per_client = [[] for _ in clients]
                stop = asyncio.Event()
                gauges = []
                poller = (asyncio.create_task(sample_metrics(args, stop, gauges))
                          if args.metrics_url else None)
                t_start = time.perf_counter()
                await asyncio.gather(*(client_task(args, c, url, body, per_round, per_client[j])
                                       for j, c in enumerate(clients)))
                t_stop = time.perf_counter()
                stop.set()
                if poller:
                    await poller
                samples = [dict(s, client=j) for j, ss in enumerate(per_client) for s in ss]
                for s in samples:  # times relative to the round's start, in ms
                    for k in ("t0", "t_first", "t_last", "t_end"):
                        if s.get(k) is not None:
                            s[k] = round((s[k] - t_start) * 1000.0, 3)
                errors = [s["error"] for s in samples if "error" in s]
                tokens = sum(s.get("tokens", 0) for s in samples if "error" not in s)
                wall = t_stop - t_start
                rnd = {"wall_s": wall, "tokens": tokens, "tok_s": tokens / wall, "errors": len(errors),
                       "samples": samples}
                if gauges:
                    rnd["gauges"] = gauges
                rounds.append(rnd)
                print(f"  {args.label or args.name}: {n} client(s) round {i + 1}/{args.rounds}: "
                      f"{tokens} tokens in {wall:.2f} s = {tokens / wall:.1f} tok/s"
                      + (f", {len(errors)} error(s): {errors[0]}" if errors else ""), flush=True)
            result["levels"][str(n)] = {"warmup": warm, "rounds": rounds, "requests_per_client": per_round}
        finally:
            for c in clients:
                await c.aclose()
    result["metrics_after"] = await fetch_metrics(args)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


# ---------------------------------------------------------------------------------------
# report


def summarize(res):
    """Per level: median tok/s over rounds, TTFT and latency percentiles over all requests."""
    out = {}
    for n, level in res["levels"].items():
        samples = [s for r in level["rounds"] for s in r["samples"]]
        ok = [s for s in samples if "error" not in s]
        ttft = [s["t_first"] - s["t0"] for s in ok]
        lat = [s["t_end"] - s["t0"] for s in ok]
        # Last content chunk -> end of stream: airlock makes the response record durable there.
        tail = [s["t_end"] - s["t_last"] for s in ok if s.get("t_last") is not None]
        toks = [s["tokens"] for s in ok]
        batch = [g.get("airlock_batch_size") for r in level["rounds"] for g in r.get("gauges", [])]
        batch = [b for b in batch if b is not None]
        out[int(n)] = {
            "tok_s": statistics.median(r["tok_s"] for r in level["rounds"]),
            "tok_s_rounds": [r["tok_s"] for r in level["rounds"]],
            "ttft_p50": percentile(ttft, 50), "ttft_p95": percentile(ttft, 95),
            "lat_p50": percentile(lat, 50), "lat_p95": percentile(lat, 95),
            "tail_p50": percentile(tail, 50) if tail else None,
            "gap_p50": percentile([s["gap_max_ms"] for s in ok if "gap_max_ms" in s], 50),
            "requests": len(samples), "errors": len(samples) - len(ok),
            "tokens_min": min(toks) if toks else None, "tokens_max": max(toks) if toks else None,
            "tokens_from": sorted({s["tokens_from"] for s in ok}),
            "prompt_tokens": sorted({s["prompt_tokens"] for s in ok if s.get("prompt_tokens")}),
            "batch_mean": statistics.mean(batch) if batch else None,
            "batch_max": max(batch) if batch else None,
        }
    return out


def server_mean_ms(res, histogram):
    """Mean of an airlock /metrics histogram over the run (warm-ups included), in ms."""
    a, b = res.get("metrics_before") or {}, res.get("metrics_after") or {}
    key_s, key_n = f"airlock_{histogram}_sum", f"airlock_{histogram}_count"
    if key_s not in b or key_n not in b:
        return None
    n = b[key_n] - a.get(key_n, 0.0)
    return (b[key_s] - a.get(key_s, 0.0)) / n * 1000.0 if n > 0 else None


def audit_append(res):
    """Mean audit append (submit -> flushed), ms."""
    return server_mean_ms(res, "audit_append_duration_seconds")


def fmt(v, nd=1):
    return "–" if v is None else f"{v:.{nd}f}"


def ratio(a, b, nd=2):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.{nd}f}"


def describe(runs, meta, primary):
    """Sentences on versions and settings of the servers in this run."""
    out = []
    if any(n.startswith("airlock-") for n in runs):
        where = [f"on {meta.get(k, '?')} (`{n}`)" for n, k in (("airlock-tmpfs", "tmpfs_fs"), ("airlock-disk", "disk_fs"))
                 if n in runs]
        out.append(f"airlock `{meta.get('airlock_version', '?')}` (`{meta.get('airlock_bin', '?')}`): `airlock serve` "
                   f"over mutual TLS (dev PKI, client certificate per connection), egress lockdown on, "
                   f"`max_batch` {meta.get('llama_server_slots', 8)}, audit log (durable before the first token "
                   f"and before the end of the stream) {' and '.join(where)}; ratios use `{primary}`.")
    if "llama-server" in runs:
        out.append(f"llama-server {meta.get('llama_server_version', '?')} built from llama-cpp-python "
                   f"{meta.get('llama_cpp_python', '?')}'s `vendor/llama.cpp` (`-np {meta.get('llama_server_slots', 8)} "
                   f"--no-repack -c {meta.get('ctx', '?')}`, requests with `ignore_eos`"
                   + (")." if meta.get("prompt_cache", True) else ", `cache_prompt: false`)."))
    if "llama-cpp-python" in runs:
        out.append(f"llama-cpp-python {meta.get('llama_cpp_python', '?')} server (`use_extra_bufts=False`, "
                   f"`--interrupt_requests False`: requests wait for its lock).")
    if "llama-server" in runs or "llama-cpp-python" in runs:
        out.append("llama.cpp's servers speak plain HTTP on 127.0.0.1 and reuse the cached prefix of a repeated "
                   "prompt" + (" (llama-server only where `cache_prompt` is on)" if not meta.get("prompt_cache", True)
                               else "") + "; airlock resumes a client's repeated prompt from its prefix cache "
                   "(per client certificate, `[engine] prefix_cache`" + (" = false in this run" if not meta.get("prompt_cache", True)
                                                                        else "") + ").")
    return out


def report(args):
    files = sorted(glob.glob(os.path.join(args.dir, "*.json")))
    meta = {}
    runs = {}
    for f in files:
        with open(f) as fh:
            d = json.load(fh)
        if os.path.basename(f) == "meta.json":
            meta = d
        else:
            runs[d["name"]] = d
    if not runs:
        sys.exit(f"api_load report: no results in {args.dir}")
    sums = {name: summarize(r) for name, r in runs.items()}
    order = [n for n in ("airlock-disk", "airlock-tmpfs", "llama-server", "llama-cpp-python") if n in runs]
    order += [n for n in runs if n not in order]
    levels = sorted({n for s in sums.values() for n in s})
    lo = levels[0] if levels else 1
    hi = levels[-1] if levels else 1
    primary = "airlock-disk" if "airlock-disk" in sums else ("airlock-tmpfs" if "airlock-tmpfs" in sums else None)
    peers = [p for p in ("llama-server", "llama-cpp-python") if p in sums]

    def get(name, n, key):
        return sums.get(name, {}).get(n, {}).get(key)

    rows = [(f"TTFT p50, ms ({lo} client{'s' if lo > 1 else ''})", lo, "ttft_p50", 1, False),
            (f"TTFT p95, ms ({lo} client{'s' if lo > 1 else ''})", lo, "ttft_p95", 1, False)]
    rows += [(f"generated tokens/s, {n} client{'s' if n > 1 else ''}", n, "tok_s", 1, True) for n in levels]
    rows += [(f"request latency p50, ms ({n} client{'s' if n > 1 else ''})", n, "lat_p50", 1, False)
             for n in levels]
    rows += [(f"longest pause in a stream, p50, ms ({n} client{'s' if n > 1 else ''})", n, "gap_p50", 1, False)
             for n in levels]
    labels = {name: runs[name]["label"] for name in order}
    ratio_peers = peers if primary else []
    head = "| metric | " + " | ".join([labels[n] for n in order] + [f"airlock / {labels[p]}" for p in ratio_peers]) + " |"
    lines = [head, "|---|" + "---:|" * (len(order) + len(ratio_peers))]
    for label, n, key, nd, _ in rows:
        cells = [fmt(get(name, n, key), nd) for name in order]
        cells += [ratio(get(primary, n, key), get(p, n, key)) for p in ratio_peers]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    # The targets (printed below the table).
    checks = []
    if primary and "llama-cpp-python" in sums:
        r = (get(primary, hi, "tok_s") or 0) / (get("llama-cpp-python", hi, "tok_s") or float("nan"))
        checks.append(f"* {hi} clients, tokens/s ≥ 2× llama-cpp-python's server: {r:.2f}× "
                      f"({'met' if r >= 2 else 'not met'}).")
    if primary and "llama-server" in sums:
        r = (get(primary, hi, "tok_s") or 0) / (get("llama-server", hi, "tok_s") or float("nan"))
        checks.append(f"* {hi} clients, tokens/s vs llama-server ({meta.get('llama_server_slots', 8)} slots): {r:.2f}×.")
        t = (get(primary, lo, "ttft_p50") or 0) / (get("llama-server", lo, "ttft_p50") or float("nan"))
        checks.append(f"* TTFT p50 at {lo} client ≤ 1.2× llama-server's: {t:.2f}× ({'met' if t <= 1.2 else 'not met'}).")
    audit_lines = []
    if "airlock-disk" in sums and "airlock-tmpfs" in sums:
        audit_lines.append("| clients | TTFT p50 tmpfs / disk, ms | Δ ms | last token → end of stream p50 tmpfs / disk, ms | Δ ms "
                           "| latency p50 tmpfs / disk, ms | Δ ms | tok/s tmpfs / disk |")
        audit_lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in levels:
            t1, t2 = get("airlock-tmpfs", n, "ttft_p50"), get("airlock-disk", n, "ttft_p50")
            l1, l2 = get("airlock-tmpfs", n, "lat_p50"), get("airlock-disk", n, "lat_p50")
            e1, e2 = get("airlock-tmpfs", n, "tail_p50"), get("airlock-disk", n, "tail_p50")
            audit_lines.append(
                f"| {n} | {fmt(t1)} / {fmt(t2)} | {fmt(None if t1 is None or t2 is None else t2 - t1, 2)} | "
                f"{fmt(e1, 2)} / {fmt(e2, 2)} | {fmt(None if e1 is None or e2 is None else e2 - e1, 2)} | "
                f"{fmt(l1)} / {fmt(l2)} | {fmt(None if l1 is None or l2 is None else l2 - l1, 2)} | "
                f"{fmt(get('airlock-tmpfs', n, 'tok_s'))} / {fmt(get('airlock-disk', n, 'tok_s'))} |")
        ad, at = audit_append(runs["airlock-disk"]), audit_append(runs["airlock-tmpfs"])
        # The audit log sits on a request's path twice: the request record before the first token,
        # the response record before the end of the stream. The tokens in between are the
        # engine's, whose speed varies between two runs by more than the whole audit cost, so
        # the whole-latency difference (in the table) measures that noise, not the audit log.
        dt = (get("airlock-disk", lo, "ttft_p50") or 0) - (get("airlock-tmpfs", lo, "ttft_p50") or 0)
        de = (get("airlock-disk", lo, "tail_p50") or 0) - (get("airlock-tmpfs", lo, "tail_p50") or 0)
        d = dt + de
        checks.append(f"* Audit cost at {lo} client, disk − tmpfs on the request path (Δ TTFT p50 {dt:.2f} ms + "
                      f"Δ last token → end of stream p50 {de:.2f} ms) < 1 ms: {d:.2f} ms "
                      f"({'met' if d < 1 else 'not met'}); server-side mean audit append "
                      f"(submit → flushed, airlock /metrics): {fmt(at, 3)} ms tmpfs, {fmt(ad, 3)} ms disk.")

    notes = []
    for name in order:
        for n, s in sorted(sums[name].items()):
            if s["errors"]:
                notes.append(f"* {labels[name]}, {n} clients: {s['errors']} of {s['requests']} requests failed.")
            if s["tokens_min"] is not None and s["tokens_min"] != runs[name]["max_tokens"]:
                notes.append(f"* {labels[name]}, {n} clients: some answers had {s['tokens_min']}–{s['tokens_max']} "
                             f"tokens instead of {runs[name]['max_tokens']} (tokens/s counts what was generated).")
        ttft_s, itl_s = (server_mean_ms(runs[name], "time_to_first_token_seconds"),
                         server_mean_ms(runs[name], "inter_token_latency_seconds"))
        if ttft_s is not None:
            notes.append(f"* {labels[name]}, server side (/metrics, means over the run, all client counts): "
                         f"admission → first token {ttft_s:.1f} ms, between tokens {fmt(itl_s)} ms, "
                         f"audit append {fmt(audit_append(runs[name]), 2)} ms.")
        bm = [(n, s["batch_mean"], s["batch_max"]) for n, s in sorted(sums[name].items()) if s["batch_mean"] is not None]
        if bm:
            notes.append(f"* {labels[name]}: decode batch size sampled from /metrics during the rounds (mean / max): "
                         + ", ".join(f"{n} clients {m:.1f} / {x:.0f}" for n, m, x in bm) + ".")
    la = [f"{labels[n]} {runs[n]['loadavg_start']:.1f}" for n in order if "loadavg_start" in runs[n]]
    if la:
        notes.append("* Load average (1 min) when each server's load started: " + ", ".join(la) + ".")
    ptoks = sorted({p for s in sums.values() for v in s.values() for p in v["prompt_tokens"]})
    first = runs[order[0]]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    load = meta.get("loadavg")
    text = [SECTION, "",
            f"Date: {meta.get('date') or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. "
            f"Machine: {cpu}, {os.cpu_count()} logical CPUs; every server with {meta.get('threads', '?')} threads. "
            f"Load average at start: {load or '?'}"
            + (" (**loaded machine: figures are for validating the script only**)"
               if load and float(str(load).split()[0]) > args.quiet_load else "") + ".",
            f"Model: `{meta.get('model', '?')}`. Streamed chat completions, {first['max_tokens']} tokens each "
            f"(temperature 0), prompt {', '.join(map(str, ptoks)) or '?'} tokens (chat template included); "
            f"{first['rounds']} round(s) per client count; requests each client sends back to back per round: "
            + ", ".join(f"{v.get('requests_per_client', first['requests_per_client'])} at {n} client{'s' if int(n) > 1 else ''}"
                        for n, v in first["levels"].items())
            + "; one unmeasured warm-up request per client first; "
            "percentiles over all measured requests, tokens/s the median over rounds.",
            " ".join(describe(runs, meta, primary)),
            "", *lines, "", "Targets of issue 7:", "", *checks]
    if audit_lines:
        text += ["", "Audit on tmpfs vs on disk (Δ = disk − tmpfs):", "", *audit_lines]
    if notes:
        text += ["", "Notes:", "", *notes]
    el = meta.get("elapsed_s")
    took = "" if not el else (f" The whole run took {el} s." if el < 120 else f" The whole run took {el / 60:.0f} min.")
    text += ["", f"Reproduce: `{meta.get('command', 'bench/api.sh')}`.{took}", ""]
    section = "\n".join(text)
    print(section)
    if args.results_md:
        old = open(args.results_md).read() if os.path.exists(args.results_md) else ""
        start = old.find("\n" + SECTION + "\n")
        if old.startswith(SECTION + "\n"):
            start = 0
        if start >= 0:
            # Replace our section up to the next top-level heading (or the end).
            nxt = re.search(r"^# ", old[start + len(SECTION) + 2:], re.M)
            end = start + len(SECTION) + 2 + nxt.start() if nxt else len(old)
            new = old[:start].rstrip("\n") + ("\n\n" if start else "") + section + ("\n" + old[end:] if nxt else "")
        else:
            new = old.rstrip("\n") + ("\n\n" if old else "") + section
        with open(args.results_md, "w") as f:
            f.write(new)
        print(f"updated {args.results_md}", file=sys.stderr)


# ---------------------------------------------------------------------------------------


def levels(text):
    out = [int(x) for x in text.replace(",", " ").split()]
    if not out or any(n < 1 for n in out):
        raise argparse.ArgumentTypeError("clients: positive integers, e.g. 1,4,8")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def tls_args(p):
        p.add_argument("--ca", help="CA bundle that signed the server's certificate")
        p.add_argument("--cert", help="client certificate (mutual TLS)")
        p.add_argument("--key", help="client key")

    w = sub.add_parser("wait", help="wait until URL answers 200")
    w.add_argument("--url", required=True)
    w.add_argument("--timeout", type=float, default=300)
    w.add_argument("--pid", type=int, help="fail early when this process exits")
    tls_args(w)

    r = sub.add_parser("run", help="run the load against one server")
    r.add_argument("--name", required=True, help="result key: airlock-tmpfs, airlock-disk, llama-server, ...")
    r.add_argument("--label", help="column title in the report")
    r.add_argument("--base-url", required=True, help="e.g. https://127.0.0.1:8443")
    r.add_argument("--model", required=True)
    r.add_argument("--clients", type=levels, default=[1, 4, 8])
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--requests", type=int, default=2, help="requests per client per round")
    r.add_argument("--min-samples", type=int, default=20,
                   help="raise requests per client so that each client count has at least this many")
    r.add_argument("--max-tokens", type=int, default=64)
    r.add_argument("--prompt", default=DEFAULT_PROMPT)
    r.add_argument("--ignore-eos", action="store_true", help="send ignore_eos: true (llama-server)")
    r.add_argument("--no-usage", dest="usage", action="store_false",
                   help="do not send stream_options.include_usage (count content chunks)")
    r.add_argument("--extra", action="append", metavar="KEY=JSON", help="extra body field")
    r.add_argument("--timeout", type=float, default=600, help="read timeout per request, s")
    r.add_argument("--metrics-url", help="Prometheus endpoint to sample (airlock /metrics)")
    r.add_argument("--metrics-cert")
    r.add_argument("--metrics-key")
    r.add_argument("--metrics-interval", type=float, default=0.1)
    r.add_argument("--info", help="JSON object stored with the results")
    r.add_argument("--out", required=True)
    tls_args(r)

    p = sub.add_parser("report", help="table + RESULTS.md section from a run directory")
    p.add_argument("--dir", required=True)
    p.add_argument("--results-md")
    p.add_argument("--quiet-load", type=float, default=1.0,
                   help="load average above which the figures are marked as measured under load")

    args = ap.parse_args()
    if args.cmd == "wait":
        asyncio.run(wait_ready(args))
    elif args.cmd == "run":
        if args.rounds < 1 or args.requests < 1 or args.max_tokens < 1:
            sys.exit("api_load run: --rounds, --requests and --max-tokens must be ≥ 1")
        asyncio.run(run_load(args))
    else:
        report(args)


if __name__ == "__main__":
    main()
