#!/usr/bin/env bash
# API benchmark: airlock's OpenAI API against llama.cpp's two OpenAI servers, same
# model, same threads, same machine, in one run. See --help.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/api.sh [--help] [--features] [MODEL.gguf]

Benchmarks streamed chat completions on one GGUF (default: the model that
scripts/fetch-default-model.sh prints) against, in turn:
  llama-cpp-python   python -m llama_cpp.server (llama-cpp-python[server]), one request at a time
  llama-server       llama.cpp's native server, SLOTS parallel slots, built once with cmake from
                     the llama-cpp-python sdist's vendor/llama.cpp (cached in bench/.build/)
  airlock-tmpfs      `airlock serve` over mutual TLS (dev PKI), audit log + state on tmpfs
  airlock-disk       the same with the state dir on disk
Each server starts on a free 127.0.0.1 port, is waited for, loaded by bench/api_load.py
(CLIENTS concurrent streaming clients), and stopped. Prints a table (TTFT p50/p95 at the
lowest client count, aggregate tokens/s per client count, ratios, audit tmpfs vs disk) and
replaces the "API benchmark" section of bench/RESULTS.md (the rest of the file is kept).

Environment (defaults in brackets):
  CLIENTS=1,4,8        client counts to run (the first one gives TTFT)
  ROUNDS=3             measured rounds per client count
  REQUESTS=2           requests each client sends back to back per round (at least)
  MIN_SAMPLES=20       ...raised so that each client count has at least this many requests
                       (1 client, 3 rounds: 7 a round), for TTFT p50/p95 and the audit comparison
  MAX_TOKENS=64        max_tokens per request (llama-server also gets ignore_eos)
  PROMPT=...           user message (default: 42 tokens with SmolLM2's chat template)
  THREADS=2            compute threads of every server
  SLOTS=8              llama-server -np, airlock [engine] max_batch
  CTX=auto             context: SLOTS x 256-token-rounded (128 + MAX_TOKENS) (llama-server splits
                       it across slots; the same for llama-cpp-python)
  SERVERS="llama-cpp-python llama-server airlock-tmpfs airlock-disk"   which, in this order
  AIRLOCK_BIN          airlock binary (default: nice cargo build --release, target/release/airlock)
  LLAMA_SERVER_BIN     llama-server binary (default: built from the sdist, cached)
  LLAMA_CPP_PYTHON=0.3.36   llama-cpp-python version (venv bench/.venv, sdist, llama-server)
  TMPFS_DIR=/dev/shm   tmpfs under which the tmpfs state dir is made (must be tmpfs)
  DISK_DIR=bench/.build   directory on disk under which the disk state dir is made
  PROMPT_CACHE=1       0 = send cache_prompt: false to llama-server and run airlock with
                       [engine] prefix_cache = false (TTFT without prompt caches; llama-cpp-python
                       always reuses the previous prompt's prefix)
  METRICS_INTERVAL=0.25    seconds between /metrics samples of airlock (batch size); 0 = off
  RESULTS=bench/RESULTS.md  where to write the section; "-" = print only
  MODEL_LICENSE        licence for airlock's bundle of the model, where the GGUF states none
                       (bench/synthetic.py's files: random weights, e.g. MODEL_LICENSE=apache-2.0)
  KEEP=0               1 = keep the run directory (raw JSON per server, server logs)
Needs PyPI once (venv, sdist, cmake if none is installed); everything runs on 127.0.0.1.

--features benchmarks structured outputs and embeddings instead (bench/api_features.py), on
SERVERS="llama-server airlock-tmpfs" by default:
  airlock        chat completions at CLIENTS=1,8, free text then the same prompt under a JSON
                 schema (response_format): tokens/s of each, the ratio, and the grammar's mask
                 cost per token implied at one client; then /v1/embeddings of one 64-token
                 input per request, inputs/s
  llama-server   the same embeddings load, started with --embeddings --pooling mean
and replaces the "API features benchmark" section of bench/RESULTS.md.

Examples:
  bench/api.sh                # full run: ~10 min on a quiet 2-core machine once built (the first
                              # run also builds airlock and llama-server: ~20 min each on 2 cores)
  ROUNDS=1 REQUESTS=1 MIN_SAMPLES=1 CLIENTS=1,8 RESULTS=- bench/api.sh   # quick check of the script
  SERVERS="airlock-tmpfs airlock-disk" AIRLOCK_BIN=target/release/airlock bench/api.sh
EOF
}

FEATURES=0
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    --features) FEATURES=1; shift ;;
    -*) echo "api.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
