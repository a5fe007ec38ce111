"""`atelier bench train`: training throughput and model FLOP utilisation, next to diffusers' DiT.

Both models take one optimisation step (forward, backward, AdamW) per iteration on the same
batch of latents, under the same dtype (bf16 autocast or fp32), built with the same width,
depth, heads and patch size and the same number of visual tokens. Ours also attends over text
tokens and carries keep-mask channels, so its FLOPs per image are higher; utilisation (MFU)
compares each model's own counted FLOPs (torch.utils.flop_counter, one multiply-add = 2 FLOPs)
to the machine's measured peak: a large bf16 (or fp32) matmul timed in the same run.

With the world's data (`benchmark_world`, `atelier bench train --data world`) the same model trains on
the real data path as the trainer runs it (render, tasks, keep-masks and draws, transfer, tokenizer
and caption encoding), next to the same step on a fixed batch, and the step is split into its sections.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from atelier.flow.objective import FlowConfig, flow_loss
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


SECTIONS = ("data", "transfer", "tokenizer encode", "caption encode", "forward", "backward", "optimiser")
TEXT_CACHE_ENTRIES = 4096  # as the trainer's
WORLD_WARMUP = 500  # scenes rendered first: the world's first ~50 fill its sprite caches at 20-70x the cost


class Stopwatch:
    """Seconds per named section of a step. The device is synchronised as a section starts and ends, so the
    work a section queues is counted in it (only here: training itself never waits for the device)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = dict.fromkeys(SECTIONS, 0.0)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        _sync(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.device)
            self.seconds[name] += time.perf_counter() - start


def _optimise(batch, model: Callable, optimizer: torch.optim.Optimizer, dtype: torch.dtype,
              section: Callable[[str], AbstractContextManager] = nullcontext) -> None:
    """One step on an assembled batch as the trainer takes it: the flow loss under autocast, backward, AdamW."""
    with section("forward"), torch.autocast(batch.latents.device.type, dtype=dtype, enabled=dtype != torch.float32):
        loss = flow_loss(model, batch.latents, batch.text.tokens, batch.text.mask, batch.text.pooled,
                         keep_mask=batch.keep_mask, camera=batch.camera, config=FlowConfig(), draws=batch.draws)
    with section("backward"):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    with section("optimiser"):
        optimizer.step()


def benchmark_world(preset_name: str, batch: int, size: int = 64, precision: str = "bf16", seconds: float = 10.0,
                    warmup: int = 2, compile_model: bool = False, threads: int | None = None,
                    device: str | None = None, seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Training images/s on the world's data next to the same model's step on one fixed batch (the synthetic
    step: no data path), where a world step's time goes, the host's data path alone per core, and the caption
    states' cost."""
    from atelier.hardware import hardware
    from atelier.text.cache import TextCache
    from atelier.text.encoder import TextEncoder
    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.train.batches import assemble, caption_precision
    from atelier.train.config import TrainConfig
    from atelier.train.data import StepExamples, WorldSource

    if threads is not None:
        torch.set_num_threads(threads)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    config = TrainConfig(steps=1, batch=batch, size=size, precision=precision, seed=seed)
    tokenizer = Autoencoder.from_pretrained(config.tokenizer, device=target).requires_grad_(False)
    texts = TextCache(TextEncoder.load(device=target), TEXT_CACHE_ENTRIES, caption_precision(precision, target))
    torch.manual_seed(seed)
    model = SpaceTimeTransformer(preset(preset_name, latent_channels=tokenizer.config.latent_channels,
                                        text_dim=texts.encoder.dim)).to(target).train()
    forward = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99))
    source = WorldSource(seed, size)
    for index in range(WORLD_WARMUP):
        source[index]
    examples = StepExamples(source, batch, 0, 1, seed=seed)
    next_step = itertools.count()

    def world_step(section: Callable[[str], AbstractContextManager] = nullcontext):
        with section("data"):
            indices, items = examples[next(next_step)]                       # rendered here, as with --workers 0
        assembled = assemble(items, indices, config, tokenizer, texts, target, section=section)
        _optimise(assembled, forward, optimizer, dtype, section)
        return assembled

    fixed = world_step()
    count, elapsed = _time_steps(lambda: _optimise(fixed, forward, optimizer, dtype), target, seconds, warmup)
    synthetic = batch * count / elapsed
    count, elapsed = _time_steps(world_step, target, seconds, warmup)
    world = batch * count / elapsed
    watch = Stopwatch(target)
    timed, start = 0, time.perf_counter()
    while timed < 2 or time.perf_counter() - start < seconds:
        world_step(watch)
        timed += 1
    hits = texts.hits / max(1, texts.hits + texts.misses)
    data = _data_path(examples, next(next_step), config, tokenizer.config, seconds)
    report = {
        "preset": preset_name, "device": str(target), "hardware": hardware(torch.get_num_threads()),
        "precision": precision, "compile": compile_model, "batch": batch, "size": size,
        "latent": list(fixed.latents.shape[1:]), "parameters": sum(p.numel() for p in model.parameters()),
        "synthetic_images_per_second": synthetic, "world_images_per_second": world,
        "step_ms": {name: 1000 * value / timed for name, value in watch.seconds.items()},
        "data_path": data,
        "captions": {"precision": texts.precision, "ms_per_batch": 1000 * watch.seconds["caption encode"] / timed,
                     "cache_hit_rate": hits},
    }
    for line in format_world(report).splitlines():
        log(line)
    return report


