"""Load for the API-features benchmark (bench/api.sh --features): constrained decoding and
embeddings.

  decode  N concurrent clients (each N of --clients) send streamed chat completions back to
          back, first free text, then the same prompt under a JSON schema (response_format);
          writes each one's decode rate (tokens after the first / time from the first token to
          the last: the answers differ in length, so request and prompt costs must not count)
          and aggregate tokens/s, and their ratios
  embed   N concurrent clients send /v1/embeddings requests of one 64-token input each;
          writes inputs embedded per second
  report  reads a run directory's JSON files, prints the tables and replaces the
          "API features benchmark" section of bench/RESULTS.md

Aggregate rate of a round = everything produced in the round / its wall time; the median over
--rounds rounds is reported. Every client first sends one unmeasured request (connection, TLS,
the vocabulary index built on the first constrained request, caches).
"""
import argparse
import asyncio
import json
import ssl
import statistics
import sys
import time

import httpx

PROMPT = "Extract the patient as JSON: Maria Lopez, 71, admitted to cardiology with chest pain, takes metoprolol 50 mg twice daily, allergic to penicillin."
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "ward": {"enum": ["cardiology", "oncology", "emergency", "surgery"]},
        "medications": {
            "type": "array", "maxItems": 4,
            "items": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24},
                      "dose_mg": {"type": "integer", "minimum": 1, "maximum": 5000}},
                      "required": ["name", "dose_mg"], "additionalProperties": False},
        },
        "allergies": {"type": "array", "items": {"type": "string", "maxLength": 24}, "maxItems": 4},
    },
    "required": ["name", "age", "ward", "medications", "allergies"],
    "additionalProperties": False,
}
# 64 tokens with SmolLM2's tokenizer (the report states the servers' own count).
EMBED_TEXT = ("The patient is a 71-year-old woman admitted through the emergency department with "
              "chest pain radiating to the left arm, shortness of breath and nausea; troponin was "
              "elevated and the electrocardiogram showed ST depression in the lateral leads, so she "
              "was started on dual antiplatelet therapy. Her pain settled.")


def client_for(args):
    ctx = None
    if args.ca:
        ctx = ssl.create_default_context(cafile=args.ca)
        ctx.load_cert_chain(args.cert, args.key)
    return httpx.AsyncClient(base_url=args.base_url, verify=ctx if ctx else True, timeout=600)


DECODE_RATES = []


