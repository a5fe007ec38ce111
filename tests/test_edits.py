"""Edit pairs and the edits oracle: pairs are exact (nothing changes outside the mask), their
instructions are true, splits hold, and the oracle passes the truth and fails what is wrong."""

import json
from dataclasses import replace

import numpy as np
import pytest

from atelier.evaluate import edits as suite
from atelier.world import vocab
from atelier.world.edits import evalset as editset
from atelier.world.edits.pairs import KINDS, make_edit_pair
from atelier.world.images.caption import TRAIN, held_out_words, words
from atelier.world.images.render import object_coverage, render
from atelier.world.splits import held_out_facts


def _pairs(kind, count, seed=11, size=64, split="train"):
    return [make_edit_pair(seed, i, size=size, split=split, kind=kind) for i in range(count)]


def test_pairs_are_deterministic_and_the_drawn_kind_can_be_named():
    for i in range(10):
        a, b = make_edit_pair(3, i), make_edit_pair(3, i)
        named = make_edit_pair(3, i, kind=a.kind)
        for other in (b, named):
            assert other.instruction == a.instruction and other.caption == a.caption
            assert np.array_equal(other.edit_mask, a.edit_mask)
            assert np.array_equal(other.target_image, a.target_image)
    assert {make_edit_pair(3, i).kind for i in range(40)} == set(KINDS)
    assert make_edit_pair(3, 0, kind="remove").instruction != make_edit_pair(4, 0, kind="remove").instruction


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_changes_outside_the_mask(kind):
    pairs = _pairs(kind, 70) + _pairs(kind, 6, size=37) + _pairs(kind, 6, size=128)
    for pair in pairs:
        changed = (pair.source_image != pair.target_image).any(-1)
        assert changed.any(), (kind, pair.index)
        assert not (changed & ~pair.edit_mask).any(), (kind, pair.index, pair.instruction)
        assert pair.edit_mask.shape == (pair.source.size,) * 2 and pair.edit_mask.dtype == bool


def test_masks_cover_what_each_kind_says():
    for pair in _pairs("colour", 20) + _pairs("shape", 20) + _pairs("remove", 20):
        edited = object_coverage(pair.source, pair.edited)
        if pair.kind != "remove":  # the union of the object before and after
            edited = np.maximum(edited, object_coverage(pair.target, pair.edited))
        assert pair.edit_mask[edited > 0].all()
        ys, xs = np.nonzero(edited > 0)
        x0, y0, x1, y1 = pair.region_box  # a couple of pixels around the object, not more
        assert x0 >= xs.min() - 3 and y0 >= ys.min() - 3 and x1 <= xs.max() + 4 and y1 <= ys.max() + 4
    for pair in _pairs("add", 20):
        row, col = divmod(pair.target.objects[-1].region, vocab.GRID)
        x0, y0, x1, y1 = pair.region_box
        assert (x0, y0) == (int(col * 64 / 3), int(row * 64 / 3)) and x1 - x0 in (22, 23) and y1 - y0 in (22, 23)
    for pair in _pairs("background", 20):
        cores = np.zeros((64, 64), bool)
        for i in range(len(pair.source.objects)):
            cores |= object_coverage(pair.source, i) >= 1
        assert np.array_equal(pair.edit_mask, ~cores)


def _matching(reference, objects):
    return [o for o in objects if reference.matches(o)
            and (reference.region is None or vocab.REGIONS[o.region] == reference.region)]


def test_instructions_and_captions_are_true():
    reserved = held_out_words()
    for kind in KINDS:
        for pair in _pairs(kind, 40, seed=5):
            text = pair.instruction.lower()
            assert not set(words(text)) & reserved and not set(words(pair.caption)) & reserved
            assert pair.caption_query.satisfied_by(pair.target.objects, pair.target.background)
            assert not pair.region_failures(pair.target.objects, pair.target.background), pair.instruction
            assert pair.region_failures(pair.source.objects, pair.source.background), pair.instruction
            if kind in ("colour", "shape", "remove"):
                named = _matching(pair.reference, pair.source.objects)
                assert named == [pair.source.objects[pair.edited]], pair.instruction
                assert len(pair.kept) == len(pair.source.objects) - 1
            if kind == "colour":
                new = pair.target.objects[pair.edited].colour
                assert any(f" {w}" in text for w in TRAIN.colours[new]), pair.instruction
            if kind == "shape":
                new = pair.target.objects[pair.edited].shape
                assert any(f" {w}" in text for w in TRAIN.shapes[new]), pair.instruction
            if kind == "add":
                region = vocab.REGIONS[pair.target.objects[-1].region]
                assert any(w in text for w in TRAIN.regions[region]), pair.instruction
            if kind == "background":
                assert all(any(w in text for w in TRAIN.colours[c]) for c in pair.target.background.colours)


def test_training_pairs_never_show_a_held_out_fact():
    shown = 0
    for kind in KINDS:
        for pair in _pairs(kind, 60, seed=9):
            assert not held_out_facts(pair.source.objects) and not held_out_facts(pair.target.objects)
        shown += sum(bool(held_out_facts(p.source.objects) or held_out_facts(p.target.objects))
                     for p in _pairs(kind, 60, seed=9, split="all"))
    assert shown > 0, "split='all' should sometimes show held-out facts, or this test checks nothing"


def test_bad_arguments_are_refused_plainly():
    with pytest.raises(ValueError, match="unknown edit kind"):
        make_edit_pair(0, 0, kind="recolour")
    with pytest.raises(ValueError, match="image size"):
        make_edit_pair(0, 0, size=16)
    with pytest.raises(ValueError, match="unknown split"):
        make_edit_pair(0, 0, split="test")


