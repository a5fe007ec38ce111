"""Model configuration: one typed dataclass, presets in one dict keyed by the CLI's choices."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from atelier.folder import config_from_dict

if TYPE_CHECKING:
    from atelier.model.unet import UNetConfig


@dataclass(frozen=True)
class ModelConfig:
    kind: ClassVar[str] = "transformer"  # vs atelier.model.unet.UNetConfig's "unet" (not a field)

    latent_channels: int = 8   # C of the tokenizer's latents [B, F, C, h, w]
    patch_size: int = 2        # spatial patch side on the latent grid; frames are not patched
    width: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0
    text_dim: int = 384        # all-MiniLM-L6-v2 hidden size
    camera_dim: int = 8        # per-frame camera vector (see atelier.model.embed.camera_vector)
    attention: str = "full"    # "full": one joint attention over text and all frames; "factorised":
                               # blocks alternate per-frame spatial (with text) and per-position temporal
    memory_blocks: tuple[int, ...] = ()  # blocks whose MLP is a product-key memory
    memory_keys: int = 256     # sub-keys per half: memory_keys**2 value slots
    memory_topk: int = 32
    memory_heads: int = 4
    memory_key_dim: int = 256  # query length, split into two halves of memory_key_dim // 2
    memory_query_norm: str = "rms"  # "rms" per half, or "batch" (BatchNorm over tokens, Lample et al. 2019)
    rope_theta: float = 10000.0
    base_tokens: int = 64      # visual tokens at which the timestep shift is 1 (see atelier.flow.objective)
    sample_latent: int = 16    # latent side used by `atelier model info` to count FLOPs per sample
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes saved with the model

    def __post_init__(self) -> None:
        problems = []
        if self.width % self.heads:
            problems.append(f"width {self.width} is not divisible by heads {self.heads}")
        elif not all(d > 0 and d % 2 == 0 for d in self.rope_dims):
            problems.append(f"head dim {self.head_dim} cannot be split into three even RoPE axes")
        if self.attention not in ("full", "factorised"):
            problems.append(f"attention must be 'full' or 'factorised', not {self.attention!r}")
        bad = [i for i in self.memory_blocks if not 0 <= i < self.depth]
        if bad:
            problems.append(f"memory_blocks {bad} are outside 0..{self.depth - 1}")
        if self.memory_key_dim % 2:
            problems.append("memory_key_dim must be even (the query is split in two halves)")
        if self.memory_query_norm not in ("rms", "batch"):
            problems.append(f"memory_query_norm must be 'rms' or 'batch', not {self.memory_query_norm!r}")
        if self.memory_topk > self.memory_keys:
            problems.append(f"memory_topk {self.memory_topk} exceeds memory_keys {self.memory_keys}")
        for name in ("latent_channels", "patch_size", "width", "depth", "heads", "text_dim", "camera_dim"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def rope_dims(self) -> tuple[int, int, int]:
        """Head dims rotated by frame, y and x position: a quarter for time, the rest split over space."""
        frame = 2 * (self.head_dim // 8)
        y = 2 * ((self.head_dim - frame) // 4)
        return frame, y, self.head_dim - frame - y

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["memory_blocks"] = list(self.memory_blocks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if isinstance(data, dict) and "memory_blocks" in data:      # a JSON list
            data = {**data, "memory_blocks": tuple(data["memory_blocks"])}
        return config_from_dict(cls, data, "model config")

PRESETS: dict[str, ModelConfig] = {
    # CPU-sized: trains on a laptop, serves the shipped default model.
    "tiny": ModelConfig(width=192, depth=8, heads=4, memory_blocks=(5,), memory_keys=64, memory_topk=16,
                        memory_heads=2, memory_key_dim=64),
    "small": ModelConfig(width=384, depth=12, heads=6),
    "base": ModelConfig(width=768, depth=12, heads=12, sample_latent=32),
    "large": ModelConfig(width=1024, depth=24, heads=16, sample_latent=32),
    # DiT-XL's shape (Peebles & Xie 2023): 28 layers, width 1152, 16 heads.
    "xl": ModelConfig(width=1152, depth=28, heads=16, sample_latent=32),
    # 10B+: three memory layers (Berges et al. 2024, "Memory Layers at Scale") add 3.2B parameters
    # read sparsely: each token touches memory_heads * memory_topk of a layer's 262k value slots.
    "xxl": ModelConfig(width=4096, depth=28, heads=32, memory_blocks=(6, 13, 20), memory_keys=512,
                       memory_topk=32, memory_heads=4, memory_key_dim=512, sample_latent=32),
}


UNET_PRESET_NAMES = ("unet-tiny",)   # atelier.model.unet.UNET_PRESETS, named here so this module stays torch-free


def preset(name: str, **overrides: Any) -> ModelConfig | UNetConfig:
    """A named preset, optionally with fields replaced (e.g. latent_channels from the tokenizer): a
    ModelConfig for a transformer preset (PRESETS), a UNetConfig for a UNet one (UNET_PRESET_NAMES).
    atelier.model.denoiser.build makes the model either gives."""
    if name in PRESETS:
        return replace(PRESETS[name], **overrides)
    if name in UNET_PRESET_NAMES:
        from atelier.model.unet import unet_preset

        return unet_preset(name, **overrides)
    raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join((*PRESETS, *UNET_PRESET_NAMES))}")
