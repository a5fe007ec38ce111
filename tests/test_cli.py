"""The command line, as a user runs it."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from atelier.cli import main
from atelier.world.images import evalset


@pytest.mark.slow
def test_preview_writes_a_contact_sheet(tmp_path):
    main(["world", "preview", "-o", str(tmp_path), "-n", "6"])
    sheet = Image.open(tmp_path / "world_preview.png")
    assert sheet.width > 6 * 150
    for animation in ("clips.gif", "objects.gif"):
        with Image.open(tmp_path / animation) as gif:
            assert gif.n_frames >= 16, animation
    assert Image.open(tmp_path / "edit_preview.png").height > 200


def test_sample_writes_images_captions_and_truth(tmp_path):
    main(["world", "sample", "-o", str(tmp_path), "-n", "3"])
    assert sorted(p.name for p in tmp_path.iterdir())[:3] == ["000000.json", "000000.png", "000000.txt"]
    truth = json.loads((tmp_path / "000000.json").read_text())
    assert truth["caption"] == (tmp_path / "000000.txt").read_text().strip()
    for obj in truth["scene"]["objects"]:
        x0, y0, x1, y1 = obj["box"]
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        assert {"shape", "colour", "size", "texture", "region"} <= obj.keys()
    with pytest.raises(SystemExit, match="already holds samples"):
        main(["world", "sample", "-o", str(tmp_path), "-n", "3"])


@pytest.mark.slow
def test_eval_generates_and_scores_the_suite(tmp_path, capsys):
    samples = tmp_path / "samples"
    main(["eval", "--suite", "images", "--model", "world", "-n", "1", str(samples)])
    out = capsys.readouterr().out
    assert "overall" in out and "held_out_pairs" in out
    report = json.loads((samples / "eval_images.json").read_text())
    assert report["overall"] >= 0.98 and len(report["prompts"]) == len(evalset.load())
    # Scoring the folder again gives the same figures.
    main(["eval", "--suite", "images", str(samples), "--json", str(tmp_path / "again.json")])
    assert json.loads((tmp_path / "again.json").read_text())["overall"] == report["overall"]
    # A corrupt sample is named in a clear error.
    (samples / "0003" / "0.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit, match="0003/0.png: not a readable image"):
        main(["eval", "--suite", "images", str(samples)])


def test_eval_refuses_a_partial_folder_unless_asked(tmp_path, capsys):
    folder = tmp_path / "few"
    prompt = evalset.load()[0]
    (folder / prompt.id).mkdir(parents=True)
    from atelier.evaluate.suite import truth_images

    Image.fromarray(truth_images(prompt, 1)[0]).save(folder / prompt.id / "0.png")
    with pytest.raises(SystemExit, match="no samples for 647 of 648 prompts"):
        main(["eval", "--suite", "images", str(folder)])
    main(["eval", "--suite", "images", str(folder), "--partial"])
    assert "single_object" in capsys.readouterr().out


def test_eval_refuses_ambiguous_or_empty_folders(tmp_path):
    folder = tmp_path / "dup"
    prompt = evalset.load()[0]
    (folder / prompt.id).mkdir(parents=True)
    from atelier.evaluate.suite import truth_images

    image = Image.fromarray(truth_images(prompt, 1)[0])
    image.save(folder / prompt.id / "0.png")
    image.save(folder / prompt.id / "0.jpg")
    with pytest.raises(SystemExit, match="more than one file for the same sample"):
        main(["eval", "--suite", "images", str(folder), "--partial"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no samples for any prompt"):
        main(["eval", "--suite", "images", str(tmp_path / "empty"), "--partial"])
    # Generating into a folder that already holds samples would mix two runs.
    with pytest.raises(SystemExit, match="already holds files"):
        main(["eval", "--suite", "images", "--model", "world", "-n", "1", str(folder)])
    assert sorted(p.name for p in (folder / prompt.id).iterdir()) == ["0.jpg", "0.png"]


def test_counts_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--suite", "images", "--validate", "-n", "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_eval_errors_are_plain(tmp_path):
    with pytest.raises(SystemExit, match="no such folder"):
        main(["eval", "--suite", "images", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="unknown suite"):
        main(["eval", "--suite", "videos", str(tmp_path)])
    with pytest.raises(SystemExit, match="32 to 256"):
        main(["world", "preview", "-o", str(tmp_path), "--size", "512"])


def test_bench_prints_its_figure(capsys):
    main(["bench", "world", "--seconds", "0.2"])
    assert "scenes/s" in capsys.readouterr().out


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as shown:
        main([*argv, "--help"])
    assert shown.value.code == 0
    return capsys.readouterr().out


def test_each_train_and_bench_target_has_only_its_own_flags(capsys):
    model, tokenizer = _help(["train", "model"], capsys), _help(["train", "tokenizer"], capsys)
    assert "--checkpoint-every" in model and "--latent-channels" not in model and "--baseline" not in model
    assert "--latent-channels" in tokenizer and "--checkpoint-every" not in tokenizer and "--data" not in tokenizer
    assert "--size" not in _help(["train", "segmenter"], capsys)
    world = _help(["bench", "world"], capsys)
    assert "--seconds" in world and "--per-category" not in world and "--json" not in world
    # a flag of another target is refused as bad input (exit status 2), naming it
    for argv, flag in ((["train", "tokenizer", "--checkpoint-every", "5"], "--checkpoint-every"),
                       (["train", "classifier", "-o", "x", "--batch", "8"], "--batch"),
                       (["bench", "generate", "--seconds", "1"], "--seconds")):
        with pytest.raises(SystemExit) as refused:
            main(argv)
        assert refused.value.code == 2
        assert f"unrecognized arguments: {flag}" in capsys.readouterr().err


def test_installed_command_runs():
    result = subprocess.run([sys.executable, "-m", "atelier", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "world" in result.stdout


def test_model_info_prints_parameters_and_flops(capsys):
    main(["model", "info", "tiny", "--latent", "8"])
    out = capsys.readouterr().out
    assert out.startswith("tiny") and "6.3M params" in out and "GFLOP/sample" in out and "1x8x8 latents" in out
    with pytest.raises(SystemExit, match="error: unknown model preset 'huge'"):
        main(["model", "info", "huge"])


@pytest.mark.parametrize("suite, module", [("edits", "atelier.evaluate.edits"), ("objects", "atelier.evaluate.objects"),
                                           ("clips", "atelier.evaluate.clips")])
def test_every_suite_scores_the_truth_from_the_command_line(suite, module, tmp_path, capsys, monkeypatch):
    import importlib

    loaded = importlib.import_module(module)
    cases = loaded.load_cases()
    few = tuple({case.category: case for case in cases}.values())   # one case per category keeps this fast
    monkeypatch.setattr(loaded, "load_cases", lambda: few)
    samples = tmp_path / suite
    main(["eval", "--suite", suite, "--model", "world", "-n", "1", str(samples)])
    report = json.loads((samples / f"eval_{suite}.json").read_text())
    assert report["overall"] == 1.0 and set(report["categories"]) == {case.category for case in few}
    assert "overall" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="already holds files"):
        main(["eval", "--suite", suite, "--model", "world", str(samples)])
    if suite != "edits":   # the edit suite runs any model (tests/test_editing.py)
        with pytest.raises(SystemExit, match="not in this version's pipeline yet"):
            main(["eval", "--suite", suite, "--model", "atelier/weights/default", str(tmp_path / "other")])


def test_edit_inputs_are_written_for_any_model(tmp_path, monkeypatch):
    import atelier.evaluate.edits as edits

    few = edits.load_cases()[:2]
    monkeypatch.setattr(edits, "load_cases", lambda: few)
    main(["eval", "--suite", "edits", "--inputs", str(tmp_path / "inputs")])
    case = tmp_path / "inputs" / few[0].id
    assert (case / "source.png").is_file() and (case / "mask.png").is_file() and (case / "instruction.txt").is_file()
    with pytest.raises(SystemExit, match="unknown suite 'audio'"):
        main(["eval", "--suite", "audio", str(tmp_path)])


@pytest.fixture
def no_model_load(monkeypatch):
    """Fails the test if a model starts loading: what it checks must be refused before that."""
    from atelier.pipeline import Atelier

    def refuse(*args, **kwargs):
        raise AssertionError("the model started loading")

    monkeypatch.setattr(Atelier, "from_pretrained", refuse)


@pytest.fixture
def small_image(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (64, 64), "teal").save(path)
    return path


def _usage_error(argv: list[str], capsys) -> str:
    """The message of a command refused as bad input (exit status 2, as argparse's own errors)."""
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2
    return capsys.readouterr().err.strip()


@pytest.mark.parametrize("argv, message", [
    (["generate", "a star", "--steps", "0"], "error: --steps must be a whole number from 1 to 1000, got 0"),
    (["generate", "a star", "--guidance", "31"], "error: --guidance must be a number from 0 to 30, got 31.0"),
    (["generate", "a star", "-n", "17"], "error: -n must be a whole number from 1 to 16, got 17"),
    (["generate", "a star", "--size", "100"],
     "error: --size must be one of the sizes the model 'default' makes: 64, got 100"),
    (["generate", "a star", "--sampler", "ddim"], "error: --sampler must be one of euler, heun, multistep, got ddim"),
    (["generate", "a star", "--seed", "-1"], "error: --seed must be a whole number from 0 to 4294967295, got -1"),
    (["edit", "IMAGE", "a star", "--mask", "IMAGE", "--steps", "1001"],
     "error: --steps must be a whole number from 1 to 1000, got 1001"),
    (["edit", "IMAGE", "a star", "--mask", "IMAGE", "--feather", "-1"],
     "error: --feather must be a width in pixels, at least 0, got -1.0"),
    (["edit", "IMAGE", "a star", "--mask", "IMAGE", "--context", "5"],
     "error: --context must be from 0 to 4 (a share of the region's size), got 5.0"),
    (["edit", "IMAGE", "a star"], "error: give a mask (white = edit, or transparent = edit), or an image whose "
                                  "transparent pixels mark the area to edit"),
    (["vary", "IMAGE", "--strength", "1.5"], "error: --strength must be a number above 0 and at most 1, got 1.5"),
    (["vary", "IMAGE", "--guidance", "-1"], "error: --guidance must be a number from 0 to 30, got -1.0"),
    (["outpaint", "IMAGE", "a star"],
     "error: give at least one side to extend: --left, --right, --top or --bottom (pixels)"),
    (["outpaint", "IMAGE", "a star", "--left", "4040"],
     "error: the extended image would be 4104x64; results up to 4096 pixels per side are made"),
])
def test_bad_settings_are_refused_before_the_model_loads(argv, message, small_image, tmp_path, no_model_load, capsys):
    argv = [str(small_image) if part == "IMAGE" else part for part in argv]
    assert _usage_error([*argv, "-o", str(tmp_path / "out")], capsys) == message
    assert not (tmp_path / "out").exists(), "nothing is created for a refused command"


def test_bad_inputs_name_the_flag_and_the_path(small_image, tmp_path, no_model_load, capsys):
    empty = tmp_path / "empty.png"
    empty.touch()
    out = ["-o", str(tmp_path / "out")]
    assert _usage_error(["edit", str(empty), "a star", "--mask", str(small_image), *out], capsys) == \
        f"error: image {empty} is empty (0 bytes)"
    assert _usage_error(["edit", str(small_image), "a star", "--mask", str(empty), *out], capsys) == \
        f"error: mask {empty} is empty (0 bytes)"
    assert _usage_error(["vary", str(empty), *out], capsys) == f"error: image {empty} is empty (0 bytes)"
    assert _usage_error(["generate", "--from", str(empty), *out], capsys) == \
        f"error: --from {empty}: the file is empty (0 bytes)"
    missing = tmp_path / "prompts.txt"
    assert _usage_error(["generate", "--prompts", str(missing), *out], capsys) == \
        f"error: --prompts {missing}: no such file or directory"
    assert _usage_error(["generate", "a star", "--model", str(tmp_path), *out], capsys) == \
        f"error: --model {tmp_path} is not an Atelier model (no model_index.json); train one with `atelier train model`"


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_model_loads(small_image, tmp_path, no_model_load,
                                                                                  capsys, monkeypatch):
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"an image already")
    assert _usage_error(["generate", "a star", "-o", str(taken)], capsys) == \
        f"error: -o {taken} is a file, not a folder; give a folder for the images"
    assert _usage_error(["edit", str(small_image), "a star", "--mask", str(small_image), "-o", str(taken / "sub")],
                        capsys) == f"error: -o {taken / 'sub'}: cannot write images there (not a directory)"
    import errno
    import os
    import tempfile

    def read_only(*args, dir=None, **kwargs):   # a read-only mount, which a test cannot make
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    folder = tmp_path / "mounted"
    assert _usage_error(["vary", str(small_image), "-o", str(folder)], capsys) == \
        f"error: -o {folder}: cannot write images there (read-only file system)"


