#!/usr/bin/env python3
"""OpenAI's own Python client (`openai` from PyPI, pinned in scripts/ci/ensure-openai) against a
running xmodal: what tests/it/embeddings.rs runs.

    embeddings_client.py BASE_URL MODEL PHOTO IMAGE_ID CAPTION

BASE_URL serves the space MODEL, where IMAGE_ID is the photo PHOTO (a file) and CAPTION a text to
search with. Prints one JSON object of what it saw; exits non-zero on the first failed check.
"""
import base64
import json
import math
import sys
import urllib.request

import openai


def main():
    base, model, photo, image_id, caption = sys.argv[1:6]
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    seen = {"openai": openai.__version__}

    one = client.embeddings.create(model=model, input=caption, encoding_format="float")
    q = one.data[0].embedding
    assert one.object == "list" and one.model == model, one
    assert abs(math.sqrt(sum(x * x for x in q)) - 1) < 1e-5, "L2-normalised"
    assert one.usage.prompt_tokens > 0 and one.usage.total_tokens == one.usage.prompt_tokens
    seen["dims"] = len(q)
    seen["tokens"] = one.usage.prompt_tokens

    # the client's default: it asks for base64 and decodes it; the same numbers as floats
    texts = [caption, "a second text", "and a third"]
    listed = client.embeddings.create(model=model, input=texts)
    assert [d.index for d in listed.data] == [0, 1, 2]
    assert max(abs(a - b) for a, b in zip(listed.data[0].embedding, q)) < 1e-6
    assert listed.usage.prompt_tokens > one.usage.prompt_tokens
    raw = client.embeddings.create(model=model, input=caption, encoding_format="base64")
    decoded = [x for x in memoryview(base64.b64decode(raw.data[0].embedding)).cast("f")]
    # floats print at f32's shortest round trip, base64 carries the f32 itself
    assert max(abs(a - b) for a, b in zip(decoded, q)) < 1e-7, "base64 is little-endian f32 of the same vector"

    # an image in the same call, as a data URL; its vector scores the caption as search does
    with open(photo, "rb") as f:
        data = f.read()
    mime = "image/png" if photo.endswith(".png") else "image/jpeg"
    url = f"data:{mime};base64," + base64.b64encode(data).decode()
    mixed = client.embeddings.create(model=model, input=[caption, {"image": url}], encoding_format="float")
    v = mixed.data[1].embedding
    dot = sum(a * b for a, b in zip(q, v))
    req = urllib.request.Request(
        base + "/v1/search/text",
        data=json.dumps({"query": caption, "k": 100, "model": model}).encode(),
        headers={"Content-Type": "application/json"},
    )
    hits = json.load(urllib.request.urlopen(req))["results"]
    score = next(h["score"] for h in hits if h["image_id"] == image_id)
    seen["dot"], seen["score"] = dot, score
    assert abs(dot - score) <= 1e-5, (dot, score)
    bare = client.embeddings.create(model=model, input=[{"image": base64.b64encode(data).decode()}], encoding_format="float")
    assert max(abs(a - b) for a, b in zip(bare.data[0].embedding, v)) < 1e-6, "bare base64 = data URL"

    models = client.models.list()
    seen["models"] = [m.id for m in models.data]
    assert model in seen["models"]

    # bad inputs: 4xx, raised by the client with our message
    def refused(kind, status, words, **kwargs):
        try:
            client.embeddings.create(**kwargs)
        except openai.APIStatusError as e:
            assert e.status_code == status, (kind, e.status_code, e.message)
            assert all(w in e.message for w in words), (kind, e.message)
            seen[kind] = f"{e.status_code}: {e.message}"
            return
        raise AssertionError(f"{kind}: accepted")

    refused("empty_list", 422, ["empty"], model=model, input=[])
    big = "data:image/png;base64," + "A" * (10 << 20)
    refused("ten_mb_data_url", 413, ["MiB"], model=model, input=[{"image": big}])
    refused("url", 422, ["SSRF"], model=model, input=[{"image": "https://example.com/cat.jpg"}])
    refused("unknown_model", 404, ["no-such-model", model], model="no-such-model", input="x")
    refused("dimensions", 422, ["dimensions"], model=model, input="x", dimensions=8)
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
