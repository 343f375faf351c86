#!/usr/bin/env bash
# The CPU kernels on ARM without ARM hardware: effnet-kernels' tests cross-compiled for
# aarch64-unknown-linux-gnu and run under qemu-aarch64 (user-mode emulation), once with the NEON
# instantiations (the default there) and once forced to the scalar ones. Correctness only: the
# emulator says nothing about speed. Installs the cross tool chain (apt, rustup) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo_env.sh

target=aarch64-unknown-linux-gnu
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null \
    || [ ! -d /usr/aarch64-linux-gnu/lib ]; then
    sudo_=""
    [ "$(id -u)" -ne 0 ] && sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
# Only the kernels crate (its own tests cover every kernel against f64 definitions and the NCHW
# kernels): the whole workspace under emulation would cost CI most of an hour.
for simd in neon scalar; do
    echo "effnet-kernels on $target, EFFNET_SIMD=$simd"
    EFFNET_SIMD=$simd cargo test -p effnet-kernels --target "$target" --lib
done
