"""The watermark's figures in README "Provenance": what it survives, how much of an image an
edit must cover for the mark to be read, and false positives, on scikit-image's photos.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/watermark_figures.py

Every count is of the 32 marker bits that decide detection (atelier.pipeline.provenance: present at
<= 4 errors, unreadable at 5 to 8, absent above); about a minute on one core.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from skimage import data

from atelier.pipeline import provenance as pv
from atelier.pipeline.metadata import GenerationInfo

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "retina", "immunohistochemistry", "cat", "camera", "brick",
          "grass", "gravel", "moon", "coins", "hubble_deep_field", "logo", "colorwheel", "horse", "clock",
          "binary_blobs"]
COLOUR = ["astronaut", "coffee", "chelsea", "rocket", "retina", "immunohistochemistry", "cat", "hubble_deep_field",
          "colorwheel", "logo"]
INFO = GenerationInfo(prompt="a red star", seed=1, steps=20, guidance=4.0, sampler="euler", size=64, model="default",
                      model_hash="0" * 12, task="edit")


def photo(name: str) -> np.ndarray:
    image = getattr(data, name)()
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def encoded(pixels: np.ndarray, kind: str, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, kind, quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def resized(pixels: np.ndarray, factor: float) -> np.ndarray:
    height, width = pixels.shape[:2]
    size = (round(width * factor), round(height * factor))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


ATTACKS = {"none": lambda p: p, "jpeg95": lambda p: encoded(p, "JPEG", 95), "jpeg90": lambda p: encoded(p, "JPEG", 90),
           "jpeg75": lambda p: encoded(p, "JPEG", 75), "jpeg50": lambda p: encoded(p, "JPEG", 50),
           "webp90": lambda p: encoded(p, "WEBP", 90), "half": lambda p: resized(p, 0.5),
           "double": lambda p: resized(p, 2.0), "crop8": lambda p: p[8:, 8:], "crop64": lambda p: p[64:, 64:]}


def errors(pixels: np.ndarray) -> int | None:
    return pv.detect(pixels).marker_errors if pv.large_enough(pixels.shape[1], pixels.shape[0]) else None


def main() -> None:
    photos = {name: photo(name) for name in PHOTOS}
    marked = {name: pv.embed(pixels, pv.payload(INFO)) for name, pixels in photos.items()}
    print(f"{'photo':22s} {'size':>9s} {'PSNR':>5s} unmarked " + " ".join(f"{a:>6s}" for a in ATTACKS))
    for name, pixels in photos.items():
        noise = marked[name].astype(float) - pixels
        psnr = 10 * np.log10(255 ** 2 / np.mean(noise ** 2))
        row = [errors(attack(marked[name])) for attack in ATTACKS.values()]
        print(f"{name:22s} {pixels.shape[1]:>4d}x{pixels.shape[0]:<4d} {psnr:5.1f} {errors(pixels):8d} "
              + " ".join(f"{'-' if e is None else e:>6}" for e in row))
    print("\nan edit covering a share of the image (a disc; a strip at the left edge as outpainting makes): "
          f"photos of {len(COLOUR)} where the mark is present, as saved (PNG) / after JPEG 90")
    for share in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5):
        cells = []
        for shape in ("disc", "strip"):
            found = [0, 0]
            for name in COLOUR:
                pixels, height, width = photos[name], *photos[name].shape[:2]
                if shape == "disc":
                    yy, xx = np.mgrid[:height, :width]
                    region = (xx - width * 0.55) ** 2 + (yy - height * 0.45) ** 2 < share * height * width / np.pi
                else:
                    region = np.zeros((height, width), dtype=bool)
                    region[:, :round(share * width)] = True
                edited = marked[name].copy()
                edited[~region] = pixels[~region]
                for k, image in enumerate((edited, encoded(edited, "JPEG", 90))):
                    found[k] += pv.detect(image).status == "present"
            cells.append(f"{shape} {found[0]}/{found[1]}")
        print(f"  {share:4.0%}: " + "   ".join(cells))
    rng = np.random.default_rng(1)
    unmarked = []
    for name in COLOUR:
        pixels, height, width = photos[name], *photos[name].shape[:2]
        for k in range(30):
            h, w = int(rng.integers(256, height + 1)), int(rng.integers(256, width + 1))
            y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            crop = pixels[y:y + h, x:x + w]
            unmarked.append(errors(encoded(crop, "JPEG", int(rng.integers(50, 96))) if k % 3 == 1 else crop))
    unmarked = np.array(unmarked)
    print(f"\nunmarked: {len(unmarked)} random crops of the colour photos (a third re-encoded as JPEG 50-95): "
          f"marker errors min {unmarked.min()}, mean {unmarked.mean():.1f}; present {(unmarked <= 4).sum()}, "
          f"unreadable {((unmarked > 4) & (unmarked <= 8)).sum()}")


if __name__ == "__main__":
    main()
