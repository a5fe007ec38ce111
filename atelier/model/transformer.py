"""The unified space-time diffusion transformer.

Every task is one operation: predict the rectified-flow velocity of a latent canvas
[B, F, C, h, w] (F = 1 image, F = T clip frames, F = V views of an object), given text, a
keep-mask [B, F, 1, h, w] (1 = known) and the known context latents (README, The model).
Blocks follow DiT (Peebles & Xie 2023): adaLN-Zero conditioning, here per frame so each frame
has its own timestep and camera; attention is joint over text and visual tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from atelier.model.attention import JointAttention
from atelier.model.config import ModelConfig
from atelier.model.embed import PatchEmbed, TimestepEmbed, VectorEmbed, drop_text
from atelier.model.memory import ProductKeyMemory
from atelier.model.rope import rope_table

KIND = "atelier-transformer"
# In inference the per-sample conditioning (timestep, pooled text, camera, adaLN) runs on at least this
# many rows, zero-padded: CPU BLAS and vectorised loops take other paths for a few rows than for many,
# so a batch of 1 and a batch of 8 gave an image different last bits and `atelier generate --from`
# could not remake it exactly (Horace He, Thinking Machines Lab 2025, "Defeating Nondeterminism in LLM
# Inference"). The per-token layers already see 64 rows per sample from 64 px up.
MIN_CONDITION_ROWS = 64


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Attention then a feed-forward (an MLP or a product-key memory), each gated by adaLN-Zero.
    Text tokens take the sample's conditioning, visual tokens their frame's."""

    def __init__(self, config: ModelConfig, index: int):
        super().__init__()
        width = config.width
        self.mode = "joint" if config.attention == "full" else ("spatial", "temporal")[index % 2]
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = JointAttention(width, config.heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        if index in config.memory_blocks:
            self.ffn = ProductKeyMemory(width, config.memory_keys, config.memory_topk, config.memory_heads,
                                        config.memory_key_dim, config.memory_query_norm)
        else:
            self.ffn = Mlp(width, int(width * config.mlp_ratio))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, text: torch.Tensor, visual: torch.Tensor, text_cond: torch.Tensor, frame_cond: torch.Tensor,
                text_mask: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """text [B, L, D], visual [B, F, N, D], text_cond [B, D], frame_cond [B, F, D]"""
        batch = visual.shape[0]   # the conditioning may carry padding rows (SpaceTimeTransformer.forward)
        frame_mod = self.modulation(frame_cond)[:batch]                         # [B, F, 6D]
        # With one frame the text's conditioning (the mean over frames) is that frame's: computed once.
        text_mod = frame_mod[:, 0] if frame_cond.shape[1] == 1 else self.modulation(text_cond)[:batch]  # [B, 6D]
        t_shift1, t_scale1, t_gate1, t_shift2, t_scale2, t_gate2 = text_mod[:, None].chunk(6, -1)
        v_shift1, v_scale1, v_gate1, v_shift2, v_scale2, v_gate2 = frame_mod[:, :, None].chunk(6, -1)
        text_in = modulate(self.norm1(text), t_shift1, t_scale1)                  # [B, L, D]
        visual_in = modulate(self.norm1(visual), v_shift1, v_scale1)              # [B, F, N, D]
        text_out, visual_out = self.attn(text_in, visual_in, text_mask, rope, self.mode)
        text = text + t_gate1 * text_out                                         # [B, L, D]
        visual = visual + v_gate1 * visual_out                                   # [B, F, N, D]
        text_ffn_in = modulate(self.norm2(text), t_shift2, t_scale2)               # [B, L, D]
        visual_ffn_in = modulate(self.norm2(visual), v_shift2, v_scale2)         # [B, F, N, D]
        tokens = torch.cat([text_ffn_in, visual_ffn_in.flatten(1, 2)], dim=1)    # [B, L + F*N, D]: one matmul
        text_ffn, visual_ffn = self.ffn(tokens).split([text.shape[1], visual.shape[1] * visual.shape[2]], dim=1)
        text = text + t_gate2 * text_ffn                                         # [B, L, D]
        visual = visual + v_gate2 * visual_ffn.unflatten(1, visual.shape[1:3])   # [B, F, N, D]
        return text, visual


class FinalLayer(nn.Module):
    def __init__(self, width: int, patch_size: int, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, patch_size * patch_size * channels)

    def forward(self, visual: torch.Tensor, frame_cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(frame_cond)[:visual.shape[0], :, None].chunk(2, -1)  # [B, F, 1, D] each
        return self.linear(modulate(self.norm(visual), shift, scale))           # [B, F, N, p*p*C]


class SpaceTimeTransformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        width, channels = config.width, config.latent_channels
        self.patch_embed = PatchEmbed(2 * channels + 1, config.patch_size, width)
        self.time_embed = TimestepEmbed(width)
        self.pooled_embed = VectorEmbed(config.text_dim, width)
        self.camera_embed = VectorEmbed(config.camera_dim, width)
        self.text_embed = nn.Linear(config.text_dim, width)
        self.null_text = nn.Parameter(torch.empty(config.text_dim))     # the dropped caption's one token
        self.null_pooled = nn.Parameter(torch.empty(config.text_dim))   # and its pooled vector
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.depth))
        self.final = FinalLayer(width, config.patch_size, channels)
        self.gradient_checkpointing = False
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """All special initialisation in one place (DiT): Xavier linears, zeroed adaLN and output
        layers so every block starts as the identity, small-normal embeddings and memory."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for embed in (self.time_embed, self.pooled_embed, self.camera_embed):
            for layer in embed.mlp[0::2]:
                nn.init.normal_(layer.weight, std=0.02)
        nn.init.normal_(self.null_text, std=0.02)
        nn.init.normal_(self.null_pooled, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
            if isinstance(block.ffn, ProductKeyMemory):
                block.ffn.reset_parameters()
        nn.init.zeros_(self.final.modulation[-1].weight)
        nn.init.zeros_(self.final.modulation[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor,
                text_pooled: torch.Tensor, keep_mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                camera: torch.Tensor | None = None, drop_text: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity [B, F, C, h, w] of the noisy canvas x [B, F, C, h, w] at times t [B] or [B, F].

        text_tokens [B, L, text_dim] with text_mask [B, L] (True = real token) and text_pooled
        [B, text_dim]; keep_mask [B, F, 1, h, w] (1 = known) and context [B, F, C, h, w] (the known
        latents; ignored where keep_mask is 0); camera [B, F, camera_dim]; drop_text [B] bool swaps
        in the learned null caption (classifier-free guidance)."""
        batch, frames, channels, height, width = self._check(x)
        p = self.config.patch_size
        keep_mask = x.new_zeros(batch, frames, 1, height, width) if keep_mask is None else keep_mask.to(x.dtype)
        context = x.new_zeros(x.shape) if context is None else context.to(x.dtype) * keep_mask
        t = t.reshape(batch, -1).expand(batch, frames)                             # [B, F]
        if drop_text is not None:
            text_tokens, text_mask, text_pooled = self._drop_text(text_tokens, text_mask, text_pooled, drop_text)

        canvas = torch.cat([x, context, keep_mask], dim=2)                         # [B, F, 2C+1, h, w]
        visual = self.patch_embed(canvas)                                          # [B, F, N, D]
        if camera is None:   # no camera is the zero vector, so every parameter takes part in every step (DDP)
            camera = x.new_zeros(batch, frames, self.config.camera_dim)
        rows = batch if self.training else max(batch, -(-MIN_CONDITION_ROWS // frames))
        t, pooled, camera = (_pad_rows(v, rows) for v in (t, text_pooled, camera))
        frame_cond = self.time_embed(t) + self.pooled_embed(pooled)[:, None]       # [R, F, D], R >= B rows
        frame_cond = frame_cond + self.camera_embed(camera.to(frame_cond.dtype))   # [R, F, D]
        text_cond = frame_cond.mean(dim=1)                                         # [R, D]
        text = self.text_embed(_pad_rows(text_tokens.to(visual.dtype), rows))[:batch]  # [B, L, D]
        rope = rope_table(frames, height // p, width // p, self.config.rope_dims, self.config.rope_theta, x.device)

        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                text, visual = checkpoint(block, text, visual, text_cond, frame_cond, text_mask, rope,
                                          use_reentrant=False)
            else:
                text, visual = block(text, visual, text_cond, frame_cond, text_mask, rope)
        out = self.final(visual, frame_cond)                                       # [B, F, N, p*p*C]
        return rearrange(out, "b f (h w) (p q c) -> b f c (h p) (w q)", h=height // p, p=p, q=p)

    def _check(self, x: torch.Tensor) -> tuple[int, int, int, int, int]:
        if x.dim() != 5:
            raise ValueError(f"latents must be [B, F, C, h, w], got shape {tuple(x.shape)}")
        batch, frames, channels, height, width = x.shape
        p = self.config.patch_size
        if channels != self.config.latent_channels:
            raise ValueError(f"latents have {channels} channels; this model takes {self.config.latent_channels}")
        if height % p or width % p:
            raise ValueError(f"latent side {height}x{width} is not a multiple of the patch size {p}")
        return batch, frames, channels, height, width

    def _drop_text(self, tokens: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor, drop: torch.Tensor):
        return drop_text(tokens, mask, pooled, drop, self.null_text, self.null_pooled)

    def memory_value_parameters(self) -> list[nn.Parameter]:
        """The memory layers' values, which train with their own learning rate (Berges et al. 2024)."""
        return [p for block in self.blocks if isinstance(block.ffn, ProductKeyMemory)
                for p in block.ffn.value_parameters()]

    def save(self, path: str | Path) -> Path:
        from atelier.folder import save_folder

        return save_folder(path, {"kind": KIND, "model": self.config.to_dict()}, self.state_dict())

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> SpaceTimeTransformer:
        from atelier.folder import FolderError, check_state_dict, load_tensors, read_config

        config = read_config(path)
        if config.get("kind") != KIND:
            raise FolderError(f"{path} holds a {config.get('kind', 'unknown')!r} model, not {KIND!r}")
        try:
            model = cls(ModelConfig.from_dict(config["model"]))
        except (KeyError, TypeError, ValueError) as error:
            raise FolderError(f"{path}/config.json has an invalid model config: {error}") from None
        tensors = load_tensors(path, device=device)
        check_state_dict(model.state_dict(), tensors, f"model folder {path}")
        model.load_state_dict(tensors)
        return model.to(device).eval()


def _pad_rows(values: torch.Tensor, rows: int) -> torch.Tensor:
    """values [B, ...] with zero rows appended up to `rows`."""
    if values.shape[0] >= rows:
        return values
    return torch.cat([values, values.new_zeros(rows - values.shape[0], *values.shape[1:])])
