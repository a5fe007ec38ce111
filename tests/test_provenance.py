"""Provenance: the invisible watermark (atelier.pipeline.provenance) is read back, survives JPEG at
quality 90, is not found in unmarked photos, is never put on small images nor on pixels outside
an edit's mask; an edit records its area and is read there; the pipeline marks what it makes and
`atelier verify` reports metadata and mark."""

import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from atelier.cli import main
from atelier.pipeline import provenance as pv
from atelier.pipeline.metadata import REGION_KEY, GenerationInfo, read_edit_region, read_info, save_image

skimage_data = pytest.importorskip("skimage.data")

INFO = GenerationInfo(prompt="a red star", seed=7, steps=20, guidance=4.0, sampler="euler", size=64,
                      model="default", model_hash="abc123", task="edit")
SOURCE = GenerationInfo(**{**INFO.to_dict(), "seed": 3, "task": "text_to_image"})   # an earlier Atelier image


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()                                   # 512 x 512, unmarked


@pytest.fixture(scope="module")
def marked(astronaut):
    return pv.mark(Image.fromarray(astronaut), INFO)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_a_marked_image_is_read_back_with_its_id_and_changes_little(astronaut, marked):
    found = pv.detect(marked, INFO)
    assert (found.status, found.marker_errors, found.id_errors) == ("present", 0, 0)
    assert found.id == np.packbits(pv.payload_id(INFO)).tobytes().hex()
    assert marked.info["atelier"] == INFO
    noise = np.asarray(marked, dtype=float) - astronaut
    assert 10 * np.log10(255 ** 2 / np.mean(noise ** 2)) > 40 and np.abs(noise).max() <= 12
    other = GenerationInfo(**{**INFO.to_dict(), "seed": 8})
    assert pv.detect(marked, other).id_errors > 0, "another image's metadata does not match the mark"
    again = pv.mark(Image.fromarray(astronaut), INFO)
    assert np.array_equal(np.asarray(again), np.asarray(marked)), "marking is deterministic (reproduce)"


def test_the_package_s_own_decoder_reads_the_payload(marked):
    from imwatermark import WatermarkDecoder

    bgr = np.ascontiguousarray(np.asarray(marked)[..., ::-1])
    bits = WatermarkDecoder("bits", pv.PAYLOAD_BITS).decode(bgr, pv.METHOD)
    assert np.array_equal(np.array(bits, dtype=np.uint8), pv.payload(INFO))


def test_the_mark_survives_jpeg_at_quality_90(marked, tmp_path):
    path = save_image(marked, tmp_path / "marked.jpg", INFO, quality=90)
    with Image.open(path) as image:
        found = pv.detect(image, read_info(path))
    assert (found.status, found.marker_errors, found.id_errors) == ("present", 0, 0)
    assert pv.detect(_jpeg(marked, 75)).status == "present"


def test_what_it_does_not_survive_is_reported_absent(marked):
    half = marked.resize((256, 256), Image.Resampling.LANCZOS)
    assert pv.detect(half).status == "absent"
    assert pv.detect(np.asarray(marked)[8:, 8:]).status == "absent"


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field",
                                  "immunohistochemistry", "colorwheel"])
def test_unmarked_photos_are_not_taken_for_marked(name):
    photo = getattr(skimage_data, name)()
    for pixels in (photo, np.asarray(_jpeg(Image.fromarray(photo), 90))):
        found = pv.detect(pixels)
        assert found.status == "absent" and found.marker_errors > pv.UNREADABLE_ERRORS, (name, found)


def test_small_images_are_left_untouched_and_reported_too_small(astronaut):
    small = Image.fromarray(astronaut[:64, :64].copy())
    assert pv.mark(small, INFO) is small and np.array_equal(np.asarray(small), astronaut[:64, :64])
    thin = Image.fromarray(astronaut[:255].copy())                   # 512 x 255: one side short is enough
    assert np.array_equal(np.asarray(pv.mark(thin, INFO)), astronaut[:255])
    for image in (small, thin):
        found = pv.detect(image)
        assert found.status == "too_small"
        assert found.describe() == "no watermark: image smaller than 256 px (method minimum)"
    with pytest.raises(ValueError, match="too small to watermark"):
        pv.embed(astronaut[:64, :64], pv.payload(INFO))


