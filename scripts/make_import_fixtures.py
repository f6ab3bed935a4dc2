#!/usr/bin/env python3
"""Fixtures for tests/import.rs, in the exact formats researchers distribute precomputed features:

- Karpathy's Flickr30k release: `vgg_feats.mat`, a MATLAB v5 file holding `feats`, D x N (one
  column per image, in the order of `dataset_flickr30k.json`), written with scipy.io.savemat as
  the original was. It pairs with tests/fixtures/flickr30k/dataset_flickr30k.json (10 images).
- The VSE++/SCAN `data/<name>_precomp/` layout: `{train,dev,test}_ims.npy` (N x D float32) and
  `{train,dev,test}_caps.txt` (5 captions per image, in order); `f30k_precomp` has one row per
  image, `coco_precomp` repeats each image's row 5 times (one per caption).
- Broken variants that the importer must refuse: NaN rows, too few columns, integer dtype, a
  float16 .npy, a caption count that is not 5 per image.

Feature values follow a formula the test recomputes: image j (0-based, file order), dim d ->
(j + 1) + d / 1000. Run with a Python that has numpy and scipy:
    python scripts/make_import_fixtures.py
"""
import os

import numpy as np
import scipy.io

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
OUT = os.path.join(ROOT, "import")
DIMS = 16


def feats(n, dims=DIMS):
    j = np.arange(n, dtype=np.float64)[:, None]
    d = np.arange(dims, dtype=np.float64)[None, :]
    return ((j + 1) + d / 1000).astype(np.float32)  # N x D


def karpathy():
    n = 10  # images in tests/fixtures/flickr30k/dataset_flickr30k.json
    os.makedirs(OUT, exist_ok=True)
    f = feats(n)
    scipy.io.savemat(os.path.join(OUT, "vgg_feats.mat"), {"feats": f.T})
    # MATLAB's default class is double; some copies of the file were re-saved that way
    scipy.io.savemat(os.path.join(OUT, "vgg_feats_double.mat"), {"feats": f.T.astype(np.float64)})
    bad = f.copy()
    bad[3, 5] = np.nan
    bad[7, 0] = np.inf
    scipy.io.savemat(os.path.join(OUT, "vgg_feats_nan.mat"), {"feats": bad.T})
    scipy.io.savemat(os.path.join(OUT, "vgg_feats_short.mat"), {"feats": f[:9].T})
    scipy.io.savemat(os.path.join(OUT, "vgg_feats_int.mat"), {"feats": (f.T * 10).astype(np.int32)})
    scipy.io.savemat(os.path.join(OUT, "vgg_feats_wrongname.mat"), {"features": f.T})


WORDS = ["dog", "cat", "bird", "horse", "child", "woman", "man", "boat", "car", "tree"]
COLOURS = ["red", "blue", "green", "yellow", "black"]


def captions(n, offset):
    lines = []
    for i in range(n):
        w = WORDS[(i + offset) % len(WORDS)]
        for c in range(5):
            lines.append(f"a {COLOURS[c]} {w} number {i + offset} in scene {c}")
    return lines


def precomp(name, sizes, repeat):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    offset = 0
    for split, n in sizes:
        f = feats(n)
        f[:, 0] += offset  # rows differ across splits too
        if repeat:
            f = np.repeat(f, 5, axis=0)
        np.save(os.path.join(d, f"{split}_ims.npy"), f)
        with open(os.path.join(d, f"{split}_caps.txt"), "w") as fh:
            fh.write("\n".join(captions(n, offset)) + "\n")
        offset += n


def broken_precomp():
    base = os.path.join(OUT, "broken_precomp")
    cases = {
        "nan": lambda f, caps: (np.where(np.arange(f.shape[0])[:, None] == 2, np.nan, f).astype(np.float32), caps),
        "float16": lambda f, caps: (f.astype(np.float16), caps),
        "caps4": lambda f, caps: (f, caps[:-1]),
        "rows": lambda f, caps: (f[:-1], caps),
        "rank1": lambda f, caps: (f[:, 0].copy(), caps),
    }
    for case, make in cases.items():
        d = os.path.join(base, case)
        os.makedirs(d, exist_ok=True)
        f, caps = make(feats(4), captions(4, 0))
        np.save(os.path.join(d, "train_ims.npy"), f)
        with open(os.path.join(d, "train_caps.txt"), "w") as fh:
            fh.write("\n".join(caps) + "\n")


if __name__ == "__main__":
    karpathy()
    precomp("f30k_precomp", [("train", 8), ("dev", 2), ("test", 2)], repeat=False)
    precomp("coco_precomp", [("train", 6), ("dev", 2), ("test", 2)], repeat=True)
    broken_precomp()
    print("wrote", OUT)
