#!/usr/bin/env bash
# The wgpu backend test on Mesa's lavapipe (Vulkan on the CPU): the network's forward pass and
# one training step on wgpu against flex. Not part of .ci/run: a cold build of the wgpu feature
# set rebuilds most dependencies (59 min here on 2 cores shared with another build), which would take CI past
# its 60-minute budget. The Mesa shader cache lives under target/, so reruns are fast.
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
cargo test -p effnet-train --features wgpu --test wgpu_backend -- --nocapture
