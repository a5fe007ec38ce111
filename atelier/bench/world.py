"""Throughput of the training stream on one CPU thread, captions and truth included."""

from __future__ import annotations

import time

from atelier.world.images.stream import make_sample


def benchmark(seconds: float = 5.0, size: int = 64, seed: int = 0, warmup: int = 2000) -> dict:
    """Scenes per second after a warm-up that fills the sprite cache (timed separately)."""
    start = time.perf_counter()
    for index in range(warmup):
        make_sample(seed, index, size)
    warmup_seconds = time.perf_counter() - start
    index, start = warmup, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            make_sample(seed, index, size)
            index += 1
    produced = index - warmup
    return {"size": size, "scenes": produced, "seconds": elapsed, "scenes_per_second": produced / elapsed,
            "warmup_scenes": warmup, "warmup_seconds": warmup_seconds}
