"""Editing any region of any image: inputs of every kind, crop-and-paste at full resolution,
exact preservation outside the mask, outpainting, variations, the commands and bad input."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from atelier.cli import main
from atelier.pipeline import Atelier
from atelier.pipeline.inputs import MAX_SIDE, ImageInputError, open_image, read_region, rgb_pixels
from atelier.pipeline.metadata import read_info
from atelier.pipeline.window import crop, feather, find_window, fit_region, paste
from atelier.world.edits.pairs import make_edit_pair


@pytest.fixture(scope="module")
def pipe(folder):
    return Atelier.from_pretrained(folder)


@pytest.fixture(scope="module")
def pair():
    return make_edit_pair(7, 3, size=64, split="all", kind="colour")


def _outside_equal(result_image, source: np.ndarray, region: np.ndarray) -> bool:
    out = np.asarray(result_image)
    return out.shape == source.shape and np.array_equal(out[~region], source[~region])


def test_an_edit_changes_only_the_region_and_says_how_it_was_made(pipe, pair):
    result = pipe.edit(pair.source_image, pair.edit_mask, pair.caption, n=2, seed=5)
    assert len(result.images) == len(result.raw) == 2
    for image in result.images:
        assert _outside_equal(image, pair.source_image, pair.edit_mask)
    inside = [np.asarray(image)[pair.edit_mask] for image in result.images]
    assert not np.array_equal(inside[0], pair.source_image[pair.edit_mask]), "the region was redrawn"
    assert not np.array_equal(inside[0], inside[1]), "seeds 5 and 6 differ"
    assert np.array_equal(np.asarray(result.mask) == 255, pair.edit_mask)
    info = result.images[1].info["atelier"]
    assert (info.task, info.seed, info.prompt, info.steps) == ("edit", 6, pair.caption, 3)
    raw = np.asarray(result.raw[0])
    assert not np.array_equal(raw[~pair.edit_mask], pair.source_image[~pair.edit_mask]), \
        "the raw output is the model's whole window, before paste-back"


def test_the_same_seed_gives_the_same_edit(pipe, pair):
    first = pipe.edit(pair.source_image, pair.edit_mask, "a red star", seed=9).images[0]
    again = pipe.edit(pair.source_image, pair.edit_mask, "a red star", seed=9).images[0]
    assert np.array_equal(np.asarray(first), np.asarray(again))


def test_a_full_mask_is_plain_generation(pipe, pair):
    full = np.ones((64, 64), dtype=bool)
    edited = np.asarray(pipe.edit(pair.source_image, full, "a green star", seed=3).images[0], dtype=int)
    generated = np.asarray(pipe.text_to_image("a green star", seed=3)[0], dtype=int)
    assert np.abs(edited - generated).max() <= 2


def test_an_empty_mask_returns_the_source_with_a_warning(pipe, pair):
    with pytest.warns(UserWarning, match="marks nothing to edit"):
        result = pipe.edit(pair.source_image, np.zeros((64, 64), bool), "a red star", n=2)
    assert len(result.images) == 2 and result.window is None
    assert all(np.array_equal(np.asarray(image), pair.source_image) for image in result.images)


def test_a_mask_of_another_size_is_resized_with_a_warning(pipe, pair):
    small = Image.fromarray(pair.edit_mask.astype(np.uint8) * 255).resize((32, 32), Image.Resampling.NEAREST)
    with pytest.warns(UserWarning, match="mask is 32x32 but the image is 64x64"):
        result = pipe.edit(pair.source_image, small, "a red star", seed=1)
    region = np.asarray(result.mask) == 255
    assert region.shape == (64, 64) and _outside_equal(result.images[0], pair.source_image, region)


def test_large_images_are_edited_at_full_resolution_in_a_window(pipe):
    from skimage import data

    photo = data.astronaut()                                           # 512 x 512
    region = np.zeros(photo.shape[:2], dtype=bool)
    region[300:340, 100:130] = True                      # a small patch: a window much smaller than the photo
    result = pipe.edit(photo, region, "a red circle", seed=2)
    window = result.window
    assert 64 <= window.side < 512
    assert window.left <= 100 <= 130 <= window.left + window.side
    assert window.top <= 300 <= 340 <= window.top + window.side
    assert _outside_equal(result.images[0], photo, region)
    raw = np.asarray(result.raw[0])
    outside_window = np.ones(region.shape, bool)
    outside_window[window.top:window.top + window.side, window.left:window.left + window.side] = False
    assert np.array_equal(raw[outside_window], photo[outside_window])


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_real_photos_keep_every_pixel_outside_the_mask(name):
    """The shipped model, at full resolution, on scikit-image's photos (coffee and chelsea are not square)."""
    from skimage import data

    photo = getattr(data, name)()
    height, width = photo.shape[:2]
    yy, xx = np.mgrid[:height, :width]
    region = (xx - width * 0.6) ** 2 + (yy - height * 0.4) ** 2 < (min(height, width) * 0.2) ** 2
    result = _default().edit(photo, region, "a red circle on a blue background", seed=0)
    assert _outside_equal(result.images[0], photo, region)


