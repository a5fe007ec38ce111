"""A turntable preview of the 3D world: a grid of captioned objects with the camera orbiting
each one, as an animated GIF, to look at what the trainer is fed."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from atelier.world.objects.camera import Camera
from atelier.world.objects.scene import make_object_sample, render_view

TILE = 160
COLUMNS = 4
CAPTION_LINES = 3
CHARS_PER_LINE = 24
FRAME_MS = 80


def turntable_frames(seed: int = 0, count: int = 8, size: int = 64, frames: int = 24) -> list:
    """PIL images: `count` objects of the 3D stream, each seen from a camera that orbits it
    once over `frames` frames at its sample's elevation, upscaled to TILE pixels, captioned."""
    from PIL import Image, ImageDraw, ImageFont

    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= 360:
        raise ValueError(f"frames must be an integer from 1 to 360, got {frames!r}")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
        raise ValueError(f"count must be an integer from 1 to 64, got {count!r}")
    samples = [make_object_sample(seed, i, size=size, views=1) for i in range(count)]
    font = ImageFont.load_default(size=13)
    line_height = 16
    caption_height = CAPTION_LINES * line_height + 8
    columns = min(COLUMNS, count)
    rows = -(-count // columns)
    width = columns * (TILE + 8) + 8
    height = rows * (TILE + caption_height + 8) + 8
    base = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(base)
    for k, sample in enumerate(samples):
        x, y = 8 + (k % columns) * (TILE + 8), 8 + (k // columns) * (TILE + caption_height + 8)
        for j, line in enumerate(textwrap.wrap(sample.caption, CHARS_PER_LINE)[:CAPTION_LINES]):
            draw.text((x, y + TILE + 4 + j * line_height), line, fill="black", font=font)
    out = []
    for f in range(frames):
        frame = base.copy()
        for k, sample in enumerate(samples):
            start = sample.cameras[0]
            camera = Camera((start.azimuth + 2 * math.pi * f / frames) % (2 * math.pi), start.elevation, start.distance)
            view = Image.fromarray(render_view(sample.object, camera, size))
            x, y = 8 + (k % columns) * (TILE + 8), 8 + (k // columns) * (TILE + caption_height + 8)
            frame.paste(view.resize((TILE, TILE), Image.NEAREST), (x, y))
        out.append(frame)
    return out


def write_turntable(out_dir: Path, seed: int = 0, count: int = 8, size: int = 64, frames: int = 24) -> Path:
    """Write out_dir/objects.gif (looping) and return its path."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "objects.gif"
    images = [frame.convert("P", palette=Image.ADAPTIVE, colors=255) for frame in
              turntable_frames(seed=seed, count=count, size=size, frames=frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=FRAME_MS, loop=0, disposal=1)
    return path


def frames_as_array(path: Path) -> np.ndarray:
    """Every frame of a GIF as uint8 [F, H, W, 3], to check or look at it."""
    from PIL import Image, ImageSequence

    with Image.open(path) as gif:
        return np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)])
