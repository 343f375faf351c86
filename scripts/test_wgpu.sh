#!/usr/bin/env bash
# The wgpu backend test on Mesa's lavapipe (Vulkan on the CPU): the network's forward pass and
# one training step on wgpu against flex. `scripts/test_wgpu.sh plain` builds burn's wgpu backend
# without fusion and autotuning (the `wgpu-plain` feature: an 18 s run). Not part of .ci/run:
# the wgpu feature set rebuilds most dependencies (even `wgpu-plain`: 28 min here on 2 cores on
# top of the default test build), which would take CI from ≈ 47 to ≈ 75 minutes.
# burn's fusion and autotuning (on with effnet's GPU features) make the run slow on lavapipe:
# 720 s with default autotuning and a cold Mesa shader cache, 347 s on the rerun with
# CUBECL_AUTOTUNE_LEVEL=minimal (set below unless given), against 20 s before fusion was on.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] && ! ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1; then
    sudo_=""
    [ "$(id -u)" -ne 0 ] && sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq mesa-vulkan-drivers libvulkan1
fi

# Without a Vulkan driver wgpu falls back to GL on llvmpipe, which lacks f32 atomics.
export MESA_SHADER_CACHE_DIR="$PWD/target/mesa_shader_cache"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
feature=wgpu
[ "${1:-}" = plain ] && feature=wgpu-plain
cargo test -p effnet-train --features "$feature" --test wgpu_backend -- --nocapture