model="$(realpath "${1:-$("$root/scripts/fetch-default-model.sh")}")"
[ -f "$model" ] || { echo "api.sh: no model at $model" >&2; exit 1; }

if [ "$FEATURES" = 1 ]; then
    CLIENTS="${CLIENTS:-1,8}"
    SERVERS="${SERVERS:-llama-server airlock-tmpfs}"
    MAX_TOKENS="${MAX_TOKENS:-160}"  # the schema's answer is ~80 tokens; free text runs to the limit
fi
CLIENTS="${CLIENTS:-1,4,8}"
ROUNDS="${ROUNDS:-3}"
REQUESTS="${REQUESTS:-2}"
MIN_SAMPLES="${MIN_SAMPLES:-20}"
MAX_TOKENS="${MAX_TOKENS:-64}"
THREADS="${THREADS:-2}"
SLOTS="${SLOTS:-8}"
CTX="${CTX:-$((SLOTS * ((128 + MAX_TOKENS + 255) / 256 * 256)))}"
SERVERS="${SERVERS:-llama-cpp-python llama-server airlock-tmpfs airlock-disk}"
LLAMA_CPP_PYTHON="${LLAMA_CPP_PYTHON:-0.3.36}"
TMPFS_DIR="${TMPFS_DIR:-/dev/shm}"
DISK_DIR="${DISK_DIR:-$here/.build}"
METRICS_INTERVAL="${METRICS_INTERVAL:-0.25}"
PROMPT_CACHE="${PROMPT_CACHE:-1}"
RESULTS="${RESULTS:-$here/RESULTS.md}"
KEEP="${KEEP:-0}"
MODEL_NAME="smollm2-bench"
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"
started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
t_begin=$SECONDS

log() { echo "api.sh: $*" >&2; }
die() { log "$*"; exit 1; }
has_server() { [[ " $SERVERS " == *" $1 "* ]]; }
fstype() { df --output=fstype "$1" | tail -n 1; }

# --- Python: venv with llama-cpp-python[server] and httpx (the load generator) -------------
venv="$here/.venv"
py="$venv/bin/python"
if [ ! -x "$py" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
fi
if ! "$py" -c "import llama_cpp, llama_cpp.server.app, httpx, sys; \
        sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_PYTHON')" 2>/dev/null; then
    log "installing llama-cpp-python[server]==$LLAMA_CPP_PYTHON and httpx into $venv"
    "$venv/bin/pip" install --quiet "llama-cpp-python[server]==$LLAMA_CPP_PYTHON" httpx
fi

# --- llama-server: built once from the sdist's vendor/llama.cpp ----------------------------
build="$here/.build"
mkdir -p "$build"
llama_server="${LLAMA_SERVER_BIN:-$build/llama-server-$LLAMA_CPP_PYTHON/llama-server}"
if has_server llama-server && [ ! -x "$llama_server" ]; then
    [ -z "${LLAMA_SERVER_BIN:-}" ] || die "LLAMA_SERVER_BIN=$LLAMA_SERVER_BIN is not executable"
    sdist="$build/llama_cpp_python-$LLAMA_CPP_PYTHON.tar.gz"
    if [ ! -f "$sdist" ]; then
        log "downloading the llama-cpp-python $LLAMA_CPP_PYTHON sdist"
        # --no-binary for this package only: its build dependencies may come as wheels.
        "$venv/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python \
            -d "$build" "llama-cpp-python==$LLAMA_CPP_PYTHON"
    fi
    src="$build/llama_cpp_python-$LLAMA_CPP_PYTHON"
    [ -f "$src/vendor/llama.cpp/CMakeLists.txt" ] || tar -xzf "$sdist" -C "$build"
    cmake_bin="$(command -v cmake || true)"
    if [ -z "$cmake_bin" ]; then
        [ -x "$venv/bin/cmake" ] || "$venv/bin/pip" install --quiet cmake
        cmake_bin="$venv/bin/cmake"
    fi
    log "building llama-server from $src/vendor/llama.cpp (once; several minutes)"
    # No network at build or run time: no web UI download, no HTTPS client, no curl.
    nice -n 10 "$cmake_bin" -S "$src/vendor/llama.cpp" -B "$build/llama.cpp-build" \
        -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
        >"$build/llama.cpp-cmake.log" 2>&1 || die "cmake configure failed: see $build/llama.cpp-cmake.log"
    nice -n 10 "$cmake_bin" --build "$build/llama.cpp-build" --target llama-server -j "$(nproc)" \
        >"$build/llama.cpp-build.log" 2>&1 || die "llama-server build failed: see $build/llama.cpp-build.log"
    mkdir -p "$(dirname "$llama_server")"
    cp "$build/llama.cpp-build/bin/llama-server" "$llama_server.tmp"
    mv "$llama_server.tmp" "$llama_server"
    rm -rf "$build/llama.cpp-build" "$src"  # ~300 MB; the binary is all that is needed
fi

# --- airlock ------------------------------------------------------------------------------
airlock="${AIRLOCK_BIN:-}"
if [[ " $SERVERS " == *" airlock-"* ]]; then
    if [ -z "$airlock" ]; then
        (cd "$root" && nice -n 10 cargo build --release --bin airlock)
        airlock="$root/target/release/airlock"
    fi
    airlock="$(realpath "$airlock")"
    [ -x "$airlock" ] || die "no airlock binary at $airlock"
fi

# --- run directory, process bookkeeping ----------------------------------------------------
run="$(mktemp -d "$build/api-run.XXXXXX")"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "${tmpfs_state:-}" "${disk_state:-}"
    if [ "$KEEP" = 1 ]; then log "run directory kept: $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME CMD... : runs CMD in the background, logging to $run/NAME.log; sets $pid.
start() {
    local name="$1"
    shift
    "$@" >"$run/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
}

# stop PID: SIGTERM, then SIGKILL after 30 s.
stop() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
        [ "$i" -lt 300 ] || kill -KILL "$pid" 2>/dev/null || true
    done
    wait "$pid" 2>/dev/null || true
    local kept=()
    for p in "${pids[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
    pids=("${kept[@]+"${kept[@]}"}")
}

