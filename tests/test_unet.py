"""The UNet denoiser (atelier.model.unet): the transformer's interface on a diffusers UNet, built and
loaded through atelier.model.denoiser, trained, exported and sampled like the transformer."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from atelier.folder import FolderError
from atelier.model import denoiser
from atelier.model.unet import UNET_PRESETS, ConditionalUNet, UNetConfig

# Two levels, attention at the second: every part of the UNet acts, in milliseconds.
MICRO = UNetConfig(latent_channels=4, text_dim=16, widths=(16, 32), layers=1, attention=(False, True), heads=2,
                   norm_groups=8)


def randomised(config: UNetConfig = MICRO, seed: int = 0) -> ConditionalUNet:
    """A UNet nudged off its initialisation (the output convolution starts at zero)."""
    torch.manual_seed(seed)
    model = ConditionalUNet(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def inputs(batch: int = 2, frames: int = 1, side: int = 8, length: int = 5, seed: int = 1, config: UNetConfig = MICRO):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, frames, config.latent_channels, side, side, generator=generator)
    t = torch.rand(batch, generator=generator)
    tokens = torch.randn(batch, length, config.text_dim, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 3:] = False
    pooled = torch.randn(batch, config.text_dim, generator=generator)
    return x, t, tokens, mask, pooled


def test_forward_has_the_canvas_shape_and_starts_at_zero_velocity(one_torch_thread):
    from atelier.flow.objective import flow_loss, timestep_shift

    torch.manual_seed(0)
    model = ConditionalUNet(MICRO)
    x, t, tokens, mask, pooled = inputs()
    keep = torch.zeros(2, 1, 1, 8, 8)
    keep[..., :4] = 1
    with torch.no_grad():
        out = model(x, t, tokens, mask, pooled)
        edited = model(x, t[:, None], tokens, mask, pooled, keep_mask=keep, context=torch.randn_like(x),
                       drop_text=torch.tensor([True, False]))
    assert out.shape == edited.shape == x.shape
    assert torch.count_nonzero(out) == 0 and torch.count_nonzero(edited) == 0, "the output conv starts at zero"
    assert model.memory_value_parameters() == []
    # flow_loss reads patch_size and base_tokens: 64 px images (16x16 latents) are the unshifted base.
    assert timestep_shift(16 * 16 // MICRO.patch_size ** 2, UNET_PRESETS["unet-tiny"].base_tokens) == 1.0
    model.train()
    model.gradient_checkpointing = True
    loss = flow_loss(model, x, tokens, mask, pooled, keep_mask=keep, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and model.unet.conv_out.weight.grad.abs().sum() > 0


def test_drop_text_swaps_in_the_null_caption(one_torch_thread):
    model = randomised()
    x, t, tokens, mask, pooled = inputs()
    null_tokens = torch.zeros_like(tokens)
    null_tokens[:, 0] = model.null_text
    null_mask = torch.zeros_like(mask)
    null_mask[:, 0] = True
    null_pooled = model.null_pooled.expand_as(pooled)
    with torch.no_grad():
        dropped = model(x, t, tokens, mask, pooled, drop_text=torch.tensor([True, False]))
        kept = model(x, t, tokens, mask, pooled)
        null = model(x, t, null_tokens, null_mask, null_pooled)
        other = model(x, t, torch.randn_like(tokens), mask, torch.randn_like(pooled),
                      drop_text=torch.tensor([True, True]))
    assert torch.equal(dropped[0], null[0]), "a dropped row sees exactly the null token and pooled vector"
    assert torch.equal(dropped[1], kept[1]), "a kept row sees its own caption"
    assert not torch.allclose(dropped[0], kept[0]), "the caption matters"
    assert torch.equal(other[0], dropped[0]), "once dropped, the caption no longer matters"


def test_a_row_is_the_same_alone_or_in_any_batch(one_torch_thread):
    model = randomised()
    x, t, tokens, mask, pooled = inputs(batch=5, side=16)
    drop = torch.tensor([False, True, False, False, True])
    with torch.no_grad():
        whole = model(x, t, tokens, mask, pooled, drop_text=drop)
        for rows in (slice(0, 1), slice(0, 2), slice(1, 4)):
            part = model(x[rows], t[rows], tokens[rows], mask[rows], pooled[rows], drop_text=drop[rows])
            assert torch.equal(part, whole[rows]), rows


def test_only_single_images_are_denoised():
    model = ConditionalUNet(MICRO)
    x, t, tokens, mask, pooled = inputs(frames=2)
    with pytest.raises(ValueError, match=r"single images \(F = 1\), but the canvas has F = 2 frames"):
        model(x, t, tokens, mask, pooled)
    x, t, tokens, mask, pooled = inputs()
    with pytest.raises(ValueError, match="takes no camera"):
        model(x, t, tokens, mask, pooled, camera=torch.zeros(2, 1, 8))
    with pytest.raises(ValueError, match="latents have 3 channels; this model takes 4"):
        model(torch.zeros(2, 1, 3, 8, 8), t, tokens, mask, pooled)
    with pytest.raises(ValueError, match="patch_size must be 1"):
        UNetConfig(patch_size=2)
    with pytest.raises(ValueError, match="attention has 2 levels but widths has 3"):
        UNetConfig(attention=(True, True))


def test_save_and_from_pretrained_round_trip_exactly(tmp_path, one_torch_thread):
    from atelier.model.transformer import SpaceTimeTransformer

    model = randomised()
    model.save(tmp_path / "unet")
    loaded = ConditionalUNet.from_pretrained(tmp_path / "unet")
    dispatched = denoiser.load(tmp_path / "unet")
    assert loaded.config == MICRO and isinstance(dispatched, ConditionalUNet) and not loaded.training
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(value, loaded.state_dict()[name]) for name, value in model.state_dict().items())
    x, t, tokens, mask, pooled = inputs()
    with torch.no_grad():
        assert torch.equal(model(x, t, tokens, mask, pooled), dispatched(x, t, tokens, mask, pooled))
    assert UNetConfig.from_dict(MICRO.to_dict()) == MICRO and denoiser.config_from_dict(MICRO.to_dict()) == MICRO
    with pytest.raises(FolderError, match="not 'atelier-transformer'"):
        SpaceTimeTransformer.from_pretrained(tmp_path / "unet")


def test_unet_tiny_costs_about_what_the_transformer_tiny_costs():
    """Training FLOPs per 64 px image (3x the forward for both) within 1.5x of the transformer's."""
    from atelier.model.config import UNET_PRESET_NAMES, ModelConfig, preset
    from atelier.model.info import model_info

    assert UNET_PRESET_NAMES == tuple(UNET_PRESETS)
    unet_config, transformer_config = preset("unet-tiny", latent_channels=12), preset("tiny", latent_channels=12)
    assert isinstance(unet_config, UNetConfig) and isinstance(transformer_config, ModelConfig)
    assert (unet_config.kind, transformer_config.kind) == ("unet", "transformer")
    unet, transformer = (model_info(c, latent_side=16) for c in (unet_config, transformer_config))
    assert 1 / 1.5 <= unet.flops_per_sample / transformer.flops_per_sample <= 1.5, (unet, transformer)
    assert unet.visual_tokens == 256 and unet.memory_parameters == 0 and unet.parameters > 0
    with pytest.raises(ValueError, match="unknown model preset 'unet-huge'.*unet-tiny"):
        preset("unet-huge")


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.tokenizer.config import preset

    torch.manual_seed(0)
    return Autoencoder(preset("tiny")).save(tmp_path_factory.mktemp("tokenizer") / "tokenizer")


