#!/usr/bin/env python3
"""Python onnxruntime on an ONNX model directory's own graphs, measured the way
`xmodal embed throughput` measures (scripts/bench/bench-onnx runs both in one invocation):
text includes tokenisation (the directory's tokenizer.json through HF `tokenizers`, padded as
Immich's or transformers.js' runtime pads), images are already-prepared random inputs of the
graph's own type (float NCHW or uint8 NHWC), decoding excluded. One warm-up call, then the
median of `reps` timed calls; onnxruntime's CPU execution provider with `threads` intra-op threads
and every graph optimisation, as a competent onnxruntime user runs it.

    bench_onnx_reference.py DIR LAYOUT THREADS REPS BATCH...   # LAYOUT: immich | transformersjs
prints one JSON line per (tower, batch): {"tower", "batch", "items_per_s"}.
"""
import json
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

SUBJECTS = ["a young boy", "two dogs", "a woman in a red coat", "an old man", "a group of cyclists",
            "a small brown cat", "three children", "a street musician"]
ACTIONS = ["is running along", "are playing near", "stands beside", "sits quietly on", "walks slowly across",
           "waits next to"]
PLACES = ["the sandy beach at sunset", "a busy city street", "the old stone bridge", "a green park bench",
          "the frozen lake in winter", "a crowded market stall"]


def captions(n):
    """The same captions src/encode/throughput.rs makes."""
    return [f"{SUBJECTS[i % 8]} {ACTIONS[(i // 8) % 6]} {PLACES[(i // 48 + i) % 6]}" for i in range(n)]


def median_seconds(reps, fn):
    fn()
    times = []
    for _ in range(max(reps, 1)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main():
    d, layout, threads, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    batches = [int(b) for b in sys.argv[5:]]
    if layout == "immich":
        text_path, vision_path = os.path.join(d, "textual", "model.onnx"), os.path.join(d, "visual", "model.onnx")
        tok_dir = os.path.join(d, "textual")
        context = json.load(open(os.path.join(d, "config.json")))["text_cfg"].get("context_length", 77)
    else:
        text_path, vision_path = os.path.join(d, "onnx", "text_model.onnx"), os.path.join(d, "onnx", "vision_model.onnx")
        tok_dir = d
        context = None
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    pad = json.load(open(os.path.join(tok_dir, "tokenizer_config.json")))["pad_token"]
    if context:
        tok.enable_padding(length=context, pad_token=pad, pad_id=tok.token_to_id(pad))
        tok.enable_truncation(max_length=context)
    else:
        tok.enable_padding(pad_token=pad, pad_id=tok.token_to_id(pad))
        tok.enable_truncation(max_length=77)
    text = session(text_path, threads)
    ids_input = text.get_inputs()[0]
    ids_type = np.int32 if ids_input.type == "tensor(int32)" else np.int64
    vision = session(vision_path, threads)
    image_input = vision.get_inputs()[0]
    for batch in batches:
        texts = captions(batch)

        def run_text():
            enc = tok.encode_batch(texts)
            ids = np.array([e.ids for e in enc], dtype=ids_type)
            text.run(None, {ids_input.name: ids})

        s = median_seconds(reps, run_text)
        print(json.dumps({"tower": "text", "batch": batch, "items_per_s": batch / s}), flush=True)
        rng = np.random.default_rng(0)
        if image_input.type == "tensor(uint8)":
            side = image_input.shape[1]
            x = rng.integers(0, 256, (batch, side, side, 3), dtype=np.uint8)
        else:
            side = image_input.shape[2]
            x = rng.standard_normal((batch, 3, side, side), dtype=np.float32)
        s = median_seconds(reps, lambda: vision.run(None, {image_input.name: x}))
        print(json.dumps({"tower": "image", "batch": batch, "items_per_s": batch / s}), flush=True)


if __name__ == "__main__":
    main()