wait_ready() {
    local name="$1"
    shift
    if ! "$py" "$here/api_load.py" wait --pid "$pid" "$@"; then
        tail -n 20 "$run/$name.log" >&2 || true
        die "$name did not become ready (log above)"
    fi
}

load_args=(--clients "$CLIENTS" --rounds "$ROUNDS" --requests "$REQUESTS" --min-samples "$MIN_SAMPLES"
           --max-tokens "$MAX_TOKENS"
           --model "$MODEL_NAME")
[ -z "${PROMPT:-}" ] || load_args+=(--prompt "$PROMPT")

# --- llama-cpp-python's server ---------------------------------------------------------------
# Its settings have no use_extra_bufts: patch the default in, as bench.py passes it (llama.cpp's
# AMX repack path crashes on some CPUs; the reference outputs were made without it).
# --interrupt_requests False: by default a new request cancels the one streaming; the figure
# we compare with is for requests serialized behind its lock.
LCP_SERVER='import sys, llama_cpp
init = llama_cpp.Llama.__init__
def no_repack(self, *args, **kwargs):
    kwargs.setdefault("use_extra_bufts", False)
    init(self, *args, **kwargs)
llama_cpp.Llama.__init__ = no_repack
from llama_cpp.server.__main__ import main
main()'

run_llama_cpp_python() {
    local port
    port="$(free_port)"
    log "llama-cpp-python server on 127.0.0.1:$port"
    start llama-cpp-python "$py" -c "$LCP_SERVER" --model "$model" --model_alias "$MODEL_NAME" \
        --host 127.0.0.1 --port "$port" --n_threads "$THREADS" --n_threads_batch "$THREADS" \
        --n_ctx "$CTX" --n_batch 512 --interrupt_requests False
    wait_ready llama-cpp-python --url "http://127.0.0.1:$port/v1/models"
    "$py" "$here/api_load.py" run --name llama-cpp-python --label "llama-cpp-python server" \
        --base-url "http://127.0.0.1:$port" "${load_args[@]}" --out "$run/llama-cpp-python.json"
    stop "$pid"
}