_DEFAULT = {}


def _default() -> Atelier:
    if "pipe" not in _DEFAULT:
        _DEFAULT["pipe"] = Atelier.from_pretrained()
    return _DEFAULT["pipe"]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK", "I;16", "array", "float"])
def test_images_of_any_mode_are_edited_and_kept_outside(pipe, pair, mode):
    source = Image.fromarray(pair.source_image)
    image = {"RGBA": lambda: source.convert("RGBA"), "L": lambda: source.convert("L"),
             "P": lambda: source.convert("P"), "CMYK": lambda: source.convert("CMYK"),
             "I;16": lambda: Image.fromarray(np.asarray(source.convert("L")).astype(np.uint16) * 257),
             "array": lambda: pair.source_image, "float": lambda: pair.source_image / 255.0,
             "RGB": lambda: source}[mode]()
    expected = rgb_pixels(open_image(image))
    if mode == "I;16":
        assert np.array_equal(expected[:, :, 0], np.asarray(source.convert("L"))), "16-bit grey is scaled, not clipped"
    result = pipe.edit(image, pair.edit_mask, "a red star", seed=4)
    assert _outside_equal(result.images[0], expected, pair.edit_mask)


def test_masks_are_white_on_black_or_transparent(pair, tmp_path):
    image = Image.fromarray(pair.source_image)
    white = Image.fromarray(pair.edit_mask.astype(np.uint8) * 255)
    alpha = Image.fromarray(np.dstack([pair.source_image, np.where(pair.edit_mask, 0, 255).astype(np.uint8)]))
    alpha.save(tmp_path / "alpha.png")
    assert np.array_equal(read_region(white, image), pair.edit_mask)
    assert np.array_equal(read_region(white.convert("RGB"), image), pair.edit_mask)
    assert np.array_equal(read_region(tmp_path / "alpha.png", image), pair.edit_mask), "alpha 0 = edit, as OpenAI"
    assert np.array_equal(read_region(None, open_image(tmp_path / "alpha.png")), pair.edit_mask), \
        "an image with transparency is its own mask"
    assert np.array_equal(read_region(pair.edit_mask.astype(np.float32), image), pair.edit_mask)
    with pytest.raises(ImageInputError, match="give a mask"):
        read_region(None, image)


def test_a_photo_is_edited_the_way_it_is_shown(tmp_path):
    upright = np.zeros((40, 30, 3), np.uint8)
    upright[:10] = 255                                                  # white at the top as shown
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)   # as a camera stores it
    exif = Image.Exif()
    exif[0x0112] = 6                                                    # orientation: rotate 90 clockwise to show
    stored.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    shown = rgb_pixels(open_image(tmp_path / "phone.jpg"))
    assert shown.shape == (40, 30, 3) and shown[:10].mean() > 200 and shown[20:].mean() < 50


