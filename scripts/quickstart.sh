#!/usr/bin/env bash
# The main job: train a small EfficientNet on the embedded digits dataset (CPU, a few minutes),
# then evaluate the result. The run directory is runs/quickstart (metrics.csv, plots,
# summary.json, checkpoints). Built in the dev profile, whose dependencies are optimised, so
# the build is shared with the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p effnet-cli
effnet=./target/debug/effnet
$effnet data check --dataset cifar100 --path datasets/digits
rm -rf runs/quickstart
$effnet train --config configs/quickstart.toml --run-dir runs/quickstart
$effnet eval --config configs/quickstart.toml --checkpoint runs/quickstart
