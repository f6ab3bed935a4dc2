#!/usr/bin/env python3
"""The Python reference service for scripts/bench/bench-serve: what a Python team would write for the
same job, on the same machine, weights and data. FastAPI + transformers/torch + hnswlib, run
the way a competent Python team runs it for throughput: requests are micro-batched (an asyncio
queue feeding one inference thread that takes everything queued, up to --max-batch), with
--workers processes sharing one listening socket and --threads torch threads each, and, with
--int8, BERT's Linear layers quantized by torch.ao.quantization.quantize_dynamic (qint8).
`POST /v1/embeddings` (OpenAI's shape, texts) goes through a micro-batcher of whole calls.

Same data: the image and caption features come from xmodal's catalog (the `vectors` table that
`xmodal serve` filled from the same extract), projected through the same trained heads
(heads.safetensors: Linear -> PReLU -> Linear, L2-normalised), indexed with hnswlib at xmodal's
defaults (M=16, ef_construction=200, ef=64, inner product). Same queries: MiniLM mean pooling,
normalised; EfficientNet-Lite0 from the kit's converted weights, resize 256 / crop 224,
(x - 127) / 128. Same response shapes as ../shared/API.md (captions held in memory, which only
favours the reference).

Usage: bench_serve_reference.py --data-dir D --models-dir M --heads H --port P
       [--workers 1] [--threads 2] [--max-batch 32] [--int8]
"""
import argparse
import asyncio
import io
import json
import os
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import hnswlib
import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from PIL import Image
from pydantic import BaseModel
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

ARGS = None
STATE = {}


class Head(torch.nn.Module):
    def __init__(self, weights, side):
        super().__init__()
        self.w0, self.b0 = weights[f"{side}.0.weight"], weights[f"{side}.0.bias"]
        self.a = weights[f"{side}.0.prelu"]
        self.w1, self.b1 = weights[f"{side}.1.weight"], weights[f"{side}.1.bias"]

    def forward(self, x):
        h = torch.nn.functional.linear(x, self.w0, self.b0)
        h = torch.nn.functional.prelu(h, self.a)
        h = torch.nn.functional.linear(h, self.w1, self.b1)
        return torch.nn.functional.normalize(h, dim=-1)


def feature_set(db, spec, modality):
    """The stored feature set the heads were trained on (same encoder and options); xmodal may
    also hold the same encoder's int8 or f16 features, which the reference does not use."""
    rows = db.execute(
        "SELECT f.id, f.options, COUNT(v.item) FROM feature_sets f JOIN vectors v ON v.feature_set = f.id "
        "WHERE f.encoder = ? AND f.modality = ? GROUP BY f.id ORDER BY 3 DESC",
        (spec["encoder"], modality),
    ).fetchall()
    exact = [r for r in rows if json.loads(r[1]) == spec["options"]]
    if not exact:
        raise SystemExit(f"no stored {modality} vectors of {spec['encoder']} with the heads' options; "
                         "run xmodal extract on this data first")
    return exact[0][0]


def build_index(vectors, ef):
    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=16, ef_construction=200)
    index.add_items(vectors, np.arange(len(vectors)), num_threads=ARGS.threads)
    index.set_ef(ef)
    return index


def load():
    torch.set_num_threads(ARGS.threads)
    torch.set_grad_enabled(False)
    cfg = json.load(open(os.path.join(ARGS.heads, "heads.json")))
    weights = load_file(os.path.join(ARGS.heads, "heads.safetensors"))
    image_head, text_head = Head(weights, "image"), Head(weights, "text")
    db = sqlite3.connect(os.path.join(ARGS.data_dir, "catalog.sqlite"))
    image_set = feature_set(db, cfg["image_features"], "image")
    text_set = feature_set(db, cfg["text_features"], "text")

    def vectors(fs):
        rows = db.execute("SELECT item, vector FROM vectors WHERE feature_set = ? ORDER BY item", (fs,)).fetchall()
        keys = [r[0] for r in rows]
        m = np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])
        return keys, m

    t = time.time()
    image_keys, image_m = vectors(image_set)
    caption_keys, caption_m = vectors(text_set)
    with torch.inference_mode():
        image_emb = torch.cat([image_head(torch.from_numpy(image_m[i:i + 4096])) for i in range(0, len(image_m), 4096)]).numpy()
        caption_emb = torch.cat([text_head(torch.from_numpy(caption_m[i:i + 4096])) for i in range(0, len(caption_m), 4096)]).numpy()
    captions = {}
    for image_id, ordinal, text in db.execute("SELECT image_id, ordinal, text FROM captions ORDER BY image_id, ordinal"):
        captions.setdefault(image_id, []).append(text)
    STATE.update(
        image_keys=image_keys,
        caption_keys=caption_keys,
        images=build_index(image_emb, 64),
        captions_index=build_index(caption_emb, 64),
        captions=captions,
        caption_text={f"{i}#{o:03d}": t for i, o, t in db.execute("SELECT image_id, ordinal, text FROM captions")},
        image_head=image_head,
        text_head=text_head,
        model_name=cfg["name"],
    )
    text_dir = os.path.join(ARGS.models_dir, "minilm-l6")
    STATE["tok"] = AutoTokenizer.from_pretrained(text_dir)
    STATE["text"] = AutoModel.from_pretrained(text_dir).eval()
    if ARGS.int8:
        STATE["text"] = torch.ao.quantization.quantize_dynamic(STATE["text"], {torch.nn.Linear}, dtype=torch.qint8)
    from efficientnet_lite_pytorch import EfficientNet
    eff = EfficientNet.from_name("efficientnet-lite0")
    eff.load_state_dict(load_file(os.path.join(ARGS.models_dir, "efficientnet-lite0", "model.safetensors")), strict=True)
    STATE["image"] = eff.eval()
    print(f"reference ready (pid {os.getpid()}): {len(image_keys)} images, {len(caption_keys)} captions indexed in {time.time() - t:.1f}s", flush=True)


