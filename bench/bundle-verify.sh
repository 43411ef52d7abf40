#!/usr/bin/env bash
# Bundle verification throughput vs sha256sum on the same 1 GiB synthetic bundle, in one
# run (target: >= 0.8x). Usage: bench/bundle-verify.sh [SIZE_MIB] [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --release -p airlock-bundle --example verify_throughput -- "${1:-1024}" "${2:-${TMPDIR:-/tmp}}"
