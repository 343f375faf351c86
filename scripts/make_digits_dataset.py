#!/usr/bin/env python3
"""Writes datasets/digits: scikit-learn's 8x8 handwritten digits (BSD-3-Clause, 1,797 images,
10 classes) in the exact cifar-100-binary layout, so the quickstart reads it with the same
loader users point at CIFAR-100 (`dataset = "cifar100"`, `path = "datasets/digits"`).

- Split: stratified, seeded (numpy RandomState(0)); 20 % of each class (rounded) to test.bin.
- Upsampling: 8x8 grey levels 0..16 -> 32x32 by bilinear interpolation with half-pixel centres
  (align_corners=False, edge-clamped, as PIL/torch bilinear), scaled to 0..255 (x * 255 / 16),
  rounded, grey replicated to R, G, B.
- Labels: fine label = the digit; coarse label = the same digit (so `labels = "coarse"` also
  gives the 10 digit classes).

Usage: python3 -m venv /tmp/v && /tmp/v/bin/pip install scikit-learn && /tmp/v/bin/python scripts/make_digits_dataset.py
"""
import os
import numpy as np
from sklearn.datasets import load_digits

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets", "digits")


def upsample(img8, size=32):
    src = img8.astype(np.float64)
    n = src.shape[0]
    coords = (np.arange(size) + 0.5) * n / size - 0.5
    coords = np.clip(coords, 0, n - 1)
    i0 = np.floor(coords).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    f = coords - i0
    rows = src[i0, :] * (1 - f)[:, None] + src[i1, :] * f[:, None]
    out = rows[:, i0] * (1 - f)[None, :] + rows[:, i1] * f[None, :]
    return np.clip(np.round(out * 255.0 / 16.0), 0, 255).astype(np.uint8)


def main():
    d = load_digits()
    images, labels = d.images, d.target.astype(np.uint8)
    rng = np.random.RandomState(0)
    test_idx = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        test_idx.extend(sorted(idx[: int(round(0.2 * len(idx)))]))
    test_mask = np.zeros(len(labels), bool)
    test_mask[test_idx] = True
    os.makedirs(OUT, exist_ok=True)
    for name, mask in (("train", ~test_mask), ("test", test_mask)):
        recs = []
        for img, lab in zip(images[mask], labels[mask]):
            g = upsample(img)
            recs.append(bytes([lab, lab]) + g.tobytes() * 3)  # coarse, fine, R, G, B planes
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(b"".join(recs))
        print(name, mask.sum(), "images")
    names = [str(i) for i in range(10)]
    for fn in ("fine_label_names.txt", "coarse_label_names.txt"):
        with open(os.path.join(OUT, fn), "w") as f:
            f.write("\n".join(names) + "\n")


if __name__ == "__main__":
    main()