app = FastAPI()


class TextQuery(BaseModel):
    query: str
    k: int = 10


class EmbeddingQuery(BaseModel):
    input: str | list[str]
    model: str | None = None
    encoding_format: str = "float"


class MicroBatcher:
    """Requests queue up while the model runs; the one inference thread then takes all of them
    (up to max_batch) in one forward pass."""

    def __init__(self, run_batch):
        self.run_batch = run_batch
        self.queue = None
        self.thread = ThreadPoolExecutor(1)

    async def submit(self, item):
        if self.queue is None:
            self.queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self.loop())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((item, future))
        return await future

    async def loop(self):
        while True:
            batch = [await self.queue.get()]
            while len(batch) < ARGS.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                rows = await asyncio.get_running_loop().run_in_executor(
                    self.thread, self.run_batch, [item for item, _ in batch])
                for (_, future), row in zip(batch, rows):
                    future.set_result(row)
            except Exception as e:  # noqa: BLE001 - the batch's error goes to each request
                for _, future in batch:
                    future.set_exception(e)


@torch.inference_mode()  # grad mode is per thread: the inference thread sets its own
def embed_texts(texts):
    enc = STATE["tok"](texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    h = STATE["text"](**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    return STATE["text_head"](pooled).numpy()


@torch.inference_mode()
def embed_text_calls(calls):
    """A batch of embeddings calls (each a list of texts) as one forward pass: rows per call,
    and each call's token count."""
    texts = [t for call in calls for t in call]
    enc = STATE["tok"](texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    h = STATE["text"](**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    rows, tokens = STATE["text_head"](pooled).numpy(), enc["attention_mask"].sum(1).tolist()
    out, at = [], 0
    for call in calls:
        out.append((rows[at:at + len(call)], sum(tokens[at:at + len(call)])))
        at += len(call)
    return out


def prepare_image(data):
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)
    return (x - 127.0) / 128.0


@torch.inference_mode()
def embed_images(tensors):
    f = STATE["image"].extract_features(torch.stack(tensors)).mean((2, 3))
    return STATE["image_head"](f).numpy()


TEXT_BATCHER = MicroBatcher(embed_texts)
# an embeddings call's texts stay together, and calls queued together share a forward pass (up
# to --max-batch calls: a call of 32 texts is 32 rows)
EMBED_BATCHER = MicroBatcher(embed_text_calls)
IMAGE_BATCHER = MicroBatcher(embed_images)


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/v1/search/text")
async def search_text(q: TextQuery):
    t = time.perf_counter()
    if not q.query.strip() or not 1 <= q.k <= 1000:
        raise HTTPException(422, "bad query")
    labels, dist = STATE["images"].knn_query(await TEXT_BATCHER.submit(q.query), k=q.k)
    results = []
    for rank, (l, d) in enumerate(zip(labels[0], dist[0]), start=1):
        image_id = STATE["image_keys"][l]
        results.append({"rank": rank, "image_id": image_id, "score": float(1 - d),
                        "url": f"/v1/images/{image_id}/file", "captions": STATE["captions"].get(image_id, [])})
    return {"results": results, "took_ms": (time.perf_counter() - t) * 1e3, "model": STATE["model_name"]}


@app.post("/v1/embeddings")
async def embeddings(q: EmbeddingQuery):
    texts = [q.input] if isinstance(q.input, str) else q.input
    if not texts or not all(t.strip() for t in texts):
        raise HTTPException(422, "empty input")
    rows, tokens = await EMBED_BATCHER.submit(texts)
    data = [{"object": "embedding", "index": i, "embedding": r.tolist()} for i, r in enumerate(rows)]
    return {"object": "list", "data": data, "model": STATE["model_name"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@app.post("/v1/search/image")
async def search_image(request: Request, k: int = 10):
    t = time.perf_counter()
    data = await request.body()
    try:  # decoding runs on the default thread pool, beside the inference thread
        x = await asyncio.get_running_loop().run_in_executor(None, prepare_image, data)
    except Exception as e:  # noqa: BLE001 - a reference: any decode failure is the client's
        raise HTTPException(400, str(e))
    q = await IMAGE_BATCHER.submit(x)
    labels, dist = STATE["captions_index"].knn_query(q, k=k)
    results = []
    for rank, (l, d) in enumerate(zip(labels[0], dist[0]), start=1):
        key = STATE["caption_keys"][l]
        results.append({"rank": rank, "caption_id": key, "image_id": key.rsplit("#", 1)[0],
                        "text": STATE["caption_text"].get(key, ""), "score": float(1 - d)})
    return {"results": results, "took_ms": (time.perf_counter() - t) * 1e3, "model": STATE["model_name"]}


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--models-dir", required=True)
    p.add_argument("--heads", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--int8", action="store_true")
    ARGS = p.parse_args()
    # one listening socket, inherited by every worker (gunicorn's pre-fork model)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit this: h11 writes a response's head and body separately, and
    # without it the body waits for the client's delayed ACK (~40 ms per keep-alive request)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", ARGS.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    for _ in range(ARGS.workers - 1):
        if os.fork() == 0:
            break
    load()
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    main()
