"""The command line, as a user runs it."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from atelier.cli import main
from atelier.world import evalset


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
            main(["eval", "--suite", suite, "--model", "weights/default", str(tmp_path / "other")])


def test_edit_inputs_are_written_for_any_model(tmp_path, monkeypatch):
    import atelier.evaluate.edits as edits

    few = edits.load_cases()[:2]
    monkeypatch.setattr(edits, "load_cases", lambda: few)
    main(["eval", "--suite", "edits", "--inputs", str(tmp_path / "inputs")])
    case = tmp_path / "inputs" / few[0].id
    assert (case / "source.png").is_file() and (case / "mask.png").is_file() and (case / "instruction.txt").is_file()
    with pytest.raises(SystemExit, match="unknown suite 'audio'"):
        main(["eval", "--suite", "audio", str(tmp_path)])
