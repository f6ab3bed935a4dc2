#!/usr/bin/env python3
"""PyTorch side of benches/encoders.rs: same weights, same inputs, same batch sizes.

Reads a JSON job on stdin: {"threads": N, "reps": R, "text": {"model_dir", "captions", "batches"},
"images": [{"name", "arch", "weights" (kit dir or null), "batch"}]}. Prints one JSON object with
seconds per batch (median of R timed reps after one warm-up) per workload. Text runs twice per
batch size: f32, and with the Linear layers quantized by `torch.ao.quantization.quantize_dynamic`
(qint8, fbgemm), what a PyTorch user chasing CPU throughput would run.
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


def main():
    job = json.load(sys.stdin)
    torch.set_num_threads(job["threads"])
    torch.set_grad_enabled(False)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if job.get("text"):
        out.update(text_bench(job["text"], job["reps"]))
    for img in job.get("images", []):
        fn, module = image_model(img["arch"], img.get("weights"))
        module.eval()
        x = torch.linspace(-1, 1, img["batch"] * 3 * 224 * 224).reshape(img["batch"], 3, 224, 224).sin()
        out[img["name"]] = timed(lambda: fn(x), img.get("reps", job["reps"]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