run_llama_server() {
    local port
    port="$(free_port)"
    log "llama-server ($SLOTS slots) on 127.0.0.1:$port"
    local embed=()
    [ "$FEATURES" = 0 ] || embed=(--embeddings --pooling mean -ub 512)
    start llama-server "$llama_server" -m "$model" -a "$MODEL_NAME" --host 127.0.0.1 --port "$port" \
        -t "$THREADS" -tb "$THREADS" -c "$CTX" -np "$SLOTS" --no-repack --no-webui "${embed[@]}"
    wait_ready llama-server --url "http://127.0.0.1:$port/health"
    if [ "$FEATURES" = 1 ]; then
        "$py" "$here/api_features.py" embed --name llama-server --base-url "http://127.0.0.1:$port" \
            --model "$MODEL_NAME" --clients "$CLIENTS" --rounds "$ROUNDS" --requests "$REQUESTS" \
            --out "$run/llama-server-embed.json"
        stop "$pid"
        return
    fi
    local cache=()
    [ "$PROMPT_CACHE" = 1 ] || cache=(--extra cache_prompt=false)
    "$py" "$here/api_load.py" run --name llama-server --label "llama-server ($SLOTS slots)" \
        --base-url "http://127.0.0.1:$port" "${load_args[@]}" --ignore-eos "${cache[@]}" \
        --out "$run/llama-server.json"
    stop "$pid"
}

# airlock: the CLI steps of appliance/tests/service (dev PKI, publisher key, signed bundle,
# policy, install + activate), then `airlock serve` over mTLS with egress lockdown on.
airlock_prepared=0
prepare_airlock() {
    [ "$airlock_prepared" = 0 ] || return 0
    "$airlock" pki dev --out "$run/pki" >/dev/null
    "$airlock" keys generate --out "$run/keys" --name bench-publisher >/dev/null
    "$airlock" bundle create --model "$model" --name "$MODEL_NAME" --version 1.0.0 --sequence 1 \
        ${MODEL_LICENSE:+--license "$MODEL_LICENSE"} --expires 2099-01-01 \
        --out "$run/model.airlock" >/dev/null
    "$airlock" bundle sign "$run/model.airlock" --key "$run/keys/bench-publisher.key" >/dev/null
    airlock_prepared=1
}

run_airlock() {
    local name="$1" state="$2" port policy
    prepare_airlock
    port="$(free_port)"
    policy="$run/$name.toml"
    cat >"$policy" <<EOF
# Written by bench/api.sh.
state_dir = "$state"

[server]
listen = ["127.0.0.1:$port"]
shutdown_grace_secs = 5

[tls]
cert = "pki/server.crt"
key = "pki/server.key"
client_ca = ["pki/ca.crt"]

[limits]
max_completion_tokens = $((MAX_TOKENS > 1024 ? MAX_TOKENS : 1024))
queue_depth = 64
requests_per_minute = 0

[engine]
threads = $THREADS
max_batch = $SLOTS
prefix_cache = $([ "${PROMPT_CACHE:-1}" = 0 ] && echo false || echo true)

[egress]
lockdown = "enforce"

[trust]
threshold = 1
allowed_names = ["$MODEL_NAME"]

[[trust.publisher]]
name = "bench-publisher"
key_file = "keys/bench-publisher.pub"

[[identity]]
roles = ["user"]
match = { cn = "user" }

[[identity]]
roles = ["operator"]
match = { cn = "operator" }
EOF
    "$airlock" bundle install "$run/model.airlock" --config "$policy" --activate >/dev/null
    log "$name: airlock serve on 127.0.0.1:$port, state $state ($(fstype "$state"))"
    start "$name" env AIRLOCK_LOG=warn "$airlock" serve --config "$policy"
    local tls=(--ca "$run/pki/ca.crt" --cert "$run/pki/user.crt" --key "$run/pki/user.key")
    wait_ready "$name" --url "https://127.0.0.1:$port/readyz" "${tls[@]}"
    if [ "$FEATURES" = 1 ]; then
        local what
        for what in decode embed; do
            "$py" "$here/api_features.py" "$what" --name "$name" --base-url "https://127.0.0.1:$port" \
                --model "$MODEL_NAME" --clients "$CLIENTS" --rounds "$ROUNDS" --requests "$REQUESTS" \
                --max-tokens "$MAX_TOKENS" "${tls[@]}" --metrics-url "https://127.0.0.1:$port/metrics" \
                --metrics-cert "$run/pki/operator.crt" --metrics-key "$run/pki/operator.key" \
                --out "$run/$name-$what.json"
        done
        stop "$pid"
        return
    fi
    local metrics=()
    if [ "$METRICS_INTERVAL" != 0 ]; then
        metrics=(--metrics-url "https://127.0.0.1:$port/metrics" --metrics-interval "$METRICS_INTERVAL")
    fi
    "$py" "$here/api_load.py" run --name "$name" --label "airlock (audit on ${name#airlock-})" \
        --base-url "https://127.0.0.1:$port" "${load_args[@]}" "${tls[@]}" "${metrics[@]}" \
        --metrics-cert "$run/pki/operator.crt" --metrics-key "$run/pki/operator.key" \
        --out "$run/$name.json"
    stop "$pid"
}

