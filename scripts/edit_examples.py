"""Before/after sheets of a model's edits, for its record (docs/models/default.md).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/edit_examples.py --model atelier/weights/default -o docs/models

writes default_edits_world.png (one public edit case per kind, and an automatic background and
subject replacement: source | area edited | truth | the model's edit) and default_edits_photos.png
(scikit-image's astronaut, coffee and chelsea edited at full resolution: before | after).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

SCALE = 3          # world rows are drawn at 3x, nearest neighbour, so a 64 px image is readable
PHOTO_HEIGHT = 256


def _label(image: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (image.width, image.height + 14), "white")
    out.paste(image, (0, 14))
    ImageDraw.Draw(out).text((2, 1), text[: image.width // 6], fill="black")
    return out


def _row(images: list[np.ndarray], labels: list[str]) -> Image.Image:
    tiles = [_label(Image.fromarray(a).resize((a.shape[1] * SCALE, a.shape[0] * SCALE), Image.Resampling.NEAREST), t)
             for a, t in zip(images, labels)]
    row = Image.new("RGB", (sum(t.width + 4 for t in tiles), tiles[0].height), "white")
    x = 0
    for tile in tiles:
        row.paste(tile, (x, 0))
        x += tile.width + 4
    return row


def _stack(rows: list[Image.Image]) -> Image.Image:
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 6 for r in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 6
    return sheet


def world_sheet(pipe, seed: int = 0) -> Image.Image:
    from atelier.world.edits import evalset as editset
    from atelier.world.images.stream import make_sample

    rows = []
    cases = {case.category: case for case in reversed(editset.load())}
    for kind, case in cases.items():
        pair = case.pair(64)
        result = pipe.edit(pair.source_image, pair.edit_mask, pair.caption, seed=seed)
        mask = np.repeat(np.asarray(result.mask)[:, :, None], 3, axis=2)
        rows.append(_row([pair.source_image, mask, pair.target_image, np.asarray(result.images[0])],
                         [kind, "area", "truth", case.instruction]))
    sample = make_sample(seed, 11, size=64, split="all")
    for name, run in (("background", lambda: pipe.replace_background(sample.image, "a blue background", seed=seed)),
                      ("subject", lambda: pipe.replace_subject(sample.image, "a green heart", which=0, seed=seed))):
        result = run()
        mask = np.repeat(np.asarray(result.mask)[:, :, None], 3, axis=2)
        truth = np.repeat((sample.masks.any(axis=0)[:, :, None] * 255).astype(np.uint8), 3, axis=2)
        rows.append(_row([sample.image, mask, truth, np.asarray(result.images[0])],
                         [f"auto {name}", "area found", "true objects", "edit"]))
    return _stack(rows)


def photo_sheet(pipe, seed: int = 0) -> Image.Image:
    from skimage import data

    rows = []
    for name in ("astronaut", "coffee", "chelsea"):
        photo = getattr(data, name)()
        height, width = photo.shape[:2]
        yy, xx = np.mgrid[:height, :width]
        region = (xx - width * 0.6) ** 2 + (yy - height * 0.4) ** 2 < (min(height, width) * 0.2) ** 2
        after = np.asarray(pipe.edit(photo, region, "a red circle on a blue background", seed=seed).images[0])
        assert np.array_equal(after[~region], photo[~region])
        scale = PHOTO_HEIGHT / height
        size = (round(width * scale), PHOTO_HEIGHT)
        before_tile = _label(Image.fromarray(photo).resize(size), f"{name} {width}x{height}")
        after_tile = _label(Image.fromarray(after).resize(size), "edited (circle)")
        row = Image.new("RGB", (before_tile.width * 2 + 4, before_tile.height), "white")
        row.paste(before_tile, (0, 0))
        row.paste(after_tile, (before_tile.width + 4, 0))
        rows.append(row)
    return _stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model folder (default: atelier/weights/default)")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/models"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    from atelier.pipeline import Atelier

    pipe = Atelier.from_pretrained(args.model)
    args.output.mkdir(parents=True, exist_ok=True)
    world_sheet(pipe, args.seed).save(args.output / f"{pipe.name}_edits_world.png")
    photo_sheet(pipe, args.seed).save(args.output / f"{pipe.name}_edits_photos.png")
    print(f"wrote {args.output}/{pipe.name}_edits_world.png and {pipe.name}_edits_photos.png")


if __name__ == "__main__":
    main()
