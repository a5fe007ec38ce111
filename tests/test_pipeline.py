"""The pipeline: a model folder in, images out, reproducibly."""

import json

import numpy as np
import pytest
import torch

from atelier.bundle import save_bundle
from atelier.folder import FolderError
from atelier.model.config import ModelConfig
from atelier.model.transformer import SpaceTimeTransformer
from atelier.pipeline import Atelier


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from atelier.text.encoder import TextEncoder
    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.tokenizer.config import preset

    torch.manual_seed(0)
    tokenizer = Autoencoder(preset("tiny"))
    transformer = SpaceTimeTransformer(ModelConfig(latent_channels=tokenizer.config.latent_channels, width=48,
                                                   depth=2, heads=2))
    with torch.no_grad():
        for parameter in transformer.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    path = tmp_path_factory.mktemp("model") / "model"
    return save_bundle(path, transformer, tokenizer, TextEncoder.load().fingerprint, defaults={"steps": 3})


@pytest.fixture(scope="module")
def pipe(folder):
    return Atelier.from_pretrained(folder)


def test_images_carry_their_settings(pipe):
    images = pipe.text_to_image("a red circle above two blue squares", n=2, seed=11)
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    assert images[1].info["atelier"] == {"prompt": "a red circle above two blue squares", "seed": 12, "steps": 3,
                                         "guidance": 4.0, "sampler": "heun", "size": 64, "model": "model"}


def test_a_seed_gives_the_same_image_alone_or_in_a_batch(pipe):
    batch = pipe.text_to_image("a green star", n=3, seed=40)
    alone = pipe.text_to_image("a green star", seed=41)
    difference = np.abs(np.asarray(batch[1], dtype=int) - np.asarray(alone[0], dtype=int))
    assert difference.max() <= 2
    assert np.abs(np.asarray(batch[0], dtype=int) - np.asarray(batch[1], dtype=int)).max() > 2


def test_bad_requests_are_refused(pipe):
    with pytest.raises(ValueError, match="non-empty"):
        pipe.text_to_image("  ")
    with pytest.raises(ValueError, match="multiple of 8"):
        pipe.text_to_image("a circle", size=60)


def test_a_model_needs_its_own_text_encoder(folder, tmp_path):
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder"]["fingerprint"] = "0123456789abcdef"
    copy = tmp_path / "copy"
    copy.mkdir()
    for part in ("transformer", "tokenizer"):
        (copy / part).symlink_to(folder / part)
    (copy / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(FolderError, match="trained with text encoder 0123456789abcdef"):
        Atelier.from_pretrained(copy)
    with pytest.raises(FolderError, match="not an Atelier model"):
        Atelier.from_pretrained(tmp_path)