def test_unusable_images_are_refused_with_the_reason(pair, tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("L", (MAX_SIDE + 1, 8)).save(wide)
    with pytest.raises(ImageInputError, match=f"4097x8; images up to {MAX_SIDE} pixels per side"):
        open_image(wide)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)                          # a small file that decodes to 400 Mpixel
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(ImageInputError, match="more pixels than is safe to decode"):
        open_image(bomb)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageInputError, match="not a readable image"):
        open_image(tmp_path / "text.png")
    buffer = io.BytesIO()
    Image.fromarray(pair.source_image).save(buffer, format="PNG")
    with pytest.raises(ImageInputError, match="not a readable image"):
        open_image(buffer.getvalue()[: len(buffer.getvalue()) // 2])   # half-written
    with pytest.raises(ImageInputError, match="no such file"):
        open_image(tmp_path / "missing.png")
    with pytest.raises(ImageInputError, match="shape"):
        open_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageInputError, match="NaN"):
        open_image(np.full((4, 4, 3), np.nan))


def test_the_window_holds_the_region_with_context_and_pads_past_thin_images():
    region = np.zeros((100, 300), dtype=bool)
    region[40:60, 280:295] = True
    window = find_window(region, canvas=64)
    assert window.side == 64 and window.left + window.side <= 300 and window.left <= 280
    pixels = np.arange(100 * 300 * 3, dtype=np.uint8).reshape(100, 300, 3)
    whole = np.ones((100, 300), dtype=bool)
    window = find_window(whole, canvas=64)
    assert (window.side, window.top, window.left) == (300, -100, 0), "a wide image sits in the middle of its window"
    window_pixels, window_region = crop(pixels, whole, window)
    assert window_pixels.shape == (300, 300, 3) and window_region.all(), "padding is to be drawn, never context"
    assert np.array_equal(window_pixels[100:200], pixels)


def test_thin_strokes_survive_fitting_and_the_feather_stays_inside():
    stroke = np.zeros((512, 512), dtype=bool)
    stroke[100:400, 250] = True                                         # one pixel wide
    assert fit_region(stroke, 64).sum() >= 300 // 8
    block = np.zeros((64, 64), dtype=bool)
    block[10:50, 10:50] = True
    weight = feather(block, 4)
    assert (weight[~block] == 0).all() and weight[30, 30] == 1 and 0 < weight[10, 30] < 1
    original = np.zeros((64, 64, 3), np.uint8)
    generated = np.full((64, 64, 3), 200, np.uint8)
    out = paste(original, generated, block, find_window(block, 64), 4)
    assert (out[~block] == 0).all() and (out[30, 30] == 200).all()


def test_outpainting_keeps_the_image_at_its_offset(pipe, pair):
    result = pipe.outpaint(pair.source_image, left=16, top=8, bottom=24, prompt=pair.caption, seed=1)
    out = np.asarray(result.images[0])
    assert out.shape == (64 + 32, 64 + 16, 3)
    assert np.array_equal(out[8:72, 16:80], pair.source_image)
    assert (np.asarray(result.mask)[8:72, 16:80] == 0).all() and (np.asarray(result.mask)[:8] == 255).all()
    assert result.images[0].info["atelier"].task == "outpaint"
    with pytest.raises(ValueError, match="at least one side"):
        pipe.outpaint(pair.source_image)
    with pytest.raises(ValueError, match="left must be a whole number"):
        pipe.outpaint(pair.source_image, left=-3)
    with pytest.raises(ImageInputError, match="results up to 4096"):
        pipe.outpaint(pair.source_image, right=4096)


def test_variations_change_the_image_by_the_strength(pipe, pair):
    def change(strength: float) -> float:
        images = pipe.variations(pair.source_image, strength=strength, n=2, seed=0, steps=4).images
        return float(np.mean([np.abs(np.asarray(i, dtype=int) - pair.source_image).mean() for i in images]))

    reconstruction = np.abs(pipe.decode(pipe.encode_pixels(pair.source_image[None])).astype(int)
                            - pair.source_image).mean()
    small, large = change(0.1), change(1.0)
    assert small < large
    assert small < reconstruction + 0.5 * (large - reconstruction)
    result = pipe.variations(pair.source_image, strength=0.5, n=3, seed=0)
    assert len(result.images) == 3 and result.images[2].info["atelier"].task == "variation"
    with pytest.raises(ValueError, match="strength must be a number above 0"):
        pipe.variations(pair.source_image, strength=0)
    thin = pipe.variations(np.zeros((20, 90, 3), np.uint8), strength=0.5).images[0]
    assert thin.size == (90, 20)


def test_settings_are_checked_before_drawing(pipe, pair):
    with pytest.raises(ValueError, match="n must be a whole number"):
        pipe.edit(pair.source_image, pair.edit_mask, "x", n=0)
    with pytest.raises(ValueError, match="context must be from 0 to 4"):
        pipe.edit(pair.source_image, pair.edit_mask, "x", context=-1)


def test_the_commands_edit_outpaint_and_vary(folder, pair, tmp_path, capsys):
    Image.fromarray(pair.source_image).save(tmp_path / "source.png")
    Image.fromarray(pair.edit_mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    rgba = np.dstack([pair.source_image, np.where(pair.edit_mask, 0, 255).astype(np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "transparent.png")
    out = tmp_path / "out"
    common = ["--model", str(folder), "-o", str(out), "--quiet", "--seed", "3"]
    main(["edit", str(tmp_path / "source.png"), "--mask", str(tmp_path / "mask.png"), "a red star", "-n", "2", *common])
    main(["edit", str(tmp_path / "transparent.png"), "a red star", *common, "--format", "jpg"])
    main(["outpaint", str(tmp_path / "source.png"), "--left", "16", "a red star", *common])
    main(["vary", str(tmp_path / "source.png"), "--strength", "0.3", *common])
    paths = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[1] for p in paths] == ["00000-3.png", "00001-4.png", "00002-3.jpg", "00003-3.png",
                                                    "00004-3.png"]
    assert [read_info(p).task for p in paths] == ["edit", "edit", "edit", "outpaint", "variation"]
    assert _outside_equal(Image.open(paths[0]), pair.source_image, pair.edit_mask)
    assert Image.open(paths[3]).size == (80, 64)
    with pytest.raises(SystemExit, match="use them with --subject"):
        main(["edit", str(tmp_path / "source.png"), "--which", "1", "x", *common])
    with pytest.raises(SystemExit, match="error: mask .*missing.png: no such file"):
        main(["edit", str(tmp_path / "source.png"), "--mask", str(tmp_path / "missing.png"), "x", *common])
    with pytest.raises(SystemExit, match="strength must be"):
        main(["vary", str(tmp_path / "source.png"), "--strength", "1.5", *common])


def test_the_edit_suite_runs_a_model_and_reports_the_raw_psnr(folder, tmp_path, capsys, monkeypatch):
    import json

    import atelier.evaluate.edits as edits

    few = tuple({case.category: case for case in edits.load_cases()}.values())
    monkeypatch.setattr(edits, "load_cases", lambda: few)
    samples = tmp_path / "samples"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["eval", "--suite", "edits", "--model", str(folder), "-n", "1", str(samples)])
    report = json.loads((samples / "eval_edits.json").read_text())
    assert report["psnr_outside"]["mean"] == edits.PSNR_CAP, "pasted back: nothing outside the mask changes"
    assert report["psnr_outside_raw"]["outputs"] == len(few) and report["psnr_outside_raw"]["mean"] < edits.PSNR_CAP
    assert "raw model outputs before paste-back" in capsys.readouterr().out


def test_background_and_subject_are_found_and_only_they_change(pipe):
    from atelier.world.images.stream import make_sample

    sample = make_sample(3, 5, size=64, split="all")
    objects = sample.masks.any(axis=0)
    result = pipe.replace_background(sample.image, "a blue background", seed=1)
    background = np.asarray(result.mask) == 255
    assert (background & objects).sum() <= 0.02 * objects.sum(), "the subject is not taken for background"
    assert background.sum() >= 0.9 * (~objects).sum() - 4 * 64
    assert _outside_equal(result.images[0], sample.image, background)
    assert result.images[0].info["atelier"].task == "replace_background"
    subject = np.asarray(pipe.replace_subject(sample.image, "a green heart", seed=1).mask) == 255
    assert (subject & objects).sum() >= 0.98 * objects.sum(), "the whole subject is redrawn"


def test_one_object_is_picked_by_index_or_point(pipe):
    from atelier.world.images.stream import make_sample

    def clearly_ordered(sample) -> bool:   # two or more objects, the largest clearly the largest
        sizes = np.sort(sample.masks.sum(axis=(1, 2)))
        return len(sizes) >= 2 and sizes[-1] >= 1.3 * sizes[-2]

    sample = next(s for s in (make_sample(3, i, size=64, split="all") for i in range(100)) if clearly_ordered(s))
    sizes = sample.masks.sum(axis=(1, 2))
    largest, smallest = sample.masks[np.argmax(sizes)], sample.masks[np.argmin(sizes)]
    by_index = np.asarray(pipe.replace_subject(sample.image, "x", which=0, seed=1).mask) == 255
    assert (by_index & largest).sum() >= 0.95 * largest.sum() and not (by_index & smallest).any()
    ys, xs = np.nonzero(smallest)
    point = (float(np.median(xs)) + 0.5, float(np.median(ys)) + 0.5)
    by_point = np.asarray(pipe.replace_subject(sample.image, "x", which=point, seed=1).mask) == 255
    assert (by_point & smallest).sum() >= 0.9 * smallest.sum() and not (by_point & largest).any()
    with pytest.raises(ValueError, match="out of range"):
        pipe.replace_subject(sample.image, "x", which=9)


def test_an_image_without_a_subject_is_refused_with_a_way_forward(pipe):
    flat = np.full((64, 64, 3), 200, np.uint8)
    with pytest.raises(ValueError, match="no subject was found.*--mask"):
        pipe.replace_background(flat, "a blue background")


def test_the_command_writes_the_automatic_mask_beside_the_result(folder, tmp_path, capsys):
    from atelier.world.images.stream import make_sample

    sample = make_sample(3, 5, size=64, split="all")
    Image.fromarray(sample.image).save(tmp_path / "scene.png")
    main(["edit", str(tmp_path / "scene.png"), "--background", "a blue background", "--model", str(folder),
          "-o", str(tmp_path / "out"), "--quiet", "--seed", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("00000-2.png") and "00000-2-mask.png" in lines[1]
    mask = np.asarray(Image.open(tmp_path / "out" / "00000-2-mask.png")) == 255
    assert _outside_equal(Image.open(lines[0]), sample.image, mask)
    main(["eval", "--suite", "masks", "-n", "16"])
    assert "subject IoU on 16 world images" in capsys.readouterr().out
