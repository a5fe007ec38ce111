"""A least-recently-used cache of the text encoder's outputs, one entry per distinct caption.

A folder data set repeats its captions every epoch, and the frozen encoder costs as much as a small
denoiser step, so each caption is encoded once. An entry holds the caption's tokens trimmed to its own
length, so a batch assembled from the cache is padded exactly as `TextEncoder.encode` pads it. A cache
saved to safetensors lets a trainer precompute its captions; it is tied to the encoder's fingerprint.

The world's captions rarely repeat (98,438 distinct in its first 100,000 training samples; a 4,096-entry
cache answers 0.2% of them), so there nearly every call encodes, and that path does no more than the
encoder: batches of new captions (under bf16 autocast for a bf16 run), their lengths read on the host (no
wait for the device), and the encoder's batch returned as it is when every caption of the call is new.
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
ENCODE_BATCH = 256  # captions per encoder call, TextEncoder.encode's default


class TextCache:
    """`encode(texts)` equals `encoder.encode(texts, precision=cache.precision)` up to float noise from batching
    (bit for bit when every caption is new and the call encodes them as one batch). `hits` counts captions
    answered from the cache, `misses` the captions encoded (a caption repeated within one call is encoded once:
    one miss, then hits). `precision` is the encoder's: "fp32", or "bf16" autocast for a bf16 training run."""

    def __init__(self, encoder: TextEncoder, capacity: int = DEFAULT_CAPACITY, precision: str = "fp32"):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 caption, got {capacity}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.encoder = encoder
        self.capacity = capacity
        self.precision = precision
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
        distinct = list(dict.fromkeys(texts))
        found = {text: self._entries[text] for text in distinct if text in self._entries}
        new = [text for text in distinct if text not in found]
        if new:
            fresh, lengths = self._encode_new(new)
            for row, (text, length) in enumerate(zip(new, lengths)):
                # clone: a view would keep the whole padded batch alive
                found[text] = (fresh.tokens[row, :length].clone(), fresh.pooled[row].clone())
        self.misses += len(new)
        self.hits += len(texts) - len(new)
        for text in distinct:  # after the lookups, so a small cache never evicts what this call uses
            self._entries[text] = found[text]
            self._entries.move_to_end(text)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        if len(new) == len(texts):  # every caption new and distinct: the encoder's batch is the answer
            return fresh
        return _assemble([found[text] for text in texts])

    def _encode_new(self, texts: list[str]) -> tuple[TextBatch, list[int]]:
        """The encoder's batch of `texts` (in chunks, as `TextEncoder.encode` makes it) and their lengths,
        counted on the host's mask so that nothing waits for the device."""
        parts, lengths = [], []
        for start in range(0, len(texts), ENCODE_BATCH):
            rows, mask = self.encoder.tokenize(texts[start:start + ENCODE_BATCH])  # [b, L] each, on the host
            parts.append(self.encoder.states(rows, mask, self.precision))
            lengths += mask.sum(dim=1).tolist()
        return parts[0] if len(parts) == 1 else TextBatch.cat(parts), lengths

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
        metadata = {"format": FORMAT, "fingerprint": self.encoder.fingerprint, "precision": self.precision,
                    "captions": json.dumps(captions)}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        save_file({name: tensor.contiguous().cpu() for name, tensor in tensors.items()}, str(partial), metadata)
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path: str | Path, encoder: TextEncoder, capacity: int | None = None) -> TextCache:
        """A saved cache, for the encoder that made it (checked by fingerprint); keeps the most recent
        `capacity` entries (default: the saved count, at least DEFAULT_CAPACITY). It encodes new captions at
        the precision its entries were made at, so that all its entries are alike (fp32 for a file that does
        not say: caches were fp32 before they recorded it)."""
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
        cache = cls(encoder, capacity or max(len(captions), DEFAULT_CAPACITY), metadata.get("precision", "fp32"))
        for caption, caption_tokens, caption_pooled in list(zip(captions, tokens, pooled))[-cache.capacity:]:
            cache._entries[caption] = (caption_tokens, caption_pooled)
        return cache


def _assemble(entries: list[tuple[Tensor, Tensor]]) -> TextBatch:
    """Per-caption entries -> one batch padded to the longest, as the encoder pads it."""
    tokens = pad_sequence([caption_tokens for caption_tokens, _ in entries], batch_first=True)  # [B, L, D]
    lengths = torch.tensor([len(caption_tokens) for caption_tokens, _ in entries], device=tokens.device)  # [B]
    mask = torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]  # [B, L]
    return TextBatch(tokens, mask, torch.stack([pooled for _, pooled in entries]))
