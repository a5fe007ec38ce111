"""Editing with the one foundation model: inpaint, replace background or subject, outpaint, vary.

Every edit is keep-mask conditioning (the design's one operation: fill in the unknown part of a
latent canvas given text and the known part): the latent cells wholly outside the region are
given as clean context and the rest is generated, the same model and weights as
text-to-image, trained on both together. The prompt describes the whole result ("a red star on
a blue background"), as for text-to-image and as the model was trained, not the change.
Variations are SDEdit (Meng et al. 2022): the image's latents noised part way, then denoised.
`Editing` is the part of atelier.pipeline.Atelier that holds these methods; it declares what
it uses of the rest of the class.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from atelier.pipeline.inputs import MAX_SIDE, ImageInput, ImageInputError, open_image, read_region, rgb_pixels
from atelier.pipeline.metadata import GenerationInfo
from atelier.pipeline.provenance import mark
from atelier.pipeline.requests import GenerationRequest, Progress, SettingError, progress_bar
from atelier.pipeline.window import CONTEXT, Window, crop, find_window, fit_pixels, fit_region, paste

SUBJECT_MARGIN = 2 / 64   # of the image's shorter side: how far replace_subject's region reaches past the object


class NoSubjectError(ValueError):
    """The segmenter found no subject, so there is no automatic region; paint one instead."""


@dataclass(frozen=True)
class AutomaticRegion:
    region: np.ndarray     # bool [H, W], True = the area to redraw
    objects: int           # the objects the segmenter found (split_objects)


@dataclass(frozen=True)
class EditResult:
    """What an edit made. `images` have the source's size and equal it outside `mask`; when both
    sides are 256 px or more they carry the invisible watermark inside `mask` only, and record
    that area so the mark is read there (atelier.pipeline.provenance). `raw` are the model's outputs
    before paste-back (its whole window replaced, the rest of the image kept, no watermark),
    what the edit suite's PSNR outside the mask measures."""

    images: list[Image.Image]
    mask: Image.Image              # mode "L", white = the area that was edited
    raw: list[Image.Image]
    window: Window | None          # where in the image the model drew; None when nothing was drawn


