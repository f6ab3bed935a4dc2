#!/usr/bin/env python3
"""Helpers shared by scripts/bench/bench-serve and scripts/bench/bench-replicas (stdlib only).

  bench_wrk.py lua SYNTH_DIR OUT_DIR      wrk scripts with rotating queries: text.lua (the distinct
                                          captions of the test scenes, up to 5000, shuffled),
                                          zipf.lua (50000 draws from them, Zipf s=1: a real query
                                          stream's repeats), image.lua (32 test scene files)
  bench_wrk.py emb-lua SYNTH_DIR OUT_DIR  emb1.lua / emb32.lua: POST /v1/embeddings with 1 or 32 of
                                          those captions per call
  bench_wrk.py serve-report WORK IMAGES SECONDS
  bench_wrk.py embeddings-report WORK SECONDS
  bench_wrk.py replicas-report WORK IMAGES SECONDS
"""
import json
import os
import random
import re
import sys


def write_lua(src, out):
    rows = [json.loads(l) for l in open(os.path.join(src, "dataset.jsonl"))]
    test = [r for r in rows if r.get("split") == "test"]
    rng = random.Random(7)
    queries = sorted({c for r in test for c in r["captions"]})
    rng.shuffle(queries)
    queries = queries[:5000]
    weights = [1 / rank for rank in range(1, len(queries) + 1)]
    zipf = rng.choices(queries, weights, k=50000)
    images = [r["image"] if os.path.isabs(r["image"]) else os.path.join(src, r["image"]) for r in test[:32]]
    for name, stream in (("text", queries), ("zipf", zipf)):
        with open(os.path.join(out, f"{name}.lua"), "w") as f:
            f.write("local q = {" + ",".join(json.dumps(json.dumps({"query": q, "k": 10})) for q in stream) + "}\n")
            f.write('local i = 0\nwrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
            f.write('request = function()\n  i = i % #q + 1\n  return wrk.format(nil, "/v1/search/text", nil, q[i])\nend\n')
    with open(os.path.join(out, "image.lua"), "w") as f:
        f.write("local files = {" + ",".join(json.dumps(p) for p in images) + "}\nlocal bodies = {}\n")
        f.write('for n, p in ipairs(files) do local h = io.open(p, "rb"); bodies[n] = h:read("*a"); h:close() end\n')
        f.write('local i = 0\nwrk.method = "POST"\nwrk.headers["Content-Type"] = "image/png"\n')
        f.write('request = function()\n  i = i % #bodies + 1\n  return wrk.format(nil, "/v1/search/image?k=10", nil, bodies[i])\nend\n')


def write_embedding_lua(src, out):
    rows = [json.loads(l) for l in open(os.path.join(src, "dataset.jsonl"))]
    queries = sorted({c for r in rows if r.get("split") == "test" for c in r["captions"]})
    random.Random(7).shuffle(queries)
    queries = queries[:4096]
    for n in (1, 32):
        calls = [queries[i:i + n] for i in range(0, len(queries) - n + 1, n)][:1024]
        bodies = [json.dumps({"input": c if n > 1 else c[0], "encoding_format": "float"}) for c in calls]
        with open(os.path.join(out, f"emb{n}.lua"), "w") as f:
            f.write("local q = {" + ",".join(json.dumps(b) for b in bodies) + "}\n")
            f.write('local i = 0\nwrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
            f.write('request = function()\n  i = i % #q + 1\n  return wrk.format(nil, "/v1/embeddings", nil, q[i])\nend\n')


def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]


def parse(path):
    """wrk --latency output → p50/p99 ms, requests/s, requests, non-2xx, socket errors."""
    t = open(path).read()
    p = {m.group(1): ms(m.group(2)) for m in re.finditer(r"^\s+(50|99)%\s+(\S+)", t, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    errs = re.search(r"Socket errors: (.*)", t)
    return {
        "p50": p["50"],
        "p99": p["99"],
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)),
        "requests": int(re.search(r"(\d+) requests in", t).group(1)),
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errs.group(1) if errs else "",
    }


def rss(work, name):
    """VmHWM/VmRSS summed over the server's processes (a pre-fork server has several)."""
    t = open(os.path.join(work, f"{name}-rss.txt")).read()
    out = {}
    for k, v in re.findall(r"(\w+):\s+(\d+) kB", t):
        out[k] = out.get(k, 0) + int(v) / 1024
    return out


def problems(label, r):
    if r["non2xx"] or r["socket_errors"]:
        return [f"{label}: {r['non2xx']} non-2xx of {r['requests']}; socket errors: {r['socket_errors'] or 0}"]
    return []


REFERENCE_LABELS = {
    "ref-1x2": "FastAPI + torch f32, micro-batched, 1 worker × 2 threads",
    "ref-2x1": "FastAPI + torch f32, micro-batched, 2 workers × 1 thread",
    "ref-1x2-int8": "same, 1 × 2, Linear layers int8 (quantize_dynamic)",
    "ref-2x1-int8": "same, 2 × 1, Linear layers int8 (quantize_dynamic)",
}

XMODAL_LABELS = {
    "xmodal": "xmodal (f32)",
    "xmodal-int8": "xmodal, `--text-quantization int8`",
}


def serve_report(work, images, secs):
    """One table of every server, then each xmodal row's ratios against the best f32 reference
    (the better caption → images throughput at c32) and against each int8 one."""
    ours = [n for n in XMODAL_LABELS if os.path.exists(os.path.join(work, f"{n}-rss.txt"))]
    names = ours + [n for n in REFERENCE_LABELS if os.path.exists(os.path.join(work, f"{n}-rss.txt"))]
    runs = {(n, kind, c): parse(os.path.join(work, f"{n}-{kind}-{c}.txt"))
            for n in names for kind in ("text", "image") for c in (1, 32)}
    print(f"\n{images} images, {secs}s per run, loopback, wrk with rotating queries (query cache off)\n")
    print("| server | caption→images c1 req/s | c1 p50 / p99 ms | c32 req/s | c32 p50 / p99 ms "
          "| image→captions c1 req/s | c1 p50 / p99 ms | c32 req/s | c32 p50 / p99 ms | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for n in names:
        cells = []
        for kind in ("text", "image"):
            for c in (1, 32):
                r = runs[(n, kind, c)]
                cells += [f"{r['rps']:.1f}", f"{r['p50']:.1f} / {r['p99']:.1f}"]
                notes += problems(f"{n} {kind} c={c}", r)
        label = XMODAL_LABELS.get(n) or REFERENCE_LABELS[n]
        print(f"| {label} | " + " | ".join(cells) + f" | {rss(work, n)['VmHWM']:.0f} |")
    f32 = [n for n in names if n.startswith("ref-") and not n.endswith("int8")]
    if f32:
        best = max(f32, key=lambda n: runs[(n, "text", 32)]["rps"])
        for x in ours:
            print(f"\nratios of {XMODAL_LABELS[x]} to the best f32 reference ({best}: {REFERENCE_LABELS[best]}) and to the int8 one")
            for ref in [best] + [n for n in names if n.startswith("ref-") and n.endswith("int8")]:
                t32 = runs[(x, "text", 32)]["rps"] / runs[(ref, "text", 32)]["rps"]
                i32 = runs[(x, "image", 32)]["rps"] / runs[(ref, "image", 32)]["rps"]
                p50 = runs[(x, "text", 1)]["p50"] / runs[(ref, "text", 1)]["p50"]
                mem = rss(work, x)["VmHWM"] / rss(work, ref)["VmHWM"]
                print(f"- vs {ref}: caption→images c32 throughput {t32:.2f}×, image→captions c32 {i32:.2f}×, "
                      f"caption→images c1 p50 {p50:.2f}×, peak RSS {mem:.2f}×")
    zipf = {m: os.path.join(work, f"xmodal-zipf-{m}.txt") for m in ("off", "on")}
    if all(os.path.exists(p) for p in zipf.values()):
        off, on = parse(zipf["off"]), parse(zipf["on"])
        hits = open(os.path.join(work, "xmodal-zipf-hits.txt")).read().strip()
        print(f"\nquery cache (Zipf s=1 stream, c32): off {off['rps']:.1f} req/s (p50 {off['p50']:.1f} ms), "
              f"on {on['rps']:.1f} req/s (p50 {on['p50']:.1f} ms), {on['rps'] / off['rps']:.2f}×; {hits}")
    for n in notes:
        print("note:", n)


def embeddings_report(work, secs):
    """Texts per second through POST /v1/embeddings, 1 and 32 texts per call at concurrency 1
    and 32, every server; xmodal's ratios to the best f32 and the best int8 reference."""
    names = [n for n in list(XMODAL_LABELS) + list(REFERENCE_LABELS)
             if os.path.exists(os.path.join(work, f"{n}-emb1-1.txt"))]
    runs = {(n, items, c): parse(os.path.join(work, f"{n}-emb{items}-{c}.txt"))
            for n in names for items in (1, 32) for c in (1, 32)}
    cases = [(1, 1), (1, 32), (32, 1), (32, 32)]
    print(f"\nPOST /v1/embeddings, captions of the generated scenes, {secs}s per run, loopback; texts/s (p50 ms)\n")
    print("| server | " + " | ".join(f"{i} per call, c{c}" for i, c in cases) + " |")
    print("|---|" + "---|" * len(cases))
    notes = []
    texts = lambda n, i, c: runs[(n, i, c)]["rps"] * i  # noqa: E731
    for n in names:
        cells = [f"{texts(n, i, c):.1f} ({runs[(n, i, c)]['p50']:.1f})" for i, c in cases]
        for i, c in cases:
            notes += problems(f"{n} {i} per call c={c}", runs[(n, i, c)])
        print(f"| {XMODAL_LABELS.get(n) or REFERENCE_LABELS[n]} | " + " | ".join(cells) + " |")
    refs = [n for n in names if n.startswith("ref-")]
    for group in ("f32", "int8"):
        pool = [n for n in refs if n.endswith("int8") == (group == "int8")]
        if not pool:
            continue
        # the best reference layout of the group in each case (none wins every case)
        best = {case: max(pool, key=lambda n: texts(n, *case)) for case in cases}
        for x in (n for n in names if not n.startswith("ref-")):
            ratios = ", ".join(f"{i}/call c{c} {texts(x, i, c) / texts(best[(i, c)], i, c):.2f}× ({best[(i, c)]})"
                               for i, c in cases)
            print(f"- {XMODAL_LABELS[x]} vs the best {group} reference: {ratios}")
    for n in notes:
        print("note:", n)


def replicas_report(work, images, secs):
    print(f"\ncaption → images, {images} images, concurrency 32 in total, {secs}s per run, loopback\n")
    print("| deployment | req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    notes = []
    for name, label in [("embedded", "embedded (SQLite + in-process HNSW), 1 process"),
                        ("pg1", "Postgres + pgvector, 1 replica"),
                        ("pg3", "Postgres + pgvector, 3 replicas")]:
        files = sorted(f for f in os.listdir(work) if f.startswith(f"{name}-") and f.endswith(".txt"))
        runs = [parse(os.path.join(work, f)) for f in files]
        if not runs:
            continue
        rps = sum(r["rps"] for r in runs)
        # several wrk processes (one per replica): the p50 range and the worst p99
        p50 = "/".join(f"{r['p50']:.1f}" for r in runs)
        p99 = max(r["p99"] for r in runs)
        print(f"| {label} | {rps:.1f} | {p50} | {p99:.1f} |")
        for f, r in zip(files, runs):
            notes += problems(f, r)
    for n in notes:
        print("note:", n)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "lua":
        write_lua(sys.argv[2], sys.argv[3])
    elif cmd == "emb-lua":
        write_embedding_lua(sys.argv[2], sys.argv[3])
    elif cmd == "serve-report":
        serve_report(*sys.argv[2:5])
    elif cmd == "embeddings-report":
        embeddings_report(*sys.argv[2:4])
    elif cmd == "replicas-report":
        replicas_report(*sys.argv[2:5])
    else:
        raise SystemExit(__doc__)
