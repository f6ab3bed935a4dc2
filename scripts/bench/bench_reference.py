#!/usr/bin/env python3
"""The reference engines of benches/encoders.rs: same weights, same inputs, same batch sizes.

Reads a JSON job on stdin: {"engine": "pytorch" | "onnxruntime", "threads": N, "reps": R,
"text": {"model_dir", "captions", "batches"}, "images": [{"name", "arch", "weights" (kit dir or
null), "batch"}], "clip": {"model_dir", "family", "captions", "batches", "image_size"},
"onnx_dir": where exports are cached}. Prints one JSON object with seconds per batch (median of
R timed reps after one warm-up) per workload.

PyTorch: text runs twice per batch size, f32 and with the Linear layers quantized by
`torch.ao.quantization.quantize_dynamic` (qint8, fbgemm), what a PyTorch user chasing CPU
throughput would run. A CLIP-family snapshot runs through its reference library (transformers'
CLIPModel / SiglipModel, or open_clip): `get_text_features` with its tokenizer (f32 and dynamic
int8), `get_image_features` on normalised tensors.

ONNX Runtime (what Immich's machine-learning service runs on the CPU): the same torch modules
exported by `torch.onnx.export` (opset 17, dynamic batch and sequence axes, as Immich's exporter
does), checked against PyTorch on the bench's own inputs (cosine printed to stderr), then run in
the CPU execution provider with `intra_op_num_threads` = the job's threads and every graph
optimisation on. Its int8 rows are onnxruntime's own `quantize_dynamic` (QInt8 weights), what an
ONNX Runtime user chasing CPU throughput would run. Tokenization is in the timed loop on both
engines, as in the candle runs.
"""
import hashlib
import json
import os
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


class Wrap(torch.nn.Module):
    """A function of named tensors as a module, for the exporter."""

    def __init__(self, fn, owner):
        super().__init__()
        self.fn, self.owner = fn, owner

    def forward(self, *xs):
        return self.fn(*xs)


