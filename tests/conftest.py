"""Fixtures several test files share."""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip, saying why, on a machine without CUDA (CI has none)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_torch_thread():
    """On this shared 2-core machine two torch threads stall whenever a neighbour holds a core
    (a training step measured 10x slower); one thread does not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny untrained model folder (random weights nudged off their zero initialisation, so
    every part of the transformer acts), 3 sampling steps by default: fast, and every output
    depends on every input."""
    from atelier.bundle import save_bundle
    from atelier.model.config import ModelConfig
    from atelier.model.transformer import SpaceTimeTransformer
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
    """The tiny model as a pipeline, for the server tests (one torch thread: see one_torch_thread)."""
    from atelier.pipeline import Atelier

    torch.set_num_threads(1)
    return Atelier.from_pretrained(folder)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Where the browser tests save their screenshots: $ATELIER_SCREENSHOTS, else a temporary folder."""
    import os
    from pathlib import Path

    folder = Path(os.environ.get("ATELIER_SCREENSHOTS") or tmp_path_factory.mktemp("screens"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A real redis-server of this module's own (started in well under a second), its URL
    yielded; skipped loudly where redis-server is not installed, failed on CI (tests/redis_server.py)."""
    from tests.redis_server import RedisServer

    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


CHROMIUM = "/usr/bin/chromium"       # Debian's package: Playwright never downloads a browser here


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Playwright; skipped with the reason where either is missing, and
    failed where CI=true (scripts/setup.sh --dev installs both)."""
    import os
    from pathlib import Path

    problems = []
    if not Path(CHROMIUM).exists():
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problems.append("playwright is not installed (pip install 'playwright>=1.50,<2'; no `playwright install`)")
    if problems:
        message = "THE BROWSER TESTS DID NOT RUN: " + "; ".join(problems) + ". scripts/setup.sh --dev installs both."
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()
