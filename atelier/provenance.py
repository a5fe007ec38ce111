"""Provenance: an invisible watermark in every image the pipeline makes that is large enough for it.

Where it is applied. At the library level, where an image gets its GenerationInfo: the pipeline's
generate() and the editing methods (edit, outpaint, variations, replace_background/subject) call
`mark` on each image they return, so the CLI (`atelier generate/edit/outpaint/vary`, which save
with atelier.metadata.save_numbered) and the API (routers/images.py `_store`, which encodes with
png_bytes) write the same marked pixels, and `atelier generate --from` reproduces them exactly.
Encoders stay plain: a file's pixels are the pipeline's. Edits pass their mask: the mark is
embedded on the whole image, then every pixel outside the mask is put back exactly, so only
edited pixels carry it. `raw` edit outputs (the model's window before paste-back) are not marked.

The method. invisible-watermark's dwtDctSvd (the `imwatermark` package; Stable Diffusion's
scripts use its dwtDct): the image's U (blue-difference) channel goes through one level of a
Haar wavelet transform; in each 4x4 block of the approximation band the largest singular value of
the block's DCT is quantised to step 36 with an offset of 1/4 or 3/4 of a step for a 0 or 1 bit,
the payload repeating over the blocks; reading takes the majority vote of the blocks for each bit.
We call the package's block functions (EmbedDwtDctSvd.encode_frame / decode_frame) but do the
colour conversion and wavelet round trip here, in floating point, because the package's own
encode() writes the band back into uint8 (values past 0..255 wrap) and swaps the horizontal and
vertical detail bands on reconstruction. The marked pixels read the same with the package's
stock WatermarkDecoder('bits', 48).decode(bgr, 'dwtDctSvd'). dwtDct (the package's default)
was measured first and not chosen: on 7 of 8 scikit-image photos its bits were no better than
chance after JPEG at quality 90, the requirement here; dwtDctSvd read them with 0 errors.

The payload: 48 bits, a fixed 32-bit marker (the first 16 bits of SHA-256 of
"atelier-watermark-v1", each followed by its complement, so that the flat or grey areas that vote
all 0s or all 1s are 16 errors away from it) then a 16-bit id, the first 2 bytes of SHA-256 of the image's generation
metadata as canonical JSON. The id holds nothing secret; it ties the pixels to their metadata
(1 chance in 65,536 that other metadata shares it). Detection counts the marker's bit errors:
at most PRESENT_ERRORS (4 of 32; random bits do that with probability 1e-5) is "present", up to
UNREADABLE_ERRORS (8; random bits 0.4%) is "unreadable", a damaged mark or a chance likeness,
more is "absent".

Limits (measured by scripts/watermark_figures.py on scikit-image's photos; README "Provenance").
Both sides must be at least 256 px, so that enough blocks vote on each bit (the package refuses
images of fewer than 256x256 pixels): smaller images are returned untouched and reported as too small, so the
default model's 64 px images are never marked. The mark survives PNG and JPEG 95, 90 and 75
with no marker bit error on every photo that takes it, WebP 90 with at most 4, JPEG 50 only in
part (0 to 13 of 32), and not resizing (half or double size), cropping (8 px off the top left) or, presumably,
rotation. Images of pure black and white do not take it (the U change clips). In an edit only the
edited area carries it: it was read in all 10 colour photos when the area was 40% of the image
or more, in 7 to 9 of them at 20 to 30%, in at most 1 at 10% or less. Marking costs about
17 us per 4x4 block of the half-size U band (0.07 s at 512 px, 0.7 s at 1411 px; some 5 s at 4096 px). It is a label
for honest tools, not a defence against removal: anyone with the package can read or strip it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from atelier.metadata import JSON_KEY, GenerationInfo

METHOD = "dwtDctSvd"
MIN_SIDE = 256                 # both sides, in pixels
SCALE = 36                     # the package's default quantisation step for dwtDctSvd
BLOCK = 4
MARKER_BITS, ID_BITS = 32, 16
PAYLOAD_BITS = MARKER_BITS + ID_BITS
PRESENT_ERRORS = 4             # marker bit errors up to which the mark is present
UNREADABLE_ERRORS = 8          # ... up to which it is reported as unreadable; above, absent
_U_OFFSET = 0.5 / 255          # OpenCV's float YUV centres U at 0.5, its uint8 YUV at 128 (not 127.5)

_SEED = np.unpackbits(np.frombuffer(hashlib.sha256(b"atelier-watermark-v1").digest()[:2], np.uint8))
MARKER = np.stack([_SEED, 1 - _SEED], axis=1).reshape(-1)   # each bit then its complement: 16 ones, 16 zeros


@dataclass(frozen=True)
class Detection:
    """What `detect` found. status: "present", "unreadable", "absent" or "too_small"."""

    status: str
    width: int
    height: int
    marker_errors: int | None = None   # of MARKER_BITS
    id: str | None = None              # the 16-bit id read, as 4 hex digits (present or unreadable marks)
    id_errors: int | None = None       # bits in which it differs from the given metadata's id

    def to_dict(self) -> dict:
        return {"method": METHOD, "payload_bits": PAYLOAD_BITS, **asdict(self)}

    def describe(self) -> str:
        """One line for people."""
        if self.status == "too_small":
            return f"no watermark: image smaller than {MIN_SIDE} px (method minimum)"
        errors = f"marker {self.marker_errors}/{MARKER_BITS} bit errors"
        if self.status == "absent":
            return f"absent ({METHOD}; {errors}: no Atelier watermark)"
        if self.status == "unreadable":
            return (f"unreadable ({METHOD}; {errors}: a damaged mark or a chance likeness, too weak to call "
                    f"present)")
        if self.id_errors is None:
            agreement = "no metadata to compare it with"
        elif self.id_errors == 0:
            agreement = "matches the metadata"
        else:
            agreement = (f"differs from the metadata's in {self.id_errors} of {ID_BITS} bits (the metadata was "
                         f"changed or belongs to another image, or the mark is damaged)")
        return f"present ({METHOD}; {errors}), id {self.id}: {agreement}"


def large_enough(width: int, height: int) -> bool:
    return min(width, height) >= MIN_SIDE


def payload_id(info: GenerationInfo) -> np.ndarray:
    """The 16 id bits of `info`: its canonical JSON hashed."""
    text = json.dumps(info.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return np.unpackbits(np.frombuffer(hashlib.sha256(text.encode()).digest()[:ID_BITS // 8], np.uint8))


def payload(info: GenerationInfo) -> np.ndarray:
    """The 48 bits embedded for `info`: the marker, then its id."""
    return np.concatenate([MARKER, payload_id(info)])


def mark(image: Image.Image, info: GenerationInfo, region: np.ndarray | None = None) -> Image.Image:
    """`image` (RGB) watermarked with `info`'s payload and carrying `info` in .info["atelier"]; the
    image itself, unmarked, when a side is under MIN_SIDE. With `region` (bool [H, W], True =
    edited) only pixels inside it change: every pixel outside is the input's, exactly."""
    if not large_enough(*image.size):
        image.info[JSON_KEY] = info
        return image
    pixels = np.asarray(image.convert("RGB"))
    marked = embed(pixels, payload(info))
    if region is not None:
        marked[~region] = pixels[~region]
    out = Image.fromarray(marked)
    out.info[JSON_KEY] = info
    return out


