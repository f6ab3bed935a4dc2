#!/usr/bin/env python3
"""PyTorch side of benches/encoders.rs: same weights, same inputs, same batch sizes.

Reads a JSON job on stdin: {"threads": N, "reps": R, "text": {"model_dir", "captions", "batches"},
"images": [{"name", "arch", "weights" (kit dir or null), "batch"}], "clip": {"model_dir",
"family", "captions", "batches", "image_size"}}. Prints one JSON object with seconds per batch
(median of R timed reps after one warm-up) per workload. Text runs twice per batch size: f32, and
with the Linear layers quantized by `torch.ao.quantization.quantize_dynamic` (qint8, fbgemm),
what a PyTorch user chasing CPU throughput would run. A CLIP-family snapshot runs through its
reference library (transformers' CLIPModel / SiglipModel, or open_clip): `get_text_features`
with its tokenizer (f32 and dynamic int8), `get_image_features` on normalised tensors.
"""
import json
import statistics
import sys
import time

import torch


def timed(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def text_bench(job, reps):
    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(job["model_dir"])
    f32 = AutoModel.from_pretrained(job["model_dir"]).eval()
    int8 = torch.ao.quantization.quantize_dynamic(
        AutoModel.from_pretrained(job["model_dir"]).eval(), {torch.nn.Linear}, dtype=torch.qint8)
    caps = job["captions"]
    out = {}
    for b in job["batches"]:
        batches = [caps[i:i + b] for i in range(0, len(caps), b)]
        for name, model in (("f32", f32), ("int8", int8)):
            def run():
                for batch in batches:
                    enc = tok(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
                    h = model(**enc).last_hidden_state
                    m = enc["attention_mask"].unsqueeze(-1).float()
                    (h * m).sum(1) / m.sum(1)
            out[f"text-{name}-b{b}"] = timed(run, reps) / len(batches)
    return out


def image_model(arch, weights):
    import torchvision
    if arch == "efficientnet_lite0":
        from efficientnet_lite_pytorch import EfficientNet
        m = EfficientNet.from_name("efficientnet-lite0")
        return lambda x: m.extract_features(x).mean((2, 3)), m
    if arch == "mobilenet_v2":
        m = torchvision.models.mobilenet_v2()
        return lambda x: m.features(x).mean((2, 3)), m
    if arch == "resnet50":
        m = torchvision.models.resnet50()
        m.fc = torch.nn.Identity()
        return m, m
    if arch == "vgg16":
        m = torchvision.models.vgg16()
        return lambda x: m.classifier[:5](torch.flatten(m.avgpool(m.features(x)), 1)), m
    raise SystemExit(f"unknown arch {arch}")


def clip_bench(job, reps):
    """The towers of a CLIP-family snapshot as its own library runs them."""
    import os
    d, family = job["model_dir"], job["family"]
    if family == "openclip":
        import open_clip
        import safetensors.torch
        with open(os.path.join(d, "open_clip_config.json")) as f:
            cfg = json.load(f)["model_cfg"]
        model = open_clip.CLIP(**cfg).eval()
        model.load_state_dict(safetensors.torch.load_file(os.path.join(d, "open_clip_model.safetensors")))
        tokenizer = open_clip.tokenizer.SimpleTokenizer()
        tokenize = lambda texts: {"text": tokenizer(texts)}
        text_fn = lambda m, enc: m.encode_text(enc["text"])
        image_fn = lambda m, x: m.encode_image(x)
    else:
        from transformers import AutoModel, AutoTokenizer
        model = AutoModel.from_pretrained(d).eval()
        tokenizer = AutoTokenizer.from_pretrained(d)
        if family == "siglip":
            tokenize = lambda texts: {"input_ids": tokenizer(texts, padding="max_length", truncation=True, max_length=64, return_tensors="pt")["input_ids"]}
        else:
            tokenize = lambda texts: dict(tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt"))
        text_fn = lambda m, enc: m.get_text_features(**enc)
        image_fn = lambda m, x: m.get_image_features(pixel_values=x)
    int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8) if family != "openclip" else None
    caps, out = job["captions"], {}
    for b in job["batches"]:
        batches = [caps[i:i + b] for i in range(0, len(caps), b)][:max(1, 64 // b)]
        for name, m in (("f32", model), ("int8", int8)):
            if m is None:
                continue
            out[f"clip-text-{name}-b{b}"] = timed(lambda: [text_fn(m, tokenize(batch)) for batch in batches], reps) / len(batches)
        size = job["image_size"]
        x = torch.linspace(-1, 1, b * 3 * size * size).reshape(b, 3, size, size).sin()
        out[f"clip-image-b{b}"] = timed(lambda: image_fn(model, x), reps)
    return out


def main():
    job = json.load(sys.stdin)
    torch.set_num_threads(job["threads"])
    torch.set_grad_enabled(False)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if job.get("text"):
        out.update(text_bench(job["text"], job["reps"]))
    if job.get("clip"):
        out.update(clip_bench(job["clip"], job["reps"]))
    for img in job.get("images", []):
        fn, module = image_model(img["arch"], img.get("weights"))
        module.eval()
        x = torch.linspace(-1, 1, img["batch"] * 3 * 224 * 224).reshape(img["batch"], 3, 224, 224).sin()
        out[img["name"]] = timed(lambda: fn(x), img.get("reps", job["reps"]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
