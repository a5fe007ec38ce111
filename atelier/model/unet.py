"""An SD-style convolutional UNet as a second denoiser, so the recipe protocol can ask whether the
transformer is the right bet at this scale.

ConditionalUNet wraps diffusers' UNet2DConditionModel (Rombach et al. 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models") behind exactly SpaceTimeTransformer's interface: the same
forward signature and velocity [B, F, C, h, w], `config.patch_size` / `.base_tokens` for the
timestep shift, `save` / `from_pretrained` folders, `memory_value_parameters`. Images only: F must
be 1. Conditioning follows the transformer's: the canvas concatenated with the known context and
the keep-mask (2C+1 channels in); cross-attention to the text tokens under their mask; the pooled
text vector added to the timestep embedding (diffusers' "projection" class embedding); the dropped
caption swapped for learned null vectors (atelier.model.embed.drop_text).

Build and load it through atelier.model.denoiser, which dispatches on the config or the folder's kind.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from atelier.folder import config_from_dict
from atelier.model.embed import drop_text

KIND = "atelier-unet"


@dataclass(frozen=True)
class UNetConfig:
    kind: ClassVar[str] = "unet"     # the discriminator atelier.model.denoiser dispatches on (not a field)

    latent_channels: int = 8         # C of the tokenizer's latents [B, F, C, h, w]
    text_dim: int = 384              # all-MiniLM-L6-v2 hidden size: the cross-attention's key/value input
    widths: tuple[int, ...] = (64, 128, 192)    # channels per resolution level, halving the side each level
    layers: int = 2                  # ResNet layers per down block (up blocks take one more, as in SD)
    attention: tuple[bool, ...] = (False, True, True)  # levels with self- and cross-attention (the mid block always)
    heads: int = 4                   # attention heads at every attention level
    norm_groups: int = 32            # GroupNorm groups; must divide every width
    patch_size: int = 1              # the UNet sees every latent cell: one "visual token" per cell
    base_tokens: int = 256           # latent cells at which the timestep shift is 1: a 16x16 latent (64 px)
    sample_latent: int = 16          # latent side used by `atelier model info` to count FLOPs per sample

    def __post_init__(self) -> None:
        problems = []
        if not self.widths:
            problems.append("widths must name at least one level")
        if len(self.attention) != len(self.widths):
            problems.append(f"attention has {len(self.attention)} levels but widths has {len(self.widths)}")
        for name in ("latent_channels", "text_dim", "layers", "heads", "norm_groups", "base_tokens", "sample_latent"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive")
        if self.patch_size != 1:
            problems.append(f"patch_size must be 1 (the UNet does not patchify), not {self.patch_size}")
        if self.norm_groups >= 1:
            bad = [w for w in self.widths if w < 1 or w % self.norm_groups]
            if bad:
                problems.append(f"widths {bad} are not positive multiples of norm_groups {self.norm_groups}")
        if self.heads >= 1:
            bad = [w for w, a in zip(self.widths, self.attention) if a and w % self.heads]
            if bad or (self.widths and self.widths[-1] % self.heads):
                problems.append(f"attention widths {bad or [self.widths[-1]]} are not divisible by heads {self.heads}")
        if problems:
            raise ValueError("invalid UNet config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"kind": self.kind, **data, "widths": list(self.widths), "attention": list(self.attention)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        if isinstance(data, dict):
            if data.get("kind", cls.kind) != cls.kind:
                raise ValueError(f"a UNet config has kind {cls.kind!r}, not {data['kind']!r}")
            data = {key: tuple(value) if key in ("widths", "attention") and isinstance(value, list) else value
                    for key, value in data.items() if key != "kind"}
        return config_from_dict(cls, data, "UNet config")


UNET_PRESETS: dict[str, UNetConfig] = {
    # Sized to the transformer "tiny" preset's training FLOPs per 64 px image (within 1.5x; tests/test_unet.py).
    "unet-tiny": UNetConfig(widths=(64, 128, 192), layers=1, attention=(False, True, True), heads=4),
}


def unet_preset(name: str, **overrides: Any) -> UNetConfig:
    """A named UNet preset with fields replaced; atelier.model.config.preset calls this for UNet names."""
    return replace(UNET_PRESETS[name], **overrides)


class ConditionalUNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        try:   # slow to import: only when a UNet is made
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
        except ImportError as error:
            raise ImportError(f"the UNet denoiser needs diffusers ({error}): pip install 'atelier[unet]'") from None

        self.config = config
        levels = len(config.widths)
        self.unet = UNet2DConditionModel(
            sample_size=None,
            in_channels=2 * config.latent_channels + 1,     # noisy canvas, known context, keep-mask
            out_channels=config.latent_channels,
            down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in config.attention),
            mid_block_type="UNetMidBlock2DCrossAttn",
            up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention)),
            block_out_channels=tuple(config.widths),
            layers_per_block=config.layers,
            norm_num_groups=config.norm_groups,
            cross_attention_dim=config.text_dim,
            # diffusers' long-standing misnomer: `attention_head_dim` of UNet2DConditionModel is the number
            # of heads (diffusers issue 2011); the head dim is each level's width / heads.
            attention_head_dim=(config.heads,) * levels,
            use_linear_projection=True,
            class_embed_type="projection",                  # the pooled text, added to the timestep embedding
            projection_class_embeddings_input_dim=config.text_dim,
        )
        self.null_text = nn.Parameter(torch.empty(config.text_dim))     # the dropped caption's one token
        self.null_pooled = nn.Parameter(torch.empty(config.text_dim))   # and its pooled vector
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """diffusers' own initialisation, the null caption small-normal as the transformer's, and a
        zeroed output convolution: the model starts predicting zero velocity."""
        nn.init.normal_(self.null_text, std=0.02)
        nn.init.normal_(self.null_pooled, std=0.02)
        nn.init.zeros_(self.unet.conv_out.weight)
        nn.init.zeros_(self.unet.conv_out.bias)

    @property
    def gradient_checkpointing(self) -> bool:
        return self.unet.is_gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, enabled: bool) -> None:
        if enabled:
            self.unet.enable_gradient_checkpointing()
        elif self.unet.is_gradient_checkpointing:
            self.unet.disable_gradient_checkpointing()

    @property
    def blocks(self) -> list[nn.Module]:
        """The units FSDP shards one by one (atelier.train.distributed.wrap): every down, mid and up block."""
        return [*self.unet.down_blocks, self.unet.mid_block, *self.unet.up_blocks]

    def forward(self, x: torch.Tensor, t: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor,
                text_pooled: torch.Tensor, keep_mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                camera: torch.Tensor | None = None, drop_text: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity [B, 1, C, h, w] of the noisy image canvas x [B, 1, C, h, w] at times t [B] or [B, 1]
        in [0, 1]; the other arguments as SpaceTimeTransformer.forward's. Cameras are refused: the
        UNet makes single images, and an image has no camera."""
        batch, _, _, height, width = self._check(x, camera)
        if not self.training and batch > 1:
            # One row at a time in inference: CPU convolutions and small matmuls take other paths for 1 or 2
            # rows than for many, so an image would change in its last bits with the batch it is made in
            # (see atelier.model.transformer.MIN_CONDITION_ROWS); alone, each row is computed one way.
            rows = [[None if v is None else v[i:i + 1] for v in (x, t, text_tokens, text_mask, text_pooled, keep_mask,
                                                                 context, camera, drop_text)] for i in range(batch)]
            return torch.cat([self(*row) for row in rows])
        keep_mask = x.new_zeros(batch, 1, 1, height, width) if keep_mask is None else keep_mask.to(x.dtype)
        context = x.new_zeros(x.shape) if context is None else context.to(x.dtype) * keep_mask
        t = t.reshape(batch, -1)[:, 0]                                                  # [B]
        if drop_text is not None:
            text_tokens, text_mask, text_pooled = self._drop_text(text_tokens, text_mask, text_pooled, drop_text)
        canvas = torch.cat([x, context, keep_mask], dim=2)[:, 0]                        # [B, 2C+1, h, w]
        out = self.unet(canvas, 1000.0 * t.float(), text_tokens.to(x.dtype), class_labels=text_pooled.to(x.dtype),
                        encoder_attention_mask=text_mask.to(torch.bool), return_dict=False)[0]   # [B, C, h, w]
        return out[:, None]                                                             # [B, 1, C, h, w]

    def _check(self, x: torch.Tensor, camera: torch.Tensor | None) -> tuple[int, int, int, int, int]:
        if x.dim() != 5:
            raise ValueError(f"latents must be [B, F, C, h, w], got shape {tuple(x.shape)}")
        batch, frames, channels, height, width = x.shape
        if frames != 1:
            raise ValueError(f"the UNet denoises single images (F = 1), but the canvas has F = {frames} frames; "
                             f"train clips and object views with a transformer preset")
        if channels != self.config.latent_channels:
            raise ValueError(f"latents have {channels} channels; this model takes {self.config.latent_channels}")
        if camera is not None:
            raise ValueError("the UNet takes no camera: it denoises single images, not object views")
        return batch, frames, channels, height, width

    def _drop_text(self, tokens: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor, drop: torch.Tensor):
        return drop_text(tokens, mask, pooled, drop, self.null_text, self.null_pooled)

    def memory_value_parameters(self) -> list[nn.Parameter]:
        """No memory layers: every parameter trains with the dense learning rate."""
        return []

    def save(self, path: str | Path) -> Path:
        from atelier.folder import save_folder

        return save_folder(path, {"kind": KIND, "model": self.config.to_dict()}, self.state_dict())

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> ConditionalUNet:
        from atelier.folder import FolderError, check_state_dict, load_tensors, read_config

        config = read_config(path)
        if config.get("kind") != KIND:
            raise FolderError(f"{path} holds a {config.get('kind', 'unknown')!r} model, not {KIND!r}")
        try:
            model = cls(UNetConfig.from_dict(config["model"]))
        except (KeyError, TypeError, ValueError) as error:
            raise FolderError(f"{path}/config.json has an invalid model config: {error}") from None
        tensors = load_tensors(path, device=device)
        check_state_dict(model.state_dict(), tensors, f"model folder {path}")
        model.load_state_dict(tensors)
        return model.to(device).eval()
