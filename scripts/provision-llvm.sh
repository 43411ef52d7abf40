#!/usr/bin/env bash
# Install the static LLVM SDK that the `cuda` feature's build needs, so that the build itself
# downloads nothing (issue 13, README "GPU").
#
# Why: burn 0.22.1's CUDA runtime (cubecl-cuda 0.11.3) always builds cubecl-llvm's NVPTX backend.
# cubecl-llvm's build dependency tracel-llvm-bundler 23.1.0-4 downloads an LLVM archive from
# GitHub in its build script (ureq) unless
#     ${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed
# exists (tracel-llvm-bundler src/config.rs `llvm_path()` + `sentinel_name()`, build.rs step 0).
# With the marker there, its build script only prints `rerun-if-changed`, and cubecl-llvm's build
# script runs that directory's `bin/llvm-config --link-static` (--cxxflags, --includedir,
# --libdir, --libs, --system-libs) and compiles its C++ shims against it.
#
# PyPI's mlc-llvm-static + mlc-llvm-static-extra-targets (same version) are a relocatable static
# LLVM 23.1.1 SDK (NVPTX in the extra-targets wheel) whose `bin/llvm-config` (a Python script)
# answers all of those queries. This script fetches both wheels by pinned version, checks their
# SHA-256, unpacks their `mlc_llvm_static/static/` folder into that directory and writes the
# marker last. It is the only step that needs the network; afterwards
# `scripts/build-gpu.sh` builds with the network cut.
#
# Usage: scripts/provision-llvm.sh [--wheels DIR] [--force]
#   --wheels DIR  take the two wheels from DIR instead of downloading them (an air-gapped build
#                 host: carry the wheels in; their digests are still checked)
#   --force       reinstall even if an SDK is already installed there
#   --print-dir   print the install directory and exit
# Env: XDG_DATA_HOME  base of the install directory (default $HOME/.local/share)
#      AIRLOCK_CACHE  where downloaded wheels are kept (default ${XDG_CACHE_HOME:-$HOME/.cache}/airlock)
# Needs: python3 (pip to download; also runs llvm-config during the build), ~500 MB free disk.
# Exit: 0 installed or already installed; 1 failure (a message says which step); 2 bad usage.
set -euo pipefail

SDK_VERSION="23.1.1"
WHEELS=(
  # name==version                                   file                                                                    sha256 (observed from PyPI 2026-12-07)
  "mlc-llvm-static==23.1.1.post0                mlc_llvm_static-23.1.1.post0-py3-none-manylinux_2_28_x86_64.whl                dcfec888abfaa418be77d41af585805f31463584cf9c90582992c00f392c1ac5"
  "mlc-llvm-static-extra-targets==23.1.1.post0  mlc_llvm_static_extra_targets-23.1.1.post0-py3-none-manylinux_2_28_x86_64.whl  c36e834d9a4e9cf9759f27fece65711ece7a2fc2b5a96dbb15d66f5e9e787929"
)
# What tracel-llvm-bundler 23.1.0-4 looks for (must change with it: see Cargo.lock).
BUNDLE_NAME="tracel-llvm-23.1.0-4"
MARKER=".tracel-llvm-installed"
# Ours, beside the marker: which wheels made this SDK (so a re-run knows it is up to date).
STAMP=".airlock-provisioned"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "provision-llvm: $*" >&2; exit 1; }
sha_ok() { [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -d' ' -f1) == "$2" ]]; }

wheels_dir="" force=0 print_dir=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --wheels) [ -n "${2:-}" ] || { echo "provision-llvm: --wheels needs a directory" >&2; exit 2; }
      wheels_dir=$2; shift ;;
    --force) force=1 ;;
    --print-dir) print_dir=1 ;;
    *) echo "provision-llvm: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

[ "$(uname -s)/$(uname -m)" = "Linux/x86_64" ] \
  || die "the pinned wheels are for Linux x86_64 only (this is $(uname -s)/$(uname -m))"

