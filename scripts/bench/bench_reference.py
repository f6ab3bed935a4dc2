#!/usr/bin/env python3
"""PyTorch side of benches/encoders.rs: same weights, same inputs, same batch sizes.

Reads a JSON job on stdin: {"threads": N, "reps": R, "text": {"model_dir", "captions", "batch"},
"images": [{"name", "arch", "weights" (kit dir or null), "batch"}]}. Prints one JSON object with
seconds per batch (median of R timed reps after one warm-up) per workload.
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
    model = AutoModel.from_pretrained(job["model_dir"]).eval()
    caps, b = job["captions"], job["batch"]
    batches = [caps[i:i + b] for i in range(0, len(caps), b)]

    def run():
        for batch in batches:
            enc = tok(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            (h * m).sum(1) / m.sum(1)
    return timed(run, reps) / len(batches)


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


def main():
    job = json.load(sys.stdin)
    torch.set_num_threads(job["threads"])
    torch.set_grad_enabled(False)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if job.get("text"):
        out["text"] = text_bench(job["text"], job["reps"])
    for img in job.get("images", []):
        fn, module = image_model(img["arch"], img.get("weights"))
        module.eval()
        x = torch.linspace(-1, 1, img["batch"] * 3 * 224 * 224).reshape(img["batch"], 3, 224, 224).sin()
        out[img["name"]] = timed(lambda: fn(x), img.get("reps", job["reps"]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
