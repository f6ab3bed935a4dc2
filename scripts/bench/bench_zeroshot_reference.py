#!/usr/bin/env python3
"""The plain ConSE reference for scripts/bench/bench-zeroshot, computed in PyTorch.

ConSE (Norouzi et al. 2014) as a PyTorch user would first write it: EfficientNet-Lite0's softmax
over ImageNet-1k, the top T = 10 classes renormalised, the image placed at the weighted mean of the
MiniLM embeddings of "a photo of a {class}" (one template, torchvision's class names), images
resized with PIL's bicubic filter (EfficientNet's own eval transform) to 256 and centre-cropped
to 224. Same kit weights and photos as xmodal.

Scores the demo gallery's held-out captions only (`held_out` in dataset.jsonl, fixed before any
tuning): caption → image and image → caption, R@1, R@5 and the top-3 hit rate (the share of
queries whose match is among the first three). Prints one JSON object.

Usage: bench_zeroshot_reference.py MODELS_DIR
"""
import json
import os
import sys

import torch
from PIL import Image
from safetensors.torch import load_file

TOP = 10
TEMPLATE = "a photo of a {}"


def text_encoder(model_dir):
    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()

    def encode(texts):
        out = []
        for i in range(0, len(texts), 64):
            enc = tok(texts[i:i + 64], padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1))
        return torch.cat(out)
    return encode


def efficientnet(model_dir):
    from efficientnet_lite_pytorch import EfficientNet
    m = EfficientNet.from_name("efficientnet-lite0")
    m.load_state_dict(load_file(os.path.join(model_dir, "model.safetensors")))
    return m.eval()


def preprocess(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    w, h = img.size
    left, top = round((w - 224) / 2), round((h - 224) / 2)
    img = img.crop((left, top, left + 224, top + 224))
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).float().view(224, 224, 3)
    return ((x - 127.0) / 128.0).permute(2, 0, 1)


def ranks(scores, truth):
    """1-based rank of the best-ranked true item for each query row."""
    order = scores.argsort(dim=1, descending=True)
    out = []
    for q in range(scores.shape[0]):
        pos = [i for i, item in enumerate(order[q].tolist()) if item in truth[q]]
        out.append(pos[0] + 1)
    return out


def summary(r):
    n = len(r)
    return {"r1": 100 * sum(x <= 1 for x in r) / n, "r5": 100 * sum(x <= 5 for x in r) / n,
            "top3": 100 * sum(x <= 3 for x in r) / n, "queries": n}


def main():
    models = sys.argv[1]
    gallery = os.path.join(models, "demo-gallery")
    items = [json.loads(line) for line in open(os.path.join(gallery, "dataset.jsonl")) if line.strip()]
    captions, owner = [], []
    for i, item in enumerate(items):
        for c in item["held_out"]:
            captions.append(item["captions"][c])
            owner.append(i)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    encode = text_encoder(os.path.join(models, "minilm-l6"))
    names = open(os.path.join(models, "imagenet_classes.txt")).read().splitlines()
    with torch.no_grad():
        classes = encode([TEMPLATE.format(n) for n in names])
        net = efficientnet(os.path.join(models, "efficientnet-lite0"))
        x = torch.stack([preprocess(os.path.join(gallery, it["image"])) for it in items])
        probs = torch.softmax(net(x), dim=1)
        top, idx = probs.topk(TOP, dim=1)
        weights = torch.zeros_like(probs).scatter(1, idx, top / top.sum(1, keepdim=True))
        images = torch.nn.functional.normalize(weights @ classes, dim=1)
        texts = encode(captions)
    sim = texts @ images.T
    t2i = ranks(sim, [{o} for o in owner])
    i2t = ranks(sim.T, [{q for q, o in enumerate(owner) if o == i} for i in range(len(items))])
    print(json.dumps({"images": len(items), "captions": len(captions),
                      "t2i": summary(t2i), "i2t": summary(i2t)}))


if __name__ == "__main__":
    main()
