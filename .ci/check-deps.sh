#!/usr/bin/env bash
# No-egress dependency check (ARCHITECTURE.md §8, docs/no-egress.md): fails when the `airlock`
# binary's dependencies include an HTTP client or model-hub crate, or a feature that turns
# one on (hyper's "client", burn's "network", tokenizers' "http"). Build dependencies count
# too: a build script that downloads (an LLVM bundler over ureq) breaks offline builds.
#
#   .ci/check-deps.sh            check the workspace (cargo tree, normal + build edges, features)
#   .ci/check-deps.sh --stdin    check a `cargo tree -e normal,build,features` listing on stdin
#   .ci/check-deps.sh --features wgpu,cuda   check the build with the GPU backends on
#
# With GPU features it also rejects build-time downloads: cudarc must load the CUDA driver at
# run time (no static or build-time linking that a build script would fetch for), and no crate
# may enable a "download"/"fetch" feature.
#
# One build-time HTTP client is accepted, for `--features cuda` only: cubecl-cuda 0.11.3 always
# builds cubecl-llvm's NVPTX backend, whose build dependency tracel-llvm-bundler 23.1.0-4 has
# ureq as a *build* dependency of its own. Its build script (read at that version) downloads an
# LLVM archive only when `${XDG_DATA_HOME:-~/.local/share}/tracel/tracel-llvm-23.1.0-4/
# .tracel-llvm-installed` is missing; scripts/provision-llvm.sh installs that SDK beforehand, and
# scripts/build-gpu.sh proves the build offline by running it in a network namespace with no
# interface. ureq runs only inside that build script on the build host: it is not linked into
# `airlock`. So for cuda the listing is taken with tracel-llvm-bundler pruned (`cargo tree
# --prune`), which still fails if ureq or any other banned crate is reached another way, and
# the check fails if the bundler is any version but the one whose build script was reviewed.
#
# Exit 0: clean. Exit 1: the offending lines are printed. Run by the appliance's egress
# test (tests/egress/deps.rs), so `./install.sh --test` covers it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Crate names (as cargo tree prints them: `name vX.Y.Z` or `name feature "f"`).
BANNED_CRATES='reqwest|ureq|curl|curl-sys|hf-hub|attohttpc|isahc|surf|awc|http_req|minreq|ehttp|oauth2|tokenizers-hub'
# Features that make an otherwise acceptable crate fetch over the network.
BANNED_FEATURES='hyper feature "client"|hyper-util feature "client|burn[a-z-]* feature "network"|tokenizers feature "http"|tokenizers feature "hf-hub"|cudarc feature "(static-linking|dynamic-linking)"|[a-z0-9_-]+ feature "[a-z0-9_-]*(download|fetch)[a-z0-9_-]*"'

# The tracel-llvm-bundler version whose build script was read (see the header).
TRACEL_LLVM_BUNDLER_REVIEWED="23.1.0-4"

case "${1:-}" in
  --stdin) tree=$(cat) ;;
  "") tree=$(cargo tree --locked -p appliance -e normal,build,features --prefix none --target all) ;;
  --features)
    [ -n "${2:-}" ] || { echo "check-deps.sh: --features needs a list" >&2; exit 2; }
    prune=()
    if [[ ",$2," == *",cuda,"* ]]; then
      # The reviewed bundler (see the header): its build script downloads only without the
      # provisioned SDK. Another version must be read again before it is accepted.
      bundler=$(cargo tree --locked -p appliance --features "$2" -e normal,build --prefix none \
        --target all | sed -nE 's/^tracel-llvm-bundler v([^ ]+).*/\1/p' | sort -u)
      if [ "$bundler" != "$TRACEL_LLVM_BUNDLER_REVIEWED" ]; then
        echo "check-deps.sh: tracel-llvm-bundler ${bundler:-(absent)} is not the reviewed" \
          "$TRACEL_LLVM_BUNDLER_REVIEWED: read its build script, then update scripts/provision-llvm.sh" \
          "and this check" >&2
        exit 1
      fi
      prune=(--prune "tracel-llvm-bundler@$TRACEL_LLVM_BUNDLER_REVIEWED")
    fi
    tree=$(cargo tree --locked -p appliance --features "$2" -e normal,build,features --prefix none \
      --target all "${prune[@]}")
    # The GPU runtimes must be there to be checked; and cudarc must load CUDA at run time.
    if [[ ",$2," == *",cuda,"* ]] && ! grep -q '^cudarc feature "fallback-dynamic-loading"' <<<"$tree"; then
      echo "check-deps.sh: cudarc without run-time loading of the CUDA libraries" >&2
      exit 1
    fi
    ;;
  *) echo "check-deps.sh: unknown option $1" >&2; exit 2 ;;
esac

if ! grep -q '^appliance v' <<<"$tree"; then
  echo "check-deps.sh: the listing has no appliance crate: nothing was checked" >&2
  exit 1
fi
bad=$(printf '%s\n' "$tree" \
  | sed -E 's/^[[:space:]│├└─]*//' \
  | grep -E "^(${BANNED_CRATES})( v| feature )|^(${BANNED_FEATURES})" \
  | sort -u || true)
if [ -n "$bad" ]; then
  echo "check-deps.sh: network client code in the airlock binary's dependencies:" >&2
  printf '%s\n' "$bad" | sed 's/^/  /' >&2
  exit 1
fi
echo "check-deps.sh: no HTTP client or model-hub crate in appliance's normal or build dependencies"
