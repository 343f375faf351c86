#!/usr/bin/env bash
# Puts ONNX Runtime and numpy (PyPI wheels, ~20 MB, ~20 s) in a venv at target/onnx-venv for the
# `effnet export --format onnx` tests (crates/effnet-cli/tests/export.rs) and
# scripts/check_onnx.py. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/onnx-venv
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import onnxruntime, numpy" 2>/dev/null; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check onnxruntime numpy
"$venv/bin/python" -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__, 'in $venv')"