def embed(pixels: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] with `bits` embedded (both sides at least MIN_SIDE)."""
    cv2, pywt, EmbedDwtDctSvd = _packages()
    height, width = pixels.shape[:2]
    if not large_enough(width, height):
        raise ValueError(f"a {width}x{height} image is too small to watermark; both sides must be at least "
                         f"{MIN_SIDE} px")
    h, w = height // 4 * 4, width // 4 * 4
    yuv = cv2.cvtColor(np.ascontiguousarray(pixels[..., ::-1], dtype=np.float32) / 255, cv2.COLOR_BGR2YUV)
    u = (yuv[:h, :w, 1].astype(np.float64) + _U_OFFSET) * 255
    band, details = pywt.dwt2(u, "haar")
    EmbedDwtDctSvd(list(bits), wmLen=len(bits), scales=[0, SCALE, 0], block=BLOCK).encode_frame(band, SCALE)
    yuv[:h, :w, 1] = pywt.idwt2((band, details), "haar") / 255 - _U_OFFSET
    bgr = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR) * 255
    return np.clip(np.round(bgr[..., ::-1]), 0, 255).astype(np.uint8)


def votes(pixels: np.ndarray, length: int = PAYLOAD_BITS) -> np.ndarray:
    """The share of blocks voting 1 for each of `length` bits (0.5 when they are split evenly):
    the package's decoder before its majority rule (>127/255)."""
    cv2, pywt, EmbedDwtDctSvd = _packages()
    height, width = pixels.shape[:2]
    h, w = height // 4 * 4, width // 4 * 4
    u = cv2.cvtColor(np.ascontiguousarray(pixels[:h, :w, ::-1], dtype=np.uint8), cv2.COLOR_BGR2YUV)[..., 1]
    band, _ = pywt.dwt2(u.astype(np.float64), "haar")
    scores = EmbedDwtDctSvd([], wmLen=length, scales=[0, SCALE, 0], block=BLOCK).decode_frame(
        band, SCALE, [[] for _ in range(length)])
    return np.array([np.mean(s) for s in scores])


def detect(image: Image.Image | np.ndarray, info: GenerationInfo | None = None) -> Detection:
    """Look for the mark; with `info` (the file's metadata), compare the id read with its id."""
    pixels = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if pixels.ndim == 2:                       # grey
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    pixels = pixels[:, :, :3]
    height, width = pixels.shape[:2]
    if not large_enough(width, height):
        return Detection("too_small", width, height)
    bits = (votes(pixels) * 255 > 127).astype(np.uint8)
    errors = int((bits[:MARKER_BITS] != MARKER).sum())
    if errors > UNREADABLE_ERRORS:
        return Detection("absent", width, height, errors)
    read_id = bits[MARKER_BITS:]
    id_errors = None if info is None else int((read_id != payload_id(info)).sum())
    status = "present" if errors <= PRESENT_ERRORS else "unreadable"
    return Detection(status, width, height, errors, np.packbits(read_id).tobytes().hex(), id_errors)


def _packages():
    """(cv2, pywt, EmbedDwtDctSvd), imported when first needed so that `import atelier.pipeline` stays light."""
    try:
        import cv2
        import pywt
        from imwatermark.dwtDctSvd import EmbedDwtDctSvd
    except ImportError as error:
        raise ImportError(f"the watermark needs opencv-python-headless, PyWavelets and invisible-watermark ({error}); "
                          f"run scripts/setup.sh, or pip install opencv-python-headless PyWavelets and then "
                          f"pip install --no-deps invisible-watermark==0.2.0") from error
    return cv2, pywt, EmbedDwtDctSvd
