#!/usr/bin/env python3
"""Reference retrieval metrics for tests/eval_metrics.rs, computed independently with numpy
(argsort of full rankings, not rank counting). Random score matrices, seeded; 5 captions per
image, the Flickr convention. Writes tests/fixtures/metrics/random.json.

mAP@k as the original study defined it: walk the top-k list; at each position i (1-based) holding
a relevant item add (hits so far)/i; divide by min(#relevant, k); mean over queries.
"""
import json
import os

import numpy as np


def direction(scores, relevant_sets):
    """scores: [queries, items]; relevant_sets: list of sets of item indices."""
    out = {"r1": 0.0, "r5": 0.0, "r10": 0.0}
    firsts, aps = [], {1: [], 5: [], 10: []}
    for q in range(scores.shape[0]):
        order = np.argsort(-scores[q], kind="stable")
        hits = np.array([i in relevant_sets[q] for i in order])
        first = int(np.argmax(hits)) + 1
        firsts.append(first)
        for k in (1, 5, 10):
            top = hits[:k]
            found, total = 0, 0.0
            for pos, h in enumerate(top, start=1):
                if h:
                    found += 1
                    total += found / pos
            aps[k].append(total / min(len(relevant_sets[q]), k))
    firsts = np.array(firsts)
    for k in (1, 5, 10):
        out[f"r{k}"] = float(100.0 * np.mean(firsts <= k))
        out[f"map@{k}"] = float(np.mean(aps[k]))
    out["medr"] = float(np.median(firsts))
    out["meanr"] = float(np.mean(firsts))
    return out


def case(rng, images, per_image, signal):
    texts = images * per_image
    text_image = np.repeat(np.arange(images), per_image)
    scores = rng.normal(size=(images, texts))
    scores[text_image, np.arange(texts)] += signal  # make it better than chance
    i2t = direction(scores, [set(np.where(text_image == i)[0]) for i in range(images)])
    t2i = direction(scores.T, [{int(text_image[t])} for t in range(texts)])
    return {"scores": scores.round(6).tolist(), "text_image": text_image.tolist(), "i2t": i2t, "t2i": t2i}


def main():
    rng = np.random.default_rng(20261127)
    cases = [case(rng, 12, 5, s) for s in (0.0, 1.0, 2.5)] + [case(rng, 40, 5, 1.5)]
    # rounding to 6 decimals may create ties; recompute on the rounded scores
    for c in cases:
        s = np.array(c["scores"])
        ti = np.array(c["text_image"])
        c["i2t"] = direction(s, [set(np.where(ti == i)[0]) for i in range(s.shape[0])])
        c["t2i"] = direction(s.T, [{int(ti[t])} for t in range(s.shape[1])])
    out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "metrics", "random.json")
    with open(out, "w") as f:
        json.dump(cases, f)
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
