"""Samplers for the rectified-flow ODE dx/dt = v(x, t), integrated from t = start down to 0.

Plain functions sharing one signature, as in k-diffusion: `sampler(denoiser, x, times,
callback=None, progress=False) -> x`, where `denoiser(x, t) -> velocity` (see guidance.py),
`x` is the canvas at times[0] and `times` descends to 0. The callback sees every step and may
raise to stop sampling (a cancelled job stops between steps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from atelier.flow.objective import shift_time

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict], None]


def time_grid(steps: int, shift: float = 1.0, start: float = 1.0, device: torch.device | str | None = None
              ) -> torch.Tensor:
    """steps + 1 times from `start` to 0, evenly spaced then shifted like the training times."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0 < start <= 1:
        raise ValueError(f"start must be in (0, 1], got {start}")
    return shift_time(torch.linspace(start, 0.0, steps + 1, dtype=torch.float64), shift).float().to(device)


def initial_noise(shape: Sequence[int], seeds: Sequence[int], device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Noise [len(seeds), *shape], each sample drawn from its own seed on the CPU, so a seed gives
    the same sample whatever else is in the batch and on whatever device it runs."""
    samples = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(seed))) for seed in seeds]
    return torch.stack(samples).to(device=device, dtype=dtype)


def _steps(times: torch.Tensor, progress: bool):
    return tqdm(range(len(times) - 1), disable=not progress, desc="sampling", leave=False)


def _batch_time(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.expand(x.shape[0]).to(x.dtype)


@torch.no_grad()
def sample_euler(denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, callback: Callback | None = None,
                 progress: bool = False) -> torch.Tensor:
    """First-order Euler steps: one model call per step."""
    for i in _steps(times, progress):
        t, t_next = times[i], times[i + 1]
        velocity = denoiser(x, _batch_time(t, x))
        if callback is not None:
            callback({"i": i, "steps": len(times) - 1, "t": float(t), "x": x, "denoised": x - t * velocity})
        x = x + (t_next - t) * velocity
    return x


@torch.no_grad()
def sample_heun(denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, callback: Callback | None = None,
                progress: bool = False) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022): two calls per step. Unlike diffusion
    in EDM's parametrisation, the flow's velocity is finite at t = 0, so the last step is
    second order too."""
    for i in _steps(times, progress):
        t, t_next = times[i], times[i + 1]
        velocity = denoiser(x, _batch_time(t, x))
        if callback is not None:
            callback({"i": i, "steps": len(times) - 1, "t": float(t), "x": x, "denoised": x - t * velocity})
        x_euler = x + (t_next - t) * velocity
        velocity_next = denoiser(x_euler, _batch_time(t_next, x))
        x = x + (t_next - t) * (velocity + velocity_next) / 2
    return x


@torch.no_grad()
def sample_multistep(denoiser: Denoiser, x: torch.Tensor, times: torch.Tensor, callback: Callback | None = None,
                     progress: bool = False) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) for rectified flow (alpha = 1 - t, sigma = t): one call
    per step, second order from the previous step's clean estimate."""
    previous_denoised, previous_h = None, None
    for i in _steps(times, progress):
        t, t_next = times[i].double(), times[i + 1].double()
        velocity = denoiser(x, _batch_time(times[i], x))
        denoised = x - times[i] * velocity                                          # x_0 estimate
        if callback is not None:
            callback({"i": i, "steps": len(times) - 1, "t": float(t), "x": x, "denoised": denoised})
        if t_next == 0:
            x = denoised
            continue
        alpha, alpha_next = 1 - t, 1 - t_next
        exp_neg_h = (alpha * t_next) / (t * alpha_next)                          # e^-h, h = lambda_next - lambda
        h = -torch.log(exp_neg_h) if exp_neg_h > 0 else torch.tensor(float("inf"), dtype=torch.float64)
        estimate = denoised
        if previous_denoised is not None and torch.isfinite(previous_h) and torch.isfinite(h):
            r = previous_h / h
            estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous_denoised
        x = (t_next / t).to(x.dtype) * x + (alpha_next * (1 - exp_neg_h)).to(x.dtype) * estimate
        previous_denoised, previous_h = denoised, h
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "multistep": sample_multistep,
}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
