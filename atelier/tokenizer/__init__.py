"""The visual tokenizer: a contextual (CoT) encoder and a convolutional decoder between images
and the latent canvas the diffusion model works on."""

from atelier.tokenizer.autoencoder import Autoencoder
from atelier.tokenizer.config import PRESETS, TokenizerConfig, preset

__all__ = ["PRESETS", "Autoencoder", "TokenizerConfig", "preset"]
