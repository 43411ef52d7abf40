#!/usr/bin/env bash
# Benchmark `airlock generate` against llama.cpp (llama-cpp-python) on the same GGUF, same
# threads, in one run; prints a table and writes bench/RESULTS.md.
#
#   bench/run.sh [MODEL.gguf]      (default: scripts/fetch-default-model.sh's model)
#
# Env: THREADS (2), RUNS (5), LLAMA_CPP_PYTHON (0.3.36), AIRLOCK_BIN (skip the release build). Needs network access to PyPI once
# (the venv in bench/.venv is reused). llama.cpp runs with use_extra_bufts=False (`--repack 0`):
# its AMX repack path crashes on some CPUs, and the reference outputs were made that way.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
model="${1:-$("$root/scripts/fetch-default-model.sh")}"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
fi
if ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    CMAKE_ARGS="${CMAKE_ARGS:-}" "$venv/bin/pip" install --quiet "llama-cpp-python==${LLAMA_CPP_PYTHON:-0.3.36}"
fi
# AIRLOCK_BIN: use an existing binary (e.g. target/debug/airlock: dependencies and the engine
# are optimised in the dev profile too) instead of a release build.
bin="${AIRLOCK_BIN:-}"
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --release --bin airlock)
    bin="$root/target/release/airlock"
fi
exec "$venv/bin/python" "$here/bench.py" --model "$model" --airlock "$bin" \
    --threads "${THREADS:-2}" --runs "${RUNS:-5}" --out "$here/RESULTS.md"