def test_each_prompt_warning_is_given_once(folder, tmp_path):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["generate", "", "--negative", "a red circle and " * 60, "--model", str(folder), "-o", str(tmp_path),
              "--seed", "1", "--quiet"])
    messages = [str(warning.message) for warning in caught]
    assert messages.count("the prompt is empty: generating without a prompt (unconditional)") == 1, messages
    assert sum(message.startswith("the negative prompt is longer") for message in messages) == 1, messages
    assert [path.name for path in tmp_path.iterdir()] == ["00000-1.png"]


def test_the_automatic_mask_hint_is_a_command_that_runs(folder, tmp_path, monkeypatch, capsys):
    import shlex

    import numpy as np

    from atelier.world.images.stream import make_sample

    monkeypatch.chdir(tmp_path)
    source = make_sample(3, 5, size=64, split="all").image
    Image.fromarray(source).save("scene.png")
    common = ["--model", str(folder), "-o", "out", "--quiet", "--seed", "2"]
    main(["edit", "scene.png", "--background", "a blue background", *common])
    hint = capsys.readouterr().out.splitlines()[1]
    command = shlex.split(hint.split("run: ", 1)[1].removesuffix(")"))
    assert command == ["atelier", "edit", "scene.png", "a blue background", "--mask", "out/00000-2-mask.png"]
    main(command[1:] + common)
    assert capsys.readouterr().out.strip() == "out/00001-2.png"
    mask = np.asarray(Image.open("out/00000-2-mask.png")) == 255
    assert np.array_equal(np.asarray(Image.open("out/00001-2.png"))[~mask], source[~mask])