def _data_path(examples, first_step: int, config, tokenizer_config, seconds: float) -> dict:
    """The host's data path alone on one thread: render, then tasks, keep-masks, draws (on the CPU) and
    the stacked images, everything up to the tokenizer's input."""
    from atelier.train.batches import prepare

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    render = rest = 0.0
    step = first_step
    try:
        while step - first_step < 2 or render + rest < seconds:
            start = time.perf_counter()
            indices, items = examples[step]
            rendered = time.perf_counter()
            prepare(items, indices, config, tokenizer_config)
            render, rest = render + rendered - start, rest + time.perf_counter() - rendered
            step += 1
    finally:
        torch.set_num_threads(threads)
    samples = (step - first_step) * examples.batch
    return {"samples_per_second_per_core": samples / (render + rest), "render_ms_per_sample": 1000 * render / samples,
            "prepare_ms_per_sample": 1000 * rest / samples}


def format_world(report: dict) -> str:
    """The world benchmark's report as a table."""
    frames, channels, height, width = report["latent"]
    step_ms = report["step_ms"]
    total = sum(step_ms.values())
    synthetic, world = report["synthetic_images_per_second"], report["world_images_per_second"]
    data, captions = report["data_path"], report["captions"]
    lines = [f"{report['device']} {report['precision']}, {report['preset']} ({report['parameters'] / 1e6:.1f}M "
             f"params), batch {report['batch']} of {report['size']} px ({frames}x{channels}x{height}x{width} "
             f"latents); {report['hardware']}",
             f"{'':34s} {'img/s':>9s} {'ms/step':>9s}",
             f"{'fixed batch (no data path)':34s} {synthetic:9.1f} {1000 * report['batch'] / synthetic:9.1f}",
             f"{'world data (render to optimiser)':34s} {world:9.1f} {1000 * report['batch'] / world:9.1f}  "
             f"({world / synthetic:.2f}x)",
             "where a world step's time goes (device synchronised at each section):"]
    lines += [f"  {name:32s} {ms:9.1f} ms {100 * ms / total:5.1f}%" for name, ms in step_ms.items()]
    lines += [f"  {'total':32s} {total:9.1f} ms",
              f"data path alone (render, tasks, keep-masks, draws, images), one thread: "
              f"{data['samples_per_second_per_core']:,.0f} samples/s per core (render "
              f"{data['render_ms_per_sample']:.3f} ms, the rest {data['prepare_ms_per_sample']:.3f} ms per sample)",
              f"caption states ({captions['precision']}): {captions['ms_per_batch']:.1f} ms per batch of "
              f"{report['batch']}, {1000 * report['batch'] / captions['ms_per_batch']:,.0f} captions/s; text cache "
              f"hits {100 * captions['cache_hit_rate']:.1f}%"]
    return "\n".join(lines)
