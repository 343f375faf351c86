#!/usr/bin/env bash
# The main job. Until `effnet train` lands this builds effnet and describes every variant.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p effnet-cli
./target/release/effnet info
./target/release/effnet config check configs/reference.toml
./target/release/effnet data check --dataset cifar100 --path datasets/digits
