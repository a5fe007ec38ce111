"""`pip install .` (not editable) gives a working Atelier: the shipped weights travel inside the
package (atelier/weights, found with importlib.resources), so `atelier generate` works from any
folder with no source checkout in sight."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package installed (built as a wheel, then unpacked) into a folder of its own, from a copy
    of the checkout (setuptools builds in the source folder)."""
    source, target = tmp_path_factory.mktemp("source") / "atelier", tmp_path_factory.mktemp("site")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "runs", "outputs", "eval_samples", "preview", ".carry"))
    # with this environment's setuptools when it has one, so nothing is fetched; else pip fetches it
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--disable-pip-version-check", *isolation, "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def run(installed: Path, cwd: Path, *arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(installed)}     # ahead of the editable install of the checkout
    return subprocess.run([sys.executable, *arguments], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.processes
def test_the_installed_package_finds_its_weights_and_generates(installed, tmp_path):
    where = run(installed, tmp_path, "-c", "import atelier, atelier.pipeline as p; print(atelier.__file__); "
                                           "print(p.DEFAULT_MODEL)")
    assert where.returncode == 0, where.stderr
    package, model = (Path(line) for line in where.stdout.split())
    assert package.is_relative_to(installed) and model.is_relative_to(installed), where.stdout
    for name in ("default", "tokenizer", "segmenter", "classifier"):
        assert sorted(path.suffix for path in (installed / "atelier" / "weights" / name).rglob("*.safetensors"))
    made = run(installed, tmp_path, "-m", "atelier", "generate", "a red circle", "-n", "1", "--steps", "2",
               "--seed", "3", "--threads", "1", "--quiet", "-o", "out")
    assert made.returncode == 0, made.stderr[-3000:]
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["00000-3.png"]
