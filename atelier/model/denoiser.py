"""One way to build and load a denoiser, whichever its architecture.

A config comes from atelier.model.config.preset (a transformer preset gives a ModelConfig, a UNet
preset such as "unet-tiny" a UNetConfig); `build(config)` makes the matching module, `load(path)`
reads a model folder (a bundle's transformer/) and dispatches on the kind its config.json records.
Both architectures share one interface: forward(x, t, text_tokens, text_mask, text_pooled,
keep_mask, context, camera, drop_text), `config.patch_size` / `.base_tokens` / `.latent_channels`,
`save`, `from_pretrained` and `memory_value_parameters`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import torch

from atelier.folder import FolderError, read_config
from atelier.model.config import ModelConfig

if TYPE_CHECKING:
    from atelier.model.transformer import SpaceTimeTransformer
    from atelier.model.unet import ConditionalUNet, UNetConfig

Denoiser = Union["SpaceTimeTransformer", "ConditionalUNet"]
DenoiserConfig = Union[ModelConfig, "UNetConfig"]


def build(config: DenoiserConfig) -> Denoiser:
    """A freshly initialised denoiser for `config` (on the current default device)."""
    if isinstance(config, ModelConfig):
        from atelier.model.transformer import SpaceTimeTransformer

        return SpaceTimeTransformer(config)
    from atelier.model.unet import ConditionalUNet, UNetConfig

    if isinstance(config, UNetConfig):
        return ConditionalUNet(config)
    raise TypeError(f"not a denoiser config: {type(config).__name__}")


def load(path: str | Path, device: str | torch.device = "cpu") -> Denoiser:
    """The denoiser saved in model folder `path` (its config.json's kind says which architecture)."""
    from atelier.model.transformer import KIND as TRANSFORMER
    from atelier.model.transformer import SpaceTimeTransformer
    from atelier.model.unet import KIND as UNET

    kind = read_config(path).get("kind")
    if kind == TRANSFORMER:
        return SpaceTimeTransformer.from_pretrained(path, device=device)
    if kind == UNET:
        from atelier.model.unet import ConditionalUNet

        return ConditionalUNet.from_pretrained(path, device=device)
    raise FolderError(f"{path} holds a {kind or 'unknown'!r} model, not a denoiser ({TRANSFORMER!r} or {UNET!r})")


def config_from_dict(data: dict[str, Any]) -> DenoiserConfig:
    """A config saved by either architecture's to_dict (a UNet's records kind "unet"; a transformer's no kind)."""
    if isinstance(data, dict) and data.get("kind") == "unet":
        from atelier.model.unet import UNetConfig

        return UNetConfig.from_dict(data)
    return ModelConfig.from_dict(data)
