"""Fixtures several test files share."""

import pytest
import torch


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
def redis_url(tmp_path_factory):
    """A real redis-server of this module's own (started in well under a second), its URL
    yielded; skipped loudly where redis-server is not installed, failed on CI (tests/redis_server.py)."""
    from tests.redis_server import RedisServer

    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url