async def chat(client, args, constrained):
    """One streamed request; returns its tokens and records its decode rate."""
    body = {"model": args.model, "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "patient", "schema": SCHEMA}}
    first = last = None
    tokens, text, finish = 0, [], None
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            j = json.loads(line[6:])
            if j.get("usage"):
                tokens = j["usage"]["completion_tokens"]
            for c in j.get("choices", []):
                if c["delta"].get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    text.append(c["delta"]["content"])
                finish = c.get("finish_reason") or finish
    if constrained and finish == "stop":
        json.loads("".join(text))  # a complete answer must parse
    if first is not None and last > first and tokens > 1:
        DECODE_RATES.append((tokens - 1) / (last - first))
    return tokens


async def embed(client, args):
    r = await client.post("/v1/embeddings", json={"model": args.model, "input": EMBED_TEXT})
    r.raise_for_status()
    j = r.json()
    return 1, j.get("usage", {}).get("prompt_tokens")


def metric(args, name):
    """A counter's value from airlock's /metrics (operator certificate), or None."""
    if not args.metrics_url:
        return None
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.load_cert_chain(args.metrics_cert, args.metrics_key)
    text = httpx.get(args.metrics_url, verify=ctx, timeout=30).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def rounds(args, clients, work):
    """Median aggregate rate over rounds; work(client) -> units produced by one request."""
    async with client_for(args) as warm:
        await asyncio.gather(*(work(warm) for _ in range(clients)))
    rates = []
    for _ in range(args.rounds):
        async with client_for(args) as c:
            await work(c)  # connection up before the clock starts
            t0 = time.perf_counter()

            async def one_client():
                return sum([await work(c) for _ in range(args.requests)])

            units = sum(await asyncio.gather(*(one_client() for _ in range(clients))))
            rates.append(units / (time.perf_counter() - t0))
    return statistics.median(rates)


SECTION = "# API features benchmark"


def report(args):
    import glob
    import os
    runs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(args.dir, "*-decode.json")) +
                                                glob.glob(os.path.join(args.dir, "*-embed.json")))]
    meta = json.load(open(os.path.join(args.dir, "meta.json")))
    lines = [SECTION, "",
             f"{meta['date']}, `{meta['command']} --features`, model {meta['model']}, {meta['threads']} threads, "
             f"load average at start {meta['loadavg']}; airlock {meta['airlock_version']}, "
             f"llama-server {meta['llama_server_version']} (llama-cpp-python {meta['llama_cpp_python']} sdist). "
             "Medians over rounds; each figure's peer is from the same run.", ""]
    for r in runs:
        if r["what"] != "decode":
            continue
        lines += [f"Structured outputs, {r['name']}: streamed chat completions, temperature 0, the same prompt "
                  "free and under a JSON schema (response_format json_schema). Decode = one request's tokens "
                  "after the first / the time from its first token to its last (median over requests); "
                  "aggregate = all tokens / wall time, which also counts prompts and requests: the schema's "
                  "answers are shorter than the free ones, so aggregate favours free text.", "",
                  "| clients | decode free | decode constrained | ratio | aggregate free | aggregate constrained | ratio |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for row in r["rows"]:
            lines.append(f"| {row['clients']} | {row['free_decode']:.1f} | {row['constrained_decode']:.1f} | "
                         f"{row['decode_ratio']:.2f}x | {row['free_tps']:.1f} | {row['constrained_tps']:.1f} | {row['ratio']:.2f}x |")
        grammar = [(row["clients"], row["grammar_ms_per_token"]) for row in r["rows"] if "grammar_ms_per_token" in row]
        if grammar:
            lines += ["", "Time the grammar took per constrained token, from airlock's own counters "
                      "(`airlock_constraint_seconds_total` / `airlock_constrained_tokens_total`; mask and draw): "
                      + ", ".join(f"{ms:.3f} ms at {n} client{'s' if n > 1 else ''}" for n, ms in grammar) + "."]
        lines.append("")
    embeds = {r["name"]: r for r in runs if r["what"] == "embed"}
    if embeds:
        names = sorted(embeds)
        tokens = next((row.get("input_tokens") for r in embeds.values() for row in r["rows"] if row.get("input_tokens")), "?")
        lines += [f"Embeddings: one {tokens}-token input per request (as the server counts it), inputs per second.", "",
                  "| clients | " + " | ".join(names) + (" | airlock / llama-server |" if "llama-server" in embeds and len(names) > 1 else " |"),
                  "|---:|" + "---:|" * len(names) + ("---:|" if "llama-server" in embeds and len(names) > 1 else "")]
        clients = [row["clients"] for row in next(iter(embeds.values()))["rows"]]
        for i, n in enumerate(clients):
            vals = [embeds[name]["rows"][i]["inputs_per_s"] for name in names]
            cells = " | ".join(f"{v:.1f}" for v in vals)
            ratio = ""
            if "llama-server" in embeds and len(names) > 1:
                ours = [embeds[x]["rows"][i]["inputs_per_s"] for x in names if x != "llama-server"][0]
                ratio = f" | {ours / embeds['llama-server']['rows'][i]['inputs_per_s']:.2f}x"
            lines.append(f"| {n} | {cells}{ratio} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.results_md:
        try:
            old = open(args.results_md).read()
        except FileNotFoundError:
            old = ""
        start = old.find(SECTION)
        if start < 0:
            new = old.rstrip() + "\n\n" + text + "\n"
        else:
            end = old.find("\n# ", start + len(SECTION))
            new = old[:start] + text + ("\n" + old[end + 1:] if end >= 0 else "\n")
        open(args.results_md, "w").write(new)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        ap = argparse.ArgumentParser()
        ap.add_argument("what")
        ap.add_argument("--dir", required=True)
        ap.add_argument("--results-md")
        report(ap.parse_args())
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["decode", "embed"])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--metrics-url", help="airlock's /metrics, for the grammar's own time per token")
    ap.add_argument("--metrics-cert")
    ap.add_argument("--metrics-key")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    result = {"name": args.name, "what": args.what, "rows": []}
    for n in [int(x) for x in args.clients.split(",")]:
        if args.what == "decode":
            DECODE_RATES.clear()
            free = asyncio.run(rounds(args, n, lambda c: chat(c, args, False)))
            free_decode = statistics.median(DECODE_RATES)
            DECODE_RATES.clear()
            before = (metric(args, "airlock_constraint_seconds_total"), metric(args, "airlock_constrained_tokens_total"))
            constrained = asyncio.run(rounds(args, n, lambda c: chat(c, args, True)))
            after = (metric(args, "airlock_constraint_seconds_total"), metric(args, "airlock_constrained_tokens_total"))
            constrained_decode = statistics.median(DECODE_RATES)
            row = {"clients": n, "free_tps": free, "constrained_tps": constrained,
                   "ratio": constrained / free, "free_decode": free_decode,
                   "constrained_decode": constrained_decode,
                   "decode_ratio": constrained_decode / free_decode}
            if None not in before + after and after[1] > before[1]:
                row["grammar_ms_per_token"] = 1000 * (after[0] - before[0]) / (after[1] - before[1])
        else:
            rate = asyncio.run(rounds(args, n, lambda c: embed_units(c, args)))
            row = {"clients": n, "inputs_per_s": rate, "input_tokens": asyncio.run(input_tokens(args))}
        result["rows"].append(row)
        print(json.dumps({"name": args.name, **row}), file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(result, f)


async def embed_units(client, args):
    units, _ = await embed(client, args)
    return units


async def input_tokens(args):
    async with client_for(args) as c:
        return (await embed(c, args))[1]


if __name__ == "__main__":
    main()
