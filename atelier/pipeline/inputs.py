"""Images and masks from users: any file, PIL image or array, checked before anything is decoded.

An image may be a path, bytes, a PIL image or an array ([H, W], [H, W, 3] or [H, W, 4]; uint8, or
float in 0..1) in any PIL mode (RGB, RGBA, L, LA, P, CMYK, I;16 ...); it is edited as its RGB
conversion, so "untouched" means equal to `image.convert("RGB")`. A mask is white = edit on
black, or, when it has transparency, alpha 0 = edit (OpenAI's images/edits convention); an
image with transparent pixels is its own mask when none is given. A file's EXIF orientation is
applied, so images and masks line up as viewers show them. Images larger than MAX_SIDE
per side are refused from their header, before decoding, which also stops decompression bombs.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_SIDE = 4096          # pixels per side, for images and masks
ImageInput = str | Path | bytes | Image.Image | np.ndarray


class ImageInputError(ValueError):
    """An image or mask that cannot be used, with the reason in words."""


def open_image(source: ImageInput, what: str = "image") -> Image.Image:
    """`source` as a loaded PIL image, or ImageInputError naming `what` and the reason."""
    if isinstance(source, Image.Image):
        _check_side(source.size, what)
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source, what)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageInputError(f"{what} is empty (0 bytes)")
        stream, name = io.BytesIO(source), what
    elif isinstance(source, (str, Path)):
        if not Path(source).is_file():
            raise ImageInputError(f"{what} {source}: no such file")
        if Path(source).stat().st_size == 0:   # "not a readable image" would send people looking for a codec
            raise ImageInputError(f"{what} {source} is empty (0 bytes)")
        stream, name = Path(source), f"{what} {source}"
    else:
        raise ImageInputError(f"{what}: expected a path, bytes, a PIL image or an array, got {type(source).__name__}")
    kind = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream)
            kind = image.format
            _check_side(image.size, name)      # from the header: nothing is decoded yet
            image.load()
            image = ImageOps.exif_transpose(image)   # a phone photo is edited the way it is shown
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageInputError(f"{name} declares more pixels than is safe to decode ({error}); images up to "
                              f"{MAX_SIDE} pixels per side are accepted") from error
    # in plain words: the decoder's own messages can name Python objects (`<_io.BytesIO object at 0x...>`)
    except UnidentifiedImageError as error:
        raise ImageInputError(f"{name} is not a readable image (not a PNG, JPEG, WebP or other image file "
                              f"that Pillow reads)") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageInputError(f"{name} is not a readable image (the {kind or 'image'} file is damaged or "
                              f"cut short)") from error
    return image


def rgb_pixels(image: Image.Image) -> np.ndarray:
    """[H, W, 3] uint8: the image as it is edited (and kept outside the mask)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):            # 16-bit grey: scale, don't clip
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values / peak * 255 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def has_alpha(image: Image.Image) -> bool:
    """Whether the image has an alpha channel (or a palette with a transparent entry)."""
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info)


def transparency(image: Image.Image) -> np.ndarray | None:
    """The edit region its alpha marks (alpha below one half), or None when it has no transparent pixel."""
    if not has_alpha(image):
        return None
    alpha = np.asarray(image.convert("RGBA"))[:, :, 3]
    return alpha < 128 if (alpha < 255).any() else None


def read_region(mask: ImageInput | None, image: Image.Image, what: str = "mask") -> np.ndarray:
    """The edit region [H, W] bool (True = edit) of `image` from `mask`: an array of bools or
    numbers (True, or at least one half of the range = edit), or an image: its transparency when
    it has some (alpha 0 = edit), else its brightness (white = edit). No mask takes the image's
    own transparency. A mask of another size is resized (nearest neighbour) with a warning."""
    width, height = image.size
    if mask is None:
        region = transparency(image)
        if region is None:
            raise ImageInputError("give a mask (white = edit, or transparent = edit), or an image whose transparent "
                                  "pixels mark the area to edit")
        return region
    if isinstance(mask, np.ndarray) and mask.ndim == 2:
        region = _array_region(mask, what)
    else:
        picture = open_image(mask, what)
        region = transparency(picture)
        if region is None:
            region = rgb_pixels(picture).mean(axis=2) >= 127.5
    if region.shape != (height, width):
        warnings.warn(f"the {what} is {region.shape[1]}x{region.shape[0]} but the image is {width}x{height}; "
                      f"resizing the {what} to fit", stacklevel=2)
        resized = Image.fromarray(region.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
        region = np.asarray(resized) >= 128
    return region


def _array_region(mask: np.ndarray, what: str) -> np.ndarray:
    if mask.dtype == bool:
        return mask
    if not np.issubdtype(mask.dtype, np.number):
        raise ImageInputError(f"{what}: expected an array of bools or numbers, got dtype {mask.dtype}")
    peak = 255 if np.issubdtype(mask.dtype, np.integer) and mask.max(initial=0) > 1 else 1
    return mask >= peak / 2


def _from_array(array: np.ndarray, what: str) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageInputError(f"{what}: expected an array [H, W], [H, W, 3] or [H, W, 4], got shape {array.shape}")
    _check_side((array.shape[1], array.shape[0]), what)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise ImageInputError(f"{what}: expected uint8 or float (0..1) pixels, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise ImageInputError(f"{what}: the array holds NaN or infinite values")
        array = np.clip(array * 255 + 0.5, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(array))


def _check_side(size: tuple[int, int], what: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageInputError(f"{what} is empty ({width}x{height})")
    if max(width, height) > MAX_SIDE:
        raise ImageInputError(f"{what} is {width}x{height}; images up to {MAX_SIDE} pixels per side are accepted")