def test_pixels_outside_an_edit_mask_are_kept_exactly(astronaut):
    yy, xx = np.mgrid[:512, :512]
    region = (xx - 280) ** 2 + (yy - 230) ** 2 < 180 ** 2          # 39% of the image
    edited = pv.mark(Image.fromarray(astronaut), INFO, region)
    out = np.asarray(edited)
    assert np.array_equal(out[~region], astronaut[~region])
    assert not np.array_equal(out[region], astronaut[region])
    tiny = np.zeros((512, 512), dtype=bool)
    tiny[100:120, 100:120] = True
    out = np.asarray(pv.mark(Image.fromarray(astronaut), INFO, tiny))
    assert np.array_equal(out[~tiny], astronaut[~tiny])
    assert pv.detect(out).status == "absent", "a mark on 0.15% of the image cannot be read (documented)"


def test_the_pipeline_marks_large_edits_and_variations_but_not_64_px_images(folder, astronaut):
    import torch

    from atelier.pipeline import Atelier

    torch.set_num_threads(1)
    pipe = Atelier.from_pretrained(folder)
    region = np.zeros((512, 512), dtype=bool)
    region[:, :320] = True                                          # 62% of the photo
    result = pipe.edit(astronaut, region, "a red star", seed=1)
    image = result.images[0]
    assert np.array_equal(np.asarray(image)[~region], astronaut[~region])
    assert pv.detect(image, image.info["atelier"]).status == "present"
    assert np.array_equal(pv.decode_region(image.info[REGION_KEY], 512, 512), pv.region_blocks(region))
    assert pv.detect(result.raw[0]).status == "absent", "raw outputs before paste-back stay unmarked"
    varied = pipe.variations(astronaut[:300, :400], strength=0.5, seed=2).images[0]
    found = pv.detect(varied, varied.info["atelier"])
    assert (found.status, found.id_errors) == ("present", 0)
    generated = pipe.text_to_image("a red star", seed=3)[0]
    assert generated.size == (64, 64) and pv.detect(generated).status == "too_small"


