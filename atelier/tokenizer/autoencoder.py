"""The visual tokenizer: images <-> normalised latents for the diffusion model.

Encoder: a stem convolution, stages of CoT blocks (Li, Yao, Pan, Mei 2021) joined by strided
convolutions, then a few transformer layers for global context at latent resolution; the
"conv" encoder swaps both for plain residual blocks of the same parameter count, the baseline
the contextual encoder is measured against. Decoder: residual blocks and nearest-neighbour
upsampling, shared by both encoders. Around both, a linear patch shortcut (space-to-channel
and a 1x1 convolution, started at the PCA codec of the training patches) carries what a linear
codec can, so the deep paths learn only the rest (atelier.tokenizer.shortcut).

Deterministic (no KL term and no sampling): a diffusion model needs latents that decode
sharply, and a plain autoencoder with per-channel normalisation gives those at the smallest
cost (DC-AE, Chen et al. 2024, trains its latent diffusion models on one). `latent_noise`
optionally perturbs latents in training so the decoder tolerates a diffusion model's slightly
wrong ones.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from atelier.folder import FolderError, check_state_dict, load_tensors, read_config, save_folder
from atelier.tokenizer.config import TokenizerConfig
from atelier.tokenizer.cot import CoTBlock
from atelier.tokenizer.resnet import Downsample, ResBlock, Upsample
from atelier.tokenizer.shortcut import PatchDecode, PatchEncode, fit_pca
from atelier.tokenizer.transformer import GlobalContext, TransformerLayer

KIND = "tokenizer"


class Encoder(nn.Module):
    """Images [B, 3, H, W] -> raw latents [B, latent_channels, H / downsample, W / downsample]."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        widths = config.widths
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
        self.stages = nn.ModuleList(
            nn.Sequential(*(_encoder_block(config, width) for _ in range(count)))
            for width, count in zip(widths, config.blocks))
        self.downs = nn.ModuleList(Downsample(a, b) for a, b in zip(widths[:-1], widths[1:]))
        if config.encoder == "cot":
            self.context = GlobalContext(widths[-1], config.heads, config.global_layers, config.mlp_ratio)
        else:
            self.context = nn.Sequential(*(ResBlock(widths[-1], config.norm_groups)
                                           for _ in range(config.latent_blocks)))
        self.norm_out = nn.GroupNorm(config.norm_groups, widths[-1])
        self.act_out = nn.SiLU()
        self.conv_out = nn.Conv2d(widths[-1], config.latent_channels, 3, padding=1)
        self.shortcut = PatchEncode(config.downsample, config.latent_channels) if config.shortcut else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)  # [B, widths[0], H, W]
        for level, stage in enumerate(self.stages):
            x = stage(x)  # [B, widths[level], H / 2^level, W / 2^level]
            if level < len(self.downs):
                x = self.downs[level](x)  # [B, widths[level + 1], H / 2^(level + 1), W / 2^(level + 1)]
        x = self.context(x)  # [B, widths[-1], h, w]
        z = self.conv_out(self.act_out(self.norm_out(x)))  # [B, latent_channels, h, w]
        return z if self.shortcut is None else z + self.shortcut(images)  # [B, latent_channels, h, w]


