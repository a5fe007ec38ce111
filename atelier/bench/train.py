"""`atelier bench train`: training throughput and model FLOP utilisation, next to diffusers' DiT.

Both models take one optimisation step (forward, backward, AdamW) per iteration on the same
batch of latents, under the same dtype (bf16 autocast or fp32), built with the same width,
depth, heads and patch size and the same number of visual tokens. Ours also attends over text
tokens and carries keep-mask channels, so its FLOPs per image are higher; utilisation (MFU)
compares each model's own counted FLOPs (torch.utils.flop_counter, one multiply-add = 2 FLOPs)
to the machine's measured peak: a large bf16 (or fp32) matmul timed in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from atelier.flow.objective import flow_loss
from atelier.model.config import ModelConfig, preset
from atelier.model.transformer import SpaceTimeTransformer


@dataclass(frozen=True)
class BenchResult:
    name: str
    parameters: int
    flops_per_image: float   # one training step (forward and backward), per image
    images_per_second: float
    peak_flops: float

    @property
    def achieved_flops(self) -> float:
        return self.flops_per_image * self.images_per_second

    @property
    def mfu(self) -> float:
        return self.achieved_flops / self.peak_flops

    def as_dict(self) -> dict[str, float | str]:
        return {"name": self.name, "parameters": self.parameters, "flops_per_image": self.flops_per_image,
                "images_per_second": self.images_per_second, "peak_flops": self.peak_flops,
                "achieved_flops": self.achieved_flops, "mfu": self.mfu}


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, seconds: float = 2.0) -> float:
    """FLOP/s of a square matmul, the practical peak of this device and dtype."""
    size = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:   # on a GPU this queues work; the final sync waits for it
        a @ b
        count += 1
    _sync(device)
    return 2 * size ** 3 * count / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(step: Callable[[], None], device: torch.device, seconds: float, warmup: int) -> tuple[int, float]:
    for _ in range(warmup):
        step()
    _sync(device)
    count, start = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - start < seconds:
        step()
        count += 1
    _sync(device)
    return count, time.perf_counter() - start


def _counted_flops(step: Callable[[], None]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def _measure(model: torch.nn.Module, loss_of: Callable[[torch.nn.Module], torch.Tensor], batch: int,
             device: torch.device, dtype: torch.dtype, seconds: float, warmup: int,
             compile_model: bool) -> tuple[int, float, float]:
    """Parameters, counted FLOPs per image of one optimisation step, and images per second."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if compile_model else model

    def step(model_call=forward):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = loss_of(model_call)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    flops = _counted_flops(lambda: step(model))
    count, elapsed = _time_steps(step, device, seconds, warmup)
    return sum(p.numel() for p in model.parameters()), flops / batch, batch * count / elapsed


def bench_ours(config: ModelConfig, batch: int, latent: int, text_tokens: int, device: torch.device,
               dtype: torch.dtype, seconds: float, warmup: int, compile_model: bool) -> tuple[int, float, float]:
    torch.manual_seed(0)
    model = SpaceTimeTransformer(config).to(device).train()
    latents = torch.randn(batch, 1, config.latent_channels, latent, latent, device=device)
    tokens = torch.randn(batch, text_tokens, config.text_dim, device=device)
    mask = torch.ones(batch, text_tokens, dtype=torch.bool, device=device)
    pooled = torch.randn(batch, config.text_dim, device=device)
    keep = torch.zeros(batch, 1, 1, latent, latent, device=device)
    return _measure(model, lambda call: flow_loss(call, latents, tokens, mask, pooled, keep_mask=keep), batch,
                    device, dtype, seconds, warmup, compile_model)


def bench_diffusers(config: ModelConfig, batch: int, latent: int, device: torch.device, dtype: torch.dtype,
                    seconds: float, warmup: int, compile_model: bool) -> tuple[int, float, float]:
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    model = DiTTransformer2DModel(num_attention_heads=config.heads, attention_head_dim=config.head_dim,
                                  in_channels=config.latent_channels, num_layers=config.depth,
                                  sample_size=latent, patch_size=config.patch_size).to(device).train()
    latents = torch.randn(batch, config.latent_channels, latent, latent, device=device)
    timesteps = torch.randint(0, 1000, (batch,), device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def loss_of(call):
        prediction = call(latents, timestep=timesteps, class_labels=labels).sample
        return (prediction.float() - latents).square().mean()

    return _measure(model, loss_of, batch, device, dtype, seconds, warmup, compile_model)


def benchmark(preset_name: str, batch: int, latent: int | None = None, text_tokens: int = 32,
              precision: str = "bf16", seconds: float = 10.0, warmup: int = 2, compile_model: bool = False,
              threads: int | None = None, device: str | None = None,
              log: Callable[[str], None] = print) -> list[BenchResult]:
    if threads is not None:
        torch.set_num_threads(threads)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    config = preset(preset_name)
    latent = latent or config.sample_latent
    peak = matmul_peak(target, dtype)
    log(f"{target} {precision} matmul peak: {peak / 1e12:.2f} TFLOP/s")
    results = []
    for name, run in (("atelier " + preset_name, lambda: bench_ours(config, batch, latent, text_tokens, target, dtype,
                                                                     seconds, warmup, compile_model)),
                      ("diffusers DiT", lambda: bench_diffusers(config, batch, latent, target, dtype, seconds,
                                                                warmup, compile_model))):
        try:
            parameters, flops, rate = run()
        except ImportError as error:
            log(f"{name}: skipped ({error}); install diffusers to compare")
            continue
        results.append(BenchResult(name, parameters, flops, rate, peak))
        log(format_result(results[-1]))
    if len(results) == 2:
        ours, theirs = results
        log(f"ratio atelier / diffusers: {ours.images_per_second / theirs.images_per_second:.2f}x images/s, "
            f"{ours.mfu / theirs.mfu:.2f}x MFU ({batch} images of {latent}x{latent} latents, "
            f"{(latent // config.patch_size) ** 2} visual tokens; atelier adds {text_tokens} text tokens)")
    return results


def format_result(result: BenchResult) -> str:
    return (f"{result.name:16s} {result.parameters / 1e6:8.1f}M params  {result.flops_per_image / 1e9:8.2f} GFLOP/img "
            f"(train step)  {result.images_per_second:9.1f} img/s  {result.achieved_flops / 1e12:7.3f} TFLOP/s  "
            f"MFU {100 * result.mfu:5.1f}%")
