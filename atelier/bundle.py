"""A complete Atelier model on disk: what `Atelier.from_pretrained` loads.

    model_index.json   kind, the text encoder it was trained with (name and fingerprint),
                       default sampling settings, and how it was trained
    transformer/       the diffusion transformer (config.json + safetensors shards)
    tokenizer/         the visual tokenizer (config.json + safetensors shards)

The layout of a diffusers pipeline folder. The text encoder is not copied: it comes from the
installed package or a compact copy, and its fingerprint says whether it is the right one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from atelier.folder import FolderError, staged

INDEX = "model_index.json"
KIND = "atelier-pipeline"
DEFAULTS = {"steps": 20, "sampler": "heun", "guidance": 4.0, "size": 64}
PARTS = ("transformer", "tokenizer")


def save_bundle(path: str | Path, transformer, tokenizer, text_fingerprint: str, defaults: dict[str, Any] | None = None,
                training: dict[str, Any] | None = None) -> Path:
    """Write the bundle under a temporary name and swap it in whole."""
    path = Path(path)
    with staged(path) as staging:
        transformer.save(staging / "transformer")
        tokenizer.save(staging / "tokenizer")
        index = {"kind": KIND, "text_encoder": {"name": "all-MiniLM-L6-v2", "fingerprint": text_fingerprint},
                 "defaults": {**DEFAULTS, **(defaults or {})}, "training": training or {}}
        (staging / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return path


def read_index(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        index = json.loads((path / INDEX).read_text())
    except FileNotFoundError:
        raise FolderError(f"{path} is not an Atelier model (no {INDEX}); "
                          "train one with `atelier train model`") from None
    except json.JSONDecodeError as error:
        raise FolderError(f"{path / INDEX} is corrupt: {error}") from None
    if index.get("kind") != KIND:
        raise FolderError(f"{path / INDEX} describes a {index.get('kind')!r}, not an Atelier model")
    return index


def weights_hash(path: str | Path) -> str:
    """10 hex digits of SHA-256 over every file of the transformer and tokenizer (names and bytes):
    the model hash recorded in each image's metadata, as AUTOMATIC1111 records its own."""
    path = Path(path)
    digest = hashlib.sha256()
    for part in PARTS:
        for file in sorted((path / part).rglob("*")):
            if file.is_file():
                digest.update(str(file.relative_to(path)).encode() + b"\0")
                with open(file, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
    return digest.hexdigest()[:10]


def pack_bundle(source: str | Path, target: str | Path) -> Path:
    """A copy of the bundle at `source` with every floating-point tensor stored as fp16, for
    shipping (half the bytes; the pipeline computes in fp32 either way). The index records it."""
    import torch

    from atelier.folder import load_tensors, read_config, save_folder

    source, target = Path(source), Path(target)
    index = read_index(source)
    with staged(target) as staging:
        for part in PARTS:
            tensors = {name: tensor.to(torch.float16) if tensor.is_floating_point() else tensor
                       for name, tensor in load_tensors(source / part).items()}
            save_folder(staging / part, read_config(source / part), tensors)
        index["stored_as"] = "fp16"
        (staging / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    return target
