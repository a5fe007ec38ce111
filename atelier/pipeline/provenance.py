"""Provenance: an invisible watermark in every image the pipeline makes that is large enough for it.

Where it is applied. At the library level, where an image gets its GenerationInfo: the pipeline's
generate() and the editing methods (edit, outpaint, variations, replace_background/subject) call
`mark` on each image they return, so the CLI (`atelier generate/edit/outpaint/vary`, which save
with atelier.pipeline.metadata.save_numbered) and the API (routers/images.py `_store`, which encodes with
png_bytes) write the same marked pixels, and `atelier generate --from` reproduces them exactly.
Encoders stay plain: a file's pixels are the pipeline's. Edits pass their mask: the mark is
embedded on the whole image, then every pixel outside the mask is put back exactly, so only
edited pixels carry it. `raw` edit outputs (the model's window before paste-back) are not marked.

Reading an edit. Outside its area an edit's pixels are the source's, with the source's own mark
when the source was a large Atelier image, else none; a vote over the whole image mixes that with
the edit's mark (a marker read cleanly with an id a few bits off, or a marker too weak when the
area is small). So `mark` also records the edited area, as the state of each 8x8-pixel block (the
pixels of one 4x4 block of the half-size band: untouched, partly or wholly edited; metadata.py
stores it in the file beside the generation metadata), and `detect` can vote over the wholly
edited blocks alone, where the edit's mark is intact, and separately over the untouched ones.
An area whose blocks do not cover all 48 payload bits cannot carry the mark readably.

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
edited area carries it: read over the whole image (a file that does not record the area), it was
found in all 10 colour photos when the area was 40% of the image or more, in 7 to 9 of them at 20
to 30%, in at most 1 at 10% or less. Read in the recorded area, it is found whenever the area's
whole blocks carry all 48 bits, which depends on its shape and on the image's width (the bits run
along the rows of blocks and on from row to row): a centred square in 9 of scikit-image's colour
photos at 512 px was read with its id on all 9 from 160 px a side (10% of the image), on 7 at 128 px
and on 4 at 96 px, the same after JPEG 90 (measured with detect's `blocks` for issue 20; not yet
in scripts/watermark_figures.py). Marking costs about
17 us per 4x4 block of the half-size U band (0.07 s at 512 px, 0.7 s at 1411 px; some 5 s at 4096 px). It is a label
for honest tools, not a defence against removal: anyone with the package can read or strip it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from atelier.pipeline.metadata import JSON_KEY, REGION_KEY, GenerationInfo

METHOD = "dwtDctSvd"
MIN_SIDE = 256                 # both sides, in pixels
SCALE = 36                     # the package's default quantisation step for dwtDctSvd
BLOCK = 4
MARKER_BITS, ID_BITS = 32, 16
PAYLOAD_BITS = MARKER_BITS + ID_BITS
PRESENT_ERRORS = 4             # marker bit errors up to which the mark is present
UNREADABLE_ERRORS = 8          # ... up to which it is reported as unreadable; above, absent
BLOCK_PIXELS = 2 * BLOCK        # a block of the half-size band covers this many pixels a side
UNTOUCHED, PARTLY, WHOLLY = 0, 1, 2   # the states of a block in an edit's recorded region
REGION_CHARS = 8192            # the recorded region is coarsened until it fits (a JPEG's XMP holds 64 KiB)
EDIT_TASKS = ("edit", "replace_background", "replace_subject", "outpaint")   # marked inside their area only
_U_OFFSET = 0.5 / 255          # OpenCV's float YUV centres U at 0.5, its uint8 YUV at 128 (not 127.5)

_SEED = np.unpackbits(np.frombuffer(hashlib.sha256(b"atelier-watermark-v1").digest()[:2], np.uint8))
MARKER = np.stack([_SEED, 1 - _SEED], axis=1).reshape(-1)   # each bit then its complement: 16 ones, 16 zeros


@dataclass(frozen=True)
class Detection:
    """What `detect` found. status: "present", "unreadable", "absent" or "too_small"; area: what
    was read, "image" (all of it), or the blocks it was given: "edited" or "outside" an edit's area."""

    status: str
    width: int
    height: int
    marker_errors: int | None = None   # of MARKER_BITS
    id: str | None = None              # the 16-bit id read, as 4 hex digits (present or unreadable marks)
    id_errors: int | None = None       # bits in which it differs from the given metadata's id
    area: str = "image"
    blocks: int | None = None          # the blocks that voted
    bits_read: int | None = None       # the payload bits at least one of them carries

    def to_dict(self) -> dict:
        return {"method": METHOD, "payload_bits": PAYLOAD_BITS, **asdict(self)}

    def reading(self) -> str:
        """What was read and where, without saying whose it is: status, method, marker errors, id."""
        where = {"image": "", "edited": " in the edited area", "outside": " outside the edited area"}[self.area]
        if self.status == "too_small":
            if self.area == "image" or self.blocks is None:
                return f"no watermark: image smaller than {MIN_SIDE} px (method minimum)"
            return (f"too small to read{where}: its {self.blocks} whole {BLOCK_PIXELS}x{BLOCK_PIXELS}-pixel blocks "
                    f"carry {self.bits_read} of the {PAYLOAD_BITS} payload bits (the bits run along the rows of "
                    f"blocks, so a small or narrow area misses some)")
        errors = f"marker {self.marker_errors}/{MARKER_BITS} bit errors"
        if self.status == "absent":
            return f"absent{where} ({METHOD}; {errors}: no Atelier watermark)"
        if self.status == "unreadable":
            return (f"unreadable{where} ({METHOD}; {errors}: a damaged mark or a chance likeness, too weak to call "
                    f"present)")
        return f"present{where} ({METHOD}; {errors}), id {self.id}"

    def describe(self, edit: bool = False) -> str:
        """One line for people. `edit`: the image is an edit read over more than its edited area,
        where an id that differs is expected (describe_unrecorded_edit says why), not a sign of change."""
        if self.status != "present":
            return self.reading()
        if self.id_errors is None:
            agreement = "no metadata to compare it with"
        elif self.id_errors == 0:
            agreement = "matches the metadata"
        elif edit:
            agreement = f"differs from the metadata's in {self.id_errors} of {ID_BITS} bits, as an edit's may (below)"
        else:
            agreement = (f"differs from the metadata's in {self.id_errors} of {ID_BITS} bits (the metadata was "
                         f"changed or belongs to another image, or the mark is damaged)")
        return f"{self.reading()}: {agreement}"


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
    edited) only pixels inside it change: every pixel outside is the input's, exactly, and the
    region's blocks go in .info[REGION_KEY], so that the mark can be read where it was put."""
    if not large_enough(*image.size):
        image.info[JSON_KEY] = info
        return image
    pixels = np.asarray(image.convert("RGB"))
    marked = embed(pixels, payload(info))
    if region is not None:
        marked[~region] = pixels[~region]
    out = Image.fromarray(marked)
    out.info[JSON_KEY] = info
    if region is not None:
        out.info[REGION_KEY] = encode_region(region_blocks(region))
    return out