def test_verify_prints_the_metadata_and_the_watermark(marked, astronaut, tmp_path, capsys):
    path = save_image(marked, tmp_path / "marked.jpg", INFO, quality=90)
    main(["verify", str(path)])
    out = capsys.readouterr().out
    assert "metadata:\n  a red star\n  Steps: 20" in out
    assert "watermark: present (dwtDctSvd; marker 0/32 bit errors), id " in out and "matches the metadata" in out
    main(["verify", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["metadata"]["seed"] == 7 and report["watermark"]["status"] == "present"
    assert report["watermark"]["id_errors"] == 0 and report["watermark"]["method"] == "dwtDctSvd"
    Image.fromarray(astronaut).save(tmp_path / "photo.png")
    main(["verify", str(tmp_path / "photo.png")])
    out = capsys.readouterr().out
    assert "metadata: no Atelier metadata" in out and "watermark: absent (dwtDctSvd; marker " in out
    save_image(Image.fromarray(astronaut[:64, :64].copy()), tmp_path / "small.png", INFO)
    main(["verify", str(tmp_path / "small.png")])
    out = capsys.readouterr().out
    assert "Steps: 20" in out and "watermark: no watermark: image smaller than 256 px (method minimum)" in out
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(SystemExit, match="broken.png: not a readable image"):
        main(["verify", str(tmp_path / "broken.png")])
    with pytest.raises(SystemExit, match="missing.png: no such file"):
        main(["verify", str(tmp_path / "missing.png")])


def _square(top: int, left: int, side: int) -> np.ndarray:
    region = np.zeros((512, 512), dtype=bool)
    region[top:top + side, left:left + side] = True
    return region


@pytest.fixture(scope="module")
def re_edit(astronaut):
    """An edit of 15% of a large Atelier image: the source's mark stays on every pixel outside it."""
    return pv.mark(pv.mark(Image.fromarray(astronaut), SOURCE), INFO, _square(100, 150, 200))


def test_an_edit_is_read_in_the_area_it_records(re_edit):
    whole = pv.detect(re_edit, INFO)
    assert whole.status == "present" and whole.id_errors > 0, "over the whole image the two marks mix"
    states = pv.decode_region(re_edit.info[REGION_KEY], 512, 512)
    assert np.array_equal(states, pv.region_blocks(_square(100, 150, 200)))
    assert (states == pv.WHOLLY).sum() == 24 * 24 and (states == pv.PARTLY).sum() == 26 * 26 - 24 * 24
    inside = pv.detect(re_edit, INFO, states == pv.WHOLLY, "edited")
    assert (inside.status, inside.marker_errors, inside.id_errors, inside.blocks) == ("present", 0, 0, 576)
    outside = pv.detect(re_edit, SOURCE, states == pv.UNTOUCHED, "outside")
    assert (outside.status, outside.id_errors) == ("present", 0), "outside, the source's own mark"


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_verify_reports_an_edit_as_atelier_made_in_its_area(re_edit, tmp_path, capsys, suffix):
    path = save_image(re_edit, tmp_path / f"edit{suffix}", INFO, quality=90)
    assert read_edit_region(path) == re_edit.info[REGION_KEY]
    main(["verify", str(path)])
    lines = capsys.readouterr().out.splitlines()[-3:]
    assert lines[0].startswith("watermark: present in the edited area (dwtDctSvd; marker 0/32 bit errors), id ")
    assert lines[0].endswith(": matches the metadata")
    assert lines[1] == ("  an edit (edit) redraws only its area, here about 15.3% of the image (recorded in the file), "
                        "and only the redrawn pixels carry this image's mark; every pixel outside it is the source "
                        "image's, kept exactly")
    assert lines[2].startswith("  present outside the edited area (dwtDctSvd; marker 0/32 bit errors), id ")
    assert lines[2].endswith(": the source image's own mark, kept with its pixels (an earlier Atelier image)")
    main(["verify", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["watermark"]["area"] == "edited" and report["watermark"]["id_errors"] == 0
    assert report["edited_area"]["share"] == 0.1528
    assert report["edited_area"]["watermark_outside"]["status"] == "present"


def test_verify_says_why_an_edit_s_mark_cannot_be_checked(astronaut, re_edit, tmp_path, capsys):
    small = pv.mark(Image.fromarray(astronaut), INFO, _square(100, 100, 100))    # 12x12 blocks: 36 of the 48 bits
    main(["verify", str(save_image(small, tmp_path / "small.png", INFO))])
    out = capsys.readouterr().out
    assert ("watermark: too small to read in the edited area: its 144 whole 8x8-pixel blocks carry 36 of the 48 "
            "payload bits (the bits run along the rows of blocks, so a small or narrow area misses some): the edit is "
            "marked there, but too small an area for the mark to be read back") in out
    unrecorded = Image.fromarray(np.asarray(re_edit))              # the pixels without the recorded area
    main(["verify", str(save_image(unrecorded, tmp_path / "unrecorded.png", INFO))])
    out = capsys.readouterr().out
    assert "the metadata was changed" not in out
    assert re.search(r": differs from the metadata's in \d+ of 16 bits, as an edit's may \(below\)\n  this is an "
                     r"edit \(edit\) and the file does not record its area", out)
    resized = re_edit.resize((500, 500))
    resized.info[REGION_KEY] = re_edit.info[REGION_KEY]
    main(["verify", str(save_image(resized, tmp_path / "resized.png", INFO))])
    out = capsys.readouterr().out
    assert ("the recorded edited area is for an image of 64x64 blocks of 8 pixels, and this 500x500 image has 62x62 "
            "(it was resized or cropped); the whole image was read") in out


def test_a_recorded_area_stays_small_and_never_claims_blocks_it_did_not_edit():
    cells = np.random.default_rng(0).random((256, 256)) < 0.5                   # 16-pixel squares at random
    region = cells.repeat(16, axis=0).repeat(16, axis=1)                         # a 4096 x 4096 image's area
    exact = pv.region_blocks(region)
    text = pv.encode_region(exact)
    assert len(text) <= pv.REGION_CHARS and json.loads(text)["cell"] > 1
    states = pv.decode_region(text, 4096, 4096)
    assert np.all(exact[states == pv.WHOLLY] == pv.WHOLLY) and np.all(exact[states == pv.UNTOUCHED] == pv.UNTOUCHED)
    assert np.array_equal(pv.decode_region(pv.encode_region(exact[:64, :64]), 512, 512), exact[:64, :64])
    with pytest.raises(ValueError, match="the recorded edited area is corrupt"):
        pv.decode_region('{"blocks": [64, 64], "cell": 1, "states": "not base64"}', 512, 512)


def test_verify_names_an_empty_file(tmp_path):
    (tmp_path / "empty.png").touch()
    with pytest.raises(SystemExit) as refused:
        main(["verify", str(tmp_path / "empty.png")])
    assert str(refused.value) == f"error: {tmp_path / 'empty.png'}: the file is empty (0 bytes)"


def test_the_watermark_packages_load_only_when_used():
    code = ("import sys, atelier.pipeline, atelier.pipeline.provenance; "
            "print(sorted(m for m in ('cv2', 'pywt', 'imwatermark') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
