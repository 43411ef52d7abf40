#!/usr/bin/env bash
# Proves an offline kit's sources rebuild the binary with no network: copies KIT/source,
# builds it with `cargo build --offline --locked --release` inside a network namespace with
# no interface and an empty CARGO_HOME (so only the vendored crates can be used), and
# compares `airlock version --json` of the result with the kit's binary (same version and
# commit). A full release build: 20-40 minutes on 2 cores, which is why it is not part of
# every CI run (docs/offline-kit.md). Needs root (unshare) and a Rust toolchain.
#
#   scripts/kit-rebuild-check.sh KIT_DIR
set -euo pipefail
shopt -s inherit_errexit

die() { echo "kit-rebuild-check: $*" >&2; exit 1; }

(($# == 1)) || { echo "usage: scripts/kit-rebuild-check.sh KIT_DIR" >&2; exit 2; }
kit="$(cd "$1" && pwd)"
[[ -d $kit/source/vendor ]] || die "$kit has no source/vendor (built with --no-source?)"
cargo="$(command -v cargo || echo "$HOME/.cargo/bin/cargo")"
[[ -x $cargo ]] || die "cargo not found"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -a "$kit/source" "$work/source"
mkdir -p "$work/cargo-home"
echo "kit-rebuild-check: building $kit/source offline (network namespace, empty CARGO_HOME)" >&2
# From inside the tree: cargo finds .cargo/config.toml (the vendored source) from the
# current directory, not from --manifest-path.
(cd "$work/source" && unshare --net env CARGO_HOME="$work/cargo-home" RUSTUP_HOME="$rustup_home" \
  CARGO_TARGET_DIR="$work/target" "$cargo" build --offline --locked --release \
  -p appliance --bin airlock) >&2 \
  || die "the offline build failed"

field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
built="$work/target/release/airlock"
for f in version commit features; do
  a="$("$kit/bin/airlock" version --json | field "$f")"
  b="$("$built" version --json | field "$f")"
  [[ $a == "$b" ]] || die "$f differs: kit $a, rebuilt $b"
done
echo "kit-rebuild-check: OK: $("$built" version)"
