#!/usr/bin/env bash
# The main job: train a small EfficientNet on the embedded digits dataset (CPU, a few minutes),
# then evaluate the result. The run directory is runs/quickstart (metrics.csv, plots,
# summary.json, checkpoints). Built in the dev profile, whose dependencies are optimised, so
# the build is shared with the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# The same feature set and target directory as scripts/test.sh (scripts/cargo_env.sh): burn is
# built once for both commands.
source scripts/cargo_env.sh
cargo build --workspace --features "$EFFNET_FEATURES" --bin effnet
effnet="$CARGO_TARGET_DIR/debug/effnet"
$effnet data check --dataset cifar100 --path datasets/digits
rm -rf runs/quickstart
$effnet train --config configs/quickstart.toml --run-dir runs/quickstart
$effnet eval --config configs/quickstart.toml --checkpoint runs/quickstart
