#!/usr/bin/env bash
# Benchmark `airlock generate` against llama.cpp (llama-cpp-python) on the same GGUF, same
# threads, in one run; prints a table and writes this model's section of bench/RESULTS.md.
#
#   bench/run.sh                        the default model (scripts/fetch-default-model.sh)
#   bench/run.sh --model FILE.gguf      any GGUF (a bare FILE.gguf argument works too)
#   bench/run.sh --shape llama-1b/q4_k_m  a synthetic model of a real shape (bench/synthetic.py
#                                       --list), written first if absent: see SYNTH_DIR
#   --shape and --model repeat: each model is benchmarked in turn, e.g. issue 12's rows:
#   bench/run.sh --shape mistral-7b/q4_k_m --shape llama-1b/q4_k_m --shape llama-1b/q4_0 \
#       --shape llama-1b/q8_0 --shape llama-1b/q6_k --model default
#
# Rows: prompt 128/512 and a long document (LONG tokens), generation (128 new tokens; 32 for
# files over 3 GB), time to first token, peak RSS, generation with one core busy.
#
# Env: THREADS (2), RUNS (5), LONG (4096; 0 skips the long-document row), LONG_RUNS (runs of the
# long row, default RUNS: a 4096-token prompt takes minutes on a 7B), GEN (new tokens),
# CONTENTION (1; 0 skips that row), LLAMA_CPP_PYTHON (0.3.36), GGUF_PY (0.17.1, writes synthetic
# models), SYNTH_DIR (synthetic models; default $AIRLOCK_CACHE/models/synthetic, as the default
# model's cache), BENCH_PYTHON (a python that already has llama_cpp, gguf and numpy, instead of
# bench/.venv), AIRLOCK_BIN (skip the release build). Needs network access to PyPI once (the
# venv in bench/.venv is reused). llama.cpp runs with use_extra_bufts=False (`--repack 0`): its
# AMX repack path crashes on some CPUs, and the reference outputs were made that way.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
die() { echo "bench/run.sh: $*" >&2; exit 1; }

# What to benchmark, in order: "model:FILE" ("model:default": the default model) or "shape:NAME/TYPE".
todo=()
while (($#)); do
    case "$1" in
        --model) (($# >= 2)) || die "--model needs a file"; todo+=("model:$2"); shift 2 ;;
        --shape) (($# >= 2)) || die "--shape needs NAME/TYPE (e.g. llama-1b/q4_k_m)"; todo+=("shape:$2"); shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) todo+=("model:$1"); shift ;;
    esac
done
((${#todo[@]})) || todo=("model:default")

if [[ -n ${BENCH_PYTHON:-} ]]; then
    py="$BENCH_PYTHON"
    "$py" -c 'import llama_cpp, gguf, numpy' || die "BENCH_PYTHON=$py lacks llama_cpp, gguf or numpy"
else
    venv="$here/.venv"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --upgrade pip
    fi
    if ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
        CMAKE_ARGS="${CMAKE_ARGS:-}" "$venv/bin/pip" install --quiet "llama-cpp-python==${LLAMA_CPP_PYTHON:-0.3.36}"
    fi
    if ! "$venv/bin/python" -c 'import gguf' 2>/dev/null; then
        "$venv/bin/pip" install --quiet "gguf==${GGUF_PY:-0.17.1}"
    fi
    py="$venv/bin/python"
fi

# Resolves one entry of todo to a GGUF path, writing a synthetic model when absent.
resolve() {
    local what="${1#*:}"
    case "$1" in
        model:default) "$root/scripts/fetch-default-model.sh" ;;
        model:*) [[ -f $what ]] || die "no such model file: $what"; echo "$what" ;;
        shape:*)
            [[ $what == */* ]] || die "--shape takes NAME/TYPE, e.g. llama-1b/q4_k_m (shapes: bench/synthetic.py --list)"
            local name="${what%%/*}" type="${what#*/}"
            local cache="${AIRLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}"
            local file="${SYNTH_DIR:-$cache/models/synthetic}/$name-$type.gguf"
            # Writes the file only when absent (same seed, same bytes).
            "$py" "$here/synthetic.py" "$name" --type "$type" --out "$file" >/dev/null \
                || die "bench/synthetic.py $name --type $type failed"
            echo "$file" ;;
    esac
}
models=()
for t in "${todo[@]}"; do models+=("$(resolve "$t")"); done

# AIRLOCK_BIN: use an existing binary (e.g. target/debug/airlock: dependencies and the engine
# are optimised in the dev profile too) instead of a release build.
bin="${AIRLOCK_BIN:-}"
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --release --bin airlock)
    bin="${CARGO_TARGET_DIR:-$root/target}/release/airlock"
fi
for model in "${models[@]}"; do
    args=(--model "$model" --airlock "$bin" --threads "${THREADS:-2}" --runs "${RUNS:-5}"
          --long "${LONG:-4096}" --out "$here/RESULTS.md")
    [[ -z ${LONG_RUNS:-} ]] || args+=(--long-runs "$LONG_RUNS")
    [[ -z ${GEN:-} ]] || args+=(--gen "$GEN")
    [[ ${CONTENTION:-1} == 1 ]] || args+=(--no-contention)
    "$py" "$here/bench.py" "${args[@]}"
done
