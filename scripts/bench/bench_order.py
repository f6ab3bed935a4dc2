#!/usr/bin/env python3
"""Date order among the relevant, measured: how well each query's cut-off keeps the relevant
results. On the generated benchmark a query "a {colour} {shape}" is relevant to exactly the
scenes holding such an object (dataset.jsonl lists each scene's objects), so precision and
recall of the kept set are exact. For each of the 54 colour-shape queries the server's 200 best
candidates are read by relevance; the kept set of `order: taken_at` is every candidate scoring at
least the `cutoff` the server answers with. Beside it: fixed top-k, and the one flat score
threshold that is best over all queries (tuned on these very queries, so an upper bound for any
flat threshold).

    bench_order.py DATASET_JSONL URL
"""
import json
import statistics
import sys
import urllib.request


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def main():
    dataset, url = sys.argv[1], sys.argv[2]
    scenes = [json.loads(line) for line in open(dataset)]
    has = {}
    for s in scenes:
        for o in s["objects"]:
            has.setdefault((o["colour"], o["shape"].lower()), set()).add(s["id"])
    queries = sorted(has)
    rows = []
    for colour, shape in queries:
        text = f"a {colour} {shape}"
        relevant = has[(colour, shape)]
        cands = []
        for offset in (0, 100):
            r = post(f"{url}/v1/search/text", {"query": text, "k": 100, "offset": offset})
            cands += [(h["image_id"], h["score"]) for h in r["results"]]
        ordered = post(f"{url}/v1/search/text",
                       {"query": text, "k": 100, "order": "taken_at"})
        rows.append((text, relevant, cands, ordered.get("cutoff")))

    def score(kept_of):
        p, r, f, n = [], [], [], []
        for text, relevant, cands, cutoff in rows:
            kept = kept_of(cands, cutoff)
            hit = sum(1 for i in kept if i in relevant)
            prec = hit / len(kept) if kept else 1.0
            rec = hit / len(relevant)
            p.append(prec)
            r.append(rec)
            f.append(0 if hit == 0 else 2 * prec * rec / (prec + rec))
            n.append(len(kept))
        return statistics.mean(p), statistics.mean(r), statistics.mean(f), statistics.median(n)

    sizes = [len(r[1]) for r in rows]
    print(f"{len(rows)} queries; relevant scenes per query: median {statistics.median(sizes)}, "
          f"min {min(sizes)}, max {max(sizes)} (of {len(scenes)} scenes)\n")
    print("| kept set | precision | recall | F1 | median size |")
    print("|---|---|---|---|---|")
    table = [("order: taken_at (the query's own cut-off)",
              lambda c, cut: [i for i, s in c if cut is not None and s >= cut])]
    # other per-query rules, computed here from the same candidates (for the choice of rule)
    def otsu(scores):
        n = len(scores)
        if n < 3:
            return n
        total, high, best, best_at = sum(scores), 0.0, 0.0, n
        for t in range(1, n):
            high += scores[t - 1]
            gap = high / t - (total - high) / (n - t)
            between = t * (n - t) * gap * gap
            if between > best * (1 + 1e-9):
                best, best_at = between, t
        return best_at

    def first(c, count):
        return [i for i, _ in c[:count]]

    table.append(("(rule) Otsu over the best 100 only",
                  lambda c, cut: first(c, otsu([s for _, s in c[:100]]))))
    table.append(("(rule) mean + 1 sd of the 200 candidates",
                  lambda c, cut: [i for i, s in c if s >= statistics.mean([x for _, x in c]) + statistics.pstdev([x for _, x in c])]))
    table.append(("(rule) mean + 2 sd of the 200 candidates",
                  lambda c, cut: [i for i, s in c if s >= statistics.mean([x for _, x in c]) + 2 * statistics.pstdev([x for _, x in c])]))
    for k in (10, 50):
        table.append((f"top {k}", lambda c, cut, k=k: [i for i, _ in c[:k]]))
    best = max(((t / 100, score(lambda c, cut, t=t / 100: [i for i, s in c if s >= t])[2])
                for t in range(-100, 100)), key=lambda x: x[1])
    table.append((f"best flat threshold ({best[0]:.2f}, tuned on these queries)",
                  lambda c, cut: [i for i, s in c if s >= best[0]]))
    for name, kept_of in table:
        p, r, f, n = score(kept_of)
        print(f"| {name} | {p:.3f} | {r:.3f} | {f:.3f} | {n:g} |")
    cuts = [r[3] for r in rows if r[3] is not None]
    print(f"\ncut-offs chosen per query: {min(cuts):.3f} .. {max(cuts):.3f} (median {statistics.median(cuts):.3f})")


if __name__ == "__main__":
    main()