# dirs::data_local_dir() on Linux: $XDG_DATA_HOME if it is absolute, else $HOME/.local/share.
data_home="${XDG_DATA_HOME:-}"
[[ $data_home == /* ]] || data_home="${HOME:?HOME is not set}/.local/share"
dest="$data_home/tracel/$BUNDLE_NAME"
if [ "$print_dir" = 1 ]; then echo "$dest"; exit 0; fi

stamp_text=$(printf '%s\n' "${WHEELS[@]}" | awk '{print $1, $3}')

if [ -e "$dest/$MARKER" ] && [ "$force" = 0 ]; then
  if [ -f "$dest/$STAMP" ] && [ "$(cat "$dest/$STAMP")" = "$stamp_text" ]; then
    echo "provision-llvm: LLVM SDK already installed in $dest" >&2
    exit 0
  fi
  echo "provision-llvm: $dest already holds an LLVM bundle not installed by this script;" \
    "leaving it (rerun with --force to replace it with the pinned PyPI SDK)" >&2
  exit 0
fi

command -v python3 >/dev/null || die "python3 is required (pip, and llvm-config is a Python script)"

# 1. The wheels, by pinned version and digest.
download=0
if [ -n "$wheels_dir" ]; then
  [ -d "$wheels_dir" ] || die "--wheels $wheels_dir is not a directory"
else
  wheels_dir="${AIRLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}/wheels"
  mkdir -p "$wheels_dir"
  download=1
fi
for row in "${WHEELS[@]}"; do
  read -r spec file sum <<<"$row"
  wheel="$wheels_dir/$file"
  if sha_ok "$wheel" "$sum"; then continue; fi
  if [ ! -f "$wheel" ] && [ "$download" = 1 ]; then
    echo "provision-llvm: downloading $spec from PyPI" >&2
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
      --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.10 \
      -d "$wheels_dir" "$spec" >&2 || die "pip download $spec failed"
  fi
  [ -f "$wheel" ] || die "$wheel is missing"
  if ! sha_ok "$wheel" "$sum"; then
    hint="delete it and rerun to download it again"
    [ "$download" = 1 ] || hint="not the pinned wheel: take it from PyPI's $spec"
    die "digest mismatch for $wheel: expected $sum, got $(sha256sum "$wheel" | cut -d' ' -f1) ($hint)"
  fi
done

# 2. Unpack both wheels (zips) into a staging directory beside the destination, so that the
#    final move is a rename on one filesystem and a failure leaves no half-installed SDK.
mkdir -p "$(dirname "$dest")"
staging=$(mktemp -d "$(dirname "$dest")/.$BUNDLE_NAME.staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
for row in "${WHEELS[@]}"; do
  read -r _ file _ <<<"$row"
  python3 - "$wheels_dir/$file" "$staging/unpacked" <<'PY' || die "unpacking $file failed"
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        # Wheels are untrusted input to a tool run as this user: refuse paths that leave `out`.
        if name.startswith("/") or ".." in name.split("/"):
            sys.exit(f"unsafe path in wheel: {name}")
    z.extractall(out)
PY
done
sdk="$staging/unpacked/mlc_llvm_static/static"
[ -f "$sdk/bin/llvm-config" ] || die "the wheels hold no mlc_llvm_static/static/bin/llvm-config"
# zipfile does not keep the executable bit; the build script runs this file directly.
chmod +x "$sdk/bin/llvm-config"

# 3. Check the SDK answers as cubecl-llvm's build script will ask, and has the NVPTX target.
got=$("$sdk/bin/llvm-config" --link-static --version) || die "llvm-config --version failed"
[ "$got" = "$SDK_VERSION" ] || die "llvm-config says version $got, expected $SDK_VERSION"
"$sdk/bin/llvm-config" --targets-built | tr ' ' '\n' | grep -qx NVPTX \
  || die "the SDK has no NVPTX target (is the extra-targets wheel unpacked?)"
for q in --cxxflags --includedir --libdir --libs --system-libs; do
  "$sdk/bin/llvm-config" --link-static "$q" >/dev/null || die "llvm-config --link-static $q failed"
done

# 4. Install: replace whatever is there, then write the stamp and, last, the marker the
#    bundler checks (a crash before this line leaves no marker, so a rerun reinstalls).
printf '%s\n' "$stamp_text" >"$sdk/$STAMP"
rm -rf "$dest"
mv "$sdk" "$dest"
: >"$dest/$MARKER"
echo "provision-llvm: LLVM $SDK_VERSION SDK (NVPTX) installed in $dest" >&2
