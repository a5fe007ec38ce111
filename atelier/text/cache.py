"""A least-recently-used cache of the text encoder's outputs, one entry per distinct caption.

Captions repeat in training (the grammar is small), and the frozen encoder costs as much as a small
denoiser step, so each caption is encoded once. An entry holds the caption's tokens trimmed to its own
length, so a batch assembled from the cache is padded exactly as `TextEncoder.encode` pads it. A cache
saved to safetensors lets a trainer precompute its captions; it is tied to the encoder's fingerprint.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from atelier.text.encoder import TextBatch, TextEncoder

FORMAT = "atelier.text_cache.v1"
DEFAULT_CAPACITY = 20_000  # a 20-token caption holds about 31 KB, so about 600 MB when full


class TextCache:
    """`encode(texts)` equals `encoder.encode(texts)` up to float noise from batching (bit for bit when every
    caption is new and the call encodes them as one batch). `hits` counts captions answered from the cache,
    `misses` the captions encoded (a caption repeated within one call is encoded once: one miss, then hits)."""

    def __init__(self, encoder: TextEncoder, capacity: int = DEFAULT_CAPACITY):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 caption, got {capacity}")
        self.encoder = encoder
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()  # caption -> tokens [n, D], pooled [D]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, caption: str) -> bool:
        return caption in self._entries

    def encode(self, texts: Sequence[str]) -> TextBatch:
        if isinstance(texts, str):
            raise TypeError("TextCache.encode takes a sequence of texts, not one string: wrap it in a list")
        texts = list(texts)
        if not texts:
            return TextBatch.empty(self.encoder.dim, self.encoder.device)
        found = {text: self._entries[text] for text in dict.fromkeys(texts) if text in self._entries}
        new = [text for text in dict.fromkeys(texts) if text not in found]
        if new:
            batch = self.encoder.encode(new)
            for row, (text, length) in enumerate(zip(new, batch.lengths.tolist())):
                # clone: a view would keep the whole padded batch alive
                found[text] = (batch.tokens[row, :length].clone(), batch.pooled[row].clone())
        self.misses += len(new)
        self.hits += len(texts) - len(new)
        for text in dict.fromkeys(texts):  # after the lookups, so a small cache never evicts what this call uses
            self._entries[text] = found[text]
            self._entries.move_to_end(text)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return _assemble([found[text] for text in texts])

    def save(self, path: str | Path) -> Path:
        """Write every entry, least recently used first, to a safetensors file (atomically)."""
        from safetensors.torch import save_file

        path = Path(path)
        captions = list(self._entries)
        entries = list(self._entries.values())
        dim = self.encoder.dim
        tensors = {
            "tokens": torch.cat([tokens for tokens, _ in entries]) if entries else torch.zeros(0, dim),  # [sum n, D]
            "pooled": torch.stack([pooled for _, pooled in entries]) if entries else torch.zeros(0, dim),  # [N, D]
            "lengths": torch.tensor([len(tokens) for tokens, _ in entries], dtype=torch.int64),  # [N]
        }
        metadata = {"format": FORMAT, "fingerprint": self.encoder.fingerprint, "captions": json.dumps(captions)}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        save_file({name: tensor.contiguous().cpu() for name, tensor in tensors.items()}, str(partial), metadata)
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path: str | Path, encoder: TextEncoder, capacity: int | None = None) -> TextCache:
        """A saved cache, for the encoder that made it (checked by fingerprint); keeps the most recent
        `capacity` entries (default: the saved count, at least DEFAULT_CAPACITY)."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device=str(encoder.device)) as file:
                metadata = file.metadata() or {}
                tensors = {name: file.get_tensor(name) for name in file.keys()}
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path} is not a readable text cache: {error}") from None
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a text cache (format {metadata.get('format')!r}, expected {FORMAT!r})")
        if metadata.get("fingerprint") != encoder.fingerprint:
            raise ValueError(f"{path} was computed by text encoder {metadata.get('fingerprint')}, but this one is "
                             f"{encoder.fingerprint}: its entries would not match; encode the captions again")
        try:
            captions = json.loads(metadata["captions"])
            lengths = tensors["lengths"].tolist()
            pooled = tensors["pooled"]
            tokens = list(tensors["tokens"].split(lengths))
        except (KeyError, json.JSONDecodeError, RuntimeError) as error:
            raise ValueError(f"{path} is a corrupt text cache: {error!r}") from None
        if not len(captions) == len(lengths) == len(pooled):
            raise ValueError(f"{path} is a corrupt text cache: {len(captions)} captions, {len(lengths)} lengths, "
                             f"{len(pooled)} pooled rows")
        cache = cls(encoder, capacity or max(len(captions), DEFAULT_CAPACITY))
        for caption, caption_tokens, caption_pooled in list(zip(captions, tokens, pooled))[-cache.capacity:]:
            cache._entries[caption] = (caption_tokens, caption_pooled)
        return cache


def _assemble(entries: list[tuple[Tensor, Tensor]]) -> TextBatch:
    """Per-caption entries -> one batch padded to the longest, as the encoder pads it."""
    tokens = pad_sequence([caption_tokens for caption_tokens, _ in entries], batch_first=True)  # [B, L, D]
    lengths = torch.tensor([len(caption_tokens) for caption_tokens, _ in entries], device=tokens.device)  # [B]
    mask = torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]  # [B, L]
    return TextBatch(tokens, mask, torch.stack([pooled for _, pooled in entries]))
