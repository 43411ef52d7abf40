#!/usr/bin/env bash
# Build the `airlock` release binary with a GPU backend, with the network cut (issue 13).
#
# The `cuda` feature's build needs two things fetched beforehand, by the only steps that use
# the network: the static LLVM SDK (scripts/provision-llvm.sh) and the crates (cargo fetch).
# This script then runs `cargo build --offline` inside a network namespace that has no
# interface but a downed loopback (`unshare -n`), so a build script that tried to download
# (tracel-llvm-bundler's, if the SDK were missing) fails instead of reaching out: a successful
# build here is the proof that the build is offline.
#
# Usage: scripts/build-gpu.sh [--features LIST] [--fetch] [--no-netns]
#   --features LIST  cargo features of `appliance` (default: cuda; e.g. cuda,wgpu or wgpu)
#   --fetch          run `cargo fetch --locked` first, outside the namespace (needs crates.io)
#   --no-netns       build with --offline but without the network namespace (where unshare is
#                    not permitted, e.g. unprivileged containers); the build is then offline by
#                    cargo's word only
# Env: CUDARC_CUDA_VERSION  CUDA API the bindings are generated for (default 12080: the oldest
#                           version with which cubecl-cuda 0.11.3 enables all its code paths;
#                           the binary runs on drivers of CUDA 12.8 or newer, 13.x included)
#      CARGO_TARGET_DIR     as for cargo (default ./target)
# Prints the binary's path on stdout. Exit 0 built; 1 failure; 2 bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

features="cuda" fetch=0 netns=1
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --features) [ -n "${2:-}" ] || { echo "build-gpu: --features needs a list" >&2; exit 2; }
      features=$2; shift ;;
    --fetch) fetch=1 ;;
    --no-netns) netns=0 ;;
    *) echo "build-gpu: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
die() { echo "build-gpu: $*" >&2; exit 1; }

export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-12080}"
target="${CARGO_TARGET_DIR:-$PWD/target}"

if [[ ",$features," == *",cuda,"* ]]; then
  sdk=$(scripts/provision-llvm.sh --print-dir)
  [ -e "$sdk/.tracel-llvm-installed" ] \
    || die "no LLVM SDK in $sdk: run scripts/provision-llvm.sh first (it needs PyPI once)"
  # cubecl-llvm's build script runs the SDK's llvm-config, a Python script.
  command -v python3 >/dev/null || die "python3 is required (the LLVM SDK's llvm-config is Python)"
fi

if [ "$fetch" = 1 ]; then
  cargo fetch --locked >&2 || die "cargo fetch failed"
fi

build=(cargo build --offline --release --locked -p appliance --bin airlock --features "$features")
echo "build-gpu: CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION ${build[*]}" >&2
if [ "$netns" = 1 ]; then
  # As root, a bare network namespace; otherwise inside a user namespace too (-r maps this
  # user to root there, which unprivileged unshare needs; the files stay this user's).
  if [ "$(id -u)" = 0 ]; then ns=(unshare -n); else ns=(unshare -r -n); fi
  "${ns[@]}" true 2>/dev/null \
    || die "cannot create a network namespace here (${ns[*]}); use --no-netns"
  echo "build-gpu: building inside '${ns[*]}' (no network)" >&2
  "${ns[@]}" -- "${build[@]}" >&2 || die "cargo build failed (offline, in a network namespace)"
else
  "${build[@]}" >&2 || die "cargo build failed"
fi
[ -x "$target/release/airlock" ] || die "the build produced no $target/release/airlock"
echo "$target/release/airlock"
