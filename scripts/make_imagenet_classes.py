#!/usr/bin/env python3
"""Write models/imagenet_classes.txt: the 1000 ImageNet-1k class names, one per line in class-index
order, as torchvision lists them (torchvision.models._meta._IMAGENET_CATEGORIES, BSD-3-Clause).
Used by the zero-shot (ConSE) head. Run once with torchvision installed; the output is committed.
"""
import os

from torchvision.models._meta import _IMAGENET_CATEGORIES as NAMES

assert len(NAMES) == 1000
out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "imagenet_classes.txt")
with open(out, "w") as f:
    for name in NAMES:
        f.write(name + "\n")
print(f"wrote {out}")
