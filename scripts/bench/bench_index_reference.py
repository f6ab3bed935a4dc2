#!/usr/bin/env python3
"""hnswlib and faiss (IndexHNSWFlat) on the data benches/index.rs writes, same parameters.

usage: bench_index_reference.py DIR  (DIR has base.f32, queries.f32, truth.json, params.json)
Prints one JSON object: per engine, build seconds and, per ef, recall@10 and queries/s
(one search thread, like the Rust side).
"""
import json
import os
import sys
import time

import numpy as np


def main():
    d = sys.argv[1]
    p = json.load(open(os.path.join(d, "params.json")))
    dims, m, efc, efs, threads = p["dims"], p["m"], p["ef_construction"], p["ef_search"], p["threads"]
    base = np.fromfile(os.path.join(d, "base.f32"), dtype="<f4").reshape(-1, dims)
    queries = np.fromfile(os.path.join(d, "queries.f32"), dtype="<f4").reshape(-1, dims)
    truth = [set(t) for t in json.load(open(os.path.join(d, "truth.json")))]
    out = {}

    def recall(found):
        return sum(len(set(map(int, f)) & t) for f, t in zip(found, truth)) / (10 * len(truth))

    try:
        import hnswlib
        index = hnswlib.Index(space="ip", dim=dims)
        index.init_index(max_elements=len(base), M=m, ef_construction=efc)
        index.set_num_threads(threads)
        t = time.perf_counter()
        index.add_items(base, np.arange(len(base)))
        build = time.perf_counter() - t
        index.set_num_threads(1)
        res = {"build_s": build, "ef": {}}
        for ef in efs:
            index.set_ef(ef)
            t = time.perf_counter()
            found = [index.knn_query(q[None, :], k=10)[0][0] for q in queries]
            res["ef"][str(ef)] = {"recall": recall(found), "qps": len(queries) / (time.perf_counter() - t)}
        out["hnswlib"] = res
    except ImportError as e:
        out["hnswlib"] = {"error": str(e)}

    try:
        import faiss
        faiss.omp_set_num_threads(threads)
        index = faiss.IndexHNSWFlat(dims, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = efc
        t = time.perf_counter()
        index.add(base)
        build = time.perf_counter() - t
        faiss.omp_set_num_threads(1)
        res = {"build_s": build, "ef": {}}
        for ef in efs:
            index.hnsw.efSearch = ef
            t = time.perf_counter()
            found = [index.search(q[None, :], 10)[1][0] for q in queries]
            res["ef"][str(ef)] = {"recall": recall(found), "qps": len(queries) / (time.perf_counter() - t)}
        out["faiss"] = res
    except ImportError as e:
        out["faiss"] = {"error": str(e)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
