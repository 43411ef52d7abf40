#!/usr/bin/env bash
# GPU benchmark (issue 13): airlock built with --features cuda against llama.cpp CUDA on the
# same card and the same files, both in one run. Made for a GPU machine with neither network
# nor Rust: everything it needs is carried (the binary, llama.cpp's source, the gguf package,
# a tokenizer GGUF) and the models are made there.
#
# Usage: bench/gpu.sh --airlock BIN --llama SRC --tokenizer GGUF [options]
#   --airlock BIN     airlock built by scripts/build-gpu.sh --features cuda
#   --llama SRC       llama.cpp's source: a directory or a .tar.xz of one (the sdist of
#                     llama-cpp-python==0.3.36 holds it under vendor/llama.cpp); built once with
#                     CUDA into SRC/build-cuda (about 6 minutes on 16 cores)
#   --tokenizer GGUF  tokenizer for the synthetic models: bench/synthetic.py --tokenizer-out
#   --models DIR      where the synthetic models are written and reused (default: ./gpu-models)
#   --shapes LIST     SHAPE:TYPE,... (default: mistral-7b:q4_k_m,llama-1b:q4_k_m,smollm2-135m:q4_1)
#   --model GGUF      also measure this existing file (repeatable; e.g. the real default model)
#   --runs N          runs per engine and model, medians reported (default: 3)
#   --pylib DIR       prepended to PYTHONPATH (the gguf package and its pure-Python needs)
#   --prepare         build llama.cpp and make the models, print their paths, measure nothing
# Env: BUILD_JOBS (llama.cpp build parallelism, default: all cores).
#
# Measures, per model: decode tg128 (llama-bench -n 128; airlock: 128 new tokens after a
# 512-token prompt) and prompt pp512 (llama-bench -p 512; airlock: its prompt rate) and
# airlock's time to first token, llama.cpp with flash attention off and on. Prints one JSON
# line per measurement and a Markdown table; a model airlock refuses (e.g. its GPU self-check
# failed) is a row saying why, and the run goes on. Exit 0 when every model ran, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }
airlock="" llama="" tokenizer="" models="$PWD/gpu-models" runs=3 pylib="" prepare=0 extra=()
shapes="mistral-7b:q4_k_m,llama-1b:q4_k_m,smollm2-135m:q4_1"
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage 0 ;;
    --airlock) airlock=$2; shift ;;
    --llama) llama=$2; shift ;;
    --tokenizer) tokenizer=$2; shift ;;
    --models) models=$2; shift ;;
    --shapes) shapes=$2; shift ;;
    --runs) runs=$2; shift ;;
    --model) [ -f "$2" ] || { echo "gpu.sh: --model: no file at '$2'" >&2; exit 2; }
      extra+=("$2"); shift ;;
    --pylib) pylib=$2; shift ;;
    --prepare) prepare=1 ;;
    *) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
die() { echo "gpu.sh: $*" >&2; exit 1; }
[ "$prepare" = 1 ] || [ -x "$airlock" ] || die "--airlock: no executable at '${airlock}'"
[ -e "$llama" ] || die "--llama: no llama.cpp source at '${llama}'"
[ -f "$tokenizer" ] || die "--tokenizer: no file at '${tokenizer}'"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs: expected a positive integer, got '$runs'"
[ -n "$pylib" ] && export PYTHONPATH="$pylib${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$models"
log() { echo "gpu.sh: $*" >&2; }

card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1) \
  || die "nvidia-smi failed: no NVIDIA driver here"
log "card: $card"

# llama.cpp with CUDA, once.
if [[ $llama == *.tar.xz ]]; then
  src="$models/llama.cpp"
  [ -d "$src" ] || { mkdir -p "$src" && tar xJf "$llama" -C "$src" --strip-components=1; }
else
  src=$llama
fi
bin="$src/build-cuda/bin"
build_llama() {
  cmake -S "$src" -B "$src/build-cuda" -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DCMAKE_BUILD_TYPE=Release >"$models/llama-cmake.log" 2>&1 || return 1
  cmake --build "$src/build-cuda" -j "${BUILD_JOBS:-$(nproc)}" --target llama-bench llama-quantize \
    >"$models/llama-build.log" 2>&1
}
build=""
if [ ! -x "$bin/llama-bench" ] || [ ! -x "$bin/llama-quantize" ]; then
  log "building llama.cpp (CUDA, sm_90) in $src/build-cuda, meanwhile writing the F16 models"
  build_llama &
  build=$!
fi

