"""A contact sheet of scenes with their captions, to look at the world."""

from __future__ import annotations

import textwrap
from pathlib import Path

from atelier.world.images.stream import WorldStream

TILE = 192
CAPTION_LINES = 6
CHARS_PER_LINE = 30


def contact_sheet(seed: int = 0, count: int = 24, size: int = 64, split: str = "train", columns: int = 6):
    """A PIL image: `count` scenes upscaled to TILE pixels, each with its caption below."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    line_height = 16
    caption_height = CAPTION_LINES * line_height + 8
    rows = -(-count // columns)
    sheet = Image.new("RGB", (columns * (TILE + 8) + 8, rows * (TILE + caption_height + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for k, sample in enumerate(WorldStream(seed=seed, size=size, split=split, limit=count)):
        x = 8 + (k % columns) * (TILE + 8)
        y = 8 + (k // columns) * (TILE + caption_height + 8)
        sheet.paste(Image.fromarray(sample.image).resize((TILE, TILE), Image.NEAREST), (x, y))
        lines = textwrap.wrap(sample.caption, CHARS_PER_LINE)[:CAPTION_LINES]
        for j, line in enumerate(lines):
            draw.text((x, y + TILE + 4 + j * line_height), line, fill="black", font=font)
    return sheet


def write_preview(out_dir: Path, seed: int = 0, count: int = 24, size: int = 64, split: str = "train") -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "world_preview.png"
    contact_sheet(seed=seed, count=count, size=size, split=split).save(path)
    return path


def write_samples(out_dir: Path, seed: int = 0, count: int = 16, size: int = 64, split: str = "train") -> int:
    """Scenes as files: NNNNNN.png, NNNNNN.txt (caption) and NNNNNN.json (truth), the image
    folder layout the trainer reads. Refuses to overwrite files already there."""
    import json

    from PIL import Image

    out_dir = Path(out_dir)
    existing = {p.stem for p in out_dir.iterdir()} if out_dir.is_dir() else set()
    if any(f"{i:06d}" in existing for i in range(count)):
        raise ValueError(f"{out_dir} already holds samples of these numbers; write to a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for sample in WorldStream(seed=seed, size=size, split=split, limit=count):
        stem = out_dir / f"{sample.index:06d}"
        Image.fromarray(sample.image).save(stem.with_suffix(".png"))
        stem.with_suffix(".txt").write_text(sample.caption + "\n")
        scene = sample.scene.to_dict()
        for obj, box in zip(scene["objects"], sample.boxes):
            obj["box"] = list(box)
        truth = {"caption": sample.caption, "query": sample.query.to_dict(), "scene": scene}
        stem.with_suffix(".json").write_text(json.dumps(truth, indent=1) + "\n")
        written += 1
    return written
