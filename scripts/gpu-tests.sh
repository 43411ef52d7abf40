#!/usr/bin/env bash
# The GPU kernel tests on a machine without a GPU: Mesa's software Vulkan driver (lavapipe)
# runs the wgpu backend, and appliance/engine/tests/engine/gpu.rs compares it with the CPU
# (every weight type through both product paths, the f16 rounding bit for bit, the default
# model's logits and greedy tokens). Not part of `./install.sh --test`: building burn's wgpu
# backend for tests takes about 25 minutes on 2 cores, which CI's budget does not have; run it
# after changing anything under appliance/engine/src/cube/ (or ops.rs, step.rs).
#
# Usage: scripts/gpu-tests.sh [cargo test args...]
# Installs mesa-vulkan-drivers with apt when no Vulkan driver is present (needs root, once).
# Exit status: cargo's.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 \
  && ! ls /usr/share/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
  echo "gpu-tests: installing Mesa's Vulkan drivers (lavapipe)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q mesa-vulkan-drivers libvulkan1 >&2
fi
AIRLOCK_TEST_MODEL=$(scripts/fetch-default-model.sh)
export AIRLOCK_TEST_MODEL
# One test at a time: the recorded decode step keeps one recording (the last sequence's), and
# lavapipe runs on the same two cores either way.
RUST_TEST_THREADS=1 exec cargo test -p airlock-engine --features wgpu --test engine gpu:: "$@"
