"""A contact sheet of edit pairs, to look at them: source | edit region | target, with the
instruction and the target's caption below."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from atelier.world.edits.pairs import KINDS, EditPair, make_edit_pair
from atelier.world.images.preview import TILE

PAIRS_PER_ROW = 2
TEXT_LINES = 4
CHARS_PER_LINE = 80
OVERLAY = np.array([255, 0, 255], dtype=np.float32)  # magenta: the region the edit may change


def mask_overlay(pair: EditPair) -> np.ndarray:
    """The source with the edit region tinted, [size, size, 3] uint8."""
    image = pair.source_image.astype(np.float32)
    tinted = np.where(pair.edit_mask[:, :, None], 0.45 * image + 0.55 * OVERLAY, image)
    return (tinted + 0.5).astype(np.uint8)


def edit_sheet(seed: int = 0, count: int = 10, size: int = 64):
    """A PIL image of `count` pairs of the stream `seed`, cycling through the kinds."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    line_height = 16
    gap = 8
    block_w = 3 * TILE + 2 * 4
    block_h = TILE + TEXT_LINES * line_height + 8
    rows = -(-count // PAIRS_PER_ROW)
    sheet = Image.new("RGB", (PAIRS_PER_ROW * (block_w + 2 * gap) + gap, rows * (block_h + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for k in range(count):
        pair = make_edit_pair(seed, k, size=size, kind=KINDS[k % len(KINDS)])
        x = gap + (k % PAIRS_PER_ROW) * (block_w + 2 * gap)
        y = gap + (k // PAIRS_PER_ROW) * (block_h + gap)
        for j, tile in enumerate((pair.source_image, mask_overlay(pair), pair.target_image)):
            sheet.paste(Image.fromarray(tile).resize((TILE, TILE), Image.NEAREST), (x + j * (TILE + 4), y))
        text = [f"[{pair.kind}] {pair.instruction}"] + textwrap.wrap(f"caption: {pair.caption}", CHARS_PER_LINE)
        for j, line in enumerate(text[:TEXT_LINES]):
            draw.text((x, y + TILE + 4 + j * line_height), line, fill="black", font=font)
    return sheet


def write_edit_preview(out_dir: Path, seed: int = 0, count: int = 10, size: int = 64) -> Path:
    """DIR/edit_preview.png: source | mask overlay (magenta = may change) | target per pair."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "edit_preview.png"
    edit_sheet(seed=seed, count=count, size=size).save(path)
    return path