def block_grid(width: int, height: int) -> tuple[int, int]:
    """(rows, cols) of the blocks the mark is embedded in, each BLOCK_PIXELS pixels a side."""
    return height // 4 * 4 // BLOCK_PIXELS, width // 4 * 4 // BLOCK_PIXELS


def region_blocks(region: np.ndarray) -> np.ndarray:
    """The state of each block under an edit's `region` (bool [H, W]): UNTOUCHED, PARTLY or WHOLLY edited."""
    rows, cols = block_grid(region.shape[1], region.shape[0])
    cells = region[:rows * BLOCK_PIXELS, :cols * BLOCK_PIXELS].reshape(rows, BLOCK_PIXELS, cols, BLOCK_PIXELS)
    states = np.full((rows, cols), PARTLY, dtype=np.uint8)
    states[cells.all(axis=(1, 3))] = WHOLLY
    states[~cells.any(axis=(1, 3))] = UNTOUCHED
    return states


def encode_region(states: np.ndarray) -> str:
    """Block states as compact JSON: zlib-compressed bytes in base64, in cells of 1, 2, 4 ... blocks,
    the smallest that fits REGION_CHARS (a cell is wholly or un-touched only if all its blocks are)."""
    cell = 1
    while True:
        rows, cols = -(-states.shape[0] // cell), -(-states.shape[1] // cell)
        padded = np.pad(states, ((0, rows * cell - states.shape[0]), (0, cols * cell - states.shape[1])), mode="edge")
        cells = padded.reshape(rows, cell, cols, cell)
        low, high = cells.min(axis=(1, 3)), cells.max(axis=(1, 3))
        coarse = np.where(low == high, low, PARTLY).astype(np.uint8)
        text = json.dumps({"blocks": list(states.shape), "cell": cell,
                           "states": base64.b64encode(zlib.compress(coarse.tobytes(), 9)).decode()})
        if len(text) <= REGION_CHARS or cell >= max(states.shape):
            return text
        cell *= 2


def decode_region(text: str, width: int, height: int) -> np.ndarray:
    """The block states `encode_region` wrote, for a `width` x `height` image; ValueError when the text
    is corrupt or was written for another block grid (the image was resized or cropped)."""
    try:
        data = json.loads(text)
        rows, cols = (int(n) for n in data["blocks"])
        cell = int(data["cell"])
        coarse_shape = (-(-rows // cell), -(-cols // cell))
        coarse = np.frombuffer(zlib.decompress(base64.b64decode(data["states"])), np.uint8).reshape(coarse_shape)
    except (ValueError, TypeError, KeyError, zlib.error) as error:
        raise ValueError(f"the recorded edited area is corrupt ({error})") from error
    if (rows, cols) != block_grid(width, height):
        raise ValueError(f"the recorded edited area is for an image of {cols}x{rows} blocks of {BLOCK_PIXELS} pixels, "
                         f"and this {width}x{height} image has {block_grid(width, height)[1]}x"
                         f"{block_grid(width, height)[0]} (it was resized or cropped)")
    return coarse.repeat(cell, axis=0).repeat(cell, axis=1)[:rows, :cols]


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


def block_votes(pixels: np.ndarray) -> np.ndarray:
    """Each block's vote, 0 or 1, as [rows, cols] (block_grid): the package's decoder block by
    block; block k of the raster order carries payload bit k mod PAYLOAD_BITS."""
    cv2, pywt, EmbedDwtDctSvd = _packages()
    height, width = pixels.shape[:2]
    h, w = height // 4 * 4, width // 4 * 4
    rows, cols = block_grid(width, height)
    u = cv2.cvtColor(np.ascontiguousarray(pixels[:h, :w, ::-1], dtype=np.uint8), cv2.COLOR_BGR2YUV)[..., 1]
    band, _ = pywt.dwt2(u.astype(np.float64), "haar")
    scores = EmbedDwtDctSvd([], wmLen=rows * cols, scales=[0, SCALE, 0], block=BLOCK).decode_frame(
        band, SCALE, [[] for _ in range(rows * cols)])
    return np.array([score[0] for score in scores], dtype=np.uint8).reshape(rows, cols)


def votes(pixels: np.ndarray, blocks: np.ndarray | None = None) -> np.ndarray:
    """The share of blocks voting 1 for each payload bit (0.5 when they are split evenly; NaN for a
    bit no block votes on), over all blocks or those `blocks` (bool [rows, cols]) marks: the
    package's decoder before its majority rule (>127/255)."""
    cast = block_votes(pixels).reshape(-1)
    bit = np.arange(cast.size) % PAYLOAD_BITS
    chosen = np.ones(cast.size, dtype=bool) if blocks is None else np.asarray(blocks, dtype=bool).reshape(-1)
    ones = np.bincount(bit[chosen], weights=cast[chosen], minlength=PAYLOAD_BITS)
    counts = np.bincount(bit[chosen], minlength=PAYLOAD_BITS)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ones / counts


def detect(image: Image.Image | np.ndarray, info: GenerationInfo | None = None, blocks: np.ndarray | None = None,
           area: str = "image") -> Detection:
    """Look for the mark; with `info` (the file's metadata), compare the id read with its id. With
    `blocks` (bool [rows, cols] of block_grid), only those blocks vote, and `area` says which
    ("edited", "outside"); a mark with a payload bit none of them carries is "too_small" to read."""
    pixels = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if pixels.ndim == 2:                       # grey
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    pixels = pixels[:, :, :3]
    height, width = pixels.shape[:2]
    if not large_enough(width, height):
        return Detection("too_small", width, height, area=area)
    shares = votes(pixels, blocks)
    voting = int(np.prod(block_grid(width, height)) if blocks is None else np.count_nonzero(blocks))
    if np.isnan(shares).any():
        return Detection("too_small", width, height, area=area, blocks=voting,
                         bits_read=int(np.count_nonzero(~np.isnan(shares))))
    bits = (shares * 255 > 127).astype(np.uint8)
    errors = int((bits[:MARKER_BITS] != MARKER).sum())
    if errors > UNREADABLE_ERRORS:
        return Detection("absent", width, height, errors, area=area, blocks=voting)
    read_id = bits[MARKER_BITS:]
    id_errors = None if info is None else int((read_id != payload_id(info)).sum())
    status = "present" if errors <= PRESENT_ERRORS else "unreadable"
    return Detection(status, width, height, errors, np.packbits(read_id).tobytes().hex(), id_errors, area, voting)


def describe_edit(task: str, inside: Detection, rest: Detection, share: float) -> list[str]:
    """The lines `atelier verify` prints for an edit whose area the file records: the reading in the
    edited area (what the metadata's id is checked against), why only there, and what the rest carries."""
    verdict = inside.describe()
    if inside.status == "too_small":
        verdict += ": the edit is marked there, but too small an area for the mark to be read back"
    if rest.status == "present":
        outside = f"{rest.reading()}: the source image's own mark, kept with its pixels (an earlier Atelier image)"
    elif rest.status == "too_small" and not rest.blocks:
        outside = "nothing outside the edited area to read: the edit reached every block"
    else:
        outside = rest.reading()
    return [verdict,
            f"an edit ({task}) redraws only its area, here about {share:.1%} of the image (recorded in the file), and "
            f"only the redrawn pixels carry this image's mark; every pixel outside it is the source image's, kept "
            f"exactly",
            outside]


def describe_unrecorded_edit(task: str, found: Detection) -> str | None:
    """Why a whole-image reading of an edit whose area the file does not record need not match its
    metadata (None when it does match, or is of no edit)."""
    if task not in EDIT_TASKS or found.status == "too_small" or (found.status == "present" and found.id_errors == 0):
        return None
    return (f"this is an edit ({task}) and the file does not record its area: only the redrawn area carries this "
            f"image's mark, and every other pixel is the source's (with the source's mark, if it had one), so a "
            f"reading over the whole image mixes the two and need not match the metadata; the mark of a small "
            f"area may not be readable at all")


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
