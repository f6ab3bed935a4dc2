#!/usr/bin/env python3
"""Near-duplicate threshold, measured: the demo gallery's photos and copies of each made by
Pillow (an independent encoder) — re-encoded as JPEG quality 50, resized to 1/2 and to 1/4, and
cropped to the central 90% — served as one photo folder by `xmodal serve --library`. For every
photo its 10 nearest (`GET /v1/images/{id}/similar`) give the similarity of each copy to its
original and of the closest photo that is no copy. Then `GET /v1/duplicates` at the chosen
threshold is scored: a group is right when it holds one photo's copies and nothing else.

    bench_duplicates.py MAKE DIR            # write the folder (gallery images from the kit)
    bench_duplicates.py MEASURE DIR URL     # against a server over DIR
"""
import io
import json
import statistics
import sys
import urllib.request
from pathlib import Path

VARIANTS = {
    "q50": "JPEG quality 50",
    "half": "1/2 size, JPEG 85",
    "quarter": "1/4 size, JPEG 85",
    "crop90": "central 90%, JPEG 85",
}
SEP = "__"


def make(out: Path) -> None:
    from PIL import Image

    gallery = Path("models/demo-gallery/images")
    out.mkdir(parents=True, exist_ok=True)
    for src in sorted(gallery.iterdir()):
        img = Image.open(src).convert("RGB")
        stem = src.stem
        img.save(out / f"{stem}.jpg", quality=95)
        img.save(out / f"{stem}{SEP}q50.jpg", quality=50)
        w, h = img.size
        img.resize((w // 2, h // 2), Image.LANCZOS).save(out / f"{stem}{SEP}half.jpg", quality=85)
        img.resize((max(w // 4, 16), max(h // 4, 16)), Image.LANCZOS).save(
            out / f"{stem}{SEP}quarter.jpg", quality=85)
        dx, dy = w // 20, h // 20
        img.crop((dx, dy, w - dx, h - dy)).save(out / f"{stem}{SEP}crop90.jpg", quality=85)


def get(url: str) -> dict:
    with urllib.request.urlopen(url) as r:
        return json.load(r)


def source(image_id: str) -> str:
    return image_id.split(SEP)[0].removesuffix(".jpg")


def measure(folder: Path, url: str) -> None:
    ids = sorted(p.name for p in folder.iterdir())
    copy_scores = {v: [] for v in VARIANTS}
    distinct_best = []
    for i in ids:
        hits = get(f"{url}/v1/images/{i}/similar?k=10")["results"]
        if SEP not in i:
            for h in hits:
                j = h["image_id"]
                if source(j) == source(i) and SEP in j:
                    copy_scores[j.split(SEP)[1].removesuffix(".jpg")].append(h["score"])
        others = [h["score"] for h in hits if source(h["image_id"]) != source(i)]
        distinct_best.append(max(others) if others else -1.0)
    print(f"{len(ids)} photos: {len(ids) // (len(VARIANTS) + 1)} originals and {len(VARIANTS)} copies of each\n")
    print("| pair | n | min | 5th pct | median |")
    print("|---|---|---|---|---|")
    for v, label in VARIANTS.items():
        s = sorted(copy_scores[v])
        missing = len(ids) // (len(VARIANTS) + 1) - len(s)
        print(f"| original ↔ {label} | {len(s)} (+{missing} not in its 10 nearest) | {s[0]:.4f} | "
              f"{s[len(s) // 20]:.4f} | {statistics.median(s):.4f} |")
    d = sorted(distinct_best)
    print(f"| each photo ↔ its closest non-copy | {len(d)} | max {d[-1]:.4f} | 99th pct "
          f"{d[int(len(d) * 0.99)]:.4f} | {statistics.median(d):.4f} |")
    print()
    for threshold in [float(t) for t in sys.argv[4:]] or [None]:
        q = f"&threshold={threshold}" if threshold is not None else ""
        found = get(f"{url}/v1/duplicates?limit=100{q}")
        groups = found["groups"]
        pure = sum(1 for g in groups if len({source(m["image_id"]) for m in g["images"]}) == 1)
        grouped = {m["image_id"] for g in groups for m in g["images"]}
        copies_grouped = {}
        for g in groups:
            members = [m["image_id"] for g2 in [g] for m in g2["images"]]
            for m in members:
                if SEP in m and source(m) + ".jpg" in members:
                    v = m.split(SEP)[1].removesuffix(".jpg")
                    copies_grouped[v] = copies_grouped.get(v, 0) + 1
        n = len(ids) // (len(VARIANTS) + 1)
        print(f"/v1/duplicates at {found['threshold']}: {found['total_groups']} groups, {pure} of them "
              f"one photo's copies only; {len(grouped)} images grouped; copies in their original's "
              f"group: " + ", ".join(f"{VARIANTS[v]} {copies_grouped.get(v, 0)}/{n}" for v in VARIANTS)
              + f" ({found['took_ms']:.0f} ms)")


if __name__ == "__main__":
    if sys.argv[1] == "MAKE":
        make(Path(sys.argv[2]))
    else:
        measure(Path(sys.argv[2]), sys.argv[3])
