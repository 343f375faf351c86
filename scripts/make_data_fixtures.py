#!/usr/bin/env python3
"""Writes the tiny data-format fixtures committed under crates/effnet-train/tests/fixtures/data:

- cifar-100-python/{train,test,meta}: the official pickled dicts with a numpy uint8 `data`
  array. `test` is written byte-for-byte in Python 2 cPickle protocol 2 style (str keys as
  SHORT_BINSTRING, array bytes as BINSTRING), as the official files are; `train` is numpy's
  own pickle at protocol 4; `meta` at protocol 2 from Python 3 (bytes via _codecs.encode).
- flowers/imagelabels.mat (compressed) and setid.mat (uncompressed) with scipy.io.savemat, MAT v5,
  plus imagelabels_bad.mat with a label of 103.

Pixel rule: image i, byte k of its 3072 bytes = (7 * i + k) % 256.
Tests never run this; they read the committed files. Needs numpy and scipy.
"""
import os
import pickle
import struct
import numpy as np
import scipy.io

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "crates", "effnet-train", "tests", "fixtures", "data")

FINE = ["apple", "aquarium_fish", "baby", "bear", "beaver"] + [f"fine_{i}" for i in range(5, 100)]
COARSE = ["aquatic_mammals", "fish"] + [f"coarse_{i}" for i in range(2, 20)]


def images(n):
    return np.array([[(7 * i + k) % 256 for k in range(3072)] for i in range(n)], dtype=np.uint8)


def py2_pickle(d):
    """A dict of str -> (str | list[int] | list[str] | uint8 ndarray) as Python 2 cPickle
    protocol 2 would write it."""
    out = bytearray(b"\x80\x02}q\x00(")
    memo = [1]

    def put():
        i = memo[0]
        memo[0] += 1
        out.extend(b"q" + bytes([i]))

    def s(b):
        out.extend((b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<I", len(b)) + b))
        put()

    for k, v in d.items():
        s(k.encode())
        if isinstance(v, np.ndarray):
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85U\x01b\x87R")
            put()
            out.extend(b"(K\x01K%cM\x00\x0c\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R" % v.shape[0])
            put()
            out.extend(b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89")
            s(v.tobytes())
            out.extend(b"tb")
        elif isinstance(v, str):
            s(v.encode())
        else:
            out.extend(b"]")
            put()
            out.extend(b"(")
            for x in v:
                if isinstance(x, int):
                    out.extend(b"K" + bytes([x]))
                else:
                    s(x.encode())
            out.extend(b"e")
    out.extend(b"u.")
    return bytes(out)


def main():
    cp = os.path.join(OUT, "cifar-100-python")
    os.makedirs(cp, exist_ok=True)
    train = {
        "batch_label": "training batch 1 of 1",
        "filenames": [f"img_{i}.png" for i in range(5)],
        "fine_labels": [0, 1, 2, 3, 99],
        "coarse_labels": [0, 1, 1, 0, 19],
        "data": images(5),
    }
    with open(os.path.join(cp, "train"), "wb") as f:
        pickle.dump(train, f, protocol=4)
    test = {
        "batch_label": "testing batch 1 of 1",
        "fine_labels": [4, 3, 2],
        "coarse_labels": [1, 0, 1],
        "data": images(3),
    }
    blob = py2_pickle(test)
    back = pickle.loads(blob, encoding="bytes")
    assert back[b"fine_labels"] == [4, 3, 2] and (back[b"data"] == images(3)).all(), back.keys()
    with open(os.path.join(cp, "test"), "wb") as f:
        f.write(blob)
    with open(os.path.join(cp, "meta"), "wb") as f:
        pickle.dump({"fine_label_names": FINE, "coarse_label_names": COARSE}, f, protocol=2)

    fl = os.path.join(OUT, "flowers")
    os.makedirs(fl, exist_ok=True)
    labels = np.array([[1, 2, 102, 1, 2, 102, 5]], dtype=np.float64)  # 7 images
    scipy.io.savemat(os.path.join(fl, "imagelabels.mat"), {"labels": labels}, do_compression=True)
    bad = labels.copy()
    bad[0, 3] = 103
    scipy.io.savemat(os.path.join(fl, "imagelabels_bad.mat"), {"labels": bad}, do_compression=True)
    scipy.io.savemat(
        os.path.join(fl, "setid.mat"),
        {
            "trnid": np.array([[1, 2, 3]], dtype=np.float64),
            "valid": np.array([[4, 5]], dtype=np.float64),
            "tstid": np.array([[6, 7]], dtype=np.float64),
        },
    )


if __name__ == "__main__":
    main()
