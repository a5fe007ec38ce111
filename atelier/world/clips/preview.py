"""An animated contact sheet of training clips with their captions, to look at the world in
motion (the clip counterpart of atelier.world.images.preview)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from atelier.world.clips.motion import DEFAULT_FRAMES
from atelier.world.clips.stream import make_clip_sample
from atelier.world.images.preview import CHARS_PER_LINE, TILE

COLUMNS = 4
CAPTION_LINES = 8  # clip captions run longer than scene captions
FRAME_MS = 160  # per frame; a 16-frame clip loops in about 2.5 s
LINE_HEIGHT = 16


def clip_sheets(seed: int = 0, count: int = 12, size: int = 64, frames: int = DEFAULT_FRAMES,
                split: str = "train", columns: int = COLUMNS) -> list:
    """One PIL image per frame: `count` clips upscaled to TILE pixels, each captioned below."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    caption_height = CAPTION_LINES * LINE_HEIGHT + 8
    rows = -(-count // columns)
    samples = [make_clip_sample(seed, i, size=size, frames=frames, split=split) for i in range(count)]
    base = Image.new("RGB", (columns * (TILE + 8) + 8, rows * (TILE + caption_height + 8) + 24), "white")
    draw = ImageDraw.Draw(base)
    corners = []
    for k, sample in enumerate(samples):
        x = 8 + (k % columns) * (TILE + 8)
        y = 8 + (k // columns) * (TILE + caption_height + 8)
        corners.append((x, y))
        for j, line in enumerate(textwrap.wrap(sample.caption, CHARS_PER_LINE)[:CAPTION_LINES]):
            draw.text((x, y + TILE + 4 + j * LINE_HEIGHT), line, fill="black", font=font)
    sheets = []
    for t in range(frames):
        sheet = base.copy()
        for (x, y), sample in zip(corners, samples):
            sheet.paste(Image.fromarray(sample.frames[t]).resize((TILE, TILE), Image.NEAREST), (x, y))
        ImageDraw.Draw(sheet).text((8, sheet.height - 20), f"frame {t + 1:2d} / {frames}", fill="black", font=font)
        sheets.append(sheet)
    return sheets


def write_clip_preview(out_dir: Path, seed: int = 0, count: int = 12, size: int = 64,
                       frames: int = DEFAULT_FRAMES) -> Path:
    """OUT_DIR/clips.gif: an animated grid of `count` training clips with their captions."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "clips.gif"
    sheets = clip_sheets(seed=seed, count=count, size=size, frames=frames)
    sheets[0].save(path, save_all=True, append_images=sheets[1:], duration=FRAME_MS, loop=0, optimize=False)
    return path
