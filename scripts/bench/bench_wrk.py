#!/usr/bin/env python3
"""Helpers shared by scripts/bench/bench-serve and scripts/bench/bench-replicas (stdlib only).

  bench_wrk.py lua SYNTH_DIR OUT_DIR      wrk scripts with rotating queries: text.lua (captions of
                                          200 test scenes), image.lua (32 test scene files)
  bench_wrk.py serve-report WORK IMAGES SECONDS
  bench_wrk.py replicas-report WORK IMAGES SECONDS
"""
import json
import os
import re
import sys


def write_lua(src, out):
    rows = [json.loads(l) for l in open(os.path.join(src, "dataset.jsonl"))]
    test = [r for r in rows if r.get("split") == "test"][:200]
    queries = [r["captions"][0] for r in test]
    images = [r["image"] if os.path.isabs(r["image"]) else os.path.join(src, r["image"]) for r in test[:32]]
    with open(os.path.join(out, "text.lua"), "w") as f:
        f.write("local q = {" + ",".join(json.dumps(json.dumps({"query": q, "k": 10})) for q in queries) + "}\n")
        f.write('local i = 0\nwrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write('request = function()\n  i = i % #q + 1\n  return wrk.format(nil, "/v1/search/text", nil, q[i])\nend\n')
    with open(os.path.join(out, "image.lua"), "w") as f:
        f.write("local files = {" + ",".join(json.dumps(p) for p in images) + "}\nlocal bodies = {}\n")
        f.write('for n, p in ipairs(files) do local h = io.open(p, "rb"); bodies[n] = h:read("*a"); h:close() end\n')
        f.write('local i = 0\nwrk.method = "POST"\nwrk.headers["Content-Type"] = "image/png"\n')
        f.write('request = function()\n  i = i % #bodies + 1\n  return wrk.format(nil, "/v1/search/image?k=10", nil, bodies[i])\nend\n')


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
    t = open(os.path.join(work, f"{name}-rss.txt")).read()
    return {k: int(v) / 1024 for k, v in re.findall(r"(\w+):\s+(\d+) kB", t)}


def problems(label, r):
    if r["non2xx"] or r["socket_errors"]:
        return [f"{label}: {r['non2xx']} non-2xx of {r['requests']}; socket errors: {r['socket_errors'] or 0}"]
    return []


def serve_report(work, images, secs):
    print(f"\n{images} images, {secs}s per run, loopback, wrk with rotating queries\n")
    print("| workload | concurrency | xmodal p50 ms | xmodal p99 ms | xmodal req/s | reference p50 ms | reference p99 ms | reference req/s | throughput ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    notes = []
    for kind, label in [("text", "caption → images"), ("image", "image → captions")]:
        for c in (1, 32):
            x = parse(os.path.join(work, f"xmodal-{kind}-{c}.txt"))
            r = parse(os.path.join(work, f"reference-{kind}-{c}.txt"))
            print(f"| {label} | {c} | {x['p50']:.2f} | {x['p99']:.2f} | {x['rps']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['rps']:.1f} | {x['rps'] / r['rps']:.2f}× |")
            notes += problems(f"xmodal {kind} c={c}", x) + problems(f"reference {kind} c={c}", r)
    xr, rr = rss(work, "xmodal"), rss(work, "reference")
    print(f"\npeak RSS (VmHWM): xmodal {xr['VmHWM']:.0f} MiB, reference {rr['VmHWM']:.0f} MiB; "
          f"after the runs (VmRSS): xmodal {xr['VmRSS']:.0f} MiB, reference {rr['VmRSS']:.0f} MiB")
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
    elif cmd == "serve-report":
        serve_report(*sys.argv[2:5])
    elif cmd == "replicas-report":
        replicas_report(*sys.argv[2:5])
    else:
        raise SystemExit(__doc__)