for server in $SERVERS; do
    case "$server" in
        llama-cpp-python) run_llama_cpp_python ;;
        llama-server) run_llama_server ;;
        airlock-tmpfs)
            [ "$(fstype "$TMPFS_DIR")" = tmpfs ] || die "TMPFS_DIR=$TMPFS_DIR is not on tmpfs"
            tmpfs_state="$(mktemp -d "$TMPFS_DIR/airlock-bench.XXXXXX")"
            run_airlock airlock-tmpfs "$tmpfs_state"
            ;;
        airlock-disk)
            mkdir -p "$DISK_DIR"
            [ "$(fstype "$DISK_DIR")" != tmpfs ] || die "DISK_DIR=$DISK_DIR is on tmpfs"
            disk_state="$(mktemp -d "$(realpath "$DISK_DIR")/airlock-bench-state.XXXXXX")"
            run_airlock airlock-disk "$disk_state"
            ;;
        *) die "unknown server '$server' in SERVERS" ;;
    esac
done

# --- report -------------------------------------------------------------------------------
fs_of() { df --output=fstype,source "$1" | tail -n 1 | awk '{ print ($1 == $2 ? $1 : $1 " (" $2 ")") }'; }
llama_server_version=""
if has_server llama-server; then
    llama_server_version="$("$llama_server" --version 2>&1 | sed -n 's/^version: //p' | head -n 1)"
fi
airlock_version=""
if [ -n "$airlock" ]; then
    airlock_version="$("$airlock" --version 2>/dev/null | head -n 1), git $(git -C "$root" rev-parse --short HEAD)"
fi
cmd="bench/api.sh"
for v in CLIENTS ROUNDS REQUESTS MIN_SAMPLES MAX_TOKENS THREADS SLOTS PROMPT_CACHE; do
    def="$(usage | sed -n "s/^  $v=\([^ ]*\).*/\1/p" | head -n 1)"
    [ "${!v}" = "$def" ] || cmd="$v=${!v} $cmd"
done
elapsed=$((SECONDS - t_begin))
export started_at load_at_start model THREADS SLOTS CTX PROMPT_CACHE LLAMA_CPP_PYTHON llama_server_version airlock_version cmd elapsed
export airlock_rel="${airlock#"$root"/}"
tmpfs_fs="$(fs_of "$TMPFS_DIR")"
disk_fs="$(fs_of "$DISK_DIR")"
export tmpfs_fs disk_fs
"$py" -c 'import json, os
e = os.environ
print(json.dumps({"date": e["started_at"], "loadavg": e["load_at_start"], "model": os.path.basename(e["model"]),
    "threads": e["THREADS"], "llama_server_slots": e["SLOTS"], "ctx": e["CTX"], "llama_cpp_python": e["LLAMA_CPP_PYTHON"],
    "llama_server_version": e["llama_server_version"] or "?", "airlock_version": e["airlock_version"] or "?",
    "airlock_bin": e["airlock_rel"] or "?", "tmpfs_fs": e["tmpfs_fs"], "disk_fs": e["disk_fs"],
    "command": e["cmd"], "elapsed_s": int(e["elapsed"]), "prompt_cache": e["PROMPT_CACHE"] == "1"}))' >"$run/meta.json"
report=(--dir "$run")
[ "$RESULTS" = - ] || report+=(--results-md "$RESULTS")
if [ "$FEATURES" = 1 ]; then
    "$py" "$here/api_features.py" report "${report[@]}"
else
    "$py" "$here/api_load.py" report "${report[@]}"
fi
log "done in $((SECONDS - t_begin)) s"
