#!/usr/bin/env bash
# First run of a `cuda` build on an NVIDIA machine (issue 13): what the machine offers the
# runtime, then the README's acceptance prompt on --device cuda and --device cpu, texts compared.
#
# Usage: scripts/gpu-smoke.sh AIRLOCK_BIN MODEL_GGUF [MAX_TOKENS]
#   AIRLOCK_BIN  an `airlock` built with --features cuda (scripts/build-gpu.sh)
#   MODEL_GGUF   the default model (scripts/fetch-default-model.sh prints its path), or - to
#                report only what the machine offers
#   MAX_TOKENS   for the acceptance prompt (default 64)
# Needs no Rust and no network: made to run on a GPU machine that has neither. Prints a
# report on stdout; exit 0 when both devices produced the same text, 1 otherwise.
#
# What the runtime needs, from cubecl-cuda 0.11.3's source: libcuda.so (the driver) through
# cudarc's dynamic loading, and -- since burn 0.22.1 does not turn on cubecl-cuda's `cpp`
# feature -- cubecl's LLVM NVPTX backend, which emits PTX in-process (the driver JITs it) and
# links libdevice.10.bc for math calls (exp, tanh, ...), found under $CUDA_PATH or
# /usr/local/cuda, /opt/cuda, /usr/lib/cuda, /usr (nvvm/libdevice/). NVRTC is not loaded.
set -uo pipefail

[ $# -ge 2 ] || { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
bin=$1 model=$2 max_tokens=${3:-64}
prompt="Write a Python function that returns the square of a number."

section() { printf '\n=== %s\n' "$*"; }

section "machine"
uname -srm
nvidia-smi || echo "nvidia-smi failed"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
section "driver and CUDA libraries"
ldconfig -p | grep -E 'libcuda\.so|libnvrtc|libnvidia-ptxjitcompiler' || echo "(none in ldconfig)"
ls -d /usr/local/cuda* 2>/dev/null && for d in /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib; do
  [ -d "$d" ] && ls "$d"/*nvrtc* 2>/dev/null
done
command -v nvcc >/dev/null && nvcc --version | tail -2
section "libdevice.10.bc"
found=$(find / -xdev -name libdevice.10.bc -not -path '/proc/*' 2>/dev/null)
echo "${found:-(none)}"
root=""
for r in "${CUDA_PATH:-}" /usr/local/cuda /opt/cuda /usr/lib/cuda /usr; do
  [ -n "$r" ] && [ -f "$r/nvvm/libdevice/libdevice.10.bc" ] && { root=$r; break; }
done
if [ -n "$root" ]; then
  echo "cubecl-llvm will use $root/nvvm/libdevice/libdevice.10.bc"
elif [ -n "$found" ]; then
  # cubecl-llvm looks for <root>/nvvm/libdevice/libdevice.10.bc.
  export CUDA_PATH
  CUDA_PATH=$(dirname "$(dirname "$(dirname "$(head -1 <<<"$found")")")")
  echo "none in the default roots; CUDA_PATH=$CUDA_PATH"
else
  echo "no libdevice.10.bc: kernels calling math functions will fail to compile"
fi
section "binary"
ls -l "$bin"
ldd "$bin" 2>&1 | sed 's/^[[:space:]]*/  /'
"$bin" --version 2>&1
[ "$model" != "-" ] || exit 0
section "model"
ls -l "$model"
sha256sum "$model"

run() { # device out_file extra-args...
  local dev=$1 out=$2; shift 2
  echo "\$ airlock generate --device $dev --chat --temperature 0 --max-tokens $max_tokens $*"
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" generate --device "$dev" --model "$model" --chat --prompt "$prompt" \
    --temperature 0 --max-tokens "$max_tokens" "$@" >"$out" 2>"$out.err"
  local rc=$?
  t1=$(date +%s.%N)
  echo "exit $rc, wall $(python3 -c "print(round($t1-$t0,2))" 2>/dev/null || echo ?) s (process: load + kernel compilation + generation)"
  echo "--- text:"; cat "$out"; echo
  echo "--- stderr:"; cat "$out.err"
  return $rc
}

tmp=$(mktemp -d)
section "cuda"
run cuda "$tmp/cuda.txt"
section "cuda, second process (same work again)"
run cuda "$tmp/cuda2.txt"
section "cpu"
run cpu "$tmp/cpu.txt"
section "decode speed, 128 tokens past end-of-text (--ignore-eos)"
for dev in cuda cpu; do
  "$bin" generate --device "$dev" --model "$model" --prompt "Once upon a time" \
    --temperature 0 --max-tokens 128 --ignore-eos >/dev/null 2>"$tmp/speed-$dev.err"
  echo "$dev (exit $?): $(tail -1 "$tmp/speed-$dev.err")"
done
section "verdict"
if [ -s "$tmp/cuda.txt" ] && cmp -s "$tmp/cuda.txt" "$tmp/cpu.txt"; then
  echo "SAME TEXT on cuda and cpu"
  exit 0
fi
echo "TEXTS DIFFER (or a run failed)"
diff <(cat "$tmp/cuda.txt") <(cat "$tmp/cpu.txt")
exit 1