class Editing:
    """The editing methods of atelier.pipeline.Atelier, which provides what is declared here."""

    transformer: Any                                            # atelier.model.transformer.SpaceTimeTransformer
    tokenizer: Any                                              # atelier.tokenizer.autoencoder.Autoencoder
    segmenter: Any                                              # atelier.segment.model.Segmenter, loaded on use
    sizes: tuple[int, ...]                                      # the canvas sides the model makes
    name: str                                                   # the model folder's name and its weights'
    model_hash: str                                             # hash, for the metadata
    resolve: Callable[[GenerationRequest], GenerationRequest]   # defaults filled in, settings checked
    encode_texts: Callable[..., tuple[Any, Any]]                # (prompt, negative, rows) -> TextBatches
    encode_pixels: Callable[[np.ndarray], Any]                  # [B, H, W, 3] uint8 -> latents
    decode: Callable[[Any], np.ndarray]                         # latents -> [B, H, W, 3] uint8

    def edit(self, image: ImageInput, mask: ImageInput | None = None, prompt: str = "",
             negative_prompt: str | None = None, n: int = 1, seed: int | None = None, steps: int | None = None,
             guidance: float | None = None, sampler: str | None = None, context: float = CONTEXT,
             feather: float | None = None, progress: Progress | bool = False, task: str = "edit") -> EditResult:
        """Redraw the region of `image` that `mask` marks (white = edit, or alpha 0 = edit; no mask
        takes the image's own transparency) so the whole reads as `prompt`, at full resolution:
        a window around the region with `context` of its size on each side is fitted to the
        model's canvas, drawn, scaled back and pasted inside the region, feathered over
        `feather` pixels inside it (default: one model pixel), so no pixel outside it changes.
        An empty region returns the image unchanged; a full one is plain generation."""
        check_edit_settings(context, feather)
        picture = open_image(image)
        pixels = rgb_pixels(picture)
        region = read_region(mask, picture)
        canvas = self._canvas(max(pixels.shape[:2]))
        request = self.resolve(GenerationRequest(prompt, negative_prompt, n, seed, steps, guidance, canvas, sampler))
        if not region.any():
            warnings.warn("the mask marks nothing to edit: returning the image unchanged", stacklevel=2)
            unchanged = [Image.fromarray(pixels) for _ in range(request.n)]
            return EditResult(unchanged, _mask_image(region), [image.copy() for image in unchanged], None)
        window = find_window(region, canvas, context)
        window_pixels, window_region = crop(pixels, region, window)
        model_region = fit_region(window_region, canvas)
        drawn = self._draw(request, fit_pixels(window_pixels, canvas), model_region, progress)
        width = window.side / canvas if feather is None else feather
        images, raws = [], []
        for k, array in enumerate(drawn):
            window_out = fit_pixels(array, window.side)
            info = self._edit_info(request, k, task)
            images.append(mark(Image.fromarray(paste(pixels, window_out, region, window, width)), info, region))
            raws.append(_with_info(paste(pixels, window_out, _window_area(region.shape, window), window, 0), info))
        return EditResult(images, _mask_image(region), raws, window)

    def replace_background(self, image: ImageInput, prompt: str, **settings) -> EditResult:
        """Redraw everything but the subject, found by the segmenter (atelier.segment); the
        result's mask shows what was taken for background, to check and refine with edit()."""
        picture = open_image(image)
        region = self.automatic_region(picture, "background").region
        return self.edit(picture, region, prompt, task="replace_background", **settings)

    def replace_subject(self, image: ImageInput, prompt: str, which: int | tuple[float, float] | None = None,
                        **settings) -> EditResult:
        """Redraw the subject, found by the segmenter: all objects together, or with `which` one of
        them, by index (0 is the largest) or by an (x, y) point in pixels on or near it."""
        picture = open_image(image)
        region = self.automatic_region(picture, "subject", which).region
        return self.edit(picture, region, prompt, task="replace_subject", **settings)

    def automatic_region(self, image: ImageInput, kind: str,
                         which: int | tuple[float, float] | None = None) -> AutomaticRegion:
        """The region replace_background ("background") or replace_subject ("subject", `which`
        as there) would redraw, found by the segmenter: the one implementation both they and the
        API's POST /v1/masks use. NoSubjectError when the segmenter finds no subject."""
        from atelier.segment.masks import pick_object, split_objects

        if kind not in ("background", "subject"):
            raise ValueError(f"kind must be 'background' or 'subject', got {kind!r}")
        subject = self._subject(open_image(image))
        if not subject.any():
            what = ", so there is no background to tell apart" if kind == "background" else ""
            raise NoSubjectError(f"no subject was found in the image{what}; paint the area to replace and use "
                                 "edit() (atelier edit IMAGE --mask MASK.png)")
        objects = split_objects(subject)
        if kind == "background":
            # Not grown: a kept ring of the old background would outline every object in the result.
            return AutomaticRegion(~subject, len(objects))
        chosen = subject if which is None else pick_object(objects, which)
        return AutomaticRegion(_grow(chosen, _margin(subject.shape)), len(objects))   # grown: no rim may stay

    def outpaint(self, image: ImageInput, left: int = 0, right: int = 0, top: int = 0, bottom: int = 0,
                 prompt: str = "", **settings) -> EditResult:
        """Extend the canvas by the given pixels on each side and draw the new area; the image
        itself is kept exactly, at its offset (left, top) in the result."""
        pixels = rgb_pixels(open_image(image))
        height, width = pixels.shape[:2]
        check_outpaint((width, height), left, right, top, bottom)
        padding = ((top, bottom), (left, right))
        canvas = np.pad(pixels, padding + ((0, 0),), mode="edge")
        region = np.pad(np.zeros((height, width), dtype=bool), padding, constant_values=True)
        return self.edit(canvas, region, prompt, task="outpaint", **settings)

    def variations(self, image: ImageInput, strength: float = 0.6, n: int = 1, prompt: str = "",
                   negative_prompt: str | None = None, seed: int | None = None, steps: int | None = None,
                   guidance: float | None = None, sampler: str | None = None,
                   progress: Progress | bool = False) -> EditResult:
        """`n` images like `image`, changed by `strength` (0 < strength <= 1: 0.2 keeps the layout
        and colours, 1 is a new image): its latents are noised to that time and denoised in
        round(steps * strength) steps, guided by `prompt` when one is given."""
        check_strength(strength)
        pixels = rgb_pixels(open_image(image))
        height, width = pixels.shape[:2]
        canvas = self._canvas(max(height, width))
        with warnings.catch_warnings():    # no prompt is the usual way to ask for variations, not a slip
            warnings.filterwarnings("ignore", message="the prompt is empty")
            request = self.resolve(GenerationRequest(prompt, negative_prompt, n, seed, steps, guidance, canvas,
                                                     sampler))
        whole = np.ones((height, width), dtype=bool)
        window = find_window(whole, canvas, context=0)
        window_pixels, _ = crop(pixels, whole, window)
        drawn = self._draw(request, fit_pixels(window_pixels, canvas), None, progress, strength=float(strength))
        images = []
        for k, array in enumerate(drawn):
            info = self._edit_info(request, k, "variation")
            images.append(mark(Image.fromarray(paste(pixels, fit_pixels(array, window.side), whole, window, 0)), info))
        return EditResult(images, _mask_image(whole), [image.copy() for image in images], window)

    # --- the parts ---------------------------------------------------------------------

    def _draw(self, request, window_pixels: np.ndarray, model_region: np.ndarray | None, progress: Progress | bool,
              strength: float = 1.0) -> np.ndarray:
        """The model's images [n, canvas, canvas, 3] uint8 of the window: the region drawn anew
        (keep-mask editing), or with no region the whole window noised to `strength` (SDEdit)."""
        import torch

        from atelier.flow.generate import generate_latents
        from atelier.flow.objective import keep_mask

        rows = request.n
        text, negative = self.encode_texts(request.prompt, request.negative_prompt, rows)
        latents = self.encode_pixels(window_pixels[None])                                  # [1, 1, C, h, w]
        device = latents.device
        keep = context = init = None
        steps = request.steps
        if model_region is None:
            init = latents.expand(rows, *latents.shape[1:])
            steps = max(1, round(steps * strength))
        else:
            known = keep_mask(model_region, self.tokenizer.downsample)                        # [h, w]
            keep = torch.from_numpy(known).to(device)[None, None, None].expand(rows, 1, 1, *known.shape)
            context = latents.expand(rows, *latents.shape[1:])
        report = progress_bar(steps) if progress is True else (progress or None)
        out = generate_latents(
            self.transformer, text, [request.seed + k for k in range(rows)], latents.shape[1:], steps=steps,
            sampler=request.sampler, text_scale=request.guidance, negative=negative,
            has_negative=[bool(request.negative_prompt)] * rows, unconditional=[not request.prompt] * rows,
            keep_mask=keep, context=context, init=init, start=strength,
            callback=(lambda state: report(state["i"] + 1, steps)) if report else None)
        return self.decode(out)

    def _canvas(self, side: int) -> int:
        """The model's canvas for a window of `side` pixels: the largest size not above it, else the smallest."""
        fitting = [size for size in self.sizes if size <= side]
        return max(fitting) if fitting else min(self.sizes)

    def _subject(self, picture: Image.Image) -> np.ndarray:
        from atelier.segment.masks import subject_mask

        return subject_mask(self.segmenter, rgb_pixels(picture))

    def _edit_info(self, request, k: int, task: str) -> GenerationInfo:
        return GenerationInfo(prompt=request.prompt, negative_prompt=request.negative_prompt, seed=request.seed + k,
                              steps=request.steps, guidance=request.guidance, sampler=request.sampler,
                              size=request.size, model=self.name, model_hash=self.model_hash, task=task)


