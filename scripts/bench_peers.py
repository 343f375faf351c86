#!/usr/bin/env python3
"""Times EfficientNet in PyTorch (timm: eager NCHW, channels-last, torch.compile), ONNX Runtime or
OpenVINO with the protocol of `effnet bench`.

Prints one JSON object with the same keys as `effnet bench --json`:
  impl, model, mode, batch, resolution, classes, threads, images_per_sec, median_step_s,
  step_s, peak_rss_mb

  eval  forward on random N(0,1) input under torch.inference_mode() (torch.compile: no_grad;
        ORT: session.run; OpenVINO: a compiled model's call), BatchNorm on running statistics,
        until the logits are in host memory;
  train forward + cross-entropy + backward + SGD(lr 0.01, momentum 0.9) until loss.item();
  --impl torch-loader: images/s of a torchvision DataLoader alone over an image folder
        (PIL decode, RandomResizedCrop, flip, ToTensor, Normalize), like `effnet data bench`.
Each timed step follows `--warmup` untimed steps; the median is reported.

  --impl torch          eager PyTorch, NCHW (contiguous) model and input;
  --impl torch-cl       eager PyTorch with model and input `.to(memory_format=torch.channels_last)`;
  --impl torch-compile  `torch.compile(model)` (inductor) on the channels-last model; compilation
                        happens in the warm-up steps (at least 3 are run);
  --impl ort            ONNX Runtime's CPU provider on the model exported to ONNX (opset 17);
  --impl openvino       OpenVINO: `ov.convert_model(model, example_input=x)` compiled for "CPU"
                        with INFERENCE_NUM_THREADS = --threads, PERFORMANCE_HINT LATENCY and
                        INFERENCE_PRECISION_HINT f32 (no bf16 even where the CPU has it).

On a GPU (`--device cuda`): `--amp bf16|fp16` trains under torch.autocast (fp16 with a
GradScaler, as timm's train.py), `--channels-last` converts the model and input as timm's
`--channels-last` does; `peak_gpu_mb` is torch.cuda.max_memory_reserved (what the caching
allocator took from the device) and `peak_gpu_allocated_mb` max_memory_allocated.

Needs: pip install torch timm onnxruntime onnx openvino (scripts/bench_table.py runs it next to effnet).
"""

import argparse
import warnings
import json
import os
import resource
import statistics
import sys
import tempfile
import time


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", choices=["torch", "torch-cl", "torch-compile", "ort", "openvino", "torch-loader"],
                   default="torch")
    p.add_argument("--folder", help="image folder (class sub-folders) for --impl torch-loader")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for --impl torch-loader")
    p.add_argument("--batches", type=int, default=8, help="batches timed by --impl torch-loader")
    p.add_argument("--model", default="efficientnet_b0", help="timm name (efficientnet_b0, tf_efficientnet_b0, ...)")
    p.add_argument("--mode", choices=["eval", "train"], default="eval")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="default: all cores")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off", help="torch.autocast (cuda)")
    p.add_argument("--channels-last", action="store_true", help="model and input in channels-last (cuda)")
    a = p.parse_args()
    warnings.filterwarnings("ignore")  # the legacy ONNX exporter announces its deprecation

    import torch

    torch.set_num_threads(a.threads)
    if a.impl == "torch-loader":
        return loader(a)
    import timm

    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = timm.create_model(a.model, pretrained=False, num_classes=a.classes).to(dev)
    x = torch.randn(a.batch, 3, a.resolution, a.resolution, device=dev)
    if a.channels_last or a.impl in ("torch-cl", "torch-compile"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    run_model = model
    if a.impl == "torch-compile":
        run_model = torch.compile(model)
        a.warmup = max(a.warmup, 3)
    amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.amp]

    def autocast():
        return torch.autocast(a.device, dtype=amp_dtype, enabled=amp_dtype is not None)
    times = []
    steps = a.warmup + max(a.runs, 1)

    if a.impl in ("ort", "openvino") and a.mode != "eval":
        sys.exit(f"{a.impl} is timed for eval only")
    if a.impl == "openvino":
        import openvino as ov

        model.eval()
        core = ov.Core()
        with torch.no_grad():
            ov_model = ov.convert_model(model, example_input=x)
        compiled = core.compile_model(ov_model, "CPU", {
            "INFERENCE_NUM_THREADS": a.threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
        xn = x.contiguous().numpy()
        for _ in range(steps):
            t = time.perf_counter()
            compiled(xn)[0]
            times.append(time.perf_counter() - t)
    elif a.impl == "ort":
        import onnxruntime as ort

        model.eval()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "model.onnx")
            torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["logits"], dynamo=False)
            so = ort.SessionOptions()
            so.intra_op_num_threads = a.threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        for _ in range(steps):
            t = time.perf_counter()
            sess.run(["logits"], {"x": xn})
            times.append(time.perf_counter() - t)
    elif a.mode == "eval":
        model.eval()
        # inductor does not trace under inference_mode's inference tensors: no_grad for it.
        grad_off = torch.no_grad() if a.impl == "torch-compile" else torch.inference_mode()
        with grad_off, autocast():
            for _ in range(steps):
                t = time.perf_counter()
                run_model(x).float().cpu().numpy()
                times.append(time.perf_counter() - t)
    else:
        model.train()
        labels = torch.tensor([(i * 7919) % a.classes for i in range(a.batch)], device=dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()
        scaler = torch.amp.GradScaler(a.device, enabled=a.amp == "fp16")
        for _ in range(steps):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(run_model(x), labels)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss.item()
            times.append(time.perf_counter() - t)

    timed = times[a.warmup:]
    med = statistics.median(timed)
    extra = {}
    if a.device == "cuda":
        extra = {
            "device": torch.cuda.get_device_name(),
            "amp": a.amp,
            "channels_last": a.channels_last,
            "peak_gpu_mb": torch.cuda.max_memory_reserved() / 2**20,
            "peak_gpu_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
            "torch": torch.__version__,
        }
    print(json.dumps({
        "impl": {"ort": "onnxruntime", "openvino": "openvino", "torch-cl": "pytorch-channels-last",
                 "torch-compile": "torch.compile"}.get(a.impl, "pytorch"),
        "model": a.model,
        "mode": a.mode,
        "batch": a.batch,
        "resolution": a.resolution,
        "classes": a.classes,
        "threads": a.threads,
        "images_per_sec": a.batch / med,
        "median_step_s": med,
        "step_s": timed,
        "peak_rss_mb": peak_rss_mb(),
        "versions": versions(a.impl),
        **extra,
    }))


def versions(impl):
    import torch
    v = {"torch": torch.__version__}
    if impl == "ort":
        import onnxruntime
        v["onnxruntime"] = onnxruntime.__version__
    if impl == "openvino":
        import openvino
        v["openvino"] = openvino.__version__
    return v


def loader(a):
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.RandomResizedCrop(a.resolution),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    ds = datasets.ImageFolder(a.folder, tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, num_workers=a.workers, drop_last=False)
    done = images = 0
    t = time.perf_counter()
    while done < a.batches:
        for x, _ in dl:
            images += x.shape[0]
            done += 1
            if done == a.batches:
                break
    secs = time.perf_counter() - t
    print(json.dumps({
        "impl": "pytorch", "mode": "loader", "batch": a.batch, "resolution": a.resolution, "workers": a.workers,
        "batches": done, "images_per_sec": images / secs, "peak_rss_mb": peak_rss_mb(),
    }))


if __name__ == "__main__":
    main()
