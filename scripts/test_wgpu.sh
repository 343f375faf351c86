#!/usr/bin/env bash
# The wgpu tests alone (crates/effnet-train/tests/wgpu_backend.rs: one step against flex;
# crates/effnet-cli/tests/wgpu.rs: train/eval/predict against flex), on Mesa's lavapipe where there
# is no GPU, in the same build as scripts/test.sh. Unlike scripts/test.sh, burn's fusion is on
# (what users get on a GPU) unless EFFNET_GPU_FUSION says otherwise: on lavapipe that costs
# minutes of shader compilation per kernel set (README "Backends and devices").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo_env.sh
scripts/install_lavapipe.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
export CUBECL_AUTOTUNE_LEVEL="${CUBECL_AUTOTUNE_LEVEL:-minimal}"
export EFFNET_GPU_FUSION="${EFFNET_GPU_FUSION:-default}"
cargo test --workspace --features "$EFFNET_FEATURES" --test wgpu_backend --test wgpu -- --nocapture
