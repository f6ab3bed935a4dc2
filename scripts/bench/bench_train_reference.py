#!/usr/bin/env python3
"""PyTorch side of benches/train.rs: the same heads (Linear-PReLU-Dropout-Linear, L2-normalised),
the same VSE++ max-violation loss, batch, optimiser and features; prints seconds per epoch.

usage: bench_train_reference.py DIR   (DIR holds images.f32, texts.f32, text_image.json, params.json)
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def head(inp, hidden, out, p):
    return torch.nn.Sequential(torch.nn.Linear(inp, hidden), torch.nn.PReLU(), torch.nn.Dropout(p), torch.nn.Linear(hidden, out))


def main():
    d = sys.argv[1]
    p = json.load(open(os.path.join(d, "params.json")))
    torch.set_num_threads(p["threads"])
    torch.manual_seed(0)
    images = torch.from_numpy(np.fromfile(os.path.join(d, "images.f32"), dtype="<f4").reshape(-1, p["image_dims"]))
    texts = torch.from_numpy(np.fromfile(os.path.join(d, "texts.f32"), dtype="<f4").reshape(-1, p["text_dims"]))
    text_image = torch.tensor(json.load(open(os.path.join(d, "text_image.json"))))
    img_head = head(p["image_dims"], p["width"], p["out"], p["dropout"])
    txt_head = head(p["text_dims"], p["width"], p["out"], p["dropout"])
    params = list(img_head.parameters()) + list(txt_head.parameters())
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    b = p["batch"]
    times = []
    for _ in range(p["epochs"]):
        order = torch.randperm(len(texts))
        t0 = time.perf_counter()
        for i in range(0, len(order), b):
            idx = order[i:i + b]
            if len(idx) < 2:
                continue
            img_idx = text_image[idx]
            ei = F.normalize(img_head(images[img_idx]), dim=1)
            et = F.normalize(txt_head(texts[idx]), dim=1)
            scores = ei @ et.t()
            pos = scores.diag()
            same = img_idx[:, None] == img_idx[None, :]
            masked = scores.masked_fill(same, -1e4)
            cost_c = (0.2 + masked - pos[:, None]).clamp(min=0).max(1)[0].sum()
            cost_i = (0.2 + masked - pos[None, :]).clamp(min=0).max(0)[0].sum()
            loss = cost_c + cost_i
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 2.0)
            opt.step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"epoch_s": sorted(times)[len(times) // 2], "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
