"""Real data for the trainer: kohya-style folders and WebDataset tar shards, on scikit-image's photos
and on files the tests write, with corrupt and truncated files skipped by name, never a crash."""

import io
import logging
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atelier.train.data import FolderSource, load_square, open_source
from atelier.train.shards import TarSource, expand, is_shard_spec, split_name

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image ships the photos (setup.sh --dev)")
ROOT = Path(__file__).resolve().parents[1]
PHOTOS = {"astronaut": "an astronaut in a white suit", "coffee": "a cup of coffee on a saucer",
          "chelsea": "a ginger cat", "camera": "a man with a camera", "rocket": "a rocket on a launch pad"}


def photo_bytes(name: str, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(getattr(skimage_data, name)()).save(buffer, format=fmt, quality=90)
    return buffer.getvalue()


def write_shard(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shards of the photos: one with a corrupt image, a json caption and an image without a caption."""
    folder = tmp_path_factory.mktemp("shards")
    names = list(PHOTOS)
    write_shard(folder / "photos-000.tar", {
        **{f"{n}.jpg": photo_bytes(n) for n in names[:3]},
        **{f"{n}.txt": PHOTOS[n].encode() for n in names[:3]},
        "broken.jpg": b"\xff\xd8 not a jpeg", "broken.txt": b"a broken image",
        "lonely.png": photo_bytes("coffee", "PNG"),
    })
    write_shard(folder / "photos-001.tar", {
        f"sub/{names[3]}.png": photo_bytes(names[3], "PNG"), f"sub/{names[3]}.json": b'{"caption": "%s"}' % PHOTOS[
            names[3]].encode(),
        f"{names[4]}.webp": photo_bytes(names[4], "WEBP"), f"{names[4]}.txt": PHOTOS[names[4]].encode(),
    })
    return folder


def test_webdataset_keys_and_extensions():
    assert split_name("images/0042.seg.png") == ("images/0042", "seg.png")
    assert split_name("0042.jpg") == ("0042", "jpg") and split_name("README") == ("README", "")


def test_shard_specs_expand(shards):
    both = [shards / "photos-000.tar", shards / "photos-001.tar"]
    assert expand(str(shards / "photos-{000..001}.tar")) == both
    assert expand(str(shards / "photos-*.tar")) == both == expand(str(shards))
    assert all(is_shard_spec(s) for s in (str(shards), str(both[0]), "x-{0..3}.tar", "x-*.tar"))
    assert not is_shard_spec("world")
    with pytest.raises(ValueError, match="runs backwards"):
        expand("x-{3..1}.tar")


def test_tar_shards_read_every_captioned_photo_and_skip_the_corrupt_one(shards, caplog):
    source = open_source(str(shards / "photos-{000..001}.tar"), 48, seed=0)
    assert isinstance(source, TarSource) and len(source) == 6 and source.uncaptioned == 1
    assert "6 captioned images in 2 WebDataset shard(s)" in source.describe()
    with caplog.at_level(logging.WARNING):
        examples = [source[i] for i in range(12)]
    assert all(e.image.shape == (48, 48, 3) and e.image.dtype == np.uint8 for e in examples)
    assert "photos-000.tar:broken.jpg" in caplog.text, "the warning names the shard and the member"
    assert {e.caption for e in examples} == set(PHOTOS.values()), "json captions are read; every photo is seen"
    assert [e.key for e in examples] == [source[i].key for i in range(12)], "the order depends on the index only"
    astronaut = next(e for e in examples if e.caption == PHOTOS["astronaut"])
    expected = load_square(io.BytesIO(photo_bytes("astronaut")), 48)
    assert astronaut.key == "photos-000.tar/astronaut" and np.array_equal(astronaut.image, expected)


def test_a_truncated_shard_gives_the_samples_before_the_damage(tmp_path, caplog):
    members = {}
    for name in ("astronaut", "coffee", "chelsea"):  # a sample's files side by side, as WebDataset writes them
        members.update({f"{name}.txt": PHOTOS[name].encode(), f"{name}.jpg": photo_bytes(name)})
    whole = write_shard(tmp_path / "whole.tar", members)
    data = whole.read_bytes()
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "cut.tar").write_bytes(data[: int(len(data) * 0.6)])
    with caplog.at_level(logging.WARNING):
        source = TarSource(str(cut / "cut.tar"), 32, seed=0)
    assert "damaged" in caplog.text and "cut.tar" in caplog.text
    assert 1 <= len(source) < 3 and source.damaged
    for i in range(2 * len(source)):
        assert source[i].image.shape == (32, 32, 3)


def test_bad_shard_specs_are_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="no such shard"):
        TarSource(str(tmp_path / "missing-{000..002}.tar"), 32, 0)
    gz = tmp_path / "packed.tar"
    with tarfile.open(gz, "w:gz") as tar:
        info = tarfile.TarInfo("a.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"a"))
    with pytest.raises(ValueError, match="compressed tar"):
        TarSource(str(gz), 32, 0)
    empty = write_shard(tmp_path / "captions-only.tar", {"a.txt": b"a caption"})
    with pytest.raises(ValueError, match="no sample with both an image"):
        TarSource(str(empty), 32, 0)


def test_a_folder_of_photos_with_captions(tmp_path, caplog):
    for name, caption in PHOTOS.items():
        (tmp_path / f"{name}.jpg").write_bytes(photo_bytes(name))
        (tmp_path / f"{name}.txt").write_text(caption + "\n")
    (tmp_path / "truncated.jpg").write_bytes(photo_bytes("coffee")[:2000])
    (tmp_path / "truncated.txt").write_text("half a photo")
    source = open_source(str(tmp_path), 40, seed=3)
    assert isinstance(source, FolderSource) and len(source) == 6
    with caplog.at_level(logging.WARNING):
        captions = {source[i].caption for i in range(12)}
    assert captions == set(PHOTOS.values()) and "truncated.jpg" in caplog.text


@pytest.mark.slow
def test_training_runs_on_photo_shards(shards, tmp_path):
    import torch

    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.tokenizer.config import preset

    torch.manual_seed(0)
    tokenizer = Autoencoder(preset("tiny")).save(tmp_path / "tokenizer")
    data = str(shards / "photos-{000..001}.tar")
    run = subprocess.run([sys.executable, "-m", "atelier", "train", "model", "--preset", "tiny", "--tokenizer",
                          str(tokenizer), "-o", str(tmp_path / "run"), "--batch", "4", "--steps", "3", "--threads", "1",
                          "--precision", "fp32", "--sample-steps", "1", "--data", data],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "6 captioned images in 2 WebDataset shard(s)" in run.stdout + run.stderr
    assert (tmp_path / "run" / "model" / "model_index.json").is_file()
