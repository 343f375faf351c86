#!/usr/bin/env bash
# The main job: train a small EfficientNet on the embedded digits dataset (CPU, a few minutes),
# then evaluate the result. The run directory is runs/quickstart (metrics.csv, plots,
# summary.json, checkpoints).
#
# It builds only what it runs: the `effnet` binary with its default features (burn's flex CPU
# backend and effnet's kernels), not the test suite's union (wgpu, multi-node), so that a fresh
# clone reaches its first trained model in minutes (README "Set-up", BENCHMARKS.md
# "Quickstart"). The dev profile optimises every dependency, so this build is also what
# scripts/test.sh's build starts from for the crates they share.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo_env.sh
cargo build -p effnet-cli --bin effnet
effnet="$CARGO_TARGET_DIR/debug/effnet"
$effnet data check --dataset cifar100 --path datasets/digits
rm -rf runs/quickstart
$effnet train --config configs/quickstart.toml --run-dir runs/quickstart
$effnet eval --config configs/quickstart.toml --checkpoint runs/quickstart