class Decoder(nn.Module):
    """Raw latents [B, latent_channels, h, w] -> images [B, 3, h * downsample, w * downsample]."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        widths, groups = config.decoder_widths, config.norm_groups
        self.conv_in = nn.Conv2d(config.latent_channels, widths[-1], 3, padding=1)
        # Stages run from the latent resolution up to the image's; stage i works at widths[-1 - i].
        self.stages = nn.ModuleList(
            nn.Sequential(*(ResBlock(width, groups) for _ in range(count)))
            for width, count in zip(reversed(widths), reversed(config.decoder_blocks)))
        self.ups = nn.ModuleList(Upsample(a, b) for a, b in zip(widths[:0:-1], widths[-2::-1]))
        self.norm_out = nn.GroupNorm(groups, widths[0])
        self.act_out = nn.SiLU()
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)
        self.shortcut = PatchDecode(config.downsample, config.latent_channels) if config.shortcut else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z)  # [B, widths[-1], h, w]
        for i, stage in enumerate(self.stages):
            x = stage(x)  # [B, widths[-1 - i], h * 2^i, w * 2^i]
            if i < len(self.ups):
                x = self.ups[i](x)  # [B, widths[-2 - i], h * 2^(i + 1), w * 2^(i + 1)]
        x = self.conv_out(self.act_out(self.norm_out(x)))  # [B, 3, H, W]
        return x if self.shortcut is None else x + self.shortcut(z)  # [B, 3, H, W]


class Autoencoder(nn.Module):
    """`encode(images) -> latents` and `decode(latents) -> images`, for single images
    [B, 3, H, W] or clips and view sets [B, F, 3, H, W] (frames fold into the batch and back).

    Images are float in [-1, 1]; latents come out normalised, (z - shift) * scale per channel
    with the config's statistics, so the diffusion model sees roughly unit-variance latents.
    """

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # The statistics live in config.json, not among the weights: [C, 1, 1] each.
        self.register_buffer("latent_shift", _per_channel(config.latent_shift, config.latent_channels),
                             persistent=False)
        self.register_buffer("latent_scale", _per_channel(config.latent_scale, config.latent_channels),
                             persistent=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """All special initialisation lives here.

        Linear layers get Xavier-uniform weights and zero biases (as DiT's); convolutions keep
        PyTorch's default. The last layer of every residual branch starts at zero, so each block
        starts as the identity and the untrained network is a shallow one (Goyal et al. 2017,
        "zero-gamma"), which trains faster and more stably at small batch sizes. With the linear
        patch shortcuts, the deep paths' output layers start at zero too: the untrained
        autoencoder is a linear patch codec, and depth is added to it as it learns.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            last = None
            if isinstance(module, ResBlock):
                last = [module.conv2]
            elif isinstance(module, CoTBlock):
                last = [module.proj, module.mlp[-1]]
            elif isinstance(module, TransformerLayer):
                last = [module.attn.proj, module.mlp[-1]]
            for layer in last or ():
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        if self.config.shortcut:
            for layer in (self.encoder.conv_out, self.decoder.conv_out):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def fit_shortcuts(self, images: torch.Tensor) -> float:
        """Start the linear patch shortcuts at the PCA codec of `images` [N, 3, H, W] (a data-dependent
        initialisation, atelier.tokenizer.shortcut.fit_pca); returns the patch variance it explains."""
        if not self.config.shortcut:
            raise ValueError("this tokenizer has no linear shortcuts (config.shortcut is false)")
        images, _ = _fold(images, 3, "images")
        self._check_images(images)
        return fit_pca(self.encoder.shortcut, self.decoder.shortcut, images)

    @property
    def downsample(self) -> int:
        return self.config.downsample

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Training path: images [B, 3, H, W] -> reconstructions [B, 3, H, W], unclamped.

        With `latent_noise` > 0, training adds Gaussian noise of that size relative to the batch's
        latent standard deviation (detached, so the encoder cannot outgrow it).
        """
        self._check_images(images)
        z = self.encoder(images)  # [B, C, h, w]
        if self.training and self.config.latent_noise > 0:
            z = z + self.config.latent_noise * z.detach().std() * torch.randn_like(z)  # [B, C, h, w]
        return self.decoder(z)  # [B, 3, H, W]

    def encode_raw(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised latents: what the latent statistics are measured on."""
        images, frames = _fold(images, 3, "images")
        self._check_images(images)
        return _unfold(self.encoder(images), frames)  # [B, (F,) C, h, w]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, (F,) 3, H, W] in [-1, 1] -> normalised latents [B, (F,) C, H / d, W / d]."""
        z = self.encode_raw(images)  # [B, (F,) C, h, w]
        return (z - self.latent_shift) * self.latent_scale  # [B, (F,) C, h, w]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, (F,) C, h, w] -> images [B, (F,) 3, h * d, w * d], clamped to [-1, 1]."""
        latents, frames = _fold(latents, self.config.latent_channels, "latents")
        z = latents / self.latent_scale + self.latent_shift  # [B * F, C, h, w]
        return _unfold(self.decoder(z).clamp(-1, 1), frames)  # [B, (F,) 3, H, W]

    def _check_images(self, images: torch.Tensor) -> None:
        d = self.config.downsample
        height, width = images.shape[-2:]
        if height % d or width % d or height < d or width < d:
            raise ValueError(f"image sides must be positive multiples of the tokenizer's downsample factor {d}, "
                             f"got {height}x{width}")

    def save(self, path: str | Path, training: dict | None = None) -> Path:
        """Write the model folder: config.json (kind "tokenizer", the config, optional training facts)
        plus safetensors shards."""
        config = {"kind": KIND, **self.config.to_dict()}
        if training is not None:
            config["training"] = training
        return save_folder(path, config, self.state_dict())

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
        """Load a folder written by `save`; anything else raises a FolderError that says what is wrong."""
        data = read_config(path)
        kind = data.get("kind") if isinstance(data, dict) else None
        if kind != KIND:
            raise FolderError(f"{path} holds a model folder of kind {kind!r}, not a {KIND!r}")
        fields = {key: value for key, value in data.items() if key not in ("kind", "training")}
        try:
            config = TokenizerConfig.from_dict(fields)
        except (TypeError, ValueError) as error:
            raise FolderError(f"{Path(path) / 'config.json'}: {error}") from None
        model = cls(config)
        tensors = load_tensors(path)
        check_state_dict(model.state_dict(), tensors, f"tokenizer at {path}")
        model.load_state_dict(tensors)
        return model.to(device).eval()


def _encoder_block(config: TokenizerConfig, width: int) -> nn.Module:
    if config.encoder == "cot":
        return CoTBlock(width, config.cot_heads, config.cot_groups, config.mlp_ratio, config.norm_groups)
    return ResBlock(width, config.norm_groups)


def _per_channel(value: float | tuple[float, ...], channels: int) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32).reshape(-1, 1, 1).expand(channels, 1, 1).clone()


def _fold(x: torch.Tensor, channels: int, what: str) -> tuple[torch.Tensor, int | None]:
    """[B, F, C, H, W] -> ([B * F, C, H, W], F); [B, C, H, W] -> (itself, None)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim not in (4, 5) or x.shape[-3] != channels:
        raise ValueError(f"{what} must be [B, {channels}, H, W] or [B, F, {channels}, H, W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be floating point (images in [-1, 1]), got {x.dtype}")
    if x.ndim == 4:
        return x, None
    return x.flatten(0, 1), x.shape[1]


def _unfold(x: torch.Tensor, frames: int | None) -> torch.Tensor:
    return x if frames is None else x.unflatten(0, (-1, frames))
