"""Compare two `xmodal embed` outputs row by row (scripts/gpu-check).

usage: compare.py LABEL OURS.jsonl REFERENCE.jsonl (--max-rel X | --min-cos Y)

Prints one line, `PASS LABEL …` or `FAIL LABEL …`, with the rows compared, the smallest cosine
and the largest |difference| relative to the row's largest |value|; exits 1 on FAIL. Rows must
name the same inputs in the same order.
"""

import json
import math
import sys


def rows(path):
    out = []
    for line in open(path):
        row = json.loads(line)
        out.append((row.get("text", row.get("path")), row.get("embedding")))
    return out


def main():
    label, ours, reference, flag, bound = sys.argv[1:6]
    bound = float(bound)
    a, b = rows(ours), rows(reference)
    if [k for k, _ in a] != [k for k, _ in b] or any(v is None for _, v in a + b):
        print(f"FAIL {label}: inputs differ or failed ({len(a)} vs {len(b)} rows)")
        sys.exit(1)
    min_cos, max_rel = 1.0, 0.0
    for (_, x), (_, y) in zip(a, b):
        dot = sum(p * q for p, q in zip(x, y))
        norm = math.sqrt(sum(p * p for p in x)) * math.sqrt(sum(q * q for q in y))
        min_cos = min(min_cos, dot / norm if norm else 1.0)
        scale = max(1e-12, max(abs(q) for q in y))
        max_rel = max(max_rel, max(abs(p - q) for p, q in zip(x, y)) / max(scale, 1.0))
    ok = max_rel <= bound if flag == "--max-rel" else min_cos >= bound
    print(f"{'PASS' if ok else 'FAIL'} {label}: {len(a)} rows, min cosine {min_cos:.6f}, "
          f"max |diff| / max(1, scale) {max_rel:.2e} (bound: {flag[2:]} {bound})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