class Engine:
    """`compile(key, fn, module, example)` turns `fn(*tensors)` into a callable of a dict of
    tensors, run by PyTorch or, exported once, by onnxruntime."""

    def __init__(self, job):
        self.name = job.get("engine", "pytorch")
        self.threads = job["threads"]
        self.cache = job.get("onnx_dir") or os.path.expanduser("~/.cache/xmodal-onnx")

    def compile(self, key, fn, module, example, int8=False, seq_axes=()):
        names = list(example)
        if self.name == "pytorch":
            return lambda inputs: fn(*[inputs[n] for n in names])
        import onnxruntime as ort
        # the weights and this script (which defines what is exported) name the export
        with open(__file__, "rb") as f:
            script = hashlib.sha256(f.read()).hexdigest()
        tag = hashlib.sha256(json.dumps([key, script, sorted(self.weights_id(module))]).encode()).hexdigest()[:16]
        os.makedirs(self.cache, exist_ok=True)
        path = os.path.join(self.cache, f"{key}-{tag}.onnx")
        if not os.path.exists(path):
            axes = {n: ({0: "batch", 1: "seq"} if n in seq_axes else {0: "batch"}) for n in names}
            axes["out"] = {0: "batch"}
            torch.onnx.export(Wrap(fn, module).eval(), tuple(example[n] for n in names), path + ".tmp",
                              input_names=names, output_names=["out"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)
            os.replace(path + ".tmp", path)
        if int8:
            qpath = path[:-5] + "-int8.onnx"
            if not os.path.exists(qpath):
                from onnxruntime.quantization import QuantType, quantize_dynamic
                quantize_dynamic(path, qpath + ".tmp", weight_type=QuantType.QInt8)
                os.replace(qpath + ".tmp", qpath)
            path = qpath
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        want = fn(*[example[n] for n in names])
        got = torch.from_numpy(session.run(None, {n: example[n].numpy() for n in names})[0])
        cos = torch.nn.functional.cosine_similarity(want.flatten(1), got.flatten(1)).min().item()
        print(f"onnxruntime {key}{' int8' if int8 else ''}: min cosine to PyTorch {cos:.7f}", file=sys.stderr)
        return lambda inputs: session.run(None, {n: inputs[n].numpy() for n in names})[0]

    @staticmethod
    def weights_id(module):
        return [f"{k}:{tuple(v.shape)}:{float(v.float().flatten()[:8].sum()):.6e}" for k, v in module.state_dict().items()]


def text_bench(job, reps, engine):
    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(job["model_dir"])
    caps = job["captions"]
    tokenize = lambda batch: dict(tok(batch, padding=True, truncation=True, max_length=256, return_tensors="pt"))
    example = tokenize(caps[:2])
    models = {}
    for name in ("f32", "int8"):
        model = AutoModel.from_pretrained(job["model_dir"]).eval()
        if name == "int8" and engine.name == "pytorch":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        names = list(example)

        def pooled(*xs, model=model, names=names):
            enc = dict(zip(names, xs))
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            return (h * m).sum(1) / m.sum(1)
        models[name] = engine.compile("minilm", pooled, model, example, int8=name == "int8", seq_axes=names)
    out = {}
    for b in job["batches"]:
        batches = [caps[i:i + b] for i in range(0, len(caps), b)]
        for name, run_model in models.items():
            out[f"text-{name}-b{b}"] = timed(lambda: [run_model(tokenize(batch)) for batch in batches], reps) / len(batches)
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


def features(out):
    """transformers 5's `get_*_features` return the projected features as `pooler_output`."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def clip_bench(job, reps, engine):
    """The towers of a CLIP-family snapshot as its own library runs them."""
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
        text_fn = lambda m: (lambda text: m.encode_text(text))
        image_fn = lambda x: model.encode_image(x)
    else:
        from transformers import AutoModel, AutoTokenizer
        model = AutoModel.from_pretrained(d).eval()
        tokenizer = AutoTokenizer.from_pretrained(d)
        if family == "siglip":
            tokenize = lambda texts: {"input_ids": tokenizer(texts, padding="max_length", truncation=True, max_length=64, return_tensors="pt")["input_ids"]}
        else:
            tokenize = lambda texts: dict(tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt"))

        def text_fn(m):
            def run(*xs):
                return features(m.get_text_features(**dict(zip(names, xs))))
            return run
        image_fn = lambda x: features(model.get_image_features(pixel_values=x))
    caps, out = job["captions"], {}
    example = tokenize(caps[:2])
    names = list(example)
    seq = names if family == "clip" else ()
    towers = {"f32": engine.compile(f"{family}-text", text_fn(model), model, example, seq_axes=seq)}
    if engine.name == "onnxruntime":
        towers["int8"] = engine.compile(f"{family}-text", text_fn(model), model, example, int8=True, seq_axes=seq)
    elif family != "openclip":
        int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        towers["int8"] = engine.compile(f"{family}-text", text_fn(int8), int8, example)
    size = job["image_size"]
    image = engine.compile(f"{family}-image", image_fn, model,
                           {"pixel_values": torch.linspace(-1, 1, 2 * 3 * size * size).reshape(2, 3, size, size).sin()})
    for b in job["batches"]:
        batches = [caps[i:i + b] for i in range(0, len(caps), b)][:max(1, 64 // b)]
        for name, run_text in towers.items():
            out[f"clip-text-{name}-b{b}"] = timed(lambda: [run_text(tokenize(batch)) for batch in batches], reps) / len(batches)
        x = {"pixel_values": torch.linspace(-1, 1, b * 3 * size * size).reshape(b, 3, size, size).sin()}
        out[f"clip-image-b{b}"] = timed(lambda: image(x), reps)
    return out


def main():
    job = json.load(sys.stdin)
    torch.manual_seed(0)  # randomly initialised models are the same each round: exports are reused
    torch.set_num_threads(job["threads"])
    torch.set_grad_enabled(False)
    engine = Engine(job)
    if engine.name == "onnxruntime":
        import onnxruntime
        out = {"engine": f"onnxruntime {onnxruntime.__version__}"}
    else:
        out = {"engine": f"torch {torch.__version__}"}
    out["threads"] = job["threads"]
    if job.get("text"):
        out.update(text_bench(job["text"], job["reps"], engine))
    if job.get("clip"):
        out.update(clip_bench(job["clip"], job["reps"], engine))
    for img in job.get("images", []):
        fn, module = image_model(img["arch"], img.get("weights"))
        module.eval()
        x = torch.linspace(-1, 1, img["batch"] * 3 * 224 * 224).reshape(img["batch"], 3, 224, 224).sin()
        run = engine.compile(img["name"], fn, module, {"x": x[:2]})
        out[img["name"]] = timed(lambda: run({"x": x}), img.get("reps", job["reps"]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
