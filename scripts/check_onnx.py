#!/usr/bin/env python3
"""Checks an ONNX file from `effnet export --format onnx` in ONNX Runtime (CPU).

usage: check_onnx.py MODEL.onnx INPUT.npy EFFNET_LOGITS.npy [--tolerance 1e-4]

Runs INPUT (float32 NCHW) through the model as one batch and image by image (the batch
dimension is dynamic), and compares both with the logits `effnet forward` wrote for the same
input. Prints one JSON line: {"max_abs_diff", "max_rel_diff", "batch_sizes", "providers"},
where max_rel_diff = max |ORT - effnet| / max |effnet|. Exits 1 past the tolerance.
Needs `pip install onnxruntime numpy` (scripts/install_onnxruntime.sh makes a venv with them).
"""
import argparse
import json
import sys

import numpy as np
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("input")
    ap.add_argument("logits")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()

    x = np.load(args.input).astype(np.float32)
    expected = np.load(args.logits).astype(np.float32)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    whole = session.run([out.name], {inp.name: x})[0]
    single = np.concatenate([session.run([out.name], {inp.name: x[i : i + 1]})[0] for i in range(len(x))])
    if whole.shape != expected.shape:
        print(f"error: ONNX Runtime gives shape {whole.shape}, effnet {expected.shape}", file=sys.stderr)
        return 1
    scale = max(float(np.abs(expected).max()), 1e-12)
    diff = max(float(np.abs(whole - expected).max()), float(np.abs(single - expected).max()))
    report = {
        "max_abs_diff": diff,
        "max_rel_diff": diff / scale,
        "batch_sizes": [len(x), 1],
        "providers": session.get_providers(),
    }
    print(json.dumps(report))
    if diff / scale > args.tolerance:
        print(f"error: max relative difference {diff / scale:.3g} > {args.tolerance:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