def test_unet_tiny_trains_exports_and_generates(tokenizer_folder, tmp_path):
    from atelier.bundle import read_index
    from atelier.pipeline import Atelier
    from atelier.train.config import TrainConfig
    from atelier.train.trainer import train

    config = TrainConfig(preset="unet-tiny", output=str(tmp_path / "run"), tokenizer=str(tokenizer_folder), steps=2,
                         batch=2, checkpoint_every=2, log_every=1, sample_steps=1, threads=1, precision="fp32",
                         warmup=1)
    result = train(config, progress=False)
    assert result["steps"] == 2 and result["final_loss"] is not None
    folder = Path(result["model"])
    assert read_index(folder)["training"]["config"]["preset"] == "unet-tiny"
    pipe = Atelier.from_pretrained(folder)
    assert isinstance(pipe.transformer, ConditionalUNet) and pipe.transformer.config.latent_channels == 4
    image, = pipe.text_to_image("a red cube on the grass", seed=3, steps=2, size=64)
    assert image.size == (64, 64)
    batched = pipe.text_to_image("a red cube on the grass", n=3, seed=3, steps=2, size=64)
    assert batched[0].tobytes() == image.tobytes(), "an image is the same alone or in a batch"

    tuned = train(replace(config, output=str(tmp_path / "tuned"), steps=1, init=str(folder)), progress=False)
    assert tuned["steps"] == 1 and ConditionalUNet.from_pretrained(Path(tuned["model"]) / "transformer")
    with pytest.raises(FolderError, match="is not a 'tiny' model"):
        train(replace(config, preset="tiny", output=str(tmp_path / "other"), steps=1, init=str(folder)), progress=False)