# Models: F16 with random weights (bench/synthetic.py, while llama.cpp builds), then quantized
# by llama.cpp's own tool.
files=() f16s=()
for spec in ${shapes//,/ }; do
  shape=${spec%%:*} type=${spec#*:}
  out="$models/$shape-$type.gguf"
  files+=("$out")
  if [ -f "$out" ]; then f16s+=(""); continue; fi
  log "writing the F16 of $shape"
  f16s+=("$(python3 bench/synthetic.py "$shape" --type f16 --out-dir "$models" --tokenizer-from "$tokenizer" | tail -1)") \
    || die "bench/synthetic.py failed on $shape"
done
if [ -n "$build" ]; then
  wait "$build" || die "llama.cpp build failed: $models/llama-cmake.log, $models/llama-build.log"
fi
for i in "${!files[@]}"; do
  [ -n "${f16s[$i]}" ] || continue
  out=${files[$i]} type=${out##*-} type=${type%.gguf}
  log "quantizing $out"
  "$bin/llama-quantize" "${f16s[$i]}" "$out.partial" "${type^^}" >"$models/quantize.log" 2>&1 \
    || die "llama-quantize failed: $models/quantize.log"
  mv "$out.partial" "$out" && rm -f "${f16s[$i]}"
done
files+=("${extra[@]}")
if [ "$prepare" = 1 ]; then
  printf '%s\n' "${files[@]}"
  exit 0
fi

# A prompt of about 512 tokens for airlock (its timing line reports the exact count).
prompt=$(python3 -c 'print(" ".join(["The quick brown fox jumps over the lazy dog."] * 50))')

failed=0
median() { python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.1f}")' "$@"; }
rows=()
for m in "${files[@]}"; do
  name=$(basename "$m" .gguf)
  # llama.cpp: every layer on the GPU, flash attention off and on, RUNS repetitions.
  lj=$("$bin/llama-bench" -m "$m" -ngl 99 -fa 0,1 -p 512 -n 128 -r "$runs" -o json 2>"$models/llama-bench.log") \
    || die "llama-bench failed on $m: $models/llama-bench.log"
  read -r l_tg0 l_tg1 l_pp0 l_pp1 < <(python3 -c '
import json, sys
rs = json.loads(sys.stdin.read())
def f(fa, prompt):
    for r in rs:
        if bool(r.get("flash_attn")) == fa and (r["n_prompt"] > 0) == prompt:
            return r["avg_ts"]
    return float("nan")
print(f(False, False), f(True, False), f(False, True), f(True, True))' <<<"$lj")
  echo "{\"engine\":\"llama.cpp\",\"model\":\"$name\",\"tg128_fa0\":$l_tg0,\"tg128_fa1\":$l_tg1,\"pp512_fa0\":$l_pp0,\"pp512_fa1\":$l_pp1}"
  gen=() pp=() ttft=() n="" refused=""
  for _ in $(seq "$runs"); do
    if ! "$airlock" generate --device cuda --model "$m" --prompt "$prompt" --max-tokens 128 \
      --ignore-eos --temperature 0 >/dev/null 2>"$models/airlock.err"; then
      # A refused model (e.g. a failed self-check) is a result: record why and go on.
      refused=$({ grep -m1 'self-check' "$models/airlock.err" || head -1 "$models/airlock.err"; } \
        | sed 's/^ *//' | tr -d '"\\|' | cut -c1-300)
      break
    fi
    line=$(grep '^timing:' "$models/airlock.err" | tail -1)
    read -r n a_pp a_tg a_ttft < <(sed -nE \
      's/.*prompt_tokens=([0-9]+) prompt_tps=([0-9.]+) gen_tokens=[0-9]+ gen_tps=([0-9.]+) ttft_ms=([0-9.]+).*/\1 \2 \3 \4/p' \
      <<<"$line")
    [ -n "${a_ttft:-}" ] || die "no timing line from airlock on $m"
    gen+=("$a_tg") pp+=("$a_pp") ttft+=("$a_ttft")
  done
  if [ -n "$refused" ]; then
    failed=1
    echo "{\"engine\":\"airlock\",\"model\":\"$name\",\"refused\":\"$refused\"}"
    rows+=("| $name | refused: $refused | $l_tg0 / $l_tg1 | – | – | $l_pp0 / $l_pp1 | – | – |")
    continue
  fi
  a_tg=$(median "${gen[@]}") a_pp=$(median "${pp[@]}") a_ttft=$(median "${ttft[@]}")
  echo "{\"engine\":\"airlock\",\"model\":\"$name\",\"tg128\":$a_tg,\"prompt_tps\":$a_pp,\"prompt_tokens\":$n,\"ttft_ms\":$a_ttft}"
  rows+=("$(python3 -c 'import sys
name, atg, ltg0, ltg1, app, lpp0, lpp1, n, ttft = sys.argv[1:]
r = lambda a, b: f"{float(a) / float(b):.2f}×"
print(f"| {name} | {float(atg):.1f} | {float(ltg0):.1f} / {float(ltg1):.1f} | {r(atg, ltg1)} "
      f"| {float(app):.0f} ({n} tok) | {float(lpp0):.0f} / {float(lpp1):.0f} | {r(app, lpp1)} | {float(ttft):.0f} |")' \
    "$name" "$a_tg" "$l_tg0" "$l_tg1" "$a_pp" "$l_pp0" "$l_pp1" "$n" "$a_ttft")")
done

echo
echo "Card: $card. Medians of $runs runs; llama.cpp = llama-bench (CUDA, -ngl 99), flash attention off / on; ratios against flash attention on."
echo
echo "| model | airlock decode tok/s | llama.cpp decode tg128 | ratio | airlock prompt tok/s | llama.cpp pp512 | ratio | airlock TTFT ms |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
exit "$failed"
