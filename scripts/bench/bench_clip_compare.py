#!/usr/bin/env python3
"""The comparisons scripts/bench/bench-clip prints: `xmodal embed` output (JSON lines) against
the reference outputs of the full-size CLIP-family models (reference.json from
scripts/fixtures/make_clip_fixtures.py --full), and the reference processors' crops of every
gallery photo for the whole-gallery preprocessing check.

    bench_clip_compare.py crops DIR GALLERY     # write DIR/{clip,siglip,openclip}/<photo>.png
    bench_clip_compare.py compare REF KEY WHAT EMBED_JSONL   # WHAT: text | image
"""
import json
import os
import sys

import numpy as np


def crops(out, gallery):
    import open_clip
    from PIL import Image
    from transformers import CLIPImageProcessorPil, SiglipImageProcessorPil
    oc = open_clip.image_transform(224, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD)
    makers = {
        "clip": (lambda im, p=CLIPImageProcessorPil(): p(images=im, return_tensors="pt")["pixel_values"][0].numpy(), CLIPImageProcessorPil()),
        "siglip": (lambda im, p=SiglipImageProcessorPil(): p(images=im, return_tensors="pt")["pixel_values"][0].numpy(), SiglipImageProcessorPil()),
    }
    for kind, (fn, p) in makers.items():
        os.makedirs(os.path.join(out, kind), exist_ok=True)
        for name in sorted(os.listdir(gallery)):
            im = Image.open(os.path.join(gallery, name)).convert("RGB")
            px = fn(im) * np.array(p.image_std)[:, None, None] + np.array(p.image_mean)[:, None, None]
            arr = np.clip(np.rint(px * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
            Image.fromarray(arr).save(os.path.join(out, kind, os.path.splitext(name)[0] + ".png"))
    os.makedirs(os.path.join(out, "openclip"), exist_ok=True)
    mean, std = np.array(open_clip.OPENAI_DATASET_MEAN), np.array(open_clip.OPENAI_DATASET_STD)
    for name in sorted(os.listdir(gallery)):
        px = oc(Image.open(os.path.join(gallery, name))).numpy() * std[:, None, None] + mean[:, None, None]
        arr = np.clip(np.rint(px * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(arr).save(os.path.join(out, "openclip", os.path.splitext(name)[0] + ".png"))


def compare(ref_path, key, what, embed_jsonl):
    ref = np.array(json.load(open(ref_path))[key][what], dtype=np.float64)
    ours = np.array([json.loads(l)["embedding"] for l in open(embed_jsonl) if l.strip()], dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    diff = np.abs(ours - ref).max()
    print(f"| {key} | {what} | {len(ref)} | {cos.min():.7f} | {diff:.2e} | {np.abs(ref).max():.3f} |")


if __name__ == "__main__":
    if sys.argv[1] == "crops":
        crops(sys.argv[2], sys.argv[3])
    else:
        compare(*sys.argv[2:6])