def check_edit_settings(context: float, feather: float | None) -> None:
    """SettingError for an edit's `context` or `feather` out of range (before anything is read or drawn)."""
    if not _number(context) or not 0 <= context <= 4:
        raise SettingError("context", "must be from 0 to 4 (a share of the region's size)", context)
    if feather is not None and (not _number(feather) or not feather >= 0):
        raise SettingError("feather", "must be a width in pixels, at least 0", feather)


def check_strength(strength: float) -> None:
    """SettingError for a variation's `strength` out of (0, 1]."""
    if not _number(strength) or not 0 < strength <= 1:
        raise SettingError("strength", "must be a number above 0 and at most 1", strength)


def check_outpaint(size: tuple[int, int], left: int, right: int, top: int, bottom: int) -> tuple[int, int]:
    """The (width, height) outpainting an image of `size` by these pixels makes; SettingError for a
    side that is not a whole number at least 0, ValueError for none at all or a result over MAX_SIDE."""
    amounts = {"left": left, "right": right, "top": top, "bottom": bottom}
    for name, amount in amounts.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, np.integer)) or amount < 0:
            raise SettingError(name, "must be a whole number of pixels, at least 0", amount)
    if not any(amounts.values()):
        raise ValueError("give at least one side to extend (left, right, top or bottom, in pixels)")
    new_width, new_height = size[0] + left + right, size[1] + top + bottom
    if max(new_width, new_height) > MAX_SIDE:
        raise ImageInputError(f"the extended image would be {new_width}x{new_height}; results up to {MAX_SIDE} "
                              f"pixels per side are made")
    return new_width, new_height


def _number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _with_info(pixels: np.ndarray, info: GenerationInfo) -> Image.Image:
    image = Image.fromarray(pixels)
    image.info["atelier"] = info
    return image


def _mask_image(region: np.ndarray) -> Image.Image:
    return Image.fromarray(region.astype(np.uint8) * 255)


def _window_area(shape: tuple[int, int], window: Window) -> np.ndarray:
    area = np.zeros(shape, dtype=bool)
    area[max(0, window.top):window.top + window.side, max(0, window.left):window.left + window.side] = True
    return area


def _margin(shape: tuple[int, int]) -> int:
    return max(1, math.ceil(min(shape) * SUBJECT_MARGIN))


def _grow(region: np.ndarray, pixels: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(region, iterations=pixels)

