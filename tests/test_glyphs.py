"""The glyph world: deterministic, unique names, icons mutually distinguishable, a folder FolderSource reads."""

import numpy as np
import pytest

from atelier.train.data import FolderSource
from atelier.world.glyphs import (
    CAPTION,
    MIN_SEPARATION,
    make_glyphs,
    match,
    pairwise_rms,
    reproduced,
    write_glyph_folder,
)


@pytest.fixture(scope="module")
def world():
    return make_glyphs(256, seed=3)


def test_deterministic_and_a_prefix_of_a_larger_world(world):
    again = make_glyphs(256, seed=3)
    assert [g.name for g in again] == [g.name for g in world]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, world))
    smaller = make_glyphs(40, seed=3)
    assert [g.name for g in smaller] == [g.name for g in world[:40]]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(smaller, world))
    other = make_glyphs(40, seed=4)
    assert [g.name for g in other] != [g.name for g in smaller]


def test_names_are_unique_invented_words(world):
    names = [g.name for g in world]
    assert len(set(names)) == len(names)
    assert all(name.isalpha() and name.islower() and 4 <= len(name) <= 10 for name in names)
    assert world[0].caption == CAPTION.format(name=world[0].name)


def test_icons_are_at_least_the_documented_distance_apart(world):
    images = np.stack([g.image for g in world])
    assert images.shape == (256, 32, 32, 3) and images.dtype == np.uint8
    distances = pairwise_rms(images)
    assert distances[np.triu_indices(len(world), 1)].min() >= MIN_SEPARATION - 1e-6
    # every icon has ink: more than one colour on its canvas
    assert all(len(np.unique(g.image.reshape(-1, 3), axis=0)) > 2 for g in world)


def test_match_and_reproduced_on_the_templates_themselves(world):
    templates = np.stack([g.image for g in world])
    nearest, distance = match(templates, templates)
    assert np.array_equal(nearest, np.arange(len(world))) and np.allclose(distance, 0, atol=1e-6)
    assert reproduced(templates, templates).all()
    shifted = np.roll(templates, 1, axis=0)   # every image is another entity's icon
    assert not reproduced(shifted, templates).any()


def test_folder_is_readable_by_folder_source(tmp_path, world):
    glyphs = write_glyph_folder(tmp_path / "glyphs", 24, seed=3)
    assert [g.name for g in glyphs] == [g.name for g in world[:24]]
    source = FolderSource(tmp_path / "glyphs", size=32, seed=0)
    assert len(source) == 24 and source.uncaptioned == 0
    by_caption = {g.caption: g.image for g in glyphs}
    for index in range(24):
        example = source[index]
        assert np.array_equal(example.image, by_caption[example.caption])
