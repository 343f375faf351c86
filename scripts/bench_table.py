#!/usr/bin/env python3
"""Runs `effnet bench` and its peers (scripts/bench_peers.py: PyTorch eager NCHW, PyTorch
channels-last, torch.compile, ONNX Runtime, OpenVINO; timm `efficientnet_b0` for each) side by
side, interleaved (A B C A B C ...: this machine is noisy), and prints the BENCHMARKS.md tables:
the machine (CPU model, AVX2/AVX-512 flags), the median over rounds of each process's median
images/s, effnet / the best peer per row and per round, and each one's peak RSS.

  python3 scripts/bench_table.py --effnet target/release/effnet --python /tmp/refvenv/bin/python \
      --rounds 3 --out bench-results.jsonl
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROWS = [  # (mode, batch, resolution, classes)
    ("eval", 16, 224, 1000),
    ("eval", 64, 32, 1000),
    ("train", 32, 32, 100),
    ("train", 8, 224, 1000),
]


# (column name, bench_peers.py --impl): the engines a user who cares about CPU speed would pick.
PEERS = [
    ("pytorch", "torch"),
    ("pytorch channels-last", "torch-cl"),
    ("torch.compile", "torch-compile"),
    ("onnxruntime", "ort"),
    ("openvino", "openvino"),
]


def machine():
    """`lscpu`'s model name and the SIMD flags that pick kernels (effnet's and the peers')."""
    model, flags = "unknown CPU", set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name") and model == "unknown CPU":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return f"{model}, {os.cpu_count()} cores, {' '.join(simd) or 'no AVX2'}"