def test_committed_eval_set_matches_build():
    built = [c.to_dict() for c in editset.build()]
    assert [c.to_dict() for c in editset.load()] == json.loads(json.dumps(built))
    counts = {kind: sum(c.category == kind for c in editset.load()) for kind in KINDS}
    assert counts == {kind: editset.CASES_PER_KIND for kind in KINDS}
    case = editset.load()[0]
    assert case.pair(128).instruction == case.instruction and case.pair(128).edit_mask.shape == (128, 128)


@pytest.fixture(scope="module")
def cases():
    return [c for kind in KINDS for c in [c for c in suite.load_cases() if c.category == kind][:6]]


@pytest.fixture(scope="module")
def table(cases):
    return suite.validate(cases, per_case=1)


@pytest.mark.slow
def test_validation_bars(table):
    rows = table["conditions"]
    assert rows["truth"]["overall"] >= 0.95
    for condition in ("blur", "noise", "jpeg", "blur+noise+jpeg", "degraded, pasted"):
        assert rows[condition]["overall"] >= 0.90, condition
    assert rows["uniform noise"]["overall"] <= 0.05
    assert rows["shuffled cases"]["overall"] <= 0.2
    assert all(row["score"] == 0 for row in rows["source unchanged"]["categories"].values())
    assert rows["truth pasted in mask"] == rows["truth"]
    assert rows["truth"]["psnr_outside"]["median"] == suite.PSNR_CAP
    assert rows["blur+noise+jpeg"]["psnr_outside"]["mean"] < 40
    fresh = rows["fresh scene"]
    assert fresh["region"] >= 0.8 and fresh["psnr_outside"]["mean"] < 25 and fresh["kept"] < 0.7
    text = suite.format_validation(table)
    assert "fresh scene" in text and "PSNR" in text


def test_a_wiped_image_fails_every_case_that_keeps_an_object(cases):
    for case in cases:
        pair = case.pair()
        wiped = render(replace(pair.target, objects=()))
        verdict = suite.score_output(pair, wiped)
        if pair.kept:
            assert not verdict.correct and not verdict.kept, case.instruction


def test_folder_round_trip(tmp_path, cases):
    suite.write_inputs(tmp_path, cases)
    suite.write_truth(tmp_path, cases, per_case=2)
    case_dir = tmp_path / cases[0].id
    assert {p.name for p in case_dir.iterdir()} == {"source.png", "mask.png", "instruction.txt", "caption.txt",
                                                   "0.png", "1.png"}
    assert (case_dir / "instruction.txt").read_text().strip() == cases[0].instruction
    results = suite.score_folder(tmp_path, cases)
    summary = suite.summarise(results)
    assert summary["overall"] == 1.0 and summary["images"] == 2 * len(cases)
    assert summary["psnr_outside"]["mean"] == suite.PSNR_CAP
    assert set(summary["categories"]) == set(KINDS)
    out = json.loads(json.dumps(suite.report(results, model="truth")))
    assert out["model"] == "truth" and len(out["cases"]) == len(cases)
    assert "overall" in suite.format_table(summary)


def test_folder_errors_are_plain(tmp_path, cases):
    from PIL import Image

    with pytest.raises(ValueError, match="no such folder"):
        suite.score_folder(tmp_path / "absent", cases)
    suite.write_inputs(tmp_path, cases[:2])
    suite.write_truth(tmp_path, cases[:1])
    with pytest.raises(ValueError, match="no outputs for"):
        suite.score_folder(tmp_path, cases[:2])
    assert len(suite.score_folder(tmp_path, cases[:2], partial=True)) == 1
    big = make_edit_pair(cases[1].seed, cases[1].index, size=96, kind=cases[1].category).target_image
    Image.fromarray(big).save(tmp_path / cases[1].id / "0.png")
    with pytest.raises(ValueError, match="but mask.png is 64x64"):
        suite.score_folder(tmp_path, cases[1:2])
    (tmp_path / cases[1].id / "mask.png").write_bytes((tmp_path / cases[0].id / "mask.png").read_bytes())
    Image.fromarray(cases[1].pair().target_image).save(tmp_path / cases[1].id / "0.png")
    with pytest.raises(ValueError, match="not the mask of case"):
        suite.score_folder(tmp_path, cases[1:2])
    Image.fromarray(cases[0].pair().target_image).save(tmp_path / cases[0].id / "0.jpg")
    with pytest.raises(ValueError, match="more than one file"):
        suite.score_folder(tmp_path, cases[:1])
    pair = cases[0].pair()
    with pytest.raises(ValueError, match="same size"):
        suite.psnr_outside(pair.target_image, pair.source_image, pair.edit_mask[:32, :32])
    with pytest.raises(ValueError, match="mask is 64x64"):
        suite.score_output(pair, np.zeros((96, 96, 3), np.uint8))


def test_psnr_outside_the_mask():
    pair = make_edit_pair(0, 1, kind="colour")
    assert suite.psnr_outside(pair.target_image, pair.source_image, pair.edit_mask) == suite.PSNR_CAP
    shifted = np.clip(pair.source_image.astype(int) + 4, 0, 255).astype(np.uint8)  # about 4/255 everywhere
    assert 34 < suite.psnr_outside(shifted, pair.source_image, pair.edit_mask) < 37
    everything = np.ones((64, 64), bool)
    assert np.isnan(suite.psnr_outside(shifted, pair.source_image, everything))
