"""scripts/gpu_checks.sh train, the GPU run that continues training the shipped model, run end to end at
toy size on the CPU (TOY=1): what it brings back under $OUT must come back through the device tool (at
most 8 files, each at most 16 MiB), the archive must be a model the pipeline loads, and a run cut short
must still give a model (scripts/gpu_run.py export-checkpoint)."""

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_checks.sh"
HELPER = ROOT / "scripts" / "gpu_run.py"
MiB = 1 << 20
BROUGHT_BACK = {"model.tar.gz", "eval.json", "loss.png", "samples.png", "run.log", "summary.json"}


def script_env(**settings: str) -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable, "OMP_WAIT_POLICY": "PASSIVE", **settings}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """One toy run: 3 steps of batch 4 from atelier/weights/default, 6 evaluation prompts (~20 s here)."""
    base = tmp_path_factory.mktemp("gpu-train")
    out, work = base / "out", base / "work"
    result = subprocess.run(["bash", str(SCRIPT), "train"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env=script_env(TOY="1", OUT=str(out), WORK=str(work)))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out, work, result.stdout


def helper():
    spec = importlib.util.spec_from_file_location("gpu_run", HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_toy_run_brings_back_what_the_device_tool_can_carry(toy):
    out, _, _ = toy
    files = [path for path in out.rglob("*") if path.is_file()]
    assert len(files) <= 8 and {path.name for path in files} == BROUGHT_BACK
    assert all(path.stat().st_size <= 16 * MiB for path in files), {p.name: p.stat().st_size for p in files}
    assert "== train: exit 0" in (out / "run.log").read_text()


@pytest.mark.slow
def test_the_archive_is_a_model_the_pipeline_loads_and_its_evaluation_parses(toy, tmp_path):
    from atelier.bundle import read_index, weights_hash
    from atelier.pipeline import Atelier

    out, _, _ = toy
    with tarfile.open(out / "model.tar.gz") as archive:
        assert {name.split("/")[0] for name in archive.getnames()} == {"default"}   # unpacks over atelier/weights
        archive.extractall(tmp_path, filter="data")
    model = tmp_path / "default"
    assert read_index(model)["stored_as"] == "fp16" and read_index(model)["training"]["steps"] == 3
    pipe = Atelier.from_pretrained(model)
    assert pipe.transformer.config == Atelier.from_pretrained().transformer.config   # the shipped model's shape

    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["suite"] == "images" and evaluation["images"] == 6 and len(evaluation["prompts"]) == 6
    assert 0 <= evaluation["overall"] <= 1 and evaluation["fidelity"]["fd"] > 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["before"] == weights_hash(ROOT / "atelier" / "weights" / "default")
    assert summary["after"] == weights_hash(model) != summary["before"]
    assert summary["steps"] == 3 and summary["images"] == 12 and summary["score"] == evaluation["overall"]
    assert [stage["stage"] for stage in summary["stages"]] == ["train", "pack", "generate", "score"]
    assert all(stage["status"] == 0 for stage in summary["stages"])


@pytest.mark.slow
def test_the_row_is_printed_last_ready_for_the_table_in_the_models_record(toy):
    out, _, stdout = toy
    row = json.loads((out / "summary.json").read_text())["row"]
    assert row in stdout.splitlines()[-20:]
    record = (ROOT / "docs" / "models" / "default.md").read_text()
    header = next(line for line in record.splitlines() if line.startswith("| date | minutes | images seen"))
    assert row.count("|") == header.count("|")          # one cell per column
    assert f"-> `{json.loads((out / 'summary.json').read_text())['after']}`" in row


@pytest.mark.slow
def test_a_run_cut_short_is_packed_from_its_latest_checkpoint(toy, tmp_path):
    """What the script does when training is killed before it exports: the latest checkpoint's EMA
    weights as a model folder. At the last step they are exactly the weights the trainer exports."""
    from safetensors.torch import load_file

    from atelier.bundle import read_index
    from atelier.pipeline import Atelier

    _, work, _ = toy
    run = work / "run"
    result = subprocess.run([sys.executable, str(HELPER), "export-checkpoint", str(run), str(tmp_path / "cut")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=script_env(PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr
    index = read_index(tmp_path / "cut")
    assert index["training"]["steps"] == 3 and "cut short" in index["training"]["exported_from"]
    assert index["defaults"] == read_index(run / "model")["defaults"]
    ours, theirs = (load_file(str(next((folder / "transformer").glob("*.safetensors"))))
                    for folder in (tmp_path / "cut", run / "model"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    Atelier.from_pretrained(tmp_path / "cut")


def test_the_table_row_has_one_cell_per_column_whatever_is_missing():
    row = helper().table_row({"date": "2027-01-02", "before": "cc820f168a"})
    assert row == "| 2027-01-02 | - | - | - | - | - | `cc820f168a` -> `none` |"
    row = helper().table_row({"date": "2027-01-02", "mode": "gpu", "train_seconds": 300, "images": 2_000_000,
                              "steps": 7812, "score": 0.25, "score_ci95": [0.2, 0.3], "eval_prompts": 648,
                              "fd": 123.4, "before": "cc820f168a", "after": "0123456789"})
    assert row == ("| 2027-01-02 | 5.0 | 2,000,000 | 7,812 | 0.250 [0.200, 0.300] | 123 | "
                   "`cc820f168a` -> `0123456789` |")


def test_train_refuses_arguments_and_a_results_folder_that_holds_files(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT), "train", "now"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env=script_env())
    assert result.returncode == 2 and "settings are environment variables" in result.stderr
    (tmp_path / "old.json").write_text("{}")
    result = subprocess.run(["bash", str(SCRIPT), "train"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env=script_env(TOY="1", OUT=str(tmp_path)))
    assert result.returncode == 2 and "already holds files" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"]   # nothing ran
