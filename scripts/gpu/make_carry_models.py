"""f16 copies of kit models small enough to carry to a GPU machine (scripts/gpu/pack).

usage: make_carry_models.py MODELS_DIR OUT_DIR TEXTS_FILE MODEL...

Every tensor is stored as f16 (half the bytes; the check compares the GPU with this machine's
CPU on these same weights). MiniLM's word-embedding rows that no text in TEXTS_FILE uses are
zeroed, so the gzipped file drops most of the 30,522 × 384 table (tokens outside the texts
still run, as zero vectors). Each model's xmodal.json is rewritten with the new files' sha256.
Needs safetensors, numpy and tokenizers.
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer


def used_token_ids(model_dir: Path, texts: list[str]) -> set[int]:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    ids = {0, 100, 101, 102, 103}  # [PAD] [UNK] [CLS] [SEP] [MASK]
    for encoding in tokenizer.encode_batch(texts):
        ids.update(encoding.ids)
    return ids


def main() -> None:
    models, out, texts_file, *names = sys.argv[1:]
    texts = [t for t in Path(texts_file).read_text().splitlines() if t.strip()]
    for name in names:
        src, dst = Path(models) / name, Path(out) / name
        dst.mkdir(parents=True, exist_ok=True)
        tensors = load_file(str(src / "model.safetensors"))
        half = {k: v.astype(np.float16) for k, v in tensors.items()}
        for key in [k for k in half if k.endswith("word_embeddings.weight")]:
            keep = sorted(used_token_ids(src, texts))
            table = np.zeros_like(half[key])
            table[keep] = half[key][keep]
            half[key] = table
            print(f"{name}: kept {len(keep)} of {table.shape[0]} word-embedding rows")
        save_file(half, str(dst / "model.safetensors"))
        manifest = json.loads((src / "xmodal.json").read_text())
        for f in src.iterdir():
            if f.is_file() and f.name not in ("model.safetensors", "xmodal.json"):
                shutil.copy(f, dst / f.name)
        manifest["files"] = {
            f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(dst.iterdir())
            if f.is_file() and f.name != "xmodal.json"
        }
        manifest["note"] = "f16 copy for scripts/gpu-check (scripts/gpu/make_carry_models.py)"
        (dst / "xmodal.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