def run(cmd, env=None):
    env = None if env is None else dict(os.environ, **env)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--effnet", default="target/release/effnet")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", default="bench-results.jsonl")
    p.add_argument("--rows", default="all", help="comma-separated row indices (0-3) or 'all'")
    p.add_argument("--no-baseline", action="store_true", help="skip effnet with burn's own ops")
    p.add_argument("--ablation", action="store_true",
                   help="also time effnet with each kernel family alone (--kernels activation, ...)")
    p.add_argument("--loader", action="store_true",
                   help="also time the data loader alone against a torchvision DataLoader")
    p.add_argument("--photos", default="target/test-assets",
                   help="folder with chelsea.png/coffee.png (scripts/fetch_test_assets.sh) for the loader's JPEGs")
    a = p.parse_args()
    peers = str(Path(__file__).with_name("bench_peers.py"))
    rows = ROWS if a.rows == "all" else [ROWS[int(i)] for i in a.rows.split(",")]
    results = {}
    with open(a.out, "a") as log:
        for mode, batch, res, classes in rows:
            common = ["--mode", mode, "--batch", str(batch), "--resolution", str(res), "--classes", str(classes),
                      "--runs", str(a.runs)]
            impls = {"effnet": [a.effnet, "bench", "--variant", "b0", "--json", *common]}
            envs = {}
            if not a.no_baseline:
                impls["effnet (burn ops)"] = impls["effnet"] + ["--kernels", "burn"]
            if a.ablation:
                for k in ["activation", "depthwise", "batchnorm", "pointwise", "scale", "fused"]:
                    impls[f"effnet ({k} only)"] = impls["effnet"] + ["--kernels", k]
                impls["effnet (all but fused)"] = impls["effnet"] + [
                    "--kernels", "activation,depthwise,batchnorm,pointwise,scale"]
                # Any MALLOC_* variable makes effnet leave glibc's allocator settings alone
                # (crates/effnet-cli/src/memory.rs); MALLOC_PERTURB_=0 is glibc's own default.
                impls["effnet (glibc malloc defaults)"] = impls["effnet"]
                envs["effnet (glibc malloc defaults)"] = {"MALLOC_PERTURB_": "0"}
            for name, impl in PEERS:
                if mode == "eval" or impl.startswith("torch"):
                    impls[name] = [a.python, peers, "--impl", impl, *common]
            for r in range(a.rounds):
                for name, cmd in impls.items():
                    j = run(cmd, envs.get(name))
                    j["round"] = r
                    j["label"] = name
                    log.write(json.dumps(j) + "\n")
                    log.flush()
                    results.setdefault((mode, batch, res, classes), {}).setdefault(name, []).append(j)
                    print(f"{mode} b{batch} {res}² {name:18} round {r}: {j['images_per_sec']:8.1f} img/s "
                          f"{j['peak_rss_mb']:7.0f} MB", file=sys.stderr)

    if a.loader:
        folder = make_jpeg_folder(Path(a.photos), Path("target/bench-jpegs"))
        impls = {
            "effnet": [a.effnet, "data", "bench", "--dataset", "folder", "--path", str(folder), "--image-size", "224",
                       "--batch-size", "32", "--batches", "8", "--workers", "2", "--json"],
            "pytorch": [a.python, peers, "--impl", "torch-loader", "--folder", str(folder / "train"), "--batch", "32",
                        "--resolution", "224", "--workers", "2", "--batches", "8"],
        }
        with open(a.out, "a") as log:
            for r in range(a.rounds):
                for name, cmd in impls.items():
                    j = run(cmd)
                    j["round"], j["label"] = r, name
                    log.write(json.dumps(j) + "\n")
                    results.setdefault(("loader", 32, 224, 0), {}).setdefault(name, []).append(j)
                    print(f"loader {name:18} round {r}: {j['images_per_sec']:8.1f} img/s", file=sys.stderr)

    print(f"Machine: {machine()}")
    print()
    names = [n for n, _ in PEERS]
    print("| workload | effnet img/s | " + " | ".join(f"{n} img/s" for n in names) + " | best peer | effnet / best | "
          "effnet / best per round | peak RSS effnet / PyTorch eager (MB) |")
    print("|---|---|" + "---|" * len(names) + "---|---|---|---|")
    for (mode, batch, res, classes), by in results.items():
        if mode == "loader":
            e = statistics.median(j["images_per_sec"] for j in by["effnet"])
            t = statistics.median(j["images_per_sec"] for j in by["pytorch"])
            print(f"| data loader alone: 320 JPEGs 500×375 → RRC 224 + flip, batch 32, 2 workers | **{e:.1f}** | "
                  f"{t:.1f} | " + "– | " * (len(names) - 1) + f"pytorch | **{e / t:.2f}×** | – | "
                  f"{max(j['peak_rss_mb'] for j in by['effnet']):.0f} / {max(j['peak_rss_mb'] for j in by['pytorch']):.0f} |")
            continue
        med = {k: statistics.median(j["images_per_sec"] for j in v) for k, v in by.items()}
        rss = {k: max(j["peak_rss_mb"] for j in v) for k, v in by.items()}
        present = [n for n in names if n in med]
        best = max(present, key=lambda n: med[n])
        rounds = sorted({j["round"] for j in by["effnet"]})
        per_round = []
        for r in rounds:
            at = {k: next(j["images_per_sec"] for j in v if j["round"] == r) for k, v in by.items()}
            per_round.append(at["effnet"] / max(at[n] for n in present))
        cells = " | ".join(f"{med[n]:.1f}" if n in med else "–" for n in names)
        print(f"| B0 {mode} b{batch} {res}² ({classes} classes) | **{med['effnet']:.1f}** | {cells} | {best} | "
              f"**{med['effnet'] / med[best]:.2f}×** | {', '.join(f'{x:.2f}' for x in per_round)} | "
              f"{rss['effnet']:.0f} / {rss['pytorch']:.0f} |")
    variant = lambda n: n.startswith("effnet (") and n != "effnet (burn ops)"  # noqa: E731
    ablation = [(k, by) for k, by in results.items() if k[0] != "loader" and any("only" in n for n in by)]
    if ablation:
        print()
        print("| workload | burn ops | " + " | ".join(n for n in ablation[0][1] if variant(n)) + " | all kernels |")
        print("|---|---|" + "---|" * (sum(variant(n) for n in ablation[0][1]) + 1))
        for (mode, batch, res, classes), by in ablation:
            med = {k: statistics.median(j["images_per_sec"] for j in v) for k, v in by.items()}
            cells = " | ".join(f"{med[n]:.1f}" for n in by if variant(n))
            print(f"| B0 {mode} b{batch} {res}² | {med.get('effnet (burn ops)', float('nan')):.1f} | {cells} | "
                  f"{med['effnet']:.1f} |")


def make_jpeg_folder(photos, out):
    """320 JPEGs of 500×375 (crops of two public-domain photos), three classes, train/valid."""
    if (out / "train").is_dir():
        return out
    from PIL import Image
    import random
    rng = random.Random(0)
    srcs = [Image.open(photos / n).convert("RGB") for n in ("chelsea.png", "coffee.png")]
    for i in range(320):
        split = "valid" if i % 10 == 0 else "train"
        src = srcs[i % 2]
        w, h = src.size
        cw, ch = rng.randint(w // 2, w), rng.randint(h // 2, h)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = src.crop((x, y, x + cw, y + ch)).resize((500, 375))
        d = out / split / f"c{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        img.save(d / f"{i}.jpg", quality=90)
    return out


if __name__ == "__main__":
    main()
