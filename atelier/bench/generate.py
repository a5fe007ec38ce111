"""`atelier bench generate`: text-to-image speed on this machine, next to diffusers, and the
step count's price in adherence.

Figures (medians of several runs, after a warm-up):
- warm-cache load: `Atelier.from_pretrained` of a model whose files were just read;
- one image and a batch of 8 end to end at the model's default settings (text encoding,
  sampling with classifier-free guidance, decoding);
- the sampling loop alone against diffusers' equivalent: DiTTransformer2DModel with the same
  width, depth, heads, patch and latent grid (so the same visual tokens; ours also carries the
  text tokens), driven by FlowMatchEulerDiscreteScheduler in a loop with classifier-free guidance,
  the same steps and dtype. Ours runs the same number of model calls (Euler) and, separately,
  the default sampler;
- adherence (atelier.evaluate) at 4, 8, 16 and 32 steps on a slice of the evaluation set.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

STEP_SWEEP = (4, 8, 16, 32)


def _median_seconds(run: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def diffusers_sampler(pipe, batch: int, steps: int, guidance: float) -> Callable[[], torch.Tensor]:
    """diffusers' DiT with our transformer's shape, sampled by FlowMatchEulerDiscreteScheduler with CFG."""
    from diffusers import DiTTransformer2DModel, FlowMatchEulerDiscreteScheduler

    config = pipe.transformer.config
    side = pipe.defaults["size"] // pipe.tokenizer.config.downsample
    torch.manual_seed(0)
    model = DiTTransformer2DModel(num_attention_heads=config.heads, attention_head_dim=config.head_dim,
                                  in_channels=config.latent_channels, num_layers=config.depth, sample_size=side,
                                  patch_size=config.patch_size).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    labels = torch.zeros(2 * batch, dtype=torch.long)

    @torch.no_grad()
    def sample() -> torch.Tensor:
        scheduler.set_timesteps(steps)
        latents = torch.randn(batch, config.latent_channels, side, side)
        for t in scheduler.timesteps:
            doubled = torch.cat([latents, latents])
            out = model(doubled, timestep=t.expand(2 * batch), class_labels=labels).sample[:, :config.latent_channels]
            unconditional, conditional = out.chunk(2)
            velocity = unconditional + guidance * (conditional - unconditional)
            latents = scheduler.step(velocity, t, latents).prev_sample
        return latents
    return sample


def our_sampler(pipe, batch: int, steps: int, guidance: float, sampler: str) -> Callable[[], torch.Tensor]:
    from atelier.flow.generate import generate_latents

    text = pipe.text_encoder.encode(["a red star above two blue circles"] * batch)
    side = pipe.defaults["size"] // pipe.tokenizer.config.downsample
    shape = (1, pipe.transformer.config.latent_channels, side, side)
    return lambda: generate_latents(pipe.transformer, text, list(range(batch)), shape, steps=steps, sampler=sampler,
                                    text_scale=guidance)


def adherence_sweep(pipe, per_category: int, steps_list=STEP_SWEEP, log: Callable[[str], None] = print) -> dict:
    """Overall adherence (one image per prompt) on `per_category` prompts of each category, per step count."""
    from atelier.evaluate.suite import sample_seed, score_prompt, summarise
    from atelier.pipeline import GenerationRequest
    from atelier.world.images.evalset import CATEGORIES, load

    prompts = [p for category in CATEGORIES for p in [q for q in load() if q.category == category][:per_category]]
    out = {}
    for steps in steps_list:
        started = time.perf_counter()
        requests = [GenerationRequest(p.text, seed=sample_seed(p, 0), steps=steps) for p in prompts]
        images = [image for chunk in range(0, len(requests), 16) for image in pipe.generate(requests[chunk:chunk + 16])]
        summary = summarise([score_prompt(p, [img[0]]) for p, img in zip(prompts, images)])
        out[steps] = {"overall": summary["overall"], "seconds": time.perf_counter() - started,
                      "categories": {name: row["score"] for name, row in summary["categories"].items()}}
        log(f"  {steps:>2} steps: overall {summary['overall']:.3f} ({len(prompts)} prompts, "
            f"{out[steps]['seconds']:.1f} s)")
    return out


def benchmark(model: str | Path | None = None, threads: int = 2, repeats: int = 5, per_category: int = 8,
              log: Callable[[str], None] = print) -> dict:
    from atelier.pipeline import Atelier

    torch.set_num_threads(threads)
    Atelier.from_pretrained(model)   # reads the files once: the figure below is a warm-cache load
    load = _median_seconds(lambda: Atelier.from_pretrained(model), repeats=3, warmup=0)
    pipe = Atelier.from_pretrained(model)
    defaults = pipe.defaults
    steps, guidance = defaults["steps"], defaults["guidance"]
    log(f"model {pipe.path} ({sum(p.numel() for p in pipe.transformer.parameters()) / 1e6:.1f}M transformer "
        f"parameters, hash {pipe.model_hash}); defaults: {steps} steps {defaults['sampler']}, guidance {guidance:g}, "
        f"{defaults['size']} px; torch {torch.__version__}, {threads} threads")
    result: dict[str, Any] = {"load_seconds": load}
    log(f"warm-cache load: {load:.2f} s")
    for batch in (1, 8):
        seconds = _median_seconds(lambda b=batch: pipe.text_to_image("a red star above two blue circles", n=b,
                                                                      seed=0), repeats)
        result[f"end_to_end_{batch}"] = seconds
        log(f"end to end, {batch} image{'s' if batch > 1 else ''}: {seconds:.3f} s ({batch / seconds:.1f} images/s)")
    for batch in (1, 8):
        ours_euler = _median_seconds(our_sampler(pipe, batch, steps, guidance, "euler"), repeats)
        ours_default = _median_seconds(our_sampler(pipe, batch, steps, guidance, defaults["sampler"]), repeats)
        line = (f"sampling only, batch {batch}, {steps} steps: atelier euler {ours_euler:.3f} s, "
                f"atelier {defaults['sampler']} {ours_default:.3f} s")
        try:
            theirs = _median_seconds(diffusers_sampler(pipe, batch, steps, guidance), repeats)
        except ImportError as error:
            log(f"{line}; diffusers skipped ({error}); install it with scripts/setup.sh --dev")
            continue
        result[f"sampling_{batch}"] = {"atelier_euler": ours_euler, "atelier_default": ours_default,
                                       "diffusers_euler": theirs, "speedup": theirs / ours_euler}
        log(f"{line}, diffusers DiT + FlowMatchEulerDiscreteScheduler {theirs:.3f} s: atelier is "
            f"{theirs / ours_euler:.2f}x as fast at the same model calls")
    log(f"adherence by steps ({per_category} prompts per category, one image each):")
    result["adherence"] = adherence_sweep(pipe, per_category, log=log)
    return result
