#!/usr/bin/env python3
"""A stratified `folder` dataset from Debian's dataset-fashion-mnist (MIT; idx files under
/usr/share/datasets/fashion-mnist): N train and M valid images per class, 28x28 grey PNGs,
drawn with a fixed seed from the training set. No dependencies beyond the standard library.

    python3 scripts/fashion_mnist_folder.py OUT [--train 100] [--valid 50] [--seed 0]
"""
import argparse, gzip, os, random, struct, zlib

NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
SRC = "/usr/share/datasets/fashion-mnist"


def png(path, w, h, pixels):
    raw = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit greyscale
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    a = argparse.ArgumentParser()
    a.add_argument("out")
    a.add_argument("--train", type=int, default=100)
    a.add_argument("--valid", type=int, default=50)
    a.add_argument("--seed", type=int, default=0)
    args = a.parse_args()
    images = gzip.open(f"{SRC}/train-images-idx3-ubyte.gz").read()
    labels = gzip.open(f"{SRC}/train-labels-idx1-ubyte.gz").read()
    n, h, w = struct.unpack(">III", images[4:16])
    by_class = {c: [] for c in range(10)}
    for i in range(n):
        by_class[labels[8 + i]].append(i)
    rng = random.Random(args.seed)
    for c, idx in by_class.items():
        pick = rng.sample(idx, args.train + args.valid)
        for split, part in (("train", pick[:args.train]), ("valid", pick[args.train:])):
            d = os.path.join(args.out, split, f"{c}-{NAMES[c]}")
            os.makedirs(d, exist_ok=True)
            for i in part:
                png(os.path.join(d, f"{i:05d}.png"), w, h, images[16 + i * h * w:16 + (i + 1) * h * w])


if __name__ == "__main__":
    main()
