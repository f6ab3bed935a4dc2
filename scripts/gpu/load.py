"""A closed-loop HTTP load generator from the standard library alone (scripts/gpu-check runs it
on a GPU machine that has no wrk and no network to fetch one).

usage: load.py URL text|image SECONDS CONCURRENCY QUERIES...
  text:  QUERIES is a file of captions, one per line (POST /v1/search/text, k = 10)
  image: QUERIES are image files (POST /v1/search/image?k=10)

CONCURRENCY threads each keep one keep-alive connection busy for SECONDS; prints one JSON line:
requests/s, p50/p99 latency (ms), errors. Python's client costs CPU too, so at high concurrency
this measures a floor of what the server does, not its ceiling; the machine has 16 cores.
"""

import http.client
import json
import sys
import threading
import time
from urllib.parse import urlparse


def main():
    url, kind, seconds, concurrency, *queries = sys.argv[1:]
    seconds, concurrency = float(seconds), int(concurrency)
    target = urlparse(url)
    if kind == "text":
        texts = [t for t in open(queries[0]).read().splitlines() if t.strip()]
        bodies = [(json.dumps({"query": t, "k": 10}).encode(), "application/json") for t in texts]
        path = "/v1/search/text"
    else:
        bodies = [(open(p, "rb").read(), "image/png") for p in queries]
        path = "/v1/search/image?k=10"
    latencies, errors, lock = [], [0], threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(offset):
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        mine, bad, i = [], 0, offset
        while time.monotonic() < deadline:
            body, ctype = bodies[i % len(bodies)]
            i += concurrency
            start = time.monotonic()
            try:
                conn.request("POST", path, body, {"Content-Type": ctype})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                continue
            mine.append(time.monotonic() - start)
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    latencies.sort()
    pick = lambda q: round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None
    print(json.dumps({"kind": kind, "concurrency": concurrency, "requests": len(latencies),
                      "req_per_s": round(len(latencies) / wall, 1), "p50_ms": pick(0.5),
                      "p99_ms": pick(0.99), "errors": errors[0]}))


if __name__ == "__main__":
    main()
